"""The one-way dependency rule between fastcnn's tiers, checked on the import statements.

kernels  <-  layers  <-  model / optim / models  <-  cli / data users

* ``fastcnn/kernels/*`` imports nothing from layers, model, optim, models, cli, data;
* ``fastcnn/layers/*`` imports nothing from model, optim, models, cli, data;
* ``fastcnn/data/*`` imports nothing from kernels, model, training, optim, models, cli, bench,
  serialize; from the layers only ``fastcnn.layers.norm`` (Normalizer's layer and arithmetic);
* ``fastcnn/bench/*`` imports no private module or name of ``fastcnn.kernels``;
* ``fastcnn/_util.py``, ``fastcnn/compile_watch.py`` and ``fastcnn/malloc.py`` import nothing from fastcnn (every
  tier may use them);
* nothing outside ``fastcnn/cli/`` (and ``fastcnn/__main__.py``) imports ``fastcnn.cli``, and the
  ``fastcnn/cli/*`` modules use only public modules and names of the rest of fastcnn;
* ``fastcnn/model.py`` imports, at module level, only config, _util, malloc, kernels and layers: the training
  loop (``fastcnn.training``) and the serializer sit above it and are imported inside the methods
  that hand over to them (``fit``, ``save``, ``get_config``);
* ``fastcnn/onnx/*`` (beside serialize, above model) imports nothing from cli, bench, training, callbacks,
  optim, models or serialize, and imports the optional ``onnx`` package only inside functions;
* ``fastcnn/training.py`` imports nothing from cli, bench, models, serialize or distributed;
  ``fastcnn/callbacks.py`` nothing from the model, the training loop or anything above;
* ``fastcnn/distributed/*`` (above training) imports nothing from cli or bench, and mpi4py only inside functions;
* ``fastcnn/optim.py`` sees Parameters only: from the layers it imports ``Parameter``
  from ``fastcnn.layers.base`` and nothing else;
* kernel files never hard-code Numba's ``fastmath=`` or ``cache=`` (they come from
  ``fastcnn/config.py``) nor decorate with Numba's own ``njit``/``jit``;
* a raw kernel module imports no other variant, only the shared ``_gemm`` and ``_loops``;
  ``fastcnn/kernels/__init__.py`` only re-exports;
* tests, benchmarks, examples and tools use public kernel names only (one listed exception);
* the tests sit in one folder per tier (kernels, layers, training, data, cli, bench, onnx, distributed) and each
  helper shared by test files is defined once, in ``tests/helpers.py`` (or among the oracles of ``tests/naive.py``).
"""

import ast
from pathlib import Path

import pytest

import fastcnn

PACKAGE_DIR = Path(fastcnn.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent

KERNELS_FORBIDDEN = ("fastcnn.layers", "fastcnn.model", "fastcnn.optim", "fastcnn.models", "fastcnn.cli",
                     "fastcnn.data")
LAYERS_FORBIDDEN = ("fastcnn.model", "fastcnn.optim", "fastcnn.models", "fastcnn.cli", "fastcnn.data")
DATA_FORBIDDEN = ("fastcnn.kernels", "fastcnn.model", "fastcnn.training", "fastcnn.callbacks", "fastcnn.optim",
                  "fastcnn.models", "fastcnn.cli", "fastcnn.bench", "fastcnn.serialize")


def module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def imports_of(source, name, is_package):
    """(target module, imported name or None, line) for every import in ``source``, absolute."""
    tree = ast.parse(source)
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1:
                    base = base[: -(node.level - 1)]
                base = ".".join(base)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            for alias in node.names:
                found.append((target, alias.name, node.lineno))
    return found


def violations(source, name, is_package, forbidden):
    """Imports in ``source`` (module ``name``) of any module under a ``forbidden`` prefix."""

    def bad(mod):
        return any(mod == f or mod.startswith(f + ".") for f in forbidden)

    out = []
    for target, imported, line in imports_of(source, name, is_package):
        candidates = [target] + ([f"{target}.{imported}"] if imported else [])
        if any(bad(c) for c in candidates):
            out.append(f"{name}:{line}: imports {target}" + (f".{imported}" if imported else ""))
    return out


def modules_under(sub):
    base = PACKAGE_DIR / sub if sub else PACKAGE_DIR
    return sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)


KERNEL_FILES = modules_under("kernels")
LAYER_FILES = modules_under("layers")
DATA_FILES = modules_under("data")


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def test_the_package_layout_is_what_the_rules_expect():
    assert len(KERNEL_FILES) >= 5 and (PACKAGE_DIR / "kernels" / "__init__.py") in KERNEL_FILES
    assert len(LAYER_FILES) >= 5 and (PACKAGE_DIR / "layers" / "__init__.py") in LAYER_FILES
    assert len(DATA_FILES) >= 5 and (PACKAGE_DIR / "data" / "__init__.py") in DATA_FILES
    assert (PACKAGE_DIR / "optim.py").is_file() and (PACKAGE_DIR / "config.py").is_file()


@pytest.mark.parametrize(
    "source,name,is_package,forbidden,expect_bad",
    [
        pytest.param("from ..layers import Conv2d", "fastcnn.kernels._x", False, KERNELS_FORBIDDEN, True,
                     id="relative-from-layers"),
        pytest.param("from .. import model", "fastcnn.kernels._x", False, KERNELS_FORBIDDEN, True,
                     id="relative-from-package-import-module"),
        pytest.param("import fastcnn.optim as o", "fastcnn.kernels", True, KERNELS_FORBIDDEN, True,
                     id="absolute-import"),
        pytest.param("def f():\n    from fastcnn.data import load_mnist", "fastcnn.layers.conv", False,
                     LAYERS_FORBIDDEN, True, id="lazy-import-in-function"),
        pytest.param("from ..config import njit\nfrom . import _checks", "fastcnn.kernels._x", False,
                     KERNELS_FORBIDDEN, False, id="allowed-config"),
        pytest.param("from .. import kernels\nfrom .base import Layer", "fastcnn.layers.conv", False,
                     LAYERS_FORBIDDEN, False, id="allowed-kernels-from-layers"),
        pytest.param("from .modelling import x", "fastcnn.layers.conv", False, LAYERS_FORBIDDEN, False,
                     id="prefix-is-not-module"),
    ],
)
def test_checker_itself(source, name, is_package, forbidden, expect_bad):
    assert bool(violations(source, name, is_package, forbidden)) is expect_bad


@pytest.mark.parametrize("path", KERNEL_FILES, ids=ids(KERNEL_FILES))
def test_kernels_import_no_higher_tier(path):
    name, is_package = module_name(path)
    assert violations(path.read_text(), name, is_package, KERNELS_FORBIDDEN) == []


@pytest.mark.parametrize("path", LAYER_FILES, ids=ids(LAYER_FILES))
def test_layers_import_no_higher_tier(path):
    name, is_package = module_name(path)
    assert violations(path.read_text(), name, is_package, LAYERS_FORBIDDEN) == []


@pytest.mark.parametrize("path", DATA_FILES, ids=ids(DATA_FILES))
def test_data_imports_no_higher_tier_and_only_the_norm_layers(path):
    name, is_package = module_name(path)
    source = path.read_text()
    assert violations(source, name, is_package, DATA_FORBIDDEN) == []
    layer_modules = {t for t, _, _ in imports_of(source, name, is_package)
                     if t == "fastcnn.layers" or t.startswith("fastcnn.layers.")}
    assert layer_modules <= {"fastcnn.layers.norm"}, layer_modules


BENCH_FILES = modules_under("bench")


def private_kernel_imports(source, name, is_package):
    """Imports in ``source`` of a private module or name of fastcnn.kernels (``fastcnn.kernels._x``)."""
    out = []
    for target, imported, line in imports_of(source, name, is_package):
        full = f"{target}.{imported}" if imported else target
        parts = full.split(".")
        if parts[:2] == ["fastcnn", "kernels"] and any(p.startswith("_") for p in parts[2:]):
            out.append(f"{name}:{line}: imports {full}")
    return out


def test_private_kernel_import_detector_itself():
    assert private_kernel_imports("from ..kernels import _conv_exec", "fastcnn.bench.conv", False)
    assert private_kernel_imports("from fastcnn.kernels._workspace import take", "fastcnn.bench", True)
    assert not private_kernel_imports("from ..kernels import conv2d_plan\nfrom .._util import to_jsonable",
                                      "fastcnn.bench.conv", False)


@pytest.mark.parametrize("path", BENCH_FILES, ids=ids(BENCH_FILES))
def test_bench_uses_only_public_kernels(path):
    """The benchmarks read plans and call public kernels; they never reach into kernel internals."""
    name, is_package = module_name(path)
    assert private_kernel_imports(path.read_text(), name, is_package) == []


def test_optim_imports_only_parameter_from_layers():
    path = PACKAGE_DIR / "optim.py"
    name, is_package = module_name(path)
    layer_imports = [(t, n) for t, n, _ in imports_of(path.read_text(), name, is_package)
                     if t == "fastcnn.layers" or t.startswith("fastcnn.layers.")]
    assert layer_imports, "optim.py is expected to import Parameter from fastcnn.layers.base"
    assert set(layer_imports) == {("fastcnn.layers.base", "Parameter")}, layer_imports
    higher = [(t, n) for t, n, _ in imports_of(path.read_text(), name, is_package)
              if any(t == f or t.startswith(f + ".") for f in ("fastcnn.model", "fastcnn.models", "fastcnn.cli"))]
    assert higher == []


def _numba_options_in(tree):
    """fastmath=/cache= keyword arguments and dict keys anywhere in a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("fastmath", "cache"):
            found.append(f"line {node.value.lineno}: {node.arg}=")
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and key.value in ("fastmath", "cache"):
                    found.append(f"line {key.lineno}: {key.value!r} key")
    return found


def _numba_decorators_in(tree):
    """Decorators or imports that take njit/jit straight from numba, bypassing config."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "numba":
            for alias in node.names:
                if alias.name in ("njit", "jit", "vectorize", "guvectorize", "generated_jit", "stencil"):
                    found.append(f"line {node.lineno}: from numba import {alias.name}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "numba":
            if node.attr in ("njit", "jit", "vectorize", "guvectorize"):
                found.append(f"line {node.lineno}: numba.{node.attr}")
    return found


def test_option_detector_itself():
    tree = ast.parse("import numba\n@numba.njit(cache=True, fastmath=True)\ndef f(): pass\nd = {'cache': 1}")
    assert len(_numba_options_in(tree)) == 3
    assert _numba_decorators_in(tree) == ["line 2: numba.njit"]
    assert _numba_options_in(ast.parse("from ..config import pjit\n@pjit\ndef f(): pass")) == []


@pytest.mark.parametrize("path", KERNEL_FILES, ids=ids(KERNEL_FILES))
def test_kernel_files_take_numba_options_from_config(path):
    tree = ast.parse(path.read_text())
    assert _numba_options_in(tree) == []
    assert _numba_decorators_in(tree) == []


def test_config_holds_the_numba_options():
    from fastcnn import config

    assert set(config.JIT) >= {"cache", "fastmath"}
    assert config.PARALLEL_JIT["parallel"] is True
    assert {k: v for k, v in config.PARALLEL_JIT.items() if k != "parallel"} == config.JIT


# --------------------------------------------------------------------------- _util and the command line


@pytest.mark.parametrize("module", ["_util.py", "compile_watch.py", "malloc.py"])
def test_shared_bottom_modules_import_nothing_from_fastcnn(module):
    path = PACKAGE_DIR / module
    name, is_package = module_name(path)
    assert violations(path.read_text(), name, is_package, ("fastcnn",)) == []


CLI_FILES = modules_under("cli")
NON_CLI_FILES = [p for p in modules_under("")
                 if p.relative_to(PACKAGE_DIR).parts[0] != "cli" and p.name != "__main__.py"]


@pytest.mark.parametrize("path", NON_CLI_FILES, ids=ids(NON_CLI_FILES))
def test_nothing_below_the_cli_imports_it(path):
    name, is_package = module_name(path)
    assert violations(path.read_text(), name, is_package, ("fastcnn.cli",)) == []


def private_uses(source, name, is_package):
    """Private modules or names of fastcnn outside ``fastcnn.cli`` that ``source`` imports or reads.

    ``fastcnn._util`` is shared by every tier and counts as public.  Reads are
    attributes of names imported from fastcnn (``plot._conv_layers``).
    """
    out, bound = [], set()
    for target, imported, line in imports_of(source, name, is_package):
        if not (target == "fastcnn" or target.startswith("fastcnn.")) or target.startswith("fastcnn.cli"):
            continue
        full = f"{target}.{imported}" if imported else target
        if any(p.startswith("_") and not p.startswith("__") and p != "_util" for p in full.split(".")[1:]):
            out.append(f"{name}:{line}: imports {full}")
        bound.add(imported or target.split(".")[0])
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.append(f"{name}:{node.lineno}: reads {node.value.id}.{node.attr}")
    return out


def test_private_use_detector_itself():
    assert private_uses("from .. import plot\nplot._conv_layers(m)", "fastcnn.cli.plot", False)
    assert private_uses("from ..data import _as_nchw", "fastcnn.cli.common", False)
    assert private_uses("from ..kernels._workspace import take", "fastcnn.cli.bench", False)
    assert not private_uses("from .. import plot, __version__\nfrom .._util import atomic_write\n"
                            "from . import common\nfrom .common import _checked\nplot.conv_layers(m)",
                            "fastcnn.cli.plot", False)


def test_the_cli_is_a_package_of_subcommands():
    import fastcnn.cli

    assert (PACKAGE_DIR / "cli" / "__init__.py").is_file() and not (PACKAGE_DIR / "cli.py").exists()
    for command in fastcnn.cli.COMMANDS:
        assert callable(command.add_parser) and callable(command.run), command.__name__


@pytest.mark.parametrize("path", CLI_FILES, ids=ids(CLI_FILES))
def test_cli_uses_only_public_names(path):
    name, is_package = module_name(path)
    assert private_uses(path.read_text(), name, is_package) == []


# --------------------------------------------------------------------------- model, training, callbacks


def module_level_imports(source, name, is_package):
    """``imports_of`` restricted to imports that run when the module is imported (not inside a function)."""
    tree = ast.parse(source)
    top = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                top.append(child)
            visit(child)

    visit(tree)
    lines = {node.lineno for node in top}
    return [(t, n, line) for t, n, line in imports_of(source, name, is_package) if line in lines]


def test_module_level_import_detector_itself():
    source = "from .layers import chain\nclass S:\n    def fit(self):\n        from .training import fit\n"
    assert [t for t, _, _ in module_level_imports(source, "fastcnn.model", False)] == ["fastcnn.layers"]


def test_model_imports_only_lower_tiers_at_module_level():
    path = PACKAGE_DIR / "model.py"
    name, is_package = module_name(path)
    allowed = ("fastcnn.config", "fastcnn._util", "fastcnn.malloc", "fastcnn.kernels", "fastcnn.layers")
    found = [t for t, _, _ in module_level_imports(path.read_text(), name, is_package) if t.startswith("fastcnn")]
    assert found and all(any(t == a or t.startswith(a + ".") for a in allowed) for t in found), found


def test_training_and_callbacks_import_no_higher_tier():
    for file, forbidden in (
        ("training.py", ("fastcnn.cli", "fastcnn.bench", "fastcnn.models", "fastcnn.serialize",
                         "fastcnn.distributed")),
        ("callbacks.py", ("fastcnn.model", "fastcnn.training", "fastcnn.models", "fastcnn.cli", "fastcnn.bench",
                          "fastcnn.serialize", "fastcnn.data")),
    ):
        path = PACKAGE_DIR / file
        name, is_package = module_name(path)
        assert violations(path.read_text(), name, is_package, forbidden) == [], file


# --------------------------------------------------------------------------- ONNX

ONNX_FILES = modules_under("onnx")
ONNX_FORBIDDEN = ("fastcnn.cli", "fastcnn.bench", "fastcnn.training", "fastcnn.callbacks", "fastcnn.optim",
                  "fastcnn.models", "fastcnn.serialize")
#: Optional packages: imported inside the functions that need them, so fastcnn imports without them.
OPTIONAL_PACKAGES = ("onnx", "onnxruntime", "google.protobuf", "torch")


def test_onnx_package_is_there():
    assert (PACKAGE_DIR / "onnx" / "__init__.py") in ONNX_FILES and len(ONNX_FILES) >= 4


@pytest.mark.parametrize("path", ONNX_FILES, ids=ids(ONNX_FILES))
def test_onnx_imports_no_higher_tier_and_its_packages_lazily(path):
    name, is_package = module_name(path)
    source = path.read_text()
    assert violations(source, name, is_package, ONNX_FORBIDDEN) == []
    eager = [t for t, _, _ in module_level_imports(source, name, is_package)
             if any(t == p or t.startswith(p + ".") for p in OPTIONAL_PACKAGES)]
    assert eager == [], f"{name} imports {eager} at module level"


# --------------------------------------------------------------------------- distributed (above training, below cli)

DISTRIBUTED_FILES = modules_under("distributed")


def test_distributed_package_is_there():
    assert (PACKAGE_DIR / "distributed" / "__init__.py") in DISTRIBUTED_FILES and len(DISTRIBUTED_FILES) >= 5


@pytest.mark.parametrize("path", DISTRIBUTED_FILES, ids=ids(DISTRIBUTED_FILES))
def test_distributed_imports_no_higher_tier_and_mpi4py_lazily(path):
    """fastcnn.distributed sits on the training loop; mpi4py is optional, so it is imported inside functions."""
    name, is_package = module_name(path)
    source = path.read_text()
    assert violations(source, name, is_package, ("fastcnn.cli", "fastcnn.bench")) == []
    eager = [t for t, _, _ in module_level_imports(source, name, is_package) if t.split(".")[0] == "mpi4py"]
    assert eager == [], f"{name} imports {eager} at module level"


# --------------------------------------------------------------------------- kernel modules, tests and tools

#: The raw kernel modules may share these three (the micro-kernel, the loop helpers and the task bodies' call
#: mechanism) and nothing else.
RAW_SHARED = {"fastcnn.kernels._gemm", "fastcnn.kernels._loops", "fastcnn.kernels._tasks"}
#: Helpers of one raw kernel module only, which that module may import too (a raw module itself for the rule).
RAW_OWN_HELPERS = {"_conv_winograd.py": {"fastcnn.kernels._winograd_transforms"}}
#: Modules of fastcnn/kernels that are not raw kernels: the plan executor, the workspace, the argument checks.
KERNEL_GLUE = {"_conv_exec.py", "_workspace.py", "_checks.py", "_gemm.py", "_loops.py", "_tasks.py"}
RAW_KERNEL_FILES = [p for p in KERNEL_FILES if p.name.startswith("_") and p.name != "__init__.py"
                    and p.name not in KERNEL_GLUE]


@pytest.mark.parametrize("path", RAW_KERNEL_FILES, ids=ids(RAW_KERNEL_FILES))
def test_raw_kernel_modules_import_no_other_variant(path):
    """A variant (``_conv_batchlast``, ``_pool``, ...) never imports another: shared njit code lives in ``_loops``."""
    name, is_package = module_name(path)
    private = [f"{t}.{n}" if n else t for t, n, _ in imports_of(path.read_text(), name, is_package)
               if t.startswith("fastcnn.kernels._")]
    allowed = RAW_SHARED | RAW_OWN_HELPERS.get(path.name, set())
    assert {p.rsplit(".", 1)[0] if p.count(".") > 2 else p for p in private} <= allowed, private


def test_depthwise_kernels_are_a_raw_variant_module():
    """``_conv_depthwise`` and the stride-2 kernels are checked by the rule above (variants: they import only the
    shared raw modules and ``config``)."""
    assert {"_conv_depthwise.py", "_conv_depthwise_s2.py", "_conv_depthwise_s2_stacked.py",
            "_conv_depthwise_s2_input_stacked.py", "_conv_depthwise_stacked.py",
            "_conv_depthwise_weight_stacked.py"} <= {
        p.name for p in RAW_KERNEL_FILES}


def test_kernels_init_only_re_exports():
    """``fastcnn/kernels/__init__.py`` holds imports, ``__all__`` and its docstring: no code of its own."""
    tree = ast.parse((PACKAGE_DIR / "kernels" / "__init__.py").read_text())
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Import", "Assign"}, kinds
    assigned = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
    assert assigned == ["__all__"]


#: test files allowed one private kernel name, and why
PRIVATE_KERNEL_ALLOWED = {
    # the micro-kernel's own unit test against numpy: it has no public checked wrapper
    "tests/kernels/test_channellast.py": {"fastcnn.kernels._gemm.gemm_acc", "fastcnn.kernels._gemm.compile_gemm_acc"},
    # the task-body mechanism's own tests: a task and kernels of the test's own
    "tests/kernels/test_tasks.py": {"fastcnn.kernels._tasks.task", "fastcnn.kernels._tasks.parallel_tasks"},
    # the shared inline helpers' own tests: called from compiled code of the test's own, as kernels call them
    "tests/kernels/test_loops.py": {"fastcnn.kernels._loops.transpose_flat", "fastcnn.kernels._loops.transpose_into",
                                   "fastcnn.kernels._loops.zero_span"},
}
OUTSIDE_FILES = sorted(p for sub in ("tests", "bench", "examples", "tools") for p in (ROOT / sub).rglob("*.py")
                       if "__pycache__" not in p.parts)


def private_kernel_uses(source, name):
    """Private fastcnn.kernels modules or names that ``source`` imports, or reads as ``kernels._x`` / ``K._x``."""
    found = {line.split(": imports ")[1] for line in private_kernel_imports(source, name, False)}
    aliases = {alias.asname or alias.name for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.ImportFrom) and node.module == "fastcnn" for alias in node.names
               if alias.name == "kernels"}
    aliases |= {alias.asname for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                for alias in node.names if alias.name == "fastcnn.kernels" and alias.asname}
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.add(f"fastcnn.kernels.{node.attr}")
    return found


def test_private_kernel_use_detector_itself():
    assert private_kernel_uses("from fastcnn import kernels as K\nK._WORKSPACE.arrays", "t") == {
        "fastcnn.kernels._WORKSPACE"}
    assert private_kernel_uses("from fastcnn.kernels._workspace import take", "t") == {
        "fastcnn.kernels._workspace.take"}
    assert private_kernel_uses("from fastcnn import kernels\nkernels.conv2d_plan", "t") == set()


@pytest.mark.parametrize("path", OUTSIDE_FILES, ids=ids(OUTSIDE_FILES))
def test_tests_benchmarks_examples_and_tools_use_public_kernels(path):
    """Tests check the public API (and the raw kernels it exports), not kernel internals."""
    rel = str(path.relative_to(ROOT))
    assert private_kernel_uses(path.read_text(), path.stem) <= PRIVATE_KERNEL_ALLOWED.get(rel, set())


# --------------------------------------------------------------------------- the tests themselves

TESTS_DIR = ROOT / "tests"
TIERS = ("kernels", "layers", "training", "data", "cli", "bench", "onnx", "distributed")
#: Test files that check the repository as a whole and stay at the top of tests/.
REPOSITORY_WIDE = {"test_layering.py", "test_readme.py", "test_examples.py", "test_util.py", "test_docs.py"}
TEST_FILES = sorted(p for p in TESTS_DIR.rglob("test_*.py") if "__pycache__" not in p.parts)


def top_level_functions(path):
    """Names of the functions and classes a file defines at module level."""
    return {node.name for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_tests_are_filed_by_tier():
    """Every test file is in a tier folder (or is one of the repository-wide checks at the top); the
    folders are not packages, so no two test files may share a name."""
    misplaced = [str(p.relative_to(TESTS_DIR)) for p in TEST_FILES
                 if not (p.parent == TESTS_DIR and p.name in REPOSITORY_WIDE)
                 and not (p.parent.parent == TESTS_DIR and p.parent.name in TIERS)]
    assert misplaced == []
    names = [p.name for p in TEST_FILES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert not list(TESTS_DIR.rglob("__init__.py"))


@pytest.mark.skipif(not (TESTS_DIR / "helpers.py").is_file(), reason="no tests/ folder beside the package")
def test_shared_test_helpers_are_defined_once():
    """No test file defines again a helper of ``tests/helpers.py`` or an oracle of ``tests/naive.py``."""
    shared = {name for module in ("helpers.py", "naive.py") for name in top_level_functions(TESTS_DIR / module)
              if not name.startswith("_")}
    again = {str(p.relative_to(TESTS_DIR)): sorted(top_level_functions(p) & shared) for p in TEST_FILES}
    assert {k: v for k, v in again.items() if v} == {}
