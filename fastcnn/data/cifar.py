"""CIFAR-10 from the binary release's ``cifar-10-batches-bin`` folder: :func:`load_cifar10`."""

import os
from pathlib import Path

import numpy as np

from .idx import read_bytes

__all__ = ["load_cifar10", "CIFAR10_CLASSES"]

#: CIFAR-10 label names, indexed by label (``batches.meta.txt`` of the binary release).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 1024 red, 1024 green, 1024 blue bytes (rows in order)
_CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch.bin"
_CIFAR_MAX_RECORDS = 60000  # the whole data set: a batch file holding more is no CIFAR-10 file


def _read_cifar_batch(path):
    """Images uint8 ``(n, 3, 32, 32)`` and labels int64 ``(n,)`` of one CIFAR-10 ``.bin`` file."""
    try:
        raw = read_bytes(path, limit=_CIFAR_MAX_RECORDS * _CIFAR_RECORD)
    except ValueError as exc:
        raise ValueError(f"load_cifar10: {exc} (a CIFAR-10 batch holds at most {_CIFAR_MAX_RECORDS} "
                         f"{_CIFAR_RECORD}-byte records)") from None
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


def _find_batch(folder, name):
    """``folder/name`` or ``folder/name.gz``, whichever is a regular file, else whichever is there at all (a FIFO,
    a folder: the reader then says why it is refused), else None."""
    candidates = (folder / name, folder / (name + ".gz"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return next((c for c in candidates if os.path.lexists(c)), None)


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
        If a file is not a regular file, its size is not a whole number of
        records (truncated), it holds (or, gzipped, inflates to) more than
        60,000 records, or a label is not in 0..9.

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
    names = _CIFAR_TRAIN_FILES + (_CIFAR_TEST_FILE,)
    found = {name: _find_batch(folder, name) for name in names}
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
