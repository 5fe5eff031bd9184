"""LocallyConnected2d: kernels against naive loops, float64 gradient checks, the layer, count_connections."""

import numpy as np
import pytest

import naive as nv
from conftest import assert_close, randn
from test_layers import check_layer_grads

import fastcnn
from fastcnn import kernels as K
from fastcnn.layers import Conv2d, Flatten, Linear, LocallyConnected2d, ReLU, count_connections

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


@pytest.mark.parametrize("stride,padding,bias", [(1, 0, True), ((2, 1), (1, 0), False), (2, 1, True)])
def test_layer_gradcheck(stride, padding, bias, rng):
    fastcnn.manual_seed(3)
    layer = LocallyConnected2d(2, 3, (3, 2), input_size=(5, 4), stride=stride, padding=padding, bias=bias,
                               dtype=np.float64)
    check_layer_grads(layer, rng.standard_normal((2, 2, 5, 4)), rng)


def test_layer_shapes_init_and_config():
    fastcnn.manual_seed(0)
    layer = LocallyConnected2d(3, 8, 5, input_size=(12, 10), stride=1, padding=0)
    assert layer.weight.shape == (8, 6, 8, 3, 5, 5) and layer.bias.shape == (8, 8, 6)
    assert layer.weight.dtype == np.float32
    bound = 1 / np.sqrt(3 * 5 * 5)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.weight.data).max() > 0.9 * bound
    assert layer.output_shape((3, 12, 10)) == (8, 8, 6)
    with pytest.raises(ValueError, match="built for inputs of shape"):
        layer.output_shape((3, 12, 11))
    with pytest.raises(ValueError, match="built for inputs of shape"):
        layer.forward(np.zeros((1, 3, 10, 10), np.float32))
    assert repr(layer) == "LocallyConnected2d(3, 8, kernel_size=5, input_size=(12, 10))"
    again = LocallyConnected2d(**layer.get_config())
    assert again.weight.shape == layer.weight.shape and repr(again) == repr(layer)
    with pytest.raises(ValueError, match="larger than the padded input"):
        LocallyConnected2d(1, 1, 7, input_size=5)
    with pytest.raises(ValueError, match="in_channels"):
        LocallyConnected2d(0, 1, 3, input_size=5)


def test_summary_counts_and_save_load(tmp_path):
    fastcnn.manual_seed(1)
    model = fastcnn.Sequential(LocallyConnected2d(1, 4, 5, input_size=28), ReLU(), Flatten(),
                               Linear(4 * 24 * 24, 10), input_shape=(1, 28, 28))
    text = model.summary(print_fn=None)
    local = 24 * 24 * 4 * 1 * 5 * 5 + 4 * 24 * 24
    assert f"{local:,}" in text
    assert f"Total params: {local + 4 * 24 * 24 * 10 + 10:,}" in text
    model.save(tmp_path / "m.npz")
    same = fastcnn.load(tmp_path / "m.npz")
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(same.predict(x), model.predict(x))


def test_count_connections_reproduces_the_textbook_figures():
    assert count_connections((1000, 1000), 10**6, "full") == 10**12
    assert count_connections((1000, 1000), 10**6, "local", kernel_size=10) == 10**8
    assert count_connections((1000, 1000), connection="shared", kernel_size=10, num_kernels=100) == 10**4
    assert count_connections(1000, 10**6, "shared", kernel_size=10, num_kernels=100, bias=True) == 10**4 + 100


def test_count_connections_agrees_with_layers():
    fastcnn.manual_seed(0)
    conv = Conv2d(3, 6, 5, bias=False)
    local = LocallyConnected2d(3, 6, 5, input_size=12, bias=False)
    linear = Linear(3 * 12 * 12, 6 * 8 * 8, bias=False)
    units = 6 * 8 * 8
    assert count_connections(12, connection="shared", kernel_size=5, num_kernels=6, in_channels=3) == conv.weight.size
    assert count_connections(12, units, "local", kernel_size=5, in_channels=3) == local.weight.size
    assert count_connections(12, units, "full", in_channels=3) == linear.weight.size


@pytest.mark.parametrize("kwargs,match", [
    (dict(connection="dense"), "connection must be one of"),
    (dict(connection="full"), "needs hidden_units"),
    (dict(hidden_units=4, connection="local"), "needs kernel_size"),
    (dict(connection="shared", kernel_size=3), "needs num_kernels"),
    (dict(connection="shared", kernel_size=30, num_kernels=2), "at most input_size"),
])
def test_count_connections_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        count_connections(10, **kwargs)
