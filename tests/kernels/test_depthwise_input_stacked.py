"""The stacked input gradient of 3x3 stride-2 padding-1 depthwise layers on narrow planes
(``conv2d_backward_input_depthwise_s2_stacked``): the raw kernel against the naive loops and the general kernel, the
same bits whatever the task count, non-finite dy pixels at plane and row ends, the checked function against
PyTorch's autograd and central differences, and which kernel the plan runs where."""

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, assert_depthwise_backward_matches_torch, check_grad_by_block, randn, single_thread

from fastcnn import kernels as K

ROLES = {"dy_stacked_chunks", "dx_stacked_phases"}

#: float64 runs with ``-m slow`` (in CI's slow job): its compile alone is several seconds of the quick suite.
DTYPES = [np.float32, pytest.param(np.float64, marks=pytest.mark.slow)]


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param

#: (N, C, H, W, m): odd batches, channels not a multiple of the stack (16 planes of 8 x 8), multipliers 1-3, a
#: batch of 1, rectangles; dy rows of 1 to 9 columns (each zip width, whole and overlapping); planes of one dy
#: row (the Q + 1 pixels read past a stack then reach past the next plane); planes of more than STACK_PIXELS dy
#: pixels (40 x 36: chunks of whole rows) and a dy row wider than that (4 x 1040: chunks of one row's columns)
RAW_CASES = {
    "N5_C40_8x8": (5, 40, 8, 8, 1),
    "batch1_rect_mult2": (1, 3, 6, 10, 2),
    "N3_mult3_4x2": (3, 7, 4, 2, 3),
    "N2_C5_2x2": (2, 5, 2, 2, 1),
    "N3_C3_4x6": (3, 3, 4, 6, 1),
    "N2_C6_6x14": (2, 6, 6, 14, 1),
    "N4_C20_16x12_mult2": (4, 20, 16, 12, 2),
    "N3_C4_16x16": (3, 4, 16, 16, 1),
    "N2_C4_6x18": (2, 4, 6, 18, 1),
    "N3_C1_2x8": (3, 1, 2, 8, 1),
    "N1_C2_2x16": (1, 2, 2, 16, 1),
    "N3_C2_40x36": (3, 2, 40, 36, 1),
    "N2_C3_4x1040": (2, 3, 4, 1040, 1),
}


def _raw(dy, w, C, H, W, tasks, fill=np.nan):
    N, Kout = dy.shape[:2]
    Ld, Lx = K.depthwise_s2_input_stacked_scratch(H, W, C, Kout // C)
    dx = np.full((N, C, H, W), fill, dy.dtype)
    ds, xs = np.full((tasks, Ld), fill, dy.dtype), np.full((tasks, Lx), fill, dy.dtype)
    K.conv2d_backward_input_depthwise_s2_stacked(dy, w, dx, ds, xs)
    return dx


def _naive_dx(dy, w, C, H, W):
    return nv.conv2d_backward(dy, np.zeros((dy.shape[0], C, H, W)), w, 2, 1, 1, C)[0]


@pytest.mark.parametrize("tasks", [1, 3, 40])  # 40: more tasks than (stack, pair of images) items
@pytest.mark.parametrize("name", list(RAW_CASES))
def test_raw_kernel_matches_naive(name, tasks, dtype, rng):
    N, C, H, W, m = RAW_CASES[name]
    dy, w = randn(rng, (N, m * C, H // 2, W // 2), dtype), randn(rng, (m * C, 1, 3, 3), dtype)
    assert_close(_raw(dy, w, C, H, W, tasks), _naive_dx(dy, w, C, H, W), dtype, err_msg="dx")


@pytest.mark.parametrize("name", ["N5_C40_8x8", "batch1_rect_mult2", "N4_C20_16x12_mult2", "N3_C2_40x36"])
def test_raw_kernel_matches_the_general_kernel(name, dtype, rng):
    N, C, H, W, m = RAW_CASES[name]
    dy, w = randn(rng, (N, m * C, H // 2, W // 2), dtype), randn(rng, (m * C, 1, 3, 3), dtype)
    Hs, Ws, Et, Ew = K.depthwise_frame(H, W, 3, 3, 2, 2, 1, 1, 1, 1)
    Wf = Ws + Ew
    frames, outs = np.zeros((2, (Hs + Et + 1) * Wf), dtype), np.zeros((2, 8, Hs * Wf), dtype)
    want = np.full((N, C, H, W), np.nan, dtype)
    K.conv2d_backward_input_depthwise(dy, w, want, 2, 2, 1, 1, 1, 1, frames, outs)
    assert_close(_raw(dy, w, C, H, W, 2), want, dtype, err_msg="dx")


@pytest.mark.parametrize("shape", [(7, 40, 8, 8, 1), (5, 6, 6, 10, 2), (3, 2, 40, 36, 1)])
def test_results_do_not_depend_on_the_task_count(shape, rng):
    """Bit for bit, whatever the task count and the scratch's old contents."""
    N, C, H, W, m = shape
    dy, w = randn(rng, (N, m * C, H // 2, W // 2), np.float32), randn(rng, (m * C, 1, 3, 3), np.float32)
    one = _raw(dy, w, C, H, W, 1)
    for tasks, fill in ((2, np.nan), (3, 0.0), (40, np.inf)):
        np.testing.assert_array_equal(_raw(dy, w, C, H, W, tasks, fill), one)


@pytest.mark.parametrize("tasks", [1, 3])
@pytest.mark.parametrize("m", [1, 2])
def test_inf_and_nan_stay_in_their_plane(tasks, m, rng):
    """The neighbours (p, q + 1), (p + 1, q), (p + 1, q + 1) past a row's or plane's end are the next row's or
    plane's first pixels, selected out: a non-finite dy pixel in a plane's first row or column, at its first or
    last pixel, or in the last plane of the last image (channels 1, 4, 6, 8, 11, 19), reaches only the dx pixels
    the naive loops put it in: the channels before and after keep finite gradients."""
    C = 20
    dy, w = rng.standard_normal((3, m * C, 4, 5)), rng.standard_normal((m * C, 1, 3, 3))
    last = m - 1  # channel c's last filter: dy plane c*m + m - 1
    dy[0, m + last, 0, 0], dy[0, 4 * m + last, 2, 0], dy[1, 6 * m + last, 0, 3] = np.inf, np.nan, -np.inf
    dy[1, 8 * m + last, -1, -1], dy[2, 11 * m + last, 0, -1], dy[2, -1, -1, -1] = np.nan, np.inf, np.nan
    want = _naive_dx(dy, w, C, 8, 10)
    got = _raw(dy, w, C, 8, 10, tasks)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert not finite.all() and finite[:, [0, 2, 3, 5, 7, 9, 10, 12, 18]].all()
    assert_close(got[finite], want[finite], np.float64)


def test_scratch_sizes():
    """8 x 8 planes: stacks of 16 planes of 4 x 4 dy pixels (L = 256); two copied chunks of 256 dy pixels and the
    Q + 1 after them, the masks (2L), 9 weight copies per filter; the four phases of two images' chunks."""
    assert K.depthwise_s2_input_stack(8, 8, 64) == 16 and K.depthwise_s2_input_stack(8, 8, 5) == 5
    assert K.depthwise_s2_input_stacked_scratch(8, 8, 64, 1) == (2 * (256 + 5) + 2 * 256 + 9 * 256, 8 * 256)
    assert K.depthwise_s2_input_stacked_scratch(8, 8, 64, 2) == (2 * (256 + 5) + 2 * 256 + 18 * 256, 8 * 256)
    assert K.depthwise_s2_input_stacked_scratch(40, 36, 3, 1) == (2 * (256 + 19) + 11 * 360, 8 * 256)


@pytest.mark.parametrize("x_shape,m,dtype,stacked", [
    ((64, 32, 8, 8), 1, np.float32, True),
    ((64, 64, 8, 8), 1, np.float32, True),
    ((64, 128, 8, 8), 1, np.float32, True),
    ((64, 128, 4, 4), 1, np.float32, True),
    ((64, 64, 8, 8), 1, np.float64, True),
    ((2, 4, 8, 8), 2, np.float32, True),
    ((3, 5, 2, 2), 3, np.float32, True),
    ((2, 4, 12, 6), 1, np.float32, True),
    ((64, 128, 16, 16), 1, np.float32, True),  # 16 columns: INPUT_STACKED_MAX_WIDTH
    ((2, 4, 16, 18), 1, np.float32, False),  # wider: the general kernel
    ((2, 4, 32, 32), 1, np.float32, False),
    ((2, 4, 14, 14), 1, np.float64, True),  # 14 columns: INPUT_STACKED_MAX_WIDTH_FLOAT64
    ((2, 4, 16, 16), 1, np.float64, False),
    ((2, 4, 8, 7), 1, np.float32, False),  # odd width: not depthwise_s2_fits
    ((2, 4, 7, 8), 1, np.float32, False),  # odd height
])
def test_plan_runs_the_stacked_input_gradient_on_narrow_planes(x_shape, m, dtype, stacked):
    N, C, H, W = x_shape
    plans = K.conv2d_plan(x_shape, (m * C, 1, 3, 3), 2, 1, dtype, groups=C, num_threads=3)
    assert plans.input_grad.algorithm == "depthwise"
    roles = {b.role: b.shape for b in plans.input_grad.buffers}
    assert (set(roles) == ROLES) == stacked, roles
    assert stacked == (K.depthwise_s2_fits(H, W, 3, 3, 2, 2, 1, 1, 1, 1)
                       and K.depthwise_s2_input_stacked_preferred(W, np.dtype(dtype).itemsize))
    other = {b.role for p in (plans.forward, plans.weight_grad) for b in p.buffers}
    assert not other & ROLES  # the other passes run their own kernels
    if stacked:  # one task per (stack, pair of images) at most; the scratch as depthwise_s2_input_stacked_scratch
        tasks = min(3, -(-C // K.depthwise_s2_input_stack(H, W, C)) * -(-N // 2))
        Ld, Lx = K.depthwise_s2_input_stacked_scratch(H, W, C, m)
        assert roles == {"dy_stacked_chunks": (tasks, Ld), "dx_stacked_phases": (tasks, Lx)}


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (2, 2, 2), ((2, 1), 1, 1)])
def test_plan_runs_other_kernels_off_3x3_stride_2_padding_1(stride, padding, dilation):
    plans = K.conv2d_plan((2, 4, 8, 8), (4, 1, 3, 3), stride, padding, groups=4, dilation=dilation)
    assert not {b.role for b in plans.input_grad.buffers} & ROLES


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,m", [((5, 40, 8, 8), 1), ((3, 6, 12, 10), 2), ((1, 4, 4, 6), 3), ((2, 3, 2, 14), 1)])
def test_checked_backward_against_torch_autograd(x_shape, m, dtype, rng):
    torch = pytest.importorskip("torch")
    C = x_shape[1]
    w_shape = (m * C, 1, 3, 3)
    assert {b.role for b in K.conv2d_plan(x_shape, w_shape, 2, 1, dtype, groups=C).input_grad.buffers} == ROLES
    assert_depthwise_backward_matches_torch(torch, x_shape, m, 2, dtype, rng)


def test_input_gradient_by_central_differences(rng):
    x, w, b = rng.standard_normal((3, 4, 6, 8)), rng.standard_normal((8, 1, 3, 3)), rng.standard_normal(8)
    assert {b.role for b in K.conv2d_plan(x.shape, w.shape, 2, 1, np.float64, groups=4).input_grad.buffers} == ROLES
    y = K.conv2d_forward(x, w, b, 2, 1, groups=4)
    G = rng.standard_normal(y.shape)
    dx, _, _ = K.conv2d_backward(G, x, w, 2, 1, groups=4)
    with single_thread():  # x[n] moves only y[n]
        check_grad_by_block(dx, lambda: (K.conv2d_forward(x, w, b, 2, 1, groups=4) * G).sum(axis=(1, 2, 3)), x, "x")
