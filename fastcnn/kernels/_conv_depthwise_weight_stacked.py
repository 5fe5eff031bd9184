"""Raw depthwise weight-gradient kernels on narrow planes: 3x3, padding 1, stride 2 (MobileNet's downsampling
layers) and stride 1.

On narrow planes (an 8 x 8 input plane has 16 output pixels) the general
weight-gradient kernel of ``_conv_depthwise.py`` spends its time per plane:
the plane copied into a zero-bordered frame, dy into wide rows, and nine dot
products over loops of a few pixels.
:func:`conv2d_backward_weight_depthwise_s2_stacked` instead runs one loop
over a *stack* of G consecutive channel planes (G = :data:`STACK_PIXELS_S2`
output pixels / (P*Q), at most C: :func:`depthwise_s2_weight_stack`; 16
planes of 8 x 8) for two images at once, and keeps nine *per-pixel* sums
over the images: ``acc_t[i] += dy[i] * x_t[i]`` for the 9 taps t of output
pixel i of the stack, summed over each plane's pixels only when the task
moves to another stack.  The plan (``conv_buffers``) runs it on the layers
that ``depthwise_s2_fits`` at most :data:`WEIGHT_STACKED_MAX_WIDTH` columns
wide.

A task runs a contiguous run of (stack, pair of images) items, stack by
stack.  Per item:

* *row phases*: the stack's G*H rows of each image (contiguous in x) are
  split into its even rows (``R0``) and odd rows (``R1``), G*P rows of W
  each, flat, by 8- or 4-wide vector loads and stores (:func:`_row_phases`);
  so tap (r, s) of the output pixel of flat index ``i = (g*P + p)*Q + q``
  reads ``R0`` (r = 1) or ``R1`` (r = 2; r = 0: the odd row before, W
  earlier) at ``2i + s - 1``, and column ``2q - 1`` (s = 0) is carried
  from the previous i (its column ``2q + 1``);
* dy's planes of the stack (the m-th filters of its channels) are copied to
  the scratch, for the two images (zeros for a missing second image when N
  is odd, whose row phases are zeroed too);
* *padding*: the taps of row ``2p - 1`` count only where ``p != 0`` and
  those of column ``2q - 1`` only where ``q != 0``: selects on the products
  (masks ``top`` and ``left``), so an inf or NaN in the neighbouring plane
  or row, or in the gaps, does not reach the sums, and an inf or NaN in dy
  meets only the taps that use it;
* each tap's products of the two images are added to its per-pixel sum: one
  loop over the ``G*P*Q`` pixels of the stack, 9 taps fused.  The sums live
  in their own scratch array, a tap's :data:`STACK_PIXELS_S2` apart from the
  next tap's (in chunks of that many pixels): LLVM then sees the nine
  stores apart from each other and from the loads, and vectorises the loop
  without run-time overlap checks (with the nine sums in the same scratch
  as the row phases, at distances known only at run time, the loop ran
  scalar: 2x slower).

A task's partial sums (T, K, 9) are the per-pixel sums of each plane added
up when it leaves a stack; the kernel then adds the partial sums in task
order.  Results depend on the task count, not on scheduling.

Scratch per task (:func:`depthwise_s2_weight_stacked_scratch`): ``xs``
holds, for each of the two images, a zero gap of ``W + 1``, R1, a zero of 1
and R0 (``2*L`` each, ``L = G*P*Q``), then the masks (``2*L``) and the two
images' dy stacks (``2*L``); ``acc`` the per-pixel sums (``9*m*Lc``, ``L``
rounded up to a multiple of :data:`STACK_PIXELS_S2`).  Shape vocabulary
as in ``_conv_depthwise.py``: x (N, C, H, W), dw (K, 1, 3, 3) with K =
m*C, dy (N, K, P, Q) with ``P = H/2``, ``Q = W/2``; T tasks (the first axis
of the scratch arrays).

:func:`conv2d_backward_weight_depthwise_stacked` does the same for stride
1 (any plane size), laid out as the stride-1 stacked forward kernel: stacks
of :data:`STACK_PIXELS_S1` pixels (G = that / (H*W) planes, at most C),
each image's stack copied whole (one long loop) between gaps of ``W + 1``,
tap (r, s) of flat pixel i read at ``i + (r - 1)*W + (s - 1)``, the
padding taps selected out by each pixel's row and column (kept as numbers
in the scratch: ``xs`` holds two images' stacks and gaps, the row and
column numbers and two dy stacks, :func:`depthwise_weight_stacked_scratch`),
the nine per-pixel sums :data:`STACK_PIXELS_S1` apart in ``acc``.
"""


from ..config import njit
from ._loops import move4, move8, planes_per_stack, zero_span
from ._tasks import parallel_tasks, task

#: The widest float32 planes (columns) the plan runs :func:`conv2d_backward_weight_depthwise_s2_stacked` on: see
#: :func:`depthwise_s2_weight_stacked_preferred`.
WEIGHT_STACKED_MAX_WIDTH = 16
#: ... and float64 planes.
WEIGHT_STACKED_MAX_WIDTH_FLOAT64 = 12
#: The widest float32 planes the plan runs :func:`conv2d_backward_weight_depthwise_stacked` (stride 1) on.
WEIGHT_STACKED_S1_MAX_WIDTH = 12
#: ... and float64 planes: none (0.4-0.8x the general kernel at 6 x 6 to 12 x 12: the sums and stacks of 512
#: float64 pixels overflow L1).
WEIGHT_STACKED_S1_MAX_WIDTH_FLOAT64 = 0
#: The pixels of a stride-1 stack (as many whole planes as fit, at least one): 256 ran 10-30 % slower at 12 x 12
#: (one plane per stack there).
STACK_PIXELS_S1 = 512
#: The output pixels of a stack of planes (as many whole planes as fit, at least one): the length of the kernel's
#: loop.  Its per-pixel sums, masks, dy copies and two images' row phases (84 bytes per float32 output pixel,
#: m = 1) then take 21 KiB.
STACK_PIXELS_S2 = 256


def depthwise_weight_stacked_preferred(W, itemsize=4):
    """Whether the plan runs :func:`conv2d_backward_weight_depthwise_stacked` rather than the general kernel on a
    layer that ``depthwise_stacked_fits`` (3x3, stride 1, padding 1): planes at most
    :data:`WEIGHT_STACKED_S1_MAX_WIDTH` columns wide in float32, :data:`WEIGHT_STACKED_S1_MAX_WIDTH_FLOAT64` in
    float64.

    Measured against the general kernel (one thread, N = 64, 32 to 128
    channels, Zen 4), float32: 1.8-1.9x at 8 x 8 planes, 1.1-1.5x at
    10 x 10, 1.0-1.2x at 12 x 12, 0.6-0.9x at 14 x 14; float64: 0.4-0.8x
    at 6 x 6 to 12 x 12 (never chosen).

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
    return W <= (WEIGHT_STACKED_S1_MAX_WIDTH_FLOAT64 if itemsize > 4 else WEIGHT_STACKED_S1_MAX_WIDTH)


def depthwise_weight_stack(H, W, C):
    """Planes per stack of :func:`conv2d_backward_weight_depthwise_stacked`: ``STACK_PIXELS_S1 // (H*W)``, in 1..C.

    Parameters
    ----------
    H, W : int
        Plane height and width.
    C : int
        Input channels.

    Returns
    -------
    int
    """
    return planes_per_stack(STACK_PIXELS_S1, H * W, C)


def depthwise_weight_stacked_scratch(H, W, C, m):
    """Per-task scratch lengths ``(Lx, La)`` of :func:`conv2d_backward_weight_depthwise_stacked`.

    With G = :func:`depthwise_weight_stack` ``(H, W, C)`` planes per stack,
    ``L = G*H*W`` and ``Lc = ceil(L / STACK_PIXELS_S1) * STACK_PIXELS_S1``:
    ``Lx = 2*(L + 2*(W + 1)) + 4*L`` (two images' stacks between gaps, each
    pixel's row and column, two dy stacks) and ``La = 9*m*Lc`` (the
    per-pixel sums).

    Parameters
    ----------
    H, W : int
        Plane height and width.
    C : int
        Input channels.
    m : int
        Channel multiplier K // C.

    Returns
    -------
    (int, int)
        The lengths of a task's row of ``xs`` and of ``acc``.
    """
    L = depthwise_weight_stack(H, W, C) * H * W
    return 2 * (L + 2 * (W + 1)) + 4 * L, 9 * m * (-(-L // STACK_PIXELS_S1) * STACK_PIXELS_S1)


def depthwise_s2_weight_stacked_preferred(W, itemsize=4):
    """Whether the plan runs :func:`conv2d_backward_weight_depthwise_s2_stacked` rather than the general kernel on
    a layer that ``depthwise_s2_fits``: planes at most :data:`WEIGHT_STACKED_MAX_WIDTH` columns wide in float32,
    :data:`WEIGHT_STACKED_MAX_WIDTH_FLOAT64` in float64.

    Measured against the general kernel (one thread, N = 64, 32 to 128
    channels, Zen 4), float32: 2.8-3.1x at 8 x 8 planes, 1.7-2.0x at
    12 x 12, 1.6-1.9x at 16 x 16, 0.7-1.1x at 32 x 32; float64: 1.9-2.0x,
    1.1-1.4x, 1.0-1.1x.

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
    return W <= (WEIGHT_STACKED_MAX_WIDTH_FLOAT64 if itemsize > 4 else WEIGHT_STACKED_MAX_WIDTH)


def depthwise_s2_weight_stack(H, W, C):
    """Planes per stack of :func:`conv2d_backward_weight_depthwise_s2_stacked`: ``STACK_PIXELS_S2 // (P*Q)``, in 1..C.

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
    return planes_per_stack(STACK_PIXELS_S2, (H // 2) * (W // 2), C)


def depthwise_s2_weight_stacked_scratch(H, W, C, m):
    """Per-task scratch lengths ``(Lx, La)`` of :func:`conv2d_backward_weight_depthwise_s2_stacked`.

    With G = :func:`depthwise_s2_weight_stack` ``(H, W, C)`` planes per
    stack, ``L = G*P*Q`` and ``Lc = ceil(L / STACK_PIXELS_S2) * STACK_PIXELS_S2``:
    ``Lx = 2*(W + 2 + 4*L) + 4*L`` (two images' row phases and gaps, the
    masks, two dy stacks) and ``La = 9*m*Lc`` (the per-pixel sums).

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
        The lengths of a task's row of ``xs`` and of ``acc``.
    """
    L = depthwise_s2_weight_stack(H, W, C) * (H // 2) * (W // 2)
    return 2 * (W + 2 + 4 * L) + 4 * L, 9 * m * (-(-L // STACK_PIXELS_S2) * STACK_PIXELS_S2)


@njit(inline="always")
def _row_phases(src, even, odd, U, W):
    """``even[u*W + v] = src[2u*W + v]`` and ``odd[u*W + v] = src[(2u + 1)*W + v]`` for ``u < U``, ``v < W``: by
    vector moves of 8 (4 on rows of 4 to 7 columns; the last of a row overlapping the one before where W is not a
    multiple; a loop over W columns runs scalar at W = 8), rows of 2 by a plain loop."""
    if W >= 8:
        for u in range(U):
            for v in range(0, W - 7, 8):
                move8(even, u * W + v, src, 2 * u * W + v)
                move8(odd, u * W + v, src, 2 * u * W + W + v)
            if W % 8 != 0:
                move8(even, u * W + W - 8, src, 2 * u * W + W - 8)
                move8(odd, u * W + W - 8, src, 2 * u * W + 2 * W - 8)
    elif W >= 4:
        for u in range(U):
            move4(even, u * W, src, 2 * u * W)
            move4(odd, u * W, src, 2 * u * W + W)
            move4(even, u * W + W - 4, src, 2 * u * W + W - 4)
            move4(odd, u * W + W - 4, src, 2 * u * W + 2 * W - 4)
    else:
        for u in range(U):
            for v in range(W):
                even[u * W + v] = src[2 * u * W + v]
                odd[u * W + v] = src[2 * u * W + W + v]


@njit(inline="always")
def _accumulate_s2(acc, e, Lg, s, ra, rb, L, W, top, left, da, db):
    """``acc[e + (c*9 + t)*CH + i % CH] += da[i]*xa_t[i] + db[i]*xb_t[i]`` (chunk ``c = i // CH``, ``CH =
    STACK_PIXELS_S2``) for the 9 taps t and the ``Lg`` pixels i of a stack: the two images' row phases start at
    ``s[ra:]`` and ``s[rb:]`` (odd rows; even rows ``2L + 1`` further), the padding taps selected out by the
    masks ``top`` and ``left``.  A tap's sums lie a fixed CH from the next tap's, so that LLVM sees the nine
    stores apart and vectorises the loop without run-time overlap checks."""
    zero = s.dtype.type(0)
    CH = STACK_PIXELS_S2
    for c in range(0, Lg, CH):
        n = min(CH, Lg - c)
        b = e + (c // CH) * 9 * CH
        a0, a1, a2 = acc[b:b + n], acc[b + CH:b + CH + n], acc[b + 2 * CH:b + 2 * CH + n]
        a3, a4, a5 = acc[b + 3 * CH:b + 3 * CH + n], acc[b + 4 * CH:b + 4 * CH + n], acc[b + 5 * CH:b + 5 * CH + n]
        a6, a7, a8 = acc[b + 6 * CH:b + 6 * CH + n], acc[b + 7 * CH:b + 7 * CH + n], acc[b + 8 * CH:b + 8 * CH + n]
        # rows 2p - 1, 2p, 2p + 1 at column 2q + k: u_r[2i + k] (image a), v_r[2i + k] (image b)
        o0, o1, o2 = ra + 2 * c - W, ra + 2 * L + 1 + 2 * c, ra + 2 * c
        u0, u1, u2 = s[o0:o0 + 2 * n], s[o1:o1 + 2 * n], s[o2:o2 + 2 * n]
        o0, o1, o2 = o0 + rb - ra, o1 + rb - ra, o2 + rb - ra
        v0, v1, v2 = s[o0:o0 + 2 * n], s[o1:o1 + 2 * n], s[o2:o2 + 2 * n]
        tp, lf, d_, g_ = top[c:c + n], left[c:c + n], da[c:c + n], db[c:c + n]
        # column 2q - 1: carried from the previous pixel (column 2q + 1 there; selected out where q == 0)
        l0, l1, l2 = s[ra + 2 * c - W - 1], s[ra + 2 * L + 2 * c], s[ra + 2 * c - 1]
        k0, k1, k2 = s[rb + 2 * c - W - 1], s[rb + 2 * L + 2 * c], s[rb + 2 * c - 1]
        for i in range(n):  # every value loaded before the selects (a load under a condition stops vectorising)
            t, f = tp[i] != zero, lf[i] != zero
            d, g = d_[i], g_[i]
            x1, x2, y1, y2 = u0[2 * i], u0[2 * i + 1], v0[2 * i], v0[2 * i + 1]
            p0, p1, p2 = d * l0 + g * k0, d * x1 + g * y1, d * x2 + g * y2
            l0, k0 = x2, y2
            a0[i] += ((p0 if f else zero) if t else zero)
            a1[i] += (p1 if t else zero)
            a2[i] += (p2 if t else zero)
            x1, x2, y1, y2 = u1[2 * i], u1[2 * i + 1], v1[2 * i], v1[2 * i + 1]
            a3[i] += ((d * l1 + g * k1) if f else zero)
            a4[i] += d * x1 + g * y1
            a5[i] += d * x2 + g * y2
            l1, k1 = x2, y2
            x1, x2, y1, y2 = u2[2 * i], u2[2 * i + 1], v2[2 * i], v2[2 * i + 1]
            a6[i] += ((d * l2 + g * k2) if f else zero)
            a7[i] += d * x1 + g * y1
            a8[i] += d * x2 + g * y2
            l2, k2 = x2, y2


@njit(inline="always")
def _flush(acc, L, part, c0, g, m, PQ, CH):
    """Add the per-pixel sums ``acc`` (m blocks of ``9*Lc``, ``Lc = ceil(L / CH)*CH``, in chunks of ``9*CH``: a
    tap's CH pixels after the previous tap's) of the stack of channels ``c0 .. c0 + g - 1``, plane by plane, to
    ``part`` (K, 9), and zero them."""
    zero = acc.dtype.type(0)
    Lc = -(-L // CH) * CH
    for j in range(m):
        for r in range(9):
            for k in range(g):
                total = zero
                for i in range(k * PQ, (k + 1) * PQ):
                    a = j * 9 * Lc + ((i // CH) * 9 + r) * CH + i % CH
                    total += acc[a]
                    acc[a] = zero
                part[(c0 + k) * m + j, r] += total


@njit(inline="always")
def _dy_stacks(dyf, da, db, n, two, c0, g, m, j, PQ):
    """``da`` and ``db``: the dy planes of filter j of channels ``c0 .. c0 + g - 1`` of images n and n + 1 (zeros
    for no second image)."""
    zero = da.dtype.type(0)
    for k in range(g):
        src = dyf[n, ((c0 + k) * m + j) * PQ:((c0 + k) * m + j + 1) * PQ]
        dst = da[k * PQ:(k + 1) * PQ]
        for i in range(PQ):
            dst[i] = src[i]
        dst = db[k * PQ:(k + 1) * PQ]
        if two:
            src = dyf[n + 1, ((c0 + k) * m + j) * PQ:((c0 + k) * m + j + 1) * PQ]
            for i in range(PQ):
                dst[i] = src[i]
        else:
            for i in range(PQ):
                dst[i] = zero


@njit(inline="always")
def _reduce(dw, partial):
    """``dw`` (K, 1, 3, 3): the partial sums (T, K, 9) added in task order."""
    K = dw.shape[0]
    T = partial.shape[0]
    zero = dw.dtype.type(0)
    dwf = dw.reshape(K, 9)
    for k in range(K):
        for i in range(9):
            total = zero
            for t in range(T):
                total += partial[t, k, i]
            dwf[k, i] = total


@task("r4 r4 a2 a2 a3 i")
def _s2_task(dy, x, xs, acc, partial, t):
    """Task t of :func:`conv2d_backward_weight_depthwise_s2_stacked`: its run of (stack, pair of images) items,
    summed into ``partial[t]``."""
    N, C, H, W = x.shape
    K = dy.shape[1]
    m = K // C
    P, Q = H // 2, W // 2
    PQ, HW = P * Q, H * W
    T = xs.shape[0]
    G = max(1, min(C, STACK_PIXELS_S2 // PQ))
    L = G * PQ
    nb = (C + G - 1) // G
    pairs = (N + 1) // 2
    S = W + 2 + 4 * L  # one image's row phases: a gap of W + 1, the odd rows, a gap of 1, the even rows
    mk = 2 * S  # the masks
    dsb = mk + 2 * L  # the two images' dy stacks
    zero = dy.dtype.type(0)
    one = dy.dtype.type(1)
    s = xs[t]
    part = partial[t]
    for k in range(K):
        for r in range(9):
            part[k, r] = zero
    zero_span(s, 0, 2 * S)  # the gaps (and the row phases: never read unwritten)
    sums = acc[t]
    Lc = -(-L // STACK_PIXELS_S2) * STACK_PIXELS_S2
    zero_span(sums, 0, 9 * m * Lc)
    top, left = s[mk:mk + L], s[mk + L:mk + 2 * L]
    for j in range(G * P):  # stacked output rows: row p of plane j // P
        for q in range(Q):
            top[j * Q + q] = one if j % P != 0 else zero
            left[j * Q + q] = one if q != 0 else zero
    da, db = s[dsb:dsb + L], s[dsb + L:dsb + 2 * L]
    xf = x.reshape(N, C * HW)
    dyf = dy.reshape(N, K * PQ)
    ra, rb = W + 1, S + W + 1  # the odd rows of each image; its even rows 2L + 1 further
    last = -1
    for item in range(t * nb * pairs // T, (t + 1) * nb * pairs // T):
        cb = item // pairs
        n = 2 * (item - cb * pairs)
        c0 = cb * G
        g = min(G, C - c0)
        Lg = g * PQ
        if cb != last:
            if last >= 0:
                _flush(sums, L, part, last * G, min(G, C - last * G), m, PQ, STACK_PIXELS_S2)
            last = cb
        two = n + 1 < N
        _row_phases(xf[n, c0 * HW:(c0 + g) * HW], s[ra + 2 * L + 1:ra + 4 * L + 1], s[ra:ra + 2 * L], g * P, W)
        if two:
            _row_phases(xf[n + 1, c0 * HW:(c0 + g) * HW], s[rb + 2 * L + 1:rb + 4 * L + 1], s[rb:rb + 2 * L],
                        g * P, W)
        else:  # no second image: zeros (its stale rows could hold inf)
            zero_span(s, rb, rb + 4 * L + 1)
        for j in range(m):
            _dy_stacks(dyf, da, db, n, two, c0, g, m, j, PQ)
            _accumulate_s2(sums, j * 9 * Lc, Lg, s, ra, rb, L, W, top, left, da, db)
    if last >= 0:
        _flush(sums, L, part, last * G, min(G, C - last * G), m, PQ, STACK_PIXELS_S2)


_s2_tasks = parallel_tasks(_s2_task)


@njit
def conv2d_backward_weight_depthwise_s2_stacked(dy, x, dw, xs, acc, partial):
    """Depthwise 3x3 weight gradient with stride 2 and padding 1: ``dw[k, 0, r, s] = sum_{n, p, q} dy[n, k, p, q]
    * xp[n, k // m, 2p + r, 2q + s]`` (xp: x zero-padded by 1, m = K // C), for even H and W.

    Each task splits stacks of G channel planes of two images into even and
    odd rows and adds each tap's products to per-pixel sums in one loop
    over the stack (9 taps fused, stride-2 reads, the padding taps selected
    out); a plane's per-pixel sums are added up when the task leaves its
    stack, into ``partial[t]``, and the partial sums are added in task
    order (results depend on the task count, not on scheduling).  The same
    as :func:`conv2d_backward_weight_depthwise` with ``sh = sw = 2``,
    ``ph = pw = 1`` and no dilation, up to rounding.

    Parameters
    ----------
    dy : (N, K, H/2, W/2) float array, read
    x : (N, C, H, W) array of dy's dtype, read; H and W even, K a multiple of C
    dw : (K, 1, 3, 3) array of dy's dtype, written in full
    xs : (T, Lx) array of dy's dtype, scratch, one row per task; overwritten
    acc : (T, La) array of dy's dtype, scratch (``Lx``, ``La`` at least
        :func:`depthwise_s2_weight_stacked_scratch`); overwritten
    partial : (T, K, 9) array of dy's dtype, scratch
    """
    _s2_tasks(xs.shape[0], dy, x, xs, acc, partial)
    _reduce(dw, partial)


# --------------------------------------------------------------------------- stride 1


@njit(inline="always")
def _accumulate_s1(acc, e, Lg, s, S, W, rows, cols, last_row, last_col, da, db):
    """``acc[e + (c*9 + t)*CH + i % CH] += da[i]*xa_t[i] + db[i]*xb_t[i]`` (``CH = STACK_PIXELS_S1``) for the 9
    taps t and the ``Lg`` pixels i of a stack: the two images' stacks at ``s[W + 1:]`` and ``s[S + W + 1:]``
    (tap (r, c) of pixel i at ``i + r*W + c`` from the gap before), the padding taps selected out by each
    pixel's row and column ``rows``, ``cols``."""
    zero = s.dtype.type(0)
    CH = STACK_PIXELS_S1
    for c in range(0, Lg, CH):
        n = min(CH, Lg - c)
        b = e + (c // CH) * 9 * CH
        a0, a1, a2 = acc[b:b + n], acc[b + CH:b + CH + n], acc[b + 2 * CH:b + 2 * CH + n]
        a3, a4, a5 = acc[b + 3 * CH:b + 3 * CH + n], acc[b + 4 * CH:b + 4 * CH + n], acc[b + 5 * CH:b + 5 * CH + n]
        a6, a7, a8 = acc[b + 6 * CH:b + 6 * CH + n], acc[b + 7 * CH:b + 7 * CH + n], acc[b + 8 * CH:b + 8 * CH + n]
        u0, u1, u2 = s[c:c + n + 2], s[c + W:c + W + n + 2], s[c + 2 * W:c + 2 * W + n + 2]
        o = S + c
        v0, v1, v2 = s[o:o + n + 2], s[o + W:o + W + n + 2], s[o + 2 * W:o + 2 * W + n + 2]
        hr, vc, d_, g_ = rows[c:c + n], cols[c:c + n], da[c:c + n], db[c:c + n]
        for i in range(n):  # every value loaded before the selects (a load under a condition stops vectorising)
            h, v = hr[i], vc[i]
            up, down, left, right = h != zero, h != last_row, v != zero, v != last_col
            d, g = d_[i], g_[i]
            p0, p1, p2 = d * u0[i] + g * v0[i], d * u0[i + 1] + g * v0[i + 1], d * u0[i + 2] + g * v0[i + 2]
            a0[i] += ((p0 if left else zero) if up else zero)
            a1[i] += (p1 if up else zero)
            a2[i] += ((p2 if right else zero) if up else zero)
            p0, p1, p2 = d * u1[i] + g * v1[i], d * u1[i + 1] + g * v1[i + 1], d * u1[i + 2] + g * v1[i + 2]
            a3[i] += (p0 if left else zero)
            a4[i] += p1
            a5[i] += (p2 if right else zero)
            p0, p1, p2 = d * u2[i] + g * v2[i], d * u2[i + 1] + g * v2[i + 1], d * u2[i + 2] + g * v2[i + 2]
            a6[i] += ((p0 if left else zero) if down else zero)
            a7[i] += (p1 if down else zero)
            a8[i] += ((p2 if right else zero) if down else zero)


@task("r4 r4 a2 a2 a3 i")
def _s1_task(dy, x, xs, acc, partial, t):
    """Task t of :func:`conv2d_backward_weight_depthwise_stacked`: its run of (stack, pair of images) items,
    summed into ``partial[t]``."""
    N, C, H, W = x.shape
    K = dy.shape[1]
    m = K // C
    HW = H * W
    T = xs.shape[0]
    G = max(1, min(C, STACK_PIXELS_S1 // HW))
    L = G * HW
    nb = (C + G - 1) // G
    pairs = (N + 1) // 2
    S = L + 2 * (W + 1)  # one image's stack between its gaps
    rc = 2 * S  # the row and column numbers
    dsb = rc + 2 * L  # the two images' dy stacks
    zero = dy.dtype.type(0)
    s = xs[t]
    part = partial[t]
    for k in range(K):
        for r in range(9):
            part[k, r] = zero
    zero_span(s, 0, 2 * S)  # the gaps (and the stacks: never read unwritten)
    sums = acc[t]
    Lc = -(-L // STACK_PIXELS_S1) * STACK_PIXELS_S1
    zero_span(sums, 0, 9 * m * Lc)
    rows, cols = s[rc:rc + L], s[rc + L:rc + 2 * L]
    for j in range(G * H):  # stacked rows: row j % H of plane j // H
        for v in range(W):
            rows[j * W + v] = j % H
            cols[j * W + v] = v
    last_row, last_col = dy.dtype.type(H - 1), dy.dtype.type(W - 1)
    da, db = s[dsb:dsb + L], s[dsb + L:dsb + 2 * L]
    xf = x.reshape(N, C * HW)
    dyf = dy.reshape(N, K * HW)
    last = -1
    for item in range(t * nb * pairs // T, (t + 1) * nb * pairs // T):
        cb = item // pairs
        n = 2 * (item - cb * pairs)
        c0 = cb * G
        g = min(G, C - c0)
        Lg = g * HW
        if cb != last:
            if last >= 0:
                _flush(sums, L, part, last * G, min(G, C - last * G), m, HW, STACK_PIXELS_S1)
            last = cb
        two = n + 1 < N
        for h in range(2):
            dst = s[h * S + W + 1:h * S + W + 1 + Lg]
            if h == 0 or two:
                src = xf[n + h, c0 * HW:(c0 + g) * HW]
                for i in range(Lg):
                    dst[i] = src[i]
            else:  # no second image: zeros (its stale stack could hold inf)
                for i in range(Lg):
                    dst[i] = zero
        for j in range(m):
            _dy_stacks(dyf, da, db, n, two, c0, g, m, j, HW)
            _accumulate_s1(sums, j * 9 * Lc, Lg, s, S, W, rows, cols, last_row, last_col, da, db)
    if last >= 0:
        _flush(sums, L, part, last * G, min(G, C - last * G), m, HW, STACK_PIXELS_S1)


_s1_tasks = parallel_tasks(_s1_task)


@njit
def conv2d_backward_weight_depthwise_stacked(dy, x, dw, xs, acc, partial):
    """Depthwise 3x3 weight gradient with stride 1 and padding 1: ``dw[k, 0, r, s] = sum_{n, p, q} dy[n, k, p, q]
    * xp[n, k // m, p + r, q + s]`` (xp: x zero-padded by 1, m = K // C), any plane size.

    Each task copies stacks of G channel planes of two images between gaps
    and adds each tap's products to per-pixel sums in one loop over the
    stack (9 taps fused, the padding taps selected out by each pixel's row
    and column); a plane's per-pixel sums are added up when the task leaves
    its stack, into ``partial[t]``, and the partial sums are added in task
    order (results depend on the task count, not on scheduling).  The same
    as :func:`conv2d_backward_weight_depthwise` with stride 1, padding 1 and
    no dilation, up to rounding.

    Parameters
    ----------
    dy : (N, K, H, W) float array, read
    x : (N, C, H, W) array of dy's dtype, read; K a multiple of C
    dw : (K, 1, 3, 3) array of dy's dtype, written in full
    xs : (T, Lx) array of dy's dtype, scratch, one row per task; overwritten
    acc : (T, La) array of dy's dtype, scratch (``Lx``, ``La`` at least
        :func:`depthwise_weight_stacked_scratch`); overwritten
    partial : (T, K, 9) array of dy's dtype, scratch
    """
    _s1_tasks(xs.shape[0], dy, x, xs, acc, partial)
    _reduce(dw, partial)
