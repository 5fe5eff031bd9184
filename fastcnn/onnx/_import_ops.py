"""The ONNX operators fastcnn reads: a table from operator name to the handler that makes its layers.

Every handler is ``handle(ctx, node, x, shape) -> (layers, y, out_shape)``: ``ctx`` the
:class:`~fastcnn.onnx._import.Importer`, ``node`` the node the walk reached, ``x`` the running tensor
(the node's data input) and ``shape`` its per-example shape; it returns the layers it makes, the
tensor the walk continues from (the output of the last node it took) and that tensor's shape.  An
attribute a handler does not list is refused by ``ctx.attrs``, naming it and the node.

Mapping notes (ONNX -> fastcnn): Conv -> Conv2d (``pads`` symmetric, or PyTorch's ``"same"`` at
stride 1; ``group`` and ``dilations`` passed on); MaxPool / AveragePool -> MaxPool2d / AvgPool2d
(``count_include_pad=0`` with padding passed on); GlobalAveragePool + Flatten -> GlobalAvgPool2d
(alone: AvgPool2d over the whole plane, which keeps the 1x1); BatchNormalization -> BatchNorm2d or
BatchNorm1d (ONNX's momentum weighs the old statistics: fastcnn's is ``1 - momentum``); Gemm, or
MatMul and the Add of its bias -> Linear; Flatten, or Reshape to (N, -1) -> Flatten; Mul by a
positive number, Sub, Div by per-channel constants, in that order -> one Normalize; Dropout ->
Dropout (the identity at inference); Pad (zeros) -> folded into the Conv after it.
"""

import math

import numpy as np

from ..layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, LeakyReLU,
                      Linear, MaxPool2d, Normalize, ReLU, Sigmoid, Softmax, Tanh)
from ..layers.base import LAYER_CLASSES
from ._import_local import locally_connected
from ._reader import UnsupportedOnnxError

__all__ = ["HANDLERS", "flattens"]

_POOL_SPEC = {"auto_pad": "NOTSET", "ceil_mode": 0, "kernel_shape": None, "pads": None, "strides": None,
              "dilations": None}


def _short(value):
    """A float32 attribute as the shortest decimal that rounds to it (0.2, not 0.20000000298)."""
    return float(str(np.float32(value)))


def _compact(pair):
    """``(a, a)`` as ``a`` (the layers' reprs and configs read as a person writes them); anything else unchanged."""
    return pair[0] if isinstance(pair, tuple) and pair[0] == pair[1] else pair


def _image(node, shape):
    if len(shape) != 3:
        raise UnsupportedOnnxError(f"{node.where}: needs (N, C, H, W) images, the running tensor is "
                                   f"(N, {', '.join(map(str, shape))})")


def _pair(node, attrs, name, default):
    value = attrs[name]
    if value is None:
        return default
    if len(value) != 2 or min(value) < 1:
        raise UnsupportedOnnxError(f"{node.where}: {name}={value}; fastcnn reads 2-D operators (two positive values)")
    return tuple(value)


def _same_pads(mode, sizes, kernel, strides, dilations):
    """``[top, left, bottom, right]`` of ``auto_pad`` SAME_UPPER / SAME_LOWER: output ``ceil(size / stride)``."""
    heads, tails = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        head = total // 2 if mode == "SAME_UPPER" else total - total // 2
        heads.append(head)
        tails.append(total - head)
    return heads + tails


def _padding(node, attrs, kernel, strides, dilations, sizes, extra=(0, 0, 0, 0), same_ok=False):
    """The ``(ph, pw)`` padding (or ``"same"``) of a Conv or pool node, ``extra`` (a Pad before it) added."""
    mode = attrs["auto_pad"] or "NOTSET"
    if mode == "NOTSET":
        pads = attrs["pads"] or [0, 0, 0, 0]
        if len(pads) != 4 or min(pads) < 0:
            raise UnsupportedOnnxError(f"{node.where}: pads={pads}; fastcnn reads 4 non-negative values")
    elif mode == "VALID":
        pads = [0, 0, 0, 0]
    elif mode in ("SAME_UPPER", "SAME_LOWER"):  # on the input as the node sees it: after the Pad, if any
        padded = [size + extra[i] + extra[i + 2] for i, size in enumerate(sizes)]
        pads = _same_pads(mode, padded, kernel, strides, dilations)
    else:
        raise UnsupportedOnnxError(f"{node.where}: auto_pad={mode!r} is not supported")
    t, left, b, r = (p + e for p, e in zip(pads, extra))
    if t == b and left == r:
        return t, left
    totals = [d * (k - 1) for k, d in zip(kernel, dilations)]
    if same_ok and strides == (1, 1) and [t, left, b, r] == [n // 2 for n in totals] + [n - n // 2 for n in totals]:
        return "same"  # PyTorch's padding="same": the odd pixel at the end
    raise UnsupportedOnnxError(f"{node.where}: pads [top, left, bottom, right] = {[t, left, b, r]} differ on the two "
                               "sides of an axis; fastcnn pads both sides alike"
                               + (" (or as padding='same' at stride 1)" if same_ok else ""))


def _vector(node, arr, size, what):
    """A bias-like constant as ``(size,)``: one value (broadcast), ``(size,)`` or ``(1, size)``."""
    if arr.size == 1:
        return np.full(size, arr.reshape(-1)[0], dtype=arr.dtype)
    if arr.shape in ((size,), (1, size)):
        return arr.reshape(size)
    raise UnsupportedOnnxError(f"{node.where}: {what} has shape {arr.shape}; fastcnn reads one value per output "
                               f"({size},)")


def _per_channel(node, arr, shape):
    """A constant that broadcasts over (N, *shape) with one value per channel (axis 1), as ``(C,)``."""
    full = (1,) + tuple(shape)
    padded = (1,) * (len(full) - arr.ndim) + arr.shape
    if arr.ndim > len(full) or any(a != 1 and not (i == 1 and a == full[1]) for i, a in enumerate(padded)):
        raise UnsupportedOnnxError(f"{node.where}: a constant of shape {arr.shape} is not one value per channel of "
                                   f"the (N, {', '.join(map(str, shape))}) tensor")
    return np.broadcast_to(arr.reshape(padded), (1, full[1]) + (1,) * (len(full) - 2)).reshape(-1)


# --------------------------------------------------------------------------- convolution and pooling


def _conv(ctx, node, x, shape, extra=(0, 0, 0, 0)):
    attrs = ctx.attrs(node, {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None,
                             "pads": None, "strides": None})
    ctx.data_input(node, x)
    _image(node, shape)
    w = ctx.weight(node, 1, "W")
    if w.ndim != 4:
        raise UnsupportedOnnxError(f"{node.where}: weight of shape {w.shape}; fastcnn reads 2-D convolutions")
    K, group_channels, kh, kw = w.shape
    if attrs["kernel_shape"] not in (None, [kh, kw]):
        raise ValueError(f"{node.where}: kernel_shape {attrs['kernel_shape']} but the weight is {w.shape}")
    strides, dilations = _pair(node, attrs, "strides", (1, 1)), _pair(node, attrs, "dilations", (1, 1))
    padding = _padding(node, attrs, (kh, kw), strides, dilations, shape[1:], extra, same_ok=True)
    groups = attrs["group"]
    if groups < 1 or group_channels * groups != shape[0]:
        raise ValueError(f"{node.where}: the input has {shape[0]} channels but the weight {w.shape} with group="
                         f"{groups} takes {group_channels * groups}")
    bias = ctx.weight(node, 2, "B", 1) if ctx.optional(node, 2) else None
    options = {"dilation": _compact(dilations)} if dilations != (1, 1) else {}
    if groups != 1:
        options["groups"] = groups  # only when needed: works with a Conv2d that has neither option
    layer = ctx.build(node, Conv2d, shape[0], K, _compact((kh, kw)), stride=_compact(strides),
                      padding=_compact(padding), bias=bias is not None, dtype=ctx.dtype, **options)
    layer.weight.data[...] = w
    if bias is not None:
        layer.bias.data[...] = _vector(node, bias, K, "B")
    return [layer], node.outputs[0], ctx.shape_after(node, layer, shape)


def _pool(avg):
    def handle(ctx, node, x, shape):
        spec = dict(_POOL_SPEC, **({"count_include_pad": 0} if avg else {"storage_order": 0}))
        attrs = ctx.attrs(node, spec)
        ctx.data_input(node, x)
        ctx.unused_extra_outputs(node, "indices")
        _image(node, shape)
        if attrs["kernel_shape"] is None:
            raise ValueError(f"{node.where}: kernel_shape is missing")
        kernel = _pair(node, attrs, "kernel_shape", None)
        strides = _pair(node, attrs, "strides", (1, 1))
        if _pair(node, attrs, "dilations", (1, 1)) != (1, 1):
            raise UnsupportedOnnxError(f"{node.where}: dilations={attrs['dilations']}; fastcnn pools are not dilated")
        padding = _padding(node, attrs, kernel, strides, (1, 1), shape[1:])
        options = {"stride": None if strides == kernel else _compact(strides), "padding": _compact(padding),
                   "ceil_mode": bool(attrs["ceil_mode"])}
        if avg and any(padding) and not attrs["count_include_pad"]:
            options["count_include_pad"] = False
        layer = ctx.build(node, AvgPool2d if avg else MaxPool2d, _compact(kernel), **options)
        return [layer], node.outputs[0], ctx.shape_after(node, layer, shape)

    return handle


def _whole_plane_pool(ctx, node, avg, shape, keep_dims):
    """The layers of a pooling over the whole plane: (N, C) without ``keep_dims``, (N, C, 1, 1) with it."""
    C, H, W = shape
    if not keep_dims:
        cls = GlobalAvgPool2d if avg else LAYER_CLASSES.get("GlobalMaxPool2d")
        if cls is not None:
            return [ctx.build(node, cls)], (C,)
        return [ctx.build(node, MaxPool2d, _compact((H, W))), Flatten()], (C,)
    return [ctx.build(node, AvgPool2d if avg else MaxPool2d, _compact((H, W)))], (C, 1, 1)


def _global_pool(avg):
    def handle(ctx, node, x, shape):
        ctx.attrs(node, {})
        ctx.data_input(node, x)
        _image(node, shape)
        after = ctx.next_node(node.outputs[0])
        if after is not None and flattens(ctx, after, (shape[0], 1, 1)):
            layers, out_shape = _whole_plane_pool(ctx, node, avg, shape, keep_dims=False)
            return layers, after.outputs[0], out_shape
        layers, out_shape = _whole_plane_pool(ctx, node, avg, shape, keep_dims=True)
        return layers, node.outputs[0], out_shape

    return handle


def _reduce(avg):
    def handle(ctx, node, x, shape):
        attrs = ctx.attrs(node, {"axes": None, "keepdims": 1, "noop_with_empty_axes": 0})
        ctx.data_input(node, x)
        _image(node, shape)
        axes = attrs["axes"]
        if ctx.optional(node, 1):
            axes = [int(a) for a in ctx.constant(node, 1, "axes").reshape(-1)]
        if sorted(a % 4 for a in axes or []) != [2, 3] or min(axes) < -4 or max(axes) > 3:
            raise UnsupportedOnnxError(f"{node.where}: reduces over axes {axes}; fastcnn reads a reduction over the "
                                       "plane (axes 2 and 3), a global pooling")
        layers, out_shape = _whole_plane_pool(ctx, node, avg, shape, keep_dims=bool(attrs["keepdims"]))
        return layers, node.outputs[0], out_shape

    return handle


# --------------------------------------------------------------------------- shape changes


def flattens(ctx, node, shape):
    """Whether ``node`` (Flatten or Reshape) flattens a tensor of per-example ``shape`` to (N, features)."""
    if node.op == "Flatten":
        axis = ctx.attrs(node, {"axis": 1})["axis"]
        return -(len(shape) + 1) <= axis <= len(shape) and axis % (len(shape) + 1) == 1
    if node.op != "Reshape" or len(node.inputs) < 2:
        return False
    allowzero = ctx.attrs(node, {"allowzero": 0})["allowzero"]
    target = list(ctx.graph.value(node.inputs[1], node.where).reshape(-1))
    if len(target) != 2 or isinstance(target[1], str):
        return False
    first, second, flat = target[0], int(target[1]), math.prod(shape)
    if isinstance(first, str):  # the batch size, read from the Shape of a tensor
        batch = True
    else:
        first = int(first)
        batch = (first == 0 and not allowzero) or first == ctx.graph.static_batch or (first == -1 and second == flat)
    return batch and second in (-1, flat) and (first, second) != (-1, -1)


def _flatten(ctx, node, x, shape):
    ctx.data_input(node, x)
    if not flattens(ctx, node, shape):
        raise UnsupportedOnnxError(f"{node.where}: fastcnn reads Flatten at axis 1 only, (N, ...) -> (N, features)")
    return [Flatten()], node.outputs[0], (math.prod(shape),)


def _reshape(ctx, node, x, shape):
    ctx.data_input(node, x)
    if flattens(ctx, node, shape):
        return [Flatten()], node.outputs[0], (math.prod(shape),)
    target = ctx.graph.value(node.inputs[1], node.where).reshape(-1)
    after = ctx.next_node(node.outputs[0])
    if len(target) == 3 and len(shape) == 3 and after is not None and after.op == "Gather":
        return locally_connected(ctx, node, x, shape, (0, 0))
    raise UnsupportedOnnxError(f"{node.where}: reshapes (N, {', '.join(map(str, shape))}) to {target.tolist()}; "
                               "fastcnn reads Reshape to (N, -1), a flatten")


def _pad(ctx, node, x, shape):
    attrs = ctx.attrs(node, {"mode": "constant", "pads": None, "value": 0.0})
    ctx.data_input(node, x)
    _image(node, shape)
    pads = attrs["pads"]
    if ctx.optional(node, 1):
        pads = [int(p) for p in ctx.constant(node, 1, "pads").reshape(-1)]
    value = float(ctx.constant(node, 2, "constant_value").reshape(-1)[0]) if ctx.optional(node, 2) else attrs["value"]
    if attrs["mode"] != "constant" or value != 0 or ctx.optional(node, 3) or pads is None or len(pads) != 8 \
            or min(pads) < 0 or any(pads[i] for i in (0, 1, 4, 5)):
        raise UnsupportedOnnxError(f"{node.where}: fastcnn reads Pad with zeros around the plane only (mode "
                                   f"{attrs['mode']!r}, value {value}, pads {pads})")
    t, left, b, r = pads[2], pads[3], pads[6], pads[7]
    after = ctx.next_node(node.outputs[0])
    if after is not None and after.op == "Conv":
        return _conv(ctx, after, node.outputs[0], shape, extra=(t, left, b, r))
    if after is not None and after.op == "Reshape" and (t, left) == (b, r):
        return locally_connected(ctx, after, node.outputs[0], shape, (t, left))
    raise UnsupportedOnnxError(f"{node.where}: fastcnn reads Pad only before a Conv (the two become one Conv2d)")


# --------------------------------------------------------------------------- dense layers


def _gemm(ctx, node, x, shape):
    attrs = ctx.attrs(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
    ctx.data_input(node, x)
    if attrs["transA"] or len(shape) != 1:
        raise UnsupportedOnnxError(f"{node.where}: fastcnn reads Gemm of (N, features) inputs without transA")
    b = ctx.weight(node, 1, "B", 2)
    w = b if attrs["transB"] else b.T  # (out, in), fastcnn's layout
    if w.shape[1] != shape[0]:
        raise ValueError(f"{node.where}: the input has {shape[0]} features but B {b.shape} takes {w.shape[1]}")
    bias = None
    if ctx.optional(node, 2):
        bias = _vector(node, ctx.weight(node, 2, "C"), w.shape[0], "C") * ctx.dtype.type(attrs["beta"])
    if attrs["alpha"] != 1.0:
        w = w * ctx.dtype.type(attrs["alpha"])
    return _linear(ctx, node, w, bias, node.outputs[0])


def _matmul(ctx, node, x, shape):
    ctx.attrs(node, {})
    ctx.data_input(node, x)
    if len(shape) != 1:
        raise UnsupportedOnnxError(f"{node.where}: fastcnn reads MatMul of (N, features) inputs only")
    w = ctx.weight(node, 1, "B", 2).T
    if w.shape[1] != shape[0]:
        raise ValueError(f"{node.where}: the input has {shape[0]} features but B {w.T.shape} takes {w.shape[1]}")
    out, bias = node.outputs[0], None
    after = ctx.next_node(out)
    if after is not None and after.op == "Add" and out in after.inputs:
        other = 1 - after.inputs.index(out)
        if ctx.graph.is_constant(after.inputs[other]):
            ctx.attrs(after, {})
            bias = _vector(after, ctx.weight(after, other, "bias"), w.shape[0], "the bias")
            out = after.outputs[0]
    return _linear(ctx, node, w, bias, out)


def _linear(ctx, node, w, bias, out):
    layer = ctx.build(node, Linear, w.shape[1], w.shape[0], bias=bias is not None, dtype=ctx.dtype)
    layer.weight.data[...] = w
    if bias is not None:
        layer.bias.data[...] = bias
    return [layer], out, (w.shape[0],)


def _batch_norm(ctx, node, x, shape):
    attrs = ctx.attrs(node, {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0})
    ctx.data_input(node, x)
    ctx.unused_extra_outputs(node, "running statistics")
    if attrs["training_mode"]:
        raise UnsupportedOnnxError(f"{node.where}: training_mode=1 is not supported (statistics of the batch)")
    C = shape[0]
    scale, shift, mean, var = (_vector(node, ctx.weight(node, i, what, 1), C, what)
                               for i, what in enumerate(("scale", "B", "input_mean", "input_var"), start=1))
    if (var < 0).any():
        raise ValueError(f"{node.where}: input_var holds negative variances")
    cls = BatchNorm2d if len(shape) == 3 else BatchNorm1d
    layer = ctx.build(node, cls, C, eps=_short(attrs["epsilon"]), momentum=round(1.0 - _short(attrs["momentum"]), 12),
                      dtype=ctx.dtype)
    ctx.shape_after(node, layer, shape)
    layer.weight.data[...], layer.bias.data[...] = scale, shift
    layer.running_mean[...], layer.running_var[...] = mean, var
    return [layer], node.outputs[0], shape


_NORMALIZE_ORDER = {"Mul": 0, "Sub": 1, "Div": 2}


def _normalize(ctx, node, x, shape):
    """``Mul`` by a positive number, ``Sub``, ``Div`` (each optional, in this order) -> one Normalize."""
    C = shape[0] if shape else 1
    scale, mean, std = 1.0, np.zeros(C, ctx.dtype), np.ones(C, ctx.dtype)
    stage, value, first = 0, x, node
    while node is not None and _NORMALIZE_ORDER.get(node.op, -1) >= stage:
        ctx.attrs(node, {})
        if node.op == "Mul":
            other = 1 if node.inputs[0] == value else 0
            ctx.data_input(node, value, 1 - other)
            s = ctx.weight(node, other, "B")
            if s.size != 1 or not s.reshape(-1)[0] > 0:
                raise UnsupportedOnnxError(f"{node.where}: multiplies by a constant of shape {s.shape}; fastcnn reads "
                                           "Mul by one positive number (Normalize's scale)")
            scale = float(s.reshape(-1)[0])
        else:
            ctx.data_input(node, value)
            c = _per_channel(node, ctx.weight(node, 1, "B"), shape)
            if node.op == "Div" and not (c > 0).all():
                raise UnsupportedOnnxError(f"{node.where}: divides by values <= 0; Normalize's std must be positive")
            mean, std = (c, std) if node.op == "Sub" else (mean, c)
        stage, value = _NORMALIZE_ORDER[node.op] + 1, node.outputs[0]
        node = ctx.next_node(value) if stage < 3 else None
    layer = ctx.build(first, Normalize, C, scale=scale, dtype=ctx.dtype)
    layer.mean[...], layer.std[...] = mean, std
    return [layer], value, shape


def _add(ctx, node, x, shape):
    raise UnsupportedOnnxError(f"{node.where}: adds a constant to the running tensor; fastcnn reads Add as the end of "
                               "a residual block (two paths from one tensor) or as the bias after a MatMul")


# --------------------------------------------------------------------------- activations and dropout


def _plain(cls):
    def handle(ctx, node, x, shape):
        ctx.attrs(node, {})
        ctx.data_input(node, x)
        return [cls()], node.outputs[0], shape

    return handle


def _leaky_relu(ctx, node, x, shape):
    attrs = ctx.attrs(node, {"alpha": 0.01})
    ctx.data_input(node, x)
    return [ctx.build(node, LeakyReLU, _short(attrs["alpha"]))], node.outputs[0], shape


def _softmax(ctx, node, x, shape):
    rank = len(shape) + 1
    attrs = ctx.attrs(node, {"axis": 1 if ctx.graph.opset < 13 else -1})
    ctx.data_input(node, x)
    axis = attrs["axis"]
    if not -rank <= axis < rank or axis % rank == 0:
        raise UnsupportedOnnxError(f"{node.where}: axis={axis} for a tensor of {rank} dimensions; fastcnn reads a "
                                   "softmax over a non-batch axis")
    if ctx.graph.opset < 13 and axis % rank != rank - 1:
        raise UnsupportedOnnxError(f"{node.where}: opset {ctx.graph.opset} Softmax at axis {axis} flattens the axes "
                                   "after it; fastcnn reads it over the last axis only")
    return [Softmax(dim=axis % rank)], node.outputs[0], shape


def _dropout(ctx, node, x, shape):
    attrs = ctx.attrs(node, {"ratio": 0.5, "seed": None, "is_test": None})
    ctx.data_input(node, x)
    ctx.unused_extra_outputs(node, "mask")
    ratio = attrs["ratio"]
    if ctx.optional(node, 1):
        ratio = ctx.constant(node, 1, "ratio").reshape(-1)
        ratio = float(ratio[0]) if ratio.size == 1 else -1.0
    if ctx.optional(node, 2) and ctx.constant(node, 2, "training_mode").reshape(-1).any():
        raise UnsupportedOnnxError(f"{node.where}: training_mode is true; fastcnn reads inference graphs")
    return [ctx.build(node, Dropout, _short(ratio))], node.outputs[0], shape


#: ONNX operator -> handler.  Identity and Constant are resolved before the walk, and shape arithmetic
#: (Shape, Gather, Unsqueeze, Concat ... on constants) is evaluated where a Reshape reads it.
HANDLERS = {
    "Conv": _conv,
    "MaxPool": _pool(avg=False),
    "AveragePool": _pool(avg=True),
    "GlobalAveragePool": _global_pool(avg=True),
    "GlobalMaxPool": _global_pool(avg=False),
    "ReduceMean": _reduce(avg=True),
    "ReduceMax": _reduce(avg=False),
    "Relu": _plain(ReLU),
    "Sigmoid": _plain(Sigmoid),
    "Tanh": _plain(Tanh),
    "LeakyRelu": _leaky_relu,
    "Softmax": _softmax,
    "BatchNormalization": _batch_norm,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Pad": _pad,
    "Dropout": _dropout,
    "Mul": _normalize,
    "Sub": _normalize,
    "Div": _normalize,
    "Add": _add,
}
