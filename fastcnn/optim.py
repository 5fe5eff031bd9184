"""Optimizers and learning-rate schedules.  They see Parameters (``.data``, ``.grad``), never layers."""

import math
import numbers

import numpy as np

from ._util import check_int
from .kernels import sgd_update_kernel
from .kernels._sgd import sgd_update_many, zero_many
from .layers.base import Parameter


def _check_real(value, name, low=None, high=None, owner="SGD"):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        want = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{owner}: {name} must be {want}, got {value!r}")
    return float(value)


#: Parameters per call of the many-array kernels: every call takes tuples of exactly this many arrays (the last
#: padded with empty ones), so Numba compiles them once per dtype instead of once per parameter count.
_CHUNK = 8


def _chunk(arrays, start):
    """``arrays[start:start + _CHUNK]`` as a tuple of exactly ``_CHUNK`` arrays, padded with empty ones."""
    part = arrays[start:start + _CHUNK]
    if len(part) < _CHUNK:
        part = part + [np.empty(0, dtype=arrays[0].dtype)] * (_CHUNK - len(part))
    return tuple(part)


def _one_dtype(arrays):
    """Whether the arrays share one dtype and are C-contiguous (flattened, one tuple for the fused kernels)."""
    dtype = arrays[0].dtype
    return all(a.dtype == dtype and a.flags.c_contiguous for a in arrays)


class SGD:
    r"""Stochastic gradient descent with momentum, Nesterov momentum, L2 weight decay and an L1 penalty.

    With ``l1=0`` and ``decay_biases=True`` (the defaults) this is exactly
    ``torch.optim.SGD`` with dampening 0, so the same start and the same
    batches give the same weights.  For each parameter :math:`p` with gradient
    :math:`g` at step :math:`t`:

    .. code-block:: text

        g = g + l1 * sign(p)                  if l1 > 0
        g = g + weight_decay * p              (skipped for biases, p.ndim <= 1, if not decay_biases)
        if momentum != 0:
            b = g                      if t == 0
            b = momentum * b + g       otherwise
            g = g + momentum * b       if nesterov
            g = b                      otherwise
        p = p - lr * g

    Parameters
    ----------
    params : iterable of Parameter
    lr : float >= 0
        Learning rate; a public attribute that schedules may set between steps.
    momentum : float in [0, 1]
    weight_decay : float >= 0
        L2 penalty ``weight_decay / 2 * ||p||^2`` added to the loss.
    nesterov : bool
        Needs momentum > 0.
    decay_biases : bool
        With False, weight decay applies only to parameters with ``ndim > 1``
        (conv and linear weights), not to biases.
    l1 : float >= 0
        L1 penalty ``l1 * ||p||_1`` added to the loss: its subgradient
        ``l1 * sign(p)`` (0 at p == 0) is added to every parameter's gradient
        (biases included), in the parameter's dtype.  ``.grad`` itself is not
        modified.

    Examples
    --------
    >>> import fastcnn
    >>> model = fastcnn.models.lenet5()
    >>> opt = fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    >>> opt.lr = 0.005
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, decay_biases=True, l1=0.0):
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD: params is empty; pass model.parameters()")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"SGD: params[{i}] must be a fastcnn Parameter, got {type(p).__name__}")
        self.lr = lr
        self.momentum = _check_real(momentum, "momentum", 0.0, 1.0)
        self.weight_decay = _check_real(weight_decay, "weight_decay", 0.0)
        if nesterov and self.momentum == 0.0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.decay_biases = bool(decay_biases)
        self.l1 = _check_real(l1, "l1", 0.0)
        self._buffers = [None] * len(self.params)

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_real(value, "lr", 0.0)

    def zero_grad(self):
        """Set every parameter's gradient to zero."""
        grads = [p.grad for p in self.params]
        if _one_dtype(grads):
            flats = [g.reshape(-1) for g in grads]
            for start in range(0, len(flats), _CHUNK):
                zero_many(_chunk(flats, start))
        else:
            for g in grads:
                g.fill(0)

    def step(self):
        """Update every parameter in place from its ``.grad``: one kernel call per 8 of them when they share a
        dtype (:func:`fastcnn.kernels._sgd.sgd_update_many`, compiled once per dtype whatever the number of
        parameters), the same arithmetic per element."""
        n = len(self.params)
        momentum = self.momentum != 0.0
        first = np.empty(n, dtype=np.bool_)
        flats, grads, bufs = [], [], []
        for i, p in enumerate(self.params):
            buf = self._buffers[i]
            first[i] = buf is None
            if buf is None and momentum:
                buf = self._buffers[i] = np.empty_like(p.data)
            flat = p.data.reshape(-1)
            grad = p.grad.reshape(-1)
            if self.l1 > 0.0:
                grad = grad + flat.dtype.type(self.l1) * np.sign(flat)  # stays in the parameter's dtype
            flats.append(flat)
            grads.append(grad)
            bufs.append(flat if buf is None else buf.reshape(-1))  # unused without momentum
        decays = [self.weight_decay if (self.decay_biases or p.data.ndim > 1) else 0.0 for p in self.params]
        if _one_dtype(flats) and _one_dtype(grads) and _one_dtype(bufs) and flats[0].dtype == grads[0].dtype:
            dt = flats[0].dtype.type
            decays = np.array(decays + [0.0] * _CHUNK, dtype=flats[0].dtype)
            first = np.concatenate([first, np.zeros(_CHUNK, dtype=np.bool_)])
            for start in range(0, n, _CHUNK):
                sgd_update_many(_chunk(flats, start), _chunk(grads, start), _chunk(bufs, start), dt(self._lr),
                                dt(self.momentum), decays[start:start + _CHUNK], self.nesterov,
                                first[start:start + _CHUNK])
            return
        for flat, grad, buf, decay, first_step in zip(flats, grads, bufs, decays, first):
            dt = flat.dtype.type
            sgd_update_kernel(flat, grad, buf, dt(self._lr), dt(self.momentum), dt(decay), self.nesterov,
                              bool(first_step))

    def state_dict(self):
        """Hyperparameters and momentum buffers (copies), for saving and resuming.

        ``decay_biases`` and ``l1`` are included only when they differ from
        their defaults, so the keys of a plain SGD's state stay the same.
        """
        state = {
            "lr": self._lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
            "momentum_buffers": [None if b is None else b.copy() for b in self._buffers],
        }
        if not self.decay_biases:
            state["decay_biases"] = False
        if self.l1 != 0.0:
            state["l1"] = self.l1
        return state

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned.

        Everything is checked first (keys, numbers, buffer count, shapes and
        finiteness): a refused state raises ValueError and changes nothing.
        """
        owner = "SGD.load_state_dict"
        if not isinstance(state, dict):
            raise ValueError(f"{owner}: state must be a dict as state_dict() returns, got {type(state).__name__}")
        missing = [k for k in ("lr", "momentum", "weight_decay", "nesterov", "momentum_buffers") if k not in state]
        if missing:
            raise ValueError(f"{owner}: state lacks {missing}; expected what SGD.state_dict() returns")
        lr = _check_real(state["lr"], "lr", 0.0, owner=owner)
        momentum = _check_real(state["momentum"], "momentum", 0.0, 1.0, owner=owner)
        weight_decay = _check_real(state["weight_decay"], "weight_decay", 0.0, owner=owner)
        l1 = _check_real(state.get("l1", 0.0), "l1", 0.0, owner=owner)
        nesterov, decay_biases = state["nesterov"], state.get("decay_biases", True)
        for name, value in (("nesterov", nesterov), ("decay_biases", decay_biases)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{owner}: {name} must be a bool, got {value!r}")
        if nesterov and momentum == 0.0:
            raise ValueError(f"{owner}: nesterov=True needs momentum > 0, got momentum {momentum}")
        buffers = self._checked_buffers(state["momentum_buffers"], owner)
        self._lr, self.momentum, self.weight_decay, self.l1 = lr, momentum, weight_decay, l1
        self.nesterov, self.decay_biases = bool(nesterov), bool(decay_biases)
        self._buffers = buffers

    def _checked_buffers(self, buffers, owner):
        """The momentum buffers of a state as new arrays of the parameters' dtypes (None kept), after checking
        their count, shapes and values."""
        if not isinstance(buffers, (list, tuple)):
            raise ValueError(f"{owner}: momentum_buffers must be a list, got {type(buffers).__name__}")
        if len(buffers) != len(self.params):
            raise ValueError(
                f"{owner}: state has {len(buffers)} momentum buffers but the optimizer "
                f"has {len(self.params)} parameters"
            )
        out = []
        for i, (b, p) in enumerate(zip(buffers, self.params)):
            if b is None:
                out.append(None)
                continue
            if np.shape(b) != p.data.shape:
                raise ValueError(f"{owner}: momentum buffer {i} has shape {np.shape(b)}, parameter has {p.data.shape}")
            try:
                b = np.array(b, dtype=p.data.dtype)
            except (TypeError, ValueError):
                raise ValueError(f"{owner}: momentum buffer {i} must hold numbers, got dtype "
                                 f"{np.asarray(b).dtype}") from None
            if not np.isfinite(b).all():
                raise ValueError(f"{owner}: momentum buffer {i} contains NaN or infinite values")
            out.append(b)
        return out

    def __repr__(self):
        extra = "" if self.decay_biases else ", decay_biases=False"
        extra += f", l1={self.l1}" if self.l1 != 0.0 else ""
        return (f"SGD(lr={self._lr}, momentum={self.momentum}, weight_decay={self.weight_decay}, "
                f"nesterov={self.nesterov}{extra})")


# --------------------------------------------------------------------------- learning-rate schedules


def _check_optimizer(optimizer, owner):
    lr = getattr(optimizer, "lr", None)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(
            f"{owner}: optimizer must have a numeric .lr attribute (e.g. fastcnn.optim.SGD), "
            f"got {type(optimizer).__name__}"
        )
    return optimizer


class _Schedule:
    """Shared machinery: ``last_epoch`` counts the calls to :meth:`step`."""

    #: True when :meth:`step` needs the monitored metric (ReduceLROnPlateau).
    needs_metric = False
    _state_keys = ("last_epoch", "base_lr")
    _repr_keys = ()
    #: What a restored state's number must satisfy, per key; every other number must be >= 0.
    _rules = {"step_size": (lambda v: v >= 1, ">= 1"), "step_every": (lambda v: v >= 1, ">= 1"),
              "gamma": (lambda v: v > 0, "> 0"), "factor": (lambda v: 0 < v < 1, "in (0, 1)"),
              "best": (lambda v: True, "a number")}
    #: The values a string key of a restored state may take.
    _choices = {"mode": ("min", "max"), "threshold_mode": ("rel", "abs")}

    def __init__(self, optimizer):
        self.optimizer = _check_optimizer(optimizer, type(self).__name__)
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0

    def get_last_lr(self):
        """The optimizer's current learning rate (what the next epoch will use)."""
        return float(self.optimizer.lr)

    def state_dict(self):
        """Hyperparameters and counters as plain Python numbers; the optimizer is not included."""
        return {k: getattr(self, k) for k in self._state_keys}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned (the optimizer's lr is left alone: restore it with the
        optimizer's own state)."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict):
            raise ValueError(f"{owner}: state must be a dict as state_dict() returns, got {type(state).__name__}")
        missing = [k for k in self._state_keys if k not in state]
        if missing:
            raise ValueError(f"{owner}: state lacks {missing}; expected keys {list(self._state_keys)}")
        values = {k: self._checked_value(k, state[k], owner) for k in self._state_keys}
        for k, value in values.items():  # everything checked: now apply
            setattr(self, k, value)

    def _checked_value(self, key, value, owner):
        """``value`` converted to the type of the current attribute ``key``, or ValueError (nothing is set)."""
        current = getattr(self, key)
        if isinstance(current, str):
            if not isinstance(value, str) or value not in self._choices.get(key, (value,)):
                raise ValueError(f"{owner}: {key} must be one of {self._choices.get(key)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
            raise ValueError(f"{owner}: {key} must be a number, got {value!r}")
        if isinstance(current, int):
            if not float(value).is_integer():
                raise ValueError(f"{owner}: {key} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if math.isnan(value) or (math.isinf(value) and key != "best"):
                raise ValueError(f"{owner}: {key} must be a finite number, got {value!r}")
        rule, want = self._rules.get(key, (lambda v: v >= 0, ">= 0"))
        if not rule(value):
            raise ValueError(f"{owner}: {key} must be {want}, got {value!r}")
        return value

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._repr_keys)
        return f"{type(self).__name__}({args})"


class StepLR(_Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (``torch.optim.lr_scheduler.StepLR``).

    Call :meth:`step` once per epoch, after the epoch.  After ``e`` calls the
    learning rate is ``lr0 * gamma ** (e // step_size)``, computed as PyTorch
    does (one multiplication of the current lr at each boundary), so the values
    are bitwise PyTorch's.

    Parameters
    ----------
    optimizer : object with a float ``lr`` attribute (fastcnn.optim.SGD)
    step_size : int >= 1
    gamma : float > 0

    Examples
    --------
    >>> import fastcnn
    >>> opt = fastcnn.optim.SGD(fastcnn.layers.Linear(2, 1).parameters(), lr=0.1)
    >>> sched = fastcnn.optim.StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for _ in range(4):
    ...     sched.step()
    ...     lrs.append(opt.lr)
    >>> lrs
    [0.1, 0.05, 0.05, 0.025]
    """

    _state_keys = ("step_size", "gamma", "last_epoch", "base_lr")
    _repr_keys = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = check_int(step_size, "step_size", "StepLR", minimum=1)
        self.gamma = _check_real(gamma, "gamma", 0.0, owner="StepLR")
        if self.gamma == 0.0:
            raise ValueError("StepLR: gamma must be > 0, got 0")
        super().__init__(optimizer)

    def step(self):
        """End of an epoch: advance the counter and multiply lr by gamma on a boundary."""
        self.last_epoch += 1
        if self.last_epoch % self.step_size == 0:
            self.optimizer.lr = self.optimizer.lr * self.gamma


class ExponentialLR(_Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_every`` epochs.

    With ``step_every=1`` this is ``torch.optim.lr_scheduler.ExponentialLR``;
    after ``e`` calls to :meth:`step` the lr is ``lr0 * gamma ** (e // step_every)``.

    Parameters
    ----------
    optimizer : object with a float ``lr`` attribute
    gamma : float > 0
    step_every : int >= 1
    """

    _state_keys = ("gamma", "step_every", "last_epoch", "base_lr")
    _repr_keys = ("gamma", "step_every")

    def __init__(self, optimizer, gamma, step_every=1):
        self.gamma = _check_real(gamma, "gamma", 0.0, owner="ExponentialLR")
        if self.gamma == 0.0:
            raise ValueError("ExponentialLR: gamma must be > 0, got 0")
        self.step_every = check_int(step_every, "step_every", "ExponentialLR", minimum=1)
        super().__init__(optimizer)

    def step(self):
        """End of an epoch: advance the counter and multiply lr by gamma every ``step_every`` calls."""
        self.last_epoch += 1
        if self.last_epoch % self.step_every == 0:
            self.optimizer.lr = self.optimizer.lr * self.gamma


class ReduceLROnPlateau(_Schedule):
    """Multiply the learning rate by ``factor`` when a metric stops improving
    (``torch.optim.lr_scheduler.ReduceLROnPlateau``, same names and rule).

    Each :meth:`step` (once per epoch, with the monitored value) counts a bad
    epoch unless the value is better than the best so far: in ``"min"`` mode
    with ``threshold_mode="rel"``, better means ``value < best * (1 - threshold)``
    (``"abs"``: ``value < best - threshold``; ``"max"`` mode mirrors it).  When
    more than ``patience`` bad epochs follow each other, ``lr = max(lr * factor,
    min_lr)`` (skipped if that changes lr by ``eps`` or less) and the count
    restarts after ``cooldown`` epochs.  A NaN metric is a bad epoch.

    Parameters
    ----------
    optimizer : object with a float ``lr`` attribute
    mode : {"min", "max"}
    factor : float in (0, 1)
    patience : int >= 0
    threshold : float >= 0
    threshold_mode : {"rel", "abs"}
    cooldown : int >= 0
    min_lr : float >= 0
    eps : float >= 0

    Examples
    --------
    >>> import fastcnn
    >>> opt = fastcnn.optim.SGD(fastcnn.layers.Linear(2, 1).parameters(), lr=1.0)
    >>> sched = fastcnn.optim.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    >>> for val_loss in [1.0, 1.0, 1.0, 1.0]:
    ...     sched.step(val_loss)
    >>> opt.lr
    0.5
    """

    needs_metric = True
    _state_keys = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps",
                   "best", "num_bad_epochs", "cooldown_counter", "last_epoch", "base_lr")
    _repr_keys = ("mode", "factor", "patience", "threshold", "min_lr")

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0, eps=1e-8):
        owner = "ReduceLROnPlateau"
        if mode not in ("min", "max"):
            raise ValueError(f"{owner}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{owner}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.factor = _check_real(factor, "factor", 0.0, 1.0, owner=owner)
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"{owner}: factor must be in (0, 1) (it multiplies the lr), got {factor!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.patience = check_int(patience, "patience", owner, minimum=0)
        self.threshold = _check_real(threshold, "threshold", 0.0, owner=owner)
        self.cooldown = check_int(cooldown, "cooldown", owner, minimum=0)
        self.min_lr = _check_real(min_lr, "min_lr", 0.0, owner=owner)
        self.eps = _check_real(eps, "eps", 0.0, owner=owner)
        super().__init__(optimizer)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def is_better(self, value, best):
        """Whether ``value`` improves on ``best`` by more than the threshold."""
        if self.mode == "min":
            return value < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return value > (best * (1.0 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold)

    def step(self, metrics):
        """End of an epoch, with the monitored value (e.g. the validation loss)."""
        if isinstance(metrics, bool) or not isinstance(metrics, numbers.Real):
            try:
                metrics = float(np.asarray(metrics).item())
            except (TypeError, ValueError):
                raise TypeError(f"ReduceLROnPlateau.step: metrics must be a number, got {metrics!r}") from None
        current = float(metrics)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = float(self.optimizer.lr)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0


def make_schedule(spec, optimizer):
    """Build a schedule from a short string, for command lines.

    Parameters
    ----------
    spec : str
        ``"step:STEP[:GAMMA]"`` -> ``StepLR(optimizer, STEP, GAMMA)`` (GAMMA defaults to 0.1);
        ``"exp:GAMMA[:EVERY]"`` -> ``ExponentialLR(optimizer, GAMMA, EVERY)``;
        ``"plateau[:PATIENCE[:FACTOR]]"`` -> ``ReduceLROnPlateau(optimizer, patience=PATIENCE, factor=FACTOR)``
        (defaults 10 and 0.1); ``"none"`` or ``""`` -> None.
    optimizer : object with a float ``lr`` attribute

    Returns
    -------
    StepLR, ExponentialLR, ReduceLROnPlateau or None

    Raises
    ------
    ValueError
        For an unknown kind, a wrong number of fields or a field that is not a number.

    Examples
    --------
    >>> import fastcnn
    >>> opt = fastcnn.optim.SGD(fastcnn.layers.Linear(2, 1).parameters(), lr=0.1)
    >>> fastcnn.optim.make_schedule("step:5:0.5", opt)
    StepLR(step_size=5, gamma=0.5)
    """
    if not isinstance(spec, str):
        raise TypeError(f"make_schedule: spec must be a string like 'step:5:0.5', got {type(spec).__name__}")
    usage = "use 'step:STEP[:GAMMA]', 'exp:GAMMA[:EVERY]' or 'plateau[:PATIENCE[:FACTOR]]'"
    text = spec.strip()
    if text.lower() in ("", "none"):
        return None
    kind, *fields = [f.strip() for f in text.split(":")]
    kind = kind.lower()

    def number(i, name, cast):
        try:
            return cast(fields[i])
        except ValueError:
            what = "an integer" if cast is int else "a number"
            raise ValueError(f"make_schedule: {name} in {spec!r} must be {what}, got {fields[i]!r}; {usage}") from None

    def arity(lo, hi):
        if not lo <= len(fields) <= hi:
            raise ValueError(f"make_schedule: {kind!r} takes {lo} to {hi} fields after the kind, got "
                             f"{len(fields)} in {spec!r}; {usage}")

    try:
        if kind == "step":
            arity(1, 2)
            gamma = number(1, "GAMMA", float) if len(fields) > 1 else 0.1
            return StepLR(optimizer, number(0, "STEP", int), gamma)
        if kind in ("exp", "exponential"):
            arity(1, 2)
            every = number(1, "EVERY", int) if len(fields) > 1 else 1
            return ExponentialLR(optimizer, number(0, "GAMMA", float), every)
        if kind == "plateau":
            arity(0, 2)
            patience = number(0, "PATIENCE", int) if fields else 10
            factor = number(1, "FACTOR", float) if len(fields) > 1 else 0.1
            return ReduceLROnPlateau(optimizer, patience=patience, factor=factor)
    except ValueError as e:
        if str(e).startswith("make_schedule"):
            raise
        raise ValueError(f"make_schedule: bad schedule {spec!r}: {e}") from None
    raise ValueError(f"make_schedule: unknown schedule kind {kind!r} in {spec!r}; {usage}")
