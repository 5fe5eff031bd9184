"""The command line against hostile files and careless use (issue 12): one line, a non-zero status, no traceback,
nothing hangs, no file is half-written, and the test set is never watched during training."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import (assert_one_line_error, checkpoint_header, npy_header_only, repo_env, rewrite_checkpoint,
                     run_main)

import fastcnn

pytestmark = pytest.mark.usefixtures("restore_num_threads", "in_tmp_path")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of ``fastcnn train`` (LeNet-5, one epoch on 128 images)."""
    from fastcnn.cli import main

    path = tmp_path_factory.mktemp("trained") / "a.npz"
    assert main(["train", "--epochs", "1", "--limit", "128", "--out", str(path)]) == 0
    return path


@pytest.fixture
def ckpt(trained, tmp_path):
    path = tmp_path / "ck.npz"
    path.write_bytes(trained.read_bytes())
    return path


def _images(path, arr):
    np.save(path, arr)
    return str(path)


# --------------------------------------------------------------------------- hangs


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
@pytest.mark.parametrize("command", ["evaluate", "summary", "predict-images"])
def test_fifo_is_refused_not_waited_on(tmp_path, trained, command):
    fifo = tmp_path / "p.npz"
    os.mkfifo(fifo)
    argv = ["predict", str(trained), str(fifo)] if command == "predict-images" else [command, str(fifo)]
    try:
        proc = subprocess.run([sys.executable, "-m", "fastcnn", *argv], capture_output=True, text=True,
                              timeout=60, env=repo_env(), cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fastcnn {' '.join(argv)} hung on a FIFO")
    assert_one_line_error(proc.returncode, proc.stderr, 1, "regular file")
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- data loss


def test_predict_out_on_a_full_disk_keeps_the_old_file(ckpt, tmp_path, capsys, monkeypatch):
    images = _images(tmp_path / "x.npy", np.zeros((3, 28, 28), np.uint8))
    out = tmp_path / "labels.npy"
    out.write_bytes(b"old labels")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    status, _, err = run_main(["predict", str(ckpt), images, "--out", str(out)], capsys)
    assert_one_line_error(status, err, 1, f"no space left on device writing {out}")
    assert out.read_bytes() == b"old labels"
    assert sorted(os.listdir(tmp_path)) == ["ck.npz", "labels.npy", "x.npy"]


# --------------------------------------------------------------------------- tracebacks and messages


def test_predict_npy_declaring_700_tib(ckpt, tmp_path, capsys):
    path = tmp_path / "x.npy"
    path.write_bytes(npy_header_only((2**40, 1, 28, 28)))
    status, _, err = run_main(["predict", str(ckpt), str(path)], capsys)
    assert_one_line_error(status, err, 1, "declares")


def test_predict_text_file_is_not_called_pickled(ckpt, tmp_path, capsys):
    path = tmp_path / "x.npy"
    path.write_text("0 1 2\n")
    status, _, err = run_main(["predict", str(ckpt), str(path)], capsys)
    assert_one_line_error(status, err, 1, "not a .npy file")
    assert "pickle" not in err


def test_predict_float_images_up_to_255_are_refused(ckpt, tmp_path, capsys):
    images = _images(tmp_path / "x.npy", np.full((2, 1, 28, 28), 255.0, np.float32))
    status, _, err = run_main(["predict", str(ckpt), images], capsys)
    assert_one_line_error(status, err, 1, "[0, 1]", "255", "uint8")


def test_predict_model_without_class_scores(tmp_path, capsys):
    from fastcnn.layers import Conv2d

    path = tmp_path / "conv.npz"
    fastcnn.Sequential(Conv2d(1, 2, 3), input_shape=(1, 28, 28)).save(path)
    images = _images(tmp_path / "x.npy", np.zeros((2, 28, 28), np.uint8))
    status, _, err = run_main(["predict", str(path), images], capsys)
    assert_one_line_error(status, err, 1, "class scores")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_nan_weights_and_zero_std_are_refused(ckpt, tmp_path, capsys, command):
    images = _images(tmp_path / "x.npy", np.zeros((2, 28, 28), np.uint8))
    argv = ["predict", str(ckpt), images] if command == "predict" else ["evaluate", str(ckpt), "--limit", "8"]
    param = np.load(ckpt)["param_0"]
    rewrite_checkpoint(ckpt, param_0=np.full_like(param, np.nan))
    status, out, err = run_main(argv, capsys)
    assert_one_line_error(status, err, 1, "param_0", "NaN")
    assert out == ""
    rewrite_checkpoint(ckpt, param_0=param, normalizer_std=np.zeros(1))
    status, out, err = run_main(argv, capsys)
    assert_one_line_error(status, err, 1, "standard deviations")


@pytest.mark.parametrize("change", [
    ("optimizer", []), ("normalizer", "x"), ("model", []), ("num_params", "3"), ("num_params", float("nan")),
    ("format_version", None), ("extra", [1]), ("buffers", {}), ("param_shapes", 5),
], ids=lambda c: f"{c[0]}={c[1]!r}" if isinstance(c, tuple) else str(c))
@pytest.mark.parametrize("command", ["summary", "evaluate"])
def test_wrong_json_types_are_one_line_errors(ckpt, capsys, change, command):
    header = checkpoint_header(ckpt)
    header[change[0]] = change[1]
    rewrite_checkpoint(ckpt, config=np.array(json.dumps(header)))
    argv = [command, str(ckpt)] + (["--limit", "4"] if command == "evaluate" else [])
    status, _, err = run_main(argv, capsys)
    assert_one_line_error(status, err, 1, str(ckpt))


def test_missing_normalisation_mean(ckpt, capsys):
    header = checkpoint_header(ckpt)
    header["normalizer"]["arrays"].remove("mean")
    rewrite_checkpoint(ckpt, config=np.array(json.dumps(header)), normalizer_mean=None)
    status, _, err = run_main(["evaluate", str(ckpt), "--limit", "4"], capsys)
    assert_one_line_error(status, err, 1, "mean")


# --------------------------------------------------------------------------- silent wrong results


def test_resume_with_another_model_is_refused(ckpt, capsys):
    status, _, err = run_main(["train", "--resume", str(ckpt), "--model", "vgg_small", "--epochs", "2"], capsys)
    assert_one_line_error(status, err, 2, "--model", "lenet5", "vgg_small", "drop --model")
    assert sorted(os.listdir(ckpt.parent)) == ["ck.npz"]


def test_resume_names_the_checkpoints_model(ckpt, capsys):
    header = checkpoint_header(ckpt)
    del header["extra"]["settings"]["model"]  # as if written without it: found by architecture
    rewrite_checkpoint(ckpt, config=np.array(json.dumps(header)))
    status, out, err = run_main(["train", "--resume", str(ckpt), "--model", "lenet5", "--epochs", "2",
                                 "--out", "b.npz"], capsys)
    assert status == 0, err
    assert out.startswith("lenet5 on MNIST sample")


@pytest.mark.parametrize("key,value", [("batch_size", "x"), ("limit", -3), ("lr", None), ("seed", 1.5),
                                       ("val_split", 2), ("augment", "yes")])
def test_resume_with_corrupt_settings(ckpt, capsys, key, value):
    header = checkpoint_header(ckpt)
    header["extra"]["settings"][key] = value
    if value is None:
        header["extra"]["settings"][key] = float("nan")
    rewrite_checkpoint(ckpt, config=np.array(json.dumps(header)))
    status, _, err = run_main(["train", "--resume", str(ckpt), "--epochs", "2", "--out", "b.npz"], capsys)
    assert_one_line_error(status, err, 1, str(ckpt))


def test_default_validation_is_held_out_from_training(capsys, monkeypatch):
    import fastcnn.cli.train as train

    seen = {}
    real = train._fit

    def spy(model, data, validation, *args, **kwargs):
        seen["train"], seen["val"] = len(data[0]), validation
        return real(model, data, validation, *args, **kwargs)

    monkeypatch.setattr(train, "_fit", spy)
    status, out, err = run_main(["train", "--epochs", "1", "--limit", "200", "--early-stopping", "1"], capsys)
    assert status == 0, err
    assert seen["train"] == 180 and len(seen["val"][0]) == 20
    assert "180 training / 20 validation / 50 test images" in out


def test_val_split_zero_trains_on_everything_and_refuses_early_stopping(capsys):
    status, _, err = run_main(["train", "--epochs", "1", "--limit", "64", "--val-split", "0",
                               "--early-stopping", "2"], capsys)
    assert_one_line_error(status, err, 2, "--early-stopping", "validation split")
    status, out, err = run_main(["train", "--epochs", "1", "--limit", "64", "--val-split", "0"], capsys)
    assert status == 0, err
    assert "64 training / no validation / 16 test images" in out
    assert "val_loss" not in out + err


def test_help_says_the_test_set_is_not_watched(capsys):
    status, out, _ = run_main(["train", "--help"], capsys)
    assert status == 0
    text = " ".join(out.split())
    assert "default: 0.1" in text and "never used for validation" in text
