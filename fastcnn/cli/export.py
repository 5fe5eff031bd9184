"""``fastcnn export CKPT OUT.onnx``: a checkpoint's model as an ONNX file (needs ``pip install 'fastcnn[onnx]'``)."""

import argparse

import numpy as np

from .. import Sequential
from ..layers import Normalize
from ..onnx import EXPORT_OPSETS, OPSET, export
from . import common
from .common import EXIT_DATA_ERROR, EXIT_FAILURE, EXIT_USAGE, fail


def _shape_arg(text):
    """``C,H,W`` -> (C, H, W), positive ints."""
    parts = text.replace("x", ",").split(",")
    values = [common.int_arg(p.strip()) for p in parts]
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be three positive integers C,H,W, got {text!r}")
    return tuple(values)


def add_parser(subparsers):
    """Add ``export`` and its options to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "export",
        help="write a checkpoint's model as an ONNX file",
        description=(
            "Write the model of a checkpoint as an ONNX file (atomically) that ONNX Runtime and other ONNX "
            f"consumers run: opset {OPSET} unless --opset says otherwise, input 'input' and output 'output' with "
            "a dynamic batch dimension. The graph computes what the model's predict does; the normalisation "
            "statistics stored beside the model are left out unless --include-normalizer. Needs the onnx "
            "package: pip install 'fastcnn[onnx]'."
        ),
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'fastcnn train' or Sequential.save")
    parser.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument("--opset", type=common.int_arg, default=OPSET, metavar="N",
                        help=f"the ONNX opset, {EXPORT_OPSETS.start} to {EXPORT_OPSETS.stop - 1} (default: {OPSET})")
    parser.add_argument("--input-shape", type=_shape_arg, default=None, metavar="C,H,W",
                        help="the shape of one image, for a model saved without one")
    parser.add_argument("--include-normalizer", action="store_true",
                        help="put the checkpoint's normalisation statistics in the graph as its first nodes: the "
                             "ONNX model then takes images scaled to [0, 1], as 'fastcnn predict' does")
    return parser


def _with_normalizer(model, state, where):
    """``model`` with a Normalize layer first that standardises [0, 1] images with the checkpoint's statistics."""
    if not state or state.get("mean") is None or state.get("std") is None:
        fail(f"{where}: --include-normalizer: the checkpoint holds no normalisation statistics", EXIT_DATA_ERROR)
    shape = model.input_shape
    if shape is None:
        fail(f"{where}: --include-normalizer needs the model's input shape (pass --input-shape)", EXIT_USAGE)
    mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
    std = np.asarray(state["std"], dtype=np.float64).reshape(-1)
    if mean.size not in (1, shape[0]) or std.shape != mean.shape:
        fail(f"{where}: the normalisation statistics are for {mean.size} channel(s), the model takes {shape[0]}",
             EXIT_DATA_ERROR)
    try:
        first = Normalize(shape[0], mean=np.broadcast_to(mean, shape[0]), std=np.broadcast_to(std, shape[0]),
                          dtype=model.dtype)
        return Sequential(first, *model.layers, input_shape=shape)
    except ValueError as exc:
        fail(f"{where}: the normalisation statistics are unusable: {exc}", EXIT_DATA_ERROR)


def run(args):
    """Write the ONNX file and say what it holds; return 0."""
    common.check_output(args.out, "OUT.onnx")
    if args.opset not in EXPORT_OPSETS:
        fail(f"argument --opset: must be from {EXPORT_OPSETS.start} to {EXPORT_OPSETS.stop - 1}, got {args.opset}",
             EXIT_USAGE)
    checkpoint = common.load_checkpoint(args.checkpoint)
    model = checkpoint["model"]
    if args.input_shape is not None:
        try:
            model = Sequential(*model.layers, input_shape=args.input_shape)
        except ValueError as exc:
            fail(f"argument --input-shape: {exc}", EXIT_USAGE)
    if args.include_normalizer:
        model = _with_normalizer(model, checkpoint.get("normalizer_state"), args.checkpoint)
    try:
        export(model, args.out, opset=args.opset)
    except ImportError as exc:
        fail(str(exc), EXIT_FAILURE)
    except OSError as exc:
        fail(common.write_error(args.out, exc), EXIT_FAILURE)
    except (TypeError, ValueError) as exc:
        fail(f"{args.checkpoint}: {exc}", EXIT_DATA_ERROR)
    shape = ", ".join(map(str, model.input_shape))
    print(f"{args.out}: ONNX opset {args.opset}, input (N, {shape}), {len(model.layers)} layers", flush=True)
    return 0
