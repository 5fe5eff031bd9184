"""Argument checks shared by the public kernel functions.

Each check raises ValueError or TypeError whose message names the function,
the argument, what was expected and what came.
"""

import numbers

import numpy as np

from .._shapes import pair

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(a, name, fn, ndim=None, dtype=None):
    """Return ``a`` as a C-contiguous float32/float64 ndarray, after checking it.

    ``ndim`` may be an int or a tuple of allowed ints; ``dtype``, if given, is
    the dtype ``a`` must already have (the dtype of an array it combines with).
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{fn}: {name} must be float32 or float64, got {a.dtype}; "
            f"convert it first, e.g. {name}.astype(np.float32)"
        )
    if dtype is not None and a.dtype != dtype:
        raise TypeError(
            f"{fn}: {name} has dtype {a.dtype} but the input is {np.dtype(dtype)}; "
            "all float arguments must share one dtype"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if a.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{fn}: {name} must have {want} dimensions, got shape {a.shape}")
    return np.ascontiguousarray(a)


def check_shape(a, shape, name, fn):
    """Raise ValueError unless ``a.shape == shape``."""
    if a.shape != tuple(shape):
        raise ValueError(f"{fn}: {name} must have shape {tuple(shape)}, got {a.shape}")


def positive_pair(value, name, fn):
    """An int-or-pair argument that must be >= 1 (kernel sizes, strides)."""
    try:
        v = pair(value, name)
    except TypeError as e:
        raise TypeError(f"{fn}: {e}") from None
    if v[0] <= 0 or v[1] <= 0:
        raise ValueError(f"{fn}: {name} must be positive, got {value!r}")
    return v


def nonnegative_pair(value, name, fn):
    """An int-or-pair argument that must be >= 0 (paddings)."""
    try:
        v = pair(value, name)
    except TypeError as e:
        raise TypeError(f"{fn}: {e}") from None
    if v[0] < 0 or v[1] < 0:
        raise ValueError(f"{fn}: {name} must be non-negative, got {value!r}")
    return v


def check_x_shape(x_shape, fn, name="x_shape", dims="(N, C, H, W)"):
    """A 4-tuple of positive ints (N, C, H, W), or the ``dims`` named."""
    try:
        shape = tuple(int(d) for d in x_shape)
        ok = len(shape) == 4 and all(isinstance(d, numbers.Integral) for d in x_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or min(shape) <= 0:
        raise ValueError(f"{fn}: {name} must be 4 positive ints {dims}, got {x_shape!r}")
    return shape


def as_labels(labels, n, num_classes, fn):
    """Integer class labels of length ``n`` with values in [0, num_classes), as int64."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{fn}: labels must be integers, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{fn}: labels must have shape ({n},) to match logits, got {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(
            f"{fn}: labels must be in [0, {num_classes}) for {num_classes} classes, got {bad}"
        )
    return np.ascontiguousarray(labels, dtype=np.int64)
