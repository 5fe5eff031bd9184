"""A chain of layers, run forward in order and backward in reverse: the body of Sequential and of Residual's paths.

The functions take the list of layers itself, read afresh on every call:
``Sequential.layers`` and ``Residual.block`` are public lists that may be
edited.  Three rules apply inside every chain, nested ones included:

* **ReLU before MaxPool2d (or GlobalMaxPool2d) runs after it.**
  ``maxpool(relu(x)) == relu(maxpool(x))`` exactly, because ReLU never
  decreases: the same maximum is picked (or one of equal value), and its
  gradient is routed where it was (zero where the maximum is not positive).
  Pooling first leaves the ReLU a quarter of the elements (2x2 pooling), one
  per plane (global max pooling), in both passes.  See :func:`run_order`.
* **In training, a BatchNorm or Residual directly followed by a ReLU runs
  it in its own pass** (a class that sets ``relu_fusable = True`` in its own
  body: ``BatchNorm2d``, ``BatchNorm1d``, ``Residual``, not their subclasses;
  an exact ``ReLU`` at the next index, running next): the layer is called
  with ``relu=True`` and its backward takes the ReLU's gradient, so the ReLU
  layer itself is not called and keeps nothing.  The results are the same
  bits as the two layers one after the other; the activation makes one
  round trip through memory fewer.  (Eval mode fuses its own way:
  :mod:`~fastcnn.layers.fuse`.)  See :func:`fused_relu`.
* **The input gradient is computed only when asked for.**  ``backward(...,
  need_input_grad=False)`` stops at the first layer that has parameters,
  telling it ``need_input_grad=False`` (a convolution or linear layer then
  skips ``dx``), and never calls the parameter-free layers before it.  A
  model asks for this at its first layer; a residual block inside a model is
  asked for its input gradient, so its chains compute it.
"""

from . import fuse
from .activation import ReLU
from .base import unique_parameters
from .pool import GlobalMaxPool2d, MaxPool2d

__all__ = ["backward", "forward", "fused_relu", "output_shapes", "parameters", "run_order"]

#: The pooling layers a ReLU directly before them runs after (exact classes).
_MAX_POOLS = (MaxPool2d, GlobalMaxPool2d)


def run_order(layers):
    """The order the layers run in: indices into ``layers``, a ReLU directly followed by a max pooling swapped.

    Parameters
    ----------
    layers : sequence of Layer

    Returns
    -------
    list of int
        A permutation of ``range(len(layers))``; only exact ``ReLU`` and
        ``MaxPool2d`` or ``GlobalMaxPool2d`` instances (not subclasses) are
        swapped, each pair once.

    Examples
    --------
    >>> from fastcnn.layers import Conv2d, MaxPool2d, ReLU
    >>> run_order([Conv2d(1, 2, 3), ReLU(), MaxPool2d(2), ReLU(), MaxPool2d(2)])
    [0, 2, 1, 4, 3]
    """
    n = len(layers)
    order = list(range(n))
    i = 0
    while i < n - 1:
        if type(layers[i]) is ReLU and type(layers[i + 1]) in _MAX_POOLS:
            order[i], order[i + 1] = i + 1, i
            i += 2
        else:
            i += 1
    return order


def fused_relu(layers, order):
    """The positions in ``order`` whose layer runs the ReLU after it (at the next position) in its own pass.

    Parameters
    ----------
    layers : sequence of Layer
    order : list of int
        :func:`run_order` of ``layers``.

    Returns
    -------
    set of int
        Positions ``j`` with ``layers[order[j]]`` of a class that sets
        ``relu_fusable = True`` in its own body (BatchNorm2d, BatchNorm1d,
        Residual) and ``layers[order[j + 1]]`` an exact ReLU at the next
        index (a ReLU swapped behind a max pooling does not count).

    Examples
    --------
    >>> from fastcnn.layers import BatchNorm2d, Conv2d, MaxPool2d, ReLU
    >>> layers = [Conv2d(1, 2, 3), BatchNorm2d(2), ReLU(), BatchNorm2d(2), ReLU(), MaxPool2d(2)]
    >>> order = run_order(layers)
    >>> order, sorted(fused_relu(layers, order))
    ([0, 1, 2, 3, 5, 4], [1])
    """
    return {j for j in range(len(order) - 1)
            if vars(type(layers[order[j]])).get("relu_fusable") and order[j + 1] == order[j] + 1
            and type(layers[order[j + 1]]) is ReLU}


def forward(layers, x):
    """Run ``x`` through the layers in :func:`run_order` and return the output.

    In training, the pairs of :func:`fused_relu` run as one call.  When no
    layer is in training mode the chain runs fused
    (:func:`fastcnn.layers.fuse.forward`: BatchNorm folded into the layer
    before it, activations in place, one thread for tiny batches): the same
    result up to float rounding.
    """
    if not any(layer.training for layer in layers):
        return fuse.forward(layers, x)[0]
    order = run_order(layers)
    fused = fused_relu(layers, order)
    j = 0
    while j < len(order):
        layer = layers[order[j]]
        if j in fused and layer.training:
            x = layer.forward(x, relu=True)
            layers[order[j + 1]]._x = None  # the ReLU keeps nothing: its backward runs inside the layer's
            j += 2
        else:
            x = layer.forward(x)
            j += 1
    return x


def backward(layers, dy, need_input_grad=True):
    """Backpropagate ``dy`` (the gradient w.r.t. the chain's output) through the layers in reverse run order.

    Every layer adds into its parameters' ``.grad``.

    Parameters
    ----------
    layers : sequence of Layer
        The layers of the last :func:`forward` call.
    dy : ndarray
    need_input_grad : bool
        True: return the gradient w.r.t. the chain's input.  False: stop at
        the first layer with parameters, call it with
        ``need_input_grad=False`` and return None (the parameter-free layers
        before it are not called).

    Returns
    -------
    ndarray or None
    """
    first = -1
    if not need_input_grad:
        first = next((i for i, layer in enumerate(layers) if layer.parameters()), 0)
    order = run_order(layers)
    skip = {j + 1 for j in fused_relu(layers, order) if layers[order[j]].relu_fused}
    d = dy
    for j in reversed(range(len(order))):
        i = order[j]
        if j in skip:
            continue  # the ReLU ran inside the layer before it: so does its backward
        if i == first:
            layers[i].backward(d, need_input_grad=False)
            return None
        d = layers[i].backward(d)
    return d


def output_shapes(layers, input_shape, describe):
    """Per-example output shape after each layer.

    Parameters
    ----------
    layers : sequence of Layer
    input_shape : tuple of int
        Per-example shape (no batch axis) of the chain's input.
    describe : callable
        ``describe(i, layer, shape)`` -> str starts the message of the
        ValueError raised when layer ``i`` cannot take ``shape``; the layer's
        own reason follows after a colon.

    Returns
    -------
    list of tuple
        One shape per layer, in list order (the reordering of
        :func:`run_order` does not change any shape after a pair).
    """
    shapes, shape = [], tuple(input_shape)
    for i, layer in enumerate(layers):
        try:
            shape = tuple(layer.output_shape(shape))
        except ValueError as e:
            raise ValueError(f"{describe(i, layer, shape)}: {e}") from None
        shapes.append(shape)
    return shapes


def parameters(layers):
    """Every layer's parameters (recursively), in order, each Parameter once."""
    return unique_parameters([layer.parameters() for layer in layers])
