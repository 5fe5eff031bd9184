"""The checkpoint workflow of the command line: train --out/--resume, evaluate, predict, summary."""

import re

import numpy as np
import pytest

import fastcnn
from fastcnn import serialize
from fastcnn.cli import main
from fastcnn.data import load_sample
from helpers import assert_one_line_error, checkpoint_arrays, make_fake_mnist, run_main

TINY = ["--limit", "256", "--batch-size", "64"]

# Put back the thread count ``--threads`` changes, run in tmp_path (``train`` writes to the current
# directory) and ignore a FASTCNN_DATA of the environment.
pytestmark = pytest.mark.usefixtures("restore_num_threads", "in_tmp_path", "without_fastcnn_data")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """One tiny trained checkpoint, shared by the evaluate / predict / summary tests."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.npz"
    assert main(["train", "--epochs", "1", "--seed", "1", "--out", str(path), *TINY]) == 0
    return path


# --------------------------------------------------------------------------- train / resume


def test_default_out_is_written_in_the_current_directory(tmp_path, capsys):
    status, out, err = run_main(["train", "--epochs", "1", *TINY], capsys)
    assert status == 0, err
    path = tmp_path / "fastcnn-lenet5.npz"
    assert path.is_file()
    assert "checkpoint written to fastcnn-lenet5.npz (epoch 1)" in out
    assert out.rstrip().splitlines()[-1].startswith("test accuracy: ")
    ck = serialize.load_checkpoint(path)
    assert ck["epoch"] == 1 and ck["extra"]["seed"] == 0
    assert len(ck["history"]["loss"]) == 1
    assert ck["normalizer_state"]["mode"] == "standardize"
    assert ck["optimizer_state"]["momentum"] == 0.9
    assert all(b is not None for b in ck["optimizer_state"]["momentum_buffers"])
    assert ck["model"].input_shape == (1, 28, 28)


@pytest.mark.parametrize("options", [[], ["--augment", "--schedule", "step:1:0.5", "--val-split", "0.25"]],
                         ids=["plain", "augment-schedule-val"])
def test_resume_gives_the_same_weights(tmp_path, capsys, options):
    def train(*argv):
        status, out, err = run_main(["train", *argv], capsys)
        assert status == 0, err
        return out

    train("--epochs", "1", "--seed", "5", "--out", "a.npz", *TINY, *options)
    out = train("--resume", "a.npz", "--epochs", "2", "--seed", "5", "--out", "b.npz")
    assert "resuming a.npz after epoch 1" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    train("--epochs", "2", "--seed", "5", "--out", "c.npz", *TINY, *options)
    b, c = checkpoint_arrays(tmp_path / "b.npz"), checkpoint_arrays(tmp_path / "c.npz")
    assert sorted(b) == sorted(c)
    for key in b:
        if key != "config":
            np.testing.assert_array_equal(b[key], c[key], err_msg=key)
    hb = serialize.load_checkpoint(tmp_path / "b.npz")["history"]
    hc = serialize.load_checkpoint(tmp_path / "c.npz")["history"]
    assert hb["loss"] == hc["loss"] and hb["epoch"] == [1, 2]
    a = checkpoint_arrays(tmp_path / "a.npz")
    assert not np.array_equal(a["param_0"], b["param_0"])


def test_resume_needs_more_epochs(tmp_path, capsys, checkpoint):
    status, _, err = run_main(["train", "--resume", str(checkpoint), "--epochs", "1"], capsys)
    assert_one_line_error(status, err, 2, "--epochs", "already trained 1 epoch")


def test_early_stopping_is_not_a_failure(capsys):
    status, out, err = run_main(["train", "--epochs", "3", "--early-stopping", "1", "--lr", "1e-6",
                            "--val-split", "0.5", "--out", "es.npz", *TINY], capsys)
    assert status == 0, err
    assert "checkpoint written to es.npz" in out


def test_train_errors(tmp_path, capsys):
    status, _, err = run_main(["train", "--out", str(tmp_path / "no" / "such" / "x.npz")], capsys)
    assert_one_line_error(status, err, 2, "--out")
    status, _, err = run_main(["train", "--data", "mnist"], capsys)
    assert_one_line_error(status, err, 1, "--data-dir", "FASTCNN_DATA")
    status, _, err = run_main(["train", "--schedule", "cosine:3"], capsys)
    assert_one_line_error(status, err, 2, "--schedule", "cosine")
    status, _, err = run_main(["train", "--val-split", "1.5"], capsys)
    assert_one_line_error(status, err, 2, "--val-split")
    status, _, err = run_main(["train", "--resume", "missing.npz"], capsys)
    assert_one_line_error(status, err, 1, "missing.npz")


def test_mnist_from_fastcnn_data(tmp_path, monkeypatch, capsys):
    directory = tmp_path / "data" / "fashion-mnist"
    make_fake_mnist(directory, n_train=64, n_test=16, seed=0, draw_dtype=np.int64)
    monkeypatch.setenv("FASTCNN_DATA", str(tmp_path / "data"))
    status, out, err = run_main(["train", "--data", "fashion-mnist", "--epochs", "1", "--out", "f.npz"], capsys)
    assert status == 0, err
    assert f"Fashion-MNIST from {directory}" in out
    status, out, err = run_main(["evaluate", "f.npz"], capsys)  # the checkpoint remembers its data
    assert status == 0, err
    assert "16 test images" in out


# --------------------------------------------------------------------------- evaluate / predict / summary


def _expected_logits(checkpoint, images):
    ck = serialize.load_checkpoint(checkpoint)
    state = ck["normalizer_state"]
    x = images.astype(np.float32) / np.float32(255)
    x = (x - state["mean"].astype(np.float32)[None, :, None, None]) / state["std"].astype(np.float32)[None, :, None, None]
    return ck["model"].predict(x)


def test_evaluate(checkpoint, capsys):
    status, out, err = run_main(["evaluate", str(checkpoint), "--limit", "200"], capsys)
    assert status == 0, err
    (_, _), (x_test, y_test) = load_sample()
    logits = _expected_logits(checkpoint, x_test[:200])
    accuracy = (logits.argmax(axis=1) == y_test[:200]).mean()
    assert re.search(r"^loss: \d+\.\d{4}$", out, re.M), out
    assert f"accuracy: {100 * accuracy:.2f}%" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s+\d\s", line)]
    assert len(rows) == 10 and all(len(r) == 12 for r in rows)
    counts = np.array([[int(v) for v in r[1:11]] for r in rows])
    np.testing.assert_array_equal(counts.sum(axis=1), np.bincount(y_test[:200], minlength=10))
    assert np.trace(counts) == round(accuracy * 200)


def test_predict(checkpoint, tmp_path, capsys):
    (_, _), (x_test, _) = load_sample()
    images = x_test[:7]
    expected = _expected_logits(checkpoint, images).argmax(axis=1)
    np.save(tmp_path / "u8.npy", images)                      # (N, 1, 28, 28) uint8
    np.save(tmp_path / "flat.npy", images[:, 0])              # (N, 28, 28) uint8
    np.save(tmp_path / "f32.npy", images[:, 0].astype(np.float32) / np.float32(255))  # float in [0, 1]
    for name in ("u8.npy", "flat.npy", "f32.npy"):
        status, out, err = run_main(["predict", str(checkpoint), name], capsys)
        assert status == 0, err
        assert [int(v) for v in out.split()] == expected.tolist(), name
    status, out, err = run_main(["predict", str(checkpoint), "u8.npy", "--out", "labels.npy"], capsys)
    assert status == 0, err
    assert "7 labels written to labels.npy" in out
    labels = np.load(tmp_path / "labels.npy", allow_pickle=False)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, expected)


def test_predict_errors(checkpoint, tmp_path, capsys):
    np.save(tmp_path / "bad_shape.npy", np.zeros((3, 32, 32), np.uint8))
    np.save(tmp_path / "bad_dtype.npy", np.zeros((3, 28, 28), np.int32))
    np.save(tmp_path / "objects.npy", np.array([object()] * 3, dtype=object), allow_pickle=True)
    (tmp_path / "junk.npy").write_bytes(b"junk")
    for name, fragment in (("bad_shape.npy", "(3, 32, 32)"), ("bad_dtype.npy", "int32"),
                           ("objects.npy", "objects.npy"), ("junk.npy", "junk.npy"), ("none.npy", "none.npy")):
        status, _, err = run_main(["predict", str(checkpoint), name], capsys)
        assert_one_line_error(status, err, 1, fragment)


def test_summary(checkpoint, capsys):
    status, out, err = run_main(["summary", str(checkpoint)], capsys)
    assert status == 0, err
    assert "Total params: 61,706" in out and "trained 1 epoch" in out
    assert "Conv2d(1, 6, kernel_size=5" in out
    status, out, err = run_main(["summary", "--model", "lenet5"], capsys)
    assert status == 0, err
    assert "Total params: 61,706" in out and "Input shape: (None, 1, 28, 28)" in out
    status, out, err = run_main(["summary", "--model", "lenet5", "--plans"], capsys)
    assert status == 0, err
    assert "weight_grad: rows" in out and "input_grad: batch_last" in out and "scratch" in out
    status, out, err = run_main(["summary", str(checkpoint), "--plans", "--batch-size", "4"], capsys)
    assert status == 0, err
    assert "forward: rows" in out and "input_grad: nchw" in out
    status, _, err = run_main(["summary", "--model", "lenet5", "--plans", "--batch-size", "0"], capsys)
    assert_one_line_error(status, err, 2, "--batch-size")
    status, _, err = run_main(["summary"], capsys)
    assert_one_line_error(status, err, 2, "checkpoint")
    status, _, err = run_main(["summary", "--model", "resnet"], capsys)
    assert_one_line_error(status, err, 2, "resnet")


def test_summary_shows_nested_blocks_one_layer_per_line(capsys):
    """resnet_small's residual blocks: a row with the block's total, then its paths indented, one layer per
    line (a block's repr on one line made 299-character lines); the total is the model's."""
    status, out, err = run_main(["summary", "--model", "resnet_small"], capsys)
    assert status == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 105
    model = fastcnn.models.build("resnet_small")  # as the command builds it: for MNIST's 1x28x28 images
    assert f"Total params: {sum(p.size for p in model.parameters()):,}" in out
    blocks = [i for i, line in enumerate(lines) if line.startswith("Residual ")]
    assert len(blocks) == sum(type(layer).__name__ == "Residual" for layer in model.layers) > 0
    for i in blocks:
        assert lines[i + 1] == "  block:" and lines[i + 2].startswith("    Conv2d(")
    assert sum(line.lstrip().startswith("Conv2d(") for line in lines) == sum(
        type(layer).__name__ == "Conv2d" for top in model.layers for layer in top.walk())
    assert out.count("  shortcut:") == len(blocks)


@pytest.mark.parametrize("command", [["evaluate"], ["predict", "IMAGES"], ["summary"], ["train", "--resume"]])
@pytest.mark.parametrize("damage", ["truncated", "random", "missing"])
def test_corrupt_checkpoint_is_one_line(checkpoint, tmp_path, capsys, command, damage):
    path = tmp_path / "bad.npz"
    if damage == "truncated":
        data = checkpoint.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    np.save(tmp_path / "images.npy", np.zeros((2, 28, 28), np.uint8))
    argv = [command[0], str(path)] if command[0] != "train" else ["train", "--resume", str(path)]
    if command[0] == "predict":
        argv.append(str(tmp_path / "images.npy"))
    status, out, err = run_main(argv, capsys)
    assert_one_line_error(status, err, 1, "bad.npz")


@pytest.mark.parametrize("name", ["convnet", "resnet_small"])
def test_train_and_summary_take_zoo_models(name, tmp_path, capsys):
    from fastcnn.cli import main

    out = tmp_path / "zoo.npz"
    assert main(["train", "--model", name, "--epochs", "1", "--limit", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{name} on MNIST sample" in text and "test accuracy:" in text
    assert main(["summary", "--model", name]) == 0
    assert "Total params" in capsys.readouterr().out
    assert fastcnn.load(out).parameters()


def test_train_default_checkpoint_is_named_after_the_model(tmp_path, monkeypatch, capsys):
    from fastcnn.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", "convnet", "--epochs", "1", "--limit", "64"]) == 0
    assert (tmp_path / "fastcnn-convnet.npz").is_file()
