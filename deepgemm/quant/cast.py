"""Fine-grained FP8 quantisation in the DeepSeek-V3 recipe: 1x128 scales for activations, 128x128
for weights.

Every block is scaled so that its largest magnitude maps to 448, the largest ``float8_e4m3fn``:
``scale = max(amax, AMAX_FLOOR) / 448`` and ``q = round_to_nearest(x / scale)``, so
``x ~= q * scale``. The floor keeps all-zero blocks finite: their scale is ``AMAX_FLOOR / 448``
and they quantise to zeros. Blocks whose ``amax`` is below the floor (but not zero) get that same
scale: their values land below 448 and keep full FP8 relative precision down to about 3.5e-9
(the smallest normal FP8, 2^-6, times the floor scale).

The exact FP32 operations, the same on every device: ``amax`` (NaN if the block holds a NaN),
``scale = max(amax, float32(AMAX_FLOOR)) / 448`` and ``x / scale`` as IEEE divisions (round to
nearest even), ``clamp(-448, 448)``, then torch's round-to-nearest-even FP8 conversion. Both
divisions are true divisions: torch's CUDA kernels turn a division by a Python number into a
multiply by its rounded reciprocal, which differs in the last bit for about half of all values, so
the scale is divided by a 0-dim tensor there (``_div_by_fp8_max``).

CUDA inputs of dtype bfloat16, float16 or float32 run fused GPU kernels
(``deepgemm/include/deepgemm/impls/cast/``, launched by ``deepgemm/ops/cast/kernel.py``) that read
the input once and compute the same operations in the same order: their results equal this torch
implementation's bit for bit (NaN inputs give NaN scales and NaN bytes; the NaN scale's payload may
differ). Other devices and dtypes run the torch implementation. Under ``torch.compile`` the fused
casts are the custom ops ``torch.ops.deepgemm.fp8_cast_*``.
"""

from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F

from .layout import _ceil_div, get_mn_major_tma_aligned_tensor

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0
AMAX_FLOOR = 1e-4
BLOCK_K = 128
BLOCK_MN = 128


# Input dtypes the fused GPU casts read; the others (float64, FP8) run the torch implementation.
FUSED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _check_input(x: torch.Tensor, func: str, shape_doc: str, ranks: tuple[int, ...] = (2, 3)) -> None:
    if not isinstance(x, torch.Tensor):
        hint = " (wrap a NumPy array with torch.from_numpy)" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{func}: x must be a torch.Tensor{hint}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{func}: x must be a floating-point tensor, got {x.dtype}")
    if x.dim() not in ranks:
        raise ValueError(f"{func}: x must be {shape_doc}, found shape {tuple(x.shape)}")


def _check_flag(func: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{func}: {name} must be a bool, got {type(value).__name__} {value!r}")
    return value


# The fused kernels' launch module, from the ops layer above this one: `deepgemm.ops.cast` registers a
# loader here when it is imported (`import deepgemm` does), and the loader imports the module on the
# first fused cast, so CPU use never loads the CUDA driver modules. Unregistered: the torch casts.
_fused_kernels: Callable[[], ModuleType] | None = None


def register_fused_kernels(loader: Callable[[], ModuleType]) -> None:
    """Route CUDA inputs to the fused kernels of the module ``loader()`` returns (called once per cast)."""
    global _fused_kernels
    _fused_kernels = loader


def _fused(x: torch.Tensor) -> bool:
    """Whether ``x`` goes to a fused GPU cast: a non-empty CUDA tensor of a dtype the kernels read, once
    the kernels are registered."""
    return _fused_kernels is not None and x.is_cuda and x.dtype in FUSED_DTYPES and x.numel() > 0


def _kernels() -> ModuleType:
    return _fused_kernels()


def _div_by_fp8_max(amax: torch.Tensor) -> torch.Tensor:
    """``amax / 448`` as an IEEE division on every device (see the module notes): on the CPU torch
    divides by a Python number exactly; elsewhere the divisor is a 0-dim tensor on ``amax``'s device."""
    if amax.is_cpu:
        return amax / FP8_MAX
    return amax / amax.new_full((), FP8_MAX)


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
    scale = _div_by_fp8_max(amax.clamp(min=AMAX_FLOOR))
    # x / scale may round above 448, and torch does not promise a saturating cast on every device
    # (out-of-range values may become NaN), so clamp first.
    q = (blocks / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


def per_token_cast_to_fp8(
    x: torch.Tensor, *, mn_major_scales: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise activations with one scale per row per 128 columns ("1x128").

    Contract:
        x: ``[M, K]`` or ``[G, M, K]``, any floating dtype, any strides, CPU or CUDA. Any ``K``:
            the last group of a row covers the remaining ``K % 128`` columns.
        mn_major_scales: return ``sf`` (2-D ``x`` only) in the MN-major TMA-aligned layout of
            ``get_mn_major_tma_aligned_tensor``, which the GEMMs read without a conversion.
        returns: ``(x_fp8, sf)`` on ``x``'s device:
            x_fp8 ``float8_e4m3fn`` with ``x``'s shape, contiguous;
            sf ``float32 [M, ceil(K/128)]`` (``[G, M, ceil(K/128)]``), contiguous row-major unless
            ``mn_major_scales``; pass it through ``get_mn_major_tma_aligned_tensor`` once to skip that
            conversion on every GEMM call.
        ``x ~= x_fp8.float() * sf`` broadcast over each 128-column group.
        raises: ``TypeError`` when ``x`` is not a torch tensor (a NumPy array included: wrap it with
            ``torch.from_numpy``) or not floating point, or ``mn_major_scales`` is not a bool;
            ``ValueError`` when ``x`` is not 2-D or 3-D, or is 3-D with ``mn_major_scales``.
    CUDA bfloat16/float16/float32 inputs run one fused kernel (module notes).
    """
    func = "per_token_cast_to_fp8"
    _check_input(x, func, "[M, K] or [G, M, K]")
    if _check_flag(func, "mn_major_scales", mn_major_scales) and x.dim() != 2:
        raise ValueError(f"{func}: mn_major_scales=True needs a 2-D x [M, K], found shape {tuple(x.shape)}")
    if _fused(x):
        if torch.compiler.is_compiling():
            return torch.ops.deepgemm.fp8_cast_per_token(x, mn_major_scales)
        return _kernels().per_token_cast(x, mn_major_scales)
    q, sf = _per_token_torch(x)
    return q, get_mn_major_tma_aligned_tensor(sf) if mn_major_scales else sf


def _per_token_torch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cols = x.shape[-1]
    padded = _pad_to_blocks(x, block_rows=1)
    blocks = padded.unflatten(-1, (-1, BLOCK_K))
    q, scale = _quantize(blocks, blocks.abs().amax(dim=-1, keepdim=True))
    return q.flatten(-2)[..., :cols].contiguous(), scale.squeeze(-1)


def per_token_cast_to_fp8_transposed(
    x: torch.Tensor, *, pad_tokens: bool = False, mn_major_scales: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise ``xᵀ`` with one scale per column per 128 rows: the per-token cast the weight gradient's
    operands need, whose reduction runs over the tokens (the rows of ``x``).

    Equal, bit for bit, to ``per_token_cast_to_fp8(x.T)`` (padded with zero columns when asked), but
    on CUDA one fused kernel reads ``x`` once and writes the transposed FP8 tensor.

    Contract:
        x: ``[M, K]`` (M tokens), any floating dtype, any strides, CPU or CUDA, any ``M`` and ``K``.
        pad_tokens: give the FP8 result ``align(M, 128)`` columns, the ones past ``M`` zero (as the
            GEMMs over tokens want whole 128-token blocks); the scales are the same.
        mn_major_scales: return ``sf`` in the MN-major TMA-aligned layout
            (``get_mn_major_tma_aligned_tensor``).
        returns: ``(xt_fp8, sf)`` on ``x``'s device:
            xt_fp8 ``float8_e4m3fn [K, M]`` (``[K, align(M, 128)]`` with ``pad_tokens``), contiguous;
            sf ``float32 [K, ceil(M/128)]``, contiguous row-major unless ``mn_major_scales``.
        ``x[m, k] ~= xt_fp8[k, m].float() * sf[k, m // 128]``.
        raises: ``TypeError`` when ``x`` is not a floating-point torch tensor or a flag is not a bool;
            ``ValueError`` when ``x`` is not 2-D.
    """
    func = "per_token_cast_to_fp8_transposed"
    _check_input(x, func, "[M, K]", ranks=(2,))
    pad = _check_flag(func, "pad_tokens", pad_tokens)
    mn_major = _check_flag(func, "mn_major_scales", mn_major_scales)
    tokens = x.shape[0]
    out_tokens = _ceil_div(tokens, BLOCK_K) * BLOCK_K if pad else tokens
    if _fused(x):
        if torch.compiler.is_compiling():
            return torch.ops.deepgemm.fp8_cast_per_token_transposed(x, out_tokens, mn_major)
        return _kernels().per_token_cast_transposed(x, out_tokens, mn_major)
    q, sf = _per_token_torch(x.T)
    if out_tokens != tokens:
        q = F.pad(q, (0, out_tokens - tokens))
    return q, get_mn_major_tma_aligned_tensor(sf) if mn_major else sf


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
    CUDA bfloat16/float16/float32 inputs run one fused kernel (module notes).
    """
    _check_input(x, "per_block_cast_to_fp8", "[N, K] or [G, N, K]")
    if _fused(x):
        if torch.compiler.is_compiling():
            return torch.ops.deepgemm.fp8_cast_per_block(x)
        return _kernels().per_block_cast(x)
    return _per_block_torch(x)


def per_block_cast_to_fp8_and_transpose(
    x: torch.Tensor,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``per_block_cast_to_fp8(x)`` and its transpose: the weight operands of a layer's forward
    (``W [N, K]``) and of its data gradient (``Wᵀ [K, N]``), which share every 128x128 block's scale.

    Contract:
        x: ``[N, K]`` or ``[G, N, K]``, any floating dtype, any strides, CPU or CUDA.
        returns: ``((w_fp8, sw), (wt_fp8, swt))``, all contiguous on ``x``'s device: ``(w_fp8, sw)``
            equal to ``per_block_cast_to_fp8(x)``; ``wt_fp8 [K, N]`` (``[G, K, N]``) its transpose and
            ``swt [ceil(K/128), ceil(N/128)]`` (``[G, ...]``) the transposed scales, equal to
            ``transpose_fp8_block_scaled(w_fp8, sw)``.
        raises: as ``per_block_cast_to_fp8``.
    On CUDA (bfloat16/float16/float32) one fused kernel reads ``x`` once and writes both.
    """
    _check_input(x, "per_block_cast_to_fp8_and_transpose", "[N, K] or [G, N, K]")
    if _fused(x):
        if torch.compiler.is_compiling():
            q, sf, qt, sft = torch.ops.deepgemm.fp8_cast_per_block_and_transpose(x)
            return (q, sf), (qt, sft)
        return _kernels().per_block_cast_and_transpose(x)
    q, sf = _per_block_torch(x)
    return (q, sf), (q.transpose(-1, -2).contiguous(), sf.transpose(-1, -2).contiguous())


def _per_block_torch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = x.shape[-2:]
    padded = _pad_to_blocks(x, block_rows=BLOCK_MN)
    # [..., NB*128, KB*128] -> [..., NB, 128, KB, 128]: amax over the two 128-wide dims.
    blocks = padded.unflatten(-1, (-1, BLOCK_K)).unflatten(-3, (-1, BLOCK_MN))
    q, scale = _quantize(blocks, blocks.abs().amax(dim=(-3, -1), keepdim=True))
    q = q.flatten(-2).flatten(-3, -2)[..., :rows, :cols].contiguous()
    return q, scale.squeeze(-1).squeeze(-2)


# --- torch.compile: the fused casts as custom ops (one opaque node each), with fake implementations -------


@torch.library.custom_op("deepgemm::fp8_cast_per_token", mutates_args=())
def _per_token_op(x: torch.Tensor, mn_major_scales: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return _kernels().per_token_cast(x, mn_major_scales)


@_per_token_op.register_fake
def _(x: torch.Tensor, mn_major_scales: bool) -> tuple[torch.Tensor, torch.Tensor]:
    sf_shape = (*x.shape[:-1], _ceil_div(x.shape[-1], BLOCK_K))
    if mn_major_scales:
        rows = x.shape[0]
        sf = x.new_empty_strided(sf_shape, (1, _ceil_div(rows, 4) * 4), dtype=torch.float32)
    else:
        sf = x.new_empty(sf_shape, dtype=torch.float32)
    return x.new_empty(x.shape, dtype=FP8_DTYPE), sf


@torch.library.custom_op("deepgemm::fp8_cast_per_block", mutates_args=())
def _per_block_op(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _kernels().per_block_cast(x)


@_per_block_op.register_fake
def _(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = x.shape[-2:]
    sf_shape = (*x.shape[:-2], _ceil_div(rows, BLOCK_MN), _ceil_div(cols, BLOCK_K))
    return x.new_empty(x.shape, dtype=FP8_DTYPE), x.new_empty(sf_shape, dtype=torch.float32)


@torch.library.custom_op("deepgemm::fp8_cast_per_block_and_transpose", mutates_args=())
def _per_block_and_transpose_op(
    x: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    (q, sf), (qt, sft) = _kernels().per_block_cast_and_transpose(x)
    return q, sf, qt, sft


@_per_block_and_transpose_op.register_fake
def _(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    *batch, rows, cols = x.shape
    blocks = (_ceil_div(rows, BLOCK_MN), _ceil_div(cols, BLOCK_K))
    return (
        x.new_empty(x.shape, dtype=FP8_DTYPE),
        x.new_empty((*batch, *blocks), dtype=torch.float32),
        x.new_empty((*batch, cols, rows), dtype=FP8_DTYPE),
        x.new_empty((*batch, blocks[1], blocks[0]), dtype=torch.float32),
    )


@torch.library.custom_op("deepgemm::fp8_cast_per_token_transposed", mutates_args=())
def _per_token_transposed_op(
    x: torch.Tensor, out_tokens: int, mn_major_scales: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    return _kernels().per_token_cast_transposed(x, out_tokens, mn_major_scales)


@_per_token_transposed_op.register_fake
def _(x: torch.Tensor, out_tokens: int, mn_major_scales: bool) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, cols = x.shape
    sf_shape = (cols, _ceil_div(tokens, BLOCK_K))
    if mn_major_scales:
        sf = x.new_empty_strided(sf_shape, (1, _ceil_div(cols, 4) * 4), dtype=torch.float32)
    else:
        sf = x.new_empty(sf_shape, dtype=torch.float32)
    return x.new_empty((cols, out_tokens), dtype=FP8_DTYPE), sf
