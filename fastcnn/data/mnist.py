"""MNIST and Fashion-MNIST from folders of IDX files, and the MNIST sample packaged with fastcnn.

:func:`load_mnist` and :func:`load_fashion_mnist` read the four standard
files (``train-images-idx3-ubyte``, ... each optionally ``.gz``) with
:func:`fastcnn.data.read_idx`; :func:`load_sample` reads
``fastcnn/sample_data/mnist_sample.npz`` (package data).  All three return
uint8 images ``(N, 1, 28, 28)`` and int64 labels ``(N,)``.
"""

import os
from pathlib import Path

import numpy as np

from .idx import read_idx

__all__ = ["load_mnist", "load_fashion_mnist", "load_sample", "FASHION_MNIST_CLASSES"]

# Each MNIST split: (kind, candidate file stems).  The official names use a
# dash before "idx"; some mirrors use a dot.  Every stem is also tried with .gz.
_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

_SAMPLE_FILE = "mnist_sample.npz"
_NUM_CLASSES = 10  # MNIST's and Fashion-MNIST's labels are 0-9
_SAMPLE_KEYS = ("x_train", "y_train", "x_test", "y_test")


#: Fashion-MNIST's label names, by label.
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def _find_mnist_file(directory, stems):
    """The first candidate name that is a regular file, else the first that is there at all (a FIFO, a folder,
    a broken link: :func:`read_idx` then says why it is refused), else None."""
    candidates = [directory / name for stem in stems for name in (stem, stem + ".gz")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return next((c for c in candidates if os.path.lexists(c)), None)


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
    if min(images.shape[1:]) < 1:
        raise ValueError(f"{paths[0]}: expected {split} images of at least 1x1 pixels, got shape {images.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{paths[1]}: expected integer {split} labels, got {labels.dtype}")
    if len(labels) and not 0 <= labels.min() <= labels.max() <= _NUM_CLASSES - 1:
        raise ValueError(f"{paths[1]}: expected {split} labels 0-{_NUM_CLASSES - 1}, found values from "
                         f"{labels.min()} to {labels.max()}")


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
        If a file is corrupt or is not a regular file (a FIFO, a folder), or
        the files do not fit together: images that are not uint8 (N, H, W),
        labels that are not integers 0-9, counts or image sizes that differ.

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
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError(f"{dataset}: the training images ({found['train_images']}) are "
                         f"{'x'.join(map(str, arrays['train_images'].shape[1:]))}, the test images "
                         f"({found['test_images']}) {'x'.join(map(str, arrays['test_images'].shape[1:]))}")
    return _format(
        arrays["train_images"], arrays["train_labels"],
        arrays["test_images"], arrays["test_labels"],
    )


def _sample_path():
    """``fastcnn/sample_data/mnist_sample.npz``: package data beside this subpackage."""
    return Path(__file__).resolve().parents[1] / "sample_data" / _SAMPLE_FILE


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
