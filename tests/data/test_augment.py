"""fastcnn.augment: shifts, rotations, noise and the seeded Augment pipeline."""

import json

import numpy as np
import pytest

import fastcnn
from fastcnn.augment import (
    Augment,
    gaussian_noise,
    random_rotation,
    random_shift,
    rotate_images,
    shift_images,
)


def batch(n=4, c=2, h=7, w=9, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(dtype)


def naive_shift(img, di, dj):
    H, W = img.shape
    out = np.zeros_like(img)
    for i in range(H):
        for j in range(W):
            if 0 <= i - di < H and 0 <= j - dj < W:
                out[i, j] = img[i - di, j - dj]
    return out


def naive_rotate(img, degrees):
    """Bilinear rotation about the centre, written from the docstring's rule in float64."""
    H, W = img.shape
    ci, cj = (H - 1) / 2, (W - 1) / 2
    t = np.deg2rad(degrees)
    out = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            y, x = i - ci, j - cj
            si = ci + np.cos(t) * y + np.sin(t) * x
            sj = cj - np.sin(t) * y + np.cos(t) * x
            i0, j0 = int(np.floor(si)), int(np.floor(sj))
            fy, fx = si - i0, sj - j0
            for a, wa in ((i0, 1 - fy), (i0 + 1, fy)):
                for b, wb in ((j0, 1 - fx), (j0 + 1, fx)):
                    if 0 <= a < H and 0 <= b < W:
                        out[i, j] += wa * wb * img[a, b]
    return out


# --------------------------------------------------------------------------- shift


def test_shift_one_row_down_matches_numpy():
    x = batch()
    out = shift_images(x, (1, 0))
    expected = np.zeros_like(x)
    expected[:, :, 1:, :] = x[:, :, :-1, :]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("di,dj", [(0, 1), (-2, 3), (3, -1), (7, 0), (0, -9), (-20, 20), (0, 0)])
def test_shift_matches_naive(di, dj):
    x = batch(n=1, c=1)
    out = shift_images(x, (di, dj))
    np.testing.assert_array_equal(out[0, 0], naive_shift(x[0, 0], di, dj))


def test_shift_per_image_and_uint8():
    x = (batch(n=3, c=1) * 255).astype(np.uint8)
    shifts = np.array([[1, 0], [0, -2], [-1, 1]])
    out = shift_images(x[:, 0], shifts)  # (N, H, W) in, (N, H, W) out
    assert out.dtype == np.uint8 and out.shape == x[:, 0].shape
    for n, (di, dj) in enumerate(shifts):
        np.testing.assert_array_equal(out[n], naive_shift(x[n, 0], di, dj))


def test_shift_errors():
    x = batch()
    with pytest.raises(ValueError, match=r"shifts must have shape \(4, 2\)"):
        shift_images(x, np.zeros((3, 2), int))
    with pytest.raises(TypeError, match="integers"):
        shift_images(x, (0.5, 1.0))
    with pytest.raises(ValueError, match="shape"):
        shift_images(x[0, 0], (1, 1))


# --------------------------------------------------------------------------- rotation


def test_rotation_90_is_rot90(dtype):
    x = batch(n=2, c=1, h=8, w=8, dtype=dtype)
    out = rotate_images(x, 90.0)
    assert out.dtype == dtype
    expected = np.rot90(x, k=1, axes=(2, 3))
    np.testing.assert_allclose(out[:, :, 1:-1, 1:-1], expected[:, :, 1:-1, 1:-1], atol=1e-5)
    np.testing.assert_allclose(out, expected, atol=1e-5)  # exact angles lose nothing at the border
    np.testing.assert_allclose(rotate_images(x, -90.0), np.rot90(x, k=-1, axes=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(rotate_images(x, 180.0), np.rot90(x, k=2, axes=(2, 3)), atol=1e-5)


def test_rotation_zero_is_identity():
    x = batch()
    np.testing.assert_array_equal(rotate_images(x, 0.0), x)


@pytest.mark.parametrize("degrees", [13.0, -37.5, 120.0])
def test_rotation_matches_naive_bilinear(degrees):
    x = batch(n=1, c=1, h=7, w=10, dtype=np.float64)
    out = rotate_images(x, degrees)
    np.testing.assert_allclose(out[0, 0], naive_rotate(x[0, 0], degrees), atol=1e-12)


def test_rotation_per_image_angles_and_channels():
    x = batch(n=3, c=2, dtype=np.float64)
    angles = np.array([10.0, -5.0, 45.0])
    out = rotate_images(x, angles)
    for n in range(3):
        for c in range(2):
            np.testing.assert_allclose(out[n, c], naive_rotate(x[n, c], angles[n]), atol=1e-12)


def test_rotation_needs_float():
    with pytest.raises(TypeError, match="float32 or float64"):
        rotate_images(np.zeros((1, 1, 3, 3), np.uint8), 10.0)
    with pytest.raises(ValueError, match="degrees"):
        rotate_images(batch(), np.zeros(3))


# --------------------------------------------------------------------------- noise and random_*


def test_noise_std_close_to_requested(dtype):
    x = np.zeros((64, 1, 28, 28), dtype=dtype)
    out = gaussian_noise(x, 0.3, np.random.default_rng(0))
    assert out.dtype == dtype and out.shape == x.shape
    assert abs(out.std() - 0.3) < 0.01 and abs(out.mean()) < 0.01


def test_noise_is_added_to_the_input():
    x = batch()
    out = gaussian_noise(x, 0.05, 1)
    expected = x + np.float32(0.05) * np.random.default_rng(1).standard_normal(x.shape, dtype=np.float32)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_random_functions_seeded_and_in_range():
    x = batch(n=16, c=1)
    a = random_shift(x, 2, np.random.default_rng(4))
    b = random_shift(x, 2, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    ok = 0
    for n in range(16):  # every image is one of the 25 allowed shifts
        ok += any(np.array_equal(a[n, 0], naive_shift(x[n, 0], di, dj))
                  for di in range(-2, 3) for dj in range(-2, 3))
    assert ok == 16
    r1 = random_rotation(x, 20.0, 3)
    r2 = random_rotation(x, 20.0, 3)
    np.testing.assert_array_equal(r1, r2)
    assert r1.dtype == np.float32


def test_random_function_argument_errors():
    x = batch()
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(x, -1)
    with pytest.raises(TypeError, match="max_shift"):
        random_shift(x, 1.5)
    with pytest.raises(ValueError, match="max_degrees"):
        random_rotation(x, -3.0)
    with pytest.raises(ValueError, match="std"):
        gaussian_noise(x, float("nan"))
    with pytest.raises(TypeError, match="rng"):
        gaussian_noise(x, 0.1, rng="seed")
    with pytest.raises(TypeError, match="float32 or float64"):
        gaussian_noise(np.zeros((1, 1, 2, 2), np.uint8), 0.1)


# --------------------------------------------------------------------------- Augment


@pytest.mark.parametrize("shape", [(5, 1, 12, 12), (5, 3, 8, 10), (5, 12, 12)])
def test_augment_keeps_shape_and_dtype(dtype, shape):
    x = np.random.default_rng(0).random(shape).astype(dtype)
    out = Augment(shift=2, rotation=15.0, noise=0.1, seed=0)(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert not np.array_equal(out, x)


def test_augment_all_zero_is_an_identical_copy():
    x = batch()
    out = Augment()(x)
    assert out is not x and not np.shares_memory(out, x)
    np.testing.assert_array_equal(out, x)
    u8 = (x * 255).astype(np.uint8)
    np.testing.assert_array_equal(Augment(seed=1)(u8), u8)


def test_augment_same_seed_same_output_different_seed_differs():
    x = batch(n=8)
    a = Augment(shift=1, rotation=10.0, noise=0.05, seed=42)
    b = Augment(shift=1, rotation=10.0, noise=0.05, seed=42)
    c = Augment(shift=1, rotation=10.0, noise=0.05, seed=43)
    for _ in range(2):
        out_a = a(x)
        np.testing.assert_array_equal(out_a, b(x))
    assert not np.array_equal(out_a, c(x))


def test_augment_shift_only_works_on_uint8():
    x = (batch() * 255).astype(np.uint8)
    out = Augment(shift=(1, 2), seed=0)(x)
    assert out.dtype == np.uint8
    with pytest.raises(TypeError, match="float32 or float64"):
        Augment(rotation=5.0)(x)


def test_augment_does_not_depend_on_thread_count():
    x = batch(n=12)
    before = fastcnn.get_num_threads()
    try:
        fastcnn.set_num_threads(1)
        one = Augment(shift=2, rotation=20.0, noise=0.1, seed=9)(x)
        fastcnn.set_num_threads(before)
        many = Augment(shift=2, rotation=20.0, noise=0.1, seed=9)(x)
    finally:
        fastcnn.set_num_threads(before)
    np.testing.assert_array_equal(one, many)


def test_augment_state_dict_resumes_identically(tmp_path):
    x = batch(n=6)
    aug = Augment(shift=(1, 2), rotation=7.5, noise=0.02, seed=5)
    aug(x)  # advance the generator
    state = aug.state_dict()
    assert all(isinstance(v, (str, np.ndarray)) for v in state.values())
    assert json.loads(state["rng_state"])["bit_generator"] == "PCG64"
    expected = [aug(x), aug(x)]

    np.savez(tmp_path / "ckpt.npz", **{f"augment.{k}": v for k, v in state.items()})
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as npz:
        loaded = {k.split(".", 1)[1]: npz[k] for k in npz.files}
    resumed = Augment.from_state_dict(loaded)
    assert resumed.shift == (1, 2) and resumed.rotation == 7.5 and resumed.noise == 0.02
    for e in expected:
        np.testing.assert_array_equal(resumed(x), e)


def test_augment_load_state_dict_errors():
    with pytest.raises(ValueError, match="missing keys"):
        Augment().load_state_dict({"shift": np.zeros(2, int)})
    state = Augment(seed=0).state_dict()
    with pytest.raises(ValueError, match="rng_state"):
        Augment().load_state_dict(dict(state, rng_state="not json"))


def test_augment_repr_and_argument_errors():
    assert repr(Augment()) == "Augment()"
    assert repr(Augment(shift=2, rotation=10.0)) == "Augment(shift=2, rotation=10.0)"
    assert repr(Augment(shift=(1, 3), noise=0.1)) == "Augment(shift=(1, 3), noise=0.1)"
    with pytest.raises(ValueError, match="shift"):
        Augment(shift=-1)
    with pytest.raises(TypeError, match="rotation"):
        Augment(rotation="5")
    with pytest.raises(ValueError, match="noise"):
        Augment(noise=-0.1)
    with pytest.raises(TypeError, match="seed"):
        Augment(seed=1.5)
