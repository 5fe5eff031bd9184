"""The pure arithmetic of data parallelism: which part of a global batch a rank computes, and the flat buffer
that carries every gradient (and the step's loss and accuracy counts) through one allreduce.

Nothing here needs MPI; :mod:`fastcnn.distributed.replicas` uses both on every training step.
"""

import numpy as np

__all__ = ["shard_bounds", "shard_sizes", "FlatBuffer"]


def shard_sizes(m, size):
    """How many examples of a batch of ``m`` each of ``size`` ranks computes: ``numpy.array_split``'s rule.

    Every rank gets ``m // size`` examples and the first ``m % size`` ranks one more, so the sizes differ by
    at most one, add up to ``m`` (no example lost or counted twice), and rank 0 is empty only when ``m`` is 0.
    A batch smaller than the number of ranks leaves the last ranks without examples.

    Parameters
    ----------
    m : int >= 0
        Examples in the global batch.
    size : int >= 1
        Number of ranks.

    Returns
    -------
    list of int
        ``size`` counts.

    Examples
    --------
    >>> shard_sizes(10, 4)
    [3, 3, 2, 2]
    >>> shard_sizes(3, 4)
    [1, 1, 1, 0]
    """
    m, size = int(m), int(size)
    if m < 0 or size < 1:
        raise ValueError(f"shard_sizes: need m >= 0 and size >= 1, got m={m}, size={size}")
    base, extra = divmod(m, size)
    return [base + (r < extra) for r in range(size)]


def shard_bounds(m, size, rank):
    """``(lo, hi)``: rank ``rank`` computes examples ``lo:hi`` of a global batch of ``m`` (see :func:`shard_sizes`).

    The shards are contiguous and in rank order, so rank 0 holds the first examples of the batch.

    Examples
    --------
    >>> [shard_bounds(10, 4, r) for r in range(4)]
    [(0, 3), (3, 6), (6, 8), (8, 10)]
    """
    rank = int(rank)
    if not 0 <= rank < int(size):
        raise ValueError(f"shard_bounds: rank must be in [0, {size}), got {rank}")
    base, extra = divmod(int(m), int(size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class FlatBuffer:
    """One contiguous array holding every parameter's gradient, then ``extras`` scalars, for a single allreduce.

    :meth:`pack` copies the ``.grad`` arrays in, in ``params`` order, and the extra values after them;
    :meth:`unpack` copies the (reduced) gradients back and returns the extra values.  The buffer has the
    parameters' dtype (they share one: ``Sequential`` checks it).

    Parameters
    ----------
    params : sequence of fastcnn.layers.Parameter
    extras : int >= 0
        Scalars carried after the gradients (the step's loss sum, correct count and example count).

    Attributes
    ----------
    data : ndarray (total,)
        The buffer: ``sum(p.size for p in params) + extras`` elements.
    offsets : list of int
        Where each parameter's gradient starts (``len(params) + 1`` entries, the last the extras' start).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.layers.base import Parameter
    >>> a, b = Parameter(np.zeros((2, 2), np.float32)), Parameter(np.zeros(3, np.float32))
    >>> a.grad[:] = 1; b.grad[:] = 2
    >>> flat = FlatBuffer([a, b], extras=1)
    >>> flat.pack([7.0]).tolist()
    [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 7.0]
    >>> flat.data *= 2
    >>> flat.unpack(), b.grad.tolist()
    ([14.0], [4.0, 4.0, 4.0])
    """

    def __init__(self, params, extras=0):
        self.params = list(params)
        if not self.params and not extras:
            raise ValueError("FlatBuffer: needs at least one parameter or one extra value")
        dtypes = {p.grad.dtype for p in self.params}
        if len(dtypes) > 1:
            raise ValueError(f"FlatBuffer: the parameters must share one dtype, got {sorted(d.name for d in dtypes)}")
        dtype = dtypes.pop() if dtypes else np.dtype(np.float64)
        self.offsets = [0]
        for p in self.params:
            self.offsets.append(self.offsets[-1] + p.grad.size)
        self.extras = int(extras)
        self.data = np.zeros(self.offsets[-1] + self.extras, dtype=dtype)

    @property
    def nbytes(self):
        """Bytes in the buffer: what one allreduce carries."""
        return self.data.nbytes

    def pack(self, extra_values=()):
        """Copy every gradient, then ``extra_values`` (``extras`` numbers), into :attr:`data`; return it."""
        if len(extra_values) != self.extras:
            raise ValueError(f"FlatBuffer.pack: expected {self.extras} extra values, got {len(extra_values)}")
        data, off = self.data, self.offsets
        for i, p in enumerate(self.params):
            data[off[i]:off[i + 1]] = p.grad.reshape(-1)
        data[off[-1]:] = extra_values
        return data

    def unpack(self):
        """Copy :attr:`data` back into every ``.grad`` (in place); return the extra values as floats."""
        data, off = self.data, self.offsets
        for i, p in enumerate(self.params):
            p.grad.reshape(-1)[...] = data[off[i]:off[i + 1]]
        return [float(v) for v in data[off[-1]:]]
