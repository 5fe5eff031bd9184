"""Checked CNN kernels on numpy arrays.

Every function here validates its arguments once, allocates its outputs with
the input's dtype (float32 or float64) and calls a raw ``@njit`` kernel.  The
raw kernels (``conv2d_forward_direct``, ``max_pool2d_forward_kernel``, ...) are
importable from this module too; they write into arrays you allocate, check
nothing, and can be called from your own ``@njit`` functions.

Images are NCHW: x (N, C, H, W); conv weights are (K, C, R, S) as PyTorch's.
"""

import numpy as np

from .._shapes import conv_output_size, pool_output_size
from ._activations import (
    relu_backward_kernel,
    relu_forward_kernel,
    sigmoid_backward_kernel,
    sigmoid_forward_kernel,
    tanh_backward_kernel,
    tanh_forward_kernel,
)
from ._checks import (
    as_float_array,
    as_labels,
    check_shape,
    check_x_shape,
    nonnegative_pair,
    positive_pair,
)
from ._dense import (
    linear_backward_bias_kernel,
    linear_backward_input_kernel,
    linear_backward_weight_kernel,
    linear_forward_kernel,
)
from ._batchlast import (
    BLOCK,  # noqa: F401  (channels per task, read by fastcnn.bench)
    conv2d_backward_input_batchlast,
    conv2d_backward_weight_batchlast,
    conv2d_forward_batchlast,
    to_batch_last,
)
from ._direct import (
    conv2d_backward_bias,
    conv2d_backward_input_direct,
    conv2d_backward_weight_direct,
    conv2d_forward_direct,
)
from ._im2col import col2im_kernel, conv2d_backward_gemm, conv2d_forward_gemm, im2col_kernel
from ._losses import mse_kernel, softmax_cross_entropy_kernel
from ._pool import (
    avg_pool2d_backward_kernel,
    avg_pool2d_forward_kernel,
    global_avg_pool2d_backward_kernel,
    global_avg_pool2d_forward_kernel,
    max_pool2d_backward_kernel,
    max_pool2d_forward_kernel,
)
from ._sgd import sgd_update_kernel

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_forward_im2col",
    "conv2d_backward_im2col",
    "conv2d_output_shape",
    "im2col",
    "col2im",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "pool2d_output_shape",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "relu_forward",
    "relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "linear_forward",
    "linear_backward",
    "softmax_cross_entropy",
    "mse_loss",
    # raw @njit kernels
    "conv2d_forward_direct",
    "conv2d_backward_input_direct",
    "conv2d_backward_weight_direct",
    "conv2d_backward_bias",
    "to_batch_last",
    "conv2d_forward_batchlast",
    "conv2d_backward_input_batchlast",
    "conv2d_backward_weight_batchlast",
    "im2col_kernel",
    "col2im_kernel",
    "max_pool2d_forward_kernel",
    "max_pool2d_backward_kernel",
    "avg_pool2d_forward_kernel",
    "avg_pool2d_backward_kernel",
    "global_avg_pool2d_forward_kernel",
    "global_avg_pool2d_backward_kernel",
    "relu_forward_kernel",
    "relu_backward_kernel",
    "sigmoid_forward_kernel",
    "sigmoid_backward_kernel",
    "tanh_forward_kernel",
    "tanh_backward_kernel",
    "linear_forward_kernel",
    "linear_backward_input_kernel",
    "linear_backward_weight_kernel",
    "linear_backward_bias_kernel",
    "softmax_cross_entropy_kernel",
    "mse_kernel",
    "sgd_update_kernel",
]


# --------------------------------------------------------------------------- convolution


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, fn="conv2d"):
    """Output shape (N, K, P, Q) of a convolution, after checking the geometry.

    ``P = floor((H + 2*ph - R) / sh) + 1`` and likewise Q.  Raises ValueError
    for a channel mismatch or a kernel larger than the padded input.
    """
    sh, sw = positive_pair(stride, "stride", fn)
    ph, pw = nonnegative_pair(padding, "padding", fn)
    N, C, H, W = x_shape
    K, Cw, R, S = w_shape
    if C != Cw:
        raise ValueError(
            f"{fn}: input has {C} channels but weight expects {Cw} "
            f"(x shape {tuple(x_shape)}, weight shape {tuple(w_shape)})"
        )
    if R > H + 2 * ph or S > W + 2 * pw:
        raise ValueError(
            f"{fn}: kernel {R}x{S} is larger than the padded input "
            f"{H + 2 * ph}x{W + 2 * pw} (input {H}x{W}, padding {(ph, pw)})"
        )
    return (N, K, conv_output_size(H, R, sh, ph), conv_output_size(W, S, sw, pw))


def _conv_args(x, w, stride, padding, fn):
    x = as_float_array(x, "x", fn, ndim=4)
    w = as_float_array(w, "weight", fn, ndim=4, dtype=x.dtype)
    out_shape = conv2d_output_shape(x.shape, w.shape, stride, padding, fn)
    return x, w, positive_pair(stride, "stride", fn) + nonnegative_pair(padding, "padding", fn), out_shape


def _bias(b, w, fn):
    K = w.shape[0]
    if b is None:
        return np.zeros(K, dtype=w.dtype)
    b = as_float_array(b, "bias", fn, ndim=1, dtype=w.dtype)
    if b.shape != (K,):
        raise ValueError(f"{fn}: bias must have shape ({K},) for {K} output channels, got {b.shape}")
    return b


# A batch this large fills the vector lanes of the batch-last kernels; smaller
# batches (inference on a few images) use the NCHW loops.
BATCHLAST_MIN_BATCH = 8


def _batch_last(a):
    """(N, C, H, W) -> a new (C, H, W, N) array."""
    out = np.empty(a.shape[1:] + a.shape[:1], dtype=a.dtype)
    to_batch_last(a, out)
    return out


def _direct_forward(x, w, b, y, sh, sw, ph, pw):
    """The direct algorithm, with the loop order chosen by shape."""
    if x.shape[0] >= BATCHLAST_MIN_BATCH:
        conv2d_forward_batchlast(_batch_last(x), w, b, y, sh, sw, ph, pw)
    else:
        conv2d_forward_direct(x, w, b, y, sh, sw, ph, pw)


def _direct_backward(dy, x, w, dx, dw, db, sh, sw, ph, pw):
    """Direct gradients (``dx`` None to skip it), with the loop order chosen by shape."""
    conv2d_backward_bias(dy, db)
    if x.shape[0] >= BATCHLAST_MIN_BATCH:
        dyt = _batch_last(dy)
        conv2d_backward_weight_batchlast(dyt, _batch_last(x), dw, sh, sw, ph, pw)
        if dx is not None:
            wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3))  # (C, K, R, S)
            conv2d_backward_input_batchlast(dyt, wt, dx, sh, sw, ph, pw)
    else:
        conv2d_backward_weight_direct(dy, x, dw, sh, sw, ph, pw)
        if dx is not None:
            conv2d_backward_input_direct(dy, w, dx, sh, sw, ph, pw)


def _conv_forward(x, w, b, stride, padding, fn, impl):
    x, w, geometry, out_shape = _conv_args(x, w, stride, padding, fn)
    b = _bias(b, w, fn)
    y = np.empty(out_shape, dtype=x.dtype)
    impl(x, w, b, y, *geometry)
    return y


def _conv_backward_args(dy, x, w, stride, padding, fn):
    x, w, geometry, out_shape = _conv_args(x, w, stride, padding, fn)
    dy = as_float_array(dy, "dy", fn, ndim=4, dtype=x.dtype)
    check_shape(dy, out_shape, "dy", fn)
    return dy, x, w, geometry


def conv2d_forward(x, w, b, stride=1, padding=0):
    """2-D convolution layer forward pass (cross-correlation), direct algorithm.

    ``y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xp[n, c, p*sh + r, q*sw + s]``
    where ``xp`` is ``x`` zero-padded by ``padding``.  Like every CNN library this
    is a cross-correlation: the mathematical convolution is the same sum with
    the kernel rotated by 180 degrees, i.e. ``conv2d_forward(x, w[:, :, ::-1, ::-1], b)``.
    Output size: ``P = floor((H + 2*ph - R) / sh) + 1``, ``Q`` likewise.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (K, C, R, S), same dtype
    b : ndarray (K,) of the same dtype, or None
    stride, padding : int or (int, int)
        Stride >= 1 and zero padding >= 0, along height then width.

    Returns
    -------
    y : ndarray, (N, K, P, Q), dtype of x

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import conv2d_forward
    >>> x = np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[1, 2], [3, 4]]]], dtype=np.float64)
    >>> conv2d_forward(x, w, None)[0, 0]
    array([[37., 47.],
           [67., 77.]])
    """
    return _conv_forward(x, w, b, stride, padding, "conv2d_forward", _direct_forward)


def conv2d_backward(dy, x, w, stride=1, padding=0, need_input_grad=True):
    """Gradients of a convolution, direct algorithm.

    - ``dx``: the full correlation of ``dy`` (dilated by the stride, zero-padded
      by ``R - 1 - ph``) with the kernel rotated by 180 degrees, summed over
      output channels; computed as a scatter, one (image, channel) per task.
    - ``dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * xp[n, c, p*sh + r, q*sw + s]``:
      the correlation of the input with the output gradient.
    - ``db[k] = sum_{n, p, q} dy[n, k, p, q]``.

    Parameters
    ----------
    dy : ndarray, (N, K, P, Q)
        Gradient of the loss with respect to the forward output.
    x, w, stride, padding
        As given to :func:`conv2d_forward`.
    need_input_grad : bool
        False skips ``dx`` (the first layer of a network needs none).

    Returns
    -------
    dx : ndarray (N, C, H, W) or None
    dw : ndarray (K, C, R, S)
    db : ndarray (K,)

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import conv2d_backward
    >>> x = np.ones((1, 1, 3, 3)); w = np.ones((1, 1, 2, 2)); dy = np.ones((1, 1, 2, 2))
    >>> dx, dw, db = conv2d_backward(dy, x, w)
    >>> dx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    fn = "conv2d_backward"
    dy, x, w, geometry = _conv_backward_args(dy, x, w, stride, padding, fn)
    dx = np.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    dw = np.empty(w.shape, dtype=w.dtype)
    db = np.empty(w.shape[0], dtype=w.dtype)
    _direct_backward(dy, x, w, dx, dw, db, *geometry)
    return dx, dw, db


def conv2d_forward_im2col(x, w, b, stride=1, padding=0):
    """2-D convolution forward through im2col and one matrix multiply per image.

    Same arguments, result and formula as :func:`conv2d_forward`;
    ``y[n] = w.reshape(K, C*R*S) @ im2col(x)[n] + b``.  Needs a workspace of
    ``N * C*R*S * P*Q`` elements.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import conv2d_forward_im2col
    >>> x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[1, 2], [3, 4]]]], dtype=np.float32)
    >>> conv2d_forward_im2col(x, w, None)[0, 0]
    array([[37., 47.],
           [67., 77.]], dtype=float32)
    """
    return _conv_forward(x, w, b, stride, padding, "conv2d_forward_im2col", conv2d_forward_gemm)


def conv2d_backward_im2col(dy, x, w, stride=1, padding=0, need_input_grad=True):
    """Gradients of a convolution through im2col, GEMM and col2im.

    Same arguments and results as :func:`conv2d_backward`:
    ``dw = sum_n dy[n] @ im2col(x)[n].T``, ``dx = col2im(w.T @ dy)``.
    """
    fn = "conv2d_backward_im2col"
    dy, x, w, geometry = _conv_backward_args(dy, x, w, stride, padding, fn)
    dx = np.empty(x.shape, dtype=x.dtype) if need_input_grad else None
    dw = np.empty(w.shape, dtype=w.dtype)
    db = np.empty(w.shape[0], dtype=w.dtype)
    conv2d_backward_gemm(dy, x, w, dx, dw, db, *geometry)
    return dx, dw, db


def im2col(x, kernel_size, stride=1, padding=0):
    """Unfold image patches into columns.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    kernel_size, stride, padding : int or (int, int)

    Returns
    -------
    cols : ndarray, (N, C*R*S, P*Q)
        ``cols[n, (c*R + r)*S + s, p*Q + q] = xp[n, c, p*sh + r, q*sw + s]``
        with ``xp`` the zero-padded input.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import im2col
    >>> im2col(np.arange(4.0).reshape(1, 1, 2, 2), 1).shape
    (1, 1, 4)
    """
    fn = "im2col"
    x = as_float_array(x, "x", fn, ndim=4)
    R, S = positive_pair(kernel_size, "kernel_size", fn)
    N, C, H, W = x.shape
    _, _, P, Q = conv2d_output_shape(x.shape, (1, C, R, S), stride, padding, fn)
    cols = np.empty((N, C * R * S, P * Q), dtype=x.dtype)
    im2col_kernel(x, cols, R, S, *positive_pair(stride, "stride", fn), *nonnegative_pair(padding, "padding", fn))
    return cols


def col2im(cols, x_shape, kernel_size, stride=1, padding=0):
    """Fold columns back into images, summing overlaps: the adjoint of :func:`im2col`.

    Parameters
    ----------
    cols : ndarray, (N, C*R*S, P*Q)
    x_shape : (N, C, H, W)
    kernel_size, stride, padding : int or (int, int)

    Returns
    -------
    x : ndarray, x_shape, dtype of cols
    """
    fn = "col2im"
    cols = as_float_array(cols, "cols", fn, ndim=3)
    x_shape = check_x_shape(x_shape, fn)
    R, S = positive_pair(kernel_size, "kernel_size", fn)
    N, C, H, W = x_shape
    _, _, P, Q = conv2d_output_shape(x_shape, (1, C, R, S), stride, padding, fn)
    check_shape(cols, (N, C * R * S, P * Q), "cols", fn)
    dx = np.empty(x_shape, dtype=cols.dtype)
    col2im_kernel(cols, dx, R, S, *positive_pair(stride, "stride", fn), *nonnegative_pair(padding, "padding", fn))
    return dx


# --------------------------------------------------------------------------- pooling


def pool2d_output_shape(x_shape, kernel_size, stride=None, padding=0, ceil_mode=False, fn="pool2d"):
    """Check pooling geometry and return ``(out_shape, (kh, kw, sh, sw, ph, pw))``.

    Output size ``floor((H + 2p - k) / s) + 1`` (ceiling with ``ceil_mode``, where a
    last window that would start inside the right padding is dropped).  As in
    PyTorch, padding may be at most half the window.
    """
    kh, kw = positive_pair(kernel_size, "kernel_size", fn)
    sh, sw = (kh, kw) if stride is None else positive_pair(stride, "stride", fn)
    ph, pw = nonnegative_pair(padding, "padding", fn)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            f"{fn}: padding must be at most half the kernel size, got padding {(ph, pw)} "
            f"for kernel_size {(kh, kw)}"
        )
    N, C, H, W = x_shape
    if kh > H + 2 * ph or kw > W + 2 * pw:
        raise ValueError(
            f"{fn}: kernel_size {(kh, kw)} is larger than the padded input "
            f"{H + 2 * ph}x{W + 2 * pw} (input {H}x{W}, padding {(ph, pw)})"
        )
    P = pool_output_size(H, kh, sh, ph, bool(ceil_mode))
    Q = pool_output_size(W, kw, sw, pw, bool(ceil_mode))
    return (N, C, P, Q), (kh, kw, sh, sw, ph, pw)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling forward, returning the outputs and where each came from.

    ``y[n, c, p, q]`` is the maximum of the window starting at input
    ``(p*sh - ph, q*sw - pw)``; padding never wins.  On ties the first maximum
    in row-major order wins, as in PyTorch.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    kernel_size : int or (int, int)
    stride : int, (int, int) or None
        None means ``stride = kernel_size``.
    padding : int or (int, int)
        At most half the kernel size.
    ceil_mode : bool
        Round the output size up, dropping a last window that would start
        in the right padding (PyTorch's rule).

    Returns
    -------
    y : ndarray, (N, C, P, Q), dtype of x
    argmax : ndarray, (N, C, P, Q), int64
        Flat index ``i*W + j`` of the winning element within its (H, W) plane.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import max_pool2d_forward
    >>> y, argmax = max_pool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4), 2)
    >>> y[0, 0], argmax[0, 0]
    (array([[ 5.,  7.],
           [13., 15.]]), array([[ 5,  7],
           [13, 15]]))
    """
    fn = "max_pool2d_forward"
    x = as_float_array(x, "x", fn, ndim=4)
    out_shape, geometry = pool2d_output_shape(x.shape, kernel_size, stride, padding, ceil_mode, fn)
    y = np.empty(out_shape, dtype=x.dtype)
    argmax = np.empty(out_shape, dtype=np.int64)
    max_pool2d_forward_kernel(x, y, argmax, *geometry)
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape):
    """Max pooling backward: each gradient goes to the element that won its window.

    Parameters
    ----------
    dy : ndarray, (N, C, P, Q)
    argmax : ndarray, (N, C, P, Q), integer, from :func:`max_pool2d_forward`
    x_shape : (N, C, H, W)

    Returns
    -------
    dx : ndarray, x_shape, dtype of dy
    """
    fn = "max_pool2d_backward"
    dy = as_float_array(dy, "dy", fn, ndim=4)
    x_shape = check_x_shape(x_shape, fn)
    argmax = np.asarray(argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"{fn}: argmax must be an integer array, got dtype {argmax.dtype}")
    check_shape(argmax, dy.shape, "argmax", fn)
    if dy.shape[:2] != x_shape[:2]:
        raise ValueError(f"{fn}: dy shape {dy.shape} does not match x_shape {x_shape} in N and C")
    plane = x_shape[2] * x_shape[3]
    if argmax.size and (argmax.min() < 0 or argmax.max() >= plane):
        raise ValueError(f"{fn}: argmax values must be in [0, {plane}) for x_shape {x_shape}")
    dx = np.empty(x_shape, dtype=dy.dtype)
    max_pool2d_backward_kernel(dy, np.ascontiguousarray(argmax, dtype=np.int64), dx)
    return dx


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Average pooling forward; zero padding counts in the divisor (PyTorch's default).

    The divisor of output (p, q) is the window's size clipped to the padded
    input, ``(min(i0 + kh, H + ph) - i0) * (min(j0 + kw, W + pw) - j0)`` with
    ``i0 = p*sh - ph``, ``j0 = q*sw - pw``; it is smaller only for a ceil-mode
    window hanging past the padding.  Arguments as :func:`max_pool2d_forward`.

    Returns
    -------
    y : ndarray, (N, C, P, Q), dtype of x

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import avg_pool2d_forward
    >>> avg_pool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4), 2)[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    fn = "avg_pool2d_forward"
    x = as_float_array(x, "x", fn, ndim=4)
    out_shape, geometry = pool2d_output_shape(x.shape, kernel_size, stride, padding, ceil_mode, fn)
    y = np.empty(out_shape, dtype=x.dtype)
    avg_pool2d_forward_kernel(x, y, *geometry)
    return y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Average pooling backward: each gradient is spread evenly over its window.

    Arguments as :func:`avg_pool2d_forward`, with ``dy`` (N, C, P, Q) and the
    input's shape instead of the input.

    Returns
    -------
    dx : ndarray, x_shape, dtype of dy
    """
    fn = "avg_pool2d_backward"
    dy = as_float_array(dy, "dy", fn, ndim=4)
    x_shape = check_x_shape(x_shape, fn)
    out_shape, geometry = pool2d_output_shape(x_shape, kernel_size, stride, padding, ceil_mode, fn)
    check_shape(dy, out_shape, "dy", fn)
    dx = np.empty(x_shape, dtype=dy.dtype)
    avg_pool2d_backward_kernel(dy, dx, *geometry)
    return dx


def global_avg_pool2d_forward(x):
    """Mean over each channel's H x W plane: (N, C, H, W) -> (N, C).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import global_avg_pool2d_forward
    >>> global_avg_pool2d_forward(np.arange(8.0).reshape(1, 2, 2, 2))
    array([[1.5, 5.5]])
    """
    fn = "global_avg_pool2d_forward"
    x = as_float_array(x, "x", fn, ndim=4)
    y = np.empty(x.shape[:2], dtype=x.dtype)
    global_avg_pool2d_forward_kernel(x, y)
    return y


def global_avg_pool2d_backward(dy, x_shape):
    """Spread dy (N, C) evenly over each H x W plane: returns dx of ``x_shape``."""
    fn = "global_avg_pool2d_backward"
    dy = as_float_array(dy, "dy", fn, ndim=2)
    x_shape = check_x_shape(x_shape, fn)
    check_shape(dy, x_shape[:2], "dy", fn)
    dx = np.empty(x_shape, dtype=dy.dtype)
    global_avg_pool2d_backward_kernel(dy, dx)
    return dx


# --------------------------------------------------------------------------- activations


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


# --------------------------------------------------------------------------- fully connected


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
    b = _bias(b, w, fn)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    linear_forward_kernel(x, w, b, y)
    return y


def linear_backward(dy, x, w):
    """Gradients of :func:`linear_forward`: ``dx = dy @ w``, ``dw = dy.T @ x``, ``db = dy.sum(0)``.

    Returns
    -------
    dx : ndarray (N, in_features)
    dw : ndarray (out_features, in_features)
    db : ndarray (out_features,)
    """
    fn = "linear_backward"
    x, w = _linear_args(x, w, fn)
    dy = as_float_array(dy, "dy", fn, ndim=2, dtype=x.dtype)
    check_shape(dy, (x.shape[0], w.shape[0]), "dy", fn)
    dx = np.empty(x.shape, dtype=x.dtype)
    linear_backward_input_kernel(dy, w, dx)
    dw = np.empty(w.shape, dtype=w.dtype)
    linear_backward_weight_kernel(dy, x, dw)
    db = np.empty(w.shape[0], dtype=w.dtype)
    linear_backward_bias_kernel(dy, db)
    return dx, dw, db


# --------------------------------------------------------------------------- losses


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    ``loss = mean_n(logsumexp(logits[n]) - logits[n, labels[n]])``, computed
    after subtracting each row's maximum, so it is finite for logits of any
    magnitude; ``dlogits = (softmax(logits) - onehot(labels)) / N``.

    Parameters
    ----------
    logits : ndarray, (N, num_classes), float32 or float64
    labels : integer array, (N,), values in [0, num_classes)

    Returns
    -------
    loss : float
    dlogits : ndarray, (N, num_classes), dtype of logits

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import softmax_cross_entropy
    >>> loss, d = softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 6)  # log(4)
    1.386294
    """
    fn = "softmax_cross_entropy"
    logits = as_float_array(logits, "logits", fn, ndim=2)
    N, K = logits.shape
    if N == 0 or K == 0:
        raise ValueError(f"{fn}: logits must have at least one row and one class, got shape {logits.shape}")
    labels = as_labels(labels, N, K, fn)
    dlogits = np.empty_like(logits)
    losses = np.empty(N, dtype=logits.dtype)
    softmax_cross_entropy_kernel(logits, labels, dlogits, losses)
    return float(losses.mean()), dlogits


def mse_loss(pred, target):
    """Mean squared error over all elements, and its gradient ``2 (pred - target) / pred.size``.

    Parameters
    ----------
    pred : ndarray, any shape, float32 or float64
    target : ndarray, same shape and dtype

    Returns
    -------
    loss : float
    dpred : ndarray, shape and dtype of pred

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import mse_loss
    >>> mse_loss(np.array([1.0, 3.0]), np.array([0.0, 0.0]))[0]
    5.0
    """
    fn = "mse_loss"
    pred = as_float_array(pred, "pred", fn)
    target = as_float_array(target, "target", fn, dtype=pred.dtype)
    check_shape(target, pred.shape, "target", fn)
    if pred.size == 0:
        raise ValueError(f"{fn}: pred must not be empty")
    dpred = np.empty_like(pred)
    total = mse_kernel(pred.reshape(-1), target.reshape(-1), dpred.reshape(-1))
    return float(total) / pred.size, dpred
