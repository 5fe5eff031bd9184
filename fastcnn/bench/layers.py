"""Per-layer times of a training step: each layer's forward and backward, timed inside the real step.

:class:`LayerTimer` wraps every layer of a model (the top-level layers and,
recursively, the layers inside a Residual's paths) with a timer around its
``forward`` and ``backward``, then runs the model's real training step
several times: every layer sees the activations and gradients the model
produces, in the order it runs them (a ReLU before a max pooling runs after it;
the layers before the first one with parameters get no backward call).  The
timers are instance attributes, removed afterwards.

:class:`TorchForwardTimer` does the same for the forward pass of a PyTorch
twin's top-level modules, with forward hooks, and :func:`align` pairs those
modules with fastcnn's top-level layers by kind (``Residual`` with the twin's
``BasicBlock``, ``GlobalAvgPool2d`` with ``AdaptiveAvgPool2d``, ``GlobalMaxPool2d``
with ``AdaptiveMaxPool2d``; the other pooling layers have PyTorch's names).
"""

import time

from .timing import median

__all__ = ["TORCH_KINDS", "layer_tree", "LayerTimer", "TorchForwardTimer", "align"]

#: fastcnn layer class name -> the class name of the PyTorch module that does its job in the twins.
TORCH_KINDS = {"Residual": "BasicBlock", "GlobalAvgPool2d": "AdaptiveAvgPool2d",
               "GlobalMaxPool2d": "AdaptiveMaxPool2d"}


def layer_tree(model):
    """``[(name, depth, layer), ...]``: the top-level layers, each followed by its nested layers, depth first.

    A top-level layer is named by its index (``"3"``), a nested one by its
    path and branch index (``"3.block0"``, ``"3.shortcut1"``).
    """
    out = []

    def visit(name, depth, layer):
        out.append((name, depth, layer))
        for child_name, child in layer.named_children():
            visit(f"{name}.{child_name}", depth + 1, child)

    for i, layer in enumerate(model.layers):
        visit(str(i), 0, layer)
    return out


class LayerTimer:
    """Times each layer of a fastcnn model inside its training step; a context manager.

    Inside the ``with`` block every layer of :func:`layer_tree` has a timer
    around its ``forward`` and ``backward`` (instance attributes, removed on
    exit); each :meth:`run` is one training step, and :meth:`result` gives
    the medians over the runs since the last :meth:`clear`.

    Parameters
    ----------
    model : Sequential
        The model ``step`` trains (in train mode).
    step : callable
        One training step of ``model`` (zero the gradients, forward, loss,
        backward), such as :func:`fastcnn.bench.models.fastcnn_step`.
    """

    def __init__(self, model, step):
        self.tree = layer_tree(model)
        self.layers = list({id(layer): layer for _, _, layer in self.tree}.values())  # a shared layer once
        self.step = step
        self._top = [id(layer) for _, depth, layer in self.tree if depth == 0]
        self.input_shape = {}
        self.need_input_grad = {}
        self._now = {id(layer): [0.0, 0.0, False, False] for layer in self.layers}
        self.clear()

    def __enter__(self):
        for layer in self.layers:
            layer.forward, layer.backward = self._forward(layer), self._backward(layer)
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            del layer.forward, layer.backward  # the class's methods again

    def _forward(self, layer):
        run, now = type(layer).forward.__get__(layer), self._now[id(layer)]

        def forward(x, **options):  # options: a BatchNorm's relu=True (fastcnn.layers.chain)
            t0 = time.perf_counter()
            y = run(x, **options)
            now[0] += time.perf_counter() - t0
            now[2] = True
            self.input_shape.setdefault(id(layer), tuple(x.shape))
            return y

        return forward

    def _backward(self, layer):
        run, now = type(layer).backward.__get__(layer), self._now[id(layer)]

        def backward(dy, need_input_grad=True):
            t0 = time.perf_counter()
            dx = run(dy, need_input_grad=need_input_grad)
            now[1] += time.perf_counter() - t0
            now[3] = True
            self.need_input_grad[id(layer)] = need_input_grad
            return dx

        return backward

    def clear(self):
        """Forget the runs so far (the warm-up)."""
        self.steps = []
        self.rests = []
        self.samples = {id(layer): ([], []) for layer in self.layers}

    def run(self):
        """One timed training step: the whole step's seconds, each layer's forward and backward seconds, and
        the rest of the step (outside every top-level layer: loss, zeroing the gradients, Python)."""
        for now in self._now.values():
            now[:] = [0.0, 0.0, False, False]
        t0 = time.perf_counter()
        self.step()
        self.steps.append(time.perf_counter() - t0)
        self.rests.append(self.steps[-1] - sum(self._now[key][0] + self._now[key][1] for key in self._top))
        for key, (f, b, forward_called, backward_called) in self._now.items():
            if forward_called:
                self.samples[key][0].append(f)
            if backward_called:
                self.samples[key][1].append(b)

    def _conv_plan(self, layer):
        """``{"forward", "weight_grad", "input_grad": name}`` of a Conv2d for the input it saw, else None."""
        key = id(layer)
        if getattr(layer, "plan", None) is None or key not in self.input_shape:
            return None
        plans = layer.plan(self.input_shape[key], need_input_grad=self.need_input_grad.get(key, True))
        return {"forward": plans.forward.algorithm, "weight_grad": plans.weight_grad.algorithm,
                "input_grad": None if plans.input_grad is None else plans.input_grad.algorithm}

    def result(self):
        """The medians of the runs: ``step_s``, ``rest_s`` (the step outside its top-level layers) and ``rows``.

        ``rows``: per layer of :func:`layer_tree` ``name``, ``depth``,
        ``kind`` (class name), ``layer`` (its repr; a layer with sub-layers
        gets its class name), ``input_shape`` (per example), ``forward_s``
        and ``backward_s`` (medians; None for a pass the step did not call),
        ``share`` (forward + backward over ``step_s``) and ``plan`` (a
        Conv2d's plan for that input and its ``need_input_grad``, see
        :meth:`fastcnn.layers.Conv2d.plan`; else None).  Call it under the
        thread count of the runs: the plans depend on it.
        """
        step_s = median(self.steps)
        rows = []
        for name, depth, layer in self.tree:
            key = id(layer)
            f, b = median(self.samples[key][0]), median(self.samples[key][1])
            shape = self.input_shape.get(key)
            rows.append({"name": name, "depth": depth, "kind": type(layer).__name__,
                         "layer": type(layer).__name__ if layer.children() else repr(layer),
                         "input_shape": None if shape is None else shape[1:], "forward_s": f, "backward_s": b,
                         "share": ((f or 0.0) + (b or 0.0)) / step_s if step_s and (f or b) else None,
                         "plan": self._conv_plan(layer)})
        return {"step_s": step_s, "rest_s": median(self.rests), "rows": rows}


class TorchForwardTimer:
    """Times the forward of each top-level module of a PyTorch model inside its training step; a context manager.

    Inside the ``with`` block a forward pre-hook and a forward hook on each
    direct child of ``tmodel`` read ``time.perf_counter`` (removed on exit);
    the interface is :class:`LayerTimer`'s.
    """

    def __init__(self, tmodel, step):
        self.modules = list(tmodel.named_children())
        self.step = step
        self._seconds = {name: 0.0 for name, _ in self.modules}
        self._started = {}
        self._handles = []
        self.clear()

    def __enter__(self):
        for name, module in self.modules:
            self._handles += [module.register_forward_pre_hook(self._before(name)),
                              module.register_forward_hook(self._after(name))]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _before(self, name):
        def hook(_module, _inputs):
            self._started[name] = time.perf_counter()

        return hook

    def _after(self, name):
        def hook(_module, _inputs, _output):
            self._seconds[name] += time.perf_counter() - self._started[name]

        return hook

    def clear(self):
        """Forget the runs so far (the warm-up)."""
        self.steps = []
        self.samples = {name: [] for name, _ in self.modules}

    def run(self):
        """One timed training step: the whole step's seconds, and each module's forward seconds."""
        for name in self._seconds:
            self._seconds[name] = 0.0
        t0 = time.perf_counter()
        self.step()
        self.steps.append(time.perf_counter() - t0)
        for name, s in self._seconds.items():
            self.samples[name].append(s)

    def result(self):
        """``{"step_s": median, "modules": [{"name", "kind", "forward_s"}, ...]}`` in the modules' order."""
        return {"step_s": median(self.steps),
                "modules": [{"name": name, "kind": type(module).__name__, "forward_s": median(self.samples[name])}
                            for name, module in self.modules]}


def align(kinds, torch_kinds):
    """Pair fastcnn's top-level layer kinds with the twin's module kinds: ``{fastcnn index: torch index}``.

    The longest common subsequence of the two lists of class names, a fastcnn
    name translated by :data:`TORCH_KINDS` first; a layer left out has no
    module of its own in the twin (fastcnn's ReLU after a Residual is inside
    the twin's BasicBlock) and the other way round (the twin's Flatten
    before its last Linear).

    Examples
    --------
    >>> align(["Conv2d", "Residual", "ReLU", "GlobalAvgPool2d", "Linear"],
    ...       ["Conv2d", "BasicBlock", "AdaptiveAvgPool2d", "Flatten", "Linear"])
    {0: 0, 1: 1, 3: 2, 4: 4}
    """
    a = [TORCH_KINDS.get(k, k) for k in kinds]
    b = list(torch_kinds)
    n, m = len(a), len(b)
    best = [[0] * (m + 1) for _ in range(n + 1)]  # best[i][j]: LCS length of a[i:], b[j:]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best[i][j] = best[i + 1][j + 1] + 1 if a[i] == b[j] else max(best[i + 1][j], best[i][j + 1])
    pairs, i, j = {}, 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs[i] = j
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs
