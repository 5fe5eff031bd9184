"""Model-zoo forward + backward at batch 64 (3x32x32 float32, train mode, cross-entropy, no optimizer step).

fastcnn: zero the gradients, forward, softmax cross-entropy, backward;
PyTorch: zero_grad, forward, F.cross_entropy, backward on the twin of the
same architecture (``torch_vgg_small`` / ``torch_resnet_small`` in ``fastcnn.bench.torch_models``).
For the interleaved comparison with ratios use ``fastcnn.bench.bench_models``.
"""

import numpy as np
import pytest
from conftest import run

import fastcnn
from fastcnn.bench.models import fastcnn_step, torch_step
from fastcnn.bench.torch_models import TORCH_TWINS
from fastcnn.models import get_model

MODELS = ("vgg_small", "resnet_small")


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.random((64, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, 64).astype(np.int64)


@pytest.mark.parametrize("name", MODELS)
def test_model_step(benchmark, batch, name):
    fastcnn.manual_seed(0)
    model = get_model(name).train()
    run(benchmark, fastcnn_step(model, *batch), f"{name} forward+backward, batch 64")


@pytest.mark.parametrize("name", MODELS)
def test_model_step_torch(benchmark, batch, name):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tmodel = TORCH_TWINS[name](torch).train()
    assert sum(p.numel() for p in tmodel.parameters()) == sum(p.size for p in get_model(name).parameters())
    run(benchmark, torch_step(torch, tmodel, *batch), f"{name} forward+backward, batch 64")
