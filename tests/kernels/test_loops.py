"""The shared inline helpers of ``fastcnn.kernels._loops``, called from compiled code as the kernels call them."""

import numpy as np
import pytest

from fastcnn.config import njit
from fastcnn.kernels._loops import transpose_flat, transpose_into, zero_span


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


@njit
def _transpose_flat(dst, d, ds, src, s, ss, A, B):
    transpose_flat(dst, d, ds, src, s, ss, A, B)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("A,B", [(1, 1), (8, 8), (16, 24), (17, 9), (3, 20), (9, 17), (32, 32)])
def test_transpose_flat_moves_exactly_the_block(dtype, A, B):
    # rows of the source 3 longer than the block, of the target 2 longer, both at an offset: nothing outside the
    # block is written, and the 8 x 8 tiles' shuffles put every number where the naive loop does
    src = np.arange(5 + A * (B + 3), dtype=dtype)
    dst = np.full(7 + B * (A + 2), -1, dtype)
    want = dst.copy()
    for a in range(A):
        for b in range(B):
            want[7 + b * (A + 2) + a] = src[5 + a * (B + 3) + b]
    _transpose_flat(dst, 7, A + 2, src, 5, B + 3, A, B)
    np.testing.assert_array_equal(dst, want)
