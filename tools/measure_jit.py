"""Measure what the JIT costs and print it as JSON.

- ``cold_compile``: building a small kernel from an empty cache with NVRTC and with nvcc (whole
  ``build_kernel`` wall time, and the compiler's own share);
- ``new_process_first_launch``: from starting a new Python process to the end of the first launch of a
  kernel that is already in the disk cache, with the time spent in each phase;
- ``launch_cpu_us``: CPU microseconds per launch of an in-memory kernel over back-to-back launches with no
  synchronisation inside the loop (target: <= 10 us), alone and with the ``get_kernel``/``launcher``
  lookups an op performs on every call;
- ``tma_encode_us``: CPU microseconds per TMA descriptor, memo hit and memo miss.

The GPU parts need a Hopper GPU and are ``null`` (with the reason) without one. Usage:
``python tools/measure_jit.py [--launches 2000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
KERNELS = REPO / "tests" / "kernels"
KERNEL = ("deepgemm_tests::scale_add", "scale_add.cuh", (128, True))


def cold_compile(compiler: str) -> dict:
    from deepgemm.jit import build_kernel, clear_memory_cache
    from deepgemm.jit.compiler import find_nvcc

    if compiler == "nvcc" and find_nvcc() is None:
        return {"skipped": "no nvcc found"}
    with tempfile.TemporaryDirectory() as cache:
        os.environ.update(DG_JIT_CACHE_DIR=cache, DG_JIT_COMPILER=compiler)
        clear_memory_cache()
        start = time.perf_counter()
        binary = build_kernel(*KERNEL, include_dirs=[KERNELS])
        total = time.perf_counter() - start
        meta = json.loads((binary.directory / "meta.json").read_text())
    return {"build_kernel_s": round(total, 4), "compiler_s": meta["compile_seconds"],
            "compiler": meta["compiler"]}


CHILD = textwrap.dedent("""
    import json, sys, time
    stamps = {"interpreter_ready": time.time()}
    import torch
    torch.zeros(1, device="cuda")
    stamps["torch_cuda_ready"] = time.time()
    from deepgemm.jit import ParamType as P, compile_count, get_kernel
    stamps["deepgemm_imported"] = time.time()
    kernel = get_kernel("deepgemm_tests::scale_add", "scale_add.cuh", (128, True), include_dirs=[sys.argv[1]])
    stamps["kernel_loaded"] = time.time()
    x = torch.ones(128, device="cuda")
    kernel.launcher((P.PTR, P.PTR, P.F32, P.U32), grid=1, block=128)(x.data_ptr(), x.data_ptr(), 2.0, 128)
    torch.cuda.synchronize()
    stamps["first_launch_done"] = time.time()
    print(json.dumps({"stamps": stamps, "compiles": compile_count()}))
""")


def new_process_first_launch() -> dict:
    from deepgemm.jit import build_kernel

    with tempfile.TemporaryDirectory() as cache:
        os.environ.update(DG_JIT_CACHE_DIR=cache, DG_JIT_COMPILER="auto")
        build_kernel(*KERNEL, include_dirs=[KERNELS])  # populate the disk cache
        spawned = time.time()
        result = subprocess.run([sys.executable, "-c", CHILD, str(KERNELS)], capture_output=True, text=True,
                                check=True)
    report = json.loads(result.stdout)
    stamps = {"spawned": spawned, **report["stamps"]}
    names = list(stamps)
    phases = {f"{a}->{b}_s": round(stamps[b] - stamps[a], 4) for a, b in zip(names, names[1:], strict=False)}
    return {"total_s": round(stamps["first_launch_done"] - spawned, 4), "phases": phases,
            "compiles_in_new_process": report["compiles"]}


def launch_cpu_us(launches: int) -> dict:
    from deepgemm.jit import ParamType as P
    from deepgemm.jit import get_kernel

    params = (P.PTR, P.PTR, P.F32, P.U32)
    x = torch.ones(128, device="cuda")
    kernel = get_kernel(*KERNEL, include_dirs=[KERNELS])
    launch = kernel.launcher(params, grid=1, block=128)
    args = (x.data_ptr(), x.data_ptr(), 1.0, 128)
    for _ in range(100):
        launch(*args)
    torch.cuda.synchronize()

    start = time.perf_counter()
    for _ in range(launches):
        launch(*args)
    launch_only = time.perf_counter() - start
    torch.cuda.synchronize()

    start = time.perf_counter()
    for _ in range(launches):
        get_kernel(*KERNEL).launcher(params, grid=1, block=128)(*args)
    with_lookups = time.perf_counter() - start
    torch.cuda.synchronize()
    return {"launches": launches, "launch_only": round(launch_only / launches * 1e6, 3),
            "with_get_kernel_and_launcher_lookup": round(with_lookups / launches * 1e6, 3)}


def tma_encode_us(count: int) -> dict:
    from deepgemm.cuda import make_tma_descriptor

    x = torch.empty(4096, 7168, dtype=torch.float8_e4m3fn, device="cuda")
    base = x.data_ptr()

    def encode(ptr):
        return make_tma_descriptor(ptr, torch.float8_e4m3fn, (7168, 4096), (7168,), (128, 128), swizzle=128)

    encode(base)
    start = time.perf_counter()
    for _ in range(count):
        encode(base)
    hit = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(count):
        encode(base + 16 * (i + 1))  # a new address each time: every call encodes
    miss = time.perf_counter() - start
    return {"memo_hit": round(hit / count * 1e6, 3), "memo_miss": round(miss / count * 1e6, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=2000)
    launches = parser.parse_args().launches

    results: dict = {"torch": torch.__version__}
    results["cold_compile"] = {compiler: cold_compile(compiler) for compiler in ("nvrtc", "nvcc")}
    if torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0):
        results["device"] = torch.cuda.get_device_name()
        results["new_process_first_launch"] = new_process_first_launch()
        with tempfile.TemporaryDirectory() as cache:
            os.environ.update(DG_JIT_CACHE_DIR=cache)
            results["launch_cpu_us"] = launch_cpu_us(launches)
        results["tma_encode_us"] = tma_encode_us(launches)
    else:
        reason = "needs a Hopper (sm_90) GPU"
        results.update(device=None, new_process_first_launch=reason, launch_cpu_us=reason,
                       tma_encode_us=reason)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
