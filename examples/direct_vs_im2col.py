"""Direct convolution against im2col + GEMM, shape by shape, with fastcnn.bench.

    python examples/direct_vs_im2col.py                                # the benchmark suite (a minute or two)
    python examples/direct_vs_im2col.py --shapes 64x1x28x28:6k5p2 64x32x32x32:32k3p1
    python examples/direct_vs_im2col.py --torch                        # PyTorch's F.conv2d too, if installed
    python examples/direct_vs_im2col.py --tiny                         # seconds: what CI runs

Every fastcnn convolution takes ``algorithm=`` (``Conv2d(..., algorithm=...)``,
``kernels.conv2d_forward(..., algorithm=...)``), so two algorithms are compared
by swapping one string.  ``"direct"`` (the same as the default ``"auto"``) runs
the plan that :func:`fastcnn.kernels.conv2d_plan` picks for each pass of the
shape: NCHW loops, the batch-last or channel-last layouts, or one matrix
product for 1x1 and whole-input kernels.  Those layouts are copies of x (and
of dy for the gradients), kept in a per-thread workspace reused from call to
call (``kernels.clear_workspace()`` frees it); the script prints each shape's
plan, with its buffers, before timing it.  ``"im2col"`` copies every receptive
field into a column of an ``(N, C*R*S, P*Q)`` matrix, then does one matrix
multiply (BLAS) per image, trading ``C*R*S`` times the input's memory for the
speed of GEMM.  In the README's measurements direct is faster than im2col at
every shape of the suite (forward + backward), and takes less extra memory
except with very few input channels (3 -> 32 channels, where dy is copied once
for each gradient and the copies outweigh the column matrix).  Times are
medians of interleaved repeats (see ``fastcnn.bench.bench_conv``);
``fastcnn bench conv`` prints the full tables.
"""

import argparse

import fastcnn
from fastcnn import kernels
from fastcnn.bench import CONV_SUITE, SHAPE_FORMAT, bench_conv, parse_shape

TINY_SHAPE = "4x2x8x8:3k3s1p1"


def plan(shape, threads):
    """The plans "direct" runs for ``shape`` (a ConvShape): each pass's algorithm, layout and buffers."""
    s = shape
    return kernels.conv2d_plan((s.n, s.c, s.h, s.w), (s.k, s.c, s.r, s.r), s.stride, s.pad, algorithm="direct",
                               num_threads=threads)


def compare(shapes, repeat, algorithms, threads=None):
    """``bench_conv`` for each shape; returns the results, printing each shape and its direct plan first."""
    results = []
    for i, shape in enumerate(shapes):
        print(f"[{i + 1}/{len(shapes)}] {shape} ({shape.describe()}) ...", flush=True)
        print("  direct plan: " + str(plan(shape, threads)).replace("\n", "\n  "), flush=True)
        results.append(bench_conv(shape, repeat=repeat, threads=threads, algorithms=algorithms, memory=False))
    return results


def _mib(nbytes):
    return f"{nbytes / 2 ** 20:.2f} MiB"


def table(results, algorithms):
    """One row per shape: forward and forward+backward milliseconds per algorithm, the im2col/direct time
    ratio, the extra memory of a full backward (fastcnn.bench.conv_workspace_bytes) and the winner."""
    headers = ["shape"]
    for op in ("fwd", "f+b"):
        headers += [f"{a} {op} ms" for a in algorithms]
        headers.append(f"{op} im2col/direct")
    headers += ["direct extra mem", "im2col extra mem", "winner f+b"]
    rows = []
    for r in results:
        algos = r["algorithms"]
        row = [r["shape"]]
        for op in ("forward", "forward_backward"):
            row += [f"{1e3 * algos[a]['median_s'][op]:.3f}" for a in algorithms]
            row.append(f"{algos['im2col']['median_s'][op] / algos['direct']['median_s'][op]:.2f}x")
        row += [_mib(algos[a]["workspace_bytes"]["backward"]["total"]) for a in ("direct", "im2col")]
        row.append(r["winner"]["forward_backward"])
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=f"shape format: {SHAPE_FORMAT}")
    parser.add_argument("--shapes", nargs="+", default=None, metavar="S",
                        help="convolution shapes, e.g. 64x3x32x32:32k3s1p1 (default: fastcnn.bench.CONV_SUITE)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats per shape (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: fastcnn's)")
    parser.add_argument("--torch", action="store_true", help="also time PyTorch's F.conv2d (needs torch)")
    parser.add_argument("--tiny", action="store_true", help=f"one tiny shape ({TINY_SHAPE}), repeat 1")
    args = parser.parse_args(argv)

    try:
        shapes = [parse_shape(s) for s in args.shapes] if args.shapes else list(CONV_SUITE)
    except ValueError as exc:
        parser.error(str(exc))
    repeat = args.repeat
    if args.tiny:
        shapes, repeat = [parse_shape(TINY_SHAPE)], 1
    algorithms = ("direct", "im2col") + (("torch",) if args.torch else ())
    threads = args.threads if args.threads is not None else fastcnn.get_num_threads()

    results = compare(shapes, repeat, algorithms, threads)
    print()
    print(f"float32, {threads} thread{'s' if threads != 1 else ''}, median of {repeat} repeat"
          f"{'s' if repeat != 1 else ''}; ratio > 1: direct is faster")
    print(table(results, algorithms))
    return results


if __name__ == "__main__":
    main()
