"""The TF32 GEMM kernel and its operand-staging kernel compile for sm_90a with NVRTC, with no local
memory (stack frame or spills), for every distinct config the heuristic selects on the DeepSeek-V3
shapes as TF32 and as 3xTF32 products (with and without C), and the host's mirror of the GEMM's
shared-memory layout matches the kernel's constants.

No GPU is needed. DG_JIT_PTXAS_CHECK=1 makes a build with local memory fail; builds run in parallel
threads into a fresh cache directory."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from deepgemm.heuristics.config import GemmConfig
from deepgemm.heuristics.sm90 import select_config
from deepgemm.ops.tf32 import kernel as tf32_kernel

from .harness import assert_layout_mirror, build_all, build_error, layout_type

NUM_SMS = 132
DSV3_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
# Edge sizes through matmul: K not a multiple of 32 (a part's tail), N not a multiple of the tile.
EDGE_MNK = ((1, 4, 7), (17, 20, 129), (1000, 4100, 4097), (4097, 1000, 65))


@dataclass(frozen=True)
class Case:
    """One instantiation of `sm90_tf32_gemm`: a selected config, the number of products, C or not."""

    n: int
    k: int
    cfg: GemmConfig
    num_terms: int
    has_c: bool = False

    @property
    def template_args(self) -> tuple[int | bool | str, ...]:
        return tf32_kernel.kernel_spec(self.n, self.k, self.cfg, self.num_terms, self.has_c).template_args

    @property
    def id(self) -> str:
        c = self.cfg
        return (f"x{self.num_terms}-bm{c.block_m}-bn{c.block_n}-s{c.num_stages}-mc{c.num_tma_multicast}"
                f"{'A' if c.multicast_on_a else 'B'}-d{c.num_d_chunks}-lb{c.load_batch}"
                f"{'-c' if self.has_c else ''}")


def _case(m: int, n: int, k: int, num_terms: int, has_c: bool = False) -> Case:
    return Case(n, k, select_config(tf32_kernel.gemm_shape(m, n, k, num_terms), NUM_SMS), num_terms, has_c)


def selected_cases() -> list[Case]:
    shapes = [(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK] + list(EDGE_MNK)
    cases = [_case(m, n, k, terms) for m, n, k in shapes for terms in (1, 3)]
    return cases + [_case(4096, 7168, 2048, 1, has_c=True), _case(128, 2112, 7168, 3, has_c=True)]


def distinct_cases() -> list[Case]:
    """One case per distinct instantiation up to N and K (they change loop trip counts, not the code)."""
    cases: dict[tuple, Case] = {}
    for case in selected_cases():
        cases.setdefault(case.template_args[2:], case)
    return list(cases.values())


CASES = distinct_cases()
STAGE_CASES = [(k_contiguous, split) for k_contiguous in (True, False) for split in (True, False)]


def _build(case: Case | tuple[bool, bool]) -> str | None:
    if isinstance(case, Case):
        return build_error(tf32_kernel.KERNEL, tf32_kernel.HEADER, case.template_args)
    return build_error(tf32_kernel.STAGE_KERNEL, tf32_kernel.STAGE_HEADER, case)

@pytest.fixture(scope="module")
def build_errors(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("jit-cache-tf32"), [*CASES, *STAGE_CASES], _build)


def test_cases_cover_every_variant():
    assert {case.cfg.block_m for case in CASES} == {64, 128, 256}
    assert {case.cfg.num_tma_multicast for case in CASES} == {1, 2}
    assert {case.num_terms for case in CASES} == {1, 3}
    assert {case.has_c for case in CASES} == {False, True}
    assert {case.cfg.num_d_chunks for case in CASES} >= {1, 2, 4}
    assert {case.cfg.load_batch for case in CASES} == {1, 4}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_kernel_compiles_without_local_memory(build_errors, case):
    assert build_errors[case] is None, build_errors[case]


@pytest.mark.parametrize("case", STAGE_CASES, ids=lambda c: f"k_contiguous={c[0]}-split={c[1]}")
def test_stage_kernel_compiles_without_local_memory(build_errors, case):
    assert build_errors[case] is None, build_errors[case]


def test_host_layout_mirror_matches_the_kernel(tmp_path, monkeypatch):
    """Dynamic shared memory, block size and k-blocks equal `Tf32GemmLayout`'s, for every selection."""
    asserts = []
    for case in CASES:
        args = case.template_args
        # Tf32GemmLayout<K, BLOCK_M, BLOCK_N, stages, terms, D chunks>
        layout_args = (args[1], args[2], args[3], args[4], args[7], args[10])
        layout = layout_type("Tf32GemmLayout", layout_args)
        asserts.append(f'static_assert({layout}::kSmemBytes == {case.cfg.smem_bytes(case.k)}u, "{case.id}");')
        asserts.append(f'static_assert({layout}::kNumThreads == {case.cfg.num_threads}u, "{case.id}");')
        num_k_blocks = case.num_terms * -(-case.k // 32)
        asserts.append(f'static_assert({layout}::kNumKBlocks == {num_k_blocks}u, "{case.id}");')
    assert_layout_mirror(tmp_path, monkeypatch, "tf32_layout_probe", tf32_kernel.HEADER, asserts)
