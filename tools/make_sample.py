"""Build fastcnn/sample_data/mnist_sample.npz, the MNIST subset packaged with fastcnn.

Usage::

    python tools/make_sample.py [MNIST_DIR] [--output PATH]

MNIST_DIR holds the four standard IDX files (gzip or raw; default
``../shared/data/mnist`` next to the repository).  The sample is a stratified,
deterministic subset: the first 600 images of each digit from the training set
and the first 100 of each digit from the test set, each kept in the original
order, stored as uint8 with ``np.savez_compressed`` under the keys
``x_train`` (6000, 28, 28), ``y_train`` (6000,), ``x_test`` (1000, 28, 28),
``y_test`` (1000,).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastcnn.data import load_mnist  # noqa: E402

TRAIN_PER_CLASS = 600
TEST_PER_CLASS = 100


def stratified_first(labels, per_class):
    """Indices of the first ``per_class`` examples of each class, in original order."""
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} examples, need {per_class}")
        keep[idx[:per_class]] = True
    return np.flatnonzero(keep)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mnist_dir", nargs="?", default=REPO.parent / "shared/data/mnist")
    parser.add_argument(
        "--output", default=REPO / "fastcnn/sample_data/mnist_sample.npz", type=Path
    )
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_mnist(args.mnist_dir)
    tr = stratified_first(y_train, TRAIN_PER_CLASS)
    te = stratified_first(y_test, TEST_PER_CLASS)
    out = {
        "x_train": x_train[tr, 0].astype(np.uint8),
        "y_train": y_train[tr].astype(np.uint8),
        "x_test": x_test[te, 0].astype(np.uint8),
        "y_test": y_test[te].astype(np.uint8),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **out)
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size / 1e6:.2f} MB): "
          + ", ".join(f"{k} {v.shape}" for k, v in out.items()))


if __name__ == "__main__":
    main()
