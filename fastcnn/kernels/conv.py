"""Checked 2-D convolution: validate, plan, allocate, run the plan's kernels.

Shape vocabulary: x (N, C, H, W), w (K, C, R, S) as PyTorch's, y and dy
(N, K, P, Q), stride (sh, sw), zero padding (ph, pw).  Every public function
here takes ``algorithm=``: ``"auto"`` (default) lets :mod:`fastcnn.kernels.conv_plan`
choose per pass, a name from :data:`~fastcnn.kernels.conv_plan.ALGORITHMS`
forces one; :func:`conv2d_plan` shows the choice without running anything.
"""

import numbers

import numpy as np

from .._shapes import conv_output_size
from ..config import get_num_threads
from . import _conv_exec, _workspace, conv_tune
from ._checks import as_float_array, check_shape, check_x_shape, nonnegative_pair, positive_pair
from ._conv_im2col import col2im_kernel, im2col_kernel
from ._conv_nchw import conv2d_backward_bias
from .conv_plan import CHOICES, ConvGeometry, ConvPlans, make_plan


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, fn="conv2d"):
    """Output shape (N, K, P, Q) of a convolution, after checking the geometry.

    ``P = floor((H + 2*ph - R) / sh) + 1`` and likewise Q.  Raises ValueError
    for a channel mismatch or a kernel larger than the padded input.
    """
    g = _geometry(x_shape, w_shape, stride, padding, fn)
    return (g.N, g.K, g.P, g.Q)


def _geometry(x_shape, w_shape, stride, padding, fn):
    """The checked :class:`ConvGeometry` of a convolution."""
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
    P, Q = conv_output_size(H, R, sh, ph), conv_output_size(W, S, sw, pw)
    return ConvGeometry(N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw)


def _check_algorithm(algorithm, fn):
    if not isinstance(algorithm, str) or algorithm not in CHOICES:
        raise ValueError(f"{fn}: algorithm must be one of {', '.join(map(repr, CHOICES))}, got {algorithm!r}")
    return algorithm


def _plan(op, g, dtype, algorithm, fn, threads=None):
    threads = threads or get_num_threads()
    if algorithm == "tuned":
        algorithm = conv_tune.choose(op, g, dtype, threads)
    try:
        return make_plan(op, g, algorithm, np.dtype(dtype).itemsize, threads)
    except ValueError as e:
        raise ValueError(f"{fn}: {e}") from None


def conv2d_plan(x_shape, w_shape, stride=1, padding=0, dtype=np.float32, algorithm="auto", need_input_grad=True,
                num_threads=None):
    """Which algorithm computes each pass of a convolution, in which layout, with how much scratch memory.

    Runs nothing.  The plans depend on the shapes, stride, padding, dtype,
    ``algorithm`` and the current thread count (per-thread buffers); they are
    what :func:`conv2d_forward` and :func:`conv2d_backward` execute.

    Parameters
    ----------
    x_shape : (N, C, H, W)
    w_shape : (K, C, R, S)
    stride, padding : int or (int, int)
    dtype : float32 or float64
    algorithm : str
        "auto" (default: fixed thresholds), "direct" (the same today: never
        im2col), "tuned" (the fastest algorithm of each pass, timed the first
        time the shape is seen: see :mod:`fastcnn.kernels.conv_tune`; this
        call then runs the timings) or one of ``fastcnn.kernels.CONV_ALGORITHMS``;
        a named algorithm that does not apply to the shape raises ValueError.
    need_input_grad : bool
        False leaves ``input_grad`` None (the first layer of a network).
    num_threads : int or None
        Threads the call would run on (sizes the per-thread buffers); None:
        the current ``fastcnn.get_num_threads()``.

    Returns
    -------
    ConvPlans
        ``.forward``, ``.weight_grad`` and ``.input_grad`` are :class:`ConvPlan`
        (``.algorithm``, ``.layout``, ``.buffers``, ``.workspace_bytes``);
        ``.memory_bytes(op)`` gives the peak scratch bytes of a call;
        ``print(plans)`` shows all three.

    Examples
    --------
    >>> from fastcnn.kernels import conv2d_plan
    >>> plans = conv2d_plan((64, 64, 16, 16), (64, 64, 3, 3), padding=1)
    >>> plans.input_grad.algorithm
    'channel_last'
    """
    fn = "conv2d_plan"
    x_shape = check_x_shape(x_shape, fn)
    w_shape = check_x_shape(w_shape, fn, "w_shape", "(K, C, R, S)")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: dtype must be float32 or float64, got {dtype}")
    g = _geometry(x_shape, w_shape, stride, padding, fn)
    algorithm = _check_algorithm(algorithm, fn)
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral)
                                    or num_threads < 1):
        raise ValueError(f"{fn}: num_threads must be a positive int or None, got {num_threads!r}")
    threads = None if num_threads is None else int(num_threads)
    forward, weight_grad = (_plan(op, g, dtype, algorithm, fn, threads) for op in ("forward", "weight_grad"))
    input_grad = _plan("input_grad", g, dtype, algorithm, fn, threads) if need_input_grad else None
    return ConvPlans(g, forward, weight_grad, input_grad)


def _conv_args(x, w, stride, padding, fn):
    x = as_float_array(x, "x", fn, ndim=4)
    w = as_float_array(w, "weight", fn, ndim=4, dtype=x.dtype)
    return x, w, _geometry(x.shape, w.shape, stride, padding, fn)


def bias_vector(b, w, fn):
    """The bias as a (K,) array of w's dtype (zeros for None), checked."""
    K = w.shape[0]
    if b is None:
        return np.zeros(K, dtype=w.dtype)
    b = as_float_array(b, "bias", fn, ndim=1, dtype=w.dtype)
    if b.shape != (K,):
        raise ValueError(f"{fn}: bias must have shape ({K},) for {K} output channels, got {b.shape}")
    return b


def _run_forward(x, w, b, stride, padding, algorithm, fn):
    x, w, g = _conv_args(x, w, stride, padding, fn)
    algorithm = _check_algorithm(algorithm, fn)
    b = bias_vector(b, w, fn)
    plan = _plan("forward", g, x.dtype, algorithm, fn)
    y = np.empty((g.N, g.K, g.P, g.Q), dtype=x.dtype)
    _conv_exec.FORWARD[plan.algorithm](x, w, b, y, g, _workspace.take(plan, x.dtype))
    return y


def _run_backward(dy, x, w, stride, padding, need_input_grad, algorithm, fn):
    x, w, g = _conv_args(x, w, stride, padding, fn)
    algorithm = _check_algorithm(algorithm, fn)
    dy = as_float_array(dy, "dy", fn, ndim=4, dtype=x.dtype)
    check_shape(dy, (g.N, g.K, g.P, g.Q), "dy", fn)
    weight_plan = _plan("weight_grad", g, x.dtype, algorithm, fn)
    input_plan = _plan("input_grad", g, x.dtype, algorithm, fn) if need_input_grad else None
    # outputs first, so that scratch memory is what the plan says on top of inputs and outputs at every moment
    dx = None if input_plan is None else np.empty(x.shape, dtype=x.dtype)
    dw = np.empty(w.shape, dtype=w.dtype)
    db = np.empty(g.K, dtype=w.dtype)
    conv2d_backward_bias(dy, db)
    _conv_exec.WEIGHT_GRAD[weight_plan.algorithm](dy, x, dw, g, _workspace.take(weight_plan, x.dtype))
    if input_plan is not None:
        _conv_exec.INPUT_GRAD[input_plan.algorithm](dy, w, dx, g, _workspace.take(input_plan, x.dtype))
    return dx, dw, db


def conv2d_forward(x, w, b, stride=1, padding=0, algorithm="auto"):
    """2-D convolution layer forward pass (cross-correlation).

    ``y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xp[n, c, p*sh + r, q*sw + s]``
    where ``xp`` is ``x`` zero-padded by ``padding``.  Like every CNN library this
    is a cross-correlation: the mathematical convolution is the same sum with
    the kernel rotated by 180 degrees, i.e. ``conv2d_forward(x, w[:, :, ::-1, ::-1], b)``.
    Output size: ``P = floor((H + 2*ph - R) / sh) + 1``, ``Q`` likewise.

    Every algorithm gives the same result up to float rounding; which one runs
    is :func:`conv2d_plan`'s choice (``conv2d_plan(...).forward``): a 1x1
    kernel with stride 1 and no padding, or a kernel as large as the padded
    input, is one matrix product (BLAS); otherwise the channel-last kernels
    (16 or more output channels), the batch-last kernels (batch of 8 or
    more) or the NCHW loops.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (K, C, R, S), same dtype
    b : ndarray (K,) of the same dtype, or None
    stride, padding : int or (int, int)
        Stride >= 1 and zero padding >= 0, along height then width.
    algorithm : str
        "auto" (default), "direct", "tuned" (see :func:`conv2d_plan`) or a
        name from ``fastcnn.kernels.CONV_ALGORITHMS``.

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
    return _run_forward(x, w, b, stride, padding, algorithm, "conv2d_forward")


def conv2d_backward(dy, x, w, stride=1, padding=0, need_input_grad=True, algorithm="auto"):
    """Gradients of a convolution.

    - ``dx``: the full correlation of ``dy`` (dilated by the stride, zero-padded
      by ``R - 1 - ph``) with the kernel rotated by 180 degrees, summed over
      output channels.
    - ``dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * xp[n, c, p*sh + r, q*sw + s]``:
      the correlation of the input with the output gradient.
    - ``db[k] = sum_{n, p, q} dy[n, k, p, q]``.

    ``conv2d_plan(...).weight_grad`` and ``.input_grad`` say which algorithm
    computes each (they are chosen separately: dx vectorises over the input
    channels, dw over the output channels).

    Parameters
    ----------
    dy : ndarray, (N, K, P, Q)
        Gradient of the loss with respect to the forward output.
    x, w, stride, padding, algorithm
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
    return _run_backward(dy, x, w, stride, padding, need_input_grad, algorithm, "conv2d_backward")


def conv2d_forward_im2col(x, w, b, stride=1, padding=0):
    """2-D convolution forward through im2col and one matrix multiply per image.

    ``conv2d_forward(..., algorithm="im2col")``: same arguments, result and
    formula as :func:`conv2d_forward`; ``y[n] = w.reshape(K, C*R*S) @ im2col(x)[n] + b``.
    Needs ``N * C*R*S * P*Q`` elements of scratch.

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
    return _run_forward(x, w, b, stride, padding, "im2col", "conv2d_forward_im2col")


def conv2d_backward_im2col(dy, x, w, stride=1, padding=0, need_input_grad=True):
    """Gradients of a convolution through im2col, GEMM and col2im: ``conv2d_backward(..., algorithm="im2col")``.

    Same arguments and results as :func:`conv2d_backward`:
    ``dw = sum_n dy[n] @ im2col(x)[n].T``, ``dx = col2im(w.T @ dy)``.
    """
    return _run_backward(dy, x, w, stride, padding, need_input_grad, "im2col", "conv2d_backward_im2col")


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
    N, C = x.shape[:2]
    g = _geometry(x.shape, (1, C, R, S), stride, padding, fn)
    cols = np.empty((N, C * R * S, g.P * g.Q), dtype=x.dtype)
    im2col_kernel(x, cols, R, S, g.sh, g.sw, g.ph, g.pw)
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
    N, C = x_shape[:2]
    g = _geometry(x_shape, (1, C, R, S), stride, padding, fn)
    check_shape(cols, (N, C * R * S, g.P * g.Q), "cols", fn)
    dx = np.empty(x_shape, dtype=cols.dtype)
    col2im_kernel(cols, dx, R, S, g.sh, g.sw, g.ph, g.pw)
    return dx


#: A layer keeps its own layout copy of x from the forward pass for the weight gradient (see :class:`PreparedConv`)
#: only when the copy is at most this many bytes; a larger one is made again, in the shared workspace.
LAYER_LAYOUT_BYTES = 4 << 20


class PreparedConv:
    """For layers: one convolution's checked geometry and plans for one input shape, run without re-checking.

    The entry point :class:`fastcnn.layers.Conv2d` uses batch after batch:
    the checks and the plan choice of :func:`conv2d_forward` and
    :func:`conv2d_backward` are done once, here, and each call only runs the
    plan's kernels (the caller passes C-contiguous arrays of the shapes and
    dtype given here).  When the forward pass and the weight gradient read the
    same layout copy of x (``_conv_exec.X_LAYOUT``: channel_last, batch_last)
    and it is small (:data:`LAYER_LAYOUT_BYTES`), the copy is this object's
    own array: :meth:`forward` with ``keep=True`` marks it as the copy of that
    x, and :meth:`backward` given the same x object skips making it again.
    The caller promises that x is not changed in between (a layer holds its
    input; the checked functions never skip the copy).  ``dw`` and ``db``
    are this object's scratch arrays, overwritten by the next call.
    """

    def __init__(self, x_shape, w_shape, stride, padding, dtype, algorithm, fn, threads):
        self.g = _geometry(x_shape, w_shape, stride, padding, fn)
        self.dtype = np.dtype(dtype)
        self.algorithm, self.fn, self.threads = _check_algorithm(algorithm, fn), fn, threads
        forward = _plan("forward", self.g, dtype, algorithm, fn, threads)
        weight = _plan("weight_grad", self.g, dtype, algorithm, fn, threads)
        self.layout = self.layout_of = None
        role = _conv_exec.X_LAYOUT.get(forward.algorithm) if forward.algorithm == weight.algorithm else None
        shape = next((b.shape for b in forward.buffers if b.role == role), None)
        if shape is not None and int(np.prod(shape)) * self.dtype.itemsize <= LAYER_LAYOUT_BYTES:
            self.role, self.layout = role, np.empty(shape, dtype=dtype)
            forward, weight = (p._replace(buffers=tuple(b for b in p.buffers if b.role != role))
                               for p in (forward, weight))
        self.forward_plan, self.weight_plan, self.input_plan = forward, weight, None
        self.dw = np.empty(w_shape, dtype=dtype)
        self.db = np.empty(self.g.K, dtype=dtype)

    def _bufs(self, plan):
        bufs = _workspace.take(plan, self.dtype)
        if self.layout is not None:
            bufs[self.role] = self.layout
        return bufs

    def forward(self, x, w, b, keep):
        """``y`` of :func:`conv2d_forward` (new array); ``keep``: x stays unchanged until :meth:`backward`."""
        g = self.g
        y = np.empty((g.N, g.K, g.P, g.Q), dtype=self.dtype)
        self.layout_of = None
        _conv_exec.FORWARD[self.forward_plan.algorithm](x, w, b, y, g, self._bufs(self.forward_plan))
        if keep and self.layout is not None:
            self.layout_of = x
        return y

    def backward(self, dy, x, w, need_input_grad):
        """``(dx or None, dw, db)`` of :func:`conv2d_backward`; dw and db are this object's scratch arrays."""
        g = self.g
        dx = np.empty((g.N, g.C, g.H, g.W), dtype=self.dtype) if need_input_grad else None
        conv2d_backward_bias(dy, self.db)
        executor = _conv_exec.WEIGHT_GRAD[self.weight_plan.algorithm]
        if self.layout is None:
            executor(dy, x, self.dw, g, self._bufs(self.weight_plan))
        else:
            ready = self.layout_of is x
            executor(dy, x, self.dw, g, self._bufs(self.weight_plan), x_ready=ready)
            self.layout_of = x
        if need_input_grad:
            if self.input_plan is None:
                self.input_plan = _plan("input_grad", g, self.dtype, self.algorithm, self.fn, self.threads)
            _conv_exec.INPUT_GRAD[self.input_plan.algorithm](dy, w, dx, g, _workspace.take(self.input_plan,
                                                                                            self.dtype))
        return dx, self.dw, self.db
