"""Tuned convolution plans (``algorithm="tuned"``): the fastest candidate is kept, runs as itself, and persists."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import naive as nv
from helpers import repo_env
from fastcnn import kernels
from fastcnn.kernels import conv_tune
from fastcnn.layers import Conv2d

X_SHAPE, W_SHAPE = (8, 16, 9, 9), (16, 16, 3, 3)


@pytest.fixture(autouse=True)
def fresh_table(monkeypatch):
    monkeypatch.delenv("FASTCNN_TUNED_PLANS", raising=False)
    kernels.clear_tuned_plans()
    yield
    kernels.clear_tuned_plans()


def entries_by_op():
    return {e["op"]: e for e in kernels.tuned_plans()}


def test_tuning_times_every_applicable_algorithm_and_keeps_the_fastest():
    plans = kernels.conv2d_plan(X_SHAPE, W_SHAPE, padding=1, algorithm="tuned")
    found = entries_by_op()
    assert set(found) == {"forward", "weight_grad", "input_grad"}
    for op, entry in found.items():
        timed = entry["seconds"]
        expected = {name for name in kernels.CONV_ALGORITHMS
                    if name not in ("matmul_1x1", "matmul_whole_input", "depthwise")}
        assert set(timed) == expected  # 3x3 stride 1: every algorithm but the two matrix-product shapes and depthwise
        assert entry["algorithm"] == min(timed, key=timed.get)
        assert getattr(plans, op).algorithm == entry["algorithm"]
        assert entry["geometry"]["C"] == 16 and entry["dtype"] == "float32" and entry["threads"] >= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tuned_results_are_the_chosen_algorithms_bits_and_match_the_naive_loops(dtype, rng):
    x = rng.standard_normal(X_SHAPE).astype(dtype)
    w = rng.standard_normal(W_SHAPE).astype(dtype)
    b = rng.standard_normal(W_SHAPE[0]).astype(dtype)
    y = kernels.conv2d_forward(x, w, b, 1, 1, algorithm="tuned")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = kernels.conv2d_backward(dy, x, w, 1, 1, algorithm="tuned")
    chosen = {e["op"]: e["algorithm"] for e in kernels.tuned_plans() if e["dtype"] == np.dtype(dtype).name}
    np.testing.assert_array_equal(y, kernels.conv2d_forward(x, w, b, 1, 1, algorithm=chosen["forward"]))
    np.testing.assert_array_equal(dw, kernels.conv2d_backward(dy, x, w, 1, 1, False, chosen["weight_grad"])[1])
    np.testing.assert_array_equal(dx, kernels.conv2d_backward(dy, x, w, 1, 1, True, chosen["input_grad"])[0])
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for got, want in zip((y, dx, dw, db), (nv.conv2d_forward(x, w, b, 1, 1), *nv.conv2d_backward(dy, x, w, 1, 1))):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_conv2d_layer_accepts_tuned(rng):
    layer = Conv2d(16, 16, 3, padding=1, algorithm="tuned")
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    y = layer.forward(x)
    np.testing.assert_allclose(y, nv.conv2d_forward(x, layer.weight.data, layer.bias.data, 1, 1),
                               rtol=2e-4, atol=2e-4)
    assert layer.plan(X_SHAPE).forward.algorithm == entries_by_op()["forward"]["algorithm"]


def test_save_and_load_round_trip(tmp_path):
    kernels.conv2d_plan(X_SHAPE, W_SHAPE, padding=1, algorithm="tuned")
    before = {e["op"]: e["algorithm"] for e in kernels.tuned_plans()}
    path = kernels.save_tuned_plans(tmp_path / "plans.json")
    kernels.clear_tuned_plans()
    assert kernels.tuned_plans() == []
    assert kernels.load_tuned_plans(path) == 3
    loaded = kernels.tuned_plans()
    assert {e["op"]: e["algorithm"] for e in loaded} == before
    assert all("seconds" not in e for e in loaded)  # loaded, not timed
    assert kernels.load_tuned_plans(path) == 0  # already there


def test_entries_of_another_machine_are_skipped(tmp_path):
    kernels.conv2d_plan(X_SHAPE, W_SHAPE, padding=1, algorithm="tuned")
    path = tmp_path / "plans.json"
    doc = json.loads(open(kernels.save_tuned_plans(path)).read())
    doc["machine"] = "some-other-cpu/256-bit"
    path.write_text(json.dumps(doc))
    kernels.clear_tuned_plans()
    assert kernels.load_tuned_plans(path) == 0
    assert kernels.tuned_plans() == []


def _bad_files(tmp_path, good):
    wrong_entry = json.loads(good)
    wrong_entry["plans"][0]["algorithm"] = "magic"
    one_by_one = json.loads(good)
    one_by_one["plans"][0]["geometry"].update(R=5, S=5)
    one_by_one["plans"][0]["algorithm"] = "matmul_1x1"
    missing = json.loads(good)
    del missing["plans"][1]["threads"]
    return {
        "not JSON": "{",
        "not a fastcnn tuned-plans file": json.dumps({"format": "other"}),
        "unknown op, dtype or algorithm": json.dumps(wrong_entry),
        "needs a 1x1 kernel": json.dumps(one_by_one),
        "lacks or mistypes": json.dumps(missing),
        "nested": "[" * 100000 + "]" * 100000,
    }


def test_bad_files_are_refused_and_change_nothing(tmp_path):
    kernels.conv2d_plan(X_SHAPE, W_SHAPE, padding=1, algorithm="tuned")
    good = open(kernels.save_tuned_plans(tmp_path / "good.json")).read()
    kernels.clear_tuned_plans()
    for i, (message, text) in enumerate(_bad_files(tmp_path, good).items()):
        path = tmp_path / f"bad{i}.json"
        path.write_text(text)
        with pytest.raises(ValueError, match="load_tuned_plans") as info:
            kernels.load_tuned_plans(path)
        if message != "nested":
            assert message in str(info.value)
        assert kernels.tuned_plans() == []
    with pytest.raises(ValueError, match="not a regular file"):
        kernels.load_tuned_plans(tmp_path)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(ValueError, match="not a regular file"):
            kernels.load_tuned_plans(tmp_path / "fifo")
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(kernels.conv_tune.MAX_FILE_BYTES + 1)
    with pytest.raises(ValueError, match="more than a tuned-plans file may"):
        kernels.load_tuned_plans(big)


_TUNE_RUN = """
import numpy as np
from fastcnn import kernels
kernels.conv2d_plan((2, 4, 6, 6), (4, 4, 3, 3), padding=1, algorithm="tuned")  # small: timing is quick
print(sorted(("seconds" in e, e["op"], e["algorithm"]) for e in kernels.tuned_plans()))
"""


def test_the_environment_file_is_saved_then_loaded_by_the_next_process(tmp_path):
    env = repo_env(FASTCNN_TUNED_PLANS=str(tmp_path / "plans.json"))
    outs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", _TUNE_RUN], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        outs.append(eval(proc.stdout.strip()))
    assert all(timed for timed, _, _ in outs[0])  # first process: timed and saved
    assert not any(timed for timed, _, _ in outs[1])  # second: loaded, nothing timed
    assert [entry[1:] for entry in outs[0]] == [entry[1:] for entry in outs[1]]


def test_an_existing_choice_does_not_wait_for_another_threads_tuning():
    """choose() reads a choice made before without taking the lock a tuning thread holds (for seconds)."""
    g = kernels.conv2d_plan((1, 2, 5, 5), (2, 2, 3, 3), padding=1).geometry
    first = conv_tune.choose("forward", g, np.float32, 1)  # times the candidates once
    tuning, done = threading.Event(), threading.Event()

    def tuner():  # stands for a thread tuning another shape: it holds the lock until told
        with conv_tune._LOCK:
            tuning.set()
            done.wait(60)

    holder = threading.Thread(target=tuner)
    holder.start()
    try:
        assert tuning.wait(60)
        got = []
        reader = threading.Thread(target=lambda: got.append(conv_tune.choose("forward", g, np.float32, 1)))
        reader.start()
        reader.join(30)
        assert got == [first]  # returned while the lock was still held
    finally:
        done.set()
        holder.join()
