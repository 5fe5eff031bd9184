"""Mini-batches of indices: :func:`iterate_minibatches`, the one batching iterator of the library."""

import numpy as np

from .._util import check_int

__all__ = ["iterate_minibatches"]


def iterate_minibatches(n, batch_size=None, shuffle=True, rng=None):
    """Yield index arrays that cover ``range(n)`` once, in mini-batches.

    Parameters
    ----------
    n : int
        Number of examples, >= 1.
    batch_size : int or None
        Examples per batch; the last batch holds the rest.  ``None`` or a
        value >= ``n`` gives one full batch (full-batch gradient descent),
        1 gives one example at a time.
    shuffle : bool, default True
        Visit the examples in a random order (a fresh one each call).
    rng : numpy.random.Generator, int or None
        Source of the order when shuffling.

    Yields
    ------
    numpy.ndarray
        int64 indices of one batch.

    Examples
    --------
    >>> from fastcnn.data import iterate_minibatches
    >>> [b.tolist() for b in iterate_minibatches(5, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    >>> [len(b) for b in iterate_minibatches(5, None, shuffle=True, rng=0)]
    [5]
    """
    n = check_int(n, "n", "iterate_minibatches")
    if n < 1:
        raise ValueError(f"iterate_minibatches: n must be >= 1, got {n}")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", "iterate_minibatches")
        if batch_size < 1:
            raise ValueError(f"iterate_minibatches: batch_size must be >= 1 or None, got {batch_size}")
    if shuffle:
        if not (rng is None or isinstance(rng, np.random.Generator)
                or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool))):
            raise TypeError(
                f"iterate_minibatches: rng must be a numpy.random.Generator, an int seed or None, "
                f"got {type(rng).__name__}"
            )
        order = np.random.default_rng(rng).permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    size = n if batch_size is None else min(int(batch_size), n)
    for start in range(0, n, size):
        yield order[start:start + size]
