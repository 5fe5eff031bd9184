"""fastcnn.optim.SGD: validation, the update rule, lr, state_dict and zero_grad."""

import numpy as np
import pytest

from fastcnn.layers import Linear, Parameter
from fastcnn.optim import SGD
from naive import sgd_steps

F64 = np.float64


def make_params(dtype=F64, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal((3, 4)).astype(dtype)), Parameter(rng.standard_normal(5).astype(dtype))]


def grad_sequence(params, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(steps)]


def run_steps(opt, params, grads):
    for gs in grads:
        opt.zero_grad()
        for p, g in zip(params, gs):
            p.grad += g
        opt.step()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        pytest.param(dict(lr=-0.1), ValueError, "lr", id="lr-negative"),
        pytest.param(dict(lr=float("nan")), ValueError, "lr", id="lr-nan"),
        pytest.param(dict(lr=float("inf")), ValueError, "lr", id="lr-inf"),
        pytest.param(dict(lr="0.1"), ValueError, "lr", id="lr-string"),
        pytest.param(dict(lr=True), ValueError, "lr", id="lr-bool"),
        pytest.param(dict(lr=0.1, momentum=-0.1), ValueError, "momentum", id="momentum-negative"),
        pytest.param(dict(lr=0.1, momentum=1.5), ValueError, "momentum", id="momentum-above-1"),
        pytest.param(dict(lr=0.1, weight_decay=-1e-4), ValueError, "weight_decay", id="weight_decay-negative"),
        pytest.param(dict(lr=0.1, nesterov=True), ValueError, "nesterov", id="nesterov-momentum-0"),
        pytest.param(dict(lr=0.1, momentum=0.0, nesterov=True), ValueError, "nesterov", id="nesterov-momentum-0.0"),
    ],
)
def test_bad_hyperparameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SGD(make_params(), **kwargs)


def test_empty_params_rejected():
    with pytest.raises(ValueError, match="params"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="params"):
        SGD(iter(()), lr=0.1)


@pytest.mark.parametrize("bad", [np.zeros(3), [1.0, 2.0], Linear(2, 2)], ids=["ndarray", "list", "layer"])
def test_non_parameter_rejected(bad):
    with pytest.raises(TypeError, match=r"params\[1\]"):
        SGD([make_params()[0], bad], lr=0.1)


def test_boundary_hyperparameters_accepted():
    SGD(make_params(), lr=0.0)
    SGD(make_params(), lr=1, momentum=1.0, nesterov=True)
    SGD(make_params(), lr=np.float32(0.1), momentum=np.float64(0.5), weight_decay=0)
    SGD((p for p in make_params()), lr=0.1)  # any iterable


# --------------------------------------------------------------------------- the update


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(lr=0.1), id="plain"),
        pytest.param(dict(lr=0.1, weight_decay=0.01), id="weight_decay"),
        pytest.param(dict(lr=0.05, momentum=0.9), id="momentum"),
        pytest.param(dict(lr=0.05, momentum=0.9, nesterov=True), id="nesterov"),
        pytest.param(dict(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True), id="nesterov-wd"),
    ],
)
def test_step_follows_documented_rule(kwargs):
    params = make_params()
    grads = grad_sequence(params, 6)
    expected = sgd_steps(params, grads, **kwargs)
    opt = SGD(params, **kwargs)
    run_steps(opt, params, grads)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.data, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("count", [1, 8, 9, 19])  # the kernels take tuples of 8: one, a full, a padded, 3 calls
def test_every_parameter_is_updated_and_zeroed_whatever_their_number(count):
    rng = np.random.default_rng(count)
    params = [Parameter(rng.standard_normal((i % 3 + 1, 4)).astype(np.float32)) for i in range(count)]
    params += [Parameter(rng.standard_normal(2).astype(np.float32))]  # a bias, undecayed by default
    grads = grad_sequence(params, 3)
    kwargs = dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True)
    expected = sgd_steps(params, grads, **kwargs)
    opt = SGD(params, **kwargs)
    run_steps(opt, params, grads)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.data, e, rtol=1e-5, atol=1e-6)
    opt.zero_grad()
    assert all(np.all(p.grad == 0) for p in params)


def test_step_updates_in_place_and_keeps_dtype():
    params = make_params(np.float32)
    datas = [p.data for p in params]
    opt = SGD(params, lr=0.1, momentum=0.9)
    run_steps(opt, params, grad_sequence(params, 2))
    assert all(p.data is d and p.dtype == np.float32 for p, d in zip(params, datas))


def test_zero_lr_changes_nothing():
    params = make_params()
    before = [p.data.copy() for p in params]
    run_steps(SGD(params, lr=0.0, momentum=0.9, weight_decay=0.1), params, grad_sequence(params, 3))
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.data, b)


# --------------------------------------------------------------------------- lr


def test_lr_is_settable_and_used():
    params = make_params()
    opt = SGD(params, lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5
    start = params[0].data.copy()
    g = np.ones_like(start)
    params[0].grad[...] = g
    opt.step()
    np.testing.assert_allclose(params[0].data, start - 0.5 * g, rtol=1e-15)
    assert "lr=0.5" in repr(opt)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "x", None], ids=["negative", "nan", "string", "none"])
def test_lr_setter_validates_and_keeps_old_value(bad):
    opt = SGD(make_params(), lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = bad
    assert opt.lr == 0.1


# --------------------------------------------------------------------------- state_dict


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_state_dict_round_trip_continues_identically(dtype, nesterov):
    kwargs = dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=nesterov)
    params = make_params(dtype)
    grads = grad_sequence(params, 6)
    opt = SGD(params, **kwargs)
    run_steps(opt, params, grads[:3])
    state = opt.state_dict()
    weights = [p.data.copy() for p in params]

    run_steps(opt, params, grads[3:])  # the original continues

    params2 = [Parameter(w.copy()) for w in weights]
    opt2 = SGD(params2, lr=1.0)  # different hyperparameters, replaced by the load
    opt2.load_state_dict(state)
    assert (opt2.lr, opt2.momentum, opt2.weight_decay, opt2.nesterov) == (0.05, 0.9, 1e-3, nesterov)
    run_steps(opt2, params2, grads[3:])
    for a, b in zip(params, params2):
        np.testing.assert_array_equal(a.data, b.data)

    # without restoring the buffers the continuation differs (the test can tell)
    params3 = [Parameter(w.copy()) for w in weights]
    run_steps(SGD(params3, **kwargs), params3, grads[3:])
    assert not np.array_equal(params3[0].data, params[0].data)


def test_state_dict_contents_are_copies():
    params = make_params()
    opt = SGD(params, lr=0.1, momentum=0.9)
    fresh = opt.state_dict()
    assert fresh["momentum_buffers"] == [None, None]
    run_steps(opt, params, grad_sequence(params, 1))
    state = opt.state_dict()
    assert set(state) == {"lr", "momentum", "weight_decay", "nesterov", "momentum_buffers"}
    kept = [b.copy() for b in state["momentum_buffers"]]
    state["momentum_buffers"][0][...] = 123.0
    np.testing.assert_array_equal(opt.state_dict()["momentum_buffers"][0], kept[0])
    # loading copies too: mutating the dict afterwards does not reach the optimizer
    opt2 = SGD(make_params(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())
    snap = opt2.state_dict()
    state2 = opt.state_dict()
    opt2.load_state_dict(state2)
    state2["momentum_buffers"][1][...] = -7.0
    np.testing.assert_array_equal(opt2.state_dict()["momentum_buffers"][1], snap["momentum_buffers"][1])


def test_state_dict_before_any_step_round_trips():
    params = make_params()
    grads = grad_sequence(params, 3)
    a = SGD(params, lr=0.1, momentum=0.9)
    params2 = [Parameter(p.data.copy()) for p in params]
    b = SGD(params2, lr=0.3)
    b.load_state_dict(a.state_dict())
    run_steps(a, params, grads)
    run_steps(b, params2, grads)
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_rejects_mismatch_and_changes_nothing():
    params = make_params()
    opt = SGD(params, lr=0.1, momentum=0.9)
    run_steps(opt, params, grad_sequence(params, 1))
    before = opt.state_dict()

    other = SGD([Parameter(np.zeros((3, 4)))], lr=0.7, momentum=0.5)
    run_steps(other, other.params, grad_sequence(other.params, 1))
    with pytest.raises(ValueError, match="momentum buffers"):
        opt.load_state_dict(other.state_dict())  # 1 buffer for 2 params

    wrong_shape = opt.state_dict()
    wrong_shape["momentum_buffers"][1] = np.zeros(6)
    wrong_shape["lr"] = 0.9
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(wrong_shape)

    bad_momentum = opt.state_dict()
    bad_momentum["momentum"] = 2.0
    bad_momentum["lr"] = 0.9
    with pytest.raises(ValueError, match="momentum"):
        opt.load_state_dict(bad_momentum)

    after = opt.state_dict()
    assert after["lr"] == before["lr"] == 0.1 and after["momentum"] == 0.9
    for x, y in zip(after["momentum_buffers"], before["momentum_buffers"]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("change,match", [
    pytest.param(lambda s: s.pop("nesterov"), "lacks", id="missing-nesterov"),
    pytest.param(lambda s: s.pop("momentum_buffers"), "lacks", id="missing-buffers"),
    pytest.param(lambda s: s["momentum_buffers"].__setitem__(0, np.full((3, 4), np.nan)), "NaN", id="nan-buffer"),
    pytest.param(lambda s: s["momentum_buffers"].__setitem__(1, ["a"] * 5), "numbers", id="text-buffer"),
    pytest.param(lambda s: s.update(nesterov="yes"), "nesterov", id="nesterov-not-bool"),
    pytest.param(lambda s: s.update(nesterov=True, momentum=0.0), "nesterov", id="nesterov-without-momentum"),
    pytest.param(lambda s: s.update(l1=-1.0), "l1", id="l1-negative"),
    pytest.param(lambda s: s.update(weight_decay=float("nan")), "weight_decay", id="decay-nan"),
])
def test_refused_load_state_dict_changes_nothing(change, match):
    """Every key is checked before any is applied (issue 12: lr and momentum used to change, then it raised)."""
    params = make_params()
    opt = SGD(params, lr=0.1, momentum=0.9)
    run_steps(opt, params, grad_sequence(params, 1))
    before = opt.state_dict()
    state = opt.state_dict()
    state.update(lr=0.7, momentum=0.5, weight_decay=0.3, l1=0.2, decay_biases=False)
    change(state)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    after = opt.state_dict()
    assert {k: v for k, v in after.items() if k != "momentum_buffers"} == \
        {k: v for k, v in before.items() if k != "momentum_buffers"}
    for x, y in zip(after["momentum_buffers"], before["momentum_buffers"]):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- zero_grad


def test_zero_grad_clears_every_gradient_in_place():
    params = make_params(np.float32)
    grads_before = [p.grad for p in params]
    for p in params:
        p.grad += 3.0
    SGD(params, lr=0.1).zero_grad()
    for p, g in zip(params, grads_before):
        assert p.grad is g and p.grad.dtype == np.float32 and p.grad.shape == p.shape
        assert np.all(p.grad == 0)


def test_layer_gradients_accumulate_until_zero_grad():
    layer = Linear(3, 2, dtype=F64)
    opt = SGD(layer.parameters(), lr=0.1)
    x = np.ones((4, 3))
    layer.forward(x)
    layer.backward(np.ones((4, 2)))
    g1 = layer.weight.grad.copy()
    layer.backward(np.ones((4, 2)))
    np.testing.assert_allclose(layer.weight.grad, 2 * g1)
    opt.zero_grad()
    layer.backward(np.ones((4, 2)))
    np.testing.assert_allclose(layer.weight.grad, g1)
