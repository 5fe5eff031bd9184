"""``fastcnn.distributed.fit``: :func:`fastcnn.training.fit` over MPI ranks, and what surrounds it.

Before the first step every rank checks that the others were started with the same settings
(:func:`~fastcnn.distributed.agree.check_same`) and takes rank 0's state: parameters, BatchNorm statistics,
optimizer and schedule state, the weight-initialisation generator (which unseeded Dropout layers draw from)
and an ``Augment``'s generator.  Then the epochs run with a
:class:`~fastcnn.distributed.replicas.DataParallel`; an exception on one rank after the first collective
ends the whole job (:func:`abort_on_error`), since the other ranks would otherwise wait for it.
"""

import secrets

from .. import training
from ..layers import init
from ..optim import SGD
from .agree import check_same, describe_fit
from .comm import Communicator, world
from .faults import abort_on_error
from .replicas import DataParallel, broadcast_buffers, broadcast_parameters, evaluate_sharded

__all__ = ["fit", "evaluate", "broadcast_state", "as_communicator"]


def as_communicator(comm=None):
    """``comm`` as a :class:`Communicator`, or None for a single process.

    None is ``MPI.COMM_WORLD`` when an MPI launcher started several processes (:func:`world`), else None
    (mpi4py is not even imported); an mpi4py communicator is wrapped; a Communicator is returned as is.
    """
    if isinstance(comm, Communicator):
        return comm
    if comm is None:
        return world()
    return Communicator(comm)


def fit(model, x, y, epochs=1, batch_size=32, optimizer=None, loss="cross_entropy", validation_data=None,
        shuffle=True, verbose=True, seed=None, callbacks=None, schedule=None, initial_epoch=0, augment=None,
        comm=None, sync_batchnorm=False, check=True):
    """Train ``model`` data-parallel over the MPI ranks of ``comm``; the arguments of :meth:`fastcnn.Sequential.fit`.

    Run the same script on every rank (``mpiexec -n 4 python train.py``).  Every rank passes the whole data set
    and the same arguments; ``batch_size`` is the *global* batch, of which each rank computes a contiguous
    shard (``numpy.array_split``'s sizes: the first ``M % size`` ranks one example more).  The batches come in
    the order one process draws for ``seed``, and the shards' gradients are summed with one allreduce of a flat
    buffer per step, so after each epoch the weights equal one process's up to float summation order, for any
    number of ranks.  Dropout masks and ``augment`` are drawn for the whole global batch on every rank (the
    same generators), each rank applying its shard's rows: the same randomness per example as one process.

    Parameters
    ----------
    model, x, y, epochs, batch_size, optimizer, loss, validation_data, shuffle, seed, schedule, initial_epoch,
    augment
        As :meth:`fastcnn.Sequential.fit`; the same on every rank (checked).  ``validation_data`` is split over
        the ranks and its loss and accuracy aggregated.  Without ``seed``, rank 0 draws one for everybody.
    verbose : bool
        Rank 0 prints; the other ranks never do.
    callbacks : list, optional
        Run on every rank with the same (aggregated) logs; when any rank's asks to stop, every rank stops.
        Pass callbacks that write files on rank 0 only (``callbacks=[...] if comm.rank == 0 else []``).
    comm : fastcnn.distributed.Communicator or mpi4py communicator, optional
        Default ``MPI.COMM_WORLD`` when an MPI launcher started several processes, else none: with no
        communicator or a single rank this is :func:`fastcnn.training.fit` (the same script runs alone).
    sync_batchnorm : bool
        BatchNorm layers normalise with the global batch's statistics (two small allreduces per layer and step;
        the same result as one process).  Default False: each rank's shard's statistics, as PyTorch's
        DistributedDataParallel, with rank 0's running statistics broadcast to every rank after each epoch.
    check : bool
        Refuse (SettingsMismatch, on every rank) ranks started with different models, data or settings.

    Returns
    -------
    dict of lists
        The history, the same on every rank.

    Raises
    ------
    SettingsMismatch
        On every rank, before any step, when the ranks disagree.
    ImportError
        When started by a launcher with several processes but mpi4py is missing (naming
        ``pip install 'fastcnn[mpi]'``).

    Examples
    --------
    ``examples/distributed_mnist.py``; in short, under ``mpiexec -n 2 python script.py``::

        from fastcnn import distributed
        comm = distributed.Communicator()
        history = distributed.fit(model, x, y, epochs=2, batch_size=64, seed=0, comm=comm)
        if comm.rank == 0:
            model.save("model.npz")
    """
    comm = as_communicator(comm)
    kwargs = dict(epochs=epochs, batch_size=batch_size, loss=loss, validation_data=validation_data,
                  shuffle=shuffle, callbacks=callbacks, schedule=schedule, initial_epoch=initial_epoch,
                  augment=augment)
    if comm is None or comm.size == 1:
        return training.fit(model, x, y, optimizer=optimizer, verbose=verbose, seed=seed, **kwargs)
    if optimizer is None:
        optimizer = SGD(model.parameters(), lr=0.01)
    if check:
        check_same(comm, describe_fit(model, x, y, optimizer, schedule, augment, validation_data, epochs=epochs,
                                      batch_size=batch_size, loss=loss, shuffle=shuffle, seed=seed,
                                      initial_epoch=initial_epoch, sync_batchnorm=bool(sync_batchnorm)))
    if seed is None and shuffle:
        seed = comm.bcast(secrets.randbits(62) if comm.is_root else None)
    broadcast_state(comm, model, optimizer, schedule, augment)
    with DataParallel(comm, model, optimizer, sync_batchnorm=sync_batchnorm) as dp:
        with abort_on_error(comm, active=lambda: dp.started):
            return training.fit(model, x, y, optimizer=optimizer, verbose=verbose and comm.is_root, seed=seed,
                                replicas=dp, **kwargs)


def evaluate(model, x, y, comm=None, loss="cross_entropy"):
    """``model.evaluate(x, y)`` with the examples split over the ranks; the same dict on every rank.

    Every rank passes the whole ``x, y``; rank ``r`` evaluates its contiguous shard and one allreduce adds
    the sums.  Returns ``{"loss": ..., "accuracy": ...}`` (accuracy for cross-entropy only).
    """
    comm = as_communicator(comm)
    if comm is None or comm.size == 1:
        return model.evaluate(x, y, loss=loss)
    with abort_on_error(comm):
        return evaluate_sharded(comm, model, x, y, loss)


def broadcast_state(comm, model, optimizer=None, schedule=None, augment=None):
    """Give every rank rank 0's training state: parameters and layer buffers (one broadcast each), the
    optimizer's and schedule's state, the weight-initialisation generator and ``augment.rng`` when it has one.
    """
    broadcast_parameters(comm, model)
    broadcast_buffers(comm, model)
    state = {
        "optimizer": optimizer.state_dict() if callable(getattr(optimizer, "state_dict", None)) else None,
        "schedule": schedule.state_dict() if callable(getattr(schedule, "state_dict", None)) else None,
        "init_rng": init.generator().bit_generator.state,
        "augment_rng": getattr(getattr(augment, "rng", None), "bit_generator", None),
    }
    if state["augment_rng"] is not None:
        state["augment_rng"] = state["augment_rng"].state
    state = comm.bcast(state if comm.is_root else None)
    if comm.is_root:
        return
    if state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    if state["schedule"] is not None:
        schedule.load_state_dict(state["schedule"])
    init.generator().bit_generator.state = state["init_rng"]
    if state["augment_rng"] is not None:
        augment.rng.bit_generator.state = state["augment_rng"]
