"""Tests for the per-layer times of ``fastcnn bench models``: tiny models, one round, no timed assertions."""

import importlib.util
import json

import numpy as np
import pytest

import fastcnn
from fastcnn import bench
from fastcnn.bench.layers import LayerTimer, align, layer_tree
from fastcnn.bench.models import fastcnn_step
from fastcnn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Residual
from helpers import assert_one_line_error, run_main

ROW_KEYS = {"name", "depth", "kind", "layer", "input_shape", "forward_s", "backward_s", "share", "plan"}


@pytest.fixture(autouse=True)
def _threads(restore_num_threads):
    """``--threads`` changes the process's thread count: put it back."""


def _has_torch():
    return importlib.util.find_spec("torch") is not None


def _tiny_model():
    """A ReLU first (no backward: nothing before the first conv needs dx), a residual block, a 2x2 pool."""
    return fastcnn.Sequential(
        ReLU(), Conv2d(2, 4, 3, padding=1),
        Residual([Conv2d(4, 4, 3, padding=1), ReLU()], shortcut=Conv2d(4, 4, 1, bias=False)),
        ReLU(), MaxPool2d(2), Flatten(), Linear(4 * 3 * 3, 3), input_shape=(2, 6, 6))


def test_layer_tree_names_nested_layers():
    names = [(name, depth, type(layer).__name__) for name, depth, layer in layer_tree(_tiny_model())]
    assert names == [("0", 0, "ReLU"), ("1", 0, "Conv2d"), ("2", 0, "Residual"), ("2.block0", 1, "Conv2d"),
                     ("2.block1", 1, "ReLU"), ("2.shortcut0", 1, "Conv2d"), ("3", 0, "ReLU"), ("4", 0, "MaxPool2d"),
                     ("5", 0, "Flatten"), ("6", 0, "Linear")]


def test_layer_timer_times_every_layer_and_removes_its_timers():
    fastcnn.manual_seed(0)
    model = _tiny_model()
    x = np.random.default_rng(0).random((4, 2, 6, 6), dtype=np.float32)
    y = np.array([0, 1, 2, 1])
    expected = model.forward(x)
    timer = LayerTimer(model, fastcnn_step(model.train(), x, y))
    with timer:
        timer.run()
        timer.clear()
        timer.run()
        timer.run()
        result = timer.result()
    for layer in model.layers:
        for inner in layer.walk():
            assert "forward" not in vars(inner) and "backward" not in vars(inner)
    np.testing.assert_array_equal(model.forward(x), expected)  # the timers changed nothing
    assert result["step_s"] > 0 and len(timer.steps) == 2
    assert 0 <= result["rest_s"] < result["step_s"]
    rows = {row["name"]: row for row in result["rows"]}
    assert all(set(row) == ROW_KEYS for row in rows.values())
    assert all(row["forward_s"] > 0 for row in rows.values())
    assert rows["0"]["backward_s"] is None  # before the first layer with parameters: no backward call
    assert all(row["backward_s"] > 0 for name, row in rows.items() if name != "0")
    assert rows["0"]["input_shape"] == (2, 6, 6) and rows["4"]["input_shape"] == (4, 6, 6)
    assert rows["3"]["input_shape"] == (4, 3, 3)  # ReLU before MaxPool2d runs after it
    assert rows["2"]["layer"] == "Residual" and rows["2.block0"]["depth"] == 1
    assert rows["1"]["plan"]["input_grad"] is None  # the first conv computes no dx
    assert set(rows["1"]["plan"]) == {"forward", "weight_grad", "input_grad"}
    assert rows["2.block0"]["plan"] == {
        k: getattr(model.layers[2].block[0].plan((4, 4, 6, 6)), k).algorithm
        for k in ("forward", "weight_grad", "input_grad")}
    assert rows["6"]["plan"] is None and rows["3"]["plan"] is None
    top = sum(r["share"] for r in result["rows"] if r["depth"] == 0 and r["share"] is not None)
    assert 0 < top <= 1.0 + 1e-9


def test_align_pairs_layers_with_the_twins_modules():
    assert align(["Conv2d", "Residual", "ReLU", "GlobalAvgPool2d", "Linear"],
                 ["Conv2d", "BasicBlock", "AdaptiveAvgPool2d", "Flatten", "Linear"]) == {0: 0, 1: 1, 3: 2, 4: 4}
    assert align(["Conv2d", "ReLU"], ["Conv2d", "ReLU"]) == {0: 0, 1: 1}
    assert align(["Linear"], []) == {}
    # the pooling of MobileNet-style nets: AvgPool2d keeps PyTorch's name, GlobalMaxPool2d is AdaptiveMaxPool2d
    assert align(["Conv2d", "AvgPool2d", "ReLU", "GlobalMaxPool2d", "Linear"],
                 ["Conv2d", "AvgPool2d", "ReLU", "AdaptiveMaxPool2d", "Flatten", "Linear"]) == {
                     0: 0, 1: 1, 2: 2, 3: 3, 4: 5}


def test_bench_models_layer_tables_and_json(tmp_path):
    result = bench.bench_models(threads=1, batch=4, repeat=1, models=("lenet5", "resnet_small"), settle=0,
                                target=0, inference=False)
    assert result["layers"] is True
    lenet, resnet = result["models"]["lenet5"]["layers"], result["models"]["resnet_small"]["layers"]
    assert [r["kind"] for r in lenet["rows"]] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d",
                                                  "Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert lenet["rows"][0]["plan"]["input_grad"] is None and lenet["rows"][3]["plan"]["input_grad"] is not None
    nested = [r for r in resnet["rows"] if r["depth"] == 1]
    assert nested and all("." in r["name"] for r in nested)
    assert sum(r["kind"] == "Conv2d" for r in resnet["rows"]) == 15  # stem, 6 blocks x 2, 2 shortcuts
    assert all(r["plan"] for r in resnet["rows"] if r["kind"] == "Conv2d")
    if _has_torch():
        assert lenet["torch_step_s"] > 0 and lenet["torch_unpaired"] == []
        assert all(r["torch"]["module"] == r["kind"] and r["torch"]["forward_s"] > 0
                   for r in lenet["rows"])
        top = [r for r in resnet["rows"] if r["depth"] == 0]
        assert [r["torch"]["module"] for r in top if r["kind"] == "Residual"] == ["BasicBlock"] * 6
        assert all(r["torch"] is None for r in top[4:-2:2])  # the ReLU after each Residual is in BasicBlock
        assert [m["kind"] for m in resnet["torch_unpaired"]] == ["Flatten"]
    else:
        assert lenet["torch_step_s"] is None
    text = bench.format_models_table(result)
    for word in ("lenet5: per-layer times of the training step, batch 4", "plan fwd / dw / dx", "rest of the step",
                 "  block0 Conv2d(16, 16, k=3", "  shortcut0 Conv2d(16, 32, k=1", "Per layer: median"):
        assert word in text, word
    if _has_torch():
        assert "torch fwd ms" in text and "PyTorch modules without a fastcnn row: 10 Flatten" in text
    path = tmp_path / "models.json"
    bench.write_json(path, result)
    data = json.loads(path.read_text())
    assert data["layers"] is True
    assert {"step_s", "rest_s", "rows", "torch_step_s"} <= set(data["models"]["resnet_small"]["layers"])
    assert set(data["models"]["lenet5"]["layers"]["rows"][0]) >= ROW_KEYS


def _quick_models(monkeypatch):
    original = bench.bench_models
    seen = {}

    def quick(*a, **k):
        seen.update(k)
        return original(*a, **{**k, "settle": 0, "target": 0, "batch": 4})

    monkeypatch.setattr(bench, "bench_models", quick)
    return seen


@pytest.mark.parametrize("flag,on", [([], True), (["--layers"], True), (["--no-layers"], False)])
def test_bench_models_layers_flag(flag, on, monkeypatch, tmp_path, capsys):
    seen = _quick_models(monkeypatch)
    path = tmp_path / "m.json"
    status, out, err = run_main(["bench", "models", "--models", "lenet5", "--repeat", "1", "--threads", "1",
                                 "--no-inference", "--json", str(path)] + flag, capsys)
    assert status == 0, err
    assert seen["layers"] is on
    assert ("per-layer times" in out) is on
    data = json.loads(path.read_text())
    assert data["layers"] is on and ("layers" in data["models"]["lenet5"]) is on


def test_bench_models_layers_help_and_bad_flag(capsys):
    status, out, err = run_main(["bench", "models", "--help"], capsys)
    assert status == 0 and "--layers, --no-layers" in out
    status, out, err = run_main(["bench", "models", "--layers=yes"], capsys)
    assert_one_line_error(status, err, 2, "--layers")
    assert out == ""
