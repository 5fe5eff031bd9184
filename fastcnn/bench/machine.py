"""What machine and which library versions a benchmark ran on, for its report and JSON file."""

import os
import platform
import time

import numpy as np

from .. import malloc
from .._cpuload import busy_cores  # noqa: F401  (re-exported by fastcnn.bench)
from .timing import blas

__all__ = ["version", "torch_version", "cpu_model", "vector_info", "vector_text", "machine_info"]


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


def vector_info():
    """The host's vector width as LLVM (and so Numba) sees it, and the width of fastcnn's micro-kernels.

    Returns
    -------
    dict
        ``llvm_cpu`` (``llvmlite.binding.get_host_cpu_name()``, e.g.
        ``"znver4"``), ``avx2``, ``fma``, ``avx512f``, ``avx512vl`` (bools
        from ``get_host_cpu_features()``; None when LLVM cannot tell),
        ``float32_lanes`` (float32 lanes of the widest vectors among those:
        16 with AVX-512F, 8 with AVX2, else 4; None when unknown),
        ``numba_cpu_name`` (the ``NUMBA_CPU_NAME`` override Numba compiles
        for, None when unset), ``microkernel_bits`` (``fastcnn.config.VECTOR_BITS``,
        the vector width the matrix-multiply micro-kernels were built for),
        ``microkernel_lanes`` (its float32 lanes) and ``vector_bits_setting``
        (the ``FASTCNN_VECTOR_BITS`` environment variable, None when unset).
    """
    import numba
    from llvmlite import binding

    from .. import config

    try:
        features = binding.get_host_cpu_features()
    except RuntimeError:  # LLVM cannot read this CPU's features
        features = {}
    flags = {name: (bool(features[name]) if name in features else None)
             for name in ("avx2", "fma", "avx512f", "avx512vl")}
    lanes = None if not features else 16 if flags["avx512f"] else 8 if flags["avx2"] else 4
    bits = getattr(config, "VECTOR_BITS", None)
    return {"llvm_cpu": binding.get_host_cpu_name(), **flags, "float32_lanes": lanes,
            "numba_cpu_name": getattr(numba.config, "CPU_NAME", None) or None,
            "microkernel_bits": bits, "microkernel_lanes": bits // 32 if bits else None,
            "vector_bits_setting": os.environ.get("FASTCNN_VECTOR_BITS") or None}


def vector_text(v):
    """One line about a :func:`vector_info` dict: LLVM's CPU, AVX2/FMA and AVX-512F, lanes."""
    def yes(flag):
        return "?" if flag is None else "yes" if flag else "no"

    kernel = "width unknown"
    if v.get("microkernel_lanes"):
        kernel = f"{v['microkernel_lanes']} float32 lanes ({v['microkernel_bits']}-bit)"
        if v.get("vector_bits_setting"):
            kernel += f", FASTCNN_VECTOR_BITS={v['vector_bits_setting']}"
    forced = f" (Numba forced to {v['numba_cpu_name']})" if v.get("numba_cpu_name") else ""
    return (f"vector width: LLVM host CPU {v['llvm_cpu']}{forced}; AVX2 {yes(v['avx2'])}, FMA {yes(v['fma'])}, "
            f"AVX-512F {yes(v['avx512f'])}: {v['float32_lanes'] or '?'} float32 lanes; "
            f"fastcnn micro-kernels: {kernel}")


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
        ``fastcnn_fastmath``, ``time``, ``vector`` (:func:`vector_info`), ``malloc``
        (:func:`fastcnn.malloc.state`: whether freed memory is kept in fastcnn's process), and
        ``torch_threads`` with ``torch``.
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
        "vector": vector_info(),
        "malloc": malloc.state(),
    }
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info
