"""Peak memory of a full-MNIST LeNet-5 fit: fastcnn's ``Sequential.fit`` against a plain PyTorch loop.

Each framework runs in a fresh process of its own (so neither sees the other's
imports), which reads the MNIST training set the same way (numpy, from the
idx files), standardises it to float32, and trains LeNet-5 with SGD (lr 0.01,
momentum 0.9, weight decay 5e-4) at batch 64: fastcnn through ``model.fit``,
PyTorch through zero_grad / forward / cross_entropy / backward / step over a
shuffled order.  Each process reports its peak resident set size (``VmHWM``,
what ``/usr/bin/time -v`` calls maximum resident set size) and the resident
size after its imports and after the data were loaded.

Usage::

    python bench/peak_memory.py [--data ../shared/data/mnist] [--batches B] [--threads N]

``--batches`` limits the epoch (default: the whole training set, 938 batches).
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "mnist")


def _status_kib(field):
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_train(folder):
    """The MNIST training set: x (60000, 1, 28, 28) float32 standardised, y (60000,) int64."""
    images = _read_idx(os.path.join(folder, "train-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"))
    x = images.reshape(-1, 1, 28, 28).astype(np.float32)
    x /= np.float32(255)
    # statistics in chunks: x.std() would make a float64 temporary twice the size of x
    chunks = np.array_split(x.reshape(len(x), -1), 60)
    total = sum(float(c.sum(dtype=np.float64)) for c in chunks)
    squares = sum(float(np.square(c, dtype=np.float64).sum()) for c in chunks)
    mean = total / x.size
    std = (squares / x.size - mean * mean) ** 0.5
    x -= np.float32(mean)
    x /= np.float32(std)
    return x, labels.astype(np.int64)


def _reset_peak():
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_fastcnn(x, y, batches, threads):
    import fastcnn
    from fastcnn.models import lenet5
    from fastcnn.optim import SGD

    if threads:
        fastcnn.set_num_threads(threads)
    fastcnn.manual_seed(0)
    model = lenet5()
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    n = min(len(x), batches * 64)
    model.fit(x[:n], y[:n], epochs=1, batch_size=64, optimizer=opt, verbose=False, seed=0)


def run_torch(x, y, batches, threads):
    import torch
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    n = min(len(x), batches * 64)
    xs, ys = torch.from_numpy(x[:n]), torch.from_numpy(y[:n])
    order = torch.from_numpy(np.random.default_rng(0).permutation(n))
    for lo in range(0, n, 64):
        idx = order[lo:lo + 64]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xs[idx]), ys[idx])
        loss.backward()
        opt.step()


def child(framework, data, batches, threads):
    """Run one framework in this process; print a JSON line of its memory figures (MiB) and time."""
    if framework == "fastcnn":
        import fastcnn  # noqa: F401  (imports counted before the data, as for torch)
    else:
        import torch  # noqa: F401
    after_import = _status_kib("VmRSS")
    x, y = load_train(data)
    after_data = _status_kib("VmRSS")
    loading_peak = _status_kib("VmHWM")
    reset = _reset_peak()
    t0 = time.perf_counter()
    (run_fastcnn if framework == "fastcnn" else run_torch)(x, y, batches, threads)
    seconds = time.perf_counter() - t0
    mib = 1 / 1024
    peak = _status_kib("VmHWM")
    print(json.dumps({"framework": framework, "after_import_mib": after_import * mib,
                      "after_data_mib": after_data * mib, "loading_peak_mib": loading_peak * mib,
                      "peak_mib": (peak if reset else max(peak, loading_peak)) * mib,
                      "training_peak_mib": peak * mib if reset else None,
                      "final_mib": _status_kib("VmRSS") * mib, "seconds": seconds, "images": min(len(x), batches * 64)}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with the MNIST idx files (train-*.gz)")
    parser.add_argument("--batches", type=int, default=10**9, help="batches of 64 (default: one whole epoch)")
    parser.add_argument("--threads", type=int, default=0, help="threads for both frameworks (default: theirs)")
    parser.add_argument("--child", choices=("fastcnn", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.data, args.batches, args.threads)
        return
    rows = []
    for framework in ("fastcnn", "torch"):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, "--data", args.data,
               "--batches", str(args.batches), "--threads", str(args.threads)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(HERE, ".."), os.environ.get("PYTHONPATH", "")]))
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(f"{framework}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"LeNet-5 fit, batch 64, MNIST training set ({rows[0]['images'] if rows else '?'} images), one process each")
    print(f"{'framework':9s}  {'peak RSS':>9s}  {'after import':>12s}  {'after data':>10s}  {'training adds':>13s}  {'time':>6s}")
    for r in rows:
        print(f"{r['framework']:9s}  {r['peak_mib']:6.0f} MiB  {r['after_import_mib']:8.0f} MiB  "
              f"{r['after_data_mib']:6.0f} MiB  {r['peak_mib'] - r['after_data_mib']:9.0f} MiB  {r['seconds']:5.1f}s")
    print("peak RSS: the process's peak while training (the kernel's VmHWM, reset after loading the data; "
          "loading's own peak is the same code in both)")
    if len(rows) == 2:
        print(f"fastcnn / torch peak: {rows[0]['peak_mib'] / rows[1]['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
