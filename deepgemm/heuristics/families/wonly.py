"""The weight-only (W8A16 / W4A16) kernel family: its records `W8A16` and `W4A16`, `WonlyConfig` and
its selection `select_wonly_config`.

The kernel (impls/sm90_wonly_gemm.cuh) puts the weights on the WGMMA's 64-row side and the tokens on
its N side and runs a persistent grid over units: one K range (split) of one tile, or (masked) one
expert's n-block. Its choices are not the tile model's (no BLOCK_N candidates beyond one or two
warpgroups of weight rows, no multicast or D staging; tokens per tile and the split count instead), so
its records select through `KernelFamily.select`: `select_config(GemmShape(m, n, k, num_groups=...,
layout=..., family=W4A16), num_sms)` returns a `WonlyConfig`. Stdlib only; `wonly_smem_bytes` mirrors
the kernel's `WonlyLayout::kSmemBytes`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from ..family import DENSE, MASKED, MAX_SMEM_BYTES, KernelFamily, ceil_div

if TYPE_CHECKING:
    from ..config import GemmShape

BLOCK_K = 64
# Tokens per tile (the WGMMA's N): the decode sizes, then the tall tiles for prefill.
DECODE_BLOCK_M = (8, 16, 32, 64)
PREFILL_BLOCK_M = (128, 256)
SLAB_ROWS = 16
MAX_STAGES = 32
# A split of K keeps at least this many k-blocks, so the partial sums' round trip stays small beside
# the weights it reads.
MIN_K_BLOCKS_PER_SPLIT = 4
MAX_SPLITS = 16
# Masked decode: any tile count that keeps this share of the SMs busy is taken with two consumer
# warpgroups (128 weight rows) rather than one: a lone warpgroup has one warp per scheduler to hide the
# latency of its loads and conversions.
GOOD_SM_USE = 0.85
# Dense decode: a one-warpgroup CTA's weight bytes per SM per unit of time against a two-warpgroup CTA's.
ONE_WARPGROUP_RATE = 2 / 3


def wonly_smem_bytes(block_m: int, num_math_warpgroups: int, num_stages: int, weight_bits: int) -> int:
    """`WonlyLayout::kSmemBytes`: per stage an activation tile (block_m x 64 16-bit) and the weight slabs
    (64 rows per warpgroup, 64 columns, `weight_bits` each); two barriers per stage; a split-K flag."""
    a_bytes = block_m * BLOCK_K * 2
    b_bytes = 64 * num_math_warpgroups * BLOCK_K * weight_bits // 8
    return num_stages * (a_bytes + b_bytes) + num_stages * 16 + 16


@dataclass(frozen=True)
class WonlyConfig:
    """One launch of the weight-only kernel: `block_m` tokens by `64 * num_math_warpgroups` weight rows
    per tile, `num_stages` pipeline stages, `num_splits` CTAs per tile along K, `grid` CTAs."""

    block_m: int
    num_math_warpgroups: int
    num_stages: int
    num_splits: int
    grid: int
    weight_bits: int

    @property
    def block_n(self) -> int:
        return 64 * self.num_math_warpgroups

    @property
    def num_threads(self) -> int:
        return 128 * (self.num_math_warpgroups + 1)

    @property
    def smem_bytes(self) -> int:
        return wonly_smem_bytes(self.block_m, self.num_math_warpgroups, self.num_stages, self.weight_bits)

    def workspace_floats(self, num_tiles: int) -> int:
        """FP32 partial sums the split-K reduction needs for `num_tiles` tiles (0 without splits)."""
        if self.num_splits == 1:
            return 0
        return num_tiles * self.num_splits * self.block_n * self.block_m

    # The launch core (ops/common/launch.py) reads a config's grid, block and cluster by these names.
    @property
    def num_sms(self) -> int:
        return self.grid

    @property
    def num_tma_multicast(self) -> int:
        return 1

    def kernel_repr(self) -> str:
        return (f"block_m={self.block_m} block_n={self.block_n} stages={self.num_stages} "
                f"splits={self.num_splits} grid={self.grid} int{self.weight_bits}")

    def as_dict(self) -> dict[str, object]:
        """Every field and the family's name: JSON-ready, as `GemmConfig.as_dict`."""
        return dataclasses.asdict(self) | {"family": family_name(self.weight_bits)}


def family_name(weight_bits: int) -> str:
    return f"w{weight_bits}a16"


def max_stages(block_m: int, num_math_warpgroups: int, weight_bits: int) -> int:
    fit = (MAX_SMEM_BYTES - 16) // wonly_smem_bytes(block_m, num_math_warpgroups, 1, weight_bits)
    return min(MAX_STAGES, fit)


def _efficiency(num_tiles: int, num_k_blocks: int, splits: int, num_sms: int, overhead: float) -> float:
    """Share of the SMs' time spent on k-blocks when `num_tiles` tiles of `num_k_blocks` k-blocks are cut
    into `splits` K ranges each and the units are dealt round-robin to a persistent grid of at most
    `num_sms` CTAs: the busiest SM runs ceil(units / SMs) units of ceil(k-blocks / splits) k-blocks plus
    `overhead` k-blocks' time each (draining the WGMMAs, the split-K round trip, the store)."""
    units = num_tiles * splits
    busiest = ceil_div(units, num_sms) * (ceil_div(num_k_blocks, splits) + overhead)
    return num_tiles * num_k_blocks / (num_sms * busiest)


def _unit_overhead(block_m: int, weight_bits: int, splits: int) -> float:
    """A unit's fixed cost in k-blocks of its own weight stream: one for the drain and the store; a split
    unit also writes its FP32 partial tile and the tile's last unit reads them back (through L2, about
    twice HBM's bandwidth): block_m * 4 * 2 bytes per weight row against 64 * bits / 8 per k-block."""
    if splits == 1:
        return 1.0
    return 1.0 + 1.0 + (block_m * 4 * 2) / (64 * weight_bits / 8) / 2


@lru_cache(maxsize=4096)
def select_wonly_config(m: int, n: int, k: int, weight_bits: int, num_sms: int, num_groups: int = 1,
                        masked: bool = False) -> WonlyConfig:
    """The config for `m` tokens (the masked kind: the expected tokens per group) by an `n` x `k` weight
    of `weight_bits` (8 or 4), on `num_sms` SMs.

    Tokens per tile: the smallest decode tile that holds `m` (up to 64); past that the tile of 128 or
    256 tokens with the least tile time over its waves (ties: 256), always 128 weight rows. At decode
    sizes, dense: the weight rows per tile and the K split that give the busiest SM of the persistent grid
    the least work (`_efficiency`, one-warpgroup CTAs at ONE_WARPGROUP_RATE; ties: two warpgroups, then
    fewer splits). Masked (no split; units of one expert's n-block): a tile that keeps GOOD_SM_USE of the
    SMs' slots busy, then the taller tile (two warpgroups share the dequantisation work of a CTA), then
    the better use of the slots. Grids are persistent: at most one CTA per SM."""
    num_k_blocks = ceil_div(k, BLOCK_K)
    m_groups = num_groups if masked else 1
    if m > DECODE_BLOCK_M[-1]:
        block_m = min(PREFILL_BLOCK_M, key=lambda size: (
            ceil_div(ceil_div(m, size) * m_groups * ceil_div(n, 128), num_sms) * size, -size))
        m_blocks = ceil_div(m, block_m) * m_groups
        tiles = m_blocks * ceil_div(n, 128)
        grid = min(num_groups * ceil_div(n, 128) if masked else tiles, num_sms)
        return WonlyConfig(block_m, 2, max_stages(block_m, 2, weight_bits), 1, grid, weight_bits)
    block_m = next(size for size in DECODE_BLOCK_M if size >= m)
    m_blocks = ceil_div(m, block_m) * m_groups
    best = None
    for warpgroups in (2, 1):
        tiles = m_blocks * ceil_div(n, 64 * warpgroups)
        if masked:
            efficiency = tiles / (ceil_div(tiles, num_sms) * num_sms)
            key = (efficiency >= GOOD_SM_USE, warpgroups, round(efficiency, 2), 0)
            if best is None or key > best[0]:
                best = (key, warpgroups, 1, tiles)
            continue
        max_splits = min(MAX_SPLITS, max(1, num_k_blocks // MIN_K_BLOCKS_PER_SPLIT))
        for splits in range(1, max_splits + 1):
            efficiency = _efficiency(tiles, num_k_blocks, splits, num_sms,
                                     _unit_overhead(block_m, weight_bits, splits))
            # A CTA of one warpgroup streams half the rows per k-block with one warp per scheduler to
            # hide its latencies: counted at ONE_WARPGROUP_RATE of a two-warpgroup CTA's bytes per SM.
            rate = 1.0 if warpgroups == 2 else ONE_WARPGROUP_RATE
            key = (round(efficiency * rate, 2), warpgroups, -splits)
            if best is None or key > best[0]:
                best = (key, warpgroups, splits, tiles)
    _, warpgroups, splits, tiles = best
    grid = min(num_groups * ceil_div(n, 64 * warpgroups) if masked else tiles * splits, num_sms)
    stages = max_stages(block_m, warpgroups, weight_bits)
    return WonlyConfig(block_m, warpgroups, stages, splits, grid, weight_bits)


def _weight_only_family(weight_bits: int) -> KernelFamily:
    """The record of the kernel on `weight_bits`-bit weights: what describes the kernel, and its own
    selection (`select_wonly_config`) in place of the tile model's."""

    def smem_bytes(block_m: int, block_n: int, num_stages: int, k: int, out_bytes: int, grouped: bool = False,
                   num_d_chunks: int = 1) -> int:
        """`wonly_smem_bytes` in the tile model's terms (`block_n`: the tile's weight rows)."""
        return wonly_smem_bytes(block_m, block_n // 64, num_stages, weight_bits)

    def accumulator_registers(block_m: int, block_n: int) -> int:
        """The WGMMA accumulator of the tile's tokens (its N) per consumer thread."""
        return block_m // 2

    def select(shape: GemmShape, num_sms: int) -> WonlyConfig:
        if shape.layout not in (DENSE, MASKED):
            raise ValueError(f"the weight-only kernel runs the dense and masked layouts, not {shape.layout}")
        return select_wonly_config(shape.m, shape.n, shape.k, weight_bits, num_sms, shape.num_groups,
                                   shape.layout == MASKED)

    return KernelFamily(
        name=family_name(weight_bits),
        # The 16-bit activations: a 128-byte k-block is the kernel's BLOCK_K of 64 elements.
        operand_bytes=2,
        # Weight rows per tile: one or two consumer warpgroups of 64.
        block_n_candidates=(64, 128),
        block_n_step=64,
        # The consumers hold two stages at once (`WonlyLayout`'s static_assert).
        min_stages=2,
        max_stages=MAX_STAGES,
        smem_bytes=smem_bytes,
        accumulator_registers=accumulator_registers,
        # The tile model's L2 term; this family's selection has none (each weight byte is read once).
        l2_bytes_per_cycle_per_sm=0.0,
        select=select,
    )


W8A16 = _weight_only_family(8)
W4A16 = _weight_only_family(4)
# The records by weight bits, as the ops are named.
WEIGHT_ONLY_FAMILIES = {8: W8A16, 4: W4A16}
