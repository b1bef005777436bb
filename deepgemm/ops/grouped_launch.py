"""GPU path of the MoE grouped FP8 GEMMs: choose the config, encode the tensor maps, launch.

The grouped GEMMs run the dense kernel (`fp8_launch`) with another `GemmKind`: its scheduler reads
each tile's expert from the index tensor on the GPU, so nothing here reads index values (no host
sync; the masked call can be captured in a CUDA graph). Inputs arrive validated by
`grouped_fp8_gemm.py`, with every size (rows, N, K, groups) positive.

Tensor maps: B [G, N, K] is read as one [G * N, K] matrix (its experts lie back to back). The
contiguous layouts see A, its scales and D as the 2-D tensors they are; the masked layout reads them
as 3-D [G, max_m, ...], so each group's rows end at max_m for TMA (zero-filled loads, clipped stores)
and never run into the next group.
"""

from __future__ import annotations

import torch

from ..cuda.tma import TmaDescriptor, make_tma_descriptor
from ..heuristics.config import BLOCK_K, CONTIGUOUS, MASKED, GemmConfig, GemmShape
from ..quant.layout import TMA_ALIGNMENT_BYTES, align, ceil_div, get_mn_major_tma_aligned_tensor
from .fp8_launch import (
    D_STORE_ROWS,
    GEMM_KIND_CONTIGUOUS_ENDS,
    GEMM_KIND_CONTIGUOUS_INDICES,
    GEMM_KIND_MASKED,
    choose_config,
    kernel_launcher,
)
from .settings import num_sms_for

_FP8 = torch.float8_e4m3fn
_LAYOUTS = {GEMM_KIND_CONTIGUOUS_INDICES: CONTIGUOUS, GEMM_KIND_CONTIGUOUS_ENDS: CONTIGUOUS,
            GEMM_KIND_MASKED: MASKED}
_MAX_PLANS = 1024
_MAX_TMAPS_PER_PLAN = 64


# `config`, where given, overrides the heuristic (tuning tools only).


def launch_m_grouped_contiguous(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
                                d: torch.Tensor, m_indices: torch.Tensor, device_index: int,
                                config: GemmConfig | None = None) -> None:
    """Enqueues the contiguous-layout grouped GEMM with per-row expert indices `m_indices` [M_sum]."""
    _launch(GEMM_KIND_CONTIGUOUS_INDICES, A.shape[0], A, sfa, B, sfb, d, m_indices, device_index, config)


def launch_m_grouped_contiguous_offsets(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor,
                                        sfb: torch.Tensor, d: torch.Tensor, group_ends: torch.Tensor,
                                        device_index: int, config: GemmConfig | None = None) -> None:
    """Enqueues the contiguous-layout grouped GEMM with per-expert running row ends `group_ends` [G]."""
    _launch(GEMM_KIND_CONTIGUOUS_ENDS, A.shape[0], A, sfa, B, sfb, d, group_ends, device_index, config)


def launch_m_grouped_masked(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
                            d: torch.Tensor, masked_m: torch.Tensor, expected_m: int,
                            device_index: int, config: GemmConfig | None = None) -> None:
    """Enqueues the masked-layout grouped GEMM; `expected_m` rows per group only guide the config."""
    _launch(GEMM_KIND_MASKED, expected_m, A, sfa, B, sfb, d, masked_m, device_index, config)


def _launch(kind: str, config_m: int, A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
            d: torch.Tensor, grouped_layout: torch.Tensor, device_index: int,
            config: GemmConfig | None) -> None:
    num_groups, n, k = B.shape
    rows = A.shape[-2]
    if config is not None:
        if not config.grouped:
            raise ValueError("config must be made for a grouped shape (GemmConfig.grouped): the grouped "
                             "kernels keep a tile slot per stage in shared memory")
        _GroupedPlan(kind, rows, n, k, num_groups, d.dtype, config, device_index).run(
            A, sfa, B, sfb, d, grouped_layout)
        return
    num_sms = num_sms_for(device_index)
    key = (kind, config_m, rows, n, k, num_groups, d.dtype, num_sms, device_index)
    plan = _plans.get(key)
    if plan is None:
        layout = _LAYOUTS[kind]
        cfg = choose_config(GemmShape(config_m, n, k, d.element_size(), num_groups, layout), num_sms)
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()
        plan = _plans[key] = _GroupedPlan(kind, rows, n, k, num_groups, d.dtype, cfg, device_index)
    plan.run(A, sfa, B, sfb, d, grouped_layout)


class _GroupedPlan:
    """What launches of one grouped problem share: the config, the launcher, and the tensor maps
    memoised by the tensors' addresses and strides."""

    def __init__(self, kind: str, rows: int, n: int, k: int, num_groups: int, d_dtype: torch.dtype,
                 cfg: GemmConfig, device_index: int) -> None:
        self.rows, self.n, self.k, self.num_groups, self.d_dtype = rows, n, k, num_groups, d_dtype
        self.cfg = cfg
        self.is_masked = kind == GEMM_KIND_MASKED
        self.launch = kernel_launcher(n, k, cfg, device_index, kind)
        self.slab_cols = cfg.d_store_cols
        self.tmaps: dict[tuple[int, ...], tuple[TmaDescriptor, ...]] = {}

    def run(self, A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor, d: torch.Tensor,
            grouped_layout: torch.Tensor) -> None:
        # The kernel reads A's scales by TMA boxes of (rows, 1 k-block): MN-major, 16-byte aligned.
        sfa = get_mn_major_tma_aligned_tensor(sfa)
        key = (A.data_ptr(), *A.stride(), B.data_ptr(), *B.stride(), sfa.data_ptr(), *sfa.stride(),
               d.data_ptr(), *d.stride())
        tmaps = self.tmaps.get(key)
        if tmaps is None:
            if len(self.tmaps) >= _MAX_TMAPS_PER_PLAN:
                self.tmaps.clear()
            tmaps = self.tmaps[key] = self._encode(A, B, sfa, d)
        d_row_bytes = d.stride(-2) * d.element_size()
        d_group_bytes = d.stride(0) * d.element_size() if self.is_masked else 0
        self.launch(self.rows, self.num_groups, grouped_layout.data_ptr(), sfb.data_ptr(), d.data_ptr(),
                    d_row_bytes, d_group_bytes, *tmaps)

    def _encode(self, A: torch.Tensor, B: torch.Tensor, sfa: torch.Tensor,
                d: torch.Tensor) -> tuple[TmaDescriptor, ...]:
        rows, n, k, cfg = self.rows, self.n, self.k, self.cfg
        k_blocks = ceil_div(k, BLOCK_K)
        # The experts' matrices lie back to back (validated): one [G * N, K] map. A tile past an
        # expert's last row reads the next expert's rows into columns that are never stored.
        tmap_b = make_tma_descriptor(B.data_ptr(), _FP8, (k, n * self.num_groups), (B.stride(1),),
                                     (BLOCK_K, cfg.block_n), 128)
        if not self.is_masked:
            return (
                make_tma_descriptor(A.data_ptr(), _FP8, (k, rows), (A.stride(0),), (BLOCK_K, cfg.block_m),
                                    128),
                tmap_b,
                make_tma_descriptor(sfa.data_ptr(), torch.float32, (rows, k_blocks), (sfa.stride(1) * 4,),
                                    (cfg.block_m, 1), 0),
                make_tma_descriptor(d.data_ptr(), self.d_dtype, (n, rows), (d.stride(0) * d.element_size(),),
                                    (self.slab_cols, D_STORE_ROWS), cfg.swizzle_d_bytes),
            )
        groups = self.num_groups
        return (
            make_tma_descriptor(A.data_ptr(), _FP8, (k, rows, groups),
                                (A.stride(1), group_stride_bytes(A, groups)), (BLOCK_K, cfg.block_m, 1), 128),
            tmap_b,
            make_tma_descriptor(sfa.data_ptr(), torch.float32, (rows, k_blocks, groups),
                                (sfa.stride(2) * 4, sfa.stride(0) * 4), (cfg.block_m, 1, 1), 0),
            make_tma_descriptor(d.data_ptr(), self.d_dtype, (n, rows, groups),
                                (d.stride(1) * d.element_size(), group_stride_bytes(d, groups)),
                                (self.slab_cols, D_STORE_ROWS, 1), cfg.swizzle_d_bytes),
        )


def group_stride_bytes(tensor: torch.Tensor, num_groups: int) -> int:
    """Bytes between the groups of a [G, rows, cols] tensor, for a 3-D tensor map. With one group torch
    may report any stride (even 0) for the size-1 dim; TMA then gets the group's own span instead."""
    if num_groups > 1:
        return tensor.stride(0) * tensor.element_size()
    return align(tensor.shape[1] * tensor.stride(1) * tensor.element_size(), TMA_ALIGNMENT_BYTES)


_plans: dict[tuple, _GroupedPlan] = {}
