"""Transposed FP8 weights for the data-gradient GEMM (``dX = dY · W``), which reads ``Wᵀ [K, N]`` as its B.

A 128x128 block scale covers the same block of ``W`` and of ``Wᵀ``, so the transpose of a block-quantised
weight is the transposed FP8 values with the transposed scale grid: no re-quantisation, no rounding.
"""

import torch

from .cast import BLOCK_K, BLOCK_MN, FP8_DTYPE
from .layout import _ceil_div


def transpose_fp8_block_scaled(w_fp8: torch.Tensor, sw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The block-quantised ``Wᵀ`` of a block-quantised ``W`` (as ``per_block_cast_to_fp8`` returns it).

    Contract:
        w_fp8: ``float8_e4m3fn [N, K]`` or ``[G, N, K]`` (a weight per expert), any strides, CPU or CUDA.
        sw: ``float32 [ceil(N/128), ceil(K/128)]`` (``[G, ...]``), its 128x128 block scales, any strides,
            on ``w_fp8``'s device.
        returns: ``(wt_fp8, swt)``, both contiguous on that device: ``wt_fp8 float8_e4m3fn [K, N]``
            (``[G, K, N]``) with ``wt_fp8[k, n] == w_fp8[n, k]``, and ``swt float32
            [ceil(K/128), ceil(N/128)]`` with ``swt[kb, nb] == sw[nb, kb]``: the operand
            ``(wt_fp8, swt)`` that ``fp8_gemm_nt`` and the m-grouped GEMMs take as B for ``dX = dY · W``.
        It equals ``per_block_cast_to_fp8`` of the transposed dequantised weight.
        raises: ``TypeError`` for a non-tensor or a wrong dtype; ``ValueError`` for a wrong rank, scales
            whose shape does not match the weight's blocks, or tensors on different devices.
    """
    func = "transpose_fp8_block_scaled"
    for name, value, dtype in (("w_fp8", w_fp8, FP8_DTYPE), ("sw", sw, torch.float32)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{func}: {name} must be a torch.Tensor, got {type(value).__name__}")
        if value.dtype != dtype:
            raise TypeError(f"{func}: {name} must have dtype {dtype}, got {value.dtype}")
    if w_fp8.dim() not in (2, 3):
        raise ValueError(f"{func}: w_fp8 must be [N, K] or [G, N, K], found shape {tuple(w_fp8.shape)}")
    *batch, n, k = w_fp8.shape
    expected = (*batch, _ceil_div(n, BLOCK_MN), _ceil_div(k, BLOCK_K))
    if tuple(sw.shape) != expected:
        dims = "[G, ceil(N/128), ceil(K/128)]" if batch else "[ceil(N/128), ceil(K/128)]"
        raise ValueError(f"{func}: sw must have shape {dims} = {expected} (one scale per 128x128 block of "
                         f"w_fp8), found {tuple(sw.shape)}")
    if sw.device != w_fp8.device:
        raise ValueError(f"{func}: w_fp8 and sw must be on one device, found {w_fp8.device} and {sw.device}")
    return w_fp8.transpose(-1, -2).contiguous(), sw.transpose(-1, -2).contiguous()
