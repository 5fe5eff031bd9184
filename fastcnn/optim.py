"""Optimizers.  They see Parameters (``.data``, ``.grad``), never layers."""

import math
import numbers

import numpy as np

from .kernels import sgd_update_kernel
from .layers.base import Parameter


def _check_real(value, name, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"SGD: {name} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        want = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"SGD: {name} must be {want}, got {value!r}")
    return float(value)


class SGD:
    r"""Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay.

    Exactly ``torch.optim.SGD`` with dampening 0, so the same start and the same
    batches give the same weights.  For each parameter :math:`p` with gradient
    :math:`g` at step :math:`t`:

    .. code-block:: text

        g = g + weight_decay * p
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

    Examples
    --------
    >>> import fastcnn
    >>> model = fastcnn.models.lenet5()
    >>> opt = fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    >>> opt.lr = 0.005
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
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
        self._buffers = [None] * len(self.params)

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_real(value, "lr", 0.0)

    def zero_grad(self):
        """Set every parameter's gradient to zero."""
        for p in self.params:
            p.grad.fill(0)

    def step(self):
        """Update every parameter in place from its ``.grad``."""
        for i, p in enumerate(self.params):
            dt = p.data.dtype.type
            buf = self._buffers[i]
            first = buf is None
            if first and self.momentum != 0.0:
                buf = self._buffers[i] = np.empty_like(p.data)
            flat = p.data.reshape(-1)
            sgd_update_kernel(
                flat,
                p.grad.reshape(-1),
                flat if buf is None else buf.reshape(-1),  # unused without momentum
                dt(self._lr),
                dt(self.momentum),
                dt(self.weight_decay),
                self.nesterov,
                first,
            )

    def state_dict(self):
        """Hyperparameters and momentum buffers (copies), for saving and resuming."""
        return {
            "lr": self._lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
            "momentum_buffers": [None if b is None else b.copy() for b in self._buffers],
        }

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned; checks buffer count and shapes first."""
        buffers = list(state["momentum_buffers"])
        if len(buffers) != len(self.params):
            raise ValueError(
                f"SGD.load_state_dict: state has {len(buffers)} momentum buffers but the optimizer "
                f"has {len(self.params)} parameters"
            )
        for i, (b, p) in enumerate(zip(buffers, self.params)):
            if b is not None and np.shape(b) != p.data.shape:
                raise ValueError(
                    f"SGD.load_state_dict: momentum buffer {i} has shape {np.shape(b)}, "
                    f"parameter has {p.data.shape}"
                )
        momentum = _check_real(state["momentum"], "momentum", 0.0, 1.0)
        weight_decay = _check_real(state["weight_decay"], "weight_decay", 0.0)
        self.lr = state["lr"]
        self.momentum, self.weight_decay = momentum, weight_decay
        self.nesterov = bool(state["nesterov"])
        self._buffers = [
            None if b is None else np.array(b, dtype=p.data.dtype) for b, p in zip(buffers, self.params)
        ]

    def __repr__(self):
        return (f"SGD(lr={self._lr}, momentum={self.momentum}, weight_decay={self.weight_decay}, "
                f"nesterov={self.nesterov})")
