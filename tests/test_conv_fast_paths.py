"""The matrix-multiply fast paths of the direct convolution agree with the naive loops and the general path.

``conv2d_forward`` / ``conv2d_backward`` take a GEMM for 1x1 kernels (stride 1,
no padding) and for kernels as large as the padded input (output 1x1).
"""

import numpy as np
import pytest

import naive as nv
from conftest import assert_close, randn

from fastcnn import kernels as K
from fastcnn.kernels import _fast_path, _general_direct_backward, _general_direct_forward

# (N, C, H, W, K, R, S, stride, padding, expected path)
CASES = {
    "1x1_batch3": (3, 5, 4, 6, 7, 1, 1, 1, 0, "1x1"),
    "1x1_batch9": (9, 6, 5, 3, 4, 1, 1, 1, 0, "1x1"),
    "1x1_single_pixel_takes_full": (12, 3, 1, 1, 2, 1, 1, 1, 0, "full"),
    "full_batch2": (2, 3, 5, 5, 4, 5, 5, 1, 0, "full"),
    "full_batch10_rect": (10, 2, 4, 6, 5, 4, 6, 1, 0, "full"),
    "full_padded_batch3": (3, 2, 3, 4, 3, 5, 6, 1, 1, "full"),
    "full_padded_stride_batch9": (9, 3, 3, 3, 4, 5, 7, (2, 3), (1, 2), "full"),
    # near misses that must stay on the general path
    "1x1_stride2": (3, 2, 5, 5, 3, 1, 1, 2, 0, None),
    "1x1_padded": (9, 2, 4, 4, 3, 1, 1, 1, 1, None),
    "kernel_one_short_of_input": (9, 2, 5, 5, 3, 4, 5, 1, 0, None),
}


def _inputs(rng, case, dtype):
    N, C, H, W, Kout, R, S, stride, padding, path = CASES[case]
    x = randn(rng, (N, C, H, W), dtype)
    w = randn(rng, (Kout, C, R, S), dtype)
    b = randn(rng, (Kout,), dtype)
    return x, w, b, stride, padding, path


def _geometry(stride, padding):
    return nv.pair(stride) + nv.pair(padding)


@pytest.mark.parametrize("case", list(CASES))
def test_path_is_chosen(case, rng):
    x, w, _, stride, padding, path = _inputs(rng, case, np.float64)
    assert _fast_path(x.shape, w.shape, *_geometry(stride, padding)) == path


@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_naive_and_general(case, dtype, rng):
    x, w, b, stride, padding, _ = _inputs(rng, case, dtype)
    y = K.conv2d_forward(x, w, b, stride, padding)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_close(y, nv.conv2d_forward(x, w, b, stride, padding), dtype)
    general = np.empty_like(y)
    _general_direct_forward(x, w, b, general, *_geometry(stride, padding))
    assert_close(y, general, dtype)
    assert_close(K.conv2d_forward(x, w, None, stride, padding), nv.conv2d_forward(x, w, None, stride, padding), dtype)


@pytest.mark.parametrize("case", list(CASES))
def test_backward_matches_naive_and_general(case, dtype, rng):
    x, w, b, stride, padding, _ = _inputs(rng, case, dtype)
    dy = randn(rng, nv.conv2d_forward(x, w, b, stride, padding).shape, dtype)
    dx, dw, db = K.conv2d_backward(dy, x, w, stride, padding)
    ex, ew, eb = nv.conv2d_backward(dy, x, w, stride, padding)
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    _general_direct_backward(dy, x, w, gx, gw, gb, *_geometry(stride, padding))
    for got, want, general, name in ((dx, ex, gx, "dx"), (dw, ew, gw, "dw"), (db, eb, gb, "db")):
        assert got.dtype == dtype, name
        assert_close(got, want, dtype, err_msg=name)
        assert_close(got, general, dtype, err_msg=name)
    none, dw2, db2 = K.conv2d_backward(dy, x, w, stride, padding, need_input_grad=False)
    assert none is None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


def test_non_contiguous_inputs_are_accepted(rng):
    x = randn(rng, (4, 6, 5, 5), np.float32)[:, ::2]  # (4, 3, 5, 5), not contiguous
    w = randn(rng, (2, 3, 1, 1), np.float32)
    assert_close(K.conv2d_forward(x, w, None), nv.conv2d_forward(x, w), np.float32)
