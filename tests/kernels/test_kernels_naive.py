"""Every public kernel agrees with the naive loops in tests/naive.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive as nv
from helpers import assert_close, conv_inputs, randn

from fastcnn import kernels as K

CONV_IDS = list(nv.CONV_CASES)
POOL_IDS = list(nv.POOL_CASES)


def _pool_inputs(rng, case, dtype):
    N, C, H, W, k, stride, padding, ceil_mode = nv.POOL_CASES[case]
    x = randn(rng, (N, C, H, W), dtype)
    return x, k, stride, padding, ceil_mode


def _check_dtype(arr, dtype, what):
    assert isinstance(arr, np.ndarray), f"{what} is {type(arr)}, not ndarray"
    assert arr.dtype == dtype, f"{what} has dtype {arr.dtype}, input was {dtype}"


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------
#: The oracle's own check on the four largest cases (their one-output-at-a-time loops take 0.2-6 s): -m slow.
_LARGE_FOR_THE_LOOPS = {"channellast_N9_K24_C6_5x5", "channellast_K27_C17_rect_stride_pad",
                        "channellast_K16_C40_padding_ge_kernel", "channellast_dx_only_N10_C20_K6_stride2"}


@pytest.mark.parametrize("case,groups,dilation", [
    pytest.param(case, 1, 1, id=case, marks=[pytest.mark.slow] if case in _LARGE_FOR_THE_LOOPS else [])
    for case in CONV_IDS] + [("rect_stride_and_padding", 1, 2), ("batch1_3x3", 1, (2, 1)), ("g2", 2, 1),
                             ("depthwise", 3, 1)])
def test_the_naive_convolution_is_its_one_output_at_a_time_loops(case, groups, dilation, rng):
    """naive.conv2d_forward / conv2d_backward (loops over the channels and taps, every output pixel at once) give
    what the loops over single outputs straight from the formula give: the same bits forward, the backward's
    sums to 1e-13 (added in another order)."""
    N, C, H, W, K_, R, S, stride, padding = nv.CONV_CASES.get(case, (3, 6, 7, 6, 6, 3, 2, 2, 1))
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((K_, C // groups, R, S))
    for b in (rng.standard_normal(K_), None):
        y = nv.conv2d_forward_loops(x, w, b, stride, padding, dilation, groups)
        assert nv.conv2d_forward(x, w, b, stride, padding, dilation, groups).tobytes() == y.tobytes()
    dy = rng.standard_normal(y.shape)
    for got, want in zip(nv.conv2d_backward(dy, x, w, stride, padding, dilation, groups),
                         nv.conv2d_backward_loops(dy, x, w, stride, padding, dilation, groups), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())


@pytest.mark.parametrize("case", CONV_IDS)
def test_conv2d_forward_matches_naive(case, dtype, rng):
    x, w, b, stride, padding = conv_inputs(rng, case, dtype)
    y = K.conv2d_forward(x, w, b, stride=stride, padding=padding)
    _check_dtype(y, dtype, "y")
    assert_close(y, nv.conv2d_forward(x, w, b, stride, padding), dtype)


@pytest.mark.parametrize("case", ["batch1_3x3", "rect_stride_and_padding"])
def test_conv2d_forward_bias_none(case, dtype, rng):
    x, w, _, stride, padding = conv_inputs(rng, case, dtype)
    y = K.conv2d_forward(x, w, None, stride=stride, padding=padding)
    _check_dtype(y, dtype, "y")
    assert_close(y, nv.conv2d_forward(x, w, None, stride, padding), dtype)


@pytest.mark.parametrize("case", CONV_IDS)
def test_conv2d_backward_matches_naive(case, dtype, rng):
    x, w, b, stride, padding = conv_inputs(rng, case, dtype)
    y_shape = nv.conv2d_forward(x, w, b, stride, padding).shape
    dy = randn(rng, y_shape, dtype)
    dx, dw, db = K.conv2d_backward(dy, x, w, stride=stride, padding=padding)
    edx, edw, edb = nv.conv2d_backward(dy, x, w, stride, padding)
    for name, got in (("dx", dx), ("dw", dw), ("db", db)):
        _check_dtype(got, dtype, name)
    assert_close(dx, edx, dtype, err_msg="dx")
    assert_close(dw, edw, dtype, err_msg="dw")
    assert_close(db, edb, dtype, err_msg="db")


@pytest.mark.parametrize("case", ["batch1_3x3", "rect_stride_and_padding"])
def test_conv2d_backward_need_input_grad_false(case, dtype, rng):
    x, w, b, stride, padding = conv_inputs(rng, case, dtype)
    y_shape = nv.conv2d_forward(x, w, b, stride, padding).shape
    dy = randn(rng, y_shape, dtype)
    dx, dw, db = K.conv2d_backward(dy, x, w, stride=stride, padding=padding,
                                   need_input_grad=False)
    assert dx is None
    _, edw, edb = nv.conv2d_backward(dy, x, w, stride, padding)
    assert_close(dw, edw, dtype, err_msg="dw")
    assert_close(db, edb, dtype, err_msg="db")


def test_conv2d_does_not_modify_inputs(rng):
    x, w, b, stride, padding = conv_inputs(rng, "stride2_pad1", np.float64)
    copies = [a.copy() for a in (x, w, b)]
    y = K.conv2d_forward(x, w, b, stride=stride, padding=padding)
    dy = np.ones_like(y)
    dyc = dy.copy()
    K.conv2d_backward(dy, x, w, stride=stride, padding=padding)
    for a, c in zip((x, w, b, dy), copies + [dyc]):
        np.testing.assert_array_equal(a, c)


@st.composite
def _conv_shapes(draw):
    R = draw(st.integers(1, 4))
    S = draw(st.integers(1, 4))
    ph = draw(st.integers(0, 2))
    pw = draw(st.integers(0, 2))
    H = draw(st.integers(max(1, R - 2 * ph), 7))
    W = draw(st.integers(max(1, S - 2 * pw), 7))
    return dict(
        N=draw(st.integers(1, 2)), C=draw(st.integers(1, 3)), H=H, W=W,
        K=draw(st.integers(1, 3)), R=R, S=S,
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=(ph, pw), seed=draw(st.integers(0, 2**31)),
    )


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(shape=_conv_shapes())
def test_conv2d_random_shapes_float64(shape):
    """Property test over random small shapes (float64 only: no extra compiles)."""
    r = np.random.default_rng(shape["seed"])
    x = r.standard_normal((shape["N"], shape["C"], shape["H"], shape["W"]))
    w = r.standard_normal((shape["K"], shape["C"], shape["R"], shape["S"]))
    b = r.standard_normal(shape["K"])
    s, p = shape["stride"], shape["padding"]
    y = K.conv2d_forward(x, w, b, stride=s, padding=p)
    assert_close(y, nv.conv2d_forward(x, w, b, s, p), np.float64)
    dy = r.standard_normal(y.shape)
    got = K.conv2d_backward(dy, x, w, stride=s, padding=p)
    for g, e, name in zip(got, nv.conv2d_backward(dy, x, w, s, p), "dx dw db".split()):
        assert_close(g, e, np.float64, err_msg=name)


def test_noncontiguous_inputs(rng):
    """Strided views and Fortran-ordered arrays give the same answers as
    contiguous copies (float64 only)."""
    big = rng.standard_normal((3, 2, 11, 9))
    x = big[::2, :, ::2, 1:]                        # (2, 2, 6, 8), strided view
    w = np.asfortranarray(rng.standard_normal((3, 2, 3, 2)))
    b = rng.standard_normal(6)[::2]
    y = K.conv2d_forward(x, w, b, stride=(2, 1), padding=1)
    assert_close(y, nv.conv2d_forward(x, w, b, (2, 1), 1), np.float64)
    dy = rng.standard_normal(y.shape[::-1]).T       # non-contiguous dy
    for got, exp in zip(K.conv2d_backward(dy, x, w, stride=(2, 1), padding=1),
                        nv.conv2d_backward(dy, x, w, (2, 1), 1)):
        assert_close(got, exp, np.float64)
    yp, am = K.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(yp, nv.max_pool2d_forward(x, 2)[0])
    np.testing.assert_array_equal(K.relu_forward(x), nv.relu_forward(x))
    xl = rng.standard_normal((5, 4)).T               # (4, 5), F-ordered
    wl = rng.standard_normal((3, 5))
    assert_close(K.linear_forward(xl, wl, None), nv.linear_forward(xl, wl), np.float64)


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------
def _check_argmax(am, expected):
    assert isinstance(am, np.ndarray)
    assert np.issubdtype(am.dtype, np.integer), f"argmax dtype {am.dtype} is not integer"
    assert am.shape == expected.shape
    np.testing.assert_array_equal(am.astype(np.int64), expected)


@pytest.mark.parametrize("case", POOL_IDS)
def test_max_pool2d_forward_matches_naive(case, dtype, rng):
    x, k, s, p, cm = _pool_inputs(rng, case, dtype)
    y, am = K.max_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    ey, eam = nv.max_pool2d_forward(x, k, s, p, cm)
    _check_dtype(y, dtype, "y")
    # max is exact: no rounding involved
    np.testing.assert_array_equal(y, ey.astype(dtype))
    _check_argmax(am, eam)


@pytest.mark.parametrize("case", POOL_IDS)
def test_max_pool2d_backward_matches_naive(case, dtype, rng):
    x, k, s, p, cm = _pool_inputs(rng, case, dtype)
    y, am = K.max_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    _, eam = nv.max_pool2d_forward(x, k, s, p, cm)
    dy = randn(rng, y.shape, dtype)
    dx = K.max_pool2d_backward(dy, am, x.shape)
    _check_dtype(dx, dtype, "dx")
    assert_close(dx, nv.max_pool2d_backward(dy, eam, x.shape), dtype)


TIE_CASES = {
    "constant_2x2": ("constant", "2x2_default_stride"),
    "constant_negative_with_padding": ("constant_neg", "k3_s2_pad1"),
    "constant_ceil_dropped": ("constant_neg", "ceil_last_window_in_padding_dropped"),
    "constant_overlapping_rect": ("constant", "rect_kernel_stride_pad_ceil"),
    "repeated_ints_overlapping": ("ints", "k3_s2_pad1_ceil"),
    "repeated_ints_stride1": ("ints", "stride1_pad1_ceil"),
    "repeated_ints_2x2": ("ints", "2x2_default_stride"),
}


@pytest.mark.parametrize("tie", list(TIE_CASES))
def test_max_pool2d_ties_first_max_row_major(tie, dtype, rng):
    kind, case = TIE_CASES[tie]
    N, C, H, W, k, s, p, cm = nv.POOL_CASES[case]
    if kind == "constant":
        x = np.full((N, C, H, W), 1.5, dtype=dtype)
    elif kind == "constant_neg":
        x = np.full((N, C, H, W), -7.0, dtype=dtype)
    else:
        x = rng.integers(-1, 2, size=(N, C, H, W)).astype(dtype)
    y, am = K.max_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    ey, eam = nv.max_pool2d_forward(x, k, s, p, cm)
    np.testing.assert_array_equal(y, ey.astype(dtype))
    _check_argmax(am, eam)
    # with ties, the gradient goes to that first maximum only
    dy = randn(rng, y.shape, dtype)
    dx = K.max_pool2d_backward(dy, am, x.shape)
    assert_close(dx, nv.max_pool2d_backward(dy, eam, x.shape), dtype)


@pytest.mark.parametrize("kernel,stride", [(2, 2), (2, 1), (3, 2)])
def test_max_pool2d_first_nan_wins_and_infinities(kernel, stride, dtype):
    """A NaN wins its window (the first one in row-major order when there are two);
    windows without NaN in the same row keep their ordinary maximum; +inf and
    -inf together are not a NaN.  (2x2 stride 2 takes a row-at-a-time path.)"""
    nan, inf = np.nan, np.inf
    plane = np.array([
        [1.0, 5.0, 2.0, nan, -inf, inf, 0.0, 1.0],
        [3.0, 4.0, nan, 9.0, inf, -inf, 2.0, 2.0],
        [0.0, 0.0, 7.0, 7.0, 1.0, 1.0, 1.0, 1.0],
        [0.0, 0.0, 7.0, 7.0, 1.0, 1.0, 1.0, 1.0],
    ], dtype=dtype)
    x = np.stack([plane, -plane])[None]  # (1, 2, 4, 8)
    y, am = K.max_pool2d_forward(x, kernel, stride=stride)
    W = x.shape[3]
    for c in range(2):
        xc = x[0, c]
        for p in range(y.shape[2]):
            for q in range(y.shape[3]):
                window = [(i, j) for i in range(p * stride, p * stride + kernel)
                          for j in range(q * stride, q * stride + kernel)]
                nans = [(i, j) for i, j in window if np.isnan(xc[i, j])]
                if nans:
                    want = nans[0]
                else:
                    want = window[int(np.argmax([xc[i, j] for i, j in window]))]  # first maximum
                assert am[0, c, p, q] == want[0] * W + want[1], (c, p, q)
                np.testing.assert_array_equal(y[0, c, p, q], xc[want])


def test_max_pool2d_argmax_indexes_unpadded_plane(rng):
    """argmax is a flat index into the (H, W) plane of the unpadded input, so
    x.reshape(N, C, H*W) gathered at argmax reproduces y."""
    x, k, s, p, cm = _pool_inputs(rng, "rect_kernel_stride_pad_ceil", np.float64)
    y, am = K.max_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    N, C, H, W = x.shape
    assert am.min() >= 0 and am.max() < H * W
    flat = x.reshape(N, C, H * W)
    gathered = np.take_along_axis(flat, am.reshape(N, C, -1).astype(np.int64), axis=2)
    np.testing.assert_array_equal(gathered.reshape(y.shape), y)


# ---------------------------------------------------------------------------
# average pooling
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", POOL_IDS)
def test_avg_pool2d_forward_matches_naive(case, dtype, rng):
    x, k, s, p, cm = _pool_inputs(rng, case, dtype)
    y = K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    _check_dtype(y, dtype, "y")
    assert_close(y, nv.avg_pool2d_forward(x, k, s, p, cm), dtype)


@pytest.mark.parametrize("case", POOL_IDS)
def test_avg_pool2d_backward_matches_naive(case, dtype, rng):
    x, k, s, p, cm = _pool_inputs(rng, case, dtype)
    y_shape = nv.avg_pool2d_forward(x, k, s, p, cm).shape
    dy = randn(rng, y_shape, dtype)
    dx = K.avg_pool2d_backward(dy, x.shape, k, stride=s, padding=p, ceil_mode=cm)
    _check_dtype(dx, dtype, "dx")
    assert_close(dx, nv.avg_pool2d_backward(dy, x.shape, k, s, p, cm), dtype)


def test_avg_pool2d_count_include_pad_divisor(dtype):
    """All-ones input with padding: a corner window of a 3x3/pad-1 pool
    covers 4 real pixels out of 9, so it averages to 4/9 (count_include_pad)."""
    x = np.ones((1, 1, 4, 4), dtype=dtype)
    y = K.avg_pool2d_forward(x, 3, stride=1, padding=1)
    assert_close(y, nv.avg_pool2d_forward(x, 3, 1, 1), dtype)
    assert_close(y[0, 0, 0, 0], 4.0 / 9.0, dtype)


@st.composite
def _pool_geometry(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 8))
    W = draw(st.integers(max(1, kw - 2 * pw), 8))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 2)), H, W),
                k=(kh, kw), stride=stride, padding=(ph, pw),
                ceil_mode=draw(st.booleans()), ints=draw(st.booleans()),
                seed=draw(st.integers(0, 2**31)))


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(g=_pool_geometry())
def test_pool2d_random_geometry_float64(g):
    """Property test: max and avg pooling (forward and backward) over random
    legal geometries, with ties half of the time (float64 only)."""
    r = np.random.default_rng(g["seed"])
    if g["ints"]:
        x = r.integers(0, 3, size=g["shape"]).astype(np.float64)
    else:
        x = r.standard_normal(g["shape"])
    k, s, p, cm = g["k"], g["stride"], g["padding"], g["ceil_mode"]
    y, am = K.max_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    ey, eam = nv.max_pool2d_forward(x, k, s, p, cm)
    np.testing.assert_array_equal(y, ey)
    _check_argmax(am, eam)
    dy = r.standard_normal(y.shape)
    assert_close(K.max_pool2d_backward(dy, am, x.shape),
                 nv.max_pool2d_backward(dy, eam, x.shape), np.float64)
    assert_close(K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm),
                 nv.avg_pool2d_forward(x, k, s, p, cm), np.float64)
    assert_close(K.avg_pool2d_backward(dy, x.shape, k, stride=s, padding=p, ceil_mode=cm),
                 nv.avg_pool2d_backward(dy, x.shape, k, s, p, cm), np.float64)


# ---------------------------------------------------------------------------
# global average pooling
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 4), (3, 2, 1, 7)],
                         ids=["1x1_plane", "odd_rect", "single_row"])
def test_global_avg_pool2d_matches_naive(shape, dtype, rng):
    x = randn(rng, shape, dtype)
    y = K.global_avg_pool2d_forward(x)
    _check_dtype(y, dtype, "y")
    assert_close(y, nv.global_avg_pool2d_forward(x), dtype)
    dy = randn(rng, shape[:2], dtype)
    dx = K.global_avg_pool2d_backward(dy, x.shape)
    _check_dtype(dx, dtype, "dx")
    assert_close(dx, nv.global_avg_pool2d_backward(dy, x.shape), dtype)


# ---------------------------------------------------------------------------
# activations (4-D after conv, 2-D after linear)
# ---------------------------------------------------------------------------
ACT_SHAPES = {"4d": (2, 3, 4, 5), "2d": (3, 7)}


@pytest.mark.parametrize("shape", list(ACT_SHAPES.values()), ids=list(ACT_SHAPES))
def test_relu_matches_naive(shape, dtype, rng):
    x = randn(rng, shape, dtype)
    x.reshape(-1)[::5] = 0.0  # exact zeros: derivative is 0 there
    y = K.relu_forward(x)
    _check_dtype(y, dtype, "y")
    np.testing.assert_array_equal(y, nv.relu_forward(x).astype(dtype))
    dy = randn(rng, shape, dtype)
    dx = K.relu_backward(dy, x)
    _check_dtype(dx, dtype, "dx")
    np.testing.assert_array_equal(dx, nv.relu_backward(dy, x).astype(dtype))


@pytest.mark.parametrize("shape", list(ACT_SHAPES.values()), ids=list(ACT_SHAPES))
@pytest.mark.parametrize("relu", [False, True])
def test_residual_add_matches_naive(shape, relu, dtype, rng):
    a, b = randn(rng, shape, dtype), randn(rng, shape, dtype)
    b.reshape(-1)[::5] = -a.reshape(-1)[::5]  # exact zero sums: the ReLU's derivative is 0 there
    a.reshape(-1)[1] = np.nan
    y = K.residual_add(a, b, relu=relu)
    _check_dtype(y, dtype, "y")
    total = (a.astype(np.float64) + b).astype(dtype)  # one rounding of the exact sum, as a + b in dtype
    want = nv.relu_forward(total).astype(dtype) if relu else total
    if relu:
        want.reshape(-1)[1] = np.nan  # NaN propagates through fastcnn's ReLU (the naive loop maps it to 0)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("shape", list(ACT_SHAPES.values()), ids=list(ACT_SHAPES))
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_smooth_activation_matches_naive(name, shape, dtype, rng):
    x = randn(rng, shape, dtype) * 3
    # include large magnitudes: sigmoid/tanh must saturate, not overflow to nan
    x.reshape(-1)[:4] = np.array([-100.0, 100.0, -30.0, 30.0], dtype=dtype)
    fwd, bwd = getattr(K, f"{name}_forward"), getattr(K, f"{name}_backward")
    y = fwd(x)
    _check_dtype(y, dtype, "y")
    assert np.all(np.isfinite(y))
    assert_close(y, getattr(nv, f"{name}_forward")(x), dtype)
    dy = randn(rng, shape, dtype)
    dx = bwd(dy, y)
    _check_dtype(dx, dtype, "dx")
    # backward is a function of y (the forward output) only
    assert_close(dx, getattr(nv, f"{name}_backward")(dy, y), dtype)


# ---------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------
LINEAR_CASES = {"batch1": (1, 5, 3), "wide": (4, 2, 7), "one_in_one_out": (3, 1, 1),
                # blocks of 8 rows, split into panels of 32 or 64 columns for enough tasks (_dense.matmul_acc)
                "panels": (64, 40, 120), "rows_tail": (13, 70, 33)}


@pytest.mark.parametrize("case", list(LINEAR_CASES))
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "bias_none"])
def test_linear_matches_naive(case, with_bias, dtype, rng):
    N, I, O = LINEAR_CASES[case]
    x = randn(rng, (N, I), dtype)
    w = randn(rng, (O, I), dtype)
    b = randn(rng, (O,), dtype) if with_bias else None
    y = K.linear_forward(x, w, b)
    _check_dtype(y, dtype, "y")
    assert_close(y, nv.linear_forward(x, w, b), dtype)
    dy = randn(rng, (N, O), dtype)
    dx, dw, db = K.linear_backward(dy, x, w)
    edx, edw, edb = nv.linear_backward(dy, x, w)
    for name, got, exp in (("dx", dx, edx), ("dw", dw, edw), ("db", db, edb)):
        _check_dtype(got, dtype, name)
        assert_close(got, exp, dtype, err_msg=name)


def test_linear_results_do_not_depend_on_how_the_product_is_split(rng):
    """A batch of 64 runs in 8 blocks of 8 rows by 2 panels of 64 columns, one image alone in 4 panels of 32:
    the same bits (each element's sum runs in the same order and micro-kernel block either way)."""
    x, w, dy = randn(rng, (64, 40), np.float32), randn(rng, (120, 40), np.float32), randn(rng, (64, 120), np.float32)
    y = K.linear_forward(x, w, None)
    dx, dw, _ = K.linear_backward(dy, x, w)
    for n in (0, 13, 63):
        np.testing.assert_array_equal(K.linear_forward(x[n:n + 1], w, None), y[n:n + 1])
        np.testing.assert_array_equal(K.linear_backward(dy[n:n + 1], x[n:n + 1], w)[0], dx[n:n + 1])
    parts = sum(K.linear_backward(dy[i:i + 8], x[i:i + 8], w)[1].astype(np.float64) for i in range(0, 64, 8))
    assert_close(dw, parts, np.float32)


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def _scalar(v):
    assert np.ndim(v) == 0, f"loss should be a scalar, got shape {np.shape(v)}"
    return float(v)


@pytest.mark.parametrize("shape", [(1, 2), (5, 10), (3, 1)],
                         ids=["batch1_two_classes", "batch5_ten_classes", "single_class"])
def test_softmax_cross_entropy_matches_naive(shape, dtype, rng):
    logits = randn(rng, shape, dtype) * 4
    labels = rng.integers(0, shape[1], size=shape[0]).astype(np.int64)
    loss, d = K.softmax_cross_entropy(logits, labels)
    eloss, ed = nv.softmax_cross_entropy(logits, labels)
    assert_close(_scalar(loss), eloss, dtype)
    _check_dtype(d, dtype, "dlogits")
    assert_close(d, ed, dtype)


@pytest.mark.parametrize("label_dtype", [np.int32, np.uint8, np.int16])
def test_softmax_cross_entropy_other_label_dtypes(label_dtype, rng):
    logits = randn(rng, (4, 6), np.float64)
    labels = np.array([0, 5, 2, 2], dtype=label_dtype)
    loss, d = K.softmax_cross_entropy(logits, labels)
    eloss, ed = nv.softmax_cross_entropy(logits, labels)
    assert_close(_scalar(loss), eloss, np.float64)
    assert_close(d, ed, np.float64)


def test_softmax_cross_entropy_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0], [0.0, 0.0, -1e4]],
                      dtype=dtype)
    labels = np.array([0, 2, 1])
    loss, d = K.softmax_cross_entropy(logits, labels)
    eloss, ed = nv.softmax_cross_entropy(logits, labels)
    assert np.isfinite(_scalar(loss)) and np.all(np.isfinite(d))
    assert_close(_scalar(loss), eloss, dtype)
    assert_close(d, ed, dtype)


def test_softmax_cross_entropy_shift_invariant_at_huge_offset(dtype, rng):
    """Adding 3e4 to every logit changes nothing mathematically; the O(1) loss
    must keep its dtype's relative precision (the row-max shift has to cancel
    exactly, not after rounding log-sum-exp against 3e4)."""
    base = np.array([0.0, 0.5, -1.0, 0.25, 0.0, -0.5])
    small = np.stack([rng.permutation(base) for _ in range(5)]).astype(dtype)
    logits = small + dtype.type(3e4)  # exact in float32 too
    labels = rng.integers(0, 6, size=5)
    loss, d = K.softmax_cross_entropy(logits, labels)
    eloss, ed = nv.softmax_cross_entropy(small, labels)
    assert_close(_scalar(loss), eloss, dtype)
    assert_close(d, ed, dtype)


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (2, 3, 2, 2)],
                         ids=["single_element", "2d", "4d"])
def test_mse_loss_matches_naive(shape, dtype, rng):
    pred = randn(rng, shape, dtype)
    target = randn(rng, shape, dtype)
    loss, d = K.mse_loss(pred, target)
    eloss, ed = nv.mse_loss(pred, target)
    assert_close(_scalar(loss), eloss, dtype)
    _check_dtype(d, dtype, "dpred")
    assert_close(d, ed, dtype)
