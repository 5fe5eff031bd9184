"""fastcnn.plot and ``fastcnn plot``: every picture is a real, non-blank PNG, written atomically."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastcnn
from fastcnn import plot
from fastcnn.cli import main
from fastcnn.data import load_sample, to_float
from fastcnn.layers import Conv2d
from helpers import assert_one_line_error, run_main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = {"epoch": [1, 2, 3], "loss": [1.2, 0.6, 0.4], "accuracy": [0.6, 0.8, 0.9],
           "val_loss": [0.9, 0.7, None], "val_accuracy": [0.7, 0.75, 0.8], "lr": [0.05, 0.05, 0.005]}


def needs_matplotlib():
    pytest.importorskip("matplotlib")


def assert_png(path):
    """A PNG file with more than one colour in it."""
    import matplotlib.image

    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, path
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels[..., :3].var() > 1e-3, f"{path} is blank"


def assert_only(folder, *names):
    """Nothing but ``names`` in ``folder``: no temporary file left behind."""
    assert sorted(os.listdir(folder)) == sorted(names)


# --------------------------------------------------------------------------- the functions


@pytest.mark.parametrize("history", [HISTORY, {k: v for k, v in HISTORY.items() if k != "lr"},
                                     {"loss": [0.5], "lr": [0.1]}], ids=["lr-changed", "no-lr", "one-epoch"])
def test_plot_history_writes_a_png(tmp_path, history):
    needs_matplotlib()
    path = tmp_path / "curves.png"
    assert plot.plot_history(history, path) == str(path)
    assert_png(path)
    assert_only(tmp_path, "curves.png")


def test_plot_history_needs_a_loss(tmp_path):
    needs_matplotlib()
    with pytest.raises(ValueError, match="no 'loss' values"):
        plot.plot_history({"accuracy": [0.5]}, tmp_path / "c.png")
    with pytest.raises(TypeError, match="dict"):
        plot.plot_history([0.5], tmp_path / "c.png")
    assert_only(tmp_path)


@pytest.mark.parametrize("layer", [0, 1, -1])
def test_plot_filters_of_lenet5(tmp_path, layer):
    needs_matplotlib()
    fastcnn.manual_seed(0)
    path = plot.plot_filters(fastcnn.models.lenet5(), tmp_path / "filters.png", layer=layer)
    assert_png(path)
    assert_only(tmp_path, "filters.png")


@pytest.mark.parametrize("in_channels, out_channels", [(1, 12), (3, 10), (12, 10)],
                         ids=["one-input-wrapped", "rows-per-input", "mean-of-inputs"])
def test_plot_filters_of_a_conv_layer(tmp_path, in_channels, out_channels):
    needs_matplotlib()
    fastcnn.manual_seed(1)
    path = plot.plot_filters(Conv2d(in_channels, out_channels, 3), tmp_path / "f.png")
    assert_png(path)


def test_plot_filters_rejects_models_without_that_conv(tmp_path):
    needs_matplotlib()
    model = fastcnn.models.lenet5()
    with pytest.raises(ValueError, match="0 to 1; got 2"):
        plot.plot_filters(model, tmp_path / "f.png", layer=2)
    with pytest.raises(ValueError, match="no Conv2d"):
        plot.plot_filters(fastcnn.Sequential(fastcnn.layers.Flatten()), tmp_path / "f.png")
    assert_only(tmp_path)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 1, 28, 28), (28, 28)])
def test_plot_feature_maps_of_one_digit(tmp_path, shape):
    needs_matplotlib()
    fastcnn.manual_seed(0)
    model = fastcnn.models.lenet5()
    _, (x_test, _) = load_sample()
    image = to_float(x_test[0]).reshape(shape)
    path = plot.plot_feature_maps(model, image, tmp_path / "maps.png")
    assert_png(path)
    assert_only(tmp_path, "maps.png")
    assert model.training  # the mode is restored
    assert all(getattr(layer, "_x", None) is None for layer in model.layers)  # nothing kept for backward


def test_plot_feature_maps_rejects_a_batch_or_a_wrong_size(tmp_path):
    needs_matplotlib()
    model = fastcnn.models.lenet5()
    with pytest.raises(ValueError, match="one image"):
        plot.plot_feature_maps(model, np.zeros((2, 1, 28, 28)), tmp_path / "m.png")
    with pytest.raises(ValueError, match="cannot pass"):
        plot.plot_feature_maps(model, np.zeros((1, 20, 20)), tmp_path / "m.png")
    assert_only(tmp_path)


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    for call in (lambda p: plot.plot_history(HISTORY, p),
                 lambda p: plot.plot_filters(Conv2d(1, 2, 3), p)):
        with pytest.raises(ImportError, match=r"pip install 'fastcnn\[plot\]'"):
            call(tmp_path / "x.png")
    assert_only(tmp_path)


def test_importing_fastcnn_does_not_import_matplotlib():
    code = ("import sys, fastcnn, fastcnn.plot, fastcnn.cli; "
            "sys.exit('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint from ``fastcnn train --epochs 1 --limit 128``, and what train printed."""
    folder = tmp_path_factory.mktemp("ckpt")
    out = folder / "tiny.npz"
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        status = main(["train", "--epochs", "1", "--limit", "128", "--out", str(out)])
    assert status == 0, buffer.getvalue()
    return out, buffer.getvalue()


def test_train_writes_the_history_beside_the_checkpoint(checkpoint):
    from fastcnn.serialize import load_checkpoint

    out, printed = checkpoint
    history_path = out.parent / "tiny.history.json"
    assert f"history written to {history_path}" in printed
    with open(history_path) as f:
        history = json.load(f)
    assert history == load_checkpoint(out)["history"]
    assert len(history["loss"]) == 1 and history["epoch"] == [1]


def test_plot_command_writes_the_three_pictures(checkpoint, tmp_path, capsys):
    needs_matplotlib()
    out, _ = checkpoint
    curves, filters, maps = tmp_path / "c.png", tmp_path / "f.png", tmp_path / "m.png"
    status, printed, err = run_main(["plot", str(out), "--curves", str(curves), "--filters", str(filters),
                                "--feature-maps", str(maps), "--image-index", "7"], capsys)
    assert status == 0, err
    for path in (curves, filters, maps):
        assert_png(path)
        assert str(path) in printed
    assert "test image 7" in printed
    assert_only(tmp_path, "c.png", "f.png", "m.png")


@pytest.mark.parametrize("argv, expected, fragment", [
    ([], 2, "at least one of --curves"),
    (["--feature-maps", "m.png", "--image-index", "1000"], 2, "0 to 999"),
    (["--filters", "no/such/folder/f.png"], 2, "does not exist"),
])
def test_plot_command_rejects_bad_arguments(checkpoint, tmp_path, capsys, monkeypatch, argv, expected, fragment):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_main(["plot", str(checkpoint[0]), *argv], capsys)
    assert_one_line_error(status, err, expected, fragment)
    assert_only(tmp_path)


def test_plot_command_without_matplotlib_says_how_to_install_it(checkpoint, tmp_path, capsys, monkeypatch):
    """Arguments and data are checked first (whether or not matplotlib is there), then the missing extra is named."""
    def missing(what="plotting"):
        raise ImportError(f"{what} needs matplotlib: pip install 'fastcnn[plot]'")

    monkeypatch.setattr(fastcnn.plot, "require_matplotlib", missing)
    monkeypatch.chdir(tmp_path)
    status, _, err = run_main(["plot", str(checkpoint[0]), "--filters", "f.png"], capsys)
    assert_one_line_error(status, err, 1, "pip install 'fastcnn[plot]'")
    status, _, err = run_main(["plot", str(checkpoint[0]), "--feature-maps", "m.png", "--image-index", "1000"],
                              capsys)
    assert_one_line_error(status, err, 2, "0 to 999")
    assert_only(tmp_path)


def test_plot_command_on_a_missing_checkpoint(tmp_path, capsys):
    status, _, err = run_main(["plot", str(tmp_path / "none.npz"), "--filters", str(tmp_path / "f.png")], capsys)
    assert_one_line_error(status, err, 1, "none.npz")


def test_plot_command_without_matplotlib(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status, _, err = run_main(["plot", str(checkpoint[0]), "--filters", str(tmp_path / "f.png")], capsys)
    assert_one_line_error(status, err, 1, "pip install 'fastcnn[plot]'")
    assert_only(tmp_path)
