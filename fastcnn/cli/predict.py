"""``fastcnn predict CKPT IMAGES.npy``: class labels for images, normalised with the checkpoint's statistics."""

import sys

import numpy as np

from ..data.files import read_npy
from . import common
from .common import EXIT_DATA_ERROR, fail


def add_parser(subparsers):
    """Add ``predict`` and its options to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "predict",
        help="class labels for images in a .npy file",
        description=(
            "Predict class labels for images stored in a .npy file, shaped (N, 1, 28, 28) or "
            "(N, 28, 28): uint8 (scaled to [0, 1]) or floating point already in [0, 1] (other values are "
            "refused). They "
            "are normalised with the statistics stored in the checkpoint. The labels are "
            "printed, one per line, or written to --out as an int64 .npy array (atomically: an existing "
            "file is replaced only by a complete new one)."
        ),
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'fastcnn train'")
    parser.add_argument("images", metavar="IMAGES.npy", help="the images")
    parser.add_argument("--out", default=None, metavar="LABELS.npy",
                        help="write the labels here instead of printing them")
    parser.add_argument("--batch-size", type=common.positive_int, default=256, metavar="B",
                        help="images per forward pass (default: %(default)s)")
    parser.add_argument("--threads", type=common.positive_int, default=None, metavar="T",
                        help="threads for the parallel kernels")
    return parser


def run(args):
    """Print the labels, one per line, or write them to ``--out``; return 0."""
    common.check_output(args.out, "--out")
    common.set_threads(args.threads)
    checkpoint = common.load_checkpoint(args.checkpoint)
    model = checkpoint["model"]
    expected = tuple(model.input_shape or common.IMAGE_SHAPE)
    common.check_class_scores(model, expected, args.checkpoint)
    images = _load_images(args.images, expected)
    x = common.normalize(images, checkpoint.get("normalizer_state"))
    labels = (model.predict(x, batch_size=args.batch_size).argmax(axis=1).astype(np.int64)
              if len(x) else np.empty(0, np.int64))
    if args.out is None:
        sys.stdout.write("".join(f"{int(v)}\n" for v in labels))
        return 0
    common.write_output(args.out, lambda f: np.save(f, labels))
    print(f"{len(labels)} label{'s' if len(labels) != 1 else ''} written to {args.out}", flush=True)
    return 0


def _load_images(path, expected):
    """The images of a .npy file as (N, C, H, W) with ``(C, H, W) == expected``: uint8, or float in [0, 1].

    The ``.npy`` header is read first and its size checked against the file's (never pickle).
    """
    try:
        images = read_npy(path, "images file")
    except FileNotFoundError:
        fail(f"images not found: {path}", EXIT_DATA_ERROR)
    except ValueError as exc:
        fail(f"{exc}", EXIT_DATA_ERROR)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_DATA_ERROR)
    shape = images.shape
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1:] != expected:
        fail(f"{path}: expected images shaped (N, {', '.join(map(str, expected))}) or "
             f"(N, {', '.join(map(str, expected[1:]))}), got {shape}", EXIT_DATA_ERROR)
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        fail(f"{path}: expected uint8 or floating-point images, got {images.dtype}", EXIT_DATA_ERROR)
    if images.dtype.kind == "f" and images.size:
        if not np.isfinite(images).all():
            fail(f"{path}: the images contain NaN or infinite values", EXIT_DATA_ERROR)
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 1:
            fail(f"{path}: floating-point images must be in [0, 1], these range from {low:g} to {high:g}; "
                 "pass 0-255 pixels as uint8, or divide by 255", EXIT_DATA_ERROR)
    return images
