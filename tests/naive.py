"""Slow, obviously-correct reference implementations (the test oracle).

Everything here is written as explicit Python loops straight from the
definitions, in float64, so that it shares no vectorisation trick (and hence no
bug) with :mod:`fastcnn.kernels`.  The convolution's loops run over output
channels and taps and add each product to every output pixel at once (numpy's
elementwise arithmetic, in the order of the one-output-at-a-time loops beside
them, which a test compares them with).  Inputs are converted to float64 first;
the results are float64 arrays (or Python floats for the losses).

Layout conventions match fastcnn: NCHW activations, (K, C, R, S) conv weights,
(out, in) linear weights.

The module also holds the edge-shape tables shared by several test files.
"""

import math

import numpy as np


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def pair(v):
    """An int or a 2-sequence as a tuple of two ints."""
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def conv_out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def pool_out(size, k, s, p, ceil_mode):
    """PyTorch's pooling output size, written from its documentation."""
    span = size + 2 * p - k
    if ceil_mode:
        out = int(math.ceil(span / s)) + 1
        # the last window must start inside the input or the left padding
        if (out - 1) * s >= size + p:
            out -= 1
    else:
        out = int(math.floor(span / s)) + 1
    return out


# ---------------------------------------------------------------------------
# convolution (cross-correlation), zero padding
# ---------------------------------------------------------------------------
def same_padding(kernel, dilation):
    """PyTorch's padding="same" along one axis, from its documentation: ``(before, after)`` with the
    total ``dilation*(kernel - 1)`` split in half and the odd pixel after."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def _conv_setup(x_shape, w_shape, stride, padding, dilation, groups):
    """(sh, sw, (top, bottom), (left, right), dh, dw, OH, OW) of a convolution, straight from the definitions."""
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    _, C, H, W = x_shape
    K, Cg, R, S = w_shape
    assert C == Cg * groups and K % groups == 0
    if padding == "valid":
        pads = (0, 0), (0, 0)
    elif padding == "same":
        pads = same_padding(R, dh), same_padding(S, dw)
    else:
        ph, pw = pair(padding)
        pads = (ph, ph), (pw, pw)
    (top, bottom), (left, right) = pads
    OH = (H + top + bottom - dh * (R - 1) - 1) // sh + 1
    OW = (W + left + right - dw * (S - 1) - 1) // sw + 1
    return sh, sw, top, left, dh, dw, OH, OW


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, k, oh, ow] = b[k] + sum over the C/groups channels c of k's group and the taps (r, s) of
    w[k, c, r, s] * x[n, g*C/groups + c, oh*sh - top + r*dh, ow*sw - left + s*dw] (zero outside x),
    with k's group g = k // (K/groups); padding may be an int, a pair, "same" or "valid".

    The loops run over the output channel and the tap (k, c, r, s), each step adding one product to every output
    pixel (n, oh, ow) at once whose input pixel lies inside x: every output gets the products in the order of
    :func:`conv2d_forward_loops` (the same formula, one output at a time), so the same bits, in a fraction
    of the time."""
    x, w = _f64(x), _f64(w)
    N, _, H, W = x.shape
    K, Cg, R, S = w.shape
    sh, sw, top, left, dh, dw, OH, OW = _conv_setup(x.shape, w.shape, stride, padding, dilation, groups)
    rows, cols = _inside(OH, sh, top, R, dh, H), _inside(OW, sw, left, S, dw, W)
    y = np.zeros((N, K, OH, OW))
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN arise and spread as in Python floats, silently
        for k in range(K):
            c0 = (k // (K // groups)) * Cg  # the first input channel of k's group
            if b is not None:
                y[:, k] = float(b[k])
            for c in range(Cg):
                for r, (oh, ih) in enumerate(rows):
                    for s, (ow, iw) in enumerate(cols):
                        y[:, k, oh[:, None], ow] += x[:, c0 + c, ih[:, None], iw] * float(w[k, c, r, s])
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """(dx, dw, db) by scattering every output's gradient back along the edges of the forward computation graph:
    for every output channel and tap (k, c, r, s), the pixels (n, oh, ow) whose input pixel lies inside x add
    w[k, c, r, s] * dy[n, k, oh, ow] to dx at that input pixel and x there * dy[n, k, oh, ow] to dw[k, c, r, s];
    db[k] is the sum of dy[:, k].  (:func:`conv2d_backward_loops` is the same, one output at a time.)"""
    dy, x, w = _f64(dy), _f64(x), _f64(w)
    N, _, H, W = x.shape
    K, Cg, R, S = w.shape
    sh, sw, top, left, dh, dw_, OH, OW = _conv_setup(x.shape, w.shape, stride, padding, dilation, groups)
    assert dy.shape == (N, K, OH, OW)
    rows, cols = _inside(OH, sh, top, R, dh, H), _inside(OW, sw, left, S, dw_, W)
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    db = np.zeros(K)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(K):
            c0 = (k // (K // groups)) * Cg
            db[k] = dy[:, k].sum()
            for c in range(Cg):
                for r, (oh, ih) in enumerate(rows):
                    for s, (ow, iw) in enumerate(cols):
                        g = dy[:, k, oh[:, None], ow]  # (N, outputs whose tap (r, s) is inside x)
                        dx[:, c0 + c, ih[:, None], iw] += w[k, c, r, s] * g  # one output per input pixel: no repeats
                        dw[k, c, r, s] += np.sum(x[:, c0 + c, ih[:, None], iw] * g)
    return dx, dw, db


def _inside(out_size, stride, before, taps, dilation, size):
    """For each tap t along one axis: (outputs o, input pixels i = o*stride - before + t*dilation) for the
    outputs whose input pixel lies inside the axis (the zero padding elsewhere adds nothing)."""
    o = np.arange(out_size)
    steps = []
    for t in range(taps):
        i = o * stride - before + t * dilation
        keep = (i >= 0) & (i < size)
        steps.append((o[keep], i[keep]))
    return steps


def conv2d_forward_loops(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """:func:`conv2d_forward` written one output at a time, straight from the formula (the check of the faster
    loops, on small cases: ``tests/kernels/test_kernels_naive.py``)."""
    x, w = _f64(x), _f64(w)
    N, _, H, W = x.shape
    K, Cg, R, S = w.shape
    sh, sw, top, left, dh, dw, OH, OW = _conv_setup(x.shape, w.shape, stride, padding, dilation, groups)
    y = np.zeros((N, K, OH, OW))
    for n in range(N):
        for k in range(K):
            c0 = (k // (K // groups)) * Cg  # the first input channel of k's group
            for oh in range(OH):
                for ow in range(OW):
                    acc = 0.0 if b is None else float(b[k])
                    for c in range(Cg):
                        for r in range(R):
                            ih = oh * sh - top + r * dh
                            if ih < 0 or ih >= H:
                                continue  # zero padding
                            for s in range(S):
                                iw = ow * sw - left + s * dw
                                if iw < 0 or iw >= W:
                                    continue
                                acc += float(x[n, c0 + c, ih, iw]) * float(w[k, c, r, s])
                    y[n, k, oh, ow] = acc
    return y


def conv2d_backward_loops(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """:func:`conv2d_backward` written one output at a time: (dx, dw, db) by scattering every output's gradient
    back along the edges of the forward computation graph."""
    dy, x, w = _f64(dy), _f64(x), _f64(w)
    N, _, H, W = x.shape
    K, Cg, R, S = w.shape
    sh, sw, top, left, dh, dw_, OH, OW = _conv_setup(x.shape, w.shape, stride, padding, dilation, groups)
    assert dy.shape == (N, K, OH, OW)
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    db = np.zeros(K)
    for n in range(N):
        for k in range(K):
            c0 = (k // (K // groups)) * Cg
            for oh in range(OH):
                for ow in range(OW):
                    g = float(dy[n, k, oh, ow])
                    db[k] += g
                    for c in range(Cg):
                        for r in range(R):
                            ih = oh * sh - top + r * dh
                            if ih < 0 or ih >= H:
                                continue
                            for s in range(S):
                                iw = ow * sw - left + s * dw_
                                if iw < 0 or iw >= W:
                                    continue
                                dx[n, c0 + c, ih, iw] += w[k, c, r, s] * g
                                dw[k, c, r, s] += x[n, c0 + c, ih, iw] * g
    return dx, dw, db


def true_convolution2d(x, w):
    """Textbook convolution (kernel flipped), no padding, stride 1, one plane:
    y[i, j] = sum_{a, b} x[a, b] * w[i - a + R - 1, j - b + S - 1] restricted to
    the 'valid' region, written with the flip in the index arithmetic."""
    x, w = _f64(x), _f64(w)
    H, W = x.shape
    R, S = w.shape
    y = np.zeros((H - R + 1, W - S + 1))
    for i in range(H - R + 1):
        for j in range(W - S + 1):
            acc = 0.0
            for u in range(R):
                for v in range(S):
                    acc += x[i + u, j + v] * w[R - 1 - u, S - 1 - v]
            y[i, j] = acc
    return y


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """Reference im2col in fastcnn's documented layout: shape (N, C*R*S, P*Q),
    ``cols[n, (c*R + r)*S + s, p*Q + q] = xpad[n, c, p*sh + r*dh, q*sw + s*dw]``
    (zero padding)."""
    x = _f64(x)
    R, S = pair(kernel_size)
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    N, C, H, W = x.shape
    P, Q = conv_out(H, dh * (R - 1) + 1, sh, ph), conv_out(W, dw * (S - 1) + 1, sw, pw)
    cols = np.zeros((N, C * R * S, P * Q))
    for n in range(N):
        for c in range(C):
            for r in range(R):
                for s in range(S):
                    row = (c * R + r) * S + s
                    for p in range(P):
                        for q in range(Q):
                            ih = p * sh - ph + r * dh
                            iw = q * sw - pw + s * dw
                            if 0 <= ih < H and 0 <= iw < W:
                                cols[n, row, p * Q + q] = x[n, c, ih, iw]
    return cols


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Reference col2im: scatter-add every column entry back to the input
    pixel it was read from (entries from the padding are dropped)."""
    cols = _f64(cols)
    R, S = pair(kernel_size)
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    N, C, H, W = x_shape
    P, Q = conv_out(H, dh * (R - 1) + 1, sh, ph), conv_out(W, dw * (S - 1) + 1, sw, pw)
    assert cols.shape == (N, C * R * S, P * Q)
    dx = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            for r in range(R):
                for s in range(S):
                    row = (c * R + r) * S + s
                    for p in range(P):
                        for q in range(Q):
                            ih = p * sh - ph + r * dh
                            iw = q * sw - pw + s * dw
                            if 0 <= ih < H and 0 <= iw < W:
                                dx[n, c, ih, iw] += cols[n, row, p * Q + q]
    return dx


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------
def max_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Returns (y, argmax); argmax is the flat index ih*W + iw into the unpadded
    input plane; padding is -inf; ties go to the first maximum in row-major
    window order (strict '>' while scanning r outer, s inner)."""
    x = _f64(x)
    kh, kw = pair(kernel_size)
    sh, sw = pair(kernel_size if stride is None else stride)
    ph, pw = pair(padding)
    N, C, H, W = x.shape
    OH, OW = pool_out(H, kh, sh, ph, ceil_mode), pool_out(W, kw, sw, pw, ceil_mode)
    y = np.zeros((N, C, OH, OW))
    am = np.zeros((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    best, best_idx = -math.inf, -1
                    for r in range(kh):
                        ih = oh * sh - ph + r
                        if ih < 0 or ih >= H:
                            continue  # -inf padding never wins
                        for s in range(kw):
                            iw = ow * sw - pw + s
                            if iw < 0 or iw >= W:
                                continue
                            v = x[n, c, ih, iw]
                            if best_idx == -1 or v > best:
                                best, best_idx = v, ih * W + iw
                    assert best_idx >= 0, "window entirely in padding"
                    y[n, c, oh, ow] = best
                    am[n, c, oh, ow] = best_idx
    return y, am


def max_pool2d_backward(dy, argmax, x_shape):
    dy = _f64(dy)
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            for oh in range(dy.shape[2]):
                for ow in range(dy.shape[3]):
                    idx = int(argmax[n, c, oh, ow])
                    dx[n, c, idx // W, idx % W] += dy[n, c, oh, ow]
    return dx


def _avg_windows(H, W, kh, kw, sh, sw, ph, pw, OH, OW, count_include_pad=True):
    """Yield (oh, ow, h0, h1, w0, w1, divisor) with PyTorch's rules: the sum
    uses the window clipped to the real input; with count_include_pad=True the
    divisor counts the window clipped to the padded input, with False it counts
    the real input pixels in the window (every pixel (ih, iw) with
    h0 <= ih < h1 and w0 <= iw < w1, counted one by one)."""
    for oh in range(OH):
        for ow in range(OW):
            hstart = oh * sh - ph
            wstart = ow * sw - pw
            hend = min(hstart + kh, H + ph)
            wend = min(wstart + kw, W + pw)
            h0, h1, w0, w1 = max(hstart, 0), min(hend, H), max(wstart, 0), min(wend, W)
            if count_include_pad:
                divisor = (hend - hstart) * (wend - wstart)
            else:
                divisor = sum(1 for _ in range(h0, h1) for _ in range(w0, w1))
            yield (oh, ow, h0, h1, w0, w1, divisor)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True):
    x = _f64(x)
    kh, kw = pair(kernel_size)
    sh, sw = pair(kernel_size if stride is None else stride)
    ph, pw = pair(padding)
    N, C, H, W = x.shape
    OH, OW = pool_out(H, kh, sh, ph, ceil_mode), pool_out(W, kw, sw, pw, ceil_mode)
    y = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for oh, ow, h0, h1, w0, w1, div in _avg_windows(
                    H, W, kh, kw, sh, sw, ph, pw, OH, OW, count_include_pad):
                acc = 0.0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        acc += x[n, c, ih, iw]
                y[n, c, oh, ow] = acc / div
    return y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    dy = _f64(dy)
    kh, kw = pair(kernel_size)
    sh, sw = pair(kernel_size if stride is None else stride)
    ph, pw = pair(padding)
    N, C, H, W = x_shape
    OH, OW = pool_out(H, kh, sh, ph, ceil_mode), pool_out(W, kw, sw, pw, ceil_mode)
    assert dy.shape == (N, C, OH, OW)
    dx = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            for oh, ow, h0, h1, w0, w1, div in _avg_windows(
                    H, W, kh, kw, sh, sw, ph, pw, OH, OW, count_include_pad):
                g = dy[n, c, oh, ow] / div
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        dx[n, c, ih, iw] += g
    return dx


def global_avg_pool2d_forward(x):
    x = _f64(x)
    N, C, H, W = x.shape
    y = np.zeros((N, C))
    for n in range(N):
        for c in range(C):
            acc = 0.0
            for h in range(H):
                for w_ in range(W):
                    acc += x[n, c, h, w_]
            y[n, c] = acc / (H * W)
    return y


def global_avg_pool2d_backward(dy, x_shape):
    dy = _f64(dy)
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w_ in range(W):
                    dx[n, c, h, w_] = dy[n, c] / (H * W)
    return dx


def global_max_pool2d_forward(x):
    """Returns (y, argmax), both (N, C): the maximum of each (H, W) plane and its
    flat index h*W + w.  Scanning in row-major order, a later element replaces
    the current one only if it is strictly greater, and the first NaN met wins
    (nothing replaces a NaN)."""
    x = _f64(x)
    N, C, H, W = x.shape
    y = np.zeros((N, C))
    am = np.zeros((N, C), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            best, best_idx = None, -1
            for h in range(H):
                for w_ in range(W):
                    v = float(x[n, c, h, w_])
                    if best_idx == -1 or (not math.isnan(best) and (math.isnan(v) or v > best)):
                        best, best_idx = v, h * W + w_
            y[n, c], am[n, c] = best, best_idx
    return y, am


def global_max_pool2d_backward(dy, argmax, x_shape):
    dy = _f64(dy)
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            idx = int(argmax[n, c])
            dx[n, c, idx // W, idx % W] = dy[n, c]
    return dx


# ---------------------------------------------------------------------------
# activations (elementwise, via math on Python floats)
# ---------------------------------------------------------------------------
def _map(f, *arrays):
    arrays = [_f64(a) for a in arrays]
    out = np.empty(arrays[0].shape)
    flat = [a.reshape(-1) for a in arrays]
    of = out.reshape(-1)
    for i in range(of.size):
        of[i] = f(*(float(a[i]) for a in flat))
    return out


def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def relu_forward(x):
    return _map(lambda v: v if v > 0 else 0.0, x)


def relu_backward(dy, x):
    # derivative taken as 0 at x == 0 (PyTorch's convention)
    return _map(lambda g, v: g if v > 0 else 0.0, dy, x)


def sigmoid_forward(x):
    return _map(_sigmoid, x)


def sigmoid_backward(dy, y):
    return _map(lambda g, s: g * s * (1.0 - s), dy, y)


def tanh_forward(x):
    return _map(math.tanh, x)


def tanh_backward(dy, y):
    return _map(lambda g, t: g * (1.0 - t * t), dy, y)


# ---------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------
def linear_forward(x, w, b=None):
    x, w = _f64(x), _f64(w)
    N, I = x.shape
    O, I2 = w.shape
    assert I == I2
    y = np.zeros((N, O))
    for n in range(N):
        for o in range(O):
            acc = 0.0 if b is None else float(b[o])
            for i in range(I):
                acc += x[n, i] * w[o, i]
            y[n, o] = acc
    return y


def linear_backward(dy, x, w):
    dy, x, w = _f64(dy), _f64(x), _f64(w)
    N, I = x.shape
    O = w.shape[0]
    dx = np.zeros((N, I))
    dw = np.zeros((O, I))
    db = np.zeros(O)
    for n in range(N):
        for o in range(O):
            g = dy[n, o]
            db[o] += g
            for i in range(I):
                dx[n, i] += g * w[o, i]
                dw[o, i] += g * x[n, i]
    return dx, dw, db


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def softmax_cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[label]; gradient w.r.t.
    logits is (softmax - onehot) / N.  Uses the max-shift for stability."""
    z = _f64(logits)
    N, K = z.shape
    total = 0.0
    d = np.zeros((N, K))
    for n in range(N):
        m = max(z[n, k] for k in range(K))
        ssum = sum(math.exp(z[n, k] - m) for k in range(K))
        lse = m + math.log(ssum)
        t = int(labels[n])
        total += lse - z[n, t]
        for k in range(K):
            p = math.exp(z[n, k] - lse)
            d[n, k] = (p - (1.0 if k == t else 0.0)) / N
    return total / N, d


def mse_loss(pred, target):
    p, t = _f64(pred), _f64(target)
    pf, tf = p.reshape(-1), t.reshape(-1)
    M = pf.size
    total = 0.0
    d = np.zeros(M)
    for i in range(M):
        diff = pf[i] - tf[i]
        total += diff * diff
        d[i] = 2.0 * diff / M
    return total / M, d.reshape(p.shape)


# ---------------------------------------------------------------------------
# optimiser
# ---------------------------------------------------------------------------
def sgd_steps(params, grads, lr, momentum=0.0, weight_decay=0.0, nesterov=False, l1=0.0, decay_biases=True):
    """Parameters after SGD steps, by the documented update in float64 numpy.

    ``params`` holds objects with ``.data``; ``grads`` one list of gradients per step.  Per step and
    parameter ``p``: ``g = grad + l1 * sign(p)``, plus ``weight_decay * p`` if ``decay_biases`` or
    ``p.ndim > 1``; with momentum ``buf = g`` on the first step, then ``buf = momentum * buf + g``, and
    ``g = g + momentum * buf`` (Nesterov) or ``g = buf``; then ``p -= lr * g``.
    """
    ps = [p.data.astype(np.float64).copy() for p in params]
    bufs = [None] * len(ps)
    for gs in grads:
        for i, (p, g) in enumerate(zip(ps, gs)):
            g = g.astype(np.float64) + l1 * np.sign(p)
            if decay_biases or p.ndim > 1:
                g = g + weight_decay * p
            if momentum != 0:
                bufs[i] = g.copy() if bufs[i] is None else momentum * bufs[i] + g
                g = g + momentum * bufs[i] if nesterov else bufs[i]
            p -= lr * g
    return ps


# ---------------------------------------------------------------------------
# shared edge-shape tables
# ---------------------------------------------------------------------------
# conv: (N, C, H, W, K, R, S, stride, padding)
CONV_CASES = {
    "batch1_3x3": (1, 1, 5, 5, 1, 3, 3, 1, 0),
    "1x1_kernel": (2, 3, 4, 5, 2, 1, 1, 1, 0),
    "kernel_eq_input": (2, 2, 4, 3, 3, 4, 3, 1, 0),
    "kernel_eq_padded_input": (1, 2, 3, 3, 2, 5, 5, 1, 1),
    "stride_gt_kernel": (2, 2, 7, 7, 2, 2, 2, 3, 0),
    "H_minus_k_not_div_by_stride": (1, 2, 8, 7, 2, 3, 3, 2, 0),
    "odd_rect_image_rect_kernel": (2, 3, 7, 5, 2, 3, 2, 1, 0),
    "rect_stride_and_padding": (2, 2, 7, 6, 3, 3, 2, (2, 1), (1, 0)),
    "rect_stride_only": (1, 2, 6, 9, 2, 2, 3, (1, 3), 0),
    "stride2_pad1": (1, 2, 6, 6, 2, 3, 3, 2, 1),
    "padding_ge_kernel": (1, 1, 3, 3, 1, 2, 2, 1, 2),
    "wide_channels_pad1": (3, 4, 6, 6, 5, 3, 3, 1, 1),
    # which algorithm each case selects per pass is asserted in test_conv_plan.py (EXPECTED);
    # batch-last cases: channels not a multiple of 4 on purpose
    "batchlast_N9_K6_pad2": (9, 1, 8, 8, 6, 5, 5, 1, 2),
    "batchlast_N8_C6_K7_rect_stride_pad": (8, 6, 9, 7, 7, 3, 2, (2, 1), (1, 0)),
    "batchlast_N13_stride_gt_kernel": (13, 5, 7, 7, 5, 2, 2, 3, 0),
    "N16_kernel_eq_padded_input": (16, 3, 3, 3, 4, 5, 5, 1, 1),
    "batchlast_N10_padding_ge_kernel": (10, 2, 3, 4, 3, 2, 2, 1, 2),
    # channel-last cases: 16-wide column blocks, then 8, then single columns
    "channellast_K16_C16_pad1": (2, 16, 5, 6, 16, 3, 3, 1, 1),
    "channellast_K27_C17_rect_stride_pad": (3, 17, 7, 6, 27, 3, 2, (2, 1), (1, 0)),
    "channellast_K33_C3_stride_gt_kernel": (2, 3, 7, 7, 33, 2, 2, 3, 0),
    "channellast_K16_C40_padding_ge_kernel": (1, 40, 3, 4, 16, 2, 2, 1, 2),
    "channellast_N9_K24_C6_5x5": (9, 6, 9, 9, 24, 5, 5, 1, 2),
    "channellast_dx_only_N10_C20_K6_stride2": (10, 20, 7, 8, 6, 3, 3, 2, 1),
}

# convolution: the shapes of the one-matrix-product algorithms (matmul_1x1, matmul_whole_input) and near misses;
# test_conv_plan runs every algorithm on them and CONV_CASES
CONV_MATMUL_CASES = {
    "1x1_batch3": (3, 5, 4, 6, 7, 1, 1, 1, 0),
    "1x1_batch9": (9, 6, 5, 3, 4, 1, 1, 1, 0),
    "1x1_single_pixel": (12, 3, 1, 1, 2, 1, 1, 1, 0),
    "whole_input_batch2": (2, 3, 5, 5, 4, 5, 5, 1, 0),
    "whole_input_batch10_rect": (10, 2, 4, 6, 5, 4, 6, 1, 0),
    "whole_input_padded_batch3": (3, 2, 3, 4, 3, 5, 6, 1, 1),
    "whole_input_padded_stride_batch9": (9, 3, 3, 3, 4, 5, 7, (2, 3), (1, 2)),
    "1x1_stride2": (3, 2, 5, 5, 3, 1, 1, 2, 0),
    "1x1_padded_batch9": (9, 2, 4, 4, 3, 1, 1, 1, 1),
    "kernel_one_short_of_input": (9, 2, 5, 5, 3, 4, 5, 1, 0),
}

# pooling: (N, C, H, W, kernel_size, stride, padding, ceil_mode)
POOL_CASES = {
    "2x2_default_stride": (2, 3, 6, 6, 2, None, 0, False),
    "odd_size_floor": (1, 2, 7, 7, 2, None, 0, False),
    "odd_size_ceil_partial_last_window": (1, 2, 7, 7, 2, None, 0, True),
    # H=5,k=2,s=2,p=1: ceil gives 4 windows but the 4th starts at 6 >= H+p
    "ceil_last_window_in_padding_dropped": (1, 2, 5, 5, 2, 2, 1, True),
    "k3_s2_pad1": (2, 2, 7, 6, 3, 2, 1, False),
    "k3_s2_pad1_ceil": (2, 2, 7, 6, 3, 2, 1, True),
    "rect_kernel_stride_pad_ceil": (1, 2, 7, 8, (3, 2), (2, 1), (1, 0), True),
    # W: 5+2-3=4, ceil(4/3)+1=3 -> dropped to 2; H kept at 4
    "ceil_drop_in_W_only": (2, 1, 6, 5, 3, (2, 3), (1, 1), True),
    "stride_gt_kernel": (1, 2, 9, 9, 2, 3, 0, False),
    "stride_gt_kernel_ceil": (1, 2, 9, 8, 2, 3, 0, True),
    "kernel_eq_input": (2, 2, 4, 5, (4, 5), None, 0, False),
    "1x1_kernel_stride2": (1, 2, 5, 5, 1, 2, 0, False),
    "stride1_pad1_ceil": (1, 1, 5, 5, 3, 1, 1, True),
}


# ---------------------------------------------------------------------------
# locally connected (unshared convolution): w (P, Q, K, C, R, S), b (K, P, Q)
# ---------------------------------------------------------------------------
def locally_connected2d_forward(x, w, b=None, stride=1, padding=0):
    x, w = _f64(x), _f64(w)
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    N, C, H, W = x.shape
    P, Q, K, C2, R, S = w.shape
    assert C == C2 and (P, Q) == (conv_out(H, R, sh, ph), conv_out(W, S, sw, pw))
    y = np.zeros((N, K, P, Q))
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    acc = 0.0 if b is None else float(b[k, p, q])
                    for c in range(C):
                        for r in range(R):
                            for s in range(S):
                                ih, iw = p * sh - ph + r, q * sw - pw + s
                                if 0 <= ih < H and 0 <= iw < W:
                                    acc += float(x[n, c, ih, iw]) * float(w[p, q, k, c, r, s])
                    y[n, k, p, q] = acc
    return y


def locally_connected2d_backward(dy, x, w, stride=1, padding=0):
    """(dx, dw, db) of :func:`locally_connected2d_forward`, by the chain rule on each term."""
    dy, x, w = _f64(dy), _f64(x), _f64(w)
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    N, C, H, W = x.shape
    P, Q, K, _, R, S = w.shape
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    db = dy.sum(axis=0)
    for n in range(N):
        for k in range(K):
            for p in range(P):
                for q in range(Q):
                    g = dy[n, k, p, q]
                    for c in range(C):
                        for r in range(R):
                            for s in range(S):
                                ih, iw = p * sh - ph + r, q * sw - pw + s
                                if 0 <= ih < H and 0 <= iw < W:
                                    dx[n, c, ih, iw] += g * w[p, q, k, c, r, s]
                                    dw[p, q, k, c, r, s] += g * x[n, c, ih, iw]
    return dx, dw, db


def central_difference(f, a, index, eps=1e-6):
    """``d f() / d a[index]`` by a central difference: ``a[index]`` is perturbed in place and restored."""
    old = a[index]
    a[index] = old + eps
    up = f()
    a[index] = old - eps
    down = f()
    a[index] = old
    return (up - down) / (2 * eps)


def numerical_grad(f, a, eps=1e-6):
    """Central-difference gradient of the scalar ``f()`` with respect to array ``a``.

    ``f`` reads ``a``, which is perturbed in place element by element and restored;
    the gradient is float64 whatever ``a``'s dtype (use float64 arrays for checks).
    """
    g = np.zeros(a.shape, dtype=np.float64)
    for idx in np.ndindex(a.shape):
        g[idx] = central_difference(f, a, idx, eps)
    return g


def numerical_grad_by_block(f, a, eps=1e-6):
    """Central-difference gradient of a scalar split in blocks, ``L = sum(f())``, with respect to array ``a``,
    where ``a[j]`` moves only the block ``f()[j]`` (a convolution's batch item ``n`` of ``x`` moves only its
    output ``y[n]``; an output channel's filter ``w[k]`` and bias ``b[k]`` only the channel ``y[:, k]``).

    One pair of calls perturbs the element ``a[j][idx]`` of every block ``j`` at once (in place, then restored)
    and reads each block's own difference: ``g[j][idx] = (f()[j] up - f()[j] down) / (2 eps)``, the central
    difference of :func:`numerical_grad` for every element, with ``len(a)`` times fewer calls.  That ``a[j]``
    moves nothing outside block ``j`` is what the caller asserts (:func:`helpers.check_grad_by_block` does,
    for one element of every block).
    """
    g = np.zeros(a.shape, dtype=np.float64)
    for idx in np.ndindex(a.shape[1:]):
        at = (slice(None),) + idx
        old = a[at].copy()
        a[at] = old + eps
        up = np.asarray(f(), dtype=np.float64)
        a[at] = old - eps
        down = np.asarray(f(), dtype=np.float64)
        a[at] = old
        g[at] = (up - down) / (2 * eps)
    return g
