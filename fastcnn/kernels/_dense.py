"""Raw fully connected (linear) kernels: caller-allocated outputs, no checks.

x (N, I), w (O, I) as PyTorch's Linear, y and dy (N, O).  The three products
run through the register-blocked micro-kernel of
:func:`fastcnn.kernels._gemm.gemm_acc` (blocks of rows x 16 or 32 columns held in
registers over the whole reduction), in parallel over blocks of 8 output
rows (and of columns, for enough tasks): every element is written by one
task, in a fixed order, so results do not depend on timing or on the split.
"""

import numpy as np

from ..config import njit
from ._gemm import gemm_call
from ._loops import transpose_into
from ._tasks import parallel_tasks, task


#: Rows of c per task: the 512-bit micro-kernel's height (4-row tasks read all of b twice as often: the backward
#: products of a 2048 -> 256 layer at batch 64 took twice the time).
ROWS = 8
#: Tasks :func:`matmul_acc` makes at least, where the columns allow: enough for 16 threads at batch 64.
MIN_TASKS = 16


@task("a1 r1 i i r1 i i i i i i")
def _matmul_block(c, a, sai, sal, b, sbl, M, N, L, width, blk):
    """Task ``blk`` of :func:`matmul_acc`: ``ROWS`` rows (those below M) by ``width`` columns (those below N)."""
    panels = (N + width - 1) // width
    lo, j0 = blk // panels * ROWS, blk % panels * width
    gemm_call(c, lo * N + j0, N, a, lo * sai, sai, 0, sal, b, j0, 0, sbl, 1, L, min(ROWS, M - lo),
              min(width, N - j0))


_matmul_blocks = parallel_tasks(_matmul_block)


@njit
def matmul_acc(c, a, sai, sal, b, sbl, M, N, L):
    """``c[i*N + j] += sum_l a[i*sai + l*sal] * b[l*sbl + j]`` for ``i < M``, ``j < N``, in parallel blocks.

    ``c``, ``a`` and ``b`` are flat C-contiguous arrays of one float dtype.
    The one product behind all three linear kernels, one task per block of
    :data:`ROWS` rows and, when that makes fewer than :data:`MIN_TASKS`
    tasks, of a share of the columns (panels of a multiple of 32 columns:
    every column runs in the micro-kernel block it would run in unsplit, so
    each element's sum is the same whatever the split)
    (:func:`fastcnn.kernels._tasks.parallel_tasks`).
    """
    row_blocks = (M + ROWS - 1) // ROWS
    panels = min((MIN_TASKS + row_blocks - 1) // row_blocks, (N + 31) // 32)
    width = ((N + panels - 1) // panels + 31) // 32 * 32
    _matmul_blocks(row_blocks * ((N + width - 1) // width), c, a, sai, sal, b, sbl, M, N, L, width)


@njit
def linear_forward_kernel(x, w, b, y):
    """y[n, o] = b[o] + sum_i x[n, i] * w[o, i]; pass zeros for no bias.

    Copies ``w`` transposed (I, O) once per call, so that its rows are the
    micro-kernel's contiguous columns.

    The product runs in parallel through :func:`matmul_acc`: called inside
    a ``prange`` of your own, it nests parallel regions as the parallel
    kernels do.

    Parameters
    ----------
    x : (N, I) float array, read
    w : (O, I) array of x's dtype, read (PyTorch's Linear layout)
    b : (O,) array of x's dtype, read (pass zeros for no bias)
    y : (N, O) array of x's dtype, written in full
    """
    N, I = x.shape
    O = w.shape[0]
    wt = np.empty((I, O), dtype=w.dtype)
    transpose_into(w, wt)
    for n in range(N):
        for o in range(O):
            y[n, o] = b[o]
    matmul_acc(y.reshape(y.size), x.reshape(x.size), I, 1, wt.reshape(wt.size), O, N, O, I)


@njit
def linear_backward_input_kernel(dy, w, dx):
    """dx[n, i] = sum_o dy[n, o] * w[o, i]: dy (N, O) @ w (O, I).

    The product runs in parallel through :func:`matmul_acc`: called inside
    a ``prange`` of your own, it nests parallel regions as the parallel
    kernels do.

    Parameters
    ----------
    dy : (N, O) float array, read
    w : (O, I) array of dy's dtype, read
    dx : (N, I) array of dy's dtype, written in full
    """
    N, O = dy.shape
    I = w.shape[1]
    zero = dx.dtype.type(0)
    for n in range(N):
        for i in range(I):
            dx[n, i] = zero
    matmul_acc(dx.reshape(dx.size), dy.reshape(dy.size), O, 1, w.reshape(w.size), I, N, I, O)


@njit
def linear_backward_weight_kernel(dy, x, dw):
    """dw[o, i] = sum_n dy[n, o] * x[n, i]: dy.T (O, N) @ x (N, I), dy read in place.

    The product runs in parallel through :func:`matmul_acc`: called inside
    a ``prange`` of your own, it nests parallel regions as the parallel
    kernels do.

    Parameters
    ----------
    dy : (N, O) float array, read (not transposed: the kernel strides through it)
    x : (N, I) array of dy's dtype, read
    dw : (O, I) array of dy's dtype, written in full
    """
    N, O = dy.shape
    I = x.shape[1]
    zero = dw.dtype.type(0)
    for o in range(O):
        for i in range(I):
            dw[o, i] = zero
    matmul_acc(dw.reshape(dw.size), dy.reshape(dy.size), 1, O, x.reshape(x.size), I, O, I, N)


@task("r2 a1 i")
def _bias_sum(dy, db, o):
    """``db[o] = sum_n dy[n, o]``."""
    acc = db.dtype.type(0)
    for n in range(dy.shape[0]):
        acc += dy[n, o]
    db[o] = acc


_bias_sums = parallel_tasks(_bias_sum)


@njit
def linear_backward_bias_kernel(dy, db):
    """db[o] = sum_n dy[n, o].

    Parameters
    ----------
    dy : (N, O) float array, read
    db : (O,) array of dy's dtype, written in full
    """
    _bias_sums(dy.shape[1], np.ascontiguousarray(dy), db)
