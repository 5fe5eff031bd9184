"""``fastcnn import-onnx IN.onnx OUT.npz``: an ONNX model as a fastcnn checkpoint (needs the ``onnx`` extra)."""

import os

from ..onnx import load
from . import common
from .common import EXIT_DATA_ERROR, EXIT_FAILURE, fail


def add_parser(subparsers):
    """Add ``import-onnx`` and its options to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "import-onnx",
        help="read an ONNX model into a fastcnn checkpoint",
        description=(
            "Read an ONNX file (one that 'fastcnn export' or torch.onnx.export wrote, for example) into a fastcnn "
            "model and write it as a checkpoint (atomically), which 'fastcnn evaluate', 'predict', 'summary' and "
            "'train --resume' read. The graph must take (N, C, H, W) images and be made of the operators "
            "fastcnn has; the first one it lacks is named. Nothing in the file is run, and external data is "
            "read only from files in its folder. Needs the onnx package: pip install 'fastcnn[onnx]'."
        ),
    )
    parser.add_argument("onnx_file", metavar="IN.onnx", help="the ONNX model")
    parser.add_argument("out", metavar="OUT.npz", help="the checkpoint to write")
    return parser


def run(args):
    """Read the model, write the checkpoint and say what it holds; return 0."""
    common.check_output(args.out, "OUT.npz")
    try:
        model = load(args.onnx_file)
    except ImportError as exc:
        fail(str(exc), EXIT_FAILURE)
    except (FileNotFoundError, TypeError, ValueError) as exc:
        fail(str(exc), EXIT_DATA_ERROR)
    except OSError as exc:
        fail(f"cannot read {args.onnx_file}: {exc.strerror or exc}", EXIT_DATA_ERROR)
    try:
        model.save(args.out, extra={"imported_from": os.path.basename(args.onnx_file)})
    except OSError as exc:
        fail(common.write_error(args.out, exc), EXIT_FAILURE)
    except ValueError as exc:
        fail(f"{args.onnx_file}: {exc}", EXIT_DATA_ERROR)
    count = sum(p.size for p in model.parameters())
    shape = ", ".join(map(str, model.input_shape))
    print(f"{args.out}: {len(model.layers)} layers, {count:,} parameters, input (N, {shape}), from "
          f"{args.onnx_file}", flush=True)
    return 0
