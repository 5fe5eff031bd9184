"""Learning-rate schedules, make_schedule, and SGD's decay_biases and l1 options."""

import math

import numpy as np
import pytest

from fastcnn.layers import Parameter
from fastcnn.optim import SGD, ExponentialLR, ReduceLROnPlateau, StepLR, make_schedule
from naive import sgd_steps


def make_opt(lr=0.1, **kw):
    rng = np.random.default_rng(0)
    params = [Parameter(rng.standard_normal((3, 4))), Parameter(rng.standard_normal(3))]
    return SGD(params, lr=lr, **kw)


def lrs_after_steps(sched, opt, steps, metrics=None):
    out = []
    for e in range(steps):
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[e])
        out.append(opt.lr)
    return out


# --------------------------------------------------------------------------- plain numbers


def test_step_lr_values():
    opt = make_opt(0.1)
    got = lrs_after_steps(StepLR(opt, step_size=3, gamma=0.5), opt, 7)
    np.testing.assert_allclose(got, [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025], rtol=1e-15)


def test_exponential_lr_values_and_step_every():
    opt = make_opt(1.0)
    np.testing.assert_allclose(lrs_after_steps(ExponentialLR(opt, 0.5), opt, 3), [0.5, 0.25, 0.125], rtol=1e-15)
    opt = make_opt(1.0)
    got = lrs_after_steps(ExponentialLR(opt, 0.5, step_every=2), opt, 5)
    np.testing.assert_allclose(got, [1.0, 0.5, 0.5, 0.25, 0.25], rtol=1e-15)


def test_plateau_patience_factor_min_lr_and_mode_max():
    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, patience=2, factor=0.5, min_lr=0.3)
    # 1.0 best, then 3 bad epochs -> reduce at the third (num_bad > patience), counter restarts
    got = lrs_after_steps(sched, opt, 7, [1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.6])
    assert got == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    for m in [0.6, 0.6]:
        sched.step(m)
    assert opt.lr == 0.3  # max(0.5 * 0.5, min_lr)
    for m in [0.6] * 3:
        sched.step(m)
    assert opt.lr == 0.3  # already at min_lr
    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, mode="max", patience=0, factor=0.1)
    assert lrs_after_steps(sched, opt, 3, [0.5, 0.6, 0.6]) == pytest.approx([1.0, 1.0, 0.1], rel=1e-15)


def test_plateau_threshold_is_relative_and_nan_is_bad():
    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, patience=0, threshold=0.1)
    sched.step(1.0)
    sched.step(0.95)  # not below 1.0 * (1 - 0.1): a bad epoch -> reduce (patience 0)
    assert opt.lr == pytest.approx(0.1)
    assert sched.best == 1.0
    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, patience=1)
    sched.step(1.0)
    sched.step(float("nan"))
    assert sched.num_bad_epochs == 1
    sched.step(float("nan"))
    assert opt.lr == pytest.approx(0.1)


@pytest.mark.parametrize("make", [
    lambda o: StepLR(o, 2, 0.5),
    lambda o: ExponentialLR(o, 0.9, step_every=2),
    lambda o: ReduceLROnPlateau(o, patience=1, factor=0.5, cooldown=1),
], ids=["step", "exp", "plateau"])
def test_state_dict_round_trip_continues_identically(make):
    metrics = [1.0, 0.9, 0.95, 0.97, 0.99, 0.8, 0.85, 0.9, 0.95, 1.0]
    opt = make_opt(0.1)
    sched = make(opt)
    needs = sched.needs_metric
    for e in range(4):
        sched.step(metrics[e]) if needs else sched.step()
    state = sched.state_dict()
    assert all(isinstance(v, (int, float, str)) for v in state.values()), state
    opt_state = opt.state_dict()
    rest = []
    for m in metrics[4:]:
        sched.step(m) if needs else sched.step()
        rest.append(opt.lr)
    rest_lrs = []
    opt2 = make_opt(0.5)
    opt2.load_state_dict(opt_state)
    sched2 = make(opt2)
    sched2.load_state_dict(state)
    assert sched2.state_dict() == state
    for m in metrics[4:]:
        sched2.step(m) if needs else sched2.step()
        rest_lrs.append(opt2.lr)
    assert rest_lrs == rest and sched2.state_dict() == sched.state_dict()
    # a fresh schedule (counters at zero) would not have reached the same lr
    opt3 = make_opt(0.5)
    opt3.load_state_dict(opt_state)
    sched3 = make(opt3)
    for m in metrics[4:]:
        sched3.step(m) if needs else sched3.step()
    assert sched3.state_dict() != sched.state_dict()


def test_load_state_dict_reports_missing_keys():
    sched = StepLR(make_opt(), 2)
    with pytest.raises(ValueError, match="step_size"):
        sched.load_state_dict({"gamma": 0.1})


@pytest.mark.parametrize("build,key,value", [
    (lambda o: StepLR(o, 2, 0.5), "gamma", -1.0),
    (lambda o: StepLR(o, 2, 0.5), "gamma", "x"),
    (lambda o: StepLR(o, 2, 0.5), "step_size", 0),
    (lambda o: StepLR(o, 2, 0.5), "last_epoch", 1.5),
    (lambda o: ExponentialLR(o, 0.5), "base_lr", float("nan")),
    (lambda o: ReduceLROnPlateau(o), "factor", 2.0),
    (lambda o: ReduceLROnPlateau(o), "mode", "sideways"),
    (lambda o: ReduceLROnPlateau(o), "patience", -1),
])
def test_refused_schedule_load_state_dict_changes_nothing(build, key, value):
    """A bad value anywhere in the state raises before any attribute changes (issue 12)."""
    sched = build(make_opt())
    before = sched.state_dict()
    state = {k: v for k, v in before.items()}
    for k, v in state.items():  # change every other entry to a valid new value: none of them may be applied
        if k != key and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            state[k] = v + 1 if isinstance(v, int) else v * 0.5
    state[key] = value
    with pytest.raises(ValueError, match=key):
        sched.load_state_dict(state)
    assert sched.state_dict() == before


@pytest.mark.parametrize("build,match", [
    (lambda o: StepLR(o, 0), "step_size"),
    (lambda o: StepLR(o, 2.5), "step_size"),
    (lambda o: StepLR(o, 2, gamma=0), "gamma"),
    (lambda o: StepLR(o, 2, gamma=float("nan")), "gamma"),
    (lambda o: ExponentialLR(o, -0.5), "gamma"),
    (lambda o: ExponentialLR(o, 0.5, step_every=0), "step_every"),
    (lambda o: ReduceLROnPlateau(o, mode="up"), "mode"),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), "factor"),
    (lambda o: ReduceLROnPlateau(o, patience=-1), "patience"),
    (lambda o: ReduceLROnPlateau(o, threshold_mode="x"), "threshold_mode"),
    (lambda o: ReduceLROnPlateau(o, min_lr=-1), "min_lr"),
], ids=["step0", "step-float", "gamma0", "gamma-nan", "exp-neg", "every0", "mode", "factor1", "patience",
        "thr-mode", "min-lr"])
def test_argument_validation(build, match):
    with pytest.raises(ValueError, match=match):
        build(make_opt())


def test_schedule_needs_an_optimizer_with_lr():
    with pytest.raises(TypeError, match="lr"):
        StepLR(object(), 2)


# --------------------------------------------------------------------------- against PyTorch


def torch_lrs(kind, kwargs, lr, steps, metrics=None):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr)
    sched = getattr(torch.optim.lr_scheduler, kind)(opt, **kwargs)
    out = []
    for e in range(steps):
        opt.step()
        sched.step() if metrics is None else sched.step(metrics[e])
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("kind,cls,kwargs,lr", [
    ("StepLR", StepLR, dict(step_size=3, gamma=0.3), 0.07),
    ("StepLR", StepLR, dict(step_size=1, gamma=0.9), 0.1),
    ("ExponentialLR", ExponentialLR, dict(gamma=0.83), 0.05),
], ids=["step3", "step1", "exp"])
def test_matches_torch_bitwise(kind, cls, kwargs, lr):
    want = torch_lrs(kind, kwargs, lr, 12)
    opt = make_opt(lr)
    assert lrs_after_steps(cls(opt, **kwargs), opt, 12) == want


@pytest.mark.parametrize("kwargs", [
    dict(mode="min", factor=0.5, patience=2),
    dict(mode="min", factor=0.3, patience=0, threshold=0.05, threshold_mode="abs", cooldown=2, min_lr=1e-3),
    dict(mode="max", factor=0.1, patience=1, threshold=0.01),
], ids=["min", "abs-cooldown-minlr", "max"])
def test_plateau_matches_torch(kwargs):
    metrics = [1.0, 0.9, 0.91, 0.92, 0.89, 0.95, 0.96, 0.97, 0.5, 0.51, 0.52, 0.53, 0.54, 0.55, 0.56]
    want = torch_lrs("ReduceLROnPlateau", kwargs, 0.2, len(metrics), metrics)
    opt = make_opt(0.2)
    got = lrs_after_steps(ReduceLROnPlateau(opt, **kwargs), opt, len(metrics), metrics)
    assert got == want
    assert len(set(got)) > 1  # the sequence does reduce


# --------------------------------------------------------------------------- make_schedule


def test_make_schedule_parses_specs():
    opt = make_opt(0.1)
    s = make_schedule("step:5:0.5", opt)
    assert isinstance(s, StepLR) and (s.step_size, s.gamma) == (5, 0.5) and s.optimizer is opt
    assert make_schedule("step:4", opt).gamma == 0.1
    e = make_schedule("exp:0.9", opt)
    assert isinstance(e, ExponentialLR) and (e.gamma, e.step_every) == (0.9, 1)
    assert make_schedule("exp:0.9:3", opt).step_every == 3
    p = make_schedule("plateau", opt)
    assert isinstance(p, ReduceLROnPlateau) and (p.patience, p.factor) == (10, 0.1)
    p = make_schedule("plateau:3:0.5", opt)
    assert (p.patience, p.factor) == (3, 0.5)
    assert make_schedule(" Plateau:2 ", opt).patience == 2
    assert make_schedule("none", opt) is None and make_schedule("", opt) is None


@pytest.mark.parametrize("spec,match", [
    ("step", "1 to 2 fields"),
    ("step:x:0.5", "STEP .* must be an integer"),
    ("step:2.5", "STEP"),
    ("step:5:abc", "GAMMA .* must be a number"),
    ("step:1:2:3", "1 to 2 fields"),
    ("exp", "1 to 2 fields"),
    ("exp:0", "gamma must be > 0"),
    ("plateau:1:2", "factor"),
    ("plateau:-1", "patience"),
    ("cosine:10", "unknown schedule kind 'cosine'"),
], ids=lambda v: v if isinstance(v, str) and ":" in v or v in ("step", "exp") else None)
def test_make_schedule_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(spec, make_opt())


def test_make_schedule_rejects_non_strings():
    with pytest.raises(TypeError, match="string"):
        make_schedule(5, make_opt())


# --------------------------------------------------------------------------- SGD decay_biases and l1


@pytest.mark.parametrize("l1,decay_biases", [(0.0, False), (0.05, True), (0.05, False)],
                         ids=["no-bias-decay", "l1", "l1-no-bias-decay"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_l1_and_decay_biases_match_numpy_reference(l1, decay_biases, dtype):
    rng = np.random.default_rng(3)
    params = [Parameter(rng.standard_normal((4, 3)).astype(dtype)), Parameter(rng.standard_normal(4).astype(dtype))]
    params[0].data[0, 0] = 0  # sign(0) = 0
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in params] for _ in range(4)]
    start = [Parameter(p.data.copy()) for p in params]
    want = sgd_steps(params, grads, 0.1, momentum=0.9, weight_decay=0.2, l1=l1, decay_biases=decay_biases)
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.2, l1=l1, decay_biases=decay_biases)
    kept = []
    for gs in grads:
        opt.zero_grad()
        for p, g in zip(params, gs):
            p.grad += g
        opt.step()
        kept.append([p.grad.copy() for p in params])
    for p, w in zip(params, want):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, w, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    # .grad is left as the backward pass wrote it
    for k, gs in zip(kept, grads):
        for a, b in zip(k, gs):
            np.testing.assert_array_equal(a, b)
    # and the options do change the result (compared with plain SGD from the same start)
    plain = sgd_steps(start, grads, 0.1, momentum=0.9, weight_decay=0.2, l1=0.0, decay_biases=True)
    assert not np.allclose(plain[0], want[0]) or not np.allclose(plain[1], want[1])


def test_decay_biases_false_leaves_bias_untouched_without_gradient():
    opt = make_opt(0.5, weight_decay=0.1, decay_biases=False)
    w0, b0 = (p.data.copy() for p in opt.params)
    opt.step()  # zero gradients: only weight decay acts
    np.testing.assert_array_equal(opt.params[1].data, b0)
    np.testing.assert_allclose(opt.params[0].data, w0 - 0.5 * 0.1 * w0, rtol=1e-15)
    opt = make_opt(0.5, weight_decay=0.1)
    opt.step()
    np.testing.assert_allclose(opt.params[1].data, b0 - 0.05 * b0, rtol=1e-15)


def test_l1_alone_moves_each_weight_by_lr_times_l1():
    opt = make_opt(0.5, l1=0.01)
    w0 = opt.params[0].data.copy()
    opt.step()
    np.testing.assert_allclose(opt.params[0].data, w0 - 0.005 * np.sign(w0), rtol=1e-15)


def test_l1_keeps_float32():
    p = Parameter(np.array([[0.5, -0.25]], np.float32))
    opt = SGD([p], lr=0.1, l1=0.1)
    opt.step()
    assert p.data.dtype == np.float32
    np.testing.assert_array_equal(p.data, np.array([[0.5 - np.float32(0.1) * np.float32(0.1),
                                                     -0.25 + np.float32(0.1) * np.float32(0.1)]], np.float32))


def test_l1_state_dict_and_repr():
    opt = make_opt(0.1, l1=0.01, decay_biases=False)
    state = opt.state_dict()
    assert state["l1"] == 0.01 and state["decay_biases"] is False
    other = make_opt(0.3)
    other.load_state_dict(state)
    assert (other.l1, other.decay_biases, other.lr) == (0.01, False, 0.1)
    assert "l1=0.01" in repr(opt) and "decay_biases=False" in repr(opt)
    assert "l1" not in make_opt().state_dict() and "l1" not in repr(make_opt())
    with pytest.raises(ValueError, match="l1"):
        make_opt(l1=-1.0)
    with pytest.raises(ValueError, match="l1"):
        make_opt(l1=math.nan)
