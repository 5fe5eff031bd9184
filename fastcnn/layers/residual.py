"""Residual block: ``y = block(x) + shortcut(x)``."""

from .. import kernels
from . import chain, fuse
from .base import Layer


def _as_layer_list(value, what):
    """A Sequential (anything with a ``.layers`` list), a list/tuple of layers or one layer -> list of layers."""
    if isinstance(value, Layer):
        return [value]
    layers = getattr(value, "layers", value)
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(f"Residual: {what} must be a Sequential, a non-empty list of layers or a layer, "
                        f"got {type(value).__name__}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"Residual: {what}[{i}] must be a fastcnn Layer, got {type(layer).__name__}")
    return list(layers)


class Residual(Layer):
    """A residual block: ``y = block(x) + shortcut(x)``, the identity shortcut by default.

    No activation follows the sum; add one after, as
    ``Sequential(..., Residual(block), ReLU())``.  Backward sends ``dy`` down
    both paths and returns the sum of their input gradients.  Each path runs
    as a :mod:`~fastcnn.layers.chain`, as a Sequential's layers do: a ReLU
    followed by a MaxPool2d runs after it, and when the block's own input
    gradient is not needed (the block is a model's first layer with
    parameters) neither path computes one.

    Parameters
    ----------
    block : Sequential, list of layers, or a layer
        Stored as a list of layers in ``self.block``.
    shortcut : None, a layer, a Sequential or a list of layers
        None is the identity (``block`` must then keep the shape); use a
        projection such as ``Conv2d(c_in, c_out, 1, stride=s, bias=False)``
        (optionally followed by a normalisation layer) when the block changes
        the channels or the size.  Stored as a list in ``self.shortcut``
        (empty for the identity).

    The parameters are the block's, then the shortcut's, in order; the
    buffers (BatchNorm running statistics) are named ``block<j>_<name>`` and
    ``shortcut<j>_<name>`` after the inner layer's index ``j`` in its path.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcnn
    >>> from fastcnn.layers import Conv2d, ReLU, Residual
    >>> res = Residual([Conv2d(4, 8, 3, stride=2, padding=1), ReLU(), Conv2d(8, 8, 3, padding=1)],
    ...                shortcut=Conv2d(4, 8, 1, stride=2, bias=False))
    >>> model = fastcnn.Sequential(res, ReLU(), input_shape=(4, 8, 8))
    >>> model.forward(np.zeros((2, 4, 8, 8), np.float32)).shape
    (2, 8, 4, 4)
    """

    nested_config_keys = ("block", "shortcut")
    #: A ReLU directly after this block runs inside its forward in training (:func:`fastcnn.layers.chain.fused_relu`).
    relu_fusable = True
    _relu_y = None

    def __init__(self, block, shortcut=None):
        self.block = _as_layer_list(block, "block")
        self.shortcut = [] if shortcut is None else _as_layer_list(shortcut, "shortcut")
        dtypes = {p.data.dtype for p in self.parameters()}
        if len(dtypes) > 1:
            raise ValueError(f"Residual: all inner layers must share one dtype, got {sorted(d.name for d in dtypes)}")
        self.training = True

    def branches(self):
        """``(("block", self.block), ("shortcut", self.shortcut))``: both paths read the block's input."""
        return (("block", self.block), ("shortcut", self.shortcut))

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        shapes = {}
        for name, layers in self.branches():
            found = chain.output_shapes(layers, input_shape, lambda i, layer, shape, name=name:
                                        f"Residual {name}[{i}] ({layer!r}) cannot take shape {shape}")
            shapes[name] = found[-1] if found else input_shape
        main, side = shapes["block"], shapes["shortcut"]
        if main != side:
            raise ValueError(
                f"Residual: the block maps {input_shape} to {main} but the "
                f"{'shortcut' if self.shortcut else 'identity shortcut'} gives {side}; both paths must give "
                "the same shape to be added (use a projection shortcut, e.g. "
                "Conv2d(c_in, c_out, 1, stride=s, bias=False))"
            )
        return main

    def forward(self, x, relu=False):
        """``block(x) + shortcut(x)``; with ``relu`` True, ``max(that, 0)`` in the same pass.

        The model's chains pass ``relu=True`` in training for a ReLU layer
        directly after the block (:mod:`fastcnn.layers.chain`); :meth:`backward`
        then takes the gradient after that ReLU.  The same bits as the ReLU
        layer run after the block.
        """
        self._relu_y = None
        if not any(layer.training for layer in self.walk()):
            y = fuse.residual(x, self)  # eval mode: BatchNorm folded, the sum in place
            return fuse.relu_(y) if relu else y
        h = chain.forward(self.block, x)
        s = chain.forward(self.shortcut, x)
        if h.shape != s.shape:
            self.output_shape(x.shape[1:])  # raises with the per-example shapes
            raise ValueError(f"Residual: block output {h.shape} and shortcut output {s.shape} differ")
        y = kernels.residual_add(h, s, relu=relu)
        self._relu_y = y if relu else None
        return y

    @property
    def relu_fused(self):
        """Whether the last training-mode forward ran with ``relu=True`` (then backward takes the ReLU's dy)."""
        return self._relu_y is not None

    def backward(self, dy, need_input_grad=True):
        if self._relu_y is not None:
            dy = kernels.relu_backward(dy, self._relu_y)
        d_main = chain.backward(self.block, dy, need_input_grad)
        if not need_input_grad:
            if self.shortcut:
                chain.backward(self.shortcut, dy, False)
            return None
        d_side = chain.backward(self.shortcut, dy, True) if self.shortcut else dy
        return kernels.residual_add(d_main, d_side)

    def get_config(self):
        """``{"block": [...], "shortcut": [...] or None}``, each inner layer as ``{"class": name, "config": {...}}``."""
        def configs(layers):
            return [{"class": type(layer).__name__, "config": layer.get_config()} for layer in layers]

        return {"block": configs(self.block), "shortcut": configs(self.shortcut) if self.shortcut else None}

    def __repr__(self):
        block = ", ".join(repr(layer) for layer in self.block)
        if not self.shortcut:
            return f"Residual([{block}])"
        shortcut = ", ".join(repr(layer) for layer in self.shortcut)
        return f"Residual([{block}], shortcut=[{shortcut}])"
