"""List the compiled kernels whose machine code has two costly patterns, after running the model zoo's steps.

    python tools/kernel_audit.py                          # all four bench models
    python tools/kernel_audit.py --models resnet_small    # some of them

It compiles into an empty Numba cache of its own (Numba shows no code for kernels loaded from the cache), runs one
training step and one eval-mode prediction of each model on 2 threads, then, for every fastcnn function compiled
on the way, counts:

* **reference-count calls inside loops**: ``NRT_incref`` / ``NRT_decref`` in basic blocks that lie on a cycle of
  the function's control flow graph.  Numba updates an array's reference count atomically on a counter that all
  views of the array share; a view made (or an inlined helper called with an array) once per row in a parallel
  task moves that counter's cache line between the cores on every row.  BatchNorm's row sums did this and ran
  2-3x slower on two threads than on one.  A count here is a call site, not how often it runs: one inside a loop
  over a few chunks is harmless.
* **AVX-512 scatters and gathers** (``vscatter*``, ``vgather*`` / ``vpgather*``): one address per lane.  A loop
  over ``range(start, stop)`` with offsets the compiler cannot prove non-negative keeps Numba's negative-index
  wraparound and may vectorise into them: the Winograd products' zeroing loop took 9 % of a resnet_small step
  that way (``fastcnn.kernels._loops.zero_span`` is a memset now).  Strided reads of a transpose are a
  legitimate use.

Neither is wrong in itself; the list is where to look when a kernel is slower than its memory traffic says.
"""

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cycle_blocks(function_ir):
    """The basic blocks of one LLVM function (text) that lie on a cycle: {label: lines}, labels on cycles."""
    blocks, label = {"entry": []}, "entry"
    for line in function_ir.split("\n")[1:]:
        match = re.match(r"^([A-Za-z0-9_.\-]+):", line)
        if match:
            label = match.group(1)
            blocks[label] = []
        else:
            blocks[label].append(line)
    succ = {b: {s for s in re.findall(r"label %([A-Za-z0-9_.\-]+)", "\n".join(lines)) if s in blocks}
            for b, lines in blocks.items()}
    index, low, stack, on_stack, on_cycle, counter = {}, {}, [], set(), set(), [0]

    def visit(v):  # Tarjan's strongly connected components (recursive: _audit raises the recursion limit)
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in succ[v]:
                on_cycle.update(component)

    for block in blocks:
        if block not in index:
            visit(block)
    return blocks, on_cycle


def refcounts_in_loops(llvm_ir):
    """Reference-count call sites inside loops of the functions in one dispatcher signature's LLVM IR."""
    count = 0
    for function in llvm_ir.split("\ndefine")[1:]:
        head = function.split("(")[0]
        if "cpython" in head or "cfunc" in head or "@NRT_" in head:
            continue  # the Python wrappers and the runtime's own functions
        blocks, on_cycle = _cycle_blocks(function)
        count += sum(len(re.findall(r"call void @NRT_(?:in|de)cref", "\n".join(blocks[b]))) for b in on_cycle)
    return count


def _audit(models):
    import numpy as np
    from numba.core.registry import CPUDispatcher

    import fastcnn
    from fastcnn.bench.models import MODEL_INPUT_SHAPES, fastcnn_step

    sys.setrecursionlimit(100_000)  # _cycle_blocks recurses once per basic block on a path
    fastcnn.set_num_threads(2)
    for name in models:
        rng = np.random.default_rng(0)
        x = rng.random((64,) + MODEL_INPUT_SHAPES[name], dtype=np.float32)
        y = rng.integers(0, 10, 64).astype(np.int64)
        model = fastcnn.models.get_model(name).train()
        fastcnn_step(model, x, y)()
        model.eval().predict(x)
    rows, seen = [], set()
    for obj in gc.get_objects():
        if isinstance(obj, CPUDispatcher) and id(obj) not in seen and obj.py_func.__module__.startswith("fastcnn"):
            seen.add(id(obj))
            name = f"{obj.py_func.__module__}.{obj.py_func.__qualname__}"
            for sig in obj.signatures:
                asm = obj.inspect_asm(sig)
                scatters = len(re.findall(r"\tvscatter", asm))
                gathers = len(re.findall(r"\tv(?:p)?gather", asm))
                refs = refcounts_in_loops(obj.inspect_llvm(sig))
                if scatters or gathers or refs:
                    rows.append((refs, scatters, gathers, name))
    print("refcount calls in loops, scatters, gathers, function (one row per compiled signature)")
    for refs, scatters, gathers, name in sorted(set(rows), reverse=True):
        print(f"{refs:5d} {scatters:5d} {gathers:5d}  {name}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg_small", "resnet_small", "mobilenet_small", "lenet5"])
    parser.add_argument("--in-fresh-cache", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_fresh_cache:
        _audit(args.models)
        return 0
    with tempfile.TemporaryDirectory() as cache:  # an empty cache: Numba shows the code it compiles, not loads
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        return subprocess.call([sys.executable, __file__, "--in-fresh-cache", "--models", *args.models], env=env)


if __name__ == "__main__":
    sys.exit(main())
