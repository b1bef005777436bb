"""The 16-bit GEMM kernel compiles for sm_90a with NVRTC, with no local memory (stack frame or spills),
for every distinct config the heuristic selects on the DeepSeek-V3 shapes in the four layouts and on the
grouped suites, and the host's mirror of its shared-memory layout matches the kernel's constants.

No GPU is needed. DG_JIT_PTXAS_CHECK=1 makes a build with local memory fail; builds run in parallel
threads (the compiler runs outside the GIL) into a fresh cache directory."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from deepgemm.heuristics import BF16
from deepgemm.heuristics.config import CONTIGUOUS, MASKED, GemmConfig, GemmShape
from deepgemm.heuristics.sm90 import make_config, select_config
from deepgemm.ops.bf16 import kernel as bf16_kernel
from deepgemm.ops.common import launch

from .harness import assert_layout_mirror, build_all, build_error, layout_type

NUM_SMS = 132
DSV3_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
GROUPED_NK = ((4096, 7168), (7168, 2048))
OUT_BYTES = {torch.bfloat16: 2, torch.float16: 2, torch.float32: 4}


@dataclass(frozen=True)
class Case:
    """One instantiation of `sm90_bf16_gemm`: a selected config and what else its template names."""

    n: int
    k: int
    cfg: GemmConfig
    layout: str = "nt"
    out_dtype: torch.dtype = torch.bfloat16
    has_c: bool = False
    is_fp16: bool = False
    kind: str = launch.GEMM_KIND_DENSE

    @property
    def template_args(self) -> tuple[int | bool | str, ...]:
        a_mn_major, b_mn_major = self.layout[0] == "t", self.layout[1] == "n"
        return bf16_kernel.kernel_spec(self.n, self.k, self.cfg, a_mn_major, b_mn_major, self.is_fp16,
                                       self.out_dtype, self.has_c, self.kind).template_args

    @property
    def id(self) -> str:
        c = self.cfg
        return (f"{self.kind.rsplit(':', 1)[-1]}-{self.layout}-bm{c.block_m}-bn{c.block_n}-s{c.num_stages}"
                f"-mc{c.num_tma_multicast}{'A' if c.multicast_on_a else 'B'}-d{c.num_d_chunks}"
                f"-{str(self.out_dtype)[6:]}"
                f"{'-c' if self.has_c else ''}{'-fp16' if self.is_fp16 else ''}"
                f"{f'-split{c.split_k}' if c.split_k > 1 else ''}")


def _dense(m: int, n: int, k: int, layout: str, out_dtype: torch.dtype, **kw) -> Case:
    shape = GemmShape(m, n, k, OUT_BYTES[out_dtype], family=BF16, b_mn_major=layout[1] == "n")
    return Case(n, k, select_config(shape, NUM_SMS), layout, out_dtype, **kw)


def selected_cases() -> list[Case]:
    dense = [_dense(m, n, k, layout, out_dtype) for m in (64, 128, 4096) for n, k in DSV3_NK
             for layout in ("nt", "nn", "tn", "tt") for out_dtype in (torch.bfloat16, torch.float32)]
    # C, FP16 in and out: epilogue and instruction variants on one config each.
    variants = [_dense(4096, 7168, 2048, "nt", torch.float32, has_c=True),
                _dense(128, 7168, 2048, "tn", torch.bfloat16, has_c=True),
                _dense(4096, 4096, 7168, "nn", torch.float16, is_fp16=True, has_c=True)]
    grouped = [Case(n, k, select_config(GemmShape(g * rows, n, k, 2, g, CONTIGUOUS, family=BF16), NUM_SMS),
                    kind=launch.GEMM_KIND_CONTIGUOUS_INDICES)
               for g, rows in ((4, 8192), (8, 4096)) for n, k in GROUPED_NK]
    grouped += [Case(n, k, select_config(GemmShape(rows, n, k, 2, g, MASKED, family=BF16), NUM_SMS),
                     kind=launch.GEMM_KIND_MASKED)
                for g, rows in ((4, 256), (32, 16), (32, 192)) for n, k in GROUPED_NK]
    # Split-K: the heuristic's picks on few-tile decode shapes and the tiles the GPU tests force.
    few_tile = ((1, 512, 7168), (32, 512, 7168), (128, 512, 7168), (1, 1280, 8192))
    split = [_dense(m, n, k, "nt", torch.bfloat16) for m, n, k in few_tile]
    for layout, out_dtype in (("tn", torch.float16), ("nn", torch.float32)):
        shape = GemmShape(72, 1024, 7168, OUT_BYTES[out_dtype], family=BF16, b_mn_major=layout[1] == "n")
        split.append(Case(1024, 7168, make_config(shape, NUM_SMS, 64, 128, split_k=7), layout, out_dtype,
                          is_fp16=out_dtype == torch.float16))
    for block_m, block_n in ((128, 208), (256, 96)):
        shape = GemmShape(127, 520, 7296, family=BF16)
        split.append(Case(520, 7296, make_config(shape, NUM_SMS, block_m, block_n, split_k=6)))
    return dense + variants + grouped + split


def distinct_cases() -> list[Case]:
    """One case per distinct instantiation up to N and K (they change loop trip counts, not the code)."""
    cases: dict[tuple, Case] = {}
    for case in selected_cases():
        cases.setdefault(case.template_args[2:], case)
    return list(cases.values())


CASES = distinct_cases()


def _build(case: Case) -> str | None:
    return build_error(bf16_kernel.KERNEL, bf16_kernel.HEADER, case.template_args)

@pytest.fixture(scope="module")
def build_errors(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("jit-cache-bf16"), CASES, _build)


def test_cases_cover_every_variant():
    assert {case.layout for case in CASES} == {"nt", "nn", "tn", "tt"}
    assert {case.cfg.block_m for case in CASES} == {64, 128, 256}
    assert {case.cfg.num_tma_multicast for case in CASES} == {1, 2}
    kinds = (launch.GEMM_KIND_DENSE, launch.GEMM_KIND_CONTIGUOUS_INDICES, launch.GEMM_KIND_MASKED)
    assert {case.kind for case in CASES} == set(kinds)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_kernel_compiles_without_local_memory(build_errors, case):
    assert build_errors[case] is None, build_errors[case]


def test_host_layout_mirror_matches_the_kernel(tmp_path, monkeypatch):
    """Dynamic shared memory and block size passed at launch equal `Bf16GemmLayout`'s, for every selection."""
    asserts = []
    for case in CASES:
        args = case.template_args
        # Bf16GemmLayout<N, K, BLOCK_M, BLOCK_N, stages, A MN-major, B MN-major, out type, D chunks, kind>
        layout_args = (*args[:5], *args[7:9], args[10], args[13], args[15])
        layout = layout_type("Bf16GemmLayout", layout_args)
        asserts.append(f'static_assert({layout}::kSmemBytes == {case.cfg.smem_bytes(case.k)}u, "{case.id}");')
        asserts.append(f'static_assert({layout}::kNumThreads == {case.cfg.num_threads}u, "{case.id}");')
    assert_layout_mirror(tmp_path, monkeypatch, "bf16_layout_probe", bf16_kernel.HEADER, asserts)
