"""GPU path of the 1D1D FP8 GEMMs: the kernel spec, the tensor maps, the launches (dense and k-grouped).

One kernel, `sm90_fp8_gemm_1d1d`, runs both ops; the k-grouped one reads its groups' K sizes (`ks`) on
the GPU, so nothing here reads them (no host sync; the call can be captured in a CUDA graph). Inputs
arrive validated by the ops (`gemm.py`), with every size positive.

Tensor maps: A [M, K] and B [N, K] in boxes of 128 K by the tile's rows; both operands' scales, MN-major
(`get_mn_major_tma_aligned_tensor`'s layout; other layouts are copied into it per call), in boxes of the
tile's rows by one k-block; D in boxes of 64 rows, 2-D [M, N] or, k-grouped, 3-D [G, M, N] so each
group's rows end at M. With a C the kernel adds its tile to D by TMA reduce-add: C is D, or C is first
copied into D. A D whose strides or start TMA cannot address (say an FP32 [M, N] with N not a multiple
of 4) is computed into a padded buffer and copied back.
"""

from __future__ import annotations

import dataclasses

import torch

from ...cuda.tma import TmaDescriptor, make_tma_descriptor
from ...heuristics import FP8_1D1D, GemmConfig, GemmShape
from ...heuristics.config import MASKED, config_errors
from ...heuristics.families.fp8_1d1d import BLOCK_K
from ...jit import ParamType
from ...quant.layout import TMA_ALIGNMENT_BYTES, align, get_mn_major_tma_aligned_tensor
from ..common.launch import K_GROUPED, KernelRequest, KernelSpec, Plan, PlanCache, choose_config, d_tensor_map
from ..common.settings import num_sms_for

KERNEL = "deepgemm::sm90_fp8_gemm_1d1d"
HEADER = "deepgemm/impls/sm90_fp8_gemm_1d1d.cuh"
# (shape_m, num_groups, ks, total_k_blocks, tmap_a, tmap_b, tmap_sfa, tmap_sfb, tmap_d), as in the
# kernel's signature. The dense GEMM passes one group and no ks.
PARAM_TYPES = (ParamType.U32, ParamType.U32, ParamType.PTR, ParamType.U32, ParamType.TMA, ParamType.TMA,
               ParamType.TMA, ParamType.TMA, ParamType.TMA)
_FP8 = torch.float8_e4m3fn


def kernel_spec(n: int, k: int, cfg: GemmConfig, accumulate: bool, k_grouped: bool) -> KernelSpec:
    """`sm90_fp8_gemm_1d1d` for (N, K, config, accumulation, kind); the k-grouped kind takes K on the
    device and is compiled with K = 0."""
    shape_k = 0 if k_grouped else k
    template_args = (n, shape_k, cfg.block_m, cfg.block_n, cfg.num_stages, cfg.num_tma_multicast,
                     cfg.multicast_on_a, cfg.out_bytes == 4, cfg.swizzle_d_bytes, cfg.num_d_chunks,
                     accumulate, k_grouped)
    kind = "k-grouped" if k_grouped else "dense"
    comment = (f"fp8 1d1d {kind} n={n}, k={shape_k}, {'D += A B^T' if accumulate else 'D = A B^T'}\n"
               f"{cfg.kernel_repr()}")
    return KernelSpec(KERNEL, HEADER, template_args, PARAM_TYPES, cfg, cfg.smem_bytes(shape_k), comment)


def dense_config(m: int, n: int, k: int, out_bytes: int, num_sms: int) -> GemmConfig:
    """The heuristic's config for the dense GEMM."""
    return choose_config(GemmShape(m, n, k, out_bytes, family=FP8_1D1D), num_sms)


def k_grouped_config(num_groups: int, m: int, n: int, k_sum: int, num_sms: int) -> GemmConfig:
    """The config for the k-grouped GEMM: its tiles and bytes are those of G GEMMs of [M, N] over the
    mean K, which the masked layout's shape describes exactly (G groups of M rows, G B matrices); it
    keeps every SM and does not multicast. Compiled without the grouped flag: the kernel's layout is the
    same for both kinds."""
    k_mean = max(BLOCK_K, k_sum // num_groups // BLOCK_K * BLOCK_K)
    cfg = choose_config(GemmShape(m, n, k_mean, 4, num_groups, MASKED, family=FP8_1D1D), num_sms)
    return dataclasses.replace(cfg, grouped=False)


def kernel_specs(request: KernelRequest, num_sms: int) -> list[KernelSpec]:
    """The kernel the launches below load for `request` on `num_sms` SMs (ahead-of-time compilation):
    dense, or with the ``"k_grouped"`` layout the k-grouped kind of ``request.num_groups`` groups whose K
    sum to ``request.k``; ``has_c`` accumulates."""
    if request.layout == K_GROUPED:
        cfg = k_grouped_config(request.num_groups, request.m, request.n, request.k, num_sms)
        return [kernel_spec(request.n, request.k, cfg, request.has_c, True)]
    cfg = dense_config(request.m, request.n, request.k, request.out_dtype.itemsize, num_sms)
    return [kernel_spec(request.n, request.k, cfg, request.has_c, False)]


# --- dense -------------------------------------------------------------------------------------------------


def launch_fp8_gemm_nt_1d1d(A: torch.Tensor, sa: torch.Tensor, B: torch.Tensor, sb: torch.Tensor,
                            d: torch.Tensor, c: torch.Tensor | None, device_index: int,
                            config: GemmConfig | None = None) -> None:
    """Enqueues D = C + A·Bᵀ (C None: D = A·Bᵀ) on the current stream, for arguments
    `fp8_gemm_nt_1d1d` checked (M, N, K > 0). `config` overrides the heuristic (tuning tools only)."""
    m, k = A.shape
    n = B.shape[0]
    accumulate = c is not None
    if config is None:
        num_sms = num_sms_for(device_index)
        key = (m, n, k, d.dtype, accumulate, num_sms, device_index)
        plan = _dense_plans.get(key)
        if plan is None:
            cfg = dense_config(m, n, k, d.element_size(), num_sms)
            plan = _dense_plans.remember(
                key, _Plan(m, n, k, 1, d.dtype, cfg, accumulate, False, device_index))
    else:
        plan = _Plan(m, n, k, 1, d.dtype, config, accumulate, False, device_index)
    _run(plan, A, sa, B, sb, d, c, None)


# --- k-grouped ---------------------------------------------------------------------------------------------


def launch_k_grouped_fp8_gemm_nt_1d1d(A: torch.Tensor, sa: torch.Tensor, B: torch.Tensor, sb: torch.Tensor,
                                      d: torch.Tensor, ks: torch.Tensor, ks_host: list[int] | None,
                                      c: torch.Tensor | None, device_index: int,
                                      config: GemmConfig | None = None) -> None:
    """Enqueues D[g] = C[g] + A_g·B_gᵀ for every group, for arguments `k_grouped_fp8_gemm_nt_1d1d`
    checked (G, M, N, K_sum > 0). `ks_host` is not needed: the kernel reads `ks`."""
    num_groups, m, n = d.shape
    k_sum = A.shape[1]
    accumulate = c is not None
    if config is None:
        num_sms = num_sms_for(device_index)
        key = (num_groups, m, n, k_sum, accumulate, num_sms, device_index)
        plan = _k_grouped_plans.get(key)
        if plan is None:
            cfg = k_grouped_config(num_groups, m, n, k_sum, num_sms)
            plan = _k_grouped_plans.remember(
                key, _Plan(m, n, k_sum, num_groups, d.dtype, cfg, accumulate, True, device_index))
    else:
        errors = config_errors(config, GemmShape(m, n, k_sum, 4, family=FP8_1D1D))
        if errors:
            raise ValueError(f"config cannot run this k-grouped GEMM: {'; '.join(errors)}")
        plan = _Plan(m, n, k_sum, num_groups, d.dtype, config, accumulate, True, device_index)
    _run(plan, A, sa, B, sb, d, c, ks)


# --- the plan and the launch -------------------------------------------------------------------------------


class _Plan(Plan):
    """One problem: (M, N, K (K_sum when k-grouped), G (1 when dense), D's dtype, accumulation, kind)."""

    __slots__ = ("m", "n", "k", "num_groups", "d_dtype", "k_grouped")

    def __init__(self, m: int, n: int, k: int, num_groups: int, d_dtype: torch.dtype, cfg: GemmConfig,
                 accumulate: bool, k_grouped: bool, device_index: int) -> None:
        super().__init__(kernel_spec(n, k, cfg, accumulate, k_grouped), device_index)
        self.m, self.n, self.k, self.num_groups, self.d_dtype = m, n, k, num_groups, d_dtype
        self.k_grouped = k_grouped

    def encode(self, A: torch.Tensor, B: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor,
               d: torch.Tensor) -> tuple[TmaDescriptor, ...]:
        m, n, k, cfg = self.m, self.n, self.k, self.cfg
        k_blocks = k // BLOCK_K
        return (
            make_tma_descriptor(A.data_ptr(), _FP8, (k, m), (A.stride(0),), (BLOCK_K, cfg.block_m), 128),
            make_tma_descriptor(B.data_ptr(), _FP8, (k, n), (B.stride(0),), (BLOCK_K, cfg.block_n), 128),
            make_tma_descriptor(sa.data_ptr(), torch.float32, (m, k_blocks), (sa.stride(1) * 4,),
                                (cfg.block_m, 1), 0),
            make_tma_descriptor(sb.data_ptr(), torch.float32, (n, k_blocks), (sb.stride(1) * 4,),
                                (cfg.block_n, 1), 0),
            d_tensor_map(d, n, m, self.num_groups, self.k_grouped, cfg),
        )


_dense_plans = PlanCache(max_plans=4096)
_k_grouped_plans = PlanCache(max_plans=1024)


def _run(plan: _Plan, A: torch.Tensor, sa: torch.Tensor, B: torch.Tensor, sb: torch.Tensor, d: torch.Tensor,
         c: torch.Tensor | None, ks: torch.Tensor | None) -> None:
    # Both operands' scales are read as TMA boxes of (rows, 1 k-block): MN-major, 16-byte aligned. Not
    # cached across calls: scales are new each call (and a cache would go stale under CUDA-graph replays).
    sa = get_mn_major_tma_aligned_tensor(sa)
    sb = get_mn_major_tma_aligned_tensor(sb)
    out = d if _tma_storable(d) else _padded_like(d)
    if c is not None and not _same_view(c, out):
        out.copy_(c)  # the kernel adds to D: C first (c may be d while `out` is a padded buffer)
    key = (A.data_ptr(), A.stride(0), B.data_ptr(), B.stride(0), sa.data_ptr(), sa.stride(), sb.data_ptr(),
           sb.stride(), out.data_ptr(), out.stride())
    tmaps = plan.tensor_maps(key, A, B, sa, sb, out)
    plan.launch(plan.m, plan.num_groups, 0 if ks is None else ks.data_ptr(), plan.k // BLOCK_K, *tmaps)
    if out is not d:
        d.copy_(out)


def _tma_storable(d: torch.Tensor) -> bool:
    """Whether TMA can store D in place: every stride but the innermost a multiple of 16 bytes, a
    16-byte-aligned start (the op has checked that rows are contiguous and do not overlap), and rows that
    end on a 16-byte boundary: a TMA store writes whole 16-byte units of a row, so the bytes between a
    ragged row's end and the next unit (another tensor's, in a strided view) would be overwritten."""
    per_16_bytes = TMA_ALIGNMENT_BYTES // d.element_size()
    return (d.data_ptr() % TMA_ALIGNMENT_BYTES == 0 and d.shape[-1] % per_16_bytes == 0
            and all(s % per_16_bytes == 0 for s in d.stride()[:-1]))


def _padded_like(d: torch.Tensor) -> torch.Tensor:
    """A view of `d`'s shape into a fresh buffer whose rows are padded to 16 bytes."""
    n = d.shape[-1]
    buffer = torch.empty(*d.shape[:-1], align(n, TMA_ALIGNMENT_BYTES // d.element_size()), dtype=d.dtype,
                         device=d.device)
    return buffer[..., :n]


def _same_view(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x is y or (x.data_ptr() == y.data_ptr() and x.stride() == y.stride() and x.shape == y.shape)
