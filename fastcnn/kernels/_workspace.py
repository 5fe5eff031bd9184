"""Scratch memory of the convolution kernels: a per-thread cache of arrays reused across calls.

Training calls every layer with the same shapes batch after batch, so the
layout copies and partial sums a plan asks for (its ``"workspace"`` buffers)
are allocated once instead of per call: fresh pages cost as much as a small
layer.  Per thread, so concurrent calls never share an array; least recently
used arrays beyond ``SLOTS``, or beyond ``MAX_BYTES`` in all (1 GiB), are dropped.  A plan's ``"call"`` buffers are
allocated fresh for each call and freed when it returns.

``SLOTS`` must exceed what one training step of a model uses: a step asks
for its buffers in the same cycle every time, and a least-recently-used
cache smaller than the cycle misses on every request.  (With 32 slots,
vgg_small's 36 buffers missed 31 times a step and mobilenet_small's 50 missed
49 times: each miss fresh pages, about an activation's size.)
"""

import collections
import threading

import numpy as np


class Workspace(threading.local):
    """Arrays keyed by (role, shape, dtype), most recently used last: at most ``SLOTS`` of them and, beyond the
    one just asked for, at most ``MAX_BYTES`` in all."""

    SLOTS = 256
    MAX_BYTES = 1 << 30

    def __init__(self):
        self.arrays = collections.OrderedDict()
        self.allocations = 0
        self.nbytes = 0

    def get(self, role, shape, dtype):
        """The cached array for ``(role, shape, dtype)``, allocated (uninitialised) on first use."""
        key = (role, tuple(shape), np.dtype(dtype).str)
        a = self.arrays.pop(key, None)
        if a is None:
            a = np.empty(shape, dtype=dtype)
            self.allocations += 1
            self.nbytes += a.nbytes
        self.arrays[key] = a  # most recently used last
        while len(self.arrays) > 1 and (len(self.arrays) > self.SLOTS or self.nbytes > self.MAX_BYTES):
            self.nbytes -= self.arrays.popitem(last=False)[1].nbytes
        return a


WORKSPACE = Workspace()


def clear_workspace():
    """Free the scratch arrays the direct convolution keeps between calls (in this thread).

    They are the layout copies of the last inputs seen per shape (about the
    size of one activation each), per-thread partial sums and the
    intermediate activations of eval-mode chains
    (:func:`fastcnn.layers.padded.scratch_activations`); they are
    reallocated when next needed.
    """
    WORKSPACE.arrays.clear()
    WORKSPACE.nbytes = 0


def workspace_usage():
    """What the workspace holds in this thread: ``{"arrays": count, "bytes": total, "slots": SLOTS,
    "allocations": arrays allocated so far}`` (a steady training loop stops allocating after its first step)."""
    arrays = WORKSPACE.arrays
    return {"arrays": len(arrays), "bytes": sum(a.nbytes for a in arrays.values()), "slots": Workspace.SLOTS,
            "allocations": WORKSPACE.allocations}


def take(plan, dtype):
    """{role: array} for the buffers of ``plan`` that Python allocates.

    ``"workspace"`` buffers come from :data:`WORKSPACE` (contents left from
    the last call: the kernels overwrite them); ``"call"`` buffers are new,
    zero-filled when the plan says so.  ``"kernel"`` buffers are allocated
    inside the Numba kernels and are not returned.
    """
    arrays = {}
    for buf in plan.buffers:
        if buf.kind == "workspace":
            arrays[buf.role] = WORKSPACE.get(buf.role, buf.shape, dtype)
        elif buf.kind == "call":
            arrays[buf.role] = (np.zeros if buf.zeroed else np.empty)(buf.shape, dtype=dtype)
    return arrays
