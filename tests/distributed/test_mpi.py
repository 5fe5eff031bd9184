"""Data-parallel training under a real ``mpiexec -n 2``: equivalence with one process, resume (also with a
different number of ranks), refusals, and jobs that end when a rank fails.

Skipped without mpi4py or ``mpiexec`` (``pip install '.[mpi]'`` brings both).  Every run has a timeout, so a
hang fails the test instead of blocking the suite.  Each rank runs on one thread (``--threads 1``): the
kernels size their tasks from the thread count, so both sides of a comparison use the same one.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import checkpoint_arrays, repo_env

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install '.[mpi]')")

WORKER = Path(__file__).with_name("_mpi_worker.py")
#: The acceptance command of issue 15, short of its output path.
TRAIN = ["train", "--epochs", "1", "--seed", "3", "--limit", "1024", "--threads", "1"]
TIMEOUT = 600  # seconds for one job: a cold Numba cache compiles on both ranks at once


def run(argv, cwd, ranks=None, timeout=TIMEOUT, **env):
    """Run ``argv`` (a list, or a list of lists for MPMD ``a : b``) under ``mpiexec -n ranks``, or alone when
    ``ranks`` is None; ``(returncode, stdout, stderr, seconds)``.  The whole process group is killed on timeout."""
    if ranks is None:
        cmd = argv
    else:
        groups = argv if isinstance(argv[0], list) else [argv]
        cmd = [MPIEXEC]
        for i, group in enumerate(groups):
            cmd += ([":"] if i else []) + ["-n", str(ranks if len(groups) == 1 else 1)] + group
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=repo_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not end within {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return proc.returncode, out, err, time.monotonic() - start


def fastcnn(*args):
    return [sys.executable, "-m", "fastcnn", *args]


def assert_weights_close(actual_path, expected_path, rtol=1e-4):
    """Every parameter within ``rtol`` of one process's, relative to each element and, for elements near zero,
    to the largest magnitude of its tensor (float summation order differs between the shards and one batch)."""
    actual, expected = checkpoint_arrays(actual_path), checkpoint_arrays(expected_path)
    params = sorted(k for k in expected if k.startswith("param_"))
    assert params and sorted(k for k in actual if k.startswith("param_")) == params
    for key in params:
        a, e = actual[key], expected[key]
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * np.abs(e).max(), err_msg=key)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The acceptance runs, shared by the tests below: one process and two ranks, one epoch each."""
    tmp = tmp_path_factory.mktemp("mpi")
    single = run(fastcnn(*TRAIN, "--out", "single.npz"), tmp)
    double = run(fastcnn(*TRAIN, "--out", "double.npz"), tmp, ranks=2)
    return tmp, single, double


def test_two_ranks_write_the_weights_one_process_writes(runs):
    """Issue 15's acceptance: ``mpiexec -n 2 fastcnn train --epochs 1 --seed 3 --limit 1024 --threads 1``."""
    tmp, single, double = runs
    assert single[0] == 0, single[2]
    assert double[0] == 0, double[2]
    assert_weights_close(tmp / "double.npz", tmp / "single.npz")
    one, two = (json.loads((tmp / f"{name}.history.json").read_text()) for name in ("single", "double"))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, err_msg=key)
    accuracy = [line for line in single[1].splitlines() if line.startswith("test accuracy")]
    assert accuracy and accuracy == [line for line in double[1].splitlines() if line.startswith("test accuracy")]


def test_only_rank_0_prints(runs):
    _, _, (status, out, err, _) = runs
    lines = out.splitlines()
    for start in ("lenet5 on MNIST sample", "epoch 1/1", "checkpoint written", "history written", "test accuracy"):
        assert sum(line.startswith(start) for line in lines) == 1, (start, out)
    assert "2 MPI ranks" in lines[0]
    assert "fastcnn: error" not in err


@pytest.mark.parametrize("first,then", [(None, 2), pytest.param(2, None, marks=pytest.mark.slow)],
                         ids=["1-rank-then-2", "2-ranks-then-1"])
def test_resume_with_another_number_of_ranks(runs, first, then):
    """Epoch 1 with one process (or two ranks: -m slow), epoch 2 resumed with the other: the weights of two epochs
    in one process."""
    tmp = runs[0]
    reference = tmp / "reference2.npz"
    if not reference.exists():
        status, _, err, _ = run(fastcnn(*TRAIN, "--epochs", "2", "--out", str(reference)), tmp)
        assert status == 0, err
    start = tmp / ("single.npz" if first is None else "double.npz")
    out = tmp / f"resumed-{first}-{then}.npz"
    status, stdout, err, _ = run(fastcnn(*TRAIN, "--epochs", "2", "--resume", str(start), "--out", str(out)), tmp,
                                 ranks=then)
    assert status == 0, err
    assert f"resuming {start} after epoch 1" in stdout
    assert_weights_close(out, reference)


def test_ranks_started_with_different_settings_are_refused(tmp_path):
    status, out, err, _ = run([fastcnn(*TRAIN, "--out", "a.npz"),
                               fastcnn(*TRAIN, "--seed", "4", "--batch-size", "32", "--out", "a.npz")],
                              tmp_path, ranks=2)
    assert status == 2, err
    errors = [line for line in err.splitlines() if line.startswith("fastcnn: error:")]
    assert len(errors) == 1, err
    assert "the 2 ranks were started with different settings" in errors[0]
    assert "seed: rank 0 has 3, rank 1 has 4" in errors[0] and "batch_size: rank 0 has 64, rank 1 has 32" in errors[0]
    assert not (tmp_path / "a.npz").exists() and "epoch 1/1" not in out


def test_a_setup_failure_on_one_rank_ends_the_job_with_its_message(tmp_path):
    """A bad file on one machine: one line naming the rank, its status, on every rank; no hang, nothing written."""
    status, _, err, seconds = run([fastcnn(*TRAIN, "--out", "a.npz"),
                                   fastcnn(*TRAIN, "--data", str(tmp_path / "missing"), "--out", "a.npz")],
                                  tmp_path, ranks=2, timeout=120)
    assert status == 1, err
    errors = [line for line in err.splitlines() if line.startswith("fastcnn: error:")]
    assert len(errors) == 1 and errors[0].startswith("fastcnn: error: rank 1: "), err
    assert "missing" in errors[0]
    assert not (tmp_path / "a.npz").exists()


@pytest.fixture(scope="module")
def api_runs(tmp_path_factory):
    """The data-parallel API's runs, shared by the two tests below: one process, then two ranks with BatchNorm
    synchronised, each fitting on 203 examples, then on 97 (one worker process, or job, for both)."""
    tmp = tmp_path_factory.mktemp("mpi_api")
    single = run([sys.executable, str(WORKER), "single.npz", "--single", "--n", "203", "97"], tmp)
    double = run([sys.executable, str(WORKER), "double.npz", "--sync-bn", "--n", "203", "97"], tmp, ranks=2)
    return tmp, single, double


def _assert_api_runs_agree(api_runs, n):
    tmp, single, double = api_runs
    assert single[0] == 0, single[2]
    assert double[0] == 0, double[2]
    one, two = np.load(tmp / f"{n}-single.npz"), np.load(tmp / f"{n}-double.npz")
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-4 * np.abs(one[key]).max(), err_msg=key)
    assert (tmp / f"{n}-double.npz.rank0.txt").read_text() == (tmp / f"{n}-double.npz.rank1.txt").read_text()
    return tmp


def test_data_parallel_api_equals_one_process_with_dropout_augment_and_synced_batchnorm(api_runs):
    """203 examples in batches of 32 (the last of 11, split 6 + 5), Dropout, Augment and BatchNorm synchronised:
    two ranks give one process's weights and history, and the same weights on both ranks."""
    tmp = _assert_api_runs_agree(api_runs, 203)
    h1, h2 = (json.loads((tmp / f"203-{n}.npz.json").read_text()) for n in ("single", "double"))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h2[key], h1[key], rtol=1e-5, err_msg=key)


def test_a_batch_smaller_than_the_ranks_leaves_a_rank_idle_and_loses_nothing(api_runs):
    """97 examples in batches of 32 over 2 ranks: the last batch (1 example) is rank 0's; rank 1 idles."""
    _assert_api_runs_agree(api_runs, 97)


@pytest.mark.parametrize("fault", ["raise", "kill", pytest.param("exit", marks=pytest.mark.slow)])
def test_a_failing_rank_ends_the_job_quickly_with_a_nonzero_status(tmp_path, fault):
    """Rank 1 raises, is SIGKILLed or exits at its third step: the job ends within seconds, status non-zero;
    an exception's message names its rank.  (A rank that exits without a word, as one SIGKILLed: -m slow.)"""
    status, _, err, seconds = run([sys.executable, str(WORKER), "out.npz", "--fault", fault], tmp_path, ranks=2,
                                  timeout=120)
    assert status != 0, err
    assert seconds < 60, seconds
    if fault == "raise":
        assert "fastcnn: error: rank 1: RuntimeError: injected failure on rank 1" in err
    assert not (tmp_path / "out.npz").exists()


def test_a_hanging_rank_ends_the_job_after_the_timeout(tmp_path):
    """Rank 1 stops answering (it sleeps forever): rank 0 gives up after FASTCNN_MPI_TIMEOUT seconds and ends
    the job, instead of waiting in the allreduce forever."""
    status, _, err, seconds = run([sys.executable, str(WORKER), "out.npz", "--fault", "hang"], tmp_path, ranks=2,
                                  timeout=120, FASTCNN_MPI_TIMEOUT="3")
    assert status != 0, err
    assert "fastcnn: error: rank 0: no reply from the other ranks within 3 s in allreduce" in err
    assert seconds < 60, seconds


def test_the_example_trains_on_two_ranks(tmp_path):
    example = Path(__file__).resolve().parents[2] / "examples" / "distributed_mnist.py"
    status, out, err, _ = run([sys.executable, str(example), "--tiny", "--threads", "1"], tmp_path, ranks=2)
    assert status == 0, err
    assert "over 2 rank(s)" in out and "final test accuracy" in out
    assert out.count("final test accuracy") == 1 and list(tmp_path.iterdir()) == []


def test_bench_distributed_reports_images_per_second_and_the_allreduce_share():
    from fastcnn.bench.distributed import CONFIGS, bench_distributed, format_distributed

    result = bench_distributed(batches=2, epochs=1, repeat=1, timeout=TIMEOUT)
    assert set(result["configs"]) == {label for label, _, _ in CONFIGS}
    assert result["allreduce_bytes"] == 4 * result["parameters"] + 12  # float32 gradients, 3 extras
    two = result["configs"]["2 ranks x 1 thread"]
    assert two["images_per_s"] > 0 and 0 <= two["allreduce_share"] <= 1 and two["allreduce_alone_ms"] > 0
    text = format_distributed(result)
    assert "2 ranks x 1 thread" in text and "global batch for <10% comm" in text
