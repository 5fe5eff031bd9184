"""``fastcnn summary CKPT`` / ``fastcnn summary --model NAME [--plans]``: the layer table, with convolution plans."""

from . import common
from .common import EXIT_DATA_ERROR, EXIT_USAGE, fail


def add_parser(subparsers):
    """Add ``summary`` and its options to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "summary",
        help="the layer table of a checkpoint or a built-in model",
        description="Print the layers, output shapes and parameter counts of a checkpoint's "
                    "model, or of a built-in model with --model; with --plans, also the algorithm "
                    "each convolution runs for each pass and its scratch memory.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", nargs="?", default=None,
                        help="a checkpoint written by 'fastcnn train'")
    parser.add_argument("--model", default=None, choices=common.MODEL_NAMES,
                        help="a built-in model instead of a checkpoint")
    parser.add_argument("--plans", action="store_true",
                        help="under each convolution, the algorithm of each pass (forward, weight_grad, "
                             "input_grad) and its scratch memory for a training batch")
    parser.add_argument("--batch-size", type=common.positive_int, default=64, metavar="N",
                        help="the batch size the plans are made for (default: 64)")
    return parser


def run(args):
    """Print the title and ``model.summary()``; return 0."""
    if (args.checkpoint is None) == (args.model is None):
        fail("summary needs a checkpoint or --model NAME (one of them)", EXIT_USAGE)
    if args.model is not None:
        model = common.build_model(args.model)
        title = args.model
    else:
        checkpoint = common.load_checkpoint(args.checkpoint)
        model = checkpoint["model"]
        epoch = checkpoint.get("epoch")
        title = args.checkpoint + (f" (trained {epoch} epoch{'s' if epoch != 1 else ''})" if epoch else "")
    print(title)
    try:
        model.summary(plans=args.plans, batch_size=args.batch_size)
    except (TypeError, ValueError) as exc:
        if args.plans:  # the plans are made for --batch-size images: their arrays may be impossible
            fail(f"argument --batch-size: {exc}", EXIT_USAGE)
        fail(f"{args.checkpoint or args.model}: {exc}", EXIT_DATA_ERROR)
    return 0
