"""Parameter and the Layer protocol."""

import numbers

import numpy as np

from ..config import DEFAULT_DTYPE


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : ndarray
        The values, updated in place by optimizers.
    grad : ndarray
        Same shape and dtype; layers add into it during ``backward`` and
        ``optimizer.zero_grad()`` clears it, as in PyTorch.
    """

    def __init__(self, data):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class: ``forward(x)``, ``backward(dy) -> dx``, ``parameters()``.

    ``forward`` in training mode keeps what ``backward`` needs; in eval mode it
    keeps nothing.  ``output_shape(shape)`` maps a per-example input shape
    (without the batch axis) to the output shape, raising ValueError for a
    shape the layer cannot take.
    """

    training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def parameters(self):
        """The layer's trainable parameters (weight, then bias)."""
        return []

    def output_shape(self, input_shape):
        """Per-example output shape for a per-example ``input_shape``."""
        return tuple(input_shape)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def get_config(self):
        """The constructor arguments, as a JSON-able dict (``{}`` for a layer without any).

        ``type(layer)(**layer.get_config())`` builds the same architecture (with
        fresh weights); :mod:`fastcnn.serialize` stores it in checkpoints.
        """
        return {}

    def _cached(self, value, what):
        if value is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called without a training-mode forward "
                f"(no cached {what}); call forward(x) in train() mode first"
            )
        return value

    def __repr__(self):
        return f"{type(self).__name__}()"


def check_positive_int(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


def check_dtype(dtype, owner):
    dtype = np.dtype(DEFAULT_DTYPE if dtype is None else dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dtype}")
    return dtype


def as_input(x, dtype, owner, ndim):
    """Convert ``x`` to a C-contiguous array of the layer's dtype (a no-op when it already is).

    ``owner`` (the layer itself) names the caller in error messages; it is
    formatted only when there is an error, not on every call.
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: input must be a numeric array, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{owner}: input must have {ndim} dimensions, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=dtype)


def format_args(pairs):
    """``name=value`` for the arguments that differ from their defaults."""
    return ", ".join(f"{name}={value!r}" for name, value, default in pairs if value != default)
