"""Raw pooling kernels: caller-allocated outputs, no checks.

x (N, C, H, W), y and dy (N, C, P, Q); window (kh, kw), stride (sh, sw),
padding (ph, pw).  Output (p, q) covers input rows ``p*sh - ph ..`` and
columns ``q*sw - pw ..`` of the padded input.  The global poolings' y and dy
are (N, C).  One task owns each (image, channel) plane.
"""

import numpy as np
from numba import prange

from ..config import njit, pjit
from ._tasks import parallel_tasks, task


@njit(inline="always")
def _window_max(plane, i_lo, i_hi, j_lo, j_hi):
    """Maximum of ``plane[i_lo:i_hi, j_lo:j_hi]`` and its flat index; first maximum, first NaN wins."""
    W = plane.shape[1]
    best = plane[i_lo, j_lo]
    best_at = i_lo * W + j_lo
    total = plane.dtype.type(0)  # NaN iff the window holds a NaN (or infinities of both signs)
    for i in range(i_lo, i_hi):
        for j in range(j_lo, j_hi):
            v = plane[i, j]
            total += v
            take = v > best
            best = v if take else best
            best_at = i * W + j if take else best_at
    if total != total:
        # rare: rescan so that the first NaN wins; testing every element for
        # NaN in the loop above would triple its cost
        for i in range(i_lo, i_hi):
            for j in range(j_lo, j_hi):
                if plane[i, j] != plane[i, j] and best == best:
                    best = plane[i, j]
                    best_at = i * W + j
    return best, best_at


@task("r4 a4 j4 i")
def _max_2x2_plane(x, y, argmax, t):
    """Plane ``t = n*C + c`` of :func:`max_pool2d_2x2_forward_kernel`."""
    C, W = x.shape[1], x.shape[3]
    P, Q = y.shape[2], y.shape[3]
    n = t // C
    c = t - n * C
    for p in range(P):
        top, bottom = x[n, c, 2 * p], x[n, c, 2 * p + 1]
        y_row, at_row = y[n, c, p], argmax[n, c, p]
        base = 2 * p * W
        total = y.dtype.type(0)
        for q in range(Q):
            v0, v1, v2, v3 = top[2 * q], top[2 * q + 1], bottom[2 * q], bottom[2 * q + 1]
            total += v0 + v1 + v2 + v3
            at = 1 if v1 > v0 else 0
            best = v1 if v1 > v0 else v0
            at = W if v2 > best else at
            best = v2 if v2 > best else best
            at = W + 1 if v3 > best else at
            best = v3 if v3 > best else best
            y_row[q] = best
            at_row[q] = base + 2 * q + at
        if total != total:
            for q in range(Q):
                best, best_at = _window_max(x[n, c], 2 * p, 2 * p + 2, 2 * q, 2 * q + 2)
                y_row[q] = best
                at_row[q] = best_at


_max_2x2_planes = parallel_tasks(_max_2x2_plane)


@njit
def max_pool2d_2x2_forward_kernel(x, y, argmax):
    """Max pooling with 2x2 windows, stride 2, no padding, every window inside the image.

    The same results as :func:`max_pool2d_forward_kernel` (first maximum,
    first NaN wins), a row of windows at a time: the loop over a row has no
    branches (selects only), so it vectorises; a NaN anywhere in the row
    makes its sum NaN, and only then is the row redone window by window.

    Parameters
    ----------
    x : (N, C, H, W) float array
    y : (N, C, P, Q) float array with ``2*P <= H`` and ``2*Q <= W``, written in full
    argmax : (N, C, P, Q) int64 array, written in full
    """
    xc = np.ascontiguousarray(x)  # no copy when x is C-contiguous (always, from the checked functions)
    _max_2x2_planes(x.shape[0] * x.shape[1], xc, y, argmax)


@njit(inline="always")
def _max_nan(a, b):
    """The larger of a and b, NaN when either is (a select: vectorises)."""
    return a if a > b or a != a else b


@task("r4 a4 i b i i")
def _max_2x2_padded_rows(xp, yp, pad, relu, blocks, b):
    """Block ``b`` of ``blocks`` equal blocks of output rows (over N x P) of :func:`max_pool2d_2x2_padded_kernel`."""
    N, C = xp.shape[0], xp.shape[3]
    P, Q = yp.shape[1] - 2 * pad, yp.shape[2] - 2 * pad
    zero = yp.dtype.type(0)
    width = (Q + 2 * pad) * C
    for t in range(b * N * P // blocks, (b + 1) * N * P // blocks):
        n = t // P
        p = t - n * P
        flat = yp[n].reshape(yp[n].size)
        if p == 0:
            flat[:pad * width] = zero
        if p == P - 1:
            flat[(P + pad) * width:] = zero
        base = (pad + p) * width
        flat[base:base + pad * C] = zero
        flat[base + (pad + Q) * C:base + width] = zero
        top, bottom = xp[n, pad + 2 * p], xp[n, pad + 2 * p + 1]
        for q in range(Q):
            a, b_, c_, d = top[pad + 2 * q], top[pad + 2 * q + 1], bottom[pad + 2 * q], bottom[pad + 2 * q + 1]
            out = base + (pad + q) * C
            for k in range(C):
                v = _max_nan(_max_nan(a[k], b_[k]), _max_nan(c_[k], d[k]))
                flat[out + k] = zero if relu and v < zero else v


_max_2x2_padded_blocks = parallel_tasks(_max_2x2_padded_rows)


@njit
def max_pool2d_2x2_padded_kernel(xp, yp, pad, relu):
    """2x2 max pooling, stride 2, no padding, on channel-last images with a zero border, ReLU optionally fused.

    ``yp[n, pad + p, pad + q, c] = f(max(xp[n, pad + 2p + a, pad + 2q + b, c] for a, b in {0, 1}))`` with ``f``
    the identity, or ``max(., 0)`` when ``relu``; a NaN in the window gives NaN (the values of
    :func:`max_pool2d_2x2_forward_kernel`, without argmax: for inference).  The border of ``yp`` is zeroed.

    Parameters
    ----------
    xp : (N, H + 2*pad, W + 2*pad, C) float array, read
    yp : (N, P + 2*pad, Q + 2*pad, C) array of xp's dtype with ``2*P <= H``, ``2*Q <= W``; written in full
    pad : int >= 0
    relu : bool
    """
    blocks = min(yp.shape[0] * (yp.shape[1] - 2 * pad), 64)
    _max_2x2_padded_blocks(blocks, xp, yp, pad, relu, blocks)


@pjit
def max_pool2d_forward_kernel(x, y, argmax, kh, kw, sh, sw, ph, pw):
    """Window maxima into ``y`` and their flat index ``i*W + j`` into ``argmax``.

    Padding counts as -inf, so it never wins.  Ties go to the first maximum in
    row-major order; a NaN in the window wins (the first one), so NaN
    propagates as in PyTorch.  2x2 windows that lie inside the image take an
    unrolled path (:func:`max_pool2d_2x2_forward_kernel` is faster still for stride 2).

    Parameters
    ----------
    x : (N, C, H, W) float array
    y : (N, C, P, Q) float array, written in full
    argmax : (N, C, P, Q) int64 array, written in full
    kh, kw, sh, sw, ph, pw : int
    """
    N, C, H, W = x.shape
    P, Q = y.shape[2], y.shape[3]
    inside_2x2 = kh == 2 and kw == 2 and ph == 0 and pw == 0 and (P - 1) * sh + 2 <= H and (Q - 1) * sw + 2 <= W
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = x[n, c]
        for p in range(P):
            i0 = p * sh - ph
            for q in range(Q):
                j0 = q * sw - pw
                if inside_2x2:
                    v0, v1, v2, v3 = plane[i0, j0], plane[i0, j0 + 1], plane[i0 + 1, j0], plane[i0 + 1, j0 + 1]
                    # NaN iff a NaN (or infinities of both signs) is in the window; written as
                    # a sum because fastmath 'reassoc' may fold v - v to 0
                    check = v0 + v1 + v2 + v3
                    if check == check:
                        best, at = v0, 0
                        if v1 > best:
                            best, at = v1, 1
                        if v2 > best:
                            best, at = v2, W
                        if v3 > best:
                            best, at = v3, W + 1
                        y[n, c, p, q] = best
                        argmax[n, c, p, q] = i0 * W + j0 + at
                        continue
                best, best_at = _window_max(plane, max(i0, 0), min(i0 + kh, H), max(j0, 0), min(j0 + kw, W))
                y[n, c, p, q] = best
                argmax[n, c, p, q] = best_at


@pjit
def max_pool2d_backward_kernel(dy, argmax, dx):
    """Route each dy[n, c, p, q] to the input element that won its window.

    Indices outside the plane are skipped, not written (the checked
    :func:`fastcnn.kernels.max_pool2d_backward` refuses the call then).

    Parameters
    ----------
    dy : (N, C, P, Q) float array (copied first when not C-contiguous)
    argmax : (N, C, P, Q) int64 array from the forward kernel (likewise)
    dx : (N, C, H, W) C-contiguous float array, written in full

    Returns
    -------
    int
        How many argmax values were outside ``[0, H*W)`` (0 for the forward kernel's).
    """
    N, C, H, W = dx.shape
    P, Q = dy.shape[2], dy.shape[3]
    # flat planes: one loop of P*Q per plane instead of P short ones (no copy when already C-contiguous)
    dy_planes = np.ascontiguousarray(dy).reshape(N * C, P * Q)
    at_planes = np.ascontiguousarray(argmax).reshape(N * C, P * Q)
    dx_planes = dx.reshape(N * C, H * W)
    zero = dx.dtype.type(0)
    bad = 0
    for t in prange(N * C):
        plane, grads, at = dx_planes[t], dy_planes[t], at_planes[t]
        for m in range(H * W):
            plane[m] = zero
        for m in range(P * Q):
            i = at[m]
            if 0 <= i < H * W:
                plane[i] += grads[m]
            else:
                bad += 1
    return bad


@njit(inline="always")
def _avg_divisor(i0, j0, kh, kw, H, W, ph, pw, count_include_pad):
    """The divisor of the window starting at (i0, j0) of the padded input (see :func:`avg_pool2d_forward_kernel`)."""
    i_end, j_end = min(i0 + kh, H + ph), min(j0 + kw, W + pw)
    if count_include_pad:
        return (i_end - i0) * (j_end - j0)
    return (min(i_end, H) - max(i0, 0)) * (min(j_end, W) - max(j0, 0))


@task("r4 a4 i i i i i i b i")
def _avg_plane(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, t):
    """Plane ``t = n*C + c`` of :func:`avg_pool2d_forward_kernel`."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    P, Q = y.shape[2], y.shape[3]
    n = t // C
    c = t - n * C
    for p in range(P):
        i0 = p * sh - ph
        i_end = min(i0 + kh, H + ph)
        for q in range(Q):
            j0 = q * sw - pw
            j_end = min(j0 + kw, W + pw)
            count = _avg_divisor(i0, j0, kh, kw, H, W, ph, pw, count_include_pad)
            acc = y.dtype.type(0)
            for i in range(max(i0, 0), min(i_end, H)):
                for j in range(max(j0, 0), min(j_end, W)):
                    acc += x[n, c, i, j]
            y[n, c, p, q] = acc / y.dtype.type(count)


_avg_planes = parallel_tasks(_avg_plane)


@njit
def avg_pool2d_forward_kernel(x, y, kh, kw, sh, sw, ph, pw, count_include_pad=True):
    """Window means into ``y``; zero padding counts in the divisor unless ``count_include_pad`` is False.

    The window of output (p, q) starts at ``(i0, j0) = (p*sh - ph, q*sw - pw)``
    and is clipped to the padded input, ``i_end = min(i0 + kh, H + ph)``,
    ``j_end = min(j0 + kw, W + pw)``; its sum runs over the input pixels in
    it.  The divisor is, as in PyTorch:

    * ``count_include_pad=True``: ``(i_end - i0) * (j_end - j0)``, padding
      included; a ceil-mode window hanging past the padding counts only the
      part inside it.
    * ``count_include_pad=False``: the number of input pixels in the window,
      ``(min(i_end, H) - max(i0, 0)) * (min(j_end, W) - max(j0, 0))``.

    Parameters
    ----------
    x : (N, C, H, W) float array, read
    y : (N, C, P, Q) array of x's dtype, written in full; every window must
        hold an input pixel, ``(P-1)*sh - ph < H`` and ``(Q-1)*sw - pw < W``
        and ``ph < kh``, ``pw < kw`` (true of the P and Q the checked
        functions use), or its divisor is zero or negative
    kh, kw, sh, sw, ph, pw : int
        Window size, stride and zero padding along height and width.
    count_include_pad : bool, optional
        Whether the zero padding counts in the divisor (default True).
    """
    xc = np.ascontiguousarray(x)  # no copy when x is C-contiguous (always, from the checked functions)
    _avg_planes(x.shape[0] * x.shape[1], xc, y, kh, kw, sh, sw, ph, pw, count_include_pad)


@task("r4 a4 i i i i i i b i")
def _avg_backward_plane(dy, dx, kh, kw, sh, sw, ph, pw, count_include_pad, t):
    """Plane ``t = n*C + c`` of :func:`avg_pool2d_backward_kernel`."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    P, Q = dy.shape[2], dy.shape[3]
    n = t // C
    c = t - n * C
    for i in range(H):
        for j in range(W):
            dx[n, c, i, j] = 0
    for p in range(P):
        i0 = p * sh - ph
        i_end = min(i0 + kh, H + ph)
        for q in range(Q):
            j0 = q * sw - pw
            j_end = min(j0 + kw, W + pw)
            g = dy[n, c, p, q] / dx.dtype.type(_avg_divisor(i0, j0, kh, kw, H, W, ph, pw, count_include_pad))
            for i in range(max(i0, 0), min(i_end, H)):
                for j in range(max(j0, 0), min(j_end, W)):
                    dx[n, c, i, j] += g


_avg_backward_planes = parallel_tasks(_avg_backward_plane)


@njit
def avg_pool2d_backward_kernel(dy, dx, kh, kw, sh, sw, ph, pw, count_include_pad=True):
    """Spread each dy[n, c, p, q] evenly over its window (same divisor as forward).

    ``dx[n, c, i, j]`` is the sum of ``dy[n, c, p, q] / divisor(p, q)`` over
    the windows (p, q) that contain input pixel (i, j); the padding's share is
    dropped (with ``count_include_pad=False`` it has none).

    Parameters
    ----------
    dy : (N, C, P, Q) float array, read (P, Q as for
        :func:`avg_pool2d_forward_kernel`)
    dx : (N, C, H, W) array of dy's dtype, written in full
    kh, kw, sh, sw, ph, pw : int
        The forward pass's window size, stride and padding.
    count_include_pad : bool, optional
        The forward pass's choice (default True).
    """
    dyc = np.ascontiguousarray(dy)  # no copy when dy is C-contiguous (always, from the checked functions)
    _avg_backward_planes(dx.shape[0] * dx.shape[1], dyc, dx, kh, kw, sh, sw, ph, pw, count_include_pad)


@task("r4 a2 i")
def _global_avg_plane(x, y, t):
    """``y`` at plane ``t = n*C + c`` (see :func:`global_avg_pool2d_forward_kernel`)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    n = t // C
    c = t - n * C
    acc = y.dtype.type(0)
    for i in range(H):
        for j in range(W):
            acc += x[n, c, i, j]
    y[n, c] = acc * (y.dtype.type(1) / y.dtype.type(H * W))


_global_avg_planes = parallel_tasks(_global_avg_plane)


@njit
def global_avg_pool2d_forward_kernel(x, y):
    """y[n, c] = mean of x[n, c] over its H*W pixels. y is (N, C).

    Parameters
    ----------
    x : (N, C, H, W) float array, read
    y : (N, C) array of x's dtype, written in full
    """
    xc = np.ascontiguousarray(x)  # no copy when x is C-contiguous (always, from the checked functions)
    _global_avg_planes(x.shape[0] * x.shape[1], xc, y)


@pjit
def global_avg_pool2d_backward_kernel(dy, dx):
    """dx[n, c, i, j] = dy[n, c] / (H*W). dy is (N, C), dx (N, C, H, W) written in full.

    Parameters
    ----------
    dy : (N, C) float array, read
    dx : (N, C, H, W) array of dy's dtype, written in full
    """
    N, C, H, W = dx.shape
    inv = dx.dtype.type(1) / dx.dtype.type(H * W)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        g = dy[n, c] * inv
        for i in range(H):
            for j in range(W):
                dx[n, c, i, j] = g


@pjit
def global_max_pool2d_forward_kernel(x, y, argmax):
    """y[n, c] = maximum of x[n, c] over its H*W pixels; argmax[n, c] its flat index ``i*W + j``.

    The rule of :func:`max_pool2d_forward_kernel` with one window covering
    the whole plane: ties go to the first maximum in row-major order, and a
    NaN wins (the first one).

    Parameters
    ----------
    x : (N, C, H, W) float array with H, W >= 1, read
    y : (N, C) array of x's dtype, written in full
    argmax : (N, C) int64 array, written in full
    """
    N, C, H, W = x.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        best, best_at = _window_max(x[n, c], 0, H, 0, W)
        y[n, c] = best
        argmax[n, c] = best_at


@pjit
def global_max_pool2d_backward_kernel(dy, argmax, dx):
    """dx[n, c] is zero but at its flat index argmax[n, c], which receives dy[n, c].

    Indices outside the plane are skipped, not written (the checked
    :func:`fastcnn.kernels.global_max_pool2d_backward` refuses the call then).

    Parameters
    ----------
    dy : (N, C) float array, read
    argmax : (N, C) int64 array from :func:`global_max_pool2d_forward_kernel`
    dx : (N, C, H, W) C-contiguous array of dy's dtype, written in full

    Returns
    -------
    int
        How many argmax values were outside ``[0, H*W)`` (0 for the forward kernel's).
    """
    N, C, H, W = dx.shape
    dx_planes = dx.reshape(N * C, H * W)
    zero = dx.dtype.type(0)
    bad = 0
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = dx_planes[t]
        for m in range(H * W):
            plane[m] = zero
        i = argmax[n, c]
        if 0 <= i < H * W:
            plane[i] = dy[n, c]
        else:
            bad += 1
    return bad
