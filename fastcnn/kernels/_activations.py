"""Raw elementwise activation kernels on flat (1-D) arrays: caller-allocated outputs, no checks.

The checked functions pass ``a.reshape(-1)`` views, so one kernel serves any shape.
Backward kernels take the forward output ``y`` where the derivative is cheaper
from it (sigmoid: y(1 - y); tanh: 1 - y^2) and the input ``x`` for ReLU.
The elementwise kernels run in equal tasks, 4 per thread (:func:`chunk_count`), the softmax
kernels one task per row (:func:`fastcnn.kernels._tasks.parallel_tasks`).
"""

import numpy as np

from ..config import njit
from ._tasks import parallel_tasks, task, task_threads

#: The fewest elements per task of the elementwise kernels.
MIN_CHUNK = 1024


@njit(inline="always")
def chunk_count(m):
    """The tasks an elementwise kernel splits ``m`` elements into: 4 per thread, equal (as a ``prange`` would
    split them), or fewer of at least :data:`MIN_CHUNK` elements."""
    return min(4 * task_threads(), (m + MIN_CHUNK - 1) // MIN_CHUNK)


@njit(inline="always")
def chunk(m, count, t):
    """Elements ``[lo, hi)`` of task ``t`` of ``count`` over ``m`` elements."""
    return t * m // count, (t + 1) * m // count


@task("r1 a1 i i")
def _relu_forward_chunk(x, y, count, t):
    """Task t of count (:func:`chunk`) of :func:`relu_forward_kernel`."""
    zero = y.dtype.type(0)
    lo, hi = chunk(x.shape[0], count, t)
    x_, y_ = x[lo:hi], y[lo:hi]  # from index 0: no wraparound test, so the loop vectorises
    for i in range(hi - lo):
        v = x_[i]
        y_[i] = zero if v < zero else v


_relu_forward_chunks = parallel_tasks(_relu_forward_chunk)


@njit
def relu_forward_kernel(x, y):
    """y = max(x, 0) elementwise (NaN propagates).

    Parameters
    ----------
    x : (M,) float array, read (a flat view, ``a.reshape(-1)``, of any shape)
    y : (M,) array of x's dtype, written in full
    """
    count = chunk_count(x.shape[0])
    _relu_forward_chunks(count, x, y, count)


@task("r1 r1 a1 i i")
def _relu_backward_chunk(dy, x, dx, count, t):
    """Task t of count (:func:`chunk`) of :func:`relu_backward_kernel`."""
    zero = dx.dtype.type(0)
    lo, hi = chunk(x.shape[0], count, t)
    dx_, dy_, x_ = dx[lo:hi], dy[lo:hi], x[lo:hi]  # from index 0: no wraparound test, so the loop vectorises
    for i in range(hi - lo):
        dx_[i] = dy_[i] if x_[i] > zero else zero


_relu_backward_chunks = parallel_tasks(_relu_backward_chunk)


@njit
def relu_backward_kernel(dy, x, dx):
    """dx = dy where x > 0, else 0.

    Parameters
    ----------
    dy : (M,) float array, read (a flat view of the output gradient)
    x : (M,) array of dy's dtype, read (the forward input, flat)
    dx : (M,) array of dy's dtype, written in full
    """
    count = chunk_count(x.shape[0])
    _relu_backward_chunks(count, dy, x, dx, count)


@task("r1 r1 a1 b i i")
def _residual_add_chunk(a, b, y, relu, count, t):
    """Task t of count (:func:`chunk`) of :func:`residual_add_kernel`."""
    zero = y.dtype.type(0)
    lo, hi = chunk(y.shape[0], count, t)
    a_, b_, y_ = a[lo:hi], b[lo:hi], y[lo:hi]  # from index 0: no wraparound test, so the loops vectorise
    if relu:
        for i in range(hi - lo):
            v = a_[i] + b_[i]
            y_[i] = zero if v < zero else v
    else:
        for i in range(hi - lo):
            y_[i] = a_[i] + b_[i]


_residual_add_chunks = parallel_tasks(_residual_add_chunk)


@njit
def residual_add_kernel(a, b, y, relu):
    """y = a + b elementwise, then ``max(., 0)`` when ``relu`` (a residual block's sum and the ReLU after it).

    Parameters
    ----------
    a, b : (M,) float arrays of one dtype, read (flat views)
    y : (M,) array of a's dtype, written in full (may be ``a`` or ``b`` itself)
    relu : bool
        Apply :func:`relu_forward_kernel`'s rule to the sum in the same pass.
    """
    count = chunk_count(y.shape[0])
    _residual_add_chunks(count, a, b, y, relu, count)


@task("r1 a1 i i")
def _sigmoid_forward_chunk(x, y, count, t):
    """Task t of count (:func:`chunk`) of :func:`sigmoid_forward_kernel`."""
    one = y.dtype.type(1)
    lo, hi = chunk(x.shape[0], count, t)
    x_, y_ = x[lo:hi], y[lo:hi]  # from index 0: no wraparound test, so the loop vectorises
    for i in range(hi - lo):
        v = x_[i]
        if v >= 0:
            y_[i] = one / (one + np.exp(-v))
        else:
            e = np.exp(v)
            y_[i] = e / (one + e)


_sigmoid_forward_chunks = parallel_tasks(_sigmoid_forward_chunk)


@njit
def sigmoid_forward_kernel(x, y):
    """y = 1 / (1 + exp(-x)), written so that exp never overflows.

    Parameters
    ----------
    x : (M,) float array, read (a flat view, ``a.reshape(-1)``, of any shape)
    y : (M,) array of x's dtype, written in full
    """
    count = chunk_count(x.shape[0])
    _sigmoid_forward_chunks(count, x, y, count)


@task("r1 r1 a1 i i")
def _sigmoid_backward_chunk(dy, y, dx, count, t):
    """Task t of count (:func:`chunk`) of :func:`sigmoid_backward_kernel`."""
    one = dx.dtype.type(1)
    lo, hi = chunk(y.shape[0], count, t)
    dx_, dy_, y_ = dx[lo:hi], dy[lo:hi], y[lo:hi]  # from index 0: no wraparound test, so the loop vectorises
    for i in range(hi - lo):
        dx_[i] = dy_[i] * y_[i] * (one - y_[i])


_sigmoid_backward_chunks = parallel_tasks(_sigmoid_backward_chunk)


@njit
def sigmoid_backward_kernel(dy, y, dx):
    """dx = dy * y * (1 - y), from the forward output y.

    Parameters
    ----------
    dy : (M,) float array, read (a flat view of the output gradient)
    y : (M,) array of dy's dtype, read (the forward output, flat)
    dx : (M,) array of dy's dtype, written in full
    """
    count = chunk_count(y.shape[0])
    _sigmoid_backward_chunks(count, dy, y, dx, count)


@task("r1 a1 i i")
def _tanh_forward_chunk(x, y, count, t):
    """Task t of count (:func:`chunk`) of :func:`tanh_forward_kernel`."""
    lo, hi = chunk(x.shape[0], count, t)
    x_, y_ = x[lo:hi], y[lo:hi]  # from index 0: no wraparound test, so the loop vectorises
    for i in range(hi - lo):
        y_[i] = np.tanh(x_[i])


_tanh_forward_chunks = parallel_tasks(_tanh_forward_chunk)


@njit
def tanh_forward_kernel(x, y):
    """y = tanh(x).

    Parameters
    ----------
    x : (M,) float array, read (a flat view, ``a.reshape(-1)``, of any shape)
    y : (M,) array of x's dtype, written in full
    """
    count = chunk_count(x.shape[0])
    _tanh_forward_chunks(count, x, y, count)


@task("r1 r1 a1 i i")
def _tanh_backward_chunk(dy, y, dx, count, t):
    """Task t of count (:func:`chunk`) of :func:`tanh_backward_kernel`."""
    one = dx.dtype.type(1)
    lo, hi = chunk(y.shape[0], count, t)
    dx_, dy_, y_ = dx[lo:hi], dy[lo:hi], y[lo:hi]  # from index 0: no wraparound test, so the loop vectorises
    for i in range(hi - lo):
        dx_[i] = dy_[i] * (one - y_[i] * y_[i])


_tanh_backward_chunks = parallel_tasks(_tanh_backward_chunk)


@njit
def tanh_backward_kernel(dy, y, dx):
    """dx = dy * (1 - y^2), from the forward output y.

    Parameters
    ----------
    dy : (M,) float array, read (a flat view of the output gradient)
    y : (M,) array of dy's dtype, read (the forward output, flat)
    dx : (M,) array of dy's dtype, written in full
    """
    count = chunk_count(y.shape[0])
    _tanh_backward_chunks(count, dy, y, dx, count)


@task("r1 f a1 i i")
def _leaky_relu_forward_chunk(x, negative_slope, y, count, t):
    """Task t of count (:func:`chunk`) of :func:`leaky_relu_forward_kernel`."""
    zero = y.dtype.type(0)
    slope = y.dtype.type(negative_slope)
    lo, hi = chunk(x.shape[0], count, t)
    x_, y_ = x[lo:hi], y[lo:hi]  # from index 0: no wraparound test, so the loop vectorises
    for i in range(hi - lo):
        v = x_[i]
        y_[i] = v if v > zero else v * slope


_leaky_relu_forward_chunks = parallel_tasks(_leaky_relu_forward_chunk)


@njit
def leaky_relu_forward_kernel(x, negative_slope, y):
    """y = x if x > 0 else negative_slope * x (NaN propagates); the slope is cast to y's dtype.

    Parameters
    ----------
    x : (M,) float array, read (a flat view, ``a.reshape(-1)``, of any shape)
    negative_slope : float
        Cast to y's dtype.
    y : (M,) array of x's dtype, written in full
    """
    count = chunk_count(x.shape[0])
    _leaky_relu_forward_chunks(count, x, negative_slope, y, count)


@task("r1 r1 f a1 i i")
def _leaky_relu_backward_chunk(dy, x, negative_slope, dx, count, t):
    """Task t of count (:func:`chunk`) of :func:`leaky_relu_backward_kernel`."""
    zero = dx.dtype.type(0)
    slope = dx.dtype.type(negative_slope)
    lo, hi = chunk(x.shape[0], count, t)
    dx_, dy_, x_ = dx[lo:hi], dy[lo:hi], x[lo:hi]  # from index 0: no wraparound test, so the loop vectorises
    for i in range(hi - lo):
        g = dy_[i]
        dx_[i] = g if x_[i] > zero else g * slope


_leaky_relu_backward_chunks = parallel_tasks(_leaky_relu_backward_chunk)


@njit
def leaky_relu_backward_kernel(dy, x, negative_slope, dx):
    """dx = dy where x > 0, else negative_slope * dy (PyTorch's choice at x == 0).

    Parameters
    ----------
    dy : (M,) float array, read (a flat view of the output gradient)
    x : (M,) array of dy's dtype, read (the forward input, flat)
    negative_slope : float
        Cast to dx's dtype.
    dx : (M,) array of dy's dtype, written in full
    """
    count = chunk_count(x.shape[0])
    _leaky_relu_backward_chunks(count, dy, x, negative_slope, dx, count)


@task("r2 a2 i")
def _softmax_forward_row(x, y, n):
    """Row ``n`` of :func:`softmax_forward_kernel`."""
    K = x.shape[1]
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    top = x[n, 0]
    for k in range(1, K):
        v = x[n, k]
        top = v if v > top else top
    total = zero
    for k in range(K):
        e = np.exp(x[n, k] - top)
        y[n, k] = e
        total += e
    inv = one / total
    for k in range(K):
        y[n, k] *= inv


_softmax_forward_rows = parallel_tasks(_softmax_forward_row)


@njit
def softmax_forward_kernel(x, y):
    """Row-wise softmax of x (N, K) into y (N, K): ``exp(x - max) / sum(exp(x - max))``.

    Subtracting the row maximum keeps exp from overflowing; one task per row.

    Parameters
    ----------
    x : (N, K) float array, read (one row per sample, K >= 1)
    y : (N, K) array of x's dtype, written in full
    """
    _softmax_forward_rows(x.shape[0], x, y)


@task("r2 r2 a2 i")
def _softmax_backward_row(dy, y, dx, n):
    """Row ``n`` of :func:`softmax_backward_kernel`."""
    K = y.shape[1]
    zero = dx.dtype.type(0)
    dot = zero
    for k in range(K):
        dot += dy[n, k] * y[n, k]
    for k in range(K):
        dx[n, k] = y[n, k] * (dy[n, k] - dot)


_softmax_backward_rows = parallel_tasks(_softmax_backward_row)


@njit
def softmax_backward_kernel(dy, y, dx):
    """Softmax gradient per row from the forward output: ``dx = y * (dy - sum(dy * y))``. All (N, K).

    The sum runs over each row's K classes.

    Parameters
    ----------
    dy : (N, K) float array, read
    y : (N, K) array of dy's dtype, read (the forward output)
    dx : (N, K) array of dy's dtype, written in full
    """
    _softmax_backward_rows(y.shape[0], dy, y, dx)
