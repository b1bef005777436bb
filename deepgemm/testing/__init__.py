"""Helpers to check and time the kernels: the accuracy metric, reference GEMMs, seeded GEMM inputs,
benchmark timers. Tests and the benchmark import these; nothing here imports ``deepgemm.bench``."""

from .bench import bench, bench_cpu, bench_host_overhead, bench_kineto, bench_kineto_burst
from .inputs import (
    CONTIGUOUS_M_ALIGNMENT,
    GROUPED_LAYOUTS,
    MAJORS,
    Bf16Inputs,
    DenseInputs,
    GroupedInputs,
    WgradInputs,
    contiguous_starts,
    make_bf16_inputs,
    make_dense_inputs,
    make_grouped_inputs,
    make_wgrad_inputs,
)
from .numeric import calc_diff
from .reference import (
    ref_fp8_gemm_nt,
    ref_fp8_gemm_nt_1d1d,
    ref_k_grouped_fp8_gemm_nt_1d1d,
    ref_m_grouped_fp8_gemm_nt_contiguous,
    ref_m_grouped_fp8_gemm_nt_masked,
)

__all__ = [
    "CONTIGUOUS_M_ALIGNMENT",
    "GROUPED_LAYOUTS",
    "MAJORS",
    "Bf16Inputs",
    "DenseInputs",
    "GroupedInputs",
    "WgradInputs",
    "bench",
    "bench_cpu",
    "bench_host_overhead",
    "bench_kineto",
    "bench_kineto_burst",
    "calc_diff",
    "contiguous_starts",
    "make_bf16_inputs",
    "make_dense_inputs",
    "make_grouped_inputs",
    "make_wgrad_inputs",
    "ref_fp8_gemm_nt",
    "ref_fp8_gemm_nt_1d1d",
    "ref_k_grouped_fp8_gemm_nt_1d1d",
    "ref_m_grouped_fp8_gemm_nt_contiguous",
    "ref_m_grouped_fp8_gemm_nt_masked",
]
