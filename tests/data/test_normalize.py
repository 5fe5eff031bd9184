"""fastcnn.data.Normalizer: training-only statistics, float32 output, state_dict round trip."""

import numpy as np
import pytest

from fastcnn.data import Normalizer, load_sample, to_float


def images(n=40, c=3, h=5, w=6, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)
    return x if dtype == np.uint8 else (x.astype(dtype) / 255).astype(dtype)


def test_scale_mode_is_divide_by_255():
    x = images()
    out = Normalizer("scale").fit_transform(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, to_float(x))
    assert out.min() >= 0 and out.max() <= 1


def test_scale_mode_keeps_float_values():
    x = images(dtype=np.float64)
    out = Normalizer().fit(x).transform(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x, rtol=1e-6)


def test_standardize_per_channel_statistics():
    x = images(n=30, c=3)
    x[:, 1] //= 2  # channels with different statistics
    norm = Normalizer("standardize").fit(x)
    xf = x.astype(np.float64) / 255
    np.testing.assert_allclose(norm.mean, xf.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(norm.std, xf.std(axis=(0, 2, 3)), rtol=1e-10)
    out = norm.transform(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3), dtype=np.float64), 1, atol=1e-5)


def test_statistics_come_from_training_data_only():
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 100, size=(50, 1, 4, 4), dtype=np.uint8)
    x_test = rng.integers(150, 256, size=(20, 1, 4, 4), dtype=np.uint8)
    norm = Normalizer("standardize").fit(x_train)
    before = (norm.mean.copy(), norm.std.copy())
    out = norm.transform(x_test)
    np.testing.assert_array_equal(norm.mean, before[0])  # transform does not refit
    np.testing.assert_array_equal(norm.std, before[1])
    tr = x_train.astype(np.float64) / 255
    expected = (x_test.astype(np.float64) / 255 - tr.mean()) / tr.std()
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert out.mean() > 2  # far from 0: test data were not used to centre


def test_chunked_fit_matches_numpy():
    # big images make fit work through several chunks
    x = np.random.default_rng(2).integers(0, 256, size=(6, 1, 1000, 1000), dtype=np.uint8)
    norm = Normalizer("standardize").fit(x)
    xf = x.astype(np.float64) / 255
    np.testing.assert_allclose(norm.mean, [xf.mean()], rtol=1e-12)
    np.testing.assert_allclose(norm.std, [xf.std()], rtol=1e-10)


def test_constant_channel_gets_std_one():
    x = images(c=2)
    x[:, 0] = 7
    norm = Normalizer("standardize").fit(x)
    assert norm.std[0] == 1.0
    out = norm.transform(x)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, 0], 0)


def test_three_dimensional_input_keeps_shape():
    x = images(c=1)[:, 0]
    norm = Normalizer("standardize").fit(x)
    out = norm.transform(x)
    assert out.shape == x.shape and norm.mean.shape == (1,)


def test_float32_input_is_not_modified():
    x = images(dtype=np.float32)
    copy = x.copy()
    Normalizer("standardize").fit_transform(x)
    Normalizer("scale").fit_transform(x)
    np.testing.assert_array_equal(x, copy)


@pytest.mark.parametrize("mode", ["scale", "standardize"])
def test_state_dict_round_trip_through_npz(tmp_path, mode):
    x = images()
    norm = Normalizer(mode).fit(x)
    state = norm.state_dict()
    assert all(isinstance(v, (str, np.ndarray)) for v in state.values())
    path = tmp_path / "model.npz"
    np.savez(path, **{f"normalizer.{k}": v for k, v in state.items()}, weight=np.ones(3))
    with np.load(path, allow_pickle=False) as npz:
        loaded = {k.split(".", 1)[1]: npz[k] for k in npz.files if k.startswith("normalizer.")}
    again = Normalizer.from_state_dict(loaded)
    assert again.mode == mode and again.input_dtype == "uint8"
    np.testing.assert_array_equal(again.transform(x), norm.transform(x))
    assert repr(again) == repr(norm)


def test_state_dict_is_a_copy():
    norm = Normalizer("standardize").fit(images())
    state = norm.state_dict()
    state["mean"][:] = 99
    assert np.all(norm.mean < 1)


def test_sample_statistics_are_mnist_like():
    (x_train, _), _ = load_sample()
    norm = Normalizer("standardize").fit(x_train)
    assert 0.10 < norm.mean[0] < 0.16 and 0.28 < norm.std[0] < 0.34


def test_repr():
    assert repr(Normalizer()) == "Normalizer(mode='scale')"
    norm = Normalizer("standardize").fit(np.array([[[[0, 255]]], [[[255, 255]]]], dtype=np.uint8))
    assert repr(norm) == "Normalizer(mode='standardize', mean=[0.75], std=[0.433])"


def test_errors():
    with pytest.raises(ValueError, match="mode"):
        Normalizer("minmax")
    with pytest.raises(RuntimeError, match="fit"):
        Normalizer().transform(images())
    with pytest.raises(RuntimeError, match="fit"):
        Normalizer().state_dict()
    norm = Normalizer("standardize").fit(images(c=3))
    with pytest.raises(ValueError, match="3 channel"):
        norm.transform(images(c=1))
    with pytest.raises(ValueError, match="uint8"):
        norm.transform(images(c=3, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        Normalizer().fit(np.zeros((4, 4), np.uint8))
    with pytest.raises(TypeError, match="int64"):
        Normalizer().fit(np.zeros((2, 1, 4, 4), np.int64))
    with pytest.raises(ValueError, match="no images"):
        Normalizer().fit(np.zeros((0, 1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="missing keys"):
        Normalizer.from_state_dict({"mode": "scale"})
    state = norm.state_dict()
    with pytest.raises(ValueError, match="std"):
        Normalizer.from_state_dict(dict(state, std=np.zeros(3)))


def test_constant_float_channel_gets_std_one():
    x = np.full((33, 1, 3, 3), 0.1, dtype=np.float64)
    norm = Normalizer("standardize").fit(x)
    assert norm.std[0] == 1.0
    np.testing.assert_allclose(norm.transform(x), 0, atol=1e-7)


# --------------------------------------------------------------------------- one arithmetic with the Normalize layer


def test_transform_is_the_float32_formula_bit_for_bit():
    x = images(c=3)
    norm = Normalizer("standardize").fit(x)
    mean = norm.mean.astype(np.float32)[None, :, None, None]
    std = norm.std.astype(np.float32)[None, :, None, None]
    want = (x.astype(np.float32) / np.float32(255) - mean) / std
    assert norm.transform(x).tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_equals_as_layer_forward_on_float_images(dtype):
    x = images(c=3, dtype=dtype)
    norm = Normalizer("standardize").fit(x)
    out = norm.transform(x)
    assert norm.as_layer().forward(x.astype(np.float32)).tobytes() == out.tobytes()


def test_transform_and_as_layer_forward_on_uint8_images_differ_only_in_the_scaling_rounding():
    # the layer multiplies by float32(1/255), transform divides by 255: a few float32 roundings of
    # numbers <= 1 apart before the mean is subtracted and the result divided by std
    x = images(c=3)
    norm = Normalizer("standardize").fit(x)
    out = norm.transform(x)
    layer_out = norm.as_layer().forward(x.astype(np.float32))
    assert layer_out.dtype == np.float32
    bound = 2.0 ** -22 * (1 + np.abs(out).max()) / norm.std.min()
    assert np.abs(layer_out.astype(np.float64) - out).max() <= bound


@pytest.mark.parametrize("mode", ["scale", "standardize"])
def test_not_strict_takes_both_kinds_of_images(mode):
    x = images(c=3)
    norm = Normalizer(mode).fit(x)
    with pytest.raises(ValueError, match="fitted on uint8"):
        norm.transform(to_float(x))
    # float images in [0, 1] are what uint8 images become: the same result, bit for bit
    assert norm.transform(to_float(x), strict=False).tobytes() == norm.transform(x).tobytes()
    fitted_on_float = Normalizer(mode).fit(to_float(x))
    assert fitted_on_float.transform(x, strict=False).tobytes() == fitted_on_float.transform(to_float(x)).tobytes()


def test_load_state_dict_returns_self_fitted_and_checks_like_from_state_dict():
    x = images(c=2)
    state = Normalizer("standardize").fit(x).state_dict()
    norm = Normalizer()
    assert norm.load_state_dict(state) is norm
    assert norm.fitted and norm.mode == "standardize" and norm.input_dtype == "uint8"
    np.testing.assert_array_equal(norm.transform(x), Normalizer.from_state_dict(state).transform(x))
    fresh = Normalizer()
    with pytest.raises(ValueError, match="load_state_dict: std must be > 0"):
        fresh.load_state_dict(dict(state, std=np.zeros(2)))
    with pytest.raises(ValueError, match="load_state_dict: missing keys"):
        fresh.load_state_dict({"mode": "scale"})
    with pytest.raises(ValueError, match="mode"):
        fresh.load_state_dict(dict(state, mode=np.array("minmax")))
    assert not fresh.fitted and fresh.mode == "scale"  # unchanged by the refused states
