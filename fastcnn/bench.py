"""Benchmarks: convolution kernels, LeNet-5 training throughput and start-up time.

Used by ``fastcnn bench conv|train|startup``; every function also works from
Python.  PyTorch is the reference when it is installed (it is imported lazily,
inside the functions, and everything degrades to fastcnn-only numbers when it
is absent); matplotlib is needed only for :func:`plot_conv`.

Measurement rules, for shared and noisy machines:

* every number is the **median** of several repeats;
* fastcnn and PyTorch are measured **interleaved** inside one run (for each
  repeat, each operation is timed once per algorithm, in a rotating order), so
  a burst of background load hits both;
* warm-up calls (JIT compilation, cache loading, first-touch allocation) are
  excluded;
* the "peak" is measured in the same run: numpy's float32 matrix multiply
  (BLAS sgemm) with the same thread count, the machine's practical peak.

Convolution shapes are written ``NxCxHxW:KkR[sS][pP]`` (see :func:`parse_shape`).

Examples
--------
>>> from fastcnn.bench import parse_shape
>>> s = parse_shape("64x3x32x32:32k3s1p1")
>>> s.n, s.c, s.h, s.w, s.k, s.r, s.stride, s.pad
(64, 3, 32, 32, 32, 3, 1, 1)
>>> str(s), (s.p, s.q)
('64x3x32x32:32k3s1p1', (32, 32))
"""

import contextlib
import gc
import glob
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import NamedTuple

import numpy as np

__all__ = [
    "ConvShape",
    "CONV_SUITE",
    "SHAPE_FORMAT",
    "parse_shape",
    "measure_peak_gflops",
    "conv_workspace_bytes",
    "bench_conv",
    "run_conv_suite",
    "bench_train",
    "bench_startup",
    "bench_models",
    "machine_info",
    "format_conv",
    "format_train",
    "format_startup",
    "format_models_table",
    "write_json",
    "plot_conv",
    "require_matplotlib",
]

#: One-paragraph description of the shape strings, used in ``--help``.
SHAPE_FORMAT = (
    "NxCxHxW:KkR[sS][pP]: a batch of N images with C channels of H x W pixels, "
    "convolved with K filters of R x R, stride S (default 1) and zero padding P "
    "(default 0); e.g. 64x3x32x32:32k3s1p1"
)

#: The algorithms measured; "torch" only when PyTorch is installed.
FASTCNN_ALGORITHMS = ("direct", "im2col")

#: Operations timed per algorithm (backward_data and forward_backward are derived).
_TIMED_OPS = ("forward", "backward_weight", "backward")

_ITEMSIZE = np.dtype(np.float32).itemsize


# --------------------------------------------------------------------------- shapes


class ConvShape(NamedTuple):
    """A convolution problem: input (n, c, h, w), k filters of r x r, stride, pad."""

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    stride: int = 1
    pad: int = 0

    @property
    def p(self):
        """Output height."""
        return (self.h + 2 * self.pad - self.r) // self.stride + 1

    @property
    def q(self):
        """Output width."""
        return (self.w + 2 * self.pad - self.r) // self.stride + 1

    @property
    def flops(self):
        """Floating-point operations of one pass: ``2 * N*K*C*R*S*P*Q`` (a multiply-add is 2)."""
        return 2 * self.n * self.k * self.c * self.r * self.r * self.p * self.q

    def __str__(self):
        return f"{self.n}x{self.c}x{self.h}x{self.w}:{self.k}k{self.r}s{self.stride}p{self.pad}"

    def describe(self):
        """A longer, human-readable description."""
        return (f"N={self.n} C={self.c} {self.h}x{self.w} -> K={self.k} {self.r}x{self.r} "
                f"stride {self.stride} pad {self.pad} -> {self.p}x{self.q}; "
                f"{self.flops / 1e9:.3f} GFLOP per pass")


#: The default convolution suite: LeNet-5's two layers, then CIFAR-sized layers.
CONV_SUITE = (
    ConvShape(64, 1, 28, 28, 6, 5, 1, 2),
    ConvShape(64, 6, 14, 14, 16, 5, 1, 0),
    ConvShape(64, 3, 32, 32, 32, 3, 1, 1),
    ConvShape(64, 32, 32, 32, 32, 3, 1, 1),
    ConvShape(64, 64, 16, 16, 64, 3, 1, 1),
    ConvShape(32, 32, 32, 32, 64, 3, 2, 1),
)

_SHAPE_RE = re.compile(r"(\d+)x(\d+)x(\d+)x(\d+):(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?")


def parse_shape(text):
    """Parse ``NxCxHxW:KkR[sS][pP]`` into a :class:`ConvShape`.

    Raises
    ------
    ValueError
        With a one-line message, for a malformed string or an impossible
        geometry (zero sizes, kernel larger than the padded input).

    Examples
    --------
    >>> parse_shape("8x2x8x8:4k3")
    ConvShape(n=8, c=2, h=8, w=8, k=4, r=3, stride=1, pad=0)
    """
    m = _SHAPE_RE.fullmatch(text.strip().lower())
    if m is None:
        raise ValueError(f"bad shape {text!r}: expected NxCxHxW:KkR[sS][pP], e.g. 64x3x32x32:32k3s1p1")
    n, c, h, w, k, r = (int(g) for g in m.groups()[:6])
    stride = int(m.group(7)) if m.group(7) is not None else 1
    pad = int(m.group(8)) if m.group(8) is not None else 0
    shape = ConvShape(n, c, h, w, k, r, stride, pad)
    if min(n, c, h, w, k, r, stride) < 1:
        raise ValueError(f"bad shape {text!r}: N, C, H, W, K, R and the stride must be positive")
    if r > h + 2 * pad or r > w + 2 * pad:
        raise ValueError(f"bad shape {text!r}: kernel {r}x{r} is larger than the padded input "
                         f"{h + 2 * pad}x{w + 2 * pad}")
    return shape


# --------------------------------------------------------------------------- threads


def _loaded_openblas():
    """Paths of OpenBLAS libraries loaded in this process (Linux; empty elsewhere)."""
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


class _Blas:
    """Get and set numpy's BLAS thread count: threadpoolctl if installed, else OpenBLAS via ctypes."""

    def __init__(self):
        self._libs = []
        try:
            import threadpoolctl  # noqa: F401

            self._tpc = True
            return
        except ImportError:
            self._tpc = False
        import ctypes

        for path in _loaded_openblas():
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
        if self._tpc:
            from threadpoolctl import threadpool_info

            counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
            return counts[0] if counts else None
        return int(self._libs[0][0]()) if self._libs else None

    @contextlib.contextmanager
    def limit(self, n):
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


def _blas():
    global _BLAS
    if _BLAS is None:
        _BLAS = _Blas()
    return _BLAS


def _import_torch():
    """torch, or None when it is not installed (never a hard dependency)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


@contextlib.contextmanager
def _threads(threads, torch=None):
    """Use ``threads`` threads in fastcnn (Numba), numpy's BLAS and torch; restore after."""
    import fastcnn

    if threads is None:
        threads = fastcnn.get_num_threads()
    before = fastcnn.get_num_threads()
    torch_before = torch.get_num_threads() if torch is not None else None
    fastcnn.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with _blas().limit(threads):
            yield threads
    finally:
        fastcnn.set_num_threads(before)
        if torch is not None:
            torch.set_num_threads(torch_before)


# --------------------------------------------------------------------------- timing helpers


def _median(xs):
    return statistics.median(xs) if xs else None


def _time_call(fn, setup=None, number=1):
    """Mean seconds of ``number`` calls of ``fn(setup())`` (or ``fn()``), setup excluded."""
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


def _calls_per_sample(seconds, target):
    """Back-to-back calls per sample so that one sample lasts about ``target`` seconds."""
    if not target or seconds <= 0:
        return 1
    return max(1, min(100, int(target / seconds)))


@contextlib.contextmanager
def _no_gc():
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    blas = _blas()
    with blas.limit(threads):
        blas_threads = blas.get()
        time.sleep(settle)
        np.matmul(a, b, out=c)
        samples = []
        with _no_gc():
            for _ in range(repeat):
                t0 = time.perf_counter()
                np.matmul(a, b, out=c)
                samples.append(time.perf_counter() - t0)
    return {"gflops": 2 * n ** 3 / _median(samples) / 1e9, "n": n, "samples_s": samples,
            "blas_threads": blas_threads}


# --------------------------------------------------------------------------- workspace


def conv_workspace_bytes(shape, algorithm, op, threads=1, itemsize=_ITEMSIZE):
    """Extra memory one fastcnn convolution call allocates, computed from the code.

    Mirrors what :mod:`fastcnn.kernels` allocates besides its inputs and the
    returned arrays (y, or dx/dw/db): this is a model of the code, not a
    measurement (compare with the tracemalloc figure of :func:`bench_conv`).

    * ``direct``, at least ``CHANNEL_LAST_MIN_CHANNELS`` output channels: a
      zero-padded channel-last copy of x, the weight in the forward layout and
      one output-row buffer per thread; in backward, a channel-last copy of
      dy and one R*S*C*K partial weight gradient per thread.
    * ``direct``, fewer output channels and batch >= ``BATCHLAST_MIN_BATCH``:
      a batch-last copy of x (C*H*W*N) and per parallel task an accumulator
      of BLOCK*Q*N elements allocated inside the Numba kernel; in backward,
      batch-last copies of x and dy (K*P*Q*N).  Smaller batches: nothing.
    * ``direct`` dx, at least ``CHANNEL_LAST_MIN_CHANNELS`` input channels:
      dy's channel-last copy (unless the weight gradient made it), the weight
      padded for dx and one padded (H, W, 16) scratch image per thread; fewer
      input channels and batch >= ``BATCHLAST_MIN_BATCH``: a pixel-major
      batch-last copy of dy (P*Q*K*N, N padded to 8), the reversed weight
      (C padded to 4) and one (C, W, N) row buffer per thread.
    * ``im2col``: the cols workspace N*C*R*S*P*Q; in backward also the
      (N, K, C*R*S) per-image weight-gradient product summed afterwards (dx
      reuses cols).

    The layout copies and partial gradients of ``direct`` stay allocated in
    the kernels' workspace between calls (:func:`fastcnn.kernels.clear_workspace`),
    so they are counted as alive for the whole call.  Numba-kernel buffers are
    counted once per thread.

    Parameters
    ----------
    shape : ConvShape
    algorithm : "direct" or "im2col"
    op : "forward", "backward_weight" (no dx) or "backward" (dx, dw, db)
    threads : int
        Parallel tasks alive at once (for per-task buffers).

    Returns
    -------
    dict
        Peak bytes: ``numpy`` (allocated by numpy, which tracemalloc sees),
        ``numba`` (allocated inside Numba kernels by its runtime, which
        tracemalloc does not see) and ``total`` (both together).
    """
    from . import kernels

    block = kernels.BLOCK
    min_batch = kernels.BATCHLAST_MIN_BATCH
    cl_min = kernels.CHANNEL_LAST_MIN_CHANNELS
    dx_block = kernels.DX_BLOCK
    s = shape
    R = S = s.r
    P, Q = s.p, s.q

    if op not in _TIMED_OPS:
        raise ValueError(f"conv_workspace_bytes: op must be one of {_TIMED_OPS}, got {op!r}")
    # phases of the call: (numpy elements alive, Numba-runtime elements alive); peaks are over phases
    phases = [(0, 0)]
    if algorithm == "direct":
        channel_last = s.k >= cl_min  # forward and weight gradient
        xp = s.n * (s.h + 2 * s.pad) * (s.w + 2 * s.pad) * s.c  # padded channel-last x
        dyl = s.n * P * Q * s.k  # channel-last dy
        if op == "forward":
            if channel_last:
                kw = -(-s.k // 8) * 8  # weight columns padded to a multiple of 8
                rows = min(threads, s.n * P) * Q * kw  # one output-row buffer per task
                phases.append((xp + R * S * s.c * kw + rows, 0))
            elif s.n >= min_batch:
                tasks = -(-s.k // block) * P
                phases.append((s.c * s.h * s.w * s.n, min(threads, tasks) * block * Q * s.n))
        else:
            base = 0  # the weight gradient's copies, kept in the workspace
            if channel_last:
                base = xp + dyl + min(threads, s.n) * R * S * s.c * s.k  # and one partial dw per task
            elif s.n >= min_batch:
                base = s.k * P * Q * s.n + s.c * s.h * s.w * s.n  # batch-last dy and x
            phases.append((base, 0))
            if op == "backward" and s.c >= cl_min:
                wt = R * S * s.k * -(-s.c // 8) * 8  # weight for dx, columns padded to 8
                hp = max(s.h + 2 * s.pad, (P - 1) * s.stride + R)
                wp = max(s.w + 2 * s.pad, (Q - 1) * s.stride + S)
                frames = min(threads, s.n * -(-s.c // dx_block)) * hp * wp * dx_block  # one per task
                phases.append((base + (0 if channel_last else dyl) + wt + frames, 0))
            elif op == "backward" and s.n >= min_batch:
                nw, cw = -(-s.n // 8) * 8, -(-s.c // 4) * 4  # images and channels padded
                dyb = P * Q * s.k * nw  # pixel-major batch-last dy
                rows = min(threads, s.h) * cw * s.w * nw  # one dx row buffer per task
                phases.append((base + dyb + cw * R * S * s.k + rows, 0))
    elif algorithm == "im2col":
        cols = s.n * s.c * R * S * P * Q
        phases.append((cols, 0))
        if op != "forward":
            phases.append((cols + s.n * s.k * s.c * R * S, 0))  # per-image dW products, then summed
    else:
        raise ValueError(f"conv_workspace_bytes: unknown algorithm {algorithm!r}")
    return {"numpy": max(p[0] for p in phases) * itemsize,
            "numba": max(p[1] for p in phases) * itemsize,
            "total": max(p[0] + p[1] for p in phases) * itemsize}


def _traced_extra_bytes(fn):
    """Peak bytes traced by tracemalloc during ``fn()``, minus the arrays it returns.

    numpy registers its array buffers with tracemalloc; Numba's runtime (NRT)
    allocations inside kernels are not traced.  The kernels' workspace is
    emptied first, so the scratch arrays they keep between calls count.
    """
    from . import kernels

    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        kernels.clear_workspace()  # so the call allocates (and tracemalloc sees) its scratch arrays
        gc.collect()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if started:
            tracemalloc.stop()
    outs = out if isinstance(out, tuple) else (out,)
    returned = sum(a.nbytes for a in outs if isinstance(a, np.ndarray))
    return max(0, peak - before - returned)


# --------------------------------------------------------------------------- conv benchmark


def _conv_ops(shape, algorithm, arrays, torch=None):
    """{op: (fn, setup)} for one algorithm; fn(setup()) is what is timed."""
    x, w, b, dy = arrays
    st, pd = shape.stride, shape.pad
    if algorithm in FASTCNN_ALGORITHMS:
        from . import kernels

        fwd, bwd = {
            "direct": (kernels.conv2d_forward, kernels.conv2d_backward),
            "im2col": (kernels.conv2d_forward_im2col, kernels.conv2d_backward_im2col),
        }[algorithm]
        return {
            "forward": (lambda: fwd(x, w, b, st, pd), None),
            "backward_weight": (lambda: bwd(dy, x, w, st, pd, need_input_grad=False), None),
            "backward": (lambda: bwd(dy, x, w, st, pd), None),
        }
    F = torch.nn.functional
    xt, wt, bt, dyt = (torch.from_numpy(a) for a in arrays)
    wr = wt.clone().requires_grad_(True)
    br = bt.clone().requires_grad_(True)
    xr = xt.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            return F.conv2d(xt, wt, bt, st, pd)

    def graph_weight():  # x needs no gradient: autograd skips dx
        return F.conv2d(xt, wr, br, st, pd)

    def graph_full():
        return F.conv2d(xr, wr, br, st, pd)

    return {
        "forward": (forward, None),
        "backward_weight": (lambda y: torch.autograd.grad(y, (wr, br), dyt), graph_weight),
        "backward": (lambda y: torch.autograd.grad(y, (xr, wr, br), dyt), graph_full),
    }


def bench_conv(shape, repeat=7, threads=None, peak_gflops=None, algorithms=None, memory=True, seed=0,
               settle=0.15, min_sample=0.02):
    """Time one convolution shape with fastcnn's direct and im2col algorithms and PyTorch.

    For each algorithm, the median over ``repeat`` interleaved repeats of:
    ``forward``; ``backward_weight`` (dw and db only: fastcnn's
    ``need_input_grad=False``, torch's autograd with ``x.requires_grad=False``);
    ``backward`` (dx, dw, db).  Derived: ``backward_data`` = backward -
    backward_weight, ``forward_backward`` = forward + backward (per repeat).
    The torch forward runs under ``torch.no_grad()``; its backward times
    ``torch.autograd.grad`` on a graph built (untimed) just before.

    Parameters
    ----------
    shape : ConvShape or str
    repeat : int
        Timed repeats, after a warm-up call of everything.  Within a repeat the
        algorithms take turns (in a rotating order), each timing its three
        operations back to back.
    threads : int, optional
        Threads for fastcnn, numpy's BLAS and torch (default: fastcnn's current count).
    peak_gflops : float, optional
        The practical peak for the ``peak_fraction`` figures (see :func:`measure_peak_gflops`).
    algorithms : sequence of str, optional
        Default: direct, im2col, and torch when installed.
    memory : bool
        Also measure numpy's peak extra memory per fastcnn call with tracemalloc.
    seed : int
        Seeds the random inputs.
    settle : float
        Seconds of sleep before each algorithm's turn.  OpenMP (Numba's and
        PyTorch's) and OpenBLAS worker threads busy-wait for a while after
        their work; without the pause they steal cores from the next library
        measured, an artifact of measuring several libraries in one process.
    min_sample : float
        An operation quicker than this is called back to back several times
        (up to 100) per sample and the mean taken, so that a sample lasts
        about ``min_sample`` seconds; ``calls_per_sample`` in the result.

    Returns
    -------
    dict
        ``shape``, ``dims``, ``flops_per_pass``, ``repeat``, ``threads``,
        ``algorithms`` (per algorithm: ``samples_s``, ``median_s``, ``gflops``,
        ``peak_fraction``, ``vs_torch``, and for fastcnn ``workspace_bytes``
        (computed) and ``traced_extra_bytes``), ``winner``.
    """
    if isinstance(shape, str):
        shape = parse_shape(shape)
    if repeat < 1:
        raise ValueError(f"bench_conv: repeat must be >= 1, got {repeat}")
    torch = _import_torch()
    if algorithms is None:
        algorithms = FASTCNN_ALGORITHMS + (("torch",) if torch is not None else ())
    algorithms = tuple(algorithms)
    if "torch" in algorithms and torch is None:
        raise ImportError("bench_conv: algorithm 'torch' needs PyTorch installed")

    rng = np.random.default_rng(seed)
    s = shape
    x = rng.standard_normal((s.n, s.c, s.h, s.w), dtype=np.float32)
    w = rng.standard_normal((s.k, s.c, s.r, s.r), dtype=np.float32) / np.float32(math.sqrt(s.c * s.r * s.r))
    b = rng.standard_normal(s.k, dtype=np.float32)
    dy = rng.standard_normal((s.n, s.k, s.p, s.q), dtype=np.float32)

    result = {
        "shape": str(s),
        "dims": s._asdict() | {"p": s.p, "q": s.q},
        "flops_per_pass": s.flops,
        "repeat": repeat,
        "settle_s": settle,
        "algorithms": {},
    }
    with _threads(threads, torch if "torch" in algorithms else None) as nthreads:
        result["threads"] = nthreads
        ops = {a: _conv_ops(s, a, (x, w, b, dy), torch) for a in algorithms}
        for a in algorithms:  # warm-up: compile / load kernels, first-touch memory
            for fn, setup in ops[a].values():
                _time_call(fn, setup)
        number = {a: {op: _calls_per_sample(_time_call(*ops[a][op]), min_sample) for op in _TIMED_OPS}
                  for a in algorithms}
        samples = {a: {op: [] for op in _TIMED_OPS} for a in algorithms}
        with _no_gc():
            for i in range(repeat):
                for a in algorithms[i % len(algorithms):] + algorithms[:i % len(algorithms)]:
                    if settle:
                        time.sleep(settle)  # let the previous library's spinning threads sleep
                    for op in _TIMED_OPS:
                        fn, setup = ops[a][op]
                        samples[a][op].append(_time_call(fn, setup, number[a][op]))
        if memory:
            traced = {a: {op: _traced_extra_bytes(ops[a][op][0]) for op in _TIMED_OPS}
                      for a in algorithms if a in FASTCNN_ALGORITHMS}

    flops = {"forward": s.flops, "backward_weight": s.flops, "backward_data": s.flops,
             "backward": 2 * s.flops, "forward_backward": 3 * s.flops}
    for a in algorithms:
        sm = samples[a]
        med = {op: _median(sm[op]) for op in _TIMED_OPS}
        med["backward_data"] = med["backward"] - med["backward_weight"]  # derived
        med["forward_backward"] = _median([f + g for f, g in zip(sm["forward"], sm["backward"])])
        gflops = {op: (flops[op] / t / 1e9 if t and t > 0 else None) for op, t in med.items()}
        entry = {
            "calls_per_sample": number[a],
            "samples_s": sm,
            "median_s": med,
            "gflops": gflops,
            "peak_fraction": {op: (g / peak_gflops if g is not None and peak_gflops else None)
                              for op, g in gflops.items()},
        }
        if a in FASTCNN_ALGORITHMS:
            entry["workspace_bytes"] = {op: conv_workspace_bytes(s, a, op, result["threads"])
                                        for op in _TIMED_OPS}
            entry["traced_extra_bytes"] = traced[a] if memory else None
        result["algorithms"][a] = entry
    if "torch" in algorithms:
        tmed = result["algorithms"]["torch"]["median_s"]
        for a in algorithms:
            med = result["algorithms"][a]["median_s"]
            result["algorithms"][a]["vs_torch"] = {
                op: (tmed[op] / med[op] if med[op] and med[op] > 0 and tmed[op] > 0 else None)
                for op in ("forward", "backward", "forward_backward")
            }
    result["winner"] = {
        op: min(algorithms, key=lambda a: result["algorithms"][a]["median_s"][op])
        for op in ("forward", "backward", "forward_backward")
    }
    return result


def run_conv_suite(shapes=CONV_SUITE, repeat=7, threads=None, log=None, memory=True, settle=0.15):
    """:func:`bench_conv` for every shape, with the peak measured before and after.

    ``log`` (e.g. ``print`` to stderr) receives one progress line per shape.
    Returns a dict with ``machine``, ``peak``, ``shapes`` (the bench_conv results).
    """
    import fastcnn

    log = log or (lambda *_: None)
    torch = _import_torch()
    if threads is None:
        threads = fastcnn.get_num_threads()
    log(f"measuring the practical peak (numpy float32 sgemm, {threads} threads) ...")
    peak_before = measure_peak_gflops(threads=threads)
    results = []
    for i, shape in enumerate(shapes):
        log(f"[{i + 1}/{len(shapes)}] {shape} ({shape.describe()}) ...")
        results.append(bench_conv(shape, repeat, threads, peak_before["gflops"], memory=memory,
                                  settle=settle))
    peak_after = measure_peak_gflops(threads=threads)
    samples = peak_before["samples_s"] + peak_after["samples_s"]
    n = peak_before["n"]
    peak = {"gflops": 2 * n ** 3 / _median(samples) / 1e9, "n": n, "samples_s": samples,
            "blas_threads": peak_before["blas_threads"],
            "gflops_before": peak_before["gflops"], "gflops_after": peak_after["gflops"]}
    for r in results:  # one peak for the whole run
        for entry in r["algorithms"].values():
            entry["peak_fraction"] = {op: (g / peak["gflops"] if g is not None else None)
                                      for op, g in entry["gflops"].items()}
    with _threads(threads, torch):
        machine = machine_info(threads, torch)
    return {"benchmark": "conv", "machine": machine, "peak": peak,
            "repeat": repeat, "threads": threads, "shapes": results}


# --------------------------------------------------------------------------- training benchmark


def _train_data(n, seed=0):
    """n MNIST images as float32 in [0, 1] with labels: the packaged sample, tiled if needed."""
    from .data import load_sample, to_float

    try:
        (x, y), _ = load_sample()
        source = "MNIST sample"
    except (FileNotFoundError, ValueError):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        source = "random"
    if len(x) < n:
        reps = -(-n // len(x))
        x, y = np.concatenate([x] * reps), np.concatenate([y] * reps)
    return to_float(x[:n], np.float32), np.ascontiguousarray(y[:n], dtype=np.int64), source


def _torch_lenet5(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def bench_train(threads=None, batches=50, repeat=7, batch_size=64, lr=0.01, momentum=0.9,
                weight_decay=5e-4, seed=0, settle=0.2):
    """LeNet-5 training throughput: fastcnn's ``Sequential.fit`` vs a plain PyTorch loop.

    Each repeat trains one epoch of ``batches`` batches of ``batch_size``
    float32 MNIST images (shuffled) with SGD(lr, momentum, weight_decay): fastcnn
    through ``model.fit``, PyTorch with zero_grad / forward / cross_entropy /
    backward / step; the two alternate (which goes first alternates too), with
    the same thread count, with a ``settle`` seconds pause before each run (so
    the other library's busy-waiting worker threads are asleep).  A two-batch
    warm-up of each is excluded.

    Returns
    -------
    dict
        ``images``, ``data``, ``threads``, per framework ``samples_s``,
        ``median_s``, ``images_per_s``, ``step_ms``, and ``ratio`` (fastcnn
        images/s over torch's).
    """
    import fastcnn
    from .models import lenet5
    from .optim import SGD

    if batches < 1 or repeat < 1 or batch_size < 1:
        raise ValueError("bench_train: batches, repeat and batch_size must be >= 1")
    torch = _import_torch()
    n = batches * batch_size
    x, y, source = _train_data(n, seed)

    fastcnn.manual_seed(seed)
    model = lenet5()
    opt = SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def run_fastcnn(xs, ys, epoch_seed):
        model.fit(xs, ys, epochs=1, batch_size=batch_size, optimizer=opt, verbose=False, seed=epoch_seed)

    runners = {"fastcnn": run_fastcnn}
    if torch is not None:
        torch.manual_seed(seed)
        tmodel = _torch_lenet5(torch)
        topt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        F = torch.nn.functional

        def run_torch(xs, ys, epoch_seed):
            xs, ys = torch.from_numpy(xs), torch.from_numpy(ys)
            order = torch.from_numpy(np.random.default_rng(epoch_seed).permutation(len(xs)))
            tmodel.train()
            for lo in range(0, len(xs), batch_size):
                idx = order[lo:lo + batch_size]
                xb, yb = xs[idx], ys[idx]
                topt.zero_grad()
                loss = F.cross_entropy(tmodel(xb), yb)
                loss.backward()
                topt.step()

        runners["torch"] = run_torch

    names = tuple(runners)
    samples = {name: [] for name in names}
    with _threads(threads, torch) as nthreads:
        warm = min(n, 2 * batch_size)
        for name in names:
            runners[name](x[:warm], y[:warm], seed)
        with _no_gc():
            for i in range(repeat):
                order = names if i % 2 == 0 else names[::-1]
                for name in order:
                    time.sleep(settle)
                    t0 = time.perf_counter()
                    runners[name](x, y, seed + 1 + i)
                    samples[name].append(time.perf_counter() - t0)
        machine = machine_info(nthreads, torch)
    result = {"benchmark": "train", "model": "LeNet-5", "images": n, "batches": batches,
              "batch_size": batch_size, "repeat": repeat, "data": source, "threads": nthreads,
              "optimizer": {"lr": lr, "momentum": momentum, "weight_decay": weight_decay},
              "frameworks": {}}
    for name in names:
        med = _median(samples[name])
        result["frameworks"][name] = {"samples_s": samples[name], "median_s": med,
                                      "images_per_s": n / med, "step_ms": 1e3 * med / batches}
    fw = result["frameworks"]
    result["ratio"] = fw["fastcnn"]["images_per_s"] / fw["torch"]["images_per_s"] if "torch" in fw else None
    result["machine"] = machine
    return result


# --------------------------------------------------------------------------- start-up benchmark

_STARTUP_FASTCNN = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastcnn
t1 = time.perf_counter()
fastcnn.manual_seed(0)
model = fastcnn.models.lenet5()
opt = fastcnn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
rng = np.random.default_rng(0)
x = rng.random((64, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, 64)
t2 = time.perf_counter()
model.fit(x, y, epochs=1, batch_size=64, optimizer=opt, verbose=False)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "step_s": t3 - t2}))
"""

_STARTUP_TORCH = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
t1 = time.perf_counter()
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.random((64, 1, 28, 28), dtype=np.float32))
y = torch.from_numpy(rng.integers(0, 10, 64))
t2 = time.perf_counter()
opt.zero_grad()
F.cross_entropy(model(x), y).backward()
opt.step()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "step_s": t3 - t2}))
"""


def _run_script(script, env, timeout):
    """Run ``script`` in a fresh interpreter; (wall seconds, its JSON line) or raise RuntimeError."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"start-up script failed (exit {proc.returncode}): {last}")
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(inner, wall_s=wall)


def _summarise_runs(runs):
    keys = ("wall_s", "import_s", "build_s", "step_s")
    return {"runs": runs, "median": {k: _median([r[k] for r in runs]) for k in keys}}


def bench_startup(repeat=3, cold=True, torch=True, timeout=600):
    """Cold-start time of a fresh process: import, build LeNet-5, one training step.

    Each run is ``sys.executable -c ...`` timed from the parent (wall, which
    includes the interpreter's own start and exit) and reports its import,
    build and first-step times.  fastcnn runs with the current Numba cache
    (``NUMBA_CACHE_DIR`` as in this environment); one warm-up run fills it and
    is excluded, then ``repeat`` runs alternate with PyTorch's (the same
    network and step), and medians are reported.  ``cold=True`` adds one
    fastcnn run with a fresh, empty ``NUMBA_CACHE_DIR``: the first-ever
    compile time.

    Returns
    -------
    dict
        ``fastcnn`` and ``torch`` (each ``runs`` and ``median``), ``fastcnn_cold``
        (one run) when asked, ``numba_cache_dir``.
    """
    env = dict(os.environ)
    torch_installed = _torch_version() is not None
    do_torch = torch and torch_installed
    scripts = {"fastcnn": _STARTUP_FASTCNN}
    if do_torch:
        scripts["torch"] = _STARTUP_TORCH
    for name, script in scripts.items():  # warm-up: fills the Numba cache, the OS file cache
        _run_script(script, env, timeout)
    runs = {name: [] for name in scripts}
    names = tuple(scripts)
    for i in range(repeat):
        for name in (names if i % 2 == 0 else names[::-1]):
            runs[name].append(_run_script(scripts[name], env, timeout))
    result = {"benchmark": "startup", "repeat": repeat,
              "numba_cache_dir": env.get("NUMBA_CACHE_DIR") or "(default: __pycache__ next to the sources)",
              "fastcnn_cache_enabled": env.get("FASTCNN_CACHE", "1") != "0"}
    for name in names:
        result[name] = _summarise_runs(runs[name])
    if cold:
        tmp = tempfile.mkdtemp(prefix="fastcnn-numba-cache-")
        try:
            cold_env = dict(env, NUMBA_CACHE_DIR=tmp)
            result["fastcnn_cold"] = _summarise_runs([_run_script(_STARTUP_FASTCNN, cold_env, timeout)])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = machine_info()
    return result


# --------------------------------------------------------------------------- machine info


def _version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _torch_version():
    return _version("torch")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def machine_info(threads=None, torch=None):
    """CPU model, core counts, thread counts and library versions, for the JSON reports."""
    import numba

    import fastcnn

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads if threads is not None else fastcnn.get_num_threads(),
        "numba_max_threads": numba.config.NUMBA_NUM_THREADS,
        "blas_threads": _blas().get(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "fastcnn": fastcnn.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": _torch_version(),
        "matplotlib": _version("matplotlib"),
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "fastcnn_cache": os.environ.get("FASTCNN_CACHE", "1") != "0",
        "fastcnn_fastmath": os.environ.get("FASTCNN_FASTMATH", "1") != "0",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


# --------------------------------------------------------------------------- formatting


def _table(headers, rows, align=None):
    """Plain-text table; a row given as a string is printed as is (a section line).

    ``align`` is a string of '<' / '>' per column (default: first left, others right).
    """
    grid = [[str(h) for h in headers]] + [
        r if isinstance(r, str) else ["" if c is None else str(c) for c in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in grid if not isinstance(r, str)) for i in range(len(headers))]
    align = align or "<" + ">" * (len(headers) - 1)
    lines = []
    for j, r in enumerate(grid):
        if isinstance(r, str):
            lines.append(r)
        else:
            lines.append("  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ms(t):
    if t is None:
        return "-"
    v = 1e3 * t
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def _gf(g):
    return "-" if g is None else f"{g:.1f}" if g < 100 else f"{g:.0f}"


def _pct(f):
    return "-" if f is None else f"{100 * f:.0f}%"


def _ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def _bytes(n):
    if n is None:
        return "-"
    if n == 0:
        return "0"
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _threads_text(n):
    return f"{n} thread{'' if n == 1 else 's'}"


def _machine_line(m):
    return (f"{m.get('cpu_model')}; {m.get('usable_cores')} usable cores; {_threads_text(m.get('threads'))} "
            f"(BLAS {m.get('blas_threads')}); numpy {m.get('numpy')}, numba {m.get('numba')}, "
            f"torch {m.get('torch') or 'not installed'}")


def format_conv(suite):
    """The tables of a :func:`run_conv_suite` result."""
    peak = suite["peak"]
    shapes = suite["shapes"]
    has_torch = any("torch" in r["algorithms"] for r in shapes)
    out = [
        f"Convolution benchmark, float32, {_threads_text(suite['threads'])}: medians of {suite['repeat']} "
        f"interleaved repeats (quick operations: mean of several calls per repeat)",
        f"machine: {_machine_line(suite['machine'])}",
        f"practical peak: numpy float32 sgemm {peak['n']}^3 = {peak['gflops']:.1f} GFLOP/s "
        f"(median of {len(peak['samples_s'])}, before and after the shapes: "
        f"{peak['gflops_before']:.1f} / {peak['gflops_after']:.1f})",
        "",
    ]
    headers = ["algorithm", "fwd ms", "GF/s", "%pk", "bwd-w ms", "GF/s", "bwd-d* ms", "GF/s",
               "bwd ms", "f+b ms", "GF/s", "%pk"]
    if has_torch:
        headers += ["fwd vs torch", "f+b vs torch"]
    rows = []
    for r in shapes:
        rows.append(f"{r['shape']}  ({r['dims']['p']}x{r['dims']['q']} output, "
                    f"{r['flops_per_pass'] / 1e9:.3f} GFLOP per pass)")
        for a, e in r["algorithms"].items():
            med, g, pf = e["median_s"], e["gflops"], e["peak_fraction"]
            mark = " *" if r["winner"]["forward_backward"] == a else ""
            row = [f"  {a}{mark}", _ms(med["forward"]), _gf(g["forward"]), _pct(pf["forward"]),
                   _ms(med["backward_weight"]), _gf(g["backward_weight"]),
                   _ms(med["backward_data"]), _gf(g["backward_data"]),
                   _ms(med["backward"]), _ms(med["forward_backward"]), _gf(g["forward_backward"]),
                   _pct(pf["forward_backward"])]
            if has_torch:
                vt = e.get("vs_torch") or {}
                row += ["" if a == "torch" else _ratio(vt.get("forward")),
                        "" if a == "torch" else _ratio(vt.get("forward_backward"))]
            rows.append(row)
    out.append(_table(headers, rows))
    out.append("")
    out.append("fwd: forward; bwd-w: weight+bias gradient only (no dx); bwd-d*: input gradient, DERIVED as "
               "bwd - bwd-w; bwd: dx, dw, db; f+b: fwd + bwd (training step of the layer). GF/s counts "
               "2*N*K*C*R*S*P*Q FLOPs per pass (f+b: 3 passes); %pk: share of the sgemm peak above.")
    if has_torch:
        out.append("vs torch: torch's time / this time (above 1x: faster than PyTorch). torch forward under "
                   "no_grad; torch backward = autograd.grad on a graph built untimed.")
    out.append(f"Each algorithm's turn starts after a {shapes[0]['settle_s']:g} s pause, so the worker threads "
               "of the library measured before it (OpenMP, OpenBLAS) have stopped spinning.")
    out.append("* fastest forward+backward for the shape.")
    out.append("")

    mem_rows = []
    for r in shapes:
        for a, e in r["algorithms"].items():
            if a not in FASTCNN_ALGORITHMS:
                continue
            ws, tr = e["workspace_bytes"], e.get("traced_extra_bytes") or {}
            mem_rows.append([
                r["shape"], a,
                *(_bytes(ws[op]["total"]) + (f" ({_bytes(ws[op]['numba'])} in Numba)" if ws[op]["numba"] else "")
                  for op in _TIMED_OPS),
                *(_bytes(tr.get(op)) for op in _TIMED_OPS),
            ])
    out.append("Extra memory per call, beyond inputs and outputs (fastcnn; PyTorch's allocator is not measured)")
    out.append(_table(["shape", "algorithm", "computed fwd", "computed bwd-w", "computed bwd",
                       "traced fwd", "traced bwd-w", "traced bwd"], mem_rows, "<<>>>>>>"))
    out.append("computed: from a model of what the code allocates (fastcnn.bench.conv_workspace_bytes), "
               "Numba-kernel buffers counted once per thread. traced: tracemalloc peak during one call minus "
               "the returned arrays; it sees numpy's allocations but not those made inside Numba kernels (NRT).")
    out.append("")

    sum_rows = []
    for r in shapes:
        algos = r["algorithms"]
        best = min((a for a in algos if a in FASTCNN_ALGORITHMS),
                   key=lambda a: algos[a]["median_s"]["forward_backward"])
        row = [r["shape"], r["winner"]["forward"], r["winner"]["backward"], r["winner"]["forward_backward"],
               best, _gf(algos[best]["gflops"]["forward_backward"])]
        if "torch" in algos:
            row.append(_ratio(algos[best]["vs_torch"]["forward_backward"]))
        sum_rows.append(row)
    headers = ["shape", "fastest fwd", "fastest bwd", "fastest f+b", "best fastcnn", "GF/s f+b"]
    if has_torch:
        headers.append("vs torch f+b")
    out.append("Winners")
    out.append(_table(headers, sum_rows, "<<<<<>>"))
    return "\n".join(out)


def format_train(result):
    """The table of a :func:`bench_train` result."""
    fw = result["frameworks"]
    rows = []
    for name, e in fw.items():
        rows.append([name, f"{e['images_per_s']:,.0f}", f"{e['step_ms']:.2f}",
                     ", ".join(f"{s:.3f}" for s in e["samples_s"])])
    opt = result["optimizer"]
    out = [
        f"LeNet-5 training, batch {result['batch_size']}, float32, SGD lr={opt['lr']:g} "
        f"momentum={opt['momentum']:g} weight_decay={opt['weight_decay']:g}; {_threads_text(result['threads'])}",
        f"machine: {_machine_line(result['machine'])}",
        f"{result['batches']} batches ({result['images']} images, {result['data']}) per repeat; median of "
        f"{result['repeat']} interleaved repeats, warm-up excluded",
        "",
        _table(["framework", "images/s", "ms/step", "repeats (s)"], rows, "<>><"),
        "",
    ]
    if result["ratio"] is not None:
        out.append(f"fastcnn / torch throughput: {result['ratio']:.2f}x "
                   f"({'faster' if result['ratio'] >= 1 else 'slower'} than PyTorch)")
    else:
        out.append("PyTorch is not installed: no comparison.")
    out.append("fastcnn trains through Sequential.fit (which also tracks loss and accuracy); PyTorch through "
               "a plain loop: zero_grad, forward, F.cross_entropy, backward, step.")
    return "\n".join(out)


def format_startup(result):
    """The table of a :func:`bench_startup` result."""
    rows = []
    labels = {"fastcnn": "fastcnn (warm Numba cache)", "torch": "torch",
              "fastcnn_cold": "fastcnn (empty Numba cache)"}
    for key in ("fastcnn", "torch", "fastcnn_cold"):
        if key not in result:
            continue
        m = result[key]["median"]
        n = len(result[key]["runs"])
        rows.append([labels[key], f"{m['wall_s']:.2f}", f"{m['import_s']:.2f}", f"{m['build_s']:.3f}",
                     f"{m['step_s']:.2f}", str(n)])
    out = [
        "Start-up: a fresh process imports, builds LeNet-5 and runs one training step (batch 64)",
        f"machine: {_machine_line(result['machine'])}",
        f"Numba cache: {result['numba_cache_dir']}"
        + ("" if result["fastcnn_cache_enabled"] else " (disabled by FASTCNN_CACHE=0)"),
        "",
        _table(["", "process s", "import s", "build s", "1st step s", "runs"], rows, "<>>>>>"),
        "",
        "process: wall time of the whole subprocess (interpreter start and exit included), median of the runs "
        "after one warm-up run; import/build/1st step: measured inside it. Empty cache: one run with a fresh "
        "NUMBA_CACHE_DIR, i.e. the first-ever compile of every kernel the step uses.",
    ]
    if "torch" not in result:
        out.append("PyTorch is not installed: no comparison.")
    return "\n".join(out)


# --------------------------------------------------------------------------- output files


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, payload):
    """Write ``payload`` (a benchmark result) as indented JSON."""
    with open(path, "w") as f:
        json.dump(_jsonable(payload), f, indent=1)
        f.write("\n")


def require_matplotlib():
    """Import matplotlib, or raise ImportError saying how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'fastcnn[plot]'") from None


def plot_conv(suite, path):
    """Bar chart of a :func:`run_conv_suite` result: GFLOP/s per shape and algorithm, fwd and fwd+bwd.

    Written with matplotlib's Agg canvas (no pyplot, no display needed).
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shapes = suite["shapes"]
    algos = []
    for r in shapes:
        for a in r["algorithms"]:
            if a not in algos:
                algos.append(a)
    colors = {"direct": "#1f77b4", "im2col": "#ff7f0e", "torch": "#7f7f7f"}
    fig = Figure(figsize=(max(8.0, 1.6 * len(shapes) + 3), 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(1, len(algos))
    xs = np.arange(len(shapes))
    peak = suite["peak"]["gflops"]
    for ax, op, title in ((axes[0], "forward", "forward"),
                          (axes[1], "forward_backward", "forward + backward (dx, dw, db)")):
        top = peak
        for j, a in enumerate(algos):
            vals = [r["algorithms"].get(a, {}).get("gflops", {}).get(op) or 0.0 for r in shapes]
            top = max([top] + vals)
            bars = ax.bar(xs + (j - (len(algos) - 1) / 2) * width, vals, width, label=a,
                          color=colors.get(a))
            ax.bar_label(bars, labels=[f"{v:.0f}" if v else "" for v in vals], fontsize=7, padding=1)
        ax.axhline(peak, color="k", linestyle="--", linewidth=1)
        ax.text(len(shapes) - 0.5, peak, f"sgemm peak {peak:.0f}", ha="right", va="bottom", fontsize=8)
        ax.set_ylim(0, top * 1.12)
        ax.set_ylabel("GFLOP/s")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].set_xticks(xs, [str(r["shape"]) for r in shapes], rotation=20, ha="right", fontsize=8)
    m = suite["machine"]
    fig.suptitle(f"fastcnn convolution, float32, {_threads_text(suite['threads'])}, median of {suite['repeat']} "
                 f"(higher is better)\n{m.get('cpu_model')}; numba {m.get('numba')}, "
                 f"torch {m.get('torch') or 'n/a'}", fontsize=10)
    fig.savefig(path, dpi=110)


# --------------------------------------------------------------------------- model-zoo benchmark

#: Models timed by :func:`bench_models`: name -> (fastcnn builder name, description).
BENCH_MODELS = {
    "vgg_small": "VGG-small-BN (3 stages 32-64-128, 2 convs each, FC 256; 815k params)",
    "resnet_small": "ResNet-small (16-32-64, 2 basic blocks per stage, GAP head; 175k params)",
}


def _torch_vgg_small(torch, num_classes=10, in_channels=3, widths=(32, 64, 128), fc_units=256, image_size=32):
    """PyTorch twin of :func:`fastcnn.models.vgg_small` (batch norm, bias-free convs, flatten head)."""
    nn = torch.nn
    layers, c, size = [], in_channels, image_size
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            c = width
        layers.append(nn.MaxPool2d(2))
        size //= 2
    layers += [nn.Flatten(), nn.Linear(c * size * size, fc_units), nn.ReLU(), nn.Linear(fc_units, num_classes)]
    return nn.Sequential(*layers)


def _torch_resnet_small(torch, num_classes=10, in_channels=3, widths=(16, 32, 64), blocks_per_stage=2):
    """PyTorch twin of :func:`fastcnn.models.resnet_small` (same layers, same parameter order)."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = nn.Sequential()
            if stride != 1 or c_in != c_out:
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                              nn.BatchNorm2d(c_out))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + self.shortcut(x))

    layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    c = widths[0]
    for s, width in enumerate(widths):
        for b in range(blocks_per_stage):
            layers.append(BasicBlock(c, width, 2 if s > 0 and b == 0 else 1))
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


_TORCH_TWINS = {"vgg_small": _torch_vgg_small, "resnet_small": _torch_resnet_small}


def _fastcnn_step(model, x, y):
    """One forward + backward of ``model`` on (x, y): zero the gradients, forward, cross-entropy, backward."""
    from .kernels import softmax_cross_entropy

    params = model.parameters()

    def step():
        for p in params:
            p.grad.fill(0)
        out = model.forward(x)
        _, dout = softmax_cross_entropy(out, y)
        model.backward(dout)

    return step


def _torch_step(torch, tmodel, x, y):
    F = torch.nn.functional
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        tmodel.zero_grad()
        F.cross_entropy(tmodel(xt), yt).backward()

    return step


def bench_models(threads=None, batch=64, repeat=5, models=("vgg_small", "resnet_small"), seed=0, settle=0.2,
                 target=0.25, algorithm="direct"):
    """Forward + backward time per batch of the model zoo's CIFAR-sized networks, fastcnn vs PyTorch.

    For each model in ``models`` (``"vgg_small"``, ``"resnet_small"``) one
    step is: zero the gradients, forward a batch of ``batch`` float32
    3x32x32 random images (10 classes, train mode, so BatchNorm uses batch
    statistics), softmax cross-entropy, backward; no optimizer step.  PyTorch
    runs its twin of the same architecture (``_torch_vgg_small``,
    ``_torch_resnet_small``: equal parameter counts and order).

    Measurement discipline as :func:`bench_train`: the same thread count for
    both (and BLAS); two warm-up steps of each excluded (JIT compilation,
    first-touch memory); then ``repeat`` rounds in which every (model,
    framework) pair is timed once, in an order rotated by one place every
    round, each after a ``settle`` seconds pause (so the other library's
    busy-waiting worker threads are asleep); medians over the rounds.  A
    sample is ``calls`` back-to-back steps, ``calls`` chosen from the second
    warm-up step so that a sample lasts about ``target`` seconds (1 for slow
    steps); times are reported per step.

    Parameters
    ----------
    threads : int, optional
        Threads for fastcnn (Numba), BLAS and PyTorch; default fastcnn's current count.
    batch : int
        Images per step.
    repeat : int
        Timed rounds (the median is over these).
    models : sequence of str
        Names from :data:`BENCH_MODELS`.
    seed : int
        Seeds the weights and the random batch.
    settle : float
        Seconds of pause before every timed sample.
    target : float
        Seconds one sample should last (more calls per sample for fast steps).
    algorithm : {"direct", "im2col"}
        fastcnn's convolution algorithm.

    Returns
    -------
    dict
        ``benchmark`` ("models"), ``batch``, ``repeat``, ``threads``,
        ``input_shape``, ``algorithm``, ``models``: per model ``description``,
        ``params`` (fastcnn's count; ``torch_params`` too) and ``frameworks``:
        per framework ``calls``, ``samples_s`` (per step), ``median_s``,
        ``ms_per_batch``, ``images_per_s``; and ``ratio``: torch's median time
        over fastcnn's (fastcnn's throughput relative to PyTorch's: above 1 is
        faster), None without torch; ``machine``.
    """
    import fastcnn
    from .models import get_model

    for name, value in (("batch", batch), ("repeat", repeat)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"bench_models: {name} must be an int >= 1, got {value!r}")
    models = tuple(models)
    unknown = [m for m in models if m not in BENCH_MODELS]
    if unknown or not models:
        raise ValueError(f"bench_models: models must be names from {sorted(BENCH_MODELS)}, got {list(models)}")
    torch = _import_torch()
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)

    result = {"benchmark": "models", "batch": batch, "repeat": repeat, "settle": settle, "input_shape": (3, 32, 32),
              "algorithm": algorithm, "models": {}}
    steps = {}
    for name in models:
        fastcnn.manual_seed(seed)
        model = get_model(name, algorithm=algorithm).train()
        entry = {"description": BENCH_MODELS[name], "params": sum(p.size for p in model.parameters()),
                 "frameworks": {}}
        steps[(name, "fastcnn")] = _fastcnn_step(model, x, y)
        if torch is not None:
            torch.manual_seed(seed)
            tmodel = _TORCH_TWINS[name](torch).train()
            entry["torch_params"] = sum(p.numel() for p in tmodel.parameters())
            steps[(name, "torch")] = _torch_step(torch, tmodel, x, y)
        result["models"][name] = entry

    keys = list(steps)
    samples = {key: [] for key in keys}
    calls = {}
    with _threads(threads, torch) as nthreads:
        for key in keys:
            steps[key]()
            calls[key] = _calls_per_sample(_time_call(steps[key]), target)
        with _no_gc():
            for i in range(repeat):
                shift = i % len(keys)
                for key in keys[shift:] + keys[:shift]:
                    time.sleep(settle)
                    fn, number = steps[key], calls[key]
                    t0 = time.perf_counter()
                    for _ in range(number):
                        fn()
                    samples[key].append((time.perf_counter() - t0) / number)
        machine = machine_info(nthreads, torch)
    result["threads"] = nthreads
    for (name, fw), xs in samples.items():
        med = _median(xs)
        result["models"][name]["frameworks"][fw] = {"calls": calls[(name, fw)], "samples_s": xs, "median_s": med,
                                                    "ms_per_batch": 1e3 * med, "images_per_s": batch / med}
    for entry in result["models"].values():
        fw = entry["frameworks"]
        entry["ratio"] = fw["torch"]["median_s"] / fw["fastcnn"]["median_s"] if "torch" in fw else None
    result["machine"] = machine
    return result


def format_models_table(result):
    """The table of a :func:`bench_models` result, as a string."""
    rows = []
    for name, entry in result["models"].items():
        for fw, e in entry["frameworks"].items():
            rows.append([name if fw == "fastcnn" else "", fw, f"{entry['params']:,}", f"{e['ms_per_batch']:.1f}",
                         f"{e['images_per_s']:,.0f}", _ratio(entry["ratio"]) if fw == "fastcnn" else "",
                         ", ".join(f"{1e3 * s:.1f}" for s in e["samples_s"])])
    out = [
        f"Model zoo forward+backward, batch {result['batch']} x {'x'.join(map(str, result['input_shape']))} float32, "
        f"train mode, cross-entropy, no optimizer step; {_threads_text(result['threads'])}; "
        f"fastcnn conv algorithm {result['algorithm']!r}",
        f"machine: {_machine_line(result['machine'])}",
        f"median of {result['repeat']} interleaved rounds (rotating order, {result['settle']:g} s pause before each "
        "run), warm-up excluded",
        "",
        _table(["model", "framework", "params", "ms/batch", "images/s", "fastcnn/torch", "rounds (ms)"], rows,
               "<<>>>><"),
        "",
    ]
    if any(entry["ratio"] is not None for entry in result["models"].values()):
        out.append("fastcnn/torch: PyTorch's time over fastcnn's (fastcnn's relative throughput; above 1x is faster). "
                   "PyTorch runs a twin of the same architecture (same parameter count).")
    else:
        out.append("PyTorch is not installed: no comparison.")
    return "\n".join(out)
