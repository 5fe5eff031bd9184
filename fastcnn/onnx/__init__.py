"""ONNX export and import: fastcnn models to and from the ecosystem's exchange format.

:func:`export` writes a :class:`~fastcnn.Sequential` as an ONNX file that ONNX Runtime (or any ONNX
consumer) runs; :func:`load` reads an ONNX file, such as one ``torch.onnx.export`` wrote, back into a
Sequential that predicts, trains, saves and exports again.  Both need the optional packages
(``pip install 'fastcnn[onnx]'``: onnx, and onnxruntime to run the graphs); ``import fastcnn.onnx``
works without them, and the functions raise ImportError naming the extra.

Export
------
Opset :data:`OPSET` (17) by default, any of 13 to 21 on request; the input is named ``input``, the
output ``output``, both with a dynamic batch dimension ``N``.  Inference graphs: BatchNorm uses its
running statistics, Dropout is the identity.

==================  ==================================================================
fastcnn layer       ONNX nodes
==================  ==================================================================
Conv2d              Conv (``pads``, ``strides``, ``dilations``, ``group``)
MaxPool2d           MaxPool (``ceil_mode``)
AvgPool2d           AveragePool (``count_include_pad``, ``ceil_mode``)
GlobalAvgPool2d     GlobalAveragePool, Flatten
GlobalMaxPool2d     GlobalMaxPool, Flatten
ReLU, Sigmoid,      Relu, Sigmoid, Tanh, LeakyRelu, Softmax (``axis``)
Tanh, LeakyReLU,
Softmax
BatchNorm2d/1d      BatchNormalization (ONNX momentum = 1 - fastcnn momentum)
Normalize           [Mul by the scale], Sub the mean, Div by the std
Flatten             Flatten (axis 1)
Linear              Gemm (``transB=1``)
Dropout             Dropout (ratio as an input)
Residual            the block's nodes and the shortcut's, then Add
LocallyConnected2d  [Pad], Reshape, Gather (constant window indices), Einsum, Reshape, [Add]
==================  ==================================================================

Import
------
Graphs with one 4-D image input (N, C, H, W; C, H and W known) whose nodes form a chain, with
residual branches (two paths from one tensor joined by Add), of: Conv, Relu, LeakyRelu, Sigmoid,
Tanh, Softmax, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMean/ReduceMax over
the plane, BatchNormalization, Gemm, MatMul (+ Add of a bias), Flatten, Reshape to (N, -1),
Dropout, Mul/Sub/Div by constants (a Normalize), Pad before a Conv, and fastcnn's own
LocallyConnected2d pattern; Identity and Constant nodes, initializers listed as graph inputs, and
the ``Shape -> Gather -> Unsqueeze -> Concat`` arithmetic of a flatten are followed.  Anything else
raises :class:`UnsupportedOnnxError` (a ValueError) naming the first node, operator or attribute
that fastcnn cannot express.

Files are read as carefully as checkpoints (:mod:`fastcnn.onnx._reader`): a regular file only, at
most :data:`MAX_MODEL_BYTES`, its wire format scanned so that parsing cannot balloon
(:mod:`fastcnn.onnx._wire`), parsed as protobuf data (nothing runs); every tensor's declared size
checked against the bytes it holds and the limits before an array is made; NaN and infinite
weights refused; external data read only from regular files inside the model's folder (relative
paths without ``..``, symbolic links resolved), anything else refused.

A round trip::

    import fastcnn, fastcnn.onnx
    fastcnn.onnx.export(fastcnn.models.lenet5(), "lenet5.onnx")
    model = fastcnn.onnx.load("lenet5.onnx")    # predicts, trains, saves and exports like any Sequential
"""

from ._deps import INSTALL_HINT
from ._export import EXPORT_OPSETS, OPSET
from ._export import export as _export
from ._import import load as _load
from ._reader import MAX_MODEL_BYTES, UnsupportedOnnxError

__all__ = ["export", "load", "OPSET", "EXPORT_OPSETS", "MAX_MODEL_BYTES", "UnsupportedOnnxError", "INSTALL_HINT"]

UnsupportedOnnxError.__module__ = __name__  # its public home, in tracebacks and reprs


def export(model, path, *, opset=OPSET, input_shape=None):
    """Write ``model`` as an ONNX file (atomically: an existing file is replaced only by a complete one).

    Parameters
    ----------
    model : fastcnn.Sequential
        Any layers of :mod:`fastcnn.layers` (see the table in :mod:`fastcnn.onnx`); the model's
        training mode does not matter (the graph is an inference graph) and is left as it is.
    path : str or os.PathLike
    opset : int, default :data:`OPSET` (17)
        From 13 to 21.
    input_shape : tuple of int, optional
        The per-example input shape, e.g. ``(1, 28, 28)``; default ``model.input_shape``.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ImportError
        Without the onnx package (``pip install 'fastcnn[onnx]'``).
    ValueError
        For a layer class export does not know, a model without an input shape, or an opset out of range.
    OSError
        If the file cannot be written (the old one, if any, is left unchanged).

    Examples
    --------
    >>> import fastcnn, fastcnn.onnx
    >>> fastcnn.onnx.export(fastcnn.models.lenet5(), "/tmp/lenet5-doctest.onnx")  # doctest: +SKIP
    '/tmp/lenet5-doctest.onnx'
    """
    return _export(model, path, opset=opset, input_shape=input_shape)


def load(path):
    """Read an ONNX file into a :class:`~fastcnn.Sequential` (in training mode, as ``fastcnn.load`` gives).

    The model's ``input_shape`` is the graph input's (C, H, W) and its dtype the input's element type
    (float32 or float64).  Conv + BatchNormalization stay two layers (or one Conv2d when the file has
    them fused).

    Parameters
    ----------
    path : str or os.PathLike
        An ONNX file (``.onnx``; a ``.gz`` file is inflated).

    Returns
    -------
    fastcnn.Sequential

    Raises
    ------
    ImportError
        Without the onnx package (``pip install 'fastcnn[onnx]'``).
    TypeError
        If ``path`` is not a str or path.
    FileNotFoundError
        If nothing is at ``path``.
    UnsupportedOnnxError
        A ValueError naming the first node (name and operator) or attribute fastcnn cannot express.
    ValueError
        If the file is not a regular file, too large, truncated or corrupt, declares tensors larger
        than the data it holds, holds NaN or infinite weights, or names external data outside its folder.

    Examples
    --------
    >>> import numpy as np, fastcnn, fastcnn.onnx
    >>> model = fastcnn.onnx.load("/tmp/lenet5-doctest.onnx")  # doctest: +SKIP
    >>> model.predict(np.zeros((2, 1, 28, 28), np.float32)).shape  # doctest: +SKIP
    (2, 10)
    """
    return _load(path)
