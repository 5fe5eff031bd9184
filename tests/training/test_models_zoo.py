"""The model zoo: convnet, vgg_small, resnet_small, mobilenet_small (and the registry).

Parameter counts are checked against hand arithmetic and against PyTorch twins
built here (with the weights copied across, the twins also give the same
outputs); every model trains on a tiny synthetic colour set.
"""

import numpy as np
import pytest

import fastcnn
from fastcnn.layers import BatchNorm2d, Conv2d, Dropout, Linear, ReLU, Residual
from fastcnn.models import MODELS, convnet, get_model, lenet5, mobilenet_small, resnet_small, vgg_small
from fastcnn.optim import SGD
from helpers import copy_into_torch


def n_params(model):
    return sum(p.size for p in model.parameters())


# --------------------------------------------------------------------------- hand arithmetic


def conv_count(c_in, c_out, k, bias):
    return c_in * c_out * k * k + (c_out if bias else 0)


def convnet_count(in_shape, classes, widths, convs, fc_layers, fc_units, k=3, bn=False):
    c, h, w = in_shape
    total = 0
    for width in widths:
        for _ in range(convs):
            total += conv_count(c, width, k, not bn) + (2 * width if bn else 0)
            c = width
        h, w = h // 2, w // 2
    features = c * h * w
    for _ in range(fc_layers):
        total += features * fc_units + fc_units
        features = fc_units
    return total + features * classes + classes


def resnet_count(c_in, classes, widths, blocks):
    total = conv_count(c_in, widths[0], 3, False) + 2 * widths[0]
    c = widths[0]
    for s, w in enumerate(widths):
        for b in range(blocks):
            total += conv_count(c, w, 3, False) + 2 * w + conv_count(w, w, 3, False) + 2 * w
            if (s > 0 and b == 0) or c != w:
                total += conv_count(c, w, 1, False) + 2 * w
            c = w
    return total + c * classes + classes


def test_counts_match_arithmetic():
    assert n_params(convnet((3, 32, 32), 10)) == convnet_count((3, 32, 32), 10, (32, 64), 2, 1, 128) == 591_274
    assert n_params(vgg_small()) == convnet_count((3, 32, 32), 10, (32, 64, 128), 2, 1, 256, bn=True) == 814_570
    assert n_params(vgg_small(batch_norm=False)) == 814_122
    assert n_params(resnet_small()) == resnet_count(3, 10, (16, 32, 64), 2) == 175_258
    assert n_params(lenet5()) == 61_706
    # odd cases: single-int channels doubled per stage, no hidden FC, 5x5 kernels, grey input, 3 blocks
    m = convnet((1, 20, 12), 4, channels=6, stages=3, convs_per_stage=1, fc_layers=0, kernel_size=5, batch_norm=True)
    assert n_params(m) == convnet_count((1, 20, 12), 4, (6, 12, 24), 1, 0, 1, k=5, bn=True)
    assert n_params(resnet_small(7, 1, (8, 8, 16), 3)) == resnet_count(1, 7, (8, 8, 16), 3)


def test_architecture_layout():
    m = convnet((3, 16, 16), 5, channels=(4, 8), convs_per_stage=2, fc_layers=2, fc_units=16, batch_norm=True,
                dropout=0.25)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == (["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["MaxPool2d"]) * 2 + [
        "Flatten"] + ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert all(layer.bias is None for layer in m.layers if isinstance(layer, Conv2d))
    assert all(layer.padding == (1, 1) for layer in m.layers if isinstance(layer, Conv2d))
    assert m.input_shape == (3, 16, 16)
    plain = convnet((3, 16, 16), 5, channels=(4, 8))
    assert all(layer.bias is not None for layer in plain.layers if isinstance(layer, Conv2d))
    assert not any(isinstance(layer, (BatchNorm2d, Dropout)) for layer in plain.layers)

    r = resnet_small(widths=(4, 8, 16), blocks_per_stage=2)
    blocks = [layer for layer in r.layers if isinstance(layer, Residual)]
    assert len(blocks) == 6
    assert [len(b.shortcut) for b in blocks] == [0, 0, 2, 0, 2, 0]
    assert [b.block[0].stride for b in blocks] == [(1, 1), (1, 1), (2, 2), (1, 1), (2, 2), (1, 1)]
    for i, layer in enumerate(r.layers):  # every block is followed by ReLU
        if isinstance(layer, Residual):
            assert isinstance(r.layers[i + 1], ReLU)
    assert type(r.layers[-2]).__name__ == "GlobalAvgPool2d" and isinstance(r.layers[-1], Linear)


@pytest.mark.parametrize("build, x_shape, out", [
    (lambda: convnet((3, 16, 16), 4, channels=(4, 8)), (2, 3, 16, 16), (2, 4)),
    (lambda: convnet((2, 9, 13), 3, channels=(4, 8, 8), convs_per_stage=1), (3, 2, 9, 13), (3, 3)),
    (lambda: vgg_small(6, widths=(4, 4, 8), fc_units=8, image_size=16), (2, 3, 16, 16), (2, 6)),
    (lambda: vgg_small(), (1, 3, 32, 32), (1, 10)),
    (lambda: resnet_small(5, widths=(4, 8), blocks_per_stage=1), (2, 3, 32, 32), (2, 5)),
    (lambda: resnet_small(5, in_channels=1, widths=(4, 8, 8), blocks_per_stage=1), (2, 1, 12, 12), (2, 5)),
])
def test_forward_shapes(build, x_shape, out):
    model = build()
    x = np.random.default_rng(0).random(x_shape, dtype=np.float32)
    y = model.forward(x)
    assert y.shape == out and y.dtype == np.float32
    assert model.output_shapes(x_shape[1:])[-1] == out[1:]


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("kwargs, name", [
    (dict(in_shape=(3, 4, 4), num_classes=2, channels=(4, 8, 8)), "in_shape"),
    (dict(in_shape=(3, 7, 32), num_classes=2, channels=(4, 8, 8)), "in_shape"),
    (dict(in_shape=(3, 32), num_classes=2), "in_shape"),
    (dict(in_shape=(3, 32, 32), num_classes=0), "num_classes"),
    (dict(in_shape=(3, 32, 32), num_classes=2, channels=(4, 8), stages=3), "stages"),
    (dict(in_shape=(3, 32, 32), num_classes=2, channels=()), "channels"),
    (dict(in_shape=(3, 32, 32), num_classes=2, kernel_size=4), "kernel_size"),
    (dict(in_shape=(3, 32, 32), num_classes=2, convs_per_stage=0), "convs_per_stage"),
    (dict(in_shape=(3, 32, 32), num_classes=2, fc_layers=-1), "fc_layers"),
    (dict(in_shape=(3, 32, 32), num_classes=2, dropout=1.0), "dropout"),
])
def test_convnet_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        convnet(**kwargs)


def test_too_small_message():
    with pytest.raises(ValueError, match=r"in_shape \(3, 4, 4\) is too small for 3 stage.*2\*\*3 = 8"):
        convnet((3, 4, 4), 2, channels=(4, 8, 8))
    with pytest.raises(ValueError, match="image_size"):
        vgg_small(image_size=4)
    with pytest.raises(ValueError, match="image_size"):
        resnet_small(image_size=2)
    with pytest.raises(ValueError, match="blocks_per_stage"):
        resnet_small(blocks_per_stage=0)


def test_registry():
    assert set(MODELS) == {"lenet5", "convnet", "vgg_small", "resnet_small", "mobilenet_small"}
    assert get_model("lenet5").input_shape == (1, 28, 28)
    assert n_params(get_model("vgg-small", num_classes=4, widths=(4, 4, 8), fc_units=8)) == convnet_count(
        (3, 32, 32), 4, (4, 4, 8), 2, 1, 8, bn=True)
    assert get_model("convnet", in_shape=(1, 8, 8), num_classes=3).output_shapes((1, 8, 8))[-1] == (3,)
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*lenet5"):
        get_model("resnet50")
    with pytest.raises(TypeError):
        get_model("lenet5", widths=(1, 2))


def test_names_and_build_for_images():
    """``names()`` lists the registry; ``build`` takes the same size arguments for every model."""
    from fastcnn.models import build, names

    assert names() == ("lenet5", "convnet", "vgg_small", "resnet_small", "mobilenet_small")
    assert set(names()) == set(MODELS)
    x = np.zeros((2, 1, 28, 28), np.float32)
    same = {  # what build(name) must equal, built by hand with each builder's own arguments
        "lenet5": lambda: lenet5(),
        "convnet": lambda: convnet((1, 28, 28), 10),
        "vgg_small": lambda: vgg_small(num_classes=10, in_channels=1, image_size=28),
        "resnet_small": lambda: resnet_small(num_classes=10, in_channels=1, image_size=28),
        "mobilenet_small": lambda: mobilenet_small(num_classes=10, in_channels=1, image_size=28),
    }
    for name in names():
        fastcnn.manual_seed(0)
        model = build(name)
        fastcnn.manual_seed(0)
        ref = same[name]()
        assert model.input_shape == (1, 28, 28) and repr(model) == repr(ref), name
        assert all(np.array_equal(p.data, q.data) for p, q in zip(model.parameters(), ref.parameters())), name
        assert model.predict(x).shape == (2, 10)
    assert build("vgg-small", num_classes=3, in_channels=3, image_size=16, widths=(4, 8)).input_shape == (3, 16, 16)
    assert build("convnet", 4, 3, 12).output_shapes((3, 12, 12))[-1] == (4,)
    assert build("lenet5", num_classes=5, in_channels=3).input_shape == (3, 28, 28)
    with pytest.raises(ValueError, match="lenet5 is built for 28x28"):
        build("lenet5", image_size=32)
    with pytest.raises(ValueError, match="build: unknown model 'resnet50'"):
        build("resnet50")


# --------------------------------------------------------------------------- PyTorch twins


def torch_convnet(torch, in_shape, classes, widths, convs, fc_layers, fc_units, bn):
    nn = torch.nn
    layers, c = [], in_shape[0]
    h, w = in_shape[1:]
    for width in widths:
        for _ in range(convs):
            layers.append(nn.Conv2d(c, width, 3, padding=1, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU())
            c = width
        layers.append(nn.MaxPool2d(2))
        h, w = h // 2, w // 2
    layers.append(nn.Flatten())
    features = c * h * w
    for _ in range(fc_layers):
        layers += [nn.Linear(features, fc_units), nn.ReLU()]
        features = fc_units
    layers.append(nn.Linear(features, classes))
    return nn.Sequential(*layers)


def torch_resnet(torch, c_in, classes, widths, blocks):
    """The benchmark's PyTorch twin of resnet_small (written once, in fastcnn.bench.torch_models)."""
    from fastcnn.bench.torch_models import torch_resnet_small

    return torch_resnet_small(torch, num_classes=classes, in_channels=c_in, widths=widths, blocks_per_stage=blocks)


def torch_mobilenet(torch, **kwargs):
    """The benchmark's PyTorch twin of mobilenet_small."""
    from fastcnn.bench.torch_models import torch_mobilenet_small

    return torch_mobilenet_small(torch, **kwargs)


TWINS = [
    ("convnet", lambda: convnet((3, 32, 32), 10),
     lambda t: torch_convnet(t, (3, 32, 32), 10, (32, 64), 2, 1, 128, False)),
    ("vgg_small", lambda: vgg_small(), lambda t: torch_convnet(t, (3, 32, 32), 10, (32, 64, 128), 2, 1, 256, True)),
    ("vgg_small_nobn", lambda: vgg_small(batch_norm=False),
     lambda t: torch_convnet(t, (3, 32, 32), 10, (32, 64, 128), 2, 1, 256, False)),
    ("resnet_small", lambda: resnet_small(), lambda t: torch_resnet(t, 3, 10, (16, 32, 64), 2)),
    ("resnet_small_deep", lambda: resnet_small(4, 1, (8, 8, 16), 3), lambda t: torch_resnet(t, 1, 4, (8, 8, 16), 3)),
    ("mobilenet_small", lambda: mobilenet_small(), lambda t: torch_mobilenet(t)),
]


@pytest.mark.parametrize("name, build, build_torch", TWINS, ids=[t[0] for t in TWINS])
def test_parameter_count_matches_torch(name, build, build_torch):
    torch = pytest.importorskip("torch")
    model, tmodel = build(), build_torch(torch)
    assert n_params(model) == sum(p.numel() for p in tmodel.parameters())
    assert [p.shape for p in model.parameters()] == [tuple(p.shape) for p in tmodel.parameters()]


SMALL_TWINS = [
    ("vgg_small", lambda: vgg_small(3, widths=(4, 8, 8), fc_units=16, image_size=16),
     lambda t: torch_convnet(t, (3, 16, 16), 3, (4, 8, 8), 2, 1, 16, True)),
    ("resnet_small", lambda: resnet_small(3, widths=(4, 8), blocks_per_stage=2, image_size=16),
     lambda t: torch_resnet(t, 3, 3, (4, 8), 2)),
    ("mobilenet_small", lambda: mobilenet_small(3, width=8, blocks=((16, 1), (16, 2), (32, 2)), image_size=16),
     lambda t: torch_mobilenet(t, num_classes=3, width=8, blocks=((16, 1), (16, 2), (32, 2)))),
]


@pytest.mark.parametrize("name, build, build_torch", SMALL_TWINS, ids=[t[0] for t in SMALL_TWINS])
def test_outputs_match_torch(name, build, build_torch):
    """Same weights -> same logits, in train mode (batch statistics) and in eval mode (running statistics)."""
    torch = pytest.importorskip("torch")
    fastcnn.manual_seed(0)
    model, tmodel = build(), build_torch(torch)
    copy_into_torch(torch, model, tmodel)
    x = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
    y = model.train().forward(x)
    ty = tmodel.train()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, ty, rtol=1e-4, atol=1e-4)
    y = model.eval().forward(x)
    ty = tmodel.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, ty, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- training


def colour_set(n=96, classes=3, size=16, seed=0):
    """Noisy images whose brightest colour channel is the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.random((n, 3, size, size), dtype=np.float32) * 0.6
    x[np.arange(n), y] += 0.4
    return x, y.astype(np.int64)


TRAINABLE = [
    ("convnet", lambda: convnet((3, 16, 16), 3, channels=(4, 8), convs_per_stage=1, fc_units=16, dropout=0.1), 0.02),
    ("vgg_small", lambda: vgg_small(3, widths=(4, 8, 8), fc_units=16, image_size=16), 0.05),
    ("resnet_small", lambda: resnet_small(3, widths=(4, 8), blocks_per_stage=1, image_size=16), 0.05),
]


@pytest.mark.parametrize("name, build, lr", TRAINABLE, ids=[t[0] for t in TRAINABLE])
def test_trains_on_colour_set(name, build, lr):
    fastcnn.manual_seed(0)
    model = build()
    x, y = colour_set()
    opt = SGD(model.parameters(), lr=lr, momentum=0.9)
    before = model.evaluate(x, y)["loss"]
    hist = model.fit(x, y, epochs=6, batch_size=16, optimizer=opt, verbose=False, seed=0)
    after = model.evaluate(x, y)
    assert hist["loss"][-1] < hist["loss"][0]
    assert after["loss"] < 0.7 * before
    assert after["accuracy"] >= 0.8  # chance is 1/3


# --------------------------------------------------------------------------- save / load


def test_resnet_save_load_round_trip(tmp_path):
    fastcnn.manual_seed(0)
    model = resnet_small(3, widths=(4, 8), blocks_per_stage=1, image_size=16)
    x, y = colour_set(32)
    model.fit(x, y, epochs=1, batch_size=8, optimizer=SGD(model.parameters(), lr=0.05), verbose=False, seed=0)
    path = tmp_path / "resnet.npz"
    model.save(path)
    loaded = fastcnn.load(path)
    assert repr(loaded) == repr(model)
    assert loaded.input_shape == model.input_shape
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    # the BN running statistics travelled (fresh ones would be 0 / 1)
    bn = loaded.layers[3].block[1]
    assert not np.allclose(bn.running_mean, 0)


# --------------------------------------------------------------------------- benchmark smoke test


def test_bench_models_smoke():
    from fastcnn.bench import bench_models, format_models_table

    r = bench_models(threads=1, batch=2, repeat=1, models=("resnet_small",), settle=0, target=0)
    entry = r["models"]["resnet_small"]
    assert entry["params"] == 175_258
    assert entry["frameworks"]["fastcnn"]["median_s"] > 0
    if "torch" in entry["frameworks"]:
        assert entry["torch_params"] == 175_258 and entry["ratio"] > 0
    text = format_models_table(r)
    assert "resnet_small" in text and "ms/batch" in text
    with pytest.raises(ValueError, match="models"):
        bench_models(models=("alexnet",))


def test_bench_twins_match_models():
    torch = pytest.importorskip("torch")
    from fastcnn.bench.torch_models import TORCH_TWINS

    for name, twin in TORCH_TWINS.items():
        assert [tuple(p.shape) for p in twin(torch).parameters()] == [p.shape for p in get_model(name).parameters()]


def test_resnet_trains_on_3_channel_32x32_images():
    """Multi-channel end to end at CIFAR's size: 3x32x32 colour images through resnet_small."""
    fastcnn.manual_seed(1)
    model = resnet_small(3, widths=(4, 8), blocks_per_stage=1)
    assert model.input_shape == (3, 32, 32)
    x, y = colour_set(n=64, size=32, seed=1)
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=5, batch_size=16, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9),
              verbose=False, seed=0)
    after = model.evaluate(x, y)
    assert after["loss"] < 0.7 * before
    assert after["accuracy"] >= 0.8  # chance is 1/3


def test_mobilenet_small_blocks_are_depthwise_separable():
    model = mobilenet_small(blocks=((16, 2),), width=8)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2d"]
    assert [(c.in_channels, c.out_channels, c.groups, c.kernel_size) for c in convs] == [
        (3, 8, 1, (3, 3)), (8, 8, 8, (3, 3)), (8, 16, 1, (1, 1))]
    assert model.output_shapes((3, 32, 32))[-2:] == [(16,), (10,)]
    with pytest.raises(ValueError, match="blocks"):
        mobilenet_small(blocks=((16,),))


def test_mobilenet_trains_on_3_channel_images():
    fastcnn.manual_seed(2)
    model = mobilenet_small(3, width=8, blocks=((16, 1), (16, 2)), image_size=16)
    x, y = colour_set(n=64, size=16, seed=2)
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=5, batch_size=16, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9),
              verbose=False, seed=0)
    assert model.evaluate(x, y)["loss"] < 0.8 * before
