"""The convolution benchmark: one shape, or a suite of shapes, timed per algorithm against PyTorch.

Shapes are written ``NxCxHxW:KkR[sS][pP][dD][gG]`` (:func:`parse_shape`).  For each
algorithm (fastcnn's ``direct`` and ``im2col``, every other named algorithm
of :data:`COMPARED_ALGORITHMS` that the kernels offer and that applies to
the shape, and PyTorch's ``F.conv2d`` when installed) :func:`bench_conv`
times three calls, :data:`TIMED_OPS`:
``forward``, ``backward_weight`` (dw and db only) and ``backward`` (dx, dw,
db), and derives ``backward_data`` and ``forward_backward`` from them.

Examples
--------
>>> from fastcnn.bench.conv import parse_shape
>>> s = parse_shape("64x3x32x32:32k3s1p1")
>>> s.n, s.c, s.h, s.w, s.k, s.r, s.stride, s.pad
(64, 3, 32, 32, 32, 3, 1, 1)
>>> str(s), (s.p, s.q)
('64x3x32x32:32k3s1p1', (32, 32))
>>> depthwise = parse_shape("64x32x32x32:32k3s2p1g32")
>>> depthwise.groups, (depthwise.p, depthwise.q), depthwise.flops
(32, (16, 16), 9437184)
"""

import contextlib
import functools
import math
import re
from typing import NamedTuple

import numpy as np

from .._shapes import conv_output_size
from .. import malloc
from .machine import machine_info
from .memory import TIMED_OPS, conv_workspace_bytes, traced_extra_bytes
from .timing import (calls_per_sample, measure_peak_gflops, median, no_gc, rotated, settle_then_wake, time_call,
                     use_threads)
from . import torch_worker

__all__ = [
    "SHAPE_FORMAT",
    "FASTCNN_ALGORITHMS",
    "COMPARED_ALGORITHMS",
    "ConvShape",
    "CONV_SUITE",
    "GROUPED_CONV_SUITE",
    "parse_shape",
    "conv_arrays",
    "compared_algorithms",
    "bench_conv",
    "run_conv_suite",
]

#: One-paragraph description of the shape strings, used in ``--help``.
SHAPE_FORMAT = (
    "NxCxHxW:KkR[sS][pP][dD][gG]: a batch of N images with C channels of H x W pixels, "
    "convolved with K filters of R x R, stride S (default 1), zero padding P "
    "(default 0), dilation D (default 1) and G channel groups (default 1; G = C is "
    "depthwise); e.g. 64x3x32x32:32k3s1p1, 64x64x16x16:64k3p1g64"
)

#: The fastcnn algorithms measured on every shape (with "torch" when PyTorch is installed).
FASTCNN_ALGORITHMS = ("direct", "im2col")

#: The fastcnn algorithms compared, in the order of the rows: those of :data:`FASTCNN_ALGORITHMS` always,
#: each other name when ``fastcnn.kernels.CONV_ALGORITHMS`` has it and it applies to the shape.
COMPARED_ALGORITHMS = ("direct", "winograd", "winograd4", "im2col")

#: Convolution passes each result costs (forward, weight gradient and input gradient are one each).
_PASSES = {"forward": 1, "backward_weight": 1, "backward_data": 1, "backward": 2, "forward_backward": 3}

#: The results compared between algorithms (winner, ratio to PyTorch).
_COMPARED = ("forward", "backward", "forward_backward")


# --------------------------------------------------------------------------- shapes


class ConvShape(NamedTuple):
    """A convolution problem: input (n, c, h, w), k filters of r x r, stride, pad, dilation, channel groups."""

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    stride: int = 1
    pad: int = 0
    dilation: int = 1
    groups: int = 1

    @property
    def p(self):
        """Output height."""
        return conv_output_size(self.h, self.r, self.stride, self.pad, self.dilation)

    @property
    def q(self):
        """Output width."""
        return conv_output_size(self.w, self.r, self.stride, self.pad, self.dilation)

    @property
    def weight_shape(self):
        """``(K, C/groups, R, R)``."""
        return (self.k, self.c // self.groups, self.r, self.r)

    @property
    def grouping(self):
        """``{"dilation": ..., "groups": ...}``, the keyword arguments of the kernels."""
        return {"dilation": self.dilation, "groups": self.groups}

    @property
    def flops(self):
        """Floating-point operations of one pass: ``2 * N*K*(C/groups)*R*S*P*Q`` (a multiply-add is 2)."""
        return 2 * self.n * self.k * (self.c // self.groups) * self.r * self.r * self.p * self.q

    def __str__(self):
        extra = (f"d{self.dilation}" if self.dilation != 1 else "") + (f"g{self.groups}" if self.groups != 1 else "")
        return f"{self.n}x{self.c}x{self.h}x{self.w}:{self.k}k{self.r}s{self.stride}p{self.pad}{extra}"

    def describe(self):
        """A longer, human-readable description."""
        extra = (f" dilation {self.dilation}" if self.dilation != 1 else "") + (
            " depthwise" if self.groups == self.c > 1 else f" {self.groups} groups" if self.groups != 1 else "")
        return (f"N={self.n} C={self.c} {self.h}x{self.w} -> K={self.k} {self.r}x{self.r} "
                f"stride {self.stride} pad {self.pad}{extra} -> {self.p}x{self.q}; "
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

#: The depthwise, grouped and dilated layers of ``fastcnn bench conv`` (run after :data:`CONV_SUITE`):
#: MobileNet-style depthwise 3x3 at 32, 64 and 128 channels (one with stride 2), a ResNeXt-style grouped
#: 3x3 (4 groups) and a dilated 3x3.
GROUPED_CONV_SUITE = (
    ConvShape(64, 32, 32, 32, 32, 3, 1, 1, 1, 32),
    ConvShape(64, 64, 16, 16, 64, 3, 1, 1, 1, 64),
    ConvShape(64, 128, 16, 16, 128, 3, 2, 1, 1, 128),
    ConvShape(64, 64, 16, 16, 64, 3, 1, 1, 1, 4),
    ConvShape(64, 32, 16, 16, 32, 3, 1, 2, 2, 1),
)

_SHAPE_RE = re.compile(r"(\d+)x(\d+)x(\d+)x(\d+):(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?(?:d(\d+))?(?:g(\d+))?")


def parse_shape(text):
    """Parse ``NxCxHxW:KkR[sS][pP][dD][gG]`` into a :class:`ConvShape`.

    Raises
    ------
    ValueError
        With a one-line message, for a malformed string or an impossible
        geometry (zero sizes, kernel larger than the padded input).

    Examples
    --------
    >>> parse_shape("8x2x8x8:4k3")
    ConvShape(n=8, c=2, h=8, w=8, k=4, r=3, stride=1, pad=0, dilation=1, groups=1)
    """
    m = _SHAPE_RE.fullmatch(text.strip().lower())
    if m is None:
        raise ValueError(f"bad shape {text!r}: expected NxCxHxW:KkR[sS][pP][dD][gG], e.g. 64x3x32x32:32k3s1p1")
    n, c, h, w, k, r = (int(g) for g in m.groups()[:6])
    stride, pad, dilation, groups = (int(v) if v is not None else default
                                     for v, default in zip(m.groups()[6:], (1, 0, 1, 1)))
    shape = ConvShape(n, c, h, w, k, r, stride, pad, dilation, groups)
    if min(n, c, h, w, k, r, stride, dilation, groups) < 1:
        raise ValueError(f"bad shape {text!r}: N, C, H, W, K, R, the stride, dilation and groups must be positive")
    if c % groups or k % groups:
        raise ValueError(f"bad shape {text!r}: C ({c}) and K ({k}) must be multiples of the groups ({groups})")
    span = dilation * (r - 1) + 1
    if span > h + 2 * pad or span > w + 2 * pad:
        raise ValueError(f"bad shape {text!r}: kernel {r}x{r}" + (f" (dilated: {span}x{span})" if span > r else "")
                         + f" is larger than the padded input {h + 2 * pad}x{w + 2 * pad}")
    return shape


def conv_arrays(shape, seed=0):
    """Seeded float32 ``x``, ``w`` (scaled by 1/sqrt(C*R*S)), ``b`` and ``dy`` (the output gradient)."""
    rng = np.random.default_rng(seed)
    s = shape
    x = rng.standard_normal((s.n, s.c, s.h, s.w), dtype=np.float32)
    w = rng.standard_normal(s.weight_shape, dtype=np.float32) / np.float32(math.sqrt(s.c // s.groups * s.r * s.r))
    b = rng.standard_normal(s.k, dtype=np.float32)
    dy = rng.standard_normal((s.n, s.k, s.p, s.q), dtype=np.float32)
    return x, w, b, dy


# --------------------------------------------------------------------------- the timed calls


def _fastcnn_ops(shape, algorithm, arrays):
    """{op: (fn, None)} for fastcnn's convolution with ``algorithm=algorithm``; ``fn()`` is what is timed."""
    from ..kernels import conv2d_backward, conv2d_forward

    x, w, b, dy = arrays
    st, pd, a, kw = shape.stride, shape.pad, algorithm, shape.grouping
    return {
        "forward": (lambda: conv2d_forward(x, w, b, st, pd, algorithm=a, **kw), None),
        "backward_weight": (lambda: conv2d_backward(dy, x, w, st, pd, need_input_grad=False, algorithm=a, **kw),
                            None),
        "backward": (lambda: conv2d_backward(dy, x, w, st, pd, algorithm=a, **kw), None),
    }


def _applies(shape, algorithm):
    """Whether ``conv2d_plan(..., algorithm=algorithm)`` accepts the shape (a named algorithm may not apply)."""
    from ..kernels import conv2d_plan

    s = shape
    try:
        conv2d_plan((s.n, s.c, s.h, s.w), s.weight_shape, s.stride, s.pad, algorithm=algorithm, **s.grouping)
    except ValueError:
        return False
    return True


def compared_algorithms(shape):
    """The fastcnn algorithms :func:`bench_conv` measures on ``shape`` by default, in row order.

    Every name of :data:`COMPARED_ALGORITHMS` that is in
    :data:`FASTCNN_ALGORITHMS`, or that ``fastcnn.kernels.CONV_ALGORITHMS``
    names and that applies to the shape (``winograd``, ``winograd4``: 3x3, stride 1,
    one group); the others are left out without a word.  A grouped shape
    compares ``direct`` (depthwise kernels for a depthwise one) with ``im2col``
    only: a Winograd transform per group of a few channels is no contender.

    Examples
    --------
    >>> compared_algorithms(parse_shape("8x2x8x8:4k5s2"))
    ('direct', 'im2col')
    >>> compared_algorithms(parse_shape("8x16x8x8:16k3p1g16"))
    ('direct', 'im2col')
    """
    from ..kernels import CONV_ALGORITHMS

    if isinstance(shape, str):
        shape = parse_shape(shape)
    return tuple(a for a in COMPARED_ALGORITHMS
                 if a in FASTCNN_ALGORITHMS or (a in CONV_ALGORITHMS and shape.groups == 1 and _applies(shape, a)))


def _plan_names(shape, algorithm):
    """The algorithm each pass of fastcnn's convolution runs: {"forward", "weight_grad", "input_grad": name}."""
    from ..kernels import conv2d_plan

    s = shape
    plans = conv2d_plan((s.n, s.c, s.h, s.w), s.weight_shape, s.stride, s.pad, algorithm=algorithm, **s.grouping)
    return {"forward": plans.forward.algorithm, "weight_grad": plans.weight_grad.algorithm,
            "input_grad": plans.input_grad.algorithm}


def torch_conv_op(torch, shape, seed, op):
    """(Worker builder) ``(fn, setup)`` timing PyTorch's ``F.conv2d`` pass ``op`` on :func:`conv_arrays`;
    ``fn(setup())`` is timed, the autograd graph built untimed."""
    F = torch.nn.functional
    st, pd, dl, gr = shape.stride, shape.pad, shape.dilation, shape.groups
    xt, wt, bt, dyt = (torch.from_numpy(a) for a in conv_arrays(shape, seed))
    if op == "forward":
        def forward():
            with torch.no_grad():
                return F.conv2d(xt, wt, bt, st, pd, dl, gr)

        return forward, None
    wr = wt.clone().requires_grad_(True)
    br = bt.clone().requires_grad_(True)
    if op == "backward_weight":  # x needs no gradient: autograd skips dx
        return (lambda y: torch.autograd.grad(y, (wr, br), dyt)), (lambda: F.conv2d(xt, wr, br, st, pd, dl, gr))
    xr = xt.clone().requires_grad_(True)
    return (lambda y: torch.autograd.grad(y, (xr, wr, br), dyt)), (lambda: F.conv2d(xr, wr, br, st, pd, dl, gr))


def _torch_ops(worker, shape, seed):
    """{op: (Remote, None)}: PyTorch's passes, built and timed in ``worker``."""
    return {op: (worker.build(f"{__name__}:torch_conv_op", shape, seed, op), None) for op in TIMED_OPS}


def _time_ops(ops, repeat, settle, min_sample):
    """Warm up, then time every algorithm's ops in ``repeat`` rounds, the algorithms' turns rotating.

    Returns ``(number, samples)``: calls per sample and the per-call seconds,
    each ``{algorithm: {op: ...}}``.
    """
    algorithms = tuple(ops)
    for a in algorithms:  # warm-up: compile / load kernels, first-touch memory
        for fn, setup in ops[a].values():
            time_call(fn, setup)
    number = {a: {op: calls_per_sample(time_call(*ops[a][op]), min_sample) for op in TIMED_OPS}
              for a in algorithms}
    samples = {a: {op: [] for op in TIMED_OPS} for a in algorithms}
    with no_gc():
        for i in range(repeat):
            for a in rotated(algorithms, i):
                settle_then_wake(settle, functools.partial(time_call, *ops[a][TIMED_OPS[0]]))
                for op in TIMED_OPS:
                    fn, setup = ops[a][op]
                    samples[a][op].append(time_call(fn, setup, number[a][op]))
    return number, samples


def _algorithm_entry(shape, samples, number, peak_gflops):
    """One algorithm's medians (timed and derived), GFLOP/s and share of the peak."""
    med = {op: median(samples[op]) for op in TIMED_OPS}
    derived = med["backward"] - med["backward_weight"]  # noise can make it negative: then unknown (None)
    med["backward_data"] = derived if derived > 0 else None
    med["forward_backward"] = median([f + g for f, g in zip(samples["forward"], samples["backward"])])
    gflops = {op: (_PASSES[op] * shape.flops / t / 1e9 if t and t > 0 else None) for op, t in med.items()}
    return {
        "calls_per_sample": number,
        "samples_s": samples,
        "median_s": med,
        "gflops": gflops,
        "peak_fraction": {op: (g / peak_gflops if g is not None and peak_gflops else None)
                          for op, g in gflops.items()},
    }


def _compare(entries):
    """Add ``vs_torch`` to every entry (when torch was measured); return the winner per compared result."""
    if "torch" in entries:
        tmed = entries["torch"]["median_s"]
        for entry in entries.values():
            med = entry["median_s"]
            entry["vs_torch"] = {op: (tmed[op] / med[op] if med[op] and med[op] > 0 and tmed[op] > 0 else None)
                                 for op in _COMPARED}
    return {op: min(entries, key=lambda a: entries[a]["median_s"][op]) for op in _COMPARED}


# --------------------------------------------------------------------------- benchmarks


def bench_conv(shape, repeat=7, threads=None, peak_gflops=None, algorithms=None, memory=True, seed=0,
               settle=0.15, min_sample=0.02, worker=None):
    """Time one convolution shape with fastcnn's algorithms (:func:`compared_algorithms`) and PyTorch.

    For each algorithm, the median over ``repeat`` interleaved repeats of:
    ``forward``; ``backward_weight`` (dw and db only: fastcnn's
    ``need_input_grad=False``, torch's autograd with ``x.requires_grad=False``);
    ``backward`` (dx, dw, db).  Derived: ``backward_data`` = backward -
    backward_weight (None when noise makes it 0 or negative: printed "-"),
    ``forward_backward`` = forward + backward (per repeat).
    The torch forward runs under ``torch.no_grad()``; its backward times
    ``torch.autograd.grad`` on a graph built (untimed) just before; PyTorch
    runs in a process of its own (:mod:`fastcnn.bench.torch_worker`).

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
        Default: :func:`compared_algorithms` (direct, im2col, and each other
        compared algorithm the kernels offer for the shape), then torch when
        installed.  Besides "torch",
        any name the kernels' ``algorithm=`` accepts (such as "channel_last",
        see :func:`fastcnn.kernels.conv2d_plan`); one that does not apply to
        the shape raises ValueError.
    memory : bool
        Also measure numpy's peak extra memory per fastcnn call with tracemalloc.
    seed : int
        Seeds the random inputs.
    settle : float
        Seconds of sleep before each algorithm's turn, which then starts with
        one untimed forward call (:func:`~fastcnn.bench.timing.settle_then_wake`).
        OpenMP (Numba's and PyTorch's) and OpenBLAS worker threads busy-wait for
        a while after their work; without the pause they steal cores from the
        next library measured, and the first call after it pays for waking idle
        cores.
    min_sample : float
        An operation quicker than this is called back to back several times
        (up to 100) per sample and the mean taken, so that a sample lasts
        about ``min_sample`` seconds; ``calls_per_sample`` in the result.

    Returns
    -------
    dict
        ``shape``, ``dims``, ``flops_per_pass``, ``repeat``, ``threads``,
        ``algorithms`` (per algorithm: ``samples_s``, ``median_s``, ``gflops``,
        ``peak_fraction``, ``vs_torch``, and for fastcnn ``plan`` (the
        algorithm of each pass: ``forward``, ``weight_grad``, ``input_grad``),
        ``workspace_bytes`` (computed from the plan) and
        ``traced_extra_bytes``), ``winner``.
    worker : TorchWorker, optional
        The PyTorch process to time torch in (default: one started for this call).
    """
    if isinstance(shape, str):
        shape = parse_shape(shape)
    if repeat < 1:
        raise ValueError(f"bench_conv: repeat must be >= 1, got {repeat}")
    installed = torch_worker.torch_installed()
    if algorithms is None:
        algorithms = compared_algorithms(shape) + (("torch",) if installed else ())
    algorithms = tuple(algorithms)
    if "torch" in algorithms and not installed:
        raise ImportError("bench_conv: algorithm 'torch' needs PyTorch installed")

    malloc.keep_freed_memory()  # as fastcnn's fit and predict do (the PyTorch worker keeps glibc's defaults)
    s = shape
    arrays = conv_arrays(s, seed)
    result = {"shape": str(s), "dims": s._asdict() | {"p": s.p, "q": s.q}, "flops_per_pass": s.flops,
              "repeat": repeat, "settle_s": settle, "algorithms": {}}
    ours = [a for a in algorithms if a != "torch"]
    with contextlib.ExitStack() as stack:
        if "torch" in algorithms and worker is None:
            worker = stack.enter_context(torch_worker.session())
        with use_threads(threads, worker if "torch" in algorithms else None) as nthreads:
            result["threads"] = nthreads
            plans = {a: _plan_names(s, a) for a in ours}
            ops = {a: _torch_ops(worker, s, seed) if a == "torch" else _fastcnn_ops(s, a, arrays) for a in algorithms}
            number, samples = _time_ops(ops, repeat, settle, min_sample)
            traced = {a: {op: traced_extra_bytes(ops[a][op][0]) for op in TIMED_OPS} for a in ours} if memory else {}

    for a in algorithms:
        entry = _algorithm_entry(s, samples[a], number[a], peak_gflops)
        if a in ours:
            entry["plan"] = plans[a]
            entry["workspace_bytes"] = {op: conv_workspace_bytes(s, a, op, nthreads) for op in TIMED_OPS}
            entry["traced_extra_bytes"] = traced.get(a)
        result["algorithms"][a] = entry
    result["winner"] = _compare(result["algorithms"])
    return result


def _merge_peaks(before, after):
    """One peak for the whole run from the measurements before and after the shapes."""
    samples = before["samples_s"] + after["samples_s"]
    n = before["n"]
    return {"gflops": 2 * n ** 3 / median(samples) / 1e9, "n": n, "samples_s": samples,
            "blas_threads": before["blas_threads"],
            "gflops_before": before["gflops"], "gflops_after": after["gflops"]}


def run_conv_suite(shapes=CONV_SUITE, repeat=7, threads=None, log=None, memory=True, settle=0.15):
    """:func:`bench_conv` for every shape, with the peak measured before and after.

    ``log`` (e.g. ``print`` to stderr) receives one progress line per shape.
    Returns a dict with ``machine``, ``peak``, ``shapes`` (the bench_conv results).
    """
    import fastcnn

    log = log or (lambda *_: None)
    if threads is None:
        threads = fastcnn.get_num_threads()
    log(f"measuring the practical peak (numpy float32 sgemm, {threads} threads) ...")
    peak_before = measure_peak_gflops(threads=threads)
    results = []
    with contextlib.ExitStack() as stack:
        worker = stack.enter_context(torch_worker.session())
        for i, shape in enumerate(shapes):
            log(f"[{i + 1}/{len(shapes)}] {shape} ({shape.describe()}) ...")
            results.append(bench_conv(shape, repeat, threads, peak_before["gflops"], memory=memory,
                                      settle=settle, worker=worker))
        with use_threads(threads, worker):
            machine = machine_info(threads, worker)
    peak = _merge_peaks(peak_before, measure_peak_gflops(threads=threads))
    for r in results:  # one peak for the whole run
        for entry in r["algorithms"].values():
            entry["peak_fraction"] = {op: (g / peak["gflops"] if g is not None else None)
                                      for op, g in entry["gflops"].items()}
    return {"benchmark": "conv", "machine": machine, "peak": peak,
            "repeat": repeat, "threads": threads, "shapes": results}
