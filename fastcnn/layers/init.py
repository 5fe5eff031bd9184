"""Weight initialisation, seeded from one module-level generator.

``fastcnn.manual_seed(seed)`` resets the generator, so the same seed builds
the same model.  Defaults follow PyTorch: weights Kaiming-uniform with
``a = sqrt(5)`` (bound ``1 / sqrt(fan_in)``), biases uniform in
``+-1 / sqrt(fan_in)``.
"""

import math

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed the generator behind weight initialisation and dropout masks.

    Examples
    --------
    >>> import fastcnn
    >>> fastcnn.manual_seed(0)
    """
    global _rng
    _rng = np.random.default_rng(seed)


def generator():
    """The current module-level ``numpy.random.Generator``."""
    return _rng


def kaiming_uniform(shape, fan_in, dtype, a=math.sqrt(5.0)):
    """Uniform in ``+-gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + a^2))``.

    With PyTorch's default ``a = sqrt(5)`` the bound is ``1 / sqrt(fan_in)``.
    """
    gain = math.sqrt(2.0 / (1.0 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return _rng.uniform(-bound, bound, size=shape).astype(dtype)


def bias_uniform(shape, fan_in, dtype):
    """Uniform in ``+-1 / sqrt(fan_in)``, PyTorch's default for biases."""
    bound = 1.0 / math.sqrt(fan_in)
    return _rng.uniform(-bound, bound, size=shape).astype(dtype)


# --------------------------------------------------------------------------- in-place initialisers

_GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "sigmoid": 1.0, "identity": 1.0,
          "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 0.75}


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``.

    ``linear``/``conv2d``/``sigmoid``/``identity``: 1; ``tanh``: 5/3; ``relu``: sqrt(2);
    ``leaky_relu``: ``sqrt(2 / (1 + param^2))`` (param defaults to 0.01); ``selu``: 3/4.
    """
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: negative slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1.0 + slope * slope))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; "
                         f"use one of {sorted(_GAINS) + ['leaky_relu']}")
    return _GAINS[nonlinearity]


def _array(param, owner):
    """The ndarray to fill (a Parameter's ``.data`` or the array itself)."""
    arr = param if isinstance(param, np.ndarray) else getattr(param, "data", None)  # ndarray.data is a buffer
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        raise TypeError(f"{owner}: expects a Parameter or a float ndarray, got {type(param).__name__}")
    return arr


def _fill(param, values):
    _array(param, "init")[...] = values
    return param


def calculate_fan_in_and_fan_out(shape):
    """``(fan_in, fan_out)`` as PyTorch computes them.

    For a weight ``(out, in, *kernel)``: ``fan_in = in * prod(kernel)``,
    ``fan_out = out * prod(kernel)``.  Needs at least 2 dimensions.
    """
    shape = tuple(getattr(shape, "shape", shape))
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need a tensor with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _check_nonneg(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def uniform_(param, a=1.0, b=None):
    """Fill in place from U(-a, a), or from U(a, b) when ``b`` is given.

    Parameters
    ----------
    param : Parameter or float ndarray
        Written in place (drawn in float64 from the module generator, then cast).

    Returns
    -------
    param

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.layers import init
    >>> w = init.uniform_(np.empty((3, 3), np.float32), 0.1)
    >>> bool(np.abs(w).max() <= 0.1)
    True
    """
    arr = _array(param, "uniform_")
    if b is None:
        bound = _check_nonneg(a, "a", "uniform_")
        lo, hi = -bound, bound
    else:
        lo, hi = float(a), float(b)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"uniform_: needs finite a <= b, got a={a!r}, b={b!r}")
    return _fill(param, _rng.uniform(lo, hi, size=arr.shape))


def normal_(param, std=1.0, mean=0.0):
    """Fill in place from N(mean, std^2) (module generator, float64 then cast)."""
    arr = _array(param, "normal_")
    std = _check_nonneg(std, "std", "normal_")
    return _fill(param, _rng.normal(float(mean), std, size=arr.shape))


def zeros_(param):
    """Fill in place with zeros."""
    _array(param, "zeros_")
    return _fill(param, 0)


def xavier_uniform_(param, gain=1.0):
    """Glorot uniform: U(-b, b) with ``b = gain * sqrt(6 / (fan_in + fan_out))`` (``torch.nn.init.xavier_uniform_``)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(_array(param, "xavier_uniform_").shape)
    bound = _check_nonneg(gain, "gain", "xavier_uniform_") * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(param, bound)


def xavier_normal_(param, gain=1.0):
    """Glorot normal: N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(_array(param, "xavier_normal_").shape)
    std = _check_nonneg(gain, "gain", "xavier_normal_") * math.sqrt(2.0 / (fan_in + fan_out))
    return normal_(param, std)


def _kaiming_std(param, a, mode, nonlinearity, owner):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{owner}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(_array(param, owner).shape)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(param, a=0.0, mode="fan_in", nonlinearity="relu"):
    """He uniform: U(-b, b) with ``b = gain * sqrt(3 / fan)`` (``torch.nn.init.kaiming_uniform_``).

    ``gain = calculate_gain(nonlinearity, a)``: sqrt(2) for ``"relu"``;
    ``nonlinearity="leaky_relu", a=sqrt(5)`` is PyTorch's layer default (bound ``1/sqrt(fan_in)``).
    """
    std = _kaiming_std(param, a, mode, nonlinearity, "kaiming_uniform_")
    return uniform_(param, math.sqrt(3.0) * std)


def kaiming_normal_(param, a=0.0, mode="fan_in", nonlinearity="relu"):
    """He normal: N(0, std^2) with ``std = gain / sqrt(fan)`` (``torch.nn.init.kaiming_normal_``)."""
    return normal_(param, _kaiming_std(param, a, mode, nonlinearity, "kaiming_normal_"))


def default_(param):
    """PyTorch's layer default for a weight: ``kaiming_uniform_(a=sqrt(5), nonlinearity="leaky_relu")``."""
    return kaiming_uniform_(param, a=math.sqrt(5.0), nonlinearity="leaky_relu")


WEIGHT_INITS = {
    "kaiming_uniform": kaiming_uniform_,
    "kaiming_normal": kaiming_normal_,
    "xavier_uniform": xavier_uniform_,
    "xavier_normal": xavier_normal_,
    "uniform": uniform_,
    "normal": normal_,
    "zeros": zeros_,
    "default": default_,
}
BIAS_INITS = ("zeros", "default", "uniform", "normal")


def _walk(model_or_layers):
    """Every layer of a Sequential, a layer or a list of layers, nested ones included, depth first."""
    layers = getattr(model_or_layers, "layers", model_or_layers)
    if not isinstance(layers, (list, tuple)):
        layers = [layers]
    for layer in layers:
        yield from layer.walk()


def initialize(model_or_layers, weight="kaiming_uniform", bias="zeros", **kw):
    """Re-initialise every Conv2d and Linear in place, in layer order, from the module generator.

    Layers nested in others (the convolutions inside :class:`~fastcnn.layers.Residual`
    blocks) are reached too, depth first: a block's layers, then its shortcut's,
    before the layers that follow the block.

    Parameters
    ----------
    model_or_layers : Sequential, a layer, or a list of layers
    weight : str or callable
        One of ``"kaiming_uniform"`` (default), ``"kaiming_normal"``,
        ``"xavier_uniform"``, ``"xavier_normal"``, ``"uniform"``, ``"normal"``,
        ``"zeros"``, ``"default"`` (PyTorch's layer default), or a callable
        ``f(param)`` that fills a Parameter in place.
    bias : str or callable
        ``"zeros"`` (default), ``"default"`` (U(+-1/sqrt(fan_in)), PyTorch's),
        ``"uniform"`` / ``"normal"`` (with the ``a`` / ``std`` from ``kw``), or a callable.
    **kw
        Passed to the weight initialiser (e.g. ``nonlinearity="tanh"``, ``gain=``, ``std=``).

    Returns
    -------
    int
        The number of layers initialised.

    Examples
    --------
    >>> import fastcnn
    >>> from fastcnn.layers import Conv2d, Flatten, Linear, init
    >>> fastcnn.manual_seed(0)
    >>> model = fastcnn.Sequential(Conv2d(1, 2, 3), Flatten(), Linear(8, 2))
    >>> init.initialize(model, weight="xavier_uniform")
    2
    """
    from .conv import Conv2d
    from .dense import Linear

    if callable(weight):
        weight_fn = weight
    elif weight in WEIGHT_INITS:
        weight_fn = WEIGHT_INITS[weight]
    else:
        raise ValueError(f"initialize: weight must be one of {sorted(WEIGHT_INITS)} or a callable, got {weight!r}")
    if not callable(bias) and bias not in BIAS_INITS:
        raise ValueError(f"initialize: bias must be one of {list(BIAS_INITS)} or a callable, got {bias!r}")
    count = 0
    for layer in _walk(model_or_layers):
        if not isinstance(layer, (Conv2d, Linear)):
            continue
        weight_fn(layer.weight, **kw)
        if layer.bias is not None:
            if callable(bias):
                bias(layer.bias)
            elif bias == "zeros":
                zeros_(layer.bias)
            elif bias == "default":
                fan_in, _ = calculate_fan_in_and_fan_out(layer.weight.shape)
                uniform_(layer.bias, 1.0 / math.sqrt(fan_in))
            elif bias == "uniform":
                uniform_(layer.bias, kw.get("a", 1.0))
            else:
                normal_(layer.bias, kw.get("std", 1.0))
        count += 1
    return count
