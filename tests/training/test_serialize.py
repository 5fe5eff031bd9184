"""Saving and loading models and checkpoints (fastcnn.serialize, Sequential.save, fastcnn.load)."""

import json
import os

import numpy as np
import pytest

import fastcnn
from fastcnn import serialize
from fastcnn.layers import (AvgPool2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU,
                            Sigmoid, Tanh)
from fastcnn.optim import SGD
from helpers import checkpoint_header, rewrite_checkpoint, weights


def every_layer_model(dtype):
    """One model holding every layer class that checkpoints support, with non-default arguments."""
    return fastcnn.Sequential(
        Conv2d(1, 4, 3, padding=1, dtype=dtype),
        Tanh(),
        MaxPool2d(2, ceil_mode=True),
        Conv2d(4, 6, (3, 1), stride=(1, 2), bias=False, algorithm="im2col", dtype=dtype),
        Sigmoid(),
        AvgPool2d(2, stride=1, padding=1),
        ReLU(),
        Dropout(0.25, seed=3),
        GlobalAvgPool2d(),
        Flatten(),
        Linear(6, 3, dtype=dtype),
        input_shape=(1, 11, 9),
    )


def small_model(dtype=np.float64):
    fastcnn.manual_seed(1)
    return fastcnn.Sequential(Conv2d(1, 3, 3, dtype=dtype), ReLU(), MaxPool2d(2), Flatten(),
                              Linear(3 * 3 * 3, 4, dtype=dtype), input_shape=(1, 8, 8))


def test_lenet5_round_trip(tmp_path):
    fastcnn.manual_seed(0)
    model = fastcnn.models.lenet5()
    path = tmp_path / "lenet5.npz"
    model.save(path)
    loaded = fastcnn.load(path)
    assert loaded.input_shape == (1, 28, 28)
    assert repr(loaded) == repr(model)
    for a, b in zip(weights(model), weights(loaded)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert model.get_config() == loaded.get_config()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_layer_round_trip(tmp_path, dtype):
    model = every_layer_model(dtype)
    path = tmp_path / "model.npz"
    model.save(str(path))
    loaded = fastcnn.load(str(path))
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.input_shape == (1, 11, 9)
    assert [repr(layer) for layer in loaded.layers] == [repr(layer) for layer in model.layers]
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    x = np.random.default_rng(1).standard_normal((4, 1, 11, 9)).astype(dtype)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    header = checkpoint_header(path)
    assert header["format_version"] == serialize.FORMAT_VERSION
    assert header["fastcnn_version"] == fastcnn.__version__


def test_load_does_not_disturb_the_init_generator(tmp_path):
    fastcnn.models.lenet5().save(tmp_path / "m.npz")
    fastcnn.manual_seed(5)
    expected = weights(fastcnn.models.lenet5())
    fastcnn.manual_seed(5)
    fastcnn.load(tmp_path / "m.npz")
    for a, b in zip(expected, weights(fastcnn.models.lenet5())):
        np.testing.assert_array_equal(a, b)


def test_training_resumes_bitwise(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 1, 8, 8))
    y = rng.integers(0, 4, 24)

    def fit(model, opt, seed):
        model.fit(x, y, epochs=1, batch_size=8, optimizer=opt, verbose=False, seed=seed)

    model = small_model()
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)
    fit(model, opt, 0)
    model.save(tmp_path / "ck.npz", optimizer=opt, extra={"epoch": 1, "history": {"loss": [1.5]}})
    fit(model, opt, 1)  # uninterrupted

    ck = serialize.load_checkpoint(tmp_path / "ck.npz")
    assert ck["epoch"] == 1 and ck["history"] == {"loss": [1.5]}
    resumed = ck["model"]
    opt2 = SGD(resumed.parameters(), lr=1.0)
    opt2.load_state_dict(ck["optimizer_state"])
    assert (opt2.lr, opt2.momentum, opt2.weight_decay, opt2.nesterov) == (0.05, 0.9, 1e-3, True)
    fit(resumed, opt2, 1)
    for a, b in zip(weights(model), weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_optimizer_without_momentum_buffers(tmp_path):
    model = small_model()
    opt = SGD(model.parameters(), lr=0.1)
    model.save(tmp_path / "ck.npz", optimizer=opt)
    state = serialize.load_checkpoint(tmp_path / "ck.npz")["optimizer_state"]
    assert state["momentum_buffers"] == [None] * len(model.parameters())
    assert "momentum_0" not in np.load(tmp_path / "ck.npz").files
    SGD(model.parameters(), lr=1.0).load_state_dict(state)


def test_normalizer_schedule_and_extra(tmp_path):
    model = small_model()
    norm = {"mean": np.array([0.13], np.float32), "std": np.array([0.31], np.float32), "mode": "global",
            "eps": 1e-7}
    extra = {"epoch": 3, "seed": 9, "history": {"loss": [1.0, 0.5, 0.25]}, "rng": {"state": 2**70}}
    model.save(tmp_path / "ck.npz", normalizer=norm, extra=extra, schedule={"name": "step", "last_epoch": 2})
    ck = serialize.load_checkpoint(tmp_path / "ck.npz")
    assert ck["extra"] == extra and ck["epoch"] == 3
    assert ck["schedule_state"] == {"name": "step", "last_epoch": 2}
    assert set(ck["normalizer_state"]) == set(norm)
    np.testing.assert_array_equal(ck["normalizer_state"]["mean"], norm["mean"])
    assert ck["normalizer_state"]["mean"].dtype == np.float32
    assert ck["normalizer_state"]["mode"] == "global" and ck["normalizer_state"]["eps"] == 1e-7
    assert ck["optimizer_state"] is None


def test_object_arrays_and_unjsonable_extra_are_refused_on_save(tmp_path):
    model = small_model()
    path = tmp_path / "ck.npz"
    with pytest.raises(ValueError, match="object"):
        model.save(path, normalizer={"bad": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="JSON"):
        model.save(path, extra={"f": object()})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("target", ["savez", "replace"])
def test_failed_save_leaves_old_file_untouched(tmp_path, monkeypatch, target):
    path = tmp_path / "ck.npz"
    small_model().save(path)
    before = path.read_bytes()
    fastcnn.manual_seed(99)
    other = fastcnn.Sequential(Conv2d(1, 3, 3, dtype=np.float64), ReLU(), MaxPool2d(2), Flatten(),
                               Linear(27, 4, dtype=np.float64))

    def savez_then_fail(file, *args, **kwargs):
        file.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    def fail_replace(src, dst):
        raise OSError("rename failed")

    if target == "savez":
        monkeypatch.setattr(np, "savez", savez_then_fail)
    else:
        monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]
    fastcnn.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        fastcnn.load(tmp_path / "nope.npz")


def test_truncated_file(tmp_path):
    path = tmp_path / "ck.npz"
    fastcnn.models.lenet5().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="ck.npz"):
        fastcnn.load(path)


@pytest.mark.parametrize("content", [b"", os.urandom(1000), b"\x80\x04garbage", b"PK\x03\x04" + bytes(100)],
                         ids=["empty", "random", "pickle-ish", "zip-header"])
def test_foreign_bytes(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a fastcnn checkpoint"):
        fastcnn.load(path)


def test_corrupt_contents(tmp_path):
    path = tmp_path / "ck.npz"
    model = small_model()

    def fresh():
        model.save(path)
        return path

    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="no 'config'"):
        fastcnn.load(path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not a fastcnn checkpoint"):
        fastcnn.load(tmp_path / "single.npy")

    rewrite_checkpoint(fresh(), config=np.array("{not json"))
    with pytest.raises(ValueError, match="JSON"):
        fastcnn.load(path)

    rewrite_checkpoint(fresh(), config=np.array(json.dumps({"hello": 1})))
    with pytest.raises(ValueError, match="format"):
        fastcnn.load(path)

    rewrite_checkpoint(fresh(), param_1=np.zeros(5))
    with pytest.raises(ValueError, match="param_1"):
        fastcnn.load(path)

    rewrite_checkpoint(fresh(), param_0=np.zeros((3, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="param_0"):
        fastcnn.load(path)

    rewrite_checkpoint(fresh(), param_3=None)
    with pytest.raises(ValueError, match="parameters"):
        fastcnn.load(path)

    header = checkpoint_header(fresh())
    header["model"]["layers"][0]["class"] = "Lambda"
    rewrite_checkpoint(path, config=np.array(json.dumps(header)))
    with pytest.raises(ValueError, match="Lambda"):
        fastcnn.load(path)

    header = checkpoint_header(fresh())
    header["format_version"] = serialize.FORMAT_VERSION + 1
    rewrite_checkpoint(path, config=np.array(json.dumps(header)))
    with pytest.raises(ValueError, match="newer"):
        fastcnn.load(path)


MARKER = []


def _run_on_unpickle(path):
    MARKER.append(path)
    return 0


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_run_on_unpickle, (self.path,))


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    fastcnn.models.lenet5().save(path)
    rewrite_checkpoint(path, param_0=np.array([_Evil(str(path))], dtype=object))
    MARKER.clear()
    with pytest.raises(ValueError, match="pickle"):
        fastcnn.load(path)
    assert MARKER == []
    with np.load(path, allow_pickle=True) as npz:  # the payload is real
        npz["param_0"]
    assert MARKER == [str(path)]


def test_unknown_layer_class_is_refused_on_save(tmp_path):
    class MyReLU(ReLU):
        pass

    model = fastcnn.Sequential(Flatten(), MyReLU())
    with pytest.raises(ValueError, match="MyReLU"):
        model.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_checkpoint_gets_the_umask_mode(tmp_path):
    """Checkpoints are ordinary files (they were written 0600, as tempfile makes them)."""
    old = os.umask(0o022)
    try:
        small_model().save(tmp_path / "a.npz")
        os.umask(0o007)
        small_model().save(tmp_path / "b.npz")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.npz").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "b.npz").st_mode & 0o777 == 0o660


class Scaled(ReLU):
    """A layer class defined at module level: it registers itself and checkpoints can hold it."""

    def __init__(self, factor=2.0):
        self.factor = float(factor)

    def forward(self, x):
        return super().forward(x) * x.dtype.type(self.factor)

    def backward(self, dy, need_input_grad=True):
        return super().backward(dy * dy.dtype.type(self.factor), need_input_grad)

    def get_config(self):
        return {"factor": self.factor}

    def __repr__(self):
        return f"Scaled(factor={self.factor})"


def test_a_module_level_layer_class_round_trips(tmp_path):
    assert serialize.LAYERS["Scaled"] is Scaled
    fastcnn.manual_seed(3)
    model = fastcnn.Sequential(Flatten(), Linear(4, 3, dtype=np.float64), Scaled(0.5), input_shape=(1, 2, 2))
    model.save(tmp_path / "s.npz")
    same = fastcnn.load(tmp_path / "s.npz")
    assert type(same.layers[2]) is Scaled and same.layers[2].factor == 0.5
    x = np.random.default_rng(0).random((2, 1, 2, 2))
    np.testing.assert_array_equal(same.predict(x), model.predict(x))
