"""LocallyConnected2d: float64 gradient checks, shapes, initialisation, config, summary, save/load;
count_connections.  The kernels are checked in kernels/test_local_kernels.py."""

import numpy as np
import pytest

from helpers import check_layer_grads

import fastcnn
from fastcnn.layers import Conv2d, Flatten, Linear, LocallyConnected2d, ReLU, count_connections


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
