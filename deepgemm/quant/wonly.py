"""Weight-only quantisation for the W8A16 / W4A16 GEMMs: quantise a weight, pack it into the kernels'
layout (a one-time transform, done when the weight is loaded), and the inverse of each step.

The math: ``W[n, k] = (Q[n, k] - Z[n, g]) · S[n, g]`` with ``g = k // group_size`` (``group_size=None``:
one group over the whole row, "per channel"). Q is INT8 in ``[-128, 127]`` (Z = 0), INT4 in ``[-8, 7]``
(symmetric, Z = 0) or INT4 in ``[0, 15]`` with zero points Z in ``[0, 15]`` (asymmetric). S has the
activations' dtype (BF16 or FP16), so the kernels multiply in that dtype.

The packed layout (the kernels' A fragments; impls/wonly/dequant.cuh documents the byte order): N is
padded to a multiple of 16 and K to a multiple of 64, then the matrix is cut into slabs of 16 rows x 64
columns stored ``[N / 16][K / 64][slab]``; within a slab each GPU lane finds its values in one or two
16-byte runs. INT8 slabs are 1024 bytes of ``Q + 128`` (packed dtype ``int8``, shape
``[align(N, 16), align(K, 64)]``); INT4 slabs 512 bytes, two values per byte (packed dtype ``uint8``,
shape ``[align(N, 16), align(K, 64) / 2]``) of ``Q + 8`` (symmetric) or ``Q`` (with zero points). Scales
are stored ``[ceil(K / group_size), N]`` (K-group-major: a group's scales of consecutive rows are
contiguous) and zero points likewise as ``uint8``. Padding holds Q = 0 (it meets zero-filled activations
or feeds no output). Every helper accepts a leading expert dim ``[G, N, K]`` for the grouped ops.
Packing and unpacking are exact inverses (bit-exact round trips).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

SLAB_ROWS, SLAB_COLS = 16, 64
SCALE_DTYPES = (torch.bfloat16, torch.float16)
INT4_SYMMETRIC_RANGE, INT4_ASYMMETRIC_RANGE, INT8_RANGE = (-8, 7), (0, 15), (-128, 127)


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def num_k_groups(k: int, group_size: int | None) -> int:
    """Scale groups along K: ``ceil(K / group_size)``, or 1 per channel (``group_size=None``)."""
    return 1 if group_size is None else -(-k // group_size)


def check_group_size(group_size: object) -> int | None:
    """``group_size`` after checking it is ``None`` (per channel) or a positive multiple of 64 (the
    kernels' k-block: a k-block never straddles two scale groups)."""
    if group_size is None:
        return None
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int or None (per channel), got {type(group_size).__name__}")
    if group_size <= 0 or group_size % SLAB_COLS:
        raise ValueError(f"group_size must be a positive multiple of {SLAB_COLS} (the kernels' k-block), "
                         f"got {group_size}")
    return group_size


def packed_shape(n: int, k: int, bits: int) -> tuple[int, int]:
    """Shape of one packed ``[N, K]`` weight: ``[align(N, 16), align(K, 64) * bits / 8]``."""
    return _align(n, SLAB_ROWS), _align(k, SLAB_COLS) * bits // 8


@lru_cache(maxsize=2)
def _slab_order(bits: int) -> torch.Tensor:
    """For each value position of a packed slab (a byte for INT8, a nibble, low one first, for INT4), the
    index ``row * 64 + col`` of the value it holds within the 16 x 64 block."""
    pos = torch.arange(SLAB_ROWS * SLAB_COLS)
    if bits == 8:
        # [half h][lane][step t of the half][fragment element i]
        half, lane, step_in_half, element = pos // 512, pos % 512 // 16, pos % 16 // 8, pos % 8
        step = 2 * half + step_in_half
    else:
        # [lane][step s: one 32-bit word][nibble j of the word]; nibble j is element 2j (j < 4) or
        # 2(j - 4) + 1: one mask of nibbles j and j + 4 lands a fragment register's pair.
        byte = pos // 2
        lane, step = byte // 16, byte % 16 // 4
        nibble = 2 * (byte % 4) + pos % 2
        element = torch.where(nibble < 4, 2 * nibble, 2 * (nibble - 4) + 1)
    group, quad = lane // 4, lane % 4
    row = group + 8 * (element // 2 % 2)
    col = 16 * step + 2 * quad + element % 2 + 8 * (element // 4)
    return row * SLAB_COLS + col


def _to_slabs(values: torch.Tensor, bits: int, fill: int) -> torch.Tensor:
    """``[..., N, K]`` stored values -> ``[..., N / 16 slabs, K / 64, 1024]`` in packed order, padded with
    ``fill``."""
    *batch, n, k = values.shape
    n_pad, k_pad = _align(n, SLAB_ROWS), _align(k, SLAB_COLS)
    padded = values.new_full((*batch, n_pad, k_pad), fill)
    padded[..., :n, :k] = values
    blocks = padded.reshape(*batch, n_pad // SLAB_ROWS, SLAB_ROWS, k_pad // SLAB_COLS, SLAB_COLS)
    blocks = blocks.transpose(-3, -2).reshape(*batch, n_pad // SLAB_ROWS, k_pad // SLAB_COLS, -1)
    return blocks[..., _slab_order(bits).to(values.device)]


def _from_slabs(slabs: torch.Tensor, n: int, k: int, bits: int) -> torch.Tensor:
    """Inverse of ``_to_slabs``: ``[..., N / 16, K / 64, 1024]`` -> ``[..., N, K]``."""
    *batch, num_slabs, num_kb, _ = slabs.shape
    blocks = torch.empty_like(slabs)
    blocks[..., _slab_order(bits).to(slabs.device)] = slabs
    blocks = blocks.reshape(*batch, num_slabs, num_kb, SLAB_ROWS, SLAB_COLS).transpose(-3, -2)
    return blocks.reshape(*batch, num_slabs * SLAB_ROWS, num_kb * SLAB_COLS)[..., :n, :k]


def _check_integer_values(name: str, q: torch.Tensor, value_range: tuple[int, int]) -> None:
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(q).__name__}")
    if q.dtype not in (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64):
        raise TypeError(f"{name} must have an integer dtype, got {q.dtype}")
    if q.dim() not in (2, 3):
        raise ValueError(f"{name} must be 2-D [N, K] or 3-D [G, N, K], found shape {tuple(q.shape)}")
    low, high = value_range
    if q.numel() and (int(q.min()) < low or int(q.max()) > high):
        raise ValueError(f"{name} values must lie in [{low}, {high}], found [{int(q.min())}, {int(q.max())}]")


def pack_int8_weight(q: torch.Tensor) -> torch.Tensor:
    """INT8 values ``[..., N, K]`` in ``[-128, 127]`` -> packed ``int8 [..., align(N,16), align(K,64)]``."""
    _check_integer_values("q", q, INT8_RANGE)
    slabs = _to_slabs(q.to(torch.int16) + 128, 8, 128)
    *batch, n, k = q.shape
    return slabs.to(torch.uint8).view(torch.int8).reshape(*batch, *packed_shape(n, k, 8))


def unpack_int8_weight(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Inverse of ``pack_int8_weight``: ``int8 [..., N, K]``."""
    _check_packed("packed", packed, torch.int8, n, k, 8)
    *batch, n_pad, k_pad = packed.shape
    slabs = packed.view(torch.uint8).reshape(*batch, n_pad // SLAB_ROWS, k_pad // SLAB_COLS, -1)
    return (_from_slabs(slabs.to(torch.int16), n, k, 8) - 128).to(torch.int8)


def pack_int4_weight(q: torch.Tensor, symmetric: bool = True) -> torch.Tensor:
    """INT4 values ``[..., N, K]`` (``[-8, 7]`` symmetric, ``[0, 15]`` with zero points) -> the packed
    ``uint8 [..., align(N,16), align(K,64)/2]``, two values per byte."""
    _check_integer_values("q", q, INT4_SYMMETRIC_RANGE if symmetric else INT4_ASYMMETRIC_RANGE)
    bias = 8 if symmetric else 0
    nibbles = _to_slabs(q.to(torch.int16) + bias, 4, bias)
    packed = nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)
    *batch, n, k = q.shape
    return packed.to(torch.uint8).reshape(*batch, *packed_shape(n, k, 4))


def unpack_int4_weight(packed: torch.Tensor, n: int, k: int, symmetric: bool = True) -> torch.Tensor:
    """Inverse of ``pack_int4_weight``: ``int8 [..., N, K]``."""
    _check_packed("packed", packed, torch.uint8, n, k, 4)
    *batch, n_pad, half_k_pad = packed.shape
    pairs = packed.reshape(*batch, n_pad // SLAB_ROWS, 2 * half_k_pad // SLAB_COLS, -1).to(torch.int16)
    nibbles = torch.stack((pairs & 15, pairs >> 4), dim=-1).flatten(-2)
    return (_from_slabs(nibbles, n, k, 4) - (8 if symmetric else 0)).to(torch.int8)


def _check_packed(name: str, packed: object, dtype: torch.dtype, n: int, k: int, bits: int) -> None:
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (packed INT{bits}), got {packed.dtype}")
    expected = packed_shape(n, k, bits)
    if packed.dim() not in (2, 3) or tuple(packed.shape[-2:]) != expected:
        cols = "align(K, 64)" + (" / 2" if bits == 4 else "")
        raise ValueError(f"{name} must have shape [..., align(N, 16), {cols}] = [..., {expected[0]}, "
                         f"{expected[1]}] for N={n}, K={k}, found {tuple(packed.shape)}")


def pack_group_params(values: torch.Tensor) -> torch.Tensor:
    """Per-row, per-group scales or zero points ``[..., N, groups]`` -> the kernels' ``[..., groups, N]``
    (contiguous)."""
    return values.transpose(-1, -2).contiguous()


def unpack_group_params(values: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_group_params``."""
    return values.transpose(-1, -2).contiguous()


def _grouped_view(w: torch.Tensor, group_size: int | None) -> tuple[torch.Tensor, int]:
    """``w [..., N, K]`` as ``[..., N, groups, group_size]`` (K zero-padded to whole groups)."""
    k = w.shape[-1]
    size = k if group_size is None else group_size
    groups = num_k_groups(k, group_size)
    padded = torch.nn.functional.pad(w.float(), (0, groups * size - k))
    return padded.reshape(*w.shape[:-1], groups, size), groups


def _check_weight(w: object, dtype: object) -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}")
    if w.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"w must have dtype float32, bfloat16 or float16, got {w.dtype}")
    if w.dim() not in (2, 3) or w.shape[-1] == 0 or w.shape[-2] == 0:
        raise ValueError(f"w must be 2-D [N, K] or 3-D [G, N, K] with N, K > 0, found shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("w must be finite (no NaN or Inf)")
    if dtype not in SCALE_DTYPES:
        raise TypeError(f"dtype must be torch.bfloat16 or torch.float16 (the activations' dtype), "
                        f"got {dtype}")
    return w


def quantize_int8(w: torch.Tensor, group_size: int | None = None, dtype: torch.dtype = torch.bfloat16
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric INT8: ``(q int8 [..., N, K], scales dtype [..., N, groups])`` with ``w ≈ q · s``; the
    scale is ``amax / 127`` of the group, rounded to ``dtype`` before ``q`` is rounded against it."""
    w = _check_weight(w, dtype)
    group_size = check_group_size(group_size)
    grouped, _ = _grouped_view(w, group_size)
    scales = (grouped.abs().amax(dim=-1).clamp_min(1e-8) / 127).to(dtype)
    q = torch.round(grouped / scales.float()[..., None]).clamp(-128, 127)
    return q.flatten(-2)[..., : w.shape[-1]].to(torch.int8), scales


def quantize_int4(w: torch.Tensor, group_size: int | None = 128, symmetric: bool = True,
                  dtype: torch.dtype = torch.bfloat16) -> tuple:
    """INT4 per group: ``(q int8 [..., N, K], scales dtype [..., N, groups], zeros uint8 [..., N, groups]
    or None)``. Symmetric: ``q`` in ``[-8, 7]``, ``s = amax / 7``. Asymmetric: ``q`` in ``[0, 15]``,
    ``s = (max - min) / 15``, zero point ``z = round(-min / s)`` in ``[0, 15]``; ``w ≈ (q - z) · s``."""
    w = _check_weight(w, dtype)
    group_size = check_group_size(group_size)
    grouped, _ = _grouped_view(w, group_size)
    if symmetric:
        scales = (grouped.abs().amax(dim=-1).clamp_min(1e-8) / 7).to(dtype)
        q = torch.round(grouped / scales.float()[..., None]).clamp(-8, 7)
        zeros = None
    else:
        low = grouped.amin(dim=-1).clamp_max(0)
        high = grouped.amax(dim=-1).clamp_min(0)
        scales = ((high - low).clamp_min(1e-8) / 15).to(dtype)
        zero = torch.round(-low / scales.float()).clamp(0, 15)
        q = (torch.round(grouped / scales.float()[..., None]) + zero[..., None]).clamp(0, 15)
        zeros = zero.to(torch.uint8)
    return q.flatten(-2)[..., : w.shape[-1]].to(torch.int8), scales, zeros


def quantize_w8a16(w: torch.Tensor, group_size: int | None = None, dtype: torch.dtype = torch.bfloat16
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``w [..., N, K]`` -> ``(b_packed, sb)`` ready for ``w8a16_gemm_nt``: ``quantize_int8``, then packed
    (``pack_int8_weight``, ``pack_group_params``)."""
    q, scales = quantize_int8(w, group_size, dtype)
    return pack_int8_weight(q), pack_group_params(scales)


def quantize_w4a16(w: torch.Tensor, group_size: int | None = 128, symmetric: bool = True,
                   dtype: torch.dtype = torch.bfloat16) -> tuple[torch.Tensor, ...]:
    """``w [..., N, K]`` -> ``(b_packed, sb)`` (symmetric) or ``(b_packed, sb, zeros)`` ready for
    ``w4a16_gemm_nt``."""
    q, scales, zeros = quantize_int4(w, group_size, symmetric, dtype)
    packed = (pack_int4_weight(q, symmetric), pack_group_params(scales))
    return packed if zeros is None else (*packed, pack_group_params(zeros))


def dequantize(q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
               group_size: int | None) -> torch.Tensor:
    """``(q - z) · s`` in FP32 (exact: small integers times 16-bit scales) from unpacked values ``q
    [..., N, K]``, scales ``[..., N, groups]`` and zero points ``[..., N, groups]`` (or None)."""
    k = q.shape[-1]
    size = k if group_size is None else group_size
    expand = torch.arange(k, device=q.device) // size
    values = q.float()
    if zeros is not None:
        values = values - zeros.float()[..., expand]
    return values * scales.float()[..., expand]


def dequantize_w8a16(b_packed: torch.Tensor, sb: torch.Tensor, n: int, k: int,
                     group_size: int | None = None) -> torch.Tensor:
    """The FP32 weight ``[..., N, K]`` a packed W8A16 operand stands for."""
    return dequantize(unpack_int8_weight(b_packed, n, k), unpack_group_params(sb), None, group_size)


def dequantize_w4a16(b_packed: torch.Tensor, sb: torch.Tensor, zeros: torch.Tensor | None, n: int, k: int,
                     group_size: int | None = 128) -> torch.Tensor:
    """The FP32 weight ``[..., N, K]`` a packed W4A16 operand stands for."""
    q = unpack_int4_weight(b_packed, n, k, symmetric=zeros is None)
    z = None if zeros is None else unpack_group_params(zeros)
    return dequantize(q, unpack_group_params(sb), z, group_size)


PRECISIONS = {"w8a16": 8, "w4a16": 4}
DEFAULT_GROUP_SIZES = {"w8a16": None, "w4a16": 128}


@dataclass(frozen=True)
class PackedWeight:
    """A weight ``[N, K]`` (or ``[G, N, K]``) quantised and packed for the weight-only ops, with what the
    ops need to know about it: ``precision`` (``"w8a16"`` or ``"w4a16"``), the logical ``n`` and ``k``,
    ``group_size`` (``None``: per channel), and the operand tensors. ``operand`` is the ``b`` tuple the
    ops take."""

    precision: str
    n: int
    k: int
    group_size: int | None
    b_packed: torch.Tensor
    sb: torch.Tensor
    zeros: torch.Tensor | None = None

    @property
    def bits(self) -> int:
        return PRECISIONS[self.precision]

    @property
    def operand(self) -> tuple[torch.Tensor, ...]:
        return (self.b_packed, self.sb) if self.zeros is None else (self.b_packed, self.sb, self.zeros)

    def to(self, device: torch.device | str) -> PackedWeight:
        """The same weight with its tensors on ``device``."""
        zeros = None if self.zeros is None else self.zeros.to(device)
        return PackedWeight(self.precision, self.n, self.k, self.group_size, self.b_packed.to(device),
                            self.sb.to(device), zeros)


_DEFAULT = object()


def pack_weight(w: torch.Tensor, precision: str = "w4a16", group_size: object = _DEFAULT,
                symmetric: bool = True, dtype: torch.dtype = torch.bfloat16) -> PackedWeight:
    """``w [N, K]`` (or ``[G, N, K]``) quantised and packed for ``precision``'s ops (``quantize_w8a16`` /
    ``quantize_w4a16``); ``group_size`` defaults to per channel (W8A16) or 128 (W4A16); ``symmetric=False``
    (W4A16 only) adds zero points; ``dtype`` is the activations' dtype the scales are held in."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if group_size is _DEFAULT:
        group_size = DEFAULT_GROUP_SIZES[precision]
    if precision == "w8a16":
        if not symmetric:
            raise ValueError("symmetric=False (zero points) is for W4A16 weights only")
        b_packed, sb = quantize_w8a16(w, group_size, dtype)
        zeros = None
    else:
        b_packed, sb, *rest = quantize_w4a16(w, group_size, symmetric, dtype)
        zeros = rest[0] if rest else None
    return PackedWeight(precision, w.shape[-2], w.shape[-1], group_size, b_packed, sb, zeros)
