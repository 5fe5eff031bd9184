"""Sequential: structure, summary, fit/evaluate/predict, refusals, divergence, input gradient."""


import numpy as np
import pytest

import fastcnn
from fastcnn import Sequential
from fastcnn.layers import (
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
    Tanh,
)
from fastcnn.optim import SGD
from helpers import assert_same_weights, single_thread, weights
from naive import numerical_grad

F64 = np.float64


# --------------------------------------------------------------------------- helpers


def small_net(seed=0, dtype=None):
    """conv 1->4 3x3 pad 1, ReLU, maxpool 2, flatten, linear 64->2, for 8x8 images."""
    fastcnn.manual_seed(seed)
    return Sequential(
        Conv2d(1, 4, 3, padding=1, dtype=dtype),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(4 * 4 * 4, 2, dtype=dtype),
        input_shape=(1, 8, 8),
    )


def quadrant_data(n=96, seed=0):
    """Class 1: bright top-left quadrant; class 0: dark; plus noise. float32 (n, 1, 8, 8)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rng.shuffle(y)
    x = rng.uniform(0.0, 0.3, size=(n, 1, 8, 8)).astype(np.float32)
    x[y == 1, :, :4, :4] += 0.7
    return x, y.astype(np.int64)


# --------------------------------------------------------------------------- structure


def test_lenet5_parameters_order_and_count():
    model = fastcnn.models.lenet5()
    params = model.parameters()
    expected_shapes = [
        (6, 1, 5, 5), (6,),
        (16, 6, 5, 5), (16,),
        (120, 400), (120,),
        (84, 120), (84,),
        (10, 84), (10,),
    ]
    assert [p.shape for p in params] == expected_shapes
    assert sum(p.size for p in params) == 61_706
    # the parameters are the layers' own objects, in layer order, weight then bias
    owned = [q for layer in model.layers if hasattr(layer, "weight") for q in (layer.weight, layer.bias)]
    assert all(a is b for a, b in zip(params, owned)) and len(owned) == len(params)


def test_summary_lists_output_shapes_and_total():
    model = fastcnn.models.lenet5()
    printed = []
    text = model.summary(print_fn=printed.append)
    assert printed == [text]
    for shape in ["(None, 6, 28, 28)", "(None, 6, 14, 14)", "(None, 16, 10, 10)", "(None, 16, 5, 5)",
                  "(None, 400)", "(None, 120)", "(None, 84)", "(None, 10)"]:
        assert shape in text, shape
    assert "Total params: 61,706" in text
    assert "Conv2d(1, 6, kernel_size=5, padding=(2, 2))" in text
    # per-layer counts: conv1 6*25+6 = 156, linear1 400*120+120 = 48,120
    assert "156" in text and "48,120" in text


def test_summary_shows_the_plan_of_every_convolution():
    text = fastcnn.models.lenet5().summary(print_fn=None, plans=True, batch_size=64)
    lines = text.splitlines()
    conv1 = next(i for i, line in enumerate(lines) if line.startswith("Conv2d(1, 6"))
    conv2 = next(i for i, line in enumerate(lines) if line.startswith("Conv2d(6, 16"))
    # the first layer computes no input gradient; the plans are conv2d_plan's for batch 64
    assert [line.split()[:2] for line in lines[conv1 + 1:conv1 + 3]] == [["forward:", "rows"],
                                                                          ["weight_grad:", "rows"]]
    assert lines[conv1 + 3].startswith("ReLU")
    assert [line.split()[:2] for line in lines[conv2 + 1:conv2 + 4]] == [
        ["forward:", "channel_last"], ["weight_grad:", "channel_last"], ["input_grad:", "batch_last"]]
    small = fastcnn.models.lenet5().summary(print_fn=None, plans=True, batch_size=2)
    assert "input_grad: nchw" in small and "scratch none" in small  # conv2's dx: batch too small for batch_last
    resnet = fastcnn.models.resnet_small().summary(print_fn=None, plans=True)
    # every conv but the stem (the first weighted layer) computes dx; the 3x3 stride-1 ones (10 of the 14, with
    # 16, 32 or 64 channels) with winograd4, the stride-2 ones and the 1x1 shortcuts with channel_last
    assert resnet.count("input_grad: channel_last") == 4 and resnet.count("input_grad: winograd4") == 10
    with pytest.raises(ValueError, match="summary: batch_size must be a positive int"):
        fastcnn.models.lenet5().summary(print_fn=None, plans=True, batch_size=0)
    with pytest.raises(ValueError, match="needs an input_shape"):
        Sequential(Linear(3, 2)).summary(print_fn=None, plans=True)


def test_summary_without_input_shape_shows_unknown():
    model = Sequential(Linear(3, 2))
    text = model.summary(print_fn=None)
    assert "?" in text and "Total params: 8" in text
    assert "(None, 2)" in model.summary(input_shape=(3,), print_fn=None)


def test_forward_shape_and_dtype():
    model = fastcnn.models.lenet5()
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    out = model.forward(x)
    assert out.shape == (3, 10) and out.dtype == np.float32
    np.testing.assert_array_equal(model(x), out)


def test_image_size_model_cannot_take_names_the_layer():
    model = fastcnn.models.lenet5()
    x = np.zeros((2, 1, 32, 32), np.float32)
    with pytest.raises(ValueError, match=r"layer 7 \(Linear\(400, 120\)\)"):
        model.forward(x)
    with pytest.raises(ValueError, match=r"Linear\(400, 120\)"):
        model.fit(x, np.zeros(2, np.int64), verbose=False)
    with pytest.raises(ValueError, match="Conv2d"):
        model.forward(np.zeros((2, 3, 28, 28), np.float32))  # 3 channels into a 1-channel conv


def test_constructor_validation():
    with pytest.raises(TypeError, match="argument 1"):
        Sequential(ReLU(), "not a layer")
    with pytest.raises(ValueError, match="at least one layer"):
        Sequential()
    with pytest.raises(ValueError, match="Linear"):
        Sequential(Flatten(), Linear(10, 2), input_shape=(1, 3, 3))


def test_train_eval_propagate_to_layers():
    model = small_net()
    assert model.eval() is model
    assert not model.training and not any(layer.training for layer in model.layers)
    model.train()
    assert model.training and all(layer.training for layer in model.layers)


# --------------------------------------------------------------------------- fit


def test_fit_learns_separable_problem():
    x, y = quadrant_data(96, seed=1)
    model = small_net(seed=1)
    before = model.evaluate(x, y)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    hist = model.fit(x, y, epochs=12, batch_size=16, optimizer=opt, seed=0, verbose=False,
                     validation_data=(x[:32], y[:32]))
    assert set(hist) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time", "epoch"}
    assert all(len(v) == 12 for v in hist.values())
    assert hist["lr"] == [0.1] * 12
    assert all(t > 0 for t in hist["epoch_time"])
    assert hist["loss"][-1] < 0.25 * hist["loss"][0]
    assert hist["accuracy"][-1] >= 0.95
    after = model.evaluate(x, y)
    assert after["loss"] < before["loss"] and after["accuracy"] >= 0.95
    xt, yt = quadrant_data(64, seed=2)
    assert model.evaluate(xt, yt)["accuracy"] >= 0.9
    assert (model.predict(xt).argmax(axis=1) == yt).mean() >= 0.9


def test_fit_default_optimizer_and_verbose_line(capsys):
    x, y = quadrant_data(32, seed=3)
    model = small_net(seed=3)
    snap = weights(model)
    hist = model.fit(x, y, epochs=2, batch_size=8, seed=0, verbose=True)
    assert hist["lr"] == [0.01, 0.01]  # default SGD(lr=0.01)
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "loss" in out
    assert any(not np.array_equal(p.data, s) for p, s in zip(model.parameters(), snap))


def test_fit_is_reproducible():
    x, y = quadrant_data(48, seed=4)
    runs = []
    for _ in range(2):
        model = small_net(seed=7)
        opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        model.fit(x, y, epochs=2, batch_size=10, optimizer=opt, seed=3, verbose=False)
        runs.append(weights(model))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    # with dropout drawing from the manual_seed generator the fit is reproducible too
    dropout_weights = []
    for _ in range(2):
        fastcnn.manual_seed(8)
        model = Sequential(Conv2d(1, 4, 3, padding=1), ReLU(), MaxPool2d(2), Flatten(), Dropout(0.3),
                           Linear(64, 2))
        model.fit(x, y, epochs=2, batch_size=10, optimizer=SGD(model.parameters(), lr=0.05), seed=3,
                  verbose=False)
        dropout_weights.append(weights(model))
    for a, b in zip(*dropout_weights):
        np.testing.assert_array_equal(a, b)
    # a different shuffling seed takes a different path
    model = small_net(seed=7)
    model.fit(x, y, epochs=2, batch_size=10, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9,
                                                            weight_decay=1e-3), seed=4, verbose=False)
    assert not np.array_equal(model.parameters()[0].data, runs[0][0])


@pytest.mark.parametrize("batch_size", [1, 7, 24, 1000], ids=["bs1", "bs7-ragged", "bs-full", "bs-larger-than-n"])
def test_fit_batch_sizes(batch_size):
    x, y = quadrant_data(24, seed=5)
    model = small_net(seed=5)
    snap = weights(model)
    hist = model.fit(x, y, epochs=1, batch_size=batch_size, optimizer=SGD(model.parameters(), lr=0.05),
                     seed=0, verbose=False)
    assert len(hist["loss"]) == 1 and np.isfinite(hist["loss"][0])
    assert 0.0 <= hist["accuracy"][0] <= 1.0
    assert any(not np.array_equal(p.data, s) for p, s in zip(model.parameters(), snap))


def test_fit_full_batch_equals_manual_gradient_descent():
    """batch_size=len(x), shuffle=False: one epoch is exactly one step on the full batch."""
    x, y = quadrant_data(20, seed=6)
    model, ref = small_net(seed=8, dtype=F64), small_net(seed=8, dtype=F64)
    model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, optimizer=SGD(model.parameters(), lr=0.1),
              verbose=False)
    out = ref.forward(x)
    _, d = fastcnn.kernels.softmax_cross_entropy(out, y)
    ref.backward(d)
    for p in ref.parameters():
        p.data -= 0.1 * p.grad
    for a, b in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)


def test_refused_fit_changes_no_weight():
    x, y = quadrant_data(16, seed=7)
    model = small_net(seed=9)
    opt = SGD(model.parameters(), lr=0.5, momentum=0.9)
    snap = weights(model)
    x_nan = x.copy()
    x_nan[3, 0, 2, 2] = np.nan
    x_inf = x.copy()
    x_inf[0, 0, 0, 0] = np.inf
    bad_calls = [
        ("labels out of range", dict(x=x, y=np.where(y == 1, 2, 0)), ValueError, r"\[0, 2\)"),
        ("negative label", dict(x=x, y=y - 1), ValueError, "labels"),
        ("wrong label count", dict(x=x, y=y[:-1]), ValueError, "entries"),
        ("NaN in x", dict(x=x_nan, y=y), ValueError, "NaN"),
        ("inf in x", dict(x=x_inf, y=y), ValueError, "infinite"),
        ("float labels", dict(x=x, y=y.astype(np.float32)), TypeError, "integer"),
        ("2-D labels", dict(x=x, y=y[:, None]), ValueError, "1-D"),
        ("epochs=0", dict(x=x, y=y, epochs=0), ValueError, "epochs"),
        ("epochs=1.5", dict(x=x, y=y, epochs=1.5), ValueError, "epochs"),
        ("batch_size=0", dict(x=x, y=y, batch_size=0), ValueError, "batch_size"),
        ("batch_size=True", dict(x=x, y=y, batch_size=True), ValueError, "batch_size"),
        ("bad loss", dict(x=x, y=y, loss="hinge"), ValueError, "loss"),
        ("validation not a pair", dict(x=x, y=y, validation_data=(x,)), ValueError, "validation_data"),
        ("validation labels out of range", dict(x=x, y=y, validation_data=(x, y + 5)), ValueError, "labels"),
        ("validation NaN", dict(x=x, y=y, validation_data=(x_nan, y)), ValueError, "validation x"),
        ("validation wrong shape", dict(x=x, y=y, validation_data=(x[:, :, :6, :6], y)), ValueError, "Linear"),
        ("empty x", dict(x=x[:0], y=y[:0]), ValueError, "empty"),
        ("string x", dict(x=np.full((16, 1, 8, 8), "a"), y=y), TypeError, "numeric"),
        ("bad optimizer", dict(x=x, y=y, optimizer=object()), TypeError, "optimizer"),
        ("mse targets wrong shape", dict(x=x, y=y, loss="mse"), ValueError, "mse"),
    ]
    for what, kwargs, exc, match in bad_calls:
        kwargs.setdefault("optimizer", opt)
        with pytest.raises(exc, match=match):
            model.fit(**kwargs, verbose=False)
        assert_same_weights(weights(model), snap)
        assert all(b is None for b in opt._buffers), f"{what}: the optimizer took a step"


def test_fit_accepts_and_converts_integer_and_float64_inputs():
    x, y = quadrant_data(16, seed=8)
    model = small_net(seed=10)
    x_u8 = (x * 255).astype(np.uint8)
    for xin in (x_u8, x_u8.astype(np.int32), x.astype(np.float64), x.astype(bool)):
        out = model.forward(xin)
        assert out.dtype == np.float32 and out.shape == (16, 2)
        np.testing.assert_array_equal(out, model.forward(xin.astype(np.float32)))
    np.testing.assert_array_equal(model.predict(x.astype(np.float64)), model.predict(x))
    for labels in (y.astype(np.uint8), y.astype(np.int32), list(y)):
        hist = model.fit(x_u8 / 255.0, labels, epochs=1, batch_size=8, seed=0, verbose=False)
        assert np.isfinite(hist["loss"][0])
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_float64_model_keeps_float64():
    x, y = quadrant_data(8, seed=9)
    model = small_net(seed=11, dtype=F64)
    assert model.dtype == F64
    assert model.forward(x).dtype == F64  # float32 input converted up
    model.fit(x, y, epochs=1, batch_size=4, seed=0, verbose=False)
    assert all(p.dtype == F64 for p in model.parameters())


# --------------------------------------------------------------------------- evaluate / predict


@pytest.mark.parametrize("training", [True, False], ids=["from-train", "from-eval"])
def test_evaluate_returns_loss_accuracy_and_keeps_mode(training):
    x, y = quadrant_data(20, seed=10)
    model = small_net(seed=12).train(training)
    res = model.evaluate(x, y, batch_size=6)
    assert set(res) == {"loss", "accuracy"}
    assert 0.0 <= res["accuracy"] <= 1.0 and res["loss"] > 0
    assert model.training is training
    assert all(layer.training is training for layer in model.layers)
    # loss and accuracy equal a direct computation on the whole set
    logits = model.predict(x)
    loss, _ = fastcnn.kernels.softmax_cross_entropy(logits, y)
    assert res["loss"] == pytest.approx(loss, rel=1e-5)
    assert res["accuracy"] == pytest.approx((logits.argmax(1) == y).mean())


def test_evaluate_is_in_eval_mode_with_dropout():
    x, y = quadrant_data(20, seed=11)
    fastcnn.manual_seed(0)
    model = Sequential(Flatten(), Dropout(0.5, seed=0), Linear(64, 2))
    a, b = model.evaluate(x, y), model.evaluate(x, y)
    assert a == b  # no dropout noise
    assert model.training


def test_predict_equals_forward_in_eval_mode():
    rng = np.random.default_rng(12)
    fastcnn.manual_seed(1)
    model = Sequential(Conv2d(1, 3, 3), ReLU(), Dropout(0.5, seed=1), GlobalAvgPool2d(), Linear(3, 4))
    x = rng.standard_normal((10, 1, 6, 6)).astype(np.float32)
    pred = model.predict(x, batch_size=3)  # 3 does not divide 10
    assert pred.shape == (10, 4) and pred.dtype == np.float32
    assert model.training  # mode restored
    model.eval()
    np.testing.assert_allclose(pred, model.forward(x), rtol=1e-6, atol=1e-7)
    assert model.predict(x[:0]).shape == (0, 4)
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(x, batch_size=0)


# --------------------------------------------------------------------------- mse


def test_fit_mse_regression():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    w_true = np.array([[1.0, -2.0, 0.5], [0.3, 0.0, -1.0]], np.float32)
    t = x @ w_true.T + np.array([0.5, -0.25], np.float32)
    fastcnn.manual_seed(2)
    model = Sequential(Linear(3, 2))
    hist = model.fit(x, t, epochs=30, batch_size=16, loss="mse", seed=0, verbose=False,
                     optimizer=SGD(model.parameters(), lr=0.1, momentum=0.5), validation_data=(x, t))
    assert set(hist) == {"loss", "val_loss", "lr", "epoch_time", "epoch"}
    assert hist["loss"][-1] < 1e-3 * hist["loss"][0]
    np.testing.assert_allclose(model.layers[0].weight.data, w_true, atol=1e-2)
    res = model.evaluate(x, t, loss="mse")
    assert set(res) == {"loss"} and res["loss"] < 1e-3
    with pytest.raises(ValueError, match="finite"):
        model.fit(x, np.full_like(t, np.nan), loss="mse", verbose=False)


# --------------------------------------------------------------------------- divergence


def test_nonfinite_loss_at_first_step_stops_with_unchanged_weights():
    x, y = quadrant_data(16, seed=14)
    model = small_net(seed=13)
    model.layers[-1].weight.data[...] = 3e38  # logits overflow to inf -> NaN loss
    snap = weights(model)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.warns(RuntimeWarning, match="loss became"):
        hist = model.fit(x, y, epochs=3, batch_size=8, optimizer=opt, verbose=False)
    assert_same_weights(weights(model), snap)
    assert hist["loss"] == [] and hist["accuracy"] == []


def test_huge_learning_rate_diverges_and_stops_before_the_bad_step():
    x, y = quadrant_data(32, seed=15)
    model = small_net(seed=14)
    ref = small_net(seed=14)
    with pytest.warns(RuntimeWarning, match="loss became"):
        hist = model.fit(x, y, epochs=5, batch_size=8, shuffle=False, optimizer=SGD(model.parameters(), lr=1e30),
                         verbose=False)
    assert len(hist["loss"]) < 5
    # replay fit's loop by hand: it must stop exactly where the loss first became non-finite
    opt = SGD(ref.parameters(), lr=1e30)
    steps, stopped = 0, False
    for _ in range(5):
        for lo in range(0, len(x), 8):
            out = ref.forward(x[lo:lo + 8])
            loss, d = fastcnn.kernels.softmax_cross_entropy(out, y[lo:lo + 8])
            if not np.isfinite(loss):
                stopped = True
                break
            opt.zero_grad()
            ref.backward(d)
            opt.step()
            steps += 1
        if stopped:
            break
    assert stopped and steps >= 1
    for a, b in zip(model.parameters(), ref.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    assert all(np.isfinite(p.data).all() for p in model.parameters())


# --------------------------------------------------------------------------- backward


def test_backward_input_grad_matches_central_difference():
    rng = np.random.default_rng(16)
    fastcnn.manual_seed(3)
    model = Sequential(
        Conv2d(2, 3, 3, padding=1, dtype=F64), Tanh(), MaxPool2d(2), Flatten(), Linear(12, 4, dtype=F64), Tanh(),
        Linear(4, 3, dtype=F64),
    )
    x = rng.standard_normal((2, 2, 4, 4))
    R = rng.standard_normal((2, 3))
    model.forward(x)
    dx = model.backward(R, input_grad=True)
    grads_with = [p.grad.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad[...] = 0
    model.forward(x)
    assert model.backward(R) is None
    for p, g in zip(model.parameters(), grads_with):
        np.testing.assert_allclose(p.grad, g, rtol=1e-12, atol=1e-15)
    # the first conv still gives an input gradient when used on its own afterwards
    model.forward(x)
    assert model.layers[0].backward(np.ones((2, 3, 4, 4))).shape == x.shape

    with single_thread():
        num = numerical_grad(lambda: float(np.sum(model.forward(x.copy()) * R)), x)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)


def test_backward_with_parameterless_first_layer_returns_gradient():
    fastcnn.manual_seed(4)
    model = Sequential(Flatten(), Linear(4, 2, dtype=F64))
    x = np.random.default_rng(17).standard_normal((3, 1, 2, 2))
    model.forward(x)
    dx = model.backward(np.ones((3, 2)), input_grad=True)
    np.testing.assert_allclose(dx.reshape(3, 4), np.ones((3, 2)) @ model.layers[1].weight.data)


def test_repr_lists_layers():
    text = repr(small_net())
    assert text.startswith("Sequential(") and "(0): Conv2d(1, 4, kernel_size=3, padding=(1, 1))" in text
    assert "(4): Linear(64, 2)" in text


def test_mixed_dtype_layers_are_refused_at_build():
    with pytest.raises(ValueError, match="dtype"):
        fastcnn.Sequential(Conv2d(1, 2, 3), ReLU(), Flatten(), Linear(4, 2, dtype=np.float64))


def test_evaluate_on_empty_data_raises():
    model = fastcnn.Sequential(Flatten(), Linear(4, 2))
    with pytest.raises(ValueError, match="empty"):
        model.evaluate(np.zeros((0, 1, 2, 2), np.float32), np.zeros(0, np.int64))


@pytest.mark.parametrize("pool", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),           # overlapping windows, padding
    dict(kernel_size=3, stride=2, ceil_mode=True),      # a partial last window
])
def test_relu_then_maxpool_runs_pooled_first_with_identical_results(pool):
    """Sequential runs MaxPool2d before a ReLU that precedes it: outputs and every gradient are unchanged."""
    from fastcnn.layers import Conv2d, Flatten, MaxPool2d, ReLU

    rng = np.random.default_rng(0)

    def build():
        r = np.random.default_rng(1)
        layers = [Conv2d(2, 4, 3, padding=1, dtype=np.float64), ReLU(), MaxPool2d(**pool), ReLU(), MaxPool2d(2, ceil_mode=True),
                  Flatten()]
        for layer in layers:
            for p in layer.parameters():
                p.data[...] = r.standard_normal(p.data.shape)
        return layers

    x = rng.standard_normal((3, 2, 9, 9))
    x[0, :, :4, :4] = -np.abs(x[0, :, :4, :4])  # windows with no positive value
    x[1, :, 2:6, 2:6] = 0.0  # ties at zero
    model = fastcnn.Sequential(*build())
    assert fastcnn.layers.chain.run_order(model.layers)[:5] == [0, 2, 1, 4, 3]

    # the same layers run one by one in the written order
    plain = build()
    h = x
    for layer in plain:
        h = layer.forward(h)
    out = model.forward(x)
    np.testing.assert_array_equal(out, h)

    d = rng.standard_normal(out.shape)
    dx = model.backward(d, input_grad=True)
    for layer in reversed(plain):
        d = layer.backward(d)
    np.testing.assert_array_equal(dx, d)
    for p, q in zip(model.parameters(), [p for layer in plain for p in layer.parameters()]):
        np.testing.assert_array_equal(p.grad, q.grad)


def test_evaluate_and_fit_name_themselves_for_non_finite_images():
    """Issue 12: evaluate on NaN images said "Sequential.fit: ..."."""
    model = fastcnn.models.lenet5()
    x = np.zeros((2, 1, 28, 28), np.float32)
    x[1, 0, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"^Sequential\.evaluate: x contains NaN or infinite values"):
        model.evaluate(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"^Sequential\.fit: x contains NaN or infinite values"):
        model.fit(x, np.array([0, 1]), verbose=False)
