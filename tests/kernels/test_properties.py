"""Hypothesis properties of the kernels (issue 12's fuzz suite): random valid geometries against the naive loops,
invariants, and hostile arguments in a child process.

* Every convolution algorithm that applies to a random geometry (``"auto"``, ``"direct"`` and each name of
  ``CONV_ALGORITHMS`` forced by ``algorithm=``) equals ``tests/naive.py`` forward and backward; one that does not
  apply is refused with a ValueError naming the function, exactly when the documented rules say so.
* im2col / col2im, pooling, activations, linear, the losses, batch normalisation and the locally connected layer
  equal their naive loops (batch normalisation's gradients: central differences of a float64 reference).
* Invariants: inputs are never written, output shapes follow ``fastcnn._shapes``, convolution is linear in w,
  max pooling's argmax points at its output, softmax cross-entropy stays finite for any finite logits.
* Hostile arguments to every checked function (``tests/_hostile_worker.py``) run in a child process, so that a
  crash fails a test instead of killing pytest.

Each property has a quick test (profile "ci" of ``conftest.py``) and a deeper one marked slow (profile "slow").
"""

import inspect
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import _hostile_worker as hostile
import naive as nv
from helpers import REPO, assert_close, repo_env

from fastcnn import kernels as K
from fastcnn._shapes import conv_output_size, pool_output_size

DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**32 - 1)
#: What ``algorithm=`` is given: the two policies and every named algorithm ("tuned" times them: not here).
ALGORITHMS = ("auto", "direct") + K.CONV_ALGORITHMS


def quick_and_deep(body, examples, **strategies):
    """Two tests of one property: ``examples`` examples in the quick run, the "slow" profile's under ``-m slow``."""
    quick = settings(settings.get_profile("ci"), max_examples=examples)(given(**strategies)(body))
    deep = pytest.mark.slow(settings(settings.get_profile("slow"))(given(**strategies)(body)))
    return quick, deep


def _data(seed, dtype, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _unchanged(arrays, copies):
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c, err_msg="a kernel wrote into its input")


# --------------------------------------------------------------------------- convolution


@st.composite
def conv_geometries(draw):
    """(N, C, H, W, K, R, S, stride, padding), shaped now and then for the special algorithms' rules."""
    kind = draw(st.sampled_from(["any", "any", "any", "3x3_stride1", "1x1", "whole_input"]))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    K_ = draw(st.one_of(st.integers(1, 5), st.just(16)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    if kind == "3x3_stride1":
        R = S = 3
        stride = (1, 1)
    elif kind == "1x1":
        R = S = 1
        stride, padding = (1, 1), (0, 0)
    else:
        R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if kind == "whole_input":
        padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
        H, W = max(1, R - 2 * padding[0]), max(1, S - 2 * padding[1])
        R, S = H + 2 * padding[0], W + 2 * padding[1]
    else:
        H = draw(st.integers(max(1, R - 2 * padding[0]), 7))
        W = draw(st.integers(max(1, S - 2 * padding[1]), 7))
    return N, C, H, W, K_, R, S, stride, padding


#: Algorithms that apply to every (ungrouped, undilated) convolution.
GENERAL = ("auto", "direct", "nchw", "batch_last", "channel_last", "im2col")


def conv_applies(algorithm, g):
    """Whether ``algorithm`` applies to geometry ``g``: the rules of ``conv_plan``'s documentation, restated
    (None for an algorithm this test does not know: then the plan's answer is taken)."""
    N, C, H, W, K_, R, S, (sh, sw), (ph, pw) = g
    if algorithm in GENERAL:
        return True
    return {
        "matmul_1x1": (R, S, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0),
        "matmul_whole_input": R == H + 2 * ph and S == W + 2 * pw,
        "rows": sh == sw == 1 and ph < R and pw < S,
        "winograd": (R, S, sh, sw) == (3, 3, 1, 1) and ph <= 2 and pw <= 2,
        "winograd4": (R, S, sh, sw) == (3, 3, 1, 1) and ph <= 2 and pw <= 2,
        "depthwise": C == 1,  # groups (1 here) equal to the input channels
    }.get(algorithm)


def _plan_applies(algorithm, g, dtype):
    N, C, H, W, K_, R, S, stride, padding = g
    try:
        K.conv2d_plan((N, C, H, W), (K_, C, R, S), stride, padding, dtype, algorithm=algorithm)
    except ValueError:
        return False
    return True


def _conv_refused(algorithm, g, dtype, x, w, b, dy):
    N, C, H, W, K_, R, S, stride, padding = g
    with pytest.raises(ValueError, match="conv2d_plan: algorithm"):
        K.conv2d_plan(x.shape, w.shape, stride, padding, dtype, algorithm=algorithm)
    with pytest.raises(ValueError, match="conv2d_forward: algorithm"):
        K.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)
    with pytest.raises(ValueError, match="conv2d_backward: algorithm"):
        K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm)


def _conv_every_algorithm(g, dtype, seed):
    N, C, H, W, K_, R, S, stride, padding = g
    P, Q = conv_output_size(H, R, stride[0], padding[0]), conv_output_size(W, S, stride[1], padding[1])
    x, w, b, dy = _data(seed, dtype, (N, C, H, W), (K_, C, R, S), (K_,), (N, K_, P, Q))
    copies = [a.copy() for a in (x, w, b, dy)]
    want_y = nv.conv2d_forward(x, w, b, stride, padding)
    want_grads = nv.conv2d_backward(dy, x, w, stride, padding)
    assert want_y.shape == K.conv2d_output_shape(x.shape, w.shape, stride, padding) == (N, K_, P, Q)
    for algorithm in ALGORITHMS:
        applies = conv_applies(algorithm, g)
        if applies is None:
            applies = _plan_applies(algorithm, g, dtype)
        if not applies:
            _conv_refused(algorithm, g, dtype, x, w, b, dy)
            continue
        plans = K.conv2d_plan(x.shape, w.shape, stride, padding, dtype, algorithm=algorithm)
        chosen = {p.algorithm for p in (plans.forward, plans.weight_grad, plans.input_grad)}
        assert chosen <= set(K.CONV_ALGORITHMS)
        if algorithm in K.CONV_ALGORITHMS:
            assert chosen == {algorithm}
        elif algorithm == "direct":
            assert not chosen & {"im2col", "winograd", "winograd4"}
        y = K.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)
        assert y.dtype == dtype
        assert_close(y, want_y, dtype, err_msg=f"y of {algorithm}")
        grads = K.conv2d_backward(dy, x, w, stride, padding, algorithm=algorithm)
        for got, want, name in zip(grads, want_grads, ("dx", "dw", "db")):
            assert got.dtype == dtype
            assert_close(got, want, dtype, err_msg=f"{name} of {algorithm}")
        none, dw, db = K.conv2d_backward(dy, x, w, stride, padding, need_input_grad=False, algorithm=algorithm)
        assert none is None
        np.testing.assert_array_equal(dw, grads[1])
        np.testing.assert_array_equal(db, grads[2])
    _unchanged((x, w, b, dy), copies)


test_conv_every_algorithm_matches_naive, test_conv_every_algorithm_matches_naive_deep = quick_and_deep(
    _conv_every_algorithm, 30, g=conv_geometries(), dtype=DTYPES, seed=SEEDS)


def _conv_linear_in_w(g, dtype, seed, a, c):
    """conv(x, a*w1 + c*w2) = a*conv(x, w1) + c*conv(x, w2) for every algorithm that applies."""
    N, C, H, W, K_, R, S, stride, padding = g
    x, w1, w2 = _data(seed, dtype, (N, C, H, W), (K_, C, R, S), (K_, C, R, S))
    w = (dtype(a) * w1 + dtype(c) * w2).astype(dtype)
    rtol = 10 * {np.float32: 1e-4, np.float64: 1e-10}[dtype]  # three rounded results against one
    for algorithm in ALGORITHMS:
        if conv_applies(algorithm, g) is False or not _plan_applies(algorithm, g, dtype):
            continue

        def conv(weight):
            return K.conv2d_forward(x, weight, None, stride, padding, algorithm=algorithm).astype(np.float64)

        assert_close(conv(w), a * conv(w1) + c * conv(w2), dtype, rtol=rtol, err_msg=algorithm)


test_conv_is_linear_in_w, test_conv_is_linear_in_w_deep = quick_and_deep(
    _conv_linear_in_w, 15, g=conv_geometries(), dtype=DTYPES, seed=SEEDS, a=st.sampled_from([-2.0, 0.5, 3.0]),
    c=st.sampled_from([-1.0, 0.25, 2.0]))


def _im2col_matches_naive(g, dtype, seed):
    N, C, H, W, K_, R, S, stride, padding = g
    x, w, b = _data(seed, dtype, (N, C, H, W), (K_, C, R, S), (K_,))
    cols = K.im2col(x, (R, S), stride, padding)
    np.testing.assert_array_equal(cols, nv.im2col(x, (R, S), stride, padding).astype(dtype))  # a copy: exact
    (c,) = _data(seed + 1, dtype, cols.shape)
    folded = K.col2im(c, x.shape, (R, S), stride, padding)
    assert_close(folded, nv.col2im(c, x.shape, (R, S), stride, padding), dtype)
    # the adjoint identity <im2col(x), c> = <x, col2im(c)>
    lhs, rhs = float(np.sum(cols.astype(np.float64) * c)), float(np.sum(x.astype(np.float64) * folded))
    assert math.isclose(lhs, rhs, rel_tol={np.float32: 1e-4, np.float64: 1e-10}[dtype], abs_tol=1e-4 * cols.size)
    assert_close(K.conv2d_forward_im2col(x, w, b, stride, padding),
                 K.conv2d_forward(x, w, b, stride, padding, algorithm="direct").astype(np.float64), dtype)


test_im2col_matches_naive, test_im2col_matches_naive_deep = quick_and_deep(
    _im2col_matches_naive, 20, g=conv_geometries(), dtype=DTYPES, seed=SEEDS)


# --------------------------------------------------------------------------- pooling

#: avg pooling's count_include_pad (issue 13), when both the kernels and the naive loops have it.
COUNT_INCLUDE_PAD = all("count_include_pad" in inspect.signature(f).parameters
                        for f in (K.avg_pool2d_forward, nv.avg_pool2d_forward))


@st.composite
def pool_geometries(draw):
    """(N, C, H, W, kernel, stride or None, padding, ceil_mode): every geometry the pooling functions accept."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    H, W = draw(st.integers(max(1, kh - 2 * ph), 8)), draw(st.integers(max(1, kw - 2 * pw), 8))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W, (kh, kw), stride, (ph, pw), draw(st.booleans()))


def _pooling_matches_naive(g, dtype, seed, ties, count_include_pad):
    N, C, H, W, k, s, p, cm = g
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 3, (N, C, H, W)) if ties else rng.standard_normal((N, C, H, W))).astype(dtype)
    copy = x.copy()
    sh, sw = k if s is None else s
    P, Q = pool_output_size(H, k[0], sh, p[0], cm), pool_output_size(W, k[1], sw, p[1], cm)
    y, argmax = K.max_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    want_y, want_argmax = nv.max_pool2d_forward(x, k, s, p, cm)
    assert y.shape == argmax.shape == (N, C, P, Q) == K.pool2d_output_shape(x.shape, k, s, p, cm)[0]
    np.testing.assert_array_equal(y, want_y.astype(dtype))  # a maximum is exact
    np.testing.assert_array_equal(argmax, want_argmax)  # ties: the first in row-major order, both
    gathered = np.take_along_axis(x.reshape(N, C, -1), argmax.reshape(N, C, -1), axis=2)
    np.testing.assert_array_equal(gathered.reshape(y.shape), y)
    (dy,) = _data(seed + 1, dtype, y.shape)
    assert_close(K.max_pool2d_backward(dy, argmax, x.shape), nv.max_pool2d_backward(dy, want_argmax, x.shape), dtype)
    extra = {"count_include_pad": count_include_pad} if COUNT_INCLUDE_PAD else {}
    assert_close(K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm, **extra),
                 nv.avg_pool2d_forward(x, k, s, p, cm, **extra), dtype)
    assert_close(K.avg_pool2d_backward(dy, x.shape, k, stride=s, padding=p, ceil_mode=cm, **extra),
                 nv.avg_pool2d_backward(dy, x.shape, k, s, p, cm, **extra), dtype)
    assert_close(K.global_avg_pool2d_forward(x), nv.global_avg_pool2d_forward(x), dtype)
    (dg,) = _data(seed + 2, dtype, (N, C))
    assert_close(K.global_avg_pool2d_backward(dg, x.shape), nv.global_avg_pool2d_backward(dg, x.shape), dtype)
    _unchanged((x,), (copy,))


test_pooling_matches_naive, test_pooling_matches_naive_deep = quick_and_deep(
    _pooling_matches_naive, 30, g=pool_geometries(), dtype=DTYPES, seed=SEEDS, ties=st.booleans(),
    count_include_pad=st.booleans())


# --------------------------------------------------------------------------- activations, linear, losses


def _leaky_relu(x, slope):
    return nv._map(lambda v: v if v > 0 else slope * v, x)


def _softmax(x):
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    for n in range(x.shape[0]):
        m = max(x[n])
        e = [math.exp(v - m) for v in x[n]]
        y[n] = [v / sum(e) for v in e]
    return y


def _softmax_backward(dy, y):
    dy, y = np.asarray(dy, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx = np.empty_like(y)
    for n in range(y.shape[0]):
        dot = sum(dy[n, k] * y[n, k] for k in range(y.shape[1]))
        dx[n] = [y[n, k] * (dy[n, k] - dot) for k in range(y.shape[1])]
    return dx


def _activations_match_naive(shape, dtype, seed, scale, slope):
    x, dy, rows, drows = _data(seed, dtype, shape, shape, shape[:1] + (int(np.prod(shape[1:])),),
                               shape[:1] + (int(np.prod(shape[1:])),))
    x, rows = (x * dtype(scale)).astype(dtype), (rows * dtype(scale)).astype(dtype)
    copies = [a.copy() for a in (x, dy, rows, drows)]
    assert_close(K.relu_forward(x), nv.relu_forward(x), dtype)
    assert_close(K.relu_backward(dy, x), nv.relu_backward(dy, x), dtype)
    assert_close(K.leaky_relu_forward(x, slope), _leaky_relu(x, slope), dtype)
    assert_close(K.leaky_relu_backward(dy, x, slope), nv._map(lambda g, v: g if v > 0 else slope * g, dy, x), dtype)
    for name, forward, backward in (("sigmoid", nv.sigmoid_forward, nv.sigmoid_backward),
                                    ("tanh", nv.tanh_forward, nv.tanh_backward)):
        y = getattr(K, f"{name}_forward")(x)
        assert y.dtype == dtype and y.shape == x.shape
        assert_close(y, forward(x), dtype, err_msg=name)
        assert_close(getattr(K, f"{name}_backward")(dy, y), backward(dy, y), dtype, err_msg=name)
    y = K.softmax_forward(rows)
    assert_close(y, _softmax(rows), dtype)
    assert_close(K.softmax_backward(drows, y), _softmax_backward(drows, y), dtype)
    _unchanged((x, dy, rows, drows), copies)


test_activations_match_naive, test_activations_match_naive_deep = quick_and_deep(
    _activations_match_naive, 25, shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    dtype=DTYPES, seed=SEEDS, scale=st.sampled_from([0.01, 1.0, 30.0]), slope=st.floats(-2, 2))


def _linear_matches_naive(n, i, o, bias, dtype, seed):
    x, w, b, dy = _data(seed, dtype, (n, i), (o, i), (o,), (n, o))
    b = b if bias else None
    copies = [a.copy() for a in (x, w, dy)]
    assert_close(K.linear_forward(x, w, b), nv.linear_forward(x, w, b), dtype)
    want = nv.linear_backward(dy, x, w)
    for got, exp, name in zip(K.linear_backward(dy, x, w), want, ("dx", "dw", "db")):
        assert_close(got, exp, dtype, err_msg=name)
    none, dw, _ = K.linear_backward(dy, x, w, need_input_grad=False)
    assert none is None
    assert_close(dw, want[1], dtype)
    _unchanged((x, w, dy), copies)


test_linear_matches_naive, test_linear_matches_naive_deep = quick_and_deep(
    _linear_matches_naive, 20, n=st.integers(1, 5), i=st.integers(1, 7), o=st.integers(1, 5), bias=st.booleans(),
    dtype=DTYPES, seed=SEEDS)


def _losses_match_naive(n, classes, scale, dtype, seed):
    logits, pred, target = _data(seed, dtype, (n, classes), (n, classes), (n, classes))
    logits = (logits * dtype(scale)).astype(dtype)
    labels = np.random.default_rng(seed).integers(0, classes, n)
    loss, dlogits = K.softmax_cross_entropy(logits, labels)
    want_loss, want_d = nv.softmax_cross_entropy(logits, labels)
    eps = {np.float32: 1e-4, np.float64: 1e-10}[dtype]
    assert math.isclose(loss, want_loss, rel_tol=eps, abs_tol=eps * max(1.0, scale))
    assert loss >= 0 and dlogits.dtype == dtype
    assert_close(dlogits, want_d, dtype, atol=eps * max(1.0, scale) / n)
    loss, dpred = K.mse_loss(pred, target)
    want_loss, want_d = nv.mse_loss(pred, target)
    assert math.isclose(loss, want_loss, rel_tol=eps, abs_tol=eps)
    assert_close(dpred, want_d, dtype)


test_losses_match_naive, test_losses_match_naive_deep = quick_and_deep(
    _losses_match_naive, 20, n=st.integers(1, 5), classes=st.integers(1, 6),
    scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]), dtype=DTYPES, seed=SEEDS)


def _cross_entropy_finite(n, classes, exponent, dtype, seed):
    """Finite loss and gradient for logits of any finite magnitude; the gradient's rows sum to 0."""
    (logits,) = _data(seed, dtype, (n, classes))
    logits = (logits * dtype(10.0**exponent)).astype(dtype)
    labels = np.random.default_rng(seed).integers(0, classes, n)
    loss, d = K.softmax_cross_entropy(logits, labels)
    assert math.isfinite(loss) and loss >= 0 and np.isfinite(d).all()
    np.testing.assert_allclose(d.sum(axis=1), 0.0, atol=1e-5 if dtype == np.float32 else 1e-12)


test_cross_entropy_is_finite, test_cross_entropy_is_finite_deep = quick_and_deep(
    _cross_entropy_finite, 10, n=st.integers(1, 4), classes=st.integers(1, 5), exponent=st.integers(-3, 30),
    dtype=DTYPES, seed=SEEDS)


# --------------------------------------------------------------------------- batch normalisation


def _bn_reference(x, weight, bias, mean, var, eps):
    """y of batch normalisation per channel (axis 1), float64 numpy; mean/var None: the batch's own (biased)."""
    axes = (0,) + tuple(range(2, x.ndim))
    if mean is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y * weight.reshape(shape) + bias.reshape(shape)


def _bn_matches_reference(shape, training, affine, dtype, seed):
    x, dy, weight, bias, rmean = _data(seed, dtype, shape, shape, shape[1:2], shape[1:2], shape[1:2])
    rvar = (np.random.default_rng(seed).random(shape[1]) + 0.5).astype(dtype)
    if affine:
        w64, b64, kw, kb = weight.astype(np.float64), bias.astype(np.float64), weight, bias
    else:
        w64, b64, kw, kb = np.ones(shape[1]), np.zeros(shape[1]), None, None
    fwd, bwd = (K.batch_norm2d_forward, K.batch_norm2d_backward) if len(shape) == 4 else \
        (K.batch_norm1d_forward, K.batch_norm1d_backward)
    eps, momentum = 1e-3, 0.25
    rm, rv = rmean.copy(), rvar.copy()
    copies = [a.copy() for a in (x, dy, weight, bias)]
    y, mean, inv_std = fwd(x, kw, kb, rm, rv, training=training, momentum=momentum, eps=eps)
    x64 = x.astype(np.float64)
    stats = (None, None) if training else (rmean.astype(np.float64), rvar.astype(np.float64))

    def ref(xx, ww, bb):
        return _bn_reference(xx, ww, bb, *stats, eps)

    assert_close(y, ref(x64, w64, b64), dtype, rtol=None if dtype == np.float64 else 1e-3)
    if training:  # running statistics: the batch's mean and unbiased variance, by momentum
        m = x64.size // shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
        assert_close(rm, (1 - momentum) * rmean + momentum * x64.mean(axis=axes), dtype)
        assert_close(rv, (1 - momentum) * rvar + momentum * x64.var(axis=axes) * m / (m - 1), dtype)
    else:
        np.testing.assert_array_equal(rm, rmean)
        np.testing.assert_array_equal(rv, rvar)
    dx, dweight, dbias = bwd(dy, x, kw, mean, inv_std, training=training)
    dy64 = dy.astype(np.float64)
    rtol = 1e-6 if dtype == np.float64 else 2e-3
    for i, (got, name) in enumerate(((dx, "dx"), (dweight, "dweight"), (dbias, "dbias"))):
        args = [x64.copy(), w64.copy(), b64.copy()]  # central differences perturb args[i] in place
        want = nv.numerical_grad(lambda: float(np.sum(ref(*args) * dy64)), args[i])
        assert_close(got, want, dtype, rtol=rtol, err_msg=name)
    _unchanged((x, dy, weight, bias), copies)


@st.composite
def bn_shapes(draw):
    N, C = draw(st.integers(2, 4)), draw(st.integers(1, 3))
    rest = draw(st.sampled_from([(), (draw(st.integers(1, 3)),), (draw(st.integers(1, 3)), draw(st.integers(1, 3)))]))
    return (N, C) + rest


test_batch_norm_matches_reference, test_batch_norm_matches_reference_deep = quick_and_deep(
    _bn_matches_reference, 25, shape=bn_shapes(), training=st.booleans(), affine=st.booleans(), dtype=DTYPES,
    seed=SEEDS)


# --------------------------------------------------------------------------- locally connected


def _local_matches_naive(g, dtype, seed, bias):
    N, C, H, W, K_, R, S, stride, padding = g
    P, Q = conv_output_size(H, R, stride[0], padding[0]), conv_output_size(W, S, stride[1], padding[1])
    x, w, b, dy = _data(seed, dtype, (N, C, H, W), (P, Q, K_, C, R, S), (K_, P, Q), (N, K_, P, Q))
    b = b if bias else None
    assert_close(K.locally_connected2d_forward(x, w, b, stride, padding),
                 nv.locally_connected2d_forward(x, w, b, stride, padding), dtype)
    for got, want, name in zip(K.locally_connected2d_backward(dy, x, w, stride, padding),
                               nv.locally_connected2d_backward(dy, x, w, stride, padding), ("dx", "dw", "db")):
        assert_close(got, want, dtype, err_msg=name)


test_locally_connected_matches_naive, test_locally_connected_matches_naive_deep = quick_and_deep(
    _local_matches_naive, 10, g=conv_geometries().filter(lambda g: g[4] < 16), dtype=DTYPES, seed=SEEDS,
    bias=st.booleans())


# --------------------------------------------------------------------------- hostile arguments, in a child process


def run_worker(examples, timeout=1800):
    """Run ``tests/_hostile_worker.py`` under pytest in a child process (which limits itself to 4 GiB of address
    space: an allocation numpy would attempt for a hostile size fails at once, whatever the machine).

    Returns ``(returncode, output, last call)``: the last call is the one that was running when the child ended.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        log = os.path.join(folder, "last_call.txt")
        env = repo_env(FASTCNN_HOSTILE_EXAMPLES=str(examples), FASTCNN_HOSTILE_LOG=log,
                       FASTCNN_HOSTILE_MEMORY=str(4 << 30))
        cmd = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
               "-W", "ignore::RuntimeWarning", str(REPO / "tests" / "_hostile_worker.py")]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        last = open(log).read().strip() if os.path.exists(log) else "(none)"
    return proc.returncode, proc.stdout + proc.stderr, last


def _check_worker(examples):
    rc, out, last = run_worker(examples)
    if rc not in (0, 1):  # 1: tests failed; anything else: killed by a signal (negative), a timeout, an error
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
        pytest.fail(f"the hostile-argument child process {how} while running:\n  {last}\n\n{out[-6000:]}")
    assert rc == 0, f"hostile arguments (the last call started: {last}):\n{out[-8000:]}"


def test_hostile_arguments():
    """Every checked kernel function, hostile arguments (8 examples each): a clean error or the right result."""
    _check_worker(8)


@pytest.mark.slow
def test_hostile_arguments_deep():
    _check_worker(150)


def test_hostile_worker_covers_every_checked_function():
    """A checked function added to fastcnn.kernels gets hostile arguments too (or a reason here why not)."""
    not_argument_checked = {
        "batch_norm_update_running": "its arguments are trusted (documented): the (C,) arrays of a forward call",
        "clear_tuned_plans": "no arguments", "tuned_plans": "no arguments",
        "save_tuned_plans": "a file writer", "load_tuned_plans": "a file reader",
    }
    # the checked functions live in the modules without a leading underscore; the raw kernels and their size
    # helpers in the others
    public = {name for name in K.__all__ if inspect.isfunction(getattr(K, name))
              and not getattr(K, name).__module__.rsplit(".", 1)[-1].startswith("_")}
    missing = public - set(hostile.FUNCTIONS) - set(not_argument_checked)
    assert not missing, f"no hostile arguments for {sorted(missing)}: add them to tests/_hostile_worker.py"


@pytest.mark.parametrize("bug", [pytest.param(bug, marks=pytest.mark.xfail(strict=True, reason=reason), id=bug)
                                 for bug, (reason, _, _) in hostile.KNOWN_BUGS.items()])
def test_known_hostile_bug(bug):
    """A case the hostile properties skip because it fails today (each reproduction is safe in-process: the
    allocations it asks for are refused at once).  When the bug is fixed this XPASSes, which fails (strict):
    then remove its entry from ``_hostile_worker.KNOWN_BUGS``."""
    hostile.KNOWN_BUGS[bug][2]()
