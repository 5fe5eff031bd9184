"""Every kernel matches PyTorch (CPU) forward and autograd backward."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import naive as nv  # noqa: E402  (edge-shape tables only)
from helpers import assert_close, conv_inputs, randn  # noqa: E402

from fastcnn import kernels as K  # noqa: E402

# float64 to ~1e-9, float32 to ~1e-4 (relative, absolute scaled by magnitude)
TORCH_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}


def close(actual, expected, dtype, what=""):
    """``assert_close`` at PyTorch's tolerance; either side may be a tensor."""
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().numpy()
    assert_close(actual, expected, dtype, rtol=TORCH_RTOL[np.dtype(dtype)], err_msg=what)


def leaf(a):
    """A float64 leaf tensor holding exactly the values of ``a`` (so torch's
    answer is the precise reference for float32 inputs too)."""
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(nv.CONV_CASES))
@pytest.mark.parametrize("impl", ["direct", "im2col"])
def test_conv2d_matches_torch(impl, case, dtype, rng):
    fwd = K.conv2d_forward if impl == "direct" else K.conv2d_forward_im2col
    bwd = K.conv2d_backward if impl == "direct" else K.conv2d_backward_im2col
    x, w, b, s, p = conv_inputs(rng, case, dtype)
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = F.conv2d(tx, tw, tb, stride=nv.pair(s), padding=nv.pair(p))
    y = fwd(x, w, b, stride=s, padding=p)
    assert y.dtype == dtype
    close(y, ty, dtype, "y")
    dy = randn(rng, y.shape, dtype)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    dx, dw, db = bwd(dy, x, w, stride=s, padding=p)
    close(dx, tx.grad, dtype, "dx")
    close(dw, tw.grad, dtype, "dw")
    close(db, tb.grad, dtype, "db")


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(nv.POOL_CASES))
@pytest.mark.parametrize("values", ["normal", "repeated_ints"])
def test_max_pool2d_matches_torch(case, values, dtype, rng):
    N, C, H, W, k, s, p, cm = nv.POOL_CASES[case]
    if values == "normal":
        x = randn(rng, (N, C, H, W), dtype)
    else:
        x = rng.integers(0, 3, size=(N, C, H, W)).astype(dtype)
    tx = leaf(x)
    ty, tidx = F.max_pool2d(tx, k, s, p, ceil_mode=cm, return_indices=True)
    y, am = K.max_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    assert y.dtype == dtype
    close(y, ty, dtype, "y")
    assert np.issubdtype(am.dtype, np.integer)
    np.testing.assert_array_equal(am, tidx.numpy())
    dy = randn(rng, y.shape, dtype)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    dx = K.max_pool2d_backward(dy, am, x.shape)
    assert dx.dtype == dtype
    close(dx, tx.grad, dtype, "dx")


def test_nan_propagates_like_torch():
    """A NaN in a max-pool window wins it (and takes the gradient); relu keeps NaN."""
    x = np.arange(32.0).reshape(1, 2, 4, 4)
    x[0, 0, 1, 0] = np.nan
    x[0, 1, 3, 3] = np.nan
    ty, tidx = F.max_pool2d(torch.tensor(x), 2, return_indices=True)
    y, am = K.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(y, ty.numpy())  # treats NaN == NaN
    np.testing.assert_array_equal(am, tidx.numpy())
    np.testing.assert_array_equal(K.relu_forward(x), torch.relu(torch.tensor(x)).numpy())


@pytest.mark.parametrize("case", list(nv.POOL_CASES))
def test_avg_pool2d_matches_torch(case, dtype, rng):
    N, C, H, W, k, s, p, cm = nv.POOL_CASES[case]
    x = randn(rng, (N, C, H, W), dtype)
    tx = leaf(x)
    ty = F.avg_pool2d(tx, k, s, p, ceil_mode=cm)  # count_include_pad=True
    y = K.avg_pool2d_forward(x, k, stride=s, padding=p, ceil_mode=cm)
    assert y.dtype == dtype
    close(y, ty, dtype, "y")
    dy = randn(rng, y.shape, dtype)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    dx = K.avg_pool2d_backward(dy, x.shape, k, stride=s, padding=p, ceil_mode=cm)
    assert dx.dtype == dtype
    close(dx, tx.grad, dtype, "dx")


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 1, 1, 1)], ids=["odd_rect", "1x1"])
def test_global_avg_pool2d_matches_torch(shape, dtype, rng):
    x = randn(rng, shape, dtype)
    tx = leaf(x)
    ty = F.adaptive_avg_pool2d(tx, 1).reshape(shape[0], shape[1])
    close(ty, tx.mean(dim=(2, 3)), np.float64, "adaptive == mean")
    y = K.global_avg_pool2d_forward(x)
    assert y.dtype == dtype
    close(y, ty, dtype, "y")
    dy = randn(rng, y.shape, dtype)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    close(K.global_avg_pool2d_backward(dy, x.shape), tx.grad, dtype, "dx")


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activation_matches_torch(name, dtype, rng):
    x = randn(rng, (2, 3, 4, 5), dtype) * 3
    x.reshape(-1)[:6] = np.array([0.0, -0.0, 50.0, -50.0, 1e3, -1e3], dtype=dtype)
    tx = leaf(x)
    ty = getattr(torch, name)(tx)
    y = getattr(K, f"{name}_forward")(x)
    assert y.dtype == dtype
    close(y, ty, dtype, "y")
    dy = randn(rng, x.shape, dtype)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    second = x if name == "relu" else y  # relu_backward takes x, the others y
    dx = getattr(K, f"{name}_backward")(dy, second)
    assert dx.dtype == dtype
    close(dx, tx.grad, dtype, "dx")


# ---------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "bias_none"])
def test_linear_matches_torch(with_bias, dtype, rng):
    x = randn(rng, (4, 6), dtype)
    w = randn(rng, (3, 6), dtype)
    b = randn(rng, (3,), dtype) if with_bias else None
    tx, tw = leaf(x), leaf(w)
    tb = leaf(b) if with_bias else None
    ty = F.linear(tx, tw, tb)
    y = K.linear_forward(x, w, b)
    assert y.dtype == dtype
    close(y, ty, dtype, "y")
    dy = randn(rng, y.shape, dtype)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    dx, dw, db = K.linear_backward(dy, x, w)
    close(dx, tx.grad, dtype, "dx")
    close(dw, tw.grad, dtype, "dw")
    close(db, torch.tensor(dy.astype(np.float64)).sum(0), dtype, "db")
    if with_bias:
        close(db, tb.grad, dtype, "db vs autograd")


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
CE_CASES = {
    "random": None,
    "huge_magnitude": np.array([[1e4, -1e4, 0.0, 1.0],
                                [-1e4, 1e4, 3.0, -2.0],
                                [1e4, 1e4, -1e4, 0.0],
                                [0.0, 0.0, 0.0, -1e4]]),
    "all_huge_negative": np.full((4, 4), -1e4) + np.arange(4.0),
    # huge logits whose loss is O(1): the shift by the row max must cancel
    # exactly, not after rounding log(sum) + 1e4
    "huge_offset_order_one_loss": 1e4 + np.array([[0.0, 1.0, -2.0, 0.5],
                                                  [0.0, 0.0, 0.0, 0.0],
                                                  [3.0, -1.0, 0.0, 2.0],
                                                  [0.25, 0.0, 0.0, -0.5]]),
    # every row tied at 1e4: each loss is log(4) exactly
    "huge_tied_logits": np.full((4, 4), 1e4),
}


@pytest.mark.parametrize("case", list(CE_CASES))
def test_cross_entropy_matches_torch(case, dtype, rng):
    logits = CE_CASES[case]
    logits = randn(rng, (4, 4), dtype) * 3 if logits is None else logits.astype(dtype)
    labels = np.array([0, 2, 1, 3], dtype=np.int64)
    tz = leaf(logits)
    tl = F.cross_entropy(tz, torch.tensor(labels))  # reduction='mean'
    tl.backward()
    loss, d = K.softmax_cross_entropy(logits, labels)
    assert np.ndim(loss) == 0
    assert np.isfinite(float(loss)) and np.all(np.isfinite(d))
    close(float(loss), tl.item(), dtype, "loss")
    assert d.dtype == dtype
    close(d, tz.grad, dtype, "dlogits")


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2)], ids=["2d", "4d"])
def test_mse_loss_matches_torch(shape, dtype, rng):
    pred = randn(rng, shape, dtype)
    target = randn(rng, shape, dtype)
    tp = leaf(pred)
    tl = F.mse_loss(tp, torch.tensor(target.astype(np.float64)))
    tl.backward()
    loss, d = K.mse_loss(pred, target)
    assert np.ndim(loss) == 0
    close(float(loss), tl.item(), dtype, "loss")
    assert d.dtype == dtype
    close(d, tp.grad, dtype, "dpred")
