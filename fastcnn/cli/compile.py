"""``fastcnn compile [--model NAME ...] [--dtype ...]``: fill the kernel cache before the first run.

Numba compiles fastcnn's kernels on first use and keeps them in its disk
cache; a fresh machine, container or CI runner pays 20-40 s per model on its
first training step.  This command pays it up front, with progress on
standard error: one training step and eval-mode predictions of each named
zoo model (built as ``fastcnn train --model`` builds it, or for
``--input-shape``) in each dtype.  In a Dockerfile::

    RUN pip install fastcnn && fastcnn compile --model lenet5 resnet_small
"""

import argparse
import sys
import time

from . import common
from .common import EXIT_USAGE, fail

#: The largest random batch ``fastcnn compile`` makes (all dtypes' copies together).
_MAX_BATCH_BYTES = 2**30


def add_parser(subparsers):
    """Add ``compile`` and its options to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "compile",
        help="compile the kernels that zoo models need, so that the first run starts at once",
        description="Compile (into Numba's disk cache) the kernels that training and predicting with the named "
                    "models run: one training step and eval-mode predictions each, with progress.  Later runs "
                    "load them in milliseconds.",
    )
    parser.add_argument("--model", nargs="+", default=["lenet5"], choices=common.MODEL_NAMES, metavar="NAME",
                        help=f"zoo models to compile for (default: lenet5; choices: {', '.join(common.MODEL_NAMES)})")
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=("float32", "float64"),
                        help="the dtypes to compile for (default: float32)")
    parser.add_argument("--batch-size", type=common.positive_int, default=64, metavar="B",
                        help="the training batch size the plans are made for (default: 64, as fastcnn train)")
    parser.add_argument("--input-shape", type=_input_shape, default=common.IMAGE_SHAPE, metavar="CxHxW",
                        help="images the models are built for (default: 1x28x28, as fastcnn train; e.g. 3x32x32)")
    parser.add_argument("--threads", type=common.positive_int, default=None, metavar="T",
                        help="the thread count the plans are made for (default: all cores, as fastcnn train)")
    return parser


def _input_shape(text):
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and 0 < int(p) <= 4096 for p in parts):
        raise argparse.ArgumentTypeError(f"expected CxHxW, three positive ints up to 4096 (e.g. 3x32x32), "
                                         f"got {text!r}")
    return tuple(int(p) for p in parts)


def run(args):
    """Compile for every (model, dtype) asked; print one line each; return 0."""
    from .. import models
    from ..compile_watch import CompileStatus, cache_location
    from ..parallel_compile import compile_model
    from ..serialize import model_from_config, model_to_config

    c, h, w = args.input_shape
    if h != w:
        fail(f"argument --input-shape: the zoo models take square images, got {h}x{w}", EXIT_USAGE)
    batch_bytes = args.batch_size * c * h * w * 8 * (1 + len(args.dtype))
    if batch_bytes > _MAX_BATCH_BYTES:
        fail(f"arguments --batch-size/--input-shape: a batch of {args.batch_size} images of {c}x{h}x{w} would take "
             f"{batch_bytes / 2**30:.1f} GiB; at most {_MAX_BATCH_BYTES // 2**30} GiB", EXIT_USAGE)
    common.set_threads(args.threads)
    jobs = []
    for name in dict.fromkeys(args.model):
        try:
            model = models.build(name, num_classes=common.NUM_CLASSES, in_channels=c, image_size=h)
        except (TypeError, ValueError) as exc:
            fail(f"argument --input-shape: {exc}", EXIT_USAGE)
        for dtype in dict.fromkeys(args.dtype):
            jobs.append((name, dtype, model_from_config(_with_dtype(model_to_config(model), dtype))))
    print(f"compiling into {cache_location()}", flush=True)
    for i, (name, dtype, model) in enumerate(jobs, 1):
        label = f"[{i}/{len(jobs)}] {name} {dtype}"
        start = time.perf_counter()
        with CompileStatus(_status_line(label)) as status:
            compile_model(model, batch_size=args.batch_size)
        _status_line(label)(None)
        n = status.text(done=True) if status.seconds() > 0 else "nothing to compile (all cached)"
        print(f"{label}: {n}; {time.perf_counter() - start:.1f} s in all", flush=True)
    return 0


def _with_dtype(config, dtype):
    """``config`` (nested dicts and lists) with every ``"dtype"`` entry set to ``dtype``."""
    if isinstance(config, dict):
        return {k: (dtype if k == "dtype" else _with_dtype(v, dtype)) for k, v in config.items()}
    if isinstance(config, list):
        return [_with_dtype(v, dtype) for v in config]
    return config


def _status_line(label):
    """A ``show`` for :class:`fastcnn.compile_watch.CompileStatus`: one rewritten line on a terminal, else nothing
    (``show(None)`` clears the line)."""
    def show(text):
        if not sys.stderr.isatty():
            return
        sys.stderr.write("\r\033[K" + (f"{label}: {text}" if text else ""))
        sys.stderr.flush()
    return show
