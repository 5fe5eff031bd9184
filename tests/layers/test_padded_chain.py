"""Eval-mode chains passing activations on in the padded channel-last layout (``fastcnn.layers.padded``).

The oracle is the unfused forward, layer by layer in NCHW (``test_fusion.layer_by_layer``); the chains mix layers
that read the layout (channel_last and Winograd convolutions, 2x2 max pooling, ReLU, residual sums) with layers
that do not (another algorithm, more padding than the border, other pooling, the head), so that every change of
layout is crossed.
"""

import numpy as np
import pytest

import fastcnn
from fastcnn import models
from fastcnn.kernels.conv import PreparedConv
from fastcnn.layers import (AvgPool2d, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU,
                            Residual, fuse, padded)
from helpers import assert_close, randomise_norms
from test_fusion import layer_by_layer


def _mixed(dtype):
    def conv(c, k, size, algorithm, **kw):
        return Conv2d(c, k, size, bias=False, algorithm=algorithm, dtype=dtype, **kw)

    def block(c, k, stride):
        shortcut = [conv(c, k, 1, "channel_last", stride=stride), BatchNorm2d(k, dtype=dtype)] if stride > 1 else None
        return Residual([conv(c, k, 3, "channel_last", stride=stride, padding=1), BatchNorm2d(k, dtype=dtype),
                         ReLU(), conv(k, k, 3, "winograd4", padding=1), BatchNorm2d(k, dtype=dtype)], shortcut)

    return fastcnn.Sequential(
        conv(3, 16, 3, "auto", padding=1), BatchNorm2d(16, dtype=dtype), ReLU(),   # NCHW in, padded out
        conv(16, 16, 3, "winograd", padding=1), ReLU(), MaxPool2d(2),              # padded to padded, pooled
        block(16, 16, 1), ReLU(),                                                  # identity shortcut
        block(16, 32, 2), ReLU(),                                                  # 1x1 stride-2 shortcut
        conv(32, 32, 3, "channel_last", padding=2), ReLU(),                        # more padding than the border
        conv(32, 32, 3, "nchw", padding=1), BatchNorm2d(32, dtype=dtype),          # not a reader of the layout
        conv(32, 16, 3, "channel_last", padding=1), ReLU(),
        MaxPool2d(2, ceil_mode=True), AvgPool2d(2, padding=1),                     # poolings it does not read
        GlobalAvgPool2d(), Flatten(), Linear(16, 5, dtype=dtype), input_shape=(3, 16, 16))


@pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=pytest.mark.slow)])
def test_a_mixed_chain_matches_layer_by_layer(dtype):
    rng = np.random.default_rng(0)
    model = randomise_norms(_mixed(dtype), rng).eval()
    x = rng.standard_normal((6, 3, 16, 16)).astype(dtype)
    expected = layer_by_layer(model.layers, x)
    rtol = 5e-5 if dtype == np.float32 else 1e-12  # winograd4 in float32: see test_conv_winograd
    for got in (model.predict(x), model.forward(x), model.predict(x, batch_size=4)):
        assert got.dtype == dtype
        assert_close(got, expected, dtype, rtol=rtol)


def test_the_layout_is_used_where_a_consumer_reads_it():
    """Step by step: an output goes padded exactly where the next step (through a ReLU) reads that layout."""
    model = _mixed(np.float32).eval()
    layers = model.layers
    steps = fuse.steps(layers)
    flags = padded.layouts(fuse._STEPS.steps(layers), layers, (6, 3, 16, 16), np.dtype(np.float32), False, False,
                           fuse._STEPS.steps)
    kinds = [(kind, type(group[0]).__name__) for kind, group in steps]
    assert kinds[:5] == [("conv", "Conv2d"), ("conv", "Conv2d"), ("layer", "MaxPool2d"), ("relu", "ReLU"),
                         ("residual", "Residual")]
    # stem -> winograd conv -> pool (+ ReLU) -> two blocks -> the padding-2 conv reads NCHW
    assert flags[:7] == (True, True, True, True, True, False, False)
    assert flags[-1] is False


def test_lenet5_keeps_nchw():
    """Its first convolution cannot write the layout and its second is followed by a pooling and the head: a
    copy to the layout would gain nothing."""
    model = models.lenet5().eval()
    for batch in (1, 64):
        flags = padded.layouts(fuse._STEPS.steps(model.layers), model.layers, (batch, 1, 28, 28),
                               np.dtype(np.float32), False, False, fuse._STEPS.steps)
        assert flags is not None and not any(flags)


def test_resnet_small_converts_only_at_the_stem(monkeypatch):
    """In eval mode every convolution of resnet_small runs into the padded layout, and every one but the stem
    from it (the stem, 3 channels, runs channel_last instead of its own plan, "rows", from its input copied
    there), at the batch sizes of predict and of one image; each block's last convolution adds the shortcut
    and applies the ReLU after the block where it writes the padded layout."""
    fastcnn.set_num_threads(2)
    calls = []
    for name in ("forward", "forward_padded"):
        real = getattr(PreparedConv, name)
        monkeypatch.setattr(PreparedConv, name,
                            lambda self, *a, _name=name, _real=real: (calls.append(_name), _real(self, *a))[1])
    real_add = fastcnn.kernels.residual_add_kernel
    monkeypatch.setattr(fastcnn.kernels, "residual_add_kernel", lambda *a: (calls.append("add"), real_add(*a))[1])
    model = randomise_norms(models.resnet_small(), np.random.default_rng(1)).eval()
    for batch in (16, 1):
        calls.clear()
        x = np.random.default_rng(2).random((batch, 3, 32, 32), dtype=np.float32)
        got = model.predict(x)
        # the residual sums and their ReLUs in the convolutions' loops, but the last block's: it goes to the
        # global pooling, in NCHW
        assert calls == ["forward_padded"] * 15 + ["add"]
        assert_close(got, layer_by_layer(model.layers, x), np.float32, rtol=5e-5)


def test_a_changed_algorithm_after_the_layouts_were_chosen_still_gives_the_right_result():
    """The layouts are hints: a step handed a layout it does not read converts it."""
    rng = np.random.default_rng(3)
    model = randomise_norms(_mixed(np.float32), rng).eval()
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    model.predict(x)
    model.layers[3].algorithm = "nchw"  # the winograd conv that read the stem's padded output
    assert_close(model.predict(x), layer_by_layer(model.layers, x), np.float32, rtol=5e-5)


def test_padded_activation_round_trip(rng):
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    p = padded.Padded.of(x)
    assert p.shape == x.shape and p.array.shape == (2, 6, 5, 5)
    np.testing.assert_array_equal(p.nchw(), x)
    assert not p.array[:, 0].any() and not p.array[:, :, -1].any()


def test_a_result_is_never_overwritten_by_the_next_call():
    """Intermediate activations are reused from call to call; what a call returns is not one of them, even when
    the chain ends in a convolution or its ReLU."""
    rng = np.random.default_rng(4)
    model = randomise_norms(_mixed(np.float32), rng).eval()
    backbone = fastcnn.Sequential(*model.layers[:8], input_shape=(3, 16, 16)).eval()  # ends in a block and ReLU
    for chain in (model, backbone):
        # 96 images: the arrays are reused (SCRATCH_MIN_INPUT_BYTES), the backbone's result among them
        x1, x2 = (rng.standard_normal((96, 3, 16, 16)).astype(np.float32) for _ in range(2))
        assert x1.nbytes >= fuse.SCRATCH_MIN_INPUT_BYTES and 96 * 16 * 8 * 8 * 4 >= padded.SCRATCH_MIN_BYTES
        y1 = chain.predict(x1)
        kept = y1.copy()
        y2 = chain.predict(x2)
        np.testing.assert_array_equal(y1, kept)
        assert not np.shares_memory(y1, y2)
        assert_close(y2, layer_by_layer(chain.layers, x2), np.float32, rtol=5e-5)


class _Inner(fastcnn.layers.Layer):
    """A layer that runs a model of its own (in eval mode, fused) inside the outer model's chain."""

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x):
        return self.inner.forward(x) + 1

    def output_shape(self, input_shape):
        for layer in self.inner.layers:
            input_shape = layer.output_shape(input_shape)
        return input_shape


def test_a_model_run_inside_a_layer_does_not_reuse_the_outer_arrays():
    rng = np.random.default_rng(5)
    # its first output has the shape of its input, the outer model's activation: a reused array would be both
    inner = fastcnn.Sequential(Conv2d(16, 16, 3, padding=1, algorithm="nchw"), ReLU(),
                               *_mixed(np.float32).layers[3:8], input_shape=(16, 16, 16))
    outer = randomise_norms(_mixed(np.float32), rng)
    model = fastcnn.Sequential(*outer.layers[:3], _Inner(inner.eval()), *outer.layers[3:],
                               input_shape=(3, 16, 16)).eval()
    x = rng.standard_normal((24, 3, 16, 16)).astype(np.float32)  # above SCRATCH_MIN_INPUT_BYTES
    assert_close(model.predict(x), layer_by_layer(model.layers, x), np.float32, rtol=5e-5)
