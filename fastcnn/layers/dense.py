"""Flatten, Linear and Dropout."""

import math
import numbers

import numpy as np

from .. import kernels
from . import init
from .base import Layer, Parameter, as_input, check_dtype, check_positive_int, format_args


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), keeping C, H, W order (as PyTorch's ``nn.Flatten``)."""

    _shape = None

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x):
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            raise ValueError(f"Flatten: input must be an array with a batch axis, got {getattr(x, 'shape', x)!r}")
        self._shape = x.shape if self.training else None
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_input_grad=True):
        shape = self._cached(self._shape, "input shape")
        return dy.reshape(shape) if need_input_grad else None


class Linear(Layer):
    """Fully connected layer ``y = x @ weight.T + bias``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : float32 (default) or float64

    Attributes
    ----------
    weight : Parameter, (out_features, in_features), PyTorch's layout
    bias : Parameter (out_features,) or None
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        owner = "Linear"
        self.in_features = check_positive_int(in_features, "in_features", owner)
        self.out_features = check_positive_int(out_features, "out_features", owner)
        dtype = check_dtype(dtype, owner)
        shape = (self.out_features, self.in_features)
        self.weight = Parameter(init.kaiming_uniform(shape, self.in_features, dtype))
        self.bias = Parameter(init.bias_uniform((self.out_features,), self.in_features, dtype)) if bias else None
        self._x = None

    def own_parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"{self!r}: expects inputs of {self.in_features} features, got shape {tuple(input_shape)}")
        return (self.out_features,)

    def _raw_ok(self, x):
        """Whether x (C-contiguous, the layer's dtype, from :func:`as_input`), the weight and the bias can go
        straight to the raw kernels, the checks of :func:`fastcnn.kernels.linear_forward` being known to pass."""
        w, b = self.weight.data, self.bias
        return (x.shape[1] == w.shape[1] and w.dtype == x.dtype and w.ndim == 2 and w.flags.c_contiguous
                and (b is None or (b.data.dtype == x.dtype and b.data.shape == (w.shape[0],)
                                   and b.data.flags.c_contiguous)))

    def forward(self, x):
        x = as_input(x, self.weight.dtype, self, 2)
        w = self.weight.data
        if self._raw_ok(x):
            y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
            b = self.bias.data if self.bias is not None else np.zeros(w.shape[0], dtype=x.dtype)
            kernels.linear_forward_kernel(x, w, b, y)
        else:
            y = kernels.linear_forward(x, w, None if self.bias is None else self.bias.data)
        self._x = x if self.training else None
        return y

    def backward(self, dy, need_input_grad=True):
        x = self._cached(self._x, "input")
        dx, dw, db = kernels.linear_backward(dy, x, self.weight.data, need_input_grad=need_input_grad)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def get_config(self):
        """Constructor arguments as a JSON-able dict (dtype by name)."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": self.weight.dtype.name,
        }

    def __repr__(self):
        extra = format_args([("bias", self.bias is not None, True), ("dtype", self.weight.dtype.name, "float32")])
        return f"Linear({self.in_features}, {self.out_features}" + (f", {extra})" if extra else ")")


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    The identity in eval mode.  Masks come from a ``numpy.random.Generator``:
    ``seed`` gives the layer its own; otherwise it draws from the generator that
    ``fastcnn.manual_seed`` seeds.
    """

    def __init__(self, p=0.5, seed=None):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (0.0 <= p <= 1.0) or math.isnan(p):
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)
        self._mask = None

    def forward(self, x):
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            raise TypeError(f"{self!r}: input must be a float array, got {getattr(x, 'dtype', type(x).__name__)}")
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        rng = self._rng if self._rng is not None else init.generator()
        keep = rng.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64) >= self.p
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self._mask = keep.astype(x.dtype) * x.dtype.type(scale)
        return x * self._mask

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        if not self.training or self.p == 0.0:
            return dy
        return dy * self._cached(self._mask, "mask")

    def get_config(self):
        """Constructor arguments: ``p`` and ``seed`` (an int or None)."""
        seed = self.seed if self.seed is None or isinstance(self.seed, int) else None
        return {"p": self.p, "seed": seed}

    def __repr__(self):
        return f"Dropout(p={self.p})"
