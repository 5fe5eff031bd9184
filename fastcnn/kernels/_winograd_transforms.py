"""F(4x4, 3x3)'s tile transforms in registers: the helper of :mod:`fastcnn.kernels._conv_winograd` (only).

Each transform is an intrinsic that takes one tile for one vector of channels (:data:`LANES` of them: 16 with
512-bit vectors, 8 with 256-bit ones, :data:`fastcnn.config.VECTOR_BITS`), loads its input vectors once, computes
the two-sided product ``T X T^T`` in registers and stores its results once:

* ``V = B^T d B``: 36 vectors of the 6x6 input tile in, 36 out, one to each plane ``xi = 6*i + j`` of the
  products' input ``v[t, xi, tile, c0:c0 + LANES]``;
* ``dM = A dY A^T`` (the weight gradient): the 16 vectors of a 4x4 tile of dy in, 36 out, in the same layout;
* ``Y = A^T M A``: the 36 vectors of ``m[t, :, tile, k0:k0 + LANES]`` in, 16 out, with the bias, the residual
  and the ReLU added, stored to a channel-last output (``yp`` of the padded forward) as they are; for an NCHW
  ``y`` a tile row's outputs go through two small buffers (channel-last, then transposed block by block with
  shuffles into runs of pixels) and are copied to y a channel's rows at a time.

The plane programs they replace (one pass over the chunk's 36 planes per step, 3 loads and 1 store per number,
each pass longer than L1 holds) and the gathering of the outputs took 6.5 of a 32 -> 32 layer's 12.5 ms forward
on 32x32 planes (batch 64, one thread); these take 1.3 ms.  What is left is mostly stores: each tile's 36
vectors of ``v`` (or 16 of y, three times) cost more than its arithmetic.  A channel count that is not a
multiple of the vector (3, 5, 20 channels, ...) ends in a vector of fewer lanes, loaded and stored with masks
(``llvm.masked.load``/``store``): nothing past the channels is read or written (columns past K of the weight
gradient's ``dM`` stay as they are); nor are the outputs of a tile past the output's last row or column.

The arithmetic is fixed (1-D programs below, with fused multiply-adds), the same in every lane and at both vector
widths: results never depend on the width, the thread count or timing.

Both widths are built; the kernels call the process's one (:data:`LANES`) through fixed symbols, as they call the
micro-kernel (:func:`fastcnn.kernels._gemm.gemm_call`): the loops over a chunk's tiles are task bodies, one
Python function per width, so that Numba caches each width's code apart and a kernel loaded from the cache calls
whichever this process registered.  Change the version in the symbols when a body's signature changes.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import VECTOR_BITS, njit
from ._loops import zero_span
from ._tasks import task

#: Channels per vector of the transforms (float32 lanes of :data:`fastcnn.config.VECTOR_BITS`; float64 uses as
#: many, in two registers each).
LANES = VECTOR_BITS // 32


# --------------------------------------------------------------------------- 1-D programs
# Each maps a list of vectors to a list (in place of a matrix-vector product), with the operations of
# :class:`_Vectors`; every result is a fixed expression of the inputs.


def _bt4(o, d):
    """``B^T d`` of F(4x4): 6 numbers to 6 (rows of B^T: see :mod:`fastcnn.kernels._conv_winograd`), in 6
    multiply-adds and 6 additions (the two kinds run on different units)."""
    c = o.sub(d[4], d[2])
    return _bt4_first(o, d, c) + _bt4_last(o, d, c)


def _bt4_first(o, d, c=None):
    """Rows 0-2 of ``B^T d``, from d0-d4 (``c``: ``d4 - d2`` if already computed)."""
    c = o.sub(d[4], d[2]) if c is None else c
    g, a, b = o.sub(d[0], d[2]), o.fma(-4, d[2], d[4]), o.fma(-4, d[1], d[3])  # a: d4 - 4 d2, b: d3 - 4 d1
    return [o.fma(4, g, c), o.add(a, b), o.sub(a, b)]


def _bt4_last(o, d, c=None):
    """Rows 3-5 of ``B^T d``, from d1-d5 (``c``: ``d4 - d2`` if already computed)."""
    c = o.sub(d[4], d[2]) if c is None else c
    f, h = o.sub(d[3], d[1]), o.sub(d[5], d[3])
    return [o.fma(2, f, c), o.fma(-2, f, c), o.fma(-4, f, h)]


def _a4(o, y):
    """``A y`` of F(4x4) (A is 6x4, the transpose of A^T): 4 numbers to 6."""
    even, odd = o.add(y[0], y[2]), o.add(y[1], y[3])
    even4, odd4 = o.fma(4, y[2], y[0]), o.mul(2, o.fma(4, y[3], y[1]))  # y0 + 4 y2, 2 y1 + 8 y3
    return [y[0], o.add(even, odd), o.sub(even, odd), o.add(even4, odd4), o.sub(even4, odd4), y[3]]


def _at4(o, m):
    """``A^T m`` of F(4x4): 6 numbers to 4."""
    s12, d12, s34, d34 = o.add(m[1], m[2]), o.sub(m[1], m[2]), o.add(m[3], m[4]), o.sub(m[3], m[4])
    return [o.add(o.add(m[0], s12), s34), o.fma(2, d34, d12), o.fma(4, s34, s12), o.add(o.fma(8, d34, d12), m[5])]


def _two_sided(program, column, n):
    """``T X T^T`` of an n x n matrix X with ``program`` computing ``T v``; ``column(c)`` gives (loads) column c
    of X.  The columns first, each loaded as it is needed (fewer vectors live at once), then the rows of the
    result (row i: ``program`` of row i of ``T X``)."""
    columns = [program(column(c)) for c in range(n)]  # columns of T X
    return [program([col[i] for col in columns]) for i in range(len(columns[0]))]


class _Column:
    """Column c of a tile, each entry loaded when first read."""

    def __init__(self, load, c):
        self.load, self.c, self.loaded = load, c, {}

    def __getitem__(self, r):
        if r not in self.loaded:
            self.loaded[r] = self.load(r, self.c)
        return self.loaded[r]


# --------------------------------------------------------------------------- code generation


class _Vectors:
    """In an intrinsic's codegen: vectors of ``lanes`` numbers of ``dtype``, their arithmetic, loads and stores.

    No fast-math flags: LLVM keeps the operations as written (``fma`` is ``llvm.fmuladd``: one rounding where
    the CPU has fused multiply-adds, as in the micro-kernel).
    """

    def __init__(self, context, builder, dtype, lanes):
        self.context, self.builder, self.lanes = context, builder, lanes
        self.elem = context.get_data_type(dtype)
        self.vec = ir.VectorType(self.elem, lanes)
        self.align = context.get_abi_sizeof(self.elem)
        self.kind = "f32" if dtype == types.float32 else "f64"
        self._fmuladd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vec, [self.vec] * 3), f"llvm.fmuladd.v{lanes}{self.kind}")

    # arithmetic (the 1-D programs' operations)
    def splat(self, value, vec=None):
        vec = vec or self.vec
        return ir.Constant(vec, [ir.Constant(vec.element, value)] * vec.count)

    def add(self, a, b):
        return self.builder.fadd(a, b)

    def sub(self, a, b):
        return self.builder.fsub(a, b)

    def mul(self, c, a):
        return self.builder.fmul(self.splat(float(c)), a)

    def fma(self, c, a, b):
        """``c*a + b`` for a constant ``c``."""
        return self.builder.call(self._fmuladd, [self.splat(float(c)), a, b])

    # addresses, masks, loads and stores
    def intp(self, signature, args, k):
        return self.context.cast(self.builder, args[k], signature.args[k], types.intp)

    def data(self, signature, args, k):
        return self.context.make_array(signature.args[k])(self.context, self.builder, value=args[k]).data

    def at(self, data, offset, count=None):
        """A pointer to ``count`` (default ``lanes``) numbers of ``data`` from element ``offset`` on."""
        vec = self.vec if count is None else ir.VectorType(self.elem, count)
        return self.builder.bitcast(self.builder.gep(data, [offset], inbounds=True), vec.as_pointer())

    def grid(self, data, base, outer, rows, inner, columns, count=None):
        """Pointers ``[i][j]`` to ``count`` numbers of ``data`` from element ``base + i*outer + j*inner`` on.

        Each row's first address goes through an empty inline assembly statement, so that LLVM computes the
        others from it and a few multiples of ``inner`` (address modes).  Otherwise its loop strength reduction
        turns every address of an inlined tile transform into an induction variable of the loop around it:
        72 pointers kept on the stack and each updated there, per tile (the transforms took 3x the time).
        """
        b = self.builder
        launder = ir.FunctionType(data.type, [data.type])
        pointers = []
        for i in range(rows):
            start = b.gep(data, [b.add(base, b.mul(outer, ir.Constant(outer.type, i)))], inbounds=True)
            start = b.asm(launder, "", "=r,0", [start], False)
            pointers.append([self.at(start, b.mul(inner, ir.Constant(inner.type, j)), count) for j in range(columns)])
        return pointers

    def broadcast(self, value, count=None):
        count = count or self.lanes
        vec = ir.VectorType(value.type, count)
        first = self.builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        return self.builder.shuffle_vector(first, ir.Constant(vec, ir.Undefined),
                                           ir.Constant(ir.VectorType(ir.IntType(32), count), [0] * count))

    def below(self, bound, count=None):
        """The mask of the lanes ``l < bound`` (an intp) of a vector of ``count`` (default ``lanes``) numbers."""
        count = count or self.lanes
        iota = ir.Constant(ir.VectorType(bound.type, count), list(range(count)))
        return self.builder.icmp_signed("<", iota, self.broadcast(bound, count))

    def _masked(self, op, count):
        vec = ir.VectorType(self.elem, count)
        mask = ir.VectorType(ir.IntType(1), count)
        i32 = ir.IntType(32)
        name = f"llvm.masked.{op}.v{count}{self.kind}.p0"
        if op == "load":
            fnty = ir.FunctionType(vec, [vec.as_pointer(), i32, mask, vec])
        else:
            fnty = ir.FunctionType(ir.VoidType(), [vec, vec.as_pointer(), i32, mask])
        return cgutils.get_or_insert_function(self.builder.module, fnty, name)

    def load(self, pointer, mask=None):
        """The vector at ``pointer``; with a ``mask``, only its lanes (zeros in the others, which are not read)."""
        if mask is None:
            return self.builder.load(pointer, align=self.align)
        count = mask.type.count
        return self.builder.call(self._masked("load", count), [
            pointer, ir.Constant(ir.IntType(32), self.align), mask, self.splat(0.0, ir.VectorType(self.elem, count))])

    def store(self, value, pointer, mask=None):
        """Store ``value`` at ``pointer``; with a ``mask``, only its lanes."""
        if mask is None:
            self.builder.store(value, pointer, align=self.align)
        else:
            self.builder.call(self._masked("store", mask.type.count),
                              [value, pointer, ir.Constant(ir.IntType(32), self.align), mask])


def _arrays(*arrays):
    """Whether the intrinsics take these argument types: 1-D C-contiguous float arrays of one dtype."""
    return (all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays)
            and len({a.dtype for a in arrays}) == 1 and arrays[0].dtype in (types.float32, types.float64))


def _make_tile_transform(program, size, lanes, masked, halves=None):
    """An intrinsic ``transform(src, s_off, s_row, s_col, dst, d_off, d_plane, count)``: ``Z = T X T^T`` of one
    ``size x size`` tile for one vector of channels, with ``program`` computing ``T x`` (``T``: n x size).

    ``X[r][s]`` is the vector ``src[s_off + r*s_row + s*s_col:][:lanes]`` and ``Z[i][j]`` goes to
    ``dst[d_off + (n*i + j)*d_plane:][:lanes]``.  ``masked``: only the first ``count`` lanes are read and written
    (the channels' last vector), else all ``lanes`` (``count`` is not read).  Two intrinsics, not one with a
    branch: with a branch LLVM computes the addresses both sides use first, and keeps them on the stack.

    ``halves``: programs for the rows of ``T X`` in parts (the rows each gives, in order), each part's rows
    computed for every column, transformed and stored before the next part's: half of ``B^T X`` of F(4x4) is 18
    vectors, the whole 36, more than the 32 registers of AVX-512 (spilled to the stack and loaded back, which
    took a little longer, 5-10 %, than loading the tile's rows that both halves read twice).
    """
    halves = halves or [program]

    @intrinsic
    def transform(typingctx, src, s_off, s_row, s_col, dst, d_off, d_plane, count):
        if not _arrays(src, dst):
            return None

        def codegen(context, builder, signature, args):
            o = _Vectors(context, builder, signature.args[0].dtype, lanes)
            sdata, ddata = o.data(signature, args, 0), o.data(signature, args, 4)
            s_off, s_row, s_col, d_off, d_plane, count = (o.intp(signature, args, k) for k in (1, 2, 3, 5, 6, 7))
            mask = o.below(count) if masked else None
            sources = o.grid(sdata, s_off, s_row, size, s_col, size)
            i = 0
            for half in halves:
                columns = [half(o, _Column(lambda r, c: o.load(sources[r][c], mask), c)) for c in range(size)]
                for k in range(len(columns[0])):
                    z = program(o, [column[k] for column in columns])  # row i of T X T^T
                    n = len(z)
                    if i == 0:
                        targets = o.grid(ddata, d_off, builder.mul(d_plane, ir.Constant(d_plane.type, n)), n,
                                         d_plane, n)
                    for j in range(n):
                        o.store(z[j], targets[i][j], mask)
                    i += 1
            return context.get_dummy_value()

        return types.void(src, s_off, s_row, s_col, dst, d_off, d_plane, count), codegen

    return transform


def _make_output_tile(lanes, masked):
    """An intrinsic ``output(m, m_off, m_plane, b, k0, y, y_off, sp, sq, res, add, low, na, nb, count)``:
    ``Y = A^T M A`` of one tile for one vector of channels, written channel-last with its bias (and residual) and
    ReLU.

    ``M[i][j]`` is the vector ``m[m_off + (6*i + j)*m_plane:][:lanes]``; output ``a < na``, ``b < nb`` goes to
    ``y[y_off + a*sp + b*sq:][:lanes] = f(Y[a][b] + b[k0:k0 + lanes] (+ res[same]))``, with ``f(v) = low if v < low
    else v`` (NaN stays), the residual only when ``add``.  Not ``masked``: a whole tile and vector (``na == nb ==
    4``, ``count == lanes``; the three are not read); ``masked``: only lanes ``l < count`` are read and written.
    """

    @intrinsic
    def output(typingctx, m, m_off, m_plane, b, k0, y, y_off, sp, sq, res, add, low, na, nb, count):
        if not _arrays(m, b, y, res) or not isinstance(add, types.Boolean) or low != m.dtype:
            return None

        def codegen(context, builder, signature, args):
            o = _Vectors(context, builder, signature.args[0].dtype, lanes)
            mdata, bdata, ydata, rdata = (o.data(signature, args, k) for k in (0, 3, 5, 9))
            m_off, m_plane, k0, y_off, sp, sq, na, nb, count = (
                o.intp(signature, args, k) for k in (1, 2, 4, 6, 7, 8, 12, 13, 14))
            add, low = args[10], args[11]

            def const(value):
                return ir.Constant(count.type, value)

            mask = o.below(count) if masked else None
            sources = o.grid(mdata, m_off, builder.mul(m_plane, const(6)), 6, m_plane, 6)
            y4 = _two_sided(lambda v: _at4(o, v), lambda c: [o.load(row[c], mask) for row in sources], 6)
            bias = o.load(o.at(bdata, k0), mask)
            low_vec = o.broadcast(low)
            if masked:  # lanes past count, pixels past (na, nb): not written
                none = ir.Constant(mask.type, [0] * lanes)
                masks = [[builder.select(builder.and_(builder.icmp_signed("<", const(a), na),
                                                      builder.icmp_signed("<", const(b_), nb)), mask, none)
                          for b_ in range(4)] for a in range(4)]
            with builder.if_else(add) as (with_res, plain):
                for residual, block in ((True, with_res), (False, plain)):
                    with block:
                        targets = o.grid(ydata, y_off, sp, 4, sq, 4)
                        residuals = o.grid(rdata, y_off, sp, 4, sq, 4) if residual else None
                        for a in range(4):
                            for b_ in range(4):
                                where = masks[a][b_] if masked else None
                                value = builder.fadd(y4[a][b_], bias)
                                if residual:
                                    value = builder.fadd(value, o.load(residuals[a][b_], where))
                                value = builder.select(builder.fcmp_ordered("<", value, low_vec), low_vec, value)
                                o.store(value, targets[a][b_], where)
            return context.get_dummy_value()

        return types.void(m, m_off, m_plane, b, k0, y, y_off, sp, sq, res, add, low, na, nb, count), codegen

    return output


def _transposed(o, rows):
    """The transpose of the square block of vectors ``rows`` (``lanes`` of them): log2(lanes) stages of
    two-vector shuffles, stage h exchanging the h x h blocks off the diagonal of each 2h x 2h block."""
    lanes = len(rows)
    rows = list(rows)
    h = lanes // 2
    while h:
        picks_low = ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                [j if j & h == 0 else lanes + j - h for j in range(lanes)])
        picks_high = ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                 [j + h if j & h == 0 else lanes + j for j in range(lanes)])
        for i in range(lanes):
            if i & h == 0:
                u, v = rows[i], rows[i + h]
                rows[i] = o.builder.shuffle_vector(u, v, picks_low)
                rows[i + h] = o.builder.shuffle_vector(u, v, picks_high)
        h //= 2
    return rows


def _make_transpose(lanes):
    """An intrinsic ``transpose(src, s_off, dst, d_off, d_stride)``: the ``lanes x lanes`` block
    ``src[s_off + q*lanes + l]`` (pixel q, channel l) to ``dst[d_off + l*d_stride + q]`` (a run of pixels per
    channel)."""

    @intrinsic
    def transpose(typingctx, src, s_off, dst, d_off, d_stride):
        if not _arrays(src, dst):
            return None

        def codegen(context, builder, signature, args):
            o = _Vectors(context, builder, signature.args[0].dtype, lanes)
            sdata, ddata = o.data(signature, args, 0), o.data(signature, args, 2)
            s_off, d_off, d_stride = (o.intp(signature, args, k) for k in (1, 3, 4))
            lanes_int = ir.Constant(s_off.type, lanes)
            columns = _transposed(o, [o.load(p) for p in o.grid(sdata, s_off, lanes_int, 1, lanes_int, lanes)[0]])
            for value, target in zip(columns, o.grid(ddata, d_off, d_stride, lanes, d_stride, 1)):
                o.store(value, target[0])
            return context.get_dummy_value()

        return types.void(src, s_off, dst, d_off, d_stride), codegen

    return transpose


def _make_copy(lanes):
    """An intrinsic ``copy(src, s_off, dst, d_off, n)``: ``dst[d_off:d_off + n] = src[s_off:s_off + n]``, a vector
    of ``lanes`` numbers at a time, the last ``n % lanes`` with masks."""

    @intrinsic
    def copy(typingctx, src, s_off, dst, d_off, n):
        if not _arrays(src, dst):
            return None

        def codegen(context, builder, signature, args):
            o = _Vectors(context, builder, signature.args[0].dtype, lanes)
            sdata, ddata = o.data(signature, args, 0), o.data(signature, args, 2)
            s_off, d_off, n = (o.intp(signature, args, k) for k in (1, 3, 4))
            lanes_int = ir.Constant(n.type, lanes)
            whole = builder.sdiv(n, lanes_int)
            with cgutils.for_range(builder, whole) as loop:
                step = builder.mul(loop.index, lanes_int)
                o.store(o.load(o.at(sdata, builder.add(s_off, step))), o.at(ddata, builder.add(d_off, step)))
            done = builder.mul(whole, lanes_int)
            with builder.if_then(builder.icmp_signed("<", done, n)):
                mask = o.below(builder.sub(n, done))
                o.store(o.load(o.at(sdata, builder.add(s_off, done)), mask), o.at(ddata, builder.add(d_off, done)),
                        mask)
            return context.get_dummy_value()

        return types.void(src, s_off, dst, d_off, n), codegen

    return copy


# --------------------------------------------------------------------------- the loops over a chunk's tiles


def _chunk_loops(lanes):
    """The loops over a chunk's tiles (inlined into the task bodies below) for vectors of ``lanes`` channels."""
    input_tile, input_part = (_make_tile_transform(_bt4, 6, lanes, masked, [_bt4_first, _bt4_last])
                              for masked in (False, True))
    gradient_tile, gradient_part = (_make_tile_transform(_a4, 4, lanes, masked) for masked in (False, True))
    output_tile, output_part = (_make_output_tile(lanes, masked) for masked in (False, True))
    transpose_block, copy = _make_transpose(lanes), _make_copy(lanes)

    @njit(inline="always")
    def inputs(xp, first, last, TP, TQ, v, t):
        Hx, Wx, C = xp.shape[1], xp.shape[2], xp.shape[3]
        TB = v.shape[2]
        xf, vf = xp.reshape(xp.size), v.reshape(v.size)
        plane, base = TB * C, t * 36 * TB * C
        whole = C - C % lanes
        for tr in range(first, last):
            n = tr // TP
            row = (n * Hx + 4 * (tr - n * TP)) * Wx * C
            for tq in range(TQ):
                x_off, v_off = row + 4 * tq * C, base + ((tr - first) * TQ + tq) * C
                for c0 in range(0, whole, lanes):
                    input_tile(xf, x_off + c0, Wx * C, C, vf, v_off + c0, plane, lanes)
                if whole < C:
                    input_part(xf, x_off + whole, Wx * C, C, vf, v_off + whole, plane, C - whole)

    @njit(inline="always")
    def gradients(dyl, first, last, TP, TQ, border, mdy, t):
        Hd, Wd, K = dyl.shape[1], dyl.shape[2], dyl.shape[3]
        TB, Kw = mdy.shape[2], mdy.shape[3]
        df, mf = dyl.reshape(dyl.size), mdy.reshape(mdy.size)
        plane, base = TB * Kw, t * 36 * TB * Kw
        whole = K - K % lanes
        for tr in range(first, last):
            n = tr // TP
            row = (n * Hd + border + 4 * (tr - n * TP)) * Wd * K
            for tq in range(TQ):
                d_off, m_off = row + (border + 4 * tq) * K, base + ((tr - first) * TQ + tq) * Kw
                for k0 in range(0, whole, lanes):
                    gradient_tile(df, d_off + k0, Wd * K, K, mf, m_off + k0, plane, lanes)
                if whole < K:
                    gradient_part(df, d_off + whole, Wd * K, K, mf, m_off + whole, plane, K - whole)

    @njit(inline="always")
    def outputs(m, t, first, last, TP, TQ, b, y, pad, low, res, add):
        if pad < 0:
            nchw_outputs(m, t, first, last, TP, TQ, b, y, low)
            return
        TB, Kw = m.shape[2], m.shape[3]
        mf, yf, rf = m.reshape(m.size), y.reshape(y.size), res.reshape(res.size)
        plane, base = TB * Kw, t * 36 * TB * Kw
        Hp, Wp, K = y.shape[1], y.shape[2], y.shape[3]
        P, Q = Hp - 2 * pad, Wp - 2 * pad
        width = Wp * K
        whole = K - K % lanes
        for tr in range(first, last):
            n = tr // TP
            ti = tr - n * TP
            na = min(4, P - 4 * ti)
            start = n * Hp * width
            if ti == 0:  # the border next to these rows
                zero_span(yf, start, start + pad * width)
            for a in range(na):
                p0 = start + (pad + 4 * ti + a) * width
                zero_span(yf, p0, p0 + pad * K)
                zero_span(yf, p0 + (pad + Q) * K, p0 + width)
            if 4 * ti + na == P:
                zero_span(yf, start + (P + pad) * width, start + Hp * width)
            y_row = start + ((pad + 4 * ti) * Wp + pad) * K
            for tq in range(TQ):
                nb = min(4, Q - 4 * tq)
                m_off, y_off = base + ((tr - first) * TQ + tq) * Kw, y_row + 4 * tq * K
                if na == 4 and nb == 4:
                    for k0 in range(0, whole, lanes):
                        output_tile(mf, m_off + k0, plane, b, k0, yf, y_off + k0, width, K, rf, add, low, 4, 4, lanes)
                    if whole < K:
                        output_part(mf, m_off + whole, plane, b, whole, yf, y_off + whole, width, K, rf, add, low, 4,
                                    4, K - whole)
                else:  # an edge tile
                    for k0 in range(0, K, lanes):
                        output_part(mf, m_off + k0, plane, b, k0, yf, y_off + k0, width, K, rf, add, low, na, nb,
                                    min(lanes, K - k0))

    @njit(inline="always")
    def nchw_outputs(m, t, first, last, TP, TQ, b, y, low):
        """Into NCHW y, per tile row and ``lanes`` channels: the output tiles channel-last into a small buffer
        (``tiles``: 4 rows of ``width`` pixels, whole tiles), its ``lanes x lanes`` blocks transposed into a second
        one (``runs``: per channel, the 4 rows of Q pixels as in y), then each channel's rows copied to y, one run
        of contiguous numbers.  Both buffers stay in L1.  When the tiles end at the row's end (Q a multiple of
        4), the buffer's rows are as in y and its blocks run across them (8-pixel rows: half the blocks).
        (Writing each tile's runs of 4 pixels straight to y took 2.5x the time, and so did transposing straight
        to y: the ``lanes`` channels of a pixel are a whole plane apart, 4 KiB for 32 x 32 planes, so the lines
        written at once all fell in one cache set.)"""
        TB, Kw = m.shape[2], m.shape[3]
        K, P, Q = y.shape[1], y.shape[2], y.shape[3]
        mf, yf = m.reshape(m.size), y.reshape(y.size)
        plane, base = TB * Kw, t * 36 * TB * Kw
        flat = 4 * TQ == Q
        width = Q if flat else (4 * TQ + lanes - 1) // lanes * lanes
        tiles = np.empty((4 * width + lanes) * lanes, dtype=m.dtype)  # (4, width, lanes), and one block's room
        run = 4 * Q + lanes  # a channel's 4 rows of Q pixels, and room for the last block's pixels past them
        runs = np.empty(lanes * run, dtype=m.dtype)  # (lanes, run)
        for tr in range(first, last):
            n = tr // TP
            ti = tr - n * TP
            length = min(4, P - 4 * ti) * Q
            for k0 in range(0, K, lanes):
                count = min(lanes, K - k0)
                for tq in range(TQ):
                    m_off = base + ((tr - first) * TQ + tq) * Kw + k0
                    if count == lanes:
                        output_tile(mf, m_off, plane, b, k0, tiles, 4 * tq * lanes, width * lanes, lanes, tiles,
                                    False, low, 4, 4, lanes)
                    else:
                        output_part(mf, m_off, plane, b, k0, tiles, 4 * tq * lanes, width * lanes, lanes, tiles,
                                    False, low, 4, 4, count)
                if flat:
                    for q0 in range(0, length, lanes):
                        transpose_block(tiles, q0 * lanes, runs, q0, run)
                else:
                    for a in range(4):  # in this order: a block's pixels past Q are overwritten by the next row's
                        for q0 in range(0, Q, lanes):
                            transpose_block(tiles, (a * width + q0) * lanes, runs, a * Q + q0, run)
                dst = (n * K + k0) * P * Q + 4 * ti * Q
                for lane in range(count):
                    copy(runs, lane * run, yf, dst + lane * P * Q, length)

    return inputs, gradients, outputs


_inputs8, _gradients8, _outputs8 = _chunk_loops(8)
_inputs16, _gradients16, _outputs16 = _chunk_loops(16)


# The task bodies, one per width (Numba caches each function's code apart; the kernels call this process's through
# the symbol).

def _inputs_256(xp, first, last, TP, TQ, v, t):
    _inputs8(xp, first, last, TP, TQ, v, t)


def _inputs_512(xp, first, last, TP, TQ, v, t):
    _inputs16(xp, first, last, TP, TQ, v, t)


def _gradients_256(dyl, first, last, TP, TQ, border, mdy, t):
    _gradients8(dyl, first, last, TP, TQ, border, mdy, t)


def _gradients_512(dyl, first, last, TP, TQ, border, mdy, t):
    _gradients16(dyl, first, last, TP, TQ, border, mdy, t)


def _outputs_256(m, t, first, last, TP, TQ, b, y, pad, low, res, add):
    _outputs8(m, t, first, last, TP, TQ, b, y, pad, low, res, add)


def _outputs_512(m, t, first, last, TP, TQ, b, y, pad, low, res, add):
    _outputs16(m, t, first, last, TP, TQ, b, y, pad, low, res, add)


_WIDTHS = {256: (_inputs_256, _gradients_256, _outputs_256), 512: (_inputs_512, _gradients_512, _outputs_512)}

#: ``v[t, xi, (tr - first)*TQ + tq, :C] = (B^T d B)[xi]`` for the 6x6 tiles ``d = xp[n, 4*i:4*i + 6, 4*tq:4*tq + 6]``
#: of tile rows ``tr`` in ``first..last`` (``n = tr // TP``, ``i = tr % TP``) and ``tq < TQ``; xp channel-last
#: (N, Hx, Wx, C), v (T, 36, TB, C).
winograd4_inputs = task("r4 i i i i a4 i", symbol="fastcnn_winograd4_inputs_v1")(_WIDTHS[VECTOR_BITS][0])

#: ``mdy[t, xi, (tr - first)*TQ + tq, :K] = (A dY A^T)[xi]`` for the 4x4 tiles ``dY = dyl[n, border + 4*i:][:4,
#: border + 4*tq:][:, :4]`` of tile rows ``tr`` in ``first..last`` and ``tq < TQ``; dyl (N, Hd, Wd, K), mdy (T, 36,
#: TB, Kw) (columns past K are not written).
winograd4_gradients = task("r4 i i i i i a4 i", symbol="fastcnn_winograd4_gradients_v1")(_WIDTHS[VECTOR_BITS][1])

#: The output tiles ``Y = A^T M A`` of tile rows ``first..last`` from ``m[t]`` (T, 36, TB, Kw), plus ``b[k]`` (and
#: ``res``'s pixel when ``add``), raised to ``low`` where below it: into NCHW ``y`` (N, K, P, Q) when ``pad < 0``,
#: else into channel-last ``y`` (N, P + 2*pad, Q + 2*pad, K) with its zero border next to these rows (``res`` of
#: its shape).
winograd4_outputs = task("r4 i i i i i r1 a4 i f r4 b", symbol="fastcnn_winograd4_outputs_v1")(_WIDTHS[VECTOR_BITS][2])
