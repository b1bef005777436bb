"""The 1D1D FP8 kernel compiles for sm_90a, with nvcc and with NVRTC, with no local memory (stack frame or
spills) and no serialised WGMMAs, for every distinct config the heuristic selects on the wgrad suites
(dense FP32 and BF16 out, accumulating or not; k-grouped), the GPU tests' edge shapes and tiles, and a
few multicast configs; the host's mirror of its shared-memory layout matches the kernel's constants.

No GPU is needed. Builds run in parallel threads into a fresh cache directory."""

from __future__ import annotations

import contextlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from deepgemm.heuristics import FP8_1D1D
from deepgemm.heuristics.config import GemmConfig, GemmShape
from deepgemm.heuristics.sm90 import make_config
from deepgemm.jit import CompileError, build_kernel
from deepgemm.jit.compiler import find_nvcc
from deepgemm.ops.fp8_1d1d import kernel as wgrad_kernel

from .harness import assert_layout_mirror, layout_type

NUM_SMS = 132
WGRAD_MN = ((7168, 2112), (1536, 24576), (512, 32768), (16384, 7168), (7168, 4096), (2048, 7168))
WGRAD_SHAPES = tuple((m, n, k) for m, n in WGRAD_MN for k in (4096, 8192))
EDGE_SIZES = (1, 7, 65, 129, 1000)
EDGE_SHAPES = tuple((m, n, 256) for m in EDGE_SIZES for n in EDGE_SIZES) + ((129, 768, 4096), (64, 768, 128))
K_GROUPED = tuple((g, m, n, 4096 * g) for g in (4, 8) for m, n in ((7168, 4096), (2048, 7168))) + tuple(
    (g, m, n, 128 * g) for g in (1, 3) for m in EDGE_SIZES for n in (7, 768, 1000))


@dataclass(frozen=True)
class Case:
    n: int
    k: int
    cfg: GemmConfig
    accumulate: bool
    k_grouped: bool = False

    @property
    def template_args(self) -> tuple[int | bool | str, ...]:
        spec = wgrad_kernel.kernel_spec(self.n, self.k, self.cfg, self.accumulate, self.k_grouped)
        return spec.template_args

    @property
    def id(self) -> str:
        c = self.cfg
        multicast = "mc1" if c.num_tma_multicast == 1 else "mc2A" if c.multicast_on_a else "mc2B"
        return (f"{'kgrouped' if self.k_grouped else 'dense'}-bm{c.block_m}-bn{c.block_n}-s{c.num_stages}"
                f"-{multicast}-d{c.num_d_chunks}-{'fp32' if c.out_bytes == 4 else 'bf16'}"
                f"{'-acc' if self.accumulate else ''}")


def selected_cases() -> list[Case]:
    dense = [Case(n, k, wgrad_kernel.dense_config(m, n, k, out_bytes, NUM_SMS), accumulate)
             for m, n, k in WGRAD_SHAPES + EDGE_SHAPES
             for out_bytes, accumulate in ((4, False), (4, True), (2, False))]
    grouped = [Case(n, k, wgrad_kernel.k_grouped_config(g, m, n, k, NUM_SMS), accumulate, True)
               for g, m, n, k in K_GROUPED for accumulate in (False, True)]
    return dense + grouped


def multicast_cases() -> list[Case]:
    """2-CTA multicast on A and on B (the suites' selections may hold none), dense and k-grouped."""
    shape = GemmShape(4096, 7168, 4096, 4, family=FP8_1D1D)
    return [Case(shape.n, shape.k, make_config(shape, NUM_SMS, block_m, block_n, 2, on_a), accumulate,
                 grouped)
            for block_m, block_n, on_a, accumulate, grouped in ((128, 128, True, True, False),
                                                                (128, 152, False, False, False),
                                                                (256, 96, True, True, True),
                                                                (64, 128, False, False, False))]


def determinism_cases() -> list[Case]:
    """The tiles of the GPU test `test_dense_tiles_are_deterministic_over_many_k_blocks`: two waves per
    warpgroup, two warpgroups taking turns, one warpgroup."""
    shape = GemmShape(2048, 2 * 1216, 8192, 4, family=FP8_1D1D)
    return [Case(shape.n, shape.k, make_config(shape, NUM_SMS, block_m, block_n), False)
            for block_m, block_n in ((256, 104), (128, 152), (64, 152))]


def distinct_cases() -> list[Case]:
    cases: dict[tuple, Case] = {}
    for case in selected_cases() + multicast_cases() + determinism_cases():
        cases.setdefault(case.template_args[2:], case)
    return list(cases.values())


CASES = distinct_cases()


def _have_nvcc() -> bool:
    try:
        return find_nvcc() is not None
    except FileNotFoundError:
        return False


NVCC = pytest.param("nvcc", marks=pytest.mark.skipif(not _have_nvcc(), reason="no nvcc found"))
_REPORT = re.compile(r"Function properties for (\S+)\s*\n[^\n]*?(\d+) bytes stack frame, "
                     r"(\d+) bytes spill stores, (\d+) bytes spill loads\s*\n[^\n]*?Used (\d+) registers")
_WGMMA_SERIALISED = re.compile(r"\((C751[0-9])\)[^\n]*?function '(\S+)'")


def _build(case: Case) -> tuple[str | None, str | None]:
    """(the kernel's symbol, None) once compiled with no local memory, else (None, the error)."""
    try:
        spec = wgrad_kernel.kernel_spec(case.n, case.k, case.cfg, case.accumulate, case.k_grouped)
        binary = build_kernel(spec.name, spec.header, spec.template_args, comment=spec.comment)
    except CompileError as error:  # LocalMemoryError included
        return None, f"{type(error).__name__}: {error}"
    return binary.symbol, None


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    done: dict[str, tuple[dict, str]] = {}

    def get(compiler: str):
        if compiler not in done:
            with pytest.MonkeyPatch.context() as env:
                env.setenv("DG_JIT_COMPILER", compiler)
                env.setenv("DG_JIT_CACHE_DIR", str(tmp_path_factory.mktemp(f"jit-cache-1d1d-{compiler}")))
                env.setenv("DG_JIT_PTXAS_CHECK", "1")
                env.setenv("DG_JIT_PTXAS_VERBOSE", "1")
                env.delenv("DG_JIT_DISABLE_CACHE", raising=False)
                log = io.StringIO()
                workers = os.cpu_count() or 2
                with contextlib.redirect_stderr(log), ThreadPoolExecutor(max_workers=workers) as pool:
                    results = dict(zip(CASES, pool.map(_build, CASES), strict=True))
            done[compiler] = (results, log.getvalue())
        return done[compiler]

    return get


def test_cases_cover_every_variant():
    assert {case.cfg.block_m for case in CASES} == {64, 128, 256}
    assert {case.cfg.out_bytes for case in CASES} == {2, 4}
    assert {case.cfg.num_tma_multicast for case in CASES} == {1, 2}
    assert {case.k_grouped for case in CASES} == {False, True}
    assert {case.accumulate for case in CASES} == {False, True}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
@pytest.mark.parametrize("compiler", [NVCC, "nvrtc"])
def test_kernel_compiles_without_local_memory(builds, compiler, case):
    results, log = builds(compiler)
    symbol, error = results[case]
    assert error is None, error
    assert symbol.startswith("_ZN8deepgemm18sm90_fp8_gemm_1d1d")
    reports = {name: tuple(map(int, numbers)) for name, *numbers in _REPORT.findall(log)}
    # A fresh cache: this run compiled the kernel, so ptxas reported on it.
    stack, spill_stores, spill_loads, registers = reports[symbol]
    assert (stack, spill_stores, spill_loads) == (0, 0, 0)
    assert 0 < registers <= 255
    serialised = [code for code, name in _WGMMA_SERIALISED.findall(log) if name == symbol]
    assert serialised == [], f"ptxas serialised WGMMAs: {serialised}"


def test_host_layout_mirror_matches_the_kernel(tmp_path, monkeypatch):
    """Dynamic shared memory and block size passed at launch equal `Fp8WgradLayout`'s, for every case."""
    asserts = []
    for case in CASES:
        spec = wgrad_kernel.kernel_spec(case.n, case.k, case.cfg, case.accumulate, case.k_grouped)
        layout = layout_type("Fp8WgradLayout", spec.template_args)
        asserts.append(f'static_assert({layout}::kSmemBytes == {spec.smem_bytes}u, "{case.id}");')
        asserts.append(f'static_assert({layout}::kNumThreads == {case.cfg.num_threads}u, "{case.id}");')
    assert_layout_mirror(tmp_path, monkeypatch, "wgrad_layout_probe", wgrad_kernel.HEADER, asserts)
