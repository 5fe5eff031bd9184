"""Tuned convolution plans: time every algorithm that applies to a pass and keep the fastest.

``algorithm="tuned"`` (in :func:`fastcnn.kernels.conv2d_forward`,
:func:`~fastcnn.kernels.conv2d_backward`, :func:`~fastcnn.kernels.conv2d_plan`
and ``Conv2d``) works as cuDNN's benchmark mode: the first time a pass
(forward, weight_grad or input_grad) meets a geometry, dtype and thread count,
every algorithm of :data:`~fastcnn.kernels.conv_plan.ALGORITHMS` that applies
to it runs on random data of that shape (once to compile and warm up, then
timed: the best of at least :data:`REPEATS` runs), and the fastest is kept for
the rest of the process.  The fixed thresholds of ``"auto"`` were tuned on
one machine; tuning finds this machine's winners, at the cost of a few
seconds per new shape (more on an empty kernel cache: every candidate
compiles).

Every algorithm computes the same sums in a fixed order, so each is
deterministic; but two algorithms round differently, so runs whose tuning
picked different winners (a busy machine can change a close race) differ by
float rounding.  For bit-identical runs, save the choices once
(:func:`save_tuned_plans`, or ``FASTCNN_TUNED_PLANS``) and load them: loaded
choices are used without timing.

``FASTCNN_TUNED_PLANS=path``: load the choices in ``path`` (if it exists) at
the first tuned pass, and save the table there, atomically, after each new
tuning.  Choices are keyed by the CPU (as LLVM names it) and the micro-kernel
width, so a file from another machine is read but none of its entries match.
"""

import json
import os
import stat
import threading
import time

import llvmlite.binding
import numpy as np

from .._util import atomic_write_json
from ..config import VECTOR_BITS
from . import _conv_exec, _workspace
from .conv_plan import ALGORITHMS, PASSES, ConvGeometry, make_plan, select

#: Timed runs per candidate, at least (more while they take under :data:`MIN_SECONDS` together).
REPEATS = 3
#: Keep timing a candidate until its runs take this long together (or :data:`MAX_REPEATS`).
MIN_SECONDS = 0.05
MAX_REPEATS = 20
#: A candidate this many times slower than the best so far after one timed run is dropped.
SLOW = 3.0
#: A tuned-plans file larger than this is refused unread.
MAX_FILE_BYTES = 16 * 2**20
#: The file format's version (``"version"`` in the JSON).
FORMAT = 1

_LOCK = threading.RLock()
_CHOICES = {}  # (op, ConvGeometry, dtype str, threads) -> algorithm
_TIMES = {}  # same key -> {algorithm: seconds}, for what was timed in this process
_ENV_LOADED = []  # [True] once the load of FASTCNN_TUNED_PLANS has started
_ENV_DONE = []  # [True] once it has ended: from then on a choice in _CHOICES is final (until cleared)


def _machine():
    return f"{llvmlite.binding.get_host_cpu_name()}/{VECTOR_BITS}-bit"


def candidates(op, g):
    """The algorithms that can compute pass ``op`` of geometry ``g``, in :data:`ALGORITHMS` order."""
    found = []
    for name in ALGORITHMS:
        try:
            select(op, g, name)
        except ValueError:
            continue
        found.append(name)
    return found


def _inputs(op, g, dtype):
    rng = np.random.default_rng(0)

    def rand(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x, w = rand(g.N, g.C, g.H, g.W), rand(g.K, g.C // g.groups, g.R, g.S)
    if op == "forward":
        return (x, w, rand(g.K), np.empty((g.N, g.K, g.P, g.Q), dtype))
    dy = rand(g.N, g.K, g.P, g.Q)
    if op == "weight_grad":
        return (dy, x, np.empty(w.shape, dtype))
    return (dy, w, np.empty(x.shape, dtype))


def _time(op, g, dtype, threads, algorithm, args, bound):
    """Best-of time of one pass with ``algorithm`` (after one untimed run that compiles and warms up).

    A candidate whose first timed run is over :data:`SLOW` times ``bound``
    (the best time so far) is not timed further: it cannot win.
    """
    run = {"forward": _conv_exec.forward, "weight_grad": _conv_exec.weight_grad,
           "input_grad": _conv_exec.input_grad}[op]
    plan = make_plan(op, g, algorithm, np.dtype(dtype).itemsize, threads)
    run(plan.algorithm, *args, g, _workspace.take(plan, dtype))
    times = []
    while len(times) < MAX_REPEATS and (len(times) < REPEATS or sum(times) < MIN_SECONDS):
        bufs = _workspace.take(plan, dtype)
        start = time.perf_counter()
        run(plan.algorithm, *args, g, bufs)
        times.append(time.perf_counter() - start)
        if times[0] > SLOW * bound:
            break
    return min(times)


def choose(op, g, dtype, threads):
    """The tuned algorithm for pass ``op`` of ``g`` (timing the candidates the first time the key is seen)."""
    key = (op, ConvGeometry(*g), np.dtype(dtype).str, int(threads))
    if _ENV_DONE:  # a choice made before needs no lock (one dict read is atomic under the GIL): another
        choice = _CHOICES.get(key)  # thread's tuning, which holds the lock for seconds, does not delay it
        if choice is not None:
            return choice
    with _LOCK:
        _load_env_file()
        if key in _CHOICES:
            return _CHOICES[key]
        names = candidates(op, g)
        if len(names) == 1:
            _CHOICES[key] = names[0]
            return names[0]
        args = _inputs(op, g, dtype)
        times = {}
        for name in names:
            times[name] = _time(op, g, dtype, threads, name, args, min(times.values(), default=float("inf")))
        best = min(names, key=times.__getitem__)  # ties: the earlier name
        _CHOICES[key], _TIMES[key] = best, times
        path = os.environ.get("FASTCNN_TUNED_PLANS")
        if path:
            save_tuned_plans(path)
        return best


def tuned_plans():
    """The choices made or loaded in this process: a list of dicts, one per (pass, geometry, dtype, threads).

    Each has ``op``, ``geometry`` (the :class:`ConvGeometry` fields as a
    dict), ``dtype``, ``threads``, ``algorithm`` and, for choices timed in
    this process, ``seconds`` per candidate.
    """
    with _LOCK:
        return [dict(op=op, geometry=g._asdict(), dtype=np.dtype(dt).name, threads=t, algorithm=_CHOICES[key],
                     **({"seconds": dict(_TIMES[key])} if key in _TIMES else {}))
                for key in sorted(_CHOICES, key=str) for op, g, dt, t in [key]]


def clear_tuned_plans():
    """Forget every tuned choice of this process (the next tuned pass times again)."""
    with _LOCK:
        _CHOICES.clear()
        _TIMES.clear()


def save_tuned_plans(path):
    """Write the choices (:func:`tuned_plans`) to the JSON file ``path``, atomically; returns ``path``."""
    return atomic_write_json(path, {"format": "fastcnn-tuned-plans", "version": FORMAT, "machine": _machine(),
                                    "plans": tuned_plans()})


def load_tuned_plans(path):
    """Add the choices saved in ``path`` for this machine; returns how many were added.

    Entries saved on another machine (CPU or micro-kernel width) are
    skipped.  A file that is not a regular file, is larger than
    :data:`MAX_FILE_BYTES` or is not a tuned-plans file of this version is
    refused with ValueError naming the problem, and nothing is added.
    """
    fn = "load_tuned_plans"
    path = os.fspath(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{fn}: {path!r} is not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise ValueError(f"{fn}: {path!r} has {st.st_size} bytes, more than a tuned-plans file may ({MAX_FILE_BYTES})")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{fn}: {path!r} is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != "fastcnn-tuned-plans" or doc.get("version") != FORMAT:
        raise ValueError(f"{fn}: {path!r} is not a fastcnn tuned-plans file of version {FORMAT}")
    if doc.get("machine") != _machine():
        return 0
    entries = [_parse_entry(e, i, fn, path) for i, e in enumerate(_as_list(doc.get("plans"), fn, path))]
    with _LOCK:
        added = [key for key, _ in entries if key not in _CHOICES]
        _CHOICES.update(entries)
    return len(added)


def _as_list(value, fn, path):
    if not isinstance(value, list):
        raise ValueError(f"{fn}: {path!r}: 'plans' must be a list")
    return value


def _parse_entry(entry, i, fn, path):
    """((op, geometry, dtype, threads), algorithm) from one saved entry, checked."""
    where = f"{fn}: {path!r}: plans[{i}]"
    try:
        op, geometry, dtype, threads, algorithm = (entry[k] for k in ("op", "geometry", "dtype", "threads",
                                                                      "algorithm"))
        # dilation and groups came later: a file saved before has neither (both 1)
        g = ConvGeometry(**{f: geometry[f] if f in geometry or f not in _LATER_FIELDS else 1
                            for f in ConvGeometry._fields})
    except (TypeError, KeyError) as e:
        raise ValueError(f"{where} lacks or mistypes {e}") from None
    if op not in PASSES or dtype not in ("float32", "float64") or algorithm not in ALGORITHMS:
        raise ValueError(f"{where}: unknown op, dtype or algorithm ({op!r}, {dtype!r}, {algorithm!r})")
    if not all(type(v) is int and v >= 0 for v in g) or type(threads) is not int or threads < 1:
        raise ValueError(f"{where}: geometry sizes and threads must be non-negative ints")
    if min(g.dil_h, g.dil_w, g.groups) < 1 or g.C % g.groups or g.K % g.groups:
        raise ValueError(f"{where}: dilation and groups must be positive, and groups must divide C and K")
    try:
        select(op, g, algorithm)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return (op, g, np.dtype(dtype).str, threads), algorithm


#: Geometry fields added after the file format's version 1: optional in a file, 1 when absent.
_LATER_FIELDS = ("dil_h", "dil_w", "groups")


def _load_env_file():
    """Load ``FASTCNN_TUNED_PLANS`` once per process, if set and present."""
    if _ENV_LOADED:
        return
    _ENV_LOADED.append(True)
    try:
        path = os.environ.get("FASTCNN_TUNED_PLANS")
        if path and os.path.exists(path):
            load_tuned_plans(path)
    finally:
        _ENV_DONE.append(True)
