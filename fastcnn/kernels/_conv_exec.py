"""Run a convolution plan: for each (algorithm, pass), prepare the layouts its raw kernels read, then call them.

Every function takes checked arrays, the :class:`~fastcnn.kernels.conv_plan.ConvGeometry`
``g`` and ``bufs``, the plan's buffers by role (from
:func:`fastcnn.kernels._workspace.take`), and writes its output in place:

* ``forward(x, w, b, y, g, bufs)``
* ``weight_grad(dy, x, dw, g, bufs)`` (the bias gradient is computed beside it)
* ``input_grad(dy, w, dx, g, bufs)``

:data:`FORWARD`, :data:`WEIGHT_GRAD` and :data:`INPUT_GRAD` map algorithm
names to them.  Weight relayouts are tiny (R*S*C*K numbers) and rebuilt per
call; the activation-sized layout copies live in the workspace.
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
    to_channel_last,
)
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

# --------------------------------------------------------------------------- nchw


def _nchw_forward(x, w, b, y, g, bufs):
    conv2d_forward_direct(x, w, b, y, g.sh, g.sw, g.ph, g.pw)


def _nchw_weight_grad(dy, x, dw, g, bufs):
    conv2d_backward_weight_direct(dy, x, dw, g.sh, g.sw, g.ph, g.pw)


def _nchw_input_grad(dy, w, dx, g, bufs):
    conv2d_backward_input_direct(dy, w, dx, g.sh, g.sw, g.ph, g.pw)


# --------------------------------------------------------------------------- batch_last


def _batchlast_forward(x, w, b, y, g, bufs):
    xt = bufs["x_batch_last"]  # (C, H, W, N)
    to_batch_last(x, xt)
    conv2d_forward_batchlast(xt, w, b, y, g.sh, g.sw, g.ph, g.pw)


def _batchlast_weight_grad(dy, x, dw, g, bufs):
    dyt, xt = bufs["dy_batch_last"], bufs["x_batch_last"]  # (K, P, Q, N), (C, H, W, N)
    to_batch_last(dy, dyt)
    to_batch_last(x, xt)
    conv2d_backward_weight_batchlast(dyt, xt, dw, g.sh, g.sw, g.ph, g.pw)


def _batchlast_input_grad(dy, w, dx, g, bufs):
    dyb = bufs["dy_pixel_batch_last"]  # (P, Q, K, N rounded up to 8)
    to_pixel_batch_last(dy, dyb)
    wf = bufs["w_flipped"]  # (C rounded up to 4, R, S, K), zeros past C
    wf[:g.C] = w.transpose(1, 2, 3, 0)[:, :, ::-1, :]  # wf[c, r, S-1-s, k] = w[k, c, r, s]
    conv2d_backward_input_batchlast(dyb, wf, dx, g.sh, g.sw, g.ph, g.pw, bufs["dx_rows"])


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


def _channellast_weight_grad(dy, x, dw, g, bufs):
    conv2d_backward_weight_channellast(_channellast_x(x, g, bufs), _channellast_dy(dy, bufs), dw,
                                       bufs["partial_dw"], g.sh, g.sw)


def _channellast_input_grad(dy, w, dx, g, bufs):
    wt = bufs["w_input"]  # (R, S, K, C rounded up to 8), zeros past C
    wt[..., :g.C] = w.transpose(2, 3, 0, 1)
    conv2d_backward_input_channellast(_channellast_dy(dy, bufs), wt, dx, g.sh, g.sw, g.ph, g.pw, bufs["frames"])


# --------------------------------------------------------------------------- im2col


def _im2col_forward(x, w, b, y, g, bufs):
    conv2d_forward_gemm(x, w, b, y, g.sh, g.sw, g.ph, g.pw, bufs["cols"])


def _im2col_weight_grad(dy, x, dw, g, bufs):
    conv2d_backward_weight_gemm(dy, x, dw, g.sh, g.sw, g.ph, g.pw, bufs["cols"], bufs["dw_per_image"])


def _im2col_input_grad(dy, w, dx, g, bufs):
    conv2d_backward_input_gemm(dy, w, dx, g.sh, g.sw, g.ph, g.pw, bufs["dcols"])


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


FORWARD = {
    "nchw": _nchw_forward,
    "batch_last": _batchlast_forward,
    "channel_last": _channellast_forward,
    "im2col": _im2col_forward,
    "matmul_1x1": _1x1_forward,
    "matmul_whole_input": _whole_forward,
}
WEIGHT_GRAD = {
    "nchw": _nchw_weight_grad,
    "batch_last": _batchlast_weight_grad,
    "channel_last": _channellast_weight_grad,
    "im2col": _im2col_weight_grad,
    "matmul_1x1": _1x1_weight_grad,
    "matmul_whole_input": _whole_weight_grad,
}
INPUT_GRAD = {
    "nchw": _nchw_input_grad,
    "batch_last": _batchlast_input_grad,
    "channel_last": _channellast_input_grad,
    "im2col": _im2col_input_grad,
    "matmul_1x1": _1x1_input_grad,
    "matmul_whole_input": _whole_input_grad,
}
