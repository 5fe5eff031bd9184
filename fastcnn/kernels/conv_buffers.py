"""What each pass of each convolution algorithm allocates besides its inputs and outputs: the plans' buffers.

:func:`pass_buffers` lists, for one pass of one algorithm on a geometry, the
arrays its executor (``_conv_exec.py``) takes from the workspace or
allocates per call, with the shapes the raw kernels expect;
:func:`group_buffers` and :func:`dilation_buffers` the copies a grouped or
dilated plan adds.  :mod:`fastcnn.kernels.conv_plan` chooses the algorithm
and puts the two together; the memory figures of a plan (and of
``fastcnn bench conv``) are sums over these.
"""

from typing import NamedTuple

from ._conv_batchlast import BLOCK as BATCHLAST_BLOCK
from ._conv_channellast import DX_BLOCK as CHANNEL_LAST_DX_BLOCK
from ._conv_channellast import input_grad_frame
from ._conv_depthwise import depthwise_frame
from ._conv_depthwise_s2 import ROWS_MIN_WIDTH, depthwise_s2_fits, depthwise_s2_rows_scratch, depthwise_s2_scratch
from ._conv_depthwise_s2_input_stacked import (depthwise_s2_input_stack, depthwise_s2_input_stacked_preferred,
                                                depthwise_s2_input_stacked_scratch)
from ._conv_depthwise_s2_stacked import STACKED_MAX_WIDTH, depthwise_s2_stack, depthwise_s2_stacked_scratch
from ._conv_depthwise_weight_stacked import (depthwise_s2_weight_stack, depthwise_s2_weight_stacked_preferred,
                                             depthwise_s2_weight_stacked_scratch, depthwise_weight_stack,
                                             depthwise_weight_stacked_preferred, depthwise_weight_stacked_scratch)
from ._conv_depthwise_stacked import (depthwise_stack, depthwise_stacked_fits, depthwise_stacked_preferred,
                                      depthwise_stacked_scratch)
from ._conv_rows import K_BLOCK as ROWS_K_BLOCK
from ._conv_rows import rows_padded_length

#: Bytes (float32) of one Winograd task's transformed tiles and products per chunk: sized to stay in L2.
WINOGRAD_CHUNK_BYTES = 2**18
#: The same for the weight gradient, larger: each chunk's products add into the task's whole dU (alpha^2 x C x K),
#: so longer reductions (more tiles per product) pay for loading and storing it (128 channels: 4.4 -> 2.9 ms).
WINOGRAD_DW_CHUNK_BYTES = 2**20


class Buffer(NamedTuple):
    """One array a plan needs besides its inputs and outputs.

    ``kind`` is ``"workspace"`` (kept in the per-thread workspace between
    calls), ``"call"`` (allocated for the call, freed when it returns) or
    ``"kernel"`` (allocated by Numba inside the kernel, one per parallel task).
    """

    role: str
    shape: tuple
    kind: str
    zeroed: bool = False

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n


def _round_up(n, m):
    return -(-n // m) * m


def pass_buffers(op, algorithm, g, T, itemsize=4):
    """The buffers of pass ``op`` of ``algorithm`` on ``g`` with ``T`` threads (what the executors allocate) for
    numbers of ``itemsize`` bytes."""
    N, C, H, W, K, R, S, P, Q = g[:9]
    if algorithm == "batch_last":
        if op == "forward":
            tasks = min(T, -(-K // BATCHLAST_BLOCK) * P)
            return (Buffer("x_batch_last", (C, H, W, N), "workspace"),
                    Buffer("accumulators", (tasks, BATCHLAST_BLOCK, Q * N), "kernel"))
        if op == "weight_grad":
            return (Buffer("dy_batch_last", (K, P, Q, N), "workspace"),
                    Buffer("x_batch_last", (C, H, W, N), "workspace"))
        nw, cw = _round_up(N, 8), _round_up(C, 4)  # full-width blocks of images and channels
        return (Buffer("dy_pixel_batch_last", (P, Q, K, nw), "workspace"),
                Buffer("w_flipped", (cw, R, S, K), "call", zeroed=True),
                Buffer("dx_rows", (min(T, H), cw, W, nw), "workspace"))
    if algorithm == "channel_last":
        xp = Buffer("x_channel_last", (N, H + 2 * g.ph, W + 2 * g.pw, C), "workspace")
        dyl = Buffer("dy_channel_last", (N, P, Q, K), "workspace")
        if op == "forward":
            kw = _round_up(K, 8)
            return (xp, Buffer("w_forward", (R, S * C, kw), "call", zeroed=True),
                    Buffer("rows", (min(T, N * P), Q, kw), "workspace"))
        if op == "weight_grad":
            return (xp, dyl, Buffer("partial_dw", (min(T, N), R, S * C, K), "workspace"))
        if g.fits_rows:  # stride 1: dx is the forward kernel's convolution of dy, padded, with w rotated
            cw, eh, ew = _round_up(C, 8), R - 1 - g.ph, S - 1 - g.pw
            return (Buffer("dy_padded_channel_last", (N, P + 2 * eh, Q + 2 * ew, K), "workspace"),
                    Buffer("w_rotated", (R, S * K, cw), "call", zeroed=True),
                    Buffer("zero_bias", (C,), "call", zeroed=True),
                    Buffer("rows", (min(T, N * H), W, cw), "workspace"))
        hp, wp = input_grad_frame((N, C, H, W), (N, K, P, Q), (R, S), (g.sh, g.sw), (g.ph, g.pw))
        tasks = min(T, N * -(-C // CHANNEL_LAST_DX_BLOCK))
        return (dyl, Buffer("w_input", (R, S, K, _round_up(C, 8)), "call", zeroed=True),
                Buffer("frames", (tasks, hp, wp, CHANNEL_LAST_DX_BLOCK), "workspace"))
    if algorithm == "im2col":
        cols = (N, C * R * S, P * Q)
        if op == "forward":
            return (Buffer("cols", cols, "call"),)
        if op == "weight_grad":
            return (Buffer("cols", cols, "call"), Buffer("dw_per_image", (N, K, C * R * S), "call"))
        return (Buffer("dcols", cols, "call"),)
    if algorithm == "matmul_1x1":
        if op == "weight_grad":
            return (Buffer("dw_per_image", (N, K, C), "call"),)
        if op == "input_grad":
            return (Buffer("w_transposed", (C, K), "call"),)
        return ()
    if algorithm == "matmul_whole_input":
        if g.ph == 0 and g.pw == 0:
            return ()
        padded = (N, C, H + 2 * g.ph, W + 2 * g.pw)
        return (Buffer("dx_padded" if op == "input_grad" else "x_padded", padded, "call"),)
    if algorithm in ("winograd", "winograd4"):
        return _winograd_buffers(op, g, T, 2 if algorithm == "winograd" else 4)
    if algorithm == "rows":
        return _rows_buffers(op, g, T)
    if algorithm == "depthwise":
        return _depthwise_buffers(op, g, T, itemsize)
    return ()  # nchw


def _stack_tasks(T, N, C, G):
    """Tasks of a stacked depthwise kernel: one per (stack of ``G`` planes, pair of images), at most ``T``."""
    return min(T, -(-C // G) * -(-N // 2))


def _depthwise_buffers(op, g, T, itemsize):
    """The depthwise buffers: ``pass_buffers`` for ``algorithm="depthwise"`` (one scratch row per task).

    Besides these, each kernel allocates its tap tables: a few ints per
    kernel tap, not listed.  The forward pass of a layer that
    ``depthwise_s2_fits`` (3x3, stride 2, padding 1, even planes: MobileNet's
    downsampling) runs ``conv2d_forward_depthwise_s2_rows`` (``x_row_phases``)
    on planes ``ROWS_MIN_WIDTH`` or more wide, ``conv2d_forward_depthwise_s2_stacked``
    (``x_stacked_row_phases``, ``y_stacks``; one task per pair of images and stack of
    planes at most) on planes ``STACKED_MAX_WIDTH`` or less wide, else (no even width
    today) ``conv2d_forward_depthwise_s2`` (``x_column_phases``).  The forward pass of a
    layer that ``depthwise_stacked_fits`` (3x3, stride 1, padding 1) on narrow planes
    (``depthwise_stacked_preferred``) runs ``conv2d_forward_depthwise_stacked``
    (``x_stacks``, ``y_stacks``; one task per pair of images and stack of planes at
    most).  The weight gradient of a layer that ``depthwise_s2_fits`` on narrow planes
    (``depthwise_s2_weight_stacked_preferred``) runs ``conv2d_backward_weight_depthwise_s2_stacked``
    (``x_weight_row_phases``, ``dw_pixel_sums``, ``partial_dw_depthwise``; one task per pair
    of images and stack of planes at most), and that of a layer that ``depthwise_stacked_fits``
    (stride 1) on narrow planes (``depthwise_weight_stacked_preferred``) runs
    ``conv2d_backward_weight_depthwise_stacked`` (``x_weight_stacks``, ``dw_pixel_sums``,
    ``partial_dw_depthwise``).  The input gradient of a layer that ``depthwise_stacked_fits``
    with multiplier 1, on the planes where the forward pass is stacked, is that forward pass on dy with
    the kernel rotated by 180 degrees and no bias: ``conv2d_forward_depthwise_stacked``
    (``dy_stacks``, ``dx_stacks``, ``w_rotated``, ``zero_bias``), and that of a layer that ``depthwise_s2_fits``
    on narrow planes (``depthwise_s2_input_stacked_preferred``) runs ``conv2d_backward_input_depthwise_s2_stacked``
    (``dy_stacked_chunks``, ``dx_stacked_phases``; one task per pair of images and stack of planes at most).
    Every other pass and layer runs the general kernels.
    """
    N, C, H, W, K, R, S, P = g[:8]
    tasks = min(T, N * C)
    stacked_s1 = (depthwise_stacked_fits(H, W, R, S, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)
                  and depthwise_stacked_preferred(N, C, H, W, itemsize))
    if op == "forward" and stacked_s1:
        tasks = _stack_tasks(T, N, C, depthwise_stack(H, W, C))
        Lx, Ly = depthwise_stacked_scratch(H, W, C, K // C)
        return (Buffer("x_stacks", (tasks, Lx), "workspace"), Buffer("y_stacks", (tasks, Ly), "workspace"))
    if op == "forward" and depthwise_s2_fits(H, W, R, S, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w):
        if W <= STACKED_MAX_WIDTH:
            tasks = _stack_tasks(T, N, C, depthwise_s2_stack(H, W, C))
            Lx, Ly = depthwise_s2_stacked_scratch(H, W, C, K // C)
            return (Buffer("x_stacked_row_phases", (tasks, Lx), "workspace"),
                    Buffer("y_stacks", (tasks, Ly), "workspace"))
        if W >= ROWS_MIN_WIDTH:
            return (Buffer("x_row_phases", (tasks, depthwise_s2_rows_scratch(H, W)), "workspace"),)
        Lx, Ly = depthwise_s2_scratch(H, W)
        return (Buffer("x_column_phases", (tasks, Lx), "workspace"), Buffer("wide_rows", (tasks, Ly), "workspace"))
    if op == "input_grad" and K == C and stacked_s1:
        tasks = _stack_tasks(T, N, C, depthwise_stack(H, W, C))
        Lx, Ly = depthwise_stacked_scratch(H, W, C, 1)
        return (Buffer("dy_stacks", (tasks, Lx), "workspace"), Buffer("dx_stacks", (tasks, Ly), "workspace"),
                Buffer("w_rotated", (K, 1, R, S), "call"), Buffer("zero_bias", (K,), "call", zeroed=True))
    if (op == "input_grad" and depthwise_s2_fits(H, W, R, S, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)
            and depthwise_s2_input_stacked_preferred(W, itemsize)):
        tasks = _stack_tasks(T, N, C, depthwise_s2_input_stack(H, W, C))
        Ld, Lx = depthwise_s2_input_stacked_scratch(H, W, C, K // C)
        return (Buffer("dy_stacked_chunks", (tasks, Ld), "workspace"),
                Buffer("dx_stacked_phases", (tasks, Lx), "workspace"))
    if (op == "weight_grad" and depthwise_stacked_fits(H, W, R, S, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)
            and depthwise_weight_stacked_preferred(W, itemsize)):
        tasks = _stack_tasks(T, N, C, depthwise_weight_stack(H, W, C))
        Lx, La = depthwise_weight_stacked_scratch(H, W, C, K // C)
        return (Buffer("x_weight_stacks", (tasks, Lx), "workspace"), Buffer("dw_pixel_sums", (tasks, La), "workspace"),
                Buffer("partial_dw_depthwise", (tasks, K, R * S), "workspace"))
    if (op == "weight_grad" and depthwise_s2_fits(H, W, R, S, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)
            and depthwise_s2_weight_stacked_preferred(W, itemsize)):
        tasks = _stack_tasks(T, N, C, depthwise_s2_weight_stack(H, W, C))
        Lx, La = depthwise_s2_weight_stacked_scratch(H, W, C, K // C)
        return (Buffer("x_weight_row_phases", (tasks, Lx), "workspace"),
                Buffer("dw_pixel_sums", (tasks, La), "workspace"),
                Buffer("partial_dw_depthwise", (tasks, K, R * S), "workspace"))
    Hs, Ws, Et, Ew = depthwise_frame(H, W, R, S, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)
    split = 2 if g.sw > 1 else 1  # with sw > 1 the padded rows sit beside the phases until their columns are split
    phases = Buffer("x_phases", (tasks, split * g.sh * g.sw * Hs * Ws + Ws), "workspace")
    if op == "forward":
        return (phases, Buffer("wide_rows", (tasks, P * Ws), "workspace"))
    if op == "weight_grad":
        return (phases, Buffer("dy_wide_rows", (tasks, P * Ws), "workspace"),
                Buffer("partial_dw_depthwise", (tasks, K, R * S), "workspace"))
    Wf = Ws + Ew
    return (Buffer("dy_frames", (tasks, (Hs + Et + 1) * Wf), "workspace"),
            Buffer("dx_phases", (tasks, split * g.sh * g.sw, Hs * Wf), "workspace"))


def dilation_buffers(op, sub):
    """The phase sub-images of x, y, dy, dx that a dilated plan on the space-to-batch convolution ``sub`` adds."""
    x = Buffer("x_dilation_phases", (sub.N, sub.C, sub.H, sub.W), "workspace")
    y = (sub.N, sub.K, sub.P, sub.Q)
    if op == "forward":
        return (x, Buffer("y_dilation_phases", y, "workspace"))
    if op == "weight_grad":
        return (x, Buffer("dy_dilation_phases", y, "workspace"))
    return (Buffer("dy_dilation_phases", y, "workspace"),
            Buffer("dx_dilation_phases", (sub.N, sub.C, sub.H, sub.W), "workspace"))


def group_buffers(op, sub):
    """The contiguous copies of one group's channels (``sub``: the per-group geometry) that grouped plans add."""
    x = (sub.N, sub.C, sub.H, sub.W)
    y = (sub.N, sub.K, sub.P, sub.Q)
    if op == "forward":
        return (Buffer("x_group", x, "workspace"), Buffer("y_group", y, "workspace"))
    if op == "weight_grad":
        return (Buffer("x_group", x, "workspace"), Buffer("dy_group", y, "workspace"))
    return (Buffer("dy_group", y, "workspace"), Buffer("dx_group", x, "workspace"))


def _rows_buffers(op, g, T):
    """The rows buffers: ``pass_buffers`` for ``algorithm="rows"``."""
    N, C, H, W, K, R, S, P, Q = g[:9]
    tasks = min(T, N)
    if op == "input_grad":  # a forward pass over dy padded by (R - 1 - ph, S - 1 - pw), producing dx
        c_in, hp, wp, k_out, p_out = K, P + 2 * (R - 1 - g.ph), Q + 2 * (S - 1 - g.pw), C, H
    else:
        c_in, hp, wp, k_out, p_out = C, H + 2 * g.ph, W + 2 * g.pw, K, P
    kw, wide = _round_up(k_out, ROWS_K_BLOCK), _round_up(p_out * wp, 8)
    x = Buffer("x_padded_rows", (tasks, rows_padded_length(c_in, hp, wp, R, S, wide)), "workspace")
    out = Buffer("wide_rows", (tasks, kw, wide), "workspace")
    if op == "forward":
        return (x, out, Buffer("w_rows", (kw, C, R, S), "call", zeroed=True))
    if op == "weight_grad":
        return (x, out, Buffer("partial_dw_rows", (tasks, kw, C, R, S), "workspace"))
    return (x, out, Buffer("w_rows", (kw, K, R, S), "call", zeroed=True),
            Buffer("zero_bias", (C,), "call", zeroed=True))


def _winograd_buffers(op, g, T, mt):
    """The winograd buffers: ``pass_buffers`` for ``algorithm="winograd"`` (``mt`` 2) or ``"winograd4"`` (``mt`` 4)."""
    N, C, H, W, K, R, S, P, Q = g[:9]
    a2 = (mt + 2) ** 2  # positions of the transformed tile
    TP, TQ = -(-P // mt), -(-Q // mt)  # rows and columns of mt x mt output tiles
    if op == "input_grad":  # a forward pass over dy padded by 2 - padding, producing dx (N, C, H, W)
        TH, TW = -(-H // mt), -(-W // mt)
        cw = _round_up(C, 8)
        tasks, tiles = _winograd_chunk(N * TH, TW, K, cw, T, a2)
        return (Buffer("dy_padded_tiles", (N, mt * TH + 2, mt * TW + 2, K), "workspace"),
                Buffer("u_input", (a2, K, cw), "call"), Buffer("zero_bias", (C,), "call", zeroed=True),
                Buffer("tiles", (tasks, a2, tiles, K), "workspace"),
                Buffer("products", (tasks, a2, tiles, cw), "workspace"))
    kw = _round_up(K, 8)
    budget = WINOGRAD_DW_CHUNK_BYTES if op == "weight_grad" else WINOGRAD_CHUNK_BYTES
    tasks, tiles = _winograd_chunk(N * TP, TQ, C, kw, T, a2, budget)
    xt = Buffer("x_tiles", (N, mt * TP + 2, mt * TQ + 2, C), "workspace")
    v = Buffer("tiles", (tasks, a2, tiles, C), "workspace")
    m = Buffer("products", (tasks, a2, tiles, kw), "workspace")
    if op == "forward":
        return (xt, Buffer("u_forward", (a2, C, kw), "call"), v, m)
    return (xt, Buffer("dy_tiles", (N, mt * TP, mt * TQ, K), "workspace"), v, m,
            Buffer("partial_du", (tasks, a2, C, kw), "workspace"))


def _winograd_chunk(tile_rows, TQ, channels_in, channels_out, T, a2, budget=WINOGRAD_CHUNK_BYTES):
    """(tasks, tiles per chunk) of the Winograd kernels: whole rows of ``TQ`` tiles, at least one chunk per task.

    As many rows as keep a chunk's transformed tiles and products (``a2``
    positions each) within ``budget`` bytes.  The count is made
    odd (one spare tile when needed): the planes of a task's scratch are
    then not a power of two apart, and the transforms' streams do not all
    fall in the same cache sets (an even count with 64 channels made the
    input transform 10x slower).
    """
    tasks = min(T, tile_rows)
    per_row = a2 * TQ * (channels_in + channels_out) * 4
    rows = max(1, min(budget // per_row, -(-tile_rows // tasks)))
    return tasks, rows * TQ | 1
