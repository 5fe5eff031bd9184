"""Layers: thin classes that hold Parameters, cache what backward needs, and call kernels.

Every layer has ``forward(x)``, ``backward(dy, need_input_grad=True) -> dx``,
``output_shape(per_example_shape)`` and the tree methods of
:class:`~fastcnn.layers.base.Layer`: ``children()``, ``parameters()``,
``buffers()``, ``train()`` / ``eval()``.  :mod:`fastcnn.layers.chain` runs a
list of layers (a Sequential's, a Residual's paths); :mod:`fastcnn.layers.init`
holds the initialisers.
"""

from . import chain  # noqa: F401  (fastcnn.layers.chain: the chain Sequential and Residual share)
from .activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer, Parameter
from .conv import Conv2d
from .dense import Dropout, Flatten, Linear
from .init import manual_seed
from .norm import BatchNorm1d, BatchNorm2d, Normalize
from .pool import AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d, MaxPool2d
from .local import LocallyConnected2d, count_connections
from .residual import Residual

__all__ = [
    "Layer",
    "Parameter",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "LeakyReLU",
    "Softmax",
    "BatchNorm2d",
    "Normalize",
    "BatchNorm1d",
    "Flatten",
    "Linear",
    "Dropout",
    "manual_seed",
    "Residual",
    "LocallyConnected2d",
    "count_connections",
]
