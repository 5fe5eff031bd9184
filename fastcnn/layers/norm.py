"""Batch normalisation layers: BatchNorm2d and BatchNorm1d (PyTorch's semantics)."""

import math
import numbers

import numpy as np

from .. import kernels
from .base import Layer, Parameter, check_dtype, check_positive_int, format_args


class _BatchNorm(Layer):
    """Shared body of :class:`BatchNorm2d` and :class:`BatchNorm1d`.

    Subclasses set ``_ndims`` (allowed input dimensions, batch axis included)
    and ``_forward`` / ``_backward`` (the checked kernel functions).
    """

    _ndims = ()
    _what = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, dtype=None):
        owner = type(self).__name__
        self.num_features = check_positive_int(num_features, "num_features", owner)
        for name, value in (("eps", eps), ("momentum", momentum)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{owner}: {name} must be a finite real number, got {value!r}")
        if eps <= 0:
            raise ValueError(f"{owner}: eps must be positive, got {eps!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{owner}: momentum must be in [0, 1], got {momentum!r} "
                             "(momentum=None, PyTorch's cumulative average, is not supported)")
        if not isinstance(affine, (bool, np.bool_)):
            raise ValueError(f"{owner}: affine must be True or False, got {affine!r}")
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = bool(affine)
        self.dtype = check_dtype(dtype, owner)
        C = self.num_features
        self.weight = Parameter(np.ones(C, dtype=self.dtype)) if self.affine else None
        self.bias = Parameter(np.zeros(C, dtype=self.dtype)) if self.affine else None
        self.running_mean = np.zeros(C, dtype=self.dtype)
        self.running_var = np.ones(C, dtype=self.dtype)
        self._cache = None

    def own_parameters(self):
        return [self.weight, self.bias] if self.affine else []

    def own_buffers(self):
        """Non-trainable state saved in checkpoints: ``{"running_mean": (C,), "running_var": (C,)}``.

        The arrays themselves, not copies: writing into them (as loading does)
        changes the layer.
        """
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def _check_shape(self, shape, what):
        """Raise ValueError unless a full input shape (batch axis included) fits the layer."""
        if len(shape) not in self._ndims:
            raise ValueError(f"{self!r}: {what} must be {self._what}, got shape {tuple(shape)}")
        if shape[1] != self.num_features:
            raise ValueError(
                f"{self!r}: input has {shape[1]} channels but the layer expects num_features="
                f"{self.num_features} (input shape {tuple(shape)}); build {type(self).__name__}"
                f"({shape[1]}) or fix the layer before it"
            )

    def output_shape(self, input_shape):
        self._check_shape((1,) + tuple(input_shape), "input")
        return tuple(input_shape)

    def forward(self, x, relu=False):
        """Normalise ``x``; with ``relu`` True (training mode only) also apply a ReLU, in the same pass.

        The model's chains pass ``relu=True`` for a ReLU layer that directly
        follows (:mod:`fastcnn.layers.chain`); :meth:`backward` then takes the
        gradient after that ReLU.  The results are the bits of the two layers
        run one after the other.
        """
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{self!r}: input must be a numeric array, got dtype {x.dtype}")
        self._check_shape(x.shape, "input")
        x = np.ascontiguousarray(x, dtype=self.dtype)
        w = self.weight.data if self.affine else None
        b = self.bias.data if self.affine else None
        if not self.training:
            y, _, _ = type(self)._forward(x, w, b, self.running_mean, self.running_var, training=False, eps=self.eps)
            if relu:
                kernels.relu_forward_kernel(y.reshape(-1), y.reshape(-1))
            self._cache = None
            return y
        y, mean, var, inv_std = kernels.batch_norm_training_forward(x, w, b, eps=self.eps, relu=relu)
        count = x.size // self.num_features  # values per channel
        kernels.batch_norm_update_running(self.running_mean, self.running_var, mean, var, count, self.momentum)
        self._cache = (x, mean, inv_std, y if relu else None)
        return y

    @property
    def relu_fused(self):
        """Whether the last training-mode forward ran with ``relu=True`` (then backward takes the ReLU's dy)."""
        return self._cache is not None and self._cache[3] is not None

    def backward(self, dy, need_input_grad=True):
        """Add the gradients of ``weight`` and ``bias``; return ``dx`` (None when not ``need_input_grad``).

        After a forward with ``relu=True``, ``dy`` is the gradient w.r.t. the
        ReLU's output.
        """
        x, mean, inv_std, relu_y = self._cached(self._cache, "input and batch statistics")
        dy = np.asarray(dy)
        if dy.shape != x.shape:
            raise ValueError(f"{self!r}: dy must have the forward input's shape {x.shape}, got {dy.shape}")
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        w = self.weight.data if self.affine else None
        dx, dw, db = type(self)._backward(dy, x, w, mean, inv_std, training=True, relu_y=relu_y)
        if self.affine:
            self.weight.grad += dw
            self.bias.grad += db
        return dx if need_input_grad else None

    def get_config(self):
        """Constructor arguments as a JSON-able dict (dtype by name)."""
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
            "dtype": self.dtype.name,
        }

    def __repr__(self):
        extra = format_args([("eps", self.eps, 1e-5), ("momentum", self.momentum, 0.1),
                             ("affine", self.affine, True), ("dtype", self.dtype.name, "float32")])
        return f"{type(self).__name__}({self.num_features}" + (f", {extra})" if extra else ")")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) images, per channel over N, H and W (PyTorch's ``nn.BatchNorm2d``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``.  In training mode
    mean and var are the batch's (var biased, over ``M = N*H*W`` values) and
    the running statistics move towards them::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)

    In eval mode the running statistics normalise and nothing is updated.

    Parameters
    ----------
    num_features : int
        C, the number of channels.
    eps : float
        Added to the variance.
    momentum : float in [0, 1]
    affine : bool
        Learn ``weight`` (init 1) and ``bias`` (init 0); False means no scale and shift.
    dtype : float32 (default) or float64

    Attributes
    ----------
    weight, bias : Parameter (C,) or None
    running_mean, running_var : ndarray (C,)
        Buffers (init 0 and 1), not parameters; see :meth:`own_buffers`.
    """

    _ndims = (4,)
    _what = "4-D (N, C, H, W)"
    #: A ReLU directly after this layer runs inside its forward in training (:func:`fastcnn.layers.chain.fused_relu`).
    relu_fusable = True
    _forward = staticmethod(kernels.batch_norm2d_forward)
    _backward = staticmethod(kernels.batch_norm2d_backward)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of features (N, C) or sequences (N, C, L), per channel (PyTorch's ``nn.BatchNorm1d``).

    Same rule and arguments as :class:`BatchNorm2d`, with ``M = N`` (or ``N*L``).
    """

    _ndims = (2, 3)
    _what = "2-D (N, C) or 3-D (N, C, L)"
    relu_fusable = True
    _forward = staticmethod(kernels.batch_norm1d_forward)
    _backward = staticmethod(kernels.batch_norm1d_backward)


def normalize(x, mean, std, scale=1.0):
    """Per-channel ``(x * scale - mean) / std``: the arithmetic of :class:`Normalize` and ``fastcnn.data.Normalizer``.

    Parameters
    ----------
    x : numpy.ndarray, floating point, (N, C, ...)
        Not modified.
    mean, std : numpy.ndarray (C,)
        Broadcast over axis 1; ``std`` is not checked here (callers keep it positive).
    scale : float, default 1.0
        Cast to ``x.dtype`` before the product.

    Returns
    -------
    numpy.ndarray
        A new array of ``x``'s shape and dtype, computed in
        ``np.result_type(x, mean, std)`` and rounded to ``x.dtype`` at the end.

    Examples
    --------
    >>> import numpy as np
    >>> normalize(np.full((1, 2, 1, 1), 255.0, np.float32), np.array([0.5, 0.0]), np.array([0.25, 1.0]), 1 / 255)
    array([[[[2.]],
    <BLANKLINE>
            [[1.]]]], dtype=float32)
    """
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, std = mean.reshape(shape), std.reshape(shape)
    y = x * x.dtype.type(scale)
    if np.result_type(y, mean, std) == y.dtype:  # in place: the same roundings, one buffer
        y -= mean
        y /= std
        return y
    return ((y - mean) / std).astype(x.dtype, copy=False)


class Normalize(Layer):
    """Fixed per-channel normalisation as the first layer of a model: ``y = (x * scale - mean) / std``.

    The statistics come from the training data (``fastcnn.data.Normalizer(...).fit(x_train).as_layer()``)
    and are buffers, not parameters: training never changes them, and checkpoints save them with the
    weights, so ``predict`` on raw images applies the same normalisation as training did (Keras's
    ``Normalization`` layer plays this role).  ``scale`` is 1/255 for statistics fitted on uint8 images
    (a model converts uint8 input to its float dtype without rescaling).

    Parameters
    ----------
    num_channels : int
    scale : float > 0
    mean, std : array-like (num_channels,), optional
        Default 0 and 1; ``std`` must be positive.
    dtype : float32 (default) or float64

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.layers import Normalize
    >>> Normalize(1, scale=1 / 255, mean=[0.5], std=[0.25]).forward(np.full((1, 1, 1, 1), 255.0, np.float32))
    array([[[[2.]]]], dtype=float32)
    """

    def __init__(self, num_channels, scale=1.0, mean=None, std=None, dtype=None):
        owner = "Normalize"
        self.num_channels = check_positive_int(num_channels, "num_channels", owner)
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"{owner}: scale must be a positive finite number, got {scale!r}")
        self.scale = float(scale)
        dtype = check_dtype(dtype, owner)
        self.mean = self._stat(mean, 0.0, "mean", dtype)
        self.std = self._stat(std, 1.0, "std", dtype)
        if not (self.std > 0).all():
            raise ValueError(f"{owner}: std must be positive, got {self.std}")

    def _stat(self, value, default, name, dtype):
        if value is None:
            return np.full(self.num_channels, default, dtype=dtype)
        arr = np.array(value, dtype=dtype).reshape(-1)
        if arr.shape != (self.num_channels,) or not np.isfinite(arr).all():
            raise ValueError(f"Normalize: {name} must be {self.num_channels} finite numbers, got {value!r}")
        return arr

    def own_buffers(self):
        """``{"mean": (C,), "std": (C,)}``: the arrays themselves, saved and restored with checkpoints."""
        return {"mean": self.mean, "std": self.std}

    def get_config(self):
        return {"num_channels": self.num_channels, "scale": self.scale, "dtype": self.mean.dtype.name}

    def output_shape(self, input_shape):
        if len(input_shape) < 1 or input_shape[0] != self.num_channels:
            raise ValueError(f"{self!r}: expects {self.num_channels} channels, got input shape {tuple(input_shape)}")
        return tuple(input_shape)

    def _broadcast(self, a, ndim):
        return a.reshape((1, self.num_channels) + (1,) * (ndim - 2))

    def forward(self, x):
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"{self!r}: input must be a float array (N, {self.num_channels}, ...), "
                f"got {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
            )
        return normalize(x, self.mean, self.std, self.scale)

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        return (dy * (self._broadcast(self.scale / self.std, dy.ndim))).astype(dy.dtype, copy=False)

    def __repr__(self):
        extra = format_args([("scale", self.scale, 1.0), ("dtype", self.mean.dtype.name, "float32")])
        return f"Normalize({self.num_channels}" + (f", {extra})" if extra else ")")
