"""Timing tools shared by the benchmarks: medians, timed calls, thread control and the sgemm peak.

Every benchmark follows the same discipline (see :mod:`fastcnn.bench`):
medians of several repeats, the libraries compared interleaved in a rotating
order (:func:`rotated`), each turn after a pause and one untimed call
(:func:`settle_then_wake`), warm-up excluded, the garbage collector off while
timing (:func:`no_gc`) and one thread count for fastcnn, numpy's BLAS and
PyTorch (:func:`use_threads`).
"""

import contextlib
import functools
import gc
import glob
import os
import statistics
import time

import numpy as np

__all__ = [
    "median",
    "time_call",
    "time_each_call",
    "bound",
    "calls_per_sample",
    "rotated",
    "settle_then_wake",
    "no_gc",
    "Blas",
    "blas",
    "loaded_openblas",
    "use_threads",
    "measure_peak_gflops",
]


def median(xs):
    """The median of ``xs``, or None for an empty sequence."""
    return statistics.median(xs) if xs else None


def time_call(fn, setup=None, number=1):
    """Mean seconds of ``number`` calls of ``fn(setup())`` (or ``fn()``), the setup calls excluded.

    ``fn`` may be a :class:`fastcnn.bench.torch_worker.Remote`: it is then
    timed in its worker process (``setup`` is the one built there).
    """
    if hasattr(fn, "time_call"):
        return fn.time_call(number)
    total = 0.0
    for _ in range(number):
        if setup is not None:
            arg = setup()
            t0 = time.perf_counter()
            fn(arg)
        else:
            t0 = time.perf_counter()
            fn()
        total += time.perf_counter() - t0
    return total / number


def time_each_call(fn, number):
    """Seconds of each of ``number`` back-to-back calls of ``fn`` (a list; timed in its worker for a ``Remote``)."""
    if hasattr(fn, "each_call"):
        return fn.each_call(number)
    times = []
    for _ in range(number):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def settle_then_wake(settle, wake):
    """Sleep ``settle`` seconds, then call ``wake()`` once, untimed: what every turn of an interleaved benchmark does
    before its timed calls.

    The pause lets the worker threads of the library measured before fall
    asleep (OpenMP and OpenBLAS threads spin for a while after their work, on
    cores the next library needs).  The untimed call then wakes this library's
    own threads: the first call after a pause pays for waking idle cores, which
    a training loop calling back to back never does.  On the 2-core VM of
    2026-12-01 that cost 1-12 ms at 2 threads, for fastcnn and PyTorch alike: a
    2 ms stride-2 convolution timed right after a 0.15 s pause took 2.5-14 ms,
    the call after it 1.7-2.2 ms.
    """
    time.sleep(settle)
    wake()


def bound(fn, *args):
    """``fn`` with ``args`` passed first on every call: a ``Remote``'s :meth:`~fastcnn.bench.torch_worker.Remote.bind`,
    else :func:`functools.partial`."""
    return fn.bind(*args) if hasattr(fn, "bind") else functools.partial(fn, *args)


def calls_per_sample(seconds, target):
    """Back-to-back calls per sample so that one sample lasts about ``target`` seconds (1 to 100)."""
    if not target or seconds <= 0:
        return 1
    return max(1, min(100, int(target / seconds)))


def rotated(keys, i):
    """``keys`` rotated left by ``i`` places (modulo its length): round ``i``'s order of turns.

    With two keys this alternates which goes first.
    """
    shift = i % len(keys)
    return keys[shift:] + keys[:shift]


@contextlib.contextmanager
def no_gc():
    """Collect garbage, then keep the garbage collector off inside the block (restored after)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------- BLAS threads


def loaded_openblas():
    """Paths of the OpenBLAS libraries loaded in this process (Linux; numpy's wheel copy elsewhere)."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if "openblas" in os.path.basename(path).lower() and os.path.isfile(path):
                    paths.add(path)
    except OSError:
        pass
    if not paths:  # numpy's wheel keeps its OpenBLAS in numpy.libs
        base = os.path.dirname(os.path.dirname(np.__file__))
        paths.update(glob.glob(os.path.join(base, "numpy.libs", "*openblas*")))
    return sorted(paths)


class Blas:
    """Get and set numpy's BLAS thread count: threadpoolctl if installed, else OpenBLAS through ctypes.

    Without either, :meth:`get` returns None and :meth:`limit` changes nothing.
    """

    def __init__(self):
        self._libs = []
        try:
            import threadpoolctl  # noqa: F401

            self._tpc = True
            return
        except ImportError:
            self._tpc = False
        import ctypes

        for path in loaded_openblas():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            getter = setter = None
            for suffix in ("64_", "_64", ""):
                for prefix in ("scipy_openblas", "openblas"):
                    getter = getter or getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                    setter = setter or getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                getter.restype = ctypes.c_int
                setter.argtypes = [ctypes.c_int]
                self._libs.append((getter, setter))

    def get(self):
        """BLAS's current thread count, or None when it cannot be read."""
        if self._tpc:
            from threadpoolctl import threadpool_info

            counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
            return counts[0] if counts else None
        return int(self._libs[0][0]()) if self._libs else None

    @contextlib.contextmanager
    def limit(self, n):
        """Use ``n`` BLAS threads inside the block (None: leave the setting alone)."""
        if n is None:
            yield
            return
        if self._tpc:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=int(n), user_api="blas"):
                yield
            return
        before = [int(g()) for g, _ in self._libs]
        for _, s in self._libs:
            s(int(n))
        try:
            yield
        finally:
            for (_, s), b in zip(self._libs, before):
                s(b)


_BLAS = None


def blas():
    """The process's :class:`Blas` (created on first use)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = Blas()
    return _BLAS


@contextlib.contextmanager
def use_threads(threads, torch=None):
    """Use ``threads`` threads in fastcnn (Numba), numpy's BLAS and ``torch``; restore them after.

    Parameters
    ----------
    threads : int or None
        None: fastcnn's current count.
    torch : module or :class:`~fastcnn.bench.torch_worker.TorchWorker`, optional
        PyTorch (or the worker process timing it), when it is measured too.

    Yields
    ------
    int
        The thread count in force.
    """
    import fastcnn

    if threads is None:
        threads = fastcnn.get_num_threads()
    before = fastcnn.get_num_threads()
    torch_before = torch.get_num_threads() if torch is not None else None
    fastcnn.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with blas().limit(threads):
            yield threads
    finally:
        fastcnn.set_num_threads(before)
        if torch is not None:
            torch.set_num_threads(torch_before)


def measure_peak_gflops(n=2048, repeat=3, threads=None, settle=0.15):
    """The machine's practical float32 peak in this run: numpy's sgemm on n x n matrices.

    Parameters
    ----------
    n : int
        Matrix size; ``2 * n**3`` FLOPs per multiply.
    repeat : int
        Timed multiplies (after one warm-up); the median is reported.
    threads : int, optional
        BLAS threads (default: BLAS's current setting).
    settle : float
        Seconds of sleep first, so other libraries' spinning threads go idle.

    Returns
    -------
    dict
        ``gflops`` (median), ``n``, ``samples_s`` (each multiply's seconds),
        ``blas_threads``.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    lib = blas()
    with lib.limit(threads):
        blas_threads = lib.get()
        time.sleep(settle)
        np.matmul(a, b, out=c)
        samples = []
        with no_gc():
            for _ in range(repeat):
                t0 = time.perf_counter()
                np.matmul(a, b, out=c)
                samples.append(time.perf_counter() - t0)
    return {"gflops": 2 * n ** 3 / median(samples) / 1e9, "n": n, "samples_s": samples,
            "blas_threads": blas_threads}
