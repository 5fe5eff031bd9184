"""PyTorch's side of a benchmark, in a process of its own.

The benchmarks time PyTorch in a separate Python process, driven from
fastcnn's: the two are still timed in turns within one run (the order of
turns, the pauses and the medians are the benchmark's), but neither shares a
process with the other's thread pool.  In one process PyTorch's OpenMP
runtime and the one of Numba's ``omp`` threading layer both keep worker
threads, and PyTorch's calls were seen to stall (about 31 ms instead of
0.1-0.3 ms, now and then) beside fastcnn's idle workers; on a loaded 2-core
machine a PyTorch LeNet-5 epoch took 14 s instead of 0.35 s.  A user runs one
framework per process; so does the benchmark.

:class:`TorchWorker` starts the process (:func:`serve`, which imports torch and
never runs a fastcnn kernel).  ``worker.build(builder,
*args)`` calls a builder function, named ``"module:function"`` (the benchmark
modules' own), in the worker with the ``torch`` module as its first argument
and the (pickled) arguments after; what it returns stays there, behind the
:class:`Remote` handle returned.  :func:`fastcnn.bench.timing.time_call`
times a handle in the worker, so that only PyTorch's own work is measured,
never the pipe.  The worker has the thread interface of the ``torch`` module
that :func:`fastcnn.bench.timing.use_threads` and
:func:`fastcnn.bench.machine.machine_info` use (``get_num_threads``,
``set_num_threads``).
"""

import atexit
import contextlib
import importlib
import os
import pickle
import subprocess
import sys
import traceback

__all__ = ["TorchWorker", "Remote", "session", "torch_installed", "serve"]


def torch_installed():
    """Whether PyTorch can be imported (checked without importing it into this process)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


class Remote:
    """A handle on an object the worker built: call it, call its methods, time it (in the worker).

    ``args`` are passed on every call and timing (see :meth:`bind`).  Other
    public attributes are the object's methods, called in the worker; the
    handle is a context manager when the object is one.
    """

    def __init__(self, worker, key, args=()):
        self._worker, self._key, self._args = worker, key, tuple(args)

    def __call__(self, *args):
        return self._worker.request("call", self._key, None, self._args + args)

    def method(self, name, *args):
        """``obj.name(*args)`` in the worker; its (pickled) result."""
        return self._worker.request("call", self._key, name, args)

    def __getattr__(self, name):
        """``handle.name(*args)`` calls ``obj.name(*args)`` in the worker (public names only)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.method(name, *args)

    def __enter__(self):
        self.method("__enter__")
        return self

    def __exit__(self, *exc):
        self.method("__exit__", None, None, None)

    def bind(self, *args):
        """A handle on the same object whose calls and timings pass ``args`` first."""
        return Remote(self._worker, self._key, self._args + args)

    def time_call(self, number):
        """Mean seconds of ``number`` calls, timed in the worker (:func:`fastcnn.bench.timing.time_call`).

        A builder that returned ``(fn, setup)`` is timed as ``fn(setup())``,
        the setup calls excluded.
        """
        return self._worker.request("time", self._key, number, self._args)

    def each_call(self, number):
        """Seconds of each of ``number`` back-to-back calls, timed in the worker."""
        return self._worker.request("each", self._key, number, self._args)


class TorchWorker:
    """A Python process that builds and times PyTorch's side of a benchmark; a context manager.

    Parameters
    ----------
    threads : int, optional
        ``torch.set_num_threads`` in the worker (default: PyTorch's own).
    """

    def __init__(self, threads=None):
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
        self._proc = subprocess.Popen([sys.executable, "-c", "from fastcnn.bench.torch_worker import serve; serve()"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env=dict(os.environ, PYTHONPATH=path))
        self._next = 0
        if threads is not None:
            self.set_num_threads(threads)

    def request(self, op, *payload):
        """Send one request; its result, or RuntimeError with the worker's traceback."""
        if self._proc is None:
            raise RuntimeError("TorchWorker: the worker has been closed")
        try:
            pickle.dump((op, *payload), self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
            status, value = pickle.load(self._proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as e:
            self._kill()
            raise RuntimeError(f"TorchWorker: the PyTorch worker process died: {e!r}") from None
        except BaseException:  # interrupted mid-exchange: a reply may be left in the pipe, so the worker goes
            self._kill()
            raise
        if status != "ok":
            raise RuntimeError(f"TorchWorker: {op} failed in the PyTorch worker:\n{value}")
        return value

    def build(self, builder, *args):
        """``builder(torch, *args)`` in the worker (``builder`` is ``"module:function"``); a :class:`Remote` on it."""
        key = self._next
        self._next += 1
        self.request("build", key, builder, args)
        return Remote(self, key)

    def get_num_threads(self):
        return self.request("get_threads")

    def set_num_threads(self, n):
        self.request("set_threads", int(n))

    def alive(self):
        """Whether the worker process is running."""
        return self._proc is not None and self._proc.poll() is None

    def forget(self):
        """Drop every object built so far (their handles stop working); the process stays."""
        self.request("forget")

    def _kill(self):
        proc, self._proc = self._proc, None
        proc.kill()
        proc.wait()

    def close(self):
        """Stop the worker (idempotent)."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        try:
            proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_SHARED = None


@contextlib.contextmanager
def session():
    """The process's shared :class:`TorchWorker` for one benchmark, or None when PyTorch is not installed.

    The worker is started on first use (importing torch there takes a few
    seconds) and kept for the benchmarks that follow in this process; what
    a session built is dropped when it ends.
    """
    global _SHARED
    if not torch_installed():
        yield None
        return
    if _SHARED is None or not _SHARED.alive():
        _SHARED = TorchWorker()
        atexit.register(_SHARED.close)
    try:
        yield _SHARED
    finally:
        if _SHARED.alive():
            _SHARED.forget()


# --------------------------------------------------------------------------- the worker process


def _resolve(name):
    """The function ``"module:function"``, from fastcnn's benchmark modules only."""
    module, _, attr = name.partition(":")
    if not module.startswith("fastcnn.bench.") or not attr:
        raise ValueError(f"not a benchmark builder: {name!r}")
    return getattr(importlib.import_module(module), attr)


def _handle(torch, objects, op, payload):
    from .timing import no_gc, time_call, time_each_call

    if op == "build":
        key, builder, args = payload
        objects[key] = _resolve(builder)(torch, *args)
        return None
    if op == "call":
        key, method, args = payload
        obj = objects[key]
        result = (obj if method is None else getattr(obj, method))(*args)
        return None if result is obj else result  # (a context manager's __enter__)
    if op in ("time", "each"):
        key, number, args = payload
        obj = objects[key]
        fn, setup = obj if isinstance(obj, tuple) else (obj, None)
        call = (lambda: fn(*args)) if args else fn
        with no_gc():
            return time_call(call, setup, number) if op == "time" else time_each_call(call, number)
    if op == "forget":
        objects.clear()
        return None
    if op == "get_threads":
        return torch.get_num_threads()
    if op == "set_threads":
        torch.set_num_threads(payload[0])
        return None
    raise ValueError(f"unknown request {op!r}")


def serve():
    """The worker's main loop: answer requests on stdin with results on stdout until stdin closes."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed goes to stderr, not into the replies
    import torch

    objects = {}
    while True:
        try:
            op, *payload = pickle.load(inp)
        except EOFError:
            return
        try:
            reply = pickle.dumps(("ok", _handle(torch, objects, op, payload)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            reply = pickle.dumps(("error", traceback.format_exc()))
        out.write(reply)
        out.flush()
