"""Config selection for the sm_90 GEMMs: a deterministic cost model, no timing at call time.

The model estimates, for each candidate tile, the time of the slowest resource over the waves of
persistent tiles: tensor-core work, shared-memory bandwidth (WGMMA operand reads plus TMA writes),
operand bytes pulled from L2 (which multicast halves for the shared operand), and the whole
problem's bytes from HBM. Wave quantisation enters through the number of waves: a tile that leaves
SMs idle in the last wave pays for a full one. The efficiency factors were fitted to a sweep of
every valid config over the DeepSeek-V3 shapes on an H100 SXM (`tools/sweep_fp8.py`).

The BF16/FP16 kernel moves the same 128 bytes of K per row and stage and its tensor cores do half
the FP8 FLOPs per cycle, so a 64-deep 16-bit k-block costs what a 128-deep FP8 one does: one model
serves both, counting K in 128-byte blocks (without the FP8-only promotion and scale costs).
"""

from __future__ import annotations

from functools import lru_cache

from .config import (
    BLOCK_K_BYTES,
    CONTIGUOUS,
    DENSE,
    MASKED,
    MAX_SMEM_BYTES,
    GemmConfig,
    GemmShape,
    align,
    ceil_div,
    config_errors,
    gemm_smem_bytes,
    swizzle_d_bytes,
    uniform_scale_b,
)

# Per-SM rates in bytes or FLOPs per cycle (H100/H200 SXM): dense FP8 tensor cores, shared memory,
# L2 -> shared memory, and HBM (H100's 3.35 TB/s; H200 is faster, which only moves memory-bound
# shapes further from the tensor-core bound).
FP8_FLOPS_PER_CYCLE_PER_SM = 8192
SMEM_BYTES_PER_CYCLE_PER_SM = 128
L2_BYTES_PER_CYCLE_PER_SM = 64
# The 16-bit kernel keeps the tensor cores busier (no promotion), so its operand loads press harder
# on L2: fitted to an H100 sweep where 2-CTA multicast made the M = 4096 tiles 3-5% faster.
L2_BYTES_PER_CYCLE_PER_SM_16BIT = 40
HBM_BYTES_PER_CYCLE = 1900
# One consumer warpgroup cannot hide its promotion FFMAs behind another warpgroup's WGMMAs, and
# releases stages later; measured to cost about a quarter of a tile's throughput even when the
# problem is memory-bound. (Its two-set k-loop, which overlaps each promotion with the next k-block's
# WGMMAs, won back only 2% on the H200, so the factor stays.)
SINGLE_WARPGROUP_EFFICIENCY = 0.75
# Measured costs: switching B scales inside a tile (extra promotion work), and keeping the two
# CTAs of a cluster in lock step (multicast never beat the same tile without it on the H100).
STRADDLING_SCALE_COST = 1.08
MULTICAST_LOCKSTEP_COST = 1.03
# Except on 256-row tiles over long K, where the lock step is paid back (H200, M = 4096, 256x128, the
# same config with and without multicast on A, interleaved from rest, bit-identical: 1.2-1.3% faster
# at K = 16384 and 0.4-0.5% at K = 7168 in two runs each; 0.5-1.2% slower at K <= 2048; 64- and
# 128-row tiles of M <= 128 lost 2-15%).
MULTICAST_FREE_BLOCK_M = 256
MULTICAST_FREE_MIN_K_BLOCKS = 56
# The contiguous layout may multicast A (a cluster pair shares its m-block; B may not be shared), and
# the model's picks do so for FP8 256-row tiles (and WIDE_SHORT_K_TILE, below). H200, MoE suite
# (G x 8192 or 4096 rows), rested interleaved rounds, bit-identical: FP8 256x128 with multicast
# 1.2-1.8% faster at K = 7168 by the best of 4 rounds, 5-7% by the median, equal at K = 2048;
# 128x128 to 128x192 with multicast 6-17% slower than that at K = 7168. The 16-bit kernel gained
# nothing measurable (two runs: 256x128 -2% to +7% at K = 7168, equal at 2048), and enabling it there
# turned 128x224 tiles into 256x112 (4% slower at 4 x 512 x 7168 x 2048).
CONTIGUOUS_MULTICAST_BLOCK_M = 256
# FP8 128x192 tiles over short K (at most SHORT_K_MAX_K_BLOCKS k-blocks) pay no straddling scale cost,
# and, where every SM runs several of them (MULTICAST_MIN_WAVES), no lock step; they may multicast in
# the contiguous layout too. H200, rested rounds, bit-identical, best of 4: 128x192 (multicast on A
# or B) against the 256x128 the model picked before,
# dense 8192x24576x1536 1.8% faster, 16384x7168x2048 4.3%, 8192x7168x2048 2.0%, 32768x7168x2048 2.7%,
# 16384x32768x512 1.0%, 2048x7168x2048 7% (against 128x128); the contiguous suite's four K = 2048 cases
# (G x 8192 or 4096 rows, N = 7168) 0.5-4%. Where waves favour 256x128 it stays (4096x7168x2048: 2.6%
# faster than 128x192); at K = 7168 256x128 was 3.5% faster (dense 8192x4096x7168).
WIDE_SHORT_K_TILE = (128, 192)
SHORT_K_MAX_K_BLOCKS = 16
# Small tiles (M <= 128) are bound by the bytes in flight per SM, not by any unit's rate. 16-bit, H100:
# 64x2112x7168 ran 12% faster with 16 stages of 64x16 than with 12, 128x2112x7168 7% with 18, and
# nothing more past 16-20. FP8, H200: 1.5-2.6% faster with 16 stages than 12 on the 64x16 and 64x32
# tiles of the M <= 128 DeepSeek-V3 shapes, 2-6% slower with 18-21.
MAX_STAGES = 16
MAX_STAGES_16BIT = 20

BLOCK_N_CANDIDATES = tuple(range(16, 129, 16)) + (144, 160, 192)
# Without promotion sums the 16-bit kernel has the registers for wider tiles.
BLOCK_N_CANDIDATES_16BIT = tuple(range(16, 257, 16))
# The 16-bit kernel keeps one k-block of WGMMAs in flight while the next is issued, so it holds two
# stages at once: with fewer than three the loads stop overlapping the math.
MIN_STAGES_16BIT = 3
# Fewer stages than this leave too few loads running ahead of the math (the 16-bit kernel holds two
# stages, one then loading ahead; the FP8 kernel frees its stage before promotion and has two). H100,
# M = 4096 DeepSeek-V3 shapes and MoE rows: 16-bit tiles ran 2-8% (128 rows) and 5-19% (256 rows,
# two waves of WGMMAs per stage) slower with three stages than with four, FP8 256-row tiles 3-5%.
# Staging D in column chunks buys the fourth stage where the whole D tile leaves room for only
# three (a fifth one gained nothing).
DEEP_STAGES = 4
SHALLOW_PIPELINE_COST_16BIT = {64: 1.05, 128: 1.05, 256: 1.25}
SHALLOW_PIPELINE_COST_FP8 = 1.04
# Each extra D chunk makes a warpgroup wait for the previous chunk's TMA store to read shared memory:
# fitted to FP8 256x128 tiles in 4 chunks, a loss at K = 512 and 1536, even at 2048, a gain beyond.
D_CHUNK_CYCLES = 200
D_CHUNK_COUNTS = (2, 4)
# Multicast needs this many waves of tiles to pay for the lock step (see `candidate_configs`).
MULTICAST_MIN_WAVES = 2
# The producer's loads go out in batches of LOAD_BATCH k-blocks (`produce_tiles`) for dense GEMMs
# with one consumer warpgroup, at least LOAD_BATCH_MIN_STAGES stages and K of at least
# LOAD_BATCH_MIN_K_BLOCKS 128-byte blocks per row. H200, rested A/B against one k-block at a time,
# M <= 128 DeepSeek-V3 shapes: 64x2112x7168 10% (FP8) and 15% (BF16) faster, 128x2112x7168 8% and
# 11%, 64x7168x16384 2-3%, 64x4096x7168 +3% (FP8) / -0.5% (BF16), 128x4096x7168 (FP8) -2%. Where it
# stays off it lost: 2-18% with two consumer warpgroups or 4-8 stages, 1-3% at K <= 2048 (batches of 2
# and 8 gained less).
LOAD_BATCH = 4
LOAD_BATCH_MIN_STAGES = 13
LOAD_BATCH_MIN_K_BLOCKS = 56


def _block_m_candidates(shape: GemmShape) -> tuple[int, ...]:
    # The masked layout's `m` is per group: small groups want small tiles just as small GEMMs do.
    if shape.m <= 64:
        return (64,)
    return (64, 128, 256)


def _max_stages(shape: GemmShape, block_m: int, block_n: int, grouped: bool, num_d_chunks: int = 1) -> int:
    def fits(stages: int) -> bool:
        smem = gemm_smem_bytes(shape.ab_bytes, block_m, block_n, stages, shape.k, shape.out_bytes, grouped,
                               num_d_chunks)
        return smem <= MAX_SMEM_BYTES

    max_stages = MAX_STAGES if shape.ab_bytes == 1 else MAX_STAGES_16BIT
    return max((s for s in range(1, max_stages + 1) if fits(s)), default=0)


def _k_block_cycles(cfg: GemmConfig) -> float:
    """Cycles of one 128-byte K block of a tile at the slowest of tensor cores, shared memory and L2."""
    # Per 128-byte K block of one tile (128 FP8 or 64 16-bit elements; FP8 runs twice the FLOPs).
    mma = 2 * cfg.block_m * cfg.block_n * BLOCK_K_BYTES / FP8_FLOPS_PER_CYCLE_PER_SM
    # Every 64-row WGMMA reads its A slice and the whole B tile from shared memory; TMA writes both.
    wgmma_reads = cfg.block_m // 64 * (64 + cfg.block_n) * BLOCK_K_BYTES
    smem = (wgmma_reads + (cfg.block_m + cfg.block_n) * BLOCK_K_BYTES) / SMEM_BYTES_PER_CYCLE_PER_SM
    l2_rate = L2_BYTES_PER_CYCLE_PER_SM if cfg.ab_bytes == 1 else L2_BYTES_PER_CYCLE_PER_SM_16BIT
    l2 = l2_bytes_per_k_block(cfg) / l2_rate
    return max(mma, smem, l2)


def _is_wide_short_k_tile(shape: GemmShape, block_m: int, block_n: int) -> bool:
    """An FP8 WIDE_SHORT_K_TILE over at most SHORT_K_MAX_K_BLOCKS k-blocks (see there)."""
    return (shape.ab_bytes == 1 and (block_m, block_n) == WIDE_SHORT_K_TILE
            and shape.num_k_blocks <= SHORT_K_MAX_K_BLOCKS)


def _runs_several_waves(shape: GemmShape, block_m: int, block_n: int, num_sms: int) -> bool:
    """Every SM runs MULTICAST_MIN_WAVES or more tiles: where multicast can pay for its lock step."""
    return shape.num_tiles(block_m, block_n) >= MULTICAST_MIN_WAVES * num_sms


def _pays_lock_step(shape: GemmShape, cfg: GemmConfig) -> bool:
    """An FP8 multicast config that pays MULTICAST_LOCKSTEP_COST: all but 256-row tiles over long K
    (MULTICAST_FREE_BLOCK_M) and wide tiles over short K in several waves (WIDE_SHORT_K_TILE)."""
    if cfg.ab_bytes != 1 or cfg.num_tma_multicast == 1:
        return False
    if cfg.block_m == MULTICAST_FREE_BLOCK_M and shape.num_k_blocks >= MULTICAST_FREE_MIN_K_BLOCKS:
        return False
    return not (_is_wide_short_k_tile(shape, cfg.block_m, cfg.block_n)
                and _runs_several_waves(shape, cfg.block_m, cfg.block_n, cfg.num_sms))


def estimated_cycles(shape: GemmShape, cfg: GemmConfig) -> tuple[float, float]:
    """(estimated cycles, cycles of the tile work alone); the second breaks ties among configs that
    all sit at the HBM floor in favour of the one with the most slack under it."""
    num_waves = ceil_div(shape.num_tiles(cfg.block_m, cfg.block_n), cfg.num_sms)
    k_block_cycles = _k_block_cycles(cfg)
    if cfg.block_m == 64:
        k_block_cycles /= SINGLE_WARPGROUP_EFFICIENCY
    if (cfg.ab_bytes == 1 and not uniform_scale_b(cfg.block_n)
            and not _is_wide_short_k_tile(shape, cfg.block_m, cfg.block_n)):
        k_block_cycles *= STRADDLING_SCALE_COST
    if _pays_lock_step(shape, cfg):
        k_block_cycles *= MULTICAST_LOCKSTEP_COST
    # The FP8 efficiency factors were fitted to whole-D configs at the stages they got, so for FP8
    # the pipeline depth only chooses between a tile's variants (`_fp8_pipeline_cycles`).
    if cfg.ab_bytes == 2:
        if cfg.num_stages < DEEP_STAGES:
            k_block_cycles *= SHALLOW_PIPELINE_COST_16BIT[cfg.block_m]
        epilogue_cycles = (cfg.num_d_chunks - 1) * D_CHUNK_CYCLES
        tile_cycles = num_waves * (shape.num_k_blocks * k_block_cycles + epilogue_cycles)
    else:
        tile_cycles = num_waves * shape.num_k_blocks * k_block_cycles
    return max(tile_cycles, shape.hbm_bytes() / HBM_BYTES_PER_CYCLE), tile_cycles


def _fp8_pipeline_cycles(shape: GemmShape, cfg: GemmConfig) -> float:
    """Per-tile cycles an FP8 config loses to a shallow pipeline and to extra D chunks (0 for 16-bit,
    whose estimate includes them)."""
    if cfg.ab_bytes != 1:
        return 0.0
    shallow = SHALLOW_PIPELINE_COST_FP8 - 1 if cfg.num_stages < DEEP_STAGES else 0.0
    return shape.num_k_blocks * _k_block_cycles(cfg) * shallow + (cfg.num_d_chunks - 1) * D_CHUNK_CYCLES


def l2_bytes_per_k_block(cfg: GemmConfig) -> float:
    """Operand bytes one CTA pulls from L2 per 128-byte K block; multicast shares one operand's load
    between the two CTAs of a cluster."""
    shared_a = cfg.num_tma_multicast if cfg.multicast_on_a else 1
    shared_b = cfg.num_tma_multicast if not cfg.multicast_on_a else 1
    return BLOCK_K_BYTES * (cfg.block_m / shared_a + cfg.block_n / shared_b)


def _grid_size(shape: GemmShape, num_sms: int, block_m: int, block_n: int, num_tma_multicast: int) -> int:
    """Persistent CTAs for `shape`: the fewest that still run its tiles in the fewest waves.

    A last wave that would leave SMs idle is spread over every wave instead, and the SMs left out stay
    idle throughout. H200, every multi-wave DeepSeek-V3 shape at M = 4096 (measured from rest, interleaved):
    FP8 0.4-2.2% faster (e.g. 4096x32768x512 on 128 SMs: 136.1 us against 139.1 on 132), BF16
    0.8-1.2%.

    Only the dense layout's tile count is known on the host. The masked layout keeps every SM; the
    contiguous one a CTA per estimated tile up to every SM: its real tiles depend on the experts'
    sizes (a partial last m-block per expert, near-free padding blocks), and a grid sized to the
    estimate could add a wave (on the contiguous suite, 128 CTAs measured no faster than 132)."""
    num_tiles = shape.num_tiles(block_m, block_n)
    if shape.layout == MASKED:
        return num_sms
    if shape.layout != DENSE:
        return min(num_sms, num_tiles)
    grid = ceil_div(num_tiles, ceil_div(num_tiles, num_sms))
    # A 2-CTA cluster needs an even grid; rounding up past the SM count would add a wave.
    grid = align(grid, num_tma_multicast)
    return grid if grid <= num_sms else min(num_sms, num_tiles)


def make_config(shape: GemmShape, num_sms: int, block_m: int, block_n: int, num_tma_multicast: int = 1,
                multicast_on_a: bool = True, num_stages: int | None = None,
                num_d_chunks: int = 1, load_batch: int | None = None) -> GemmConfig:
    """A config with its derived fields filled in: as many stages as fit, the D swizzle, the grid,
    the producer's load batch."""
    grouped = shape.layout != DENSE
    num_stages = num_stages or _max_stages(shape, block_m, block_n, grouped, num_d_chunks)
    return GemmConfig(
        block_m=block_m,
        block_n=block_n,
        num_stages=num_stages,
        num_tma_multicast=num_tma_multicast,
        multicast_on_a=multicast_on_a,
        swizzle_d_bytes=swizzle_d_bytes(block_n // num_d_chunks, shape.out_bytes),
        num_sms=_grid_size(shape, num_sms, block_m, block_n, num_tma_multicast),
        out_bytes=shape.out_bytes,
        grouped=grouped,
        ab_bytes=shape.ab_bytes,
        num_d_chunks=num_d_chunks,
        load_batch=load_batch or _load_batch(shape, block_m, num_stages),
    )


def _load_batch(shape: GemmShape, block_m: int, num_stages: int) -> int:
    """K-blocks per batch of the producer's loads: LOAD_BATCH where measured to pay (see there), else 1.
    Only K-major B was measured."""
    if (shape.layout == DENSE and not shape.b_mn_major and block_m == 64
            and num_stages >= LOAD_BATCH_MIN_STAGES and shape.num_k_blocks >= LOAD_BATCH_MIN_K_BLOCKS):
        return LOAD_BATCH
    return 1


def candidate_configs(shape: GemmShape, num_sms: int):
    """Every valid config the heuristic considers for `shape`."""
    block_n_candidates = BLOCK_N_CANDIDATES if shape.ab_bytes == 1 else BLOCK_N_CANDIDATES_16BIT
    for block_m in _block_m_candidates(shape):
        for block_n in block_n_candidates:
            for num_tma_multicast, on_a in ((1, True), (2, True), (2, False)):
                # Multicast gained 3-5% on the 16-bit kernel (H100 sweep) where every SM runs several
                # tiles, and lost 2-8% on problems of about one wave of tiles, where the pair's lock
                # step only adds latency. FP8 alike (H200, rested A/B, median of 8 rounds, without
                # multicast against with it): 1024x4096x7168 2.4% faster, 2048x4096x7168 1.5%,
                # 256x24576x1536 2.6%, 512x7168x16384 equal, 1024x7168x16384 0.9% slower.
                if num_tma_multicast > 1 and not _runs_several_waves(shape, block_m, block_n, num_sms):
                    continue
                if (shape.layout == CONTIGUOUS and num_tma_multicast > 1 and not (
                        shape.ab_bytes == 1 and (block_m == CONTIGUOUS_MULTICAST_BLOCK_M
                                                 or _is_wide_short_k_tile(shape, block_m, block_n)))):
                    continue
                whole = make_config(shape, num_sms, block_m, block_n, num_tma_multicast, on_a)
                for cfg in (whole, *_chunked_variants(shape, num_sms, whole)):
                    if shape.ab_bytes == 2 and cfg.num_stages < MIN_STAGES_16BIT:
                        continue
                    if not config_errors(cfg, shape):
                        yield cfg


def _chunked_variants(shape: GemmShape, num_sms: int, whole: GemmConfig) -> list[GemmConfig]:
    """Where `whole` has fewer than DEEP_STAGES stages: it with D staged in each chunk count that
    fits more stages than the fewer chunks did."""
    variants, stages = [], whole.num_stages
    for num_d_chunks in D_CHUNK_COUNTS:
        if stages >= DEEP_STAGES:
            break
        chunked = make_config(shape, num_sms, whole.block_m, whole.block_n, whole.num_tma_multicast,
                              whole.multicast_on_a, num_d_chunks=num_d_chunks)
        if chunked.num_stages > stages:
            variants.append(chunked)
            stages = chunked.num_stages
    return variants


@lru_cache(maxsize=4096)
def select_config(shape: GemmShape, num_sms: int) -> GemmConfig:
    """The tile configuration for `shape` on `num_sms` SMs (deterministic, cached)."""
    best, best_key = None, None
    for cfg in candidate_configs(shape, num_sms):
        # Remaining ties go to the larger tile (fewer bytes per FLOP), then to the fewer bytes pulled
        # from L2 (multicast of the larger operand: on an H100, 128x256 16-bit tiles ran 2% faster
        # multicasting B than A, though both sit at the tensor-core bound), then to multicast, then
        # to the taller tile (16-bit grouped GEMMs, H100: 256x128 ran 2-18% faster than 128x256).
        key = (*estimated_cycles(shape, cfg), -cfg.block_m * cfg.block_n, l2_bytes_per_k_block(cfg),
               -cfg.num_tma_multicast, -cfg.block_m, _fp8_pipeline_cycles(shape, cfg))
        if best_key is None or key < best_key:
            best, best_key = cfg, key
    if best is None:
        raise ValueError(f"no valid GEMM configuration for {shape} on {num_sms} SMs")
    return best
