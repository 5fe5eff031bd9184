"""ONNX -> fastcnn: walk the graph from its input to its output, one node (or a short pattern) per layer.

The walk follows the one tensor a chain of layers passes along.  Where a tensor feeds two nodes, the
two paths are walked until they meet again in an ``Add``: that is a
:class:`~fastcnn.layers.Residual` (the path into the Add's first input is the block; an empty path is
the identity shortcut), and the walk goes on from the Add's output.  Each node is handed to its
operator's handler in :data:`fastcnn.onnx._import_ops.HANDLERS`, which returns the layers it makes,
the tensor where the walk continues and that tensor's per-example shape; a handler may take the
nodes after its own along (MatMul and the Add of its bias, Sub then Div, GlobalAveragePool and the
Flatten after it).
"""

import contextlib
import os

import numpy as np

from ..layers import init
from ..layers.residual import Residual
from ..model import Sequential
from ._deps import require_onnx
from ._graph import Graph
from ._import_ops import HANDLERS
from ._reader import TensorReader, UnsupportedOnnxError, read_model

__all__ = ["MAX_NESTING", "Importer", "model_from_proto", "load"]

#: The deepest nesting of residual blocks read (each level is a Python call: no unbounded recursion).
MAX_NESTING = 64


@contextlib.contextmanager
def _private_init_stream():
    """Build layers without drawing from the generator ``fastcnn.manual_seed`` seeds (their weights are
    overwritten), as :func:`fastcnn.serialize.model_from_config` does."""
    saved = init._rng
    init._rng = np.random.default_rng(0)
    try:
        yield
    finally:
        init._rng = saved


class Importer:
    """The walk over one :class:`~fastcnn.onnx._graph.Graph`; handlers call the methods below.

    Attributes
    ----------
    graph : Graph
    dtype : float32 or float64
        The model's dtype (the graph input's element type).
    """

    def __init__(self, graph):
        self.graph = graph
        self.dtype = graph.dtype
        self._nesting = 0

    # ------------------------------------------------------------------ what handlers use

    def attrs(self, node, spec):
        """``node``'s attributes with the defaults of ``spec``; any attribute not in ``spec`` is refused."""
        return self.graph.attrs(node, spec)

    def constant(self, node, index, what, ndim=None):
        """Input ``index`` of ``node`` as a constant array (``ndim`` dimensions when given)."""
        if len(node.inputs) <= index or not node.inputs[index]:
            raise ValueError(f"{node.where}: input {what} is missing")
        arr = self.graph.value(node.inputs[index], f"{node.where}, input {what}")
        if arr.dtype == object or (ndim is not None and arr.ndim != ndim):
            raise UnsupportedOnnxError(f"{node.where}: input {what} must be a {ndim}-D constant, got shape "
                                       f"{arr.shape}")
        return arr

    def weight(self, node, index, what, ndim=None):
        """A float constant input, in the model's dtype."""
        arr = self.constant(node, index, what, ndim)
        if arr.dtype.kind != "f":
            raise UnsupportedOnnxError(f"{node.where}: input {what} must hold floats, got {arr.dtype}")
        return arr.astype(self.dtype)

    def optional(self, node, index):
        """Whether input ``index`` is given."""
        return len(node.inputs) > index and bool(node.inputs[index])

    def data_input(self, node, x, index=0):
        """Refuse ``node`` unless its input ``index`` is the walked tensor ``x`` and its others are constants."""
        if node.inputs[index] != x or any(n and not self.graph.is_constant(n)
                                          for i, n in enumerate(node.inputs) if i != index):
            raise UnsupportedOnnxError(f"{node.where}: fastcnn reads this operator with the running tensor as input "
                                       f"{index} and constants as the others")

    def unused_extra_outputs(self, node, what):
        """Refuse ``node`` when one of its outputs after the first (a mask, indices, statistics) is read."""
        for name in node.outputs[1:]:
            if self.graph.is_used(name):
                raise UnsupportedOnnxError(f"{node.where}: its output {name!r} ({what}) is used; fastcnn layers "
                                           "have one output")

    def next_node(self, value):
        """The one node that reads ``value`` (None when ``value`` is the output or feeds several nodes)."""
        consumers = self.graph.data_consumers(value)
        if value == self.graph.output or len(consumers) != 1:
            return None
        return consumers[0]

    def build(self, node, cls, *args, **kwargs):
        """``cls(*args, **kwargs)`` (with the model's dtype where it takes one); an error names the node."""
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            raise UnsupportedOnnxError(f"{node.where}: fastcnn's {cls.__name__} cannot take it: {exc}") from None

    def shape_after(self, node, layer, shape):
        """``layer.output_shape(shape)``; an error names the node."""
        try:
            return tuple(layer.output_shape(shape))
        except ValueError as exc:
            raise UnsupportedOnnxError(f"{node.where}: an input of shape {shape} does not fit: {exc}") from None

    # ------------------------------------------------------------------ the walk

    def run(self):
        """The layers of the whole graph, from its input to its output."""
        g = self.graph
        g.shapes[g.input] = g.input_shape
        layers, value, shape, merge = self.walk(g.input, g.input_shape)
        if merge is not None:
            raise UnsupportedOnnxError(f"{merge.where}: adds two tensors that do not branch from one tensor before "
                                       "it; fastcnn reads Add as the end of a residual block")
        if not layers:
            raise UnsupportedOnnxError("the graph computes nothing (its output is its input)")
        return layers, shape

    def walk(self, value, shape, first=None):
        """Layers from tensor ``value`` on, until the graph's output or an Add joining two paths.

        Returns ``(layers, last tensor, its shape, the joining Add node or None)``; ``first`` is the node
        to start with (one path of a fork).
        """
        layers = []
        while True:
            node, first = first, None
            if node is None:
                consumers = self.graph.data_consumers(value)
                if value == self.graph.output:
                    if consumers:
                        raise UnsupportedOnnxError(f"the graph's output {value!r} also feeds {consumers[0].where}")
                    return layers, value, shape, None
                if len(consumers) != 1:
                    layer, value, shape = self.fork(value, shape, consumers)
                    layers.append(layer)
                    self.graph.shapes[value] = shape
                    continue
                node = consumers[0]
            if node.op == "Add" and all(n and not self.graph.is_constant(n) for n in node.inputs):
                return layers, value, shape, node
            handler = HANDLERS.get(node.op)
            if handler is None:
                raise UnsupportedOnnxError(f"{node.where}: operator {node.op!r} is not supported; fastcnn reads "
                                           f"{', '.join(sorted(HANDLERS))} (and Identity, Constant, shape arithmetic)")
            made, value, shape = handler(self, node, value, shape)
            layers += made
            self.graph.shapes[value] = shape

    def fork(self, value, shape, consumers):
        """The Residual made of the two paths from ``value`` that meet in one Add; ``(layer, Add output, shape)``."""
        if not consumers:
            raise UnsupportedOnnxError(f"tensor {value!r} is a dead end: no node reads it and it is not the graph's "
                                       f"output {self.graph.output!r}")
        if len(consumers) != 2:
            raise UnsupportedOnnxError(f"tensor {value!r} feeds {', '.join(n.where for n in consumers)}; fastcnn reads "
                                       "a tensor read by one node, or by the two paths of a residual block that an "
                                       "Add joins")
        if self._nesting >= MAX_NESTING:
            raise UnsupportedOnnxError(f"tensor {value!r}: residual blocks nest more than {MAX_NESTING} deep")
        self._nesting += 1
        try:
            ends = [self.walk(value, shape, first=node) for node in consumers]
        finally:
            self._nesting -= 1
        (l0, e0, s0, m0), (l1, e1, s1, m1) = ends
        if m0 is None or m1 is None or m0 is not m1 or e0 == e1:
            raise UnsupportedOnnxError(f"the two paths from tensor {value!r} do not meet in one Add; fastcnn reads "
                                       "branches as residual blocks only")
        if m0.inputs[0] != e0:
            l0, l1 = l1, l0
        block, shortcut = (l0, l1) if l0 else (l1, l0)  # an empty path is the identity shortcut
        residual = self.build(m0, Residual, block, shortcut or None)
        return residual, m0.outputs[0], self.shape_after(m0, residual, shape)


def _check_output(graph, shape):
    dims = graph.output_dims
    if dims and len(dims) == len(shape) + 1 and any(
            d is not None and d != s for d, s in zip(dims[1:], shape)):
        raise ValueError(f"the graph declares its output {graph.output!r} as {dims} but its nodes make "
                         f"(N, {', '.join(map(str, shape))})")


def model_from_proto(proto, path):
    """The Sequential that ONNX ``proto`` (read from ``path``, where external data may lie) computes."""
    graph = Graph(proto, TensorReader(path))
    with _private_init_stream():
        layers, shape = Importer(graph).run()
    _check_output(graph, shape)
    try:
        return Sequential(*layers, input_shape=graph.input_shape)
    except (TypeError, ValueError) as exc:
        raise UnsupportedOnnxError(f"the layers read do not chain: {exc}") from None


def load(path):
    """Read the ONNX file ``path`` into a Sequential; see :func:`fastcnn.onnx.load`."""
    onnx = require_onnx("fastcnn.onnx.load")
    proto = read_model(path, onnx)
    path = os.fsdecode(path)
    try:
        return model_from_proto(proto, path)
    except UnsupportedOnnxError as exc:
        raise UnsupportedOnnxError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
