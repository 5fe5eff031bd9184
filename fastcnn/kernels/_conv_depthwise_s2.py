"""Raw depthwise forward kernel for MobileNet's downsampling layers: 3x3, stride 2, padding 1, even planes.

A stride-2 depthwise layer on a small plane (16x16 in, 8x8 out) does little
arithmetic per plane (576 multiply-adds), so what the general kernel of
``_conv_depthwise.py`` spends per plane (a zero-padded copy split into four
stride phases, row by row, and 8-wide output rows) decides its speed.  This
kernel does the same work with long unit-stride loops only, for the layers
:func:`depthwise_s2_fits` accepts (kernel 3x3, stride 2, padding 1, no
dilation, H and W even; any channel multiplier m = K // C).  Per (image,
channel) plane of a task:

* *column phases*: one long loop over the flat plane (H*W pixels; W even, so
  a pixel's column parity is its flat index's) writes the even columns to
  ``E`` and the odd ones to ``O``, each H rows of ``Q = W/2``, flat:
  ``E[i*Q + v] = x[i, 2v]``, ``O[i*Q + v] = x[i, 2v + 1]``;
* *wide rows of W*: output pixel (p, q) with tap (r, s) reads input pixel
  ``(2p + r - 1, 2q + s - 1)``, i.e. ``O[(2p + r - 1)*Q + q - 1]``,
  ``E[... + q]`` and ``O[... + q]`` for s = 0, 1, 2.  Over the wide index
  ``j = p*W + q`` (``q < W``; the columns ``q >= Q`` computed and dropped,
  half of the work) that is ``j + (r - 1)*Q + {-1, 0, 0}``: every tap is one
  contiguous span at a fixed offset, and the 9 taps are fused in one
  vectorised loop over ``j < (H/2)*W``.  The row above the plane (r = 0,
  p = 0) reads the zero gap before each phase;
* *the left padding column*: tap s = 0 at q = 0 would read the previous
  row's last odd pixel, not a zero; the three s = 0 taps are summed apart
  and added only where ``keep[j]`` is nonzero (``j % W != 0``, a select, so
  an inf or NaN in that pixel does not leak into the output);
* the Q valid columns of each wide row are copied to y.

Results are the same bits whatever the task count.  Shape vocabulary as in
``_conv_depthwise.py``: x (N, C, H, W), w (K, 1, 3, 3) with K = m*C,
y (N, K, P, Q) with ``P = H/2``, ``Q = W/2``; T tasks (the first axis of the
scratch arrays).  Scratch layout per task (:func:`depthwise_s2_scratch`):
a zero gap of ``Q + 1``, E, a gap, O, a gap, ``keep`` (``P*W``); the gaps are
zeroed once per call and never written.
"""

from numba import prange

from ..config import pjit
from ._loops import zero_span


def depthwise_s2_fits(H, W, R, S, sh, sw, ph, pw, dil_h, dil_w):
    """Whether :func:`conv2d_forward_depthwise_s2` computes this depthwise layer: 3x3, stride 2, padding 1,
    dilation 1, H and W even (then ``P = H/2`` and ``Q = W/2``).

    Parameters
    ----------
    H, W : int
        Input plane height and width.
    R, S, sh, sw, ph, pw, dil_h, dil_w : int
        Kernel size, stride, zero padding and dilation along height and width.

    Returns
    -------
    bool
    """
    return ((R, S, sh, sw, ph, pw, dil_h, dil_w) == (3, 3, 2, 2, 1, 1, 1, 1) and H % 2 == 0 and W % 2 == 0
            and H >= 2 and W >= 2)


def depthwise_s2_scratch(H, W):
    """Per-task scratch lengths ``(Lx, Ly)`` of :func:`conv2d_forward_depthwise_s2` for H x W planes.

    ``Lx = 3*(Q + 1) + 3*H*Q`` (three zero gaps, the column phases E and O,
    the ``keep`` mask of the wide rows) and ``Ly = H*Q`` (the wide output
    rows, ``P*W``), with ``Q = W/2``.

    Parameters
    ----------
    H, W : int
        Input plane height and width, both even.

    Returns
    -------
    (int, int)
        The lengths of a task's row of ``xs`` and of ``ys``.
    """
    Q = W // 2
    return 3 * (Q + 1) + 3 * H * Q, H * Q


@pjit
def conv2d_forward_depthwise_s2(x, w, b, y, xs, ys):
    """Depthwise 3x3 forward with stride 2 and padding 1: ``y[n, k, p, q] = b[k] + sum_{r, s} w[k, 0, r, s] *
    xp[n, k // m, 2p + r, 2q + s]`` (xp: x zero-padded by 1, m = K // C), for even H and W.

    Each task splits its planes into even and odd columns (one long loop)
    and computes each of the m output planes of a plane as wide rows of W
    (9 taps fused, half the columns dropped), written to y without them.
    The same as :func:`conv2d_forward_depthwise` with ``sh = sw = 2``,
    ``ph = pw = 1`` and no dilation, up to rounding.

    Parameters
    ----------
    x : (N, C, H, W) float array, read; H and W even
    w : (K, 1, 3, 3) array of x's dtype, K a multiple of C
    b : (K,) array of x's dtype (zeros for no bias)
    y : (N, K, H/2, W/2) array of x's dtype, written in full
    xs : (T, Lx) array of x's dtype, scratch, one row per task: ``Lx >= 3*(W/2 + 1) + 3*H*W/2``
        (:func:`depthwise_s2_scratch`); overwritten
    ys : (T, Ly) array of x's dtype, scratch, ``Ly >= H*W/2``; overwritten
    """
    N, C, H, W = x.shape
    K = w.shape[0]
    m = K // C
    P, Q = H // 2, W // 2
    HQ = H * Q
    L = P * W  # wide output rows: == HQ
    eb = Q + 1  # E, after a zero gap of Q + 1
    ob = eb + HQ + Q + 1  # O, after another
    kb = ob + HQ + Q + 1  # keep, after a third
    T = xs.shape[0]
    xf = x.reshape(N, C, H * W)
    wf = w.reshape(K, 9)
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    for t in prange(T):
        s = xs[t]
        out = ys[t]
        zero_span(s, 0, kb)  # the gaps stay zero: only E and O are rewritten per plane
        keep = s[kb:kb + L]
        for j in range(L):
            keep[j] = zero if j % W == 0 else one
        e, o = s[eb:eb + HQ], s[ob:ob + HQ]
        # tap (r, s) over the wide index j: E or O at j + (r - 1)*Q (- 1 for s = 0)
        a0, a1, a2 = s[ob - Q - 1:ob - Q - 1 + L], s[eb - Q:eb - Q + L], s[ob - Q:ob - Q + L]
        a3, a4, a5 = s[ob - 1:ob - 1 + L], s[eb:eb + L], s[ob:ob + L]
        a6, a7, a8 = s[ob + Q - 1:ob + Q - 1 + L], s[eb + Q:eb + Q + L], s[ob + Q:ob + Q + L]
        for item in range(t * N * C // T, (t + 1) * N * C // T):
            n = item // C
            c = item - n * C
            src = xf[n, c]
            for i in range(HQ):
                e[i] = src[2 * i]
                o[i] = src[2 * i + 1]
            for k in range(c * m, (c + 1) * m):
                wk = wf[k]
                w0, w1, w2, w3, w4, w5, w6, w7, w8 = wk[0], wk[1], wk[2], wk[3], wk[4], wk[5], wk[6], wk[7], wk[8]
                bias = b[k]
                for j in range(L):
                    left = w0 * a0[j] + w3 * a3[j] + w6 * a6[j]  # the s = 0 taps: padding where j % W == 0
                    out[j] = ((bias + w1 * a1[j] + w2 * a2[j]) + (w4 * a4[j] + w5 * a5[j] + w7 * a7[j] + w8 * a8[j])
                              + (left if keep[j] != zero else zero))
                yk = y[n, k]
                for p in range(P):
                    row, dst = out[p * W:p * W + Q], yk[p]
                    for q in range(Q):
                        dst[q] = row[q]
