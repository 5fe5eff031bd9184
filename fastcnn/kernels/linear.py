"""Checked fully connected layer: x (N, I), w (O, I) as PyTorch's Linear, b (O,), y and dy (N, O).
"""

import numpy as np

from ._checks import as_float_array, check_flag, check_shape
from ._dense import (
    linear_backward_bias_kernel,
    linear_backward_input_kernel,
    linear_backward_weight_kernel,
    linear_forward_kernel,
)
from .conv import bias_vector


def _linear_args(x, w, fn):
    x = as_float_array(x, "x", fn, ndim=2)
    w = as_float_array(w, "weight", fn, ndim=2, dtype=x.dtype)
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"{fn}: x has {x.shape[1]} features but weight expects {w.shape[1]} "
            f"(x shape {x.shape}, weight shape {w.shape})"
        )
    return x, w


def linear_forward(x, w, b):
    """Fully connected layer: ``y = x @ w.T + b``.

    Parameters
    ----------
    x : ndarray, (N, in_features), float32 or float64
    w : ndarray, (out_features, in_features), same dtype (PyTorch's layout)
    b : ndarray (out_features,) or None

    Returns
    -------
    y : ndarray, (N, out_features)

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import linear_forward
    >>> linear_forward(np.ones((1, 2)), np.array([[1.0, 2.0]]), np.array([0.5]))
    array([[3.5]])
    """
    fn = "linear_forward"
    x, w = _linear_args(x, w, fn)
    b = bias_vector(b, w, fn)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    linear_forward_kernel(x, w, b, y)
    return y


def linear_backward(dy, x, w, need_input_grad=True):
    """Gradients of :func:`linear_forward`: ``dx = dy @ w``, ``dw = dy.T @ x``, ``db = dy.sum(0)``.

    Parameters
    ----------
    dy : ndarray, (N, out_features)
    x : ndarray, (N, in_features), the forward input
    w : ndarray, (out_features, in_features)
    need_input_grad : bool
        False skips ``dx`` (a model's first layer) and returns None in its place.

    Returns
    -------
    dx : ndarray (N, in_features), or None
    dw : ndarray (out_features, in_features)
    db : ndarray (out_features,)
    """
    fn = "linear_backward"
    need_input_grad = check_flag(need_input_grad, "need_input_grad", fn)
    x, w = _linear_args(x, w, fn)
    dy = as_float_array(dy, "dy", fn, ndim=2, dtype=x.dtype)
    check_shape(dy, (x.shape[0], w.shape[0]), "dy", fn)
    dx = None
    if need_input_grad:
        dx = np.empty(x.shape, dtype=x.dtype)
        linear_backward_input_kernel(dy, w, dx)
    dw = np.empty(w.shape, dtype=w.dtype)
    linear_backward_weight_kernel(dy, x, dw)
    db = np.empty(w.shape[0], dtype=w.dtype)
    linear_backward_bias_kernel(dy, db)
    return dx, dw, db
