"""The pooling options of issue 13: ``count_include_pad=False`` average pooling and global max pooling.

Oracles: the loops of ``tests/naive.py`` (float32 and float64), float64 central differences, PyTorch
(``avg_pool2d(count_include_pad=False, ceil_mode=...)``, ``adaptive_max_pool2d(x, 1)``) when installed,
and a hypothesis sweep over legal geometries.  PyTorch lets the *last* NaN of a window win; fastcnn's rule
(the first NaN wins, as in its max_pool2d) is checked against the naive loops, and against PyTorch only
with one NaN per plane.
"""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive as nv
from helpers import assert_close, check_grad, distinct_values, randn

from fastcnn import kernels as K

POOL_IDS = list(nv.POOL_CASES)
#: the cases where count_include_pad changes something: padding, or a ceil-mode window past the input
PADDED_IDS = [case for case, (*_, k, s, p, cm) in nv.POOL_CASES.items() if p != 0 or cm]
GLOBAL_SHAPES = {"1x1_plane": (2, 3, 1, 1), "odd_rect": (2, 3, 5, 4), "single_row": (3, 2, 1, 7),
                 "single_column": (1, 4, 6, 1), "big_plane": (2, 2, 17, 19)}


def _pool_inputs(rng, case, dtype):
    N, C, H, W, k, s, p, cm = nv.POOL_CASES[case]
    return randn(rng, (N, C, H, W), dtype), k, s, p, cm


# --------------------------------------------------------------------------- average pooling, padding left out
@pytest.mark.parametrize("case", POOL_IDS)
def test_avg_pool2d_without_padding_matches_naive(case, dtype, rng):
    x, k, s, p, cm = _pool_inputs(rng, case, dtype)
    y = K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm, count_include_pad=False)
    assert y.dtype == dtype
    assert_close(y, nv.avg_pool2d_forward(x, k, s, p, cm, count_include_pad=False), dtype)
    dy = randn(rng, y.shape, dtype)
    dx = K.avg_pool2d_backward(dy, x.shape, k, stride=s, padding=p, ceil_mode=cm, count_include_pad=False)
    assert dx.dtype == dtype
    assert_close(dx, nv.avg_pool2d_backward(dy, x.shape, k, s, p, cm, count_include_pad=False), dtype)


@pytest.mark.parametrize("case", PADDED_IDS)
def test_avg_pool2d_without_padding_averages_ones_to_one(case, dtype):
    """Every window's mean of an all-ones input is exactly 1, whatever its clipping; with the padding
    counted, the windows that reach into it are below 1.  (Without padding both rules agree: a ceil-mode
    window hanging past the input counts only the input's part.)"""
    N, C, H, W, k, s, p, cm = nv.POOL_CASES[case]
    x = np.ones((N, C, H, W), dtype=dtype)
    y = K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm, count_include_pad=False)
    np.testing.assert_array_equal(y, np.ones_like(y))
    with_pad = K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    assert with_pad.max() == 1
    assert (with_pad.min() < 1) == (nv.pair(p) != (0, 0))


def test_avg_pool2d_divisors_of_a_ceil_window_past_the_padding(dtype):
    """H = W = 6, 3x3, stride 2, padding 1, ceil mode: the last window starts at row 5 and reaches row 7, one
    row past the padding (row 6).  count_include_pad=True divides by the 2 rows inside the padded input,
    False by the 1 input row (PyTorch's rule; the values are PyTorch's)."""
    x = np.ones((1, 1, 6, 6), dtype=dtype)
    y = K.avg_pool2d_forward(x, 3, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_allclose(y[0, 0, :, 3], [1 / 3, 1 / 2, 1 / 2, 1 / 4], rtol=1e-6)
    np.testing.assert_allclose(y[0, 0, 0], [4 / 9, 2 / 3, 2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_array_equal(K.avg_pool2d_forward(x, 3, 2, 1, True, count_include_pad=False), 1)


@pytest.mark.parametrize("case", POOL_IDS)
def test_avg_pool2d_count_include_pad_true_is_the_default(case, rng):
    x, k, s, p, cm = _pool_inputs(rng, case, np.float32)
    y = K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    np.testing.assert_array_equal(K.avg_pool2d_forward(x, k, s, p, cm, count_include_pad=True), y)
    np.testing.assert_array_equal(K.avg_pool2d_forward(x, k, s, p, cm, count_include_pad=np.bool_(True)), y)
    np.testing.assert_array_equal(K.avg_pool2d_forward(x, k, s, p, cm, count_include_pad=1), y)  # ONNX's 0/1
    np.testing.assert_array_equal(K.avg_pool2d_forward(x, k, s, p, cm, count_include_pad=np.int64(0)),
                                  K.avg_pool2d_forward(x, k, s, p, cm, count_include_pad=False))
    dy = randn(rng, y.shape, np.float32)
    np.testing.assert_array_equal(K.avg_pool2d_backward(dy, x.shape, k, s, p, cm, True),
                                  K.avg_pool2d_backward(dy, x.shape, k, stride=s, padding=p, ceil_mode=cm))


@pytest.mark.parametrize("case", PADDED_IDS)
def test_avg_pool2d_without_padding_gradcheck(case, rng, one_thread):
    N, C, H, W, k, s, p, cm = nv.POOL_CASES[case]
    x = rng.standard_normal((N, C, H, W))
    y = K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm, count_include_pad=False)
    G = rng.standard_normal(y.shape)
    dx = K.avg_pool2d_backward(G, x.shape, k, stride=s, padding=p, ceil_mode=cm, count_include_pad=False)
    check_grad(dx, lambda: float(np.sum(K.avg_pool2d_forward(x, k, s, p, cm, count_include_pad=False) * G)), x, "x")


# --------------------------------------------------------------------------- global max pooling
@pytest.mark.parametrize("shape", list(GLOBAL_SHAPES.values()), ids=list(GLOBAL_SHAPES))
def test_global_max_pool2d_matches_naive(shape, dtype, rng):
    x = randn(rng, shape, dtype)
    y, argmax = K.global_max_pool2d_forward(x)
    ey, eam = nv.global_max_pool2d_forward(x)
    assert y.dtype == dtype and y.shape == shape[:2]
    assert argmax.dtype == np.int64 and argmax.shape == shape[:2]
    np.testing.assert_array_equal(y, ey.astype(dtype))  # a maximum is exact
    np.testing.assert_array_equal(argmax, eam)
    dy = randn(rng, y.shape, dtype)
    dx = K.global_max_pool2d_backward(dy, argmax, x.shape)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, nv.global_max_pool2d_backward(dy, eam, x.shape).astype(dtype))


@pytest.mark.parametrize("values", ["constant", "constant_negative", "ints", "signed_zeros"])
def test_global_max_pool2d_ties_go_to_the_first_maximum(values, dtype, rng):
    shape = (2, 3, 4, 5)
    if values == "constant":
        x = np.full(shape, 1.5, dtype=dtype)
    elif values == "constant_negative":
        x = np.full(shape, -7.0, dtype=dtype)
    elif values == "ints":
        x = rng.integers(-1, 2, size=shape).astype(dtype)
    else:
        x = np.where(rng.random(shape) < 0.5, -0.0, 0.0).astype(dtype)
    y, argmax = K.global_max_pool2d_forward(x)
    ey, eam = nv.global_max_pool2d_forward(x)
    np.testing.assert_array_equal(y, ey.astype(dtype))
    np.testing.assert_array_equal(argmax, eam)
    # the same winners as a max_pool2d whose one window is the whole plane
    _, window_am = K.max_pool2d_forward(x, shape[2:])
    np.testing.assert_array_equal(argmax, window_am[:, :, 0, 0])


def test_global_max_pool2d_first_nan_wins_and_infinities(dtype):
    nan, inf = np.nan, np.inf
    planes = np.array([
        [[1.0, nan, 3.0], [nan, 9.0, 2.0]],      # two NaNs: the first (index 1) wins
        [[-inf, inf, 0.0], [1.0, 2.0, 3.0]],     # +inf and -inf are no NaN: +inf wins
        [[-inf, -inf, -inf], [-inf, -inf, -inf]],
        [[2.0, 5.0, 5.0], [1.0, 1.0, nan]],      # the NaN at the end still wins
    ], dtype=dtype)
    x = planes[None]
    y, argmax = K.global_max_pool2d_forward(x)
    np.testing.assert_array_equal(argmax[0], [1, 1, 0, 5])
    np.testing.assert_array_equal(y[0], [nan, inf, -inf, nan])
    ey, eam = nv.global_max_pool2d_forward(x)
    np.testing.assert_array_equal(argmax, eam)
    np.testing.assert_array_equal(y, ey.astype(dtype))
    _, window_am = K.max_pool2d_forward(x, (2, 3))  # max_pool2d's rule
    np.testing.assert_array_equal(argmax, window_am[:, :, 0, 0])


def test_global_max_pool2d_gradcheck(rng, one_thread):
    x = distinct_values(rng, (2, 3, 4, 5), spacing=0.1)  # no +-1e-6 step changes a winner
    y, argmax = K.global_max_pool2d_forward(x)
    G = rng.standard_normal(y.shape)
    dx = K.global_max_pool2d_backward(G, argmax, x.shape)
    check_grad(dx, lambda: float(np.sum(K.global_max_pool2d_forward(x)[0] * G)), x, "x")


def test_global_max_pool2d_takes_any_layout(rng):
    """Strided and Fortran-ordered inputs give the answers of contiguous copies."""
    big = rng.standard_normal((3, 4, 9, 8))
    for x in (big[::2, 1:, ::2, 1:], np.asfortranarray(big)):
        y, argmax = K.global_max_pool2d_forward(x)
        ey, eam = nv.global_max_pool2d_forward(x)
        np.testing.assert_array_equal(y, ey)
        np.testing.assert_array_equal(argmax, eam)
        dy = rng.standard_normal(y.shape[::-1]).T  # not contiguous
        np.testing.assert_array_equal(K.global_max_pool2d_backward(dy, argmax.T.copy().T, x.shape),
                                      nv.global_max_pool2d_backward(dy, eam, x.shape))


# --------------------------------------------------------------------------- the raw kernels in user code
@numba.njit
def _user_pooling(x, y_avg, y_avg_nopad, y_max, argmax, dx):
    K.avg_pool2d_forward_kernel(x, y_avg, 3, 3, 2, 2, 1, 1)  # count_include_pad left out: True
    K.avg_pool2d_forward_kernel(x, y_avg_nopad, 3, 3, 2, 2, 1, 1, False)
    K.global_max_pool2d_forward_kernel(x, y_max, argmax)
    return K.global_max_pool2d_backward_kernel(y_max, argmax, dx)


def test_raw_kernels_compose_in_user_njit_code(rng):
    x = rng.standard_normal((2, 3, 7, 6))
    y_avg, y_nopad = np.empty((2, 3, 4, 3)), np.empty((2, 3, 4, 3))
    y_max, argmax, dx = np.empty((2, 3)), np.empty((2, 3), np.int64), np.empty_like(x)
    assert _user_pooling(x, y_avg, y_nopad, y_max, argmax, dx) == 0
    np.testing.assert_array_equal(y_avg, K.avg_pool2d_forward(x, 3, 2, 1))
    np.testing.assert_array_equal(y_nopad, K.avg_pool2d_forward(x, 3, 2, 1, count_include_pad=False))
    y, am = K.global_max_pool2d_forward(x)
    np.testing.assert_array_equal(y_max, y)
    np.testing.assert_array_equal(argmax, am)
    np.testing.assert_array_equal(dx, K.global_max_pool2d_backward(y, am, x.shape))


# --------------------------------------------------------------------------- PyTorch
def _leaf(torch, a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


_TORCH_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}


@pytest.mark.parametrize("count_include_pad", [False, True], ids=["no_pad_count", "pad_count"])
@pytest.mark.parametrize("case", POOL_IDS)
def test_avg_pool2d_matches_torch(case, count_include_pad, dtype, rng):
    torch = pytest.importorskip("torch")
    x, k, s, p, cm = _pool_inputs(rng, case, dtype)
    tx = _leaf(torch, x)
    ty = torch.nn.AvgPool2d(k, s, p, ceil_mode=cm, count_include_pad=count_include_pad)(tx)
    y = K.avg_pool2d_forward(x, k, s, p, cm, count_include_pad=count_include_pad)
    assert y.dtype == dtype
    assert_close(y, ty.detach().numpy(), dtype, rtol=_TORCH_RTOL[dtype], err_msg="y")
    dy = randn(rng, y.shape, dtype)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    dx = K.avg_pool2d_backward(dy, x.shape, k, s, p, cm, count_include_pad=count_include_pad)
    assert_close(dx, tx.grad.numpy(), dtype, rtol=_TORCH_RTOL[dtype], err_msg="dx")


@pytest.mark.parametrize("values", ["normal", "repeated_ints", "one_nan_per_plane"])
@pytest.mark.parametrize("shape", list(GLOBAL_SHAPES.values()), ids=list(GLOBAL_SHAPES))
def test_global_max_pool2d_matches_torch(shape, values, dtype, rng):
    torch = pytest.importorskip("torch")
    if values == "normal":
        x = randn(rng, shape, dtype)
    elif values == "repeated_ints":
        x = rng.integers(0, 3, size=shape).astype(dtype)
    else:
        x = randn(rng, shape, dtype)
        flat = x.reshape(shape[0] * shape[1], -1)
        flat[np.arange(len(flat)), rng.integers(0, flat.shape[1], len(flat))] = np.nan
    N, C = shape[:2]
    tx = _leaf(torch, x)
    ty, tidx = torch.nn.AdaptiveMaxPool2d(1, return_indices=True)(tx)
    y, argmax = K.global_max_pool2d_forward(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ty.detach().numpy().reshape(N, C).astype(dtype))  # NaN == NaN here
    np.testing.assert_array_equal(argmax, tidx.numpy().reshape(N, C))
    dy = randn(rng, (N, C), dtype)
    ty.backward(torch.tensor(dy.astype(np.float64)).reshape(N, C, 1, 1))
    dx = K.global_max_pool2d_backward(dy, argmax, x.shape)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, tx.grad.numpy().astype(dtype))


# --------------------------------------------------------------------------- random geometry
@st.composite
def _pool_geometry(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 8))
    W = draw(st.integers(max(1, kw - 2 * pw), 8))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 2)), H, W), k=(kh, kw), stride=stride,
                padding=(ph, pw), ceil_mode=draw(st.booleans()), ints=draw(st.booleans()),
                seed=draw(st.integers(0, 2**31)))


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(g=_pool_geometry())
def test_pool_options_random_geometry_float64(g):
    """count_include_pad=False average pooling over random legal geometries, and global max pooling of the
    same inputs (ties half of the time), against the naive loops."""
    r = np.random.default_rng(g["seed"])
    x = r.integers(0, 3, size=g["shape"]).astype(np.float64) if g["ints"] else r.standard_normal(g["shape"])
    k, s, p, cm = g["k"], g["stride"], g["padding"], g["ceil_mode"]
    y = K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm, count_include_pad=False)
    assert_close(y, nv.avg_pool2d_forward(x, k, s, p, cm, count_include_pad=False), np.float64)
    dy = r.standard_normal(y.shape)
    assert_close(K.avg_pool2d_backward(dy, x.shape, k, s, p, cm, count_include_pad=False),
                 nv.avg_pool2d_backward(dy, x.shape, k, s, p, cm, count_include_pad=False), np.float64)
    gy, gam = K.global_max_pool2d_forward(x)
    ey, eam = nv.global_max_pool2d_forward(x)
    np.testing.assert_array_equal(gy, ey)
    np.testing.assert_array_equal(gam, eam)


# --------------------------------------------------------------------------- refused calls
X = np.zeros((2, 3, 4, 4), dtype=np.float32)


@pytest.mark.parametrize("call,exc,fragments", [
    pytest.param(lambda: K.avg_pool2d_forward(X, 2, count_include_pad="no"), TypeError,
                 ["avg_pool2d_forward", "count_include_pad must be True or False", "'no'"], id="fwd-flag-str"),
    pytest.param(lambda: K.avg_pool2d_forward(X, 2, count_include_pad=None), TypeError,
                 ["count_include_pad must be True or False", "None"], id="fwd-flag-none"),
    pytest.param(lambda: K.avg_pool2d_backward(np.zeros((2, 3, 2, 2), np.float32), X.shape, 2, count_include_pad=2),
                 TypeError, ["avg_pool2d_backward", "count_include_pad must be True or False", "2 (int)"],
                 id="bwd-flag-int"),
    pytest.param(lambda: K.avg_pool2d_forward(X, 2, count_include_pad=1.0), TypeError,
                 ["count_include_pad must be True or False", "1.0 (float)"], id="fwd-flag-float"),
    pytest.param(lambda: K.avg_pool2d_forward(X, 3, padding=2, count_include_pad=False), ValueError,
                 ["padding must be at most half the kernel size"], id="padding-over-half"),
    pytest.param(lambda: K.global_max_pool2d_forward(np.zeros((2, 3, 0, 4), np.float32)), ValueError,
                 ["global_max_pool2d_forward", "planes are empty (0x4)", "at least one pixel"], id="empty-plane"),
    pytest.param(lambda: K.global_max_pool2d_forward(np.zeros((2, 3, 4))), ValueError,
                 ["global_max_pool2d_forward", "x must have 4 dimensions"], id="3d-input"),
    pytest.param(lambda: K.global_max_pool2d_forward(np.zeros((2, 3, 4, 4), np.int32)), TypeError,
                 ["x must be float32 or float64"], id="int-input"),
    pytest.param(lambda: K.global_max_pool2d_forward([[[[1.0]]]]), TypeError,
                 ["x must be a numpy array"], id="list-input"),
    pytest.param(lambda: K.global_max_pool2d_backward(np.zeros((2, 4)), np.zeros((2, 4), np.int64), (2, 3, 4, 4)),
                 ValueError, ["global_max_pool2d_backward", "dy must have shape (2, 3)"], id="dy-shape"),
    pytest.param(lambda: K.global_max_pool2d_backward(np.zeros((2, 3, 1, 1)), np.zeros((2, 3), np.int64),
                                                      (2, 3, 4, 4)),
                 ValueError, ["dy must have 2 dimensions"], id="dy-4d"),
    pytest.param(lambda: K.global_max_pool2d_backward(np.zeros((2, 3)), np.zeros((2, 3)), (2, 3, 4, 4)),
                 TypeError, ["argmax must be an integer array", "float64"], id="argmax-float"),
    pytest.param(lambda: K.global_max_pool2d_backward(np.zeros((2, 3)), np.zeros((3, 2), np.int64), (2, 3, 4, 4)),
                 ValueError, ["argmax must have shape (2, 3)"], id="argmax-shape"),
    pytest.param(lambda: K.global_max_pool2d_backward(np.zeros((2, 3)), np.full((2, 3), 16), (2, 3, 4, 4)),
                 ValueError, ["argmax values must be in [0, 16)"], id="argmax-past-plane"),
    pytest.param(lambda: K.global_max_pool2d_backward(np.zeros((2, 3)), np.full((2, 3), -1), (2, 3, 4, 4)),
                 ValueError, ["argmax values must be in [0, 16)"], id="argmax-negative"),
    pytest.param(lambda: K.global_max_pool2d_backward(np.zeros((2, 3)), np.zeros((2, 3), np.int64), (2, 3, 0, 4)),
                 ValueError, ["x_shape must be 4 positive ints"], id="x-shape-empty"),
])
def test_refused_calls_say_what_is_wrong(call, exc, fragments):
    with pytest.raises(exc) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
