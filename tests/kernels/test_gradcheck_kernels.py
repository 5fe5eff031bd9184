"""Central-difference gradient checks (float64) for every backward kernel.

Each forward output y is reduced to the scalar L = sum(y * G) with a fixed
random G, so dL/dy = G is what the backward kernel receives; the losses are
checked against L = loss directly.  The convolutions' analytic gradients come from the kernels on every thread;
the central differences run on one thread, where thousands of tiny calls are not held up by a busy second core.
They take two forward calls per element, except for the convolutions, whose pairs of calls step one element of
every batch item of x (every output channel of w and b) at once and read each one's share of L
(helpers.check_grad_by_block: the same difference per element, N or K times fewer calls).
"""

import numpy as np
import pytest

import naive as nv
from helpers import check_grad, check_grad_by_block, distinct_values, single_thread

from fastcnn import kernels as K

F64 = np.float64


def _objective(fwd, G):
    return lambda: float(np.sum(fwd() * G))


# ---------------------------------------------------------------------------
# convolution: every algorithm a plan can name, on every case it applies to
# ---------------------------------------------------------------------------
#: The central differences cost two forward calls per element of a batch item of x and of an output channel's
#: w: on these cases (the largest of naive.CONV_CASES) the quick run checks a smaller plane, (H, W) here, with
#: the same batch, channels, kernel, stride and padding, so the same algorithm, layout and buffers for every pass
#: (test_smaller_gradcheck_planes_are_planned_as_the_cases); the cases as written run under -m slow.
SMALLER_PLANE = {
    "channellast_dx_only_N10_C20_K6_stride2": (5, 4),  # 7x8: 2,627 forward calls per algorithm, 1,187 here
    "channellast_N9_K24_C6_5x5": (5, 5),  # 9x9: 1,334 calls of 2.6 MMAC, 662 of 0.8 MMAC here
    "channellast_K27_C17_rect_stride_pad": (5, 4),
    "channellast_K16_C16_pad1": (3, 4),
    "batchlast_N8_C6_K7_rect_stride_pad": (5, 4),
}


def _gradcheck_case(case, smaller):
    N, C, H, W, Kout, R, S, s, p = nv.CONV_CASES[case]
    if smaller:
        H, W = SMALLER_PLANE[case]
    return N, C, H, W, Kout, R, S, s, p


def _plan_signature(case, smaller, algorithm, dtype=F64):
    """(algorithm, layout, buffer roles) of each pass of ``algorithm``'s plan; None where it does not apply."""
    N, C, H, W, Kout, R, S, s, p = _gradcheck_case(case, smaller)
    try:
        plans = K.conv2d_plan((N, C, H, W), (Kout, C, R, S), s, p, dtype, algorithm=algorithm)
    except ValueError:
        return None
    return [(q.algorithm, q.layout, sorted(b.role for b in q.buffers))
            for q in (plans.forward, plans.weight_grad, plans.input_grad)]


def _conv_algorithm_cases():
    params = []
    for algorithm in K.CONV_ALGORITHMS:
        for case in nv.CONV_CASES:
            if _plan_signature(case, False, algorithm) is None:
                continue  # e.g. matmul_1x1 on a 3x3 kernel
            if case in SMALLER_PLANE:
                params.append(pytest.param(algorithm, case, True, id=f"{algorithm}-{case}-smaller_plane"))
                params.append(pytest.param(algorithm, case, False, id=f"{algorithm}-{case}", marks=pytest.mark.slow))
            else:
                params.append(pytest.param(algorithm, case, False, id=f"{algorithm}-{case}"))
    return params


@pytest.mark.parametrize("algorithm,case,smaller", _conv_algorithm_cases())
def test_conv2d_gradcheck(algorithm, case, smaller, rng):
    N, C, H, W, Kout, R, S, s, p = _gradcheck_case(case, smaller)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((Kout, C, R, S)), rng.standard_normal(Kout)
    y = K.conv2d_forward(x, w, b, stride=s, padding=p, algorithm=algorithm)
    G = rng.standard_normal(y.shape)
    dx, dw, db = K.conv2d_backward(G, x, w, stride=s, padding=p, algorithm=algorithm)

    def share_of(axis):  # L = sum(y * G) split along one axis of y: per batch item (0) or per output channel (1)
        return lambda: (K.conv2d_forward(x, w, b, stride=s, padding=p, algorithm=algorithm) * G).sum(
            axis=tuple(a for a in range(4) if a != axis))

    with single_thread():  # the kernels above ran on every thread; the reference's thousands of tiny forwards, one
        check_grad_by_block(dx, share_of(0), x, "x")  # x[n] moves only y[n]
        check_grad_by_block(dw, share_of(1), w, "w")  # w[k] and b[k] move only y[:, k]
        check_grad_by_block(db, share_of(1), b, "b")


@pytest.mark.parametrize("case", list(SMALLER_PLANE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smaller_gradcheck_planes_are_planned_as_the_cases(case, dtype):
    """The quick gradient checks on a smaller plane run what the case runs: for every algorithm (and "auto"'s
    choice) the same algorithm, layout and buffers per pass.  If this fails, choose another (H, W) for the case
    in SMALLER_PLANE."""
    for algorithm in K.CONV_ALGORITHMS + ("auto",):
        assert _plan_signature(case, True, algorithm, dtype) == _plan_signature(case, False, algorithm, dtype), (
            case, algorithm)


@pytest.mark.parametrize("case", ["rect_stride_and_padding", "batchlast_N9_K6_pad2"])
def test_conv2d_im2col_functions_are_the_gradient_checked_im2col_plan(case, rng):
    """The named im2col functions give the bits of the algorithm="im2col" plan, whose gradients
    test_conv2d_gradcheck checks on every case (these two included)."""
    N, C, H, W, Kout, R, S, s, p = nv.CONV_CASES[case]
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((Kout, C, R, S)), rng.standard_normal(Kout)
    y = K.conv2d_forward_im2col(x, w, b, stride=s, padding=p)
    np.testing.assert_array_equal(y, K.conv2d_forward(x, w, b, stride=s, padding=p, algorithm="im2col"))
    G = rng.standard_normal(y.shape)
    for got, want in zip(K.conv2d_backward_im2col(G, x, w, stride=s, padding=p),
                         K.conv2d_backward(G, x, w, stride=s, padding=p, algorithm="im2col"), strict=True):
        np.testing.assert_array_equal(got, want)
    assert "im2col" in K.CONV_ALGORITHMS and case in nv.CONV_CASES and case not in SMALLER_PLANE  # checked in full


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------
POOL_GRAD_CASES = [
    "odd_size_ceil_partial_last_window",
    "ceil_last_window_in_padding_dropped",
    "k3_s2_pad1",
    "rect_kernel_stride_pad_ceil",
    "ceil_drop_in_W_only",
    "stride_gt_kernel",
    "stride1_pad1_ceil",
]


@pytest.mark.parametrize("case", POOL_GRAD_CASES)
def test_max_pool2d_gradcheck(case, rng):
    N, C, H, W, k, s, p, cm = nv.POOL_CASES[case]
    x = distinct_values(rng, (N, C, H, W), spacing=0.1)  # no +-1e-6 step changes an argmax
    y, am = K.max_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    G = rng.standard_normal(y.shape)
    dx = K.max_pool2d_backward(G, am, x.shape)
    L = _objective(lambda: K.max_pool2d_forward(x, k, stride=s, padding=p,
                                                ceil_mode=cm)[0], G)
    check_grad(dx, L, x, "x")


@pytest.mark.parametrize("case", POOL_GRAD_CASES)
def test_avg_pool2d_gradcheck(case, rng):
    N, C, H, W, k, s, p, cm = nv.POOL_CASES[case]
    x = rng.standard_normal((N, C, H, W))
    y = K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    G = rng.standard_normal(y.shape)
    dx = K.avg_pool2d_backward(G, x.shape, k, stride=s, padding=p, ceil_mode=cm)
    L = _objective(lambda: K.avg_pool2d_forward(x, k, stride=s, padding=p,
                                                ceil_mode=cm), G)
    check_grad(dx, L, x, "x")


def test_global_avg_pool2d_gradcheck(rng):
    x = rng.standard_normal((2, 3, 3, 5))
    G = rng.standard_normal((2, 3))
    dx = K.global_avg_pool2d_backward(G, x.shape)
    check_grad(dx, _objective(lambda: K.global_avg_pool2d_forward(x), G), x, "x")


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------
def test_relu_gradcheck(rng):
    raw = rng.standard_normal((2, 3, 4, 4))
    x = np.sign(raw) * (0.1 + np.abs(raw))  # nowhere near the kink at 0
    G = rng.standard_normal(x.shape)
    dx = K.relu_backward(G, x)
    check_grad(dx, _objective(lambda: K.relu_forward(x), G), x, "x")


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_smooth_activation_gradcheck(name, rng):
    fwd, bwd = getattr(K, f"{name}_forward"), getattr(K, f"{name}_backward")
    x = rng.standard_normal((2, 3, 4, 4)) * 2
    G = rng.standard_normal(x.shape)
    dx = bwd(G, fwd(x))
    check_grad(dx, _objective(lambda: fwd(x), G), x, "x")


# ---------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------
def test_linear_gradcheck(rng):
    x = rng.standard_normal((3, 5))
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(4)
    G = rng.standard_normal((3, 4))
    dx, dw, db = K.linear_backward(G, x, w)
    L = _objective(lambda: K.linear_forward(x, w, b), G)
    check_grad(dx, L, x, "x")
    check_grad(dw, L, w, "w")
    check_grad(db, L, b, "b")


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 20.0], ids=["moderate", "peaked"])
def test_softmax_cross_entropy_gradcheck(scale, rng):
    logits = rng.standard_normal((4, 6)) * scale
    labels = rng.integers(0, 6, size=4)
    _, d = K.softmax_cross_entropy(logits, labels)
    check_grad(d, lambda: float(K.softmax_cross_entropy(logits, labels)[0]),
               logits, "logits")


def test_mse_gradcheck(rng):
    pred = rng.standard_normal((3, 4))
    target = rng.standard_normal((3, 4))
    _, d = K.mse_loss(pred, target)
    check_grad(d, lambda: float(K.mse_loss(pred, target)[0]), pred, "pred")
