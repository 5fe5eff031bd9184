"""Kernels called from several Python threads at once give, bit for bit, what the same calls give one after another.

Every case below is a pure function of inputs made once up front, in four sets of numbers per shape.  The serial
results are computed first, in the main thread; then 4 threads (released together by a barrier) run every case,
each thread in its own order, with the same Numba thread count as the serial run (the per-thread buffers of a
convolution plan are sized by it), and every result must equal the serial one exactly.  The convolution
algorithms that keep layout copies and partial sums in the per-thread workspace (``channel_last``,
``batch_last``, ``rows``, ``winograd``, ``winograd4``) run the same shapes on different numbers in every thread:
with a workspace shared between threads (tried by replacing ``_workspace.WORKSPACE`` with a plain object) 19 of
these cases come out wrong.

Two bugs were found here: under Numba's ``workqueue`` threading layer concurrent kernel calls aborted the process
(now serialised by ``fastcnn.config``), and one eval-mode ``Conv2d`` called from several threads shared its
layout copy of x between them (``PreparedConv`` now makes it in the calling thread's workspace).
"""

import concurrent.futures
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest
from helpers import REPO, repo_env

import fastcnn
from fastcnn import kernels as K
from fastcnn.layers import Conv2d

WORKERS = 4


def _conv_case(x, w, b, dy, stride, padding, algorithm):
    def run():
        y = K.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)
        dx, dw, db = K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm)
        return y, dx, dw, db
    return run


def _cases(seed=0):
    """{name: zero-argument function returning a tuple of arrays}, inputs drawn once from ``seed``."""
    rng = np.random.default_rng(seed)

    def rand(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    cases = {}
    # (x shape, K, kernel, stride, padding, algorithms)
    convs = [
        ((8, 16, 12, 12), 16, 3, 1, 1, ("channel_last", "winograd", "winograd4", "rows", "batch_last", "nchw",
                                         "im2col")),
        ((8, 3, 11, 11), 8, 3, 2, 1, ("channel_last", "batch_last", "nchw")),
        ((4, 8, 9, 9), 12, 1, 1, 0, ("matmul_1x1", "channel_last")),
        ((4, 6, 5, 5), 10, 5, 1, 0, ("matmul_whole_input",)),
    ]
    for dtype in (np.float32, np.float64):
        for shape, k, r, stride, padding, algorithms in convs:
            x, w, b = rand(*shape, dtype=dtype), rand(k, shape[1], r, r, dtype=dtype), rand(k, dtype=dtype)
            out = K.conv2d_output_shape(x.shape, w.shape, stride, padding)
            dy = rand(*out, dtype=dtype)
            for algorithm in algorithms:
                name = f"conv {shape} {algorithm} {np.dtype(dtype).name}"
                cases[name] = _conv_case(x, w, b, dy, stride, padding, algorithm)
    x = rand(8, 6, 10, 10)
    cases["auto conv"] = _conv_case(x, rand(16, 6, 3, 3), None, rand(8, 16, 8, 8), 1, 0, "auto")

    def pooling():
        y, argmax = K.max_pool2d_forward(x, 2)
        dx = K.max_pool2d_backward(np.ones_like(y), argmax, x.shape)
        a = K.avg_pool2d_forward(x, 3, 2, 1)
        da = K.avg_pool2d_backward(np.ones_like(a), x.shape, 3, 2, 1)
        g = K.global_avg_pool2d_forward(x)
        return y, argmax, dx, a, da, g, K.global_avg_pool2d_backward(g, x.shape)

    h, wl, bl = rand(32, 100), rand(40, 100), rand(40)

    def linear():
        y = K.linear_forward(h, wl, bl)
        return (y, *K.linear_backward(y, h, wl))

    gamma, beta = rand(6), rand(6)

    def batch_norm():
        mean, var = np.zeros(6, np.float32), np.ones(6, np.float32)
        y, *stats = K.batch_norm2d_forward(x, gamma, beta, mean, var, training=True)
        return (y, mean, var, *stats, *K.batch_norm2d_backward(y, x, gamma, *stats[:2]))

    labels = rng.integers(0, 40, 32)

    def loss_and_activations():
        logits = K.linear_forward(h, wl, bl)
        loss, dlogits = K.softmax_cross_entropy(logits, labels)
        r = K.relu_forward(logits)
        return np.array(loss), dlogits, r, K.relu_backward(dlogits, r), K.softmax_forward(logits)

    cases.update(pooling=pooling, linear=linear, batch_norm=batch_norm, loss=loss_and_activations)
    return cases


def _bits(arrays):
    return [(a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes()) for a in arrays]


def _run_concurrently(cases, expected, rounds, threads):
    """Every case ``rounds`` times in each of WORKERS threads (each thread its own order); mismatching names."""
    names = sorted(cases)
    barrier = threading.Barrier(WORKERS)

    def worker(i):
        fastcnn.set_num_threads(threads)
        order = [n for _ in range(rounds) for n in np.random.default_rng(i).permutation(names)]
        barrier.wait()
        return [str(name) for name in order if _bits(cases[name]()) != expected[name]]

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        return sorted({name for bad in pool.map(worker, range(WORKERS)) for name in bad})


def _all_cases(variants):
    """The cases of :func:`_cases` for ``variants`` seeds: the same shapes with different numbers."""
    return {f"{name} #{seed}": run for seed in range(variants) for name, run in _cases(seed).items()}


def test_kernels_in_threads_match_serial_results_bit_for_bit():
    threads = fastcnn.get_num_threads()
    cases = _all_cases(WORKERS)
    expected = {name: _bits(run()) for name, run in cases.items()}
    assert _run_concurrently(cases, expected, rounds=1, threads=threads) == []
    # Numba's threading layer here (GNU OpenMP or TBB: thread-safe) runs them at once, without fastcnn's lock
    assert fastcnn.config.calls_serialised() == (numba.threading_layer() == "workqueue")


@pytest.mark.slow
def test_kernels_in_threads_for_longer():
    """The test above, deeper: eight sets of numbers per shape, every case four times in each thread."""
    threads = fastcnn.get_num_threads()
    cases = _all_cases(2 * WORKERS)
    expected = {name: _bits(run()) for name, run in cases.items()}
    assert _run_concurrently(cases, expected, rounds=4, threads=threads) == []


def test_a_new_thread_starts_with_an_empty_workspace():
    """The workspace is per thread: arrays one thread keeps are not handed to another, nor counted there."""
    x = np.random.default_rng(0).standard_normal((4, 16, 8, 8)).astype(np.float32)
    K.conv2d_forward(x, x[:1].repeat(16, axis=0)[:, :, :3, :3].copy(), None, algorithm="channel_last")
    assert K.workspace_usage()["arrays"] > 0
    seen = []
    thread = threading.Thread(target=lambda: seen.append(K.workspace_usage()["arrays"]))
    thread.start()
    thread.join()
    assert seen == [0]


_WORKQUEUE = """
import sys
sys.path[:0] = [{tests!r}, {here!r}]
import numba, fastcnn
import test_concurrency_kernels as t
cases = t._all_cases(2)
expected = {{name: t._bits(run()) for name, run in cases.items()}}
assert numba.threading_layer() == "workqueue", numba.threading_layer()
assert fastcnn.config.calls_serialised()
print("mismatches", t._run_concurrently(cases, expected, rounds=1, threads=fastcnn.get_num_threads()))
"""


def test_workqueue_threading_layer_serialises_calls_instead_of_aborting():
    """Numba's workqueue layer (its fallback where neither OpenMP nor TBB loads) aborts the process when two
    parallel kernels run at once; under it fastcnn's kernels take a lock, so threads get the serial results."""
    here = str(REPO / "tests" / "kernels")
    code = _WORKQUEUE.format(tests=str(REPO / "tests"), here=here)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False,
                         env=repo_env(NUMBA_THREADING_LAYER="workqueue"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "mismatches []" in run.stdout


@pytest.mark.parametrize("algorithm", ["channel_last", "batch_last", "auto"])
def test_one_conv_layer_in_eval_mode_called_from_threads(algorithm):
    """A Conv2d layer keeps its own layout copy of x between forward and backward (``PreparedConv``); in eval mode
    (nothing kept for backward) several threads may call one layer's forward at once, each on its own input."""
    rng = np.random.default_rng(1)
    conv = Conv2d(16, 24, 3, padding=1, algorithm=algorithm).eval()
    xs = [rng.standard_normal((8, 16, 10, 10)).astype(np.float32) for _ in range(WORKERS)]
    expected = [conv.forward(x).tobytes() for x in xs]
    threads = fastcnn.get_num_threads()
    barrier = threading.Barrier(WORKERS)

    def worker(i):
        fastcnn.set_num_threads(threads)
        barrier.wait()
        return sum(conv.forward(xs[i]).tobytes() != expected[i] for _ in range(30))

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        assert list(pool.map(worker, range(WORKERS))) == [0] * WORKERS
