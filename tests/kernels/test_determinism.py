"""Same seed, same thread count, same weights: whether the kernels were compiled in this process or loaded from
Numba's cache, and whatever the workspace holds from earlier calls.

A prange kernel loaded from Numba's cache runs differently optimised code than the same kernel compiled in the
process; a sum whose order is left to the optimiser (fast-math ``reassoc``) then came out differently in the two,
and a seeded fit of a model with BatchNorm gave different weights in a process with a cold cache and one with a
warm cache.  The batch-norm and loss kernels now add in a fixed order (``fastcnn/kernels/_norm.py``,
``_losses.py``).
"""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from helpers import repo_env

import fastcnn
from fastcnn import kernels as K
from fastcnn.layers import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, ReLU, Residual

THREADS = min(2, numba.config.NUMBA_NUM_THREADS)

_REDUCTIONS = """
import numba, numpy as np, fastcnn
from fastcnn import kernels as K
fastcnn.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
rng = np.random.default_rng(0)
out = []
for dtype in {dtypes}:
    # rows of 64 (whole groups of lane steps), 49 (a tail), 256 and 1 (BatchNorm1d)
    for shape in [(16, 16, 8, 8), (16, 8, 7, 7), (8, 4, 16, 16), (32, 24, 1, 1)]:
        x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        g, b = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
        y, mean, var, inv_std = K.batch_norm_training_forward(x, g, b)
        out += [y, mean, var, inv_std, *K.batch_norm2d_backward(dy, x, g, mean, inv_std)]
        out.append(K.batch_norm2d_forward(x, g, b, mean.copy(), var.copy(), training=False)[0])
    for n, classes in [(37, 84), (64, 10)]:
        logits = (rng.standard_normal((n, classes)) * 4).astype(dtype)
        loss, dlogits = K.softmax_cross_entropy(logits, rng.integers(0, classes, n))
        out += [np.array(loss), dlogits]
        loss, dpred = K.mse_loss(logits, rng.standard_normal((n, classes)).astype(dtype))
        out += [np.array(loss), dpred]
np.save({out!r}, np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in out]))
"""


def test_reductions_compiled_and_cached_give_the_same_bits(tmp_path):
    """Batch-norm statistics and gradients and the losses: a process that compiles the float32 kernels (empty
    cache) and one that loads them from the cache it wrote give bit-identical results."""
    _cold_then_warm(tmp_path, _REDUCTIONS.replace("{dtypes}", "(np.float32,)"), timeout=900)


@pytest.mark.slow
def test_reductions_compiled_and_cached_give_the_same_bits_in_both_dtypes(tmp_path):
    """As above, float32 and float64 (a float64 sum has half the lanes: other partial sums).  Slow (the first process
    compiles twice as many kernels): run with ``-m slow``."""
    _cold_then_warm(tmp_path, _REDUCTIONS.replace("{dtypes}", "(np.float32, np.float64)"), timeout=900)


def _cold_then_warm(tmp_path, script, timeout, **env_overrides):
    """Run ``script`` (it saves an array to ``{out}``) with an empty Numba cache, then with the cache it wrote;
    assert the first run wrote the cache and both saved the same bits."""
    env = repo_env(NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTCNN_CACHE="1", **env_overrides)
    results = []
    for run in range(2):
        out = tmp_path / f"run{run}.npy"
        proc = subprocess.run([sys.executable, "-c", script.format(out=str(out))], env=env, check=False,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results.append(np.load(out))
    assert any((tmp_path / "cache").rglob("*.nbi"))  # the first run did write the cache
    np.testing.assert_array_equal(results[0], results[1])


def _bn_calls(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape[1]).astype(np.float32)
    y, mean, var, inv_std = K.batch_norm_training_forward(x, g, None)
    return [y, mean, var, inv_std, *K.batch_norm2d_backward(dy, x, g, mean, inv_std)]


def test_repeated_calls_give_the_same_bits_after_other_shapes():
    """Calls with other shapes in between (other scratch contents) change nothing, on 2 threads."""
    before = fastcnn.get_num_threads()
    fastcnn.set_num_threads(THREADS)
    try:
        first = _bn_calls(np.random.default_rng(1), (12, 6, 9, 9))
        _bn_calls(np.random.default_rng(2), (5, 6, 3, 3))
        _bn_calls(np.random.default_rng(3), (40, 16, 4, 4))
        again = _bn_calls(np.random.default_rng(1), (12, 6, 9, 9))
    finally:
        fastcnn.set_num_threads(before)
    for a, b in zip(first, again):
        assert a.tobytes() == b.tobytes()


def _fit_weights(x, y):
    fastcnn.manual_seed(0)
    model = fastcnn.Sequential(
        Conv2d(3, 8, 3, padding=1, bias=False), BatchNorm2d(8), ReLU(),
        Residual([Conv2d(8, 8, 3, padding=1, bias=False), BatchNorm2d(8), ReLU(),
                  Conv2d(8, 8, 3, padding=1, bias=False), BatchNorm2d(8)]), ReLU(),
        GlobalAvgPool2d(), Linear(8, 4), input_shape=(3, 8, 8))
    model.fit(x, y, epochs=2, batch_size=16, seed=3, verbose=False,
              optimizer=fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    buffers = [buf.copy() for layer in model.layers for buf in layer.buffers().values()]  # running statistics
    return [p.data.copy() for p in model.parameters()] + buffers


def test_seeded_fit_of_a_residual_batchnorm_model_repeats_bit_for_bit():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    before = fastcnn.get_num_threads()
    fastcnn.set_num_threads(THREADS)
    try:
        first, second = _fit_weights(x, y), _fit_weights(x, y)
    finally:
        fastcnn.set_num_threads(before)
    for a, b in zip(first, second, strict=True):
        assert a.tobytes() == b.tobytes()


_FIT = """
import numba, numpy as np, fastcnn
from fastcnn.layers import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU
fastcnn.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
fastcnn.manual_seed(3)
rng = np.random.default_rng(0)
x = rng.standard_normal((100, 1, 12, 12)).astype(np.float32)
y = rng.integers(0, 10, 100)
model = fastcnn.Sequential(Conv2d(1, 8, 3, padding=1), BatchNorm2d(8), ReLU(), MaxPool2d(2),
                           Conv2d(8, 16, 3), ReLU(), Flatten(), Linear(16 * 4 * 4, 10), input_shape=(1, 12, 12))
model.fit(x, y, epochs=2, batch_size=48, seed=5, verbose=0,
          optimizer=fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4))
np.save({out!r}, np.concatenate([p.data.ravel().astype(np.float64) for p in model.parameters()]
                                + [np.ravel(b).astype(np.float64) for layer in model.layers for b in layer.buffers().values()]))
"""


@pytest.mark.slow
def test_fit_with_an_empty_cache_and_a_warm_one_gives_the_same_weights(tmp_path):
    """Issue 12: a seeded fit (conv, BatchNorm, pooling, a last partial batch of 4) in a process that compiles every
    kernel, then in one that loads them from the cache it wrote: every weight and running statistic bit for bit.
    Slow (the first process compiles for about half a minute): run with ``-m slow``."""
    _cold_then_warm(tmp_path, _FIT, timeout=1800, FASTCNN_COMPILE_HELPERS="0")


@pytest.mark.slow
def test_a_first_fit_compiled_with_helper_processes_gives_the_warm_weights(tmp_path):
    """Issue 14: the same seeded fit, its first run with a helper process compiling layers from the last one
    (some kernels then compiled here, some loaded from what the helper wrote), then warm: the same bits."""
    _cold_then_warm(tmp_path, _FIT, timeout=1800, FASTCNN_COMPILE_HELPERS="1")


def test_cache_saves_hold_a_lock_across_processes(monkeypatch, tmp_path):
    """Issue 14: two processes saving different signatures of one kernel at once (helper processes, the tests'
    background compile, MPI ranks) could give both the same data file; fastcnn's kernels save under a lock."""
    import fcntl

    from numba.core.caching import IndexDataCacheFile

    cache_file = K.relu_forward_kernel._cache._cache_file
    assert isinstance(cache_file, IndexDataCacheFile) and type(cache_file) is not IndexDataCacheFile
    lock_path = cache_file._index_path + ".lock"
    held = []

    def save(self, key, data):  # stands for Numba's read-choose-write of the index and data files
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(fd)

    monkeypatch.setattr(IndexDataCacheFile, "save", save)
    cache_file.save(("key",), b"data")
    assert held == [True]
    fd = os.open(lock_path, os.O_RDWR)  # released after the save
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_a_signature_compiles_in_one_process_at_a_time(monkeypatch):
    """Issue 14: a process about to compile a kernel signature that another process is compiling waits for it
    (then loads it from the cache): the compile holds a lock per signature beside the kernel's index."""
    import fcntl

    from numba.core.registry import CPUDispatcher

    kernel = K.relu_forward_kernel
    K.relu_forward(np.ones(4, np.float32))  # compiled or loaded: one signature this process has
    sig = (numba.types.int16[::1], numba.types.int16[::1])  # never compiled: the lock is taken
    held = []

    def compile_(self, signature):
        locks = [p for p in os.listdir(os.path.dirname(self._cache._cache_file._index_path))
                 if p.startswith(os.path.basename(self._cache._cache_file._index_path)) and p.endswith(".compiling")]
        for name in locks:
            fd = os.open(os.path.join(os.path.dirname(self._cache._cache_file._index_path), name), os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                held.append(name)
            finally:
                os.close(fd)
        return "compiled"

    monkeypatch.setattr(CPUDispatcher, "compile", compile_)
    assert type(kernel).compile(kernel, sig) == "compiled"
    assert len(held) == 1
    held.clear()
    compiled = next(iter(kernel.overloads))  # a signature this process has: no lock
    assert type(kernel).compile(kernel, compiled) == "compiled"
    assert held == []


def test_the_signature_lock_is_taken_under_numbas_compiler_lock(monkeypatch):
    """Two threads of one process: one compiling kernel A (whose compile needs helper B), one compiling B.
    Taking the file lock only under Numba's process-wide compiler lock keeps them from waiting on each other."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import CPUDispatcher

    kernel = K.relu_forward_kernel
    owned = []
    monkeypatch.setattr(CPUDispatcher, "compile",
                        lambda self, signature: owned.append(global_compiler_lock.is_locked()))
    type(kernel).compile(kernel, (numba.types.int16[::1], numba.types.int16[::1]))
    assert owned == [True]
