"""The checked geometry of a convolution call: shapes, stride, padding (numbers, ``"same"``, ``"valid"``),
dilation and groups, as one :class:`~fastcnn.kernels.conv_plan.ConvGeometry`.

Every checked convolution function starts here.  Accepted argument sets are
remembered (:func:`checked_geometry`), so a call with a shape seen before
skips the checks; refused arguments are checked, and refused, every time.
"""

import numbers

from .._shapes import conv_output_size, dilated_kernel_size, same_padding
from ._checks import nonnegative_pair, positive_pair, shape_ints
from .conv_plan import ConvGeometry


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, fn="conv2d", *, dilation=1, groups=1):
    """Output shape (N, K, P, Q) of a convolution, after checking the geometry.

    ``P = floor((H + 2*ph - dil_h*(R - 1) - 1) / sh) + 1`` and likewise Q
    (``padding="same"``: P = H).  Raises ValueError for shapes that are not 4
    positive ints (an empty axis included: no convolution function accepts
    one), a channel mismatch, channels not divisible by ``groups`` or a
    kernel larger than the padded input.
    """
    g, _ = checked_geometry(x_shape, w_shape, stride, padding, fn, dilation, groups)
    return (g.N, g.K, g.P, g.Q)


def _padding(padding, kernel, stride, dilation, fn):
    """``((ph, pw), (eh, ew))``: symmetric zero padding and the extra bottom/right rows "same" adds (0 or 1)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"{fn}: padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"{fn}: padding='same' needs stride 1 (as in PyTorch), got stride {stride}; "
                             "give the padding as numbers for a strided convolution")
        (th, bh), (tw, bw) = (same_padding(k, d) for k, d in zip(kernel, dilation))
        return (th, tw), (bh - th, bw - tw)
    return nonnegative_pair(padding, "padding", fn), (0, 0)


def _groups(groups, fn):
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"{fn}: groups must be an int, got {type(groups).__name__} ({groups!r})")
    if groups < 1:
        raise ValueError(f"{fn}: groups must be at least 1, got {groups}")
    return int(groups)


def _check_channels(C, K, Cw, G, x_shape, w_shape, fn):
    shapes = f"(x shape {tuple(x_shape)}, weight shape {tuple(w_shape)})"
    if C % G:
        raise ValueError(f"{fn}: in_channels ({C}) must be divisible by groups ({G}) {shapes}")
    if K % G:
        raise ValueError(f"{fn}: out_channels ({K}, the weight's first axis) must be divisible by groups ({G}) "
                         f"{shapes}")
    if C != Cw * G:
        per_group = "" if G == 1 else f" ({Cw} per group x groups={G})"
        raise ValueError(f"{fn}: input has {C} channels but weight expects {Cw * G}{per_group} {shapes}")


def _tagged(value):
    """``value`` as a hashable key, or None for anything but ints, strings and tuples or lists of them.

    Only exact ``int`` counts: ``True`` and ``1.0`` equal ``1`` but are other
    arguments (refused or converted), so they get None and are checked every time.
    """
    t = type(value)
    if t is int or t is str:
        return value
    if t is tuple or t is list:
        items = tuple(map(_tagged, value))
        return None if None in items else (t is list, items)
    return None


#: Checked geometries by their arguments (type-tagged): a checked call with a shape seen before skips the checks
#: (about 15 us of Python per call, as much as a small layer's kernel).  Only accepted arguments are stored.
_GEOMETRIES = {}


def checked_geometry(x_shape, w_shape, stride, padding, fn, dilation=1, groups=1):
    """The checked :class:`ConvGeometry` and the extra bottom/right zero rows ``(eh, ew)`` of "same" padding.

    The geometry is that of the input with those rows added: a convolution
    with them runs on a zero-extended copy of x (``conv._extend``).  Results
    for accepted arguments are remembered (:data:`_GEOMETRIES`, at most 256).
    """
    key = _tagged((x_shape, w_shape, stride, padding, dilation, groups))
    found = None if key is None else _GEOMETRIES.get(key)
    if found is not None:
        return found
    found = _check_geometry(x_shape, w_shape, stride, padding, fn, dilation, groups)
    if key is not None:
        if len(_GEOMETRIES) >= 256:
            _GEOMETRIES.clear()
        _GEOMETRIES[key] = found
    return found


def _check_geometry(x_shape, w_shape, stride, padding, fn, dilation, groups):
    """:func:`checked_geometry`, computed and checked."""
    sh, sw = positive_pair(stride, "stride", fn)
    dil = positive_pair(dilation, "dilation", fn)
    G = _groups(groups, fn)
    N, C, H, W = x_shape = shape_ints(x_shape, fn)
    K, Cw, R, S = w_shape = shape_ints(w_shape, fn, "w_shape", "(K, C/groups, R, S)")
    _check_channels(C, K, Cw, G, x_shape, w_shape, fn)
    (ph, pw), (eh, ew) = _padding(padding, (R, S), (sh, sw), dil, fn)
    dil_h, dil_w = dil[0] if R > 1 else 1, dil[1] if S > 1 else 1  # a 1-wide kernel ignores its dilation
    RE, SE = dilated_kernel_size(R, dil_h), dilated_kernel_size(S, dil_w)
    if RE > H + eh + 2 * ph or SE > W + ew + 2 * pw:
        spans = "" if (RE, SE) == (R, S) else f" with dilation {(dil_h, dil_w)} spans {RE}x{SE} and"
        raise ValueError(
            f"{fn}: kernel {R}x{S}{spans} is larger than the padded input "
            f"{H + 2 * ph}x{W + 2 * pw} (input {H}x{W}, padding {(ph, pw)})"
        )
    H, W = H + eh, W + ew
    P, Q = conv_output_size(H, R, sh, ph, dil_h), conv_output_size(W, S, sw, pw, dil_w)
    return ConvGeometry(N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dil_h, dil_w, G), (eh, ew)
