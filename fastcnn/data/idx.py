"""The IDX file format (MNIST, Fashion-MNIST, EMNIST, ...): :func:`read_idx`.

An IDX file is a small header followed by a dense big-endian array:

* 4 bytes of magic: ``0x00 0x00 <type code> <ndim>``;
* ``ndim`` big-endian unsigned 32-bit sizes;
* the ``prod(sizes)`` elements in C order.

Files may be gzip-compressed (detected from a ``.gz`` suffix or the gzip magic
bytes): :func:`read_bytes` undoes that, for the CIFAR-10 reader too.
"""

from pathlib import Path

import numpy as np

from .files import check_path, read_exact, read_limited

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

def read_bytes(path, limit=None):
    """The contents of a file, decompressed when it is gzip, at most ``limit`` bytes.

    Parameters
    ----------
    path : str or os.PathLike
        A regular file; gunzipped when its name ends in ``.gz`` or it starts
        with the gzip magic bytes ``1f 8b``, piece by piece, refused as soon
        as more than ``limit`` bytes come out (a small bomb is not inflated).
    limit : int, optional
        Default :data:`fastcnn.data.files.MAX_ARRAY_BYTES`.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        If the file is not a regular file, holds more than ``limit`` bytes,
        or should be gzip but is truncated or corrupt.
    """
    return read_limited(path, limit, "data file")


def _parse_idx_header(path):
    """``parse_header(read)`` for :func:`read_exact`: checks the magic and keeps the shape and dtype."""
    found = {}

    def parse(read):
        magic = read(4)
        if len(magic) < 4:
            raise ValueError(f"{path}: not an IDX file: expected at least a 4-byte header, got {len(magic)} bytes")
        if magic[0] != 0 or magic[1] != 0:
            raise ValueError(f"{path}: not an IDX file: magic number must start with bytes 00 00, "
                             f"got {magic.hex(' ')}")
        code, ndim = magic[2], magic[3]
        if code not in _IDX_DTYPES:
            known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
            raise ValueError(f"{path}: unsupported IDX type code 0x{code:02X} (expected one of {known})")
        sizes = read(4 * ndim)
        if len(sizes) < 4 * ndim:
            raise ValueError(f"{path}: truncated IDX header: {ndim} dimensions need {4 + 4 * ndim} bytes, "
                             f"file has {4 + len(sizes)}")
        found["shape"] = tuple(int.from_bytes(sizes[4 * i: 4 * i + 4], "big") for i in range(ndim))
        found["dtype"] = _IDX_DTYPES[code]
        count = 1
        for n in found["shape"]:
            count *= n
        return count * found["dtype"].itemsize

    return parse, found


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
        If the file is not a regular file (a FIFO, a device, a directory), not
        an IDX file (wrong magic number or unknown type code), or its size does
        not match its header (truncated or with trailing bytes), or it is a
        corrupt gzip file.  The declared size is checked before anything is
        allocated, and a gzip file is inflated only as far as its header says
        (plus one byte): a small file that inflates to gigabytes is refused
        after reading little.

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
    path = Path(check_path(path, "read_idx"))
    parse, found = _parse_idx_header(path)
    _, data = read_exact(path, parse, "IDX file")
    shape, dtype = found["shape"], found["dtype"]
    arr = np.frombuffer(data, dtype=dtype, count=len(data) // dtype.itemsize)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))
