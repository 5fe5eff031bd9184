"""Tests for the ``fastcnn`` command line (fastcnn.cli and ``python -m fastcnn``)."""

import re
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO, assert_one_line_error, make_fake_mnist, repo_env, run_main, write_idx

ACCURACY_LINE = re.compile(r"^test accuracy: (\d+\.\d\d)% \((\d+) images\)$", re.M)

# ``--threads`` changes the thread count of this process, and ``fastcnn train`` writes its checkpoint
# to the current directory: put the one back, keep the other out of the repository.
pytestmark = pytest.mark.usefixtures("restore_num_threads", "in_tmp_path")


# --------------------------------------------------------------------------- training


def test_train_small(capsys):
    status, out, err = run_main(
        ["train", "--epochs", "1", "--limit", "512", "--batch-size", "64"], capsys
    )
    assert status == 0, err
    assert "Traceback" not in out + err
    assert re.search(r"epoch", out + err, re.I), out + err  # fit's per-epoch report
    match = ACCURACY_LINE.search(out)
    assert match, out
    accuracy, n_images = float(match.group(1)), int(match.group(2))
    assert n_images == 128
    assert 0.0 <= accuracy <= 100.0
    # With no --val-split, 10 % of the training images are held out for validation (seeded, stratified):
    # the test set is used only for the final report, never watched during training (issue 12).
    assert "461 training / 51 validation / 128 test images" in out, out


def test_train_is_reproducible(capsys):
    argv = ["train", "--epochs", "1", "--limit", "256", "--seed", "3", "--threads", "1"]
    _, out1, _ = run_main(argv, capsys)
    _, out2, _ = run_main(argv, capsys)
    first, second = ACCURACY_LINE.search(out1), ACCURACY_LINE.search(out2)
    assert first and second
    assert first.group(0) == second.group(0)


def test_train_from_directory(tmp_path, capsys):
    directory = tmp_path / "mnist"
    make_fake_mnist(directory, n_train=96, n_test=32, seed=0)
    status, out, err = run_main(
        ["train", "--data", str(directory), "--epochs", "1", "--batch-size", "32"], capsys
    )
    assert status == 0, err
    assert str(directory) in out
    match = ACCURACY_LINE.search(out)
    assert match and int(match.group(2)) == 32, out


def test_train_diverged(capsys):
    status, out, err = run_main(
        ["train", "--epochs", "2", "--limit", "256", "--lr", "1000"], capsys
    )
    assert status == 1
    assert "Traceback" not in out + err
    assert ACCURACY_LINE.search(out), out
    assert re.search(r"^fastcnn: warning: .*(nan|inf)", err, re.M | re.I), err


class _FakeModel:
    """Stands in for LeNet-5 to check what the CLI passes to fit/evaluate."""

    calls = {}

    def parameters(self):
        return []

    def fit(self, x, y, **kwargs):
        self.calls["fit"] = (x, y, kwargs)
        print("epoch 1/1 (fake)")
        return {"loss": [0.5] * kwargs["epochs"]}

    def evaluate(self, x, y, batch_size=256):
        self.calls["evaluate"] = (x, y)
        return {"loss": 0.1, "accuracy": 0.987}

    def save(self, path, **kwargs):
        self.calls["save"] = (path, kwargs)


class _FakeSGD:
    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        _FakeModel.calls["sgd"] = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)


def test_train_preprocessing_and_arguments(monkeypatch, capsys):
    import fastcnn
    import fastcnn.models
    import fastcnn.optim
    from fastcnn.data import load_sample

    _FakeModel.calls = {}
    seeds = []
    monkeypatch.setitem(fastcnn.models.MODELS, "lenet5", lambda *a, **k: _FakeModel())
    monkeypatch.setattr(fastcnn.optim, "SGD", _FakeSGD)
    monkeypatch.setattr(fastcnn, "manual_seed", seeds.append, raising=False)

    status, out, err = run_main(
        ["train", "--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--momentum", "0.5",
         "--weight-decay", "0", "--seed", "7", "--limit", "1000"],
        capsys,
    )
    assert status == 0, err
    assert out.rstrip().endswith("test accuracy: 98.70% (250 images)")
    assert seeds == [7]
    assert _FakeModel.calls["sgd"] == dict(lr=0.01, momentum=0.5, weight_decay=0.0)

    x, y, kwargs = _FakeModel.calls["fit"]
    assert kwargs["epochs"] == 2 and kwargs["batch_size"] == 16 and kwargs["seed"] == 7
    assert kwargs["verbose"] is True
    assert isinstance(kwargs["optimizer"], _FakeSGD)
    x_val, y_val = kwargs["validation_data"]
    # The default validation split: a seeded, stratified 10 % of the training images (issue 12); the test
    # set is only evaluated at the end.
    assert x.dtype == np.float32 and x.shape == (900, 1, 28, 28)
    assert x_val.dtype == np.float32 and x_val.shape == (100, 1, 28, 28)
    # Standardised with the training split's statistics, applied to every set.
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-4
    from fastcnn.data import train_val_split

    (x_raw, y_raw), (x_test_raw, y_test_raw) = load_sample()
    (x_tr, y_tr), (x_va, y_va) = train_val_split(x_raw[:1000], y_raw[:1000], val_fraction=0.1, seed=7,
                                                 stratify=True)
    train01 = x_tr.astype(np.float64) / 255
    np.testing.assert_array_equal(y, y_tr)
    np.testing.assert_array_equal(y_val, y_va)
    x_eval, y_eval = _FakeModel.calls["evaluate"]
    expected_test = (x_test_raw[:250] / 255 - train01.mean()) / train01.std()
    np.testing.assert_allclose(x_eval, expected_test, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y_eval, y_test_raw[:250])
    path, saved = _FakeModel.calls["save"]
    assert path == "fastcnn-lenet5.npz" and saved["extra"]["epoch"] == 2
    assert saved["normalizer"]["mode"] == "standardize" and isinstance(saved["optimizer"], _FakeSGD)


# --------------------------------------------------------------------------- errors


BAD_ARGUMENTS = [
    (["train", "--epochs", "0"], ["--epochs", "positive integer", "0"]),
    (["train", "--epochs", "two"], ["--epochs", "'two'"]),
    (["train", "--batch-size", "-1"], ["--batch-size", "positive integer", "-1"]),
    (["train", "--lr", "0"], ["--lr", "positive"]),
    (["train", "--lr", "nan"], ["--lr", "finite"]),
    (["train", "--momentum", "1.5"], ["--momentum", "[0, 1)"]),
    (["train", "--weight-decay", "-0.1"], ["--weight-decay", "non-negative"]),
    (["train", "--limit", "0"], ["--limit"]),
    (["train", "--threads", "0"], ["--threads"]),
    (["train", "--threads", "100000"], ["--threads"]),
    (["train", "--no-such-option"], ["--no-such-option"]),
    (["frobnicate"], ["frobnicate"]),
    ([], ["COMMAND"]),
]


@pytest.mark.parametrize(
    "argv,fragments", BAD_ARGUMENTS, ids=[" ".join(a) or "no-args" for a, _ in BAD_ARGUMENTS]
)
def test_bad_arguments(argv, fragments, capsys):
    status, out, err = run_main(argv, capsys)
    assert_one_line_error(status, err, 2, *fragments)


def test_missing_data_directory(capsys):
    status, out, err = run_main(["train", "--data", "/nonexistent"], capsys)
    assert_one_line_error(status, err, 1, "/nonexistent")


def test_data_directory_without_files(tmp_path, capsys):
    status, out, err = run_main(["train", "--data", str(tmp_path)], capsys)
    assert_one_line_error(status, err, 1, str(tmp_path), "train-images-idx3-ubyte")


def test_corrupt_data_file(tmp_path, capsys):
    directory = tmp_path / "mnist"
    make_fake_mnist(directory, n_train=96, n_test=32, seed=0)
    path = directory / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    status, out, err = run_main(["train", "--data", str(directory)], capsys)
    assert_one_line_error(status, err, 1, "t10k-images-idx3-ubyte.gz")


def test_data_with_bad_labels(tmp_path, capsys):
    directory = tmp_path / "mnist"
    make_fake_mnist(directory, n_train=96, n_test=32, seed=0)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.full(32, 12, np.uint8), gz=True)
    status, out, err = run_main(["train", "--data", str(directory)], capsys)
    assert_one_line_error(status, err, 1, "labels 0-9", "12")


def test_help(capsys):
    status, out, _ = run_main(["train", "--help"], capsys)
    assert status == 0
    for option in ("--data", "--epochs", "--batch-size", "--lr", "--momentum",
                   "--weight-decay", "--threads", "--seed", "--limit"):
        assert option in out


# --------------------------------------------------------------------------- python -m


def _env():
    env = repo_env()
    env.setdefault("NUMBA_CACHE_DIR", "/tmp/numba_cache")
    return env


def test_python_m_fastcnn_train(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fastcnn", "train", "--epochs", "1", "--limit", "256"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = ACCURACY_LINE.search(proc.stdout)
    assert match and int(match.group(2)) == 64, proc.stdout


def test_python_m_fastcnn_bad_argument():
    proc = subprocess.run(
        [sys.executable, "-m", "fastcnn", "train", "--epochs", "0"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("fastcnn: error: argument --epochs")
    assert len(proc.stderr.strip().splitlines()) == 1
