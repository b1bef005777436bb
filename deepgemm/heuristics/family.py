"""What the config selection needs to know about one kernel family, as one record.

A kernel family is one `__global__` kernel template (`include/deepgemm/impls/sm90_<family>.cuh`) and
the ops that launch it. The selection code asks a family's `KernelFamily` for everything that differs
between kernels (tile candidates, stage limits, the shared-memory layout, rates and costs of the cost
model) and never branches on which family it is. Records live in `families/`, one file each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import GemmShape

# Every kernel moves one 128-byte line of K per operand row and stage (128 FP8 or 64 16-bit elements).
BLOCK_K_BYTES = 128
# Largest dynamic shared memory one block may opt into on sm_90 (227 KB).
MAX_SMEM_BYTES = 232448
# Layouts of a GemmShape: one GEMM, or MoE experts in the contiguous layout (each expert's rows named
# by per-row indices or by row offsets: the kernels run the same tiles either way) or the masked layout.
DENSE, CONTIGUOUS, MASKED = "dense", "contiguous", "masked"


def ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


def align(a: int, b: int) -> int:
    return ceil_div(a, b) * b


# smem_bytes(block_m, block_n, num_stages, k, out_bytes, grouped, num_d_chunks): the kernel's dynamic
# shared memory, a mirror of its layout struct's kSmemBytes.
SmemFunction = Callable[[int, int, int, int, int, bool, int], int]


@dataclass(frozen=True, eq=False, repr=False)
class KernelFamily:
    """One kernel family's record. Families are singletons: equal only to themselves, hashable, and
    printed by name (a config's printed form is part of the JIT cache key, so it must not hold an
    address)."""

    name: str
    # Bytes of one A or B element; K-blocks and the problem's HBM bytes are counted with it.
    operand_bytes: int
    block_n_candidates: tuple[int, ...]
    # Stage counts the heuristic considers: fewer than min_stages leave the loads no room to run
    # ahead of the math; more than max_stages gained nothing when measured.
    min_stages: int
    max_stages: int
    smem_bytes: SmemFunction
    # FP32 registers per consumer thread that the accumulators of a (block_m, block_n) tile take.
    accumulator_registers: Callable[[int, int], int]
    # Operand bytes per cycle per SM that L2 feeds this kernel at (fitted per family).
    l2_bytes_per_cycle_per_sm: float
    # Columns per B scale block (the kernel promotes with one scale per block); None: no B scales.
    scale_block_n: int | None = None
    # Cost factor of a tile that straddles two B scale blocks (extra promotion work).
    straddling_scale_cost: float = 1.0
    # Cost factor of keeping a 2-CTA cluster in lock step, where the cost model says it is paid.
    multicast_lockstep_cost: float = 1.0
    # A (block_m, block_n) tile that, over short K, pays neither the straddling nor (in several waves)
    # the lock-step factor and may multicast in the contiguous layout; None: no such tile.
    wide_short_k_tile: tuple[int, int] | None = None
    # The contiguous layout may multicast A on tiles of this many rows (None: never).
    contiguous_multicast_block_m: int | None = None
    # Cost factor by block_m of a pipeline shallower than the heuristic's DEEP_STAGES.
    shallow_pipeline_costs: Mapping[int, float] | None = None
    # True: the shallow-pipeline and D-chunk costs enter the estimate. False: the family's rates were
    # fitted to whole-D tiles at the stages they got, so those costs only break ties among a tile's
    # variants.
    pipeline_costs_in_estimate: bool = True
    # Split-K (dense only): the slice counts the heuristic may cut a K loop into where the tiles leave
    # SMs idle (empty: the family's kernel does not split K), and the cost model's terms for it. A lone
    # work unit runs its k-blocks one after the other however idle the GPU is: `k_block_latency_cycles`
    # is the least one k-block takes (the serial chain of wait, WGMMAs and, for FP8, promotion), which
    # the throughput rates above leave out and which is what splitting shortens; `split_k_fixed_cycles`
    # is what the reduction adds (its launch and the round trip of the partial tiles' first bytes).
    split_k_candidates: tuple[int, ...] = ()
    k_block_latency_cycles: float = 0.0
    split_k_fixed_cycles: float = 0.0
    # BLOCK_N must be a multiple of this (the WGMMA N values the family's instructions take).
    block_n_step: int = 8
    # Most accumulator registers per consumer thread (`accumulator_registers`) a tile may take, and the
    # widest tile of the grouped layouts: beyond them the kernel's epilogue spills.
    max_accumulator_registers: int = 192
    grouped_max_block_n: int = 256
    # The kernel runs the k-blocks of this many products per problem (3xTF32: three TF32 products over
    # the same K), so a problem of K gets the config of a GEMM of k_terms * K (`GemmShape.of_problem`).
    k_terms: int = 1
    # A family whose configs the tile model above does not describe (the weight-only kernel: tokens per
    # tile and a K split over a persistent grid, no multicast or D staging) selects them itself:
    # `select_config(shape, num_sms)` returns `select(shape, num_sms)`, and the record's other fields
    # describe its kernel for that selection. None: the tile model selects a `GemmConfig`.
    select: Callable[[GemmShape, int], object] | None = None
    # The promotion schedules (promote_every, promote_sets) the family's kernel takes (3xTF32 chooses how
    # often its tensor-core sums are added into FP32 registers, and from how many accumulator sets), and
    # the registers of one extra set (`accumulator_registers` counts the first). `promotion_costs`: the
    # schedules the heuristic weighs, (promote_every, promote_sets, the factor its k-blocks cost against
    # (1, 1)); a schedule joins once a sweep (`tools/sweep.py`) measured it.
    promotions: tuple[tuple[int, int], ...] = ((1, 1),)
    set_registers: Callable[[int, int], int] | None = None
    promotion_costs: tuple[tuple[int, int, float], ...] = ((1, 1, 1.0),)

    def promotion_cost(self, promote_every: int, promote_sets: int) -> float:
        """The cost factor of a promotion schedule's k-blocks (1 where the model has none)."""
        return next((cost for every, sets, cost in self.promotion_costs
                     if (every, sets) == (promote_every, promote_sets)), 1.0)

    def __repr__(self) -> str:
        return f"KernelFamily({self.name!r})"
