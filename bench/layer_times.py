"""Layer times on their own: BatchNorm's training kernels and one 3x3 ``Conv2d``'s forward and forward + backward.

The figures behind the README's "what changed in the training step" items: run it in the old and the new
checkout alternately (``PYTHONPATH`` at each), a few times each, on the same machine::

    python bench/layer_times.py --threads 2
    python bench/layer_times.py --threads 1 --algorithm winograd4

BatchNorm: ``batch_norm_training_forward(..., relu=True)`` and ``batch_norm2d_backward`` with that ReLU's mask on
batches of 64 (16 x 32x32, 32 x 16x16, 64 x 8x8). Conv2d: C -> C channels, 3x3, padding 1, no bias, batch 64, on
the same planes. Each figure is the 20th percentile (``--quantile``) of ``--repeat`` timed calls after two
warm-up calls, in milliseconds.
"""

import argparse
import time

import numpy as np

import fastcnn
from fastcnn import kernels
from fastcnn.layers import Conv2d

SHAPES = ((16, 32), (32, 16), (64, 8))  # (channels, plane side)


def _time(call, repeat, quantile):
    call()
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.quantile(times, quantile))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=fastcnn.get_num_threads())
    parser.add_argument("--algorithm", default="auto", help="the Conv2d's algorithm (default: auto)")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--quantile", type=float, default=0.2)
    args = parser.parse_args(argv)
    fastcnn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"{args.threads} thread(s); ms, {args.quantile:.0%} quantile of {args.repeat} calls")
    for channels, side in SHAPES:
        x = rng.random((64, channels, side, side), dtype=np.float32)
        w, b = np.ones(channels, np.float32), np.zeros(channels, np.float32)
        y, mean, _, inv_std = kernels.batch_norm_training_forward(x, w, b, relu=True)
        bn_forward = _time(lambda: kernels.batch_norm_training_forward(x, w, b, relu=True), args.repeat,
                           args.quantile)
        bn_backward = _time(lambda: kernels.batch_norm2d_backward(x, x, w, mean, inv_std, relu_y=y), args.repeat,
                            args.quantile)
        fastcnn.manual_seed(0)
        conv = Conv2d(channels, channels, 3, padding=1, bias=False, algorithm=args.algorithm)
        dy = np.ones_like(conv.forward(x))
        conv_forward = _time(lambda: conv.forward(x), args.repeat, args.quantile)
        conv_both = _time(lambda: (conv.forward(x), conv.backward(dy)), args.repeat, args.quantile)
        print(f"{channels:3d} x {side}x{side}: BatchNorm forward {bn_forward:.3f}, backward {bn_backward:.3f}; "
              f"Conv2d ({conv.plan(x.shape).forward.algorithm}) forward {conv_forward:.3f}, forward + backward {conv_both:.3f}")


if __name__ == "__main__":
    main()
