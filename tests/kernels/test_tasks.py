"""Task bodies (fastcnn.kernels._tasks): compiled once per dtype, called through a symbol, loaded from the cache."""

import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import prange
from numba.core.errors import TypingError

import fastcnn
from fastcnn.config import njit, pjit
from fastcnn.kernels._tasks import parallel_tasks, task

from helpers import repo_env


@task("r2 a2 f i")
def _scaled_row(x, y, scale, i):
    for j in range(x.shape[1]):
        y[i, j] = scale * x[i, j] + 1


@pjit(cache=False)
def _scale_rows(x, y, scale):
    for i in prange(x.shape[0]):
        _scaled_row(x, y, scale, i)


@pjit(cache=False)
def _scale_rows_again(x, y, scale):
    for i in prange(x.shape[0]):
        _scaled_row(x, y, scale, i)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_calling_one_task_share_its_one_compilation_per_dtype(dtype):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    for kernel in (_scale_rows, _scale_rows_again):
        y = np.zeros_like(x)
        kernel(x, y, dtype(2), )
        np.testing.assert_array_equal(y, 2 * x + 1)
        assert y.dtype == dtype
    body = _scaled_row._fastcnn_task
    assert [str(sig[0].dtype) for sig in body.dispatcher.signatures].count(np.dtype(dtype).name) == 1
    readonly = x.copy()
    readonly.flags.writeable = False
    y = np.zeros_like(x)
    _scale_rows(readonly, y, dtype(3))  # a read-only array where the body reads: accepted
    np.testing.assert_array_equal(y, 3 * x + 1)


def test_a_call_that_does_not_fit_the_body_is_a_typing_error_naming_the_task():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypingError, match="_scaled_row"):
        _scale_rows(x, np.zeros((2, 3), np.float64), np.float32(1))  # y's dtype is not the kernel's
    with pytest.raises(TypingError, match="_scaled_row"):
        _scale_rows(x, np.zeros((2, 3, 1), np.float32), np.float32(1))  # y has 3 dimensions


def test_a_signature_that_does_not_match_the_function_is_refused():
    with pytest.raises(ValueError, match="3 arguments, 2 signature tokens"):
        task("a1 i")(lambda x, y, i: None)


_CACHED_RUN = """
import json, numpy as np
from fastcnn import compile_watch, kernels as K
out = []
for dtype in (np.float32, np.float64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 6, 6)).astype(dtype)
    cols = K.im2col(x, 3, 1, 1)                           # im2col_kernel: a task loop over planes
    out += [cols.ravel(), K.residual_add(x, x, relu=True).ravel()]  # a task loop sized by task_threads()
    if {every}:
        out.append(K.col2im(cols, x.shape, 3, 1, 1).ravel())
        w = rng.standard_normal((4, 4, 5, 3, 3, 3)).astype(dtype)
        out.append(K.locally_connected2d_forward(x, w, None).ravel())
rng = np.random.default_rng(1)  # kernels calling the micro-kernel's driver (gemm_call: a body of another module)
x = rng.standard_normal((8, 6, 7, 7)).astype(np.float32)
out.append(K.linear_forward(x.reshape(8, -1), rng.standard_normal((5, 294)).astype(np.float32), None).ravel())
if {every}:
    w = rng.standard_normal((16, 6, 3, 3)).astype(np.float32)
    y = K.conv2d_forward(x, w, None, 1, 1)            # channel-last forward
    dx, dw, db = K.conv2d_backward(y, x, w, 1, 1)     # channel-last dw, batch-last dx
    out += [a.ravel() for a in (y, dx, dw)]
np.save({out!r}, np.concatenate([a.astype(np.float64) for a in out]))
print(json.dumps(compile_watch.kernels_compiled()))
"""


@pytest.mark.parametrize("every", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["quick", "every"])
def test_task_calling_kernels_load_from_the_cache_in_a_new_process_with_the_same_bits(tmp_path, every):
    """The first process compiles (and caches) kernels with task bodies in both dtypes (small ones: im2col and a
    residual add; with ``every``, -m slow, also col2im and locally connected) and a kernel calling the
    micro-kernel's driver (a linear layer; with ``every`` also a convolution's three passes); the second compiles
    nothing: the kernels load from the cache, register their bodies and the launcher first and give the same
    bits."""
    env = repo_env(NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTCNN_CACHE="1", FASTCNN_COMPILE_HELPERS="0")
    results, compiled = [], []
    for run in range(2):
        out = tmp_path / f"run{run}.npy"
        proc = subprocess.run([sys.executable, "-c", _CACHED_RUN.format(out=str(out), every=every)], env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results.append(np.load(out))
        compiled.append(int(proc.stdout.split()[-1]))
    assert compiled[0] > 0 and compiled[1] == 0, compiled
    np.testing.assert_array_equal(results[0], results[1])


_USER_CACHED = """
import sys, numpy as np, numba
from fastcnn import kernels as K
from fastcnn.kernels import relu_forward_kernel
if sys.argv[2] == "register":
    print("registered", K.register_cached_task_bodies())

@numba.njit(cache=True)
def user_relu(x):
    y = np.empty_like(x)
    relu_forward_kernel(x, y)  # a task loop: the body and the launcher, both called by name
    return y

x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
np.save(sys.argv[1], user_relu(x))
"""


def test_user_functions_cached_on_disk_call_raw_kernels_after_registering_the_cached_bodies(tmp_path):
    """A user's @njit(cache=True) function calling a raw kernel with a task body: in a new process its cached
    code finds the body once fastcnn.kernels.register_cached_task_bodies() has run."""
    (tmp_path / "user").mkdir()
    env = repo_env(NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTCNN_CACHE="1", FASTCNN_COMPILE_HELPERS="0")
    script = tmp_path / "user" / "user_code.py"
    script.write_text(_USER_CACHED)  # unchanged between the runs: the second loads user_relu from the cache
    results = []
    for run, register in enumerate(("no", "register")):
        out = tmp_path / f"user{run}.npy"
        proc = subprocess.run([sys.executable, str(script), str(out), register], env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results.append(np.load(out))
    assert "registered" in proc.stdout and int(proc.stdout.split()[-1]) >= 1
    np.testing.assert_array_equal(results[0], results[1])


def test_a_task_body_is_compiled_with_its_array_arguments_noalias():
    """As Numba's own prange bodies: without the flag LLVM guards short loops with overlap checks (slower)."""
    x = np.ones((2, 3), np.float32)
    _scale_rows(x, np.zeros_like(x), np.float32(1))
    body = _scaled_row._fastcnn_task
    assert body.dispatcher.overloads[body.argtypes(body.dispatcher.signatures[0][0].dtype)].fndesc.noalias


_scaled_rows = parallel_tasks(_scaled_row)


@njit(cache=False)
def _scale_rows_serial(x, y, scale):
    _scaled_rows(x.shape[0], x, y, scale)


@task("j1 j1 i")
def _count_and_place(runs, threads, t):
    runs[t] += 1
    threads[t] = numba.get_thread_id()


_counted = parallel_tasks(_count_and_place)


@njit(cache=False)
def _count_tasks(n, runs, threads):
    _counted(n, runs, threads)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_tasks_from_a_serial_kernel_run_every_task_once_on_the_threads_asked(dtype, threads,
                                                                                     restore_num_threads):
    fastcnn.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    x = np.arange(37 * 5, dtype=dtype).reshape(37, 5)
    y = np.zeros_like(x)
    _scale_rows_serial(x, y, dtype(2))
    np.testing.assert_array_equal(y, 2 * x + 1)
    assert not _scale_rows_serial.targetoptions.get("parallel")  # the kernel itself is serial
    runs, placed = np.zeros(101, np.int64), np.full(101, -1, np.int64)
    _count_tasks(101, runs, placed)
    np.testing.assert_array_equal(runs, 1)
    assert set(placed) <= set(range(fastcnn.get_num_threads()))
    _count_tasks(0, runs, placed)  # no task: nothing runs
    np.testing.assert_array_equal(runs, 1)


def test_parallel_tasks_need_the_task_index_last_and_an_integer_count():
    with pytest.raises(ValueError, match="task index"):
        parallel_tasks(task("a1 i f")(lambda x, i, s: None))

    @njit(cache=False)
    def float_count(x, y):
        _scaled_rows(1.5, x, y, np.float32(1))

    with pytest.raises(TypingError, match="task count must be an integer"):
        float_count(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32))


@task("a1 i i")
def _fails_at(out, bad, t):
    out[t] = np.empty(t - bad + 1, dtype=out.dtype).shape[0]  # a negative size at t < bad - 1: an error


_failing = parallel_tasks(_fails_at)


@njit(cache=False)
def _run_failing(out, bad):
    _failing(out.shape[0], out, bad)


def test_a_failing_task_raises_after_the_loop_naming_the_task():
    out = np.zeros(8, np.float64)
    _run_failing(out, 0)
    np.testing.assert_array_equal(out, np.arange(1, 9))
    with pytest.raises(RuntimeError, match="_fails_at"):
        _run_failing(out, 3)


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_activation_kernels_take_read_only_inputs(dtype, rng):
    """Every array a task body only reads is declared read-only ("r"): a read-only input (a saved forward output,
    a memory-mapped array) is accepted, with the results of a writable one."""
    from fastcnn import kernels as K

    x, dy = rng.standard_normal((3, 37)).astype(dtype), rng.standard_normal((3, 37)).astype(dtype)
    calls = [(K.relu_forward, (x,)), (K.relu_backward, (dy, x)), (K.residual_add, (x, dy)),
             (K.sigmoid_forward, (x,)), (K.sigmoid_backward, (dy, x)), (K.tanh_forward, (x,)),
             (K.tanh_backward, (dy, x)), (K.leaky_relu_forward, (x,)), (K.leaky_relu_backward, (dy, x)),
             (K.softmax_forward, (x,)), (K.softmax_backward, (dy, x))]
    for fn, args in calls:
        np.testing.assert_array_equal(fn(*map(_read_only, args)), fn(*args), err_msg=fn.__name__)
