"""The ``fastcnn`` command line.

Subcommands
-----------
``fastcnn train``
    Train LeNet-5 (or another zoo model with ``--model``) on MNIST (the packaged sample by default, MNIST or
    Fashion-MNIST from ``--data-dir``/``$FASTCNN_DATA``, or a directory of IDX
    files), report the test accuracy and write a checkpoint (``--out``,
    default ``fastcnn-lenet5.npz``); ``--resume CKPT`` continues one exactly
    (``--epochs`` is the total).
``fastcnn evaluate CKPT``
    Loss, accuracy and confusion matrix of a checkpoint on a test set.
``fastcnn predict CKPT IMAGES.npy``
    Class labels for images, normalised with the checkpoint's statistics.
``fastcnn summary CKPT`` / ``fastcnn summary --model lenet5 [--plans]``
    The layer table; ``--plans`` adds each convolution's plan per pass.
``fastcnn plot CKPT --curves PNG --filters PNG --feature-maps PNG``
    Pictures of a checkpoint: its training curves, its first convolution's
    filters, and the feature maps of one test image (see :mod:`fastcnn.plot`).
``fastcnn bench conv|train|models|startup|distributed``
    Benchmark the convolution kernels, LeNet-5 training throughput, the zoo
    models, process start-up (against PyTorch when it is installed), or
    data-parallel training on 1 and 2 MPI ranks (see :mod:`fastcnn.bench`).
``fastcnn export CKPT OUT.onnx`` / ``fastcnn import-onnx IN.onnx OUT.npz``
    A checkpoint's model as an ONNX file, and an ONNX model (one ``torch.onnx.export``
    wrote, say) as a checkpoint (see :mod:`fastcnn.onnx`; ``pip install 'fastcnn[onnx]'``).
``fastcnn compile [--model NAME ...] [--dtype ...]``
    Compile the kernels the named zoo models need into Numba's disk cache, with
    progress, so that the first real run starts at once (a Docker image, a CI job).

Run ``fastcnn train --help`` (or ``fastcnn bench conv --help``, ...) for the
options.  The same commands are available as ``python -m fastcnn``.  Errors in
the arguments or the data are reported on one line, ``fastcnn: error: ...``, on
standard error, with exit status 2 (bad arguments) or 1 (missing or corrupt
data or checkpoint, or a missing optional package such as matplotlib for
``--plot`` and ``fastcnn plot``).

Layout: one module per subcommand (``train``, ``evaluate``, ``predict``,
``summary``, ``plot``, ``bench``), each with ``add_parser(subparsers)`` and
``run(args)``; :mod:`fastcnn.cli.common` holds what they share (argument
types, the one-line error, loading data and checkpoints).
"""

import sys

from . import bench, common, compile, evaluate, export, import_onnx, plot, predict, summary, train

__all__ = ["main"]

#: The subcommands, in the order ``fastcnn --help`` lists them.
COMMANDS = (train, evaluate, predict, summary, plot, bench, export, import_onnx, compile)


def build_parser():
    """The ``fastcnn`` argument parser: ``--version`` and one subparser per module of :data:`COMMANDS`."""
    from .. import __version__

    parser = common.Parser(
        prog="fastcnn",
        description="Train small convolutional neural networks fast on multicore CPUs.",
    )
    parser.add_argument("--version", action="version", version=f"fastcnn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers).set_defaults(func=command.run)
    return parser


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
        checkpoints, 130 when interrupted with Ctrl-C.

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
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        sys.stderr.write("fastcnn: interrupted\n")
        raise SystemExit(common.EXIT_INTERRUPTED) from None
