"""The launch core every kernel family uses: one compiled kernel per `KernelSpec`, the config choice,
and plans that keep what repeated calls share.

A family's launch module says what its kernel is (a `KernelSpec`: header, `__global__` name, template
arguments, parameter types, config) and how its tensor maps are encoded (a `Plan` subclass); this
module does the rest. Everything that depends only on the problem size is computed once per problem
(the plan) and the tensor maps once per set of addresses, so a repeated call costs a few attribute
reads, two dict lookups and the launch. Both memos are bounded. This module loads the CUDA driver
helpers: the ops import their family's launch module on their first GPU call (`lazy.lazy_import`),
never on the CPU path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from ...cuda.tma import TmaDescriptor, make_tma_descriptor
from ...heuristics import GemmConfig, GemmShape, KernelFamily, WonlyConfig, select_config
from ...heuristics.config import CONTIGUOUS, DENSE, MASKED
from ...jit import ParamType, get_kernel, knobs
from ...quant.layout import TMA_ALIGNMENT_BYTES, align

# `deepgemm::GemmKind` enumerators (include/deepgemm/common/gemm_kind.cuh), shared by every family: the
# contiguous layout has two ways to name each row's expert, hence two kinds.
GEMM_KIND_DENSE = "deepgemm::GemmKind::Dense"
GEMM_KIND_CONTIGUOUS_INDICES = "deepgemm::GemmKind::ContiguousIndices"
GEMM_KIND_CONTIGUOUS_ENDS = "deepgemm::GemmKind::ContiguousEnds"
GEMM_KIND_MASKED = "deepgemm::GemmKind::Masked"
# `deepgemm::OutType` enumerators (include/deepgemm/common/types.cuh) by D's dtype, for the kernels that
# write BF16, FP16 or FP32.
OUT_TYPES = {
    torch.bfloat16: "deepgemm::OutType::BF16",
    torch.float16: "deepgemm::OutType::FP16",
    torch.float32: "deepgemm::OutType::FP32",
}
# `KernelRequest.layout` (and the benchmark's `Problem.layout`) of the FP8 1D1D k-grouped op: groups along K.
K_GROUPED = "k_grouped"
# The GemmShape layout of each grouped kind, for the config choice.
GROUPED_KIND_LAYOUTS = {GEMM_KIND_CONTIGUOUS_INDICES: CONTIGUOUS, GEMM_KIND_CONTIGUOUS_ENDS: CONTIGUOUS,
                        GEMM_KIND_MASKED: MASKED}
# Rows per TMA store box of D: one WGMMA's 64 rows (each consumer warpgroup stores its own slices).
D_STORE_ROWS = 64
# Tensor-map sets a plan keeps (one per set of tensor addresses); each family bounds its plans in a
# `PlanCache`.
MAX_TMAPS_PER_PLAN = 64


@dataclass(frozen=True)
class LaunchShape:
    """The launch shape of a kernel that has no GEMM config (the FP8 casts): named as `GemmConfig` names
    the same three numbers, so `kernel_launcher` reads either."""

    num_sms: int  # the grid: CTAs, not necessarily one per SM
    num_threads: int
    num_tma_multicast: int = 1


@dataclass(frozen=True)
class KernelSpec:
    """One kernel instantiation: the `__global__` template `name` declared in `header`, its template
    arguments in declaration order, its parameter types in signature order, and the config it runs
    (grid, block, cluster and shared memory come from it). `comment` heads the JIT stub: it records
    what the kernel computes, and is part of the cache key."""

    name: str
    header: str
    template_args: tuple[int | bool | str, ...]
    param_types: tuple[ParamType, ...]
    config: GemmConfig | WonlyConfig | LaunchShape
    smem_bytes: int
    comment: str


@dataclass(frozen=True)
class KernelRequest:
    """A GEMM a process will run, as ahead-of-time compilation names it (``deepgemm.precompile``): each
    family's ``kernel_specs(request, num_sms)`` returns the kernels its launch path would load for it.

    ``m``: the M the config is chosen by: M (dense), M_sum, the rows of A (contiguous), or expected_m
    (masked). ``layout``: ``"dense"``, ``"contiguous"``, ``"masked"`` or ``K_GROUPED`` (FP8 1D1D: then
    ``k`` is K_sum, all groups' K). ``major``: the storage layout letters of the 16-bit and TF32 ops
    (``"nt"``, ``"nn"``, ``"tn"``, ``"tt"``). ``in_dtype`` / ``out_dtype``: the operands' (16-bit and
    weight-only activations, the casts' inputs) and d's dtype; ``has_c``: a call with ``c`` (16-bit dense,
    TF32, FP8 1D1D accumulation). INT8: ``bias_dtype`` (None: no bias) and ``has_azp`` (zero points).
    Weight-only: ``group_size`` (None: per-channel scales) and ``has_zeros`` (INT4 zero points).
    """

    family: str
    m: int
    n: int
    k: int
    layout: str = DENSE
    num_groups: int = 1
    out_dtype: torch.dtype = torch.bfloat16
    major: str = "nt"
    in_dtype: torch.dtype = torch.bfloat16
    has_c: bool = False
    bias_dtype: torch.dtype | None = None
    has_azp: bool = False
    group_size: int | None = None
    has_zeros: bool = False


@lru_cache(maxsize=1024)
def kernel_launcher(spec: KernelSpec, device: int):
    """The compiled kernel `spec`, ready to launch on CUDA device `device`."""
    kernel = get_kernel(spec.name, spec.header, spec.template_args, comment=spec.comment)
    cfg = spec.config
    return kernel.launcher(spec.param_types, grid=cfg.num_sms, block=cfg.num_threads, smem=spec.smem_bytes,
                           cluster=cfg.num_tma_multicast, device=device)


@lru_cache(maxsize=4096)
def choose_config(shape: GemmShape, num_sms: int) -> GemmConfig | WonlyConfig:
    """`select_config`, printed once per new shape when `DG_PRINT_CONFIGS=1`."""
    cfg = select_config(shape, num_sms)
    if knobs.print_configs():
        layout = "" if shape.layout == DENSE else f" {shape.layout} groups={shape.num_groups}"
        print(f"deepgemm: {shape.family.name} gemm{layout} m={shape.m} n={shape.n} k={shape.k} -> {cfg}",
              flush=True)
    return cfg


def grouped_config(config: GemmConfig | None, family: KernelFamily, kind: str, config_m: int, n: int, k: int,
                   num_groups: int, out_bytes: int, num_sms: int) -> GemmConfig:
    """The config a grouped launch of `kind` runs: the heuristic's for its shape (`config_m`: the rows it is
    chosen by, M_sum or expected_m), or `config` (tuning tools), which must be made for a grouped shape."""
    if config is None:
        shape = GemmShape(config_m, n, k, out_bytes, num_groups, GROUPED_KIND_LAYOUTS[kind], family=family)
        return choose_config(shape, num_sms)
    if not config.grouped:
        raise ValueError("config must be made for a grouped shape (GemmConfig.grouped): the grouped "
                         "kernels keep a tile slot per stage in shared memory")
    return config


class Plan:
    """What launches of one problem share: the config, the kernel's launcher, and its tensor maps
    memoised by what varies between calls (the tensors' addresses and strides). A family's plan
    defines `encode`, which builds the maps the kernel takes, and its own `run`."""

    __slots__ = ("cfg", "launch", "tmaps")

    def __init__(self, spec: KernelSpec, device_index: int) -> None:
        self.cfg = spec.config
        self.launch = kernel_launcher(spec, device_index)
        self.tmaps: dict[tuple, tuple[TmaDescriptor, ...]] = {}

    def tensor_maps(self, key: tuple, *encode_args) -> tuple[TmaDescriptor, ...]:
        """The maps memoised under `key`, encoded from `encode_args` on a miss. One dict lookup when
        memoised, against several us to encode a map."""
        tmaps = self.tmaps.get(key)
        if tmaps is None:
            if len(self.tmaps) >= MAX_TMAPS_PER_PLAN:
                self.tmaps.clear()
            tmaps = self.tmaps[key] = self.encode(*encode_args)
        return tmaps

    def encode(self, *args) -> tuple[TmaDescriptor, ...]:
        raise NotImplementedError


class PlanCache(dict):
    """A family's plans by problem key, cleared once it holds `max_plans` (one plan per distinct M in
    inference): a dict, so the per-call lookup is `dict.get`."""

    def __init__(self, max_plans: int) -> None:
        super().__init__()
        self.max_plans = max_plans

    def remember(self, key: tuple, plan: Plan) -> Plan:
        if len(self) >= self.max_plans:
            self.clear()
        self[key] = plan
        return plan


def d_tensor_map(d: torch.Tensor, n: int, rows: int, num_groups: int, is_masked: bool,
                 cfg: GemmConfig) -> TmaDescriptor:
    """The map the epilogue stores D through, in boxes of 64 rows by `cfg.d_store_cols` columns: [rows, N],
    or for the masked kind [G, max_m, N] in 3-D, so each group's rows end at max_m."""
    if is_masked:
        return make_tma_descriptor(d.data_ptr(), d.dtype, (n, rows, num_groups),
                                   (d.stride(1) * d.element_size(), group_stride_bytes(d, num_groups)),
                                   (cfg.d_store_cols, D_STORE_ROWS, 1), cfg.swizzle_d_bytes)
    return make_tma_descriptor(d.data_ptr(), d.dtype, (n, rows), (d.stride(0) * d.element_size(),),
                               (cfg.d_store_cols, D_STORE_ROWS), cfg.swizzle_d_bytes)


def d_stride_args(d: torch.Tensor, is_masked: bool) -> tuple[int, int]:
    """(d_row_bytes, d_group_bytes) as the kernels take them: the epilogue's plain stores of partial
    tiles address D by these (the group stride only for the masked kind's [G, max_m, N])."""
    return d.stride(-2) * d.element_size(), d.stride(0) * d.element_size() if is_masked else 0


def group_stride_bytes(tensor: torch.Tensor, num_groups: int) -> int:
    """Bytes between the groups of a [G, rows, cols] tensor, for a 3-D tensor map. With one group torch
    may report any stride (even 0) for the size-1 dim; TMA then gets the group's own span instead."""
    if num_groups > 1:
        return tensor.stride(0) * tensor.element_size()
    return align(tensor.shape[1] * tensor.stride(1) * tensor.element_size(), TMA_ALIGNMENT_BYTES)
