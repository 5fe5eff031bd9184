"""Locally connected layer, and counting the weights of full, local and shared connections."""

import numbers

from .. import kernels
from .._shapes import conv_output_size, pair
from . import init
from .base import Layer, Parameter, as_input, check_dtype, check_positive_int, format_args


class LocallyConnected2d(Layer):
    """A convolution whose filters are not shared: every output pixel has its own.

    ``y[n, k, p, q] = bias[k, p, q] + sum_{c, r, s} weight[p, q, k, c, r, s] * xp[n, c, p*sh + r, q*sw + s]``
    with ``xp`` the input zero-padded by ``padding``; output size
    ``P = floor((H + 2*padding - kernel_size) / stride) + 1`` (Q likewise), as
    :class:`~fastcnn.layers.Conv2d`.  The weights are fixed to one input size,
    so it is a constructor argument.  PyTorch has no equivalent; Keras'
    ``LocallyConnected2D`` is the reference (same arithmetic, kernel laid out
    (P*Q, R*S*C, K) there).

    It has ``P*Q`` times the weights of the convolution with the same kernel:
    see :func:`count_connections`.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    input_size : int or (int, int)
        Height and width of the inputs the layer will take.
    stride, padding : int or (int, int)
    bias : bool
    dtype : float32 (default) or float64

    Attributes
    ----------
    weight : Parameter, (P, Q, out_channels, in_channels, kh, kw)
        One PyTorch-layout (out, in, kh, kw) filter bank per output pixel (p, q).
        Initialised uniform in ``+-1 / sqrt(fan_in)``, ``fan_in = in_channels*kh*kw``.
    bias : Parameter (out_channels, P, Q) or None
        One bias per output channel and pixel, same initialisation.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.layers import LocallyConnected2d
    >>> layer = LocallyConnected2d(1, 4, 3, input_size=8)
    >>> layer.weight.shape, layer.bias.shape
    ((6, 6, 4, 1, 3, 3), (4, 6, 6))
    >>> layer.forward(np.zeros((2, 1, 8, 8), np.float32)).shape
    (2, 4, 6, 6)
    """

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0, bias=True,
                 dtype=None):
        owner = "LocallyConnected2d"
        self.in_channels = check_positive_int(in_channels, "in_channels", owner)
        self.out_channels = check_positive_int(out_channels, "out_channels", owner)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.input_size = pair(input_size, "input_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if min(self.kernel_size) <= 0 or min(self.input_size) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0:
            raise ValueError(
                f"{owner}: kernel_size, input_size and stride must be positive and padding non-negative, got "
                f"kernel_size={kernel_size!r}, input_size={input_size!r}, stride={stride!r}, padding={padding!r}"
            )
        (kh, kw), (H, W), (ph, pw) = self.kernel_size, self.input_size, self.padding
        if kh > H + 2 * ph or kw > W + 2 * pw:
            raise ValueError(
                f"{owner}: kernel {kh}x{kw} is larger than the padded input {H + 2 * ph}x{W + 2 * pw} "
                f"(input_size {self.input_size}, padding {self.padding})"
            )
        P = conv_output_size(H, kh, self.stride[0], ph)
        Q = conv_output_size(W, kw, self.stride[1], pw)
        dtype = check_dtype(dtype, owner)
        fan_in = self.in_channels * kh * kw
        shape = (P, Q, self.out_channels, self.in_channels, kh, kw)
        self.weight = Parameter(init.bias_uniform(shape, fan_in, dtype))
        self.bias = Parameter(init.bias_uniform((self.out_channels, P, Q), fan_in, dtype)) if bias else None
        self._x = None

    def own_parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def output_shape(self, input_shape):
        expected = (self.in_channels, *self.input_size)
        if tuple(input_shape) != expected:
            raise ValueError(
                f"{self!r}: built for inputs of shape {expected} (channels, height, width), got "
                f"{tuple(input_shape)}; its weights are tied to the input size"
            )
        P, Q, K = self.weight.shape[:3]
        return (K, P, Q)

    def forward(self, x):
        x = as_input(x, self.weight.dtype, self, 4)
        self.output_shape(x.shape[1:])
        b = None if self.bias is None else self.bias.data
        y = kernels.locally_connected2d_forward(x, self.weight.data, b, self.stride, self.padding)
        self._x = x if self.training else None
        return y

    def backward(self, dy, need_input_grad=True):
        x = self._cached(self._x, "input")
        dx, dw, db = kernels.locally_connected2d_backward(dy, x, self.weight.data, self.stride, self.padding,
                                                          need_input_grad=need_input_grad)
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
            "input_size": list(self.input_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.bias is not None,
            "dtype": self.weight.dtype.name,
        }

    def __repr__(self):
        extra = format_args([
            ("stride", self.stride, (1, 1)),
            ("padding", self.padding, (0, 0)),
            ("bias", self.bias is not None, True),
            ("dtype", self.weight.dtype.name, "float32"),
        ])
        ks = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        size = self.input_size[0] if self.input_size[0] == self.input_size[1] else self.input_size
        return (f"LocallyConnected2d({self.in_channels}, {self.out_channels}, kernel_size={ks}, input_size={size}"
                + (f", {extra})" if extra else ")"))


CONNECTIONS = ("full", "local", "shared")


def count_connections(input_size, hidden_units=None, connection="full", kernel_size=None, num_kernels=None,
                      in_channels=1, bias=False):
    """Number of weights a layer needs, by how its hidden units connect to the input; nothing is allocated.

    Parameters
    ----------
    input_size : int or (int, int)
        Input height and width (pixels per channel).
    hidden_units : int, optional
        Number of hidden units (outputs).  Needed for ``"full"`` and ``"local"``.
    connection : {"full", "local", "shared"}
        - ``"full"``: every hidden unit sees every input value (:class:`Linear`):
          ``in_channels * H * W * hidden_units`` weights.
        - ``"local"``: every hidden unit sees its own ``kh x kw`` window, with its own
          weights (:class:`LocallyConnected2d`): ``hidden_units * in_channels * kh * kw``.
        - ``"shared"``: ``num_kernels`` ``kh x kw`` kernels shared by every position
          (:class:`Conv2d`): ``num_kernels * in_channels * kh * kw``, whatever the
          number of hidden units.
    kernel_size : int or (int, int)
        Window size, for ``"local"`` and ``"shared"``.
    num_kernels : int
        Number of kernels (output channels), for ``"shared"``.
    in_channels : int
        Input channels (1 for a grey image).
    bias : bool
        Add the biases: one per hidden unit (``"full"``, ``"local"``) or per kernel (``"shared"``).

    Returns
    -------
    int

    Examples
    --------
    A 1000 x 1000 image into 10**6 hidden units:

    >>> from fastcnn.layers import count_connections
    >>> count_connections((1000, 1000), 10**6, "full")
    1000000000000
    >>> count_connections((1000, 1000), 10**6, "local", kernel_size=10)
    100000000
    >>> count_connections((1000, 1000), connection="shared", kernel_size=10, num_kernels=100)
    10000
    """
    fn = "count_connections"
    H, W = pair(input_size, "input_size")
    if H <= 0 or W <= 0:
        raise ValueError(f"{fn}: input_size must be positive, got {input_size!r}")
    in_channels = check_positive_int(in_channels, "in_channels", fn)
    if connection not in CONNECTIONS:
        raise ValueError(f"{fn}: connection must be one of {CONNECTIONS}, got {connection!r}")
    if connection in ("full", "local"):
        if hidden_units is None:
            raise ValueError(f"{fn}: connection={connection!r} needs hidden_units")
        hidden_units = check_positive_int(hidden_units, "hidden_units", fn)
    if connection in ("local", "shared"):
        if kernel_size is None:
            raise ValueError(f"{fn}: connection={connection!r} needs kernel_size")
        kh, kw = pair(kernel_size, "kernel_size")
        if kh <= 0 or kw <= 0 or kh > H or kw > W:
            raise ValueError(f"{fn}: kernel_size must be positive and at most input_size {(H, W)}, "
                             f"got {kernel_size!r}")
    if connection == "full":
        return in_channels * H * W * hidden_units + (hidden_units if bias else 0)
    if connection == "local":
        return hidden_units * in_channels * kh * kw + (hidden_units if bias else 0)
    if num_kernels is None or isinstance(num_kernels, bool) or not isinstance(num_kernels, numbers.Integral):
        raise ValueError(f"{fn}: connection='shared' needs num_kernels (an int), got {num_kernels!r}")
    num_kernels = check_positive_int(num_kernels, "num_kernels", fn)
    return num_kernels * in_channels * kh * kw + (num_kernels if bias else 0)
