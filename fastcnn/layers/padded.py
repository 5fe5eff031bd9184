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
import threading

import numpy as np

from .. import kernels
from .._shapes import pair
from ..kernels._workspace import WORKSPACE
from .pool import MaxPool2d

__all__ = ["BORDER", "Padded", "activation", "is_scratch", "max_pool", "pool_reads_padded", "scratch_activations"]

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


def activation(shape, dtype):
    """An uninitialised array for an intermediate activation: from the workspace inside
    :func:`scratch_activations`, else new."""
    state = _SCRATCH
    if state.depth == 0:
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
