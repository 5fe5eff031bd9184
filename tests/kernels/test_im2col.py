"""im2col/col2im against the loop reference, their adjointness, and the
im2col convolution path against the direct one."""

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, conv_inputs, randn

from fastcnn import kernels as K

CONV_IDS = list(nv.CONV_CASES)


def _case(rng, case, dtype):
    """``x, w, b, (R, S), stride, padding`` for ``naive.CONV_CASES[case]``."""
    x, w, b, stride, padding = conv_inputs(rng, case, dtype)
    return x, w, b, w.shape[2:], stride, padding


@pytest.mark.parametrize("case", CONV_IDS)
def test_im2col_matches_naive(case, dtype, rng):
    x, _, _, ks, s, p = _case(rng, case, dtype)
    cols = K.im2col(x, ks, stride=s, padding=p)
    assert cols.dtype == dtype
    # im2col only copies values: exact equality
    np.testing.assert_array_equal(cols, nv.im2col(x, ks, s, p).astype(dtype))


@pytest.mark.parametrize("case", CONV_IDS)
def test_col2im_matches_naive(case, dtype, rng):
    x, _, _, ks, s, p = _case(rng, case, dtype)
    cols_shape = nv.im2col(x, ks, s, p).shape
    cols = randn(rng, cols_shape, dtype)
    dx = K.col2im(cols, x.shape, ks, stride=s, padding=p)
    assert dx.dtype == dtype
    assert_close(dx, nv.col2im(cols, x.shape, ks, s, p), dtype)


@pytest.mark.parametrize("case", CONV_IDS)
def test_im2col_col2im_adjoint(case, dtype, rng):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    x, _, _, ks, s, p = _case(rng, case, dtype)
    cols = K.im2col(x, ks, stride=s, padding=p)
    c = randn(rng, cols.shape, dtype)
    back = K.col2im(c, x.shape, ks, stride=s, padding=p)
    lhs = float(np.sum(cols.astype(np.float64) * c.astype(np.float64)))
    rhs = float(np.sum(x.astype(np.float64) * back.astype(np.float64)))
    # col2im rounds in ``dtype``; bound the error by the size of the terms
    scale = float(np.sum(np.abs(cols.astype(np.float64) * c)))
    assert abs(lhs - rhs) <= 50 * np.finfo(dtype).eps * max(1.0, scale), (lhs, rhs)


def test_col2im_sums_overlaps_of_all_ones():
    """col2im(ones) counts how many windows cover each pixel."""
    x_shape = (1, 1, 4, 5)
    cols = np.ones((1, 9, 2 * 3), dtype=np.float64)
    got = K.col2im(cols, x_shape, 3, stride=1, padding=0)
    expected = nv.col2im(cols, x_shape, 3, 1, 0)
    np.testing.assert_array_equal(got, expected)
    assert expected.max() == 6 and expected[0, 0, 0, 0] == 1  # the reference counts


@pytest.mark.parametrize("case", CONV_IDS)
def test_forward_direct_equals_im2col(case, dtype, rng):
    x, w, b, _, s, p = _case(rng, case, dtype)
    y_direct = K.conv2d_forward(x, w, b, stride=s, padding=p)
    y_gemm = K.conv2d_forward_im2col(x, w, b, stride=s, padding=p)
    assert y_gemm.dtype == dtype
    assert_close(y_gemm, y_direct, dtype)
    assert_close(y_gemm, nv.conv2d_forward(x, w, b, s, p), dtype)


@pytest.mark.parametrize("case", ["batch1_3x3", "rect_stride_and_padding"])
def test_forward_im2col_bias_none(case, dtype, rng):
    x, w, _, _, s, p = _case(rng, case, dtype)
    y = K.conv2d_forward_im2col(x, w, None, stride=s, padding=p)
    assert_close(y, K.conv2d_forward(x, w, None, stride=s, padding=p), dtype)
    assert_close(y, nv.conv2d_forward(x, w, None, s, p), dtype)


@pytest.mark.parametrize("case", CONV_IDS)
def test_backward_direct_equals_im2col(case, dtype, rng):
    x, w, b, _, s, p = _case(rng, case, dtype)
    y_shape = nv.conv2d_forward(x, w, b, s, p).shape
    dy = randn(rng, y_shape, dtype)
    direct = K.conv2d_backward(dy, x, w, stride=s, padding=p)
    gemm = K.conv2d_backward_im2col(dy, x, w, stride=s, padding=p)
    expected = nv.conv2d_backward(dy, x, w, s, p)
    for name, g, d, e in zip(("dx", "dw", "db"), gemm, direct, expected):
        assert g.dtype == dtype, name
        assert_close(g, d, dtype, err_msg=f"{name}: im2col vs direct")
        assert_close(g, e, dtype, err_msg=f"{name}: im2col vs naive")


@pytest.mark.parametrize("case", ["batch1_3x3", "rect_stride_and_padding"])
def test_backward_im2col_need_input_grad_false(case, dtype, rng):
    x, w, b, _, s, p = _case(rng, case, dtype)
    y_shape = nv.conv2d_forward(x, w, b, s, p).shape
    dy = randn(rng, y_shape, dtype)
    dx, dw, db = K.conv2d_backward_im2col(dy, x, w, stride=s, padding=p,
                                          need_input_grad=False)
    assert dx is None
    _, edw, edb = nv.conv2d_backward(dy, x, w, s, p)
    assert_close(dw, edw, dtype)
    assert_close(db, edb, dtype)
