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
    for i in range(param.shape[0]):
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
