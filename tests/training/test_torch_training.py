"""Training trajectories against PyTorch: SGD alone, LeNet-5 step by step, and fit."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastcnn  # noqa: E402
from fastcnn.bench.torch_models import torch_lenet5  # noqa: E402
from fastcnn.kernels import softmax_cross_entropy  # noqa: E402
from fastcnn.layers import Parameter  # noqa: E402
from fastcnn.optim import SGD  # noqa: E402
from helpers import copy_into_torch  # noqa: E402

SGD_CONFIGS = [
    pytest.param(dict(lr=0.1), id="plain"),
    pytest.param(dict(lr=0.05, momentum=0.9), id="momentum0.9"),
    pytest.param(dict(lr=0.05, momentum=0.9, nesterov=True), id="nesterov"),
    pytest.param(dict(lr=0.05, momentum=0.9, weight_decay=5e-4), id="momentum-wd5e-4"),
]

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@pytest.fixture(autouse=True, scope="module")
def _torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- (a) SGD alone


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float64, 1e-12)], ids=["float32", "float64"])
@pytest.mark.parametrize("kwargs", SGD_CONFIGS)
def test_sgd_matches_torch(kwargs, dtype, rtol):
    rng = np.random.default_rng(0)
    shapes = [(4, 3, 2, 2), (4,), (7, 5)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ours = [Parameter(a.copy()) for a in init]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in init]
    opt = SGD(ours, **kwargs)
    topt = torch.optim.SGD(theirs, **kwargs)
    for step in range(8):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        opt.zero_grad()
        topt.zero_grad()
        for p, t, g in zip(ours, theirs, grads):
            p.grad += g
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for i, (p, t) in enumerate(zip(ours, theirs)):
            ref = t.detach().numpy()
            assert p.dtype == ref.dtype
            np.testing.assert_allclose(p.data, ref, rtol=rtol, atol=rtol * np.abs(ref).max(),
                                       err_msg=f"step {step}, parameter {i}")


# --------------------------------------------------------------------------- (b) LeNet-5


def twin_lenets(seed):
    fastcnn.manual_seed(seed)
    model = fastcnn.models.lenet5()
    tmodel = torch_lenet5(torch)
    copy_into_torch(torch, model, tmodel)
    return model, tmodel


def batches(n_batches, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, batch))
            for _ in range(n_batches)]


def assert_weights_close(model, tmodel, what, rtol=1e-4, atol=2e-6):
    # Observed differences are ~3e-8 after 5 steps; a weight-decay mismatch (5e-4 vs 0) shows
    # up as ~5e-6 after the first step, so atol stays well below that.
    for i, (p, t) in enumerate(zip(model.parameters(), tmodel.parameters())):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=rtol, atol=atol, err_msg=f"{what}, parameter {i}")


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_lenet5_training_matches_torch(nesterov):
    hyper = dict(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    model, tmodel = twin_lenets(seed=0)
    assert_weights_close(model, tmodel, "initial", rtol=0, atol=0)
    opt = SGD(model.parameters(), **hyper)
    topt = torch.optim.SGD(tmodel.parameters(), **hyper)
    losses = []
    for step, (x, y) in enumerate(batches(5, seed=1)):
        out = model.forward(x)
        loss, d = softmax_cross_entropy(out, y)
        opt.zero_grad()
        model.backward(d)
        opt.step()

        topt.zero_grad()
        tout = tmodel(torch.from_numpy(x))
        tloss = torch.nn.functional.cross_entropy(tout, torch.from_numpy(y))
        tloss.backward()
        topt.step()

        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=f"logits step {step}")
        assert loss == pytest.approx(tloss.item(), rel=1e-5, abs=1e-6), f"loss at step {step}"
        assert_weights_close(model, tmodel, f"after step {step}")
        losses.append(loss)
    # the weights really moved
    fastcnn.manual_seed(0)
    fresh = fastcnn.models.lenet5()
    assert max(np.abs(p.data - q.data).max() for p, q in zip(model.parameters(), fresh.parameters())) > 1e-3


def test_fit_matches_torch_loop():
    hyper = dict(lr=0.05, momentum=0.9, weight_decay=5e-4)
    model, tmodel = twin_lenets(seed=1)
    data = batches(4, seed=2)
    x = np.concatenate([b[0] for b in data])
    y = np.concatenate([b[1] for b in data])
    opt = SGD(model.parameters(), **hyper)
    hist = model.fit(x, y, epochs=1, batch_size=16, shuffle=False, optimizer=opt, verbose=False)

    topt = torch.optim.SGD(tmodel.parameters(), **hyper)
    tlosses = []
    for xb, yb in data:
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(xb)), torch.from_numpy(yb))
        tloss.backward()
        topt.step()
        tlosses.append(tloss.item())
    assert_weights_close(model, tmodel, "after fit")
    assert hist["loss"][0] == pytest.approx(np.mean(tlosses), rel=1e-5)
