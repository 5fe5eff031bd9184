"""Reading back a LocallyConnected2d: the pattern of standard operators that fastcnn's exporter writes for it.

ONNX has no locally connected operator; :mod:`fastcnn.onnx._export_ops` writes one as ``[Pad] ->
Reshape (N, C, Hp*Wp) -> Gather(axis 2, constant window indices) -> Einsum(nclr,lkcr->nkl, weights) ->
Reshape (N, K, P, Q) -> [Add bias]``.  :func:`locally_connected` recognises that chain, recovers the
kernel size and stride from the indices (and checks that they are exactly the windows those give),
and returns the layer.
"""

import numpy as np

from ..layers import LocallyConnected2d
from ._export_ops import LOCAL_EQUATION, local_indices
from ._reader import UnsupportedOnnxError

__all__ = ["locally_connected"]


def _is_batch(ctx, value, allowzero):
    """Whether a Reshape target's first entry keeps the batch size."""
    if isinstance(value, str):
        return True
    return (int(value) == 0 and not allowzero) or int(value) == ctx.graph.static_batch


def _reshape_target(ctx, node, x):
    allowzero = ctx.attrs(node, {"allowzero": 0})["allowzero"]
    ctx.data_input(node, x)
    target = ctx.graph.value(node.inputs[1], node.where).reshape(-1)
    if not len(target) or not _is_batch(ctx, target[0], allowzero) or any(isinstance(v, str) for v in target[1:]):
        return None
    return [int(v) for v in target[1:]]


def _next(ctx, value, op, where):
    node = ctx.next_node(value)
    if node is None or node.op != op:
        raise UnsupportedOnnxError(f"{where}: expected a {op} next (the locally connected pattern: [Pad], Reshape, "
                                   "Gather, Einsum, Reshape, [Add]), found "
                                   f"{'nothing single' if node is None else node.where}")
    return node


def _geometry(idx, P, Q, Hp, Wp):
    """``(kernel, stride)`` whose windows over a ``Hp x Wp`` plane are exactly ``idx``, or None."""
    L, RS = idx.shape
    for kh in (d for d in range(1, RS + 1) if RS % d == 0):
        kw = RS // kh
        if kh > Hp or kw > Wp:
            continue
        sh = int(idx[Q, 0] - idx[0, 0]) // Wp if P > 1 else Hp - kh + 1
        sw = int(idx[1, 0] - idx[0, 0]) if Q > 1 else Wp - kw + 1
        if sh < 1 or sw < 1 or (Hp - kh) // sh + 1 != P or (Wp - kw) // sw + 1 != Q:
            continue
        if np.array_equal(local_indices(P, Q, (kh, kw), (sh, sw), Wp), idx):
            return (kh, kw), (sh, sw)
    return None


def locally_connected(ctx, reshape, x, shape, padding):
    """The LocallyConnected2d whose pattern starts at ``reshape`` (reading ``x``, the input padded by ``padding``).

    Returns ``([layer], output tensor, (K, P, Q))`` as a handler does.
    """
    C, H, W = shape
    (ph, pw), where = padding, reshape.where
    Hp, Wp = H + 2 * ph, W + 2 * pw
    if _reshape_target(ctx, reshape, x) != [C, Hp * Wp]:
        raise UnsupportedOnnxError(f"{where}: reshapes to a shape fastcnn does not read (only (N, -1), a flatten, "
                                   "or the start of a locally connected pattern)")
    gather = _next(ctx, reshape.outputs[0], "Gather", where)
    if ctx.attrs(gather, {"axis": 0})["axis"] not in (2, -1):
        raise UnsupportedOnnxError(f"{gather.where}: fastcnn reads a Gather of windows along axis 2 only")
    ctx.data_input(gather, reshape.outputs[0])
    idx = ctx.constant(gather, 1, "indices", 2)
    einsum = _next(ctx, gather.outputs[0], "Einsum", gather.where)
    equation = ctx.attrs(einsum, {"equation": None})["equation"]
    if (equation or "").replace(" ", "") != LOCAL_EQUATION:
        raise UnsupportedOnnxError(f"{einsum.where}: equation {equation!r}; fastcnn reads {LOCAL_EQUATION!r} only")
    ctx.data_input(einsum, gather.outputs[0])
    w = ctx.weight(einsum, 1, "weight", 4)
    out = _next(ctx, einsum.outputs[0], "Reshape", einsum.where)
    target = _reshape_target(ctx, out, einsum.outputs[0])
    L, RS = idx.shape
    if idx.dtype.kind not in "iu" or target is None or len(target) != 3 or w.shape != (L, target[0], C, RS) \
            or target[1] * target[2] != L:
        raise UnsupportedOnnxError(f"{where}: the Gather indices {idx.shape}, Einsum weight {w.shape} and output "
                                   f"shape {target} do not fit a locally connected layer on (N, {C}, {H}, {W})")
    K, P, Q = target
    geometry = _geometry(idx, P, Q, Hp, Wp)
    if geometry is None:
        raise UnsupportedOnnxError(f"{gather.where}: its indices are not the windows of a locally connected layer")
    (kh, kw), stride = geometry
    value, bias = out.outputs[0], None
    after = ctx.next_node(value)
    if after is not None and after.op == "Add" and ctx.graph.is_constant(after.inputs[1]) and after.inputs[0] == value:
        ctx.attrs(after, {})
        bias = ctx.weight(after, 1, "bias")
        if bias.shape != (K, P, Q):
            raise UnsupportedOnnxError(f"{after.where}: bias of shape {bias.shape}, expected {(K, P, Q)}")
        value = after.outputs[0]
    layer = ctx.build(reshape, LocallyConnected2d, C, K, (kh, kw), input_size=(H, W), stride=stride, padding=padding,
                      bias=bias is not None, dtype=ctx.dtype)
    layer.weight.data[...] = w.reshape(P, Q, K, C, kh, kw)
    if bias is not None:
        layer.bias.data[...] = bias
    return [layer], value, (K, P, Q)
