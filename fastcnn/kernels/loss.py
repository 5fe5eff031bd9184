"""Checked losses: softmax cross-entropy over integer labels, and mean squared error, each with its gradient.
"""

import numpy as np

from ._checks import as_float_array, as_labels, check_shape
from ._losses import mse_kernel, softmax_cross_entropy_kernel


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    ``loss = mean_n(logsumexp(logits[n]) - logits[n, labels[n]])``, computed
    after subtracting each row's maximum, so it is finite for logits of any
    magnitude; ``dlogits = (softmax(logits) - onehot(labels)) / N``.

    Parameters
    ----------
    logits : ndarray, (N, num_classes), float32 or float64
    labels : integer array, (N,), values in [0, num_classes)

    Returns
    -------
    loss : float
    dlogits : ndarray, (N, num_classes), dtype of logits

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import softmax_cross_entropy
    >>> loss, d = softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 6)  # log(4)
    1.386294
    """
    fn = "softmax_cross_entropy"
    logits = as_float_array(logits, "logits", fn, ndim=2)
    N, K = logits.shape
    if N == 0 or K == 0:
        raise ValueError(f"{fn}: logits must have at least one row and one class, got shape {logits.shape}")
    labels = as_labels(labels, N, K, fn)
    dlogits = np.empty_like(logits)
    losses = np.empty(N, dtype=logits.dtype)
    softmax_cross_entropy_kernel(logits, labels, dlogits, losses)
    return float(losses.mean()), dlogits


def mse_loss(pred, target):
    """Mean squared error over all elements, and its gradient ``2 (pred - target) / pred.size``.

    Parameters
    ----------
    pred : ndarray, any shape, float32 or float64
    target : ndarray, same shape and dtype

    Returns
    -------
    loss : float
    dpred : ndarray, shape and dtype of pred

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import mse_loss
    >>> mse_loss(np.array([1.0, 3.0]), np.array([0.0, 0.0]))[0]
    5.0
    """
    fn = "mse_loss"
    pred = as_float_array(pred, "pred", fn)
    target = as_float_array(target, "target", fn, dtype=pred.dtype)
    check_shape(target, pred.shape, "target", fn)
    if pred.size == 0:
        raise ValueError(f"{fn}: pred must not be empty")
    dpred = np.empty_like(pred)
    total = mse_kernel(pred.reshape(-1), target.reshape(-1), dpred.reshape(-1))
    return float(total) / pred.size, dpred
