"""Raw batch-normalisation kernels: caller-allocated outputs, no checks.

Every kernel works on a 3-D view ``x (N, C, L)``: BatchNorm2d passes
``(N, C, H*W)``, BatchNorm1d ``(N, C, 1)`` or ``(N, C, L)``.  A channel's
statistics run over its ``M = N*L`` elements.  Per-channel vectors (weight,
bias, mean, var, inv_std, dweight, dbias) are ``(C,)``; pass ones and zeros
for weight and bias when there is no affine transform.  ``x``, ``dy``, ``y``
and ``dx`` must be C-contiguous (the checked functions pass such arrays).

The statistics and the gradient reductions run in parallel tasks of (example,
block of channels): a task writes the sums of its own rows, one per (n, c)
row of L elements, and the N row sums of a channel are then added in order
from zero, so the rounding error grows with ``L + N`` rather than ``N*L`` and
the result does not depend on the thread count.  Sums accumulate in the array
dtype (float32 stays float32); the variance is a second pass over
``(x - mean)**2`` (no cancellation from ``E[x^2] - E[x]^2``).

Every sum is added in one fixed order: a row goes 8 numbers (a step) at a
time into 4 vectors of 8 lane sums (step ``i`` into vector ``i % 4``, the last
``steps % 4`` into vector 0; explicit vector code, :func:`_make_row_sums`),
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
from ._tasks import parallel_tasks, task

#: Numbers per lane-sum step (one AVX2 vector of float32).
LANES = 8
#: Independent vector sums per row (hides the latency of the vector adds).
UNROLL = 4
#: Tasks a kernel aims for: (example, block of channels) pairs, whole examples from this batch size on.
MIN_TASKS = 64


def _make_row_sums(kind):
    """An intrinsic returning the sums of one row of ``L`` numbers, added in the fixed order of the module docstring.

    Called as ``row(a, a_off, b, b_off, m, s, L)`` on flat C-contiguous arrays
    of one float dtype; element ``l`` of the row is ``a[a_off + l]`` (and
    ``b[b_off + l]``).  Its terms, and what it returns:

    * ``"sum"``: ``a``; the row's sum
    * ``"squares"``: ``(a - m)**2``; their sum
    * ``"gradients"``: ``b`` and ``b * ((a - m) * s)``; the tuple of their sums
    * ``"masked_gradients"``: as ``"gradients"`` with ``b`` read as 0 where
      ``c[b_off + l] > 0`` is false (``c``, an eighth argument, is the output
      of a ReLU that followed: its gradient mask)

    Steps of 8 terms go into ``UNROLL`` vector sums (step ``i`` into sum
    ``i % UNROLL``, the last ``steps % UNROLL`` into sum 0), added pairwise,
    then their 8 lanes pairwise, then the last ``L % 8`` terms one by one.
    The instructions carry no fast-math flags, so no optimisation reorders or
    fuses them: every compiled copy gives the same sums.  One call a row and
    no array views made (a view's reference count is an atomic update of the
    parent's shared counter: made once a row, its cache line moved between
    the cores of a two-thread run on every row, and 64-channel 8x8 batches
    normalised 2-3x slower on two threads than on one).
    """
    pairs = 1 if kind in ("sum", "squares") else 2
    masked = kind == "masked_gradients"

    def row_sums(typingctx, a, a_off, b, b_off, m, s, L, c=None):
        arrays = (a, b) + ((c,) if masked else ())
        if not all(isinstance(t, types.Array) and t.layout == "C" for t in arrays):
            return None
        if any(t.dtype != a.dtype for t in arrays) or a.dtype not in (types.float32, types.float64):
            return None
        if not all(isinstance(t, types.Integer) for t in (a_off, b_off, L)):
            return None
        if not all(isinstance(t, (types.Float, types.Integer)) for t in (m, s)):
            return None
        ret = a.dtype if pairs == 1 else types.UniTuple(a.dtype, 2)
        sig = ret(*((a, a_off, b, b_off, m, s, L) + ((c,) if masked else ())))

        def codegen(context, builder, signature, args):
            sig_args = signature.args
            dtype = sig_args[0].dtype
            scalar = context.get_data_type(dtype)
            vec = ir.VectorType(scalar, LANES)

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

            a_data, b_data = data(0), data(2)
            c_data = data(7) if masked else None
            a_off, b_off, length = intp(1), intp(3), intp(6)
            mv, sv = splat(4), splat(5)
            ms = context.cast(builder, args[4], sig_args[4], dtype)
            ss = context.cast(builder, args[5], sig_args[5], dtype)
            intp_t = a_off.type

            def const(v):
                return ir.Constant(intp_t, v)

            def at(base, off, ty):
                return builder.bitcast(builder.gep(base, [off], inbounds=True), ty.as_pointer())

            def terms(av, bv, cv, zero, m_, s_):
                if kind == "sum":
                    return [av]
                if kind == "squares":
                    d = builder.fsub(av, m_)
                    return [builder.fmul(d, d)]
                if masked:
                    bv = builder.select(builder.fcmp_ordered(">", cv, zero), bv, zero)
                return [bv, builder.fmul(bv, builder.fmul(builder.fsub(av, m_), s_))]

            # UNROLL independent vector sums, so consecutive adds do not wait on each other
            zeros = ir.Constant(vec, [ir.Constant(scalar, 0)] * LANES)
            sums = [[cgutils.alloca_once_value(builder, zeros) for _ in range(UNROLL)] for _ in range(pairs)]

            def add_step(index, u):
                offset = builder.mul(index, const(LANES))
                av = builder.load(at(a_data, builder.add(a_off, offset), vec), align=1)
                bv = cv = None
                if kind in ("gradients", "masked_gradients"):
                    bv = builder.load(at(b_data, builder.add(b_off, offset), vec), align=1)
                if masked:
                    cv = builder.load(at(c_data, builder.add(b_off, offset), vec), align=1)
                for k, term in enumerate(terms(av, bv, cv, zeros, mv, sv)):
                    builder.store(builder.fadd(builder.load(sums[k][u]), term), sums[k][u])

            count = builder.udiv(length, const(LANES))
            groups = builder.udiv(count, const(UNROLL))
            with cgutils.for_range(builder, groups) as loop:
                for u in range(UNROLL):
                    add_step(builder.add(builder.mul(loop.index, const(UNROLL)), const(u)), u)
            with cgutils.for_range(builder, builder.sub(count, builder.mul(groups, const(UNROLL)))) as loop:
                add_step(builder.add(builder.mul(groups, const(UNROLL)), loop.index), 0)
            totals = []
            for k in range(pairs):
                v = [builder.load(p) for p in sums[k]]
                total = builder.fadd(builder.fadd(v[0], v[1]), builder.fadd(v[2], v[3]))  # UNROLL is 4
                lane = [builder.extract_element(total, ir.Constant(ir.IntType(32), j)) for j in range(LANES)]
                pair = [builder.fadd(lane[2 * j], lane[2 * j + 1]) for j in range(4)]
                totals.append(cgutils.alloca_once_value(
                    builder, builder.fadd(builder.fadd(pair[0], pair[1]), builder.fadd(pair[2], pair[3]))))
            zero = ir.Constant(scalar, 0)
            with cgutils.for_range(builder, builder.sub(length, builder.mul(count, const(LANES)))) as loop:
                index = builder.add(builder.mul(count, const(LANES)), loop.index)
                av = builder.load(at(a_data, builder.add(a_off, index), scalar))
                bv = cv = None
                if kind in ("gradients", "masked_gradients"):
                    bv = builder.load(at(b_data, builder.add(b_off, index), scalar))
                if masked:
                    cv = builder.load(at(c_data, builder.add(b_off, index), scalar))
                for k, term in enumerate(terms(av, bv, cv, zero, ms, ss)):
                    builder.store(builder.fadd(builder.load(totals[k]), term), totals[k])
            values = [builder.load(t) for t in totals]
            if pairs == 1:
                return values[0]
            return context.make_tuple(builder, signature.return_type, values)

        return sig, codegen

    if masked:
        def with_mask(typingctx, a, a_off, b, b_off, m, s, L, c):
            return row_sums(typingctx, a, a_off, b, b_off, m, s, L, c)

        return intrinsic(with_mask)

    def unmasked(typingctx, a, a_off, b, b_off, m, s, L):
        return row_sums(typingctx, a, a_off, b, b_off, m, s, L)

    return intrinsic(unmasked)


#: ``_row_sum(flat, off, flat, off, 0, 0, L)``: the sum of ``flat[off:off + L]``.
_row_sum = _make_row_sums("sum")
#: ``_row_squares(flat, off, flat, off, mu, 0, L)``: the sum of ``(flat[off:off + L] - mu)**2``.
_row_squares = _make_row_sums("squares")
#: ``_row_gradients(x, off, dy, off, mu, s, L)``: ``(sum(dy), sum(dy * (x - mu) * s))`` over one row.
_row_gradients = _make_row_sums("gradients")
#: ``_row_masked_gradients(x, off, dy, off, mu, s, L, y)``: the same with dy read as 0 where ``y`` is not positive.
_row_masked_gradients = _make_row_sums("masked_gradients")


@njit(inline="always")
def _task_blocks(N, C):
    """Channel blocks per example: tasks are (example, block of channels) pairs, at least :data:`MIN_TASKS` of them
    where there are enough channels."""
    return min(C, max(1, -(-MIN_TASKS // N)))


@njit(inline="always")
def _block_channels(C, blocks, t):
    """Example ``n`` and channels ``c0:c1`` of task ``t`` (:func:`_task_blocks`)."""
    n = t // blocks
    b = t - n * blocks
    per = -(-C // blocks)
    c0 = b * per
    return n, c0, min(C, c0 + per)


@task("r3 a2 r1 i b i", ordered=True)
def _row_stats_task(x, partial, mean, blocks, squares, t):
    """``partial[n, c]``: the sum of row (n, c) of x, or with ``squares`` the sum of ``(x - mean[c])**2``."""
    N, C, L = x.shape
    n, c0, c1 = _block_channels(C, blocks, t)
    flat = x.reshape(x.size)
    for c in range(c0, c1):
        off = (n * C + c) * L
        if squares:
            partial[n, c] = _row_squares(flat, off, flat, off, mean[c], 0, L)
        else:
            partial[n, c] = _row_sum(flat, off, flat, off, 0, 0, L)


@njit(inline="always")
def _column_totals(partial, out, scale):
    """``out[c] = (partial[0, c] + partial[1, c] + ...) * scale``, the rows added in order from zero."""
    N, C = partial.shape
    for c in range(C):
        total = out.dtype.type(0)
        for n in range(N):
            total += partial[n, c]
        out[c] = total * scale


@task("r3 r1 r1 r1 r1 a3 i b i", ordered=True)
def _normalize_task(x, mean, inv_std, weight, bias, y, blocks, relu, t):
    """Rows (n, c0:c1) of task t: ``y = (x - mean) * inv_std * weight + bias``, then ``max(y, 0)`` with ``relu``."""
    N, C, L = x.shape
    n, c0, c1 = _block_channels(C, blocks, t)
    zero = y.dtype.type(0)
    for c in range(c0, c1):
        mu = mean[c]
        scale = inv_std[c] * weight[c]
        shift = bias[c]
        if relu:
            for l in range(L):
                v = (x[n, c, l] - mu) * scale + shift
                y[n, c, l] = zero if v < zero else v
        else:
            for l in range(L):
                y[n, c, l] = (x[n, c, l] - mu) * scale + shift


_row_stats_tasks = parallel_tasks(_row_stats_task)
_normalize_tasks = parallel_tasks(_normalize_task)


@njit_ordered
def batch_norm_forward_train_kernel(x, weight, bias, eps, y, mean, var, inv_std, relu=False):
    """Training-mode forward: batch statistics, then ``y = (x - mean) * inv_std * weight + bias``.

    With ``relu`` True, a ReLU that follows runs in the same pass: ``y`` is
    ``max(that, 0)`` (the bits of :func:`~fastcnn.kernels.relu_forward_kernel`
    applied after), and the backward kernel takes ``y`` as ``relu_y``.

    Three passes over x, each parallel over (example, block of channels)
    tasks: the row sums, the row sums of squares about the mean, the
    normalisation.

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
    N, C, L = x.shape
    dt = y.dtype.type
    blocks = _task_blocks(N, C)
    tasks = N * blocks
    partial = np.empty((N, C), dtype=y.dtype)  # the row sums
    inv_m = dt(1) / dt(N * L)
    _row_stats_tasks(tasks, x, partial, mean, blocks, False)
    _column_totals(partial, mean, inv_m)
    _row_stats_tasks(tasks, x, partial, mean, blocks, True)
    _column_totals(partial, var, inv_m)
    for c in range(C):
        inv_std[c] = dt(1) / np.sqrt(var[c] + dt(eps))
    _normalize_tasks(tasks, x, mean, inv_std, weight, bias, y, blocks, relu)


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


@task("r3 r3 r3 a2 a2 r1 r1 i b i", ordered=True)
def _row_gradients_task(dy, x, relu_y, partial_dy, partial_dy_xhat, mean, inv_std, blocks, masked, t):
    """``partial_dy[n, c]``, ``partial_dy_xhat[n, c]``: row (n, c)'s ``sum(dy)`` and ``sum(dy * xhat)``
    (``masked``: dy read as 0 where ``relu_y`` is not positive)."""
    N, C, L = x.shape
    n, c0, c1 = _block_channels(C, blocks, t)
    dy_flat, x_flat, y_flat = dy.reshape(dy.size), x.reshape(x.size), relu_y.reshape(relu_y.size)
    for c in range(c0, c1):
        off = (n * C + c) * L
        if masked:
            row_dy, row_dy_xhat = _row_masked_gradients(x_flat, off, dy_flat, off, mean[c], inv_std[c], L, y_flat)
        else:
            row_dy, row_dy_xhat = _row_gradients(x_flat, off, dy_flat, off, mean[c], inv_std[c], L)
        partial_dy[n, c] = row_dy
        partial_dy_xhat[n, c] = row_dy_xhat


@task("r3 r3 r3 a3 r1 r1 r1 r1 r1 f b b i i", ordered=True)
def _input_grad_task(dy, x, relu_y, dx, mean, inv_std, k, sum_dy, sum_dy_xhat, m, training, masked, blocks, t):
    """Rows (n, c0:c1) of task t of dx (``k``: each channel's ``weight * inv_std``, over M in training)."""
    N, C, L = x.shape
    n, c0, c1 = _block_channels(C, blocks, t)
    zero = dx.dtype.type(0)
    for c in range(c0, c1):
        kc = k[c]
        if training:
            mu = mean[c]
            s = inv_std[c]
            sdy = sum_dy[c]
            sdx = sum_dy_xhat[c]
            for l in range(L):
                g = dy[n, c, l]
                if masked:
                    g = g if relu_y[n, c, l] > zero else zero
                xhat = (x[n, c, l] - mu) * s
                dx[n, c, l] = kc * (m * g - sdy - xhat * sdx)
        else:
            for l in range(L):
                g = dy[n, c, l]
                if masked:
                    g = g if relu_y[n, c, l] > zero else zero
                dx[n, c, l] = kc * g


_row_gradient_tasks = parallel_tasks(_row_gradients_task)
_input_grad_tasks = parallel_tasks(_input_grad_task)


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
    N, C, L = x.shape
    dt = dx.dtype.type
    m = dt(N * L)
    blocks = _task_blocks(N, C)
    tasks = N * blocks
    partial = np.empty((2, N, C), dtype=dx.dtype)  # the rows' sum(dy) and sum(dy * xhat)
    if relu_y is None:
        _row_gradient_tasks(tasks, dy, x, dy, partial[0], partial[1], mean, inv_std, blocks, False)
    else:
        _row_gradient_tasks(tasks, dy, x, relu_y, partial[0], partial[1], mean, inv_std, blocks, True)
    _column_totals(partial[0], dbias, dt(1))
    _column_totals(partial[1], dweight, dt(1))
    k = np.empty(C, dtype=dx.dtype)
    for c in range(C):
        k[c] = weight[c] * inv_std[c]
        if training:
            k[c] = k[c] / m
    if relu_y is None:
        _input_grad_tasks(tasks, dy, x, dy, dx, mean, inv_std, k, dbias, dweight, m, training, False, blocks)
    else:
        _input_grad_tasks(tasks, dy, x, relu_y, dx, mean, inv_std, k, dbias, dweight, m, training, True, blocks)


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
