"""Activation layers."""

from .. import kernels
from .base import Layer


class ReLU(Layer):
    """``max(x, 0)``; keeps its input for backward."""

    _x = None

    def forward(self, x):
        y = kernels.relu_forward(x)
        self._x = x if self.training else None
        return y

    def backward(self, dy):
        return kernels.relu_backward(dy, self._cached(self._x, "input"))


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))``; keeps its output for backward."""

    _y = None

    def forward(self, x):
        y = kernels.sigmoid_forward(x)
        self._y = y if self.training else None
        return y

    def backward(self, dy):
        return kernels.sigmoid_backward(dy, self._cached(self._y, "output"))


class Tanh(Layer):
    """``tanh(x)``; keeps its output for backward."""

    _y = None

    def forward(self, x):
        y = kernels.tanh_forward(x)
        self._y = y if self.training else None
        return y

    def backward(self, dy):
        return kernels.tanh_backward(dy, self._cached(self._y, "output"))
