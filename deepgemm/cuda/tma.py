"""TMA tensor maps (``CUtensorMap``) for ``const __grid_constant__ deepgemm::TmaDescriptor`` parameters.

The driver's own checks fail with a bare ``CUDA_ERROR_INVALID_VALUE``, so each rule is checked here first
with its own ``ValueError``. Encoding is on every GEMM call's path, so descriptors are memoised on their full
argument tuple: the same weights, and activations the caching allocator hands back at the same address,
cost a dictionary lookup.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence

import torch
from cuda.bindings import driver

from deepgemm.cuda.driver import call

_DT = driver.CUtensorMapDataType
_DTYPES: dict[torch.dtype, driver.CUtensorMapDataType] = {
    # TMA copies bytes; FP8 travels as UINT8 (it has no FP8 type, and needs none: FP8 boxes are never
    # converted or NaN-filled).
    torch.float8_e4m3fn: _DT.CU_TENSOR_MAP_DATA_TYPE_UINT8,
    torch.uint8: _DT.CU_TENSOR_MAP_DATA_TYPE_UINT8,
    # INT8 as bytes too: loads never convert, and a zero-filled byte is int8 zero.
    torch.int8: _DT.CU_TENSOR_MAP_DATA_TYPE_UINT8,
    torch.bfloat16: _DT.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
    torch.float16: _DT.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
    torch.float32: _DT.CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
    torch.int32: _DT.CU_TENSOR_MAP_DATA_TYPE_INT32,
}
_FLOAT_DTYPES = frozenset({torch.bfloat16, torch.float16, torch.float32})
_SW = driver.CUtensorMapSwizzle
_SWIZZLES = {0: _SW.CU_TENSOR_MAP_SWIZZLE_NONE, 32: _SW.CU_TENSOR_MAP_SWIZZLE_32B,
             64: _SW.CU_TENSOR_MAP_SWIZZLE_64B, 128: _SW.CU_TENSOR_MAP_SWIZZLE_128B}
_L2 = driver.CUtensorMapL2promotion
_L2_PROMOTIONS = {0: _L2.CU_TENSOR_MAP_L2_PROMOTION_NONE, 64: _L2.CU_TENSOR_MAP_L2_PROMOTION_L2_64B,
                  128: _L2.CU_TENSOR_MAP_L2_PROMOTION_L2_128B, 256: _L2.CU_TENSOR_MAP_L2_PROMOTION_L2_256B}
_MAX_RANK = 5
_MAX_BOX = 256


class TmaDescriptor(bytes):
    """The 128 opaque bytes of an encoded ``CUtensorMap``; pass it for a ``ParamType.TMA`` kernel parameter
    (the launcher copies the bytes into the parameter buffer, i.e. by value)."""

    __slots__ = ()


def check_tma_args(ptr: int, dtype: torch.dtype, global_dims: Sequence[int],
                   global_strides_bytes: Sequence[int], box_dims: Sequence[int], swizzle: int,
                   oob_fill_zero: bool, l2_promotion: int) -> None:
    """Raise ``ValueError`` naming the first TMA rule the arguments break (see ``make_tma_descriptor``)."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype}: TMA descriptors support {', '.join(map(str, _DTYPES))}")
    rank = len(global_dims)
    if not 1 <= rank <= _MAX_RANK:
        raise ValueError(f"rank {rank}: a tiled tensor map has 1 to {_MAX_RANK} dimensions")
    if len(box_dims) != rank:
        raise ValueError(f"box_dims {tuple(box_dims)}: expected {rank} entries, one per global dimension")
    if len(global_strides_bytes) != rank - 1:
        raise ValueError(f"global_strides_bytes {tuple(global_strides_bytes)}: expected {rank - 1} entries "
                         "(dimensions 1.. ; the innermost stride is the element size)")
    if ptr % 16:
        raise ValueError(f"global address {ptr:#x}: must be 16-byte aligned")
    for i, dim in enumerate(global_dims):
        if not 1 <= dim <= 2**32:
            raise ValueError(f"global_dims[{i}] = {dim}: must be in [1, 2^32] (handle empty tensors before "
                             "encoding)")
    for i, stride in enumerate(global_strides_bytes, start=1):
        if stride <= 0 or stride % 16 or stride >= 2**40:
            raise ValueError(f"global stride of dimension {i} = {stride} bytes: must be a positive multiple "
                             "of 16 below 2^40")
    for i, box in enumerate(box_dims):
        if not 1 <= box <= _MAX_BOX:
            raise ValueError(f"box_dims[{i}] = {box}: must be in [1, {_MAX_BOX}]")
    inner_bytes = box_dims[0] * dtype.itemsize
    if inner_bytes % 16:
        raise ValueError(f"inner box {box_dims[0]} x {dtype.itemsize} B = {inner_bytes} B: must be a "
                         "multiple of 16 bytes")
    if swizzle not in _SWIZZLES:
        raise ValueError(f"swizzle {swizzle}: must be one of {tuple(_SWIZZLES)} (bytes)")
    if swizzle and inner_bytes > swizzle:
        raise ValueError(f"inner box {inner_bytes} B: must not exceed the {swizzle}-byte swizzle span")
    if not oob_fill_zero and dtype not in _FLOAT_DTYPES:
        raise ValueError(f"oob_fill_zero=False (NaN fill) needs a floating-point dtype, not {dtype}")
    if l2_promotion not in _L2_PROMOTIONS:
        raise ValueError(f"l2_promotion {l2_promotion}: must be one of {tuple(_L2_PROMOTIONS)} (bytes)")


def make_tma_descriptor(ptr: int, dtype: torch.dtype, global_dims: Sequence[int],
                        global_strides_bytes: Sequence[int], box_dims: Sequence[int], swizzle: int = 0,
                        oob_fill_zero: bool = True, l2_promotion: int = 256) -> TmaDescriptor:
    """Encode a tiled tensor map (``cuTensorMapEncodeTiled``) of rank 1 to 5.

    - ``ptr``: global address, 16-byte aligned. ``dtype``: float8_e4m3fn, uint8, int8, bfloat16, float16,
      float32 or int32.
    - ``global_dims``: sizes in elements, innermost (contiguous) first, each in [1, 2^32].
    - ``global_strides_bytes``: strides of dimensions 1.. in bytes (the innermost is the element
      size), multiples of 16.
    - ``box_dims``: the tile one TMA instruction moves, innermost first, each in [1, 256]; the inner
      box must span a multiple of 16 bytes, and at most the swizzle span when swizzled.
    - ``swizzle``: shared-memory swizzle span in bytes, 0 (none), 32, 64 or 128.
    - ``oob_fill_zero``: out-of-bounds elements read as zero (else as NaN, floating-point dtypes only).
    - ``l2_promotion``: L2 fetch granularity in bytes, 0, 64, 128 or 256.

    Needs the NVIDIA driver. Raises ``ValueError`` for arguments TMA cannot encode.
    """
    return _encode(ptr, dtype, tuple(global_dims), tuple(global_strides_bytes), tuple(box_dims), swizzle,
                   oob_fill_zero, l2_promotion)


@functools.lru_cache(maxsize=4096)
def _encode(ptr: int, dtype: torch.dtype, global_dims: tuple[int, ...], global_strides_bytes: tuple[int, ...],
            box_dims: tuple[int, ...], swizzle: int, oob_fill_zero: bool, l2_promotion: int) -> TmaDescriptor:
    check_tma_args(ptr, dtype, global_dims, global_strides_bytes, box_dims, swizzle, oob_fill_zero,
                   l2_promotion)
    oob_fill = (driver.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE if oob_fill_zero
                else driver.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA)
    box, element_strides = _box_args(box_dims)
    tensor_map = call(driver.cuTensorMapEncodeTiled, _DTYPES[dtype], len(global_dims), ptr,
                      [driver.cuuint64_t(dim) for dim in global_dims],
                      [driver.cuuint64_t(stride) for stride in global_strides_bytes], box, element_strides,
                      driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE, _SWIZZLES[swizzle],
                      _L2_PROMOTIONS[l2_promotion], oob_fill)
    return TmaDescriptor(ctypes.string_at(tensor_map.getPtr(), 128))


@functools.lru_cache(maxsize=256)
def _box_args(box_dims: tuple[int, ...]) -> tuple[list, list]:
    # Boxes come from a handful of kernel configs, while addresses and sizes vary: convert each box once
    # (what that saves: docs/jit-notes.md).
    return ([driver.cuuint32_t(box) for box in box_dims],
            [driver.cuuint32_t(1)] * len(box_dims))  # element strides: every element, no striding
