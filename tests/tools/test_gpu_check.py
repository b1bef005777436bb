"""tools/gpu_check.py's bookkeeping: the JUnit summary, stages that keep going and fail at the end, the JIT
measurements, and the bench stage run suite by suite in a fake repository, then merged."""

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from deepgemm.bench.suites import SUITES

REPO = Path(__file__).resolve().parents[2]


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


def test_gpu_check_benches_every_suite(gpu_check):
    assert gpu_check.BENCH_SUITES == tuple(SUITES)


# Stands in for `python -m deepgemm.bench` in the fake repo: one JSON per --suite; grouped_masked
# has a wrong result, grouped_decode crashes before writing anything, bf16 has twin ratios.
FAKE_BENCH = """\
import argparse, json, sys
parser = argparse.ArgumentParser()
for flag in ("--suite", "--json", "--num-tests"):
    parser.add_argument(flag)
args = parser.parse_args()
if args.suite == "grouped_decode":
    sys.exit("crashed before writing anything")
grouped = args.suite != "dense"
status = "wrong" if args.suite == "grouped_masked" else "ok"
suite = {
    "name": args.suite,
    "baseline": "cublas_blockwise_loop" if grouped else "deepgemm",
    "faster": "provider" if grouped else "baseline",
    "geomean": {"deepgemm" if grouped else "cublas_blockwise": {"all": {"geomean": 1.25, "n": 4}}},
    "pair_geomean": {"deepgemm/deepgemm_dense": {"all": {"geomean": 0.95, "n": 4}}} if grouped else {},
    "problems": [{"m": 256, "n": 4096, "k": 7168, "num_groups": 4,
                  "results": {"deepgemm": {"status": status, "reason": "calc_diff"}}}],
}
if args.suite == "bf16":
    suite["twin_geomean"] = {"deepgemm": {"NN M>128": {"geomean": 0.97, "n": 6}}}
    suite["twin_worst"] = {"deepgemm": {"NN M>128": 0.94}}
document = {"backend": "cuda", "env": {"device": "fake H200"}, "num_tests": args.num_tests, "suites": [suite]}
with open(args.json, "w") as file:
    json.dump(document, file)
sys.exit(1 if status == "wrong" else 0)
"""

def test_gpu_check_runs_each_bench_suite_apart_and_merges_them(gpu_check, tmp_path, capsys):
    package = gpu_check.REPO / "deepgemm" / "bench"
    package.mkdir(parents=True)
    (gpu_check.REPO / "deepgemm" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_BENCH)
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--stages", "bench", "--num-tests", "2"]) == 1

    merged = json.loads((out / "bench.json").read_text())
    assert [suite["name"] for suite in merged["suites"]] == [
        "dense", "grouped_contiguous", "grouped_masked", "bf16", "bf16_grouped", "matmul_fp8", "wgrad",
        "wgrad_k_grouped", "wonly", "wonly_w8", "cast", "train_step", "tf32", "fp32", "seed", "decode",
        "int8",
    ]  # fmt: skip
    assert merged["num_tests"] == "2" and merged["env"]["device"] == "fake H200"
    bench = json.loads((out / "gpu_check.json").read_text())["stages"]["bench"]
    assert bench["status"] == "failed" and "grouped_masked, grouped_decode" in bench["error"]
    assert bench["detail"]["failed_suites"] == {
        "grouped_masked": "deepgemm.bench exited with 1",
        "grouped_decode": "deepgemm.bench exited with 1 and wrote no JSON",
    }
    assert bench["detail"]["suites"]["grouped_masked"]["not_ok"] == [
        {"shape": [256, 4096, 7168], "num_groups": 4, "provider": "deepgemm", "status": "wrong",
         "reason": "calc_diff"},
    ]  # fmt: skip
    assert "crashed before writing anything" in (out / "bench.log").read_text()
    printed = capsys.readouterr().out
    # "a vs b: r" reads "a runs r times as fast as b", whichever way the suite's ratios point.
    assert "dense: deepgemm vs cublas_blockwise: all 1.25x" in printed
    assert "grouped_contiguous: deepgemm vs cublas_blockwise_loop: all 1.25x" in printed
    assert "grouped_contiguous: deepgemm vs deepgemm_dense: all 0.95x" in printed
    # Twin ratios: the suite's geometric mean per split and its worst shape.
    assert bench["detail"]["suites"]["bf16"]["twin_worst"] == {"deepgemm": {"NN M>128": 0.94}}
    assert bench["detail"]["suites"]["dense"]["twin_geomean"] == {}
    assert "bf16: deepgemm vs its twin problem: NN M>128 0.97x (worst 0.94x)" in printed


def test_gpu_check_benches_only_the_suites_asked_for(gpu_check, tmp_path, capsys):
    package = gpu_check.REPO / "deepgemm" / "bench"
    package.mkdir(parents=True)
    (gpu_check.REPO / "deepgemm" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_BENCH)
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--stages", "bench", "--suites", "bf16, matmul_fp8"]) == 0
    merged = json.loads((out / "bench.json").read_text())
    assert [suite["name"] for suite in merged["suites"]] == ["bf16", "matmul_fp8"]
    assert sorted(path.name for path in out.glob("bench-*.json")) == [
        "bench-bf16.json",
        "bench-matmul_fp8.json",
    ]
    for suites in ("bf16,nope", ","):
        with pytest.raises(SystemExit):
            gpu_check.main(["--stages", "bench", "--suites", suites])
    assert "--suites must name some of" in capsys.readouterr().err


def test_the_sanitize_stage_reports_errors_per_tool(gpu_check, tmp_path, capsys):
    # A stand-in tools/sanitize.py that writes the summary the real one writes, with one racecheck error.
    (gpu_check.REPO / "tools" / "sanitize.py").write_text(textwrap.dedent("""\
        import json, sys
        path = sys.argv[sys.argv.index("--json") + 1]
        tools = [{"tool": t, "errors": int(t == "racecheck"), "cases_wrong": 0,
                  "returncode": int(t == "racecheck"), "seconds": 1.0, "error_lines": []}
                 for t in ("memcheck", "racecheck", "synccheck")]
        summary = {"cases": 28, "cases_wrong_without_sanitizer": 0, "tools": tools, "ok": False}
        json.dump(summary, open(path, "w"))
        sys.exit(1)
        """))
    assert "sanitize" not in gpu_check.DEFAULT_STAGES
    assert gpu_check.main(["--out", str(tmp_path), "--stages", "sanitize"]) == 1
    stage = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]["sanitize"]
    assert stage["status"] == "failed" and stage["detail"]["tools"][1]["errors"] == 1
    printed = capsys.readouterr().out
    assert "memcheck: 0 errors, 0 cases wrong" in printed and "racecheck: 1 errors" in printed
