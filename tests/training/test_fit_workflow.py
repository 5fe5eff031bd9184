"""Sequential.fit's training control (callbacks, schedule, exact resume, augment, batch modes, progress)
and the initialisers of fastcnn.layers.init."""

import math
import sys

import numpy as np
import pytest

import fastcnn
import fastcnn.callbacks as callbacks_module
from fastcnn.callbacks import Callback, EarlyStopping, ModelCheckpoint
from fastcnn.layers import Conv2d, Flatten, Linear, MaxPool2d, Parameter, ReLU, init
from fastcnn.optim import SGD, ReduceLROnPlateau, StepLR
from helpers import assert_same_weights, weights

F64 = np.float64


def tiny_net(seed=0, dtype=F64):
    fastcnn.manual_seed(seed)
    return fastcnn.Sequential(Conv2d(1, 2, 3, padding=1, dtype=dtype), ReLU(), MaxPool2d(2), Flatten(),
                              Linear(8, 2, dtype=dtype))


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 4, 4))
    y = (x[:, 0, :2].sum(axis=(1, 2)) > x[:, 0, 2:].sum(axis=(1, 2))).astype(np.int64)
    return x, y


# --------------------------------------------------------------------------- exact resume


def test_resume_is_exact_with_carried_optimizer_and_schedule():
    x, y = data()
    ref = tiny_net()
    opt = SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    hist = ref.fit(x, y, epochs=3, batch_size=5, optimizer=opt, schedule=StepLR(opt, 1, 0.5), seed=7,
                   verbose=False)
    assert hist["epoch"] == [1, 2, 3] and hist["lr"] == [0.1, 0.05, 0.025]

    # first part, then a fresh optimizer and schedule loaded from the states (as after a restart)
    model = tiny_net()
    opt1 = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    sched1 = StepLR(opt1, 1, 0.5)
    h1 = model.fit(x, y, epochs=1, batch_size=5, optimizer=opt1, schedule=sched1, seed=7, verbose=False)
    opt2 = SGD(model.parameters(), lr=1.0)
    opt2.load_state_dict(opt1.state_dict())
    sched2 = StepLR(opt2, 1, 0.5)
    sched2.load_state_dict(sched1.state_dict())
    h2 = model.fit(x, y, epochs=3, batch_size=5, optimizer=opt2, schedule=sched2, seed=7, initial_epoch=1,
                   verbose=False)
    assert h1["epoch"] == [1] and h2["epoch"] == [2, 3]
    assert h1["lr"] + h2["lr"] == hist["lr"]
    assert h1["loss"] + h2["loss"] == hist["loss"]
    assert_same_weights(weights(model), weights(ref))

    # the test can tell: resuming as if it were epoch 0 again shuffles differently
    other = tiny_net()
    o = SGD(other.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    s = StepLR(o, 1, 0.5)
    other.fit(x, y, epochs=1, batch_size=5, optimizer=o, schedule=s, seed=7, verbose=False)
    other.fit(x, y, epochs=2, batch_size=5, optimizer=o, schedule=s, seed=7, verbose=False)
    assert not np.array_equal(weights(other)[0], weights(ref)[0])


def test_epoch_shuffle_is_seeded_per_epoch():
    x, y = data(12)
    seen = []

    def record(batch):
        seen.append(batch[:, 0, 0, 0].copy())
        return batch

    tiny_net().fit(x, y, epochs=2, batch_size=12, seed=3, augment=record, verbose=False)
    for e, got in enumerate(seen):
        order = np.random.default_rng([3, e]).permutation(12)
        np.testing.assert_array_equal(got, x[order, 0, 0, 0])


# --------------------------------------------------------------------------- schedule and callbacks in fit


class Recorder(Callback):
    def __init__(self, stop_at=None, add=None):
        self.events, self.stop_at, self.add = [], stop_at, add

    def on_train_begin(self, model, state):
        self.events.append(("begin", state["epochs"], state["initial_epoch"], state["n"]))
        self.state = state

    def on_epoch_end(self, model, epoch, logs):
        self.events.append(("epoch", epoch, dict(logs)))
        if self.add:
            logs[self.add] = epoch * 10
        return epoch == self.stop_at

    def on_train_end(self, model, history):
        self.events.append(("end", len(history["loss"])))


def test_callbacks_hooks_order_stop_and_added_logs():
    x, y = data()
    rec, extra = Recorder(stop_at=2), Recorder(add="custom")
    model = tiny_net()
    hist = model.fit(x, y, epochs=5, batch_size=8, callbacks=[rec, extra], validation_data=(x[:8], y[:8]),
                     seed=0, verbose=False)
    assert rec.events[0] == ("begin", 5, 0, 24)
    assert [e[1] for e in rec.events[1:-1]] == [0, 1, 2]
    assert rec.events[-1] == ("end", 3)
    logs = rec.events[1][2]
    assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time", "epoch"}
    assert logs["epoch"] == 1 and logs["loss"] == hist["loss"][0]
    assert hist["custom"] == [0, 10, 20]
    assert all(len(v) == 3 for v in hist.values())
    assert rec.state["history"] is hist


def test_epoch_begin_and_batch_end_hooks():
    x, y = data()
    events = []

    class Steps(Callback):
        def on_epoch_begin(self, model, epoch, logs):
            events.append(("epoch", epoch, dict(logs)))

        def on_batch_end(self, model, batch, logs):
            events.append(("batch", batch, dict(logs)))

    class Plain:  # not a Callback subclass: only the hooks it has are called
        def on_batch_end(self, model, batch, logs):
            events.append(("plain", batch))

    model = tiny_net()
    opt = SGD(model.parameters(), lr=0.1)
    hist = model.fit(x, y, epochs=2, batch_size=10, optimizer=opt, callbacks=[Steps(), Plain()], seed=0,
                     verbose=False)
    assert [e[:2] for e in events[:7]] == [("epoch", 0), ("batch", 0), ("plain", 0), ("batch", 1), ("plain", 1),
                                           ("batch", 2), ("plain", 2)]
    assert events[0][2] == {"lr": 0.1} and events[7][:2] == ("epoch", 1)
    sizes = [e[2]["size"] for e in events if e[0] == "batch"]
    assert sizes == [10, 10, 4] * 2
    last = events[5][2]
    assert last["loss"] == hist["loss"][0] and last["accuracy"] == hist["accuracy"][0]


def test_callback_without_its_own_batch_hook_costs_no_call_per_step(monkeypatch):
    calls = []
    monkeypatch.setattr(Callback, "on_batch_end", lambda self, model, batch, logs: calls.append(batch))

    class EpochOnly(Callback):
        def on_epoch_end(self, model, epoch, logs):
            return None

    x, y = data()
    tiny_net().fit(x, y, epochs=1, batch_size=5, callbacks=[EpochOnly(), EarlyStopping(monitor="loss")],
                   seed=0, verbose=False)
    assert calls == []


def test_schedule_in_fit_is_stepped_after_validation_with_val_loss_or_loss():
    x, y = data()

    class FakePlateau:
        needs_metric = True

        def __init__(self, optimizer):
            self.optimizer, self.seen = optimizer, []

        def step(self, metric):
            self.seen.append(metric)

    model = tiny_net()
    opt = SGD(model.parameters(), lr=0.1)
    sched = FakePlateau(opt)
    hist = model.fit(x, y, epochs=3, optimizer=opt, schedule=sched, validation_data=(x[:6], y[:6]),
                     seed=0, verbose=False)
    assert sched.seen == hist["val_loss"]
    sched = FakePlateau(opt)
    hist = model.fit(x, y, epochs=2, optimizer=opt, schedule=sched, seed=0, verbose=False)
    assert sched.seen == hist["loss"]
    # a real ReduceLROnPlateau: the first epoch sets the best, then every epoch is bad and halves the lr
    opt = SGD(model.parameters(), lr=1e-4)
    hist = model.fit(x, y, epochs=4, optimizer=opt, schedule=ReduceLROnPlateau(opt, patience=0, factor=0.5,
                                                                               threshold=0.5), seed=0, verbose=False)
    assert hist["lr"] == [1e-4, 1e-4, 0.5e-4, 0.25e-4]


def test_schedule_built_on_another_optimizer_is_refused():
    x, y = data()
    model = tiny_net()
    other = SGD(model.parameters(), lr=0.1)
    before = weights(model)
    with pytest.raises(ValueError, match="different optimizer"):
        model.fit(x, y, optimizer=SGD(model.parameters(), lr=0.1), schedule=StepLR(other, 1), verbose=False)
    with pytest.raises(ValueError, match="different optimizer"):
        model.fit(x, y, schedule=StepLR(other, 1), verbose=False)  # default optimizer
    assert_same_weights(weights(model), before)


def test_optimizer_built_on_another_model_is_refused_and_nothing_changes():
    x, y = data()
    model, other = tiny_net(0), tiny_net(1)
    before, other_before = weights(model), weights(other)
    with pytest.raises(ValueError, match="none of the optimizer's 4 parameters belongs to the model"):
        model.fit(x, y, optimizer=SGD(other.parameters(), lr=0.1, weight_decay=0.1), verbose=False)
    mixed = SGD(model.parameters()[:2] + other.parameters()[2:], lr=0.1)
    with pytest.raises(ValueError, match=r"params\[2, 3\] \(2 of 4\) do not belong"):
        model.fit(x, y, optimizer=mixed, verbose=False)
    assert_same_weights(weights(model), before)
    assert_same_weights(weights(other), other_before)
    # an optimizer over some of the model's own parameters (training the last layer only) is fine
    model.fit(x, y, optimizer=SGD(model.parameters()[2:], lr=0.1), verbose=False)
    assert_same_weights(weights(model)[:2], before[:2])


def test_early_stopping_in_fit_restores_best_weights():
    x, y = data()
    model = tiny_net()
    snaps = []

    class Snap(Callback):
        def on_epoch_end(self, model, epoch, logs):
            snaps.append(weights(model))

    # validation on flipped labels: val_loss rises as training fits the true labels
    stop = EarlyStopping(patience=2)
    opt = SGD(model.parameters(), lr=0.5, momentum=0.9)
    hist = model.fit(x, y, epochs=30, batch_size=4, optimizer=opt, validation_data=(x, 1 - y),
                     callbacks=[Snap(), stop], seed=0, verbose=False)
    n = len(hist["loss"])
    assert n < 30 and stop.stopped_epoch == n - 1
    best = int(np.argmin(hist["val_loss"]))
    assert stop.best_epoch == best and n - 1 - best == 2
    assert_same_weights(weights(model), snaps[best])


def test_model_checkpoint_in_fit(tmp_path, monkeypatch):
    x, y = data()
    model = tiny_net()
    calls = []
    monkeypatch.setattr(model, "save", lambda path, **kw: calls.append((path, weights(model))), raising=False)
    model.fit(x, y, epochs=3, batch_size=8, callbacks=[ModelCheckpoint(str(tmp_path / "m{epoch}.npz"))],
              validation_data=(x, y), seed=0, verbose=False)
    assert [p for p, _ in calls] == [str(tmp_path / f"m{e}.npz") for e in (1, 2, 3)]
    assert_same_weights(calls[-1][1], weights(model))


def test_model_checkpoint_without_save_fails_before_training(tmp_path):
    x, y = data()
    model = tiny_net()
    model.save = None  # as a model class without save()
    before = weights(model)
    with pytest.raises(TypeError, match="no save"):
        model.fit(x, y, callbacks=[ModelCheckpoint(str(tmp_path / "m.npz"))], verbose=False)
    assert_same_weights(weights(model), before)


def test_nan_stop_keeps_weights_and_runs_train_end():
    x, y = data(16)
    model = tiny_net()
    model.layers[-1].weight.data[...] = 1e308  # logits overflow -> non-finite loss at the first step
    before = weights(model)
    rec = Recorder()
    stop = EarlyStopping(monitor="loss")
    with pytest.warns(RuntimeWarning, match="loss became"):
        hist = model.fit(x, y, epochs=3, callbacks=[rec, stop], optimizer=SGD(model.parameters(), lr=0.1,
                                                                              momentum=0.9), verbose=False)
    assert_same_weights(weights(model), before)
    assert hist["loss"] == [] and hist["epoch"] == []
    assert [e[0] for e in rec.events] == ["begin", "end"]


# --------------------------------------------------------------------------- augment, batch modes


def test_augment_is_applied_to_every_training_batch_only():
    x, y = data()
    sizes = []

    def zero(batch):
        sizes.append(len(batch))
        return np.zeros_like(batch)

    a, b = tiny_net(), tiny_net()
    a.fit(x, y, epochs=2, batch_size=10, augment=zero, validation_data=(x, y), seed=1, verbose=False)
    b.fit(np.zeros_like(x), y, epochs=2, batch_size=10, seed=1, verbose=False)
    assert sizes == [10, 10, 4] * 2
    assert_same_weights(weights(a), weights(b))
    c = tiny_net()
    c.fit(x, y, epochs=2, batch_size=10, seed=1, verbose=False)
    assert not np.array_equal(weights(c)[0], weights(a)[0])


def test_augment_errors():
    x, y = data()
    model = tiny_net()
    before = weights(model)
    with pytest.raises(ValueError, match="augment must return a batch of 8"):
        model.fit(x, y, batch_size=8, augment=lambda b: b[:3], verbose=False)
    with pytest.raises(TypeError, match="augment"):
        model.fit(x, y, augment="flip", verbose=False)
    assert_same_weights(weights(model), before)


def manual_steps(model, x, y, lr, batch):
    for lo in range(0, len(x), batch):
        out = model.forward(x[lo:lo + batch])
        _, d = fastcnn.kernels.softmax_cross_entropy(out, y[lo:lo + batch])
        for p in model.parameters():
            p.grad.fill(0)
        model.backward(d)
        for p in model.parameters():
            p.data -= lr * p.grad


@pytest.mark.parametrize("batch_size,manual", [(None, 24), (1, 1)], ids=["full-batch-None", "per-example"])
def test_full_batch_and_per_example_modes(batch_size, manual):
    x, y = data()
    model, ref = tiny_net(), tiny_net()
    hist = model.fit(x, y, epochs=2, batch_size=batch_size, shuffle=False, optimizer=SGD(model.parameters(), lr=0.1),
                     verbose=False)
    for _ in range(2):
        manual_steps(ref, x, y, 0.1, manual)
    for a, b in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)
    assert len(hist["loss"]) == 2


@pytest.mark.parametrize("kw,exc,match", [
    (dict(epochs=2, initial_epoch=2), ValueError, "initial_epoch"),
    (dict(initial_epoch=-1), ValueError, "initial_epoch"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), ValueError, "seed"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(callbacks=[object()]), TypeError, "callbacks"),
    (dict(schedule=object()), TypeError, "schedule"),
], ids=["initial-eq-epochs", "initial-neg", "seed-neg", "seed-float", "batch0", "callback", "schedule"])
def test_fit_argument_validation(kw, exc, match):
    x, y = data()
    model = tiny_net()
    before = weights(model)
    with pytest.raises(exc, match=match):
        model.fit(x, y, verbose=False, **kw)
    assert_same_weights(weights(model), before)


# --------------------------------------------------------------------------- progress


def test_plain_line_per_epoch_and_silence(capsys):
    x, y = data()
    model = tiny_net()
    opt = SGD(model.parameters(), lr=0.1)
    model.fit(x, y, epochs=3, optimizer=opt, schedule=StepLR(opt, 1, 0.5), initial_epoch=1, seed=0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 2/3") and lines[1].startswith("epoch 3/3")
    assert "img/s" in lines[0] and "lr 0.05" in lines[1]
    model.fit(x, y, epochs=2, seed=0, verbose=False)
    assert capsys.readouterr() == ("", "")


def test_progress_bar_on_a_terminal(monkeypatch, capsys):
    bars = []

    class FakeBar:
        def __init__(self, total, desc):
            self.total, self.desc, self.n, self.post, self.closed = total, desc, 0, None, False
            bars.append(self)

        def update(self, m):
            self.n += m

        def set_postfix(self, post, refresh=True):
            self.post = post

        def close(self):
            self.closed = True

    monkeypatch.setattr(callbacks_module, "progress_bar", FakeBar)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    x, y = data()
    tiny_net().fit(x, y, epochs=2, batch_size=7, seed=0)
    assert [(b.desc, b.total, b.n, b.closed) for b in bars] == [("epoch 1/2", 24, 24, True), ("epoch 2/2", 24, 24, True)]
    assert set(bars[0].post) == {"loss", "acc"}
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # and the epoch lines

    # a bar left open by a diverged loss is closed too (in on_train_end, before fit warns)
    bars.clear()
    model = tiny_net()
    model.layers[-1].weight.data[...] = 1e308
    with pytest.warns(RuntimeWarning, match="loss became"):
        model.fit(x, y, epochs=2, batch_size=7, seed=0)
    assert [(b.desc, b.n, b.closed) for b in bars] == [("epoch 1/2", 0, True)]
    assert capsys.readouterr().out == ""


def test_real_tqdm_bar_counts_images_and_shows_rate():
    bar = callbacks_module.progress_bar(10, "epoch 1/1")
    try:
        assert bar.total == 10 and bar.unit == "img"
    finally:
        bar.close()


# --------------------------------------------------------------------------- initialisers


BIG = (256, 32, 3, 3)  # fan_in 288, fan_out 2304


def fresh(shape=BIG, dtype=np.float32):
    return Parameter(np.empty(shape, dtype))


def test_fans_match_torch():
    torch = pytest.importorskip("torch")
    for shape in [(5, 3), (6, 2, 5, 5), (4, 3, 2, 7), (2, 9, 1)]:
        want = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        assert init.calculate_fan_in_and_fan_out(shape) == want
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(np.zeros(5))


@pytest.mark.parametrize("nl,param", [("linear", None), ("relu", None), ("tanh", None), ("sigmoid", None),
                                      ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)])
def test_gain_matches_torch(nl, param):
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param), rel=1e-15)


@pytest.mark.parametrize("fn,kw,bound", [
    (init.kaiming_uniform_, {}, math.sqrt(2) * math.sqrt(3 / 288)),
    (init.kaiming_uniform_, dict(mode="fan_out", nonlinearity="tanh"), 5 / 3 * math.sqrt(3 / 2304)),
    (init.xavier_uniform_, {}, math.sqrt(6 / (288 + 2304))),
    (init.xavier_uniform_, dict(gain=2.0), 2 * math.sqrt(6 / (288 + 2304))),
    (init.default_, {}, 1 / math.sqrt(288)),
    (init.uniform_, dict(a=0.3), 0.3),
], ids=["kaiming", "kaiming-fanout-tanh", "xavier", "xavier-gain", "default", "uniform"])
def test_uniform_family_bounds_and_std(fn, kw, bound):
    p = fresh()
    assert fn(p, **kw) is p
    w = p.data.astype(F64)
    assert p.data.dtype == np.float32
    assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert abs(w.mean()) < 0.02 * bound


@pytest.mark.parametrize("fn,kw,std", [
    (init.kaiming_normal_, {}, math.sqrt(2 / 288)),
    (init.kaiming_normal_, dict(mode="fan_out"), math.sqrt(2 / 2304)),
    (init.xavier_normal_, {}, math.sqrt(2 / (288 + 2304))),
    (init.normal_, dict(std=0.05), 0.05),
], ids=["kaiming", "kaiming-fanout", "xavier", "normal"])
def test_normal_family_std(fn, kw, std):
    arr = np.empty(BIG, F64)
    assert fn(arr, **kw) is arr
    assert arr.std() == pytest.approx(std, rel=0.02)
    assert abs(arr.mean()) < 0.02 * std


def test_bounds_match_torch_draws():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    t = torch.empty(BIG)
    for name in ["kaiming_uniform_", "xavier_uniform_"]:
        getattr(torch.nn.init, name)(t)
        ours = getattr(init, name)(np.empty(BIG, np.float32))
        assert float(t.abs().max()) == pytest.approx(float(np.abs(ours).max()), rel=0.01)
    for name in ["kaiming_normal_", "xavier_normal_"]:
        getattr(torch.nn.init, name)(t)
        ours = getattr(init, name)(np.empty(BIG, np.float32))
        assert float(t.std()) == pytest.approx(float(ours.std()), rel=0.03)


def test_uniform_range_normal_mean_and_zeros():
    p = init.uniform_(np.empty(10000), 2.0, 3.0)
    assert p.min() >= 2.0 and p.max() < 3.0
    assert init.normal_(np.empty(10000), 0.1, mean=5.0).mean() == pytest.approx(5.0, abs=0.01)
    z = init.zeros_(fresh((3, 3)))
    np.testing.assert_array_equal(z.data, 0)


def test_seeding_reproduces_and_differs():
    fastcnn.manual_seed(11)
    a = init.kaiming_uniform_(np.empty((4, 5)))
    b = init.xavier_normal_(np.empty((4, 5)))
    fastcnn.manual_seed(11)
    np.testing.assert_array_equal(init.kaiming_uniform_(np.empty((4, 5))), a)
    np.testing.assert_array_equal(init.xavier_normal_(np.empty((4, 5))), b)
    fastcnn.manual_seed(12)
    assert not np.array_equal(init.kaiming_uniform_(np.empty((4, 5))), a)


def test_init_errors():
    with pytest.raises(TypeError, match="float ndarray"):
        init.uniform_(np.zeros(3, np.int64), 1.0)
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(np.empty((2, 2)), mode="fan")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.kaiming_normal_(np.empty((2, 2)), nonlinearity="swish")
    with pytest.raises(ValueError, match="std"):
        init.normal_(np.empty(2), -1.0)


def test_initialize_model():
    model = tiny_net(seed=0, dtype=np.float32)
    pool_before = repr(model.layers[2])
    fastcnn.manual_seed(3)
    assert init.initialize(model, weight="xavier_normal") == 2
    conv, lin = model.layers[0], model.layers[-1]
    np.testing.assert_array_equal(conv.bias.data, 0)
    np.testing.assert_array_equal(lin.bias.data, 0)
    assert conv.weight.dtype == np.float32 and repr(model.layers[2]) == pool_before
    fastcnn.manual_seed(3)
    want_conv = init.xavier_normal_(np.empty(conv.weight.shape, np.float32))
    want_lin = init.xavier_normal_(np.empty(lin.weight.shape, np.float32))
    np.testing.assert_array_equal(conv.weight.data, want_conv)
    np.testing.assert_array_equal(lin.weight.data, want_lin)
    # keyword arguments go to the weight initialiser; a list of layers works too
    init.initialize([lin], weight="kaiming_uniform", nonlinearity="tanh", bias="default")
    bound = 5 / 3 * math.sqrt(3 / 8)
    assert np.abs(lin.weight.data).max() <= bound and not np.all(lin.bias.data == 0)
    assert np.abs(lin.bias.data).max() <= 1 / math.sqrt(8)
    with pytest.raises(ValueError, match="weight must be one of"):
        init.initialize(model, weight="orthogonal")
    with pytest.raises(ValueError, match="bias must be one of"):
        init.initialize(model, bias="ones")


def test_initialize_default_reproduces_the_constructor():
    built = tiny_net(seed=4, dtype=np.float32)
    other = tiny_net(seed=9, dtype=np.float32)
    fastcnn.manual_seed(4)
    init.initialize(other, weight="default", bias="default")
    assert_same_weights(weights(other), weights(built))
