"""Each GPU op, given inputs in the layouts it uses as they are (A scales already MN-major for FP8),
launches exactly one device activity: its GEMM kernel. Anything more (a mask built per call, a copy,
a fill) costs every caller time on the GPU, and the benchmark would count it against us.
"""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.testing import make_bf16_inputs, make_dense_inputs, make_fp32_inputs, make_grouped_inputs
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


def _tf32(major: str, with_c: bool = False, split: bool = False):
    inputs = make_fp32_inputs(M, N, K, major, DEVICE, seed=0)
    d = torch.empty(M, N, device=DEVICE)
    c = torch.randn(M, N, device=DEVICE) if with_c else None
    if split:
        return lambda: deepgemm.tf32x3_gemm_nt(inputs.a_mk, inputs.b_kn.t(), d, c)
    gemm = getattr(deepgemm, f"tf32_gemm_{major}")
    return lambda: gemm(inputs.a, inputs.b, d, c)


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
    "tf32_gemm_nt": lambda: _tf32("nt"),
    "tf32_gemm_nt with c": lambda: _tf32("nt", True),
}


@pytest.mark.parametrize("op", list(CALLS))
def test_op_launches_only_its_gemm_kernel(op):
    activities = _device_activities(CALLS[op]())
    assert len(activities) == 1 and "sm90_" in activities[0], activities


# TF32 tensor cores read K-major operands only: each MN-major operand costs one staging copy (a
# transposing copy kernel), and 3xTF32 splits both operands (one staging kernel each), then one GEMM.
@pytest.mark.parametrize("op, call, num_staged", [
    ("tf32_gemm_nn", lambda: _tf32("nn"), 1),
    ("tf32_gemm_tn", lambda: _tf32("tn"), 2),
    ("tf32_gemm_tt", lambda: _tf32("tt"), 1),
    ("tf32x3_gemm_nt", lambda: _tf32("nt", split=True), 2),
])
def test_tf32_ops_launch_their_staging_copies_and_one_gemm(op, call, num_staged):
    activities = _device_activities(call())
    assert len(activities) == num_staged + 1, activities
    assert all("tf32_stage_operand" in name for name in activities[:-1]), activities
    assert "sm90_tf32_gemm" in activities[-1], activities
