"""Checked CNN kernels on numpy arrays.

Every function here validates its arguments once, allocates its outputs with
the input's dtype (float32 or float64) and calls a raw ``@njit`` kernel.  The
raw kernels (``conv2d_forward_direct``, ``max_pool2d_forward_kernel``, ...) are
importable from this module too; they write into arrays you allocate, check
nothing, and can be called from your own ``@njit`` functions.

Images are NCHW: x (N, C, H, W); conv weights are (K, C, R, S) as PyTorch's.
"""

import collections
import numbers
import threading

import numpy as np

from .._shapes import conv_output_size, pool_output_size
from ..config import get_num_threads
from ._activations import (
    leaky_relu_backward_kernel,
    leaky_relu_forward_kernel,
    relu_backward_kernel,
    relu_forward_kernel,
    sigmoid_backward_kernel,
    sigmoid_forward_kernel,
    softmax_backward_kernel,
    softmax_forward_kernel,
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
    to_pixel_batch_last,
)
from ._channellast import (  # noqa: F401  (DX_BLOCK: read by fastcnn.bench)
    DX_BLOCK,
    conv2d_backward_input_channellast,
    conv2d_backward_weight_channellast,
    conv2d_forward_channellast,
    input_grad_frame,
    to_channel_last,
)
from ._direct import (
    conv2d_backward_bias,
    conv2d_backward_input_direct,
    conv2d_backward_weight_direct,
    conv2d_forward_direct,
)
from ._im2col import col2im_kernel, conv2d_backward_gemm, conv2d_forward_gemm, im2col_kernel
from ._losses import mse_kernel, softmax_cross_entropy_kernel
from ._norm import batch_norm_backward_kernel, batch_norm_forward_eval_kernel, batch_norm_forward_train_kernel
from ._local import (
    locally_connected2d_backward_bias_kernel,
    locally_connected2d_backward_input_kernel,
    locally_connected2d_backward_weight_kernel,
    locally_connected2d_forward_kernel,
)
from ._pool import (
    avg_pool2d_backward_kernel,
    avg_pool2d_forward_kernel,
    global_avg_pool2d_backward_kernel,
    global_avg_pool2d_forward_kernel,
    max_pool2d_2x2_forward_kernel,
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
    "leaky_relu_forward",
    "leaky_relu_backward",
    "softmax_forward",
    "softmax_backward",
    "batch_norm2d_forward",
    "batch_norm2d_backward",
    "batch_norm1d_forward",
    "batch_norm1d_backward",
    "linear_forward",
    "linear_backward",
    "softmax_cross_entropy",
    "mse_loss",
    "locally_connected2d_output_shape",
    "locally_connected2d_forward",
    "locally_connected2d_backward",
    "clear_workspace",
    # raw @njit kernels
    "conv2d_forward_direct",
    "conv2d_backward_input_direct",
    "conv2d_backward_weight_direct",
    "conv2d_backward_bias",
    "to_batch_last",
    "to_pixel_batch_last",
    "conv2d_forward_batchlast",
    "conv2d_backward_input_batchlast",
    "conv2d_backward_weight_batchlast",
    "to_channel_last",
    "input_grad_frame",
    "conv2d_forward_channellast",
    "conv2d_backward_input_channellast",
    "conv2d_backward_weight_channellast",
    "im2col_kernel",
    "col2im_kernel",
    "max_pool2d_forward_kernel",
    "max_pool2d_2x2_forward_kernel",
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
    "leaky_relu_forward_kernel",
    "leaky_relu_backward_kernel",
    "softmax_forward_kernel",
    "softmax_backward_kernel",
    "batch_norm_forward_train_kernel",
    "batch_norm_forward_eval_kernel",
    "batch_norm_backward_kernel",
    "linear_forward_kernel",
    "linear_backward_input_kernel",
    "linear_backward_weight_kernel",
    "linear_backward_bias_kernel",
    "softmax_cross_entropy_kernel",
    "mse_kernel",
    "sgd_update_kernel",
    "locally_connected2d_forward_kernel",
    "locally_connected2d_backward_input_kernel",
    "locally_connected2d_backward_weight_kernel",
    "locally_connected2d_backward_bias_kernel",
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


class _Workspace(threading.local):
    """Scratch arrays of the direct convolution (layout copies, partial sums), reused across calls.

    Training calls every layer with the same shapes batch after batch, so the
    copies are allocated once instead of per call (fresh pages cost as much
    as a small layer).  Per thread, so concurrent calls never share one;
    least recently used arrays beyond ``SLOTS`` are dropped.
    """

    SLOTS = 32

    def __init__(self):
        self.arrays = collections.OrderedDict()

    def get(self, role, shape, dtype):
        key = (role, tuple(shape), np.dtype(dtype).str)
        a = self.arrays.pop(key, None)
        if a is None:
            a = np.empty(shape, dtype=dtype)
        self.arrays[key] = a  # most recently used last
        while len(self.arrays) > self.SLOTS:
            self.arrays.popitem(last=False)
        return a


_WORKSPACE = _Workspace()


def clear_workspace():
    """Free the scratch arrays the direct convolution keeps between calls (in this thread).

    They are the layout copies of the last inputs seen per shape (about the
    size of one activation each); they are reallocated when next needed.
    """
    _WORKSPACE.arrays.clear()


def _batch_last(a, role):
    """(N, C, H, W) -> (C, H, W, N), into the workspace array ``role``."""
    out = _WORKSPACE.get(role, a.shape[1:] + a.shape[:1], a.dtype)
    to_batch_last(a, out)
    return out


# From this many output channels (input channels for the input gradient) the
# channel-last kernels, which vectorise over channels 16 at a time, take over
# from the batch-last ones (``fastcnn bench conv`` measures both).
CHANNEL_LAST_MIN_CHANNELS = 16


def _channel_last(a, ph, pw, role):
    """(N, C, H, W) -> zero-padded (N, H + 2*ph, W + 2*pw, C), into the workspace array ``role``."""
    N, C, H, W = a.shape
    out = _WORKSPACE.get(role, (N, H + 2 * ph, W + 2 * pw, C), a.dtype)
    to_channel_last(a, out, ph, pw)
    return out


def _forward_weight(w):
    """(K, C, R, S) -> (R, S*C, Kw), the layout of :func:`conv2d_forward_channellast`, K zero-padded to a multiple of 8."""
    K, C, R, S = w.shape
    w2 = np.zeros((R, S, C, -(-K // 8) * 8), dtype=w.dtype)
    w2[..., :K] = w.transpose(2, 3, 1, 0)
    return w2.reshape(R, S * C, w2.shape[3])


def _fast_path(x_shape, w_shape, sh, sw, ph, pw):
    """Which matrix-multiply shortcut :func:`conv2d_forward` / :func:`conv2d_backward` take, if any.

    ``"1x1"``: a 1x1 kernel with stride 1 and no padding, a per-pixel linear map
    of the channels.  ``"full"``: a kernel exactly as large as the padded input
    (``R == H + 2*ph`` and ``S == W + 2*pw``, so the output is 1x1 whatever the
    stride), a fully connected layer written as a convolution; it wins over
    ``"1x1"`` for 1x1 images (one GEMM over the batch instead of one per image).
    None: the general direct loops.
    """
    _, _, H, W = x_shape
    _, _, R, S = w_shape
    if R == H + 2 * ph and S == W + 2 * pw:
        return "full"
    if R == 1 and S == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0:
        return "1x1"
    return None


def _padded(x, ph, pw):
    """``x`` zero-padded by (ph, pw) on H and W (``x`` itself when there is no padding)."""
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _direct_forward(x, w, b, y, sh, sw, ph, pw):
    """The direct algorithm: a matrix-multiply fast path when :func:`_fast_path` finds one, else loops chosen by shape."""
    path = _fast_path(x.shape, w.shape, sh, sw, ph, pw)
    N, C, H, W = x.shape
    K = w.shape[0]
    if path == "1x1":
        # y[n] = w (K, C) @ x[n] (C, H*W): one GEMM per image on views, no copies
        np.matmul(w.reshape(K, C), x.reshape(N, C, H * W), out=y.reshape(N, K, H * W))
        y += b.reshape(1, K, 1, 1)
    elif path == "full":
        # y = xp (N, C*R*S) @ w (K, C*R*S).T + b; output is (N, K, 1, 1)
        xp = _padded(x, ph, pw)
        np.matmul(xp.reshape(N, -1), w.reshape(K, -1).T, out=y.reshape(N, K))
        y += b.reshape(1, K, 1, 1)
    else:
        _general_direct_forward(x, w, b, y, sh, sw, ph, pw)


def _general_direct_forward(x, w, b, y, sh, sw, ph, pw):
    """The direct loops, with the layout chosen by the channel counts and the batch size."""
    if w.shape[0] >= CHANNEL_LAST_MIN_CHANNELS:
        w2 = _forward_weight(w)
        tasks = min(get_num_threads(), y.shape[0] * y.shape[2])
        scratch = _WORKSPACE.get("rows", (tasks, y.shape[3], w2.shape[2]), x.dtype)
        conv2d_forward_channellast(_channel_last(x, ph, pw, "x"), w2, b, y, sh, sw, scratch)
    elif x.shape[0] >= BATCHLAST_MIN_BATCH:
        conv2d_forward_batchlast(_batch_last(x, "x"), w, b, y, sh, sw, ph, pw)
    else:
        conv2d_forward_direct(x, w, b, y, sh, sw, ph, pw)


def _direct_backward(dy, x, w, dx, dw, db, sh, sw, ph, pw):
    """Direct gradients (``dx`` None to skip it): a matrix-multiply fast path when :func:`_fast_path` finds one, else loops."""
    path = _fast_path(x.shape, w.shape, sh, sw, ph, pw)
    N, C, H, W = x.shape
    K = w.shape[0]
    if path == "1x1":
        conv2d_backward_bias(dy, db)
        dy3 = dy.reshape(N, K, H * W)
        x3 = x.reshape(N, C, H * W)
        # dw = sum_n dy[n] (K, H*W) @ x[n].T (H*W, C): N GEMMs on transposed views, then an (N, K, C) sum
        np.sum(np.matmul(dy3, x3.transpose(0, 2, 1)), axis=0, out=dw.reshape(K, C))
        if dx is not None:
            # dx[n] = w.T (C, K) @ dy[n] (K, H*W); a contiguous w.T is the faster GEMM operand
            np.matmul(np.ascontiguousarray(w.reshape(K, C).T), dy3, out=dx.reshape(N, C, H * W))
    elif path == "full":
        dy2 = dy.reshape(N, K)
        db[...] = dy2.sum(axis=0)
        xp = _padded(x, ph, pw)
        # dw (K, C*R*S) = dy.T (K, N) @ xp (N, C*R*S)
        np.matmul(dy2.T, xp.reshape(N, -1), out=dw.reshape(K, -1))
        if dx is not None:
            # dxp (N, C*R*S) = dy (N, K) @ w (K, C*R*S), then drop the padding
            dxp = (dy2 @ w.reshape(K, -1)).reshape(xp.shape)
            dx[...] = dxp[:, :, ph:ph + H, pw:pw + W]
    else:
        _general_direct_backward(dy, x, w, dx, dw, db, sh, sw, ph, pw)


def _general_direct_backward(dy, x, w, dx, dw, db, sh, sw, ph, pw):
    """The direct gradient loops, with the layout chosen per gradient by the channel counts and the batch size."""
    N, C = x.shape[0], x.shape[1]
    K, _, R, S = w.shape
    conv2d_backward_bias(dy, db)
    dyl = None
    if K >= CHANNEL_LAST_MIN_CHANNELS:
        dyl = _channel_last(dy, 0, 0, "dy")
        partial = _WORKSPACE.get("partial", (min(get_num_threads(), N), R, S * C, K), x.dtype)
        conv2d_backward_weight_channellast(_channel_last(x, ph, pw, "x"), dyl, dw, partial, sh, sw)
    elif N >= BATCHLAST_MIN_BATCH:
        conv2d_backward_weight_batchlast(_batch_last(dy, "dy"), _batch_last(x, "x"), dw, sh, sw, ph, pw)
    else:
        conv2d_backward_weight_direct(dy, x, dw, sh, sw, ph, pw)
    if dx is None:
        return
    # dx's channels are the input channels: the vector axis is C when there are enough, else the batch
    if C >= CHANNEL_LAST_MIN_CHANNELS:
        if dyl is None:
            dyl = _channel_last(dy, 0, 0, "dy")
        wt = np.zeros((R, S, K, -(-C // 8) * 8), dtype=w.dtype)  # columns padded to a multiple of 8
        wt[..., :C] = w.transpose(2, 3, 0, 1)
        hp, wp = input_grad_frame(dx.shape, dy.shape, (R, S), (sh, sw), (ph, pw))
        tasks = min(get_num_threads(), N * -(-C // DX_BLOCK))
        scratch = _WORKSPACE.get("frames", (tasks, hp, wp, DX_BLOCK), x.dtype)
        conv2d_backward_input_channellast(dyl, wt, dx, sh, sw, ph, pw, scratch)
    elif N >= BATCHLAST_MIN_BATCH:
        P, Q = dy.shape[2], dy.shape[3]
        nw, cw = -(-N // 8) * 8, -(-C // 4) * 4  # images to a multiple of 8, channels of 4: full-width blocks
        dyb = _WORKSPACE.get("dy_pixel", (P, Q, K, nw), x.dtype)
        to_pixel_batch_last(dy, dyb)
        wf = np.zeros((cw, R, S, K), dtype=w.dtype)
        wf[:C] = w.transpose(1, 2, 3, 0)[:, :, ::-1, :]  # wf[c, r, S-1-s, k] = w[k, c, r, s]
        tasks = min(get_num_threads(), dx.shape[2])
        scratch = _WORKSPACE.get("dx_rows", (tasks, cw, dx.shape[3], nw), x.dtype)
        conv2d_backward_input_batchlast(dyb, wf, dx, sh, sw, ph, pw, scratch)
    else:
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

    Two shapes skip the loops for one matrix multiply (BLAS), with the same result:
    a 1x1 kernel with stride 1 and no padding (``y[n] = w.reshape(K, C) @
    x[n].reshape(C, H*W) + b``, on views, no copies), and a kernel exactly as
    large as the padded input (``R == H + 2*ph``, ``S == W + 2*pw``: output 1x1,
    ``y = xp.reshape(N, C*R*S) @ w.reshape(K, C*R*S).T + b``, a fully connected
    layer written as a convolution; ``xp`` is a padded copy when padding > 0).
    Other shapes run the NCHW loops (batch < 8) or the batch-last kernels.

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

    The same two shapes as :func:`conv2d_forward` take matrix multiplies: 1x1,
    stride 1, no padding: ``dx[n] = w.reshape(K, C).T @ dy[n]`` and
    ``dw = sum_n dy[n] @ x[n].T`` (over (K, H*W) and (C, H*W) views); kernel as
    large as the padded input: ``dw = dy.reshape(N, K).T @ xp.reshape(N, C*R*S)``
    and ``dx`` the interior of ``dy.reshape(N, K) @ w.reshape(K, C*R*S)``.

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


# --------------------------------------------------------------------------- locally connected


def locally_connected2d_output_shape(x_shape, w_shape, stride=1, padding=0, fn="locally_connected2d"):
    """Output shape (N, K, P, Q) of a locally connected layer, after checking the geometry.

    ``w_shape`` is (P, Q, K, C, R, S); ``P = floor((H + 2*ph - R) / sh) + 1`` (Q
    likewise) must equal the weight's first two axes.
    """
    if len(w_shape) != 6:
        raise ValueError(f"{fn}: weight must have 6 dimensions (P, Q, K, C, R, S), got shape {tuple(w_shape)}")
    P, Q, K, C, R, S = w_shape
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
    kh, kw, sh, sw, ph, pw = geometry
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0) and 2 * out_shape[2] <= x.shape[2] \
            and 2 * out_shape[3] <= x.shape[3]:
        max_pool2d_2x2_forward_kernel(x, y, argmax)  # the common case, vectorised
    else:
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
    dx = np.empty(x_shape, dtype=dy.dtype)
    # the kernel skips (and counts) indices outside the plane: checked there, in the same pass
    if max_pool2d_backward_kernel(dy, np.ascontiguousarray(argmax, dtype=np.int64), dx):
        plane = x_shape[2] * x_shape[3]
        raise ValueError(f"{fn}: argmax values must be in [0, {plane}) for x_shape {x_shape}")
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


def _slope(negative_slope, fn):
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real) \
            or not np.isfinite(negative_slope):
        raise ValueError(f"{fn}: negative_slope must be a finite real number, got {negative_slope!r}")
    return float(negative_slope)


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


# --------------------------------------------------------------------------- batch normalisation


def _channel_vector(a, name, C, dtype, fn, default=None):
    """A (C,) array of ``dtype``, or ``default`` filled in when ``a`` is None."""
    if a is None:
        if default is None:
            return None
        return np.full(C, default, dtype=dtype)
    a = as_float_array(a, name, fn, ndim=1, dtype=dtype)
    if a.shape[0] != C:
        raise ValueError(f"{fn}: {name} has {a.shape[0]} entries but the input has {C} channels "
                         f"(num_features); {name} must have shape ({C},)")
    return a


def _norm_scalars(momentum, eps, fn):
    for name, value in (("momentum", momentum), ("eps", eps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
            raise ValueError(f"{fn}: {name} must be a finite real number, got {value!r}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{fn}: momentum must be in [0, 1], got {momentum!r}")
    if eps <= 0:
        raise ValueError(f"{fn}: eps must be positive, got {eps!r}")
    return float(momentum), float(eps)


def _as_3d(x, fn, ndim):
    """x as a float array viewed (N, C, L): 4-D (N, C, H, W) -> (N, C, H*W); 2-D (N, C) -> (N, C, 1)."""
    x = as_float_array(x, "x", fn, ndim=ndim)
    if x.shape[0] == 0 or x.shape[1] == 0 or x.size == 0:
        raise ValueError(f"{fn}: x must not be empty, got shape {x.shape}")
    return x, x.reshape(x.shape[0], x.shape[1], -1)


def _batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, fn, ndim):
    momentum, eps = _norm_scalars(momentum, eps, fn)
    x, x3 = _as_3d(x, fn, ndim)
    N, C, L = x3.shape
    dtype = x.dtype
    weight = _channel_vector(weight, "weight", C, dtype, fn, default=1)
    bias = _channel_vector(bias, "bias", C, dtype, fn, default=0)
    stats = []
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        if a is None:
            stats.append(None)
            continue
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
            raise TypeError(f"{fn}: {name} must be a C-contiguous numpy array (it is updated in place), "
                            f"got {type(a).__name__}")
        stats.append(_channel_vector(a, name, C, dtype, fn))
    running_mean, running_var = stats
    y = np.empty(x.shape, dtype=dtype)
    if training:
        M = N * L
        if M < 2:
            raise ValueError(f"{fn}: training needs more than 1 value per channel to estimate a variance, "
                             f"got input shape {x.shape}; use a larger batch or eval mode")
        mean = np.empty(C, dtype=dtype)
        var = np.empty(C, dtype=dtype)
        inv_std = np.empty(C, dtype=dtype)
        batch_norm_forward_train_kernel(x3, weight, bias, eps, y.reshape(x3.shape), mean, var, inv_std)
        m = dtype.type(momentum)
        keep = dtype.type(1.0 - momentum)
        if running_mean is not None:
            running_mean *= keep
            running_mean += m * mean
        if running_var is not None:
            running_var *= keep
            running_var += (m * dtype.type(M / (M - 1))) * var
        return y, mean, inv_std
    if running_mean is None or running_var is None:
        raise ValueError(f"{fn}: eval mode (training=False) needs running_mean and running_var")
    mean = running_mean.copy()
    inv_std = (dtype.type(1) / np.sqrt(running_var + dtype.type(eps))).astype(dtype)
    batch_norm_forward_eval_kernel(x3, weight, bias, mean, inv_std, y.reshape(x3.shape))
    return y, mean, inv_std


def _batch_norm_backward(dy, x, weight, mean, inv_std, training, fn, ndim):
    x, x3 = _as_3d(x, fn, ndim)
    dy = as_float_array(dy, "dy", fn, dtype=x.dtype)
    check_shape(dy, x.shape, "dy", fn)
    N, C, L = x3.shape
    weight = _channel_vector(weight, "weight", C, x.dtype, fn, default=1)
    mean = _channel_vector(mean, "mean", C, x.dtype, fn)
    inv_std = _channel_vector(inv_std, "inv_std", C, x.dtype, fn)
    if mean is None or inv_std is None:
        raise TypeError(f"{fn}: mean and inv_std must be the arrays returned by the forward function, got None")
    dx = np.empty(x.shape, dtype=x.dtype)
    dweight = np.empty(C, dtype=x.dtype)
    dbias = np.empty(C, dtype=x.dtype)
    batch_norm_backward_kernel(dy.reshape(x3.shape), x3, weight, mean, inv_std, bool(training),
                               dx.reshape(x3.shape), dweight, dbias)
    return dx, dweight, dbias


def batch_norm2d_forward(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, H, W) for each channel, as PyTorch's ``F.batch_norm``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel.  In
    training mode mean and var are the batch mean and the biased batch variance
    over the ``M = N*H*W`` values of each channel, and the running statistics
    are updated in place::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)

    (the unbiased variance goes into the running estimate).  In eval mode
    mean and var are ``running_mean`` and ``running_var``, left unchanged.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    weight, bias : ndarray (C,) of x's dtype, or None (no scale / no shift)
    running_mean, running_var : ndarray (C,) of x's dtype, C-contiguous, or None
        Updated in place in training mode (None skips the update); required
        in eval mode.
    training : bool
    momentum : float in [0, 1]
    eps : float > 0

    Returns
    -------
    y : ndarray, (N, C, H, W), dtype of x
    mean : ndarray (C,)
        The mean used: the batch mean (training) or a copy of running_mean (eval).
    inv_std : ndarray (C,)
        ``1 / sqrt(var + eps)`` of the variance used.  Pass ``mean`` and
        ``inv_std`` to :func:`batch_norm2d_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import batch_norm2d_forward
    >>> x = np.array([1.0, 3.0]).reshape(2, 1, 1, 1)
    >>> rm, rv = np.zeros(1), np.ones(1)
    >>> y, mean, inv_std = batch_norm2d_forward(x, None, None, rm, rv)
    >>> y.ravel().round(4), mean, rm, rv
    (array([-1.,  1.]), array([2.]), array([0.2]), array([1.1]))
    """
    return _batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                               "batch_norm2d_forward", 4)


def batch_norm2d_backward(dy, x, weight, mean, inv_std, training=True):
    """Gradients of :func:`batch_norm2d_forward` with respect to x, weight and bias.

    With ``xhat = (x - mean) * inv_std`` and sums over each channel's
    ``M = N*H*W`` values: ``dbias = sum(dy)``, ``dweight = sum(dy * xhat)``;
    in training mode (batch statistics, which depend on x)
    ``dx = weight * inv_std / M * (M*dy - sum(dy) - xhat * sum(dy * xhat))``,
    in eval mode (fixed running statistics) ``dx = dy * weight * inv_std``.

    Parameters
    ----------
    dy, x : ndarray, (N, C, H, W), same dtype
    weight : ndarray (C,) or None (as 1)
    mean, inv_std : ndarray (C,), as returned by the forward call
    training : bool
        The mode the forward call ran in.

    Returns
    -------
    dx : ndarray (N, C, H, W)
    dweight, dbias : ndarray (C,)
        Returned even when there is no affine transform (then ignore them).
    """
    return _batch_norm_backward(dy, x, weight, mean, inv_std, training, "batch_norm2d_backward", 4)


def batch_norm1d_forward(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation of features: x (N, C) or (N, C, L), statistics over N (and L) per channel.

    Same rule, arguments and returns as :func:`batch_norm2d_forward` with
    ``M = N`` (or ``N*L``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import batch_norm1d_forward
    >>> y, mean, inv_std = batch_norm1d_forward(np.array([[0.0], [4.0]]), None, None, None, None)
    >>> y.ravel().round(4), mean
    (array([-1.,  1.]), array([2.]))
    """
    return _batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                               "batch_norm1d_forward", (2, 3))


def batch_norm1d_backward(dy, x, weight, mean, inv_std, training=True):
    """Gradients of :func:`batch_norm1d_forward`; see :func:`batch_norm2d_backward` (x (N, C) or (N, C, L))."""
    return _batch_norm_backward(dy, x, weight, mean, inv_std, training, "batch_norm1d_backward", (2, 3))


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
