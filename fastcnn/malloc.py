"""Keep freed activation memory in the process between training steps (glibc's malloc thresholds).

A training step allocates and frees the same activation-sized arrays (a few MB each) every time.  With glibc's
default, dynamic thresholds, the heap's free top is returned to the operating system whenever it passes twice
the largest block freed so far, so the next step takes fresh pages again: resnet_small at batch 64 took about
1,800 page faults a step (7 MB), and on this project's virtual machines a fault costs microseconds, most with two
threads faulting at once.  With the fixed thresholds below it took 57 (the README's Performance section has the
times).

:func:`keep_freed_memory` sets them: blocks up to :data:`MMAP_THRESHOLD` come from the heap (glibc's own dynamic
threshold goes up to the same 32 MiB), and up to :data:`TRIM_THRESHOLD` of free heap top stays in the process.  It
changes nothing else and is process-wide, so fastcnn calls it only from its training and inference entry points
(:meth:`fastcnn.Sequential.fit`, ``evaluate``, ``predict``, the ``fastcnn`` command and ``fastcnn.bench``), never at
import.  It does nothing where the C library is not glibc, when the environment already sets glibc's malloc
options (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or ``malloc`` in ``GLIBC_TUNABLES``: yours win),
or with ``FASTCNN_KEEP_FREED_MEMORY=0``.
"""

import ctypes
import os
import platform
import threading

#: Blocks up to this size come from the heap, larger ones are mapped and unmapped on their own.
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap kept in the process, up to this much.
TRIM_THRESHOLD = 128 << 20

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_lock = threading.Lock()
_state = None


def state():
    """What :func:`keep_freed_memory` returned in this process, or ``"not asked"`` before its first call."""
    return _state or "not asked"


def keep_freed_memory():
    """Set glibc's malloc thresholds so that freed activation memory is reused, once per process; return what holds.

    Returns one of ``"set"`` (this call or an earlier one set them),
    ``"environment"`` (the environment's malloc options are left alone),
    ``"disabled"`` (``FASTCNN_KEEP_FREED_MEMORY=0``), ``"not glibc"`` or
    ``"failed"`` (mallopt refused).  Call it before a loop of your own
    around :meth:`~fastcnn.Sequential.forward` and ``backward``;
    ``fit``, ``evaluate`` and ``predict`` call it themselves.
    """
    global _state
    with _lock:
        if _state is None:
            _state = _apply()
        return _state


def _apply():
    if os.environ.get("FASTCNN_KEEP_FREED_MEMORY", "1") == "0":
        return "disabled"
    if any(name in os.environ for name in _ENVIRONMENT) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "environment"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "not glibc"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return "set" if ok else "failed"
