"""The one place for Numba options and the default dtype.

Every kernel decorator in :mod:`fastcnn.kernels` reads its options from here, so
changing how kernels are compiled (caching, fastmath, parallelism) is a one-line
change.  Environment variables, read once at import:

``FASTCNN_CACHE``
    ``1`` (default) caches compiled kernels on disk (see Numba's ``cache=True``;
    the location follows ``NUMBA_CACHE_DIR``), ``0`` compiles afresh in every
    process.  A cached kernel is fresh while its file, every file whose code
    kernels inline and these settings are unchanged (:data:`CACHE_STAMP`).
``FASTCNN_VECTOR_BITS``
    The vector width of the matrix-multiply micro-kernels
    (:mod:`fastcnn.kernels._gemm`): ``512`` (16 float32 lanes, 32 registers;
    the default on CPUs with AVX-512F and AVX-512VL) or ``256`` (AVX2, the
    default elsewhere).  ``256`` on an AVX-512 CPU forces the narrower
    kernels, so that both are tested on one machine; ``512`` on a CPU
    without AVX-512 is refused.  Both widths give the same numbers.
``FASTCNN_FASTMATH``
    ``1`` (default) lets LLVM reassociate and contract floating-point
    arithmetic so reductions vectorise; the flag set keeps NaN and infinity
    semantics (no ``nnan``/``ninf``).  ``0`` gives strict IEEE order.

Kernels whose sums must come out bit for bit the same in every compiled copy
(batch norm, the losses) use :func:`pjit_ordered`, without fast-math flags
whatever ``FASTCNN_FASTMATH`` says: a prange kernel loaded from Numba's cache
runs differently optimised code than the same kernel compiled in the process,
and a sum the optimiser may reorder then differs between the two.

Threads.  The kernels release the GIL and may be called from several Python
threads at once: Numba's ``omp`` and ``tbb`` threading layers are thread-safe.
Its ``workqueue`` layer (the fallback where neither OpenMP nor TBB loads) is
not: two parallel kernels running at once abort the process.  So the
decorators here make every kernel a :class:`numba.core.registry.CPUDispatcher`
subclass that checks, when it compiles or loads a signature, which layer
Numba chose; under ``workqueue``, calls from Python then hold one process-wide
lock (:func:`calls_serialised` says whether they do).  Under the other layers
nothing changes: no lock, no Python frame on the call path.
"""

import contextlib
import functools
import hashlib
import os
import threading
import weakref

import llvmlite.binding
import numba
import numpy as np
from numba.core import sigutils
from numba.core.caching import IndexDataCacheFile
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher

try:
    import fcntl
except ImportError:  # not POSIX: Numba's own unlocked saves
    fcntl = None

DEFAULT_DTYPE = np.float32

CACHE = os.environ.get("FASTCNN_CACHE", "1") != "0"


def _host_vector_bits():
    """512 on CPUs with AVX-512F and AVX-512VL, else 256."""
    features = llvmlite.binding.get_host_cpu_features()
    return 512 if features.get("avx512f") and features.get("avx512vl") else 256


def _vector_bits(host):
    """The micro-kernels' vector width: ``FASTCNN_VECTOR_BITS`` if set, else ``host`` (see the docstring)."""
    wanted = os.environ.get("FASTCNN_VECTOR_BITS", "").strip()
    if wanted in ("", "auto"):
        return host
    if wanted not in ("256", "512"):
        raise ValueError(f"FASTCNN_VECTOR_BITS must be 256, 512 or auto, got {wanted!r}")
    if int(wanted) > host:
        raise ValueError(f"FASTCNN_VECTOR_BITS=512 needs a CPU with AVX-512F and AVX-512VL; "
                         f"this one ({llvmlite.binding.get_host_cpu_name()}) has {host}-bit vectors")
    return int(wanted)


#: The widest vectors this CPU has for the micro-kernels, in bits: 512 (AVX-512) or 256.
HOST_VECTOR_BITS = _host_vector_bits()
#: The micro-kernels' vector width in bits (``FASTCNN_VECTOR_BITS``, else :data:`HOST_VECTOR_BITS`).
VECTOR_BITS = _vector_bits(HOST_VECTOR_BITS)

# 'reassoc' and 'contract' let reductions vectorise and use FMA; 'nsz' and 'arcp'
# are harmless here.  'nnan' and 'ninf' are left out so NaN/inf propagate as in
# numpy (fit relies on that to stop on a diverged loss).
FASTMATH = (
    {"contract", "reassoc", "nsz", "arcp"}
    if os.environ.get("FASTCNN_FASTMATH", "1") != "0"
    else False
)


def _compiled_sources_digest():
    """SHA-256 of the files whose code Numba may compile into a kernel of *another* file: every module of
    :mod:`fastcnn.kernels` (their inlined helpers and intrinsics: ``_loops``, ``_gemm``, ...), this one and
    :mod:`fastcnn._shapes` (compiled inside kernels)."""
    here = os.path.dirname(os.path.abspath(__file__))
    kernels = os.path.join(here, "kernels")
    names = sorted(os.path.join("kernels", f) for f in os.listdir(kernels) if f.endswith(".py"))
    digest = hashlib.sha256()
    for name in names + ["config.py", "_shapes.py"]:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(here, name), "rb") as f:
            digest.update(f.read() + b"\0")
    return digest.hexdigest()


#: Added to the freshness stamp of every kernel's cached code (:func:`_kernel`).  Numba's own stamp is a hash
#: of the kernel's source file only, and its cache key holds the signature and the CPU, not the values of
#: globals: a kernel cached before a change to a helper it inlines from another file (``_loops.zero_span``
#: became a ``memset`` on 2026-11-30; an evaluation kernel went on running the old loop's AVX-512 scatters,
#: 48-70 % slower, for a day), or compiled under another ``FASTCNN_VECTOR_BITS`` or ``FASTCNN_FASTMATH``, would
#: otherwise be loaded as fresh.
CACHE_STAMP = (_compiled_sources_digest(), VECTOR_BITS, bool(FASTMATH))

# Options for elementwise and serial kernels, and for parallel ones.
JIT = dict(nogil=True, cache=CACHE, fastmath=FASTMATH, error_model="numpy")
PARALLEL_JIT = dict(JIT, parallel=True)
# Parallel kernels that add in the order written (see the module docstring).
ORDERED_PARALLEL_JIT = dict(PARALLEL_JIT, fastmath=False)


# --------------------------------------------------------------------------- kernels and threads


class _Serialisation:
    """Whether kernel calls from Python hold :attr:`lock`: decided once Numba has chosen its threading layer."""

    def __init__(self):
        self.layer = None  # Numba's threading layer, once chosen
        self.lock = threading.RLock()
        self.kernels = weakref.WeakSet()

    def needed(self):
        """True under the ``workqueue`` layer (then every registered kernel is made a :class:`_SerialisedKernel`)."""
        if self.layer is None:
            try:
                layer = numba.threading_layer()
            except ValueError:  # no parallel kernel compiled or loaded yet: nothing parallel can run
                return False
            if layer == "workqueue":
                with self.lock:
                    for kernel in list(self.kernels):
                        kernel.__class__ = _SerialisedKernel
            self.layer = layer
        return self.layer == "workqueue"

    def locked(self, entry, *args, **kwargs):
        with self.lock:
            return entry(*args, **kwargs)


_SERIAL = _Serialisation()


class _Kernel(CPUDispatcher):
    """A fastcnn kernel: Numba's dispatcher, which checks after compiling (or loading) a signature whether calls
    must be serialised (see the module docstring).  Calls to compiled signatures take Numba's own path."""

    def _compile_for_args(self, *args, **kwargs):
        entry = super()._compile_for_args(*args, **kwargs)
        return functools.partial(_SERIAL.locked, entry) if _SERIAL.needed() else entry

    def compile(self, sig):
        """Numba's compile (or cache load) of ``sig``, one process at a time per signature (see
        :class:`_LockedCacheFile`): a process about to compile what another one is compiling waits for it and
        loads the result from the cache instead of compiling it a second time.  The task bodies the function
        calls are compiled (or loaded) and registered first (:mod:`fastcnn.kernels._tasks`)."""
        _prepare_tasks(self.py_func, sigutils.normalize_signature(sig)[0])
        cache_file = getattr(getattr(self, "_cache", None), "_cache_file", None)
        if not isinstance(cache_file, _LockedCacheFile) or tuple(sigutils.normalize_signature(sig)[0]) \
                in self.overloads:
            return super().compile(sig)
        digest = hashlib.sha1(str(sigutils.normalize_signature(sig)).encode()).hexdigest()[:16]
        # Numba's process-wide compiler lock first, the file lock second, always in that order: a thread
        # holding a file lock never waits for the compiler lock held by a thread waiting for that file lock
        with global_compiler_lock, _file_lock(f"{cache_file._index_path}.{digest}.compiling"):
            return super().compile(sig)


def _prepare_tasks(func, argtypes, seen=None):
    """Register, for ``argtypes``, the task bodies ``func`` names (globals with a ``_fastcnn_task``), and those
    named by the compiled functions it calls (inlined helpers too), recursively."""
    seen = set() if seen is None else seen
    seen.add(func)
    for name in func.__code__.co_names:
        value = func.__globals__.get(name)
        body = getattr(value, "_fastcnn_task", None)
        if body is not None:
            body.ensure_for(argtypes)
        elif isinstance(value, CPUDispatcher) and value.py_func not in seen:
            _prepare_tasks(value.py_func, argtypes, seen)


class _SerialisedKernel(_Kernel):
    """A fastcnn kernel under Numba's ``workqueue`` threading layer: each call from Python holds one lock."""

    def __call__(self, *args, **kwargs):
        with _SERIAL.lock:
            return super().__call__(*args, **kwargs)


class _LockedCacheFile(IndexDataCacheFile):
    """Numba's cache index and data files of one function, saved under an exclusive lock across processes.

    (With it, :meth:`_Kernel.compile` also holds a lock per signature while it
    compiles, so that two processes never compile the same signature at once.)

    Numba picks a new entry's data file name from the index it has just read,
    so two processes saving different signatures of one function at the same
    moment (a helper compiling float64 while the tests compile float32, two
    MPI ranks, helper processes of :mod:`fastcnn.parallel_compile`) can both
    pick the same name: the index then names one signature's machine code
    for the other.  Holding ``<index>.lock`` (``flock``) around each save
    makes the read-choose-write one step.  Loads need no lock: every file is
    written whole (a temporary file renamed).
    """

    def save(self, key, data):
        with _file_lock(self._index_path + ".lock"):
            super().save(key, data)


@contextlib.contextmanager
def _file_lock(path):
    """An exclusive ``flock`` on ``path`` (created if needed); no lock where that cannot be had."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if fcntl is not None else None
    except OSError:
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def _kernel(dispatcher):
    """Make a Numba dispatcher a fastcnn kernel (with ``NUMBA_DISABLE_JIT=1``, a plain function: left as it is)."""
    if isinstance(dispatcher, CPUDispatcher):
        cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
        if type(cache_file) is IndexDataCacheFile:
            cache_file.__class__ = _LockedCacheFile
            cache_file._source_stamp = (cache_file._source_stamp, CACHE_STAMP)  # see CACHE_STAMP
        dispatcher.__class__ = _Kernel
        with _SERIAL.lock:
            _SERIAL.kernels.add(dispatcher)
        if _SERIAL.needed():
            dispatcher.__class__ = _SerialisedKernel
    return dispatcher


def _jit(args, kwargs, options):
    """``numba.njit(*args, **options, **kwargs)``, its dispatchers made fastcnn kernels."""
    made = numba.njit(*args, **{**options, **kwargs})
    if args and callable(args[0]):  # @njit on a function
        return _kernel(made)
    return lambda func: _kernel(made(func))  # @njit(options or signatures): a decorator


def njit(*args, **kwargs):
    """``numba.njit`` with fastcnn's serial options (see module docstring)."""
    return _jit(args, kwargs, JIT)


def pjit(*args, **kwargs):
    """``numba.njit`` with fastcnn's parallel options (see module docstring)."""
    return _jit(args, kwargs, PARALLEL_JIT)


def njit_ordered(*args, **kwargs):
    """``numba.njit`` with fastcnn's serial options but no fast-math flags (see module docstring)."""
    return _jit(args, kwargs, dict(JIT, fastmath=False))


def pjit_ordered(*args, **kwargs):
    """``numba.njit`` with fastcnn's parallel options but no fast-math flags (see module docstring)."""
    return _jit(args, kwargs, ORDERED_PARALLEL_JIT)


def calls_serialised():
    """Whether kernel calls from Python threads are serialised by a lock (Numba's ``workqueue`` threading layer).

    False as long as no parallel kernel has been compiled or loaded (Numba
    chooses its threading layer then), and under the thread-safe ``omp`` and
    ``tbb`` layers: kernels called from several threads run at the same time.
    """
    return _SERIAL.needed()


def set_num_threads(n):
    """Set the number of threads fastcnn's parallel kernels use when called from this Python thread.

    As Numba's own setting, it belongs to the calling Python thread: other
    threads keep theirs, and a new thread starts with ``NUMBA_NUM_THREADS``
    whatever the main thread set (call this at the start of each thread
    that runs kernels).  Several threads training at once each start their
    own team of this many kernel threads: give each a share of the cores.

    Parameters
    ----------
    n : int
        Between 1 and ``numba.config.NUMBA_NUM_THREADS`` (the count fixed at
        import, by default the number of cores; set the environment variable
        ``NUMBA_NUM_THREADS`` before importing to raise it).

    Examples
    --------
    >>> import fastcnn
    >>> fastcnn.set_num_threads(1)
    >>> fastcnn.get_num_threads()
    1
    """
    limit = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if not 1 <= n <= limit:
        raise ValueError(
            f"set_num_threads: n must be between 1 and {limit} (NUMBA_NUM_THREADS), got {n}; "
            "set NUMBA_NUM_THREADS before importing fastcnn to allow more"
        )
    numba.set_num_threads(int(n))
    _planned.threads = int(n)


def get_num_threads():
    """Return the number of threads fastcnn's parallel kernels are planned for (in this Python thread).

    Every kernel sizes its tasks from this count, so it decides the results.
    During :meth:`~fastcnn.Sequential.fit` fewer threads may run them on a
    busy machine (:mod:`fastcnn._cpuload`), with the same results.
    """
    planned = getattr(_planned, "threads", None)
    return numba.get_num_threads() if planned is None else planned


#: The count :func:`set_num_threads` last set in each Python thread (Numba's own count is per thread too).
_planned = threading.local()
