"""The training loop behind :meth:`fastcnn.Sequential.fit`.

:func:`fit` checks its arguments, then runs the epochs.  One epoch:

1. draws the order of the examples (:func:`fastcnn.data.iterate_minibatches`;
   epoch ``e`` of a seeded run is shuffled with ``np.random.default_rng([seed, e])``),
2. runs the mini-batches: copy the batch into a scratch buffer, ``augment``,
   forward, loss, and (unless the loss is NaN or infinite, which stops
   training before that step) backward and the optimizer's step; on a busy
   machine the steps run on fewer threads than planned, with the same results
   (:class:`fastcnn._cpuload.ThreadGovernor`),
3. evaluates the validation data, steps the schedule, calls the callbacks'
   ``on_epoch_end`` and appends the epoch's values to the history.

What ``verbose`` prints comes from two callbacks of :mod:`fastcnn.callbacks`
that :func:`fit` installs: :class:`~fastcnn.callbacks.ProgressBar` and
:class:`~fastcnn.callbacks.EpochLine`.

Data-parallel training (:mod:`fastcnn.distributed`, above this module) runs
the same loop on every MPI rank: the same global batches, in the same order,
augmented alike; the ``replicas`` argument replaces step 2's forward, loss and
backward by the rank's shard of them and one allreduce, and step 3's
validation by an evaluation split over the ranks.
"""

import math
import numbers
import sys
import time
import warnings

import numpy as np

from . import config, malloc
from ._cpuload import ThreadGovernor
from .callbacks import Callback, EpochLine, ProgressBar, step_schedule
from .data import iterate_minibatches
from .model import LOSSES
from .optim import SGD

__all__ = ["HOOKS", "fit"]

#: The callback hooks :func:`fit` calls, in the order of one run.
HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")


def fit(model, x, y, epochs=1, batch_size=32, optimizer=None, loss="cross_entropy", validation_data=None,
        shuffle=True, verbose=True, seed=None, callbacks=None, schedule=None, initial_epoch=0, augment=None,
        replicas=None):
    """Train ``model`` with mini-batch gradient descent; :meth:`fastcnn.Sequential.fit` documents the arguments.

    ``replicas`` (None: this process trains alone) is how :func:`fastcnn.distributed.fit` trains data-parallel:
    an object whose ``gradient(model, loss_fn, classify, x_batch, y_batch) -> (mean loss, correct)`` puts the
    global batch's mean gradient into every ``.grad`` (each rank computing its shard), ``evaluate(model, x, y,
    loss)`` evaluates the validation data split over the ranks, ``end_epoch(model)`` runs before validation and
    ``any(flag)`` makes a callback's request to stop every rank's.  The batches, their order and ``augment``
    are the same on every rank: the global ones.

    Returns
    -------
    dict of lists
        The history, one entry per epoch run.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcnn
    >>> from fastcnn.layers import Flatten, Linear
    >>> from fastcnn.training import fit
    >>> model = fastcnn.Sequential(Flatten(), Linear(4, 2))
    >>> x = np.random.default_rng(0).random((8, 1, 2, 2), dtype=np.float32)
    >>> fit(model, x, np.arange(8) % 2, epochs=2, batch_size=4, seed=0, verbose=False)["epoch"]
    [1, 2]
    """
    x, y, validation, optimizer, callbacks = _check_arguments(
        model, x, y, epochs, batch_size, optimizer, loss, validation_data, seed, callbacks, schedule,
        initial_epoch, augment)
    if verbose:
        callbacks = ([ProgressBar()] if sys.stderr.isatty() else []) + callbacks + [EpochLine()]
    n = len(x)
    loop = _EpochLoop(model, x, y, LOSSES[loss], loss == "cross_entropy", optimizer,
                      n if batch_size is None else min(int(batch_size), n), shuffle, seed, augment, callbacks,
                      replicas)
    epochs, initial_epoch = int(epochs), int(initial_epoch)
    history = _new_history(loop.classify, validation is not None)
    state = {"epochs": epochs, "initial_epoch": initial_epoch, "optimizer": optimizer, "schedule": schedule,
             "history": history, "batch_size": loop.batch_size, "n": n}
    _call(callbacks, "on_train_begin", model, state)
    malloc.keep_freed_memory()  # after the checks: a refused call changes nothing
    governor = ThreadGovernor(config.get_num_threads())
    loop.tick = governor.tick
    with governor:
        bad_loss = epoch = None
        for epoch in range(initial_epoch, epochs):
            model.train()
            start = time.perf_counter()
            lr = getattr(optimizer, "lr", None)
            _call(callbacks, "on_epoch_begin", model, epoch, {"lr": lr})
            logs, bad_loss = loop.run(epoch)
            if bad_loss is not None:
                break
            if replicas is not None:
                replicas.end_epoch(model)
            if validation is not None:
                val = model.evaluate(*validation, loss=loss) if replicas is None else \
                    replicas.evaluate(model, *validation, loss=loss)
                logs["val_loss"] = val["loss"]
                if loop.classify:
                    logs["val_accuracy"] = val["accuracy"]
            logs["lr"] = lr
            logs["epoch_time"] = time.perf_counter() - start
            logs["epoch"] = epoch + 1
            if schedule is not None:
                step_schedule(schedule, logs)
            stop = _end_epoch(callbacks, model, epoch, logs, history)
            if replicas is not None:
                stop = replicas.any(stop)
            if stop:
                break
    _call(callbacks, "on_train_end", model, history)
    if bad_loss is not None:
        warnings.warn(
            f"Sequential.fit: loss became {bad_loss} in epoch {epoch + 1}; training stopped "
            "before that step was applied (try a smaller learning rate)",
            RuntimeWarning,
            stacklevel=_caller_stacklevel(),
        )
    return history


class _EpochLoop:
    """The mini-batch loop of one epoch, with the scratch batch buffers it reuses from epoch to epoch."""

    def __init__(self, model, x, y, loss_fn, classify, optimizer, batch_size, shuffle, seed, augment, callbacks,
                 replicas=None):
        self.model, self.x, self.y = model, x, y
        self.loss_fn, self.classify, self.optimizer = loss_fn, classify, optimizer
        self.batch_size, self.shuffle, self.seed, self.augment = batch_size, shuffle, seed, augment
        self.unseeded = np.random.default_rng() if seed is None else None
        self.x_batch = np.empty((batch_size,) + x.shape[1:], dtype=x.dtype)
        self.y_batch = np.empty((batch_size,) + y.shape[1:], dtype=y.dtype)
        self.batch_hooks = _batch_hooks(callbacks)
        self.tick = _no_hook
        self.gradient = self._gradient if replicas is None else \
            (lambda xb, yb: replicas.gradient(model, loss_fn, classify, xb, yb))

    def _order_rng(self, epoch):
        if not self.shuffle:
            return None
        return self.unseeded if self.seed is None else np.random.default_rng([int(self.seed), epoch])

    def run(self, epoch):
        """Train on every example once; ``(logs, None)``, or ``(None, loss)`` for a NaN or infinite batch loss.

        The step of a batch with a non-finite loss is not applied.
        """
        model, optimizer, hooks = self.model, self.optimizer, self.batch_hooks
        total_loss, correct, seen = 0.0, 0, 0
        batches = iterate_minibatches(len(self.x), self.batch_size, shuffle=self.shuffle, rng=self._order_rng(epoch))
        for b, idx in enumerate(batches):
            m = len(idx)
            xb, yb = self.x_batch[:m], self.y_batch[:m]
            np.take(self.x, idx, axis=0, out=xb)
            np.take(self.y, idx, axis=0, out=yb)
            if self.augment is not None:
                xb = self._augmented(xb, m)
            batch_loss, batch_correct = self.gradient(xb, yb)
            if not math.isfinite(batch_loss):
                return None, batch_loss
            optimizer.step()
            self.tick()
            total_loss += batch_loss * m
            seen += m
            correct += batch_correct
            if hooks:
                logs = {"size": m, "loss": total_loss / seen}
                if self.classify:
                    logs["accuracy"] = correct / seen
                for hook in hooks:
                    hook(model, b, logs)
        logs = {"loss": total_loss / seen}
        if self.classify:
            logs["accuracy"] = correct / seen
        return logs, None

    def _gradient(self, xb, yb):
        """This process's step: forward, loss and (for a finite loss) backward; ``(loss, correct predictions)``."""
        out = self.model.forward(xb)
        batch_loss, dout = self.loss_fn(out, yb)
        if not math.isfinite(batch_loss):
            return batch_loss, 0
        self.optimizer.zero_grad()
        self.model.backward(dout)
        return batch_loss, int((out.argmax(axis=1) == yb).sum()) if self.classify else 0

    def _augmented(self, xb, m):
        xb = self.augment(xb)
        if len(getattr(xb, "shape", ())) < 1 or xb.shape[0] != m:
            raise ValueError(
                f"Sequential.fit: augment must return a batch of {m} examples, got "
                f"{getattr(xb, 'shape', type(xb).__name__)}"
            )
        return xb


def _new_history(classify, validation):
    history = {"loss": []}
    if classify:
        history["accuracy"] = []
    if validation:
        history["val_loss"] = []
        if classify:
            history["val_accuracy"] = []
    history["lr"], history["epoch_time"], history["epoch"] = [], [], []
    return history


def _end_epoch(callbacks, model, epoch, logs, history):
    """Every callback's ``on_epoch_end`` (all of them run), then the logs into the history; True to stop."""
    stop = False
    for cb in callbacks:
        if _hook(cb, "on_epoch_end")(model, epoch, logs) is True:
            stop = True
    done = len(history["epoch"])
    for key in logs:
        if key not in history:
            history[key] = [None] * done
    for key, values in history.items():
        values.append(logs.get(key))
    return stop


# --------------------------------------------------------------------------- arguments


def _check_arguments(model, x, y, epochs, batch_size, optimizer, loss, validation_data, seed, callbacks, schedule,
                     initial_epoch, augment):
    """Validate fit's arguments (before any work); ``(x, y, validation pair or None, optimizer, callbacks)``."""
    if loss not in LOSSES:
        raise ValueError(f"Sequential.fit: loss must be one of {sorted(LOSSES)}, got {loss!r}")
    for name, value in (("epochs", epochs), ("batch_size", 1 if batch_size is None else batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"Sequential.fit: {name} must be a positive int, got {value!r}")
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) \
            or not 0 <= initial_epoch < epochs:
        raise ValueError(
            f"Sequential.fit: initial_epoch must be an int in [0, epochs) = [0, {epochs}), got {initial_epoch!r}; "
            "epochs is the number of the last epoch, not a count of further epochs"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"Sequential.fit: seed must be None or an int >= 0, got {seed!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"Sequential.fit: augment must be a callable batch -> batch, got {type(augment).__name__}")
    callbacks = _check_callbacks(callbacks)
    x, y = model._check_xy(x, y, loss, "")
    if len(x) == 0:
        raise ValueError("Sequential.fit: x is empty")
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("Sequential.fit: validation_data must be a pair (x_val, y_val)")
        validation = model._check_xy(*validation_data, loss, "validation ")
    if optimizer is None:
        optimizer = SGD(model.parameters(), lr=0.01)
    elif not hasattr(optimizer, "step") or not hasattr(optimizer, "zero_grad"):
        raise TypeError(f"Sequential.fit: optimizer must have step() and zero_grad(), got {type(optimizer).__name__}")
    else:
        _check_optimizer_params(model, optimizer)
    if schedule is not None:
        if not callable(getattr(schedule, "step", None)):
            raise TypeError(f"Sequential.fit: schedule must have a step() method, got {type(schedule).__name__}")
        if getattr(schedule, "optimizer", optimizer) is not optimizer:
            raise ValueError("Sequential.fit: the schedule was built on a different optimizer than the one "
                             "passed to fit; build it as StepLR(optimizer, ...) with fit's optimizer")
    return x, y, validation, optimizer, callbacks


def _check_optimizer_params(model, optimizer):
    """ValueError when the optimizer updates parameters that are not the model's (built on another model).

    An optimizer over some of the model's parameters (training only the last
    layers) is fine; one without a ``params`` list is not checked.
    """
    params = getattr(optimizer, "params", None)
    if not isinstance(params, (list, tuple)):
        return
    own = {id(p) for p in model.parameters()}
    foreign = [i for i, p in enumerate(params) if id(p) not in own]
    if foreign:
        what = (f"none of the optimizer's {len(params)} parameters belongs to the model being trained"
                if len(foreign) == len(params) else
                f"the optimizer's params{foreign[:5]} ({len(foreign)} of {len(params)}) do not belong to the model "
                "being trained")
        raise ValueError(f"Sequential.fit: {what}; build the optimizer as SGD(model.parameters(), ...) on this model")


def _check_callbacks(callbacks):
    """fit's ``callbacks`` argument as a list, each with at least one callable hook."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    for i, cb in enumerate(callbacks):
        if not any(callable(getattr(cb, h, None)) for h in HOOKS):
            raise TypeError(
                f"Sequential.fit: callbacks[{i}] ({type(cb).__name__}) has none of the hooks {list(HOOKS)}; "
                "subclass fastcnn.callbacks.Callback"
            )
    return list(callbacks)


# --------------------------------------------------------------------------- hooks


def _hook(cb, name):
    fn = getattr(cb, name, None)
    return fn if callable(fn) else _no_hook


def _no_hook(*args):
    return None


def _call(callbacks, name, *args):
    for cb in callbacks:
        _hook(cb, name)(*args)


def _batch_hooks(callbacks):
    """The ``on_batch_end`` methods worth calling after every step: those that are not Callback's no-op."""
    hooks = []
    for cb in callbacks:
        fn = getattr(cb, "on_batch_end", None)
        if callable(fn) and getattr(type(cb), "on_batch_end", None) is not Callback.on_batch_end:
            hooks.append(fn)
    return hooks


def _caller_stacklevel():
    """The ``stacklevel`` that attributes a warning to the first frame outside the fastcnn package."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fastcnn."):
        level += 1
        frame = frame.f_back
    return level
