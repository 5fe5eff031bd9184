"""Raw locally connected (unshared convolution) kernels.

A locally connected layer is a convolution whose kernel is not shared across
output positions: every output pixel (p, q) has its own (K, C, R, S) filter
bank.  Notation: x (N, C, H, W); w (P, Q, K, C, R, S); b (K, P, Q); y and dy
(N, K, P, Q); strides ``sh, sw`` and zero paddings ``ph, pw`` are ints.
Output pixel (p, q) reads input pixel (p*sh - ph + r, q*sw - pw + s) for tap
(r, s), exactly as :mod:`._direct`.

The weights are the bulk of the memory traffic (P*Q times a convolution's), so
forward and weight gradient run over output positions with the batch inside:
each position's filters are read once per call.  Every task owns
what it writes: forward and weight gradient over positions (p, q), input
gradient over (image, input channel), bias gradient over output channels.
"""

from numba import prange

from ..config import njit, pjit
from ._tasks import parallel_tasks, task


@task("r4 r6 r3 a4 i i i i i")
def _forward_position(x, w, b, y, sh, sw, ph, pw, t):
    """Output position t (row-major over P x Q) of :func:`locally_connected2d_forward_kernel`."""
    N, C, H, W = x.shape
    P, Q, K, _, R, S = w.shape
    p = t // Q
    q = t - p * Q
    i0 = p * sh - ph
    j0 = q * sw - pw
    r_lo = max(0, -i0)
    r_hi = min(R, H - i0)
    s_lo = max(0, -j0)
    s_hi = min(S, W - j0)
    for n in range(N):
        for k in range(K):
            acc = b[k, p, q]
            for c in range(C):
                for r in range(r_lo, r_hi):
                    for s in range(s_lo, s_hi):
                        acc += w[p, q, k, c, r, s] * x[n, c, i0 + r, j0 + s]
            y[n, k, p, q] = acc


_forward_positions = parallel_tasks(_forward_position)


@task("r4 r6 a4 i i i i i")
def _input_grad_plane(dy, w, dx, sh, sw, ph, pw, t):
    """Plane t (image t // C, channel t % C) of :func:`locally_connected2d_backward_input_kernel`."""
    N, C, H, W = dx.shape
    P, Q, K, _, R, S = w.shape
    n = t // C
    c = t - n * C
    for i in range(H):
        for j in range(W):
            dx[n, c, i, j] = 0
    for p in range(P):
        i0 = p * sh - ph
        r_lo = max(0, -i0)
        r_hi = min(R, H - i0)
        for q in range(Q):
            j0 = q * sw - pw
            s_lo = max(0, -j0)
            s_hi = min(S, W - j0)
            for k in range(K):
                g = dy[n, k, p, q]
                for r in range(r_lo, r_hi):
                    for s in range(s_lo, s_hi):
                        dx[n, c, i0 + r, j0 + s] += w[p, q, k, c, r, s] * g


_input_grad_planes = parallel_tasks(_input_grad_plane)


@task("r4 r4 a6 i i i i i")
def _weight_grad_position(dy, x, dw, sh, sw, ph, pw, t):
    """Output position t of :func:`locally_connected2d_backward_weight_kernel`: its (K, C, R, S) block."""
    N, C, H, W = x.shape
    P, Q, K, _, R, S = dw.shape
    zero = dw.dtype.type(0)
    p = t // Q
    q = t - p * Q
    i0 = p * sh - ph
    j0 = q * sw - pw
    for k in range(K):
        for c in range(C):
            for r in range(R):
                i = i0 + r
                for s in range(S):
                    j = j0 + s
                    acc = zero
                    if 0 <= i < H and 0 <= j < W:
                        for n in range(N):
                            acc += dy[n, k, p, q] * x[n, c, i, j]
                    dw[p, q, k, c, r, s] = acc


_weight_grad_positions = parallel_tasks(_weight_grad_position)


@njit
def locally_connected2d_forward_kernel(x, w, b, y, sh, sw, ph, pw):
    """y[n, k, p, q] = b[k, p, q] + sum_{c, r, s} w[p, q, k, c, r, s] * xp[n, c, p*sh + r, q*sw + s].

    ``xp`` is ``x`` zero-padded by (ph, pw).

    Parameters
    ----------
    x : (N, C, H, W) float array
    w : (P, Q, K, C, R, S) float array, same dtype
    b : (K, P, Q) float array (pass zeros for no bias)
    y : (N, K, P, Q) float array, written in full
    sh, sw, ph, pw : int
    """
    P, Q = w.shape[0], w.shape[1]
    _forward_positions(P * Q, x, w, b, y, sh, sw, ph, pw)


@njit
def locally_connected2d_backward_input_kernel(dy, w, dx, sh, sw, ph, pw):
    """dx[n, c, i, j] = sum over (p, q, k, r, s) with i = p*sh - ph + r, j = q*sw - pw + s of w[p, q, k, c, r, s] * dy[n, k, p, q].

    Written as a scatter; each (n, c) plane of ``dx`` is owned by one task.

    Parameters
    ----------
    dy : (N, K, P, Q) float array
    w : (P, Q, K, C, R, S) float array
    dx : (N, C, H, W) float array, written in full
    sh, sw, ph, pw : int
    """
    N, C = dx.shape[0], dx.shape[1]
    _input_grad_planes(N * C, dy, w, dx, sh, sw, ph, pw)


@njit
def locally_connected2d_backward_weight_kernel(dy, x, dw, sh, sw, ph, pw):
    """dw[p, q, k, c, r, s] = sum_n dy[n, k, p, q] * xp[n, c, p*sh + r, q*sw + s].

    Each position's (K, C, R, S) block is owned by one task, the
    batch summed inside it; taps that fall in the padding get 0.

    Parameters
    ----------
    dy : (N, K, P, Q) float array
    x : (N, C, H, W) float array
    dw : (P, Q, K, C, R, S) float array, written in full
    sh, sw, ph, pw : int
    """
    P, Q = dw.shape[0], dw.shape[1]
    _weight_grad_positions(P * Q, dy, x, dw, sh, sw, ph, pw)


@pjit
def locally_connected2d_backward_bias_kernel(dy, db):
    """db[k, p, q] = sum_n dy[n, k, p, q]; one output channel per prange iteration.

    Parameters
    ----------
    dy : (N, K, P, Q) float array
    db : (K, P, Q) float array, written in full
    """
    N, K, P, Q = dy.shape
    zero = db.dtype.type(0)
    for k in prange(K):
        for p in range(P):
            for q in range(Q):
                acc = zero
                for n in range(N):
                    acc += dy[n, k, p, q]
                db[k, p, q] = acc
