"""An ONNX graph made ready to be read as a chain of layers: its one image input, its constants, its consumers.

:class:`Graph` checks the graph's frame (one 4-D image input with known C, H, W, one output, nodes in
topological order, each tensor defined once, the standard operator domain) and resolves what is not a
layer: ``Identity`` nodes become aliases, ``Constant`` nodes and initializers (listed as graph inputs
or not) become constants, converted when first used.  Tensors computed from constants and from the
``Shape`` of activations (the ``Shape -> Gather -> Unsqueeze -> Concat`` that ``torch.onnx.export``
writes for ``x.view(x.size(0), -1)``) are evaluated on demand by :meth:`Graph.value`, with the batch
size as the symbol :data:`BATCH`.
"""

import math

import numpy as np

from ._reader import MAX_DIM, UnsupportedOnnxError, attributes

__all__ = ["BATCH", "MIN_OPSET", "MAX_NODES", "Node", "Graph"]

#: The batch size inside an evaluated shape (``Shape`` of an activation gives ``[BATCH, C, H, W]``).
BATCH = "N"
#: The oldest default-domain opset read (BatchNormalization lost its ``spatial`` attribute in 9).
MIN_OPSET = 9
#: The most nodes and initializers a graph may hold.
MAX_NODES = 100_000
#: The largest per-example input (C * H * W) and the largest C, H or W.
MAX_INPUT_VALUES = 1 << 31
MAX_INPUT_DIM = 1 << 20
#: The most values a tensor evaluated from constants may hold (shape vectors are a handful).
MAX_EVALUATED = 1 << 20

_ELEM_DTYPES = {1: np.dtype(np.float32), 11: np.dtype(np.float64)}


class Node:
    """One node: ``op``, ``name``, ``inputs`` (aliases resolved; ``""`` for an absent optional input),
    ``outputs``, its ``proto`` and ``where`` (``"node '/c1/Conv' (Conv)"``, for messages)."""

    def __init__(self, proto, index, inputs):
        self.proto = proto
        self.op = proto.op_type
        self.name = proto.name
        self.inputs = inputs
        self.outputs = list(proto.output)
        label = repr(self.name) if self.name else f"#{index} (output {self.outputs[0]!r})" if self.outputs else \
            f"#{index}"
        self.where = f"node {label} ({self.op})"

    def __repr__(self):
        return f"<{self.where}>"


def _opset(proto):
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ValueError("the model imports no version of the standard ONNX operators (opset_import)")
    version = max(versions)
    if version < MIN_OPSET:
        raise UnsupportedOnnxError(f"opset {version} is older than fastcnn reads ({MIN_OPSET}); convert the model "
                                   "with onnx.version_converter")
    return version


def _input_frame(vi):
    """``(dtype, (C, H, W), static batch or None)`` of the graph's image input, or ValueError saying why not."""
    t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
    if t is None or t.elem_type not in _ELEM_DTYPES:
        kind = "not a tensor" if t is None else f"elem_type {t.elem_type}"
        raise UnsupportedOnnxError(f"graph input {vi.name!r} is {kind}; fastcnn reads float or double images")
    dims = list(t.shape.dim) if t.HasField("shape") and len(t.shape.dim) <= 8 else None
    known = [d.dim_value if d.HasField("dim_value") else None for d in dims or []]
    if dims is None or len(dims) != 4 or None in known[1:] or min(known[1:]) < 1 \
            or max(known[1:]) > MAX_INPUT_DIM or math.prod(known[1:]) > MAX_INPUT_VALUES:
        shown = "unknown" if dims is None else [d.dim_param or d.dim_value or "?" for d in dims]
        raise UnsupportedOnnxError(f"graph input {vi.name!r} has shape {shown}; fastcnn reads 4-D images "
                                   f"(N, C, H, W) with known C, H and W (1 to {MAX_INPUT_DIM})")
    batch = known[0] if known[0] else None
    return _ELEM_DTYPES[t.elem_type], tuple(known[1:]), batch


class Graph:
    """The graph of an ONNX ModelProto, checked and indexed.

    Attributes
    ----------
    opset : int
        The default domain's opset version.
    input, output : str
        The image input's name and the output's (through any Identity).
    input_shape : (C, H, W)
    dtype : float32 or float64
        The input's element type: the imported model's dtype.
    static_batch : int or None
        The input's batch size when the file fixes one.
    output_dims : list
        The output's declared dims (ints, or None where unknown).
    nodes : list of Node
        The nodes that are neither Identity nor Constant, in the file's order.
    shapes : dict
        Per-example shape of each activation read so far (filled by the importer).
    """

    def __init__(self, proto, tensors):
        self.tensors = tensors
        self.opset = _opset(proto)
        g = proto.graph
        if len(g.node) > MAX_NODES or len(g.initializer) > MAX_NODES:
            raise ValueError(f"the graph holds {len(g.node)} nodes and {len(g.initializer)} initializers, more "
                             f"than {MAX_NODES}")
        self._initializers = {t.name: t for t in g.initializer}
        for name, t in self._initializers.items():
            tensors.declared(t, f"initializer {name!r}")  # every declared size checked before any is read
        self._constants, self._evaluated = {}, {}
        self.alias, self.producer, self.consumers = {}, {}, {}
        self.activations = set()
        self.shapes = {}
        self._read_frame(g)
        self.nodes = []
        self._index(g)
        self.output = self.resolve(g.output[0].name)
        if self.output not in self.activations:
            raise UnsupportedOnnxError(f"the graph's output {self.output!r} does not depend on its input")

    def _read_frame(self, g):
        inputs = [vi for vi in g.input if vi.name not in self._initializers]
        if len(inputs) != 1:
            names = [vi.name for vi in inputs]
            raise UnsupportedOnnxError(f"the graph has {len(inputs)} inputs besides its initializers ({names}); "
                                       "fastcnn models take one batch of images")
        if len(g.output) != 1:
            raise UnsupportedOnnxError(f"the graph has {len(g.output)} outputs; fastcnn models have one")
        self.input = inputs[0].name
        self.dtype, self.input_shape, self.static_batch = _input_frame(inputs[0])
        self.activations.add(self.input)
        out = g.output[0].type.tensor_type
        self.output_dims = [d.dim_value if d.HasField("dim_value") else None for d in out.shape.dim] \
            if out.HasField("shape") and len(out.shape.dim) <= 8 else None

    def resolve(self, name):
        """``name`` through the Identity aliases."""
        while name in self.alias:
            name = self.alias[name]
        return name

    def _index(self, g):
        known = set(self._initializers) | {self.input}
        for index, proto in enumerate(g.node):
            inputs = [self.resolve(n) if n else "" for n in proto.input]
            node = Node(proto, index, inputs)
            if proto.domain not in ("", "ai.onnx"):
                raise UnsupportedOnnxError(f"{node.where}: operator {proto.domain}.{proto.op_type} is not a standard "
                                           "ONNX operator; not supported")
            missing = [n for n in inputs if n and n not in known]
            if missing:
                raise ValueError(f"{node.where} reads {missing[0]!r} before any node makes it (the nodes are not "
                                 "in topological order, or the graph is incomplete)")
            taken = [n for n in node.outputs if n and n in known]
            if taken or not node.outputs:
                raise ValueError(f"{node.where} defines {taken[0] if taken else 'no output'!r}: each tensor is "
                                 "defined once")
            known.update(n for n in node.outputs if n)
            if node.op == "Identity" and len(inputs) == 1:
                self.alias[node.outputs[0]] = inputs[0]
                continue
            if node.op == "Constant":
                self._constants[node.outputs[0]] = node
                continue
            self.nodes.append(node)
            for out in node.outputs:
                self.producer[out] = node
            if node.op != "Shape" and any(n in self.activations for n in inputs):
                self.activations.update(node.outputs)
            for n in dict.fromkeys(inputs):
                if n:
                    self.consumers.setdefault(n, []).append(node)

    # ------------------------------------------------------------------ the walk's questions

    def data_consumers(self, name):
        """The nodes that read activation ``name`` as data (a ``Shape`` reads only its shape)."""
        return [n for n in self.consumers.get(name, []) if n.op != "Shape"]

    def is_used(self, name):
        """Whether any node reads ``name``, or it is the graph's output."""
        return bool(name) and (name == self.output or bool(self.consumers.get(name)))

    def attrs(self, node, spec):
        """``node``'s attributes with ``spec``'s defaults; UnsupportedOnnxError naming any attribute not in ``spec``."""
        found = attributes(node.proto, self.tensors, node.where)
        unknown = [k for k in found if k not in spec]
        if unknown:
            raise UnsupportedOnnxError(f"{node.where}: attribute {unknown[0]!r} is not supported (fastcnn reads "
                                       f"{', '.join(sorted(spec)) or 'none'} for {node.op})")
        return {**spec, **found}

    # ------------------------------------------------------------------ constants

    def is_constant(self, name):
        return bool(name) and name not in self.activations

    def value(self, name, where):
        """The constant ``name`` as a numpy array (shape vectors as object arrays holding :data:`BATCH`).

        Raises UnsupportedOnnxError when ``name`` is an activation, or is computed by an operator
        :data:`EVALUATORS` does not know.
        """
        if not self.is_constant(name):
            raise UnsupportedOnnxError(f"{where}: input {name!r} must be a constant (an initializer), but it is "
                                       "computed from the graph's input")
        if name in self._evaluated:
            return self._evaluated[name]
        if name in self._initializers:
            arr = self.tensors.array(self._initializers[name], f"initializer {name!r}")
        elif name in self._constants:
            arr = self._constant_node(self._constants[name])
        else:
            node = self.producer[name]
            evaluate = EVALUATORS.get(node.op)
            if evaluate is None or node.outputs[0] != name:
                raise UnsupportedOnnxError(f"{node.where}: operator {node.op!r} on constants is not supported (the "
                                           f"constant computations fastcnn follows: {', '.join(sorted(EVALUATORS))})")
            arr = np.asarray(evaluate(self, node))
            if arr.size > MAX_EVALUATED:
                raise ValueError(f"{node.where} makes {arr.size} values from constants, more than {MAX_EVALUATED}")
        self._evaluated[name] = arr
        return arr

    def _constant_node(self, node):
        attrs = self.attrs(node, {"value": None, "value_float": None, "value_floats": None, "value_int": None,
                                  "value_ints": None})
        given = [(k, v) for k, v in attrs.items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"{node.where}: needs exactly one value attribute, got {[k for k, _ in given]}")
        key, v = given[0]
        return np.asarray(v, dtype=np.float32 if key.startswith("value_float") else
                          np.int64 if key.startswith("value_int") else None)


# --------------------------------------------------------------------------- evaluating constant subgraphs


def _ints(graph, node, index, attr, attrs):
    """A list of ints from input ``index`` (newer opsets) or attribute ``attr`` (older), or None."""
    if len(node.inputs) > index and node.inputs[index]:
        return [int(v) for v in np.asarray(graph.value(node.inputs[index], node.where)).reshape(-1)]
    return attrs.get(attr)


def _axis(axis, ndim, where):
    if not -ndim <= axis < ndim:
        raise ValueError(f"{where}: axis {axis} is out of range for {ndim} dimensions")
    return axis % ndim


def _shape(graph, node):
    attrs = graph.attrs(node, {"start": 0, "end": None})
    source = node.inputs[0]
    if source not in graph.shapes:
        raise UnsupportedOnnxError(f"{node.where}: the shape of {source!r} is not known where it is read")
    full = np.array([BATCH, *graph.shapes[source]], dtype=object)
    return full[attrs["start"]:attrs["end"]]


def _gather(graph, node):
    attrs = graph.attrs(node, {"axis": 0})
    data = graph.value(node.inputs[0], node.where)
    indices = np.asarray(graph.value(node.inputs[1], node.where))
    if data.ndim == 0 or indices.dtype.kind not in "iu":
        raise UnsupportedOnnxError(f"{node.where}: gathers from a scalar or with non-integer indices")
    axis = _axis(attrs["axis"], data.ndim, node.where)
    size = data.shape[axis]
    if indices.size and (indices.min() < -size or indices.max() >= size):
        raise ValueError(f"{node.where}: index out of range for a dimension of {size}")
    if data.size // max(size, 1) * indices.size > MAX_EVALUATED:
        raise ValueError(f"{node.where}: gathers more than {MAX_EVALUATED} values from constants")
    return np.asarray(np.take(data, np.where(indices < 0, indices + size, indices), axis=axis), dtype=data.dtype)


def _unsqueeze(graph, node):
    attrs = graph.attrs(node, {"axes": None})
    data = graph.value(node.inputs[0], node.where)
    axes = _ints(graph, node, 1, "axes", attrs)
    if not axes:
        raise ValueError(f"{node.where}: needs axes")
    ndim = data.ndim + len(axes)
    return np.expand_dims(data, tuple(sorted(_axis(a, ndim, node.where) for a in axes)))


def _squeeze(graph, node):
    attrs = graph.attrs(node, {"axes": None})
    data = graph.value(node.inputs[0], node.where)
    axes = _ints(graph, node, 1, "axes", attrs)
    axes = tuple(i for i, d in enumerate(data.shape) if d == 1) if axes is None else \
        tuple(_axis(a, data.ndim, node.where) for a in axes)
    if any(data.shape[a] != 1 for a in axes):
        raise ValueError(f"{node.where}: squeezes an axis that is not 1")
    return np.squeeze(data, axis=axes)


def _concat(graph, node):
    attrs = graph.attrs(node, {"axis": None})
    parts = [graph.value(n, node.where) for n in node.inputs if n]
    if attrs["axis"] is None or not parts or any(p.ndim != parts[0].ndim or p.ndim == 0 for p in parts):
        raise ValueError(f"{node.where}: needs an axis and inputs of one rank (>= 1)")
    symbolic = any(p.dtype == object for p in parts)
    parts = [p.astype(object) if symbolic else p for p in parts]
    return np.concatenate(parts, axis=_axis(attrs["axis"], parts[0].ndim, node.where))


def _cast(graph, node):
    attrs = graph.attrs(node, {"to": None, "saturate": 1})
    data = graph.value(node.inputs[0], node.where)
    target = {1: np.float32, 11: np.float64, 7: np.int64, 6: np.int32}.get(attrs["to"])
    if target is None:
        raise UnsupportedOnnxError(f"{node.where}: casts to type {attrs['to']}; fastcnn follows float, double, "
                                   "int64 and int32 only")
    if data.dtype == object:  # a shape vector: its ints (and the batch symbol) stay as they are
        return data
    return data.astype(target)


def _slice(graph, node):
    attrs = graph.attrs(node, {"starts": None, "ends": None, "axes": None})
    data = graph.value(node.inputs[0], node.where)
    starts, ends = _ints(graph, node, 1, "starts", attrs), _ints(graph, node, 2, "ends", attrs)
    axes = _ints(graph, node, 3, "axes", attrs) or list(range(len(starts or [])))
    steps = _ints(graph, node, 4, "steps", {}) or [1] * len(axes)
    if starts is None or ends is None or not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
        raise ValueError(f"{node.where}: starts, ends, axes and steps must have one length (steps non-zero)")
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        clamp = min(max(end, -MAX_DIM), MAX_DIM)
        index[_axis(axis, data.ndim, node.where)] = slice(start, clamp, step)
    return data[tuple(index)]


#: Operators evaluated when all they read is constant (or the Shape of an activation).
EVALUATORS = {
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Cast": _cast,
    "Slice": _slice,
}
