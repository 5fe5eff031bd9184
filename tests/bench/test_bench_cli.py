"""Tests for ``fastcnn bench`` and fastcnn.bench: tiny shapes, one repeat, no real load."""

import functools
import importlib.util
import json
import os

import pytest

from fastcnn import bench
from fastcnn.bench import ConvShape, parse_shape
from helpers import assert_one_line_error, run_main

TINY = "8x2x8x8:4k3s1p1"


@pytest.fixture(autouse=True)
def _quick(monkeypatch, restore_num_threads):
    """Keep the benchmarks light: a small sgemm for the peak, no pauses; restore the thread count."""
    peak = functools.partial(bench.measure_peak_gflops, n=256, settle=0)
    original = bench.bench_conv
    quick = lambda *a, **k: original(*a, **{**k, "settle": 0, "min_sample": 0})  # noqa: E731
    for module in (bench, bench.conv):  # the package's names and the ones run_conv_suite calls
        monkeypatch.setattr(module, "measure_peak_gflops", peak)
        monkeypatch.setattr(module, "bench_conv", quick)


# --------------------------------------------------------------------------- shape parser


@pytest.mark.parametrize("text,expected", [
    ("64x3x32x32:32k3s1p1", ConvShape(64, 3, 32, 32, 32, 3, 1, 1)),
    ("32x32x32x32:64k3s2p1", ConvShape(32, 32, 32, 32, 64, 3, 2, 1)),
    ("8x2x8x8:4k3", ConvShape(8, 2, 8, 8, 4, 3, 1, 0)),  # stride 1, padding 0 by default
    ("8x2x8x8:4k3p2", ConvShape(8, 2, 8, 8, 4, 3, 1, 2)),
    (" 1x1x5x7:2K5S2 ", ConvShape(1, 1, 5, 7, 2, 5, 2, 0)),
])
def test_parse_shape(text, expected):
    shape = parse_shape(text)
    assert shape == expected
    assert parse_shape(str(shape)) == shape


def test_parse_shape_geometry():
    s = parse_shape("32x32x32x32:64k3s2p1")
    assert (s.p, s.q) == (16, 16)
    assert s.flops == 2 * 32 * 64 * 32 * 3 * 3 * 16 * 16


@pytest.mark.parametrize("text,fragment", [
    ("64x3x32x32", "expected NxCxHxW:KkR"),
    ("64x3x32:32k3", "expected NxCxHxW:KkR"),
    ("64x3x32x32:32k3s1p1x", "expected NxCxHxW:KkR"),
    ("64x3x32x32:32k-3", "expected NxCxHxW:KkR"),
    ("0x3x32x32:32k3", "must be positive"),
    ("8x2x8x8:4k3s0", "must be positive"),
    ("8x2x4x4:4k7p1", "larger than the padded input"),
])
def test_parse_shape_rejects(text, fragment):
    with pytest.raises(ValueError, match="bad shape") as info:
        parse_shape(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_conv_suite():
    assert len(bench.CONV_SUITE) == 6
    assert bench.CONV_SUITE[0] == ConvShape(64, 1, 28, 28, 6, 5, 1, 2)
    assert bench.CONV_SUITE[-1] == ConvShape(32, 32, 32, 32, 64, 3, 2, 1)
    for s in bench.CONV_SUITE:
        assert parse_shape(str(s)) == s


# --------------------------------------------------------------------------- bench conv


def test_bench_conv_table_and_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    status, out, err = run_main(
        ["bench", "conv", "--shapes", TINY, "--repeat", "1", "--threads", "1", "--json", str(path)], capsys
    )
    assert status == 0, err
    assert "Traceback" not in out + err
    assert TINY in out
    for word in ("direct", "im2col", "GF/s", "bwd-d*", "DERIVED", "Winners", "plan", "computed", "traced",
                 "vector width: LLVM host CPU", "float32 lanes", "fastcnn micro-kernels"):
        assert word in out, word
    data = json.loads(path.read_text())
    assert {"benchmark", "machine", "peak", "repeat", "threads", "shapes"} <= set(data)
    assert data["benchmark"] == "conv" and data["threads"] == 1
    assert {"cpu_model", "cpu_count", "threads", "numpy", "numba", "torch", "vector"} <= set(data["machine"])
    vector_keys = {"llvm_cpu", "avx2", "fma", "avx512f", "float32_lanes", "microkernel_bits", "microkernel_lanes"}
    assert vector_keys <= set(data["machine"]["vector"])
    assert data["peak"]["gflops"] > 0 and data["peak"]["samples_s"]
    (result,) = data["shapes"]
    assert result["shape"] == TINY
    assert result["flops_per_pass"] == parse_shape(TINY).flops
    algos = result["algorithms"]
    assert {"direct", "im2col"} <= set(algos)
    for name, entry in algos.items():
        assert {"samples_s", "median_s", "gflops", "peak_fraction"} <= set(entry)
        assert set(entry["samples_s"]) == {"forward", "backward_weight", "backward"}
        assert all(len(v) == 1 for v in entry["samples_s"].values())
        assert {"forward", "backward_weight", "backward", "backward_data", "forward_backward"} <= set(
            entry["median_s"])
        assert entry["median_s"]["forward"] > 0
        if name in ("direct", "im2col"):
            assert set(entry["workspace_bytes"]) == {"forward", "backward_weight", "backward"}
            assert set(entry["traced_extra_bytes"]) == {"forward", "backward_weight", "backward"}
            assert set(entry["plan"]) == {"forward", "weight_grad", "input_grad"}
    assert set(result["winner"]) == {"forward", "backward", "forward_backward"}
    assert result["winner"]["forward_backward"] in algos
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "torch" not in algos
    else:
        assert "torch" in algos and "vs_torch" in algos["direct"]


def test_vector_info_reads_llvm():
    import llvmlite.binding as llvm

    from fastcnn import config
    from fastcnn.bench.machine import vector_info, vector_text

    v = vector_info()
    assert v["llvm_cpu"] == llvm.get_host_cpu_name()
    features = llvm.get_host_cpu_features()
    for name in ("avx2", "fma", "avx512f", "avx512vl"):
        assert v[name] == (bool(features[name]) if name in features else None)
    assert v["float32_lanes"] == (16 if v["avx512f"] else 8 if v["avx2"] else 4)
    bits = getattr(config, "VECTOR_BITS", None)
    assert v["microkernel_bits"] == bits and v["microkernel_lanes"] == (bits // 32 if bits else None)
    text = vector_text(v)
    assert text.startswith("vector width: LLVM host CPU ") and v["llvm_cpu"] in text and "\n" not in text
    forced = vector_text({**v, "microkernel_bits": 256, "microkernel_lanes": 8, "vector_bits_setting": "256",
                          "numba_cpu_name": "haswell"})
    assert "micro-kernels: 8 float32 lanes (256-bit), FASTCNN_VECTOR_BITS=256" in forced
    assert "Numba forced to haswell" in forced


def test_compared_algorithms_follow_the_kernels():
    """direct and im2col always; winograd and winograd4 when the kernels offer them and they apply (3x3, stride 1)."""
    from fastcnn.kernels import CONV_ALGORITHMS

    offered = tuple(a for a in ("winograd", "winograd4") if a in CONV_ALGORITHMS)
    assert bench.COMPARED_ALGORITHMS == ("direct", "winograd", "winograd4", "im2col")
    assert bench.compared_algorithms(TINY) == ("direct",) + offered + ("im2col",)
    assert bench.compared_algorithms("8x2x9x9:4k3s2p1") == ("direct", "im2col")
    assert bench.compared_algorithms(parse_shape("8x2x8x8:4k5")) == ("direct", "im2col")


def test_bench_conv_adds_a_row_per_applicable_extra_algorithm(monkeypatch):
    """An extra named algorithm gets timing, plan and memory rows where it applies, and none elsewhere
    (matmul_1x1 stands in for winograd: it applies to 1x1 kernels only)."""
    monkeypatch.setattr(bench.conv, "COMPARED_ALGORITHMS", ("direct", "matmul_1x1", "im2col"))
    suite = bench.run_conv_suite((parse_shape("8x4x6x6:6k1"), parse_shape("8x2x9x9:4k3s2p1")), repeat=1,
                                 threads=1)
    one, three = suite["shapes"]
    ours = [a for a in one["algorithms"] if a != "torch"]
    assert ours == ["direct", "matmul_1x1", "im2col"]
    assert [a for a in three["algorithms"] if a != "torch"] == ["direct", "im2col"]
    entry = one["algorithms"]["matmul_1x1"]
    assert set(entry["plan"].values()) == {"matmul_1x1"}
    assert set(entry["workspace_bytes"]) == set(entry["traced_extra_bytes"]) == {"forward", "backward_weight",
                                                                                 "backward"}
    assert entry["gflops"]["forward"] == pytest.approx(one["flops_per_pass"] / entry["median_s"]["forward"] / 1e9)
    text = bench.format_conv(suite)
    assert "  matmul_1x1" in text and "8x4x6x6:6k1s1p0  matmul_1x1  matmul_1x1" in text
    assert "direct-equivalent" in text and "matmul_1x1 included" in text


def test_bench_conv_output_unchanged_without_extra_algorithms():
    suite = bench.run_conv_suite((parse_shape("8x2x9x9:4k3s2p1"),), repeat=1, threads=1)
    assert [a for a in suite["shapes"][0]["algorithms"] if a != "torch"] == ["direct", "im2col"]
    assert "direct-equivalent" not in bench.format_conv(suite)


@pytest.mark.parametrize("argv,fragments", [
    (["--shapes", "64x3x32"], ("--shapes", "bad shape '64x3x32'")),
    (["--shapes", TINY, "8x2x4x4:4k9"], ("larger than the padded input",)),
    (["--repeat", "0"], ("--repeat",)),
    (["--threads", "0"], ("--threads",)),
    (["--threads", "100000"], ("--threads",)),
])
def test_bench_conv_bad_arguments(argv, fragments, capsys):
    status, out, err = run_main(["bench", "conv"] + argv, capsys)
    assert_one_line_error(status, err, 2, *fragments)
    assert out == ""


def test_bench_conv_json_folder_missing(tmp_path, capsys):
    status, out, err = run_main(
        ["bench", "conv", "--shapes", TINY, "--json", str(tmp_path / "nowhere" / "x.json")], capsys
    )
    assert_one_line_error(status, err, 2, "--json", "does not exist")


def test_bench_needs_a_benchmark(capsys):
    status, out, err = run_main(["bench"], capsys)
    assert_one_line_error(status, err, 2)


def test_bench_conv_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    status, out, err = run_main(
        ["bench", "conv", "--shapes", TINY, "8x3x9x9:4k3s2p1", "--repeat", "1", "--plot", str(path)], capsys
    )
    assert status == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_bench_conv_plot_without_matplotlib(tmp_path, monkeypatch, capsys):
    def missing():
        raise ImportError("plotting needs matplotlib: pip install 'fastcnn[plot]'")

    monkeypatch.setattr(bench, "require_matplotlib", missing)
    called = []
    monkeypatch.setattr(bench, "run_conv_suite", lambda *a, **k: called.append(1))
    status, out, err = run_main(["bench", "conv", "--shapes", TINY, "--plot", str(tmp_path / "c.png")], capsys)
    assert_one_line_error(status, err, 1, "pip install 'fastcnn[plot]'")
    assert not called  # refused before measuring anything


def test_workspace_model_matches_tracemalloc():
    """The computed numpy workspace is what tracemalloc sees (every path of the direct algorithm).

    The slack (64 KiB) covers the Python objects (array headers, Numba's
    dispatch) that tracemalloc also counts; the shapes' workspaces are larger.
    conv_workspace_bytes reads the convolution's plan, so a failure here means
    the kernels allocate something their plan does not list: update the
    buffers in fastcnn.kernels.conv_plan to match.
    """
    for text in ("16x8x16x16:12k3s1p1", "4x3x8x8:5k3s2p1", "12x6x20x20:8k5s2p0", "6x5x9x9:20k3s2p1", "3x24x12x10:32k3s1p1",
                 "9x6x10x10:16k5s1p0", "10x20x8x8:6k3s1p1",
                 "4x3x8x8:5k1s1p0", "4x3x5x5:6k5s1p0", "4x3x3x3:6k5s1p1"):  # 1x1 and whole-input matmuls
        result = bench.bench_conv(text, repeat=1, threads=1, algorithms=("direct", "im2col"))
        for name, entry in result["algorithms"].items():
            for op, computed in entry["workspace_bytes"].items():
                traced = entry["traced_extra_bytes"][op]
                assert abs(traced - computed["numpy"]) <= 65536 + 0.02 * computed["numpy"], (
                    text, name, op, traced, computed)


# --------------------------------------------------------------------------- bench train / startup


def test_bench_train_small(tmp_path, capsys):
    path = tmp_path / "train.json"
    status, out, err = run_main(
        ["bench", "train", "--batches", "2", "--repeat", "1", "--threads", "1", "--json", str(path)], capsys
    )
    assert status == 0, err
    assert "images/s" in out and "fastcnn" in out
    data = json.loads(path.read_text())
    assert data["images"] == 128 and data["threads"] == 1
    assert data["frameworks"]["fastcnn"]["images_per_s"] > 0
    assert len(data["frameworks"]["fastcnn"]["samples_s"]) == 1
    if "torch" in data["frameworks"]:
        assert data["ratio"] > 0
    else:
        assert data["ratio"] is None


def test_bench_startup_runs():
    result = bench.bench_startup(repeat=1, cold=False, torch=False)
    m = result["fastcnn"]["median"]
    assert m["wall_s"] > m["import_s"] > 0 and m["step_s"] > 0
    assert "torch" not in result and "fastcnn_cold" not in result
    assert "fastcnn (warm Numba cache)" in bench.format_startup(result)


def test_bench_models_help_and_bad_arguments(capsys):
    status, out, err = run_main(["bench", "models", "--help"], capsys)
    assert status == 0 and "resnet_small" in out
    assert "--no-inference" in out and "--models" in out and "lenet5" in out
    status, out, err = run_main(["bench", "models", "--repeat", "0"], capsys)
    assert_one_line_error(status, err, 2, "--repeat")


def _has_torch():
    return importlib.util.find_spec("torch") is not None


def test_bench_models_inference():
    """Eval-mode throughput and batch-1 latency rows: every key, positive numbers, both tables."""
    result = bench.bench_models(threads=1, batch=8, repeat=1, models=("lenet5", "resnet_small"), settle=0,
                                target=0, inference_batch=8)
    assert result["inference_batch"] == 8 and result["input_shape"] is None
    frameworks = {"fastcnn", "torch"} if _has_torch() else {"fastcnn"}
    for name, shape in (("lenet5", [1, 28, 28]), ("resnet_small", [3, 32, 32])):
        entry = result["models"][name]
        assert list(entry["input_shape"]) == shape
        assert set(entry["frameworks"]) == frameworks
        thr, lat = entry["inference"], entry["latency"]
        assert set(thr["frameworks"]) == set(lat["frameworks"]) == frameworks
        for fw in frameworks:
            e = thr["frameworks"][fw]
            assert e["median_s"] > 0 and e["ms_per_batch"] > 0 and e["images_per_s"] > 0
            assert len(e["samples_s"]) == 1 and e["calls"] >= 1
            e = lat["frameworks"][fw]
            assert e["median_us"] > 0 and len(e["samples_us"]) == 1 and e["calls"] >= 1
        if "torch" in frameworks:
            assert thr["ratio"] > 0 and lat["ratio"] > 0
        else:
            assert thr["ratio"] is None and lat["ratio"] is None
    text = bench.format_models_table(result)
    for word in ("forward+backward", "inference", "eval mode", "batch-1 us", "1x28x28 (lenet5)", "lenet5"):
        assert word in text, word


def test_bench_models_cli_no_inference(tmp_path, monkeypatch, capsys):
    original = bench.bench_models
    seen = {}

    def quick(*a, **k):
        seen.update(k)
        return original(*a, **{**k, "settle": 0, "target": 0, "batch": 4})

    monkeypatch.setattr(bench, "bench_models", quick)
    path = tmp_path / "models.json"
    status, out, err = run_main(["bench", "models", "--models", "lenet5", "--repeat", "1", "--threads", "1",
                                 "--no-inference", "--json", str(path)], capsys)
    assert status == 0, err
    assert seen["models"] == ("lenet5",) and seen["inference"] is False
    assert "lenet5" in out and "ms/batch" in out and "inference" not in out
    data = json.loads(path.read_text())
    assert data["inference_batch"] is None and data["input_shape"] == [1, 28, 28]
    assert "inference" not in data["models"]["lenet5"] and "latency" not in data["models"]["lenet5"]
    assert data["models"]["lenet5"]["frameworks"]["fastcnn"]["median_s"] > 0


def test_bench_models_rejects_unknown_model(capsys):
    status, out, err = run_main(["bench", "models", "--models", "alexnet"], capsys)
    assert_one_line_error(status, err, 2, "--models", "alexnet")


# --------------------------------------------------------------------------- busy machines and noise (issue 12)


def test_busy_cores_reads_the_machine():
    busy = bench.busy_cores(0.05)
    if busy is None:
        pytest.skip("no /proc/stat here")
    assert 0 <= busy <= (os.cpu_count() or 1) + 1e-9


@pytest.mark.parametrize("busy,warned", [(1.2, True), (0.1, False), pytest.param(None, False, marks=pytest.mark.slow)])
def test_bench_warns_when_the_machine_is_busy(monkeypatch, capsys, busy, warned):
    """A warning on a busy machine, none on a quiet one (or, -m slow, where the load cannot be read)."""
    monkeypatch.setattr(bench, "busy_cores", lambda interval=0.3: busy)
    status, out, err = run_main(["bench", "conv", "--shapes", TINY, "--repeat", "1", "--threads", "1"], capsys)
    assert status == 0, err
    assert ("the machine is busy" in err) == warned
    if warned:
        assert "1.2 cores" in err and "unreliable" in err


@pytest.mark.parametrize("argv", [["conv", "--threads", "100000"], ["train", "--threads", "0"],
                                  ["models", "--json", "/nowhere/x.json"], ["startup", "--json", "/nowhere/x.json"]])
def test_a_refused_call_on_a_busy_machine_prints_only_its_error(monkeypatch, capsys, argv):
    monkeypatch.setattr(bench, "busy_cores", lambda interval=0.3: 1.5)
    status, out, err = run_main(["bench"] + argv, capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "busy" not in err, err


def test_a_negative_derived_input_gradient_time_is_unknown_not_negative(capsys):
    """bench conv printed -66.6 ms under load: backward faster than its weight-only part, by noise."""
    from fastcnn.bench import conv as conv_bench

    samples = {"forward": [0.010], "backward_weight": [0.030], "backward": [0.020]}
    entry = conv_bench._algorithm_entry(parse_shape(TINY), samples, {op: 1 for op in samples}, 100.0)
    assert entry["median_s"]["backward_data"] is None and entry["gflops"]["backward_data"] is None
    samples["backward"] = [0.050]
    entry = conv_bench._algorithm_entry(parse_shape(TINY), samples, {op: 1 for op in samples}, 100.0)
    assert entry["median_s"]["backward_data"] > 0
