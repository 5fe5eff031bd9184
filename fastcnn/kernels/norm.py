"""Checked batch normalisation over (N, H, W) (2-D) or N (and L) (1-D) per channel.

Shape vocabulary: x and dy (N, C, H, W) or (N, C[, L]), weight, bias, mean
and inv_std (C,).
"""

import numpy as np

from ._checks import as_float_array, check_flag, check_shape, finite_real
from ._norm import batch_norm_backward_kernel, batch_norm_forward_eval_kernel, batch_norm_forward_train_kernel


def _channel_vector(a, name, C, dtype, fn, default=None):
    """A (C,) array of ``dtype``, or ``default`` filled in when ``a`` is None."""
    if a is None:
        if default is None:
            return None
        return np.full(C, default, dtype=dtype)
    a = as_float_array(a, name, fn, ndim=1, dtype=dtype)
    if a.shape[0] != C:
        raise ValueError(f"{fn}: {name} has {a.shape[0]} entries but the input has {C} channels "
                         f"(num_features); {name} must have shape ({C},)")
    return a


def _norm_scalars(momentum, eps, fn):
    momentum, eps = finite_real(momentum, "momentum", fn), finite_real(eps, "eps", fn)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{fn}: momentum must be in [0, 1], got {momentum!r}")
    if eps <= 0:
        raise ValueError(f"{fn}: eps must be positive, got {eps!r}")
    return float(momentum), float(eps)


def _as_3d(x, fn, ndim):
    """x as a float array viewed (N, C, L): 4-D (N, C, H, W) -> (N, C, H*W); 2-D (N, C) -> (N, C, 1)."""
    x = as_float_array(x, "x", fn, ndim=ndim)
    if x.shape[0] == 0 or x.shape[1] == 0 or x.size == 0:
        raise ValueError(f"{fn}: x must not be empty, got shape {x.shape}")
    return x, x.reshape(x.shape[0], x.shape[1], -1)


def _running_stats(running_mean, running_var, C, dtype, fn, training):
    stats = []
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        if a is None:
            stats.append(None)
            continue
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
            raise TypeError(f"{fn}: {name} must be a C-contiguous numpy array (it is updated in place), "
                            f"got {type(a).__name__}")
        if training and not a.flags.writeable:
            raise ValueError(f"{fn}: {name} is read-only, but training mode updates it in place; pass a writable "
                             "array (or None to skip the update)")
        stats.append(_channel_vector(a, name, C, dtype, fn))
    return stats


def _train_forward(x, x3, weight, bias, eps, fn, relu=False):
    """Normalise with the batch statistics (then ReLU when ``relu``): (y, mean, biased var, inv_std); nothing is
    updated."""
    N, C, L = x3.shape
    if N * L < 2:
        raise ValueError(f"{fn}: training needs more than 1 value per channel to estimate a variance, "
                         f"got input shape {x.shape}; use a larger batch or eval mode")
    y = np.empty(x.shape, dtype=x.dtype)
    mean, var, inv_std = (np.empty(C, dtype=x.dtype) for _ in range(3))
    if relu:
        batch_norm_forward_train_kernel(x3, weight, bias, eps, y.reshape(x3.shape), mean, var, inv_std, True)
    else:
        batch_norm_forward_train_kernel(x3, weight, bias, eps, y.reshape(x3.shape), mean, var, inv_std)
    return y, mean, var, inv_std


def batch_norm_training_forward(x, weight, bias, eps=1e-5, relu=False):
    """Batch normalisation with the batch's own statistics, for any batch-norm input; nothing is updated.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel (axis 1),
    with the mean and biased variance over every other axis.  A layer that
    keeps running statistics passes ``mean`` and ``var`` to
    :func:`batch_norm_update_running`.

    Parameters
    ----------
    x : ndarray, (N, C), (N, C, L) or (N, C, H, W), float32 or float64
    weight, bias : ndarray (C,) of x's dtype, or None (no scale / no shift)
    eps : float > 0
    relu : bool, default False
        Also apply a ReLU, in the same pass: ``y = max(y, 0)``.  Pass this
        ``y`` as ``relu_y`` to :func:`batch_norm2d_backward` (or
        :func:`batch_norm1d_backward`) with the gradient w.r.t. it.

    Returns
    -------
    y : ndarray, shape and dtype of x
    mean, var, inv_std : ndarray (C,)
        Batch mean, biased batch variance and ``1 / sqrt(var + eps)``.
    """
    fn = "batch_norm_training_forward"
    _, eps = _norm_scalars(0.0, eps, fn)
    relu = check_flag(relu, "relu", fn)
    x, x3 = _as_3d(x, fn, (2, 3, 4))
    C = x3.shape[1]
    weight = _channel_vector(weight, "weight", C, x.dtype, fn, default=1)
    bias = _channel_vector(bias, "bias", C, x.dtype, fn, default=0)
    return _train_forward(x, x3, weight, bias, eps, fn, relu)


def batch_norm_update_running(running_mean, running_var, mean, var, count, momentum=0.1):
    """Move running statistics towards a batch's, in place (PyTorch's rule).

    ``running_mean = (1 - momentum) * running_mean + momentum * mean`` and
    ``running_var = (1 - momentum) * running_var + momentum * var * count / (count - 1)``
    (the unbiased variance of the ``count`` values per channel).  Either
    running array may be None (not updated).  Arguments are trusted: call it
    with the (C,) arrays of :func:`batch_norm_training_forward`.
    """
    dtype = mean.dtype
    m = dtype.type(momentum)
    keep = dtype.type(1.0 - momentum)
    if running_mean is not None:
        running_mean *= keep
        running_mean += m * mean
    if running_var is not None:
        running_var *= keep
        running_var += (m * dtype.type(count / (count - 1))) * var


def _batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, fn, ndim):
    momentum, eps = _norm_scalars(momentum, eps, fn)
    training = check_flag(training, "training", fn)
    x, x3 = _as_3d(x, fn, ndim)
    N, C, L = x3.shape
    dtype = x.dtype
    weight = _channel_vector(weight, "weight", C, dtype, fn, default=1)
    bias = _channel_vector(bias, "bias", C, dtype, fn, default=0)
    running_mean, running_var = _running_stats(running_mean, running_var, C, dtype, fn, training)
    if training:
        y, mean, var, inv_std = _train_forward(x, x3, weight, bias, eps, fn)
        batch_norm_update_running(running_mean, running_var, mean, var, N * L, momentum)
        return y, mean, inv_std
    if running_mean is None or running_var is None:
        raise ValueError(f"{fn}: eval mode (training=False) needs running_mean and running_var")
    y = np.empty(x.shape, dtype=dtype)
    mean = running_mean.copy()
    inv_std = (dtype.type(1) / np.sqrt(running_var + dtype.type(eps))).astype(dtype)
    batch_norm_forward_eval_kernel(x3, weight, bias, mean, inv_std, y.reshape(x3.shape))
    return y, mean, inv_std


def _batch_norm_backward(dy, x, weight, mean, inv_std, training, relu_y, fn, ndim):
    training = check_flag(training, "training", fn)
    x, x3 = _as_3d(x, fn, ndim)
    dy = as_float_array(dy, "dy", fn, dtype=x.dtype)
    check_shape(dy, x.shape, "dy", fn)
    if relu_y is not None:
        relu_y = as_float_array(relu_y, "relu_y", fn, dtype=x.dtype)
        check_shape(relu_y, x.shape, "relu_y", fn)
    N, C, L = x3.shape
    weight = _channel_vector(weight, "weight", C, x.dtype, fn, default=1)
    mean = _channel_vector(mean, "mean", C, x.dtype, fn)
    inv_std = _channel_vector(inv_std, "inv_std", C, x.dtype, fn)
    if mean is None or inv_std is None:
        raise TypeError(f"{fn}: mean and inv_std must be the arrays returned by the forward function, got None")
    dx = np.empty(x.shape, dtype=x.dtype)
    dweight = np.empty(C, dtype=x.dtype)
    dbias = np.empty(C, dtype=x.dtype)
    args = (dy.reshape(x3.shape), x3, weight, mean, inv_std, training, dx.reshape(x3.shape), dweight, dbias)
    if relu_y is None:
        batch_norm_backward_kernel(*args)
    else:
        batch_norm_backward_kernel(*args, relu_y.reshape(x3.shape))
    return dx, dweight, dbias


def batch_norm2d_forward(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, H, W) for each channel, as PyTorch's ``F.batch_norm``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel.  In
    training mode mean and var are the batch mean and the biased batch variance
    over the ``M = N*H*W`` values of each channel, and the running statistics
    are updated in place::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)

    (the unbiased variance goes into the running estimate).  In eval mode
    mean and var are ``running_mean`` and ``running_var``, left unchanged.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    weight, bias : ndarray (C,) of x's dtype, or None (no scale / no shift)
    running_mean, running_var : ndarray (C,) of x's dtype, C-contiguous, or None
        Updated in place in training mode (None skips the update); required
        in eval mode.
    training : bool
    momentum : float in [0, 1]
    eps : float > 0

    Returns
    -------
    y : ndarray, (N, C, H, W), dtype of x
    mean : ndarray (C,)
        The mean used: the batch mean (training) or a copy of running_mean (eval).
    inv_std : ndarray (C,)
        ``1 / sqrt(var + eps)`` of the variance used.  Pass ``mean`` and
        ``inv_std`` to :func:`batch_norm2d_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import batch_norm2d_forward
    >>> x = np.array([1.0, 3.0]).reshape(2, 1, 1, 1)
    >>> rm, rv = np.zeros(1), np.ones(1)
    >>> y, mean, inv_std = batch_norm2d_forward(x, None, None, rm, rv)
    >>> y.ravel().round(4), mean, rm, rv
    (array([-1.,  1.]), array([2.]), array([0.2]), array([1.1]))
    """
    return _batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                               "batch_norm2d_forward", 4)


def batch_norm2d_backward(dy, x, weight, mean, inv_std, training=True, relu_y=None):
    """Gradients of :func:`batch_norm2d_forward` with respect to x, weight and bias.

    With ``xhat = (x - mean) * inv_std`` and sums over each channel's
    ``M = N*H*W`` values: ``dbias = sum(dy)``, ``dweight = sum(dy * xhat)``;
    in training mode (batch statistics, which depend on x)
    ``dx = weight * inv_std / M * (M*dy - sum(dy) - xhat * sum(dy * xhat))``,
    in eval mode (fixed running statistics) ``dx = dy * weight * inv_std``.

    Parameters
    ----------
    dy, x : ndarray, (N, C, H, W), same dtype
    weight : ndarray (C,) or None (as 1)
    mean, inv_std : ndarray (C,), as returned by the forward call
    training : bool
        The mode the forward call ran in.
    relu_y : ndarray of x's shape and dtype, or None
        The ``y`` of :func:`batch_norm_training_forward` with ``relu=True``:
        ``dy`` is then the gradient w.r.t. the ReLU's output and counts only
        where ``relu_y > 0`` (the same result as :func:`relu_backward`
        followed by this function without ``relu_y``).

    Returns
    -------
    dx : ndarray (N, C, H, W)
    dweight, dbias : ndarray (C,)
        Returned even when there is no affine transform (then ignore them).
    """
    return _batch_norm_backward(dy, x, weight, mean, inv_std, training, relu_y, "batch_norm2d_backward", 4)


def batch_norm1d_forward(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation of features: x (N, C) or (N, C, L), statistics over N (and L) per channel.

    Same rule, arguments and returns as :func:`batch_norm2d_forward` with
    ``M = N`` (or ``N*L``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.kernels import batch_norm1d_forward
    >>> y, mean, inv_std = batch_norm1d_forward(np.array([[0.0], [4.0]]), None, None, None, None)
    >>> y.ravel().round(4), mean
    (array([-1.,  1.]), array([2.]))
    """
    return _batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                               "batch_norm1d_forward", (2, 3))


def batch_norm1d_backward(dy, x, weight, mean, inv_std, training=True, relu_y=None):
    """Gradients of :func:`batch_norm1d_forward`; see :func:`batch_norm2d_backward` (x (N, C) or (N, C, L))."""
    return _batch_norm_backward(dy, x, weight, mean, inv_std, training, relu_y, "batch_norm1d_backward", (2, 3))
