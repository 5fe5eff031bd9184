"""The start-up benchmark: a fresh process imports, builds LeNet-5 and runs one training step.

The scripts run with ``sys.executable -c``; each prints one JSON line with its
own import, build and first-step times, and the parent adds the process's
wall time.  The PyTorch script builds its LeNet-5 inline (the same network as
:func:`fastcnn.bench.torch_models.torch_lenet5`): importing fastcnn there
would add fastcnn's import time to PyTorch's.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from .machine import machine_info, torch_version
from .timing import median, rotated

__all__ = ["run_script", "bench_startup"]

_STARTUP_FASTCNN = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastcnn
t1 = time.perf_counter()
fastcnn.manual_seed(0)
model = fastcnn.models.lenet5()
opt = fastcnn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
rng = np.random.default_rng(0)
x = rng.random((64, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, 64)
t2 = time.perf_counter()
model.fit(x, y, epochs=1, batch_size=64, optimizer=opt, verbose=False)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "step_s": t3 - t2}))
"""

_STARTUP_TORCH = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
t1 = time.perf_counter()
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.random((64, 1, 28, 28), dtype=np.float32))
y = torch.from_numpy(rng.integers(0, 10, 64))
t2 = time.perf_counter()
opt.zero_grad()
F.cross_entropy(model(x), y).backward()
opt.step()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "step_s": t3 - t2}))
"""


def run_script(script, env, timeout):
    """Run ``script`` in a fresh interpreter (``sys.executable -c``) with environment ``env``.

    Returns
    -------
    dict
        The script's last output line, parsed as JSON, with ``wall_s`` added:
        the process's wall time measured from here.

    Raises
    ------
    RuntimeError
        When the script exits non-zero (the message quotes its last stderr line).
    """
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"start-up script failed (exit {proc.returncode}): {last}")
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(inner, wall_s=wall)


def _summarise_runs(runs):
    """The runs and the median of each of their times."""
    keys = ("wall_s", "import_s", "build_s", "step_s")
    return {"runs": runs, "median": {k: median([r[k] for r in runs]) for k in keys}}


def bench_startup(repeat=3, cold=True, torch=True, timeout=600):
    """Cold-start time of a fresh process: import, build LeNet-5, one training step.

    Each run is ``sys.executable -c ...`` timed from the parent (wall, which
    includes the interpreter's own start and exit) and reports its import,
    build and first-step times.  fastcnn runs with the current Numba cache
    (``NUMBA_CACHE_DIR`` as in this environment); one warm-up run fills it and
    is excluded, then ``repeat`` runs alternate with PyTorch's (the same
    network and step), and medians are reported.  ``cold=True`` adds one
    fastcnn run with a fresh, empty ``NUMBA_CACHE_DIR``: the first-ever
    compile time.

    Parameters
    ----------
    repeat : int
        Timed runs of each script (after the warm-up runs).
    cold : bool
        Add one fastcnn run with an empty Numba cache.
    torch : bool
        Time PyTorch's script too (when PyTorch is installed).
    timeout : float
        Seconds one run may take before ``subprocess.TimeoutExpired``.

    Returns
    -------
    dict
        ``fastcnn`` and ``torch`` (each ``runs`` and ``median``), ``fastcnn_cold``
        (one run) when asked, ``numba_cache_dir``.
    """
    env = dict(os.environ)
    torch_installed = torch_version() is not None
    do_torch = torch and torch_installed
    scripts = {"fastcnn": _STARTUP_FASTCNN}
    if do_torch:
        scripts["torch"] = _STARTUP_TORCH
    for name, script in scripts.items():  # warm-up: fills the Numba cache, the OS file cache
        run_script(script, env, timeout)
    runs = {name: [] for name in scripts}
    names = tuple(scripts)
    for i in range(repeat):
        for name in rotated(names, i):
            runs[name].append(run_script(scripts[name], env, timeout))
    result = {"benchmark": "startup", "repeat": repeat,
              "numba_cache_dir": env.get("NUMBA_CACHE_DIR") or "(default: __pycache__ next to the sources)",
              "fastcnn_cache_enabled": env.get("FASTCNN_CACHE", "1") != "0"}
    for name in names:
        result[name] = _summarise_runs(runs[name])
    if cold:
        tmp = tempfile.mkdtemp(prefix="fastcnn-numba-cache-")
        try:
            cold_env = dict(env, NUMBA_CACHE_DIR=tmp)
            result["fastcnn_cold"] = _summarise_runs([run_script(_STARTUP_FASTCNN, cold_env, timeout)])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = machine_info()
    return result
