"""``fastcnn export`` and ``fastcnn import-onnx``: the round trip, and one-line errors with the CLI's statuses."""

import sys

import numpy as np
import pytest

import fastcnn
from fastcnn.data import Normalizer
from helpers import assert_one_line_error, run_main

pytestmark = pytest.mark.usefixtures("in_tmp_path")


@pytest.fixture
def checkpoint(tmp_path, rng):
    """A LeNet-5 checkpoint with random weights and the normalisation statistics 'fastcnn train' stores."""
    model = fastcnn.models.lenet5()
    x = rng.random((32, 1, 28, 28)).astype(np.float32)
    model.save(tmp_path / "a.npz", normalizer=Normalizer("standardize").fit(x))
    return tmp_path / "a.npz"


def _needs_onnx():
    pytest.importorskip("onnx.helper")  # (a bare "onnx" could resolve to this tests/onnx folder)


def test_export_then_import_gives_the_same_model(checkpoint, rng, capsys):
    _needs_onnx()
    status, out, err = run_main(["export", str(checkpoint), "a.onnx"], capsys)
    assert status == 0, err
    assert out.strip() == "a.onnx: ONNX opset 17, input (N, 1, 28, 28), 12 layers"
    status, out, err = run_main(["import-onnx", "a.onnx", "b.npz"], capsys)
    assert status == 0, err
    assert out.strip() == "b.npz: 12 layers, 61,706 parameters, input (N, 1, 28, 28), from a.onnx"
    x = rng.random((3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(fastcnn.load("b.npz").predict(x), fastcnn.load(checkpoint).predict(x))
    status, out, err = run_main(["summary", "b.npz"], capsys)
    assert status == 0 and "Total params: 61,706" in out, err


def test_export_with_the_normalizer_takes_images_in_0_1(checkpoint, rng, capsys):
    _needs_onnx()
    import fastcnn.onnx

    status, out, err = run_main(["export", str(checkpoint), "n.onnx", "--include-normalizer", "--opset", "13"], capsys)
    assert status == 0 and "ONNX opset 13" in out and "13 layers" in out, err
    ck = fastcnn.serialize.load_checkpoint(checkpoint)
    x = rng.random((3, 1, 28, 28)).astype(np.float32)
    expected = ck["model"].predict(Normalizer.from_state_dict(ck["normalizer_state"]).transform(x))
    np.testing.assert_allclose(fastcnn.onnx.load("n.onnx").predict(x), expected, rtol=1e-5, atol=1e-5)


def test_input_shape_for_a_model_saved_without_one(capsys):
    _needs_onnx()
    fastcnn.Sequential(fastcnn.layers.Conv2d(3, 2, 3), fastcnn.layers.GlobalAvgPool2d()).save("s.npz")
    status, out, err = run_main(["export", "s.npz", "s.onnx"], capsys)
    assert_one_line_error(status, err, 1, "s.npz: export: the model has no input_shape; pass input_shape")
    status, out, err = run_main(["export", "s.npz", "s.onnx", "--input-shape", "3,8,8"], capsys)
    assert status == 0 and "input (N, 3, 8, 8)" in out, err


@pytest.mark.parametrize("argv, status, fragments", [
    (["export", "missing.npz", "a.onnx"], 1, ["checkpoint not found: missing.npz"]),
    (["export", "CKPT", "a.onnx", "--opset", "9"], 2, ["argument --opset: must be from 13 to 21, got 9"]),
    (["export", "CKPT", "nowhere/a.onnx"], 2, ["argument OUT.onnx: folder", "does not exist"]),
    (["export", "CKPT", "a.onnx", "--input-shape", "3,x"], 2, ["argument --input-shape"]),
    (["import-onnx", "missing.onnx", "b.npz"], 1, ["ONNX model not found: missing.onnx"]),
    (["import-onnx", "CKPT", "b.npz"], 1, ["not an ONNX model"]),
    (["import-onnx", "a.onnx", "nowhere/b.npz"], 2, ["argument OUT.npz: folder", "does not exist"]),
])
def test_errors_are_one_line(argv, status, fragments, checkpoint, capsys):
    _needs_onnx()
    argv = [str(checkpoint) if a == "CKPT" else a for a in argv]
    got, out, err = run_main(argv, capsys)
    assert_one_line_error(got, err, status, *fragments)


def test_an_unsupported_operator_is_a_one_line_error(tmp_path, capsys):
    _needs_onnx()
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
         helper.make_node("Cos", ["c"], ["y"], name="cos")],
        "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")])
    (tmp_path / "cos.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    status, out, err = run_main(["import-onnx", "cos.onnx", "b.npz"], capsys)
    assert_one_line_error(status, err, 1, "cos.onnx: node 'cos' (Cos): operator 'Cos' is not supported")
    assert not (tmp_path / "b.npz").exists()


def test_without_the_onnx_package_both_commands_name_the_extra(checkpoint, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # "import onnx" now raises ImportError
    for argv in (["export", str(checkpoint), "a.onnx"], ["import-onnx", "a.onnx", "b.npz"]):
        if argv[0] == "import-onnx":
            open("a.onnx", "wb").close()
        status, out, err = run_main(argv, capsys)
        assert_one_line_error(status, err, 1, "needs the onnx package: pip install 'fastcnn[onnx]'")
