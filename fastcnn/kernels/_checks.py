"""Argument checks shared by the public kernel functions.

Each check raises ValueError or TypeError whose message names the function,
the argument, what was expected and what came.
"""

import functools
import math
import numbers
import os

import numpy as np

from .._shapes import pair

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: The largest kernel size, stride or padding accepted: the raw kernels compute with int64 indices, and sums
#: such as ``H + 2 * padding`` must not overflow there.
MAX_SIZE = 2**31 - 1


@functools.lru_cache(maxsize=1)
def memory_bytes():
    """Bytes of physical memory of this machine (``2**40`` where the system does not say); read once."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 2**40


def check_allocation(shape, itemsize, what, fn):
    """Raise ValueError when an array of ``shape`` with ``itemsize``-byte items needs more than this machine's memory.

    Called before allocating an array whose size comes from arguments (an
    ``x_shape``, a padding), so that an impossible request is refused with a
    message naming ``fn`` instead of numpy's MemoryError.
    """
    n = math.prod(int(d) for d in shape)
    if n * itemsize > memory_bytes():
        raise ValueError(
            f"{fn}: {what} of shape {tuple(shape)} would need {n * itemsize / 2**30:.3g} GiB, more than this "
            f"machine's {memory_bytes() / 2**30:.3g} GiB of memory; check the sizes, stride and padding"
        )


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


def _bounded_pair(value, name, fn, lowest, want):
    try:
        v = pair(value, name)
    except TypeError as e:
        raise TypeError(f"{fn}: {e}") from None
    if min(v) < lowest:
        raise ValueError(f"{fn}: {name} must be {want}, got {value!r}")
    if max(v) > MAX_SIZE:
        raise ValueError(f"{fn}: {name} must be at most {MAX_SIZE}, got {value!r}")
    return v


def positive_pair(value, name, fn):
    """An int-or-pair argument that must be >= 1 (kernel sizes, strides), and at most :data:`MAX_SIZE`."""
    return _bounded_pair(value, name, fn, 1, "positive")


def nonnegative_pair(value, name, fn):
    """An int-or-pair argument that must be >= 0 (paddings), and at most :data:`MAX_SIZE`."""
    return _bounded_pair(value, name, fn, 0, "non-negative")


def check_flag(value, name, fn):
    """A bool argument (``True``/``False``, numpy bools, or the ints 0 and 1), as a Python bool.

    Anything else (``"False"``, None, 2.5) raises TypeError: its truth value
    would silently pick a mode.
    """
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{fn}: {name} must be True or False, got {value!r} ({type(value).__name__})")


def finite_real(value, name, fn):
    """A finite real number (not a bool), as a Python float; ValueError otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    try:
        f = float(value) if ok else math.nan
    except OverflowError:  # an int beyond the float range
        f = math.inf
    if not math.isfinite(f):
        raise ValueError(f"{fn}: {name} must be a finite real number, got {value!r}")
    return f


def shape_ints(x_shape, fn, name="x_shape", dims="(N, C, H, W)", ndim=4, minimum=1):
    """A tuple of ``ndim`` ints (not bools) of at least ``minimum``, or ValueError naming ``fn`` and ``name``."""
    try:
        ok = len(x_shape) == ndim and all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                                          for d in x_shape)
        shape = tuple(int(d) for d in x_shape) if ok else ()
    except TypeError:
        ok = False
    if not ok or min(shape) < minimum:
        kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f"(>= {minimum})"
        raise ValueError(f"{fn}: {name} must be {ndim} {kind} ints {dims}, got {x_shape!r}")
    return shape


def check_x_shape(x_shape, fn, name="x_shape", dims="(N, C, H, W)", ndim=4):
    """A tuple of ``ndim`` positive ints (N, C, H, W), or the ``dims`` named, of an array that fits in memory.

    "Fits" counts 4 bytes an element (float32, the smaller float dtype): see
    :func:`check_allocation`.
    """
    shape = shape_ints(x_shape, fn, name, dims, ndim)
    check_allocation(shape, 4, f"an array of {name}", fn)
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
