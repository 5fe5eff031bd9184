"""Every size formula, written once."""

import numbers


def pair(value, name):
    """Return ``value`` as a pair of ints; accept an int or a length-2 sequence.

    Raises TypeError naming ``name`` for anything else.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def conv_output_size(size, kernel, stride, padding, dilation=1):
    """Output length of a convolution along one axis: ``floor((i + 2p - d*(k - 1) - 1) / s) + 1``.

    With dilation ``d`` the kernel's taps are ``d`` apart and it spans
    ``d*(k - 1) + 1`` input pixels (:func:`dilated_kernel_size`); ``d = 1``
    gives ``floor((i + 2p - k) / s) + 1``.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def dilated_kernel_size(kernel, dilation):
    """Input pixels a kernel of ``kernel`` taps, ``dilation`` apart, spans: ``d*(k - 1) + 1``."""
    return dilation * (kernel - 1) + 1


def same_padding(kernel, dilation=1):
    """Zero padding ``(before, after)`` along one axis that keeps a stride-1 output as long as its input.

    PyTorch's ``padding="same"`` rule: the total ``d*(k - 1)`` is split in
    half, and when it is odd the extra pixel goes after (right or bottom).
    """
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def pool_output_size(size, kernel, stride, padding, ceil_mode):
    """Output length of a pooling window along one axis, with PyTorch's ceil-mode rule.

    ``floor((i + 2p - k) / s) + 1``, or with ``ceil_mode`` the ceiling; in ceil
    mode a last window that would start inside the right padding is dropped.
    """
    span = size + 2 * padding - kernel
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
    else:
        out = span // stride + 1
    return out
