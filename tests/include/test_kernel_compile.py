"""The FP8 kernel compiles for sm_90a, with nvcc and with NVRTC, for every distinct config the heuristic
selects on the DeepSeek-V3 shapes, a set of edge shapes and the MoE grouped suites, in every GemmKind
that selects it (132 SMs), and ptxas reports no local memory
(stack frame or spills). Also checks that the host's shared-memory and block-size mirror of the kernel's
layout agrees with the kernel's own constants.

No GPU is needed. Each compiler builds into a fresh cache directory, in parallel threads (the compilers
run outside the GIL)."""

from __future__ import annotations

import contextlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from deepgemm.heuristics.config import CONTIGUOUS, MASKED, GemmConfig, GemmShape
from deepgemm.heuristics.sm90 import make_config, select_config
from deepgemm.jit import CompileError, build_kernel
from deepgemm.jit.compiler import find_nvcc
from deepgemm.ops.common import launch
from deepgemm.ops.fp8 import kernel as fp8_kernel

from .harness import assert_layout_mirror, layout_type

NUM_SMS = 132
DSV3_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
DSV3_SHAPES = tuple((m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK)
# The GPU tests' edge shapes and a few more that select configs the others do not.
EDGE_SHAPES = (
    tuple((m, 7168, 2048) for m in (1, 7, 63, 65, 127, 129, 1000, 4097))
    + tuple((m, n, 7168) for m in (1, 129) for n in (8, 120, 1000, 7176))
    + tuple((m, 4096, k) for m in (7, 1000) for k in (16, 128, 208, 7168, 7296))
    + ((1, 8, 16), (7, 120, 208), (63, 1000, 7296), (65, 7176, 7296), (127, 120, 128), (129, 7176, 16),
       (1000, 1000, 16), (1000, 7176, 16), (4097, 7176, 16), (4097, 1000, 7168))
)


# The MoE benchmark suites: (groups, rows per group) x (N, K), contiguous and masked (decode included).
GROUPED_NK = ((4096, 7168), (7168, 2048))
CONTIGUOUS_SHAPES = tuple((g, rows, n, k) for g, rows in ((4, 8192), (8, 4096)) for n, k in GROUPED_NK)
MASKED_SHAPES = tuple((g, rows, n, k) for g, rows in ((1, 1024), (2, 512), (4, 256), (32, 16), (32, 64),
                                                     (32, 192)) for n, k in GROUPED_NK)
# Grouped shapes whose K / 128 is not a multiple of 4: the masked kind then reads B scales with rows
# padded to 16 bytes (`TileScalesB::kRowFloats`), and every grouped kind sizes its B-scale buffers for
# them; with uniform tiles and straddling ones (BLOCK_N 96, 160, 192). The first two are
# tools/sanitize.py's masked cases.
MASKED_EDGE_SHAPES = ((4, 128, 264, 272), (2, 320, 136, 128), (4, 200, 4096, 1152), (8, 64, 7168, 1408),
                      (4, 256, 3072, 640), (8, 128, 1536, 5248))
CONTIGUOUS_EDGE_SHAPES = ((4, 1024, 4096, 1152), (8, 512, 3072, 640))
# `deepgemm::GemmKind` enumerator values, for the mangled kernel name.
KIND_VALUES = {launch.GEMM_KIND_DENSE: 0, launch.GEMM_KIND_CONTIGUOUS_INDICES: 1,
               launch.GEMM_KIND_CONTIGUOUS_ENDS: 2, launch.GEMM_KIND_MASKED: 3}


@dataclass(frozen=True)
class Case:
    """One kernel instantiation: a selected config and the (N, K) of the first shape that selected it."""

    n: int
    k: int
    cfg: GemmConfig
    kind: str = launch.GEMM_KIND_DENSE

    @property
    def template_args(self) -> tuple[int | bool | str, ...]:
        return fp8_kernel.kernel_spec(self.n, self.k, self.cfg, self.kind).template_args

    @property
    def id(self) -> str:
        c = self.cfg
        multicast = "mc1" if c.num_tma_multicast == 1 else "mc2A" if c.multicast_on_a else "mc2B"
        out = "fp32" if c.out_bytes == 4 else "bf16"
        kind = self.kind.rsplit(":", 1)[-1]
        split = f"-split{c.split_k}" if c.split_k > 1 else ""
        tile = f"bm{c.block_m}-bn{c.block_n}-s{c.num_stages}"
        return f"{kind}-{tile}-{multicast}-{out}-n{self.n}-k{self.k}{split}"

    def mangled_args(self) -> str:
        """The template arguments as the Itanium ABI spells them in the kernel's symbol."""
        def mangle(arg: int | bool | str) -> str:
            if isinstance(arg, str):
                return f"LNS_8GemmKindE{KIND_VALUES[arg]}E"
            return f"Lb{int(arg)}E" if isinstance(arg, bool) else f"Lj{arg}E"

        return "I" + "".join(mangle(a) for a in self.template_args) + "E"


def selected_cases() -> list[Case]:
    """Every (shape, output type) selection at 132 SMs, in suite order: dense, then each MoE kind."""
    dense = [Case(n, k, select_config(GemmShape(m, n, k, out_bytes), NUM_SMS))
             for m, n, k in DSV3_SHAPES + EDGE_SHAPES for out_bytes in (2, 4)]
    contiguous = [Case(n, k, select_config(GemmShape(g * rows, n, k, 2, g, CONTIGUOUS), NUM_SMS), kind)
                  for g, rows, n, k in CONTIGUOUS_SHAPES + CONTIGUOUS_EDGE_SHAPES
                  for kind in (launch.GEMM_KIND_CONTIGUOUS_INDICES, launch.GEMM_KIND_CONTIGUOUS_ENDS)]
    masked = [Case(n, k, select_config(GemmShape(rows, n, k, out_bytes, g, MASKED), NUM_SMS),
                   launch.GEMM_KIND_MASKED)
              for g, rows, n, k in MASKED_SHAPES + MASKED_EDGE_SHAPES
              for out_bytes in ((2,) if (g, rows, n, k) in MASKED_SHAPES else (2, 4))]
    return dense + contiguous + masked


def distinct_cases() -> list[Case]:
    """One case per distinct config: N and K only change compile-time constants (loop trip counts,
    scheduler extents), not the tile code or its register use."""
    cases: dict[tuple, Case] = {}
    for case in selected_cases():
        cases.setdefault(case.template_args[2:], case)
    return list(cases.values())


def multicast_cases() -> list[Case]:
    """2-CTA multicast kernels on A and on B that the suites' selections may not contain (the model
    picks multicast only where it predicts a gain), unless a selection already has the same config."""
    shape = GemmShape(4096, 7168, 2048)
    selected = {case.template_args[2:] for case in selected_cases()}
    cases = [Case(shape.n, shape.k, make_config(shape, NUM_SMS, block_m, block_n, 2, on_a))
             for block_m, block_n, on_a in ((256, 128, True), (128, 192, False), (64, 112, True))]
    return [case for case in cases if case.template_args[2:] not in selected]


def split_cases() -> list[Case]:
    """Split-K kernels: the heuristic's picks on few-tile decode shapes, and the tiles the GPU tests force
    (one and two consumer warpgroups, straddling scale blocks, two waves, 3 to 16 slices), unless a
    selection already has the same config."""
    selected = {case.template_args[2:] for case in selected_cases()}
    few_tile = ((1, 512, 7168), (32, 512, 7168), (128, 512, 7168), (1, 1280, 8192), (1, 64, 7168))
    shapes = [GemmShape(m, n, k, out_bytes) for m, n, k in few_tile for out_bytes in (2, 4)]
    cases = [Case(s.n, s.k, select_config(s, NUM_SMS)) for s in shapes]
    forced = [(GemmShape(127, 520, 7296), block_m, block_n, 3)
              for block_m, block_n in ((64, 64), (64, 144), (128, 96), (256, 128))]
    forced += [(GemmShape(48, 1000, 14336), 64, 112, split_k) for split_k in (2, 16)]
    cases += [Case(s.n, s.k, make_config(s, NUM_SMS, bm, bn, split_k=split_k))
              for s, bm, bn, split_k in forced]
    assert all(case.cfg.split_k > 1 for case in cases)
    unique: dict[tuple, Case] = {}
    for case in cases:
        if case.template_args[2:] not in selected:
            unique.setdefault(case.template_args[2:], case)
    return list(unique.values())


CASES = distinct_cases() + multicast_cases() + split_cases()


def _have_nvcc() -> bool:
    try:
        return find_nvcc() is not None
    except FileNotFoundError:  # DG_JIT_NVCC names no executable
        return False


NVCC = pytest.param("nvcc", marks=pytest.mark.skipif(not _have_nvcc(), reason="no nvcc found"))

# ptxas' per-function report (nvcc prints the second line indented, NVRTC behind "ptxas .").
_REPORT = re.compile(r"Function properties for (\S+)\s*\n[^\n]*?(\d+) bytes stack frame, "
                     r"(\d+) bytes spill stores, (\d+) bytes spill loads\s*\n[^\n]*?Used (\d+) registers")

# ptxas' warnings that it serialised WGMMAs (C7514: registers of one in flight are touched; C7517: it
# inserted a wait of its own), which silently cost the two-set k-loop its overlap.
_WGMMA_SERIALISED = re.compile(r"\((C751[0-9])\)[^\n]*?function '(\S+)'")


@dataclass(frozen=True)
class PtxasReport:
    stack_frame: int
    spill_stores: int
    spill_loads: int
    registers: int


@dataclass(frozen=True)
class Build:
    symbol: str | None = None
    cubin: bytes = b""
    compiled: bool = False
    error: str | None = None
    report: PtxasReport | None = None
    wgmma_warnings: tuple[str, ...] = ()


def _build(case: Case) -> Build:
    try:
        spec = fp8_kernel.kernel_spec(case.n, case.k, case.cfg, case.kind)
        binary = build_kernel(spec.name, spec.header, spec.template_args, comment=spec.comment)
    except CompileError as error:  # LocalMemoryError included
        return Build(error=f"{type(error).__name__}: {error}")
    return Build(binary.symbol, binary.cubin, binary.compiled)


def build_all(compiler: str, cases: list[Case], cache_dir) -> dict[Case, Build]:
    """Compiles `cases` with `compiler` into `cache_dir`, with DG_JIT_PTXAS_CHECK=1 and ptxas' report."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DG_JIT_COMPILER", compiler)
        env.setenv("DG_JIT_CACHE_DIR", str(cache_dir))
        env.setenv("DG_JIT_PTXAS_CHECK", "1")
        # The report goes to stderr, where it is collected below to read the register counts.
        env.setenv("DG_JIT_PTXAS_VERBOSE", "1")
        env.delenv("DG_JIT_DISABLE_CACHE", raising=False)
        log = io.StringIO()
        with contextlib.redirect_stderr(log), ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            builds = dict(zip(cases, pool.map(_build, cases), strict=True))
    reports = {name: PtxasReport(*map(int, numbers)) for name, *numbers in _REPORT.findall(log.getvalue())}
    warnings: dict[str, list[str]] = {}
    for code, name in _WGMMA_SERIALISED.findall(log.getvalue()):
        warnings.setdefault(name, []).append(code)
    return {case: Build(b.symbol, b.cubin, b.compiled, b.error, reports.get(b.symbol),
                        tuple(warnings.get(b.symbol, ())))
            for case, b in builds.items()}


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """`builds(compiler)`: every case compiled with that compiler (once per module)."""
    done: dict[str, dict[Case, Build]] = {}

    def get(compiler: str) -> dict[Case, Build]:
        if compiler not in done:
            done[compiler] = build_all(compiler, CASES, tmp_path_factory.mktemp(f"jit-cache-{compiler}"))
        return done[compiler]

    return get


def test_cases_cover_the_suites():
    # Every selected config is compiled (up to N and K), and none is lost to the deduplication.
    compiled = {case.template_args[2:] for case in CASES}
    every = selected_cases() + multicast_cases() + split_cases()
    assert {case.template_args[2:] for case in every} == compiled
    assert len(CASES) == len(compiled)
    assert {case.cfg.block_m for case in CASES} == {64, 128, 256}
    assert {case.cfg.out_bytes for case in CASES} == {2, 4}
    assert {case.cfg.num_tma_multicast for case in CASES} == {1, 2}
    assert {case.kind for case in CASES} == set(KIND_VALUES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
@pytest.mark.parametrize("compiler", [NVCC, "nvrtc"])
def test_kernel_compiles_without_local_memory(builds, compiler, case):
    build = builds(compiler)[case]
    assert build.error is None, build.error
    # A fresh cache directory: this run compiled the kernel, so ptxas reported on it.
    assert build.compiled
    assert build.cubin[:4] == b"\x7fELF"
    # deepgemm::sm90_fp8_gemm_1d2d<args...>(unsigned, unsigned, const int*, const float*, unsigned char*,
    # unsigned long long x 2, TmaDescriptor x 4)
    expected = (f"_ZN8deepgemm18sm90_fp8_gemm_1d2d{case.mangled_args()}"
                "EvjjPKiPKfPhyyNS_13TmaDescriptorES7_S7_S7_")
    assert build.symbol == expected
    report = build.report
    assert report is not None, f"no ptxas report for {build.symbol}"
    assert (report.stack_frame, report.spill_stores, report.spill_loads) == (0, 0, 0), report
    # ptxas cannot exceed the per-thread register file; `setmaxnreg` raises the consumers' budget later.
    assert 0 < report.registers <= 255
    assert build.wgmma_warnings == (), f"ptxas serialised WGMMAs: {build.wgmma_warnings}"


def test_host_layout_mirror_matches_the_kernel(tmp_path, monkeypatch):
    """Dynamic shared memory and block size passed at launch equal `Fp8GemmLayout`'s, for every selection."""
    selections = {(case.template_args, case.cfg.smem_bytes(case.k), case.cfg.num_threads)
                  for case in selected_cases()}
    asserts = []
    for args, smem, threads in sorted(selections, key=repr):
        # Fp8GemmLayout takes the kernel's template arguments but the load batch (the 11th) and the
        # split count (the 13th).
        layout_args = (*args[:10], args[11])
        layout = layout_type("Fp8GemmLayout", layout_args)
        asserts.append(f'static_assert({layout}::kSmemBytes == {smem}u, "smem of {args}");')
        asserts.append(f'static_assert({layout}::kNumThreads == {threads}u, "threads of {args}");')
    assert_layout_mirror(tmp_path, monkeypatch, "fp8_layout_probe", fp8_kernel.HEADER, asserts)
