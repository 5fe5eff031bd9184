"""Issue 14: ``fastcnn compile`` fills the kernel cache for zoo models; its arguments are checked first."""

import numpy as np
import pytest

import fastcnn
from fastcnn.cli.compile import _with_dtype
from fastcnn.layers import Conv2d, Flatten, Linear, ReLU
from fastcnn.parallel_compile import compile_model
from helpers import assert_one_line_error, run_main

pytestmark = pytest.mark.usefixtures("restore_num_threads", "in_tmp_path")


def test_compile_lenet5_says_what_it_did(capsys):
    status, out, err = run_main(["compile", "--model", "lenet5", "--threads", "1"], capsys)
    assert status == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("compiling into ")
    assert lines[1].startswith("[1/1] lenet5 float32: ") and lines[1].endswith(" s in all"), out
    status, out, err = run_main(["compile", "--model", "lenet5", "--threads", "1"], capsys)
    assert "nothing to compile (all cached)" in out  # the second time everything is loaded


@pytest.mark.parametrize("argv, fragments", [
    (["--input-shape", "1x28x29"], ["--input-shape", "square"]),
    (["--input-shape", "3x32x32"], ["--input-shape", "28x28"]),  # lenet5 takes 28x28 only
    (["--batch-size", "100000", "--input-shape", "3x512x512"], ["--batch-size", "GiB"]),
    (["--input-shape", "2x28"], ["--input-shape", "CxHxW"]),
])
def test_compile_refuses_bad_arguments_in_one_line(argv, fragments, capsys):
    status, out, err = run_main(["compile", "--model", "lenet5", *argv], capsys)
    assert_one_line_error(status, err, 2, *fragments)


def test_with_dtype_sets_every_dtype_entry():
    config = {"dtype": "float32", "layers": [{"config": {"dtype": "float32", "k": [1, {"dtype": "x"}]}}]}
    assert _with_dtype(config, "float64") == {
        "dtype": "float64", "layers": [{"config": {"dtype": "float64", "k": [1, {"dtype": "float64"}]}}]}


def test_compile_model_trains_a_throwaway_step_and_predicts(monkeypatch):
    monkeypatch.setenv("FASTCNN_COMPILE_HELPERS", "0")
    fastcnn.manual_seed(0)
    model = fastcnn.Sequential(Conv2d(1, 2, 3, dtype=np.float64), ReLU(), Flatten(), Linear(2 * 4 * 4, 3, dtype=np.float64),
                               input_shape=(1, 6, 6))
    before = [p.data.copy() for p in model.parameters()]
    assert compile_model(model, batch_size=4, inference_batch_sizes=(1, 5)) >= 0.0
    assert any(not np.array_equal(a, p.data) for a, p in zip(before, model.parameters()))  # one step taken
    with pytest.raises(ValueError, match="input_shape"):
        compile_model(fastcnn.Sequential(Flatten(), Linear(4, 2)))
