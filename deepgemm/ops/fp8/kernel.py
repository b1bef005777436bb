"""GPU path of the FP8 GEMMs: the kernel spec, the tensor maps, the launches (dense and grouped).

One kernel, `sm90_fp8_gemm_1d2d`, runs every FP8 op; the grouped ones pass another `GemmKind`, whose
scheduler reads each tile's expert from the index tensor on the GPU, so nothing here reads index
values (no host sync; the calls can be captured in a CUDA graph). Inputs arrive validated by the ops
(`dense.py`, `grouped.py`), with every size positive.

Tensor maps: A [rows, K] and B [N, K] in boxes of 128 K by the tile's rows; the A scales, MN-major,
in boxes of the tile's rows by one k-block; D in boxes of 64 rows. The grouped kinds read B [G, N, K]
as one [G * N, K] matrix (its experts lie back to back); the masked kind reads A, its scales and D
as 3-D [G, max_m, ...] maps, so each group's rows end at max_m for TMA (zero-filled loads, clipped
stores) and never run into the next group. Its producer bulk-copies each tile's B scales, so it reads
them with rows padded to 16 bytes (`masked_sfb`).
"""

from __future__ import annotations

import torch

from ...cuda.tma import TmaDescriptor, make_tma_descriptor
from ...heuristics import FP8_1D2D, GemmConfig, GemmShape
from ...heuristics.config import DENSE
from ...heuristics.families.fp8_1d2d import BLOCK_K, masked_sfb_row_floats
from ...jit import ParamType
from ...quant.layout import (
    TMA_ALIGNMENT_BYTES,
    ceil_div,
    get_mn_major_tma_aligned_tensor,
    get_tma_aligned_size,
)
from ..common.launch import (
    D_STORE_ROWS,
    GEMM_KIND_CONTIGUOUS_ENDS,
    GEMM_KIND_CONTIGUOUS_INDICES,
    GEMM_KIND_DENSE,
    GEMM_KIND_MASKED,
    GROUPED_KIND_LAYOUTS,
    KernelRequest,
    KernelSpec,
    Plan,
    PlanCache,
    choose_config,
    d_stride_args,
    d_tensor_map,
    group_stride_bytes,
    grouped_config,
)
from ..common.settings import num_sms_for
from ..common.split_k import SplitK, reduce_kernel_spec

KERNEL = "deepgemm::sm90_fp8_gemm_1d2d"
HEADER = "deepgemm/impls/sm90_fp8_gemm_1d2d.cuh"
# (shape_m, num_groups, grouped_layout, sfb, d, d_row_bytes, d_group_bytes, tmap_a, tmap_b, tmap_sfa,
# tmap_d), as in the kernel's signature. The dense GEMM passes 1 group, no layout and d only for form:
# it stores through tmap_d alone, except split-K, whose K slices store FP32 partial tiles to the workspace
# d then points at (d_row_bytes = N * 4, d_group_bytes = M * N * 4; ops/common/split_k.py).
PARAM_TYPES = (ParamType.U32, ParamType.U32, ParamType.PTR, ParamType.PTR, ParamType.PTR, ParamType.U64,
               ParamType.U64, ParamType.TMA, ParamType.TMA, ParamType.TMA, ParamType.TMA)
_FP8 = torch.float8_e4m3fn


def kernel_spec(n: int, k: int, cfg: GemmConfig, kind: str = GEMM_KIND_DENSE) -> KernelSpec:
    """`sm90_fp8_gemm_1d2d` for (N, K, config, kind)."""
    template_args = (n, k, cfg.block_m, cfg.block_n, cfg.num_stages, cfg.num_tma_multicast,
                     cfg.multicast_on_a, cfg.out_bytes == 4, cfg.swizzle_d_bytes, cfg.num_d_chunks,
                     cfg.load_batch, kind, cfg.split_k)
    comment = f"{kind.rsplit(':', 1)[-1]} n={n}, k={k}\n{cfg.kernel_repr()}"
    return KernelSpec(KERNEL, HEADER, template_args, PARAM_TYPES, cfg, cfg.smem_bytes(k), comment)


def kernel_specs(request: KernelRequest, num_sms: int) -> list[KernelSpec]:
    """The kernels the launches below load for `request` on `num_sms` SMs (ahead-of-time compilation):
    the contiguous layout has two ops (per-row indices, group ends), hence two kinds."""
    out_bytes = request.out_dtype.itemsize
    if request.layout == DENSE:
        shape = GemmShape(request.m, request.n, request.k, out_bytes, family=FP8_1D2D)
        cfg = choose_config(shape, num_sms)
        specs = [kernel_spec(request.n, request.k, cfg)]
        if cfg.split_k > 1:  # and the reduction its plan loads (`SplitK`)
            specs.append(reduce_kernel_spec(cfg.split_k, request.out_dtype, False, request.m, request.n,
                                            cfg.num_sms))
        return specs
    specs = []
    for kind, layout in GROUPED_KIND_LAYOUTS.items():
        if layout == request.layout:
            cfg = grouped_config(None, FP8_1D2D, kind, request.m, request.n, request.k, request.num_groups,
                                 out_bytes, num_sms)
            specs.append(kernel_spec(request.n, request.k, cfg, kind))
    return specs


# --- dense -------------------------------------------------------------------------------------------------


def launch_fp8_gemm_nt(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
                       d: torch.Tensor, config: GemmConfig | None = None) -> None:
    """Enqueues D = A·Bᵀ on the current stream. `config` overrides the heuristic (tuning tools only)."""
    m, k = A.shape
    n = B.shape[0]
    if config is None:
        launch_checked(A, sfa, B, sfb, d, m, n, k, A.device.index)
    else:
        _run(_DensePlan(m, n, k, d.dtype, config, A.device.index), A, sfa, B, sfb, d)


def launch_checked(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor, d: torch.Tensor,
                   m: int, n: int, k: int, device_index: int) -> _DensePlan:
    """`launch_fp8_gemm_nt` with the heuristic's config, for arguments `fp8_gemm_nt` has checked and
    measured (M, N, K > 0, on CUDA device `device_index`); returns the plan it ran, which
    `run_plan` launches again for arguments of the same sizes."""
    num_sms = num_sms_for(device_index)
    key = (m, n, k, d.dtype, num_sms, device_index)
    plan = _dense_plans.get(key)
    if plan is None:
        cfg = choose_config(GemmShape(m, n, k, d.element_size(), family=FP8_1D2D), num_sms)
        plan = _dense_plans.remember(key, _DensePlan(m, n, k, d.dtype, cfg, device_index))
    _run(plan, A, sfa, B, sfb, d)
    return plan


class _DensePlan(Plan):
    __slots__ = ("m", "n", "k", "d_dtype", "sfa_strides", "split")

    def __init__(self, m: int, n: int, k: int, d_dtype: torch.dtype, cfg: GemmConfig,
                 device_index: int) -> None:
        super().__init__(kernel_spec(n, k, cfg), device_index)
        self.m, self.n, self.k, self.d_dtype = m, n, k, d_dtype
        # sfa [M, ceil(K/128)] FP32 as `get_mn_major_tma_aligned_tensor` lays it out.
        self.sfa_strides = (1, get_tma_aligned_size(m, 4))
        self.split = (SplitK(cfg.split_k, m, n, d_dtype, False, cfg.num_sms, device_index)
                      if cfg.split_k > 1 else None)

    def encode(self, a_ptr: int, a_stride: int, b_ptr: int, b_stride: int, sfa_ptr: int, d_ptr: int,
               d_stride: int) -> tuple[TmaDescriptor, ...]:
        """(tmap_a, tmap_b, tmap_sfa, tmap_d), strides in elements. Through `make_tma_descriptor`'s memo
        of single maps: when only the activations moved, B's map is not encoded again."""
        m, n, k, cfg = self.m, self.n, self.k, self.cfg
        return (
            make_tma_descriptor(a_ptr, _FP8, (k, m), (a_stride,), (BLOCK_K, cfg.block_m), 128),
            make_tma_descriptor(b_ptr, _FP8, (k, n), (b_stride,), (BLOCK_K, cfg.block_n), 128),
            make_tma_descriptor(sfa_ptr, torch.float32, (m, ceil_div(k, BLOCK_K)), (self.sfa_strides[1] * 4,),
                                (cfg.block_m, 1), 0),
            make_tma_descriptor(d_ptr, self.d_dtype, (n, m), (d_stride * self.d_dtype.itemsize,),
                                (cfg.d_store_cols, D_STORE_ROWS), cfg.swizzle_d_bytes),
        )


_dense_plans = PlanCache(max_plans=4096)


def _run(plan: _DensePlan, A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
         d: torch.Tensor) -> None:
    run_plan(plan, A.data_ptr(), A.stride()[0], B.data_ptr(), B.stride()[0], sfa, sfb.data_ptr(),
             d.data_ptr(), d.stride()[0])


def run_plan(plan: _DensePlan, a_ptr: int, a_stride: int, b_ptr: int, b_stride: int, sfa: torch.Tensor,
             sfb_ptr: int, d_ptr: int, d_stride: int) -> None:
    """Launches `plan` on checked arguments of its sizes, given by address and row stride (elements),
    as the cached path of `fp8_gemm_nt` has read them (each tensor attribute once per call)."""
    # The kernel reads A's scales with one TMA box per (m-block, k-block): MN-major, 16-byte aligned.
    # The conversion is not cached across calls: activations' scales are new each call, and a cache
    # keyed on the tensor would go stale under CUDA-graph replays that rewrite it in place.
    # `get_mn_major_tma_aligned_tensor`'s own test, inlined with the strides precomputed: it is on
    # every call, and sfa's address is needed anyway.
    sfa_ptr = sfa.data_ptr()
    if sfa.stride() != plan.sfa_strides or sfa_ptr % TMA_ALIGNMENT_BYTES:
        sfa = get_mn_major_tma_aligned_tensor(sfa)
        sfa_ptr = sfa.data_ptr()
    key = (a_ptr, a_stride, b_ptr, b_stride, sfa_ptr, d_ptr, d_stride)
    # `plan.tensor_maps(key, *key)`, its memo read here: one call less on the cached path.
    tmaps = plan.tmaps.get(key) or plan.tensor_maps(key, *key)
    if plan.split is None:
        plan.launch(plan.m, 1, 0, sfb_ptr, d_ptr, 0, 0, *tmaps)
    else:
        plan.split.run(plan.launch, (plan.m, 1, 0, sfb_ptr), tmaps, 0, 0, d_ptr,
                       d_stride * plan.d_dtype.itemsize)


# --- grouped (MoE) -----------------------------------------------------------------------------------------
# `config`, where given, overrides the heuristic (tuning tools only).


def launch_m_grouped_contiguous(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
                                d: torch.Tensor, m_indices: torch.Tensor, device_index: int,
                                config: GemmConfig | None = None) -> None:
    """Enqueues the contiguous-layout grouped GEMM with per-row expert indices `m_indices` [M_sum]."""
    _launch_grouped(GEMM_KIND_CONTIGUOUS_INDICES, A.shape[0], A, sfa, B, sfb, d, m_indices, device_index,
                    config)


def launch_m_grouped_contiguous_offsets(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor,
                                        sfb: torch.Tensor, d: torch.Tensor, group_ends: torch.Tensor,
                                        device_index: int, config: GemmConfig | None = None) -> None:
    """Enqueues the contiguous-layout grouped GEMM with per-expert running row ends `group_ends` [G]."""
    _launch_grouped(GEMM_KIND_CONTIGUOUS_ENDS, A.shape[0], A, sfa, B, sfb, d, group_ends, device_index,
                    config)


def launch_m_grouped_masked(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
                            d: torch.Tensor, masked_m: torch.Tensor, expected_m: int,
                            device_index: int, config: GemmConfig | None = None) -> None:
    """Enqueues the masked-layout grouped GEMM; `expected_m` rows per group only guide the config."""
    _launch_grouped(GEMM_KIND_MASKED, expected_m, A, sfa, B, sfb, d, masked_m, device_index, config)


def _launch_grouped(kind: str, config_m: int, A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor,
                    sfb: torch.Tensor, d: torch.Tensor, grouped_layout: torch.Tensor, device_index: int,
                    config: GemmConfig | None) -> None:
    num_groups, n, k = B.shape
    rows = A.shape[-2]
    num_sms = num_sms_for(device_index)
    if config is not None:
        cfg = grouped_config(config, FP8_1D2D, kind, config_m, n, k, num_groups, d.element_size(), num_sms)
        _GroupedPlan(kind, rows, n, k, num_groups, d.dtype, cfg, device_index).run(
            A, sfa, B, sfb, d, grouped_layout)
        return
    key = (kind, config_m, rows, n, k, num_groups, d.dtype, num_sms, device_index)
    plan = _grouped_plans.get(key)
    if plan is None:
        cfg = grouped_config(None, FP8_1D2D, kind, config_m, n, k, num_groups, d.element_size(), num_sms)
        plan = _GroupedPlan(kind, rows, n, k, num_groups, d.dtype, cfg, device_index)
        _grouped_plans.remember(key, plan)
    plan.run(A, sfa, B, sfb, d, grouped_layout)


class _GroupedPlan(Plan):
    __slots__ = ("rows", "n", "k", "num_groups", "d_dtype", "is_masked")

    def __init__(self, kind: str, rows: int, n: int, k: int, num_groups: int, d_dtype: torch.dtype,
                 cfg: GemmConfig, device_index: int) -> None:
        super().__init__(kernel_spec(n, k, cfg, kind), device_index)
        self.rows, self.n, self.k, self.num_groups, self.d_dtype = rows, n, k, num_groups, d_dtype
        self.is_masked = kind == GEMM_KIND_MASKED

    def run(self, A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor, d: torch.Tensor,
            grouped_layout: torch.Tensor) -> None:
        # The kernel reads A's scales by TMA boxes of (rows, 1 k-block): MN-major, 16-byte aligned.
        sfa = get_mn_major_tma_aligned_tensor(sfa)
        if self.is_masked:
            sfb = masked_sfb(sfb)
        key = (A.data_ptr(), *A.stride(), B.data_ptr(), *B.stride(), sfa.data_ptr(), *sfa.stride(),
               d.data_ptr(), *d.stride())
        tmaps = self.tensor_maps(key, A, B, sfa, d)
        self.launch(self.rows, self.num_groups, grouped_layout.data_ptr(), sfb.data_ptr(), d.data_ptr(),
                    *d_stride_args(d, self.is_masked), *tmaps)

    def encode(self, A: torch.Tensor, B: torch.Tensor, sfa: torch.Tensor,
               d: torch.Tensor) -> tuple[TmaDescriptor, ...]:
        rows, n, k, cfg = self.rows, self.n, self.k, self.cfg
        k_blocks = ceil_div(k, BLOCK_K)
        # A tile past an expert's last row reads the next expert's rows into columns never stored.
        tmap_b = make_tma_descriptor(B.data_ptr(), _FP8, (k, n * self.num_groups), (B.stride(1),),
                                     (BLOCK_K, cfg.block_n), 128)
        tmap_d = d_tensor_map(d, n, rows, self.num_groups, self.is_masked, cfg)
        if not self.is_masked:
            return (
                make_tma_descriptor(A.data_ptr(), _FP8, (k, rows), (A.stride(0),), (BLOCK_K, cfg.block_m),
                                    128),
                tmap_b,
                make_tma_descriptor(sfa.data_ptr(), torch.float32, (rows, k_blocks), (sfa.stride(1) * 4,),
                                    (cfg.block_m, 1), 0),
                tmap_d,
            )
        groups = self.num_groups
        return (
            make_tma_descriptor(A.data_ptr(), _FP8, (k, rows, groups),
                                (A.stride(1), group_stride_bytes(A, groups)), (BLOCK_K, cfg.block_m, 1), 128),
            tmap_b,
            make_tma_descriptor(sfa.data_ptr(), torch.float32, (rows, k_blocks, groups),
                                (sfa.stride(2) * 4, sfa.stride(0) * 4), (cfg.block_m, 1, 1), 0),
            tmap_d,
        )


_grouped_plans = PlanCache(max_plans=1024)


def masked_sfb(sfb: torch.Tensor) -> torch.Tensor:
    """The B scales ``[G, ceil(N/128), ceil(K/128)]`` (contiguous) as the masked kernel reads them: rows
    of ``masked_sfb_row_floats`` floats from a 16-byte-aligned start, so that its producer copies each
    tile's rows with bulk copies (`TileScalesB::load_by_producer`). ``sfb`` itself where it already is
    so (the DeepSeek-V3 K values: 7168, 2048, 4096 are multiples of 512), else a copy padded with zeros
    the kernel never reads: a small device copy on the stream, no host sync, captured by a CUDA graph
    like the call (it reads ``sfb`` at each replay)."""
    num_k_blocks = sfb.shape[-1]
    pad = masked_sfb_row_floats(num_k_blocks) - num_k_blocks
    if pad:
        return torch.nn.functional.pad(sfb, (0, pad))
    if sfb.data_ptr() % 16:
        return sfb.clone(memory_format=torch.contiguous_format)
    return sfb
