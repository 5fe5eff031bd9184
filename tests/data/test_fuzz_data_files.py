"""A mutator for the data files fastcnn reads (issue 12): MNIST IDX (raw and gzip), CIFAR-10 binary batches,
``.npz`` data sets and the ``.npy`` images of ``fastcnn predict``.

Every header field (magic, type code, number of dimensions, each size: 0, 1, huge, -1 as unsigned), truncations
at many offsets, appended garbage, gzip bombs (small files that inflate far past what their header declares),
wrong dtypes and shapes, object arrays and pickles (which must never run), labels out of range, image and label
counts that disagree, and directories, FIFOs and symlinks where a file belongs.

The property, for every case: the loader either returns arrays that are consistent (shapes, dtypes, byte order,
label range; for IDX files exactly what an independent reader finds) or raises a ValueError or OSError whose
message names the file; never another exception, never a hang, and never more than :data:`GROWTH_MB` of new
memory.  The cases run in a child process (:func:`helpers.run_cases_in_child`; the quick ones in one, the slow
ones in another): a crash or a hang fails its case, not pytest.  The readers' size limits are lowered in the
child (:data:`LIMIT`), so the bombs stay small on disk.
"""

import gzip
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np
import pytest

from helpers import npy_bytes, npy_header_only, run_cases_in_child, write_gzip_bomb, write_zip, zero_deflate_pieces

#: The readers' limit in the child (``files.MAX_ARRAY_BYTES`` and CIFAR-10's records per batch file).
LIMIT = 4 << 20
#: What the bombs inflate to: far more than LIMIT, about 100 KB of gzip.
BOMB = 96 << 20
#: The most resident memory one case may add (a reader that inflated a bomb would need BOMB).
GROWTH_MB = 40

SETUP = f"""
import fastcnn.data
import fastcnn.data.cifar as cifar
import fastcnn.data.files as files
files.MAX_ARRAY_BYTES = {LIMIT}
cifar._CIFAR_MAX_RECORDS = {LIMIT // 3073}
"""

IDX_CODES = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}
RECORD = 3073  # one CIFAR-10 record: a label byte and 3x32x32 pixels

# FIFOs, symlinks, SIGALRM and /proc: the cases and their harness need a POSIX system.
pytestmark = pytest.mark.skipif(os.name != "posix" or not hasattr(os, "mkfifo"), reason="needs POSIX")


# --------------------------------------------------------------------------- small files


def idx(arr, code=None):
    """IDX bytes of ``arr`` (its own type code unless ``code``)."""
    arr = np.asarray(arr)
    code = code if code is not None else {np.dtype(v): k for k, v in IDX_CODES.items()}[arr.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def idx_reference(data):
    """The array an IDX file holds, read by a second, independent reader; None when the file is invalid."""
    if len(data) < 4 or data[0] or data[1] or data[2] not in IDX_CODES or len(data) < 4 + 4 * data[3]:
        return None
    ndim, dtype = data[3], np.dtype(">" + IDX_CODES[data[2]])
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if int(np.prod(shape, dtype=object)) * dtype.itemsize != len(body) or len(body) > LIMIT:
        return None
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def gunzip_reference(data):
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return None


IMAGES = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
RAW = idx(IMAGES)
GZ = gzip.compress(RAW, mtime=0)


class Evil:
    """Unpickling it creates the file ``marker``: a pickle that ran leaves a trace."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def evil_pickle(folder):
    marker = folder / "PICKLE-RAN"
    return pickle.dumps({"data": Evil(marker)}), marker


def evil_object_npy(folder):
    import io

    marker = folder / "PICKLE-RAN"
    buf = io.BytesIO()
    np.save(buf, np.array([Evil(marker), 1], dtype=object), allow_pickle=True)
    return buf.getvalue(), marker


def non_regular(folder, name, kind):
    """Put a directory, FIFO, symlink to a FIFO, to a device, dangling or looping symlink at ``folder/name``."""
    path = folder / name
    if kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-fifo":
        os.mkfifo(folder / "pipe")
        path.symlink_to(folder / "pipe")
    elif kind == "link-devzero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling":
        path.symlink_to(folder / "nothing-here")
    elif kind == "loop":
        path.symlink_to(folder / "loop-b")
        (folder / "loop-b").symlink_to(path)
    return path


NON_REGULAR = ["dir", "fifo", "link-fifo", "link-devzero", "dangling", "loop"]


def spec(target, args, kind, expect, names, expected=None, kwargs=None, regular=False, markers=()):
    """What one case calls and what it must give: ``expect`` is ``"ok"``, ``"error"`` or ``"any"``."""
    return {"target": target, "args": [str(a) for a in args], "kwargs": kwargs or {}, "kind": kind,
            "expect": expect, "names": [str(n) for n in names], "expected": expected, "regular": regular,
            "markers": [str(m) for m in markers]}


class Case:
    """A named case of a group; ``build(folder)`` writes its files into an empty folder and returns its spec."""

    def __init__(self, group, name, build, marks=()):
        self.group, self.id, self.build, self.marks = group, f"{group}-{name}", build, marks


CASES = []


def case(group, name, marks=()):
    def register(build):
        CASES.append(Case(group, name, build, marks))
        return build
    return register


# --------------------------------------------------------------------------- IDX: read_idx


def idx_case(data, name, gz_name=False):
    """A read_idx case whose expected outcome is the reference reader's."""

    def build(folder):
        path = folder / (name + (".gz" if gz_name else ""))
        path.write_bytes(data)
        inner = gunzip_reference(data) if (gz_name or data[:2] == b"\x1f\x8b") else data
        ref = idx_reference(inner) if inner is not None else None
        return spec("fastcnn.data:read_idx", [path], "idx", "ok" if ref is not None else "error", [path],
                    expected=ref)
    return build


def _set(data, offset, value):
    return data[:offset] + value + data[offset + len(value):]


def header_mutations(data, ndim):
    yield "magic0=01", _set(data, 0, b"\x01")
    yield "magic0=ff", _set(data, 0, b"\xff")
    yield "magic1=08", _set(data, 1, b"\x08")
    for code in (0x00, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x1E, 0xFF):
        yield f"code={code:02x}", _set(data, 2, bytes([code]))
    for n in (0, 1, 2, 4, 255):
        yield f"ndim={n}", _set(data, 3, bytes([n]))
    for i in range(ndim):
        actual = int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big")
        for v in (0, 1, actual - 1, actual + 1, 2**24 - 1, 2**31 - 1, 2**31, 2**32 - 1):
            yield f"dim{i}={v}", _set(data, 4 + 4 * i, v.to_bytes(4, "big"))


for _name, _data in header_mutations(RAW, 3):
    case("idx-header", f"raw-{_name}")(idx_case(_data, "x-idx3-ubyte"))
    case("idx-header", f"gz-{_name}")(idx_case(gzip.compress(_data, mtime=0), "x-idx3-ubyte", gz_name=True))

for _off in sorted({0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 15, 16, 17, 40, len(RAW) - 1, len(RAW)}):
    case("idx-cut", f"raw-at-{_off}")(idx_case(RAW[:_off], "x-idx3-ubyte"))
for _off in sorted({0, 1, 2, 3, 9, 10, 11, 20, len(GZ) - 9, len(GZ) - 8, len(GZ) - 5, len(GZ) - 4, len(GZ) - 1}):
    case("idx-cut", f"gz-at-{_off}")(idx_case(GZ[:_off], "x-idx3-ubyte", gz_name=True))

_EXTRA = {
    "raw+1": (RAW + b"\0", False), "raw+1000": (RAW + b"x" * 1000, False), "raw+itself": (RAW + RAW, False),
    "gz-inner+3": (gzip.compress(RAW + b"abc", mtime=0), True),
    "gz+second-member": (GZ + gzip.compress(b"more", mtime=0), True),
    "gz-split-in-two-members": (gzip.compress(RAW[:10], mtime=0) + gzip.compress(RAW[10:], mtime=0), True),
    "gz+garbage": (GZ + b"garbage", True), "gz+zeros": (GZ + bytes(16), True),
    "gz-bad-crc": (GZ[:-8] + bytes([GZ[-8] ^ 0xFF]) + GZ[-7:], True),
    "gz-bad-isize": (GZ[:-4] + struct.pack("<L", len(RAW) + 1), True),
    "gz-flipped-deflate": (GZ[:15] + bytes([GZ[15] ^ 0x55]) + GZ[16:], True),
    "gz-bad-method": (GZ[:2] + b"\x07" + GZ[3:], True),
    "gz-fextra-huge": (GZ[:3] + b"\x04" + GZ[4:10] + b"\xff\xff" + GZ[10:], True),
    "gz-fname-unterminated": (GZ[:3] + b"\x08" + GZ[4:10] + b"name-without-end", True),
    "gz-name-raw-content": (RAW, True), "raw-name-gz-content": (GZ, False),
    "empty": (b"", False), "empty-gz": (b"", True), "only-gzip-magic": (b"\x1f\x8b", False),
}
for _name, (_data, _gz) in _EXTRA.items():
    case("idx-extra", _name)(idx_case(_data, "x-idx3-ubyte", gz_name=_gz))

for _code, _dt in IDX_CODES.items():
    _arr = (np.arange(24) - 7).astype(_dt).reshape(2, 3, 4)
    case("idx-extra", f"type-{_dt}")(idx_case(idx(_arr), "x-idx3-ubyte"))
    case("idx-extra", f"type-{_dt}-1d")(idx_case(idx(_arr.reshape(-1)), "x-idx1-ubyte"))
case("idx-extra", "ndim0-scalar")(idx_case(bytes([0, 0, 0x08, 0, 7]), "x-idx0"))
case("idx-extra", "zero-images")(idx_case(idx(np.zeros((0, 28, 28), np.uint8)), "x-idx3-ubyte"))


# --------------------------------------------------------------------------- bombs and limits


def bomb_case(prefix, total, expect, expected=None):
    def build(folder):
        path = folder / "x-idx3-ubyte.gz"
        if expect == "ok":  # a true gzip file (a bomb's CRC is left 0)
            path.write_bytes(gzip.compress(prefix + bytes(total), compresslevel=1, mtime=0))
        else:
            write_gzip_bomb(path, prefix, total)
        return spec("fastcnn.data:read_idx", [path], "idx", expect, [path], expected=expected)
    return build


_half = LIMIT // 2
case("bomb", "idx-declares-one-image")(bomb_case(idx(np.zeros((1, 28, 28), np.uint8)), BOMB, "error"))
case("bomb", "idx-declares-all-of-it")(bomb_case(bytes([0, 0, 8, 3]) + b"".join(
    int(n).to_bytes(4, "big") for n in (BOMB >> 20, 1024, 1024)), BOMB, "error"))
case("bomb", "idx-declares-half-the-limit")(bomb_case(bytes([0, 0, 8, 1]) + _half.to_bytes(4, "big"), BOMB,
                                                      "error"))
case("bomb", "idx-honest-half-the-limit")(bomb_case(bytes([0, 0, 8, 1]) + _half.to_bytes(4, "big"), _half,
                                                    "ok", expected=np.zeros(_half, np.uint8)))


@case("bomb", "idx-raw-declares-terabytes")
def _(folder):
    path = folder / "x-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x0E, 3]) + b"".join(int(n).to_bytes(4, "big") for n in (2**31, 2**16, 2**16))
                     + bytes(64))
    return spec("fastcnn.data:read_idx", [path], "idx", "error", [path])


@case("bomb", "read-bytes-gz")
def _(folder):
    path = write_gzip_bomb(folder / "blob.gz", b"", BOMB)
    return spec("fastcnn.data.idx:read_bytes", [path], "bytes", "error", [path])


@case("bomb", "read-bytes-raw-over-limit")
def _(folder):
    path = folder / "blob"
    path.write_bytes(bytes(LIMIT + 1))
    return spec("fastcnn.data.idx:read_bytes", [path], "bytes", "error", [path])


@case("bomb", "cifar-test-batch-gz")
def _(folder):
    root = cifar_folder(folder)
    path = write_gzip_bomb(root / "test_batch.bin.gz", b"", BOMB)
    (root / "test_batch.bin").unlink()
    return spec("fastcnn.data:load_cifar10", [root], "cifar", "error", [path])


@case("bomb", "npz-member-inflates-past-its-array")
def _(folder):
    head = npy_header_only((2, 28, 28), "|u1")
    y = npy_bytes(np.arange(2))
    path = write_zip(folder / "d.npz", [("x.npy", zero_deflate_pieces(head, BOMB), zipfile.ZIP_DEFLATED,
                                         len(head) + BOMB, 0), ("y.npy", [y], zipfile.ZIP_STORED, len(y), None)])
    return spec("fastcnn.data:load_npz", [path], "npz", "error", [path])


@case("bomb", "npz-member-honest-but-over-the-limit")
def _(folder):
    head = npy_header_only((BOMB,), "|u1")
    y = npy_bytes(np.arange(2))
    path = write_zip(folder / "d.npz", [("x.npy", zero_deflate_pieces(head, BOMB), zipfile.ZIP_DEFLATED,
                                         len(head) + BOMB, 0), ("y.npy", [y], zipfile.ZIP_STORED, len(y), None)])
    return spec("fastcnn.data:load_npz", [path], "npz", "error", [path])


@case("bomb", "npz-member-declares-more-than-deflate-gives")
def _(folder):
    x, y = npy_bytes(np.zeros((2, 3, 3), np.uint8)), npy_bytes(np.arange(2))
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    path = write_zip(folder / "d.npz", [("x.npy", [c.compress(x) + c.flush()], zipfile.ZIP_DEFLATED, 2**32 - 1,
                                         zlib.crc32(x)), ("y.npy", [y], zipfile.ZIP_STORED, len(y), None)])
    return spec("fastcnn.data:load_npz", [path], "npz", "error", [path])


@case("bomb", "npy-header-length-4-gib")
def _(folder):
    path = folder / "x.npy"
    path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{'descr': '|u1'" + bytes(100))
    return spec("fastcnn.data.files:read_npy", [path, "images file"], "npy", "error", [path])


@case("bomb", "npy-declares-700-tib")
def _(folder):
    path = folder / "x.npy"
    path.write_bytes(npy_header_only((2**40, 1, 28, 28)))
    return spec("fastcnn.data.files:read_npy", [path, "images file"], "npy", "error", [path])


# --------------------------------------------------------------------------- non-regular files, every reader

_READERS = {
    "read_idx": ("fastcnn.data:read_idx", "x-idx3-ubyte.gz", "idx", []),
    "read_bytes": ("fastcnn.data.idx:read_bytes", "blob", "bytes", []),
    "load_npz": ("fastcnn.data:load_npz", "d.npz", "npz", []),
    "read_npy": ("fastcnn.data.files:read_npy", "x.npy", "npy", ["images file"]),
}


def special_case(reader, kind):
    target, name, result_kind, extra = _READERS[reader]

    def build(folder):
        path = non_regular(folder, name, kind)
        regular = kind not in ("dangling", "loop")
        return spec(target, [path] + extra, result_kind, "error", [path], regular=regular)
    return build


for _reader in _READERS:
    for _kind in NON_REGULAR:
        case("special", f"{_reader}-{_kind}")(
            special_case(_reader, _kind))


# --------------------------------------------------------------------------- MNIST folders: load_mnist

MNIST_ARRAYS = {
    "train-images": np.random.default_rng(1).integers(0, 256, (6, 7, 5), dtype=np.uint8),
    "train-labels": np.array([0, 9, 3, 3, 1, 7], np.uint8),
    "t10k-images": np.random.default_rng(2).integers(0, 256, (3, 7, 5), dtype=np.uint8),
    "t10k-labels": np.array([5, 0, 9], np.uint8),
}


def mnist_name(stem, ndim, gz, dot=False):
    return f"{stem}{'.' if dot else '-'}idx{ndim}-ubyte" + (".gz" if gz else "")


def mnist_case(change=None, expect="error", gz=False, dot=False, loader="load_mnist", target_stem="train-labels",
               regular=False):
    """A folder of MNIST's four files, ``change(arrays)`` -> {stem: bytes or (callable(folder, name) -> path)}."""

    def build(folder):
        arrays = dict(MNIST_ARRAYS)
        data = {stem: idx(a) for stem, a in arrays.items()}
        data.update(change(arrays) if change is not None else {})
        paths = {}
        for stem, content in data.items():
            name = mnist_name(stem, arrays[stem].ndim if stem in arrays else 1, gz, dot)
            if callable(content):
                paths[stem] = content(folder, name)
            elif content is not None:
                paths[stem] = folder / name
                paths[stem].write_bytes(gzip.compress(content, mtime=0) if gz else content)
        expected = None
        if expect == "ok":
            a = MNIST_ARRAYS
            expected = ((a["train-images"][:, None], a["train-labels"].astype(np.int64)),
                        (a["t10k-images"][:, None], a["t10k-labels"].astype(np.int64)))
        names = [paths.get(target_stem, folder)]
        return spec(f"fastcnn.data:{loader}", [folder], "mnist", expect, names, expected=expected, regular=regular)
    return build


def _labels(values, code=None):
    return lambda arrays: {"train-labels": idx(np.asarray(values), code)}


case("mnist", "ok-raw")(mnist_case(expect="ok"))
case("mnist", "ok-gz")(mnist_case(expect="ok", gz=True))
case("mnist", "ok-dot-names")(mnist_case(expect="ok", dot=True))
case("mnist", "ok-fashion")(mnist_case(expect="ok", loader="load_fashion_mnist"))
case("mnist", "label-10")(mnist_case(_labels(np.array([0, 9, 3, 10, 1, 7], np.uint8))))
case("mnist", "label-255")(mnist_case(_labels(np.array([0, 9, 3, 3, 1, 255], np.uint8)), gz=True))
case("mnist", "label-int8-minus-1")(mnist_case(_labels(np.array([0, 9, -1, 3, 1, 7], np.int8))))
case("mnist", "label-int32-huge")(mnist_case(_labels(np.array([0, 9, 2**31 - 1, 3, 1, 7], np.int32))))
case("mnist", "label-float-1.5")(mnist_case(_labels(np.array([0, 9, 1.5, 3, 1, 7], np.float32))))
case("mnist", "label-float-nan")(mnist_case(_labels(np.array([0, 9, np.nan, 3, 1, 7], np.float64))))
case("mnist", "label-float-whole")(mnist_case(_labels(np.array([0, 9, 3, 3, 1, 7], np.float32))))
case("mnist", "labels-2d")(mnist_case(_labels(np.array([[0], [9], [3], [3], [1], [7]], np.uint8))))
case("mnist", "labels-scalar")(mnist_case(lambda a: {"train-labels": bytes([0, 0, 8, 0, 3])}))
case("mnist", "five-labels-six-images")(mnist_case(_labels(np.array([0, 9, 3, 3, 1], np.uint8))))
case("mnist", "test-count-mismatch")(mnist_case(lambda a: {"t10k-images": idx(a["t10k-images"][:2])},
                                                target_stem="t10k-images"))
case("mnist", "images-int16")(mnist_case(lambda a: {"train-images": idx(a["train-images"].astype(np.int16))},
                                         target_stem="train-images"))
case("mnist", "images-float32")(mnist_case(lambda a: {"train-images": idx(a["train-images"] / 255.0)},
                                           target_stem="train-images"))
case("mnist", "images-2d")(mnist_case(lambda a: {"train-images": idx(a["train-images"].reshape(6, 35))},
                                      target_stem="train-images"))
case("mnist", "images-4d")(mnist_case(lambda a: {"train-images": idx(a["train-images"][:, None])},
                                      target_stem="train-images"))
case("mnist", "images-zero-height")(mnist_case(lambda a: {"train-images": idx(np.zeros((6, 0, 5), np.uint8))},
                                               target_stem="train-images"))
case("mnist", "test-images-other-size")(mnist_case(lambda a: {"t10k-images": idx(np.zeros((3, 5, 7), np.uint8))},
                                                   target_stem="t10k-images"))
case("mnist", "labels-truncated")(mnist_case(lambda a: {"train-labels": idx(a["train-labels"])[:-1]}))
case("mnist", "labels-trailing")(mnist_case(lambda a: {"train-labels": idx(a["train-labels"]) + b"\0"}, gz=True))
case("mnist", "missing-labels")(mnist_case(lambda a: {"train-labels": None}, target_stem="nothing"))
for _kind in NON_REGULAR:
    case("mnist", f"labels-are-{_kind}")(mnist_case(
        lambda a, k=_kind: {"train-labels": lambda folder, name: non_regular(folder, name, k)},
        target_stem="train-labels" if _kind not in ("dangling", "loop") else "nothing",
        regular=_kind not in ("dangling", "loop")))


@case("mnist", "folder-is-a-file")
def _(folder):
    path = folder / "mnist"
    path.write_bytes(RAW)
    return spec("fastcnn.data:load_mnist", [path], "mnist", "error", [path])


@case("mnist", "folder-is-a-fifo")
def _(folder):
    path = non_regular(folder, "mnist", "fifo")
    return spec("fastcnn.data:load_mnist", [path], "mnist", "error", [path])


@case("mnist", "folder-missing")
def _(folder):
    return spec("fastcnn.data:load_fashion_mnist", [folder / "nope"], "mnist", "error", [folder / "nope"])


# --------------------------------------------------------------------------- CIFAR-10 binary batches: load_cifar10

CIFAR_NAMES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def cifar_records(labels, seed):
    rng = np.random.default_rng(seed)
    recs = rng.integers(0, 256, (len(labels), RECORD), dtype=np.uint8)
    recs[:, 0] = labels
    return recs.tobytes()


def cifar_folder(folder, gz=False):
    root = folder / "cifar-10-batches-bin"
    root.mkdir()
    for i, name in enumerate(CIFAR_NAMES):
        data = cifar_records([i, 9 - i], i)
        (root / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return root


def cifar_expected():
    recs = [np.frombuffer(cifar_records([i, 9 - i], i), np.uint8).reshape(2, RECORD) for i in range(6)]
    train, test = np.concatenate(recs[:5]), recs[5]
    split = (lambda r: (np.ascontiguousarray(r[:, 1:].reshape(-1, 3, 32, 32)), r[:, 0].astype(np.int64)))
    return split(train), split(test)


def cifar_case(change, expect="error", gz=False, regular=False, markers=False, parent=False):
    """The six batch files, then ``change(root)`` returns the path it spoiled (or None)."""

    def build(folder):
        root = cifar_folder(folder, gz)
        spoiled = change(root) if change is not None else None
        marker = [root / "PICKLE-RAN"] if markers else []
        return spec("fastcnn.data:load_cifar10", [folder if parent else root], "cifar", expect,
                    [spoiled or root], expected=cifar_expected() if expect == "ok" else None, regular=regular,
                    markers=marker)
    return build


def _rewrite(name, edit, gz=False):
    def change(root):
        path = root / (name + (".gz" if gz else ""))
        data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
        path.write_bytes(edit(data))
        return path
    return change


case("cifar", "ok-raw")(cifar_case(None, "ok"))
case("cifar", "ok-gz")(cifar_case(None, "ok", gz=True))
case("cifar", "ok-parent-folder")(cifar_case(None, "ok", parent=True))
for _off in (0, 1, 100, RECORD - 1, RECORD + 1, 2 * RECORD - 1):
    case("cifar", f"cut-at-{_off}")(cifar_case(_rewrite("data_batch_3.bin", lambda d, o=_off: d[:o])))
case("cifar", "cut-to-one-record")(cifar_case(_rewrite("data_batch_3.bin", lambda d: d[:RECORD]), "any"))
case("cifar", "plus-1-byte")(cifar_case(_rewrite("test_batch.bin", lambda d: d + b"\0")))
case("cifar", "plus-record-label-200")(cifar_case(_rewrite("test_batch.bin", lambda d: d + bytes([200]) + d[1:RECORD])))
case("cifar", "plus-record-label-5")(cifar_case(_rewrite("test_batch.bin", lambda d: d + bytes([5]) + d[1:RECORD]),
                                                "any"))
case("cifar", "label-10-first")(cifar_case(_rewrite("data_batch_1.bin", lambda d: bytes([10]) + d[1:])))
case("cifar", "label-255-last")(cifar_case(_rewrite("data_batch_5.bin",
                                                    lambda d: d[:RECORD] + bytes([255]) + d[RECORD + 1:])))
case("cifar", "gz-label-10")(cifar_case(_rewrite("data_batch_2.bin", lambda d: bytes([10]) + d[1:], gz=True), gz=True))


@case("cifar", "gz-truncated")
def _(folder):
    return cifar_case(lambda root: _cut(root / "test_batch.bin.gz", 20), gz=True)(folder)


@case("cifar", "gz-bad-crc")
def _(folder):
    def change(root):
        path = root / "data_batch_4.bin.gz"
        d = path.read_bytes()
        path.write_bytes(d[:-8] + bytes([d[-8] ^ 1]) + d[-7:])
        return path
    return cifar_case(change, gz=True)(folder)


def _cut(path, n):
    path.write_bytes(path.read_bytes()[:-n])
    return path


for _kind in NON_REGULAR:
    case("cifar", f"batch-is-{_kind}")(cifar_case(
        lambda root, k=_kind: (root / "data_batch_2.bin").unlink() or (
            non_regular(root, "data_batch_2.bin", k) if k not in ("dangling", "loop")
            else non_regular(root, "data_batch_2.bin", k) and None),
        regular=_kind not in ("dangling", "loop")))


@case("cifar", "pickle-as-batch")
def _(folder):
    def change(root):
        data, _ = evil_pickle(root)
        (root / "data_batch_1.bin").write_bytes(data)
        return root / "data_batch_1.bin"
    return cifar_case(change, markers=True)(folder)


@case("cifar", "python-release-folder")
def _(folder):
    root = folder / "cifar-10-batches-py"
    root.mkdir()
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (root / name).write_bytes(evil_pickle(root)[0])
    return spec("fastcnn.data:load_cifar10", [root], "cifar", "error", [root], markers=[root / "PICKLE-RAN"])


@case("cifar", "folder-is-a-file")
def _(folder):
    (folder / "c").write_bytes(b"x")
    return spec("fastcnn.data:load_cifar10", [folder / "c"], "cifar", "error", [folder / "c"])


# --------------------------------------------------------------------------- .npz data sets: load_npz

NPZ_X = np.random.default_rng(3).integers(0, 256, (4, 5, 6), dtype=np.uint8)
NPZ_Y = np.array([0, 3, 1, 2], np.int64)


def npz_case(x=NPZ_X, y=NPZ_Y, expect="error", compressed=False, kwargs=None, extra=None):
    """``np.savez`` of ``x`` and ``y`` (a callable gets the folder and returns (array, marker path))."""

    def build(folder):
        arrays = {"x": x, "y": y, **(extra or {})}
        markers = []
        for key, value in list(arrays.items()):
            if callable(value):
                arrays[key], m = value(folder)
                markers.append(m)
            if arrays[key] is None:
                del arrays[key]
        path = folder / "d.npz"
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        expected = None
        if expect == "ok":
            xx = x[:, None] if x.ndim == 3 else x
            expected = (np.ascontiguousarray(xx).astype(xx.dtype.newbyteorder("=")), np.asarray(y).astype(np.int64))
        return spec("fastcnn.data:load_npz", [path], "npz", expect, [path], expected=expected, kwargs=kwargs,
                    markers=markers)
    return build


def evil_array(folder):
    marker = folder / "PICKLE-RAN"
    return np.array([Evil(marker), 1, 2, 3], dtype=object), marker


case("npz", "ok")(npz_case(expect="ok"))
case("npz", "ok-compressed")(npz_case(expect="ok", compressed=True))
case("npz", "ok-4d")(npz_case(NPZ_X[:, None], expect="ok"))
case("npz", "ok-fortran")(npz_case(np.asfortranarray(NPZ_X), expect="ok"))
case("npz", "ok-float32")(npz_case(NPZ_X.astype(np.float32) / 255, expect="ok"))
case("npz", "ok-float16")(npz_case(NPZ_X.astype(np.float16), expect="ok"))
case("npz", "ok-big-endian-images")(npz_case(NPZ_X.astype(">f4"), expect="ok"))
case("npz", "ok-big-endian-labels")(npz_case(y=NPZ_Y.astype(">i8"), expect="ok"))
case("npz", "ok-uint8-labels")(npz_case(y=NPZ_Y.astype(np.uint8), expect="ok"))
case("npz", "ok-extra-arrays")(npz_case(expect="ok", extra={"z": np.zeros(3), "meta": np.array("text")}))
case("npz", "ok-other-keys")(npz_case(expect="ok", kwargs={"x_key": "images", "y_key": "labels"},
                                      extra={"images": NPZ_X, "labels": NPZ_Y, "x": None, "y": None}))
case("npz", "ok-empty-set")(npz_case(NPZ_X[:0], NPZ_Y[:0], expect="ok"))
case("npz", "x-nan")(npz_case(np.where(NPZ_X > 128, np.nan, 0.5)))
case("npz", "x-inf")(npz_case(np.where(NPZ_X > 128, -np.inf, 0.5).astype(np.float32)))
for _name, _x in {"bool": NPZ_X > 5, "complex": NPZ_X.astype(np.complex64), "unicode": NPZ_X.astype("U3"),
                  "bytes": NPZ_X.astype("S3"), "datetime": NPZ_X.astype("datetime64[s]"),
                  "structured": np.zeros((4, 5, 6), [("a", "u1"), ("b", "f4")]),
                  "void": np.zeros((4, 5, 6), "V2")}.items():
    case("npz", f"x-{_name}")(npz_case(_x))
case("npz", "x-object-pickle")(npz_case(evil_array))
case("npz", "y-object-pickle")(npz_case(y=evil_array))
for _name, _y in {"float": NPZ_Y + 0.5, "whole-float": NPZ_Y.astype(np.float64), "bool": NPZ_Y > 0,
                  "uint64-huge": np.array([0, 1, 2**63 + 5, 2], np.uint64),
                  "int8-minus-1": np.array([0, -1, 2, 3], np.int8),
                  "int64-min": np.array([0, np.iinfo(np.int64).min, 2, 3]), "unicode": NPZ_Y.astype("U2"),
                  "2d": NPZ_Y[:, None], "scalar": np.array(3), "three-labels": NPZ_Y[:3],
                  "five-labels": np.append(NPZ_Y, 1)}.items():
    case("npz", f"y-{_name}")(npz_case(y=_y))
for _name, _x in {"2d": NPZ_X.reshape(4, 30), "5d": NPZ_X[:, None, None], "scalar": np.array(3, np.uint8),
                  "1d": NPZ_X.reshape(-1)[:4], "zero-height": np.zeros((4, 0, 6), np.uint8),
                  "zero-channels": np.zeros((4, 0, 5, 6), np.uint8), "zero-width-4d": np.zeros((4, 1, 5, 0))}.items():
    case("npz", f"x-{_name}")(npz_case(_x))
case("npz", "missing-x")(npz_case(extra={"x": None}))
case("npz", "missing-y")(npz_case(extra={"y": None}))


def npz_file_case(make, expect="error", regular=False):
    """``make(folder, base_bytes)`` writes ``folder/d.npz`` (from the bytes of a valid one) and may return markers."""

    def build(folder):
        path = folder / "d.npz"
        np.savez(path, x=NPZ_X, y=NPZ_Y)
        markers = make(folder, path.read_bytes()) or []
        expected = (NPZ_X[:, None], NPZ_Y) if expect in ("ok", "any") else None
        return spec("fastcnn.data:load_npz", [path], "npz", expect, [path], expected=expected, regular=regular,
                    markers=markers)
    return build


def _write(data):
    return lambda folder, base: (folder / "d.npz").write_bytes(data(base)) and None


for _frac in (0.0, 0.001, 0.02, 0.1, 0.5, 0.9, 0.99):
    case("npz-file", f"cut-at-{_frac}")(npz_file_case(_write(lambda b, f=_frac: b[:int(len(b) * f)])))
case("npz-file", "cut-last-byte")(npz_file_case(_write(lambda b: b[:-1])))
case("npz-file", "cut-end-record")(npz_file_case(_write(lambda b: b[:-22])))
case("npz-file", "plus-garbage")(npz_file_case(_write(lambda b: b + b"garbage" * 10), "any"))
case("npz-file", "garbage-in-front")(npz_file_case(_write(lambda b: b"garbage" + b)))
case("npz-file", "a-npy")(npz_file_case(_write(lambda b: npy_bytes(NPZ_X))))
case("npz-file", "text")(npz_file_case(_write(lambda b: b"x,y\n1,2\n")))
case("npz-file", "empty")(npz_file_case(_write(lambda b: b"")))
case("npz-file", "gzipped-npz")(npz_file_case(_write(lambda b: gzip.compress(b))))
case("npz-file", "zip-magic-only")(npz_file_case(_write(lambda b: b"PK\x03\x04")))
case("npz-file", "empty-zip")(npz_file_case(_write(lambda b: b"PK\x05\x06" + bytes(18))))


@case("npz-file", "a-pickle")
def _(folder):
    data, marker = evil_pickle(folder)
    (folder / "d.npz").write_bytes(data)
    return spec("fastcnn.data:load_npz", [folder / "d.npz"], "npz", "error", [folder / "d.npz"], markers=[marker])


for _kind in NON_REGULAR:
    case("npz-file", f"is-{_kind}")(npz_file_case(
        lambda folder, base, k=_kind: (folder / "d.npz").unlink() or non_regular(folder, "d.npz", k) and None,
        regular=_kind not in ("dangling", "loop")))


def member_case(x_member, expect="error"):
    """A hand-written zip whose ``x.npy`` member is ``x_member()`` = (name, pieces, method, file_size, crc)."""

    def build(folder):
        y = npy_bytes(NPZ_Y)
        path = write_zip(folder / "d.npz", [x_member(), ("y.npy", [y], zipfile.ZIP_STORED, len(y), None)])
        return spec("fastcnn.data:load_npz", [path], "npz", expect, [path])
    return build


def _stored(data, name="x.npy", size=None, crc=None):
    return lambda: (name, [data], zipfile.ZIP_STORED, len(data) if size is None else size, crc)


def _header(shape="(4, 5, 6)", descr="'|u1'", fortran="False", extra="", version=b"\x01\x00", body=None):
    text = "{" + f"'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, {extra}" + "}"
    text = text.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    head = text + b" " * pad + b"\n"
    length = struct.pack("<H" if version == b"\x01\x00" else "<I", len(head))
    return b"\x93NUMPY" + version + length + head + (NPZ_X.tobytes() if body is None else body)


_MEMBERS = {
    "ok-hand-written": (_stored(npy_bytes(NPZ_X)), "ok"),
    "bzip2-method": (lambda: ("x.npy", [bytes(100)], 12, 100, 0), "error"),
    "lzma-method": (lambda: ("x.npy", [bytes(100)], 14, 100, 0), "error"),
    "size-lies-bigger": (_stored(npy_bytes(NPZ_X), size=len(npy_bytes(NPZ_X)) + 10), "error"),
    "size-lies-smaller": (_stored(npy_bytes(NPZ_X), size=len(npy_bytes(NPZ_X)) - 10), "error"),
    "size-lies-huge": (_stored(npy_bytes(NPZ_X), size=2**31), "error"),
    "bad-crc": (_stored(npy_bytes(NPZ_X), crc=1234), "error"),
    "shape-negative": (_stored(_header("(-4, 5, 6)")), "error"),
    "shape-huge": (_stored(_header("(2**62, 2**62)")), "error"),
    "shape-huge-literal": (_stored(_header("(4611686018427387904, 4, 2)")), "error"),
    "shape-float": (_stored(_header("(4.0, 5, 6)")), "error"),
    "shape-string": (_stored(_header("'4, 5, 6'")), "error"),
    "shape-nested": (_stored(_header("((4,), 5, 6)")), "error"),
    "shape-more-data": (_stored(_header("(3, 5, 6)")), "error"),
    "descr-object": (_stored(_header(descr="'|O'")), "error"),
    "descr-list": (_stored(_header(descr="[('a', '|u1')]")), "error"),
    "descr-unknown": (_stored(_header(descr="'<q9'")), "error"),
    "descr-number": (_stored(_header(descr="7")), "error"),
    "descr-unicode-huge": (_stored(_header(descr="'<U1000000000'")), "error"),
    "fortran-yes": (_stored(_header(fortran="'yes'")), "error"),
    "extra-key": (_stored(_header(extra="'x': 1,")), "error"),
    "version-9": (_stored(_header(version=b"\x09\x00")), "error"),
    "version-2": (_stored(_header(version=b"\x02\x00")), "ok"),
    "header-not-dict": (_stored(b"\x93NUMPY\x01\x00\x08\x00[1, 2]\n" + bytes(8)), "error"),
    "header-deep": (_stored(b"\x93NUMPY\x01\x00\x10\x27" + b"[" * 9999 + b"\n"), "error"),
    "header-call": (_stored(_header(shape="__import__('os').getpid()")), "error"),
    "header-len-past-end": (_stored(b"\x93NUMPY\x01\x00\xff\xff{'descr'"), "error"),
    "not-npy": (_stored(b"hello, this is not an array"), "error"),
    "name-is-dir": (lambda: ("x.npy/", [b""], zipfile.ZIP_STORED, 0, None), "error"),
    "name-traversal": (_stored(npy_bytes(NPZ_X), name="../x.npy"), "error"),
}
for _name, (_member, _expect) in _MEMBERS.items():
    case("npz-member", _name)(member_case(_member, _expect))


# --------------------------------------------------------------------------- .npy images: read_npy (fastcnn predict)


def npy_case(data, expect="error", markers=False, expected=None):
    def build(folder):
        content, marker = data(folder) if callable(data) else (data, None)
        path = folder / "x.npy"
        path.write_bytes(content)
        return spec("fastcnn.data.files:read_npy", [path, "images file"], "npy", expect, [path],
                    markers=[marker] if marker else [], expected=expected)
    return build


_NPY = npy_bytes(NPZ_X)
case("npy", "ok")(npy_case(_NPY, "ok", expected=NPZ_X))
case("npy", "ok-big-endian")(npy_case(npy_bytes(NPZ_X.astype(">f8")), "ok", expected=NPZ_X.astype("<f8")))
case("npy", "ok-fortran")(npy_case(npy_bytes(np.asfortranarray(NPZ_X)), "any"))
case("npy", "ok-v2")(npy_case(_header(version=b"\x02\x00"), "ok", expected=NPZ_X))
case("npy", "ok-v3")(npy_case(_header(version=b"\x03\x00"), "ok", expected=NPZ_X))
case("npy", "object-pickle")(npy_case(evil_object_npy, markers=True))
for _name, (_member, _expect) in _MEMBERS.items():
    if _name.startswith(("shape", "descr", "fortran", "extra", "version-9", "header")):
        case("npy", _name)(npy_case(_member()[1][0], _expect))
for _off in sorted({0, 1, 5, 6, 8, 9, 10, 50, 127, 128, 129, len(_NPY) // 2, len(_NPY) - 1}):
    case("npy", f"cut-at-{_off}")(npy_case(_NPY[:_off]))
case("npy", "plus-1-byte")(npy_case(_NPY + b"\0"))
case("npy", "plus-itself")(npy_case(_NPY + _NPY))
case("npy", "a-npz")(npy_case(lambda folder: (np.savez(folder / "a.npz", x=NPZ_X) or (folder / "a.npz").read_bytes(),
                                              None)))
case("npy", "a-pickle")(npy_case(evil_pickle, markers=True))


# --------------------------------------------------------------------------- seeded random mutations


def random_bytes_case(kind, seed):
    """Flip, cut or splice the bytes of a valid file at seeded random places; IDX is judged by the reference."""
    rng = np.random.default_rng([seed, 0xF022])
    base = {"idx": RAW, "idx-gz": GZ, "npy": _NPY, "npz": None}[kind]

    def mutate(data):
        data = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            op = rng.integers(0, 4)
            pos = int(rng.integers(0, len(data) + 1 if op else min(len(data), 64) + 1))
            if op in (0, 1) and len(data):  # flip a byte (op 0: in the header)
                pos = min(pos, len(data) - 1)
                data[pos] ^= int(rng.integers(1, 256))
            elif op == 2:
                del data[pos:]
            else:
                data[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        return bytes(data)

    if kind in ("idx", "idx-gz"):
        return idx_case(mutate(base), "x-idx3-ubyte", gz_name=kind == "idx-gz")
    if kind == "npy":
        return npy_case(mutate(base), "any")

    def build(folder):
        path = folder / "d.npz"
        np.savez(path, x=NPZ_X, y=NPZ_Y)
        path.write_bytes(mutate(path.read_bytes()))
        return spec("fastcnn.data:load_npz", [path], "npz", "any", [path])
    return build


for _kind in ("idx", "idx-gz", "npy", "npz"):
    for _seed in range(200):
        case("random" if _seed < 6 else "random-slow", f"{_kind}-{_seed}",
             marks=(pytest.mark.slow,) if _seed >= 6 else ())(random_bytes_case(_kind, _seed))


# --------------------------------------------------------------------------- the property


def _array(value):
    assert isinstance(value, dict) and "ndarray" in value, f"expected an array, got {value!r}"[:300]
    return value["ndarray"]


def _describe(arr):
    import hashlib

    arr = np.asarray(arr)
    return arr.shape, arr.dtype.str, hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _images_and_labels(x, y, classes=None, channels=None, dtype=None):
    """Images (N, C, H, W) native, contiguous, finite, every size >= 1 but N; labels int64 (N,) in range."""
    x, y = _array(x), _array(y)
    xt = np.dtype(x["dtype"])
    assert len(x["shape"]) == 4 and min(x["shape"][1:]) >= 1, f"images shaped {x['shape']}"
    assert xt.isnative and xt.kind in "uif" and x["contiguous"] and x.get("finite", True), x
    assert dtype is None or xt == dtype, x["dtype"]
    assert channels is None or x["shape"][1:] == channels, x["shape"]
    assert np.dtype(y["dtype"]) == np.int64 and y["shape"] == x["shape"][:1], (x["shape"], y)
    if y["shape"][0]:
        assert y["min"] >= 0 and (classes is None or y["max"] <= classes - 1), y


def _check_mnist(value):
    (xtr, ytr), (xte, yte) = value
    _images_and_labels(xtr, ytr, classes=10, dtype=np.uint8)
    _images_and_labels(xte, yte, classes=10, dtype=np.uint8)
    assert _array(xtr)["shape"][1:] == _array(xte)["shape"][1:], "train and test images differ in size"
    assert _array(xtr)["shape"][1] == 1


def _check_cifar(value):
    for x, y in value:
        _images_and_labels(x, y, classes=10, channels=[3, 32, 32], dtype=np.uint8)
        assert _array(x)["shape"][0] >= 1


def _check_plain(value):
    a = _array(value)
    assert np.dtype(a["dtype"]).isnative or np.dtype(a["dtype"]).itemsize == 1, a["dtype"]
    assert np.dtype(a["dtype"]).kind in "buif", a


CONSISTENT = {
    "idx": _check_plain,
    "npy": lambda v: np.dtype(_array(v)["dtype"]).kind in "buifU" or pytest.fail(f"read a {_array(v)['dtype']}"),
    "bytes": lambda v: v["bytes"] <= LIMIT or pytest.fail(f"{v['bytes']} bytes, more than the limit"),
    "mnist": _check_mnist,
    "cifar": _check_cifar,
    "npz": lambda v: _images_and_labels(*v),
}


def _flatten(value):
    if isinstance(value, dict) and "ndarray" in value:
        return [value["ndarray"]]
    return [a for v in value for a in _flatten(v)]


def _flatten_expected(expected):
    if isinstance(expected, np.ndarray):
        return [expected]
    return [a for v in expected for a in _flatten_expected(v)]


def check_outcome(spec_, result):
    """The property of the module docstring, for one case's spec and its child's result."""
    status = result["status"]
    assert status in ("returned", "raised"), f"{status}: {result.get('output', '')[-2000:]}"
    if result.get("peak_mb") is not None:
        growth = result["peak_mb"] - result["base_mb"]
        assert growth < GROWTH_MB, f"used {growth:.0f} MB more memory"
    for marker in spec_["markers"]:
        assert not os.path.exists(marker), "a pickle was loaded: it ran code"
    if status == "raised":
        message = result["message"]
        assert spec_["expect"] != "ok", f"refused a valid file: {result['type']}: {message}"
        assert "ValueError" in result["mro"] or "OSError" in result["mro"], result["traceback"]
        assert any(name in message for name in spec_["names"]), f"{message!r} names none of {spec_['names']}"
        assert not spec_["regular"] or "regular file" in message, message
        return
    value = result["value"]
    assert spec_["expect"] != "error", f"accepted: {str(value)[:500]}"
    CONSISTENT[spec_["kind"]](value)
    if spec_["expected"] is not None:
        got = [(tuple(a["shape"]), a["dtype"], a["sha256"]) for a in _flatten(value)]
        assert got == [_describe(e) for e in _flatten_expected(spec_["expected"])], "returned other data"


def _batch(case_):
    return "slow" if case_.group.endswith("-slow") else "quick"


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    """``outcome(case)``: its spec and its result; the quick cases run together in one child process, the slow
    ones in another (a case that crashes or hangs its child fails alone: the child restarts after it)."""
    done = {}

    def get(case_):
        batch = _batch(case_)
        if batch not in done:
            root = tmp_path_factory.mktemp(batch)
            specs = {}
            for i, c in enumerate(c for c in CASES if _batch(c) == batch):
                folder = root / f"{c.group}-{i}"
                folder.mkdir()
                specs[c.id] = c.build(folder)
            calls = [(cid, s["target"], s["args"], s["kwargs"]) for cid, s in specs.items()]
            done[batch] = specs, run_cases_in_child(calls, setup=SETUP, case_timeout=20, cwd=str(root))
        specs, results = done[batch]
        return specs[case_.id], results[case_.id]

    return get


@pytest.mark.parametrize("case_", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_data_file_mutation(case_, outcome):
    check_outcome(*outcome(case_))


def test_enough_cases():
    quick = [c for c in CASES if not c.group.endswith("-slow")]
    assert len(quick) >= 200 and len({c.id for c in CASES}) == len(CASES)
