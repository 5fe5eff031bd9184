"""Reports of the benchmarks: the plain-text tables, the JSON file and the convolution chart.

Each ``format_*`` function turns one benchmark's result dict into the text
``fastcnn bench`` prints; :func:`write_json` keeps the whole result;
:func:`plot_conv` draws a :func:`fastcnn.bench.run_conv_suite` result.
"""

import numpy as np

from .._util import atomic_write, atomic_write_json, require_matplotlib
from .conv import FASTCNN_ALGORITHMS
from .machine import vector_text
from .memory import TIMED_OPS

__all__ = [
    "table",
    "threads_text",
    "machine_line",
    "format_conv",
    "format_train",
    "format_startup",
    "format_models_table",
    "write_json",
    "require_matplotlib",
    "plot_conv",
]


# --------------------------------------------------------------------------- cells


def table(headers, rows, align=None):
    """A plain-text table under a header line and a dashed rule; a row given as a string is printed as is
    (a section line).

    ``align`` is a string of '<' / '>' per column (default: first left, others right).
    """
    grid = [[str(h) for h in headers]] + [
        r if isinstance(r, str) else ["" if c is None else str(c) for c in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in grid if not isinstance(r, str)) for i in range(len(headers))]
    align = align or "<" + ">" * (len(headers) - 1)
    lines = []
    for j, r in enumerate(grid):
        if isinstance(r, str):
            lines.append(r)
        else:
            lines.append("  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ms(t):
    if t is None:
        return "-"
    v = 1e3 * t
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def _gf(g):
    return "-" if g is None else f"{g:.1f}" if g < 100 else f"{g:.0f}"


def _pct(f):
    return "-" if f is None else f"{100 * f:.0f}%"


def _ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def _bytes(n):
    if n is None:
        return "-"
    if n == 0:
        return "0"
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def threads_text(n):
    """``"1 thread"``, ``"4 threads"``."""
    return f"{n} thread{'' if n == 1 else 's'}"


def machine_line(m):
    """One line about the machine of a :func:`fastcnn.bench.machine_info` dict: CPU, cores, threads, versions."""
    return (f"{m.get('cpu_model')}; {m.get('usable_cores')} usable cores; {threads_text(m.get('threads'))} "
            f"(BLAS {m.get('blas_threads')}); numpy {m.get('numpy')}, numba {m.get('numba')}, "
            f"torch {m.get('torch') or 'not installed'}; glibc malloc thresholds: {m.get('malloc', 'not asked')}")


# --------------------------------------------------------------------------- conv


def _conv_header(suite):
    """The lines above the convolution tables: what was measured, on which machine, against which peak."""
    peak = suite["peak"]
    return [
        f"Convolution benchmark, float32, {threads_text(suite['threads'])}: medians of {suite['repeat']} "
        f"interleaved repeats (quick operations: mean of several calls per repeat)",
        f"machine: {machine_line(suite['machine'])}",
        f"practical peak: numpy float32 sgemm {peak['n']}^3 = {peak['gflops']:.1f} GFLOP/s "
        f"(median of {len(peak['samples_s'])}, before and after the shapes: "
        f"{peak['gflops_before']:.1f} / {peak['gflops_after']:.1f})",
        *([vector_text(suite["machine"]["vector"])] if "vector" in suite["machine"] else []),
        "",
    ]


def _timing_row(result, algorithm, entry, has_torch):
    """One algorithm's row of the timing table."""
    med, g, pf = entry["median_s"], entry["gflops"], entry["peak_fraction"]
    mark = " *" if result["winner"]["forward_backward"] == algorithm else ""
    row = [f"  {algorithm}{mark}", _ms(med["forward"]), _gf(g["forward"]), _pct(pf["forward"]),
           _ms(med["backward_weight"]), _gf(g["backward_weight"]),
           _ms(med["backward_data"]), _gf(g["backward_data"]),
           _ms(med["backward"]), _ms(med["forward_backward"]), _gf(g["forward_backward"]),
           _pct(pf["forward_backward"])]
    if has_torch:
        vt = entry.get("vs_torch") or {}
        row += ["" if algorithm == "torch" else _ratio(vt.get("forward")),
                "" if algorithm == "torch" else _ratio(vt.get("forward_backward"))]
    return row


def _timing_table(shapes, has_torch):
    """Per shape a section line, then one row per algorithm: times, GFLOP/s, share of peak, ratio to torch."""
    headers = ["algorithm", "fwd ms", "GF/s", "%pk", "bwd-w ms", "GF/s", "bwd-d* ms", "GF/s",
               "bwd ms", "f+b ms", "GF/s", "%pk"]
    if has_torch:
        headers += ["fwd vs torch", "f+b vs torch"]
    rows = []
    for r in shapes:
        rows.append(f"{r['shape']}  ({r['dims']['p']}x{r['dims']['q']} output, "
                    f"{r['flops_per_pass'] / 1e9:.3f} GFLOP per pass)")
        rows += [_timing_row(r, a, e, has_torch) for a, e in r["algorithms"].items()]
    return table(headers, rows)


def _timing_notes(shapes, has_torch):
    """The legend under the timing table."""
    out = ["fwd: forward; bwd-w: weight+bias gradient only (no dx); bwd-d*: input gradient, DERIVED as "
           "bwd - bwd-w; bwd: dx, dw, db; f+b: fwd + bwd (training step of the layer). GF/s counts "
           "2*N*K*(C/groups)*R*S*P*Q FLOPs per pass (f+b: 3 passes); %pk: share of the sgemm peak above."]
    others = sorted({a for r in shapes for a in r["algorithms"]} - set(FASTCNN_ALGORITHMS) - {"torch"})
    if others:
        out.append(f"GF/s and %pk are direct-equivalent: every algorithm, {', '.join(others)} included, is credited "
                   "with 2*N*K*(C/groups)*R*S*P*Q FLOPs per pass whatever arithmetic it does (winograd does fewer "
                   "multiplications, so its figures can pass the peak); they compare times.")
    if has_torch:
        out.append("vs torch: torch's time / this time (above 1x: faster than PyTorch). torch forward under "
                   "no_grad; torch backward = autograd.grad on a graph built untimed.")
    out.append(f"Each algorithm's turn starts after a {shapes[0]['settle_s']:g} s pause, so the worker threads "
               "of the library measured before it (OpenMP, OpenBLAS) have stopped spinning, and one untimed forward "
               "call, which wakes its own (the first call after a pause pays for waking idle cores).")
    out.append("* fastest forward+backward for the shape.")
    return out


def _plan_text(plan):
    """``fwd / dw / dx`` algorithm names of a plan, or the one name when all three passes share it ("-": no dx)."""
    if not plan:
        return "-"
    names = [plan["forward"], plan["weight_grad"], plan["input_grad"] or "-"]
    return names[0] if len(set(names)) == 1 else " / ".join(names)


def _memory_lines(shapes):
    """The plan and extra-memory table (computed and traced, per fastcnn algorithm and call) with its legend."""
    rows = []
    for r in shapes:
        for a, e in r["algorithms"].items():
            if a == "torch":
                continue
            ws, tr = e["workspace_bytes"], e.get("traced_extra_bytes") or {}
            rows.append([
                r["shape"], a, _plan_text(e.get("plan")),
                *(_bytes(ws[op]["total"]) + (f" ({_bytes(ws[op]['numba'])} in Numba)" if ws[op]["numba"] else "")
                  for op in TIMED_OPS),
                *(_bytes(tr.get(op)) for op in TIMED_OPS),
            ])
    return [
        "Plans and extra memory per call, beyond inputs and outputs (fastcnn; PyTorch's allocator is not measured)",
        table(["shape", "algorithm", "plan fwd / dw / dx", "computed fwd", "computed bwd-w", "computed bwd",
               "traced fwd", "traced bwd-w", "traced bwd"], rows, "<<<>>>>>>"),
        "plan: the kernel that computes each pass (forward / weight gradient / input gradient; one name when "
        "all three are the same), from fastcnn.kernels.conv2d_plan. computed: the buffers of that plan "
        "(fastcnn.bench.conv_workspace_bytes), Numba-kernel buffers counted once per thread. traced: tracemalloc "
        "peak during one call minus the returned arrays; it sees numpy's allocations but not those made inside "
        "Numba kernels (NRT).",
    ]


def _winners_lines(shapes, has_torch):
    """The winners table: the fastest algorithm per result and the best fastcnn one, per shape."""
    rows = []
    for r in shapes:
        algos = r["algorithms"]
        best = min((a for a in algos if a != "torch"),
                   key=lambda a: algos[a]["median_s"]["forward_backward"])
        row = [r["shape"], r["winner"]["forward"], r["winner"]["backward"], r["winner"]["forward_backward"],
               best, _gf(algos[best]["gflops"]["forward_backward"])]
        if "torch" in algos:
            row.append(_ratio(algos[best]["vs_torch"]["forward_backward"]))
        rows.append(row)
    headers = ["shape", "fastest fwd", "fastest bwd", "fastest f+b", "best fastcnn", "GF/s f+b"]
    if has_torch:
        headers.append("vs torch f+b")
    return ["Winners", table(headers, rows, "<<<<<>>")]


def format_conv(suite):
    """The tables of a :func:`fastcnn.bench.run_conv_suite` result: timings, extra memory, winners."""
    shapes = suite["shapes"]
    has_torch = any("torch" in r["algorithms"] for r in shapes)
    out = _conv_header(suite)
    out += [_timing_table(shapes, has_torch), ""]
    out += _timing_notes(shapes, has_torch) + [""]
    out += _memory_lines(shapes) + [""]
    out += _winners_lines(shapes, has_torch)
    return "\n".join(out)


# --------------------------------------------------------------------------- train, start-up, models


def format_train(result):
    """The table of a :func:`fastcnn.bench.bench_train` result."""
    fw = result["frameworks"]
    rows = []
    for name, e in fw.items():
        rows.append([name, f"{e['images_per_s']:,.0f}", f"{e['step_ms']:.2f}",
                     ", ".join(f"{s:.3f}" for s in e["samples_s"])])
    opt = result["optimizer"]
    out = [
        f"LeNet-5 training, batch {result['batch_size']}, float32, SGD lr={opt['lr']:g} "
        f"momentum={opt['momentum']:g} weight_decay={opt['weight_decay']:g}; {threads_text(result['threads'])}",
        f"machine: {machine_line(result['machine'])}",
        f"{result['batches']} batches ({result['images']} images, {result['data']}) per repeat; median of "
        f"{result['repeat']} interleaved repeats, warm-up excluded",
        "",
        table(["framework", "images/s", "ms/step", "repeats (s)"], rows, "<>><"),
        "",
    ]
    if result["ratio"] is not None:
        out.append(f"fastcnn / torch throughput: {result['ratio']:.2f}x "
                   f"({'faster' if result['ratio'] >= 1 else 'slower'} than PyTorch)")
    else:
        out.append("PyTorch is not installed: no comparison.")
    out.append("fastcnn trains through Sequential.fit (which also tracks loss and accuracy); PyTorch through "
               "a plain loop: zero_grad, forward, F.cross_entropy, backward, step.")
    return "\n".join(out)


def format_startup(result):
    """The table of a :func:`fastcnn.bench.bench_startup` result."""
    rows = []
    labels = {"fastcnn": "fastcnn (warm Numba cache)", "torch": "torch",
              "fastcnn_cold": "fastcnn (empty Numba cache)"}
    for key in ("fastcnn", "torch", "fastcnn_cold"):
        if key not in result:
            continue
        m = result[key]["median"]
        n = len(result[key]["runs"])
        rows.append([labels[key], f"{m['wall_s']:.2f}", f"{m['import_s']:.2f}", f"{m['build_s']:.3f}",
                     f"{m['step_s']:.2f}", str(n)])
    out = [
        "Start-up: a fresh process imports, builds LeNet-5 and runs one training step (batch 64)",
        f"machine: {machine_line(result['machine'])}",
        f"Numba cache: {result['numba_cache_dir']}"
        + ("" if result["fastcnn_cache_enabled"] else " (disabled by FASTCNN_CACHE=0)"),
        "",
        table(["", "process s", "import s", "build s", "1st step s", "runs"], rows, "<>>>>>"),
        "",
        "process: wall time of the whole subprocess (interpreter start and exit included), median of the runs "
        "after one warm-up run; import/build/1st step: measured inside it. Empty cache: one run with a fresh "
        "NUMBA_CACHE_DIR, i.e. the first-ever compile of every kernel the step uses.",
    ]
    if "torch" not in result:
        out.append("PyTorch is not installed: no comparison.")
    return "\n".join(out)


def _shape_text(shape):
    return "x".join(map(str, shape))


def _models_shape_text(result):
    """The input shape of the header: the common one, or each model's when they differ."""
    if result.get("input_shape") is not None:
        return _shape_text(result["input_shape"])
    names = {}
    for name, e in result["models"].items():
        names.setdefault(_shape_text(e["input_shape"]), []).append(name)
    return " and ".join(f"{shape} ({', '.join(group)})" for shape, group in names.items())


def _inference_lines(result):
    """The inference table of a :func:`fastcnn.bench.bench_models` result (eval mode), with its legend."""
    rows = []
    for name, entry in result["models"].items():
        thr, lat = entry["inference"], entry["latency"]
        for fw, e in thr["frameworks"].items():
            first = fw == "fastcnn"
            rows.append([name if first else "", fw, f"{e['ms_per_batch']:.1f}", f"{e['images_per_s']:,.0f}",
                         _ratio(thr["ratio"]) if first else "",
                         f"{lat['frameworks'][fw]['median_us']:,.0f}", _ratio(lat["ratio"]) if first else ""])
    out = [
        f"Model zoo inference, eval mode, float32: batch {result['inference_batch']} throughput and batch-1 "
        f"latency; same threads, rounds and pauses",
        "",
        table(["model", "framework", "ms/batch", "images/s", "fastcnn/torch", "batch-1 us", "fastcnn/torch"], rows,
              "<<>>>>>"),
        "",
        "fastcnn: model.eval(), model.predict(x); PyTorch: model.eval(), the twin called under torch.no_grad(). "
        "batch-1 us: median of every single-image call of every round, each call timed on its own.",
    ]
    return out


def _layer_text(row):
    """A layer's repr, shortened (``k=3``, ``pad=(1, 1)``), indented by its depth."""
    text = row["layer"].replace("kernel_size=", "k=").replace("padding=", "pad=")
    return f"{'  ' * row['depth']}{row['name'].rpartition('.')[2]} {text}"


def _layer_row(row, has_torch):
    """One layer's row of the per-layer table."""
    f, b = row["forward_s"], row["backward_s"]
    shape = row["input_shape"]
    cells = [_layer_text(row), "" if shape is None else _shape_text(shape), _ms(f), _ms(b), _pct(row["share"]),
             _plan_text(row["plan"]) if row["plan"] else ""]
    if has_torch:
        twin = row.get("torch")
        t = twin["forward_s"] if twin else None
        cells += ["" if row["depth"] else _ms(t) if twin else "-",
                  _ratio(t / f) if twin and f and t else ""]
    return cells


def _layers_lines(name, layers, batch):
    """One model's per-layer table (``layers`` from :func:`fastcnn.bench.bench_models`), with its totals."""
    has_torch = layers.get("torch_step_s") is not None
    step, rest = layers["step_s"], layers["rest_s"]
    headers = ["layer", "input", "fwd ms", "bwd ms", "share", "plan fwd / dw / dx"]
    if has_torch:
        headers += ["torch fwd ms", "fwd vs torch"]
    rows = [_layer_row(r, has_torch) for r in layers["rows"]]
    rows.append([f"(rest of the step: loss, zero_grad, Python between layers: {_ms(rest)} ms)", "", "", "",
                 _pct(rest / step), ""] + (["", ""] if has_torch else []))
    title = f"{name}: per-layer times of the training step, batch {batch}; instrumented step {_ms(step)} ms"
    if has_torch:
        title += f" (PyTorch {_ms(layers['torch_step_s'])} ms)"
    out = [title, table(headers, rows, "<<>>><" + (">>" if has_torch else ""))]
    unpaired = layers.get("torch_unpaired") or []
    if unpaired:
        out.append("PyTorch modules without a fastcnn row: " + ", ".join(
            f"{m['name']} {m['kind']} {_ms(m['forward_s'])} ms" for m in unpaired))
    return out


def _layers_legend(result):
    """The legend under the per-layer tables."""
    has_torch = any((e.get("layers") or {}).get("torch_step_s") is not None for e in result["models"].values())
    out = ["Per layer: median over the rounds of the seconds inside each layer's forward and backward during real "
           "training steps (a timer around every layer; nested layers indented, their time is part of the block's). "
           "input: per-example input shape; share: fwd + bwd over the instrumented step (each row a median of "
           "its own, so the shares need not add up to 100%); rest: the step outside its top-level layers; plan: "
           "the Conv2d's plan for that input (Conv2d.plan), one name when all three passes share it. A ReLU before "
           "a MaxPool2d runs after it; in training a ReLU directly after a BatchNorm or Residual runs inside that "
           "layer's pass (its time is in that row, its own shows -); layers before the first one with parameters get no backward (-)."]
    if has_torch:
        out.append("torch fwd ms: the twin's module at that place, timed with forward hooks in the same rounds "
                   "(train mode, autograd on); a torch BasicBlock includes the ReLU fastcnn lists after its Residual. "
                   "fwd vs torch: torch's forward time over fastcnn's (above 1x: faster).")
    return out


def format_models_table(result):
    """The tables of a :func:`fastcnn.bench.bench_models` result, as a string: training, then inference."""
    rows = []
    for name, entry in result["models"].items():
        for fw, e in entry["frameworks"].items():
            rows.append([name if fw == "fastcnn" else "", fw, f"{entry['params']:,}", f"{e['ms_per_batch']:.1f}",
                         f"{e['images_per_s']:,.0f}", _ratio(entry["ratio"]) if fw == "fastcnn" else "",
                         ", ".join(f"{1e3 * s:.1f}" for s in e["samples_s"])])
    out = [
        f"Model zoo forward+backward, batch {result['batch']} x {_models_shape_text(result)} float32, "
        f"train mode, cross-entropy, no optimizer step; {threads_text(result['threads'])}; "
        f"fastcnn conv algorithm {result['algorithm']!r}",
        f"machine: {machine_line(result['machine'])}",
        f"median of {result['repeat']} interleaved rounds (rotating order, {result['settle']:g} s pause and one "
        "untimed call before each run), warm-up excluded",
        "",
        table(["model", "framework", "params", "ms/batch", "images/s", "fastcnn/torch", "rounds (ms)"], rows,
               "<<>>>><"),
        "",
    ]
    if any(entry["ratio"] is not None for entry in result["models"].values()):
        out.append("fastcnn/torch: PyTorch's time over fastcnn's (fastcnn's relative throughput; above 1x is faster). "
                   "PyTorch runs a twin of the same architecture (same parameter count).")
    else:
        out.append("PyTorch is not installed: no comparison.")
    if result.get("inference_batch") is not None:
        out += [""] + _inference_lines(result)
    if result.get("layers"):
        for name, entry in result["models"].items():
            out += [""] + _layers_lines(name, entry["layers"], result["batch"])
        out += [""] + _layers_legend(result)
    return "\n".join(out)


# --------------------------------------------------------------------------- files


def write_json(path, payload):
    """Write ``payload`` (a benchmark result) to ``path`` as indented JSON, atomically.

    Through :func:`fastcnn._util.atomic_write_json`: numpy values become plain
    JSON values, NaN and infinities ``null``; a reader sees the old file or
    the whole new one.
    """
    atomic_write_json(path, payload)


def plot_conv(suite, path):
    """Bar chart of a :func:`run_conv_suite` result: GFLOP/s per shape and algorithm, fwd and fwd+bwd.

    Written with matplotlib's Agg canvas (no pyplot, no display needed).
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shapes = suite["shapes"]
    algos = []
    for r in shapes:
        for a in r["algorithms"]:
            if a not in algos:
                algos.append(a)
    colors = {"direct": "#1f77b4", "im2col": "#ff7f0e", "winograd": "#2ca02c", "winograd4": "#98df8a",
              "torch": "#7f7f7f"}
    fig = Figure(figsize=(max(8.0, 1.6 * len(shapes) + 3), 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(1, len(algos))
    xs = np.arange(len(shapes))
    peak = suite["peak"]["gflops"]
    for ax, op, title in ((axes[0], "forward", "forward"),
                          (axes[1], "forward_backward", "forward + backward (dx, dw, db)")):
        top = peak
        for j, a in enumerate(algos):
            vals = [r["algorithms"].get(a, {}).get("gflops", {}).get(op) or 0.0 for r in shapes]
            top = max([top] + vals)
            bars = ax.bar(xs + (j - (len(algos) - 1) / 2) * width, vals, width, label=a,
                          color=colors.get(a))
            ax.bar_label(bars, labels=[f"{v:.0f}" if v else "" for v in vals], fontsize=7, padding=1)
        ax.axhline(peak, color="k", linestyle="--", linewidth=1)
        ax.text(len(shapes) - 0.5, peak, f"sgemm peak {peak:.0f}", ha="right", va="bottom", fontsize=8)
        ax.set_ylim(0, top * 1.12)
        ax.set_ylabel("GFLOP/s")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].set_xticks(xs, [str(r["shape"]) for r in shapes], rotation=20, ha="right", fontsize=8)
    m = suite["machine"]
    fig.suptitle(f"fastcnn convolution, float32, {threads_text(suite['threads'])}, median of {suite['repeat']} "
                 f"(higher is better)\n{m.get('cpu_model')}; numba {m.get('numba')}, "
                 f"torch {m.get('torch') or 'n/a'}", fontsize=10)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
