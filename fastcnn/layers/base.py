"""Parameter, the Layer protocol and the registry of layer classes.

A layer is a node of a tree: a plain layer (Conv2d, ReLU, ...) has no
sub-layers; a container (Residual) holds chains of them and says so through
:meth:`Layer.branches`.  Everything that has to reach every layer (the
parameters, the non-trainable buffers that checkpoints save, ``train()`` /
``eval()``, initialisers, the serializer) walks that tree through the methods
below, so no code needs to know which layers contain others.
"""


import numpy as np

from .._util import check_positive_int  # noqa: F401  (re-exported for the layer modules)
from ..config import DEFAULT_DTYPE

#: Layer classes by class name, filled as the classes are defined; checkpoints name layers by these keys.
LAYER_CLASSES = {}


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : ndarray
        The values, updated in place by optimizers.
    grad : ndarray
        Same shape and dtype; layers add into it during ``backward`` and
        ``optimizer.zero_grad()`` clears it, as in PyTorch.
    """

    def __init__(self, data):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


def _register(cls):
    """Add ``cls`` to :data:`LAYER_CLASSES` unless its name is private, it is local, or the name is taken.

    A class defined inside a function (``<locals>`` in its qualified name)
    is left out: a checkpoint naming it could not be loaded in another
    process.  A second class with a taken name does not replace the first
    (re-running the same definition, as ``importlib.reload`` does, does).
    """
    name = cls.__name__
    if name.startswith("_") or "<locals>" in cls.__qualname__:
        return
    known = LAYER_CLASSES.get(name)
    if known is None or (known.__module__, known.__qualname__) == (cls.__module__, cls.__qualname__):
        LAYER_CLASSES[name] = cls


class Layer:
    """Base class of every layer: ``forward(x)``, ``backward(dy, need_input_grad) -> dx``, and the layer tree.

    ``forward`` in training mode keeps what ``backward`` needs; in eval mode it
    keeps nothing.  ``output_shape(shape)`` maps a per-example input shape
    (without the batch axis) to the output shape, raising ValueError for a
    shape the layer cannot take.

    A subclass overrides what applies to it:

    - ``forward``, ``backward`` and, when the shape changes, ``output_shape``;
    - ``own_parameters()`` (its weight, then bias) and ``own_buffers()``
      (named non-trainable arrays such as BatchNorm's running statistics);
    - ``branches()`` for a container of other layers;
    - ``get_config()`` (its constructor arguments) when it has any.

    Defining a subclass registers it in :data:`LAYER_CLASSES` under its class
    name, which is how checkpoints name layers (``class MyLayer(Layer,
    register=False)`` opts out; private and function-local classes are not
    registered).
    """

    training = True

    #: Constructor arguments that hold layers (lists of ``{"class": ..., "config": ...}``
    #: entries in ``get_config()``); the serializer builds them recursively.
    nested_config_keys = ()

    def __init_subclass__(cls, register=True, **kwargs):
        super().__init_subclass__(**kwargs)
        if register:
            _register(cls)

    # ------------------------------------------------------------------ computation

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy, need_input_grad=True):
        """Add the parameters' gradients into their ``.grad`` and return ``dx``.

        With ``need_input_grad=False`` (the first layer of a model, whose input
        is the data) a layer may skip computing ``dx`` and return None: Conv2d,
        Linear and LocallyConnected2d skip it, and every built-in layer returns
        None.
        """
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def output_shape(self, input_shape):
        """Per-example output shape for a per-example ``input_shape``."""
        return tuple(input_shape)

    # ------------------------------------------------------------------ the tree

    def branches(self):
        """The sub-layers as named chains that each read this layer's input: ``((name, [layer, ...]), ...)``.

        Empty for a plain layer; a :class:`~fastcnn.layers.Residual` gives
        ``(("block", [...]), ("shortcut", [...]))``.
        """
        return ()

    def named_children(self):
        """``[(name, layer), ...]`` for the direct sub-layers, named ``<branch><index>`` (``"block1"``)."""
        return [(f"{name}{j}", layer) for name, layers in self.branches() for j, layer in enumerate(layers)]

    def children(self):
        """The direct sub-layers, in :meth:`branches` order (empty for a plain layer)."""
        return [layer for _, layers in self.branches() for layer in layers]

    def walk(self):
        """This layer, then every layer nested in it, depth first in :meth:`children` order."""
        yield self
        for child in self.children():
            yield from child.walk()

    def own_parameters(self):
        """The layer's own trainable parameters (weight, then bias), without its sub-layers'."""
        return []

    def parameters(self):
        """The own parameters, then each child's (recursively), each Parameter once."""
        children = self.children()
        if not children:
            return list(self.own_parameters())
        return unique_parameters([self.own_parameters()] + [child.parameters() for child in children])

    def own_buffers(self):
        """The layer's own non-trainable state by name (``{}`` for most layers).

        The arrays themselves, not copies: writing into them (as loading a
        checkpoint does) changes the layer.
        """
        return {}

    def buffers(self):
        """Own buffers, then each child's as ``"<child name>_<buffer name>"``, recursively.

        The order is stable (own, then children in :meth:`named_children`
        order); checkpoints store the buffers under these names.
        """
        out = dict(self.own_buffers())
        for child_name, child in self.named_children():
            for name, buf in child.buffers().items():
                out[f"{child_name}_{name}"] = buf
        return out

    def train(self, mode=True):
        """Training mode for this layer and every layer in it; returns ``self``."""
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        """Evaluation mode (``train(False)``); returns ``self``."""
        return self.train(False)

    # ------------------------------------------------------------------ description

    def get_config(self):
        """The constructor arguments, as a JSON-able dict (``{}`` for a layer without any).

        ``type(layer)(**layer.get_config())`` builds the same architecture (with
        fresh weights); :mod:`fastcnn.serialize` stores it in checkpoints.
        """
        return {}

    def _cached(self, value, what):
        if value is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called without a training-mode forward "
                f"(no cached {what}); call forward(x) in train() mode first"
            )
        return value

    def __repr__(self):
        return f"{type(self).__name__}()"


def unique_parameters(groups):
    """The Parameters of several lists, in order, each object once (a shared layer is counted once)."""
    seen, out = set(), []
    for group in groups:
        for p in group:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def check_dtype(dtype, owner):
    dtype = np.dtype(DEFAULT_DTYPE if dtype is None else dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dtype}")
    return dtype


def as_input(x, dtype, owner, ndim):
    """Convert ``x`` to a C-contiguous array of the layer's dtype (a no-op when it already is).

    ``owner`` (the layer itself) names the caller in error messages; it is
    formatted only when there is an error, not on every call.
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: input must be a numeric array, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{owner}: input must have {ndim} dimensions, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=dtype)


def format_args(pairs):
    """``name=value`` for the arguments that differ from their defaults."""
    return ", ".join(f"{name}={value!r}" for name, value, default in pairs if value != default)
