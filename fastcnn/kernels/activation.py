"""Checked activations: ReLU, leaky ReLU, sigmoid, tanh (any shape) and softmax (rows of (N, K)).

Backward functions take what the derivative is cheapest from: the forward
input ``x`` for ReLU and leaky ReLU, the forward output ``y`` for sigmoid,
tanh and softmax.
"""

import numpy as np

from ._activations import (
    leaky_relu_backward_kernel,
    leaky_relu_forward_kernel,
    relu_backward_kernel,
    relu_forward_kernel,
    residual_add_kernel,
    sigmoid_backward_kernel,
    sigmoid_forward_kernel,
    softmax_backward_kernel,
    softmax_forward_kernel,
    tanh_backward_kernel,
    tanh_forward_kernel,
)
from ._checks import as_float_array, check_flag, check_shape, finite_real


def _elementwise(kernel, fn, *arrays, names):
    first = as_float_array(arrays[0], names[0], fn)
    arrays = [first] + [as_float_array(a, n, fn, dtype=first.dtype) for a, n in zip(arrays[1:], names[1:])]
    for a, n in zip(arrays[1:], names[1:]):
        check_shape(a, first.shape, n, fn)
    out = np.empty(first.shape, dtype=first.dtype)
    kernel(*[a.reshape(-1) for a in arrays], out.reshape(-1))
    return out


def relu_forward(x):
    """Rectified linear unit, ``max(x, 0)``, any shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import relu_forward
    >>> relu_forward(np.array([-1.0, 2.0]))
    array([0., 2.])
    """
    return _elementwise(relu_forward_kernel, "relu_forward", x, names=("x",))


def relu_backward(dy, x):
    """ReLU gradient: ``dy`` where ``x > 0``, else 0 (x is the forward input)."""
    return _elementwise(relu_backward_kernel, "relu_backward", dy, x, names=("dy", "x"))


def residual_add(a, b, relu=False):
    """``a + b`` elementwise (same shape and dtype), then ``max(., 0)`` when ``relu``: a residual block's sum.

    With ``relu`` the result is the bits of :func:`relu_forward` applied to
    the sum, in one pass; the ReLU's gradient is then :func:`relu_backward`
    with this output as ``x`` (the sum is positive exactly where it is).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import residual_add
    >>> residual_add(np.array([1.0, -3.0]), np.array([0.5, 1.0]), relu=True)
    array([1.5, 0. ])
    """
    relu = check_flag(relu, "relu", "residual_add")
    return _elementwise(lambda a_, b_, y: residual_add_kernel(a_, b_, y, relu), "residual_add", a, b,
                        names=("a", "b"))


def sigmoid_forward(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, overflow-free for any x."""
    return _elementwise(sigmoid_forward_kernel, "sigmoid_forward", x, names=("x",))


def sigmoid_backward(dy, y):
    """Sigmoid gradient ``dy * y * (1 - y)`` from the forward output ``y``."""
    return _elementwise(sigmoid_backward_kernel, "sigmoid_backward", dy, y, names=("dy", "y"))


def tanh_forward(x):
    """Hyperbolic tangent, any shape."""
    return _elementwise(tanh_forward_kernel, "tanh_forward", x, names=("x",))


def tanh_backward(dy, y):
    """Tanh gradient ``dy * (1 - y**2)`` from the forward output ``y``."""
    return _elementwise(tanh_backward_kernel, "tanh_backward", dy, y, names=("dy", "y"))


def _slope(negative_slope, fn):
    return finite_real(negative_slope, "negative_slope", fn)


def leaky_relu_forward(x, negative_slope=0.01):
    """Leaky ReLU, ``x if x > 0 else negative_slope * x``, any shape.

    Parameters
    ----------
    x : ndarray, float32 or float64
    negative_slope : float
        Slope for negative inputs (cast to x's dtype).

    Returns
    -------
    y : ndarray, shape and dtype of x

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import leaky_relu_forward
    >>> leaky_relu_forward(np.array([-2.0, 3.0]), 0.5)
    array([-1.,  3.])
    """
    fn = "leaky_relu_forward"
    slope = _slope(negative_slope, fn)
    x = as_float_array(x, "x", fn)
    y = np.empty(x.shape, dtype=x.dtype)
    leaky_relu_forward_kernel(x.reshape(-1), slope, y.reshape(-1))
    return y


def leaky_relu_backward(dy, x, negative_slope=0.01):
    """Leaky ReLU gradient: ``dy`` where ``x > 0``, else ``negative_slope * dy`` (x is the forward input).

    At ``x == 0`` the slope is ``negative_slope``, as in PyTorch.

    Returns
    -------
    dx : ndarray, shape and dtype of dy
    """
    fn = "leaky_relu_backward"
    slope = _slope(negative_slope, fn)
    dy = as_float_array(dy, "dy", fn)
    x = as_float_array(x, "x", fn, dtype=dy.dtype)
    check_shape(x, dy.shape, "x", fn)
    dx = np.empty(dy.shape, dtype=dy.dtype)
    leaky_relu_backward_kernel(dy.reshape(-1), x.reshape(-1), slope, dx.reshape(-1))
    return dx


def softmax_forward(x):
    """Softmax over each row of x (N, K): ``exp(x - max) / sum(exp(x - max))``.

    Subtracting the row maximum makes it finite for logits of any magnitude;
    a NaN in a row makes that row NaN.

    Parameters
    ----------
    x : ndarray, (N, K), float32 or float64, K >= 1

    Returns
    -------
    y : ndarray, (N, K), dtype of x; each row sums to 1

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import softmax_forward
    >>> softmax_forward(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """
    fn = "softmax_forward"
    x = as_float_array(x, "x", fn, ndim=2)
    if x.shape[1] == 0:
        raise ValueError(f"{fn}: x must have at least one column (class), got shape {x.shape}")
    y = np.empty(x.shape, dtype=x.dtype)
    softmax_forward_kernel(x, y)
    return y


def softmax_backward(dy, y):
    """Softmax gradient from the forward output ``y``: ``dx = y * (dy - sum(dy * y, axis=1))``.

    Parameters
    ----------
    dy, y : ndarray, (N, K), same dtype

    Returns
    -------
    dx : ndarray, (N, K)
    """
    fn = "softmax_backward"
    dy = as_float_array(dy, "dy", fn, ndim=2)
    y = as_float_array(y, "y", fn, ndim=2, dtype=dy.dtype)
    check_shape(y, dy.shape, "y", fn)
    dx = np.empty(dy.shape, dtype=dy.dtype)
    softmax_backward_kernel(dy, y, dx)
    return dx
