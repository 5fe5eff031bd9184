"""The IDX file format (MNIST, Fashion-MNIST, EMNIST, ...): :func:`read_idx`.

An IDX file is a small header followed by a dense big-endian array:

* 4 bytes of magic: ``0x00 0x00 <type code> <ndim>``;
* ``ndim`` big-endian unsigned 32-bit sizes;
* the ``prod(sizes)`` elements in C order.

Files may be gzip-compressed (detected from a ``.gz`` suffix or the gzip magic
bytes): :func:`read_bytes` undoes that, for the CIFAR-10 reader too.
"""

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "read_bytes"]

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


def read_bytes(path):
    """The contents of a file, decompressed when it is gzip.

    Parameters
    ----------
    path : pathlib.Path
        The file; gunzipped when its name ends in ``.gz`` or it starts with
        the gzip magic bytes ``1f 8b``.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        If the file should be gzip but is truncated or corrupt.
    """
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
    data = read_bytes(path)

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
