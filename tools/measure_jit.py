"""Measure what the JIT costs and print it as JSON.

- ``cold_compile``: building a small kernel from an empty cache with NVRTC and with nvcc (whole
  ``build_kernel`` wall time, and the compiler's own share);
- ``new_process_first_launch``: from starting a new Python process to the end of the first launch of a
  kernel that is already in the disk cache, with the time spent in each phase;
- ``launch_cpu_us``: CPU microseconds per launch of an in-memory kernel over back-to-back launches with no
  synchronisation inside the loop (target: <= 10 us), alone and with the ``get_kernel``/``launcher``
  lookups an op performs on every call;
- ``tma_encode_us``: CPU microseconds per TMA descriptor, memo hit and memo miss.

The compile parts run anywhere (NVRTC needs no GPU; nvcc is skipped when not installed); the GPU parts
need a Hopper GPU and hold the reason instead of numbers without one. A part that fails holds
``{"error": ...}`` and the others are still measured; the exit status is then 1. Usage, from anywhere:
``python tools/measure_jit.py [--launches 2000]`` (the repository is put on ``sys.path``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `python tools/measure_jit.py` works without PYTHONPATH

# The test kernel lives outside the package: every build and lookup must name its include directory
# (absolute, so the current directory does not matter). get_kernel / build_kernel arguments:
# (kernel, header, template_args, comment, include_dirs).
KERNELS = REPO / "tests" / "jit" / "kernels"
KERNEL = ("deepgemm_tests::scale_add", "scale_add.cuh", (128, True), "", (KERNELS,))


@contextlib.contextmanager
def jit_env(**variables: str) -> Iterator[None]:
    """Set DG_JIT_* variables for one measurement, then restore them, and start from an empty in-memory
    kernel cache (knobs are read when a kernel is first requested)."""
    from deepgemm.jit import clear_memory_cache

    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    clear_memory_cache()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        clear_memory_cache()


def cold_compile(compiler: str) -> dict:
    from deepgemm.jit import build_kernel
    from deepgemm.jit.compiler import find_nvcc

    if compiler == "nvcc" and find_nvcc() is None:
        return {"skipped": "no nvcc found"}
    with tempfile.TemporaryDirectory() as cache, jit_env(DG_JIT_CACHE_DIR=cache, DG_JIT_COMPILER=compiler):
        start = time.perf_counter()
        binary = build_kernel(*KERNEL)
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

    with tempfile.TemporaryDirectory() as cache, jit_env(DG_JIT_CACHE_DIR=cache, DG_JIT_COMPILER="auto"):
        build_kernel(*KERNEL)  # populate the disk cache
        # The child imports deepgemm from this checkout, whatever the current directory and PYTHONPATH.
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": python_path}
        spawned = time.time()
        result = subprocess.run([sys.executable, "-c", CHILD, str(KERNELS)], capture_output=True, text=True,
                                env=env)
    if result.returncode != 0:
        raise RuntimeError(f"the child process failed (exit {result.returncode}):\n{result.stderr.strip()}")
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
    kernel = get_kernel(*KERNEL)
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


def launch_cpu_us_in_new_cache(launches: int) -> dict:
    with tempfile.TemporaryDirectory() as cache, jit_env(DG_JIT_CACHE_DIR=cache):
        return launch_cpu_us(launches)


def no_hopper_reason() -> str | None:
    """Why the GPU parts cannot run here, or None when a Hopper GPU is available."""
    if not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else "no visible CUDA device"
        return f"skipped: needs a Hopper (sm_90) GPU ({build})"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) != (9, 0):
        found = f"{torch.cuda.get_device_name()} (sm_{major}{minor})"
        return f"skipped: needs a Hopper (sm_90) GPU, found {found}"
    return None


class Parts:
    """Runs the measurements one by one: a part that raises gets ``{"error": ...}`` in the JSON (and its
    traceback on stderr) and the next part still runs."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def measure(self, part: str, function: Callable[..., dict], *args) -> dict:
        try:
            return function(*args)
        except Exception as error:
            traceback.print_exc()
            self.failed.append(part)
            return {"error": f"{type(error).__name__}: {error}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=2000)
    launches = parser.parse_args().launches

    parts = Parts()
    results: dict = {"torch": torch.__version__}
    results["cold_compile"] = {compiler: parts.measure(f"cold_compile.{compiler}", cold_compile, compiler)
                               for compiler in ("nvrtc", "nvcc")}
    reason = no_hopper_reason()
    if reason is None:
        results["device"] = torch.cuda.get_device_name()
        results["new_process_first_launch"] = parts.measure("new_process_first_launch",
                                                            new_process_first_launch)
        results["launch_cpu_us"] = parts.measure("launch_cpu_us", launch_cpu_us_in_new_cache, launches)
        results["tma_encode_us"] = parts.measure("tma_encode_us", tma_encode_us, launches)
    else:
        print(f"measure_jit: GPU parts {reason}", file=sys.stderr)
        results.update(device=None, new_process_first_launch=reason, launch_cpu_us=reason,
                       tma_encode_us=reason)
    if parts.failed:
        results["failed"] = parts.failed
    print(json.dumps(results, indent=2))
    return 1 if parts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
