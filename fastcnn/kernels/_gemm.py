"""A register-blocked matrix-multiply micro-kernel for Numba code, built for the host's vectors.

LLVM's loop vectoriser does not keep a block of outputs in registers across a
reduction (it vectorises the innermost loop and spills the rest), so the
micro-kernels here are written as Numba intrinsics that emit the vector code
directly: an ``MR x LANES*NV`` block of ``c`` lives in ``MR*NV`` vector
registers for the whole reduction, and each step broadcasts ``MR`` scalars of
``a`` against ``NV`` vectors of ``b`` (``MR*NV`` fused multiply-adds for
``MR + NV`` loads).

Two sets of blocks, one per vector width (:data:`VECTOR_BITS`, chosen at
import from the host CPU, see :mod:`fastcnn.config`):

* 256 bits (AVX2, 16 vector registers): 6 x 16 blocks (8-lane vectors, 12
  accumulators: the layout of BLIS's Haswell kernel), then 4 x 8;
* 512 bits (AVX-512, 32 vector registers): 8 x 32 blocks (16-lane vectors,
  16 accumulators), then 8 x 16, then the 256-bit 4 x 8 block.

Every element of ``c`` is one chain of fused multiply-adds in the order of the
reduction, whichever block computes it, so both widths give the same bits on
columns that are a multiple of 8 (the convolutions pad theirs to that); the
last ``N % 8`` columns go through plain loops.

:func:`gemm_acc` tiles any ``M x N`` block with them.  Every operand is a
C-contiguous array addressed by flat element offsets and strides, so strided
windows of an image (the overlapping rows of a convolution) are operands
without a copy.  Nothing is checked: offsets must stay inside the arrays.

Float64 uses the same vector lengths (LLVM splits them in registers); it is
the precision of the gradient checks, not a speed target.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import VECTOR_BITS, njit
from ._tasks import task

#: float32 lanes of the widest vector the micro-kernels use (8 for AVX2, 16 for AVX-512).
LANES = VECTOR_BITS // 32


def _make_microkernel(mr, nv, lanes):
    """An intrinsic for an ``mr x lanes*nv`` block of ``c += a @ b`` with a two-level reduction.

    ``c[i*ldc + j] += sum_{u < U, l < L} a[i*sai + u*sau + l*sal] * b[u*sbu + l*sbl + j]``
    for ``i < mr``, ``j < lanes*nv``, called as
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
            vec = ir.VectorType(elem, lanes)
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
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fmuladd.v{lanes}{suffix}"
            )

            def const(v):
                return ir.Constant(i64, v)

            def vector_at(base, off):
                return builder.bitcast(builder.gep(base, [off], inbounds=True), vec.as_pointer())

            def c_at(i, v):
                return vector_at(cdata, builder.add(c_off, builder.add(builder.mul(ldc, const(i)), const(v * lanes))))

            # accumulators: allocas that LLVM promotes to registers
            acc = [[cgutils.alloca_once(builder, vec) for _ in range(nv)] for _ in range(mr)]
            for i in range(mr):
                for v in range(nv):
                    builder.store(builder.load(c_at(i, v), align=1), acc[i][v])
            zeros = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            undef = ir.Constant(vec, ir.Undefined)
            with cgutils.for_range(builder, outer) as outer_loop, cgutils.for_range(builder, length) as loop:
                u, l = outer_loop.index, loop.index
                b_row = builder.add(builder.add(b_off, builder.mul(u, sbu)), builder.mul(l, sbl))
                bv = [builder.load(vector_at(bdata, builder.add(b_row, const(v * lanes))), align=1) for v in range(nv)]
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


def _make_rows(mr, nv, lanes):
    """An inlined driver for ``M`` rows of one ``lanes*nv``-wide column block.

    Rows go ``mr`` (6 or 8) at a time, then 4, 2 and 1 for the rest: output
    widths of 7, 14 or 28 pixels still run mostly in wide blocks, with few
    variants to compile.  With ``mr = 6`` the last 8 rows go as two blocks of
    4 (eight accumulators each) rather than 6 + 2: a 2-row block's four
    chains of fused multiply-adds cannot hide the instruction's latency.
    """
    block, four, two, one = (_make_microkernel(m, nv, lanes) for m in (mr, 4, 2, 1))
    last = 8 if mr == 6 else -1  # rows left that go 4 + 4

    @njit(inline="always")
    def rows(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M):
        i = 0
        while i + mr <= M and M - i != last:
            block(c, c_off + i * ldc, ldc, a, a_off + i * sai, sai, sau, sal, b, b_off, sbu, sbl, U, L)
            i += mr
        while i + 4 <= M:
            four(c, c_off + i * ldc, ldc, a, a_off + i * sai, sai, sau, sal, b, b_off, sbu, sbl, U, L)
            i += 4
        if i + 2 <= M:
            two(c, c_off + i * ldc, ldc, a, a_off + i * sai, sai, sau, sal, b, b_off, sbu, sbl, U, L)
            i += 2
        if i < M:
            one(c, c_off + i * ldc, ldc, a, a_off + i * sai, sai, sau, sal, b, b_off, sbu, sbl, U, L)

    return rows


_rows16, _rows8 = _make_rows(6, 2, 8), _make_rows(4, 1, 8)  # 256-bit blocks
_rows32z, _rows16z = _make_rows(8, 2, 16), _make_rows(8, 1, 16)  # 512-bit blocks


def _signatures():
    """float32 and float64, every offset, stride and size int64 (``a`` and ``b`` read-only, so any array fits)."""
    i = types.int64
    sigs = []
    for dtype in (types.float32, types.float64):
        out, src = types.Array(dtype, 1, "C"), types.Array(dtype, 1, "C", readonly=True)
        sigs.append(types.void(out, i, i, src, i, i, i, i, src, i, i, i, i, i, i, i))
    return sigs


@njit(inline="always")
def _plain_columns(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M, N, j):
    """Columns ``j..N`` of :func:`gemm_acc` with plain loops (fewer than 8)."""
    for i in range(M):
        for jj in range(j, N):
            s = c[c_off + i * ldc + jj]
            for u in range(U):
                for l in range(L):
                    s += a[a_off + i * sai + u * sau + l * sal] * b[b_off + u * sbu + l * sbl + jj]
            c[c_off + i * ldc + jj] = s


def _gemm_acc_256(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M, N):
    """:func:`gemm_acc` with 256-bit vectors: columns 16, then 8, at a time."""
    j = 0
    while j + 16 <= N:
        _rows16(c, c_off + j, ldc, a, a_off, sai, sau, sal, b, b_off + j, sbu, sbl, U, L, M)
        j += 16
    if j + 8 <= N:
        _rows8(c, c_off + j, ldc, a, a_off, sai, sau, sal, b, b_off + j, sbu, sbl, U, L, M)
        j += 8
    _plain_columns(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M, N, j)


def _gemm_acc_512(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M, N):
    """:func:`gemm_acc` with 512-bit vectors: columns 32, then 16, then 8 (256-bit), at a time."""
    j = 0
    while j + 32 <= N:
        _rows32z(c, c_off + j, ldc, a, a_off, sai, sau, sal, b, b_off + j, sbu, sbl, U, L, M)
        j += 32
    if j + 16 <= N:
        _rows16z(c, c_off + j, ldc, a, a_off, sai, sau, sal, b, b_off + j, sbu, sbl, U, L, M)
        j += 16
    if j + 8 <= N:
        _rows8(c, c_off + j, ldc, a, a_off, sai, sau, sal, b, b_off + j, sbu, sbl, U, L, M)
        j += 8
    _plain_columns(c, c_off, ldc, a, a_off, sai, sau, sal, b, b_off, sbu, sbl, U, L, M, N, j)


_WIDTHS = {256: _gemm_acc_256, 512: _gemm_acc_512}


def compile_gemm_acc(bits):
    """The compiled :func:`gemm_acc` for ``bits``-wide vectors (256 or 512; 512 needs AVX-512 on the host).

    Import compiles the one for :data:`VECTOR_BITS` (``gemm_acc``); tests
    compile the other to check both widths give the same numbers.
    """
    # explicit signatures: every kernel calls the same two compilations (one
    # per dtype; without them each call site's mix of literal and int64
    # arguments would be compiled anew), which keeps the first-ever compile short
    return njit(_signatures())(_WIDTHS[bits])


# ---------------------------------------------------------------------------
# gemm_call: gemm_acc's compiled code, called through a fixed symbol
#
# A kernel that calls gemm_acc normally links gemm_acc's LLVM module into its
# own and compiles that code to machine code again (with LLVM's inlining and
# loop passes: about 3 s per calling kernel and dtype).  The kernels call
# gemm_call instead, a task body (fastcnn.kernels._tasks) that emits a plain
# call to a symbol registered for this process's compiled gemm_acc: its code
# is compiled (or loaded from the cache) once per dtype, on first use.  The
# names are fixed, not Numba's per-process mangled names, so kernels loaded
# from Numba's cache in a later process find them (the kernel dispatcher
# registers the body before it loads a kernel that names gemm_call); the
# version in the name must change whenever gemm_acc's signature does.

#: :func:`gemm_acc` (same arguments) inside kernels, called through its symbol; see the comment above.
gemm_call = task("a1 i i r1 i i i i r1 i i i i i i i", symbol="fastcnn_gemm_acc_v1")(_WIDTHS[VECTOR_BITS])

#: ``c[c_off + i*ldc + j] += sum_{u, l} a[a_off + i*sai + u*sau + l*sal] * b[b_off + u*sbu + l*sbl + j]``
#: for ``i < M``, ``j < N``, ``u < U``, ``l < L`` (``U = 1`` for a plain matrix
#: product); ``a``, ``b`` and ``c`` are flat (1-D, contiguous) arrays of one
#: float dtype, addressed by element offsets.  Called from Python (tests) or,
#: in kernels, through :func:`gemm_call`.
gemm_acc = gemm_call._fastcnn_task.dispatcher
