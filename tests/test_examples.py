"""Every example runs in its tiny setting, so none can rot."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import repo_env

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script, expected", [
    ("train_lenet_mnist.py", "final test accuracy"),
    ("image_filters.py", "equals the loop convolution"),
    ("direct_vs_im2col.py", "winner f+b"),
])
def test_example_runs_in_tiny_mode(script, expected, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--tiny"], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path, env=repo_env())  # this checkout, installed or not
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout
    assert list(tmp_path.iterdir()) == []  # --tiny writes nowhere near the working directory
