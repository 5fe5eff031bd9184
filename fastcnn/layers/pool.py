"""Pooling layers: max, average, global average and global max."""

import numpy as np

from .. import kernels
from ..kernels.pool import check_flag, max_pool2d_run
from .base import Layer, format_args


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_pool_input(x, owner):
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        shape = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"{owner}: input must be a 4-D (N, C, H, W) array, got {shape}")
    return x


def _keep_argmax(layer, argmax, x_shape):
    """What a max pooling's backward needs, kept in training mode only (eval keeps nothing)."""
    layer._argmax, layer._x_shape = (argmax, x_shape) if layer.training else (None, None)


class _Pool2d(Layer):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.ceil_mode = check_flag(ceil_mode, "ceil_mode", type(self).__name__)
        # check the arguments now, on a shape every valid window fits
        self.output_shape_of((1, 1, 10**6, 10**6))
        self._x_shape = None

    def output_shape_of(self, x_shape):
        out, _ = kernels.pool2d_output_shape(x_shape, self.kernel_size, self.stride, self.padding,
                                             self.ceil_mode, type(self).__name__)
        return out

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self!r}: expects (channels, height, width) inputs, got shape {tuple(input_shape)}")
        return self.output_shape_of((1, *input_shape))[1:]

    _geometries = None

    def _checked(self, x):
        """``(out_shape, geometry)`` of :func:`fastcnn.kernels.pool2d_output_shape` for x, remembered per shape;
        None when x is not a C-contiguous float32 or float64 array (the checked functions convert it)."""
        if x.dtype not in _FLOATS or not x.flags.c_contiguous:
            return None
        key = (x.shape, self.kernel_size, self.stride, self.padding, self.ceil_mode)
        try:
            hash(key)
        except TypeError:  # a list among the arguments (a layer built from JSON): checked every time
            return None
        found = None if self._geometries is None else self._geometries.get(key)
        if found is None:
            found = kernels.pool2d_output_shape(x.shape, self.kernel_size, self.stride, self.padding,
                                                self.ceil_mode, type(self).__name__)
            if self._geometries is None or len(self._geometries) >= 4:
                self._geometries = {}
            self._geometries[key] = found
        return found

    def get_config(self):
        """Constructor arguments as a JSON-able dict (pairs as lists)."""
        def plain(v):
            return list(v) if isinstance(v, (tuple, list)) else v
        return {
            "kernel_size": plain(self.kernel_size),
            "stride": plain(self.stride),
            "padding": plain(self.padding),
            "ceil_mode": self.ceil_mode,
        }

    def _repr_args(self):
        """``(name, value, default)`` of the arguments after kernel_size, for :func:`format_args`."""
        return [("stride", self.stride, None), ("padding", self.padding, 0), ("ceil_mode", self.ceil_mode, False)]

    def __repr__(self):
        extra = format_args(self._repr_args())
        return f"{type(self).__name__}(kernel_size={self.kernel_size!r}" + (f", {extra})" if extra else ")")


class MaxPool2d(_Pool2d):
    """Max pooling; backward routes each gradient to its window's (first) maximum.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int, (int, int) or None (= kernel_size)
    padding : int or (int, int), at most half the kernel
    ceil_mode : bool
        Round the output size up (PyTorch's rule: a last window starting in
        the right padding is dropped).
    """

    def forward(self, x):
        x = _check_pool_input(x, self)
        checked = self._checked(x)
        if checked is None:
            y, argmax = kernels.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)
        else:
            y, argmax = max_pool2d_run(x, *checked)
        _keep_argmax(self, argmax, x.shape)
        return y

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        x_shape = self._cached(self._x_shape, "argmax")
        return kernels.max_pool2d_backward(dy, self._argmax, x_shape)


class AvgPool2d(_Pool2d):
    """Average pooling; backward spreads each gradient evenly over its window.

    Parameters
    ----------
    kernel_size, stride, padding, ceil_mode
        As :class:`MaxPool2d`.
    count_include_pad : bool
        True (the default): the zero padding counts in the divisor; False:
        each output is the mean of the input pixels its window covers.  The
        rule, ceil-mode windows included, is PyTorch's (see
        :func:`fastcnn.kernels.avg_pool2d_forward`).
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        self.count_include_pad = check_flag(count_include_pad, "count_include_pad", "AvgPool2d")
        super().__init__(kernel_size, stride, padding, ceil_mode)

    def get_config(self):
        """Constructor arguments as a JSON-able dict (pairs as lists)."""
        return {**super().get_config(), "count_include_pad": self.count_include_pad}

    def _repr_args(self):
        return super()._repr_args() + [("count_include_pad", self.count_include_pad, True)]

    def forward(self, x):
        x = _check_pool_input(x, self)
        self._x_shape = x.shape if self.training else None
        return kernels.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                          self.count_include_pad)

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        x_shape = self._cached(self._x_shape, "input shape")
        return kernels.avg_pool2d_backward(dy, x_shape, self.kernel_size, self.stride, self.padding,
                                           self.ceil_mode, self.count_include_pad)


class _GlobalPool2d(Layer):
    """(N, C, H, W) -> (N, C): one value per channel's whole plane."""

    _x_shape = None

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self!r}: expects (channels, height, width) inputs, got shape {tuple(input_shape)}")
        return (input_shape[0],)


class GlobalAvgPool2d(_GlobalPool2d):
    """Mean over each channel's whole plane: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        x = _check_pool_input(x, self)
        self._x_shape = x.shape if self.training else None
        return kernels.global_avg_pool2d_forward(x)

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        return kernels.global_avg_pool2d_backward(dy, self._cached(self._x_shape, "input shape"))


class GlobalMaxPool2d(_GlobalPool2d):
    """Maximum over each channel's whole plane: (N, C, H, W) -> (N, C).

    As :class:`GlobalAvgPool2d`, the output is (N, C) (PyTorch's
    ``AdaptiveMaxPool2d(1)`` followed by ``Flatten``).  On ties the first
    maximum in row-major order wins and a NaN wins, as in :class:`MaxPool2d`;
    backward routes each gradient to the winner.  A ReLU directly before it
    runs after it (the same result on C values per image instead of C*H*W;
    see :func:`fastcnn.layers.chain.run_order`).
    """

    _argmax = None

    def forward(self, x):
        x = _check_pool_input(x, self)
        y, argmax = kernels.global_max_pool2d_forward(x)
        _keep_argmax(self, argmax, x.shape)
        return y

    def backward(self, dy, need_input_grad=True):
        if not need_input_grad:
            return None
        x_shape = self._cached(self._x_shape, "argmax")
        return kernels.global_max_pool2d_backward(dy, self._argmax, x_shape)
