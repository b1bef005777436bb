"""Helpers to check and time the kernels: the accuracy metric, reference GEMMs, seeded GEMM inputs,
benchmark timers. Tests and the benchmark import these; nothing here imports ``deepgemm.bench``."""

from .bench import bench, bench_cpu, bench_host_overhead, bench_kineto, bench_kineto_burst
from .inputs import (
    CONTIGUOUS_M_ALIGNMENT,
    GROUPED_LAYOUTS,
    MAJORS,
    Bf16Inputs,
    DenseInputs,
    Fp32Inputs,
    GroupedInputs,
    SequenceInputs,
    contiguous_starts,
    make_bf16_inputs,
    make_dense_inputs,
    make_fp32_inputs,
    make_grouped_inputs,
    make_sequence_inputs,
    random_gemm_sizes,
    tf32_as_read,
)
from .numeric import calc_diff
from .reference import (
    ref_fp8_gemm_nt,
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
    "ref_fp8_gemm_nt",
    "ref_m_grouped_fp8_gemm_nt_contiguous",
    "ref_m_grouped_fp8_gemm_nt_masked",
    "Fp32Inputs",
    "SequenceInputs",
    "make_fp32_inputs",
    "make_sequence_inputs",
    "random_gemm_sizes",
    "tf32_as_read",
]
