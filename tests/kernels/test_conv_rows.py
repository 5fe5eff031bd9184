"""The rows convolution's raw kernels called directly, and its edge shapes (test_conv_plan runs it on every oracle case).

Checked against tests/naive.py's loops; float64 central differences and PyTorch cover it through
test_gradcheck_kernels and test_torch_kernels (``algorithm="auto"`` picks it for stride-1 layers with
fewer than 16 output channels).
"""

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, randn

import fastcnn
from fastcnn import kernels as K


def _round_up(n, m):
    return -(-n // m) * m


def _rows_buffers(x_shape, w_shape, padding, dtype, tasks):
    (_, C, H, W), (Kout, _, R, S) = x_shape, w_shape
    Hp, Wp = H + 2 * padding, W + 2 * padding
    P = Hp - R + 1
    L, Kw = _round_up(P * Wp, 8), _round_up(Kout, 4)
    xs = np.full((tasks, K.rows_padded_length(C, Hp, Wp, R, S, L)), np.nan, dtype)  # the kernels zero what they read
    ds = np.full((tasks, Kw, L), np.nan, dtype)
    partial = np.full((tasks, Kw, C, R, S), np.nan, dtype)
    return xs, ds, partial, Kw


@pytest.mark.parametrize("Kout", [1, 2, 3, 4, 5, 6, 7, 9])  # blocks of 4 output channels and every remainder
@pytest.mark.parametrize("tasks", [1, 2, 3])
def test_raw_rows_kernels_match_naive(Kout, tasks, dtype, rng):
    x_shape, w_shape, padding = (5, 2, 7, 6), (Kout, 2, 3, 5), 2
    x, w, b = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype), randn(rng, (Kout,), dtype)
    xs, ds, partial, Kw = _rows_buffers(x_shape, w_shape, padding, dtype, tasks)
    wk = np.zeros((Kw,) + w_shape[1:], dtype)
    wk[:Kout] = w
    want = nv.conv2d_forward(x, w, b, 1, padding)
    y = np.full(want.shape, np.nan, dtype)
    K.conv2d_forward_rows(x, wk, b, y, padding, padding, xs, ds)
    assert_close(y, want, dtype)
    dy = randn(rng, y.shape, dtype)
    dw = np.full(w.shape, np.nan, dtype)
    K.conv2d_backward_weight_rows(dy, x, dw, padding, padding, xs, ds, partial)
    assert_close(dw, nv.conv2d_backward(dy, x, w, 1, padding)[1], dtype)


@pytest.mark.parametrize("shape", [
    ((1, 1, 1, 1), (1, 1, 1, 1), 0),     # one pixel
    ((2, 3, 4, 9), (5, 3, 4, 9), 0),     # kernel as large as the input: one output pixel
    ((3, 1, 1, 8), (2, 1, 1, 3), 0),     # one row
    ((4, 2, 5, 5), (6, 2, 3, 3), 2),     # padding R - 1, the most rows allows
])
def test_rows_edge_shapes_match_naive(shape, dtype, rng):
    x_shape, w_shape, padding = shape
    x, w, b = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype), randn(rng, w_shape[:1], dtype)
    y = K.conv2d_forward(x, w, b, 1, padding, algorithm="rows")
    assert_close(y, nv.conv2d_forward(x, w, b, 1, padding), dtype)
    dy = randn(rng, y.shape, dtype)
    got = K.conv2d_backward(dy, x, w, 1, padding, algorithm="rows")
    for g, want in zip(got, nv.conv2d_backward(dy, x, w, 1, padding)):
        assert_close(g, want, dtype)


@pytest.mark.parametrize("threads", [1, 2])
def test_rows_is_deterministic_for_a_thread_count(threads, rng, restore_num_threads):
    """Images go to tasks in fixed chunks and the tasks' partial dw are added in task order."""
    fastcnn.set_num_threads(min(threads, fastcnn.get_num_threads()))
    x, w = randn(rng, (37, 1, 28, 28), np.float32), randn(rng, (6, 1, 5, 5), np.float32)
    dy = randn(rng, (37, 6, 28, 28), np.float32)
    first = K.conv2d_backward(dy, x, w, 1, 2, need_input_grad=False, algorithm="rows")
    for _ in range(3):
        again = K.conv2d_backward(dy, x, w, 1, 2, need_input_grad=False, algorithm="rows")
        np.testing.assert_array_equal(again[1], first[1])
        np.testing.assert_array_equal(again[2], first[2])
    y = K.conv2d_forward(x, w, None, 1, 2, algorithm="rows")
    np.testing.assert_array_equal(K.conv2d_forward(x, w, None, 1, 2, algorithm="rows"), y)


def test_lenet_conv1_plans_rows_without_activation_sized_scratch():
    plans = K.conv2d_plan((64, 1, 28, 28), (6, 1, 5, 5), padding=2, need_input_grad=False, num_threads=2)
    assert (plans.forward.algorithm, plans.weight_grad.algorithm) == ("rows", "rows")
    roles = {b.role: b.shape for b in plans.weight_grad.buffers}
    assert roles == {"x_padded_rows": (2, K.rows_padded_length(1, 32, 32, 5, 5, 896)),
                     "wide_rows": (2, 8, 896), "partial_dw_rows": (2, 8, 1, 5, 5)}
    assert plans.weight_grad.workspace_bytes < 64 * 6 * 28 * 28 * 4 / 10


def test_bias_and_pool_backward_kernels_take_non_contiguous_arrays(rng):
    dy = randn(rng, (3, 4, 5, 12), np.float32)[..., ::2]
    db = np.empty(4, np.float32)
    K.conv2d_backward_bias(dy, db)
    assert_close(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), np.float32)
    x = randn(rng, (2, 3, 6, 6), np.float32)
    y, argmax = K.max_pool2d_forward(x, 2)
    g = randn(rng, (2, 3, 3, 6), np.float32)[..., ::2]
    dx = np.empty_like(x)
    assert K.max_pool2d_backward_kernel(g, argmax, dx) == 0
    assert_close(dx, nv.max_pool2d_backward(np.ascontiguousarray(g), argmax, x.shape), np.float32)
