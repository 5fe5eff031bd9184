"""Images and labels from a ``.npz`` archive, read without pickle: :func:`load_npz`."""

from pathlib import Path

import numpy as np

from .files import NpzReader, check_path, check_regular_file

__all__ = ["load_npz"]


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
        If the file is not a regular file or not a readable ``.npz``, needs
        pickle (object arrays), declares arrays larger than its members hold,
        lacks a key (the message lists the keys it has), the images are not
        3-D or 4-D numeric arrays with every size but N at least 1 and finite
        values, or the labels are not 1-D non-negative integers (that fit
        int64) as many as the images.  Images come back in native byte order.

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
    path = Path(check_path(path, "load_npz")).expanduser()
    x, y = _read_npz(path, x_key, y_key)
    return _check_images_and_labels(path, x, y, x_key, y_key)


def _read_npz(path, x_key, y_key):
    """The arrays ``x_key`` and ``y_key`` of the ``.npz`` file ``path``, with :func:`load_npz`'s messages.

    Only those two members are read, each size checked before reading (:class:`~fastcnn.data.files.NpzReader`).
    """
    size = check_regular_file(path, "load_npz: .npz file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise ValueError(f"load_npz: {path} holds a single array (.npy), expected a .npz archive")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ValueError(f"load_npz: cannot read {path} as .npz: not a .npz (zip) archive "
                         f"({size} bytes starting {magic!r})")
    try:
        with NpzReader(path, ".npz file") as npz:
            missing = [k for k in (x_key, y_key) if k not in npz]
            if missing:
                raise ValueError(
                    f"load_npz: {path} has no array named {', '.join(map(repr, missing))}; "
                    f"it holds {npz.names}; pass x_key=/y_key= to choose"
                )
            return npz.read(x_key), npz.read(y_key)
    except ValueError as exc:
        if str(exc).startswith("load_npz:"):
            raise
        raise ValueError(f"load_npz: cannot read {path} as .npz: {exc}") from None


def _check_images_and_labels(path, x, y, x_key, y_key):
    """Images to ``(N, C, H, W)`` (a channel axis added to ``(N, H, W)``), labels to int64, checked."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(
            f"load_npz: {path}: {x_key!r} must be images (N, C, H, W) or (N, H, W), got shape {x.shape}"
        )
    if x.dtype.kind not in "uif":
        raise ValueError(f"load_npz: {path}: {x_key!r} must be numeric images, got dtype {x.dtype}")
    if min(x.shape[1:]) < 1:
        raise ValueError(f"load_npz: {path}: {x_key!r} has an empty image size, shape {x.shape}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"load_npz: {path}: {x_key!r} holds NaN or infinite values")
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
    if len(y) and y.dtype == np.uint64 and y.max() > np.iinfo(np.int64).max:
        raise ValueError(f"load_npz: {path}: labels must fit int64, found {y.max()}")
    return np.ascontiguousarray(x), y.astype(np.int64)
