"""CIFAR-10 binary reader: tiny fake batch files written in tmp_path and read back."""

import gzip

import numpy as np
import pytest

from fastcnn.data import CIFAR10_CLASSES, load_cifar10

TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST = "test_batch.bin"


def _records(n, seed):
    """n records as the binary release lays them out, with the images and labels they encode."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    raw = b"".join(bytes([labels[i]]) + images[i].tobytes() for i in range(n))  # label, R plane, G plane, B plane
    return raw, images, labels.astype(np.int64)


def _write_set(folder, sizes=(2, 3, 1, 2, 4), test_size=3, gz=()):
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for k, (name, n) in enumerate(zip(TRAIN + [TEST], list(sizes) + [test_size])):
        raw, x, y = _records(n, k)
        if name in gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
        xs.append(x)
        ys.append(y)
    return (np.concatenate(xs[:5]), np.concatenate(ys[:5])), (xs[5], ys[5])


def test_round_trip(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    (xt, yt), (xs, ys) = _write_set(folder)
    (x_train, y_train), (x_test, y_test) = load_cifar10(folder)
    assert x_train.shape == (12, 3, 32, 32) and x_train.dtype == np.uint8
    assert y_train.shape == (12,) and y_train.dtype == np.int64
    assert x_test.shape == (3, 3, 32, 32) and y_test.dtype == np.int64
    np.testing.assert_array_equal(x_train, xt)
    np.testing.assert_array_equal(y_train, yt)
    np.testing.assert_array_equal(x_test, xs)
    np.testing.assert_array_equal(y_test, ys)
    assert x_train.flags.c_contiguous


def test_channel_layout(tmp_path):
    """Bytes 1..1024 are the red plane row by row, then green, then blue."""
    folder = tmp_path / "c"
    _write_set(folder, sizes=(1, 1, 1, 1, 1), test_size=1)
    record = bytearray(3073)
    record[0] = 7
    record[1 + 0 * 1024 + 5 * 32 + 9] = 11     # red, row 5, column 9
    record[1 + 1 * 1024 + 31] = 22             # green, row 0, column 31
    record[1 + 2 * 1024 + 1023] = 33           # blue, last pixel
    (folder / TEST).write_bytes(bytes(record))
    _, (x_test, y_test) = load_cifar10(folder)
    assert y_test.tolist() == [7]
    assert x_test[0, 0, 5, 9] == 11 and x_test[0, 1, 0, 31] == 22 and x_test[0, 2, 31, 31] == 33
    assert int(x_test.sum()) == 66
    assert CIFAR10_CLASSES[7] == "horse"


def test_parent_folder_and_gzip(tmp_path):
    (xt, _), _ = _write_set(tmp_path / "cifar-10-batches-bin", gz=("data_batch_3.bin",))
    (x_train, _), _ = load_cifar10(tmp_path)
    np.testing.assert_array_equal(x_train, xt)


def test_classes():
    assert len(CIFAR10_CLASSES) == 10
    assert CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[9] == "truck"


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_cifar10(tmp_path / "nope")


def test_missing_file(tmp_path):
    _write_set(tmp_path)
    (tmp_path / "data_batch_4.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4.bin"):
        load_cifar10(tmp_path)


def test_truncated_file(tmp_path):
    _write_set(tmp_path)
    raw = (tmp_path / "data_batch_2.bin").read_bytes()
    (tmp_path / "data_batch_2.bin").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="truncated"):
        load_cifar10(tmp_path)


def test_empty_file(tmp_path):
    _write_set(tmp_path)
    (tmp_path / TEST).write_bytes(b"")
    with pytest.raises(ValueError, match="0 bytes"):
        load_cifar10(tmp_path)


def test_bad_label(tmp_path):
    _write_set(tmp_path)
    raw = bytearray((tmp_path / TEST).read_bytes())
    raw[3073] = 42  # label of record 1
    (tmp_path / TEST).write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="record 1 has label 42"):
        load_cifar10(tmp_path)


def test_none_path():
    with pytest.raises(TypeError, match="path"):
        load_cifar10(None)
