"""GPU path of `fp8_gemm_nt`: choose the config, get the kernel, encode the tensor maps, launch.

Inputs arrive validated by `fp8_gemm.py` (dtypes, shapes, strides, devices, M, N, K > 0). Everything
that depends only on the problem size is computed once per problem (`_Plan`) and the tensor maps once
per set of addresses, so a repeated call costs a few attribute reads, two dict lookups and the launch.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..cuda.tma import TmaDescriptor, make_tma_descriptor
from ..heuristics.config import BLOCK_K, DENSE, GemmConfig, GemmShape
from ..heuristics.sm90 import select_config
from ..jit import ParamType, get_kernel, knobs
from ..quant.layout import (
    TMA_ALIGNMENT_BYTES,
    ceil_div,
    get_mn_major_tma_aligned_tensor,
    get_tma_aligned_size,
)
from .settings import num_sms_for

KERNEL = "deepgemm::sm90_fp8_gemm_1d2d"
HEADER = "deepgemm/impls/sm90_fp8_gemm_1d2d.cuh"
# Rows per TMA store box of D: one WGMMA's 64 rows (`TileStore::issue_store`).
D_STORE_ROWS = 64
# (shape_m, num_groups, grouped_layout, sfb, d, d_row_bytes, d_group_bytes, tmap_a, tmap_b, tmap_sfa,
# tmap_d), as in the kernel's signature. The dense GEMM passes 1 group, no layout and d only for form:
# it stores through tmap_d alone.
PARAM_TYPES = (ParamType.U32, ParamType.U32, ParamType.PTR, ParamType.PTR, ParamType.PTR, ParamType.U64,
               ParamType.U64, ParamType.TMA, ParamType.TMA, ParamType.TMA, ParamType.TMA)
# `deepgemm::GemmKind` enumerators by GemmShape layout; the contiguous layout has two ways to name
# each row's expert, hence two kinds.
GEMM_KIND_DENSE = "deepgemm::GemmKind::Dense"
GEMM_KIND_CONTIGUOUS_INDICES = "deepgemm::GemmKind::ContiguousIndices"
GEMM_KIND_CONTIGUOUS_ENDS = "deepgemm::GemmKind::ContiguousEnds"
GEMM_KIND_MASKED = "deepgemm::GemmKind::Masked"


def template_args(n: int, k: int, cfg: GemmConfig,
                  kind: str = GEMM_KIND_DENSE) -> tuple[int | bool | str, ...]:
    """Template arguments of `sm90_fp8_gemm_1d2d`, in its declaration order."""
    return (n, k, cfg.block_m, cfg.block_n, cfg.num_stages, cfg.num_tma_multicast, cfg.multicast_on_a,
            cfg.out_bytes == 4, cfg.swizzle_d_bytes, cfg.num_d_chunks, cfg.load_batch, kind)


def kernel_comment(n: int, k: int, cfg: GemmConfig, kind: str = GEMM_KIND_DENSE) -> str:
    return f"{kind.rsplit(':', 1)[-1]} n={n}, k={k}\n{cfg.kernel_repr()}"


@lru_cache(maxsize=1024)
def kernel_launcher(n: int, k: int, cfg: GemmConfig, device: int, kind: str = GEMM_KIND_DENSE):
    """The compiled kernel for (N, K, config, kind), ready to launch on CUDA device `device`."""
    kernel = get_kernel(KERNEL, HEADER, template_args(n, k, cfg, kind),
                        comment=kernel_comment(n, k, cfg, kind))
    return kernel.launcher(PARAM_TYPES, grid=cfg.num_sms, block=cfg.num_threads, smem=cfg.smem_bytes(k),
                           cluster=cfg.num_tma_multicast, device=device)


@lru_cache(maxsize=4096)
def choose_config(shape: GemmShape, num_sms: int) -> GemmConfig:
    """`select_config`, printed once per new shape when `DG_PRINT_CONFIGS=1`; the FP8 and the 16-bit
    launchers share it (the shape's operand size tells the kernels apart)."""
    cfg = select_config(shape, num_sms)
    if knobs.print_configs():
        operands = "fp8" if shape.ab_bytes == 1 else "16-bit"
        layout = "" if shape.layout == DENSE else f" {shape.layout} groups={shape.num_groups}"
        print(f"deepgemm: {operands} gemm{layout} m={shape.m} n={shape.n} k={shape.k} -> {cfg}", flush=True)
    return cfg


def launch_fp8_gemm_nt(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
                       d: torch.Tensor, config: GemmConfig | None = None) -> None:
    """Enqueues D = A·Bᵀ on the current stream. `config` overrides the heuristic (tuning tools only)."""
    m, k = A.shape
    n = B.shape[0]
    if config is None:
        launch_checked(A, sfa, B, sfb, d, m, n, k, A.device.index)
    else:
        _run(_Plan(m, n, k, d.dtype, config, A.device.index), A, sfa, B, sfb, d)


def launch_checked(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor, d: torch.Tensor,
                   m: int, n: int, k: int, device_index: int) -> None:
    """`launch_fp8_gemm_nt` with the heuristic's config, for arguments `fp8_gemm_nt` has checked and
    measured (M, N, K > 0, on CUDA device `device_index`). The per-call path: one plan lookup."""
    num_sms = num_sms_for(device_index)
    key = (m, n, k, d.dtype, num_sms, device_index)
    plan = _plans.get(key)
    if plan is None:
        cfg = choose_config(GemmShape(m, n, k, d.element_size()), num_sms)
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()
        plan = _plans[key] = _Plan(m, n, k, d.dtype, cfg, device_index)
    _run(plan, A, sfa, B, sfb, d)


_FP8 = torch.float8_e4m3fn
# Bounds of the memos: problems (one per distinct M in inference), tensor addresses per problem.
_MAX_PLANS = 4096
_MAX_TMAPS_PER_PLAN = 64


class _Plan:
    """What launches of one problem (M, N, K, d's dtype, SM count, device) share: the config, its
    launcher and the fixed tensor-map arguments. The tensor maps themselves are memoised by what varies
    between calls: the tensors' addresses and row strides."""

    __slots__ = ("cfg", "launch", "m", "n", "k", "d_dtype", "sfa_strides", "slab_cols", "tmaps")

    def __init__(self, m: int, n: int, k: int, d_dtype: torch.dtype, cfg: GemmConfig,
                 device_index: int) -> None:
        self.cfg, self.m, self.n, self.k, self.d_dtype = cfg, m, n, k, d_dtype
        self.launch = kernel_launcher(n, k, cfg, device_index)
        # sfa [M, ceil(K/128)] FP32 as `get_mn_major_tma_aligned_tensor` lays it out.
        self.sfa_strides = (1, get_tma_aligned_size(m, 4))
        self.slab_cols = cfg.d_store_cols
        self.tmaps: dict[tuple[int, ...], tuple[TmaDescriptor, ...]] = {}

    def tensor_maps(self, key: tuple[int, ...]) -> tuple[TmaDescriptor, ...]:
        """(tmap_a, tmap_b, tmap_sfa, tmap_d) for `key` = (address of A, row stride of A, of B, row
        stride of B, of sfa, of d, row stride of d), strides in elements. One dict lookup when memoised,
        against ~0.4 us per map for `make_tma_descriptor`'s own memo (and several us to encode one)."""
        tmaps = self.tmaps.get(key)
        if tmaps is None:
            if len(self.tmaps) >= _MAX_TMAPS_PER_PLAN:
                self.tmaps.clear()
            tmaps = self.tmaps[key] = self._encode(*key)
        return tmaps

    def _encode(self, a_ptr: int, a_stride: int, b_ptr: int, b_stride: int, sfa_ptr: int, d_ptr: int,
                d_stride: int) -> tuple[TmaDescriptor, ...]:
        # Through `make_tma_descriptor`'s memo of single maps: when only the activations moved, B's map
        # is not encoded again.
        m, n, k, cfg = self.m, self.n, self.k, self.cfg
        return (
            make_tma_descriptor(a_ptr, _FP8, (k, m), (a_stride,), (BLOCK_K, cfg.block_m), 128),
            make_tma_descriptor(b_ptr, _FP8, (k, n), (b_stride,), (BLOCK_K, cfg.block_n), 128),
            make_tma_descriptor(sfa_ptr, torch.float32, (m, ceil_div(k, BLOCK_K)), (self.sfa_strides[1] * 4,),
                                (cfg.block_m, 1), 0),
            # Each consumer warpgroup stores its own 64-row WGMMA slices of the tile.
            make_tma_descriptor(d_ptr, self.d_dtype, (n, m), (d_stride * self.d_dtype.itemsize,),
                                (self.slab_cols, D_STORE_ROWS), cfg.swizzle_d_bytes),
        )


_plans: dict[tuple, _Plan] = {}


def _run(plan: _Plan, A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
         d: torch.Tensor) -> None:
    # The kernel reads A's scales with one TMA box per (m-block, k-block): MN-major, 16-byte aligned.
    # The conversion is not cached across calls: activations' scales are new each call, and a cache
    # keyed on the tensor would go stale under CUDA-graph replays that rewrite it in place.
    # `get_mn_major_tma_aligned_tensor`'s own test, inlined with the strides precomputed: it is on
    # every call, and sfa's address is needed anyway.
    sfa_ptr = sfa.data_ptr()
    if sfa.stride() != plan.sfa_strides or sfa_ptr % TMA_ALIGNMENT_BYTES:
        sfa = get_mn_major_tma_aligned_tensor(sfa)
        sfa_ptr = sfa.data_ptr()
    tmaps = plan.tensor_maps((A.data_ptr(), A.stride()[0], B.data_ptr(), B.stride()[0], sfa_ptr,
                              d.data_ptr(), d.stride()[0]))
    plan.launch(plan.m, 1, 0, sfb.data_ptr(), d.data_ptr(), 0, 0, *tmaps)
