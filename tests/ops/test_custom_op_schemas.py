"""The torch.compile custom ops keep their names and schemas: a compiled program saved with one version
names them, and the eager ops' arguments travel through them (``ops/common/traced.py``)."""

from __future__ import annotations

import torch

import deepgemm  # noqa: F401 (registers the custom ops)
from deepgemm.ops.common import traced

# Each op's schema arguments, as ``torch.ops.deepgemm.<name>.default._schema`` prints them; every op returns
# nothing (it writes ``d``).
SCHEMAS = {
    "bf16_gemm_nn":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor? c, bool c_is_d",
    "bf16_gemm_nt":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor? c, bool c_is_d",
    "bf16_gemm_tn":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor? c, bool c_is_d",
    "bf16_gemm_tt":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor? c, bool c_is_d",
    "fp8_gemm_nt":
        "Tensor a, Tensor sfa, Tensor b, Tensor sfb, Tensor(a4!) d",
    "fp8_gemm_nt_1d1d":
        "Tensor a, Tensor sa, Tensor b, Tensor sb, Tensor(a4!) d, Tensor? c, bool c_is_d",
    "int8_gemm_nt":
        "Tensor a, Tensor? sa, Tensor b, Tensor? sb, Tensor(a4!) d, Tensor? bias, Tensor? zp, Tensor? b_sums",
    "k_grouped_fp8_gemm_nt_1d1d":
        "Tensor a, Tensor sa, Tensor b, Tensor sb, Tensor(a4!) d, Tensor ks, SymInt[]? ks_host, Tensor? c, "
        "bool c_is_d",
    "m_grouped_bf16_gemm_nt_contiguous":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor m_indices",
    "m_grouped_bf16_gemm_nt_masked":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor masked_m, SymInt expected_m",
    "m_grouped_fp8_gemm_nt_contiguous":
        "Tensor a, Tensor sfa, Tensor b, Tensor sfb, Tensor(a4!) d, Tensor m_indices",
    "m_grouped_fp8_gemm_nt_contiguous_offsets":
        "Tensor a, Tensor sfa, Tensor b, Tensor sfb, Tensor(a4!) d, Tensor group_ends",
    "m_grouped_fp8_gemm_nt_masked":
        "Tensor a, Tensor sfa, Tensor b, Tensor sfb, Tensor(a4!) d, Tensor masked_m, SymInt expected_m",
    "m_grouped_int8_gemm_nt_contiguous":
        "Tensor a, Tensor? sa, Tensor b, Tensor? sb, Tensor(a4!) d, Tensor? bias, Tensor? zp, "
        "Tensor? b_sums, Tensor m_indices",
    "m_grouped_int8_gemm_nt_contiguous_offsets":
        "Tensor a, Tensor? sa, Tensor b, Tensor? sb, Tensor(a4!) d, Tensor? bias, Tensor? zp, "
        "Tensor? b_sums, Tensor group_ends",
    "m_grouped_int8_gemm_nt_masked":
        "Tensor a, Tensor? sa, Tensor b, Tensor? sb, Tensor(a4!) d, Tensor? bias, Tensor? zp, "
        "Tensor? b_sums, Tensor masked_m, SymInt expected_m",
    "m_grouped_w4a16_gemm_nt_masked":
        "Tensor a, Tensor b_packed, Tensor sb, Tensor? zeros, Tensor(a4!) d, Tensor masked_m, "
        "SymInt expected_m, SymInt? group_size",
    "m_grouped_w8a16_gemm_nt_masked":
        "Tensor a, Tensor b_packed, Tensor sb, Tensor? zeros, Tensor(a4!) d, Tensor masked_m, "
        "SymInt expected_m, SymInt? group_size",
    "tf32_gemm_nn":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor? c, bool c_is_d",
    "tf32_gemm_nt":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor? c, bool c_is_d",
    "tf32_gemm_tn":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor? c, bool c_is_d",
    "tf32_gemm_tt":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor? c, bool c_is_d",
    "tf32x3_gemm_nt":
        "Tensor a, Tensor b, Tensor(a2!) d, Tensor? c, bool c_is_d",
    "w4a16_gemm_nt":
        "Tensor a, Tensor b_packed, Tensor sb, Tensor? zeros, Tensor(a4!) d, SymInt? group_size",
    "w8a16_gemm_nt":
        "Tensor a, Tensor b_packed, Tensor sb, Tensor? zeros, Tensor(a4!) d, SymInt? group_size",
}


def test_the_custom_ops_are_these():
    assert sorted(traced._EAGER) == sorted(SCHEMAS)


def test_each_custom_op_keeps_its_schema():
    for name, arguments in SCHEMAS.items():
        schema = str(getattr(torch.ops.deepgemm, name).default._schema)
        assert schema == f"deepgemm::{name}({arguments}) -> ()", name
