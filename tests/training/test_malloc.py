"""fastcnn.malloc: glibc's thresholds set from the training and inference entry points, never at import, and the
environment's own malloc options or FASTCNN_KEEP_FREED_MEMORY=0 left alone."""

import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastcnn
from fastcnn import malloc

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(code, **env):
    """Run ``code`` in a fresh Python process (this checkout first on the path); its standard output, stripped."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    environ.update(env, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environ, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_blocks_are_reused_without_fresh_pages_once_set():
    """Three 8 MiB arrays freed and allocated again take fresh pages every time with glibc's default thresholds
    (the heap's free top, 24 MiB, is past the dynamic trim threshold and goes back to the system), and (almost)
    none once they are set."""
    code = """
        import resource
        import numpy as np
        import fastcnn
        from fastcnn import malloc
        assert malloc.state() == "not asked"  # importing fastcnn set nothing
        if SET:
            print(fastcnn.keep_freed_memory(), malloc.state(), end=" ")
        a, b, c = (np.ones(1 << 21, np.float32) for _ in range(3))  # 8 MiB each (the dynamic mmap threshold
        del a, b, c                                                 # moves up to 8 MiB on the first free)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            a, b, c = (np.ones(1 << 21, np.float32) for _ in range(3))  # 24 MiB freed: past the dynamic trim
            del a, b, c
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
    default = int(_run(code.replace("SET", "False")))
    words = _run(code.replace("SET", "True")).split()
    assert words[:2] == ["set", "set"]
    pages = 5 * 3 * (8 << 20) // 4096
    assert int(words[2]) < pages // 100, (words, default)
    assert default > pages // 8, default  # so the check above can fail: the default took fresh pages


@pytest.mark.parametrize("env, expected", [
    ({"FASTCNN_KEEP_FREED_MEMORY": "0"}, "disabled"),
    ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, "environment"),
    ({"MALLOC_MMAP_THRESHOLD_": "1000000"}, "environment"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}, "environment"),
])
def test_the_environment_and_the_opt_out_are_left_alone(env, expected, monkeypatch):
    for name in ("FASTCNN_KEEP_FREED_MEMORY", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert malloc._apply() == expected


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_fit_and_predict_set_it_and_the_state_is_reported():
    code = """
        import numpy as np
        import fastcnn
        from fastcnn import malloc
        from fastcnn.layers import Flatten, Linear
        model = fastcnn.Sequential(Flatten(), Linear(4, 2), input_shape=(1, 2, 2))
        x = np.zeros((3, 1, 2, 2), np.float32)
        print(malloc.state(), end=" | ")
        model.predict(x)
        print(malloc.state(), end=" | ")
        from fastcnn.bench import machine_info
        print(machine_info()["malloc"])
    """
    assert _run(code) == "not asked | set | set"
    assert _run(code, FASTCNN_KEEP_FREED_MEMORY="0") == "not asked | disabled | disabled"


def test_keep_freed_memory_is_idempotent():
    first = fastcnn.keep_freed_memory()
    assert first in ("set", "environment", "disabled", "not glibc", "failed")
    assert fastcnn.keep_freed_memory() == first == malloc.state()
    assert np.ones(3).sum() == 3  # and allocation still works
