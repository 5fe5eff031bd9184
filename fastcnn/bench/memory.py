"""Extra memory of one convolution call: the computed model and the tracemalloc measurement.

"Extra" is what a call allocates besides its inputs and the arrays it
returns (y, or dx/dw/db).  :func:`conv_workspace_bytes` reads it from the
convolution's plan (:func:`fastcnn.kernels.conv2d_plan`);
:func:`traced_extra_bytes` measures what numpy allocated during a call
(tracemalloc sees numpy's buffers but not those Numba's runtime allocates
inside kernels).  ``fastcnn bench conv`` prints both side by side, and a test
checks that they agree.
"""

import gc
import tracemalloc

import numpy as np

__all__ = ["TIMED_OPS", "conv_workspace_bytes", "traced_extra_bytes"]

#: The convolution calls timed and measured: forward, weight gradient only (no dx), full backward.
TIMED_OPS = ("forward", "backward_weight", "backward")


def conv_workspace_bytes(shape, algorithm, op, threads=1, itemsize=4):
    """Extra memory one fastcnn convolution call allocates, read from its plan.

    The sum of the buffers of :func:`fastcnn.kernels.conv2d_plan` for the
    call (``plans.memory_bytes(op)``): what the convolution allocates besides
    its inputs and the returned arrays (y, or dx/dw/db).  This is the plan's
    account, not a measurement (compare with the tracemalloc figure of
    :func:`fastcnn.bench.bench_conv`).  Layout copies and partial gradients
    that the kernels keep in their workspace between calls
    (:func:`fastcnn.kernels.clear_workspace`) count as alive for the whole
    call; buffers allocated inside Numba kernels count once per parallel task.

    Parameters
    ----------
    shape : ConvShape
        The convolution (:class:`fastcnn.bench.ConvShape`).
    algorithm : str
        ``"direct"`` (the plan's choice per pass, as ``"auto"``), ``"im2col"``
        or any other name ``algorithm=`` of the kernels accepts.
    op : {"forward", "backward_weight", "backward"}
        A forward call, a backward call without dx, or a full backward (dx, dw, db).
    threads : int
        Parallel tasks alive at once (for per-task buffers).
    itemsize : {4, 8}
        Bytes per element: float32 or float64.

    Returns
    -------
    dict
        Peak bytes: ``numpy`` (allocated by numpy, which tracemalloc sees),
        ``numba`` (allocated inside Numba kernels by its runtime, which
        tracemalloc does not see) and ``total`` (both together).

    Examples
    --------
    >>> from fastcnn.bench import conv_workspace_bytes, parse_shape
    >>> conv_workspace_bytes(parse_shape("64x64x16x16:64k3s1p1"), "im2col", "forward")["total"]
    37748736
    """
    from ..kernels import conv2d_plan

    if op not in TIMED_OPS:
        raise ValueError(f"conv_workspace_bytes: op must be one of {TIMED_OPS}, got {op!r}")
    s = shape
    plans = conv2d_plan((s.n, s.c, s.h, s.w), s.weight_shape, s.stride, s.pad, dtype=np.dtype(f"f{itemsize}"),
                        algorithm=algorithm, need_input_grad=op == "backward", num_threads=threads, **s.grouping)
    return plans.memory_bytes(op)


def traced_extra_bytes(fn):
    """Peak bytes traced by tracemalloc during ``fn()``, minus the arrays it returns.

    numpy registers its array buffers with tracemalloc; Numba's runtime (NRT)
    allocations inside kernels are not traced.  The kernels' workspace is
    emptied first, so the scratch arrays they keep between calls count.
    """
    from ..kernels import clear_workspace

    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        clear_workspace()  # so the call allocates (and tracemalloc sees) its scratch arrays
        gc.collect()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if started:
            tracemalloc.stop()
    outs = out if isinstance(out, tuple) else (out,)
    returned = sum(a.nbytes for a in outs if isinstance(a, np.ndarray))
    return max(0, peak - before - returned)
