"""fastcnn.callbacks: EarlyStopping, ModelCheckpoint, LearningRateScheduler and save_history, on fake logs."""

import csv
import json
import os

import numpy as np
import pytest

from fastcnn import callbacks
from fastcnn.callbacks import (Callback, EarlyStopping, EpochLine, LearningRateScheduler, ModelCheckpoint,
                               ProgressBar, save_history)
from fastcnn.layers import Parameter
from fastcnn.optim import SGD, ReduceLROnPlateau, StepLR


class FakeModel:
    """parameters() and, optionally, save(path) that records its calls."""

    def __init__(self, with_save=True):
        self.params = [Parameter(np.zeros((2, 2))), Parameter(np.zeros(2))]
        self.saved = []
        if with_save:
            self.save = lambda path, **kw: self.saved.append((path, kw))

    def parameters(self):
        return self.params

    def set_epoch(self, epoch):
        for p in self.params:
            p.data[...] = epoch


def drive(cb, model, values, key="val_loss"):
    """Run the hooks on a sequence of monitored values; the model's weights are set to the epoch index first.

    Returns the number of epochs run before the callback asked to stop.
    """
    cb.on_train_begin(model, {})
    for epoch, v in enumerate(values):
        model.set_epoch(epoch)
        if cb.on_epoch_end(model, epoch, {key: v, "loss": 1.0, "epoch": epoch + 1}) is True:
            return epoch + 1
    cb.on_train_end(model, {})
    return len(values)


# --------------------------------------------------------------------------- EarlyStopping


def test_early_stopping_counts_patience_and_restores_best():
    model = FakeModel()
    stop = EarlyStopping(patience=2)
    ran = drive(stop, model, [1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    # best at epoch 1; epochs 2 and 3 are worse -> stop after epoch 3
    assert ran == 4 and stop.stopped_epoch == 3
    assert stop.best == 0.8 and stop.best_epoch == 1
    for p in model.params:
        np.testing.assert_array_equal(p.data, 1.0)  # restored to epoch 1's weights, in place


def test_early_stopping_without_restore_keeps_last_weights():
    model = FakeModel()
    ran = drive(EarlyStopping(patience=1, restore_best_weights=False), model, [1.0, 2.0, 3.0])
    assert ran == 2
    np.testing.assert_array_equal(model.params[0].data, 1.0)


def test_early_stopping_runs_to_the_end_while_improving_and_does_not_restore():
    model = FakeModel()
    stop = EarlyStopping(patience=2)
    assert drive(stop, model, [5.0, 4.0, 4.5, 3.0, 3.5]) == 5
    assert stop.stopped_epoch == 0 and stop.best_epoch == 3
    np.testing.assert_array_equal(model.params[0].data, 4.0)  # Keras: restore only when stopping


def test_early_stopping_min_delta_and_patience_zero():
    # improvements smaller than min_delta count as bad epochs
    stop = EarlyStopping(patience=2, min_delta=0.1)
    assert drive(stop, FakeModel(), [1.0, 0.95, 0.92, 0.5]) == 3
    # patience 0 stops at the first epoch that does not improve
    assert drive(EarlyStopping(patience=0), FakeModel(), [1.0, 0.9, 0.9, 0.1]) == 3


def test_early_stopping_mode_auto_max_for_accuracy_and_nan():
    stop = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stop.mode == "max"
    assert drive(stop, FakeModel(), [0.5, 0.6, 0.55, 0.9], key="val_accuracy") == 3
    assert stop.best == 0.6
    # NaN is never an improvement
    stop = EarlyStopping(patience=1)
    assert drive(stop, FakeModel(), [1.0, float("nan"), 0.5]) == 2


def test_early_stopping_is_reset_by_train_begin():
    stop = EarlyStopping(patience=1)
    drive(stop, FakeModel(), [1.0, 2.0])
    assert drive(stop, FakeModel(), [3.0, 2.0, 1.0]) == 3  # best from the first run forgotten


def test_early_stopping_missing_monitor_warns_and_continues():
    stop = EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(RuntimeWarning, match="val_loss"):
        assert stop.on_epoch_end(FakeModel(), 1, {"loss": 1.0}) is None


@pytest.mark.parametrize("kw,match", [
    (dict(patience=-1), "patience"), (dict(min_delta=-0.1), "min_delta"), (dict(mode="up"), "mode"),
    (dict(monitor=""), "monitor"),
], ids=["patience", "min_delta", "mode", "monitor"])
def test_early_stopping_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kw)


# --------------------------------------------------------------------------- ModelCheckpoint


def test_checkpoint_saves_every_epoch_with_formatted_path(tmp_path):
    model = FakeModel()
    ck = ModelCheckpoint(str(tmp_path / "ck" / "m-{epoch:02d}-{val_loss:.2f}.npz"))
    drive(ck, model, [0.5, 0.25, 0.125])
    paths = [p for p, _ in model.saved]
    assert paths == [str(tmp_path / "ck" / f"m-{e:02d}-{v:.2f}.npz") for e, v in [(1, 0.5), (2, 0.25), (3, 0.125)]]
    assert ck.saved == paths and (tmp_path / "ck").is_dir()
    assert all(kw == {} for _, kw in model.saved)


def test_checkpoint_every_and_save_best_only(tmp_path):
    model = FakeModel()
    drive(ModelCheckpoint(str(tmp_path / "e{epoch}"), every=2), model, [1.0] * 5)
    assert [os.path.basename(p) for p, _ in model.saved] == ["e2", "e4"]
    model = FakeModel()
    drive(ModelCheckpoint(str(tmp_path / "b{epoch}"), save_best_only=True), model, [1.0, 1.2, 0.9, 0.9, 0.3])
    assert [os.path.basename(p) for p, _ in model.saved] == ["b1", "b3", "b5"]
    model = FakeModel()
    drive(ModelCheckpoint(str(tmp_path / "a{epoch}"), monitor="val_accuracy", save_best_only=True), model,
          [0.1, 0.3, 0.2], key="val_accuracy")
    assert [os.path.basename(p) for p, _ in model.saved] == ["a1", "a2"]


def test_checkpoint_include_optimizer_passes_training_state(tmp_path):
    model = FakeModel()
    opt = SGD(model.params, lr=0.1)
    sched = StepLR(opt, 2)
    ck = ModelCheckpoint(str(tmp_path / "x.npz"), include_optimizer=True)
    ck.on_train_begin(model, {"optimizer": opt, "schedule": sched})
    ck.on_epoch_end(model, 4, {"val_loss": 1.0})
    path, kw = model.saved[0]
    assert kw["optimizer"] is opt and kw["schedule"] is sched and kw["extra"] == {"epoch": 5}


def test_checkpoint_needs_model_save_at_train_begin(tmp_path):
    with pytest.raises(TypeError, match="no save"):
        ModelCheckpoint(str(tmp_path / "x")).on_train_begin(FakeModel(with_save=False), {})


def test_checkpoint_bad_path_field_is_a_clear_error(tmp_path):
    ck = ModelCheckpoint(str(tmp_path / "{nope}.npz"))
    ck.on_train_begin(FakeModel(), {})
    with pytest.raises(ValueError, match="cannot format path"):
        ck.on_epoch_end(FakeModel(), 0, {"val_loss": 1.0})
    with pytest.raises(ValueError, match="every"):
        ModelCheckpoint("x", every=0)


# --------------------------------------------------------------------------- LearningRateScheduler


def test_lr_scheduler_callback_steps_schedules():
    model = FakeModel()
    opt = SGD(model.params, lr=1.0)
    cb = LearningRateScheduler(StepLR(opt, 1, 0.5))
    for e in range(3):
        cb.on_epoch_end(model, e, {"loss": 1.0})
    assert opt.lr == 0.125
    # plateau: val_loss when present, else loss, or the named monitor
    opt = SGD(model.params, lr=1.0)
    cb = LearningRateScheduler(ReduceLROnPlateau(opt, patience=0, factor=0.5))
    cb.on_epoch_end(model, 0, {"loss": 5.0, "val_loss": 1.0})
    cb.on_epoch_end(model, 1, {"loss": 0.1, "val_loss": 2.0})  # loss improved, val_loss did not
    assert opt.lr == 0.5
    opt = SGD(model.params, lr=1.0)
    cb = LearningRateScheduler(ReduceLROnPlateau(opt, patience=0, factor=0.5), monitor="loss")
    cb.on_epoch_end(model, 0, {"loss": 5.0, "val_loss": 1.0})
    cb.on_epoch_end(model, 1, {"loss": 0.1, "val_loss": 2.0})
    assert opt.lr == 1.0
    with pytest.raises(ValueError, match="acc"):
        LearningRateScheduler(ReduceLROnPlateau(opt), monitor="acc").on_epoch_end(model, 0, {"loss": 1.0})
    with pytest.raises(TypeError, match="step"):
        LearningRateScheduler(object())


def test_callback_base_hooks_are_no_ops():
    cb = Callback()
    assert cb.on_train_begin(None, {}) is None and cb.on_epoch_end(None, 0, {}) is None
    assert cb.on_train_end(None, {}) is None


# --------------------------------------------------------------------------- save_history


HISTORY = {"epoch": [1, 2, 3], "loss": [0.5, np.float64(0.25), 0.125], "lr": [0.1, 0.1, 0.01],
           "val_loss": [1.0, None, 0.5]}


def test_save_history_json(tmp_path):
    path = tmp_path / "h.json"
    assert save_history(HISTORY, path) == str(path)
    data = json.loads(path.read_text())
    assert data == {"epoch": [1, 2, 3], "loss": [0.5, 0.25, 0.125], "lr": [0.1, 0.1, 0.01],
                    "val_loss": [1.0, None, 0.5]}


def test_save_history_csv_round_trips_floats(tmp_path):
    path = tmp_path / "h.csv"
    hist = dict(HISTORY, loss=[0.1 + 0.2, 1 / 3, 2.0])
    save_history(hist, path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "loss", "lr", "val_loss"]
    assert [float(r[1]) for r in rows[1:]] == hist["loss"]  # exact round trip
    assert rows[2][3] == "" and rows[3][0] == "3"


def test_save_history_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "h.json"
    save_history({"loss": [1.0]}, path)
    before = path.read_text()

    class Boom:
        pass

    with pytest.raises(TypeError):
        save_history({"loss": [Boom()]}, path)  # fails before writing
    assert path.read_text() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["h.json"]

    def disk_full(fd):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", disk_full)
        with pytest.raises(OSError, match="disk full"):
            save_history({"loss": [3.0]}, path)  # fails while writing
    assert path.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["h.json"]

    calls = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append((a, b)), real_replace(a, b)))
    save_history({"loss": [2.0]}, path)
    (src, dst), = calls
    assert os.path.dirname(src) == str(tmp_path) and dst == str(path) and src != dst
    assert json.loads(path.read_text()) == {"loss": [2.0]}


def test_save_history_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        save_history({"loss": [1.0]}, tmp_path / "h.txt")
    assert os.listdir(tmp_path) == []


def test_save_history_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        save_history({"loss": [1.0]}, tmp_path / "h.csv")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "h.csv").st_mode & 0o777 == 0o640


# --------------------------------------------------------------------------- progress output


class FakeBar:
    def __init__(self, total, desc):
        self.total, self.desc, self.n, self.posts, self.closed = total, desc, 0, [], 0

    def update(self, m):
        self.n += m

    def set_postfix(self, post, refresh=True):
        self.posts.append(post)

    def close(self):
        self.closed += 1


def test_progress_bar_counts_each_epoch_and_closes_after_its_last_batch(monkeypatch):
    bars = []
    monkeypatch.setattr(callbacks, "progress_bar", lambda total, desc: bars.append(FakeBar(total, desc)) or bars[-1])
    cb = ProgressBar()
    cb.on_train_begin(None, {"n": 10, "epochs": 3})
    cb.on_epoch_begin(None, 1, {"lr": 0.1})
    cb.on_batch_end(None, 0, {"size": 6, "loss": 0.5, "accuracy": 0.25})
    assert bars[0].desc == "epoch 2/3" and bars[0].total == 10 and not bars[0].closed
    cb.on_batch_end(None, 1, {"size": 4, "loss": 0.123456})
    assert bars[0].n == 10 and bars[0].closed == 1  # closed at the last example, before validation
    assert bars[0].posts == [{"loss": "0.5000", "acc": "0.2500"}, {"loss": "0.1235"}]
    cb.on_epoch_begin(None, 2, {})
    cb.on_train_end(None, {})  # stopped in the middle of an epoch
    assert bars[1].closed == 1 and bars[0].closed == 1


def test_epoch_line_text(capsys):
    history = {"lr": []}
    line = EpochLine()
    line.on_train_begin(None, {"n": 1000, "epochs": 10, "history": history})
    logs = {"loss": 0.31214, "accuracy": 0.90625, "val_loss": 0.28741, "val_accuracy": 0.915, "lr": 0.05,
            "epoch_time": 0.5, "epoch": 2}
    assert line.on_epoch_end(None, 1, logs) is None
    assert capsys.readouterr().out == ("epoch 2/10  loss 0.3121  acc 0.9062  val_loss 0.2874  val_acc 0.9150  "
                                       "2,000 img/s  0.5s\n")
    history["lr"].append(0.1)  # a schedule moved the rate since the first epoch: shown
    line.on_epoch_end(None, 1, dict(logs, lr=0.025, epoch_time=2.0))
    assert capsys.readouterr().out.endswith("val_acc 0.9150  lr 0.025  500 img/s  2.0s\n")
    assert callbacks.epoch_line({"loss": 1.0, "epoch_time": 1.0}, 0, 1, 5.0) == "epoch 1/1  loss 1.0000  5 img/s  1.0s"
