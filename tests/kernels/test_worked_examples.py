"""The worked examples and identities from the course notes."""

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, randn

from fastcnn import kernels as K

X3 = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
W2 = [[1, 2], [3, 4]]


def _plane(a, dtype):
    """A 2-D list as a (1, 1, H, W) array."""
    return np.asarray(a, dtype=dtype)[None, None]


def test_correlation_worked_example(dtype):
    y = K.conv2d_forward(_plane(X3, dtype), _plane(W2, dtype), None)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[0, 0], np.array([[37, 47], [67, 77]], dtype=dtype))


def test_correlation_worked_example_im2col(dtype):
    y = K.conv2d_forward_im2col(_plane(X3, dtype), _plane(W2, dtype), None)
    np.testing.assert_array_equal(y[0, 0], np.array([[37, 47], [67, 77]], dtype=dtype))


@pytest.mark.parametrize("shapes", [((3, 3), (2, 2)), ((5, 6), (3, 2)), ((4, 7), (1, 3))],
                         ids=["3x3_by_2x2", "5x6_by_3x2", "4x7_by_1x3"])
def test_convolution_is_correlation_with_rotated_kernel(shapes, dtype, rng):
    (H, W), (R, S) = shapes
    x = rng.integers(-4, 5, size=(H, W)).astype(dtype)
    w = rng.integers(-4, 5, size=(R, S)).astype(dtype)
    got = K.conv2d_forward(x[None, None], np.ascontiguousarray(np.rot90(w, 2))[None, None],
                           None)
    assert_close(got[0, 0], nv.true_convolution2d(x, w), dtype)


def test_convolution_worked_example_rotated(dtype):
    """The worked example as a true convolution, written out by hand:
    conv(X, W)[0,0] = 1*4 + 2*3 + 4*2 + 5*1 = 23, and so on."""
    got = K.conv2d_forward(_plane(X3, dtype),
                           np.ascontiguousarray(np.rot90(_plane(W2, dtype), 2, axes=(2, 3))),
                           None)
    np.testing.assert_array_equal(got[0, 0], np.array([[23, 33], [53, 63]], dtype=dtype))


def test_input_grad_is_full_correlation_with_rotated_kernel(dtype, rng):
    """3x3 input, 2x2 kernel: dX = pad(dY, 1) correlated with rot180(W)."""
    x = _plane(X3, dtype)
    w = _plane(W2, dtype)
    dy = rng.integers(-3, 4, size=(1, 1, 2, 2)).astype(dtype)
    dx, dw, db = K.conv2d_backward(dy, x, w)
    padded = np.pad(dy, ((0, 0), (0, 0), (1, 1), (1, 1)))
    w_rot = np.ascontiguousarray(np.rot90(w, 2, axes=(2, 3)))
    expected = K.conv2d_forward(padded, w_rot, None)
    assert expected.shape == x.shape
    np.testing.assert_array_equal(dx, expected)
    # and dW = X correlated with dY; db = sum(dY)
    np.testing.assert_array_equal(dw, K.conv2d_forward(x, dy, None))
    np.testing.assert_array_equal(db, dy.sum(axis=(0, 2, 3)))


def test_input_grad_identity_multichannel(dtype, rng):
    """Same identity with channels: dX[c] = sum_k pad(dY[k]) * rot180(W[k, c]),
    i.e. a correlation with the kernel tensor transposed in (K, C)."""
    N, C, Kout, H, W, R, S = 2, 3, 4, 5, 6, 3, 2
    x = randn(rng, (N, C, H, W), dtype)
    w = randn(rng, (Kout, C, R, S), dtype)
    dy = randn(rng, (N, Kout, H - R + 1, W - S + 1), dtype)
    dx, _, _ = K.conv2d_backward(dy, x, w)
    padded = np.pad(dy, ((0, 0), (0, 0), (R - 1, R - 1), (S - 1, S - 1)))
    w_t = np.ascontiguousarray(np.rot90(w, 2, axes=(2, 3)).transpose(1, 0, 2, 3))
    assert_close(dx, K.conv2d_forward(padded, w_t, None), dtype)


def test_max_pool_routes_gradient_to_argmax(dtype):
    x = _plane([[1, 2, 5, 6],
                [3, 4, 0, 7],
                [9, 1, 2, 2],
                [0, 8, 3, 1]], dtype)
    y, am = K.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(y[0, 0], np.array([[4, 7], [9, 3]], dtype=dtype))
    np.testing.assert_array_equal(am[0, 0], [[1 * 4 + 1, 1 * 4 + 3], [2 * 4 + 0, 3 * 4 + 2]])
    dy = _plane([[10, 20], [30, 40]], dtype)
    dx = K.max_pool2d_backward(dy, am, x.shape)
    expected = np.array([[0, 0, 0, 0],
                         [0, 10, 0, 20],
                         [30, 0, 0, 0],
                         [0, 0, 40, 0]], dtype=dtype)
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_max_pool_overlapping_windows_accumulate(dtype):
    """With stride 1 one input can be the max of several windows; its gradient
    is the sum of theirs."""
    x = _plane([[0, 0, 0], [0, 9, 0], [0, 0, 0]], dtype)
    y, am = K.max_pool2d_forward(x, 2, stride=1)
    dy = _plane([[1, 2], [3, 4]], dtype)
    dx = K.max_pool2d_backward(dy, am, x.shape)
    expected = np.zeros((3, 3), dtype=dtype)
    expected[1, 1] = 10
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_avg_pool_spreads_gradient_evenly(dtype):
    dy = _plane([[4, 8], [12, 16]], dtype)
    dx = K.avg_pool2d_backward(dy, (1, 1, 4, 4), 2)
    expected = np.array([[1, 1, 2, 2],
                         [1, 1, 2, 2],
                         [3, 3, 4, 4],
                         [3, 3, 4, 4]], dtype=dtype)
    np.testing.assert_array_equal(dx[0, 0], expected)
    y = K.avg_pool2d_forward(_plane(X3, dtype)[:, :, :2, :2].copy(), 2)
    np.testing.assert_array_equal(y[0, 0], np.array([[3.0]], dtype=dtype))
