"""Small ``@njit`` helpers shared by the raw kernel modules (inlined where they are called).

One home for loop idioms that several kernel variants use, so no variant
module imports from another: the output size of a convolution (the formula
of :mod:`fastcnn._shapes`, compiled), the valid output range of a kernel tap
(hoisting padding tests out of inner loops), zeroing a span with one
memset, 8 x 8-tiled transposes (of 2-D views; of flat arrays with vector
shuffles, for the layout copies), vector moves of 8 and 4 numbers, and the
stack sizes and output copies of the stacked depthwise kernels.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._shapes import conv_output_size as _conv_output_size
from ..config import njit

#: ``_shapes.conv_output_size`` (the one home of the formula) compiled for use inside kernels.
conv_output_size = njit(inline="always")(_conv_output_size)


@njit(inline="always")
def valid_range(tap, pad, stride, size, out_size):
    """Output indices ``[lo, hi)`` whose input index ``o*stride - pad + tap`` lies in ``[0, size)``.

    Hoisting this range out of the inner loop leaves it free of bounds tests.
    """
    start = pad - tap
    lo = 0 if start <= 0 else (start + stride - 1) // stride
    last = size - 1 + pad - tap
    hi = 0 if last < 0 else min(out_size, last // stride + 1)
    return lo, max(lo, hi)


@intrinsic
def zero_span(typingctx, flat, start, stop):
    """``flat[start:stop] = 0`` (nothing when ``stop <= start``) for a C-contiguous 1-D array: one ``memset``.

    Not a loop: a loop over ``range(start, stop)`` with offsets the compiler
    cannot prove non-negative keeps Numba's negative-index wraparound, and
    LLVM vectorised it into AVX-512 scatters, one address per lane (the
    zeroing of the Winograd products took 9 % of a resnet_small training step).
    Not ``flat[start:stop] = 0`` either: inside a ``prange`` body that is a
    nested parallel loop, and a slice is a view whose reference count is an
    atomic update of the parent's shared counter.
    """
    if not (isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C"):
        return None
    if not (isinstance(start, types.Integer) and isinstance(stop, types.Integer)):
        return None
    sig = types.void(flat, start, stop)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, value=args[0])
        first = context.cast(builder, args[1], signature.args[1], types.intp)
        end = context.cast(builder, args[2], signature.args[2], types.intp)
        count = builder.sub(end, first)
        with builder.if_then(builder.icmp_signed(">", count, ir.Constant(count.type, 0))):
            itemsize = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
            start_ptr = builder.gep(array.data, [first], inbounds=True)
            cgutils.memset(builder, start_ptr, builder.mul(count, ir.Constant(count.type, itemsize)), 0)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def transpose_into(src, dst):
    """``dst[b, a] = src[a, b]`` for 2-D views, in 8 x 8 tiles.

    A tile's reads and writes stay in a few cache lines and LLVM turns the
    fixed-size loops into vector shuffles: 2-3x faster than a plain loop for
    the input copy, where one side strides through memory by whole image
    planes.  (Writing results back from the kernels' small buffers, plain
    loops are as fast and compile in half the time.)
    """
    A, B = src.shape
    a0 = 0
    while a0 + 8 <= A:
        b0 = 0
        while b0 + 8 <= B:
            for bb in range(8):
                for aa in range(8):
                    dst[b0 + bb, a0 + aa] = src[a0 + aa, b0 + bb]
            b0 += 8
        for b in range(b0, B):
            for aa in range(8):
                dst[b, a0 + aa] = src[a0 + aa, b]
        a0 += 8
    for a in range(a0, A):
        for b in range(B):
            dst[b, a] = src[a, b]


@intrinsic
def _transpose8(typingctx, dst, d, ds, src, s, ss):
    """``dst[d + b*ds + a] = src[s + a*ss + b]`` for ``a, b < 8`` (1-D C-contiguous arrays of one dtype; no bounds
    checks): eight vector loads, 24 two-input shuffles (the unpack / shuffle / lane-permute network of an 8 x 8
    transpose) and eight vector stores, where indexing views moved one number at a time."""
    if not (_same_vectors(dst, src) and all(isinstance(t, types.Integer) for t in (d, ds, s, ss))):
        return None

    def codegen(context, builder, signature, values):
        args = signature.args
        align = context.get_abi_sizeof(context.get_data_type(args[0].dtype))

        def at(pos, start, step, k):  # vector k of operand pos: start + k*step
            offset = builder.add(context.cast(builder, values[start], args[start], types.intp),
                                 builder.mul(context.cast(builder, values[step], args[step], types.intp),
                                             ir.Constant(ir.IntType(64), k)))
            return _vector_pointer(context, builder, args[pos], values[pos], types.intp, offset, 8)

        def shuffle(x, y, mask):
            return builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(ir.IntType(32), 8), mask))

        rows = [builder.load(at(3, 4, 5, a), align=align) for a in range(8)]
        pairs = [shuffle(rows[a], rows[a + 1], m) for a in range(0, 8, 2)
                 for m in ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])]
        low, high = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        quads = [shuffle(pairs[h + k], pairs[h + 2 + k], m) for h in (0, 4) for k in (0, 1) for m in (low, high)]
        for b in range(4):  # quads[b] and quads[4 + b] hold columns b and b + 4 of rows 0-3 and 4-7
            builder.store(shuffle(quads[b], quads[4 + b], [0, 1, 2, 3, 8, 9, 10, 11]), at(0, 1, 2, b), align=align)
            builder.store(shuffle(quads[b], quads[4 + b], [4, 5, 6, 7, 12, 13, 14, 15]), at(0, 1, 2, b + 4),
                          align=align)
        return context.get_dummy_value()

    return types.void(dst, d, ds, src, s, ss), codegen


@njit(inline="always")
def transpose_flat(dst, d, ds, src, s, ss, A, B):
    """``dst[d + b*ds + a] = src[s + a*ss + b]`` for ``a < A``, ``b < B`` (1-D C-contiguous arrays, offsets and row
    strides in elements): an ``A x B`` block moved to ``B x A``, 8 x 8 tiles at a time (:func:`_transpose8`), the
    edges number by number.  No views: nothing is reference-counted inside the loops."""
    a0 = 0
    while a0 + 8 <= A:
        b0 = 0
        while b0 + 8 <= B:
            _transpose8(dst, d + b0 * ds + a0, ds, src, s + a0 * ss + b0, ss)
            b0 += 8
        for b in range(b0, B):
            for a in range(a0, a0 + 8):
                dst[d + b * ds + a] = src[s + a * ss + b]
        a0 += 8
    for a in range(a0, A):
        for b in range(B):
            dst[d + b * ds + a] = src[s + a * ss + b]


def planes_per_stack(pixels, plane, C):
    """How many whole planes of ``plane`` pixels a stack of ``pixels`` pixels holds, at least 1 and at most ``C``:
    the stack size of the stacked depthwise kernels (plain Python: the plans size their scratch with it)."""
    return max(1, min(C, pixels // plane))


@njit(inline="always")
def fill_pixel_weights(s, base, L, wf, b, c0, g, m, plane, rows):
    """The per-pixel weight copies of the stacked depthwise kernels, for the g channels ``c0..`` of a stack.

    For each of the m filters j of each channel ``c0 + k`` and each tap ``r < rows`` (9, or 10 with the bias as
    tap 9), the ``plane`` numbers ``s[base + (j*rows + r)*L + k*plane:][:plane]`` are set to ``wf[(c0 + k)*m + j,
    r]`` (``b[(c0 + k)*m + j]`` for r = 9): each tap's weight repeated over its plane's pixels, so that the
    kernel's loop over a stack reads them as one more vector stream.
    """
    for j in range(m):
        for k in range(g):
            kk = (c0 + k) * m + j
            for r in range(rows):
                value = wf[kk, r] if r < 9 else b[kk]
                start = base + (j * rows + r) * L + k * plane
                row = s[start:start + plane]
                for i in range(plane):
                    row[i] = value


@njit(inline="always")
def copy_stack_outputs(yf, o, n, c0, g, m, j, plane):
    """``yf[n]``'s output planes ``(c0 + k)*m + j`` for ``k < g`` from a stack's outputs ``o`` (``plane``
    pixels each, in stack order): a stacked depthwise kernel's outputs for channel multiplier index ``j``."""
    for k in range(g):
        dst = yf[n, ((c0 + k) * m + j) * plane:((c0 + k) * m + j + 1) * plane]
        for i in range(plane):
            dst[i] = o[k * plane + i]


def _vector_pointer(context, builder, array_type, array, index_type, index, width):
    """In an intrinsic's codegen: a pointer to ``width`` numbers of the 1-D array from ``index`` on, as a vector."""
    element = context.get_data_type(array_type.dtype)
    data = context.make_array(array_type)(context, builder, array).data
    p = builder.gep(data, [context.cast(builder, index, index_type, types.intp)])
    return builder.bitcast(p, ir.VectorType(element, width).as_pointer())


def _same_vectors(*arrays):
    """Whether the intrinsics below take these argument types: 1-D C-contiguous arrays of one dtype."""
    return (all(isinstance(a, types.Array) for a in arrays) and len({a.dtype for a in arrays}) == 1
            and all(a.ndim == 1 and a.layout == "C" for a in arrays))


def vector_move(width):
    """An intrinsic ``move(dst, d, src, s)``: ``dst[d:d + width] = src[s:s + width]`` as one vector load and store
    (1-D C-contiguous arrays of one dtype; no bounds checks).  Numba's LLVM runs without the SLP vectoriser, so
    a fixed 8-number copy written as a loop becomes 8 scalar moves; the stacked depthwise kernels split rows
    into even and odd ones with these."""

    @intrinsic
    def move(typingctx, dst, d, src, s):
        if not _same_vectors(dst, src):
            return None

        def codegen(context, builder, signature, values):
            args = signature.args
            align = context.get_abi_sizeof(context.get_data_type(args[0].dtype))
            source = _vector_pointer(context, builder, args[2], values[2], args[3], values[3], width)
            target = _vector_pointer(context, builder, args[0], values[0], args[1], values[1], width)
            builder.store(builder.load(source, align=align), target, align=align)
            return context.get_dummy_value()

        return types.void(dst, d, src, s), codegen

    return move


def vector_zip(width):
    """An intrinsic ``zip(dst, d, a, i, b, j)``: ``dst[d + 2k] = a[i + k]`` and ``dst[d + 2k + 1] = b[j + k]`` for
    ``k < width``, as two vector loads, one shuffle and one store (1-D C-contiguous arrays of one dtype; no
    bounds checks).  LLVM runs a loop that stores to ``2k`` and ``2k + 1`` scalar: the stride-2 depthwise input
    gradient's loop writing dx's rows interleaved that way took 3.3 ns per float32 pixel pair, writing them
    planar and zipping 1.8 ns."""

    @intrinsic
    def zip_(typingctx, dst, d, a, i, b, j):
        if not _same_vectors(dst, a, b):
            return None

        def codegen(context, builder, signature, values):
            args = signature.args
            align = context.get_abi_sizeof(context.get_data_type(args[0].dtype))
            va = builder.load(_vector_pointer(context, builder, args[2], values[2], args[3], values[3], width),
                              align=align)
            vb = builder.load(_vector_pointer(context, builder, args[4], values[4], args[5], values[5], width),
                              align=align)
            mask = ir.Constant(ir.VectorType(ir.IntType(32), 2 * width),
                               [k // 2 + (k % 2) * width for k in range(2 * width)])
            target = _vector_pointer(context, builder, args[0], values[0], args[1], values[1], 2 * width)
            builder.store(builder.shuffle_vector(va, vb, mask), target, align=align)
            return context.get_dummy_value()

        return types.void(dst, d, a, i, b, j), codegen

    return zip_


#: Moves of 8 and 4 numbers (:func:`vector_move`).
move8 = vector_move(8)
move4 = vector_move(4)
