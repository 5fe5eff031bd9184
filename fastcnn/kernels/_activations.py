"""Raw elementwise activation kernels on flat (1-D) arrays: caller-allocated outputs, no checks.

The checked functions pass ``a.reshape(-1)`` views, so one kernel serves any shape.
Backward kernels take the forward output ``y`` where the derivative is cheaper
from it (sigmoid: y(1 - y); tanh: 1 - y^2) and the input ``x`` for ReLU.
"""

import numpy as np
from numba import prange

from ..config import pjit


@pjit
def relu_forward_kernel(x, y):
    """y = max(x, 0) elementwise (NaN propagates)."""
    zero = y.dtype.type(0)
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = zero if v < zero else v


@pjit
def relu_backward_kernel(dy, x, dx):
    """dx = dy where x > 0, else 0."""
    zero = dx.dtype.type(0)
    for i in prange(x.shape[0]):
        dx[i] = dy[i] if x[i] > zero else zero


@pjit
def sigmoid_forward_kernel(x, y):
    """y = 1 / (1 + exp(-x)), written so that exp never overflows."""
    one = y.dtype.type(1)
    for i in prange(x.shape[0]):
        v = x[i]
        if v >= 0:
            y[i] = one / (one + np.exp(-v))
        else:
            e = np.exp(v)
            y[i] = e / (one + e)


@pjit
def sigmoid_backward_kernel(dy, y, dx):
    """dx = dy * y * (1 - y), from the forward output y."""
    one = dx.dtype.type(1)
    for i in prange(y.shape[0]):
        dx[i] = dy[i] * y[i] * (one - y[i])


@pjit
def tanh_forward_kernel(x, y):
    """y = tanh(x)."""
    for i in prange(x.shape[0]):
        y[i] = np.tanh(x[i])


@pjit
def tanh_backward_kernel(dy, y, dx):
    """dx = dy * (1 - y^2), from the forward output y."""
    one = dx.dtype.type(1)
    for i in prange(y.shape[0]):
        dx[i] = dy[i] * (one - y[i] * y[i])
