"""Convolution plans: which algorithm computes each pass of a convolution, and with what scratch memory.

A convolution is three passes: ``forward`` (y), ``weight_grad`` (dw, and db
beside it) and ``input_grad`` (dx).  For each pass, :func:`select` names the
algorithm and :func:`make_plan` returns a :class:`ConvPlan`: the algorithm,
the layout it computes in and every buffer it needs besides its inputs and
outputs (listed by :mod:`fastcnn.kernels.conv_buffers`).  The checked functions of :mod:`fastcnn.kernels.conv` execute plans
(they allocate exactly these buffers), ``fastcnn bench``'s memory model sums
them, and ``tools/compile_all.py`` compiles every algorithm named here.

Shape vocabulary (as everywhere in the kernels): x (N, C, H, W), w (K, C/G, R, S),
y and dy (N, K, P, Q), stride (sh, sw), zero padding (ph, pw), dilation
(dil_h, dil_w), G groups, T threads.

Algorithms
----------
``nchw``
    Nested loops on the NCHW arrays, no copies (``_conv_nchw.py``).
``batch_last``
    The images of the batch are the vector axis (``_conv_batchlast.py``):
    x as (C, H, W, N); dx through dy as (P, Q, K, N) and a
    register-blocked product per input pixel.  For layers with few channels.
``rows``
    NCHW with stride 1 and padding smaller than the kernel
    (``_conv_rows.py``): each image zero-padded into flat planes (in the
    task's scratch), where every kernel tap of the *wide* output rows (the
    padded width, extra columns dropped) is one contiguous span, so the
    forward pass is one register-blocked product per input channel and the
    weight gradient blocks of 4 x 4 dot products; dx is the same forward on
    dy padded by ``R - 1 - ph``, ``S - 1 - pw`` with the kernel rotated.
    No activation-sized layout copy.  For layers with few output channels.
``channel_last``
    The channels are the vector axis (``_conv_channellast.py``): a
    zero-padded (N, H + 2ph, W + 2pw, C) copy of x (and dy as (N, P, Q, K)),
    one register-blocked product per kernel row.  For 16 or more channels.
``im2col``
    x unfolded into (N, C*R*S, P*Q) columns, one BLAS product per image
    (``_conv_im2col.py``).  Never chosen by ``"auto"``: it is the reference
    the direct algorithms are compared with.
``matmul_1x1``
    A 1x1 kernel with stride 1 and no padding is a per-pixel linear map of
    the channels: BLAS on views of x, no copies (``_conv_matmul.py``).
``matmul_whole_input``
    A kernel as large as the padded input (``R == H + 2ph``, ``S == W + 2pw``,
    output 1x1) is a fully connected layer: one BLAS product over the batch.
``winograd``
    Winograd minimal filtering F(2x2, 3x3) (Lavin & Gray 2016) for 3x3
    kernels with stride 1 and padding at most 2 (``_conv_winograd.py``):
    16 multiplications per 2x2 outputs instead of 36, as 16 matrix products
    (one per position of the transformed 4x4 tile) over chunks of tiles that
    stay in cache; x in a zero-padded channel-last copy (dy too for the
    gradients).  dx is the same forward on dy padded by ``2 - ph``,
    ``2 - pw`` with the kernel rotated by 180 degrees.  Rounding errors
    about those of the direct algorithms (measured in
    ``tests/kernels/test_conv_winograd.py``).  Never chosen by ``"auto"``
    (``winograd4`` wins where either does).
``winograd4``
    The same with F(4x4, 3x3) (``_conv_winograd.py``): 36 multiplications
    per 4x4 outputs (4x fewer than direct), 6x6 input tiles, 36 products.
    Larger rounding errors than F(2x2) (the transforms' entries reach 5, 8
    and 1/24): in float32 about 5e-6 of the largest value at 64 channels
    and 1e-5 at 128 (5-10x the direct algorithms'; measured in
    ``tests/kernels/test_conv_winograd.py``).  ``"auto"`` picks it for
    3x3 stride-1 layers with at least :data:`WINOGRAD_MIN_CHANNELS` input
    and output channels, where it beats the direct kernels in every pass.
``depthwise``
    Depthwise convolutions (``groups == C``, K = m*C, any stride, padding
    and dilation) on NCHW planes (``_conv_depthwise.py``): each plane
    zero-padded and split into its stride phases in a per-task scratch,
    every kernel tap a contiguous span over wide output rows, up to 9 taps
    fused per vectorised pass; dx gathered per stride phase.  Memory-bound:
    reads each input once, no layout copies, no products of tiny matrices.
    The forward pass of a 3x3 layer with stride 2 and padding 1 on even
    planes (MobileNet's downsampling) has its own kernels, with fewer
    per-row loops (``_conv_depthwise_s2.py``: row phases and stride-2 taps
    over the flat output plane; below 12 columns
    ``_conv_depthwise_s2_stacked.py``: row phases of stacks of channel
    planes, one loop per stack, two images per loop): on 8x8 outputs the
    general kernel's per-row copies cost more.  So does the forward pass
    of a 3x3 stride-1 layer with padding 1 on planes at most 14 columns
    wide, or 16 for an input of at most 2**20 numbers (float64: 8)
    (``_conv_depthwise_stacked.py``: stacks of channel planes of two
    images, one loop per stack, the padding by selects).

Grouped and dilated convolutions
--------------------------------
``groups = G`` splits the C input and K output channels into G groups of
``C/G`` and ``K/G``; group g's outputs read only group g's inputs (PyTorch's
semantics and weight layout (K, C/G, R, S)).  A depthwise convolution
(``G == C``, more than one channel) runs ``depthwise``.  Any other G > 1
runs *one call per group*: each group's channels are copied to contiguous
buffers (``x_group``, ``y_group``, ``dy_group``, ``dx_group``), the plan
of the per-group convolution (:meth:`ConvGeometry.per_group`, chosen by
the same rules) runs on them, and the results are copied back; a named
algorithm must apply to the per-group convolution.

Dilation > 1 (taps ``dil`` pixels apart; a 1x1 kernel ignores it) is
computed directly by ``nchw``, ``im2col`` and ``depthwise``
(:data:`NATIVE_DILATION`).  With stride 1, every other algorithm runs on
the *space-to-batch* rearrangement (:meth:`ConvGeometry.space_to_batch`):
output pixel ``(dil_h*p + a, dil_w*q + b)`` reads only padded input pixels
of the same row phase a and column phase b, so x zero-padded and split
into its ``dil_h*dil_w`` phase sub-images, stacked along the batch
(``x_dilation_phases``), convolved with the same kernel undilated and
unpadded, gives y's phases (``y_dilation_phases``, interleaved back); dy
and dx likewise, and dw sums over the sub-images.  ``"auto"`` chooses for
that undilated convolution by the rules below.  A dilated convolution with
a stride runs ``im2col`` (``"direct"``: ``nchw``); the other algorithms
refuse it.

``"auto"`` picks, for every pass: ``depthwise`` for a depthwise convolution;
otherwise (per group when G > 1, on the phase sub-images when dilated)
``matmul_whole_input`` when the kernel covers the padded input; for a 1x1
stride-1 unpadded kernel ``channel_last`` when the pass's vector channels
(below) number at least :data:`CHANNEL_LAST_MIN_CHANNELS`, else
``matmul_1x1`` (numpy's BLAS, whose threads spin between calls and slow the
parallel kernels around them); otherwise ``winograd4`` when the layer fits it (3x3, stride 1, padding at
most 2) and has at least :data:`WINOGRAD_MIN_CHANNELS` input and output
channels and :data:`WINOGRAD_MIN_TILES` output tiles; otherwise, for
forward and weight_grad, ``rows`` when the shape is one of its and either
K is below :data:`CHANNEL_LAST_MIN_CHANNELS` or C is at most
:data:`ROWS_MAX_CHANNELS`; otherwise ``channel_last`` when the pass's
vector channels (K for forward and weight_grad, C for input_grad) number
at least :data:`CHANNEL_LAST_MIN_CHANNELS`, else ``batch_last`` when the
batch has at least :data:`BATCHLAST_MIN_BATCH` images, else ``nchw``.
``"direct"`` is the same without Winograd: direct convolution only.
"""

from functools import lru_cache
from typing import NamedTuple

from .conv_buffers import dilation_buffers, group_buffers, pass_buffers

#: Every named algorithm, in the order the documentation lists them.
ALGORITHMS = ("nchw", "batch_last", "rows", "channel_last", "im2col", "matmul_1x1", "matmul_whole_input", "winograd",
              "winograd4", "depthwise")
#: What ``algorithm=`` accepts: a named algorithm, "auto" / "direct" (the plan picks per pass by fixed thresholds;
#: never im2col; "direct" never Winograd either) or "tuned" (each pass times the algorithms that apply and keeps the fastest: :mod:`.conv_tune`).
CHOICES = ("auto", "direct", "tuned") + ALGORITHMS
#: The three passes of a convolution.
PASSES = ("forward", "weight_grad", "input_grad")

#: From this many images the batch fills the vector lanes of the batch-last kernels.
BATCHLAST_MIN_BATCH = 8
#: From this many vector channels (K, or C for dx) the channel-last kernels take over
#: (``fastcnn bench conv`` measures both).
CHANNEL_LAST_MIN_CHANNELS = 16
#: Up to this many input channels the rows kernels compute forward and weight_grad whatever K (a network's first
#: layer: 3 -> 32 at 32x32, forward 2.2 -> 1.8 ms, weight gradient 2.7 -> 2.2 ms against channel_last, 1 thread).
ROWS_MAX_CHANNELS = 4
#: From this many input and output channels "auto" runs 3x3 stride-1 layers with ``winograd4``
#: (forward + backward against channel_last, batch 64, on this week's AVX-512 machine, with the transforms in
#: registers: 16 -> 16 1.2-1.35x on 32x32 planes at 1 thread, 1.3-1.4x at 2, 1.3x on 16x16, 1.05-1.15x on 8x8;
#: 32 -> 32 on 8x8 1.6x; 8 -> 8 on 32x32 about 1.05x, its forward slower.  Before them, 0.73-0.75x at 16
#: channels and 1.14-1.25x at 32).
WINOGRAD_MIN_CHANNELS = 16
#: ... and from this many 4x4 output tiles (``N * ceil(P/4) * ceil(Q/4)``): below it the per-call filter
#: transform (36 x C x K) outweighs the saved multiplications (batch-1 inference).
WINOGRAD_MIN_TILES = 64
LAYOUTS = {
    "nchw": "NCHW",
    "batch_last": "CHWN (batch last)",
    "rows": "NCHW, padded wide rows per image",
    "channel_last": "NHWC (channels last, padded)",
    "im2col": "columns (N, C*R*S, P*Q)",
    "matmul_1x1": "NCHW as (N, C, H*W)",
    "matmul_whole_input": "NCHW as (N, C*R*S)",
    "winograd": "NHWC, 4x4 tiles transformed (F(2x2, 3x3))",
    "winograd4": "NHWC, 6x6 tiles transformed (F(4x4, 3x3))",
    "depthwise": "NCHW planes, padded stride phases per task",
}
#: The algorithms that compute dilated convolutions directly; with stride 1 the others run on the phase sub-images.
NATIVE_DILATION = ("nchw", "im2col", "depthwise")


class ConvGeometry(NamedTuple):
    """The sizes of one convolution, checked (see :func:`fastcnn.kernels.conv2d_output_shape`).

    C and K count every channel; the weight is (K, C/groups, R, S).  A
    dilation along an axis where the kernel is 1 wide is stored as 1 (it
    changes nothing there).
    """

    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    P: int
    Q: int
    sh: int
    sw: int
    ph: int
    pw: int
    dil_h: int = 1
    dil_w: int = 1
    groups: int = 1

    @property
    def dilated(self):
        return self.dil_h > 1 or self.dil_w > 1

    @property
    def is_depthwise(self):
        """Every input channel its own group (``groups == C``): the ``depthwise`` kernels' convolutions."""
        return self.groups == self.C

    def per_group(self):
        """The convolution of one group (``C/groups`` -> ``K/groups`` channels, groups 1)."""
        return self._replace(C=self.C // self.groups, K=self.K // self.groups, groups=1)

    def space_to_batch(self):
        """The undilated convolution of a stride-1 dilated one on its ``dil_h*dil_w`` phase sub-images.

        Sub-image (a, b) of image n is ``xp[n, :, a::dil_h, b::dil_w]``
        (xp: x zero-padded), zero-extended to ``ceil((H + 2ph) / dil_h)``
        rows and ``ceil((W + 2pw) / dil_w)`` columns; it is image
        ``(a*dil_w + b)*N + n`` of the batch, convolved without padding.
        """
        Hs, Ws = -(-(self.H + 2 * self.ph) // self.dil_h), -(-(self.W + 2 * self.pw) // self.dil_w)
        return self._replace(N=self.N * self.dil_h * self.dil_w, H=Hs, W=Ws, P=Hs - self.R + 1, Q=Ws - self.S + 1,
                             ph=0, pw=0, dil_h=1, dil_w=1)

    @property
    def is_1x1(self):
        return (self.R, self.S, self.sh, self.sw, self.ph, self.pw) == (1, 1, 1, 1, 0, 0)

    @property
    def is_whole_input(self):
        return self.R == self.H + 2 * self.ph and self.S == self.W + 2 * self.pw and not self.dilated

    @property
    def fits_rows(self):
        return self.sh == 1 and self.sw == 1 and self.ph < self.R and self.pw < self.S and not self.dilated

    @property
    def fits_winograd(self):
        return ((self.R, self.S, self.sh, self.sw) == (3, 3, 1, 1) and self.ph <= 2 and self.pw <= 2
                and not self.dilated)


class ConvPlan(NamedTuple):
    """How one pass of a convolution runs: the algorithm, its layout, its buffers."""

    op: str
    algorithm: str
    layout: str
    buffers: tuple
    itemsize: int

    def nbytes(self, kinds=("workspace", "call", "kernel")):
        """Bytes of the buffers of the given kinds."""
        return sum(b.size for b in self.buffers if b.kind in kinds) * self.itemsize

    @property
    def workspace_bytes(self):
        """Bytes of every buffer of this pass (workspace, per-call and in-kernel)."""
        return self.nbytes()

    def __str__(self):
        parts = ", ".join(f"{b.role} {b.shape}{'' if b.kind == 'workspace' else ' ' + b.kind}"
                          for b in self.buffers)
        return (f"{self.op}: {self.algorithm} [{self.layout}], "
                f"{_mib(self.workspace_bytes)}" + (f" ({parts})" if parts else ""))


class ConvPlans(NamedTuple):
    """The plans of the three passes of one convolution (``input_grad`` None when dx is not needed)."""

    geometry: ConvGeometry
    forward: ConvPlan
    weight_grad: ConvPlan
    input_grad: ConvPlan

    def memory_bytes(self, op):
        """Peak bytes of scratch memory of a call: op "forward", "backward_weight" (no dx) or "backward".

        Returns ``{"numpy": ..., "numba": ..., "total": ...}``: buffers
        allocated from Python (which tracemalloc sees), inside Numba kernels
        (which it does not), and both.  In a backward call the weight
        gradient's workspace stays alive while the input gradient runs
        (its per-call buffers are freed by then); buffers of the same role
        and shape are one array.
        """
        if op == "forward":
            phases = [self.forward.buffers]
        elif op in ("backward_weight", "backward"):
            phases = [self.weight_grad.buffers]
            if op == "backward" and self.input_grad is not None:
                kept = tuple(b for b in self.weight_grad.buffers if b.kind == "workspace")
                keys = {(b.role, b.shape) for b in kept}
                phases.append(kept + tuple(b for b in self.input_grad.buffers if (b.role, b.shape) not in keys))
        else:
            raise ValueError(f"memory_bytes: op must be 'forward', 'backward_weight' or 'backward', got {op!r}")
        item = self.forward.itemsize

        def peak(kinds):
            return max(sum(b.size for b in bufs if b.kind in kinds) for bufs in phases) * item

        return {"numpy": peak(("workspace", "call")), "numba": peak(("kernel",)),
                "total": peak(("workspace", "call", "kernel"))}

    def __str__(self):
        g = self.geometry
        head = (f"conv {g.N}x{g.C}x{g.H}x{g.W} -> {g.K} channels, kernel {g.R}x{g.S}, "
                f"stride {(g.sh, g.sw)}, padding {(g.ph, g.pw)}"
                + (f", dilation {(g.dil_h, g.dil_w)}" if g.dilated else "")
                + (f", groups {g.groups}" if g.groups > 1 else "") + f", output {g.P}x{g.Q}")
        plans = [p for p in (self.forward, self.weight_grad, self.input_grad) if p is not None]
        return "\n".join([head] + ["  " + str(p) for p in plans])


def _mib(n):
    return f"{n / 2**20:.2f} MiB" if n else "no scratch"


def select(op, g, algorithm="auto"):
    """The algorithm that computes pass ``op`` of convolution ``g``.

    ``algorithm`` is "auto", "direct" or a name from :data:`ALGORITHMS`;
    a named one is returned as it is when it applies to ``g``, else
    ValueError says why.  With ``g.groups > 1`` (not depthwise) the
    algorithm is that of one group, :meth:`ConvGeometry.per_group`.
    """
    if algorithm == "depthwise" and not g.is_depthwise:
        raise ValueError(
            f"algorithm 'depthwise' needs groups equal to the input channels (a depthwise convolution), got "
            f"groups={g.groups} for {g.C} input channels; use algorithm='auto'"
        )
    if algorithm == "depthwise" or (algorithm in ("auto", "direct") and g.is_depthwise and g.C > 1):
        return "depthwise"
    return _select_one_group(op, g.per_group() if g.groups > 1 else g, algorithm)


def _select_one_group(op, g, algorithm):
    """:func:`select` for a convolution of one group (``g.groups == 1``)."""
    if g.dilated and algorithm not in NATIVE_DILATION:
        if (g.sh, g.sw) == (1, 1):
            return _select_one_group(op, g.space_to_batch(), algorithm)
        if algorithm in ("auto", "direct"):
            return "im2col" if algorithm == "auto" else "nchw"
        raise ValueError(
            f"algorithm '{algorithm}' needs dilation 1 or stride 1, got dilation {(g.dil_h, g.dil_w)} with stride "
            f"{(g.sh, g.sw)} (strided dilated convolutions run 'nchw' or 'im2col'); use algorithm='auto'"
        )
    if algorithm in ("auto", "direct"):
        if g.is_whole_input:
            return "matmul_whole_input"
        channels = g.C if op == "input_grad" else g.K
        if g.is_1x1:
            # numpy's BLAS threads spin between calls and take the cores from the parallel kernels around
            # them (a MobileNet's 1x1 layers ran 2-3x slower): channel_last's GEMM is as fast, in our threads
            return "channel_last" if channels >= CHANNEL_LAST_MIN_CHANNELS else "matmul_1x1"
        if (algorithm == "auto" and g.fits_winograd and min(g.C, g.K) >= WINOGRAD_MIN_CHANNELS
                and g.N * -(-g.P // 4) * -(-g.Q // 4) >= WINOGRAD_MIN_TILES):
            return "winograd4"
        if op != "input_grad" and g.fits_rows and (channels < CHANNEL_LAST_MIN_CHANNELS or g.C <= ROWS_MAX_CHANNELS):
            return "rows"
        if channels >= CHANNEL_LAST_MIN_CHANNELS:
            return "channel_last"
        return "batch_last" if g.N >= BATCHLAST_MIN_BATCH else "nchw"
    if algorithm == "matmul_1x1" and not g.is_1x1:
        raise ValueError(
            f"algorithm 'matmul_1x1' needs a 1x1 kernel with stride 1 and no padding, got kernel "
            f"{g.R}x{g.S}, stride {(g.sh, g.sw)}, padding {(g.ph, g.pw)}; use algorithm='auto'"
        )
    if algorithm == "matmul_whole_input" and not g.is_whole_input:
        raise ValueError(
            f"algorithm 'matmul_whole_input' needs a kernel as large as the padded input, got kernel "
            f"{g.R}x{g.S} for a {g.H + 2 * g.ph}x{g.W + 2 * g.pw} padded input; use algorithm='auto'"
        )
    if algorithm == "rows" and not g.fits_rows:
        raise ValueError(
            f"algorithm 'rows' needs a stride of 1 and padding smaller than the kernel, got kernel "
            f"{g.R}x{g.S}, stride {(g.sh, g.sw)}, padding {(g.ph, g.pw)}; use algorithm='auto'"
        )
    if algorithm in ("winograd", "winograd4") and not g.fits_winograd:
        raise ValueError(
            f"algorithm '{algorithm}' needs a 3x3 kernel with stride 1 and padding at most 2, got kernel "
            f"{g.R}x{g.S}, stride {(g.sh, g.sw)}, padding {(g.ph, g.pw)}; use algorithm='auto'"
        )
    return algorithm


@lru_cache(maxsize=512)
def make_plan(op, g, algorithm, itemsize, threads):
    """The :class:`ConvPlan` of pass ``op`` (one of :data:`PASSES`) of convolution ``g``.

    ``algorithm`` as :func:`select` takes it; ``itemsize`` is the dtype's
    (4 or 8); ``threads`` the number of parallel tasks (per-thread buffers).
    """
    name = select(op, g, algorithm)
    layout, buffers, one = LAYOUTS[name], (), g
    if g.groups > 1 and name != "depthwise":
        one = g.per_group()
        layout += f"; one call per group ({g.groups} groups of {one.C} -> {one.K} channels)"
        buffers += group_buffers(op, one)
    if one.dilated and name not in NATIVE_DILATION:
        sub = one.space_to_batch()
        layout += f"; on the {one.dil_h * one.dil_w} dilation phases of x, stacked along the batch"
        buffers += dilation_buffers(op, sub)
        one = sub
    return ConvPlan(op, name, layout, buffers + pass_buffers(op, name, one, threads, itemsize), itemsize)
