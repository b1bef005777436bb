"""GPU path of the INT8 GEMMs: the kernel spec, the tensor maps, the launches (dense and grouped).

Inputs arrive validated by `gemm.py` (`Checked`: dtypes, shapes, strides, devices, every size > 0).

Tensor maps: A [rows, K] and B [N, K] in boxes of 128 K (one 128-byte line) by the tile's rows; D in boxes
of 64 rows. The grouped kinds read B [G, N, K] as one [G * N, K] matrix, and the masked kind A and D as 3-D
[G, max_m, ...] maps. The epilogue's vectors (scales, bias, zero points, column sums) are passed as
pointers with their strides (`gemm.Vector`): the kernel reads them from global memory.
"""

from __future__ import annotations

import torch

from ...cuda.tma import TmaDescriptor, make_tma_descriptor
from ...heuristics import INT8, GemmConfig, GemmShape
from ...heuristics.families.int8 import BLOCK_K
from ...jit import ParamType
from ..common.launch import (
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
)
from ..common.settings import num_sms_for
from .gemm import Checked, Vector

KERNEL = "deepgemm::sm90_int8_gemm"
HEADER = "deepgemm/impls/sm90_int8_gemm.cuh"
_U32, _PTR = ParamType.U32, ParamType.PTR
# (shape_m, num_groups, grouped_layout, sa, sa_group_stride, sa_row_stride, sb, sb_group_stride,
# sb_col_stride, bias, bias_group_stride, zp, zp_group_stride, zp_row_stride, b_sums, b_sums_group_stride, d,
# d_row_bytes, d_group_bytes, tmap_a, tmap_b, tmap_d), as in the kernel's signature.
PARAM_TYPES = (
    _U32,
    _U32,
    _PTR,
    _PTR,
    _U32,
    _U32,
    _PTR,
    _U32,
    _U32,
    _PTR,
    _U32,
    _PTR,
    _U32,
    _U32,
    _PTR,
    _U32,
    _PTR,
    ParamType.U64,
    ParamType.U64,
    ParamType.TMA,
    ParamType.TMA,
    ParamType.TMA,
)
OUT_TYPES = {
    torch.bfloat16: "deepgemm::Int8Out::BF16",
    torch.float16: "deepgemm::Int8Out::FP16",
    torch.float32: "deepgemm::Int8Out::FP32",
    torch.int32: "deepgemm::Int8Out::Int32",
}
BIAS_TYPES = {
    None: "deepgemm::Int8Bias::None",
    torch.float32: "deepgemm::Int8Bias::FP32",
    torch.bfloat16: "deepgemm::Int8Bias::BF16",
    torch.float16: "deepgemm::Int8Bias::FP16",
}
_INT8 = torch.int8


def kernel_spec(
    n: int,
    k: int,
    cfg: GemmConfig,
    out_dtype: torch.dtype,
    bias_dtype: torch.dtype | None = None,
    has_azp: bool = False,
    kind: str = GEMM_KIND_DENSE,
) -> KernelSpec:
    """`sm90_int8_gemm` for (N, K, config), the output dtype, the bias dtype (None: no bias), whether it
    corrects for zero points, and the kind."""
    template_args = (
        n,
        k,
        cfg.block_m,
        cfg.block_n,
        cfg.num_stages,
        cfg.num_tma_multicast,
        cfg.multicast_on_a,
        OUT_TYPES[out_dtype],
        BIAS_TYPES[bias_dtype],
        has_azp,
        cfg.swizzle_d_bytes,
        cfg.num_d_chunks,
        cfg.load_batch,
        kind,
    )
    comment = (
        f"{kind.rsplit(':', 1)[-1]} n={n}, k={k}, out={out_dtype}, bias={bias_dtype}, azp={has_azp}\n"
        f"{cfg.kernel_repr()}"
    )
    return KernelSpec(KERNEL, HEADER, template_args, PARAM_TYPES, cfg, cfg.smem_bytes(k), comment)


def kernel_specs(request: KernelRequest, num_sms: int) -> list[KernelSpec]:
    """The kernels `_launch` loads for `request` on `num_sms` SMs (ahead-of-time compilation): the
    contiguous layout has two ops (per-row indices, group ends), hence two kinds."""
    r = request
    kinds = [kind for kind, layout in GROUPED_KIND_LAYOUTS.items() if layout == r.layout] or [GEMM_KIND_DENSE]
    num_groups = 1 if kinds == [GEMM_KIND_DENSE] else r.num_groups
    shape = GemmShape(r.m, r.n, r.k, r.out_dtype.itemsize, num_groups, r.layout, family=INT8)
    cfg = choose_config(shape, num_sms)
    return [kernel_spec(r.n, r.k, cfg, r.out_dtype, r.bias_dtype, r.has_azp, kind) for kind in kinds]


def launch_int8_gemm_nt(c: Checked, d: torch.Tensor, config: GemmConfig | None = None) -> None:
    """Enqueues the dense GEMM. `config` overrides the heuristic (tuning tools and tests only)."""
    _launch(GEMM_KIND_DENSE, c.A.shape[0], c, d, None, config)


def launch_m_grouped_int8_contiguous(
    c: Checked, d: torch.Tensor, m_indices: torch.Tensor, config: GemmConfig | None = None
) -> None:
    """Enqueues the contiguous-layout grouped GEMM with per-row expert indices `m_indices` [M_sum]."""
    _launch(GEMM_KIND_CONTIGUOUS_INDICES, c.A.shape[0], c, d, m_indices, config)


def launch_m_grouped_int8_contiguous_offsets(c: Checked, d: torch.Tensor, group_ends: torch.Tensor,
                                             config: GemmConfig | None = None) -> None:
    """Enqueues the contiguous-layout grouped GEMM with per-expert running row ends `group_ends` [G]."""
    _launch(GEMM_KIND_CONTIGUOUS_ENDS, c.A.shape[0], c, d, group_ends, config)


def launch_m_grouped_int8_masked(
    c: Checked, d: torch.Tensor, masked_m: torch.Tensor, expected_m: int, config: GemmConfig | None = None
) -> None:
    """Enqueues the masked-layout grouped GEMM; `expected_m` rows per group only guide the config."""
    _launch(GEMM_KIND_MASKED, expected_m, c, d, masked_m, config)


def _launch(
    kind: str,
    config_m: int,
    c: Checked,
    d: torch.Tensor,
    grouped_layout: torch.Tensor | None,
    config: GemmConfig | None,
) -> None:
    A, B = c.A, c.B
    num_groups = B.shape[0] if B.dim() == 3 else 1
    n, k = B.shape[-2:]
    rows = A.shape[-2]
    device_index = c.cuda_index
    num_sms = num_sms_for(device_index)
    bias_dtype = None if c.bias is None else c.bias.tensor.dtype
    has_azp = c.zp is not None
    key = (
        kind,
        config_m,
        rows,
        n,
        k,
        num_groups,
        d.dtype,
        bias_dtype,
        has_azp,
        config,
        num_sms,
        device_index,
    )
    plan = _plans.get(key)
    if plan is None:
        if config is None:
            layout = GROUPED_KIND_LAYOUTS.get(kind, "dense")
            shape = GemmShape(config_m, n, k, d.element_size(), num_groups, layout, family=INT8)
            config = choose_config(shape, num_sms)
        elif config.grouped != (kind != GEMM_KIND_DENSE):
            raise ValueError(
                "config must be made for the kind's layout (GemmConfig.grouped): the grouped "
                "kernels keep a tile slot per stage in shared memory"
            )
        spec = kernel_spec(n, k, config, d.dtype, bias_dtype, has_azp, kind)
        plan = _plans.remember(key, _Plan(spec, device_index, kind, rows, n, k, num_groups))
    plan.run(c, d, 0 if grouped_layout is None else grouped_layout.data_ptr())


def _ones(device_index: int) -> torch.Tensor:
    """A float32 1 on the device: the scale an operand without scales gets (read with stride 0)."""
    one = _ONES.get(device_index)
    if one is None:
        one = _ONES[device_index] = torch.ones(
            1, dtype=torch.float32, device=torch.device("cuda", device_index)
        )
    return one


_ONES: dict[int, torch.Tensor] = {}


def _vector_args(vector: Vector | None, strided: bool, device_index: int, default_one: bool = False) -> tuple:
    """(pointer, group stride[, index stride]) of an epilogue vector as the kernel takes them; absent: a null
    pointer, or with `default_one` the device's 1 read with stride 0."""
    if vector is None:
        ptr = _ones(device_index).data_ptr() if default_one else 0
        return (ptr, 0, 0) if strided else (ptr, 0)
    ptr = vector.tensor.data_ptr()
    return (ptr, vector.group_stride, vector.stride) if strided else (ptr, vector.group_stride)


class _Plan(Plan):
    __slots__ = ("rows", "n", "k", "num_groups", "is_masked")

    def __init__(
        self, spec: KernelSpec, device_index: int, kind: str, rows: int, n: int, k: int, num_groups: int
    ) -> None:
        super().__init__(spec, device_index)
        self.rows, self.n, self.k, self.num_groups = rows, n, k, num_groups
        self.is_masked = kind == GEMM_KIND_MASKED

    def run(self, c: Checked, d: torch.Tensor, grouped_layout_ptr: int) -> None:
        A, B = c.A, c.B
        key = (A.data_ptr(), *A.stride(), B.data_ptr(), *B.stride(), d.data_ptr(), *d.stride())
        tmaps = self.tensor_maps(key, A, B, d)
        index = c.cuda_index
        self.launch(
            self.rows,
            self.num_groups,
            grouped_layout_ptr,
            *_vector_args(c.sa, True, index, default_one=True),
            *_vector_args(c.sb, True, index, default_one=True),
            *_vector_args(c.bias, False, index),
            *_vector_args(c.zp, True, index),
            *_vector_args(c.b_sums, False, index),
            d.data_ptr(),
            *d_stride_args(d, self.is_masked),
            *tmaps,
        )

    def encode(self, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor) -> tuple[TmaDescriptor, ...]:
        cfg, rows, n, k, groups = self.cfg, self.rows, self.n, self.k, self.num_groups
        if self.is_masked:
            tmap_a = make_tma_descriptor(
                A.data_ptr(),
                _INT8,
                (k, rows, groups),
                (A.stride(1), group_stride_bytes(A, groups)),
                (BLOCK_K, cfg.block_m, 1),
                128,
            )
        else:
            tmap_a = make_tma_descriptor(
                A.data_ptr(), _INT8, (k, rows), (A.stride(0),), (BLOCK_K, cfg.block_m), 128
            )
        # Grouped: the experts' matrices lie back to back (validated), one [G * N, K] map. A tile past an
        # expert's last row reads the next expert's rows into columns never stored.
        tmap_b = make_tma_descriptor(
            B.data_ptr(), _INT8, (k, n * groups), (B.stride(-2),), (BLOCK_K, cfg.block_n), 128
        )
        tmap_d = d_tensor_map(d, n, rows, groups, self.is_masked, cfg)
        return tmap_a, tmap_b, tmap_d


_plans = PlanCache(max_plans=4096)
