"""Eval-mode fusion (fastcnn.layers.fuse): the same outputs as the layers one by one, training untouched.

The oracle is the unfused eval forward: every layer's own ``forward`` in ``chain.run_order``, a residual block
as ``block(x) + shortcut(x)`` by plain numpy.  BatchNorm statistics and affine parameters are randomised so that
folding them into the weights is really exercised.
"""

import copy

import numpy as np
import pytest

import fastcnn
from fastcnn import models
from fastcnn.layers import (BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d,
                            ReLU, Residual, Sigmoid, chain, fuse)

from helpers import assert_close, randomise_norms


def layer_by_layer(layers, x):
    """The unfused forward (eval or training): each layer's own ``forward`` in run order, a Residual's paths
    likewise and their sum in plain numpy."""
    for i in chain.run_order(layers):
        layer = layers[i]
        if type(layer) is Residual:
            s = layer_by_layer(layer.shortcut, x) if layer.shortcut else x
            x = layer_by_layer(layer.block, x) + s
        else:
            x = layer.forward(x)
    return x


def small_zoo():
    return {
        "lenet5": models.lenet5(),
        "vgg_small": models.vgg_small(widths=(8, 16), fc_units=32, image_size=16),
        "resnet_small": models.resnet_small(widths=(8, 16), blocks_per_stage=2, image_size=16),
        "mobilenet_small": models.mobilenet_small(width=8, blocks=((16, 1), (16, 2)), image_size=16),
        "mlp_bn1d": fastcnn.Sequential(Flatten(), Linear(48, 32), BatchNorm1d(32), ReLU(), Dropout(0.3),
                                       Linear(32, 16, bias=False), BatchNorm1d(16, affine=False), Sigmoid(),
                                       Linear(16, 5), input_shape=(3, 4, 4)),
    }


@pytest.mark.parametrize("name", ["lenet5", "vgg_small", "resnet_small", "mobilenet_small", "mlp_bn1d"])
@pytest.mark.parametrize("batch", [1, 5])
def test_fused_eval_forward_matches_layer_by_layer(name, batch):
    rng = np.random.default_rng(0)
    model = randomise_norms(small_zoo()[name], rng).eval()
    x = rng.random((batch,) + model.input_shape, dtype=np.float32)
    x_before = x.copy()
    expected = layer_by_layer(model.layers, x)
    for got in (model.predict(x), model.forward(x), model.predict(x, batch_size=2)):
        assert got.dtype == np.float32
        assert_close(got, expected, np.float32, rtol=1e-5)
    np.testing.assert_array_equal(x, x_before)  # in-place steps never write to the caller's array


def test_fused_forward_in_float64_is_exact_to_rounding():
    rng = np.random.default_rng(1)
    f64 = np.float64
    model = fastcnn.Sequential(Conv2d(2, 4, 3, padding=1, bias=False, dtype=f64), BatchNorm2d(4, dtype=f64), ReLU(),
                               MaxPool2d(2), Flatten(), Linear(64, 3, dtype=f64), BatchNorm1d(3, dtype=f64),
                               input_shape=(2, 8, 8))
    randomise_norms(model, rng).eval()
    x = rng.standard_normal((3, 2, 8, 8))
    assert_close(model.predict(x), layer_by_layer(model.layers, x), np.float64, rtol=1e-12)


def test_steps_fold_batchnorm_and_take_the_relu_after_a_layer_or_block():
    lenet = [kind for kind, _ in fuse.steps(models.lenet5().layers)]
    # ReLU then MaxPool2d runs the pool first; a Linear takes the ReLU after it
    assert lenet == ["conv", "layer", "relu", "conv", "layer", "relu", "layer", "linear", "linear", "linear"]
    resnet = models.resnet_small(widths=(8,), blocks_per_stage=1)
    kinds = fuse.steps(resnet.layers)
    assert [kind for kind, _ in kinds] == ["conv", "residual", "layer", "linear"]
    conv, norm, relu = kinds[0][1]
    assert (type(conv), type(norm), type(relu)) == (Conv2d, BatchNorm2d, ReLU)
    block, relu = kinds[1][1]
    assert type(block) is Residual and type(relu) is ReLU
    assert [group for _, group in fuse.steps(block.block)] == [tuple(block.block[:3]), (block.block[3], block.block[4],
                                                                                       None)]
    assert fuse.steps(models.lenet5().layers)[-1][1][1:] == (None, None)


def test_subclasses_and_mismatched_norms_are_not_fused():
    class MyConv(Conv2d, register=False):
        pass

    layers = [MyConv(1, 2, 3), BatchNorm2d(2), Conv2d(2, 3, 3), BatchNorm2d(3)]
    assert [kind for kind, _ in fuse.steps(layers)] == ["layer", "layer", "conv"]
    assert fuse.steps([Conv2d(2, 3, 3), BatchNorm2d(2), ReLU()])[0][1][1:] == (None, None)  # 3 != 2 features


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias,affine", [(True, True), (False, True), (True, False), (False, False)])
def test_folded_weights_are_the_formula(dtype, bias, affine):
    rng = np.random.default_rng(2)
    for layer, norm in ((Conv2d(3, 4, 3, bias=bias, dtype=dtype), BatchNorm2d(4, eps=1e-3, affine=affine, dtype=dtype)),
                        (Linear(5, 4, bias=bias, dtype=dtype), BatchNorm1d(4, eps=1e-3, affine=affine, dtype=dtype))):
        randomise_norms(fastcnn.Sequential(layer, norm), rng)
        w, b = fuse.folded_weights(layer, norm)
        gamma = norm.weight.data if affine else 1.0
        beta = norm.bias.data if affine else 0.0
        scale = gamma / np.sqrt(norm.running_var.astype(np.float64) + 1e-3)
        b0 = layer.bias.data if bias else 0.0
        assert w.dtype == b.dtype == dtype and w.shape == layer.weight.shape
        assert_close(w, layer.weight.data * scale.reshape((-1,) + (1,) * (w.ndim - 1)), dtype)
        assert_close(b, (b0 - norm.running_mean) * scale + beta, dtype)
        same_w, same_b = fuse.folded_weights(layer, None)
        assert same_w is layer.weight.data and (same_b is None) is (not bias)


def test_weight_and_statistics_updates_after_a_call_are_seen():
    rng = np.random.default_rng(3)
    model = randomise_norms(models.vgg_small(widths=(8,), fc_units=16, image_size=8), rng).eval()
    x = rng.random((2, 3, 8, 8), dtype=np.float32)
    before = model.predict(x)
    conv, norm = model.layers[0], model.layers[1]
    conv.weight.data *= 2.0  # in place, as an optimizer step does
    norm.running_mean += 0.5  # in place, as loading a checkpoint does
    model.layers[-1].weight.data[:] = rng.normal(size=model.layers[-1].weight.shape)
    after = model.predict(x)
    assert not np.allclose(after, before)
    assert_close(after, layer_by_layer(model.layers, x), np.float32, rtol=1e-5)


def test_an_edited_layer_list_is_seen():
    rng = np.random.default_rng(4)
    model = fastcnn.Sequential(Flatten(), Linear(12, 4), ReLU(), Linear(4, 2), input_shape=(3, 2, 2)).eval()
    x = rng.random((3, 3, 2, 2), dtype=np.float32)
    model.predict(x)
    model.layers[2] = Sigmoid()
    model.layers.insert(3, BatchNorm1d(4))
    model.eval()
    assert_close(model.predict(x), layer_by_layer(model.layers, x), np.float32, rtol=1e-5)


def test_training_forward_and_backward_are_bit_for_bit_the_layers_own():
    rng = np.random.default_rng(5)
    model = randomise_norms(models.resnet_small(widths=(8, 16), blocks_per_stage=1, image_size=16), rng).train()
    twin = copy.deepcopy(model)
    x = rng.random((4, 3, 16, 16), dtype=np.float32)
    y = model.forward(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    model.backward(dy)
    # the unfused training path, written out: each layer's forward in run order, backward in reverse
    h = x
    for i in chain.run_order(twin.layers):
        h = twin.layers[i].forward(h)
    np.testing.assert_array_equal(y, h)
    d = dy
    for i in reversed(chain.run_order(twin.layers)):
        d = twin.layers[i].backward(d, need_input_grad=i != 0)
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)
    for (name, a), (_, b) in zip(sorted(model_buffers(model)), sorted(model_buffers(twin))):
        np.testing.assert_array_equal(a, b, err_msg=name)


def model_buffers(model):
    return [(f"{i}_{k}", v) for i, layer in enumerate(model.layers) for k, v in layer.buffers().items()]


def test_eval_forward_keeps_nothing_for_backward():
    model = models.lenet5().eval()
    model.predict(np.zeros((2, 1, 28, 28), np.float32))
    for layer in model.layers:
        assert all(getattr(layer, attr, None) is None for attr in ("_x", "_y", "_argmax", "_x_shape", "_shape"))
        with pytest.raises(RuntimeError):
            layer.backward(np.zeros((2, 10), np.float32))


def test_inputs_are_never_overwritten_and_outputs_never_alias_them():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    keep = x.copy()
    for layers in ([ReLU()], [Flatten(), ReLU()], [Dropout(0.5), ReLU(), Flatten()], [Flatten()],
                   [Residual([ReLU()]), ReLU()], [Residual([Dropout()]), ReLU()]):
        model = fastcnn.Sequential(*layers).eval()
        for out in (model.predict(x), model.forward(x)):
            np.testing.assert_array_equal(x, keep)
            assert_close(out, layer_by_layer(layers, keep.copy()), np.float32, rtol=0)
        assert not np.shares_memory(model.predict(x), x)


def test_residual_forward_in_eval_mode_is_fused_and_matches():
    rng = np.random.default_rng(7)
    block = Residual([Conv2d(4, 8, 3, stride=2, padding=1, bias=False), BatchNorm2d(8), ReLU(),
                      Conv2d(8, 8, 3, padding=1, bias=False), BatchNorm2d(8)],
                     shortcut=[Conv2d(4, 8, 1, stride=2, bias=False), BatchNorm2d(8)])
    randomise_norms(fastcnn.Sequential(block), rng).eval()
    x = rng.random((3, 4, 8, 8), dtype=np.float32)
    assert_close(block.forward(x), layer_by_layer([block], x), np.float32, rtol=1e-5)


def test_predict_runs_every_layer_in_eval_mode_and_restores_the_modes():
    rng = np.random.default_rng(8)
    model = randomise_norms(models.resnet_small(widths=(8,), blocks_per_stage=1, image_size=8), rng)
    x = rng.random((2, 3, 8, 8), dtype=np.float32)
    model.eval()
    expected = layer_by_layer(model.layers, x)
    inner_norm = model.layers[3].block[1]
    inner_norm.train()  # a stray training-mode layer: predict still runs it in eval mode
    stats = inner_norm.running_mean.copy()
    assert_close(model.predict(x), expected, np.float32, rtol=1e-5)
    np.testing.assert_array_equal(inner_norm.running_mean, stats)
    assert not inner_norm.training  # as before: predict leaves the model in eval mode throughout
    model.train()
    model.predict(x)
    assert all(layer.training for top in model.layers for layer in top.walk())


def test_a_partly_training_chain_runs_unfused():
    rng = np.random.default_rng(9)
    block = Residual([Conv2d(2, 2, 3, padding=1), BatchNorm2d(2)])
    block.eval()
    block.block[1].train()
    x = rng.random((4, 2, 5, 5), dtype=np.float32)
    twin = copy.deepcopy(block)
    out = block.forward(x)
    expected = twin.block[1].forward(twin.block[0].forward(x)) + x  # the norm in training mode
    assert_close(out, expected, np.float32, rtol=1e-5)
    np.testing.assert_array_equal(block.block[1].running_mean, twin.block[1].running_mean)


def test_small_batches_run_on_one_thread_with_the_same_result(monkeypatch):
    rng = np.random.default_rng(10)
    model = models.lenet5().eval()
    x = rng.random((1, 1, 28, 28), dtype=np.float32)
    assert fuse.multiply_adds(model.layers, (1, 28, 28)) < fuse.SERIAL_MAX_MACS
    threads = fastcnn.get_num_threads()
    seen = []
    real_run = fuse._run
    monkeypatch.setattr(fuse, "_run", lambda *args: (seen.append(fastcnn.get_num_threads()), real_run(*args))[1])
    serial = model.predict(x)
    assert seen == [1] and fastcnn.get_num_threads() == threads
    monkeypatch.setattr(fuse, "SERIAL_MAX_MACS", 0)
    assert_close(model.predict(x), serial, np.float32, rtol=1e-6)
    assert seen[-1] == threads


def test_multiply_adds_counts_nested_layers():
    block = Residual([Conv2d(4, 4, 3, padding=1, bias=False)], shortcut=[Conv2d(4, 4, 1, bias=False)])
    layers = [block, GlobalAvgPool2d(), Linear(4, 2)]
    assert fuse.multiply_adds(layers, (4, 5, 5)) == 4 * 25 * 36 + 4 * 25 * 4 + 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True])
def test_linear_forward_rows_kernel_against_float64(dtype, relu):
    rng = np.random.default_rng(11)
    for n, i, o in ((1, 1, 1), (1, 400, 120), (3, 17, 5), (0, 4, 2)):
        x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((n, i), (o, i), (o,)))
        y = np.full((n, o), np.nan, dtype)
        fastcnn.kernels.linear_forward_rows_kernel(x, w, b, y, relu)
        expected = x.astype(np.float64) @ w.T.astype(np.float64) + b
        assert_close(y, np.maximum(expected, 0) if relu else expected, dtype)


@pytest.mark.parametrize("batch", [fuse.ROWS_MAX_BATCH, fuse.ROWS_MAX_BATCH + 1])
def test_both_linear_paths_match_the_layer(batch):
    rng = np.random.default_rng(12)
    model = fastcnn.Sequential(Linear(30, 20), ReLU(), Linear(20, 7, bias=False), Linear(7, 16), ReLU()).eval()
    x = rng.standard_normal((batch, 30)).astype(np.float32)
    assert_close(model.predict(x), layer_by_layer(model.layers, x), np.float32, rtol=1e-5)
    with pytest.raises(ValueError, match="29 features"):
        fuse.run(model.layers, x[:, :29])


def test_in_place_relu_is_relu():
    x = np.array([-1.0, -0.0, 0.0, 2.0, np.nan, -np.inf, np.inf], np.float32)
    big = np.resize(x, fuse.PARALLEL_MIN_ELEMENTS + 3)
    for a in (x, big):
        expected = fastcnn.kernels.relu_forward(a)
        got = a.copy()
        assert fuse.relu_(got) is got
        np.testing.assert_array_equal(got, expected)  # -0.0 may come out as 0.0: equal values


# --------------------------------------------------------------------------- training: BatchNorm + ReLU in one pass

def unfused_backward(layers, d):
    """The reverse of :func:`layer_by_layer`: every layer's own ``backward`` (input gradients throughout)."""
    for i in reversed(chain.run_order(layers)):
        layer = layers[i]
        if type(layer) is Residual:
            side = unfused_backward(layer.shortcut, d) if layer.shortcut else d
            d = unfused_backward(layer.block, d) + side
        else:
            d = layer.backward(d)
    return d


def float64_bn_net():
    f64 = np.float64
    return fastcnn.Sequential(
        Conv2d(2, 4, 3, padding=1, bias=False, dtype=f64), BatchNorm2d(4, dtype=f64), ReLU(),
        Residual([Conv2d(4, 4, 3, padding=1, dtype=f64), BatchNorm2d(4, dtype=f64), ReLU(),
                  Conv2d(4, 4, 3, padding=1, dtype=f64), BatchNorm2d(4, affine=False, dtype=f64)]), ReLU(),
        MaxPool2d(2), Flatten(), Linear(36, 5, dtype=f64), BatchNorm1d(5, dtype=f64), ReLU(), Linear(5, 3, dtype=f64),
        input_shape=(2, 6, 6))


def norms(model):
    return [layer for top in model.layers for layer in top.walk() if isinstance(layer, (BatchNorm1d, BatchNorm2d))]


@pytest.mark.parametrize("name", ["vgg_small", "resnet_small", "mobilenet_small", "mlp_bn1d", "float64"])
def test_training_batchnorm_relu_pairs_run_as_one_pass_with_the_same_bits(name):
    rng = np.random.default_rng(7)
    model = randomise_norms(float64_bn_net() if name == "float64" else small_zoo()[name], rng).train()
    dtype = model.dtype
    twin = copy.deepcopy(model)
    x = rng.random((6,) + model.input_shape).astype(dtype)
    x[0, 0, 0] = np.nan  # NaN follows the ReLU's rules through the fused pass too
    y = model.forward(x)
    assert any(norm.relu_fused for norm in norms(model))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = model.backward(dy, input_grad=True)
    y_ref = layer_by_layer(twin.layers, x)
    assert not any(norm.relu_fused for norm in norms(twin))
    dx_ref = unfused_backward(twin.layers, dy)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)
    for (key, a), (_, b) in zip(sorted(model_buffers(model)), sorted(model_buffers(twin))):
        np.testing.assert_array_equal(a, b, err_msg=key)


def test_fused_relu_pairs_only_adjacent_exact_classes_in_run_order():
    class MyReLU(ReLU):
        pass

    class MyNorm(BatchNorm2d):
        pass

    layers = [BatchNorm2d(2), ReLU(), BatchNorm2d(2), MyReLU(), BatchNorm2d(2), MaxPool2d(2), ReLU(),
              BatchNorm2d(2), ReLU(), MaxPool2d(2), BatchNorm1d(2), ReLU(), MyNorm(2), ReLU(),
              Residual(Conv2d(2, 2, 1)), ReLU(), Conv2d(2, 2, 1), ReLU()]
    order = chain.run_order(layers)
    assert sorted(order[j] for j in chain.fused_relu(layers, order)) == [0, 10, 14]


def test_a_fused_relu_keeps_nothing_and_an_eval_norm_is_not_fused():
    rng = np.random.default_rng(3)
    model = fastcnn.Sequential(Conv2d(2, 4, 3, padding=1), BatchNorm2d(4), ReLU(), input_shape=(2, 5, 5))
    x = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    model.layers[2].forward(np.ones((3, 4, 5, 5), np.float32))  # an earlier call of the ReLU on its own
    model.forward(x)
    assert model.layers[1].relu_fused and model.layers[2]._x is None
    model.layers[1].eval()  # a partly training chain: the norm in eval mode runs on its own
    y = model.forward(x)
    assert not model.layers[1].relu_fused and model.layers[2]._x is not None
    assert y.min() >= 0
