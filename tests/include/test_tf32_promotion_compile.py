"""The 3xTF32 promotion schedules compile for sm_90a with NVRTC with no local memory and with no WGMMA
that ptxas serialises (or waits for where the source does not): for each schedule the kernel takes
(promote every 1, 2 or 4 k-blocks, one or two accumulator sets), the model's best tile on each `fp32`
suite shape (M = 4096, the DeepSeek-V3 N x K: the configs `tools/sweep.py --family tf32x3 --promotions
all` times first) and on edge K values whose k-block counts leave spans with tails.

ptxas follows which registers an in-flight WGMMA writes only through straight-line code; where it cannot
prove a read safe it inserts a `warpgroup.wait` (C7517) or serialises every WGMMA (C7514/C7515), which
would undo the overlap of the two-set schedule without failing any other test."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from deepgemm.heuristics.families.tf32 import TF32X3
from deepgemm.heuristics.sm90 import candidate_configs, estimated_cycles
from deepgemm.jit.build import PACKAGE_INCLUDE_DIR
from deepgemm.jit.codegen import render_stub
from deepgemm.jit.compiler import NvrtcCompiler, compile_cubin, local_memory_uses
from deepgemm.ops.tf32 import kernel as tf32_kernel

from .test_tf32_kernel_compile import Case

NUM_SMS = 132
FP32_SUITE_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
# (M, N, K) with K of 3, 9 and 387 k-blocks per tile over the three products.
EDGE_MNK = ((1, 4, 7), (4097, 1000, 65), (1000, 4100, 4097))
# ptxas' notes on WGMMAs it serialised or waited for on its own.
SERIALISED = re.compile(r"C751[4-7]|serialized|warpgroup\.wait is injected")


def _best(m: int, n: int, k: int, every: int, sets: int) -> Case:
    shape = tf32_kernel.gemm_shape(m, n, k, 3)
    ranked = sorted(candidate_configs(shape, NUM_SMS, ((every, sets),)),
                    key=lambda c: estimated_cycles(shape, c))
    return Case(n, k, ranked[0], 3)


def _tail_class(case: Case) -> tuple[int, bool]:
    """What of K changes the code: the k-blocks left after the full spans, and whether there are any."""
    cfg = case.cfg
    span = cfg.promote_every if cfg.promote_sets == 1 else max(8, 4 * cfg.promote_every)
    num_k_blocks = 3 * -(-case.k // 32)
    return num_k_blocks % span, num_k_blocks >= span


def promotion_cases() -> list[Case]:
    cases: dict[tuple, Case] = {}
    for every, sets in TF32X3.promotions:
        for m, n, k in [(4096, n, k) for n, k in FP32_SUITE_NK] + list(EDGE_MNK):
            case = _best(m, n, k, every, sets)
            cases.setdefault((*case.template_args[2:], *_tail_class(case)), case)
    return list(cases.values())


CASES = promotion_cases()


def _ptxas_log(case: Case, tmp_dir) -> str:
    """NVRTC's log with ptxas' report for the case (raises CompileError on a failed build)."""
    directory = tmp_dir / _id(case)
    directory.mkdir(parents=True)
    source = directory / "kernel.cu"
    source.write_text(render_stub(tf32_kernel.HEADER, tf32_kernel.KERNEL, case.template_args))
    compiler = NvrtcCompiler()
    return compile_cubin(compiler, source, [PACKAGE_INCLUDE_DIR], compiler.flags()).log


@pytest.fixture(scope="module")
def ptxas_logs(tmp_path_factory):
    tmp_dir = tmp_path_factory.mktemp("tf32-promotions")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DG_JIT_PTXAS_VERBOSE", "1")
        env.delenv("DG_JIT_PTXAS_CHECK", raising=False)
        with ThreadPoolExecutor(max_workers=4) as pool:
            return dict(zip(CASES, pool.map(lambda case: _ptxas_log(case, tmp_dir), CASES), strict=True))


def _id(case: Case) -> str:
    return f"{case.id}-p{case.cfg.promote_every}x{case.cfg.promote_sets}-n{case.n}-k{case.k}"


def test_cases_cover_every_schedule_and_tail():
    assert {(c.cfg.promote_every, c.cfg.promote_sets) for c in CASES} == set(TF32X3.promotions)
    for every, sets in TF32X3.promotions:
        tails = {_tail_class(c) for c in CASES if (c.cfg.promote_every, c.cfg.promote_sets) == (every, sets)}
        if sets == 2 or every > 1:
            assert any(rest for rest, _ in tails), (every, sets)  # a tail span
        if sets == 2 or every > 3:  # a 3xTF32 tile runs at least 3 k-blocks
            assert any(not full for _, full in tails), (every, sets)  # fewer k-blocks than one span


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_schedule_compiles_without_local_memory_or_serialised_wgmma(ptxas_logs, case):
    log = ptxas_logs[case]
    assert "Function properties" in log, log  # ptxas reported
    assert local_memory_uses(log) == [], log
    assert not SERIALISED.search(log), log
