"""The INT8 W8A8 GEMMs: ``D = A · Bᵀ`` with int8 operands and exact int32 sums, then the scales, an optional
zero-point correction and an optional bias; dense and MoE grouped (contiguous, masked).

The epilogue formula (what every op, the CPU path and the kernel compute):

    D[m, n] = sa[m] · sb[n] · (Σ_k A[m, k] · B[n, k] − zp[m] · b_sums[n]) + bias[n]

``sa`` per token (row of A) or per tensor, ``sb`` per output channel (row of B) or per tensor; the
zero-point term is the asymmetric-activation form serving stacks use: with activations quantised as
``a[m, k] ≈ sa[m] · (A[m, k] − zp[m])``, ``b_sums[n] = Σ_k B[n, k]`` (``B.sum(-1, dtype=torch.int32)``,
computed once per weight) makes ``D`` the product of the dequantised operands. An ``int32`` ``d`` gets the
raw sums (as ``torch._int_mm``), with no scales, bias or zero points; they wrap past the int32 range.
Each op validates its arguments, then runs the CPU path (exact integer sums in float64) or the kernel.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...quant.int8 import per_channel_cast_to_int8, per_token_cast_to_int8
from ...quant.layout import align
from ..common.group_indices import (
    masked_rows,
    offsets_m_indices,
    settled_contiguous,
    settled_masked,
    write_rows,
)
from ..common.lazy import lazy_import
from ..common.settings import hopper_index
from ..common.traced import eager, integer, tensors, traceable
from ..common.validation import (
    check_d_row_bytes,
    check_dense_kernel_dims,
    check_dtype,
    check_grouped_kernel_dims,
    check_index_vector,
    check_multiple,
    check_no_overlap,
    check_packed_groups,
    check_positive_int,
    check_rank,
    check_same_device,
    check_shape,
    check_tensor,
    check_tma_operand,
)

SCALED_OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
OUT_DTYPES = (*SCALED_OUT_DTYPES, torch.int32)
# K of A and B (int8) and N of d must make 16-byte rows (TMA).
K_ALIGNMENT = 16
# Rows of the CPU path's float64 product at a time: memory stays O(rows · N).
_CPU_ROWS = 1024

# `kernel`, imported on the first GPU call: CPU use never loads the CUDA driver modules.
_kernel = lazy_import("deepgemm.ops.int8.kernel")

Int8Operand = Tensor | tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Vector:
    """A checked epilogue vector as the kernel reads it: element ``group * group_stride + index * stride``
    of the contiguous ``tensor`` (stride 0: one value for every index; group stride 0: shared by all)."""

    tensor: Tensor
    group_stride: int
    stride: int

    def expand(self, group: int, length: int) -> Tensor:
        """Group ``group``'s ``length`` values (the CPU path's view of what the kernel reads)."""
        flat = self.tensor.reshape(-1)
        start = group * self.group_stride
        return flat[start : start + 1].expand(length) if self.stride == 0 else flat[start : start + length]


@dataclass(frozen=True)
class Checked:
    """The arguments of an INT8 op once checked: A and B, the epilogue's vectors (``None``: absent; missing
    scales count as 1), and the CUDA device index (``None`` for the CPU)."""

    A: Tensor
    B: Tensor
    sa: Vector | None
    sb: Vector | None
    bias: Vector | None
    zp: Vector | None
    b_sums: Vector | None
    cuda_index: int | None


# --- the custom ops (torch.compile) ------------------------------------------------------------------------
# Each op's custom op takes the operands split into tensors and scales, ``d``, the epilogue's tensors, and
# then the op's own index arguments; optional tensors travel as `Tensor | None` (a bare operand has `None`
# for its scales).

_CUSTOM_OP_PARAMS = (("a", Tensor), ("sa", Tensor | None), ("b", Tensor), ("sb", Tensor | None),
                     ("d", Tensor), ("bias", Tensor | None), ("zp", Tensor | None), ("b_sums", Tensor | None))


def _traceable(*index_params: tuple[str, type]):
    """``traced.traceable`` for an INT8 op whose arguments are ``a, b, d``, then ``index_params`` (the
    grouped ops' index tensor and ``int`` counts), then ``bias`` and ``azp``. Its custom op's schema is the
    signature built here: ``_CUSTOM_OP_PARAMS``, then ``index_params``."""
    schema = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation)
         for name, annotation in (*_CUSTOM_OP_PARAMS, *index_params)],
        return_annotation=None,
    )

    def decorate(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        name, public = fn.__name__, inspect.signature(fn)

        def custom_op(*args: object, **kwargs: object) -> None:
            a, sa, b, sb, d, bias, zp, b_sums, *index = schema.bind(*args, **kwargs).args
            a_op, b_op = (a if sa is None else (a, sa)), (b if sb is None else (b, sb))
            eager(name)(a_op, b_op, d, *index, bias, None if zp is None else (zp, b_sums))

        custom_op.__signature__ = schema
        custom_op.__name__ = custom_op.__qualname__ = f"_{name}_op"

        def op_args(*args: object, **kwargs: object) -> tuple[tuple, Tensor] | None:
            try:
                bound = public.bind(*args, **kwargs)
            except TypeError:
                return None
            bound.apply_defaults()
            given = bound.arguments
            index = []
            for param, kind in index_params:
                value = given[param]
                if not (tensors(value) if kind is Tensor else integer(value)):
                    return None
                index.append(value if kind is Tensor else int(value))
            leading = _leading_args(given["a"], given["b"], given["d"], given["bias"], given["azp"])
            return None if leading is None else ((*leading, *index), given["d"])

        return traceable(op_args, custom_op)(fn)

    return decorate


def _leading_args(a: object, b: object, d: object, bias: object, azp: object) -> tuple | None:
    """The custom op's arguments for ``_CUSTOM_OP_PARAMS``, or ``None`` when they do not fit its schema."""
    (A, sa), (B, sb) = _operand_parts(a), _operand_parts(b)
    zp, b_sums = _operand_parts(azp) if azp is not None else (None, None)
    optional = (sa, sb, bias, zp, b_sums)
    if not tensors(A, B, d) or not all(x is None or isinstance(x, Tensor) for x in optional):
        return None
    if azp is not None and (zp is None or b_sums is None):
        return None
    return (A, sa, B, sb, d, bias, zp, b_sums)


def _operand_parts(x: object) -> tuple[object, object]:
    return (x[0], x[1]) if isinstance(x, tuple | list) and len(x) == 2 else (x, None)


# --- the ops -----------------------------------------------------------------------------------------------

_CONTRACT = """
    The epilogue (every output dtype but int32): ``D = sa · sb · (A · Bᵀ − zp · b_sums) + bias``, the sum
    exact in int32, the scaling in FP32, rounded once into ``d`` (see the module docstring).
    Operands: ``a`` is ``A`` alone or ``(A, sa)``; ``b`` is ``B`` alone or ``(B, sb)``; a missing scale is 1.
        A, B: ``int8``, K-major (``stride(-1) == 1``), other strides multiples of 16 bytes, not
            overlapping (views of larger buffers work), 16-byte-aligned start.
        sa: ``float32``, one scale per row of A ({sa_rows}) or per {sa_tensor} ({sa_tensor_shapes}),
            contiguous.
        sb: ``float32``, one scale per output channel ({sb_rows}) or per {sb_tensor} ({sb_tensor_shapes}),
            contiguous.
    d: ``bfloat16``, ``float16``, ``float32`` or ``int32`` {d_shape}, ``stride(-1) == 1``, other strides
        multiples of 16 bytes, 16-byte-aligned start. ``int32``: the raw sums; ``a`` and ``b`` must then
        come without scales, and ``bias`` and ``azp`` be ``None``.
    bias: ``None`` or {bias_shape}, contiguous, 8-byte-aligned start, ``float32`` or ``d``'s dtype.
    azp: ``None`` or ``(zp, b_sums)``: ``zp`` ``int32`` per row of A or per {sa_tensor}, shaped as ``sa`` may
        be; ``b_sums`` ``int32`` {bias_shape}, contiguous, 8-byte-aligned start, ``Σ_k B[n, k]``.
    Sizes: ``K`` a multiple of 16 (16-byte int8 rows; pad A and B with zeros, which is exact, or use
    ``int8_matmul_quantized``); ``N`` a multiple of 8 for 16-bit ``d``, of 4 for 32-bit.

    Raises (before anything runs): ``TypeError`` for a non-tensor or a wrong dtype; ``ValueError`` for a
    wrong rank, shape (scales, bias and zero points included), size or stride rule, scales, bias or zero
    points with an int32 ``d``, a size at or past 2^31 (M, N, K, G, ``G * N``: the kernels index
    them in 32 bits), a ``d`` that overlaps an input, or tensors on different or unsupported devices;
    ``RuntimeError`` for a CUDA device that is not Hopper (sm_90).
    """


def _documented(**fields: str):
    def decorate(op):
        op.__doc__ += _CONTRACT.format(**fields)
        return op

    return decorate


@_traceable()
@_documented(
    sa_rows="``[M]`` or ``[M, 1]``",
    sa_tensor="tensor",
    sa_tensor_shapes="``[1]`` or ``[]``",
    sb_rows="``[N]`` or ``[N, 1]``",
    sb_tensor="tensor",
    sb_tensor_shapes="``[1]`` or ``[]``",
    d_shape="``[M, N]``",
    bias_shape="``[N]``",
)
def int8_gemm_nt(
    a: Int8Operand,
    b: Int8Operand,
    d: Tensor,
    bias: Tensor | None = None,
    azp: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """``D = A · Bᵀ`` with A ``[M, K]`` and B ``[N, K]`` in int8, written into ``d``; returns ``d``.
    ``M == 0`` or ``N == 0``: nothing to do; ``K == 0``: ``d`` becomes ``bias`` (or zeros).
    """
    c = check_int8_gemm_nt(a, b, d, bias, azp)
    m, k = c.A.shape
    n = c.B.shape[0]
    if m == 0 or n == 0:
        return d
    if k == 0:
        return d.copy_(_empty_sums(d, c)[0].expand(d.shape))
    if c.cuda_index is None:
        return d.copy_(_cpu_product(c, 0, c.A, c.B, torch.arange(m), d.dtype))
    _kernel().launch_int8_gemm_nt(c, d)
    return d


@_traceable(("m_indices", Tensor))
@_documented(
    sa_rows="``[M_sum]`` or ``[M_sum, 1]``",
    sa_tensor="tensor",
    sa_tensor_shapes="``[1]`` or ``[]``",
    sb_rows="``[G, N]`` or ``[G, N, 1]``",
    sb_tensor="expert",
    sb_tensor_shapes="``[G]`` or ``[G, 1]``",
    d_shape="``[M_sum, N]``",
    bias_shape="``[G, N]``",
)
def m_grouped_int8_gemm_nt_contiguous(
    a: Int8Operand,
    b: Int8Operand,
    d: Tensor,
    m_indices: Tensor,
    bias: Tensor | None = None,
    azp: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """MoE grouped ``D = A · B[e]ᵀ`` where row ``m`` uses expert ``e = m_indices[m]``; returns ``d``.

    A ``[M_sum, K]`` holds every expert's rows, B ``[G, N, K]`` one weight matrix per expert (back to back:
    ``stride(0) == N * stride(1)``); ``sb``, ``bias`` and ``b_sums`` are per expert. ``m_indices``:
    ``int32 [M_sum]``, contiguous, each row's expert in ``[0, G)`` or -1 for padding, each expert's rows
    starting at a multiple of 128 (the layout of ``m_grouped_fp8_gemm_nt_contiguous``, checked the same way:
    always on the CPU, on a GPU under ``DG_DEBUG_CHECK_INDICES=1``). Expert rows of ``d`` are overwritten,
    padding rows left untouched; ``K == 0`` writes the expert rows as ``bias`` (or zeros).
    """
    c = check_m_grouped_int8_gemm_nt_contiguous(a, b, d, bias, azp)
    m_sum, k = c.A.shape
    num_groups, n = c.B.shape[:2]
    m_indices = check_index_vector("m_indices", m_indices, "M_sum", m_sum)
    check_same_device({"A": c.A, "m_indices": m_indices})
    check_no_overlap("d", d, {"m_indices": m_indices})
    settled = settled_contiguous(d, m_indices, num_groups, n, 1, c.cuda_index)
    if settled is not None:
        return settled
    if k == 0:
        experts = m_indices.long().clamp(min=0)
        return write_rows(d, _empty_sums(d, c)[experts], m_indices >= 0)
    if c.cuda_index is None:
        out = torch.zeros(m_sum, n, dtype=_cpu_dtype(d))
        for group in range(num_groups):
            rows = (m_indices == group).nonzero().flatten()
            if len(rows):
                out[rows] = _cpu_product(c, group, c.A[rows], c.B[group], rows, d.dtype)
        return write_rows(d, out, m_indices >= 0)
    _kernel().launch_m_grouped_int8_contiguous(c, d, m_indices)
    return d


@_traceable(("group_ends", Tensor))
def m_grouped_int8_gemm_nt_contiguous_offsets(
    a: Int8Operand,
    b: Int8Operand,
    d: Tensor,
    group_ends: Tensor,
    bias: Tensor | None = None,
    azp: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """``m_grouped_int8_gemm_nt_contiguous`` with the experts' rows given by their ends; returns ``d``.

    ``a``, ``b``, ``d``, ``bias`` and ``azp`` as in ``m_grouped_int8_gemm_nt_contiguous``; instead of
    ``m_indices``, ``group_ends``: ``int32 [G]``, contiguous, a running sum: expert ``g`` owns rows
    ``[align_up(group_ends[g-1], 128), group_ends[g])`` (``group_ends[-1] := 0``), as in
    ``m_grouped_fp8_gemm_nt_contiguous_offsets`` (values checked the same way). The kernel reads G values
    instead of M_sum; it runs the same tiles as the ``m_indices`` op, so the outputs are bit-identical.
    """
    c = check_m_grouped_int8_gemm_nt_contiguous(a, b, d, bias, azp)
    m_sum, k = c.A.shape
    num_groups, n = c.B.shape[:2]
    group_ends = check_index_vector("group_ends", group_ends, "G", num_groups)
    check_same_device({"A": c.A, "group_ends": group_ends})
    check_no_overlap("d", d, {"group_ends": group_ends})
    if m_sum == 0 or n == 0 or num_groups == 0:
        return d
    m_indices = offsets_m_indices(group_ends, m_sum, k, c.cuda_index)
    if m_indices is not None:
        return m_grouped_int8_gemm_nt_contiguous(a, b, d, m_indices, bias, azp)
    _kernel().launch_m_grouped_int8_contiguous_offsets(c, d, group_ends)
    return d


@_traceable(("masked_m", Tensor), ("expected_m", int))
@_documented(
    sa_rows="``[G, max_m]`` or ``[G, max_m, 1]``",
    sa_tensor="expert",
    sa_tensor_shapes="``[G]`` or ``[G, 1]``",
    sb_rows="``[G, N]`` or ``[G, N, 1]``",
    sb_tensor="expert",
    sb_tensor_shapes="``[G]`` or ``[G, 1]``",
    d_shape="``[G, max_m, N]``",
    bias_shape="``[G, N]``",
)
def m_grouped_int8_gemm_nt_masked(
    a: Int8Operand,
    b: Int8Operand,
    d: Tensor,
    masked_m: Tensor,
    expected_m: int,
    bias: Tensor | None = None,
    azp: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """MoE grouped ``D[g] = A[g] · B[g]ᵀ`` over the first ``masked_m[g]`` rows of each expert; returns ``d``.

    A ``[G, max_m, K]``, B ``[G, N, K]`` (back to back), d ``[G, max_m, N]``; ``masked_m``: ``int32 [G]``,
    contiguous, each in ``[0, max_m]`` (checked as in ``m_grouped_fp8_gemm_nt_masked``); ``expected_m``:
    ``int > 0``, the typical ``masked_m`` (it only chooses the tiles). Rows ``>= masked_m[g]`` are left
    untouched; no host sync, so the call can be captured in a CUDA graph once each shape has run.
    """
    c = _check(a, b, d, bias, azp, ("G", "max_m", "K"), ("G", "N", "K"), ("G", "max_m", "N"))
    num_groups, max_m, k = c.A.shape
    n = c.B.shape[1]
    masked_m = check_index_vector("masked_m", masked_m, "G", num_groups)
    expected_m = check_positive_int("expected_m", expected_m)
    check_same_device({"A": c.A, "masked_m": masked_m})
    check_no_overlap("d", d, {"masked_m": masked_m})
    settled = settled_masked(d, masked_m, max_m, n, 1, c.cuda_index)
    if settled is not None:
        return settled
    if k == 0:
        return write_rows(d, _empty_sums(d, c)[:, None, :].expand(d.shape), masked_rows(masked_m, max_m))
    if c.cuda_index is None:
        out = torch.stack(
            [
                _cpu_product(c, group, c.A[group], c.B[group], torch.arange(max_m), d.dtype)
                for group in range(num_groups)
            ]
        )
        return write_rows(d, out, masked_rows(masked_m, max_m))
    _kernel().launch_m_grouped_int8_masked(c, d, masked_m, expected_m)
    return d


def int8_matmul_quantized(a: Tensor, b: Tensor, out_dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """``a @ b`` through INT8 W8A8: ``a`` quantised per token, ``b`` per output channel (column), then
    ``int8_gemm_nt``; returns a new ``[M, N]`` tensor of ``out_dtype`` on the inputs' device.

    ``a``: floating ``[M, K]``; ``b``: floating ``[K, N]`` (any strides, same device, CPU or a Hopper GPU);
    ``out_dtype``: ``torch.bfloat16``, ``float16`` or ``float32``. Any sizes: K is zero-padded to a multiple
    of 16 after quantising (exact: padded columns add nothing) and N to 16 bytes of output (sliced back).
    For ``deepgemm.matmul(precision="int8")``. Raises ``TypeError`` / ``ValueError`` naming the argument.
    """
    for name, x in (("a", a), ("b", b)):
        check_tensor(name, x)
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
        check_rank(name, x, ("M", "K") if name == "a" else ("K", "N"))
    if out_dtype not in SCALED_OUT_DTYPES:
        raise TypeError(
            f"out_dtype must be one of {', '.join(map(str, SCALED_OUT_DTYPES))}, got {out_dtype!r}"
        )
    check_shape("b", b, ("K", "N"), (a.shape[1], b.shape[1]))
    check_same_device({"a": a, "b": b})
    a_q, sa = per_token_cast_to_int8(a)
    b_q, sb = per_channel_cast_to_int8(b.T)
    return int8_gemm_padded((a_q, sa), (b_q, sb), out_dtype)


def int8_gemm_padded(a: tuple[Tensor, Tensor | None], b: tuple[Tensor, Tensor | None],
                     out_dtype: torch.dtype) -> Tensor:
    """``int8_gemm_nt`` on operands of any size: int8 ``A [M, K]`` and ``B [N, K]`` with their scales (or
    ``None``: unscaled) are zero-padded to K a multiple of 16 and N to 16 bytes of output (exact: padded
    columns add nothing) and the result sliced back; returns a new ``[M, N]`` tensor of ``out_dtype``."""
    (A, sa), (B, sb) = a, b
    (m, k), n = A.shape, B.shape[0]
    n_pad, k_pad = align(n, 16 // out_dtype.itemsize), align(k, K_ALIGNMENT)
    A, B = F.pad(A, (0, k_pad - k)).contiguous(), F.pad(B, (0, k_pad - k, 0, n_pad - n)).contiguous()
    if sb is not None:
        sb = F.pad(sb, (0, n_pad - n), value=1.0)
    d = torch.empty(m, n_pad, dtype=out_dtype, device=A.device)
    int8_gemm_nt(A if sa is None else (A, sa), B if sb is None else (B, sb), d)
    return d if n_pad == n else d[:, :n].contiguous()


def check_int8_gemm_nt(a: object, b: object, d: object, bias: object = None, azp: object = None) -> Checked:
    """Every rule of ``int8_gemm_nt``; the checked arguments (what ``kernel.launch_int8_gemm_nt`` takes, for
    tools and tests that force a config)."""
    return _check(a, b, d, bias, azp, ("M", "K"), ("N", "K"), ("M", "N"))


def check_m_grouped_int8_gemm_nt_contiguous(a: object, b: object, d: object, bias: object = None,
                                            azp: object = None) -> Checked:
    """The rules of ``m_grouped_int8_gemm_nt_contiguous`` but those of ``m_indices`` (as
    ``check_int8_gemm_nt``)."""
    return _check(a, b, d, bias, azp, ("M_sum", "K"), ("G", "N", "K"), ("M_sum", "N"))


# --- checks ---------------------------------------------------------------------------------------------


def _check(
    a: object,
    b: object,
    d: object,
    bias: object,
    azp: object,
    a_dims: tuple[str, ...],
    b_dims: tuple[str, ...],
    d_dims: tuple[str, ...],
) -> Checked:
    """Every rule of an INT8 op whose A, B and d have the named dims (``a_dims[-2]`` rows of A, ``b_dims[-2]``
    output channels; a leading ``G`` is the group dim); returns the checked arguments."""
    A, sa_tensor = _operand("a", a, "A", "sa", a_dims)
    B, sb_tensor = _operand("b", b, "B", "sb", b_dims)
    check_dtype("d", check_tensor("d", d), OUT_DTYPES)
    k = A.shape[-1]
    a_lead, rows = tuple(A.shape[:-2]), A.shape[-2]
    b_lead, n = tuple(B.shape[:-2]), B.shape[-2]
    num_groups = B.shape[0] if len(b_dims) == 3 else None
    expected_b = ((num_groups,) if num_groups is not None else ()) + (n, k)
    check_shape("B (b[0])" if sb_tensor is not None else "b", B, b_dims, expected_b)
    if len(a_dims) == 3 and A.shape[0] != num_groups:
        raise ValueError(f"A must have G = {num_groups} groups (B's first dim), found shape {tuple(A.shape)}")
    check_shape("d", d, d_dims, (*a_lead, rows, n))
    if num_groups is None:
        check_dense_kernel_dims(rows, n, k)
    else:
        check_grouped_kernel_dims(A, B)
    if d.dtype == torch.int32 and (
        sa_tensor is not None or sb_tensor is not None or bias is not None or azp is not None
    ):
        raise ValueError("an int32 d takes the raw sums: pass a and b without scales, and no bias or azp")
    named = {"A": A, "B": B, "d": d}
    sa = sb = bias_vector = zp = b_sums = None
    if sa_tensor is not None:
        sa = _vector("sa (a[1])", sa_tensor, (torch.float32,), a_lead, rows, a_dims[-2], True)
        named["sa"] = sa_tensor
    if sb_tensor is not None:
        sb = _vector("sb (b[1])", sb_tensor, (torch.float32,), b_lead, n, b_dims[-2], True)
        named["sb"] = sb_tensor
    if bias is not None:
        allowed = (torch.float32,) if d.dtype == torch.float32 else (torch.float32, d.dtype)
        bias_vector = _vector("bias", check_tensor("bias", bias), allowed, b_lead, n, "N", False)
        named["bias"] = bias
    if azp is not None:
        if not isinstance(azp, tuple | list) or len(azp) != 2:
            raise TypeError(f"azp must be a (zp, b_sums) pair of tensors, got {type(azp).__name__}")
        zp = _vector(
            "zp (azp[0])", check_tensor("zp (azp[0])", azp[0]), (torch.int32,), a_lead, rows, a_dims[-2], True
        )
        b_sums = _vector(
            "b_sums (azp[1])", check_tensor("b_sums (azp[1])", azp[1]), (torch.int32,), b_lead, n, "N", False
        )
        named["zp"], named["b_sums"] = azp
    # The kernel reads bias and b_sums a column pair at a time (one 8-byte load at most).
    for name, vector in (("bias", bias_vector), ("b_sums (azp[1])", b_sums)):
        if vector is not None and vector.tensor.numel() and vector.tensor.data_ptr() % 8:
            raise ValueError(f"{name} must start at an 8-byte-aligned address (the kernel reads it a column "
                             f"pair at a time), found it {vector.tensor.data_ptr() % 8} bytes past one")
    check_multiple("K", k, K_ALIGNMENT, "TMA needs 16-byte rows of int8 in A and B")
    check_d_row_bytes(n, d)
    device = check_same_device(named)
    check_tma_operand("A", A)
    check_tma_operand("B", B)
    if num_groups is not None:
        check_packed_groups("B", B, b_dims)
    check_tma_operand("d", d)
    check_no_overlap("d", d, {name: tensor for name, tensor in named.items() if name != "d"})
    return Checked(A, B, sa, sb, bias_vector, zp, b_sums, hopper_index(device))


def _operand(
    arg: str, value: object, label: str, scale_label: str, dims: tuple[str, ...]
) -> tuple[Tensor, Tensor | None]:
    """``value`` as ``(tensor, scales or None)``: a bare int8 tensor, or an ``(int8 tensor, float32 scales)``
    pair (the scales' shape is checked by ``_vector``)."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise TypeError(
                f"{arg} must be an int8 tensor or a ({label}, {scale_label}) pair, got a "
                f"{type(value).__name__} of {len(value)}"
            )
        name = f"{label} ({arg}[0])"
        tensor, scale = check_tensor(name, value[0]), check_tensor(f"{scale_label} ({arg}[1])", value[1])
    else:
        name = arg
        tensor, scale = check_tensor(name, value), None
    check_dtype(name, tensor, (torch.int8,))
    check_rank(name, tensor, dims)
    return tensor, scale


def _vector(
    name: str,
    tensor: Tensor,
    dtypes: tuple[torch.dtype, ...],
    lead: tuple[int, ...],
    length: int,
    dim: str,
    may_be_per_tensor: bool,
) -> Vector:
    """Check an epilogue vector: one value per index (``[*lead, length]``, or ``[*lead, length, 1]``), or with
    ``may_be_per_tensor`` one per tensor or group (``[*lead]`` or ``[*lead, 1]``); contiguous."""
    check_dtype(name, tensor, dtypes)
    shape = tuple(tensor.shape)
    per_index = [(*lead, length)] + ([(*lead, length, 1)] if may_be_per_tensor else [])
    per_tensor = [(*lead,), (*lead, 1)] if may_be_per_tensor else []
    if shape not in per_index + per_tensor:
        lead_names = ["G"] if lead else []
        forms = [[*lead_names, dim]] + (
            [[*lead_names, dim, "1"], lead_names, [*lead_names, "1"]] if may_be_per_tensor else []
        )
        expected = " or ".join(f"[{', '.join(form)}]" for form in forms)
        raise ValueError(
            f"{name} must have shape {expected} (one value per {dim}"
            f"{' or one per ' + ('group' if lead else 'tensor') if may_be_per_tensor else ''}; "
            f"{dim} = {length}), found {shape}"
        )
    if not tensor.is_contiguous():
        raise ValueError(
            f"{name} must be contiguous, found strides {tensor.stride()}; pass .contiguous() of it"
        )
    if shape in per_index:
        return Vector(tensor, length if lead else 0, 1)
    return Vector(tensor, 1 if lead else 0, 0)


# --- the CPU path and the empty sums -----------------------------------------------------------------------


def _cpu_product(
    c: Checked, group: int, A: Tensor, B: Tensor, rows: Tensor, out_dtype: torch.dtype
) -> Tensor:
    """``A · Bᵀ`` and the epilogue of ``group`` for ``A``'s rows (``rows``: their indices into the row
    vectors), in float64 from exact integer sums (every int8 product sum is exact in float64); the raw sums
    wrapped to int32 for an int32 ``d``. Rows are taken ``_CPU_ROWS`` at a time."""
    n = B.shape[0]
    B64 = B.double().T
    sums = torch.cat([A[i : i + _CPU_ROWS].double() @ B64 for i in range(0, A.shape[0], _CPU_ROWS)])
    if out_dtype == torch.int32:
        return _wrap_int32(sums.long())
    if c.zp is not None:
        sums = (
            sums - _rows_of(c.zp, group, rows).double()[:, None] * c.b_sums.expand(group, n).double()[None, :]
        )
    if c.sa is not None:
        sums = sums * _rows_of(c.sa, group, rows).double()[:, None]
    if c.sb is not None:
        sums = sums * c.sb.expand(group, n).double()[None, :]
    if c.bias is not None:
        sums = sums + c.bias.expand(group, n).double()[None, :]
    return sums


def _cpu_dtype(d: Tensor) -> torch.dtype:
    """What ``_cpu_product`` returns for ``d``: float64 values, or the int32 sums."""
    return torch.float64 if d.is_floating_point() else torch.int32


def _rows_of(vector: Vector, group: int, rows: Tensor) -> Tensor:
    """The values of a per-row (or per-tensor) vector at ``rows`` of ``group``."""
    flat = vector.tensor.reshape(-1)
    return flat[group * vector.group_stride + rows.to(flat.device) * vector.stride]


def _wrap_int32(x: Tensor) -> Tensor:
    """int64 sums as the kernel's int32 accumulators hold them (two's complement wrap-around)."""
    return ((x + 2**31) % 2**32 - 2**31).to(torch.int32)


def _empty_sums(d: Tensor, c: Checked) -> Tensor:
    """``[G, N]`` (G = 1 for the dense op): the output rows of an empty K sum, each expert's bias or zeros,
    in ``d``'s dtype."""
    groups, n = (c.B.shape[0] if c.B.dim() == 3 else 1), d.shape[-1]
    if c.bias is None:
        return torch.zeros(groups, n, dtype=d.dtype, device=d.device)
    return torch.stack([c.bias.expand(group, n) for group in range(groups)]).to(d.dtype)
