"""Tile configurations of the GEMM kernels and the rules that make one valid.

Each rule here mirrors a `static_assert` or a layout constant of
`include/deepgemm/impls/sm90_fp8_gemm_1d2d.cuh` (operands of 1 byte) or
`include/deepgemm/impls/sm90_bf16_gemm.cuh` (BF16/FP16 operands, 2 bytes); the kernels check them
again at compile time. Stdlib only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import gcd

BLOCK_K = 128
# Both kernels move one 128-byte line of K per row and stage: 128 FP8 or 64 BF16/FP16 elements.
BLOCK_K_BYTES = 128
# An MN-major (16-bit) operand tile is loaded in chunks of this many rows (one 128-byte TMA box).
MN_MAJOR_CHUNK = 64
# Layouts of a GemmShape: one GEMM, or MoE experts in the contiguous layout (each expert's rows named
# by per-row indices or by row offsets: the kernels run the same tiles either way) or the masked layout.
DENSE, CONTIGUOUS, MASKED = "dense", "contiguous", "masked"
# Largest dynamic shared memory one block may opt into on sm_90 (227 KB).
MAX_SMEM_BYTES = 232448
SCALE_BLOCK = 128


def ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


def align(a: int, b: int) -> int:
    return ceil_div(a, b) * b


@dataclass(frozen=True)
class GemmShape:
    """A GEMM D[m, n] = A[m, k] · B[n, k]ᵀ; `out_bytes` is 2 for BF16/FP16 output, 4 for FP32;
    `ab_bytes` is 1 for FP8 operands, 2 for BF16/FP16. `b_mn_major`: B is stored [k, n] (16-bit only).

    MoE layouts (`layout`) multiply by `num_groups` B matrices [n, k]: "contiguous" has `m` rows in
    all (every expert's rows together), "masked" has `m` (expected) rows in each of the groups.
    """

    m: int
    n: int
    k: int
    out_bytes: int = 2
    num_groups: int = 1
    layout: str = DENSE
    ab_bytes: int = 1
    b_mn_major: bool = False

    @property
    def num_k_blocks(self) -> int:
        """Stages of 128 bytes of K per tile."""
        return ceil_div(self.k * self.ab_bytes, BLOCK_K_BYTES)

    def num_tiles(self, block_m: int, block_n: int) -> int:
        m_blocks = ceil_div(self.m, block_m) * (self.num_groups if self.layout == MASKED else 1)
        return m_blocks * ceil_div(self.n, block_n)

    def hbm_bytes(self) -> int:
        """Bytes every tile config must move at least once: A, all B matrices and D."""
        rows = self.m * (self.num_groups if self.layout == MASKED else 1)
        operands = (rows + self.num_groups * self.n) * self.k * self.ab_bytes
        return operands + rows * self.n * self.out_bytes


@dataclass(frozen=True)
class GemmConfig:
    """A compile-time tile configuration plus the launch grid (`num_sms` persistent CTAs)."""

    block_m: int
    block_n: int
    num_stages: int
    num_tma_multicast: int
    multicast_on_a: bool
    swizzle_d_bytes: int
    num_sms: int
    out_bytes: int = 2
    # Compiled for a grouped (MoE) layout: the kernel then keeps a tile slot per stage.
    grouped: bool = False
    # Operand element size: 1 runs the FP8 kernel, 2 the BF16/FP16 one.
    ab_bytes: int = 1
    # The epilogue stages the D tile in this many column chunks (1, 2 or 4): a smaller staging
    # buffer leaves room for another pipeline stage.
    num_d_chunks: int = 1
    # The producer issues its loads in batches of this many consecutive k-blocks (`produce_tiles`).
    load_batch: int = 1

    @property
    def num_math_threads(self) -> int:
        return 128 if self.block_m == 64 else 256

    @property
    def num_threads(self) -> int:
        # One producer warpgroup in front of the consumer warpgroups.
        return self.num_math_threads + 128

    @property
    def d_store_cols(self) -> int:
        """Columns of one TMA store box of D: a swizzle span, or the whole staged chunk unswizzled."""
        if self.swizzle_d_bytes:
            return self.swizzle_d_bytes // self.out_bytes
        return self.block_n // self.num_d_chunks

    def kernel_repr(self) -> str:
        """The config as its kernel is compiled: every field but the launch grid. It goes into the JIT
        stub's comment, part of the cache key, so shapes that differ only in their grid (the heuristic
        sizes it by M, a run-time value) share one binary."""
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                           if f.name != "num_sms")
        return f"{type(self).__name__}({fields})"

    def smem_bytes(self, k: int) -> int:
        return gemm_smem_bytes(self.ab_bytes, self.block_m, self.block_n, self.num_stages, k, self.out_bytes,
                               self.grouped, self.num_d_chunks)


def uniform_scale_b(block_n: int) -> bool:
    """True when no tile can straddle a 128-column block of B scales."""
    return SCALE_BLOCK % block_n == 0


def fp8_gemm_smem_bytes(block_m: int, block_n: int, num_stages: int, k: int, out_bytes: int,
                        grouped: bool = False, num_d_chunks: int = 1) -> int:
    """Dynamic shared memory of the FP8 kernel; mirrors `Fp8GemmLayout::kSmemBytes`."""
    smem_d = align(block_m * block_n // num_d_chunks * out_bytes, 1024)
    per_stage = block_m * BLOCK_K + block_n * BLOCK_K + align(block_m * 4, 128)
    # The tiles' B scales: one copy per consumer warpgroup, or (masked kind) buffers taken in turn
    # per tile, enough for a producer num_stages k-blocks ahead; sized for either.
    num_k_blocks = ceil_div(k, BLOCK_K)
    num_scales_b = num_k_blocks * (1 if uniform_scale_b(block_n) else 2)
    num_warpgroups = 1 if block_m == 64 else 2
    num_sfb_buffers = max(num_warpgroups, 1 + ceil_div(num_stages, num_k_blocks))
    smem_sfb = align(num_sfb_buffers * num_scales_b * 4, 8)
    barriers = num_stages * 2 * 8
    # The grouped kinds' producer passes each tile (4 x uint32) to the consumers in a per-stage slot.
    tile_slots = num_stages * 16 if grouped else 0
    return smem_d + num_stages * per_stage + smem_sfb + barriers + tile_slots


def bf16_gemm_smem_bytes(block_m: int, block_n: int, num_stages: int, out_bytes: int,
                         grouped: bool = False, num_d_chunks: int = 1) -> int:
    """Dynamic shared memory of the BF16/FP16 kernel; mirrors `Bf16GemmLayout::kSmemBytes`."""
    smem_d = align(block_m * block_n // num_d_chunks * out_bytes, 1024)
    per_stage = (block_m + block_n) * BLOCK_K_BYTES
    tile_slots = num_stages * 16 if grouped else 0
    return smem_d + num_stages * (per_stage + 2 * 8) + tile_slots


def gemm_smem_bytes(ab_bytes: int, block_m: int, block_n: int, num_stages: int, k: int, out_bytes: int,
                    grouped: bool = False, num_d_chunks: int = 1) -> int:
    """Dynamic shared memory of the kernel for operands of `ab_bytes` bytes."""
    if ab_bytes == 1:
        return fp8_gemm_smem_bytes(block_m, block_n, num_stages, k, out_bytes, grouped, num_d_chunks)
    return bf16_gemm_smem_bytes(block_m, block_n, num_stages, out_bytes, grouped, num_d_chunks)


def swizzle_d_bytes(block_n: int, out_bytes: int) -> int:
    """Widest TMA swizzle span dividing a D tile row (0: unswizzled)."""
    row_bytes = block_n * out_bytes
    return next((s for s in (128, 64, 32) if row_bytes % s == 0), 0)


def max_accumulator_registers(block_m: int, block_n: int, ab_bytes: int = 1) -> int:
    """FP32 registers per consumer thread: the WGMMA accumulator of every wave, plus for FP8 the
    promoted sums (the WGMMA accumulator is then reused by the waves)."""
    num_waves = 2 if block_m == 256 else 1
    return block_n // 2 * (num_waves if ab_bytes == 2 else 1 + num_waves)


def config_errors(cfg: GemmConfig, shape: GemmShape) -> list[str]:
    """Every rule `cfg` breaks for `shape` (empty when the kernel can run it)."""
    errors = []
    if cfg.block_m not in (64, 128, 256):
        errors.append(f"block_m={cfg.block_m} must be 64, 128 or 256")
    if shape.layout == MASKED and cfg.num_tma_multicast != 1:
        errors.append("the masked layout does not multicast")
    if shape.layout == CONTIGUOUS and cfg.num_tma_multicast != 1 and not cfg.multicast_on_a:
        errors.append("the contiguous layout multicasts only A (multicasting B, a cluster pair's two "
                      "m-blocks could belong to different experts)")
    if cfg.block_n % 8 != 0 or not 8 <= cfg.block_n <= 256:
        errors.append(f"block_n={cfg.block_n} must be a multiple of 8 in [8, 256] (WGMMA N)")
    # A tile may span at most two 128-column scale blocks (one predicate selects between them).
    if cfg.ab_bytes == 1 and cfg.block_n - gcd(cfg.block_n, SCALE_BLOCK) > SCALE_BLOCK:
        errors.append(f"block_n={cfg.block_n} lets a tile straddle three 128-column scale blocks")
    if max_accumulator_registers(cfg.block_m, cfg.block_n, cfg.ab_bytes) > 192:
        errors.append(f"block_m={cfg.block_m}, block_n={cfg.block_n} needs too many accumulator registers")
    if cfg.num_stages < 2:
        errors.append(f"num_stages={cfg.num_stages} must be at least 2")
    smem = cfg.smem_bytes(shape.k)
    if smem > MAX_SMEM_BYTES:
        errors.append(f"shared memory {smem} B exceeds {MAX_SMEM_BYTES} B")
    if cfg.swizzle_d_bytes != swizzle_d_bytes(cfg.block_n // cfg.num_d_chunks, cfg.out_bytes):
        errors.append(f"swizzle_d_bytes={cfg.swizzle_d_bytes} does not match the staged D chunk "
                      f"({cfg.block_n // cfg.num_d_chunks} columns)")
    if cfg.ab_bytes != shape.ab_bytes:
        errors.append("config and shape disagree on the operand element size")
    if shape.b_mn_major and cfg.block_n % MN_MAJOR_CHUNK:
        errors.append(f"block_n={cfg.block_n} must be a multiple of {MN_MAJOR_CHUNK} for an N-major B")
    if cfg.out_bytes != shape.out_bytes:
        errors.append("config and shape disagree on the output element size")
    if cfg.grouped != (shape.layout != DENSE):
        errors.append("config and shape disagree on whether the GEMM is grouped")
    if cfg.num_d_chunks not in (1, 2, 4):
        errors.append(f"num_d_chunks={cfg.num_d_chunks} must be 1, 2 or 4")
    elif cfg.block_n % (8 * cfg.num_d_chunks):
        errors.append(f"num_d_chunks={cfg.num_d_chunks} must split block_n={cfg.block_n} into whole "
                      "8-column groups")
    if cfg.num_tma_multicast not in (1, 2):
        errors.append(f"num_tma_multicast={cfg.num_tma_multicast} must be 1 or 2")
    elif cfg.num_tma_multicast == 2:
        if cfg.num_sms % 2:
            errors.append("2-CTA multicast needs an even grid")
        # Both CTAs of a cluster must work on tiles sharing the multicast operand (scheduler rule).
        if cfg.multicast_on_a and ceil_div(shape.n, cfg.block_n) % 2:
            errors.append("multicast on A needs an even number of n-blocks")
        if not cfg.multicast_on_a and ceil_div(shape.m, cfg.block_m) % 2:
            errors.append("multicast on B needs an even number of m-blocks")
    # The consumers may hold a stage while they wait for the next (`produce_tiles`).
    if not 1 <= cfg.load_batch < max(cfg.num_stages, 2):
        errors.append(f"load_batch={cfg.load_batch} must be at least 1 and below num_stages={cfg.num_stages}")
    if cfg.num_sms < 1:
        errors.append("the grid needs at least one CTA")
    return errors
