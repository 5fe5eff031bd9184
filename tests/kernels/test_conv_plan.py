"""Convolution plans: which algorithm each oracle case selects per pass, and every algorithm against the naive loops.

Moving a threshold of :mod:`fastcnn.kernels.conv_plan` changes ``EXPECTED``:
that is meant to be a visible change in this file.
"""

import functools
import gc
import tracemalloc
import zlib

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, randn

import fastcnn
from fastcnn import kernels as K

CASES = {**nv.CONV_CASES, **nv.CONV_MATMUL_CASES}

NCHW, BL, CL, ROWS = "nchw", "batch_last", "channel_last", "rows"
MM1, WHOLE = "matmul_1x1", "matmul_whole_input"
WG, WG4 = "winograd", "winograd4"
DEPTHWISE = "depthwise"  # groups == C only: tests/kernels/test_conv_groups.py

# case -> (forward, weight_grad, input_grad) chosen by algorithm="auto"
EXPECTED = {
    "batch1_3x3": (ROWS, ROWS, NCHW),
    "1x1_kernel": (MM1, MM1, MM1),
    "kernel_eq_input": (WHOLE, WHOLE, WHOLE),
    "kernel_eq_padded_input": (WHOLE, WHOLE, WHOLE),
    "stride_gt_kernel": (NCHW, NCHW, NCHW),
    "H_minus_k_not_div_by_stride": (NCHW, NCHW, NCHW),
    "odd_rect_image_rect_kernel": (ROWS, ROWS, NCHW),
    "rect_stride_and_padding": (NCHW, NCHW, NCHW),
    "rect_stride_only": (NCHW, NCHW, NCHW),
    "stride2_pad1": (NCHW, NCHW, NCHW),
    "padding_ge_kernel": (NCHW, NCHW, NCHW),
    "wide_channels_pad1": (ROWS, ROWS, NCHW),
    "batchlast_N9_K6_pad2": (ROWS, ROWS, BL),
    "batchlast_N8_C6_K7_rect_stride_pad": (BL, BL, BL),
    "batchlast_N13_stride_gt_kernel": (BL, BL, BL),
    "N16_kernel_eq_padded_input": (WHOLE, WHOLE, WHOLE),
    "batchlast_N10_padding_ge_kernel": (BL, BL, BL),
    "channellast_K16_C16_pad1": (CL, CL, CL),
    "channellast_K27_C17_rect_stride_pad": (CL, CL, CL),
    "channellast_K33_C3_stride_gt_kernel": (CL, CL, NCHW),
    "channellast_K16_C40_padding_ge_kernel": (CL, CL, CL),
    "channellast_N9_K24_C6_5x5": (CL, CL, BL),
    "channellast_dx_only_N10_C20_K6_stride2": (BL, BL, CL),
    "1x1_batch3": (MM1, MM1, MM1),
    "1x1_batch9": (MM1, MM1, MM1),
    "1x1_single_pixel": (WHOLE, WHOLE, WHOLE),  # one GEMM over the batch beats one per image
    "whole_input_batch2": (WHOLE, WHOLE, WHOLE),
    "whole_input_batch10_rect": (WHOLE, WHOLE, WHOLE),
    "whole_input_padded_batch3": (WHOLE, WHOLE, WHOLE),
    "whole_input_padded_stride_batch9": (WHOLE, WHOLE, WHOLE),
    "1x1_stride2": (NCHW, NCHW, NCHW),
    "1x1_padded_batch9": (BL, BL, BL),
    "kernel_one_short_of_input": (ROWS, ROWS, BL),
}

# the layers of the zoo models and the benchmark suite, at batch 64
MODEL_LAYERS = {
    "lenet_conv1_64x1x28x28_k6_5x5_p2": ((64, 1, 28, 28), (6, 1, 5, 5), 1, 2, (ROWS, ROWS, BL)),
    "lenet_conv2_64x6x14x14_k16_5x5": ((64, 6, 14, 14), (16, 6, 5, 5), 1, 0, (CL, CL, BL)),
    "vgg_first_64x3x32x32_k32_3x3_p1": ((64, 3, 32, 32), (32, 3, 3, 3), 1, 1, (ROWS, ROWS, BL)),  # C <= 4: rows
    "wide_64x64x16x16_k64_3x3_p1": ((64, 64, 16, 16), (64, 64, 3, 3), 1, 1, (WG4, WG4, WG4)),
    "vgg_128x128x8x8_k128_3x3_p1": ((64, 128, 8, 8), (128, 128, 3, 3), 1, 1, (WG4, WG4, WG4)),
    "vgg_64x32x16x16_k64_3x3_p1": ((64, 32, 16, 16), (64, 32, 3, 3), 1, 1, (WG4, WG4, WG4)),  # C >= 16
    "vgg_64x32x32x32_k32_3x3_p1": ((64, 32, 32, 32), (32, 32, 3, 3), 1, 1, (WG4, WG4, WG4)),
    "resnet_64x16x32x32_k16_3x3_p1": ((64, 16, 32, 32), (16, 16, 3, 3), 1, 1, (WG4, WG4, WG4)),  # C >= 16
    "narrow_64x8x32x32_k8_3x3_p1": ((64, 8, 32, 32), (8, 8, 3, 3), 1, 1, (ROWS, ROWS, BL)),  # C < 16: direct
    "resnet_64x32x16x16_k64_3x3_p1": ((64, 32, 16, 16), (32, 32, 3, 3), 1, 1, (WG4, WG4, WG4)),
    "resnet_64x64x8x8_k64_3x3_s2": ((64, 64, 16, 16), (64, 64, 3, 3), 2, 1, (CL, CL, CL)),  # stride 2: direct
    "inference_1x128x8x8_k128_3x3_p1": ((1, 128, 8, 8), (128, 128, 3, 3), 1, 1, (CL, CL, CL)),  # 4 tiles: direct
    "resnet_shortcut_64x16x32x32_k32_1x1_s2": ((64, 16, 32, 32), (32, 16, 1, 1), 2, 0, (CL, CL, CL)),
    "inference_batch1_1x32x16x16_k8_3x3_p1": ((1, 32, 16, 16), (8, 32, 3, 3), 1, 1, (ROWS, ROWS, CL)),
}


def _shapes(case):
    N, C, H, W, Kout, R, S, stride, padding = CASES[case]
    return (N, C, H, W), (Kout, C, R, S), stride, padding


def _applies(algorithm, case):
    x_shape, w_shape, stride, padding = _shapes(case)
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding)
    g = plans.geometry
    if algorithm == MM1:
        return g.is_1x1
    if algorithm == WHOLE:
        return g.is_whole_input
    if algorithm == ROWS:
        return g.fits_rows
    if algorithm in (WG, WG4):
        return g.fits_winograd
    if algorithm == DEPTHWISE:
        return g.is_depthwise
    return True


def test_every_case_has_an_expected_plan():
    assert set(EXPECTED) == set(CASES)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("algorithm", ["auto", "direct"])
def test_auto_selects_expected_algorithms(case, algorithm):
    x_shape, w_shape, stride, padding = _shapes(case)
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding, algorithm=algorithm)
    assert (plans.forward.algorithm, plans.weight_grad.algorithm, plans.input_grad.algorithm) == EXPECTED[case]
    for plan, op in ((plans.forward, "forward"), (plans.weight_grad, "weight_grad"), (plans.input_grad, "input_grad")):
        assert plan.op == op and plan.itemsize == 4


@pytest.mark.parametrize("name", list(MODEL_LAYERS))
def test_model_layers_select_expected_algorithms(name):
    x_shape, w_shape, stride, padding, expected = MODEL_LAYERS[name]
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding)
    assert (plans.forward.algorithm, plans.weight_grad.algorithm, plans.input_grad.algorithm) == expected
    # "direct" never picks Winograd: the channel-last kernels take its place
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding, algorithm="direct")
    direct = tuple(CL if a == WG4 else a for a in expected)
    assert (plans.forward.algorithm, plans.weight_grad.algorithm, plans.input_grad.algorithm) == direct


@pytest.mark.parametrize("algorithm", K.CONV_ALGORITHMS)
def test_forced_algorithm_is_planned_for_every_pass(algorithm):
    case = {MM1: "1x1_batch9", WHOLE: "whole_input_padded_batch3", ROWS: "odd_rect_image_rect_kernel",
            WG: "wide_channels_pad1", WG4: "wide_channels_pad1", DEPTHWISE: "batch1_3x3"}.get(
        algorithm, "rect_stride_and_padding")
    x_shape, w_shape, stride, padding = _shapes(case)  # batch1_3x3 has one input channel: depthwise
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding, dtype=np.float64, algorithm=algorithm)
    assert {plans.forward.algorithm, plans.weight_grad.algorithm, plans.input_grad.algorithm} == {algorithm}
    assert plans.forward.itemsize == 8
    assert K.conv2d_plan(x_shape, w_shape, stride, padding, need_input_grad=False).input_grad is None


def _algorithm_cases():
    return [pytest.param(case, algorithm, id=f"{algorithm}-{case}")
            for algorithm in K.CONV_ALGORITHMS for case in CASES if _applies(algorithm, case)]


@functools.lru_cache(maxsize=None)
def _naive_reference(case, dtype):
    """``x, w, b, dy`` of ``case`` in ``dtype`` and the naive loops' ``y, (dx, dw, db)`` for them.

    Drawn and computed once per case and dtype, for every algorithm: the loops take seconds on the larger cases.
    The seed is the case's and the dtype's (not the test's), so each algorithm sees the same inputs.
    """
    rng = np.random.default_rng(zlib.crc32(f"{case}-{np.dtype(dtype).name}".encode()))
    x_shape, w_shape, stride, padding = _shapes(case)
    x, w, b = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype), randn(rng, w_shape[:1], dtype)
    y = nv.conv2d_forward(x, w, b, stride, padding)
    dy = randn(rng, y.shape, dtype)
    return (x, w, b, dy), y, nv.conv2d_backward(dy, x, w, stride, padding)


@pytest.mark.parametrize("case,algorithm", _algorithm_cases())
def test_every_algorithm_matches_naive(case, algorithm, dtype):
    _, _, stride, padding = _shapes(case)
    inputs, want_y, want = _naive_reference(case, dtype)
    x, w, b, dy = (a.copy() for a in inputs)  # the cached inputs stay as drawn whatever a kernel does
    y = K.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_close(y, want_y, dtype, err_msg="y")
    dx, dw, db = K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm)
    for got, expected, name in zip((dx, dw, db), want, ("dx", "dw", "db")):
        assert got.dtype == dtype, name
        assert_close(got, expected, dtype, err_msg=name)
    none, dw2, db2 = K.conv2d_backward(dy, x, w, stride, padding, need_input_grad=False, algorithm=algorithm)
    assert none is None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("algorithm", [a for a in K.CONV_ALGORITHMS if a not in (MM1, WHOLE, DEPTHWISE)])
@pytest.mark.parametrize("threads", [1, 2])
def test_every_algorithm_at_model_sizes_matches_im2col(algorithm, threads, rng):
    """Shapes where per-thread chunks, 16-wide blocks and batch padding all come into play."""
    x = randn(rng, (11, 19, 9, 8), np.float64)
    w = randn(rng, (21, 19, 3, 3), np.float64)
    before = fastcnn.get_num_threads()
    fastcnn.set_num_threads(min(threads, before))
    try:
        y = K.conv2d_forward(x, w, None, 1, 1, algorithm=algorithm)
        dx, dw, db = K.conv2d_backward(y, x, w, 1, 1, algorithm=algorithm)
    finally:
        fastcnn.set_num_threads(before)
    assert_close(y, K.conv2d_forward_im2col(x, w, None, 1, 1), np.float64)
    for got, want in zip((dx, dw, db), K.conv2d_backward_im2col(y, x, w, 1, 1)):
        assert_close(got, want, np.float64)


@pytest.mark.parametrize("algorithm,case,needs", [
    (MM1, "batch1_3x3", "1x1 kernel with stride 1 and no padding"),
    (MM1, "1x1_stride2", "1x1 kernel with stride 1 and no padding"),
    (WHOLE, "kernel_one_short_of_input", "kernel as large as the padded input"),
    (ROWS, "stride2_pad1", "stride of 1 and padding smaller than the kernel"),
    (ROWS, "padding_ge_kernel", "stride of 1 and padding smaller than the kernel"),
])
def test_inapplicable_algorithm_is_refused(algorithm, case, needs, rng):
    x_shape, w_shape, stride, padding = _shapes(case)
    x, w = randn(rng, x_shape, np.float32), randn(rng, w_shape, np.float32)
    x0, w0 = x.copy(), w.copy()
    with pytest.raises(ValueError, match=f"conv2d_forward: algorithm '{algorithm}' needs a {needs}"):
        K.conv2d_forward(x, w, None, stride, padding, algorithm=algorithm)
    with pytest.raises(ValueError, match="conv2d_plan: algorithm"):
        K.conv2d_plan(x_shape, w_shape, stride, padding, algorithm=algorithm)
    dy = np.ones(K.conv2d_output_shape(x_shape, w_shape, stride, padding), np.float32)
    with pytest.raises(ValueError, match="conv2d_backward: algorithm"):
        K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("bad", ["gemm", "Direct", None, 3])
def test_unknown_algorithm_is_refused(bad):
    x, w = np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"conv2d_forward: algorithm must be one of 'auto', 'direct', 'tuned', 'nchw'"):
        K.conv2d_forward(x, w, None, algorithm=bad)
    with pytest.raises(ValueError, match="conv2d_plan: algorithm must be one of"):
        K.conv2d_plan(x.shape, w.shape, algorithm=bad)


@pytest.mark.parametrize("args,match", [
    (((1, 2, 3), (1, 1, 2, 2)), r"x_shape must be 4 positive ints \(N, C, H, W\)"),
    (((1, 1, 3, 3), (1, 2, 2)), r"w_shape must be 4 positive ints \(K, C, R, S\)"),
    (((1, 2, 3, 3), (1, 1, 2, 2)), "input has 2 channels but weight expects 1"),
    (((1, 1, 3, 3), (1, 1, 4, 4)), "kernel 4x4 is larger than the padded input"),
])
def test_plan_refuses_bad_shapes(args, match):
    with pytest.raises(ValueError, match="conv2d_plan: " + match):
        K.conv2d_plan(*args)


def test_plan_sizes_per_thread_buffers_by_num_threads():
    one = K.conv2d_plan((64, 64, 16, 16), (64, 64, 3, 3), padding=1, num_threads=1, algorithm="direct")
    four = K.conv2d_plan((64, 64, 16, 16), (64, 64, 3, 3), padding=1, num_threads=4, algorithm="direct")
    assert {b.role: b.shape for b in one.weight_grad.buffers}["partial_dw"][0] == 1
    assert {b.role: b.shape for b in four.weight_grad.buffers}["partial_dw"][0] == 4
    with pytest.raises(ValueError, match="conv2d_plan: num_threads must be a positive int or None, got 0"):
        K.conv2d_plan((1, 1, 3, 3), (1, 1, 2, 2), num_threads=0)


def test_plan_refuses_bad_dtype():
    with pytest.raises(TypeError, match="conv2d_plan: dtype must be float32 or float64, got int32"):
        K.conv2d_plan((1, 1, 3, 3), (1, 1, 2, 2), dtype=np.int32)


def test_plan_answers_the_newcomer_question():
    """Which kernel computes dx of a 64->64 3x3 convolution at batch 64, and with how much workspace?"""
    plans = K.conv2d_plan((64, 64, 16, 16), (64, 64, 3, 3), padding=1)
    dx = plans.input_grad
    assert dx.algorithm == "winograd4" and dx.layout.startswith("NHWC")
    roles = {b.role: b for b in dx.buffers}
    assert roles["dy_padded_tiles"].shape == (64, 18, 18, 64)  # dy padded by 2 - padding
    assert roles["u_input"].shape == (36, 64, 64)  # the transformed filters: 36 positions of (K, C)
    assert dx.workspace_bytes == sum(b.size for b in dx.buffers) * 4
    text = str(plans)
    assert "input_grad: winograd4" in text and "MiB" in text


def _traced_peak(fn):
    K.clear_workspace()
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    outs = out if isinstance(out, tuple) else (out,)
    return peak - before - sum(a.nbytes for a in outs if isinstance(a, np.ndarray))


@pytest.mark.parametrize("algorithm,shape", [
    (NCHW, ((4, 3, 12, 12), (5, 3, 3, 3), 1, 1)),
    (BL, ((16, 6, 20, 20), (8, 6, 5, 5), 1, 2)),
    (ROWS, ((16, 6, 20, 20), (8, 6, 5, 5), 1, 2)),
    (CL, ((6, 24, 16, 14), (32, 24, 3, 3), 2, 1)),
    ("im2col", ((16, 16, 16, 16), (32, 16, 3, 3), 1, 1)),
    (MM1, ((8, 16, 20, 20), (24, 16, 1, 1), 1, 0)),
    (WHOLE, ((32, 16, 8, 8), (24, 16, 10, 10), 1, 1)),
    (WG, ((8, 16, 12, 10), (24, 16, 3, 3), 1, 1)),
    (WG4, ((8, 16, 12, 10), (24, 16, 3, 3), 1, 1)),
])
def test_plan_memory_is_what_the_kernels_allocate(algorithm, shape, rng):
    """The plan's Python-allocated buffers are what tracemalloc sees (slack: array headers and small objects)."""
    x_shape, w_shape, stride, padding = shape
    x, w, b = randn(rng, x_shape, np.float32), randn(rng, w_shape, np.float32), randn(rng, w_shape[:1], np.float32)
    dy = randn(rng, K.conv2d_output_shape(x_shape, w_shape, stride, padding), np.float32)
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding, algorithm=algorithm)
    calls = {
        "forward": lambda: K.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm),
        "backward_weight": lambda: K.conv2d_backward(dy, x, w, stride, padding, False, algorithm=algorithm),
        "backward": lambda: K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm),
    }
    for op, call in calls.items():
        call()  # compile first: Numba's compiler allocates too
        model = plans.memory_bytes(op)["numpy"]
        traced = _traced_peak(call)
        assert abs(traced - model) <= 65536 + 0.02 * model, (op, traced, model)
