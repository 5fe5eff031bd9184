"""Sequential: a stack of layers with fit, evaluate, predict and summary."""

import math
import numbers
import sys
import time
import warnings

import numpy as np

from .callbacks import step_schedule
from .config import DEFAULT_DTYPE
from .kernels import mse_loss, softmax_cross_entropy
from .layers.activation import ReLU
from .layers.base import Layer
from .layers.pool import MaxPool2d
from .optim import SGD

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
        params = self.parameters()
        return params[0].data.dtype if params else np.dtype(DEFAULT_DTYPE)

    def parameters(self):
        """All trainable parameters, in layer order (each layer's weight, then bias)."""
        return [p for layer in self.layers for p in layer.parameters()]

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
            shapes, shape = [], input_shape
            for i, layer in enumerate(self.layers):
                try:
                    shape = tuple(layer.output_shape(shape))
                except ValueError as e:
                    raise ValueError(
                        f"Sequential: an input of shape {input_shape} cannot pass layer {i} ({layer!r}): {e}"
                    ) from None
                shapes.append(shape)
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

    def _order(self):
        """The order the layers run in: a ReLU directly followed by a MaxPool2d runs after it.

        ``maxpool(relu(x)) == relu(maxpool(x))`` exactly, because ReLU never
        decreases: the same maximum is picked (or one of equal value), and its
        gradient is routed where it was (zero where the maximum is not
        positive).  Pooling first leaves the ReLU a quarter of the elements
        (2x2 pooling) in both passes.  Recomputed per call, since ``layers``
        is a public list.
        """
        layers = self.layers
        order = list(range(len(layers)))
        for i in range(len(layers) - 1):
            if (type(layers[i]) is ReLU and type(layers[i + 1]) is MaxPool2d
                    and order[i] == i and order[i + 1] == i + 1):
                order[i], order[i + 1] = i + 1, i
        return order

    def forward(self, x):
        """Run a batch through every layer and return the outputs (logits for a classifier)."""
        x = self._as_input(x)
        for i in self._order():
            x = self.layers[i].forward(x)
        return x

    __call__ = forward

    def backward(self, dlogits, input_grad=False):
        """Backpropagate ``dlogits`` (gradient of the loss w.r.t. the outputs of the last forward).

        Adds into every parameter's ``.grad``.  With ``input_grad=False`` the pass
        stops at the first layer that has parameters, which skips that layer's
        input gradient; with True it returns the gradient w.r.t. the model input.
        """
        first = next((i for i, layer in enumerate(self.layers) if layer.parameters()), 0)
        d = dlogits
        for i in reversed(self._order()):
            layer = self.layers[i]
            if i == first and not input_grad:
                if hasattr(layer, "need_input_grad"):
                    layer.need_input_grad = False
                    try:
                        layer.backward(d)
                    finally:
                        layer.need_input_grad = True
                else:
                    layer.backward(d)
                return None
            d = layer.backward(d)
        return d

    # ------------------------------------------------------------------ training

    def _check_xy(self, x, y, loss, name):
        x = self._as_input(x, f"{name}x")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(f"Sequential.fit: {name}x contains NaN or infinite values")
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
        """Train with mini-batch gradient descent.

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
            A tqdm bar per epoch (loss, accuracy, images/s, ETA) when stderr is
            a terminal, one line per epoch on stdout otherwise; nothing when False.
        seed : int >= 0, optional
            Epoch ``e`` (0-based) is shuffled with ``np.random.default_rng([seed, e])``,
            so a run can be resumed exactly; without a seed the order is random.
        callbacks : list of fastcnn.callbacks.Callback, optional
            Objects with any of ``on_train_begin(model, state)``,
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

        Everything is checked before the first step: a refused call changes no
        weight.  If the loss becomes NaN or infinite, training stops with a
        RuntimeWarning before that step is applied.

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
        if loss not in LOSSES:
            raise ValueError(f"Sequential.fit: loss must be one of {sorted(LOSSES)}, got {loss!r}")
        for name, value in (("epochs", epochs), ("batch_size", 1 if batch_size is None else batch_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"Sequential.fit: {name} must be a positive int, got {value!r}")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, numbers.Integral) \
                or not 0 <= initial_epoch < epochs:
            raise ValueError(
                f"Sequential.fit: initial_epoch must be an int in [0, epochs) = [0, {epochs}), got {initial_epoch!r}; "
                "epochs is the number of the last epoch, not a count of further epochs"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"Sequential.fit: seed must be None or an int >= 0, got {seed!r}")
        if augment is not None and not callable(augment):
            raise TypeError(f"Sequential.fit: augment must be a callable batch -> batch, got {type(augment).__name__}")
        callbacks = _check_callbacks(callbacks)
        x, y = self._check_xy(x, y, loss, "")
        if len(x) == 0:
            raise ValueError("Sequential.fit: x is empty")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("Sequential.fit: validation_data must be a pair (x_val, y_val)")
            xv, yv = self._check_xy(*validation_data, loss, "validation ")
        if optimizer is None:
            optimizer = SGD(self.parameters(), lr=0.01)
        elif not hasattr(optimizer, "step") or not hasattr(optimizer, "zero_grad"):
            raise TypeError(f"Sequential.fit: optimizer must have step() and zero_grad(), got {type(optimizer).__name__}")
        if schedule is not None:
            if not callable(getattr(schedule, "step", None)):
                raise TypeError(f"Sequential.fit: schedule must have a step() method, got {type(schedule).__name__}")
            if getattr(schedule, "optimizer", optimizer) is not optimizer:
                raise ValueError("Sequential.fit: the schedule was built on a different optimizer than the one "
                                 "passed to fit; build it as StepLR(optimizer, ...) with fit's optimizer")

        loss_fn = LOSSES[loss]
        classify = loss == "cross_entropy"
        n = len(x)
        batch_size = n if batch_size is None else min(int(batch_size), n)
        epochs, initial_epoch = int(epochs), int(initial_epoch)
        unseeded = np.random.default_rng() if seed is None else None
        x_batch = np.empty((batch_size,) + x.shape[1:], dtype=x.dtype)
        y_batch = np.empty((batch_size,) + y.shape[1:], dtype=y.dtype)
        history = {"loss": []}
        if classify:
            history["accuracy"] = []
        if validation_data is not None:
            history["val_loss"] = []
            if classify:
                history["val_accuracy"] = []
        history["lr"], history["epoch_time"], history["epoch"] = [], [], []
        bar_ok = verbose and sys.stderr.isatty()
        state = {"epochs": epochs, "initial_epoch": initial_epoch, "optimizer": optimizer, "schedule": schedule,
                 "history": history, "batch_size": batch_size, "n": n}
        for cb in callbacks:
            _hook(cb, "on_train_begin")(self, state)

        for epoch in range(initial_epoch, epochs):
            self.train()
            start = time.perf_counter()
            lr = getattr(optimizer, "lr", None)
            if not shuffle:
                order = np.arange(n)
            elif seed is None:
                order = unseeded.permutation(n)
            else:
                order = np.random.default_rng([int(seed), epoch]).permutation(n)
            total_loss, correct, seen = 0.0, 0, 0
            bar = _progress(n, f"epoch {epoch + 1}/{epochs}") if bar_ok else None
            diverged = False
            for lo in range(0, n, batch_size):
                idx = order[lo:lo + batch_size]
                m = len(idx)
                xb, yb = x_batch[:m], y_batch[:m]
                np.take(x, idx, axis=0, out=xb)
                np.take(y, idx, axis=0, out=yb)
                if augment is not None:
                    xb = augment(xb)
                    if len(getattr(xb, "shape", ())) < 1 or xb.shape[0] != m:
                        raise ValueError(
                            f"Sequential.fit: augment must return a batch of {m} examples, got "
                            f"{getattr(xb, 'shape', type(xb).__name__)}"
                        )
                out = self.forward(xb)
                batch_loss, dout = loss_fn(out, yb)
                if not math.isfinite(batch_loss):
                    diverged = True
                    break
                optimizer.zero_grad()
                self.backward(dout)
                optimizer.step()
                total_loss += batch_loss * m
                seen += m
                if classify:
                    correct += int((out.argmax(axis=1) == yb).sum())
                if bar is not None:
                    bar.update(m)
                    post = {"loss": f"{total_loss / seen:.4f}"}
                    if classify:
                        post["acc"] = f"{correct / seen:.4f}"
                    bar.set_postfix(post, refresh=False)
            if bar is not None:
                bar.close()
            if diverged:
                warnings.warn(
                    f"Sequential.fit: loss became {batch_loss} in epoch {epoch + 1}; training stopped "
                    "before that step was applied (try a smaller learning rate)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            logs = {"loss": total_loss / seen}
            if classify:
                logs["accuracy"] = correct / seen
            if validation_data is not None:
                val = self.evaluate(xv, yv, loss=loss)
                logs["val_loss"] = val["loss"]
                if classify:
                    logs["val_accuracy"] = val["accuracy"]
            logs["lr"] = lr
            elapsed = time.perf_counter() - start
            logs["epoch_time"] = elapsed
            logs["epoch"] = epoch + 1
            if schedule is not None:
                step_schedule(schedule, logs)
            stop = False
            for cb in callbacks:
                if _hook(cb, "on_epoch_end")(self, epoch, logs) is True:
                    stop = True
            done = len(history["epoch"])
            for key in logs:
                if key not in history:
                    history[key] = [None] * done
            for key, values in history.items():
                values.append(logs.get(key))
            if verbose:
                print(_epoch_line(history, epoch, epochs, n / elapsed), flush=True)
            if stop:
                break
        for cb in callbacks:
            _hook(cb, "on_train_end")(self, history)
        return history

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
        x, y = self._check_xy(x, y, loss, "")
        if len(x) == 0:
            raise ValueError("Sequential.evaluate: x is empty")
        total, correct = 0.0, 0
        for lo, out in self._batched_outputs(x, batch_size):
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
        outs = [out for _, out in self._batched_outputs(x, batch_size)]
        if not outs:
            return np.empty((0,) + self.output_shapes(x.shape[1:])[-1], dtype=self.dtype)
        return np.concatenate(outs)

    def _batched_outputs(self, x, batch_size):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"Sequential: batch_size must be a positive int, got {batch_size!r}")
        was_training = self.training
        self.eval()
        try:
            for lo in range(0, len(x), batch_size):
                yield lo, self.forward(x[lo:lo + batch_size])
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ description

    def summary(self, input_shape=None, print_fn=print):
        """Print (and return) a table of layers, output shapes and parameter counts.

        ``input_shape`` (per example) defaults to the model's ``input_shape``.
        """
        shape = input_shape or self.input_shape
        shapes = self.output_shapes(shape) if shape is not None else [None] * len(self.layers)
        rows = [("Layer", "Output shape", "Params")]
        for layer, out in zip(self.layers, shapes):
            count = sum(p.size for p in layer.parameters())
            rows.append((repr(layer), "?" if out is None else str((None, *out)), f"{count:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        rule = "-" * (sum(widths) + 4)
        lines = [rule]
        for i, r in enumerate(rows):
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}")
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


def _progress(total, desc):
    """A tqdm bar counting images: tqdm shows the rate (img/s) and the ETA; fit adds loss and accuracy."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)


def _epoch_line(history, epoch, epochs, rate):
    parts = [f"epoch {epoch + 1}/{epochs}", f"loss {history['loss'][-1]:.4f}"]
    if "accuracy" in history:
        parts.append(f"acc {history['accuracy'][-1]:.4f}")
    if "val_loss" in history:
        parts.append(f"val_loss {history['val_loss'][-1]:.4f}")
    if "val_accuracy" in history:
        parts.append(f"val_acc {history['val_accuracy'][-1]:.4f}")
    lrs = history.get("lr", [])
    if len(lrs) > 1 and lrs[-1] != lrs[0] and isinstance(lrs[-1], float):  # only once a schedule has moved it
        parts.append(f"lr {lrs[-1]:.3g}")
    parts.append(f"{rate:,.0f} img/s")
    parts.append(f"{history['epoch_time'][-1]:.1f}s")
    return "  ".join(parts)


_HOOKS = ("on_train_begin", "on_epoch_end", "on_train_end")


def _check_callbacks(callbacks):
    """fit's ``callbacks`` argument as a list, each with at least one callable hook."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    for i, cb in enumerate(callbacks):
        if not any(callable(getattr(cb, h, None)) for h in _HOOKS):
            raise TypeError(
                f"Sequential.fit: callbacks[{i}] ({type(cb).__name__}) has none of the hooks {list(_HOOKS)}; "
                "subclass fastcnn.callbacks.Callback"
            )
    return list(callbacks)


def _hook(cb, name):
    fn = getattr(cb, name, None)
    return fn if callable(fn) else _no_hook


def _no_hook(*args):
    return None
