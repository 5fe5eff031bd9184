"""Hypothesis properties of random small layer stacks (issue 12's fuzz suite).

A stack is a few blocks (Conv2d, pools, activations, BatchNorm2d, Dropout, a Residual block with an identity
or a projection shortcut) and a head (Flatten or global pooling, Linear, sometimes BatchNorm1d), drawn by
hypothesis.  For every stack:

* ``output_shapes`` agrees with the shapes the forward pass produces, layer by layer;
* the gradient of the cross-entropy loss with respect to the input and to entries of a few parameters equals
  float64 central differences (training mode; Dropout layers in eval mode, the identity);
* the eval-mode forward (``predict`` and ``forward``: BatchNorm folded, fused steps) equals the layers run one
  by one, BatchNorm statistics randomised so that the folding matters;
* a saved and loaded model gives bit-identical outputs.

Each property has a quick test (profile "ci" of ``conftest.py``) and a deeper one marked slow (profile "slow").
"""

import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from helpers import assert_close, randomise_norms, single_thread

import fastcnn
from fastcnn import kernels as K
from fastcnn import layers as L

SEEDS = st.integers(0, 2**32 - 1)


def quick_and_deep(body, examples, **strategies):
    """Two tests of one property: ``examples`` examples in the quick run, the "slow" profile's under ``-m slow``."""
    quick = settings(settings.get_profile("ci"), max_examples=examples)(given(**strategies)(body))
    deep = pytest.mark.slow(settings(settings.get_profile("slow"))(given(**strategies)(body)))
    return quick, deep


# --------------------------------------------------------------------------- random stacks


def _conv(draw, c, h, w, dtype):
    k = draw(st.integers(1, 3))
    p = draw(st.integers(0, 1))
    k = min(k, h + 2 * p, w + 2 * p)
    return L.Conv2d(c, draw(st.integers(1, 4)), k, stride=draw(st.integers(1, 2)), padding=p,
                    bias=draw(st.booleans()), dtype=dtype)


def _pool(draw, h, w):
    k = draw(st.integers(1, min(3, h, w)))
    kind = draw(st.sampled_from(["max", "avg"]))
    cls = L.MaxPool2d if kind == "max" else L.AvgPool2d
    return cls(k, stride=draw(st.one_of(st.none(), st.integers(1, 2))), padding=draw(st.integers(0, k // 2)),
               ceil_mode=draw(st.booleans()))


def _residual(draw, c, dtype):
    out, stride = draw(st.integers(1, 4)), draw(st.integers(1, 2))
    block = [L.Conv2d(c, out, 3, stride=stride, padding=1, dtype=dtype), L.BatchNorm2d(out, dtype=dtype), L.ReLU(),
             L.Conv2d(out, out, 3, padding=1, bias=False, dtype=dtype)]
    if out == c and stride == 1 and draw(st.booleans()):
        return L.Residual(block)  # identity shortcut
    return L.Residual(block, [L.Conv2d(c, out, 1, stride=stride, bias=False, dtype=dtype),
                              L.BatchNorm2d(out, dtype=dtype)])


def _activation(draw):
    return draw(st.sampled_from([L.ReLU, L.Sigmoid, L.Tanh, lambda: L.LeakyReLU(0.1)]))()


@st.composite
def stacks(draw, dtype=np.float64, max_size=7):
    """(list of layers, per-example input shape): a random small network ending in class logits."""
    input_shape = shape = (draw(st.integers(1, 3)), draw(st.integers(3, max_size)), draw(st.integers(3, max_size)))
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        c, h, w = shape
        kind = draw(st.sampled_from(["conv", "conv", "pool", "activation", "batch_norm", "dropout", "residual"]))
        if kind == "conv":
            layer = _conv(draw, c, h, w, dtype)
        elif kind == "pool":
            layer = _pool(draw, h, w)
        elif kind == "activation":
            layer = _activation(draw)
        elif kind == "batch_norm":
            layer = L.BatchNorm2d(c, affine=draw(st.booleans()), dtype=dtype)
        elif kind == "dropout":
            layer = L.Dropout(0.3, seed=draw(st.integers(0, 100)))
        else:
            layer = _residual(draw, c, dtype)
        layers.append(layer)
        shape = layer.output_shape(shape)
    heads = ["flatten", "global_avg"] + (["global_max"] if hasattr(L, "GlobalMaxPool2d") else [])
    head = draw(st.sampled_from(heads))
    features = int(np.prod(shape)) if head == "flatten" else shape[0]
    layers.append({"flatten": L.Flatten, "global_avg": L.GlobalAvgPool2d,
                   "global_max": getattr(L, "GlobalMaxPool2d", None)}[head]())
    classes = draw(st.integers(2, 4))
    if draw(st.booleans()):
        hidden = draw(st.integers(2, 5))
        layers += [L.Linear(features, hidden, dtype=dtype), L.BatchNorm1d(hidden, dtype=dtype), _activation(draw)]
        features = hidden
    layers.append(L.Linear(features, classes, bias=draw(st.booleans()), dtype=dtype))
    return layers, input_shape


@st.composite
def typed_stacks(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return dtype, draw(stacks(dtype))


def _model(layers, input_shape, seed):
    fastcnn.manual_seed(seed)  # Dropout layers without their own seed draw from it
    return fastcnn.Sequential(*layers, input_shape=input_shape)


def _unfused(layers, x):
    """The eval forward without fusion: each layer's own ``forward`` in order; a Residual's sum in numpy."""
    for layer in layers:
        if type(layer) is L.Residual:
            x = _unfused(layer.block, x) + (_unfused(layer.shortcut, x) if layer.shortcut else x)
        else:
            x = layer.forward(x)
    return x


# --------------------------------------------------------------------------- properties


def _shapes_agree(typed_stack, batch, seed):
    dtype, (layers, input_shape) = typed_stack
    model = _model(layers, input_shape, seed)
    x = np.random.default_rng(seed).standard_normal((batch,) + input_shape).astype(dtype)
    want = model.output_shapes(input_shape)
    assert len(want) == len(layers)
    h = x
    for layer, shape in zip(layers, want):
        h = layer.forward(h)
        assert h.shape == (batch,) + tuple(shape), f"{layer!r}: output_shape says {shape}, forward gave {h.shape}"
        assert h.dtype == dtype
    assert model.forward(x).shape == (batch,) + tuple(want[-1])


test_output_shape_agrees_with_forward, test_output_shape_agrees_with_forward_deep = quick_and_deep(
    _shapes_agree, 25, typed_stack=typed_stacks(), batch=st.integers(2, 3), seed=SEEDS)


def _loss_and_grads(model, x, labels):
    """Cross-entropy of the model on ``x``, the input gradient and every parameter's gradient (training mode)."""
    for p in model.parameters():
        p.grad[...] = 0
    loss, dlogits = K.softmax_cross_entropy(model.forward(x), labels)
    dx = model.backward(dlogits, input_grad=True)
    return loss, dx, [p.grad.copy() for p in model.parameters()]


def _gradients_match_central_differences(stack, batch, seed):
    layers, input_shape = stack
    model = _model(layers, input_shape, seed).train()
    for top in model.layers:
        for layer in top.walk():
            if isinstance(layer, L.Dropout):
                layer.eval()  # the identity: the loss must be a fixed function of the input
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + input_shape)
    labels = rng.integers(0, model.output_shapes(input_shape)[-1][0], batch)
    with single_thread():
        _, dx, grads = _loss_and_grads(model, x, labels)

        def loss():
            return K.softmax_cross_entropy(model.forward(x), labels)[0]

        checks = [("input", x, dx)]
        params = model.parameters()
        for i in rng.choice(len(params), size=min(4, len(params)), replace=False):
            checks.append((f"parameter {i} {params[i].data.shape}", params[i].data, grads[i]))
        for name, array, analytic in checks:
            for flat in rng.choice(array.size, size=min(8, array.size), replace=False):
                index = np.unravel_index(flat, array.shape)
                numeric = naive.central_difference(loss, array, index)
                assert abs(analytic[index] - numeric) <= 1e-6 + 1e-4 * abs(numeric), (
                    f"gradient of {name} at {index}: backward {analytic[index]!r}, central difference {numeric!r}; "
                    f"model {model.layers}")


test_stack_gradients_match_central_differences, test_stack_gradients_match_central_differences_deep = \
    quick_and_deep(_gradients_match_central_differences, 20, stack=stacks(np.float64, max_size=6),
                   batch=st.integers(2, 3), seed=SEEDS)


def _fused_eval_matches_unfused(typed_stack, batch, seed):
    dtype, (layers, input_shape) = typed_stack
    rng = np.random.default_rng(seed)
    model = randomise_norms(_model(layers, input_shape, seed), rng).eval()
    x = rng.standard_normal((batch,) + input_shape).astype(dtype)
    before = x.copy()
    want = _unfused(model.layers, x.copy())
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    for got, how in ((model.predict(x), "predict"), (model.forward(x), "forward"),
                     (model.predict(x, batch_size=1), "predict, batch_size=1")):
        assert got.dtype == dtype
        assert_close(got, want, dtype, rtol=rtol, err_msg=how)
    np.testing.assert_array_equal(x, before)


test_fused_eval_matches_unfused, test_fused_eval_matches_unfused_deep = quick_and_deep(
    _fused_eval_matches_unfused, 25, typed_stack=typed_stacks(), batch=st.integers(1, 4), seed=SEEDS)


def _save_load_round_trip(typed_stack, batch, seed):
    dtype, (layers, input_shape) = typed_stack
    rng = np.random.default_rng(seed)
    model = randomise_norms(_model(layers, input_shape, seed), rng)
    x = rng.standard_normal((batch,) + input_shape).astype(dtype)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        loaded = fastcnn.load(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    for p, q in zip(model.parameters(), loaded.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
        assert p.data.dtype == q.data.dtype
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


test_save_load_round_trip, test_save_load_round_trip_deep = quick_and_deep(
    _save_load_round_trip, 15, typed_stack=typed_stacks(), batch=st.integers(1, 3), seed=SEEDS)
