"""Helpers shared by the test files, each in one place.

``naive.py`` holds the oracles (slow loops, the SGD update, central differences) and ``conftest.py`` the
fixtures; everything else that more than one test file uses lives here: paths, tolerant comparison, seeded
inputs, the gradient checks (one for kernels, one harness for layers), weight snapshots, fake MNIST files,
checkpoint surgery and running the command line in-process.  ``conftest.py`` puts this folder on
``sys.path``, so every test file, in any tier folder, says ``from helpers import ...``.
"""

import contextlib
import gzip
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

import naive as nv
from naive import numerical_grad

# --------------------------------------------------------------------------- paths

#: The repository root (the folder holding ``fastcnn/``, ``README.md``, ``examples/``).
REPO = Path(__file__).resolve().parent.parent
#: The workspace's copy of the four MNIST archives; the tests that need it skip when it is absent.
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def repo_env(**overrides):
    """``os.environ`` with ``overrides``, and the repository first on ``PYTHONPATH``.

    For subprocesses that must import this checkout of fastcnn, whatever the current directory.
    """
    env = dict(os.environ, **overrides)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# --------------------------------------------------------------------------- comparison and inputs

#: Floating dtypes every kernel must support.
FLOAT_DTYPES = [np.float32, np.float64]

#: Relative tolerance per dtype (absolute tolerance is scaled by the magnitude
#: of the expected array, see :func:`assert_close`).
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def tol(dtype):
    """The relative tolerance of :data:`RTOL` for ``dtype``."""
    return RTOL[np.dtype(dtype)]


def assert_close(actual, expected, dtype, rtol=None, atol=None, err_msg=""):
    """Compare ``actual`` with a float64 reference computed from the same inputs.

    ``rtol`` defaults to 1e-4 (float32) or 1e-10 (float64); ``atol`` defaults to
    ``rtol * max(1, max|expected|)`` so that entries that cancel to ~0 are judged
    on the scale of the whole array.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (
        f"shape mismatch: got {actual.shape}, expected {expected.shape} {err_msg}"
    )
    if rtol is None:
        rtol = tol(dtype)
    if atol is None:
        scale = float(np.max(np.abs(expected))) if expected.size else 0.0
        atol = rtol * max(1.0, scale)
    np.testing.assert_allclose(
        actual.astype(np.float64), expected, rtol=rtol, atol=atol, err_msg=err_msg
    )


def randn(rng, shape, dtype):
    """Standard-normal array of ``dtype`` (C-contiguous)."""
    return np.ascontiguousarray(rng.standard_normal(shape).astype(dtype))


def assert_depthwise_backward_matches_torch(torch, x_shape, m, stride, dtype, rng):
    """dx, dw and db of ``fastcnn.kernels.conv2d_backward`` in ``dtype`` for a 3x3 padding-1 depthwise layer
    (channel multiplier ``m``, bias, ``stride``) against PyTorch's autograd in float64, on standard-normal x, w, b
    and dy."""
    from fastcnn import kernels

    C = x_shape[1]
    w_shape = (m * C, 1, 3, 3)
    x, w, b = (randn(rng, s, np.float64) for s in (x_shape, w_shape, w_shape[:1]))
    xt, wt, bt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride, 1, 1, C)
    dy = rng.standard_normal(tuple(yt.shape))
    want = torch.autograd.grad(yt, (xt, wt, bt), torch.from_numpy(dy))
    got = kernels.conv2d_backward(dy.astype(dtype), x.astype(dtype), w.astype(dtype), stride, 1, groups=C)
    for g, t, what in zip(got, want, ("dx", "dw", "db")):
        assert g.dtype == dtype
        assert_close(g, t.numpy(), dtype, err_msg=what)


def conv_inputs(rng, case, dtype):
    """``x, w, b, stride, padding`` for ``naive.CONV_CASES[case]``: standard normal, drawn in that order."""
    N, C, H, W, Kout, R, S, stride, padding = nv.CONV_CASES[case]
    x = randn(rng, (N, C, H, W), dtype)
    w = randn(rng, (Kout, C, R, S), dtype)
    b = randn(rng, (Kout,), dtype)
    return x, w, b, stride, padding


def distinct_values(rng, shape, spacing=0.05):
    """Random float64 array whose entries are pairwise at least ``spacing`` apart.

    No +-1e-6 perturbation can then change a max-pooling argmax (no near-ties).
    """
    n = int(np.prod(shape))
    return (rng.permutation(n) * spacing - n * spacing / 2).reshape(shape).astype(np.float64)


def away_from_zero(rng, shape, gap=1e-2):
    """Standard normal entries with |x| >= gap (so a kink at 0, as ReLU's, is never within +-1e-6)."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, 1.0, -1.0) * (np.abs(x) + gap)


# --------------------------------------------------------------------------- gradient checks


@contextlib.contextmanager
def single_thread():
    """Run the body on one fastcnn thread, then restore the thread count.

    Finite differences make hundreds of tiny kernel calls; on a loaded machine parallel
    launches dominate them.
    """
    import fastcnn

    before = fastcnn.get_num_threads()
    fastcnn.set_num_threads(1)
    try:
        yield
    finally:
        fastcnn.set_num_threads(before)


def check_grad(analytic, f, a, name, rtol=1e-6, atol=None):
    """A kernel's gradient ``analytic`` of the scalar ``f()`` with respect to ``a``, against central differences.

    ``f`` must read ``a`` (float64), which :func:`naive.numerical_grad` perturbs in place.
    ``atol`` defaults to ``rtol * max(1, max|numerical gradient|)``.
    """
    num = numerical_grad(f, a)
    assert analytic is not None, f"{name}: backward returned None"
    assert analytic.shape == a.shape, f"{name}: shape {analytic.shape} != {a.shape}"
    if atol is None:
        atol = rtol * max(1.0, float(np.max(np.abs(num))))
    np.testing.assert_allclose(analytic, num, rtol=rtol, atol=atol, err_msg=f"gradient of {name}")


def check_grad_by_block(analytic, f, a, name, rtol=1e-6, atol=None):
    """As :func:`check_grad` for ``L = sum(f())``, where ``f()`` is ``L`` split in blocks and ``a[j]`` moves only
    the block ``f()[j]``; the reference is :func:`naive.numerical_grad_by_block` (the same central difference
    per element, one pair of calls for an element of every block).

    First asserts the blocks: a step in the middle element of ``a[j]`` alone leaves every other block of
    ``f()`` bit for bit as it was, for every ``j``.
    """
    base = np.asarray(f(), dtype=np.float64)
    assert base.shape == (len(a),), f"{name}: f() gives {base.shape}, expected one value per block ({len(a)},)"
    middle = tuple(n // 2 for n in a.shape[1:])
    for j in range(len(a)):
        old = a[(j,) + middle]
        a[(j,) + middle] = old + 1e-3
        moved = np.asarray(f(), dtype=np.float64)
        a[(j,) + middle] = old
        others = np.arange(len(a)) != j
        assert np.array_equal(moved[others], base[others]), f"{name}[{j}] moves blocks other than its own"
    num = nv.numerical_grad_by_block(f, a)
    assert analytic is not None, f"{name}: backward returned None"
    assert analytic.shape == a.shape, f"{name}: shape {analytic.shape} != {a.shape}"
    if atol is None:
        atol = rtol * max(1.0, float(np.max(np.abs(num))))
    np.testing.assert_allclose(analytic, num, rtol=rtol, atol=atol, err_msg=f"gradient of {name}")


def check_layer_grads(layer, x, rng, rtol=1e-6, atol=1e-8):
    """The layer-checking harness: backward's input gradient and every parameter gradient, float64.

    The scalar is ``L = sum(layer.forward(x) * R)`` for ``R`` drawn from ``rng`` (one standard-normal
    array of the output's shape, drawn after the first forward); the analytic gradients are
    ``layer.backward(R)`` and each ``p.grad`` (zeroed first), the reference is central differences
    (:func:`naive.numerical_grad`) of ``L``.  The layer is put in training mode and run on one thread.
    ``x`` is copied to float64; the layer must be float64 too.
    """
    with single_thread():
        layer.train()
        x = np.array(x, dtype=np.float64)
        y = layer.forward(x.copy())
        R = rng.standard_normal(y.shape)
        for p in layer.parameters():
            p.grad[...] = 0
        dx = layer.backward(R.copy())
        analytic_params = [p.grad.copy() for p in layer.parameters()]
        assert dx.shape == x.shape and dx.dtype == np.float64

        def loss():
            return float(np.sum(layer.forward(x.copy()) * R))

        np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=rtol, atol=atol, err_msg="input gradient")
        for i, p in enumerate(layer.parameters()):
            assert p.grad.dtype == np.float64
            np.testing.assert_allclose(analytic_params[i], numerical_grad(loss, p.data), rtol=rtol, atol=atol,
                                       err_msg=f"gradient of parameter {i} {p!r}")


# --------------------------------------------------------------------------- weights


def weights(model):
    """Copies of the data of ``model.parameters()``, in order: a snapshot to compare later."""
    return [p.data.copy() for p in model.parameters()]


def assert_same_weights(actual, expected):
    """Two snapshots (lists of arrays, as :func:`weights` makes) are equal, entry for entry."""
    assert len(actual) == len(expected), f"{len(actual)} parameters, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_array_equal(a, e, err_msg=f"parameter {i} differs")


def copy_into_torch(torch, model, tmodel):
    """Copy a fastcnn model's parameters into its PyTorch twin (same order, same shapes: asserted)."""
    params = model.parameters()
    tparams = list(tmodel.parameters())
    assert [tuple(p.shape) for p in params] == [tuple(t.shape) for t in tparams]
    with torch.no_grad():
        for p, t in zip(params, tparams):
            t.copy_(torch.from_numpy(p.data))


# --------------------------------------------------------------------------- IDX files and fake MNIST

#: IDX type codes and the numpy dtype each one stores.
IDX_TYPE_CODES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.int16,
    0x0C: np.int32,
    0x0D: np.float32,
    0x0E: np.float64,
}


def idx_bytes(arr, code=None):
    """Encode ``arr`` as an IDX file (header + big-endian data); ``code`` defaults to the one of its dtype."""
    arr = np.asarray(arr)
    if code is None:
        code = {np.dtype(v): k for k, v in IDX_TYPE_CODES.items()}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in arr.shape
    )
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr, gz=False, code=None):
    """Write ``arr`` as an IDX file at ``path`` (gzip-compressed when ``gz``); return ``path``."""
    data = idx_bytes(arr, code)
    if gz:
        data = gzip.compress(data)
    Path(path).write_bytes(data)
    return path


def make_fake_mnist(directory, n_train=12, n_test=5, seed=1, gz=True, dot=False, draw_dtype=np.uint8):
    """Random images and labels under MNIST's four file names in ``directory`` (created if needed).

    Drawn from ``np.random.default_rng(seed)`` in the order train images, train labels, test images,
    test labels, as integers of ``draw_dtype`` (``np.uint8`` and ``np.int64`` draw different values:
    each caller keeps the data its tests were written with), written as uint8 IDX files named
    ``train-images-idx3-ubyte[.gz]`` (``train-images.idx3-ubyte`` with ``dot``).

    Returns
    -------
    dict
        ``"train-images"``, ``"train-labels"``, ``"t10k-images"``, ``"t10k-labels"``: the uint8 arrays written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images": rng.integers(0, 256, (n_train, 28, 28), dtype=draw_dtype),
        "train-labels": rng.integers(0, 10, n_train, dtype=draw_dtype),
        "t10k-images": rng.integers(0, 256, (n_test, 28, 28), dtype=draw_dtype),
        "t10k-labels": rng.integers(0, 10, n_test, dtype=draw_dtype),
    }
    arrays = {stem: arr.astype(np.uint8) for stem, arr in arrays.items()}
    for stem, arr in arrays.items():
        sep = "." if dot else "-"
        name = f"{stem}{sep}idx{arr.ndim}-ubyte" + (".gz" if gz else "")
        write_idx(directory / name, arr, gz=gz)
    return arrays


# --------------------------------------------------------------------------- checkpoint files


def checkpoint_arrays(path):
    """Every array of the ``.npz`` file at ``path``, by name, in the file's order (no pickles)."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def checkpoint_header(path):
    """The JSON header (the ``config`` entry) of a checkpoint, as a dict."""
    return json.loads(str(np.load(path, allow_pickle=False)["config"]))


def rewrite_checkpoint(path, **changes):
    """Rewrite the ``.npz`` at ``path`` with entries replaced by ``changes``; a change to None removes one."""
    arrays = checkpoint_arrays(path)
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)


# --------------------------------------------------------------------------- the command line


def run_main(argv, capsys):
    """Run ``fastcnn.cli.main(argv)`` in-process; return (status, stdout, stderr). No traceback reaches the user."""
    from fastcnn.cli import main

    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err


def assert_one_line_error(status, err, expected_status, *fragments):
    """The command failed with ``expected_status`` and one ``fastcnn: error: ...`` line holding every fragment."""
    assert status == expected_status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastcnn: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------- hostile files (issue 12)


def zero_deflate_pieces(prefix, total, chunk=1 << 20):
    """A raw deflate stream of ``prefix`` followed by ``total`` zero bytes, as a list of pieces.

    Made from one compressed block of ``chunk`` zeros repeated (a full flush resets the compressor, so
    every block compresses alike): a 3 GiB stream is about 13 MB and is never held inflated.
    """
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(total, chunk)
    return [head] + [block] * n + [c.compress(bytes(rest)) + c.flush()]


def write_gzip_bomb(path, prefix, total):
    """A gzip file holding ``prefix`` then ``total`` zero bytes, written piece by piece (the CRC is left 0)."""
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        for piece in zero_deflate_pieces(prefix, total):
            f.write(piece)
        f.write(struct.pack("<LL", 0, (len(prefix) + total) & 0xFFFFFFFF))
    return path


def write_zip(path, members):
    """Write a zip archive by hand: ``members`` is a list of ``(name, pieces, method, file_size, crc)``.

    ``pieces`` are the already-compressed bytes (``zipfile.ZIP_STORED`` or ``ZIP_DEFLATED`` raw
    deflate); ``file_size`` is the uncompressed size written in the headers, so a member may lie; a
    ``crc`` of None is computed from the pieces of a stored member.
    """
    central = []
    with open(path, "wb") as f:
        for name, pieces, method, file_size, crc in members:
            if crc is None:
                crc = zlib.crc32(b"".join(pieces))
            raw = name.encode()
            size = sum(len(p) for p in pieces)
            offset = f.tell()
            f.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, size, file_size,
                                len(raw), 0) + raw)
            for piece in pieces:
                f.write(piece)
            central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, size,
                                       file_size, len(raw), 0, 0, 0, 0, 0o644 << 16, offset) + raw)
        start = f.tell()
        for entry in central:
            f.write(entry)
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), f.tell() - start,
                            start, 0))
    return path


def zip_members(path):
    """``(name, [bytes], method, file_size, crc)`` of every member of a zip file, for :func:`write_zip`."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return [(i.filename, [zf.read(i)], zipfile.ZIP_STORED, i.file_size, i.CRC) for i in zf.infolist()]


def npy_bytes(arr):
    """The ``.npy`` file of ``arr`` as bytes."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npy_header_only(shape, descr="<f4"):
    """A ``.npy`` header declaring ``shape`` of ``descr`` with no data after it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def peak_rss_mb_of(code, timeout=120, **env):
    """Run ``code`` in a fresh Python; return (returncode, stdout+stderr, its peak resident memory in MB)."""
    import subprocess
    import sys

    # VmHWM (Linux) is this process's own high-water mark; ru_maxrss also counts the parent's pages at the fork
    # before exec, so after a large parent (pytest with torch loaded) it reported 400-700 MB for a 160 MB child
    script = (code + "\nimport resource, sys\n"
              "try:\n"
              "    peak = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
              "except (OSError, IndexError):\n"
              "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "sys.stdout.write('\\nPEAK_KB=%d\\n' % peak)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                          env=repo_env(**env))
    out = proc.stdout + proc.stderr
    peak = [int(line.split("=")[1]) for line in out.splitlines() if line.startswith("PEAK_KB=")]
    return proc.returncode, out, (peak[-1] / 1024 if peak else float("nan"))


# --------------------------------------------------------------------------- cases in a child process (fuzzing)

_CHILD_SCRIPT = r'''
import contextlib, hashlib, importlib, io, json, signal, sys, traceback


def status_kb(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: resets VmHWM, the peak resident memory, to the current value
        return True
    except OSError:
        return False


class CaseTimeout(BaseException):
    pass


def on_alarm(signum, frame):
    raise CaseTimeout()


def describe(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        d = {"shape": list(value.shape), "dtype": value.dtype.str, "contiguous": bool(value.flags.c_contiguous),
             "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}
        if value.size and value.dtype.kind in "biuf":
            d["finite"] = bool(np.isfinite(value).all()) if value.dtype.kind == "f" else True
            d["min"], d["max"] = (float(value.min()), float(value.max())) if d["finite"] else (None, None)
        return {"ndarray": d}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {"repr": repr(value)[:200]}


def run_case(case_id, target, args, kwargs, timeout):
    module, _, name = target.partition(":")
    fn = importlib.import_module(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    out, err = io.StringIO(), io.StringIO()
    result = {"id": case_id, "base_mb": (status_kb("VmRSS:") or 0) / 1024}
    can_peak = reset_peak()
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            value = fn(*args, **kwargs)
        signal.alarm(0)
        result.update(status="returned", value=describe(value))
    except CaseTimeout:
        result.update(status="hung")
    except SystemExit as exc:
        signal.alarm(0)
        code = exc.code if exc.code is None or isinstance(exc.code, int) else str(exc.code)
        result.update(status="exit", code=code)
    except BaseException as exc:
        signal.alarm(0)
        result.update(status="raised", type=type(exc).__name__, mro=[c.__name__ for c in type(exc).__mro__],
                      message=str(exc), traceback=traceback.format_exc()[-3000:])
    finally:
        signal.alarm(0)
    peak = status_kb("VmHWM:")
    result.update(peak_mb=peak / 1024 if can_peak and peak else None, stdout=out.getvalue()[-4000:],
                  stderr=err.getvalue()[-4000:])
    return result


def main(cases_path, results_path):
    with open(cases_path) as f:
        spec = json.load(f)
    exec(spec["setup"], {"__name__": "fuzz_setup"})
    signal.signal(signal.SIGALRM, on_alarm)
    with open(results_path, "a") as log:
        for case_id, target, args, kwargs in spec["cases"]:
            log.write(json.dumps({"id": case_id, "status": "started"}) + "\n")
            log.flush()
            log.write(json.dumps(run_case(case_id, target, args, kwargs, spec["case_timeout"])) + "\n")
            log.flush()


main(sys.argv[1], sys.argv[2])
'''


def run_cases_in_child(cases, setup="", case_timeout=20, cwd=None, startup_timeout=180, **env):
    """Run calls in a fresh Python, one after another, and report each one's outcome.

    A crash (segfault, abort, ``os._exit``) or a hang fails only the case it happened in: the child is
    restarted for the cases after it.

    Parameters
    ----------
    cases : list of (str, str, list, dict)
        ``(case_id, "module:function", args, kwargs)``; the arguments must be JSON.
    setup : str
        Python code the child runs once before the cases (to lower a reader's limit, say).
    case_timeout : int
        Seconds one case may run: ``SIGALRM`` interrupts it (status ``"hung"``), and a child that does not
        answer the alarm is killed ``10`` s later (``"hung"`` too).
    cwd : path, optional
        The child's working directory.
    **env
        Environment variables for the child (see :func:`repo_env`).

    Returns
    -------
    dict
        ``{case_id: result}``; ``result["status"]`` is ``"returned"`` (``value``: the return value with every
        array replaced by its shape, dtype string, min, max, finiteness and SHA-256, bytes by their length and
        SHA-256), ``"raised"`` (``type``, ``mro``: the names of its classes, ``message``, ``traceback``),
        ``"exit"`` (``code`` of a SystemExit), ``"hung"`` or ``"died"`` (``output``: the child's last output).
        Every result but ``"died"`` holds ``stdout``, ``stderr`` (what the call printed), ``base_mb`` (resident
        memory before the call) and ``peak_mb`` (the peak during it; None where Linux's ``clear_refs`` is
        missing).
    """
    import subprocess
    import sys
    import tempfile
    import time

    results, todo = {}, list(cases)
    with tempfile.TemporaryDirectory(prefix="fastcnn-child-") as d:
        while todo:
            cases_path, results_path, log_path = (os.path.join(d, n) for n in ("cases.json", "results.jsonl", "log"))
            with open(cases_path, "w") as f:
                json.dump({"setup": setup, "case_timeout": case_timeout, "cases": todo}, f)
            open(results_path, "w").close()
            with open(log_path, "wb") as log:
                proc = subprocess.Popen([sys.executable, "-c", _CHILD_SCRIPT, cases_path, results_path], cwd=cwd,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        env=repo_env(**env))
                started, current, since, hung, pending = time.monotonic(), None, None, False, ""
                with open(results_path) as feed:
                    while True:
                        running = proc.poll() is None
                        pending += feed.read()
                        *lines, pending = pending.split("\n")  # a line the child is still writing stays pending
                        for entry in map(json.loads, lines):
                            if entry["status"] == "started":
                                current, since = entry["id"], time.monotonic()
                            else:
                                results[entry["id"]], current = entry, None
                        if not running:
                            break
                        now = time.monotonic()
                        if (current is not None and now - since > case_timeout + 10) or (
                                current is None and not results and now - started > startup_timeout):
                            proc.kill()
                            hung = True
                        time.sleep(0.01)
                    proc.wait()
            with open(log_path, "rb") as f:
                output = f.read()[-4000:].decode("utf-8", "replace")
            ids = [c[0] for c in todo]
            if current is None:
                missing = [i for i in ids if i not in results]
                for i in missing:  # the child ended before starting them (a failing setup)
                    results[i] = {"id": i, "status": "died", "returncode": proc.returncode, "output": output}
                break
            results[current] = {"id": current, "status": "hung" if hung else "died", "returncode": proc.returncode,
                                "output": output}
            todo = todo[ids.index(current) + 1:]
    return results


def randomise_norms(model, rng):
    """Running statistics and affine parameters of every BatchNorm of ``model`` away from their initial values
    (so that eval-mode fusion and save/load have something to get wrong); returns ``model``."""
    from fastcnn.layers import BatchNorm1d, BatchNorm2d

    for top in model.layers:
        for layer in top.walk():
            if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
                c = layer.num_features
                layer.running_mean[:] = rng.normal(size=c)
                layer.running_var[:] = rng.random(c) + 0.2
                if layer.affine:
                    layer.weight.data[:] = rng.normal(size=c)
                    layer.bias.data[:] = rng.normal(size=c)
    return model
