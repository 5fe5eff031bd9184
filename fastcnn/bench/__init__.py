"""Benchmarks: convolution kernels, LeNet-5 training throughput, the model zoo and start-up time.

Used by ``fastcnn bench conv|train|models|startup``; every function also works
from Python.  PyTorch is the reference when it is installed: it runs in a
worker process of its own (:mod:`~fastcnn.bench.torch_worker`; never imported
into fastcnn's process), and everything degrades to fastcnn-only numbers when
it is absent; matplotlib is needed only for :func:`plot_conv`.

Measurement rules, for shared and noisy machines:

* every number is the **median** of several repeats;
* fastcnn and PyTorch are measured **interleaved** inside one run (for each
  repeat, each operation is timed once per algorithm, in a rotating order), so
  a burst of background load hits both; PyTorch in its own process, so that
  neither shares a process with the other's OpenMP threads;
* warm-up calls (JIT compilation, cache loading, first-touch allocation) are
  excluded;
* the "peak" is measured in the same run: numpy's float32 matrix multiply
  (BLAS sgemm) with the same thread count, the machine's practical peak.

Convolution shapes are written ``NxCxHxW:KkR[sS][pP]`` (see :func:`parse_shape`).

One module per job; this package re-exports their public names:

==================  ===========================================================
``timing``          medians, timed calls, the garbage collector and thread
                    control, BLAS detection, :func:`measure_peak_gflops`
``memory``          :func:`conv_workspace_bytes` (computed) and the
                    tracemalloc measurement of a call's extra memory
``conv``            :class:`ConvShape`, :func:`parse_shape`, :data:`CONV_SUITE`,
                    :func:`compared_algorithms`, :func:`bench_conv`, :func:`run_conv_suite`
``train``           :func:`bench_train` (LeNet-5 epochs)
``models``          :func:`bench_models` (vgg_small, resnet_small, lenet5: training step, eval-mode inference
                    and per-layer times)
``layers``          the per-layer timers of ``bench models`` (:class:`~fastcnn.bench.layers.LayerTimer`)
``startup``         :func:`bench_startup` (fresh processes)
``machine``         :func:`machine_info`: CPU, vector width, threads, versions; :func:`busy_cores`
``report``          the ``format_*`` tables, :func:`write_json`, :func:`plot_conv`
``torch_models``    the PyTorch twins of fastcnn's models (``torch_lenet5``,
                    ``torch_vgg_small``, ``torch_resnet_small``)
``torch_worker``    :class:`~fastcnn.bench.torch_worker.TorchWorker`: the process
                    PyTorch is built and timed in
==================  ===========================================================

Examples
--------
>>> from fastcnn.bench import parse_shape
>>> s = parse_shape("64x3x32x32:32k3s1p1")
>>> s.n, s.c, s.h, s.w, s.k, s.r, s.stride, s.pad
(64, 3, 32, 32, 32, 3, 1, 1)
>>> str(s), (s.p, s.q)
('64x3x32x32:32k3s1p1', (32, 32))
"""

from .conv import (
    COMPARED_ALGORITHMS,
    CONV_SUITE,
    FASTCNN_ALGORITHMS,
    GROUPED_CONV_SUITE,
    SHAPE_FORMAT,
    ConvShape,
    bench_conv,
    compared_algorithms,
    parse_shape,
    run_conv_suite,
)
from .machine import busy_cores, machine_info
from .memory import conv_workspace_bytes
from .models import BENCH_MODELS, bench_models
from .report import (
    format_conv,
    format_models_table,
    format_startup,
    format_train,
    plot_conv,
    require_matplotlib,
    write_json,
)
from .startup import bench_startup
from .timing import measure_peak_gflops
from .train import bench_train

__all__ = [
    "ConvShape",
    "CONV_SUITE",
    "GROUPED_CONV_SUITE",
    "SHAPE_FORMAT",
    "FASTCNN_ALGORITHMS",
    "COMPARED_ALGORITHMS",
    "BENCH_MODELS",
    "parse_shape",
    "compared_algorithms",
    "measure_peak_gflops",
    "conv_workspace_bytes",
    "bench_conv",
    "run_conv_suite",
    "bench_train",
    "bench_startup",
    "bench_models",
    "machine_info",
    "busy_cores",
    "format_conv",
    "format_train",
    "format_startup",
    "format_models_table",
    "write_json",
    "plot_conv",
    "require_matplotlib",
]
