"""Shared setup for the pytest-benchmark suite.

Run with ``python -m pytest bench/ --benchmark-only`` (bench/ is outside the
default test paths, so plain ``pytest`` and CI do not run it).  Useful options:
``--benchmark-min-rounds=3`` for a quick pass, ``--benchmark-group-by=group``
(the default) to compare fastcnn and PyTorch side by side, ``-k direct`` etc.
to select.  The thread count for fastcnn and PyTorch is the environment
variable ``FASTCNN_BENCH_THREADS`` (default: fastcnn's, normally all cores).
PyTorch benchmarks are skipped when it is not installed.  For the full
reports (GFLOP/s, share of peak, memory, ratios) use ``fastcnn bench``.
"""

import os

import pytest

import fastcnn
from fastcnn.bench import CONV_SUITE
from fastcnn.bench.conv import conv_arrays  # noqa: F401  (the test files import it from here)


def _requested_threads():
    text = os.environ.get("FASTCNN_BENCH_THREADS", "").strip()
    return int(text) if text else None


@pytest.fixture(scope="session", autouse=True)
def bench_threads():
    """One thread count for fastcnn and PyTorch, for the whole session."""
    n = _requested_threads() or fastcnn.get_num_threads()
    fastcnn.set_num_threads(n)
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.set_num_threads(n)
    return n


def shape_id(shape):
    """Test id for a ConvShape (no ':' so that -k works on it)."""
    return str(shape).replace(":", "-")


@pytest.fixture(params=CONV_SUITE, ids=shape_id)
def conv_shape(request):
    return request.param


def record_gflops(benchmark, flops):
    """Store FLOPs per call and, once measured, median GFLOP/s in the benchmark's extra info."""
    benchmark.extra_info["gflop_per_call"] = flops / 1e9
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None and getattr(stats, "median", 0):
        benchmark.extra_info["gflops_median"] = flops / stats.median / 1e9


def run(benchmark, fn, group):
    """Benchmark ``fn`` in ``group`` after one untimed call (JIT compilation, first-touch memory)."""
    fn()
    benchmark.group = group
    return benchmark(fn)
