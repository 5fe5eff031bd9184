"""Conv2d with dilation, groups and padding="same"/"valid": construction, checkpoints, fusion, gradients.

The kernels themselves are checked in tests/kernels/test_conv_groups.py; here the layer's plumbing: the
arguments reach the kernels (naive oracle), checkpoints round-trip them (and old ones without them load),
eval-mode BatchNorm folding works on a depthwise convolution, and the parameter counts are right.
"""

import json

import numpy as np
import pytest

import naive as nv
from helpers import assert_close, check_layer_grads, checkpoint_header, rewrite_checkpoint

import fastcnn
from fastcnn.layers import BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, ReLU, fuse


def test_constructor_follows_pytorch_argument_order_and_weight_layout():
    conv = Conv2d(8, 16, 3, 2, 1, 2, 4, False)  # in, out, kernel, stride, padding, dilation, groups, bias
    assert (conv.stride, conv.padding, conv.dilation, conv.groups, conv.bias) == ((2, 2), (1, 1), (2, 2), 4, None)
    assert conv.weight.shape == (16, 2, 3, 3)
    # PyTorch's kaiming-uniform bound with fan_in = in/groups * kh * kw = 18: 1/sqrt(18)
    assert np.abs(conv.weight.data).max() <= 1 / np.sqrt(18) + 1e-7
    depthwise = Conv2d(32, 64, 3, padding="same", groups=32)
    assert depthwise.weight.shape == (64, 1, 3, 3) and depthwise.padding == "same"
    assert repr(depthwise) == "Conv2d(32, 64, kernel_size=3, padding='same', groups=32)"
    assert repr(Conv2d(3, 6, 3, dilation=(2, 1), padding="valid")) == \
        "Conv2d(3, 6, kernel_size=3, padding='valid', dilation=(2, 1))"


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"groups": 3}, ValueError, r"in_channels \(4\) and out_channels \(8\) must both be divisible by groups \(3\)"),
    ({"groups": 0}, ValueError, "groups"),
    ({"groups": 2.5}, TypeError, "groups"),
    ({"dilation": 0}, ValueError, "dilation must be positive"),
    ({"dilation": "2"}, TypeError, "dilation"),
    ({"padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
    ({"padding": "full"}, ValueError, "padding must be 'same', 'valid', an int or a pair of ints, got 'full'"),
    ({"algorithm": "depthwise", "groups": 2}, ValueError, "algorithm 'depthwise' needs groups == in_channels"),
    ({"algorithm": "channel_last", "dilation": 2, "stride": 2}, ValueError,
     "'channel_last' cannot compute a dilated convolution with a stride"),
])
def test_bad_arguments_are_refused(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Conv2d(4, 8, 3, **kwargs)


@pytest.mark.parametrize("kwargs", [
    {"groups": 2, "padding": 1},
    {"groups": 4, "stride": 2, "padding": 1},  # depthwise, channel multiplier 2
    {"dilation": 2, "padding": "same"},
    {"groups": 4, "kernel_size": 2, "padding": "same"},  # even kernel: one extra zero row and column
    {"groups": 2, "dilation": (1, 2), "padding": "valid", "algorithm": "nchw"},
])
def test_forward_backward_match_naive_and_central_differences(kwargs, rng):
    kwargs = dict(kwargs)
    ks = kwargs.pop("kernel_size", 3)
    conv = Conv2d(4, 8, ks, dtype=np.float64, **kwargs)
    x = rng.standard_normal((2, 4, 7, 6))
    y = conv.forward(x)
    assert_close(y, nv.conv2d_forward(x, conv.weight.data, conv.bias.data, conv.stride, conv.padding, conv.dilation,
                                      conv.groups), np.float64)
    assert y.shape[1:] == conv.output_shape(x.shape[1:])
    check_layer_grads(conv, x, rng)


def test_checkpoint_round_trip_keeps_dilation_groups_and_same_padding(tmp_path, rng):
    model = fastcnn.Sequential(Conv2d(3, 6, 3, padding="same", groups=3), BatchNorm2d(6), ReLU(),
                               Conv2d(6, 8, 3, padding=2, dilation=2, groups=2, bias=False), ReLU(),
                               GlobalAvgPool2d(), Linear(8, 4), input_shape=(3, 8, 8))
    path = tmp_path / "grouped.npz"
    model.save(path)
    same = fastcnn.load(path)
    assert repr(same) == repr(model)
    assert same.layers[0].get_config() == model.layers[0].get_config()
    assert same.layers[3].dilation == (2, 2) and same.layers[3].groups == 2 and same.layers[0].padding == "same"
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(same.predict(x), model.predict(x))


def test_checkpoint_written_before_dilation_and_groups_loads_with_the_defaults(tmp_path):
    model = fastcnn.Sequential(Conv2d(1, 2, 3, padding=1), Flatten(), Linear(32, 2), input_shape=(1, 4, 4))
    path = tmp_path / "old.npz"
    model.save(path)
    header = checkpoint_header(path)
    for entry in header["model"]["layers"]:
        if entry["class"] == "Conv2d":
            del entry["config"]["dilation"], entry["config"]["groups"]
    rewrite_checkpoint(path, config=np.array(json.dumps(header)))
    same = fastcnn.load(path)
    assert same.layers[0].dilation == (1, 1) and same.layers[0].groups == 1
    x = np.ones((1, 1, 4, 4), np.float32)
    np.testing.assert_array_equal(same.predict(x), model.predict(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_fusion_folds_batchnorm_into_a_depthwise_conv(dtype, rng):
    model = fastcnn.Sequential(Conv2d(4, 8, 3, stride=2, padding=1, groups=4, bias=False, dtype=dtype),
                               BatchNorm2d(8, dtype=dtype), ReLU(), Conv2d(8, 8, 1, dtype=dtype),
                               input_shape=(4, 9, 9))
    bn = model.layers[1]
    bn.running_mean[:] = rng.normal(size=8)
    bn.running_var[:] = rng.random(8) + 0.2
    bn.weight.data[:] = rng.normal(size=8)
    bn.bias.data[:] = rng.normal(size=8)
    model.eval()
    assert [kind for kind, _ in fuse.steps(model.layers)] == ["conv", "conv"]
    x = rng.standard_normal((3, 4, 9, 9)).astype(dtype)
    expected = x
    for layer in model.layers:
        expected = layer.forward(expected)
    assert_close(model.predict(x), expected, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_parameter_counts_and_multiply_adds_count_one_group():
    model = fastcnn.Sequential(Conv2d(16, 32, 3, padding=1, groups=16), Conv2d(32, 32, 1), input_shape=(16, 8, 8))
    assert model.layers[0].weight.size == 32 * 1 * 9 and sum(p.size for p in model.parameters()) == 288 + 32 + 1056
    assert "Total params: 1,376" in model.summary(print_fn=lambda *_: None)
    # 32 outputs x 64 pixels x (16/16 * 9) multiply-adds, then 32 x 64 x 32
    assert fuse.multiply_adds(model.layers, (16, 8, 8)) == 32 * 64 * 9 + 32 * 64 * 32


def test_plan_shows_what_runs():
    plans = Conv2d(32, 32, 3, padding=1, groups=32).plan((64, 32, 16, 16))
    assert {plans.forward.algorithm, plans.weight_grad.algorithm, plans.input_grad.algorithm} == {"depthwise"}
    grouped = Conv2d(64, 64, 3, padding=1, groups=4).plan((64, 64, 16, 16))  # 16 channels a group
    assert grouped.forward.algorithm == "winograd4" and "per group" in grouped.forward.layout
    dilated = Conv2d(8, 8, 3, padding=2, dilation=2).plan((4, 8, 8, 8)).forward
    assert dilated.algorithm == "rows" and "4 dilation phases" in dilated.layout
    assert Conv2d(8, 8, 3, stride=2, padding=2, dilation=2).plan((4, 8, 8, 8)).forward.algorithm == "im2col"
