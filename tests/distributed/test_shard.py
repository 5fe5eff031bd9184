"""The parts of fastcnn.distributed that need no MPI: how a global batch splits, the flat gradient buffer,
the launcher detection, the settings check and the set-up outcome (with a stand-in communicator), and the
data-parallel step on a single rank against the plain loop."""

import subprocess
import sys

import numpy as np
import pytest

import fastcnn
from fastcnn import distributed
from fastcnn.augment import Augment
from fastcnn.distributed import FlatBuffer, SettingsMismatch, shard_bounds, shard_sizes
from fastcnn.layers import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from fastcnn.layers.base import Parameter
from fastcnn.training import fit
from helpers import repo_env


class LoneComm:
    """A stand-in for a Communicator: rank ``rank`` of ``size``, whose gathers return ``others`` after its own."""

    def __init__(self, rank=0, size=1, others=()):
        self.rank, self.size, self.others = rank, size, list(others)
        self.is_root = rank == 0
        self.calls = []

    def allreduce(self, buf, op="sum"):
        self.calls.append("allreduce")
        return buf

    allreduce_int = bcast_array = allreduce

    def bcast(self, obj, root=0):
        return obj

    def allgather(self, obj):
        return ([obj] + self.others) if self.rank == 0 else (self.others[:self.rank] + [obj] + self.others[self.rank:])

    def any(self, flag):
        return bool(flag)


# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_shards_cover_every_batch_once_in_order(size):
    for m in range(0, 70):
        sizes = shard_sizes(m, size)
        bounds = [shard_bounds(m, size, r) for r in range(size)]
        assert sum(sizes) == m and max(sizes) - min(sizes) <= 1
        assert [hi - lo for lo, hi in bounds] == sizes
        assert bounds[0][0] == 0 and bounds[-1][1] == m
        assert all(bounds[r][1] == bounds[r + 1][0] for r in range(size - 1))  # contiguous, rank order
        assert sizes == [len(a) for a in np.array_split(np.arange(m), size)]
        assert m == 0 or sizes[0] >= 1  # rank 0 never idles


def test_uneven_batches_give_the_first_ranks_one_more():
    assert shard_sizes(64, 3) == [22, 21, 21]
    assert shard_sizes(11, 2) == [6, 5]
    assert shard_sizes(1, 2) == [1, 0]


@pytest.mark.parametrize("args", [(-1, 2), (4, 0)])
def test_shard_sizes_refuse_bad_arguments(args):
    with pytest.raises(ValueError, match="shard_sizes"):
        shard_sizes(*args)


def test_shard_bounds_refuse_a_rank_outside_the_job():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        shard_bounds(4, 2, 2)


# --------------------------------------------------------------------------- the flat buffer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_buffer_round_trips_every_gradient_and_the_extras(rng, dtype):
    params = [Parameter(np.zeros(shape, dtype)) for shape in [(6, 1, 5, 5), (6,), (3, 4), (1,)]]
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)
    expected = [p.grad.copy() for p in params]
    flat = FlatBuffer(params, extras=3)
    assert flat.data.dtype == dtype and flat.data.size == 150 + 6 + 12 + 1 + 3
    assert flat.nbytes == flat.data.size * np.dtype(dtype).itemsize
    data = flat.pack([1.5, 7, 32])
    np.testing.assert_array_equal(data[:150], expected[0].ravel())
    for p in params:
        p.grad[...] = 0
    data *= 2  # what a sum over two identical ranks gives
    assert flat.unpack() == [3.0, 14.0, 64.0]
    for p, e in zip(params, expected):
        np.testing.assert_array_equal(p.grad, 2 * e)


def test_flat_buffer_refuses_mixed_dtypes_and_a_wrong_number_of_extras():
    with pytest.raises(ValueError, match="one dtype"):
        FlatBuffer([Parameter(np.zeros(2, np.float32)), Parameter(np.zeros(2, np.float64))])
    flat = FlatBuffer([Parameter(np.zeros(2, np.float32))], extras=2)
    with pytest.raises(ValueError, match="expected 2 extra values, got 1"):
        flat.pack([1.0])


# --------------------------------------------------------------------------- launcher, optional mpi4py


@pytest.mark.parametrize("environ,size", [({}, 1), ({"PMI_SIZE": "4"}, 4), ({"OMPI_COMM_WORLD_SIZE": "2"}, 2),
                                          ({"PMI_SIZE": "junk"}, 1), ({"PMI_SIZE": "1"}, 1)])
def test_launched_size_reads_the_launchers_environment(environ, size):
    assert distributed.launched_size(environ) == size


def test_fastcnn_and_its_command_line_import_without_loading_mpi():
    code = ("import sys, fastcnn, fastcnn.distributed, fastcnn.cli, fastcnn.cli.train\n"
            "assert 'mpi4py' not in sys.modules, sorted(m for m in sys.modules if 'mpi' in m)")
    subprocess.run([sys.executable, "-c", code], env=repo_env(), check=True, timeout=120)


def test_a_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install 'fastcnn\[mpi\]'"):
        distributed.require_mpi()
    with pytest.raises(ImportError, match=r"fastcnn\[mpi\]"):
        distributed.Communicator()


# --------------------------------------------------------------------------- agreement and set-up outcome


def test_check_same_names_what_differs_and_leads_with_the_cause():
    mine = {"seed": 3, "batch_size": 64, "train data": "aa"}
    comm = LoneComm(0, 2, [{"seed": 4, "batch_size": 64, "train data": "bb"}])
    with pytest.raises(SettingsMismatch) as info:
        distributed.check_same(comm, mine, derived=["train data"])
    assert "the 2 ranks were started with different settings: seed: rank 0 has 3, rank 1 has 4;" in str(info.value)
    assert "train data" not in str(info.value) and "batch_size" not in str(info.value)
    with pytest.raises(SettingsMismatch, match="train data: rank 0 has aa, rank 1 has cc"):
        distributed.check_same(LoneComm(0, 2, [dict(mine, **{"train data": "cc"})]), mine, derived=["train data"])
    distributed.check_same(LoneComm(0, 3, [dict(mine), dict(mine)]), mine)  # all agree: nothing raised


def test_run_everywhere_reports_the_failing_rank_once_from_rank_0(capsys):
    comm = LoneComm(0, 2, [(1, "fastcnn: error: MNIST directory not found: /nope\n")])
    with pytest.raises(SystemExit) as info:
        distributed.run_everywhere(comm, lambda: "ready")
    assert info.value.code == 1
    assert capsys.readouterr().err == "fastcnn: error: rank 1: MNIST directory not found: /nope\n"
    assert distributed.run_everywhere(LoneComm(0, 2, [(0, "")]), lambda: "ready") == "ready"


def test_run_everywhere_holds_back_the_other_ranks_output(capsys):
    def setup():
        print("announce")
        sys.stderr.write("fastcnn: error: bad\n")
        raise SystemExit(2)

    with pytest.raises(SystemExit) as info:
        distributed.run_everywhere(LoneComm(1, 2, [(0, "")]), setup)
    assert info.value.code == 2
    assert capsys.readouterr() == ("", "")  # rank 1 says nothing: rank 0 prints its error


# --------------------------------------------------------------------------- the data-parallel step on one rank


def _small_model():
    fastcnn.manual_seed(1)
    return fastcnn.Sequential(Conv2d(1, 4, 3), BatchNorm2d(4), ReLU(), MaxPool2d(2), Flatten(), Dropout(0.3),
                              Linear(4 * 13 * 13, 10))


def _train(replicas_of=None, sync=False):
    model = _small_model()
    rng = np.random.default_rng(0)
    x, y = rng.random((45, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 45)
    opt = fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    kwargs = dict(epochs=2, batch_size=16, optimizer=opt, seed=3, verbose=False, validation_data=(x[:9], y[:9]),
                  augment=Augment(shift=1, seed=2))
    if replicas_of is None:
        return model, fit(model, x, y, **kwargs)
    comm = replicas_of()
    with distributed.DataParallel(comm, model, opt, sync_batchnorm=sync) as dp:
        history = fit(model, x, y, replicas=dp, **kwargs)
    assert "forward" not in vars(model.layers[5]) and "forward" not in vars(model.layers[1])  # restored
    return model, history


def test_the_data_parallel_step_on_one_rank_is_the_plain_step(one_thread):
    """One rank computes the whole batch: Dropout's global mask, the flat buffer and the hooks change nothing."""
    (plain, h0), (parallel, h1) = _train(), _train(LoneComm)
    for p, q in zip(plain.parameters(), parallel.parameters()):
        np.testing.assert_array_equal(q.data, p.data)
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=1e-6)
    assert h1["val_accuracy"] == h0["val_accuracy"]


def test_synchronised_batchnorm_on_one_rank_matches_the_layer(one_thread):
    (plain, _), (synced, _) = _train(), _train(LoneComm, sync=True)
    for p, q in zip(plain.parameters(), synced.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(synced.layers[1].running_var, plain.layers[1].running_var, rtol=1e-4)


def test_synchronised_batchnorm_runs_the_relu_after_it_on_one_rank_as_the_layer_does(one_thread):
    """A BatchNorm right before a ReLU runs it in its own pass (layers.chain); the synchronised one does too."""
    def model_of():
        fastcnn.manual_seed(2)
        return fastcnn.Sequential(Conv2d(1, 4, 3), BatchNorm2d(4), ReLU(), Conv2d(4, 2, 3), Flatten(),
                                  Linear(2 * 4 * 4, 3), input_shape=(1, 8, 8))

    rng = np.random.default_rng(4)
    x, y = rng.random((12, 1, 8, 8), dtype=np.float32), rng.integers(0, 3, 12)
    kwargs = dict(epochs=2, batch_size=6, seed=3, verbose=False)
    plain, synced = model_of(), model_of()
    fit(plain, x, y, optimizer=fastcnn.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9), **kwargs)
    opt = fastcnn.optim.SGD(synced.parameters(), lr=0.05, momentum=0.9)
    with distributed.DataParallel(LoneComm(), synced, opt, sync_batchnorm=True) as dp:
        fit(synced, x, y, optimizer=opt, replicas=dp, **kwargs)
        assert synced.layers[1].relu_fused
    for p, q in zip(plain.parameters(), synced.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-4, atol=1e-5)


def test_docstring_examples_hold():
    import doctest

    import fastcnn.bench.distributed
    import fastcnn.distributed.shard

    for module in (fastcnn.distributed, fastcnn.distributed.shard, fastcnn.bench.distributed):
        assert doctest.testmod(module).failed == 0, module.__name__
