"""Config selection for the sm_90 GEMMs: a deterministic cost model, no timing at call time.

The model estimates, for each candidate tile, the time of the slowest resource over the waves of
persistent tiles: tensor-core work, shared-memory bandwidth (WGMMA operand reads plus TMA writes),
operand bytes pulled from L2 (which multicast halves for the shared operand), and the whole
problem's bytes from HBM. Wave quantisation enters through the number of waves: a tile that leaves
SMs idle in the last wave pays for a full one. The efficiency factors were fitted to sweeps of every
valid config over the DeepSeek-V3 shapes (`tools/sweep.py`); the measurements behind each
constant are in docs/heuristic-constants.md.

Every kernel moves 128 bytes of K per row and stage, and a 16-bit tensor core does half the FP8
FLOPs per cycle, so a k-block costs the same in every family: the model counts K in 128-byte blocks
and asks the shape's `KernelFamily` for what differs (tiles, stages, shared memory, L2 rate, costs).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from .config import (
    CONTIGUOUS,
    DENSE,
    MASKED,
    GemmConfig,
    GemmShape,
    config_errors,
    swizzle_d_bytes,
)
from .family import BLOCK_K_BYTES, MAX_SMEM_BYTES, align, ceil_div

# Per-SM rates in bytes or FLOPs per cycle (H100/H200 SXM): dense FP8 tensor cores (16-bit: half the
# FLOPs per 128-byte k-block, at half the rate) and shared memory; HBM at H100's 3.35 TB/s (H200 is
# faster, which only moves memory-bound shapes further from the tensor-core bound). L2 rates are
# fitted per family (`KernelFamily.l2_bytes_per_cycle_per_sm`).
FP8_FLOPS_PER_CYCLE_PER_SM = 8192
SMEM_BYTES_PER_CYCLE_PER_SM = 128
HBM_BYTES_PER_CYCLE = 1900
# One consumer warpgroup cannot hide its promotion or WGMMA waits behind another warpgroup's WGMMAs,
# and releases stages later: about a quarter of a tile's throughput even when memory-bound.
SINGLE_WARPGROUP_EFFICIENCY = 0.75
# Multicast pays for its lock step on 256-row tiles over long K.
MULTICAST_FREE_BLOCK_M = 256
MULTICAST_FREE_MIN_K_BLOCKS = 56
# The wide short-K tile exception (`KernelFamily.wide_short_k_tile`) holds up to this many k-blocks.
SHORT_K_MAX_K_BLOCKS = 16
# Fewer stages than this leave too few loads running ahead of the math; staging D in column chunks
# buys the fourth stage where the whole D tile leaves room for only three (a fifth gained nothing).
DEEP_STAGES = 4
# Each extra D chunk makes a warpgroup wait for the previous chunk's TMA store to read shared memory.
D_CHUNK_CYCLES = 200
D_CHUNK_COUNTS = (2, 4)
# Multicast needs this many waves of tiles to pay for the lock step (see `candidate_configs`).
MULTICAST_MIN_WAVES = 2
# The producer's loads go out in batches of LOAD_BATCH k-blocks (`produce_tiles`) for dense GEMMs
# with one consumer warpgroup, at least LOAD_BATCH_MIN_STAGES stages and K of at least
# LOAD_BATCH_MIN_K_BLOCKS 128-byte blocks per row; elsewhere batches were measured to lose.
LOAD_BATCH = 4
LOAD_BATCH_MIN_STAGES = 13
LOAD_BATCH_MIN_K_BLOCKS = 56
# Split-K (see `select_config`): slices of fewer k-blocks than this leave the pipeline no depth to fill;
# a split config must be estimated at most SPLIT_K_MIN_GAIN of the unsplit one's time to be chosen.
SPLIT_K_MIN_SLICE_K_BLOCKS = 4
SPLIT_K_MIN_GAIN = 0.9
# Bytes of the FP32 partial tiles the split kernel writes and the reduction reads back, per element of D
# and slice.
SPLIT_K_PARTIAL_BYTES = 2 * 4
# What a wave of work units spends before its first k-block runs (set-up, the first loads' trip to
# HBM): short K slices cannot hide it.
WAVE_FILL_CYCLES = 1500


def _block_m_candidates(shape: GemmShape) -> tuple[int, ...]:
    # The masked layout's `m` is per group: small groups want small tiles just as small GEMMs do.
    if shape.m <= 64:
        return (64,)
    return (64, 128, 256)


def _max_stages(shape: GemmShape, block_m: int, block_n: int, grouped: bool, num_d_chunks: int = 1) -> int:
    def fits(stages: int) -> bool:
        family = shape.family
        return family.smem_bytes(block_m, block_n, stages, shape.k, shape.out_bytes, grouped,
                                 num_d_chunks) <= MAX_SMEM_BYTES

    return max((s for s in range(1, shape.family.max_stages + 1) if fits(s)), default=0)


def _k_block_cycles(cfg: GemmConfig) -> float:
    """Cycles of one 128-byte K block of a tile at the slowest of tensor cores, shared memory and L2."""
    # Per 128-byte K block of one tile (128 FP8 or 64 16-bit elements; FP8 runs twice the FLOPs).
    mma = 2 * cfg.block_m * cfg.block_n * BLOCK_K_BYTES / FP8_FLOPS_PER_CYCLE_PER_SM
    # Every 64-row WGMMA reads its A slice and the whole B tile from shared memory; TMA writes both.
    wgmma_reads = cfg.block_m // 64 * (64 + cfg.block_n) * BLOCK_K_BYTES
    smem = (wgmma_reads + (cfg.block_m + cfg.block_n) * BLOCK_K_BYTES) / SMEM_BYTES_PER_CYCLE_PER_SM
    l2 = l2_bytes_per_k_block(cfg) / cfg.family.l2_bytes_per_cycle_per_sm
    return max(mma, smem, l2)


def _is_wide_short_k_tile(shape: GemmShape, block_m: int, block_n: int) -> bool:
    """The family's wide short-K tile over at most SHORT_K_MAX_K_BLOCKS k-blocks."""
    return ((block_m, block_n) == shape.family.wide_short_k_tile
            and shape.num_k_blocks <= SHORT_K_MAX_K_BLOCKS)


def _runs_several_waves(shape: GemmShape, block_m: int, block_n: int, num_sms: int) -> bool:
    """Every SM runs MULTICAST_MIN_WAVES or more tiles: where multicast can pay for its lock step."""
    return shape.num_tiles(block_m, block_n) >= MULTICAST_MIN_WAVES * num_sms


def _pays_lock_step(shape: GemmShape, cfg: GemmConfig) -> bool:
    """A multicast config that pays the family's lock-step cost: all but 256-row tiles over long K
    (MULTICAST_FREE_BLOCK_M) and the wide short-K tile in several waves."""
    if cfg.num_tma_multicast == 1:
        return False
    if cfg.block_m == MULTICAST_FREE_BLOCK_M and shape.num_k_blocks >= MULTICAST_FREE_MIN_K_BLOCKS:
        return False
    return not (_is_wide_short_k_tile(shape, cfg.block_m, cfg.block_n)
                and _runs_several_waves(shape, cfg.block_m, cfg.block_n, cfg.num_sms))


def _tile_k_block_cycles(shape: GemmShape, cfg: GemmConfig) -> float:
    """Cycles of one 128-byte K block of a tile (`_k_block_cycles`) with the costs of a lone consumer
    warpgroup, of straddling scale blocks and of multicast's lock step."""
    k_block_cycles = _k_block_cycles(cfg)
    if cfg.block_m == 64:
        k_block_cycles /= SINGLE_WARPGROUP_EFFICIENCY
    family = cfg.family
    k_block_cycles *= family.promotion_cost(cfg.promote_every, cfg.promote_sets)
    if _straddles_scale_blocks(cfg) and not _is_wide_short_k_tile(shape, cfg.block_m, cfg.block_n):
        k_block_cycles *= family.straddling_scale_cost
    if _pays_lock_step(shape, cfg):
        k_block_cycles *= family.multicast_lockstep_cost
    return k_block_cycles


def estimated_cycles(shape: GemmShape, cfg: GemmConfig) -> tuple[float, float]:
    """(estimated cycles, cycles of the tile work alone); the second breaks ties among configs that
    all sit at the HBM floor in favour of the one with the most slack under it."""
    num_waves = ceil_div(shape.num_tiles(cfg.block_m, cfg.block_n), cfg.num_sms)
    k_block_cycles = _tile_k_block_cycles(shape, cfg)
    family = cfg.family
    if family.pipeline_costs_in_estimate:
        if cfg.num_stages < DEEP_STAGES:
            k_block_cycles *= family.shallow_pipeline_costs[cfg.block_m]
        epilogue_cycles = (cfg.num_d_chunks - 1) * D_CHUNK_CYCLES
        tile_cycles = num_waves * (shape.num_k_blocks * k_block_cycles + epilogue_cycles)
    else:
        tile_cycles = num_waves * shape.num_k_blocks * k_block_cycles
    return max(tile_cycles, shape.hbm_bytes() / HBM_BYTES_PER_CYCLE), tile_cycles


def _straddles_scale_blocks(cfg: GemmConfig) -> bool:
    """Some tile of `cfg` spans two of its family's B scale blocks."""
    scale_block = cfg.family.scale_block_n
    return scale_block is not None and scale_block % cfg.block_n != 0


def _tie_break_pipeline_cycles(shape: GemmShape, cfg: GemmConfig) -> float:
    """Per-tile cycles a config loses to a shallow pipeline and to extra D chunks, for the families whose
    estimate leaves them out (`KernelFamily.pipeline_costs_in_estimate`); else 0."""
    if cfg.family.pipeline_costs_in_estimate:
        return 0.0
    shallow = cfg.family.shallow_pipeline_costs[cfg.block_m] - 1 if cfg.num_stages < DEEP_STAGES else 0.0
    return shape.num_k_blocks * _k_block_cycles(cfg) * shallow + (cfg.num_d_chunks - 1) * D_CHUNK_CYCLES


def l2_bytes_per_k_block(cfg: GemmConfig) -> float:
    """Operand bytes one CTA pulls from L2 per 128-byte K block; multicast shares one operand's load
    between the two CTAs of a cluster."""
    shared_a = cfg.num_tma_multicast if cfg.multicast_on_a else 1
    shared_b = cfg.num_tma_multicast if not cfg.multicast_on_a else 1
    return BLOCK_K_BYTES * (cfg.block_m / shared_a + cfg.block_n / shared_b)


def _grid_size(shape: GemmShape, num_sms: int, block_m: int, block_n: int, num_tma_multicast: int,
               split_k: int = 1) -> int:
    """Persistent CTAs for `shape`: the fewest that still run its tiles in the fewest waves.

    A last wave that would leave SMs idle is spread over every wave instead, and the SMs left out stay
    idle throughout (measured faster on every multi-wave DeepSeek-V3 shape at M = 4096).

    Only the dense layout's tile count is known on the host. The masked layout keeps every SM; the
    contiguous one a CTA per estimated tile up to every SM: its real tiles depend on the experts'
    sizes (a partial last m-block per expert, near-free padding blocks), and a grid sized to the
    estimate could add a wave. Split-K counts each of a tile's K slices as a tile."""
    num_tiles = shape.num_tiles(block_m, block_n) * split_k
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
                num_d_chunks: int = 1, load_batch: int | None = None, split_k: int = 1,
                promote_every: int = 1, promote_sets: int = 1) -> GemmConfig:
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
        num_sms=_grid_size(shape, num_sms, block_m, block_n, num_tma_multicast, split_k),
        out_bytes=shape.out_bytes,
        grouped=grouped,
        family=shape.family,
        num_d_chunks=num_d_chunks,
        load_batch=load_batch or _load_batch(shape, block_m, num_stages, split_k),
        split_k=split_k,
        promote_every=promote_every,
        promote_sets=promote_sets,
    )


def _load_batch(shape: GemmShape, block_m: int, num_stages: int, split_k: int = 1) -> int:
    """K-blocks per batch of the producer's loads: LOAD_BATCH where measured to pay (see there), else 1.
    Only K-major B was measured; with split-K the K loop is a slice's."""
    slice_k_blocks = shape.num_k_blocks // split_k
    if (shape.layout == DENSE and not shape.b_mn_major and block_m == 64
            and num_stages >= LOAD_BATCH_MIN_STAGES and slice_k_blocks >= LOAD_BATCH_MIN_K_BLOCKS):
        return LOAD_BATCH
    return 1


def candidate_configs(shape: GemmShape, num_sms: int, promotions=None):
    """Every valid config the heuristic considers for `shape`; with `promotions`, each tile with those
    promotion schedules instead of the ones the cost model weighs (the sweep's use)."""
    family = shape.family
    for block_m in _block_m_candidates(shape):
        for block_n in family.block_n_candidates:
            for num_tma_multicast, on_a in ((1, True), (2, True), (2, False)):
                # Multicast pays where every SM runs several tiles; on about one wave of tiles the
                # pair's lock step only adds latency.
                if num_tma_multicast > 1 and not _runs_several_waves(shape, block_m, block_n, num_sms):
                    continue
                if (shape.layout == CONTIGUOUS and num_tma_multicast > 1
                        and block_m != family.contiguous_multicast_block_m
                        and not _is_wide_short_k_tile(shape, block_m, block_n)):
                    continue
                whole = make_config(shape, num_sms, block_m, block_n, num_tma_multicast, on_a)
                for cfg in (whole, *_chunked_variants(shape, num_sms, whole)):
                    if cfg.num_stages < family.min_stages:
                        continue
                    for promoted in promotion_variants(cfg, promotions):
                        if not config_errors(promoted, shape):
                            yield promoted


def promotion_variants(cfg: GemmConfig, promotions=None) -> list[GemmConfig]:
    """`cfg` with each promotion schedule (promote_every, promote_sets) of `promotions` (default: those
    the family's cost model weighs, `KernelFamily.promotion_costs`), valid or not."""
    if promotions is None:
        promotions = [(every, sets) for every, sets, _ in cfg.family.promotion_costs]
    return [cfg if (every, sets) == (cfg.promote_every, cfg.promote_sets)
            else dataclasses.replace(cfg, promote_every=every, promote_sets=sets)
            for every, sets in promotions]


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
    """The tile configuration for `shape` on `num_sms` SMs (deterministic, cached).

    The best unsplit config (`select_unsplit_config`), unless its tiles leave SMs idle (`few_tiles`)
    and a split-K config is estimated SPLIT_K_MIN_GAIN of its time or less (`split_k_cycles`): shapes
    whose tiles fill the GPU keep the unsplit selection. A family with its own selection
    (`KernelFamily.select`) gets that."""
    if shape.family.select is not None:
        return shape.family.select(shape, num_sms)
    unsplit = select_unsplit_config(shape, num_sms)
    if (shape.layout != DENSE or not shape.family.split_k_candidates
            or shape.num_tiles(unsplit.block_m, unsplit.block_n) >= num_sms):
        return unsplit
    best, best_key = unsplit, (split_k_cycles(shape, unsplit) * SPLIT_K_MIN_GAIN,)
    for cfg in split_candidates(shape, num_sms):
        # Ties go to the larger tile (fewer partial bytes), then to fewer slices.
        key = (split_k_cycles(shape, cfg), -cfg.block_m * cfg.block_n, cfg.split_k)
        if key < best_key:
            best, best_key = cfg, key
    return best


def split_candidates(shape: GemmShape, num_sms: int):
    """The split-K configs the heuristic weighs for a few-tile `shape`: every tile that leaves SMs idle
    unsplit, cut into each of the family's slice counts that divides the k-blocks into slices of at
    least SPLIT_K_MIN_SLICE_K_BLOCKS, without multicast, with as many stages as fit."""
    family = shape.family
    for block_m in _block_m_candidates(shape):
        for block_n in family.block_n_candidates:
            if shape.num_tiles(block_m, block_n) >= num_sms:
                continue
            for split_k in family.split_k_candidates:
                if (shape.num_k_blocks % split_k
                        or shape.num_k_blocks // split_k < SPLIT_K_MIN_SLICE_K_BLOCKS):
                    continue
                cfg = make_config(shape, num_sms, block_m, block_n, split_k=split_k)
                if cfg.num_stages >= family.min_stages and not config_errors(cfg, shape):
                    yield cfg


def split_k_cycles(shape: GemmShape, cfg: GemmConfig) -> float:
    """Estimated cycles of `cfg` (split or not) on a few-tile shape: per wave of work units, each unit's
    k-blocks at the slower of the tile's rate (`_tile_k_block_cycles`) and the family's least latency
    per k-block after WAVE_FILL_CYCLES, floored by the problem's HBM traffic; a split adds the
    reduction's fixed cost and the partial tiles' round trip."""
    family = cfg.family
    num_units = shape.num_tiles(cfg.block_m, cfg.block_n) * cfg.split_k
    num_waves = ceil_div(num_units, cfg.num_sms)
    k_block_cycles = max(_tile_k_block_cycles(shape, cfg), family.k_block_latency_cycles)
    unit_cycles = WAVE_FILL_CYCLES + shape.num_k_blocks // cfg.split_k * k_block_cycles
    cycles = max(num_waves * unit_cycles, shape.hbm_bytes() / HBM_BYTES_PER_CYCLE)
    if cfg.split_k > 1:
        partial_bytes = cfg.split_k * shape.m * shape.n * SPLIT_K_PARTIAL_BYTES
        cycles += family.split_k_fixed_cycles + partial_bytes / HBM_BYTES_PER_CYCLE
    return cycles


def few_tiles(shape: GemmShape, num_sms: int) -> bool:
    """Whether the tiles of `shape`'s unsplit config leave SMs without one (fewer tiles than SMs)."""
    cfg = select_unsplit_config(shape, num_sms)
    return shape.num_tiles(cfg.block_m, cfg.block_n) < num_sms


@lru_cache(maxsize=4096)
def select_unsplit_config(shape: GemmShape, num_sms: int) -> GemmConfig:
    """The best config that runs each tile's whole K loop in one CTA (deterministic, cached)."""
    if shape.family.select is not None:
        raise ValueError(f"the {shape.family.name} family selects its own configs (select_config), not tiles")
    best, best_key = None, None
    for cfg in candidate_configs(shape, num_sms):
        # Remaining ties go to the larger tile (fewer bytes per FLOP), then to the fewer bytes pulled
        # from L2 (multicast of the larger operand), then to multicast, then to the taller tile, then
        # to the deeper pipeline (each measured faster where the model could not tell them apart).
        key = (*estimated_cycles(shape, cfg), -cfg.block_m * cfg.block_n, l2_bytes_per_k_block(cfg),
               -cfg.num_tma_multicast, -cfg.block_m, _tie_break_pipeline_cycles(shape, cfg))
        if best_key is None or key < best_key:
            best, best_key = cfg, key
    if best is None:
        raise ValueError(f"no valid GEMM configuration for {shape} on {num_sms} SMs")
    return best
