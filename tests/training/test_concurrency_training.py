"""Models trained and used in several Python threads of one process give what the same runs give one at a time.

Each test computes its reference serially (in the main thread, or in a thread of its own with the same Numba
thread count), then runs the same work in threads released together by a barrier and compares every weight and
every history value bit for bit.  The Numba thread count is set in every thread to the reference's: it is a
per-thread setting (see ``fastcnn.set_num_threads``) and sizes the per-thread partial sums of the convolution
plans, so it is part of what a seeded run computes.

Bugs found here: ``predict`` from several threads with one model left in training mode (as ``fit`` leaves it)
let one thread's switch back to training mode reach another's remaining batches (fixed in
``fastcnn/model.py``: the first prediction switches, the last switches back); and under Numba's ``workqueue``
threading layer two threads training at once aborted the process (fixed in ``fastcnn/config.py``).
"""

import concurrent.futures
import copy
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest
from helpers import REPO, repo_env

import fastcnn
from fastcnn.augment import random_shift
from fastcnn.kernels import conv_tune
from fastcnn.layers import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
)


def _data(n=48, shape=(1, 12, 12), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    return x, rng.integers(0, 10, n)


def _lenet_like(seed, algorithm="auto"):
    fastcnn.manual_seed(seed)
    return fastcnn.Sequential(
        Conv2d(1, 8, 3, padding=1, algorithm=algorithm), BatchNorm2d(8), ReLU(), MaxPool2d(2),
        Conv2d(8, 16, 3, padding=1, algorithm=algorithm), ReLU(), MaxPool2d(2), Flatten(),
        Dropout(0.25, seed=seed), Linear(16 * 3 * 3, 10))


def _other_net(seed):
    """A different architecture: strided convolution, average and global pooling, 16+ channels (channel_last)."""
    fastcnn.manual_seed(seed)
    return fastcnn.Sequential(
        Conv2d(1, 16, 3, stride=2, padding=1), ReLU(), Conv2d(16, 24, 3, padding=1), BatchNorm2d(24), ReLU(),
        AvgPool2d(2), Conv2d(24, 10, 1), GlobalAvgPool2d())


def _fit(model, x, y, seed, augment_seed=None, epochs=2):
    augment = None
    if augment_seed is not None:
        rng = np.random.default_rng(augment_seed)

        def augment(batch):
            return random_shift(batch, 1, rng)
    history = model.fit(x, y, epochs=epochs, batch_size=16, seed=seed, verbose=False, augment=augment)
    return _bits(model), history


def _bits(model):
    return [p.data.tobytes() for p in model.parameters()]


def _in_threads(*jobs, threads=None):
    """Run the zero-argument ``jobs`` in threads of their own, started together; their results in order.

    Each thread first sets the Numba thread count to ``threads`` (default: the main thread's).
    """
    threads = threads or fastcnn.get_num_threads()
    barrier = threading.Barrier(len(jobs))

    def run(job):
        fastcnn.set_num_threads(threads)
        barrier.wait()
        return job()

    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        return [f.result() for f in [pool.submit(run, job) for job in jobs]]


def test_two_models_trained_in_two_threads_match_serial_runs():
    xa, ya = _data(seed=1)
    xb, yb = _data(seed=2)
    a, b = _lenet_like(3), _other_net(4)
    a_ref, b_ref = copy.deepcopy(a), copy.deepcopy(b)
    expected = [_fit(a_ref, xa, ya, seed=5), _fit(b_ref, xb, yb, seed=6, augment_seed=7)]
    got = _in_threads(lambda: _fit(a, xa, ya, seed=5), lambda: _fit(b, xb, yb, seed=6, augment_seed=7))
    for (w, history), (w_ref, history_ref) in zip(got, expected):
        assert history == {**history_ref, "epoch_time": history["epoch_time"]}
        assert w == w_ref


def test_copies_of_one_model_with_one_seed_in_threads_end_with_the_serial_weights():
    x, y = _data()
    serial = _fit(_lenet_like(11), x, y, seed=12)[0]
    models = [_lenet_like(11) for _ in range(3)]
    results = _in_threads(*[lambda m=m: _fit(m, x, y, seed=12)[0] for m in models])
    assert all(r == serial for r in results)


def test_a_model_trains_while_another_thread_predicts_with_another():
    x, y = _data()
    trained, predictor = _lenet_like(21), _other_net(22)
    reference = _fit(copy.deepcopy(trained), x, y, seed=23)[0]
    small, large = x[:2], x  # 2 images run on one thread inside predict (fuse.SERIAL_MAX_MACS), 48 in parallel
    expected = [predictor.predict(small).tobytes(), predictor.predict(large, batch_size=16).tobytes()]
    done = threading.Event()

    def train():
        try:
            return _fit(trained, x, y, seed=23)[0]
        finally:
            done.set()

    def predict():
        threads, calls, wrong = fastcnn.get_num_threads(), 0, 0
        while not done.is_set() or calls < 4:
            got = [predictor.predict(small).tobytes(), predictor.predict(large, batch_size=16).tobytes()]
            wrong += got != expected
            calls += 1
        return wrong, fastcnn.get_num_threads() == threads

    weights, (wrong, threads_kept) = _in_threads(train, predict)
    assert weights == reference
    assert wrong == 0
    assert threads_kept  # predict's one-thread switch for small batches is undone, in its own thread only


def test_concurrent_predictions_with_one_model_left_in_training_mode():
    """``predict`` switches a model in training mode (as ``fit`` leaves it) to eval mode and back: with several
    threads predicting at once, one thread's switch back must not put another's remaining batches (here through
    Dropout and BatchNorm) in training mode."""
    x, y = _data(n=24)
    model = _lenet_like(31)
    _fit(model, x, y, seed=32, epochs=1)
    assert model.training
    expected = model.predict(x, batch_size=2).tobytes()

    def predict():
        return sum(model.predict(x, batch_size=2).tobytes() != expected for _ in range(40))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: a race shows within a few calls
    try:
        assert _in_threads(*[predict] * 4) == [0] * 4
    finally:
        sys.setswitchinterval(interval)
    assert model.training and all(layer.training for layer in model.layers)


class _Gate(Layer, register=False):
    """The identity, which holds the threads named in :attr:`stops` until told: forces an interleaving."""

    def __init__(self):
        self.stops = {}  # thread name -> (entered, release) events

    def forward(self, x):
        stop = self.stops.get(threading.current_thread().name)
        if stop is not None:
            stop[0].set()
            stop[1].wait(30)
        return x

    def backward(self, dy, need_input_grad=True):
        return dy


def test_a_prediction_ending_does_not_switch_another_back_to_training():
    """The interleaving of the test above, forced: A's prediction starts (switching the model to eval mode),
    B's starts, A's ends while B is between layers; B's output must still be the eval-mode output."""
    x, y = _data(n=8)
    fastcnn.manual_seed(33)
    gate = _Gate()
    model = fastcnn.Sequential(Conv2d(1, 4, 3, padding=1), ReLU(), gate, Flatten(), Dropout(0.5, seed=34),
                               Linear(4 * 12 * 12, 10))
    model.fit(x, y, epochs=1, batch_size=4, seed=35, verbose=False)
    expected = model.predict(x).tobytes()
    gate.stops = {name: (threading.Event(), threading.Event()) for name in "AB"}
    results = {}

    def predict():
        results[threading.current_thread().name] = model.predict(x).tobytes()

    threads = {name: threading.Thread(target=predict, name=name) for name in "AB"}
    threads["A"].start()
    assert gate.stops["A"][0].wait(30)  # A is inside predict, the model in eval mode
    threads["B"].start()
    assert gate.stops["B"][0].wait(30)  # B too
    gate.stops["A"][1].set()
    threads["A"].join(30)  # A has finished
    gate.stops["B"][1].set()
    threads["B"].join(30)
    assert results["A"] == expected
    assert results["B"] == expected, "B's last layers ran in training mode (dropout on)"
    assert model.training and all(layer.training for layer in model.layers)


@pytest.fixture
def fresh_tuning(tmp_path, monkeypatch):
    """An empty table of tuned choices, with quick timing; the table of before is put back after."""
    saved = conv_tune.save_tuned_plans(tmp_path / "before.json")
    conv_tune.clear_tuned_plans()
    monkeypatch.setattr(conv_tune, "REPEATS", 1)
    monkeypatch.setattr(conv_tune, "MIN_SECONDS", 0.0)
    monkeypatch.delenv("FASTCNN_TUNED_PLANS", raising=False)
    yield
    conv_tune.clear_tuned_plans()
    conv_tune.load_tuned_plans(saved)


def test_tuned_layers_in_two_threads(fresh_tuning):
    """Two models with ``algorithm="tuned"`` convolutions train in two threads (both tune the same shapes at
    once: one times, the other waits for its choice); each ends with the weights a serial run gets with the
    choices made."""
    x, y = _data()
    models = [_lenet_like(41, "tuned"), _lenet_like(42, "tuned")]
    references = [copy.deepcopy(m) for m in models]
    got = _in_threads(*[lambda m=m: _fit(m, x, y, seed=43)[0] for m in models])
    choices = conv_tune.tuned_plans()
    assert {c["threads"] for c in choices} == {fastcnn.get_num_threads()}
    assert len({(c["op"], str(c["geometry"])) for c in choices}) == len(choices)  # each pass tuned once
    assert [_fit(m, x, y, seed=43)[0] for m in references] == got
    assert conv_tune.tuned_plans() == choices  # the serial runs used the choices made in the threads


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
def test_numba_thread_counts_are_per_python_thread(restore_num_threads):
    """``fastcnn.set_num_threads`` sets the count of the calling Python thread only (Numba's rule): two threads
    training with 1 and 2 kernel threads each get the serial result for their count, and neither changes the
    other's or the main thread's count; a new thread starts with ``NUMBA_NUM_THREADS``."""
    x, y = _data()
    expected = {}
    for n in (1, 2):
        fastcnn.set_num_threads(n)
        expected[n] = _fit(_lenet_like(51), x, y, seed=52)[0]
    fastcnn.set_num_threads(1)
    models = {n: _lenet_like(51) for n in (1, 2)}
    barrier = threading.Barrier(2)

    def train(n):
        fastcnn.set_num_threads(n)
        barrier.wait()
        weights = _fit(models[n], x, y, seed=52)[0]
        return weights, fastcnn.get_num_threads()

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = dict(zip((1, 2), pool.map(train, (1, 2))))
    assert results[1] == (expected[1], 1)
    assert results[2] == (expected[2], 2)
    assert fastcnn.get_num_threads() == 1
    fresh = []
    thread = threading.Thread(target=lambda: fresh.append(fastcnn.get_num_threads()))
    thread.start()
    thread.join()
    assert fresh == [numba.config.NUMBA_NUM_THREADS]


_WORKQUEUE = """
import copy, sys
sys.path[:0] = [{tests!r}, {here!r}]
import numba
import test_concurrency_training as t
x, y = t._data()
models = [t._lenet_like(71), t._other_net(72)]
expected = [t._fit(copy.deepcopy(m), x, y, seed=73)[0] for m in models]
assert numba.threading_layer() == "workqueue", numba.threading_layer()
got = t._in_threads(*[lambda m=m: t._fit(m, x, y, seed=73)[0] for m in models])
print("same", got == expected)
"""


def test_two_models_in_two_threads_under_the_workqueue_threading_layer():
    """Under Numba's workqueue layer (not thread-safe: concurrent parallel kernels abort the process) fastcnn
    serialises its kernel calls; two threads training two models still get the serial weights."""
    code = _WORKQUEUE.format(tests=str(REPO / "tests"), here=str(REPO / "tests" / "training"))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False,
                         env=repo_env(NUMBA_THREADING_LAYER="workqueue"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "same True" in run.stdout


@pytest.mark.slow
def test_four_models_in_four_threads_for_longer():
    """The first test's check, deeper: four models of two kinds, six epochs, more data."""
    data = [_data(n=320, seed=s) for s in range(4)]
    models = [_lenet_like(60), _other_net(61), _lenet_like(62), _other_net(63)]
    references = [copy.deepcopy(m) for m in models]
    expected = [_fit(m, *d, seed=64, augment_seed=65, epochs=6)[0] for m, d in zip(references, data)]
    got = _in_threads(*[lambda m=m, d=d: _fit(m, *d, seed=64, augment_seed=65, epochs=6)[0]
                        for m, d in zip(models, data)])
    assert got == expected
