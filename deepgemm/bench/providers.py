"""The implementations a benchmark compares, each as a ``Provider``.

``prepare(inputs)`` does every conversion a real caller would do once (scale layouts, per-tensor
quantisation, output allocation) and returns the closure that is timed: one GEMM (one grouped GEMM,
or the loop of per-group GEMMs that stands in for one), nothing else; in the matmul_fp8 suite, what
a caller runs per call on BF16 operands: their quantisation and the GEMM.
It raises ``ProviderUnavailable`` when this torch/deepgemm/device cannot run the provider, which
the benchmark reports instead of crashing.
"""

import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from deepgemm.jit import compile_count, knobs
from deepgemm.quant import align, ceil_div, get_mn_major_tma_aligned_tensor
from deepgemm.testing import (
    Bf16Inputs,
    DenseInputs,
    Fp32Inputs,
    GroupedInputs,
    Int8Inputs,
    SequenceInputs,
    WeightOnlyInputs,
    WgradInputs,
    calc_diff,
)

FP8_MAX = 448.0


class ProviderUnavailable(Exception):
    """This provider cannot run here (op missing, torch too old, wrong device); the message says why."""


# What a provider prepares from a problem's inputs: the closure the timer calls.
Prepare = Callable[[Any], Callable[[], object]]


@dataclass(frozen=True)
class Provider:
    """A named implementation: ``calls`` says exactly what the timed closure runs (kept in the JSON);
    its output must match ``inputs.reference(reference)`` with ``calc_diff <= max_diff`` on
    ``inputs.valid_rows(output)``.

    ``adapt``, if set, derives the inputs the provider runs on (and is checked against) from the
    suite's inputs, e.g. the dense GEMM of a grouped problem's total size. ``has_cpu_path``: it runs
    on CPU tensors, so the CPU smoke run includes it.
    """

    name: str
    calls: str
    prepare: Prepare
    reference: str
    # The bound of a provider whose only error against its reference is the output's rounding.
    max_diff: float = 1e-5
    adapt: Callable[[Any], Any] | None = None
    has_cpu_path: bool = False
    # The nominal bytes of a problem for this provider's GB/s, where they differ from the suite's
    # (`Suite.bytes_moved`): a 16-bit provider in a suite of FP8 problems reads twice the operand bytes.
    bytes_moved: Callable[[Any], int] | None = None


def _deepgemm(name: str, calls: str, prepare: Prepare, reference: str, **fields) -> Provider:
    """A provider of deepgemm's ops, which run on CPU tensors too (their CPU path): the CPU smoke run
    includes it."""
    return Provider(name, calls, prepare, reference, has_cpu_path=True, **fields)


def _require_cuda(inputs: DenseInputs | Bf16Inputs | GroupedInputs) -> None:
    if inputs.a.device.type != "cuda":
        raise ProviderUnavailable("cuBLAS providers need CUDA tensors")


def _deepgemm_op(name: str) -> Callable:
    import deepgemm

    op = getattr(deepgemm, name, None)
    if op is None:
        raise ProviderUnavailable(f"deepgemm.{name} does not exist in this build")
    return op


def _prepare_deepgemm(inputs: DenseInputs) -> Callable[[], torch.Tensor]:
    gemm = _deepgemm_op("fp8_gemm_nt")
    # A caller converts the A scales once per activation, not per GEMM: keep it out of the timing.
    sfa = get_mn_major_tma_aligned_tensor(inputs.sfa)
    d = torch.empty(inputs.a.shape[0], inputs.b.shape[0], dtype=torch.bfloat16, device=inputs.a.device)

    def run() -> torch.Tensor:
        gemm((inputs.a, sfa), (inputs.b, inputs.sfb), d)
        return d

    return run


def _blockwise_b_scale_candidates(sfb: torch.Tensor) -> list[torch.Tensor]:
    """Layouts of the B scales that torch versions accept for ``ScalingType.BlockWise128x128``.

    ``scale_b`` goes with ``mat_b = B.t()`` (``[K, N]``), so it is ``sfb.t()`` (``[KB, NB]``,
    strides ``(1, KB)``). Newer torch wants the KB extent padded to a multiple of 4 (shape
    ``[round_up(KB, 4), NB]``); older torch wants it unpadded. Both coincide when 4 divides KB.
    """
    nb, kb = sfb.shape
    padded = torch.zeros(nb, ceil_div(kb, 4) * 4, dtype=sfb.dtype, device=sfb.device)
    padded[:, :kb] = sfb
    candidates = [padded.t(), sfb.t()]
    return candidates[:1] if kb % 4 == 0 else candidates


def _blockwise_scaled_mm(inputs: DenseInputs | WgradInputs, sa: torch.Tensor, b_scaling: str,
                         b_scale_candidates: list[torch.Tensor], what: str,
                         reference: torch.Tensor | None = None) -> Callable[[], torch.Tensor]:
    """cuBLAS's blockwise FP8 GEMM, ``torch.nn.functional.scaled_mm``, on ``inputs.a`` and ``inputs.b``:
    A with its 1x128 scales ``sa [M, KB]``, B with ``ScalingType.<b_scaling>`` scales in the first of
    ``b_scale_candidates`` (the layouts of its ``what``) that torch takes and, given ``reference``, that
    reproduces it. Each layout is tried once, untimed: torch raises on a layout it does not take, and one
    it takes with another meaning than ours gives other values (kept out: only a layout that reproduces
    the reference is timed). Where cuBLAS refuses every layout for an M that is not a multiple of
    ``BLOCKWISE_ROW_MULTIPLE`` (decode sizes: M = 2 is CUBLAS_STATUS_NOT_SUPPORTED), A runs padded with
    zero rows to the next multiple, as a caller of cuBLAS must, and the call returns D's first M rows."""
    _require_cuda(inputs)
    try:
        from torch.nn.functional import ScalingType, scaled_mm
    except ImportError as error:
        raise ProviderUnavailable(
            f"torch {torch.__version__} has no torch.nn.functional.scaled_mm"
        ) from error
    m = inputs.a.shape[0]

    def call_with(a: torch.Tensor, scale_a: torch.Tensor,
                  scale_b: torch.Tensor) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            out = scaled_mm(a, inputs.b.t(), scale_a, ScalingType.BlockWise1x128, scale_b,
                            getattr(ScalingType, b_scaling), output_dtype=torch.bfloat16)
            return out if out.shape[0] == m else out[:m]

        return run

    rejections: list[tuple[torch.Tensor, str]] = []
    # NotImplementedError is torch saying "not on this GPU/build" (e.g. not SM90); anything else
    # means these arguments are wrong, which must show up as a failure, not as "unavailable".
    not_implemented = True
    for a, scale_a in _blockwise_a_operands(inputs.a, sa):
        for scale_b in b_scale_candidates:
            run = call_with(a, scale_a, scale_b)
            try:
                out = run()
            except (RuntimeError, ValueError, NotImplementedError) as error:
                not_implemented &= isinstance(error, NotImplementedError)
                rejections.append((scale_b, f"M = {a.shape[0]}: {error}"))
                continue
            if reference is None or calc_diff(out, reference) <= 1e-4:
                return run
            not_implemented = False
            rejections.append((scale_b, "accepted, but its values do not match the 1x128 reference"))
    message = f"scaled_mm rejected every {what}: " + " | ".join(
        f"shape {tuple(scale_b.shape)} strides {scale_b.stride()}: {why}" for scale_b, why in rejections
    )
    if not_implemented:
        raise ProviderUnavailable(message)
    raise RuntimeError(message)


# cuBLAS's blockwise FP8 GEMM takes M-major A scales whose rows it reads in 16-byte units.
BLOCKWISE_ROW_MULTIPLE = 4


def _blockwise_a_operands(a: torch.Tensor, sa: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A, its 1x128 scales M-major: shape [M, KB], strides (1, M), built explicitly, since for M = 1
    ``contiguous`` keeps a transposed view's strides), then, for an M that is not a multiple of
    BLOCKWISE_ROW_MULTIPLE, the same padded with zero rows (scale 1) to the next multiple."""
    def m_major(scales: torch.Tensor) -> torch.Tensor:
        rows, cols = scales.shape
        out = torch.empty_strided((rows, cols), (1, rows), dtype=scales.dtype, device=scales.device)
        return out.copy_(scales)

    m = a.shape[0]
    operands = [(a, m_major(sa))]
    padded_m = align(m, BLOCKWISE_ROW_MULTIPLE)
    if padded_m != m:
        padded_a = torch.zeros(padded_m, a.shape[1], dtype=a.dtype, device=a.device)
        padded_a[:m] = a
        padded_sa = torch.ones(padded_m, sa.shape[1], dtype=sa.dtype, device=sa.device)
        padded_sa[:m] = sa
        operands.append((padded_a, m_major(padded_sa)))
    return operands


def _prepare_cublas_blockwise(inputs: DenseInputs) -> Callable[[], torch.Tensor]:
    candidates = _blockwise_b_scale_candidates(inputs.sfb)
    return _blockwise_scaled_mm(inputs, inputs.sfa, "BlockWise128x128", candidates, "B scale layout")


def _per_tensor_cast_to_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` in FP8 with one FP32 scale for the whole tensor (``x ~= q * scale``)."""
    scale = x.abs().amax().float().clamp(min=1e-4) / FP8_MAX
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale


def _prepare_cublas_per_tensor(inputs: DenseInputs) -> Callable[[], torch.Tensor]:
    _require_cuda(inputs)
    if not hasattr(torch, "_scaled_mm"):
        raise ProviderUnavailable(f"torch {torch.__version__} has no torch._scaled_mm")
    a, scale_a = _per_tensor_cast_to_fp8(inputs.a_bf16)
    b, scale_b = _per_tensor_cast_to_fp8(inputs.b_bf16)

    def run() -> torch.Tensor:
        return torch._scaled_mm(a, b.t(), scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)

    return run


def _prepare_cublas_bf16(inputs: DenseInputs) -> Callable[[], torch.Tensor]:
    _require_cuda(inputs)
    a, b = inputs.a_bf16, inputs.b_bf16

    def run() -> torch.Tensor:
        return a @ b.t()

    return run


def _prepare_deepgemm_bf16_nt(inputs: DenseInputs) -> Callable[[], torch.Tensor]:
    gemm = _deepgemm_op("bf16_gemm_nt")
    a, b = inputs.a_bf16, inputs.b_bf16
    d = torch.empty(a.shape[0], b.shape[0], dtype=torch.bfloat16, device=a.device)

    def run() -> torch.Tensor:
        gemm(a, b, d)
        return d

    return run


def _grouped_output(inputs: GroupedInputs, layout: str) -> torch.Tensor:
    """An uninitialised BF16 D laid out like A: ``[M_sum, N]`` (contiguous) or ``[G, max_m, N]``."""
    if inputs.layout != layout:
        raise ValueError(f"this provider takes {layout} grouped inputs, got {inputs.layout}")
    shape = (*inputs.a.shape[:-1], inputs.b.shape[1])
    return torch.empty(shape, dtype=torch.bfloat16, device=inputs.a.device)


def _prepare_deepgemm_contiguous(inputs: GroupedInputs, by_offsets: bool) -> Callable[[], torch.Tensor]:
    if by_offsets:
        gemm, groups = _deepgemm_op("m_grouped_fp8_gemm_nt_contiguous_offsets"), inputs.group_ends
    else:
        gemm, groups = _deepgemm_op("m_grouped_fp8_gemm_nt_contiguous"), inputs.m_indices
    sfa = get_mn_major_tma_aligned_tensor(inputs.sfa)
    d = _grouped_output(inputs, "contiguous")

    def run() -> torch.Tensor:
        gemm((inputs.a, sfa), (inputs.b, inputs.sfb), d, groups)
        return d

    return run


def _prepare_deepgemm_masked(inputs: GroupedInputs) -> Callable[[], torch.Tensor]:
    gemm = _deepgemm_op("m_grouped_fp8_gemm_nt_masked")
    sfa = get_mn_major_tma_aligned_tensor(inputs.sfa)
    d = _grouped_output(inputs, "masked")

    def run() -> torch.Tensor:
        gemm((inputs.a, sfa), (inputs.b, inputs.sfb), d, inputs.masked_m, inputs.expected_m)
        return d

    return run


def _prepare_cublas_blockwise_loop(inputs: GroupedInputs) -> Callable[[], list[torch.Tensor]]:
    """The dense cuBLAS blockwise provider once per non-empty group, on its valid rows and ``B[g]``:
    what a caller without a grouped blockwise GEMM does. Each group's call is prepared once."""
    _require_cuda(inputs)
    calls = [
        _prepare_cublas_blockwise(inputs.expert_inputs(group))
        for group, count in enumerate(inputs.counts)
        if count
    ]

    def run() -> list[torch.Tensor]:
        return [call() for call in calls]

    return run


def _prepare_deepgemm_layout_op(family: str, inputs: Bf16Inputs | Fp32Inputs,
                                 out_dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    """deepgemm's ``<family>_gemm_<major>`` on the stored operands, into a preallocated ``d``."""
    gemm = _deepgemm_op(f"{family}_gemm_{inputs.major}")
    m, n = inputs.a_mk.shape[0], inputs.b_kn.shape[1]
    d = torch.empty(m, n, dtype=out_dtype, device=inputs.a.device)

    def run() -> torch.Tensor:
        gemm(inputs.a, inputs.b, d)
        return d

    return run


def _prepare_deepgemm_bf16(inputs: Bf16Inputs) -> Callable[[], torch.Tensor]:
    return _prepare_deepgemm_layout_op("bf16", inputs, torch.bfloat16)


def _prepare_cublas_bf16_layout(inputs: Bf16Inputs) -> Callable[[], torch.Tensor]:
    """``torch.matmul`` on transposed views: cuBLAS reads either major-ness, so nothing is copied."""
    _require_cuda(inputs)
    a, b = inputs.a_mk, inputs.b_kn

    def run() -> torch.Tensor:
        return a @ b

    return run


def _prepare_deepgemm_bf16_grouped(inputs: GroupedInputs) -> Callable[[], torch.Tensor]:
    d = _grouped_output(inputs, inputs.layout)
    if inputs.layout == "contiguous":
        gemm = _deepgemm_op("m_grouped_bf16_gemm_nt_contiguous")

        def run() -> torch.Tensor:
            gemm(inputs.a, inputs.b, d, inputs.m_indices)
            return d

    else:
        gemm = _deepgemm_op("m_grouped_bf16_gemm_nt_masked")

        def run() -> torch.Tensor:
            gemm(inputs.a, inputs.b, d, inputs.masked_m, inputs.expected_m)
            return d

    return run


def _prepare_cublas_bf16_loop(inputs: GroupedInputs) -> Callable[[], list[torch.Tensor]]:
    """One ``torch.matmul`` per non-empty group, on its valid rows and ``B[g]ᵀ`` (a view)."""
    _require_cuda(inputs)
    experts = [
        (inputs.group_rows(inputs.a_bf16, group), inputs.b_bf16[group].t())
        for group, count in enumerate(inputs.counts)
        if count
    ]

    def run() -> list[torch.Tensor]:
        return [a @ b for a, b in experts]

    return run


def _prepare_fp8_by_hand(inputs: DenseInputs) -> Callable[[], torch.Tensor]:
    """What ``deepgemm.matmul(a, b, precision="fp8")`` stands for, called step by step: both casts
    and the GEMM on every call, since a caller of either quantises its BF16 operands each time."""
    gemm = _deepgemm_op("fp8_gemm_nt")
    token_cast, block_cast = _deepgemm_op("per_token_cast_to_fp8"), _deepgemm_op("per_block_cast_to_fp8")
    # b_bf16 is the [N, K] view of the caller's row-major [K, N] b (make_dense_inputs(b_kn=True)).
    a, b = inputs.a_bf16, inputs.b_bf16
    m, n = a.shape[0], b.shape[0]

    def run() -> torch.Tensor:
        d = torch.empty(m, n, dtype=torch.bfloat16, device=a.device)
        return gemm(token_cast(a), block_cast(b), d)

    return run


def _prepare_matmul_fp8(inputs: DenseInputs) -> Callable[[], torch.Tensor]:
    matmul = _deepgemm_op("matmul")
    a, b = inputs.a_bf16, inputs.b_bf16.t()

    def run() -> torch.Tensor:
        return matmul(a, b, precision="fp8")

    return run


# calc_diff bounds (DESIGN.md §1): a fine-grained FP8 GEMM matches the dequantised FP8 reference to
# about 1e-6 (BF16 output rounding); quantisation alone costs up to 1e-3 against BF16 inputs.
DEEPGEMM = _deepgemm(
    "deepgemm",
    "deepgemm.fp8_gemm_nt((a, get_mn_major_tma_aligned_tensor(sfa)), (b, sfb), d) into a preallocated BF16 d;"
    " the sfa conversion is done once, untimed",
    _prepare_deepgemm,
    reference="fp8",
)
CUBLAS_BLOCKWISE = Provider(
    "cublas_blockwise",
    "torch.nn.functional.scaled_mm(a, b.t(), sfa as [M, KB] strides (1, M), ScalingType.BlockWise1x128,"
    " sfb.t() (KB padded to a multiple of 4 where torch requires it), ScalingType.BlockWise128x128,"
    " output_dtype=torch.bfloat16)",
    _prepare_cublas_blockwise,
    reference="fp8",
)
CUBLAS_PER_TENSOR = Provider(
    "cublas_per_tensor",
    "torch._scaled_mm(a_pt, b_pt.t(), scale_a=s_a, scale_b=s_b, out_dtype=torch.bfloat16) on a separate"
    " per-tensor FP8 quantisation of the same BF16 inputs (one FP32 scale each)",
    _prepare_cublas_per_tensor,
    reference="bf16",
    max_diff=1e-3,
)
CUBLAS_BF16 = Provider(
    "cublas_bf16",
    "a_bf16 @ b_bf16.t() on the unquantised BF16 inputs",
    _prepare_cublas_bf16,
    reference="bf16",
)

# deepgemm's 16-bit GEMM on the unquantised operands of an FP8 problem, beside cublas_bf16 (decode suite).
DEEPGEMM_BF16_NT = _deepgemm(
    "deepgemm_bf16",
    "deepgemm.bf16_gemm_nt(a_bf16, b_bf16, d) on the unquantised BF16 inputs, into a preallocated BF16 d",
    _prepare_deepgemm_bf16_nt,
    reference="bf16",
)

# The grouped suites' providers. Each output is checked on the valid rows only.
_SFA_ONCE = "the sfa conversion to get_mn_major_tma_aligned_tensor's layout is done once, untimed"


def _deepgemm_contiguous(by_offsets: bool) -> Provider:
    """The contiguous grouped FP8 GEMM, its experts' rows named by per-row indices or by group ends."""
    op, rows = ("_offsets", "group_ends") if by_offsets else ("", "m_indices")
    return _deepgemm(
        "deepgemm_offsets" if by_offsets else "deepgemm",
        f"deepgemm.m_grouped_fp8_gemm_nt_contiguous{op}((a, sfa), (b, sfb), d, {rows}) into a preallocated"
        f" BF16 d [M_sum, N]; {_SFA_ONCE}",
        functools.partial(_prepare_deepgemm_contiguous, by_offsets=by_offsets),
        reference="fp8",
    )


DEEPGEMM_CONTIGUOUS = _deepgemm_contiguous(by_offsets=False)
DEEPGEMM_CONTIGUOUS_OFFSETS = _deepgemm_contiguous(by_offsets=True)
DEEPGEMM_MASKED = _deepgemm(
    "deepgemm",
    "deepgemm.m_grouped_fp8_gemm_nt_masked((a, sfa), (b, sfb), d, masked_m, expected_m) into a"
    f" preallocated BF16 d [G, max_m, N]; {_SFA_ONCE}",
    _prepare_deepgemm_masked,
    reference="fp8",
)


def _group_loop(name: str, call: str, prepare: Prepare, reference: str) -> Provider:
    """A grouped problem as a Python loop of `call` over its non-empty groups."""
    return Provider(name, f"a Python loop over the non-empty groups g: {call}, one BF16 output per group; the"
                    " profiler timer sums the G kernels, not the host gaps between them", prepare, reference)


def _dense_equivalent(op: str, b: str, prepare: Prepare, reference: str) -> Provider:
    """deepgemm's dense `op` on the dense GEMM of a grouped problem's total size (`b`: what of group 0's
    weight it reads)."""
    return _deepgemm("deepgemm_dense", f"deepgemm.{op} on the dense GEMM of the same total M, N, K: all valid"
                     f" rows of a (gathered once, untimed) times group 0's {b}, into a preallocated BF16 d"
                     " [sum of valid rows, N]", prepare, reference, adapt=GroupedInputs.dense_equivalent)


CUBLAS_BLOCKWISE_LOOP = _group_loop(
    "cublas_blockwise_loop",
    "the cublas_blockwise call (torch.nn.functional.scaled_mm, BlockWise1x128 / BlockWise128x128) on group"
    " g's valid rows of a and b[g]",
    _prepare_cublas_blockwise_loop,
    "fp8",
)
DEEPGEMM_DENSE = _dense_equivalent("fp8_gemm_nt", "b and sfb", _prepare_deepgemm, "fp8")

# The 16-bit suites' providers: BF16 operands, BF16 output, checked against the FP32 product of the
# BF16 operands (the output's BF16 rounding costs about 1e-6).
DEEPGEMM_BF16 = _deepgemm(
    "deepgemm",
    "deepgemm.bf16_gemm_<major>(a, b, d) on a and b stored as the problem's major says, into a"
    " preallocated BF16 d [M, N]",
    _prepare_deepgemm_bf16,
    reference="bf16",
)
CUBLAS_BF16_LAYOUT = Provider(
    "cublas_bf16",
    "torch.matmul on the same stored a and b, transposed views where the major says (nt: a @ b.t(),"
    " nn: a @ b, tn: a.t() @ b, tt: a.t() @ b.t()); cuBLAS reads either major-ness, nothing is copied",
    _prepare_cublas_bf16_layout,
    reference="bf16",
)
DEEPGEMM_BF16_GROUPED = _deepgemm(
    "deepgemm",
    "deepgemm.m_grouped_bf16_gemm_nt_contiguous(a, b, d, m_indices) or"
    " deepgemm.m_grouped_bf16_gemm_nt_masked(a, b, d, masked_m, expected_m), as the problem's layout"
    " says, into a preallocated BF16 d laid out like a",
    _prepare_deepgemm_bf16_grouped,
    reference="bf16",
)
CUBLAS_BF16_LOOP = _group_loop("cublas_bf16_loop", "torch.matmul(a's valid rows of g, b[g].t())",
                               _prepare_cublas_bf16_loop, "bf16")
DEEPGEMM_BF16_DENSE = _dense_equivalent("bf16_gemm_nt", "b", _prepare_deepgemm_bf16, "bf16")

# The matmul_fp8 suite's providers, on BF16 a [M, K] and a row-major BF16 b [K, N]. The by-hand
# calls quantise exactly as the FP8 reference does; matmul quantises inside, so it is held to the
# recipe's accuracy against the unquantised product (its diff against the FP8 reference is recorded).
FP8_BY_HAND = _deepgemm(
    "by_hand",
    "deepgemm.fp8_gemm_nt(deepgemm.per_token_cast_to_fp8(a), deepgemm.per_block_cast_to_fp8(b.T), d),"
    " d a fresh BF16 [M, N]; every kernel of the casts and the GEMM is timed",
    _prepare_fp8_by_hand,
    reference="fp8",
)
DEEPGEMM_MATMUL_FP8 = _deepgemm(
    "matmul",
    'deepgemm.matmul(a, b, precision="fp8"); every kernel of the call (quantisation and GEMM) is timed',
    _prepare_matmul_fp8,
    reference="bf16",
    max_diff=1e-3,
)


# The int8 suite's providers, on per-token / per-channel INT8 operands (``Int8Inputs``). The W8A8 ones
# write BF16 and are checked against the dequantised product (BF16 rounding costs about 1e-6); the raw
# _int_mm against the exact integer sums.
def _prepare_deepgemm_int8(inputs: Int8Inputs) -> Callable[[], torch.Tensor]:
    gemm = _deepgemm_op("int8_gemm_nt")
    d = torch.empty(inputs.a.shape[0], inputs.b.shape[0], dtype=torch.bfloat16, device=inputs.a.device)

    def run() -> torch.Tensor:
        gemm((inputs.a, inputs.sa), (inputs.b, inputs.sb), d)
        return d

    return run


def _int_mm_operands(inputs: Int8Inputs) -> tuple[torch.Tensor, torch.Tensor]:
    _require_cuda(inputs)
    if not hasattr(torch, "_int_mm"):
        raise ProviderUnavailable(f"torch {torch.__version__} has no torch._int_mm")
    # cuBLASLt's INT8 GEMM wants B column-major: the [K, N] view of the row-major [N, K] weight.
    return inputs.a, inputs.b.t()


def _prepare_torch_int_mm_scaled(inputs: Int8Inputs) -> Callable[[], torch.Tensor]:
    a, b = _int_mm_operands(inputs)
    # The scale vectors shaped for broadcasting once, as a caller would keep them.
    sa, sb = inputs.sa[:, None], inputs.sb[None, :]

    def run() -> torch.Tensor:
        return (torch._int_mm(a, b) * sa * sb).to(torch.bfloat16)

    return run


def _prepare_torch_int_mm(inputs: Int8Inputs) -> Callable[[], torch.Tensor]:
    a, b = _int_mm_operands(inputs)

    def run() -> torch.Tensor:
        return torch._int_mm(a, b)

    return run


DEEPGEMM_INT8 = _deepgemm(
    "deepgemm",
    "deepgemm.int8_gemm_nt((a, sa), (b, sb), d): int8 a [M, K], b [N, K], per-token sa [M] and"
    " per-channel sb [N] FP32 scales applied in the epilogue, into a preallocated BF16 d [M, N]",
    _prepare_deepgemm_int8,
    reference="int8",
)
TORCH_INT_MM_SCALED = Provider(
    "torch_int_mm_scaled",
    "(torch._int_mm(a, b.t()) * sa[:, None] * sb[None, :]).to(torch.bfloat16): the full W8A8 op in torch"
    " (cuBLASLt INT8 GEMM, then the scaling and the BF16 cast, every kernel timed)",
    _prepare_torch_int_mm_scaled,
    reference="int8",
)
TORCH_INT_MM = Provider(
    "torch_int_mm",
    "torch._int_mm(a, b.t()): the cuBLASLt INT8 GEMM alone, int32 sums, no scaling",
    _prepare_torch_int_mm,
    reference="int8_sums",
    max_diff=0.0,
)


# --- the 1D1D (weight-gradient) suites: 1x128 scales on both operands ---------------------------------------


def _wgrad_scales(inputs: WgradInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Both operands' scales in the MN-major layout the kernel reads, converted once (a caller keeps its
    scales that way); column slices of them stay in that layout."""
    return get_mn_major_tma_aligned_tensor(inputs.sa), get_mn_major_tma_aligned_tensor(inputs.sb)


def _prepare_deepgemm_wgrad(inputs: WgradInputs, out_dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    """FP32 out accumulates in place (``c`` is ``d``, the weight-gradient use: ``d`` starts at zero, so the
    checked first call is ``A·Bᵀ``); BF16 out is written."""
    gemm = _deepgemm_op("fp8_gemm_nt_1d1d")
    sa, sb = _wgrad_scales(inputs)
    d = torch.zeros(inputs.a.shape[0], inputs.b.shape[0], dtype=out_dtype, device=inputs.a.device)
    c = d if out_dtype == torch.float32 else None

    def run() -> torch.Tensor:
        gemm((inputs.a, sa), (inputs.b, sb), d, c)
        return d

    return run


def _prepare_deepgemm_k_grouped(inputs: WgradInputs) -> Callable[[], torch.Tensor]:
    gemm = _deepgemm_op("k_grouped_fp8_gemm_nt_1d1d")
    sa, sb = _wgrad_scales(inputs)
    d = torch.zeros(len(inputs.ks), inputs.a.shape[0], inputs.b.shape[0], dtype=torch.float32,
                    device=inputs.a.device)
    ks_host = list(inputs.ks)

    def run() -> torch.Tensor:
        gemm((inputs.a, sa), (inputs.b, sb), d, inputs.ks_tensor, ks_host, c=d)
        return d

    return run


def _prepare_deepgemm_wgrad_loop(inputs: WgradInputs) -> Callable[[], torch.Tensor]:
    """One dense ``fp8_gemm_nt_1d1d`` per non-empty group, accumulating into ``d[g]`` (views of the
    operands and of their converted scales: nothing is copied per call)."""
    gemm = _deepgemm_op("fp8_gemm_nt_1d1d")
    sa, sb = _wgrad_scales(inputs)
    d = torch.zeros(len(inputs.ks), inputs.a.shape[0], inputs.b.shape[0], dtype=torch.float32,
                    device=inputs.a.device)
    calls = []
    for group, k in enumerate(inputs.ks):
        if k:
            cols, scale_cols = inputs.group_slices(group)
            a, b = (inputs.a[:, cols], sa[:, scale_cols]), (inputs.b[:, cols], sb[:, scale_cols])
            calls.append((a, b, d[group]))

    def run() -> torch.Tensor:
        for a, b, out in calls:
            gemm(a, b, out, out)
        return d

    return run


def _blockwise_1x128_b_scale_candidates(sb: torch.Tensor) -> list[torch.Tensor]:
    """Layouts of B's 1x128 scales (``sb [N, KB]``, for ``mat_b = B.t()``) that torch versions may take for
    ``ScalingType.BlockWise1x128``: N-major ``[N, KB]`` (as A's are M-major), then its transposes."""
    return [sb.t().contiguous().t(), sb.t().contiguous(), sb.contiguous(), sb.contiguous().t()]


def _prepare_cublas_blockwise_1d1d(inputs: WgradInputs) -> Callable[[], torch.Tensor]:
    candidates = _blockwise_1x128_b_scale_candidates(inputs.sb)
    return _blockwise_scaled_mm(inputs, inputs.sa, "BlockWise1x128", candidates, "1x128 B scale layout",
                                reference=inputs.reference("fp8"))


_WGRAD_SCALES_ONCE = (
    "both operands' scales converted to get_mn_major_tma_aligned_tensor's layout once, untimed"
)
DEEPGEMM_WGRAD = _deepgemm(
    "deepgemm",
    "deepgemm.fp8_gemm_nt_1d1d((a, sa), (b, sb), d, c=d): accumulation into a preallocated FP32 d [M, N]"
    f" (zero before the checked first call); {_WGRAD_SCALES_ONCE}",
    functools.partial(_prepare_deepgemm_wgrad, out_dtype=torch.float32),
    reference="fp8",
)
DEEPGEMM_WGRAD_BF16 = _deepgemm(
    "deepgemm_bf16",
    f"deepgemm.fp8_gemm_nt_1d1d((a, sa), (b, sb), d) into a preallocated BF16 d [M, N]; {_WGRAD_SCALES_ONCE}",
    functools.partial(_prepare_deepgemm_wgrad, out_dtype=torch.bfloat16),
    reference="fp8",
)
CUBLAS_BLOCKWISE_1D1D = Provider(
    "cublas_blockwise",
    "torch.nn.functional.scaled_mm(a, b.t(), sa as [M, KB] strides (1, M), ScalingType.BlockWise1x128,"
    " sb in the first layout torch takes that reproduces the reference ([N, KB] N-major, else its"
    " transposes), ScalingType.BlockWise1x128, output_dtype=torch.bfloat16)",
    _prepare_cublas_blockwise_1d1d,
    reference="fp8",
)
DEEPGEMM_WGRAD_LOOP = _deepgemm(
    "deepgemm_loop",
    "a Python loop over the non-empty groups g: deepgemm.fp8_gemm_nt_1d1d on group g's K columns of a and b"
    " (views) accumulating into d[g] of a preallocated FP32 d [G, M, N]; the profiler timer sums the"
    f" kernels, not the host gaps; {_WGRAD_SCALES_ONCE}",
    _prepare_deepgemm_wgrad_loop,
    reference="fp8",
)
DEEPGEMM_K_GROUPED = _deepgemm(
    "deepgemm",
    "deepgemm.k_grouped_fp8_gemm_nt_1d1d((a, sa), (b, sb), d, ks, ks_host, c=d): accumulation into a"
    f" preallocated FP32 d [G, M, N]; {_WGRAD_SCALES_ONCE}",
    _prepare_deepgemm_k_grouped,
    reference="fp8",
)
DEEPGEMM_WGRAD_DENSE = _deepgemm(
    "deepgemm_dense",
    "deepgemm.fp8_gemm_nt_1d1d on the dense GEMM of the same total work (A [M, K_sum] x B [N, K_sum]^T, all"
    " groups' K in one), accumulating into a preallocated FP32 d [M, N]",
    functools.partial(_prepare_deepgemm_wgrad, out_dtype=torch.float32),
    reference="fp8",
    adapt=WgradInputs.dense_equivalent,
)


# The weight-only suites' providers (``wonly``: W4A16, ``wonly_w8``: W8A16), on ``WeightOnlyInputs``: BF16
# activations and a packed quantised weight; dense, or the masked MoE layout. Each is checked against the
# float64 product of the activations and the dequantised weight.
def _prepare_deepgemm_wonly(inputs: WeightOnlyInputs) -> Callable[[], torch.Tensor]:
    masked = inputs.masked_m is not None
    name = f"{'m_grouped_' if masked else ''}w{inputs.bits}a16_gemm_nt{'_masked' if masked else ''}"
    gemm = _deepgemm_op(name)
    d = torch.empty(*inputs.a.shape[:-1], inputs.w.shape[-2], dtype=torch.bfloat16, device=inputs.a.device)
    if masked:
        expected_m = max(inputs.counts)

        def run() -> torch.Tensor:
            gemm(inputs.a, inputs.b, d, inputs.masked_m, expected_m, group_size=inputs.group_size)
            return d

    else:

        def run() -> torch.Tensor:
            gemm(inputs.a, inputs.b, d, group_size=inputs.group_size)
            return d

    return run


def _prepare_cublas_bf16_dequantised(inputs: WeightOnlyInputs) -> Callable[[], object]:
    """``torch.matmul`` on the dequantised weight in BF16 (converted once, untimed); per group for the
    masked layout, on each group's valid rows."""
    _require_cuda(inputs)
    w = inputs.w.to(torch.bfloat16)
    if inputs.masked_m is None:
        a, b = inputs.a, w.t()

        def run() -> torch.Tensor:
            return a @ b

        return run
    experts = [(inputs.a[group, :count], w[group].t()) for group, count in enumerate(inputs.counts) if count]

    def run_groups() -> list[torch.Tensor]:
        return [a @ b for a, b in experts]

    return run_groups


def _fp8_masked_twin(inputs: WeightOnlyInputs) -> GroupedInputs:
    """The masked problem as FP8 operands (1x128 / 128x128 scales) for deepgemm's FP8 masked GEMM."""
    if inputs.masked_m is None:
        raise ProviderUnavailable("the FP8 masked GEMM runs the masked problems only")
    from deepgemm.testing import make_grouped_inputs

    num_groups, max_m, k = inputs.a.shape
    return make_grouped_inputs("masked", num_groups, list(inputs.counts), inputs.w.shape[-2], k, max_m,
                               inputs.a.device, seed=0)


DEEPGEMM_WONLY = _deepgemm(
    "deepgemm",
    "deepgemm.w<bits>a16_gemm_nt(a, (b_packed, sb), d, group_size) (masked problems:"
    " m_grouped_w<bits>a16_gemm_nt_masked(a, b, d, masked_m, expected_m=max rows, group_size)) into a"
    " preallocated BF16 d; the weight packed once, untimed",
    _prepare_deepgemm_wonly,
    reference="wq",
)
CUBLAS_BF16_DEQUANTISED = Provider(
    "cublas_bf16",
    "torch.matmul(a, w_bf16.t()) on the dequantised weight held in BF16 (converted once, untimed); masked"
    " problems: one call per non-empty group on its valid rows (the profiler sums the kernels)",
    _prepare_cublas_bf16_dequantised,
    reference="wq",
)
DEEPGEMM_FP8_MASKED_TWIN = _deepgemm(
    "deepgemm_fp8_masked",
    "deepgemm.m_grouped_fp8_gemm_nt_masked on FP8 operands of the same masked problem (1x128 / 128x128"
    " FP32 scales, the A scales converted once, untimed); masked problems only",
    _prepare_deepgemm_masked,
    reference="fp8",
    adapt=_fp8_masked_twin,
)




# ---- TF32 / FP32 and the seed's table ---------------------------------------------------------------


def _cublas_fp32(a: torch.Tensor, b: torch.Tensor, allow_tf32: bool) -> Callable[[], torch.Tensor]:
    """``torch.matmul(a, b)`` on FP32 operands with cuBLAS' TF32 mode set as asked for the call only."""

    def run() -> torch.Tensor:
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        try:
            return a @ b
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before

    return run


def _prepare_deepgemm_tf32(inputs: Fp32Inputs) -> Callable[[], torch.Tensor]:
    return _prepare_deepgemm_layout_op("tf32", inputs, torch.float32)


def _prepare_deepgemm_3xtf32(inputs: Fp32Inputs) -> Callable[[], torch.Tensor]:
    gemm = _deepgemm_op("tf32x3_gemm_nt")
    a, b_nk = inputs.a_mk, inputs.b_kn.t()
    d = torch.empty(a.shape[0], b_nk.shape[0], dtype=torch.float32, device=a.device)

    def run() -> torch.Tensor:
        gemm(a, b_nk, d)
        return d

    return run


def _prepare_deepgemm_3xtf32_gemm(inputs: Fp32Inputs) -> Callable[[], torch.Tensor]:
    """The 3xTF32 GEMM kernel on operands split once, untimed: the pair with `deepgemm_3xtf32` shows
    what the split costs inside a call."""
    if inputs.a.device.type != "cuda":
        raise ProviderUnavailable("the split GEMM kernel alone has no CPU path")
    from deepgemm.ops.tf32 import kernel

    a, b_nk = inputs.a_mk, inputs.b_kn.t()
    device = a.device.index if a.device.index is not None else torch.cuda.current_device()
    A, B = (kernel.staged(x, True, device) for x in (a, b_nk))
    d = torch.empty(a.shape[0], b_nk.shape[0], dtype=torch.float32, device=a.device)

    def run() -> torch.Tensor:
        kernel.launch_staged(A, B, a.shape[1], d, None, 3, device)
        return d

    return run


def _prepare_cublas_tf32(inputs: Fp32Inputs) -> Callable[[], torch.Tensor]:
    _require_cuda(inputs)
    return _cublas_fp32(inputs.a_mk, inputs.b_kn, allow_tf32=True)


def _prepare_cublas_fp32(inputs: Fp32Inputs) -> Callable[[], torch.Tensor]:
    _require_cuda(inputs)
    return _cublas_fp32(inputs.a_mk, inputs.b_kn, allow_tf32=False)


def _cold_sequence_pass(matmul: Callable, inputs: SequenceInputs) -> dict:
    """Runs the sequence once through a fresh, empty JIT disk cache, as a first run on a new machine
    would: the kernels it compiles, their seconds, and the distinct (N, K) the sequence holds."""
    count_before, start = compile_count(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deepgemm-cold-") as cache_dir:
        with knobs.jit_cache_dir_set_to(cache_dir):
            for a, b in zip(inputs.a, inputs.b, strict=True):
                matmul(a, b, dtype="float16")
            if inputs.a[0].is_cuda:
                torch.cuda.synchronize()
    return {
        "cold_compiles": compile_count() - count_before,
        "cold_seconds": round(time.perf_counter() - start, 3),
        "distinct_nk": len({(n, k) for _, n, k in inputs.sizes}),
        "num_calls": len(inputs.a),
    }


def _prepare_matmul_fp16(inputs: Bf16Inputs | SequenceInputs) -> Callable[[], object]:
    """``deepgemm.matmul(a, b, dtype="float16")``: one call, or one per GEMM of a sequence, whose
    first pass (untimed) runs on a cold JIT cache and is reported as the result's ``extra``."""
    matmul = _deepgemm_op("matmul")
    if isinstance(inputs, SequenceInputs):
        extra = _cold_sequence_pass(matmul, inputs)
        pairs = list(zip(inputs.a, inputs.b, strict=True))

        def run_sequence() -> list[torch.Tensor]:
            return [matmul(a, b, dtype="float16") for a, b in pairs]

        run_sequence.extra = extra
        return run_sequence
    a, b = inputs.a_mk, inputs.b_kn

    def run() -> torch.Tensor:
        return matmul(a, b, dtype="float16")

    return run


def _prepare_torch_matmul(inputs: Bf16Inputs | SequenceInputs) -> Callable[[], object]:
    _require_cuda_tensor(inputs.a[0] if isinstance(inputs, SequenceInputs) else inputs.a)
    if isinstance(inputs, SequenceInputs):
        pairs = list(zip(inputs.a, inputs.b, strict=True))
        return lambda: [a @ b for a, b in pairs]
    a, b = inputs.a_mk, inputs.b_kn
    return lambda: a @ b


def _require_cuda_tensor(x: torch.Tensor) -> None:
    if x.device.type != "cuda":
        raise ProviderUnavailable("cuBLAS providers need CUDA tensors")


# The TF32 suites' providers on FP32 operands. TF32 GEMMs are checked against the FP64 product of the
# operands as TF32 tensor cores read them; FP32-accurate ones against the FP64 product of the FP32
# operands (an FP32 GEMM lands between 1e-12 and 1e-9 there as K grows, a TF32 one near 5e-7).
DEEPGEMM_TF32 = _deepgemm(
    "deepgemm",
    "deepgemm.tf32_gemm_<major>(a, b, d) on a and b stored as the problem's major says (an MN-major"
    " operand is copied K-major inside the call, timed), into a preallocated FP32 d [M, N]",
    _prepare_deepgemm_tf32,
    reference="tf32",
)
CUBLAS_TF32 = Provider(
    "cublas_tf32",
    "torch.matmul on the same stored a and b (transposed views where the major says), with"
    " torch.backends.cuda.matmul.allow_tf32 = True",
    _prepare_cublas_tf32,
    reference="tf32",
)
DEEPGEMM_3XTF32 = _deepgemm(
    "deepgemm_3xtf32",
    "deepgemm.tf32x3_gemm_nt(a [M, K], b [N, K], d): both operands split into TF32 hi/lo parts by a"
    " copy kernel and three TF32 products summed in one FP32 accumulator, every kernel timed; into a"
    " preallocated FP32 d",
    _prepare_deepgemm_3xtf32,
    reference="fp64",
    max_diff=1e-8,
)
DEEPGEMM_3XTF32_GEMM = Provider(
    "deepgemm_3xtf32_gemm",
    "the GEMM kernel of deepgemm.tf32x3_gemm_nt alone (its config, three TF32 products, one FP32"
    " accumulator) on a and b split into TF32 hi/lo parts once, untimed; into a preallocated FP32 d",
    _prepare_deepgemm_3xtf32_gemm,
    reference="fp64",
    max_diff=1e-8,
)
CUBLAS_FP32 = Provider(
    "cublas_fp32",
    "torch.matmul(a, b) on FP32 with torch.backends.cuda.matmul.allow_tf32 = False (cuBLAS FP32 SIMT)",
    _prepare_cublas_fp32,
    reference="fp64",
    max_diff=1e-8,
)
# The seed's table: FP16 operands, FP16 results, checked against their FP32 product (FP16 output
# rounding costs about 1e-7).
DEEPGEMM_MATMUL_FP16 = _deepgemm(
    "matmul",
    'deepgemm.matmul(a, b, dtype="float16") on row-major FP16 a [M, K], b [K, N] (a sequence: one call'
    " per GEMM; its untimed first pass runs on a fresh JIT cache: compiles and seconds in 'extra'),"
    " every kernel of a call (padding copies included) timed",
    _prepare_matmul_fp16,
    reference="bf16",
)
TORCH_MATMUL_FP16 = Provider(
    "cublas",
    "torch.matmul(a, b) on the same FP16 a and b (a sequence: one call per GEMM)",
    _prepare_torch_matmul,
    reference="bf16",
)
