"""One model's training step alone: its median time and the page faults it takes, with fastcnn's malloc setting.

The step is ``fastcnn bench models``'s (forward, cross-entropy, backward of a random batch, no optimizer step),
timed on its own after a few warm-up steps; the minor page faults are the process's (``getrusage``) over the timed
steps.  ``fastcnn.keep_freed_memory()`` runs first, as in ``fit`` and the benchmarks, so
``FASTCNN_KEEP_FREED_MEMORY=0`` in the environment shows the step with glibc's default malloc thresholds::

    python bench/step_faults.py --model resnet_small --threads 2
    FASTCNN_KEEP_FREED_MEMORY=0 python bench/step_faults.py --model resnet_small --threads 2

Run the two alternately, a few times each: the machine's speed moves between runs.
"""

import argparse
import resource
import time

import numpy as np

import fastcnn
from fastcnn.bench.models import BENCH_MODELS, MODEL_INPUT_SHAPES, fastcnn_step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet_small", choices=sorted(BENCH_MODELS))
    parser.add_argument("--threads", type=int, default=fastcnn.get_num_threads())
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=9)
    args = parser.parse_args(argv)
    malloc = fastcnn.keep_freed_memory()
    fastcnn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)  # the bench's batch: images in [0, 1), 10 classes
    x = rng.random((args.batch,) + MODEL_INPUT_SHAPES[args.model], dtype=np.float32)
    y = rng.integers(0, 10, args.batch).astype(np.int64)
    fastcnn.manual_seed(0)
    step = fastcnn_step(fastcnn.models.get_model(args.model).train(), x, y)
    for _ in range(3):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(f"{args.model}, batch {args.batch}, {args.threads} thread(s), malloc thresholds: {malloc}: "
          f"step {1e3 * float(np.median(times)):.1f} ms (median of {args.steps}), "
          f"{faults // args.steps} minor page faults a step")


if __name__ == "__main__":
    main()
