"""The benchmark's measuring loop with stub providers: the records it writes and their JSON, twins,
alternating rounds with the median, timing from rest, and failures in a later round."""

import dataclasses
import json

import pytest
import torch

from deepgemm.bench import runner
from deepgemm.bench.providers import Provider, ProviderUnavailable
from deepgemm.bench.report import write_json
from deepgemm.bench.runner import run_suite
from deepgemm.bench.suites import DENSE, Problem, Split, Suite, nt_twin

from .support import CPU


class _StubInputs:
    """Inputs whose references are a fixed matrix, to drive the runner without any GEMM."""

    reference_kinds = ("fp8", "bf16")

    def __init__(self) -> None:
        self.value = torch.arange(1.0, 13.0).reshape(3, 4)

    def reference(self, kind: str) -> torch.Tensor:
        return self.value if kind == "fp8" else self.value + 0.5

    def valid_rows(self, output: torch.Tensor) -> torch.Tensor:
        return output


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


def test_run_suite_holds_each_problem_against_its_twin():
    # Each problem's time: 10 us on NT, 12.5 us on TN, 8 us on NN; the TT problem comes before its twin.
    times = {"nt": 10e-6, "tn": 12.5e-6, "nn": 8e-6, "tt": 10e-6}
    current = {}

    def make_inputs(problem, device, seed):
        current["problem"] = problem
        return _StubInputs()

    def timer(fn):
        return times[current["problem"].major]

    suite = Suite(
        name="twins",
        description="stub suite with twins",
        problems=tuple(Problem(64, 4, 3, major=major) for major in ("tt", "nt", "tn", "nn")),
        make_inputs=make_inputs,
        providers=(_stub_provider("right", "right"), _stub_provider("wrong", "wrong")),
        bytes_moved=lambda problem: 1000,
        splits=(Split("NT", lambda p: p.major == "nt"), Split("not NT", lambda p: p.major != "nt")),
        twin=nt_twin,
    )
    seen = []
    record = run_suite(
        suite, suite.providers, CPU, 0, timer, on_problem=lambda p, r: seen.append(r["twin_speedup"])
    )
    tt, nt, tn, nn = record["problems"]
    # A twin measured later cannot be compared when the problem is printed: no ratio at all.
    assert tt["twin"] is None and tt["twin_speedup"] == {}
    assert nt["twin"] is None and nt["twin_speedup"] == {}
    assert tn["twin"] == dataclasses.asdict(Problem(64, 4, 3)) and tn["major"] == "tn"
    # Only providers that are ok on both problems ("wrong" misses its reference).
    assert tn["twin_speedup"] == {"right": pytest.approx(0.8)} and nn["twin_speedup"] == {
        "right": pytest.approx(1.25)
    }
    assert seen == [{}, {}, tn["twin_speedup"], nn["twin_speedup"]]
    assert record["twin_definition"].startswith("t_twin / t_problem")
    # Only the splits that hold a problem with a twin.
    assert record["twin_geomean"] == {
        "right": {"not NT": {"geomean": pytest.approx(1.0), "n": 2}},
        "wrong": {"not NT": {"geomean": None, "n": 0}},
    }
    assert record["twin_worst"] == {"right": {"not NT": pytest.approx(0.8)}, "wrong": {"not NT": None}}


def _rounds_suite(problem: Problem) -> Suite:
    return dataclasses.replace(
        DENSE, problems=(problem,), make_inputs=lambda p, d, s: _StubInputs(), twin=None, pairs=()
    )


def _timed_by_provider(seconds: dict[str, list[float]], calls: list[str]):
    """A timer for the stub providers "right" and "wrong" (told apart by the sign of their output)
    that logs which one it timed and returns its next time."""

    def timer(fn):
        name = "right" if float(fn().sum()) > 0 else "wrong"
        calls.append(name)
        return seconds[name][sum(call == name for call in calls) - 1]

    return timer


def test_long_calls_are_timed_in_alternating_rounds_and_report_the_median():
    # 400+ us calls: three rounds, the second in reverse order; each provider its median round.
    seconds = {"right": [400e-6, 500e-6, 420e-6], "wrong": [900e-6, 800e-6, 1000e-6]}
    calls: list[str] = []
    providers = (_stub_provider("right", "right"), _stub_provider("wrong", "wrong"))
    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)), providers, CPU, 0, _timed_by_provider(seconds, calls), rounds=3
    )
    assert calls == ["right", "wrong", "wrong", "right", "right", "wrong"]
    right, wrong = (record["problems"][0]["results"][name] for name in ("right", "wrong"))
    assert right["us"] == pytest.approx(420.0) and right["us_rounds"] == pytest.approx([400.0, 500.0, 420.0])
    assert right["tflops"] == pytest.approx(2 * 64 * 4 * 3 / 420e-6 / 1e12)
    assert wrong["us"] == pytest.approx(900.0) and wrong["status"] == "wrong"


def test_long_calls_are_also_timed_from_rest_in_rounds():
    seconds = {"right": [400e-6, 500e-6, 420e-6], "wrong": [900e-6, 800e-6, 1000e-6]}
    rested = {"right": [300e-6, 310e-6, 305e-6], "wrong": [700e-6, 600e-6, 650e-6]}
    calls: list[str] = []
    rested_calls: list[str] = []
    providers = (_stub_provider("right", "right"), _stub_provider("wrong", "wrong"))
    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)),
        providers,
        CPU,
        0,
        _timed_by_provider(seconds, calls),
        rounds=3,
        from_rest_timer=_timed_by_provider(rested, rested_calls),
    )
    assert rested_calls == ["right", "wrong", "wrong", "right", "right", "wrong"]
    right = record["problems"][0]["results"]["right"]
    assert right["us"] == pytest.approx(420.0) and right["us_from_rest"] == pytest.approx(305.0)
    assert right["us_from_rest_rounds"] == pytest.approx([300.0, 310.0, 305.0])
    assert right["tflops_from_rest"] == pytest.approx(2 * 64 * 4 * 3 / 305e-6 / 1e12)
    # "wrong" is timed but, as in the sustained ratios, left out.
    assert record["problems"][0]["results"]["wrong"]["us_from_rest"] == pytest.approx(650.0)
    assert record["problems"][0]["speedup_from_rest"] == {}


def test_short_calls_are_not_timed_from_rest():
    short = runner.LONG_CALL_US * 0.9e-6
    rested_calls: list[str] = []
    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)),
        (_stub_provider("right", "right"),),
        CPU,
        0,
        lambda fn: short,
        rounds=3,
        from_rest_timer=_timed_by_provider({"right": [1.0]}, rested_calls),
    )
    assert rested_calls == []
    result = record["problems"][0]["results"]["right"]
    assert result["us_from_rest"] is None and result["us_from_rest_rounds"] is None
    assert record["problems"][0]["speedup_from_rest"] == {}


def test_short_calls_are_timed_once():
    # Every call below LONG_CALL_US: one round, whatever `rounds` says.
    short = runner.LONG_CALL_US * 0.9e-6
    seconds = {"right": [short, 1.0], "wrong": [short / 2, 1.0]}
    calls: list[str] = []
    providers = (_stub_provider("right", "right"), _stub_provider("wrong", "wrong"))
    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)), providers, CPU, 0, _timed_by_provider(seconds, calls), rounds=3
    )
    assert calls == ["right", "wrong"]
    assert record["problems"][0]["results"]["right"]["us_rounds"] == pytest.approx([short * 1e6])


def test_a_provider_failing_in_a_later_round_is_an_error():
    calls: list[str] = []

    def timer(fn):
        calls.append("x")
        if len(calls) == 2:
            raise RuntimeError("lost the device")
        return 1e-3

    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)), (_stub_provider("right", "right"),), CPU, 0, timer, rounds=3
    )
    result = record["problems"][0]["results"]["right"]
    assert result["status"] == "error" and result["reason"] == "RuntimeError: lost the device"
    assert result["us"] is None and len(calls) == 2


def test_run_suite_without_twins_records_none():
    record = run_suite(
        dataclasses.replace(DENSE, problems=(Problem(64, 4, 3),), make_inputs=lambda p, d, s: _StubInputs()),
        (_stub_provider("right", "right"),),
        CPU,
        0,
        timer=lambda fn: 1e-6,
    )
    (problem,) = record["problems"]
    assert problem["twin"] is None and problem["twin_speedup"] == {} and problem["major"] == "nt"
    assert record["twin_definition"] is None and record["twin_geomean"] == {} and record["twin_worst"] == {}
