"""Raw elementwise activation kernels on flat (1-D) arrays: caller-allocated outputs, no checks.

The checked functions pass ``a.reshape(-1)`` views, so one kernel serves any shape.
Backward kernels take the forward output ``y`` where the derivative is cheaper
from it (sigmoid: y(1 - y); tanh: 1 - y^2) and the input ``x`` for ReLU.
The elementwise kernels run in tasks of :data:`CHUNK` elements, the softmax
kernels one task per row (:func:`fastcnn.kernels._tasks.parallel_tasks`).
"""

import numpy as np

from ..config import njit
from ._tasks import parallel_tasks, task

#: Elements per task of the elementwise kernels (16 KiB of float32).
CHUNK = 4096


@njit(inline="always")
def chunk_count(m):
    """The number of tasks an elementwise kernel splits ``m`` elements into."""
    return (m + CHUNK - 1) // CHUNK


@task("r1 a1 i")
def _relu_forward_chunk(x, y, t):
    """Elements ``t*CHUNK`` to ``(t+1)*CHUNK - 1`` (those there are) of :func:`relu_forward_kernel`."""
    zero = y.dtype.type(0)
    for i in range(t * CHUNK, min((t + 1) * CHUNK, x.shape[0])):
        v = x[i]
        y[i] = zero if v < zero else v


_relu_forward_chunks = parallel_tasks(_relu_forward_chunk)


@njit
def relu_forward_kernel(x, y):
    """y = max(x, 0) elementwise (NaN propagates).

    Parameters
    ----------
    x : (M,) float array, read (a flat view, ``a.reshape(-1)``, of any shape)
    y : (M,) array of x's dtype, written in full
    """
    _relu_forward_chunks(chunk_count(x.shape[0]), x, y)


@task("r1 r1 a1 i")
def _relu_backward_chunk(dy, x, dx, t):
    """Elements ``t*CHUNK`` to ``(t+1)*CHUNK - 1`` (those there are) of :func:`relu_backward_kernel`."""
    zero = dx.dtype.type(0)
    for i in range(t * CHUNK, min((t + 1) * CHUNK, x.shape[0])):
        dx[i] = dy[i] if x[i] > zero else zero


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
    _relu_backward_chunks(chunk_count(x.shape[0]), dy, x, dx)


@task("r1 r1 a1 b i")
def _residual_add_chunk(a, b, y, relu, t):
    """Elements ``t*CHUNK`` to ``(t+1)*CHUNK - 1`` (those there are) of :func:`residual_add_kernel`."""
    zero = y.dtype.type(0)
    hi = min((t + 1) * CHUNK, y.shape[0])
    if relu:
        for i in range(t * CHUNK, hi):
            v = a[i] + b[i]
            y[i] = zero if v < zero else v
    else:
        for i in range(t * CHUNK, hi):
            y[i] = a[i] + b[i]


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
    _residual_add_chunks(chunk_count(y.shape[0]), a, b, y, relu)


@task("r1 a1 i")
def _sigmoid_forward_chunk(x, y, t):
    """Elements ``t*CHUNK`` to ``(t+1)*CHUNK - 1`` (those there are) of :func:`sigmoid_forward_kernel`."""
    one = y.dtype.type(1)
    for i in range(t * CHUNK, min((t + 1) * CHUNK, x.shape[0])):
        v = x[i]
        if v >= 0:
            y[i] = one / (one + np.exp(-v))
        else:
            e = np.exp(v)
            y[i] = e / (one + e)


_sigmoid_forward_chunks = parallel_tasks(_sigmoid_forward_chunk)


@njit
def sigmoid_forward_kernel(x, y):
    """y = 1 / (1 + exp(-x)), written so that exp never overflows.

    Parameters
    ----------
    x : (M,) float array, read (a flat view, ``a.reshape(-1)``, of any shape)
    y : (M,) array of x's dtype, written in full
    """
    _sigmoid_forward_chunks(chunk_count(x.shape[0]), x, y)


@task("r1 r1 a1 i")
def _sigmoid_backward_chunk(dy, y, dx, t):
    """Elements ``t*CHUNK`` to ``(t+1)*CHUNK - 1`` (those there are) of :func:`sigmoid_backward_kernel`."""
    one = dx.dtype.type(1)
    for i in range(t * CHUNK, min((t + 1) * CHUNK, y.shape[0])):
        dx[i] = dy[i] * y[i] * (one - y[i])


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
    _sigmoid_backward_chunks(chunk_count(y.shape[0]), dy, y, dx)


@task("r1 a1 i")
def _tanh_forward_chunk(x, y, t):
    """Elements ``t*CHUNK`` to ``(t+1)*CHUNK - 1`` (those there are) of :func:`tanh_forward_kernel`."""
    for i in range(t * CHUNK, min((t + 1) * CHUNK, x.shape[0])):
        y[i] = np.tanh(x[i])


_tanh_forward_chunks = parallel_tasks(_tanh_forward_chunk)


@njit
def tanh_forward_kernel(x, y):
    """y = tanh(x).

    Parameters
    ----------
    x : (M,) float array, read (a flat view, ``a.reshape(-1)``, of any shape)
    y : (M,) array of x's dtype, written in full
    """
    _tanh_forward_chunks(chunk_count(x.shape[0]), x, y)


@task("r1 r1 a1 i")
def _tanh_backward_chunk(dy, y, dx, t):
    """Elements ``t*CHUNK`` to ``(t+1)*CHUNK - 1`` (those there are) of :func:`tanh_backward_kernel`."""
    one = dx.dtype.type(1)
    for i in range(t * CHUNK, min((t + 1) * CHUNK, y.shape[0])):
        dx[i] = dy[i] * (one - y[i] * y[i])


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
    _tanh_backward_chunks(chunk_count(y.shape[0]), dy, y, dx)


@task("r1 f a1 i")
def _leaky_relu_forward_chunk(x, negative_slope, y, t):
    """Elements ``t*CHUNK`` to ``(t+1)*CHUNK - 1`` (those there are) of :func:`leaky_relu_forward_kernel`."""
    zero = y.dtype.type(0)
    slope = y.dtype.type(negative_slope)
    for i in range(t * CHUNK, min((t + 1) * CHUNK, x.shape[0])):
        v = x[i]
        y[i] = v if v > zero else v * slope


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
    _leaky_relu_forward_chunks(chunk_count(x.shape[0]), x, negative_slope, y)


@task("r1 r1 f a1 i")
def _leaky_relu_backward_chunk(dy, x, negative_slope, dx, t):
    """Elements ``t*CHUNK`` to ``(t+1)*CHUNK - 1`` (those there are) of :func:`leaky_relu_backward_kernel`."""
    zero = dx.dtype.type(0)
    slope = dx.dtype.type(negative_slope)
    for i in range(t * CHUNK, min((t + 1) * CHUNK, x.shape[0])):
        g = dy[i]
        dx[i] = g if x[i] > zero else g * slope


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
    _leaky_relu_backward_chunks(chunk_count(x.shape[0]), dy, x, negative_slope, dx)


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
