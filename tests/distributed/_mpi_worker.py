"""Run by tests/distributed/test_mpi.py under ``mpiexec`` (and alone, for the single-process reference).

``python _mpi_worker.py OUT.npz [--sync-bn] [--fault raise|kill|exit|hang] [--n N [N ...]]``: trains a small
network with BatchNorm, Dropout and augmentation (data-parallel when started with several ranks) and writes the
weights and BatchNorm statistics and the history (rank 0), and on every rank a digest of them to OUT.rank<R>.txt;
with several ``--n``, one fit after the other in the same process, on N examples each, to ``N-OUT.npz``.  ``--fault``
makes rank 1 fail at its third step: raise an exception, SIGKILL itself, exit without a word, or hang.
"""

import argparse
import json
import os
import signal
import sys
import time

import numpy as np

import fastcnn
from fastcnn import distributed
from fastcnn.augment import Augment
from fastcnn.callbacks import Callback
from fastcnn.layers import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU


class Fault(Callback):
    def __init__(self, rank, kind):
        self.rank, self.kind = rank, kind

    def on_batch_end(self, model, batch, logs):
        if self.rank != 1 or batch != 2:
            return
        if self.kind == "raise":
            raise RuntimeError("injected failure on rank 1")
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kind == "exit":
            os._exit(3)
        if self.kind == "hang":
            while True:
                time.sleep(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--sync-bn", action="store_true")
    parser.add_argument("--fault", default=None)
    parser.add_argument("--n", type=int, nargs="+", default=[203])
    parser.add_argument("--single", action="store_true")
    args = parser.parse_args()
    fastcnn.set_num_threads(1)
    comm = None if args.single else distributed.Communicator()
    for n in args.n:
        fit(n, args.out if len(args.n) == 1 else f"{n}-{args.out}", comm, args)
    return 0


def fit(n, out, comm, args):
    fastcnn.manual_seed(1)
    model = fastcnn.Sequential(Conv2d(1, 4, 3), BatchNorm2d(4), ReLU(), MaxPool2d(2), Flatten(), Dropout(0.3),
                               Linear(4 * 13 * 13, 10))
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    opt = fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    kwargs = dict(epochs=2, batch_size=32, optimizer=opt, seed=3, verbose=False, validation_data=(x[:31], y[:31]),
                  augment=Augment(shift=2, rotation=5.0, seed=1))
    if comm is None:
        history, rank = model.fit(x, y, **kwargs), 0
    else:
        rank = comm.rank
        callbacks = [Fault(rank, args.fault)] if args.fault else None
        history = distributed.fit(model, x, y, comm=comm, sync_batchnorm=args.sync_bn, callbacks=callbacks, **kwargs)
    weights = [p.data for p in model.parameters()] + [model.layers[1].running_mean, model.layers[1].running_var]
    with open(f"{out}.rank{rank}.txt", "w") as f:
        f.write(distributed.fingerprint(np.concatenate([w.ravel() for w in weights])))
    if rank == 0:
        np.savez(out, *weights)
        with open(out + ".json", "w") as f:
            json.dump({k: v for k, v in history.items() if k != "epoch_time"}, f)


if __name__ == "__main__":
    sys.exit(main())
