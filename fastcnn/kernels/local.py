"""Checked locally connected layer: a convolution whose filters are not shared across positions.

Shape vocabulary: x (N, C, H, W), w (P, Q, K, C, R, S): one (K, C, R, S)
filter bank per output pixel, b (K, P, Q), y and dy (N, K, P, Q).
"""

import numpy as np

from ._checks import as_float_array, check_flag, check_shape, check_x_shape, nonnegative_pair, positive_pair
from ._local import (
    locally_connected2d_backward_bias_kernel,
    locally_connected2d_backward_input_kernel,
    locally_connected2d_backward_weight_kernel,
    locally_connected2d_forward_kernel,
)
from .conv_geometry import conv2d_output_shape


def locally_connected2d_output_shape(x_shape, w_shape, stride=1, padding=0, fn="locally_connected2d"):
    """Output shape (N, K, P, Q) of a locally connected layer, after checking the geometry.

    ``w_shape`` is (P, Q, K, C, R, S); ``P = floor((H + 2*ph - R) / sh) + 1`` (Q
    likewise) must equal the weight's first two axes.
    """
    x_shape = check_x_shape(x_shape, fn)
    P, Q, K, C, R, S = check_x_shape(w_shape, fn, "weight shape", "(P, Q, K, C, R, S)", ndim=6)
    N, K2, P2, Q2 = conv2d_output_shape(x_shape, (K, C, R, S), stride, padding, fn)
    if (P2, Q2) != (P, Q):
        raise ValueError(
            f"{fn}: input {tuple(x_shape)} gives a {P2}x{Q2} output with kernel {R}x{S}, stride {stride!r} "
            f"and padding {padding!r}, but the weight {tuple(w_shape)} has filters for {P}x{Q} positions; "
            "build the layer for this input size"
        )
    return N, K, P, Q


def _local_args(x, w, stride, padding, fn):
    x = as_float_array(x, "x", fn, ndim=4)
    w = as_float_array(w, "weight", fn, ndim=6, dtype=x.dtype)
    out_shape = locally_connected2d_output_shape(x.shape, w.shape, stride, padding, fn)
    return x, w, positive_pair(stride, "stride", fn) + nonnegative_pair(padding, "padding", fn), out_shape


def locally_connected2d_forward(x, w, b, stride=1, padding=0):
    """Locally connected layer forward: a convolution whose filters are not shared across positions.

    ``y[n, k, p, q] = b[k, p, q] + sum_{c, r, s} w[p, q, k, c, r, s] * xp[n, c, p*sh + r, q*sw + s]``
    where ``xp`` is ``x`` zero-padded by ``padding``; output size as
    :func:`conv2d_forward`.  PyTorch has no such layer; Keras'
    ``LocallyConnected2D`` is the reference (its kernel is laid out
    (P*Q, R*S*C, K); fastcnn keeps PyTorch's (K, C, R, S) per position).

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (P, Q, K, C, R, S), same dtype: one (K, C, R, S) filter bank per output pixel
    b : ndarray (K, P, Q) of the same dtype, or None
    stride, padding : int or (int, int)

    Returns
    -------
    y : ndarray, (N, K, P, Q), dtype of x

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import locally_connected2d_forward
    >>> x = np.arange(4.0).reshape(1, 1, 1, 4)  # one 1x4 image: [0, 1, 2, 3]
    >>> w = np.ones((1, 2, 1, 1, 1, 2))         # 1x2 filters at the two output positions (0, 0), (0, 1)
    >>> w[0, 1] *= 10                           # the second position has its own filter
    >>> locally_connected2d_forward(x, w, None, stride=(1, 2))[0, 0]
    array([[ 1., 50.]])
    """
    fn = "locally_connected2d_forward"
    x, w, geometry, out_shape = _local_args(x, w, stride, padding, fn)
    b = _local_bias(b, out_shape, w.dtype, fn)
    y = np.empty(out_shape, dtype=x.dtype)
    locally_connected2d_forward_kernel(x, w, b, y, *geometry)
    return y


def _local_bias(b, out_shape, dtype, fn):
    _, K, P, Q = out_shape
    if b is None:
        return np.zeros((K, P, Q), dtype=dtype)
    b = as_float_array(b, "bias", fn, ndim=3, dtype=dtype)
    check_shape(b, (K, P, Q), "bias", fn)
    return b


def locally_connected2d_backward(dy, x, w, stride=1, padding=0, need_input_grad=True):
    """Gradients of :func:`locally_connected2d_forward`.

    - ``dx[n, c, i, j] = sum w[p, q, k, c, r, s] * dy[n, k, p, q]`` over the
      (p, q, k, r, s) with ``i = p*sh - ph + r``, ``j = q*sw - pw + s``;
    - ``dw[p, q, k, c, r, s] = sum_n dy[n, k, p, q] * xp[n, c, p*sh + r, q*sw + s]``
      (0 for taps in the padding);
    - ``db[k, p, q] = sum_n dy[n, k, p, q]``.

    Parameters
    ----------
    dy : ndarray, (N, K, P, Q)
    x, w, stride, padding
        As given to :func:`locally_connected2d_forward`.
    need_input_grad : bool
        False skips ``dx``.

    Returns
    -------
    dx : ndarray (N, C, H, W) or None
    dw : ndarray (P, Q, K, C, R, S)
    db : ndarray (K, P, Q)
    """
    fn = "locally_connected2d_backward"
    need_input_grad = check_flag(need_input_grad, "need_input_grad", fn)
    x, w, geometry, out_shape = _local_args(x, w, stride, padding, fn)
    dy = as_float_array(dy, "dy", fn, ndim=4, dtype=x.dtype)
    check_shape(dy, out_shape, "dy", fn)
    dx = None
    if need_input_grad:
        dx = np.empty(x.shape, dtype=x.dtype)
        locally_connected2d_backward_input_kernel(dy, w, dx, *geometry)
    dw = np.empty(w.shape, dtype=w.dtype)
    locally_connected2d_backward_weight_kernel(dy, x, dw, *geometry)
    db = np.empty(out_shape[1:], dtype=w.dtype)
    locally_connected2d_backward_bias_kernel(dy, db)
    return dx, dw, db
