"""Tests for fastcnn.data: the IDX reader, the MNIST loaders and to_float."""

import gzip
import shutil

import numpy as np
import pytest

from fastcnn.data import load_mnist, load_sample, read_idx, to_float
from helpers import IDX_TYPE_CODES, MNIST_DIR, REPO, idx_bytes, make_fake_mnist, write_idx


def sample_array(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("code,dtype", sorted(IDX_TYPE_CODES.items()))
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_read_idx_round_trip(tmp_path, code, dtype, gz):
    arr = sample_array(dtype, (3, 4, 5))
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), arr, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype)
    assert out.dtype.isnative
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("shape", [(0,), (7,), (2, 3), (1, 2, 3, 4)])
def test_read_idx_shapes(tmp_path, shape):
    arr = sample_array(np.int16, shape)
    out = read_idx(write_idx(tmp_path / "x.idx", arr))
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)


def test_read_idx_gzip_detected_by_magic(tmp_path):
    arr = sample_array(np.uint8, (4, 4))
    path = write_idx(tmp_path / "no-suffix-idx2-ubyte", arr, gz=True)
    np.testing.assert_array_equal(read_idx(path), arr)


def test_read_idx_accepts_str_and_result_is_writable(tmp_path):
    arr = sample_array(np.uint8, (2, 2))
    out = read_idx(str(write_idx(tmp_path / "x.idx", arr)))
    out[0, 0] = 1  # not a read-only view of the file buffer


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        read_idx(tmp_path / "nope.idx")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_read_idx_truncated_payload(tmp_path, gz):
    data = idx_bytes(sample_array(np.int32, (10, 3)))[:-5]
    if gz:
        data = gzip.compress(data)
    path = tmp_path / "t.idx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"t\.idx.*truncated"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    data = idx_bytes(sample_array(np.uint8, (10, 3, 3)))[:9]  # 3 dims need 16 bytes
    path = tmp_path / "h.idx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(sample_array(np.uint8, (4,))) + b"\x00")
    with pytest.raises(ValueError, match="trailing"):
        read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    data = gzip.compress(idx_bytes(sample_array(np.uint8, (50, 50))))
    path = tmp_path / "cut.idx.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.idx\.gz.*gzip"):
        read_idx(path)


@pytest.mark.parametrize(
    "content",
    [
        b"PK\x03\x04 this is a zip file, not IDX",
        b"\x01\x00\x08\x01\x00\x00\x00\x01\x05",
        b"\x00\x00",
        b"",
    ],
    ids=["foreign", "bad-first-byte", "short", "empty"],
)
def test_read_idx_wrong_magic(tmp_path, content):
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"foreign\.bin.*not an IDX file"):
        read_idx(path)


def test_read_idx_unknown_type_code(tmp_path):
    path = tmp_path / "code.idx"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + (2).to_bytes(4, "big") + b"\x00\x00")
    with pytest.raises(ValueError, match="type code 0x0A"):
        read_idx(path)


def test_read_idx_directory(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        read_idx(tmp_path)


# --------------------------------------------------------------------------- load_sample


def check_mnist_format(x_train, y_train, x_test, y_test):
    for x, y in ((x_train, y_train), (x_test, y_test)):
        assert x.dtype == np.uint8
        assert x.ndim == 4 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == np.int64
        assert y.shape == (x.shape[0],)
        assert y.min() >= 0 and y.max() <= 9


def test_load_sample_format_and_balance():
    (x_train, y_train), (x_test, y_test) = load_sample()
    check_mnist_format(x_train, y_train, x_test, y_test)
    assert x_train.shape == (6000, 1, 28, 28)
    assert x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(y_train, minlength=10).tolist() == [600] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [100] * 10
    # Real images, not blanks: MNIST digits are mostly background with bright strokes.
    assert x_train.max() == 255 and 0.05 < x_train.mean() / 255 < 0.25
    # Original order is kept, so classes are interleaved, not sorted.
    assert not np.all(np.diff(y_train) >= 0)


def test_load_mnist_none_is_sample():
    (a, b), (c, d) = load_mnist()
    (a2, b2), (c2, d2) = load_sample()
    for u, v in ((a, a2), (b, b2), (c, c2), (d, d2)):
        np.testing.assert_array_equal(u, v)


def test_sample_file_small_and_plain():
    path = REPO / "fastcnn/sample_data/mnist_sample.npz"
    assert path.stat().st_size < 3_000_000
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["x_test", "x_train", "y_test", "y_train"]
        assert all(npz[k].dtype == np.uint8 for k in npz.files)


# --------------------------------------------------------------------------- load_mnist


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dot", [False, True], ids=["dash", "dot"])
def test_load_mnist_directory(tmp_path, gz, dot):
    arrays = make_fake_mnist(tmp_path / "mnist", gz=gz, dot=dot)
    (x_train, y_train), (x_test, y_test) = load_mnist(tmp_path / "mnist")
    check_mnist_format(x_train, y_train, x_test, y_test)
    np.testing.assert_array_equal(x_train[:, 0], arrays["train-images"])
    np.testing.assert_array_equal(y_train, arrays["train-labels"])
    np.testing.assert_array_equal(x_test[:, 0], arrays["t10k-images"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels"])


def test_load_mnist_missing_files(tmp_path):
    make_fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg
    assert "t10k-labels-idx1-ubyte" in msg and "train-images-idx3-ubyte" in msg
    assert "train-labels" not in msg


def test_load_mnist_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not-there"):
        load_mnist(tmp_path / "not-there")


def test_load_mnist_count_mismatch(tmp_path):
    make_fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8), gz=True)
    with pytest.raises(ValueError, match="5 images.*4 labels"):
        load_mnist(tmp_path)


def test_load_mnist_corrupt_file(tmp_path):
    make_fake_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="train-labels"):
        load_mnist(tmp_path)


def test_load_mnist_real():
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST not found at {MNIST_DIR}")
    (x_train, y_train), (x_test, y_test) = load_mnist(MNIST_DIR)
    check_mnist_format(x_train, y_train, x_test, y_test)
    assert x_train.shape == (60000, 1, 28, 28)
    assert x_test.shape == (10000, 1, 28, 28)
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # The packaged sample is the first 600 of each class, in order.
    (xs, ys), (xs_test, ys_test) = load_sample()
    for c in range(10):
        np.testing.assert_array_equal(xs[ys == c], x_train[y_train == c][:600])
        np.testing.assert_array_equal(xs_test[ys_test == c], x_test[y_test == c][:100])


def test_load_mnist_real_uncompressed_copy(tmp_path):
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST not found at {MNIST_DIR}")
    # A directory mixing raw (decompressed test files) and gzip files loads too.
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(MNIST_DIR / f"{name}.gz", "rb") as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).symlink_to(MNIST_DIR / name)
    (_, _), (x_test, y_test) = load_mnist(tmp_path)
    assert x_test.shape == (10000, 1, 28, 28)
    assert y_test[:3].tolist() == [7, 2, 1]


# --------------------------------------------------------------------------- to_float


def test_to_float_uint8():
    x = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    out = to_float(x)
    assert out.dtype == np.float32
    assert out.shape == x.shape
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, x / 255.0, rtol=1e-6)


def test_to_float_float64_and_sample_range():
    (x, _), _ = load_sample()
    out = to_float(x[:100], dtype=np.float64)
    assert out.dtype == np.float64
    assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_to_float_float_input_cast_unchanged(dtype):
    x = np.array([-1.5, 0.25, 3.0], dtype=np.float64)
    out = to_float(x, dtype=dtype)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, x.astype(dtype))


def test_to_float_rejects_bad_input():
    with pytest.raises(TypeError, match="dtype"):
        to_float(np.zeros(3, np.uint8), dtype=np.int32)
    with pytest.raises(TypeError, match="int64"):
        to_float(np.zeros(3, np.int64))
