"""Raw depthwise input-gradient kernel for MobileNet's downsampling layers on narrow planes: 3x3, stride 2, padding 1.

On narrow planes the general input-gradient kernel of ``_conv_depthwise.py``
spends its time per plane: each dy plane copied into a zero frame, a gather
per stride phase of dx over a few pixels, the phases interleaved back into
dx.  :func:`conv2d_backward_input_depthwise_s2_stacked` instead runs one
loop over the dy pixels of a *stack* of G consecutive channel planes (G =
:data:`STACK_PIXELS` / (P*Q), at most C: :func:`depthwise_s2_input_stack`;
16 planes of 8 x 8 inputs), for two images at once, laid out as the stacked
forward kernel of ``_conv_depthwise_s2_stacked.py``.  The plan
(``conv_buffers``) runs it on the layers that ``depthwise_s2_fits`` at most
:data:`INPUT_STACKED_MAX_WIDTH` (16) columns wide in float32,
:data:`INPUT_STACKED_MAX_WIDTH_FLOAT64` (14) in float64.  Measured against
the general kernel (one thread, Zen 4, N = 64, C = 32 to 128, m = 1),
float32: 15-20x at 4 x 4 planes, 6-8x at 8 x 8, 3.5-4.5x at 12 x 12,
1.6-3x at 16 x 16, 1.05-1.9x at 20 x 20 and 0.6-1.3x from 24 x 24 on;
float64: 13-21x, 4-6x, 1.6-3x, 1.0-2.4x (1.25-2.8x at 14 x 14),
0.8-1.2x; with m = 2 at 8 x 8 planes 3.7-3.9x.

With stride 2 and padding 1, input pixel ``(2p + a, 2q + b)`` (phase a, b
in {0, 1}) takes tap r = 1 of dy row p where a = 0, taps r = 0 of row p + 1
and r = 2 of row p where a = 1 (row P is out of range: zero), and likewise
for columns: each of the four phases of dx is a stride-1 stencil over dy of
1, 2, 2 or 4 taps.  Per (stack, pair of images) item of a task, in chunks
of at most STACK_PIXELS dy pixels (whole dy rows; a row's columns when Q is
wider):

* *phases*: dy pixel ``i = (g*P + p)*Q + q`` of the stack (plane g) gives
  ``dx[2p, 2q] = w11*d[i]``, ``dx[2p, 2q + 1] = w12*d[i] + w10*d[i + 1]``,
  ``dx[2p + 1, 2q] = w21*d[i] + w01*d[i + Q]`` and ``dx[2p + 1, 2q + 1] =
  w22*d[i] + w20*d[i + 1] + w02*d[i + Q] + w00*d[i + Q + 1]``: one loop
  over the chunk's pixels writes the four phases of both images, planar, to
  rows of ``xs`` a constant STACK_PIXELS apart (so that LLVM vectorises the
  loop without run-time overlap checks), its weights read from per-pixel
  copies (each tap's weight repeated over the P*Q pixels of its plane,
  written once per stack and task: a task's items run stack by stack) and
  shared by the two images;
* *dy*: with m = 1 a stack's dy planes are contiguous in dy and read there
  (the Q + 1 pixels after the stack too: the next planes, or the next
  image's; the last stack of the last image, which has none after it, is
  copied to the scratch); with m > 1 each of the m filters of a channel is
  a pass over its dy planes, copied to the scratch, adding to the phases;
* *padding*: the neighbours ``d[i + 1]`` (column q + 1) and ``d[i + Q]``
  (row p + 1) are the next row's first pixel and the next plane's first row
  where ``q = Q - 1`` or ``p = P - 1``; they count only where the masks
  ``right`` (``q + 1 < Q``) and ``below`` (``p + 1 < P``) are nonzero
  (selects, so an inf or NaN in those pixels does not leak into dx);
* *interleave*: each dy row's four phases become two rows of dx by zips:
  vector loads of 8 values of two phases (4 or 2 on narrower rows), one
  shuffle and one store of twice as many (:func:`fastcnn.kernels._loops.vector_zip`); a loop
  storing to ``2q`` and ``2q + 1`` runs scalar.  With N odd the last pair
  holds one image: the loop's second image is the first again (or stale
  scratch), its phases dropped.

Scratch per task (:func:`depthwise_s2_input_stacked_scratch`): ``ds``
holds the two images' copied dy chunks (``STACK_PIXELS + Q + 1`` each),
the masks (``2*G*P*Q``) and the weight copies (``9*m*G*P*Q``); ``xs`` the
eight phase rows of STACK_PIXELS.  The results are the same bits whatever
the task count.  Shape vocabulary as in ``_conv_depthwise.py``: dy (N, K,
P, Q), w (K, 1, 3, 3) with K = m*C, dx (N, C, H, W) with ``H = 2P``, ``W =
2Q``; T tasks (the first axis of the scratch arrays).
"""



from ..config import njit
from ._loops import fill_pixel_weights, planes_per_stack, vector_zip
from ._tasks import parallel_tasks, task

#: The widest float32 planes (columns) the plan runs :func:`conv2d_backward_input_depthwise_s2_stacked` on: see
#: :func:`depthwise_s2_input_stacked_preferred`.
INPUT_STACKED_MAX_WIDTH = 16
#: ... and float64 planes.
INPUT_STACKED_MAX_WIDTH_FLOAT64 = 14
#: The dy pixels of a stack of planes (as many whole planes as fit, at least one), and of a chunk of the kernel's
#: loop: the distance of the phase rows in ``xs``.  Copies, masks, weights and phases (about 84 bytes per float32
#: dy pixel) then stay in a 32 KiB L1 cache; 128 measured no faster.
STACK_PIXELS = 256


def depthwise_s2_input_stacked_preferred(W, itemsize=4):
    """Whether the plan runs :func:`conv2d_backward_input_depthwise_s2_stacked` rather than the general kernel on a
    layer that ``depthwise_s2_fits``: planes at most :data:`INPUT_STACKED_MAX_WIDTH` columns wide in float32,
    :data:`INPUT_STACKED_MAX_WIDTH_FLOAT64` in float64.

    Measured against the general kernel (one thread, N = 64, 32 to 128
    channels, Zen 4), float32: 3.5-4.5x at 12 x 12 planes, 1.6-3x at
    16 x 16, 1.05-1.9x at 20 x 20, 0.6-1.3x at 24 x 24 and 32 x 32;
    float64: 1.25-2.8x at 14 x 14, 1.0-2.0x at 16 x 16, 0.8-1.2x at
    20 x 20.

    Parameters
    ----------
    W : int
        Input plane width.
    itemsize : int
        Bytes per number: 4 (float32) or 8 (float64).

    Returns
    -------
    bool
    """
    return W <= (INPUT_STACKED_MAX_WIDTH_FLOAT64 if itemsize > 4 else INPUT_STACKED_MAX_WIDTH)


def depthwise_s2_input_stack(H, W, C):
    """Planes per stack of :func:`conv2d_backward_input_depthwise_s2_stacked`: ``STACK_PIXELS // (P*Q)``, in 1..C.

    Parameters
    ----------
    H, W : int
        Input plane height and width, both even.
    C : int
        Input channels.

    Returns
    -------
    int
    """
    return planes_per_stack(STACK_PIXELS, (H // 2) * (W // 2), C)


def depthwise_s2_input_stacked_scratch(H, W, C, m):
    """Per-task scratch lengths ``(Ld, Lx)`` of :func:`conv2d_backward_input_depthwise_s2_stacked`.

    With G = :func:`depthwise_s2_input_stack` ``(H, W, C)`` planes per
    stack, ``L = G*P*Q`` and ``Q = W/2``: ``Ld = 2*(STACK_PIXELS + Q + 1)
    + 2*L + 9*m*L`` (two images' copied dy chunks, the masks, the weight
    copies) and ``Lx = 8*STACK_PIXELS`` (two images' four phases of a
    chunk).

    Parameters
    ----------
    H, W : int
        Input plane height and width, both even.
    C : int
        Input channels.
    m : int
        Channel multiplier K // C.

    Returns
    -------
    (int, int)
        The lengths of a task's row of ``ds`` and of ``xs``.
    """
    Q = W // 2
    L = depthwise_s2_input_stack(H, W, C) * (H // 2) * Q
    return 2 * (STACK_PIXELS + Q + 1) + 2 * L + 9 * m * L, 8 * STACK_PIXELS


_zip8 = vector_zip(8)
_zip4 = vector_zip(4)
_zip2 = vector_zip(2)


@njit(inline="always")
def _zip_rows(dst, off, W, ee, eo, oe, oo, rows, cols):
    """dx rows from the four phases of a chunk: ``dst[off + 2r*W + 2v + b] = e_b[r*cols + v]`` (``ee``, ``eo``)
    and ``dst[off + (2r + 1)*W + 2v + b] = o_b[r*cols + v]`` (``oe``, ``oo``) for ``r < rows``, ``v < cols``: by
    zips of 8 (4 or 2 on narrower rows; the last one of a row overlapping the one before where cols is not a
    multiple), rows of 2 columns by a plain loop."""
    if cols >= 8:
        for r in range(rows):
            d, e = off + 2 * r * W, r * cols
            for v in range(0, cols - 7, 8):
                _zip8(dst, d + 2 * v, ee, e + v, eo, e + v)
                _zip8(dst, d + W + 2 * v, oe, e + v, oo, e + v)
            if cols % 8 != 0:
                _zip8(dst, d + 2 * cols - 16, ee, e + cols - 8, eo, e + cols - 8)
                _zip8(dst, d + W + 2 * cols - 16, oe, e + cols - 8, oo, e + cols - 8)
    elif cols >= 4:
        for r in range(rows):
            d, e = off + 2 * r * W, r * cols
            _zip4(dst, d, ee, e, eo, e)
            _zip4(dst, d + W, oe, e, oo, e)
            _zip4(dst, d + 2 * cols - 8, ee, e + cols - 4, eo, e + cols - 4)
            _zip4(dst, d + W + 2 * cols - 8, oe, e + cols - 4, oo, e + cols - 4)
    elif cols >= 2:
        for r in range(rows):
            d, e = off + 2 * r * W, r * cols
            _zip2(dst, d, ee, e, eo, e)
            _zip2(dst, d + W, oe, e, oo, e)
            _zip2(dst, d + 2 * cols - 4, ee, e + cols - 2, eo, e + cols - 2)
            _zip2(dst, d + W + 2 * cols - 4, oe, e + cols - 2, oo, e + cols - 2)
    else:
        for r in range(rows):
            d = off + 2 * r * W
            dst[d], dst[d + 1], dst[d + W], dst[d + W + 1] = ee[r], eo[r], oe[r], oo[r]


@njit(inline="always")
def _pixel(c0, c1, c2, c3, c4, c5, c6, c7, c8, a0, a1, a2, a3, r, b, zero):
    """The four dx values of dy pixel (p, q): (2p, 2q), (2p, 2q + 1), (2p + 1, 2q), (2p + 1, 2q + 1), from its
    value ``a0`` and its neighbours (p, q + 1) ``a1``, (p + 1, q) ``a2``, (p + 1, q + 1) ``a3``, selected out
    where ``r`` (``q + 1 < Q``) or ``b`` (``p + 1 < P``) is False."""
    a1, a2, a3 = (a1 if r else zero), (a2 if b else zero), (a3 if r & b else zero)
    return c4 * a0, c5 * a0 + c3 * a1, c7 * a0 + c1 * a2, (c8 * a0 + c6 * a1) + (c2 * a2 + c0 * a3)


@njit(inline="always")
def _phases(x, da, db, s, wb, L, c, n, Q, mk, add):
    """The four phases of dx for the chunk of dy pixels ``c .. c + n - 1`` of a stack of two images, planar in
    ``x`` (rows of :data:`STACK_PIXELS`: ee, eo, oe, oo of image a, then of image b; ``e_b[i]`` is dx row 2p,
    column 2q + b, ``o_b[i]`` row 2p + 1, for stack pixel ``c + i = (g*P + p)*Q + q``) from dy's chunks ``da``
    and ``db`` (from pixel c, read to ``n + Q + 1``), the weight copies at ``s[wb:]`` (9 rows of L), the masks at
    ``s[mk:]`` (``q + 1 < Q``, then at ``mk + L``: ``p + 1 < P``).  ``add``: add to x rather than write it.

    The rows of x lie a constant apart: LLVM then sees the eight stores
    apart and vectorises the loop without run-time overlap checks (with
    rows L apart it needed more checks than it allows and ran the loop
    scalar, 2x slower for the whole kernel).
    """
    zero = x.dtype.type(0)
    CH = STACK_PIXELS
    w0, w1, w2 = s[wb + c:wb + c + n], s[wb + L + c:wb + L + c + n], s[wb + 2 * L + c:wb + 2 * L + c + n]
    w3, w4 = s[wb + 3 * L + c:wb + 3 * L + c + n], s[wb + 4 * L + c:wb + 4 * L + c + n]
    w5, w6 = s[wb + 5 * L + c:wb + 5 * L + c + n], s[wb + 6 * L + c:wb + 6 * L + c + n]
    w7, w8 = s[wb + 7 * L + c:wb + 7 * L + c + n], s[wb + 8 * L + c:wb + 8 * L + c + n]
    right, below = s[mk + c:mk + c + n], s[mk + L + c:mk + L + c + n]
    u0, u1, u2, u3 = x[:n], x[CH:CH + n], x[2 * CH:2 * CH + n], x[3 * CH:3 * CH + n]
    v0, v1, v2, v3 = x[4 * CH:4 * CH + n], x[5 * CH:5 * CH + n], x[6 * CH:6 * CH + n], x[7 * CH:7 * CH + n]
    a1, a2, a3, b1, b2, b3 = da[1:], da[Q:], da[Q + 1:], db[1:], db[Q:], db[Q + 1:]  # dy at (p, q + 1), ...
    if add:
        for i in range(n):
            r, b = right[i] != zero, below[i] != zero
            c0, c1, c2, c3, c4, c5, c6, c7, c8 = w0[i], w1[i], w2[i], w3[i], w4[i], w5[i], w6[i], w7[i], w8[i]
            p0, p1, p2, p3 = _pixel(c0, c1, c2, c3, c4, c5, c6, c7, c8, da[i], a1[i], a2[i], a3[i], r, b, zero)
            u0[i] += p0
            u1[i] += p1
            u2[i] += p2
            u3[i] += p3
            p0, p1, p2, p3 = _pixel(c0, c1, c2, c3, c4, c5, c6, c7, c8, db[i], b1[i], b2[i], b3[i], r, b, zero)
            v0[i] += p0
            v1[i] += p1
            v2[i] += p2
            v3[i] += p3
        return
    for i in range(n):
        r, b = right[i] != zero, below[i] != zero
        c0, c1, c2, c3, c4, c5, c6, c7, c8 = w0[i], w1[i], w2[i], w3[i], w4[i], w5[i], w6[i], w7[i], w8[i]
        u0[i], u1[i], u2[i], u3[i] = _pixel(c0, c1, c2, c3, c4, c5, c6, c7, c8, da[i], a1[i], a2[i], a3[i], r, b, zero)
        v0[i], v1[i], v2[i], v3[i] = _pixel(c0, c1, c2, c3, c4, c5, c6, c7, c8, db[i], b1[i], b2[i], b3[i], r, b, zero)


@njit(inline="always")
def _dy_range(flat, d, image, c0, m, j, PQ, lo, hi):
    """``d[:hi - lo]``: pixels ``lo .. hi - 1`` of the stack of dy planes of filter j of channels ``c0, c0 + 1,
    ...`` of the image starting at ``flat[image]`` (plane k of the stack is dy plane ``(c0 + k)*m + j``)."""
    i = lo
    while i < hi:
        k = i // PQ
        end = min(hi, (k + 1) * PQ)
        base = image + ((c0 + k) * m + j - k) * PQ  # plane k's pixel i of the stack at flat[base + i]
        src = flat[base:base + (k + 1) * PQ]
        for t in range(i, end):
            d[t - lo] = src[t]
        i = end


@task("r1 r4 a4 a2 a2 i")
def _input_task(flat, w, dx, ds, xs, t):
    """Task t of :func:`conv2d_backward_input_depthwise_s2_stacked`: its run of (stack, pair of images) items.

    dy comes flat, reshaped by the caller: the data pointer of an array that
    Numba reshapes here passes through a helper call, and LLVM, no longer
    seeing it as the argument's (``noalias``), needed run-time overlap
    checks against the phase rows, more than it allows: the loop over dy ran
    scalar, 2x slower for the whole kernel.
    """
    N, C, H, W = dx.shape
    K = w.shape[0]
    m = K // C
    P, Q = H // 2, W // 2
    PQ, HW = P * Q, H * W
    T = ds.shape[0]
    CH = STACK_PIXELS
    G = max(1, min(C, CH // PQ))
    L = G * PQ
    nb = (C + G - 1) // G
    pairs = (N + 1) // 2
    zero = dx.dtype.type(0)
    one = dx.dtype.type(1)
    s = ds[t]
    x = xs[t]
    D = CH + Q + 1  # one image's chunk of dy and the pixels after it
    sa, sb = s[:D], s[D:2 * D]
    mk = 2 * D  # the masks
    wb = mk + 2 * L  # the weight copies (m, 9, L)
    for u in range(G * P):  # stacked dy rows: row p = u % P of plane u // P
        for q in range(Q):
            s[mk + u * Q + q] = one if q + 1 < Q else zero
            s[mk + L + u * Q + q] = one if u % P + 1 < P else zero
    dxf = dx.reshape(N, C * HW)
    wf = w.reshape(K, 9)
    cols = min(Q, CH)  # a chunk: whole dy rows (at most CH pixels), or CH columns of one row
    per = max(1, CH // Q)
    last = -1
    for item in range(t * nb * pairs // T, (t + 1) * nb * pairs // T):
        cb = item // pairs
        n = 2 * (item - cb * pairs)
        c0 = cb * G
        g = min(G, C - c0)
        Lg = g * PQ
        if cb != last:
            fill_pixel_weights(s, wb, L, wf, wf[0], c0, g, m, PQ, 9)  # no bias: never read
            last = cb
        two = n + 1 < N
        # m = 1: the stack's dy planes are contiguous in dy; read there if Q + 1 numbers follow them (a second image
        # missing, the first is read twice)
        a = n * K * PQ + c0 * PQ
        b = a + K * PQ if two else a
        direct = m == 1 and b + Lg + Q + 1 <= flat.shape[0]
        for u in range(0, g * P, per):
            rows = min(per, g * P - u)
            for v in range(0, Q, cols):
                width = min(cols, Q - v)
                c, cn = u * Q + v, rows * width
                if direct:
                    _phases(x, flat[a + c:a + c + cn + Q + 1], flat[b + c:b + c + cn + Q + 1], s, wb, L, c, cn, Q,
                            mk, False)
                else:  # copied to the scratch, m filters added up
                    hi = min(Lg, c + cn + Q + 1)
                    for j in range(m):
                        _dy_range(flat, sa, n * K * PQ, c0, m, j, PQ, c, hi)
                        if two:
                            _dy_range(flat, sb, (n + 1) * K * PQ, c0, m, j, PQ, c, hi)
                        _phases(x, sa, sb, s, wb + j * 9 * L, L, c, cn, Q, mk, j > 0)
                off = c0 * HW + 2 * u * W + 2 * v
                _zip_rows(dxf[n], off, W, x[:CH], x[CH:2 * CH], x[2 * CH:3 * CH], x[3 * CH:4 * CH], rows, width)
                if two:
                    _zip_rows(dxf[n + 1], off, W, x[4 * CH:5 * CH], x[5 * CH:6 * CH], x[6 * CH:7 * CH],
                              x[7 * CH:8 * CH], rows, width)


_input_tasks = parallel_tasks(_input_task)


@njit
def conv2d_backward_input_depthwise_s2_stacked(dy, w, dx, ds, xs):
    """Depthwise 3x3 input gradient with stride 2 and padding 1: ``dx[n, c, h, v] = sum_{k of c} sum_{p, q, r, s}
    w[k, 0, r, s] * dy[n, k, p, q]`` over ``2p + r - 1 = h``, ``2q + s - 1 = v`` (k of c: ``c*m .. c*m + m - 1``,
    m = K // C), for even H and W.

    Each task computes, for stacks of G channel planes of two images, the
    four stride phases of dx from dy in one loop (weights read per pixel
    and shared by the two images) and interleaves them into dx.  The same as
    :func:`conv2d_backward_input_depthwise` with ``sh = sw = 2``, ``ph = pw =
    1`` and no dilation, up to rounding.

    Parameters
    ----------
    dy : (N, K, H/2, W/2) float array, read; H and W even
    w : (K, 1, 3, 3) array of dy's dtype, K a multiple of C
    dx : (N, C, H, W) array of dy's dtype, written in full
    ds : (T, Ld) array of dy's dtype, scratch, one row per task; ``Ld >= 2*(STACK_PIXELS + Q + 1) + (2 +
        9*m)*G*P*Q`` with ``STACK_PIXELS = 256`` and G = ``depthwise_s2_input_stack(H, W, C)``
        (:func:`depthwise_s2_input_stacked_scratch`); overwritten
    xs : (T, Lx) array of dy's dtype, scratch, ``Lx >= 8*STACK_PIXELS``; overwritten
    """
    _input_tasks(ds.shape[0], dy.reshape(dy.size), w, dx, ds, xs)
