"""Raw direct-convolution kernels: nested loops, no workspace.

Every function here is an ``@njit`` kernel that writes into arrays its caller
allocated and checks nothing; :mod:`fastcnn.kernels` holds the checked
versions.  They can be called from other Numba code.

Notation: x (N, C, H, W), w (K, C, R, S), y and dy (N, K, P, Q); strides
``sh, sw``, zero paddings ``ph, pw`` and dilations ``dil_h, dil_w`` (default
1) are ints.  Output pixel (p, q) reads input pixel
(p*sh - ph + r*dil_h, q*sw - pw + s*dil_w) for kernel tap (r, s).

Parallel work is split so that every task owns what it writes:
forward over (image, output channel), input gradient over (image, input
channel), weight gradient over (output channel, input channel), bias gradient
over output channels.
"""

import numpy as np
from numba import prange

from ..config import njit, pjit
from ._loops import valid_range
from ._tasks import parallel_tasks, task


@pjit
def conv2d_forward_direct(x, w, b, y, sh, sw, ph, pw, dil_h=1, dil_w=1):
    """y[n, k] = b[k] + sum_c correlate(x[n, c], w[k, c]) with stride, zero padding and dilation.

    Parameters
    ----------
    x : (N, C, H, W) float array
    w : (K, C, R, S) float array, same dtype
    b : (K,) float array (pass zeros for no bias)
    y : (N, K, P, Q) float array, written in full
    sh, sw, ph, pw : int
        Stride and zero padding along height and width.
    dil_h, dil_w : int, optional
        Dilation (the taps' spacing), 1 by default.
    """
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = y.shape[2], y.shape[3]
    for t in prange(N * K):
        n = t // K
        k = t - n * K
        for p in range(P):
            for q in range(Q):
                y[n, k, p, q] = b[k]
        for c in range(C):
            for r in range(R):
                p_lo, p_hi = valid_range(r * dil_h, ph, sh, H, P)
                for s in range(S):
                    q_lo, q_hi = valid_range(s * dil_w, pw, sw, W, Q)
                    wv = w[k, c, r, s]
                    for p in range(p_lo, p_hi):
                        ih = p * sh - ph + r * dil_h
                        if sw == 1:
                            off = s * dil_w - pw
                            for q in range(q_lo, q_hi):
                                y[n, k, p, q] += wv * x[n, c, ih, q + off]
                        else:
                            for q in range(q_lo, q_hi):
                                y[n, k, p, q] += wv * x[n, c, ih, q * sw - pw + s * dil_w]


@task("r4 r4 a4 i i i i i i i")
def _input_grad_plane(dy, w, dx, sh, sw, ph, pw, dil_h, dil_w, t):
    """Input-gradient plane ``t = n*C + c`` of :func:`conv2d_backward_input_direct`."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    K, R, S = w.shape[0], w.shape[2], w.shape[3]
    P, Q = dy.shape[2], dy.shape[3]
    n = t // C
    c = t - n * C
    for i in range(H):
        for j in range(W):
            dx[n, c, i, j] = 0
    for k in range(K):
        for r in range(R):
            p_lo, p_hi = valid_range(r * dil_h, ph, sh, H, P)
            for s in range(S):
                q_lo, q_hi = valid_range(s * dil_w, pw, sw, W, Q)
                wv = w[k, c, r, s]
                for p in range(p_lo, p_hi):
                    ih = p * sh - ph + r * dil_h
                    if sw == 1:
                        off = s * dil_w - pw
                        for q in range(q_lo, q_hi):
                            dx[n, c, ih, q + off] += wv * dy[n, k, p, q]
                    else:
                        for q in range(q_lo, q_hi):
                            dx[n, c, ih, q * sw - pw + s * dil_w] += wv * dy[n, k, p, q]


_input_grad_planes = parallel_tasks(_input_grad_plane)


@njit
def conv2d_backward_input_direct(dy, w, dx, sh, sw, ph, pw, dil_h=1, dil_w=1):
    """dx[n, c] = sum_k full-correlate(dy[n, k], rot180(w[k, c])), written as a scatter.

    Each (n, c) plane of ``dx`` is owned by one task.

    Parameters
    ----------
    dy : (N, K, P, Q) float array
    w : (K, C, R, S) float array
    dx : (N, C, H, W) float array, written in full
    sh, sw, ph, pw : int
    dil_h, dil_w : int, optional
        Dilation, 1 by default.
    """
    dyc, wc = np.ascontiguousarray(dy), np.ascontiguousarray(w)  # no copies when C-contiguous
    _input_grad_planes(dx.shape[0] * dx.shape[1], dyc, wc, dx, sh, sw, ph, pw, dil_h, dil_w)


@task("r4 r4 a4 i i i i i i i")
def _weight_grad_slice(dy, x, dw, sh, sw, ph, pw, dil_h, dil_w, t):
    """Kernel slice ``t = k*C + c`` of :func:`conv2d_backward_weight_direct`."""
    N, C, H, W = x.shape
    R, S = dw.shape[2], dw.shape[3]
    P, Q = dy.shape[2], dy.shape[3]
    k = t // C
    c = t - k * C
    for r in range(R):
        p_lo, p_hi = valid_range(r * dil_h, ph, sh, H, P)
        for s in range(S):
            q_lo, q_hi = valid_range(s * dil_w, pw, sw, W, Q)
            acc = dw.dtype.type(0)
            for n in range(N):
                for p in range(p_lo, p_hi):
                    ih = p * sh - ph + r * dil_h
                    if sw == 1:
                        off = s * dil_w - pw
                        for q in range(q_lo, q_hi):
                            acc += dy[n, k, p, q] * x[n, c, ih, q + off]
                    else:
                        for q in range(q_lo, q_hi):
                            acc += dy[n, k, p, q] * x[n, c, ih, q * sw - pw + s * dil_w]
            dw[k, c, r, s] = acc


_weight_grad_slices = parallel_tasks(_weight_grad_slice)


@njit
def conv2d_backward_weight_direct(dy, x, dw, sh, sw, ph, pw, dil_h=1, dil_w=1):
    """dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * x[n, c, p*sh - ph + r*dil_h, q*sw - pw + s*dil_w].

    Each (k, c) kernel slice of ``dw`` is owned by one task, with
    the batch summed inside it, so there is no race.

    Parameters
    ----------
    dy : (N, K, P, Q) float array
    x : (N, C, H, W) float array
    dw : (K, C, R, S) float array, written in full
    sh, sw, ph, pw : int
    dil_h, dil_w : int, optional
        Dilation, 1 by default.
    """
    dyc, xc = np.ascontiguousarray(dy), np.ascontiguousarray(x)  # no copies when C-contiguous
    _weight_grad_slices(dw.shape[0] * dw.shape[1], dyc, xc, dw, sh, sw, ph, pw, dil_h, dil_w)


@task("r3 a1 i")
def _bias_grad(planes, db, k):
    """``db[k]``: the sum of ``planes[:, k]`` (see :func:`conv2d_backward_bias`)."""
    acc = db.dtype.type(0)
    for n in range(planes.shape[0]):
        plane = planes[n, k]
        for m in range(planes.shape[2]):
            acc += plane[m]
    db[k] = acc


_bias_grads = parallel_tasks(_bias_grad)


@njit
def conv2d_backward_bias(dy, db):
    """db[k] = sum_{n, p, q} dy[n, k, p, q].

    Each image's (P, Q) plane is summed as one contiguous span (a single
    vectorised loop, not one short loop per row); a dy that is not
    C-contiguous is copied first.

    Parameters
    ----------
    dy : (N, K, P, Q) float array
    db : (K,) float array, written in full
    """
    N, K, P, Q = dy.shape
    planes = np.ascontiguousarray(dy).reshape(N, K, P * Q)  # no copy when dy is C-contiguous
    _bias_grads(K, planes, db)
