"""Layers: thin classes that hold Parameters, cache what backward needs, and call kernels.

Every layer has ``forward(x)``, ``backward(dy) -> dx``, ``parameters()``,
``train()`` / ``eval()`` and ``output_shape(per_example_shape)``.
"""

from .activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer, Parameter
from .conv import Conv2d
from .dense import Dropout, Flatten, Linear
from .init import manual_seed
from .norm import BatchNorm1d, BatchNorm2d, Normalize
from .pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .local import LocallyConnected2d, count_connections
from .residual import Residual

__all__ = [
    "Layer",
    "Parameter",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "GlobalAvgPool2d",
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
