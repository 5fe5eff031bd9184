"""Compile a model's kernels in helper processes while the first training step compiles its own.

Numba compiles one kernel at a time in a process (under one lock), and a
machine that has never run fastcnn spends the first training step of
LeNet-5 compiling about 20 kernels, one core busy and the others idle.  When
that first compile starts (at once, when the cache holds none of the
optimizer's kernels: a first-ever run), :class:`CompileHelpers` (used by
:meth:`fastcnn.Sequential.fit`) starts helper processes that load a copy of
the model and run each layer's forward and backward pass on random data of
the training batch's shape, from the first layer on, while the training
process compiles the whole forward pass and then the backward passes from the
last layer back.  Each compiled kernel is written to Numba's disk cache, and
a process about to compile a kernel finds there what another one has
finished: the helper meets the forward kernels compiled already and compiles
the backward ones that the training process reaches last.

The helpers change nothing in the training process: it computes every step
itself, with the kernels it compiled or loaded, and a kernel loaded from the
cache gives the bits a freshly compiled one gives.  Helpers start only on a
real compile (never with a warm cache), only where there is a free core, not
under MPI (the ranks already compile side by side), and not when
``FASTCNN_COMPILE_HELPERS=0``; they are stopped when ``fit`` returns or
raises.  A model that cannot be saved (a custom layer) gets no helpers.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

from . import compile_watch

__all__ = ["CompileHelpers", "helper_count", "compile_layers", "compile_loss_and_update"]

#: Set in the processes an MPI launcher starts (MPICH's and Open MPI's).
_MPI_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


def helper_count(busy=None):
    """How many helper processes a first compile may start.

    ``FASTCNN_COMPILE_HELPERS``: ``0`` none, a number that many (at most 8),
    unset or ``auto`` the cores left free (at most 3), where ``busy`` is the
    number of cores other processes keep busy (:func:`fastcnn._cpuload.busy_cores`)
    and this process's own compile takes one more.  None under MPI.
    """
    if any(v in os.environ for v in _MPI_VARIABLES):
        return 0
    setting = os.environ.get("FASTCNN_COMPILE_HELPERS", "auto").strip()
    if setting.isdigit():
        return min(int(setting), 8)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(int(cores - 1 - (busy or 0.0) + 0.5), 3))


class CompileHelpers:
    """Helper processes that compile ``model``'s layers for batches of ``input_shape`` (batch axis first).

    A context manager: on entering, it waits for the first fastcnn compile
    of this process (none: nothing happens; on an empty cache it does not
    wait, :func:`_cache_is_empty`); then it saves the model to a
    temporary folder and starts :func:`helper_count` processes, each taking
    one contiguous run of the layers (:func:`_layers_for`).  Leaving it stops them
    (a helper killed mid-compile leaves no half file in the cache: Numba
    writes its files whole) and removes the folder.
    """

    def __init__(self, model, input_shape):
        self.model = model
        self.input_shape = tuple(int(d) for d in input_shape)
        self._remove = None
        self._procs = []
        self._folder = None
        self._lock = threading.Lock()
        self._stopped = False

    def __enter__(self):
        if len(self.input_shape) >= 2 and len(self.model.layers) > 1 and helper_count(busy=0) > 0:
            if _cache_is_empty():
                self._start()  # a first-ever run: everything is to compile, so no need to wait for the first one
            else:
                self._remove = compile_watch.on_compile_start(self._start)
        return self

    def __exit__(self, *exc):
        if self._remove is not None:
            self._remove()
        self.stop()
        return False

    def _start(self):
        """At the first compile: look at the load from a thread of its own, then maybe start helpers."""
        from .config import get_num_threads

        if self._remove is not None:
            self._remove()
            self._remove = None
        threads = get_num_threads()  # this thread's planned count (the one the plans are made for)
        threading.Thread(target=self._launch, args=(threads,), name="fastcnn-compile-helpers", daemon=True).start()

    def _launch(self, threads):
        from ._cpuload import busy_cores

        setting = os.environ.get("FASTCNN_COMPILE_HELPERS", "auto").strip()
        n = helper_count(None if setting.isdigit() else busy_cores(0.1))  # (this process's own time left out)
        with self._lock:
            if self._stopped or n == 0:
                return
            try:
                self._folder = tempfile.mkdtemp(prefix="fastcnn-compile-")
                path = os.path.join(self._folder, "model.npz")
                self.model.save(path)
            except Exception:  # a model fastcnn cannot save: compile alone
                return
            for k in range(n):
                job = {"model": path, "input_shape": list(self.input_shape), "threads": threads,
                       "training": bool(self.model.training), "layers": _layers_for(len(self.model.layers), k, n),
                       "loss_and_update": k == n - 1}
                env = _helper_env()
                self._procs.append(subprocess.Popen(
                    [sys.executable, "-m", "fastcnn.parallel_compile", json.dumps(job)], env=env,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self):
        """Stop the helpers (if any are still compiling) and remove the model copy; no helper starts after."""
        with self._lock:
            self._stopped = True
            for proc in self._procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            self._procs = []
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None


def _cache_is_empty():
    """Whether Numba's cache holds nothing of the optimizer's kernels, which every training run calls (a first-ever
    run); False when it cannot tell (no cache)."""
    from .kernels._sgd import sgd_update_many, zero_many

    paths = [getattr(getattr(getattr(k, "_cache", None), "_cache_file", None), "_index_path", None)
             for k in (sgd_update_many, zero_many)]
    return all(p is not None and not os.path.exists(p) for p in paths)


def _helper_env():
    """A helper's environment: this one, with no helpers of its own, fixed threads and this fastcnn importable."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, FASTCNN_COMPILE_HELPERS="0", FASTCNN_DYNAMIC_THREADS="0", PYTHONPATH=path)


def _layers_for(n_layers, k, helpers):
    """Layer indices helper ``k`` of ``helpers`` compiles: the ``k``-th of ``helpers`` contiguous runs, in order.

    The training process compiles every layer's forward pass first, then the
    backward passes from the last layer to the first.  A helper running the
    layers from the first one on (forward and backward of each) finds the
    forward kernels mostly compiled already and compiles the backward ones
    the training process reaches last: the two meet in the backward pass.
    """
    return list(range(k * n_layers // helpers, (k + 1) * n_layers // helpers))


def compile_layers(model, input_shape, layers, training=True, seed=0):
    """Run layers ``layers`` of ``model`` alone on random batches of ``input_shape``: what compiles their kernels.

    Each layer gets a batch of its own input shape; in training mode its
    forward pass (with the ReLU after it when the model's chain fuses one:
    :func:`fastcnn.layers.chain.fused_relu`), then its backward pass as
    :meth:`fastcnn.Sequential.backward` calls it (no input gradient for the
    first layer with parameters, nothing for the layers before it); in eval
    mode the forward pass only.
    """
    import numpy as np

    from .layers import chain

    order = chain.run_order(model.layers)
    fusing = {order[j] for j in chain.fused_relu(model.layers, order)}
    shapes = [tuple(input_shape[1:])] + list(model.output_shapes(input_shape[1:]))
    rng = np.random.default_rng(seed)
    first_weighted = next((i for i, layer in enumerate(model.layers) if layer.parameters()), len(model.layers))
    model.train(training)
    for i in layers:
        layer = model.layers[i]
        x = rng.standard_normal((input_shape[0], *shapes[i])).astype(model.dtype)
        y = layer.forward(x, relu=True) if training and i in fusing else layer.forward(x)
        if training and i >= first_weighted:
            layer.backward(np.ones_like(y), need_input_grad=i > first_weighted)


def compile_loss_and_update(model, input_shape, seed=0):
    """Run the default loss (softmax cross-entropy, for a model that outputs class scores) and an SGD step with
    momentum and weight decay on ``model``'s parameters: what compiles the kernels a training step runs after
    the layers' forward pass (the loss) and last of all (the update).  Changes ``model``'s weights."""
    import numpy as np

    from .kernels import softmax_cross_entropy
    from .optim import SGD

    rng = np.random.default_rng(seed)
    out = model.output_shapes(tuple(input_shape[1:]))[-1]
    if len(out) == 1:
        logits = rng.standard_normal((input_shape[0], out[0])).astype(model.dtype)
        softmax_cross_entropy(logits, rng.integers(0, out[0], input_shape[0]))
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    optimizer.zero_grad()
    optimizer.step()


def _helper_main(job):
    """A helper process: load the model, compile the layers named in ``job``; exit 0 (or die quietly).

    The last helper first compiles the loss and the update (which the training process reaches after its
    whole forward pass, and last); then each helper runs its layers forward and backward from its first one on,
    each convolution's input gradient before its weight gradient: where the training process, which runs the
    weight gradient first, meets a helper in one layer's backward pass, each compiles one of the two.  In
    training a helper leaves out the layers whose kernels a later layer runs too (:func:`_same_kernels_later`):
    LeNet-5's first step on an empty cache took 6.6-7.3 s instead of 6.9-8.2 s (four runs each, alternating).
    """
    import fastcnn
    from fastcnn.kernels import conv

    conv.INPUT_GRAD_FIRST = True

    fastcnn.set_num_threads(job["threads"])
    model = fastcnn.load(job["model"])
    model = getattr(model, "model", model)
    layers = job["layers"]
    if job["training"]:
        if job.get("loss_and_update"):
            compile_loss_and_update(model, job["input_shape"])
        layers = [i for i in layers if not _same_kernels_later(model.layers, i)]
    compile_layers(model, job["input_shape"], layers, training=job["training"])


def _same_kernels_later(layers, i):
    """Whether a later layer of ``layers`` runs the kernels of ``layers[i]``: then the training process, whose
    backward pass starts from the last layer, meets those kernels early and compiles them itself, and a helper
    that reaches them too only makes one of the two wait.  True for a layer without parameters followed by one
    of the same class and configuration (a second pooling, a ReLU), and for a Linear layer followed by another
    of its dtype (their kernels do not depend on the sizes)."""
    from .layers import Linear

    layer = layers[i]
    kind = type(layer)
    for later in layers[i + 1:]:
        if type(later) is not kind:
            continue
        if kind is Linear and later.weight.dtype == layer.weight.dtype:
            return True
        if not layer.parameters() and later.get_config() == layer.get_config():
            return True
    return False


if __name__ == "__main__":
    _helper_main(json.loads(sys.argv[1]))


def compile_model(model, batch_size=64, inference_batch_sizes=(1, 256), seed=0):
    """Compile (or load from the cache) what training and predicting with ``model`` runs; return the seconds compiled.

    One training step on a random batch of ``batch_size`` examples of the
    model's input shape (through :meth:`~fastcnn.Sequential.fit`, so with
    helper processes as on a first run), then eval-mode predictions in
    batches of each of ``inference_batch_sizes``.  Trains ``model`` (use a
    throwaway copy).  ``fastcnn compile`` runs this for the zoo models, to
    fill the cache before the first real run (a Docker image, a CI job).
    """
    import numpy as np

    if model.input_shape is None:
        raise ValueError("compile_model: the model needs an input_shape (Sequential(..., input_shape=(C, H, W)))")
    before = compile_watch.compile_seconds()
    rng = np.random.default_rng(seed)
    classes = int(model.output_shapes(model.input_shape)[-1][0])
    x = rng.standard_normal((batch_size, *model.input_shape)).astype(model.dtype)
    model.fit(x, rng.integers(0, classes, batch_size), epochs=1, batch_size=batch_size, verbose=False, seed=seed)
    for n in inference_batch_sizes:
        model.predict(rng.standard_normal((n, *model.input_shape)).astype(model.dtype), batch_size=n)
    return compile_watch.compile_seconds() - before
