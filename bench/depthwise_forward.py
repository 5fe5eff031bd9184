"""Forward pass alone of depthwise 3x3 convolutions (padding 1): fastcnn against PyTorch, interleaved.

``kernels.conv2d_forward(x, w, b, stride, 1, groups=C)`` against
``F.conv2d(x, w, b, stride, 1, 1, C)`` under ``torch.no_grad()``, in one
process, in turns: each turn pauses 0.15 s, makes 2 untimed calls, then times
one sample of about 20 ms.  Prints the median time of each and the ratio
(PyTorch's time / fastcnn's: above 1, fastcnn is faster).

Unless ``NUMBA_NUM_THREADS`` is set, the script sets it to ``--threads``
before Numba starts: Numba's OpenMP team otherwise has a thread per core,
and at ``--threads 1`` its idle worker spun beside PyTorch's calls on a
shared 2-core machine (PyTorch's call then took up to 31 ms instead of
0.1-0.3 ms now and then, and fastcnn's medians moved too).

Usage::

    python bench/depthwise_forward.py [--threads 2] [--repeat 21] [--stride 2] [--size 16 32] [--batch 64]
"""

import argparse
import os
import time

import numpy as np


def _sample(fn):
    """Seconds per call of ``fn``, over about 20 ms of calls."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed > 0.02:
            return elapsed / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--stride", type=int, nargs="+", default=[2])
    parser.add_argument("--size", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    args = parser.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))  # before Numba starts (see the docstring)
    import torch
    import torch.nn.functional as F

    import fastcnn
    from fastcnn import kernels as K

    torch.set_num_threads(args.threads)
    fastcnn.set_num_threads(args.threads)
    print(f"uptime: {os.popen('uptime').read().strip()} | threads {args.threads} | repeat {args.repeat} | "
          f"NUMBA_NUM_THREADS {os.environ['NUMBA_NUM_THREADS']}")
    print(f"{'N':>4} {'C':>4} {'HW':>3} {'s':>2} | {'fastcnn us':>10} {'torch us':>9} | torch/fastcnn")
    rng = np.random.default_rng(0)
    for n in args.batch:
        for hw in args.size:
            for c in args.channels:
                for s in args.stride:
                    x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
                    w = rng.standard_normal((c, 1, 3, 3), dtype=np.float32) / 3
                    b = rng.standard_normal(c, dtype=np.float32)
                    xt, wt, bt = map(torch.from_numpy, (x, w, b))

                    def ours():
                        return K.conv2d_forward(x, w, b, s, 1, groups=c)

                    def theirs():
                        with torch.no_grad():
                            return F.conv2d(xt, wt, bt, s, 1, 1, c)

                    times = {"fastcnn": [], "torch": []}
                    for i in range(args.repeat):
                        for name, fn in ((("fastcnn", ours), ("torch", theirs)) if i % 2 == 0 else
                                         (("torch", theirs), ("fastcnn", ours))):
                            time.sleep(0.15)
                            fn()
                            fn()
                            times[name].append(_sample(fn))
                    f, t = (float(np.median(times[k])) for k in ("fastcnn", "torch"))
                    print(f"{n:>4} {c:>4} {hw:>3} {s:>2} | {f * 1e6:>10.0f} {t * 1e6:>9.0f} | {t / f:>6.2f}")


if __name__ == "__main__":
    main()
