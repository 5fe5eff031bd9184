"""One process's part in data-parallel training: :class:`DataParallel`, the object ``training.fit`` steps through.

Every rank holds the whole model, the whole data set and the same generators; for each global batch of ``M``
examples (drawn in the single-process order) rank ``r`` computes the gradient of its contiguous shard
(:func:`~fastcnn.distributed.shard.shard_bounds`), scaled by ``m_r / M``, and one allreduce of a flat buffer
(:class:`~fastcnn.distributed.shard.FlatBuffer`) sums the shards' gradients into the global batch's mean
gradient, the one a single process computes, on every rank.  The step's loss, correct count and example count
ride in the same buffer, so a NaN anywhere stops every rank before that step, as it stops one process.

While a :class:`DataParallel` is active (``with DataParallel(...):``) it stands in for two methods of some
layers, restored on exit:

* **Dropout** draws the mask of the *whole* global batch from its generator (the same state on every rank)
  and applies the rows of its shard: example ``i`` of a batch gets the mask one process gives it, whatever the
  number of ranks, and no two ranks share a mask.
* **BatchNorm** (only with ``sync_batchnorm=True``) normalises with the statistics of the whole global batch:
  one small allreduce of per-channel sums in forward and one in backward, per layer; the result equals one
  process's.  By default (as PyTorch's DistributedDataParallel) each rank normalises with its own shard's
  statistics, and rank 0's running statistics are broadcast to the others at the end of every epoch.

A rank whose shard is empty (a last batch smaller than the number of ranks) still runs forward and backward
on one example with weight 0, so that its generators advance as the others' and it joins every collective;
its gradient, loss and counts are zeros, and its own BatchNorm running statistics (not synchronised ones)
are restored afterwards.
"""

import numpy as np

from .. import kernels
from ..layers import BatchNorm1d, BatchNorm2d, Dropout
from .shard import FlatBuffer, shard_bounds

__all__ = ["DataParallel"]

_EXTRAS = 3  # loss * examples, correct predictions, examples: carried after the gradients


def _walk(model):
    for layer in model.layers:
        yield from layer.walk()


class DataParallel:
    """The data-parallel side of a training run over ``comm``: the hooks :func:`fastcnn.training.fit` calls.

    Parameters
    ----------
    comm : fastcnn.distributed.Communicator
    model : fastcnn.Sequential
    optimizer : object with ``zero_grad()`` and ``params`` (fastcnn.optim.SGD)
    sync_batchnorm : bool
        Normalise BatchNorm layers with the global batch's statistics (see the module's description).

    Use as a context manager around the training, so the layer methods it stands in for are restored.
    """

    def __init__(self, comm, model, optimizer, sync_batchnorm=False):
        self.comm, self.model, self.optimizer = comm, model, optimizer
        self.sync_batchnorm = bool(sync_batchnorm)
        params = list(getattr(optimizer, "params", None) or model.parameters())
        self.flat = FlatBuffer(params, extras=_EXTRAS)
        self.started = False  # the first collective of the training loop has been entered
        self.global_batch, self.lo, self.hi, self.weight = 1, 0, 1, 1.0
        self._patched = []

    # ------------------------------------------------------------------ the hooks of training.fit

    def gradient(self, model, loss_fn, classify, xb, yb):
        """The global batch ``xb, yb``'s mean gradient in every ``.grad``; ``(mean loss, correct count)``.

        Called on every rank with the same global batch (already augmented); computes this rank's shard.
        """
        M = len(xb)
        lo, hi = shard_bounds(M, self.comm.size, self.comm.rank)
        empty = hi == lo
        self.global_batch, self.weight = M, 0.0 if empty else 1.0
        self.lo, self.hi = (0, 1) if empty else (lo, hi)
        restore = empty and not self.sync_batchnorm  # synchronised statistics are the others' too: keep them
        saved = [b.copy() for b in self._buffers()] if restore else None
        xl, yl = xb[self.lo:self.hi], yb[self.lo:self.hi]
        out = model.forward(xl)
        loss, dout = loss_fn(out, yl)
        if empty:
            dout[...] = 0
        else:
            dout *= dout.dtype.type((hi - lo) / M)
        self.optimizer.zero_grad()
        model.backward(dout)
        if restore:
            for b, s in zip(self._buffers(), saved):
                b[...] = s
        if empty:
            self.flat.data[...] = 0
        else:
            correct = int((out.argmax(axis=1) == yl).sum()) if classify else 0
            self.flat.pack([loss * (hi - lo), correct, hi - lo])
        self.started = True
        self.comm.allreduce(self.flat.data)
        loss_sum, correct, seen = self.flat.unpack()
        return loss_sum / seen, int(round(correct))

    def evaluate(self, model, x, y, loss="cross_entropy"):
        """``model.evaluate`` over all ranks: each evaluates its contiguous shard of ``x``; the sums are reduced."""
        return evaluate_sharded(self.comm, model, x, y, loss)

    def end_epoch(self, model):
        """Before validation: rank 0's BatchNorm running statistics on every rank (not needed when synchronised)."""
        if not self.sync_batchnorm:
            broadcast_buffers(self.comm, model)

    def any(self, flag):
        """Whether ``flag`` (a callback asked to stop) is true on any rank: every rank stops together."""
        return self.comm.any(flag)

    # ------------------------------------------------------------------ the layers it stands in for

    def _buffers(self):
        return [buf for layer in _walk(self.model) for buf in layer.own_buffers().values()]

    def __enter__(self):
        for layer in _walk(self.model):
            if isinstance(layer, Dropout):
                self._patch(layer, *_sharded_dropout(self, layer))
            elif self.sync_batchnorm and isinstance(layer, (BatchNorm1d, BatchNorm2d)):
                self._patch(layer, *_synced_batchnorm(self, layer))
        return self

    def __exit__(self, *exc):
        for layer in self._patched:
            del layer.forward, layer.backward
        self._patched = []
        return False

    def _patch(self, layer, forward, backward):
        layer.forward, layer.backward = forward, backward
        self._patched.append(layer)


def evaluate_sharded(comm, model, x, y, loss="cross_entropy"):
    """Mean loss (and accuracy) of ``model`` on ``x, y`` split over the ranks; the same dict on every rank.

    Rank ``r`` evaluates examples :func:`~fastcnn.distributed.shard.shard_bounds` ``(len(x), size, r)``; the
    per-rank sums of loss and correct predictions are added with one allreduce.
    """
    lo, hi = shard_bounds(len(x), comm.size, comm.rank)
    sums = np.zeros(3, dtype=np.float64)
    if hi > lo:
        result = model.evaluate(x[lo:hi], y[lo:hi], loss=loss)
        sums[:] = result["loss"] * (hi - lo), round(result.get("accuracy", 0.0) * (hi - lo)), hi - lo
    comm.allreduce(sums)
    out = {"loss": float(sums[0] / sums[2])}
    if loss == "cross_entropy":
        out["accuracy"] = float(sums[1] / sums[2])
    return out


def broadcast_buffers(comm, model):
    """Overwrite every layer buffer (BatchNorm running statistics) with rank 0's: one broadcast."""
    buffers = [buf for layer in _walk(model) for buf in layer.own_buffers().values()]
    if not buffers:
        return
    flat = np.concatenate([b.reshape(-1) for b in buffers])
    comm.bcast_array(flat)
    start = 0
    for b in buffers:
        b.reshape(-1)[...] = flat[start:start + b.size]
        start += b.size


def broadcast_parameters(comm, model):
    """Overwrite every parameter with rank 0's: one broadcast of a flat buffer."""
    params = model.parameters()
    if not params:
        return
    flat = np.concatenate([p.data.reshape(-1) for p in params])
    comm.bcast_array(flat)
    start = 0
    for p in params:
        p.data.reshape(-1)[...] = flat[start:start + p.size]
        start += p.size


# --------------------------------------------------------------------------- Dropout: the global batch's masks


def _sharded_dropout(dp, layer):
    """``(forward, backward)`` for ``layer`` that draw the global batch's mask and apply the shard's rows."""
    original = type(layer).forward
    state = {"mask": None}

    def forward(x):
        if not layer.training or layer.p == 0.0:
            state["mask"] = None
            return original(layer, x)
        ones = np.ones((dp.global_batch,) + x.shape[1:], dtype=x.dtype)
        mask = original(layer, ones)[dp.lo:dp.hi]  # the whole batch's draw, exactly keep * scale
        state["mask"] = mask
        return x * mask

    def backward(dy, need_input_grad=True):
        if not need_input_grad:
            return None
        return dy if state["mask"] is None else dy * state["mask"]

    return forward, backward


# --------------------------------------------------------------------------- BatchNorm: the global batch's statistics


def _synced_batchnorm(dp, layer):
    """``(forward, backward)`` for a BatchNorm layer that normalise with the global batch's statistics."""
    cls = type(layer)
    two_d = isinstance(layer, BatchNorm2d)
    eval_forward = kernels.batch_norm2d_forward if two_d else kernels.batch_norm1d_forward
    eval_backward = kernels.batch_norm2d_backward if two_d else kernels.batch_norm1d_backward
    C = layer.num_features
    state = {}

    def forward(x, relu=False):  # relu: the ReLU after the layer, fused as the class's forward does
        if not layer.training:
            state.clear()
            return cls.forward(layer, x, relu=relu)
        x = np.ascontiguousarray(x, dtype=layer.dtype)
        x3 = x.reshape(x.shape[0], C, -1).astype(np.float64)
        sums = np.concatenate([x3.sum(axis=(0, 2)), (x3 * x3).sum(axis=(0, 2)), [x3.shape[0] * x3.shape[2]]])
        sums *= dp.weight
        dp.comm.allreduce(sums)
        count = sums[-1]
        mean = sums[:C] / count
        var = np.maximum(sums[C:2 * C] / count - mean * mean, 0.0)
        mean_t, var_t = mean.astype(layer.dtype), var.astype(layer.dtype)
        w = layer.weight.data if layer.affine else None
        b = layer.bias.data if layer.affine else None
        y, _, inv_std = eval_forward(x, w, b, mean_t, var_t, training=False, eps=layer.eps)
        if relu:
            kernels.relu_forward_kernel(y.reshape(-1), y.reshape(-1))
        kernels.batch_norm_update_running(layer.running_mean, layer.running_var, mean_t, var_t, count,
                                          layer.momentum)
        state.update(x=x, mean=mean_t, inv_std=inv_std, count=count, relu_y=y if relu else None)
        layer._cache = (x, mean_t, inv_std, state["relu_y"])  # what the class keeps: its relu_fused reads it
        return y

    def backward(dy, need_input_grad=True):
        if "x" not in state:
            return cls.backward(layer, dy, need_input_grad)
        x, mean, inv_std, count = state["x"], state["mean"], state["inv_std"], state["count"]
        dy = np.ascontiguousarray(dy, dtype=layer.dtype)
        if state["relu_y"] is not None:
            dy = kernels.relu_backward(dy, state["relu_y"])
        w = layer.weight.data if layer.affine else None
        dx, dw, db = eval_backward(dy, x, w, mean, inv_std, training=False)  # dx = dy * w * inv_std
        if layer.affine:
            layer.weight.grad += dw
            layer.bias.grad += db
        sums = np.concatenate([db, dw]).astype(np.float64) * dp.weight
        dp.comm.allreduce(sums)
        shape = (1, C) + (1,) * (x.ndim - 2)
        scale = (1.0 if w is None else w.astype(np.float64)) * inv_std / count
        xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        dx -= (scale * sums[:C]).astype(layer.dtype).reshape(shape)
        dx -= xhat * (scale * sums[C:]).astype(layer.dtype).reshape(shape)
        return dx if need_input_grad else None

    return forward, backward
