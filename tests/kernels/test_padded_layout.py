"""The kernels that pass eval-mode activations on channel-last with a zero border (``fastcnn.layers.padded``).

Each is checked against the naive loops of ``tests/naive.py`` (the NCHW
result, then laid out), with a border filled with garbage beforehand that
must come back zero, the ReLU fused or not (NaN stays NaN), and the NCHW
output mode of the convolutions (``pad < 0``).
"""

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, randn
from fastcnn import kernels as K
from fastcnn.kernels.conv import PreparedConv

#: float64 runs with ``-m slow`` (in CI's slow job): its compile alone is several seconds of the quick suite.
DTYPES = [np.float32, pytest.param(np.float64, marks=pytest.mark.slow)]


def _padded(x, pad, extra=0):
    """x (N, C, H, W) as (N, H + 2*pad + extra, W + 2*pad + extra, C), zeros around."""
    N, C, H, W = x.shape
    xp = np.zeros((N, H + 2 * pad + extra, W + 2 * pad + extra, C), dtype=x.dtype)
    xp[:, pad:pad + H, pad:pad + W] = x.transpose(0, 2, 3, 1)
    return xp


def _expected(x, w, b, stride, padding, relu):
    y = nv.conv2d_forward(x, w, b, stride, padding)
    return np.maximum(y, 0) if relu else y


def _check_output(out, expected, pad, dtype, rtol=None):
    """``out`` (padded channel-last, or NCHW when pad < 0) holds ``expected`` (NCHW) and a zero border."""
    if pad < 0:
        assert_close(out, expected, dtype, rtol=rtol)
        return
    P, Q = expected.shape[2:]
    assert_close(out[:, pad:pad + P, pad:pad + Q], expected.transpose(0, 2, 3, 1), dtype, rtol=rtol)
    border = np.ones(out.shape[:3], dtype=bool)
    border[:, pad:pad + P, pad:pad + Q] = False
    assert not out[border].any(), "the border must be zero"


# (N, C, H, W, K, R, S, stride, padding, border of x, border of y): the border of x at least the padding
CHANNEL_LAST_CASES = [
    (2, 5, 7, 6, 9, 3, 3, (1, 1), (1, 1), 1, 1),
    (3, 8, 8, 8, 16, 1, 1, (2, 2), (0, 0), 1, 1),  # a 1x1 stride-2 shortcut read from a 3x3 layer's layout
    (2, 3, 9, 7, 5, 3, 2, (2, 1), (0, 1), 2, 0),
    (1, 4, 5, 5, 8, 3, 3, (1, 1), (1, 1), 1, 2),
    (2, 6, 6, 7, 3, 3, 3, (1, 2), (1, 0), 1, -1),  # NCHW output
]


def _shortcut(rng, expected, pad_out, dtype):
    """A residual term for the output: (its NCHW values, the array the kernels take: padded, zero border)."""
    r = randn(rng, expected.shape, dtype)
    return r, (_padded(r, pad_out) if pad_out >= 0 else r)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CHANNEL_LAST_CASES)
def test_channellast_padded_matches_naive(case, dtype, relu, residual, rng):
    """With a residual term (padded outputs only: the NCHW mode never reads it) added before the ReLU."""
    N, C, H, W, Kout, R, S, stride, padding, pad_in, pad_out = case
    x, w, b = randn(rng, (N, C, H, W), dtype), randn(rng, (Kout, C, R, S), dtype), randn(rng, (Kout,), dtype)
    expected = _expected(x, w, b, stride, padding, False)
    res = None
    if residual:
        r, res = _shortcut(rng, expected, pad_out, dtype)
        expected = expected + r if pad_out >= 0 else expected
    expected = np.maximum(expected, 0) if relu else expected
    P, Q = expected.shape[2:]
    Kw = -(-Kout // 8) * 8
    w2 = np.zeros((R, S * C, Kw), dtype)
    w2.reshape(R, S, C, Kw)[..., :Kout] = w.transpose(2, 3, 1, 0)
    shape = (N, Kout, P, Q) if pad_out < 0 else (N, P + 2 * pad_out, Q + 2 * pad_out, Kout)
    out = np.full(shape, np.nan, dtype)
    K.conv2d_forward_channellast_padded(_padded(x, pad_in), w2, b, out, *stride, pad_in - padding[0],
                                        pad_in - padding[1], pad_out, relu, np.empty((3, Q, Kw), dtype), res)
    _check_output(out, expected, pad_out, dtype)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("positions", [16, 36])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,C,H,W,Kout,pad_out", [(2, 5, 7, 6, 9, 1), (1, 16, 8, 8, 16, 2), (3, 3, 5, 9, 4, -1)])
def test_winograd_padded_matches_naive(N, C, H, W, Kout, pad_out, positions, dtype, relu, residual, rng):
    """Sizes that are not multiples of the tile read a frame that many zeros larger; the tiles past the output's
    edge are dropped.  A residual term (padded outputs only) is added before the ReLU."""
    x, w, b = randn(rng, (N, C, H, W), dtype), randn(rng, (Kout, C, 3, 3), dtype), randn(rng, (Kout,), dtype)
    expected = _expected(x, w, b, 1, 1, False)
    res = None
    if residual:
        r, res = _shortcut(rng, expected, pad_out, dtype)
        expected = expected + r if pad_out >= 0 else expected
    expected = np.maximum(expected, 0) if relu else expected
    m = 2 if positions == 16 else 4
    extra = m * -(-max(H, W) // m) - min(H, W)
    Kw = -(-Kout // 8) * 8
    u = np.empty((positions, C, Kw), dtype)
    K.winograd_filter(w, u, False)
    tiles = 5
    v, prod = np.empty((2, positions, tiles, C), dtype), np.empty((2, positions, tiles, Kw), dtype)
    shape = (N, Kout, H, W) if pad_out < 0 else (N, H + 2 * pad_out, W + 2 * pad_out, Kout)
    out = np.full(shape, np.nan, dtype)
    K.conv2d_forward_winograd_padded(_padded(x, 1, extra), u, b, out, pad_out, relu, v, prod, res)
    _check_output(out, expected, pad_out, dtype, rtol=5e-5 if positions == 36 and dtype == np.float32 else None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,pad", [((2, 3, 5, 7), 1), ((1, 17, 9, 8), 0), ((3, 8, 2, 3), 2)])
def test_from_channel_last_inverts_to_channel_last(shape, pad, dtype, rng):
    x = randn(rng, shape, dtype)
    N, C, H, W = shape
    xp = np.full((N, H + 2 * pad, W + 2 * pad, C), np.nan, dtype)
    K.to_channel_last(x, xp, pad, pad)
    np.testing.assert_array_equal(xp, _padded(x, pad))
    back = np.full(shape, np.nan, dtype)
    K.from_channel_last(xp, back, pad, pad)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,pad", [((2, 5, 8, 6), 1), ((1, 3, 7, 9), 1), ((2, 16, 4, 4), 0), ((1, 2, 3, 2), 2)])
def test_max_pool_padded_matches_naive(shape, pad, dtype, relu, rng):
    """Odd sizes drop the last row or column (floor); a NaN in a window gives NaN, with or without the ReLU."""
    x = randn(rng, shape, dtype)
    x[0, 0, 1, 1] = np.nan
    expected = nv.max_pool2d_forward(x, 2, 2)[0]  # the naive loops skip NaN; PyTorch's rule propagates it
    expected[0, 0, 0, 0] = np.nan
    expected = np.where(np.isnan(expected), expected, np.maximum(expected, 0)) if relu else expected
    N, C, H, W = shape
    out = np.full((N, H // 2 + 2 * pad, W // 2 + 2 * pad, C), np.nan, dtype)
    K.max_pool2d_2x2_padded_kernel(_padded(x, pad), out, pad, relu)
    P, Q = H // 2, W // 2
    np.testing.assert_array_equal(out[:, pad:pad + P, pad:pad + Q], expected.transpose(0, 2, 3, 1))
    border = np.ones(out.shape[:3], dtype=bool)
    border[:, pad:pad + P, pad:pad + Q] = False
    assert not out[border].any()


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,algorithm,border,reads", [
    ((2, 16, 8, 8), (16, 16, 3, 3), 1, 1, "channel_last", 1, True),
    ((2, 16, 8, 8), (16, 16, 3, 3), 1, 2, "channel_last", 1, False),  # more padding than the border
    ((2, 16, 8, 8), (32, 16, 1, 1), 2, 0, "channel_last", 1, True),
    ((2, 16, 8, 8), (16, 16, 3, 3), 1, 1, "winograd4", 1, True),
    ((2, 16, 7, 8), (16, 16, 3, 3), 1, 1, "winograd4", 1, False),  # the last tile would read past the frame
    ((2, 16, 7, 8), (16, 16, 3, 3), 1, 1, "winograd", 1, False),
    ((2, 16, 8, 8), (16, 16, 3, 3), 1, 0, "winograd", 1, False),  # the tiles read from the origin
    ((2, 16, 8, 8), (16, 16, 3, 3), 1, 1, "nchw", 1, False),
    ((2, 16, 8, 8), (16, 16, 3, 3), 1, 1, "im2col", 1, False),
])
def test_prepared_forward_padded_where_it_reads_the_layout(x_shape, w_shape, stride, padding, algorithm, border,
                                                           reads, rng):
    """A prepared plan says whether it reads the padded layout, and where it does, gives the NCHW plan's results in
    both output layouts (the layer's bias and ReLU fused)."""
    conv = PreparedConv(x_shape, w_shape, stride, padding, np.float32, algorithm, "test", 2)
    assert conv.reads_padded(border) is reads
    if not reads:
        return
    x, w, b = randn(rng, x_shape, np.float32), randn(rng, w_shape, np.float32), randn(rng, (w_shape[0],), np.float32)
    expected = _expected(x, w, b, stride, padding, True)
    tol = 5e-5 if algorithm == "winograd4" else None
    _check_output(conv.forward_padded(_padded(x, border), border, w, b, 1, True), expected, 1, np.float32, tol)
    _check_output(conv.forward_padded(_padded(x, border), border, w, b, None, True), expected, -1, np.float32, tol)


# --------------------------------------------------------------------------- weight gradients from a bordered dy


@pytest.mark.parametrize("border", [1, 2])
@pytest.mark.parametrize("kernel", ["channel_last", "winograd", "winograd4"])
def test_weight_gradients_read_dy_inside_a_border_as_without(kernel, border, rng):
    """The raw weight gradients read dy from row and column ``border`` of a padded copy (the one the input
    gradient makes) exactly as from the plain copy (the six-argument call), and both match the naive loops."""
    N, C, H, W, Kout = 2, 5, 9, 7, 6
    x, dy = randn(rng, (N, C, H, W), np.float32), randn(rng, (N, Kout, H, W), np.float32)
    want = nv.conv2d_backward(dy, x, randn(rng, (Kout, C, 3, 3), np.float32), 1, 1)[1]  # (dw needs no weights)
    dw, dw_plain = np.empty((Kout, C, 3, 3), np.float32), np.empty((Kout, C, 3, 3), np.float32)
    if kernel == "channel_last":
        xp, partial = _padded(x, 1), np.empty((2, 3, 3 * C, Kout), np.float32)
        K.conv2d_backward_weight_channellast(xp, _padded(dy, 0), dw_plain, partial, 1, 1)
        K.conv2d_backward_weight_channellast(xp, _padded(dy, border), dw, partial, 1, 1, border)
    else:
        m = 2 if kernel == "winograd" else 4
        a2, TP, TQ = (m + 2) ** 2, -(-H // m), -(-W // m)
        extra_h, extra_w = m * TP - H, m * TQ - W  # the tiles past the edge read zeros
        xp = np.zeros((N, m * TP + 2, m * TQ + 2, C), np.float32)
        xp[:, 1:1 + H, 1:1 + W] = x.transpose(0, 2, 3, 1)
        v, mdy = np.empty((2, a2, 3 * TQ | 1, C), np.float32), np.empty((2, a2, 3 * TQ | 1, 8), np.float32)
        partial = np.empty((2, a2, C, 8), np.float32)
        plain = np.zeros((N, m * TP, m * TQ, Kout), np.float32)
        plain[:, :H, :W] = dy.transpose(0, 2, 3, 1)
        bordered = np.zeros((N, m * TP + 2 * border, m * TQ + 2 * border, Kout), np.float32)
        bordered[:, border:border + H, border:border + W] = dy.transpose(0, 2, 3, 1)
        assert extra_h >= 0 and extra_w >= 0
        K.conv2d_backward_weight_winograd(xp, plain, dw_plain, v, mdy, partial)
        K.conv2d_backward_weight_winograd(xp, bordered, dw, v, mdy, partial, border)
    np.testing.assert_array_equal(dw, dw_plain)
    assert_close(dw, want, np.float32, rtol=1e-3 if kernel == "winograd4" else None)
