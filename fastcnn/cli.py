"""The ``fastcnn`` command line.

Subcommands
-----------
``fastcnn train``
    Train LeNet-5 on MNIST (the packaged sample by default, or a directory of
    IDX files) and report the test accuracy.
``fastcnn bench conv|train|startup``
    Benchmark the convolution kernels, LeNet-5 training throughput or process
    start-up, against PyTorch when it is installed (see :mod:`fastcnn.bench`).

Run ``fastcnn train --help`` (or ``fastcnn bench conv --help``, ...) for the
options.  The same commands are available as ``python -m fastcnn``.  Errors in
the arguments or the data are reported on one line, ``fastcnn: error: ...``, on
standard error, with exit status 2 (bad arguments) or 1 (missing or corrupt
data, or a missing optional package such as matplotlib for ``--plot``).
"""

import argparse
import sys
import textwrap
import warnings

__all__ = ["main"]

EXIT_DATA_ERROR = 1
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports errors on a single line."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"fastcnn: error: {message} (see '{self.prog} --help')\n")


def _fail(message, status):
    sys.stderr.write(f"fastcnn: error: {message}\n")
    raise SystemExit(status)


# --- argument types -------------------------------------------------------------


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_int(text):
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _nonnegative_int(text):
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _positive_float(text):
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _nonnegative_float(text):
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def _momentum(text):
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _conv_shape(text):
    from .bench import parse_shape

    try:
        return parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- parser -----------------------------------------------------------------------


def _build_parser():
    parser = _Parser(
        prog="fastcnn",
        description="Train small convolutional neural networks fast on multicore CPUs.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"fastcnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train LeNet-5 on MNIST and report the test accuracy",
        description=(
            "Train LeNet-5 on MNIST with SGD and report the test accuracy. Images are "
            "scaled to [0, 1], then standardised with the mean and standard deviation "
            "of the training images."
        ),
    )
    train.add_argument(
        "--data", default="sample", metavar="sample|DIR",
        help="'sample' for the MNIST subset packaged with fastcnn (6,000 training and "
             "1,000 test images), or a directory holding the four MNIST IDX files "
             "(train-images-idx3-ubyte[.gz], ...); default: sample",
    )
    train.add_argument("--epochs", type=_positive_int, default=3, metavar="N",
                       help="passes over the training set (default: %(default)s)")
    train.add_argument("--batch-size", type=_positive_int, default=64, metavar="B",
                       help="mini-batch size (default: %(default)s)")
    train.add_argument("--lr", type=_positive_float, default=0.05, metavar="LR",
                       help="SGD learning rate (default: %(default)s)")
    train.add_argument("--momentum", type=_momentum, default=0.9, metavar="M",
                       help="SGD momentum, in [0, 1) (default: %(default)s)")
    train.add_argument("--weight-decay", type=_nonnegative_float, default=5e-4,
                       metavar="WD", help="L2 weight decay (default: %(default)s)")
    train.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                       help="threads for the parallel kernels (default: Numba's, "
                            "normally the number of cores)")
    train.add_argument("--seed", type=_nonnegative_int, default=0, metavar="S",
                       help="seed for weight initialisation and shuffling (default: %(default)s)")
    train.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                       help="use only the first N training images and the first N//4 "
                            "test images (for quick checks)")
    train.set_defaults(func=_train)
    _add_bench_parser(commands)
    return parser


def _add_bench_parser(commands):
    from .bench import CONV_SUITE, SHAPE_FORMAT

    bench = commands.add_parser(
        "bench",
        help="benchmark convolution, training and start-up (against PyTorch when installed)",
        description=(
            "Benchmarks. Every figure is the median of several repeats, with fastcnn and "
            "PyTorch (when installed) measured interleaved in the same run, warm-up excluded."
        ),
    )
    kinds = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)

    suite = "\n".join(f"  {s}" for s in CONV_SUITE)
    conv = kinds.add_parser(
        "conv",
        help="time the convolution algorithms (direct, im2col, torch) on a suite of shapes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Time fastcnn's direct and im2col convolutions and PyTorch's F.conv2d (when\n"
            "installed): forward, weight gradient, full backward (dx, dw, db), the derived\n"
            "input gradient, GFLOP/s and the share of the machine's practical peak (numpy's\n"
            "float32 matrix multiply, measured in the same run), extra memory, winners and\n"
            "ratios against PyTorch."
        ),
        epilog=textwrap.fill(f"shape format: {SHAPE_FORMAT}", 78) + f"\n\ndefault suite:\n{suite}",
    )
    conv.add_argument("--shapes", nargs="+", type=_conv_shape, default=None, metavar="S",
                      help="convolution shapes as NxCxHxW:KkR[sS][pP] (batch N, C input channels, "
                           "H x W pixels, K filters of R x R, stride S, default 1, padding P, "
                           "default 0), e.g. 64x3x32x32:32k3s1p1; default: the suite below")
    conv.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                      help="threads for fastcnn, numpy's BLAS and PyTorch (default: fastcnn's, "
                           "normally the number of cores)")
    conv.add_argument("--repeat", type=_positive_int, default=7, metavar="R",
                      help="timed repeats per shape, at least (quick shapes get more); "
                           "default: %(default)s")
    conv.add_argument("--json", default=None, metavar="FILE",
                      help="write every raw number and the machine's description to FILE")
    conv.add_argument("--plot", default=None, metavar="FILE",
                      help="write a PNG bar chart of GFLOP/s per shape and algorithm "
                           "(needs matplotlib: pip install 'fastcnn[plot]')")
    conv.set_defaults(func=_bench_conv)

    train = kinds.add_parser(
        "train",
        help="LeNet-5 training images/s: fastcnn's fit vs a PyTorch loop",
        description=(
            "LeNet-5 training throughput at batch 64 (float32, SGD lr 0.01, momentum 0.9, "
            "weight decay 5e-4): fastcnn's Sequential.fit against a plain PyTorch training "
            "loop of the same network (when installed), with the same thread count."
        ),
    )
    train.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="threads for fastcnn and PyTorch (default: fastcnn's, normally "
                            "the number of cores)")
    train.add_argument("--batches", type=_positive_int, default=50, metavar="B",
                       help="batches of 64 images per timed repeat (default: %(default)s)")
    train.add_argument("--repeat", type=_positive_int, default=7, metavar="R",
                       help="timed repeats of each framework (default: %(default)s)")
    train.add_argument("--json", default=None, metavar="FILE",
                       help="write every raw number and the machine's description to FILE")
    train.set_defaults(func=_bench_train)

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
    startup.add_argument("--repeat", type=_positive_int, default=3, metavar="R",
                         help="timed runs of each, after one warm-up run (default: %(default)s)")
    startup.add_argument("--no-cold", action="store_true",
                         help="skip the empty-cache run (it compiles every kernel, which is slow)")
    startup.add_argument("--json", default=None, metavar="FILE",
                         help="write every raw number and the machine's description to FILE")
    startup.set_defaults(func=_bench_startup)


# --- train ------------------------------------------------------------------------


def _load_data(spec):
    from .data import load_mnist, load_sample

    try:
        if spec == "sample":
            return "MNIST sample", load_sample()
        return f"MNIST from {spec}", load_mnist(spec)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc), EXIT_DATA_ERROR)
    except OSError as exc:  # permission denied, I/O error, ...
        _fail(f"cannot read MNIST data from {spec}: {exc}", EXIT_DATA_ERROR)


def _train(args):
    import numpy as np

    import fastcnn
    from .data import to_float

    if args.threads is not None:
        try:
            fastcnn.set_num_threads(args.threads)
        except (TypeError, ValueError) as exc:
            _fail(f"argument --threads: {exc}", EXIT_USAGE)

    name, ((x_train, y_train), (x_test, y_test)) = _load_data(args.data)
    for split, x in (("training", x_train), ("test", x_test)):
        if x.shape[1:] != (1, 28, 28):
            _fail(f"{args.data}: LeNet-5 needs 28x28 images, the {split} images are "
                  f"{x.shape[2]}x{x.shape[3]}", EXIT_DATA_ERROR)
    for split, y in (("training", y_train), ("test", y_test)):
        if len(y) and not 0 <= y.min() <= y.max() <= 9:
            _fail(f"{args.data}: expected {split} labels 0-9, got values from "
                  f"{y.min()} to {y.max()}", EXIT_DATA_ERROR)
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
        n_test = max(1, args.limit // 4)
        x_test, y_test = x_test[:n_test], y_test[:n_test]

    x_train = to_float(x_train, np.float32)
    x_test = to_float(x_test, np.float32)
    mean = float(x_train.mean(dtype=np.float64))
    std = float(x_train.std(dtype=np.float64))
    if not std > 0:
        std = 1.0
    x_train = (x_train - np.float32(mean)) / np.float32(std)
    x_test = (x_test - np.float32(mean)) / np.float32(std)

    import fastcnn.models
    import fastcnn.optim

    if hasattr(fastcnn, "manual_seed"):
        fastcnn.manual_seed(args.seed)

    model = fastcnn.models.lenet5()
    optimizer = fastcnn.optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay,
    )
    threads = fastcnn.get_num_threads() if hasattr(fastcnn, "get_num_threads") else "?"
    print(
        f"LeNet-5 on {name}: {len(x_train)} training / {len(x_test)} test images; "
        f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}, batch {args.batch_size}, "
        f"SGD lr={args.lr:g} momentum={args.momentum:g} weight_decay={args.weight_decay:g}; "
        f"{threads} thread{'s' if threads != 1 else ''}",
        flush=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        history = model.fit(
            x_train, y_train,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=optimizer,
            validation_data=(x_test, y_test),
            verbose=True,
            seed=args.seed,
        )
    for warning in caught:
        sys.stderr.write(f"fastcnn: warning: {warning.message}\n")
    result = model.evaluate(x_test, y_test)
    n = len(x_test)
    print(f"test accuracy: {100 * result['accuracy']:.2f}% ({n} image{'s' if n != 1 else ''})",
          flush=True)
    if len(history.get("loss", ())) < args.epochs:  # fit stopped early: the loss diverged
        return EXIT_FAILURE
    return 0


# --- bench ------------------------------------------------------------------------


def _set_threads(threads):
    import fastcnn

    if threads is not None:
        try:
            fastcnn.set_num_threads(threads)
        except (TypeError, ValueError) as exc:
            _fail(f"argument --threads: {exc}", EXIT_USAGE)
    return fastcnn.get_num_threads()


def _check_output(path, option):
    """Refuse, before any measuring, an output file whose folder does not exist."""
    import os

    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        _fail(f"argument {option}: folder {folder} does not exist", EXIT_USAGE)
    if os.path.isdir(path):
        _fail(f"argument {option}: {path} is a folder", EXIT_USAGE)


def _write_json(path, payload):
    from .bench import write_json

    try:
        write_json(path, payload)
    except OSError as exc:
        _fail(f"cannot write {path}: {exc}", EXIT_FAILURE)
    print(f"raw numbers written to {path}", flush=True)


def _log(message):
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _bench_conv(args):
    from . import bench

    _check_output(args.json, "--json")
    _check_output(args.plot, "--plot")
    if args.plot is not None:
        try:
            bench.require_matplotlib()
        except ImportError as exc:
            _fail(f"argument --plot: {exc}", EXIT_FAILURE)
    threads = _set_threads(args.threads)
    shapes = tuple(args.shapes) if args.shapes else bench.CONV_SUITE
    suite = bench.run_conv_suite(shapes, repeat=args.repeat, threads=threads, log=_log)
    print(bench.format_conv(suite), flush=True)
    if args.json is not None:
        _write_json(args.json, suite)
    if args.plot is not None:
        try:
            bench.plot_conv(suite, args.plot)
        except OSError as exc:
            _fail(f"cannot write {args.plot}: {exc}", EXIT_FAILURE)
        print(f"chart written to {args.plot}", flush=True)
    return 0


def _bench_train(args):
    from . import bench

    _check_output(args.json, "--json")
    threads = _set_threads(args.threads)
    _log(f"training LeNet-5: {args.repeat} repeats of {args.batches} batches per framework ...")
    result = bench.bench_train(threads=threads, batches=args.batches, repeat=args.repeat)
    print(bench.format_train(result), flush=True)
    if args.json is not None:
        _write_json(args.json, result)
    return 0


def _bench_startup(args):
    import subprocess

    from . import bench

    _check_output(args.json, "--json")
    _log("starting fresh processes" + ("" if args.no_cold else
                                       "; the empty-cache run compiles every kernel (slow)") + " ...")
    try:
        result = bench.bench_startup(repeat=args.repeat, cold=not args.no_cold)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, EXIT_FAILURE)
    print(bench.format_startup(result), flush=True)
    if args.json is not None:
        _write_json(args.json, result)
    return 0


# --- entry point ------------------------------------------------------------------


def main(argv=None):
    """Run the ``fastcnn`` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments, without the program name; ``None`` (default) reads
        ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success; 1 when training stopped early because the loss became
        NaN or infinite (the test accuracy is still reported).

    Raises
    ------
    SystemExit
        On an error, after printing ``fastcnn: error: ...`` on standard error:
        status 2 for bad arguments, 1 for missing or corrupt data, 130 when
        interrupted with Ctrl-C.

    Examples
    --------
    From a shell::

        $ fastcnn train --epochs 1 --limit 512
        $ fastcnn train --data ~/data/mnist --epochs 5 --threads 8
        $ python -m fastcnn train --help

    From Python:

    >>> from fastcnn.cli import main
    >>> main(["train", "--epochs", "1", "--limit", "256"])  # doctest: +SKIP
    0
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        sys.stderr.write("fastcnn: interrupted\n")
        raise SystemExit(130) from None
