"""The ``fastcnn`` command line.

Subcommands
-----------
``fastcnn train``
    Train LeNet-5 on MNIST (the packaged sample by default, MNIST or
    Fashion-MNIST from ``--data-dir``/``$FASTCNN_DATA``, or a directory of IDX
    files), report the test accuracy and write a checkpoint (``--out``,
    default ``fastcnn-lenet5.npz``); ``--resume CKPT`` continues one exactly
    (``--epochs`` is the total).
``fastcnn evaluate CKPT``
    Loss, accuracy and confusion matrix of a checkpoint on a test set.
``fastcnn predict CKPT IMAGES.npy``
    Class labels for images, normalised with the checkpoint's statistics.
``fastcnn summary CKPT`` / ``fastcnn summary --model lenet5``
    The layer table.
``fastcnn plot CKPT --curves PNG --filters PNG --feature-maps PNG``
    Pictures of a checkpoint: its training curves, its first convolution's
    filters, and the feature maps of one test image (see :mod:`fastcnn.plot`).
``fastcnn bench conv|train|startup``
    Benchmark the convolution kernels, LeNet-5 training throughput or process
    start-up, against PyTorch when it is installed (see :mod:`fastcnn.bench`).

Run ``fastcnn train --help`` (or ``fastcnn bench conv --help``, ...) for the
options.  The same commands are available as ``python -m fastcnn``.  Errors in
the arguments or the data are reported on one line, ``fastcnn: error: ...``, on
standard error, with exit status 2 (bad arguments) or 1 (missing or corrupt
data or checkpoint, or a missing optional package such as matplotlib for
``--plot`` and ``fastcnn plot``).
"""

import argparse
import sys
import textwrap
import warnings

__all__ = ["main"]

EXIT_DATA_ERROR = 1
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_OUT = "fastcnn-lenet5.npz"
DEFAULTS = {"data": "sample", "model": "lenet5", "batch_size": 64, "lr": 0.05, "momentum": 0.9,
            "weight_decay": 5e-4, "seed": 0, "schedule": None, "augment": False}
AUGMENT = {"shift": 2, "rotation": 10.0}  # what --augment applies to every training batch
DATA_ENV = "FASTCNN_DATA"


MODELS = ("lenet5", "convnet", "vgg_small", "resnet_small")


def _build_model(name):
    """A network of ``fastcnn.models`` for 1x28x28 images and 10 classes (what ``train`` reads)."""
    from . import models

    if name == "lenet5":
        return models.lenet5()
    if name == "convnet":
        return models.convnet((1, 28, 28), 10)
    return models.get_model(name, num_classes=10, in_channels=1, image_size=28)


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


def _fraction(text):
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), got {text}")
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
        help="train a CNN (LeNet-5 by default) on MNIST, report the test accuracy and save a checkpoint",
        description=(
            "Train a CNN (--model: LeNet-5 by default, or convnet, vgg_small, resnet_small sized for "
            "1x28x28 images) on MNIST with SGD, report the test accuracy and save a checkpoint "
            "(weights, optimizer momentum, normalisation statistics, epoch, history). Images are "
            "scaled to [0, 1], then standardised with the mean and standard deviation of the "
            "training images. --epochs is the total: '--resume CKPT --epochs 5' trains the "
            "epochs CKPT has not done yet, giving the same weights as an uninterrupted run."
        ),
    )
    train.add_argument(
        "--data", default=None, metavar="sample|mnist|fashion-mnist|DIR",
        help="'sample' for the MNIST subset packaged with fastcnn (6,000 training and "
             "1,000 test images); 'mnist' or 'fashion-mnist' for the IDX files in --data-dir "
             "or $FASTCNN_DATA (nothing is downloaded); or a directory holding the four "
             "MNIST IDX files (train-images-idx3-ubyte[.gz], ...); default: sample, or the "
             "checkpoint's with --resume",
    )
    train.add_argument("--data-dir", default=None, metavar="DIR",
                       help="where --data mnist|fashion-mnist looks for the IDX files "
                            "(DIR/mnist or DIR itself; default: $FASTCNN_DATA)")
    train.add_argument("--model", default=None, choices=sorted(MODELS),
                       help="network to train, from fastcnn.models (default: lenet5)")
    train.add_argument("--epochs", type=_positive_int, default=3, metavar="N",
                       help="total passes over the training set, counting those of a "
                            "resumed checkpoint (default: %(default)s)")
    train.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                       help="mini-batch size (default: 64, or the checkpoint's)")
    train.add_argument("--lr", type=_positive_float, default=None, metavar="LR",
                       help="SGD learning rate (default: 0.05; with --resume the checkpoint's)")
    train.add_argument("--momentum", type=_momentum, default=None, metavar="M",
                       help="SGD momentum, in [0, 1) (default: 0.9; with --resume the checkpoint's)")
    train.add_argument("--weight-decay", type=_nonnegative_float, default=None,
                       metavar="WD", help="L2 weight decay (default: 0.0005; with --resume the "
                                          "checkpoint's)")
    train.add_argument("--schedule", default=None, metavar="SPEC",
                       help="learning-rate schedule, stepped after every epoch: "
                            "'step:STEP[:GAMMA]', 'exp:GAMMA[:EVERY]', "
                            "'plateau[:PATIENCE[:FACTOR]]' (on the validation loss) or 'none' "
                            "(default: none, or the checkpoint's)")
    train.add_argument("--augment", action="store_true", default=None,
                       help=f"augment every training batch: random shifts of up to "
                            f"{AUGMENT['shift']} pixels and rotations of up to "
                            f"{AUGMENT['rotation']:g} degrees (default: off, or the checkpoint's)")
    train.add_argument("--early-stopping", type=_positive_int, default=None, metavar="PATIENCE",
                       help="stop when the validation loss (of --val-split, else of the test "
                            "set) has not improved for PATIENCE epochs, keeping the weights of "
                            "the best epoch")
    train.add_argument("--val-split", type=_fraction, default=None, metavar="F",
                       help="hold out a stratified fraction F of the training images for "
                            "validation after every epoch (default: validate on the test set)")
    train.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                       help="threads for the parallel kernels (default: Numba's, "
                            "normally the number of cores)")
    train.add_argument("--seed", type=_nonnegative_int, default=None, metavar="S",
                       help="seed for weight initialisation, shuffling and the validation split "
                            "(default: 0, or the checkpoint's)")
    train.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                       help="use only the first N training images and the first N//4 "
                            "test images (for quick checks; default: all, or the checkpoint's)")
    train.add_argument("--out", default=None, metavar="PATH",
                       help="where to write the checkpoint (default: fastcnn-MODEL.npz in the current "
                            "directory); the history per epoch goes beside it as JSON, "
                            "PATH without .npz + '.history.json'")
    train.add_argument("--resume", default=None, metavar="CKPT",
                       help="continue training from a checkpoint written by 'fastcnn train'")
    train.add_argument("--plot", default=None, metavar="PATH",
                       help="write a PNG of the loss and accuracy per epoch "
                            "(needs matplotlib: pip install 'fastcnn[plot]')")
    train.set_defaults(func=_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="loss, accuracy and confusion matrix of a checkpoint on a test set",
        description=(
            "Evaluate a checkpoint on the test images of a data set, normalised with the "
            "statistics stored in the checkpoint: loss, accuracy and a 10x10 confusion "
            "matrix (rows: true class, columns: predicted class)."
        ),
    )
    evaluate.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'fastcnn train'")
    evaluate.add_argument("--data", default=None, metavar="sample|mnist|fashion-mnist|DIR",
                          help="as for 'fastcnn train' (default: the data the checkpoint was "
                               "trained on)")
    evaluate.add_argument("--data-dir", default=None, metavar="DIR",
                          help="where --data mnist|fashion-mnist looks (default: $FASTCNN_DATA)")
    evaluate.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                          help="use only the first N test images")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256, metavar="B",
                          help="images per forward pass (default: %(default)s)")
    evaluate.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                          help="threads for the parallel kernels")
    evaluate.set_defaults(func=_evaluate)

    predict = commands.add_parser(
        "predict",
        help="class labels for images in a .npy file",
        description=(
            "Predict class labels for images stored in a .npy file, shaped (N, 1, 28, 28) or "
            "(N, 28, 28): uint8 (scaled to [0, 1]) or floating point already in [0, 1]. They "
            "are normalised with the statistics stored in the checkpoint. The labels are "
            "printed, one per line, or written to --out as an int64 .npy array."
        ),
    )
    predict.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'fastcnn train'")
    predict.add_argument("images", metavar="IMAGES.npy", help="the images")
    predict.add_argument("--out", default=None, metavar="LABELS.npy",
                         help="write the labels here instead of printing them")
    predict.add_argument("--batch-size", type=_positive_int, default=256, metavar="B",
                         help="images per forward pass (default: %(default)s)")
    predict.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                         help="threads for the parallel kernels")
    predict.set_defaults(func=_predict)

    summary = commands.add_parser(
        "summary",
        help="the layer table of a checkpoint or a built-in model",
        description="Print the layers, output shapes and parameter counts of a checkpoint's "
                    "model, or of a built-in model with --model.",
    )
    summary.add_argument("checkpoint", metavar="CKPT", nargs="?", default=None,
                         help="a checkpoint written by 'fastcnn train'")
    summary.add_argument("--model", default=None, choices=sorted(MODELS),
                         help="a built-in model instead of a checkpoint")
    summary.set_defaults(func=_summary)

    plot = commands.add_parser(
        "plot",
        help="pictures of a checkpoint: training curves, filters, feature maps",
        description=(
            "Draw PNG pictures of a checkpoint written by 'fastcnn train': the loss and "
            "accuracy per epoch (--curves), the kernels of its first convolution (--filters), "
            "and the activations of one test image of the packaged MNIST sample after every "
            "convolution, activation and pooling layer (--feature-maps), normalised with the "
            "checkpoint's statistics. Needs matplotlib: pip install 'fastcnn[plot]'."
        ),
    )
    plot.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'fastcnn train'")
    plot.add_argument("--curves", default=None, metavar="PATH",
                      help="write the training curves (the checkpoint's history) here")
    plot.add_argument("--filters", default=None, metavar="PATH",
                      help="write the first convolution's filters here")
    plot.add_argument("--feature-maps", default=None, metavar="PATH",
                      help="write the feature maps of test image --image-index here")
    plot.add_argument("--image-index", type=_nonnegative_int, default=0, metavar="I",
                      help="which of the packaged sample's 1,000 test images --feature-maps draws "
                           "(default: %(default)s)")
    plot.set_defaults(func=_plot)
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

    zoo = kinds.add_parser(
        "models",
        help="vgg_small and resnet_small forward+backward time vs their PyTorch twins",
        description=(
            "Forward plus backward time of a batch of 64 3x32x32 images through vgg_small and "
            "resnet_small (train mode, cross-entropy, no optimizer step) against PyTorch twins "
            "of the same architectures (when installed), with the same thread count."
        ),
    )
    zoo.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                     help="threads for fastcnn and PyTorch (default: fastcnn's)")
    zoo.add_argument("--repeat", type=_positive_int, default=5, metavar="R",
                     help="timed rounds of each (default: %(default)s)")
    zoo.add_argument("--json", default=None, metavar="FILE",
                     help="write every raw number and the machine's description to FILE")
    zoo.set_defaults(func=_bench_models)


# --- data and checkpoints ----------------------------------------------------------


def _find_idx_dir(name, data_dir):
    """The directory holding the IDX files of ``name`` ('mnist' or 'fashion-mnist'), or fail with a hint."""
    import os
    from pathlib import Path

    root = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if not root:
        _fail(f"--data {name} reads the IDX files from a local folder: pass --data-dir DIR or set "
              f"{DATA_ENV}=DIR (nothing is downloaded)", EXIT_DATA_ERROR)
    root = Path(root).expanduser()
    for candidate in (root / name, root / name.replace("-", "_"), root):
        if candidate.is_dir() and any(candidate.glob("train-images*")):
            return candidate
    return root / name if (root / name).is_dir() else root


def _load_data(spec, data_dir=None):
    from .data import load_mnist, load_sample

    try:
        if spec == "sample":
            return "MNIST sample", load_sample()
        if spec in ("mnist", "fashion-mnist"):
            directory = _find_idx_dir(spec, data_dir)
            if spec == "fashion-mnist":
                from .data import load_fashion_mnist

                return f"Fashion-MNIST from {directory}", load_fashion_mnist(directory)
            return f"MNIST from {directory}", load_mnist(directory)
        return f"MNIST from {spec}", load_mnist(spec)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc), EXIT_DATA_ERROR)
    except OSError as exc:  # permission denied, I/O error, ...
        _fail(f"cannot read MNIST data from {spec}: {exc}", EXIT_DATA_ERROR)


def _check_images(spec, pairs):
    for split, (x, y) in pairs:
        if x.shape[1:] != (1, 28, 28):
            _fail(f"{spec}: the models of 'fastcnn train' take 1x28x28 images, the {split} images are "
                  f"{x.shape[2]}x{x.shape[3]}", EXIT_DATA_ERROR)
        if len(y) and not 0 <= y.min() <= y.max() <= 9:
            _fail(f"{spec}: expected {split} labels 0-9, got values from "
                  f"{y.min()} to {y.max()}", EXIT_DATA_ERROR)


def _load_checkpoint(path):
    from .serialize import load_checkpoint

    try:
        return load_checkpoint(path)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc), EXIT_DATA_ERROR)
    except OSError as exc:
        _fail(f"cannot read checkpoint {path}: {exc}", EXIT_DATA_ERROR)


def _fit_normalizer(x_train):
    """Per-channel standardisation statistics of the training images, as ``Normalizer.state_dict()``."""
    from .data import Normalizer

    return Normalizer("standardize").fit(x_train).state_dict()


def _normalize(x, state):
    """Images (uint8, or float already in [0, 1]) -> float32, standardised with a stored Normalizer state.

    The same arithmetic as ``Normalizer.transform`` (scale to [0, 1], subtract
    the float32 mean, divide by the float32 std, per channel), applied also to
    float images when the statistics were fitted on uint8 ones.
    """
    import numpy as np

    from .data import to_float

    x = to_float(x, np.float32)
    if not state:
        return x
    mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
    std = np.asarray(state["std"], dtype=np.float64).reshape(-1)
    if mean.size not in (1, x.shape[1]) or std.shape != mean.shape:
        _fail(f"the checkpoint's normalisation statistics are for {mean.size} channel(s), the images have "
              f"{x.shape[1]}", EXIT_DATA_ERROR)
    x = x - mean.astype(np.float32)[None, :, None, None]
    x /= std.astype(np.float32)[None, :, None, None]
    return x


def _settings(args, saved):
    """Training settings: the command line's, else the checkpoint's, else the defaults."""
    out = {}
    for key, default in DEFAULTS.items():
        value = getattr(args, key, None)
        out[key] = value if value is not None else saved.get(key, default)
    for key in ("data_dir", "limit", "val_split", "early_stopping"):
        value = getattr(args, key, None)
        out[key] = value if value is not None else saved.get(key)
    return out


def _jsonable_history(history):
    return {k: [None if v is None else (int(v) if k == "epoch" else float(v)) for v in values]
            for k, values in history.items()}


# --- train ------------------------------------------------------------------------


def _train(args):
    import numpy as np

    import fastcnn
    import fastcnn.models
    import fastcnn.optim

    if args.out is None:
        args.out = DEFAULT_OUT.replace("lenet5", args.model or DEFAULTS["model"])
    _check_output(args.out, "--out")
    _check_output(args.plot, "--plot")
    if args.plot is not None:
        from .plot import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            _fail(f"argument --plot: {exc}", EXIT_FAILURE)
    _set_threads(args.threads)

    checkpoint = _load_checkpoint(args.resume) if args.resume is not None else None
    extra = (checkpoint or {}).get("extra") or {}
    settings = _settings(args, extra.get("settings") or {})
    start = int(extra.get("epoch") or 0) if checkpoint else 0
    if checkpoint and start >= args.epochs:
        _fail(f"argument --epochs: {args.resume} has already trained {start} epoch"
              f"{'s' if start != 1 else ''}; --epochs is the total, pass more than {start}", EXIT_USAGE)

    name, ((x_train, y_train), (x_test, y_test)) = _load_data(settings["data"], settings["data_dir"])
    _check_images(settings["data"], (("training", (x_train, y_train)), ("test", (x_test, y_test))))
    if settings["limit"] is not None:
        x_train, y_train = x_train[: settings["limit"]], y_train[: settings["limit"]]
        n_test = max(1, settings["limit"] // 4)
        x_test, y_test = x_test[:n_test], y_test[:n_test]

    x_val = y_val = None
    if settings["val_split"] is not None:
        from .data import train_val_split

        try:
            (x_train, y_train), (x_val, y_val) = train_val_split(
                x_train, y_train, val_fraction=settings["val_split"], seed=settings["seed"], stratify=True)
        except ValueError as exc:
            _fail(f"argument --val-split: {exc}", EXIT_USAGE)

    if checkpoint is not None and checkpoint.get("normalizer_state"):
        norm = checkpoint["normalizer_state"]  # the statistics of the original training split
    else:
        norm = _fit_normalizer(x_train)
    x_train = _normalize(x_train, norm)
    x_test = _normalize(x_test, norm)
    if x_val is not None:
        x_val = _normalize(x_val, norm)

    if checkpoint is not None:
        model = checkpoint["model"]
    else:
        if hasattr(fastcnn, "manual_seed"):
            fastcnn.manual_seed(settings["seed"])
        model = _build_model(settings["model"])
    optimizer = fastcnn.optim.SGD(
        model.parameters(), lr=settings["lr"], momentum=settings["momentum"],
        weight_decay=settings["weight_decay"],
    )
    if checkpoint is not None and checkpoint.get("optimizer_state") is not None:
        try:
            optimizer.load_state_dict(checkpoint["optimizer_state"])
        except (KeyError, TypeError, ValueError) as exc:
            _fail(f"{args.resume}: corrupt optimizer state: {exc}", EXIT_DATA_ERROR)
        for key in ("lr", "momentum", "weight_decay"):  # explicit options win over the checkpoint
            if getattr(args, key) is not None:
                setattr(optimizer, key, getattr(args, key))
        settings.update(lr=optimizer.lr, momentum=optimizer.momentum, weight_decay=optimizer.weight_decay)

    schedule = None
    if settings["schedule"] not in (None, "", "none"):
        from .optim import make_schedule

        try:
            schedule = make_schedule(settings["schedule"], optimizer)
        except (TypeError, ValueError) as exc:
            _fail(f"argument --schedule: {exc}", EXIT_USAGE)
        saved_schedule = (checkpoint or {}).get("schedule_state")
        if saved_schedule and schedule is not None and getattr(args, "schedule", None) is None:
            try:
                schedule.load_state_dict(saved_schedule)
            except (KeyError, TypeError, ValueError) as exc:
                _fail(f"{args.resume}: corrupt schedule state: {exc}", EXIT_DATA_ERROR)

    threads = fastcnn.get_num_threads() if hasattr(fastcnn, "get_num_threads") else "?"
    validation = (f"{len(x_val)} validation / " if x_val is not None else "")
    resumed = f"; resuming {args.resume} after epoch {start}" if checkpoint is not None else ""
    print(
        f"{settings['model']} on {name}: {len(x_train)} training / {validation}{len(x_test)} test images; "
        f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}, batch {settings['batch_size']}, "
        f"SGD lr={settings['lr']:g} momentum={settings['momentum']:g} "
        f"weight_decay={settings['weight_decay']:g}; "
        f"{threads} thread{'s' if threads != 1 else ''}{resumed}",
        flush=True,
    )
    fit_kwargs = dict(
        epochs=args.epochs,
        batch_size=settings["batch_size"],
        optimizer=optimizer,
        validation_data=(x_val, y_val) if x_val is not None else (x_test, y_test),
        verbose=True,
        seed=settings["seed"],
    )
    if start:
        fit_kwargs["initial_epoch"] = start
    if schedule is not None:
        fit_kwargs["schedule"] = schedule
    stopper = None
    if settings["early_stopping"] is not None:
        from .callbacks import EarlyStopping

        stopper = EarlyStopping(monitor="val_loss", patience=settings["early_stopping"])
        fit_kwargs["callbacks"] = [stopper]
    augment = None
    if settings["augment"]:
        from .augment import Augment

        saved_augment = extra.get("augment_state")
        if saved_augment:
            augment = Augment.from_state_dict(saved_augment)  # the generator where the last run left it
        else:
            augment = Augment(**AUGMENT, seed=np.random.default_rng([settings["seed"], 0xA06]))
        fit_kwargs["augment"] = augment
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            new = model.fit(x_train, y_train, **fit_kwargs)
        except (TypeError, ValueError) as exc:
            _fail(f"cannot train: {exc}", EXIT_USAGE)
    for warning in caught:
        sys.stderr.write(f"fastcnn: warning: {warning.message}\n")
    stopped_early = stopper is not None and stopper.stopped_epoch > 0

    done = start + len(new.get("loss", ()))
    history = {k: list(v) for k, v in (extra.get("history") or {}).items()}
    for key, values in new.items():
        history.setdefault(key, []).extend(values)
    if hasattr(model, "save"):
        try:
            extra_out = {
                "epoch": done,
                "seed": settings["seed"],
                "history": _jsonable_history(history),
                "settings": settings,
            }
            if augment is not None:
                extra_out["augment_state"] = {k: v.tolist() if hasattr(v, "tolist") else v
                                              for k, v in augment.state_dict().items()}
            model.save(args.out, optimizer=optimizer, normalizer=norm, schedule=schedule, extra=extra_out)
        except OSError as exc:
            _fail(f"cannot write {args.out}: {exc}", EXIT_FAILURE)
        stop = f"; stopped early, weights of the best epoch ({stopper.best_epoch + 1})" if stopped_early else ""
        print(f"checkpoint written to {args.out} (epoch {done}{stop})", flush=True)
        history_path = _history_path(args.out)
        try:
            from .callbacks import save_history

            save_history(_jsonable_history(history), history_path)
        except OSError as exc:
            _fail(f"cannot write {history_path}: {exc}", EXIT_FAILURE)
        print(f"history written to {history_path}", flush=True)
    if args.plot is not None:
        from .plot import plot_history

        try:
            plot_history(history, args.plot)
        except OSError as exc:
            _fail(f"cannot write {args.plot}: {exc}", EXIT_FAILURE)
        print(f"training curves written to {args.plot}", flush=True)

    result = model.evaluate(x_test, y_test)
    n = len(x_test)
    print(f"test accuracy: {100 * result['accuracy']:.2f}% ({n} image{'s' if n != 1 else ''})",
          flush=True)
    if done < args.epochs and not stopped_early:  # fit stopped: the loss diverged
        return EXIT_FAILURE
    return 0


def _history_path(out):
    """Where ``train`` writes the history: the checkpoint path without ``.npz``, plus ``.history.json``."""
    return (out[:-4] if out.lower().endswith(".npz") else out) + ".history.json"


def _plot(args):
    """``fastcnn plot``: training curves, filters and feature maps of a checkpoint."""
    from . import plot

    wanted = [(opt, path) for opt, path in (("--curves", args.curves), ("--filters", args.filters),
                                            ("--feature-maps", args.feature_maps)) if path is not None]
    if not wanted:
        _fail("plot needs at least one of --curves, --filters, --feature-maps PATH", EXIT_USAGE)
    for option, path in wanted:
        _check_output(path, option)
    try:
        plot.require_matplotlib()
    except ImportError as exc:
        _fail(str(exc), EXIT_FAILURE)
    checkpoint = _load_checkpoint(args.checkpoint)
    model = checkpoint["model"]
    history = checkpoint.get("history")
    if args.curves is not None and not (isinstance(history, dict) and history.get("loss")):
        _fail(f"{args.checkpoint}: the checkpoint holds no training history for --curves", EXIT_DATA_ERROR)
    if args.filters is not None and not plot._conv_layers(model):
        _fail(f"{args.checkpoint}: the model has no Conv2d layer for --filters", EXIT_DATA_ERROR)
    image = None
    if args.feature_maps is not None:
        name, (_, (x_test, y_test)) = _load_data("sample")
        if args.image_index >= len(x_test):
            _fail(f"argument --image-index: the {name} has {len(x_test)} test images (0 to "
                  f"{len(x_test) - 1}), got {args.image_index}", EXIT_USAGE)
        i = args.image_index
        image = _normalize(x_test[i:i + 1], checkpoint.get("normalizer_state"))[0]

    def write(option, path, draw, what):
        try:
            draw()
        except OSError as exc:
            _fail(f"cannot write {path}: {exc}", EXIT_FAILURE)
        except (TypeError, ValueError) as exc:
            _fail(f"{args.checkpoint}: cannot draw {option}: {exc}", EXIT_DATA_ERROR)
        print(f"{what} written to {path}", flush=True)

    if args.curves is not None:
        write("--curves", args.curves, lambda: plot.plot_history(history, args.curves), "training curves")
    if args.filters is not None:
        write("--filters", args.filters, lambda: plot.plot_filters(model, args.filters), "filters")
    if args.feature_maps is not None:
        write("--feature-maps", args.feature_maps, lambda: plot.plot_feature_maps(model, image, args.feature_maps),
              f"feature maps of test image {args.image_index} (label {int(y_test[args.image_index])})")
    return 0


# --- evaluate / predict / summary ---------------------------------------------------


def _evaluate(args):
    import numpy as np

    _set_threads(args.threads)
    checkpoint = _load_checkpoint(args.checkpoint)
    saved = ((checkpoint.get("extra") or {}).get("settings")) or {}
    spec = args.data or saved.get("data") or "sample"
    name, (_, (x_test, y_test)) = _load_data(spec, args.data_dir or saved.get("data_dir"))
    _check_images(spec, (("test", (x_test, y_test)),))
    if args.limit is not None:
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    model = checkpoint["model"]
    x = _normalize(x_test, checkpoint.get("normalizer_state"))
    try:
        result = model.evaluate(x, y_test, batch_size=args.batch_size)
        logits = model.predict(x, batch_size=args.batch_size)
    except (TypeError, ValueError) as exc:
        _fail(f"{args.checkpoint}: the model cannot take these images: {exc}", EXIT_DATA_ERROR)
    k = logits.shape[1]
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_test, logits.argmax(axis=1)), 1)
    n = len(y_test)
    print(f"{args.checkpoint} on {name}: {n} test image{'s' if n != 1 else ''}")
    print(f"loss: {result['loss']:.4f}")
    print(f"accuracy: {100 * result['accuracy']:.2f}%")
    print(_confusion_table(confusion))
    return 0


def _confusion_table(confusion):
    """Rows: true class, columns: predicted class, with per-class recall."""
    k = len(confusion)
    width = max(4, len(str(int(confusion.max()))) + 1)
    lines = ["confusion matrix (rows: true class, columns: predicted class)",
             "true\\pred " + "".join(f"{j:>{width}}" for j in range(k)) + "  recall"]
    for i in range(k):
        total = int(confusion[i].sum())
        recall = f"{100 * confusion[i, i] / total:6.1f}%" if total else "     -"
        lines.append(f"{i:>9} " + "".join(f"{int(v):>{width}}" for v in confusion[i]) + f" {recall}")
    return "\n".join(lines)


def _predict(args):
    import numpy as np

    _check_output(args.out, "--out")
    _set_threads(args.threads)
    checkpoint = _load_checkpoint(args.checkpoint)
    model = checkpoint["model"]
    try:
        images = np.load(args.images, allow_pickle=False)
    except FileNotFoundError:
        _fail(f"images not found: {args.images}", EXIT_DATA_ERROR)
    except (ValueError, OSError, EOFError) as exc:
        _fail(f"{args.images}: not a readable .npy array of images ({exc})", EXIT_DATA_ERROR)
    if not isinstance(images, np.ndarray):
        _fail(f"{args.images}: expected a .npy array of images, got an .npz archive", EXIT_DATA_ERROR)
    if images.ndim == 3:
        images = images[:, None]
    expected = model.input_shape or (1, 28, 28)
    if images.ndim != 4 or images.shape[1:] != tuple(expected):
        _fail(f"{args.images}: expected images shaped (N, {', '.join(map(str, expected))}) or "
              f"(N, {', '.join(map(str, expected[1:]))}), got {images.shape}", EXIT_DATA_ERROR)
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        _fail(f"{args.images}: expected uint8 or floating-point images, got {images.dtype}", EXIT_DATA_ERROR)
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        _fail(f"{args.images}: the images contain NaN or infinite values", EXIT_DATA_ERROR)
    x = _normalize(images, checkpoint.get("normalizer_state"))
    labels = (model.predict(x, batch_size=args.batch_size).argmax(axis=1).astype(np.int64)
              if len(x) else np.empty(0, np.int64))
    if args.out is None:
        sys.stdout.write("".join(f"{int(v)}\n" for v in labels))
        return 0
    try:
        with open(args.out, "wb") as f:
            np.save(f, labels)
    except OSError as exc:
        _fail(f"cannot write {args.out}: {exc}", EXIT_FAILURE)
    print(f"{len(labels)} label{'s' if len(labels) != 1 else ''} written to {args.out}", flush=True)
    return 0


def _summary(args):
    if (args.checkpoint is None) == (args.model is None):
        _fail("summary needs a checkpoint or --model NAME (one of them)", EXIT_USAGE)
    if args.model is not None:
        model = _build_model(args.model)
        title = args.model
    else:
        checkpoint = _load_checkpoint(args.checkpoint)
        model = checkpoint["model"]
        epoch = checkpoint.get("epoch")
        title = args.checkpoint + (f" (trained {epoch} epoch{'s' if epoch != 1 else ''})" if epoch else "")
    print(title)
    model.summary()
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


def _bench_models(args):
    from . import bench

    _check_output(args.json, "--json")
    threads = _set_threads(args.threads)
    _log(f"vgg_small and resnet_small forward+backward: {args.repeat} rounds per framework ...")
    result = bench.bench_models(threads=threads, repeat=args.repeat)
    print(bench.format_models_table(result), flush=True)
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
        NaN or infinite (the test accuracy is still reported and the
        checkpoint of the last good epoch written).

    Raises
    ------
    SystemExit
        On an error, after printing ``fastcnn: error: ...`` on standard error:
        status 2 for bad arguments, 1 for missing or corrupt data or
        checkpoints, 130 when
        interrupted with Ctrl-C.

    Examples
    --------
    From a shell::

        $ fastcnn train --epochs 1 --limit 512
        $ fastcnn train --data ~/data/mnist --epochs 5 --threads 8
        $ fastcnn train --epochs 1 --out a.npz && fastcnn train --resume a.npz --epochs 3 --out b.npz
        $ fastcnn evaluate b.npz
        $ fastcnn predict b.npz images.npy --out labels.npy
        $ fastcnn plot b.npz --curves curves.png --filters filters.png --feature-maps maps.png
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
