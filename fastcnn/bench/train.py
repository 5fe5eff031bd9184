"""The training benchmark: LeNet-5 epochs through ``Sequential.fit`` against a plain PyTorch loop."""

import contextlib

import numpy as np

from .machine import machine_info
from .timing import bound, median, no_gc, rotated, settle_then_wake, time_call, use_threads
from .torch_models import torch_lenet5
from . import torch_worker

__all__ = ["train_data", "bench_train"]


def train_data(n, seed=0):
    """``n`` MNIST images as float32 in [0, 1] with int64 labels, and where they came from.

    The packaged MNIST sample, tiled when ``n`` is larger; seeded random
    images when the sample cannot be loaded.

    Returns
    -------
    x : ndarray, shape (n, 1, 28, 28), float32
    y : ndarray, shape (n,), int64
    source : str
        ``"MNIST sample"`` or ``"random"``.
    """
    from ..data import load_sample, to_float

    try:
        (x, y), _ = load_sample()
        source = "MNIST sample"
    except (FileNotFoundError, ValueError):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        source = "random"
    if len(x) < n:
        reps = -(-n // len(x))
        x, y = np.concatenate([x] * reps), np.concatenate([y] * reps)
    return to_float(x[:n], np.float32), np.ascontiguousarray(y[:n], dtype=np.int64), source


def _fastcnn_runner(batch_size, sgd, seed, x, y):
    """``run(n, epoch_seed)``: one epoch of fastcnn's LeNet-5 through ``Sequential.fit`` on the first n images."""
    import fastcnn

    from ..models import lenet5
    from ..optim import SGD

    fastcnn.manual_seed(seed)
    model = lenet5()
    opt = SGD(model.parameters(), **sgd)

    def run(n, epoch_seed):
        model.fit(x[:n], y[:n], epochs=1, batch_size=batch_size, optimizer=opt, verbose=False, seed=epoch_seed)

    return run


def torch_runner(torch, batch_size, sgd, seed, x, y):
    """``run(n, epoch_seed)``: one epoch of PyTorch's LeNet-5 in a plain loop on the first n images, the same
    shuffling (built in the :class:`~fastcnn.bench.torch_worker.TorchWorker`)."""
    torch.manual_seed(seed)
    tmodel = torch_lenet5(torch)
    topt = torch.optim.SGD(tmodel.parameters(), **sgd)
    F = torch.nn.functional
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def run(n, epoch_seed):
        xs, ys = xt[:n], yt[:n]
        order = torch.from_numpy(np.random.default_rng(epoch_seed).permutation(n))
        tmodel.train()
        for lo in range(0, n, batch_size):
            idx = order[lo:lo + batch_size]
            xb, yb = xs[idx], ys[idx]
            topt.zero_grad()
            loss = F.cross_entropy(tmodel(xb), yb)
            loss.backward()
            topt.step()

    return run


def _time_epochs(runners, n, warm, repeat, settle, seed):
    """Warm each runner up on ``warm`` images, then time ``repeat`` interleaved epochs of n; {name: seconds}."""
    names = tuple(runners)
    samples = {name: [] for name in names}
    for name in names:
        runners[name](warm, seed)
    with no_gc():
        for i in range(repeat):
            for name in rotated(names, i):
                settle_then_wake(settle, bound(runners[name], warm, seed))
                samples[name].append(time_call(bound(runners[name], n, seed + 1 + i)))
    return samples


def bench_train(threads=None, batches=50, repeat=7, batch_size=64, lr=0.01, momentum=0.9,
                weight_decay=5e-4, seed=0, settle=0.2):
    """LeNet-5 training throughput: fastcnn's ``Sequential.fit`` vs a plain PyTorch loop.

    Each repeat trains one epoch of ``batches`` batches of ``batch_size``
    float32 MNIST images (shuffled) with SGD(lr, momentum, weight_decay): fastcnn
    through ``model.fit``, PyTorch with zero_grad / forward / cross_entropy /
    backward / step, in a process of its own (:mod:`fastcnn.bench.torch_worker`);
    the two alternate (which goes first alternates too), with the same thread
    count, with a ``settle`` seconds pause before each run (so the other
    library's busy-waiting worker threads are asleep), then an untimed
    two-batch run that wakes its own threads
    (:func:`~fastcnn.bench.timing.settle_then_wake`).  A two-batch warm-up of
    each is excluded.

    Returns
    -------
    dict
        ``images``, ``data``, ``threads``, per framework ``samples_s``,
        ``median_s``, ``images_per_s``, ``step_ms``, and ``ratio`` (fastcnn
        images/s over torch's).
    """
    if batches < 1 or repeat < 1 or batch_size < 1:
        raise ValueError("bench_train: batches, repeat and batch_size must be >= 1")
    n = batches * batch_size
    x, y, source = train_data(n, seed)
    sgd = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
    runners = {"fastcnn": _fastcnn_runner(batch_size, sgd, seed, x, y)}
    with contextlib.ExitStack() as stack:
        worker = stack.enter_context(torch_worker.session())
        if worker is not None:
            runners["torch"] = worker.build(f"{__name__}:torch_runner", batch_size, sgd, seed, x, y)
        with use_threads(threads, worker) as nthreads:
            samples = _time_epochs(runners, n, min(n, 2 * batch_size), repeat, settle, seed)
            machine = machine_info(nthreads, worker)
    result = {"benchmark": "train", "model": "LeNet-5", "images": n, "batches": batches,
              "batch_size": batch_size, "repeat": repeat, "data": source, "threads": nthreads,
              "optimizer": sgd, "frameworks": {}}
    for name, xs in samples.items():
        med = median(xs)
        result["frameworks"][name] = {"samples_s": xs, "median_s": med,
                                      "images_per_s": n / med, "step_ms": 1e3 * med / batches}
    fw = result["frameworks"]
    result["ratio"] = fw["fastcnn"]["images_per_s"] / fw["torch"]["images_per_s"] if "torch" in fw else None
    result["machine"] = machine
    return result
