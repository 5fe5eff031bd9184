"""The pooling layers of issue 13: ``AvgPool2d(count_include_pad=False)`` and ``GlobalMaxPool2d``.

Their arguments, repr, config and checkpoints (old ones without ``count_include_pad`` included), output
shapes, training and eval modes, gradients (float64 central differences), the ReLU-before-GlobalMaxPool2d
reordering of :mod:`fastcnn.layers.chain` (and its fused eval path), and a PyTorch twin when installed.
"""

import json

import numpy as np
import pytest

import fastcnn
from fastcnn import kernels as K
from fastcnn.layers import (AvgPool2d, Conv2d, Flatten, GlobalAvgPool2d, GlobalMaxPool2d, Linear, MaxPool2d, ReLU,
                            Residual, chain, fuse)
import naive as nv
from helpers import assert_close, check_layer_grads, checkpoint_header, distinct_values, rewrite_checkpoint

F64 = np.float64


# --------------------------------------------------------------------------- AvgPool2d(count_include_pad)
@pytest.mark.parametrize("case", ["k3_s2_pad1_ceil", "rect_kernel_stride_pad_ceil", "stride1_pad1_ceil"])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_layer_matches_naive(case, count_include_pad, dtype, rng):
    N, C, H, W, k, s, p, cm = nv.POOL_CASES[case]
    layer = AvgPool2d(k, stride=s, padding=p, ceil_mode=cm, count_include_pad=count_include_pad)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape[1:] == tuple(layer.output_shape((C, H, W)))
    assert_close(y, nv.avg_pool2d_forward(x, k, s, p, cm, count_include_pad), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(layer.backward(dy), nv.avg_pool2d_backward(dy, x.shape, k, s, p, cm, count_include_pad), dtype)


def test_avg_pool_layer_gradients_without_padding_count(rng):
    check_layer_grads(AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                      rng.standard_normal((2, 2, 6, 5)), rng)


@pytest.mark.parametrize("layer,expected", [
    pytest.param(AvgPool2d(2), "AvgPool2d(kernel_size=2)", id="default"),
    pytest.param(AvgPool2d(2, count_include_pad=True), "AvgPool2d(kernel_size=2)", id="explicit-default"),
    pytest.param(AvgPool2d(3, 1, 1, count_include_pad=False),
                 "AvgPool2d(kernel_size=3, stride=1, padding=1, count_include_pad=False)", id="no-pad-count"),
    pytest.param(AvgPool2d(3, 2, 1, True, False),
                 "AvgPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)", id="all"),
    pytest.param(GlobalMaxPool2d(), "GlobalMaxPool2d()", id="global-max"),
])
def test_repr_shows_non_default_args(layer, expected):
    assert repr(layer) == expected


def test_config_rebuilds_the_layer():
    layer = AvgPool2d((3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True, count_include_pad=False)
    config = layer.get_config()
    assert config == {"kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 0], "ceil_mode": True,
                      "count_include_pad": False}
    json.dumps(config)
    assert AvgPool2d(**config).get_config() == config
    assert AvgPool2d(2).get_config()["count_include_pad"] is True
    assert "count_include_pad" not in MaxPool2d(2).get_config()  # max pooling has no divisor
    assert GlobalMaxPool2d().get_config() == {}
    assert AvgPool2d(2, count_include_pad=np.bool_(False)).count_include_pad is False
    assert AvgPool2d(2, count_include_pad=0).get_config()["count_include_pad"] is False  # ONNX's attribute


@pytest.mark.parametrize("make,exc,fragment", [
    pytest.param(lambda: AvgPool2d(2, count_include_pad="False"), TypeError,
                 "AvgPool2d: count_include_pad must be True or False, got 'False'", id="str"),
    pytest.param(lambda: AvgPool2d(2, count_include_pad=None), TypeError, "count_include_pad", id="none"),
    pytest.param(lambda: AvgPool2d(2, count_include_pad=2), TypeError, "count_include_pad", id="int"),
    pytest.param(lambda: AvgPool2d(2, padding=2, count_include_pad=False), ValueError, "padding", id="padding"),
    pytest.param(lambda: GlobalMaxPool2d().forward(np.zeros((2, 3))), ValueError, "4-D (N, C, H, W)", id="2d"),
    pytest.param(lambda: GlobalMaxPool2d().forward(np.zeros((2, 3, 0, 2))), ValueError, "planes are empty",
                 id="empty-plane"),
    pytest.param(lambda: GlobalMaxPool2d().output_shape((3, 4)), ValueError, "(channels, height, width)",
                 id="output-shape-2d"),
    pytest.param(lambda: GlobalMaxPool2d().backward(np.zeros((2, 3))), RuntimeError,
                 "without a training-mode forward", id="backward-first"),
])
def test_refused_arguments_say_what_is_wrong(make, exc, fragment):
    with pytest.raises(exc) as info:
        make()
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- GlobalMaxPool2d
def test_global_max_pool_layer_forward_backward(dtype, rng):
    layer = GlobalMaxPool2d()
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    assert layer.output_shape((4, 5, 6)) == (4,)
    y = layer.forward(x)
    ey, eam = nv.global_max_pool2d_forward(x)
    assert y.dtype == dtype and y.shape == (3, 4)
    np.testing.assert_array_equal(y, ey.astype(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, nv.global_max_pool2d_backward(dy, eam, x.shape).astype(dtype))
    assert layer.backward(dy, need_input_grad=False) is None
    assert layer.parameters() == [] and layer.children() == []


def test_global_max_pool_layer_gradients(rng):
    check_layer_grads(GlobalMaxPool2d(), distinct_values(rng, (2, 3, 4, 3), spacing=0.1), rng)


def test_global_max_pool_layer_keeps_nothing_in_eval_mode(rng):
    layer = GlobalMaxPool2d()
    x = rng.standard_normal((2, 3, 4, 4))
    y_train = layer.forward(x)
    layer.eval()
    np.testing.assert_array_equal(layer.forward(x), y_train)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(np.ones((2, 3)))
    layer.train()
    layer.forward(x)
    assert layer.backward(np.ones((2, 3))).shape == x.shape


# --------------------------------------------------------------------------- ReLU before GlobalMaxPool2d
def test_relu_before_global_max_pool_runs_after_it():
    layers = [Conv2d(1, 2, 3), ReLU(), GlobalMaxPool2d(), ReLU(), MaxPool2d(2), ReLU(), GlobalAvgPool2d()]
    assert chain.run_order(layers) == [0, 2, 1, 4, 3, 5, 6]  # no swap before an average pooling


def _swap_inputs(rng, dtype):
    """Planes that are all negative, all zero, tie at their maximum, hold NaN, or are ordinary."""
    x = rng.standard_normal((4, 5, 3, 4)).astype(dtype)
    x[0, 0] = -np.abs(x[0, 0]) - 0.5
    x[0, 1] = 0.0
    x[1, 2] = np.where(x[1, 2] > 0, 2.0, x[1, 2])
    x[2, 3, 1, 1] = np.nan
    x[3, 4] = np.where(rng.random((3, 4)) < 0.5, -0.0, -1.0)
    return x


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_relu_global_max_pool_swap_gives_the_written_order(train, dtype, rng):
    """A chain ReLU -> GlobalMaxPool2d (run pooling first) gives exactly the outputs and input gradient of the
    layers run one by one in the written order (eval mode: the fused chain, the ReLU in place)."""
    x = _swap_inputs(rng, dtype)
    layers = [ReLU(), GlobalMaxPool2d()]
    for layer in layers:
        layer.train(train)
    relu, pool = ReLU(), GlobalMaxPool2d()
    expected = pool.forward(relu.forward(x))
    x_before = x.copy()
    y = chain.forward(layers, x)
    np.testing.assert_array_equal(y, expected)  # NaN == NaN here
    np.testing.assert_array_equal(x, x_before)  # the caller's array is never written
    if train:
        dy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_array_equal(chain.backward(layers, dy), relu.backward(pool.backward(dy)))


def test_relu_global_max_pool_swap_inside_a_residual_block(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    block = Residual([Conv2d(3, 3, 3, padding=1, dtype=F64), ReLU()])
    model = fastcnn.Sequential(block, ReLU(), GlobalMaxPool2d(), Linear(3, 2, dtype=F64), input_shape=(3, 4, 4))
    y_train = model.forward(x)
    np.testing.assert_allclose(model.eval().forward(x), y_train, rtol=1e-12)
    assert [kind for kind, _ in fuse.steps(model.layers)] == ["residual", "layer", "relu", "linear"]


# --------------------------------------------------------------------------- models and checkpoints
def _pool_model(dtype=np.float32):
    fastcnn.manual_seed(3)
    return fastcnn.Sequential(
        Conv2d(1, 4, 3, padding=1, dtype=dtype), ReLU(),
        AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        Conv2d(4, 6, 3, padding=1, dtype=dtype), ReLU(), GlobalMaxPool2d(), Linear(6, 3, dtype=dtype),
        input_shape=(1, 9, 9))


def test_checkpoint_round_trip(tmp_path, rng):
    model = _pool_model()
    path = tmp_path / "pool.npz"
    model.save(path)
    loaded = fastcnn.load(path)
    assert [repr(layer) for layer in loaded.layers] == [repr(layer) for layer in model.layers]
    assert loaded.get_config() == model.get_config()
    x = rng.standard_normal((5, 1, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_old_checkpoint_without_count_include_pad_loads(tmp_path, rng):
    """A checkpoint written before count_include_pad existed has no such key: its AvgPool2d counts the
    padding, as it always did."""
    fastcnn.manual_seed(0)
    model = fastcnn.Sequential(Conv2d(1, 2, 3, padding=1), AvgPool2d(3, stride=2, padding=1), Flatten(),
                               Linear(2 * 4 * 4, 3), input_shape=(1, 8, 8))
    path = tmp_path / "old.npz"
    model.save(path)
    header = checkpoint_header(path)
    for entry in header["model"]["layers"]:
        entry["config"].pop("count_include_pad", None)
    assert "count_include_pad" not in json.dumps(header)
    rewrite_checkpoint(path, config=np.array(json.dumps(header)))
    loaded = fastcnn.load(path)
    assert loaded.layers[1].count_include_pad is True
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_model_with_the_new_pooling_trains_and_summarises(rng):
    model = _pool_model()
    x = rng.standard_normal((32, 1, 9, 9)).astype(np.float32)
    y = (x[:, 0, 4, 4] > 0).astype(np.int64) + (x[:, 0, 2, 2] > 0)
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=3, batch_size=8, verbose=False, seed=0,
              optimizer=fastcnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert model.evaluate(x, y)["loss"] < before
    text = model.summary(print_fn=None)
    assert "AvgPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)" in text
    assert "GlobalMaxPool2d()" in text and "(None, 6)" in text


def test_matches_a_torch_twin(dtype, rng):
    """AvgPool2d(count_include_pad=False, ceil_mode=True), ReLU, GlobalMaxPool2d against PyTorch's modules
    (AdaptiveMaxPool2d(1) then Flatten): outputs and input gradient, float64 reference."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    x = rng.standard_normal((3, 4, 7, 6)).astype(dtype)
    layers = [AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), ReLU(), GlobalMaxPool2d()]
    twin = nn.Sequential(nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten())
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ty = twin(tx)
    y = chain.forward(layers, x)
    rtol = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}[dtype]
    assert_close(y, ty.detach().numpy(), dtype, rtol=rtol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    assert_close(chain.backward(layers, dy), tx.grad.numpy(), dtype, rtol=rtol)
    for layer in layers:
        layer.eval()
    assert_close(chain.forward(layers, x), ty.detach().numpy(), dtype, rtol=rtol)


def test_exported_names():
    assert "GlobalMaxPool2d" in fastcnn.layers.__all__
    assert fastcnn.serialize.LAYERS["GlobalMaxPool2d"] is GlobalMaxPool2d
    for name in ("global_max_pool2d_forward", "global_max_pool2d_backward", "global_max_pool2d_forward_kernel",
                 "global_max_pool2d_backward_kernel"):
        assert name in K.__all__ and callable(getattr(K, name))
