"""Raw depthwise forward kernel for MobileNet's downsampling layers on narrow planes: 3x3, stride 2, padding 1.

On planes narrower than 12 columns (an 8 x 8 plane has 16 output pixels)
the kernels of ``_conv_depthwise_s2.py`` run their loops per plane: one
vector or less of work per loop, and a loop set-up, row copies and a carry
per plane.  :func:`conv2d_forward_depthwise_s2_stacked` instead runs one
loop over a *stack* of G consecutive channel planes of an image (G = 256
output pixels / (P*Q), at most C: :func:`depthwise_s2_stack`; 16 planes of
8 x 8), for two images at once.  The plan (``conv_buffers``) runs it on the
layers that ``depthwise_s2_fits`` at most :data:`STACKED_MAX_WIDTH` columns
wide.  Measured against the column-phase kernel (one thread, Zen 4, N = 64,
C = 64): 2.1x at 8 x 8 planes, 2.9x at 6 x 6, 4.0x at 4 x 4, 2.4x at 2 x 2,
1.35x at 10 x 10 in float32 (float64: 1.45x, 1.9x, 3.1x, 2.3x, 1.1x); at 12
columns and more the row-phase kernel is as fast or faster.

Per (stack, pair of images) item of a task:

* *row phases*: the stack's G*H rows (contiguous in x) are split into its
  even rows (``R0``) and odd rows (``R1``), each G*P rows of W, flat, by
  8- or 4-wide vector loads and stores (:func:`fastcnn.kernels._loops.vector_move`, an LLVM
  intrinsic; see :func:`_row_phases`);
* *outputs*: as in the row-phase kernel of ``_conv_depthwise_s2.py``, the
  output pixel of flat index ``i = (g*P + p)*Q + q`` (plane g of the
  stack) reads input row ``2p + r - 1`` at columns ``2q - 1``, ``2q``,
  ``2q + 1``: ``R0[2i]``, ``R0[2i + 1]`` (row 2p), ``R1[2i]``,
  ``R1[2i + 1]`` (row 2p + 1), ``R1[2i - W]``, ``R1[2i - W + 1]`` (row
  2p - 1), and column 2q - 1 is carried from the previous i.  One loop over
  the ``G*P*Q`` outputs of the stack fuses the 9 taps, its weights read
  from per-pixel copies (each tap's weight repeated over the P*Q pixels of
  its plane, written once per stack and task: a task's items run stack by
  stack); the two images of
  the item share these loads (a weight is loaded once for two FMAs: loads
  bound the loop);
* *padding*: row 2p - 1 at p = 0 is the previous plane's last odd row (or
  the zero gap before R1) and column 2q - 1 at q = 0 the previous row's
  last pixel; their taps are summed apart and added only where the masks
  ``top`` (``p != 0``) and ``left`` (``q != 0``) are nonzero (selects, so an
  inf or NaN in those pixels does not leak into the output);
* with m = 1 the outputs are written to y (a stack's output planes are
  contiguous there); with m > 1 each of the m filters of a channel is a
  pass over the stack into the scratch ``ys`` and is copied plane by plane
  to y.  With N odd the last pair holds one image: the loop still runs
  over the second image's row phases (stale scratch) into ``ys``, dropped.

Scratch per task (:func:`depthwise_s2_stacked_scratch`): ``xs`` holds, for
each of the two images, a zero gap of ``W + 1``, R1, a zero of 1 and R0
(``2*G*P*W`` each), then the masks (``2*G*P*Q``) and the weight copies
(``m*10*G*P*Q``: 9 taps and the bias); ``ys`` two stacks of outputs.  The
results are the same bits whatever the task count.  Shape vocabulary as in
``_conv_depthwise.py``: x (N, C, H, W), w (K, 1, 3, 3) with K = m*C, y (N,
K, P, Q) with ``P = H/2``, ``Q = W/2``; T tasks (the first axis of the
scratch arrays).
"""


from ..config import njit
from ._loops import copy_stack_outputs, fill_pixel_weights, move4, move8, planes_per_stack
from ._tasks import parallel_tasks, task

#: The widest planes (columns) the plan runs :func:`conv2d_forward_depthwise_s2_stacked` on.
STACKED_MAX_WIDTH = 10
#: The output pixels of a stack of planes (as many whole planes as fit, at least one): the length of the kernel's
#: loop.  Its weight copies, masks and two images' row phases (about 60 bytes per float32 output pixel) then stay
#: in a 32 KiB L1 cache; 512 or 1024 pixels measured slower at 8 x 8 planes.
STACK_PIXELS = 256


def depthwise_s2_stack(H, W, C):
    """Planes per stack of :func:`conv2d_forward_depthwise_s2_stacked`: ``STACK_PIXELS // (P*Q)``, in 1..C.

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


def depthwise_s2_stacked_scratch(H, W, C, m):
    """Per-task scratch lengths ``(Lx, Ly)`` of :func:`conv2d_forward_depthwise_s2_stacked`.

    With G = :func:`depthwise_s2_stack` ``(H, W, C)`` planes per stack and
    ``L = G*P*Q``: ``Lx = 2*(W + 2 + 4*L) + 2*L + 10*m*L`` (two images' row
    phases and gaps, the masks, the weight copies) and ``Ly = 2*L`` (two
    stacks of outputs).

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
        The lengths of a task's row of ``xs`` and of ``ys``.
    """
    L = depthwise_s2_stack(H, W, C) * (H // 2) * (W // 2)
    return 2 * (W + 2 + 4 * L) + 2 * L + 10 * m * L, 2 * L


@njit(inline="always")
def _row_phases(src, even, odd, U, W):
    """``even[u*W + v] = src[2u*W + v]`` and ``odd[u*W + v] = src[(2u + 1)*W + v]`` for ``u < U``, ``v < W``.

    By vector moves of 8 (4 on rows of 4 to 7 columns; the last one of a row
    overlapping the one before where W is not a multiple): LLVM unrolls a
    fixed 8-column loop into scalar copies, and a loop over W columns runs
    scalar at W = 8.  Rows of 2 columns by a plain loop.
    """
    if W >= 8:
        for v in range(0, W - 7, 8):
            for u in range(U):
                move8(even, u * W + v, src, 2 * u * W + v)
                move8(odd, u * W + v, src, 2 * u * W + W + v)
        if W % 8 != 0:
            for u in range(U):
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
def _stack_outputs(out, out2, s, e, L, Lg, a0, a1, a2, b0, b1, b2, top, left):
    """``out[:Lg]`` and ``out2[:Lg]``: the outputs of the same stack of planes of two images (row phases read
    through a0, a1, a2 and b0, b1, b2), the stack's expanded weights at ``s[e:]`` (10 rows of L: 9 taps, bias),
    the padding masks ``top`` and ``left``.  Each weight is loaded once for both images."""
    zero = out.dtype.type(0)
    w0, w1, w2 = s[e:e + Lg], s[e + L:e + L + Lg], s[e + 2 * L:e + 2 * L + Lg]
    w3, w4, w5 = s[e + 3 * L:e + 3 * L + Lg], s[e + 4 * L:e + 4 * L + Lg], s[e + 5 * L:e + 5 * L + Lg]
    w6, w7, w8 = s[e + 6 * L:e + 6 * L + Lg], s[e + 7 * L:e + 7 * L + Lg], s[e + 8 * L:e + 8 * L + Lg]
    bb = s[e + 9 * L:e + 9 * L + Lg]
    l0 = l1 = l2 = k0 = k1 = k2 = zero  # column 2q - 1 of each tap row
    for i in range(Lg):
        t, f = top[i] != zero, left[i] != zero
        c0, c1, c2, c3, c4, c5, c6, c7, c8 = w0[i], w1[i], w2[i], w3[i], w4[i], w5[i], w6[i], w7[i], w8[i]
        o0, o1, o2 = a0[2 * i + 1], a1[2 * i + 1], a2[2 * i + 1]
        upper = c1 * a0[2 * i] + c2 * o0 + (c0 * l0 if f else zero)  # row 2p - 1: padding where p == 0
        side = c3 * l1 + c6 * l2  # column 2q - 1: padding where q == 0
        out[i] = ((bb[i] + c4 * a1[2 * i]) + (c5 * o1 + c7 * a2[2 * i]) + c8 * o2
                  + (upper if t else zero) + (side if f else zero))
        l0, l1, l2 = o0, o1, o2
        p0, p1, p2 = b0[2 * i + 1], b1[2 * i + 1], b2[2 * i + 1]
        upper2 = c1 * b0[2 * i] + c2 * p0 + (c0 * k0 if f else zero)
        side2 = c3 * k1 + c6 * k2
        out2[i] = ((bb[i] + c4 * b1[2 * i]) + (c5 * p1 + c7 * b2[2 * i]) + c8 * p2
                   + (upper2 if t else zero) + (side2 if f else zero))
        k0, k1, k2 = p0, p1, p2


@task("r4 r4 r1 a4 a2 a2 i")
def _stacked_task(x, w, b, y, xs, ys, t):
    """Task t of :func:`conv2d_forward_depthwise_s2_stacked`: its run of (stack, pair of images) items."""
    N, C, H, W = x.shape
    K = w.shape[0]
    m = K // C
    P, Q = H // 2, W // 2
    PQ, HW = P * Q, H * W
    T = xs.shape[0]
    L = ys.shape[1] // 2
    G = L // PQ
    nb = (C + G - 1) // G
    pairs = (N + 1) // 2
    S = W + 2 + 4 * L  # one image's row phases: a gap of W + 1, the odd rows, a gap of 1, the even rows
    mk = 2 * S  # the masks
    wb = mk + 2 * L  # expanded weights (m, 10, L)
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    s = xs[t]
    for r in (0, S):
        for j in range(W + 1):
            s[r + j] = zero
        s[r + W + 1 + 2 * L] = zero
    top, left = s[mk:mk + L], s[mk + L:mk + 2 * L]
    for j in range(G * P):  # stacked output rows: row p of plane j // P
        for q in range(Q):
            top[j * Q + q] = one if j % P != 0 else zero
            left[j * Q + q] = one if q != 0 else zero
    xf = x.reshape(N, C * HW)
    yf = y.reshape(N, K * PQ)
    wf = w.reshape(K, 9)
    ra, rb = W + 1, S + W + 1  # the odd rows of each image; its even rows 2L + 1 further
    odd, even = s[ra:ra + 2 * L], s[ra + 2 * L + 1:ra + 4 * L + 1]
    odd2, even2 = s[rb:rb + 2 * L], s[rb + 2 * L + 1:rb + 4 * L + 1]
    # tap rows 2p - 1, 2p, 2p + 1 from column 2q: a[2i], a[2i + 1]
    a0, a1, a2 = s[ra - W:ra - W + 2 * L], even, odd
    b0, b1, b2 = s[rb - W:rb - W + 2 * L], even2, odd2
    last = -1
    for item in range(t * nb * pairs // T, (t + 1) * nb * pairs // T):
        cb = item // pairs
        n = 2 * (item - cb * pairs)
        c0 = cb * G
        g = min(G, C - c0)
        Lg = g * PQ
        if cb != last:
            fill_pixel_weights(s, wb, L, wf, b, c0, g, m, PQ, 10)
            last = cb
        two = n + 1 < N
        _row_phases(xf[n, c0 * HW:(c0 + g) * HW], even, odd, g * P, W)
        if two:
            _row_phases(xf[n + 1, c0 * HW:(c0 + g) * HW], even2, odd2, g * P, W)
        direct = m == 1 and two  # the stack's output planes are contiguous in y: written there
        for j in range(m):
            out = yf[n, c0 * PQ:(c0 + g) * PQ] if direct else ys[t, :L]
            out2 = yf[n + 1, c0 * PQ:(c0 + g) * PQ] if direct else ys[t, L:]
            _stack_outputs(out, out2, s, wb + j * 10 * L, L, Lg, a0, a1, a2, b0, b1, b2, top, left)
            if direct:
                continue
            for h in range(2 if two else 1):
                copy_stack_outputs(yf, out if h == 0 else out2, n + h, c0, g, m, j, PQ)


_stacked_tasks = parallel_tasks(_stacked_task)


@njit
def conv2d_forward_depthwise_s2_stacked(x, w, b, y, xs, ys):
    """Depthwise 3x3 forward with stride 2 and padding 1: ``y[n, k, p, q] = b[k] + sum_{r, s} w[k, 0, r, s] *
    xp[n, k // m, 2p + r, 2q + s]`` (xp: x zero-padded by 1, m = K // C), for even H and W.

    Each task splits stacks of G channel planes of two images into even and
    odd rows and computes each stack's outputs in one loop (9 taps fused,
    stride-2 reads, weights read per pixel and shared by the two images).
    The same as :func:`conv2d_forward_depthwise` with ``sh = sw = 2``,
    ``ph = pw = 1`` and no dilation, up to rounding.

    Parameters
    ----------
    x : (N, C, H, W) float array, read; H and W even
    w : (K, 1, 3, 3) array of x's dtype, K a multiple of C
    b : (K,) array of x's dtype (zeros for no bias)
    y : (N, K, H/2, W/2) array of x's dtype, written in full
    xs : (T, Lx) array of x's dtype, scratch, one row per task (:func:`depthwise_s2_stacked_scratch`); overwritten
    ys : (T, 2*G*P*Q) array of x's dtype, scratch; its width sets G, the planes per stack, and then
        ``Lx >= 2*(W + 2 + 4*G*P*Q) + (2 + 10*m)*G*P*Q``; overwritten
    """
    _stacked_tasks(xs.shape[0], x, w, b, y, xs, ys)
