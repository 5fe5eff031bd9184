"""Each operator form that fastcnn.onnx.load reads, in graphs written by hand: ONNX Runtime is the oracle."""

import numpy as np
import pytest

pytest.importorskip("onnx.helper")  # (a bare "onnx" could resolve to this tests/onnx folder)
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastcnn.onnx as fonnx  # noqa: E402
from helpers import assert_close  # noqa: E402

N = helper.make_node


def check(tmp_path, rng, nodes, consts, in_shape, opset=17, batch="N", layers=None):
    """Write the graph (input ``x``, output ``y``), run it in ONNX Runtime and in fastcnn; compare.

    Returns the fastcnn model.  ``layers``: the layer class names the model must have.
    """
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *in_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)
    path = tmp_path / "ops.onnx"
    path.write_bytes(model.SerializeToString())
    x = rng.standard_normal((2 if batch == "N" else batch, *in_shape)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = fonnx.load(path)
    assert_close(got.predict(x), expected, np.float32, rtol=1e-5)
    if layers is not None:
        assert [type(layer).__name__ for layer in got.layers] == layers
    return got


def w(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_gemm_forms(tmp_path, rng):
    nodes = [N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "b1", "c1"], ["g"], alpha=0.5, beta=2.0),
             N("Gemm", ["g", "b2", "c2"], ["h"], transB=1), N("Gemm", ["h", "b3"], ["y"])]
    consts = {"b1": w(rng, 12, 5), "c1": w(rng, 1, 5), "b2": w(rng, 4, 5), "c2": w(rng, 1)[0], "b3": w(rng, 4, 3)}
    check(tmp_path, rng, nodes, consts, (3, 2, 2), layers=["Flatten", "Linear", "Linear", "Linear"])


def test_matmul_with_and_without_a_bias(tmp_path, rng):
    nodes = [N("Flatten", ["x"], ["f"]), N("MatMul", ["f", "m1"], ["a"]), N("Add", ["bias", "a"], ["r"]),
             N("Relu", ["r"], ["s"]), N("MatMul", ["s", "m2"], ["y"])]
    consts = {"m1": w(rng, 8, 6), "bias": w(rng, 6), "m2": w(rng, 6, 2)}
    check(tmp_path, rng, nodes, consts, (2, 2, 2), layers=["Flatten", "Linear", "ReLU", "Linear"])


@pytest.mark.parametrize("target, batch", [([0, -1], "N"), ([-1, 12], "N"), ([2, -1], 2), ([2, 12], 2)])
def test_reshape_to_a_flat_batch(target, batch, tmp_path, rng):
    nodes = [N("Reshape", ["x", "shape"], ["f"]), N("Gemm", ["f", "b"], ["y"], transB=1)]
    check(tmp_path, rng, nodes, {"shape": np.array(target, np.int64), "b": w(rng, 3, 12)}, (3, 2, 2), batch=batch,
          layers=["Flatten", "Linear"])


def test_a_reshape_that_changes_the_batch_is_refused(tmp_path, rng):
    nodes = [N("Reshape", ["x", "shape"], ["y"], name="r")]
    with pytest.raises(fonnx.UnsupportedOnnxError, match=r"node 'r' \(Reshape\): reshapes \(N, 3, 2, 2\) to "
                                                          r"\[-1, 6\]"):
        check(tmp_path, rng, nodes, {"shape": np.array([-1, 6], np.int64)}, (3, 2, 2))


def test_conv_padding_forms(tmp_path, rng):
    nodes = [N("Conv", ["x", "w1"], ["a"], auto_pad="SAME_UPPER"),  # odd kernel, stride 1: symmetric
             N("Conv", ["a", "w2", "b2"], ["b"], auto_pad="VALID"),
             N("Pad", ["b", "pads"], ["p"]), N("Conv", ["p", "w3"], ["c"], pads=[0, 1, 0, 1]),
             N("Conv", ["c", "w4"], ["y"], auto_pad="SAME_LOWER", strides=[2, 2])]  # 7x5 in, stride 2: 1 each side
    consts = {"w1": w(rng, 4, 2, 3, 3), "w2": w(rng, 3, 4, 3, 3), "b2": w(rng, 3), "w3": w(rng, 3, 3, 3, 3),
              "w4": w(rng, 2, 3, 3, 3), "pads": np.array([0, 0, 1, 0, 0, 0, 1, 0], np.int64)}
    model = check(tmp_path, rng, nodes, consts, (2, 9, 7), layers=["Conv2d"] * 4)
    assert [layer.padding for layer in model.layers] == [(1, 1), (0, 0), (1, 1), (1, 1)]


def test_pools_global_and_reduce_forms(tmp_path, rng):
    nodes = [N("MaxPool", ["x"], ["a"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]),
             N("AveragePool", ["a"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
             N("GlobalAveragePool", ["b"], ["c"]),  # (N, C, 1, 1) kept: a 1x1 Conv follows
             N("Conv", ["c", "k"], ["d"]), N("ReduceMean", ["d"], ["y"], axes=[2, 3], keepdims=0)]
    consts = {"k": w(rng, 4, 3, 1, 1)}
    check(tmp_path, rng, nodes, consts, (3, 6, 6), opset=13,
          layers=["MaxPool2d", "AvgPool2d", "AvgPool2d", "Conv2d", "GlobalAvgPool2d"])


def test_global_max_pool_and_reduce_max_with_axes_as_input(tmp_path, rng):
    nodes = [N("GlobalMaxPool", ["x"], ["a"]), N("Conv", ["a", "k"], ["b"]),
             N("ReduceMax", ["b", "axes"], ["c"], keepdims=1), N("Flatten", ["c"], ["y"])]
    consts = {"k": w(rng, 4, 3, 1, 1), "axes": np.array([-1, -2], np.int64)}
    check(tmp_path, rng, nodes, consts, (3, 5, 4), opset=18,
          layers=["MaxPool2d", "Conv2d", "MaxPool2d", "Flatten"])


def test_batch_norm_after_conv_and_after_gemm(tmp_path, rng):
    stats = lambda c: [w(rng, c), w(rng, c), w(rng, c), rng.uniform(0.5, 2, c).astype(np.float32)]  # noqa: E731
    s1, s2 = stats(3), stats(4)
    nodes = [N("Conv", ["x", "k"], ["a"]), N("BatchNormalization", ["a", "s1", "b1", "m1", "v1"], ["b"], epsilon=1e-3),
             N("Flatten", ["b"], ["f"]), N("Gemm", ["f", "g"], ["h"], transB=1),
             N("BatchNormalization", ["h", "s2", "b2", "m2", "v2"], ["y"], momentum=0.8)]
    consts = {"k": w(rng, 3, 2, 3, 3), "g": w(rng, 4, 3 * 4 * 4), **dict(zip(["s1", "b1", "m1", "v1"], s1)),
              **dict(zip(["s2", "b2", "m2", "v2"], s2))}
    model = check(tmp_path, rng, nodes, consts, (2, 6, 6),
                  layers=["Conv2d", "BatchNorm2d", "Flatten", "Linear", "BatchNorm1d"])
    assert (model.layers[1].eps, model.layers[1].momentum, model.layers[4].momentum) == (1e-3, 0.1, 0.2)


def test_normalisation_forms(tmp_path, rng):
    nodes = [N("Mul", ["scale", "x"], ["a"]), N("Sub", ["a", "mean"], ["b"]), N("Div", ["b", "std"], ["c"]),
             N("Div", ["c", "two"], ["d"]), N("Sub", ["d", "shift"], ["y"])]  # then Div, Sub: two more Normalize
    consts = {"scale": np.array(1 / 255, np.float32), "mean": w(rng, 1, 3, 1, 1),
              "std": np.array([[[0.5]], [[2]], [[4]]], np.float32), "two": np.array([2.0], np.float32),
              "shift": np.array(0.25, np.float32)}
    model = check(tmp_path, rng, nodes, consts, (3, 4, 4), layers=["Normalize", "Normalize", "Normalize"])
    assert model.layers[0].scale == float(np.float32(1 / 255))


def test_dropout_identity_and_constants(tmp_path, rng):
    nodes = [N("Constant", [], ["ratio"], value=numpy_helper.from_array(np.array(0.3, np.float32))),
             N("Constant", [], ["flag"], value=numpy_helper.from_array(np.array(False))),
             N("Identity", ["x"], ["i"]), N("Dropout", ["i", "ratio", "flag"], ["d"]), N("Relu", ["d"], ["r"]),
             N("Identity", ["r"], ["y"])]
    model = check(tmp_path, rng, nodes, {}, (2, 3, 3), layers=["Dropout", "ReLU"])
    assert model.layers[0].p == 0.3


@pytest.mark.parametrize("opset", [11, 13])
def test_activations(opset, tmp_path, rng):
    nodes = [N("LeakyRelu", ["x"], ["a"], alpha=0.3), N("Sigmoid", ["a"], ["b"]), N("Tanh", ["b"], ["c"]),
             N("Flatten", ["c"], ["d"]), N("Softmax", ["d"], ["y"], axis=1)]
    check(tmp_path, rng, nodes, {}, (2, 3, 3), opset=opset,
          layers=["LeakyReLU", "Sigmoid", "Tanh", "Flatten", "Softmax"])


def test_softmax_over_channels_of_images(tmp_path, rng):
    check(tmp_path, rng, [N("Softmax", ["x"], ["y"], axis=1)], {}, (3, 2, 2), opset=13, layers=["Softmax"])


def test_nested_residual_blocks(tmp_path, rng):
    """x -> [relu(conv(x)) -> (a + conv(a))] + x: a residual block inside the block of another."""
    nodes = [N("Conv", ["x", "k1"], ["c1"], pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["a"]),
             N("Conv", ["a", "k2"], ["c2"], pads=[1, 1, 1, 1]), N("Add", ["a", "c2"], ["inner"]),
             N("Add", ["x", "inner"], ["outer"]), N("Relu", ["outer"], ["y"])]
    model = check(tmp_path, rng, nodes, {"k1": w(rng, 3, 3, 3, 3), "k2": w(rng, 3, 3, 3, 3)}, (3, 5, 5),
                  layers=["Residual", "ReLU"])
    outer = model.layers[0]
    assert outer.shortcut == [] and [type(layer).__name__ for layer in outer.block] == ["Conv2d", "ReLU", "Residual"]


def test_used_max_pool_indices_are_refused(tmp_path, rng):
    nodes = [N("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], name="mp"), N("Cast", ["idx"], ["z"], to=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    (tmp_path / "m.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(fonnx.UnsupportedOnnxError, match=r"node 'mp' \(MaxPool\): its output 'idx' \(indices\) is "
                                                          r"used"):
        fonnx.load(tmp_path / "m.onnx")
