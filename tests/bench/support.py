"""What several of the benchmark's test files share: the CPU device, the grouped FP8 suites' names, the
skip for grouped GEMMs not exported, and a provider's result record as the ratio arithmetic reads it."""

import pytest
import torch

import deepgemm

CPU = torch.device("cpu")
GROUPED_SUITES = ("grouped_contiguous", "grouped_masked", "grouped_decode")
requires_grouped_ops = pytest.mark.skipif(
    not hasattr(deepgemm, "m_grouped_fp8_gemm_nt_masked"), reason="the grouped GEMMs are not exported yet"
)


def outcome(status: str, us: float | None) -> dict:
    """A provider's result with only what ``speedups`` reads: its status and its time."""
    return {"status": status, "us": us}
