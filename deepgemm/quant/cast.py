"""Fine-grained FP8 quantisation in the DeepSeek-V3 recipe: 1x128 scales for activations, 128x128
for weights.

Every block is scaled so that its largest magnitude maps to 448, the largest ``float8_e4m3fn``:
``scale = max(amax, AMAX_FLOOR) / 448`` and ``q = round_to_nearest(x / scale)``, so
``x ~= q * scale``. The floor keeps all-zero blocks finite: their scale is ``AMAX_FLOOR / 448``
and they quantise to zeros. Blocks whose ``amax`` is below the floor (but not zero) get that same
scale: their values land below 448 and keep full FP8 relative precision down to about 3.5e-9
(the smallest normal FP8, 2^-6, times the floor scale).
"""

import torch
import torch.nn.functional as F

from .layout import _ceil_div

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0
AMAX_FLOOR = 1e-4
BLOCK_K = 128
BLOCK_MN = 128


def _check_input(x: torch.Tensor, func: str, shape_doc: str) -> None:
    if not isinstance(x, torch.Tensor):
        hint = " (wrap a NumPy array with torch.from_numpy)" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{func}: x must be a torch.Tensor{hint}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{func}: x must be a floating-point tensor, got {x.dtype}")
    if x.dim() not in (2, 3):
        raise ValueError(f"{func}: x must be {shape_doc}, found shape {tuple(x.shape)}")


def _pad_to_blocks(x: torch.Tensor, block_rows: int) -> torch.Tensor:
    """``x`` in FP32 with the last dim padded to a multiple of 128 and the row dim to ``block_rows``.

    Zero padding leaves every block's amax unchanged.
    """
    rows, cols = x.shape[-2:]
    pad_cols = _ceil_div(cols, BLOCK_K) * BLOCK_K - cols
    pad_rows = _ceil_div(rows, block_rows) * block_rows - rows
    return F.pad(x.float(), (0, pad_cols, 0, pad_rows))


def _quantize(blocks: torch.Tensor, amax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and cast ``blocks`` given their ``amax`` (broadcastable); returns ``(q, scale)``."""
    scale = amax.clamp(min=AMAX_FLOOR) / FP8_MAX
    # x / scale may round above 448, and torch does not promise a saturating cast on every device
    # (out-of-range values may become NaN), so clamp first.
    q = (blocks / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


def per_token_cast_to_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise activations with one scale per row per 128 columns ("1x128").

    Contract:
        x: ``[M, K]`` or ``[G, M, K]``, any floating dtype, any strides, CPU or CUDA. Any ``K``:
            the last group of a row covers the remaining ``K % 128`` columns.
        returns: ``(x_fp8, sf)`` on ``x``'s device, both contiguous:
            x_fp8 ``float8_e4m3fn`` with ``x``'s shape;
            sf ``float32 [M, ceil(K/128)]`` (``[G, M, ceil(K/128)]``), row-major; pass it through
            ``get_mn_major_tma_aligned_tensor`` once to skip that conversion on every GEMM call.
        ``x ~= x_fp8.float() * sf`` broadcast over each 128-column group.
        raises: ``TypeError`` when ``x`` is not a torch tensor (a NumPy array included: wrap it with
            ``torch.from_numpy``) or not floating point; ``ValueError`` when it is not 2-D or 3-D.
    """
    _check_input(x, "per_token_cast_to_fp8", "[M, K] or [G, M, K]")
    cols = x.shape[-1]
    padded = _pad_to_blocks(x, block_rows=1)
    blocks = padded.unflatten(-1, (-1, BLOCK_K))
    q, scale = _quantize(blocks, blocks.abs().amax(dim=-1, keepdim=True))
    return q.flatten(-2)[..., :cols].contiguous(), scale.squeeze(-1)


def per_block_cast_to_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise weights with one scale per 128x128 block.

    Contract:
        x: ``[N, K]`` or ``[G, N, K]``, any floating dtype, any strides, CPU or CUDA, any ``N`` and
            ``K`` (edge blocks cover the remainder).
        returns: ``(x_fp8, sf)`` on ``x``'s device, both contiguous:
            x_fp8 ``float8_e4m3fn`` with ``x``'s shape;
            sf ``float32 [ceil(N/128), ceil(K/128)]`` (``[G, ceil(N/128), ceil(K/128)]``),
            row-major, the layout the GEMMs take for B.
        ``x[n, k] ~= x_fp8[n, k].float() * sf[n // 128, k // 128]``.
        raises: ``TypeError`` when ``x`` is not a torch tensor (a NumPy array included: wrap it with
            ``torch.from_numpy``) or not floating point; ``ValueError`` when it is not 2-D or 3-D.
    """
    _check_input(x, "per_block_cast_to_fp8", "[N, K] or [G, N, K]")
    rows, cols = x.shape[-2:]
    padded = _pad_to_blocks(x, block_rows=BLOCK_MN)
    # [..., NB*128, KB*128] -> [..., NB, 128, KB, 128]: amax over the two 128-wide dims.
    blocks = padded.unflatten(-1, (-1, BLOCK_K)).unflatten(-3, (-1, BLOCK_MN))
    q, scale = _quantize(blocks, blocks.abs().amax(dim=(-3, -1), keepdim=True))
    q = q.flatten(-2).flatten(-3, -2)[..., :rows, :cols].contiguous()
    return q, scale.squeeze(-1).squeeze(-2)
