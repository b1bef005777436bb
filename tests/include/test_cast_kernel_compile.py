"""The fused FP8 cast kernels compile for sm_90a with nvcc and NVRTC, every (cast, input dtype, vectorised)
variant the launch code can ask for, with no local memory (stack frame or spills), at most 128 registers
per thread (so the grid's CTAs per SM are all resident: ``kernel.CTAS_PER_SM``) and the symbol the
launch code's parameter list implies. No GPU is needed."""

from __future__ import annotations

import contextlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from deepgemm.jit import CompileError, build_kernel
from deepgemm.jit.compiler import find_nvcc
from deepgemm.ops.cast import kernel as cast_kernel

CASES = [
    (name, dtype, vec, transposed)
    for name in cast_kernel.KERNELS
    for dtype in cast_kernel.IN_TYPES
    for vec in (True, False)
    for transposed in ((False, True) if name == "per_block" else (False,))
]
# Registers a thread may use with CTAS_PER_SM CTAs of 256 threads resident (65536 per SM, allocated in
# units of 8 per thread).
MAX_REGISTERS = {
    name: 65536 // (per_sm * cast_kernel.THREADS) // 8 * 8 for name, per_sm in cast_kernel.CTAS_PER_SM.items()
}
# Itanium mangling of each kernel's parameter list (ParamType order in cast_kernel.KERNELS).
PARAMS = {
    "per_token": "PKvyjjPhPfyyf",
    "per_block": "PKvyjjPhPfS5_S6_f",
    "per_token_transposed": "PKvyjjjPhyPfyyf",
}
_REPORT = re.compile(
    r"Function properties for (\S+)\s*\n[^\n]*?(\d+) bytes stack frame, "
    r"(\d+) bytes spill stores, (\d+) bytes spill loads\s*\n[^\n]*?Used (\d+) registers"
)


def _have_nvcc() -> bool:
    try:
        return find_nvcc() is not None
    except FileNotFoundError:
        return False


def _build(case):
    name, dtype, vec, transposed = case
    spec = cast_kernel.kernel_spec(name, dtype, vec, 132, transposed)
    try:
        return build_kernel(spec.name, spec.header, spec.template_args, comment=spec.comment), None
    except CompileError as error:
        return None, f"{type(error).__name__}: {error}"


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    done = {}

    def get(compiler: str):
        if compiler not in done:
            with pytest.MonkeyPatch.context() as env:
                env.setenv("DG_JIT_COMPILER", compiler)
                env.setenv("DG_JIT_CACHE_DIR", str(tmp_path_factory.mktemp(f"jit-cache-cast-{compiler}")))
                env.setenv("DG_JIT_PTXAS_CHECK", "1")
                env.setenv("DG_JIT_PTXAS_VERBOSE", "1")
                env.delenv("DG_JIT_DISABLE_CACHE", raising=False)
                log = io.StringIO()
                with (
                    contextlib.redirect_stderr(log),
                    ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool,
                ):
                    results = dict(zip(CASES, pool.map(_build, CASES), strict=True))
            reports = {
                symbol: tuple(map(int, numbers)) for symbol, *numbers in _REPORT.findall(log.getvalue())
            }
            done[compiler] = results, reports
        return done[compiler]

    return get


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c[0]}-{str(c[1])[6:]}-{'vec' if c[2] else 'scalar'}{'-t' if c[3] else ''}"
)
@pytest.mark.parametrize(
    "compiler",
    [pytest.param("nvcc", marks=pytest.mark.skipif(not _have_nvcc(), reason="no nvcc found")), "nvrtc"],
)
def test_cast_kernel_compiles_without_local_memory(builds, compiler, case):
    results, reports = builds(compiler)
    binary, error = results[case]
    assert error is None, error
    name, dtype, vec, transposed = case
    in_type = list(cast_kernel.IN_TYPES).index(dtype)
    kernel = cast_kernel.KERNELS[name][0].split("::")[-1]
    flags = f"Lb{int(vec)}E" + (f"Lb{int(transposed)}E" if name == "per_block" else "")
    assert (
        binary.symbol
        == f"_ZN8deepgemm{len(kernel)}{kernel}ILNS_4cast6InTypeE{in_type}E{flags}EEv{PARAMS[name]}"
    )
    stack, spill_stores, spill_loads, registers = reports[binary.symbol]
    assert (stack, spill_stores, spill_loads) == (0, 0, 0)
    assert registers <= MAX_REGISTERS[name], (registers, MAX_REGISTERS[name])


def test_in_types_follow_the_kernel_enum():
    # deepgemm::cast::InType { BF16, FP16, FP32 } in impls/cast/quantize.cuh, in that order.
    assert list(cast_kernel.IN_TYPES) == [torch.bfloat16, torch.float16, torch.float32]
