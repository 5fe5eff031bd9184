"""Raw Winograd kernels for 3x3 stride-1 convolutions: F(2x2, 3x3) and F(4x4, 3x3) minimal filtering.

Lavin & Gray ("Fast Algorithms for Convolutional Neural Networks", 2016): an m x m block of outputs of a 3x3
filter is computed from the alpha x alpha input tile ``d`` under it (alpha = m + 2) with alpha^2
multiplications instead of 9 m^2,

    Y = A^T [(G g G^T) * (B^T d B)] A      (``*`` elementwise, alpha x alpha)

F(2x2, 3x3), alpha = 4 (16 multiplications for 4 outputs, 2.25x fewer)::

    B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
    A^T = [1 1 1 0; 0 1 -1 -1]

F(4x4, 3x3), alpha = 6 (36 multiplications for 16 outputs, 4x fewer; points 0, 1, -1, 2, -2 and infinity, as
in oneDNN and NNPACK)::

    B^T = [4  0 -5  0  1  0]   G = [ 1/4     0     0 ]   A^T = [1  1  1  1  1  0]
          [0 -4 -4  1  1  0]       [-1/6  -1/6  -1/6 ]         [0  1 -1  2 -2  0]
          [0  4 -4 -1  1  0]       [-1/6   1/6  -1/6 ]         [0  1  1  4  4  0]
          [0 -2 -1  2  1  0]       [1/24  1/12   1/6 ]         [0  1 -1  8 -8  1]
          [0  2 -1 -2  1  0]       [1/24 -1/12   1/6 ]
          [0  4  0 -5  0  1]       [  0     0     1  ]

The larger entries of F(4x4)'s matrices (5, 8, 1/24) cost accuracy: its float32 errors are several times
those of F(2x2) (the tests state them).

With many channels the products turn into alpha^2 matrix products, one per position ``xi = alpha*i + j`` of
the transformed tile: ``M[xi] (tiles, K) = V[xi] (tiles, C) @ U[xi] (C, K)``, where ``V[xi][t, c]`` is entry xi
of ``B^T d B`` for tile t and channel c, and ``U[xi][c, k]`` is entry xi of ``G w[k, c] G^T``
(:func:`winograd_filter`).  Each output tile is then ``A^T M A`` over its alpha^2 entries.  Every kernel here
serves both tile sizes: the number of positions (``u.shape[0]`` or ``v.shape[1]``: 16 or 36) says which.

Layout: x is read from a zero-padded channel-last copy ``xp[n, i, j, c]``
(the channel-last variant's ``to_channel_last``, with a frame of at least
``m*ceil(P/m) + 2`` rows and ``m*ceil(Q/m) + 2`` columns so that the tiles
past the output's edge read zeros), so each of a tile's input values is a
contiguous row of C numbers and every transform is additions of rows,
vectorised over the channels.  Work is split into chunks of whole rows of
tiles; each task transforms its chunk's input tiles into its own ``v[t]``
(alpha^2, tiles, C), runs the alpha^2 products into its own ``m[t]``
(alpha^2, tiles, Kw) with the register-blocked micro-kernel
(:func:`fastcnn._gemm.gemm_call`), and transforms back.  The chunk is sized
by the caller (``v.shape[2]`` tiles) so that both stay in the L2 cache.
F(2x2) transforms a whole input tile per loop over the channels (4 rows in,
1 out), and its output tiles plane by plane over the whole chunk
(:func:`_run_program`).  F(4x4)'s transforms (:mod:`._winograd_transforms`,
this module's own helper) take one tile and one vector of channels at a time
in registers: the tile's 36 vectors loaded once, ``B^T d B`` (or ``A dY A^T``
of dy, or ``A^T M A`` with the bias, residual and ReLU) computed, the results
stored once.

Gradients: the weight gradient is ``dU[xi] (C, K) = sum_tiles V[xi]^T @ dM[xi]``
with ``dM = A dY A^T`` (alpha x alpha from each m x m tile of dy), one
partial ``dU`` per task, added in task order, then
``dw[k, c] = G^T dU[:, :, c, k] G``.  The input gradient is a stride-1
convolution of dy, zero-padded by ``2 - ph`` and ``2 - pw``, with the kernel
rotated by 180 degrees and its two channel axes swapped:
:func:`conv2d_forward_winograd` on dy's padded copy with the filter that
:func:`winograd_filter` writes for ``transposed=True``.  The small
transforms of O(K*C) work are computed in float64 and rounded once to the
arrays' dtype: F(4x4)'s filter transform ``G g G^T``, and for both tiles the
sum of the tasks' partial ``dU`` with ``G^T dU G``.
"""

import numpy as np

from ..config import njit
from ._gemm import gemm_call
from ._loops import zero_span
from ._tasks import parallel_tasks, task
from ._winograd_transforms import winograd4_gradients, winograd4_inputs, winograd4_outputs


def _plane_program(steps, lines):
    """Table of plane steps (rows ``kind, p, q, r, s, f0, f1, f2, f3``): the 1-D ``steps`` on each line of planes.

    A step is ``(0, (d, s0, s1, s2), (f0, f1, f2))``: slot d = f0*s0 + f1*s1
    + f2*s2, or ``(1, (p, q), (f0, f1, f2, f3))``: slots (p, q) = (f0*p +
    f1*q, f2*p + f3*q), both in place; ``lines`` lists, per line, the plane of
    each slot.  See :func:`_run_program`.
    """
    rows = []
    for line in lines:
        for kind, slots, coefs in steps:
            planes = [line[s] for s in slots] + [line[slots[0]]] * (4 - len(slots))
            rows.append((kind, *planes, *coefs, *[0] * (4 - len(coefs))))
    return np.array(rows, dtype=np.int64)


# 1-D program (in place on the slots of one line): A^T for F(2x2) (results in slots 0, 3).
_AT2 = ((0, (3, 1, 2, 3), (1, -1, -1)), (0, (0, 0, 1, 2), (1, 1, 1)))

#: Slots of F(2x2)'s output transform's results: Y[a][b] ends in plane ``4*_Y_SLOTS[a] + _Y_SLOTS[b]``.
_Y_SLOTS = np.array([0, 3], dtype=np.int64)
#: ``Y = A^T M A`` on the planes of M: the columns (A^T M), then the result rows.
_OUT2 = _plane_program(_AT2, [[j + 4 * i for i in range(4)] for j in range(4)]
                       + [[4 * r + j for j in range(4)] for r in (0, 3)])


@njit(inline="always")
def _taps(i):
    """Row i of B^T: (first index, second index, sign of the second); both entries are 1 or -1."""
    if i == 0:
        return 0, 2, -1
    if i == 1:
        return 1, 2, 1
    if i == 2:
        return 2, 1, -1
    return 1, 3, -1


@njit(inline="always")
def _input_tiles(xp, n, i0, tiles, v, t, first):
    """``V = B^T d B`` of the 4x4 tiles at rows ``i0..i0+3`` and columns ``2*tj..2*tj+3`` of ``xp[n]``.

    Tile ``tj < tiles`` goes to ``v[t, xi, first + tj, :]``.  One loop over
    the channels per entry xi, each adding 4 rows of C numbers with signs
    (4 loads and 1 store: few enough streams for LLVM to vectorise it; one
    loop for all 16 entries would need too many run-time aliasing checks).
    """
    C = xp.shape[3]
    one = xp.dtype.type(1)
    for tj in range(tiles):
        for i in range(4):
            ra, rb, sb = _taps(i)
            fb = one if sb > 0 else -one
            for j in range(4):
                ca, cb, sc = _taps(j)
                fc = one if sc > 0 else -one
                x00, x01 = xp[n, i0 + ra, 2 * tj + ca], xp[n, i0 + ra, 2 * tj + cb]
                x10, x11 = xp[n, i0 + rb, 2 * tj + ca], xp[n, i0 + rb, 2 * tj + cb]
                out = v[t, 4 * i + j, first + tj]
                for c in range(C):
                    out[c] = x00[c] + fc * x01[c] + fb * (x10[c] + fc * x11[c])


@njit(inline="always")
def _a_row(i, one):
    """Row i of A (4x2, the transpose of A^T) in the arrays' dtype."""
    zero = one - one
    if i == 0:
        return one, zero
    if i == 1:
        return one, one
    if i == 2:
        return one, -one
    return zero, -one


@njit(inline="always")
def _gradient_tiles(dyl, n, i0, j0, tiles, mdy, t, first):
    """``dM = A dY A^T`` of the 2x2 tiles of ``dyl[n]`` at rows ``i0, i0+1``, columns ``j0 + 2*tj, j0 + 2*tj + 1``.

    Tile ``tj < tiles`` goes to ``mdy[t, xi, first + tj, :K]``; one loop over
    the K channels per entry xi (4 loads, 1 store).
    """
    K = dyl.shape[3]
    one = dyl.dtype.type(1)
    for tj in range(tiles):
        y00, y01 = dyl[n, i0, j0 + 2 * tj], dyl[n, i0, j0 + 2 * tj + 1]
        y10, y11 = dyl[n, i0 + 1, j0 + 2 * tj], dyl[n, i0 + 1, j0 + 2 * tj + 1]
        for i in range(4):
            a0, a1 = _a_row(i, one)
            for j in range(4):
                b0, b1 = _a_row(j, one)
                out = mdy[t, 4 * i + j, first + tj]
                for k in range(K):
                    out[k] = a0 * (b0 * y00[k] + b1 * y01[k]) + a1 * (b0 * y10[k] + b1 * y11[k])


@njit(inline="always")
def _run_program(mp, program, length):
    """Run a table of :func:`_plane_program` steps in place on the planes ``mp[xi, :length]``.

    Each step is one long contiguous loop (3 loads and 1 store, or 2 and 2)
    that vectorises; one loop body per kind, so it compiles once whatever
    the table.
    """
    dt = mp.dtype.type
    for step in range(program.shape[0]):
        p, q, r, s = program[step, 1], program[step, 2], program[step, 3], program[step, 4]
        f0, f1, f2, f3 = dt(program[step, 5]), dt(program[step, 6]), dt(program[step, 7]), dt(program[step, 8])
        if program[step, 0] == 0:
            for e in range(length):
                mp[p, e] = f0 * mp[q, e] + f1 * mp[r, e] + f2 * mp[s, e]
        else:
            for e in range(length):
                a, b = mp[p, e], mp[q, e]
                mp[p, e] = f0 * a + f1 * b
                mp[q, e] = f2 * a + f3 * b


@njit(inline="always")
def _transform_inputs(xp, first, last, TP, TQ, v, t):
    """``V = B^T d B`` of the tiles of tile rows ``first..last`` (row tr: image ``tr // TP``) into ``v[t]``."""
    if v.shape[1] == 36:
        winograd4_inputs(xp, first, last, TP, TQ, v, t)
        return
    for tr in range(first, last):
        n = tr // TP
        _input_tiles(xp, n, 2 * (tr - n * TP), TQ, v, t, (tr - first) * TQ)


@njit(inline="always")
def _write_outputs(m, t, first, last, TP, TQ, b, y, row, low):
    """F(2x2): ``y[n, k, p, q] = Y + b[k]`` (raised to ``low`` where below it: the ReLU with low = 0) from the output
    tiles in ``m[t]`` (:data:`_OUT2` left them there).

    Each output row p is gathered in ``row`` (K, 2*TQ), a small buffer that
    stays in L1: the tiles' results are read as contiguous rows of K numbers
    and written across ``row``, then ``row`` goes to ``y[n, :, p, :]`` one
    contiguous row of Q numbers per channel.
    """
    K, P, Q = y.shape[1], y.shape[2], y.shape[3]
    for tr in range(first, last):
        n = tr // TP
        ti = tr - n * TP
        tile0 = (tr - first) * TQ
        for a in range(min(2, P - 2 * ti)):
            p = 2 * ti + a
            for j in range(2):
                plane = 4 * _Y_SLOTS[a] + _Y_SLOTS[j]
                for tq in range(TQ):
                    src = m[t, plane, tile0 + tq]
                    q = 2 * tq + j
                    for k in range(K):
                        row[k, q] = src[k]
            for k in range(K):
                bias = b[k]
                out = y[n, k, p]
                if low == low - low:  # the ReLU (low = 0); without it (low = -inf) the plain loop of training
                    for q in range(Q):
                        v = row[k, q] + bias
                        out[q] = low if v < low else v
                else:
                    for q in range(Q):
                        out[q] = row[k, q] + bias


@njit(inline="always")
def _write_padded_outputs(m, t, first, last, TP, TQ, b, yp, pad, low, res, add):
    """F(2x2): ``yp[n, pad + p, pad + q, k] = Y + b[k]`` (channel-last; plus ``res``'s pixel when ``add``; raised to
    ``low`` where below it: the ReLU with low = 0) from the output tiles in ``m[t]``, with the zero border of
    ``yp[n]`` next to the tile rows ``first..last``: each output pixel is one contiguous row of K numbers on both
    sides."""
    K = yp.shape[3]
    P, Q = yp.shape[1] - 2 * pad, yp.shape[2] - 2 * pad
    for tr in range(first, last):
        n = tr // TP
        ti = tr - n * TP
        tile0 = (tr - first) * TQ
        flat = yp[n].reshape(yp[n].size)
        width = (Q + 2 * pad) * K
        if ti == 0:
            zero_span(flat, 0, pad * width)
        for a in range(min(2, P - 2 * ti)):
            p = 2 * ti + a
            base = (pad + p) * width
            zero_span(flat, base, base + pad * K)
            zero_span(flat, base + (pad + Q) * K, base + width)
            if p == P - 1:
                zero_span(flat, (P + pad) * width, (P + 2 * pad) * width)
            for j in range(2):
                plane = 4 * _Y_SLOTS[a] + _Y_SLOTS[j]
                for tq in range(TQ):
                    q = 2 * tq + j
                    if q >= Q:
                        break
                    src, out = m[t, plane, tile0 + tq], yp[n, pad + p, pad + q]
                    if add:  # two loops: a run-time branch inside one keeps LLVM from vectorising it
                        r = res[n, pad + p, pad + q]
                        for k in range(K):
                            v = src[k] + b[k] + r[k]
                            out[k] = low if v < low else v
                    else:
                        for k in range(K):
                            v = src[k] + b[k]
                            out[k] = low if v < low else v


@njit(inline="always")
def _tap(g, r, s, transposed):
    """``g[r, s]``, or ``g[2 - r, 2 - s]`` (rotated by 180 degrees) when ``transposed``, in float64."""
    return np.float64(g[2 - r, 2 - s] if transposed else g[r, s])


#: 1/6 in float64 (F(4x4)'s G has 1/6, 1/12 and 1/24: multiplied, not divided)
_SIXTH = 1.0 / 6.0


@njit(inline="always")
def _g4(a, b, c):
    """G of F(4x4, 3x3) times the column (a, b, c): 6 numbers."""
    e, f = a + c, a * _SIXTH * 0.25 + c * _SIXTH  # multiplications by constants: no divisions
    return (a * 0.25, -(e + b) * _SIXTH, -(e - b) * _SIXTH, f + b * _SIXTH * 0.5, f - b * _SIXTH * 0.5, c)


@njit(inline="always")
def _gt4(d0, d1, d2, d3, d4, d5):
    """G^T of F(4x4, 3x3) times the column (d0, ..., d5): 3 numbers."""
    s12, s34 = d1 + d2, d3 + d4
    return (d0 * 0.25 - s12 * _SIXTH + s34 * _SIXTH * 0.25, (d2 - d1) * _SIXTH + (d3 - d4) * _SIXTH * 0.5,
            (s34 - s12) * _SIXTH + d5)


@njit(inline="always")
def _filter2(g, out, j, transposed):
    """``G g G^T`` (F(2x2)) into column ``j`` of ``out`` (16, 16): ``out[xi, j]``; g rotated when ``transposed``."""
    half = out.dtype.type(0.5)
    if transposed:
        g00, g01, g02 = g[2, 2], g[2, 1], g[2, 0]
        g10, g11, g12 = g[1, 2], g[1, 1], g[1, 0]
        g20, g21, g22 = g[0, 2], g[0, 1], g[0, 0]
    else:
        g00, g01, g02 = g[0, 0], g[0, 1], g[0, 2]
        g10, g11, g12 = g[1, 0], g[1, 1], g[1, 2]
        g20, g21, g22 = g[2, 0], g[2, 1], g[2, 2]
    # h = G g (4x3): rows
    h00, h01, h02 = g00, g01, g02
    h10, h11, h12 = half * (g00 + g10 + g20), half * (g01 + g11 + g21), half * (g02 + g12 + g22)
    h20, h21, h22 = half * (g00 - g10 + g20), half * (g01 - g11 + g21), half * (g02 - g12 + g22)
    h30, h31, h32 = g20, g21, g22
    vals = (h00, half * (h00 + h01 + h02), half * (h00 - h01 + h02), h02,
            h10, half * (h10 + h11 + h12), half * (h10 - h11 + h12), h12,
            h20, half * (h20 + h21 + h22), half * (h20 - h21 + h22), h22,
            h30, half * (h30 + h31 + h32), half * (h30 - h31 + h32), h32)
    xi = 0
    for v in vals:  # a homogeneous tuple: unrolled
        out[xi, j] = v
        xi += 1


@njit(inline="always")
def _filter4(g, out, j, transposed):
    """:func:`_filter2` for F(4x4): ``G g G^T`` (6x6) in float64, rounded once, into ``out[:, j]`` (36, 16)."""
    h0 = _g4(_tap(g, 0, 0, transposed), _tap(g, 1, 0, transposed), _tap(g, 2, 0, transposed))  # columns of G g
    h1 = _g4(_tap(g, 0, 1, transposed), _tap(g, 1, 1, transposed), _tap(g, 2, 1, transposed))
    h2 = _g4(_tap(g, 0, 2, transposed), _tap(g, 1, 2, transposed), _tap(g, 2, 2, transposed))
    for i in range(6):
        row = _g4(h0[i], h1[i], h2[i])  # row i of (G g) G^T
        for jj in range(6):
            out[6 * i + jj, j] = row[jj]


#: Columns of ``u`` one task of :func:`winograd_filter` transforms at a time: one cache line of float32.
_FILTER_BLOCK = 16


@task("r4 a3 b i")
def _filter_row(w, u, transposed, a):
    """Row a of :func:`winograd_filter`'s matrices, 16 columns at a time through a small buffer."""
    K, C = w.shape[0], w.shape[1]
    A2, width = u.shape[0], u.shape[2]
    columns = C if transposed else K  # columns with content; the rest are zero
    block = np.zeros((A2, _FILTER_BLOCK), dtype=u.dtype)
    for b0 in range(0, width, _FILTER_BLOCK):
        used = max(0, min(_FILTER_BLOCK, columns - b0))
        for j in range(used):
            g = w[a, b0 + j] if transposed else w[b0 + j, a]
            if A2 == 16:
                _filter2(g, block, j, transposed)
            else:
                _filter4(g, block, j, transposed)
        if used < _FILTER_BLOCK:  # columns past K (or C): zeros
            for xi in range(A2):
                for j in range(used, _FILTER_BLOCK):
                    block[xi, j] = 0
        for xi in range(A2):
            for j in range(min(_FILTER_BLOCK, width - b0)):
                u[xi, a, b0 + j] = block[xi, j]


_filter_rows = parallel_tasks(_filter_row)


@njit
def winograd_filter(w, u, transposed):
    """Transformed 3x3 filters ``G g G^T`` (alpha x alpha each), laid out as alpha^2 matrices for the products.

    ``u.shape[0]`` chooses the tile: 16 for F(2x2, 3x3), 36 for F(4x4, 3x3).
    ``transposed=False`` (forward, weight layout of the products
    ``V @ U``): ``u[xi, c, k]`` is entry ``xi = alpha*i + j`` of
    ``G w[k, c] G^T``.  ``transposed=True`` (input gradient):
    ``u[xi, k, c]`` is entry xi of ``G w'[c, k] G^T`` with
    ``w'[c, k, r, s] = w[k, c, 2 - r, 2 - s]`` (the kernel rotated by 180
    degrees).  Columns past K (or C) are set to zero.  Each task takes one
    row of the matrices and fills it 16 columns at a time through a small
    buffer, so that every write fills whole cache lines (the alpha^2
    planes are a power of two apart: writing them one number at a time
    thrashed the caches).

    Parameters
    ----------
    w : (K, C, 3, 3) float array, read
    u : (16 or 36, C, Kw) float array with Kw >= K, or (16 or 36, K, Cw) with
        Cw >= C when ``transposed``; written in full
    transposed : bool
    """
    _filter_rows(u.shape[1], w, u, transposed)


@njit(inline="always")
def _chunk_products(xp, uf, vf, mf, v, m, t, first, last, TP, TQ):
    """The products of tile rows ``first..last`` in ``m[t]``: the input transform into ``v[t]`` and the alpha^2
    products ``M[xi] (tiles, Kw) = V[xi] (tiles, C) @ U[xi] (C, Kw)`` (``uf``, ``vf``, ``mf``: u, v and m flat);
    F(2x2) then transforms its output tiles in place (F(4x4) transforms them as it writes them)."""
    C, A2, TB, Kw = xp.shape[3], m.shape[1], m.shape[2], m.shape[3]
    v_base, m_base = t * A2 * TB * C, t * A2 * TB * Kw
    tiles = (last - first) * TQ
    _transform_inputs(xp, first, last, TP, TQ, v, t)
    for xi in range(A2):
        off = m_base + xi * TB * Kw
        zero_span(mf, off, off + tiles * Kw)
        gemm_call(mf, off, Kw, vf, v_base + xi * TB * C, C, 0, 1,
                  uf, xi * C * Kw, 0, Kw, 1, C, tiles, Kw)
    if A2 == 16:
        _run_program(m[t].reshape((A2, TB * Kw)), _OUT2, tiles * Kw)


@task("r4 r3 r1 a4 a4 a4 i")
def _forward_task(xp, u, b, y, v, m, t):
    """Task t of :func:`conv2d_forward_winograd`: its range of chunks of tile rows, in ``v[t]`` and ``m[t]``."""
    A2 = u.shape[0]
    mt = 2 if A2 == 16 else 4
    N, K, P, Q = y.shape
    T, TB = v.shape[0], v.shape[2]
    TP, TQ = (P + mt - 1) // mt, (Q + mt - 1) // mt
    rows_per_chunk = TB // TQ
    chunks = (N * TP + rows_per_chunk - 1) // rows_per_chunk
    uf, vf, mf = u.reshape(u.size), v.reshape(v.size), m.reshape(m.size)
    row = np.empty((K if A2 == 16 else 0, mt * TQ), dtype=y.dtype)  # one F(2x2) output row, gathered
    low = y.dtype.type(-np.inf)  # no ReLU
    for chunk in range(t * chunks // T, (t + 1) * chunks // T):
        first = chunk * rows_per_chunk
        last = min(first + rows_per_chunk, N * TP)
        _chunk_products(xp, uf, vf, mf, v, m, t, first, last, TP, TQ)
        if A2 == 16:
            _write_outputs(m, t, first, last, TP, TQ, b, y, row, low)
        else:
            winograd4_outputs(m, t, first, last, TP, TQ, b, y, -1, low, xp, False)


_forward_tasks = parallel_tasks(_forward_task)


@task("r4 r3 r1 a4 i b r4 b a4 a4 i")
def _padded_forward_task(xp, u, b, y, pad, relu, res, add, v, m, t):
    """Task t of :func:`conv2d_forward_winograd_padded` (y channel-last with a zero border of ``pad``, or NCHW when
    ``pad < 0``): as :func:`_forward_task`; with ``add`` (padded y only) ``res``, of y's shape, is added before
    the ReLU.  A task of its own: the training kernel's compiles no more than it did."""
    A2 = u.shape[0]
    mt = 2 if A2 == 16 else 4
    N = y.shape[0]
    P = y.shape[2] if pad < 0 else y.shape[1] - 2 * pad
    Q = y.shape[3] if pad < 0 else y.shape[2] - 2 * pad
    K = y.shape[1] if pad < 0 else y.shape[3]
    T, TB = v.shape[0], v.shape[2]
    TP, TQ = (P + mt - 1) // mt, (Q + mt - 1) // mt
    rows_per_chunk = TB // TQ
    chunks = (N * TP + rows_per_chunk - 1) // rows_per_chunk
    uf, vf, mf = u.reshape(u.size), v.reshape(v.size), m.reshape(m.size)
    row = np.empty((K if pad < 0 and A2 == 16 else 0, mt * TQ), dtype=y.dtype)  # one NCHW F(2x2) output row
    low = y.dtype.type(0) if relu else y.dtype.type(-np.inf)  # v < low: below the ReLU (never without; NaN stays)
    for chunk in range(t * chunks // T, (t + 1) * chunks // T):
        first = chunk * rows_per_chunk
        last = min(first + rows_per_chunk, N * TP)
        _chunk_products(xp, uf, vf, mf, v, m, t, first, last, TP, TQ)
        if A2 == 36:
            winograd4_outputs(m, t, first, last, TP, TQ, b, y, pad, low, res, add)
        elif pad < 0:
            _write_outputs(m, t, first, last, TP, TQ, b, y, row, low)
        else:
            _write_padded_outputs(m, t, first, last, TP, TQ, b, y, pad, low, res, add)


_padded_forward_tasks = parallel_tasks(_padded_forward_task)



@njit
def conv2d_forward_winograd(xp, u, b, y, v, m):
    """Forward pass of a 3x3 stride-1 convolution by F(2x2, 3x3) or F(4x4, 3x3), from a padded channel-last input.

    ``y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] * xp[n, p + r, q + s, c]``
    (the padding is in ``xp``).  The tile is F(2x2) when ``u`` holds 16
    positions (alpha = 4, m = 2), F(4x4) when it holds 36 (alpha = 6,
    m = 4).  The ``N * ceil(P/m)`` rows of tiles go in chunks of
    ``v.shape[2] // ceil(Q/m)`` rows, split into ``v.shape[0]`` equal ranges
    of chunks, one per task; each task works in its own ``v[t]`` and ``m[t]``.

    Parameters
    ----------
    xp : (N, Hx, Wx, C) float array, the zero-padded channel-last input
        (``to_channel_last``), Hx >= m*ceil(P/m) + 2 and Wx >= m*ceil(Q/m) + 2
        (rows and columns past the padded input must be zero)
    u : (alpha^2, C, Kw) float array, Kw >= K, from ``winograd_filter(w, u, False)``;
        columns past K are computed and dropped (pad K to a multiple of 8 so
        the micro-kernel runs full width)
    b : (K,) float array
    y : (N, K, P, Q) float array, NCHW, written in full
    v : (T, alpha^2, TB, C) float array, scratch: T >= 1 tasks, TB >= ceil(Q/m)
        tiles (an odd TB keeps the planes of a task in different cache sets)
    m : (T, alpha^2, TB, Kw) float array, scratch
    """
    _forward_tasks(v.shape[0], xp, u, b, y, v, m)


@njit
def conv2d_forward_winograd_padded(xp, u, b, yp, pad, relu, v, m, res=None):
    """:func:`conv2d_forward_winograd` into a channel-last output with a zero border, residual sum and ReLU
    optionally fused.

    ``yp[n, pad + p, pad + q, k] = f(b[k] + sum_{c, r, s} w[k, c, r, s] * xp[n, p + r, q + s, c] + res[n, pad + p,
    pad + q, k])`` with ``f`` the identity, or ``max(., 0)`` when ``relu`` (NaN stays NaN), the ``res`` term only
    when given, and zero in the border of ``pad`` rows and columns around: the layout
    :func:`fastcnn.kernels.conv2d_forward_channellast_padded` writes and reads too, so that a model's layers pass
    activations on without converting them.  With ``pad < 0``, ``yp`` is an NCHW ``y`` (N, K, P, Q) instead (and
    ``res`` is not read).

    Parameters
    ----------
    xp, u, b, v, m
        As for :func:`conv2d_forward_winograd`.
    yp : (N, P + 2*pad, Q + 2*pad, K) float array (``pad < 0``: (N, K, P, Q)), written in full
    pad : int
    relu : bool
    res : None or array of yp's shape and dtype, not overlapping yp
        A residual block's shortcut, added before the ReLU.
    """
    if res is None:
        _padded_forward_tasks(v.shape[0], xp, u, b, yp, pad, relu, xp, False, v, m)
    else:
        _padded_forward_tasks(v.shape[0], xp, u, b, yp, pad, relu, res, pad >= 0, v, m)


@njit(inline="always")
def _dw2(d, j, dw, k, c):
    """F(2x2): ``dw[k, c] = G^T dU G`` from ``dU[xi] = d[xi, j]`` (float64), rounded once."""
    half = 0.5
    d0, d1, d2, d3, d4, d5, d6, d7 = d[0, j], d[1, j], d[2, j], d[3, j], d[4, j], d[5, j], d[6, j], d[7, j]
    d8, d9, d10, d11 = d[8, j], d[9, j], d[10, j], d[11, j]
    d12, d13, d14, d15 = d[12, j], d[13, j], d[14, j], d[15, j]
    # e = G^T dU (3x4): rows
    e00, e01, e02, e03 = (d0 + half * (d4 + d8), d1 + half * (d5 + d9), d2 + half * (d6 + d10),
                          d3 + half * (d7 + d11))
    e10, e11, e12, e13 = half * (d4 - d8), half * (d5 - d9), half * (d6 - d10), half * (d7 - d11)
    e20, e21, e22, e23 = (half * (d4 + d8) + d12, half * (d5 + d9) + d13, half * (d6 + d10) + d14,
                          half * (d7 + d11) + d15)
    # e G (3x3): columns
    dw[k, c, 0, 0] = e00 + half * (e01 + e02)
    dw[k, c, 0, 1] = half * (e01 - e02)
    dw[k, c, 0, 2] = half * (e01 + e02) + e03
    dw[k, c, 1, 0] = e10 + half * (e11 + e12)
    dw[k, c, 1, 1] = half * (e11 - e12)
    dw[k, c, 1, 2] = half * (e11 + e12) + e13
    dw[k, c, 2, 0] = e20 + half * (e21 + e22)
    dw[k, c, 2, 1] = half * (e21 - e22)
    dw[k, c, 2, 2] = half * (e21 + e22) + e23


@njit(inline="always")
def _dw4(d, j, dw, k, c):
    """:func:`_dw2` for F(4x4): ``dw[k, c] = (G^T dU) G`` in float64 (``d`` is float64), rounded once."""
    e0 = _gt4(d[0, j], d[6, j], d[12, j], d[18, j], d[24, j], d[30, j])  # column i of G^T dU: (3,) each
    e1 = _gt4(d[1, j], d[7, j], d[13, j], d[19, j], d[25, j], d[31, j])
    e2 = _gt4(d[2, j], d[8, j], d[14, j], d[20, j], d[26, j], d[32, j])
    e3 = _gt4(d[3, j], d[9, j], d[15, j], d[21, j], d[27, j], d[33, j])
    e4 = _gt4(d[4, j], d[10, j], d[16, j], d[22, j], d[28, j], d[34, j])
    e5 = _gt4(d[5, j], d[11, j], d[17, j], d[23, j], d[29, j], d[35, j])
    r0 = _gt4(e0[0], e1[0], e2[0], e3[0], e4[0], e5[0])  # rows of (G^T dU) G
    r1 = _gt4(e0[1], e1[1], e2[1], e3[1], e4[1], e5[1])
    r2 = _gt4(e0[2], e1[2], e2[2], e3[2], e4[2], e5[2])
    dw[k, c, 0, 0], dw[k, c, 0, 1], dw[k, c, 0, 2] = r0
    dw[k, c, 1, 0], dw[k, c, 1, 1], dw[k, c, 1, 2] = r1
    dw[k, c, 2, 0], dw[k, c, 2, 1], dw[k, c, 2, 2] = r2


@njit(inline="always")
def _sum_partials(pf, c, k0, used, C, Kw, T, d):
    """``d[xi, j] = sum_t partial[t, xi, c, k0 + j]`` for ``j < used``, in task order (``pf``: partial, flat)."""
    A2 = d.shape[0]
    plane, task = C * Kw, d.shape[0] * C * Kw
    for xi in range(A2):
        for j in range(used):
            d[xi, j] = 0
        for t in range(T):
            o = t * task + xi * plane + c * Kw + k0
            for j in range(used):
                d[xi, j] += pf[o + j]


@task("r4 r4 a4 a4 a4 i i")
def _weight_grad_task(xp, dyl, v, mdy, partial, border, t):
    """Task t of :func:`conv2d_backward_weight_winograd`: its chunks' ``V[xi]^T @ dM[xi]`` summed into ``partial[t]``."""
    N, C = xp.shape[0], xp.shape[3]
    Py, Qy = dyl.shape[1] - 2 * border, dyl.shape[2] - 2 * border
    T, A2, TB, Kw = v.shape[0], v.shape[1], v.shape[2], mdy.shape[3]
    mt = 2 if A2 == 16 else 4
    TP, TQ = Py // mt, Qy // mt
    rows_per_chunk = TB // TQ
    chunks = (N * TP + rows_per_chunk - 1) // rows_per_chunk
    vf, mf, pf = v.reshape(v.size), mdy.reshape(mdy.size), partial.reshape(partial.size)
    v_base, m_base, p_base = t * A2 * TB * C, t * A2 * TB * Kw, t * A2 * C * Kw
    zero_span(pf, p_base, p_base + A2 * C * Kw)
    zero_span(mf, m_base, m_base + A2 * TB * Kw)  # columns past K stay zero
    for chunk in range(t * chunks // T, (t + 1) * chunks // T):
        first = chunk * rows_per_chunk
        last = min(first + rows_per_chunk, N * TP)
        tiles = (last - first) * TQ
        _transform_inputs(xp, first, last, TP, TQ, v, t)
        if mt == 4:  # dM = A dY A^T
            winograd4_gradients(dyl, first, last, TP, TQ, border, mdy, t)
        else:
            for tr in range(first, last):
                n = tr // TP
                _gradient_tiles(dyl, n, border + 2 * (tr - n * TP), border, TQ, mdy, t, (tr - first) * TQ)
        for xi in range(A2):  # partial[t, xi] (C, Kw) += V[xi]^T (C, tiles) @ dM[xi] (tiles, Kw)
            gemm_call(pf, p_base + xi * C * Kw, Kw, vf, v_base + xi * TB * C, 1, 0, C,
                      mf, m_base + xi * TB * Kw, 0, Kw, 1, tiles, C, Kw)


@task("r1 a4 i i i i i")
def _weight_grad_filter(pf, dw, K, T, A2, Kw, c):
    """``dw[:, c]`` from the tasks' partial sums ``pf`` (flat): summed and transformed in float64."""
    C = dw.shape[1]
    d = np.empty((A2, _FILTER_BLOCK), dtype=np.float64)  # O(K*C) work: summed and transformed in float64
    for k0 in range(0, K, _FILTER_BLOCK):
        used = min(_FILTER_BLOCK, K - k0)
        _sum_partials(pf, c, k0, used, C, Kw, T, d)
        for j in range(used):
            if A2 == 16:
                _dw2(d, j, dw, k0 + j, c)
            else:
                _dw4(d, j, dw, k0 + j, c)


_weight_grad_tasks = parallel_tasks(_weight_grad_task)
_weight_grad_filters = parallel_tasks(_weight_grad_filter)


@njit
def conv2d_backward_weight_winograd(xp, dyl, dw, v, mdy, partial, border=0):
    """Weight gradient of a 3x3 stride-1 convolution by F(2x2, 3x3) or F(4x4, 3x3).

    ``dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] * xp[n, p + r, q + s, c]``,
    computed as ``dU[xi] = sum_tiles V[xi]^T @ dM[xi]`` (``dM = A dY A^T``
    from each m x m tile of dy) and ``dw[k, c] = G^T dU[:, :, c, k] G``.  The
    tile is F(2x2) when ``v`` holds 16 positions, F(4x4) when it holds 36.
    Rows of tiles are chunked as in :func:`conv2d_forward_winograd`; task t
    sums its chunks into ``partial[t]``, and the partial sums are added in
    task order (results do not depend on timing).

    Parameters
    ----------
    xp : (N, Hx, Wx, C) float array, as for :func:`conv2d_forward_winograd`
    dyl : (N, m*ceil(P/m) + 2*border, m*ceil(Q/m) + 2*border, K) float array,
        dy channel-last from row and column ``border`` on, with zeros past
        (P, Q) (``to_channel_last(dy, dyl, border, border)``: with border 1
        the copy the input gradient of a padding-1 layer reads serves here too)
    dw : (K, C, 3, 3) float array, written in full
    v : (T, alpha^2, TB, C) float array, scratch: T >= 1 tasks, TB >= ceil(Q/m)
        tiles (an odd TB keeps the planes of a task in different cache sets)
    mdy : (T, alpha^2, TB, Kw) float array, scratch, Kw >= K (a multiple of 8
        runs the micro-kernel full width)
    partial : (T, alpha^2, C, Kw) float array, scratch
    border : int, default 0
    """
    T, C, K = v.shape[0], xp.shape[3], dyl.shape[3]
    pf = partial.reshape(partial.size)
    _weight_grad_tasks(T, xp, dyl, v, mdy, partial, border)
    # dw[k, c] from the partial sums: per input channel, 16 output channels at a time (whole cache lines)
    _weight_grad_filters(C, pf, dw, K, T, v.shape[1], mdy.shape[3])
