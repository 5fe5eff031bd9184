"""The locally connected kernels against naive loops, against a convolution, and their argument checks.

The layer (LocallyConnected2d, its gradient check) and count_connections are in layers/test_local.py.
"""

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, randn

from fastcnn import kernels as K

# (N, C, H, W, K, R, S, stride, padding)
LOCAL_CASES = {
    "batch1_3x3": (1, 2, 5, 5, 3, 3, 3, 1, 0),
    "rect_stride_pad": (2, 3, 6, 7, 2, 3, 2, (2, 1), (1, 0)),
    "stride_gt_kernel": (3, 1, 7, 7, 2, 2, 2, 3, 0),
    "padding_ge_kernel": (2, 2, 3, 3, 2, 2, 2, 1, 2),
    "kernel_eq_padded_input": (2, 2, 3, 4, 3, 5, 6, 1, 1),
    "1x1": (9, 3, 4, 4, 5, 1, 1, 1, 0),
}


def _weights(rng, case, dtype):
    N, C, H, W, Kout, R, S, stride, padding = LOCAL_CASES[case]
    sh, sw = nv.pair(stride)
    ph, pw = nv.pair(padding)
    P, Q = nv.conv_out(H, R, sh, ph), nv.conv_out(W, S, sw, pw)
    x = randn(rng, (N, C, H, W), dtype)
    w = randn(rng, (P, Q, Kout, C, R, S), dtype)
    b = randn(rng, (Kout, P, Q), dtype)
    return x, w, b, stride, padding


@pytest.mark.parametrize("case", list(LOCAL_CASES))
def test_forward_backward_match_naive(case, dtype, rng):
    x, w, b, stride, padding = _weights(rng, case, dtype)
    y = K.locally_connected2d_forward(x, w, b, stride, padding)
    assert y.dtype == dtype
    assert_close(y, nv.locally_connected2d_forward(x, w, b, stride, padding), dtype)
    assert_close(K.locally_connected2d_forward(x, w, None, stride, padding),
                 nv.locally_connected2d_forward(x, w, None, stride, padding), dtype)
    dy = randn(rng, y.shape, dtype)
    dx, dw, db = K.locally_connected2d_backward(dy, x, w, stride, padding)
    ex, ew, eb = nv.locally_connected2d_backward(dy, x, w, stride, padding)
    for got, want, name in ((dx, ex, "dx"), (dw, ew, "dw"), (db, eb, "db")):
        assert got.dtype == dtype, name
        assert_close(got, want, dtype, err_msg=name)
    none, dw2, _ = K.locally_connected2d_backward(dy, x, w, stride, padding, need_input_grad=False)
    assert none is None
    np.testing.assert_array_equal(dw2, dw)


def test_shared_weights_equal_a_convolution(rng):
    """With the same filters at every position it is a convolution."""
    x = randn(rng, (2, 3, 6, 5), np.float64)
    wc = randn(rng, (4, 3, 3, 2), np.float64)
    P, Q = nv.conv_out(6, 3, 1, 1), nv.conv_out(5, 2, 2, 0)
    w = np.ascontiguousarray(np.broadcast_to(wc, (P, Q) + wc.shape))
    y = K.locally_connected2d_forward(x, w, None, stride=(1, 2), padding=(1, 0))
    np.testing.assert_allclose(y, K.conv2d_forward(x, wc, None, stride=(1, 2), padding=(1, 0)), rtol=1e-12)


def test_kernel_validation_messages():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match="6 dimensions"):
        K.locally_connected2d_forward(x, np.zeros((2, 3, 3, 3)), None)
    with pytest.raises(ValueError, match="input has 2 channels but weight expects 3"):
        K.locally_connected2d_forward(x, np.zeros((3, 3, 1, 3, 3, 3)), None)
    with pytest.raises(ValueError, match="3x3 output .* filters for 4x4 positions"):
        K.locally_connected2d_forward(x, np.zeros((4, 4, 1, 2, 3, 3)), None)
    with pytest.raises(ValueError, match="bias must have shape"):
        K.locally_connected2d_forward(x, np.zeros((3, 3, 1, 2, 3, 3)), np.zeros((1, 2, 2)))
    with pytest.raises(TypeError, match="dtype"):
        K.locally_connected2d_forward(x, np.zeros((3, 3, 1, 2, 3, 3), np.float32), None)
    with pytest.raises(ValueError, match="dy must have shape"):
        K.locally_connected2d_backward(np.zeros((1, 1, 2, 2)), x, np.zeros((3, 3, 1, 2, 3, 3)))
