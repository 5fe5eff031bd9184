"""End-to-end: LeNet-5 on the full MNIST reaches >= 99% test accuracy.

Slow (minutes): deselected by default (``addopts = -m 'not slow'``); run with
``pytest -m slow tests/training/test_mnist_slow.py``.  Needs the four MNIST IDX files in
``<workspace>/shared/data/mnist`` (skipped when absent).
"""

import numpy as np
import pytest

import fastcnn
from fastcnn.optim import SGD
from helpers import MNIST_DIR


@pytest.mark.slow
def test_lenet5_mnist_reaches_99_percent():
    data = pytest.importorskip("fastcnn.data")
    if not hasattr(data, "load_mnist"):
        pytest.skip("fastcnn.data.load_mnist is not available")
    if not MNIST_DIR.is_dir():
        pytest.skip(f"MNIST not found in {MNIST_DIR}")
    (x_train, y_train), (x_test, y_test) = data.load_mnist(MNIST_DIR)
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)

    x_train = x_train.astype(np.float32) / 255.0
    x_test = x_test.astype(np.float32) / 255.0
    mean, std = float(x_train.mean()), float(x_train.std())
    x_train = (x_train - mean) / std
    x_test = (x_test - mean) / std

    fastcnn.manual_seed(0)
    model = fastcnn.models.lenet5()
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    hist = model.fit(x_train, y_train, epochs=8, batch_size=64, optimizer=opt, seed=0, verbose=False)
    assert len(hist["loss"]) == 8
    opt.lr = 0.005
    hist = model.fit(x_train, y_train, epochs=2, batch_size=64, optimizer=opt, seed=1, verbose=False,
                     validation_data=(x_test, y_test))
    assert hist["lr"] == [0.005, 0.005]

    result = model.evaluate(x_test, y_test)
    print(f"\nLeNet-5 full MNIST, 10 epochs: test accuracy {100 * result['accuracy']:.2f}%")
    assert result["accuracy"] >= 0.99, result
