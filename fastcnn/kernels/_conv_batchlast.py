"""Raw direct-convolution kernels that vectorise over the batch.

The images of a batch are the vector axis, for layers with too few channels
to vectorise over (LeNet's 1, 6 and 16).  The forward pass and the weight
gradient read a *batch-last* layout, ``xt[c, i, j, :]`` holding pixel (i, j)
of channel c for every image (``to_batch_last`` converts, once per call):
with 64 images the innermost loop is 8 AVX2 vectors long, unit-stride and
branch-free whatever the channel counts or image sizes, and each task
computes 4 output channels at once, so every input vector loaded feeds 4
multiply-adds.  When the channel count is not a multiple of ``BLOCK``, the
last task of a row handles the 1-3 channels left with a narrower loop.

The input gradient reads dy in the *pixel-major* batch-last layout
``dyb[p, q, k, :]`` (``to_pixel_batch_last``), where the taps that reach one
input pixel are a few contiguous (K, N) blocks, and runs each pixel as a
register-blocked matrix product (4 input channels x 16 images per block).

Outputs are written straight back in NCHW, so no layout leaks out.  No
workspace proportional to the im2col matrix is used: the extra memory is the
layout copies of the input and of ``dy``, the per-task accumulators, and
one row buffer per task for the input gradient.
"""

import numpy as np
from numba import prange

from ..config import njit, pjit
from ._gemm import gemm_call
from ._loops import valid_range, zero_span
from ._tasks import parallel_tasks, task

BLOCK = 4

# images per column block of the input-gradient kernel (the micro-kernel's width)
_COLUMNS = 16


@njit(inline="always")
def _fma_span(src, a0, a1, a2, a3, w0, w1, w2, w3, width):
    """a_i[m] += w_i * src[m] for the first ``width`` (1-4) accumulators."""
    if width == 4:
        for m in range(src.shape[0]):
            v = src[m]
            a0[m] += w0 * v
            a1[m] += w1 * v
            a2[m] += w2 * v
            a3[m] += w3 * v
    elif width == 3:
        for m in range(src.shape[0]):
            v = src[m]
            a0[m] += w0 * v
            a1[m] += w1 * v
            a2[m] += w2 * v
    elif width == 2:
        for m in range(src.shape[0]):
            v = src[m]
            a0[m] += w0 * v
            a1[m] += w1 * v
    else:
        for m in range(src.shape[0]):
            a0[m] += w0 * src[m]


@pjit
def to_batch_last(a, out):
    """Write ``a`` (N, C, H, W) into ``out`` (C, H, W, N).

    ``out[c, i, j, n] = a[n, c, i, j]``: the batch-last copy that
    :func:`conv2d_forward_batchlast` (of x) and
    :func:`conv2d_backward_weight_batchlast` (of x and of dy) read.

    Parameters
    ----------
    a : (N, C, H, W) float array, read (x, or dy as (N, K, P, Q))
    out : (C, H, W, N) array of a's dtype, written in full
    """
    N, C, H, W = a.shape
    for t in prange(C * H):
        c = t // H
        i = t - c * H
        for j in range(W):
            for n in range(N):
                out[c, i, j, n] = a[n, c, i, j]


@task("r4 r4 r1 a4 i i i i i")
def _forward_task(xt, w, b, y, sh, sw, ph, pw, t):
    """Task ``t = kb*P + p`` of :func:`conv2d_forward_batchlast`: output row p of channels ``4kb..4kb+3``."""
    C, H, W, N = xt.shape
    K, P, Q = y.shape[1], y.shape[2], y.shape[3]
    R, S = w.shape[2], w.shape[3]
    x_rows = xt.reshape(C, H, W * N)
    kb = t // P
    p = t - kb * P
    k0 = kb * BLOCK
    width = min(BLOCK, K - k0)
    k1, k2, k3 = min(k0 + 1, K - 1), min(k0 + 2, K - 1), min(k0 + 3, K - 1)  # repeat the last past K
    acc = np.empty((BLOCK, Q * N), dtype=y.dtype)
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    b0, b1, b2, b3 = b[k0], b[k1], b[k2], b[k3]
    for m in range(Q * N):
        a0[m] = b0
        a1[m] = b1
        a2[m] = b2
        a3[m] = b3
    for c in range(C):
        for r in range(R):
            ih = p * sh - ph + r
            if ih < 0 or ih >= H:
                continue
            xr = x_rows[c, ih]
            for s in range(S):
                q_lo, q_hi = valid_range(s, pw, sw, W, Q)
                w0, w1, w2, w3 = w[k0, c, r, s], w[k1, c, r, s], w[k2, c, r, s], w[k3, c, r, s]
                # stride 1: one contiguous span for all of [q_lo, q_hi); otherwise
                # one pixel at a time.  Zero-based loops over slices vectorise;
                # offset indices would not.
                for q in range(q_lo, q_hi if sw != 1 else q_lo + 1):
                    span = (q_hi - q_lo if sw == 1 else 1) * N
                    start = (q * sw - pw + s) * N
                    o = q * N
                    _fma_span(xr[start:start + span], a0[o:o + span], a1[o:o + span], a2[o:o + span],
                              a3[o:o + span], w0, w1, w2, w3, width)
    for kk in range(min(BLOCK, K - k0)):
        row = acc[kk]
        for n in range(N):
            for q in range(Q):
                y[n, k0 + kk, p, q] = row[q * N + n]


_forward_tasks = parallel_tasks(_forward_task)


@njit
def conv2d_forward_batchlast(xt, w, b, y, sh, sw, ph, pw):
    """Convolution forward from a batch-last input, 4 output channels per task.

    A task computes one output row of 4 channels for every image, accumulating
    into a (4, Q*N) buffer: with stride 1 along the width, each kernel tap adds
    a contiguous input span to a contiguous accumulator span.

    Parameters
    ----------
    xt : (C, H, W, N) float array, the input in batch-last layout
    w : (K, C, R, S) float array
    b : (K,) float array
    y : (N, K, P, Q) float array, NCHW, written in full
    sh, sw, ph, pw : int
    """
    K, P = y.shape[1], y.shape[2]
    _forward_tasks((K + BLOCK - 1) // BLOCK * P, xt, w, b, y, sh, sw, ph, pw)


@task("r4 a4 i")
def _pixel_batch_last_row(a, out, i):
    """Row i of :func:`to_pixel_batch_last`: ``out[i, j, c, n] = a[n, c, i, j]``, zeros past N."""
    N, C, W = a.shape[0], a.shape[1], a.shape[3]
    Nw = out.shape[3]
    zero = out.dtype.type(0)
    for c in range(C):
        j0 = 0
        while j0 + 8 <= W:
            n0 = 0
            while n0 + 8 <= N:
                for jj in range(8):
                    d = out[i, j0 + jj, c]
                    for nn in range(8):
                        d[n0 + nn] = a[n0 + nn, c, i, j0 + jj]
                n0 += 8
            for n in range(n0, N):
                for jj in range(8):
                    out[i, j0 + jj, c, n] = a[n, c, i, j0 + jj]
            j0 += 8
        for j in range(j0, W):
            for n in range(N):
                out[i, j, c, n] = a[n, c, i, j]
        for j in range(W):
            for n in range(N, Nw):
                out[i, j, c, n] = zero


_pixel_batch_last_rows = parallel_tasks(_pixel_batch_last_row)


@njit
def to_pixel_batch_last(a, out):
    """Write ``a`` (N, C, H, W) into ``out`` (H, W, C, Nw), Nw >= N, zeroing the columns past N.

    Copied in 8 x 8 tiles of (images, columns), each written as 8 short
    contiguous spans: a plain loop strides through memory on one side, and
    both sides' strides are often multiples of 4 KiB, which thrashes the cache.

    Parameters
    ----------
    a : (N, C, H, W) float array, read (dy as (N, K, P, Q) for
        :func:`conv2d_backward_input_batchlast`)
    out : (H, W, C, Nw) array of a's dtype, Nw >= N, written in full:
        ``out[i, j, c, n] = a[n, c, i, j]`` for n < N, zero for N <= n < Nw
    """
    _pixel_batch_last_rows(a.shape[2], a, out)


@task("r4 r4 a4 a4 i i i i i")
def _input_grad_task(dyb, wf, dx, scratch, sh, sw, ph, pw, t):
    """Task t of :func:`conv2d_backward_input_batchlast`: its chunk of rows of dx, through ``scratch[t]``."""
    P, Q, K, Nw = dyb.shape
    Cw, R, S = wf.shape[0], wf.shape[1], wf.shape[2]
    N, C, H, W = dx.shape
    T = scratch.shape[0]
    dy_flat, w_flat = dyb.reshape(dyb.size), wf.reshape(wf.size)
    row = Q * K * Nw  # elements per dy row
    acc = scratch[t]
    acc_flat = acc.reshape(acc.size)
    for i in range(t * H // T, (t + 1) * H // T):
        zero_span(acc_flat, 0, acc.size)
        for n0 in range(0, Nw, _COLUMNS):
            width = min(_COLUMNS, Nw - n0)
            for j in range(W):
                # kernel columns s reaching pixel j: q*sw = j + pw - s with 0 <= q < Q
                jp = j + pw
                s_first = jp % sw
                if jp - (Q - 1) * sw > s_first:
                    s_first += (jp - (Q - 1) * sw - s_first + sw - 1) // sw * sw
                s_last = min(S - 1, jp)
                if s_first > s_last:
                    continue
                ns = (s_last - s_first) // sw + 1
                if sh == 1 and sw == 1:
                    # kernel rows r_lo..r_hi-1 (dy rows descending) as the outer level;
                    # columns s_last down to s_first (q ascending) times K as one inner
                    # level, contiguous in both dyb and wf
                    r_lo = max(0, i + ph - P + 1)
                    r_hi = min(R, i + ph + 1)
                    if r_lo < r_hi:
                        gemm_call(acc_flat, j * Nw + n0, W * Nw,
                                  w_flat, (r_lo * S + S - 1 - s_last) * K, R * S * K, S * K, 1,
                                  dy_flat, (i + ph - r_lo) * row + (jp - s_last) * K * Nw + n0, -row, Nw,
                                  r_hi - r_lo, ns * K, Cw, width)
                    continue
                for r in range(R):
                    pr = i + ph - r
                    if pr < 0 or pr % sh != 0 or pr // sh >= P:
                        continue
                    # columns s_first, s_first + sw, ... (q descending) outer, K inner
                    gemm_call(acc_flat, j * Nw + n0, W * Nw,
                              w_flat, (r * S + S - 1 - s_first) * K, R * S * K, -sw * K, 1,
                              dy_flat, (pr // sh) * row + (jp - s_first) // sw * K * Nw + n0, -K * Nw, Nw,
                              ns, K, Cw, width)
        for c in range(C):
            for n in range(N):
                for j in range(W):
                    dx[n, c, i, j] = acc[c, j, n]


_input_grad_tasks = parallel_tasks(_input_grad_task)


@njit
def conv2d_backward_input_batchlast(dyb, wf, dx, sh, sw, ph, pw, scratch):
    """Input gradient as a register-blocked matrix product per input pixel, the batch as columns.

    ``dx[n, c, i, j] = sum_{r, s, k} w[k, c, r, s] * dy[n, k, p, q]`` over the
    taps with ``p*sh = i + ph - r`` and ``q*sw = j + pw - s`` inside dy (a
    gather: the full correlation of dy with the 180-degree-rotated kernel).
    For one pixel (i, j) that is a (Cw, taps*K) @ (taps*K, N) product: the
    weights against dy's rows, which in the (P, Q, K, N) layout
    (:func:`to_pixel_batch_last`) are N contiguous numbers each, so
    :func:`fastcnn.kernels._gemm.gemm_acc` runs it with its micro-kernels,
    blocks of input channels by 16 images in registers over the whole
    reduction.  With stride 1 the valid taps of a pixel form one
    (rows) x (columns x K) block, one call; otherwise one call per valid
    kernel row.  Images go 16 at a time across a whole output row, so the dy
    rows a task reads stay in cache.

    Rows of dx are split into ``scratch.shape[0]`` equal chunks, one per task,
    accumulated in ``scratch[t]`` and written out in NCHW: no race, nothing
    allocated.

    Parameters
    ----------
    dyb : (P, Q, K, Nw) float array, dy in pixel-major batch-last layout, Nw >= N
        (columns past N are computed and dropped; zero them, and use a
        multiple of 8 so the micro-kernel runs full width)
    wf : (Cw, R, S, K) float array, ``wf[c, r, S-1-s, k] = w[k, c, r, s]``
        (kernel columns reversed), Cw >= C (rows past C are computed and
        dropped; zero-pad C to a multiple of 4)
    dx : (N, C, H, W) float array, NCHW, written in full
    sh, sw, ph, pw : int
    scratch : (T, Cw, W, Nw) float array, T >= 1 tasks' row buffers
    """
    _input_grad_tasks(scratch.shape[0], dyb, wf, dx, scratch, sh, sw, ph, pw)


@task("r4 r4 a4 i i i i i")
def _weight_grad_task(dyt, xt, dw, sh, sw, ph, pw, t):
    """Task ``t = k*C + c`` of :func:`conv2d_backward_weight_batchlast`: ``dw[k, c]``."""
    K, P, Q, N = dyt.shape
    C, H, W = xt.shape[0], xt.shape[1], xt.shape[2]
    R, S = dw.shape[2], dw.shape[3]
    dy_rows = dyt.reshape(K, P, Q * N)
    x_rows = xt.reshape(C, H, W * N)
    zero = dw.dtype.type(0)
    k = t // C
    c = t - k * C
    for r in range(R):
        for s in range(S):
            q_lo, q_hi = valid_range(s, pw, sw, W, Q)
            acc = zero
            for p in range(P):
                ih = p * sh - ph + r
                if ih < 0 or ih >= H:
                    continue
                dv = dy_rows[k, p]
                xv = x_rows[c, ih]
                if sw == 1:
                    # zero-based loops over slices vectorise; offset indices would not
                    span = (q_hi - q_lo) * N
                    ds = dv[q_lo * N:q_lo * N + span]
                    xs = xv[(q_lo + s - pw) * N:(q_lo + s - pw) * N + span]
                    for m in range(span):
                        acc += ds[m] * xs[m]
                else:
                    for q in range(q_lo, q_hi):
                        ds = dv[q * N:(q + 1) * N]
                        xs = xv[(q * sw - pw + s) * N:(q * sw - pw + s + 1) * N]
                        for n in range(N):
                            acc += ds[n] * xs[n]
            dw[k, c, r, s] = acc


_weight_grad_tasks = parallel_tasks(_weight_grad_task)


@njit
def conv2d_backward_weight_batchlast(dyt, xt, dw, sh, sw, ph, pw):
    """Weight gradient from batch-last ``dy`` and ``x``: dot products over the batch.

    ``dw[k, c, r, s] = sum_{p, q} sum_n dy[n, k, p, q] * x[n, c, p*sh - ph + r, q*sw - pw + s]``.
    With stride 1 along the width, the valid (q, n) span of an output row is
    contiguous in both batch-last arrays, so each row is one long dot product;
    otherwise each pixel's dot runs over the batch.  Each task owns one
    (k, c) slice of dw, so there is no race.

    Parameters
    ----------
    dyt : (K, P, Q, N) float array
    xt : (C, H, W, N) float array
    dw : (K, C, R, S) float array, written in full
    sh, sw, ph, pw : int
    """
    _weight_grad_tasks(dyt.shape[0] * xt.shape[0], dyt, xt, dw, sh, sw, ph, pw)
