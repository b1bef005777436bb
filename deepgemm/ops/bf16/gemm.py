"""The 16-bit (BF16 / FP16) GEMMs: dense in the four storage layouts, and MoE grouped in NT.

The letters say how A and B are stored: the first is A's (``n``: ``[M, K]``, ``t``: ``[K, M]``),
the second B's (``t``: ``[N, K]``, ``n``: ``[K, N]``); ``nt`` is the FP8 op's layout. 16-bit WGMMA
reads either major-ness from shared memory, so no layout copies anything. The tensor cores
accumulate in FP32 (no promotion step), rounded once to ``d``'s dtype. Each op validates its
arguments, then runs the CPU path (FP32 torch math) or the GPU kernel (``kernel``).
"""


import torch
from torch import Tensor

from ...quant.layout import TMA_ALIGNMENT_BYTES
from ..common import settings as settings_module
from ..common.group_indices import masked_rows, settled_contiguous, settled_masked, write_rows
from ..common.lazy import lazy_import
from ..common.settings import hopper_index
from ..common.traced import eager, integer, tensors, traceable, traceable_dense
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
    may_overlap,
    tma_row_stride_bounds,
    warn_if_slow_cpu,
)

IN_DTYPES = (torch.bfloat16, torch.float16)
OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
# Dims of A and B as stored, by layout: the last one is contiguous.
STORED_DIMS = {
    "nt": (("M", "K"), ("N", "K")),
    "nn": (("M", "K"), ("K", "N")),
    "tn": (("K", "M"), ("K", "N")),
    "tt": (("K", "M"), ("N", "K")),
}

_CONTRACT = """
    Tensor contract (all on one device, CPU or a Hopper GPU):
        a: ``bfloat16`` or ``float16`` {a_dims}; b: the same dtype, {b_dims}.
        d: ``bfloat16``, ``float16`` or ``float32 [M, N]``.
        c: ``None``, or a tensor of ``d``'s dtype and shape (``d`` itself accumulates in place).
    Every tensor: ``stride(1) == 1``, ``stride(0)`` a multiple of 16 bytes and ``>= `` its row length
    (views of larger buffers work), 16-byte-aligned start (TMA rules).
    Sizes: any ``M, N, K >= 0``; the contiguous dim of each stored tensor ({inner}, and N of ``d``
    and ``c``) a multiple of 16 bytes (8 BF16/FP16 elements, 4 FP32). ``M == 0`` or ``N == 0``:
    nothing to do; ``K == 0``: ``d`` becomes ``c`` (or zeros).

    Raises (before anything runs): ``TypeError`` for a non-tensor or a wrong dtype; ``ValueError`` for
    a wrong rank or shape, a size or stride rule, or tensors on different or unsupported devices;
    ``RuntimeError`` for a CUDA device that is not Hopper (sm_90).
    """


def _documented(layout: str):
    """Appends the tensor contract of ``layout`` to an op's docstring."""
    a_dims, b_dims = STORED_DIMS[layout]
    inner = f"{a_dims[1]} of A, {b_dims[1]} of B"

    def decorate(op):
        op.__doc__ += _CONTRACT.format(a_dims=f"[{', '.join(a_dims)}]", b_dims=f"[{', '.join(b_dims)}]",
                                       inner=inner)
        return op

    return decorate


# `kernel`, imported on the first GPU call: CPU use never loads the CUDA driver modules.
_kernel = lazy_import("deepgemm.ops.bf16.kernel")


# --- the custom ops (torch.compile): each unpacks its arguments into the public op's ----------------------


def _m_grouped_bf16_gemm_nt_contiguous_op(a: Tensor, b: Tensor, d: Tensor, m_indices: Tensor) -> None:
    eager("m_grouped_bf16_gemm_nt_contiguous")(a, b, d, m_indices)


def _m_grouped_bf16_gemm_nt_masked_op(a: Tensor, b: Tensor, d: Tensor, masked_m: Tensor,
                                      expected_m: int) -> None:
    eager("m_grouped_bf16_gemm_nt_masked")(a, b, d, masked_m, expected_m)


# --- dense ------------------------------------------------------------------------------------------------


@traceable_dense
@_documented("nt")
def bf16_gemm_nt(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                 c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + A · Bᵀ`` with A ``[M, K]`` and B ``[N, K]`` (both K-major), in FP32, rounded once
    into ``d``; returns ``d``.
    """
    return _gemm("nt", a, b, d, c)


@traceable_dense
@_documented("nn")
def bf16_gemm_nn(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                 c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + A · B`` with A ``[M, K]`` (K-major) and B ``[K, N]`` (N-major: ``torch``'s usual
    ``a @ b``), in FP32, rounded once into ``d``; returns ``d``.
    """
    return _gemm("nn", a, b, d, c)


@traceable_dense
@_documented("tn")
def bf16_gemm_tn(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                 c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + Aᵀ · B`` with A stored ``[K, M]`` and B ``[K, N]`` (both MN-major), in FP32, rounded
    once into ``d``; returns ``d``.
    """
    return _gemm("tn", a, b, d, c)


@traceable_dense
@_documented("tt")
def bf16_gemm_tt(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                 c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + Aᵀ · Bᵀ`` with A stored ``[K, M]`` (M-major) and B ``[N, K]`` (K-major), in FP32,
    rounded once into ``d``; returns ``d``.
    """
    return _gemm("tt", a, b, d, c)


def _gemm(layout: str, a: object, b: object, d: object, c: object) -> torch.Tensor:
    if _launch_cached(layout, a, b, d, c):
        return d
    A, B, m, n, k, cuda_index = _checked(layout, a, b, d, c)
    if m == 0 or n == 0:
        return d
    if k == 0:
        return d.zero_() if c is None else d.copy_(c)
    if cuda_index is None:
        warn_if_slow_cpu(f"bf16_gemm_{layout}", m, n, k)
        out = _as_mk(layout, A).float() @ _as_kn(layout, B).float()
        if c is not None:
            out += c.float()
        return d.copy_(out)
    plan = _kernel().launch_bf16_gemm(layout, A, B, d, c, m, n, k, cuda_index)
    _remember_call(layout, A, B, d, c, m, n, k, plan)
    return d


# --- the cached call path ------------------------------------------------------------------------------
# As fp8_gemm_nt's (ops/fp8/dense.py): a GPU call whose sizes were seen before (layout, stored shapes of a
# and b, dtypes, whether it adds C, device, SM setting) is checked and launched in one pass, each tensor
# attribute read once; what follows from those alone (d's and c's shapes, the size rules, the Hopper
# check, the plan) was settled by the first call, which ran `_checked`. Anything else falls through to
# the full path. The size rules (`check_dense_kernel_dims`) depend on M, N and K only, which
# the key's stored shapes fix (d's and c's shapes must match), so a remembered entry has passed them.
# Whether d overlaps a, b or c depends on the pointers, so it is checked on every call: byte ranges first,
# and only where they meet the exact `may_overlap` of `check_no_overlap` (c may be d itself, not part of
# it), so the cached path accepts exactly what `_checked` accepts (tests/ops/test_cached_call_path.py).


class _CachedCall:
    __slots__ = ("a_shape", "b_shape", "d_shape", "in_bytes", "in_per_16_bytes", "out_per_16_bytes",
                 "out_bytes", "bounds", "plan")

    def __init__(self, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor, m: int, n: int,
                 plan: object) -> None:
        self.a_shape, self.b_shape, self.d_shape = tuple(A.shape), tuple(B.shape), (m, n)
        self.in_bytes = A.element_size()
        self.in_per_16_bytes = 16 // self.in_bytes
        self.out_bytes = d.element_size()
        self.out_per_16_bytes = 16 // self.out_bytes
        # `tma_rows_ok`'s row-stride bounds for a and b (stored shapes) and for d and c.
        self.bounds = (*tma_row_stride_bounds(*self.a_shape, self.in_per_16_bytes),
                       *tma_row_stride_bounds(*self.b_shape, self.in_per_16_bytes),
                       *tma_row_stride_bounds(m, n, self.out_per_16_bytes))
        self.plan = plan


_MAX_CACHED_CALLS = 4096
_cached_calls: dict[tuple, _CachedCall] = {}


def _remember_call(layout: str, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor, c: torch.Tensor | None,
                   m: int, n: int, k: int, plan: object) -> None:
    if len(_cached_calls) >= _MAX_CACHED_CALLS:
        _cached_calls.clear()
    key = (layout, A.shape, B.shape, A.dtype, d.dtype, c is not None, A.device, settings_module._num_sms)
    _cached_calls[key] = _CachedCall(A, B, d, m, n, plan)


def _launch_cached(layout: str, a: object, b: object, d: object, c: object) -> bool:
    """Launch a GPU call of remembered sizes whose arguments keep every rule; False (nothing done) for
    anything else."""
    if not (isinstance(a, Tensor) and isinstance(b, Tensor) and isinstance(d, Tensor)
            and (c is None or isinstance(c, Tensor))):
        return False
    device = a.device
    key = (layout, a.shape, b.shape, a.dtype, d.dtype, c is not None, device, settings_module._num_sms)
    call = _cached_calls.get(key)
    if call is None:
        return False
    m, n = call.d_shape
    if b.dtype is not a.dtype or d.shape != call.d_shape or b.device != device or d.device != device:
        return False
    # `tma_rows_ok` on a, b and d (and c below), inline with the entry's bounds.
    a_strides, b_strides, d_strides = a.stride(), b.stride(), d.stride()
    per_16, out_per_16 = call.in_per_16_bytes, call.out_per_16_bytes
    a_lo, a_hi, b_lo, b_hi, d_lo, d_hi = call.bounds
    a_stride, b_stride, d_stride = a_strides[0], b_strides[0], d_strides[0]
    if not (a_strides[1] == 1 and b_strides[1] == 1 and d_strides[1] == 1 and a_lo <= a_stride < a_hi
            and b_lo <= b_stride < b_hi and d_lo <= d_stride < d_hi and not a_stride % per_16
            and not b_stride % per_16 and not d_stride % out_per_16):
        return False
    a_ptr, b_ptr, d_ptr = a.data_ptr(), b.data_ptr(), d.data_ptr()
    c_ptr = c_row_bytes = 0
    if c is not None:
        if c.dtype is not d.dtype or c.shape != call.d_shape or c.device != device:
            return False
        c_strides = c.stride()
        c_stride = c_strides[0]
        if not (c_strides[1] == 1 and d_lo <= c_stride < d_hi and not c_stride % out_per_16):
            return False
        c_ptr, c_row_bytes = c.data_ptr(), c_strides[0] * call.out_bytes
    if (a_ptr | b_ptr | d_ptr | c_ptr) % TMA_ALIGNMENT_BYTES:
        return False
    d_row_bytes = d_strides[0] * call.out_bytes
    d_end = d_ptr + (m - 1) * d_row_bytes + n * call.out_bytes
    (a_rows, a_cols), (b_rows, b_cols) = call.a_shape, call.b_shape
    in_bytes = call.in_bytes
    # Where d's byte range meets an operand's (two comparisons, inline: a call would cost more), the
    # exact test decides.
    if ((d_ptr < a_ptr + ((a_rows - 1) * a_strides[0] + a_cols) * in_bytes and a_ptr < d_end
         and may_overlap(d, a))
            or (d_ptr < b_ptr + ((b_rows - 1) * b_strides[0] + b_cols) * in_bytes and b_ptr < d_end
                and may_overlap(d, b))):
        return False
    if (c is not None and (c_ptr != d_ptr or c_strides != d_strides)
            and d_ptr < c_ptr + (m - 1) * c_row_bytes + n * call.out_bytes and c_ptr < d_end
            and may_overlap(d, c)):
        return False
    call.plan.run_dense(a, b, d, a_ptr, a_strides, b_ptr, b_strides, d_ptr, d_strides, d_row_bytes, c_ptr,
                        c_row_bytes)
    return True


def _as_mk(layout: str, A: torch.Tensor) -> torch.Tensor:
    return A if layout[0] == "n" else A.T


def _as_kn(layout: str, B: torch.Tensor) -> torch.Tensor:
    return B if layout[1] == "n" else B.T


def _checked(layout: str, a: object, b: object, d: object,
             c: object) -> tuple[torch.Tensor, torch.Tensor, int, int, int, int | None]:
    """Check every rule of ``bf16_gemm_<layout>``; returns ``(A, B, M, N, K, the CUDA device index or
    None for the CPU)``, after ``require_hopper`` on a CUDA device."""
    a_dims, b_dims = STORED_DIMS[layout]
    A, B = _check_operands(a, b, a_dims, b_dims)
    sizes = dict(zip(a_dims, A.shape, strict=True))
    m, k = sizes["M"], sizes["K"]
    check_dtype("d", check_tensor("d", d), OUT_DTYPES)
    check_rank("d", d, ("M", "N"))
    # N from d: a B stored in the wrong layout is then reported against the shape this op expects.
    n = d.shape[1]
    check_shape("b", B, b_dims, [k if dim == "K" else n for dim in b_dims])
    check_shape("d", d, ("M", "N"), (m, n))
    tensors = {"a": A, "b": B, "d": d}
    if c is not None:
        check_dtype("c", check_tensor("c", c), (d.dtype,))
        check_shape("c", c, ("M", "N"), (m, n))
        tensors["c"] = c
    check_multiple(a_dims[1], A.shape[1], 8, "TMA needs 16-byte rows of a")
    check_multiple(b_dims[1], B.shape[1], 8, "TMA needs 16-byte rows of b")
    check_d_row_bytes(n, d)
    check_dense_kernel_dims(m, n, k)
    cuda_index = _check_devices_and_strides(tensors, tensors)
    # c may be d itself (accumulating in place: each element is read before it is written), not a part of it.
    same_as_d = c is not None and (c.data_ptr(), c.stride()) == (d.data_ptr(), d.stride())
    check_no_overlap("d", d, {"a": A, "b": B, "c": None if same_as_d else c})
    return A, B, m, n, k, cuda_index


def _check_operands(a: object, b: object, a_dims: tuple[str, ...],
                    b_dims: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    A, B = check_tensor("a", a), check_tensor("b", b)
    check_dtype("a", A, IN_DTYPES)
    check_dtype("b", B, (A.dtype,))
    check_rank("a", A, a_dims)
    check_rank("b", B, b_dims)
    return A, B


def _check_devices_and_strides(tensors: dict[str, torch.Tensor],
                               tma_tensors: dict[str, torch.Tensor]) -> int | None:
    """One CPU or CUDA device for all ``tensors``; TMA's layout rules for ``tma_tensors``."""
    device = check_same_device(tensors)
    for name, tensor in tma_tensors.items():
        check_tma_operand(name, tensor)
    return hopper_index(device)


# --- grouped ---------------------------------------------------------------------------------------------


@traceable(lambda a, b, d, m_indices: ((a, b, d, m_indices), d) if tensors(a, b, d, m_indices) else None,
           _m_grouped_bf16_gemm_nt_contiguous_op)
def m_grouped_bf16_gemm_nt_contiguous(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                                      m_indices: torch.Tensor) -> torch.Tensor:
    """MoE grouped ``D = A · B[e]ᵀ`` where row ``m`` uses expert ``e = m_indices[m]``; returns ``d``.

    ``m_grouped_fp8_gemm_nt_contiguous`` for 16-bit operands (no scales): FP32 accumulation, rounded
    once into ``d``; expert rows of ``d`` overwritten, padding rows (``m_indices[m] == -1``) untouched.

    Tensor contract (all on one device, CPU or a Hopper GPU):
        a: ``bfloat16`` or ``float16 [M_sum, K]``, K-major; b: the same dtype, ``[G, N, K]``, experts
            back to back (``stride(0) == N * stride(1)``).
        d: ``bfloat16``, ``float16`` or ``float32 [M_sum, N]``.
        m_indices: ``int32 [M_sum]``, contiguous: each row's expert in ``[0, G)``, -1 for padding;
            each expert's rows start at a multiple of 128 (``get_m_alignment_for_contiguous_layout()``).
    Strides and sizes as in ``bf16_gemm_nt`` (K and N multiples of 8 elements). Index values are
    checked as in the FP8 op: always on the CPU, on a GPU only under ``DG_DEBUG_CHECK_INDICES=1``.
    """
    A, B = _check_operands(a, b, ("M_sum", "K"), ("G", "N", "K"))
    m_sum, k = A.shape
    num_groups, n = B.shape[:2]
    m_indices = check_index_vector("m_indices", m_indices, "M_sum", m_sum)
    cuda_index = _check_grouped(A, B, d, ("M_sum", "N"), (m_sum, n), "m_indices", m_indices)
    settled = settled_contiguous(d, m_indices, num_groups, n, k, cuda_index)
    if settled is not None:
        return settled
    if cuda_index is None:
        warn_if_slow_cpu("m_grouped_bf16_gemm_nt_contiguous", m_sum, n, k)
        out = torch.zeros(m_sum, n, dtype=torch.float32)
        for group in range(num_groups):
            selected = m_indices == group
            out[selected] = A[selected].float() @ B[group].float().T
        return write_rows(d, out, m_indices >= 0)
    _kernel().launch_m_grouped_bf16_contiguous(A, B, d, m_indices, cuda_index)
    return d


@traceable(lambda a, b, d, masked_m, expected_m: ((a, b, d, masked_m, int(expected_m)), d)
           if tensors(a, b, d, masked_m) and integer(expected_m) else None, _m_grouped_bf16_gemm_nt_masked_op)
def m_grouped_bf16_gemm_nt_masked(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, masked_m: torch.Tensor,
                                  expected_m: int) -> torch.Tensor:
    """MoE grouped ``D[g] = A[g] · B[g]ᵀ`` over the first ``masked_m[g]`` rows of each expert; returns ``d``.

    ``m_grouped_fp8_gemm_nt_masked`` for 16-bit operands (no scales): rows ``>= masked_m[g]`` are left
    untouched, no host sync (CUDA-graph capturable).

    Tensor contract (all on one device, CPU or a Hopper GPU):
        a: ``bfloat16`` or ``float16 [G, max_m, K]``; b: the same dtype, ``[G, N, K]``, experts back to
            back. d: ``bfloat16``, ``float16`` or ``float32 [G, max_m, N]``.
        masked_m: ``int32 [G]``, contiguous, each in ``[0, max_m]``; expected_m: ``int > 0``, the typical
            ``masked_m`` value (chooses the tiles only).
    Strides and sizes as in ``bf16_gemm_nt``; ``masked_m`` values are checked as in the FP8 op.
    """
    A, B = _check_operands(a, b, ("G", "max_m", "K"), ("G", "N", "K"))
    num_groups, max_m, k = A.shape
    n = B.shape[1]
    masked_m = check_index_vector("masked_m", masked_m, "G", num_groups)
    expected_m = check_positive_int("expected_m", expected_m)
    cuda_index = _check_grouped(A, B, d, ("G", "max_m", "N"), (num_groups, max_m, n), "masked_m", masked_m)
    settled = settled_masked(d, masked_m, max_m, n, k, cuda_index)
    if settled is not None:
        return settled
    if cuda_index is None:
        warn_if_slow_cpu("m_grouped_bf16_gemm_nt_masked", num_groups * max_m, n, k)
        return write_rows(d, A.float() @ B.float().transpose(1, 2), masked_rows(masked_m, max_m))
    _kernel().launch_m_grouped_bf16_masked(A, B, d, masked_m, expected_m, cuda_index)
    return d


def _check_grouped(A: torch.Tensor, B: torch.Tensor, d: object, d_dims: tuple[str, ...],
                   d_shape: tuple[int, ...], index_name: str, index: torch.Tensor) -> int | None:
    """The grouped ops' rules once A and B are checked; returns the CUDA device index or ``None``."""
    k = A.shape[-1]
    check_shape("b", B, ("G", "N", "K"), (B.shape[0], B.shape[1], k))
    check_dtype("d", check_tensor("d", d), OUT_DTYPES)
    check_shape("d", d, d_dims, d_shape)
    check_multiple("K", k, 8, "TMA needs 16-byte rows of a and b")
    check_d_row_bytes(B.shape[1], d)
    check_packed_groups("b", B, ("G", "N", "K"))
    check_grouped_kernel_dims(A, B)
    tma_tensors = {"a": A, "b": B, "d": d}
    cuda_index = _check_devices_and_strides({**tma_tensors, index_name: index}, tma_tensors)
    check_no_overlap("d", d, {"a": A, "b": B, index_name: index})
    return cuda_index
