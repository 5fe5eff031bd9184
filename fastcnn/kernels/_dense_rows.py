"""Raw fully connected forward for a few rows, serial: inference on one image or a handful.

x (N, I), w (O, I) as PyTorch's Linear, y (N, O).  Each output is one dot
product of a row of x with a row of w, both contiguous, so the reduction
vectorises and no transposed copy of w is made: for N of 1 to a few, that
copy (I*O numbers, what :func:`fastcnn.kernels._dense.linear_forward_kernel`
makes on every call) costs more than the product, and neither a thread pool
nor BLAS's threads are worth waking.  For larger batches the register-blocked
parallel kernel is faster.
"""

from ..config import njit


@njit
def linear_forward_rows_kernel(x, w, b, y, relu):
    """y[n, o] = b[o] + sum_i x[n, i] * w[o, i], then max(y, 0) when ``relu``; serial, one dot product per output.

    Parameters
    ----------
    x : (N, I) float array, read
    w : (O, I) array of x's dtype, read (PyTorch's Linear layout)
    b : (O,) array of x's dtype, read (pass zeros for no bias)
    y : (N, O) array of x's dtype, written in full
    relu : bool
        Apply ``max(., 0)`` to every output (NaN stays NaN).
    """
    N, I = x.shape
    O = w.shape[0]
    zero = y.dtype.type(0)
    for n in range(N):
        for o in range(O):
            acc = zero
            for i in range(I):
                acc += x[n, i] * w[o, i]
            v = acc + b[o]
            y[n, o] = zero if relu and v < zero else v
