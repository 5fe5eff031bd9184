"""Cached kernels go stale with the code they inline from other files (fastcnn.config.CACHE_STAMP)."""

import os
import shutil
import subprocess
import sys

from helpers import REPO

# a kernel of a file that does not change, inlining a helper of fastcnn.kernels._loops
_PROBE = """
from fastcnn.config import njit
from fastcnn.kernels._loops import valid_range

@njit
def probe():
    return valid_range(0, 0, 1, 5, 5)[1]

print(probe(), sum(probe.stats.cache_hits.values()))
"""


def _run(tmp_path, env):
    proc = subprocess.run([sys.executable, str(tmp_path / "probe.py")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    value, hits = proc.stdout.split()
    return int(value), int(hits)


def test_a_cached_kernel_is_recompiled_when_a_helper_it_inlines_changes(tmp_path):
    """Numba's own freshness stamp covers the kernel's file only: the kernel's cached code would keep the helper's
    old body.  With the digest of fastcnn's kernel sources in the stamp, it is compiled again."""
    shutil.copytree(REPO / "fastcnn", tmp_path / "pkg" / "fastcnn", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "probe.py").write_text(_PROBE)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "pkg"), NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               FASTCNN_CACHE="1", FASTCNN_COMPILE_HELPERS="0")
    assert _run(tmp_path, env) == (5, 0)  # compiled and cached
    assert _run(tmp_path, env) == (5, 1)  # loaded from the cache
    loops = tmp_path / "pkg" / "fastcnn" / "kernels" / "_loops.py"
    text = loops.read_text()
    assert "    return lo, max(lo, hi)\n" in text
    loops.write_text(text.replace("    return lo, max(lo, hi)\n", "    return lo, max(lo, hi) + 100\n"))
    assert _run(tmp_path, env) == (105, 0)  # the helper's new body, compiled afresh
