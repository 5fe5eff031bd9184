"""The channel-last convolution path: its micro-kernel, its workspace and its raw kernels.

The convolution results themselves are checked against the naive loops, the
float64 central differences and PyTorch through the ``channellast_*`` cases
of ``naive.CONV_CASES``; this file covers what those cannot see.
"""

import subprocess
import sys
import threading

import numba
import numpy as np
import pytest

import naive as nv
from helpers import conv_inputs, repo_env
from fastcnn import config, kernels
from fastcnn.kernels._gemm import compile_gemm_acc

#: the micro-kernel widths this CPU can run (both on an AVX-512 CPU)
WIDTHS = (256, 512) if config.HOST_VECTOR_BITS == 512 else (256,)


#: M covers every way the row drivers split rows: 6- or 8-row blocks, 4 + 4 for the last 8 on AVX2, then 4, 2, 1
GEMM_SHAPES = [(1, 1, 1, 1), (4, 16, 1, 7), (7, 27, 3, 5), (13, 40, 2, 9), (3, 8, 1, 0), (17, 56, 2, 6), (9, 88, 1, 3),
               (8, 16, 2, 4), (14, 32, 1, 5), (16, 24, 2, 3), (11, 48, 1, 2)]


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,U,L", GEMM_SHAPES)
def test_gemm_acc_matches_numpy(M, N, U, L, dtype, bits, rng):
    """c += a @ b over a two-level reduction, with strided a and an offset block of c, at every vector width."""
    gemm_acc = compile_gemm_acc(bits)
    a = rng.standard_normal((M, U, L, 2)).astype(dtype)  # the last axis doubles the stride of l
    b = rng.standard_normal((U, L, N + 5)).astype(dtype)  # 5 extra columns that must not be touched
    c = rng.standard_normal((M + 1, N + 3)).astype(dtype)
    expected = c.copy()
    expected[1:, 2:2 + N] += np.einsum("iul,ulj->ij", a[..., 0].astype(np.float64), b[..., :N].astype(np.float64))
    gemm_acc(c.reshape(-1), (N + 3) + 2, N + 3, a.reshape(-1), 0, U * L * 2, L * 2, 2,
             b.reshape(-1), 0, L * (N + 5), N + 5, U, L, M, N)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)


@pytest.mark.skipif(len(WIDTHS) == 1, reason="this CPU has no AVX-512: only the 256-bit micro-kernel runs here")
@pytest.mark.parametrize("M,N,U,L", GEMM_SHAPES)
def test_gemm_acc_widths_give_the_same_bits(M, N, U, L, rng):
    """Each element is one chain of fused multiply-adds in reduction order, whichever block computes it."""
    a = rng.standard_normal(M * U * L).astype(np.float32)
    b = rng.standard_normal(U * L * N).astype(np.float32)
    c0 = rng.standard_normal(M * N).astype(np.float32)
    results = []
    for bits in WIDTHS:
        c = c0.copy()
        compile_gemm_acc(bits)(c, 0, N, a, 0, U * L, L, 1, b, 0, L * N, N, U, L, M, N)
        results.append(c)
    np.testing.assert_array_equal(results[0], results[1])


def test_workspace_reuse_never_returns_stale_results(rng):
    """Two inputs of one shape, alternated: every call sees its own input (the copies are rewritten)."""
    x1, w, b, s, p = conv_inputs(rng, "channellast_K27_C17_rect_stride_pad", np.float64)
    x2 = rng.standard_normal(x1.shape)
    y1 = kernels.conv2d_forward(x1, w, b, s, p)
    y2 = kernels.conv2d_forward(x2, w, b, s, p)
    y1_again = kernels.conv2d_forward(x1, w, b, s, p)
    np.testing.assert_array_equal(y1, y1_again)
    np.testing.assert_allclose(y2, nv.conv2d_forward(x2, w, b, s, p), rtol=1e-10, atol=1e-10)
    g1 = kernels.conv2d_backward(y1, x1, w, s, p)
    g2 = kernels.conv2d_backward(y2, x2, w, s, p)
    for got, want in zip(g2, nv.conv2d_backward(y2, x2, w, s, p)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    for got, want in zip(kernels.conv2d_backward(y1, x1, w, s, p), g1):
        np.testing.assert_array_equal(got, want)


def test_results_are_not_workspace_views(rng):
    x, w, b, s, p = conv_inputs(rng, "channellast_K16_C16_pad1", np.float32)
    y = kernels.conv2d_forward(x, w, b, s, p)
    dx, dw, db = kernels.conv2d_backward(y, x, w, s, p)
    before = [a.copy() for a in (y, dx, dw, db)]
    kernels.conv2d_backward(rng.standard_normal(y.shape).astype(np.float32), x + 1, w, s, p)
    for a, was in zip((y, dx, dw, db), before):
        np.testing.assert_array_equal(a, was)


def test_clear_workspace(rng):
    x, w, b, s, p = conv_inputs(rng, "channellast_K16_C16_pad1", np.float32)
    kernels.clear_workspace()
    y = kernels.conv2d_forward(x, w, b, s, p)
    held = kernels.workspace_usage()
    plans = kernels.conv2d_plan(x.shape, w.shape, s, p)
    kept = sum(b.size for b in plans.forward.buffers if b.kind == "workspace") * 4
    assert held["arrays"] == 2 and held["bytes"] == kept
    kernels.clear_workspace()
    assert kernels.workspace_usage()["arrays"] == 0 and kernels.workspace_usage()["bytes"] == 0
    np.testing.assert_array_equal(kernels.conv2d_forward(x, w, b, s, p), y)


def test_workspace_is_bounded(rng):
    kernels.clear_workspace()
    w = rng.standard_normal((16, 6, 3, 3)).astype(np.float32)  # channel_last: an (n, 7, 7, 6) copy per batch size
    slots = kernels.workspace_usage()["slots"]
    for n in range(1, slots + 6):
        kernels.conv2d_forward(rng.standard_normal((n, 6, 5, 5)).astype(np.float32), w, None, 1, 1)
    assert kernels.workspace_usage()["arrays"] == slots


def test_a_cycle_of_calls_finds_its_whole_workspace_kept(rng):
    """A training step asks for its buffers in the same cycle every step (vgg_small 36 of them, mobilenet_small
    50): the second time round a cycle of 48 shapes allocates nothing (an LRU cache smaller than the cycle would
    miss on every request)."""
    kernels.clear_workspace()
    w = rng.standard_normal((16, 6, 3, 3)).astype(np.float32)  # channel_last: an (n, 7, 7, 6) copy per batch size
    xs = [rng.standard_normal((n, 6, 5, 5)).astype(np.float32) for n in range(1, 49)]
    usage = []
    for _ in range(2):
        for x in xs:
            kernels.conv2d_forward(x, w, None, 1, 1)
        usage.append(kernels.workspace_usage())
    assert usage[0]["arrays"] > 32
    assert usage[1]["allocations"] == usage[0]["allocations"]


def test_concurrent_calls_from_python_threads(rng):
    """Each Python thread has its own workspace: concurrent calls give the single-threaded results."""
    cases = [conv_inputs(rng, "channellast_K16_C40_padding_ge_kernel", np.float32) for _ in range(4)]
    expected = [kernels.conv2d_backward(kernels.conv2d_forward(x, w, b, s, p), x, w, s, p)
                for x, w, b, s, p in cases]
    results = [None] * len(cases)

    def work(i):
        x, w, b, s, p = cases[i]
        for _ in range(5):
            results[i] = kernels.conv2d_backward(kernels.conv2d_forward(x, w, b, s, p), x, w, s, p)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        for a, e in zip(got, want):
            np.testing.assert_array_equal(a, e)


def test_raw_channel_last_kernels_from_numba(rng):
    """The raw kernels compose inside user @njit code and agree with the checked function."""
    from fastcnn.kernels import conv2d_forward_channellast, to_channel_last

    @numba.njit
    def conv_same_3x3(x, w2, b):
        N, C, H, W = x.shape
        xp = np.empty((N, H + 2, W + 2, C), dtype=x.dtype)
        to_channel_last(x, xp, 1, 1)
        y = np.empty((N, b.shape[0], H, W), dtype=x.dtype)
        scratch = np.empty((2, W, w2.shape[2]), dtype=x.dtype)  # two tasks' output-row buffers
        conv2d_forward_channellast(xp, w2, b, y, 1, 1, scratch)
        return y

    x = rng.standard_normal((3, 5, 7, 6)).astype(np.float32)
    w = rng.standard_normal((16, 5, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    w2 = np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(3, 3 * 5, 16)
    np.testing.assert_allclose(conv_same_3x3(x, w2, b), kernels.conv2d_forward(x, w, b, 1, 1), rtol=1e-5, atol=1e-5)


_CACHED_RUN = """
import numpy as np
from fastcnn import kernels as K
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 6, 7, 7)).astype(np.float32)
w = rng.standard_normal((16, 6, 3, 3)).astype(np.float32)
y = K.conv2d_forward(x, w, None, 1, 1)            # channel-last forward
dx, dw, db = K.conv2d_backward(y, x, w, 1, 1)     # channel-last dw, batch-last dx
z = K.linear_forward(x.reshape(8, -1), rng.standard_normal((5, 294)).astype(np.float32), None)
np.save({out!r}, np.concatenate([a.ravel() for a in (y, dx, dw, z)]))
"""


def _cached_runs(tmp_path, runs, **env_overrides):
    """Run ``_CACHED_RUN`` ``runs`` times with one Numba cache (empty before the first) and return the results."""
    env = repo_env(NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTCNN_CACHE="1", **env_overrides)
    results = []
    for run in range(runs):
        out = tmp_path / f"run{run}.npy"
        proc = subprocess.run([sys.executable, "-c", _CACHED_RUN.format(out=str(out))], env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results.append(np.load(out))
    assert any((tmp_path / "cache").rglob("*.nbi"))  # the first run did write the cache
    return results


@pytest.mark.slow
def test_kernels_calling_the_micro_kernel_load_from_the_cache(tmp_path):
    """The kernels call gemm_acc through a symbol (fastcnn.kernels._gemm.gemm_call); in a second process they
    load from Numba's cache, link to it and give the same results.  The quick run checks the same kernels in
    tests/kernels/test_tasks.py (one pair of processes for every task-calling kernel)."""
    compiled, loaded = _cached_runs(tmp_path, 2)
    np.testing.assert_array_equal(compiled, loaded)


@pytest.mark.slow
@pytest.mark.skipif(len(WIDTHS) == 1, reason="this CPU has no AVX-512: only the 256-bit micro-kernel runs here")
def test_cached_kernels_linked_to_the_256_bit_micro_kernel_give_the_same_bits(tmp_path):
    """As above, then a third process with FASTCNN_VECTOR_BITS=256 on the same cache: the same bits.
    Slow (a third process, and the first compiles): run with ``-m slow``."""
    compiled, loaded = _cached_runs(tmp_path, 2)
    env = repo_env(NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTCNN_CACHE="1", FASTCNN_VECTOR_BITS="256")
    out = tmp_path / "run256.npy"
    proc = subprocess.run([sys.executable, "-c", _CACHED_RUN.format(out=str(out))], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    np.testing.assert_array_equal(np.load(out), compiled)


@pytest.mark.parametrize("value", ["1024", "avx"] + (["512"] if len(WIDTHS) == 1 else []))
def test_a_bad_vector_width_setting_is_refused_at_import(value):
    proc = subprocess.run([sys.executable, "-c", "import fastcnn"], env=repo_env(FASTCNN_VECTOR_BITS=value),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "FASTCNN_VECTOR_BITS" in proc.stderr.splitlines()[-1]
