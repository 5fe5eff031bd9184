"""Checked 2-D convolution: validate, plan, allocate, run the plan's kernels.

Shape vocabulary: x (N, C, H, W), w (K, C/groups, R, S) as PyTorch's, y and
dy (N, K, P, Q), stride (sh, sw), zero padding (ph, pw), dilation
(dil_h, dil_w).  Every public function here takes ``algorithm=``: ``"auto"``
(default) lets :mod:`fastcnn.kernels.conv_plan` choose per pass, a name from
:data:`~fastcnn.kernels.conv_plan.ALGORITHMS` forces one;
:func:`conv2d_plan` shows the choice without running anything.  The keyword
arguments ``dilation`` and ``groups`` and ``padding="same"`` / ``"valid"``
mean what they mean in ``torch.nn.functional.conv2d``.
"""

import numbers

import numpy as np

from ..config import get_num_threads
from . import _conv_exec, _workspace, conv_tune
from ._checks import (
    as_float_array,
    check_allocation,
    check_flag,
    check_shape,
    check_x_shape,
    positive_pair,
)
from ._conv_im2col import col2im_kernel, im2col_kernel
from ._conv_nchw import conv2d_backward_bias
from .conv_geometry import checked_geometry as _geometry
from .conv_buffers import Buffer
from .conv_plan import CHOICES, ConvPlans, make_plan


def _extend(a, shape):
    """``a`` (N, C, h, w) zero-extended at the bottom and right to ``shape`` (a new array; ``a`` when equal)."""
    if a.shape == tuple(shape):
        return a
    out = np.zeros(shape, dtype=a.dtype)
    out[:, :, :a.shape[2], :a.shape[3]] = a
    return out


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


def _with_extension(plan, g, extra):
    """``plan`` with the zero-extended copy of x (or dx) that "same" padding with an even kernel adds."""
    if extra == (0, 0) or plan is None:
        return plan
    role = "dx_extended" if plan.op == "input_grad" else "x_extended"
    return plan._replace(buffers=plan.buffers + (Buffer(role, (g.N, g.C, g.H, g.W), "call"),))


def conv2d_plan(x_shape, w_shape, stride=1, padding=0, dtype=np.float32, algorithm="auto", need_input_grad=True,
                num_threads=None, *, dilation=1, groups=1):
    """Which algorithm computes each pass of a convolution, in which layout, with how much scratch memory.

    Runs nothing.  The plans depend on the shapes, stride, padding,
    dilation, groups, dtype, ``algorithm`` and the current thread count
    (per-thread buffers); they are what :func:`conv2d_forward` and
    :func:`conv2d_backward` execute.  A grouped convolution's plan is that
    of one group run once per group (see :mod:`fastcnn.kernels.conv_plan`),
    except a depthwise one, which has its own kernels.

    Parameters
    ----------
    x_shape : (N, C, H, W)
    w_shape : (K, C/groups, R, S)
    stride, padding : int or (int, int)
        ``padding`` may also be "same" or "valid" (see :func:`conv2d_forward`);
        "same" with an even dilated kernel plans for x with one more zero row
        (column) at the bottom (right), a copy listed among the buffers.
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
    dilation : int or (int, int)
        Spacing of the kernel taps, 1 (default) for an ordinary convolution.
    groups : int
        Channel groups: C and K must be multiples; ``groups == C`` is a
        depthwise convolution.

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
    'winograd4'
    >>> conv2d_plan((64, 64, 16, 16), (64, 1, 3, 3), padding=1, groups=64).input_grad.algorithm
    'depthwise'
    """
    fn = "conv2d_plan"
    x_shape = check_x_shape(x_shape, fn)
    w_shape = check_x_shape(w_shape, fn, "w_shape", "(K, C, R, S)")
    try:
        dtype = np.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{fn}: dtype must be float32 or float64, got {dtype}")
    need_input_grad = check_flag(need_input_grad, "need_input_grad", fn)
    g, extra = _geometry(x_shape, w_shape, stride, padding, fn, dilation, groups)
    algorithm = _check_algorithm(algorithm, fn)
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral)
                                    or num_threads < 1):
        raise ValueError(f"{fn}: num_threads must be a positive int or None, got {num_threads!r}")
    threads = None if num_threads is None else int(num_threads)
    forward, weight_grad = (_plan(op, g, dtype, algorithm, fn, threads) for op in ("forward", "weight_grad"))
    input_grad = _plan("input_grad", g, dtype, algorithm, fn, threads) if need_input_grad else None
    return ConvPlans(g, *(_with_extension(p, g, extra) for p in (forward, weight_grad, input_grad)))


def _conv_args(x, w, stride, padding, dilation, groups, fn):
    """Checked x and w, their geometry (that of x zero-extended for "same" padding) and that extension (eh, ew)."""
    x = as_float_array(x, "x", fn, ndim=4)
    w = as_float_array(w, "weight", fn, ndim=4, dtype=x.dtype)
    _nonempty(x, "x", "(N, C, H, W)", fn)
    _nonempty(w, "weight", "(K, C/groups, R, S)", fn)
    g, extra = _geometry(x.shape, w.shape, stride, padding, fn, dilation, groups)
    return x, w, g, extra


def _nonempty(a, name, dims, fn):
    """Raise ValueError when array ``a`` has an axis of size 0 (an empty batch, no channels, empty planes)."""
    if 0 in a.shape:
        raise ValueError(f"{fn}: {name} has an empty axis: shape {a.shape} {dims}; a convolution needs at least one "
                         "image, input channel, output channel and pixel")


def _check_scratch(plan, itemsize, fn):
    """Raise ValueError when a buffer of ``plan`` (sized by the arguments) would not fit in memory."""
    for buf in plan.buffers:
        check_allocation(buf.shape, itemsize, f"the {buf.role} buffer of {plan.algorithm}", fn)


def bias_vector(b, w, fn):
    """The bias as a (K,) array of w's dtype (zeros for None), checked."""
    K = w.shape[0]
    if b is None:
        return np.zeros(K, dtype=w.dtype)
    b = as_float_array(b, "bias", fn, ndim=1, dtype=w.dtype)
    if b.shape != (K,):
        raise ValueError(f"{fn}: bias must have shape ({K},) for {K} output channels, got {b.shape}")
    return b


def _run_forward(x, w, b, stride, padding, algorithm, fn, dilation=1, groups=1):
    x, w, g, _ = _conv_args(x, w, stride, padding, dilation, groups, fn)
    algorithm = _check_algorithm(algorithm, fn)
    b = bias_vector(b, w, fn)
    plan = _plan("forward", g, x.dtype, algorithm, fn)
    check_allocation((g.N, g.K, g.P, g.Q), x.dtype.itemsize, "the output", fn)
    _check_scratch(plan, x.dtype.itemsize, fn)
    y = np.empty((g.N, g.K, g.P, g.Q), dtype=x.dtype)
    _conv_exec.forward(plan.algorithm, _extend(x, (g.N, g.C, g.H, g.W)), w, b, y, g, _workspace.take(plan, x.dtype))
    return y


def _share_dy(name, input_plan, dy, g, extra, dtype):
    """``(input_bufs, dy_ready)``: the input gradient's buffers, taken now, holding the copy of dy that the weight
    gradient of plan ``name`` reads too (:func:`~fastcnn.kernels._conv_exec.share_dy`); ``(None, None)`` where the
    two cannot share one (no input gradient, another algorithm, "same" padding's extra rows, a plan it does not
    serve), and then nothing is taken early (the input plan's call buffers would add to the weight gradient's)."""
    if (input_plan is None or input_plan.algorithm != name or name not in _conv_exec.SHARES_DY
            or extra != (0, 0)):
        return None, None
    input_bufs = _workspace.take(input_plan, dtype)
    return input_bufs, _conv_exec.share_dy(name, dy, g, input_bufs)


def _run_backward(dy, x, w, stride, padding, need_input_grad, algorithm, fn, dilation=1, groups=1):
    x, w, g, extra = _conv_args(x, w, stride, padding, dilation, groups, fn)
    algorithm = _check_algorithm(algorithm, fn)
    need_input_grad = check_flag(need_input_grad, "need_input_grad", fn)
    dy = as_float_array(dy, "dy", fn, ndim=4, dtype=x.dtype)
    check_shape(dy, (g.N, g.K, g.P, g.Q), "dy", fn)
    weight_plan = _plan("weight_grad", g, x.dtype, algorithm, fn)
    input_plan = _plan("input_grad", g, x.dtype, algorithm, fn) if need_input_grad else None
    for plan in (weight_plan, input_plan):
        if plan is not None:
            _check_scratch(plan, x.dtype.itemsize, fn)
    # outputs first, so that scratch memory is what the plan says on top of inputs and outputs at every moment
    dx = None if input_plan is None else np.empty(x.shape, dtype=x.dtype)
    dw = np.empty(w.shape, dtype=w.dtype)
    db = np.empty(g.K, dtype=w.dtype)
    conv2d_backward_bias(dy, db)
    full = (g.N, g.C, g.H, g.W)  # x's shape with the bottom/right zeros of "same" padding, if any
    name = weight_plan.algorithm
    input_bufs, dy_ready = _share_dy(name, input_plan, dy, g, extra, x.dtype)
    ready = {"dy_ready": dy_ready} if dy_ready else {}
    _conv_exec.weight_grad(name, dy, _extend(x, full), dw, g, _workspace.take(weight_plan, x.dtype), **ready)
    if input_plan is not None:
        dx_full = dx if extra == (0, 0) else np.empty(full, dtype=x.dtype)
        input_bufs = _workspace.take(input_plan, x.dtype) if input_bufs is None else input_bufs
        _conv_exec.input_grad(input_plan.algorithm, dy, w, dx_full, g, input_bufs, dy_ready is not None)
        if dx_full is not dx:
            dx[...] = dx_full[:, :, :x.shape[2], :x.shape[3]]
    return dx, dw, db


def conv2d_forward(x, w, b, stride=1, padding=0, algorithm="auto", *, dilation=1, groups=1):
    """2-D convolution layer forward pass (cross-correlation).

    ``y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xp[n, c, p*sh + r, q*sw + s]``
    where ``xp`` is ``x`` zero-padded by ``padding``.  Like every CNN library this
    is a cross-correlation: the mathematical convolution is the same sum with
    the kernel rotated by 180 degrees, i.e. ``conv2d_forward(x, w[:, :, ::-1, ::-1], b)``.
    Output size: ``P = floor((H + 2*ph - R) / sh) + 1``, ``Q`` likewise.

    With ``dilation`` (dil_h, dil_w) the taps are that far apart:
    ``xp[n, c, p*sh + r*dil_h, q*sw + s*dil_w]``, and
    ``P = floor((H + 2*ph - dil_h*(R - 1) - 1) / sh) + 1``.  With ``groups``
    G the C input and K output channels form G groups; output channel k
    reads only the ``C/G`` input channels of its group ``k // (K/G)``, and
    w is (K, C/G, R, S): ``y[n, k] = b[k] + sum_c w[k, c] * xp[n, g*C/G + c]``.
    ``groups == C`` is a depthwise convolution (``K/C`` filters per channel).
    ``padding="valid"`` is 0; ``padding="same"`` (stride 1 only) pads so
    that ``P = H`` and ``Q = W``: ``dil*(R - 1)`` in all, half before, and
    the odd one after (bottom, right), as PyTorch does.

    Every algorithm gives the same result up to float rounding; which one runs
    is :func:`conv2d_plan`'s choice (``conv2d_plan(...).forward``): a 1x1
    kernel with stride 1 and no padding, or a kernel as large as the padded
    input, is one matrix product (BLAS); otherwise the channel-last kernels
    (16 or more output channels), the batch-last kernels (batch of 8 or
    more) or the NCHW loops.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (K, C/groups, R, S), same dtype
        Neither may have an empty axis (ValueError: no empty batch, channels
        or planes).
    b : ndarray (K,) of the same dtype, or None
    stride, padding : int or (int, int)
        Stride >= 1 and zero padding >= 0, along height then width;
        ``padding`` may be "same" or "valid".
    algorithm : str
        "auto" (default), "direct", "tuned" (see :func:`conv2d_plan`) or a
        name from ``fastcnn.kernels.CONV_ALGORITHMS``.
    dilation : int or (int, int)
        Tap spacing >= 1 (default 1).
    groups : int
        Channel groups (default 1); C and K must be multiples of it.

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
    return _run_forward(x, w, b, stride, padding, algorithm, "conv2d_forward", dilation, groups)


def conv2d_backward(dy, x, w, stride=1, padding=0, need_input_grad=True, algorithm="auto", *, dilation=1,
                    groups=1):
    """Gradients of a convolution.

    - ``dx``: the full correlation of ``dy`` (dilated by the stride, zero-padded
      by ``R - 1 - ph``) with the kernel rotated by 180 degrees, summed over
      output channels.
    - ``dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * xp[n, c, p*sh + r, q*sw + s]``:
      the correlation of the input with the output gradient.
    - ``db[k] = sum_{n, p, q} dy[n, k, p, q]``.

    With dilation the taps read ``xp[..., p*sh + r*dil_h, q*sw + s*dil_w]``
    (and dx scatters back there); with groups each group's dx and dw come
    from its own channels only (see :func:`conv2d_forward`).

    ``conv2d_plan(...).weight_grad`` and ``.input_grad`` say which algorithm
    computes each (they are chosen separately: dx vectorises over the input
    channels, dw over the output channels).

    Parameters
    ----------
    dy : ndarray, (N, K, P, Q)
        Gradient of the loss with respect to the forward output.
    x, w, stride, padding, algorithm, dilation, groups
        As given to :func:`conv2d_forward`.
    need_input_grad : bool
        False skips ``dx`` (the first layer of a network needs none).

    Returns
    -------
    dx : ndarray (N, C, H, W) or None
    dw : ndarray (K, C/groups, R, S)
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
    return _run_backward(dy, x, w, stride, padding, need_input_grad, algorithm, "conv2d_backward", dilation, groups)


def conv2d_forward_im2col(x, w, b, stride=1, padding=0, *, dilation=1, groups=1):
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
    return _run_forward(x, w, b, stride, padding, "im2col", "conv2d_forward_im2col", dilation, groups)


def conv2d_backward_im2col(dy, x, w, stride=1, padding=0, need_input_grad=True, *, dilation=1, groups=1):
    """Gradients of a convolution through im2col, GEMM and col2im: ``conv2d_backward(..., algorithm="im2col")``.

    Same arguments and results as :func:`conv2d_backward`:
    ``dw = sum_n dy[n] @ im2col(x)[n].T``, ``dx = col2im(w.T @ dy)`` (per group).
    """
    return _run_backward(dy, x, w, stride, padding, need_input_grad, "im2col", "conv2d_backward_im2col", dilation,
                         groups)


def im2col(x, kernel_size, stride=1, padding=0, *, dilation=1):
    """Unfold image patches into columns.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    kernel_size, stride, padding : int or (int, int)
    dilation : int or (int, int)
        Tap spacing (default 1).

    Returns
    -------
    cols : ndarray, (N, C*R*S, P*Q)
        ``cols[n, (c*R + r)*S + s, p*Q + q] = xp[n, c, p*sh + r*dil_h, q*sw + s*dil_w]``
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
    _nonempty(x, "x", "(N, C, H, W)", fn)
    R, S = positive_pair(kernel_size, "kernel_size", fn)
    N, C = x.shape[:2]
    g, _ = _geometry(x.shape, (1, C, R, S), stride, padding, fn, dilation)
    check_allocation((N, C * R * S, g.P * g.Q), x.dtype.itemsize, "the columns", fn)
    cols = np.empty((N, C * R * S, g.P * g.Q), dtype=x.dtype)
    im2col_kernel(_extend(x, (N, C, g.H, g.W)), cols, R, S, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)
    return cols


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, *, dilation=1):
    """Fold columns back into images, summing overlaps: the adjoint of :func:`im2col`.

    Parameters
    ----------
    cols : ndarray, (N, C*R*S, P*Q)
    x_shape : (N, C, H, W)
    kernel_size, stride, padding, dilation
        As given to :func:`im2col`.

    Returns
    -------
    x : ndarray, x_shape, dtype of cols
    """
    fn = "col2im"
    cols = as_float_array(cols, "cols", fn, ndim=3)
    x_shape = check_x_shape(x_shape, fn)
    R, S = positive_pair(kernel_size, "kernel_size", fn)
    N, C = x_shape[:2]
    g, extra = _geometry(x_shape, (1, C, R, S), stride, padding, fn, dilation)
    check_shape(cols, (N, C * R * S, g.P * g.Q), "cols", fn)
    dx = np.empty((N, C, g.H, g.W), dtype=cols.dtype)
    col2im_kernel(cols, dx, R, S, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)
    return dx if extra == (0, 0) else np.ascontiguousarray(dx[:, :, :x_shape[2], :x_shape[3]])


#: A layer keeps its own layout copy of x from the forward pass for the weight gradient (see :class:`PreparedConv`)
#: only when the copy is at most this many bytes; a larger one is made again, in the shared workspace.  16 MiB
#: keeps the copies of every layer of vgg_small and resnet_small at batch 64 (the largest, 9.5 MB, vgg_small's
#: 32-channel 32x32 layers): their training steps took 2.3-2.6 % less CPU time than with 4 MiB (1 thread).
LAYER_LAYOUT_BYTES = 16 << 20

#: Whether a layer's backward pass (:meth:`PreparedConv.backward`) computes the input gradient before the weight
#: gradient; the results are the same either way.  The compile helpers of :mod:`fastcnn.parallel_compile` set it,
#: so that a helper and the training process that reach one layer's backward pass at once compile different
#: kernels instead of one waiting for the other.
INPUT_GRAD_FIRST = False


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
    x, and :meth:`backward` given the same x object skips making it again
    (with ``keep=False``, as in eval mode, the copy is made in the calling
    thread's workspace: several threads may run one eval-mode layer at once).
    The caller promises that x is not changed in between (a layer holds its
    input; the checked functions never skip the copy).  ``dw`` and ``db``
    are this object's scratch arrays, overwritten by the next call.  With
    "same" padding and an even dilated kernel, x is zero-extended at the
    bottom and right first (the copy made in :meth:`forward` with ``keep``
    serves :meth:`backward` too); grouped and dilated plans keep no layout
    copy.
    """

    def __init__(self, x_shape, w_shape, stride, padding, dtype, algorithm, fn, threads, dilation=1, groups=1):
        self.g, self.extra = _geometry(x_shape, w_shape, stride, padding, fn, dilation, groups)
        self.dtype = np.dtype(dtype)
        self.algorithm, self.fn, self.threads = _check_algorithm(algorithm, fn), fn, threads
        forward = _plan("forward", self.g, dtype, algorithm, fn, threads)
        weight = _plan("weight_grad", self.g, dtype, algorithm, fn, threads)
        self.layout = self.layout_of = self.extended = None
        role = (_conv_exec.X_LAYOUT.get(forward.algorithm)
                if forward.algorithm == weight.algorithm and self.g.groups == 1 and not self.g.dilated else None)
        shape = next((b.shape for b in forward.buffers if b.role == role), None)
        if shape is not None and int(np.prod(shape)) * self.dtype.itemsize <= LAYER_LAYOUT_BYTES:
            self.role, self.layout = role, np.empty(shape, dtype=dtype)
            forward, weight = (p._replace(buffers=tuple(b for b in p.buffers if b.role != role))
                               for p in (forward, weight))
        self.forward_plan, self.weight_plan, self.input_plan = forward, weight, None
        self.padded_plan = None
        self.dw = np.empty(w_shape, dtype=dtype)
        self.db = np.empty(self.g.K, dtype=dtype)

    def _bufs(self, plan, own_layout=True):
        bufs = _workspace.take(plan, self.dtype)
        if self.layout is not None:
            # forward without keep (eval mode) copies into the calling thread's workspace instead: several threads
            # may call one eval-mode layer at once, and this object's array would be shared between them
            bufs[self.role] = (self.layout if own_layout
                               else _workspace.WORKSPACE.get(self.role, self.layout.shape, self.dtype))
        return bufs

    def _extend(self, x, keep):
        """x zero-extended for "same" padding (x itself without), reusing the copy :meth:`forward` kept for x."""
        if self.extra == (0, 0):
            return x
        if self.extended is not None and self.extended[0] is x:
            return self.extended[1]
        g = self.g
        xe = _extend(x, (g.N, g.C, g.H, g.W))
        self.extended = (x, xe) if keep else None
        return xe

    def forward(self, x, w, b, keep, out=None):
        """``y`` of :func:`conv2d_forward` (a new array, or ``out(shape, dtype)``); ``keep``: x stays unchanged
        until :meth:`backward`."""
        g = self.g
        shape = (g.N, g.K, g.P, g.Q)
        y = np.empty(shape, dtype=self.dtype) if out is None else out(shape, self.dtype)
        self.layout_of = self.extended = None
        x = self._extend(x, keep)
        _conv_exec.forward(self.forward_plan.algorithm, x, w, b, y, g, self._bufs(self.forward_plan, keep))
        if keep and self.layout is not None:
            self.layout_of = x
        return y

    def reads_padded(self, pad):
        """Whether :meth:`forward_padded` can run this convolution from an input with a zero border of ``pad``."""
        return self.extra == (0, 0) and _conv_exec.reads_padded(self.forward_plan.algorithm, self.g, pad)

    def forward_padded(self, xp, pad, w, b, pad_out, relu, out=None, res=None):
        """The forward pass from a padded channel-last layout (for inference chains; keeps nothing).

        ``xp`` is x as (N, H + 2*pad, W + 2*pad, C) with a zero border (see
        :meth:`reads_padded`).  Returns a new (N, P + 2*pad_out, Q + 2*pad_out, K)
        channel-last array with a zero border, or with ``pad_out=None`` a new
        NCHW y (N, K, P, Q); ``res`` (of the padded output's shape) added when given, then ``max(y, 0)`` when
        ``relu``.  ``out``: a function of (shape, dtype) that gives the output array (default: a new one).
        """
        g = self.g
        shape = (g.N, g.K, g.P, g.Q) if pad_out is None else (g.N, g.P + 2 * pad_out, g.Q + 2 * pad_out, g.K)
        yp = np.empty(shape, dtype=self.dtype) if out is None else out(shape, self.dtype)
        if self.padded_plan is None:
            plan = self.forward_plan
            self.padded_plan = plan._replace(buffers=tuple(b for b in plan.buffers
                                                           if b.role not in ("x_channel_last", "x_tiles")))
        _conv_exec.forward_padded(self.padded_plan.algorithm, xp, pad, w, b, yp, -1 if pad_out is None else pad_out,
                                  relu, g, _workspace.take(self.padded_plan, self.dtype), res)
        return yp

    def backward(self, dy, x, w, need_input_grad):
        """``(dx or None, dw, db)`` of :func:`conv2d_backward`; dw and db are this object's scratch arrays.

        When both gradients run one algorithm that can share a copy of dy
        (:func:`~fastcnn.kernels._conv_exec.share_dy`), the input gradient's
        copy is made first and the weight gradient reads it too.
        """
        dx = self._input_grad(dy, w, x.shape) if need_input_grad and INPUT_GRAD_FIRST else None
        conv2d_backward_bias(dy, self.db)
        xe = self._extend(x, True)
        name = self.weight_plan.algorithm
        input_plan = self._input_plan() if need_input_grad and dx is None else None
        input_bufs, dy_ready = _share_dy(name, input_plan, dy, self.g, self.extra, self.dtype)
        ready = {"dy_ready": dy_ready} if dy_ready else {}
        if self.layout is None:
            _conv_exec.weight_grad(name, dy, xe, self.dw, self.g, self._bufs(self.weight_plan), **ready)
        else:
            _conv_exec.weight_grad(name, dy, xe, self.dw, self.g, self._bufs(self.weight_plan),
                                   x_ready=self.layout_of is xe, **ready)
            self.layout_of = xe
        if need_input_grad and dx is None:
            dx = self._input_grad(dy, w, x.shape, input_bufs, dy_ready is not None)
        return dx, self.dw, self.db

    def _input_plan(self):
        if self.input_plan is None:
            self.input_plan = _plan("input_grad", self.g, self.dtype, self.algorithm, self.fn, self.threads)
        return self.input_plan

    def _input_grad(self, dy, w, x_shape, bufs=None, dy_ready=False):
        """``dx`` (a new array of shape ``x_shape``) of :meth:`backward` (``bufs``: the input plan's, when taken
        already; ``dy_ready``: its copy of dy is made)."""
        g = self.g
        dx = np.empty(x_shape, dtype=self.dtype)
        plan = self._input_plan()
        bufs = _workspace.take(plan, self.dtype) if bufs is None else bufs
        dx_full = dx if self.extra == (0, 0) else np.empty((g.N, g.C, g.H, g.W), dtype=self.dtype)
        _conv_exec.input_grad(plan.algorithm, dy, w, dx_full, g, bufs, dy_ready)
        if dx_full is not dx:
            dx[...] = dx_full[:, :, :x_shape[2], :x_shape[3]]
        return dx
