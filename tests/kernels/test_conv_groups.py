"""Grouped, depthwise and dilated convolutions, and padding="same"/"valid": every algorithm that applies.

Oracles: the naive loops (``naive.conv2d_forward/backward`` with groups and dilation), float64 central
differences, and PyTorch's autograd when it is installed.  ``EXPECTED`` is the plan "auto" chooses for
each case: moving a rule of ``conv_plan.select`` changes it visibly here.
"""

import functools
import re
import zlib

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, check_grad, randn, single_thread

import fastcnn
from fastcnn import kernels as K

# name -> (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CASES = {
    # groups 1, dilated
    "g1_dil2_pad2": (2, 3, 9, 8, 4, 3, 3, 1, 2, 2, 1),
    "g1_dil2_stride2": (2, 3, 10, 9, 4, 3, 3, 2, 1, 2, 1),
    "g1_rect_dil_same": (2, 2, 8, 7, 3, 3, 2, 1, "same", (2, 3), 1),
    "g1_even_kernel_same": (2, 3, 7, 6, 2, 2, 4, 1, "same", 1, 1),
    "g1_valid": (2, 3, 6, 7, 4, 3, 3, 1, "valid", 1, 1),
    # groups 2
    "g2_pad1": (3, 4, 7, 6, 6, 3, 3, 1, 1, 1, 2),
    "g2_stride2_valid": (2, 4, 9, 8, 4, 3, 3, 2, "valid", 1, 2),
    "g2_dil2_same": (2, 6, 9, 8, 4, 3, 3, 1, "same", 2, 2),
    "g2_dil_stride_rect": (2, 4, 11, 9, 2, 3, 2, (2, 1), (3, 1), (2, 3), 2),
    "g2_1x1": (2, 4, 5, 5, 6, 1, 1, 1, 0, 1, 2),
    "g2_kernel_eq_input": (2, 4, 4, 4, 4, 4, 4, 1, 0, 1, 2),
    "g2_wide_channels_N9": (9, 32, 5, 4, 32, 3, 3, 1, 1, 1, 2),
    "g4_even_same_batch_last": (9, 8, 6, 7, 8, 2, 2, 1, "same", 1, 4),
    # depthwise (groups == C)
    "dw_pad1": (2, 3, 7, 6, 3, 3, 3, 1, 1, 1, 3),
    "dw_mult2_stride2": (2, 3, 9, 8, 6, 3, 3, 2, 1, 1, 3),
    "dw_dil2_same": (2, 4, 8, 9, 4, 3, 3, 1, "same", 2, 4),
    "dw_even_kernel_same": (2, 3, 7, 6, 3, 2, 2, 1, "same", 1, 3),
    "dw_5x5_stride3_mult2": (1, 2, 11, 10, 4, 5, 5, 3, 2, 1, 2),
    "dw_rect_stride_dil_mult3": (2, 2, 11, 7, 6, 3, 2, (3, 2), (4, 1), (2, 3), 2),
    "dw_valid": (2, 2, 6, 6, 2, 3, 3, 1, "valid", 1, 2),
    "dw_1x1_stride2_pad1": (2, 3, 5, 5, 3, 1, 1, 2, 1, 1, 3),
    "dw_kernel_eq_input": (2, 2, 4, 4, 2, 4, 4, 1, 0, 1, 2),
    "dw_padding_ge_kernel": (2, 2, 5, 5, 2, 2, 2, 1, 3, 1, 2),
    "dw_stride_gt_kernel": (2, 2, 9, 9, 2, 2, 2, 3, 0, 1, 2),
    "dw_40_channels": (3, 40, 6, 5, 40, 3, 3, 1, 1, 1, 40),
    # 3x3, stride 2, padding 1, even planes: the forward pass runs conv2d_forward_depthwise_s2_stacked (below 12
    # columns; stacks of 16 planes of 8 x 8)
    "dw_s2_even_rect": (3, 5, 8, 10, 5, 3, 3, 2, 1, 1, 5),
    "dw_s2_mult2_batch1": (1, 4, 6, 4, 8, 3, 3, 2, 1, 1, 4),
    "dw_s2_mult3_2x2_plane": (5, 2, 2, 2, 6, 3, 3, 2, 1, 1, 2),
    "dw_s2_stacked_40_channels_N5": (5, 40, 8, 8, 40, 3, 3, 2, 1, 1, 40),  # stacks of 16, 16, 8; a lone image
    "dw_s2_stacked_6x6_mult2_N3": (3, 20, 6, 6, 40, 3, 3, 2, 1, 1, 20),  # 6 columns: rows copied by a plain loop
    "dw_s2_stacked_4x8_mult3": (2, 3, 4, 8, 9, 3, 3, 2, 1, 1, 3),
    # ... and conv2d_forward_depthwise_s2_rows (12 columns or more)
    "dw_s2_16x16_32_channels": (2, 32, 16, 16, 32, 3, 3, 2, 1, 1, 32),
    "dw_s2_rows_rect_mult2": (3, 3, 6, 14, 6, 3, 3, 2, 1, 1, 3),
    "dw_s2_rows_2x12_mult3_batch1": (1, 2, 2, 12, 6, 3, 3, 2, 1, 1, 2),
    "dw_s2_rows_70_wide": (2, 2, 4, 70, 2, 3, 3, 2, 1, 1, 2),
    # 3x3, stride 1, padding 1, planes at most 14 wide (16 for small inputs): the forward pass runs
    # conv2d_forward_depthwise_stacked
    # (stacks of 512 // (H*W) planes, two images per loop); dw_pad1 and dw_40_channels above too
    "dw_s1_stacked_8x8": (2, 16, 8, 8, 16, 3, 3, 1, 1, 1, 16),  # two stacks of 8 planes
    "dw_s1_stacked_4x4_N5": (5, 8, 4, 4, 8, 3, 3, 1, 1, 1, 8),  # one stack of all 8 planes; a lone image
    "dw_s1_stacked_rect_mult2_N3": (3, 6, 5, 12, 12, 3, 3, 1, 1, 1, 6),
    "dw_s1_stacked_40_channels_N3": (3, 40, 6, 6, 40, 3, 3, 1, 1, 1, 40),  # stacks of 14, 14, 12
    "dw_s1_stacked_mult3_batch1": (1, 5, 8, 8, 15, 3, 3, 1, 1, 1, 5),
    "dw_s1_stacked_14x14": (2, 3, 14, 14, 3, 3, 3, 1, 1, 1, 3),  # stacks of 2, 1
    "dw_s1_stacked_16x16": (2, 3, 16, 16, 3, 3, 3, 1, 1, 1, 3),  # the widest planes stacked (a small input)
    "dw_s1_stacked_1x1_plane": (3, 4, 1, 1, 4, 3, 3, 1, 1, 1, 4),  # every tap but the centre is padding
    "dw_s1_stacked_one_row_same": (2, 3, 1, 7, 6, 3, 3, 1, "same", 1, 3),
    # ... and the general kernel above 16 columns
    "dw_s1_general_17_wide": (2, 3, 5, 17, 3, 3, 3, 1, 1, 1, 3),
}

DW, IM2COL, NCHW, CL, BL, ROWS = "depthwise", "im2col", "nchw", "channel_last", "batch_last", "rows"
MM1, WHOLE, WG4 = "matmul_1x1", "matmul_whole_input", "winograd4"

# case -> (forward, weight_grad, input_grad) chosen by algorithm="auto"
EXPECTED = {
    # dilated, stride 1: the rules on the phase sub-images (batch N*dil_h*dil_w); with a stride: im2col
    "g1_dil2_pad2": (ROWS, ROWS, BL),
    "g1_dil2_stride2": (IM2COL,) * 3,
    "g1_rect_dil_same": (ROWS, ROWS, BL),
    "g1_even_kernel_same": (ROWS, ROWS, NCHW),
    "g1_valid": (ROWS, ROWS, NCHW),
    "g2_pad1": (ROWS, ROWS, NCHW),
    "g2_stride2_valid": (NCHW,) * 3,
    "g2_dil2_same": (ROWS, ROWS, BL),
    "g2_dil_stride_rect": (IM2COL,) * 3,
    "g2_1x1": (MM1,) * 3,
    "g2_kernel_eq_input": (WHOLE,) * 3,
    "g2_wide_channels_N9": (CL, CL, CL),
    "g4_even_same_batch_last": (ROWS, ROWS, BL),
    **{name: (DW,) * 3 for name in CASES if name.startswith("dw_")},
}


def _case(name):
    N, C, H, W, Kout, R, S, stride, padding, dilation, groups = CASES[name]
    return (N, C, H, W), (Kout, C // groups, R, S), stride, padding, dilation, groups


def _kw(dilation, groups):
    return {"dilation": dilation, "groups": groups}


@functools.cache
def _oracle(name, dtype):
    """Inputs (x, w, b, dy) of a case, seeded by its name, and the naive y, dx, dw, db (computed once per case)."""
    x_shape, w_shape, stride, padding, dilation, groups = _case(name)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x, w, b = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype), randn(rng, w_shape[:1], dtype)
    y = nv.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    dy = randn(rng, y.shape, dtype)
    return (x, w, b, dy), (y, *nv.conv2d_backward(dy, x, w, stride, padding, dilation, groups))


def _applies(algorithm, name):
    x_shape, w_shape, stride, padding, dilation, groups = _case(name)
    try:
        K.conv2d_plan(x_shape, w_shape, stride, padding, algorithm=algorithm, **_kw(dilation, groups))
    except ValueError:
        return False
    return True


def _algorithm_cases():
    return [pytest.param(name, algorithm, id=f"{algorithm}-{name}")
            for name in CASES for algorithm in ("auto", "direct") + K.CONV_ALGORITHMS if _applies(algorithm, name)]


def test_every_case_has_an_expected_plan():
    assert set(EXPECTED) == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_auto_selects_expected_algorithms(name):
    x_shape, w_shape, stride, padding, dilation, groups = _case(name)
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding, **_kw(dilation, groups))
    assert (plans.forward.algorithm, plans.weight_grad.algorithm, plans.input_grad.algorithm) == EXPECTED[name]
    g = plans.geometry
    assert g.groups == groups and (g.P, g.Q) == nv._conv_setup(x_shape, w_shape, stride, padding, dilation,
                                                                groups)[-2:]
    roles = {b.role for b in plans.forward.buffers}
    if groups > 1 and not g.is_depthwise:  # one call per group: the group copies are in the plan
        assert {"x_group", "y_group"} <= roles
        assert "per group" in plans.forward.layout and f"groups {groups}" in str(plans)
    if g.dilated and plans.forward.algorithm not in (IM2COL, DW):  # the phase sub-images are in the plan
        assert {"x_dilation_phases", "y_dilation_phases"} <= roles and "dilation phases" in plans.forward.layout


def test_every_named_algorithm_runs_some_case():
    """Each algorithm of CONV_ALGORITHMS computes at least one grouped or dilated case here."""
    covered = {algorithm for name in CASES for algorithm in K.CONV_ALGORITHMS if _applies(algorithm, name)}
    assert covered == set(K.CONV_ALGORITHMS)


@pytest.mark.parametrize("name,algorithm", _algorithm_cases())
def test_every_algorithm_matches_naive(name, algorithm, dtype):
    x_shape, w_shape, stride, padding, dilation, groups = _case(name)
    kw = _kw(dilation, groups)
    (x, w, b, dy), (want_y, *wanted) = _oracle(name, dtype)
    y = K.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm, **kw)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_close(y, want_y, dtype, err_msg="y")
    assert y.shape == K.conv2d_output_shape(x_shape, w_shape, stride, padding, **kw)
    dx, dw, db = K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm, **kw)
    for got, want, what in zip((dx, dw, db), wanted, ("dx", "dw", "db")):
        assert got.dtype == dtype and got.flags.c_contiguous, what
        assert_close(got, want, dtype, err_msg=what)
    none, dw2, db2 = K.conv2d_backward(dy, x, w, stride, padding, need_input_grad=False, algorithm=algorithm, **kw)
    assert none is None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("name", ["dw_mult2_stride2", "dw_s2_mult2_batch1", "dw_s1_stacked_mult3_batch1",
                                  "dw_5x5_stride3_mult2", "dw_even_kernel_same",
                                  "dw_rect_stride_dil_mult3", "g2_dil_stride_rect", "g1_even_kernel_same"])
def test_float64_gradients_match_central_differences(name, rng, one_thread):
    x_shape, w_shape, stride, padding, dilation, groups = _case(name)
    kw = _kw(dilation, groups)
    x, w, b = (randn(rng, s, np.float64) for s in (x_shape, w_shape, w_shape[:1]))
    y = K.conv2d_forward(x, w, b, stride, padding, **kw)
    G = rng.standard_normal(y.shape)
    dx, dw, db = K.conv2d_backward(G, x, w, stride, padding, **kw)

    def loss():
        return float(np.sum(K.conv2d_forward(x, w, b, stride, padding, **kw) * G))

    check_grad(dx, loss, x, "x")
    check_grad(dw, loss, w, "w")
    check_grad(db, loss, b, "b")


@pytest.mark.parametrize("width", [11, 10, 12])  # 10 (12): the forward pass runs conv2d_forward_depthwise_s2_stacked
#                                                   (_rows)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_depthwise_results_do_not_depend_on_the_tasks_but_dw_order(threads, width, rng):
    """Forward and dx are the same bits for any task count; dw (per-task partial sums) agrees to rounding."""
    x, w = randn(rng, (5, 7, 12, width), np.float32), randn(rng, (14, 1, 3, 3), np.float32)
    kw = {"groups": 7}
    y1 = K.conv2d_forward(x, w, None, 2, 1, **kw)
    dy = randn(rng, y1.shape, np.float32)
    dx1, dw1, _ = K.conv2d_backward(dy, x, w, 2, 1, **kw)
    before = fastcnn.get_num_threads()
    fastcnn.set_num_threads(min(threads, before))
    try:
        y = K.conv2d_forward(x, w, None, 2, 1, **kw)
        dx, dw, _ = K.conv2d_backward(dy, x, w, 2, 1, **kw)
    finally:
        fastcnn.set_num_threads(before)
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_array_equal(dx, dx1)
    assert_close(dw, dw1, np.float32)


def _raw_buffers(x_shape, w_shape, stride, padding, dilation, tasks, dtype):
    """The scratch arrays of the raw depthwise kernels, sized by ``depthwise_frame`` for ``tasks`` tasks."""
    (N, _, H, W), (Kout, _, R, S) = x_shape, w_shape
    (sh, sw), (ph, pw), (dh, dw) = (nv.pair(v) for v in (stride, padding, dilation))
    Hs, Ws, Et, Ew = K.depthwise_frame(H, W, R, S, sh, sw, ph, pw, dh, dw)
    P, Q = nv.conv_out(H, dh * (R - 1) + 1, sh, ph), nv.conv_out(W, dw * (S - 1) + 1, sw, pw)
    Wf, split = Ws + Ew, 2 if sw > 1 else 1
    return {"xs": np.empty((tasks, split * sh * sw * Hs * Ws + Ws), dtype), "ys": np.empty((tasks, P * Ws), dtype),
            "partial": np.empty((tasks, Kout, R * S), dtype),
            "frames": np.empty((tasks, (Hs + Et + 1) * Wf), dtype),
            "outs": np.empty((tasks, split * sh * sw, Hs * Wf), dtype), "y_shape": (N, Kout, P, Q)}


@pytest.mark.parametrize("tasks", [1, 4, 40])  # 40: more tasks than (image, channel) planes
@pytest.mark.parametrize("name", ["dw_mult2_stride2", "dw_rect_stride_dil_mult3", "dw_5x5_stride3_mult2"])
def test_raw_depthwise_kernels_match_naive(name, tasks, dtype, rng):
    x_shape, w_shape, stride, padding, dilation, groups = _case(name)
    (sh, sw), (ph, pw), (dh, dwl) = (nv.pair(v) for v in (stride, padding, dilation))
    x, w, b = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype), randn(rng, w_shape[:1], dtype)
    bufs = _raw_buffers(x_shape, w_shape, stride, padding, dilation, tasks, dtype)
    for a in ("xs", "ys", "frames", "outs", "partial"):
        bufs[a][...] = np.nan  # the kernels must not read what they did not write
    y = np.full(bufs["y_shape"], np.nan, dtype)
    K.conv2d_forward_depthwise(x, w, b, y, sh, sw, ph, pw, dh, dwl, bufs["xs"], bufs["ys"])
    assert_close(y, nv.conv2d_forward(x, w, b, stride, padding, dilation, groups), dtype, err_msg="y")
    dy = randn(rng, y.shape, dtype)
    want_dx, want_dw, _ = nv.conv2d_backward(dy, x, w, stride, padding, dilation, groups)
    dw = np.full(w.shape, np.nan, dtype)
    K.conv2d_backward_weight_depthwise(dy, x, dw, sh, sw, ph, pw, dh, dwl, bufs["xs"], bufs["ys"], bufs["partial"])
    assert_close(dw, want_dw, dtype, err_msg="dw")
    dx = np.full(x.shape, np.nan, dtype)
    K.conv2d_backward_input_depthwise(dy, w, dx, sh, sw, ph, pw, dh, dwl, bufs["frames"], bufs["outs"])
    assert_close(dx, want_dx, dtype, err_msg="dx")


def test_depthwise_plan_names_its_buffers():
    # float64: 16 columns are too wide for the stacked weight gradient there (test_depthwise_backward_stacked.py)
    plans = K.conv2d_plan((64, 32, 16, 16), (32, 1, 3, 3), 2, 1, np.float64, groups=32, num_threads=2)
    assert {p.algorithm for p in (plans.forward, plans.weight_grad, plans.input_grad)} == {DW}
    roles = {b.role: b.shape for p in (plans.weight_grad, plans.input_grad) for b in p.buffers}
    # stride 2: 4 phases of 9 x 9 pixels, the padded rows before their columns are split, one row of slack;
    # 8 x 9 wide rows of dy
    assert roles["x_phases"] == (2, 2 * 4 * 9 * 9 + 9) and roles["dy_wide_rows"] == (2, 8 * 9)
    assert roles["partial_dw_depthwise"] == (2, 32, 9) and roles["dx_phases"] == (2, 8, 9 * 10)
    # the forward pass (3x3, stride 2, padding 1, even plane 16 wide): a zero row of 16, the two row phases
    # of 8 x 16 and the mask of the 8 x 8 output plane
    forward = {b.role: b.shape for b in plans.forward.buffers}
    assert forward == {"x_row_phases": (2, 16 + 2 * 8 * 16 + 8 * 8)}
    # 8 wide, multiplier 2: stacks of 16 planes of 4 x 4 outputs (L = 256 pixels); per image a zero gap of 9, the
    # two row phases (2L each) and a zero; the masks (2L), the weight copies (2 filters x 10 rows of L); the outputs
    # of two stacks.  One task per (stack, pair of images) at most: 2 stacks x 1 pair here
    stacked = K.conv2d_plan((2, 32, 8, 8), (64, 1, 3, 3), 2, 1, groups=32, num_threads=3).forward
    assert {b.role: b.shape for b in stacked.buffers} == {
        "x_stacked_row_phases": (2, 2 * (10 + 4 * 256) + 2 * 256 + 2 * 10 * 256), "y_stacks": (2, 2 * 256)}
    assert K.depthwise_s2_stacked_scratch(8, 8, 32, 2) == stacked.buffers[0].shape[1:] + stacked.buffers[1].shape[1:]
    assert plans.memory_bytes("backward")["total"] < 64 * 1024  # no activation-sized copy


_S2_ROLES = {"rows": {"x_row_phases"}, "columns": {"x_column_phases", "wide_rows"},
             "stacked": {"x_stacked_row_phases", "y_stacks"}, "stride1": {"x_stacks", "y_stacks"},
             None: {"x_phases", "wide_rows"}}


@pytest.mark.parametrize("shape,kernel", [
    (((2, 4, 16, 16), (4, 1, 3, 3), 2, 1, 1), "rows"),
    (((2, 4, 4, 12), (4, 1, 3, 3), 2, 1, 1), "rows"),  # 12 columns: _conv_depthwise_s2.ROWS_MIN_WIDTH
    (((2, 4, 16, 10), (4, 1, 3, 3), 2, 1, 1), "stacked"),
    (((2, 4, 8, 10), (4, 1, 3, 3), 2, 1, 1), "stacked"),  # 10 columns: _conv_depthwise_s2_stacked.STACKED_MAX_WIDTH
    (((2, 4, 8, 8), (4, 1, 3, 3), 2, 1, 1), "stacked"),
    (((1, 3, 2, 6), (6, 1, 3, 3), 2, 1, 1), "stacked"),  # multiplier 2, two rows
    (((3, 5, 16, 2), (5, 1, 3, 3), 2, 1, 1), "stacked"),
    (((2, 4, 15, 16), (4, 1, 3, 3), 2, 1, 1), None),  # odd height
    (((2, 4, 16, 15), (4, 1, 3, 3), 2, 1, 1), None),  # odd width
    (((2, 4, 16, 16), (4, 1, 3, 3), 2, 0, 1), None),  # no padding
    (((2, 4, 16, 16), (4, 1, 3, 3), 1, 1, 1), "stride1"),  # stride 1: the stride-1 stacked kernel
    (((2, 4, 16, 18), (4, 1, 3, 3), 1, 1, 1), None),  # stride 1, wider
    (((2, 4, 16, 16), (4, 1, 3, 3), (2, 1), 1, 1), None),
    (((2, 4, 16, 16), (4, 1, 3, 3), 2, 1, 2), None),  # dilated
    (((2, 4, 16, 16), (4, 1, 5, 5), 2, 1, 1), None),
])
def test_depthwise_forward_plan_takes_the_stride2_kernel_where_it_fits(shape, kernel):
    x_shape, w_shape, stride, padding, dilation = shape
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding, groups=x_shape[1], dilation=dilation)
    assert plans.forward.algorithm == DW
    assert {b.role for b in plans.forward.buffers} == _S2_ROLES[kernel]
    (_, _, H, W), (_, _, R, S) = x_shape, w_shape
    (sh, sw), (dh, dwl) = nv.pair(stride), nv.pair(dilation)
    assert K.depthwise_s2_fits(H, W, R, S, sh, sw, padding, padding, dh, dwl) == (kernel not in (None, "stride1"))
    # the other passes always run the general kernels
    other = {b.role for p in (plans.weight_grad, plans.input_grad) for b in p.buffers}
    assert not other & (_S2_ROLES["rows"] | _S2_ROLES["stacked"] | _S2_ROLES["stride1"] | {"x_column_phases"})


@pytest.mark.parametrize("tasks", [1, 3, 40])  # 40: more tasks than (image, channel) planes
@pytest.mark.parametrize("kernel", ["columns", "rows", "stacked"])  # each raw kernel computes every even plane
@pytest.mark.parametrize("name", ["dw_s2_even_rect", "dw_s2_mult2_batch1", "dw_s2_mult3_2x2_plane",
                                  "dw_s2_stacked_40_channels_N5", "dw_s2_stacked_6x6_mult2_N3",
                                  "dw_s2_rows_rect_mult2", "dw_s2_rows_2x12_mult3_batch1", "dw_s2_rows_70_wide"])
def test_raw_depthwise_s2_forward_matches_naive(name, kernel, tasks, dtype, rng):
    x_shape, w_shape, stride, padding, dilation, groups = _case(name)
    (N, _, H, W), Kout = x_shape, w_shape[0]
    x, w, b = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype), randn(rng, w_shape[:1], dtype)
    y = np.full((N, Kout, H // 2, W // 2), np.nan, dtype)
    if kernel == "rows":
        xs = np.full((tasks, K.depthwise_s2_rows_scratch(H, W)), np.nan, dtype)  # never read unwritten
        K.conv2d_forward_depthwise_s2_rows(x, w, b, y, xs)
    elif kernel == "stacked":
        Lx, Ly = K.depthwise_s2_stacked_scratch(H, W, x_shape[1], Kout // x_shape[1])
        xs, ys = np.full((tasks, Lx), np.nan, dtype), np.full((tasks, Ly), np.nan, dtype)
        K.conv2d_forward_depthwise_s2_stacked(x, w, b, y, xs, ys)
    else:
        Lx, Ly = K.depthwise_s2_scratch(H, W)
        xs, ys = np.full((tasks, Lx), np.nan, dtype), np.full((tasks, Ly), np.nan, dtype)
        K.conv2d_forward_depthwise_s2(x, w, b, y, xs, ys)
    assert_close(y, nv.conv2d_forward(x, w, b, stride, padding, dilation, groups), dtype, err_msg="y")


@pytest.mark.parametrize("kernel", ["columns", "rows", "stacked"])
@pytest.mark.parametrize("width", [8, 12])
def test_depthwise_s2_forward_keeps_inf_and_nan_where_they_belong(kernel, width, rng):
    """The padding (left column; row above a plane, which the stacked kernel reads from the plane before) is a
    select, not a product by 0: a non-finite pixel in the last column of a row, or in the last row of a plane,
    reaches only the outputs that read it (the naive loops' pattern), not column 0 of the next rows."""
    x, w, b = randn(rng, (2, 3, 8, width), np.float64), randn(rng, (3, 1, 3, 3), np.float64), np.zeros(3)
    x[0, 1, 3, -1], x[1, 2, 4, -1], x[1, 0, 7, -1] = np.inf, np.nan, -np.inf  # 7: the last row
    x[0, 0, 7, 2] = np.nan  # the last row of plane 0: the stacked kernel's row above plane 1
    y = np.full((2, 3, 4, width // 2), np.nan)
    if kernel == "rows":
        K.conv2d_forward_depthwise_s2_rows(x, w, b, y, np.full((2, K.depthwise_s2_rows_scratch(8, width)), np.nan))
    elif kernel == "stacked":
        Lx, Ly = K.depthwise_s2_stacked_scratch(8, width, 3, 1)
        K.conv2d_forward_depthwise_s2_stacked(x, w, b, y, np.full((1, Lx), np.nan), np.full((1, Ly), np.nan))
    else:
        Lx, Ly = K.depthwise_s2_scratch(8, width)
        K.conv2d_forward_depthwise_s2(x, w, b, y, np.full((2, Lx), np.nan), np.full((2, Ly), np.nan))
    want = nv.conv2d_forward(x, w, b, 2, 1, 1, 3)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(want))
    finite = np.isfinite(want)
    assert finite[:, :, :, 0].all() and not finite.all()
    assert_close(y[finite], want[finite], np.float64)


_S1_CASES = ["dw_pad1", "dw_40_channels", "dw_s1_stacked_8x8", "dw_s1_stacked_4x4_N5", "dw_s1_stacked_rect_mult2_N3",
             "dw_s1_stacked_40_channels_N3", "dw_s1_stacked_mult3_batch1", "dw_s1_stacked_14x14", "dw_s1_stacked_16x16",
             "dw_s1_stacked_1x1_plane", "dw_s1_stacked_one_row_same", "dw_s1_general_17_wide"]


@pytest.mark.parametrize("shape,stacked", [
    (((2, 4, 8, 8), (4, 1, 3, 3), 1, 1, 1), True),
    (((2, 4, 4, 4), (4, 1, 3, 3), 1, 1, 1), True),
    (((2, 4, 14, 14), (4, 1, 3, 3), 1, 1, 1), True),
    (((64, 256, 14, 14), (256, 1, 3, 3), 1, 1, 1), True),  # 14 columns (STACKED_MAX_WIDTH): any input
    (((2, 4, 40, 14), (8, 1, 3, 3), 1, 1, 1), True),  # the width decides
    (((2, 4, 16, 16), (4, 1, 3, 3), 1, 1, 1), True),  # 16 columns (STACKED_WIDE_MAX_WIDTH): small inputs
    (((64, 64, 16, 16), (64, 1, 3, 3), 1, 1, 1), True),  # 2**20 numbers: STACKED_WIDE_MAX_INPUT
    (((64, 65, 16, 16), (65, 1, 3, 3), 1, 1, 1), False),
    (((64, 128, 16, 16), (128, 1, 3, 3), 1, 1, 1), False),
    (((2, 4, 3, 1), (4, 1, 3, 3), 1, 1, 1), True),
    (((2, 4, 8, 8), (4, 1, 3, 3), 1, "same", 1), True),
    (((2, 4, 14, 17), (4, 1, 3, 3), 1, 1, 1), False),
    (((2, 4, 32, 32), (4, 1, 3, 3), 1, 1, 1), False),
    (((2, 4, 8, 8), (4, 1, 3, 3), 1, 0, 1), False),  # no padding
    (((2, 4, 8, 8), (4, 1, 3, 3), 1, 2, 2), False),  # dilated
    (((2, 4, 8, 8), (4, 1, 5, 5), 1, 2, 1), False),
    (((2, 4, 8, 8), (4, 1, 3, 3), (1, 2), 1, 1), False),
    (((2, 4, 8, 8), (4, 1, 3, 3), 2, 1, 1), False),  # stride 2: the stride-2 stacked kernel
])
def test_depthwise_forward_plan_takes_the_stacked_stride1_kernel_on_narrow_planes(shape, stacked):
    x_shape, w_shape, stride, padding, dilation = shape
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding, groups=x_shape[1], dilation=dilation, num_threads=3)
    assert plans.forward.algorithm == DW
    roles = {b.role for b in plans.forward.buffers}
    assert (roles == {"x_stacks", "y_stacks"}) == stacked, roles
    (N, C, H, W), (R, S) = x_shape, w_shape[2:]
    (sh, sw), (ph, pw), (dh, dwl) = (nv.pair(v) for v in (stride, 1 if padding == "same" else padding, dilation))
    assert stacked == (K.depthwise_stacked_fits(H, W, R, S, sh, sw, ph, pw, dh, dwl)
                       and K.depthwise_stacked_preferred(N, C, H, W))
    other = {b.role for p in (plans.weight_grad, plans.input_grad) for b in p.buffers}
    assert not other & {"x_stacks", "y_stacks"}  # the other passes run the general kernels
    if stacked:  # one task per (stack, pair of images) at most; the scratch as depthwise_stacked_scratch says
        G = K.depthwise_stack(H, W, C)
        Lx, Ly = K.depthwise_stacked_scratch(H, W, C, w_shape[0] // C)
        tasks = min(3, -(-C // G) * -(-N // 2))
        assert {b.role: b.shape for b in plans.forward.buffers} == {"x_stacks": (tasks, Lx), "y_stacks": (tasks, Ly)}


@pytest.mark.parametrize("W,stacked", [(4, True), (8, True), (9, False), (14, False)])
def test_float64_plans_stack_narrower_planes(W, stacked):
    """float64 pixels are twice the bytes: the plan stacks planes at most 8 columns wide (STACKED_MAX_WIDTH_FLOAT64)."""
    plans = K.conv2d_plan((2, 4, 6, W), (4, 1, 3, 3), 1, 1, np.float64, groups=4)
    assert ({b.role for b in plans.forward.buffers} == {"x_stacks", "y_stacks"}) == stacked
    assert K.depthwise_stacked_preferred(2, 4, 6, W, 8) == stacked and K.depthwise_stacked_preferred(2, 4, 6, W)


def test_depthwise_stacked_scratch_sizes():
    """8 x 8 planes: stacks of 8 planes (L = 512 pixels); per image a gap of 9, the stack and a gap of 9; the row
    and column numbers (2L), the weight copies (m filters x 10 rows of L); the outputs of two stacks."""
    assert K.depthwise_stack(8, 8, 64) == 8 and K.depthwise_stack(8, 8, 5) == 5 and K.depthwise_stack(32, 32, 4) == 1
    assert K.depthwise_stacked_scratch(8, 8, 64, 2) == (2 * (512 + 18) + 2 * 512 + 2 * 10 * 512, 2 * 512)


@pytest.mark.parametrize("kernel", ["stacked", "general"])
@pytest.mark.parametrize("name", _S1_CASES)
def test_raw_depthwise_stride1_forward_matches_naive(name, kernel, dtype, rng):
    """Both stride-1 forward kernels on every stride-1 case; the stacked kernel gives the same bits for 1, 3 and 40
    tasks (40: more tasks than items) and never reads scratch it did not write (NaN-filled)."""
    x_shape, w_shape, stride, padding, dilation, groups = _case(name)
    (N, C, H, W), Kout = x_shape, w_shape[0]
    x, w, b = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype), randn(rng, w_shape[:1], dtype)
    want = nv.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    first = None
    for tasks in (1, 3, 40):
        y = np.full((N, Kout, H, W), np.nan, dtype)
        if kernel == "stacked":
            Lx, Ly = K.depthwise_stacked_scratch(H, W, C, Kout // C)
            K.conv2d_forward_depthwise_stacked(x, w, b, y, np.full((tasks, Lx), np.nan, dtype),
                                               np.full((tasks, Ly), np.nan, dtype))
        else:
            bufs = _raw_buffers(x_shape, w_shape, 1, 1, 1, tasks, dtype)
            K.conv2d_forward_depthwise(x, w, b, y, 1, 1, 1, 1, 1, 1, np.full_like(bufs["xs"], np.nan),
                                       np.full_like(bufs["ys"], np.nan))
        assert_close(y, want, dtype, err_msg=f"y, {tasks} tasks")
        if first is None:
            first = y
        np.testing.assert_array_equal(y, first)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the naive loops' inf - inf
@pytest.mark.parametrize("kernel", ["stacked", "general"])
@pytest.mark.parametrize("shape", [(3, 5, 8, 8), (2, 3, 4, 6), (2, 2, 1, 5), (3, 20, 6, 6)])
def test_depthwise_stride1_forward_keeps_inf_and_nan_where_they_belong(kernel, shape, rng):
    """The padding is a select, not a product by 0: a non-finite pixel on a plane's edge (first or last row or
    column; the stacked kernel reads the neighbouring row, plane or image there) reaches only the outputs that
    read it, as in the naive loops."""
    N, C, H, W = shape
    x, w, b = randn(rng, shape, np.float64), randn(rng, (2 * C, 1, 3, 3), np.float64), randn(rng, 2 * C, np.float64)
    for n in range(N):
        for c in range(C):
            x[n, c, rng.integers(H), (0, W - 1)[(n + c) % 2]] = (np.inf, np.nan, -np.inf)[(n + 2 * c) % 3]
            x[n, c, (0, H - 1)[(n + c + 1) % 2], rng.integers(W)] = (np.nan, np.inf)[c % 2]
    y = np.full((N, 2 * C, H, W), np.nan)
    if kernel == "stacked":
        Lx, Ly = K.depthwise_stacked_scratch(H, W, C, 2)
        K.conv2d_forward_depthwise_stacked(x, w, b, y, np.full((2, Lx), np.nan), np.full((2, Ly), np.nan))
    else:
        bufs = _raw_buffers(shape, (2 * C, 1, 3, 3), 1, 1, 1, 2, np.float64)
        K.conv2d_forward_depthwise(x, w, b, y, 1, 1, 1, 1, 1, 1, bufs["xs"], bufs["ys"])
    want = nv.conv2d_forward(x, w, b, 1, 1, 1, C)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(want))
    finite = np.isfinite(want)
    assert finite.any() and not finite.all()
    assert_close(y[finite], want[finite], np.float64)


@pytest.mark.parametrize("algorithm,shape", [
    (DW, ((8, 32, 16, 16), (64, 1, 3, 3), 2, 1, 1, 32)),
    (DW, ((8, 40, 8, 8), (40, 1, 3, 3), 1, 1, 1, 40)),  # the stride-1 stacked forward
    (CL, ((8, 32, 12, 12), (32, 8, 3, 3), 1, 1, 1, 4)),  # one call per group
    (CL, ((8, 16, 12, 12), (32, 16, 3, 3), 1, 2, 2, 1)),  # on the dilation phases
    (ROWS, ((4, 8, 11, 10), (8, 4, 2, 2), 1, "same", 1, 2)),  # grouped, and x zero-extended for "same"
    (IM2COL, ((4, 8, 12, 12), (8, 8, 3, 3), 2, 2, 2, 1)),
])
def test_plan_memory_is_what_the_kernels_allocate(algorithm, shape, rng):
    """The plan's Python-allocated buffers are what tracemalloc sees (slack: array headers and small objects)."""
    traced_extra_bytes = pytest.importorskip("fastcnn.bench.memory").traced_extra_bytes
    x_shape, w_shape, stride, padding, dilation, groups = shape
    kw = _kw(dilation, groups)
    x, w, b = randn(rng, x_shape, np.float32), randn(rng, w_shape, np.float32), randn(rng, w_shape[:1], np.float32)
    dy = randn(rng, K.conv2d_output_shape(x_shape, w_shape, stride, padding, **kw), np.float32)
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding, algorithm=algorithm, **kw)
    calls = {
        "forward": lambda: K.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm, **kw),
        "backward_weight": lambda: K.conv2d_backward(dy, x, w, stride, padding, False, algorithm=algorithm, **kw),
        "backward": lambda: K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm, **kw),
    }
    for op, call in calls.items():
        call()  # compile first: Numba's compiler allocates too
        model = plans.memory_bytes(op)["numpy"]
        traced = traced_extra_bytes(call)
        assert abs(traced - model) <= 65536 + 0.02 * model, (op, traced, model)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("algorithm,name,needs", [
    (DW, "g2_pad1", "groups equal to the input channels"),
    (CL, "g1_dil2_stride2", "dilation 1 or stride 1, got dilation (2, 2) with stride (2, 2)"),
    ("winograd4", "g1_dil2_stride2", "dilation 1 or stride 1"),
    (BL, "g2_dil_stride_rect", "dilation 1 or stride 1"),
    (MM1, "g2_pad1", "1x1 kernel"),
])
def test_inapplicable_algorithm_is_refused(algorithm, name, needs):
    x_shape, w_shape, stride, padding, dilation, groups = _case(name)
    with pytest.raises(ValueError, match=f"conv2d_plan: algorithm '{algorithm}' needs .*{re.escape(needs)}"):
        K.conv2d_plan(x_shape, w_shape, stride, padding, algorithm=algorithm, **_kw(dilation, groups))
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    with pytest.raises(ValueError, match=f"conv2d_forward: algorithm '{algorithm}' needs"):
        K.conv2d_forward(x, w, None, stride, padding, algorithm=algorithm, **_kw(dilation, groups))


X4, W_G2 = np.zeros((2, 4, 6, 6), np.float32), np.zeros((6, 2, 3, 3), np.float32)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"groups": 3}, ValueError, r"in_channels \(4\) must be divisible by groups \(3\)"),
    ({"groups": 0}, ValueError, "groups must be at least 1, got 0"),
    ({"groups": 2.0}, TypeError, "groups must be an int, got float"),
    ({"groups": True}, TypeError, "groups must be an int, got bool"),
    ({"groups": 4}, ValueError, r"out_channels \(6, the weight's first axis\) must be divisible by groups \(4\)"),
    ({"groups": 4, "w": np.zeros((8, 2, 3, 3), np.float32)}, ValueError,
     r"input has 4 channels but weight expects 8 \(2 per group x groups=4\)"),
    ({"groups": 1}, ValueError, "input has 4 channels but weight expects 2"),
    ({"groups": 2, "dilation": 0}, ValueError, "dilation must be positive, got 0"),
    ({"groups": 2, "dilation": (1, -1)}, ValueError, "dilation must be positive"),
    ({"groups": 2, "dilation": 1.5}, TypeError, "dilation must be an int or a pair of ints"),
    ({"groups": 2, "stride": 2, "padding": "same"}, ValueError, "padding='same' needs stride 1"),
    ({"groups": 2, "padding": "full"}, ValueError, "padding must be 'same', 'valid', an int or a pair of ints"),
    ({"groups": 2, "dilation": 3}, ValueError, r"kernel 3x3 with dilation \(3, 3\) spans 7x7 and is larger than"),
])
def test_bad_grouping_arguments_are_refused(kwargs, exc, match):
    kwargs = dict(kwargs)
    stride, padding, w = kwargs.pop("stride", 1), kwargs.pop("padding", 0), kwargs.pop("w", W_G2)
    with pytest.raises(exc, match="conv2d_forward: " + match):
        K.conv2d_forward(X4, w, None, stride, padding, **kwargs)
    with pytest.raises(exc, match="conv2d_plan: " + match):
        K.conv2d_plan(X4.shape, w.shape, stride, padding, **kwargs)


def test_out_channels_not_divisible_by_groups_is_refused():
    with pytest.raises(ValueError, match=r"conv2d_backward: out_channels \(5, the weight's first axis\) must be "
                                         r"divisible by groups \(2\)"):
        K.conv2d_backward(np.zeros((2, 5, 4, 4)), X4.astype(np.float64), np.zeros((5, 2, 3, 3)), groups=2)


# --------------------------------------------------------------------------- im2col with dilation, "same" sizes


def test_im2col_and_col2im_with_dilation_match_naive(rng):
    x = randn(rng, (2, 3, 9, 8), np.float64)
    cols = K.im2col(x, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 3))
    assert_close(cols, nv.im2col(x, (3, 2), (2, 1), (2, 1), (2, 3)), np.float64)
    back = K.col2im(cols, x.shape, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 3))
    assert_close(back, nv.col2im(cols, x.shape, (3, 2), (2, 1), (2, 1), (2, 3)), np.float64)


@pytest.mark.parametrize("kernel,dilation", [(3, 1), (2, 1), (4, 1), (3, 2), (2, 3), ((5, 2), (1, 3))])
def test_same_padding_keeps_the_size_as_torch_does(kernel, dilation):
    shape = K.conv2d_output_shape((1, 2, 7, 6), (3, 2, *nv.pair(kernel)), 1, "same", dilation=dilation)
    assert shape == (1, 3, 7, 6)
    assert K.conv2d_output_shape((1, 2, 7, 6), (3, 2, *nv.pair(kernel)), 1, "valid", dilation=dilation) == \
        K.conv2d_output_shape((1, 2, 7, 6), (3, 2, *nv.pair(kernel)), 1, 0, dilation=dilation)


# --------------------------------------------------------------------------- PyTorch


TORCH_CASES = {
    "depthwise_multiplier2": ((3, 4, 10, 9), (8, 1, 3, 3), 1, 1, 1, 4),
    "depthwise_stride2_multiplier2": ((3, 4, 11, 10), (8, 1, 3, 3), 2, 1, 1, 4),
    "depthwise_stride2_even_multiplier2": ((3, 4, 10, 12), (8, 1, 3, 3), 2, 1, 1, 4),
    "depthwise_stride2_16x16": ((2, 16, 16, 16), (16, 1, 3, 3), 2, 1, 1, 16),
    "depthwise_stride2_8x8": ((3, 8, 8, 8), (8, 1, 3, 3), 2, 1, 1, 8),
    "grouped": ((3, 6, 8, 9), (9, 2, 3, 3), 1, 1, 1, 3),
    "dilated": ((2, 3, 11, 10), (5, 3, 3, 3), 1, 2, 2, 1),
    "grouped_dilated_strided": ((2, 4, 12, 11), (6, 2, 3, 2), (2, 1), (1, 2), (2, 3), 2),
    "depthwise_same_even_kernel": ((2, 3, 7, 8), (6, 1, 4, 2), 1, "same", (1, 2), 3),
    "depthwise_8x8_stacked_multiplier2": ((3, 20, 8, 8), (40, 1, 3, 3), 1, 1, 1, 20),
    "depthwise_stride1_18_wide_general": ((2, 3, 5, 18), (3, 1, 3, 3), 1, 1, 1, 3),
    "same_dilated": ((2, 4, 9, 9), (4, 4, 3, 3), 1, "same", 3, 1),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # torch's own zero-padded copy
@pytest.mark.parametrize("name", list(TORCH_CASES))
@pytest.mark.parametrize("algorithm", ["auto", "nchw", "im2col"])
def test_against_torch_autograd(name, algorithm, rng):
    torch = pytest.importorskip("torch")
    x_shape, w_shape, stride, padding, dilation, groups = TORCH_CASES[name]
    kw = _kw(dilation, groups)
    x, w, b = (randn(rng, s, np.float64) for s in (x_shape, w_shape, w_shape[:1]))
    xt, wt, bt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, nv.pair(stride), padding if isinstance(padding, str)
                                    else nv.pair(padding), nv.pair(dilation), groups)
    y = K.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm, **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    want = torch.autograd.grad(yt, (xt, wt, bt), torch.from_numpy(dy))
    got = K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm, **kw)
    for g, t, what in zip(got, want, ("dx", "dw", "db")):
        np.testing.assert_allclose(g, t.numpy(), rtol=1e-10, atol=1e-10, err_msg=what)


def test_tuned_plans_time_only_what_applies_to_a_grouped_layer(rng):
    K.clear_tuned_plans()
    try:
        x, w = randn(rng, (4, 6, 6, 6), np.float32), randn(rng, (6, 2, 3, 3), np.float32)
        with single_thread():
            y = K.conv2d_forward(x, w, None, 1, 1, algorithm="tuned", groups=3)
        assert_close(y, nv.conv2d_forward(x, w, None, 1, 1, 1, 3), np.float32)
        entry = next(e for e in K.tuned_plans() if e["op"] == "forward")
        assert entry["geometry"]["groups"] == 3 and DW not in entry["seconds"]
        depthwise = K.conv2d_plan((4, 6, 6, 6), (6, 1, 3, 3), 1, 1, algorithm="tuned", groups=6, num_threads=1)
        assert depthwise.forward.algorithm in K.CONV_ALGORITHMS
    finally:
        K.clear_tuned_plans()
