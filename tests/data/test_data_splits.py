"""Seeded, stratified splits and the mini-batch iterator in fastcnn.data."""

import numpy as np
import pytest

from fastcnn.data import iterate_minibatches, split_indices, train_val_split, train_val_test_split

# Imbalanced classes, including ones too small to split exactly.
COUNTS = [50, 30, 20, 7, 3, 1]


def labelled(counts=COUNTS, seed=0):
    """x[i] encodes i, so a split can be traced back to indices; y shuffled."""
    y = np.repeat(np.arange(len(counts)), counts)
    y = np.random.default_rng(seed).permutation(y)
    x = np.arange(len(y)).reshape(-1, 1, 1, 1) * np.ones((1, 1, 2, 2), dtype=np.int64)
    return x, y


def indices_of(x_part):
    return x_part[:, 0, 0, 0]


# --------------------------------------------------------------------------- train_val_split


@pytest.mark.parametrize("val_fraction", [0.1, 0.2, 0.5])
def test_train_val_split_stratified_proportions(val_fraction):
    x, y = labelled()
    (x_tr, y_tr), (x_val, y_val) = train_val_split(x, y, val_fraction=val_fraction, seed=3)
    n = len(y)
    assert abs(len(y_val) - val_fraction * n) <= 1
    per_class = np.bincount(y_val, minlength=len(COUNTS))
    for c, count in enumerate(COUNTS):
        assert abs(per_class[c] - val_fraction * count) <= 1.5, (c, per_class[c], count)
    # the pairing of x and y survives the split
    np.testing.assert_array_equal(y[indices_of(x_tr)], y_tr)
    np.testing.assert_array_equal(y[indices_of(x_val)], y_val)


def test_train_val_split_disjoint_and_covering_in_original_order():
    x, y = labelled()
    (x_tr, _), (x_val, _) = train_val_split(x, y, seed=1)
    i_tr, i_val = indices_of(x_tr), indices_of(x_val)
    assert np.intersect1d(i_tr, i_val).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([i_tr, i_val])), np.arange(len(y)))
    assert np.all(np.diff(i_tr) > 0) and np.all(np.diff(i_val) > 0)


def test_train_val_split_seeded():
    x, y = labelled()
    a = train_val_split(x, y, seed=7)
    b = train_val_split(x, y, seed=7)
    c = train_val_split(x, y, seed=8)
    np.testing.assert_array_equal(a[1][0], b[1][0])
    assert not np.array_equal(indices_of(a[1][0]), indices_of(c[1][0]))


def test_train_val_split_unstratified_sizes_and_cover():
    x, y = labelled()
    (x_tr, _), (x_val, _) = train_val_split(x, y, val_fraction=0.25, stratify=False, seed=0)
    assert abs(len(x_val) - 0.25 * len(y)) <= 1
    np.testing.assert_array_equal(np.sort(np.concatenate([indices_of(x_tr), indices_of(x_val)])),
                                  np.arange(len(y)))


def test_many_tiny_classes_still_give_a_proportional_validation_set():
    # 100 classes of 2: no class can hold 0.2 of itself, yet the set must not come out empty
    y = np.repeat(np.arange(100), 2)
    (_, y_tr), (_, y_val) = train_val_split(np.zeros((200, 1)), y, val_fraction=0.2)
    assert len(y_val) == 40 and len(y_tr) == 160
    assert np.bincount(y_val, minlength=100).max() == 1


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1])
def test_train_val_split_rejects_bad_fraction(bad):
    x, y = labelled()
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(x, y, val_fraction=bad)


def test_train_val_split_rejects_bool_fraction_and_mismatch():
    x, y = labelled()
    with pytest.raises(TypeError, match="val_fraction"):
        train_val_split(x, y, val_fraction=True)
    with pytest.raises(ValueError, match="same length"):
        train_val_split(x[:-1], y)
    with pytest.raises(ValueError, match="integer labels"):
        train_val_split(x, y.astype(float))


def test_empty_part_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        train_val_split(np.zeros((3, 1)), np.array([0, 1, 0]), val_fraction=0.1)


# --------------------------------------------------------------------------- three-way


def test_train_val_test_split_default_fractions():
    x, y = labelled([200, 100, 60, 40])
    parts = train_val_test_split(x, y, seed=2)
    n = len(y)
    for (xp, yp), f in zip(parts, (0.65, 0.25, 0.10)):
        assert abs(len(yp) - f * n) <= 1
        for c, count in enumerate([200, 100, 60, 40]):
            assert abs(np.sum(yp == c) - f * count) <= 1.5
        np.testing.assert_array_equal(y[indices_of(xp)], yp)
    all_idx = np.concatenate([indices_of(p[0]) for p in parts])
    np.testing.assert_array_equal(np.sort(all_idx), np.arange(n))


def test_train_val_test_split_seeded():
    x, y = labelled()
    a = train_val_test_split(x, y, fractions=(0.6, 0.2, 0.2), seed=5)
    b = train_val_test_split(x, y, fractions=(0.6, 0.2, 0.2), seed=5)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize(
    "fractions,match",
    [
        ((0.5, 0.3, 0.3), "sum to 1"),
        ((0.7, 0.3, 0.0), r"\(0, 1\)"),
        ((1.0, 0.0, 0.0), r"\(0, 1\)"),
        ((0.5, 0.5), "3 numbers"),
        ((0.4, 0.3, 0.2, 0.1), "3 numbers"),
        ((0.5, "a", 0.5), "numbers"),
    ],
)
def test_train_val_test_split_rejects_bad_fractions(fractions, match):
    x, y = labelled()
    with pytest.raises((ValueError, TypeError), match=match):
        train_val_test_split(x, y, fractions=fractions)


def test_split_indices_returns_sorted_int64():
    y = np.repeat([0, 1, 2], 10)
    parts = split_indices(y, (0.5, 0.5), seed=0)
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    assert [np.bincount(y[p]).tolist() for p in parts] == [[5, 5, 5], [5, 5, 5]]


# --------------------------------------------------------------------------- iterate_minibatches


@pytest.mark.parametrize("batch_size", [None, 10, 11, 1000])
def test_full_batch(batch_size):
    batches = list(iterate_minibatches(10, batch_size, shuffle=True, rng=0))
    assert len(batches) == 1
    np.testing.assert_array_equal(np.sort(batches[0]), np.arange(10))


def test_per_example():
    batches = list(iterate_minibatches(7, 1, shuffle=False))
    assert [b.tolist() for b in batches] == [[i] for i in range(7)]


def test_minibatches_cover_once_last_smaller():
    batches = list(iterate_minibatches(23, 5, shuffle=True, rng=np.random.default_rng(1)))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    allidx = np.concatenate(batches)
    assert allidx.dtype == np.int64
    np.testing.assert_array_equal(np.sort(allidx), np.arange(23))
    assert not np.array_equal(allidx, np.arange(23))


def test_minibatches_seeded_and_generator_advances():
    a = np.concatenate(list(iterate_minibatches(50, 8, True, 3)))
    b = np.concatenate(list(iterate_minibatches(50, 8, True, 3)))
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(3)
    e1 = np.concatenate(list(iterate_minibatches(50, 8, True, rng)))
    e2 = np.concatenate(list(iterate_minibatches(50, 8, True, rng)))
    np.testing.assert_array_equal(e1, a)
    assert not np.array_equal(e1, e2)


def test_minibatches_unshuffled_in_order():
    assert [b.tolist() for b in iterate_minibatches(5, 2, shuffle=False)] == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(n=0, batch_size=2), ValueError, "n must be >= 1"),
        (dict(n=2.0, batch_size=2), TypeError, "n must be an int"),
        (dict(n=5, batch_size=0), ValueError, "batch_size"),
        (dict(n=5, batch_size=2.5), TypeError, "batch_size"),
        (dict(n=5, batch_size=True), TypeError, "batch_size"),
        (dict(n=5, batch_size=2, rng="x"), TypeError, "rng"),
    ],
)
def test_minibatches_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        list(iterate_minibatches(**kwargs))
