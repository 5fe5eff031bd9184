"""Compile every fastcnn kernel in float32 and float64 (or the dtypes named), and report how long it took.

    NUMBA_CACHE_DIR=$(mktemp -d) python tools/compile_all.py    # cold: nothing cached yet
    python tools/compile_all.py                                 # warm: loads from the cache (tests/conftest.py
                                                                # runs this in the background of a whole run)
    python tools/compile_all.py float64                         # float64 only
    python tools/compile_all.py float32 --slowest 12            # and the 12 longest compiles, kernel by kernel

Useful to measure compile time and to fill the cache before timing anything.  ``--slowest N`` lists the
functions whose compiles took longest (a task body apart from the kernel that calls it; a helper compiled
inside another function's compile counts in that function's time), from Numba's ``numba:compile`` events.
"""

import collections
import sys
import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402

import fastcnn  # noqa: E402
from fastcnn import kernels as K  # noqa: E402
from fastcnn.augment import Augment  # noqa: E402
from numba.core import event  # noqa: E402

t_import = time.perf_counter() - t0

# (N, C, H, W, K, R, S, padding) for the algorithms that apply to particular shapes only
CONV_SHAPES = {"matmul_1x1": (8, 3, 6, 6, 4, 1, 1, 0), "matmul_whole_input": (8, 3, 6, 6, 4, 6, 6, 0),
               "depthwise": (8, 3, 6, 6, 6, 3, 3, 1)}


def touch_everything(dtype):
    rng = np.random.default_rng(0)
    for algorithm in K.CONV_ALGORITHMS:  # every algorithm a plan can name, each pass
        N, C, H, W, Kout, R, S, pad = CONV_SHAPES.get(algorithm, (8, 3, 6, 6, 4, 3, 3, 1))
        groups = C if algorithm == "depthwise" else 1  # depthwise: each channel its own group
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        w = rng.standard_normal((Kout, C // groups, R, S)).astype(dtype)
        y = K.conv2d_forward(x, w, None, 1, pad, algorithm=algorithm, groups=groups)
        K.conv2d_backward(y, x, w, 1, pad, algorithm=algorithm, groups=groups)
    x = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    y, a = K.max_pool2d_forward(x, 2)
    K.max_pool2d_backward(y, a, x.shape)
    K.max_pool2d_forward(x, 3, stride=2, padding=1)  # the general kernel (2x2 / stride 2 has its own)
    K.avg_pool2d_backward(K.avg_pool2d_forward(x, 2), x.shape, 2)
    K.global_avg_pool2d_backward(K.global_avg_pool2d_forward(x), x.shape)
    K.global_max_pool2d_backward(*K.global_max_pool2d_forward(x), x.shape)
    K.col2im(K.im2col(x, 3), x.shape, 3)
    for width in (6, 12):  # depthwise 3x3 stride 2 on even planes: its own forwards (narrow planes, 12 or wider)
        xd = rng.standard_normal((2, 3, 6, width)).astype(dtype)
        K.conv2d_forward(xd, rng.standard_normal((3, 1, 3, 3)).astype(dtype), None, 2, 1, groups=3)
    xd, wd = rng.standard_normal((2, 3, 6, 6)).astype(dtype), rng.standard_normal((3, 1, 3, 3)).astype(dtype)
    K.conv2d_backward(K.conv2d_forward(xd, wd, None, 2, 1, groups=3), xd, wd, 2, 1, groups=3)  # stride-2 weight grad
    # depthwise 3x3 stride 1 on a plane too wide for the stacked kernel (CONV_SHAPES' 6x6 plane runs that one)
    xd, wd = rng.standard_normal((2, 3, 6, 18)).astype(dtype), rng.standard_normal((3, 1, 3, 3)).astype(dtype)
    K.conv2d_backward(K.conv2d_forward(xd, wd, None, 1, 1, groups=3), xd, wd, 1, 1, groups=3)  # general backward too
    for f, g in ((K.relu_forward, K.relu_backward), (K.sigmoid_forward, K.sigmoid_backward),
                 (K.tanh_forward, K.tanh_backward)):
        out = f(x)
        g(out, x if f is K.relu_forward else out)
    xf = x.reshape(len(x), -1)
    wl = rng.standard_normal((5, xf.shape[1])).astype(dtype)
    logits = K.linear_forward(xf, wl, None)
    K.linear_backward(logits, xf, wl)
    K.linear_forward_rows_kernel(xf, wl, np.zeros(5, dtype), np.empty((len(xf), 5), dtype), True)  # eval path
    v = np.ones(5, dtype)
    K.batch_norm_fold_kernel(wl, v, v, v, v, v, 1e-5, True, True, np.empty_like(wl), v.copy())  # eval BatchNorm
    K.softmax_cross_entropy(logits, np.zeros(len(x), np.int64))
    K.mse_loss(logits, logits)
    Augment(shift=1, rotation=5.0, noise=0.1, seed=0)(x)
    for n in (2, 8):  # batch norm, leaky ReLU, softmax, locally connected
        xb = rng.standard_normal((n, 3, 6, 6)).astype(dtype)
        gamma, beta = np.ones(3, dtype), np.zeros(3, dtype)
        y, mean, inv_std = K.batch_norm2d_forward(xb, gamma, beta, np.zeros(3, dtype), np.ones(3, dtype))
        K.batch_norm2d_backward(y, xb, gamma, mean, inv_std)
        y, mean, _, inv_std = K.batch_norm_training_forward(xb, gamma, beta, relu=True)  # with the ReLU after it
        K.batch_norm2d_backward(y, xb, gamma, mean, inv_std, relu_y=y)
        K.residual_add(K.residual_add(xb, xb), xb, relu=True)
        K.batch_norm2d_forward(xb, gamma, beta, np.zeros(3, dtype), np.ones(3, dtype), training=False)
        y1, m1, s1 = K.batch_norm1d_forward(xb.reshape(n, -1)[:, :3].copy(), gamma, beta, None, None)
        K.batch_norm1d_backward(y1, xb.reshape(n, -1)[:, :3].copy(), gamma, m1, s1)
        K.leaky_relu_backward(K.leaky_relu_forward(xb), xb)
        sm = K.softmax_forward(xb.reshape(n, -1))
        K.softmax_backward(sm, sm)
        wl = rng.standard_normal((4, 4, 2, 3, 3, 3)).astype(dtype)
        yl = K.locally_connected2d_forward(xb, wl, np.zeros((2, 4, 4), dtype))
        K.locally_connected2d_backward(yl, xb, wl)
    p = fastcnn.layers.Parameter(wl.copy())
    opt = fastcnn.optim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    opt.step()


class _Clock(event.Listener):
    """Seconds of the outermost compiles, by function (nested ones count in their caller's)."""

    def __init__(self):
        self.depth, self.seconds = [], collections.Counter()

    def on_start(self, ev):
        self.depth.append(time.perf_counter())

    def on_end(self, ev):
        start = self.depth.pop()
        if not self.depth:
            func = getattr(ev.data["dispatcher"], "py_func", None)
            name = f"{func.__module__}.{func.__qualname__}" if func is not None else str(ev.data["dispatcher"])
            self.seconds[name] += time.perf_counter() - start


args = sys.argv[1:]
slowest = int(args[args.index("--slowest") + 1]) if "--slowest" in args else 0
dtypes = [a for a in args if a in ("float32", "float64")] or ["float32", "float64"]
clock = _Clock()
event.register("numba:compile", clock)
t1 = time.perf_counter()
for name in dtypes:
    touch_everything(np.dtype(name).type)
t_compile = time.perf_counter() - t1
print(f"import fastcnn: {t_import:.1f}s; every kernel in {' and '.join(dtypes)}: {t_compile:.1f}s")
for name, seconds in clock.seconds.most_common(slowest):
    print(f"  {seconds:6.2f}s  {name}")
