"""Training callbacks for :meth:`fastcnn.Sequential.fit` (see :mod:`fastcnn.training`), and :func:`save_history`.

A callback is any object with some of these hooks (the :class:`Callback` base
class gives no-op defaults):

.. code-block:: text

    on_train_begin(model, state)          before the first epoch
    on_epoch_begin(model, epoch, logs)    at the start of each epoch; logs holds "lr"
    on_batch_end(model, batch, logs)      after each training step; logs holds "size" (examples in
                                          the batch) and the epoch's running "loss" (and "accuracy")
    on_epoch_end(model, epoch, logs)      after each epoch (and its validation and schedule step);
                                          return True to stop training
    on_train_end(model, history)          after the last epoch, also when training stopped early

``epoch`` is the 0-based epoch index (Keras's convention; ``logs["epoch"]`` and
``history["epoch"]`` hold the 1-based number that the progress line prints);
``batch`` is the 0-based index of the batch in its epoch.  The epoch's
``logs`` hold its values (``loss``, ``accuracy``, ``val_loss``,
``val_accuracy``, ``lr``, ``epoch_time``, ``epoch``); keys that a callback adds to
``logs`` are recorded in the history too.  ``state`` is a dict with ``epochs``,
``initial_epoch``, ``optimizer``, ``schedule``, ``history``, ``batch_size`` and
``n`` (the number of training examples).

What ``fit(verbose=True)`` prints comes from two callbacks that ``fit``
installs itself: :class:`ProgressBar` (first, when stderr is a terminal) and
:class:`EpochLine` (last, after the callbacks passed to ``fit``).

Training already stops on a NaN or infinite loss (before that step is applied,
with a RuntimeWarning issued after ``on_train_end``), so there is no
TerminateOnNaN callback.
"""

import csv
import io
import json
import math
import numbers
import os
import sys
import warnings

import numpy as np

from ._util import atomic_write, to_jsonable
from .compile_watch import CompileStatus, compile_seconds, compiling

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler", "ProgressBar", "EpochLine",
           "progress_bar", "save_history"]


class Callback:
    """Base class with no-op hooks; subclass and override what you need.

    ``on_batch_end`` runs after every training step: ``fit`` calls it only on
    callbacks that override it, so the others cost nothing per step.
    """

    def on_train_begin(self, model, state):
        pass

    def on_epoch_begin(self, model, epoch, logs):
        pass

    def on_batch_end(self, model, batch, logs):
        pass

    def on_epoch_end(self, model, epoch, logs):
        return None

    def on_train_end(self, model, history):
        pass


def _resolve_mode(mode, monitor, owner):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


def _monitored(logs, monitor, owner):
    value = logs.get(monitor)
    if value is None:
        warnings.warn(
            f"{owner}: monitored value {monitor!r} is not in the logs (available: {sorted(logs)}); "
            "pass validation_data to fit or monitor 'loss'",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return float(value)


def _parameters(model):
    params = model.parameters() if callable(getattr(model, "parameters", None)) else None
    if params is None:
        raise TypeError(f"callback: model must have parameters(), got {type(model).__name__}")
    return list(params)


class EarlyStopping(Callback):
    """Stop training when a monitored value has stopped improving (Keras's ``EarlyStopping``).

    After each epoch the monitored value counts as an improvement when
    ``value < best - min_delta`` (mode ``"min"``) or ``value > best + min_delta``
    (``"max"``); ``"auto"`` picks ``"max"`` for names containing ``acc``.  An
    improvement resets the wait counter; otherwise it grows by one, and when
    it reaches ``patience`` (and this is not the first epoch) training stops.
    A NaN value is never an improvement.

    Parameters
    ----------
    monitor : str
        A key of the epoch logs: ``"val_loss"`` (default), ``"loss"``, ``"val_accuracy"``, ...
    mode : {"auto", "min", "max"}
    patience : int >= 0
    min_delta : float >= 0
    restore_best_weights : bool
        When training is stopped by this callback, copy back every parameter's
        values from the best epoch (in place, so an optimizer keeps working on
        them).  As in Keras, nothing is restored when training runs to its
        last epoch.
    baseline : float, optional
        Training also stops if the value does not beat this within ``patience`` epochs.

    Attributes
    ----------
    best, best_epoch, wait, stopped_epoch : the state after training
        (``stopped_epoch`` is the 0-based epoch index at which training stopped, 0 if it did not).

    Examples
    --------
    >>> from fastcnn.callbacks import EarlyStopping
    >>> stop = EarlyStopping(monitor="loss", patience=2)
    """

    def __init__(self, monitor="val_loss", mode="auto", patience=5, min_delta=0.0, restore_best_weights=True,
                 baseline=None):
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"EarlyStopping: monitor must be a log name like 'val_loss', got {monitor!r}")
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or not min_delta >= 0 \
                or not math.isfinite(min_delta):
            raise ValueError(f"EarlyStopping: min_delta must be a finite number >= 0, got {min_delta!r}")
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor, "EarlyStopping")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else float(baseline)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights = None

    def _is_improvement(self, value, reference):
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, model, state):
        self._reset()

    def on_epoch_end(self, model, epoch, logs):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if current is None:
            return None
        if self.restore_best_weights and self.best_weights is None:
            # restore at least the first epoch's weights
            self.best_weights = [p.data.copy() for p in _parameters(model)]
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = [p.data.copy() for p in _parameters(model)]
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return None
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            if self.restore_best_weights and self.best_weights is not None:
                for p, w in zip(_parameters(model), self.best_weights):
                    p.data[...] = w
            return True
        return None

    def __repr__(self):
        return (f"EarlyStopping(monitor={self.monitor!r}, mode={self.mode!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, restore_best_weights={self.restore_best_weights})")


class ModelCheckpoint(Callback):
    """Save the model with ``model.save(path)`` every ``every`` epochs, or only when the monitored value improves.

    Parameters
    ----------
    path : str or os.PathLike
        May contain ``{epoch}`` (the 1-based epoch number) and any log name,
        e.g. ``"ckpt/lenet-{epoch:03d}-{val_loss:.3f}.npz"``.
    monitor : str
        Used with ``save_best_only``.
    save_best_only : bool
        Save only when the monitored value improves on the best so far.
    every : int >= 1
        Consider saving every ``every`` epochs (counted by the 1-based epoch number).
    mode : {"auto", "min", "max"}
    include_optimizer : bool
        Also pass fit's optimizer and schedule and ``extra={"epoch": N}`` to
        ``model.save`` (``save(path, optimizer=..., schedule=..., extra=...)``),
        so the checkpoint can resume training.

    Attributes
    ----------
    saved : list of str
        The paths written, in order.

    The model must have a ``save(path)`` method; without one, ``fit`` fails
    before the first epoch.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, every=1, mode="auto", include_optimizer=False):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"ModelCheckpoint: path must be a str or path, got {type(path).__name__}")
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"ModelCheckpoint: every must be a positive int, got {every!r}")
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.every = int(every)
        self.mode = _resolve_mode(mode, monitor, "ModelCheckpoint")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.include_optimizer = bool(include_optimizer)
        self.saved = []
        self._state = {}

    def on_train_begin(self, model, state):
        if not callable(getattr(model, "save", None)):
            raise TypeError(
                f"ModelCheckpoint: the model ({type(model).__name__}) has no save(path) method, so it cannot "
                "write checkpoints; update fastcnn or remove the ModelCheckpoint callback"
            )
        self.best = math.inf if self.mode == "min" else -math.inf
        self._state = state if isinstance(state, dict) else {}

    def format_path(self, epoch, logs):
        """The path for the 0-based epoch index ``epoch``, formatted with ``{epoch}`` = epoch + 1 and the logs."""
        fields = {k: v for k, v in logs.items() if k != "epoch"}
        try:
            return self.path.format(epoch=epoch + 1, **fields)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"ModelCheckpoint: cannot format path {self.path!r} ({type(e).__name__}: {e}); it may use "
                f"{{epoch}} and the log names {sorted(set(fields) | {'epoch'})}"
            ) from None

    def on_epoch_end(self, model, epoch, logs):
        if (epoch + 1) % self.every != 0:
            return None
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if current is None:
                return None
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                return None
            self.best = current
        path = self.format_path(epoch, logs)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.include_optimizer:
            kwargs = {"optimizer": self._state.get("optimizer"), "extra": {"epoch": epoch + 1}}
            if self._state.get("schedule") is not None:
                kwargs["schedule"] = self._state["schedule"]
            model.save(path, **kwargs)
        else:
            model.save(path)
        self.saved.append(path)
        return None

    def __repr__(self):
        return (f"ModelCheckpoint({self.path!r}, monitor={self.monitor!r}, save_best_only={self.save_best_only}, "
                f"every={self.every})")


class LearningRateScheduler(Callback):
    """Step a schedule (``fastcnn.optim.StepLR``, ``ExponentialLR``, ``ReduceLROnPlateau``) after each epoch.

    Equivalent to ``fit(..., schedule=schedule)``.  A schedule whose
    ``needs_metric`` is true (ReduceLROnPlateau) is stepped with
    ``logs[monitor]``; ``monitor=None`` means ``"val_loss"`` when present, else
    ``"loss"``.
    """

    def __init__(self, schedule, monitor=None):
        if not callable(getattr(schedule, "step", None)):
            raise TypeError(f"LearningRateScheduler: schedule must have a step() method, got {type(schedule).__name__}")
        self.schedule = schedule
        self.monitor = monitor

    def on_epoch_end(self, model, epoch, logs):
        step_schedule(self.schedule, logs, self.monitor)
        return None

    def __repr__(self):
        return f"LearningRateScheduler({self.schedule!r})"


def step_schedule(schedule, logs, monitor=None):
    """Step ``schedule`` once; with ``needs_metric``, pass it ``logs[monitor]`` (default val_loss, else loss)."""
    if not getattr(schedule, "needs_metric", False):
        schedule.step()
        return
    key = monitor if monitor is not None else ("val_loss" if "val_loss" in logs else "loss")
    if key not in logs:
        raise ValueError(f"{type(schedule).__name__}: monitored value {key!r} is not in the logs "
                         f"(available: {sorted(logs)})")
    schedule.step(logs[key])


# --------------------------------------------------------------------------- progress output


def progress_bar(total, desc):
    """A tqdm bar counting images: tqdm shows the rate (img/s) and the ETA; :class:`ProgressBar` adds loss and accuracy.

    The bar is cleared when closed (``leave=False``).
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr: images done, img/s, ETA, the running loss and accuracy.

    ``fit(verbose=True)`` installs one, as the first callback, when stderr is
    a terminal.  The bar ``"epoch e/E"`` opens in ``on_epoch_begin``, advances
    by each batch's size in ``on_batch_end`` and closes as soon as the
    epoch's last example is counted, before validation; a bar left open
    (training stopped on a non-finite loss) closes in ``on_train_end``.  Bars
    come from the module function :func:`progress_bar` (looked up on every
    epoch).  While kernels compile (the first run on a machine) the
    description reads ``epoch 1/3 (compiling kernels: 7 done, 12 s)``, and
    the bar's clock skips the compile time, so its rate and ETA count
    training only (:mod:`fastcnn.compile_watch`).
    """

    def __init__(self):
        self._bar = None
        self._n = self._epochs = self._seen = 0
        self._desc = ""
        self._status = None
        self._compiled = 0.0

    def on_train_begin(self, model, state):
        self._n, self._epochs = state["n"], state["epochs"]
        self._status = CompileStatus(self._show_compiling, short=True).__enter__()

    def on_epoch_begin(self, model, epoch, logs):
        self._close()
        self._desc = f"epoch {epoch + 1}/{self._epochs}"
        self._bar = progress_bar(self._n, self._desc)
        self._seen = 0
        self._compiled = compile_seconds()

    def on_batch_end(self, model, batch, logs):
        bar = self._bar
        if bar is None:
            return
        self._leave_out_compile(bar)
        bar.update(logs["size"])
        self._seen += logs["size"]
        post = {"loss": f"{logs['loss']:.4f}"}
        if "accuracy" in logs:
            post["acc"] = f"{logs['accuracy']:.4f}"
        bar.set_postfix(post, refresh=False)
        if self._seen >= self._n:
            self._close()

    def on_train_end(self, model, history):
        self._close()
        if self._status is not None:
            self._status.__exit__(None, None, None)
            self._status = None

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _show_compiling(self, text):
        """The compile status in the bar's description while kernels compile (from the status's thread)."""
        bar = self._bar
        if bar is not None and compiling():
            bar.set_description_str(f"{self._desc} ({text})", refresh=True)

    def _leave_out_compile(self, bar):
        """Move the bar's clock past compile time, so that its img/s and ETA count training only."""
        compiled = compile_seconds()
        delta, self._compiled = compiled - self._compiled, compiled
        if delta > 0:
            bar.start_t += delta
            bar.last_print_t += delta
            bar.set_description_str(self._desc, refresh=False)


class EpochLine(Callback):
    """Print one line per epoch on stdout: loss, accuracy, validation values, the rate once it moved, img/s, time.

    ``epoch 2/10  loss 0.3121  acc 0.9062  val_loss 0.2874  val_acc 0.9150  lr 0.025  48,102 img/s  1.2s``

    ``fit(verbose=True)`` installs one as the last callback, so it prints
    after the other callbacks' ``on_epoch_end``.  The learning rate is shown
    only once it differs from the first epoch's (a schedule moved it).  When
    kernels compile (the first run on a machine), a line on stderr says so
    as the first compile starts, the rate leaves the compile time out and
    the epoch's line ends with it: ``... 5,434 img/s  39.4s  (compiling 38.4s)``.
    """

    def __init__(self):
        self._state = {}
        self._status = None
        self._compiled = 0.0

    def on_train_begin(self, model, state):
        self._state = state
        self._status = CompileStatus(_stderr_line, tick=False).__enter__()
        self._compiled = compile_seconds()

    def on_epoch_begin(self, model, epoch, logs):
        self._compiled = compile_seconds()

    def on_epoch_end(self, model, epoch, logs):
        lrs = list(self._state.get("history", {}).get("lr", [])) + [logs.get("lr")]
        compile_time = min(compile_seconds() - self._compiled, logs["epoch_time"])
        rate = self._state.get("n", 0) / max(logs["epoch_time"] - compile_time, 1e-3)
        print(epoch_line(logs, epoch, self._state.get("epochs", epoch + 1), rate, lrs[0], compile_time),
              flush=True)
        return None

    def on_train_end(self, model, history):
        if self._status is not None:
            self._status.__exit__(None, None, None)
            self._status = None


def _stderr_line(text):
    """One line on stderr that leaves a tqdm bar intact (``tqdm.write``)."""
    from tqdm.auto import tqdm

    tqdm.write(f"fastcnn: {text} ...", file=sys.stderr)


def epoch_line(logs, epoch, epochs, rate, first_lr=None, compile_time=0.0):
    """The text :class:`EpochLine` prints for one epoch's ``logs`` (``rate`` in images per second).

    ``compile_time`` (seconds spent compiling kernels during the epoch, left
    out of ``rate``) is shown when it is at least 0.05 s.
    """
    parts = [f"epoch {epoch + 1}/{epochs}", f"loss {logs['loss']:.4f}"]
    for key, label in (("accuracy", "acc"), ("val_loss", "val_loss"), ("val_accuracy", "val_acc")):
        if key in logs:
            parts.append(f"{label} {logs[key]:.4f}")
    lr = logs.get("lr")
    if lr != first_lr and isinstance(lr, float):  # only once a schedule has moved it
        parts.append(f"lr {lr:.3g}")
    parts.append(f"{rate:,.0f} img/s")
    parts.append(f"{logs['epoch_time']:.1f}s")
    if compile_time >= 0.05:
        parts.append(f"(compiling {compile_time:.1f}s)")
    return "  ".join(parts)


# --------------------------------------------------------------------------- history files


def save_history(history, path):
    """Write a ``fit`` history (dict of per-epoch lists) to ``path``, atomically.

    The format follows the extension: ``.json`` writes the dict as one JSON
    object; ``.csv`` writes a header of the keys and one row per epoch (a
    shorter list leaves empty cells; None is empty).  The text is written to a
    temporary file in the same directory and moved into place with
    ``os.replace`` (:func:`fastcnn._util.atomic_write`), so a reader never sees
    half a file.

    Parameters
    ----------
    history : dict of str -> list
    path : str or os.PathLike
        Ends in ``.json`` or ``.csv``.

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> import os, tempfile
    >>> from fastcnn.callbacks import save_history
    >>> path = os.path.join(tempfile.mkdtemp(), "history.csv")
    >>> _ = save_history({"epoch": [1, 2], "loss": [0.5, 0.25]}, path)
    >>> print(open(path).read().strip())
    epoch,loss
    1,0.5
    2,0.25
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".json", ".csv"):
        raise ValueError(f"save_history: path must end in .json or .csv, got {path!r}")
    if not isinstance(history, dict):
        raise TypeError(f"save_history: history must be a dict of lists, got {type(history).__name__}")
    columns = {str(k): list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v] for k, v in history.items()}
    try:
        columns = to_jsonable(columns, allow_nan=True)
    except TypeError as exc:
        raise TypeError(f"save_history: cannot write the history: {exc}") from None
    if ext == ".json":
        text = json.dumps(columns, indent=1) + "\n"
    else:
        text = _csv_text(columns)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


def _csv_text(columns):
    """A header of the keys, then one row per epoch; a missing or None value is an empty cell."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(columns))
    rows = max((len(v) for v in columns.values()), default=0)
    for i in range(rows):
        row = []
        for values in columns.values():
            v = values[i] if i < len(values) else None
            row.append("" if v is None else repr(v) if isinstance(v, float) else v)
        writer.writerow(row)
    return out.getvalue()
