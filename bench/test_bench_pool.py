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
