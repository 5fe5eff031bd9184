"""The docs say what the code does: docs/kernels.md is what tools/kernel_reference.py makes of the code, and
the README's module tree, plan tables, printed plans, kernel list and example list match the package."""

import importlib.util
import inspect
import re
from pathlib import Path

import numba
import pytest

import fastcnn.kernels as K

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "kernel_reference.py"

pytestmark = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="NUMBA_DISABLE_JIT: the kernels are plain functions")


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("kernel_reference", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kernel_reference_is_current(reference):
    committed = (ROOT / "docs" / "kernels.md").read_text(encoding="utf-8")
    assert reference.render() == committed, (
        "docs/kernels.md is out of date with the kernels' signatures or docstrings: "
        "run python tools/kernel_reference.py and commit the result"
    )


def test_kernel_reference_lists_every_raw_kernel_with_its_argument_order(reference):
    text = (ROOT / "docs" / "kernels.md").read_text(encoding="utf-8")
    raw = [n for n in K.__all__ if isinstance(getattr(K, n), numba.core.dispatcher.Dispatcher)]
    assert len(raw) >= 40
    for name in raw:
        args = ", ".join(inspect.signature(getattr(K, name).py_func).parameters)
        assert f"| [`{name}`](#{name}) | `{args}` |" in text, name
        assert f"\n### {name}\n" in text, name


def test_split_doc_reads_numpydoc(reference):
    doc = """Summary line
    that goes on.

    More prose.

    Parameters
    ----------
    x : (N,) float array
        Input.
    y : (N,) float array, written in full

    Returns
    -------
    None
    """
    first, params = reference.split_doc(doc)
    assert first == "Summary line\nthat goes on."
    assert params == ("Parameters\n----------\nx : (N,) float array\n    Input.\n"
                      "y : (N,) float array, written in full")
    assert reference.split_doc("Only a summary.") == ("Only a summary.", None)


# --------------------------------------------------------------------------- README

README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title):
    """The text of the README's ``## title`` section, up to the next ``## `` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:] if end < 0 else README[start:end]


def test_readme_design_tree_names_every_module():
    tree = section("Design").split("```")[1].splitlines()
    package = ROOT / "fastcnn"
    missing = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if len(rel.parts) > 1 and rel.name == "__init__.py":
            continue  # the folder's own line stands for it
        if len(rel.parts) == 1:
            lines = [line for line in tree if line.startswith("  ") and not line.startswith("   ")]
        else:  # the lines of its folder: the folder's own line and the more indented ones below it
            head = next((i for i, line in enumerate(tree) if line.strip().startswith(f"{rel.parts[0]}/")), None)
            if head is None:
                missing.append(str(rel))
                continue
            indent = len(tree[head]) - len(tree[head].lstrip())
            body = [tree[head]]
            for line in tree[head + 1:]:
                if len(line) - len(line.lstrip()) <= indent:
                    break
                body.append(line)
            lines = body
        if not any(rel.name in line.split() for line in lines):
            missing.append(str(rel))
    assert not missing, f"README Design tree does not list: {missing}"


#: (label, x shape, w shape, stride, padding) of the README's table of plans (batch 64, float32, two threads)
PLAN_EXAMPLES = [
    ("LeNet-5 conv1: 1 → 6, 5×5, padding 2, 28×28", (64, 1, 28, 28), (6, 1, 5, 5), 1, 2),
    ("LeNet-5 conv2: 6 → 16, 5×5, 14×14", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0),
    ("3 → 32, 3×3, padding 1, 32×32", (64, 3, 32, 32), (32, 3, 3, 3), 1, 1),
    ("64 → 64, 3×3, padding 1, 16×16", (64, 64, 16, 16), (64, 64, 3, 3), 1, 1),
    ("resnet_small's 1×1 shortcut, stride 2: 16 → 32, 28×28", (64, 16, 28, 28), (32, 16, 1, 1), 2, 0),
    ("32 → 64, 1×1, 8×8", (64, 32, 8, 8), (64, 32, 1, 1), 1, 0),
    ("16 → 120, 5×5 on 5×5 (LeNet-5's C5 as a convolution)", (64, 16, 5, 5), (120, 16, 5, 5), 1, 0),
    ("batch 4: 3 → 8, 3×3, padding 1, 32×32", (4, 3, 32, 32), (8, 3, 3, 3), 1, 1),
]


def _cell(plan):
    n = plan.workspace_bytes
    return f"{plan.algorithm}, " + (f"{n / 2 ** 20:.2f} MiB" if n else "no scratch")


@pytest.mark.parametrize("label, x_shape, w_shape, stride, padding", PLAN_EXAMPLES, ids=[r[0] for r in PLAN_EXAMPLES])
def test_readme_plan_table_is_what_conv2d_plan_says(label, x_shape, w_shape, stride, padding):
    plans = K.conv2d_plan(x_shape, w_shape, stride, padding, num_threads=2)
    row = f"| {label} | {_cell(plans.forward)} | {_cell(plans.weight_grad)} | {_cell(plans.input_grad)} |"
    assert row in section("Design"), f"README's plan table should have the row\n{row}"


def test_readme_printed_plan_is_current():
    plans = K.conv2d_plan((64, 64, 16, 16), (64, 64, 3, 3), stride=1, padding=1, num_threads=2)
    assert f"```text\n{plans}\n```" in section("Design")
    assert f"# {plans.input_grad.algorithm} {plans.input_grad.workspace_bytes}\n" in section("Design")
    assert f"# {plans.memory_bytes('backward')['total']}: " in section("Design")


#: Modules of the raw kernels (docs/kernels.md documents their public names)
RAW_MODULES = {getattr(K, n).py_func.__module__ for n in K.__all__
               if isinstance(getattr(K, n), numba.core.dispatcher.Dispatcher)}


def test_readme_kernels_api_names_every_public_function():
    text = section("Kernels API")
    for stem in set(re.findall(r"(\w+)_forward/backward", text)):
        text += f" {stem}_forward {stem}_backward"
    named = set(re.findall(r"\w+", text))
    checked = [n for n in K.__all__ if not isinstance(getattr(K, n), numba.core.dispatcher.Dispatcher)
               and getattr(getattr(K, n), "__module__", "") not in RAW_MODULES]
    missing = [n for n in checked if n not in named]
    assert not missing, f"README's Kernels API section does not name: {missing}"


def test_readme_lists_every_example():
    text = section("Examples")
    missing = [p.name for p in sorted((ROOT / "examples").glob("*.py")) if f"`{p.name}`" not in text]
    assert not missing, f"README's Examples section does not list: {missing}"


def test_readme_paths_exist():
    """Every file or folder the README names by path (``tests/...``, ``tools/...``, ``kernels/_gemm.py``) exists."""
    paths = set(re.findall(r"`((?:fastcnn|tests|tools|docs|examples|bench)/[\w./]*)`", README))
    paths |= set(re.findall(r"\]\(((?:docs|examples|tools)/[\w./]+)\)", README))
    paths |= {"fastcnn/" + p for p in re.findall(r"`((?:kernels|layers|data|cli|bench)/[\w./]+\.py)`", README)}
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README names paths that do not exist: {missing}"
