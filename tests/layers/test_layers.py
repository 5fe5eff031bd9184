"""Layer tier: gradient checks, caching, initialisation, validation and repr.

Gradient checks are helpers.check_layer_grads: central differences in float64 of the scalar
``L = sum(layer.forward(x) * R)`` for a fixed random ``R``; the analytic
gradients are ``layer.backward(R)`` (input) and ``p.grad`` (parameters).
"""

import math
import types

import numpy as np
import pytest

import fastcnn
from helpers import away_from_zero, check_layer_grads, distinct_values
from fastcnn.layers import (
    AvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    Linear,
    MaxPool2d,
    Parameter,
    ReLU,
    Sigmoid,
    Tanh,
)

F64 = np.float64


# --------------------------------------------------------------------------- helpers


def seeded(seed):
    fastcnn.manual_seed(seed)


# --------------------------------------------------------------------------- gradient checks

CONV_CASES = [
    # (in, out, kernel, stride, padding, H, W)
    pytest.param(3, 2, 3, 1, 0, 6, 6, id="k3-s1-p0"),
    pytest.param(2, 3, 3, 1, 1, 5, 5, id="k3-s1-p1"),
    pytest.param(2, 2, 3, 2, 1, 7, 6, id="k3-s2-p1"),
    pytest.param(2, 2, (3, 2), (2, 1), (1, 0), 6, 5, id="k3x2-s2x1-p1x0"),
    pytest.param(1, 2, 2, 3, 2, 5, 5, id="k2-s3-p2"),
]


@pytest.mark.parametrize("algorithm", ["auto", "direct", "nchw", "batch_last", "channel_last", "im2col"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cin,cout,k,s,p,H,W", CONV_CASES)
def test_conv2d_gradcheck(cin, cout, k, s, p, H, W, bias, algorithm):
    rng = np.random.default_rng(11)
    seeded(1)
    layer = Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, algorithm=algorithm, dtype=F64)
    assert len(layer.parameters()) == (2 if bias else 1)
    check_layer_grads(layer, rng.standard_normal((2, cin, H, W)), rng)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear_gradcheck(bias):
    rng = np.random.default_rng(12)
    seeded(2)
    layer = Linear(5, 4, bias=bias, dtype=F64)
    check_layer_grads(layer, rng.standard_normal((3, 5)), rng)


POOL_CASES = [
    # (kernel, stride, padding, ceil_mode, H, W)
    pytest.param(2, None, 0, False, 4, 6, id="k2"),
    pytest.param(3, 2, 1, False, 5, 5, id="k3-s2-p1"),
    pytest.param(3, 2, 1, True, 6, 6, id="k3-s2-p1-ceil"),
    pytest.param(2, 2, 0, True, 5, 5, id="k2-s2-ceil-odd"),
    pytest.param((2, 3), (1, 2), (1, 1), False, 4, 5, id="k2x3-s1x2-p1"),
]


@pytest.mark.parametrize("k,s,p,ceil,H,W", POOL_CASES)
def test_maxpool_gradcheck(k, s, p, ceil, H, W):
    rng = np.random.default_rng(13)
    layer = MaxPool2d(k, stride=s, padding=p, ceil_mode=ceil)
    check_layer_grads(layer, distinct_values(rng, (2, 2, H, W)), rng)


@pytest.mark.parametrize("k,s,p,ceil,H,W", POOL_CASES)
def test_avgpool_gradcheck(k, s, p, ceil, H, W):
    rng = np.random.default_rng(14)
    layer = AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil)
    check_layer_grads(layer, rng.standard_normal((2, 2, H, W)), rng)


def test_avgpool_ceil_mode_divisor_values():
    # 1x1x3x3 of ones, k=2 s=2 ceil: windows hang past the input (no padding) and are
    # clipped to the input, so every output is the mean of real ones = 1.
    layer = AvgPool2d(2, stride=2, ceil_mode=True)
    y = layer.forward(np.ones((1, 1, 3, 3)))
    assert y.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(y, np.ones((1, 1, 2, 2)), rtol=1e-12)
    # with padding 1, k=2 s=2: zero padding counts in the divisor -> corner windows see 1 of 4
    y = AvgPool2d(2, stride=2, padding=1).forward(np.ones((1, 1, 2, 2)))
    np.testing.assert_allclose(y, np.full((1, 1, 2, 2), 0.25), rtol=1e-12)


def test_global_avgpool_gradcheck():
    rng = np.random.default_rng(15)
    layer = GlobalAvgPool2d()
    check_layer_grads(layer, rng.standard_normal((2, 3, 4, 5)), rng)
    assert layer.forward(np.ones((2, 3, 4, 5))).shape == (2, 3)


@pytest.mark.parametrize("cls", [ReLU, Sigmoid, Tanh], ids=lambda c: c.__name__)
@pytest.mark.parametrize("ndim", [2, 4], ids=["2d", "4d"])
def test_activation_gradcheck(cls, ndim):
    rng = np.random.default_rng(16)
    shape = (3, 5) if ndim == 2 else (2, 2, 3, 3)
    check_layer_grads(cls(), away_from_zero(rng, shape), rng)


def test_relu_values():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    layer = ReLU()
    np.testing.assert_array_equal(layer.forward(x), [[0, 0, 0, 0.5, 3.0]])
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), [[0, 0, 0, 1, 1]])


def test_flatten_gradcheck_and_order():
    rng = np.random.default_rng(17)
    layer = Flatten()
    check_layer_grads(layer, rng.standard_normal((2, 3, 2, 4)), rng)
    x = np.arange(2 * 3 * 2 * 4, dtype=F64).reshape(2, 3, 2, 4)
    y = layer.forward(x)
    np.testing.assert_array_equal(y, x.reshape(2, 24))  # C, H, W order
    assert layer.backward(y).shape == x.shape
    assert layer.output_shape((3, 2, 4)) == (24,)


# --------------------------------------------------------------------------- gradient accumulation


def _param_layers():
    return [
        pytest.param(lambda: Conv2d(2, 3, 3, padding=1, dtype=F64), (2, 2, 5, 5), id="conv-direct"),
        pytest.param(lambda: Conv2d(2, 3, 3, stride=2, algorithm="im2col", dtype=F64), (2, 2, 5, 5), id="conv-im2col"),
        pytest.param(lambda: Linear(4, 3, dtype=F64), (5, 4), id="linear"),
    ]


@pytest.mark.parametrize("make,shape", _param_layers())
def test_parameter_grad_accumulates(make, shape):
    rng = np.random.default_rng(18)
    seeded(3)
    layer = make()
    x = rng.standard_normal(shape)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    layer.backward(dy)
    once = [p.grad.copy() for p in layer.parameters()]
    assert all(np.abs(g).max() > 0 for g in once)
    dx2 = layer.backward(dy)
    for p, g in zip(layer.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-12, atol=1e-14)
    assert dx2.shape == shape


# --------------------------------------------------------------------------- direct vs im2col


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)], ids=["float32", "float64"])
@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 0), ((2, 3), (2, 1), (0, 1))], ids=["k3-s1-p1", "k3-s2-p0", "k2x3-s2x1-p0x1"])
def test_conv_direct_matches_im2col(dtype, rtol, k, s, p):
    rng = np.random.default_rng(19)
    seeded(4)
    direct = Conv2d(3, 4, k, stride=s, padding=p, dtype=dtype)
    seeded(4)
    gemm = Conv2d(3, 4, k, stride=s, padding=p, algorithm="im2col", dtype=dtype)
    np.testing.assert_array_equal(direct.weight.data, gemm.weight.data)
    np.testing.assert_array_equal(direct.bias.data, gemm.bias.data)
    x = rng.standard_normal((3, 3, 7, 8)).astype(dtype)
    y1, y2 = direct.forward(x), gemm.forward(x)
    scale = np.abs(y1).max()
    np.testing.assert_allclose(y1, y2, rtol=rtol, atol=rtol * scale)
    dy = rng.standard_normal(y1.shape).astype(dtype)
    dx1, dx2 = direct.backward(dy), gemm.backward(dy)
    np.testing.assert_allclose(dx1, dx2, rtol=rtol, atol=rtol * np.abs(dx1).max())
    for a, b in zip(direct.parameters(), gemm.parameters()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=rtol, atol=rtol * np.abs(a.grad).max())


# --------------------------------------------------------------------------- dropout


def test_dropout_mask_scaling_and_backward():
    p = 0.3
    layer = Dropout(p, seed=0)
    x = np.random.default_rng(20).uniform(1.0, 2.0, size=(64, 50)).astype(np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    ratio = y / x
    kept = ratio != 0
    assert 0 < kept.sum() < x.size
    np.testing.assert_allclose(ratio[kept], 1.0 / (1.0 - p), rtol=1e-6)
    dy = np.random.default_rng(21).standard_normal(x.shape).astype(np.float32)
    dx = layer.backward(dy)
    # backward uses the same mask as forward
    np.testing.assert_array_equal(dx == 0, ~kept)
    np.testing.assert_allclose(dx[kept], dy[kept] / (1.0 - p), rtol=1e-6)


def test_dropout_fraction_of_zeros_close_to_p():
    p = 0.4
    x = np.ones((400, 500))  # 200,000 elements: sd of the fraction is ~0.0011
    y = Dropout(p, seed=123).forward(x)
    frac = float((y == 0).mean())
    assert abs(frac - p) < 0.006, frac
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-12)


def test_dropout_eval_is_identity():
    layer = Dropout(0.5, seed=1).eval()
    x = np.random.default_rng(22).standard_normal((8, 9))
    np.testing.assert_array_equal(layer.forward(x), x)
    dy = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(dy), dy)


def test_dropout_p0_is_identity_and_p1_zeroes():
    x = np.random.default_rng(23).standard_normal((10, 10))
    d0 = Dropout(0.0, seed=0)
    np.testing.assert_array_equal(d0.forward(x), x)
    np.testing.assert_array_equal(d0.backward(x), x)
    d1 = Dropout(1.0, seed=0)
    y = d1.forward(x)
    assert np.all(y == 0) and np.isfinite(y).all()
    dx = d1.backward(np.ones_like(x))
    assert np.all(dx == 0) and np.isfinite(dx).all()


def test_dropout_seed_reproducible_and_manual_seed():
    x = np.ones((20, 20))
    np.testing.assert_array_equal(Dropout(0.5, seed=7).forward(x), Dropout(0.5, seed=7).forward(x))
    fastcnn.manual_seed(5)
    a = Dropout(0.5).forward(x)
    fastcnn.manual_seed(5)
    b = Dropout(0.5).forward(x)
    np.testing.assert_array_equal(a, b)
    # successive calls draw fresh masks
    layer = Dropout(0.5, seed=7)
    assert not np.array_equal(layer.forward(x), layer.forward(x))


# --------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize(
    "make,fan_in",
    [
        pytest.param(lambda: Conv2d(16, 64, 3), 16 * 9, id="conv-16-64-k3"),
        pytest.param(lambda: Conv2d(4, 3000, (2, 3)), 4 * 6, id="conv-4-3000-k2x3"),
        pytest.param(lambda: Linear(200, 300), 200, id="linear-200-300"),
        pytest.param(lambda: Linear(50, 4000), 50, id="linear-50-4000"),
    ],
)
def test_default_init_statistics(make, fan_in):
    seeded(6)
    layer = make()
    bound = 1.0 / math.sqrt(fan_in)
    for name, p in (("weight", layer.weight), ("bias", layer.bias)):
        v = p.data.astype(np.float64).ravel()
        assert p.dtype == np.float32
        assert np.abs(v).max() <= bound * (1 + 1e-6), f"{name} outside +-1/sqrt(fan_in)"
        assert np.all(p.grad == 0) and p.grad.shape == p.shape
        if v.size >= 3000:
            # roughly uniform on [-bound, bound]: mean 0, variance bound^2/3, flat quartiles
            assert np.abs(v).max() > 0.99 * bound
            assert abs(v.mean()) < 0.05 * bound
            assert abs(v.var() / (bound**2 / 3) - 1) < 0.08
            counts = np.histogram(v, bins=4, range=(-bound, bound))[0] / v.size
            np.testing.assert_allclose(counts, 0.25, atol=0.03)


def test_manual_seed_makes_construction_reproducible():
    seeded(42)
    a = fastcnn.models.lenet5()
    seeded(42)
    b = fastcnn.models.lenet5()
    seeded(43)
    c = fastcnn.models.lenet5()
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
    assert not np.array_equal(a.parameters()[0].data, c.parameters()[0].data)


def test_float64_layers_have_float64_parameters():
    for layer in (Conv2d(1, 2, 3, dtype=F64), Linear(3, 2, dtype="float64")):
        assert all(p.dtype == F64 and p.grad.dtype == F64 for p in layer.parameters())


# --------------------------------------------------------------------------- dtype conversion


def test_float32_layer_converts_float64_input():
    rng = np.random.default_rng(24)
    conv = Conv2d(1, 2, 3)
    y = conv.forward(rng.standard_normal((2, 1, 5, 5)))
    assert y.dtype == np.float32
    lin = Linear(3, 2)
    assert lin.forward(rng.standard_normal((4, 3))).dtype == np.float32
    assert lin.forward(np.arange(6).reshape(2, 3)).dtype == np.float32  # integer input too
    assert Conv2d(1, 2, 3, dtype=F64).forward(rng.standard_normal((1, 1, 4, 4)).astype(np.float32)).dtype == F64


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "make,exc,match",
    [
        pytest.param(lambda: Conv2d(0, 2, 3), ValueError, "in_channels", id="conv-in_channels-0"),
        pytest.param(lambda: Conv2d(1, 0, 3), ValueError, "out_channels", id="conv-out_channels-0"),
        pytest.param(lambda: Conv2d(1.5, 2, 3), ValueError, "in_channels", id="conv-in_channels-float"),
        pytest.param(lambda: Conv2d(True, 2, 3), ValueError, "in_channels", id="conv-in_channels-bool"),
        pytest.param(lambda: Conv2d(1, 2, -1), ValueError, "kernel_size=-1", id="conv-kernel_size-neg"),
        pytest.param(lambda: Conv2d(1, 2, 0), ValueError, "kernel_size=0", id="conv-kernel_size-0"),
        pytest.param(lambda: Conv2d(1, 2, "3"), TypeError, "kernel_size", id="conv-kernel_size-str"),
        pytest.param(lambda: Conv2d(1, 2, (3, 3, 3)), TypeError, "kernel_size", id="conv-kernel_size-triple"),
        pytest.param(lambda: Conv2d(1, 2, 3, stride=0), ValueError, "stride=0", id="conv-stride-0"),
        pytest.param(lambda: Conv2d(1, 2, 3, stride=(1, -2)), ValueError, r"stride=\(1, -2\)", id="conv-stride-neg"),
        pytest.param(lambda: Conv2d(1, 2, 3, padding=-1), ValueError, "padding=-1", id="conv-padding-neg"),
        pytest.param(lambda: Conv2d(1, 2, 3, padding=1.0), TypeError, "padding", id="conv-padding-float"),
        pytest.param(lambda: Conv2d(1, 2, 3, algorithm="fft"), ValueError, "algorithm", id="conv-algorithm-fft"),
        pytest.param(lambda: Conv2d(1, 2, 3, dtype=np.float16), TypeError, "dtype", id="conv-dtype-f16"),
        pytest.param(lambda: Conv2d(1, 2, 3, dtype=np.int32), TypeError, "dtype", id="conv-dtype-int"),
        pytest.param(lambda: Linear(0, 2), ValueError, "in_features", id="linear-in_features-0"),
        pytest.param(lambda: Linear(2, -3), ValueError, "out_features", id="linear-out_features-neg"),
        pytest.param(lambda: Linear(2, 3, dtype="float16"), TypeError, "dtype", id="linear-dtype-f16"),
        pytest.param(lambda: Dropout(p=1.5), ValueError, "p must", id="dropout-p-1.5"),
        pytest.param(lambda: Dropout(p=-0.1), ValueError, "p must", id="dropout-p-neg"),
        pytest.param(lambda: Dropout(p=float("nan")), ValueError, "p must", id="dropout-p-nan"),
        pytest.param(lambda: Dropout(p="0.5"), ValueError, "p must", id="dropout-p-str"),
        pytest.param(lambda: MaxPool2d(2, padding=2), ValueError, "padding", id="maxpool-padding-gt-half"),
        pytest.param(lambda: MaxPool2d(3, padding=(1, 2)), ValueError, "padding", id="maxpool-padding-pair-gt-half"),
        pytest.param(lambda: AvgPool2d(2, padding=2), ValueError, "padding", id="avgpool-padding-gt-half"),
        pytest.param(lambda: MaxPool2d(0), ValueError, "kernel_size", id="maxpool-kernel_size-0"),
        pytest.param(lambda: MaxPool2d(2, stride=0), ValueError, "stride", id="maxpool-stride-0"),
        pytest.param(lambda: MaxPool2d(2, padding=-1), ValueError, "padding", id="maxpool-padding-neg"),
        pytest.param(lambda: AvgPool2d("2"), TypeError, "kernel_size", id="avgpool-kernel_size-str"),
    ],
)
def test_bad_constructor_args(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_forward_rejects_wrong_input():
    conv = Conv2d(3, 2, 3)
    with pytest.raises(ValueError, match="channels"):
        conv.forward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        conv.forward(np.zeros((2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv.forward(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="features"):
        Linear(4, 2).forward(np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="numeric"):
        Linear(4, 2).forward(np.array([["a"] * 4]))
    with pytest.raises(ValueError, match="4-D"):
        MaxPool2d(2).forward(np.zeros((4, 4)))


# --------------------------------------------------------------------------- caching


def _all_layers():
    """(factory, input shape) for every layer class, float64, small."""
    return [
        pytest.param(lambda: Conv2d(2, 3, 3, padding=1, dtype=F64), (2, 2, 4, 4), id="Conv2d-direct"),
        pytest.param(lambda: Conv2d(2, 3, 3, algorithm="im2col", dtype=F64), (2, 2, 4, 4), id="Conv2d-im2col"),
        pytest.param(lambda: MaxPool2d(2), (2, 2, 4, 4), id="MaxPool2d"),
        pytest.param(lambda: AvgPool2d(2), (2, 2, 4, 4), id="AvgPool2d"),
        pytest.param(lambda: GlobalAvgPool2d(), (2, 2, 4, 4), id="GlobalAvgPool2d"),
        pytest.param(lambda: ReLU(), (2, 5), id="ReLU"),
        pytest.param(lambda: Sigmoid(), (2, 5), id="Sigmoid"),
        pytest.param(lambda: Tanh(), (2, 5), id="Tanh"),
        pytest.param(lambda: Flatten(), (2, 2, 3, 3), id="Flatten"),
        pytest.param(lambda: Linear(5, 3, dtype=F64), (2, 5), id="Linear"),
        pytest.param(lambda: Dropout(0.5, seed=0), (2, 5), id="Dropout"),
    ]


@pytest.mark.parametrize("make,shape", _all_layers())
def test_backward_before_forward_raises(make, shape):
    layer = make()
    assert isinstance(layer, Layer)
    x = np.random.default_rng(25).standard_normal(shape)
    dy_shape = make().forward(x).shape
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones(dy_shape))


@pytest.mark.parametrize("make,shape", _all_layers())
def test_eval_mode_keeps_nothing(make, shape):
    layer = make()
    x = np.random.default_rng(26).standard_normal(shape)
    y = layer.forward(x)  # training mode: caches
    layer.backward(np.ones(y.shape))  # works
    assert layer.eval() is layer and layer.training is False
    y_eval = layer.forward(x)
    if isinstance(layer, Dropout):
        np.testing.assert_array_equal(y_eval, x)
    # no array (nor anything else) from the eval forward is kept
    for name, value in vars(layer).items():
        assert not isinstance(value, np.ndarray), f"{name} kept in eval mode"
    # and the cache of the earlier training forward was dropped too
    layer.train()
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones(y.shape))


# --------------------------------------------------------------------------- repr and shapes


@pytest.mark.parametrize(
    "layer,expected",
    [
        pytest.param(Conv2d(1, 6, 5), "Conv2d(1, 6, kernel_size=5)", id="conv-default"),
        pytest.param(Conv2d(1, 6, 5, padding=2), "Conv2d(1, 6, kernel_size=5, padding=(2, 2))", id="conv-padding"),
        pytest.param(Conv2d(2, 4, (3, 2), stride=2, bias=False, algorithm="im2col", dtype=F64),
                     "Conv2d(2, 4, kernel_size=(3, 2), stride=(2, 2), bias=False, algorithm='im2col', dtype='float64')",
                     id="conv-all"),
        pytest.param(Linear(400, 120), "Linear(400, 120)", id="linear-default"),
        pytest.param(Linear(4, 2, bias=False, dtype=F64), "Linear(4, 2, bias=False, dtype='float64')", id="linear-all"),
        pytest.param(MaxPool2d(2), "MaxPool2d(kernel_size=2)", id="maxpool-default"),
        pytest.param(MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                     "MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)", id="maxpool-all"),
        pytest.param(AvgPool2d(2, ceil_mode=True), "AvgPool2d(kernel_size=2, ceil_mode=True)", id="avgpool-ceil"),
        pytest.param(Dropout(0.25), "Dropout(p=0.25)", id="dropout"),
        pytest.param(ReLU(), "ReLU()", id="relu"),
    ],
)
def test_repr_shows_non_default_args(layer, expected):
    assert repr(layer) == expected


@pytest.mark.parametrize(
    "layer,in_shape",
    [
        pytest.param(Conv2d(2, 3, 3, stride=2, padding=1), (2, 7, 6), id="conv"),
        pytest.param(MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 6, 7), id="maxpool-ceil"),
        pytest.param(AvgPool2d(2), (2, 5, 5), id="avgpool"),
        pytest.param(GlobalAvgPool2d(), (3, 4, 4), id="gap"),
        pytest.param(Flatten(), (2, 3, 4), id="flatten"),
        pytest.param(Linear(6, 2), (6,), id="linear"),
        pytest.param(Tanh(), (4,), id="tanh"),
    ],
)
def test_output_shape_matches_forward(layer, in_shape):
    x = np.zeros((2, *in_shape), np.float32)
    assert tuple(layer.output_shape(in_shape)) == layer.forward(x).shape[1:]


def test_parameter_attributes():
    p = Parameter(np.ones((2, 3), np.float32))
    assert p.shape == (2, 3) and p.size == 6 and p.dtype == np.float32
    assert p.grad.shape == (2, 3) and np.all(p.grad == 0)
    assert "shape=(2, 3)" in repr(p)


def test_dropout_refuses_integer_input():
    with pytest.raises(TypeError, match="float"):
        Dropout(0.3, seed=0).forward(np.full((4, 5), 10))


# --------------------------------------------------------------------------- the layer tree and its protocol


@pytest.mark.parametrize("make,shape", _all_layers())
def test_need_input_grad_false_skips_dx_and_keeps_the_parameter_gradients(make, shape):
    """Told ``need_input_grad=False`` a layer returns None; its parameters get the same gradients."""
    fastcnn.manual_seed(30)
    layer = make()
    x = np.random.default_rng(30).standard_normal(shape)
    y = layer.forward(x)
    dy = np.random.default_rng(31).standard_normal(y.shape)
    dx = layer.backward(dy)
    assert dx.shape == x.shape
    full = [p.grad.copy() for p in layer.parameters()]
    for p in layer.parameters():
        p.grad[...] = 0
    assert layer.backward(dy, need_input_grad=False) is None
    for p, g in zip(layer.parameters(), full):
        np.testing.assert_array_equal(p.grad, g)


def test_locally_connected_need_input_grad_false():
    from fastcnn.layers import LocallyConnected2d

    fastcnn.manual_seed(32)
    layer = LocallyConnected2d(2, 3, 3, input_size=5, dtype=F64)
    x = np.random.default_rng(32).standard_normal((2, 2, 5, 5))
    dy = np.ones(layer.forward(x).shape)
    assert layer.backward(dy).shape == x.shape
    full = [p.grad.copy() for p in layer.parameters()]
    for p in layer.parameters():
        p.grad[...] = 0
    assert layer.backward(dy, need_input_grad=False) is None
    for p, g in zip(layer.parameters(), full):
        np.testing.assert_array_equal(p.grad, g)


def test_a_model_first_linear_layer_is_told_to_skip_its_input_gradient(monkeypatch):
    """The kernel behind a first Linear layer is asked for no dx (Linear used to compute it anyway)."""
    from fastcnn.layers import dense

    asked = []
    real = dense.kernels.linear_backward

    def spy(dy, x, w, need_input_grad=True):
        asked.append(need_input_grad)
        return real(dy, x, w, need_input_grad=need_input_grad)

    monkeypatch.setattr(dense.kernels, "linear_backward", spy)
    model = fastcnn.Sequential(Flatten(), Linear(4, 3, dtype=F64), ReLU(), Linear(3, 2, dtype=F64))
    model.forward(np.ones((2, 1, 2, 2)))
    assert model.backward(np.ones((2, 2))) is None
    assert asked == [True, False]


def test_tree_methods_of_a_plain_layer_and_a_residual():
    from fastcnn.layers import BatchNorm2d, Residual

    fastcnn.manual_seed(33)
    conv, bn, relu, proj = Conv2d(2, 2, 3, padding=1), BatchNorm2d(2), ReLU(), Conv2d(2, 2, 1, bias=False)
    assert conv.children() == [] and conv.named_children() == [] and list(conv.walk()) == [conv]
    assert conv.parameters() == [conv.weight, conv.bias] and conv.buffers() == {}
    res = Residual([conv, bn, relu], shortcut=[proj])
    assert res.children() == [conv, bn, relu, proj]
    assert [name for name, _ in res.named_children()] == ["block0", "block1", "block2", "shortcut0"]
    assert list(res.walk()) == [res, conv, bn, relu, proj]
    assert res.parameters() == [conv.weight, conv.bias, bn.weight, bn.bias, proj.weight]
    assert list(res.buffers()) == ["block1_running_mean", "block1_running_var"]
    assert res.buffers()["block1_running_mean"] is bn.running_mean
    outer = Residual([res, ReLU()])
    assert list(outer.buffers()) == ["block0_block1_running_mean", "block0_block1_running_var"]
    assert outer.eval() is outer and not any(layer.training for layer in outer.walk())
    assert all(layer.training for layer in outer.train().walk())


def test_parameters_of_a_shared_layer_are_listed_once():
    from fastcnn.layers import Residual

    fastcnn.manual_seed(34)
    conv = Conv2d(2, 2, 3, padding=1)
    res = Residual([conv, ReLU(), conv])
    assert res.parameters() == [conv.weight, conv.bias]
    assert fastcnn.Sequential(conv, res).parameters() == [conv.weight, conv.bias]


def test_layer_classes_register_themselves():
    from fastcnn.layers import base

    assert base.LAYER_CLASSES["Conv2d"] is Conv2d and base.LAYER_CLASSES["Residual"] is fastcnn.layers.Residual
    assert not any(name.startswith("_") for name in base.LAYER_CLASSES)
    assert "Layer" not in base.LAYER_CLASSES

    class Local(ReLU):  # defined in a function: a checkpoint could not find it again
        pass

    assert "Local" not in base.LAYER_CLASSES
    def module_level(name, bases, **kwargs):  # as if defined at the top of a module
        return types.new_class(name, bases, kwargs, lambda ns: ns.update(__module__="fastcnn_test_registry",
                                                                         __qualname__=name))

    try:
        twice = module_level("Twice", (Layer,))
        assert base.LAYER_CLASSES["Twice"] is twice
        module_level("Unlisted", (Layer,), register=False)
        assert "Unlisted" not in base.LAYER_CLASSES
        module_level("ReLU", (ReLU,))
        assert base.LAYER_CLASSES["ReLU"] is ReLU  # a second class of a taken name does not replace the first
    finally:
        base.LAYER_CLASSES.pop("Twice", None)


def test_initialize_reaches_every_convolution_of_resnet_small():
    from fastcnn.layers import init

    fastcnn.manual_seed(35)
    model = fastcnn.models.resnet_small()
    convs = [layer for layer in model.layers for layer in layer.walk() if isinstance(layer, Conv2d)]
    assert len(convs) == 15  # the stem, 12 in the blocks' main paths and 2 projection shortcuts
    before = [conv.weight.data.copy() for conv in convs]
    assert init.initialize(model, weight="xavier_uniform") == len(convs) + 1  # and the Linear head
    for i, (conv, old) in enumerate(zip(convs, before)):
        assert not np.array_equal(conv.weight.data, old), f"convolution {i} was not re-initialised"


# (algorithm, kernel size, stride, padding); the layer's backward shares one copy of dy between its two gradients
# where _conv_exec.share_dy says so (channel_last: border 4, then 0 at stride 2; winograd*: padding 1, border 1),
# as the checked conv2d_backward does; its weight gradient alone (need_input_grad=False) makes its own copy
LAYOUT_CASES = [("channel_last", 5, 1, 0), ("channel_last", 3, 2, 1), ("batch_last", 5, 1, 0), ("auto", 5, 1, 0),
                ("winograd", 3, 1, 0), ("winograd4", 3, 1, 0), ("winograd", 3, 1, 1), ("winograd4", 3, 1, 1)]


@pytest.mark.parametrize("keep_limit", [None, 0])  # 0: no layout copy kept, made again in the workspace
@pytest.mark.parametrize("algorithm, size, stride, padding", LAYOUT_CASES)
def test_conv_layer_reuses_its_forward_layout_only_for_the_same_input(algorithm, size, stride, padding, keep_limit,
                                                                      monkeypatch):
    """Conv2d keeps the forward's layout copy of x for the weight gradient (and one copy of dy for both
    gradients): the gradients equal the checked functions' bit for bit, the weight gradient also the one computed
    alone, and a backward after a forward on another x uses that x's copy."""
    from fastcnn import kernels

    if keep_limit is not None:
        monkeypatch.setattr(kernels.conv, "LAYER_LAYOUT_BYTES", keep_limit)

    rng = np.random.default_rng(41)
    conv = Conv2d(6, 16, size, stride=stride, padding=padding, algorithm=algorithm)
    args = {"stride": stride, "padding": padding, "algorithm": algorithm}
    x1, x2 = (rng.standard_normal((8, 6, 14, 14)).astype(np.float32) for _ in range(2))
    side = (14 + 2 * padding - size) // stride + 1
    dy = rng.standard_normal((8, 16, side, side)).astype(np.float32)
    for x in (x1, x2, x1):
        y = conv.forward(x)
        np.testing.assert_array_equal(y, kernels.conv2d_forward(x, conv.weight.data, conv.bias.data, **args))
        conv.weight.grad[...] = 0
        conv.bias.grad[...] = 0
        dx = conv.backward(dy)
        want = kernels.conv2d_backward(dy, x, conv.weight.data, **args)
        for got, expected in zip((dx, conv.weight.grad, conv.bias.grad), want):
            np.testing.assert_array_equal(got, expected)
        alone = kernels.conv2d_backward(dy, x, conv.weight.data, need_input_grad=False, **args)[1]
        np.testing.assert_array_equal(conv.weight.grad, alone)  # the shared copy of dy gives the unshared bits
    if algorithm != "auto":
        (prepared,) = conv._plans.values()
        assert (prepared.layout is None) == (keep_limit == 0)
    # eval-mode forwards in between do not leave a stale copy for a later training backward
    conv.forward(x1)
    conv.eval().forward(x2)
    conv.train().forward(x2)
    conv.weight.grad[...] = 0
    conv.backward(dy)
    np.testing.assert_array_equal(conv.weight.grad, kernels.conv2d_backward(dy, x2, conv.weight.data, **args)[1])
