"""fastcnn -> ONNX: the graph builder, and the model's graph written atomically to a file."""

import numpy as np

from .._util import atomic_write
from ..data.files import check_path
from ..layers.base import LAYER_CLASSES
from ._deps import require_onnx
from ._export_ops import EXPORTERS

__all__ = ["OPSET", "EXPORT_OPSETS", "INPUT_NAME", "OUTPUT_NAME", "BATCH_DIM", "GraphBuilder", "model_proto",
           "export"]

#: The opset :func:`export` writes unless told otherwise (ONNX 1.12+, ONNX Runtime 1.12+, torch's exporter).
OPSET = 17
#: The opsets :func:`export` can write: every operator it uses means the same in all of them.
EXPORT_OPSETS = range(13, 22)
INPUT_NAME, OUTPUT_NAME = "input", "output"
#: The name of the dynamic batch dimension of the graph's input and output.
BATCH_DIM = "N"

_ELEM_TYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 11}  # TensorProto.FLOAT, TensorProto.DOUBLE


class GraphBuilder:
    """The nodes and initializers of the graph being written, each name unique.

    Parameters
    ----------
    onnx : module
        The ``onnx`` package.
    dtype : float32 or float64
        Float initializers are stored in this type (the model's).
    """

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers = [], []
        self._taken = {INPUT_NAME, OUTPUT_NAME}

    def _unique(self, name):
        base, i = name, 0
        while name in self._taken:
            i += 1
            name = f"{base}_{i}"
        self._taken.add(name)
        return name

    def constant(self, scope, name, value, dtype=None):
        """Add an initializer named ``<scope, dotted>.<name>`` holding ``value``; return its name.

        Float values are stored in ``dtype`` (default: the model's), others as they are.
        """
        arr = np.asarray(value)
        if dtype is None:
            dtype = self.dtype if arr.dtype.kind == "f" else arr.dtype
        arr = np.array(arr, dtype=dtype, order="C")  # (ascontiguousarray would make a scalar 1-D)
        full = self._unique(".".join(scope + [name]))
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, full))
        return full

    def node(self, op, inputs, scope, **attrs):
        """Add a node ``op`` named ``/<scope>/<op>`` reading ``inputs``; return the name of its one output."""
        name = self._unique("/" + "/".join(scope + [op]))
        out = self._unique(name + "_output")
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=name, **attrs))
        return out

    def chain(self, layers, x, shape, scope):
        """Write ``layers`` one after the other from tensor ``x`` (per-example ``shape``); return the last output."""
        for i, layer in enumerate(layers):
            name = type(layer).__name__
            write = EXPORTERS.get(name)
            where = "/".join(scope + [str(i)])
            if write is None or LAYER_CLASSES.get(name) is not type(layer):
                raise ValueError(f"export: layer {where} ({layer!r}) is a {type(layer).__qualname__}, which ONNX "
                                 f"export does not know; it writes {', '.join(sorted(EXPORTERS))}")
            x = write(self, layer, x, shape, scope + [str(i)])
            shape = tuple(layer.output_shape(shape))
        return x


def _check_opset(opset):
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in EXPORT_OPSETS:
        raise ValueError(f"export: opset must be an int from {EXPORT_OPSETS.start} to {EXPORT_OPSETS.stop - 1}, "
                         f"got {opset!r}")
    return opset


def _input_shape(model, input_shape):
    shape = model.input_shape if input_shape is None else input_shape
    if shape is None:
        raise ValueError("export: the model has no input_shape; pass input_shape=(C, H, W), the shape of one "
                         "example")
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"export: input_shape must be a tuple of ints, got {input_shape!r}") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"export: input_shape must be positive ints, got {shape}")
    return shape


def _value_info(onnx, name, elem_type, shape):
    return onnx.helper.make_tensor_value_info(name, elem_type, [BATCH_DIM, *shape])


def model_proto(model, opset=OPSET, input_shape=None):
    """The ``onnx.ModelProto`` of a Sequential: one input ``input`` (N, *input_shape), one output ``output``.

    See :func:`export`; checked with ``onnx.checker.check_model`` (shape inference included).
    """
    onnx = require_onnx("fastcnn.onnx.export")
    from .. import __version__

    if not hasattr(model, "layers") or not hasattr(model, "output_shapes"):
        raise TypeError(f"export: model must be a fastcnn Sequential, got {type(model).__name__}")
    opset = _check_opset(opset)
    shape = _input_shape(model, input_shape)
    out_shape = model.output_shapes(shape)[-1]
    elem = _ELEM_TYPES[np.dtype(model.dtype)]
    g = GraphBuilder(onnx, model.dtype)
    y = g.chain(model.layers, INPUT_NAME, shape, [])
    if g.nodes and g.nodes[-1].output[0] == y:
        g.nodes[-1].output[0] = OUTPUT_NAME
    else:  # the model's output is its input, or made earlier
        g.nodes.append(onnx.helper.make_node("Identity", [y], [OUTPUT_NAME], name="/output/Identity"))
    graph = onnx.helper.make_graph(g.nodes, "fastcnn", [_value_info(onnx, INPUT_NAME, elem, shape)],
                                   [_value_info(onnx, OUTPUT_NAME, elem, out_shape)], g.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="fastcnn", producer_version=__version__,
                                   ir_version=onnx.helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path, *, opset=OPSET, input_shape=None):
    """Write ``model`` to ``path`` as an ONNX file, atomically; see :func:`fastcnn.onnx.export`."""
    path = check_path(path, "export")
    data = model_proto(model, opset=opset, input_shape=input_shape).SerializeToString()
    return atomic_write(path, lambda f: f.write(data))
