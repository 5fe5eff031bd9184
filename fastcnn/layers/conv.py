"""Convolution layer."""


from .. import kernels
from .._shapes import pair
from . import init
from .base import Layer, Parameter, as_input, check_dtype, check_positive_int, format_args

# algorithm name -> (forward, backward); both share one signature.
ALGORITHMS = {
    "direct": (kernels.conv2d_forward, kernels.conv2d_backward),
    "im2col": (kernels.conv2d_forward_im2col, kernels.conv2d_backward_im2col),
}


class Conv2d(Layer):
    """2-D convolution (cross-correlation) with one kernel shared by every position.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding : int or (int, int)
        Output size ``floor((H + 2*padding - kernel_size) / stride) + 1``.
    bias : bool
    algorithm : {"direct", "im2col"}
        Direct nested loops (no workspace) or im2col + matrix multiply.
    dtype : float32 (default) or float64

    Attributes
    ----------
    weight : Parameter, (out_channels, in_channels, kh, kw)
    bias : Parameter (out_channels,) or None

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.layers import Conv2d
    >>> conv = Conv2d(1, 6, 5, padding=2)
    >>> conv.forward(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 6, 28, 28)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 algorithm="direct", dtype=None):
        owner = "Conv2d"
        self.in_channels = check_positive_int(in_channels, "in_channels", owner)
        self.out_channels = check_positive_int(out_channels, "out_channels", owner)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0:
            raise ValueError(
                f"{owner}: kernel_size and stride must be positive and padding non-negative, got "
                f"kernel_size={kernel_size!r}, stride={stride!r}, padding={padding!r}"
            )
        if algorithm not in ALGORITHMS:
            raise ValueError(f"{owner}: algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
        self.algorithm = algorithm
        dtype = check_dtype(dtype, owner)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.weight = Parameter(init.kaiming_uniform((self.out_channels, self.in_channels, kh, kw), fan_in, dtype))
        self.bias = Parameter(init.bias_uniform((self.out_channels,), fan_in, dtype)) if bias else None
        self._x = None

    def own_parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self!r}: expects (channels, height, width) inputs, got shape {tuple(input_shape)}")
        shape = kernels.conv2d_output_shape((1, *input_shape), self.weight.shape, self.stride, self.padding, repr(self))
        return shape[1:]

    def forward(self, x):
        x = as_input(x, self.weight.dtype, self, 4)
        forward, _ = ALGORITHMS[self.algorithm]
        b = None if self.bias is None else self.bias.data
        y = forward(x, self.weight.data, b, self.stride, self.padding)
        self._x = x if self.training else None
        return y

    def backward(self, dy, need_input_grad=True):
        x = self._cached(self._x, "input")
        _, backward = ALGORITHMS[self.algorithm]
        dx, dw, db = backward(dy, x, self.weight.data, self.stride, self.padding, need_input_grad=need_input_grad)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def get_config(self):
        """Constructor arguments as a JSON-able dict (pairs as lists, dtype by name)."""
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.bias is not None,
            "algorithm": self.algorithm,
            "dtype": self.weight.dtype.name,
        }

    def __repr__(self):
        extra = format_args([
            ("stride", self.stride, (1, 1)),
            ("padding", self.padding, (0, 0)),
            ("bias", self.bias is not None, True),
            ("algorithm", self.algorithm, "direct"),
            ("dtype", self.weight.dtype.name, "float32"),
        ])
        ks = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        return f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={ks}" + (f", {extra})" if extra else ")")
