"""Convolutions that are one matrix product: numpy's ``matmul`` (BLAS) on views, one function per pass.

Shape vocabulary: x (N, C, H, W), w (K, C, R, S), y and dy (N, K, P, Q).

``1x1``: a 1x1 kernel with stride 1 and no padding maps each pixel's C
channels to K: ``y[n] = w (K, C) @ x[n] (C, H*W)``.

``whole input``: a kernel as large as the padded input (``R == H + 2*ph``,
``S == W + 2*pw``) gives a 1x1 output whatever the stride; it is a fully
connected layer, ``y = xp (N, C*R*S) @ w (K, C*R*S).T`` with ``xp`` the
padded input.

Scratch arrays come from the caller (the plan's buffers); the bias gradient
is the direct kernel's (:func:`fastcnn.kernels._conv_nchw.conv2d_backward_bias`).
"""

import numpy as np


def forward_1x1(x, w, b, y):
    """y[n] = w (K, C) @ x[n] (C, H*W) + b: one product per image on views, no copies."""
    N, C, H, W = x.shape
    K = w.shape[0]
    np.matmul(w.reshape(K, C), x.reshape(N, C, H * W), out=y.reshape(N, K, H * W))
    y += b.reshape(1, K, 1, 1)


def weight_grad_1x1(dy, x, dw, per_image):
    """dw = sum_n dy[n] (K, H*W) @ x[n].T (H*W, C): N products into ``per_image`` (N, K, C), then a sum."""
    N, C, H, W = x.shape
    K = dw.shape[0]
    np.matmul(dy.reshape(N, K, H * W), x.reshape(N, C, H * W).transpose(0, 2, 1), out=per_image)
    np.sum(per_image, axis=0, out=dw.reshape(K, C))


def input_grad_1x1(dy, w, dx, w_transposed):
    """dx[n] = w.T (C, K) @ dy[n] (K, H*W); ``w_transposed`` (C, K) is the faster contiguous operand."""
    N, C, H, W = dx.shape
    K = w.shape[0]
    w_transposed[...] = w.reshape(K, C).T
    np.matmul(w_transposed, dy.reshape(N, K, H * W), out=dx.reshape(N, C, H * W))


def _padded(x, ph, pw, out):
    """``x`` zero-padded by (ph, pw) on H and W, into ``out`` (``x`` itself when there is no padding)."""
    if out is None:
        return x
    H, W = x.shape[2], x.shape[3]
    out[...] = 0
    out[:, :, ph:ph + H, pw:pw + W] = x
    return out


def forward_whole_input(x, w, b, y, ph, pw, x_padded=None):
    """y (N, K) = xp (N, C*R*S) @ w (K, C*R*S).T + b; ``x_padded`` (N, C, H+2ph, W+2pw) when padding > 0."""
    N, K = x.shape[0], w.shape[0]
    xp = _padded(x, ph, pw, x_padded)
    np.matmul(xp.reshape(N, -1), w.reshape(K, -1).T, out=y.reshape(N, K))
    y += b.reshape(1, K, 1, 1)


def weight_grad_whole_input(dy, x, dw, ph, pw, x_padded=None):
    """dw (K, C*R*S) = dy.T (K, N) @ xp (N, C*R*S)."""
    N, K = x.shape[0], dw.shape[0]
    xp = _padded(x, ph, pw, x_padded)
    np.matmul(dy.reshape(N, K).T, xp.reshape(N, -1), out=dw.reshape(K, -1))


def input_grad_whole_input(dy, w, dx, ph, pw, dx_padded=None):
    """dxp (N, C*R*S) = dy (N, K) @ w (K, C*R*S), then the interior of the padded frame is dx."""
    N, K = dy.shape[0], w.shape[0]
    out = dx if dx_padded is None else dx_padded
    np.matmul(dy.reshape(N, K), w.reshape(K, -1), out=out.reshape(N, -1))
    if dx_padded is not None:
        H, W = dx.shape[2], dx.shape[3]
        dx[...] = dx_padded[:, :, ph:ph + H, pw:pw + W]
