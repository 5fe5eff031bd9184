"""``fastcnn bench conv|train|models|startup|distributed``: the benchmarks of :mod:`fastcnn.bench` from the
command line.

Each benchmark has a parser function (``_add_conv`` ...) and a run function
(``_run_conv`` ...); :func:`run` dispatches on the benchmark's name.
"""

import argparse
import os
import subprocess
import textwrap

from .. import bench
from . import common
from .common import EXIT_FAILURE, fail, log


def add_parser(subparsers):
    """Add ``bench`` and its five benchmarks to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmark convolution, training, models and start-up (against PyTorch when installed)",
        description=(
            "Benchmarks. Every figure is the median of several repeats, with fastcnn and "
            "PyTorch (when installed) measured interleaved in the same run, warm-up excluded."
        ),
    )
    kinds = parser.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    for add in (_add_conv, _add_train, _add_startup, _add_models, _add_distributed):
        add(kinds)
    return parser


#: Other processes using this many cores or more before a benchmark starts make it print a warning.
BUSY_CORES = 0.5


def run(args):
    """Run the benchmark ``args.bench_command``; return 0."""
    return RUNS[args.bench_command](args)


def _warn_if_busy():
    """Print a warning when other processes keep the machine busy: called when the arguments have passed,
    just before the benchmark starts (a refused call prints its one error line, nothing else)."""
    busy = bench.busy_cores()
    if busy is not None and busy >= BUSY_CORES:
        log(f"fastcnn bench: warning: the machine is busy (other processes kept about {busy:.1f} cores working "
            "just before the benchmark); its timings, and its ratios to PyTorch, are unreliable")


def _add_json_option(parser):
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="write every raw number and the machine's description to FILE")


def _conv_shape(text):
    """``bench.parse_shape(text)``, refused when its float32 arrays (x, w, y and their gradients) would not fit in
    this machine's memory."""
    try:
        s = bench.parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    need = 4 * 2 * (s.n * s.c * s.h * s.w + s.k * s.c * s.r * s.r + s.n * s.k * s.p * s.q)
    memory = _memory_bytes()
    if need > memory:
        raise argparse.ArgumentTypeError(f"shape {text!r}: its arrays and their gradients would need "
                                         f"{need / 2**30:.3g} GiB, more than this machine's {memory / 2**30:.3g} GiB "
                                         "of memory")
    return s


def _memory_bytes():
    """This machine's physical memory in bytes (``2**40`` where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 2**40


def _write_json(path, payload):
    try:
        bench.write_json(path, payload)
    except OSError as exc:
        fail(f"cannot write {path}: {exc}", EXIT_FAILURE)
    print(f"raw numbers written to {path}", flush=True)


# --------------------------------------------------------------------------- conv


def _add_conv(kinds):
    suite = "\n".join(f"  {s}" for s in bench.CONV_SUITE + bench.GROUPED_CONV_SUITE)
    conv = kinds.add_parser(
        "conv",
        help="time the convolution algorithms (direct, im2col, torch) on a suite of shapes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Time fastcnn's direct and im2col convolutions and PyTorch's F.conv2d (when\n"
            "installed): forward, weight gradient, full backward (dx, dw, db), the derived\n"
            "input gradient, GFLOP/s and the share of the machine's practical peak (numpy's\n"
            "float32 matrix multiply, measured in the same run), the plan each pass of the\n"
            "direct algorithm runs (fastcnn.kernels.conv2d_plan), extra memory, winners and\n"
            "ratios against PyTorch."
        ),
        epilog=textwrap.fill(f"shape format: {bench.SHAPE_FORMAT}", 78) + f"\n\ndefault suite:\n{suite}",
    )
    conv.add_argument("--shapes", nargs="+", type=_conv_shape, default=None, metavar="S",
                      help="convolution shapes as NxCxHxW:KkR[sS][pP][dD][gG] (batch N, C input channels, "
                           "H x W pixels, K filters of R x R, stride S, default 1, padding P, "
                           "default 0, dilation D, default 1, G channel groups, default 1), "
                           "e.g. 64x3x32x32:32k3s1p1 or 64x64x16x16:64k3p1g64 (depthwise); "
                           "default: the suite below")
    conv.add_argument("--threads", type=common.positive_int, default=None, metavar="N",
                      help="threads for fastcnn, numpy's BLAS and PyTorch (default: fastcnn's, "
                           "normally the number of cores)")
    conv.add_argument("--repeat", type=common.positive_int, default=7, metavar="R",
                      help="timed repeats per shape, at least (quick shapes get more); "
                           "default: %(default)s")
    _add_json_option(conv)
    conv.add_argument("--plot", default=None, metavar="FILE",
                      help="write a PNG bar chart of GFLOP/s per shape and algorithm "
                           "(needs matplotlib: pip install 'fastcnn[plot]')")


def _run_conv(args):
    common.check_output(args.json, "--json")
    common.check_output(args.plot, "--plot")
    if args.plot is not None:
        try:
            bench.require_matplotlib()
        except ImportError as exc:
            fail(f"argument --plot: {exc}", EXIT_FAILURE)
    threads = common.set_threads(args.threads)
    shapes = tuple(args.shapes) if args.shapes else bench.CONV_SUITE + bench.GROUPED_CONV_SUITE
    _warn_if_busy()
    suite = bench.run_conv_suite(shapes, repeat=args.repeat, threads=threads, log=log)
    print(bench.format_conv(suite), flush=True)
    if args.json is not None:
        _write_json(args.json, suite)
    if args.plot is not None:
        try:
            bench.plot_conv(suite, args.plot)
        except OSError as exc:
            fail(f"cannot write {args.plot}: {exc}", EXIT_FAILURE)
        print(f"chart written to {args.plot}", flush=True)
    return 0


# --------------------------------------------------------------------------- train


def _add_train(kinds):
    train = kinds.add_parser(
        "train",
        help="LeNet-5 training images/s: fastcnn's fit vs a PyTorch loop",
        description=(
            "LeNet-5 training throughput at batch 64 (float32, SGD lr 0.01, momentum 0.9, "
            "weight decay 5e-4): fastcnn's Sequential.fit against a plain PyTorch training "
            "loop of the same network (when installed), with the same thread count."
        ),
    )
    train.add_argument("--threads", type=common.positive_int, default=None, metavar="N",
                       help="threads for fastcnn and PyTorch (default: fastcnn's, normally "
                            "the number of cores)")
    train.add_argument("--batches", type=common.positive_int, default=50, metavar="B",
                       help="batches of 64 images per timed repeat (default: %(default)s)")
    train.add_argument("--repeat", type=common.positive_int, default=7, metavar="R",
                       help="timed repeats of each framework (default: %(default)s)")
    _add_json_option(train)


def _run_train(args):
    common.check_output(args.json, "--json")
    threads = common.set_threads(args.threads)
    log(f"training LeNet-5: {args.repeat} repeats of {args.batches} batches per framework ...")
    _warn_if_busy()
    result = bench.bench_train(threads=threads, batches=args.batches, repeat=args.repeat)
    print(bench.format_train(result), flush=True)
    if args.json is not None:
        _write_json(args.json, result)
    return 0


# --------------------------------------------------------------------------- startup


def _add_startup(kinds):
    startup = kinds.add_parser(
        "startup",
        help="time a fresh process that imports, builds LeNet-5 and trains one step",
        description=(
            "Start-up time of a fresh Python process that imports the library, builds "
            "LeNet-5 and runs one training step: fastcnn with the current Numba cache, "
            "PyTorch (when installed), and fastcnn with an empty Numba cache (first-ever "
            "compilation)."
        ),
    )
    startup.add_argument("--repeat", type=common.positive_int, default=3, metavar="R",
                         help="timed runs of each, after one warm-up run (default: %(default)s)")
    startup.add_argument("--no-cold", action="store_true",
                         help="skip the empty-cache run (it compiles the kernels LeNet-5 uses, which is slow)")
    _add_json_option(startup)


def _run_startup(args):
    common.check_output(args.json, "--json")
    _warn_if_busy()
    log("starting fresh processes" + ("" if args.no_cold else
                                      "; the empty-cache run compiles the kernels LeNet-5 uses (slow)") + " ...")
    try:
        result = bench.bench_startup(repeat=args.repeat, cold=not args.no_cold)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, EXIT_FAILURE)
    print(bench.format_startup(result), flush=True)
    if args.json is not None:
        _write_json(args.json, result)
    return 0


# --------------------------------------------------------------------------- models


def _add_models(kinds):
    zoo = kinds.add_parser(
        "models",
        help="vgg_small, resnet_small and lenet5 training step and inference vs their PyTorch twins",
        description=(
            "Forward plus backward time of a batch of 64 images through vgg_small and resnet_small "
            "(3x32x32) and lenet5 (1x28x28) (train mode, cross-entropy, no optimizer step), then "
            "their inference in eval mode (images/s at batch 256 and batch-1 latency), against "
            "PyTorch twins of the same architectures (when installed), with the same thread count; "
            "then each layer's forward and backward time within the training step."
        ),
    )
    zoo.add_argument("--models", nargs="+", choices=list(bench.BENCH_MODELS), default=None, metavar="NAME",
                     help=f"models to time, from: {', '.join(bench.BENCH_MODELS)} "
                          f"(default: {' '.join(bench.models.DEFAULT_MODELS)})")
    zoo.add_argument("--threads", type=common.positive_int, default=None, metavar="N",
                     help="threads for fastcnn and PyTorch (default: fastcnn's)")
    zoo.add_argument("--repeat", type=common.positive_int, default=5, metavar="R",
                     help="timed rounds of each (default: %(default)s)")
    zoo.add_argument("--no-inference", action="store_true",
                     help="time the training step only (no eval-mode throughput and latency)")
    zoo.add_argument("--layers", action=argparse.BooleanOptionalAction, default=True,
                     help="also time each layer's forward and backward inside the training step, with each "
                          "Conv2d's plan and PyTorch's per-module forward (default: on; a few seconds per model)")
    _add_json_option(zoo)


def _run_models(args):
    common.check_output(args.json, "--json")
    threads = common.set_threads(args.threads)
    models = tuple(dict.fromkeys(args.models)) if args.models else bench.models.DEFAULT_MODELS
    what = "forward+backward" if args.no_inference else "forward+backward and inference"
    what += ", then per-layer times" if args.layers else ""
    log(f"{', '.join(models)} {what}: {args.repeat} rounds per framework ...")
    _warn_if_busy()
    result = bench.bench_models(threads=threads, repeat=args.repeat, models=models, inference=not args.no_inference,
                                layers=args.layers)
    print(bench.format_models_table(result), flush=True)
    if args.json is not None:
        _write_json(args.json, result)
    return 0


# --------------------------------------------------------------------------- distributed


def _add_distributed(kinds):
    dist = kinds.add_parser(
        "distributed",
        help="data-parallel training over MPI: images/s of 1 and 2 ranks against one process, allreduce share",
        description=(
            "Training images/s of one process with 2 threads, one process with 1 thread (one rank) and "
            "'mpiexec -n 2' ranks of 1 thread each training data-parallel (fastcnn.distributed.fit), fresh "
            "processes in rotating order; the share of each epoch the ranks spend in the step's allreduce, and "
            "the time of one allreduce alone. Needs mpiexec and mpi4py: pip install 'fastcnn[mpi]'."
        ),
    )
    dist.add_argument("--model", choices=list(common.MODEL_NAMES), default="lenet5",
                      help="network to train, built for 1x28x28 images (default: %(default)s)")
    dist.add_argument("--batches", type=common.positive_int, default=20, metavar="B",
                      help="global batches of 64 images per epoch (default: %(default)s)")
    dist.add_argument("--repeat", type=common.positive_int, default=3, metavar="R",
                      help="processes started per configuration, each timing 2 epochs (default: %(default)s)")
    _add_json_option(dist)


def _run_distributed(args):
    from ..bench.distributed import bench_distributed, format_distributed

    common.check_output(args.json, "--json")
    _warn_if_busy()
    try:
        result = bench_distributed(model=args.model, batches=args.batches, repeat=args.repeat, log=log)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, EXIT_FAILURE)
    print(format_distributed(result), flush=True)
    if args.json is not None:
        _write_json(args.json, result)
    return 0


#: The run function of each benchmark, by its name on the command line.
RUNS = {"conv": _run_conv, "train": _run_train, "startup": _run_startup, "models": _run_models,
        "distributed": _run_distributed}
