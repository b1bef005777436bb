"""The benchmark on the CPU: suites, arithmetic, runner records and JSON, the CLI's CPU path, timers,
and tools/gpu_check.py's bookkeeping."""

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import deepgemm
from deepgemm.bench.cli import main as bench_main
from deepgemm.bench.providers import (
    Provider,
    ProviderUnavailable,
    _blockwise_b_scale_candidates,
    _per_tensor_cast_to_fp8,
)
from deepgemm.bench.report import gbps, geomean, speedups, split_geomeans, tflops, write_json
from deepgemm.bench.runner import run_suite
from deepgemm.bench.suites import DENSE, SUITES, Problem, Split, Suite, fp8_gemm_bytes, parse_shapes
from deepgemm.testing import calc_diff
from deepgemm.testing.bench import _calls_events, bench, bench_cpu, bench_host_overhead, bench_kineto

REPO = Path(__file__).resolve().parent.parent


# ---- suites -------------------------------------------------------------------------------------


def test_dense_suite_is_the_deepseek_v3_table():
    nks = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
    expected = [(m, n, k) for m in (64, 128, 4096) for n, k in nks]
    assert [(p.m, p.n, p.k, p.num_groups) for p in DENSE.problems] == [(*shape, 1) for shape in expected]
    assert len(DENSE.problems) == 18
    assert SUITES["dense"] is DENSE


def test_dense_suite_providers_and_splits():
    assert [p.name for p in DENSE.providers] == [
        "deepgemm",
        "cublas_blockwise",
        "cublas_per_tensor",
        "cublas_bf16",
    ]
    assert DENSE.baseline == "deepgemm"
    sizes = {split.label: sum(split.contains(p) for p in DENSE.problems) for split in DENSE.splits}
    assert sizes == {"M<=128": 12, "M>128": 6}


def test_parse_shapes():
    assert parse_shapes("64,2112,7168; 4096,7168,2048;") == (
        Problem(64, 2112, 7168),
        Problem(4096, 7168, 2048),
    )
    for bad in ("", "64,2112", "64,x,7168", "0,16,16"):
        with pytest.raises(ValueError):
            parse_shapes(bad)


# ---- arithmetic ---------------------------------------------------------------------------------


def test_tflops_and_gbps_on_hand_values():
    problem = Problem(64, 2112, 7168)
    assert problem.flops == 2 * 64 * 2112 * 7168 == 1_937_768_448
    # The anchors' first row: 10.7 us -> 181 TFLOPS.
    assert tflops(problem.flops, 10.7e-6) == pytest.approx(181.1, abs=0.05)
    # FP8 A and B, FP32 scales (A: 64 x 56, B: 17 x 56), BF16 D.
    nbytes = (64 * 7168 + 2112 * 7168) + 4 * (64 * 56 + 17 * 56) + 2 * 64 * 2112
    assert fp8_gemm_bytes(problem) == nbytes == 15_886_048
    assert gbps(nbytes, 10e-6) == pytest.approx(1588.6048)
    # Groups multiply every term; a K tail still gets a whole scale block.
    assert fp8_gemm_bytes(Problem(10, 200, 130, num_groups=3)) == 3 * (
        (10 * 130 + 200 * 130) + 4 * (10 * 2 + 2 * 2) + 2 * 10 * 200
    )


def test_geomean():
    assert geomean([1.0, 4.0]) == pytest.approx(2.0)
    assert geomean([2.08, 1.14, 1.18]) == pytest.approx((2.08 * 1.14 * 1.18) ** (1 / 3))
    assert geomean([]) is None


def _result(status: str, us: float | None) -> dict:
    return {"status": status, "us": us}


def test_speedups_use_only_correct_providers():
    results = {
        "deepgemm": _result("ok", 10.0),
        "fast": _result("ok", 5.0),
        "slow": _result("ok", 20.0),
        "wrong": _result("wrong", 1.0),
        "gone": _result("unavailable", None),
    }
    assert speedups(results, "deepgemm") == {"fast": 0.5, "slow": 2.0}
    assert speedups(results | {"deepgemm": _result("error", None)}, "deepgemm") == {}


def test_split_geomeans():
    ratios = [
        (Problem(64, 1, 1), {"x": 2.0}),
        (Problem(128, 1, 1), {"x": 8.0}),
        (Problem(4096, 1, 1), {"x": 1.5}),
    ]
    splits = (
        Split("small", lambda p: p.m <= 128),
        Split("large", lambda p: p.m > 128),
        Split("none", lambda p: False),
    )
    summary = split_geomeans(ratios, splits, ["x", "y"])
    assert summary["x"] == {
        "small": {"geomean": pytest.approx(4.0), "n": 2},
        "large": {"geomean": pytest.approx(1.5), "n": 1},
        "none": {"geomean": None, "n": 0},
    }
    assert summary["y"]["small"] == {"geomean": None, "n": 0}


# ---- providers (the parts that run without CUDA) ----------------------------------------------


def test_blockwise_b_scales_match_torch_layout_rules():
    # KB a multiple of 4: one layout, sfb.t() itself ([KB, NB], strides (1, KB)).
    sfb = torch.rand(17, 56)
    (scale_b,) = _blockwise_b_scale_candidates(sfb)
    assert scale_b.shape == (56, 17) and scale_b.stride() == (1, 56) and torch.equal(scale_b, sfb.t())
    # KB = 5: padded to 8 for newer torch, unpadded for older; the values are sfb's either way.
    sfb = torch.rand(3, 5)
    padded, plain = _blockwise_b_scale_candidates(sfb)
    assert padded.shape == (8, 3) and padded.stride() == (1, 8)
    assert torch.equal(padded[:5], sfb.t()) and not padded[5:].any()
    assert plain.shape == (5, 3) and plain.stride() == (1, 5)


def test_per_tensor_quantisation_is_within_fp8_accuracy():
    torch.manual_seed(0)
    a, b = torch.randn(64, 1024, dtype=torch.bfloat16), torch.randn(256, 1024, dtype=torch.bfloat16)
    (qa, sa), (qb, sb) = _per_tensor_cast_to_fp8(a), _per_tensor_cast_to_fp8(b)
    assert qa.dtype == torch.float8_e4m3fn and sa.numel() == 1 and sa.dtype == torch.float32
    assert qa.float().abs().max() == 448
    product = (qa.float() * sa) @ (qb.float() * sb).t()
    assert calc_diff(product, a.float() @ b.float().t()) < 1e-3


# ---- runner records and the JSON file -----------------------------------------------------------


class _StubInputs:
    """Inputs whose references are a fixed matrix, to drive the runner without any GEMM."""

    reference_kinds = ("fp8", "bf16")

    def __init__(self) -> None:
        self.value = torch.arange(1.0, 13.0).reshape(3, 4)

    def reference(self, kind: str) -> torch.Tensor:
        return self.value if kind == "fp8" else self.value + 0.5


def _stub_provider(name: str, output: str) -> Provider:
    def prepare(inputs: _StubInputs):
        if output == "unavailable":
            raise ProviderUnavailable("not here")
        if output == "error":
            raise RuntimeError("boom")
        return lambda: inputs.value if output == "right" else -inputs.value

    return Provider(name, f"calls {name}", prepare, reference="fp8", max_diff=1e-5)


def test_run_suite_records_and_json_round_trip(tmp_path):
    suite = Suite(
        name="stub",
        description="stub suite",
        problems=(Problem(64, 4, 3), Problem(4096, 4, 3)),
        make_inputs=lambda problem, device, seed: _StubInputs(),
        providers=tuple(_stub_provider(name, name) for name in ("right", "wrong", "unavailable", "error")),
        bytes_moved=lambda problem: 1000,
        splits=(Split("M<=128", lambda p: p.m <= 128), Split("M>128", lambda p: p.m > 128)),
    )
    seen = []
    record = run_suite(
        suite,
        suite.providers,
        torch.device("cpu"),
        0,
        timer=lambda fn: 2e-6,
        on_problem=lambda p, r: seen.append(p),
    )
    assert seen == list(suite.problems)
    assert record["baseline"] == "right"
    assert record["providers"]["wrong"] == "calls wrong"
    first = record["problems"][0]
    assert {key: first[key] for key in ("m", "n", "k", "num_groups", "flops", "bytes")} == {
        "m": 64, "n": 4, "k": 3, "num_groups": 1, "flops": 2 * 64 * 4 * 3, "bytes": 1000,
    }  # fmt: skip
    right, wrong, unavailable, error = (
        first["results"][name] for name in ("right", "wrong", "unavailable", "error")
    )
    assert right["status"] == "ok" and right["correct"] and right["diffs"]["fp8"] == 0.0
    assert right["us"] == pytest.approx(2.0) and right["tflops"] == pytest.approx(1536 / 2e-6 / 1e12)
    assert right["gbps"] == pytest.approx(1000 / 2e-6 / 1e9)
    assert (
        wrong["status"] == "wrong"
        and wrong["correct"] is False
        and wrong["diffs"]["fp8"] == pytest.approx(2.0)
    )
    assert wrong["us"] == pytest.approx(2.0)  # still timed, but out of the ratios
    assert unavailable["status"] == "unavailable" and unavailable["reason"] == "not here"
    assert unavailable["us"] is None and unavailable["diffs"] == {}
    assert error["status"] == "error" and error["reason"] == "RuntimeError: boom"
    assert first["speedup"] == {} and first["deepgemm_config"] is None
    assert record["geomean"]["wrong"] == {
        "M<=128": {"geomean": None, "n": 0},
        "M>128": {"geomean": None, "n": 0},
    }

    path = write_json(tmp_path / "deep" / "bench.json", {"schema": "x", "suites": [record]})
    assert json.loads(path.read_text()) == json.loads(json.dumps({"schema": "x", "suites": [record]}))


# ---- the CLI --------------------------------------------------------------------------------------


def test_cli_runs_the_cpu_path(tmp_path):
    if not hasattr(deepgemm, "fp8_gemm_nt"):
        pytest.skip("deepgemm.fp8_gemm_nt is not exported yet")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepgemm.bench",
            "--cpu",
            "--shapes",
            "64,256,512",
            "--num-tests",
            "1",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CPU path" in proc.stdout
    document = json.loads(out.read_text())
    assert document["schema"] == "deepgemm.bench/1" and document["backend"] == "cpu"
    assert document["env"]["device"] == "cpu" and document["method"]["timer"] == "cpu_wallclock"
    (suite,) = document["suites"]
    (problem,) = suite["problems"]
    assert (problem["m"], problem["n"], problem["k"]) == (64, 256, 512)
    result = problem["results"]["deepgemm"]
    assert result["status"] == "ok" and result["us"] > 0
    assert result["diffs"]["fp8"] < 1e-5 and result["diffs"]["bf16"] < 1e-3


def test_cli_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--help"])
    assert exit_info.value.code == 0 and "--host-overhead" in capsys.readouterr().out
    for argv in (["--cpu", "--host-overhead"], ["--cpu", "--shapes", "1,2"], ["--providers", "nope"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_main(argv)
        assert exit_info.value.code == 2


# ---- timers ---------------------------------------------------------------------------------------


def test_gpu_timers_raise_a_clear_error_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for timer in (
        lambda: bench_kineto(lambda: None, None),
        lambda: bench(lambda: None),
        lambda: bench_host_overhead(lambda: None),
    ):
        with pytest.raises(RuntimeError, match="needs a CUDA device"):
            timer()


def test_bench_cpu_counts_calls():
    calls = []
    seconds = bench_cpu(lambda: calls.append(1), num_tests=4, num_warmups=2)
    assert len(calls) == 6 and 0 <= seconds < 1


def test_flush_kernels_are_split_off_by_position():
    def events(*names):
        return [SimpleNamespace(name=name) for name in names]

    # fn launches a fill kernel of its own: it must count, the flushes must not.
    trace = events("fill", "gemm", "fill", "fill", "gemm", "fill")
    assert [e.name for e in _calls_events(trace, 2, flushed=True)] == ["gemm", "fill", "gemm", "fill"]
    assert len(_calls_events(trace, 2, flushed=False)) == 6
    for bad in (events("fill", "gemm", "fill"), events("fill", "fill"), events("fill", "a", "b", "c")):
        with pytest.raises(RuntimeError, match="cannot split"):
            _calls_events(bad, 2, flushed=True)


# ---- tools/gpu_check.py ---------------------------------------------------------------------------


@pytest.fixture
def gpu_check(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fake_repo = tmp_path / "repo"
    (fake_repo / "tools").mkdir(parents=True)
    monkeypatch.setattr(module, "REPO", fake_repo)
    # The environment probe starts a Python that imports torch: slow, and not what is tested here.
    monkeypatch.setattr(module, "environment", lambda: {"python": "probe skipped"})
    return module


def test_parse_junit(gpu_check, tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        textwrap.dedent(
            """\
            <testsuites><testsuite name="pytest" tests="4">
              <testcase classname="tests.test_a" name="test_ok" />
              <testcase classname="tests.test_a" name="test_bad[64]">
                <failure message="assert 1 == 2&#10;more">x</failure>
              </testcase>
              <testcase classname="tests.test_b" name="test_broken">
                <error message="fixture">x</error>
              </testcase>
              <testcase classname="tests.test_b" name="test_skip"><skipped message="no gpu" /></testcase>
            </testsuite></testsuites>
            """
        )
    )
    detail = gpu_check.parse_junit(report)
    assert {k: detail[k] for k in ("total", "passed", "failed", "errors", "skipped")} == {
        "total": 4, "passed": 1, "failed": 1, "errors": 1, "skipped": 1,
    }  # fmt: skip
    assert detail["failures"] == [
        {"test": "tests.test_a::test_bad[64]", "kind": "failure", "message": "assert 1 == 2"},
        {"test": "tests.test_b::test_broken", "kind": "error", "message": "fixture"},
    ]


def _write_measure_jit(gpu_check, body: str) -> None:
    (gpu_check.REPO / "tools" / "measure_jit.py").write_text(textwrap.dedent(body))


def test_gpu_check_records_the_jit_measurements(gpu_check, tmp_path, capsys):
    _write_measure_jit(
        gpu_check,
        """\
        import json
        print("compiling...")
        print(json.dumps({"cold_compile_s": 1.5, "warm_load_ms": 2.0}))
        """,
    )
    assert gpu_check.main(["--out", str(tmp_path / "out"), "--stages", "jit"]) == 0
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert summary["ok"] is True and summary["finished"]
    jit = summary["stages"]["jit"]
    assert jit["status"] == "ok" and jit["detail"]["measurements"] == {
        "cold_compile_s": 1.5,
        "warm_load_ms": 2.0,
    }
    assert "overall: OK" in capsys.readouterr().out


def test_gpu_check_keeps_going_and_fails_at_the_end(gpu_check, tmp_path, monkeypatch):
    _write_measure_jit(gpu_check, "raise SystemExit('no GPU here')\n")
    ran = []

    def broken_stage(out, args):
        ran.append("bench")
        raise KeyError("bug")

    monkeypatch.setitem(gpu_check.STAGE_FUNCTIONS, "bench", broken_stage)
    assert gpu_check.main(["--out", str(tmp_path), "--stages", "bench,jit"]) == 1
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert ran == ["bench"] and summary["ok"] is False
    assert summary["stages"]["bench"] | {"seconds": 0} == {
        "status": "failed", "error": "KeyError: 'bug'", "detail": None, "log": "bench.log", "seconds": 0,
    }  # fmt: skip
    jit = summary["stages"]["jit"]
    assert jit["status"] == "failed" and jit["error"] == "measure_jit.py exited with 1"
    assert jit["log_tail"][-1] == "no GPU here"


def test_gpu_check_skips_a_missing_jit_script_and_rejects_unknown_stages(gpu_check, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path), "--stages", "jit"]) == 0
    assert json.loads((tmp_path / "gpu_check.json").read_text())["stages"]["jit"]["status"] == "skipped"
    with pytest.raises(SystemExit):
        gpu_check.main(["--stages", "tests,nope"])
