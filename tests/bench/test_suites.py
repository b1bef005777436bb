"""The benchmark's shape suites: the DeepSeek-V3 and anchor tables, their providers, splits, twins and
CPU problems, and how the CLI selects suites and providers for a CPU run."""

import pytest
import torch

from deepgemm.bench.cli import build_parser, select_providers, select_suites
from deepgemm.bench.providers import DEEPGEMM_MATMUL_FP8, FP8_BY_HAND
from deepgemm.bench.report import speedups
from deepgemm.bench.suites import (
    BF16,
    BF16_GROUPED,
    DENSE,
    GROUPED_MASKED,
    MATMUL_FP8,
    SUITES,
    Problem,
    bf16_gemm_bytes,
    nt_twin,
    parse_shapes,
)
from deepgemm.quant import align
from deepgemm.testing import CONTIGUOUS_M_ALIGNMENT, MAJORS

from .support import CPU, GROUPED_SUITES, outcome

FP8_SUITES = ("dense", *GROUPED_SUITES)
DSV3_NKS = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]


def test_dense_suite_is_the_deepseek_v3_table():
    nks = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
    expected = [(m, n, k) for m in (64, 128, 4096) for n, k in nks]
    assert [(p.m, p.n, p.k, p.num_groups) for p in DENSE.problems] == [(*shape, 1) for shape in expected]
    assert len(DENSE.problems) == 18
    assert SUITES["dense"] is DENSE


def test_dense_suite_providers_and_splits():
    assert [p.name for p in DENSE.providers] == [
        "deepgemm",
        "cublas_blockwise",
        "cublas_per_tensor",
        "cublas_bf16",
    ]
    assert DENSE.baseline == "deepgemm"
    sizes = {split.label: sum(split.contains(p) for p in DENSE.problems) for split in DENSE.splits}
    assert sizes == {"M<=128": 12, "M>128": 6}


def test_parse_shapes():
    assert parse_shapes("64,2112,7168; 4096,7168,2048;") == (
        Problem(64, 2112, 7168),
        Problem(4096, 7168, 2048),
    )
    for bad in ("", "64,2112", "64,x,7168", "0,16,16"):
        with pytest.raises(ValueError):
            parse_shapes(bad)


def test_grouped_suites_are_the_anchor_tables_and_decode_sizes():
    nks = [(4096, 7168), (7168, 2048)]

    def rows(name):
        return [(p.num_groups, p.m, p.n, p.k, p.layout, p.max_m) for p in SUITES[name].problems]

    assert rows("grouped_contiguous") == [
        (g, m, n, k, "contiguous", None) for g, m in ((4, 8192), (8, 4096)) for n, k in nks
    ]
    assert all(p.m % CONTIGUOUS_M_ALIGNMENT == 0 for p in SUITES["grouped_contiguous"].problems)
    assert rows("grouped_masked") == [
        (g, m, n, k, "masked", 4096) for g, m in ((1, 1024), (2, 512), (4, 256)) for n, k in nks
    ]
    decode = SUITES["grouped_decode"].problems
    assert len(decode) == 8 and {(p.n, p.k) for p in decode} == set(nks)
    assert len({p.m for p in decode}) == 4
    for p in decode:
        assert p.num_groups == 32 and p.layout == "masked" and 16 <= p.m <= 192 and p.max_m == align(p.m, 128)


def test_grouped_suites_providers_ratios_and_cpu_problems():
    masked = ["cublas_blockwise_loop", "deepgemm", "deepgemm_dense"]
    assert {name: [p.name for p in SUITES[name].providers] for name in GROUPED_SUITES} == {
        "grouped_contiguous": ["cublas_blockwise_loop", "deepgemm", "deepgemm_offsets", "deepgemm_dense"],
        "grouped_masked": masked,
        "grouped_decode": masked,
    }
    for name in GROUPED_SUITES:
        suite = SUITES[name]
        assert suite.baseline == "cublas_blockwise_loop" and suite.faster == "provider"
        assert suite.pairs == (("deepgemm", "deepgemm_dense"),)
        assert [split.label for split in suite.splits] == ["all"]
        assert all(suite.splits[0].contains(p) for p in suite.problems)
        # Everything but the cuBLAS loop runs on the CPU path, on small problems of the suite's layout.
        assert [p.name for p in suite.providers if p.has_cpu_path] == [p.name for p in suite.providers[1:]]
        assert suite.cpu_problems and {p.layout for p in suite.cpu_problems} == {suite.problems[0].layout}
    assert DENSE.faster == "baseline" and DENSE.pairs == () and DENSE.cpu_problems
    # The masked suite's inputs: every group holds its problem's rows, and the hint is that count.
    for problem in GROUPED_MASKED.cpu_problems:
        suite_inputs = GROUPED_MASKED.make_inputs(problem, CPU, 0)
        assert suite_inputs.masked_m.tolist() == [problem.m] * problem.num_groups
        assert suite_inputs.expected_m == problem.m and suite_inputs.a.shape[1] == problem.max_m


def test_bf16_suite_is_the_deepseek_v3_table_in_nt_and_every_layout_at_m_4096():
    nt = [(m, n, k, "nt") for m in (64, 128, 4096) for n, k in DSV3_NKS]
    others = [(4096, n, k, major) for major in ("nn", "tn", "tt") for n, k in DSV3_NKS]
    assert [(p.m, p.n, p.k, p.major) for p in BF16.problems] == nt + others
    assert all(p.num_groups == 1 and p.layout == "dense" for p in BF16.problems)
    assert SUITES["bf16"] is BF16 and MAJORS == ("nt", "nn", "tn", "tt")
    assert [p.name for p in BF16.providers] == ["deepgemm", "cublas_bf16"]
    assert BF16.baseline == "deepgemm" and BF16.faster == "baseline" and BF16.pairs == ()
    sizes = {split.label: sum(split.contains(p) for p in BF16.problems) for split in BF16.splits}
    assert sizes == {"NT M<=128": 12, "NT M>128": 6, "NN M>128": 6, "TN M>128": 6, "TT M>128": 6}
    # Every other layout is held against NT on the same shape, measured before it.
    for index, problem in enumerate(BF16.problems):
        twin = BF16.twin(problem)
        if problem.major == "nt":
            assert twin is None
        else:
            assert twin == Problem(problem.m, problem.n, problem.k) and twin in BF16.problems[:index]
    for index, problem in enumerate(BF16.cpu_problems):
        twin = BF16.twin(problem)
        assert twin is None or twin in BF16.cpu_problems[:index]
    assert {p.major for p in BF16.cpu_problems} == set(MAJORS)
    # The records carry the 16-bit kernel's config; matmul_fp8 runs the FP8 kernel.
    assert BF16.family == BF16_GROUPED.family == "bf16" and MATMUL_FP8.family == "fp8_1d2d"
    assert [p.name for p in BF16.providers if p.has_cpu_path] == ["deepgemm"]


def test_bf16_grouped_suite():
    nks = [(4096, 7168), (7168, 2048)]
    assert [(p.num_groups, p.m, p.n, p.k, p.layout, p.max_m) for p in BF16_GROUPED.problems] == [
        *((4, 8192, n, k, "contiguous", None) for n, k in nks),
        *((4, 256, n, k, "masked", 4096) for n, k in nks),
    ]
    assert [p.name for p in BF16_GROUPED.providers] == ["cublas_bf16_loop", "deepgemm", "deepgemm_dense"]
    assert BF16_GROUPED.baseline == "cublas_bf16_loop" and BF16_GROUPED.faster == "provider"
    assert BF16_GROUPED.pairs == (("deepgemm", "deepgemm_dense"),) and BF16_GROUPED.twin is None
    sizes = {
        split.label: sum(split.contains(p) for p in BF16_GROUPED.problems) for split in BF16_GROUPED.splits
    }
    assert sizes == {"contiguous": 2, "masked": 2}
    assert {p.layout for p in BF16_GROUPED.cpu_problems} == {"contiguous", "masked"}
    assert [p.name for p in BF16_GROUPED.providers if p.has_cpu_path] == ["deepgemm", "deepgemm_dense"]
    assert bf16_gemm_bytes(Problem(256, 7168, 2048, 4, "masked", 4096)) == 2 * 4 * (
        256 * 2048 + 7168 * 2048 + 256 * 7168
    )
    # The suite's inputs are BF16, unquantised, and count the same flops as its problems.
    for problem in BF16_GROUPED.cpu_problems:
        inputs = BF16_GROUPED.make_inputs(problem, CPU, 0)
        assert inputs.a.dtype == inputs.b.dtype == torch.bfloat16 and not inputs.quantised
        assert inputs.flops == problem.flops


def test_matmul_fp8_suite_times_matmul_against_the_calls_by_hand():
    nks = [(7168, 2048), (4096, 7168)]
    assert [(p.m, p.n, p.k, p.major) for p in MATMUL_FP8.problems] == [
        (m, n, k, "nn") for m in (128, 4096) for n, k in nks
    ]
    assert [p.name for p in MATMUL_FP8.providers] == ["by_hand", "matmul"]
    # The baseline is by hand and the ratio is t_matmul / t_by_hand: the bar reads "<= 1.15x" directly.
    assert MATMUL_FP8.baseline == "by_hand" and MATMUL_FP8.faster == "baseline"
    assert speedups({"by_hand": outcome("ok", 100.0), "matmul": outcome("ok", 110.0)}, "by_hand") == {
        "matmul": pytest.approx(1.1)
    }
    assert all(p.has_cpu_path for p in MATMUL_FP8.providers)
    assert FP8_BY_HAND.reference == "fp8" and DEEPGEMM_MATMUL_FP8.reference == "bf16"


def test_fp8_suites_keep_their_problems_in_nt():
    for name in FP8_SUITES:
        suite = SUITES[name]
        assert suite.twin is None and suite.family == "fp8_1d2d"
        assert {p.major for p in (*suite.problems, *suite.cpu_problems)} == {"nt"}
    assert Problem(64, 2112, 7168).major == "nt" and nt_twin(Problem(1, 2, 3)) is None
    assert nt_twin(Problem(1, 2, 3, major="tn")) == Problem(1, 2, 3)


def test_cpu_runs_select_each_suite_on_its_small_problems():
    parser = build_parser()
    suites = select_suites(parser.parse_args(["--cpu"]), on_cuda=False)
    assert [suite.name for suite in suites] == [f"cpu_path_{name}" for name in SUITES]
    assert [suite.problems for suite in suites] == [suite.cpu_problems for suite in SUITES.values()]
    (masked,) = select_suites(parser.parse_args(["--cpu", "--suite", "grouped_masked"]), on_cuda=False)
    assert masked.baseline == "cublas_blockwise_loop" and masked.problems == GROUPED_MASKED.cpu_problems
    (custom,) = select_suites(parser.parse_args(["--cpu", "--shapes", "64,256,512"]), on_cuda=False)
    assert custom.name == "cpu_path_dense" and custom.problems == (Problem(64, 256, 512),)
    names = [p.name for p in select_providers(GROUPED_MASKED, None, on_cuda=False)]
    assert names == ["deepgemm", "deepgemm_dense"]
    assert select_providers(GROUPED_MASKED, None) == GROUPED_MASKED.providers
    named = select_providers(GROUPED_MASKED, ["cublas_blockwise_loop", "deepgemm"], on_cuda=False)
    assert [p.name for p in named] == ["cublas_blockwise_loop", "deepgemm"]
