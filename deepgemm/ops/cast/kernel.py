"""GPU path of the FP8 casts: the fused kernels of ``include/deepgemm/impls/cast/`` through the launch core.

Each cast reads its 16- or 32-bit input once and writes the FP8 values and the FP32 scales, with the
same FP32 operations as the torch implementation in ``deepgemm/quant/cast.py`` (results equal bit for
bit; ``impls/cast/quantize.cuh`` states the rule). Inputs arrive validated by ``quant/cast.py``:
CUDA tensors of a dtype in ``IN_TYPES``, non-empty, with unit stride along the last dim.

The kernels loop over their blocks (grid-stride), so the grid, hence the launcher, is one per kernel
and device whatever the size.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ...jit import ParamType
from ...quant.cast import AMAX_FLOOR, BLOCK_K, BLOCK_MN, FP8_DTYPE
from ...quant.layout import TMA_ALIGNMENT_BYTES, _ceil_div
from ..common.launch import KernelRequest, KernelSpec, LaunchShape, kernel_launcher
from ..common.settings import num_sms_for

IN_TYPES = {
    torch.bfloat16: "deepgemm::cast::InType::BF16",
    torch.float16: "deepgemm::cast::InType::FP16",
    torch.float32: "deepgemm::cast::InType::FP32",
}
THREADS = 256
# CTAs per SM the grid is sized for: as many as fit at once (registers: 32, ~110 and ~48 per thread;
# the transposed cast's 33 KB tile), so every CTA starts at once and the grid-stride loop splits the
# blocks evenly.
CTAS_PER_SM = {"per_token": 8, "per_block": 2, "per_token_transposed": 4}
# Elements a lane reads at once (impls/cast/quantize.cuh: kVecElems).
VEC_ELEMS = 8

_PTR, _U32, _U64, _F32 = ParamType.PTR, ParamType.U32, ParamType.U64, ParamType.F32
# name -> (kernel, header, parameter types in signature order)
KERNELS = {
    "per_token": (
        "deepgemm::fp8_cast_per_token",
        "deepgemm/impls/cast/per_token.cuh",
        (_PTR, _U64, _U32, _U32, _PTR, _PTR, _U64, _U64, _F32),
    ),
    "per_block": (
        "deepgemm::fp8_cast_per_block",
        "deepgemm/impls/cast/per_block.cuh",
        (_PTR, _U64, _U32, _U32, _PTR, _PTR, _PTR, _PTR, _F32),
    ),
    "per_token_transposed": (
        "deepgemm::fp8_cast_per_token_transposed",
        "deepgemm/impls/cast/per_token_transposed.cuh",
        (_PTR, _U64, _U32, _U32, _U32, _PTR, _U64, _PTR, _U64, _U64, _F32),
    ),
}


def kernel_spec(
    name: str, dtype: torch.dtype, vectorized: bool, num_sms: int, transposed: bool = False
) -> KernelSpec:
    """The cast kernel ``name`` for inputs of ``dtype``; ``vectorized``: 16-byte loads (``vectorizes``);
    ``transposed`` (``per_block`` only): also write the transposed block-quantised tensor."""
    kernel, header, param_types = KERNELS[name]
    template_args = (IN_TYPES[dtype], vectorized, *((transposed,) if name == "per_block" else ()))
    comment = f"fp8 cast {name}, in={dtype}, vectorized={vectorized}, transposed={transposed}"
    shape = LaunchShape(num_sms=num_sms * CTAS_PER_SM[name], num_threads=THREADS)
    return KernelSpec(kernel, header, template_args, param_types, shape, 0, comment)


def operand_cast_specs(request: KernelRequest, num_sms: int) -> list[KernelSpec]:
    """The casts that quantise an FP8 GEMM's operands of K = ``request.k`` (ahead-of-time compilation):
    ``per_token_cast_to_fp8`` for A and ``per_block_cast_to_fp8`` for B, from BF16 or FP32 sources. A
    dense-row source of K elements vectorises when K is a multiple of ``VEC_ELEMS``."""
    vectorized = request.k % VEC_ELEMS == 0
    return [kernel_spec(name, dtype, vectorized, num_sms)
            for dtype in (torch.bfloat16, torch.float32) for name in ("per_token", "per_block")]


def token_cast_specs(request: KernelRequest, num_sms: int) -> list[KernelSpec]:
    """The casts that quantise a 1D1D FP8 GEMM's operands of K = ``request.k`` (1x128 scales on both):
    ``per_token_cast_to_fp8`` from BF16 or FP32 sources (ahead-of-time compilation)."""
    vectorized = request.k % VEC_ELEMS == 0
    return [kernel_spec("per_token", dtype, vectorized, num_sms) for dtype in (torch.bfloat16, torch.float32)]


def cast_specs(request: KernelRequest, num_sms: int) -> list[KernelSpec]:
    """Every fused cast of a dense ``[rows, K]`` source of ``request.in_dtype`` with K = ``request.k``
    (ahead-of-time compilation): per-token, per-block (with and without the transposed copy) and the
    transposed per-token cast (which reads the same rows of K elements)."""
    vectorized = request.k % VEC_ELEMS == 0
    dtype = request.in_dtype
    return [kernel_spec("per_token", dtype, vectorized, num_sms),
            kernel_spec("per_block", dtype, vectorized, num_sms),
            kernel_spec("per_block", dtype, vectorized, num_sms, transposed=True),
            kernel_spec("per_token_transposed", dtype, vectorized, num_sms)]


@lru_cache(maxsize=64)
def _launcher(name: str, dtype: torch.dtype, vectorized: bool, device_index: int, transposed: bool = False):
    spec = kernel_spec(name, dtype, vectorized, num_sms_for(device_index), transposed)
    return kernel_launcher(spec, device_index)


def vectorizes(x: torch.Tensor) -> bool:
    """Whether the kernels may read ``x`` (2-D, unit last stride) 8 elements at a time: every row start
    16-byte aligned and the row length a whole number of 8-element vectors."""
    return (
        x.shape[-1] % VEC_ELEMS == 0
        and x.stride(0) % VEC_ELEMS == 0
        and x.data_ptr() % TMA_ALIGNMENT_BYTES == 0
    )


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a 2-D ``[rows, cols]`` view with unit last stride (a copy only where no view exists)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    if x.dim() == 3:
        if x.shape[0] > 1 and x.shape[1] > 1 and x.stride(0) != x.shape[1] * x.stride(1):
            x = x.contiguous()
        x = x.reshape(-1, x.shape[-1])
    return x


def _scales(rows: int, blocks: int, mn_major: bool, device: torch.device) -> tuple[torch.Tensor, int, int]:
    """An FP32 ``[rows, blocks]`` scale tensor and its (row, column) strides: row-major, or the MN-major
    TMA-aligned layout of ``get_mn_major_tma_aligned_tensor``."""
    if not mn_major:
        return torch.empty(rows, blocks, dtype=torch.float32, device=device), blocks, 1
    aligned = _ceil_div(rows, 4) * 4
    return torch.empty_strided((rows, blocks), (1, aligned), dtype=torch.float32, device=device), 1, aligned


def per_token_cast(x: torch.Tensor, mn_major_scales: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_token_cast_to_fp8`` of a 2-D or 3-D CUDA ``x``; MN-major scales only for 2-D ``x``."""
    rows2d = _as_rows(x)
    rows, cols = rows2d.shape
    blocks = _ceil_div(cols, BLOCK_K)
    q = torch.empty(x.shape, dtype=FP8_DTYPE, device=x.device)
    sf, sf_row, sf_col = _scales(rows, blocks, mn_major_scales, x.device)
    vec = vectorizes(rows2d)
    _launcher("per_token", x.dtype, vec, x.device.index)(
        rows2d.data_ptr(),
        rows2d.stride(0),
        rows,
        cols,
        q.data_ptr(),
        sf.data_ptr(),
        sf_row,
        sf_col,
        AMAX_FLOOR,
    )
    return q, sf.view(*x.shape[:-1], blocks) if x.dim() == 3 else sf


def per_block_cast(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_block_cast_to_fp8`` of a 2-D or 3-D CUDA ``x`` (3-D: one launch per group)."""
    return _per_block(x, transposed=False)[0]


def per_block_cast_and_transpose(
    x: torch.Tensor,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``per_block_cast_to_fp8_and_transpose`` of a 2-D or 3-D CUDA ``x``: one kernel writes both."""
    return _per_block(x, transposed=True)


def _per_block(x: torch.Tensor, transposed: bool):
    rows, cols = x.shape[-2:]
    batch = x.shape[:-2]
    q = torch.empty(x.shape, dtype=FP8_DTYPE, device=x.device)
    sf = torch.empty(
        *batch, _ceil_div(rows, BLOCK_MN), _ceil_div(cols, BLOCK_K), dtype=torch.float32, device=x.device
    )
    qt = torch.empty(*batch, cols, rows, dtype=FP8_DTYPE, device=x.device) if transposed else q
    sft = sf.new_empty(*batch, sf.shape[-1], sf.shape[-2]) if transposed else sf
    groups = [(x, q, sf, qt, sft)] if x.dim() == 2 else list(zip(x, q, sf, qt, sft, strict=True))
    for xg, qg, sfg, qtg, sftg in groups:
        xg = xg if xg.stride(-1) == 1 else xg.contiguous()
        _launcher("per_block", x.dtype, vectorizes(xg), x.device.index, transposed)(
            xg.data_ptr(),
            xg.stride(0),
            rows,
            cols,
            qg.data_ptr(),
            sfg.data_ptr(),
            qtg.data_ptr(),
            sftg.data_ptr(),
            AMAX_FLOOR,
        )
    return (q, sf), (qt, sft)


def per_token_cast_transposed(
    x: torch.Tensor, out_tokens: int, mn_major_scales: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_token_cast_to_fp8_transposed`` of a 2-D CUDA ``x [M, K]``: ``xᵀ`` in FP8 ``[K, out_tokens]``
    (``M <= out_tokens <= align(M, 128)``, zero columns past ``M``) and scales ``[K, ceil(M/128)]``."""
    x = x if x.stride(-1) == 1 else x.contiguous()
    rows, cols = x.shape
    blocks = _ceil_div(rows, BLOCK_K)
    q = torch.empty(cols, out_tokens, dtype=FP8_DTYPE, device=x.device)
    sf, sf_row, sf_col = _scales(cols, blocks, mn_major_scales, x.device)
    _launcher("per_token_transposed", x.dtype, vectorizes(x), x.device.index)(
        x.data_ptr(),
        x.stride(0),
        rows,
        cols,
        out_tokens,
        q.data_ptr(),
        out_tokens,
        sf.data_ptr(),
        sf_row,
        sf_col,
        AMAX_FLOOR,
    )
    return q, sf
