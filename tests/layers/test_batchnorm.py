"""BatchNorm2d / BatchNorm1d: kernels, layers, PyTorch agreement and checkpoints.

Gradient checks are float64 central differences of ``L = sum(y * R)`` for a
fixed random ``R``: helpers.check_layer_grads for the layers, helpers.check_grad for the kernels.
"""

import json

import numpy as np
import pytest

import fastcnn
from fastcnn import kernels as K
from fastcnn import serialize
from fastcnn.layers import BatchNorm1d, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, ReLU
from helpers import check_grad, check_layer_grads, checkpoint_header, rewrite_checkpoint

F64 = np.float64


# --------------------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("cls,shape", [
    pytest.param(BatchNorm2d, (3, 2, 3, 2), id="2d"),
    pytest.param(BatchNorm2d, (1, 3, 2, 3), id="2d-batch1"),
    pytest.param(BatchNorm1d, (5, 3), id="1d-NC"),
    pytest.param(BatchNorm1d, (2, 2, 4), id="1d-NCL"),
])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_layer_gradcheck_train(cls, shape, affine, one_thread):
    rng = np.random.default_rng(5)
    layer = cls(shape[1], affine=affine, dtype=F64)
    if affine:
        layer.weight.data[...] = rng.uniform(0.5, 2.0, shape[1])
        layer.bias.data[...] = rng.standard_normal(shape[1])
    assert len(layer.parameters()) == (2 if affine else 0)
    check_layer_grads(layer, rng.standard_normal(shape) * 2 + 1, rng, rtol=1e-5)


@pytest.mark.parametrize("fwd,bwd,shape", [
    pytest.param(K.batch_norm2d_forward, K.batch_norm2d_backward, (2, 3, 2, 2), id="2d"),
    pytest.param(K.batch_norm1d_forward, K.batch_norm1d_backward, (4, 3), id="1d"),
])
def test_kernel_gradcheck_eval(fwd, bwd, shape, one_thread):
    rng = np.random.default_rng(6)
    C = shape[1]
    x = rng.standard_normal(shape)
    w, b = rng.uniform(0.5, 2.0, C), rng.standard_normal(C)
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    y, mean, inv_std = fwd(x, w, b, rm, rv, training=False)
    R = rng.standard_normal(y.shape)
    dx, dw, db = bwd(R, x, w, mean, inv_std, training=False)

    def loss():
        return float(np.sum(fwd(x, w, b, rm, rv, training=False)[0] * R))

    for got, arr, name in ((dx, x, "dx"), (dw, w, "dweight"), (db, b, "dbias")):
        check_grad(got, loss, arr, name, rtol=1e-6, atol=1e-8)


def test_kernel_gradcheck_train_matches_formula(one_thread):
    """The training backward kernel, called directly, against central differences."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 2, 3))
    w, b = rng.uniform(0.5, 2.0, 2), rng.standard_normal(2)
    y, mean, inv_std = K.batch_norm2d_forward(x, w, b, None, None)
    R = rng.standard_normal(y.shape)
    dx, dw, db = K.batch_norm2d_backward(R, x, w, mean, inv_std)

    def loss():
        return float(np.sum(K.batch_norm2d_forward(x, w, b, None, None)[0] * R))

    for got, arr, name in ((dx, x, "dx"), (dw, w, "dweight"), (db, b, "dbias")):
        check_grad(got, loss, arr, name, rtol=1e-5, atol=1e-8)


# --------------------------------------------------------------------------- semantics and dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_statistics_and_running_update(dtype):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((4, 3, 5, 6)) * 3 + 2).astype(dtype)
    layer = BatchNorm2d(3, momentum=0.25, dtype=dtype)
    y = layer.forward(x)
    assert y.dtype == dtype and layer.running_mean.dtype == dtype and layer.running_var.dtype == dtype
    x64 = x.astype(F64)
    mean, var = x64.mean((0, 2, 3)), x64.var((0, 2, 3))
    M = 4 * 5 * 6
    ref = (x64 - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(layer.running_mean, 0.25 * mean, rtol=rtol)
    np.testing.assert_allclose(layer.running_var, 0.75 + 0.25 * var * M / (M - 1), rtol=rtol)
    # eval: running statistics, no update
    before = layer.running_mean.copy(), layer.running_var.copy()
    layer.eval()
    y_eval = layer.forward(x)
    assert y_eval.dtype == dtype
    np.testing.assert_array_equal(layer.running_mean, before[0])
    ref_eval = (x64 - before[0][None, :, None, None]) / np.sqrt(before[1][None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y_eval, ref_eval, rtol=rtol, atol=rtol)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(y_eval)


def test_float32_large_offset_is_accurate():
    """Two-level two-pass sums keep float32 statistics accurate for a large mean and many values."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((16, 2, 32, 32)) + np.array([1000.0, -3.0])[None, :, None, None]).astype(np.float32)
    y, mean, inv_std = K.batch_norm2d_forward(x, None, None, None, None)
    assert y.dtype == mean.dtype == inv_std.dtype == np.float32
    x64 = x.astype(F64)
    np.testing.assert_allclose(mean, x64.mean((0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(1 / inv_std**2 - 1e-5, x64.var((0, 2, 3)), rtol=1e-3)
    np.testing.assert_allclose(y.mean((0, 2, 3)), 0, atol=1e-3)


def test_float32_kernels_never_promote():
    x = np.ones((2, 2, 3), np.float32)
    x[0] = 3
    for out in K.batch_norm1d_forward(x, None, None, np.zeros(2, np.float32), np.ones(2, np.float32)):
        assert out.dtype == np.float32
    y, mean, inv_std = K.batch_norm1d_forward(x, None, None, None, None)
    for out in K.batch_norm1d_backward(y, x, None, mean, inv_std):
        assert out.dtype == np.float32


def test_layer_converts_input_to_its_dtype():
    layer = BatchNorm1d(2)
    y = layer.forward(np.array([[1, 2], [3, 5]]))  # int input
    assert y.dtype == np.float32
    assert layer.backward(np.ones((2, 2))).dtype == np.float32


# --------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,shape", [("2d", (4, 3, 5, 4)), ("1d", (6, 4)), ("1d", (3, 2, 5))])
def test_matches_torch_three_steps_then_eval(kind, shape, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(10)
    C = shape[1]
    fwd = K.batch_norm2d_forward if kind == "2d" else K.batch_norm1d_forward
    bwd = K.batch_norm2d_backward if kind == "2d" else K.batch_norm1d_backward
    w = rng.uniform(0.5, 2.0, C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    trm, trv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    for step in range(3):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        tx = torch.tensor(x.astype(F64), requires_grad=True)
        tw = torch.tensor(w.astype(F64), requires_grad=True)
        tb = torch.tensor(b.astype(F64), requires_grad=True)
        ty = F.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.3, eps=1e-3)
        ty.backward(torch.tensor(dy.astype(F64)))
        y, mean, inv_std = fwd(x, w, b, rm, rv, training=True, momentum=0.3, eps=1e-3)
        assert y.dtype == dtype and rm.dtype == dtype
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=rtol, err_msg=f"y step {step}")
        np.testing.assert_allclose(rm, trm.numpy(), rtol=rtol, atol=rtol, err_msg=f"running_mean step {step}")
        np.testing.assert_allclose(rv, trv.numpy(), rtol=rtol, atol=rtol, err_msg=f"running_var step {step}")
        dx, dw, db = bwd(dy, x, w, mean, inv_std)
        assert dx.dtype == dw.dtype == db.dtype == dtype
        scale = max(1.0, float(tx.grad.abs().max()))
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=rtol, atol=rtol * scale, err_msg="dx")
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=rtol, atol=rtol * 10, err_msg="dweight")
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=rtol, atol=rtol * 10, err_msg="dbias")
    # eval mode with the running statistics, gradients included
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    tx = torch.tensor(x.astype(F64), requires_grad=True)
    tw = torch.tensor(w.astype(F64), requires_grad=True)
    tb = torch.tensor(b.astype(F64), requires_grad=True)
    ty = F.batch_norm(tx, trm, trv, tw, tb, training=False, momentum=0.3, eps=1e-3)
    ty.backward(torch.tensor(dy.astype(F64)))
    y, mean, inv_std = fwd(x, w, b, rm, rv, training=False, momentum=0.3, eps=1e-3)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=rtol, err_msg="eval y")
    dx, dw, db = bwd(dy, x, w, mean, inv_std, training=False)
    for got, t, name in ((dx, tx, "dx"), (dw, tw, "dweight"), (db, tb, "dbias")):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=rtol, atol=rtol * 10, err_msg=f"eval {name}")


def test_layer_matches_torch_module():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    ours = BatchNorm2d(3, momentum=0.2, eps=1e-4)
    theirs = torch.nn.BatchNorm2d(3, momentum=0.2, eps=1e-4)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 2
        np.testing.assert_allclose(ours.forward(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5, atol=1e-6)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(ours.forward(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- layer API


def test_layer_api():
    layer = BatchNorm2d(4)
    assert repr(layer) == "BatchNorm2d(4)"
    assert repr(BatchNorm1d(3, eps=1e-3, momentum=0.5, affine=False, dtype=F64)) == (
        "BatchNorm1d(3, eps=0.001, momentum=0.5, affine=False, dtype='float64')")
    assert layer.get_config() == {"num_features": 4, "eps": 1e-5, "momentum": 0.1, "affine": True,
                                  "dtype": "float32"}
    assert repr(BatchNorm2d(**layer.get_config())) == repr(layer)
    np.testing.assert_array_equal(layer.weight.data, np.ones(4, np.float32))
    np.testing.assert_array_equal(layer.bias.data, np.zeros(4, np.float32))
    assert [p is q for p, q in zip(layer.parameters(), [layer.weight, layer.bias])] == [True, True]
    bufs = layer.buffers()
    assert set(bufs) == {"running_mean", "running_var"} and bufs["running_mean"] is layer.running_mean
    np.testing.assert_array_equal(layer.running_var, np.ones(4, np.float32))
    assert layer.output_shape((4, 7, 5)) == (4, 7, 5)
    assert BatchNorm1d(4).output_shape((4,)) == (4,)
    assert BatchNorm1d(4).output_shape((4, 9)) == (4, 9)
    assert BatchNorm1d(3, affine=False).parameters() == []


@pytest.mark.parametrize("make,call,exc,match", [
    (lambda: BatchNorm2d(3), lambda l: l.forward(np.zeros((2, 4, 3, 3), np.float32)), ValueError,
     r"BatchNorm2d\(3\): input has 4 channels but the layer expects num_features=3"),
    (lambda: BatchNorm2d(3), lambda l: l.forward(np.zeros((2, 3), np.float32)), ValueError,
     r"BatchNorm2d\(3\): input must be 4-D \(N, C, H, W\), got shape \(2, 3\)"),
    (lambda: BatchNorm1d(5), lambda l: l.forward(np.zeros((2, 4), np.float32)), ValueError,
     r"BatchNorm1d\(5\): input has 4 channels but the layer expects num_features=5"),
    (lambda: BatchNorm1d(5), lambda l: l.output_shape((6,)), ValueError, "expects num_features=5"),
    (lambda: BatchNorm2d(5), lambda l: l.output_shape((5, 3)), ValueError, "must be 4-D"),
    (lambda: BatchNorm1d(2), lambda l: l.forward(np.zeros((1, 2), np.float32)), ValueError,
     "more than 1 value per channel"),
    (lambda: BatchNorm1d(2), lambda l: l.forward(np.array([["a", "b"]])), TypeError, "numeric array"),
    (lambda: BatchNorm1d(2), lambda l: l.backward(np.zeros((2, 2))), RuntimeError, "without a training-mode"),
])
def test_layer_bad_inputs(make, call, exc, match):
    with pytest.raises(exc, match=match):
        call(make())


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_features=0), "num_features must be a positive int"),
    (dict(num_features=3, eps=0), "eps must be positive"),
    (dict(num_features=3, momentum=1.5), r"momentum must be in \[0, 1\]"),
    (dict(num_features=3, momentum=None), "momentum must be a finite real"),
    (dict(num_features=3, affine="yes"), "affine must be True or False"),
])
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchNorm2d(**kwargs)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        BatchNorm1d(3, dtype=np.int32)


def test_kernel_bad_inputs():
    x = np.zeros((2, 3, 2, 2), np.float32)
    good = dict(weight=None, bias=None, running_mean=None, running_var=None)
    with pytest.raises(ValueError, match=r"batch_norm2d_forward: weight has 2 entries but the input has 3 channels"):
        K.batch_norm2d_forward(x, np.ones(2, np.float32), None, None, None)
    with pytest.raises(TypeError, match=r"batch_norm2d_forward: bias has dtype float64 but the input is float32"):
        K.batch_norm2d_forward(x, None, np.zeros(3), None, None)
    with pytest.raises(ValueError, match="batch_norm2d_forward: x must have 4 dimensions"):
        K.batch_norm2d_forward(x[0], **good)
    with pytest.raises(ValueError, match="batch_norm1d_forward: x must have 2 or 3 dimensions"):
        K.batch_norm1d_forward(x, **good)
    with pytest.raises(ValueError, match="eval mode .* needs running_mean and running_var"):
        K.batch_norm2d_forward(x, training=False, **good)
    with pytest.raises(TypeError, match="running_mean must be a C-contiguous numpy array"):
        K.batch_norm2d_forward(x, None, None, np.zeros(6, np.float32)[::2], None)
    with pytest.raises(ValueError, match="momentum must be in"):
        K.batch_norm2d_forward(x, momentum=-0.1, **good)
    with pytest.raises(ValueError, match="x must not be empty"):
        K.batch_norm2d_forward(np.zeros((0, 3, 2, 2), np.float32), **good)
    y, mean, inv_std = K.batch_norm2d_forward(x + np.arange(2, dtype=np.float32)[:, None, None, None], **good)
    with pytest.raises(ValueError, match=r"batch_norm2d_backward: dy must have shape \(2, 3, 2, 2\)"):
        K.batch_norm2d_backward(y[:1], x, None, mean, inv_std)
    with pytest.raises(ValueError, match="inv_std has 2 entries"):
        K.batch_norm2d_backward(y, x, None, mean, inv_std[:2])


@pytest.mark.parametrize("backward,shape", [(K.batch_norm2d_backward, (4, 3, 5, 7)), (K.batch_norm1d_backward, (9, 3)),
                                            (K.batch_norm1d_backward, (4, 3, 17))])
@pytest.mark.parametrize("dtype", [np.float32, F64])
@pytest.mark.parametrize("training", [True, False])
def test_relu_in_the_same_pass_gives_the_bits_of_relu_after(backward, shape, dtype, training):
    """``relu=True`` / ``relu_y``: the bits of batch_norm_training_forward then relu_forward, and of
    relu_backward then the norm's backward (NaN, zeros and negative zeros included)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[0], x.flat[5] = np.nan, np.inf
    w, b = rng.standard_normal(3).astype(dtype), rng.standard_normal(3).astype(dtype)
    w[1] = 0  # a channel whose output is all zero (or -0): nothing may pass the mask there
    y, mean, var, inv_std = K.batch_norm_training_forward(x, w, b)
    y_relu, *stats = K.batch_norm_training_forward(x, w, b, relu=True)
    np.testing.assert_array_equal(y_relu, K.relu_forward(y))
    for got, want in zip(stats, (mean, var, inv_std)):
        np.testing.assert_array_equal(got, want)
    assert (np.signbit(y_relu) == np.signbit(K.relu_forward(y))).all()
    dy = rng.standard_normal(shape).astype(dtype)
    want = backward(K.relu_backward(dy, y), x, w, mean, inv_std, training=training)
    got = backward(dy, x, w, mean, inv_std, training=training, relu_y=y_relu)
    for g, e in zip(got, want):
        np.testing.assert_array_equal(g, e)


def test_relu_arguments_are_checked():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    with pytest.raises(TypeError, match="batch_norm_training_forward: relu must be True or False"):
        K.batch_norm_training_forward(x, None, None, relu="yes")
    y, mean, _, inv_std = K.batch_norm_training_forward(x, None, None, relu=True)
    with pytest.raises(ValueError, match=r"batch_norm2d_backward: relu_y must have shape \(2, 3, 2, 2\)"):
        K.batch_norm2d_backward(y, x, None, mean, inv_std, relu_y=y[:1])
    with pytest.raises(TypeError, match="batch_norm2d_backward: relu_y has dtype float64"):
        K.batch_norm2d_backward(y, x, None, mean, inv_std, relu_y=y.astype(F64))


# --------------------------------------------------------------------------- checkpoints and models


def bn_model(dtype=np.float32):
    fastcnn.manual_seed(3)
    return fastcnn.Sequential(
        Conv2d(1, 4, 3, padding=1, dtype=dtype), BatchNorm2d(4, momentum=0.3, dtype=dtype), ReLU(),
        GlobalAvgPool2d(), Flatten(), Linear(4, 5, dtype=dtype), BatchNorm1d(5, affine=False, dtype=dtype),
        input_shape=(1, 6, 6))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_keeps_running_stats(tmp_path, dtype):
    rng = np.random.default_rng(12)
    model = bn_model(dtype)
    x = rng.standard_normal((8, 1, 6, 6)).astype(dtype)
    model.fit(x, rng.integers(0, 5, 8), epochs=2, batch_size=4, verbose=False, seed=0)
    bn = model.layers[1]
    assert not np.allclose(bn.running_mean, 0) and not np.allclose(bn.running_var, 1)
    path = tmp_path / "bn.npz"
    model.save(path)
    with np.load(path) as npz:
        assert {"buffer_1_running_mean", "buffer_1_running_var",
                "buffer_6_running_mean", "buffer_6_running_var"} <= set(npz.files)
    same = fastcnn.load(path)
    for i in (1, 6):
        for name, buf in model.layers[i].buffers().items():
            np.testing.assert_array_equal(same.layers[i].buffers()[name], buf, err_msg=f"layer {i} {name}")
            assert same.layers[i].buffers()[name].dtype == dtype
    x_test = rng.standard_normal((3, 1, 6, 6)).astype(dtype)
    np.testing.assert_array_equal(same.predict(x_test), model.predict(x_test))
    assert repr(same) == repr(model)


def test_checkpoint_without_buffers_still_loads(tmp_path):
    """A file written before buffers were saved (no ``buffers`` in its header) loads with fresh statistics."""
    model = bn_model()
    model.forward(np.random.default_rng(0).standard_normal((4, 1, 6, 6)).astype(np.float32))
    path = tmp_path / "old.npz"
    model.save(path)
    keys = ["buffer_1_running_mean", "buffer_1_running_var", "buffer_6_running_mean", "buffer_6_running_var"]
    header = checkpoint_header(path)
    header.pop("buffers")
    rewrite_checkpoint(path, config=np.array(json.dumps(header)), **dict.fromkeys(keys))
    same = fastcnn.load(path)
    np.testing.assert_array_equal(same.layers[1].running_mean, np.zeros(4, np.float32))
    np.testing.assert_array_equal(same.layers[1].running_var, np.ones(4, np.float32))


def test_missing_or_wrong_buffer_is_reported(tmp_path):
    model = bn_model()
    path = tmp_path / "bad.npz"
    model.save(path)
    rewrite_checkpoint(path, buffer_1_running_var=None)
    with pytest.raises(ValueError, match="buffer_1_running_var .* is missing"):
        fastcnn.load(path)
    model.save(path)
    rewrite_checkpoint(path, buffer_6_running_mean=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"buffer_6_running_mean is float32\[3\]"):
        fastcnn.load(path)


def test_registered_and_exported():
    for name in ("BatchNorm2d", "BatchNorm1d"):
        assert serialize.LAYERS[name] is getattr(fastcnn.layers, name)
        assert name in fastcnn.layers.__all__
    for name in ("batch_norm2d_forward", "batch_norm2d_backward", "batch_norm1d_forward", "batch_norm1d_backward",
                 "batch_norm_forward_train_kernel", "batch_norm_forward_eval_kernel", "batch_norm_backward_kernel"):
        assert name in K.__all__ and callable(getattr(K, name))


def test_model_trains_with_batchnorm():
    """A few SGD steps on a separable problem reduce the loss; summary counts BatchNorm's parameters."""
    rng = np.random.default_rng(13)
    fastcnn.manual_seed(4)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = fastcnn.Sequential(Linear(6, 8), BatchNorm1d(8), ReLU(), Linear(8, 2), input_shape=(6,))
    opt = fastcnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(15):
        model.train()
        logits = model.forward(x)
        loss, d = K.softmax_cross_entropy(logits, y)
        losses.append(loss)
        opt.zero_grad()
        model.backward(d)
        opt.step()
    assert losses[-1] < 0.5 * losses[0]
    assert sum(p.size for p in model.parameters()) == 6 * 8 + 8 + 16 + 8 * 2 + 2


def _row_total(terms):
    """One row's sum in the order the norm kernels document (``fastcnn.kernels._norm``): steps of 8 terms into 4
    vector sums (step i into sum i % 4, the last steps % 4 into sum 0), the 4 added pairwise, then the 8 lanes
    pairwise, then the last L % 8 terms one by one; float32 throughout."""
    terms = np.asarray(terms, np.float32)
    steps = terms.size // 8
    sums = np.zeros((4, 8), np.float32)
    for i in range(steps):
        u = i % 4 if i < steps // 4 * 4 else 0
        sums[u] = sums[u] + terms[8 * i:8 * i + 8]
    v = (sums[0] + sums[1]) + (sums[2] + sums[3])
    total = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
    for t in terms[8 * steps:]:
        total = np.float32(total + t)
    return total


def _channel_totals(rows):
    """``rows`` (N, C, L): each channel's N row totals added in order from zero."""
    totals = np.zeros(rows.shape[1], np.float32)
    for n in range(rows.shape[0]):
        for c in range(rows.shape[1]):
            totals[c] = np.float32(totals[c] + _row_total(rows[n, c]))
    return totals


@pytest.mark.parametrize("shape", [(3, 5, 9, 9), (1, 70, 5, 5), (64, 4, 6, 6), (2, 3, 2, 2)])
@pytest.mark.parametrize("threads", [1, 2])
def test_sums_follow_the_documented_order_on_any_thread_count(shape, threads, restore_num_threads):
    """The statistics and gradient sums, bit for bit, against the documented order replayed in numpy: the same
    whatever the thread count and however the (example, block of channels) tasks split the rows (one example: 64
    blocks of 70 channels, some empty)."""
    fastcnn.set_num_threads(threads)
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    w, b = rng.standard_normal((2, shape[1])).astype(np.float32)
    rows = lambda a: a.reshape(shape[0], shape[1], -1)  # noqa: E731
    inv_m = np.float32(1) / np.float32(x.size // shape[1])
    y, mean, var, inv_std = K.batch_norm_training_forward(x, w, b, relu=True)
    np.testing.assert_array_equal(mean, _channel_totals(rows(x)) * inv_m)
    np.testing.assert_array_equal(var, _channel_totals((rows(x) - mean[:, None]) ** 2) * inv_m)
    np.testing.assert_array_equal(inv_std, np.float32(1) / np.sqrt(var + np.float32(1e-5)))
    _, dw, db = K.batch_norm2d_backward(dy, x, w, mean, inv_std, relu_y=y)
    g = np.where(y > 0, dy, np.float32(0))
    np.testing.assert_array_equal(db, _channel_totals(rows(g)))
    xhat = (rows(x) - mean[:, None]) * inv_std[:, None]
    np.testing.assert_array_equal(dw, _channel_totals(rows(g) * xhat))
