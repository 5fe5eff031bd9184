"""One LeNet-5 training step at batch 64 (float32, SGD lr 0.01, momentum 0.9, weight decay 5e-4).

fastcnn: forward, softmax cross-entropy, zero_grad, backward, step (the body of
``Sequential.fit``); PyTorch: zero_grad, forward, F.cross_entropy, backward,
step.  Both on the same 64 MNIST images from the packaged sample.
"""

import numpy as np
import pytest
from conftest import run

import fastcnn
from fastcnn.data import load_sample, to_float
from fastcnn.kernels import softmax_cross_entropy

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


@pytest.fixture(scope="module")
def batch():
    (x, y), _ = load_sample()
    return to_float(x[:64], np.float32), np.ascontiguousarray(y[:64], dtype=np.int64)


def test_lenet5_step(benchmark, batch):
    x, y = batch
    fastcnn.manual_seed(0)
    model = fastcnn.models.lenet5()
    opt = fastcnn.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step():
        out = model.forward(x)
        loss, dout = softmax_cross_entropy(out, y)
        opt.zero_grad()
        model.backward(dout)
        opt.step()
        return loss

    run(benchmark, step, "LeNet-5 training step, batch 64")


def test_lenet5_step_torch(benchmark, batch):
    torch = pytest.importorskip("torch")
    from fastcnn.bench.torch_models import torch_lenet5

    F = torch.nn.functional
    x, y = (torch.from_numpy(a) for a in batch)
    torch.manual_seed(0)
    model = torch_lenet5(torch)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    run(benchmark, step, "LeNet-5 training step, batch 64")
