"""Small utilities shared across fastcnn: atomic file writes, JSON conversion, the matplotlib check,
scalar argument checks.

This module imports nothing from fastcnn, so every tier may use it.

Atomic writes
    :func:`atomic_write` fills a temporary file ``.fastcnn-<random>.tmp`` in
    the target's folder, flushes and fsyncs it, and moves it onto the target
    with ``os.replace``: a reader sees the old file or the complete new one,
    never half a file.  On any error (``KeyboardInterrupt`` included) the
    temporary file is removed and the old file is left as it was.  The new
    file gets the mode an ordinary ``open(path, "w")`` would give it,
    ``0o666 & ~umask`` (``0644`` with the usual umask ``022``).  A process
    killed outright (``SIGKILL``, power loss) may leave a temporary file
    behind; the next successful write to that folder removes those older than
    an hour (:func:`clean_stale_temps`).

Validators
    ``check_*(value, name, owner)`` return the value as a plain Python
    ``int`` or ``float``, or raise with a message
    ``"{owner}: {name} must be ..., got {value!r}"``.  A value of the wrong
    type (a string, a bool, a float where an int is expected) raises
    :class:`ArgumentTypeError`, which is both a ``TypeError`` and a
    ``ValueError``; a value of the right type out of range raises
    ``ValueError``.

Examples
--------
>>> import os, tempfile
>>> from fastcnn._util import atomic_write_json, check_positive_int
>>> path = os.path.join(tempfile.mkdtemp(), "result.json")
>>> atomic_write_json(path, {"shape": (2, 3)}) == path
True
>>> open(path).read()
'{\\n  "shape": [\\n    2,\\n    3\\n  ]\\n}\\n'
>>> check_positive_int(3, "epochs", "fit")
3
>>> check_positive_int(0, "epochs", "fit")
Traceback (most recent call last):
...
ValueError: fit: epochs must be a positive int, got 0
"""

import errno
import glob
import json
import math
import numbers
import os
import re
import secrets
import time

import numpy as np

__all__ = [
    "TEMP_PREFIX", "TEMP_SUFFIX", "atomic_write", "atomic_write_text", "atomic_write_json", "clean_stale_temps",
    "to_jsonable", "require_matplotlib", "ArgumentTypeError", "check_int", "check_positive_int",
    "check_nonnegative_int", "check_positive_float", "check_nonnegative_float", "check_fraction",
    "check_probability",
]

#: Temporary files of :func:`atomic_write` are named ``TEMP_PREFIX + <16 hex digits> + TEMP_SUFFIX``.
TEMP_PREFIX = ".fastcnn-"
TEMP_SUFFIX = ".tmp"


# --------------------------------------------------------------------------- atomic writes


def _create_temp(folder):
    """Create and open a new empty temporary file in ``folder``; return (fd, path).

    ``os.open`` with mode ``0o666`` lets the kernel apply the process umask, so the
    file ends up with the mode an ordinary ``open(path, "w")`` gives (``tempfile``
    would make it ``0600``).  ``O_EXCL`` never reuses an existing file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        path = os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {folder}")  # pragma: no cover


def _fsync_folder(folder):
    """Make a rename in ``folder`` durable, where the platform allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, binary=True):
    """Write a file atomically: fill a temporary file, then move it onto ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its folder must exist.  An existing file is replaced.
    write : callable
        ``write(f)`` writes the whole content to the open file object ``f``
        (its return value is ignored).
    binary : bool, default True
        Open ``f`` in binary mode; ``False`` opens it in text mode, UTF-8.

    Returns
    -------
    str
        ``path`` (as a string).

    Raises
    ------
    OSError
        If the folder does not exist or cannot be written; ``path`` is unchanged.
        A full disk (or quota) gives ``OSError(errno.ENOSPC, "no space left on
        device writing PATH")``, whatever the writer reported (numpy says
        ``"3000 requested and 496 written"``).
    Exception
        Whatever ``write`` raises (``KeyboardInterrupt`` included), after
        removing the temporary file; ``path`` is unchanged.

    Notes
    -----
    The temporary file ``.fastcnn-<random>.tmp`` lies in the target's folder
    (so ``os.replace`` is a rename within one file system); it is flushed and
    fsynced before the rename, and the folder is fsynced after it where the
    platform allows.  The final file's mode is ``0o666 & ~umask``.  After a
    successful write, temporary files of killed writers older than an hour are
    removed from the folder (:func:`clean_stale_temps`).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.bin")
    >>> atomic_write(path, lambda f: f.write(b"abc")) == path
    True
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = _create_temp(folder)
    except OSError as exc:
        raise _disk_full(exc, path) from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _disk_full(exc, path) from None
        raise
    _fsync_folder(folder)
    clean_stale_temps(folder)
    return path


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")  # numpy's tofile on a full disk


def _disk_full(exc, path):
    """``exc``, or ``OSError(ENOSPC, "no space left on device writing PATH")`` when it says the disk is full."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) \
            or _SHORT_WRITE.search(str(exc)):
        return OSError(errno.ENOSPC, f"no space left on device writing {path}")
    return exc


def atomic_write_text(path, text):
    """Write the string ``text`` to ``path`` atomically, UTF-8; return ``path``.  See :func:`atomic_write`."""
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text: text must be a str, got {type(text).__name__}")
    return atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_write_json(path, obj):
    """Write ``obj`` as indented JSON (2 spaces, trailing newline) to ``path`` atomically; return ``path``.

    ``obj`` goes through :func:`to_jsonable` first: numpy scalars and arrays,
    tuples, sets and paths become plain JSON values, and NaN and infinities
    become ``null`` so that any JSON reader can read the file.
    """
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def clean_stale_temps(folder, older_than_s=3600.0):
    """Remove :func:`atomic_write`'s temporary files in ``folder`` last modified over ``older_than_s`` ago.

    Such files are left only by a process killed in the middle of a write.
    Younger ones may belong to a write in progress and are kept.

    Returns
    -------
    list of str
        The paths removed.
    """
    now = time.time()
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(os.fspath(folder)), f"{TEMP_PREFIX}*{TEMP_SUFFIX}")):
        try:
            if now - os.lstat(tmp).st_mtime > older_than_s:
                os.unlink(tmp)
                removed.append(tmp)
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


# --------------------------------------------------------------------------- JSON


def to_jsonable(obj, allow_nan=False):
    """``obj`` with every value turned into a plain JSON type, recursively.

    ========================================  ==========================================
    value                                     becomes
    ========================================  ==========================================
    dict                                      dict with ``str`` keys
    list, tuple, set, frozenset               list (a set sorted when it can be)
    numpy array                               nested lists
    numpy integer, floating, bool scalar      ``int``, ``float``, ``bool``
    NaN, +-inf (Python or numpy)              ``None``, or kept when ``allow_nan``
    ``os.PathLike``                           ``str``
    str, int, float, bool, None               unchanged
    ========================================  ==========================================

    Parameters
    ----------
    obj : object
    allow_nan : bool, default False
        Keep non-finite floats (``json.dumps`` then writes ``NaN``/``Infinity``,
        which Python reads back but strict JSON readers refuse).

    Raises
    ------
    TypeError
        For any other type, naming it.

    Examples
    --------
    >>> import numpy as np
    >>> to_jsonable({"n": np.int64(3), "x": np.array([0.5, np.nan]), 1: (True,)})
    {'n': 3, 'x': [0.5, None], '1': [True]}
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, allow_nan) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, allow_nan) for v in obj]
    if isinstance(obj, (set, frozenset)):
        try:
            obj = sorted(obj)
        except TypeError:
            obj = list(obj)
        return [to_jsonable(v, allow_nan) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), allow_nan)
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), allow_nan)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if allow_nan or math.isfinite(value) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


# --------------------------------------------------------------------------- optional packages


def require_matplotlib(what="plotting"):
    """Import and return matplotlib, or raise ImportError saying how to install it.

    Parameters
    ----------
    what : str, default "plotting"
        Starts the message: ``"{what} needs matplotlib: pip install 'fastcnn[plot]'"``.
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"{what} needs matplotlib: pip install 'fastcnn[plot]'") from None
    return matplotlib


# --------------------------------------------------------------------------- scalar validators


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type.  Also a ValueError, so ``except ValueError`` catches every failed check."""


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(value, name, owner, minimum=None):
    """``value`` as an ``int``; ArgumentTypeError unless an integer, ValueError if below ``minimum``.

    The messages say ``"must be an int"`` and ``"must be an int >= {minimum}"``.
    """
    if not _is_int(value):
        want = "an int" if minimum is None else f"an int >= {minimum}"
        raise ArgumentTypeError(f"{owner}: {name} must be {want}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_int_where(value, name, owner, want, ok):
    if not _is_int(value):
        raise ArgumentTypeError(f"{owner}: {name} must be {want}, got {value!r}")
    if not ok(value):
        raise ValueError(f"{owner}: {name} must be {want}, got {value!r}")
    return int(value)


def _check_real_where(value, name, owner, want, ok):
    if not _is_real(value):
        raise ArgumentTypeError(f"{owner}: {name} must be {want}, got {value!r}")
    value_f = float(value)
    if not math.isfinite(value_f) or not ok(value_f):
        raise ValueError(f"{owner}: {name} must be {want}, got {value!r}")
    return value_f


def check_positive_int(value, name, owner):
    """``value`` as an ``int`` >= 1: ``"{owner}: {name} must be a positive int, got {value!r}"`` otherwise."""
    return _check_int_where(value, name, owner, "a positive int", lambda v: v > 0)


def check_nonnegative_int(value, name, owner):
    """``value`` as an ``int`` >= 0: ``"... must be a non-negative int, got ..."`` otherwise."""
    return _check_int_where(value, name, owner, "a non-negative int", lambda v: v >= 0)


def check_positive_float(value, name, owner):
    """``value`` as a finite ``float`` > 0 (ints accepted): ``"... must be a positive finite number, ..."``."""
    return _check_real_where(value, name, owner, "a positive finite number", lambda v: v > 0)


def check_nonnegative_float(value, name, owner):
    """``value`` as a finite ``float`` >= 0 (ints accepted): ``"... must be a non-negative finite number, ..."``."""
    return _check_real_where(value, name, owner, "a non-negative finite number", lambda v: v >= 0)


def check_fraction(value, name, owner):
    """``value`` as a ``float`` with 0 < value < 1: ``"... must be a fraction in (0, 1), got ..."`` otherwise."""
    return _check_real_where(value, name, owner, "a fraction in (0, 1)", lambda v: 0 < v < 1)


def check_probability(value, name, owner):
    """``value`` as a ``float`` with 0 <= value < 1: ``"... must be a probability in [0, 1), got ..."``."""
    return _check_real_where(value, name, owner, "a probability in [0, 1)", lambda v: 0 <= v < 1)
