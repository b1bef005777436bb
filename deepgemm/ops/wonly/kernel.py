"""GPU path of the weight-only GEMMs: the kernel spec, the tensor maps, the split-K workspace, the launches.

Inputs arrive validated by `gemm.py`. Tensor maps: the activations as the 16-bit kernels read a K-major
operand (boxes of 64 K by the tile's tokens, 128B swizzle; the masked kind 3-D per group); the packed
weight as 3-D ``[slabs of all experts][K / 64][slab bytes]`` in 4-byte elements, one box per k-block holding
the tile's slabs (no swizzle: the slab layout itself spreads the lanes over the banks). D is written
with plain stores (the kernel computes transposed tiles), so it needs no map.
"""

from __future__ import annotations

import torch

from ...cuda.tma import TmaDescriptor, make_tma_descriptor
from ...heuristics import GemmShape
from ...heuristics.config import MASKED
from ...heuristics.families.wonly import BLOCK_K, SLAB_ROWS, WEIGHT_ONLY_FAMILIES, WonlyConfig
from ...jit import ParamType
from ...quant.wonly import packed_shape
from ..common.launch import (
    GEMM_KIND_DENSE,
    GEMM_KIND_MASKED,
    OUT_TYPES,
    KernelRequest,
    KernelSpec,
    Plan,
    PlanCache,
    choose_config,
    group_stride_bytes,
)
from ..common.settings import num_sms_for

KERNEL = "deepgemm::sm90_wonly_gemm"
HEADER = "deepgemm/impls/sm90_wonly_gemm.cuh"
# (shape_m, num_groups, masked_m, scales, zeros, d, d_row_bytes, d_group_bytes, workspace, tile_counters,
# tmap_a, tmap_b), as in the kernel's signature.
PARAM_TYPES = (ParamType.U32, ParamType.U32, ParamType.PTR, ParamType.PTR, ParamType.PTR, ParamType.PTR,
               ParamType.U64, ParamType.U64, ParamType.PTR, ParamType.PTR, ParamType.TMA, ParamType.TMA)


def group_k_blocks(k: int, group_size: int | None) -> int:
    """The kernel's K group in k-blocks: the whole of K per channel."""
    return -(-k // BLOCK_K) if group_size is None else group_size // BLOCK_K


def kernel_spec(n: int, k: int, cfg: WonlyConfig, group_size: int | None, has_zeros: bool, is_fp16: bool,
                out_dtype: torch.dtype, kind: str = GEMM_KIND_DENSE) -> KernelSpec:
    """`sm90_wonly_gemm` for (N, K, config), the scale groups, zero points, dtypes and kind."""
    template_args = (n, k, cfg.block_m, cfg.num_math_warpgroups, cfg.num_stages, cfg.weight_bits,
                     group_k_blocks(k, group_size), has_zeros, is_fp16, OUT_TYPES[out_dtype], cfg.num_splits,
                     kind)
    comment = (f"{kind.rsplit(':', 1)[-1]} w{cfg.weight_bits}a16 n={n}, k={k}, group={group_size}, "
               f"zeros={has_zeros}, {'fp16' if is_fp16 else 'bf16'}, out={out_dtype}\n{cfg.kernel_repr()}")
    return KernelSpec(KERNEL, HEADER, template_args, PARAM_TYPES, cfg, cfg.smem_bytes, comment)


def choose(m: int, n: int, k: int, bits: int, num_sms: int, num_groups: int = 1, masked: bool = False
           ) -> WonlyConfig:
    """The config of the `bits`-bit family's record for `m` tokens (masked: expected per group)."""
    layout = {"num_groups": num_groups, "layout": MASKED} if masked else {}
    return choose_config(GemmShape(m, n, k, **layout, family=WEIGHT_ONLY_FAMILIES[bits]), num_sms)


# Weight bits by `KernelRequest.family` (the records' names).
FAMILY_BITS = {family.name: bits for bits, family in WEIGHT_ONLY_FAMILIES.items()}


def kernel_specs(request: KernelRequest, num_sms: int) -> list[KernelSpec]:
    """The kernel the launches below load for `request` (family ``"w8a16"`` or ``"w4a16"``, layout
    ``"dense"`` or ``"masked"`` with ``m`` the expected_m) on `num_sms` SMs (ahead-of-time compilation)."""
    bits, masked = FAMILY_BITS[request.family], request.layout == "masked"
    num_groups = request.num_groups if masked else 1
    cfg = choose(request.m, request.n, request.k, bits, num_sms, num_groups, masked)
    return [kernel_spec(request.n, request.k, cfg, request.group_size, request.has_zeros,
                        request.in_dtype == torch.float16, request.out_dtype,
                        GEMM_KIND_MASKED if masked else GEMM_KIND_DENSE)]


class _Workspace:
    """Per device: the FP32 partial sums and the per-tile arrival counters of split-K launches. Grown
    (never shrunk) on a launch that needs more; the counters start at zero and the last CTA of each
    tile resets its own, so launches on one stream reuse them with no clearing. Launches of split
    kernels on two streams of one device at once would share them: keep them on one stream."""

    def __init__(self) -> None:
        self.buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, device_index: int, floats: int, tiles: int) -> tuple[int, int]:
        found = self.buffers.get(device_index)
        if found is None or found[0].numel() < floats or found[1].numel() < tiles:
            old_floats, old_tiles = (found[0].numel(), found[1].numel()) if found else (0, 0)
            device = torch.device("cuda", device_index)
            found = (torch.empty(max(floats, old_floats), dtype=torch.float32, device=device),
                     torch.zeros(max(tiles, old_tiles), dtype=torch.int32, device=device))
            self.buffers[device_index] = found
        return found[0].data_ptr(), found[1].data_ptr()


_workspace = _Workspace()


class _Plan(Plan):
    """One problem's config, launcher and tensor maps (memoised by the tensors' addresses and strides)."""

    __slots__ = ("m", "n", "k", "num_groups", "masked", "num_tiles", "device_index")

    def __init__(self, spec: KernelSpec, device_index: int, m: int, n: int, k: int, num_groups: int,
                 masked: bool) -> None:
        super().__init__(spec, device_index)
        self.m, self.n, self.k, self.num_groups, self.masked = m, n, k, num_groups, masked
        self.num_tiles = -(-m // self.cfg.block_m) * -(-n // self.cfg.block_n)
        self.device_index = device_index

    def run(self, A: torch.Tensor, packed: torch.Tensor, sb: torch.Tensor, zeros: torch.Tensor | None,
            d: torch.Tensor, masked_m_ptr: int) -> None:
        tmaps = self.tensor_maps((A.data_ptr(), *A.stride(), packed.data_ptr()), A, packed)
        workspace, counters = 0, 0
        if self.cfg.num_splits > 1:
            workspace, counters = _workspace.get(self.device_index, self.cfg.workspace_floats(self.num_tiles),
                                                 self.num_tiles)
        d_row_bytes = d.stride(-2) * d.element_size()
        d_group_bytes = d.stride(0) * d.element_size() if self.masked else 0
        zeros_ptr = 0 if zeros is None else zeros.data_ptr()
        self.launch(self.m, self.num_groups, masked_m_ptr, sb.data_ptr(), zeros_ptr, d.data_ptr(),
                    d_row_bytes, d_group_bytes, workspace, counters, *tmaps)

    def encode(self, A: torch.Tensor, packed: torch.Tensor) -> tuple[TmaDescriptor, TmaDescriptor]:
        cfg, k = self.cfg, self.k
        row_bytes = A.stride(-2) * A.element_size()
        if self.masked:
            tmap_a = make_tma_descriptor(A.data_ptr(), A.dtype, (k, self.m, self.num_groups),
                                         (row_bytes, group_stride_bytes(A, self.num_groups)),
                                         (BLOCK_K, cfg.block_m, 1), 128)
        else:
            tmap_a = make_tma_descriptor(A.data_ptr(), A.dtype, (k, self.m), (row_bytes,),
                                         (BLOCK_K, cfg.block_m), 128)
        slab_bytes = SLAB_ROWS * BLOCK_K * cfg.weight_bits // 8
        rows, _ = packed_shape(self.n, k, cfg.weight_bits)
        num_k_blocks = -(-k // BLOCK_K)
        tmap_b = make_tma_descriptor(packed.data_ptr(), torch.int32,
                                     (slab_bytes // 4, num_k_blocks, self.num_groups * rows // SLAB_ROWS),
                                     (slab_bytes, num_k_blocks * slab_bytes),
                                     (slab_bytes // 4, 1, cfg.block_n // SLAB_ROWS), 0)
        return tmap_a, tmap_b


_plans = PlanCache(max_plans=4096)


def launch_wonly_gemm(bits: int, A: torch.Tensor, packed: torch.Tensor, sb: torch.Tensor,
                      zeros: torch.Tensor | None, d: torch.Tensor, group_size: int | None, device_index: int,
                      config: WonlyConfig | None = None) -> None:
    """Enqueues the dense weight-only GEMM. `config` overrides the selection (tuning tools only)."""
    m, k = A.shape
    n = d.shape[1]
    num_sms = num_sms_for(device_index)
    key = (GEMM_KIND_DENSE, bits, m, n, k, group_size, zeros is not None, A.dtype, d.dtype, config, num_sms,
           device_index)
    plan = _plans.get(key)
    if plan is None:
        cfg = config or choose(m, n, k, bits, num_sms)
        spec = kernel_spec(n, k, cfg, group_size, zeros is not None, A.dtype == torch.float16, d.dtype)
        plan = _plans.remember(key, _Plan(spec, device_index, m, n, k, 1, False))
    plan.run(A, packed, sb, zeros, d, 0)


def launch_m_grouped_wonly_masked(bits: int, A: torch.Tensor, packed: torch.Tensor, sb: torch.Tensor,
                                  zeros: torch.Tensor | None, d: torch.Tensor, masked_m: torch.Tensor,
                                  expected_m: int, group_size: int | None, device_index: int,
                                  config: WonlyConfig | None = None) -> None:
    """Enqueues the masked grouped weight-only GEMM; `expected_m` only guides the config."""
    num_groups, max_m, k = A.shape
    n = d.shape[2]
    num_sms = num_sms_for(device_index)
    key = (GEMM_KIND_MASKED, bits, expected_m, max_m, n, k, num_groups, group_size, zeros is not None,
           A.dtype, d.dtype, config, num_sms, device_index)
    plan = _plans.get(key)
    if plan is None:
        cfg = config or choose(expected_m, n, k, bits, num_sms, num_groups, masked=True)
        spec = kernel_spec(n, k, cfg, group_size, zeros is not None, A.dtype == torch.float16, d.dtype,
                           GEMM_KIND_MASKED)
        plan = _plans.remember(key, _Plan(spec, device_index, max_m, n, k, num_groups, True))
    plan.run(A, packed, sb, zeros, d, masked_m.data_ptr())
