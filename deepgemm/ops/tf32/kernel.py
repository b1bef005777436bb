"""GPU path of the TF32 GEMMs: the kernel spec, operand staging, the tensor maps and the launch.

Inputs arrive validated by `gemm.py` (dtypes, shapes, devices, every size > 0, `d` and `c` TMA-ready).

TF32 WGMMA reads K-major shared memory only, so the kernel takes A [M, K] and B [N, K]. An operand
TMA can read in place (K-major, 16-byte rows and strides) goes straight in; any other (MN-major, odd
strides, K not a multiple of 4) is first written K-major by `tf32_stage_operand`, a transposing copy
through shared memory. The 3xTF32 product always stages both operands, since it splits each into its
TF32 high part and low remainder, [rows, 2, K]: the transpose comes free with the split.

Tensor maps: each operand is a 3-D map (K, part, rows) read in boxes of 32 x 1 x rows-of-the-tile, so
a part's K tail is zero-filled; a plain operand has one part.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

from ...cuda.tma import TmaDescriptor, make_tma_descriptor
from ...heuristics import TF32, TF32X3, GemmConfig, GemmShape
from ...heuristics.families.tf32 import BLOCK_K
from ...jit import ParamType
from ...quant.layout import TMA_ALIGNMENT_BYTES, align
from ..common.launch import (
    KernelRequest,
    KernelSpec,
    LaunchShape,
    Plan,
    PlanCache,
    choose_config,
    d_tensor_map,
    kernel_launcher,
)
from ..common.settings import num_sms_for

KERNEL = "deepgemm::sm90_tf32_gemm"
HEADER = "deepgemm/impls/sm90_tf32_gemm.cuh"
STAGE_KERNEL = "deepgemm::tf32_stage_operand"
STAGE_HEADER = "deepgemm/impls/tf32/stage_operand.cuh"
# (shape_m, c, c_row_bytes, d, d_row_bytes, tmap_a, tmap_b, tmap_d), as in the kernel's signature.
PARAM_TYPES = (ParamType.U32, ParamType.PTR, ParamType.U64, ParamType.PTR, ParamType.U64, ParamType.TMA,
               ParamType.TMA, ParamType.TMA)
# (x, rows, k, x_row_stride, x_k_stride, out, out_row_stride, out_part_stride) of tf32_stage_operand.
STAGE_PARAM_TYPES = (ParamType.PTR, ParamType.U32, ParamType.U32, ParamType.U64, ParamType.U64, ParamType.PTR,
                     ParamType.U64, ParamType.U64)
# tf32_stage_operand's CTA size and CTAs per SM (its grid-stride loop over 32 x 32 tiles).
STAGE_THREADS = 256
STAGE_CTAS_PER_SM = 8
# FP32 elements per 16 bytes: staged rows are padded to this many so every TMA stride is legal.
_PER_16_BYTES = TMA_ALIGNMENT_BYTES // 4


def kernel_spec(n: int, k: int, cfg: GemmConfig, num_terms: int, has_c: bool) -> KernelSpec:
    """`sm90_tf32_gemm` for (N, K, config), the number of TF32 products (1: TF32, 3: 3xTF32) and
    whether it adds C."""
    template_args = (n, k, cfg.block_m, cfg.block_n, cfg.num_stages, cfg.num_tma_multicast,
                     cfg.multicast_on_a, num_terms, has_c, cfg.swizzle_d_bytes, cfg.num_d_chunks,
                     cfg.load_batch, cfg.promote_every, cfg.promote_sets)
    comment = (f"n={n}, k={k}, {'3xtf32' if num_terms == 3 else 'tf32'}, nt, out=torch.float32, c={has_c}\n"
               f"{cfg.kernel_repr()}")
    return KernelSpec(KERNEL, HEADER, template_args, PARAM_TYPES, cfg, cfg.smem_bytes(k), comment)


def gemm_shape(m: int, n: int, k: int, num_terms: int) -> GemmShape:
    """The shape the config is chosen for: a 3xTF32 product's from `TF32X3` (the k-blocks of its three
    TF32 products, the promoted sum's registers), a TF32 one's from `TF32`."""
    return GemmShape.of_problem(m, n, k, 4, family=TF32X3 if num_terms == 3 else TF32)


def stage_kernel_spec(k_contiguous: bool, split: bool, num_sms: int) -> KernelSpec:
    """`tf32_stage_operand` for an operand whose K stride is 1 (`k_contiguous`), copied K-major or, with
    `split`, split into its TF32 high and low parts; a grid-stride loop over `num_sms` SMs."""
    shape = LaunchShape(num_sms=num_sms * STAGE_CTAS_PER_SM, num_threads=STAGE_THREADS)
    return KernelSpec(STAGE_KERNEL, STAGE_HEADER, (k_contiguous, split), STAGE_PARAM_TYPES, shape, 0,
                      f"tf32 operand staging, k_contiguous={k_contiguous}, split={split}")


def kernel_specs(request: KernelRequest, num_sms: int) -> list[KernelSpec]:
    """The kernels `launch_tf32_gemm` loads for `request` on `num_sms` SMs (ahead-of-time compilation):
    the GEMM (family ``"tf32x3"``: the 3xTF32 one) and the staging of each operand that is not read in
    place, for operands stored densely as ``request.major`` says (A ``[M, K]`` or ``[K, M]``, B ``[N, K]``
    or ``[K, N]``) from 16-byte-aligned starts."""
    m, n, k = request.m, request.n, request.k
    num_terms = 3 if request.family == "tf32x3" else 1
    cfg = choose_config(gemm_shape(m, n, k, num_terms), num_sms)
    specs = [kernel_spec(n, k, cfg, num_terms, request.has_c)]
    # The [rows, K] views the op passes: a K-major store is (K, 1)-strided, an MN-major one (1, rows).
    for rows, k_major in ((m, request.major[0] == "n"), (n, request.major[1] == "t")):
        strides = (k, 1) if k_major else (1, rows)
        variant = stage_variant((rows, k), strides, True, num_terms == 3)
        if variant is not None:
            specs.append(stage_kernel_spec(*variant, num_sms))
    return specs


def launch_tf32_gemm(a_mk: torch.Tensor, b_nk: torch.Tensor, d: torch.Tensor, c: torch.Tensor | None,
                     num_terms: int, device_index: int, config: GemmConfig | None = None) -> None:
    """Enqueues D = C + A·Bᵀ for FP32 views a_mk [M, K] and b_nk [N, K] (any strides): one TF32 product,
    or with `num_terms=3` the 3xTF32 one. `config` overrides the heuristic (tuning tools only)."""
    A, B = (staged(x, num_terms == 3, device_index) for x in (a_mk, b_nk))
    launch_staged(A, B, a_mk.shape[1], d, c, num_terms, device_index, config)


def launch_staged(A: torch.Tensor, B: torch.Tensor, k: int, d: torch.Tensor, c: torch.Tensor | None,
                  num_terms: int, device_index: int, config: GemmConfig | None = None) -> None:
    """The GEMM kernel alone on operands as `staged` returns them, A [M, parts, K'] and B [N, parts, K']
    (parts: 2 with `num_terms=3`), of K `k`: how the benchmark times the 3xTF32 product without its
    split."""
    m, n = A.shape[0], B.shape[0]
    num_sms = num_sms_for(device_index)
    key = (num_terms, m, n, k, c is not None, config, num_sms, device_index)
    plan = _plans.get(key)
    if plan is None:
        cfg = config or choose_config(gemm_shape(m, n, k, num_terms), num_sms)
        spec = kernel_spec(n, k, cfg, num_terms, c is not None)
        plan = _plans.remember(key, _Plan(spec, device_index, m, n, k))
    c_ptr, c_row_bytes = (c.data_ptr(), c.stride(0) * 4) if c is not None else (0, 0)
    plan.run(A, B, d, c_ptr, c_row_bytes)


def reads_in_place(x: torch.Tensor) -> bool:
    """Whether TMA reads the [rows, K] view `x` as it is: K contiguous, 16-byte rows, strides and start."""
    return _reads_in_place(x.shape, x.stride(), x.data_ptr() % TMA_ALIGNMENT_BYTES == 0)


def _reads_in_place(shape: Sequence[int], strides: Sequence[int], aligned: bool) -> bool:
    return (strides[1] == 1 and shape[1] % _PER_16_BYTES == 0 and strides[0] % _PER_16_BYTES == 0
            and strides[0] >= shape[1] and aligned)


def stage_variant(shape: Sequence[int], strides: Sequence[int], aligned: bool,
                  split: bool) -> tuple[bool, bool] | None:
    """The staging kernel's (k_contiguous, split) for a [rows, K] view of these strides (`aligned`: a
    16-byte-aligned start), as `staged` runs it; None when the view is read in place."""
    if not split and _reads_in_place(shape, strides, aligned):
        return None
    return strides[1] == 1 or shape[1] == 1, split


def staged(x: torch.Tensor, split: bool, device_index: int) -> torch.Tensor:
    """The operand as the kernel reads it, [rows, parts, K'] with K' = K rounded up to 4 (whose tail
    the kernel never reads): `x` viewed with one part when TMA can read it in place, else a K-major
    copy, or with `split` its TF32 high part and low remainder."""
    rows, k = x.shape
    variant = stage_variant(x.shape, x.stride(), x.data_ptr() % TMA_ALIGNMENT_BYTES == 0, split)
    if variant is None:
        return x.as_strided((rows, 1, k), (x.stride(0), x.stride(0), 1))
    parts = 2 if split else 1
    out = torch.empty(rows, parts, align(k, _PER_16_BYTES), dtype=torch.float32, device=x.device)
    launch = _stage_launcher(*variant, device_index)
    launch(x.data_ptr(), rows, k, x.stride(0), x.stride(1), out.data_ptr(), out.stride(0), out.stride(1))
    return out


@lru_cache(maxsize=16)
def _stage_launcher(k_contiguous: bool, split: bool, device_index: int):
    return kernel_launcher(stage_kernel_spec(k_contiguous, split, num_sms_for(device_index)), device_index)


class _Plan(Plan):
    __slots__ = ("m", "n", "k")

    def __init__(self, spec: KernelSpec, device_index: int, m: int, n: int, k: int) -> None:
        super().__init__(spec, device_index)
        self.m, self.n, self.k = m, n, k

    def run(self, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor, c_ptr: int, c_row_bytes: int) -> None:
        key = (A.data_ptr(), *A.stride(), B.data_ptr(), *B.stride(), d.data_ptr(), *d.stride())
        tmaps = self.tensor_maps(key, A, B, d)
        self.launch(self.m, c_ptr, c_row_bytes, d.data_ptr(), d.stride(0) * 4, *tmaps)

    def encode(self, A: torch.Tensor, B: torch.Tensor, d: torch.Tensor) -> tuple[TmaDescriptor, ...]:
        cfg = self.cfg
        tmap_a = _operand_map(A, self.k, cfg.block_m)
        tmap_b = _operand_map(B, self.k, cfg.block_n)
        return tmap_a, tmap_b, d_tensor_map(d, self.n, self.m, 1, False, cfg)


_plans = PlanCache(max_plans=4096)


def _operand_map(x: torch.Tensor, k: int, block_rows: int) -> TmaDescriptor:
    """The 3-D map (K, part, rows) of a staged operand [rows, parts, K'] (see `staged`)."""
    rows, parts = x.shape[:2]
    return make_tma_descriptor(x.data_ptr(), torch.float32, (k, parts, rows),
                               (x.stride(1) * 4, x.stride(0) * 4), (BLOCK_K, 1, block_rows), 128)
