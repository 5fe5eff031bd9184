"""What machine and which library versions a benchmark ran on, for its report and JSON file."""

import os
import platform
import time

import numpy as np

from .timing import blas

__all__ = ["version", "torch_version", "cpu_model", "machine_info"]


def version(name):
    """The installed version of distribution ``name``, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def torch_version():
    """PyTorch's installed version (without importing it), or None."""
    return version("torch")


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo on Linux, else the platform's guess), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def machine_info(threads=None, torch=None):
    """CPU model, core counts, thread counts and library versions, for the JSON reports.

    Parameters
    ----------
    threads : int, optional
        The thread count the benchmark used (default: fastcnn's current count).
    torch : module, optional
        PyTorch, when it was measured: its thread count is recorded too.

    Returns
    -------
    dict
        ``cpu_model``, ``cpu_count``, ``usable_cores``, ``threads``,
        ``numba_max_threads``, ``blas_threads``, ``platform``, ``python``, the
        versions of fastcnn, numpy, numba, torch and matplotlib (None when not
        installed), ``numba_cache_dir``, ``fastcnn_cache``,
        ``fastcnn_fastmath``, ``time``, and ``torch_threads`` with ``torch``.
    """
    import numba

    import fastcnn

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads if threads is not None else fastcnn.get_num_threads(),
        "numba_max_threads": numba.config.NUMBA_NUM_THREADS,
        "blas_threads": blas().get(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "fastcnn": fastcnn.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": torch_version(),
        "matplotlib": version("matplotlib"),
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "fastcnn_cache": os.environ.get("FASTCNN_CACHE", "1") != "0",
        "fastcnn_fastmath": os.environ.get("FASTCNN_FASTMATH", "1") != "0",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info
