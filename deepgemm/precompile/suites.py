"""The benchmark suites as precompile presets: the requests of every deepgemm op a suite's providers run.

Each deepgemm provider of each suite (``deepgemm/bench/suites.py``) has its entry below, which names the
op calls its timed closure makes for a problem, as ``KernelRequest``s (the cuBLAS and torch providers run
no deepgemm kernel and have none; ``tests/precompile/`` checks that every other provider has one). A
provider that runs on adapted inputs (``adapt``) is entered with the adapted problem's sizes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..heuristics.config import CONTIGUOUS, MASKED
from ..ops.common.launch import K_GROUPED, KernelRequest
from ..quant.layout import align

Requests = Callable[[object], list[KernelRequest]]
# Rows of each contiguous-layout group in the suites' inputs are aligned to this many.
CONTIGUOUS_ALIGNMENT = 128
_BF16, _FP16, _FP32 = torch.bfloat16, torch.float16, torch.float32


def _fp8_dense(p) -> list[KernelRequest]:
    return [KernelRequest("fp8_1d2d", p.m, p.n, p.k)]


def _config_m(p) -> int:
    """The M a grouped op chooses its config by: A's rows (each group's aligned to 128, contiguous) or
    ``expected_m`` (masked: the suites pass ``m``)."""
    if p.layout == CONTIGUOUS:
        return p.num_groups * align(p.m, CONTIGUOUS_ALIGNMENT)
    return p.m


def _grouped(family: str) -> Requests:
    return lambda p: [KernelRequest(family, _config_m(p), p.n, p.k, p.layout, p.num_groups)]


def _dense_twin(family: str) -> Requests:
    """The dense GEMM of a grouped problem's total size (``GroupedInputs.dense_equivalent``: every valid
    row times group 0's weights)."""
    return lambda p: [KernelRequest(family, p.num_groups * p.m, p.n, p.k)]


def _bf16_layout(p) -> list[KernelRequest]:
    return [KernelRequest("bf16", p.m, p.n, p.k, major=p.major)]


def _matmul_fp8(p) -> list[KernelRequest]:
    """``matmul(a, b, precision="fp8")`` on BF16 operands, and the same by hand: the casts and
    ``fp8_gemm_nt`` on K and N padded as matmul pads them (the casts come with the FP8 family)."""
    from ..ops.matmul import padded_fp8_sizes

    return [KernelRequest("fp8_1d2d", p.m, *padded_fp8_sizes(p.n, p.k, _BF16))]


def _matmul_fp16(p) -> list[KernelRequest]:
    """``matmul(a, b, dtype="float16")`` on row-major FP16 a [M, K], b [K, N]: ``bf16_gemm_nn`` in FP16,
    K and N padded to 8 where they are not multiples of it (``_gemm_16bit``), for every GEMM of a
    sequence problem."""
    from ..ops.matmul import padded_16bit_sizes

    sizes = p.sizes if hasattr(p, "sizes") else [(p.m, p.n, p.k)]
    return [KernelRequest("bf16", m, *padded_16bit_sizes(n, k), out_dtype=_FP16, major="nn", in_dtype=_FP16)
            for m, n, k in sizes]


def _wgrad(out_dtype: torch.dtype) -> Requests:
    """``fp8_gemm_nt_1d1d``: FP32 d accumulates (c = d), BF16 d is written."""
    return lambda p: [KernelRequest("fp8_1d1d", p.m, p.n, p.k, out_dtype=out_dtype, has_c=out_dtype == _FP32)]


def _k_sizes(p) -> tuple[int, ...]:
    from ..bench.suites import k_grouped_sizes

    return k_grouped_sizes(p)


def _wgrad_loop(p) -> list[KernelRequest]:
    """One dense 1D1D GEMM per non-empty group, accumulating into FP32 ``d[g]``."""
    return [KernelRequest("fp8_1d1d", p.m, p.n, k, out_dtype=_FP32, has_c=True) for k in _k_sizes(p) if k]


def _k_grouped(p) -> list[KernelRequest]:
    return [KernelRequest("fp8_1d1d", p.m, p.n, sum(_k_sizes(p)), K_GROUPED, p.num_groups, _FP32,
                          has_c=True)]


def _wgrad_dense(p) -> list[KernelRequest]:
    """``WgradInputs.dense_equivalent``: one GEMM over all groups' K, accumulating."""
    return [KernelRequest("fp8_1d1d", p.m, p.n, sum(_k_sizes(p)), out_dtype=_FP32, has_c=True)]


def _weight_only(family: str, suite: str) -> Requests:
    """The dense op, or the masked one with ``expected_m`` the rows of each group (the suites' counts), with
    the suite's weight-scale group size."""
    def requests(p) -> list[KernelRequest]:
        from ..bench.suites import WONLY_GROUP_SIZES

        group_size = WONLY_GROUP_SIZES[suite]
        groups = p.num_groups if p.layout == MASKED else 1
        return [KernelRequest(family, p.m, p.n, p.k, p.layout, groups, group_size=group_size)]

    return requests


def _fp8_masked_twin(p) -> list[KernelRequest]:
    """The FP8 masked GEMM of a masked weight-only problem (its inputs' expected_m: the mean count)."""
    return [KernelRequest("fp8_1d2d", p.m, p.n, p.k, MASKED, p.num_groups)] if p.layout == MASKED else []


def _casts(p) -> list[KernelRequest]:
    return [KernelRequest("cast", p.m, p.k, p.k)]


def _train_step(p) -> list[KernelRequest]:
    """The MLP block's three ``fp8_linear`` layers: w1 and w3 [hidden, dim], w2 [dim, hidden]."""
    tokens, hidden, dim = p.m, p.n, p.k
    return [KernelRequest("fp8_linear", tokens, hidden, dim),
            KernelRequest("fp8_linear", tokens, dim, hidden)]


def _tf32(family: str) -> Requests:
    return lambda p: [KernelRequest(family, p.m, p.n, p.k, out_dtype=_FP32, major=p.major)]


def _int8(p) -> list[KernelRequest]:
    return [KernelRequest("int8", p.m, p.n, p.k)]


# suite -> {provider name -> the requests of a problem}.
SUITE_REQUESTS: dict[str, dict[str, Requests]] = {
    "dense": {"deepgemm": _fp8_dense},
    "grouped_contiguous": {"deepgemm": _grouped("fp8_1d2d"), "deepgemm_offsets": _grouped("fp8_1d2d"),
                           "deepgemm_dense": _dense_twin("fp8_1d2d")},
    "grouped_masked": {"deepgemm": _grouped("fp8_1d2d"), "deepgemm_dense": _dense_twin("fp8_1d2d")},
    "grouped_decode": {"deepgemm": _grouped("fp8_1d2d"), "deepgemm_dense": _dense_twin("fp8_1d2d")},
    "bf16": {"deepgemm": _bf16_layout},
    "bf16_grouped": {"deepgemm": _grouped("bf16"), "deepgemm_dense": _dense_twin("bf16")},
    "matmul_fp8": {"by_hand": _matmul_fp8, "matmul": _matmul_fp8},
    "wgrad": {"deepgemm": _wgrad(_FP32), "deepgemm_bf16": _wgrad(_BF16)},
    "wgrad_k_grouped": {"deepgemm_loop": _wgrad_loop, "deepgemm": _k_grouped, "deepgemm_dense": _wgrad_dense},
    "wonly": {"deepgemm": _weight_only("w4a16", "wonly"), "deepgemm_fp8_masked": _fp8_masked_twin},
    "wonly_w8": {"deepgemm": _weight_only("w8a16", "wonly_w8"), "deepgemm_fp8_masked": _fp8_masked_twin},
    "cast": {"deepgemm": _casts},
    "train_step": {"deepgemm_fp8": _train_step},
    "tf32": {"deepgemm": _tf32("tf32")},
    # The GEMM kernel alone loads the kernels of the whole call (the split's staging on the same operands).
    "fp32": {"deepgemm_3xtf32": _tf32("tf32x3"), "deepgemm_3xtf32_gemm": _tf32("tf32x3")},
    "seed": {"matmul": _matmul_fp16},
    "decode": {"deepgemm": _fp8_dense, "deepgemm_bf16": _bf16_layout},
    "int8": {"deepgemm": _int8},
}


def suite_requests(name: str) -> list[KernelRequest]:
    """The requests of every deepgemm op suite ``name`` runs: each problem through each of its deepgemm
    providers, and for ``dense`` the host-overhead problem (``--host-overhead``)."""
    from ..bench.runner import HOST_OVERHEAD_PROBLEM
    from ..bench.suites import SUITES

    problems = SUITES[name].problems
    return problem_requests(name, (*problems, HOST_OVERHEAD_PROBLEM) if name == "dense" else problems)


def problem_requests(name: str, problems) -> list[KernelRequest]:
    """The requests of suite ``name``'s deepgemm providers on ``problems``."""
    from ..bench.suites import SUITES

    if name not in SUITE_REQUESTS:
        raise ValueError(f"suite {name!r} has no precompile entry (deepgemm/precompile/suites.py)")
    entries = SUITE_REQUESTS[name]
    return [request for problem in problems for provider in SUITES[name].providers
            if provider.name in entries for request in entries[provider.name](problem)]


__all__ = ["SUITE_REQUESTS", "problem_requests", "suite_requests"]
