"""Activations held channel-last with a zero border, passed from layer to layer in eval-mode chains.

The convolution plans ``channel_last``, ``winograd`` and ``winograd4`` copy
their input into a zero-padded channel-last layout on every call
(:func:`fastcnn.kernels.to_channel_last`).  In an eval-mode chain
(:mod:`fastcnn.layers.fuse`) a convolution whose consumer reads that layout
writes its output there directly, ReLU fused
(:func:`fastcnn.kernels.conv2d_forward_channellast_padded`,
:func:`fastcnn.kernels.conv2d_forward_winograd_padded`): a :class:`Padded`
activation, ``array[n, BORDER + i, BORDER + j, c] = x[n, c, i, j]`` with
zeros around.  Its readers: those convolutions (one with less padding than
the border reads from an offset origin), 2x2 max pooling
(:func:`fastcnn.kernels.max_pool2d_2x2_padded_kernel`), ReLU and the residual
sum (elementwise: the zero border stays zero), and anything else after
:meth:`Padded.nchw`.  Results are those of the NCHW chain up to float
rounding (the same sums, in the same order, for ``channel_last``).
"""

import contextlib
import math
import threading

import numpy as np

from .. import kernels
from .._shapes import pair
from ..kernels._workspace import WORKSPACE
from .pool import MaxPool2d

__all__ = ["BORDER", "Padded", "activation", "conv_plan", "is_scratch", "layouts", "max_pool", "pool_reads_padded",
           "scratch_activations"]

#: Zero rows and columns around a :class:`Padded` activation: what 3x3 convolutions with padding 1 read.
BORDER = 1


class Padded:
    """An (N, C, H, W) activation held as ``array`` (N, H + 2*BORDER, W + 2*BORDER, C), zero border.

    Parameters
    ----------
    array : ndarray
        Channel-last, C-contiguous, its border zero.
    """

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    @property
    def shape(self):
        """The NCHW shape ``(N, C, H, W)`` this activation stands for."""
        N, Hp, Wp, C = self.array.shape
        return (N, C, Hp - 2 * BORDER, Wp - 2 * BORDER)

    @property
    def dtype(self):
        return self.array.dtype

    @classmethod
    def of(cls, x):
        """``x`` (N, C, H, W), C-contiguous, copied into the padded layout (an :func:`activation` array)."""
        N, C, H, W = x.shape
        xp = activation((N, H + 2 * BORDER, W + 2 * BORDER, C), x.dtype)
        kernels.to_channel_last(x, xp, BORDER, BORDER)
        return cls(xp)

    def nchw(self):
        """This activation as an NCHW array (an :func:`activation` array)."""
        x = activation(self.shape, self.array.dtype)
        kernels.from_channel_last(self.array, x, BORDER, BORDER)
        return x


def pool_reads_padded(pool, shape):
    """Whether :func:`max_pool` runs ``pool`` on a :class:`Padded` input of per-example ``shape`` (C, H, W)."""
    if type(pool) is not MaxPool2d or pool.ceil_mode or min(shape[1:]) < 2:
        return False
    try:
        stride = pool.kernel_size if pool.stride is None else pool.stride
        return (pair(pool.kernel_size, "kernel_size"), pair(stride, "stride"), pair(pool.padding, "padding")) \
            == ((2, 2), (2, 2), (0, 0))
    except (TypeError, ValueError):  # the layer's own forward says what is wrong
        return False


def max_pool(x, relu):
    """2x2 stride-2 max pooling of the :class:`Padded` ``x`` into a new Padded, ``max(., 0)`` when ``relu``."""
    N, C, H, W = x.shape
    yp = activation((N, H // 2 + 2 * BORDER, W // 2 + 2 * BORDER, C), x.dtype)
    kernels.max_pool2d_2x2_padded_kernel(x.array, yp, BORDER, relu)
    return Padded(yp)


class _Scratch(threading.local):
    def __init__(self):
        self.depth, self.count, self.handed = 0, 0, set()


_SCRATCH = _Scratch()


@contextlib.contextmanager
def scratch_activations():
    """Within: :func:`activation` hands out arrays of the thread's kernel workspace, the n-th request of the
    outermost ``with`` always the same array for its shape, instead of new ones.

    An eval-mode chain's activations are dead once the next layer has read them, and fresh pages cost: a new
    activation array is as large as tens of megabytes at batch 256, and every first touch of its pages is a
    page fault (a few microseconds each on a virtual machine).  vgg_small's inference at batch 256, 1 thread,
    took 160 ms with its arrays reused and 160-260 ms without (more when other work ran between calls, which
    keeps the allocator returning the pages to the system).  The caller keeps nothing handed out past the
    ``with`` (the chain's result is copied when it is such an array: :func:`is_scratch`).  Nested ``with``
    (a model run inside a layer) continue the outer count, so they never reuse an array in use.
    """
    state = _SCRATCH
    if state.depth == 0:
        state.count, state.handed = 0, set()
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1


#: :func:`activation` takes arrays from the workspace from this size up; smaller ones come from the allocator's
#: free lists without page faults, and the workspace's bookkeeping (a few microseconds) would cost LeNet-5's
#: batch-1 ``predict`` more than it saves.
SCRATCH_MIN_BYTES = 1 << 18


def activation(shape, dtype):
    """An uninitialised array for an intermediate activation: from the workspace inside
    :func:`scratch_activations` (arrays of :data:`SCRATCH_MIN_BYTES` or more), else new."""
    state = _SCRATCH
    if state.depth == 0 or math.prod(shape) * dtype.itemsize < SCRATCH_MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    state.count += 1
    a = WORKSPACE.get(("eval_activation", state.count), shape, dtype)
    state.handed.add(id(a))
    return a


def is_scratch(a):
    """Whether ``a`` is, or is a view of, an array :func:`activation` handed out in the current
    :func:`scratch_activations`."""
    handed = _SCRATCH.handed
    while isinstance(a, np.ndarray):
        if id(a) in handed:
            return True
        a = a.base
    return False


def conv_plan(conv, x_shape, dtype, w=None, b=None, writes=True):
    """The prepared plan that runs ``conv`` from the :class:`Padded` layout (and into it): the layer's own, or
    when that cannot, ``writes`` is set and the layer's algorithm is "auto", ``channel_last``; else None.

    A layer whose output goes on padded and whose own plan cannot write it (a stem of 3 channels, which "auto"
    runs by rows) runs channel_last from its input copied there: 2-2.5x less time than its own plan, a ReLU and
    the copy after it (vgg_small's and resnet_small's stems, batch 256).
    """
    prepared = conv.prepared_for(x_shape, dtype, w, b)
    if prepared is None or prepared.reads_padded(BORDER):
        return prepared
    if not writes or conv.algorithm != "auto" or conv.groups != 1 or max(conv.dilation) != 1:
        return None
    try:
        channel_last = conv.prepared_for(x_shape, dtype, w, b, "channel_last")
    except ValueError:  # channel_last does not apply to this shape
        return None
    return channel_last if channel_last.reads_padded(BORDER) else None


def layouts(steps, layers, x_shape, dtype, last, first, steps_of):
    """Per step, whether its output goes on :class:`Padded` (a hint: every step takes either layout).

    A step's output goes padded when it can write that layout itself (a convolution with a plan that does, a
    2x2 max pooling of a padded input, a residual block of such convolutions; a ReLU passes its input's layout
    on) and what follows reads it: a convolution that does, a residual block whose paths start with one, or a
    2x2 max pooling whose own output is read so (pooling alone gains nothing from the layout); after the last
    step, ``last``.  ``first``: the chain's input is Padded.  ``steps`` are the chain's fused steps
    (:func:`fastcnn.layers.fuse.steps`, with indices into ``layers``), ``steps_of(layers)`` gives those of a
    nested chain.
    """
    shapes, shape = [], tuple(x_shape[1:])
    try:
        for kind, group in steps:
            shapes.append((x_shape[0], *shape))
            for index in group:
                if index is not None:
                    shape = tuple(layers[index].output_shape(shape))
    except ValueError:  # the layers will say what is wrong with the shape when they run
        return None
    follows, after = [False] * len(steps), last
    for i in range(len(steps) - 1, -1, -1):
        kind, group = steps[i]
        follows[i] = after
        if kind != "relu":
            after = _reads(kind, layers[group[0]], shapes[i], dtype, steps_of) and (kind != "layer" or after)
    out, padded = [], first
    for i, (kind, group) in enumerate(steps):
        if kind != "relu":
            padded = follows[i] and _writes(kind, layers[group[0]], shapes[i], dtype, padded, steps_of)
        out.append(padded)
    return tuple(out)


def _reads(kind, layer, x_shape, dtype, steps_of):
    """Whether the step of ``kind`` starting with ``layer`` runs on a :class:`Padded` input of ``x_shape``
    without converting it."""
    try:
        if len(x_shape) != 4:
            return False
        if kind == "conv":
            return layer.weight.dtype == dtype and conv_plan(layer, x_shape, dtype, writes=False) is not None
        if kind == "residual":
            if any(inner.training for inner in layer.walk()):
                return False
            return all(_first_reads(chain, x_shape, dtype, steps_of) for chain in (layer.block, layer.shortcut)
                       if chain)
        return kind == "layer" and pool_reads_padded(layer, x_shape[1:])
    except (TypeError, ValueError):  # the layer will say what is wrong when it runs
        return False


def _writes(kind, layer, x_shape, dtype, padded_input, steps_of):
    """Whether the step of ``kind`` starting with ``layer`` can write its output :class:`Padded` at no extra cost
    (given whether its input is Padded)."""
    try:
        if kind == "conv":
            return layer.weight.dtype == dtype and conv_plan(layer, x_shape, dtype) is not None
        if kind == "residual":
            return _reads(kind, layer, x_shape, dtype, steps_of)
        return kind == "layer" and padded_input and pool_reads_padded(layer, x_shape[1:])
    except (TypeError, ValueError):
        return False


def _first_reads(layers, x_shape, dtype, steps_of):
    steps = steps_of(layers)
    return bool(steps) and steps[0][0] != "relu" and _reads(steps[0][0], layers[steps[0][1][0]], x_shape, dtype,
                                                            steps_of)
