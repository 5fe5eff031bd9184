"""Normalize: training statistics carried inside the model, so predict on raw images normalises the same way."""

import numpy as np
import pytest

import fastcnn
from fastcnn.data import Normalizer, load_sample
from fastcnn.layers import Normalize
from helpers import check_layer_grads


def test_forward_and_backward_match_the_formula_and_central_differences():
    rng = np.random.default_rng(0)
    layer = Normalize(3, scale=0.5, mean=[0.1, -0.2, 0.3], std=[2.0, 0.5, 1.5], dtype=np.float64)
    x = rng.standard_normal((4, 3, 5, 2))
    want = (x * 0.5 - np.array([0.1, -0.2, 0.3])[None, :, None, None]) / np.array([2.0, 0.5, 1.5])[None, :, None, None]
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-14)
    g = rng.standard_normal(x.shape)
    dx = layer.backward(g)
    eps, idx = 1e-6, (1, 2, 3, 1)
    up, down = x.copy(), x.copy()
    up[idx] += eps
    down[idx] -= eps
    numeric = ((layer.forward(up) - layer.forward(down)) * g).sum() / (2 * eps)
    assert abs(numeric - dx[idx]) < 1e-8
    assert layer.parameters() == []


def test_gradcheck():
    """The whole input gradient, through the shared layer harness."""
    rng = np.random.default_rng(1)
    layer = Normalize(3, scale=0.5, mean=[0.1, -0.2, 0.3], std=[2.0, 0.5, 1.5], dtype=np.float64)
    check_layer_grads(layer, rng.standard_normal((2, 3, 4, 2)), rng)


def test_model_with_normalizer_layer_predicts_raw_images_like_manual_normalisation(tmp_path):
    (x, y), (x_test, _) = load_sample()
    x, y, x_test = x[:256], y[:256], x_test[:64]
    norm = Normalizer("standardize").fit(x)
    fastcnn.manual_seed(0)
    plain = fastcnn.models.lenet5()
    fastcnn.manual_seed(0)
    wrapped = fastcnn.Sequential(norm.as_layer(), *fastcnn.models.lenet5().layers, input_shape=(1, 28, 28))
    for model, data in ((plain, norm.transform(x)), (wrapped, x)):  # raw uint8 into the wrapped model
        model.fit(data, y, epochs=1, batch_size=64, seed=0, verbose=False,
                  optimizer=fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    np.testing.assert_allclose(wrapped.predict(x_test), plain.predict(norm.transform(x_test)), rtol=1e-4, atol=1e-4)

    path = tmp_path / "model.npz"
    wrapped.save(path)
    loaded = fastcnn.load(path)
    assert isinstance(loaded.layers[0], Normalize)
    np.testing.assert_array_equal(loaded.layers[0].mean, wrapped.layers[0].mean)
    np.testing.assert_array_equal(loaded.predict(x_test), wrapped.predict(x_test))


def test_bad_arguments_and_inputs_are_refused():
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize(2, std=[1.0, 0.0])
    with pytest.raises(ValueError, match="mean must be 2 finite numbers"):
        Normalize(2, mean=[1.0])
    with pytest.raises(ValueError, match="scale"):
        Normalize(2, scale=0)
    with pytest.raises(ValueError, match="expects 2 channels"):
        fastcnn.Sequential(Normalize(2), input_shape=(3, 4, 4))
    with pytest.raises(ValueError, match="float array"):
        Normalize(2).forward(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(RuntimeError, match="fit"):
        Normalizer("standardize").as_layer()
