"""Raw direct-convolution kernels that vectorise over the batch.

The images of a batch are the vector axis: inputs are read in a *batch-last*
layout, ``xt[c, i, j, :]`` holding pixel (i, j) of channel c for every image
(``to_batch_last`` converts, once per call).  With 64 images the innermost loop
is 8 AVX2 vectors long, unit-stride and branch-free whatever the channel
counts or image sizes, which is what LeNet-sized layers (6 or 16 channels,
10-28 pixel rows) need.  Each task also computes 4 output channels at once
(register blocking), so every input vector loaded feeds 4 multiply-adds.

Outputs are written straight back in NCHW, so no layout leaks out.  No
workspace proportional to the im2col matrix is used: the only extra memory is
the batch-last copy of the input (and of ``dy`` for the backward pass).

When the channel count is not a multiple of ``BLOCK``, the last task of a
row handles the 1-3 channels left with a narrower loop, so no work is spent
on padding.
"""

import numpy as np
from numba import prange

from ..config import njit, pjit
from ._direct import valid_range

BLOCK = 4


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
    """Write ``a`` (N, C, H, W) into ``out`` (C, H, W, N)."""
    N, C, H, W = a.shape
    for t in prange(C * H):
        c = t // H
        i = t - c * H
        for j in range(W):
            for n in range(N):
                out[c, i, j, n] = a[n, c, i, j]


@pjit
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
    C, H, W, N = xt.shape
    K, P, Q = y.shape[1], y.shape[2], y.shape[3]
    R, S = w.shape[2], w.shape[3]
    x_rows = xt.reshape(C, H, W * N)
    blocks = (K + BLOCK - 1) // BLOCK
    for t in prange(blocks * P):
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


@pjit
def conv2d_backward_input_batchlast(dyt, wt, dx, sh, sw, ph, pw):
    """Input gradient from a batch-last ``dy``, 4 input channels per task (a gather).

    ``dx[n, c, i, j] = sum_{k, r, s} w[k, c, r, s] * dy[n, k, p, q]`` over the
    (p, q) with ``p*sh - ph + r = i`` and ``q*sw - pw + s = j``: the full
    correlation of dy with the 180-degree-rotated kernel.  A task owns one row
    of 4 channels of dx for every image, so there is no race; with stride 1
    along the width each tap adds a contiguous span of dy.

    Parameters
    ----------
    dyt : (K, P, Q, N) float array, dy in batch-last layout
    wt : (C, K, R, S) float array: the weight with its first two axes swapped
    dx : (N, C, H, W) float array, NCHW, written in full
    sh, sw, ph, pw : int
    """
    K, P, Q, N = dyt.shape
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    R, S = wt.shape[2], wt.shape[3]
    dy_rows = dyt.reshape(K, P, Q * N)
    blocks = (C + BLOCK - 1) // BLOCK
    for t in prange(blocks * H):
        cb = t // H
        i = t - cb * H
        c0 = cb * BLOCK
        width = min(BLOCK, C - c0)
        c1, c2, c3 = min(c0 + 1, C - 1), min(c0 + 2, C - 1), min(c0 + 3, C - 1)  # repeat the last past C
        acc = np.zeros((BLOCK, W * N), dtype=dx.dtype)
        a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
        for r in range(R):
            pr = i + ph - r
            if pr < 0 or pr % sh != 0:
                continue
            p = pr // sh
            if p >= P:
                continue
            for s in range(S):
                # output columns q in [q_lo, q_hi) reach input column q*sw - pw + s
                q_lo, q_hi = valid_range(s, pw, sw, W, Q)
                for q in range(q_lo, q_hi if sw != 1 else q_lo + 1):  # as in the forward kernel
                    span = (q_hi - q_lo if sw == 1 else 1) * N
                    o = (q * sw - pw + s) * N
                    for k in range(K):
                        w0, w1, w2, w3 = wt[c0, k, r, s], wt[c1, k, r, s], wt[c2, k, r, s], wt[c3, k, r, s]
                        _fma_span(dy_rows[k, p][q * N:q * N + span], a0[o:o + span], a1[o:o + span],
                                  a2[o:o + span], a3[o:o + span], w0, w1, w2, w3, width)
        for cc in range(min(BLOCK, C - c0)):
            row = acc[cc]
            for n in range(N):
                for j in range(W):
                    dx[n, c0 + cc, i, j] = row[j * N + n]


@pjit
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
    K, P, Q, N = dyt.shape
    C, H, W = xt.shape[0], xt.shape[1], xt.shape[2]
    R, S = dw.shape[2], dw.shape[3]
    dy_rows = dyt.reshape(K, P, Q * N)
    x_rows = xt.reshape(C, H, W * N)
    zero = dw.dtype.type(0)
    for t in prange(K * C):
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
