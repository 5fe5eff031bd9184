"""Raw direct-convolution kernels for wide layers: channel-last, register-blocked.

With 16 or more channels the channels are the better vector axis.  Inputs are
copied once per call into a zero-padded *channel-last* layout ``xp[n, i, j, c]``
(``to_channel_last``), where the window of output pixel q on input row i is
the contiguous span ``xp[n, i, q*sw:q*sw + S, :]`` of ``S*C`` numbers.  Each
kernel row r is then a small matrix product with no copy: the ``Q`` windows of
an output row (rows ``sw*C`` apart) times ``w[r]`` as an ``(S*C, K)`` matrix,
which :func:`fastcnn.kernels._gemm.gemm_acc` runs with its register-blocked
micro-kernels (6 x 16 blocks on AVX2, 8 x 32 on AVX-512).  No workspace proportional to the im2col
matrix is used: the extra memory is the padded copy of x (and of dy) and,
per task (one per thread, passed in by the caller), an output-row buffer, a
scratch image for the input gradient or a partial weight gradient.

Weight layouts (built by the caller, tiny): ``w2[r, s*C + c, k] = w[k, c, r, s]``
for the forward pass and ``wt[r, s, k, c] = w[k, c, r, s]`` for the input
gradient.

Parallel work never writes the same element from two tasks: forward over
chunks of output rows (image, row), input gradient over chunks of (image,
block of 16 input channels), weight gradient over chunks of images with one
partial sum each, added up afterwards in a fixed order (so results do not
depend on timing).
"""


import numpy as np

from ..config import njit
from ._gemm import gemm_call
from ._loops import transpose_flat, zero_span
from ._tasks import parallel_tasks, task

#: Input channels per input-gradient task (the micro-kernel's width).
DX_BLOCK = 16


#: Blocks of rows :func:`to_channel_last` splits its copy into (one task body call each: a call per row costs
#: more than copying a short row).
_COPY_BLOCKS = 64


@task("r4 a4 i i i i")
def _padded_rows(x, xp, ph, pw, blocks, b):
    """Block ``b`` of ``blocks`` equal blocks of rows (over N x Hp, image-major) of :func:`to_channel_last`'s output."""
    N, C, H, W = x.shape
    Hp, Wp = xp.shape[1], xp.shape[2]
    x_flat, xp_flat = x.reshape(x.size), xp.reshape(xp.size)  # flat offsets: no view (reference count) per row
    for t in range(b * N * Hp // blocks, (b + 1) * N * Hp // blocks):
        n = t // Hp
        i = t - n * Hp
        row = t * Wp * C
        if i < ph or i >= ph + H:
            zero_span(xp_flat, row, row + Wp * C)
            continue
        zero_span(xp_flat, row, row + pw * C)
        zero_span(xp_flat, row + (pw + W) * C, row + Wp * C)
        transpose_flat(xp_flat, row + pw * C, C, x_flat, (n * C * H + i - ph) * W, H * W, C, W)


_padded_row_blocks = parallel_tasks(_padded_rows)


@njit
def to_channel_last(x, xp, ph, pw):
    """Write ``x`` (N, C, H, W) into ``xp`` (N, H + 2*ph, W + 2*pw, C) with a zero border.

    ``xp[n, ph + i, pw + j, c] = x[n, c, i, j]``; every other element of
    ``xp`` is set to zero.

    Parameters
    ----------
    x : (N, C, H, W) float array, read (the input, or dy as (N, K, P, Q)
        with ``ph = pw = 0`` for the channel-last dy)
    xp : (N, H + 2*ph, W + 2*pw, C) array of x's dtype, written in full
    ph, pw : int
        Zero rows above and below, zero columns left and right.
    """
    blocks = min(x.shape[0] * xp.shape[1], _COPY_BLOCKS)
    _padded_row_blocks(blocks, x, xp, ph, pw, blocks)


@task("r4 a4 i i i i")
def _interior_rows(xp, x, ph, pw, blocks, b):
    """Block ``b`` of ``blocks`` equal blocks of rows (over N x H, image-major) of :func:`from_channel_last`."""
    N, C, H, W = x.shape
    Hp, Wp = xp.shape[1], xp.shape[2]
    x_flat, xp_flat = x.reshape(x.size), xp.reshape(xp.size)
    for t in range(b * N * H // blocks, (b + 1) * N * H // blocks):
        n = t // H
        i = t - n * H
        transpose_flat(x_flat, (n * C * H + i) * W, H * W, xp_flat, ((n * Hp + ph + i) * Wp + pw) * C, C, W, C)


_interior_row_blocks = parallel_tasks(_interior_rows)


@njit
def from_channel_last(xp, x, ph, pw):
    """The inverse of :func:`to_channel_last`: ``x[n, c, i, j] = xp[n, ph + i, pw + j, c]`` (the border is not read).

    Parameters
    ----------
    xp : (N, H + 2*ph, W + 2*pw, C) float array, read
    x : (N, C, H, W) array of xp's dtype, written in full
    ph, pw : int
    """
    blocks = min(x.shape[0] * x.shape[2], _COPY_BLOCKS)
    _interior_row_blocks(blocks, xp, x, ph, pw, blocks)


@njit(inline="always")
def _output_row(x_flat, w_flat, b, acc, acc_flat, dims, n, p, sh, sw, oy, ox, K, Q):
    """``acc[q, k]`` (q < Q, k < K; zero past K) = ``b[k]`` + output pixel (p, q) of image n, whose window
    starts at ``xp[n, oy + p*sh, ox + q*sw]`` (``x_flat``, ``w_flat``, ``acc_flat``: xp, w2 and acc flat;
    ``dims``: xp's Hp, Wp, C and w2's R, L, Kw)."""
    Hp, Wp, C, R, L, Kw = dims
    for q in range(Q):
        for k in range(K):
            acc[q, k] = b[k]
        zero_span(acc_flat, q * Kw + K, (q + 1) * Kw)
    # rows r of the kernel are the outer level of the reduction, (s, c) the inner
    gemm_call(acc_flat, 0, Kw, x_flat, ((n * Hp + oy + p * sh) * Wp + ox) * C, sw * C, Wp * C, 1,
              w_flat, 0, L * Kw, Kw, R, L, Q, Kw)


@task("r4 r3 r1 a4 i i a3 i")
def _forward_task(xp, w2, b, y, sh, sw, scratch, t):
    """Task t of :func:`conv2d_forward_channellast`: its chunk of output rows.  (The loop of :func:`_output_row`
    written out: through the inline function this training kernel measured 2-3 % slower.)"""
    N, Hp, Wp, C = xp.shape
    R, L, Kw = w2.shape
    K, P, Q = y.shape[1], y.shape[2], y.shape[3]
    T = scratch.shape[0]
    x_flat, w_flat = xp.reshape(xp.size), w2.reshape(w2.size)  # gemm_acc takes flat operands
    acc = scratch[t]
    acc_flat = acc.reshape(acc.size)
    for row in range(t * N * P // T, (t + 1) * N * P // T):
        n = row // P
        p = row - n * P
        for q in range(Q):
            for k in range(K):
                acc[q, k] = b[k]
            zero_span(acc_flat, q * Kw + K, (q + 1) * Kw)
        # rows r of the kernel are the outer level of the reduction, (s, c) the inner
        gemm_call(acc_flat, 0, Kw, x_flat, (n * Hp + p * sh) * Wp * C, sw * C, Wp * C, 1,
                  w_flat, 0, L * Kw, Kw, R, L, Q, Kw)
        for k in range(K):  # plain loops: as fast as tiles here, and quicker to compile
            for q in range(Q):
                y[n, k, p, q] = acc[q, k]


_forward_tasks = parallel_tasks(_forward_task)


@task("r4 r3 r1 a4 i i i i i b r4 b a3 i")
def _padded_forward_task(xp, w2, b, y, sh, sw, oy, ox, pad, relu, res, add, scratch, t):
    """Task t of :func:`conv2d_forward_channellast_padded` (y channel-last with a zero border of ``pad``, or NCHW
    when ``pad < 0``): its chunk of output rows; with ``add`` (padded y only) ``res``, of y's shape, is added
    before the ReLU.  A task of its own: the training kernel's stays as small as it was."""
    N = xp.shape[0]
    K = y.shape[1] if pad < 0 else y.shape[3]
    P = y.shape[2] if pad < 0 else y.shape[1] - 2 * pad
    Q = y.shape[3] if pad < 0 else y.shape[2] - 2 * pad
    T = scratch.shape[0]
    x_flat, w_flat = xp.reshape(xp.size), w2.reshape(w2.size)
    acc = scratch[t]
    acc_flat = acc.reshape(acc.size)
    dims = (xp.shape[1], xp.shape[2], xp.shape[3], w2.shape[0], w2.shape[1], w2.shape[2])
    low = y.dtype.type(0) if relu else y.dtype.type(-np.inf)  # v < low: below the ReLU (never without; NaN stays)
    for row in range(t * N * P // T, (t + 1) * N * P // T):
        n = row // P
        p = row - n * P
        _output_row(x_flat, w_flat, b, acc, acc_flat, dims, n, p, sh, sw, oy, ox, K, Q)
        if pad < 0:
            for k in range(K):
                for q in range(Q):
                    v = acc[q, k]
                    y[n, k, p, q] = low if v < low else v
            continue
        _padded_output_row(acc, y[n], res[n], add, p, P, Q, K, pad, low)


@njit(inline="always")
def _padded_output_row(acc, yn, rn, add, p, P, Q, K, pad, low):
    """Output row p (``acc[q, k]``, plus ``rn``'s pixel when ``add``, raised to ``low`` where below it: the ReLU
    with low = 0) into the channel-last ``yn`` at row ``pad + p``, with its zero border: the row's ``pad`` columns
    each side, and the ``pad`` rows above (p = 0) or below (p = P - 1)."""
    flat = yn.reshape(yn.size)
    width = (Q + 2 * pad) * K
    if p == 0:
        zero_span(flat, 0, pad * width)
    if p == P - 1:
        zero_span(flat, (P + pad) * width, (P + 2 * pad) * width)
    base = (pad + p) * width
    zero_span(flat, base, base + pad * K)
    zero_span(flat, base + (pad + Q) * K, base + width)
    out = yn[pad + p]
    if add:  # two loops: a run-time branch inside one keeps LLVM from vectorising it (a select on `low` does not)
        r = rn[pad + p]
        for q in range(Q):
            for k in range(K):
                v = acc[q, k] + r[pad + q, k]
                out[pad + q, k] = low if v < low else v
    else:
        for q in range(Q):
            for k in range(K):
                v = acc[q, k]
                out[pad + q, k] = low if v < low else v


_padded_forward_tasks = parallel_tasks(_padded_forward_task)


@njit
def conv2d_forward_channellast(xp, w2, b, y, sh, sw, scratch):
    """Convolution forward from a padded channel-last input.

    The N*P output rows are split into ``scratch.shape[0]`` equal chunks, one
    per task (use the thread count); a task accumulates each of its rows in
    its own ``scratch[t]`` and writes it to ``y``, so nothing is allocated
    per image.

    Parameters
    ----------
    xp : (N, Hp, Wp, C) float array, the zero-padded input (``to_channel_last``)
    w2 : (R, S*C, Kw) float array, ``w2[r, s*C + c, k] = w[k, c, r, s]``, Kw >= K;
        columns past K are computed and dropped (zero-pad K to a multiple of
        8 when it is not one, so that the micro-kernel runs full width)
    b : (K,) float array
    y : (N, K, P, Q) float array, NCHW, written in full
    sh, sw : int
    scratch : (T, Q, Kw) float array, T >= 1 tasks' output-row buffers
    """
    _forward_tasks(scratch.shape[0], xp, w2, b, y, sh, sw, scratch)


@njit
def conv2d_forward_channellast_padded(xp, w2, b, yp, sh, sw, oy, ox, pad, relu, scratch, res=None):
    """:func:`conv2d_forward_channellast` into a channel-last output with a zero border, residual sum and ReLU
    optionally fused.

    ``yp[n, pad + p, pad + q, k] = f(b[k] + sum_{r, s, c} w2[r, s*C + c, k] * xp[n, oy + p*sh + r, ox + q*sw + s,
    c] + res[n, pad + p, pad + q, k])`` with ``f`` the identity, or ``max(., 0)`` when ``relu`` (NaN stays NaN),
    the ``res`` term only when given, and zero in the border of ``pad`` rows and columns around: the layout this
    kernel and :func:`fastcnn.kernels.conv2d_forward_winograd_padded` read, so that a model's layers pass
    activations on without converting them (the origin ``(oy, ox)`` lets a layer with less padding than the
    border read the same array).  With ``pad < 0``, ``yp`` is an NCHW ``y`` (N, K, P, Q) instead (and ``res``
    is not read).

    Parameters
    ----------
    xp : (N, Hp, Wp, C) float array, zero-padded channel-last input
    w2, b, sh, sw, scratch
        As for :func:`conv2d_forward_channellast`.
    yp : (N, P + 2*pad, Q + 2*pad, K) float array (``pad < 0``: (N, K, P, Q)), written in full
    oy, ox : int >= 0
        Where the window of output pixel (0, 0) starts in ``xp[n]``; the caller keeps every window inside xp.
    pad : int
    relu : bool
    res : None or array of yp's shape and dtype, not overlapping yp
        A residual block's shortcut, added before the ReLU.
    """
    if res is None:
        _padded_forward_tasks(scratch.shape[0], xp, w2, b, yp, sh, sw, oy, ox, pad, relu, xp, False, scratch)
    else:
        _padded_forward_tasks(scratch.shape[0], xp, w2, b, yp, sh, sw, oy, ox, pad, relu, res, pad >= 0, scratch)


def input_grad_frame(dx_shape, dy_shape, kernel_size, stride, padding):
    """(Hp, Wp): the padded frame :func:`conv2d_backward_input_channellast`'s scratch images need."""
    (H, W), (P, Q), (R, S), (sh, sw), (ph, pw) = dx_shape[2:], dy_shape[2:], kernel_size, stride, padding
    return max(H + 2 * ph, (P - 1) * sh + R), max(W + 2 * pw, (Q - 1) * sw + S)


@task("r4 r4 a4 i i i i a4 i")
def _input_grad_task(dyl, wt, dx, sh, sw, ph, pw, scratch, t):
    """Task t of :func:`conv2d_backward_input_channellast`: its chunk of (image, channel block) pairs."""
    N, P, Q, K = dyl.shape
    R, S, Cw = wt.shape[0], wt.shape[1], wt.shape[3]
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    T, Wp = scratch.shape[0], scratch.shape[2]
    blocks = (C + DX_BLOCK - 1) // DX_BLOCK
    dy_flat, w_flat = dyl.reshape(dyl.size), wt.reshape(wt.size)
    work = scratch[t]
    work_flat = work.reshape(work.size)
    for pair in range(t * N * blocks // T, (t + 1) * N * blocks // T):
        n = pair // blocks
        c0 = (pair - n * blocks) * DX_BLOCK
        width = min(DX_BLOCK, C - c0)
        columns = min(DX_BLOCK, Cw - c0)
        zero_span(work_flat, 0, work.size)
        for p in range(P):
            for r in range(R):
                for s in range(S):
                    gemm_call(work_flat, ((p * sh + r) * Wp + s) * DX_BLOCK, sw * DX_BLOCK,
                              dy_flat, (n * P + p) * Q * K, K, 0, 1,
                              w_flat, ((r * S + s) * K) * Cw + c0, 0, Cw, 1, K, Q, columns)
        for i in range(H):
            for c in range(width):
                for j in range(W):
                    dx[n, c0 + c, i, j] = work[i + ph, pw + j, c]


_input_grad_tasks = parallel_tasks(_input_grad_task)


@njit
def conv2d_backward_input_channellast(dyl, wt, dx, sh, sw, ph, pw, scratch):
    """Input gradient from a channel-last ``dy``: each output pixel scatters ``dy @ w[:, :, r, s]``.

    The work is (image, block of up to 16 input channels) pairs, split into
    ``scratch.shape[0]`` equal chunks, one per task.  For each pair a task
    adds, for every output row p and tap (r, s), the product of dy's row
    (Q, K) and ``wt[r, s]`` (K, C)'s block into its padded channel-last
    scratch image ``scratch[t]``, then writes the image's interior to ``dx``
    in NCHW.

    Parameters
    ----------
    dyl : (N, P, Q, K) float array, dy in channel-last layout
    wt : (R, S, K, Cw) float array, ``wt[r, s, k, c] = w[k, c, r, s]``, Cw >= C;
        columns past C are read (when C is not a multiple of 8, pass them
        zero-padded to a multiple of 8: the micro-kernel then runs 8 wide)
    dx : (N, C, H, W) float array, NCHW, written in full
    sh, sw, ph, pw : int
    scratch : (T, Hp, Wp, 16) float array, T >= 1; (Hp, Wp) from :func:`input_grad_frame`
    """
    _input_grad_tasks(scratch.shape[0], dyl, wt, dx, sh, sw, ph, pw, scratch)


@task("r4 r4 a4 i i i i")
def _weight_grad_task(xp, dyl, partial, sh, sw, border, t):
    """Task t of :func:`conv2d_backward_weight_channellast`: its chunk of images, summed into ``partial[t]``."""
    N, Hp, Wp, C = xp.shape
    Pd, Qd, K = dyl.shape[1], dyl.shape[2], dyl.shape[3]
    P, Q = Pd - 2 * border, Qd - 2 * border
    T, R, L = partial.shape[0], partial.shape[1], partial.shape[2]
    x_flat, dy_flat = xp.reshape(xp.size), dyl.reshape(dyl.size)
    # output rows per product: as many as keep their dy (rows*Q*K numbers) within
    # 16 KiB of float32, so it stays in L1 while every block of dw's rows reads it
    rows = max(1, min(P, 4096 // (Q * K)))
    part = partial[t]
    part_flat = part.reshape(part.size)
    zero_span(part_flat, 0, part.size)
    for n in range(t * N // T, (t + 1) * N // T):
        for p0 in range(0, P, rows):
            for r in range(R):
                # output rows p0.. as the outer level of the reduction, their pixels as the inner
                gemm_call(part_flat, r * L * K, K,
                          x_flat, ((n * Hp + p0 * sh + r) * Wp) * C, 1, sh * Wp * C, sw * C,
                          dy_flat, ((n * Pd + border + p0) * Qd + border) * K, Qd * K, K, min(rows, P - p0), Q,
                          L, K)


_weight_grad_tasks = parallel_tasks(_weight_grad_task)


@task("r4 a4 i")
def _sum_partials(partial, dw, k):
    """``dw[k] = sum_t partial[t, :, :, k]``, reordered, in task order."""
    C, R, S = dw.shape[1], dw.shape[2], dw.shape[3]
    for c in range(C):
        for r in range(R):
            for s in range(S):
                total = dw.dtype.type(0)
                for t in range(partial.shape[0]):
                    total += partial[t, r, s * C + c, k]
                dw[k, c, r, s] = total


_sum_partials_tasks = parallel_tasks(_sum_partials)


@njit
def conv2d_backward_weight_channellast(xp, dyl, dw, partial, sh, sw, border=0):
    """Weight gradient from the padded channel-last x and channel-last dy.

    ``dw[k, c, r, s] = sum_{n, p, q} dy[n, p, q, k] * xp[n, p*sh + r, q*sw + s, c]``:
    for each image, kernel row and chunk of output rows, the (S*C, pixels)
    transposed windows of x times dy's pixels (pixels, K), one register-blocked
    product per chunk (chunks as large as keep dy's part in L1).
    Images are split into ``partial.shape[0]`` chunks, one per task, each
    summing into its own ``partial[t]`` (R, S*C, K); the partial sums are
    then added in chunk order.

    Parameters
    ----------
    xp : (N, Hp, Wp, C) float array, the zero-padded input
    dyl : (N, P + 2*border, Q + 2*border, K) float array: dy channel-last
        from row and column ``border`` on (the frame is not read; border 0: just dy)
    dw : (K, C, R, S) float array, written in full
    partial : (T, R, S*C, K) float array, scratch (T >= 1 chunks)
    sh, sw : int
    border : int, default 0
        With ``R - 1 - ph``, the padded copy of dy that the stride-1 input
        gradient reads serves here too.
    """
    _weight_grad_tasks(partial.shape[0], xp, dyl, partial, sh, sw, border)
    _sum_partials_tasks(dw.shape[0], partial, dw)
