"""fastcnn._util: atomic writes, JSON conversion, the matplotlib check and the scalar validators."""

import json
import os
import pathlib
import stat
import sys

import numpy as np
import pytest

from fastcnn import _util
from fastcnn._util import (
    ArgumentTypeError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_fraction,
    check_int,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
    clean_stale_temps,
    require_matplotlib,
    to_jsonable,
)


def _temps(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name.startswith(".fastcnn-"))


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_writes_bytes_and_text(tmp_path):
    path = tmp_path / "a.bin"
    assert atomic_write(path, lambda f: f.write(b"\x00\x01")) == str(path)
    assert path.read_bytes() == b"\x00\x01"
    assert atomic_write_text(path, "h\u00e9llo\n") == str(path)
    assert path.read_bytes() == "h\u00e9llo\n".encode("utf-8")
    assert _temps(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_write_keeps_the_old_file_when_the_writer_raises(tmp_path, error):
    path = tmp_path / "keep.txt"
    path.write_text("old")

    def write(f):
        f.write(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write)
    assert path.read_text() == "old"
    assert _temps(tmp_path) == []


def test_atomic_write_leaves_no_file_when_a_new_write_fails(tmp_path):
    path = tmp_path / "new.txt"
    with pytest.raises(ValueError):
        atomic_write(path, lambda f: (_ for _ in ()).throw(ValueError("no")))
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_temp_file_is_in_the_target_folder_with_the_expected_name(tmp_path):
    seen = []

    def write(f):
        seen.extend(_temps(tmp_path))
        f.write(b"x")

    atomic_write(tmp_path / "t.bin", write)
    assert len(seen) == 1
    assert seen[0].startswith(".fastcnn-") and seen[0].endswith(".tmp")
    assert _temps(tmp_path) == []


def test_atomic_write_into_a_missing_folder_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        atomic_write(tmp_path / "nope" / "x.bin", lambda f: f.write(b"x"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "m.bin", lambda f: f.write(b"x"))
        json_path = atomic_write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(json_path).st_mode) == 0o666 & ~umask


def test_atomic_write_text_rejects_bytes(tmp_path):
    with pytest.raises(TypeError, match="text must be a str"):
        atomic_write_text(tmp_path / "x", b"bytes")


def test_clean_stale_temps_removes_only_old_temps(tmp_path):
    old = tmp_path / ".fastcnn-0123456789abcdef.tmp"
    young = tmp_path / ".fastcnn-fedcba9876543210.tmp"
    other = tmp_path / "data.tmp"
    for p in (old, young, other):
        p.write_bytes(b"")
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(other, (1_000_000, 1_000_000))
    assert clean_stale_temps(tmp_path, older_than_s=60) == [str(old)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([young.name, other.name])


# --------------------------------------------------------------------------- JSON


def test_to_jsonable_converts_numpy_types_recursively():
    obj = {
        "i": np.int64(3), "u": np.uint8(7), "f": np.float32(0.5), "b": np.bool_(True),
        "a": np.arange(4, dtype=np.int16).reshape(2, 2), "t": (1, (np.float64(2.5),)),
        "p": pathlib.Path("some/where"), 4: {"s": {3, 1, 2}}, "n": None, "str": "x",
    }
    out = to_jsonable(obj)
    assert out == {"i": 3, "u": 7, "f": 0.5, "b": True, "a": [[0, 1], [2, 3]], "t": [1, [2.5]],
                   "p": os.fspath(pathlib.Path("some/where")), "4": {"s": [1, 2, 3]}, "n": None, "str": "x"}
    assert type(out["i"]) is int and type(out["f"]) is float and type(out["b"]) is bool
    assert type(out["a"][0][0]) is int
    json.dumps(out, allow_nan=False)  # plain JSON through and through


def test_to_jsonable_non_finite_floats():
    values = [float("nan"), np.float32("inf"), -np.inf, np.array([np.nan, 1.0])]
    assert to_jsonable(values) == [None, None, None, [None, 1.0]]
    kept = to_jsonable(values, allow_nan=True)
    assert np.isnan(kept[0]) and kept[1] == float("inf") and kept[2] == float("-inf") and np.isnan(kept[3][0])


def test_to_jsonable_rejects_unknown_types():
    with pytest.raises(TypeError, match="object is not JSON-serialisable"):
        to_jsonable({"x": object()})


def test_atomic_write_json_format(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"x": np.float64(1.5), "y": (np.int32(2),), "z": np.nan})
    text = pathlib.Path(path).read_text()
    assert text == '{\n  "x": 1.5,\n  "y": [\n    2\n  ],\n  "z": null\n}\n'
    assert json.loads(text) == {"x": 1.5, "y": [2], "z": None}


def test_atomic_write_json_keeps_the_old_file_on_unserialisable_input(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{}\n")
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert path.read_text() == "{}\n"
    assert _temps(tmp_path) == []


# --------------------------------------------------------------------------- matplotlib


def test_require_matplotlib_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" raise ImportError
    with pytest.raises(ImportError, match=r"^plotting needs matplotlib: pip install 'fastcnn\[plot\]'$"):
        require_matplotlib()
    with pytest.raises(ImportError, match=r"^bench --plot needs matplotlib"):
        require_matplotlib("bench --plot")


def test_require_matplotlib_is_reexported_by_plot_and_bench():
    import fastcnn.bench
    import fastcnn.plot

    assert fastcnn.plot.require_matplotlib is _util.require_matplotlib
    assert fastcnn.bench.require_matplotlib is _util.require_matplotlib


# --------------------------------------------------------------------------- validators


@pytest.mark.parametrize("check,value,expected", [
    (check_positive_int, 3, 3), (check_positive_int, np.int64(2), 2),
    (check_nonnegative_int, 0, 0),
    (check_positive_float, 2, 2.0), (check_positive_float, np.float32(0.25), 0.25),
    (check_nonnegative_float, 0, 0.0),
    (check_fraction, 0.2, 0.2),
    (check_probability, 0, 0.0), (check_probability, 0.9, 0.9),
])
def test_validators_return_python_numbers(check, value, expected):
    out = check(value, "x", "f")
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("check,value,message", [
    (check_positive_int, 0, "f: x must be a positive int, got 0"),
    (check_positive_int, -2, "f: x must be a positive int, got -2"),
    (check_nonnegative_int, -1, "f: x must be a non-negative int, got -1"),
    (check_positive_float, 0.0, "f: x must be a positive finite number, got 0.0"),
    (check_positive_float, float("inf"), "f: x must be a positive finite number, got inf"),
    (check_nonnegative_float, -0.5, "f: x must be a non-negative finite number, got -0.5"),
    (check_nonnegative_float, float("nan"), "f: x must be a non-negative finite number, got nan"),
    (check_fraction, 0, "f: x must be a fraction in (0, 1), got 0"),
    (check_fraction, 1.0, "f: x must be a fraction in (0, 1), got 1.0"),
    (check_probability, 1, "f: x must be a probability in [0, 1), got 1"),
    (check_probability, -0.1, "f: x must be a probability in [0, 1), got -0.1"),
])
def test_validators_out_of_range_raise_valueerror(check, value, message):
    with pytest.raises(ValueError) as info:
        check(value, "x", "f")
    assert str(info.value) == message
    assert not isinstance(info.value, TypeError)


@pytest.mark.parametrize("check,value,message", [
    (check_positive_int, 2.0, "f: x must be a positive int, got 2.0"),
    (check_positive_int, True, "f: x must be a positive int, got True"),
    (check_positive_int, "3", "f: x must be a positive int, got '3'"),
    (check_nonnegative_int, None, "f: x must be a non-negative int, got None"),
    (check_positive_float, "1", "f: x must be a positive finite number, got '1'"),
    (check_fraction, np.bool_(True), f"f: x must be a fraction in (0, 1), got {np.bool_(True)!r}"),
    (check_probability, [0.5], "f: x must be a probability in [0, 1), got [0.5]"),
])
def test_validators_wrong_type_raise_typeerror_that_is_also_valueerror(check, value, message):
    with pytest.raises(TypeError) as info:
        check(value, "x", "f")
    assert str(info.value) == message
    assert isinstance(info.value, ArgumentTypeError) and isinstance(info.value, ValueError)


def test_check_int_with_minimum():
    assert check_int(-5, "n", "g") == -5
    assert check_int(np.int8(4), "n", "g", minimum=0) == 4
    with pytest.raises(ValueError, match=r"^g: n must be an int >= 2, got 1$"):
        check_int(1, "n", "g", minimum=2)
    with pytest.raises(TypeError, match=r"^g: n must be an int, got 1.5$"):
        check_int(1.5, "n", "g")


# --------------------------------------------------------------------------- full disks and stale temporaries (issue 12)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), OSError("3000 requested and 496 written")],
                         ids=["errno", "numpy"])
def test_full_disk_is_one_clear_error_and_the_old_file_stays(tmp_path, error):
    import errno

    from fastcnn._util import atomic_write

    path = tmp_path / "labels.npy"
    path.write_bytes(b"old")

    def write(f):
        f.write(b"partial")
        raise error

    with pytest.raises(OSError) as info:
        atomic_write(path, write)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value).endswith(f"no space left on device writing {path}")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["labels.npy"]


def test_a_write_removes_stale_temporaries_but_not_young_ones(tmp_path):
    import time

    from fastcnn._util import TEMP_PREFIX, TEMP_SUFFIX, atomic_write

    stale, young = tmp_path / f"{TEMP_PREFIX}aaaa{TEMP_SUFFIX}", tmp_path / f"{TEMP_PREFIX}bbbb{TEMP_SUFFIX}"
    stale.write_bytes(b"x")
    young.write_bytes(b"y")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    atomic_write(tmp_path / "out.bin", lambda f: f.write(b"z"))
    assert sorted(os.listdir(tmp_path)) == sorted(["out.bin", young.name])
