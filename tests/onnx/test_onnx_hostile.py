"""Hostile ONNX files: every one is refused with a clear ValueError, nothing hangs, crashes or allocates much.

The files whose parsing runs C code (protobuf) on arbitrary bytes are loaded in a child process
(``helpers.run_cases_in_child``): a crash there fails its case instead of killing pytest.
"""

import os
import zlib

import numpy as np
import pytest

pytest.importorskip("onnx.helper")  # (a bare "onnx" could resolve to this tests/onnx folder)

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastcnn  # noqa: E402
import fastcnn.onnx as fonnx  # noqa: E402
import fastcnn.onnx._reader as reader  # noqa: E402
import fastcnn.onnx._wire as wire  # noqa: E402
from helpers import run_cases_in_child  # noqa: E402

LOAD = "fastcnn.onnx:load"


def graph_file(path, nodes=None, initializers=None, input_dims=("N", 1, 4, 4), inputs=None, opset=17, domain=""):
    """Write a small model: input (N, 1, 4, 4) -> Conv (weight ``w``, 2 filters 3x3) -> Relu -> output."""
    if nodes is None:
        nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
                 helper.make_node("Relu", ["c"], ["output"], name="relu")]
    if initializers is None:
        initializers = [numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")]
    if inputs is None:
        inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_dims))]
    graph = helper.make_graph(nodes, "hostile", inputs,
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, opset)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return str(path)


def raw_tensor(name, dims, data=b"", data_type=TensorProto.FLOAT):
    t = TensorProto()
    t.name, t.data_type = name, data_type
    t.dims.extend(dims)
    t.raw_data = data
    return t


def external_tensor(name, location, dims=(2, 1, 3, 3), offset=0, length=None):
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    nbytes = int(np.prod(dims)) * 4
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length or nbytes))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def deeply_nested(depth):
    """ModelProto bytes: graph -> node -> attribute -> graph -> node -> ... ``depth`` levels of messages."""
    inner = b""
    for _ in range(depth):
        attribute = b"\x0a\x01g" + b"\x32" + _varint(len(inner)) + inner  # name "g", AttributeProto.g (6)
        node = b"\x2a" + _varint(len(attribute)) + attribute  # NodeProto.attribute (5)
        inner = b"\x0a" + _varint(len(node)) + node  # GraphProto.node (1)
    return b"\x08\x08" + b"\x3a" + _varint(len(inner)) + inner  # ir_version 8, ModelProto.graph (7)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """``{case: (path, message fragment)}``: files every load must refuse with a ValueError holding the fragment."""
    d = tmp_path_factory.mktemp("hostile")
    folder = d / "model"
    folder.mkdir()
    valid = fonnx.export(fastcnn.models.lenet5(), d / "valid.onnx")
    data = open(valid, "rb").read()
    cases = {}
    for frac in (0.001, 0.1, 0.5, 0.9, 0.999):
        cut = max(1, int(len(data) * frac))
        (d / f"cut{cut}.onnx").write_bytes(data[:cut])
        cases[f"truncated_{frac}"] = (str(d / f"cut{cut}.onnx"), "")
    (d / "empty.onnx").write_bytes(b"")
    cases["empty"] = (str(d / "empty.onnx"), "not an ONNX model")
    rng = np.random.default_rng(0)
    for i in range(4):
        (d / f"noise{i}.onnx").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        cases[f"noise_{i}"] = (str(d / f"noise{i}.onnx"), "")
    (d / "gz.onnx").write_bytes(b"\x1f\x8b" + zlib.compress(b"x" * 1000))
    cases["bad_gzip"] = (str(d / "gz.onnx"), "gzip")
    (d / "deep.onnx").write_bytes(deeply_nested(3000))
    cases["nested_3000_deep"] = (str(d / "deep.onnx"), "messages nest more than 64 deep")
    nodes = b"\x0a\x00" * 1_200_000  # 1.2 million empty nodes: 2.4 MB that protobuf would parse into ~200 MB
    (d / "many.onnx").write_bytes(b"\x08\x08\x3a" + _varint(len(nodes)) + nodes)
    cases["many_empty_messages"] = (str(d / "many.onnx"), "more than 1000000 protobuf fields")
    cases["huge_declared_dims"] = (graph_file(d / "huge.onnx", initializers=[
        raw_tensor("w", [2**31, 2**31, 2**31], b"\0" * 16)]), "more than the limit")
    cases["dims_larger_than_data"] = (graph_file(d / "short.onnx", initializers=[
        raw_tensor("w", [1000, 1000], b"\0" * 72)]), "but holds 72 bytes")
    cases["negative_dim"] = (graph_file(d / "neg.onnx", initializers=[raw_tensor("w", [-1, 2], b"")]), "dims")
    cases["too_many_dims"] = (graph_file(d / "ndims.onnx", initializers=[raw_tensor("w", [1] * 40, b"")]), "dims")
    nan = np.ones((2, 1, 3, 3), np.float32)
    nan[1, 0, 2, 2] = np.nan
    cases["nan_weight"] = (graph_file(d / "nan.onnx", initializers=[numpy_helper.from_array(nan, "w")]),
                           "NaN or infinite")
    outside = d / "outside.bin"
    outside.write_bytes(np.ones(18, np.float32).tobytes())
    os.symlink(outside, folder / "link.bin")
    for name, location, fragment in (("parent", "../outside.bin", "relative path inside the model's folder"),
                                     ("absolute", str(outside), "relative path inside the model's folder"),
                                     ("symlink_out", "link.bin", "leads outside the model's folder")):
        cases[f"external_{name}"] = (graph_file(folder / f"{name}.onnx", initializers=[
            external_tensor("w", location)]), fragment)
    (folder / "short.bin").write_bytes(b"\0" * 40)
    cases["external_truncated"] = (graph_file(folder / "exshort.onnx", initializers=[
        external_tensor("w", "short.bin")]), "truncated")
    os.mkfifo(folder / "pipe.bin")
    cases["external_fifo"] = (graph_file(folder / "exfifo.onnx", initializers=[
        external_tensor("w", "pipe.bin")]), "FIFO")
    os.mkfifo(d / "fifo.onnx")
    cases["fifo"] = (str(d / "fifo.onnx"), "a FIFO (named pipe), not a regular file")
    cases["directory"] = (str(folder), "a directory")
    fastcnn.models.lenet5().save(d / "ckpt.npz")
    cases["a_checkpoint"] = (str(d / "ckpt.npz"), "not an ONNX model")
    return cases


def test_hostile_files_are_refused_in_a_child_process(hostile):
    results = run_cases_in_child([(case, LOAD, [path], {}) for case, (path, _) in sorted(hostile.items())],
                                 case_timeout=60)
    for case, (path, fragment) in sorted(hostile.items()):
        r = results[case]
        assert r["status"] == "raised", (case, r)
        assert "ValueError" in r["mro"] and r["type"] not in ("DecodeError", "RecursionError"), (case, r)
        assert fragment in r["message"] and path in r["message"], (case, r["message"])
        assert r["peak_mb"] is None or r["peak_mb"] - r["base_mb"] < 200, (case, r["peak_mb"], r["base_mb"])


# --------------------------------------------------------------------------- unsupported graphs (in process)


UNSUPPORTED = {
    "operator": (dict(nodes=[helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
                             helper.make_node("Cos", ["c"], ["output"], name="my_cos")]),
                 r"node 'my_cos' \(Cos\): operator 'Cos' is not supported; fastcnn reads"),
    "attribute": (dict(nodes=[helper.make_node("Conv", ["input", "w"], ["c"], name="conv", foo=3),
                              helper.make_node("Relu", ["c"], ["output"], name="relu")]),
                  r"node 'conv' \(Conv\): attribute 'foo' is not supported"),
    "unnamed_node": (dict(nodes=[helper.make_node("Conv", ["input", "w"], ["c"]),
                                 helper.make_node("Erf", ["c"], ["output"])]),
                     r"node #1 \(output 'output'\) \(Erf\): operator 'Erf'"),
    "asymmetric_pads": (dict(nodes=[helper.make_node("Conv", ["input", "w"], ["output"], name="c", pads=[1, 0, 0, 0])]),
                        r"node 'c' \(Conv\): pads .* differ on the two sides"),
    "custom_domain": (dict(nodes=[helper.make_node("Conv", ["input", "w"], ["output"], name="c", domain="com.acme")]),
                      r"com.acme.Conv is not a standard ONNX operator"),
    "subgraph_attribute": (dict(nodes=[helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
                                       helper.make_node("Relu", ["c"], ["output"], name="r",
                                                        body=helper.make_graph([], "g", [], []))]),
                           r"node 'r' \(Relu\): attribute 'body' is a graph"),
    "two_d_input": (dict(input_dims=("N", 16)), r"has shape \['N', 16\]; fastcnn reads 4-D images"),
    "unknown_height": (dict(input_dims=("N", 1, "H", 4)), r"4-D images \(N, C, H, W\) with known C, H and W"),
    "two_inputs": (dict(inputs=[helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1, 4, 4])
                                for n in ("input", "other")]), r"2 inputs besides its initializers"),
    "int_input": (dict(inputs=[helper.make_tensor_value_info("input", TensorProto.INT64, ["N", 1, 4, 4])]),
                  r"elem_type 7; fastcnn reads float or double images"),
    "old_opset": (dict(opset=7), r"opset 7 is older than fastcnn reads"),
    "float16_weight": (dict(initializers=[numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float16), "w")]),
                       r"initializer 'w' holds float16 values"),
    "side_branch": (dict(nodes=[helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
                                helper.make_node("Relu", ["c"], ["output"], name="relu"),
                                helper.make_node("Sigmoid", ["c"], ["unused"], name="side")]),
                    r"tensor 'unused' is a dead end: no node reads it and it is not the graph's output 'output'"),
    "add_of_a_constant": (dict(nodes=[helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
                                      helper.make_node("Add", ["c", "w"], ["output"], name="plus")]),
                          r"node 'plus' \(Add\): adds a constant"),
    "weight_not_constant": (dict(nodes=[helper.make_node("Conv", ["input", "input"], ["output"], name="conv")]),
                            r"node 'conv' \(Conv\): fastcnn reads this operator with the running tensor as input 0 "
                            r"and constants as the others"),
    "unsorted": (dict(nodes=[helper.make_node("Relu", ["c"], ["output"], name="relu"),
                             helper.make_node("Conv", ["input", "w"], ["c"], name="conv")]),
                 r"node 'relu' \(Relu\) reads 'c' before any node makes it"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_graphs_name_the_node_and_what_is_missing(case, tmp_path):
    kwargs, pattern = UNSUPPORTED[case]
    path = graph_file(tmp_path / "m.onnx", **kwargs)
    with pytest.raises(ValueError, match=pattern) as info:
        fonnx.load(path)
    assert str(info.value).startswith(path + ": ")


def test_unsupported_operators_raise_the_public_error_class(tmp_path):
    path = graph_file(tmp_path / "m.onnx", **UNSUPPORTED["operator"][0])
    with pytest.raises(fonnx.UnsupportedOnnxError):
        fonnx.load(path)
    assert issubclass(fonnx.UnsupportedOnnxError, ValueError)


# --------------------------------------------------------------------------- limits and external data


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path, monkeypatch):
    path = fonnx.export(fastcnn.models.lenet5(), tmp_path / "m.onnx")
    monkeypatch.setattr(reader, "MAX_MODEL_BYTES", 1000)
    parsed = []
    monkeypatch.setattr(onnx.ModelProto, "ParseFromString", lambda self, data: parsed.append(data))
    with pytest.raises(ValueError, match=r"bytes, more than a ONNX model may hold \(1000\)"):
        fonnx.load(path)
    assert parsed == []


def test_packed_lists_that_would_expand_too_much_are_refused_before_parsing(tmp_path, monkeypatch):
    big = numpy_helper.from_array(np.arange(3000, dtype=np.int64) % 100, "big")  # int64_data: 1 byte a value
    big.ClearField("raw_data")
    big.int64_data.extend(range(3000))
    path = graph_file(tmp_path / "m.onnx", initializers=[big, numpy_helper.from_array(np.ones((2, 1, 3, 3),
                                                                                             np.float32), "w")])
    monkeypatch.setattr(wire, "MAX_EXPANDED_BYTES", 10_000)
    monkeypatch.setattr(onnx.ModelProto, "ParseFromString", lambda self, data: pytest.fail("parsed"))
    with pytest.raises(ValueError, match="packed lists that would expand to more than 10000 bytes"):
        fonnx.load(path)


def test_external_data_inside_the_folder_is_read(rng, tmp_path):
    w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "weights.bin").write_bytes(b"\0" * 8 + w.tobytes() + b"\0" * 4)
    path = graph_file(tmp_path / "m.onnx", initializers=[external_tensor("w", "sub/weights.bin", offset=8)])
    model = fonnx.load(path)
    np.testing.assert_array_equal(model.layers[0].weight.data, w)


def test_a_gzipped_model_is_read(rng, tmp_path):
    import gzip

    model = fastcnn.models.lenet5()
    path = fonnx.export(model, tmp_path / "m.onnx")
    (tmp_path / "m.onnx.gz").write_bytes(gzip.compress(open(path, "rb").read()))
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(fonnx.load(tmp_path / "m.onnx.gz").predict(x), model.predict(x))


def test_paths_that_are_not_paths_or_not_there(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        fonnx.load(3)
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        fonnx.load(tmp_path / "missing.onnx")


def test_residual_blocks_nested_too_deep_are_refused(tmp_path):
    """Each Relu feeds the next level and the Add closing it: 100 levels of blocks inside blocks."""
    depth, nodes = 100, [helper.make_node("Conv", ["input", "w"], ["t0"], name="conv")]
    for i in range(depth):
        nodes.append(helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]))
    for i in range(depth, 0, -1):
        inner = f"t{depth}" if i == depth else f"a{i + 1}"
        nodes.append(helper.make_node("Add", [inner, f"t{i - 1}"], [f"a{i}"]))
    nodes.append(helper.make_node("Relu", ["a1"], ["output"]))
    path = graph_file(tmp_path / "deep.onnx", nodes=nodes)
    with pytest.raises(fonnx.UnsupportedOnnxError, match="residual blocks nest more than 64 deep"):
        fonnx.load(path)
