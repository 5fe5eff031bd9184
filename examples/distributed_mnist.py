"""Train LeNet-5 data-parallel over MPI processes with fastcnn.distributed (Horovod's pattern).

    pip install 'fastcnn[mpi]'                                        # mpi4py and mpiexec (the mpich wheel)
    mpiexec -n 4 python examples/distributed_mnist.py --threads 1     # 4 ranks of one thread each
    mpiexec -n 2 python examples/distributed_mnist.py --tiny          # seconds: what the tests run
    python examples/distributed_mnist.py --tiny                        # one process: no MPI needed

Every rank runs this whole script: it loads the same data, builds the same model and calls
``distributed.fit``, which checks that the ranks agree, gives every rank rank 0's weights, and, for each
global batch of ``--batch`` images (in the order one process would draw), lets each rank compute the gradient
of its share before one allreduce sums them.  The weights after each epoch are one process's, up to float
rounding.  Only rank 0 prints and saves.
"""

import argparse
import time

import fastcnn
from fastcnn import distributed
from fastcnn.data import Normalizer, load_mnist


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="folder with the MNIST IDX files (default: packaged sample)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="the global batch, split over the ranks")
    parser.add_argument("--threads", type=int, default=None, help="threads per rank (default: Numba's)")
    parser.add_argument("--out", default=None, help="where rank 0 saves the model (default: nowhere)")
    parser.add_argument("--tiny", action="store_true", help="one epoch on 512 images")
    args = parser.parse_args()

    comm = distributed.world()  # None unless an MPI launcher started several processes
    rank, size = (0, 1) if comm is None else (comm.rank, comm.size)
    if args.threads is not None:
        fastcnn.set_num_threads(args.threads)

    (x_train, y_train), (x_test, y_test) = load_mnist(args.data)  # every rank loads all of it
    epochs = args.epochs
    if args.tiny:
        x_train, y_train, x_test, y_test, epochs = x_train[:512], y_train[:512], x_test[:128], y_test[:128], 1
    norm = Normalizer("standardize").fit(x_train)
    x_train, x_test = norm.transform(x_train), norm.transform(x_test)

    fastcnn.manual_seed(0)  # the same on every rank; distributed.fit broadcasts rank 0's weights anyway
    model = fastcnn.models.lenet5()
    opt = fastcnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    if rank == 0:
        print(f"LeNet-5 on {len(x_train)} images, global batch {args.batch} over {size} rank(s) of "
              f"{fastcnn.get_num_threads()} thread(s)", flush=True)
    start = time.perf_counter()
    history = distributed.fit(model, x_train, y_train, epochs=epochs, batch_size=args.batch, optimizer=opt,
                              seed=0, comm=comm, verbose=rank == 0)
    seconds = time.perf_counter() - start
    test = distributed.evaluate(model, x_test, y_test, comm=comm)  # the test set split over the ranks
    if rank == 0:
        print(f"{epochs * len(x_train) / seconds:,.0f} images/s; final loss {history['loss'][-1]:.4f}; "
              f"final test accuracy {100 * test['accuracy']:.2f}%", flush=True)
        if args.out:
            model.save(args.out)


if __name__ == "__main__":
    main()
