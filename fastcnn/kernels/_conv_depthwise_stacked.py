"""Raw depthwise forward kernel for narrow planes: 3x3, stride 1, padding 1 (MobileNet's non-downsampling layers).

On planes narrow and short (an 8 x 8 plane is 64 output pixels) the
general kernel of ``_conv_depthwise.py`` spends its time per plane: the
plane's rows copied into a zero-padded scratch one by one, one short fused
loop over ``P*(W + 2)`` wide pixels, the Q valid columns of each row copied
out.  :func:`conv2d_forward_depthwise_stacked` instead runs one loop over a
*stack* of G consecutive channel planes of an image (G =
:data:`STACK_PIXELS` pixels / (H*W), at most C: :func:`depthwise_stack`; 8
planes of 8 x 8), for two images at once.  The plan (``conv_buffers``) runs
it on the layers that :func:`depthwise_stacked_fits` on narrow planes
(:func:`depthwise_stacked_preferred`).

A task runs a contiguous run of (stack, pair of images) items, ordered by
block of :data:`BLOCK_PAIRS` pairs, then stack, then pair: it copies a
stack's weights once per block, and reads x and writes y in runs of a few
images' stacks.  Per item:

* the stack's ``G*H*W`` pixels of each image (contiguous in x) are copied
  into the task's scratch between gaps of ``W + 1`` (one long loop), so
  that, over the flat index ``i = (g*H + h)*W + v`` of the stack, tap
  (r, s) of output pixel i reads the copy at ``i + (r - 1)*W + (s - 1)``:
  one loop over the stack fuses the 9 taps, its weights read from
  per-pixel copies (each tap's weight repeated over the H*W pixels of its
  plane, written when the item's stack is not the previous item's), each
  weight loaded once for the two images' FMAs;
* *padding*: the taps of the row above (below) a pixel are summed apart
  and added only where its row ``h != 0`` (``h != H - 1``), those of the
  column left (right) of it only where ``v != 0`` (``v != W - 1``): selects
  on the row and column of each pixel (kept as numbers in the scratch), so
  an inf or NaN in the neighbouring plane, row or column, or in the gaps,
  does not leak into the output;
* with m = 1 the outputs are written to y (a stack's output planes are
  contiguous there); with m > 1 each of the m filters of a channel is a
  pass over the stack into the scratch ``ys`` and is copied plane by plane
  to y.  With N odd the last pair holds one image: the loop still runs over
  the second image's copy (stale scratch) into ``ys``, dropped.

Scratch per task (:func:`depthwise_stacked_scratch`): ``xs`` holds, for each
of the two images, a gap of ``W + 1``, the stack (``L = G*H*W``) and a gap
of ``W + 1``, then the row and column numbers (``2*L``) and the weight
copies (``m*10*L``: 9 taps and the bias); ``ys`` two stacks of outputs.  The
results are the same bits whatever the task count.  Shape vocabulary as in
``_conv_depthwise.py``: x (N, C, H, W), w (K, 1, 3, 3) with K = m*C, y (N,
K, H, W); T tasks (the first axis of the scratch arrays).
"""

from ..config import njit
from ._loops import copy_stack_outputs, fill_pixel_weights, planes_per_stack
from ._tasks import parallel_tasks, task

#: The widest float32 planes (columns) the plan runs :func:`conv2d_forward_depthwise_stacked` on, whatever their
#: number: see :func:`depthwise_stacked_preferred`.
STACKED_MAX_WIDTH = 14
#: ... and on planes up to this wide when x holds at most :data:`STACKED_WIDE_MAX_INPUT` numbers.
STACKED_WIDE_MAX_WIDTH = 16
#: Numbers of x (4 MiB of float32) up to which the plan stacks planes wider than :data:`STACKED_MAX_WIDTH`.
STACKED_WIDE_MAX_INPUT = 2**20
#: The widest float64 planes the plan runs :func:`conv2d_forward_depthwise_stacked` on.
STACKED_MAX_WIDTH_FLOAT64 = 8
#: The output pixels of a stack of planes (as many whole planes as fit, at least one): the length of the kernel's
#: loop.  Its weight copies, row and column numbers and two images' stacks (56 bytes per float32 pixel, m = 1)
#: take 28 KiB; 256 pixels measured 10-30 % slower at 4 x 4 to 16 x 16 planes, 768 about as fast as 512.
STACK_PIXELS = 512
#: Pairs of images per block: a task runs each stack over the pairs of a block before the next stack, so that it
#: reads x and writes y in runs of a few images, not one stack across the whole batch (that ran 20-25 % slower
#: on 12 x 12 planes with 256 channels; 1 pair per block was slower again, 8 or 16 as fast as 4).
BLOCK_PAIRS = 4


def depthwise_stacked_fits(H, W, R, S, sh, sw, ph, pw, dil_h, dil_w):
    """Whether :func:`conv2d_forward_depthwise_stacked` computes this depthwise layer: 3x3, stride 1, padding 1,
    dilation 1 (then ``P = H`` and ``Q = W``), any plane size.

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
    return (R, S, sh, sw, ph, pw, dil_h, dil_w) == (3, 3, 1, 1, 1, 1, 1, 1) and H >= 1 and W >= 1


def depthwise_stacked_preferred(N, C, H, W, itemsize=4):
    """Whether the plan runs :func:`conv2d_forward_depthwise_stacked` rather than the general kernel on a layer
    that :func:`depthwise_stacked_fits`: float32 planes at most :data:`STACKED_MAX_WIDTH` columns wide, or at
    most :data:`STACKED_WIDE_MAX_WIDTH` when x holds at most :data:`STACKED_WIDE_MAX_INPUT` numbers; float64
    planes at most :data:`STACKED_MAX_WIDTH_FLOAT64` wide.

    Measured against the general kernel (one thread, N = 64), float32: 6-7x
    at 4 x 4 planes, 2.3-3x at 8 x 8, 1.3-1.9x at 12 x 12 and 14 x 14; at
    16 x 16 1.2-1.5x with 32 or 64 channels (x of 2 or 4 MiB) but 0.85-1.0x
    with 128 or 256 (8 or 16 MiB: both kernels wait on memory, and the
    stacked kernel reads per-pixel weights and several images at once); at
    18 x 18 0.8-1.1x.  float64 (twice the bytes per pixel): 3-3.5x at 4 x 4,
    1.3-1.6x at 8 x 8, 0.7-1.2x at 12 x 12.

    Parameters
    ----------
    N, C, H, W : int
        The input's shape.
    itemsize : int
        Bytes per number: 4 (float32) or 8 (float64).

    Returns
    -------
    bool
    """
    if itemsize > 4:
        return W <= STACKED_MAX_WIDTH_FLOAT64
    return W <= STACKED_MAX_WIDTH or (W <= STACKED_WIDE_MAX_WIDTH and N * C * H * W <= STACKED_WIDE_MAX_INPUT)


def depthwise_stack(H, W, C):
    """Planes per stack of :func:`conv2d_forward_depthwise_stacked`: ``STACK_PIXELS // (H*W)``, in 1..C.

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
    return planes_per_stack(STACK_PIXELS, H * W, C)


def depthwise_stacked_scratch(H, W, C, m):
    """Per-task scratch lengths ``(Lx, Ly)`` of :func:`conv2d_forward_depthwise_stacked`.

    With G = :func:`depthwise_stack` ``(H, W, C)`` planes per stack and
    ``L = G*H*W``: ``Lx = 2*(L + 2*(W + 1)) + 2*L + 10*m*L`` (two images'
    stacks and gaps, the row and column numbers, the weight copies) and
    ``Ly = 2*L`` (two stacks of outputs).

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
        The lengths of a task's row of ``xs`` and of ``ys``.
    """
    L = depthwise_stack(H, W, C) * H * W
    return 2 * (L + 2 * (W + 1)) + 2 * L + 10 * m * L, 2 * L


@njit(inline="always")
def _stack_outputs(out, out2, s, e, L, Lg, W, S, rows, cols, last_row, last_col):
    """``out[:Lg]`` and ``out2[:Lg]``: the outputs of the same stack of planes of two images (copies at
    ``s[W + 1:]`` and ``s[S + W + 1:]``), the stack's expanded weights at ``s[e:]`` (10 rows of L: 9 taps, bias),
    each pixel's row and column numbers ``rows``, ``cols``.  Each weight is loaded once for both images."""
    zero = out.dtype.type(0)
    w0, w1, w2 = s[e:e + Lg], s[e + L:e + L + Lg], s[e + 2 * L:e + 2 * L + Lg]
    w3, w4, w5 = s[e + 3 * L:e + 3 * L + Lg], s[e + 4 * L:e + 4 * L + Lg], s[e + 5 * L:e + 5 * L + Lg]
    w6, w7, w8 = s[e + 6 * L:e + 6 * L + Lg], s[e + 7 * L:e + 7 * L + Lg], s[e + 8 * L:e + 8 * L + Lg]
    bb = s[e + 9 * L:e + 9 * L + Lg]
    # tap (r, c) of pixel i reads a_rc[i] (and b_rc[i] for the second image)
    a00, a01, a02 = s[0:Lg], s[1:1 + Lg], s[2:2 + Lg]
    a10, a11, a12 = s[W:W + Lg], s[W + 1:W + 1 + Lg], s[W + 2:W + 2 + Lg]
    a20, a21, a22 = s[2 * W:2 * W + Lg], s[2 * W + 1:2 * W + 1 + Lg], s[2 * W + 2:2 * W + 2 + Lg]
    b00, b01, b02 = s[S:S + Lg], s[S + 1:S + 1 + Lg], s[S + 2:S + 2 + Lg]
    b10, b11, b12 = s[S + W:S + W + Lg], s[S + W + 1:S + W + 1 + Lg], s[S + W + 2:S + W + 2 + Lg]
    d = S + 2 * W
    b20, b21, b22 = s[d:d + Lg], s[d + 1:d + 1 + Lg], s[d + 2:d + 2 + Lg]
    for i in range(Lg):  # every value loaded before the selects (a load under a condition stops vectorising)
        h, v = rows[i], cols[i]
        up, down, left, right = h != zero, h != last_row, v != zero, v != last_col
        c0, c1, c2, c3, c4, c5, c6, c7, c8 = w0[i], w1[i], w2[i], w3[i], w4[i], w5[i], w6[i], w7[i], w8[i]
        e0, e1, e2, e3, e4 = a00[i], a01[i], a02[i], a10[i], a11[i]
        e5, e6, e7, e8 = a12[i], a20[i], a21[i], a22[i]
        above = c1 * e1 + (c0 * e0 if left else zero) + (c2 * e2 if right else zero)
        below = c7 * e7 + (c6 * e6 if left else zero) + (c8 * e8 if right else zero)
        middle = (bb[i] + c4 * e4) + (c3 * e3 if left else zero) + (c5 * e5 if right else zero)
        out[i] = middle + (above if up else zero) + (below if down else zero)
        f0, f1, f2, f3, f4 = b00[i], b01[i], b02[i], b10[i], b11[i]
        f5, f6, f7, f8 = b12[i], b20[i], b21[i], b22[i]
        above = c1 * f1 + (c0 * f0 if left else zero) + (c2 * f2 if right else zero)
        below = c7 * f7 + (c6 * f6 if left else zero) + (c8 * f8 if right else zero)
        middle = (bb[i] + c4 * f4) + (c3 * f3 if left else zero) + (c5 * f5 if right else zero)
        out2[i] = middle + (above if up else zero) + (below if down else zero)


@task("r4 r4 r1 a4 a2 a2 i")
def _stacked_task(x, w, b, y, xs, ys, t):
    """Task t of :func:`conv2d_forward_depthwise_stacked`: its run of (stack, pair of images) items."""
    N, C, H, W = x.shape
    K = w.shape[0]
    m = K // C
    HW = H * W
    T = xs.shape[0]
    L = ys.shape[1] // 2
    G = L // HW
    nb = (C + G - 1) // G
    pairs = (N + 1) // 2
    S = L + 2 * (W + 1)  # one image's stack between its gaps
    rc = 2 * S  # the row and column numbers
    wb = rc + 2 * L  # expanded weights (m, 10, L)
    zero = y.dtype.type(0)
    s = xs[t]
    for j in range(2 * S):  # the gaps (and the stacks: never read unwritten)
        s[j] = zero
    rows, cols = s[rc:rc + L], s[rc + L:rc + 2 * L]
    for j in range(G * H):  # stacked rows: row j % H of plane j // H
        for v in range(W):
            rows[j * W + v] = j % H
            cols[j * W + v] = v
    last_row, last_col = y.dtype.type(H - 1), y.dtype.type(W - 1)
    xf = x.reshape(N, C * HW)
    yf = y.reshape(N, K * HW)
    wf = w.reshape(K, 9)
    B = BLOCK_PAIRS
    blocks = (pairs + B - 1) // B
    last = -1
    for item in range(t * blocks * nb * B // T, (t + 1) * blocks * nb * B // T):
        block = item // (nb * B)
        cb = (item - block * nb * B) // B
        pair = block * B + item - (block * nb + cb) * B
        if pair >= pairs:  # the last block of pairs is short
            continue
        n = 2 * pair
        c0 = cb * G
        g = min(G, C - c0)
        Lg = g * HW
        if cb != last:
            fill_pixel_weights(s, wb, L, wf, b, c0, g, m, HW, 10)
            last = cb
        two = n + 1 < N
        for h in range(2 if two else 1):
            src, dst = xf[n + h, c0 * HW:(c0 + g) * HW], s[h * S + W + 1:h * S + W + 1 + Lg]
            for i in range(Lg):
                dst[i] = src[i]
        direct = m == 1 and two  # the stack's output planes are contiguous in y: written there
        for j in range(m):
            out = yf[n, c0 * HW:(c0 + g) * HW] if direct else ys[t, :L]
            out2 = yf[n + 1, c0 * HW:(c0 + g) * HW] if direct else ys[t, L:]
            _stack_outputs(out, out2, s, wb + j * 10 * L, L, Lg, W, S, rows, cols, last_row, last_col)
            if direct:
                continue
            for h in range(2 if two else 1):
                copy_stack_outputs(yf, out if h == 0 else out2, n + h, c0, g, m, j, HW)


_stacked_tasks = parallel_tasks(_stacked_task)


@njit
def conv2d_forward_depthwise_stacked(x, w, b, y, xs, ys):
    """Depthwise 3x3 forward with stride 1 and padding 1: ``y[n, k, p, q] = b[k] + sum_{r, s} w[k, 0, r, s] *
    xp[n, k // m, p + r, q + s]`` (xp: x zero-padded by 1, m = K // C), any plane size.

    Each task copies stacks of G channel planes of two images into its
    scratch and computes each stack's outputs in one loop (9 taps fused,
    the padding by selects on each pixel's row and column, weights read per
    pixel and shared by the two images).  The same as
    :func:`conv2d_forward_depthwise` with stride 1, padding 1 and no
    dilation, up to rounding.

    Parameters
    ----------
    x : (N, C, H, W) float array, read
    w : (K, 1, 3, 3) array of x's dtype, K a multiple of C
    b : (K,) array of x's dtype (zeros for no bias)
    y : (N, K, H, W) array of x's dtype, written in full
    xs : (T, Lx) array of x's dtype, scratch, one row per task (:func:`depthwise_stacked_scratch`); overwritten
    ys : (T, 2*G*H*W) array of x's dtype, scratch; its width sets G, the planes per stack, and then
        ``Lx >= 2*(G*H*W + 2*(W + 1)) + (2 + 10*m)*G*H*W``; overwritten
    """
    _stacked_tasks(xs.shape[0], x, w, b, y, xs, ys)
