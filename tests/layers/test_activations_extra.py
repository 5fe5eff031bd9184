"""LeakyReLU and Softmax: kernels, layers, gradient checks, PyTorch agreement and checkpoints."""

import numpy as np
import pytest

import fastcnn
from fastcnn import kernels as K
from fastcnn import serialize
from fastcnn.layers import Flatten, LeakyReLU, Linear, Softmax
from helpers import away_from_zero, check_layer_grads

F64 = np.float64


# --------------------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("slope", [0.01, 0.2, -0.5])
def test_leaky_relu_gradcheck(slope, one_thread):
    rng = np.random.default_rng(1)
    check_layer_grads(LeakyReLU(slope), away_from_zero(rng, (3, 2, 4)), rng)  # away from the kink


@pytest.mark.parametrize("shape,dim", [((4, 5), 1), ((4, 5), -1), ((3, 4), 0), ((2, 3, 2, 2), 1), ((2, 3, 4), -1)])
def test_softmax_gradcheck(shape, dim, one_thread):
    rng = np.random.default_rng(2)
    check_layer_grads(Softmax(dim), rng.standard_normal(shape) * 2, rng)


# --------------------------------------------------------------------------- semantics


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaky_relu_values_and_dtype(dtype):
    x = np.array([-2.0, -0.0, 0.0, 3.0, np.nan, -np.inf], dtype=dtype)
    y = K.leaky_relu_forward(x, 0.25)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.array([-0.5, 0.0, 0.0, 3.0, np.nan, -np.inf], dtype=dtype))
    dx = K.leaky_relu_backward(np.ones_like(x), x, 0.25)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx[:4], np.array([0.25, 0.25, 0.25, 1.0], dtype=dtype))
    layer = LeakyReLU()
    assert layer.forward(x).dtype == dtype
    assert layer.backward(np.ones_like(x)).dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_and_normalised(dtype):
    x = np.array([[1e4, 1e4 - 1.0, -1e4], [0.0, 0.0, 0.0], [-1e30, 5.0, 5.0]], dtype=dtype)
    y = K.softmax_forward(x)
    assert y.dtype == dtype and np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(y[1], 1 / 3, rtol=1e-6)
    e = np.exp(-1.0)
    np.testing.assert_allclose(y[0], [1 / (1 + e), e / (1 + e), 0], rtol=1e-6, atol=1e-30)
    nan_row = K.softmax_forward(np.array([[0.0, np.nan], [1.0, 2.0]], dtype=dtype))
    assert np.isnan(nan_row[0]).all() and np.isfinite(nan_row[1]).all()
    layer = Softmax()
    assert layer.forward(x).dtype == dtype
    assert layer.backward(np.ones_like(x)).dtype == dtype
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), 0, atol=1e-6)  # softmax sums to a constant


def test_softmax_layer_on_images_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5))
    y = Softmax(1).forward(x)
    ref = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    assert y.shape == x.shape


def test_eval_mode_keeps_nothing():
    x = np.ones((2, 3), np.float32)
    for layer in (LeakyReLU(), Softmax()):
        layer.eval()
        layer.forward(x)
        with pytest.raises(RuntimeError, match="without a training-mode forward"):
            layer.backward(x)


# --------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.01, 0.3])
def test_leaky_relu_matches_torch(slope, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2, 3, 4, 5)) * 3).astype(dtype)
    x.reshape(-1)[:4] = np.array([0.0, -0.0, 1e3, -1e3], dtype=dtype)
    tx = torch.tensor(x.astype(F64), requires_grad=True)
    ty = torch.nn.functional.leaky_relu(tx, slope)
    dy = rng.standard_normal(x.shape).astype(dtype)
    ty.backward(torch.tensor(dy.astype(F64)))
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(K.leaky_relu_forward(x, slope), ty.detach().numpy(), rtol=rtol)
    np.testing.assert_allclose(K.leaky_relu_backward(dy, x, slope), tx.grad.numpy(), rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (5, 10), (3, 1000)])
def test_softmax_matches_torch(shape, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    tx = torch.tensor(x.astype(F64), requires_grad=True)
    ty = torch.nn.functional.softmax(tx, dim=1)
    dy = rng.standard_normal(shape).astype(dtype)
    ty.backward(torch.tensor(dy.astype(F64)))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    y = K.softmax_forward(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=rtol * 1e-3)
    dx = K.softmax_backward(dy, y)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=rtol * 10, atol=rtol * float(np.abs(dy).max()) * 1e-1)


# --------------------------------------------------------------------------- API, validation, checkpoints


def test_layer_api():
    assert repr(LeakyReLU()) == "LeakyReLU()"
    assert repr(LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert LeakyReLU(0.2).get_config() == {"negative_slope": 0.2}
    assert repr(Softmax()) == "Softmax()" and repr(Softmax(-1)) == "Softmax(dim=-1)"
    assert Softmax(-1).get_config() == {"dim": -1}
    assert LeakyReLU().output_shape((3, 4)) == (3, 4)
    assert Softmax().output_shape((10,)) == (10,)
    assert LeakyReLU().parameters() == [] and Softmax().parameters() == []
    for cls in (LeakyReLU, Softmax):
        assert serialize.LAYERS[cls.__name__] is cls and cls.__name__ in fastcnn.layers.__all__
    for name in ("leaky_relu_forward", "leaky_relu_backward", "softmax_forward", "softmax_backward",
                 "leaky_relu_forward_kernel", "leaky_relu_backward_kernel", "softmax_forward_kernel",
                 "softmax_backward_kernel"):
        assert name in K.__all__ and callable(getattr(K, name))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: LeakyReLU("big"), ValueError, "LeakyReLU: negative_slope must be a finite real number, got 'big'"),
    (lambda: LeakyReLU(float("nan")), ValueError, "negative_slope must be a finite real"),
    (lambda: Softmax(1.5), ValueError, "Softmax: dim must be an int, got 1.5"),
    (lambda: Softmax(2).output_shape((10,)), ValueError,
     r"Softmax\(dim=2\): dim 2 is out of range for an input of 2 dimensions"),
    (lambda: Softmax().forward(np.zeros(3)), ValueError, "out of range for an input of 1 dimensions"),
    (lambda: Softmax().forward([[1.0]]), TypeError, "input must be a numpy array"),
    (lambda: K.softmax_forward(np.zeros((2, 3, 4))), ValueError, "softmax_forward: x must have 2 dimensions"),
    (lambda: K.softmax_forward(np.zeros((2, 0))), ValueError, "at least one column"),
    (lambda: K.softmax_forward(np.zeros((2, 3), np.int64)), TypeError, "x must be float32 or float64"),
    (lambda: K.softmax_backward(np.zeros((2, 3)), np.zeros((2, 4))), ValueError,
     r"softmax_backward: y must have shape \(2, 3\), got \(2, 4\)"),
    (lambda: K.leaky_relu_forward(np.zeros(3), None), ValueError, "leaky_relu_forward: negative_slope"),
    (lambda: K.leaky_relu_backward(np.zeros(3), np.zeros(3, np.float32)), TypeError,
     "leaky_relu_backward: x has dtype float32 but the input is float64"),
    (lambda: K.leaky_relu_backward(np.zeros(3), np.zeros(4)), ValueError, r"x must have shape \(3,\)"),
])
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_save_load_round_trip(tmp_path):
    fastcnn.manual_seed(5)
    model = fastcnn.Sequential(Flatten(), Linear(6, 4), LeakyReLU(0.1), Linear(4, 3), Softmax(-1),
                               input_shape=(2, 3))
    path = tmp_path / "act.npz"
    model.save(path)
    same = fastcnn.load(path)
    assert repr(same) == repr(model)
    assert same.layers[2].negative_slope == 0.1 and same.layers[4].dim == -1
    x = np.random.default_rng(6).standard_normal((5, 2, 3)).astype(np.float32)
    probs = same.predict(x)
    np.testing.assert_array_equal(probs, model.predict(x))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
