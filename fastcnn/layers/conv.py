"""Convolution layer."""


import numpy as np

from .. import kernels
from ..config import get_num_threads
from ..kernels.conv import PreparedConv
from .._shapes import pair
from . import init
from .base import Layer, Parameter, as_input, check_dtype, check_positive_int, format_args

#: What ``Conv2d(algorithm=...)`` accepts: "auto", "direct", "tuned" or a named algorithm of
#: ``kernels.CONV_ALGORITHMS``.
ALGORITHMS = ("auto", "direct", "tuned") + tuple(kernels.CONV_ALGORITHMS)
#: What a dilated Conv2d with a stride accepts (with stride 1 the other algorithms run on the dilation phases).
STRIDED_DILATED_ALGORITHMS = ("auto", "direct", "tuned", "nchw", "im2col", "depthwise")


def _padding(padding, stride, owner):
    """``"same"``, ``"valid"`` or a pair of non-negative ints, checked."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{owner}: padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"{owner}: padding='same' needs stride 1 (as in PyTorch), got stride={stride!r}")
        return padding
    pad = pair(padding, "padding")
    if min(pad) < 0:
        raise ValueError(f"{owner}: padding must be non-negative, got padding={padding!r}")
    return pad


class Conv2d(Layer):
    """2-D convolution (cross-correlation) with one kernel shared by every position.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding : int or (int, int)
        Output size ``floor((H + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1``.
        ``padding`` may also be ``"valid"`` (no padding) or ``"same"``
        (stride 1 only: the output is as large as the input; the total
        ``dilation*(kernel_size - 1)`` is split in half, the odd pixel at the
        bottom/right), as in PyTorch.
    dilation : int or (int, int)
        Spacing of the kernel taps (default 1).
    groups : int
        Channel groups (default 1): ``in_channels`` and ``out_channels`` must
        be multiples; each group of ``out_channels/groups`` outputs sees only
        its ``in_channels/groups`` inputs.  ``groups == in_channels`` is a
        depthwise convolution (``out_channels/in_channels`` filters per
        channel), which has its own fast kernels.
    bias : bool
    algorithm : str
        ``"auto"`` (default): each pass runs the algorithm
        :func:`fastcnn.kernels.conv2d_plan` picks for the shapes it sees
        (``"direct"`` is the same: never im2col).  ``"tuned"``: each pass
        runs the fastest algorithm for its shapes, timed on the first batch
        (see :mod:`fastcnn.kernels.conv_tune`).  A name from
        ``fastcnn.kernels.CONV_ALGORITHMS`` (``"nchw"``, ``"batch_last"``,
        ``"channel_last"``, ``"im2col"``, ``"matmul_1x1"``,
        ``"matmul_whole_input"``, ``"depthwise"``, ...) forces that algorithm for every pass; one
        that does not apply to the layer's shapes is refused.  :meth:`plan`
        shows what runs for an input shape.
    dtype : float32 (default) or float64

    Attributes
    ----------
    weight : Parameter, (out_channels, in_channels / groups, kh, kw)
        Initialised as PyTorch's, with ``fan_in = in_channels / groups * kh * kw``.
    bias : Parameter (out_channels,) or None

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.layers import Conv2d
    >>> conv = Conv2d(1, 6, 5, padding=2)
    >>> conv.forward(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 6, 28, 28)
    >>> Conv2d(32, 32, 3, padding="same", groups=32).weight.shape  # depthwise
    (32, 1, 3, 3)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, algorithm="auto", dtype=None):
        owner = "Conv2d"
        self.in_channels = check_positive_int(in_channels, "in_channels", owner)
        self.out_channels = check_positive_int(out_channels, "out_channels", owner)
        self.groups = check_positive_int(groups, "groups", owner)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{owner}: in_channels ({self.in_channels}) and out_channels ({self.out_channels}) must "
                             f"both be divisible by groups ({self.groups})")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        self.padding = _padding(padding, self.stride, owner)
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0 or min(self.dilation) <= 0:
            raise ValueError(
                f"{owner}: kernel_size, stride and dilation must be positive, got "
                f"kernel_size={kernel_size!r}, stride={stride!r}, dilation={dilation!r}"
            )
        self.algorithm = self._check_algorithm(algorithm, owner)
        dtype = check_dtype(dtype, owner)
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        self.weight = Parameter(init.kaiming_uniform(shape, fan_in, dtype))
        self.bias = Parameter(init.bias_uniform((self.out_channels,), fan_in, dtype)) if bias else None
        self._x = self._forward_plans = self._zeros = None
        self._plans = {}

    def _check_algorithm(self, algorithm, owner):
        """``algorithm``, after refusing a name that cannot apply to this layer whatever its input."""
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise ValueError(f"{owner}: algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, "
                             f"got {algorithm!r}")
        padding = (0, 0) if self.padding == "valid" else self.padding
        if algorithm == "matmul_1x1" and (self.kernel_size, self.stride, padding) != ((1, 1), (1, 1), (0, 0)):
            raise ValueError(f"{owner}: algorithm 'matmul_1x1' needs kernel_size=1, stride=1 and padding=0, got "
                             f"kernel_size={self.kernel_size!r}, stride={self.stride!r}, padding={self.padding!r}")
        if algorithm == "depthwise" and self.groups != self.in_channels:
            raise ValueError(f"{owner}: algorithm 'depthwise' needs groups == in_channels (a depthwise convolution), "
                             f"got groups={self.groups} for in_channels={self.in_channels}")
        dilated = any(d > 1 and k > 1 for d, k in zip(self.dilation, self.kernel_size))
        if dilated and self.stride != (1, 1) and algorithm not in STRIDED_DILATED_ALGORITHMS:
            raise ValueError(f"{owner}: algorithm {algorithm!r} cannot compute a dilated convolution with a stride "
                             f"(dilation {self.dilation}, stride {self.stride}); use one of "
                             f"{', '.join(map(repr, STRIDED_DILATED_ALGORITHMS))}")
        return algorithm

    def own_parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self!r}: expects (channels, height, width) inputs, got shape {tuple(input_shape)}")
        shape = kernels.conv2d_output_shape((1, *input_shape), self.weight.shape, self.stride, self.padding, repr(self),
                                            **self._grouping())
        return shape[1:]

    def _grouping(self):
        return {"dilation": self.dilation, "groups": self.groups}

    def plan(self, x_shape, need_input_grad=True):
        """Which algorithm computes each pass for a batch of shape ``x_shape`` (N, C, H, W), and its scratch memory.

        Returns the :class:`fastcnn.kernels.ConvPlans` that :meth:`forward` and
        :meth:`backward` execute for that input (see :func:`fastcnn.kernels.conv2d_plan`).

        Examples
        --------
        >>> from fastcnn.layers import Conv2d
        >>> Conv2d(64, 64, 3, padding=1).plan((64, 64, 16, 16)).input_grad.algorithm
        'winograd4'
        >>> Conv2d(64, 64, 3, padding=1, groups=64).plan((64, 64, 16, 16)).input_grad.algorithm
        'depthwise'
        """
        return kernels.conv2d_plan(x_shape, self.weight.shape, self.stride, self.padding, self.weight.dtype,
                                   self.algorithm, need_input_grad, **self._grouping())

    def _prepared(self, x, w=None, b=None):
        """The :class:`~fastcnn.kernels.conv.PreparedConv` for ``x``'s shape (made once per shape and thread
        count), or None when the weight ``w`` or bias ``b`` (default: the layer's own) is not a C-contiguous
        array of x's dtype (the checked path)."""
        return self.prepared_for(x.shape, x.dtype, w, b)

    def prepared_for(self, x_shape, dtype, w=None, b=None, algorithm=None):
        """:meth:`_prepared` for an input of shape ``x_shape`` (N, C, H, W) and ``dtype`` (for eval-mode chains,
        :mod:`fastcnn.layers.fuse`, whose activations may be held in another layout), with the layer's
        algorithm or ``algorithm``."""
        algorithm = algorithm or self.algorithm
        if w is None:
            w, b = self.weight.data, None if self.bias is None else self.bias.data
        if w.dtype != dtype or not w.flags.c_contiguous or (b is not None and (b.dtype != dtype or b.ndim != 1
                                                                                or not b.flags.c_contiguous)):
            return None
        key = (x_shape, get_num_threads(), algorithm, self.stride, self.padding, self.dilation, self.groups,
               w.shape, dtype)
        prepared = self._plans.get(key)
        if prepared is None:
            if len(self._plans) >= 4:  # a few input shapes (full and last batch) at a time
                self._plans.clear()
            prepared = self._plans[key] = PreparedConv(x_shape, w.shape, self.stride, self.padding, dtype,
                                                       algorithm, repr(self), key[1], **self._grouping())
        return prepared

    def forward(self, x):
        x = as_input(x, self.weight.dtype, self, 4)
        y, prepared = self._run(x, self.weight.data, None if self.bias is None else self.bias.data, self.training)
        self._x = x if self.training else None
        self._forward_plans = prepared if self.training else None
        return y

    def forward_with(self, x, w, b, out=None):
        """This layer's convolution of ``x`` with the weight ``w`` and bias ``b`` (or None) in their place.

        For eval-mode fusion (:mod:`fastcnn.layers.fuse`: BatchNorm folded
        into the weights).  ``w`` has the layer's weight shape; ``x`` is
        checked as :meth:`forward` checks it.  Keeps nothing for
        :meth:`backward`.  ``out``: a function of (shape, dtype) giving the
        output array, used where the layer's prepared plan runs.
        """
        return self._run(as_input(x, self.weight.dtype, self, 4), w, b, False, out)[0]

    def _run(self, x, w, b, keep, out=None):
        """``(y, prepared plan or None)``: the prepared plan for x's shape when it applies, else the checked
        function."""
        prepared = self._prepared(x, w, b)
        if prepared is None:
            y = kernels.conv2d_forward(x, w, b, self.stride, self.padding, algorithm=self.algorithm,
                                       **self._grouping())
        else:
            y = prepared.forward(x, w, self.zero_bias(prepared) if b is None else b, keep, out)
        return y, prepared

    def zero_bias(self, prepared):
        """Zeros (K,) of the plan's dtype, kept: the bias a layer without one passes to the kernels."""
        if self._zeros is None or self._zeros.shape != (prepared.g.K,) or self._zeros.dtype != prepared.dtype:
            self._zeros = np.zeros(prepared.g.K, dtype=prepared.dtype)
        return self._zeros

    def backward(self, dy, need_input_grad=True):
        x = self._cached(self._x, "input")
        prepared = self._forward_plans
        g = None if prepared is None else prepared.g
        if (prepared is not None and prepared is self._prepared(x) and isinstance(dy, np.ndarray)
                and dy.dtype == x.dtype and dy.shape == (g.N, g.K, g.P, g.Q) and dy.flags.c_contiguous):
            dx, dw, db = prepared.backward(dy, x, self.weight.data, need_input_grad)
        else:
            dx, dw, db = kernels.conv2d_backward(dy, x, self.weight.data, self.stride, self.padding,
                                                 need_input_grad=need_input_grad, algorithm=self.algorithm,
                                                 **self._grouping())
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def get_config(self):
        """Constructor arguments as a JSON-able dict (pairs as lists, dtype by name).

        A checkpoint written before ``dilation`` and ``groups`` existed lacks
        them; it loads with their defaults (1), which is what it meant.
        """
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.bias is not None,
            "algorithm": self.algorithm,
            "dtype": self.weight.dtype.name,
        }

    def __repr__(self):
        extra = format_args([
            ("stride", self.stride, (1, 1)),
            ("padding", self.padding, (0, 0)),
            ("dilation", self.dilation, (1, 1)),
            ("groups", self.groups, 1),
            ("bias", self.bias is not None, True),
            ("algorithm", self.algorithm, "auto"),
            ("dtype", self.weight.dtype.name, "float32"),
        ])
        ks = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        return f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={ks}" + (f", {extra})" if extra else ")")
