"""Raw loss kernels: caller-allocated outputs, no checks."""

import numpy as np
from numba import prange

from ..config import pjit


@pjit
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
    N, K = logits.shape
    zero = logits.dtype.type(0)
    inv_n = logits.dtype.type(1) / logits.dtype.type(N)
    for n in prange(N):
        m = logits[n, 0]
        for k in range(1, K):
            m = max(m, logits[n, k])
        total = zero
        for k in range(K):
            e = np.exp(logits[n, k] - m)
            dlogits[n, k] = e
            total += e
        scale = inv_n / total
        for k in range(K):
            dlogits[n, k] *= scale
        label = labels[n]
        dlogits[n, label] -= inv_n
        losses[n] = np.log(total) + m - logits[n, label]


@pjit
def mse_kernel(pred, target, dpred):
    """Return sum((pred - target)^2) and write dpred = 2 (pred - target) / size (flat arrays)."""
    M = pred.shape[0]
    scale = dpred.dtype.type(2) / dpred.dtype.type(M)
    total = dpred.dtype.type(0)
    for i in prange(M):
        d = pred[i] - target[i]
        dpred[i] = scale * d
        total += d * d
    return total
