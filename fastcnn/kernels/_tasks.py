"""Task bodies: the serial work of one parallel task, compiled once and called through a fixed symbol.

Numba compiles a ``parallel=True`` kernel's ``prange`` body into a separate
function, and a function that calls another compiled function links the
callee's LLVM module into its own and optimises it again.  A kernel whose
large loop body is inlined (or linked) thus compiles that body's machine
code two or three times: measured on the Winograd weight gradient, 20 s for
the parallel kernel against 5.5 s for the same code serial.  And every
parallel kernel pays Numba's fixed cost of building a thread entry for its
loop (about 0.2 s).

A *task* is that body written as a plain function of its arrays, its scalars
and the task's index, and :func:`parallel_tasks` is the loop over it::

    @task("r4 r4 a4 a4 a4 i")
    def _weight_grad_task(xp, dyl, v, mdy, partial, t):
        ...

    _weight_grad_tasks = parallel_tasks(_weight_grad_task)

    @njit
    def kernel(xp, dyl, dw, v, mdy, partial):
        _weight_grad_tasks(v.shape[0], xp, dyl, v, mdy, partial)  # t = 0 .. n-1 on fastcnn's threads

Inside kernels (the only place they can be called) ``_weight_grad_task``
and ``_weight_grad_tasks`` are intrinsics that emit a plain call to a symbol
registered for this process's compilation of the body
(:func:`fastcnn.kernels._gemm.gemm_call` does the same for the
matrix-multiply micro-kernel): the body is compiled (or loaded from Numba's
cache) once per dtype, the loop runs in the one parallel function
:func:`_launch` (compiled once), and each kernel compiles only its own
serial code.  A ``prange`` loop of a ``parallel=True`` kernel may call a
task too.

The signature is declared, one token per argument, in the *kernel dtype*
(the dtype of the first float array the kernel is compiled for): ``aN`` a
C-contiguous N-d array of that dtype, ``rN`` the same read-only (a writable
array is accepted), ``AN`` / ``RN`` any layout, ``dN`` a float64 array,
``iN`` a read-only int64 array, ``jN`` a writable one, ``bN`` a bool array, ``i`` an int64 (any integer is
converted), ``f`` a scalar of the kernel dtype, ``b`` a bool.

Aliasing.  A body is compiled with its array arguments marked ``noalias``
(as Numba compiles a ``prange`` body): arrays a task writes must not
overlap any other array argument of the same call (two read-only views of
one array are fine, and so is an elementwise body writing each element from
that element alone, as the in-place ReLU does: as in a ``prange`` body).

Caching.  A kernel loaded from Numba's cache calls the symbol by name, so the
symbol must exist before the kernel's machine code is loaded: fastcnn's
kernel dispatcher (:class:`fastcnn.config._Kernel`) registers, before it
compiles or loads a signature, every task its function names (the
``_fastcnn_task`` attribute of the globals it refers to) for the kernel's
dtype, and the launcher :func:`_launch` under its own symbol.  A task must live in the module of the kernels that call it: Numba
invalidates a cached kernel when its source file changes, and so when one of
its tasks does (a kernel calls its body by name, so a changed body is picked
up anyway: the rule guards changed signatures).  The symbol's name carries
:data:`_VERSION`; change it when this calling convention changes.  A body
that kernels of several modules call (the micro-kernel driver
:func:`fastcnn.kernels._gemm.gemm_call`) names its symbol itself, with a
version changed by hand whenever its signature changes.
"""

import re

import llvmlite.binding as llvm
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.core.compiler_lock import global_compiler_lock
from numba.core.errors import TypingError
from numba.extending import intrinsic

from ..config import njit, njit_ordered, pjit

__all__ = ["task", "parallel_tasks", "task_threads", "register_cached_task_bodies"]

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
        self.kernel_tokens = [i for i, token in enumerate(self.tokens) if token[0] in "arAR" or token == "f"]
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
        name = f"{self.symbol}_{dtype}"
        _add_symbol(name, self.dispatcher, argtypes)
        self._symbols[dtype] = (name, argtypes)

    def load_cached(self, dtype):
        """Register the body for ``dtype`` if Numba's cache holds it (never compiles); whether it is registered."""
        with global_compiler_lock:
            if dtype not in self._symbols:
                argtypes = self.argtypes(dtype)
                if not _load_cached(self.dispatcher, argtypes):
                    return False
                self._register(dtype, argtypes)
        return True

    def ensure_for(self, kernel_argtypes):
        """:meth:`ensure` for the kernel dtype of a kernel compiled for ``kernel_argtypes``."""
        dtype = _kernel_dtype(kernel_argtypes)
        if dtype is not None:
            self.ensure(dtype)


def _add_symbol(name, dispatcher, argtypes):
    """Register ``name`` for the compiled code of ``dispatcher``'s overload for ``argtypes``."""
    cres = dispatcher.overloads[argtypes]
    llvm.add_symbol(name, cres.library.get_pointer_to_function(cres.fndesc.mangled_name))


def _load_cached(dispatcher, argtypes):
    """Add ``dispatcher``'s overload for ``argtypes`` from Numba's cache, compiling nothing; whether it was there."""
    cache = getattr(dispatcher, "_cache", None)
    cres = cache.load_overload(argtypes, dispatcher.targetctx) if cache is not None else None
    if cres is not None:
        dispatcher.add_overload(cres)
    return cres is not None


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
    return _LAUNCHER.load_cached() + sum(body.load_cached(dtype) for body in _TASKS for dtype in _FLOATS)


def _kernel_dtype(argtypes):
    """The dtype of the first float array among ``argtypes`` (None if there is none)."""
    for t in argtypes:
        if isinstance(t, types.Array) and t.dtype in _FLOATS:
            return t.dtype
    return None


def _resolve(body, args):
    """Type a call of ``body`` with argument types ``args``: (symbol, the body's argument types), compiled."""
    dtype = None
    for i in body.kernel_tokens:
        have = args[i] if i < len(args) else None
        if isinstance(have, types.Array) and have.dtype in _FLOATS:
            dtype = have.dtype
            break
    if len(args) != len(body.tokens) or (dtype is None and body.kernel_tokens):
        raise TypingError(f"task {body.qualname} takes ({' '.join(body.tokens)}), got {args}")
    name, target = body.ensure(dtype or types.float64)
    for i, (have, want) in enumerate(zip(args, target)):
        if not _accepts(have, want):
            raise TypingError(f"task {body.qualname}: argument {i} is {have}, the body takes {want}")
    return name, target


def _cast(context, builder, values, have, want):
    """``values`` (of types ``have``) as the body's types ``want``; a keyword left at its default as a constant."""
    return [context.get_constant(w, h.value) if isinstance(h, types.Omitted) else context.cast(builder, v, h, w)
            for v, h, w in zip(values, have, want)]


def _call_body(context, builder, name, target, values):
    """Emit ``status = name(*values)`` (the body's compiled code, by its symbol): the call's status."""
    fnty = context.call_conv.get_function_type(types.void, target)
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    status, _ = context.call_conv.call_function(builder, fn, types.void, target, values)
    return status


def _with_params(typer, name, count):
    """An intrinsic of ``typer(typingctx, *args)`` taking ``count`` named arguments (Numba reads its signature)."""
    params = ", ".join(f"a{i}" for i in range(count))
    name = re.sub(r"\W", "_", name)  # a qualified name may hold dots and "<locals>"
    scope = {"typer": typer}
    exec(f"def {name}(typingctx, {params}):\n    return typer(typingctx, {params})", scope)
    return intrinsic(scope[name])


def _intrinsic(body):
    """The intrinsic through which kernels call ``body`` (a :class:`Task`)."""

    def typer(typingctx, *args):
        name, target = _resolve(body, args)

        def codegen(context, builder, signature, values):
            status = _call_body(context, builder, name, target, _cast(context, builder, values, signature.args, target))
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return context.get_dummy_value()

        return types.void(*args), codegen

    call = _with_params(typer, body.qualname, len(body.tokens))
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


# --------------------------------------------------------------------------- running tasks on fastcnn's threads

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_I8P = ir.IntType(8).as_pointer()
#: a trampoline: ``void(env, t)``, runs task ``t`` with the arguments stored in ``env``
_TRAMPOLINE = ir.FunctionType(ir.VoidType(), [_I8P, _I64])


@intrinsic
def _call_trampoline(typingctx, fn, env, t):
    """Call the trampoline at address ``fn`` with ``(env, t)``."""

    def codegen(context, builder, signature, values):
        fn, env, t = values
        builder.call(builder.inttoptr(fn, _TRAMPOLINE.as_pointer()), [builder.inttoptr(env, _I8P), t])
        return context.get_dummy_value()

    return types.void(types.int64, types.int64, types.int64), codegen


@pjit
def _launch(fn, env, n):
    """Run the trampoline at address ``fn`` for ``t = 0 .. n-1`` on fastcnn's threads."""
    for t in prange(n):
        _call_trampoline(fn, env, t)


class _Launcher:
    """:func:`_launch`, the one parallel loop every :func:`parallel_tasks` runs in, under a fixed symbol."""

    symbol = f"fastcnn_launch_v{_VERSION}"
    argtypes = (types.int64, types.int64, types.int64)

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.ready = False

    def ensure(self):
        """Compile (or load) the launcher and register its symbol."""
        if not self.ready:
            with global_compiler_lock:
                if not self.ready:
                    self.dispatcher.compile(self.argtypes)
                    _add_symbol(self.symbol, self.dispatcher, self.argtypes)
                    self.ready = True

    def ensure_for(self, kernel_argtypes):
        self.ensure()

    def load_cached(self):
        """Register the launcher if Numba's cache holds it (never compiles); whether it is registered."""
        with global_compiler_lock:
            if not self.ready:
                if not _load_cached(self.dispatcher, self.argtypes):
                    return False
                _add_symbol(self.symbol, self.dispatcher, self.argtypes)
                self.ready = True
        return True


_LAUNCHER = _Launcher(_launch)


@intrinsic
def task_threads(typingctx):
    """In a kernel: the threads the next task loop runs on (Numba's count for the calling thread).

    A call by name to the threading layer's ``get_num_threads``, as Numba's
    ``prange`` lowering makes it (``numba.get_num_threads()`` in a kernel
    embeds the function's address, which Numba's cache refuses).  The
    symbol exists once Numba has started its threads: the launcher's
    compile or load does that.
    """
    _LAUNCHER.ensure()

    def codegen(context, builder, signature, values):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(cgutils.intp_t, []), "get_num_threads")
        return builder.call(fn, [])

    return types.intp(), codegen


task_threads._fastcnn_task = _LAUNCHER  # a kernel naming it registers the launcher first (see the docstring)


def _trampoline(context, module, name, target, envty):
    """The trampoline (defined once per module) that runs body ``name`` on the arguments stored in an ``envty``.

    ``env`` holds a failure flag, then the body's arguments but the last (the
    task index, the trampoline's second argument).  A task that fails (an
    allocation in its body) sets the flag; threads write the same value.
    """
    fn = cgutils.get_or_insert_function(module, _TRAMPOLINE, f"{name}_trampoline")
    if not fn.is_declaration:
        return fn
    fn.linkage = "internal"
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    env = builder.bitcast(fn.args[0], envty.as_pointer())
    values = [builder.load(cgutils.gep_inbounds(builder, env, 0, k + 1)) for k in range(len(target) - 1)]
    status = _call_body(context, builder, name, target, values + [fn.args[1]])
    with builder.if_then(status.is_error, likely=False):
        builder.store(ir.Constant(_I32, 1), cgutils.gep_inbounds(builder, env, 0, 0))
    builder.ret_void()
    return fn


def parallel_tasks(call):
    """The parallel loop over a task: ``run(n, *args)`` runs ``call(*args, t)`` for ``t = 0 .. n-1`` on fastcnn's threads.

    ``call`` is a task (see :func:`task`) whose last argument is the task index
    (``i``).  ``run`` does what ``for t in prange(n): call(*args, t)`` does in a
    ``parallel=True`` kernel, with the same split of ``t`` between threads,
    but from any kernel, serial ones too: every such loop runs in one
    parallel function compiled once (:func:`_launch`), so a kernel whose
    parallel work is all task loops compiles as a serial function (Numba
    builds a parallel function's thread entry and links and optimises it
    again: a fixed cost of each ``parallel=True`` function).  The arguments
    are stored in one structure on the caller's stack that a per-kernel
    trampoline reads for each task.  A task that fails raises
    ``RuntimeError`` after the loop.
    """
    body = call._fastcnn_task
    if body.tokens[-1] != "i":
        raise ValueError(f"parallel_tasks: task {body.qualname}'s last argument must be the task index (i)")

    def typer(typingctx, n, *args):
        if not isinstance(n, types.Integer):
            raise TypingError(f"parallel_tasks({body.qualname}): the task count must be an integer, got {n}")
        name, target = _resolve(body, args + (types.int64,))
        _LAUNCHER.ensure()

        def codegen(context, builder, signature, values):
            count = context.cast(builder, values[0], signature.args[0], types.int64)
            args = _cast(context, builder, values[1:], signature.args[1:], target[:-1])
            envty = ir.LiteralStructType([_I32] + [context.get_value_type(t) for t in target[:-1]])
            env = cgutils.alloca_once(builder, envty)
            builder.store(ir.Constant(_I32, 0), cgutils.gep_inbounds(builder, env, 0, 0))
            for k, value in enumerate(args):
                builder.store(value, cgutils.gep_inbounds(builder, env, 0, k + 1))
            trampoline = _trampoline(context, builder.module, name, target, envty)
            launch = cgutils.get_or_insert_function(
                builder.module, context.call_conv.get_function_type(types.void, _Launcher.argtypes), _LAUNCHER.symbol)
            status, _ = context.call_conv.call_function(
                builder, launch, types.void, _Launcher.argtypes,
                [builder.ptrtoint(trampoline, _I64), builder.ptrtoint(env, _I64), count])
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            failed = builder.load(cgutils.gep_inbounds(builder, env, 0, 0))
            with cgutils.if_unlikely(builder, cgutils.is_not_null(builder, failed)):
                context.call_conv.return_user_exc(builder, RuntimeError, (f"task {body.qualname} failed",))
            return context.get_dummy_value()

        return types.void(n, *args), codegen

    run = _with_params(typer, f"run_{body.qualname}", len(body.tokens))
    run._fastcnn_task = _TaskLoop(body)
    return run


class _TaskLoop:
    """What a kernel running a :func:`parallel_tasks` loop needs registered: the body and the launcher."""

    def __init__(self, body):
        self.body = body

    def ensure_for(self, kernel_argtypes):
        self.body.ensure_for(kernel_argtypes)
        _LAUNCHER.ensure()
