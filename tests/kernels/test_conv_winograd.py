"""The Winograd convolutions (``algorithm="winograd"``, F(2x2, 3x3), and ``"winograd4"``, F(4x4, 3x3)) against oracles.

Every test runs for both tiles.  Every pass (y, dw and db, dx) is checked against the naive loops of
``tests/naive.py`` on odd sizes, padding 0, 1 and 2, channel counts that are
not multiples of 8 and batch 1, in float32 and float64; against the direct
channel-last algorithm and float64 im2col at wider shapes; against PyTorch's
autograd; and shapes it does not apply to are refused with the reason.
(``test_conv_plan.py`` and ``test_gradcheck_kernels.py`` also run it on every
oracle case it applies to, and check its plan's memory.)

Accuracy, measured (max |error| / max |float64 reference|; standard normal
x, w and dy in float32 (seed 0), against the float64 naive loops on the same values):

================================  =========================  =========================  =========================
shape                             winograd4  y / dx / dw     winograd  y / dx / dw      channel_last  y / dx / dw
================================  =========================  =========================  =========================
2 x 64 x 8 x 8 -> 64, pad 1       4.3e-6 / 4.9e-6 / 2.5e-6   3.3e-7 / 2.7e-7 / 2.3e-7   6.6e-7 / 7.5e-7 / 2.5e-7
2 x 32 x 9 x 7 -> 32, pad 0       4.2e-6 / 1.9e-6 / 1.4e-6   2.1e-7 / 3.3e-7 / 2.4e-7   6.2e-7 / 7.3e-7 / 1.5e-7
2 x 3 x 12 x 12 -> 32, pad 2      1.8e-6 / 2.9e-6 / 1.6e-6   1.2e-7 / 2.0e-7 / 2.7e-7   1.5e-7 / 4.3e-7 / 2.3e-7
2 x 128 x 8 x 8 -> 128, pad 1     7.2e-6 / 9.6e-6 / 2.4e-6   5.3e-7 / 4.3e-7 / 2.5e-7   1.2e-6 / 1.2e-6 / 2.6e-7
1 x 128 x 6 x 6 -> 128, pad 1     5.5e-6 / 4.3e-6 / 1.7e-6   3.7e-7 / 4.7e-7 / 1.8e-7   1.1e-6 / 1.3e-6 / 2.1e-7
================================  =========================  =========================  =========================

F(2x2, 3x3)'s transforms only add numbers and halve them, so its float32
error is that of the direct algorithms (the channel sums are shorter: 16
products of C terms instead of one of 9*C); the tests' default float32
tolerance (1e-4 relative to the largest value) holds with a wide margin.
F(4x4, 3x3)'s transforms multiply by up to 8 and 1/24 and add numbers of
mixed signs, so its error is 5-10x that of the direct algorithms (up to
1e-5 at 128 channels, growing slowly with the channel count); its float32
tolerance here is :data:`TOLERANCE` ``["winograd4"]`` = 5e-5, five times
the largest error measured.  The float64 errors of both are about 1e-13.
"""

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, randn

import fastcnn
from fastcnn import kernels as K

ALGORITHMS = ("winograd", "winograd4")
#: float32 tolerance (relative to the largest value) per algorithm; None: the tests' default (1e-4); see above.
TOLERANCE = {"winograd": None, "winograd4": 5e-5}

# (N, C, H, W, K, padding): odd sizes, padding 0/1/2, channels not multiples of 8, batch 1
CASES = {
    "batch1_C1_K1_pad0": (1, 1, 5, 5, 1, 0),
    "C3_K5_odd_rect_pad1": (2, 3, 5, 6, 5, 1),
    "C17_K19_odd_pad0": (1, 17, 7, 9, 19, 0),
    "C8_K16_pad2": (3, 8, 6, 5, 16, 2),
    "C6_K9_rect_pad_1_2": (2, 6, 4, 7, 9, (1, 2)),
    "C16_K16_even_pad1": (2, 16, 8, 8, 16, 1),
    "output_1x1": (2, 4, 3, 3, 3, 0),
    "input_1x2_pad2": (1, 5, 1, 2, 7, 2),
}


def _data(rng, case, dtype):
    N, C, H, W, Kout, p = CASES[case]
    x, w, b = randn(rng, (N, C, H, W), dtype), randn(rng, (Kout, C, 3, 3), dtype), randn(rng, (Kout,), dtype)
    dy = randn(rng, K.conv2d_output_shape(x.shape, w.shape, 1, p), dtype)
    return x, w, b, dy, p


def _rtol(algorithm, dtype):
    return TOLERANCE[algorithm] if dtype == np.float32 else None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", list(CASES))
def test_every_pass_matches_naive(case, algorithm, dtype, rng):
    x, w, b, dy, p = _data(rng, case, dtype)
    rtol = _rtol(algorithm, dtype)
    y = K.conv2d_forward(x, w, b, 1, p, algorithm=algorithm)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_close(y, nv.conv2d_forward(x, w, b, 1, p), dtype, rtol=rtol, err_msg="y")
    dx, dw, db = K.conv2d_backward(dy, x, w, 1, p, algorithm=algorithm)
    for got, want, name in zip((dx, dw, db), nv.conv2d_backward(dy, x, w, 1, p), ("dx", "dw", "db")):
        assert got.dtype == dtype, name
        assert_close(got, want, dtype, rtol=rtol, err_msg=name)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("shape", [(5, 24, 11, 9, 40, 1), (2, 64, 8, 8, 64, 1), (3, 3, 12, 13, 32, 1),
                                   (4, 33, 10, 6, 17, 2), (2, 20, 9, 9, 8, 0), (3, 128, 6, 7, 128, 1)])
def test_matches_channel_last_and_im2col(shape, algorithm, rng):
    """Wider layers: 16- and 8-wide column blocks, several chunks per task, spare tiles, 128 channels."""
    N, C, H, W, Kout, p = shape
    x, w, b = randn(rng, (N, C, H, W), np.float64), randn(rng, (Kout, C, 3, 3), np.float64), randn(rng, (Kout,),
                                                                                                    np.float64)
    y = K.conv2d_forward(x, w, b, 1, p, algorithm=algorithm)
    dy = randn(rng, y.shape, np.float64)
    dx, dw, db = K.conv2d_backward(dy, x, w, 1, p, algorithm=algorithm)
    for reference in ("channel_last", "im2col"):
        assert_close(y, K.conv2d_forward(x, w, b, 1, p, algorithm=reference), np.float64, err_msg=reference)
        for got, want in zip((dx, dw, db), K.conv2d_backward(dy, x, w, 1, p, algorithm=reference)):
            assert_close(got, want, np.float64, err_msg=reference)


#: float32 error bound against float64 im2col at 64 channels: F(2x2) within 4x channel_last's, F(4x4) within 20x
#: (measured: about 7x, see the module docstring), and never above these relative errors.
ERROR_BOUNDS = {"winograd": (4, 1e-6), "winograd4": (20, 2e-5)}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_float32_error_against_the_direct_algorithm(algorithm, rng):
    """A 64-channel layer in float32 against float64 im2col, next to channel_last's error."""
    x, w = randn(rng, (4, 64, 12, 12), np.float32), randn(rng, (64, 64, 3, 3), np.float32)
    dy = randn(rng, (4, 64, 12, 12), np.float32)
    x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    want = (K.conv2d_forward(x64, w64, None, 1, 1, algorithm="im2col"),) + K.conv2d_backward(
        dy64, x64, w64, 1, 1, algorithm="im2col")[:2]

    def errors(name):
        got = (K.conv2d_forward(x, w, None, 1, 1, algorithm=name),) + K.conv2d_backward(
            dy, x, w, 1, 1, algorithm=name)[:2]
        return [np.max(np.abs(g - r)) / np.max(np.abs(r)) for g, r in zip(got, want)]

    factor, bound = ERROR_BOUNDS[algorithm]
    for name, e, d in zip(("y", "dx", "dw"), errors(algorithm), errors("channel_last")):
        assert e < factor * d + 1e-7 and e < bound, (name, e, d)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("threads", [1, 2])
def test_thread_counts_agree_and_repeat_exactly(threads, algorithm, rng, restore_num_threads):
    x, w = randn(rng, (7, 12, 9, 10), np.float32), randn(rng, (20, 12, 3, 3), np.float32)
    dy = randn(rng, (7, 20, 9, 10), np.float32)

    def run():
        return (K.conv2d_forward(x, w, None, 1, 1, algorithm=algorithm),) + K.conv2d_backward(
            dy, x, w, 1, 1, algorithm=algorithm)

    fastcnn.set_num_threads(min(threads, fastcnn.get_num_threads()))
    first, again = run(), run()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # per-task partial sums, added in task order
    fastcnn.set_num_threads(1)
    for a, b in zip(first, run()):
        assert_close(a, b, np.float32, rtol=TOLERANCE[algorithm])


#: G of F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray 2016), by the number of transform positions.
G = {16: np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
     36: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                   [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])}


@pytest.mark.parametrize("positions", [16, 36])
def test_filter_transform_is_g_w_gt(positions, rng):
    """The raw filter kernel against the matrices of Lavin & Gray, both layouts."""
    g = G[positions]
    w = randn(rng, (5, 3, 3, 3), np.float64)
    u = np.full((positions, 3, 8), np.nan)
    K.winograd_filter(w, u, False)
    want = np.einsum("ir,kcrs,js->ijck", g, w, g).reshape(positions, 3, 5)
    np.testing.assert_allclose(u[:, :, :5], want, rtol=1e-14, atol=1e-14)
    assert np.all(u[:, :, 5:] == 0)
    ut = np.full((positions, 5, 8), np.nan)
    K.winograd_filter(w, ut, True)
    flipped = w[:, :, ::-1, ::-1]
    want_t = np.einsum("ir,kcrs,js->ijkc", g, flipped, g).reshape(positions, 5, 3)
    np.testing.assert_allclose(ut[:, :, :3], want_t, rtol=1e-14, atol=1e-14)
    assert np.all(ut[:, :, 3:] == 0)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", ["C3_K5_odd_rect_pad1", "C8_K16_pad2", "input_1x2_pad2", "C16_K16_even_pad1"])
def test_matches_torch(case, algorithm, dtype, rng):
    torch = pytest.importorskip("torch")
    x, w, b, dy, p = _data(rng, case, dtype)
    xt, wt, bt = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, 1, p)
    yt.backward(torch.tensor(dy.astype(np.float64)))
    y = K.conv2d_forward(x, w, b, 1, p, algorithm=algorithm)
    dx, dw, db = K.conv2d_backward(dy, x, w, 1, p, algorithm=algorithm)
    for got, want, name in ((y, yt, "y"), (dx, xt.grad, "dx"), (dw, wt.grad, "dw"), (db, bt.grad, "db")):
        assert_close(got, want.detach().numpy(), dtype, rtol=_rtol(algorithm, dtype), err_msg=name)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("x_shape,w_shape,stride,padding,got", [
    ((2, 3, 9, 9), (4, 3, 5, 5), 1, 1, "kernel 5x5, stride (1, 1), padding (1, 1)"),
    ((2, 3, 9, 9), (4, 3, 3, 3), 2, 1, "kernel 3x3, stride (2, 2), padding (1, 1)"),
    ((2, 3, 9, 9), (4, 3, 3, 3), 1, 3, "kernel 3x3, stride (1, 1), padding (3, 3)"),
    ((2, 3, 9, 9), (4, 3, 3, 2), 1, 0, "kernel 3x2, stride (1, 1), padding (0, 0)"),
    ((2, 3, 9, 9), (4, 3, 3, 3), (1, 2), 1, "kernel 3x3, stride (1, 2), padding (1, 1)"),
])
def test_inapplicable_shapes_are_refused(x_shape, w_shape, stride, padding, got, algorithm, rng):
    x, w = randn(rng, x_shape, np.float32), randn(rng, w_shape, np.float32)
    needs = f"algorithm '{algorithm}' needs a 3x3 kernel with stride 1 and padding at most 2, got "
    message = needs + got.replace("(", r"\(").replace(")", r"\)") + "; use algorithm='auto'"
    with pytest.raises(ValueError, match="conv2d_forward: " + message):
        K.conv2d_forward(x, w, None, stride, padding, algorithm=algorithm)
    dy = np.ones(K.conv2d_output_shape(x_shape, w_shape, stride, padding), np.float32)
    with pytest.raises(ValueError, match="conv2d_backward: " + message):
        K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm)
    with pytest.raises(ValueError, match="conv2d_plan: " + message):
        K.conv2d_plan(x_shape, w_shape, stride, padding, algorithm=algorithm)


def test_direct_never_selects_winograd_and_auto_only_where_it_wins():
    """auto: winograd4 from 16 input and output channels (test_conv_plan has the table); direct: never."""
    for x_shape, w_shape in (((64, 64, 16, 16), (64, 64, 3, 3)), ((64, 32, 32, 32), (32, 32, 3, 3)),
                             ((64, 16, 32, 32), (16, 16, 3, 3)), ((64, 8, 32, 32), (16, 8, 3, 3))):
        plans = K.conv2d_plan(x_shape, w_shape, 1, 1, algorithm="direct")
        assert not {plans.forward.algorithm, plans.weight_grad.algorithm, plans.input_grad.algorithm} & set(ALGORITHMS)
        plans = K.conv2d_plan(x_shape, w_shape, 1, 1, algorithm="auto")
        chosen = {plans.forward.algorithm, plans.weight_grad.algorithm, plans.input_grad.algorithm}
        if x_shape[1] >= 16:
            assert chosen == {"winograd4"}
        else:
            assert "winograd4" not in chosen


@pytest.mark.parametrize("algorithm,mt", [("winograd", 2), ("winograd4", 4)])
def test_plan_names_its_buffers(algorithm, mt):
    plans = K.conv2d_plan((64, 64, 16, 16), (64, 64, 3, 3), 1, 1, algorithm=algorithm, num_threads=2)
    assert {plans.forward.algorithm, plans.weight_grad.algorithm, plans.input_grad.algorithm} == {algorithm}
    a2 = (mt + 2) ** 2
    forward = {b.role: b.shape for b in plans.forward.buffers}
    assert forward["x_tiles"] == (64, 18, 18, 64)  # m*ceil(P/m) + 2 rows and columns
    assert forward["u_forward"] == (a2, 64, 64)
    tasks, planes, tiles, channels = forward["tiles"]
    assert (tasks, planes, channels) == (2, a2, 64) and tiles % 2 == 1 and (tiles - 1) % (16 // mt) == 0
    weight = {b.role: b.shape for b in plans.weight_grad.buffers}
    assert weight["dy_tiles"] == (64, 16, 16, 64) and weight["partial_du"] == (2, a2, 64, 64)
    assert {b.role: b.shape for b in plans.input_grad.buffers}["u_input"] == (a2, 64, 64)
    assert algorithm in str(plans)
