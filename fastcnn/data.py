"""Loading MNIST-style data: an IDX reader, MNIST loaders and a packaged sample.

The IDX format (used by MNIST, Fashion-MNIST, EMNIST, ...) is a small header
followed by a dense big-endian array:

* 4 bytes of magic: ``0x00 0x00 <type code> <ndim>``;
* ``ndim`` big-endian unsigned 32-bit sizes;
* the ``prod(sizes)`` elements in C order.

Files may be gzip-compressed (detected from a ``.gz`` suffix or the gzip magic
bytes).  Only numpy and the standard library are used here.
"""

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "load_mnist", "load_sample", "to_float"]

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"

# Each MNIST split: (kind, candidate file stems).  The official names use a
# dash before "idx"; some mirrors use a dot.  Every stem is also tried with .gz.
_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

_SAMPLE_FILE = "mnist_sample.npz"
_SAMPLE_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_bytes(path):
    """Return the (decompressed) contents of ``path``."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.name.endswith(".gz") or raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{path}: not a valid gzip file (truncated or corrupt): {exc}"
            ) from None
    return raw


def read_idx(path):
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file.  It is decompressed with gzip when its name ends in ``.gz``
        or it starts with the gzip magic bytes.

    Returns
    -------
    numpy.ndarray
        An array with the shape given in the header, in native byte order.
        Type codes: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C``
        int32, ``0x0D`` float32, ``0x0E`` float64.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an IDX file (wrong magic number or unknown type
        code), or its size does not match its header (truncated or with
        trailing bytes), or it is a corrupt gzip file.

    Examples
    --------
    >>> import gzip, os, tempfile
    >>> import numpy as np
    >>> from fastcnn.data import read_idx
    >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny-idx2-ubyte.gz")
    >>> with gzip.open(path, "wb") as f:
    ...     _ = f.write(header + bytes(range(6)))
    >>> read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"IDX file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path}: expected an IDX file, got a directory")
    data = _read_bytes(path)

    if len(data) < 4:
        raise ValueError(
            f"{path}: not an IDX file: expected at least a 4-byte header, "
            f"got {len(data)} bytes"
        )
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: magic number must start with bytes 00 00, "
            f"got {data[:4].hex(' ')}"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(
            f"{path}: unsupported IDX type code 0x{code:02X} (expected one of {known})"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_size} "
            f"bytes, file has {len(data)}"
        )
    shape = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {what}: header says shape {shape} of {dtype.name} "
            f"({expected} bytes of data), found {found} bytes"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_size, count=expected // dtype.itemsize)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))


def _find_mnist_file(directory, stems):
    for stem in stems:
        for name in (stem, stem + ".gz"):
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def _check_split(images, labels, split, paths):
    if images.ndim != 3:
        raise ValueError(
            f"{paths[0]}: expected {split} images of shape (N, H, W), got shape {images.shape}"
        )
    if labels.ndim != 1:
        raise ValueError(
            f"{paths[1]}: expected {split} labels of shape (N,), got shape {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST {split} set: {images.shape[0]} images ({paths[0]}) but "
            f"{labels.shape[0]} labels ({paths[1]})"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"{paths[0]}: expected uint8 images, got {images.dtype}")


def _format(x_train, y_train, x_test, y_test):
    """Images to uint8 (N, 1, H, W), labels to int64 (N,)."""
    return (
        (np.ascontiguousarray(x_train, dtype=np.uint8)[:, None], y_train.astype(np.int64)),
        (np.ascontiguousarray(x_test, dtype=np.uint8)[:, None], y_test.astype(np.int64)),
    )


def load_mnist(path=None):
    """Load MNIST from a directory of IDX files, or the packaged sample.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A directory holding the four standard files
        ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each
        optionally gzip-compressed (``.gz``); the variants with a dot before
        ``idx`` (``train-images.idx3-ubyte``) are also accepted.  With
        ``None`` (default), return the packaged sample (see
        :func:`load_sample`).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Images as uint8 arrays of shape ``(N, 1, 28, 28)``, labels as int64
        arrays of shape ``(N,)``.

    Raises
    ------
    FileNotFoundError
        If the directory does not exist or lacks some of the files (the
        message names the directory and the missing files).
    ValueError
        If a file is corrupt or the files do not fit together.

    Examples
    --------
    >>> from fastcnn.data import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()  # packaged sample
    >>> x_train.shape, x_train.dtype, y_train.dtype
    ((6000, 1, 28, 28), dtype('uint8'), dtype('int64'))

    With the full data set downloaded to a directory::

        (x_train, y_train), (x_test, y_test) = load_mnist("~/data/mnist")
    """
    if path is None:
        return load_sample()
    directory = Path(os.fspath(path)).expanduser()
    if not directory.exists():
        raise FileNotFoundError(f"MNIST directory not found: {directory}")
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST path is not a directory: {directory}")
    found, missing = {}, []
    for key, stems in _MNIST_FILES.items():
        file = _find_mnist_file(directory, stems)
        if file is None:
            missing.append(f"{stems[0]}[.gz]")
        else:
            found[key] = file
    if missing:
        raise FileNotFoundError(
            f"MNIST files missing in {directory}: {', '.join(missing)}"
        )
    arrays = {key: read_idx(file) for key, file in found.items()}
    for split in ("train", "test"):
        _check_split(
            arrays[f"{split}_images"],
            arrays[f"{split}_labels"],
            split,
            (found[f"{split}_images"], found[f"{split}_labels"]),
        )
    return _format(
        arrays["train_images"], arrays["train_labels"],
        arrays["test_images"], arrays["test_labels"],
    )


def _sample_path():
    return Path(__file__).resolve().parent / "sample_data" / _SAMPLE_FILE


def load_sample():
    """Load the MNIST subset packaged with fastcnn.

    The sample holds 6,000 training images (the first 600 of each digit in
    the MNIST training set) and 1,000 test images (the first 100 of each digit
    in the MNIST test set), enough to train a small network in seconds.
    MNIST is by Y. LeCun, C. Cortes and C. Burges (CC BY-SA 3.0).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Images as uint8 arrays of shape ``(N, 1, 28, 28)``, labels as int64
        arrays of shape ``(N,)``.

    Raises
    ------
    FileNotFoundError
        If the sample file is missing from the installation.
    ValueError
        If the sample file is corrupt.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import load_sample
    >>> (x_train, y_train), (x_test, y_test) = load_sample()
    >>> x_train.shape, x_test.shape
    ((6000, 1, 28, 28), (1000, 1, 28, 28))
    >>> np.bincount(y_test).tolist()
    [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    """
    path = _sample_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"packaged MNIST sample not found: {path} (reinstall fastcnn, or "
            "regenerate it with tools/make_sample.py)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _SAMPLE_KEYS if k not in npz.files]
            if missing:
                raise ValueError(f"{path}: sample lacks arrays {', '.join(missing)}")
            arrays = {k: npz[k] for k in _SAMPLE_KEYS}
    except ValueError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError, ...
        raise ValueError(f"{path}: corrupt sample file: {exc}") from None
    for split in ("train", "test"):
        _check_split(arrays[f"x_{split}"], arrays[f"y_{split}"], split, (path, path))
    return _format(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def to_float(x, dtype=np.float32):
    """Convert images to floating point.

    Parameters
    ----------
    x : array_like
        Images.  uint8 arrays are scaled to ``[0, 1]`` (divided by 255);
        floating-point arrays are cast to ``dtype`` with their values
        unchanged.
    dtype : numpy dtype, default numpy.float32
        A floating-point dtype.

    Returns
    -------
    numpy.ndarray
        An array of ``dtype`` with the shape of ``x``.

    Raises
    ------
    TypeError
        If ``dtype`` is not a floating-point dtype or ``x`` is neither uint8
        nor floating point.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import to_float
    >>> to_float(np.array([0, 51, 255], dtype=np.uint8))
    array([0. , 0.2, 1. ], dtype=float32)
    >>> to_float(np.array([0.5, 2.0]), dtype=np.float64)
    array([0.5, 2. ])
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"to_float: dtype must be a floating-point dtype, got {dtype}")
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(dtype) / dtype.type(255)
    if x.dtype.kind == "f":
        return x.astype(dtype, copy=False)
    raise TypeError(
        f"to_float: expected uint8 or floating-point images, got dtype {x.dtype}"
    )
