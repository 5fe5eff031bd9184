"""The PyTorch worker process of the benchmarks (fastcnn.bench.torch_worker)."""

import subprocess
import sys

import numpy as np
import pytest

from fastcnn.bench import torch_worker
from fastcnn.bench.timing import bound, time_call, time_each_call

pytest.importorskip("torch")


def test_the_worker_builds_calls_and_times_in_its_own_process():
    with torch_worker.session() as worker:  # the process's shared worker, started by the bench tests before
        before = worker.get_num_threads()
        worker.set_num_threads(1)
        assert worker.get_num_threads() == 1
        params = worker.build("fastcnn.bench.models:torch_params", "lenet5")
        assert params() == 61_706
        step = worker.build("fastcnn.bench.models:torch_train_step", "lenet5", 4, 0)
        assert step() is None
        assert 0 < time_call(step, None, 2) < 10
        each = time_each_call(step, 3)
        assert len(each) == 3 and all(0 < t < 10 for t in each)
        x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
        y = np.arange(8) % 10
        run = worker.build("fastcnn.bench.train:torch_runner", 4, {"lr": 0.01}, 0, x, y)
        assert 0 < time_call(bound(run, 8, 1)) < 10  # two batches of 4
        # a failure is reported with the worker's traceback, and the worker goes on
        with pytest.raises(RuntimeError, match="not a benchmark builder"):
            worker.build("os:system", "true")
        with pytest.raises(RuntimeError, match="KeyError"):
            worker.build("fastcnn.bench.models:torch_params", "no such model")
        assert params() == 61_706
        worker.set_num_threads(before)
    with torch_worker.session() as again:  # the same process; what the last session built is gone
        assert again is worker and again.alive()
        with pytest.raises(RuntimeError, match="KeyError"):
            params()


@pytest.mark.slow
def test_the_benchmarks_never_import_torch_into_fastcnns_process():
    script = ("import sys; from fastcnn import bench; "
              "r = bench.bench_models(threads=1, batch=2, repeat=1, models=('lenet5',), settle=0, target=0, "
              "inference=False, layers=False); "
              "assert set(r['models']['lenet5']['frameworks']) == {'fastcnn', 'torch'}, r; "
              "assert 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_a_dead_worker_is_reported_and_the_next_session_starts_another():
    with torch_worker.session() as worker:
        worker._proc.kill()
        with pytest.raises(RuntimeError, match="died"):
            worker.get_num_threads()
        assert not worker.alive()
    with torch_worker.session() as fresh:
        assert fresh is not worker and fresh.get_num_threads() >= 1
