"""Residual: forward/backward against the paths run by hand, gradient checks, shapes, modes, save/load."""

import numpy as np
import pytest

from helpers import check_layer_grads

import fastcnn
from fastcnn.layers import (
    AvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    ReLU,
    Residual,
    Tanh,
)

F64 = np.float64


def _identity_block(c=3, dtype=F64):
    return Residual([Conv2d(c, c, 3, padding=1, dtype=dtype), Tanh(), Conv2d(c, c, 3, padding=1, dtype=dtype)])


def _projection_block(dtype=F64):
    return Residual(fastcnn.Sequential(Conv2d(2, 4, 3, stride=2, padding=1, dtype=dtype), Tanh(),
                                       Conv2d(4, 4, 3, padding=1, dtype=dtype)),
                    shortcut=Conv2d(2, 4, 1, stride=2, bias=False, dtype=dtype))


def test_forward_is_block_plus_shortcut(rng):
    fastcnn.manual_seed(0)
    res = _projection_block()
    x = rng.standard_normal((2, 2, 6, 6))
    h = x
    for layer in res.block:
        h = layer.forward(h)
    expected = h + res.shortcut[0].forward(x)
    np.testing.assert_allclose(res.forward(x), expected, rtol=1e-12)
    ident = _identity_block()
    h = x3 = rng.standard_normal((2, 3, 5, 5))
    for layer in ident.block:
        h = layer.forward(h)
    np.testing.assert_allclose(ident.forward(x3), h + x3, rtol=1e-12)


@pytest.mark.parametrize("make,shape", [(_identity_block, (2, 3, 4, 4)), (_projection_block, (2, 2, 5, 5))])
def test_gradcheck(make, shape, rng):
    fastcnn.manual_seed(1)
    check_layer_grads(make(), rng.standard_normal(shape), rng)


def test_backward_sums_the_two_paths(rng):
    fastcnn.manual_seed(2)
    res = _projection_block()
    x = rng.standard_normal((2, 2, 6, 6))
    dy = rng.standard_normal(res.forward(x).shape)
    dx = res.backward(dy)
    d = dy
    for layer in reversed(res.block):
        d = layer.backward(d)
    np.testing.assert_allclose(dx, d + res.shortcut[0].backward(dy), rtol=1e-12)


def test_parameters_order_and_modes():
    fastcnn.manual_seed(0)
    res = _projection_block()
    b0, b1, s0 = res.block[0], res.block[2], res.shortcut[0]
    expected = [b0.weight, b0.bias, b1.weight, b1.bias, s0.weight]
    assert [id(p) for p in res.parameters()] == [id(p) for p in expected]
    drop = Dropout(0.5)
    res2 = Residual([Conv2d(2, 2, 1), drop])
    model = fastcnn.Sequential(res2, ReLU())
    model.eval()
    assert not res2.training and not drop.training and not res2.block[0].training
    model.train()
    assert res2.training and drop.training


def test_output_shape_mismatch_message():
    res = Residual([Conv2d(3, 4, 3, padding=1)])
    with pytest.raises(ValueError, match=r"block maps \(3, 8, 8\) to \(4, 8, 8\) but the identity shortcut gives "
                                         r"\(3, 8, 8\).*projection shortcut"):
        res.output_shape((3, 8, 8))
    with pytest.raises(ValueError, match="cannot pass layer 0"):
        fastcnn.Sequential(res, input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="block maps"):
        res.forward(np.zeros((1, 3, 8, 8), np.float32))
    assert _projection_block().output_shape((2, 7, 7)) == (4, 4, 4)


def test_constructor_errors():
    with pytest.raises(TypeError, match="block"):
        Residual([])
    with pytest.raises(TypeError, match=r"block\[1\] must be a fastcnn Layer"):
        Residual([ReLU(), "relu"])
    with pytest.raises(ValueError, match="one dtype"):
        Residual([Conv2d(2, 2, 1)], shortcut=Conv2d(2, 2, 1, dtype=F64))


def _record_need_input_grad(layer, calls):
    """Wrap ``layer.backward`` (on the instance) to record the ``need_input_grad`` it is called with."""
    original = layer.backward

    def backward(dy, need_input_grad=True):
        calls.append(need_input_grad)
        return original(dy, need_input_grad)

    layer.backward = backward


def test_in_sequential_training_first_layer_and_summary(rng):
    """As the model's first layer with parameters, the block is told not to compute its input gradient:
    both paths' first convolutions skip dx, and every parameter gradient is the one of a full backward."""
    fastcnn.manual_seed(3)
    res = _projection_block(np.float32)
    model = fastcnn.Sequential(res, ReLU(), GlobalAvgPool2d(), Linear(4, 2), input_shape=(2, 6, 6))
    x = rng.random((16, 2, 6, 6), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(int)
    before = [p.data.copy() for p in model.parameters()]
    model.fit(x, y, epochs=1, batch_size=8, verbose=False, seed=0)
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))

    dy = rng.random((16, 2), dtype=np.float32)
    for p in model.parameters():
        p.grad[...] = 0
    model.forward(x)
    dx = model.backward(dy, input_grad=True)
    full = [p.grad.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad[...] = 0
    calls = {0: [], 2: [], "s": []}
    _record_need_input_grad(res.block[0], calls[0])
    _record_need_input_grad(res.block[2], calls[2])
    _record_need_input_grad(res.shortcut[0], calls["s"])
    model.forward(x)
    assert dx.shape == x.shape and model.backward(dy) is None
    assert calls == {0: [False], 2: [True], "s": [False]}
    for p, g in zip(model.parameters(), full):
        np.testing.assert_array_equal(p.grad, g)

    text = model.summary(print_fn=None)
    lines = text.splitlines()
    n = sum(p.size for p in res.parameters())
    row = next(line for line in lines if line.startswith("Residual "))
    assert "(None, 4, 3, 3)" in row and row.endswith(f"{n:,}")
    i = lines.index(row)
    assert lines[i + 1].strip() == "block:"
    assert lines[i + 2].startswith("    Conv2d(2, 4, kernel_size=3, stride=(2, 2), padding=(1, 1))")
    assert lines[i + 2].split()[-1] == f"{2 * 4 * 9 + 4:,}"
    assert lines[i + 3].startswith("    Tanh()") and "(None, 4, 3, 3)" in lines[i + 3]
    assert lines[i + 5].strip() == "shortcut:"
    assert lines[i + 6].startswith("    Conv2d(2, 4, kernel_size=1, stride=(2, 2), bias=False)")
    assert lines[i + 7].startswith("ReLU()")


def test_a_block_after_a_layer_with_parameters_computes_its_input_gradient(rng):
    fastcnn.manual_seed(6)
    res = _identity_block(2)
    model = fastcnn.Sequential(Conv2d(1, 2, 3, padding=1, dtype=F64), res, Flatten(), Linear(2 * 16, 3, dtype=F64))
    calls = []
    _record_need_input_grad(res.block[0], calls)
    model.forward(rng.standard_normal((2, 1, 4, 4)))
    assert model.backward(rng.standard_normal((2, 3))) is None
    assert calls == [True]
    assert "shortcut: identity" in model.summary(input_shape=(1, 4, 4), print_fn=None)


def test_relu_then_maxpool_inside_a_block_runs_pooled_first(rng):
    """Inside a block, as in a Sequential, MaxPool2d runs before the ReLU that precedes it; results are unchanged."""
    from fastcnn.layers import MaxPool2d, chain

    fastcnn.manual_seed(7)
    res = Residual([Conv2d(2, 3, 3, padding=1, dtype=F64), ReLU(), MaxPool2d(2)],
                   shortcut=[Conv2d(2, 3, 1, stride=2, dtype=F64)])
    assert chain.run_order(res.block) == [0, 2, 1]
    x = rng.standard_normal((2, 2, 6, 6))
    out = res.forward(x)
    h = x
    for layer in res.block:  # the written order, one by one (the layers keep the last forward's cache)
        h = layer.forward(h)
    np.testing.assert_array_equal(out, h + res.shortcut[0].forward(x))
    res.forward(x)
    dy = rng.standard_normal(out.shape)
    dx = res.backward(dy)
    grads = [p.grad.copy() for p in res.parameters()]
    for p in res.parameters():
        p.grad[...] = 0
    h = x
    for layer in res.block:
        h = layer.forward(h)
    res.shortcut[0].forward(x)
    d = dy
    for layer in reversed(res.block):
        d = layer.backward(d)
    np.testing.assert_array_equal(dx, d + res.shortcut[0].backward(dy))
    for p, g in zip(res.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)


def test_save_load_nested_config(tmp_path, rng):
    fastcnn.manual_seed(4)
    model = fastcnn.Sequential(
        Conv2d(1, 2, 3, padding=1), ReLU(),
        Residual([Conv2d(2, 2, 3, padding=1), ReLU(), Conv2d(2, 2, 3, padding=1)]), ReLU(),
        _projection_block(np.float32), ReLU(), AvgPool2d(2), Flatten(), Linear(16, 3),
        input_shape=(1, 8, 8),
    )
    cfg = model.get_config()
    entry = cfg["layers"][4]
    assert entry["class"] == "Residual"
    assert [e["class"] for e in entry["config"]["block"]] == ["Conv2d", "Tanh", "Conv2d"]
    assert entry["config"]["shortcut"][0]["config"]["bias"] is False
    assert cfg["layers"][2]["config"]["shortcut"] is None
    model.save(tmp_path / "res.npz")
    same = fastcnn.load(tmp_path / "res.npz")
    assert repr(same.layers[4]) == repr(model.layers[4])
    x = rng.random((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(same.predict(x), model.predict(x))


def test_save_refuses_unknown_inner_layer(tmp_path):
    class Mystery(ReLU):
        pass

    model = fastcnn.Sequential(Residual([Conv2d(1, 1, 1), Mystery()]))
    with pytest.raises(ValueError, match="layer 0, inner layer 1 .* which checkpoints cannot hold"):
        model.save(tmp_path / "x.npz")


def test_inner_batchnorm_buffers_are_saved(tmp_path, rng):
    BatchNorm2d = getattr(fastcnn.layers, "BatchNorm2d", None)
    if BatchNorm2d is None:
        pytest.skip("no BatchNorm2d in this build")
    fastcnn.manual_seed(5)
    res = Residual([Conv2d(2, 4, 3, stride=2, padding=1, bias=False), BatchNorm2d(4), ReLU(),
                    Conv2d(4, 4, 3, padding=1, bias=False), BatchNorm2d(4)],
                   shortcut=[Conv2d(2, 4, 1, stride=2, bias=False), BatchNorm2d(4)])
    model = fastcnn.Sequential(res, ReLU(), GlobalAvgPool2d(), Linear(4, 2), input_shape=(2, 6, 6))
    model.forward(rng.random((8, 2, 6, 6), dtype=np.float32))  # moves the running statistics
    assert sorted(res.buffers()) == ["block1_running_mean", "block1_running_var", "block4_running_mean",
                                     "block4_running_var", "shortcut1_running_mean", "shortcut1_running_var"]
    model.save(tmp_path / "bn.npz")
    same = fastcnn.load(tmp_path / "bn.npz")
    for name, buf in res.buffers().items():
        np.testing.assert_array_equal(same.layers[0].buffers()[name], buf, err_msg=name)
    x = rng.random((3, 2, 6, 6), dtype=np.float32)
    np.testing.assert_array_equal(same.predict(x), model.predict(x))
