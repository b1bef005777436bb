"""tools/sanitize.py on the CPU: its cases compute the right thing (on the CPU path), its forced configs
are valid, and it reads the sanitizer's ERROR SUMMARY per tool."""

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sanitize(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    spec = importlib.util.spec_from_file_location("sanitize", REPO / "tools" / "sanitize.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "sanitize", module)  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "DEVICE", "cpu")
    return module


def test_every_family_and_kind_has_cases(sanitize):
    names = [f"{case.family} {case.name}" for case in sanitize.selected_cases(None, None)]
    for kind in ("fp8_1d2d dense", "fp8_1d2d contiguous", "fp8_1d2d offsets", "fp8_1d2d masked",
                 "bf16 nt", "bf16 nn", "bf16 tn", "bf16 tt", "bf16 contiguous", "bf16 masked",
                 "fp8_1d1d dense", "fp8_1d1d k-grouped", "int8 dense", "int8 contiguous", "int8 offsets",
                 "int8 masked", "tf32 nt", "tf32 nn", "tf32 tn", "tf32 tt", "tf32 3xtf32", "wonly w8",
                 "wonly w4", "wonly masked w8", "wonly masked w4", "split_k fp8", "split_k bf16",
                 "cast per_token ", "cast per_block ", "cast per_block_and_transpose",
                 "cast per_token_transposed"):
        assert any(name.startswith(kind) for name in names), kind
    assert set(sanitize.FAMILY_CASES) == {"fp8_1d2d", "bf16", "fp8_1d1d", "int8", "tf32", "wonly", "split_k",
                                          "cast"}
    assert len(names) == len(set(names))  # -k selects by name
    assert [c.name for c in sanitize.selected_cases("bf16", "forced")] == [
        "nn 256x256x256 forced multicast A", "tt 256x256x192 forced multicast B, D in 2 chunks"]


def test_the_forced_configs_are_valid(sanitize):
    from deepgemm.heuristics import FAMILIES, GemmShape
    from deepgemm.heuristics.config import config_errors
    from deepgemm.heuristics.sm90 import make_config

    for family, m, n, k, major, config in sanitize.FORCED_CONFIGS:
        shape = GemmShape(m, n, k, 2, family=FAMILIES[family], b_mn_major=major[1] == "n")
        cfg = make_config(shape, 132, **config)
        assert not config_errors(cfg, shape), (family, m, n, k, config_errors(cfg, shape))
        assert cfg.num_sms >= 2 * cfg.num_tma_multicast  # more than one cluster: the multicast is exercised


def test_the_cases_are_right_on_the_cpu_path(sanitize, capsys, monkeypatch):
    # The forced configs launch kernels directly (GPU only); every other case runs the public op. The
    # cases named for a heuristic choice (split-K, one warpgroup) check it for an H100's 132 SMs.
    monkeypatch.setattr(sanitize, "CHECK_NUM_SMS", 132)
    cases = [case for case in sanitize.selected_cases(None, None) if "forced" not in case.name]
    assert sanitize.run_cases(cases) == 0
    assert capsys.readouterr().out.count("ok    ") == len(cases)


def test_a_case_fails_when_the_heuristic_no_longer_makes_its_choice(sanitize, monkeypatch, capsys):
    monkeypatch.setattr(sanitize, "CHECK_NUM_SMS", 1)  # one SM: nothing to split over
    cases = sanitize.selected_cases("split_k", "fp8 16x1024x7168")
    assert len(cases) == 1 and sanitize.run_cases(cases) == 1
    assert "the heuristic no longer picks split-K on 1 SMs" in capsys.readouterr().out


def test_a_wrong_case_is_counted(sanitize, capsys):
    case = sanitize.Case("x", "wrong", lambda: 0.5)
    broken = sanitize.Case("x", "raises", lambda: 1 / 0)
    assert sanitize.run_cases([case, broken]) == 2
    out = capsys.readouterr().out
    assert "WRONG x wrong: calc_diff 5.00e-01" in out and "ERROR x raises: ZeroDivisionError" in out


def test_run_tool_reads_the_error_summary(sanitize, tmp_path):
    fake = tmp_path / "compute-sanitizer"
    fake.write_text("#!/bin/sh\necho 'ok    fp8 dense'\necho '========= Race reported' >&2\n"
                    "echo '========= ERROR SUMMARY: 3 errors' >&2\nexit 1\n")
    fake.chmod(0o755)
    result = sanitize.run_tool(str(fake), "racecheck", [], tmp_path / "racecheck.log")
    assert result["errors"] == 3 and result["returncode"] == 1 and result["cases_wrong"] == 0
    assert result["error_lines"] == ["========= Race reported", "========= ERROR SUMMARY: 3 errors"]
    assert "ERROR SUMMARY" in (tmp_path / "racecheck.log").read_text()


@pytest.mark.parametrize("summary, errors", [("0 hazards displayed (0 errors, 0 warnings)", 0),
                                             ("3 hazards displayed (1 error, 2 warnings)", 3)])
def test_run_tool_reads_the_racecheck_summary(sanitize, tmp_path, summary, errors):
    # racecheck prints its own summary line, as compute-sanitizer 2025 does on an H100.
    fake = tmp_path / "compute-sanitizer"
    fake.write_text(f"#!/bin/sh\necho 'ok    fp8 dense'\necho '========= RACECHECK SUMMARY: {summary}' >&2\n")
    fake.chmod(0o755)
    assert sanitize.run_tool(str(fake), "racecheck", [], None)["errors"] == errors


def test_each_family_runs_in_its_own_process(sanitize, tmp_path):
    # The fake sanitizer reports 2 errors for the family named "bf16" and none for another.
    fake = tmp_path / "compute-sanitizer"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *'--family bf16'*) n=2;; *) n=0;; esac\n"
                    "echo \"========= ERROR SUMMARY: $n errors\" >&2\n")
    fake.chmod(0o755)
    result = sanitize.run_tool_per_family(str(fake), "synccheck", ["fp8_1d2d", "bf16"], None, tmp_path)
    assert result["families"] == {"fp8_1d2d": 0, "bf16": 2} and result["errors"] == 2
    assert (tmp_path / "synccheck-bf16.log").exists() and (tmp_path / "synccheck-fp8_1d2d.log").exists()


def test_list_needs_no_gpu(sanitize, capsys):
    assert sanitize.main(["--list", "--family", "fp8_1d2d"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "fp8_1d2d: dense 1x8x16"
