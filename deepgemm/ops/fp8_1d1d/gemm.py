"""The FP8 GEMMs with 1x128 scales on both operands ("1D1D", the weight-gradient recipe): the dense op and
the k-grouped op for MoE experts. Each validates its arguments, then runs the CPU path
(``common.cpu_path``) or the GPU kernel (``kernel``, imported on the first GPU call).

In a weight gradient ``dW = dYᵀ · X`` the reduction runs over tokens, so both operands are quantised per
token along K (1x128 blocks):
``D[m, n] = C[m, n] + Σ_kb sa[m, kb] · sb[n, kb] · Σ_{k in kb} A[m, k] · B[n, k]``.
The scale recipe is in the op's name; nothing is guessed from the scales' shapes.
"""

import numbers
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ...quant.cast import BLOCK_K
from ..common.cpu_path import fp8_gemm_nt_1d1d_fp32, k_grouped_fp8_gemm_nt_1d1d_fp32
from ..common.group_indices import check_index_values_now
from ..common.lazy import lazy_import
from ..common.settings import hopper_index
from ..common.traced import eager, scaled_pairs, tensors, traceable
from ..common.validation import (
    check_dense_kernel_dims,
    check_dtype,
    check_fp8_operand,
    check_index_vector,
    check_kernel_dims,
    check_multiple,
    check_no_overlap,
    check_rank,
    check_same_device,
    check_shape,
    check_tensor,
    check_tile_count,
    check_tma_operand,
)

OUT_DTYPES = (torch.float32, torch.bfloat16)
GROUPED_OUT_DTYPES = (torch.float32,)
K_RULE = "each 128-wide K block carries one scale per row of A and of B; pad K (and the scales) with zeros"

FP8Operand = tuple[torch.Tensor, torch.Tensor]

# `kernel`, imported on the first GPU call: CPU use never loads the CUDA driver modules.
_kernel = lazy_import("deepgemm.ops.fp8_1d1d.kernel")


# --- the custom ops (torch.compile): each unpacks its arguments into the public op's ----------------------
# C may be d itself; a schema input cannot alias the mutated d, so that case is a flag.


def _fp8_gemm_nt_1d1d_op(a: Tensor, sa: Tensor, b: Tensor, sb: Tensor, d: Tensor, c: Tensor | None,
                         c_is_d: bool) -> None:
    eager("fp8_gemm_nt_1d1d")((a, sa), (b, sb), d, d if c_is_d else c)


def _k_grouped_fp8_gemm_nt_1d1d_op(a: Tensor, sa: Tensor, b: Tensor, sb: Tensor, d: Tensor, ks: Tensor,
                                   ks_host: list[int] | None, c: Tensor | None, c_is_d: bool) -> None:
    eager("k_grouped_fp8_gemm_nt_1d1d")((a, sa), (b, sb), d, ks, ks_host, d if c_is_d else c)


def _dense_op_args(a: object, b: object, d: object, c: object = None) -> tuple[tuple, Tensor] | None:
    if not (scaled_pairs(a, b) and tensors(d) and (c is None or isinstance(c, Tensor))):
        return None
    return (*a, *b, d, None if c is d else c, c is d), d


def _k_grouped_op_args(a: object, b: object, d: object, ks: object, ks_host: object = None,
                       c: object = None) -> tuple[tuple, Tensor] | None:
    if not (scaled_pairs(a, b) and tensors(d, ks) and (c is None or isinstance(c, Tensor))):
        return None
    if ks_host is not None and not (isinstance(ks_host, list | tuple) and all(_is_int(x) for x in ks_host)):
        return None
    host = None if ks_host is None else [int(x) for x in ks_host]
    return (*a, *b, d, ks, host, None if c is d else c, c is d), d


# --- the ops ----------------------------------------------------------------------------------------------


@traceable(_dense_op_args, _fp8_gemm_nt_1d1d_op)
def fp8_gemm_nt_1d1d(a: FP8Operand, b: FP8Operand, d: torch.Tensor,
                     c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + A · Bᵀ`` with 1x128 scales on both A and B (weight gradients), into ``d``; returns ``d``.

    ``D[m, n] = C[m, n] + Σ_kb sa[m, kb] · sb[n, kb] · Σ_{k in block kb} A[m, k] · B[n, k]``: each
    128-K block's partial sum is scaled by ``sa[m, kb] · sb[n, kb]`` and accumulated in FP32, ``C`` is
    added once at the end, and the sum is rounded once to ``d``'s dtype.

    Tensor contract (all on one device, CPU or a Hopper GPU):
        a = (A, sa):
            A: ``float8_e4m3fn [M, K]``, K-major: ``stride(1) == 1``, ``stride(0)`` a multiple of 16
                elements and ``>= K`` (views of larger buffers work), 16-byte-aligned start.
            sa: ``float32 [M, K/128]``, any strides (``get_mn_major_tma_aligned_tensor``'s layout
                saves a small transposing copy per GPU call).
        b = (B, sb): ``B float8_e4m3fn [N, K]`` and ``sb float32 [N, K/128]`` (one scale per row of B
            per 128 K: 1x128, not 128x128), with the same rules as A and sa.
        d: ``float32`` or ``bfloat16 [M, N]`` with contiguous rows (``stride(1) == 1``), rows not
            overlapping. A row stride that is a multiple of 16 bytes and a 16-byte-aligned start let
            the kernel store in place; other ``d`` (e.g. a contiguous FP32 ``d`` with N not a multiple
            of 4) cost a padded temporary and a copy per GPU call.
        c: ``None`` (``D = A · Bᵀ``) or ``float32 [M, N]``, any strides, for a ``float32`` ``d`` only.
            ``c`` may be ``d`` itself: in-place accumulation ``d += A · Bᵀ``; any other ``c`` must not
            overlap ``d``.
    Sizes: any ``M, N >= 0``; ``K`` a multiple of 128 (the scale blocks). ``M == 0`` or ``N == 0``:
    nothing to do; ``K == 0``: ``d`` becomes ``c`` (or zeros).

    Raises (before anything runs): ``TypeError`` for a non-tensor or a wrong dtype; ``ValueError``
    for a wrong rank or shape, a size or stride rule (sizes the kernel indexes in 32 bits: each
    below 2^31), a ``c`` that partly overlaps ``d``, a ``d`` that overlaps an input, or tensors on
    different or unsupported devices; ``RuntimeError`` for a CUDA device that is not Hopper (sm_90).
    """
    A, sa, B, sb, cuda_index = _checked_dense(a, b, d, c)
    m, k = A.shape
    n = B.shape[0]
    if m == 0 or n == 0:
        return d
    if k == 0:
        return d.zero_() if c is None else d.copy_(c)
    if cuda_index is None:
        out = fp8_gemm_nt_1d1d_fp32(A, sa, B, sb)
        if c is not None:
            out += c
        return d.copy_(out)
    _kernel().launch_fp8_gemm_nt_1d1d(A, sa, B, sb, d, c, cuda_index)
    return d


@traceable(_k_grouped_op_args, _k_grouped_fp8_gemm_nt_1d1d_op)
def k_grouped_fp8_gemm_nt_1d1d(a: FP8Operand, b: FP8Operand, d: torch.Tensor, ks: torch.Tensor,
                               ks_host: Sequence[int] | None = None,
                               c: torch.Tensor | None = None) -> torch.Tensor:
    """k-grouped ``D[g] = C[g] + A_g · B_gᵀ`` (MoE weight gradients), into ``d``; returns ``d``.

    Group ``g`` (an expert) owns the K columns ``[k_g, k_g + ks[g])`` of A and B, with
    ``k_g = Σ_{h<g} ks[h]``, and the scale columns ``[k_g/128, (k_g + ks[g])/128)``: the experts'
    tokens stored back to back along K, as the contiguous layout produces them. Each group is computed
    as ``fp8_gemm_nt_1d1d`` computes one GEMM; a group with ``ks[g] == 0`` gives ``D[g] = C[g]`` (or 0).

    Tensor contract (all on one device, CPU or a Hopper GPU):
        a = (A, sa): ``A float8_e4m3fn [M, K_sum]``, ``sa float32 [M, K_sum/128]``, the rules of
            ``fp8_gemm_nt_1d1d``'s a.
        b = (B, sb): ``B float8_e4m3fn [N, K_sum]``, ``sb float32 [N, K_sum/128]``, the same rules.
        d: ``float32 [G, M, N]`` with contiguous rows, groups and rows not overlapping (the rules of
            ``fp8_gemm_nt_1d1d``'s d, per group).
        ks: ``int32 [G]``, contiguous, on the tensors' device: the groups' K sizes, each a multiple of
            128 (0 allowed), summing to ``K_sum``. The kernel reads them on the GPU (no host sync: the
            call can be captured in a CUDA graph).
        ks_host: ``None`` or the same sizes as a list (or tuple) of ``G`` ints on the host. When given,
            its values are checked (free) in place of ``ks``'s; it must equal ``ks``.
        c: ``None`` or ``float32 [G, M, N]``, any strides; may be ``d`` itself (in-place accumulation);
            any other ``c`` must not overlap ``d``.
    Sizes: any ``G, M, N >= 0``; ``K_sum`` a multiple of 128. Values of ``ks`` on a GPU are checked only
    under ``DG_DEBUG_CHECK_INDICES=1`` (a host sync) or through ``ks_host``; bad values give unspecified
    values in ``d`` (never an access outside the tensors). CPU calls always check them.

    Raises (before anything runs): ``TypeError`` for a non-tensor, a wrong dtype or a non-int
    ``ks_host`` entry; ``ValueError`` for a wrong rank or shape, a size or stride rule, bad ``ks`` or
    ``ks_host`` values (where checked), a ``c`` that partly overlaps ``d``, a ``d`` that overlaps an
    input (``ks`` included), ``G * M`` or another size at or past 2^31, or tensors on different or
    unsupported devices; ``RuntimeError`` for a CUDA device that is not Hopper (sm_90).
    """
    A, sa, B, sb, ks, host, cuda_index = _checked_k_grouped(a, b, d, ks, ks_host, c)
    num_groups, m, n = d.shape
    k_sum = A.shape[1]
    if num_groups == 0 or m == 0 or n == 0:
        return d
    if cuda_index is None or check_index_values_now(cuda_index):
        values = ks.tolist()
        _check_group_sizes("ks", values, k_sum)
        if host is not None and host != values:
            raise ValueError(f"ks_host must equal ks, found ks_host={host} and ks={values}")
    if k_sum == 0:
        return d.zero_() if c is None else d.copy_(c)
    if cuda_index is None:
        out = k_grouped_fp8_gemm_nt_1d1d_fp32(A, sa, B, sb, values)
        if c is not None:
            out += c
        return d.copy_(out)
    _kernel().launch_k_grouped_fp8_gemm_nt_1d1d(A, sa, B, sb, d, ks, host, c, cuda_index)
    return d


# --- argument checks ------------------------------------------------------------------------------------


def _checked_dense(a: object, b: object, d: object,
                   c: object) -> tuple[Tensor, Tensor, Tensor, Tensor, int | None]:
    """Check every rule of ``fp8_gemm_nt_1d1d``; returns ``(A, sa, B, sb, the CUDA device index or None
    for the CPU)``, after ``require_hopper`` on a CUDA device."""
    A, sa = check_fp8_operand("a", a, ("A", "sa"), ("M", "K"), scale_block_rows=1)
    B, sb = check_fp8_operand("b", b, ("B", "sb"), ("N", "K"), scale_block_rows=1)
    check_dtype("d", check_tensor("d", d), OUT_DTYPES)
    m, k = A.shape
    n = B.shape[0]
    check_shape("B (b[0])", B, ("N", "K"), (n, k))
    check_shape("d", d, ("M", "N"), (m, n))
    check_multiple("K", k, BLOCK_K, K_RULE)
    check_dense_kernel_dims(m, n, k)
    return A, sa, B, sb, _check_rest(A, sa, B, sb, d, c, ("M", "N"), {})


def _checked_k_grouped(
    a: object, b: object, d: object, ks: object, ks_host: object, c: object
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, list[int] | None, int | None]:
    """Check every rule of ``k_grouped_fp8_gemm_nt_1d1d`` that needs no index values from the device;
    returns ``(A, sa, B, sb, ks, ks_host as a list or None, the CUDA device index or None)``."""
    A, sa = check_fp8_operand("a", a, ("A", "sa"), ("M", "K_sum"), scale_block_rows=1)
    B, sb = check_fp8_operand("b", b, ("B", "sb"), ("N", "K_sum"), scale_block_rows=1)
    ks = check_tensor("ks", ks)
    check_rank("ks", ks, ("G",))
    num_groups = ks.shape[0]
    ks = check_index_vector("ks", ks, "G", num_groups)
    check_dtype("d", check_tensor("d", d), GROUPED_OUT_DTYPES)
    m, k_sum = A.shape
    n = B.shape[0]
    check_shape("B (b[0])", B, ("N", "K_sum"), (n, k_sum))
    check_shape("d", d, ("G", "M", "N"), (num_groups, m, n))
    check_multiple("K_sum", k_sum, BLOCK_K, K_RULE)
    # The kernel stores d as one [G * M, N] matrix.
    check_kernel_dims({"M": m, "N": n, "K_sum": k_sum, "G": num_groups, "G * M": num_groups * m})
    check_tile_count("G * M", num_groups * m, n)
    host = _check_ks_host(ks_host, num_groups, k_sum)
    return A, sa, B, sb, ks, host, _check_rest(A, sa, B, sb, d, c, ("G", "M", "N"), {"ks": ks})


def _check_rest(A: Tensor, sa: Tensor, B: Tensor, sb: Tensor, d: Tensor, c: object, d_dims: tuple[str, ...],
                others: Mapping[str, Tensor]) -> int | None:
    """The rules both ops share once the shapes of A, B and d agree: ``c``, one device, the layouts."""
    named = {"A (a[0])": A, "sa (a[1])": sa, "B (b[0])": B, "sb (b[1])": sb, "d": d, **others}
    if c is not None:
        check_tensor("c", c)
        if d.dtype != torch.float32:
            raise ValueError(f"c needs a float32 d (C is accumulated in FP32; a {d.dtype} d takes no c)")
        check_dtype("c", c, (torch.float32,))
        check_shape("c", c, d_dims, tuple(d.shape))
        named["c"] = c
    device = check_same_device(named)
    check_tma_operand("A (a[0])", A)
    check_tma_operand("B (b[0])", B)
    check_output_rows("d", d)
    # A view of d with d's layout is d itself.
    same_as_d = c is not None and (c is d or (c.data_ptr(), c.stride()) == (d.data_ptr(), d.stride()))
    if c is not None and not same_as_d and _overlap(c, d):
        raise ValueError("c must be d itself (in-place accumulation) or not overlap d in memory")
    check_no_overlap("d", d, {name: tensor for name, tensor in named.items() if name not in ("d", "c")})
    return hopper_index(device)


def check_output_rows(name: str, tensor: Tensor) -> None:
    """Contiguous rows (``stride(-1) == 1``) and slices along each dim that do not overlap; empty passes."""
    if tensor.numel() == 0:
        return
    shape, strides = tensor.shape, tensor.stride()
    if strides[-1] != 1:
        raise ValueError(f"{name} must have contiguous rows (stride(-1) == 1), found strides {strides}")
    span = shape[-1]
    for dim in range(len(shape) - 2, -1, -1):
        if shape[dim] > 1 and strides[dim] < span:
            raise ValueError(
                f"{name}.stride({dim}) must be >= {span} so that slices do not overlap, found {strides[dim]}"
            )
        span += (shape[dim] - 1) * strides[dim]


def _byte_range(tensor: Tensor) -> tuple[int, int]:
    start = tensor.data_ptr()
    span = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True)) + 1
    return start, start + span * tensor.element_size()


def _overlap(x: Tensor, y: Tensor) -> bool:
    if x.numel() == 0 or y.numel() == 0 or x.device != y.device:
        return False
    (x0, x1), (y0, y1) = _byte_range(x), _byte_range(y)
    return x0 < y1 and y0 < x1


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_ks_host(ks_host: object, num_groups: int, k_sum: int) -> list[int] | None:
    if ks_host is None:
        return None
    if not isinstance(ks_host, list | tuple):
        raise TypeError(f"ks_host must be None or a list of ints, got {type(ks_host).__name__}")
    if len(ks_host) != num_groups:
        raise ValueError(f"ks_host must have G = len(ks) = {num_groups} entries, found {len(ks_host)}")
    for group, value in enumerate(ks_host):
        if not _is_int(value):
            raise TypeError(f"ks_host[{group}] must be an int, got {type(value).__name__}")
    values = [int(value) for value in ks_host]
    _check_group_sizes("ks_host", values, k_sum)
    return values


def _check_group_sizes(name: str, values: list[int], k_sum: int) -> None:
    """Each size a non-negative multiple of 128, all summing to ``K_sum``."""
    for group, value in enumerate(values):
        if value < 0 or value % BLOCK_K:
            raise ValueError(f"{name}[{group}] must be a non-negative multiple of {BLOCK_K} ({K_RULE}), "
                             f"found {value}")
    if sum(values) != k_sum:
        raise ValueError(f"{name} must sum to K_sum = {k_sum} (A's and B's K), found {sum(values)}")
