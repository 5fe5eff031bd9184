"""fastcnn: train small convolutional neural networks fast on multicore CPUs.

The compute is Numba: :mod:`fastcnn.kernels` holds checked numpy functions,
one module per op family, and the raw ``@njit`` kernels behind them; for a
convolution, :func:`fastcnn.kernels.conv2d_plan` says which algorithm runs
each pass and with how much scratch memory.  :mod:`fastcnn.layers` holds the
layer classes and :class:`fastcnn.Sequential` chains them; its ``fit`` runs
the loop of :mod:`fastcnn.training` (with :mod:`fastcnn.callbacks`) and the
optimizer and schedules of :mod:`fastcnn.optim`.  Ready-made networks are
in :mod:`fastcnn.models`, data loaders and normalisation in :mod:`fastcnn.data`;
``fastcnn.load`` reads a checkpoint, and the ``fastcnn`` command
(:mod:`fastcnn.cli`) trains, evaluates, summarises and benchmarks from a shell.
"""

from . import kernels, layers, models, optim
from .config import get_num_threads, set_num_threads
from .malloc import keep_freed_memory
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
    "keep_freed_memory",
]
