"""The model-zoo benchmark: training steps and inference of the zoo's networks, fastcnn against PyTorch."""

import contextlib

import numpy as np

from .layers import LayerTimer, TorchForwardTimer, align
from .. import malloc
from .machine import machine_info
from .timing import (calls_per_sample, median, no_gc, rotated, settle_then_wake, time_call, time_each_call,
                     use_threads)
from .torch_models import TORCH_TWINS
from . import torch_worker

__all__ = ["BENCH_MODELS", "DEFAULT_MODELS", "MODEL_INPUT_SHAPES", "fastcnn_step", "torch_step",
           "fastcnn_predict", "torch_predict", "bench_models"]

#: Models :func:`bench_models` can time: name -> description.
BENCH_MODELS = {
    "vgg_small": "VGG-small-BN (3 stages 32-64-128, 2 convs each, FC 256; 815k params)",
    "resnet_small": "ResNet-small (16-32-64, 2 basic blocks per stage, GAP head; 175k params)",
    "mobilenet_small": "MobileNet-small (stem 32, 5 depthwise-separable blocks to 256, GAP head; 137k params)",
    "lenet5": "LeNet-5 (2 convs 6-16 5x5, FC 120-84; 62k params)",
}

#: The models :func:`bench_models` times when not told which.
DEFAULT_MODELS = ("vgg_small", "resnet_small", "mobilenet_small", "lenet5")

#: Each model's input image shape (channels, height, width).
MODEL_INPUT_SHAPES = {"vgg_small": (3, 32, 32), "resnet_small": (3, 32, 32), "mobilenet_small": (3, 32, 32),
                      "lenet5": (1, 28, 28)}


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


def fastcnn_predict(model, x):
    """A function running ``model.predict`` on the whole batch ``x`` (one forward pass, eval mode)."""
    model.eval()
    batch_size = len(x)

    def infer():
        model.predict(x, batch_size=batch_size)

    return infer


def torch_predict(torch, tmodel, x):
    """A function running the PyTorch module ``tmodel`` on numpy ``x`` in eval mode under ``torch.no_grad()``."""
    tmodel.eval()
    xt = torch.from_numpy(x)

    def infer():
        with torch.no_grad():
            tmodel(xt)

    return infer


def _check_arguments(batch, repeat, models, inference_batch):
    for name, value in (("batch", batch), ("repeat", repeat), ("inference_batch", inference_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"bench_models: {name} must be an int >= 1, got {value!r}")
    unknown = [m for m in models if m not in BENCH_MODELS]
    if unknown or not models:
        raise ValueError(f"bench_models: models must be names from {sorted(BENCH_MODELS)}, got {list(models)}")


def _inputs(name, batch, seed):
    """A seeded random batch for model ``name``: float32 images in [0, 1) and int64 labels of 10 classes."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch,) + MODEL_INPUT_SHAPES[name], dtype=np.float32)
    return x, rng.integers(0, 10, batch).astype(np.int64)


def _build_model(name, seed, algorithm):
    """The fastcnn model ``name``, seeded."""
    import fastcnn

    from ..models import get_model

    fastcnn.manual_seed(seed)
    return get_model(name) if name == "lenet5" else get_model(name, algorithm=algorithm)


def _twin(torch, name, seed):
    """The PyTorch twin of model ``name``, seeded (in the worker process)."""
    torch.manual_seed(seed)
    return TORCH_TWINS[name](torch)


def torch_params(torch, name):
    """(Worker builder) the twin's parameter count, behind a call."""
    count = sum(p.numel() for p in _twin(torch, name, 0).parameters())
    return lambda: count


def torch_train_step(torch, name, batch, seed):
    """(Worker builder) :func:`torch_step` of the twin of ``name`` on the seeded batch of :func:`_inputs`."""
    x, y = _inputs(name, batch, seed)
    return torch_step(torch, _twin(torch, name, seed).train(), x, y)


def torch_predictor(torch, name, batch, seed, single):
    """(Worker builder) :func:`torch_predict` of the twin on the seeded batch, or on its first image."""
    x, _ = _inputs(name, batch, seed)
    return torch_predict(torch, _twin(torch, name, seed), np.ascontiguousarray(x[:1]) if single else x)


def torch_layer_timer(torch, name, batch, seed):
    """(Worker builder) a :class:`~fastcnn.bench.layers.TorchForwardTimer` on the twin's training step."""
    x, y = _inputs(name, batch, seed)
    tmodel = _twin(torch, name, seed)
    return TorchForwardTimer(tmodel, torch_step(torch, tmodel.train(), x, y))


def _build_steps(models, worker, batch, seed, algorithm):
    """The training step functions per (model, framework) and each model's report entry."""
    steps, entries = {}, {}
    for name in models:
        x, y = _inputs(name, batch, seed)
        model = _build_model(name, seed, algorithm)
        entry = {"description": BENCH_MODELS[name], "input_shape": MODEL_INPUT_SHAPES[name],
                 "params": sum(p.size for p in model.parameters()), "frameworks": {}}
        steps[(name, "fastcnn")] = fastcnn_step(model.train(), x, y)
        if worker is not None:
            entry["torch_params"] = worker.build(f"{__name__}:torch_params", name)()
            steps[(name, "torch")] = worker.build(f"{__name__}:torch_train_step", name, batch, seed)
        entries[name] = entry
    return steps, entries


def _build_inference(models, worker, batch, seed, algorithm):
    """The eval-mode predict functions per (model, framework): on ``batch`` images, and on the first one alone."""
    throughput, latency = {}, {}
    for name in models:
        x, _ = _inputs(name, batch, seed)
        one = np.ascontiguousarray(x[:1])
        model = _build_model(name, seed, algorithm)
        throughput[(name, "fastcnn")] = fastcnn_predict(model, x)
        latency[(name, "fastcnn")] = fastcnn_predict(model, one)
        if worker is not None:
            for single, table in ((False, throughput), (True, latency)):
                table[(name, "torch")] = worker.build(f"{__name__}:torch_predictor", name, batch, seed, single)
    return throughput, latency


def _time_steps(steps, repeat, settle, target, each_call=False):
    """Warm up, choose the calls per sample, then time ``repeat`` rotating rounds; (calls, samples).

    A sample is the mean seconds per call of its back-to-back calls, or with
    ``each_call`` the list of every call's seconds.  PyTorch's calls are
    timed in its worker process (:func:`~fastcnn.bench.timing.time_call`).
    """
    keys = list(steps)
    samples = {key: [] for key in keys}
    calls = {}
    for key in keys:
        steps[key]()
        calls[key] = calls_per_sample(time_call(steps[key]), target)
    with no_gc():
        for i in range(repeat):
            for key in rotated(keys, i):
                settle_then_wake(settle, steps[key])
                fn, number = steps[key], calls[key]
                samples[key].append(time_each_call(fn, number) if each_call else time_call(fn, None, number))
    return calls, samples


def _per_batch(calls, samples, batch):
    """Per (model, framework) key: calls, samples_s, median_s, ms_per_batch and images_per_s of batches of ``batch``."""
    out = {}
    for key, xs in samples.items():
        med = median(xs)
        out[key] = {"calls": calls[key], "samples_s": xs, "median_s": med, "ms_per_batch": 1e3 * med,
                    "images_per_s": batch / med}
    return out


def _per_call(calls, samples):
    """Per (model, framework) key: calls per round, samples_us (each round's median) and median_us (of every call)."""
    out = {}
    for key, rounds in samples.items():
        every = [t for r in rounds for t in r]
        out[key] = {"calls": calls[key], "samples_us": [1e6 * median(r) for r in rounds],
                    "median_us": 1e6 * median(every)}
    return out


def _ratio(frameworks, field):
    """torch's ``field`` over fastcnn's (above 1: fastcnn faster), or None without torch."""
    if "torch" not in frameworks:
        return None
    return frameworks["torch"][field] / frameworks["fastcnn"][field]


def _add_inference(entries, models, worker, seed, algorithm, batch, repeat, settle, target):
    """Time eval-mode throughput at ``batch`` and batch-1 latency; add ``inference`` and ``latency`` to ``entries``."""
    throughput, latency = _build_inference(models, worker, batch, seed, algorithm)
    calls, samples = _time_steps(throughput, repeat, settle, target)
    for (name, fw), e in _per_batch(calls, samples, batch).items():
        entries[name].setdefault("inference", {"frameworks": {}})["frameworks"][fw] = e
    calls, samples = _time_steps(latency, repeat, settle, target, each_call=True)
    for (name, fw), e in _per_call(calls, samples).items():
        entries[name].setdefault("latency", {"frameworks": {}})["frameworks"][fw] = e
    for entry in entries.values():
        entry["inference"]["ratio"] = _ratio(entry["inference"]["frameworks"], "median_s")
        entry["latency"]["ratio"] = _ratio(entry["latency"]["frameworks"], "median_us")


def _time_layers(name, worker, batch, seed, algorithm, repeat, settle):
    """Per-layer times of a fresh model ``name`` (and its twin's forward) in ``repeat`` interleaved steps."""
    x, y = _inputs(name, batch, seed)
    model = _build_model(name, seed, algorithm)
    timers = {"fastcnn": LayerTimer(model, fastcnn_step(model.train(), x, y))}
    if worker is not None:
        timers["torch"] = worker.build(f"{__name__}:torch_layer_timer", name, batch, seed)
    keys = list(timers)
    with contextlib.ExitStack() as stack:
        for timer in timers.values():
            stack.enter_context(timer)
        for timer in timers.values():  # warm-up: first touch of every buffer, the workspace's sizes
            timer.run()
            timer.clear()
        with no_gc():
            for i in range(repeat):
                for key in rotated(keys, i):
                    settle_then_wake(settle, timers[key].step)
                    timers[key].run()
    out = timers["fastcnn"].result()
    out["torch_step_s"] = None
    if "torch" in timers:
        _add_torch_forward(out, timers["torch"].result())
    return out


def _add_torch_forward(out, twin):
    """Put the twin's forward time of each top-level module on the fastcnn row it pairs with (:func:`align`)."""
    top = [row for row in out["rows"] if row["depth"] == 0]
    pairs = align([row["kind"] for row in top], [m["kind"] for m in twin["modules"]])
    for i, row in enumerate(top):
        m = twin["modules"][pairs[i]] if i in pairs else None
        row["torch"] = None if m is None else {"module": m["kind"], "forward_s": m["forward_s"]}
    paired = set(pairs.values())
    out["torch_step_s"] = twin["step_s"]
    out["torch_unpaired"] = [m for j, m in enumerate(twin["modules"]) if j not in paired]


def bench_models(threads=None, batch=64, repeat=5, models=DEFAULT_MODELS, seed=0, settle=0.2, target=0.25,
                 algorithm="auto", inference=True, inference_batch=256, layers=True):
    """Training-step time and inference speed of the model zoo's networks, fastcnn vs PyTorch.

    For each model in ``models`` (names from :data:`BENCH_MODELS`:
    ``"vgg_small"``, ``"resnet_small"`` and ``"mobilenet_small"`` on 3x32x32
    images, ``"lenet5"`` on 1x28x28) one training step is: zero the gradients, forward a batch of
    ``batch`` float32 random images (10 classes, train mode, so BatchNorm
    uses batch statistics), softmax cross-entropy, backward; no optimizer
    step.  PyTorch runs its twin of the same architecture (``TORCH_TWINS`` in
    :mod:`fastcnn.bench.torch_models`: equal parameter counts and order).

    With ``inference`` two more measurements follow, on fresh models in eval
    mode (BatchNorm uses its running statistics): throughput, one
    ``model.predict`` of ``inference_batch`` images against the twin called
    in eval mode under ``torch.no_grad()``; and batch-1 latency, the same
    calls on a single image, each call timed on its own.

    With ``layers`` each model's training step is timed layer by layer
    too, on a fresh model: a timer around every layer's ``forward`` and
    ``backward`` (nested layers of a Residual included) during ``repeat``
    real steps at ``batch``, so each layer sees the activations and
    gradients the model produces (:class:`fastcnn.bench.layers.LayerTimer`);
    the twin's top-level modules get forward hooks
    (:class:`fastcnn.bench.layers.TorchForwardTimer`), interleaved the same
    way.

    Measurement discipline as :func:`bench_train`: the twins are built and
    timed in PyTorch's own process (:mod:`fastcnn.bench.torch_worker`); the
    same thread count for both (and BLAS); two warm-up calls of each excluded (JIT compilation,
    first-touch memory); then ``repeat`` rounds in which every (model,
    framework) pair is timed once, in an order rotated by one place every
    round, each after a ``settle`` seconds pause (so the other library's
    busy-waiting worker threads are asleep) and one untimed call (which wakes
    this library's threads: :func:`~fastcnn.bench.timing.settle_then_wake`);
    medians over the rounds.  A
    sample is ``calls`` back-to-back calls, ``calls`` chosen from the second
    warm-up call so that a sample lasts about ``target`` seconds (1 to 100
    calls); times are reported per call.  Training, throughput and latency
    are three such series, one after the other.

    Parameters
    ----------
    threads : int, optional
        Threads for fastcnn (Numba), BLAS and PyTorch; default fastcnn's current count.
    batch : int
        Images per training step.
    repeat : int
        Timed rounds of each series (the median is over these).
    models : sequence of str
        Names from :data:`BENCH_MODELS`; default :data:`DEFAULT_MODELS`.
    seed : int
        Seeds the weights and the random batches.
    settle : float
        Seconds of pause before every timed sample (and its untimed wake-up call).
    target : float
        Seconds one sample should last (more calls per sample for fast calls).
    algorithm : str
        Every convolution's ``Conv2d(algorithm=...)`` in the models but lenet5: "auto" (the
        plans' choice) or a name of ``fastcnn.kernels.CONV_ALGORITHMS`` (lenet5 keeps its default).
    inference : bool
        Also time eval-mode throughput and batch-1 latency.
    inference_batch : int
        Images per call of the throughput measurement.
    layers : bool
        Also time each layer's forward and backward within the training step.

    Returns
    -------
    dict
        ``benchmark`` ("models"), ``batch``, ``repeat``, ``settle``,
        ``threads``, ``input_shape`` (the models' common input shape, None
        when they differ), ``algorithm``, ``inference_batch`` (None without
        ``inference``), ``models``: per model ``description``,
        ``input_shape``, ``params`` (fastcnn's count; ``torch_params`` too)
        and ``frameworks``: per framework ``calls``, ``samples_s`` (per
        step), ``median_s``, ``ms_per_batch``, ``images_per_s``; and
        ``ratio``: torch's median time over fastcnn's (fastcnn's throughput
        relative to PyTorch's: above 1 is faster), None without torch.  With
        ``inference`` each model also has ``inference`` (``frameworks`` with
        the same fields per call of ``inference_batch`` images, and
        ``ratio``) and ``latency`` (``frameworks``: per framework ``calls``
        per round, ``samples_us``, each round's median, ``median_us``, the
        median of every call; and ``ratio``, torch's median over fastcnn's).
        ``layers`` (bool) and with it each model's ``layers``: ``step_s``
        (median of the instrumented steps), ``rest_s`` (median of the step's
        time outside its top-level layers), ``rows`` (per layer: ``name``,
        ``depth``, ``kind``, ``layer``, ``input_shape``, ``forward_s``,
        ``backward_s``, ``share`` of the step, the Conv2d ``plan``, and on the
        top-level rows ``torch``: the paired module's ``module`` kind and
        ``forward_s``, or None), ``torch_step_s`` and ``torch_unpaired`` (the
        twin's modules without a fastcnn row) when PyTorch is installed.
        ``machine``.
    """
    models = tuple(models)
    _check_arguments(batch, repeat, models, inference_batch)
    malloc.keep_freed_memory()  # as fit and predict do (the PyTorch worker keeps glibc's defaults)
    with contextlib.ExitStack() as stack:
        worker = stack.enter_context(torch_worker.session())
        steps, entries = _build_steps(models, worker, batch, seed, algorithm)
        with use_threads(threads, worker) as nthreads:
            calls, samples = _time_steps(steps, repeat, settle, target)
            if inference:
                _add_inference(entries, models, worker, seed, algorithm, inference_batch, repeat, settle, target)
            if layers:
                for name in models:
                    entries[name]["layers"] = _time_layers(name, worker, batch, seed, algorithm, repeat, settle)
            machine = machine_info(nthreads, worker)
    shapes = {MODEL_INPUT_SHAPES[name] for name in models}
    result = {"benchmark": "models", "batch": batch, "repeat": repeat, "settle": settle,
              "input_shape": shapes.pop() if len(shapes) == 1 else None, "algorithm": algorithm,
              "inference_batch": inference_batch if inference else None, "layers": bool(layers), "models": entries}
    result["threads"] = nthreads
    for (name, fw), e in _per_batch(calls, samples, batch).items():
        entries[name]["frameworks"][fw] = e
    for entry in entries.values():
        entry["ratio"] = _ratio(entry["frameworks"], "median_s")
    result["machine"] = machine
    return result
