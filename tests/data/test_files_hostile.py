"""Hostile data files (issue 12): bombs, non-regular files, lying headers.

Every size a file declares is checked against the file's real size and a limit before anything is
allocated or inflated; anything that is not a regular file is refused before it is opened for reading.
Cases that could hang or eat memory run in their own process, with a timeout.
"""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from helpers import (idx_bytes, npy_bytes, npy_header_only, peak_rss_mb_of, repo_env, write_gzip_bomb, write_idx,
                     write_zip)

from fastcnn.data import load_npz, read_idx

#: The size the bombs inflate to (3 GiB of zeros is about 13 MB compressed); FASTCNN_TEST_BOMB_MB shrinks it.
BOMB = int(os.environ.get("FASTCNN_TEST_BOMB_MB", 3072)) << 20
#: What a process that read a bomb's header and refused it may use at most (imports included).
PEAK_MB = 400

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def _in_subprocess(code, timeout=60):
    """Run ``code`` in a fresh Python with a timeout; (returncode, output). A hang is a failure."""
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              env=repo_env())
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung (> {timeout} s): {code}")
    return proc.returncode, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- memory and time bombs


def test_idx_gzip_bomb_is_refused_after_reading_little(tmp_path):
    path = write_gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((1, 28, 28), np.uint8)),
                           BOMB)
    assert path.stat().st_size < BOMB // 100
    code = (f"from fastcnn.data import read_idx\n"
            f"try:\n    read_idx({str(path)!r})\nexcept ValueError as e:\n    print('REFUSED', e)\n")
    rc, out, peak = peak_rss_mb_of(code)
    assert rc == 0 and "REFUSED" in out and "trailing" in out, out
    assert peak < PEAK_MB, f"peak {peak:.0f} MB"


def test_idx_gzip_header_larger_than_any_inflation_is_refused_before_allocating(tmp_path):
    header = bytes([0, 0, 0x08, 3]) + b"".join(int(n).to_bytes(4, "big") for n in (2**31, 2**16, 2**16))
    path = tmp_path / "x-idx3-ubyte.gz"
    import gzip

    path.write_bytes(gzip.compress(header + bytes(100)))
    with pytest.raises(ValueError, match="declares"):
        read_idx(path)


def test_idx_plain_header_larger_than_the_file(tmp_path):
    header = bytes([0, 0, 0x0D, 2]) + (2**32 - 1).to_bytes(4, "big") * 2
    path = tmp_path / "x-idx2"
    path.write_bytes(header + bytes(16))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_idx_gzip_truncated_is_a_value_error(tmp_path):
    path = write_idx(tmp_path / "a.gz", np.arange(600, dtype=np.uint8).reshape(6, 100), gz=True)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="gzip|truncated"):
        read_idx(path)


def test_idx_gzip_with_trailing_data_is_refused(tmp_path):
    import gzip

    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 3), np.uint8)) + b"xyz"))
    with pytest.raises(ValueError, match="trailing"):
        read_idx(path)


def test_idx_gzip_two_members_read_as_one_stream(tmp_path):
    import gzip

    data = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(data[:7]) + gzip.compress(data[7:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(12).reshape(3, 4))


def test_cifar_gzip_bomb_is_refused_after_reading_little(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    record = bytes(3073)
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(record)
    write_gzip_bomb(folder / "test_batch.bin.gz", b"", BOMB)
    code = (f"from fastcnn.data import load_cifar10\n"
            f"try:\n    load_cifar10({str(folder)!r})\nexcept ValueError as e:\n    print('REFUSED', e)\n")
    rc, out, peak = peak_rss_mb_of(code)
    assert rc == 0 and "REFUSED" in out, out
    assert peak < PEAK_MB, f"peak {peak:.0f} MB"


def test_npz_member_declaring_700_tib_is_refused(tmp_path):
    path = write_zip(tmp_path / "d.npz", [
        ("x.npy", [npy_header_only((2**40, 1, 28, 28))], zipfile.ZIP_STORED, 128, None),
        ("y.npy", [npy_bytes(np.arange(3))], zipfile.ZIP_STORED, len(npy_bytes(np.arange(3))), None),
    ])
    with pytest.raises(ValueError, match="declares"):
        load_npz(path)


def test_npz_member_inflating_past_its_array_is_refused_after_reading_little(tmp_path):
    from helpers import zero_deflate_pieces

    head = npy_header_only((2, 28, 28), "|u1")
    y = npy_bytes(np.arange(2))
    path = write_zip(tmp_path / "d.npz", [
        ("x.npy", zero_deflate_pieces(head, BOMB), zipfile.ZIP_DEFLATED, len(head) + BOMB, 0),
        ("y.npy", [y], zipfile.ZIP_STORED, len(y), None),
    ])
    code = (f"from fastcnn.data import load_npz\n"
            f"try:\n    load_npz({str(path)!r})\nexcept ValueError as e:\n    print('REFUSED', e)\n")
    rc, out, peak = peak_rss_mb_of(code)
    assert rc == 0 and "REFUSED" in out, out
    assert peak < PEAK_MB, f"peak {peak:.0f} MB"


def test_npz_text_file_is_not_called_pickled(tmp_path):
    path = tmp_path / "d.npz"
    path.write_text("just some text\n")
    with pytest.raises(ValueError) as info:
        load_npz(path)
    assert "pickle" not in str(info.value)


# --------------------------------------------------------------------------- non-regular files


@needs_fifo
@pytest.mark.parametrize("reader", ["read_idx", "load_npz"])
def test_fifo_is_refused_not_waited_on(tmp_path, reader):
    fifo = tmp_path / "p.gz"
    os.mkfifo(fifo)
    code = (f"from fastcnn.data import {reader}\n"
            f"try:\n    {reader}({str(fifo)!r})\nexcept ValueError as e:\n    print('REFUSED', e)\n")
    rc, out = _in_subprocess(code, timeout=30)
    assert rc == 0 and "REFUSED" in out and "regular file" in out, out


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_device_is_refused(tmp_path):
    code = ("from fastcnn.data import read_idx\n"
            "try:\n    read_idx('/dev/zero')\nexcept ValueError as e:\n    print('REFUSED', e)\n")
    rc, out = _in_subprocess(code, timeout=30)
    assert rc == 0 and "REFUSED" in out and "regular file" in out, out


def test_check_regular_file_messages(tmp_path):
    from fastcnn.data import files

    with pytest.raises(FileNotFoundError, match="not found"):
        files.check_regular_file(tmp_path / "missing", "checkpoint")
    with pytest.raises(ValueError, match="directory"):
        files.check_regular_file(tmp_path, "checkpoint")
    (tmp_path / "f").write_bytes(b"abc")
    assert files.check_regular_file(tmp_path / "f", "checkpoint") == 3
    with pytest.raises(TypeError, match="path"):
        files.check_regular_file(3.5, "checkpoint")


# --------------------------------------------------------------------------- JSON


def test_json_nested_200000_deep_is_a_value_error():
    from fastcnn.data import files

    with pytest.raises(ValueError, match="nest"):
        files.loads_json("[" * 200_000 + "]" * 200_000, "config")


def test_json_brackets_inside_strings_do_not_count():
    from fastcnn.data import files

    text = '{"a": "' + "[" * 70 + '\\"{{"}'
    assert files.loads_json(text, "c", max_depth=3) == {"a": "[" * 70 + '"{{'}
    with pytest.raises(ValueError, match="nest"):
        files.loads_json('{"a": [[[1]]]}', "c", max_depth=3)


def test_npy_reader_checks_header_against_size(tmp_path):
    from fastcnn.data import files

    path = tmp_path / "a.npy"
    path.write_bytes(npy_bytes(np.arange(6, dtype=np.int32).reshape(2, 3)))
    np.testing.assert_array_equal(files.read_npy(path, "images"), np.arange(6).reshape(2, 3))
    path.write_bytes(npy_bytes(np.arange(6, dtype=np.int32))[:-4])
    with pytest.raises(ValueError, match="declares"):
        files.read_npy(path, "images")
    path.write_bytes(npy_header_only((2**40, 1, 28, 28)))
    with pytest.raises(ValueError, match="declares"):
        files.read_npy(path, "images")
    path.write_text("hello\n")
    with pytest.raises(ValueError, match="not a .npy file"):
        files.read_npy(path, "images")
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object"):
        files.read_npy(path, "images")
