"""Each GPU op, given inputs in the layouts it uses as they are (A scales already MN-major for FP8),
launches exactly one device activity: its GEMM kernel. Anything more (a mask built per call, a copy,
a fill) costs every caller time on the GPU, and the benchmark would count it against us.
"""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.testing import make_bf16_inputs, make_dense_inputs, make_grouped_inputs
from deepgemm.testing.bench import _device_events

pytestmark = pytest.mark.gpu

DEVICE = torch.device("cuda")
M, N, K = 256, 512, 512
G, ROWS, MAX_M = 2, 200, 256


def _device_activities(call) -> list[str]:
    """Names of the kernels, memsets and memcpys one call launches (after an unprofiled warm-up call
    that compiles and loads the kernel)."""
    call()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    return [event.name for event in _device_events(prof)]


def _fp8_grouped(layout: str):
    inputs = make_grouped_inputs(layout, G, ROWS, N, K, MAX_M if layout == "masked" else None, DEVICE, seed=0)
    a = (inputs.a, deepgemm.get_mn_major_tma_aligned_tensor(inputs.sfa))
    d = torch.empty(*inputs.a.shape[:-1], N, device=DEVICE, dtype=torch.bfloat16)
    return inputs, a, (inputs.b, inputs.sfb), d


def _fp8_dense():
    inputs = make_dense_inputs(M, N, K, DEVICE, seed=0)
    a = (inputs.a, deepgemm.get_mn_major_tma_aligned_tensor(inputs.sfa))
    d = torch.empty(M, N, device=DEVICE, dtype=torch.bfloat16)
    return lambda: deepgemm.fp8_gemm_nt(a, (inputs.b, inputs.sfb), d)


def _fp8_contiguous():
    inputs, a, b, d = _fp8_grouped("contiguous")
    return lambda: deepgemm.m_grouped_fp8_gemm_nt_contiguous(a, b, d, inputs.m_indices)


def _fp8_contiguous_offsets():
    inputs, a, b, d = _fp8_grouped("contiguous")
    return lambda: deepgemm.m_grouped_fp8_gemm_nt_contiguous_offsets(a, b, d, inputs.group_ends)


def _fp8_masked():
    inputs, a, b, d = _fp8_grouped("masked")
    return lambda: deepgemm.m_grouped_fp8_gemm_nt_masked(a, b, d, inputs.masked_m, ROWS)


def _bf16_dense(major: str, with_c: bool):
    inputs = make_bf16_inputs(M, N, K, major, DEVICE, seed=0)
    d = torch.empty(M, N, device=DEVICE, dtype=torch.bfloat16)
    c = torch.randn(M, N, device=DEVICE, dtype=torch.bfloat16) if with_c else None
    gemm = getattr(deepgemm, f"bf16_gemm_{major}")
    return lambda: gemm(inputs.a, inputs.b, d, c)


def _bf16_grouped(layout: str):
    inputs = make_grouped_inputs(layout, G, ROWS, N, K, MAX_M if layout == "masked" else None, DEVICE, seed=0,
                                 operand_dtype=torch.bfloat16)
    d = torch.empty(*inputs.a.shape[:-1], N, device=DEVICE, dtype=torch.bfloat16)
    if layout == "masked":
        return lambda: deepgemm.m_grouped_bf16_gemm_nt_masked(inputs.a, inputs.b, d, inputs.masked_m, ROWS)
    return lambda: deepgemm.m_grouped_bf16_gemm_nt_contiguous(inputs.a, inputs.b, d, inputs.m_indices)


CALLS = {
    "fp8_gemm_nt": _fp8_dense,
    "m_grouped_fp8_gemm_nt_contiguous": _fp8_contiguous,
    "m_grouped_fp8_gemm_nt_contiguous_offsets": _fp8_contiguous_offsets,
    "m_grouped_fp8_gemm_nt_masked": _fp8_masked,
    "bf16_gemm_nt": lambda: _bf16_dense("nt", False),
    "bf16_gemm_nn": lambda: _bf16_dense("nn", False),
    "bf16_gemm_tn": lambda: _bf16_dense("tn", False),
    "bf16_gemm_tt": lambda: _bf16_dense("tt", False),
    "bf16_gemm_nt with c": lambda: _bf16_dense("nt", True),
    "m_grouped_bf16_gemm_nt_contiguous": lambda: _bf16_grouped("contiguous"),
    "m_grouped_bf16_gemm_nt_masked": lambda: _bf16_grouped("masked"),
}


@pytest.mark.parametrize("op", list(CALLS))
def test_op_launches_only_its_gemm_kernel(op):
    activities = _device_activities(CALLS[op]())
    assert len(activities) == 1 and "sm90_" in activities[0], activities
