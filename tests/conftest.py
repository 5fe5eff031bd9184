"""Fixtures for the fastcnn test-suite (helpers live in helpers.py, the oracles in naive.py).

The tests sit in one folder per tier (kernels, layers, training, data, cli, bench) with the
repository-wide checks at the top.  The tier folders are not packages: this file puts ``tests/`` on
``sys.path`` so that every test file can ``import naive`` and ``from helpers import ...``.
"""

import os
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
