"""Activation layers."""

import math
import numbers

import numpy as np

from .. import kernels
from .base import Layer, format_args


class ReLU(Layer):
    """``max(x, 0)``; keeps its input for backward."""

    _x = None

    def forward(self, x):
        if _plain(x):  # what the checked function would pass through unchanged: straight to the raw kernel
            y = np.empty_like(x)
            kernels.relu_forward_kernel(x.reshape(-1), y.reshape(-1))
        else:
            y = kernels.relu_forward(x)
        self._x = x if self.training else None
        return y

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        x = self._cached(self._x, "input")
        if _plain(x) and _plain(dy) and dy.dtype == x.dtype and dy.shape == x.shape:
            dx = np.empty_like(x)
            kernels.relu_backward_kernel(dy.reshape(-1), x.reshape(-1), dx.reshape(-1))
            return dx
        return kernels.relu_backward(dy, x)


def _plain(a):
    """Whether ``a`` is a C-contiguous float32 or float64 ndarray (an activation between two layers)."""
    return type(a) is np.ndarray and (a.dtype == _F32 or a.dtype == _F64) and a.flags.c_contiguous


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))``; keeps its output for backward."""

    _y = None

    def forward(self, x):
        y = kernels.sigmoid_forward(x)
        self._y = y if self.training else None
        return y

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        return kernels.sigmoid_backward(dy, self._cached(self._y, "output"))


class Tanh(Layer):
    """``tanh(x)``; keeps its output for backward."""

    _y = None

    def forward(self, x):
        y = kernels.tanh_forward(x)
        self._y = y if self.training else None
        return y

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        return kernels.tanh_backward(dy, self._cached(self._y, "output"))


class LeakyReLU(Layer):
    """``x if x > 0 else negative_slope * x``; keeps its input for backward.

    Parameters
    ----------
    negative_slope : float
        Slope for negative inputs (PyTorch's default 0.01).
    """

    _x = None

    def __init__(self, negative_slope=0.01):
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real) \
                or not math.isfinite(negative_slope):
            raise ValueError(f"LeakyReLU: negative_slope must be a finite real number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        y = kernels.leaky_relu_forward(x, self.negative_slope)
        self._x = x if self.training else None
        return y

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        return kernels.leaky_relu_backward(dy, self._cached(self._x, "input"), self.negative_slope)

    def get_config(self):
        """Constructor arguments: ``negative_slope``."""
        return {"negative_slope": self.negative_slope}

    def __repr__(self):
        extra = format_args([("negative_slope", self.negative_slope, 0.01)])
        return f"LeakyReLU({extra})"


class Softmax(Layer):
    """Softmax along axis ``dim``: ``exp(x - max) / sum(exp(x - max))``, for probabilities at inference.

    Keeps its output for backward (``dx = y * (dy - sum(dy * y, dim))``).  Do
    not put it before ``loss="cross_entropy"``, which applies its own softmax
    to logits.

    Parameters
    ----------
    dim : int
        The axis to normalise, counting the batch axis (PyTorch's ``dim``);
        1 (default) is the class axis of (N, K) logits; negative counts from the end.
    """

    _y = None

    def __init__(self, dim=1):
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
            raise ValueError(f"Softmax: dim must be an int, got {dim!r}")
        self.dim = int(dim)

    def _axis(self, ndim):
        if ndim < 1 or not -ndim <= self.dim < ndim:
            raise ValueError(f"{self!r}: dim {self.dim} is out of range for an input of {ndim} dimensions "
                             f"(batch axis included); use a dim in [{-ndim}, {ndim - 1}]")
        return self.dim % ndim

    def output_shape(self, input_shape):
        self._axis(len(input_shape) + 1)
        return tuple(input_shape)

    def forward(self, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self!r}: input must be a numpy array, got {type(x).__name__}")
        axis = self._axis(x.ndim)
        moved = np.moveaxis(x, axis, -1)
        y = kernels.softmax_forward(moved.reshape(-1, moved.shape[-1]))
        y = np.moveaxis(y.reshape(moved.shape), -1, axis)
        self._y = y if self.training else None
        return y

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        y = self._cached(self._y, "output")
        if not isinstance(dy, np.ndarray) or dy.shape != y.shape:
            raise ValueError(f"{self!r}: dy must have the output's shape {y.shape}, got {getattr(dy, 'shape', dy)!r}")
        axis = self.dim % y.ndim
        my, mdy = np.moveaxis(y, axis, -1), np.moveaxis(dy, axis, -1)
        dx = kernels.softmax_backward(mdy.reshape(-1, mdy.shape[-1]), my.reshape(-1, my.shape[-1]))
        return np.moveaxis(dx.reshape(my.shape), -1, axis)

    def get_config(self):
        """Constructor arguments: ``dim``."""
        return {"dim": self.dim}

    def __repr__(self):
        return f"Softmax({format_args([('dim', self.dim, 1)])})"
