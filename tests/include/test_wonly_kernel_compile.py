"""The weight-only kernel compiles for sm_90a with NVRTC, with no local memory (stack frame or spills),
for every distinct config the selection picks on the benchmark suite's and the GPU tests' shapes (INT8 and
INT4, symmetric and with zero points, BF16 and FP16, the output dtypes, dense and masked); its SASS never
writes the A fragment of a register-A WGMMA group that may still be pending, nor touches its accumulators
(deepgemm.testing.wgmma_hazards: the assembler allocated the decode k-loop's fragment buffers over each
other once, wrong values on the GPU that depended on timing); and the host's mirror of its shared-memory
layout matches the kernel's constants.

No GPU is needed. DG_JIT_PTXAS_CHECK=1 makes a build with local memory fail; the SASS comes from
cuobjdump (the dev extras' nvidia-cuda-cuobjdump wheel, or a CUDA toolkit's)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from deepgemm.heuristics.families.wonly import WonlyConfig, select_wonly_config
from deepgemm.jit import CompileError, build_kernel
from deepgemm.ops.common import launch
from deepgemm.ops.wonly import kernel as wonly_kernel
from deepgemm.testing.wgmma_hazards import disassemble, find_cuobjdump, wgmma_hazards

from .harness import assert_layout_mirror, build_all, layout_type

NUM_SMS = 132
DSV3_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
DECODE_NK = ((8192, 8192), (28672, 4096))


@dataclass(frozen=True)
class Case:
    n: int
    k: int
    cfg: WonlyConfig
    group_size: int | None
    has_zeros: bool = False
    is_fp16: bool = False
    out_dtype: torch.dtype = torch.bfloat16
    kind: str = launch.GEMM_KIND_DENSE

    @property
    def template_args(self) -> tuple:
        return wonly_kernel.kernel_spec(self.n, self.k, self.cfg, self.group_size, self.has_zeros,
                                        self.is_fp16, self.out_dtype, self.kind).template_args

    @property
    def id(self) -> str:
        c = self.cfg
        return (f"{self.kind.rsplit(':', 1)[-1]}-int{c.weight_bits}-bm{c.block_m}-bn{c.block_n}"
                f"-s{c.num_stages}-split{c.num_splits}-g{self.group_size}{'-z' if self.has_zeros else ''}"
                f"{'-fp16' if self.is_fp16 else ''}-{str(self.out_dtype)[6:]}")


def selected_cases() -> list[Case]:
    cases = []
    for bits, group in ((8, None), (4, 128)):
        for m in (1, 8, 16, 32, 64, 4096):
            for n, k in DSV3_NK + DECODE_NK:
                cfg = select_wonly_config(m, n, k, bits, NUM_SMS)
                cases.append(Case(n, k, cfg, group))
    # Variants on one config each: zero points, FP16, FP32 output, per-group INT8, INT4 per channel.
    cfg8 = select_wonly_config(16, 4096, 7168, 8, NUM_SMS)
    cfg4 = select_wonly_config(16, 4096, 7168, 4, NUM_SMS)
    big4 = select_wonly_config(4096, 4096, 7168, 4, NUM_SMS)
    # Groups of one k-block read scales (and zero points) at every step of the k-loop, into slots that
    # hold them a pass (GroupParams): with the widest decode tile (64 tokens: two accumulator sets) and
    # zero points it is the most registers.
    wide4 = select_wonly_config(64, 4096, 7168, 4, NUM_SMS)
    cases += [Case(4096, 7168, wide4, 64, has_zeros=True), Case(4096, 7168, cfg4, 64),
              Case(4096, 7168, select_wonly_config(64, 4096, 7168, 8, NUM_SMS), 64)]
    # Groups of three k-blocks (a modulo that is not a mask) over split ranges that start mid-group, as
    # tests/ops/test_wonly_gpu.py runs them: INT8 64-token tiles (scales read half a pass ahead), INT4
    # with zero points.
    cases += [Case(2112, 7168, select_wonly_config(64, 2112, 7168, 8, NUM_SMS), 192),
              Case(7168, 16384, select_wonly_config(1, 7168, 16384, 4, NUM_SMS), 192, has_zeros=True)]
    cases += [Case(4096, 7168, cfg4, 128, has_zeros=True), Case(4096, 7168, big4, 128, has_zeros=True),
              Case(4096, 7168, cfg4, 128, is_fp16=True), Case(4096, 7168, cfg8, None, is_fp16=True),
              Case(4096, 7168, cfg8, 128, out_dtype=torch.float32), Case(4096, 7168, cfg4, None)]
    for bits in (8, 4):
        for expected_m, n, k in ((16, 4096, 7168), (48, 4096, 7168), (32, 7168, 2048)):
            cfg = select_wonly_config(expected_m, n, k, bits, NUM_SMS, 8, masked=True)
            cases.append(Case(n, k, cfg, 128 if bits == 4 else None, kind=launch.GEMM_KIND_MASKED))
    return cases


def distinct_cases() -> list[Case]:
    """One case per distinct instantiation up to N, K and the K group (loop trip counts), but for how
    often the k-loop reads a group's scales (ceil(4 / group k-blocks): every k-block, every other, ...,
    or once per K range per channel; the code and registers of GroupParams::step differ)."""
    cases: dict[tuple, Case] = {}
    for case in selected_cases():
        args = case.template_args
        cases.setdefault((*args[2:6], -(-4 // args[6]), *args[7:]), case)
    return list(cases.values())


CASES = distinct_cases()


CUOBJDUMP = find_cuobjdump()


@dataclass(frozen=True)
class Build:
    error: str | None          # None: compiled with no local memory
    hazards: tuple[str, ...]   # deepgemm.testing.wgmma_hazards of its SASS (empty without cuobjdump)


def _build(case: Case) -> Build:
    try:
        binary = build_kernel(wonly_kernel.KERNEL, wonly_kernel.HEADER, case.template_args)
    except CompileError as error:  # LocalMemoryError included
        return Build(f"{type(error).__name__}: {error}", ())
    hazards = wgmma_hazards(disassemble(binary.cubin, CUOBJDUMP)) if CUOBJDUMP else []
    return Build(None, tuple(hazards))


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("jit-cache-wonly"), CASES, _build)


def test_cases_cover_every_variant():
    assert {case.cfg.block_m for case in CASES} == {8, 16, 32, 64, 128, 256}
    assert {case.cfg.num_math_warpgroups for case in CASES} == {1, 2}
    assert {case.cfg.weight_bits for case in CASES} == {4, 8}
    assert any(case.cfg.num_splits > 1 for case in CASES) and any(case.cfg.num_splits == 1 for case in CASES)
    assert {case.kind for case in CASES} == {launch.GEMM_KIND_DENSE, launch.GEMM_KIND_MASKED}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_kernel_compiles_without_local_memory(builds, case):
    assert builds[case].error is None, builds[case].error


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_no_instruction_touches_the_registers_of_a_pending_wgmma(builds, case):
    """Every fragment buffer keeps its registers until the wait that retires the group reading it
    (WonlyMma::keep): no write to a pending group's A fragment, no access to its accumulators."""
    assert CUOBJDUMP, "no cuobjdump: install the dev extras (nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm)"
    assert builds[case].error is None, builds[case].error
    hazards = builds[case].hazards
    assert not hazards, f"{len(hazards)} hazards, the first: " + "; ".join(hazards[:5])


def test_host_layout_mirror_matches_the_kernel(tmp_path, monkeypatch):
    """Dynamic shared memory and block size passed at launch equal `WonlyLayout`'s, for every selection."""
    asserts = []
    for case in CASES:
        args = case.template_args
        # WonlyLayout<N, K, BLOCK_M, warpgroups, stages, bits, group k-blocks, splits>
        layout_args = (*args[:7], args[10])
        layout = layout_type("WonlyLayout", layout_args)
        asserts.append(f'static_assert({layout}::kSmemBytes == {case.cfg.smem_bytes}u, "{case.id}");')
        asserts.append(f'static_assert({layout}::kNumThreads == {case.cfg.num_threads}u, "{case.id}");')
        asserts.append(f'static_assert({layout}::BLOCK_N == {case.cfg.block_n}u, "{case.id}");')
    assert_layout_mirror(tmp_path, monkeypatch, "wonly_layout_probe", wonly_kernel.HEADER, asserts)
