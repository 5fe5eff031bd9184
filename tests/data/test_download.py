"""download_mnist against local file:// mirrors, load_npz and load_fashion_mnist."""

import hashlib
import os
import shutil
import stat
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fastcnn import data
from fastcnn.data import (
    FASHION_MNIST_SHA256,
    MNIST_SHA256,
    download_mnist,
    load_fashion_mnist,
    load_mnist,
    load_npz,
)
from helpers import MNIST_DIR, write_idx
NAMES = sorted(MNIST_SHA256)
LABELS = "train-labels-idx1-ubyte.gz"


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tiny_mirror(directory, n_train=6, n_test=4):
    """Four small valid MNIST-named archives; returns their SHA-256 by name."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test) % 10,
    }
    for name, arr in files.items():
        write_idx(directory / name, np.asarray(arr, dtype=np.uint8), gz=True)
    return {name: sha(directory / name) for name in files}


def listing(directory):
    return sorted(p.name for p in Path(directory).iterdir())


@pytest.fixture(scope="module")
def mnist_mirror(tmp_path_factory):
    if not all((MNIST_DIR / n).is_file() for n in NAMES):
        pytest.skip(f"MNIST archives not found in {MNIST_DIR}")
    mirror = tmp_path_factory.mktemp("mirror")
    for name in NAMES:
        shutil.copyfile(MNIST_DIR / name, mirror / name)
    return mirror, {name: sha(mirror / name) for name in NAMES}


# --------------------------------------------------------------------------- download_mnist


def test_published_checksums_are_well_formed():
    for table in (MNIST_SHA256, FASHION_MNIST_SHA256):
        assert sorted(table) == NAMES
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in table.values())
    assert MNIST_SHA256 != FASHION_MNIST_SHA256


def test_download_real_mnist_from_file_url(tmp_path, mnist_mirror):
    mirror, sums = mnist_mirror
    dest = download_mnist(tmp_path / "a" / "b", base_url=mirror.as_uri(), sha256=sums)
    assert dest == tmp_path / "a" / "b"
    assert listing(dest) == NAMES  # nothing temporary left behind
    assert {n: sha(dest / n) for n in NAMES} == sums
    (_, y_train), (x_test, y_test) = load_mnist(dest)
    assert len(y_train) == 60000 and x_test.shape == (10000, 1, 28, 28)


def test_existing_good_files_are_not_fetched_again(tmp_path):
    sums = tiny_mirror(tmp_path / "mirror")
    dest = download_mnist(tmp_path / "dest", base_url=(tmp_path / "mirror").as_uri() + "/", sha256=sums)
    stamps = {n: (dest / n).stat().st_mtime_ns for n in NAMES}
    empty = tmp_path / "empty"
    empty.mkdir()
    # a mirror with nothing in it: any fetch would fail
    download_mnist(dest, base_url=empty.as_uri(), sha256=sums)
    assert {n: (dest / n).stat().st_mtime_ns for n in NAMES} == stamps


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_downloaded_files_get_the_umask_mode_and_no_temporary_is_left(tmp_path):
    sums = tiny_mirror(tmp_path / "mirror")
    umask = os.umask(0o022)
    os.umask(umask)
    dest = download_mnist(tmp_path / "dest", base_url=(tmp_path / "mirror").as_uri(), sha256=sums)
    assert listing(dest) == NAMES
    assert {stat.S_IMODE((dest / n).stat().st_mode) for n in NAMES} == {0o666 & ~umask}


def test_existing_bad_file_is_replaced(tmp_path):
    sums = tiny_mirror(tmp_path / "mirror")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / LABELS).write_bytes(b"stale")
    download_mnist(dest, base_url=(tmp_path / "mirror").as_uri(), sha256=sums)
    assert sha(dest / LABELS) == sums[LABELS]
    assert listing(dest) == NAMES


def test_corrupted_file_raises_and_leaves_nothing(tmp_path):
    mirror = tmp_path / "mirror"
    sums = tiny_mirror(mirror)
    raw = bytearray((mirror / LABELS).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (mirror / LABELS).write_bytes(bytes(raw))
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match=f"{LABELS}.*SHA-256"):
        download_mnist(dest, base_url=mirror.as_uri(), sha256=sums)
    assert LABELS not in listing(dest)
    assert not [n for n in listing(dest) if n.endswith(".part")]
    for name in listing(dest):  # whatever came before is complete and verified
        assert sha(dest / name) == sums[name]


def test_default_checksums_are_the_published_ones(tmp_path):
    mirror = tmp_path / "mirror"
    tiny_mirror(mirror)  # valid IDX files, but not the published archives
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="expected (" + "|".join(MNIST_SHA256.values()) + ")"):
        download_mnist(dest, base_url=mirror.as_uri())
    assert listing(dest) == []
    with pytest.raises(ValueError, match="expected (" + "|".join(FASHION_MNIST_SHA256.values()) + ")"):
        download_mnist(dest, kind="fashion-mnist", base_url=mirror.as_uri())
    assert listing(dest) == []


def test_missing_file_on_mirror_is_an_oserror(tmp_path):
    mirror = tmp_path / "mirror"
    sums = tiny_mirror(mirror)
    (mirror / LABELS).unlink()
    dest = tmp_path / "dest"
    with pytest.raises(OSError, match=LABELS):
        download_mnist(dest, base_url=mirror.as_uri(), sha256=sums)
    assert LABELS not in listing(dest)
    assert not [n for n in listing(dest) if n.endswith(".part")]


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken:
        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls == 1:
                return b"partial data"
            raise ConnectionResetError("connection reset by peer")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Broken())
    dest = tmp_path / "dest"
    with pytest.raises(OSError, match="connection reset"):
        download_mnist(dest, base_url="https://example.invalid/")
    assert listing(dest) == []


def test_interrupt_by_keyboard_leaves_nothing(tmp_path, monkeypatch):
    def boom(url, timeout):
        raise KeyboardInterrupt

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    dest = tmp_path / "dest"
    with pytest.raises(KeyboardInterrupt):
        download_mnist(dest, base_url="https://example.invalid/")
    assert listing(dest) == []


def test_fashion_mnist_download_and_load(tmp_path):
    sums = tiny_mirror(tmp_path / "mirror", n_train=10)
    dest = download_mnist(tmp_path / "fashion", kind="fashion-mnist",
                          base_url=(tmp_path / "mirror").as_uri(), sha256=sums)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(dest)
    assert x_train.shape == (10, 1, 28, 28) and x_train.dtype == np.uint8
    assert y_test.dtype == np.int64 and len(y_test) == 4
    assert data.FASHION_MNIST_CLASSES[y_train[9]] == "Ankle boot"


def test_download_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        download_mnist(tmp_path, kind="cifar10")
    with pytest.raises(ValueError, match="unknown files"):
        download_mnist(tmp_path, sha256={"train-images.gz": "0" * 64})


# --------------------------------------------------------------------------- load_fashion_mnist


def test_load_fashion_mnist_messages_name_the_data_set(tmp_path):
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST directory not found"):
        load_fashion_mnist(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST files missing"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(TypeError, match="path"):
        load_fashion_mnist(None)


# --------------------------------------------------------------------------- load_npz


def test_load_npz_round_trip(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    y = np.arange(5, dtype=np.uint8)
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y)
    x2, y2 = load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(x2, x)
    assert y2.dtype == np.int64 and y2.tolist() == list(range(5))


def test_load_npz_adds_channel_axis_and_custom_keys(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((3, 6, 6), np.float32), labels=np.array([2, 0, 1]))
    x, y = load_npz(str(tmp_path / "d.npz"), x_key="images", y_key="labels")
    assert x.shape == (3, 1, 6, 6) and x.dtype == np.float32


@pytest.mark.parametrize(
    "arrays,match",
    [
        (dict(a=np.zeros((2, 1, 3, 3)), y=np.zeros(2, int)), r"no array named 'x'.*\['a', 'y'\]"),
        (dict(x=np.zeros((2, 9)), y=np.zeros(2, int)), r"'x' must be images.*\(2, 9\)"),
        (dict(x=np.zeros((2, 1, 1, 3, 3)), y=np.zeros(2, int)), "must be images"),
        (dict(x=np.zeros((2, 3, 3)), y=np.zeros((2, 1), int)), "1-D labels"),
        (dict(x=np.zeros((2, 3, 3)), y=np.zeros(2)), "integer labels"),
        (dict(x=np.zeros((2, 3, 3)), y=np.zeros(3, int)), "2 images.*3 labels"),
        (dict(x=np.zeros((2, 3, 3)), y=np.array([0, -1])), ">= 0"),
        (dict(x=np.array([["a"]] * 2), y=np.zeros(2, int)), "must be images"),
    ],
)
def test_load_npz_rejects_bad_contents(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_npz(tmp_path / "d.npz")


def test_load_npz_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_npz(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="cannot read"):
        load_npz(tmp_path / "bad.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        load_npz(tmp_path / "one.npy")
    np.savez(tmp_path / "obj.npz", x=np.array([None, 1], dtype=object), y=np.zeros(2, int))
    with pytest.raises(ValueError, match="pickle"):
        load_npz(tmp_path / "obj.npz")
    with pytest.raises(ValueError, match="directory"):
        load_npz(tmp_path)
