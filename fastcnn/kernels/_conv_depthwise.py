"""Raw depthwise convolution kernels (``groups == C``, K = m*C): NCHW planes over *wide rows*, no layout copies.

A depthwise convolution gives every input channel its own m filters: output
channel ``k`` reads input channel ``c = k // m`` only (PyTorch's grouping
with ``groups = C``; the weight is (K, 1, R, S)).  It does R*S multiply-adds
per output and reads each input pixel about R*S times from cache: it is
memory-bound.  So these kernels read x and dy once, write y and dx once, keep
every intermediate in a small per-task scratch that stays in cache, and
vectorise over the pixels of a plane: no layout copy of the activations, no
matrix products of tiny matrices.

Each task takes a contiguous run of the ``N*C`` (image, channel) planes.  It
copies a plane into its scratch zero-padded and split into the ``sh*sw``
*phases* of the stride: phase (a, b) holds the padded pixels
``(a + sh*u, b + sw*v)``, ``Hs x Ws`` of them, flat
(:func:`depthwise_frame`; with ``sw > 1`` the rows are copied whole first
and their columns split in one long strided loop, since runs of ``W/sw``
pixels would not fill a vector).  Output pixel (p, q) and kernel tap (r, s) read
phase ``((r*dh) % sh, (s*dw) % sw)`` at ``(p + (r*dh)//sh, q + (s*dw)//sw)``,
so over the *wide* output index ``j = p*Ws + q`` (the columns ``q >= Q``
computed and dropped) every tap is one contiguous span of the scratch at a
fixed offset, whatever the stride and dilation:

* forward: ``out[j] = b[k] + sum_t w[k, t] * xs[off_t + j]``, up to 9 taps
  fused in one vectorised loop over j, then the Q valid columns of each row
  written to y;
* weight gradient: ``dw[k, t] += sum_j dyw[j] * xs[off_t + j]`` with dy
  copied to the same wide rows (zeros at ``q >= Q``), up to 9 taps summed in
  one loop; per-task partial sums (T, K, R*S), added in task order;
* input gradient, as a gather (the adjoint, written so that taps fuse): the
  padded pixel ``(a + sh*u, b + sw*v)`` of dx sums the taps with
  ``(r*dh) % sh == a`` and ``(s*dw) % sw == b`` at
  ``dy[u - (r*dh)//sh, v - (s*dw)//sw]``; per phase of dx one fused loop
  over a zero-framed copy of dy (shifted by ``Et = ((R-1)*dh)//sh`` rows
  and ``Ew = ((S-1)*dw)//sw`` columns, rows of ``Wf = Ws + Ew``), then the
  phases interleaved back into dx.  A stride-2 3x3 layer does 9
  multiply-adds per dy pixel, not the 36 of a correlation with dy dilated.

Shape vocabulary: x and dx (N, C, H, W), w and dw (K, 1, R, S) with
``K = m*C``, y and dy (N, K, P, Q); strides ``sh, sw``, zero paddings
``ph, pw``, dilations ``dil_h, dil_w``; T tasks (the first axis of the
scratch arrays).  The borders of the scratch are zeroed once per call and
only the interior is rewritten per plane.  Where a wide row reads past its
plane (the dropped columns) it reads neighbouring scratch, never past the
arrays: the scratch has one row of slack.
"""

import numpy as np
from numba import prange

from ..config import njit, pjit
from ._loops import zero_span
from ._tasks import parallel_tasks, task


def depthwise_frame(H, W, R, S, sh, sw, ph, pw, dil_h, dil_w):
    """The scratch geometry of the depthwise kernels: ``(Hs, Ws, Et, Ew)``.

    ``Hs = ceil((H + 2ph) / sh)`` and ``Ws = ceil((W + 2pw) / sw)`` are the
    rows and columns of each stride phase of the padded input;
    ``Et = ((R-1)*dil_h) // sh`` and ``Ew = ((S-1)*dil_w) // sw`` the rows
    and columns dy is shifted by in the input gradient's frame.  The per-task
    scratch sizes follow: x phases ``sh*sw*Hs*Ws + Ws`` (twice the phases
    plus ``Ws`` when ``sw > 1``: the padded rows before the column split),
    wide output or dy ``P*Ws``, dy frame ``(Hs + Et + 1) * (Ws + Ew)``, dx
    phases ``(sh*sw, Hs*(Ws + Ew))`` (``2*sh*sw`` rows when ``sw > 1``).
    """
    Hs = -(-(H + 2 * ph) // sh)
    Ws = -(-(W + 2 * pw) // sw)
    return Hs, Ws, ((R - 1) * dil_h) // sh, ((S - 1) * dil_w) // sw


_frame = njit(inline="always")(depthwise_frame)


# --------------------------------------------------------------------------- tap tables


@njit(inline="always")
def _forward_taps(R, S, sh, sw, dil_h, dil_w, Hs, Ws):
    """(offsets, taps): tap ``r*S + s`` reads the phase scratch at ``off[t] + j`` for wide output index j."""
    off = np.empty(R * S, np.int64)
    taps = np.empty(R * S, np.int64)
    for r in range(R):
        a, u = (r * dil_h) % sh, (r * dil_h) // sh
        for s in range(S):
            b, v = (s * dil_w) % sw, (s * dil_w) // sw
            off[r * S + s] = ((b * sh + a) * Hs + u) * Ws + v  # phase (a, b) is stored at b*sh + a
            taps[r * S + s] = r * S + s
    return off, taps


@njit(inline="always")
def _input_taps(R, S, sh, sw, dil_h, dil_w, Wf, Et, Ew):
    """(offsets, taps, start): the taps of dx's phase ``i`` are ``taps[start[i]:start[i+1]]``, reading the dy
    frame at ``off + j`` for wide index ``j = u*Wf + v`` of the phase."""
    off = np.empty(R * S, np.int64)
    taps = np.empty(R * S, np.int64)
    start = np.empty(sh * sw + 1, np.int64)
    i = 0
    for a in range(sh):
        for b in range(sw):
            start[a * sw + b] = i
            for r in range(R):
                if (r * dil_h) % sh != a:
                    continue
                for s in range(S):
                    if (s * dil_w) % sw != b:
                        continue
                    taps[i] = r * S + s
                    off[i] = (Et - (r * dil_h) // sh) * Wf + Ew - (s * dil_w) // sw
                    i += 1
    start[sh * sw] = i
    return off, taps, start


# --------------------------------------------------------------------------- fused taps


@njit(inline="always")
def _gather(out, src, off, taps, lo, hi, wk, L, init, start):
    """``out[j] = start + sum_{i in [lo, hi)} wk[taps[i]] * src[off[i] + j]`` for ``j < L`` (``init``), or that
    sum added to ``out[j]``: 9, 4, 2 or 1 taps per pass over out, the first pass writing when ``init``."""
    if init and lo == hi:
        for j in range(L):
            out[j] = start
    i = lo
    while i < hi:
        n = hi - i
        first = init and i == lo
        if n >= 9:
            w0, w1, w2 = wk[taps[i]], wk[taps[i + 1]], wk[taps[i + 2]]
            w3, w4, w5 = wk[taps[i + 3]], wk[taps[i + 4]], wk[taps[i + 5]]
            w6, w7, w8 = wk[taps[i + 6]], wk[taps[i + 7]], wk[taps[i + 8]]
            s0, s1, s2 = src[off[i]:off[i] + L], src[off[i + 1]:off[i + 1] + L], src[off[i + 2]:off[i + 2] + L]
            s3, s4, s5 = src[off[i + 3]:off[i + 3] + L], src[off[i + 4]:off[i + 4] + L], src[off[i + 5]:off[i + 5] + L]
            s6, s7, s8 = src[off[i + 6]:off[i + 6] + L], src[off[i + 7]:off[i + 7] + L], src[off[i + 8]:off[i + 8] + L]
            if first:
                for j in range(L):
                    out[j] = (start + w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j] + w4 * s4[j] + w5 * s5[j]
                              + w6 * s6[j] + w7 * s7[j] + w8 * s8[j])
            else:
                for j in range(L):
                    out[j] += (w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j] + w4 * s4[j] + w5 * s5[j]
                               + w6 * s6[j] + w7 * s7[j] + w8 * s8[j])
            i += 9
        elif n >= 4:
            w0, w1, w2, w3 = wk[taps[i]], wk[taps[i + 1]], wk[taps[i + 2]], wk[taps[i + 3]]
            s0, s1 = src[off[i]:off[i] + L], src[off[i + 1]:off[i + 1] + L]
            s2, s3 = src[off[i + 2]:off[i + 2] + L], src[off[i + 3]:off[i + 3] + L]
            if first:
                for j in range(L):
                    out[j] = start + w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j]
            else:
                for j in range(L):
                    out[j] += w0 * s0[j] + w1 * s1[j] + w2 * s2[j] + w3 * s3[j]
            i += 4
        elif n >= 2:
            w0, w1 = wk[taps[i]], wk[taps[i + 1]]
            s0, s1 = src[off[i]:off[i] + L], src[off[i + 1]:off[i + 1] + L]
            if first:
                for j in range(L):
                    out[j] = start + w0 * s0[j] + w1 * s1[j]
            else:
                for j in range(L):
                    out[j] += w0 * s0[j] + w1 * s1[j]
            i += 2
        else:
            w0 = wk[taps[i]]
            s0 = src[off[i]:off[i] + L]
            if first:
                for j in range(L):
                    out[j] = start + w0 * s0[j]
            else:
                for j in range(L):
                    out[j] += w0 * s0[j]
            i += 1


@njit(inline="always")
def _dots(acc, d, src, off, T, L):
    """``acc[t] += sum_{j < L} d[j] * src[off[t] + j]`` for every tap ``t < T``: 9, 4 or 1 sums per pass."""
    zero = acc.dtype.type(0)
    t = 0
    while t < T:
        n = T - t
        if n >= 9:
            s0, s1, s2 = src[off[t]:off[t] + L], src[off[t + 1]:off[t + 1] + L], src[off[t + 2]:off[t + 2] + L]
            s3, s4, s5 = src[off[t + 3]:off[t + 3] + L], src[off[t + 4]:off[t + 4] + L], src[off[t + 5]:off[t + 5] + L]
            s6, s7, s8 = src[off[t + 6]:off[t + 6] + L], src[off[t + 7]:off[t + 7] + L], src[off[t + 8]:off[t + 8] + L]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = zero
            for j in range(L):
                e = d[j]
                a0 += e * s0[j]
                a1 += e * s1[j]
                a2 += e * s2[j]
                a3 += e * s3[j]
                a4 += e * s4[j]
                a5 += e * s5[j]
                a6 += e * s6[j]
                a7 += e * s7[j]
                a8 += e * s8[j]
            acc[t] += a0
            acc[t + 1] += a1
            acc[t + 2] += a2
            acc[t + 3] += a3
            acc[t + 4] += a4
            acc[t + 5] += a5
            acc[t + 6] += a6
            acc[t + 7] += a7
            acc[t + 8] += a8
            t += 9
        elif n >= 4:
            s0, s1 = src[off[t]:off[t] + L], src[off[t + 1]:off[t + 1] + L]
            s2, s3 = src[off[t + 2]:off[t + 2] + L], src[off[t + 3]:off[t + 3] + L]
            a0 = a1 = a2 = a3 = zero
            for j in range(L):
                e = d[j]
                a0 += e * s0[j]
                a1 += e * s1[j]
                a2 += e * s2[j]
                a3 += e * s3[j]
            acc[t] += a0
            acc[t + 1] += a1
            acc[t + 2] += a2
            acc[t + 3] += a3
            t += 4
        else:
            s0 = src[off[t]:off[t] + L]
            a0 = zero
            for j in range(L):
                a0 += d[j] * s0[j]
            acc[t] += a0
            t += 1


# --------------------------------------------------------------------------- plane copies


@njit(inline="always")
def _to_phases(plane, xs, sh, sw, ph, pw, Hs, Ws):
    """Copy one (H, W) plane into the interior of the zero-bordered stride phases ``xs``.

    Padded pixel ``(u, v) = (i + ph, jj + pw)`` goes to phase
    ``(u % sh, v % sw)``, stored at ``(v % sw)*sh + u % sh``, at
    ``(u // sh, v // sw)``.  With ``sw == 1`` each row is one copy to its
    phase row.  Otherwise in two long loops rather than ``sw`` short ones
    per row (an 8-pixel run does not fill a vector: 3x slower): the rows
    go, whole, to rows ``(u % sh)*Hs + u // sh`` of padded rows of
    ``sw*Ws`` in the scratch after the phases, then one strided loop per
    ``v % sw`` splits those rows' columns into their phases.
    """
    size = Hs * Ws  # one phase
    if sw == 1:
        _rows_to(plane, xs, sh, ph, pw, Hs, Ws)
        return
    rows = xs[sh * sw * size + Ws:sh * sw * size + Ws + sh * sw * size]  # sh*Hs rows of sw*Ws
    _rows_to(plane, rows, sh, ph, pw, Hs, sw * Ws)
    n = sh * size
    if sw == 2:
        even, odd = xs[:n], xs[n:2 * n]
        for k in range(n):
            even[k] = rows[2 * k]
            odd[k] = rows[2 * k + 1]
    else:
        for b in range(sw):
            dst = xs[b * n:(b + 1) * n]
            for k in range(n):
                dst[k] = rows[sw * k + b]


@njit(inline="always")
def _rows_to(plane, dst, sh, ph, pw, Hs, row_length):
    """Row i of ``plane`` to row ``(u % sh)*Hs + u // sh`` (``u = i + ph``) of ``dst``, from column ``pw``."""
    H, W = plane.shape
    a, row = ph % sh, ph // sh  # tracked by increments: no division per row
    for i in range(H):
        src, base = plane[i], (a * Hs + row) * row_length + pw
        span = dst[base:base + W]
        for jj in range(W):
            span[jj] = src[jj]
        a += 1
        if a == sh:
            a, row = 0, row + 1


@njit(inline="always")
def _from_phases(phases, dx, sh, sw, ph, pw, Hs, Wf):
    """The inverse of :func:`_to_phases` for dx: the (H, W) interior of the padded plane from its stride phases.

    ``phases[a*sw + b]`` holds phase (a, b) in rows of ``Wf``.  With
    ``sw > 1`` the phases of each ``a`` are first interleaved into padded
    rows of ``sw*Wf`` in ``phases[sh*sw + a*sw:]`` (one long loop), as in
    :func:`_to_phases`; then each row of dx is one copy.
    """
    H, W = dx.shape
    Lo, L = phases.shape[1], Hs * Wf
    flat = phases.reshape(phases.size)
    if sw == 1:
        base0, a_stride, row_length = 0, Lo, Wf
    else:
        base0, a_stride, row_length = sh * sw * Lo, sw * Lo, sw * Wf
        for aa in range(sh):
            out = flat[base0 + aa * a_stride:base0 + aa * a_stride + sw * L]  # Hs rows of sw*Wf
            if sw == 2:
                even, odd = phases[aa * 2], phases[aa * 2 + 1]
                for k in range(L):
                    out[2 * k] = even[k]
                    out[2 * k + 1] = odd[k]
            else:
                for b in range(sw):
                    src = phases[aa * sw + b]
                    for k in range(L):
                        out[sw * k + b] = src[k]
    a, row = ph % sh, ph // sh
    for i in range(H):
        base = base0 + a * a_stride + row * row_length + pw
        dst, src = dx[i], flat[base:base + W]
        for jj in range(W):
            dst[jj] = src[jj]
        a += 1
        if a == sh:
            a, row = 0, row + 1


@njit(inline="always")
def _to_wide(plane, dst, row_length, row0, col0):
    """``dst[(p + row0)*row_length + col0 + q] = plane[p, q]``: one (P, Q) plane into wide rows."""
    P, Q = plane.shape
    for p in range(P):
        base = (p + row0) * row_length + col0
        row, span = plane[p], dst[base:base + Q]  # a slice, so that q indexes from 0 (no wraparound test: vectorised)
        for q in range(Q):
            span[q] = row[q]


# --------------------------------------------------------------------------- kernels


@task("r4 r4 r1 a4 i i i i i i a2 a2 i")
def _forward_task(x, w, b, y, sh, sw, ph, pw, dil_h, dil_w, xs, ys, t):
    """Task t of :func:`conv2d_forward_depthwise`: its run of planes, in ``xs[t]`` and ``ys[t]``."""
    N, C, H, W = x.shape
    K, R, S = w.shape[0], w.shape[2], w.shape[3]
    P, Q = y.shape[2], y.shape[3]
    m = K // C
    T = xs.shape[0]
    Hs, Ws, _, _ = _frame(H, W, R, S, sh, sw, ph, pw, dil_h, dil_w)
    L = P * Ws
    off, taps = _forward_taps(R, S, sh, sw, dil_h, dil_w, Hs, Ws)
    wf = w.reshape(K, R * S)
    scratch = xs[t]
    out = ys[t]
    zero_span(scratch, 0, scratch.shape[0])  # the borders and the slack stay zero
    for item in range(t * N * C // T, (t + 1) * N * C // T):
        n = item // C
        c = item - n * C
        _to_phases(x[n, c], scratch, sh, sw, ph, pw, Hs, Ws)
        for k in range(c * m, (c + 1) * m):
            _gather(out, scratch, off, taps, 0, R * S, wf[k], L, True, b[k])
            for p in range(P):
                src = out[p * Ws:p * Ws + Q]
                dst = y[n, k, p]
                for q in range(Q):
                    dst[q] = src[q]


_forward_tasks = parallel_tasks(_forward_task)


@njit
def conv2d_forward_depthwise(x, w, b, y, sh, sw, ph, pw, dil_h, dil_w, xs, ys):
    """Depthwise forward: ``y[n, k, p, q] = b[k] + sum_{r, s} w[k, 0, r, s] * xp[n, k // m, i, j]``.

    ``i = p*sh + r*dil_h``, ``j = q*sw + s*dil_w``; ``xp`` is x zero-padded
    by (ph, pw) and ``m = K // C`` the channel multiplier.  Each task copies its planes into the stride phases of
    ``xs[t]`` and computes each of the m output planes as one wide row
    ``ys[t]`` (up to 9 taps fused per pass), written to y without the wide
    columns.

    Parameters
    ----------
    x : (N, C, H, W) float array, read
    w : (K, 1, R, S) array of x's dtype, C-contiguous, K a multiple of C
    b : (K,) array of x's dtype (zeros for no bias)
    y : (N, K, P, Q) array of x's dtype, written in full
    sh, sw, ph, pw, dil_h, dil_w : int
        Stride, zero padding and dilation along height and width.
    xs : (T, Lx) array of x's dtype, scratch, one row per task:
        ``Lx >= sh*sw*Hs*Ws + Ws``, or ``2*sh*sw*Hs*Ws + Ws`` when ``sw > 1``
        (:func:`depthwise_frame`); overwritten
    ys : (T, Ly) array of x's dtype, scratch, ``Ly >= P*Ws``; overwritten
    """
    _forward_tasks(xs.shape[0], x, w, b, y, sh, sw, ph, pw, dil_h, dil_w, xs, ys)


@task("r4 r4 r4 i i i i i i a2 a2 a3 i")
def _weight_grad_task(dy, x, dw, sh, sw, ph, pw, dil_h, dil_w, xs, dys, partial, t):
    """Task t of :func:`conv2d_backward_weight_depthwise`: its run of planes, summed into ``partial[t]``."""
    N, C, H, W = x.shape
    K, R, S = dw.shape[0], dw.shape[2], dw.shape[3]
    RS = R * S
    m = K // C
    T = xs.shape[0]
    Hs, Ws, _, _ = _frame(H, W, R, S, sh, sw, ph, pw, dil_h, dil_w)
    L = dy.shape[2] * Ws
    off, _ = _forward_taps(R, S, sh, sw, dil_h, dil_w, Hs, Ws)
    zero = dy.dtype.type(0)
    scratch = xs[t]
    wide = dys[t]
    part = partial[t]
    zero_span(scratch, 0, scratch.shape[0])
    zero_span(wide, 0, wide.shape[0])  # the dropped columns stay zero
    for k in range(K):
        for i in range(RS):
            part[k, i] = zero
    for item in range(t * N * C // T, (t + 1) * N * C // T):
        n = item // C
        c = item - n * C
        _to_phases(x[n, c], scratch, sh, sw, ph, pw, Hs, Ws)
        for k in range(c * m, (c + 1) * m):
            _to_wide(dy[n, k], wide, Ws, 0, 0)
            _dots(part[k], wide, scratch, off, RS, L)


_weight_grad_tasks = parallel_tasks(_weight_grad_task)


@njit
def conv2d_backward_weight_depthwise(dy, x, dw, sh, sw, ph, pw, dil_h, dil_w, xs, dys, partial):
    """Depthwise weight gradient: ``dw[k, 0, r, s] = sum_{n, p, q} dy[n, k, p, q] * xp[n, k // m, i, j]``.

    ``i = p*sh + r*dil_h``, ``j = q*sw + s*dil_w`` as in :func:`conv2d_forward_depthwise`.
    Each task copies x's planes into stride phases (``xs[t]``) and dy's into
    wide rows (``dys[t]``, zeros in the dropped columns), and sums the R*S
    dot products of each (image, channel) into its own ``partial[t]``; the
    partial sums are then added in task order (results depend on the task
    count, not on scheduling).

    Parameters
    ----------
    dy : (N, K, P, Q) float array, read
    x : (N, C, H, W) array of dy's dtype, read
    dw : (K, 1, R, S) array of dy's dtype, written in full
    sh, sw, ph, pw, dil_h, dil_w : int
    xs : (T, Lx) array, scratch as in :func:`conv2d_forward_depthwise`
    dys : (T, Ly) array, scratch, ``Ly >= P*Ws``
    partial : (T, K, R*S) array of dy's dtype, scratch
    """
    K, R, S = dw.shape[0], dw.shape[2], dw.shape[3]
    T = xs.shape[0]
    zero = dw.dtype.type(0)
    _weight_grad_tasks(T, dy, x, dw, sh, sw, ph, pw, dil_h, dil_w, xs, dys, partial)
    dwf = dw.reshape(K, R * S)
    for k in range(K):
        for i in range(R * S):
            total = zero
            for t in range(T):
                total += partial[t, k, i]
            dwf[k, i] = total


@pjit
def conv2d_backward_input_depthwise(dy, w, dx, sh, sw, ph, pw, dil_h, dil_w, frames, outs):
    """Depthwise input gradient: ``dx[n, c] = sum_{k of c} sum_{p, q, r, s} w[k, 0, r, s] * dy[n, k, p, q]`` at
    ``(p*sh + r*dil_h - ph, q*sw + s*dil_w - pw)``, computed as a gather per stride phase of dx.

    Each task copies each dy plane into the zero frame ``frames[t]`` (rows of
    ``Wf = Ws + Ew``, shifted by ``(Et, Ew)``, see :func:`depthwise_frame`),
    sums the taps of each phase of the padded dx into ``outs[t, phase]``
    (over the m output channels of the input channel) and interleaves the
    phases back into dx, dropping the padding.

    Parameters
    ----------
    dy : (N, K, P, Q) float array, read
    w : (K, 1, R, S) array of dy's dtype, C-contiguous
    dx : (N, C, H, W) array of dy's dtype, written in full
    sh, sw, ph, pw, dil_h, dil_w : int
    frames : (T, Lf) array of dy's dtype, scratch, ``Lf >= (Hs + Et + 1) * Wf``; overwritten
    outs : (T, F, Lo) array of dy's dtype, scratch, ``Lo >= Hs * Wf``, ``F = sh*sw`` (``2*sh*sw`` when
        ``sw > 1``); overwritten
    """
    N, C, H, W = dx.shape
    K, R, S = w.shape[0], w.shape[2], w.shape[3]
    m = K // C
    T = frames.shape[0]
    Hs, Ws, Et, Ew = _frame(H, W, R, S, sh, sw, ph, pw, dil_h, dil_w)
    Wf = Ws + Ew
    L = Hs * Wf
    off, taps, start = _input_taps(R, S, sh, sw, dil_h, dil_w, Wf, Et, Ew)
    wf = w.reshape(K, R * S)
    zero = dx.dtype.type(0)
    for t in prange(T):
        frame = frames[t]
        phases = outs[t]
        zero_span(frame, 0, frame.shape[0])  # the frame around dy stays zero
        for item in range(t * N * C // T, (t + 1) * N * C // T):
            n = item // C
            c = item - n * C
            for k in range(c * m, (c + 1) * m):
                _to_wide(dy[n, k], frame, Wf, Et, Ew)
                for f in range(sh * sw):
                    _gather(phases[f], frame, off, taps, start[f], start[f + 1], wf[k], L, k == c * m, zero)
            _from_phases(phases, dx[n, c], sh, sw, ph, pw, Hs, Wf)
