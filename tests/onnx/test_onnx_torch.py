"""fastcnn.onnx.load reads what torch.onnx.export writes, and gives PyTorch's outputs (the oracle), then trains.

``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``) is run in the ways people run it:
constant folding on (BatchNorm fused into the Conv before it) and off (BatchNorm kept, Identity nodes
sharing initializers), initializers listed as graph inputs, the ``x.view(x.size(0), -1)`` flatten
(Shape, Gather, Unsqueeze, Concat, Reshape), opsets 11 to 18.
"""

import warnings

import numpy as np
import pytest

pytest.importorskip("onnx.helper")  # (a bare "onnx" could resolve to this tests/onnx folder)
torch = pytest.importorskip("torch")
nn = torch.nn

import fastcnn  # noqa: E402
import fastcnn.onnx as fonnx  # noqa: E402
from helpers import assert_close, weights  # noqa: E402

RTOL = 1e-5


def torch_export(net, x, path, **options):
    """``torch.onnx.export`` with a dynamic batch, its deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x),), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **options)
    return path


def randomize(net):
    """Random BatchNorm statistics and affine parameters (fresh ones are 0/1, which hides mistakes)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    return net.eval()


def torch_out(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


class Block(nn.Module):
    """A basic residual block with an identity shortcut: relu(bn(conv(relu(bn(conv(x))))) + x)."""

    def __init__(self, c):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + x)


class Down(nn.Module):
    """A strided residual block with a projection shortcut (Conv 1x1 + BatchNorm)."""

    def __init__(self, a, b):
        super().__init__()
        self.c, self.bn = nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b)
        self.shortcut = nn.Sequential(nn.Conv2d(a, b, 1, stride=2, bias=False), nn.BatchNorm2d(b))

    def forward(self, x):
        return torch.relu(self.bn(self.c(x))) + self.shortcut(x)


class SmallResNet(nn.Module):
    """Conv, BatchNorm, ReLU, max pool, avg pool, residual adds, flatten, dropout and linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.block, self.down, self.pool = Block(8), Down(8, 16), nn.AvgPool2d(2)
        self.drop, self.fc = nn.Dropout(0.25), nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(self.down(self.block(self.stem(x))))
        return self.fc(self.drop(x.view(x.size(0), -1)))


EXPORTS = {
    "default": {},
    "no_constant_folding": {"do_constant_folding": False},
    "preserve_training_flags": {"training": torch.onnx.TrainingMode.PRESERVE},
    "initializers_as_inputs": {"keep_initializers_as_inputs": True},
    "opset11": {"opset_version": 11},
    "opset13_unfolded": {"opset_version": 13, "do_constant_folding": False},
    "opset18": {"opset_version": 18},
}


@pytest.fixture
def resnet():
    torch.manual_seed(0)
    return randomize(SmallResNet())


@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_a_pytorch_resnet_loads_and_gives_pytorchs_outputs(export, resnet, rng, tmp_path):
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    model = fonnx.load(torch_export(resnet, x, tmp_path / "net.onnx", **EXPORTS[export]))
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Residual") == 2 and kinds[-2:] == ["Flatten", "Linear"], kinds
    for n in (1, 3):
        assert_close(model.predict(x[:n]), torch_out(resnet, x[:n]), np.float32, rtol=RTOL)


def _one_step(model, net, x, y, lr=0.1):
    """One SGD step on the batch in both libraries (training mode, BatchNorm on batch statistics)."""
    model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=False,
              optimizer=fastcnn.optim.SGD(model.parameters(), lr=lr))
    net.train()
    net.drop.eval()  # the exported graph has no Dropout (the exporter drops it at inference)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    opt.zero_grad()
    nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    opt.step()
    net.eval()


def test_the_imported_resnet_trains_as_pytorch_does(resnet, rng, tmp_path):
    """BatchNorm kept (no constant folding): one SGD step in each library gives the same network."""
    x = rng.standard_normal((6, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    model = fonnx.load(torch_export(resnet, x, tmp_path / "net.onnx", do_constant_folding=False))
    assert sum(type(layer).__name__ == "BatchNorm2d" for top in model.layers for layer in top.walk()) == 5
    _one_step(model, resnet, x, y)
    assert_close(model.predict(x), torch_out(resnet, x), np.float32, rtol=1e-4)
    assert_close(model.layers[1].running_var, resnet.stem[1].running_var.numpy(), np.float32, rtol=1e-5)


def test_a_folded_import_trains_saves_and_exports_again(resnet, rng, tmp_path):
    x = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    model = fonnx.load(torch_export(resnet, x, tmp_path / "net.onnx"))
    before = weights(model)
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=False, seed=0,
                        optimizer=fastcnn.optim.SGD(model.parameters(), lr=0.01))
    assert np.isfinite(history["loss"]).all()
    assert all(not np.array_equal(a, b) for a, b in zip(weights(model), before))
    model.save(tmp_path / "net.npz")
    fonnx.export(fastcnn.load(tmp_path / "net.npz"), tmp_path / "again.onnx")
    again = fonnx.load(tmp_path / "again.onnx")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


class Heads(nn.Module):
    """Input standardisation, count_include_pad=False pooling, LeakyReLU and four ways to pool the plane, then
    x @ W + b (MatMul + Add), sigmoid, tanh and softmax."""

    def __init__(self, head):
        super().__init__()
        self.head = head
        self.register_buffer("mean", torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.5, 0.6, 0.7]).view(3, 1, 1))
        self.conv, self.act = nn.Conv2d(3, 6, 3, padding=1), nn.LeakyReLU(0.1)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.w, self.b = nn.Parameter(torch.randn(6, 5)), nn.Parameter(torch.randn(5))

    def forward(self, x):
        x = self.act(self.pool(self.conv((x - self.mean) / self.std)))
        if self.head == "adaptive_max":
            x = nn.functional.adaptive_max_pool2d(x, 1).flatten(1)
        elif self.head == "adaptive_avg":
            x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        elif self.head == "mean":
            x = x.mean((2, 3))
        else:
            x = torch.amax(x, dim=(2, 3))
        return torch.softmax(torch.tanh(torch.sigmoid(x @ self.w + self.b)), dim=1)


@pytest.mark.parametrize("head", ["adaptive_max", "adaptive_avg", "mean", "amax"])
def test_normalisation_pools_and_matmul(head, rng, tmp_path):
    torch.manual_seed(1)
    net = Heads(head).eval()
    x = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    model = fonnx.load(torch_export(net, x, tmp_path / "net.onnx"))
    assert type(model.layers[0]).__name__ == "Normalize"
    assert_close(model.predict(x), torch_out(net, x), np.float32, rtol=RTOL)


def test_odd_kernel_same_padding(rng, tmp_path):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding="same"), nn.ReLU(), nn.Conv2d(4, 2, 5, padding="same")).eval()
    x = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
    model = fonnx.load(torch_export(net, x, tmp_path / "net.onnx"))
    assert_close(model.predict(x), torch_out(net, x), np.float32, rtol=RTOL)


class MobileNetish(nn.Module):
    """Issue 13's network: depthwise (multiplier 1 and 2), grouped and dilated convolutions, BatchNorm, an even
    kernel with padding="same", count_include_pad=False pooling and a global max pool."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),  # depthwise
            nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),  # pointwise
            nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=16), nn.ReLU(),  # depthwise, multiplier 2
            nn.Conv2d(32, 32, 3, padding=2, dilation=2, groups=4), nn.BatchNorm2d(32), nn.ReLU(),  # grouped, dilated
            nn.Conv2d(32, 16, 4, padding="same"), nn.ReLU(),
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        return self.features(x)


@pytest.mark.parametrize("export", ["default", "no_constant_folding"])
def test_depthwise_grouped_dilated_network_loads_and_trains(export, rng, tmp_path):
    torch.manual_seed(3)
    net = randomize(MobileNetish())
    x = rng.standard_normal((4, 3, 12, 12)).astype(np.float32)
    model = fonnx.load(torch_export(net, x, tmp_path / "net.onnx", **EXPORTS[export]))
    assert_close(model.predict(x), torch_out(net, x), np.float32, rtol=RTOL)
    history = model.fit(x, rng.integers(0, 10, 4), epochs=2, batch_size=2, verbose=False, seed=0)
    assert np.isfinite(history["loss"]).all()


def test_an_unsupported_pytorch_operator_is_named(rng, tmp_path):
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return torch.cos(self.conv(x)).flatten(1)

    x = rng.standard_normal((1, 1, 5, 5)).astype(np.float32)
    path = torch_export(Odd().eval(), x, tmp_path / "odd.onnx")
    with pytest.raises(fonnx.UnsupportedOnnxError, match=r"odd.onnx: node '/Cos' \(Cos\): operator 'Cos' is not "
                                                         r"supported; fastcnn reads .*Conv"):
        fonnx.load(path)
