"""Shared fixtures and helpers for the fastcnn test-suite."""

import os
import sys

import numpy as np
import pytest

# Make ``import naive`` work whether or not tests/ is a package.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

#: Floating dtypes every kernel must support.
FLOAT_DTYPES = [np.float32, np.float64]

#: Relative tolerance per dtype (absolute tolerance is scaled by the magnitude
#: of the expected array, see :func:`assert_close`).
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's node id, so every test (and
    every parametrisation) gets its own reproducible stream."""
    seed = sum(request.node.nodeid.encode()) * 2654435761 % (2**32)
    return np.random.default_rng(seed)


@pytest.fixture(params=FLOAT_DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def tol(dtype):
    return RTOL[np.dtype(dtype)]


def assert_close(actual, expected, dtype, rtol=None, atol=None, err_msg=""):
    """Compare ``actual`` with a float64 reference computed from the same
    inputs.  ``rtol`` defaults to 1e-4 (float32) or 1e-10 (float64); ``atol``
    defaults to ``rtol * max(1, max|expected|)`` so that entries that cancel to
    ~0 are judged on the scale of the whole array."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (
        f"shape mismatch: got {actual.shape}, expected {expected.shape} {err_msg}"
    )
    if rtol is None:
        rtol = tol(dtype)
    if atol is None:
        scale = float(np.max(np.abs(expected))) if expected.size else 0.0
        atol = rtol * max(1.0, scale)
    np.testing.assert_allclose(
        actual.astype(np.float64), expected, rtol=rtol, atol=atol, err_msg=err_msg
    )


def randn(rng, shape, dtype):
    """Standard-normal array of ``dtype`` (C-contiguous)."""
    return np.ascontiguousarray(rng.standard_normal(shape).astype(dtype))


@pytest.fixture
def one_thread():
    """Finite differences make hundreds of tiny parallel launches: run them on one thread, then restore."""
    import fastcnn

    before = fastcnn.get_num_threads()
    fastcnn.set_num_threads(1)
    yield
    fastcnn.set_num_threads(before)
