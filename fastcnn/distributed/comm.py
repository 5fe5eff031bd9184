"""The MPI communicator fastcnn trains over: mpi4py imported on demand, every collective bounded in time.

mpi4py is optional (``pip install 'fastcnn[mpi]'`` brings it and the ``mpich`` wheel's ``mpiexec``); nothing
imports it until a communicator is asked for.  :func:`launched_size` reads the environment that MPI launchers
set, so ``fastcnn train`` run without ``mpiexec`` never loads MPI.

Every collective of :class:`Communicator` is nonblocking underneath and polled: a rank that waits longer
than ``timeout`` seconds for the others (one of them died or hangs) prints a one-line error naming itself and
the collective, and ends the whole job with ``MPI_Abort`` instead of waiting forever.
"""

import os
import pickle
import sys
import time

import numpy as np

__all__ = ["MPI_EXTRA_HINT", "TIMEOUT_ENV", "DEFAULT_TIMEOUT", "Communicator", "require_mpi", "launched_size",
           "world"]

#: What to install when mpi4py is missing.
MPI_EXTRA_HINT = "pip install 'fastcnn[mpi]' (mpi4py and the mpich wheel's mpiexec; a system MPI works too)"
#: The environment variable that sets the collectives' timeout in seconds.
TIMEOUT_ENV = "FASTCNN_MPI_TIMEOUT"
#: Seconds a rank waits in one collective before it ends the job: long enough for a first-ever Numba
#: compilation on a slower rank (the first step's allreduce waits for it).
DEFAULT_TIMEOUT = 600.0
#: Environment variables that MPI launchers set to the number of processes (MPICH/Hydra, Open MPI, MVAPICH,
#: Slurm's srun with PMI/PMIx).
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def require_mpi(what="data-parallel training"):
    """Import and return ``mpi4py.MPI``; ImportError naming the ``[mpi]`` extra when it is missing."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"{what} needs mpi4py, which is not installed ({exc}); {MPI_EXTRA_HINT}") from None
    return MPI


def launched_size(environ=None):
    """The number of processes an MPI launcher started this one among, from the environment; 1 when none did.

    Read without importing MPI.  ``mpiexec -n 4 ...`` (MPICH's Hydra, Open MPI, MVAPICH) and ``srun`` set one
    of ``PMI_SIZE``, ``OMPI_COMM_WORLD_SIZE``, ``MV2_COMM_WORLD_SIZE``, ``PMIX_SIZE``, ``MPI_LOCALNRANKS``.
    """
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        try:
            size = int(environ.get(name, ""))
        except ValueError:
            continue
        if size >= 1:
            return size
    return 1


def world(timeout=None):
    """A :class:`Communicator` over ``MPI.COMM_WORLD`` when a launcher started more than one process, else None.

    None without a launcher (nothing is imported) and for ``mpiexec -n 1``; ImportError naming the extra
    when a launcher started several processes but mpi4py is missing.
    """
    if launched_size() <= 1:
        return None
    comm = Communicator(timeout=timeout)
    return comm if comm.size > 1 else None


def _timeout_from_env():
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"{TIMEOUT_ENV} must be positive, got {text!r}")
    return value


#: Seconds a rank waits between flushing its last words and ``MPI_Abort`` (:meth:`Communicator.abort`).
ABORT_GRACE = 0.5


class Communicator:
    """An mpi4py communicator with the few collectives data-parallel training needs, each bounded in time.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm, optional
        Default ``MPI.COMM_WORLD``.
    timeout : float, optional
        Seconds one collective may wait for the other ranks before this rank ends the job
        (``MPI_Abort``); default ``$FASTCNN_MPI_TIMEOUT``, else :data:`DEFAULT_TIMEOUT`.

    Attributes
    ----------
    rank, size : int
    wait_seconds : float
        Time spent inside :meth:`allreduce` so far (waiting for the slowest rank included); the benchmark
        reads it.
    allreduce_calls : int

    Examples
    --------
    Under ``mpiexec -n 2 python script.py``::

        from fastcnn.distributed import Communicator
        comm = Communicator()
        total = comm.allreduce(np.ones(3, np.float32))   # [2., 2., 2.] on both ranks
    """

    def __init__(self, comm=None, timeout=None):
        MPI = require_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = _timeout_from_env() if timeout is None else float(timeout)
        if not self.timeout > 0:
            raise ValueError(f"Communicator: timeout must be positive, got {timeout!r}")
        self.wait_seconds = 0.0
        self.allreduce_calls = 0

    @property
    def is_root(self):
        """Whether this is rank 0, the rank that prints and writes files."""
        return self.rank == 0

    # ------------------------------------------------------------------ collectives

    def allreduce(self, buf, op="sum"):
        """Reduce the C-contiguous array ``buf`` over all ranks, in place (``op``: "sum" or "max"); return it."""
        if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous):
            raise TypeError("Communicator.allreduce: buf must be a C-contiguous numpy array")
        start = time.perf_counter()
        mpi_op = {"sum": self.MPI.SUM, "max": self.MPI.MAX}[op]
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=mpi_op), "allreduce")
        self.wait_seconds += time.perf_counter() - start
        self.allreduce_calls += 1
        return buf

    def bcast_array(self, buf, root=0):
        """Overwrite the C-contiguous array ``buf`` with rank ``root``'s, in place; return it."""
        self._wait(self.comm.Ibcast(buf, root=root), "broadcast")
        return buf

    def bcast(self, obj, root=0):
        """Rank ``root``'s ``obj`` (any picklable object) on every rank."""
        payload = np.frombuffer(pickle.dumps(obj), dtype=np.uint8) if self.rank == root else None
        n = np.array([0 if payload is None else payload.size], dtype=np.int64)
        self.bcast_array(n, root)
        data = payload.copy() if payload is not None else np.empty(int(n[0]), dtype=np.uint8)
        self.bcast_array(data, root)
        return obj if self.rank == root else pickle.loads(data.tobytes())

    def allgather(self, obj):
        """Every rank's ``obj`` (picklable), as a list in rank order, on every rank."""
        payload = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        sizes[self.rank] = payload.size
        self.allreduce_int(sizes)
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        counts = [int(s) for s in sizes]
        self._wait(self.comm.Iallgatherv(payload, [out, (counts, [int(o) for o in offsets]), self.MPI.BYTE]),
                   "allgather")
        return [pickle.loads(out[o:o + s].tobytes()) for o, s in zip(offsets, sizes)]

    def allreduce_int(self, buf):
        """Sum an int64 array over all ranks, in place (not counted in :attr:`wait_seconds`)."""
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), "allreduce")
        return buf

    def any(self, flag):
        """Whether ``flag`` is true on any rank."""
        return bool(self.allreduce_int(np.array([1 if flag else 0], dtype=np.int64))[0])

    # ------------------------------------------------------------------ ending the job

    def abort(self, status=1, message=None):
        """Print ``message`` (one line on stderr, if given) and end every rank of the job with ``status``.

        The launcher forwards a rank's output through its own pipes and kills every rank on ``MPI_Abort``:
        what was written just before could be cut off on the way (seen on a loaded machine: the error line,
        or all but the first line of a traceback, missing), so the rank waits :data:`ABORT_GRACE` seconds
        after flushing."""
        if message:
            sys.stderr.write(message.rstrip("\n") + "\n")
        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(ABORT_GRACE)
        self.comm.Abort(int(status) or 1)

    def _wait(self, request, what):
        """Poll ``request`` until it completes: spinning briefly, then sleeping a little longer each time (so a
        waiting rank leaves the cores to the ranks still computing); past :attr:`timeout`, end the job."""
        if request.Test():
            return
        start = time.perf_counter()
        deadline = start + self.timeout
        pause = 0.0
        while not request.Test():
            now = time.perf_counter()
            if now - start < 2e-4:
                continue
            if now > deadline:
                self.abort(1, f"fastcnn: error: rank {self.rank}: no reply from the other ranks within "
                              f"{self.timeout:g} s in {what} (a rank died or hangs); ending the job "
                              f"(${TIMEOUT_ENV} sets the limit)")
            time.sleep(pause)
            pause = min(2 * pause + 1e-5, 5e-4)

    def __repr__(self):
        return f"Communicator(rank={self.rank}, size={self.size}, timeout={self.timeout:g})"
