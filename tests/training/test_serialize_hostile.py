"""Hostile checkpoints (issue 12): bombs, lying sizes, wrong JSON types, non-finite values, non-regular files.

The reader checks the whole JSON header against one schema and every declared size against the
archive before building or reading anything; only the members it needs are read.  Each case that
could hang or eat memory runs in its own process.
"""

import json
import math
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from helpers import (checkpoint_header, npy_header_only, peak_rss_mb_of, repo_env, rewrite_checkpoint,
                     zero_deflate_pieces, zip_members, write_zip)

import fastcnn
from fastcnn.serialize import load_checkpoint

BOMB = int(os.environ.get("FASTCNN_TEST_BOMB_MB", 3072)) << 20
PEAK_MB = 600


@pytest.fixture
def ckpt(tmp_path):
    """A LeNet-5 checkpoint with an optimizer (momentum buffers) and a normalizer."""
    model = fastcnn.models.lenet5()
    opt = fastcnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        opt._buffers = [np.zeros_like(q.data) for q in model.parameters()]
    path = tmp_path / "ck.npz"
    model.save(path, optimizer=opt, normalizer={"mode": "standardize", "input_dtype": "uint8",
                                                 "mean": np.array([0.13]), "std": np.array([0.31])},
               extra={"epoch": 1, "history": {"loss": [0.5]}})
    return path


def _with_header(path, change):
    header = checkpoint_header(path)
    change(header)
    rewrite_checkpoint(path, config=np.array(json.dumps(header)))
    return path


# --------------------------------------------------------------------------- bombs and sizes


def test_unused_deflated_member_is_never_inflated(ckpt):
    members = zip_members(ckpt) + [("junk.npy", zero_deflate_pieces(b"", BOMB), zipfile.ZIP_DEFLATED, BOMB, 0)]
    write_zip(ckpt, members)
    assert ckpt.stat().st_size < BOMB // 100
    rc, out, peak = peak_rss_mb_of(f"import fastcnn\nm = fastcnn.load({str(ckpt)!r})\nprint('LOADED')\n")
    assert rc == 0 and "LOADED" in out, out
    assert peak < PEAK_MB, f"peak {peak:.0f} MB"


def test_json_nested_200000_deep(ckpt):
    rewrite_checkpoint(ckpt, config=np.array('{"format": "fastcnn-checkpoint", "extra": ' + "[" * 200_000
                                             + "]" * 200_000 + "}"))
    with pytest.raises(ValueError, match="nested"):
        load_checkpoint(ckpt)


def test_optimizer_declaring_10_8_buffers_is_refused(ckpt):
    _with_header(ckpt, lambda h: h["optimizer"].update(num_buffers=10**8))
    with pytest.raises(ValueError, match="num_buffers"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("sizes", [(10**7, 10**7), (10**5, 10**5), (2**31, 1)])
def test_layer_sizes_needing_terabytes_are_refused_before_building(ckpt, sizes):
    def change(h):
        h["model"]["layers"][-1]["config"].update(in_features=sizes[0], out_features=sizes[1])
    _with_header(ckpt, change)
    code = (f"import fastcnn\ntry:\n    fastcnn.load({str(ckpt)!r})\n"
            f"except ValueError as e:\n    print('REFUSED', e)\n")
    rc, out, peak = peak_rss_mb_of(code, timeout=60)
    assert rc == 0 and "REFUSED" in out and "layer sizes" in out, out
    assert peak < PEAK_MB, f"peak {peak:.0f} MB"


def test_param_member_declaring_700_tib(ckpt):
    members = [(n, [npy_header_only((2**40, 1, 28, 28))], zipfile.ZIP_STORED, 128, None) if n == "param_0.npy"
               else m for m in zip_members(ckpt) for n in [m[0]]]
    write_zip(ckpt, members)
    with pytest.raises(ValueError, match="param_0"):
        load_checkpoint(ckpt)


def test_config_member_declaring_more_than_deflate_can_make(ckpt):
    members = [(n, p, zipfile.ZIP_STORED, 10**9 if n == "config.npy" else size, crc)
               for n, p, _, size, crc in zip_members(ckpt)]
    write_zip(ckpt, members)
    with pytest.raises(ValueError, match="corrupt|declares"):
        load_checkpoint(ckpt)


# --------------------------------------------------------------------------- non-regular files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_fifo_checkpoint_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "p.npz"
    os.mkfifo(fifo)
    code = (f"import fastcnn\ntry:\n    fastcnn.load({str(fifo)!r})\n"
            f"except ValueError as e:\n    print('REFUSED', e)\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env=repo_env())
    except subprocess.TimeoutExpired:
        pytest.fail("fastcnn.load of a FIFO hung")
    assert "REFUSED" in proc.stdout and "regular file" in proc.stdout, proc.stdout + proc.stderr


def test_directory_and_bad_path_types(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        load_checkpoint(tmp_path)
    with pytest.raises(TypeError, match="load_checkpoint: path"):
        load_checkpoint(3)
    with pytest.raises(TypeError, match="load_checkpoint: path"):
        load_checkpoint(None)


# --------------------------------------------------------------------------- non-finite values


@pytest.mark.parametrize("key", ["param_0", "param_9", "momentum_2", "normalizer_mean", "normalizer_std"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_arrays_are_refused(ckpt, key, value):
    arr = np.load(ckpt)[key].copy()
    arr.reshape(-1)[0] = value
    rewrite_checkpoint(ckpt, **{key: arr})
    with pytest.raises(ValueError, match=key):
        load_checkpoint(ckpt)


def test_normalizer_std_zero_is_refused(ckpt):
    rewrite_checkpoint(ckpt, normalizer_std=np.array([0.0]))
    with pytest.raises(ValueError, match="standard deviations"):
        load_checkpoint(ckpt)


def test_normalize_layer_std_zero_and_batchnorm_negative_variance(tmp_path):
    from fastcnn.layers import BatchNorm2d, Conv2d, Flatten, Linear, Normalize

    model = fastcnn.Sequential(Normalize(1, mean=[0.1], std=[0.3]), Conv2d(1, 2, 3), BatchNorm2d(2), Flatten(),
                               Linear(2 * 26 * 26, 10), input_shape=(1, 28, 28))
    path = tmp_path / "n.npz"
    model.save(path)
    keys = [k for k in np.load(path).files if k.startswith("buffer_")]
    std = next(k for k in keys if k.endswith("std"))
    var = next(k for k in keys if k.endswith("running_var"))
    rewrite_checkpoint(path, **{std: np.zeros_like(np.load(path)[std])})
    with pytest.raises(ValueError, match="standard deviations"):
        load_checkpoint(path)
    model.save(path)
    rewrite_checkpoint(path, **{var: -np.ones_like(np.load(path)[var])})
    with pytest.raises(ValueError, match="negative variances"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- a refused load changes nothing


def test_refused_load_leaves_the_rng_and_file_alone(ckpt):
    before = ckpt.read_bytes()
    rewrite_checkpoint(ckpt, param_0=np.full_like(np.load(ckpt)["param_0"], np.nan))
    broken = ckpt.read_bytes()
    fastcnn.manual_seed(5)
    a = fastcnn.models.lenet5().parameters()[0].data.copy()
    fastcnn.manual_seed(5)
    with pytest.raises(ValueError):
        load_checkpoint(ckpt)
    b = fastcnn.models.lenet5().parameters()[0].data.copy()
    np.testing.assert_array_equal(a, b)
    assert ckpt.read_bytes() == broken != before


def test_saving_nan_weights_is_refused_and_writes_nothing(tmp_path):
    """load refuses non-finite weights, so save refuses to write a checkpoint that could not be loaded."""
    model = fastcnn.models.lenet5()
    path = tmp_path / "old.npz"
    model.save(path)
    before = path.read_bytes()
    model.parameters()[2].data[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"save_model: param_2 holds NaN or infinite values"):
        model.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["old.npz"]
