"""Command-line argument fuzzing (issue 12): every subcommand of ``fastcnn`` with unknown flags, missing values,
zero, negative, huge, NaN, infinite and non-numeric numbers, empty strings, paths that are folders, missing,
FIFOs, devices or unwritable, conflicting flags and unicode, structured (each flag of each command in turn) and
at random (seeded).

The property, for every argument list: the exit status is 0, 1 or 2 (``fastcnn.cli.common``: 2 for bad
arguments, 1 for data and checkpoint errors), no traceback, a failure is one line ``fastcnn: error: ...`` on
standard error, and a refused call writes nothing (no partial output, no temporary file).

The work itself is stubbed (:func:`install_stubs`): training's ``fit``, the benchmarks and the pictures raise
:class:`Reached` instead of running, so an argument list that passes every check ends there, quickly, and must
not have written anything yet.  A few argument lists run for real (``REAL``: one epoch on 64 images, one
evaluation, a prediction, pictures).  Most cases run in-process; those that could hang or crash the
interpreter (FIFOs and devices given as files, huge thread counts and seeds) run in a child process
(:func:`helpers.run_cases_in_child`).
"""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import make_fake_mnist, run_cases_in_child, write_idx

pytestmark = [pytest.mark.usefixtures("restore_num_threads"),
              pytest.mark.skipif(os.name != "posix", reason="FIFOs, SIGALRM and /proc: needs POSIX")]

HERE = Path(__file__).resolve().parent


class Reached(BaseException):
    """Raised by the stubs: the arguments passed every check and the work was about to start."""


def _reached(*args, **kwargs):
    raise Reached()


def install_stubs(setattr_):
    """Replace the slow work of every subcommand by :func:`_reached` (``setattr_`` is monkeypatch's or the
    builtin)."""
    import fastcnn.bench
    import fastcnn.cli.train
    import fastcnn.parallel_compile
    import fastcnn.plot

    setattr_(fastcnn.cli.train, "_fit", _reached)
    setattr_(fastcnn.parallel_compile, "compile_model", _reached)
    for name in ("run_conv_suite", "bench_train", "bench_models", "bench_startup"):
        setattr_(fastcnn.bench, name, _reached)
    setattr_(fastcnn.bench, "busy_cores", lambda *a, **k: 0.0)
    for name in ("plot_history", "plot_filters", "plot_feature_maps"):
        setattr_(fastcnn.plot, name, _reached)


def run_in(cwd, argv):
    """``fastcnn.cli.main(argv)`` in folder ``cwd`` (the child process's target)."""
    from fastcnn.cli import main

    os.chdir(cwd)
    return main(argv)


# --------------------------------------------------------------------------- values

#: Paths, by token; the fixtures of :func:`files` put them in place ("{ckpt}" is a real checkpoint).
IN_PATHS = ["{missing}", "{dir}", "{text}", "{empty}", "", "{long}", "{unicode}", "{filedir}"]
RISKY_PATHS = ["{fifo}", "{linkfifo}", "{devzero}", "{devnull-like}"]
#: Tokens for paths that do not exist, in the case's own folder (an output may create them there).
LOCAL = {"{missing}": "missing.npz", "{long}": "x" * 300 + ".npz", "{unicode}": "donn\u00e9es-\u2713.npz",
         "{noparent}": os.path.join("no", "such", "x.npz")}
OUT_PATHS = ["{dir}", "{noparent}", "{filedir}", "", "{long}", "{proc}", "."]
INT_BAD = ["0", "-1", "abc", "", "1.5", "nan", "inf", "1e3", "0x10", "--", "3 4", "\u2468"]
NONNEG_BAD = ["-1", "abc", "", "2.5", "-0.5", "nan"]
FLOAT_BAD = ["0", "-1", "nan", "NaN", "inf", "-inf", "1e309", "abc", "", "-0", "1,5", "0x1p-3"]
UNIT_BAD = ["1", "-0.1", "nan", "inf", "1.5", "abc", "", "1e309"]
HUGE = ["99999999999999999999", str(2**63), str(2**64)]
SCHEDULES_BAD = ["step", "step:0", "step:-1", "step:x", "step:1:nan", "step:1:0", "exp:0", "exp:inf",
                 "exp:0.5:0", "plateau:-1", "plateau:1:1.5", "bogus", "step:1:0.5:9", ":", "\u00e9t\u00e9"]
SHAPES_BAD = ["1x1x1x1", "0x1x4x4:1k3", "1x1x4x4:1k9", "abc", "", "1x1x4x4:1k3s0", "1x1x4x4:0k1", "-1x1x4x4:1k1",
              "1x1x4x4:1k3p-1", "9" * 30 + "x1x4x4:1k1", "1x1x4x4:1k1p100000"]

#: Each subcommand: an argument list that passes every check, and each option with its bad values.
COMMANDS = {
    "train": (["train", "--limit", "64", "--epochs", "1", "--out", "out.npz"], {
        "--epochs": INT_BAD, "--batch-size": INT_BAD, "--lr": FLOAT_BAD, "--momentum": UNIT_BAD,
        "--weight-decay": ["-1", "nan", "inf", "abc", ""], "--schedule": SCHEDULES_BAD,
        "--early-stopping": INT_BAD, "--val-split": UNIT_BAD, "--threads": INT_BAD, "--seed": NONNEG_BAD,
        "--limit": INT_BAD + ["1", "2"], "--out": OUT_PATHS, "--plot": OUT_PATHS, "--resume": IN_PATHS,
        "--data": IN_PATHS + ["mnist", "fashion-mnist", "sample ", "{mnist-bad-labels}"],
        "--data-dir": IN_PATHS, "--model": ["nope", "", "LENET5", "lenet5 "],
    }),
    "evaluate": (["evaluate", "{ckpt}", "--limit", "16"], {
        "CKPT": IN_PATHS + ["{images}"], "--data": IN_PATHS + ["mnist", "{mnist-bad-labels}"],
        "--data-dir": IN_PATHS, "--limit": INT_BAD, "--batch-size": INT_BAD, "--threads": INT_BAD,
    }),
    "predict": (["predict", "{ckpt}", "{images}", "--out", "labels.npy"], {
        "CKPT": IN_PATHS + ["{images}"],
        "IMAGES": IN_PATHS + ["{ckpt}", "{images-nan}", "{images-255}", "{images-32}", "{images-int}",
                              "{images-5d}"],
        "--out": OUT_PATHS, "--batch-size": INT_BAD, "--threads": INT_BAD,
    }),
    "summary": (["summary", "{ckpt}", "--plans"], {
        "CKPT": IN_PATHS + ["{images}"], "--batch-size": INT_BAD, "--model": ["nope", "", "lenet"],
    }),
    "plot": (["plot", "{ckpt}", "--curves", "c.png", "--filters", "f.png", "--feature-maps", "m.png"], {
        "CKPT": IN_PATHS, "--curves": OUT_PATHS, "--filters": OUT_PATHS, "--feature-maps": OUT_PATHS,
        "--image-index": NONNEG_BAD + ["1000", "100000"],
    }),
    "bench-conv": (["bench", "conv", "--shapes", "1x1x4x4:1k3", "--repeat", "1", "--json", "b.json"], {
        "--shapes": SHAPES_BAD, "--threads": INT_BAD, "--repeat": INT_BAD, "--json": OUT_PATHS,
        "--plot": OUT_PATHS,
    }),
    "bench-train": (["bench", "train", "--batches", "1", "--repeat", "1"], {
        "--batches": INT_BAD, "--repeat": INT_BAD, "--threads": INT_BAD, "--json": OUT_PATHS,
    }),
    "bench-startup": (["bench", "startup", "--repeat", "1", "--no-cold"], {
        "--repeat": INT_BAD, "--json": OUT_PATHS,
    }),
    "compile": (["compile", "--model", "lenet5"], {
        "--model": ["nope", "", "lenet"], "--dtype": ["float16", "", "int"], "--batch-size": INT_BAD + HUGE,
        "--input-shape": ["1x28", "0x28x28", "axbxc", "", "1x28x28x1", "99999x28x28", "1x28x29", "3x32x32",
                          "4096x4096x4096"], "--threads": INT_BAD,
    }),
    "bench-models": (["bench", "models", "--models", "lenet5", "--repeat", "1"], {
        "--models": ["nope", "", "lenet"], "--repeat": INT_BAD, "--threads": INT_BAD, "--json": OUT_PATHS,
    }),
}


def _replace(base, option, value):
    """``base`` with ``option`` (a flag, or CKPT/IMAGES for a positional) set to ``value``."""
    argv = list(base)
    if option in ("CKPT", "IMAGES"):
        index = [i for i, a in enumerate(argv) if a.startswith("{")][0 if option == "CKPT" else 1]
        argv[index] = value
    elif option in argv:
        i = argv.index(option)
        argv[i + 1] = value
    else:
        argv += [option, value]
    return argv


# --------------------------------------------------------------------------- cases

class Case:
    """An argument list, and whether it must be refused (``"refused"``), succeed (``"ok"``) or may go either way
    (``"any"``)."""

    def __init__(self, name, argv, expect="any", real=False, marks=()):
        self.id, self.argv, self.expect, self.real, self.marks = name, argv, expect, real, marks
        self.risky = any(t in a for a in argv for t in RISKY_PATHS) or any(a in HUGE for a in argv)


def _valid_for(option, value):
    """Values in the bad lists that are in fact acceptable (the case then may pass or fail)."""
    return (value in ("{unicode}",) or (option == "--limit" and value in ("1", "2"))
            or (option == "--data" and value == "sample ") or (option == "--image-index" and value in ("100000",)))


def structured_cases():
    cases = []
    for command, (base, options) in COMMANDS.items():
        cases.append(Case(f"{command}-base", base))
        for option, values in options.items():
            for value in values:
                expect = "any" if _valid_for(option, value) else "refused"
                cases.append(Case(f"{command}{option}={value!r}", _replace(base, option, value), expect))
            for value in RISKY_PATHS if option in ("CKPT", "IMAGES", "--resume", "--data") else ():
                cases.append(Case(f"{command}{option}={value!r}", _replace(base, option, value), "refused"))
            for value in ("{fifo}", "{devnull-like}") if values is OUT_PATHS else ():
                cases.append(Case(f"{command}{option}={value!r}", _replace(base, option, value), "refused"))
            for value in HUGE if values in (INT_BAD, NONNEG_BAD) and option != "--epochs" else ():
                cases.append(Case(f"{command}{option}={value}", _replace(base, option, value)))
        cases += [
            Case(f"{command}-unknown-flag", base + ["--bogus"], "refused"),
            Case(f"{command}-unknown-short", base + ["-z", "1"], "refused"),
            Case(f"{command}-extra-positional", base + ["extra"], "refused"),
            Case(f"{command}-missing-value", base + [next(o for o in options if o.startswith("--"))], "refused"),
            Case(f"{command}-help", base + ["--help"]),
        ]
    return cases


CONFLICTS = [
    ("no-arguments", [], "refused"), ("unknown-command", ["fly"], "refused"), ("version", ["--version"], "any"),
    ("bench-alone", ["bench"], "refused"), ("bench-unknown", ["bench", "gpu"], "refused"),
    ("summary-both", ["summary", "{ckpt}", "--model", "lenet5"], "refused"),
    ("summary-neither", ["summary"], "refused"),
    ("summary-model", ["summary", "--model", "resnet_small", "--plans", "--batch-size", "1"], "any"),
    ("evaluate-none", ["evaluate"], "refused"), ("predict-one", ["predict", "{ckpt}"], "refused"),
    ("plot-nothing", ["plot", "{ckpt}"], "refused"),
    ("plot-image-1000", ["plot", "{ckpt}", "--feature-maps", "m.png", "--image-index", "1000"], "refused"),
    ("train-val0-early", ["train", "--limit", "64", "--epochs", "1", "--val-split", "0", "--early-stopping", "2"],
     "refused"),
    ("train-resume-other-model", ["train", "--resume", "{ckpt}", "--model", "vgg_small", "--epochs", "3"], "refused"),
    ("train-resume-done", ["train", "--resume", "{ckpt}", "--epochs", "1"], "refused"),
    ("train-resume-ok", ["train", "--resume", "{ckpt}", "--epochs", "2", "--out", "b.npz"], "any"),
    ("train-resume-images", ["train", "--resume", "{images}", "--epochs", "2"], "refused"),
    ("train-repeated-flag", ["train", "--limit", "64", "--limit", "0", "--epochs", "1"], "refused"),
    ("train-abbreviated", ["train", "--lim", "64", "--epoch", "1", "--out", "o.npz"], "any"),
    ("train-limit-one", ["train", "--limit", "1", "--epochs", "1"], "any"),
    ("train-data-dir-without-mnist", ["train", "--data-dir", "{dir}", "--limit", "8"], "refused"),
    ("evaluate-data-dir-without-mnist", ["evaluate", "{ckpt}", "--data-dir", "{mnist-root}"], "refused"),
    ("train-data-mnist-dir", ["train", "--data", "mnist", "--data-dir", "{mnist-root}", "--epochs", "1"], "any"),
    ("train-data-fashion-missing", ["train", "--data", "fashion-mnist", "--data-dir", "{missing}"], "refused"),
    ("train-out-is-checkpoint-folder", ["train", "--limit", "64", "--epochs", "1", "--out", "{dir}/"], "refused"),
    ("train-fullwidth-lr", ["train", "--limit", "64", "--epochs", "1", "--lr", "\uff10.\uff11"], "any"),
    ("train-emoji-schedule", ["train", "--limit", "64", "--epochs", "1", "--schedule", "\U0001F525"], "refused"),
    ("predict-dash-dash", ["predict", "--", "{ckpt}", "{images}"], "any"),
    ("predict-out-unicode", ["predict", "{ckpt}", "{images}", "--out", "\u00e9tiquettes-\u2713.npy"], "any"),
    ("evaluate-lone-surrogate", ["evaluate", "\udcff.npz"], "refused"),
]


def random_cases(n, seed, prefix):
    """``n`` seeded random argument lists: a subcommand, then 1-5 of its options (or others'), values drawn from
    every list above, unknown flags and stray tokens."""
    rng = np.random.default_rng([seed, 0xC11])
    values = sorted({v for _, opts in COMMANDS.values() for vs in opts.values() for v in vs} | set(IN_PATHS)
                    | set(OUT_PATHS) | {"{ckpt}", "{images}", "1", "0.5", "8", "-", "--bogus", "\u00e9"})
    values = [v for v in values if v not in RISKY_PATHS]
    cases = []
    for i in range(n):
        command = list(COMMANDS)[rng.integers(len(COMMANDS))]
        base, options = COMMANDS[command]
        argv = list(base[:2] if command.startswith("bench") else base[:1])
        flags = [o for o in options if o.startswith("--")] + ["--bogus", "--threads", "--out", "--limit"]
        for _ in range(int(rng.integers(1, 6))):
            roll = rng.random()
            if roll < 0.7:
                argv += [flags[rng.integers(len(flags))], values[rng.integers(len(values))]]
            elif roll < 0.85:
                argv.append(values[rng.integers(len(values))])
            else:
                argv.append(flags[rng.integers(len(flags))])
        if command == "train" and "--epochs" not in argv:
            argv += ["--epochs", "1", "--limit", "64"]
        cases.append(Case(f"{prefix}-{i}", _never_overwrite_fixtures(argv)))
    return cases


OUTPUT_FLAGS = ("--out", "--plot", "--json", "--curves", "--filters", "--feature-maps")


def _never_overwrite_fixtures(argv):
    """``argv`` with every shared file named after an output flag replaced by ``o.npz`` (in the case's folder)."""
    return [("o.npz" if i and argv[i - 1] in OUTPUT_FLAGS and a.startswith("{") and a not in LOCAL else a)
            for i, a in enumerate(argv)]


#: Argument lists that run for real (nothing stubbed): they must succeed (or diverge: status 1 and a warning),
#: but for the last two, whose output cannot be written.
REAL = [
    ("train", ["train", "--limit", "64", "--epochs", "1", "--out", "r.npz", "--threads", "1"]),
    ("train-diverges", ["train", "--limit", "64", "--epochs", "2", "--lr", "1e30", "--out", "r.npz"]),
    ("train-everything", ["train", "--limit", "64", "--epochs", "1", "--batch-size", "100000", "--schedule",
                          "plateau:1", "--augment", "--early-stopping", "1", "--seed", "4294967296", "--out",
                          "\u00e9\u2713.npz", "--momentum", "0", "--weight-decay", "0"]),
    ("train-val0", ["train", "--limit", "64", "--epochs", "1", "--val-split", "0", "--out", "v.npz"]),
    ("train-undecodable-name", ["train", "--limit", "64", "--epochs", "1", "--out", "\udcff.npz"]),  # bytes ff
    ("train-resume", ["train", "--resume", "{ckpt}", "--epochs", "2", "--out", "r2.npz"]),
    ("train-mnist-dir", ["train", "--data", "{mnist}", "--epochs", "1", "--out", "m.npz"]),
    ("evaluate", ["evaluate", "{ckpt}", "--limit", "8", "--batch-size", "3"]),
    ("evaluate-mnist", ["evaluate", "{ckpt}", "--data", "mnist", "--data-dir", "{mnist-root}"]),
    ("predict", ["predict", "{ckpt}", "{images}"]),
    ("predict-out", ["predict", "{ckpt}", "{images-float}", "--out", "l.npy", "--batch-size", "1"]),
    ("summary", ["summary", "{ckpt}", "--plans", "--batch-size", "1"]),
    ("plot", ["plot", "{ckpt}", "--curves", "c.png", "--filters", "f.png", "--feature-maps", "m.png",
              "--image-index", "999"]),
    ("plot-proc", ["plot", "{ckpt}", "--curves", "{proc}"]),
    ("predict-proc", ["predict", "{ckpt}", "{images}", "--out", "{proc}"]),
]

def _real_outcome(argv):
    """What a real run of ``argv`` must do: refuse an unwritable output, and pictures without matplotlib."""
    if "{proc}" in argv or (argv[0] == "plot" and importlib.util.find_spec("matplotlib") is None):
        return "refused"
    return "ok"


STRUCTURED = structured_cases()
CASES = (STRUCTURED + [Case(f"conflict-{n}", a, e) for n, a, e in CONFLICTS] + random_cases(60, 0, "random")
         + [Case(f"real-{n}", a, _real_outcome(a), real=True) for n, a in REAL]
         + [Case(c.id, c.argv, marks=(pytest.mark.slow,)) for c in random_cases(600, 1, "random-slow")])


# --------------------------------------------------------------------------- fixtures: the files the tokens name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Token -> path: a checkpoint of one epoch, images of every kind, MNIST folders, and hostile paths."""
    from fastcnn.cli import main

    root = tmp_path_factory.mktemp("fuzz-cli-files")
    ckpt = root / "ckpt.npz"
    cwd = os.getcwd()
    try:
        os.chdir(root)
        assert main(["train", "--epochs", "1", "--limit", "64", "--out", str(ckpt)]) == 0
    finally:
        os.chdir(cwd)
    (root / "dir").mkdir()
    (root / "text.txt").write_text("0 1 2\n")
    (root / "empty.npz").write_bytes(b"")
    (root / "a-file").write_bytes(b"x")
    os.mkfifo(root / "fifo")
    (root / "linkfifo").symlink_to(root / "fifo")
    (root / "devnull-like").symlink_to(os.devnull)  # an output here must be refused, not replace the link
    rng = np.random.default_rng(0)
    images = {"images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "images-float": rng.random((2, 1, 28, 28)).astype(np.float32),
              "images-nan": np.full((2, 28, 28), np.nan, np.float32),
              "images-255": np.full((2, 28, 28), 255.0), "images-32": np.zeros((2, 32, 32), np.uint8),
              "images-int": np.zeros((2, 28, 28), np.int64), "images-5d": np.zeros((1, 2, 1, 28, 28), np.uint8)}
    for name, arr in images.items():
        np.save(root / f"{name}.npy", arr)
    make_fake_mnist(root / "mnist-root" / "mnist", n_train=40, n_test=8)
    bad = root / "mnist-bad"
    make_fake_mnist(bad, n_train=10, n_test=4)
    write_idx(bad / "train-labels-idx1-ubyte.gz", np.full(10, 11, np.uint8), gz=True)
    tokens = {"ckpt": ckpt, "dir": root / "dir", "text": root / "text.txt", "empty": root / "empty.npz",
              "filedir": root / "a-file" / "x.npz", "proc": "/proc/fastcnn-fuzz-out.npy",
              "fifo": root / "fifo", "linkfifo": root / "linkfifo", "devzero": "/dev/zero",
              "devnull-like": root / "devnull-like",
              "mnist": root / "mnist-root" / "mnist", "mnist-root": root / "mnist-root", "mnist-bad-labels": bad}
    tokens.update({name: root / f"{name}.npy" for name in images})
    return {"{" + k + "}": str(v) for k, v in tokens.items()}


def _argv(case_, files, work):
    """The case's arguments with every token replaced by its path (the shared files', or ``LOCAL`` in ``work``)."""
    paths = {**files, **{token: os.path.join(work, name) for token, name in LOCAL.items()}}
    out = []
    for a in case_.argv:
        for token, path in paths.items():
            a = a.replace(token, path)
        out.append(a)
    return out


def _snapshot(*folders):
    """Every file under ``folders`` with its size and modification time (folders: only that they are there)."""
    found = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            found.update((os.path.join(dirpath, name), "folder") for name in dirnames)
            for name in filenames:
                st = os.lstat(os.path.join(dirpath, name))
                found[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return found


def _workdir(tmp_path):
    """An empty folder to run in: relative outputs land there."""
    work = tmp_path / "work"
    work.mkdir()
    return work


# --------------------------------------------------------------------------- the property


def check_outcome(case_, status, out, err, before, after):
    """The property of the module docstring; ``status`` is None when the stubbed work was reached."""
    assert "Traceback" not in out + err, err
    assert not [p for p in after if os.path.basename(p).startswith(".fastcnn-")], "a temporary file was left"
    lines = err.strip().splitlines()
    if status is None:
        assert case_.expect != "refused", "accepted arguments that must be refused"
        assert after == before, f"wrote before the work started: {sorted(set(after) - set(before))}"
        return
    assert status in (0, 1, 2), f"exit status {status!r}: {err}"
    if status == 0:
        assert case_.expect != "refused", "accepted arguments that must be refused"
        return
    if case_.real and status == 1 and "fastcnn: warning:" in err and not lines[-1].startswith("fastcnn: error"):
        return  # training diverged: status 1, the last good epoch's checkpoint written
    assert case_.expect != "ok", f"refused a valid argument list: {err}"
    assert lines and lines[-1].startswith("fastcnn: error: "), err
    if not case_.real:
        assert len(lines) == 1, f"more than one line on stderr:\n{err}"
    changed = {p for p in set(after) | set(before) if after.get(p) != before.get(p)}
    assert not changed, f"a refused call wrote {sorted(changed)}"


def _in_process(case_, files, tmp_path, monkeypatch, capsys):
    from fastcnn.cli import main

    if not case_.real:
        install_stubs(monkeypatch.setattr)
    work = _workdir(tmp_path)
    monkeypatch.chdir(work)
    before = _snapshot(work, os.path.dirname(files["{ckpt}"]))
    try:
        status = main(_argv(case_, files, str(work)))
    except SystemExit as exc:
        status = exc.code
    except Reached:
        status = None
    out, err = capsys.readouterr()
    return status, out, err, before, _snapshot(work, os.path.dirname(files["{ckpt}"]))


@pytest.fixture(scope="module")
def child_results(files, tmp_path_factory):
    """The risky cases, run in a child process with the same stubs; ``{case id: (result, workdir)}``."""
    root = tmp_path_factory.mktemp("fuzz-cli-child")
    risky = [c for c in CASES if c.risky]
    calls, work = [], {}
    for i, c in enumerate(risky):
        work[c.id] = root / f"case{i}"
        work[c.id].mkdir()
        calls.append((c.id, "test_fuzz_cli:run_in", [str(work[c.id]), _argv(c, files, str(work[c.id]))], {}))
    snapshot = _snapshot(os.path.dirname(files["{ckpt}"]))
    results = run_cases_in_child(calls, setup="import test_fuzz_cli as t; t.install_stubs(setattr)",
                                 case_timeout=60, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    return results, work, snapshot


@pytest.mark.parametrize("case_", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_cli_arguments(case_, files, tmp_path, monkeypatch, capsys, request):
    if not case_.risky:
        check_outcome(case_, *_in_process(case_, files, tmp_path, monkeypatch, capsys))
        return
    results, work, shared = request.getfixturevalue("child_results")
    result = results[case_.id]
    assert result["status"] in ("exit", "returned", "raised"), f"{result['status']}: {result.get('output')}"
    if result["status"] == "raised":
        assert result["type"] == "Reached", result["traceback"]
    status = {"exit": result.get("code"), "returned": result.get("value"), "raised": None}[result["status"]]
    after = _snapshot(work[case_.id], os.path.dirname(files["{ckpt}"]))
    check_outcome(case_, status, result["stdout"], result["stderr"], shared, after)  # its folder was empty


def test_enough_cases():
    quick = [c for c in CASES if not c.marks]
    assert len(quick) >= 200 and len({c.id for c in CASES}) == len(CASES)
    assert {c.argv[0] for c in quick if c.argv} >= {"train", "evaluate", "predict", "summary", "plot", "bench"}
