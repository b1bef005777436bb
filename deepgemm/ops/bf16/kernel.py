"""GPU path of the 16-bit GEMMs: the kernel spec, the tensor maps, the launches (dense and grouped).

Inputs arrive validated by `gemm.py` (dtypes, shapes, strides, devices, every size > 0).

Tensor maps: a K-major operand ([rows, K]) is read in boxes of BLOCK_K x rows-of-the-tile; an
MN-major one (stored [K, rows]) in 64-wide chunks, each a box of 64 x BLOCK_K. The grouped kinds read
B [G, N, K] as one [G * N, K] matrix, and the masked kind A and D as 3-D [G, max_m, ...] maps.
"""

from __future__ import annotations

import torch

from ...cuda.tma import TmaDescriptor, make_tma_descriptor
from ...heuristics import BF16, GemmConfig, GemmShape
from ...heuristics.config import DENSE, MASKED, MN_MAJOR_CHUNK
from ...heuristics.families.bf16 import BLOCK_K
from ...jit import ParamType
from ..common.launch import (
    GEMM_KIND_CONTIGUOUS_INDICES,
    GEMM_KIND_DENSE,
    GEMM_KIND_MASKED,
    OUT_TYPES,
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

KERNEL = "deepgemm::sm90_bf16_gemm"
HEADER = "deepgemm/impls/sm90_bf16_gemm.cuh"
# (shape_m, num_groups, grouped_layout, c, c_row_bytes, d, d_row_bytes, d_group_bytes, tmap_a, tmap_b,
# tmap_d), as in the kernel's signature. Split-K passes the workspace as d (ops/common/split_k.py) and C to
# the reduction instead.
PARAM_TYPES = (ParamType.U32, ParamType.U32, ParamType.PTR, ParamType.PTR, ParamType.U64, ParamType.PTR,
               ParamType.U64, ParamType.U64, ParamType.TMA, ParamType.TMA, ParamType.TMA)


def kernel_spec(n: int, k: int, cfg: GemmConfig, a_mn_major: bool, b_mn_major: bool, is_fp16: bool,
                out_dtype: torch.dtype, has_c: bool, kind: str = GEMM_KIND_DENSE) -> KernelSpec:
    """`sm90_bf16_gemm` for (N, K, config), the storage majors, the operand and output dtypes, whether
    it adds C, and the kind."""
    template_args = (n, k, cfg.block_m, cfg.block_n, cfg.num_stages, cfg.num_tma_multicast,
                     cfg.multicast_on_a, a_mn_major, b_mn_major, is_fp16, OUT_TYPES[out_dtype], has_c,
                     cfg.swizzle_d_bytes, cfg.num_d_chunks, cfg.load_batch, kind, cfg.split_k)
    layout = f"{'t' if a_mn_major else 'n'}{'n' if b_mn_major else 't'}"
    comment = (f"{kind.rsplit(':', 1)[-1]} n={n}, k={k}, {'fp16' if is_fp16 else 'bf16'}, {layout}, "
               f"out={out_dtype}, c={has_c}\n{cfg.kernel_repr()}")
    return KernelSpec(KERNEL, HEADER, template_args, PARAM_TYPES, cfg, cfg.smem_bytes(k), comment)


def kernel_specs(request: KernelRequest, num_sms: int) -> list[KernelSpec]:
    """The kernel the launches below load for `request` on `num_sms` SMs (ahead-of-time compilation)."""
    n, k, out_dtype = request.n, request.k, request.out_dtype
    is_fp16 = request.in_dtype == torch.float16
    if request.layout == DENSE:
        a_mn_major, b_mn_major = request.major[0] == "t", request.major[1] == "n"
        shape = GemmShape(request.m, n, k, out_dtype.itemsize, family=BF16, b_mn_major=b_mn_major)
        cfg = choose_config(shape, num_sms)
        if cfg.split_k == 1:
            return [kernel_spec(n, k, cfg, a_mn_major, b_mn_major, is_fp16, out_dtype, request.has_c)]
        # As `launch_bf16_gemm`: a split kernel leaves C to the reduction, which its plan loads too.
        return [kernel_spec(n, k, cfg, a_mn_major, b_mn_major, is_fp16, out_dtype, False),
                reduce_kernel_spec(cfg.split_k, out_dtype, request.has_c, request.m, n, cfg.num_sms)]
    kind = GEMM_KIND_MASKED if request.layout == MASKED else GEMM_KIND_CONTIGUOUS_INDICES
    cfg = grouped_config(None, BF16, kind, request.m, n, k, request.num_groups, out_dtype.itemsize, num_sms)
    return [kernel_spec(n, k, cfg, False, False, is_fp16, out_dtype, False, kind)]


def launch_bf16_gemm(layout: str, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor, c: torch.Tensor | None,
                     m: int, n: int, k: int, device_index: int, config: GemmConfig | None = None) -> _Plan:
    """Enqueues D = C + A·B for the storage `layout` ("nt", "nn", "tn" or "tt"); returns the plan it ran,
    whose `run_dense` launches it again for arguments of the same sizes. `config` overrides the
    heuristic (tuning tools only)."""
    a_mn_major, b_mn_major = layout[0] == "t", layout[1] == "n"
    num_sms = num_sms_for(device_index)
    key = (layout, m, n, k, A.dtype, d.dtype, c is not None, config, num_sms, device_index)
    plan = _plans.get(key)
    if plan is None:
        shape = GemmShape(m, n, k, d.element_size(), family=BF16, b_mn_major=b_mn_major)
        cfg = config or choose_config(shape, num_sms)
        is_fp16, has_c = A.dtype == torch.float16, c is not None
        # A split kernel leaves C to the reduction.
        spec = kernel_spec(n, k, cfg, a_mn_major, b_mn_major, is_fp16, d.dtype, has_c and cfg.split_k == 1)
        split = None
        if cfg.split_k > 1:
            split = SplitK(cfg.split_k, m, n, d.dtype, has_c, cfg.num_sms, device_index)
        plan = _plans.remember(key, _Plan(spec, device_index, GEMM_KIND_DENSE, m, n, k, 1, a_mn_major,
                                          b_mn_major, split))
    c_ptr, c_row_bytes = (c.data_ptr(), c.stride(0) * c.element_size()) if c is not None else (0, 0)
    plan.run(A, B, d, 0, c_ptr, c_row_bytes)
    return plan


def launch_m_grouped_bf16_contiguous(A: torch.Tensor, B: torch.Tensor, d: torch.Tensor,
                                     m_indices: torch.Tensor, device_index: int,
                                     config: GemmConfig | None = None) -> None:
    """Enqueues the contiguous-layout grouped GEMM with per-row expert indices `m_indices` [M_sum]."""
    _launch_grouped(GEMM_KIND_CONTIGUOUS_INDICES, A.shape[0], A, B, d, m_indices, device_index, config)


def launch_m_grouped_bf16_masked(A: torch.Tensor, B: torch.Tensor, d: torch.Tensor, masked_m: torch.Tensor,
                                 expected_m: int, device_index: int,
                                 config: GemmConfig | None = None) -> None:
    """Enqueues the masked-layout grouped GEMM; `expected_m` rows per group only guide the config."""
    _launch_grouped(GEMM_KIND_MASKED, expected_m, A, B, d, masked_m, device_index, config)


def _launch_grouped(kind: str, config_m: int, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor,
                    grouped_layout: torch.Tensor, device_index: int, config: GemmConfig | None) -> None:
    num_groups, n, k = B.shape
    rows = A.shape[-2]
    num_sms = num_sms_for(device_index)
    key = (kind, config_m, rows, n, k, num_groups, A.dtype, d.dtype, config, num_sms, device_index)
    plan = _plans.get(key)
    if plan is None:
        cfg = grouped_config(config, BF16, kind, config_m, n, k, num_groups, d.element_size(), num_sms)
        spec = kernel_spec(n, k, cfg, False, False, A.dtype == torch.float16, d.dtype, False, kind)
        plan = _plans.remember(key, _Plan(spec, device_index, kind, rows, n, k, num_groups, False, False))
    plan.run(A, B, d, grouped_layout.data_ptr(), 0, 0)


class _Plan(Plan):
    __slots__ = ("rows", "n", "k", "num_groups", "a_mn_major", "b_mn_major", "is_masked", "split")

    def __init__(self, spec: KernelSpec, device_index: int, kind: str, rows: int, n: int, k: int,
                 num_groups: int, a_mn_major: bool, b_mn_major: bool, split: SplitK | None = None) -> None:
        super().__init__(spec, device_index)
        self.rows, self.n, self.k, self.num_groups = rows, n, k, num_groups
        self.a_mn_major, self.b_mn_major = a_mn_major, b_mn_major
        self.is_masked = kind == GEMM_KIND_MASKED
        self.split = split

    def run(self, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor, grouped_layout_ptr: int, c_ptr: int,
            c_row_bytes: int) -> None:
        key = (A.data_ptr(), *A.stride(), B.data_ptr(), *B.stride(), d.data_ptr(), *d.stride())
        tmaps = self.tensor_maps(key, A, B, d)
        if self.split is None:
            self.launch(self.rows, self.num_groups, grouped_layout_ptr, c_ptr, c_row_bytes, d.data_ptr(),
                        *d_stride_args(d, self.is_masked), *tmaps)
        else:
            self.split.run(self.launch, (self.rows, 1, 0, 0, 0), tmaps, c_ptr, c_row_bytes, d.data_ptr(),
                           d.stride(0) * d.element_size())

    def run_dense(self, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor, a_ptr: int, a_strides: tuple,
                  b_ptr: int, b_strides: tuple, d_ptr: int, d_strides: tuple, d_row_bytes: int, c_ptr: int,
                  c_row_bytes: int) -> None:
        """`run` of a dense plan on checked arguments of its sizes whose addresses and strides the
        caller has read (the cached path of the ops: each tensor attribute once per call)."""
        key = (a_ptr, *a_strides, b_ptr, *b_strides, d_ptr, *d_strides)
        tmaps = self.tmaps.get(key) or self.tensor_maps(key, A, B, d)  # the memo read here: one call less
        if self.split is None:
            self.launch(self.rows, 1, 0, c_ptr, c_row_bytes, d_ptr, d_row_bytes, 0, *tmaps)
        else:
            self.split.run(self.launch, (self.rows, 1, 0, 0, 0), tmaps, c_ptr, c_row_bytes, d_ptr,
                           d_row_bytes)

    def encode(self, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor) -> tuple[TmaDescriptor, ...]:
        cfg, rows, n, k = self.cfg, self.rows, self.n, self.k
        if self.is_masked:
            groups = self.num_groups
            tmap_a = make_tma_descriptor(A.data_ptr(), A.dtype, (k, rows, groups),
                                         (A.stride(1) * 2, group_stride_bytes(A, groups)),
                                         (BLOCK_K, cfg.block_m, 1), 128)
        else:
            tmap_a = _operand_map(A, rows, k, cfg.block_m, self.a_mn_major)
        tmap_d = d_tensor_map(d, n, rows, self.num_groups, self.is_masked, cfg)
        # Grouped: the experts' matrices lie back to back (validated), one [G * N, K] map.
        tmap_b = _operand_map(B, n * self.num_groups, k, cfg.block_n, self.b_mn_major)
        return tmap_a, tmap_b, tmap_d


_plans = PlanCache(max_plans=4096)


def _operand_map(tensor: torch.Tensor, rows: int, k: int, block_rows: int, mn_major: bool) -> TmaDescriptor:
    """The 2-D map of an operand with `rows` M (or N) rows: stored [rows, K] (K-major) or [K, rows]."""
    row_bytes = tensor.stride(-2) * tensor.element_size()
    if mn_major:
        return make_tma_descriptor(tensor.data_ptr(), tensor.dtype, (rows, k), (row_bytes,),
                                   (MN_MAJOR_CHUNK, BLOCK_K), 128)
    return make_tma_descriptor(tensor.data_ptr(), tensor.dtype, (k, rows), (row_bytes,),
                               (BLOCK_K, block_rows), 128)
