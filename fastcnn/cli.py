"""The ``fastcnn`` command line.

Subcommands
-----------
``fastcnn train``
    Train LeNet-5 on MNIST (the packaged sample by default, or a directory of
    IDX files) and report the test accuracy.

Run ``fastcnn train --help`` for the options.  The same commands are available
as ``python -m fastcnn``.  Errors in the arguments or the data are reported on
one line, ``fastcnn: error: ...``, on standard error, with exit status 2 (bad
arguments) or 1 (missing or corrupt data).
"""

import argparse
import sys
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
    return parser


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
