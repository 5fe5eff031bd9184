"""Loading MNIST-style data: an IDX reader, MNIST loaders and a packaged sample.

The IDX format (used by MNIST, Fashion-MNIST, EMNIST, ...) is a small header
followed by a dense big-endian array:

* 4 bytes of magic: ``0x00 0x00 <type code> <ndim>``;
* ``ndim`` big-endian unsigned 32-bit sizes;
* the ``prod(sizes)`` elements in C order.

Files may be gzip-compressed (detected from a ``.gz`` suffix or the gzip magic
bytes).  Only numpy and the standard library are used here.

Besides the loaders (:func:`load_mnist`, :func:`load_fashion_mnist`,
:func:`load_npz`, :func:`download_mnist`) the module holds the rest of the
input pipeline: seeded stratified splits (:func:`train_val_split`,
:func:`train_val_test_split`, :func:`split_indices`), a :class:`Normalizer`
fitted on training data only, and :func:`iterate_minibatches`.  Augmentation
lives in :mod:`fastcnn.augment`.
"""

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_sample",
    "load_npz",
    "download_mnist",
    "to_float",
    "split_indices",
    "train_val_split",
    "train_val_test_split",
    "Normalizer",
    "iterate_minibatches",
    "FASHION_MNIST_CLASSES",
    "load_cifar10",
    "CIFAR10_CLASSES",
]

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
    return _load_idx_dir(path, "MNIST")


def _load_idx_dir(path, dataset):
    """The four MNIST-named IDX files in directory ``path``, formatted as in :func:`load_mnist`."""
    directory = Path(os.fspath(path)).expanduser()
    if not directory.exists():
        raise FileNotFoundError(f"{dataset} directory not found: {directory}")
    if not directory.is_dir():
        raise FileNotFoundError(f"{dataset} path is not a directory: {directory}")
    found, missing = {}, []
    for key, stems in _MNIST_FILES.items():
        file = _find_mnist_file(directory, stems)
        if file is None:
            missing.append(f"{stems[0]}[.gz]")
        else:
            found[key] = file
    if missing:
        raise FileNotFoundError(
            f"{dataset} files missing in {directory}: {', '.join(missing)}"
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


# --------------------------------------------------------------------------- Fashion-MNIST, .npz

#: Fashion-MNIST's label names, by label.
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def load_fashion_mnist(path):
    """Load Fashion-MNIST from a directory of IDX files.

    Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; MIT licence) ships the
    same four file names and formats as MNIST (``train-images-idx3-ubyte``,
    ... each optionally ``.gz``), so this is :func:`load_mnist` with
    messages that name Fashion-MNIST and no packaged fallback.  Label names
    are in :data:`FASHION_MNIST_CLASSES`.

    Parameters
    ----------
    path : str or os.PathLike
        The directory (e.g. one filled by
        ``download_mnist(path, kind="fashion-mnist")``).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Images as uint8 ``(N, 1, 28, 28)``, labels as int64 ``(N,)``.

    Raises
    ------
    FileNotFoundError
        If the directory or some of the files are missing.
    ValueError
        If a file is corrupt or the files do not fit together.

    Examples
    --------
    ::

        from fastcnn.data import download_mnist, load_fashion_mnist, FASHION_MNIST_CLASSES
        download_mnist("~/data/fashion", kind="fashion-mnist")
        (x_train, y_train), (x_test, y_test) = load_fashion_mnist("~/data/fashion")
        FASHION_MNIST_CLASSES[y_train[0]]
    """
    if path is None:
        raise TypeError("load_fashion_mnist: path must be a directory, got None (there is no packaged sample)")
    return _load_idx_dir(path, "Fashion-MNIST")


def load_npz(path, x_key="x", y_key="y"):
    """Load images and labels from a ``.npz`` file (without pickle).

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``np.savez`` / ``np.savez_compressed``.
    x_key, y_key : str
        Names of the image and label arrays in the file.

    Returns
    -------
    x : numpy.ndarray
        Images ``(N, C, H, W)``; a file holding ``(N, H, W)`` gets a channel
        axis, ``(N, 1, H, W)``.  The dtype is kept (uint8 or float; convert
        with :class:`Normalizer` or :func:`to_float`).
    y : numpy.ndarray
        int64 labels ``(N,)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable ``.npz``, needs pickle (object arrays),
        lacks a key (the message lists the keys it has), the images are not
        3-D or 4-D numeric arrays, or the labels are not 1-D non-negative
        integers as many as the images.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from fastcnn.data import load_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "d.npz")
    >>> np.savez(path, x=np.zeros((5, 28, 28), np.uint8), y=np.arange(5))
    >>> x, y = load_npz(path)
    >>> x.shape, y.dtype
    ((5, 1, 28, 28), dtype('int64'))
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"load_npz: file not found: {path}")
    if path.is_dir():
        raise ValueError(f"load_npz: {path} is a directory, expected a .npz file")
    try:
        npz = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # neither .npz nor .npy, so numpy tried pickle
            raise ValueError(f"load_npz: cannot read {path} as .npz: not a .npz archive") from None
        raise ValueError(f"load_npz: cannot read {path} as .npz: {exc}") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError, ...
        raise ValueError(f"load_npz: cannot read {path} as .npz: {exc}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"load_npz: {path} holds a single array (.npy), expected a .npz archive")
    with npz:
        keys = list(npz.files)
        missing = [k for k in (x_key, y_key) if k not in keys]
        if missing:
            raise ValueError(
                f"load_npz: {path} has no array named {', '.join(map(repr, missing))}; "
                f"it holds {keys}; pass x_key=/y_key= to choose"
            )
        try:
            x = npz[x_key]
            y = npz[y_key]
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise ValueError(
                    f"load_npz: {path} holds object arrays, which need pickle; save plain numeric arrays"
                ) from None
            raise ValueError(f"load_npz: cannot read {path} as .npz: {exc}") from None
        except Exception as exc:  # zipfile.BadZipFile, zlib.error, ...
            raise ValueError(f"load_npz: cannot read {path} as .npz: {exc}") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(
            f"load_npz: {path}: {x_key!r} must be images (N, C, H, W) or (N, H, W), got shape {x.shape}"
        )
    if x.dtype.kind not in "uif":
        raise ValueError(f"load_npz: {path}: {x_key!r} must be numeric images, got dtype {x.dtype}")
    if y.ndim != 1:
        raise ValueError(f"load_npz: {path}: {y_key!r} must be 1-D labels (N,), got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"load_npz: {path}: {y_key!r} must hold integer labels, got dtype {y.dtype}")
    if len(y) != len(x):
        raise ValueError(
            f"load_npz: {path}: {len(x)} images ({x_key!r}) but {len(y)} labels ({y_key!r})"
        )
    if len(y) and y.min() < 0:
        raise ValueError(f"load_npz: {path}: labels must be >= 0, found {y.min()}")
    return np.ascontiguousarray(x), y.astype(np.int64)


# --------------------------------------------------------------------------- download

#: Published SHA-256 of the four MNIST archives (as served by the TensorFlow
#: mirror and yann.lecun.com; the same checksums torchvision and TFDS pin).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

#: Published SHA-256 of the four Fashion-MNIST archives (zalandoresearch/fashion-mnist).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}

_DOWNLOADS = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/", MNIST_SHA256),
    "fashion-mnist": (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        FASHION_MNIST_SHA256,
    ),
}

_CHUNK = 1 << 20


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_mnist(dest, kind="mnist", base_url=None, sha256=None, timeout=60.0):
    """Download the four MNIST (or Fashion-MNIST) archives, verified, into ``dest``.

    For each of ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``: a file
    already in ``dest`` with the expected SHA-256 is kept; otherwise the file
    is fetched from ``base_url + name`` into a temporary file in ``dest``,
    its SHA-256 is checked, and only then is it moved into place with
    :func:`os.replace`.  So ``dest`` never holds half a file or a file with
    the wrong checksum, even if the download is interrupted.

    Parameters
    ----------
    dest : str or os.PathLike
        Directory to fill (created if needed).  Load it afterwards with
        :func:`load_mnist` or :func:`load_fashion_mnist`.
    kind : {"mnist", "fashion-mnist"}
        Which data set: chooses the default URL and checksums.
    base_url : str, optional
        Where the files are, ending in ``/`` or not (``file://`` URLs work,
        for a local mirror).  Default: the TensorFlow MNIST mirror
        ``https://storage.googleapis.com/cvdf-datasets/mnist/`` or
        Fashion-MNIST's GitHub repository.
    sha256 : dict of str to str, optional
        Expected SHA-256 (hex) by file name, overriding the published ones in
        :data:`MNIST_SHA256` / :data:`FASHION_MNIST_SHA256` for the files it
        names: use it for a mirror that recompressed the archives.
    timeout : float
        Seconds before a stalled connection fails.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    ValueError
        If ``kind`` is unknown or a downloaded file's SHA-256 differs from the
        expected one (the file is discarded; the message names it).
    OSError
        If a file cannot be fetched (no network, missing on the server) or
        written.

    Examples
    --------
    On a machine with internet access::

        from fastcnn.data import download_mnist, load_mnist
        load_mnist(download_mnist("~/data/mnist"))
    """
    if kind not in _DOWNLOADS:
        raise ValueError(f"download_mnist: kind must be one of {sorted(_DOWNLOADS)}, got {kind!r}")
    default_url, published = _DOWNLOADS[kind]
    expected = dict(published)
    if sha256 is not None:
        unknown = sorted(set(sha256) - set(expected))
        if unknown:
            raise ValueError(
                f"download_mnist: sha256 names unknown files {unknown}; expected names among {sorted(expected)}"
            )
        expected.update({name: str(h).lower() for name, h in sha256.items()})
    url = default_url if base_url is None else str(base_url)
    if not url.endswith("/"):
        url += "/"
    directory = Path(os.fspath(dest)).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    for name, digest in expected.items():
        target = directory / name
        if target.is_file() and _sha256_file(target) == digest:
            continue
        _fetch_verified(url + name, target, digest, timeout)
    return directory


def _fetch_verified(url, target, digest, timeout):
    """Stream ``url`` to a temporary file beside ``target``; move it there if its SHA-256 is ``digest``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        hasher = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        hasher.update(block)
                        out.write(block)
            except (urllib.error.URLError, OSError) as exc:
                raise OSError(f"download_mnist: could not fetch {url}: {exc}") from None
        got = hasher.hexdigest()
        if got != digest:
            raise ValueError(
                f"download_mnist: {url} has SHA-256 {got}, expected {digest}; "
                "the file was discarded (corrupt download or a different file: pass sha256= for a mirror)"
            )
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --------------------------------------------------------------------------- splits


def _check_fractions(fractions, fn, name="fractions"):
    try:
        f = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a sequence of numbers, got {fractions!r}") from None
    if f.ndim != 1 or len(f) < 2:
        raise ValueError(f"{fn}: {name} must be a sequence of at least 2 numbers, got {fractions!r}")
    if not np.all((f > 0) & (f < 1)):
        raise ValueError(f"{fn}: each of {name} must be in (0, 1), got {fractions!r}")
    if abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"{fn}: {name} must sum to 1, got {fractions!r} (sum {f.sum():g})")
    return f / f.sum()


def _check_labels(y, fn):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{fn}: y must be 1-D labels (N,), got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{fn}: y must hold integer labels, got dtype {y.dtype}")
    return y


def _interleave(n, fractions):
    """Part of each of n positions so that every prefix of length L holds within 1 of ``f_k * L`` of part k."""
    f = [float(v) for v in fractions]
    assigned = [0] * len(f)
    parts = np.empty(n, dtype=np.int64)
    for p in range(n):
        best, best_gap = 0, None
        for k, fk in enumerate(f):
            gap = fk * (p + 1) - assigned[k]
            if best_gap is None or gap > best_gap:
                best, best_gap = k, gap
        parts[p] = best
        assigned[best] += 1
    return parts


def split_indices(y, fractions, seed=0, stratify=True):
    """Seeded, disjoint, covering split of ``range(len(y))`` into parts of the given fractions.

    With ``stratify`` the examples are grouped by class (classes in random
    order, examples within a class in random order) and dealt to the parts in
    a fixed interleaved pattern in which every run of ``L`` consecutive
    positions holds ``fractions[k] * L`` of part ``k`` give or take 1.5.  So
    each part's size is within 1 of ``fractions[k] * N`` and holds each class
    in proportion (within 1.5 examples), even classes too small to split
    exactly.  Without it, all examples are shuffled and dealt the same way.

    Parameters
    ----------
    y : array_like of int, (N,)
        Labels.
    fractions : sequence of float
        Size of each part, each in (0, 1), summing to 1.
    seed : int, numpy.random.Generator or None
        The same seed and labels give the same split.
    stratify : bool
        Keep class proportions in every part.

    Returns
    -------
    tuple of numpy.ndarray
        One sorted int64 index array per part.

    Raises
    ------
    ValueError
        If the fractions are invalid or a part would be empty.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import split_indices
    >>> train, val = split_indices(np.repeat([0, 1], 10), (0.8, 0.2))
    >>> len(train), len(val), np.bincount(np.repeat([0, 1], 10)[val]).tolist()
    (16, 4, [2, 2])
    """
    f = _check_fractions(fractions, "split_indices")
    y = _check_labels(y, "split_indices")
    rng = np.random.default_rng(seed)
    n = len(y)
    if stratify:
        classes = np.unique(y)
        order = []
        for c in rng.permutation(classes):
            members = np.flatnonzero(y == c)
            order.append(rng.permutation(members))
        order = np.concatenate(order) if order else np.empty(0, np.int64)
    else:
        order = rng.permutation(n)
    parts = _interleave(n, f)
    out = tuple(np.sort(order[parts == k]).astype(np.int64) for k in range(len(f)))
    empty = [k for k, idx in enumerate(out) if len(idx) == 0]
    if empty:
        raise ValueError(
            f"split_indices: fractions {tuple(float(v) for v in f)} of {n} examples leave part(s) "
            f"{empty} empty; use more data or larger fractions"
        )
    return out


def _check_xy(x, y, fn):
    x = np.asarray(x)
    y = _check_labels(y, fn)
    if x.ndim < 1 or len(x) != len(y):
        raise ValueError(f"{fn}: x and y must have the same length, got x shape {x.shape} and y shape {y.shape}")
    return x, y


def train_val_split(x, y, val_fraction=0.2, seed=0, stratify=True):
    """Split examples into training and validation sets (seeded, stratified by default).

    Parameters
    ----------
    x : array_like, (N, ...)
        Images.
    y : array_like of int, (N,)
        Labels.
    val_fraction : float, default 0.2
        Share of the examples in the validation set, in (0, 1).
    seed : int, numpy.random.Generator or None, default 0
        The same seed gives the same split.
    stratify : bool, default True
        Keep every class's proportion in both sets (see :func:`split_indices`).

    Returns
    -------
    (x_train, y_train), (x_val, y_val) : tuple of tuples of numpy.ndarray
        Disjoint, together all the examples, each in the original order.

    Raises
    ------
    ValueError
        If ``val_fraction`` is not in (0, 1), x and y differ in length, or a
        set would be empty.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import train_val_split
    >>> x, y = np.zeros((100, 1, 4, 4), np.uint8), np.repeat(np.arange(4), 25)
    >>> (x_tr, y_tr), (x_val, y_val) = train_val_split(x, y, val_fraction=0.2, seed=0)
    >>> len(x_tr), len(x_val), np.bincount(y_val).tolist()
    (80, 20, [5, 5, 5, 5])
    """
    x, y = _check_xy(x, y, "train_val_split")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.integer, np.floating)):
        raise TypeError(f"train_val_split: val_fraction must be a number in (0, 1), got {val_fraction!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"train_val_split: val_fraction must be in (0, 1), got {val_fraction}")
    tr, va = split_indices(y, (1.0 - float(val_fraction), float(val_fraction)), seed=seed, stratify=stratify)
    return (x[tr], y[tr]), (x[va], y[va])


def train_val_test_split(x, y, fractions=(0.65, 0.25, 0.10), seed=0, stratify=True):
    """Split examples into training, validation and test sets (seeded, stratified by default).

    Parameters
    ----------
    x : array_like, (N, ...)
        Images.
    y : array_like of int, (N,)
        Labels.
    fractions : (float, float, float), default (0.65, 0.25, 0.10)
        Shares of the training, validation and test sets, each in (0, 1),
        summing to 1.
    seed : int, numpy.random.Generator or None, default 0
        The same seed gives the same split.
    stratify : bool, default True
        Keep every class's proportion in all three sets (see :func:`split_indices`).

    Returns
    -------
    (x_train, y_train), (x_val, y_val), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Disjoint, together all the examples, each in the original order.

    Raises
    ------
    ValueError
        If the fractions are not three numbers in (0, 1) summing to 1, x and
        y differ in length, or a set would be empty.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import train_val_test_split
    >>> x, y = np.zeros((200, 1, 4, 4), np.uint8), np.repeat([0, 1], 100)
    >>> tr, val, te = train_val_test_split(x, y, seed=1)
    >>> len(tr[0]), len(val[0]), len(te[0])
    (130, 50, 20)
    """
    x, y = _check_xy(x, y, "train_val_test_split")
    f = _check_fractions(fractions, "train_val_test_split")
    if len(f) != 3:
        raise ValueError(
            f"train_val_test_split: fractions must be 3 numbers (train, val, test), got {fractions!r}"
        )
    idx = split_indices(y, fractions, seed=seed, stratify=stratify)
    return tuple((x[i], y[i]) for i in idx)


# --------------------------------------------------------------------------- normalisation

_NORMALIZER_MODES = ("scale", "standardize")


def _as_nchw(x, fn):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{fn}: x must be images (N, C, H, W) or (N, H, W), got shape {x.shape}")
    if not (x.dtype == np.uint8 or x.dtype.kind == "f"):
        raise TypeError(f"{fn}: x must be uint8 or floating point, got dtype {x.dtype}")
    return x


def _str_of(value):
    if isinstance(value, np.ndarray):
        value = value[()]
    return str(value)


class Normalizer:
    """Scale or standardise images with statistics fitted on training data only.

    ``mode="scale"``: uint8 images are divided by 255 (to ``[0, 1]``),
    floating-point images keep their values.  ``mode="standardize"``: after
    that scaling, each channel ``c`` becomes ``(x - mean[c]) / std[c]`` with
    the mean and (population) standard deviation over all images and pixels
    seen by :meth:`fit`; a channel with standard deviation 0 gets 1.  The
    output is always float32.

    :meth:`fit` records whether it saw uint8 or float input and the number
    of channels; :meth:`transform` refuses input that differs, since
    statistics of uint8 pixels do not fit float pixels.

    Parameters
    ----------
    mode : {"scale", "standardize"}, default "scale"

    Attributes
    ----------
    mean, std : numpy.ndarray or None
        float64 ``(C,)``, after :meth:`fit` (0 and 1 in ``"scale"`` mode).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import Normalizer
    >>> x_train = np.array([[[[0, 255]]], [[[255, 255]]]], dtype=np.uint8)  # (2, 1, 1, 2)
    >>> norm = Normalizer("standardize").fit(x_train)
    >>> norm.mean.round(4).tolist(), norm.std.round(4).tolist()
    ([0.75], [0.433])
    >>> norm.transform(x_train).dtype
    dtype('float32')
    >>> state = norm.state_dict()          # numpy arrays and strings, np.savez-safe
    >>> Normalizer.from_state_dict(state)
    Normalizer(mode='standardize', mean=[0.75], std=[0.433])
    """

    def __init__(self, mode="scale"):
        if mode not in _NORMALIZER_MODES:
            raise ValueError(f"Normalizer: mode must be one of {_NORMALIZER_MODES}, got {mode!r}")
        self.mode = mode
        self.mean = None
        self.std = None
        self.input_dtype = None

    @property
    def fitted(self):
        """Whether :meth:`fit` (or :meth:`from_state_dict`) has set the statistics."""
        return self.mean is not None

    def fit(self, x):
        """Compute the statistics from training images ``x`` ((N, C, H, W) or (N, H, W), uint8 or float).

        Two passes in float64 over chunks of images, so no float copy of the
        whole set is made.  Returns ``self``.
        """
        x = _as_nchw(x, "Normalizer.fit")
        if len(x) == 0:
            raise ValueError("Normalizer.fit: x holds no images")
        C = x.shape[1]
        self.input_dtype = "uint8" if x.dtype == np.uint8 else "float"
        if self.mode == "scale":
            self.mean = np.zeros(C)
            self.std = np.ones(C)
            return self
        scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
        chunk = max(1, 4_000_000 // max(1, x[0].size))
        count = x.shape[0] * x.shape[2] * x.shape[3]
        total = np.zeros(C)
        for k in range(0, len(x), chunk):
            total += x[k:k + chunk].sum(axis=(0, 2, 3), dtype=np.float64)
        raw_mean = total / count  # in input units: exact for a constant uint8 channel
        sq = np.zeros(C)
        for k in range(0, len(x), chunk):
            d = x[k:k + chunk].astype(np.float64) - raw_mean[None, :, None, None]
            sq += np.einsum("nchw,nchw->c", d, d)
        mean = raw_mean * scale
        std = np.sqrt(sq / count) * scale
        # constant channels (up to float64 rounding of the mean) get std 1
        constant = ~(std > 1e-9 * np.maximum(np.abs(mean), np.finfo(np.float64).tiny))
        std[constant] = 1.0
        self.mean, self.std = mean, std
        return self

    def transform(self, x):
        """Normalise images with the fitted statistics; float32, same shape as ``x``."""
        if not self.fitted:
            raise RuntimeError("Normalizer.transform: call fit(x_train) first (or load a state_dict)")
        arr = np.asarray(x)
        x4 = _as_nchw(arr, "Normalizer.transform")
        kind = "uint8" if x4.dtype == np.uint8 else "float"
        if kind != self.input_dtype:
            raise ValueError(
                f"Normalizer.transform: fitted on {self.input_dtype} images but got {x4.dtype}; "
                "transform data of the same kind as the training data"
            )
        if x4.shape[1] != len(self.mean):
            raise ValueError(
                f"Normalizer.transform: fitted on {len(self.mean)} channel(s) but x has "
                f"{x4.shape[1]} (shape {arr.shape})"
            )
        out = to_float(x4, np.float32)
        if out is x4 or np.shares_memory(out, arr):
            out = out.copy()
        if self.mode == "standardize":
            out -= self.mean.astype(np.float32)[None, :, None, None]
            out /= self.std.astype(np.float32)[None, :, None, None]
        return out.reshape(arr.shape)

    def as_layer(self, dtype=None):
        """This normalisation as a :class:`fastcnn.layers.Normalize` layer, to put first in a model.

        The model then takes raw images (uint8 or float, as ``fit`` saw them) in ``fit``, ``evaluate``
        and ``predict``, and its checkpoints carry the statistics.

        Examples
        --------
        >>> import numpy as np
        >>> import fastcnn
        >>> x = np.random.default_rng(0).integers(0, 256, (8, 1, 28, 28), dtype=np.uint8)
        >>> norm = Normalizer("standardize").fit(x)
        >>> model = fastcnn.Sequential(norm.as_layer(), *fastcnn.models.lenet5().layers, input_shape=(1, 28, 28))
        >>> bool(np.allclose(model.layers[0].forward(x.astype(np.float32)), norm.transform(x), atol=1e-5))
        True
        """
        from .layers import Normalize

        if not self.fitted:
            raise RuntimeError("Normalizer.as_layer: call fit(x_train) first")
        scale = 1.0 / 255.0 if self.input_dtype == "uint8" else 1.0
        return Normalize(len(self.mean), scale=scale, mean=self.mean, std=self.std, dtype=dtype)

    def fit_transform(self, x):
        """:meth:`fit` on ``x`` then :meth:`transform` it."""
        return self.fit(x).transform(x)

    def state_dict(self):
        """The fitted state as numpy arrays and strings only (safe for ``np.savez`` without pickle).

        Returns
        -------
        dict
            ``mode`` and ``input_dtype`` (str), ``mean`` and ``std`` (float64 ``(C,)``).
        """
        if not self.fitted:
            raise RuntimeError("Normalizer.state_dict: call fit(x_train) first")
        return {
            "mode": self.mode,
            "input_dtype": self.input_dtype,
            "mean": self.mean.copy(),
            "std": self.std.copy(),
        }

    @classmethod
    def from_state_dict(cls, state):
        """A fitted :class:`Normalizer` from :meth:`state_dict` output (strings may be 0-d numpy arrays)."""
        missing = [k for k in ("mode", "input_dtype", "mean", "std") if k not in state]
        if missing:
            raise ValueError(f"Normalizer.from_state_dict: missing keys {missing}; got keys {sorted(state)}")
        norm = cls(_str_of(state["mode"]))
        input_dtype = _str_of(state["input_dtype"])
        if input_dtype not in ("uint8", "float"):
            raise ValueError(
                f"Normalizer.from_state_dict: input_dtype must be 'uint8' or 'float', got {input_dtype!r}"
            )
        mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
        std = np.asarray(state["std"], dtype=np.float64).reshape(-1)
        if mean.shape != std.shape or mean.size == 0:
            raise ValueError(
                f"Normalizer.from_state_dict: mean and std must be equal-length 1-D, got {mean.shape} and {std.shape}"
            )
        if not np.all(std > 0):
            raise ValueError("Normalizer.from_state_dict: std must be > 0")
        norm.mean, norm.std, norm.input_dtype = mean, std, input_dtype
        return norm

    def __repr__(self):
        if self.mode == "scale" or not self.fitted:
            return f"Normalizer(mode={self.mode!r})"
        fmt = lambda a: "[" + ", ".join(f"{v:.4g}" for v in a) + "]"  # noqa: E731
        return f"Normalizer(mode={self.mode!r}, mean={fmt(self.mean)}, std={fmt(self.std)})"


# --------------------------------------------------------------------------- batching


def iterate_minibatches(n, batch_size=None, shuffle=True, rng=None):
    """Yield index arrays that cover ``range(n)`` once, in mini-batches.

    Parameters
    ----------
    n : int
        Number of examples, >= 1.
    batch_size : int or None
        Examples per batch; the last batch holds the rest.  ``None`` or a
        value >= ``n`` gives one full batch (full-batch gradient descent),
        1 gives one example at a time.
    shuffle : bool, default True
        Visit the examples in a random order (a fresh one each call).
    rng : numpy.random.Generator, int or None
        Source of the order when shuffling.

    Yields
    ------
    numpy.ndarray
        int64 indices of one batch.

    Examples
    --------
    >>> from fastcnn.data import iterate_minibatches
    >>> [b.tolist() for b in iterate_minibatches(5, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    >>> [len(b) for b in iterate_minibatches(5, None, shuffle=True, rng=0)]
    [5]
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"iterate_minibatches: n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"iterate_minibatches: n must be >= 1, got {n}")
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(
                f"iterate_minibatches: batch_size must be an int or None, got {type(batch_size).__name__}"
            )
        if batch_size < 1:
            raise ValueError(f"iterate_minibatches: batch_size must be >= 1 or None, got {batch_size}")
    if shuffle:
        if not (rng is None or isinstance(rng, np.random.Generator)
                or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool))):
            raise TypeError(
                f"iterate_minibatches: rng must be a numpy.random.Generator, an int seed or None, "
                f"got {type(rng).__name__}"
            )
        order = np.random.default_rng(rng).permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    size = n if batch_size is None else min(int(batch_size), n)
    for start in range(0, n, size):
        yield order[start:start + size]


# --------------------------------------------------------------------------- CIFAR-10

#: CIFAR-10 label names, indexed by label (``batches.meta.txt`` of the binary release).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 1024 red, 1024 green, 1024 blue bytes (rows in order)
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch.bin"


def _read_cifar_batch(path):
    """Images uint8 ``(n, 3, 32, 32)`` and labels int64 ``(n,)`` of one CIFAR-10 ``.bin`` file."""
    raw = _read_bytes(path)
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise ValueError(
            f"load_cifar10: {path} has {len(raw)} bytes, not a whole number of {_CIFAR_RECORD}-byte records "
            f"(1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 binary batch "
            f"(a full batch is 10000 records, {10000 * _CIFAR_RECORD} bytes)"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)  # (n, 3073)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"load_cifar10: {path} record {bad} has label {labels[bad]}, not in 0..9; "
                         "not a CIFAR-10 file (CIFAR-100's binary files have two label bytes)")
    images = np.ascontiguousarray(records[:, 1:].reshape(-1, 3, 32, 32))  # (n, 3, 32, 32)
    return images, labels


def load_cifar10(path):
    """Load CIFAR-10 from the binary release's ``cifar-10-batches-bin`` folder.

    CIFAR-10 (Krizhevsky, 2009) is 60,000 32x32 colour images in 10 classes
    (:data:`CIFAR10_CLASSES`).  The binary version holds ``data_batch_1.bin``
    ... ``data_batch_5.bin`` (training, 10,000 images each) and
    ``test_batch.bin``; each file is a run of 3073-byte records: one label
    byte (0-9), then the 1024 red, 1024 green and 1024 blue values of the
    image, rows top to bottom, which is exactly the channel-first layout.
    Files may be gzip-compressed (a ``.gz`` name is tried too).  Batches with
    fewer records than 10,000 are accepted (any whole number of records).

    Parameters
    ----------
    path : str or os.PathLike
        The ``cifar-10-batches-bin`` folder, or a folder that contains it
        (as ``cifar-10-binary.tar.gz`` unpacks).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Images as uint8 ``(N, 3, 32, 32)`` (50,000 and 10,000 for the full
        set), labels as int64 ``(N,)``.  Scale with :func:`to_float`.

    Raises
    ------
    FileNotFoundError
        If the folder or one of the six batch files is missing.
    ValueError
        If a file's size is not a whole number of records (truncated) or a
        label is not in 0..9.

    Examples
    --------
    ::

        from fastcnn.data import load_cifar10, to_float, CIFAR10_CLASSES
        (x_train, y_train), (x_test, y_test) = load_cifar10("~/data/cifar-10-batches-bin")
        x_train.shape, CIFAR10_CLASSES[y_train[0]]   # ((50000, 3, 32, 32), 'frog')
        x_train = to_float(x_train)
    """
    if path is None:
        raise TypeError("load_cifar10: path must be the cifar-10-batches-bin folder, got None")
    folder = Path(os.path.expanduser(os.fspath(path)))
    if not folder.is_dir():
        raise FileNotFoundError(
            f"load_cifar10: {folder} is not a directory; pass the cifar-10-batches-bin folder of the binary "
            "release (https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, unpacked)"
        )
    if not (folder / _CIFAR_TEST_FILE).exists() and (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"

    def find(name):
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
        return None

    names = _CIFAR_TRAIN_FILES + (_CIFAR_TEST_FILE,)
    found = {name: find(name) for name in names}
    missing = [name for name, p in found.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"load_cifar10: {folder} lacks {', '.join(missing)}; expected data_batch_1.bin .. data_batch_5.bin "
            "and test_batch.bin (the binary release, not the Python pickles of cifar-10-batches-py)"
        )
    train = [_read_cifar_batch(found[name]) for name in _CIFAR_TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    x_test, y_test = _read_cifar_batch(found[_CIFAR_TEST_FILE])
    return (x_train, y_train), (x_test, y_test)
