"""examples/onnx_roundtrip.py runs in its tiny setting (tests/test_examples.py runs the examples that need no extra)."""

import subprocess
import sys

import pytest

from helpers import REPO, repo_env

pytest.importorskip("onnx.helper")  # (a bare "onnx" could resolve to this tests/onnx folder)
pytest.importorskip("onnxruntime")


def test_onnx_example_runs_in_tiny_mode(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "examples" / "onnx_roundtrip.py"), "--tiny"], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path, env=repo_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ONNX Runtime gives fastcnn's outputs" in done.stdout and "loaded back" in done.stdout
    assert list(tmp_path.iterdir()) == []  # --tiny writes nowhere near the working directory
