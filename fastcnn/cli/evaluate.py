"""``fastcnn evaluate CKPT``: loss, accuracy and confusion matrix of a checkpoint on a test set."""

import numpy as np

from . import common
from .common import EXIT_DATA_ERROR, fail


def add_parser(subparsers):
    """Add ``evaluate`` and its options to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="loss, accuracy and confusion matrix of a checkpoint on a test set",
        description=(
            "Evaluate a checkpoint on the test images of a data set, normalised with the "
            "statistics stored in the checkpoint: loss, accuracy and a 10x10 confusion "
            "matrix (rows: true class, columns: predicted class)."
        ),
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'fastcnn train'")
    parser.add_argument("--data", default=None, type=common.nonempty, metavar="sample|mnist|fashion-mnist|DIR",
                        help="as for 'fastcnn train' (default: the data the checkpoint was "
                             "trained on)")
    parser.add_argument("--data-dir", default=None, type=common.nonempty, metavar="DIR",
                        help="where --data mnist|fashion-mnist looks (default: $FASTCNN_DATA); refused with "
                             "other data")
    parser.add_argument("--limit", type=common.positive_int, default=None, metavar="N",
                        help="use only the first N test images")
    parser.add_argument("--batch-size", type=common.positive_int, default=256, metavar="B",
                        help="images per forward pass (default: %(default)s)")
    parser.add_argument("--threads", type=common.positive_int, default=None, metavar="T",
                        help="threads for the parallel kernels")
    return parser


def run(args):
    """Print the loss, the accuracy and the confusion matrix; return 0."""
    common.set_threads(args.threads)
    checkpoint = common.load_checkpoint(args.checkpoint)
    saved = ((checkpoint.get("extra") or {}).get("settings")) or {}
    spec = args.data or saved.get("data") or "sample"
    common.check_data_dir(spec, args.data_dir)
    name, (_, (x_test, y_test)) = common.load_data(spec, args.data_dir or saved.get("data_dir"))
    common.check_images(spec, (("test", (x_test, y_test)),))
    if args.limit is not None:
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    model = checkpoint["model"]
    common.check_class_scores(model, x_test.shape[1:], args.checkpoint)
    x = common.normalize(x_test, checkpoint.get("normalizer_state"))
    try:
        result = model.evaluate(x, y_test, batch_size=args.batch_size)
        logits = model.predict(x, batch_size=args.batch_size)
    except (TypeError, ValueError) as exc:
        fail(f"{args.checkpoint}: the model cannot take these images: {str(exc).replace('Sequential.evaluate: ', '')}",
             EXIT_DATA_ERROR)
    k = logits.shape[1]
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_test, logits.argmax(axis=1)), 1)
    n = len(y_test)
    print(f"{args.checkpoint} on {name}: {n} test image{'s' if n != 1 else ''}")
    print(f"loss: {result['loss']:.4f}")
    print(f"accuracy: {100 * result['accuracy']:.2f}%")
    print(confusion_table(confusion))
    return 0


def confusion_table(confusion):
    """The confusion matrix as text: rows true class, columns predicted class, with per-class recall."""
    k = len(confusion)
    width = max(4, len(str(int(confusion.max()))) + 1)
    lines = ["confusion matrix (rows: true class, columns: predicted class)",
             "true\\pred " + "".join(f"{j:>{width}}" for j in range(k)) + "  recall"]
    for i in range(k):
        total = int(confusion[i].sum())
        recall = f"{100 * confusion[i, i] / total:6.1f}%" if total else "     -"
        lines.append(f"{i:>9} " + "".join(f"{int(v):>{width}}" for v in confusion[i]) + f" {recall}")
    return "\n".join(lines)
