"""The Mixture-of-Experts grouped FP8 GEMMs: each row of A is multiplied by the weights of its expert.

Three ways to say which rows belong to which expert: ``m_indices`` (one expert id per row),
``group_ends`` (a running sum of the experts' row counts) for one ``[M_sum, K]`` A, and ``masked_m``
(a row count per expert) for a ``[G, max_m, K]`` A. Each op validates its arguments, then runs the
CPU path (``common.cpu_path``) or the GPU kernel (``kernel``); neither writes padding rows of ``d``.
"""

import torch
from torch import Tensor

from ...heuristics.families.fp8_1d2d import masked_sfb_row_floats
from ..common.cpu_path import m_grouped_fp8_gemm_nt_contiguous_fp32, m_grouped_fp8_gemm_nt_masked_fp32
from ..common.group_indices import (
    masked_rows,
    offsets_m_indices,
    settled_contiguous,
    settled_masked,
    write_rows,
)
from ..common.lazy import lazy_import
from ..common.settings import hopper_index
from ..common.traced import eager, integer, scaled_pairs, tensors, traceable
from ..common.validation import (
    check_d_row_bytes,
    check_dtype,
    check_fp8_operand,
    check_grouped_kernel_dims,
    check_index_vector,
    check_multiple,
    check_no_overlap,
    check_packed_groups,
    check_positive_int,
    check_row_major,
    check_same_device,
    check_shape,
    check_tensor,
    check_tma_operand,
    warn_if_slow_cpu,
)
from .dense import OUT_DTYPES, FP8Operand

# `kernel`, imported on the first GPU call: CPU use never loads the CUDA driver modules.
_kernel = lazy_import("deepgemm.ops.fp8.kernel")


# --- the custom ops (torch.compile): each unpacks its arguments into the public op's ----------------------


def _m_grouped_fp8_gemm_nt_contiguous_op(a: Tensor, sfa: Tensor, b: Tensor, sfb: Tensor, d: Tensor,
                                         m_indices: Tensor) -> None:
    eager("m_grouped_fp8_gemm_nt_contiguous")((a, sfa), (b, sfb), d, m_indices)


def _m_grouped_fp8_gemm_nt_contiguous_offsets_op(a: Tensor, sfa: Tensor, b: Tensor, sfb: Tensor, d: Tensor,
                                                 group_ends: Tensor) -> None:
    eager("m_grouped_fp8_gemm_nt_contiguous_offsets")((a, sfa), (b, sfb), d, group_ends)


def _m_grouped_fp8_gemm_nt_masked_op(a: Tensor, sfa: Tensor, b: Tensor, sfb: Tensor, d: Tensor,
                                     masked_m: Tensor, expected_m: int) -> None:
    eager("m_grouped_fp8_gemm_nt_masked")((a, sfa), (b, sfb), d, masked_m, expected_m)


def _contiguous_op_args(a: object, b: object, d: object, index: object) -> tuple[tuple, torch.Tensor] | None:
    """The contiguous custom ops' arguments (see ``traced.traceable``)."""
    return ((*a, *b, d, index), d) if scaled_pairs(a, b) and tensors(d, index) else None


def _masked_op_args(
    a: object, b: object, d: object, masked_m: object, expected_m: object
) -> tuple[tuple, torch.Tensor] | None:
    """The masked custom op's arguments (see ``traced.traceable``)."""
    if not (scaled_pairs(a, b) and tensors(d, masked_m) and integer(expected_m)):
        return None
    return (*a, *b, d, masked_m, int(expected_m)), d


# --- the ops ----------------------------------------------------------------------------------------------

@traceable(lambda a, b, d, m_indices: _contiguous_op_args(a, b, d, m_indices),
           _m_grouped_fp8_gemm_nt_contiguous_op)
def m_grouped_fp8_gemm_nt_contiguous(
    a: FP8Operand, b: FP8Operand, d: torch.Tensor, m_indices: torch.Tensor
) -> torch.Tensor:
    """MoE grouped ``D = A · B[e]ᵀ`` where row ``m`` uses expert ``e = m_indices[m]``; returns ``d``.

    ``D[m, n] = Σ_kb sfa[m, kb] · sfb[e, n // 128, kb] · Σ_{k in block kb} A[m, k] · B[e, n, k]``,
    promoted and rounded as in ``fp8_gemm_nt``. The expert rows of ``d`` are overwritten; padding
    rows (``m_indices[m] == -1``) are left untouched.

    Tensor contract (all on one device, CPU or a Hopper GPU):
        a = (A, sfa):
            A: ``float8_e4m3fn [M_sum, K]``, the rows of all experts; K-major with the stride rules
                of ``fp8_gemm_nt``'s A.
            sfa: ``float32 [M_sum, ceil(K/128)]``, any strides (``get_mn_major_tma_aligned_tensor``'s
                layout saves a copy per GPU call).
        b = (B, sfb):
            B: ``float8_e4m3fn [G, N, K]``, one weight matrix per expert: ``stride(2) == 1``, the
                other strides multiples of 16 elements, experts and rows not overlapping (views of
                larger buffers work), 16-byte-aligned start.
            sfb: ``float32 [G, ceil(N/128), ceil(K/128)]``, contiguous row-major (as
                ``per_block_cast_to_fp8`` returns it).
        d: ``bfloat16`` or ``float32 [M_sum, N]``, with the stride rules of ``fp8_gemm_nt``'s d.
        m_indices: ``int32 [M_sum]``, contiguous: the expert of each row in ``[0, G)``, -1 for padding.
    Layout of ``m_indices``: each expert's rows start at a multiple of 128
    (``get_m_alignment_for_contiguous_layout()``) and are padded with -1 rows to the next multiple
    of 128. The rule behind it: within every aligned 128-row block the expert rows all belong to one
    expert and come first, padding rows after them. Blocks made only of padding rows cost no
    tensor-core work. Values cannot be checked on a GPU without a host sync, so values that break the
    layout give unspecified values in the affected rows of ``d`` (never an access outside the
    tensors); ``DG_DEBUG_CHECK_INDICES=1`` checks them on the host (a sync) and raises ``ValueError``
    naming the first bad row and its block. CPU calls always check them.
    Sizes: any ``M_sum >= 0`` and ``G >= 0``; ``N`` a multiple of 8 for BF16 ``d``, of 4 for FP32;
    ``K`` a multiple of 16. ``M_sum == 0``, ``N == 0`` or ``G == 0``: nothing to do; ``K == 0``: the
    expert rows of ``d`` are zero-filled (no host sync).

    Raises (before anything runs): ``TypeError`` for a non-tensor or a wrong dtype; ``ValueError``
    for a wrong rank or shape, a size or stride rule, a non-contiguous ``m_indices``, tensors on
    different or unsupported devices, or (CPU, or the debug knob) bad index values;
    ``RuntimeError`` for a CUDA device that is not Hopper (sm_90).
    """
    A, sfa, B, sfb, m_indices, cuda_index = _checked_contiguous(a, b, d, "m_indices", m_indices, "M_sum")
    m_sum, k = A.shape
    num_groups, n = B.shape[:2]
    settled = settled_contiguous(d, m_indices, num_groups, n, k, cuda_index)
    if settled is not None:
        return settled
    if cuda_index is None:
        warn_if_slow_cpu("m_grouped_fp8_gemm_nt_contiguous", m_sum, n, k)
        out = m_grouped_fp8_gemm_nt_contiguous_fp32(A, sfa, B, sfb, m_indices)
        return write_rows(d, out, m_indices >= 0)
    _kernel().launch_m_grouped_contiguous(A, sfa, B, sfb, d, m_indices, cuda_index)
    return d


@traceable(lambda a, b, d, group_ends: _contiguous_op_args(a, b, d, group_ends),
           _m_grouped_fp8_gemm_nt_contiguous_offsets_op)
def m_grouped_fp8_gemm_nt_contiguous_offsets(
    a: FP8Operand, b: FP8Operand, d: torch.Tensor, group_ends: torch.Tensor
) -> torch.Tensor:
    """``m_grouped_fp8_gemm_nt_contiguous`` with the experts' rows given by their ends; returns ``d``.

    ``a``, ``b`` and ``d`` as in ``m_grouped_fp8_gemm_nt_contiguous``; instead of ``m_indices``:
        group_ends: ``int32 [G]``, contiguous, a running sum: expert ``g`` owns rows
            ``[align_up(group_ends[g-1], 128), group_ends[g])`` with ``group_ends[-1] := 0``. Rows in
            no expert are padding and are left untouched.
    Valid values: each ``group_ends[g]`` equals ``group_ends[g-1]`` (an empty expert) or is
    ``>= align_up(group_ends[g-1], 128)``, and ``group_ends[G-1] <= M_sum``. From per-expert row
    counts ``c``: ``group_ends[g] = align_up(group_ends[g-1], 128) + c[g]``. The kernel reads G
    values instead of M_sum. Bad values, as for ``m_indices``: unspecified rows of ``d`` on a GPU
    unless ``DG_DEBUG_CHECK_INDICES=1`` (host check, ``ValueError`` naming the first bad entry);
    CPU calls always check them. ``K == 0`` zero-fills the expert rows; sizes and errors otherwise
    as in ``m_grouped_fp8_gemm_nt_contiguous``.
    """
    A, sfa, B, sfb, group_ends, cuda_index = _checked_contiguous(a, b, d, "group_ends", group_ends, "G")
    m_sum, k = A.shape
    num_groups, n = B.shape[:2]
    if m_sum == 0 or n == 0 or num_groups == 0:
        return d
    m_indices = offsets_m_indices(group_ends, m_sum, k, cuda_index)
    if m_indices is not None:
        if k == 0:
            return d.masked_fill_((m_indices >= 0)[:, None], 0)
        warn_if_slow_cpu("m_grouped_fp8_gemm_nt_contiguous_offsets", m_sum, n, k)
        out = m_grouped_fp8_gemm_nt_contiguous_fp32(A, sfa, B, sfb, m_indices)
        return write_rows(d, out, m_indices >= 0)
    _kernel().launch_m_grouped_contiguous_offsets(A, sfa, B, sfb, d, group_ends, cuda_index)
    return d


@traceable(lambda a, b, d, masked_m, expected_m: _masked_op_args(a, b, d, masked_m, expected_m),
           _m_grouped_fp8_gemm_nt_masked_op)
def m_grouped_fp8_gemm_nt_masked(
    a: FP8Operand, b: FP8Operand, d: torch.Tensor, masked_m: torch.Tensor, expected_m: int
) -> torch.Tensor:
    """MoE grouped ``D[g] = A[g] · B[g]ᵀ`` over the first ``masked_m[g]`` rows of each expert; returns ``d``.

    Each expert has a fixed ``max_m`` rows of A and d, of which the first ``masked_m[g]`` are
    computed and written (promoted and rounded as in ``fp8_gemm_nt``); rows ``>= masked_m[g]`` are
    left untouched. The row counts stay on the device: no host sync, so the call can be captured in
    a CUDA graph (call each shape once before capturing, so the kernel is compiled and loaded).

    Tensor contract (all on one device, CPU or a Hopper GPU):
        a = (A, sfa):
            A: ``float8_e4m3fn [G, max_m, K]``: ``stride(2) == 1``, the other strides multiples of
                16 elements, not overlapping, 16-byte-aligned start.
            sfa: ``float32 [G, max_m, ceil(K/128)]``, any strides (``get_mn_major_tma_aligned_tensor``'s
                layout saves a copy per GPU call).
        b = (B, sfb): as in ``m_grouped_fp8_gemm_nt_contiguous``: ``[G, N, K]`` and
            ``[G, ceil(N/128), ceil(K/128)]`` (where ``ceil(K/128)`` is not a multiple of 4, or sfb
            does not start 16-byte aligned, a GPU call passes the kernel a padded copy of sfb).
        d: ``bfloat16`` or ``float32 [G, max_m, N]``: ``stride(2) == 1``, the other strides
            multiples of 16 bytes, not overlapping, 16-byte-aligned start.
        masked_m: ``int32 [G]``, contiguous: the valid rows of each expert, each in ``[0, max_m]``.
        expected_m: ``int > 0``, the typical ``masked_m`` value; it only chooses the kernel's tiles.
    A ``masked_m`` value outside ``[0, max_m]`` gives unspecified values in that expert's rows of
    ``d`` on a GPU (never an access outside the tensors); ``DG_DEBUG_CHECK_INDICES=1`` checks the
    values on the host (a sync) and raises ``ValueError``; CPU calls always check them.
    Sizes: any ``G >= 0`` and ``max_m >= 0``; ``N`` a multiple of 8 for BF16 ``d``, of 4 for FP32;
    ``K`` a multiple of 16. ``G == 0``, ``max_m == 0`` or ``N == 0``: nothing to do; ``K == 0``: the
    valid rows of ``d`` are zero-filled (no host sync).

    Raises (before anything runs): ``TypeError`` for a non-tensor, a wrong dtype or a non-int
    ``expected_m`` (``bool`` included); ``ValueError`` for a wrong rank or shape, a size or stride
    rule, a non-contiguous ``masked_m``, ``expected_m <= 0``, tensors on different or unsupported
    devices, or (CPU, or the debug knob) bad ``masked_m`` values; ``RuntimeError`` for a CUDA device
    that is not Hopper (sm_90).
    """
    A, sfa, B, sfb, masked_m, expected_m, cuda_index = _checked_masked(a, b, d, masked_m, expected_m)
    num_groups, max_m, k = A.shape
    n = B.shape[1]
    settled = settled_masked(d, masked_m, max_m, n, k, cuda_index)
    if settled is not None:
        return settled
    if cuda_index is None:
        warn_if_slow_cpu("m_grouped_fp8_gemm_nt_masked", num_groups * max_m, n, k)
        out = m_grouped_fp8_gemm_nt_masked_fp32(A, sfa, B, sfb, masked_m)
        return write_rows(d, out, masked_rows(masked_m, max_m))
    _kernel().launch_m_grouped_masked(A, sfa, B, sfb, d, masked_m, expected_m, cuda_index)
    return d


# --- argument checks ------------------------------------------------------------------------------------


def _checked_contiguous(
    a: object, b: object, d: object, index_name: str, index: object, index_dim: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int | None]:
    """Check every rule of the two contiguous ops, whose index tensor ``index_name`` is
    ``int32 [index_dim]`` (``m_indices [M_sum]`` or ``group_ends [G]``).

    Returns ``(A, sfa, B, sfb, index, the CUDA device index or None for the CPU)``, after
    ``require_hopper`` on a CUDA device.
    """
    A, sfa = check_fp8_operand("a", a, ("A", "sfa"), ("M_sum", "K"), scale_block_rows=1)
    B, sfb = check_fp8_operand("b", b, ("B", "sfb"), ("G", "N", "K"), scale_block_rows=128)
    check_dtype("d", check_tensor("d", d), OUT_DTYPES)
    m_sum, k = A.shape
    num_groups, n = B.shape[:2]
    index = check_index_vector(index_name, index, index_dim, m_sum if index_dim == "M_sum" else num_groups)
    check_shape("B (b[0])", B, ("G", "N", "K"), (num_groups, n, k))
    check_shape("d", d, ("M_sum", "N"), (m_sum, n))
    cuda_index = _check_sizes_devices_layouts(A, sfa, B, sfb, d, index_name, index)
    return A, sfa, B, sfb, index, cuda_index


def _checked_masked(
    a: object, b: object, d: object, masked_m: object, expected_m: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, int | None]:
    """Check every rule of ``m_grouped_fp8_gemm_nt_masked``; returns ``(A, sfa, B, sfb, masked_m,
    expected_m, the CUDA device index or None for the CPU)``, after ``require_hopper`` on a CUDA device."""
    A, sfa = check_fp8_operand("a", a, ("A", "sfa"), ("G", "max_m", "K"), scale_block_rows=1)
    B, sfb = check_fp8_operand("b", b, ("B", "sfb"), ("G", "N", "K"), scale_block_rows=128)
    check_dtype("d", check_tensor("d", d), OUT_DTYPES)
    num_groups, max_m, k = A.shape
    n = B.shape[1]
    masked_m = check_index_vector("masked_m", masked_m, "G", num_groups)
    expected_m = check_positive_int("expected_m", expected_m)
    check_shape("B (b[0])", B, ("G", "N", "K"), (num_groups, n, k))
    check_shape("d", d, ("G", "max_m", "N"), (num_groups, max_m, n))
    cuda_index = _check_sizes_devices_layouts(A, sfa, B, sfb, d, "masked_m", masked_m)
    return A, sfa, B, sfb, masked_m, expected_m, cuda_index


def _check_sizes_devices_layouts(
    A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor, d: torch.Tensor,
    index_name: str, index: torch.Tensor,
) -> int | None:
    """The rules all grouped ops share once the shapes agree (the same as ``fp8_gemm_nt``'s); returns
    the CUDA device index, or ``None`` for the CPU."""
    check_multiple("K", A.shape[-1], 16, "TMA needs 16-byte rows of FP8 in A and B")
    check_d_row_bytes(B.shape[1], d)
    # The masked kernel reads B scales whose rows are padded to 16 bytes (`kernel.masked_sfb`).
    num_scales = (sfb.numel() if A.dim() == 2
                  else sfb.shape[0] * sfb.shape[1] * masked_sfb_row_floats(sfb.shape[2]))
    check_grouped_kernel_dims(A, B, "sfb (b[1])", num_scales)
    inputs = {"A (a[0])": A, "sfa (a[1])": sfa, "B (b[0])": B, "sfb (b[1])": sfb, index_name: index}
    device = check_same_device({**inputs, "d": d})
    check_tma_operand("A (a[0])", A)
    check_tma_operand("B (b[0])", B)
    check_packed_groups("B (b[0])", B, ("G", "N", "K"))
    check_tma_operand("d", d)
    check_row_major("sfb (b[1])", sfb, ("G", "ceil(N/128)", "ceil(K/128)"))
    check_no_overlap("d", d, inputs)
    return hopper_index(device)
