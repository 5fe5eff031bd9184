"""A register-blocked matrix-multiply micro-kernel for Numba code.

LLVM's loop vectoriser does not keep a block of outputs in registers across a
reduction (it vectorises the innermost loop and spills the rest), so the
micro-kernels here are written as Numba intrinsics that emit the vector code
directly: an ``MR x 8*NV`` block of ``c`` lives in ``MR*NV`` vector registers
for the whole reduction, and each step broadcasts ``MR`` scalars of ``a``
against ``NV`` vectors of ``b`` (``MR*NV`` fused multiply-adds for
``MR + NV`` loads).  The 4 x 16 kernel runs at about the machine's peak on
one core for float32 (AVX2: 8 lanes).

:func:`gemm_acc` tiles any ``M x N`` block with them and finishes the last
columns with plain loops.  Every operand is a C-contiguous array addressed by
flat element offsets and strides, so strided windows of an image (the
overlapping rows of a convolution) are operands without a copy.  Nothing is
checked: offsets must stay inside the arrays.

Float64 uses 8-lane vectors too (LLVM splits them in two registers); it is the
precision of the gradient checks, not a speed target.
"""

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import njit

LANES = 8


def _make_microkernel(mr, nv):
    """An intrinsic for an ``mr x 8*nv`` block of ``c += a @ b`` with a two-level reduction.

    ``c[i*ldc + j] += sum_{u < U, l < L} a[i*sai + u*sau + l*sal] * b[u*sbu + l*sbl + j]``
    for ``i < mr``, ``j < 8*nv``, called as
    ``kernel(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L)``;
    ``*_off`` are flat element offsets of element (0, 0) of each operand.  The
    outer level (u) lets a convolution sum over kernel rows, which are not
    evenly spaced from the windows' last element, without leaving registers.
    """

    @intrinsic
    def microkernel(typingctx, c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L):
        arrays = (c, a, b)
        ints = (c_off, ldc, a_off, sai, sau, sal, b_off, sbu, sbl, U, L)
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in arrays):
            return None
        if not c.dtype == a.dtype == b.dtype or c.dtype not in (types.float32, types.float64):
            return None
        if not all(isinstance(t, types.Integer) for t in ints):
            return None
        sig = types.void(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L)

        def codegen(context, builder, signature, args):
            sig_args = signature.args
            elem = context.get_data_type(sig_args[0].dtype)
            vec = ir.VectorType(elem, LANES)
            i64 = ir.IntType(64)

            def intp(pos):
                return context.cast(builder, args[pos], sig_args[pos], types.intp)

            def data(pos):
                return context.make_array(sig_args[pos])(context, builder, value=args[pos]).data

            cdata, adata, bdata = data(0), data(3), data(8)
            c_off, ldc, a_off, sai, sau, sal, b_off, sbu, sbl, outer, length = (
                intp(k) for k in (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13)
            )
            suffix = "f32" if sig_args[0].dtype == types.float32 else "f64"
            fmuladd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fmuladd.v{LANES}{suffix}"
            )

            def const(v):
                return ir.Constant(i64, v)

            def vector_at(base, off):
                return builder.bitcast(builder.gep(base, [off], inbounds=True), vec.as_pointer())

            def c_at(i, v):
                return vector_at(cdata, builder.add(c_off, builder.add(builder.mul(ldc, const(i)), const(v * LANES))))

            # accumulators: allocas that LLVM promotes to registers
            acc = [[cgutils.alloca_once(builder, vec) for _ in range(nv)] for _ in range(mr)]
            for i in range(mr):
                for v in range(nv):
                    builder.store(builder.load(c_at(i, v), align=1), acc[i][v])
            zeros = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
            undef = ir.Constant(vec, ir.Undefined)
            with cgutils.for_range(builder, outer) as outer_loop, cgutils.for_range(builder, length) as loop:
                u, l = outer_loop.index, loop.index
                b_row = builder.add(builder.add(b_off, builder.mul(u, sbu)), builder.mul(l, sbl))
                bv = [builder.load(vector_at(bdata, builder.add(b_row, const(v * LANES))), align=1) for v in range(nv)]
                a_col = builder.add(builder.add(a_off, builder.mul(u, sau)), builder.mul(l, sal))
                for i in range(mr):
                    scalar = builder.load(builder.gep(adata, [builder.add(a_col, builder.mul(sai, const(i)))], inbounds=True))
                    splat = builder.shuffle_vector(
                        builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0)), undef, zeros
                    )
                    for v in range(nv):
                        builder.store(builder.call(fmuladd, [splat, bv[v], builder.load(acc[i][v])]), acc[i][v])
            for i in range(mr):
                for v in range(nv):
                    builder.store(builder.load(acc[i][v]), c_at(i, v), align=1)
            return context.get_dummy_value()

        return sig, codegen

    return microkernel


def _make_rows(nv):
    """An inlined driver for ``M`` rows of one ``8*nv``-wide column block.

    Rows go 4 at a time, the last 0-3 one at a time: fewer variants compile
    faster, and the convolutions' row counts (output widths) are mostly
    multiples of 4.
    """
    block, single = _make_microkernel(4, nv), _make_microkernel(1, nv)

    @njit(inline="always")
    def rows(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M):
        i = 0
        while i + 4 <= M:
            block(c, c_off + i * ldc, ldc, a, a_off + i * sai, sai, sau, sal, b, b_off, sbu, sbl, U, L)
            i += 4
        while i < M:
            single(c, c_off + i * ldc, ldc, a, a_off + i * sai, sai, sau, sal, b, b_off, sbu, sbl, U, L)
            i += 1

    return rows


_rows16, _rows8 = _make_rows(2), _make_rows(1)


def _signatures():
    """float32 and float64, every offset, stride and size int64 (``a`` and ``b`` read-only, so any array fits)."""
    i = types.int64
    sigs = []
    for dtype in (types.float32, types.float64):
        out, src = types.Array(dtype, 1, "C"), types.Array(dtype, 1, "C", readonly=True)
        sigs.append(types.void(out, i, i, src, i, i, i, i, src, i, i, i, i, i, i, i))
    return sigs


@njit(_signatures())
def gemm_acc(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M, N):
    """``c[c_off + i*ldc + j] += sum_{u, l} a[a_off + i*sai + u*sau + l*sal] * b[b_off + u*sbu + l*sbl + j]``.

    For ``i < M``, ``j < N``, ``u < U``, ``l < L`` (``U = 1`` for a plain
    matrix product); ``a``, ``b`` and ``c`` are flat (1-D, contiguous) arrays
    of one float dtype, addressed by element offsets.  Columns go 16, then 8,
    at a time through the micro-kernels; the last ``N % 8`` with plain loops.

    A function of its own, not inlined, with explicit signatures: every
    kernel calls the same two compilations (one per dtype; without the
    signatures each call site's mix of literal and int64 arguments would be
    compiled anew), which keeps the first-ever compile short.
    """
    j = 0
    while j + 16 <= N:
        _rows16(c, c_off + j, ldc, a, a_off, sai, sau, sal, b, b_off + j, sbu, sbl, U, L, M)
        j += 16
    if j + 8 <= N:
        _rows8(c, c_off + j, ldc, a, a_off, sai, sau, sal, b, b_off + j, sbu, sbl, U, L, M)
        j += 8
    for i in range(M):
        for jj in range(j, N):
            s = c[c_off + i * ldc + jj]
            for u in range(U):
                for l in range(L):
                    s += a[a_off + i * sai + u * sau + l * sal] * b[b_off + u * sbu + l * sbl + jj]
            c[c_off + i * ldc + jj] = s


# ---------------------------------------------------------------------------
# gemm_call: gemm_acc's compiled code, called through a fixed symbol
#
# A kernel that calls gemm_acc normally links gemm_acc's LLVM module into its
# own and compiles that code to machine code again (with LLVM's inlining and
# loop passes: about 3 s per calling kernel and dtype).  The kernels call
# gemm_call instead, which emits a plain call to a symbol registered here for
# this process's compiled gemm_acc: its code is compiled (or loaded from the
# cache) once.  The names are fixed, not Numba's per-process mangled names, so
# kernels loaded from Numba's cache in a later process find them; the version
# in the name must change whenever gemm_acc's signature does.

_SYMBOLS = {}


def _register_symbols():
    for argtypes in gemm_acc.signatures:
        dtype = argtypes[0].dtype
        name = f"fastcnn_gemm_acc_v1_{dtype}"
        cres = gemm_acc.overloads[argtypes]
        llvm.add_symbol(name, cres.library.get_pointer_to_function(cres.fndesc.mangled_name))
        _SYMBOLS[dtype] = (name, tuple(argtypes))


_register_symbols()


@intrinsic
def gemm_call(typingctx, c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M, N):
    """:func:`gemm_acc` (same arguments), called through its registered symbol; see the comment above."""
    if not isinstance(c, types.Array) or c.dtype not in _SYMBOLS:
        return None
    name, target = _SYMBOLS[c.dtype]
    sig = types.void(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M, N)

    def codegen(context, builder, signature, args):
        # ints to int64, arrays to gemm_acc's (read-only a and b) array types
        values = [context.cast(builder, v, have, want) for v, have, want in zip(args, signature.args, target)]
        fnty = context.call_conv.get_function_type(types.void, target)
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        context.call_conv.call_function(builder, fn, types.void, target, values)
        return context.get_dummy_value()

    return sig, codegen
