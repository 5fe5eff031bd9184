"""The thread governor: fewer threads run on a busy machine, and the results stay the same bits."""

import numba
import numpy as np
import pytest

import fastcnn
from fastcnn import _cpuload, models, training
from fastcnn.layers import init

@pytest.fixture(autouse=True)
def _no_recent_governor(monkeypatch):
    monkeypatch.setattr(_cpuload, "_recent", __import__("threading").local())


needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")


class FakeSampler:
    """Two CPUs; other processes keep ``others[i]`` cores busy during the i-th interval."""

    def __init__(self, others):
        self.cpus = {0, 1}
        self.others = list(others)
        self.busy = self.own = 0.0
        self.calls = 0

    def sample(self):
        if self.calls:
            self.busy += self.others[(self.calls - 1) % len(self.others)] * 0.5
        self.calls += 1
        return self.busy, self.own


class FakeClock:
    """Half a second passes between two readings."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.5
        return self.now


def _governor(others, threads=2):
    return _cpuload.ThreadGovernor(threads, sampler=FakeSampler(others), interval=0.0, clock=FakeClock())


@needs_two_threads
@pytest.mark.parametrize("others, running", [(0.0, 2), (0.3, 2), (0.7, 1), (1.0, 1), (1.9, 1), (5.0, 1)])
def test_the_threads_that_run_are_the_cores_left_free(others, running):
    with _governor([others]) as governor:
        governor.tick()
        assert governor.running == running
        assert numba.get_num_threads() == running
        assert fastcnn.get_num_threads() == 2  # the planned count does not move
    assert numba.get_num_threads() == 2


@needs_two_threads
def test_the_planned_count_comes_back_when_the_machine_is_quiet_again():
    with _governor([1.0, 0.0]) as governor:
        governor.tick()
        assert governor.running == 1
        governor.tick()
        assert governor.running == 2
        assert governor.changes == 2


@needs_two_threads
def test_a_fit_right_after_another_starts_where_it_ended():
    with _governor([1.0]) as governor:
        governor.tick()
    assert numba.get_num_threads() == 2
    with _governor([0.0]) as governor:
        assert governor.running == 1 and numba.get_num_threads() == 1
        governor.tick()
        assert governor.running == 2


@needs_two_threads
def test_with_the_governor_off_the_planned_count_runs_even_after_a_busy_fit(monkeypatch):
    with _governor([1.0]) as governor:
        governor.tick()
        assert governor.running == 1
    monkeypatch.setenv("FASTCNN_DYNAMIC_THREADS", "0")
    with _cpuload.ThreadGovernor(2, sampler=FakeSampler([1.0]), interval=0.0, clock=FakeClock()) as governor:
        assert numba.get_num_threads() == 2
        governor.tick()
        assert governor.running == 2 and numba.get_num_threads() == 2


def test_without_proc_stat_the_governor_does_nothing():
    class NoStat(FakeSampler):
        def sample(self):
            return None

    before = numba.get_num_threads()
    with _cpuload.ThreadGovernor(before, sampler=NoStat([0.0]), interval=0.0, clock=FakeClock()) as governor:
        governor.tick()
        governor.tick()
        assert governor.running == before and governor.changes == 0


def test_one_planned_thread_never_reads_the_load():
    sampler = FakeSampler([1.0])
    with _cpuload.ThreadGovernor(1, sampler=sampler, interval=0.0) as governor:
        governor.tick()
    assert sampler.calls == 0 and governor.changes == 0


def test_busy_cores_is_a_number_of_cores_or_none():
    busy = _cpuload.busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= (__import__("os").cpu_count() or 1) + 0.5


def _train(name, shape, monkeypatch, others=None):
    """Weights after two seeded epochs; ``others`` drives a fake load (None: governor off)."""
    seen = []

    class Recording(_cpuload.ThreadGovernor):
        def __init__(self, threads):
            super().__init__(threads, sampler=FakeSampler(others or [0.0]), interval=0.0, clock=FakeClock())
            seen.append(self)

    monkeypatch.setattr(training, "ThreadGovernor", Recording)
    monkeypatch.setenv("FASTCNN_DYNAMIC_THREADS", "0" if others is None else "1")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, *shape)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    init.manual_seed(0)
    model = models.build(name, in_channels=shape[0], image_size=shape[1])
    model.fit(x, y, epochs=2, batch_size=16, seed=0, verbose=False)
    return [p.data.copy() for p in model.parameters()], seen[0]


@needs_two_threads
@pytest.mark.parametrize("name, shape", [("lenet5", (1, 28, 28)), ("resnet_small", (3, 32, 32))])
def test_training_on_a_changing_number_of_threads_gives_the_same_bits(name, shape, monkeypatch):
    fastcnn.set_num_threads(2)
    steady, quiet = _train(name, shape, monkeypatch)
    varying, governor = _train(name, shape, monkeypatch, others=[1.0, 0.0, 0.0, 1.0, 1.0])
    assert quiet.changes == 0
    assert governor.changes >= 3  # it did switch between 1 and 2 threads while training
    for a, b in zip(steady, varying):
        np.testing.assert_array_equal(a, b)
