"""Fixtures for the fastcnn test-suite (helpers live in helpers.py, the oracles in naive.py).

The tests sit in one folder per tier (kernels, layers, training, data, cli, bench) with the
repository-wide checks at the top.  The tier folders are not packages: this file puts ``tests/`` on
``sys.path`` so that every test file can ``import naive`` and ``from helpers import ...``.
"""

import gc
import os
import subprocess
import sys

import numpy as np
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from helpers import FLOAT_DTYPES, single_thread  # after the sys.path line above

from hypothesis import HealthCheck, settings

# Hypothesis profiles for the property tests (registered, not loaded: a test takes one as its settings' parent).
# "ci": the quick run, reproducible (derandomized, no example database); "slow": the deeper run of the tests
# marked slow (pytest -m slow).
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, database=None, print_blob=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("slow", settings.get_profile("ci"), max_examples=300)


def pytest_collection_finish(session):
    """Freeze what collection left alive (every module and test object) out of the garbage collector's reach: a full
    collection then walks only what the tests create (gc.collect() in the benchmarks' memory measurement and timing
    took 0.3 s each with torch, onnx and hypothesis loaded; the automatic ones are as much cheaper).  Nothing frozen
    is garbage: it was all reachable after a collection."""
    gc.collect()
    gc.freeze()
    _start_background_compile(session)


def _start_background_compile(session):
    """Before a long run (the whole suite), on a machine with a free core: compile every kernel in the
    background (``tools/compile_all.py``: float32, then float64), while the tests compile what they need
    before it gets there; a signature is compiled by one process at a time (the other waits and loads it),
    so the two share the compiling instead of the tests doing the float32 half alone.  With a warm cache it
    only loads them.  ``FASTCNN_TEST_PRECOMPILE=0`` turns it off.  Results do not depend on it: a kernel gives
    the same bits compiled here or loaded (``tests/kernels/test_determinism.py``)."""
    tool = os.path.join(os.path.dirname(_HERE), "tools", "compile_all.py")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # under pytest-xdist: one background process, not one each
    if (len(session.items) < 500 or os.environ.get("FASTCNN_TEST_PRECOMPILE", "1") == "0" or worker != "gw0"
            or not os.path.exists(tool)):
        return
    from fastcnn._cpuload import busy_cores
    from fastcnn.parallel_compile import helper_count

    if helper_count(busy_cores(0.25)) == 0:
        return
    env = dict(os.environ, FASTCNN_COMPILE_HELPERS="0",
               PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(_HERE), os.environ.get("PYTHONPATH")])))
    session.config._fastcnn_precompile = subprocess.Popen(
        [sys.executable, tool], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def pytest_sessionfinish(session):
    proc = getattr(session.config, "_fastcnn_precompile", None)
    if proc is not None and proc.poll() is None:
        proc.kill()  # Numba writes each cache file whole: nothing half-written is left
    if proc is not None:
        proc.wait()


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's file name and node id, so every test (and every
    parametrisation) gets its own reproducible stream.

    The seed ignores the tier folder: it is computed from ``tests/<file>::<test>``, so moving a file
    between folders keeps its data.
    """
    path, sep, rest = request.node.nodeid.partition("::")
    name = "tests/" + path.rsplit("/", 1)[-1] + sep + rest
    seed = sum(name.encode()) * 2654435761 % (2**32)
    return np.random.default_rng(seed)


@pytest.fixture(params=FLOAT_DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def one_thread():
    """Finite differences make hundreds of tiny parallel launches: run them on one thread, then restore."""
    with single_thread():
        yield


@pytest.fixture
def restore_num_threads():
    """Put fastcnn's thread count back after the test (``--threads`` changes it for this process)."""
    import fastcnn

    before = fastcnn.get_num_threads()
    yield
    fastcnn.set_num_threads(before)


@pytest.fixture
def in_tmp_path(tmp_path, monkeypatch):
    """Run the test in its ``tmp_path``: ``fastcnn train`` writes its checkpoint to the current directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def without_fastcnn_data(monkeypatch):
    """Unset ``FASTCNN_DATA``, so the data folder is the default one whatever the environment says."""
    monkeypatch.delenv("FASTCNN_DATA", raising=False)
