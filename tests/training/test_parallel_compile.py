"""Issue 14: helper processes that compile a model's layers while the first training step compiles its own.

What is checked here: how many helpers start and which layers each takes, that nothing starts without a
compile, that a helper loads the model and runs its layers to the end (exit 0), and that it leaves nothing
behind.  That a first run with helpers trains the same weights as a warm one is in
``tests/kernels/test_determinism.py`` (slow: it needs an empty cache).
"""

import os

import numpy as np
import pytest

import fastcnn
from fastcnn import parallel_compile
from fastcnn.layers import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU
from fastcnn.parallel_compile import CompileHelpers, compile_layers, helper_count


def _model():
    fastcnn.manual_seed(0)
    return fastcnn.Sequential(Conv2d(1, 4, 3, padding=1), BatchNorm2d(4), ReLU(), MaxPool2d(2), Flatten(),
                              Linear(4 * 4 * 4, 3), input_shape=(1, 8, 8))


@pytest.mark.parametrize("setting, busy, want", [("0", 0.0, 0), ("2", 5.0, 2), ("99", 0.0, 8)])
def test_helper_count_follows_the_setting(monkeypatch, setting, busy, want):
    monkeypatch.setenv("FASTCNN_COMPILE_HELPERS", setting)
    for v in parallel_compile._MPI_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    assert helper_count(busy) == want


def test_helper_count_auto_takes_the_free_cores_and_none_under_mpi(monkeypatch):
    monkeypatch.delenv("FASTCNN_COMPILE_HELPERS", raising=False)
    for v in parallel_compile._MPI_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    assert helper_count(0.0) == 3
    assert helper_count(1.0) == 2
    assert helper_count(3.0) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert helper_count(0.0) == 3  # at most 3
    monkeypatch.setenv("PMI_RANK", "0")
    assert helper_count(0.0) == 0


def test_helpers_take_contiguous_runs_of_layers_in_order():
    assert parallel_compile._layers_for(5, 0, 1) == [0, 1, 2, 3, 4]
    assert parallel_compile._layers_for(5, 0, 2) == [0, 1]
    assert parallel_compile._layers_for(5, 1, 2) == [2, 3, 4]
    assert sorted(sum((parallel_compile._layers_for(7, k, 3) for k in range(3)), [])) == list(range(7))


def test_a_helper_leaves_out_layers_whose_kernels_a_later_layer_runs():
    """LeNet-5: the training process meets the last ReLU, pooling and Linear first in its backward pass."""
    layers = fastcnn.models.lenet5().layers  # conv relu pool conv relu pool flatten linear relu linear relu linear
    later = [i for i in range(len(layers)) if parallel_compile._same_kernels_later(layers, i)]
    assert later == [1, 2, 4, 7, 8, 9]  # ReLUs but the last, the first pooling, Linear layers but the last
    assert not parallel_compile._same_kernels_later([MaxPool2d(2), MaxPool2d(3, 2, 1)], 0)  # other kernels
    assert not parallel_compile._same_kernels_later([Linear(4, 3), Linear(3, 2, dtype=np.float64)], 0)
    assert not parallel_compile._same_kernels_later([Conv2d(1, 2, 3), Conv2d(1, 2, 3)], 0)  # plans by shape


def test_compile_layers_runs_each_layer_alone_and_leaves_the_weights():
    model = _model()
    before = [p.data.copy() for p in model.parameters()]
    compile_layers(model, (4, 1, 8, 8), range(len(model.layers)))
    compile_layers(model, (4, 1, 8, 8), [5, 0], training=False)
    for a, p in zip(before, model.parameters(), strict=True):
        assert np.array_equal(a, p.data)


def test_no_helper_starts_when_nothing_compiles(monkeypatch):
    monkeypatch.setenv("FASTCNN_COMPILE_HELPERS", "1")
    for v in parallel_compile._MPI_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    model = _model()
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    model.fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=False)  # compiled (or loaded) here
    with CompileHelpers(model, (4, 1, 8, 8)) as helpers:
        model.fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=False)
        assert helpers._procs == [] and helpers._folder is None


def test_on_an_empty_cache_helpers_start_without_waiting_for_a_compile(monkeypatch):
    monkeypatch.setenv("FASTCNN_COMPILE_HELPERS", "1")
    for v in parallel_compile._MPI_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    _model().fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=False)  # the optimizer's kernels cached
    assert not parallel_compile._cache_is_empty()
    started = []
    monkeypatch.setattr(CompileHelpers, "_start", lambda self: started.append(self))
    with CompileHelpers(_model(), (4, 1, 8, 8)) as helpers:
        assert started == [] and helpers._remove is not None  # a warm cache: waits for a first compile
    monkeypatch.setattr(parallel_compile.os.path, "exists", lambda path: False)
    assert parallel_compile._cache_is_empty()
    with CompileHelpers(_model(), (4, 1, 8, 8)) as helpers:
        assert started == [helpers]


def test_a_helper_loads_the_model_and_compiles_its_layers(monkeypatch):
    monkeypatch.setenv("FASTCNN_COMPILE_HELPERS", "1")
    for v in parallel_compile._MPI_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    helpers = CompileHelpers(_model(), (4, 1, 8, 8))
    helpers._launch(1)
    try:
        assert len(helpers._procs) == 1
        folder = helpers._folder
        assert helpers._procs[0].wait(timeout=300) == 0
    finally:
        helpers.stop()
    assert not os.path.exists(folder)
    helpers._launch(1)  # stopped: nothing starts any more
    assert helpers._procs == []


def test_helpers_plan_for_the_fitting_threads_count(monkeypatch, restore_num_threads):
    """The planned thread count is per Python thread: the helpers get the one of the thread that compiles."""
    import threading

    fastcnn.set_num_threads(1)
    seen = []
    done = threading.Event()
    monkeypatch.setattr(CompileHelpers, "_launch", lambda self, threads: (seen.append(threads), done.set()))
    helpers = CompileHelpers(_model(), (4, 1, 8, 8))
    helpers._remove = lambda: None
    helpers._start()
    assert done.wait(10)
    assert seen == [1]


_LOSS_AND_UPDATE = """
import fastcnn
from fastcnn import kernels
from fastcnn.kernels import _sgd
from fastcnn.parallel_compile import compile_loss_and_update
compile_loss_and_update(fastcnn.models.lenet5(), (8, 1, 28, 28))
print(len(kernels.softmax_cross_entropy_kernel.signatures), len(_sgd.sgd_update_many.signatures),
      len(_sgd.zero_many.signatures))
"""


def test_the_last_helper_compiles_the_loss_and_the_update_first(tmp_path):
    """In a new process with an empty cache, compile_loss_and_update compiles (for float32) the kernels the training
    process runs after its forward pass: the loss, zeroing the gradients and the SGD step."""
    import subprocess
    import sys

    from helpers import repo_env

    proc = subprocess.run([sys.executable, "-c", _LOSS_AND_UPDATE], capture_output=True, text=True, timeout=600,
                          env=repo_env(NUMBA_CACHE_DIR=str(tmp_path / "cache")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1", "1"]


def test_a_conv_layer_gives_the_same_gradients_with_the_input_gradient_first(monkeypatch, rng):
    """The order the compile helpers run a convolution's backward pass in changes nothing but the order."""
    from fastcnn.kernels import conv

    layer = Conv2d(3, 8, 3, padding=1)
    x = rng.standard_normal((4, 3, 9, 9)).astype(np.float32)
    dy = rng.standard_normal((4, 8, 9, 9)).astype(np.float32)
    got = []
    for first in (False, True):
        monkeypatch.setattr(conv, "INPUT_GRAD_FIRST", first)
        for p in layer.parameters():
            p.grad[...] = 0
        layer.forward(x)
        dx = layer.backward(dy)
        got.append((dx, layer.weight.grad.copy(), layer.bias.grad.copy()))
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)
