"""The int8 benchmark suite: its problems and providers, and its run on the CPU path."""

import pytest
import torch

from deepgemm.bench.cli import cpu_suite, select_providers
from deepgemm.bench.providers import ProviderUnavailable
from deepgemm.bench.runner import run_suite
from deepgemm.bench.suites import INT8, SUITES, int8_gemm_bytes
from deepgemm.testing import make_int8_inputs

from .support import CPU


def test_int8_suite_is_m_4096_on_the_deepseek_v3_shapes():
    nks = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
    assert [(p.m, p.n, p.k) for p in INT8.problems] == [(4096, n, k) for n, k in nks]
    assert (4096, 7168, 16384) in [(p.m, p.n, p.k) for p in INT8.problems]
    assert SUITES["int8"] is INT8 and INT8.family == "int8" and INT8.baseline == "deepgemm"
    assert [p.name for p in INT8.providers] == ["deepgemm", "torch_int_mm_scaled", "torch_int_mm"]
    assert [p.reference for p in INT8.providers] == ["int8", "int8", "int8_sums"]
    assert (
        int8_gemm_bytes(INT8.problems[0]) == 4096 * 7168 + 2112 * 7168 + 4 * (4096 + 2112) + 2 * 4096 * 2112
    )


def test_torch_providers_need_cuda():
    inputs = make_int8_inputs(64, 256, 512, CPU, 0)
    for provider in INT8.providers[1:]:
        with pytest.raises(ProviderUnavailable, match="CUDA"):
            provider.prepare(inputs)


def test_int8_suite_runs_on_the_cpu_path():
    suite = cpu_suite(INT8)
    record = run_suite(suite, select_providers(suite, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    assert list(record["providers"]) == ["deepgemm"]
    assert len(record["problems"]) == len(INT8.cpu_problems)
    for problem in record["problems"]:
        result = problem["results"]["deepgemm"]
        assert result["status"] == "ok", result
        # BF16 rounding against the dequantised product; INT8 quantisation against the BF16 inputs.
        assert result["diffs"]["int8"] < 1e-5 and result["diffs"]["bf16"] < 2e-2
        assert problem["bytes"] == int8_gemm_bytes(INT8.cpu_problems[record["problems"].index(problem)])


def test_int8_inputs_references():
    inputs = make_int8_inputs(33, 64, 96, CPU, 3)
    assert inputs.a.dtype == inputs.b.dtype == torch.int8
    assert inputs.sa.shape == (33,) and inputs.sb.shape == (64,)
    sums = inputs.reference("int8_sums")
    assert torch.equal(sums.long(), inputs.a.long() @ inputs.b.long().T)
    expected = (inputs.a.double() * inputs.sa.double()[:, None]) @ (
        inputs.b.double() * inputs.sb.double()[:, None]
    ).T
    assert torch.allclose(inputs.reference("int8").double(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown reference kind"):
        inputs.reference("fp8")
