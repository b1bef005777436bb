"""GPU path of `fp8_gemm_nt`: choose the config, get the kernel, encode the tensor maps, launch.

Inputs arrive validated by `fp8_gemm.py` (dtypes, shapes, strides, devices, M, N, K > 0).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..cuda.tma import make_tma_descriptor
from ..heuristics.config import BLOCK_K, GemmConfig, GemmShape
from ..heuristics.sm90 import select_config
from ..jit import ParamType, get_kernel, knobs
from ..quant.layout import get_mn_major_tma_aligned_tensor
from .settings import get_num_sms

KERNEL = "deepgemm::sm90_fp8_gemm_1d2d"
HEADER = "deepgemm/impls/sm90_fp8_gemm_1d2d.cuh"
# (shape_m, sfb, tmap_a, tmap_b, tmap_sfa, tmap_d), as in the kernel's signature.
PARAM_TYPES = (ParamType.U32, ParamType.PTR, ParamType.TMA, ParamType.TMA, ParamType.TMA, ParamType.TMA)


def template_args(n: int, k: int, cfg: GemmConfig) -> tuple[int | bool, ...]:
    """Template arguments of `sm90_fp8_gemm_1d2d`, in its declaration order."""
    return (n, k, cfg.block_m, cfg.block_n, cfg.num_stages, cfg.num_tma_multicast, cfg.multicast_on_a,
            cfg.out_bytes == 4, cfg.swizzle_d_bytes)


def kernel_comment(n: int, k: int, cfg: GemmConfig) -> str:
    return f"n={n}, k={k}\n{cfg!r}"


@lru_cache(maxsize=1024)
def _launcher(n: int, k: int, cfg: GemmConfig, device: int):
    kernel = get_kernel(KERNEL, HEADER, template_args(n, k, cfg), comment=kernel_comment(n, k, cfg))
    return kernel.launcher(PARAM_TYPES, grid=cfg.num_sms, block=cfg.num_threads, smem=cfg.smem_bytes(k),
                           cluster=cfg.num_tma_multicast, device=device)


@lru_cache(maxsize=4096)
def choose_config(shape: GemmShape, num_sms: int) -> GemmConfig:
    """`select_config`, printed once per new shape when `DG_PRINT_CONFIGS=1`."""
    cfg = select_config(shape, num_sms)
    if knobs.print_configs():
        print(f"deepgemm: fp8_gemm_nt m={shape.m} n={shape.n} k={shape.k} -> {cfg}", flush=True)
    return cfg


def launch_fp8_gemm_nt(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor,
                       d: torch.Tensor, config: GemmConfig | None = None) -> None:
    """Enqueues D = A·Bᵀ on the current stream. `config` overrides the heuristic (tuning tools only)."""
    m, k = A.shape
    n = B.shape[0]
    cfg = config or choose_config(GemmShape(m, n, k, d.element_size()), get_num_sms())
    launch = _launcher(n, k, cfg, A.device.index)

    # The kernel reads A's scales with one TMA box per (m-block, k-block): MN-major, 16-byte aligned.
    # The conversion is not cached across calls: activations' scales are new each call, and a cache
    # keyed on the tensor would go stale under CUDA-graph replays that rewrite it in place.
    sfa = get_mn_major_tma_aligned_tensor(sfa)
    tmap_a = make_tma_descriptor(A.data_ptr(), A.dtype, (k, m), (A.stride(0),), (BLOCK_K, cfg.block_m), 128)
    tmap_b = make_tma_descriptor(B.data_ptr(), B.dtype, (k, n), (B.stride(0),), (BLOCK_K, cfg.block_n), 128)
    tmap_sfa = make_tma_descriptor(sfa.data_ptr(), sfa.dtype, (m, sfa.shape[1]),
                                   (sfa.stride(1) * 4,), (cfg.block_m, 1), 0)
    slab_cols = cfg.swizzle_d_bytes // cfg.out_bytes if cfg.swizzle_d_bytes else cfg.block_n
    tmap_d = make_tma_descriptor(d.data_ptr(), d.dtype, (n, m), (d.stride(0) * d.element_size(),),
                                 (slab_cols, cfg.block_m), cfg.swizzle_d_bytes)
    launch(m, sfb.data_ptr(), tmap_a, tmap_b, tmap_sfa, tmap_d)
