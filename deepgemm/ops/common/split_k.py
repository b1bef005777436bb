"""Split-K's launch pieces, shared by the families whose kernels split K (FP8 1D2D, 16-bit): the
workspace the K slices write their FP32 partial tiles to, and the reduction kernel that sums them into D.

Deterministic two-pass scheme: the GEMM kernel writes slice s's partial tile to workspace[s] (every
element written by exactly one CTA, no atomics), then `sm90_split_k_reduce` sums the slices in the fixed
order 0, 1, ..., adds C and rounds once to D's type, so D is the same bits on every run. Chosen over an
in-kernel reduction with a per-tile semaphore because it needs no state that outlives a call (no
counters to zero or reset, nothing for a CUDA graph replay or an aborted call to leave behind) and no CTA
ever waits on another (no deadlock when the grid is not co-resident); its costs are a second launch and
the partial tiles' round trip, small where split-K applies (few tiles, small M x N).

The workspace comes from torch's caching allocator on the current stream for each call (no cudaMalloc
once the pool holds a block of its size; stream-ordered, so it may be reused as soon as the reduction
that reads it is enqueued; under CUDA-graph capture it comes from the graph's pool).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch

from ...jit import ParamType, get_kernel
from ...quant.layout import ceil_div
from .launch import OUT_TYPES, KernelSpec, LaunchShape

REDUCE_KERNEL = "deepgemm::sm90_split_k_reduce"
REDUCE_HEADER = "deepgemm/impls/sm90_split_k_reduce.cuh"
# `kSplitKReduceThreads`: threads per block, each summing 4 columns of a row at a time.
REDUCE_THREADS = 256
REDUCE_COLUMNS_PER_THREAD = 4
# The reduction's grid: enough blocks for one pass over D, at most this many per SM (threads then loop).
REDUCE_BLOCKS_PER_SM = 8
# (shape_m, shape_n, workspace, c, c_row_bytes, d, d_row_bytes), as in the kernel's signature.
REDUCE_PARAM_TYPES = (ParamType.U32, ParamType.U32, ParamType.PTR, ParamType.PTR, ParamType.U64,
                      ParamType.PTR, ParamType.U64)
_FP32_BYTES = 4


def reduce_grid(m: int, n: int, num_sms: int) -> int:
    """Blocks of the reduction of an [m, n] D (n a multiple of 4)."""
    threads = m * n // REDUCE_COLUMNS_PER_THREAD
    return max(1, min(ceil_div(threads, REDUCE_THREADS), num_sms * REDUCE_BLOCKS_PER_SM))


def _reduce_kernel(num_splits: int, out_dtype: torch.dtype, has_c: bool) -> tuple[tuple, str]:
    """The reduction kernel's template arguments and stub comment (with its name and header: its JIT key)."""
    return ((num_splits, OUT_TYPES[out_dtype], has_c),
            f"split-K reduction of {num_splits} slices into {out_dtype}, c={has_c}")


def reduce_kernel_spec(num_splits: int, out_dtype: torch.dtype, has_c: bool, m: int, n: int,
                       num_sms: int) -> KernelSpec:
    """The reduction `reduce_launcher` loads, as a spec (ahead-of-time compilation: a split config's
    plan loads it beside the GEMM kernel)."""
    template_args, comment = _reduce_kernel(num_splits, out_dtype, has_c)
    shape = LaunchShape(num_sms=reduce_grid(m, n, num_sms), num_threads=REDUCE_THREADS)
    return KernelSpec(REDUCE_KERNEL, REDUCE_HEADER, template_args, REDUCE_PARAM_TYPES, shape, 0, comment)


@lru_cache(maxsize=256)
def reduce_launcher(num_splits: int, out_dtype: torch.dtype, has_c: bool, grid: int, device: int):
    """The reduction of `num_splits` slices into a D of `out_dtype` (plus C when `has_c`), launching
    `grid` blocks on CUDA device `device`."""
    template_args, comment = _reduce_kernel(num_splits, out_dtype, has_c)
    kernel = get_kernel(REDUCE_KERNEL, REDUCE_HEADER, template_args, comment=comment)
    return kernel.launcher(REDUCE_PARAM_TYPES, grid=grid, block=REDUCE_THREADS, device=device)


class SplitK:
    """What a plan of a split config adds: the workspace's shape and strides as the GEMM kernel takes
    them (`row_bytes`, `slice_bytes`: its d_row_bytes and d_group_bytes) and the reduction's launcher."""

    __slots__ = ("shape", "device", "row_bytes", "slice_bytes", "m", "n", "launch_reduce")

    def __init__(self, num_splits: int, m: int, n: int, out_dtype: torch.dtype, has_c: bool, num_sms: int,
                 device_index: int) -> None:
        if m * n >= 2**31:
            raise ValueError(f"split-K needs M * N below 2^31, got M={m}, N={n}")
        self.m, self.n = m, n
        self.shape = (num_splits, m, n)
        self.device = torch.device("cuda", device_index)
        self.row_bytes = n * _FP32_BYTES
        self.slice_bytes = m * n * _FP32_BYTES
        grid = reduce_grid(m, n, num_sms)
        self.launch_reduce = reduce_launcher(num_splits, out_dtype, has_c, grid, device_index)

    def workspace(self) -> torch.Tensor:
        """A fresh FP32 [splits, M, N] workspace from the caching allocator, on the current stream."""
        return torch.empty(self.shape, dtype=torch.float32, device=self.device)

    def reduce(self, workspace: torch.Tensor, c_ptr: int, c_row_bytes: int, d_ptr: int,
               d_row_bytes: int) -> None:
        """Enqueues D = sum of the workspace's slices (+ C where the launcher adds it)."""
        self.launch_reduce(self.m, self.n, workspace.data_ptr(), c_ptr, c_row_bytes, d_ptr, d_row_bytes)

    def run(self, launch: Callable[..., None], leading_args: tuple, tmaps: tuple, c_ptr: int,
            c_row_bytes: int, d_ptr: int, d_row_bytes: int) -> None:
        """Enqueues the split GEMM kernel (`launch`), whose parameters are `leading_args`, then (d,
        d_row_bytes, d_group_bytes), then the tensor maps `tmaps`: the workspace takes D's place, its
        slices its groups'. Then the reduction of the slices (+ C) into D."""
        workspace = self.workspace()
        launch(*leading_args, workspace.data_ptr(), self.row_bytes, self.slice_bytes, *tmaps)
        self.reduce(workspace, c_ptr, c_row_bytes, d_ptr, d_row_bytes)
