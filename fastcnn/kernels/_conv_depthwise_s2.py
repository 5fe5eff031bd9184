"""Raw depthwise forward kernels for MobileNet's downsampling layers: 3x3, stride 2, padding 1, even planes.

A stride-2 depthwise layer on a small plane (16x16 in, 8x8 out) does little
arithmetic per plane (576 multiply-adds), so what a kernel spends per plane
on layout copies and on short loops decides its speed.  Numba leaves only
LLVM's loop vectoriser (its SLP vectoriser is off), which vectorises long
loops: a loop over the Q = W/2 pixels of one output row (8 of them) runs
scalar.  The two kernels here do the work of the general kernel of
``_conv_depthwise.py`` with long unit-stride or stride-2 loops, for the
layers :func:`depthwise_s2_fits` accepts (kernel 3x3, stride 2, padding 1,
no dilation, H and W even; any channel multiplier m = K // C).  The plan
(``conv_plan``) runs :func:`conv2d_forward_depthwise_s2_rows` on planes at
least :data:`ROWS_MIN_WIDTH` wide (measured 1.2-1.7x the other at 12 to 32
columns, one thread, Zen 4).  :func:`conv2d_forward_depthwise_s2` was the
plan's kernel on narrower ones (10 columns or fewer: 1.1-1.25x the rows
kernel there, whose per-row copies and per-plane loop set-up then outweigh
its saved work); the plan now runs the stacked kernel of
``_conv_depthwise_s2_stacked.py`` there (1.35-4x this one), and this one
stays a raw kernel.

*Row phases* (:func:`conv2d_forward_depthwise_s2_rows`), per (image,
channel) plane of a task:

* the even input rows are copied to ``R0`` and the odd ones to ``R1``, each
  P = H/2 rows of W, flat (one loop per pair of rows);
* output pixel (p, q), flat ``j = p*Q + q``, reads input rows ``2p - 1``,
  ``2p``, ``2p + 1``, i.e. rows p - 1 and p of R1 and row p of R0, at
  columns ``2q - 1``, ``2q``, ``2q + 1``.  Since ``p*W + 2q = 2j``
  (W = 2Q), columns 2q and 2q + 1 of row p of R0 are ``R0[2j]`` and
  ``R0[2j + 1]``, likewise for R1 and for R1 one row up (``R1[2j - W]``; the
  W values before R1 are a zero gap: the padding row above the plane).  So
  every tap is a stride-2 read at a fixed offset, and the 9 taps are fused
  in one vectorised loop over ``j < P*Q`` that writes the output plane of y
  directly: no wasted columns, no output copy.  Column 2q - 1 is the odd
  column read for the previous j: the loop carries it over (initially 0);
* *the left padding column*: at q = 0 that carried value is the previous
  row's last pixel, not a zero; the three s = 0 taps are summed apart and
  added only where ``keep[j]`` is nonzero (``j % Q != 0``, a select, so an
  inf or NaN in that pixel does not leak into the output).

The row copies index with unsigned integers: a signed index that LLVM cannot
prove non-negative costs a wrap-around test per element, and the copy then
runs scalar.  Scratch per task (:func:`depthwise_s2_rows_scratch`): the zero
gap of W, R1, R0 (``P*W`` each), ``keep`` (``P*Q``).

*Column phases + wide rows* (:func:`conv2d_forward_depthwise_s2`), per plane:

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

Scratch per task (:func:`depthwise_s2_scratch`): a zero gap of ``Q + 1``,
E, a gap, O, a gap, ``keep`` (``P*W``).

Both kernels give the same bits whatever the task count; each writes the
zero gaps and ``keep`` of its scratch once per call, and only the rest per
plane.  Shape vocabulary as in ``_conv_depthwise.py``: x (N, C, H, W),
w (K, 1, 3, 3) with K = m*C, y (N, K, P, Q) with ``P = H/2``, ``Q = W/2``;
T tasks (the first axis of the scratch arrays).
"""

from numba import prange, uint64

from ..config import njit, pjit
from ._loops import zero_span
from ._tasks import parallel_tasks, task

#: The narrowest planes (columns) the plan runs :func:`conv2d_forward_depthwise_s2_rows` on.
ROWS_MIN_WIDTH = 12


def depthwise_s2_fits(H, W, R, S, sh, sw, ph, pw, dil_h, dil_w):
    """Whether the kernels of this module compute this depthwise layer: 3x3, stride 2, padding 1, dilation 1,
    H and W even (then ``P = H/2`` and ``Q = W/2``).

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


@task("r4 r4 r1 a4 a2 a2 i")
def _s2_task(x, w, b, y, xs, ys, t):
    """Task t of :func:`conv2d_forward_depthwise_s2`: its run of planes, in ``xs[t]`` and ``ys[t]``."""
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


_s2_tasks = parallel_tasks(_s2_task)


@njit
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
    _s2_tasks(xs.shape[0], x, w, b, y, xs, ys)


def depthwise_s2_rows_scratch(H, W):
    """Per-task scratch length of :func:`conv2d_forward_depthwise_s2_rows` for H x W planes (both even).

    ``W + H*W + H*W/4``: a zero gap of W, the row phases R0 and R1
    (``P*W`` each) and the ``keep`` mask of the output plane (``P*Q``),
    with ``P = H/2``, ``Q = W/2``.

    Parameters
    ----------
    H, W : int
        Input plane height and width, both even.

    Returns
    -------
    int
        The length of a task's row of ``xs``.
    """
    return W + H * W + (H // 2) * (W // 2)


@pjit
def conv2d_forward_depthwise_s2_rows(x, w, b, y, xs):
    """Depthwise 3x3 forward with stride 2 and padding 1: ``y[n, k, p, q] = b[k] + sum_{r, s} w[k, 0, r, s] *
    xp[n, k // m, 2p + r, 2q + s]`` (xp: x zero-padded by 1, m = K // C), for even H and W.

    Each task splits its planes into even and odd rows and computes each of
    the m output planes of a plane in one loop over its pixels (9 taps
    fused, stride-2 reads), written straight to y.  The same as
    :func:`conv2d_forward_depthwise` with ``sh = sw = 2``, ``ph = pw = 1``
    and no dilation, up to rounding.

    Parameters
    ----------
    x : (N, C, H, W) float array, read; H and W even
    w : (K, 1, 3, 3) array of x's dtype, K a multiple of C
    b : (K,) array of x's dtype (zeros for no bias)
    y : (N, K, H/2, W/2) array of x's dtype, written in full
    xs : (T, L) array of x's dtype, scratch, one row per task: ``L >= W + H*W + H*W/4``
        (:func:`depthwise_s2_rows_scratch`); overwritten
    """
    N, C, H, W = x.shape
    K = w.shape[0]
    m = K // C
    P, Q = H // 2, W // 2
    PW, PQ = P * W, P * Q
    r1 = W  # R1 (odd rows), after a zero gap of W: the padding row above the plane
    r0 = r1 + PW  # R0 (even rows)
    kb = r0 + PW  # keep
    T = xs.shape[0]
    xf = x.reshape(N, C, H * W)
    yf = y.reshape(N, K, PQ)
    wf = w.reshape(K, 9)
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    Wu, Pu, two = uint64(W), uint64(P), uint64(2)
    for t in prange(T):
        s = xs[t]
        zero_span(s, 0, r1)
        keep = s[kb:kb + PQ]
        for j in range(PQ):
            keep[j] = zero if j % Q == 0 else one
        odd, even = s[r1:r1 + PW], s[r0:r0 + PW]
        # tap row r reads a[2j] (column 2q), a[2j + 1] (2q + 1), and carries the latter as column 2q - 1
        a0, a1, a2 = s[r1 - W:r1 - W + PW], s[r0:r0 + PW], s[r1:r1 + PW]
        for item in range(t * N * C // T, (t + 1) * N * C // T):
            n = item // C
            c = item - n * C
            src = xf[n, c]
            for u in range(Pu):
                i, d = two * u * Wu, u * Wu
                for v in range(Wu):
                    even[d + v] = src[i + v]
                    odd[d + v] = src[i + Wu + v]
            for k in range(c * m, (c + 1) * m):
                wk = wf[k]
                w0, w1, w2, w3, w4, w5, w6, w7, w8 = wk[0], wk[1], wk[2], wk[3], wk[4], wk[5], wk[6], wk[7], wk[8]
                bias = b[k]
                out = yf[n, k]
                l0 = l1 = l2 = zero  # column 2q - 1 of each tap row
                for j in range(PQ):
                    o0, o1, o2 = a0[2 * j + 1], a1[2 * j + 1], a2[2 * j + 1]
                    left = w0 * l0 + w3 * l1 + w6 * l2  # the s = 0 taps: padding where j % Q == 0
                    out[j] = ((bias + w1 * a0[2 * j] + w2 * o0) + (w4 * a1[2 * j] + w5 * o1)
                              + (w7 * a2[2 * j] + w8 * o2) + (left if keep[j] != zero else zero))
                    l0, l1, l2 = o0, o1, o2
