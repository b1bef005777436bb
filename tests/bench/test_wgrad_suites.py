"""The weight-gradient benchmark suites: DeepGEMM's wgrad shapes and the k-grouped MoE table, their
providers and ratios, the k-grouped sizes, and both suites run end to end on the CPU path."""

import pytest

from deepgemm.bench.cli import cpu_suite, select_providers
from deepgemm.bench.runner import deepgemm_config, run_suite
from deepgemm.bench.suites import SUITES, WGRAD, WGRAD_K_GROUPED, Problem, k_grouped_sizes, wgrad_gemm_bytes

from .support import CPU

WGRAD_MNS = [(7168, 2112), (1536, 24576), (512, 32768), (16384, 7168), (7168, 4096), (2048, 7168)]


def test_wgrad_suite_is_deepgemms_table():
    expected = [(m, n, k) for k in (4096, 8192) for m, n in WGRAD_MNS]
    assert [(p.m, p.n, p.k) for p in WGRAD.problems] == expected
    assert SUITES["wgrad"] is WGRAD and WGRAD.family == "fp8_1d1d"
    assert [p.name for p in WGRAD.providers] == ["deepgemm", "deepgemm_bf16", "cublas_blockwise"]
    assert WGRAD.baseline == "deepgemm" and WGRAD.faster == "baseline"
    assert WGRAD.pairs == (("deepgemm_bf16", "cublas_blockwise"), ("deepgemm", "cublas_blockwise"))
    assert {split.label: sum(split.contains(p) for p in WGRAD.problems) for split in WGRAD.splits} == {
        "K=4096": 6, "K=8192": 6}
    assert wgrad_gemm_bytes(Problem(256, 512, 1024)) == (256 + 512) * (1024 + 4 * 8) + 4 * 256 * 512


def test_k_grouped_suite_and_sizes():
    assert [(p.num_groups, p.m, p.n, p.k, p.layout) for p in WGRAD_K_GROUPED.problems] == [
        (g, m, n, 4096, "k_grouped") for g in (4, 8) for m, n in ((7168, 4096), (2048, 7168))]
    assert [p.name for p in WGRAD_K_GROUPED.providers] == ["deepgemm_loop", "deepgemm", "deepgemm_dense"]
    assert WGRAD_K_GROUPED.faster == "provider" and WGRAD_K_GROUPED.pairs == (("deepgemm", "deepgemm_dense"),)
    for problem in WGRAD_K_GROUPED.problems:
        sizes = k_grouped_sizes(problem)
        assert len(sizes) == problem.num_groups and sum(sizes) == problem.num_groups * problem.k
        assert {abs(k - problem.k) for k in sizes} == {128}
    assert k_grouped_sizes(Problem(48, 256, 128, 3, "k_grouped")) == (256, 0, 128)
    # The config the records carry is the k-grouped launcher's (G problems of M rows, FP8 1D1D).
    config = deepgemm_config(WGRAD_K_GROUPED.problems[0], 132, "fp8_1d1d")
    assert config["family"] == "fp8_1d1d" and config["num_tma_multicast"] == 1


@pytest.mark.parametrize("suite", [WGRAD, WGRAD_K_GROUPED], ids=lambda suite: suite.name)
def test_wgrad_suites_run_on_the_cpu_path(suite):
    cpu = cpu_suite(suite)
    record = run_suite(cpu, select_providers(cpu, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    assert len(record["problems"]) == len(suite.cpu_problems)
    for problem in record["problems"]:
        assert problem["flops"] == Problem(**{key: problem[key] for key in ("m", "n", "k", "num_groups",
                                                                              "layout")}).flops
        for result in problem["results"].values():
            assert result["status"] == "ok", result
            assert result["diffs"]["fp8"] < 1e-5 and result["diffs"]["bf16"] < 1e-3
