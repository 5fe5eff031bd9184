"""Reading files that may be hostile: regular files only, every declared size checked before use.

Used by the data loaders, the checkpoint reader (:mod:`fastcnn.serialize`) and the command line.
The rules, each a function here:

* :func:`check_regular_file` refuses, before opening, anything that is not a regular file (a FIFO
  would block forever, ``/dev/zero`` never ends, a directory is no file); :func:`open_regular`
  opens without blocking and checks again on the open descriptor.
* :func:`read_limited` returns a file's bytes, gunzipped when it is gzip, stopping with an error
  as soon as more than ``limit`` bytes come out: a small ``.gz`` that inflates to gigabytes is
  refused after reading ``limit`` bytes.  :func:`read_exact` reads a header, then exactly the size
  that header declares, then checks that nothing follows.
* :func:`read_npy` and :class:`NpzReader` read a ``.npy`` header first (never pickle) and check its
  shape times item size against the bytes the file (or the zip member) really holds and against a
  limit, before allocating; a ``.npz`` member's declared uncompressed size is checked against what
  deflate can produce from its compressed size, and only the members asked for are read.
* :func:`loads_json` refuses JSON nested deeper than a limit (``json.loads`` would raise
  RecursionError) before parsing it.

Every refusal is a ValueError naming the file (FileNotFoundError for a missing one, TypeError for a
path that is not a path).
"""

import gzip
import json
import os
import re
import stat
import tokenize
import zipfile
import zlib

import numpy as np

__all__ = ["MAX_ARRAY_BYTES", "MAX_JSON_DEPTH", "MAX_DEFLATE_RATIO", "check_path", "check_regular_file", "open_regular",
           "is_gzip", "read_limited", "read_exact", "read_npy", "NpzReader", "loads_json", "require",
           "short_repr", "check_json_numbers"]

#: The largest array any reader allocates for one file or member (16 GiB).
MAX_ARRAY_BYTES = 1 << 34
#: JSON deeper than this is refused (checkpoints nest about 6 levels).
MAX_JSON_DEPTH = 64
#: Deflate never inflates more than 1032:1; a member declaring more than this times its compressed
#: size (plus a little) lies.
MAX_DEFLATE_RATIO = 1032

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_NPY_DTYPE_KINDS = "biufU"  # bool, integers, floats, unicode: nothing that needs pickle
_KINDS = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISCHR: "a character device",
          stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


# --------------------------------------------------------------------------- regular files


def _limit(limit):
    """``limit``, or :data:`MAX_ARRAY_BYTES` as it is now when None (a test may lower it)."""
    return MAX_ARRAY_BYTES if limit is None else limit


def check_path(path, owner):
    """``os.fspath(path)``; TypeError ``"{owner}: path must be a str or os.PathLike, got {type}"`` otherwise."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{owner}: path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def _not_regular(mode):
    for test, kind in _KINDS.items():
        if test(mode):
            return kind
    return "not a regular file"


def check_regular_file(path, what):
    """The size in bytes of ``path``, after checking that it is a regular file; nothing is opened.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        Names the file in messages (``"checkpoint"``, ``"IDX file"``, ...).

    Raises
    ------
    TypeError
        If ``path`` is not a str or path.
    FileNotFoundError
        If nothing is at ``path``.
    ValueError
        If ``path`` is a directory, FIFO, device or socket.
    """
    path = check_path(path, what)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: {_not_regular(st.st_mode)}, not a regular file; a {what} must be a regular file")
    return st.st_size


def open_regular(path, what):
    """``(binary file object, size)`` of the regular file ``path``; see :func:`check_regular_file`.

    The file is opened with ``O_NONBLOCK`` (a FIFO swapped in after the check cannot block) and
    checked again on the open descriptor.
    """
    check_regular_file(path, what)
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: {_not_regular(st.st_mode)}, not a regular file; a {what} must be a "
                             "regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


# --------------------------------------------------------------------------- raw and gzip bytes


def is_gzip(path, head):
    """True when ``path`` is to be gunzipped: its name ends in ``.gz`` or ``head`` starts with ``1f 8b``."""
    return os.fspath(path).endswith(".gz") or head[:2] == _GZIP_MAGIC


def _gzip_error(path, exc):
    return ValueError(f"{path}: not a valid gzip file (truncated or corrupt): {exc}")


def _open_stream(path, what):
    """``(stream, size, gz)``: the file, wrapped in a GzipFile when it is gzip."""
    f, size = open_regular(path, what)
    head = f.peek(2)[:2] if hasattr(f, "peek") else b""
    gz = is_gzip(path, head)
    return (gzip.GzipFile(fileobj=f, mode="rb") if gz else f), f, size, gz


def _read_up_to(stream, n):
    """Up to ``n`` bytes of ``stream`` (fewer only at its end), read in chunks: memory follows what comes."""
    buf = bytearray()
    while len(buf) < n:
        piece = stream.read(min(_CHUNK, n - len(buf)))
        if not piece:
            break
        buf += piece
    return buf


def read_limited(path, limit, what):
    """The bytes of ``path``, gunzipped when it is gzip (see :func:`is_gzip`), at most ``limit`` of them.

    A gzip file is inflated piece by piece and refused as soon as more than ``limit`` bytes come out.

    Raises
    ------
    ValueError
        If there are more than ``limit`` bytes, or the gzip stream is truncated or corrupt; also
        see :func:`check_regular_file`.
    """
    limit = _limit(limit)
    stream, raw, size, gz = _open_stream(path, what)
    with raw, stream:
        if not gz and size > limit:
            raise ValueError(f"{path}: {size} bytes, more than a {what} may hold ({limit})")
        try:
            data = _read_up_to(stream, min(limit, size * MAX_DEFLATE_RATIO + 1024 if gz else size) + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise _gzip_error(path, exc) from None
    if len(data) > limit:
        raise ValueError(f"{path}: inflates to more than {limit} bytes, more than a {what} may hold")
    return bytes(data)


def read_exact(path, parse_header, what, limit=None):
    """``(header bytes, data bytes)``: a header, then exactly the data size it declares, nothing after.

    Parameters
    ----------
    path : str or os.PathLike
        Gunzipped when it is gzip.
    parse_header : callable
        ``parse_header(read)`` reads the header with ``read(n)`` (``n`` bytes or fewer at the end)
        and returns the number of data bytes it declares (raising ValueError for a bad header).
    what : str
        Names the file kind in messages.
    limit : int, optional
        The most data bytes accepted; default :data:`MAX_ARRAY_BYTES` (its value at the call).

    Raises
    ------
    ValueError
        If the declared size is over ``limit`` or over what the file can hold (its size, or
        :data:`MAX_DEFLATE_RATIO` times it when gzip), the data is shorter (``truncated``) or
        followed by more bytes (``trailing bytes``), or the gzip stream is corrupt.
    """
    limit = _limit(limit)
    stream, raw, size, gz = _open_stream(path, what)
    with raw, stream:
        try:
            header = bytearray()

            def read(n):
                piece = bytes(_read_up_to(stream, n))
                header.extend(piece)
                return piece

            declared = parse_header(read)
            room = size * MAX_DEFLATE_RATIO + 1024 if gz else size - len(header)
            if declared > min(limit, room):
                raise ValueError(f"{path}: the {what} header declares {declared} bytes of data, more than "
                                 f"{'the file can hold' if declared <= limit else 'the limit'} "
                                 f"({min(limit, room)} bytes); the file is truncated or corrupt")
            data = _read_up_to(stream, declared + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise _gzip_error(path, exc) from None
    if len(data) != declared:
        state = "truncated" if len(data) < declared else "has trailing bytes"
        raise ValueError(f"{path}: {what} {state}: its header declares {declared} bytes of data, "
                         f"found {'only ' + str(len(data)) if len(data) < declared else 'more'}")
    return bytes(header), data


# --------------------------------------------------------------------------- .npy


def _npy_header(f, where, what):
    """``(shape, fortran_order, dtype)`` of the ``.npy`` stream ``f`` at its start; never pickle."""
    try:
        version = np.lib.format.read_magic(f)
    except ValueError:
        raise ValueError(f"{where}: not a .npy file (no NUMPY magic bytes); a {what} must be a .npy array") from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, TypeError, EOFError, OSError, tokenize.TokenError, RecursionError) as exc:
        raise ValueError(f"{where}: corrupt .npy header: {exc}") from None  # TokenError: unbalanced brackets
    if dtype.hasobject or dtype.kind not in _NPY_DTYPE_KINDS or dtype.fields is not None:
        raise ValueError(f"{where}: holds a {dtype} array; only bool, integer, floating-point and unicode arrays "
                         "are read (object arrays would need pickle, which is never loaded)")
    return tuple(shape), fortran, dtype


def _npy_nbytes(shape, dtype):
    n = dtype.itemsize
    for d in shape:
        n *= int(d)
    return n


def _npy_data(f, shape, fortran, dtype, room, limit, where):
    """The array whose data follows in ``f``: ``room`` bytes are there; ValueError unless exactly all of them.

    The array comes back in native byte order (a big-endian file's data is converted).
    """
    limit = _limit(limit)
    nbytes = _npy_nbytes(shape, dtype)
    if nbytes != room or nbytes > limit:
        why = f"holds {room}" if nbytes != room else f"the limit is {limit}"
        raise ValueError(f"{where}: its header declares a {dtype}{list(shape)} array ({nbytes} bytes) but {why} "
                         "bytes; the file is truncated or corrupt")
    data = _read_up_to(f, nbytes)
    if len(data) != nbytes:
        raise ValueError(f"{where}: truncated: {len(data)} of {nbytes} data bytes")
    arr = np.frombuffer(data, dtype=dtype) if nbytes else np.empty(0, dtype)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def read_npy(path, what, limit=None):
    """The array in the ``.npy`` file ``path``: header read first, its size checked against the file's.

    The array comes back in native byte order.

    Raises
    ------
    ValueError
        If the file is no ``.npy`` (``"not a .npy file"``), holds object or structured data, or its
        header declares more or fewer bytes than the file holds or than ``limit``.
    """
    f, size = open_regular(path, what)
    with f:
        shape, fortran, dtype = _npy_header(f, path, what)
        return _npy_data(f, shape, fortran, dtype, size - f.tell(), limit, path)


class NpzReader:
    """A ``.npz`` (zip) archive whose members are read one by one, each size checked before reading.

    Parameters
    ----------
    path : str or os.PathLike
        A regular file (see :func:`check_regular_file`).
    what : str
        Names the file kind in messages.

    Attributes
    ----------
    names : list of str
        The array names (member names without ``.npy``), in the archive's order.
    size : int
        The file's size in bytes.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npz")
    >>> np.savez(path, x=np.arange(3))
    >>> with NpzReader(path, "archive") as npz:
    ...     npz.names, npz.read("x").tolist()
    (['x'], [0, 1, 2])
    """

    def __init__(self, path, what):
        self.path, self.what = os.fspath(path), what
        self._file, self.size = open_regular(path, what)
        try:
            self._zip = zipfile.ZipFile(self._file)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            self._file.close()
            raise ValueError(f"{self.path}: not a .npz (zip) archive, or truncated ({exc})") from None
        self._members = {}
        for info in self._zip.infolist():
            if info.filename.endswith(".npy") and not info.is_dir():
                self._members.setdefault(info.filename[:-4], info)
        self.names = list(self._members)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._zip.close()
        self._file.close()

    def __contains__(self, name):
        return name in self._members

    def _open(self, name):
        info = self._members.get(name)
        if info is None:
            raise ValueError(f"{self.path}: no array {name!r}")
        where = f"{self.path}: {name}"
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ValueError(f"{where}: compression method {info.compress_type} is not read (stored or deflate only)")
        bound = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED else MAX_DEFLATE_RATIO) + 1024
        if info.compress_size > self.size or info.file_size > bound:
            raise ValueError(f"{where}: declares {info.file_size} bytes from {info.compress_size} compressed in a "
                             f"{self.size}-byte file; the archive is corrupt")
        try:
            return info, where, self._zip.open(info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise ValueError(f"{where}: unreadable member ({exc})") from None

    def header(self, name):
        """``(shape, dtype)`` of member ``name``, from its ``.npy`` header alone (no data is read)."""
        info, where, f = self._open(name)
        with f:
            try:
                shape, _, dtype = _npy_header(f, where, "member")
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                raise ValueError(f"{where}: corrupt member ({exc})") from None
        return shape, dtype

    def read(self, name, limit=None, shape=None, dtype=None):
        """Array ``name`` (native byte order); with ``shape``/``dtype``, ValueError before any data is read unless
        they match."""
        info, where, f = self._open(name)
        with f:
            try:
                got_shape, fortran, got_dtype = _npy_header(f, where, "member")
                if (shape is not None and got_shape != tuple(shape)) or (dtype is not None and got_dtype != dtype):
                    raise ValueError(f"{where} is {got_dtype}{list(got_shape)}, expected "
                                     f"{dtype or got_dtype}{list(shape if shape is not None else got_shape)}")
                arr = _npy_data(f, got_shape, fortran, got_dtype, info.file_size - f.tell(), limit, where)
                f.read(1)  # reach the member's end, where zipfile checks its CRC
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                raise ValueError(f"{where}: corrupt member ({exc})") from None
        return arr


# --------------------------------------------------------------------------- JSON

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def loads_json(text, what, max_depth=MAX_JSON_DEPTH):
    """``json.loads(text)``, refusing text nested deeper than ``max_depth`` before parsing it.

    Raises
    ------
    ValueError
        If ``text`` is not JSON, or nests lists and objects more than ``max_depth`` deep.
    """
    bare = _JSON_STRING.sub("", text)
    codes = np.frombuffer(bare.encode("utf-8", "replace"), dtype=np.uint8)
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
             - np.isin(codes, (ord("]"), ord("}"))).astype(np.int64))
    depth = int(np.cumsum(steps).max()) if len(steps) else 0
    if depth > max_depth:
        raise ValueError(f"{what}: JSON nested {depth} deep, more than {max_depth}; corrupt or hostile")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{what}: not valid JSON ({exc})") from None



def short_repr(value, width=60):
    """``repr(value)``, cut to ``width`` characters with ``...``."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def require(ok, where, expected, got):
    """ValueError ``"{where} must be {expected}, got {short_repr(got)}"`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{where} must be {expected}, got {short_repr(got)}")


def check_json_numbers(value, where, max_abs_int):
    """ValueError naming the place unless every float in the parsed JSON ``value`` is finite and every int
    within ``+-max_abs_int``; walks without recursion."""
    stack = [(value, where)]
    while stack:
        v, w = stack.pop()
        if isinstance(v, dict):
            stack.extend((x, f"{w}.{k}") for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, f"{w}[{i}]") for i, x in enumerate(v))
        elif isinstance(v, float):
            require(v == v and abs(v) != float("inf"), w, "a finite number", v)
        elif isinstance(v, int) and not isinstance(v, bool):
            require(abs(v) <= max_abs_int, w, f"an int within +-{max_abs_int}", v)
