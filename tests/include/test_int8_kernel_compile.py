"""The INT8 GEMM kernel compiles for sm_90a with NVRTC, with no local memory (stack frame or spills), for
every distinct config the heuristic selects on the shapes the GPU tests and the `int8` benchmark suite run
(each output type, with and without bias and zero points), in every kind; and the host's mirror of its
shared-memory layout matches the kernel's constants.

No GPU is needed. DG_JIT_PTXAS_CHECK=1 makes a build with local memory fail; builds run in parallel
threads (the compiler runs outside the GIL) into a fresh cache directory."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from deepgemm.heuristics import INT8
from deepgemm.heuristics.config import CONTIGUOUS, MASKED, GemmConfig, GemmShape
from deepgemm.heuristics.sm90 import make_config, select_config
from deepgemm.ops.common import launch
from deepgemm.ops.int8 import kernel as int8_kernel

from .harness import assert_layout_mirror, build_all, build_error, layout_type

NUM_SMS = 132
DSV3_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
EDGE_MS = (1, 7, 17, 65, 129, 1000, 4097)
GROUPED_NK = ((4096, 7168), (7168, 2048))
OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.int32)


@dataclass(frozen=True)
class Case:
    """One instantiation of `sm90_int8_gemm`: a selected config and what else its template names."""

    n: int
    k: int
    cfg: GemmConfig
    out_dtype: torch.dtype = torch.bfloat16
    bias_dtype: torch.dtype | None = None
    has_azp: bool = False
    kind: str = launch.GEMM_KIND_DENSE

    @property
    def template_args(self) -> tuple[int | bool | str, ...]:
        spec = int8_kernel.kernel_spec(
            self.n, self.k, self.cfg, self.out_dtype, self.bias_dtype, self.has_azp, self.kind
        )
        return spec.template_args

    @property
    def id(self) -> str:
        c = self.cfg
        bias = f"-bias{str(self.bias_dtype)[6:]}" if self.bias_dtype else ""
        return (
            f"{self.kind.rsplit(':', 1)[-1]}-bm{c.block_m}-bn{c.block_n}-s{c.num_stages}"
            f"-mc{c.num_tma_multicast}{'A' if c.multicast_on_a else 'B'}-d{c.num_d_chunks}"
            f"-lb{c.load_batch}"
            f"-{str(self.out_dtype)[6:]}{bias}{'-azp' if self.has_azp else ''}"
        )


def _dense(m: int, n: int, k: int, out_dtype: torch.dtype, **kw) -> Case:
    shape = GemmShape(m, n, k, out_dtype.itemsize, family=INT8)
    return Case(n, k, select_config(shape, NUM_SMS), out_dtype, **kw)


def selected_cases() -> list[Case]:
    shapes = [(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK] + [(4096, 7168, 16384)]
    shapes += [(m, 4096, 7168) for m in EDGE_MS] + [(m, 1000, 4112) for m in EDGE_MS]
    # FP16 output differs from BF16 in its conversion only: it runs with the epilogue variants below.
    dense = [
        _dense(m, n, k, out) for m, n, k in shapes for out in (torch.bfloat16, torch.float32, torch.int32)
    ]
    # Bias and zero points on the widest tiles (the most registers) and on one-warpgroup tiles.
    variants = (
        (torch.bfloat16, torch.float32, True),
        (torch.bfloat16, torch.bfloat16, False),
        (torch.float16, torch.float16, True),
        (torch.float16, None, False),
        (torch.float32, torch.float32, True),
        (torch.bfloat16, None, True),
    )
    epilogues = [
        _dense(m, n, k, out, bias_dtype=bias, has_azp=azp)
        for m, n, k in ((4096, 7168, 2048), (4096, 2112, 7168), (64, 7168, 2048), (129, 1000, 4112))
        for out, bias, azp in variants
    ]
    grouped = []
    for g, rows in ((4, 8192), (8, 4096), (4, 384)):
        for n, k in GROUPED_NK:
            for out, bias, azp in (
                (torch.bfloat16, None, False),
                (torch.int32, None, False),
                (torch.bfloat16, torch.float32, True),
            ):
                shape = GemmShape(g * rows, n, k, out.itemsize, g, CONTIGUOUS, family=INT8)
                grouped.append(
                    Case(
                        n,
                        k,
                        select_config(shape, NUM_SMS),
                        out,
                        bias,
                        azp,
                        launch.GEMM_KIND_CONTIGUOUS_INDICES,
                    )
                )
    for g, rows in ((1, 1024), (4, 256), (4, 384), (32, 16), (32, 192)):
        for n, k in GROUPED_NK:
            for out, bias, azp in (
                (torch.bfloat16, None, False),
                (torch.int32, None, False),
                (torch.bfloat16, torch.float32, True),
            ):
                shape = GemmShape(rows, n, k, out.itemsize, g, MASKED, family=INT8)
                grouped.append(
                    Case(n, k, select_config(shape, NUM_SMS), out, bias, azp, launch.GEMM_KIND_MASKED)
                )
    return dense + epilogues + grouped


def forced_cases() -> list[Case]:
    """Configs the GPU tests force (multicast on A and on B, D in chunks, load batches, 256-row tiles)."""
    shape = GemmShape(1000, 1000, 7296, 2, family=INT8)
    cases = [
        Case(1000, 7296, make_config(shape, 16, bm, bn, mc, on_a, num_d_chunks=chunks), torch.bfloat16)
        for bm, bn, chunks in ((256, 128, 4), (128, 256, 2), (128, 64, 1), (64, 32, 1))
        for mc, on_a in ((1, True), (2, True), (2, False))
    ]
    # The raw output through D chunks, and a tile of an odd number of 8-column groups per chunk.
    int32_shape = GemmShape(1000, 1000, 7296, 4, family=INT8)
    cases += [
        Case(1000, 7296, make_config(int32_shape, 16, bm, bn, 1, True, num_d_chunks=chunks), torch.int32)
        for bm, bn, chunks in ((256, 128, 4), (128, 256, 4), (64, 48, 1))
    ]
    batch_shape = GemmShape(200, 2000, 7296, 2, family=INT8)
    cases += [
        Case(2000, 7296, make_config(batch_shape, 32, bm, bn, num_stages=6, load_batch=batch), torch.bfloat16)
        for bm, bn in ((64, 16), (128, 64))
        for batch in (1, 4)
    ]
    contiguous = GemmShape(2944, 1000, 896, 2, 9, CONTIGUOUS, family=INT8)
    cases += [
        Case(
            1000,
            896,
            make_config(contiguous, NUM_SMS, bm, bn, mc, True),
            torch.bfloat16,
            None,
            False,
            launch.GEMM_KIND_CONTIGUOUS_INDICES,
        )
        for bm, bn, mc in ((256, 128, 1), (256, 128, 2), (128, 144, 1), (64, 128, 1))
    ]
    return cases


def distinct_cases() -> list[Case]:
    """One case per distinct instantiation up to N and K (they change loop trip counts, not the code)."""
    cases: dict[tuple, Case] = {}
    for case in selected_cases() + forced_cases():
        cases.setdefault(case.template_args[2:], case)
    return list(cases.values())


CASES = distinct_cases()


def _build(case: Case) -> str | None:
    return build_error(int8_kernel.KERNEL, int8_kernel.HEADER, case.template_args)

@pytest.fixture(scope="module")
def build_errors(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("jit-cache-int8"), CASES, _build)


def test_cases_cover_every_variant():
    assert {case.cfg.block_m for case in CASES} == {64, 128, 256}
    assert {case.cfg.num_tma_multicast for case in CASES} == {1, 2}
    assert {case.cfg.multicast_on_a for case in CASES if case.cfg.num_tma_multicast == 2} == {True, False}
    assert {case.cfg.num_d_chunks for case in CASES} >= {1, 2, 4}
    assert {case.out_dtype for case in CASES} == set(OUT_DTYPES)
    assert {case.bias_dtype for case in CASES} == {None, torch.float32, torch.bfloat16, torch.float16}
    assert {case.has_azp for case in CASES} == {True, False}
    kinds = (launch.GEMM_KIND_DENSE, launch.GEMM_KIND_CONTIGUOUS_INDICES, launch.GEMM_KIND_MASKED)
    assert {case.kind for case in CASES} == set(kinds)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_kernel_compiles_without_local_memory(build_errors, case):
    assert build_errors[case] is None, build_errors[case]


def test_host_layout_mirror_matches_the_kernel(tmp_path, monkeypatch):
    """Dynamic shared memory and block size passed at launch equal `Int8GemmLayout`'s, for every case."""
    asserts = []
    for case in CASES:
        args = case.template_args
        # Int8GemmLayout<N, K, BLOCK_M, BLOCK_N, stages, out type, D chunks, kind>
        layout_args = (*args[:5], args[7], args[11], args[13])
        layout = layout_type("Int8GemmLayout", layout_args)
        asserts.append(f'static_assert({layout}::kSmemBytes == {case.cfg.smem_bytes(case.k)}u, "{case.id}");')
        asserts.append(f'static_assert({layout}::kNumThreads == {case.cfg.num_threads}u, "{case.id}");')
    assert_layout_mirror(tmp_path, monkeypatch, "int8_layout_probe", int8_kernel.HEADER, asserts)
