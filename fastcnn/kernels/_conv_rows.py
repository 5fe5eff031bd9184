"""Raw NCHW stride-1 direct convolution over *wide rows*: register-blocked products, no layout copies.

For layers with few input channels (LeNet's 1 and 6), where neither the
channels nor, for small batches, the batch fill a vector.  Each task takes
whole images.  It copies image n into a zero-padded scratch plane per channel
(``Hp = H + 2ph`` rows of ``Wp = W + 2pw``, flat), so that output pixel
(p, q) and kernel tap (r, s) read the flat element ``j + r*Wp + s`` with
``j = p*Wp + q``: over the *wide* output index j (the padded width, the
columns ``q >= Q`` computed and dropped) every tap is one contiguous span of
the padded plane.  Then

* the forward pass is, per input channel, one product
  ``out (Kw, L) += w[:, c] (Kw, R*S) @ taps (R*S, L)``: the register-blocked
  micro-kernels of :func:`fastcnn.kernels._gemm.gemm_call` with the kernel rows
  as its outer and the kernel columns as its inner reduction level, the
  overlapping windows of the padded plane as operand, nothing unfolded;
* the weight gradient is, per (c, r), blocks of 4 output channels x 4 kernel
  columns of dot products ``sum_j dyw[k, j] * plane[c, j + r*Wp + s]``
  with dy copied to the same wide rows (zeros at ``q >= Q``): 16 sums
  accumulated in registers, each loaded span feeding 4 of them.

Shape vocabulary: x (N, C, H, W), w (K, C, R, S), y and dy (N, K, P, Q),
stride 1, zero padding (ph, pw), ``P = Hp - R + 1``, ``Q = Wp - S + 1``;
``Kw`` is K rounded up to a multiple of 4 (the extra rows of weights and of
the wide dy are zero), ``L`` is ``P*Wp`` rounded up to a multiple of 8.
The scratch of a task is the padded image (:func:`rows_padded_length` elements), its
wide output or wide dy (Kw, L), and for the weight gradient a (Kw, C, R, S)
partial sum; tasks take contiguous chunks of the batch and the partial sums
are added in task order, so results depend on the task count only.
"""


from ..config import njit
from ._gemm import gemm_call
from ._loops import zero_span
from ._tasks import parallel_tasks, task

#: Output channels per register block (rows of the wide output and of the wide dy are padded to a multiple).
K_BLOCK = 4


def rows_padded_length(C, Hp, Wp, R, S, L):
    """Elements of a task's padded image: C planes of ``Hp*Wp``, and slack for the last tap's span of ``L``.

    The span of tap (r, s) of channel c starts at ``(c*Hp + r)*Wp + s`` and
    is ``L`` (the wide output length) long.
    """
    return max(C * Hp * Wp, (C - 1) * Hp * Wp + (R - 1) * Wp + S - 1 + L)


@njit(inline="always")
def _pad_image(x, n, xf, ph, pw, Hp, Wp):
    """Copy x[n] (C, H, W) into the interior of the zero-bordered flat planes ``xf``."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for c in range(C):
        for i in range(H):
            src = x[n, c, i]
            dst = xf[(c * Hp + i + ph) * Wp + pw:(c * Hp + i + ph) * Wp + pw + W]
            for j in range(W):
                dst[j] = src[j]


@task("r4 r4 r1 a4 a2 a3 i i i")
def _forward_task(x, wk, b, y, xs, ys, ph, pw, t):
    """Task t of :func:`conv2d_forward_rows`: its chunk of images, through ``xs[t]`` and ``ys[t]``."""
    N, C, H, W = x.shape
    Kw, R, S = wk.shape[0], wk.shape[2], wk.shape[3]
    K, P, Q = y.shape[1], y.shape[2], y.shape[3]
    Hp, Wp = H + 2 * ph, W + 2 * pw
    T, L = ys.shape[0], ys.shape[2]
    w_flat = wk.reshape(wk.size)
    zero = y.dtype.type(0)
    xf = xs[t]
    out = ys[t]
    out_flat = out.reshape(out.size)
    zero_span(xf, 0, xf.shape[0])  # the borders and the slack stay zero
    for n in range(t * N // T, (t + 1) * N // T):
        _pad_image(x, n, xf, ph, pw, Hp, Wp)
        for k in range(Kw):
            v = b[k] if k < K else zero
            row = out_flat[k * L:(k + 1) * L]
            for m in range(L):
                row[m] = v
        for c in range(C):
            # out[k, j] += sum_{r, s} wk[k, c, r, s] * xf[c*Hp*Wp + r*Wp + s + j]
            gemm_call(out_flat, 0, L, w_flat, c * R * S, C * R * S, S, 1,
                      xf, c * Hp * Wp, Wp, 1, R, S, Kw, L)
        for k in range(K):
            for p in range(P):
                src = out[k, p * Wp:p * Wp + Q]
                dst = y[n, k, p]
                for q in range(Q):
                    dst[q] = src[q]


_forward_tasks = parallel_tasks(_forward_task)


@njit
def conv2d_forward_rows(x, wk, b, y, ph, pw, xs, ys):
    """Stride-1 convolution forward, one image per step of a task, as products over wide rows.

    ``y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xp[n, c, p + r, q + s]``
    (``xp``: x zero-padded by (ph, pw)).  The output of an image is computed
    as ``out[k, p*Wp + q]`` (Kw, L) in ``ys[t]``, one :func:`gemm_call` per
    input channel, then written to y without the wide columns.

    Parameters
    ----------
    x : (N, C, H, W) float array, read
    wk : (Kw, C, R, S) array of x's dtype, the weights, zero rows past K (Kw a multiple of 4)
    b : (K,) array of x's dtype (zeros for no bias)
    y : (N, K, P, Q) array of x's dtype, written in full (P = H + 2ph - R + 1, Q likewise)
    ph, pw : int
    xs : (T, Lx) array of x's dtype, one padded image per task,
        ``Lx >= rows_padded_length(C, Hp, Wp, R, S, L)``; overwritten
    ys : (T, Kw, L) array of x's dtype, one wide output per task, ``L >= P*(W + 2pw)``
        a multiple of 8; overwritten
    """
    _forward_tasks(ys.shape[0], x, wk, b, y, xs, ys, ph, pw)


@njit(inline="always")
def _dots_4x4(d0, d1, d2, d3, xf, base, length):
    """The 16 sums ``sum_j d_i[j] * xf[base + s + j]`` for i, s < 4 (a register block; LLVM vectorises over j)."""
    zero = xf.dtype.type(0)
    x0, x1, x2, x3 = (xf[base:base + length], xf[base + 1:base + 1 + length],
                      xf[base + 2:base + 2 + length], xf[base + 3:base + 3 + length])
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero
    for j in range(length):
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        e = d0[j]
        a00 += e * v0
        a01 += e * v1
        a02 += e * v2
        a03 += e * v3
        e = d1[j]
        a10 += e * v0
        a11 += e * v1
        a12 += e * v2
        a13 += e * v3
        e = d2[j]
        a20 += e * v0
        a21 += e * v1
        a22 += e * v2
        a23 += e * v3
        e = d3[j]
        a30 += e * v0
        a31 += e * v1
        a32 += e * v2
        a33 += e * v3
    return (a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33)


@njit(inline="always")
def _dots_4x1(d0, d1, d2, d3, xf, base, length):
    """The 4 sums ``sum_j d_i[j] * xf[base + j]`` for i < 4."""
    zero = xf.dtype.type(0)
    x0 = xf[base:base + length]
    a0 = a1 = a2 = a3 = zero
    for j in range(length):
        v = x0[j]
        a0 += d0[j] * v
        a1 += d1[j] * v
        a2 += d2[j] * v
        a3 += d3[j] * v
    return a0, a1, a2, a3


@njit(inline="always")
def _dots_2x4(d0, d1, xf, base, length):
    """The 8 sums ``sum_j d_i[j] * xf[base + s + j]`` for i < 2, s < 4."""
    zero = xf.dtype.type(0)
    x0, x1, x2, x3 = (xf[base:base + length], xf[base + 1:base + 1 + length],
                      xf[base + 2:base + 2 + length], xf[base + 3:base + 3 + length])
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
    for j in range(length):
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        e = d0[j]
        a00 += e * v0
        a01 += e * v1
        a02 += e * v2
        a03 += e * v3
        e = d1[j]
        a10 += e * v0
        a11 += e * v1
        a12 += e * v2
        a13 += e * v3
    return (a00, a01, a02, a03, a10, a11, a12, a13)


@njit(inline="always")
def _dots_2x1(d0, d1, xf, base, length):
    """The 2 sums ``sum_j d_i[j] * xf[base + j]`` for i < 2."""
    zero = xf.dtype.type(0)
    x0 = xf[base:base + length]
    a0 = a1 = zero
    for j in range(length):
        v = x0[j]
        a0 += d0[j] * v
        a1 += d1[j] * v
    return a0, a1


@njit(inline="always")
def _weight_grad_block4(d, k0, xf, acc, C, R, S, Hp, Wp, length):
    """acc[k0:k0+4, c, r, s] += the image's dot products, 4 output channels at a time."""
    d0, d1, d2, d3 = d[k0, :length], d[k0 + 1, :length], d[k0 + 2, :length], d[k0 + 3, :length]
    for c in range(C):
        for r in range(R):
            base = (c * Hp + r) * Wp
            s0 = 0
            while s0 + 4 <= S:
                a = _dots_4x4(d0, d1, d2, d3, xf, base + s0, length)
                for i in range(4):
                    for s in range(4):
                        acc[k0 + i, c, r, s0 + s] += a[4 * i + s]
                s0 += 4
            while s0 < S:
                a0, a1, a2, a3 = _dots_4x1(d0, d1, d2, d3, xf, base + s0, length)
                acc[k0, c, r, s0] += a0
                acc[k0 + 1, c, r, s0] += a1
                acc[k0 + 2, c, r, s0] += a2
                acc[k0 + 3, c, r, s0] += a3
                s0 += 1


@njit(inline="always")
def _weight_grad_block2(d, k0, xf, acc, C, R, S, Hp, Wp, length):
    """acc[k0:k0+2, c, r, s] += the image's dot products, for the last 1-2 output channels."""
    d0, d1 = d[k0, :length], d[k0 + 1, :length]
    for c in range(C):
        for r in range(R):
            base = (c * Hp + r) * Wp
            s0 = 0
            while s0 + 4 <= S:
                a = _dots_2x4(d0, d1, xf, base + s0, length)
                for i in range(2):
                    for s in range(4):
                        acc[k0 + i, c, r, s0 + s] += a[4 * i + s]
                s0 += 4
            while s0 < S:
                a0, a1 = _dots_2x1(d0, d1, xf, base + s0, length)
                acc[k0, c, r, s0] += a0
                acc[k0 + 1, c, r, s0] += a1
                s0 += 1


@task("r4 r4 a2 a3 a5 i i i")
def _weight_grad_task(dy, x, xs, ds, partial, ph, pw, t):
    """Task t of :func:`conv2d_backward_weight_rows`: its chunk of images summed into ``partial[t]``."""
    N, C, H, W = x.shape
    K, P, Q = dy.shape[1], dy.shape[2], dy.shape[3]
    R, S = partial.shape[3], partial.shape[4]
    Hp, Wp = H + 2 * ph, W + 2 * pw
    T = ds.shape[0]
    length = P * Wp
    xf = xs[t]
    d = ds[t]
    acc = partial[t]
    zero_span(xf, 0, xf.shape[0])  # borders and slack stay zero
    d_flat = d.reshape(d.size)
    zero_span(d_flat, 0, d.size)  # columns q >= Q and rows k >= K stay zero
    acc_flat = acc.reshape(acc.size)
    zero_span(acc_flat, 0, acc.size)
    for n in range(t * N // T, (t + 1) * N // T):
        _pad_image(x, n, xf, ph, pw, Hp, Wp)
        for k in range(K):
            for p in range(P):
                src = dy[n, k, p]
                dst = d[k, p * Wp:p * Wp + Q]
                for q in range(Q):
                    dst[q] = src[q]
        k0 = 0
        while k0 + 3 <= K:  # blocks of 4 channels (the 4th a zero row when 3 are left)
            _weight_grad_block4(d, k0, xf, acc, C, R, S, Hp, Wp, length)
            k0 += 4
        if k0 < K:  # 1 or 2 left: a block of 2 (the 2nd a zero row when 1 is left)
            _weight_grad_block2(d, k0, xf, acc, C, R, S, Hp, Wp, length)


_weight_grad_tasks = parallel_tasks(_weight_grad_task)


@njit
def conv2d_backward_weight_rows(dy, x, dw, ph, pw, xs, ds, partial):
    """Stride-1 weight gradient as register-blocked dot products over wide rows.

    ``dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * xp[n, c, p + r, q + s]``.
    Task t sums its chunk of images into ``partial[t]`` (for each image:
    x padded into ``xs[t]``, dy into the wide rows ``ds[t]``, then for every
    (c, r) blocks of 4 output channels x 4 kernel columns of dot products
    over the wide index); the tasks' sums are added in task order at the end.

    Parameters
    ----------
    dy : (N, K, P, Q) float array, read
    x : (N, C, H, W) array of dy's dtype, read
    dw : (K, C, R, S) array of dy's dtype, written in full
    ph, pw : int
    xs : (T, Lx) array of dy's dtype, one padded image per task (as for
        :func:`conv2d_forward_rows`); overwritten
    ds : (T, Kw, L) array of dy's dtype, one wide dy per task (Kw >= K a
        multiple of 4, ``L >= P*(W + 2pw)``); overwritten
    partial : (T, Kw, C, R, S) array of dy's dtype, the tasks' sums; overwritten
    """
    K, C, R, S = dw.shape
    T = ds.shape[0]
    _weight_grad_tasks(T, dy, x, xs, ds, partial, ph, pw)
    for k in range(K):
        for c in range(C):
            for r in range(R):
                for s in range(S):
                    total = partial[0, k, c, r, s]
                    for t in range(1, T):
                        total += partial[t, k, c, r, s]
                    dw[k, c, r, s] = total
