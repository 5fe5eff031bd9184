"""Data-parallel training over MPI, Horovod's pattern: ``mpiexec -n 4 fastcnn train ...`` or :func:`fit`.

Each process (rank) holds the whole model and data set; for every global batch, in the order one process
draws, each rank computes the gradient of its shard, one allreduce of a flat buffer sums them, and every rank
applies the same update.  mpi4py is optional: ``pip install 'fastcnn[mpi]'`` brings it and the ``mpich``
wheel's ``mpiexec``; this package imports it only when a :class:`Communicator` is made.

==================  ==============================================================================
``comm``            :class:`Communicator` (collectives bounded by a timeout, ``MPI_Abort`` on a hang),
                    :func:`world`, :func:`launched_size`, :func:`require_mpi`
``shard``           :func:`shard_bounds`, :func:`shard_sizes` (how a global batch splits),
                    :class:`FlatBuffer` (every gradient in one array); no MPI
``replicas``        :class:`DataParallel`: the per-step hooks of :func:`fastcnn.training.fit`, Dropout
                    masks of the global batch, synchronised BatchNorm
``agree``           :func:`check_same`, :class:`SettingsMismatch`: ranks started differently are refused
``faults``          :func:`run_everywhere` (set-up: one message when a rank fails), :func:`abort_on_error`
                    (training: an exception ends the job)
``train``           :func:`fit`, :func:`evaluate`, :func:`broadcast_state`
==================  ==============================================================================

Examples
--------
``examples/distributed_mnist.py``, run with ``mpiexec -n 2 python examples/distributed_mnist.py``.

>>> from fastcnn.distributed import shard_sizes
>>> shard_sizes(64, 3)
[22, 21, 21]
"""

from .agree import SettingsMismatch, check_same, fingerprint
from .comm import DEFAULT_TIMEOUT, MPI_EXTRA_HINT, TIMEOUT_ENV, Communicator, launched_size, require_mpi, world
from .replicas import DataParallel
from .shard import FlatBuffer, shard_bounds, shard_sizes
from .faults import abort_on_error, run_everywhere
from .train import as_communicator, broadcast_state, evaluate, fit

__all__ = ["Communicator", "DataParallel", "FlatBuffer", "SettingsMismatch", "DEFAULT_TIMEOUT", "MPI_EXTRA_HINT",
           "TIMEOUT_ENV", "abort_on_error", "as_communicator", "broadcast_state", "check_same", "evaluate",
           "fingerprint", "fit", "launched_size", "require_mpi", "run_everywhere", "shard_bounds", "shard_sizes",
           "world"]
