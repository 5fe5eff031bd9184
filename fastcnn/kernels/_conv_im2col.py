"""im2col / col2im and the GEMM path of convolution.

Raw ``@njit`` kernels write into caller-allocated arrays and check nothing;
the GEMM drivers below them use numpy's ``matmul`` (BLAS), one per pass, and
are called by the plan executor (:mod:`fastcnn.kernels._conv_exec`) with the
buffers the plan names.

Layout: ``cols`` is (N, C*R*S, P*Q): for each image, row ``(c*R + r)*S + s``
holds input channel c shifted by kernel tap (r, s), sampled at every output
pixel, with zeros where the tap falls in the padding.  Then
``y[n] = w.reshape(K, C*R*S) @ cols[n]``.  The ``cols`` buffer is
N * C*R*S * P*Q elements, which the direct algorithms do not need.  With
dilation ``(dil_h, dil_w)`` tap (r, s) reads input pixel
``(p*sh - ph + r*dil_h, q*sw - pw + s*dil_w)``; everything else is unchanged.
"""

import numpy as np

from ..config import njit
from ._loops import conv_output_size, valid_range
from ._tasks import parallel_tasks, task


@task("r4 a3 i i i i i i i i i")
def _im2col_plane(x, cols, R, S, sh, sw, ph, pw, dil_h, dil_w, t):
    """Image t // C, channel t % C of :func:`im2col_kernel`: its R*S rows of ``cols``."""
    N, C, H, W = x.shape
    P, Q = conv_output_size(H, R, sh, ph, dil_h), conv_output_size(W, S, sw, pw, dil_w)
    n = t // C
    c = t - n * C
    for r in range(R):
        p_lo, p_hi = valid_range(r * dil_h, ph, sh, H, P)
        for s in range(S):
            q_lo, q_hi = valid_range(s * dil_w, pw, sw, W, Q)
            row = (c * R + r) * S + s
            for p in range(P):
                base = p * Q
                if p < p_lo or p >= p_hi:
                    for q in range(Q):
                        cols[n, row, base + q] = 0
                    continue
                ih = p * sh - ph + r * dil_h
                for q in range(q_lo):
                    cols[n, row, base + q] = 0
                for q in range(q_lo, q_hi):
                    cols[n, row, base + q] = x[n, c, ih, q * sw - pw + s * dil_w]
                for q in range(q_hi, Q):
                    cols[n, row, base + q] = 0


_im2col_planes = parallel_tasks(_im2col_plane)


@task("r3 a4 i i i i i i i i i")
def _col2im_plane(cols, dx, R, S, sh, sw, ph, pw, dil_h, dil_w, t):
    """Image t // C, channel t % C of :func:`col2im_kernel`: the plane ``dx[n, c]``."""
    N, C, H, W = dx.shape
    P, Q = conv_output_size(H, R, sh, ph, dil_h), conv_output_size(W, S, sw, pw, dil_w)
    n = t // C
    c = t - n * C
    for i in range(H):
        for j in range(W):
            dx[n, c, i, j] = 0
    for r in range(R):
        p_lo, p_hi = valid_range(r * dil_h, ph, sh, H, P)
        for s in range(S):
            q_lo, q_hi = valid_range(s * dil_w, pw, sw, W, Q)
            row = (c * R + r) * S + s
            for p in range(p_lo, p_hi):
                ih = p * sh - ph + r * dil_h
                base = p * Q
                for q in range(q_lo, q_hi):
                    dx[n, c, ih, q * sw - pw + s * dil_w] += cols[n, row, base + q]


_col2im_planes = parallel_tasks(_col2im_plane)


def conv2d_forward_gemm(x, w, b, y, sh, sw, ph, pw, cols, dil_h=1, dil_w=1):
    """y = w @ im2col(x) + b, written into ``y`` (N, K, P, Q); ``cols`` (N, C*R*S, P*Q) is scratch."""
    N = x.shape[0]
    K, C, R, S = w.shape
    im2col_kernel(x, cols, R, S, sh, sw, ph, pw, dil_h, dil_w)
    y3 = y.reshape(N, K, y.shape[2] * y.shape[3])  # (N, K, P*Q), a view of y
    np.matmul(w.reshape(K, C * R * S), cols, out=y3)  # (K, CRS) @ (N, CRS, PQ)
    y3 += b[:, None]


def conv2d_backward_weight_gemm(dy, x, dw, sh, sw, ph, pw, cols, per_image, dil_h=1, dil_w=1):
    """dw = sum_n dy[n] @ im2col(x)[n].T; ``cols`` (N, C*R*S, P*Q) and ``per_image`` (N, K, C*R*S) are scratch."""
    N = x.shape[0]
    K, C, R, S = dw.shape
    dy3 = dy.reshape(N, K, dy.shape[2] * dy.shape[3])  # (N, K, P*Q)
    im2col_kernel(x, cols, R, S, sh, sw, ph, pw, dil_h, dil_w)
    np.matmul(dy3, cols.transpose(0, 2, 1), out=per_image)  # (N, K, PQ) @ (N, PQ, CRS) -> (N, K, CRS)
    np.sum(per_image, axis=0, out=dw.reshape(K, C * R * S))


def conv2d_backward_input_gemm(dy, w, dx, sh, sw, ph, pw, dcols, dil_h=1, dil_w=1):
    """dx = col2im(w.T @ dy); ``dcols`` (N, C*R*S, P*Q) is scratch."""
    N = dy.shape[0]
    K, C, R, S = w.shape
    dy3 = dy.reshape(N, K, dy.shape[2] * dy.shape[3])  # (N, K, P*Q)
    np.matmul(w.reshape(K, C * R * S).T, dy3, out=dcols)  # (CRS, K) @ (N, K, PQ) -> (N, CRS, PQ)
    col2im_kernel(dcols, dx, R, S, sh, sw, ph, pw, dil_h, dil_w)


@njit
def im2col_kernel(x, cols, R, S, sh, sw, ph, pw, dil_h=1, dil_w=1):
    """Fill ``cols`` (N, C*R*S, P*Q) from ``x`` (N, C, H, W); every element is written.

    One task per (image, channel) owns rows ``c*R*S .. (c+1)*R*S``.

    Parameters
    ----------
    x : (N, C, H, W) float array, read
    cols : (N, C*R*S, P*Q) array of x's dtype, written in full:
        ``cols[n, (c*R + r)*S + s, p*Q + q] = x[n, c, p*sh - ph + r*dil_h, q*sw - pw + s*dil_w]``,
        0 where that falls in the padding.  P and Q are not read from
        ``cols``: the kernel computes them, ``P = (H + 2*ph - dil_h*(R - 1) - 1) // sh + 1``
        and Q likewise
    R, S : int
        Kernel height and width.
    sh, sw, ph, pw : int
    dil_h, dil_w : int, optional
        Dilation, 1 by default.
    """
    N, C = x.shape[0], x.shape[1]
    _im2col_planes(N * C, x, cols, R, S, sh, sw, ph, pw, dil_h, dil_w)


@njit
def col2im_kernel(cols, dx, R, S, sh, sw, ph, pw, dil_h=1, dil_w=1):
    """Sum ``cols`` (N, C*R*S, P*Q) back into ``dx`` (N, C, H, W), the adjoint of im2col.

    Entries that fall in the padding are dropped; overlapping windows add up.
    ``dx`` is written in full.  One task owns each (image, channel).

    Parameters
    ----------
    cols : (N, C*R*S, P*Q) float array, read (laid out as :func:`im2col_kernel`
        writes it; P and Q computed from H, W as there, not read from ``cols``)
    dx : (N, C, H, W) array of cols' dtype, written in full:
        ``dx[n, c, i, j]`` is the sum of the ``cols`` entries im2col takes
        from ``x[n, c, i, j]``
    R, S : int
        Kernel height and width.
    sh, sw, ph, pw : int
    dil_h, dil_w : int, optional
        Dilation, 1 by default.
    """
    N, C = dx.shape[0], dx.shape[1]
    _col2im_planes(N * C, cols, dx, R, S, sh, sw, ph, pw, dil_h, dil_w)
