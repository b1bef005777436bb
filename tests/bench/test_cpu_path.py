"""Each benchmark suite run end to end on the CPU path (every provider that has one), checked against
its references."""

import pytest

from deepgemm.bench.cli import cpu_suite, select_providers
from deepgemm.bench.runner import run_suite
from deepgemm.bench.suites import BF16, BF16_GROUPED, MATMUL_FP8, SUITES

from .support import CPU, GROUPED_SUITES, requires_grouped_ops


def test_bf16_suite_runs_on_the_cpu_path():
    suite = cpu_suite(BF16)
    record = run_suite(suite, select_providers(suite, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    assert record["baseline"] == "deepgemm" and list(record["providers"]) == ["deepgemm"]
    assert [problem["major"] for problem in record["problems"]] == [p.major for p in BF16.cpu_problems]
    for problem in record["problems"]:
        (result,) = problem["results"].values()
        assert result["status"] == "ok", result
        assert result["reference"] == "bf16" and result["diffs"]["bf16"] < 1e-5
        m, n, k = problem["m"], problem["n"], problem["k"]
        assert problem["deepgemm_config"] is None and problem["bytes"] == 2 * (m * k + n * k + m * n)
        if problem["major"] == "nt":
            assert problem["twin"] is None
        else:
            assert problem["twin"]["major"] == "nt" and problem["twin_speedup"] == {
                "deepgemm": pytest.approx(1.0)
            }
    assert record["twin_worst"] == {
        "deepgemm": {f"{m} M>128": pytest.approx(1.0) for m in ("NN", "TN", "TT")}
    }


def test_bf16_grouped_suite_runs_on_the_cpu_path():
    suite = cpu_suite(BF16_GROUPED)
    record = run_suite(suite, select_providers(suite, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    assert record["baseline"] == "cublas_bf16_loop" and list(record["providers"]) == [
        "deepgemm",
        "deepgemm_dense",
    ]
    assert [problem["layout"] for problem in record["problems"]] == ["contiguous", "masked"]
    for problem in record["problems"]:
        for result in problem["results"].values():
            assert result["status"] == "ok", result
            assert set(result["diffs"]) == {"bf16"} and result["diffs"]["bf16"] < 1e-5
        assert problem["pair_speedup"] == {"deepgemm/deepgemm_dense": pytest.approx(1.0)}
    assert record["pair_geomean"]["deepgemm/deepgemm_dense"] == {
        "contiguous": {"geomean": pytest.approx(1.0), "n": 1},
        "masked": {"geomean": pytest.approx(1.0), "n": 1},
    }


def test_matmul_fp8_suite_runs_on_the_cpu_path():
    suite = cpu_suite(MATMUL_FP8)
    record = run_suite(suite, select_providers(suite, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    (problem,) = record["problems"]
    by_hand, matmul = problem["results"]["by_hand"], problem["results"]["matmul"]
    assert by_hand["status"] == matmul["status"] == "ok"
    assert by_hand["diffs"]["fp8"] < 1e-5 and by_hand["diffs"]["bf16"] < 1e-3
    # matmul is checked against the unquantised product; it quantises with the same recipe, so it
    # also lands on the FP8 reference.
    assert matmul["diffs"]["bf16"] < 1e-3 and matmul["diffs"]["fp8"] < 1e-5
    assert problem["speedup"] == {"matmul": pytest.approx(1.0)} and problem["major"] == "nn"
    assert record["geomean"]["matmul"]["M<=128"] == {"geomean": pytest.approx(1.0), "n": 1}


@requires_grouped_ops
@pytest.mark.parametrize("name", GROUPED_SUITES)
def test_grouped_suites_run_on_the_cpu_path(name):
    suite = cpu_suite(SUITES[name])
    record = run_suite(suite, select_providers(suite, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    assert record["baseline"] == "cublas_blockwise_loop" and record["faster"] == "provider"
    assert record["pairs"] == {"deepgemm/deepgemm_dense": "t_deepgemm_dense / t_deepgemm: how many times "
                               "faster deepgemm runs than deepgemm_dense"}  # fmt: skip
    (problem,) = record["problems"]
    (expected,) = SUITES[name].cpu_problems
    assert (problem["layout"], problem["num_groups"], problem["max_m"]) == (
        expected.layout, expected.num_groups, expected.max_m,
    )  # fmt: skip
    assert problem["flops"] == expected.flops
    for result in problem["results"].values():
        assert result["status"] == "ok", result
        assert result["diffs"]["fp8"] < 1e-5 and result["diffs"]["bf16"] < 1e-3
    # The baseline (cuBLAS) has no CPU path, so there is no ratio against it; the pair ratio remains.
    assert problem["speedup"] == {}
    assert problem["pair_speedup"] == {"deepgemm/deepgemm_dense": pytest.approx(1.0)}
    pair_geomean = record["pair_geomean"]["deepgemm/deepgemm_dense"]
    assert pair_geomean == {"all": {"geomean": pytest.approx(1.0), "n": 1}}
