"""Raw batch-normalisation kernels: caller-allocated outputs, no checks.

Every kernel works on a 3-D view ``x (N, C, L)``: BatchNorm2d passes
``(N, C, H*W)``, BatchNorm1d ``(N, C, 1)`` or ``(N, C, L)``.  A channel's
statistics run over its ``M = N*L`` elements.  Per-channel vectors (weight,
bias, mean, var, inv_std, dweight, dbias) are ``(C,)``; pass ones and zeros
for weight and bias when there is no affine transform.

The statistics and the gradient reductions run in a prange over channels, so
each task owns its channel's sums and writes nothing another task reads.  Sums
accumulate in the array dtype (float32 stays float32), two-level: a partial sum
per (n, c) row of L elements, then the N partials, so the rounding error grows
with ``L + N`` rather than ``N*L``; the variance is a second pass over
``(x - mean)**2`` (no cancellation from ``E[x^2] - E[x]^2``).
"""

import numpy as np
from numba import prange

from ..config import pjit


@pjit
def batch_norm_forward_train_kernel(x, weight, bias, eps, y, mean, var, inv_std):
    """Training-mode forward: batch statistics, then ``y = (x - mean) * inv_std * weight + bias``.

    Parameters
    ----------
    x : (N, C, L) float array
    weight, bias : (C,) arrays of x's dtype
    eps : float
        Added to the variance; cast to x's dtype.
    y : (N, C, L) array, written in full
    mean : (C,) array, written: the batch mean of each channel
    var : (C,) array, written: the biased batch variance ``sum((x - mean)**2) / M``
    inv_std : (C,) array, written: ``1 / sqrt(var + eps)``
    """
    N, C, L = x.shape
    dt = y.dtype.type
    zero = dt(0)
    one = dt(1)
    eps_ = dt(eps)
    inv_m = one / dt(N * L)
    for c in prange(C):
        total = zero
        for n in range(N):
            row = zero
            for l in range(L):
                row += x[n, c, l]
            total += row
        mu = total * inv_m
        total = zero
        for n in range(N):
            row = zero
            for l in range(L):
                d = x[n, c, l] - mu
                row += d * d
            total += row
        v = total * inv_m
        s = one / np.sqrt(v + eps_)
        mean[c] = mu
        var[c] = v
        inv_std[c] = s
        scale = s * weight[c]
        shift = bias[c]
        for n in range(N):
            for l in range(L):
                y[n, c, l] = (x[n, c, l] - mu) * scale + shift


@pjit
def batch_norm_forward_eval_kernel(x, weight, bias, mean, inv_std, y):
    """Normalise with given statistics: ``y = (x - mean) * inv_std * weight + bias``.

    Eval mode passes the running mean and ``1 / sqrt(running_var + eps)``.

    Parameters
    ----------
    x : (N, C, L) float array
    weight, bias, mean, inv_std : (C,) arrays of x's dtype
    y : (N, C, L) array, written in full
    """
    N, C, L = x.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        mu = mean[c]
        scale = inv_std[c] * weight[c]
        shift = bias[c]
        for l in range(L):
            y[n, c, l] = (x[n, c, l] - mu) * scale + shift


@pjit
def batch_norm_backward_kernel(dy, x, weight, mean, inv_std, training, dx, dweight, dbias):
    """Gradients of batch normalisation with respect to x, weight and bias.

    With ``xhat = (x - mean) * inv_std`` and sums over a channel's M elements:
    ``dbias = sum(dy)``, ``dweight = sum(dy * xhat)``, and

    * training (mean and inv_std are the batch's own, so they depend on x):
      ``dx = weight * inv_std / M * (M*dy - sum(dy) - xhat * sum(dy * xhat))``;
    * eval (fixed running statistics): ``dx = dy * weight * inv_std``.

    Parameters
    ----------
    dy, x : (N, C, L) float arrays
    weight, mean, inv_std : (C,) arrays of x's dtype (the ones forward used)
    training : bool
    dx : (N, C, L) array, written in full
    dweight, dbias : (C,) arrays, written in full
    """
    N, C, L = x.shape
    dt = dx.dtype.type
    zero = dt(0)
    m = dt(N * L)
    for c in prange(C):
        mu = mean[c]
        s = inv_std[c]
        sum_dy = zero
        sum_dy_xhat = zero
        for n in range(N):
            row_dy = zero
            row_dy_xhat = zero
            for l in range(L):
                g = dy[n, c, l]
                row_dy += g
                row_dy_xhat += g * ((x[n, c, l] - mu) * s)
            sum_dy += row_dy
            sum_dy_xhat += row_dy_xhat
        dbias[c] = sum_dy
        dweight[c] = sum_dy_xhat
        k = weight[c] * s
        if training:
            k = k / m
            for n in range(N):
                for l in range(L):
                    xhat = (x[n, c, l] - mu) * s
                    dx[n, c, l] = k * (m * dy[n, c, l] - sum_dy - xhat * sum_dy_xhat)
        else:
            for n in range(N):
                for l in range(L):
                    dx[n, c, l] = k * dy[n, c, l]
