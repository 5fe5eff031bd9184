"""Eval-mode fusion: a chain of layers run for inference in fewer, cheaper steps.

When every layer of a chain is in eval mode, :func:`fastcnn.layers.chain.forward`
(and so ``Sequential.forward`` and ``predict``) hands the chain to
:func:`forward`, which gives the same outputs as running the layers one by
one, up to float rounding, with less work:

* **BatchNorm folded into the layer before it.**  A ``Conv2d`` (or ``Linear``)
  directly followed by a ``BatchNorm2d`` (``BatchNorm1d``) runs as one layer
  with weights ``w' = w * scale`` and bias ``b' = (b - running_mean) * scale +
  beta``, where ``scale = gamma / sqrt(running_var + eps)`` (per output
  channel).  They are computed on every call, from the current weights and
  statistics (K*C*R*S numbers: nothing to invalidate when an optimizer or a
  checkpoint changes them), in float64 and rounded once to the layer's dtype.
* **Activations in place.**  A ``ReLU`` whose input was made by the chain
  itself (not the caller's array, nor a view of it) overwrites that input
  instead of allocating; a residual block adds its shortcut into its block's
  output in place, and the ``ReLU`` that follows the block applies there too.
* **Small products through Linear by dot products.**  Up to
  :data:`ROWS_MAX_BATCH` rows, or fewer than :data:`ROWS_MAX_OUTPUTS` outputs,
  run :func:`fastcnn.kernels.linear_forward_rows_kernel` (serial, no
  transposed copy of the weights, the ReLU after it fused in).
* **Tiny batches on one thread.**  A batch of at most :data:`SERIAL_MAX_MACS`
  multiply-adds (LeNet-5 on a few images) runs with the thread count set to 1
  for the call: waking the thread pool for each of a dozen tiny kernels costs
  more than the work.
* **Nothing kept for backward** (eval mode keeps nothing anyway).

The ReLU-before-max-pooling swap of :func:`fastcnn.layers.chain.run_order` holds
here as well.  Layers this module does not know run their own ``forward``.
Training mode never comes here: its forward and backward are unchanged.

Examples
--------
>>> from fastcnn.layers import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, fuse
>>> layers = [Conv2d(1, 2, 3), BatchNorm2d(2), ReLU(), MaxPool2d(2), Flatten(), Linear(2, 1), ReLU()]
>>> [(kind, [type(layer).__name__ for layer in group if layer]) for kind, group in fuse.steps(layers)]
... # doctest: +NORMALIZE_WHITESPACE
[('conv', ['Conv2d', 'BatchNorm2d']), ('layer', ['MaxPool2d']), ('relu', ['ReLU']), ('layer', ['Flatten']),
 ('linear', ['Linear', 'ReLU'])]
"""

import threading
import weakref

import numpy as np

from .. import kernels
from ..config import get_num_threads, set_num_threads
from .activation import ReLU
from .base import as_input
from .conv import Conv2d
from .dense import Dropout, Flatten, Linear
from .norm import BatchNorm1d, BatchNorm2d
from .padded import BORDER, Padded, activation, conv_plan, is_scratch, max_pool, pool_reads_padded, scratch_activations
from .padded import layouts as padded_layouts
from .pool import AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d, MaxPool2d

__all__ = ["PARALLEL_MIN_ELEMENTS", "ROWS_MAX_BATCH", "ROWS_MAX_OUTPUTS", "SERIAL_MAX_MACS", "folded_weights",
           "forward", "multiply_adds", "relu_", "residual", "run", "steps"]

#: Below this many elements an in-place ReLU runs in numpy, on the calling thread: waking the
#: thread pool for a parallel kernel costs more than the work.
PARALLEL_MIN_ELEMENTS = 1 << 12

#: Up to this many rows, or with fewer than ``ROWS_MAX_OUTPUTS`` outputs (a classifier's last layer, narrower
#: than the micro-kernel's 16 columns), a Linear layer runs serial dot products (``linear_forward_rows_kernel``:
#: no copy of the weights, no thread pool, no BLAS threads); otherwise the register-blocked parallel kernel.
ROWS_MAX_BATCH = 8
ROWS_MAX_OUTPUTS = 16

#: A forward pass of at most this many multiply-adds (all images of the batch) runs on one thread:
#: each parallel kernel wakes the thread pool, which costs more than it saves on work this small
#: (LeNet-5 on one image is about 0.42 million), and far more when other processes hold the cores.
SERIAL_MAX_MACS = 2_000_000

#: Layers whose ``forward`` (in eval mode) always returns a new array: the chain owns their output.
_FRESH_OUTPUT = (Conv2d, Linear, BatchNorm1d, BatchNorm2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d)


def folded_weights(layer, norm):
    """Weight and bias of ``layer`` (Conv2d or Linear) with the eval-mode BatchNorm ``norm`` folded in.

    ``norm(layer(x)) == layer'(x)`` with ``w' = w * s`` (``s`` broadcast over
    each output channel's weights) and ``b' = (b - running_mean) * s + beta``,
    ``s = gamma / sqrt(running_var + eps)`` (``gamma = 1``, ``beta = 0`` when
    the norm is not affine; ``b = 0`` when the layer has no bias).  Computed
    in float64 from the current values and rounded once to the layer's dtype,
    by :func:`fastcnn.kernels.batch_norm_fold_kernel` (one serial pass, cheap
    enough to redo on every call: nothing to invalidate).

    Parameters
    ----------
    layer : Conv2d or Linear
    norm : BatchNorm2d, BatchNorm1d or None
        None returns the layer's own arrays (``bias`` None when it has none).

    Returns
    -------
    weight : ndarray, the layer's weight shape and dtype
    bias : ndarray (out_channels,) or None
    """
    w = layer.weight.data
    b = None if layer.bias is None else layer.bias.data
    if norm is None:
        return w, b
    wf, bf = np.empty_like(w), np.empty(len(w), dtype=w.dtype)
    stats = norm.running_mean, norm.running_var
    affine = (norm.weight.data, norm.bias.data) if norm.affine else stats
    kernels.batch_norm_fold_kernel(w.reshape(len(w), -1), stats[0] if b is None else b, *affine, *stats,
                                   float(norm.eps), b is not None, norm.affine, wf.reshape(len(w), -1), bf)
    return wf, bf


def _is(layer, cls):
    return type(layer) is cls


def steps(layers):
    """The fused steps of a chain in eval mode: ``[(kind, layers), ...]`` in the order they run.

    ``kind`` is ``"conv"`` (a Conv2d, the BatchNorm2d after it or None, the
    ReLU after those or None), ``"linear"`` (a Linear, its BatchNorm1d or
    None, its ReLU or None), ``"relu"`` (a ReLU, run in place when the chain
    owns its input), ``"residual"`` (a Residual block and the ReLU after it,
    or None) or ``"layer"`` (any other layer, run by its ``forward``).  Only
    exact classes fuse (a subclass may change what its forward does).
    """
    return [(kind, tuple(None if i is None else layers[i] for i in group)) for kind, group in _index_steps(layers)]


def _index_steps(layers):
    """:func:`steps` with indices into ``layers`` in place of the layers."""
    from . import chain  # chain and residual import this module
    from .residual import Residual

    order = chain.run_order(layers)
    out, j, n = [], 0, len(order)
    while j < n:
        i = order[j]
        layer = layers[i]
        k = order[j + 1] if j + 1 < n else None
        nxt = None if k is None else layers[k]
        if _is(layer, Conv2d) or _is(layer, Linear):
            norm_cls = BatchNorm2d if _is(layer, Conv2d) else BatchNorm1d
            norm = k if nxt is not None and _is(nxt, norm_cls) and nxt.num_features == layer.weight.shape[0] \
                else None
            j += 1 if norm is None else 2
            relu = order[j] if j < n and _is(layers[order[j]], ReLU) else None
            j += 0 if relu is None else 1
            out.append(("conv" if _is(layer, Conv2d) else "linear", (i, norm, relu)))
        elif _is(layer, Residual):
            relu = nxt is not None and _is(nxt, ReLU)
            out.append(("residual", (i, k if relu else None)))
            j += 2 if relu else 1
        else:
            out.append(("relu" if _is(layer, ReLU) else "layer", (i,)))
            j += 1
    return out


def multiply_adds(layers, input_shape):
    """Multiply-adds of one example through the convolutions and linear layers of a chain (nested ones included).

    Parameters
    ----------
    layers : sequence of Layer
    input_shape : tuple of int
        Per-example input shape (no batch axis).

    Returns
    -------
    int
        ``sum(K*P*Q * C/groups*R*S)`` over the Conv2d layers and ``in*out`` over the
        Linear layers: the arithmetic that dominates a forward pass.

    Examples
    --------
    >>> from fastcnn.layers import Conv2d, Flatten, Linear
    >>> multiply_adds([Conv2d(1, 2, 3), Flatten(), Linear(8, 1)], (1, 4, 4))
    80
    """
    total, shape = 0, tuple(input_shape)
    for layer in layers:
        out = tuple(layer.output_shape(shape))
        if isinstance(layer, (Conv2d, Linear)):
            total += int(np.prod(out)) * layer.weight.data[0].size
        for _, inner in layer.branches():
            total += multiply_adds(inner, shape)
        shape = out
    return total


class _StepCache:
    """The index steps of the chains seen last, by list identity, checked against the list's current layers.

    The layers are held by weak references (an entry keeps no model alive)
    and compared one by one on every call, so an edited list is seen.  Each
    entry also remembers :func:`multiply_adds` per input shape (it only
    chooses the thread count, never the result).
    """

    SLOTS = 64

    def __init__(self):
        self.entries = {}
        self.lock = threading.Lock()

    def entry(self, layers):
        """``(weak references, index steps, {input shape: multiply-adds})`` for the list ``layers``."""
        found = self.entries.get(id(layers))
        if found is not None and len(found[0]) == len(layers) \
                and all(ref() is layer for ref, layer in zip(found[0], layers)):
            return found
        try:
            found = (tuple(weakref.ref(layer) for layer in layers), _index_steps(layers), {})
        except TypeError:  # a layer class without weak references: not cached
            return ((), _index_steps(layers), {})
        with self.lock:
            while len(self.entries) >= self.SLOTS:
                self.entries.pop(next(iter(self.entries)))
            self.entries[id(layers)] = found
        return found

    def steps(self, layers):
        return self.entry(layers)[1]

    def multiply_adds(self, layers, input_shape, entry=None):
        known = (entry or self.entry(layers))[2]
        macs = known.get(input_shape)
        if macs is None:
            macs = known[input_shape] = multiply_adds(layers, input_shape)
        return macs


_STEPS = _StepCache()


def relu_(a):
    """``max(a, 0)`` written into ``a`` itself (NaN stays NaN); returns ``a``."""
    flat = a.reshape(-1)
    if flat.size >= PARALLEL_MIN_ELEMENTS:
        kernels.relu_forward_kernel(flat, flat)
    else:
        np.maximum(flat, flat.dtype.type(0), out=flat)
    return a


def _relu(x, owned):
    if isinstance(x, Padded):  # the zero border stays zero
        return Padded(relu_(x.array) if owned else kernels.relu_forward(x.array))
    if owned:
        return relu_(x)
    return kernels.relu_forward(x)


def _nchw(x, owned):
    """``(x, owned)`` with a :class:`Padded` x converted to NCHW (a new, owned array)."""
    return (x.nchw(), True) if isinstance(x, Padded) else (x, owned)


class _Tail:
    """A residual sum (and the ReLU after it) for the last step of a block's path to fuse, when it can."""

    __slots__ = ("res", "relu", "used")

    def __init__(self, res, relu):
        self.res, self.relu, self.used = res, relu, False


def _conv(x, conv, norm, relu, padded=False, tail=None):
    """The fused conv step; its output is :class:`Padded` when ``padded`` (the next step reads that layout).
    ``tail`` (a :class:`_Tail`, for a step with no ReLU of its own): added in the kernel's output loop when the
    output is Padded of the shortcut's shape (``tail.used`` then says so)."""
    w, b = folded_weights(conv, norm)
    prepared = None
    if isinstance(x, Padded) or padded:
        if not isinstance(x, Padded):
            x = as_input(x, conv.weight.dtype, conv, 4)
        prepared = conv_plan(conv, x.shape, x.dtype, w, b, padded) if x.dtype == w.dtype else None
    if prepared is not None:
        xp = x if isinstance(x, Padded) else Padded.of(x)
        bias = conv.zero_bias(prepared) if b is None else b
        g = prepared.g
        if (padded and tail is not None and tail.res.dtype == w.dtype
                and tail.res.shape == (g.N, g.P + 2 * BORDER, g.Q + 2 * BORDER, g.K)):
            tail.used = True
            y = prepared.forward_padded(xp.array, BORDER, w, bias, BORDER, tail.relu, activation, tail.res)
            return Padded(y)
        y = prepared.forward_padded(xp.array, BORDER, w, bias, BORDER if padded else None, relu is not None,
                                    activation)
        return Padded(y) if padded else y
    y = conv.forward_with(_nchw(x, False)[0], w, b, activation)
    y = y if relu is None else relu_(y)
    return Padded.of(y) if padded else y


def _linear(x, linear, norm, relu):
    x = as_input(_nchw(x, False)[0], linear.weight.dtype, linear, 2)
    w, b = folded_weights(linear, norm)
    if len(x) > ROWS_MAX_BATCH and linear.out_features >= ROWS_MAX_OUTPUTS:
        y = kernels.linear_forward(x, w, b)
        return y if relu is None else relu_(y)
    if x.shape[1] != linear.in_features:
        raise ValueError(f"{linear!r}: x has {x.shape[1]} features but the layer expects {linear.in_features} "
                         f"(x shape {x.shape})")
    y = np.empty((len(x), linear.out_features), dtype=w.dtype)
    kernels.linear_forward_rows_kernel(x, w, np.zeros(len(w), w.dtype) if b is None else b, y, relu is not None)
    return y


def residual(x, block, relu=None, padded=False):
    """A :class:`~fastcnn.layers.Residual` block in eval mode: ``block(x) + shortcut(x)``, both paths fused.

    The sum is written into the block path's output when the path made it,
    with ``relu`` (a ReLU layer, or None) applied in the same pass
    (:func:`fastcnn.kernels.residual_add_kernel` on both threads for large
    arrays).  With ``padded`` both paths end in the :class:`~fastcnn.layers.padded.Padded`
    layout when they can, and so does the sum: then the shortcut runs first
    and the block path's last convolution adds it, and the ReLU, in its
    output loop.  ``x`` may be Padded.
    """
    s = tail = None
    if padded:
        s = _run_chain(block.shortcut, x, False, True)[0] if block.shortcut else x
        tail = _Tail(s.array, relu is not None) if isinstance(s, Padded) else None
    h, h_owned = _run_chain(block.block, x, False, padded, tail=tail)
    if tail is not None and tail.used:
        return h
    if s is None:
        s = _run_chain(block.shortcut, x, False, isinstance(h, Padded))[0] if block.shortcut else x
    if isinstance(h, Padded) and isinstance(s, Padded) and h.array.shape == s.array.shape and h_owned \
            and h.dtype == s.dtype and h.array.size >= PARALLEL_MIN_ELEMENTS:
        flat = h.array.reshape(-1)  # the borders: 0 + 0, through the ReLU still 0
        kernels.residual_add_kernel(flat, s.array.reshape(-1), flat, relu is not None)
        return h
    (h, h_owned), s = _nchw(h, h_owned), _nchw(s, False)[0]
    if h.shape != s.shape:
        block.output_shape(x.shape[1:])  # raises with the per-example shapes
        raise ValueError(f"Residual: block output {h.shape} and shortcut output {s.shape} differ")
    if (h_owned and h.dtype == s.dtype and h.size >= PARALLEL_MIN_ELEMENTS and h.flags.c_contiguous
            and s.flags.c_contiguous):
        flat = h.reshape(-1)
        kernels.residual_add_kernel(flat, s.reshape(-1), flat, relu is not None)
        return h
    if h_owned and np.result_type(h, s) == h.dtype:
        h += s
    else:
        h = h + s
    return relu_(h) if relu is not None else h


def forward(layers, x):
    """Run the eval-mode chain ``layers`` on the batch ``x`` (N, ...), on one thread when the work is small.

    :func:`run` with the thread count lowered to 1 for the call when the
    whole batch costs at most :data:`SERIAL_MAX_MACS` multiply-adds (see
    :func:`multiply_adds`); the result does not depend on it.

    Returns
    -------
    y : ndarray
    owned : bool
        As :func:`run` returns them.
    """
    if not isinstance(x, np.ndarray) or x.ndim < 1:
        return run(layers, x)
    entry = _STEPS.entry(layers)
    try:
        macs = len(x) * _STEPS.multiply_adds(layers, x.shape[1:], entry)
    except ValueError:
        macs = SERIAL_MAX_MACS + 1  # the layers will say what is wrong with the shape
    threads = get_num_threads()
    if macs > SERIAL_MAX_MACS or threads == 1:
        return _run_outermost(layers, x, False, entry)
    set_num_threads(1)
    try:
        return _run_outermost(layers, x, False, entry)
    finally:
        set_num_threads(threads)


def run(layers, x, owned=False):
    """Run the eval-mode chain ``layers`` on ``x`` in fused :func:`steps`.

    Parameters
    ----------
    layers : sequence of Layer, all in eval mode
    x : ndarray
        The chain's input; never written to unless ``owned``.
    owned : bool
        True when ``x`` is a scratch array the chain may overwrite.

    Returns
    -------
    y : ndarray
        The chain's output, as ``chain.forward`` computes it layer by layer
        (up to float rounding).
    owned : bool
        Whether ``y`` is an array the chain made (not ``x`` or a view of it,
        unless ``x`` was owned).
    """
    return _run_outermost(layers, x, owned)


#: Below this many bytes of input (LeNet-5 on a few images) a chain runs without reused activation arrays
#: (:func:`_run_outermost`): its arrays are small and fresh ones cost nothing, while the bookkeeping costs about
#: a tenth of LeNet-5's batch-1 ``predict``.
SCRATCH_MIN_INPUT_BYTES = 1 << 16


def _run_outermost(layers, x, owned, entry=None):
    """:func:`_run_chain` with its intermediate activations in reused arrays (:func:`~fastcnn.layers.padded.
    scratch_activations`) for inputs of :data:`SCRATCH_MIN_INPUT_BYTES` or more; the NCHW result is the chain's
    own array or the caller's, never one of those."""
    if not isinstance(x, np.ndarray) or x.nbytes < SCRATCH_MIN_INPUT_BYTES:
        return _nchw(*_run_chain(layers, x, owned, False, entry))
    with scratch_activations():
        y, owned = _nchw(*_run_chain(layers, x, owned, False, entry))
        if is_scratch(y):
            y = y.copy()
    return y, owned


def _run_chain(layers, x, owned, padded, entry=None, tail=None):
    """:func:`run` that may take and return :class:`Padded` activations: its output is Padded when ``padded``
    and the last step can make it."""
    entry = entry or _STEPS.entry(layers)
    layouts = None
    if isinstance(x, (np.ndarray, Padded)) and len(x.shape) == 4:
        first = isinstance(x, Padded)
        key = ("padded", x.shape, x.dtype, get_num_threads(), padded, first)
        layouts = entry[2].get(key)
        if layouts is None:
            layouts = padded_layouts(entry[1], layers, x.shape, x.dtype, padded, first, _STEPS.steps)
            entry[2][key] = layouts
    return _run(entry[1], layers, x, owned, layouts, tail)


def _run(steps, layers, x, owned, layouts=None, tail=None):
    """:func:`run` on the chain's index steps (from :class:`_StepCache`).

    ``layouts[i]``: step i's output is :class:`Padded` (:func:`fastcnn.layers.padded.layouts`); ``tail``: for
    the last step, when a conv step with no ReLU (see :func:`_conv`).
    """
    for i, (kind, group) in enumerate(steps):
        layer = layers[group[0]]
        padded = layouts is not None and layouts[i]
        if kind == "conv":
            fuse_tail = tail if i == len(steps) - 1 and group[2] is None else None
            x, owned = _conv(x, layer, _at(layers, group[1]), _at(layers, group[2]), padded, fuse_tail), True
        elif kind == "linear":
            x, owned = _linear(x, layer, _at(layers, group[1]), _at(layers, group[2])), True
        elif kind == "relu":
            x, owned = _relu(x, owned), True
        elif kind == "residual":
            x, owned = _residual_step(x, layer, _at(layers, group[1]), padded)
        elif isinstance(x, Padded) and pool_reads_padded(layer, x.shape[1:]):
            x, owned = max_pool(x, False), True
            if not padded:
                x = x.nchw()
        else:
            x, owned = _nchw(x, owned)
            y = layer.forward(x)
            if type(layer) in _FRESH_OUTPUT:
                owned = True
            elif not ((_is(layer, Flatten) or _is(layer, Dropout)) and owned):
                owned = False
            x = y
    return x, owned


def _at(layers, i):
    return None if i is None else layers[i]


def _residual_step(x, block, relu, padded=False):
    """A residual block (fused unless a layer inside is in training mode) and the ReLU after it."""
    if any(layer.training for layer in block.walk()):
        x = _nchw(x, False)[0]
        y = block.forward(x)
        return (y, False) if relu is None else (relu.forward(y), True)
    return residual(x, block, relu, padded), True
