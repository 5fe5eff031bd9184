"""The benchmarks' timing discipline: no timed sample holds the first call after a pause."""

import time

import pytest

from fastcnn.bench import conv, models, train
from fastcnn.bench.memory import TIMED_OPS

COLD_S = 0.03  # what the first call after a pause costs here (waking idle cores on a VM: 1-12 ms)


@pytest.fixture
def cold_after_pause(monkeypatch):
    """A pause makes the next call of any fake op slow, as an idle core's wake-up does; the pause itself is free."""
    state = {"cold": True, "calls": 0}

    def pause(seconds):
        state["cold"] = True

    def call(*args):
        state["calls"] += 1
        if state["cold"]:
            state["cold"] = False
            end = time.perf_counter() + COLD_S
            while time.perf_counter() < end:
                pass

    monkeypatch.setattr(time, "sleep", pause)
    return call


def _assert_warm(samples):
    assert samples and max(samples) < COLD_S / 3, samples


def test_conv_bench_samples_start_after_an_untimed_call(cold_after_pause):
    ops = {a: {op: (cold_after_pause, None) for op in TIMED_OPS} for a in ("direct", "torch")}
    number, samples = conv._time_ops(ops, repeat=3, settle=0.15, min_sample=0)
    for a in ops:
        for op in TIMED_OPS:
            assert number[a][op] == 1
            _assert_warm(samples[a][op])


@pytest.mark.parametrize("each_call", [False, True])
def test_model_bench_samples_start_after_an_untimed_call(cold_after_pause, each_call):
    calls, samples = models._time_steps({"a": cold_after_pause, "b": cold_after_pause}, repeat=3, settle=0.15,
                                        target=0, each_call=each_call)
    for key, rounds in samples.items():
        assert len(rounds) == 3
        _assert_warm([t for r in rounds for t in (r if each_call else [r])])


def test_train_bench_epochs_start_after_an_untimed_run(cold_after_pause):
    samples = train._time_epochs({"fastcnn": cold_after_pause, "torch": cold_after_pause}, n=8, warm=2, repeat=3,
                                 settle=0.2, seed=0)
    for name, times in samples.items():
        assert len(times) == 3
        _assert_warm(times)
