"""fastcnn: train small convolutional neural networks fast on multicore CPUs.

The compute is Numba: ``fastcnn.kernels`` holds checked numpy functions and
the raw ``@njit`` kernels behind them; ``fastcnn.layers`` the layer classes;
``fastcnn.Sequential`` trains them with ``fastcnn.optim.SGD``.
"""

from . import kernels, layers, models, optim
from .config import get_num_threads, set_num_threads
from .layers import manual_seed
from .model import Sequential
from .serialize import load

__version__ = "0.1.0"

__all__ = [
    "Sequential",
    "load",
    "kernels",
    "layers",
    "models",
    "optim",
    "manual_seed",
    "set_num_threads",
    "get_num_threads",
]
