"""Raw fully connected (linear) kernels: caller-allocated outputs, no checks.

x (N, I), w (O, I) as PyTorch's Linear, y and dy (N, O).  Inner loops run
along contiguous rows so they vectorise.
"""

from numba import prange

from ..config import pjit


@pjit
def linear_forward_kernel(x, w, b, y):
    """y[n, o] = b[o] + sum_i x[n, i] * w[o, i]; pass zeros for no bias."""
    N, I = x.shape
    O = w.shape[0]
    for n in prange(N):
        for o in range(O):
            acc = b[o]
            for i in range(I):
                acc += x[n, i] * w[o, i]
            y[n, o] = acc


@pjit
def linear_backward_input_kernel(dy, w, dx):
    """dx[n, i] = sum_o dy[n, o] * w[o, i]. One prange iteration owns each row of dx."""
    N, O = dy.shape
    I = w.shape[1]
    for n in prange(N):
        for i in range(I):
            dx[n, i] = 0
        for o in range(O):
            g = dy[n, o]
            for i in range(I):
                dx[n, i] += g * w[o, i]


@pjit
def linear_backward_weight_kernel(dy, x, dw):
    """dw[o, i] = sum_n dy[n, o] * x[n, i]. One prange iteration owns each row of dw."""
    N, O = dy.shape
    I = x.shape[1]
    for o in prange(O):
        for i in range(I):
            dw[o, i] = 0
        for n in range(N):
            g = dy[n, o]
            for i in range(I):
                dw[o, i] += g * x[n, i]


@pjit
def linear_backward_bias_kernel(dy, db):
    """db[o] = sum_n dy[n, o]."""
    N, O = dy.shape
    zero = db.dtype.type(0)
    for o in prange(O):
        acc = zero
        for n in range(N):
            acc += dy[n, o]
        db[o] = acc
