"""The shared inline helpers of ``fastcnn.kernels._loops``, called from compiled code as the kernels call them."""

import numpy as np
import pytest

from fastcnn.config import njit
from fastcnn.kernels._loops import transpose_into, zero_span


@njit
def _zero(flat, start, stop):
    zero_span(flat, start, stop)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("start,stop", [(0, 37), (5, 6), (3, 29), (36, 37), (4, 4), (9, 2)])
def test_zero_span_zeroes_exactly_the_span(dtype, start, stop):
    flat = np.arange(1, 38).astype(dtype)
    want = flat.copy()
    want[start:stop] = 0  # empty when stop <= start
    _zero(flat, start, stop)
    np.testing.assert_array_equal(flat, want)
    assert not np.signbit(flat).any()  # +0.0, as a loop storing dtype(0) wrote


@njit
def _transpose(src, dst):
    transpose_into(src, dst)


@pytest.mark.parametrize("shape", [(1, 1), (8, 8), (17, 9), (3, 20), (16, 24)])
def test_transpose_into_writes_the_transpose(shape):
    src = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    dst = np.full(shape[::-1], -1, np.float32)
    _transpose(src, dst)
    np.testing.assert_array_equal(dst, src.T)
