"""Run a convolution plan: for each (algorithm, pass), prepare the layouts its raw kernels read, then call them.

Every function takes checked arrays, the :class:`~fastcnn.kernels.conv_plan.ConvGeometry`
``g`` and ``bufs``, the plan's buffers by role (from
:func:`fastcnn.kernels._workspace.take`), and writes its output in place:

* ``forward(x, w, b, y, g, bufs)``
* ``weight_grad(dy, x, dw, g, bufs)`` (the bias gradient is computed beside it; those of
  :data:`X_LAYOUT` take ``x_ready=True`` when ``bufs`` already holds x's layout copy, and those
  :func:`share_dy` serves take ``dy_ready=(array, border)``, the input gradient's copy of dy)
* ``input_grad(dy, w, dx, g, bufs)`` (``dy_ready=True``: its copy of dy is already made)

:data:`FORWARD`, :data:`WEIGHT_GRAD` and :data:`INPUT_GRAD` map algorithm
names to them; they compute a convolution of one group (``g.groups == 1``)
or, for ``depthwise``, a depthwise one.  :func:`forward`,
:func:`weight_grad` and :func:`input_grad` run any plan: a grouped one
(``g.groups > 1``, not depthwise) as one call per group on contiguous copies
of the group's channels (the plan's ``x_group``, ``y_group``, ``dy_group``,
``dx_group`` buffers), and a dilated one whose algorithm does not compute
dilation itself on the phase sub-images of the space-to-batch rearrangement
(:meth:`~fastcnn.kernels.conv_plan.ConvGeometry.space_to_batch`; the
``*_dilation_phases`` buffers).  Weight relayouts are tiny (R*S*C*K numbers) and
rebuilt per call; the activation-sized layout copies live in the workspace.
"""

from ._conv_batchlast import (
    conv2d_backward_input_batchlast,
    conv2d_backward_weight_batchlast,
    conv2d_forward_batchlast,
    to_batch_last,
    to_pixel_batch_last,
)
from ._conv_channellast import (
    conv2d_backward_input_channellast,
    conv2d_backward_weight_channellast,
    conv2d_forward_channellast,
    conv2d_forward_channellast_padded,
    to_channel_last,
)
from ._conv_depthwise import (
    conv2d_backward_input_depthwise,
    conv2d_backward_weight_depthwise,
    conv2d_forward_depthwise,
)
from ._conv_depthwise_s2 import conv2d_forward_depthwise_s2, conv2d_forward_depthwise_s2_rows
from ._conv_depthwise_s2_input_stacked import conv2d_backward_input_depthwise_s2_stacked
from ._conv_depthwise_s2_stacked import conv2d_forward_depthwise_s2_stacked
from ._conv_depthwise_weight_stacked import (conv2d_backward_weight_depthwise_s2_stacked,
                                             conv2d_backward_weight_depthwise_stacked)
from ._conv_depthwise_stacked import conv2d_forward_depthwise_stacked
from ._conv_im2col import conv2d_backward_input_gemm, conv2d_backward_weight_gemm, conv2d_forward_gemm
from ._conv_matmul import (
    forward_1x1,
    forward_whole_input,
    input_grad_1x1,
    input_grad_whole_input,
    weight_grad_1x1,
    weight_grad_whole_input,
)
from ._conv_nchw import conv2d_backward_input_direct, conv2d_backward_weight_direct, conv2d_forward_direct
from ._conv_rows import conv2d_backward_weight_rows, conv2d_forward_rows
from ._conv_winograd import (conv2d_backward_weight_winograd, conv2d_forward_winograd,
                             conv2d_forward_winograd_padded, winograd_filter)
from .conv_plan import NATIVE_DILATION

# --------------------------------------------------------------------------- nchw


def _nchw_forward(x, w, b, y, g, bufs):
    conv2d_forward_direct(x, w, b, y, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)


def _nchw_weight_grad(dy, x, dw, g, bufs):
    conv2d_backward_weight_direct(dy, x, dw, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)


def _nchw_input_grad(dy, w, dx, g, bufs):
    conv2d_backward_input_direct(dy, w, dx, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w)


# --------------------------------------------------------------------------- batch_last


def _batchlast_forward(x, w, b, y, g, bufs):
    xt = bufs["x_batch_last"]  # (C, H, W, N)
    to_batch_last(x, xt)
    conv2d_forward_batchlast(xt, w, b, y, g.sh, g.sw, g.ph, g.pw)


def _batchlast_weight_grad(dy, x, dw, g, bufs, x_ready=False):
    dyt, xt = bufs["dy_batch_last"], bufs["x_batch_last"]  # (K, P, Q, N), (C, H, W, N)
    to_batch_last(dy, dyt)
    if not x_ready:
        to_batch_last(x, xt)
    conv2d_backward_weight_batchlast(dyt, xt, dw, g.sh, g.sw, g.ph, g.pw)


def _batchlast_input_grad(dy, w, dx, g, bufs):
    dyb = bufs["dy_pixel_batch_last"]  # (P, Q, K, N rounded up to 8)
    to_pixel_batch_last(dy, dyb)
    wf = bufs["w_flipped"]  # (C rounded up to 4, R, S, K), zeros past C
    wf[:g.C] = w.transpose(1, 2, 3, 0)[:, :, ::-1, :]  # wf[c, r, S-1-s, k] = w[k, c, r, s]
    conv2d_backward_input_batchlast(dyb, wf, dx, g.sh, g.sw, g.ph, g.pw, bufs["dx_rows"])


# --------------------------------------------------------------------------- rows


def _rows_forward(x, w, b, y, g, bufs):
    wk = bufs["w_rows"]  # (K rounded up to 4, C, R, S), zeros past K
    wk[:g.K] = w
    conv2d_forward_rows(x, wk, b, y, g.ph, g.pw, bufs["x_padded_rows"], bufs["wide_rows"])


def _rows_weight_grad(dy, x, dw, g, bufs):
    conv2d_backward_weight_rows(dy, x, dw, g.ph, g.pw, bufs["x_padded_rows"], bufs["wide_rows"],
                                bufs["partial_dw_rows"])


def _rows_input_grad(dy, w, dx, g, bufs):
    # dx is the stride-1 convolution of dy, padded by (R - 1 - ph, S - 1 - pw), with w rotated by 180 degrees
    wt = bufs["w_rows"]  # (C rounded up to 4, K, R, S): wt[c, k, R-1-r, S-1-s] = w[k, c, r, s], zeros past C
    wt[:g.C] = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    conv2d_forward_rows(dy, wt, bufs["zero_bias"], dx, g.R - 1 - g.ph, g.S - 1 - g.pw,
                        bufs["x_padded_rows"], bufs["wide_rows"])


# --------------------------------------------------------------------------- channel_last


def _channellast_x(x, g, bufs):
    xp = bufs["x_channel_last"]  # (N, H + 2ph, W + 2pw, C)
    to_channel_last(x, xp, g.ph, g.pw)
    return xp


def _channellast_dy(dy, bufs):
    dyl = bufs["dy_channel_last"]  # (N, P, Q, K)
    to_channel_last(dy, dyl, 0, 0)
    return dyl


def _channellast_forward(x, w, b, y, g, bufs):
    w2 = bufs["w_forward"]  # (R, S*C, K rounded up to 8), zeros past K
    w2.reshape(g.R, g.S, g.C, w2.shape[2])[..., :g.K] = w.transpose(2, 3, 1, 0)
    conv2d_forward_channellast(_channellast_x(x, g, bufs), w2, b, y, g.sh, g.sw, bufs["rows"])


def _channellast_weight_grad(dy, x, dw, g, bufs, x_ready=False, dy_ready=None):
    xp = bufs["x_channel_last"] if x_ready else _channellast_x(x, g, bufs)
    dyl, border = dy_ready or (_channellast_dy(dy, bufs), 0)
    conv2d_backward_weight_channellast(xp, dyl, dw, bufs["partial_dw"], g.sh, g.sw, border)


def _channellast_input_grad(dy, w, dx, g, bufs, dy_ready=False):
    if "w_rotated" in bufs:
        # stride 1: dx is the convolution of dy, padded by (R - 1 - ph, S - 1 - pw), with the kernel rotated by
        # 180 degrees and in/out channels swapped, which the forward kernel computes without scattering
        dyp = bufs["dy_padded_channel_last"]  # (N, P + 2(R-1-ph), Q + 2(S-1-pw), K)
        if not dy_ready:
            to_channel_last(dy, dyp, g.R - 1 - g.ph, g.S - 1 - g.pw)
        wr = bufs["w_rotated"]  # (R, S*K, C rounded up to 8): wr[r, s*K + k, c] = w[k, c, R-1-r, S-1-s]
        wr.reshape(g.R, g.S, g.K, wr.shape[2])[..., :g.C] = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
        conv2d_forward_channellast(dyp, wr, bufs["zero_bias"], dx, 1, 1, bufs["rows"])
        return
    wt = bufs["w_input"]  # (R, S, K, C rounded up to 8), zeros past C
    wt[..., :g.C] = w.transpose(2, 3, 0, 1)
    dyl = bufs["dy_channel_last"] if dy_ready else _channellast_dy(dy, bufs)
    conv2d_backward_input_channellast(dyl, wt, dx, g.sh, g.sw, g.ph, g.pw, bufs["frames"])


# --------------------------------------------------------------------------- im2col


def _im2col_forward(x, w, b, y, g, bufs):
    conv2d_forward_gemm(x, w, b, y, g.sh, g.sw, g.ph, g.pw, bufs["cols"], g.dil_h, g.dil_w)


def _im2col_weight_grad(dy, x, dw, g, bufs):
    conv2d_backward_weight_gemm(dy, x, dw, g.sh, g.sw, g.ph, g.pw, bufs["cols"], bufs["dw_per_image"],
                                g.dil_h, g.dil_w)


def _im2col_input_grad(dy, w, dx, g, bufs):
    conv2d_backward_input_gemm(dy, w, dx, g.sh, g.sw, g.ph, g.pw, bufs["dcols"], g.dil_h, g.dil_w)


# --------------------------------------------------------------------------- one matrix product


def _1x1_forward(x, w, b, y, g, bufs):
    forward_1x1(x, w, b, y)


def _1x1_weight_grad(dy, x, dw, g, bufs):
    weight_grad_1x1(dy, x, dw, bufs["dw_per_image"])


def _1x1_input_grad(dy, w, dx, g, bufs):
    input_grad_1x1(dy, w, dx, bufs["w_transposed"])


def _whole_forward(x, w, b, y, g, bufs):
    forward_whole_input(x, w, b, y, g.ph, g.pw, bufs.get("x_padded"))


def _whole_weight_grad(dy, x, dw, g, bufs):
    weight_grad_whole_input(dy, x, dw, g.ph, g.pw, bufs.get("x_padded"))


def _whole_input_grad(dy, w, dx, g, bufs):
    input_grad_whole_input(dy, w, dx, g.ph, g.pw, bufs.get("dx_padded"))


# --------------------------------------------------------------------------- winograd and winograd4
# One set of executors for both tiles: the buffers' shapes (16 or 36 positions, 2x2 or 4x4 output tiles) say which.


def _winograd_forward(x, w, b, y, g, bufs):
    xt = bufs["x_tiles"]  # (N, m*ceil(P/m) + 2, m*ceil(Q/m) + 2, C), zero border (m = 2 or 4)
    to_channel_last(x, xt, g.ph, g.pw)
    u = bufs["u_forward"]  # (16 or 36, C, K rounded up to 8)
    winograd_filter(w, u, False)
    conv2d_forward_winograd(xt, u, b, y, bufs["tiles"], bufs["products"])


def _winograd_weight_grad(dy, x, dw, g, bufs, x_ready=False, dy_ready=None):
    xt = bufs["x_tiles"]
    if not x_ready:
        to_channel_last(x, xt, g.ph, g.pw)
    dyt, border = dy_ready or (bufs["dy_tiles"], 0)  # dy_tiles (N, m*ceil(P/m), m*ceil(Q/m), K), zeros past P, Q
    if dy_ready is None:
        to_channel_last(dy, dyt, 0, 0)
    conv2d_backward_weight_winograd(xt, dyt, dw, bufs["tiles"], bufs["products"], bufs["partial_du"], border)


def _winograd_input_grad(dy, w, dx, g, bufs, dy_ready=False):
    # dx is the stride-1 convolution of dy, padded by 2 - padding, with w[k, c, 2 - r, 2 - s] as weight (c, k)
    dyt = bufs["dy_padded_tiles"]  # (N, m*ceil(H/m) + 2, m*ceil(W/m) + 2, K)
    if not dy_ready:
        to_channel_last(dy, dyt, 2 - g.ph, 2 - g.pw)
    u = bufs["u_input"]  # (16 or 36, K, C rounded up to 8)
    winograd_filter(w, u, True)
    conv2d_forward_winograd(dyt, u, bufs["zero_bias"], dx, bufs["tiles"], bufs["products"])


# --------------------------------------------------------------------------- depthwise


def _depthwise_forward(x, w, b, y, g, bufs):
    if "x_row_phases" in bufs:  # the plan chose a stride-2 3x3 kernel (conv_buffers._depthwise_buffers)
        conv2d_forward_depthwise_s2_rows(x, w, b, y, bufs["x_row_phases"])
        return
    if "x_stacks" in bufs:  # 3x3, stride 1, padding 1, narrow planes
        conv2d_forward_depthwise_stacked(x, w, b, y, bufs["x_stacks"], bufs["y_stacks"])
        return
    if "x_stacked_row_phases" in bufs:
        conv2d_forward_depthwise_s2_stacked(x, w, b, y, bufs["x_stacked_row_phases"], bufs["y_stacks"])
        return
    if "x_column_phases" in bufs:
        conv2d_forward_depthwise_s2(x, w, b, y, bufs["x_column_phases"], bufs["wide_rows"])
        return
    conv2d_forward_depthwise(x, w, b, y, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w, bufs["x_phases"],
                             bufs["wide_rows"])


def _depthwise_weight_grad(dy, x, dw, g, bufs):
    if "x_weight_stacks" in bufs:  # the stacked stride-1 3x3 kernel (conv_buffers._depthwise_buffers)
        conv2d_backward_weight_depthwise_stacked(dy, x, dw, bufs["x_weight_stacks"], bufs["dw_pixel_sums"],
                                                 bufs["partial_dw_depthwise"])
        return
    if "x_weight_row_phases" in bufs:  # the stacked stride-2 3x3 kernel
        conv2d_backward_weight_depthwise_s2_stacked(dy, x, dw, bufs["x_weight_row_phases"], bufs["dw_pixel_sums"],
                                                    bufs["partial_dw_depthwise"])
        return
    conv2d_backward_weight_depthwise(dy, x, dw, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w, bufs["x_phases"],
                                     bufs["dy_wide_rows"], bufs["partial_dw_depthwise"])


def _depthwise_input_grad(dy, w, dx, g, bufs):
    if "dy_stacks" in bufs:  # 3x3 stride 1 padding 1, m = 1: the stacked forward of dy with the kernel rotated
        w_rotated = bufs["w_rotated"]
        w_rotated[...] = w[:, :, ::-1, ::-1]
        conv2d_forward_depthwise_stacked(dy, w_rotated, bufs["zero_bias"], dx, bufs["dy_stacks"], bufs["dx_stacks"])
        return
    if "dx_stacked_phases" in bufs:  # 3x3 stride 2 padding 1, narrow planes: the stacked phases of dx
        conv2d_backward_input_depthwise_s2_stacked(dy, w, dx, bufs["dy_stacked_chunks"], bufs["dx_stacked_phases"])
        return
    conv2d_backward_input_depthwise(dy, w, dx, g.sh, g.sw, g.ph, g.pw, g.dil_h, g.dil_w, bufs["dy_frames"],
                                    bufs["dx_phases"])


#: Algorithms whose forward pass and weight gradient read the same layout copy of x: the buffer's role.  A
#: caller that keeps that copy from the forward pass for the same, unchanged x (a layer, which holds x) passes
#: ``x_ready=True`` to the weight gradient's executor, which then skips the copy.
X_LAYOUT = {"batch_last": "x_batch_last", "channel_last": "x_channel_last", "winograd": "x_tiles",
            "winograd4": "x_tiles"}



#: The algorithms whose two gradients :func:`share_dy` can serve with one copy of dy.
SHARES_DY = ("channel_last", "winograd", "winograd4")


def share_dy(name, dy, g, input_bufs):
    """Make the copy of dy that the input gradient of plan ``name`` (the same algorithm as the weight gradient's)
    reads from ``input_bufs`` and that the weight gradient can read too; return ``(array, border)`` (dy sits from
    row and column ``border`` on: the weight gradient's ``dy_ready``), or None (nothing copied) where the two
    cannot share one.

    channel_last: the stride-1 input gradient's padded copy (border ``R - 1 - ph`` when it equals ``S - 1 - pw``),
    or the strided one's plain copy (border 0); winograd and winograd4 with padding 1: the padded tile copy,
    border 1 (its rows and columns past dy are zero, as the weight gradient needs).
    """
    if g.groups > 1 or g.dilated or name not in SHARES_DY:
        return None
    if name == "channel_last":
        role, border = (("dy_padded_channel_last", g.R - 1 - g.ph) if "dy_padded_channel_last" in input_bufs
                        else ("dy_channel_last", 0))
        if role == "dy_padded_channel_last" and border != g.S - 1 - g.pw:
            return None
    elif name in ("winograd", "winograd4") and (g.ph, g.pw) == (1, 1):
        role, border = "dy_padded_tiles", 1
    else:
        return None
    to_channel_last(dy, input_bufs[role], border, border)
    return input_bufs[role], border


FORWARD = {
    "nchw": _nchw_forward,
    "batch_last": _batchlast_forward,
    "rows": _rows_forward,
    "channel_last": _channellast_forward,
    "im2col": _im2col_forward,
    "matmul_1x1": _1x1_forward,
    "matmul_whole_input": _whole_forward,
    "winograd": _winograd_forward,
    "winograd4": _winograd_forward,
    "depthwise": _depthwise_forward,
}
WEIGHT_GRAD = {
    "nchw": _nchw_weight_grad,
    "batch_last": _batchlast_weight_grad,
    "rows": _rows_weight_grad,
    "channel_last": _channellast_weight_grad,
    "im2col": _im2col_weight_grad,
    "matmul_1x1": _1x1_weight_grad,
    "matmul_whole_input": _whole_weight_grad,
    "winograd": _winograd_weight_grad,
    "winograd4": _winograd_weight_grad,
    "depthwise": _depthwise_weight_grad,
}
INPUT_GRAD = {
    "nchw": _nchw_input_grad,
    "batch_last": _batchlast_input_grad,
    "rows": _rows_input_grad,
    "channel_last": _channellast_input_grad,
    "im2col": _im2col_input_grad,
    "matmul_1x1": _1x1_input_grad,
    "matmul_whole_input": _whole_input_grad,
    "winograd": _winograd_input_grad,
    "winograd4": _winograd_input_grad,
    "depthwise": _depthwise_input_grad,
}


# --------------------------------------------------------------------------- forward between padded layouts
# For inference chains (fastcnn.layers.fuse): x arrives, and y leaves, channel-last with a zero border of `pad`
# pixels, (N, H + 2*pad, W + 2*pad, C): the layout these two algorithms copy x into anyway.

#: Algorithms whose forward pass :func:`forward_padded` runs between padded channel-last layouts.
PADDED_FORWARD = ("channel_last", "winograd", "winograd4")


def reads_padded(name, g, pad):
    """Whether :func:`forward_padded` runs plan ``name`` on ``g`` from x with a zero border of ``pad``."""
    if name not in PADDED_FORWARD or g.groups > 1 or g.dilated:
        return False
    if name == "channel_last":  # any padding up to the border: the windows start (pad - ph, pad - pw) further
        return g.ph <= pad and g.pw <= pad
    m = 2 if name == "winograd" else 4  # the tiles read from the origin, up to a whole tile past the output
    tiles_fit = g.H + 2 * pad >= m * -(-g.P // m) + 2 and g.W + 2 * pad >= m * -(-g.Q // m) + 2
    return (g.ph, g.pw) == (pad, pad) and tiles_fit


def forward_padded(name, xp, pad, w, b, yp, pad_out, relu, g, bufs, res=None):
    """The forward pass of plan ``name`` (one that :func:`reads_padded`) from ``xp`` (N, H + 2*pad, W + 2*pad, C)
    into ``yp`` (N, P + 2*pad_out, Q + 2*pad_out, K), channel-last with a zero border, ``res`` (yp's shape) added
    when given and the ReLU fused when ``relu``."""
    if name == "channel_last":
        w2 = bufs["w_forward"]
        w2.reshape(g.R, g.S, g.C, w2.shape[2])[..., :g.K] = w.transpose(2, 3, 1, 0)
        conv2d_forward_channellast_padded(xp, w2, b, yp, g.sh, g.sw, pad - g.ph, pad - g.pw, pad_out, relu,
                                          bufs["rows"], res)
        return
    u = bufs["u_forward"]
    winograd_filter(w, u, False)
    conv2d_forward_winograd_padded(xp, u, b, yp, pad_out, relu, bufs["tiles"], bufs["products"], res)


# --------------------------------------------------------------------------- any plan, grouped ones per group


def _grouped(name, g):
    """The per-group geometry when plan ``name`` on ``g`` runs one call per group, else None."""
    return g.per_group() if g.groups > 1 and name != "depthwise" else None


def forward(name, x, w, b, y, g, bufs):
    """Run the forward pass of the plan of algorithm ``name`` on ``g`` (see the module docstring)."""
    sub = _grouped(name, g)
    if sub is None:
        _forward_one(name, x, w, b, y, g, bufs)
        return
    xg, yg = bufs["x_group"], bufs["y_group"]  # (N, C/G, H, W), (N, K/G, P, Q)
    for i in range(g.groups):
        cs, ks = slice(i * sub.C, (i + 1) * sub.C), slice(i * sub.K, (i + 1) * sub.K)
        xg[...] = x[:, cs]
        _forward_one(name, xg, w[ks], b[ks], yg, sub, bufs)
        y[:, ks] = yg


def weight_grad(name, dy, x, dw, g, bufs, x_ready=False, dy_ready=None):
    """Run the weight gradient of the plan (``x_ready`` as the executors of :data:`X_LAYOUT` take it;
    ``dy_ready``: the ``(array, border)`` copy of dy that :func:`share_dy` made)."""
    sub = _grouped(name, g)
    if sub is None:
        _weight_grad_one(name, dy, x, dw, g, bufs, x_ready, dy_ready)
        return
    xg, dyg = bufs["x_group"], bufs["dy_group"]
    for i in range(g.groups):
        cs, ks = slice(i * sub.C, (i + 1) * sub.C), slice(i * sub.K, (i + 1) * sub.K)
        xg[...] = x[:, cs]
        dyg[...] = dy[:, ks]
        _weight_grad_one(name, dyg, xg, dw[ks], sub, bufs, False)  # dw[ks]: contiguous rows, written in place


def input_grad(name, dy, w, dx, g, bufs, dy_ready=False):
    """Run the input gradient of the plan (``dy_ready``: :func:`share_dy` already made its copy of dy in ``bufs``)."""
    sub = _grouped(name, g)
    if sub is None:
        _input_grad_one(name, dy, w, dx, g, bufs, dy_ready)
        return
    dyg, dxg = bufs["dy_group"], bufs["dx_group"]
    for i in range(g.groups):
        cs, ks = slice(i * sub.C, (i + 1) * sub.C), slice(i * sub.K, (i + 1) * sub.K)
        dyg[...] = dy[:, ks]
        _input_grad_one(name, dyg, w[ks], dxg, sub, bufs)
        dx[:, cs] = dxg


# --------------------------------------------------------------------------- one group, dilated ones by phases


def _phases(g):
    """``[(a, b, image rows, image cols, phase rows, phase cols)]``: where the pixels of x of row phase a and
    column phase b (of the padded image) sit in x and in their sub-image (:meth:`ConvGeometry.space_to_batch`)."""
    out = []
    for a in range(g.dil_h):
        i0 = (a - g.ph) % g.dil_h  # the first row of x whose padded row is a (mod dil_h)
        rows = range(i0, g.H, g.dil_h)
        for b in range(g.dil_w):
            j0 = (b - g.pw) % g.dil_w
            cols = range(j0, g.W, g.dil_w)
            u0, v0 = (i0 + g.ph) // g.dil_h, (j0 + g.pw) // g.dil_w
            out.append((a, b, slice(i0, g.H, g.dil_h), slice(j0, g.W, g.dil_w),
                        slice(u0, u0 + len(rows)), slice(v0, v0 + len(cols))))
    return out


def _split(a, g, out):
    """``out`` (N*dh*dw, C, Hs, Ws): the zero-padded phase sub-images of ``a`` (N, C, H, W)."""
    out.fill(0)
    phases = out.reshape(g.dil_h, g.dil_w, g.N, *out.shape[1:])
    for pa, pb, rows, cols, prows, pcols in _phases(g):
        phases[pa, pb][:, :, prows, pcols] = a[:, :, rows, cols]


def _split_output(d, g, out):
    """``out`` (N*dh*dw, K, P', Q'): the phases of an output-shaped ``d`` (N, K, P, Q), zeros past P and Q."""
    out.fill(0)
    phases = out.reshape(g.dil_h, g.dil_w, g.N, *out.shape[1:])
    for pa in range(g.dil_h):
        for pb in range(g.dil_w):
            part = d[:, :, pa::g.dil_h, pb::g.dil_w]
            phases[pa, pb][:, :, :part.shape[2], :part.shape[3]] = part


def _forward_one(name, x, w, b, y, g, bufs):
    if not g.dilated or name in NATIVE_DILATION:
        FORWARD[name](x, w, b, y, g, bufs)
        return
    sub = g.space_to_batch()
    xs, ys = bufs["x_dilation_phases"], bufs["y_dilation_phases"]
    _split(x, g, xs)
    FORWARD[name](xs, w, b, ys, sub, bufs)
    phases = ys.reshape(g.dil_h, g.dil_w, g.N, *ys.shape[1:])
    for pa in range(g.dil_h):
        for pb in range(g.dil_w):
            part = y[:, :, pa::g.dil_h, pb::g.dil_w]
            part[...] = phases[pa, pb][:, :, :part.shape[2], :part.shape[3]]


def _weight_grad_one(name, dy, x, dw, g, bufs, x_ready, dy_ready=None):
    if not g.dilated or name in NATIVE_DILATION:
        ready = ({"x_ready": True} if x_ready else {}) | ({"dy_ready": dy_ready} if dy_ready else {})
        WEIGHT_GRAD[name](dy, x, dw, g, bufs, **ready)
        return
    sub = g.space_to_batch()
    xs, dys = bufs["x_dilation_phases"], bufs["dy_dilation_phases"]
    _split(x, g, xs)
    _split_output(dy, g, dys)
    WEIGHT_GRAD[name](dys, xs, dw, sub, bufs)


def _input_grad_one(name, dy, w, dx, g, bufs, dy_ready=False):
    if not g.dilated or name in NATIVE_DILATION:
        if dy_ready:
            INPUT_GRAD[name](dy, w, dx, g, bufs, dy_ready=True)
        else:
            INPUT_GRAD[name](dy, w, dx, g, bufs)
        return
    sub = g.space_to_batch()
    dys, dxs = bufs["dy_dilation_phases"], bufs["dx_dilation_phases"]
    _split_output(dy, g, dys)
    INPUT_GRAD[name](dys, w, dxs, sub, bufs)
    phases = dxs.reshape(g.dil_h, g.dil_w, g.N, *dxs.shape[1:])
    for pa, pb, rows, cols, prows, pcols in _phases(g):  # each pixel of x is in one sub-image: assignment
        dx[:, :, rows, cols] = phases[pa, pb][:, :, prows, pcols]
