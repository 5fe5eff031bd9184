"""The depthwise backward on narrow planes: the stacked weight gradients of 3x3 stride-2 and stride-1 layers
(``conv2d_backward_weight_depthwise_s2_stacked``, ``conv2d_backward_weight_depthwise_stacked``) and the stride-1
input gradient run as the stacked forward pass on dy.  The raw kernels against the naive loops, the checked
function against PyTorch's autograd and central differences, which kernel the plan runs where, and non-finite
pixels."""

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, assert_depthwise_backward_matches_torch, check_grad_by_block, randn, single_thread

from fastcnn import kernels as K

ROLES = {"x_weight_row_phases", "dw_pixel_sums", "partial_dw_depthwise"}

#: (N, C, H, W, m): odd batches, channels not a multiple of the stack (16 planes of 8 x 8), multipliers 1-3, a
#: batch of 1, rectangles, planes of 2 columns or rows, a plane of more than STACK_PIXELS outputs (40 x 36)
RAW_CASES = {
    "N5_C40_8x8": (5, 40, 8, 8, 1),
    "batch1_rect_mult2": (1, 3, 6, 10, 2),
    "N3_mult3_4x2": (3, 7, 4, 2, 3),
    "N2_C5_2x2": (2, 5, 2, 2, 1),
    "N4_C20_16x12_mult2": (4, 20, 16, 12, 2),
    "N3_C2_40x36": (3, 2, 40, 36, 1),
}


def _raw(dy, x, tasks, fill=np.nan):
    _, C, H, W = x.shape
    Kout = dy.shape[1]
    Lx, La = K.depthwise_s2_weight_stacked_scratch(H, W, C, Kout // C)
    dw = np.full((Kout, 1, 3, 3), fill, x.dtype)
    xs, acc = np.full((tasks, Lx), fill, x.dtype), np.full((tasks, La), fill, x.dtype)
    K.conv2d_backward_weight_depthwise_s2_stacked(dy, x, dw, xs, acc, np.full((tasks, Kout, 9), fill, x.dtype))
    return dw


@pytest.mark.parametrize("tasks", [1, 3, 40])  # 40: more tasks than (stack, pair of images) items
@pytest.mark.parametrize("name", list(RAW_CASES))
def test_raw_kernel_matches_naive(name, tasks, dtype, rng):
    N, C, H, W, m = RAW_CASES[name]
    x, dy = randn(rng, (N, C, H, W), dtype), randn(rng, (N, m * C, H // 2, W // 2), dtype)
    want = nv.conv2d_backward(dy, x, np.zeros((m * C, 1, 3, 3)), 2, 1, 1, C)[1]
    assert_close(_raw(dy, x, tasks), want, dtype, err_msg="dw")


def test_results_depend_on_the_task_count_only(rng):
    x, dy = randn(rng, (7, 40, 8, 8), np.float32), randn(rng, (7, 40, 4, 4), np.float32)
    assert np.array_equal(_raw(dy, x, 3), _raw(dy, x, 3, fill=0.0))  # the scratch's old contents do not matter


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,m", [((5, 40, 8, 8), 1), ((3, 6, 12, 10), 2), ((1, 4, 4, 6), 3)])
def test_checked_backward_against_torch_autograd(x_shape, m, dtype, rng):
    torch = pytest.importorskip("torch")
    C = x_shape[1]
    w_shape = (m * C, 1, 3, 3)
    plans = K.conv2d_plan(x_shape, w_shape, 2, 1, dtype, groups=C)
    assert {b.role for b in plans.weight_grad.buffers} == ROLES  # the stacked kernel computes dw
    assert_depthwise_backward_matches_torch(torch, x_shape, m, 2, dtype, rng)


def test_weight_gradient_by_central_differences(rng):
    x, w, b = rng.standard_normal((3, 4, 6, 8)), rng.standard_normal((8, 1, 3, 3)), rng.standard_normal(8)
    assert {b.role for b in K.conv2d_plan(x.shape, w.shape, 2, 1, np.float64, groups=4).weight_grad.buffers} == ROLES
    y = K.conv2d_forward(x, w, b, 2, 1, groups=4)
    G = rng.standard_normal(y.shape)
    _, dw, _ = K.conv2d_backward(G, x, w, 2, 1, groups=4)
    with single_thread():  # w[k] moves only y[:, k]
        check_grad_by_block(dw, lambda: (K.conv2d_forward(x, w, b, 2, 1, groups=4) * G).sum(axis=(0, 2, 3)), w, "w")


@pytest.mark.parametrize("x_shape,stride,dtype,stacked", [
    ((2, 4, 8, 8), 2, np.float32, True),
    ((2, 4, 2, 2), 2, np.float32, True),
    ((2, 4, 12, 6), 2, np.float32, True),
    ((64, 128, 16, 16), 2, np.float32, True),  # 16 columns: WEIGHT_STACKED_MAX_WIDTH
    ((2, 4, 16, 18), 2, np.float32, False),  # wider: the general kernel
    ((2, 4, 32, 32), 2, np.float32, False),
    ((2, 4, 12, 12), 2, np.float64, True),  # 12 columns: WEIGHT_STACKED_MAX_WIDTH_FLOAT64
    ((2, 4, 12, 14), 2, np.float64, False),
    ((2, 4, 8, 7), 2, np.float32, False),  # odd width: not depthwise_s2_fits
    ((2, 4, 7, 8), 2, np.float32, False),  # odd height
    ((2, 4, 8, 8), 1, np.float32, False),  # stride 1: its own kernel (below)
])
def test_plan_runs_the_stacked_weight_gradient_on_narrow_planes(x_shape, stride, dtype, stacked):
    N, C, H, W = x_shape
    plans = K.conv2d_plan(x_shape, (2 * C, 1, 3, 3), stride, 1, dtype, groups=C, num_threads=3)
    assert plans.weight_grad.algorithm == "depthwise"
    roles = {b.role: b.shape for b in plans.weight_grad.buffers}
    assert (set(roles) == ROLES) == stacked, roles
    assert stacked == (K.depthwise_s2_fits(H, W, 3, 3, stride, stride, 1, 1, 1, 1)
                       and K.depthwise_s2_weight_stacked_preferred(W, np.dtype(dtype).itemsize))
    other = {b.role for p in (plans.forward, plans.input_grad) for b in p.buffers}
    assert not other & {"x_weight_row_phases", "dw_pixel_sums"}  # the other passes run their own kernels
    if stacked:  # one task per (stack, pair of images) at most; the scratch as depthwise_s2_weight_stacked_scratch
        tasks = min(3, -(-C // K.depthwise_s2_weight_stack(H, W, C)) * -(-N // 2))
        Lx, La = K.depthwise_s2_weight_stacked_scratch(H, W, C, 2)
        assert roles == {"x_weight_row_phases": (tasks, Lx), "dw_pixel_sums": (tasks, La),
                         "partial_dw_depthwise": (tasks, 2 * C, 9)}


def test_scratch_sizes():
    """8 x 8 planes: stacks of 16 planes of 4 x 4 outputs (L = 256); per image a gap of 9, the two row phases (2L
    each) and a zero; the masks and two dy stacks (4L); 9 sums per pixel and filter.  40 x 36: one plane of 360
    outputs, its sums in two chunks of 256."""
    assert K.depthwise_s2_weight_stack(8, 8, 64) == 16 and K.depthwise_s2_weight_stack(8, 8, 5) == 5
    assert K.depthwise_s2_weight_stacked_scratch(8, 8, 64, 2) == (2 * (10 + 4 * 256) + 4 * 256, 2 * 9 * 256)
    assert K.depthwise_s2_weight_stacked_scratch(40, 36, 3, 1) == (2 * (38 + 4 * 360) + 4 * 360, 9 * 512)


@pytest.mark.parametrize("tasks", [1, 3])
def test_inf_and_nan_stay_in_their_plane(tasks, rng):
    """The padding taps are selects on the products, not products by 0: a non-finite pixel of x in the last
    column of a row or the last row of a plane (which the kernel reads as row 2p - 1 of the next plane and column
    2q - 1 of the next row), or of dy at a plane's corner, reaches only the sums the naive loops put it in."""
    x, dy = rng.standard_normal((3, 20, 8, 10)), rng.standard_normal((3, 20, 4, 5))
    x[0, 1, 3, -1], x[1, 2, 7, 4], x[2, 5, -1, -1] = np.inf, np.nan, -np.inf
    x[0, 7, 0, 0] = np.inf  # the first pixel: read by every output's tap (1, 1) or (2, 2) around it
    dy[1, 3, 0, 0], dy[2, 8, -1, -1], dy[0, 15, 0, -1] = np.inf, np.nan, -np.inf
    want = nv.conv2d_backward(dy, x, np.zeros((20, 1, 3, 3)), 2, 1, 1, 20)[1]
    got = _raw(dy, x, tasks)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert not finite.all() and finite[[0, 4, 6, 9, 14, 16]].all()  # the neighbouring planes keep finite sums
    assert_close(got[finite], want[finite], np.float64)


# --------------------------------------------------------------------------- stride 1: dx by the stacked forward

DX_ROLES = {"dy_stacks", "dx_stacks", "w_rotated", "zero_bias"}


@pytest.mark.parametrize("x_shape,dtype,stacked", [
    ((2, 4, 8, 8), np.float32, True),
    ((3, 40, 6, 10), np.float32, True),
    ((2, 4, 1, 1), np.float32, True),
    ((2, 4, 14, 14), np.float32, True),
    ((64, 64, 16, 16), np.float32, True),  # 16 columns, 2**20 numbers: depthwise_stacked_preferred
    ((64, 128, 16, 16), np.float32, False),
    ((2, 4, 16, 18), np.float32, False),
    ((2, 4, 8, 8), np.float64, True),
    ((2, 4, 8, 10), np.float64, False),
])
def test_plan_runs_the_stride1_input_gradient_as_a_stacked_forward(x_shape, dtype, stacked):
    N, C, H, W = x_shape
    plans = K.conv2d_plan(x_shape, (C, 1, 3, 3), 1, 1, dtype, groups=C, num_threads=3)
    roles = {b.role: b.shape for b in plans.input_grad.buffers}
    assert (set(roles) == DX_ROLES) == stacked, roles
    assert stacked == K.depthwise_stacked_preferred(N, C, H, W, np.dtype(dtype).itemsize)
    if stacked:
        tasks = min(3, -(-C // K.depthwise_stack(H, W, C)) * -(-N // 2))
        Lx, Ly = K.depthwise_stacked_scratch(H, W, C, 1)
        assert roles == {"dy_stacks": (tasks, Lx), "dx_stacks": (tasks, Ly), "w_rotated": (C, 1, 3, 3),
                         "zero_bias": (C,)}
    # a multiplier above 1 sums several dy planes into one dx plane: the general kernel
    assert not DX_ROLES & {b.role for b in K.conv2d_plan(x_shape, (2 * C, 1, 3, 3), 1, 1, dtype, groups=C,
                                                         num_threads=3).input_grad.buffers}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape", [(5, 40, 8, 8), (1, 3, 6, 4), (3, 5, 1, 7)])
def test_stride1_input_gradient_against_torch_autograd(x_shape, dtype, rng):
    torch = pytest.importorskip("torch")
    C = x_shape[1]
    assert {b.role for b in K.conv2d_plan(x_shape, (C, 1, 3, 3), 1, 1, dtype, groups=C).input_grad.buffers} == DX_ROLES
    assert_depthwise_backward_matches_torch(torch, x_shape, 1, 1, dtype, rng)


def test_stride1_input_gradient_by_central_differences(rng):
    x, w, b = rng.standard_normal((3, 4, 6, 5)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)
    assert {b.role for b in K.conv2d_plan(x.shape, w.shape, 1, 1, np.float64, groups=4).input_grad.buffers} == DX_ROLES
    y = K.conv2d_forward(x, w, b, 1, 1, groups=4)
    G = rng.standard_normal(y.shape)
    dx, _, _ = K.conv2d_backward(G, x, w, 1, 1, groups=4)
    with single_thread():  # x[n] moves only y[n]
        check_grad_by_block(dx, lambda: (K.conv2d_forward(x, w, b, 1, 1, groups=4) * G).sum(axis=(1, 2, 3)), x, "x")


def test_stride1_input_gradient_keeps_inf_and_nan_in_their_plane(rng):
    """dy's non-finite pixels at plane edges (the stacked forward reads across plane and row ends) reach only the
    dx pixels the naive loops put them in."""
    x, w = rng.standard_normal((3, 20, 8, 8)), rng.standard_normal((20, 1, 3, 3))
    dy = rng.standard_normal((3, 20, 8, 8))
    dy[0, 1, 0, -1], dy[1, 2, -1, 3], dy[2, 5, -1, -1] = np.inf, np.nan, -np.inf
    dy[0, 7, 0, 0], dy[1, 9, 4, 0] = np.inf, np.nan
    want = nv.conv2d_backward(dy, x, w, 1, 1, 1, 20)[0]
    got = K.conv2d_backward(dy, x, w, 1, 1, groups=20)[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert not finite.all() and finite[:, [0, 3, 6, 8, 10]].all()
    assert_close(got[finite], want[finite], np.float64)


# --------------------------------------------------------------------------- stride 1: the stacked weight gradient

S1_ROLES = {"x_weight_stacks", "dw_pixel_sums", "partial_dw_depthwise"}

#: (N, C, H, W, m): as RAW_CASES, with odd sizes (stride 1 takes any plane) and a plane of more than 512 pixels
S1_CASES = {
    "N5_C40_8x8": (5, 40, 8, 8, 1),
    "batch1_rect_mult2": (1, 3, 6, 10, 2),
    "N3_mult3_4x2": (3, 7, 4, 2, 3),
    "N2_C3_1x1": (2, 3, 1, 1, 1),
    "N4_C20_7x12_mult2": (4, 20, 7, 12, 2),
    "N3_C2_20x27": (3, 2, 20, 27, 1),
}


def _raw_s1(dy, x, tasks, fill=np.nan):
    _, C, H, W = x.shape
    Kout = dy.shape[1]
    Lx, La = K.depthwise_weight_stacked_scratch(H, W, C, Kout // C)
    dw = np.full((Kout, 1, 3, 3), fill, x.dtype)
    xs, acc = np.full((tasks, Lx), fill, x.dtype), np.full((tasks, La), fill, x.dtype)
    K.conv2d_backward_weight_depthwise_stacked(dy, x, dw, xs, acc, np.full((tasks, Kout, 9), fill, x.dtype))
    return dw


@pytest.mark.parametrize("tasks", [1, 3, 40])
@pytest.mark.parametrize("name", list(S1_CASES))
def test_raw_stride1_kernel_matches_naive(name, tasks, dtype, rng):
    N, C, H, W, m = S1_CASES[name]
    x, dy = randn(rng, (N, C, H, W), dtype), randn(rng, (N, m * C, H, W), dtype)
    want = nv.conv2d_backward(dy, x, np.zeros((m * C, 1, 3, 3)), 1, 1, 1, C)[1]
    assert_close(_raw_s1(dy, x, tasks), want, dtype, err_msg="dw")


@pytest.mark.parametrize("x_shape,dtype,stacked", [
    ((2, 4, 8, 8), np.float32, True),
    ((3, 40, 1, 1), np.float32, True),
    ((2, 4, 9, 12), np.float32, True),  # 12 columns: WEIGHT_STACKED_S1_MAX_WIDTH
    ((2, 4, 8, 13), np.float32, False),
    ((2, 4, 8, 8), np.float64, False),  # float64: never (WEIGHT_STACKED_S1_MAX_WIDTH_FLOAT64)
])
def test_plan_runs_the_stride1_stacked_weight_gradient_on_narrow_planes(x_shape, dtype, stacked):
    N, C, H, W = x_shape
    for m in (1, 2):
        plans = K.conv2d_plan(x_shape, (m * C, 1, 3, 3), 1, 1, dtype, groups=C, num_threads=3)
        roles = {b.role: b.shape for b in plans.weight_grad.buffers}
        assert (set(roles) == S1_ROLES) == stacked, roles
        assert stacked == K.depthwise_weight_stacked_preferred(W, np.dtype(dtype).itemsize)
        if stacked:
            tasks = min(3, -(-C // K.depthwise_weight_stack(H, W, C)) * -(-N // 2))
            Lx, La = K.depthwise_weight_stacked_scratch(H, W, C, m)
            assert roles == {"x_weight_stacks": (tasks, Lx), "dw_pixel_sums": (tasks, La),
                             "partial_dw_depthwise": (tasks, m * C, 9)}
    for stride, padding, dilation in ((1, 0, 1), (1, 2, 2), (2, 1, 1)):  # not 3x3 stride 1 padding 1
        if H < 3 - 2 * padding:
            continue
        plans = K.conv2d_plan(x_shape, (C, 1, 3, 3), stride, padding, dtype, groups=C, dilation=dilation)
        assert not {b.role for b in plans.weight_grad.buffers} & {"x_weight_stacks"}


@pytest.mark.parametrize("x_shape,m", [((5, 40, 8, 8), 1), ((3, 6, 7, 12), 2), ((1, 4, 1, 6), 3)])
def test_stride1_weight_gradient_against_torch_autograd(x_shape, m, rng):
    torch = pytest.importorskip("torch")
    C = x_shape[1]
    w_shape = (m * C, 1, 3, 3)
    assert {b.role for b in K.conv2d_plan(x_shape, w_shape, 1, 1, groups=C).weight_grad.buffers} == S1_ROLES
    assert_depthwise_backward_matches_torch(torch, x_shape, m, 1, np.float32, rng)


def test_stride1_weight_gradient_by_central_differences(rng):
    """float64 (the plan runs the general kernel there: the raw kernel is called directly)."""
    x, w, b = rng.standard_normal((3, 4, 6, 5)), rng.standard_normal((8, 1, 3, 3)), rng.standard_normal(8)
    y = K.conv2d_forward(x, w, b, 1, 1, groups=4)
    G = rng.standard_normal(y.shape)
    dw = _raw_s1(G, x, 3)
    with single_thread():  # w[k] moves only y[:, k]
        check_grad_by_block(dw, lambda: (K.conv2d_forward(x, w, b, 1, 1, groups=4) * G).sum(axis=(0, 2, 3)), w, "w")


@pytest.mark.parametrize("tasks", [1, 3])
def test_stride1_weight_gradient_keeps_inf_and_nan_in_their_plane(tasks, rng):
    """Non-finite pixels of x at row ends, plane ends and a plane's first pixel (read across by the neighbours'
    padding taps), and of dy at plane corners, reach only the sums the naive loops put them in."""
    x, dy = rng.standard_normal((3, 20, 6, 7)), rng.standard_normal((3, 20, 6, 7))
    x[0, 1, 3, -1], x[1, 2, -1, 4], x[2, 5, -1, -1], x[0, 7, 0, 0] = np.inf, np.nan, -np.inf, np.inf
    dy[1, 3, 0, 0], dy[2, 8, -1, -1], dy[0, 15, 0, -1] = np.inf, np.nan, -np.inf
    want = nv.conv2d_backward(dy, x, np.zeros((20, 1, 3, 3)), 1, 1, 1, 20)[1]
    got = _raw_s1(dy, x, tasks)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert not finite.all() and finite[[0, 4, 6, 9, 14, 16]].all()
    assert_close(got[finite], want[finite], np.float64)
