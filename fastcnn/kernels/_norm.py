"""Raw batch-normalisation kernels: caller-allocated outputs, no checks.

Every kernel works on a 3-D view ``x (N, C, L)``: BatchNorm2d passes
``(N, C, H*W)``, BatchNorm1d ``(N, C, 1)`` or ``(N, C, L)``.  A channel's
statistics run over its ``M = N*L`` elements.  Per-channel vectors (weight,
bias, mean, var, inv_std, dweight, dbias) are ``(C,)``; pass ones and zeros
for weight and bias when there is no affine transform.  ``x``, ``dy``, ``y``
and ``dx`` must be C-contiguous (the checked functions pass such arrays).

The statistics and the gradient reductions run in a prange over channels, so
each task owns its channel's sums and writes nothing another task reads.  Sums
accumulate in the array dtype (float32 stays float32), two-level: a partial sum
per (n, c) row of L elements, then the N partials, so the rounding error grows
with ``L + N`` rather than ``N*L``; the variance is a second pass over
``(x - mean)**2`` (no cancellation from ``E[x^2] - E[x]^2``).

Every sum is added in one fixed order: a row goes 8 numbers (a step) at a
time into 4 vectors of 8 lane sums (step ``i`` into vector ``i % 4``, the last
``steps % 4`` into vector 0; explicit vector code, :func:`_make_lane_sums`),
the 4 vectors are added pairwise, then the 8 lanes pairwise, then the last
``L % 8`` numbers one by one; the kernels are compiled without fast-math
flags.  A reduction left to LLVM's vectoriser (fast-math
``reassoc``) is ordered however the optimiser chose, and a prange kernel
loaded from Numba's cache runs differently optimised code than the same kernel
compiled in the process: the two summed differently, and a seeded fit gave
different weights depending on the state of the cache.
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import njit, njit_ordered, pjit_ordered
from ._loops import zero_span
from ._tasks import parallel_tasks, task

#: Numbers per lane-sum step (one AVX2 vector of float32).
LANES = 8
#: Independent vector sums per row (hides the latency of the vector adds).
UNROLL = 4


def _make_lane_sums(kind):
    """An intrinsic adding ``vectors`` steps of 8 numbers into the 8 lane sums held in ``acc``, in a fixed order.

    Called as ``kernel(acc, a, a_off, b, b_off, m, s, vectors)`` on flat
    C-contiguous arrays of one float dtype; step ``i`` reads ``a[a_off + 8*i + j]``
    (and ``b[b_off + 8*i + j]``) for lane ``j`` and adds, into ``UNROLL``
    separate vector sums (the module docstring gives the order):

    * ``"sum"``: ``acc[j] += a``
    * ``"squares"``: ``acc[j] += (a - m)**2``
    * ``"gradients"``: ``acc[j] += b`` and ``acc[8 + j] += b * ((a - m) * s)``
    * ``"masked_gradients"``: as ``"gradients"`` with ``b`` read as 0 where
      ``c[b_off + 8*i + j] > 0`` is false (``c``, a ninth argument, is the
      output of a ReLU that followed: its gradient mask)

    The vector instructions carry no fast-math flags, so no optimisation
    reorders or fuses them: every compiled copy gives the same sums.
    """
    pairs = 1 if kind in ("sum", "squares") else 2
    masked = kind == "masked_gradients"

    def lane_sums(typingctx, acc, a, a_off, b, b_off, m, s, vectors, c=None):
        arrays = (acc, a, b) + ((c,) if masked else ())
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in arrays):
            return None
        if any(t.dtype != acc.dtype for t in arrays) or acc.dtype not in (types.float32, types.float64):
            return None
        if not all(isinstance(t, types.Integer) for t in (a_off, b_off, vectors)):
            return None
        if not all(isinstance(t, (types.Float, types.Integer)) for t in (m, s)):
            return None
        sig = types.void(*((acc, a, a_off, b, b_off, m, s, vectors) + ((c,) if masked else ())))

        def codegen(context, builder, signature, args):
            sig_args = signature.args
            dtype = sig_args[0].dtype
            vec = ir.VectorType(context.get_data_type(dtype), LANES)

            def data(pos):
                return context.make_array(sig_args[pos])(context, builder, value=args[pos]).data

            def intp(pos):
                return context.cast(builder, args[pos], sig_args[pos], types.intp)

            def splat(pos):
                value = context.cast(builder, args[pos], sig_args[pos], dtype)
                undef = ir.Constant(vec, ir.Undefined)
                first = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
                lane0 = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
                return builder.shuffle_vector(first, undef, lane0)

            def vector_at(base, off):
                return builder.bitcast(builder.gep(base, [off], inbounds=True), vec.as_pointer())

            acc_data, a_data, b_data = data(0), data(1), data(3)
            c_data = data(8) if masked else None
            a_off, b_off, count = intp(2), intp(4), intp(7)
            mv, sv = splat(5), splat(6)
            intp_t = a_off.type

            def const(v):
                return ir.Constant(intp_t, v)

            # UNROLL independent vector sums (step i goes to sum i % UNROLL, the
            # last count % UNROLL steps to sum 0), so consecutive adds do not wait
            # on each other; acc's lanes start sum 0, then the sums are added pairwise
            sums = [[cgutils.alloca_once(builder, vec) for _ in range(UNROLL)] for _ in range(pairs)]
            zeros = ir.Constant(vec, [ir.Constant(vec.element, 0)] * LANES)
            for k in range(pairs):
                builder.store(builder.load(vector_at(acc_data, const(k * LANES)), align=1), sums[k][0])
                for u in range(1, UNROLL):
                    builder.store(zeros, sums[k][u])

            def add_step(index, u):
                offset = builder.mul(index, const(LANES))
                av = builder.load(vector_at(a_data, builder.add(a_off, offset)), align=1)
                if kind == "sum":
                    terms = [av]
                elif kind == "squares":
                    d = builder.fsub(av, mv)
                    terms = [builder.fmul(d, d)]
                else:
                    bv = builder.load(vector_at(b_data, builder.add(b_off, offset)), align=1)
                    if masked:
                        cv = builder.load(vector_at(c_data, builder.add(b_off, offset)), align=1)
                        bv = builder.select(builder.fcmp_ordered(">", cv, zeros), bv, zeros)
                    terms = [bv, builder.fmul(bv, builder.fmul(builder.fsub(av, mv), sv))]
                for k, term in enumerate(terms):
                    builder.store(builder.fadd(builder.load(sums[k][u]), term), sums[k][u])

            groups = builder.udiv(count, const(UNROLL))
            with cgutils.for_range(builder, groups) as loop:
                for u in range(UNROLL):
                    add_step(builder.add(builder.mul(loop.index, const(UNROLL)), const(u)), u)
            with cgutils.for_range(builder, builder.sub(count, builder.mul(groups, const(UNROLL)))) as loop:
                add_step(builder.add(builder.mul(groups, const(UNROLL)), loop.index), 0)
            for k in range(pairs):
                v = [builder.load(a) for a in sums[k]]
                total = builder.fadd(builder.fadd(v[0], v[1]), builder.fadd(v[2], v[3]))  # UNROLL is 4
                builder.store(total, vector_at(acc_data, const(k * LANES)), align=1)
            return context.get_dummy_value()

        return sig, codegen

    if masked:
        def with_mask(typingctx, acc, a, a_off, b, b_off, m, s, vectors, c):
            return lane_sums(typingctx, acc, a, a_off, b, b_off, m, s, vectors, c)

        return intrinsic(with_mask)

    def unmasked(typingctx, acc, a, a_off, b, b_off, m, s, vectors):
        return lane_sums(typingctx, acc, a, a_off, b, b_off, m, s, vectors)

    return intrinsic(unmasked)


_sum_lanes = _make_lane_sums("sum")
_squares_lanes = _make_lane_sums("squares")
_gradient_lanes = _make_lane_sums("gradients")
_masked_gradient_lanes = _make_lane_sums("masked_gradients")


@njit(inline="always")
def _lanes_total(acc, first):
    """``acc[first:first + 8]`` added pairwise, in a fixed order."""
    a = acc[first:first + LANES]
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))


@njit(inline="always")
def _row_sum(acc, flat, off, L):
    """Sum of ``flat[off:off + L]`` in the fixed order of the module docstring."""
    total = flat.dtype.type(0)
    vectors = L // LANES
    if vectors > 0:  # (short rows, BatchNorm1d's, skip the lanes)
        zero_span(acc, 0, LANES)
        _sum_lanes(acc, flat, off, flat, off, 0, 0, vectors)
        total = _lanes_total(acc, 0)
    for l in range(vectors * LANES, L):
        total += flat[off + l]
    return total


@njit(inline="always")
def _row_squares(acc, flat, off, L, mu):
    """Sum of ``(flat[off:off + L] - mu)**2`` in the fixed order of the module docstring."""
    total = flat.dtype.type(0)
    vectors = L // LANES
    if vectors > 0:
        zero_span(acc, 0, LANES)
        _squares_lanes(acc, flat, off, flat, off, mu, 0, vectors)
        total = _lanes_total(acc, 0)
    for l in range(vectors * LANES, L):
        d = flat[off + l] - mu
        total += d * d
    return total


@njit(inline="always")
def _row_gradients(acc, dy_flat, x_flat, off, L, mu, s):
    """``(sum(dy), sum(dy * (x - mu) * s))`` over one row, in the fixed order of the module docstring."""
    sum_dy = sum_dy_xhat = dy_flat.dtype.type(0)
    vectors = L // LANES
    if vectors > 0:
        zero_span(acc, 0, 2 * LANES)
        _gradient_lanes(acc, x_flat, off, dy_flat, off, mu, s, vectors)
        sum_dy = _lanes_total(acc, 0)
        sum_dy_xhat = _lanes_total(acc, LANES)
    for l in range(vectors * LANES, L):
        g = dy_flat[off + l]
        sum_dy += g
        sum_dy_xhat += g * ((x_flat[off + l] - mu) * s)
    return sum_dy, sum_dy_xhat


@njit(inline="always")
def _row_masked_gradients(acc, dy_flat, x_flat, y_flat, off, L, mu, s):
    """:func:`_row_gradients` with ``dy`` read as 0 where ``y_flat`` (a following ReLU's output) is not positive."""
    zero = dy_flat.dtype.type(0)
    sum_dy = sum_dy_xhat = zero
    vectors = L // LANES
    if vectors > 0:
        zero_span(acc, 0, 2 * LANES)
        _masked_gradient_lanes(acc, x_flat, off, dy_flat, off, mu, s, vectors, y_flat)
        sum_dy = _lanes_total(acc, 0)
        sum_dy_xhat = _lanes_total(acc, LANES)
    for l in range(vectors * LANES, L):
        g = dy_flat[off + l] if y_flat[off + l] > zero else zero
        sum_dy += g
        sum_dy_xhat += g * ((x_flat[off + l] - mu) * s)
    return sum_dy, sum_dy_xhat


@task("r3 r1 r1 f a3 a1 a1 a1 b a2 i", ordered=True)
def _forward_train_channel(x, weight, bias, eps, y, mean, var, inv_std, relu, lanes, c):
    """Channel c of :func:`batch_norm_forward_train_kernel` (``lanes[c]``: its lane sums)."""
    N, C, L = x.shape
    dt = y.dtype.type
    zero = dt(0)
    one = dt(1)
    inv_m = one / dt(N * L)
    flat = x.reshape(x.size)
    acc = lanes[c]
    total = zero
    for n in range(N):
        total += _row_sum(acc, flat, (n * C + c) * L, L)
    mu = total * inv_m
    total = zero
    for n in range(N):
        total += _row_squares(acc, flat, (n * C + c) * L, L, mu)
    v = total * inv_m
    s = one / np.sqrt(v + eps)
    mean[c] = mu
    var[c] = v
    inv_std[c] = s
    scale = s * weight[c]
    shift = bias[c]
    if relu:
        for n in range(N):
            for l in range(L):
                v = (x[n, c, l] - mu) * scale + shift
                y[n, c, l] = zero if v < zero else v
    else:
        for n in range(N):
            for l in range(L):
                y[n, c, l] = (x[n, c, l] - mu) * scale + shift


_forward_train_channels = parallel_tasks(_forward_train_channel)


@njit_ordered
def batch_norm_forward_train_kernel(x, weight, bias, eps, y, mean, var, inv_std, relu=False):
    """Training-mode forward: batch statistics, then ``y = (x - mean) * inv_std * weight + bias``.

    With ``relu`` True, a ReLU that follows runs in the same pass: ``y`` is
    ``max(that, 0)`` (the bits of :func:`~fastcnn.kernels.relu_forward_kernel`
    applied after), and the backward kernel takes ``y`` as ``relu_y``.

    Parameters
    ----------
    x : (N, C, L) float array
    weight, bias : (C,) arrays of x's dtype
    eps : float
        Added to the variance; cast to x's dtype.
    y : (N, C, L) array, written in full
    mean : (C,) array, written: the batch mean of each channel
    var : (C,) array, written: the biased batch variance ``sum((x - mean)**2) / M``
    inv_std : (C,) array, written: ``1 / sqrt(var + eps)``
    relu : bool, default False
    """
    C = x.shape[1]
    lanes = np.empty((C, LANES), dtype=y.dtype)  # each channel's lane sums
    _forward_train_channels(C, x, weight, bias, y.dtype.type(eps), y, mean, var, inv_std, relu, lanes)


@pjit_ordered
def batch_norm_forward_eval_kernel(x, weight, bias, mean, inv_std, y):
    """Normalise with given statistics: ``y = (x - mean) * inv_std * weight + bias``.

    Eval mode passes the running mean and ``1 / sqrt(running_var + eps)``.

    Parameters
    ----------
    x : (N, C, L) float array
    weight, bias, mean, inv_std : (C,) arrays of x's dtype
    y : (N, C, L) array, written in full
    """
    N, C, L = x.shape
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        mu = mean[c]
        scale = inv_std[c] * weight[c]
        shift = bias[c]
        for l in range(L):
            y[n, c, l] = (x[n, c, l] - mu) * scale + shift


@task("r3 r3 r1 r1 r1 b a3 a1 a1 r3 b a2 i", ordered=True)
def _backward_channel(dy, x, weight, mean, inv_std, training, dx, dweight, dbias, relu_y, masked, lanes, c):
    """Channel c of :func:`batch_norm_backward_kernel`; ``masked``: read dy as 0 where ``relu_y`` is not positive."""
    N, C, L = x.shape
    dt = dx.dtype.type
    zero = dt(0)
    m = dt(N * L)
    dy_flat, x_flat, y_flat = dy.reshape(dy.size), x.reshape(x.size), relu_y.reshape(relu_y.size)
    acc = lanes[c]
    mu = mean[c]
    s = inv_std[c]
    sum_dy = zero
    sum_dy_xhat = zero
    for n in range(N):
        if masked:
            row_dy, row_dy_xhat = _row_masked_gradients(acc, dy_flat, x_flat, y_flat, (n * C + c) * L, L, mu, s)
        else:
            row_dy, row_dy_xhat = _row_gradients(acc, dy_flat, x_flat, (n * C + c) * L, L, mu, s)
        sum_dy += row_dy
        sum_dy_xhat += row_dy_xhat
    dbias[c] = sum_dy
    dweight[c] = sum_dy_xhat
    k = weight[c] * s
    if training:
        k = k / m
        for n in range(N):
            for l in range(L):
                g = dy[n, c, l]
                if masked:
                    g = g if relu_y[n, c, l] > zero else zero
                xhat = (x[n, c, l] - mu) * s
                dx[n, c, l] = k * (m * g - sum_dy - xhat * sum_dy_xhat)
    else:
        for n in range(N):
            for l in range(L):
                g = dy[n, c, l]
                if masked:
                    g = g if relu_y[n, c, l] > zero else zero
                dx[n, c, l] = k * g


_backward_channels = parallel_tasks(_backward_channel)


@njit_ordered
def batch_norm_backward_kernel(dy, x, weight, mean, inv_std, training, dx, dweight, dbias, relu_y=None):
    """Gradients of batch normalisation with respect to x, weight and bias.

    With ``relu_y`` (the output of a forward that ran with ``relu=True``), ``dy``
    is the gradient after the fused ReLU and is read as 0 where ``relu_y`` is
    not positive: the bits of :func:`~fastcnn.kernels.relu_backward_kernel`
    and then this kernel.

    With ``xhat = (x - mean) * inv_std`` and sums over a channel's M elements:
    ``dbias = sum(dy)``, ``dweight = sum(dy * xhat)``, and

    * training (mean and inv_std are the batch's own, so they depend on x):
      ``dx = weight * inv_std / M * (M*dy - sum(dy) - xhat * sum(dy * xhat))``;
    * eval (fixed running statistics): ``dx = dy * weight * inv_std``.

    Parameters
    ----------
    dy, x : (N, C, L) float arrays
    weight, mean, inv_std : (C,) arrays of x's dtype (the ones forward used)
    training : bool
    dx : (N, C, L) array, written in full
    dweight, dbias : (C,) arrays, written in full
    relu_y : (N, C, L) array of x's dtype, or None (default: no ReLU fused)
    """
    C = x.shape[1]
    lanes = np.empty((C, 2 * LANES), dtype=dx.dtype)  # each channel's lane sums
    if relu_y is None:
        _backward_channels(C, dy, x, weight, mean, inv_std, training, dx, dweight, dbias, dy, False, lanes)
    else:
        _backward_channels(C, dy, x, weight, mean, inv_std, training, dx, dweight, dbias, relu_y, True, lanes)



@njit
def batch_norm_fold_kernel(w, b, weight, bias, mean, var, eps, has_bias, affine, wf, bf):
    """Fold eval-mode batch normalisation into the layer before it: ``norm(layer(x)) == layer'(x)``.

    Per output channel ``k``, ``s = weight[k] / sqrt(var[k] + eps)`` (``weight``
    1 when not ``affine``), ``wf[k] = w[k] * s`` and ``bf[k] = (b[k] -
    mean[k]) * s + bias[k]`` (``b`` 0 without ``has_bias``, ``bias`` 0 when not
    ``affine``), computed in float64 and rounded once to the arrays' dtype.
    Serial: K*L numbers, one pass.

    Parameters
    ----------
    w : (K, L) float array, read (a convolution's weight as (K, C*R*S), a Linear's (O, I))
    b : (K,) array of w's dtype, read when ``has_bias`` (pass any (K,) array otherwise)
    weight, bias : (K,) arrays of w's dtype, the norm's affine parameters, read when ``affine``
    mean, var : (K,) arrays of w's dtype, the norm's running statistics
    eps : float
    has_bias, affine : bool
    wf : (K, L) array of w's dtype, written in full
    bf : (K,) array of w's dtype, written in full
    """
    K, L = w.shape
    for k in range(K):
        s = 1.0 / np.sqrt(np.float64(var[k]) + eps)
        shift = -np.float64(mean[k])
        if has_bias:
            shift += np.float64(b[k])
        if affine:
            s *= np.float64(weight[k])
            bf[k] = shift * s + np.float64(bias[k])
        else:
            bf[k] = shift * s
        for j in range(L):
            wf[k, j] = w[k, j] * s
