"""Seeded, disjoint, stratified splits of a data set.

:func:`split_indices` deals the indices into parts; :func:`train_val_split`
and :func:`train_val_test_split` apply it to images and labels.
"""

import numpy as np

from .._util import check_fraction

__all__ = ["split_indices", "train_val_split", "train_val_test_split"]


def _check_fractions(fractions, fn, name="fractions"):
    try:
        f = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a sequence of numbers, got {fractions!r}") from None
    if f.ndim != 1 or len(f) < 2:
        raise ValueError(f"{fn}: {name} must be a sequence of at least 2 numbers, got {fractions!r}")
    if not np.all((f > 0) & (f < 1)):
        raise ValueError(f"{fn}: each of {name} must be in (0, 1), got {fractions!r}")
    if abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"{fn}: {name} must sum to 1, got {fractions!r} (sum {f.sum():g})")
    return f / f.sum()


def _check_labels(y, fn):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{fn}: y must be 1-D labels (N,), got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{fn}: y must hold integer labels, got dtype {y.dtype}")
    return y


def _interleave(n, fractions):
    """Part of each of n positions so that every prefix of length L holds within 1 of ``f_k * L`` of part k."""
    f = [float(v) for v in fractions]
    assigned = [0] * len(f)
    parts = np.empty(n, dtype=np.int64)
    for p in range(n):
        best, best_gap = 0, None
        for k, fk in enumerate(f):
            gap = fk * (p + 1) - assigned[k]
            if best_gap is None or gap > best_gap:
                best, best_gap = k, gap
        parts[p] = best
        assigned[best] += 1
    return parts


def split_indices(y, fractions, seed=0, stratify=True):
    """Seeded, disjoint, covering split of ``range(len(y))`` into parts of the given fractions.

    With ``stratify`` the examples are grouped by class (classes in random
    order, examples within a class in random order) and dealt to the parts in
    a fixed interleaved pattern in which every run of ``L`` consecutive
    positions holds ``fractions[k] * L`` of part ``k`` give or take 1.5.  So
    each part's size is within 1 of ``fractions[k] * N`` and holds each class
    in proportion (within 1.5 examples), even classes too small to split
    exactly.  Without it, all examples are shuffled and dealt the same way.

    Parameters
    ----------
    y : array_like of int, (N,)
        Labels.
    fractions : sequence of float
        Size of each part, each in (0, 1), summing to 1.
    seed : int, numpy.random.Generator or None
        The same seed and labels give the same split.
    stratify : bool
        Keep class proportions in every part.

    Returns
    -------
    tuple of numpy.ndarray
        One sorted int64 index array per part.

    Raises
    ------
    ValueError
        If the fractions are invalid or a part would be empty.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import split_indices
    >>> train, val = split_indices(np.repeat([0, 1], 10), (0.8, 0.2))
    >>> len(train), len(val), np.bincount(np.repeat([0, 1], 10)[val]).tolist()
    (16, 4, [2, 2])
    """
    f = _check_fractions(fractions, "split_indices")
    y = _check_labels(y, "split_indices")
    rng = np.random.default_rng(seed)
    n = len(y)
    if stratify:
        classes = np.unique(y)
        order = []
        for c in rng.permutation(classes):
            members = np.flatnonzero(y == c)
            order.append(rng.permutation(members))
        order = np.concatenate(order) if order else np.empty(0, np.int64)
    else:
        order = rng.permutation(n)
    parts = _interleave(n, f)
    out = tuple(np.sort(order[parts == k]).astype(np.int64) for k in range(len(f)))
    empty = [k for k, idx in enumerate(out) if len(idx) == 0]
    if empty:
        raise ValueError(
            f"split_indices: fractions {tuple(float(v) for v in f)} of {n} examples leave part(s) "
            f"{empty} empty; use more data or larger fractions"
        )
    return out


def _check_xy(x, y, fn):
    x = np.asarray(x)
    y = _check_labels(y, fn)
    if x.ndim < 1 or len(x) != len(y):
        raise ValueError(f"{fn}: x and y must have the same length, got x shape {x.shape} and y shape {y.shape}")
    return x, y


def train_val_split(x, y, val_fraction=0.2, seed=0, stratify=True):
    """Split examples into training and validation sets (seeded, stratified by default).

    Parameters
    ----------
    x : array_like, (N, ...)
        Images.
    y : array_like of int, (N,)
        Labels.
    val_fraction : float, default 0.2
        Share of the examples in the validation set, in (0, 1).
    seed : int, numpy.random.Generator or None, default 0
        The same seed gives the same split.
    stratify : bool, default True
        Keep every class's proportion in both sets (see :func:`split_indices`).

    Returns
    -------
    (x_train, y_train), (x_val, y_val) : tuple of tuples of numpy.ndarray
        Disjoint, together all the examples, each in the original order.

    Raises
    ------
    ValueError
        If ``val_fraction`` is not in (0, 1), x and y differ in length, or a
        set would be empty.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import train_val_split
    >>> x, y = np.zeros((100, 1, 4, 4), np.uint8), np.repeat(np.arange(4), 25)
    >>> (x_tr, y_tr), (x_val, y_val) = train_val_split(x, y, val_fraction=0.2, seed=0)
    >>> len(x_tr), len(x_val), np.bincount(y_val).tolist()
    (80, 20, [5, 5, 5, 5])
    """
    x, y = _check_xy(x, y, "train_val_split")
    val_fraction = check_fraction(val_fraction, "val_fraction", "train_val_split")
    tr, va = split_indices(y, (1.0 - val_fraction, val_fraction), seed=seed, stratify=stratify)
    return (x[tr], y[tr]), (x[va], y[va])


def train_val_test_split(x, y, fractions=(0.65, 0.25, 0.10), seed=0, stratify=True):
    """Split examples into training, validation and test sets (seeded, stratified by default).

    Parameters
    ----------
    x : array_like, (N, ...)
        Images.
    y : array_like of int, (N,)
        Labels.
    fractions : (float, float, float), default (0.65, 0.25, 0.10)
        Shares of the training, validation and test sets, each in (0, 1),
        summing to 1.
    seed : int, numpy.random.Generator or None, default 0
        The same seed gives the same split.
    stratify : bool, default True
        Keep every class's proportion in all three sets (see :func:`split_indices`).

    Returns
    -------
    (x_train, y_train), (x_val, y_val), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Disjoint, together all the examples, each in the original order.

    Raises
    ------
    ValueError
        If the fractions are not three numbers in (0, 1) summing to 1, x and
        y differ in length, or a set would be empty.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import train_val_test_split
    >>> x, y = np.zeros((200, 1, 4, 4), np.uint8), np.repeat([0, 1], 100)
    >>> tr, val, te = train_val_test_split(x, y, seed=1)
    >>> len(tr[0]), len(val[0]), len(te[0])
    (130, 50, 20)
    """
    x, y = _check_xy(x, y, "train_val_test_split")
    f = _check_fractions(fractions, "train_val_test_split")
    if len(f) != 3:
        raise ValueError(
            f"train_val_test_split: fractions must be 3 numbers (train, val, test), got {fractions!r}"
        )
    idx = split_indices(y, fractions, seed=seed, stratify=stratify)
    return tuple((x[i], y[i]) for i in idx)
