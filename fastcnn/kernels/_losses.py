"""Raw loss kernels: caller-allocated outputs, no checks.

Compiled without fast-math flags: their sums (over a row's classes, over all
predictions) then run in the order written.  With ``reassoc`` the order is
the optimiser's choice, and a prange kernel loaded from Numba's cache runs
differently optimised code than the same kernel compiled in the process, so
the two gave different losses and gradients (and a seeded fit different
weights, depending on the state of the cache).  These loops are short next to
the layers'.
"""

import numpy as np
from numba import prange

from ..config import njit_ordered, pjit_ordered
from ._tasks import parallel_tasks, task


@task("r2 i1 a2 a1 i", ordered=True)
def _cross_entropy_row(logits, labels, dlogits, losses, n):
    """Row n of :func:`softmax_cross_entropy_kernel`."""
    N, K = logits.shape
    zero = logits.dtype.type(0)
    inv_n = logits.dtype.type(1) / logits.dtype.type(N)
    m = logits[n, 0]
    for k in range(1, K):
        m = max(m, logits[n, k])
    label = labels[n]
    total = zero
    shifted = zero
    for k in range(K):
        d = logits[n, k] - m
        if k == label:
            shifted = d
        e = np.exp(d)
        dlogits[n, k] = e
        total += e
    scale = inv_n / total
    for k in range(K):
        dlogits[n, k] *= scale
    dlogits[n, label] -= inv_n
    # log(total) - (logit - m), with the shift exact: adding m back to
    # log(total) first would round the loss to the spacing of m.
    losses[n] = np.log(total) - shifted


_cross_entropy_rows = parallel_tasks(_cross_entropy_row)


@njit_ordered
def softmax_cross_entropy_kernel(logits, labels, dlogits, losses):
    """Per-row cross-entropy of softmax(logits) and the gradient of their mean.

    losses[n] = logsumexp(logits[n]) - logits[n, labels[n]], computed after
    subtracting the row maximum so no logit magnitude overflows;
    dlogits[n] = (softmax(logits[n]) - onehot(labels[n])) / N.

    Parameters
    ----------
    logits : (N, K) float array
    labels : (N,) int64 array with values in [0, K)
    dlogits : (N, K) float array, written in full
    losses : (N,) float array, written in full
    """
    N = logits.shape[0]
    _cross_entropy_rows(N, logits, labels, dlogits, losses)


@pjit_ordered
def mse_kernel(pred, target, dpred):
    """Return sum((pred - target)^2) and write dpred = 2 (pred - target) / size (flat arrays).

    The checked :func:`fastcnn.kernels.mse_loss` divides the returned sum by
    the size to get the mean.

    Parameters
    ----------
    pred : (M,) float array, read (a flat view, ``a.reshape(-1)``, of any shape)
    target : (M,) array of pred's dtype, read
    dpred : (M,) array of pred's dtype, written in full: the gradient of
        the mean squared error, ``2 * (pred - target) / M``

    Returns
    -------
    float
        ``sum((pred - target)**2)``, a scalar of dpred's dtype (the sum, not
        the mean).
    """
    M = pred.shape[0]
    scale = dpred.dtype.type(2) / dpred.dtype.type(M)
    total = dpred.dtype.type(0)
    for i in prange(M):
        d = pred[i] - target[i]
        dpred[i] = scale * d
        total += d * d
    return total
