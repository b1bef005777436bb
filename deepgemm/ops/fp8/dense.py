"""The dense FP8 GEMM with fine-grained (DeepSeek-V3) scaling: validate, then run on the CPU or the GPU."""

import torch
from torch import Tensor

from ...quant.cast import BLOCK_K, BLOCK_MN, FP8_DTYPE
from ...quant.layout import TMA_ALIGNMENT_BYTES
from ..common import settings as settings_module
from ..common.cpu_path import fp8_gemm_nt_fp32
from ..common.lazy import lazy_import
from ..common.settings import require_hopper
from ..common.traced import eager, scaled_pairs, tensors, traceable
from ..common.validation import (
    check_d_row_bytes,
    check_dense_kernel_dims,
    check_dtype,
    check_fp8_operand,
    check_multiple,
    check_no_overlap,
    check_row_major,
    check_same_device,
    check_shape,
    check_tensor,
    check_tma_operand,
    tma_row_stride_bounds,
    tma_rows_ok,
    warn_if_slow_cpu,
)

OUT_DTYPES = (torch.bfloat16, torch.float32)

FP8Operand = tuple[torch.Tensor, torch.Tensor]


def _fp8_gemm_nt_op(a: Tensor, sfa: Tensor, b: Tensor, sfb: Tensor, d: Tensor) -> None:
    eager("fp8_gemm_nt")((a, sfa), (b, sfb), d)


@traceable(lambda a, b, d: ((*a, *b, d), d) if scaled_pairs(a, b) and tensors(d) else None, _fp8_gemm_nt_op)
def fp8_gemm_nt(a: FP8Operand, b: FP8Operand, d: torch.Tensor) -> torch.Tensor:
    """``D = A · Bᵀ`` with 1x128 scales on A and 128x128 scales on B, written into ``d``; returns ``d``.

    ``D[m, n] = Σ_kb sfa[m, kb] · sfb[n // 128, kb] · Σ_{k in block kb} A[m, k] · B[n, k]``, with
    each 128-K block's partial sum scaled and accumulated in FP32, then rounded once to ``d``'s
    dtype. ``d`` is overwritten (no accumulation into it).

    Tensor contract (all on one device, CPU or a Hopper GPU):
        a = (A, sfa):
            A: ``float8_e4m3fn [M, K]``, K-major: ``stride(1) == 1``, ``stride(0)`` a multiple of 16
                elements and ``>= K`` (views of larger buffers work), 16-byte-aligned start.
            sfa: ``float32 [M, ceil(K/128)]``, any strides. The MN-major TMA-aligned layout of
                ``deepgemm.get_mn_major_tma_aligned_tensor`` is used as is; any other layout costs a
                small transposing copy per GPU call.
        b = (B, sfb):
            B: ``float8_e4m3fn [N, K]``, K-major, same stride rules as A.
            sfb: ``float32 [ceil(N/128), ceil(K/128)]``, contiguous row-major (as
                ``per_block_cast_to_fp8`` returns it); a transposed view is refused.
        d: ``bfloat16`` or ``float32 [M, N]``, ``stride(1) == 1``, ``stride(0)`` a multiple of 16
            bytes (8 BF16 / 4 FP32 elements) and ``>= N``, 16-byte-aligned start.
    Sizes: any ``M >= 0``; ``N`` a multiple of 8 for BF16 ``d``, of 4 for FP32; ``K`` a multiple
    of 16 (the tail of the last 128-block is fine). ``M == 0`` or ``N == 0``: nothing to do;
    ``K == 0``: ``d`` is zero-filled (the empty sum).

    Raises (before anything runs): ``TypeError`` for a non-tensor or a wrong dtype; ``ValueError``
    for a wrong rank or shape, a size or stride rule, or tensors on different or unsupported
    devices; ``RuntimeError`` for a CUDA device that is not Hopper (sm_90).
    """
    if _launch_cached(a, b, d):
        return d
    A, sfa, B, sfb, m, n, k, cuda_index = _fast_checked(a, b, d) or _checked(a, b, d)
    if cuda_index is not None:
        require_hopper(cuda_index)

    if m == 0 or n == 0:
        return d
    if k == 0:
        return d.zero_()
    if cuda_index is None:
        warn_if_slow_cpu("fp8_gemm_nt", m, n, k)
        return d.copy_(fp8_gemm_nt_fp32(A, sfa, B, sfb))
    plan = _kernel().launch_checked(A, sfa, B, sfb, d, m, n, k, cuda_index)
    _remember_call(A, B, d, m, n, k, plan)
    return d


# The arguments once checked: (A, sfa, B, sfb, M, N, K, the CUDA device index or None for the CPU).
Checked = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, int, int, int | None]


def _checked(a: object, b: object, d: object) -> Checked:
    """Check every rule of ``fp8_gemm_nt`` in turn, raising with a message that names the first one broken.

    This is the definition of the rules. It builds names and tuples as it goes, so ``fp8_gemm_nt`` only
    runs it when ``_fast_checked`` cannot vouch for the arguments (an error, an empty size, an unusual
    type), not on every call.
    """
    A, sfa = check_fp8_operand("a", a, ("A", "sfa"), ("M", "K"), scale_block_rows=1)
    B, sfb = check_fp8_operand("b", b, ("B", "sfb"), ("N", "K"), scale_block_rows=BLOCK_MN)
    check_dtype("d", check_tensor("d", d), OUT_DTYPES)
    m, k = A.shape
    n = B.shape[0]
    check_shape("B (b[0])", B, ("N", "K"), (n, k))
    check_shape("d", d, ("M", "N"), (m, n))
    check_multiple("K", k, 16, "TMA needs 16-byte rows of FP8 in A and B")
    check_d_row_bytes(n, d)
    check_dense_kernel_dims(m, n, k)
    inputs = {"A (a[0])": A, "sfa (a[1])": sfa, "B (b[0])": B, "sfb (b[1])": sfb}
    device = check_same_device({**inputs, "d": d})
    check_tma_operand("A (a[0])", A)
    check_tma_operand("B (b[0])", B)
    check_tma_operand("d", d)
    check_row_major("sfb (b[1])", sfb, ("ceil(N/128)", "ceil(K/128)"))
    check_no_overlap("d", d, inputs)
    return A, sfa, B, sfb, m, n, k, device.index if device.type == "cuda" else None


_PAIR_TYPES = (tuple, list)
_FP32 = torch.float32
# d's elements per 16 bytes, by allowed dtype: N and d's row stride must be multiples of it (TMA).
_D_ELEMENTS_PER_16_BYTES = {torch.bfloat16: 8, torch.float32: 4}


def _fast_checked(a: object, b: object, d: object) -> Checked | None:
    """What ``_checked`` returns when the arguments plainly keep every rule, else ``None``.

    Runs on every call, so each tensor attribute is read once and the rules are plain int
    comparisons, with no message built: ~5 us, against ~17 us for ``_checked``. It may turn down
    valid arguments (empty sizes, tuple subclasses) but must never accept an invalid one; ``None``
    sends the caller to ``_checked``, which raises the precise error or returns the same result
    (tests/ops/test_fp8_host_path.py holds the two to that).
    """
    # Operands are (tensor, scale) pairs; all five arguments tensors of the allowed dtypes.
    if type(a) not in _PAIR_TYPES or type(b) not in _PAIR_TYPES or len(a) != 2 or len(b) != 2:
        return None
    A, sfa = a
    B, sfb = b
    Tensor = torch.Tensor
    if not (isinstance(A, Tensor) and isinstance(sfa, Tensor) and isinstance(B, Tensor)
            and isinstance(sfb, Tensor) and isinstance(d, Tensor)):
        return None
    d_per_16_bytes = _D_ELEMENTS_PER_16_BYTES.get(d.dtype)
    if (d_per_16_bytes is None or A.dtype is not FP8_DTYPE or B.dtype is not FP8_DTYPE
            or sfa.dtype is not _FP32 or sfb.dtype is not _FP32):
        return None

    # Shapes: A [M, K], sfa [M, ceil(K/128)], B [N, K], sfb [ceil(N/128), ceil(K/128)], d [M, N];
    # K a multiple of 16, N of 16 bytes of d. Empty sizes are left to _checked.
    a_shape, b_shape = A.shape, B.shape
    if len(a_shape) != 2 or len(b_shape) != 2:
        return None
    m, k = a_shape
    n = b_shape[0]
    if m <= 0 or n <= 0 or k <= 0 or k % 16 or n % d_per_16_bytes:
        return None
    # Within the kernels' 32-bit sizes, with room to spare for the tile count; else _checked decides.
    if (m | n | k) >> 31 or (m * n) >> 40:
        return None
    k_blocks = (k + BLOCK_K - 1) // BLOCK_K
    if (b_shape[1] != k or d.shape != (m, n) or sfa.shape != (m, k_blocks)
            or sfb.shape != ((n + BLOCK_MN - 1) // BLOCK_MN, k_blocks)):
        return None

    # One device, a CPU or a CUDA one.
    device = A.device
    if sfa.device != device or B.device != device or sfb.device != device or d.device != device:
        return None
    if A.is_cuda:
        cuda_index = device.index
    elif A.is_cpu:
        cuda_index = None
    else:
        return None

    # Layouts: check_tma_operand on A, B and d (2-D, non-empty); sfb row-major.
    a_strides, b_strides, d_strides = A.stride(), B.stride(), d.stride()
    if not (tma_rows_ok(a_strides, m, k, 16) and tma_rows_ok(b_strides, n, k, 16)
            and tma_rows_ok(d_strides, m, n, d_per_16_bytes)):
        return None
    a_ptr, b_ptr, d_ptr = A.data_ptr(), B.data_ptr(), d.data_ptr()
    if (a_ptr | b_ptr | d_ptr) % TMA_ALIGNMENT_BYTES:  # all 16-byte aligned
        return None
    if not sfb.is_contiguous():
        return None
    # d shares no byte with the inputs: its byte range misses theirs (else _checked decides exactly).
    d_end = d_ptr + ((m - 1) * d_strides[0] + n) * d.element_size()
    a_bytes, b_bytes = (m - 1) * a_strides[0] + k, (n - 1) * b_strides[0] + k
    if not _d_misses_inputs(d_ptr, d_end, a_ptr, a_bytes, b_ptr, b_bytes, sfa, sfb, m, k_blocks):
        return None
    return A, sfa, B, sfb, m, n, k, cuda_index


# `kernel`, imported on the first GPU call: CPU use never loads the CUDA driver modules.
_kernel = lazy_import("deepgemm.ops.fp8.kernel")


def _d_misses_inputs(d_ptr: int, d_end: int, a_ptr: int, a_bytes: int, b_ptr: int, b_bytes: int, sfa: Tensor,
                     sfb: Tensor, m: int, k_blocks: int) -> bool:
    """Whether d's byte range ``[d_ptr, d_end)`` misses those of A and B (``a_bytes``, ``b_bytes`` from
    their starts) and of sfa and sfb (non-empty 2-D tensors of the checked shapes, sfb contiguous):
    sufficient for ``check_no_overlap``, not necessary (column slices of one buffer interleave), so a
    False sends the call to ``_checked``, which decides exactly. ``_launch_cached`` inlines the same test."""
    sfa_ptr, sfb_ptr = sfa.data_ptr(), sfb.data_ptr()
    sfa_row, sfa_col = sfa.stride()
    sfa_bytes = ((m - 1) * sfa_row + (k_blocks - 1) * sfa_col + 1) * 4
    return ((d_end <= a_ptr or a_ptr + a_bytes <= d_ptr) and (d_end <= b_ptr or b_ptr + b_bytes <= d_ptr)
            and (d_end <= sfb_ptr or sfb_ptr + sfb.numel() * 4 <= d_ptr)
            and (d_end <= sfa_ptr or sfa_ptr + sfa_bytes <= d_ptr))


# --- the cached call path ------------------------------------------------------------------------------
# A GPU call whose sizes were seen before (same A and B shapes, d dtype, device and SM setting) is checked
# and launched in one pass over its arguments: each tensor attribute is read once, and what follows from
# the sizes alone (the other shapes, the size rules, the Hopper check, the plan) was settled by the first
# call of those sizes, which ran the full path. It accepts exactly what `_fast_checked` accepts for such
# sizes (tests/ops/test_cached_call_path.py holds it to that); anything else falls through to the full path.
# The size rules (`check_dense_kernel_dims`) need no check here: they depend on M, N and K
# only, the key's A and B shapes fix those (and d's shape must match), and an entry is only made after a
# call of those sizes passed `_fast_checked` or `_checked`. Whether d overlaps an input depends on the
# pointers, so that is checked on every call, as `_fast_checked` does it (byte ranges).
# It runs on every call, so the rules are inlined with their size-dependent bounds precomputed per entry
# (a function call or a `stride(dim)` costs as much as several comparisons): the dtypes, shapes and
# devices in one tuple comparison, `tma_rows_ok` as chained comparisons, `_d_misses_inputs` as
# comparisons of byte ranges.


class _CachedCall:
    __slots__ = ("expected", "sizes", "plan", "run")

    def __init__(self, m: int, n: int, k: int, d_dtype: torch.dtype, device: torch.device, plan: object,
                 run) -> None:
        k_blocks = (k + BLOCK_K - 1) // BLOCK_K
        sfb_shape = ((n + BLOCK_MN - 1) // BLOCK_MN, k_blocks)
        # (A, B, sfa, sfb) dtypes, (sfa, sfb, d) shapes, (sfa, B, sfb, d) devices: `_launch_cached`'s order.
        self.expected = (FP8_DTYPE, FP8_DTYPE, _FP32, _FP32, (m, k_blocks), sfb_shape, (m, n),
                         device, device, device, device)
        d_per_16_bytes = _D_ELEMENTS_PER_16_BYTES[d_dtype]
        # What `_launch_cached` computes with, in its order, in one tuple (one read, not one per field):
        # per operand `tma_rows_ok`'s bounds on the row stride, then what the byte ranges take.
        self.sizes = (*tma_row_stride_bounds(m, k, 16), *tma_row_stride_bounds(n, k, 16),
                      *tma_row_stride_bounds(m, n, d_per_16_bytes), d_per_16_bytes,
                      m - 1, n, n - 1, k, k_blocks - 1, d_dtype.itemsize, sfb_shape[0] * sfb_shape[1] * 4)
        self.plan, self.run = plan, run


# By (A's shape, B's shape, d's dtype, the device, the set_num_sms value); cleared once this full.
_MAX_CACHED_CALLS = 4096
_cached_calls: dict[tuple, _CachedCall] = {}


def _remember_call(A: torch.Tensor, B: torch.Tensor, d: torch.Tensor, m: int, n: int, k: int,
                   plan: object) -> None:
    if len(_cached_calls) >= _MAX_CACHED_CALLS:
        _cached_calls.clear()
    key = (A.shape, B.shape, d.dtype, A.device, settings_module._num_sms)
    _cached_calls[key] = _CachedCall(m, n, k, d.dtype, A.device, plan, _kernel().run_plan)


def _launch_cached(a: object, b: object, d: object) -> bool:
    """Launch a GPU call of remembered sizes whose arguments keep every rule; False (nothing done) for
    anything else."""
    if type(a) not in _PAIR_TYPES or type(b) not in _PAIR_TYPES or len(a) != 2 or len(b) != 2:
        return False
    A, sfa = a
    B, sfb = b
    Tensor = torch.Tensor
    if not (isinstance(A, Tensor) and isinstance(sfa, Tensor) and isinstance(B, Tensor)
            and isinstance(sfb, Tensor) and isinstance(d, Tensor)):
        return False
    call = _cached_calls.get((A.shape, B.shape, d.dtype, A.device, settings_module._num_sms))
    if call is None:
        return False
    # Tuple equality compares each pair by identity first: the dtypes are singletons.
    if (A.dtype, B.dtype, sfa.dtype, sfb.dtype, sfa.shape, sfb.shape, d.shape, sfa.device, B.device,
            sfb.device, d.device) != call.expected:
        return False
    # `tma_rows_ok` on A, B and d: contiguous rows, a row stride of whole 16 bytes within its bounds.
    a_lo, a_hi, b_lo, b_hi, d_lo, d_hi, d_per_16, m1, n, n1, k, k_blocks1, d_bytes, sfb_bytes = call.sizes
    a_stride, a_col = A.stride()
    b_stride, b_col = B.stride()
    d_stride, d_col = d.stride()
    if not (a_col == 1 and b_col == 1 and d_col == 1 and a_lo <= a_stride < a_hi and b_lo <= b_stride < b_hi
            and d_lo <= d_stride < d_hi and not (a_stride | b_stride) % 16 and not d_stride % d_per_16):
        return False
    a_ptr, b_ptr, d_ptr = A.data_ptr(), B.data_ptr(), d.data_ptr()
    if (a_ptr | b_ptr | d_ptr) % TMA_ALIGNMENT_BYTES or not sfb.is_contiguous():
        return False
    # `_d_misses_inputs`: d's byte range misses A's, B's, sfb's (contiguous) and sfa's (any strides).
    d_end = d_ptr + (m1 * d_stride + n) * d_bytes
    sfb_ptr, sfa_ptr = sfb.data_ptr(), sfa.data_ptr()
    sfa_row, sfa_col = sfa.stride()
    if not ((d_end <= a_ptr or a_ptr + m1 * a_stride + k <= d_ptr)
            and (d_end <= b_ptr or b_ptr + n1 * b_stride + k <= d_ptr)
            and (d_end <= sfb_ptr or sfb_ptr + sfb_bytes <= d_ptr)
            and (d_end <= sfa_ptr or sfa_ptr + (m1 * sfa_row + k_blocks1 * sfa_col + 1) * 4 <= d_ptr)):
        return False
    call.run(call.plan, a_ptr, a_stride, b_ptr, b_stride, sfa, sfb_ptr, d_ptr, d_stride)
    return True
