"""Task bodies: the serial work of one parallel task, compiled once and called through a fixed symbol.

Numba compiles a ``parallel=True`` kernel's ``prange`` body into a separate
function, and a function that calls another compiled function links the
callee's LLVM module into its own and optimises it again.  A kernel whose
large loop body is inlined (or linked) thus compiles that body's machine
code two or three times: measured on the Winograd weight gradient, 20 s for
the parallel kernel against 5.5 s for the same code serial.

A *task* is that body written as a plain function of its arrays, its scalars
and the task's index::

    @task("r4 r4 a4 a4 a4 i")
    def _weight_grad_task(xp, dyl, v, mdy, partial, t):
        ...

    @pjit
    def kernel(xp, dyl, dw, v, mdy, partial):
        for t in prange(v.shape[0]):
            _weight_grad_task(xp, dyl, v, mdy, partial, t)

Inside kernels (the only place it can be called) ``_weight_grad_task`` is an
intrinsic that emits a plain call to a symbol registered for this process's
compilation of the body (:func:`fastcnn.kernels._gemm.gemm_call` does the
same for the matrix-multiply micro-kernel): the body is compiled (or loaded
from Numba's cache) once per dtype, and each kernel calling it compiles only
its own loop.

The signature is declared, one token per argument, in the *kernel dtype*
(the dtype of the first float array the kernel is compiled for): ``aN`` a
C-contiguous N-d array of that dtype, ``rN`` the same read-only (a writable
array is accepted), ``AN`` / ``RN`` any layout, ``dN`` a float64 array,
``iN`` a read-only int64 array, ``jN`` a writable one, ``bN`` a bool array, ``i`` an int64 (any integer is
converted), ``f`` a scalar of the kernel dtype, ``b`` a bool.

Aliasing.  A body is compiled with its array arguments marked ``noalias``
(as Numba compiles a ``prange`` body): arrays a task writes must not
overlap any other array argument of the same call (two read-only views of
one array are fine).

Caching.  A kernel loaded from Numba's cache calls the symbol by name, so the
symbol must exist before the kernel's machine code is loaded: fastcnn's
kernel dispatcher (:class:`fastcnn.config._Kernel`) registers, before it
compiles or loads a signature, every task its function names (the
``_fastcnn_task`` attribute of the globals it refers to) for the kernel's
dtype.  A task must live in the module of the kernels that call it: Numba
invalidates a cached kernel when its source file changes, and so when one of
its tasks does (a kernel calls its body by name, so a changed body is picked
up anyway: the rule guards changed signatures).  The symbol's name carries
:data:`_VERSION`; change it when this calling convention changes.  A body
that kernels of several modules call (the micro-kernel driver
:func:`fastcnn.kernels._gemm.gemm_call`) names its symbol itself, with a
version changed by hand whenever its signature changes.
"""

import llvmlite.binding as llvm
from numba import types
from numba.core import cgutils
from numba.core.compiler_lock import global_compiler_lock
from numba.core.errors import TypingError
from numba.extending import intrinsic

from ..config import njit, njit_ordered

__all__ = ["task", "register_cached_task_bodies"]

_VERSION = 1
_FLOATS = (types.float32, types.float64)


def _token_type(token, dtype):
    """The Numba type of one signature token (see the module docstring) for kernel dtype ``dtype``."""
    kind, ndim = token[0], int(token[1:] or 0)
    if not ndim:
        return {"i": types.int64, "f": dtype, "b": types.boolean}[kind]
    base, layout, readonly = {
        "a": (dtype, "C", False), "r": (dtype, "C", True), "A": (dtype, "A", False), "R": (dtype, "A", True),
        "d": (types.float64, "C", False), "i": (types.int64, "C", True), "b": (types.boolean, "C", True),
        "j": (types.int64, "C", False),
    }[kind]
    return types.Array(base, ndim, layout, readonly=readonly)


def _accepts(have, want):
    """Whether an argument of type ``have`` may be passed where the body takes ``want``."""
    if isinstance(have, types.Omitted):  # a kernel's keyword argument left at its default
        value = have.value
        return (isinstance(value, bool) if isinstance(want, types.Boolean)
                else isinstance(value, int) if isinstance(want, types.Integer)
                else isinstance(value, (int, float)) and not isinstance(want, types.Array))
    if isinstance(want, types.Array):
        return (isinstance(have, types.Array) and have.dtype == want.dtype and have.ndim == want.ndim
                and (want.layout == "A" or have.layout == "C") and (have.mutable or not want.mutable))
    if isinstance(want, types.Integer):
        return isinstance(have, types.Integer)
    if isinstance(want, types.Boolean):
        return isinstance(have, types.Boolean)
    return isinstance(have, (types.Float, types.Integer))


def _compile_noalias(dispatcher):
    """Compile ``dispatcher`` with Numba's ``noalias`` flag: its array arguments' pointers marked ``noalias``.

    Numba compiles a ``prange`` body that way (arrays that it cannot see
    aliasing in the kernel), and without it LLVM guards every short loop
    over two arrays with run-time overlap checks: measured on the depthwise
    kernels, a body without the flag ran up to 1.5x the time of the same
    loop inside the kernel.  The flag has no decorator option, so the
    dispatcher's flag hook adds it (Numba's private ``_customize_flags``).
    """
    compiler = dispatcher._compiler
    customize = compiler._customize_flags

    def with_noalias(flags):
        flags = customize(flags)
        flags.noalias = True
        return flags

    compiler._customize_flags = with_noalias


class Task:
    """A serial body compiled per dtype, its compiled code registered under a fixed symbol."""

    def __init__(self, func, spec, ordered, symbol=None):
        self.tokens = tuple(spec.split())
        if func.__code__.co_argcount != len(self.tokens):
            raise ValueError(f"task {func.__qualname__}: {func.__code__.co_argcount} arguments, "
                             f"{len(self.tokens)} signature tokens ({spec!r})")
        self.dispatcher = (njit_ordered if ordered else njit)(func)
        _compile_noalias(self.dispatcher)
        self.module = func.__module__
        self.qualname = func.__qualname__
        self.symbol = symbol or f"fastcnn_task_v{_VERSION}_{self.module}.{self.qualname}".replace(".", "_")
        self._symbols = {}  # kernel dtype -> (symbol, argument types)
        _TASKS.append(self)

    def argtypes(self, dtype):
        return tuple(_token_type(token, dtype) for token in self.tokens)

    def ensure(self, dtype):
        """Compile (or load) the body for kernel dtype ``dtype`` and register its symbol: (symbol, types)."""
        found = self._symbols.get(dtype)
        if found is not None:
            return found
        with global_compiler_lock:
            if dtype not in self._symbols:
                argtypes = self.argtypes(dtype)
                self.dispatcher.compile(argtypes)
                self._register(dtype, argtypes)
        return self._symbols[dtype]

    def _register(self, dtype, argtypes):
        cres = self.dispatcher.overloads[argtypes]
        name = f"{self.symbol}_{dtype}"
        llvm.add_symbol(name, cres.library.get_pointer_to_function(cres.fndesc.mangled_name))
        self._symbols[dtype] = (name, argtypes)

    def load_cached(self, dtype):
        """Register the body for ``dtype`` if Numba's cache holds it (never compiles); whether it is registered."""
        with global_compiler_lock:
            if dtype not in self._symbols:
                argtypes = self.argtypes(dtype)
                cache = getattr(self.dispatcher, "_cache", None)
                cres = cache.load_overload(argtypes, self.dispatcher.targetctx) if cache is not None else None
                if cres is None:
                    return False
                self.dispatcher.add_overload(cres)
                self._register(dtype, argtypes)
        return True

    def ensure_for(self, kernel_argtypes):
        """:meth:`ensure` for the kernel dtype of a kernel compiled for ``kernel_argtypes``."""
        dtype = _kernel_dtype(kernel_argtypes)
        if dtype is not None:
            self.ensure(dtype)


#: every task defined so far (in the order their modules were imported)
_TASKS = []


def register_cached_task_bodies():
    """Register every task body Numba's cache holds, in both float dtypes; the number registered.

    fastcnn's kernels register the bodies they call themselves.  Your own
    ``@njit(cache=True)`` functions that call raw kernels do not: in a new
    process their cached machine code calls the bodies by name, so call this
    first (after importing the kernel modules they use).  It compiles
    nothing: a body not in the cache was not compiled when your function was.
    """
    return sum(body.load_cached(dtype) for body in _TASKS for dtype in _FLOATS)


def _kernel_dtype(argtypes):
    """The dtype of the first float array among ``argtypes`` (None if there is none)."""
    for t in argtypes:
        if isinstance(t, types.Array) and t.dtype in _FLOATS:
            return t.dtype
    return None


def _intrinsic(body):
    """The intrinsic through which kernels call ``body`` (a :class:`Task`)."""

    kernel_tokens = [i for i, token in enumerate(body.tokens) if token[0] in "arAR" or token == "f"]

    def typer(typingctx, *args):
        dtype = None
        for i in kernel_tokens:
            have = args[i] if i < len(args) else None
            if isinstance(have, types.Array) and have.dtype in _FLOATS:
                dtype = have.dtype
                break
        if len(args) != len(body.tokens) or (dtype is None and kernel_tokens):
            raise TypingError(f"task {body.qualname} takes ({' '.join(body.tokens)}), got {args}")
        name, target = body.ensure(dtype or types.float64)
        for i, (have, want) in enumerate(zip(args, target)):
            if not _accepts(have, want):
                raise TypingError(f"task {body.qualname}: argument {i} is {have}, the body takes {want}")
        sig = types.void(*args)

        def codegen(context, builder, signature, values):
            values = [context.get_constant(want, have.value) if isinstance(have, types.Omitted)
                      else context.cast(builder, v, have, want) for v, have, want in zip(values, signature.args, target)]
            fnty = context.call_conv.get_function_type(types.void, target)
            fn = cgutils.get_or_insert_function(builder.module, fnty, name)
            status, _ = context.call_conv.call_function(builder, fn, types.void, target, values)
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return context.get_dummy_value()

        return sig, codegen

    # an intrinsic's typer needs one named parameter per argument (Numba reads its signature)
    params = ", ".join(f"a{i}" for i in range(len(body.tokens)))
    scope = {"typer": typer}
    exec(f"def {body.qualname.replace('.', '_')}(typingctx, {params}):\n    return typer(typingctx, {params})",
         scope)
    call = intrinsic(scope[body.qualname.replace(".", "_")])
    call._fastcnn_task = body
    return call


def task(spec, ordered=False, symbol=None):
    """Declare a task body (see the module docstring); ``ordered``: compiled without fast-math flags.

    ``symbol``: the symbol's name (the dtype is appended), for a body that
    kernels of other modules call (:func:`fastcnn.kernels._gemm.gemm_call`):
    version it by hand, since those kernels' cached code is not invalidated
    when the body's module changes.
    """
    return lambda func: _intrinsic(Task(func, spec, ordered, symbol))
