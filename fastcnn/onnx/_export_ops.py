"""The ONNX nodes of each fastcnn layer: a table from layer class name to the function that writes them.

Every function is ``write(g, layer, x, shape, scope) -> y``: ``g`` the
:class:`~fastcnn.onnx._export.GraphBuilder`, ``x`` the name of the layer's
input tensor, ``shape`` its per-example shape (no batch axis), ``scope`` the
layer's place in the model (``["3", "block", "1"]``), which names its nodes
(``/3/block/1/Conv``) and initializers (``3.block.1.weight``).  It returns the
name of the output tensor.  The graphs are inference graphs: BatchNorm uses its
running statistics and Dropout is the identity in ONNX Runtime.

Layer attributes that other versions of a layer may lack (``Conv2d.dilation``,
``Conv2d.groups``, ``AvgPool2d.count_include_pad``) are read with their
PyTorch defaults.
"""

import numpy as np

from .._shapes import pair

__all__ = ["EXPORTERS", "conv_pads"]


def conv_pads(layer):
    """ONNX ``pads`` ``[top, left, bottom, right]`` of a Conv2d: its padding pair, or ``"same"``/``"valid"``.

    ``"same"`` pads ``dilation * (kernel - 1)`` in total per axis, the odd one at the end
    (PyTorch's split, and ONNX's ``SAME_UPPER`` at stride 1).
    """
    padding = getattr(layer, "padding", 0)
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0, 0, 0]
        if padding == "same":
            (kh, kw), (dh, dw) = layer.kernel_size, pair(getattr(layer, "dilation", 1), "dilation")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            return [th // 2, tw // 2, th - th // 2, tw - tw // 2]
        raise ValueError(f"export: {layer!r} has padding {padding!r}; known strings are 'same' and 'valid'")
    ph, pw = pair(padding, "padding")
    return [ph, pw, ph, pw]


def _conv(g, layer, x, shape, scope):
    inputs = [x, g.constant(scope, "weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.constant(scope, "bias", layer.bias.data))
    stride, dilation = pair(layer.stride, "stride"), pair(getattr(layer, "dilation", 1), "dilation")
    return g.node("Conv", inputs, scope, kernel_shape=list(layer.kernel_size), strides=list(stride),
                  pads=conv_pads(layer), dilations=list(dilation), group=int(getattr(layer, "groups", 1)))


def _pool_attrs(layer):
    kernel = pair(layer.kernel_size, "kernel_size")
    stride = kernel if layer.stride is None else pair(layer.stride, "stride")
    ph, pw = pair(layer.padding, "padding")
    return {"kernel_shape": list(kernel), "strides": list(stride), "pads": [ph, pw, ph, pw],
            "ceil_mode": int(bool(layer.ceil_mode))}


def _max_pool(g, layer, x, shape, scope):
    return g.node("MaxPool", [x], scope, **_pool_attrs(layer))


def _avg_pool(g, layer, x, shape, scope):
    attrs = _pool_attrs(layer)
    # without padding, fastcnn's (and PyTorch's) divisor is the number of input pixels in the window, a ceil-mode
    # window at the edge included: count_include_pad=0 in ONNX's words, whatever the layer's flag says
    padded = any(attrs["pads"])
    attrs["count_include_pad"] = int(padded and bool(getattr(layer, "count_include_pad", True)))
    return g.node("AveragePool", [x], scope, **attrs)


def _global_pool(op):
    def write(g, layer, x, shape, scope):
        return g.node("Flatten", [g.node(op, [x], scope)], scope, axis=1)  # (N, C, 1, 1) -> (N, C), as the layer

    return write


def _unary(op):
    def write(g, layer, x, shape, scope):
        return g.node(op, [x], scope)

    return write


def _leaky_relu(g, layer, x, shape, scope):
    return g.node("LeakyRelu", [x], scope, alpha=float(layer.negative_slope))


def _softmax(g, layer, x, shape, scope):
    return g.node("Softmax", [x], scope, axis=int(layer.dim))


def _batch_norm(g, layer, x, shape, scope):
    C = layer.num_features
    scale = layer.weight.data if layer.affine else np.ones(C)
    shift = layer.bias.data if layer.affine else np.zeros(C)
    inputs = [x] + [g.constant(scope, name, value) for name, value in (
        ("weight", scale), ("bias", shift), ("running_mean", layer.running_mean), ("running_var", layer.running_var))]
    # ONNX's momentum weighs the old statistics (running = running * momentum + batch * (1 - momentum))
    return g.node("BatchNormalization", inputs, scope, epsilon=float(layer.eps), momentum=1.0 - float(layer.momentum))


def _normalize(g, layer, x, shape, scope):
    stat_shape = (layer.num_channels,) + (1,) * (len(shape) - 1)  # over axis 1 of (N, C, ...)
    y = x
    if layer.scale != 1.0:
        y = g.node("Mul", [y, g.constant(scope, "scale", np.array(layer.scale))], scope)
    y = g.node("Sub", [y, g.constant(scope, "mean", layer.mean.reshape(stat_shape))], scope)
    return g.node("Div", [y, g.constant(scope, "std", layer.std.reshape(stat_shape))], scope)


def _flatten(g, layer, x, shape, scope):
    return g.node("Flatten", [x], scope, axis=1)


def _linear(g, layer, x, shape, scope):
    inputs = [x, g.constant(scope, "weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.constant(scope, "bias", layer.bias.data))
    return g.node("Gemm", inputs, scope, transB=1)


def _dropout(g, layer, x, shape, scope):
    if layer.p == 0.0:
        return g.node("Identity", [x], scope)
    ratio = min(layer.p, float(np.nextafter(np.float32(1), np.float32(0))))  # ONNX wants a ratio below 1
    return g.node("Dropout", [x, g.constant(scope, "ratio", np.array(ratio, np.float32), np.float32)], scope)


def _residual(g, layer, x, shape, scope):
    main = g.chain(layer.block, x, shape, scope + ["block"])
    side = g.chain(layer.shortcut, x, shape, scope + ["shortcut"]) if layer.shortcut else x
    return g.node("Add", [main, side], scope)


def local_indices(P, Q, kernel, stride, padded_width):
    """Where each output pixel's window lies in the flattened padded input plane: int64 ``(P*Q, kh*kw)``.

    Row ``p*Q + q``, column ``r*kw + s`` holds ``(p*sh + r) * Wp + q*sw + s``.
    """
    (kh, kw), (sh, sw) = kernel, stride
    p, q, r, s = np.ix_(np.arange(P), np.arange(Q), np.arange(kh), np.arange(kw))
    return ((p * sh + r) * padded_width + q * sw + s).reshape(P * Q, kh * kw).astype(np.int64)


#: The Einsum that applies a LocallyConnected2d's weights to its gathered windows:
#: columns (N, C, L, R*S) and weights (L, K, C, R*S) -> (N, K, L), L = P*Q output pixels.
LOCAL_EQUATION = "nclr,lkcr->nkl"


def _locally_connected(g, layer, x, shape, scope):
    """Pad, flatten the plane, Gather every window with constant indices, Einsum with the weights, reshape."""
    P, Q, K, C, kh, kw = layer.weight.shape
    (H, W), (ph, pw) = layer.input_size, layer.padding
    Hp, Wp = H + 2 * ph, W + 2 * pw
    y = x
    if ph or pw:
        y = g.node("Pad", [y, g.constant(scope, "pads", np.array([0, 0, ph, pw, 0, 0, ph, pw], np.int64))], scope)
    y = g.node("Reshape", [y, g.constant(scope, "plane_shape", np.array([0, C, Hp * Wp], np.int64))], scope)
    indices = local_indices(P, Q, (kh, kw), layer.stride, Wp)
    y = g.node("Gather", [y, g.constant(scope, "windows", indices)], scope, axis=2)  # (N, C, P*Q, kh*kw)
    w = g.constant(scope, "weight", layer.weight.data.reshape(P * Q, K, C, kh * kw))
    y = g.node("Einsum", [y, w], scope, equation=LOCAL_EQUATION)  # (N, K, P*Q)
    y = g.node("Reshape", [y, g.constant(scope, "output_shape", np.array([0, K, P, Q], np.int64))], scope)
    if layer.bias is not None:
        y = g.node("Add", [y, g.constant(scope, "bias", layer.bias.data)], scope)
    return y


#: Layer class name -> the function writing its nodes.  Only the registered fastcnn class of that name is
#: exported (:data:`fastcnn.layers.base.LAYER_CLASSES`); a subclass or another class is refused.
EXPORTERS = {
    "Conv2d": _conv,
    "MaxPool2d": _max_pool,
    "AvgPool2d": _avg_pool,
    "GlobalAvgPool2d": _global_pool("GlobalAveragePool"),
    "GlobalMaxPool2d": _global_pool("GlobalMaxPool"),
    "ReLU": _unary("Relu"),
    "Sigmoid": _unary("Sigmoid"),
    "Tanh": _unary("Tanh"),
    "LeakyReLU": _leaky_relu,
    "Softmax": _softmax,
    "BatchNorm2d": _batch_norm,
    "BatchNorm1d": _batch_norm,
    "Normalize": _normalize,
    "Flatten": _flatten,
    "Linear": _linear,
    "Dropout": _dropout,
    "Residual": _residual,
    "LocallyConnected2d": _locally_connected,
}
