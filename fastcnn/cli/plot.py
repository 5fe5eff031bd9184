"""``fastcnn plot CKPT``: training curves, filters and feature maps of a checkpoint, as PNG files."""

from .. import plot
from . import common
from .common import EXIT_DATA_ERROR, EXIT_FAILURE, EXIT_USAGE, fail


def add_parser(subparsers):
    """Add ``plot`` and its options to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
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
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'fastcnn train'")
    parser.add_argument("--curves", default=None, metavar="PATH",
                        help="write the training curves (the checkpoint's history) here")
    parser.add_argument("--filters", default=None, metavar="PATH",
                        help="write the first convolution's filters here")
    parser.add_argument("--feature-maps", default=None, metavar="PATH",
                        help="write the feature maps of test image --image-index here")
    parser.add_argument("--image-index", type=common.nonnegative_int, default=0, metavar="I",
                        help="which of the packaged sample's 1,000 test images --feature-maps draws "
                             "(default: %(default)s)")
    return parser


def run(args):
    """Check everything first (arguments, outputs, checkpoint, image index, then matplotlib), then draw; return 0.

    Mistakes in the arguments or the data are reported whether or not matplotlib is installed.
    """
    wanted = [(opt, path) for opt, path in (("--curves", args.curves), ("--filters", args.filters),
                                            ("--feature-maps", args.feature_maps)) if path is not None]
    if not wanted:
        fail("plot needs at least one of --curves, --filters, --feature-maps PATH", EXIT_USAGE)
    for option, path in wanted:
        common.check_output(path, option)
    checkpoint = common.load_checkpoint(args.checkpoint)
    model = checkpoint["model"]
    history = checkpoint.get("history")
    if args.curves is not None and not (isinstance(history, dict) and history.get("loss")):
        fail(f"{args.checkpoint}: the checkpoint holds no training history for --curves", EXIT_DATA_ERROR)
    if args.filters is not None and not plot.conv_layers(model):
        fail(f"{args.checkpoint}: the model has no Conv2d layer for --filters", EXIT_DATA_ERROR)
    if args.feature_maps is not None:
        image, label = _test_image(args.image_index, checkpoint.get("normalizer_state"))
    try:
        plot.require_matplotlib()
    except ImportError as exc:
        fail(str(exc), EXIT_FAILURE)

    if args.curves is not None:
        _draw(args, "--curves", args.curves, lambda: plot.plot_history(history, args.curves), "training curves")
    if args.filters is not None:
        _draw(args, "--filters", args.filters, lambda: plot.plot_filters(model, args.filters), "filters")
    if args.feature_maps is not None:
        _draw(args, "--feature-maps", args.feature_maps,
              lambda: plot.plot_feature_maps(model, image, args.feature_maps),
              f"feature maps of test image {args.image_index} (label {label})")
    return 0


def _test_image(index, normalizer_state):
    """Test image ``index`` of the packaged sample, normalised, and its label."""
    name, (_, (x_test, y_test)) = common.load_data("sample")
    if index >= len(x_test):
        fail(f"argument --image-index: the {name} has {len(x_test)} test images (0 to "
             f"{len(x_test) - 1}), got {index}", EXIT_USAGE)
    return common.normalize(x_test[index:index + 1], normalizer_state)[0], int(y_test[index])


def _draw(args, option, path, draw, what):
    """Run ``draw()``, turning its errors into one-line errors; report ``{what} written to {path}``."""
    try:
        draw()
    except OSError as exc:
        fail(common.write_error(path, exc), EXIT_FAILURE)
    except (TypeError, ValueError) as exc:
        fail(f"{args.checkpoint}: cannot draw {option}: {exc}", EXIT_DATA_ERROR)
    print(f"{what} written to {path}", flush=True)
