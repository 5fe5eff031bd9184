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
