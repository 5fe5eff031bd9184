"""fastcnn.onnx.export: ONNX Runtime gives fastcnn's outputs, and load gives the model back.

The oracle for export is ONNX Runtime, an independent implementation of every operator; the oracle
for load is the model that was exported (the same outputs, and the same layer classes and weights).
"""

import numpy as np
import pytest

pytest.importorskip("onnx.helper")  # (a bare "onnx" could resolve to this tests/onnx folder)
ort = pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

import fastcnn  # noqa: E402
import fastcnn.onnx as fonnx  # noqa: E402
from fastcnn.layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten,  # noqa: E402
                            GlobalAvgPool2d, LeakyReLU, Linear, LocallyConnected2d, MaxPool2d, Normalize, ReLU,
                            Residual, Sigmoid, Softmax, Tanh)
from helpers import assert_close, weights  # noqa: E402

RTOL = 1e-5


def randomize_statistics(model, rng):
    """Give every BatchNorm of ``model`` random running statistics and affine parameters (fresh ones are 0/1)."""
    for layer in (inner for top in model.layers for inner in top.walk()):
        if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            C = layer.num_features
            layer.running_mean[...] = rng.normal(size=C)
            layer.running_var[...] = rng.uniform(0.5, 2.0, C)
            if layer.affine:
                layer.weight.data[...] = rng.normal(size=C)
                layer.bias.data[...] = rng.normal(size=C)
    return model


def run_ort(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def images(rng, model, n, dtype=np.float32):
    return rng.standard_normal((n, *model.input_shape)).astype(dtype)


def every_layer_model():
    """One model holding every exportable layer type but GlobalMaxPool2d and Residual (see below)."""
    return fastcnn.Sequential(
        Normalize(2, scale=0.5, mean=[0.1, -0.2], std=[0.5, 2.0]),
        Conv2d(2, 4, 3, stride=2, padding=1), LeakyReLU(0.2),
        AvgPool2d(3, stride=2, padding=1), Tanh(),
        MaxPool2d(3, stride=2, ceil_mode=True), Sigmoid(),
        LocallyConnected2d(4, 3, 2, input_size=1, padding=1),
        Flatten(), BatchNorm1d(12), Dropout(0.3), Linear(12, 5), ReLU(), Linear(5, 4), Softmax(),
        input_shape=(2, 11, 11))


def pooling_model():
    return fastcnn.Sequential(
        Conv2d(3, 6, 3, padding=1), BatchNorm2d(6), ReLU(),
        Residual([Conv2d(6, 6, 3, padding=1, bias=False), BatchNorm2d(6), ReLU(), Conv2d(6, 6, 1)]),
        Residual([Conv2d(6, 8, 3, stride=2, padding=1)], shortcut=[Conv2d(6, 8, 1, stride=2, bias=False),
                                                                   BatchNorm2d(8)]),
        AvgPool2d(3, stride=1, padding=1, count_include_pad=False), GlobalAvgPool2d(), Linear(8, 3),
        input_shape=(3, 12, 12))


def global_max_model():
    from fastcnn.layers import GlobalMaxPool2d

    return fastcnn.Sequential(Conv2d(3, 5, 3), ReLU(), GlobalMaxPool2d(), Linear(5, 2), input_shape=(3, 9, 9))


def grouped_model():
    """Depthwise (any multiplier), grouped and dilated convolutions: Conv2d(..., dilation=, groups=)."""
    return fastcnn.Sequential(
        Conv2d(4, 8, 3, padding=1, groups=4), BatchNorm2d(8), ReLU(),
        Conv2d(8, 8, 3, padding=2, dilation=2, groups=2), ReLU(),
        Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), Conv2d(8, 6, 1), ReLU(),
        Conv2d(6, 6, 3, padding="same", dilation=(1, 2)), GlobalAvgPool2d(), Linear(6, 3),
        input_shape=(4, 10, 10))


LOCAL_MODELS = {
    "local_padded_strided": lambda: fastcnn.Sequential(
        LocallyConnected2d(3, 4, (3, 2), input_size=(7, 6), stride=(2, 1), padding=(1, 2)), input_shape=(3, 7, 6)),
    "local_no_bias_whole_plane": lambda: fastcnn.Sequential(
        LocallyConnected2d(2, 3, 4, input_size=4, bias=False), Flatten(), Linear(3, 2), input_shape=(2, 4, 4)),
}

MODELS = {
    "every_layer": every_layer_model,
    "pooling_residual": pooling_model,
    "global_max_pool": global_max_model,
    "grouped_dilated": grouped_model,
    **LOCAL_MODELS,
}


# --------------------------------------------------------------------------- ONNX Runtime against fastcnn


@pytest.mark.parametrize("name", fastcnn.models.names())
def test_every_zoo_model_runs_in_onnx_runtime_with_fastcnns_outputs(name, rng, tmp_path):
    model = randomize_statistics(fastcnn.models.build(name), rng)
    path = tmp_path / f"{name}.onnx"
    assert fonnx.export(model, path) == str(path)
    for n in (1, 3):  # one file, two batch sizes: the batch dimension is dynamic
        x = images(rng, model, n)
        assert_close(run_ort(path, x), model.predict(x), np.float32, rtol=RTOL, err_msg=f"{name}, batch {n}")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_layer_type_runs_in_onnx_runtime_with_fastcnns_outputs(name, rng, tmp_path):
    model = randomize_statistics(MODELS[name](), rng)
    fonnx.export(model, tmp_path / "m.onnx")
    x = images(rng, model, 3)
    assert_close(run_ort(tmp_path / "m.onnx", x), model.predict(x), np.float32, rtol=RTOL)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_pooling_options_in_onnx_runtime(ceil_mode, padding, count_include_pad, rng, tmp_path):
    for pool in (AvgPool2d(3, stride=2, padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad),
                 MaxPool2d(3, stride=2, padding=padding, ceil_mode=ceil_mode)):
        model = fastcnn.Sequential(pool, input_shape=(2, 8, 9))
        fonnx.export(model, tmp_path / "p.onnx")
        x = images(rng, model, 2)
        assert_close(run_ort(tmp_path / "p.onnx", x), model.predict(x), np.float32, rtol=RTOL, err_msg=repr(pool))


@pytest.mark.parametrize("opset", [13, fonnx.OPSET, 21])
def test_the_documented_opsets(opset, rng, tmp_path):
    model = randomize_statistics(pooling_model(), rng)
    fonnx.export(model, tmp_path / "m.onnx", opset=opset)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
    assert proto.producer_name == "fastcnn"
    x = images(rng, model, 2)
    assert_close(run_ort(tmp_path / "m.onnx", x), model.predict(x), np.float32, rtol=RTOL)


def test_the_graph_has_one_input_and_one_output_with_a_dynamic_batch(tmp_path):
    fonnx.export(fastcnn.models.lenet5(), tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    (inp,), (out,) = graph.input, graph.output
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp), out.name, dims(out)) == ("input", ["N", 1, 28, 28], "output", ["N", 10])
    assert [n.op_type for n in graph.node][:3] == ["Conv", "Relu", "MaxPool"]
    assert graph.node[0].name == "/0/Conv" and "0.weight" in [t.name for t in graph.initializer]


def test_export_leaves_the_model_as_it_was(rng, tmp_path):
    model = randomize_statistics(fastcnn.models.build("vgg_small"), rng)
    before = weights(model), [dict(layer.buffers()) for layer in model.layers]
    fonnx.export(model, tmp_path / "m.onnx")
    assert model.training and all(layer.training for layer in model.layers)
    np.testing.assert_equal(weights(model), before[0])


def test_export_refuses_what_it_cannot_write(tmp_path):
    class Custom(ReLU, register=False):
        pass

    with pytest.raises(ValueError, match=r"layer 1 \(Custom\(\)\).*ONNX export does not know"):
        fonnx.export(fastcnn.Sequential(ReLU(), Custom(), input_shape=(1, 2, 2)), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="has no input_shape; pass input_shape"):
        fonnx.export(fastcnn.Sequential(ReLU()), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="opset must be an int from 13 to 21"):
        fonnx.export(fastcnn.models.lenet5(), tmp_path / "a.onnx", opset=9)
    with pytest.raises(TypeError, match="must be a fastcnn Sequential"):
        fonnx.export(ReLU(), tmp_path / "a.onnx")
    assert list(tmp_path.iterdir()) == []


def test_input_shape_argument_for_a_model_without_one(rng, tmp_path):
    model = fastcnn.Sequential(Conv2d(1, 2, 3), ReLU(), GlobalAvgPool2d())
    fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 6, 5))
    x = rng.standard_normal((2, 1, 6, 5)).astype(np.float32)
    assert_close(run_ort(tmp_path / "m.onnx", x), model.predict(x), np.float32, rtol=RTOL)


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    monkeypatch.setattr(onnx.ModelProto, "SerializeToString", lambda self: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        fonnx.export(fastcnn.models.lenet5(), path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


# --------------------------------------------------------------------------- export -> load


def same_architecture(a, b):
    kinds = lambda m: [type(layer).__name__ for top in m.layers for layer in top.walk()]  # noqa: E731
    assert kinds(a) == kinds(b)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


@pytest.mark.parametrize("name", fastcnn.models.names())
def test_zoo_round_trip_gives_the_same_model(name, rng, tmp_path):
    model = randomize_statistics(fastcnn.models.build(name), rng)
    fonnx.export(model, tmp_path / "m.onnx")
    back = fonnx.load(tmp_path / "m.onnx")
    same_architecture(model, back)
    assert back.input_shape == model.input_shape and back.dtype == model.dtype
    np.testing.assert_equal(weights(back), weights(model))
    for n in (1, 3):
        x = images(rng, model, n)
        np.testing.assert_array_equal(back.predict(x), model.predict(x))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_layer_type_round_trips(name, rng, tmp_path):
    model = randomize_statistics(MODELS[name](), rng)
    fonnx.export(model, tmp_path / "m.onnx")
    back = fonnx.load(tmp_path / "m.onnx")
    same_architecture(model, back)
    x = images(rng, model, 3)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    walk = lambda m: [lay for top in m.layers for lay in top.walk()]  # noqa: E731
    for a, b in zip(walk(model), walk(back)):
        for key, value in a.buffers().items():
            np.testing.assert_array_equal(b.buffers()[key], value, err_msg=f"{a!r} {key}")


def test_layer_settings_survive_the_round_trip(tmp_path):
    model = every_layer_model()
    fonnx.export(model, tmp_path / "m.onnx")
    back = fonnx.load(tmp_path / "m.onnx")
    got = {type(layer).__name__: layer for layer in back.layers}
    assert got["LeakyReLU"].negative_slope == 0.2 and got["Dropout"].p == 0.3
    assert got["BatchNorm1d"].eps == 1e-5 and got["BatchNorm1d"].momentum == 0.1
    assert got["Normalize"].scale == 0.5 and got["Softmax"].dim == 1
    assert got["MaxPool2d"].ceil_mode and got["AvgPool2d"].get_config()["padding"] in (1, [1, 1])


def test_an_imported_model_predicts_trains_saves_and_exports_again(rng, tmp_path):
    model = randomize_statistics(fastcnn.models.build("resnet_small"), rng)
    fonnx.export(model, tmp_path / "a.onnx")
    back = fonnx.load(tmp_path / "a.onnx")
    x = images(rng, back, 8)
    y = rng.integers(0, 10, 8)
    before = weights(back)
    history = back.fit(x, y, epochs=2, batch_size=4, verbose=False, seed=0,
                       optimizer=fastcnn.optim.SGD(back.parameters(), lr=0.05))
    assert np.isfinite(history["loss"]).all()
    assert any(not np.array_equal(a, b) for a, b in zip(weights(back), before))
    back.save(tmp_path / "b.npz")
    again = fastcnn.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(again.predict(x), back.predict(x))
    fonnx.export(again, tmp_path / "c.onnx")
    assert_close(run_ort(tmp_path / "c.onnx", x), back.predict(x), np.float32, rtol=RTOL)


def test_float64_models_round_trip(rng, tmp_path):
    model = fastcnn.Sequential(Conv2d(1, 3, 3, dtype=np.float64), BatchNorm2d(3, dtype=np.float64), ReLU(), Flatten(),
                               Linear(3 * 4 * 4, 2, dtype=np.float64), input_shape=(1, 6, 6))
    randomize_statistics(model, rng)
    fonnx.export(model, tmp_path / "m.onnx")
    back = fonnx.load(tmp_path / "m.onnx")
    assert back.dtype == np.float64
    x = images(rng, model, 2, np.float64)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
