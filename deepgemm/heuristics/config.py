"""Tile configurations of the GEMM kernels and the rules that make one valid.

Each rule here mirrors a `static_assert` or a layout constant of the family's kernel
(`include/deepgemm/impls/sm90_<family>.cuh`); the kernels check them again at compile time. What
differs between families comes from their `KernelFamily` record. Stdlib only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import gcd

from .families import FP8_1D2D
from .family import BLOCK_K_BYTES, CONTIGUOUS, DENSE, MASKED, MAX_SMEM_BYTES, KernelFamily, ceil_div

# An MN-major (16-bit) operand tile is loaded in chunks of this many rows (one 128-byte TMA box).
MN_MAJOR_CHUNK = 64


@dataclass(frozen=True)
class GemmShape:
    """A GEMM D[m, n] = A[m, k] · B[n, k]ᵀ for the kernel `family`; `out_bytes` is 2 for BF16/FP16
    output, 4 for FP32. `b_mn_major`: B is stored [k, n] (16-bit only).

    MoE layouts (`layout`) multiply by `num_groups` B matrices [n, k]: "contiguous" has `m` rows in
    all (every expert's rows together), "masked" has `m` (expected) rows in each of the groups.
    """

    m: int
    n: int
    k: int
    out_bytes: int = 2
    num_groups: int = 1
    layout: str = DENSE
    family: KernelFamily = FP8_1D2D
    b_mn_major: bool = False

    @classmethod
    def of_problem(cls, m: int, n: int, k: int, *args, family: KernelFamily = FP8_1D2D,
                   **fields) -> GemmShape:
        """The shape a config is chosen for, for a problem of `k` elements of K (the other arguments as the
        constructor's): a GEMM of the K its kernel runs, `family.k_terms` times the problem's."""
        return cls(m, n, k * family.k_terms, *args, family=family, **fields)

    @property
    def num_k_blocks(self) -> int:
        """Stages of 128 bytes of K per tile."""
        return ceil_div(self.k * self.family.operand_bytes, BLOCK_K_BYTES)

    def num_tiles(self, block_m: int, block_n: int) -> int:
        m_blocks = ceil_div(self.m, block_m) * (self.num_groups if self.layout == MASKED else 1)
        return m_blocks * ceil_div(self.n, block_n)

    def hbm_bytes(self) -> int:
        """Bytes every tile config must move at least once: A, all B matrices and D."""
        rows = self.m * (self.num_groups if self.layout == MASKED else 1)
        operands = (rows + self.num_groups * self.n) * self.k * self.family.operand_bytes
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
    # The kernel family that runs it.
    family: KernelFamily = FP8_1D2D
    # The epilogue stages the D tile in this many column chunks (1, 2 or 4): a smaller staging
    # buffer leaves room for another pipeline stage.
    num_d_chunks: int = 1
    # The producer issues its loads in batches of this many consecutive k-blocks (`produce_tiles`).
    load_batch: int = 1
    # Split-K: each tile's K loop runs as this many slices on different CTAs, whose FP32 partial tiles a
    # second kernel sums into D (1: no split).
    split_k: int = 1
    # 3xTF32 only (`KernelFamily.promotions`): the tensor cores' sum is added to FP32 registers every
    # `promote_every` k-blocks, from one accumulator set or from two used alternately
    # (`promote_sets = 2`), whose next WGMMAs then run while the other set is added.
    promote_every: int = 1
    promote_sets: int = 1

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

    def as_dict(self) -> dict[str, object]:
        """Every field, the family by name: JSON-ready (`dataclasses.asdict` would expand the family's
        record, functions included)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return record | {"family": self.family.name}

    def smem_bytes(self, k: int) -> int:
        return self.family.smem_bytes(self.block_m, self.block_n, self.num_stages, k, self.out_bytes,
                                      self.grouped, self.num_d_chunks)


def swizzle_d_bytes(block_n: int, out_bytes: int) -> int:
    """Widest TMA swizzle span dividing a D tile row (0: unswizzled)."""
    row_bytes = block_n * out_bytes
    return next((s for s in (128, 64, 32) if row_bytes % s == 0), 0)


def accumulator_registers(cfg: GemmConfig) -> int:
    """FP32 accumulator registers per consumer thread: the family's count, plus one WGMMA set per
    extra promotion set (`promote_sets`)."""
    family = cfg.family
    registers = family.accumulator_registers(cfg.block_m, cfg.block_n)
    if cfg.promote_sets > 1:
        registers += (cfg.promote_sets - 1) * family.set_registers(cfg.block_m, cfg.block_n)
    return registers


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
    step = cfg.family.block_n_step
    if cfg.block_n % step != 0 or not step <= cfg.block_n <= 256:
        errors.append(f"block_n={cfg.block_n} must be a multiple of {step} in [{step}, 256] (WGMMA N)")
    # A tile may span at most two B scale blocks (one predicate selects between them).
    scale_block = cfg.family.scale_block_n
    if scale_block and cfg.block_n - gcd(cfg.block_n, scale_block) > scale_block:
        errors.append(f"block_n={cfg.block_n} lets a tile straddle three {scale_block}-column scale blocks")
    promotion = (cfg.promote_every, cfg.promote_sets)
    if promotion not in cfg.family.promotions:
        errors.append(f"promote_every={cfg.promote_every}, promote_sets={cfg.promote_sets} is not one of "
                      f"{cfg.family.name}'s promotion schedules {cfg.family.promotions}")
    elif accumulator_registers(cfg) > cfg.family.max_accumulator_registers:
        errors.append(f"block_m={cfg.block_m}, block_n={cfg.block_n} needs too many accumulator registers"
                      + (f" with {cfg.promote_sets} accumulator sets" if cfg.promote_sets > 1 else ""))
    if shape.layout != DENSE and cfg.block_n > cfg.family.grouped_max_block_n:
        errors.append(f"block_n={cfg.block_n} is wider than the {cfg.family.name} kernel's grouped tiles "
                      f"({cfg.family.grouped_max_block_n})")
    if cfg.num_stages < 2:
        errors.append(f"num_stages={cfg.num_stages} must be at least 2")
    smem = cfg.smem_bytes(shape.k)
    if smem > MAX_SMEM_BYTES:
        errors.append(f"shared memory {smem} B exceeds {MAX_SMEM_BYTES} B")
    if cfg.swizzle_d_bytes != swizzle_d_bytes(cfg.block_n // cfg.num_d_chunks, cfg.out_bytes):
        errors.append(f"swizzle_d_bytes={cfg.swizzle_d_bytes} does not match the staged D chunk "
                      f"({cfg.block_n // cfg.num_d_chunks} columns)")
    if cfg.family is not shape.family:
        errors.append(f"config and shape disagree on the kernel family ({cfg.family.name} against "
                      f"{shape.family.name})")
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
    if cfg.split_k != 1:
        if cfg.split_k not in cfg.family.split_k_candidates:
            errors.append(f"split_k={cfg.split_k} is not one of {cfg.family.name}'s split counts "
                          f"{cfg.family.split_k_candidates}")
        if shape.layout != DENSE:
            errors.append("only the dense layout splits K")
        if cfg.num_tma_multicast != 1:
            errors.append("split-K does not multicast")
        if shape.num_k_blocks % cfg.split_k:
            errors.append(f"split_k={cfg.split_k} must divide the {shape.num_k_blocks} k-blocks into equal "
                          "slices")
    return errors
