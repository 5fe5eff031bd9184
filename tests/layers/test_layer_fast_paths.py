"""The layers' per-shape fast paths (checked once per input shape, then the kernels run directly)
give what the checked functions give, and refuse what they refuse."""

import numpy as np
import pytest

from fastcnn import kernels
from fastcnn import Sequential
from fastcnn.layers import BatchNorm2d, Conv2d, MaxPool2d, ReLU


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("args", [(2,), ([2, 2], [2, 2]), (3, 2, 1), ((3, 2), (1, 2), (1, 0), True)])
def test_max_pooling_layer_matches_the_checked_function_shape_after_shape(args):
    pool = MaxPool2d(*args)
    for shape in [(2, 3, 9, 8), (1, 3, 6, 7), (2, 3, 9, 8)]:  # back to the first shape: the remembered geometry
        x = _x(shape)
        y = pool.forward(x)
        want, argmax = kernels.max_pool2d_forward(x, *args)
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(pool._argmax, argmax)


def test_max_pooling_layer_takes_non_contiguous_and_float64_inputs():
    pool = MaxPool2d(2)
    x = _x((2, 3, 8, 8))
    np.testing.assert_array_equal(pool.forward(x[:, :, :, ::-1]), kernels.max_pool2d_forward(x[:, :, :, ::-1], 2)[0])
    x64 = x.astype(np.float64)
    assert pool.forward(x64).dtype == np.float64


def test_max_pooling_layer_refuses_a_too_small_input_every_time():
    pool = MaxPool2d(3)
    for _ in range(2):
        with pytest.raises(ValueError, match="larger than the padded input"):
            pool.forward(_x((1, 1, 2, 2)))


def test_conv_forward_with_other_weights_matches_the_checked_function():
    conv = Conv2d(3, 4, 3, padding=1)
    x = _x((2, 3, 8, 8))
    w, b = _x((4, 3, 3, 3), 1), _x((4,), 2)
    np.testing.assert_allclose(conv.forward_with(x, w, b), kernels.conv2d_forward(x, w, b, 1, 1), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(conv.forward_with(x, w, None), kernels.conv2d_forward(x, w, None, 1, 1), rtol=1e-5,
                               atol=1e-5)
    assert conv._x is None  # nothing kept for backward


def test_eval_fusion_runs_the_layers_prepared_convolution():
    conv = Conv2d(3, 4, 3, padding=1)
    model = Sequential(conv, BatchNorm2d(4), ReLU()).eval()
    x = _x((2, 3, 8, 8))
    first = model.predict(x)
    prepared = list(conv._plans.values())
    assert len(prepared) == 1  # planned once for the shape, reused below
    np.testing.assert_array_equal(model.predict(x), first)
    assert list(conv._plans.values()) == prepared
