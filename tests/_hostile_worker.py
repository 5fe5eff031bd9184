"""Hostile arguments for every checked function of fastcnn.kernels (issue 12's fuzz suite), run in a child process.

Not collected by the main test run (the name does not start with ``test_``):
``tests/kernels/test_properties.py::test_hostile_arguments`` runs ``python -m pytest`` on this file in a
subprocess with a 4 GiB address-space limit, so that a segfault, an out-of-memory kill or a hang fails that
test (naming the call, which is written to ``$FASTCNN_HOSTILE_LOG`` before it runs) instead of killing pytest.

Each example takes a valid call of one function (small random geometry, float32 or float64), changes one
argument and calls the function.  The change is one of three kinds:

* ``invalid`` (wrong dtype, not an array, wrong ndim or a shape that disagrees with another argument, a size of
  0 or below, a non-integer size, a wrong-typed flag or number): the call must raise ValueError or TypeError
  whose message names the function;
* ``same`` (the same values as a Fortran-ordered, strided, negative-stride or read-only view; numpy integer
  scalars; a list for a pair): the call must give exactly the result of the unchanged call;
* ``either`` (NaN or infinite values, empty axes, huge sizes, the other float dtype, None for an optional
  array): a clean error as above or a result.

In every case anything else (IndexError, a Numba TypingError, MemoryError, OverflowError, ZeroDivisionError,
a crash or a hang) fails.  ``test_empty_axis`` gives convolution, max pooling and linear calls an axis of size
0 (the naive loops' result or a clean error), and ``test_fixed`` runs the cases this suite found that were fixed
(each must be refused).  ``KNOWN_BUGS`` lists the cases excluded here because they fail today; each has a
strict-xfail test in ``tests/kernels/test_properties.py`` that runs it, so the entry goes when the bug is fixed.
"""

import faulthandler
import math
import os
import resource

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive as nv

from fastcnn import kernels as K

if os.environ.get("FASTCNN_HOSTILE_MEMORY"):  # set by test_properties.run_worker: no allocation beyond this
    _limit = int(os.environ["FASTCNN_HOSTILE_MEMORY"])
    resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))

#: Seconds one call may take before the process dumps its stack and exits (a cold Numba cache compiles on first
#: use: generous).
CALL_TIMEOUT_S = 300
#: Huge kernel sizes, strides and paddings: 2**20 is accepted as a size but a padding that large asks for an
#: output of 2**42 pixels; from 2**31 on the sizes are refused; from 2**63 on they do not fit an int64.
HUGE = (2**20, 2**31, 2**45, 2**63 - 1, 2**63, 2**64, 10**30)
#: Huge dimensions of an x_shape or w_shape: every one describes an array larger than any machine's memory.
HUGE_DIMS = (2**42, 2**63 - 1, 2**63, 2**64, 10**30)


# --------------------------------------------------------------------------- valid calls


def _arr(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _conv_geometry(rng):
    N, C, K_, R, S = (int(rng.integers(1, 4)) for _ in range(5))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = (int(rng.integers(0, 2)), int(rng.integers(0, 2)))
    H, W = R + int(rng.integers(0, 3)), S + int(rng.integers(0, 3))
    P, Q = (H + 2 * padding[0] - R) // stride[0] + 1, (W + 2 * padding[1] - S) // stride[1] + 1
    return N, C, H, W, K_, R, S, P, Q, stride, padding


def _conv_calls(rng, dtype):
    N, C, H, W, K_, R, S, P, Q, stride, padding = _conv_geometry(rng)
    x, w, b, dy = _arr(rng, (N, C, H, W), dtype), _arr(rng, (K_, C, R, S), dtype), _arr(rng, K_, dtype), \
        _arr(rng, (N, K_, P, Q), dtype)
    cols = _arr(rng, (N, C * R * S, P * Q), dtype)
    geo = dict(stride=stride, padding=padding)
    return {
        "conv2d_forward": dict(x=x, w=w, b=b, **geo, algorithm="auto"),
        "conv2d_backward": dict(dy=dy, x=x, w=w, **geo, need_input_grad=True, algorithm="auto"),
        "conv2d_forward_im2col": dict(x=x, w=w, b=b, **geo),
        "conv2d_backward_im2col": dict(dy=dy, x=x, w=w, **geo, need_input_grad=True),
        "conv2d_output_shape": dict(x_shape=x.shape, w_shape=w.shape, **geo),
        "conv2d_plan": dict(x_shape=x.shape, w_shape=w.shape, **geo, dtype=dtype, algorithm="auto",
                            need_input_grad=True, num_threads=None),
        "im2col": dict(x=x, kernel_size=(R, S), **geo),
        "col2im": dict(cols=cols, x_shape=x.shape, kernel_size=(R, S), **geo),
    }


def _local_calls(rng, dtype):
    N, C, H, W, K_, R, S, P, Q, stride, padding = _conv_geometry(rng)
    x, w, b, dy = _arr(rng, (N, C, H, W), dtype), _arr(rng, (P, Q, K_, C, R, S), dtype), \
        _arr(rng, (K_, P, Q), dtype), _arr(rng, (N, K_, P, Q), dtype)
    geo = dict(stride=stride, padding=padding)
    return {
        "locally_connected2d_output_shape": dict(x_shape=x.shape, w_shape=w.shape, **geo),
        "locally_connected2d_forward": dict(x=x, w=w, b=b, **geo),
        "locally_connected2d_backward": dict(dy=dy, x=x, w=w, **geo, need_input_grad=True),
    }


def _pool_calls(rng, dtype):
    N, C = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
    H, W = kh + int(rng.integers(0, 4)), kw + int(rng.integers(0, 4))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    ceil_mode = bool(rng.integers(0, 2))
    x = _arr(rng, (N, C, H, W), dtype)
    geo = dict(kernel_size=(kh, kw), stride=stride, padding=(ph, pw), ceil_mode=ceil_mode)
    y, argmax = K.max_pool2d_forward(x, **geo)
    dy = _arr(rng, y.shape, dtype)
    avg = dict(geo, count_include_pad=bool(rng.integers(0, 2))) if hasattr(K, "global_max_pool2d_forward") else geo
    calls = {
        "max_pool2d_forward": dict(x=x, **geo),
        "max_pool2d_backward": dict(dy=dy, argmax=argmax, x_shape=x.shape),
        "avg_pool2d_forward": dict(x=x, **avg),
        "avg_pool2d_backward": dict(dy=dy, x_shape=x.shape, **avg),
        "pool2d_output_shape": dict(x_shape=x.shape, **geo),
        "global_avg_pool2d_forward": dict(x=x),
        "global_avg_pool2d_backward": dict(dy=_arr(rng, (N, C), dtype), x_shape=x.shape),
    }
    if hasattr(K, "global_max_pool2d_forward"):  # issue 13 adds it (and count_include_pad)
        calls["global_max_pool2d_forward"] = dict(x=x)
        calls["global_max_pool2d_backward"] = dict(dy=_arr(rng, (N, C), dtype),
                                                   argmax=K.global_max_pool2d_forward(x)[1], x_shape=x.shape)
    return calls


def _elementwise_calls(rng, dtype):
    shape = tuple(int(d) for d in rng.integers(1, 4, size=int(rng.integers(1, 5))))
    x, dy = _arr(rng, shape, dtype), _arr(rng, shape, dtype)
    y = np.tanh(x).astype(dtype)
    rows = _arr(rng, (int(rng.integers(1, 4)), int(rng.integers(1, 5))), dtype)
    drows = _arr(rng, rows.shape, dtype)
    slope = float(rng.uniform(-1, 1))
    calls = {f"{a}_forward": dict(x=x) for a in ("relu", "sigmoid", "tanh")}
    calls.update(relu_backward=dict(dy=dy, x=x), sigmoid_backward=dict(dy=dy, y=y), tanh_backward=dict(dy=dy, y=y),
                 leaky_relu_forward=dict(x=x, negative_slope=slope),
                 leaky_relu_backward=dict(dy=dy, x=x, negative_slope=slope),
                 softmax_forward=dict(x=rows), softmax_backward=dict(dy=drows, y=K.softmax_forward(rows)),
                 residual_add=dict(a=x, b=dy, relu=bool(rng.integers(0, 2))))
    return calls


def _norm_calls(rng, dtype):
    N, C = int(rng.integers(2, 4)), int(rng.integers(1, 4))
    calls = {}
    for fn, shape in (("batch_norm2d", (N, C, 2, 3)), ("batch_norm1d", (N, C) + ((2,) if rng.integers(0, 2) else ()))):
        x, dy = _arr(rng, shape, dtype), _arr(rng, shape, dtype)
        weight, bias = _arr(rng, C, dtype), _arr(rng, C, dtype)
        mean, var = _arr(rng, C, dtype), (rng.random(C) + 0.5).astype(dtype)
        training = bool(rng.integers(0, 2))
        calls[f"{fn}_forward"] = dict(x=x, weight=weight, bias=bias, running_mean=mean, running_var=var,
                                      training=training, momentum=0.1, eps=1e-5)
        _, m, inv_std = getattr(K, f"{fn}_forward")(x, weight, bias, mean.copy(), var.copy(), training)
        calls[f"{fn}_backward"] = dict(dy=dy, x=x, weight=weight, mean=m, inv_std=inv_std, training=training)
    x = _arr(rng, (N, C, 3), dtype)
    calls["batch_norm_training_forward"] = dict(x=x, weight=_arr(rng, C, dtype), bias=_arr(rng, C, dtype), eps=1e-3)
    return calls


def _dense_calls(rng, dtype):
    N, I, O = (int(rng.integers(1, 5)) for _ in range(3))
    x, w, b, dy = _arr(rng, (N, I), dtype), _arr(rng, (O, I), dtype), _arr(rng, O, dtype), _arr(rng, (N, O), dtype)
    logits = _arr(rng, (N, O), dtype)
    return {
        "linear_forward": dict(x=x, w=w, b=b),
        "linear_backward": dict(dy=dy, x=x, w=w, need_input_grad=True),
        "softmax_cross_entropy": dict(logits=logits, labels=rng.integers(0, O, size=N)),
        "mse_loss": dict(pred=x, target=_arr(rng, x.shape, dtype)),
    }


FAMILIES = (_conv_calls, _local_calls, _pool_calls, _elementwise_calls, _norm_calls, _dense_calls)
FUNCTIONS = sorted(name for family in FAMILIES for name in family(np.random.default_rng(0), np.float64))

#: The arguments that may be None in a valid call, and those written in place.
OPTIONAL = {"b", "weight", "bias", "running_mean", "running_var", "num_threads", "stride"}
#: Arrays whose shape is free, or partly free (a changed shape may be valid); the others' must agree with them.
PRIMARY = {"x", "w", "dy", "cols", "pred", "logits", "a"}
KINDS = {
    "x_shape": "shape", "w_shape": "shape", "kernel_size": "positive", "stride": "positive", "padding": "padding",
    "ceil_mode": "flag", "need_input_grad": "flag", "training": "flag", "count_include_pad": "flag",
    "relu": "flag", "algorithm": "algorithm",
    "negative_slope": "real", "momentum": "real", "eps": "real", "dtype": "dtype", "num_threads": "threads",
    "argmax": "index_array", "labels": "index_array",
}


# --------------------------------------------------------------------------- changed arguments


def _layouts(v):
    """Views with the values of ``v`` in other memory layouts (label, view)."""
    out = [("fortran", np.asfortranarray(v))]
    if v.ndim:
        big = np.zeros(v.shape[:-1] + (2 * v.shape[-1],), dtype=v.dtype)
        big[..., ::2] = v
        out.append(("strided", big[..., ::2]))
        out.append(("negative_stride", v[..., ::-1].copy()[..., ::-1]))
    ro = v.copy()
    ro.flags.writeable = False
    out.append(("read_only", ro))
    return out


def _float_array_changes(name, v, rng):
    """(label, value, expect) for a float array argument."""
    free = name in PRIMARY
    bound = "either" if free else "invalid"
    other = np.float32 if v.dtype == np.float64 else np.float64
    changes = [(f"dtype_{d}", v.astype(d), "invalid")
               for d in (np.int64, np.int32, np.uint8, np.bool_, np.complex128, np.float16, object)]
    changes += [("other_float", v.astype(other), "either"), ("big_endian", v.astype(v.dtype.newbyteorder()), "either"),
                ("list", v.tolist(), "invalid"), ("scalar", 2.5, "invalid"), ("string", "3", "invalid"),
                ("none", None, "either" if name in OPTIONAL else "invalid"),
                ("zero_dim", np.asarray(v.ravel()[0] if v.size else 0.0, dtype=v.dtype), "either"),
                ("extra_axis", v[..., None], bound), ("broadcast", np.broadcast_to(v.ravel()[:1], v.shape), "either")]
    if v.ndim > 1:
        changes.append(("flattened", v.reshape(-1), bound))
    for axis in range(v.ndim):
        grown = np.concatenate([v, v.take([0], axis=axis)], axis=axis)
        changes.append((f"axis{axis}_plus1", grown, bound))
        changes.append((f"axis{axis}_empty", v.take([], axis=axis), "either"))
    for label, bad in (("nan", np.nan), ("inf", np.inf), ("huge", 1e308 if v.dtype == np.float64 else 3e38)):
        w = v.copy()
        if w.size:
            w.flat[int(rng.integers(w.size))] = bad
            changes.append((label, w, "either"))
    if name in ("running_mean", "running_var"):  # written in place: other layouts are refused or updated
        changes += [(f"layout_{lab}", view, "either") for lab, view in _layouts(v)]
    else:
        changes += [(f"layout_{lab}", view, "same") for lab, view in _layouts(v)]
    return changes


def _index_array_changes(v, name):
    bad_values = [-1, 2**40, np.iinfo(np.int64).min]
    changes = [("float", v.astype(np.float64), "invalid"), ("bool", v.astype(bool), "invalid"),
               ("object", v.astype(object), "invalid"), ("none", None, "invalid"), ("string", "0", "invalid"),
               ("extra_axis", v[..., None], "invalid"), ("empty", v[:0], "invalid"),
               ("int32", v.astype(np.int32), "same"), ("list", v.tolist(), "same"),
               ("uint64_max", np.full(v.shape, np.iinfo(np.uint64).max, dtype=np.uint64), "invalid")]
    changes += [(f"layout_{lab}", view, "same") for lab, view in _layouts(v)]
    for bad in bad_values:
        w = v.copy()
        w.flat[0] = bad
        changes.append((f"value_{bad}", w, "invalid"))
    if name == "argmax":
        changes.append(("float_nan", np.full(v.shape, np.nan), "invalid"))
    return changes


def _int_changes(v, kind, name):
    """(label, value, expect) for an int-or-pair argument (kernel_size, stride, padding) valid value ``v``."""
    a, b = (v, v) if isinstance(v, int) else v
    lowest = 0 if kind == "padding" else 1
    changes = [("below_min", lowest - 1, "invalid"), ("pair_below_min", (a, lowest - 1), "invalid"),
               ("int64_min", -2**63, "invalid"), ("float", 2.5, "invalid"), ("whole_float", float(a), "invalid"),
               ("np_float", np.float64(a), "invalid"), ("string", "3", "invalid"), ("bytes", b"3", "invalid"),
               ("bool", True, "invalid"), ("pair_bool", (True, b), "invalid"), ("complex", 1j, "invalid"),
               ("nan", math.nan, "invalid"), ("inf", math.inf, "invalid"), ("single", (a,), "invalid"),
               ("triple", (a, b, 1), "invalid"), ("pair_float", (a, 2.5), "invalid"),
               ("pair_none", (a, None), "invalid"), ("dict", {"h": a}, "invalid"),
               ("np_pair", (np.int64(a), np.int32(b)), "same"), ("list", [a, b], "same")]
    if name != "stride":
        changes.append(("none", None, "invalid"))
    changes += [(f"huge_{h}", h, "either") for h in HUGE] + [(f"pair_huge_{h}", (a, h), "either") for h in HUGE[1:]]
    return changes


def _shape_changes(v):
    v = tuple(v)
    changes = [("short", v[:-1], "invalid"), ("long", v + (1,), "invalid"), ("none", None, "invalid"),
               ("string", "2,3", "invalid"), ("float_dim", v[:-1] + (2.5,), "invalid"),
               ("whole_float_dim", v[:-1] + (float(v[-1]),), "invalid"), ("bool_dim", v[:-1] + (True,), "invalid"),
               ("none_dim", v[:-1] + (None,), "invalid"), ("np_dims", tuple(np.int64(d) for d in v), "same"),
               ("list", list(v), "same"), ("array", np.array(v), "same")]
    for i in range(len(v)):
        changes += [(f"dim{i}_zero", v[:i] + (0,) + v[i + 1:], "either"),
                    (f"dim{i}_negative", v[:i] + (-1,) + v[i + 1:], "invalid")]
        changes += [(f"dim{i}_huge_{h}", v[:i] + (h,) + v[i + 1:], "either") for h in HUGE_DIMS]
    return changes


def _scalar_changes(kind, v):
    """(label, value, expect) for a flag, an algorithm name, a real number, a dtype or a thread count."""
    if kind == "flag":
        invalid = {"string": "False", "none": None, "float": 2.5, "list": []}
        other = [("np_bool", np.bool_(v), "same"), ("int", int(v), "either")]
    elif kind == "algorithm":
        invalid = {"upper": "AUTO", "empty": "", "none": None, "int": 3, "bytes": b"auto", "list": ["auto"]}
        other = [(a, a, "either") for a in ("direct", "nchw", "winograd4", "matmul_1x1")]
    elif kind == "real":
        invalid = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "string": "0.1", "none": None,
                   "complex": 0.1j, "bool": True, "huge_int": 10**400}
        other = [("np_float32", np.float32(v), "either"), ("negative", -1.0, "either"), ("big", 2.0, "either"),
                 ("zero", 0.0, "either"), ("array", np.array([v]), "either")]
    elif kind == "dtype":
        invalid = {"int": np.int64, "float16": np.float16, "complex": complex, "nonsense": "nonsense",
                   "object": object}
        other = [("string_name", np.dtype(v).name, "same"), ("none", None, "either")]
    else:
        assert kind == "threads", kind
        invalid = {"zero": 0, "negative": -1, "float": 2.5, "string": "2", "bool": True}
        other = [("huge", 2**63, "either"), ("one", 1, "either")]
    return [(label, value, "invalid") for label, value in invalid.items()] + other


class Together(dict):
    """A change of several arguments at once (given as the value of one of them)."""


def changes_of(name, v, rng, others=()):
    """Every (label, value, expect) for argument ``name`` whose valid value is ``v`` (``others``: the other
    arguments' names)."""
    kind = KINDS.get(name)
    if name == "kernel_size" and "padding" in others:  # a huge window that the padding lets fit
        return _int_changes(v, kind, name) + [
            ("huge_window_half_padding", Together(kernel_size=2**30, padding=2**29), "either"),
            ("huge_window_rows", Together(kernel_size=(2**30, 1), padding=(2**29, 0)), "either")]
    if name == "padding" and "algorithm" in others:  # a small output of a huge padded input, copied by some plans
        return _int_changes(v, kind, name) + [
            (f"huge_padding_stride_{a}", Together(padding=2**20, stride=2**21, algorithm=a), "either")
            for a in ("channel_last", "batch_last", "im2col", "nchw")]
    if kind == "index_array":
        return _index_array_changes(v, name)
    if kind in ("positive", "padding"):
        return _int_changes(v, kind, name)
    if kind == "shape":
        return _shape_changes(v)
    if kind is not None:
        return _scalar_changes(kind, v)
    return _float_array_changes(name, v, rng)


class Case:
    """One hostile call: function ``name``, its ``valid`` arguments, and argument ``arg`` changed to ``value``."""

    def __init__(self, name, valid, arg, label, value, expect):
        self.name, self.valid, self.arg, self.label, self.value, self.expect = name, valid, arg, label, value, expect

    def kwargs(self):
        changed = self.value if isinstance(self.value, Together) else {self.arg: self.value}
        return dict(_copy_args(self.valid), **changed)

    def __repr__(self):
        return f"{call_text(self.name, self.kwargs())}  [{self.arg}: {self.label}, expected {self.expect}]"


@st.composite
def hostile_calls(draw, name):
    """A :class:`Case` for function ``name``: a valid call of a random small geometry and dtype, one argument
    changed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    family = next(f for f in FAMILIES if name in f(np.random.default_rng(0), np.float64))
    valid = family(rng, dtype)[name]
    arg = draw(st.sampled_from(sorted(valid)))
    label, value, expect = draw(st.sampled_from(changes_of(arg, valid[arg], rng, valid)))
    return Case(name, valid, arg, label, value, expect)


# --------------------------------------------------------------------------- running and judging one call


def describe(value):
    """A short description of an argument: arrays by shape, dtype and layout, the rest by repr."""
    if isinstance(value, np.ndarray):
        flags = "C" if value.flags.c_contiguous else "F" if value.flags.f_contiguous else "strided"
        ro = "" if value.flags.writeable else ", read-only"
        return f"array(shape={value.shape}, dtype={value.dtype}, {flags}, strides={value.strides}{ro})"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def call_text(name, kwargs):
    return f"{name}(" + ", ".join(f"{k}={describe(v)}" for k, v in kwargs.items()) + ")"


def _log(text):
    path = os.environ.get("FASTCNN_HOSTILE_LOG")
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


def _equal(a, b):
    if isinstance(a, tuple) and not hasattr(a, "_fields"):
        return len(a) == len(b) and all(_equal(p, q) for p, q in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and \
            np.array_equal(a, b, equal_nan=True)
    return a == b or (a != a and b != b)


def _copy_args(kwargs):
    return {k: v.copy() if isinstance(v, np.ndarray) and v.flags.writeable else v for k, v in kwargs.items()}


def run_hostile(case):
    """Call the function of ``case`` and judge the outcome (AssertionError naming the call if wrong)."""
    name, expect = case.name, case.expect
    fn = getattr(K, name)
    kwargs, text = case.kwargs(), repr(case)
    reference = fn(**_copy_args(case.valid)) if expect == "same" else None
    _log(text)
    faulthandler.dump_traceback_later(CALL_TIMEOUT_S, exit=True)
    try:
        result = fn(**kwargs)
    except (ValueError, TypeError) as e:
        # the *_output_shape functions name the operation they serve (fn="conv2d" by default)
        named = name in str(e) or (name.endswith("_output_shape") and f"{name[:-len('_output_shape')]}:" in str(e))
        assert named, f"{text}: {type(e).__name__} does not name the function: {e}"
        assert expect != "same", f"{text}: refused an equivalent argument: {e}"
        return
    except Exception as e:  # noqa: BLE001 -- every other exception type is the failure being looked for
        raise AssertionError(f"{text}: raised {type(e).__module__}.{type(e).__name__}: {e}") from e
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert expect != "invalid", f"{text}: accepted an invalid argument"
    if expect == "same":
        assert _equal(result, reference), f"{text}: result differs from the call with the unchanged argument"


# --------------------------------------------------------------------------- empty axes


@st.composite
def empty_axis_calls(draw):
    """(function name, kwargs): a convolution, pooling or linear call with one axis of size 0."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    op = draw(st.sampled_from(["conv", "pool", "linear"]))
    if op == "linear":
        dims = dict(N=draw(st.integers(0, 3)), I=draw(st.integers(0, 3)), O=draw(st.integers(0, 3)))
        if min(dims.values()) > 0:
            dims[draw(st.sampled_from(sorted(dims)))] = 0
        x, w, b = _arr(rng, (dims["N"], dims["I"]), dtype), _arr(rng, (dims["O"], dims["I"]), dtype), \
            _arr(rng, dims["O"], dtype)
        return "linear_forward", dict(x=x, w=w, b=b)
    N, C, H, W, K_, R, S, P, Q, stride, padding = _conv_geometry(rng)
    axis = draw(st.sampled_from("NCKHW" if op == "conv" else "NCHW"))
    N, C, H, W, K_ = (0 if axis == a else v for a, v in zip("NCHWK", (N, C, H, W, K_)))
    x = _arr(rng, (N, C, H, W), dtype)
    if op == "pool":
        return "max_pool2d_forward", dict(x=x, kernel_size=(R, S), stride=stride, padding=(R // 2, S // 2))
    algorithm = draw(st.sampled_from(("auto",) + K.CONV_ALGORITHMS))
    return "conv2d_forward", dict(x=x, w=_arr(rng, (K_, C, R, S), dtype), b=_arr(rng, K_, dtype), stride=stride,
                                  padding=padding, algorithm=algorithm)


def check_empty_axis(name, kwargs):
    """A call with an empty axis gives the naive loops' result (and, for a convolution, gradients) or a clean error."""
    fn = getattr(K, name)
    text = call_text(name, kwargs)
    _log(text)
    try:
        got = fn(**kwargs)
        if name == "conv2d_forward":
            x, w, geo = kwargs["x"], kwargs["w"], dict(stride=kwargs["stride"], padding=kwargs["padding"])
            want = nv.conv2d_forward(x, w, kwargs["b"], **geo)
            dy = np.ones(want.shape, dtype=x.dtype)
            grads = K.conv2d_backward(dy, x, w, **geo, algorithm=kwargs["algorithm"])
            got, want = (got,) + grads, (want,) + nv.conv2d_backward(dy, x, w, **geo)
        elif name == "max_pool2d_forward":
            got, want = got[0], nv.max_pool2d_forward(kwargs["x"], kwargs["kernel_size"], kwargs["stride"],
                                                      kwargs["padding"])[0]
        else:
            want = nv.linear_forward(kwargs["x"], kwargs["w"], kwargs["b"])
    except (ValueError, TypeError) as e:
        assert "conv2d_" in str(e) or name in str(e), f"{text}: {type(e).__name__} does not name the function: {e}"
        return
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{text}: raised {type(e).__module__}.{type(e).__name__}: {e}") from e
    for g, e in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert g.shape == e.shape, f"{text}: shape {g.shape}, expected {e.shape}"
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4, err_msg=text)


# --------------------------------------------------------------------------- known bugs

#: Cases excluded from the properties above because they fail today: id -> (reason and the fix, whether a case is
#: one of them, a call that reproduces it).  Each is a strict-xfail test in tests/kernels/test_properties.py
#: (test_known_hostile_bug): when the bug is fixed it XPASSes, which fails; then remove the entry.
KNOWN_BUGS = {}


def _call(family, name, **changes):
    return dict(family(np.random.default_rng(0), np.float64)[name], **changes)


#: Cases that failed before fastcnn/kernels/_checks.py and the checked modules were fixed (issue 12's fuzz suite
#: found them), run every time: id -> (function, valid arguments, argument, value).  Each must be refused with a
#: ValueError or TypeError naming the function.
FIXED = {
    # flags were used for their truth value: training="False" trained, need_input_grad=None skipped dx
    "batch_norm_training_string": ("batch_norm2d_forward", lambda: _call(_norm_calls, "batch_norm2d_forward"),
                                   "training", "False"),
    "batch_norm_backward_training_none": ("batch_norm1d_backward", lambda: _call(_norm_calls, "batch_norm1d_backward"),
                                          "training", None),
    "linear_need_input_grad_string": ("linear_backward", lambda: _call(_dense_calls, "linear_backward"),
                                      "need_input_grad", "False"),
    "local_need_input_grad_float": ("locally_connected2d_backward",
                                    lambda: _call(_local_calls, "locally_connected2d_backward"),
                                    "need_input_grad", 2.5),
    # an int beyond the float range: numpy's TypeError without the function's name
    "batch_norm_eps_huge_int": ("batch_norm2d_forward", lambda: _call(_norm_calls, "batch_norm2d_forward"), "eps",
                                10**400),
    "leaky_relu_slope_huge_int": ("leaky_relu_forward", lambda: _call(_elementwise_calls, "leaky_relu_forward"),
                                  "negative_slope", -10**400),
    # numpy's "output array is read-only" without the function's name
    "batch_norm_read_only_running_mean": (
        "batch_norm2d_forward", lambda: _call(_norm_calls, "batch_norm2d_forward", training=True), "running_mean",
        "read_only"),
    # a stride beyond int64: OverflowError from the Numba dispatcher
    "conv_stride_2_63": ("conv2d_forward", lambda: _call(_conv_calls, "conv2d_forward"), "stride", 2**63),
    "max_pool_stride_2_64": ("max_pool2d_forward", lambda: _call(_pool_calls, "max_pool2d_forward"), "stride",
                             (1, 2**64)),
    # a padding of 2**31: numpy's "Maximum allowed dimension exceeded" without the function's name
    "im2col_padding_2_31": ("im2col", lambda: _call(_conv_calls, "im2col"), "padding", 2**31),
    # an x_shape of 2**42 pixels: MemoryError (or, where memory is overcommitted, an allocation the kernel fills)
    "max_pool_backward_huge_x_shape": ("max_pool2d_backward", lambda: _call(_pool_calls, "max_pool2d_backward"),
                                       "x_shape", "huge"),
    "global_avg_backward_huge_x_shape": ("global_avg_pool2d_backward",
                                         lambda: _call(_pool_calls, "global_avg_pool2d_backward"), "x_shape", "huge"),
    # True counted as a size
    "conv2d_plan_bool_dim": ("conv2d_plan", lambda: _call(_conv_calls, "conv2d_plan"), "x_shape", "bool"),
    # an unchecked x_shape: "cannot unpack non-iterable NoneType object"
    "local_output_shape_none": ("locally_connected2d_output_shape",
                                lambda: _call(_local_calls, "locally_connected2d_output_shape"), "x_shape", None),
    # need_input_grad used for its truth value: None skipped dx, "False" computed it
    "conv_backward_need_input_grad_none": ("conv2d_backward", lambda: _call(_conv_calls, "conv2d_backward"),
                                           "need_input_grad", None),
    "conv2d_plan_need_input_grad_string": ("conv2d_plan", lambda: _call(_conv_calls, "conv2d_plan"),
                                           "need_input_grad", "False"),
    # numpy's "data type 'nonsense' not understood" without the function's name
    "conv2d_plan_dtype_nonsense": ("conv2d_plan", lambda: _call(_conv_calls, "conv2d_plan"), "dtype", "nonsense"),
    # "cannot unpack non-iterable NoneType object"
    "conv_output_shape_none": ("conv2d_output_shape", lambda: _call(_conv_calls, "conv2d_output_shape"), "x_shape",
                               None),
    # an output of 2**42 pixels: MemoryError
    "conv_padding_2_20": ("conv2d_forward", lambda: _call(_conv_calls, "conv2d_forward"), "padding", 2**20),
}


def fixed_case(case_id):
    """The :class:`Case` of ``FIXED[case_id]``."""
    name, valid, arg, value = FIXED[case_id]
    valid = valid()
    if arg == "x_shape" and value in ("huge", "bool"):
        shape = tuple(valid["x_shape"])
        value = shape[:2] + (2**42, shape[3]) if value == "huge" else (True,) + shape[1:]
    if value == "read_only":
        value = valid[arg].copy()
        value.flags.writeable = False
    return Case(name, valid, arg, f"fixed:{case_id}", value, "invalid")


def known_bug(case):
    """The id of the known bug ``case`` hits, or None."""
    for bug, (_, hits, _) in KNOWN_BUGS.items():
        try:
            if hits(case):
                return bug
        except (AttributeError, TypeError, KeyError, IndexError):  # a predicate for the other kind of case
            pass
    return None


# --------------------------------------------------------------------------- the tests the child runs

EXAMPLES = int(os.environ.get("FASTCNN_HOSTILE_EXAMPLES", "8"))


@pytest.mark.parametrize("name", FUNCTIONS)
@settings(settings.get_profile("ci"), max_examples=EXAMPLES)
@given(data=st.data())
def test_hostile(name, data):
    case = data.draw(hostile_calls(name), label="case")
    if known_bug(case) is None:
        run_hostile(case)


@pytest.mark.parametrize("case_id", sorted(FIXED))
def test_fixed(case_id):
    run_hostile(fixed_case(case_id))


@settings(settings.get_profile("ci"), max_examples=4 * EXAMPLES)
@given(call=empty_axis_calls())
def test_empty_axis(call):
    if known_bug(call) is None:
        check_empty_axis(*call)
