"""Issue 14: what the first run says while Numba compiles, and compile time left out of the rates.

The compile watch (:mod:`fastcnn.compile_watch`) counts only real compiles of fastcnn's own functions; its
status line appears when one starts and not otherwise; ``EpochLine`` and ``ProgressBar`` leave the compile
time out of img/s.  A function defined here with ``__module__`` set into fastcnn stands for a kernel that
is not cached (``cache=False``), so every test compiles afresh, whatever the state of the disk cache.
"""

import time

import numba
import numpy as np

import fastcnn
from fastcnn import callbacks, compile_watch
from fastcnn.compile_watch import CompileStatus


def _fresh_function(module):
    """A new jitted function whose Python function claims to live in ``module`` (uncompiled, uncached)."""
    namespace = {"__name__": module}
    exec("def probe(x):\n    s = 0.0\n    for v in x:\n        s += v * v\n    return s\n", namespace)
    return numba.njit(cache=False)(namespace["probe"])


def test_the_watch_counts_a_fastcnn_compile_and_its_time():
    probe = _fresh_function("fastcnn._probe")
    count, seconds = compile_watch.kernels_compiled(), compile_watch.compile_seconds()
    assert probe(np.arange(3.0)) == 5.0
    assert compile_watch.kernels_compiled() == count + 1
    assert compile_watch.compile_seconds() > seconds
    assert not compile_watch.compiling()
    probe(np.arange(4.0))  # compiled signature: no new compile
    assert compile_watch.kernels_compiled() == count + 1


def test_the_watch_ignores_compiles_of_other_code():
    other = _fresh_function("somebody_else")
    count, seconds = compile_watch.kernels_compiled(), compile_watch.compile_seconds()
    other(np.arange(3.0))
    assert compile_watch.kernels_compiled() == count
    assert compile_watch.compile_seconds() == seconds


def test_the_status_appears_when_a_compile_starts_and_ticks_until_left():
    shown = []
    probe = _fresh_function("fastcnn._probe")
    with CompileStatus(shown.append, interval=0.01) as status:
        assert shown == []
        probe(np.arange(3.0))
    assert shown[0] == "compiling kernels for this CPU (first run only; cached for next time)"
    assert shown[-1].startswith("compiled 1 kernel for this CPU in ")
    assert status.seconds() > 0


def test_no_status_without_a_compile():
    shown = []
    with CompileStatus(shown.append, interval=0.01):
        np.zeros(3)
    assert shown == []


def test_a_forgotten_status_stops_listening():
    shown = []
    status = CompileStatus(shown.append, tick=False).__enter__()  # never left, as in a fit that raised
    del status
    import gc

    gc.collect()
    _fresh_function("fastcnn._probe")(np.arange(2.0))
    assert shown == []


def test_epoch_line_leaves_compile_time_out_of_the_rate(monkeypatch, capsys):
    clock = iter([7.0, 10.0, 12.5])  # train begins, the epoch begins, ends: 2.5 s compiled during the epoch
    monkeypatch.setattr(callbacks, "compile_seconds", lambda: next(clock))
    line = callbacks.EpochLine()
    line.on_train_begin(None, {"n": 1000, "epochs": 1, "history": {}})
    line.on_epoch_begin(None, 0, {})
    line.on_epoch_end(None, 0, {"loss": 0.5, "epoch_time": 3.0, "lr": 0.1})
    line.on_train_end(None, {})
    out = capsys.readouterr().out
    assert "2,000 img/s" in out  # 1000 images in 3.0 - 2.5 s
    assert "(compiling 2.5s)" in out


def test_epoch_line_counts_from_the_start_of_training_when_no_epoch_began(monkeypatch, capsys):
    """Compiles before ``on_train_begin`` (earlier in the process) are not this epoch's."""
    clock = iter([141.5, 141.5])
    monkeypatch.setattr(callbacks, "compile_seconds", lambda: next(clock))
    line = callbacks.EpochLine()
    line.on_train_begin(None, {"n": 1000, "epochs": 1, "history": {}})
    line.on_epoch_end(None, 0, {"loss": 0.5, "epoch_time": 0.5, "lr": 0.1})
    line.on_train_end(None, {})
    out = capsys.readouterr().out
    assert "2,000 img/s" in out and "compiling" not in out


def test_epoch_line_without_compiling_says_nothing_of_it():
    text = callbacks.epoch_line({"loss": 0.5, "epoch_time": 2.0}, 0, 1, 500.0)
    assert "compiling" not in text


class _Bar:
    def __init__(self):
        self.start_t = self.last_print_t = 100.0
        self.description = None

    def set_description_str(self, text, refresh=True):
        self.description = text


def test_progress_bar_moves_its_clock_past_compile_time(monkeypatch):
    clock = iter([5.0, 7.0, 7.0])
    monkeypatch.setattr(callbacks, "compile_seconds", lambda: next(clock))
    bar = callbacks.ProgressBar()
    bar._compiled = next(clock)  # epoch start: 5.0
    fake = _Bar()
    bar._desc = "epoch 1/1"
    bar._leave_out_compile(fake)  # 2.0 s compiled during the batch
    assert (fake.start_t, fake.last_print_t) == (102.0, 102.0)
    assert fake.description == "epoch 1/1"
    bar._leave_out_compile(fake)  # nothing compiled since
    assert (fake.start_t, fake.last_print_t) == (102.0, 102.0)


def test_fit_prints_the_compile_notice_on_stderr_at_the_first_compile(monkeypatch, capsys):
    """A fit whose first step compiles (the loss is swapped for a fresh uncached 'kernel') says so on stderr."""
    from fastcnn import training
    from fastcnn.layers import Flatten, Linear

    probe = _fresh_function("fastcnn._probe")
    real = training.LOSSES["cross_entropy"]

    def loss_that_compiles(*args, **kwargs):
        probe(np.arange(2.0))
        return real(*args, **kwargs)

    class SlowCompile(numba.core.event.Listener):
        """Makes every compile last at least 0.1 s (the epoch line shows compile times from 0.05 s; the probe
        alone compiles in about that)."""

        def on_start(self, ev):
            time.sleep(0.1)

        def on_end(self, ev):
            pass

    monkeypatch.setitem(training.LOSSES, "cross_entropy", loss_that_compiles)
    monkeypatch.setenv("FASTCNN_COMPILE_HELPERS", "0")
    model = fastcnn.Sequential(Flatten(), Linear(4, 2))
    x = np.random.default_rng(0).random((8, 1, 2, 2), dtype=np.float32)
    slow = SlowCompile()
    numba.core.event.register("numba:compile", slow)  # after fastcnn's watch: its clock has started
    try:
        model.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, seed=0)
    finally:
        numba.core.event.unregister("numba:compile", slow)
    captured = capsys.readouterr()
    assert "fastcnn: compiling kernels for this CPU (first run only" in captured.err
    assert "(compiling " in captured.out


def test_the_short_status_for_a_progress_bar():
    shown = []
    probe = _fresh_function("fastcnn._probe")
    with CompileStatus(shown.append, interval=0.01, short=True):
        probe(np.arange(3.0))
    assert shown[0] == "compiling kernels: 0 done, 0 s"
    assert shown[-1].startswith("compiled 1 kernel for this CPU in ")
