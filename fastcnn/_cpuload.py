"""How busy the cores are, and the thread governor that keeps training fast on a shared machine.

On a machine where another CPU-bound process runs, a parallel kernel's threads
are descheduled in turn, and each parallel region waits for its slowest
thread: with one competitor on two cores, LeNet-5 trained at 5,052 images/s on
two threads and 17,598 on one.  Every task of fastcnn's kernels is sized from
the thread count the plans were made for (:func:`fastcnn.get_num_threads`),
never from the threads that happen to run it, so the number of threads that
*run* can change from batch to batch without changing a single bit of the
results (``tests/training/test_dynamic_threads.py`` checks it).  That is what
:class:`ThreadGovernor` does during :meth:`~fastcnn.Sequential.fit`: every 0.2 s
it reads how much CPU time other processes took on this process's cores
(``/proc/stat`` minus this process's own time) and runs the parallel kernels on
the cores left free, at least one and at most the planned count, as OpenMP's
``OMP_DYNAMIC`` does from the load average.  ``FASTCNN_DYNAMIC_THREADS=0``
turns it off; where ``/proc/stat`` cannot be read (not Linux) it does nothing.
A :meth:`~fastcnn.Sequential.fit` started within 30 s of the last one (a loop
calling it once per epoch) starts on the thread count that one ended on.
"""

import os
import threading
import time

import numba

from . import config

#: Seconds between two readings of the load.
INTERVAL = 0.2


def _cpus():
    """The CPUs this process may run on (indices into ``/proc/stat``'s ``cpuN`` lines)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


class CpuSampler:
    """Cumulative busy and total time of a set of CPUs, and this process's own CPU time, in seconds.

    Parameters
    ----------
    cpus : list of int or None
        The CPUs to watch (default: those this process may run on).
    """

    def __init__(self, cpus=None):
        self.cpus = set(_cpus() if cpus is None else cpus)
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def sample(self):
        """``(busy, own)`` seconds so far: the watched CPUs' busy time and this process's CPU time.

        None where ``/proc/stat`` cannot be read.
        """
        busy = 0
        try:
            with open("/proc/stat") as f:
                for line in f:
                    if not line.startswith("cpu") or line.startswith("cpu "):
                        continue
                    name, *fields = line.split()
                    if int(name[3:]) in self.cpus:
                        values = [int(v) for v in fields[:8]]
                        busy += sum(values) - values[3] - values[4]  # all but idle and iowait
        except (OSError, ValueError, IndexError):
            return None
        return busy / self.tick, time.process_time()


def busy_cores(interval=0.3):
    """How many cores other processes kept busy during ``interval`` seconds (read from ``/proc/stat``).

    Call it while this process is idle (before a benchmark starts): 0 on an
    idle machine, about 1 with one CPU-bound process running.  None where
    ``/proc/stat`` cannot be read (not Linux).
    """
    sampler = CpuSampler(range(os.cpu_count() or 1))
    first = sampler.sample()
    start = time.perf_counter()
    time.sleep(interval)
    last = sampler.sample()
    if first is None or last is None:
        return None
    busy = ((last[0] - first[0]) - (last[1] - first[1])) / (time.perf_counter() - start)
    return min(max(0.0, busy), float(len(sampler.cpus)))  # /proc/stat counts in ticks: noise past the bounds


def dynamic_threads_enabled():
    """False when ``FASTCNN_DYNAMIC_THREADS=0`` (read at each call, so a test or a script can set it)."""
    return os.environ.get("FASTCNN_DYNAMIC_THREADS", "1") != "0"


class ThreadGovernor:
    """Runs the parallel kernels on the cores other processes leave free (see the module docstring).

    Parameters
    ----------
    threads : int
        The planned count: the most threads that run, and the count every
        kernel's tasks are sized from (pinned with :func:`fastcnn.set_num_threads`).
    sampler : CpuSampler or None
        Where the load is read (tests pass a fake one).
    interval : float
        Seconds between readings.
    clock : callable
        Seconds now (``time.perf_counter``; tests pass a fake one).
    enabled : bool or None
        False: the planned count runs throughout (default: :func:`dynamic_threads_enabled`).

    Use it as a context manager around the training loop and call
    :meth:`tick` once per step; leaving it restores the planned count.
    """

    def __init__(self, threads, sampler=None, interval=INTERVAL, clock=time.perf_counter, enabled=None):
        self.threads = int(threads)
        self.enabled = dynamic_threads_enabled() if enabled is None else bool(enabled)
        self.clock = clock
        self.sampler = CpuSampler() if sampler is None else sampler
        self.cpus = len(self.sampler.cpus)
        self.interval = interval
        self.running = self.threads
        self.changes = 0
        self._last = None

    def __enter__(self):
        config.set_num_threads(self.threads)  # pins the planned count for this thread
        self._last = (self.clock(), self.sampler.sample()) if self.threads > 1 and self.enabled else None
        if self._last is not None:
            self._run_on(_recent_count(self.threads), count=False)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            _recent.last = (time.monotonic(), self.threads, self.running)
        self._run_on(self.threads, count=False)
        return False

    def tick(self):
        """Read the load if an interval has passed, and change the running thread count if it should."""
        if self._last is None:
            return
        now = self.clock()
        if now - self._last[0] < self.interval:
            return
        sample = self.sampler.sample()
        then, before = self._last
        self._last = (now, sample)
        if sample is None or before is None:
            self._last = None  # no /proc/stat: stop looking
            return
        others = max(0.0, ((sample[0] - before[0]) - (sample[1] - before[1])) / (now - then))
        self._run_on(max(1, min(self.threads, round(self.cpus - others))))

    def _run_on(self, n, count=True):
        if n != self.running:
            self.changes += count
            self.running = n
        numba.set_num_threads(n)


#: The last governor's exit in each Python thread: (time.monotonic(), planned, running).
_recent = threading.local()

#: Seconds for which a new governor starts where the last one in the same thread ended (a fit per epoch, or a
#: benchmark's repeats): the last reading is a better first guess than the planned count, and a wrong guess
#: lasts one interval.
RECENT = 30.0


def _recent_count(threads):
    """The running count a governor left less than :data:`RECENT` seconds ago with the same plan, else ``threads``."""
    last = getattr(_recent, "last", None)
    if last is None or last[1] != threads or time.monotonic() - last[0] > RECENT:
        return threads
    return last[2]
