"""The benchmark's CLI: runs on the CPU path (in a subprocess and in-process), help and usage errors, the
timers it builds (rest before each measurement, from-rest bursts) and its --rest/--rounds options."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import deepgemm
from deepgemm.bench import cli as bench_cli
from deepgemm.bench.cli import build_parser
from deepgemm.bench.cli import main as bench_main
from deepgemm.bench.report import table_header

from .support import requires_grouped_ops

REPO = Path(__file__).resolve().parents[2]


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
    assert document["method"]["rounds"] == 1  # the CPU path times each problem once
    (suite,) = document["suites"]
    (problem,) = suite["problems"]
    assert (problem["m"], problem["n"], problem["k"]) == (64, 256, 512)
    result = problem["results"]["deepgemm"]
    assert result["status"] == "ok" and result["us"] > 0
    assert result["diffs"]["fp8"] < 1e-5 and result["diffs"]["bf16"] < 1e-3


@requires_grouped_ops
def test_cli_runs_a_grouped_suite_on_the_cpu_path(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--cpu", "--suite", "grouped_contiguous", "--num-tests", "1", "--json", str(out)]
    assert bench_main(argv) == 0
    printed = capsys.readouterr().out
    assert "t_baseline / t_provider" in printed and "deepgemm/deepgemm_dense speed:" in printed
    (suite,) = json.loads(out.read_text())["suites"]
    assert suite["name"] == "cpu_path_grouped_contiguous" and suite["baseline"] == "cublas_blockwise_loop"
    assert list(suite["providers"]) == ["deepgemm", "deepgemm_offsets", "deepgemm_dense"]
    (problem,) = suite["problems"]
    assert problem["layout"] == "contiguous" and problem["num_groups"] == 3
    assert {result["status"] for result in problem["results"].values()} == {"ok"}
    assert set(problem["pair_speedup"]) == {"deepgemm/deepgemm_dense"}


def test_cli_runs_the_bf16_suite_on_the_cpu_path(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_main(["--cpu", "--suite", "bf16", "--num-tests", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "twin speed = t_twin / t_problem" in printed
    assert table_header("dense", show_major=True) in printed
    assert any(line.split()[:2] == ["nn/nt", "speed:"] for line in printed.splitlines())
    assert "speed relative to the twin (t_twin / t_problem), geometric mean and worst shape:" in printed
    (suite,) = json.loads(out.read_text())["suites"]
    assert suite["name"] == "cpu_path_bf16" and suite["twin_definition"]
    assert [problem["major"] for problem in suite["problems"]] == ["nt", "nt", "nn", "tn", "tt"]
    assert set(suite["twin_worst"]["deepgemm"]) == {"NN M>128", "TN M>128", "TT M>128"}


def test_cli_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--help"])
    assert exit_info.value.code == 0 and "--host-overhead" in capsys.readouterr().out
    for argv in (["--cpu", "--host-overhead"], ["--cpu", "--shapes", "1,2"], ["--providers", "nope"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_main(argv)
        assert exit_info.value.code == 2


def test_gpu_timer_rests_before_each_measurement(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: events.append("sync"))
    monkeypatch.setattr(bench_cli.time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    monkeypatch.setattr(
        bench_cli, "bench_kineto", lambda fn, names, num_tests: events.append(("time", num_tests)) or 1.0
    )
    timer = bench_cli.make_timer(True, "kineto", 7, rest_s=0.25)
    assert timer(lambda: None) == 1.0 and timer(lambda: None) == 1.0
    assert events == ["sync", ("sleep", 0.25), ("time", 7)] * 2
    events.clear()
    bench_cli.make_timer(True, "kineto", 7, rest_s=0)(lambda: None)
    assert events == [("time", 7)]


def test_from_rest_timer_rests_then_times_a_burst(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: events.append("sync"))
    monkeypatch.setattr(bench_cli.time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    monkeypatch.setattr(
        bench_cli,
        "bench_kineto_burst",
        lambda fn, num_tests, num_warmups: events.append(("burst", num_tests, num_warmups)) or 2.0,
    )
    monkeypatch.setattr(
        bench_cli,
        "bench",
        lambda fn, num_tests, num_warmups: events.append(("events", num_tests, num_warmups)) or 3.0,
    )
    assert bench_cli.make_from_rest_timer(True, "kineto", 20, 0.5)(lambda: None) == 2.0
    assert bench_cli.make_from_rest_timer(True, "events", 20, 0.5)(lambda: None) == 3.0
    assert events == ["sync", ("sleep", 0.5), ("burst", 20, 1), "sync", ("sleep", 0.5), ("events", 20, 1)]
    # Off the GPU, without a rest (not from rest), or with 0 calls: none.
    for args in ((False, "kineto", 20, 0.5), (True, "kineto", 20, 0.0), (True, "kineto", 0, 0.5)):
        assert bench_cli.make_from_rest_timer(*args) is None
    assert build_parser().parse_args([]).from_rest_calls == bench_cli.DEFAULT_FROM_REST_CALLS == 20
    assert build_parser().parse_args(["--from-rest-calls", "0"]).from_rest_calls == 0
    for bad in ("-1", "many"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--from-rest-calls", bad])


def test_rest_must_be_a_non_negative_number():
    assert build_parser().parse_args([]).rest == bench_cli.DEFAULT_REST_S
    assert build_parser().parse_args(["--rest", "0"]).rest == 0
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--rest", bad])


def test_rounds_default_and_must_be_positive():
    assert build_parser().parse_args([]).rounds == bench_cli.DEFAULT_ROUNDS == 3
    assert build_parser().parse_args(["--rounds", "1"]).rounds == 1
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--rounds", bad])
