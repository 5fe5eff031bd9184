"""What Numba is compiling now: a count and a clock of fastcnn's kernel compiles in this process.

Numba compiles a kernel the first time it is called with new argument types,
unless its disk cache already holds the machine code (then it loads it in
milliseconds).  On a machine that has never run fastcnn, the first training
step of LeNet-5 compiles about 20 kernels for 20-30 s.  This module listens
to Numba's ``numba:compile`` events (which fire only for a real compile, not
for a cache load) and keeps, for the kernels of fastcnn's own modules:

* how many top-level compiles have finished (:func:`kernels_compiled`);
  a kernel's nested helpers are part of its compile, not counted apart;
* the seconds spent compiling so far, the one under way included
  (:func:`compile_seconds`), so that a rate can leave the compile out;
* whether one is under way (:func:`compiling`);
* callbacks run when a compile starts (:func:`on_compile_start`), which is how
  :mod:`fastcnn.callbacks` says "compiling" within a second of the first one.

Numba compiles under one process-wide lock, so at most one compile is under
way in the process; nested compiles (helpers a kernel calls) happen inside it.
"""

import os
import threading
import time
import weakref

from numba.core import event

__all__ = ["kernels_compiled", "compile_seconds", "compiling", "on_compile_start", "cache_location",
           "CompileStatus"]


class _Watch(event.Listener):
    """The ``numba:compile`` listener: a depth counter, a clock and the start callbacks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.depth = 0
        self.count = 0
        self.seconds = 0.0
        self.started = None
        self.callbacks = []

    def on_start(self, ev):
        if not _is_fastcnn(ev) and self.depth == 0:
            return
        with self.lock:
            self.depth += 1
            if self.depth > 1:
                return
            self.started = time.perf_counter()
            callbacks = [ref() for ref in self.callbacks]
            self.callbacks = [ref for ref, callback in zip(self.callbacks, callbacks) if callback is not None]
        for callback in callbacks:
            if callback is not None:
                callback()

    def on_end(self, ev):
        with self.lock:
            if self.depth == 0:
                return
            self.depth -= 1
            if self.depth == 0:
                self.seconds += time.perf_counter() - self.started
                self.started = None
                self.count += 1


def _is_fastcnn(ev):
    dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    return module == "fastcnn" or module.startswith("fastcnn.")


_WATCH = _Watch()
event.register("numba:compile", _WATCH)


def kernels_compiled():
    """How many fastcnn kernels this process has compiled (not loaded from the cache) so far."""
    return _WATCH.count


def compile_seconds():
    """Seconds this process has spent compiling fastcnn kernels, the compile under way included."""
    with _WATCH.lock:
        started = _WATCH.started
        return _WATCH.seconds + (time.perf_counter() - started if started is not None else 0.0)


def compiling():
    """Whether a fastcnn kernel is being compiled now (in any thread of this process)."""
    return _WATCH.started is not None


def on_compile_start(method):
    """Call the bound ``method()`` whenever a top-level fastcnn compile starts; returns a function that stops it.

    The method runs in the compiling thread, before the compile, and must be
    quick (print a line, set a flag).  Only a weak reference is kept: once its
    object is gone (a ``fit`` that raised, say) it is dropped.
    """
    ref = weakref.WeakMethod(method)
    with _WATCH.lock:
        _WATCH.callbacks.append(ref)

    def remove():
        with _WATCH.lock:
            _WATCH.callbacks = [r for r in _WATCH.callbacks if r is not ref]

    return remove


def cache_location():
    """Where compiled kernels are kept, in words: ``NUMBA_CACHE_DIR`` when set, else the ``__pycache__``
    folders beside fastcnn's sources (Numba's user-wide cache folder where those cannot be written)."""
    from numba.core.config import CACHE_DIR

    if CACHE_DIR:
        return CACHE_DIR
    package = os.path.dirname(os.path.abspath(__file__))
    return f"the __pycache__ folders under {package} (or Numba's user-wide cache where those are read-only)"


class CompileStatus:
    """A status line while kernels compile: a message when the first one starts, then (optionally) a ticking count.

    ``show(text)`` gets the whole status text: once from the compiling thread
    when the first compile starts (``"compiling kernels for this CPU (first
    run only): 0 done, 0 s"``); with ``tick=True`` again every ``interval``
    seconds from a thread of its own while compiles go on, and a last time,
    with the total, when the status is left; ``short=True`` shortens the
    running text to ``"compiling kernels: 7 done, 12 s"`` (for a progress
    bar's description).  Use as a context manager; nothing is shown when
    nothing compiles.
    """

    def __init__(self, show, tick=True, interval=0.5, short=False):
        self.show = show
        self.tick = tick
        self.short = short
        self.interval = interval
        self._remove = None
        self._stop = threading.Event()
        self._thread = None
        self._announced = False
        self._count0 = self._seconds0 = 0

    def __enter__(self):
        self._count0, self._seconds0 = kernels_compiled(), compile_seconds()
        self._remove = on_compile_start(self._started)
        return self

    def __exit__(self, *exc):
        self._remove()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.show(self.text(done=True))
        return False

    def seconds(self):
        """Seconds spent compiling since the status was entered."""
        return compile_seconds() - self._seconds0

    def text(self, done=False):
        """The status: kernels compiled so far and the seconds it took."""
        n = kernels_compiled() - self._count0
        if self.short and not done:
            return f"compiling kernels: {n} done, {self.seconds():.0f} s"
        if n == 0 and not done:
            return "compiling kernels for this CPU (first run only; cached for next time)"
        if done:
            return f"compiled {n} kernel{'s' if n != 1 else ''} for this CPU in {self.seconds():.1f} s (cached)"
        return f"compiling kernels for this CPU (first run only): {n} done, {self.seconds():.0f} s"

    def _started(self):
        if self._announced:
            return
        self._announced = True
        self.show(self.text())
        if self.tick:
            self._thread = threading.Thread(target=_tick, args=(weakref.ref(self), self._stop, self.interval),
                                            name="fastcnn-compile-status", daemon=True)
            self._thread.start()


def _tick(status_ref, stop, interval):
    """The ticking thread of a :class:`CompileStatus`: ends when it is left or forgotten."""
    while not stop.wait(interval):
        status = status_ref()
        if status is None:
            return
        if compiling():
            status.show(status.text())
        del status
