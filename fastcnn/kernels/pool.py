"""Checked pooling: max, average, global average and global max, forward and backward side by side.

Shape vocabulary: x (N, C, H, W), y, dy and argmax (N, C, P, Q); window
(kh, kw), stride (sh, sw), padding (ph, pw).  The global poolings' y, dy and
argmax are (N, C).
"""

import numpy as np

from .._shapes import pool_output_size
from ._checks import (as_float_array, check_flag, check_shape, check_x_shape, nonnegative_pair, positive_pair,
                      shape_ints)
from ._pool import (
    avg_pool2d_backward_kernel,
    avg_pool2d_forward_kernel,
    global_avg_pool2d_backward_kernel,
    global_avg_pool2d_forward_kernel,
    global_max_pool2d_backward_kernel,
    global_max_pool2d_forward_kernel,
    max_pool2d_2x2_forward_kernel,
    max_pool2d_backward_kernel,
    max_pool2d_forward_kernel,
)


def _check_plane(x, fn, what):
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{fn}: the input's planes are empty ({x.shape[2]}x{x.shape[3]}); "
                         f"the {what} needs at least one pixel")


def _argmax_like(argmax, dy, fn):
    """``argmax`` as a contiguous int64 array of dy's shape (the backward kernels' index argument)."""
    argmax = np.asarray(argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"{fn}: argmax must be an integer array, got dtype {argmax.dtype}")
    check_shape(argmax, dy.shape, "argmax", fn)
    return np.ascontiguousarray(argmax, dtype=np.int64)


def _argmax_out_of_plane(x_shape, fn):
    """Raise for argmax values the backward kernel found outside an H x W plane (it skipped and counted them)."""
    plane = x_shape[2] * x_shape[3]
    raise ValueError(f"{fn}: argmax values must be in [0, {plane}) for x_shape {x_shape}")


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
    N, C, H, W = shape_ints(x_shape, fn, minimum=0)
    ceil_mode = check_flag(ceil_mode, "ceil_mode", fn)
    if H == 0 or W == 0:  # every window would lie in the padding: no element to take the maximum or mean of
        raise ValueError(f"{fn}: the input's planes are empty ({H}x{W}); pooling needs at least one pixel")
    if kh > H + 2 * ph or kw > W + 2 * pw:
        raise ValueError(
            f"{fn}: kernel_size {(kh, kw)} is larger than the padded input "
            f"{H + 2 * ph}x{W + 2 * pw} (input {H}x{W}, padding {(ph, pw)})"
        )
    P = pool_output_size(H, kh, sh, ph, ceil_mode)
    Q = pool_output_size(W, kw, sw, pw, ceil_mode)
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
    return max_pool2d_run(x, *pool2d_output_shape(x.shape, kernel_size, stride, padding, ceil_mode, fn))


def max_pool2d_run(x, out_shape, geometry):
    """:func:`max_pool2d_forward` without the checks, for layers that checked x's shape once.

    ``x`` is a C-contiguous float32 or float64 array and ``(out_shape,
    geometry)`` is what :func:`pool2d_output_shape` returned for its shape.
    """
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
    argmax = _argmax_like(argmax, dy, fn)
    if dy.shape[:2] != x_shape[:2]:
        raise ValueError(f"{fn}: dy shape {dy.shape} does not match x_shape {x_shape} in N and C")
    dx = np.empty(x_shape, dtype=dy.dtype)
    # the kernel skips (and counts) indices outside the plane: checked there, in the same pass
    if max_pool2d_backward_kernel(dy, argmax, dx):
        _argmax_out_of_plane(x_shape, fn)
    return dx


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling forward, with PyTorch's divisor rule.

    The window of output (p, q) starts at ``(i0, j0) = (p*sh - ph, q*sw - pw)``
    and is clipped to the padded input: ``i_end = min(i0 + kh, H + ph)``,
    ``j_end = min(j0 + kw, W + pw)``.  The sum runs over the input pixels in
    it; the divisor is

    * ``count_include_pad=True`` (the default): ``(i_end - i0) * (j_end - j0)``,
      the zero padding included; smaller than ``kh*kw`` only for a ceil-mode
      window hanging past the padding;
    * ``count_include_pad=False``: the number of input pixels in the window,
      ``(min(i_end, H) - max(i0, 0)) * (min(j_end, W) - max(j0, 0))``, so
      the output is the mean of the pixels the window covers.

    Parameters
    ----------
    x, kernel_size, stride, padding, ceil_mode
        As :func:`max_pool2d_forward`.
    count_include_pad : bool
        Whether the zero padding counts in the divisor (1 and 0 are taken
        for True and False; other values raise TypeError).

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
    >>> ones = np.ones((1, 1, 2, 2))
    >>> avg_pool2d_forward(ones, 2, padding=1)[0, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    >>> avg_pool2d_forward(ones, 2, padding=1, count_include_pad=False)[0, 0]
    array([[1., 1.],
           [1., 1.]])
    """
    fn = "avg_pool2d_forward"
    x = as_float_array(x, "x", fn, ndim=4)
    count_include_pad = check_flag(count_include_pad, "count_include_pad", fn)
    out_shape, geometry = pool2d_output_shape(x.shape, kernel_size, stride, padding, ceil_mode, fn)
    y = np.empty(out_shape, dtype=x.dtype)
    avg_pool2d_forward_kernel(x, y, *geometry, count_include_pad)
    return y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling backward: each gradient is spread evenly over its window.

    ``dx[n, c, i, j]`` is the sum of ``dy[n, c, p, q] / divisor(p, q)`` over
    the windows that contain input pixel (i, j).  Arguments as
    :func:`avg_pool2d_forward`, with ``dy`` (N, C, P, Q) and the input's
    shape instead of the input.

    Returns
    -------
    dx : ndarray, x_shape, dtype of dy
    """
    fn = "avg_pool2d_backward"
    dy = as_float_array(dy, "dy", fn, ndim=4)
    x_shape = check_x_shape(x_shape, fn)
    count_include_pad = check_flag(count_include_pad, "count_include_pad", fn)
    out_shape, geometry = pool2d_output_shape(x_shape, kernel_size, stride, padding, ceil_mode, fn)
    check_shape(dy, out_shape, "dy", fn)
    dx = np.empty(x_shape, dtype=dy.dtype)
    avg_pool2d_backward_kernel(dy, dx, *geometry, count_include_pad)
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
    _check_plane(x, fn, "mean")
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


def global_max_pool2d_forward(x):
    """Maximum over each channel's H x W plane: (N, C, H, W) -> (N, C), and where it came from.

    The rule of :func:`max_pool2d_forward` with one window covering the
    plane: on ties the first maximum in row-major order wins, and a NaN wins
    (the first one).  ``y`` is (N, C), as :func:`global_avg_pool2d_forward`'s;
    PyTorch's ``adaptive_max_pool2d(x, 1)`` is ``y.reshape(N, C, 1, 1)``.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64, H and W at least 1

    Returns
    -------
    y : ndarray, (N, C), dtype of x
    argmax : ndarray, (N, C), int64
        Flat index ``i*W + j`` of the winning element within its (H, W) plane.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import global_max_pool2d_forward
    >>> global_max_pool2d_forward(np.array([[[[1.0, 3.0], [3.0, 2.0]], [[-1.0, -5.0], [0.5, 0.5]]]]))
    (array([[3. , 0.5]]), array([[1, 2]]))
    """
    fn = "global_max_pool2d_forward"
    x = as_float_array(x, "x", fn, ndim=4)
    _check_plane(x, fn, "maximum")
    y = np.empty(x.shape[:2], dtype=x.dtype)
    argmax = np.empty(x.shape[:2], dtype=np.int64)
    global_max_pool2d_forward_kernel(x, y, argmax)
    return y, argmax


def global_max_pool2d_backward(dy, argmax, x_shape):
    """Global max pooling backward: dy[n, c] goes to the element that won plane (n, c); the rest is zero.

    Parameters
    ----------
    dy : ndarray, (N, C)
    argmax : ndarray, (N, C), integer, from :func:`global_max_pool2d_forward`
    x_shape : (N, C, H, W)

    Returns
    -------
    dx : ndarray, x_shape, dtype of dy
    """
    fn = "global_max_pool2d_backward"
    dy = as_float_array(dy, "dy", fn, ndim=2)
    x_shape = check_x_shape(x_shape, fn)
    check_shape(dy, x_shape[:2], "dy", fn)
    argmax = _argmax_like(argmax, dy, fn)
    dx = np.empty(x_shape, dtype=dy.dtype)
    if global_max_pool2d_backward_kernel(dy, argmax, dx):
        _argmax_out_of_plane(x_shape, fn)
    return dx
