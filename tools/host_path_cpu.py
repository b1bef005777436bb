"""Times the per-call host path of a cached fp8_gemm_nt / bf16_gemm_nt call on the CPU, with the CUDA
launch and the TMA encoding stubbed out (as tests/ops/test_fp8_host_path.py stubs them), so that host-cost
work can be measured on a machine without a GPU; and the argument checks of the ops without a cached path
(grouped FP8, INT8, TF32), which run on every call of theirs, so that a change to the shared checks shows.

    python tools/host_path_cpu.py [--calls N] [--repeat R]

Prints, per op and per stage of the path, the best of R means of N back-to-back calls (us per call):
the whole public op, then its parts. CPU tensors stand in for CUDA ones; the device index the checks
return is replaced by 0 so that the GPU path runs (the stand-in's own cost is printed: it is part of
a whole op's figure where every call runs the full checks, not on the cached path, which skips them).
The stubbed launcher does nothing: the driver call itself (cuLaunchKernelEx through
cuda-python, a few us) is not in these figures. The rows marked "every call" time only the full checks
of ops that have no cached path (grouped FP8 with 8 experts of M rows, INT8, TF32), on the same sizes.
"""

from __future__ import annotations

import argparse
import timeit
from types import SimpleNamespace
from unittest import mock

import torch

import deepgemm
from deepgemm.ops.bf16 import gemm as bf16_gemm
from deepgemm.ops.common import launch, settings
from deepgemm.ops.fp8 import dense as fp8_dense
from deepgemm.quant import get_mn_major_tma_aligned_tensor

M, N, K = 64, 2112, 7168


def _stubs(stack):
    """Fake H100 properties, a kernel whose launcher records nothing, TMA maps as tuples."""
    from deepgemm.ops.bf16 import kernel as bf16_kernel
    from deepgemm.ops.fp8 import kernel as fp8_kernel

    props = SimpleNamespace(major=9, minor=0, name="H100", multi_processor_count=132)

    class Kernel:
        def launcher(self, param_types, **launch_shape):
            return lambda *args: None

    def make_tma_descriptor(ptr, dtype, dims, strides, box, swizzle=0):
        return ("tmap", ptr)

    stack.enter_context(mock.patch.object(settings, "_device_properties", lambda index: props))
    stack.enter_context(mock.patch.object(settings, "_num_sms", None))
    stack.enter_context(mock.patch.object(launch, "get_kernel", lambda *a, **k: Kernel()))
    for module in (fp8_kernel, bf16_kernel, launch):
        stack.enter_context(mock.patch.object(module, "make_tma_descriptor", make_tma_descriptor))
    launch.kernel_launcher.cache_clear()
    return fp8_kernel, bf16_kernel


def _on_cuda_0(checked):
    """A check function whose result names CUDA device 0 instead of the CPU."""
    def check(*args):
        result = checked(*args)
        return None if result is None else (*result[:-1], 0)
    return check


def _time(fn, calls: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=calls, repeat=repeat)) / calls * 1e6


def _other_checks(t) -> dict[str, float]:
    """The full checks of the ops that run them on every call (no cached path), on CPU tensors of the
    same sizes: 8 experts for the grouped ops."""
    from deepgemm.ops.fp8 import grouped as fp8_grouped
    from deepgemm.ops.int8 import gemm as int8_gemm
    from deepgemm.ops.tf32 import gemm as tf32_gemm

    groups, kb = 8, (K + 127) // 128
    fp8 = torch.float8_e4m3fn
    a = (torch.zeros(M * groups, K, dtype=fp8), get_mn_major_tma_aligned_tensor(torch.ones(M * groups, kb)))
    b = (torch.zeros(groups, N, K, dtype=fp8), torch.ones(groups, (N + 127) // 128, kb))
    d = torch.empty(M * groups, N, dtype=torch.bfloat16)
    m_indices = torch.arange(M * groups, dtype=torch.int32) // M
    a3 = (torch.zeros(groups, M, K, dtype=fp8), torch.ones(groups, M, kb))
    d3 = torch.empty(groups, M, N, dtype=torch.bfloat16)
    masked_m = torch.full((groups,), M, dtype=torch.int32)
    i8a = (torch.zeros(M, K, dtype=torch.int8), torch.ones(M))
    i8b = (torch.zeros(N, K, dtype=torch.int8), torch.ones(N))
    d16 = torch.empty(M, N, dtype=torch.bfloat16)
    a32, b32, d32 = torch.zeros(M, K), torch.zeros(N, K), torch.empty(M, N)
    return {
        "m_grouped contiguous checks (every call)": t(
            lambda: fp8_grouped._checked_contiguous(a, b, d, "m_indices", m_indices, "M_sum")),
        "m_grouped masked checks (every call)": t(
            lambda: fp8_grouped._checked_masked(a3, b, d3, masked_m, M)),
        "int8_gemm_nt checks (every call)": t(lambda: int8_gemm.check_int8_gemm_nt(i8a, i8b, d16)),
        "tf32_gemm_nt checks (every call)": t(lambda: tf32_gemm._checked("nt", a32, b32, d32, None)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import contextlib

    with contextlib.ExitStack() as stack:
        fp8_kernel, bf16_kernel = _stubs(stack)
        a = torch.zeros(M, K, dtype=torch.float8_e4m3fn)
        sfa = get_mn_major_tma_aligned_tensor(torch.ones(M, (K + 127) // 128))
        b = torch.zeros(N, K, dtype=torch.float8_e4m3fn)
        sfb = torch.ones((N + 127) // 128, (K + 127) // 128)
        d = torch.empty(M, N, dtype=torch.bfloat16)
        a16, b16 = torch.zeros(M, K, dtype=torch.bfloat16), torch.zeros(N, K, dtype=torch.bfloat16)
        fast = fp8_dense._fast_checked
        stack.enter_context(mock.patch.object(fp8_dense, "_fast_checked", _on_cuda_0(fast)))
        stack.enter_context(mock.patch.object(bf16_gemm, "_checked", _on_cuda_0(bf16_gemm._checked)))
        settings._hopper_devices.add(0)
        deepgemm.fp8_gemm_nt((a, sfa), (b, sfb), d)
        deepgemm.bf16_gemm_nt(a16, b16, d)
        deepgemm.bf16_gemm_nt(a16, b16, d, torch.zeros(M, N, dtype=torch.bfloat16))
        t = lambda fn: _time(fn, args.calls, args.repeat)  # noqa: E731
        c16 = torch.zeros(M, N, dtype=torch.bfloat16)
        rows = {
            "fp8_gemm_nt (whole op)": t(lambda: deepgemm.fp8_gemm_nt((a, sfa), (b, sfb), d)),
            "  _fast_checked (full path only)": t(lambda: fast((a, sfa), (b, sfb), d)),
            "  launch_checked (full path only)": t(
                lambda: fp8_kernel.launch_checked(a, sfa, b, sfb, d, M, N, K, 0)),
            "bf16_gemm_nt (whole op)": t(lambda: deepgemm.bf16_gemm_nt(a16, b16, d)),
            "bf16_gemm_nt with c (whole op)": t(lambda: deepgemm.bf16_gemm_nt(a16, b16, d, c16)),
            "stand-in device index (full path only)": t(lambda: _on_cuda_0(lambda *x: x)(1, 2)),
            **_other_checks(t),
        }
    print(f"host us per call (a cached one unless marked), M={M} N={N} K={K}, CPU tensors, launch and TMA "
          f"stubbed (best of {args.repeat} x {args.calls} calls):")
    for name, us in rows.items():
        print(f"  {name:<40} {us:6.2f}")


if __name__ == "__main__":
    main()
