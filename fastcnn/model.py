"""Sequential: a stack of layers with forward/backward, predict, evaluate, summary and save; fit trains it.

The layers run as one :mod:`fastcnn.layers.chain` (the same code runs a
Residual block's paths); the training loop itself lives in
:mod:`fastcnn.training`.
"""

import numbers
import threading

import numpy as np

from .config import DEFAULT_DTYPE
from .malloc import keep_freed_memory
from .kernels import mse_loss, softmax_cross_entropy
from ._util import check_positive_int
from .layers import chain, fuse
from .layers.base import Layer
from .layers.conv import Conv2d

LOSSES = {"cross_entropy": softmax_cross_entropy, "mse": mse_loss}


class Sequential:
    """Layers applied in order; the entry point for training.

    Parameters
    ----------
    *layers : Layer
    input_shape : tuple, optional
        Per-example input shape, e.g. ``(1, 28, 28)``; lets :meth:`summary` show
        output shapes before any data has been seen, and is checked up front.

    Inputs are converted once, at the model boundary, to the dtype of the
    model's parameters (float32 by default): integer, bool or float64 arrays
    are accepted and cast; uint8 images are *not* rescaled (divide by 255, or
    use ``fastcnn.data.to_float``).

    Examples
    --------
    >>> import numpy as np
    >>> import fastcnn
    >>> from fastcnn.layers import Conv2d, ReLU, GlobalAvgPool2d, Linear
    >>> model = fastcnn.Sequential(Conv2d(1, 4, 3, padding=1), ReLU(), GlobalAvgPool2d(), Linear(4, 2))
    >>> x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    >>> y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(int)
    >>> history = model.fit(x, y, epochs=2, batch_size=8, verbose=False, seed=0)
    >>> sorted(history)
    ['accuracy', 'epoch', 'epoch_time', 'loss', 'lr']
    """

    def __init__(self, *layers, input_shape=None):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: argument {i} must be a fastcnn Layer, got {type(layer).__name__}")
        if not layers:
            raise ValueError("Sequential: needs at least one layer")
        dtypes = {p.data.dtype for layer in layers for p in layer.parameters()}
        if len(dtypes) > 1:
            raise ValueError(
                f"Sequential: all layers must share one dtype, got {sorted(d.name for d in dtypes)}; "
                "build every layer with the same dtype="
            )
        self.layers = list(layers)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.training = True
        self._checked_shapes = {}
        if self.input_shape is not None:
            self.output_shapes(self.input_shape)

    # ------------------------------------------------------------------ structure

    @property
    def dtype(self):
        """The dtype of the model's parameters (float32 unless built otherwise)."""
        for layer in self.layers:
            params = layer.parameters()
            if params:
                return params[0].data.dtype
        return np.dtype(DEFAULT_DTYPE)

    def children(self):
        """The layers (a copy of the list), as :meth:`fastcnn.layers.Layer.children` gives a layer's sub-layers."""
        return list(self.layers)

    def parameters(self):
        """All trainable parameters, in layer order (weight, then bias; nested layers' in place), each once."""
        return chain.parameters(self.layers)

    def train(self, mode=True):
        """Training mode: dropout active, layers keep what backward needs."""
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self):
        """Evaluation mode: dropout off, nothing kept for backward."""
        return self.train(False)

    def output_shapes(self, input_shape):
        """Per-example output shape after each layer; ValueError if a layer cannot take its input.

        Results are cached per input shape.
        """
        input_shape = tuple(int(d) for d in input_shape)
        shapes = self._checked_shapes.get(input_shape)
        if shapes is None:
            shapes = chain.output_shapes(self.layers, input_shape, lambda i, layer, shape:
                                         f"Sequential: an input of shape {input_shape} cannot pass layer {i} "
                                         f"({layer!r})")
            self._checked_shapes[input_shape] = shapes
        return shapes

    # ------------------------------------------------------------------ forward / backward

    def _as_input(self, x, name="x"):
        """Check and convert a batch once, at the boundary, to the model's dtype."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"Sequential: {name} must be a numeric array, got dtype {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"Sequential: {name} must have a batch axis first, got shape {x.shape}")
        self.output_shapes(x.shape[1:])
        return np.ascontiguousarray(x, dtype=self.dtype)

    def forward(self, x):
        """Run a batch through every layer and return the outputs (logits for a classifier).

        The layers run in :func:`fastcnn.layers.chain.run_order`: a ReLU directly
        followed by a MaxPool2d or GlobalMaxPool2d runs after it (the same result,
        on fewer elements).
        In eval mode they run fused (:mod:`fastcnn.layers.fuse`: BatchNorm folded
        into the convolution or linear layer before it, ReLU in place, one thread
        for tiny batches), the same result up to float rounding.
        """
        return chain.forward(self.layers, self._as_input(x))

    __call__ = forward

    def backward(self, dlogits, input_grad=False):
        """Backpropagate ``dlogits`` (gradient of the loss w.r.t. the outputs of the last forward).

        Adds into every parameter's ``.grad``.  With ``input_grad=False`` the pass
        stops at the first layer that has parameters, which is told
        ``need_input_grad=False`` and skips its input gradient, and returns None;
        with True it returns the gradient w.r.t. the model input.
        """
        return chain.backward(self.layers, dlogits, need_input_grad=input_grad)

    # ------------------------------------------------------------------ training

    def _check_xy(self, x, y, loss, name, owner="Sequential.fit"):
        x = self._as_input(x, f"{name}x")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(f"{owner}: {name}x contains NaN or infinite values")
        out_shape = self.output_shapes(x.shape[1:])[-1]
        y = np.asarray(y)
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(f"Sequential: {name}y has {y.shape[0] if y.ndim else 0} entries but {name}x has {x.shape[0]}")
        if loss == "cross_entropy":
            if y.dtype.kind not in "iu":
                raise TypeError(f"Sequential: {name}y must hold integer class labels, got dtype {y.dtype}")
            if y.ndim != 1:
                raise ValueError(f"Sequential: {name}y must be 1-D class labels, got shape {y.shape}")
            k = out_shape[0]
            if len(out_shape) != 1:
                raise ValueError(f"Sequential: cross_entropy needs (N, classes) outputs, model gives {out_shape}")
            if y.size and (y.min() < 0 or y.max() >= k):
                raise ValueError(f"Sequential: {name}y labels must be in [0, {k}) for {k} outputs, "
                                 f"got values from {y.min()} to {y.max()}")
            y = np.ascontiguousarray(y, dtype=np.int64)
        else:
            if y.shape[1:] != out_shape:
                raise ValueError(f"Sequential: {name}y must have per-example shape {out_shape} for mse, got {y.shape[1:]}")
            if y.dtype.kind not in "biuf" or not np.isfinite(y).all():
                raise ValueError(f"Sequential: {name}y must be finite numbers")
            y = np.ascontiguousarray(y, dtype=self.dtype)
        return x, y

    def fit(self, x, y, epochs=1, batch_size=32, optimizer=None, loss="cross_entropy", validation_data=None,
            shuffle=True, verbose=True, seed=None, callbacks=None, schedule=None, initial_epoch=0, augment=None):
        """Train with mini-batch gradient descent (the loop is :func:`fastcnn.training.fit`).

        Parameters
        ----------
        x : array (N, ...), float or integer
            Converted once to the model's dtype.
        y : array (N,) of int class labels (``loss="cross_entropy"``) or targets
            shaped like the outputs (``loss="mse"``).
        epochs : int >= 1
            The number of the last epoch to train (as Keras): epochs
            ``initial_epoch + 1 .. epochs`` are run.
        batch_size : int >= 1 or None
            The last batch of an epoch may be smaller.  None (or any value
            >= N) is full-batch training; 1 is per-example.
        optimizer : fastcnn.optim.SGD, optional
            Defaults to ``SGD(model.parameters(), lr=0.01)`` (Keras's default).
        loss : {"cross_entropy", "mse"}
        validation_data : (x_val, y_val), optional
            Evaluated after every epoch.
        shuffle : bool
            Shuffle the examples every epoch.
        verbose : bool
            One line per epoch on stdout (:class:`fastcnn.callbacks.EpochLine`)
            and, when stderr is a terminal, a tqdm bar per epoch with loss,
            accuracy, images/s and ETA (:class:`fastcnn.callbacks.ProgressBar`);
            nothing when False.
        seed : int >= 0, optional
            Epoch ``e`` (0-based) is shuffled with ``np.random.default_rng([seed, e])``,
            so a run can be resumed exactly; without a seed the order is random.
        callbacks : list of fastcnn.callbacks.Callback, optional
            Objects with any of ``on_train_begin(model, state)``,
            ``on_epoch_begin(model, epoch, logs)``, ``on_batch_end(model, batch, logs)``,
            ``on_epoch_end(model, epoch, logs)`` (return True to stop) and
            ``on_train_end(model, history)``; see :mod:`fastcnn.callbacks`.
        schedule : learning-rate schedule, optional
            ``fastcnn.optim.StepLR`` / ``ExponentialLR`` / ``ReduceLROnPlateau``
            built on ``optimizer``; stepped once per epoch after validation
            (ReduceLROnPlateau with ``val_loss``, or ``loss`` without validation data).
        initial_epoch : int >= 0
            The number of epochs already done; with the same seed, the
            optimizer's state and the schedule's state carried over,
            ``fit(epochs=1)`` then ``fit(epochs=2, initial_epoch=1)`` gives the
            same weights as ``fit(epochs=2)``.
        augment : callable, optional
            Applied to every training batch before the forward pass:
            ``augment(x_batch) -> x_batch`` with the same number of examples
            (e.g. ``fastcnn.augment.Augment``).  It may work in place: the batch
            is a scratch copy.

        Returns
        -------
        history : dict of lists, one entry per epoch
            ``loss``, ``accuracy`` (cross-entropy only), ``val_loss``,
            ``val_accuracy`` (with validation data), ``lr`` (the rate the epoch
            used), ``epoch_time`` (seconds, validation included), ``epoch``
            (the 1-based epoch number), and anything callbacks add to the logs.

        On a machine whose kernel cache lacks what the model needs, the first
        step compiles it, with helper processes on free cores
        (:mod:`fastcnn.parallel_compile`; ``FASTCNN_COMPILE_HELPERS=0`` turns
        them off); ``verbose`` says so.

        Everything is checked before the first step: a refused call changes no
        weight.  If the loss becomes NaN or infinite, training stops before
        that step is applied, and a RuntimeWarning follows the callbacks'
        ``on_train_end``.

        Examples
        --------
        >>> import numpy as np
        >>> import fastcnn
        >>> from fastcnn.callbacks import EarlyStopping
        >>> from fastcnn.layers import Flatten, Linear
        >>> fastcnn.manual_seed(0)
        >>> model = fastcnn.Sequential(Flatten(), Linear(4, 2))
        >>> x = np.random.default_rng(0).random((32, 1, 2, 2), dtype=np.float32)
        >>> y = (x.sum(axis=(1, 2, 3)) > 2).astype(int)
        >>> opt = fastcnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> sched = fastcnn.optim.StepLR(opt, step_size=2, gamma=0.5)
        >>> hist = model.fit(x, y, epochs=4, batch_size=8, optimizer=opt, schedule=sched, seed=0,
        ...                  callbacks=[EarlyStopping(monitor="loss", patience=2)], verbose=False)
        >>> hist["epoch"], hist["lr"]
        ([1, 2, 3, 4], [0.1, 0.1, 0.05, 0.05])
        """
        from .parallel_compile import CompileHelpers
        from .training import fit

        with CompileHelpers(self, _batch_shape(x, batch_size)):
            return fit(self, x, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, loss=loss,
                       validation_data=validation_data, shuffle=shuffle, verbose=verbose, seed=seed,
                       callbacks=callbacks, schedule=schedule, initial_epoch=initial_epoch, augment=augment)

    def evaluate(self, x, y, batch_size=256, loss="cross_entropy"):
        """Mean loss and accuracy on a data set, in eval mode (the mode is restored after).

        Returns
        -------
        dict
            ``{"loss": float, "accuracy": float in [0, 1]}`` (accuracy for
            cross-entropy only).
        """
        if loss not in LOSSES:
            raise ValueError(f"Sequential.evaluate: loss must be one of {sorted(LOSSES)}, got {loss!r}")
        x, y = self._check_xy(x, y, loss, "", "Sequential.evaluate")
        if len(x) == 0:
            raise ValueError("Sequential.evaluate: x is empty")
        total, correct = 0.0, 0
        for lo, out, _ in self._batched_outputs(x, batch_size):
            yb = y[lo:lo + len(out)]
            batch_loss, _ = LOSSES[loss](out, yb)
            total += batch_loss * len(out)
            if loss == "cross_entropy":
                correct += int((out.argmax(axis=1) == yb).sum())
        result = {"loss": total / len(x)}
        if loss == "cross_entropy":
            result["accuracy"] = correct / len(x)
        return result

    def predict(self, x, batch_size=256):
        """Model outputs for ``x`` in eval mode (logits for a classifier; ``argmax(axis=1)`` gives labels)."""
        x = self._as_input(x)
        outs = [(out, owned) for _, out, owned in self._batched_outputs(x, batch_size)]
        if not outs:
            return np.empty((0,) + self.output_shapes(x.shape[1:])[-1], dtype=self.dtype)
        if len(outs) == 1 and outs[0][1]:
            return outs[0][0]  # a new array the layers made: no copy needed
        return np.concatenate([out for out, _ in outs])

    def _batched_outputs(self, x, batch_size):
        """``(start, outputs, owned)`` per batch of the converted ``x``, in eval mode (the mode is restored after).

        ``owned`` is True when the outputs are an array the layers made (not
        the input or a view of it).  A model already in eval mode throughout
        is not switched back and forth (the same state either way).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"Sequential: batch_size must be a positive int, got {batch_size!r}")
        keep_freed_memory()
        _enter_eval(self)
        own_forward = type(self).forward is Sequential.forward
        try:
            for lo in range(0, len(x), batch_size):
                batch = x[lo:lo + batch_size]
                if own_forward:  # x is converted already; the eval chain runs fused
                    out, owned = fuse.forward(self.layers, batch)
                else:
                    out, owned = self.forward(batch), False
                yield lo, out, owned
        finally:
            _leave_eval(self)

    # ------------------------------------------------------------------ description

    def summary(self, input_shape=None, print_fn=print, plans=False, batch_size=64):
        """Print (and return) a table of layers, output shapes and parameter counts.

        ``input_shape`` (per example) defaults to the model's ``input_shape``.
        A layer that holds others (Residual) gets one row with its total, then
        its paths, each layer on its own indented row.  ``plans=True`` adds,
        under each convolution, the algorithm of each pass and its scratch
        memory for a training batch of ``batch_size`` (see
        :meth:`fastcnn.layers.Conv2d.plan`; the model's first weighted layer
        computes no input gradient).
        """
        shape = input_shape or self.input_shape
        shapes = self.output_shapes(shape) if shape is not None else [None] * len(self.layers)
        planner = None
        if plans:
            if shape is None:
                raise ValueError("summary(plans=True) needs an input_shape (the model has none)")
            batch_size = check_positive_int(batch_size, "batch_size", "summary")
            weighted = [layer for layer in self.layers if layer.parameters()]
            planner = _Planner(batch_size, weighted[0] if weighted else None)
        rows = [("Layer", "Output shape", "Params")] + _summary_rows(self.layers, shape, shapes, "", planner)
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        rule = "-" * (sum(widths) + 4)
        lines = [rule]
        for i, r in enumerate(rows):
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}".rstrip())
            if i == 0:
                lines.append(rule)
        total = sum(p.size for p in self.parameters())
        lines += [rule, f"Total params: {total:,}", f"Input shape: {None if shape is None else (None, *shape)}"]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    # ------------------------------------------------------------------ saving

    def get_config(self):
        """The architecture as a JSON-able dict: each layer's class and ``get_config()``, the input shape and dtype."""
        from .serialize import model_to_config

        return model_to_config(self)

    def save(self, path, optimizer=None, normalizer=None, extra=None, schedule=None):
        """Write the model, and optionally its training state, to one ``.npz`` file (atomically, no pickle).

        Parameters
        ----------
        path : str or os.PathLike
        optimizer : fastcnn.optim.SGD, optional
            Its hyperparameters and momentum buffers, to resume training exactly.
        normalizer : object with ``state_dict()`` or a dict of arrays/str/numbers, optional
        extra : JSON-able dict, optional
            Epoch, history, seed ...
        schedule : object with ``state_dict()`` or a JSON-able dict, optional

        ``fastcnn.load(path)`` gives the model back;
        ``fastcnn.serialize.load_checkpoint(path)`` everything.  See
        :mod:`fastcnn.serialize` for the file layout.

        Examples
        --------
        >>> import fastcnn
        >>> model = fastcnn.models.lenet5()
        >>> model.save("/tmp/lenet5-doctest.npz")
        >>> fastcnn.load("/tmp/lenet5-doctest.npz").input_shape
        (1, 28, 28)
        """
        from .serialize import save_model

        save_model(self, path, optimizer=optimizer, normalizer=normalizer, schedule=schedule, extra=extra)

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


# Predictions switch a model in training mode to eval mode and back.  Several threads may predict with one model at
# once: the first to start switches, the last to finish switches back (one thread's switch back must not put the
# batches another is still running in training mode).  id(model) -> [predictions running, mode to restore or None]
# (an entry lives while a prediction runs, and the running generator holds the model).
_EVAL_LOCK = threading.Lock()
_EVAL_USERS = {}


def _batch_shape(x, batch_size):
    """The shape of fit's training batches (for :class:`fastcnn.parallel_compile.CompileHelpers`); () if unknown."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) < 2 or shape[0] < 1:
        return ()
    n = shape[0] if batch_size is None or isinstance(batch_size, bool) or not isinstance(batch_size, int) \
        else max(1, min(batch_size, shape[0]))
    return (n, *shape[1:])


def _enter_eval(model):
    """Eval mode for a prediction, shared with the predictions other threads are running with ``model``."""
    with _EVAL_LOCK:
        entry = _EVAL_USERS.get(id(model))
        if entry is None:
            switch = model.training or _any_training(model.layers)
            entry = _EVAL_USERS[id(model)] = [0, model.training if switch else None]
            if switch:
                model.eval()
        entry[0] += 1


def _leave_eval(model):
    """End a prediction: the last one running restores the mode that the first one found."""
    with _EVAL_LOCK:
        entry = _EVAL_USERS[id(model)]
        entry[0] -= 1
        if entry[0] == 0:
            del _EVAL_USERS[id(model)]
            if entry[1] is not None:
                model.train(entry[1])


def _any_training(layers):
    """Whether any of ``layers``, or any layer nested in them, is in training mode."""
    for layer in layers:
        if layer.training or any(_any_training(inner) for _, inner in layer.branches()):
            return True
    return False


class _Planner:
    """Summary rows with the convolution plans of each Conv2d, for a batch of ``batch_size``."""

    def __init__(self, batch_size, first_weighted):
        self.batch_size = batch_size
        self.first_weighted = first_weighted

    def rows(self, layer, in_shape, indent):
        if not isinstance(layer, Conv2d) or in_shape is None:
            return []
        plans = layer.plan((self.batch_size, *in_shape), need_input_grad=layer is not self.first_weighted)
        return [(f"{indent}    {p.op}: {p.algorithm}",
                 "scratch " + (f"{p.workspace_bytes / 2**20:.2f} MiB" if p.workspace_bytes else "none"), "")
                for p in (plans.forward, plans.weight_grad, plans.input_grad) if p is not None]


def _summary_rows(layers, in_shape, out_shapes, indent, planner=None):
    """Summary rows ``(layer, output shape, params)`` for a chain of layers, nested paths indented below their layer."""
    rows = []
    for layer, out in zip(layers, out_shapes):
        count = sum(p.size for p in layer.parameters())
        branches = layer.branches()
        rows.append((indent + (type(layer).__name__ if branches else repr(layer)),
                     "?" if out is None else str((None, *out)), f"{count:,}"))
        if planner is not None:
            rows += planner.rows(layer, in_shape, indent)
        for name, inner in branches:
            if not inner:
                rows.append((f"{indent}  {name}: identity", "", ""))
                continue
            rows.append((f"{indent}  {name}:", "", ""))
            inner_shapes = [None] * len(inner) if in_shape is None else chain.output_shapes(
                inner, in_shape, lambda i, layer, shape, name=name: f"{name}[{i}] ({layer!r}) cannot take {shape}")
            rows += _summary_rows(inner, in_shape, inner_shapes, indent + "    ", planner)
        in_shape = out
    return rows
