"""GPU path of the 16-bit GEMMs: choose the config, get the kernel, encode the tensor maps, launch.

Inputs arrive validated by `bf16_gemm.py` (dtypes, shapes, strides, devices, every size > 0). One
plan per problem holds the config, the launcher and the tensor maps memoised by the tensors'
addresses and strides, so a repeated call costs a dict lookup or two and the launch.

Tensor maps: a K-major operand ([rows, K]) is read in boxes of BLOCK_K x rows-of-the-tile; an
MN-major one (stored [K, rows]) in 64-wide chunks, each a box of 64 x BLOCK_K. The grouped kinds read
B [G, N, K] as one [G * N, K] matrix, and the masked kind A and D as 3-D [G, max_m, ...] maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from ..cuda.tma import TmaDescriptor, make_tma_descriptor
from ..heuristics.config import (
    BLOCK_K_BYTES,
    CONTIGUOUS,
    MASKED,
    MN_MAJOR_CHUNK,
    GemmConfig,
    GemmShape,
)
from ..jit import ParamType, get_kernel
from .fp8_launch import (
    D_STORE_ROWS,
    GEMM_KIND_CONTIGUOUS_INDICES,
    GEMM_KIND_DENSE,
    GEMM_KIND_MASKED,
    choose_config,
)
from .grouped_launch import group_stride_bytes
from .settings import num_sms_for

KERNEL = "deepgemm::sm90_bf16_gemm"
HEADER = "deepgemm/impls/sm90_bf16_gemm.cuh"
BLOCK_K = BLOCK_K_BYTES // 2
# (shape_m, num_groups, grouped_layout, c, c_row_bytes, d, d_row_bytes, d_group_bytes, tmap_a, tmap_b,
# tmap_d), as in the kernel's signature.
PARAM_TYPES = (
    ParamType.U32,
    ParamType.U32,
    ParamType.PTR,
    ParamType.PTR,
    ParamType.U64,
    ParamType.PTR,
    ParamType.U64,
    ParamType.U64,
    ParamType.TMA,
    ParamType.TMA,
    ParamType.TMA,
)
OUT_TYPES = {
    torch.bfloat16: "deepgemm::OutType::BF16",
    torch.float16: "deepgemm::OutType::FP16",
    torch.float32: "deepgemm::OutType::FP32",
}

_MAX_PLANS = 4096
_MAX_TMAPS_PER_PLAN = 64


@dataclass(frozen=True)
class Bf16Kernel:
    """One instantiation of `sm90_bf16_gemm`: what the kernel computes and its config."""

    n: int
    k: int
    cfg: GemmConfig
    a_mn_major: bool
    b_mn_major: bool
    is_fp16: bool
    out_dtype: torch.dtype
    has_c: bool
    kind: str = GEMM_KIND_DENSE

    def template_args(self) -> tuple[int | bool | str, ...]:
        """Template arguments of `sm90_bf16_gemm`, in its declaration order."""
        cfg = self.cfg
        return (self.n, self.k, cfg.block_m, cfg.block_n, cfg.num_stages, cfg.num_tma_multicast,
                cfg.multicast_on_a, self.a_mn_major, self.b_mn_major, self.is_fp16, OUT_TYPES[self.out_dtype],
                self.has_c, cfg.swizzle_d_bytes, cfg.num_d_chunks, cfg.load_batch, self.kind)

    def comment(self) -> str:
        """The JIT stub's comment: what the kernel computes and its config without the launch grid."""
        layout = f"{'t' if self.a_mn_major else 'n'}{'n' if self.b_mn_major else 't'}"
        dtype = "fp16" if self.is_fp16 else "bf16"
        return (f"{self.kind.rsplit(':', 1)[-1]} n={self.n}, k={self.k}, {dtype}, {layout}, "
                f"out={self.out_dtype}, c={self.has_c}\n{self.cfg.kernel_repr()}")


@lru_cache(maxsize=1024)
def kernel_launcher(spec: Bf16Kernel, device: int):
    """The compiled kernel `spec`, ready to launch on CUDA device `device`."""
    cfg = spec.cfg
    kernel = get_kernel(KERNEL, HEADER, spec.template_args(), comment=spec.comment())
    return kernel.launcher(
        PARAM_TYPES,
        grid=cfg.num_sms,
        block=cfg.num_threads,
        smem=cfg.smem_bytes(spec.k),
        cluster=cfg.num_tma_multicast,
        device=device,
    )


def launch_bf16_gemm(
    layout: str,
    A: torch.Tensor,
    B: torch.Tensor,
    d: torch.Tensor,
    c: torch.Tensor | None,
    m: int,
    n: int,
    k: int,
    device_index: int,
    config: GemmConfig | None = None,
) -> None:
    """Enqueues D = C + A·B for the storage `layout` ("nt", "nn", "tn" or "tt"). `config` overrides the
    heuristic (tuning tools only)."""
    a_mn_major, b_mn_major = layout[0] == "t", layout[1] == "n"
    num_sms = num_sms_for(device_index)
    key = (layout, m, n, k, A.dtype, d.dtype, c is not None, config, num_sms, device_index)
    plan = _plans.get(key)
    if plan is None:
        shape = GemmShape(m, n, k, d.element_size(), ab_bytes=2, b_mn_major=b_mn_major)
        cfg = config or choose_config(shape, num_sms)
        spec = Bf16Kernel(n, k, cfg, a_mn_major, b_mn_major, A.dtype == torch.float16, d.dtype, c is not None)
        launch = kernel_launcher(spec, device_index)
        plan = _remember(key, _Plan(GEMM_KIND_DENSE, m, n, k, 1, a_mn_major, b_mn_major, cfg, launch))
    c_ptr, c_row_bytes = (c.data_ptr(), c.stride(0) * c.element_size()) if c is not None else (0, 0)
    plan.run(A, B, d, 0, c_ptr, c_row_bytes)


def launch_m_grouped_bf16_contiguous(
    A: torch.Tensor,
    B: torch.Tensor,
    d: torch.Tensor,
    m_indices: torch.Tensor,
    device_index: int,
    config: GemmConfig | None = None,
) -> None:
    """Enqueues the contiguous-layout grouped GEMM with per-row expert indices `m_indices` [M_sum]."""
    _launch_grouped(GEMM_KIND_CONTIGUOUS_INDICES, A.shape[0], A, B, d, m_indices, device_index, config)


def launch_m_grouped_bf16_masked(
    A: torch.Tensor,
    B: torch.Tensor,
    d: torch.Tensor,
    masked_m: torch.Tensor,
    expected_m: int,
    device_index: int,
    config: GemmConfig | None = None,
) -> None:
    """Enqueues the masked-layout grouped GEMM; `expected_m` rows per group only guide the config."""
    _launch_grouped(GEMM_KIND_MASKED, expected_m, A, B, d, masked_m, device_index, config)


def _launch_grouped(
    kind: str,
    config_m: int,
    A: torch.Tensor,
    B: torch.Tensor,
    d: torch.Tensor,
    grouped_layout: torch.Tensor,
    device_index: int,
    config: GemmConfig | None,
) -> None:
    num_groups, n, k = B.shape
    rows = A.shape[-2]
    num_sms = num_sms_for(device_index)
    key = (kind, config_m, rows, n, k, num_groups, A.dtype, d.dtype, config, num_sms, device_index)
    plan = _plans.get(key)
    if plan is None:
        layout = MASKED if kind == GEMM_KIND_MASKED else CONTIGUOUS
        shape = GemmShape(config_m, n, k, d.element_size(), num_groups, layout, ab_bytes=2)
        cfg = config or choose_config(shape, num_sms)
        if not cfg.grouped:
            raise ValueError(
                "config must be made for a grouped shape (GemmConfig.grouped): the grouped "
                "kernels keep a tile slot per stage in shared memory"
            )
        spec = Bf16Kernel(n, k, cfg, False, False, A.dtype == torch.float16, d.dtype, False, kind)
        launch = kernel_launcher(spec, device_index)
        plan = _remember(key, _Plan(kind, rows, n, k, num_groups, False, False, cfg, launch))
    plan.run(A, B, d, grouped_layout.data_ptr(), 0, 0)


_plans: dict[tuple, _Plan] = {}


def _remember(key: tuple, plan: _Plan) -> _Plan:
    if len(_plans) >= _MAX_PLANS:
        _plans.clear()
    _plans[key] = plan
    return plan


class _Plan:
    """What launches of one problem share: the config, the launcher, the tensor maps by address."""

    def __init__(
        self,
        kind: str,
        rows: int,
        n: int,
        k: int,
        num_groups: int,
        a_mn_major: bool,
        b_mn_major: bool,
        cfg: GemmConfig,
        launch,
    ) -> None:
        self.kind, self.rows, self.n, self.k, self.num_groups = kind, rows, n, k, num_groups
        self.a_mn_major, self.b_mn_major, self.cfg, self.launch = a_mn_major, b_mn_major, cfg, launch
        self.is_masked = kind == GEMM_KIND_MASKED
        self.tmaps: dict[tuple[int, ...], tuple[TmaDescriptor, ...]] = {}

    def run(
        self,
        A: torch.Tensor,
        B: torch.Tensor,
        d: torch.Tensor,
        grouped_layout_ptr: int,
        c_ptr: int,
        c_row_bytes: int,
    ) -> None:
        key = (A.data_ptr(), *A.stride(), B.data_ptr(), *B.stride(), d.data_ptr(), *d.stride())
        tmaps = self.tmaps.get(key)
        if tmaps is None:
            if len(self.tmaps) >= _MAX_TMAPS_PER_PLAN:
                self.tmaps.clear()
            tmaps = self.tmaps[key] = self._encode(A, B, d)
        d_row_bytes = d.stride(-2) * d.element_size()
        d_group_bytes = d.stride(0) * d.element_size() if self.is_masked else 0
        self.launch(
            self.rows,
            self.num_groups,
            grouped_layout_ptr,
            c_ptr,
            c_row_bytes,
            d.data_ptr(),
            d_row_bytes,
            d_group_bytes,
            *tmaps,
        )

    def _encode(self, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor) -> tuple[TmaDescriptor, ...]:
        cfg, rows, n, k = self.cfg, self.rows, self.n, self.k
        slab_cols = cfg.d_store_cols
        if self.is_masked:
            groups = self.num_groups
            tmap_a = make_tma_descriptor(
                A.data_ptr(),
                A.dtype,
                (k, rows, groups),
                (A.stride(1) * 2, group_stride_bytes(A, groups)),
                (BLOCK_K, cfg.block_m, 1),
                128,
            )
            tmap_d = make_tma_descriptor(
                d.data_ptr(),
                d.dtype,
                (n, rows, groups),
                (d.stride(1) * d.element_size(), group_stride_bytes(d, groups)),
                (slab_cols, D_STORE_ROWS, 1),
                cfg.swizzle_d_bytes,
            )
        else:
            tmap_a = _operand_map(A, rows, k, cfg.block_m, self.a_mn_major)
            tmap_d = make_tma_descriptor(
                d.data_ptr(),
                d.dtype,
                (n, rows),
                (d.stride(0) * d.element_size(),),
                (slab_cols, D_STORE_ROWS),
                cfg.swizzle_d_bytes,
            )
        # Grouped: the experts' matrices lie back to back (validated), one [G * N, K] map.
        tmap_b = _operand_map(B, n * self.num_groups, k, cfg.block_n, self.b_mn_major)
        return tmap_a, tmap_b, tmap_d


def _operand_map(tensor: torch.Tensor, rows: int, k: int, block_rows: int, mn_major: bool) -> TmaDescriptor:
    """The 2-D map of an operand with `rows` M (or N) rows: stored [rows, K] (K-major) or [K, rows]."""
    row_bytes = tensor.stride(-2) * tensor.element_size()
    if mn_major:
        return make_tma_descriptor(
            tensor.data_ptr(), tensor.dtype, (rows, k), (row_bytes,), (MN_MAJOR_CHUNK, BLOCK_K), 128
        )
    return make_tma_descriptor(
        tensor.data_ptr(), tensor.dtype, (k, rows), (row_bytes,), (BLOCK_K, block_rows), 128
    )
