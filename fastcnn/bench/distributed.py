"""The data-parallel benchmark: training images/s of one process against MPI ranks, and the allreduce's share.

``fastcnn bench distributed`` (and :func:`bench_distributed`) starts fresh processes, in rotating order:

* one process with 2 threads (the usual way to use two cores),
* one process with 1 thread (one rank),
* ``mpiexec -n 2``: two ranks of 1 thread each, training data-parallel (:func:`fastcnn.distributed.fit`).

Each trains the model on ``batches`` global batches per epoch, one warm-up epoch and ``epochs`` timed ones;
the figures are medians over every timed epoch of every repeat.  The ranks report the seconds they spent in
the step's allreduce (waiting for the slower rank included), and, after training, the time of the allreduce
alone (the ranks lined up by a barrier first), from which the scaling model of the README starts.

The worker is this module run as a script: ``python -m fastcnn.bench.distributed --worker ...``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from .report import table
from .timing import median, rotated

__all__ = ["bench_distributed", "format_distributed", "scaling_model", "format_scaling", "CONFIGS"]

#: (label, ranks or None for a plain process, threads per process)
CONFIGS = (("1 process x 2 threads", None, 2), ("1 rank x 1 thread", None, 1), ("2 ranks x 1 thread", 2, 1))


def _mpiexec():
    """The ``mpiexec`` beside this Python (a virtualenv's, from the mpich wheel), else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


def bench_distributed(model="lenet5", batches=20, batch_size=64, epochs=2, repeat=3, timeout=600, log=None):
    """Images/s of one process (2 threads, 1 thread) and of 2 MPI ranks of 1 thread, and the allreduce's share.

    Parameters
    ----------
    model : str
        A name of :mod:`fastcnn.models`, built for 1x28x28 images (MNIST).
    batches, batch_size : int
        Global batches per epoch, and their size.
    epochs : int
        Timed epochs per process, after one warm-up epoch.
    repeat : int
        Processes started per configuration, in rotating order.
    timeout : float
        Seconds one process (or MPI job) may take.
    log : callable, optional
        Progress lines.

    Returns
    -------
    dict
        ``configs``: per label ``images_per_s``, ``step_ms``, ``allreduce_share`` (of an epoch, rank mean),
        ``allreduce_alone_ms``, ``samples``; ``allreduce_bytes`` and ``parameters`` of the model.

    Raises
    ------
    RuntimeError
        When ``mpiexec`` or mpi4py is missing, or a run fails.
    """
    mpiexec = _mpiexec()
    if mpiexec is None:
        raise RuntimeError("bench distributed: mpiexec not found; pip install 'fastcnn[mpi]'")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    samples = {label: [] for label, _, _ in CONFIGS}
    labels = [label for label, _, _ in CONFIGS]
    spec = {label: (ranks, threads) for label, ranks, threads in CONFIGS}
    for i in range(repeat):
        for label in rotated(labels, i):
            ranks, threads = spec[label]
            cmd = [sys.executable, "-m", "fastcnn.bench.distributed", "--worker", "--model", model,
                   "--batches", str(batches), "--batch-size", str(batch_size), "--epochs", str(epochs),
                   "--threads", str(threads)]
            if ranks is not None:
                cmd = [mpiexec, "-n", str(ranks)] + cmd
            if log is not None:
                log(f"repeat {i + 1}/{repeat}: {label}")
            samples[label].append(_run_worker(cmd, env, timeout))
    return _summary(model, batches, batch_size, epochs, repeat, samples)


def _run_worker(cmd, env, timeout):
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench distributed: {' '.join(cmd)} failed (status {done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


def _summary(model, batches, batch_size, epochs, repeat, samples):
    images = batches * batch_size
    configs = {}
    for label, runs in samples.items():
        epoch_s = [s for run in runs for s in run["epoch_s"]]
        shares = [a / e for run in runs for a, e in zip(run["allreduce_s"], run["epoch_s"])]
        alone = [run["allreduce_alone_ms"] for run in runs if run["allreduce_alone_ms"] is not None]
        med = median(epoch_s)
        configs[label] = {"images_per_s": images / med, "step_ms": 1e3 * med / batches,
                          "allreduce_share": median(shares) if runs[0]["ranks"] > 1 else None,
                          "allreduce_alone_ms": median(alone), "samples": runs}
    first = samples[CONFIGS[0][0]][0]
    return {"benchmark": "distributed", "model": model, "batch_size": batch_size, "batches": batches,
            "epochs": epochs, "repeat": repeat, "parameters": first["parameters"],
            "allreduce_bytes": first["allreduce_bytes"], "configs": configs}


def format_distributed(result):
    """The table of a :func:`bench_distributed` result."""
    base = result["configs"][CONFIGS[0][0]]["images_per_s"]
    per_image = 1e3 / base  # one machine (this one, its 2-thread process) per image
    rows = []
    for label, c in result["configs"].items():
        share = "-" if c["allreduce_share"] is None else f"{100 * c['allreduce_share']:.1f}%"
        alone = "-" if c["allreduce_alone_ms"] is None else f"{c['allreduce_alone_ms']:.3f}"
        rows.append([label, f"{c['images_per_s']:,.0f}", f"{c['step_ms']:.2f}", f"{c['images_per_s'] / base:.2f}",
                     share, alone])
    return "\n".join([
        f"{result['model']} training, global batch {result['batch_size']}, {result['batches']} batches per epoch; "
        f"median of {result['repeat']} processes x {result['epochs']} timed epochs, warm-up excluded",
        f"{result['parameters']:,} parameters: {result['allreduce_bytes']:,} bytes per allreduce (one per step)",
        "",
        table(["configuration", "images/s", "ms/step", "vs 2 threads", "allreduce share", "allreduce alone ms"],
              rows, "<>>>>>"),
        "",
        "allreduce share: the part of an epoch the ranks spent in the step's allreduce, waiting for the slower "
        "rank included (mean of the ranks); allreduce alone: one allreduce of the gradient buffer after a barrier.",
        "",
        format_scaling(scaling_model(result["allreduce_bytes"], per_image), result["allreduce_bytes"], per_image),
    ])


# --------------------------------------------------------------------------- the scaling model on paper


def scaling_model(allreduce_bytes, ms_per_image, machines=(8, 16, 32, 64), gbits=(10, 25), latency_us=20.0,
                  share=0.10):
    """Ring-allreduce time per step and the global batch that keeps communication under ``share`` of a step.

    For ``p`` machines the ring allreduce of ``B`` bytes takes
    ``T = 2 (p - 1) / p * B / bandwidth + 2 (p - 1) * latency`` (each of its ``2 (p - 1)`` steps sends
    ``B / p`` bytes and pays one message latency).  Each machine computes its ``b = G / p`` examples in
    ``b * ms_per_image`` (measured on one machine, taken as linear in ``b``), then waits ``T`` (no overlap), so
    communication is at most ``share`` of the step when ``b * ms_per_image >= (1 / share - 1) * T``, that is for
    a global batch ``G >= p * (1 / share - 1) * T / ms_per_image``.

    Returns
    -------
    list of dict
        One per (machines, gbits): ``machines``, ``gbits``, ``allreduce_ms``, ``min_global_batch``.

    Examples
    --------
    >>> row = scaling_model(246_836, 0.0467, machines=(8,), gbits=(10,))[0]
    >>> round(row["allreduce_ms"], 3), row["min_global_batch"]
    (0.626, 965)
    """
    rows = []
    for p in machines:
        for g in gbits:
            seconds = 2 * (p - 1) / p * allreduce_bytes / (g * 1e9 / 8) + 2 * (p - 1) * latency_us * 1e-6
            ms = 1e3 * seconds
            rows.append({"machines": p, "gbits": g, "allreduce_ms": ms,
                         "min_global_batch": int(np.ceil(p * (1 / share - 1) * ms / ms_per_image))})
    return rows


def format_scaling(rows, allreduce_bytes, ms_per_image, latency_us=20.0):
    """The scaling model's table (see :func:`scaling_model`)."""
    body = [[r["machines"], f"{r['gbits']} Gbit/s", f"{r['allreduce_ms']:.3f}", f"{r['min_global_batch']:,}",
             f"{r['min_global_batch'] / r['machines']:,.0f}"] for r in rows]
    return "\n".join([
        f"scaling model: ring allreduce of {allreduce_bytes:,} bytes, {latency_us:g} us per message, "
        f"{ms_per_image:.4f} ms of compute per image per machine (measured here)",
        table(["machines", "network", "allreduce ms", "global batch for <10% comm", "per machine"], body, ">>>>>"),
    ])


# --------------------------------------------------------------------------- the worker


def _worker(argv):
    """Train, time the epochs and the allreduce, print one JSON line on rank 0."""
    import fastcnn

    from .. import distributed, models
    from ..callbacks import Callback
    from ..optim import SGD
    from .train import train_data

    parser = argparse.ArgumentParser(prog="python -m fastcnn.bench.distributed")
    parser.add_argument("--worker", action="store_true", required=True)
    for name, default in (("--batches", 20), ("--batch-size", 64), ("--epochs", 2), ("--threads", 1)):
        parser.add_argument(name, type=int, default=default)
    parser.add_argument("--model", default="lenet5")
    args = parser.parse_args(argv)
    fastcnn.set_num_threads(args.threads)
    comm = distributed.world()
    x, y, _ = train_data(args.batches * args.batch_size)
    fastcnn.manual_seed(0)
    model = models.build(args.model, num_classes=10, in_channels=1, image_size=28)
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    epochs, waits = [], []

    class Timer(Callback):
        def on_epoch_begin(self, model, epoch, logs):
            self.t0, self.w0 = time.perf_counter(), comm.wait_seconds if comm is not None else 0.0

        def on_epoch_end(self, model, epoch, logs):
            epochs.append(time.perf_counter() - self.t0)
            waits.append((comm.wait_seconds if comm is not None else 0.0) - self.w0)

    distributed.fit(model, x, y, epochs=1 + args.epochs, batch_size=args.batch_size, optimizer=opt, seed=0,
                    verbose=False, comm=comm, callbacks=[Timer()])
    nbytes = distributed.FlatBuffer(model.parameters(), extras=3).nbytes
    alone = _allreduce_alone(comm, nbytes // 4) if comm is not None else None
    if comm is not None:  # the mean over the ranks of each epoch's allreduce seconds
        waits = list(np.mean(comm.allgather(waits), axis=0))
    if comm is None or comm.is_root:
        print(json.dumps({"ranks": 1 if comm is None else comm.size, "threads": args.threads,
                          "epoch_s": epochs[1:], "allreduce_s": waits[1:], "allreduce_alone_ms": alone,
                          "allreduce_bytes": nbytes, "parameters": sum(p.size for p in model.parameters())}),
              flush=True)


def _allreduce_alone(comm, n, calls=50):
    """Median milliseconds of one allreduce of ``n`` float32, each started after a barrier."""
    buf = np.ones(n, dtype=np.float32)
    out = []
    for _ in range(calls):
        comm.comm.Barrier()
        t0 = time.perf_counter()
        comm.allreduce(buf)
        out.append(1e3 * (time.perf_counter() - t0))
    return float(median(out))


if __name__ == "__main__":
    _worker(sys.argv[1:])
