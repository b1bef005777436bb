"""Weight-only mixed-precision GEMMs: BF16 / FP16 activations times INT8 (W8A16) or INT4 (W4A16)
weights with per-channel or per-group scales, dense and MoE masked.

``D[m, n] = Σ_k A[m, k] · W[n, k]`` with ``W = (Q - Z) · S`` (``deepgemm.quant.wonly`` documents the
math, the packed weight layout and the helpers that produce it: ``quantize_w8a16``, ``quantize_w4a16``).
The weights are packed once, when they are loaded; the ops take the packed form. On a GPU each weight
is dequantised to the activations' dtype (``(Q - Z) · S`` rounded once) and multiplied in the tensor
cores with FP32 accumulation, rounded once into ``d``. The CPU path dequantises exactly in FP32 and
multiplies in FP32, in chunks of weight rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...quant.wonly import (
    PackedWeight,
    check_group_size,
    dequantize,
    num_k_groups,
    packed_shape,
    unpack_group_params,
    unpack_int4_weight,
    unpack_int8_weight,
)
from ..common.group_indices import masked_rows, settled_masked, write_rows
from ..common.lazy import lazy_import
from ..common.settings import hopper_index
from ..common.traced import eager, integer, tensors, traceable
from ..common.validation import (
    check_dense_kernel_dims,
    check_dtype,
    check_index_vector,
    check_kernel_dims,
    check_multiple,
    check_no_overlap,
    check_positive_int,
    check_rank,
    check_row_major,
    check_same_device,
    check_shape,
    check_tensor,
    check_tile_count,
    check_tma_operand,
)

IN_DTYPES = (torch.bfloat16, torch.float16)
OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
PACKED_DTYPES = {8: torch.int8, 4: torch.uint8}
# Weight rows dequantised at a time on the CPU path (a multiple of the 16-row slabs).
CPU_CHUNK_ROWS = 1024

_kernel = lazy_import("deepgemm.ops.wonly.kernel")

_CONTRACT = """
    Tensor contract (all on one device, CPU or a Hopper GPU; {dims}):
        a: ``bfloat16`` or ``float16`` {a_dims}: ``stride(-1) == 1``, the other strides multiples of 8
            elements (16 bytes, TMA), 16-byte-aligned start.
        b = {b_tuple}, each contiguous, as
            ``deepgemm.quant.wonly.quantize_{name}`` returns them:
            b_packed: {packed}
            sb: ``a``'s dtype, {sb_dims}: one scale per weight row per K group.{zeros}
        d: ``bfloat16``, ``float16`` or ``float32`` {d_dims}, ``stride(-1) == 1`` (any other strides).
        group_size: ``None`` (one scale per row) or a positive multiple of 64; groups = ceil(K /
            group_size) (a last group shorter than group_size is allowed), 1 per row.
    Sizes: ``K`` a multiple of 8 and ``> 0`` (TMA reads 16-byte rows of ``a``); any ``M, N >= 0``
    (``M == 0`` or ``N == 0``: nothing to do).

    Raises (before anything runs): ``TypeError`` for a non-tensor, a wrong dtype, a wrong ``b`` tuple
    or a non-int ``group_size``; ``ValueError`` for a wrong rank or shape, a size, stride or
    group-size rule, a size at or past 2^31 (M or ``max_m``, N, K, G, ``G * N``), a ``d`` that
    overlaps an input, tensors on different or unsupported devices; ``RuntimeError`` for a CUDA device
    that is not Hopper (sm_90).
    """


def _documented(bits: int, masked: bool):
    name = f"w{bits}a16"
    lead = ("G", "max_m") if masked else ("M",)
    g = "G, " if masked else ""
    zeros = ("" if bits == 8 else
             f"\n            zeros (optional: asymmetric INT4): ``uint8 [{g}groups, N]``, values in [0, 15].")
    b_tuple = "``(b_packed, sb)``" if bits == 8 else "``(b_packed, sb)`` or ``(b_packed, sb, zeros)``"
    packed = (f"``int8 [{g}align(N, 16), align(K, 64)]``" if bits == 8
              else f"``uint8 [{g}align(N, 16), align(K, 64) / 2]``")

    def decorate(op):
        op.__doc__ += _CONTRACT.format(
            dims="G experts, max_m rows each" if masked else "M tokens, N x K weight",
            a_dims=f"``[{', '.join((*lead, 'K'))}]``", b_tuple=b_tuple, name=name, packed=packed,
            sb_dims=f"``[{g}groups, N]``", zeros=zeros, d_dims=f"``[{', '.join((*lead, 'N'))}]``")
        return op

    return decorate


# --- custom ops (torch.compile) ---------------------------------------------------------------------------


def _dense_op(name: str):
    def op(a: Tensor, b_packed: Tensor, sb: Tensor, zeros: Tensor | None, d: Tensor, group_size: int | None
           ) -> None:
        b = (b_packed, sb) if zeros is None else (b_packed, sb, zeros)
        eager(name)(a, b, d, group_size=group_size)

    return op


def _masked_op(name: str):
    def op(a: Tensor, b_packed: Tensor, sb: Tensor, zeros: Tensor | None, d: Tensor, masked_m: Tensor,
           expected_m: int, group_size: int | None) -> None:
        b = (b_packed, sb) if zeros is None else (b_packed, sb, zeros)
        eager(name)(a, b, d, masked_m, expected_m, group_size=group_size)

    return op


def _b_parts(b: object) -> tuple | None:
    if not isinstance(b, tuple | list) or len(b) not in (2, 3) or not tensors(*b):
        return None
    return (b[0], b[1], b[2] if len(b) == 3 else None)


def _group_arg(group_size: object) -> bool:
    return group_size is None or integer(group_size)


def _dense_args(default_group: int | None):
    def op_args(a: object, b: object, d: object, group_size: object = default_group):
        parts = _b_parts(b)
        if parts is None or not tensors(a, d) or not _group_arg(group_size):
            return None
        return (a, *parts, d, group_size), d

    return op_args


def _masked_args(default_group: int | None):
    def op_args(a: object, b: object, d: object, masked_m: object, expected_m: object,
                group_size: object = default_group):
        parts = _b_parts(b)
        if parts is None or not tensors(a, d, masked_m) or not integer(expected_m):
            return None
        if not _group_arg(group_size):
            return None
        return (a, *parts, d, masked_m, int(expected_m), group_size), d

    return op_args


# --- the ops ----------------------------------------------------------------------------------------------


@traceable(_dense_args(None), _dense_op("w8a16_gemm_nt"))
@_documented(8, masked=False)
def w8a16_gemm_nt(a: torch.Tensor, b: tuple, d: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """``D = A · Wᵀ`` with BF16/FP16 activations ``A [M, K]`` and INT8 weights ``W = Q · S`` (packed);
    returns ``d``.
    """
    return _dense(8, a, b, d, group_size)


@traceable(_dense_args(128), _dense_op("w4a16_gemm_nt"))
@_documented(4, masked=False)
def w4a16_gemm_nt(a: torch.Tensor, b: tuple, d: torch.Tensor, group_size: int | None = 128) -> torch.Tensor:
    """``D = A · Wᵀ`` with BF16/FP16 activations ``A [M, K]`` and INT4 weights ``W = (Q - Z) · S``
    (packed, two per byte; Z the optional zero points, else symmetric); returns ``d``.
    """
    return _dense(4, a, b, d, group_size)


@traceable(_masked_args(None), _masked_op("m_grouped_w8a16_gemm_nt_masked"))
@_documented(8, masked=True)
def m_grouped_w8a16_gemm_nt_masked(a: torch.Tensor, b: tuple, d: torch.Tensor, masked_m: torch.Tensor,
                                   expected_m: int, group_size: int | None = None) -> torch.Tensor:
    """MoE grouped ``D[g] = A[g] · W[g]ᵀ`` over the first ``masked_m[g]`` rows of each expert, INT8
    weights; returns ``d``. As ``m_grouped_fp8_gemm_nt_masked``: rows ``>= masked_m[g]`` are left
    untouched, no host sync (CUDA-graph capturable); ``masked_m``: ``int32 [G]``, contiguous, each in
    ``[0, max_m]`` (checked on the CPU, and on a GPU under ``DG_DEBUG_CHECK_INDICES=1``);
    ``expected_m``: ``int > 0``, the typical ``masked_m`` (chooses the tiles only).
    """
    return _masked(8, a, b, d, masked_m, expected_m, group_size)


@traceable(_masked_args(128), _masked_op("m_grouped_w4a16_gemm_nt_masked"))
@_documented(4, masked=True)
def m_grouped_w4a16_gemm_nt_masked(a: torch.Tensor, b: tuple, d: torch.Tensor, masked_m: torch.Tensor,
                                   expected_m: int, group_size: int | None = 128) -> torch.Tensor:
    """MoE grouped ``D[g] = A[g] · W[g]ᵀ`` over the first ``masked_m[g]`` rows of each expert, INT4
    weights (optional zero points); returns ``d``. ``masked_m`` and ``expected_m`` as in
    ``m_grouped_w8a16_gemm_nt_masked``.
    """
    return _masked(4, a, b, d, masked_m, expected_m, group_size)


# --- checks -----------------------------------------------------------------------------------------------


def _check_b(bits: int, b: object, lead: tuple[str, ...], lead_sizes: tuple[int, ...], n: int, k: int,
             dtype: torch.dtype, group_size: int | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Unpack and check ``b``; returns ``(b_packed, sb, zeros or None)``."""
    arity = "(b_packed, sb)" if bits == 8 else "(b_packed, sb) or (b_packed, sb, zeros)"
    if not isinstance(b, tuple | list) or len(b) not in ((2,) if bits == 8 else (2, 3)):
        raise TypeError(f"b must be a {arity} tuple of tensors, got "
                        f"{type(b).__name__}{f' of length {len(b)}' if isinstance(b, tuple | list) else ''}")
    packed = check_tensor("b_packed (b[0])", b[0])
    sb = check_tensor("sb (b[1])", b[1])
    zeros = check_tensor("zeros (b[2])", b[2]) if len(b) == 3 else None
    check_dtype("b_packed (b[0])", packed, (PACKED_DTYPES[bits],))
    rows, cols = packed_shape(n, k, bits)
    packed_dims = (*lead, "align(N, 16)", "align(K, 64)" + (" / 2" if bits == 4 else ""))
    check_rank("b_packed (b[0])", packed, packed_dims)
    check_shape("b_packed (b[0])", packed, packed_dims, (*lead_sizes, rows, cols))
    groups = num_k_groups(k, group_size)
    group_dim = "1 (per channel)" if group_size is None else f"ceil(K/{group_size})"
    check_dtype("sb (b[1])", sb, (dtype,))
    check_rank("sb (b[1])", sb, (*lead, "groups", "N"))
    check_shape("sb (b[1])", sb, (*lead, group_dim, "N"), (*lead_sizes, groups, n))
    for name, tensor in (("b_packed (b[0])", packed), ("sb (b[1])", sb)):
        check_row_major(name, tensor, (*lead, "rows", "cols"))
    if zeros is not None:
        check_dtype("zeros (b[2])", zeros, (torch.uint8,))
        check_rank("zeros (b[2])", zeros, (*lead, "groups", "N"))
        check_shape("zeros (b[2])", zeros, (*lead, group_dim, "N"), (*lead_sizes, groups, n))
        check_row_major("zeros (b[2])", zeros, (*lead, "groups", "N"))
    return packed, sb, zeros


def _check_a_d(a: object, d: object, lead: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    A = check_tensor("a", a)
    check_dtype("a", A, IN_DTYPES)
    check_rank("a", A, (*lead, "K"))
    check_dtype("d", check_tensor("d", d), OUT_DTYPES)
    check_rank("d", d, (*lead, "N"))
    check_shape("d", d, (*lead, "N"), (*A.shape[:-1], d.shape[-1]))
    k = A.shape[-1]
    if k == 0:
        raise ValueError("K (a.shape[-1]) must be > 0: the packed weight has no empty form")
    check_multiple("K", k, 8, "TMA needs 16-byte rows of a")
    if d.numel() and d.stride(-1) != 1:
        raise ValueError(f"d must have contiguous rows (stride(-1) == 1), found strides {d.stride()}")
    return A, d


def _devices(named: dict[str, torch.Tensor | None]) -> int | None:
    present = {name: tensor for name, tensor in named.items() if tensor is not None}
    device = check_same_device(present)
    check_tma_operand("a", present["a"])
    check_no_overlap("d", present["d"], {name: tensor for name, tensor in present.items() if name != "d"})
    return hopper_index(device)


def _dense(bits: int, a: object, b: object, d: object, group_size: object) -> torch.Tensor:
    group_size = check_group_size(group_size)
    A, d = _check_a_d(a, d, ("M",))
    m, k = A.shape
    n = d.shape[1]
    check_dense_kernel_dims(m, n, k)
    packed, sb, zeros = _check_b(bits, b, (), (), n, k, A.dtype, group_size)
    cuda_index = _devices({"a": A, "b_packed": packed, "sb": sb, "zeros": zeros, "d": d})
    if m == 0 or n == 0:
        return d
    if cuda_index is None:
        d.copy_(_cpu_product(bits, A, packed, sb, zeros, n, k, group_size))
        return d
    _kernel().launch_wonly_gemm(bits, A, packed, sb, zeros, d, group_size, cuda_index)
    return d


def _masked(bits: int, a: object, b: object, d: object, masked_m: object, expected_m: object,
            group_size: object) -> torch.Tensor:
    group_size = check_group_size(group_size)
    A, d = _check_a_d(a, d, ("G", "max_m"))
    num_groups, max_m, k = A.shape
    n = d.shape[2]
    # The kernel reads the experts' weights as one matrix of G * N rows.
    check_kernel_dims({"max_m": max_m, "N": n, "K": k, "G": num_groups, "G * N": num_groups * n})
    check_tile_count("G * max_m", num_groups * max_m, n)
    packed, sb, zeros = _check_b(bits, b, ("G",), (num_groups,), n, k, A.dtype, group_size)
    masked_m = check_index_vector("masked_m", masked_m, "G", num_groups)
    expected_m = check_positive_int("expected_m", expected_m)
    cuda_index = _devices({"a": A, "b_packed": packed, "sb": sb, "zeros": zeros, "d": d,
                           "masked_m": masked_m})
    settled = settled_masked(d, masked_m, max_m, n, k, cuda_index)
    if settled is not None:
        return settled
    if cuda_index is None:
        out = torch.stack([_cpu_product(bits, A[g], packed[g], sb[g], None if zeros is None else zeros[g],
                                        n, k, group_size) for g in range(num_groups)])
        return write_rows(d, out, masked_rows(masked_m, max_m))
    _kernel().launch_m_grouped_wonly_masked(bits, A, packed, sb, zeros, d, masked_m, expected_m, group_size,
                                            cuda_index)
    return d


def _cpu_product(bits: int, A: Tensor, packed: Tensor, sb: Tensor, zeros: Tensor | None, n: int, k: int,
                 group_size: int | None) -> Tensor:
    """``A · Wᵀ`` in FP32 with W dequantised and rounded once to A's dtype (the kernel's numerics),
    ``CPU_CHUNK_ROWS`` weight rows at a time."""
    out = torch.empty(A.shape[0], n, dtype=torch.float32)
    a32 = A.float()
    for first in range(0, n, CPU_CHUNK_ROWS):
        rows = min(CPU_CHUNK_ROWS, n - first)
        slab_rows = packed[first: first + packed_shape(rows, k, bits)[0]]
        if bits == 8:
            q = unpack_int8_weight(slab_rows, rows, k)
        else:
            q = unpack_int4_weight(slab_rows, rows, k, symmetric=zeros is None)
        z = None if zeros is None else unpack_group_params(zeros[:, first: first + rows])
        w = dequantize(q, unpack_group_params(sb[:, first: first + rows]), z, group_size)
        out[:, first: first + rows] = a32 @ w.to(A.dtype).float().T
    return out


def weight_only_matmul(a: torch.Tensor, weight: PackedWeight, out_dtype: torch.dtype | None = None,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ Wᵀ`` for activations ``a [..., K]`` (BF16/FP16, rows of 16-byte-aligned K) and a 2-D weight
    packed by ``deepgemm.quant.wonly.pack_weight``: the entry ``matmul(a, weight, dtype="w8a16" |
    "w4a16")`` can hand a pre-packed weight to. Returns ``out`` (``[..., N]``, ``out_dtype``: default
    ``a``'s dtype), allocated when ``None``. Leading dims of ``a`` are flattened (a view where they can
    be); the op's rules and errors apply to the flattened call."""
    if not isinstance(weight, PackedWeight):
        raise TypeError(f"weight must be a deepgemm.quant.wonly.PackedWeight, got {type(weight).__name__}")
    if weight.b_packed.dim() != 2:
        raise ValueError("weight must be a single [N, K] weight (use the masked ops for [G, N, K] experts)")
    A = check_tensor("a", a)
    if A.dim() < 1:
        raise ValueError("a must have at least one dim [..., K]")
    lead = A.shape[:-1]
    a2 = A.reshape(-1, A.shape[-1])
    if out is None:
        out = torch.empty(*lead, weight.n, dtype=out_dtype or A.dtype, device=A.device)
    elif not isinstance(out, torch.Tensor) or tuple(out.shape) != (*lead, weight.n):
        raise ValueError(f"out must be a tensor of shape {(*lead, weight.n)}")
    d = out.view(-1, weight.n)
    op = w8a16_gemm_nt if weight.bits == 8 else w4a16_gemm_nt
    op(a2, weight.operand, d, group_size=weight.group_size)
    return out
