"""fastcnn works without the onnx package, and the ONNX functions name the extra that installs it."""

import subprocess
import sys

from helpers import repo_env

WITHOUT_ONNX = r"""
import sys
sys.modules["onnx"] = None  # "import onnx" raises ImportError, as where it is not installed
import numpy as np
import fastcnn, fastcnn.onnx, fastcnn.cli
model = fastcnn.models.lenet5()
assert model.predict(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)
for call in (lambda: fastcnn.onnx.export(model, "never.onnx"), lambda: fastcnn.onnx.load("never.onnx")):
    try:
        call()
    except ImportError as exc:
        print("ImportError:", exc)
"""

NOTHING_IMPORTED = r"""
import sys
import fastcnn, fastcnn.onnx, fastcnn.cli
loaded = sorted(m for m in ("onnx", "onnxruntime", "google.protobuf", "torch") if m in sys.modules)
print("loaded:", loaded)
"""


def _run(code, cwd):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=repo_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_fastcnn_works_without_onnx_and_the_functions_name_the_extra(tmp_path):
    out = _run(WITHOUT_ONNX, tmp_path)
    assert out.splitlines() == [
        "ImportError: fastcnn.onnx.export needs the onnx package: pip install 'fastcnn[onnx]'",
        "ImportError: fastcnn.onnx.load needs the onnx package: pip install 'fastcnn[onnx]'",
    ]
    assert list(tmp_path.iterdir()) == []


def test_importing_fastcnn_onnx_and_the_cli_loads_no_optional_package(tmp_path):
    assert _run(NOTHING_IMPORTED, tmp_path).strip() == "loaded: []"
