"""The one place for Numba options and the default dtype.

Every kernel decorator in :mod:`fastcnn.kernels` reads its options from here, so
changing how kernels are compiled (caching, fastmath, parallelism) is a one-line
change.  Environment variables, read once at import:

``FASTCNN_CACHE``
    ``1`` (default) caches compiled kernels on disk (see Numba's ``cache=True``;
    the location follows ``NUMBA_CACHE_DIR``), ``0`` compiles afresh in every
    process.
``FASTCNN_FASTMATH``
    ``1`` (default) lets LLVM reassociate and contract floating-point
    arithmetic so reductions vectorise; the flag set keeps NaN and infinity
    semantics (no ``nnan``/``ninf``).  ``0`` gives strict IEEE order.

Kernels whose sums must come out bit for bit the same in every compiled copy
(batch norm, the losses) use :func:`pjit_ordered`, without fast-math flags
whatever ``FASTCNN_FASTMATH`` says: a prange kernel loaded from Numba's cache
runs differently optimised code than the same kernel compiled in the process,
and a sum the optimiser may reorder then differs between the two.
"""

import os

import numba
import numpy as np

DEFAULT_DTYPE = np.float32

CACHE = os.environ.get("FASTCNN_CACHE", "1") != "0"

# 'reassoc' and 'contract' let reductions vectorise and use FMA; 'nsz' and 'arcp'
# are harmless here.  'nnan' and 'ninf' are left out so NaN/inf propagate as in
# numpy (fit relies on that to stop on a diverged loss).
FASTMATH = (
    {"contract", "reassoc", "nsz", "arcp"}
    if os.environ.get("FASTCNN_FASTMATH", "1") != "0"
    else False
)

# Options for elementwise and serial kernels, and for parallel ones.
JIT = dict(nogil=True, cache=CACHE, fastmath=FASTMATH, error_model="numpy")
PARALLEL_JIT = dict(JIT, parallel=True)
# Parallel kernels that add in the order written (see the module docstring).
ORDERED_PARALLEL_JIT = dict(PARALLEL_JIT, fastmath=False)


def njit(*args, **kwargs):
    """``numba.njit`` with fastcnn's serial options (see module docstring)."""
    return numba.njit(*args, **{**JIT, **kwargs})


def pjit(*args, **kwargs):
    """``numba.njit`` with fastcnn's parallel options (see module docstring)."""
    return numba.njit(*args, **{**PARALLEL_JIT, **kwargs})


def pjit_ordered(*args, **kwargs):
    """``numba.njit`` with fastcnn's parallel options but no fast-math flags (see module docstring)."""
    return numba.njit(*args, **{**ORDERED_PARALLEL_JIT, **kwargs})


def set_num_threads(n):
    """Set the number of threads fastcnn's parallel kernels use.

    Parameters
    ----------
    n : int
        Between 1 and ``numba.config.NUMBA_NUM_THREADS`` (the count fixed at
        import, by default the number of cores; set the environment variable
        ``NUMBA_NUM_THREADS`` before importing to raise it).

    Examples
    --------
    >>> import fastcnn
    >>> fastcnn.set_num_threads(1)
    >>> fastcnn.get_num_threads()
    1
    """
    limit = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if not 1 <= n <= limit:
        raise ValueError(
            f"set_num_threads: n must be between 1 and {limit} (NUMBA_NUM_THREADS), got {n}; "
            "set NUMBA_NUM_THREADS before importing fastcnn to allow more"
        )
    numba.set_num_threads(int(n))


def get_num_threads():
    """Return the number of threads fastcnn's parallel kernels use."""
    return numba.get_num_threads()
