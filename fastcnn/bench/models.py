"""The model-zoo benchmark: forward + backward of the CIFAR-sized networks, fastcnn against PyTorch."""

import time

import numpy as np

from .machine import machine_info
from .timing import calls_per_sample, median, no_gc, rotated, time_call, use_threads
from .torch_models import TORCH_TWINS, import_torch

__all__ = ["BENCH_MODELS", "fastcnn_step", "torch_step", "bench_models"]

#: Models timed by :func:`bench_models`: name -> description.
BENCH_MODELS = {
    "vgg_small": "VGG-small-BN (3 stages 32-64-128, 2 convs each, FC 256; 815k params)",
    "resnet_small": "ResNet-small (16-32-64, 2 basic blocks per stage, GAP head; 175k params)",
}


def fastcnn_step(model, x, y):
    """A function doing one forward + backward of ``model`` on (x, y).

    Each call zeroes the gradients, runs the forward pass, softmax
    cross-entropy and the backward pass; no optimizer step.
    """
    from ..kernels import softmax_cross_entropy

    params = model.parameters()

    def step():
        for p in params:
            p.grad.fill(0)
        out = model.forward(x)
        _, dout = softmax_cross_entropy(out, y)
        model.backward(dout)

    return step


def torch_step(torch, tmodel, x, y):
    """A function doing one forward + backward of the PyTorch module ``tmodel`` on numpy (x, y).

    Each call: ``zero_grad``, forward, ``F.cross_entropy``, backward; no optimizer step.
    """
    F = torch.nn.functional
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        tmodel.zero_grad()
        F.cross_entropy(tmodel(xt), yt).backward()

    return step


def _check_arguments(batch, repeat, models):
    for name, value in (("batch", batch), ("repeat", repeat)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"bench_models: {name} must be an int >= 1, got {value!r}")
    unknown = [m for m in models if m not in BENCH_MODELS]
    if unknown or not models:
        raise ValueError(f"bench_models: models must be names from {sorted(BENCH_MODELS)}, got {list(models)}")


def _build_steps(models, torch, x, y, seed, algorithm):
    """The step functions per (model, framework) and each model's report entry (description, parameters)."""
    import fastcnn

    from ..models import get_model

    steps, entries = {}, {}
    for name in models:
        fastcnn.manual_seed(seed)
        model = get_model(name, algorithm=algorithm).train()
        entry = {"description": BENCH_MODELS[name], "params": sum(p.size for p in model.parameters()),
                 "frameworks": {}}
        steps[(name, "fastcnn")] = fastcnn_step(model, x, y)
        if torch is not None:
            torch.manual_seed(seed)
            tmodel = TORCH_TWINS[name](torch).train()
            entry["torch_params"] = sum(p.numel() for p in tmodel.parameters())
            steps[(name, "torch")] = torch_step(torch, tmodel, x, y)
        entries[name] = entry
    return steps, entries


def _time_steps(steps, repeat, settle, target):
    """Warm up, choose the calls per sample, then time ``repeat`` rotating rounds; (calls, per-step seconds)."""
    keys = list(steps)
    samples = {key: [] for key in keys}
    calls = {}
    for key in keys:
        steps[key]()
        calls[key] = calls_per_sample(time_call(steps[key]), target)
    with no_gc():
        for i in range(repeat):
            for key in rotated(keys, i):
                time.sleep(settle)
                fn, number = steps[key], calls[key]
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                samples[key].append((time.perf_counter() - t0) / number)
    return calls, samples


def bench_models(threads=None, batch=64, repeat=5, models=("vgg_small", "resnet_small"), seed=0, settle=0.2,
                 target=0.25, algorithm="auto"):
    """Forward + backward time per batch of the model zoo's CIFAR-sized networks, fastcnn vs PyTorch.

    For each model in ``models`` (``"vgg_small"``, ``"resnet_small"``) one
    step is: zero the gradients, forward a batch of ``batch`` float32
    3x32x32 random images (10 classes, train mode, so BatchNorm uses batch
    statistics), softmax cross-entropy, backward; no optimizer step.  PyTorch
    runs its twin of the same architecture (:func:`torch_vgg_small`,
    :func:`torch_resnet_small` in :mod:`fastcnn.bench.torch_models`: equal
    parameter counts and order).

    Measurement discipline as :func:`bench_train`: the same thread count for
    both (and BLAS); two warm-up steps of each excluded (JIT compilation,
    first-touch memory); then ``repeat`` rounds in which every (model,
    framework) pair is timed once, in an order rotated by one place every
    round, each after a ``settle`` seconds pause (so the other library's
    busy-waiting worker threads are asleep); medians over the rounds.  A
    sample is ``calls`` back-to-back steps, ``calls`` chosen from the second
    warm-up step so that a sample lasts about ``target`` seconds (1 for slow
    steps); times are reported per step.

    Parameters
    ----------
    threads : int, optional
        Threads for fastcnn (Numba), BLAS and PyTorch; default fastcnn's current count.
    batch : int
        Images per step.
    repeat : int
        Timed rounds (the median is over these).
    models : sequence of str
        Names from :data:`BENCH_MODELS`.
    seed : int
        Seeds the weights and the random batch.
    settle : float
        Seconds of pause before every timed sample.
    target : float
        Seconds one sample should last (more calls per sample for fast steps).
    algorithm : str
        Every convolution's ``Conv2d(algorithm=...)``: "auto" (the plans' choice) or a name of
        ``fastcnn.kernels.CONV_ALGORITHMS``.

    Returns
    -------
    dict
        ``benchmark`` ("models"), ``batch``, ``repeat``, ``threads``,
        ``input_shape``, ``algorithm``, ``models``: per model ``description``,
        ``params`` (fastcnn's count; ``torch_params`` too) and ``frameworks``:
        per framework ``calls``, ``samples_s`` (per step), ``median_s``,
        ``ms_per_batch``, ``images_per_s``; and ``ratio``: torch's median time
        over fastcnn's (fastcnn's throughput relative to PyTorch's: above 1 is
        faster), None without torch; ``machine``.
    """
    models = tuple(models)
    _check_arguments(batch, repeat, models)
    torch = import_torch()
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    steps, entries = _build_steps(models, torch, x, y, seed, algorithm)
    result = {"benchmark": "models", "batch": batch, "repeat": repeat, "settle": settle, "input_shape": (3, 32, 32),
              "algorithm": algorithm, "models": entries}

    with use_threads(threads, torch) as nthreads:
        calls, samples = _time_steps(steps, repeat, settle, target)
        machine = machine_info(nthreads, torch)
    result["threads"] = nthreads
    for (name, fw), xs in samples.items():
        med = median(xs)
        entries[name]["frameworks"][fw] = {"calls": calls[(name, fw)], "samples_s": xs, "median_s": med,
                                           "ms_per_batch": 1e3 * med, "images_per_s": batch / med}
    for entry in entries.values():
        fw = entry["frameworks"]
        entry["ratio"] = fw["torch"]["median_s"] / fw["fastcnn"]["median_s"] if "torch" in fw else None
    result["machine"] = machine
    return result
