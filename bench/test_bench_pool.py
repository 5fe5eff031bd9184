"""Max and average pooling, forward+backward, at LeNet-5's shapes (2x2 windows, stride 2)."""

import numpy as np
import pytest
from conftest import run

from fastcnn import kernels

# LeNet-5 at batch 64: after conv1 (6 x 28x28) and after conv2 (16 x 10x10).
POOL_SHAPES = [(64, 6, 28, 28), (64, 16, 10, 10)]


def _arrays(shape):
    rng = np.random.default_rng(0)
    n, c, h, w = shape
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal((n, c, h // 2, w // 2), dtype=np.float32)
    return x, dy


def _id(shape):
    return "x".join(map(str, shape))


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=_id)
def test_max_pool(benchmark, shape):
    x, dy = _arrays(shape)

    def step():
        _, argmax = kernels.max_pool2d_forward(x, 2)
        return kernels.max_pool2d_backward(dy, argmax, x.shape)

    run(benchmark, step, f"max_pool2d fwd+bwd {_id(shape)}")


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=_id)
def test_avg_pool(benchmark, shape):
    x, dy = _arrays(shape)

    def step():
        kernels.avg_pool2d_forward(x, 2)
        return kernels.avg_pool2d_backward(dy, x.shape, 2)

    run(benchmark, step, f"avg_pool2d fwd+bwd {_id(shape)}")


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=_id)
def test_pool_torch(benchmark, shape, kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, dy = (torch.from_numpy(a) for a in _arrays(shape))
    x.requires_grad_(True)
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d

    def step():
        return torch.autograd.grad(pool(x, 2), x, dy)

    run(benchmark, step, f"{kind}_pool2d fwd+bwd {_id(shape)}")


# The pooling options of MobileNet-style networks: a 3x3 stride-1 average pool whose padding does not count
# (count_include_pad=False), and a global max pool over the last feature maps.
OPTION_SHAPES = [(64, 32, 16, 16), (64, 128, 8, 8)]


@pytest.mark.parametrize("shape", OPTION_SHAPES, ids=_id)
def test_avg_pool_without_padding(benchmark, shape):
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)

    def step():
        y = kernels.avg_pool2d_forward(x, 3, stride=1, padding=1, count_include_pad=False)
        return kernels.avg_pool2d_backward(y, x.shape, 3, stride=1, padding=1, count_include_pad=False)

    run(benchmark, step, f"avg_pool2d 3x3/1 pad 1 count_include_pad=False fwd+bwd {_id(shape)}")


@pytest.mark.parametrize("shape", OPTION_SHAPES, ids=_id)
def test_global_max_pool(benchmark, shape):
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)

    def step():
        y, argmax = kernels.global_max_pool2d_forward(x)
        return kernels.global_max_pool2d_backward(y, argmax, x.shape)

    run(benchmark, step, f"global_max_pool2d fwd+bwd {_id(shape)}")


@pytest.mark.parametrize("kind", ["avg_no_pad", "global_max"])
@pytest.mark.parametrize("shape", OPTION_SHAPES, ids=_id)
def test_pool_options_torch(benchmark, shape, kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape, dtype=np.float32)).requires_grad_(True)
    if kind == "avg_no_pad":
        def pool():
            return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        group = f"avg_pool2d 3x3/1 pad 1 count_include_pad=False fwd+bwd {_id(shape)}"
    else:
        def pool():
            return F.adaptive_max_pool2d(x, 1)
        group = f"global_max_pool2d fwd+bwd {_id(shape)}"

    def step():
        y = pool()
        return torch.autograd.grad(y, x, y.detach())

    run(benchmark, step, group)
