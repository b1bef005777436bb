"""Helpers to check and time the kernels: the accuracy metric, reference GEMMs, benchmark timers."""

from .bench import bench, bench_cpu, bench_host_overhead, bench_kineto, bench_kineto_burst
from .numeric import calc_diff
from .reference import (
    ref_fp8_gemm_nt,
    ref_m_grouped_fp8_gemm_nt_contiguous,
    ref_m_grouped_fp8_gemm_nt_masked,
)

__all__ = [
    "bench",
    "bench_cpu",
    "bench_host_overhead",
    "bench_kineto",
    "bench_kineto_burst",
    "calc_diff",
    "ref_fp8_gemm_nt",
    "ref_m_grouped_fp8_gemm_nt_contiguous",
    "ref_m_grouped_fp8_gemm_nt_masked",
]
