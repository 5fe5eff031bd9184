"""Every example runs in its tiny setting, so none can rot."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["train_lenet_mnist.py"])
def test_example_runs_in_tiny_mode(script):
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--tiny"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "final test accuracy" in done.stdout
