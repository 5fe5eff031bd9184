"""Raw SGD update kernel, in place on flat arrays."""

from ..config import njit


@njit
def sgd_update_kernel(param, grad, buf, lr, momentum, weight_decay, nesterov, first_step):
    """One torch.optim.SGD step (dampening 0) on flat arrays, in place.

    g = grad + weight_decay * param;
    with momentum: buf = g on the first step, else buf = momentum * buf + g;
    then g = g + momentum * buf if nesterov, else g = buf;
    param -= lr * g.  ``lr``, ``momentum`` and ``weight_decay`` are scalars of
    the parameter's dtype; ``buf`` is ignored when momentum is 0.

    Parameters
    ----------
    param : (M,) float array, read and updated in place (a flat view,
        ``p.reshape(-1)``, of the parameter)
    grad : (M,) array of param's dtype, read
    buf : (M,) array of param's dtype, the momentum buffer: written in full
        on the first step, read and updated in place after; neither read
        nor written when ``momentum`` is 0 (any (M,) array will do, e.g.
        ``param``)
    lr, momentum, weight_decay : scalars of param's dtype
        Learning rate, momentum factor and L2 penalty.
    nesterov : bool
        Nesterov momentum (used only when ``momentum`` is not 0).
    first_step : bool
        Whether ``buf`` is not yet initialised (used only when ``momentum``
        is not 0).
    """
    _sgd_span(param, grad, buf, 0, param.shape[0], lr, momentum, weight_decay, nesterov, first_step)


@njit
def _sgd_span(param, grad, buf, lo, hi, lr, momentum, weight_decay, nesterov, first_step):
    """:func:`sgd_update_kernel`'s update of elements ``lo:hi``."""
    for i in range(lo, hi):
        g = grad[i] + weight_decay * param[i]
        if momentum != 0:
            if first_step:
                b = g
            else:
                b = momentum * buf[i] + g
            buf[i] = b
            if nesterov:
                g = g + momentum * b
            else:
                g = b
        param[i] -= lr * g


@njit
def sgd_update_many(params, grads, bufs, lr, momentum, weight_decays, nesterov, first_steps):
    """:func:`sgd_update_kernel` on every parameter of a tuple, in one call (one dispatch per optimizer step).

    Serial: a parallel version split into chunks measured 2-3x slower on LeNet-5's 61,706 parameters.

    Parameters
    ----------
    params, grads, bufs : tuples of (M_j,) float arrays, one dtype
        As ``param``, ``grad`` and ``buf`` of :func:`sgd_update_kernel`, one
        entry per parameter.
    lr, momentum : scalars of the arrays' dtype
    weight_decays : (len(params),) array of the arrays' dtype
        The L2 penalty of each parameter (0 for an undecayed bias).
    nesterov : bool
    first_steps : (len(params),) bool array
        Whether each momentum buffer is not yet initialised.
    """
    for j in range(len(params)):
        p = params[j]
        _sgd_span(p, grads[j], bufs[j], 0, p.shape[0], lr, momentum, weight_decays[j], nesterov, first_steps[j])

@njit
def zero_many(arrays):
    """Set every element of every array of a tuple of (M_j,) arrays of one dtype to zero, in place."""
    for j in range(len(arrays)):
        a = arrays[j]
        zero = a.dtype.type(0)
        for i in range(a.shape[0]):
            a[i] = zero
