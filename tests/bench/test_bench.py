"""The benchmark on the CPU: suites, arithmetic, runner records and JSON, the CLI's CPU path, timers,
and tools/gpu_check.py's bookkeeping."""

import dataclasses
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import deepgemm
from deepgemm.bench import cli as bench_cli
from deepgemm.bench import providers, runner
from deepgemm.bench.cli import build_parser, cpu_suite, select_providers, select_suites
from deepgemm.bench.cli import main as bench_main
from deepgemm.bench.providers import (
    CUBLAS_BF16_LAYOUT,
    CUBLAS_BF16_LOOP,
    CUBLAS_BLOCKWISE_LOOP,
    DEEPGEMM_BF16,
    DEEPGEMM_CONTIGUOUS,
    DEEPGEMM_MATMUL_FP8,
    FP8_BY_HAND,
    Provider,
    ProviderUnavailable,
    _blockwise_b_scale_candidates,
    _per_tensor_cast_to_fp8,
)
from deepgemm.bench.report import (
    TABLE_HEADER,
    format_geomeans,
    format_problem,
    gbps,
    geomean,
    pair_speedups,
    speedups,
    split_geomeans,
    split_minima,
    table_header,
    tflops,
    twin_label,
    twin_speedups,
    write_json,
)
from deepgemm.bench.runner import deepgemm_config, run_provider, run_suite
from deepgemm.bench.suites import (
    BF16,
    BF16_GROUPED,
    DENSE,
    GROUPED_MASKED,
    MATMUL_FP8,
    SUITES,
    Problem,
    Split,
    Suite,
    bf16_gemm_bytes,
    fp8_gemm_bytes,
    nt_twin,
    parse_shapes,
)
from deepgemm.quant import align
from deepgemm.testing import (
    CONTIGUOUS_M_ALIGNMENT,
    MAJORS,
    Bf16Inputs,
    DenseInputs,
    calc_diff,
    contiguous_starts,
    make_bf16_inputs,
    make_dense_inputs,
    make_grouped_inputs,
    ref_fp8_gemm_nt,
)
from deepgemm.testing.bench import (
    _calls_events,
    bench,
    bench_cpu,
    bench_host_overhead,
    bench_kineto,
    bench_kineto_burst,
)

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
GROUPED_SUITES = ("grouped_contiguous", "grouped_masked", "grouped_decode")
FP8_SUITES = ("dense", *GROUPED_SUITES)
DSV3_NKS = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
requires_grouped_ops = pytest.mark.skipif(
    not hasattr(deepgemm, "m_grouped_fp8_gemm_nt_masked"), reason="the grouped GEMMs are not exported yet"
)


# ---- suites -------------------------------------------------------------------------------------


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
    assert BF16.ab_bytes == BF16_GROUPED.ab_bytes == 2 and MATMUL_FP8.ab_bytes == 1
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
    assert speedups({"by_hand": _result("ok", 100.0), "matmul": _result("ok", 110.0)}, "by_hand") == {
        "matmul": pytest.approx(1.1)
    }
    assert all(p.has_cpu_path for p in MATMUL_FP8.providers)
    assert FP8_BY_HAND.reference == "fp8" and DEEPGEMM_MATMUL_FP8.reference == "bf16"


def test_fp8_suites_keep_their_problems_in_nt():
    for name in FP8_SUITES:
        suite = SUITES[name]
        assert suite.twin is None and suite.ab_bytes == 1
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


# ---- arithmetic ---------------------------------------------------------------------------------


def test_tflops_and_gbps_on_hand_values():
    problem = Problem(64, 2112, 7168)
    assert problem.flops == 2 * 64 * 2112 * 7168 == 1_937_768_448
    # The anchors' first row: 10.7 us -> 181 TFLOPS.
    assert tflops(problem.flops, 10.7e-6) == pytest.approx(181.1, abs=0.05)
    # FP8 A and B, FP32 scales (A: 64 x 56, B: 17 x 56), BF16 D.
    nbytes = (64 * 7168 + 2112 * 7168) + 4 * (64 * 56 + 17 * 56) + 2 * 64 * 2112
    assert fp8_gemm_bytes(problem) == nbytes == 15_886_048
    assert gbps(nbytes, 10e-6) == pytest.approx(1588.6048)
    # Groups multiply every term; a K tail still gets a whole scale block.
    assert fp8_gemm_bytes(Problem(10, 200, 130, num_groups=3)) == 3 * (
        (10 * 130 + 200 * 130) + 4 * (10 * 2 + 2 * 2) + 2 * 10 * 200
    )


def test_grouped_flops_count_valid_rows_only():
    contiguous = Problem(8192, 4096, 7168, 4, "contiguous")
    assert contiguous.flops == 2 * 4 * 8192 * 4096 * 7168
    # The anchors' grouped rows: contiguous 4 x 8192, 1396.6 us -> 1378 TFLOPS; masked 1 x 1024 of
    # max_m 4096, 45.2 us -> 1329 TFLOPS (masked-off rows are not work).
    assert tflops(contiguous.flops, 1396.6e-6) == pytest.approx(1378, abs=0.5)
    masked = Problem(1024, 4096, 7168, 1, "masked", 4096)
    assert masked.flops == 2 * 1024 * 4096 * 7168
    assert tflops(masked.flops, 45.2e-6) == pytest.approx(1329, abs=2)
    assert fp8_gemm_bytes(Problem(256, 7168, 2048, 4, "masked", 4096)) == fp8_gemm_bytes(
        Problem(256, 7168, 2048, 4)
    )
    # Uneven groups: 2 * sum(valid rows) * N * K, whatever the padding.
    for layout, max_m in (("contiguous", None), ("masked", 64)):
        inputs = make_grouped_inputs(layout, 3, (5, 0, 17), 16, 32, max_m, CPU, seed=0)
        assert inputs.num_valid_rows == 22 and inputs.flops == 2 * 22 * 16 * 32
    # The suites' inputs do the same count as their problems.
    for name in GROUPED_SUITES:
        for problem in SUITES[name].cpu_problems:
            assert SUITES[name].make_inputs(problem, CPU, 0).flops == problem.flops


def test_geomean():
    assert geomean([1.0, 4.0]) == pytest.approx(2.0)
    assert geomean([2.08, 1.14, 1.18]) == pytest.approx((2.08 * 1.14 * 1.18) ** (1 / 3))
    assert geomean([]) is None


def _result(status: str, us: float | None) -> dict:
    return {"status": status, "us": us}


def test_speedups_use_only_correct_providers():
    results = {
        "deepgemm": _result("ok", 10.0),
        "fast": _result("ok", 5.0),
        "slow": _result("ok", 20.0),
        "wrong": _result("wrong", 1.0),
        "gone": _result("unavailable", None),
    }
    assert speedups(results, "deepgemm") == {"fast": 0.5, "slow": 2.0}
    assert speedups(results | {"deepgemm": _result("error", None)}, "deepgemm") == {}


def test_speedups_toward_the_provider_and_pair_ratios():
    results = {
        "loop": _result("ok", 30.0),
        "deepgemm": _result("ok", 20.0),
        "dense": _result("ok", 16.0),
        "bad": _result("wrong", 1.0),
    }
    assert speedups(results, "loop", "provider") == {"deepgemm": 1.5, "dense": 1.875}
    assert speedups(results, "loop") == {"deepgemm": pytest.approx(2 / 3), "dense": pytest.approx(16 / 30)}
    pairs = [("deepgemm", "dense"), ("deepgemm", "bad"), ("deepgemm", "missing")]
    assert pair_speedups(results, pairs) == {"deepgemm/dense": 0.8}


def test_split_geomeans():
    ratios = [
        (Problem(64, 1, 1), {"x": 2.0}),
        (Problem(128, 1, 1), {"x": 8.0}),
        (Problem(4096, 1, 1), {"x": 1.5}),
    ]
    splits = (
        Split("small", lambda p: p.m <= 128),
        Split("large", lambda p: p.m > 128),
        Split("none", lambda p: False),
    )
    summary = split_geomeans(ratios, splits, ["x", "y"])
    assert summary["x"] == {
        "small": {"geomean": pytest.approx(4.0), "n": 2},
        "large": {"geomean": pytest.approx(1.5), "n": 1},
        "none": {"geomean": None, "n": 0},
    }
    assert summary["y"]["small"] == {"geomean": None, "n": 0}


def test_twin_speedups_and_split_minima():
    results = {"deepgemm": _result("ok", 10.0), "cublas": _result("ok", 8.0), "bad": _result("wrong", 1.0)}
    twin = {"deepgemm": _result("ok", 9.0), "cublas": _result("error", None), "bad": _result("ok", 1.0)}
    assert twin_speedups(results, twin) == {"deepgemm": pytest.approx(0.9)}
    assert twin_speedups(results, {}) == {}
    assert twin_label(Problem(1, 2, 3, major="tn"), Problem(1, 2, 3)) == "tn/nt"
    ratios = [
        (Problem(4096, 1, 1, major="nn"), {"x": 0.97}),
        (Problem(4096, 2, 1, major="nn"), {"x": 1.02}),
        (Problem(4096, 1, 1, major="tt"), {}),
    ]
    splits = (Split("NN", lambda p: p.major == "nn"), Split("TT", lambda p: p.major == "tt"))
    assert split_minima(ratios, splits, ["x"]) == {"x": {"NN": 0.97, "TT": None}}


def _ok(us: float) -> dict:
    return {"status": "ok", "reason": None, "us": us, "tflops": 1.0, "gbps": 2.0, "diffs": {"fp8": 1e-6},
            "reference": "fp8"}  # fmt: skip


def test_grouped_table_and_geomean_lines():
    problem = Problem(256, 7168, 2048, 4, "masked", 4096)
    results = {"cublas_blockwise_loop": _ok(30.0), "deepgemm": _ok(20.0), "deepgemm_dense": _ok(16.0)}
    ratios = speedups(results, "cublas_blockwise_loop", "provider")
    pair_ratios = pair_speedups(results, [("deepgemm", "deepgemm_dense")])
    lines = format_problem(problem, results, ratios, pair_ratios).splitlines()
    assert table_header("masked").split()[:6] == ["G", "M", "max_m", "N", "K", "provider"]
    assert lines[0].split()[:6] == ["4", "256", "4096", "7168", "2048", "cublas_blockwise_loop"]
    assert lines[1].split()[:2] == ["deepgemm", "20.0"] and "1.50x" in lines[1]
    assert lines[-1].split() == ["deepgemm/deepgemm_dense", "speed:", "0.80x"]
    # Grouped rows line up under the grouped header; the dense header is unchanged.
    assert lines[1].index("deepgemm") == table_header("masked").index("provider")
    assert TABLE_HEADER == table_header("dense") and TABLE_HEADER.split()[:4] == ["M", "N", "K", "provider"]
    contiguous = format_problem(Problem(8192, 4096, 7168, 4, "contiguous"), results, ratios)
    assert contiguous.split()[:5] == ["4", "8192", "-", "4096", "7168"]

    splits = (Split("all", lambda p: True),)
    summary = split_geomeans([(problem, ratios)], splits, ["deepgemm", "deepgemm_dense"])
    pair_summary = split_geomeans([(problem, pair_ratios)], splits, ["deepgemm/deepgemm_dense"])
    text = format_geomeans("cublas_blockwise_loop", summary, "provider", pair_summary).splitlines()
    assert text[0] == "geometric-mean speed relative to cublas_blockwise_loop:"
    assert text[1].split() == ["deepgemm", "all", "(1):", "1.50x"]
    assert text[-1].split() == ["deepgemm/deepgemm_dense", "all", "(1):", "0.80x"]
    assert format_geomeans("deepgemm", summary).startswith("geometric-mean speed of deepgemm relative to:")


def test_from_rest_line_and_ratios():
    problem = Problem(8192, 4096, 7168, 4, "contiguous")
    results = {
        "cublas_blockwise_loop": _ok(1600.0) | {"us_from_rest": 1500.0, "tflops_from_rest": 1283.0},
        "deepgemm": _ok(1500.0) | {"us_from_rest": 1250.0, "tflops_from_rest": 1539.6},
        "deepgemm_dense": _ok(1450.0) | {"us_from_rest": None, "tflops_from_rest": None},
    }
    ratios = speedups(results, "cublas_blockwise_loop", "provider", "us_from_rest")
    pair_ratios = pair_speedups(results, [("deepgemm", "cublas_blockwise_loop")], "us_from_rest")
    # Only providers with a from-rest time take part; the sustained ratios are unchanged.
    assert ratios == {"deepgemm": pytest.approx(1.2)} and pair_ratios == {
        "deepgemm/cublas_blockwise_loop": pytest.approx(1.2)
    }
    assert pair_speedups(results, [("deepgemm_dense", "deepgemm")], "us_from_rest") == {}
    sustained = speedups(results, "cublas_blockwise_loop", "provider")
    assert sustained["deepgemm_dense"] == pytest.approx(1600 / 1450)
    lines = format_problem(problem, results, {}, {}, None, False, ratios, pair_ratios).splitlines()
    assert lines[-1].split() == [
        "from", "rest:", "cublas_blockwise_loop", "1500.0", "us", "1283.0", "TFLOPS",
        "deepgemm", "1250.0", "us", "1539.6", "TFLOPS", "1.20x", "deepgemm/cublas_blockwise_loop", "1.20x",
    ]  # fmt: skip
    # No from-rest times, no line.
    assert "from rest" not in format_problem(problem, {"deepgemm": _ok(1.0)}, {})


def test_layout_column_and_twin_lines():
    problem = Problem(4096, 7168, 2048, major="tn")
    results = {"deepgemm": _ok(100.0), "cublas_bf16": _ok(105.0)}
    ratios = speedups(results, "deepgemm")
    lines = format_problem(
        problem, results, ratios, {}, ("tn/nt", {"deepgemm": 0.96, "cublas_bf16": 1.01}), show_major=True
    ).splitlines()
    header = table_header("dense", show_major=True)
    assert header.split()[:5] == ["M", "N", "K", "major", "provider"]
    assert lines[0].split()[:5] == ["4096", "7168", "2048", "tn", "deepgemm"]
    assert lines[0].index("deepgemm") == header.index("provider")
    assert lines[-1].split() == ["tn/nt", "speed:", "deepgemm", "0.96x", "cublas_bf16", "1.01x"]
    # Without show_major the dense rows are as before.
    assert format_problem(problem, results, ratios).split()[:4] == ["4096", "7168", "2048", "deepgemm"]
    assert table_header("masked", show_major=True).split()[:7] == [
        "G",
        "M",
        "max_m",
        "N",
        "K",
        "major",
        "provider",
    ]

    splits = (Split("TN M>128", lambda p: p.major == "tn"),)
    twin_summary = split_geomeans([(problem, {"deepgemm": 0.96})], splits, ["deepgemm"])
    worst = split_minima([(problem, {"deepgemm": 0.96})], splits, ["deepgemm"])
    text = format_geomeans("deepgemm", {}, twin_summary=twin_summary, twin_worst=worst).splitlines()
    assert text[0].startswith("speed relative to the twin (t_twin / t_problem)")
    assert text[1].split() == ["deepgemm", "TN", "M>128", "(1):", "0.96x", "(worst", "0.96x)"]


# ---- grouped inputs -----------------------------------------------------------------------------


def test_contiguous_inputs_bookkeeping():
    counts = (100, 0, 130, 128, 1)
    inputs = make_grouped_inputs("contiguous", 5, counts, 256, 384, None, CPU, seed=3)
    assert inputs.starts == contiguous_starts(counts) == (0, 128, 128, 384, 512)
    assert inputs.a.shape == (640, 384) and inputs.a.dtype == torch.float8_e4m3fn
    assert inputs.sfa.shape == (640, 3) and inputs.b.shape == (5, 256, 384) and inputs.sfb.shape == (5, 2, 3)
    assert inputs.masked_m is None and inputs.expected_m is None

    m_indices = inputs.m_indices
    assert m_indices.dtype == torch.int32 and m_indices.shape == (640,)
    expected = torch.full((640,), -1, dtype=torch.int32)
    for group, (start, count) in enumerate(zip(inputs.starts, counts, strict=True)):
        assert start % CONTIGUOUS_M_ALIGNMENT == 0
        expected[start : start + count] = group
    assert torch.equal(m_indices, expected) and int((m_indices >= 0).sum()) == sum(counts)

    # group_ends follows the offsets API: ends[g] = align(ends[g - 1], 128) + count[g], ends[-1] := 0;
    # the rows it assigns are exactly m_indices'.
    ends = inputs.group_ends.tolist()
    assert inputs.group_ends.dtype == torch.int32 and ends == [100, 128, 258, 512, 513]
    rebuilt, previous = torch.full((640,), -1, dtype=torch.int32), 0
    for group, (end, count) in enumerate(zip(ends, counts, strict=True)):
        assert end == align(previous, CONTIGUOUS_M_ALIGNMENT) + count
        rebuilt[align(previous, CONTIGUOUS_M_ALIGNMENT) : end] = group
        previous = end
    assert torch.equal(rebuilt, m_indices)
    assert align(ends[-1], CONTIGUOUS_M_ALIGNMENT) == inputs.a.shape[0]

    assert torch.equal(inputs.valid_rows(inputs.a_bf16), inputs.a_bf16[m_indices >= 0])
    assert torch.equal(inputs.group_rows(inputs.a_bf16, 2), inputs.a_bf16[128:258])


def test_masked_inputs_bookkeeping():
    counts = (0, 64, 17, 64)
    inputs = make_grouped_inputs("masked", 4, counts, 200, 256, 64, CPU, seed=1)
    assert inputs.a.shape == (4, 64, 256) and inputs.sfa.shape == (4, 64, 2)
    assert inputs.b.shape == (4, 200, 256) and inputs.sfb.shape == (4, 2, 2)
    assert inputs.masked_m.dtype == torch.int32 and inputs.masked_m.tolist() == list(counts)
    assert inputs.expected_m == 37  # ceil(145 / 4)
    assert inputs.m_indices is None and inputs.group_ends is None
    valid = torch.arange(64)[None, :] < inputs.masked_m[:, None]
    assert torch.equal(inputs.valid_rows(inputs.a_bf16), inputs.a_bf16[valid])

    uniform = make_grouped_inputs("masked", 2, 48, 128, 128, 128, CPU, seed=1, expected_m=40)
    assert uniform.masked_m.tolist() == [48, 48] and uniform.expected_m == 40
    for problem in GROUPED_MASKED.cpu_problems:
        suite_inputs = GROUPED_MASKED.make_inputs(problem, CPU, 0)
        assert suite_inputs.masked_m.tolist() == [problem.m] * problem.num_groups
        assert suite_inputs.expected_m == problem.m and suite_inputs.a.shape[1] == problem.max_m


def _dequantised(q: torch.Tensor, sf: torch.Tensor, rows_per_scale: int) -> torch.Tensor:
    scales = sf.repeat_interleave(128, dim=-1)[..., : q.shape[-1]]
    scales = scales.repeat_interleave(rows_per_scale, dim=-2)[..., : q.shape[-2], :]
    return q.float() * scales


def test_grouped_inputs_are_seeded_quantised_random_normal():
    first = make_grouped_inputs("contiguous", 2, (100, 28), 136, 256, None, CPU, seed=5)
    again = make_grouped_inputs("contiguous", 2, (100, 28), 136, 256, None, CPU, seed=5)
    other = make_grouped_inputs("contiguous", 2, (100, 28), 136, 256, None, CPU, seed=6)
    assert torch.equal(first.a_bf16, again.a_bf16) and torch.equal(first.b_bf16, again.b_bf16)
    assert torch.equal(first.a.view(torch.uint8), again.a.view(torch.uint8))
    assert not torch.equal(first.a_bf16, other.a_bf16)
    assert 0.9 < float(first.a_bf16.float().std()) < 1.1 and 0.9 < float(first.b_bf16.float().std()) < 1.1
    # Padding rows hold random data too: a kernel that reads them would show it.
    assert float(first.a_bf16[100:128].float().std()) > 0.5
    assert calc_diff(_dequantised(first.a, first.sfa, 1), first.a_bf16) < 1e-3
    assert calc_diff(_dequantised(first.b, first.sfb, 128), first.b_bf16) < 1e-3


@pytest.mark.parametrize("layout", ["contiguous", "masked"])
def test_grouped_references_match_per_group_dense_gemms(layout):
    counts = (37, 0, 128, 5)
    inputs = make_grouped_inputs(layout, 4, counts, 136, 384, 128 if layout == "masked" else None, CPU, 2)
    fp8, bf16 = inputs.reference("fp8"), inputs.reference("bf16")
    assert fp8.shape == bf16.shape == (170, 136) and fp8.dtype == bf16.dtype == torch.float32
    experts = [inputs.expert_inputs(group) for group in range(4)]
    assert [expert.a.shape[0] for expert in experts] == list(counts)
    per_group = torch.cat([ref_fp8_gemm_nt((e.a, e.sfa), (e.b, e.sfb)) for e in experts])
    torch.testing.assert_close(fp8, per_group, rtol=1e-6, atol=1e-5)
    assert calc_diff(fp8, bf16) < 1e-3
    # Per-group outputs (empty groups left out) stack into the same rows.
    assert torch.equal(inputs.valid_rows([per_group[:37], per_group[37:165], per_group[165:]]), per_group)
    with pytest.raises(ValueError, match="unknown reference kind"):
        inputs.reference("fp16")

    # The dense GEMM of the same total size: every valid row times group 0's weights, built once.
    dense = inputs.dense_equivalent()
    assert dense is inputs.dense_equivalent()
    assert torch.equal(dense.a_bf16, inputs.valid_rows(inputs.a_bf16)) and dense.a.shape == (170, 384)
    assert torch.equal(dense.sfa, inputs.valid_rows(inputs.sfa))
    assert torch.equal(dense.b.view(torch.uint8), inputs.b[0].view(torch.uint8))
    assert torch.equal(dense.sfb, inputs.sfb[0])


@pytest.mark.parametrize(
    "args",
    [
        ("dense", 2, 8, 16, 16, None),
        ("contiguous", 2, (8,), 16, 16, None),
        ("contiguous", 2, (8, -1), 16, 16, None),
        ("contiguous", 2, 8, 16, 16, 128),
        ("masked", 2, 8, 16, 16, None),
        ("masked", 2, (8, 129), 16, 16, 128),
    ],
)
def test_make_grouped_inputs_rejects_inconsistent_arguments(args):
    with pytest.raises(ValueError):
        make_grouped_inputs(*args, CPU, 0)


# ---- 16-bit and matmul inputs -------------------------------------------------------------------


@pytest.mark.parametrize("major", MAJORS)
def test_bf16_inputs_are_stored_as_the_major_says(major):
    inputs = make_bf16_inputs(24, 40, 56, major, CPU, seed=4)
    stored_a = {"n": (24, 56), "t": (56, 24)}[major[0]]
    stored_b = {"t": (40, 56), "n": (56, 40)}[major[1]]
    assert inputs.major == major and inputs.a.shape == stored_a and inputs.b.shape == stored_b
    assert inputs.a.dtype == inputs.b.dtype == torch.bfloat16
    assert inputs.a.is_contiguous() and inputs.b.is_contiguous()
    # a_mk / b_kn are views of the stored tensors, never copies.
    assert inputs.a_mk.shape == (24, 56) and inputs.a_mk.data_ptr() == inputs.a.data_ptr()
    assert inputs.b_kn.shape == (56, 40) and inputs.b_kn.data_ptr() == inputs.b.data_ptr()
    reference = inputs.reference("bf16")
    assert reference.dtype == torch.float32 and reference is inputs.reference("bf16")
    torch.testing.assert_close(reference, inputs.a_mk.double().matmul(inputs.b_kn.double()).float())
    assert inputs.reference_kinds == ("bf16",) and torch.equal(inputs.valid_rows(reference), reference)
    assert 0.9 < float(inputs.a.float().std()) < 1.1
    again = make_bf16_inputs(24, 40, 56, major, CPU, seed=4)
    assert torch.equal(again.a, inputs.a) and torch.equal(again.b, inputs.b)
    with pytest.raises(ValueError, match="unknown reference kind"):
        inputs.reference("fp8")


def test_bf16_inputs_reject_an_unknown_major():
    with pytest.raises(ValueError, match="major must be one of"):
        make_bf16_inputs(8, 8, 8, "mk", CPU, seed=0)


def test_matmul_inputs_hold_b_row_major_k_by_n():
    inputs = make_dense_inputs(64, 136, 256, CPU, seed=1, b_kn=True)
    assert isinstance(inputs, DenseInputs)
    assert inputs.b_bf16.shape == (136, 256) and inputs.b_bf16.t().is_contiguous()
    assert inputs.b.shape == (136, 256) and inputs.sfb.shape == (2, 2)
    assert calc_diff(inputs.reference("fp8"), inputs.reference("bf16")) < 1e-3
    plain = make_dense_inputs(64, 136, 256, CPU, seed=1)
    assert plain.b_bf16.is_contiguous()


def test_grouped_inputs_with_bf16_operands():
    for layout, max_m in (("contiguous", None), ("masked", 64)):
        inputs = make_grouped_inputs(
            layout, 3, (5, 0, 17), 16, 32, max_m, CPU, 0, operand_dtype=torch.bfloat16
        )
        fp8 = make_grouped_inputs(layout, 3, (5, 0, 17), 16, 32, max_m, CPU, 0)
        # Same draws as the FP8 inputs, used as they are.
        assert (
            torch.equal(inputs.a_bf16, fp8.a_bf16) and inputs.a is inputs.a_bf16 and inputs.b is inputs.b_bf16
        )
        assert inputs.sfa is None and inputs.sfb is None and not inputs.quantised and fp8.quantised
        assert inputs.reference_kinds == ("bf16",) and fp8.reference_kinds == ("fp8", "bf16")
        torch.testing.assert_close(inputs.reference("bf16"), fp8.reference("bf16"))
        with pytest.raises(ValueError, match="no 'fp8' reference"):
            inputs.reference("fp8")
        dense = inputs.dense_equivalent()
        assert isinstance(dense, Bf16Inputs) and dense.major == "nt" and dense is inputs.dense_equivalent()
        assert torch.equal(dense.a, inputs.valid_rows(inputs.a_bf16)) and torch.equal(
            dense.b, inputs.b_bf16[0]
        )
        assert isinstance(fp8.dense_equivalent(), DenseInputs)
    with pytest.raises(ValueError, match="operand_dtype"):
        make_grouped_inputs("masked", 2, 8, 16, 16, 128, CPU, 0, operand_dtype=torch.float16)


# ---- providers (the parts that run without CUDA) ----------------------------------------------


def test_blockwise_b_scales_match_torch_layout_rules():
    # KB a multiple of 4: one layout, sfb.t() itself ([KB, NB], strides (1, KB)).
    sfb = torch.rand(17, 56)
    (scale_b,) = _blockwise_b_scale_candidates(sfb)
    assert scale_b.shape == (56, 17) and scale_b.stride() == (1, 56) and torch.equal(scale_b, sfb.t())
    # KB = 5: padded to 8 for newer torch, unpadded for older; the values are sfb's either way.
    sfb = torch.rand(3, 5)
    padded, plain = _blockwise_b_scale_candidates(sfb)
    assert padded.shape == (8, 3) and padded.stride() == (1, 8)
    assert torch.equal(padded[:5], sfb.t()) and not padded[5:].any()
    assert plain.shape == (5, 3) and plain.stride() == (1, 5)


def test_per_tensor_quantisation_is_within_fp8_accuracy():
    torch.manual_seed(0)
    a, b = torch.randn(64, 1024, dtype=torch.bfloat16), torch.randn(256, 1024, dtype=torch.bfloat16)
    (qa, sa), (qb, sb) = _per_tensor_cast_to_fp8(a), _per_tensor_cast_to_fp8(b)
    assert qa.dtype == torch.float8_e4m3fn and sa.numel() == 1 and sa.dtype == torch.float32
    assert qa.float().abs().max() == 448
    product = (qa.float() * sa) @ (qb.float() * sb).t()
    assert calc_diff(product, a.float() @ b.float().t()) < 1e-3


def _measure(run) -> dict:
    return {"us": 1.0}


def test_cublas_loop_runs_the_dense_blockwise_call_per_nonempty_group(monkeypatch):
    inputs = make_grouped_inputs("contiguous", 4, (37, 0, 128, 5), 136, 384, None, CPU, seed=2)
    result = run_provider(CUBLAS_BLOCKWISE_LOOP, inputs, _measure, ("us",))
    assert result["status"] == "unavailable" and "CUDA" in result["reason"]

    # Without CUDA, stand in for scaled_mm with the dense reference: the loop must hand each
    # non-empty group's valid rows and weights to the dense provider's code, and stack the outputs.
    seen = []

    def fake_blockwise(expert):
        seen.append(expert.a.shape[0])
        return lambda: ref_fp8_gemm_nt((expert.a, expert.sfa), (expert.b, expert.sfb)).bfloat16()

    monkeypatch.setattr(providers, "_require_cuda", lambda inputs: None)
    monkeypatch.setattr(providers, "_prepare_cublas_blockwise", fake_blockwise)
    result = run_provider(CUBLAS_BLOCKWISE_LOOP, inputs, _measure, ("us",))
    assert seen == [37, 128, 5]
    assert result["status"] == "ok" and result["diffs"]["fp8"] < 1e-5 and result["diffs"]["bf16"] < 1e-3


@pytest.mark.parametrize("major", MAJORS)
def test_cublas_bf16_runs_matmul_on_transposed_views(major, monkeypatch):
    inputs = make_bf16_inputs(40, 24, 72, major, CPU, seed=3)
    result = run_provider(CUBLAS_BF16_LAYOUT, inputs, _measure, ("us",))
    assert result["status"] == "unavailable" and "CUDA" in result["reason"]

    # torch.matmul runs on the CPU too: without the CUDA check the same code must give A·B.
    seen = []
    monkeypatch.setattr(providers, "_require_cuda", lambda inputs: None)
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: seen.append((a, b)) or torch.matmul(a, b))
    result = run_provider(CUBLAS_BF16_LAYOUT, inputs, _measure, ("us",))
    assert result["status"] == "ok" and result["diffs"]["bf16"] < 1e-5
    # Views of the stored tensors: the transposes copy nothing.
    a, b = seen[0]
    assert a.data_ptr() == inputs.a.data_ptr() and b.data_ptr() == inputs.b.data_ptr()
    assert (a.shape, b.shape) == ((40, 72), (72, 24))


@pytest.mark.parametrize("major", MAJORS)
def test_deepgemm_bf16_provider_calls_the_layouts_op(major):
    inputs = make_bf16_inputs(40, 24, 72, major, CPU, seed=3)
    result = run_provider(DEEPGEMM_BF16, inputs, _measure, ("us",))
    assert result["status"] == "ok" and result["diffs"]["bf16"] < 1e-5 and result["us"] == 1.0


def test_cublas_bf16_loop_multiplies_each_nonempty_group(monkeypatch):
    inputs = make_grouped_inputs(
        "masked", 4, (37, 0, 64, 5), 136, 384, 64, CPU, 2, operand_dtype=torch.bfloat16
    )
    result = run_provider(CUBLAS_BF16_LOOP, inputs, _measure, ("us",))
    assert result["status"] == "unavailable" and "CUDA" in result["reason"]
    monkeypatch.setattr(providers, "_require_cuda", lambda inputs: None)
    outputs = CUBLAS_BF16_LOOP.prepare(inputs)()
    assert [out.shape[0] for out in outputs] == [37, 64, 5]
    result = run_provider(CUBLAS_BF16_LOOP, inputs, _measure, ("us",))
    assert result["status"] == "ok" and result["diffs"]["bf16"] < 1e-5


@requires_grouped_ops
def test_grouped_provider_refuses_the_other_layout():
    inputs = make_grouped_inputs("masked", 2, 8, 128, 128, 128, CPU, seed=0)
    result = run_provider(DEEPGEMM_CONTIGUOUS, inputs, _measure, ("us",))
    assert result["status"] == "error" and "contiguous grouped inputs" in result["reason"]


def test_deepgemm_config_of_grouped_problems(monkeypatch):
    import deepgemm.heuristics as heuristics

    seen = []

    def select_config(shape, num_sms):
        seen.append((shape, num_sms))
        return "c"

    monkeypatch.setattr(heuristics, "GemmShape", lambda *args, **kwargs: (args, kwargs))
    monkeypatch.setattr(heuristics, "select_config", select_config)
    assert deepgemm_config(Problem(100, 4096, 7168, 4, "contiguous"), 132) == "c"
    assert deepgemm_config(Problem(256, 7168, 2048, 4, "masked", 4096), 132) == "c"
    # 16-bit: the operand size, and whether B is stored [K, N], as the launcher builds the shape.
    assert deepgemm_config(Problem(100, 4096, 7168, 4, "contiguous"), 132, ab_bytes=2) == "c"
    assert deepgemm_config(Problem(4096, 7168, 2048, major="tn"), 132, ab_bytes=2) == "c"
    assert deepgemm_config(Problem(4096, 7168, 2048, major="tt"), 132, ab_bytes=2) == "c"
    # Contiguous: every group's rows with their padding; masked: the expected rows of one group.
    assert seen == [
        (((512, 4096, 7168), {"num_groups": 4, "layout": "contiguous"}), 132),
        (((256, 7168, 2048), {"num_groups": 4, "layout": "masked"}), 132),
        (
            (
                (512, 4096, 7168),
                {"num_groups": 4, "layout": "contiguous", "ab_bytes": 2, "b_mn_major": False},
            ),
            132,
        ),
        (((4096, 7168, 2048), {"ab_bytes": 2, "b_mn_major": True}), 132),
        (((4096, 7168, 2048), {"ab_bytes": 2, "b_mn_major": False}), 132),
    ]


# ---- runner records and the JSON file -----------------------------------------------------------


class _StubInputs:
    """Inputs whose references are a fixed matrix, to drive the runner without any GEMM."""

    reference_kinds = ("fp8", "bf16")

    def __init__(self) -> None:
        self.value = torch.arange(1.0, 13.0).reshape(3, 4)

    def reference(self, kind: str) -> torch.Tensor:
        return self.value if kind == "fp8" else self.value + 0.5

    def valid_rows(self, output: torch.Tensor) -> torch.Tensor:
        return output


def _stub_provider(name: str, output: str) -> Provider:
    def prepare(inputs: _StubInputs):
        if output == "unavailable":
            raise ProviderUnavailable("not here")
        if output == "error":
            raise RuntimeError("boom")
        return lambda: inputs.value if output == "right" else -inputs.value

    return Provider(name, f"calls {name}", prepare, reference="fp8", max_diff=1e-5)


def test_run_suite_records_and_json_round_trip(tmp_path):
    suite = Suite(
        name="stub",
        description="stub suite",
        problems=(Problem(64, 4, 3), Problem(4096, 4, 3)),
        make_inputs=lambda problem, device, seed: _StubInputs(),
        providers=tuple(_stub_provider(name, name) for name in ("right", "wrong", "unavailable", "error")),
        bytes_moved=lambda problem: 1000,
        splits=(Split("M<=128", lambda p: p.m <= 128), Split("M>128", lambda p: p.m > 128)),
    )
    seen = []
    record = run_suite(
        suite,
        suite.providers,
        torch.device("cpu"),
        0,
        timer=lambda fn: 2e-6,
        on_problem=lambda p, r: seen.append(p),
    )
    assert seen == list(suite.problems)
    assert record["baseline"] == "right"
    assert record["providers"]["wrong"] == "calls wrong"
    first = record["problems"][0]
    assert {key: first[key] for key in ("m", "n", "k", "num_groups", "flops", "bytes")} == {
        "m": 64, "n": 4, "k": 3, "num_groups": 1, "flops": 2 * 64 * 4 * 3, "bytes": 1000,
    }  # fmt: skip
    right, wrong, unavailable, error = (
        first["results"][name] for name in ("right", "wrong", "unavailable", "error")
    )
    assert right["status"] == "ok" and right["correct"] and right["diffs"]["fp8"] == 0.0
    assert right["us"] == pytest.approx(2.0) and right["tflops"] == pytest.approx(1536 / 2e-6 / 1e12)
    assert right["gbps"] == pytest.approx(1000 / 2e-6 / 1e9)
    assert (
        wrong["status"] == "wrong"
        and wrong["correct"] is False
        and wrong["diffs"]["fp8"] == pytest.approx(2.0)
    )
    assert wrong["us"] == pytest.approx(2.0)  # still timed, but out of the ratios
    assert unavailable["status"] == "unavailable" and unavailable["reason"] == "not here"
    assert unavailable["us"] is None and unavailable["diffs"] == {}
    assert error["status"] == "error" and error["reason"] == "RuntimeError: boom"
    assert first["speedup"] == {} and first["deepgemm_config"] is None
    assert record["geomean"]["wrong"] == {
        "M<=128": {"geomean": None, "n": 0},
        "M>128": {"geomean": None, "n": 0},
    }

    path = write_json(tmp_path / "deep" / "bench.json", {"schema": "x", "suites": [record]})
    assert json.loads(path.read_text()) == json.loads(json.dumps({"schema": "x", "suites": [record]}))


def test_run_suite_holds_each_problem_against_its_twin():
    # Each problem's time: 10 us on NT, 12.5 us on TN, 8 us on NN; the TT problem comes before its twin.
    times = {"nt": 10e-6, "tn": 12.5e-6, "nn": 8e-6, "tt": 10e-6}
    current = {}

    def make_inputs(problem, device, seed):
        current["problem"] = problem
        return _StubInputs()

    def timer(fn):
        return times[current["problem"].major]

    suite = Suite(
        name="twins",
        description="stub suite with twins",
        problems=tuple(Problem(64, 4, 3, major=major) for major in ("tt", "nt", "tn", "nn")),
        make_inputs=make_inputs,
        providers=(_stub_provider("right", "right"), _stub_provider("wrong", "wrong")),
        bytes_moved=lambda problem: 1000,
        splits=(Split("NT", lambda p: p.major == "nt"), Split("not NT", lambda p: p.major != "nt")),
        twin=nt_twin,
    )
    seen = []
    record = run_suite(
        suite, suite.providers, CPU, 0, timer, on_problem=lambda p, r: seen.append(r["twin_speedup"])
    )
    tt, nt, tn, nn = record["problems"]
    # A twin measured later cannot be compared when the problem is printed: no ratio at all.
    assert tt["twin"] is None and tt["twin_speedup"] == {}
    assert nt["twin"] is None and nt["twin_speedup"] == {}
    assert tn["twin"] == dataclasses.asdict(Problem(64, 4, 3)) and tn["major"] == "tn"
    # Only providers that are ok on both problems ("wrong" misses its reference).
    assert tn["twin_speedup"] == {"right": pytest.approx(0.8)} and nn["twin_speedup"] == {
        "right": pytest.approx(1.25)
    }
    assert seen == [{}, {}, tn["twin_speedup"], nn["twin_speedup"]]
    assert record["twin_definition"].startswith("t_twin / t_problem")
    # Only the splits that hold a problem with a twin.
    assert record["twin_geomean"] == {
        "right": {"not NT": {"geomean": pytest.approx(1.0), "n": 2}},
        "wrong": {"not NT": {"geomean": None, "n": 0}},
    }
    assert record["twin_worst"] == {"right": {"not NT": pytest.approx(0.8)}, "wrong": {"not NT": None}}


def _rounds_suite(problem: Problem) -> Suite:
    return dataclasses.replace(
        DENSE, problems=(problem,), make_inputs=lambda p, d, s: _StubInputs(), twin=None, pairs=()
    )


def _timed_by_provider(seconds: dict[str, list[float]], calls: list[str]):
    """A timer for the stub providers "right" and "wrong" (told apart by the sign of their output)
    that logs which one it timed and returns its next time."""

    def timer(fn):
        name = "right" if float(fn().sum()) > 0 else "wrong"
        calls.append(name)
        return seconds[name][sum(call == name for call in calls) - 1]

    return timer


def test_long_calls_are_timed_in_alternating_rounds_and_report_the_median():
    # 400+ us calls: three rounds, the second in reverse order; each provider its median round.
    seconds = {"right": [400e-6, 500e-6, 420e-6], "wrong": [900e-6, 800e-6, 1000e-6]}
    calls: list[str] = []
    providers = (_stub_provider("right", "right"), _stub_provider("wrong", "wrong"))
    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)), providers, CPU, 0, _timed_by_provider(seconds, calls), rounds=3
    )
    assert calls == ["right", "wrong", "wrong", "right", "right", "wrong"]
    right, wrong = (record["problems"][0]["results"][name] for name in ("right", "wrong"))
    assert right["us"] == pytest.approx(420.0) and right["us_rounds"] == pytest.approx([400.0, 500.0, 420.0])
    assert right["tflops"] == pytest.approx(2 * 64 * 4 * 3 / 420e-6 / 1e12)
    assert wrong["us"] == pytest.approx(900.0) and wrong["status"] == "wrong"


def test_long_calls_are_also_timed_from_rest_in_rounds():
    seconds = {"right": [400e-6, 500e-6, 420e-6], "wrong": [900e-6, 800e-6, 1000e-6]}
    rested = {"right": [300e-6, 310e-6, 305e-6], "wrong": [700e-6, 600e-6, 650e-6]}
    calls: list[str] = []
    rested_calls: list[str] = []
    providers = (_stub_provider("right", "right"), _stub_provider("wrong", "wrong"))
    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)),
        providers,
        CPU,
        0,
        _timed_by_provider(seconds, calls),
        rounds=3,
        from_rest_timer=_timed_by_provider(rested, rested_calls),
    )
    assert rested_calls == ["right", "wrong", "wrong", "right", "right", "wrong"]
    right = record["problems"][0]["results"]["right"]
    assert right["us"] == pytest.approx(420.0) and right["us_from_rest"] == pytest.approx(305.0)
    assert right["us_from_rest_rounds"] == pytest.approx([300.0, 310.0, 305.0])
    assert right["tflops_from_rest"] == pytest.approx(2 * 64 * 4 * 3 / 305e-6 / 1e12)
    # "wrong" is timed but, as in the sustained ratios, left out.
    assert record["problems"][0]["results"]["wrong"]["us_from_rest"] == pytest.approx(650.0)
    assert record["problems"][0]["speedup_from_rest"] == {}


def test_short_calls_are_not_timed_from_rest():
    short = runner.LONG_CALL_US * 0.9e-6
    rested_calls: list[str] = []
    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)),
        (_stub_provider("right", "right"),),
        CPU,
        0,
        lambda fn: short,
        rounds=3,
        from_rest_timer=_timed_by_provider({"right": [1.0]}, rested_calls),
    )
    assert rested_calls == []
    result = record["problems"][0]["results"]["right"]
    assert result["us_from_rest"] is None and result["us_from_rest_rounds"] is None
    assert record["problems"][0]["speedup_from_rest"] == {}


def test_short_calls_are_timed_once():
    # Every call below LONG_CALL_US: one round, whatever `rounds` says.
    short = runner.LONG_CALL_US * 0.9e-6
    seconds = {"right": [short, 1.0], "wrong": [short / 2, 1.0]}
    calls: list[str] = []
    providers = (_stub_provider("right", "right"), _stub_provider("wrong", "wrong"))
    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)), providers, CPU, 0, _timed_by_provider(seconds, calls), rounds=3
    )
    assert calls == ["right", "wrong"]
    assert record["problems"][0]["results"]["right"]["us_rounds"] == pytest.approx([short * 1e6])


def test_a_provider_failing_in_a_later_round_is_an_error():
    calls: list[str] = []

    def timer(fn):
        calls.append("x")
        if len(calls) == 2:
            raise RuntimeError("lost the device")
        return 1e-3

    record = run_suite(
        _rounds_suite(Problem(64, 4, 3)), (_stub_provider("right", "right"),), CPU, 0, timer, rounds=3
    )
    result = record["problems"][0]["results"]["right"]
    assert result["status"] == "error" and result["reason"] == "RuntimeError: lost the device"
    assert result["us"] is None and len(calls) == 2


def test_run_suite_without_twins_records_none():
    record = run_suite(
        dataclasses.replace(DENSE, problems=(Problem(64, 4, 3),), make_inputs=lambda p, d, s: _StubInputs()),
        (_stub_provider("right", "right"),),
        CPU,
        0,
        timer=lambda fn: 1e-6,
    )
    (problem,) = record["problems"]
    assert problem["twin"] is None and problem["twin_speedup"] == {} and problem["major"] == "nt"
    assert record["twin_definition"] is None and record["twin_geomean"] == {} and record["twin_worst"] == {}


def test_bf16_suite_runs_on_the_cpu_path():
    suite = cpu_suite(BF16)
    record = run_suite(suite, select_providers(suite, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    assert record["baseline"] == "deepgemm" and list(record["providers"]) == ["deepgemm"]
    assert [problem["major"] for problem in record["problems"]] == [p.major for p in BF16.cpu_problems]
    for problem in record["problems"]:
        (result,) = problem["results"].values()
        assert result["status"] == "ok", result
        assert result["reference"] == "bf16" and result["diffs"]["bf16"] < 1e-5
        m, n, k = problem["m"], problem["n"], problem["k"]
        assert problem["deepgemm_config"] is None and problem["bytes"] == 2 * (m * k + n * k + m * n)
        if problem["major"] == "nt":
            assert problem["twin"] is None
        else:
            assert problem["twin"]["major"] == "nt" and problem["twin_speedup"] == {
                "deepgemm": pytest.approx(1.0)
            }
    assert record["twin_worst"] == {
        "deepgemm": {f"{m} M>128": pytest.approx(1.0) for m in ("NN", "TN", "TT")}
    }


def test_bf16_grouped_suite_runs_on_the_cpu_path():
    suite = cpu_suite(BF16_GROUPED)
    record = run_suite(suite, select_providers(suite, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    assert record["baseline"] == "cublas_bf16_loop" and list(record["providers"]) == [
        "deepgemm",
        "deepgemm_dense",
    ]
    assert [problem["layout"] for problem in record["problems"]] == ["contiguous", "masked"]
    for problem in record["problems"]:
        for result in problem["results"].values():
            assert result["status"] == "ok", result
            assert set(result["diffs"]) == {"bf16"} and result["diffs"]["bf16"] < 1e-5
        assert problem["pair_speedup"] == {"deepgemm/deepgemm_dense": pytest.approx(1.0)}
    assert record["pair_geomean"]["deepgemm/deepgemm_dense"] == {
        "contiguous": {"geomean": pytest.approx(1.0), "n": 1},
        "masked": {"geomean": pytest.approx(1.0), "n": 1},
    }


def test_matmul_fp8_suite_runs_on_the_cpu_path():
    suite = cpu_suite(MATMUL_FP8)
    record = run_suite(suite, select_providers(suite, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    (problem,) = record["problems"]
    by_hand, matmul = problem["results"]["by_hand"], problem["results"]["matmul"]
    assert by_hand["status"] == matmul["status"] == "ok"
    assert by_hand["diffs"]["fp8"] < 1e-5 and by_hand["diffs"]["bf16"] < 1e-3
    # matmul is checked against the unquantised product; it quantises with the same recipe, so it
    # also lands on the FP8 reference.
    assert matmul["diffs"]["bf16"] < 1e-3 and matmul["diffs"]["fp8"] < 1e-5
    assert problem["speedup"] == {"matmul": pytest.approx(1.0)} and problem["major"] == "nn"
    assert record["geomean"]["matmul"]["M<=128"] == {"geomean": pytest.approx(1.0), "n": 1}


@requires_grouped_ops
@pytest.mark.parametrize("name", GROUPED_SUITES)
def test_grouped_suites_run_on_the_cpu_path(name):
    suite = cpu_suite(SUITES[name])
    record = run_suite(suite, select_providers(suite, None, on_cuda=False), CPU, 0, timer=lambda fn: 1e-3)
    assert record["baseline"] == "cublas_blockwise_loop" and record["faster"] == "provider"
    assert record["pairs"] == {"deepgemm/deepgemm_dense": "t_deepgemm_dense / t_deepgemm: how many times "
                               "faster deepgemm runs than deepgemm_dense"}  # fmt: skip
    (problem,) = record["problems"]
    (expected,) = SUITES[name].cpu_problems
    assert (problem["layout"], problem["num_groups"], problem["max_m"]) == (
        expected.layout, expected.num_groups, expected.max_m,
    )  # fmt: skip
    assert problem["flops"] == expected.flops
    for result in problem["results"].values():
        assert result["status"] == "ok", result
        assert result["diffs"]["fp8"] < 1e-5 and result["diffs"]["bf16"] < 1e-3
    # The baseline (cuBLAS) has no CPU path, so there is no ratio against it; the pair ratio remains.
    assert problem["speedup"] == {}
    assert problem["pair_speedup"] == {"deepgemm/deepgemm_dense": pytest.approx(1.0)}
    pair_geomean = record["pair_geomean"]["deepgemm/deepgemm_dense"]
    assert pair_geomean == {"all": {"geomean": pytest.approx(1.0), "n": 1}}


# ---- the CLI --------------------------------------------------------------------------------------


def test_cli_runs_the_cpu_path(tmp_path):
    if not hasattr(deepgemm, "fp8_gemm_nt"):
        pytest.skip("deepgemm.fp8_gemm_nt is not exported yet")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepgemm.bench",
            "--cpu",
            "--shapes",
            "64,256,512",
            "--num-tests",
            "1",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CPU path" in proc.stdout
    document = json.loads(out.read_text())
    assert document["schema"] == "deepgemm.bench/1" and document["backend"] == "cpu"
    assert document["env"]["device"] == "cpu" and document["method"]["timer"] == "cpu_wallclock"
    assert document["method"]["rounds"] == 1  # the CPU path times each problem once
    (suite,) = document["suites"]
    (problem,) = suite["problems"]
    assert (problem["m"], problem["n"], problem["k"]) == (64, 256, 512)
    result = problem["results"]["deepgemm"]
    assert result["status"] == "ok" and result["us"] > 0
    assert result["diffs"]["fp8"] < 1e-5 and result["diffs"]["bf16"] < 1e-3


@requires_grouped_ops
def test_cli_runs_a_grouped_suite_on_the_cpu_path(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--cpu", "--suite", "grouped_contiguous", "--num-tests", "1", "--json", str(out)]
    assert bench_main(argv) == 0
    printed = capsys.readouterr().out
    assert "t_baseline / t_provider" in printed and "deepgemm/deepgemm_dense speed:" in printed
    (suite,) = json.loads(out.read_text())["suites"]
    assert suite["name"] == "cpu_path_grouped_contiguous" and suite["baseline"] == "cublas_blockwise_loop"
    assert list(suite["providers"]) == ["deepgemm", "deepgemm_offsets", "deepgemm_dense"]
    (problem,) = suite["problems"]
    assert problem["layout"] == "contiguous" and problem["num_groups"] == 3
    assert {result["status"] for result in problem["results"].values()} == {"ok"}
    assert set(problem["pair_speedup"]) == {"deepgemm/deepgemm_dense"}


def test_cli_runs_the_bf16_suite_on_the_cpu_path(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_main(["--cpu", "--suite", "bf16", "--num-tests", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "twin speed = t_twin / t_problem" in printed
    assert table_header("dense", show_major=True) in printed
    assert any(line.split()[:2] == ["nn/nt", "speed:"] for line in printed.splitlines())
    assert "speed relative to the twin (t_twin / t_problem), geometric mean and worst shape:" in printed
    (suite,) = json.loads(out.read_text())["suites"]
    assert suite["name"] == "cpu_path_bf16" and suite["twin_definition"]
    assert [problem["major"] for problem in suite["problems"]] == ["nt", "nt", "nn", "tn", "tt"]
    assert set(suite["twin_worst"]["deepgemm"]) == {"NN M>128", "TN M>128", "TT M>128"}


def test_cli_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--help"])
    assert exit_info.value.code == 0 and "--host-overhead" in capsys.readouterr().out
    for argv in (["--cpu", "--host-overhead"], ["--cpu", "--shapes", "1,2"], ["--providers", "nope"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_main(argv)
        assert exit_info.value.code == 2


# ---- timers ---------------------------------------------------------------------------------------


def test_gpu_timers_raise_a_clear_error_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for timer in (
        lambda: bench_kineto(lambda: None, None),
        lambda: bench_kineto_burst(lambda: None),
        lambda: bench(lambda: None),
        lambda: bench_host_overhead(lambda: None),
    ):
        with pytest.raises(RuntimeError, match="needs a CUDA device"):
            timer()


def test_gpu_timer_rests_before_each_measurement(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: events.append("sync"))
    monkeypatch.setattr(bench_cli.time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    monkeypatch.setattr(
        bench_cli, "bench_kineto", lambda fn, names, num_tests: events.append(("time", num_tests)) or 1.0
    )
    timer = bench_cli.make_timer(True, "kineto", 7, rest_s=0.25)
    assert timer(lambda: None) == 1.0 and timer(lambda: None) == 1.0
    assert events == ["sync", ("sleep", 0.25), ("time", 7)] * 2
    events.clear()
    bench_cli.make_timer(True, "kineto", 7, rest_s=0)(lambda: None)
    assert events == [("time", 7)]


def test_from_rest_timer_rests_then_times_a_burst(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: events.append("sync"))
    monkeypatch.setattr(bench_cli.time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    monkeypatch.setattr(
        bench_cli,
        "bench_kineto_burst",
        lambda fn, num_tests, num_warmups: events.append(("burst", num_tests, num_warmups)) or 2.0,
    )
    monkeypatch.setattr(
        bench_cli,
        "bench",
        lambda fn, num_tests, num_warmups: events.append(("events", num_tests, num_warmups)) or 3.0,
    )
    assert bench_cli.make_from_rest_timer(True, "kineto", 20, 0.5)(lambda: None) == 2.0
    assert bench_cli.make_from_rest_timer(True, "events", 20, 0.5)(lambda: None) == 3.0
    assert events == ["sync", ("sleep", 0.5), ("burst", 20, 1), "sync", ("sleep", 0.5), ("events", 20, 1)]
    # Off the GPU, without a rest (not from rest), or with 0 calls: none.
    for args in ((False, "kineto", 20, 0.5), (True, "kineto", 20, 0.0), (True, "kineto", 0, 0.5)):
        assert bench_cli.make_from_rest_timer(*args) is None
    assert build_parser().parse_args([]).from_rest_calls == bench_cli.DEFAULT_FROM_REST_CALLS == 20
    assert build_parser().parse_args(["--from-rest-calls", "0"]).from_rest_calls == 0
    for bad in ("-1", "many"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--from-rest-calls", bad])


def test_rest_must_be_a_non_negative_number():
    assert build_parser().parse_args([]).rest == bench_cli.DEFAULT_REST_S
    assert build_parser().parse_args(["--rest", "0"]).rest == 0
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--rest", bad])


def test_rounds_default_and_must_be_positive():
    assert build_parser().parse_args([]).rounds == bench_cli.DEFAULT_ROUNDS == 3
    assert build_parser().parse_args(["--rounds", "1"]).rounds == 1
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--rounds", bad])


def test_bench_cpu_counts_calls():
    calls = []
    seconds = bench_cpu(lambda: calls.append(1), num_tests=4, num_warmups=2)
    assert len(calls) == 6 and 0 <= seconds < 1


def test_flush_kernels_are_split_off_by_position():
    def events(*names):
        return [SimpleNamespace(name=name) for name in names]

    # fn launches a fill kernel of its own: it must count, the flushes must not.
    trace = events("fill", "gemm", "fill", "fill", "gemm", "fill")
    assert [e.name for e in _calls_events(trace, 2, flushed=True)] == ["gemm", "fill", "gemm", "fill"]
    assert len(_calls_events(trace, 2, flushed=False)) == 6
    for bad in (events("fill", "gemm", "fill"), events("fill", "fill"), events("fill", "a", "b", "c")):
        with pytest.raises(RuntimeError, match="cannot split"):
            _calls_events(bad, 2, flushed=True)
    # A burst's warm-up calls are dropped by position too, with or without flushes.
    burst = events("fill", "gemm1", "fill", "gemm2", "fill", "gemm3")
    assert [e.name for e in _calls_events(burst, 3, flushed=True, skip_calls=1)] == ["gemm2", "gemm3"]
    unflushed = events("a1", "b1", "a2", "b2")
    assert [e.name for e in _calls_events(unflushed, 2, flushed=False, skip_calls=1)] == ["a2", "b2"]
    with pytest.raises(RuntimeError, match=r"into 2 x \[fn's kernels\]"):
        _calls_events(events("a", "b", "c"), 2, flushed=False, skip_calls=1)


# ---- tools/gpu_check.py ---------------------------------------------------------------------------


@pytest.fixture
def gpu_check(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fake_repo = tmp_path / "repo"
    (fake_repo / "tools").mkdir(parents=True)
    monkeypatch.setattr(module, "REPO", fake_repo)
    # The environment probe starts a Python that imports torch: slow, and not what is tested here.
    monkeypatch.setattr(module, "environment", lambda: {"python": "probe skipped"})
    return module


def test_parse_junit(gpu_check, tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        textwrap.dedent(
            """\
            <testsuites><testsuite name="pytest" tests="4">
              <testcase classname="tests.test_a" name="test_ok" />
              <testcase classname="tests.test_a" name="test_bad[64]">
                <failure message="assert 1 == 2&#10;more">x</failure>
              </testcase>
              <testcase classname="tests.test_b" name="test_broken">
                <error message="fixture">x</error>
              </testcase>
              <testcase classname="tests.test_b" name="test_skip"><skipped message="no gpu" /></testcase>
            </testsuite></testsuites>
            """
        )
    )
    detail = gpu_check.parse_junit(report)
    assert {k: detail[k] for k in ("total", "passed", "failed", "errors", "skipped")} == {
        "total": 4, "passed": 1, "failed": 1, "errors": 1, "skipped": 1,
    }  # fmt: skip
    assert detail["failures"] == [
        {"test": "tests.test_a::test_bad[64]", "kind": "failure", "message": "assert 1 == 2"},
        {"test": "tests.test_b::test_broken", "kind": "error", "message": "fixture"},
    ]


def _write_measure_jit(gpu_check, body: str) -> None:
    (gpu_check.REPO / "tools" / "measure_jit.py").write_text(textwrap.dedent(body))


def test_gpu_check_records_the_jit_measurements(gpu_check, tmp_path, capsys):
    _write_measure_jit(
        gpu_check,
        """\
        import json
        print("compiling...")
        print(json.dumps({"cold_compile_s": 1.5, "warm_load_ms": 2.0}))
        """,
    )
    assert gpu_check.main(["--out", str(tmp_path / "out"), "--stages", "jit"]) == 0
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert summary["ok"] is True and summary["finished"]
    jit = summary["stages"]["jit"]
    assert jit["status"] == "ok" and jit["detail"]["measurements"] == {
        "cold_compile_s": 1.5,
        "warm_load_ms": 2.0,
    }
    assert "overall: OK" in capsys.readouterr().out


def test_gpu_check_keeps_going_and_fails_at_the_end(gpu_check, tmp_path, monkeypatch):
    _write_measure_jit(gpu_check, "raise SystemExit('no GPU here')\n")
    ran = []

    def broken_stage(out, args):
        ran.append("bench")
        raise KeyError("bug")

    monkeypatch.setitem(gpu_check.STAGE_FUNCTIONS, "bench", broken_stage)
    assert gpu_check.main(["--out", str(tmp_path), "--stages", "bench,jit"]) == 1
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert ran == ["bench"] and summary["ok"] is False
    assert summary["stages"]["bench"] | {"seconds": 0} == {
        "status": "failed", "error": "KeyError: 'bug'", "detail": None, "log": "bench.log", "seconds": 0,
    }  # fmt: skip
    jit = summary["stages"]["jit"]
    assert jit["status"] == "failed" and jit["error"] == "measure_jit.py exited with 1"
    assert jit["log_tail"][-1] == "no GPU here"


def test_gpu_check_skips_a_missing_jit_script_and_rejects_unknown_stages(gpu_check, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path), "--stages", "jit"]) == 0
    assert json.loads((tmp_path / "gpu_check.json").read_text())["stages"]["jit"]["status"] == "skipped"
    with pytest.raises(SystemExit):
        gpu_check.main(["--stages", "tests,nope"])


def test_gpu_check_benches_every_suite(gpu_check):
    assert gpu_check.BENCH_SUITES == tuple(SUITES)


# Stands in for `python -m deepgemm.bench` in the fake repo: one JSON per --suite; grouped_masked
# has a wrong result, grouped_decode crashes before writing anything, bf16 has twin ratios.
FAKE_BENCH = """\
import argparse, json, sys
parser = argparse.ArgumentParser()
for flag in ("--suite", "--json", "--num-tests"):
    parser.add_argument(flag)
args = parser.parse_args()
if args.suite == "grouped_decode":
    sys.exit("crashed before writing anything")
grouped = args.suite != "dense"
status = "wrong" if args.suite == "grouped_masked" else "ok"
suite = {
    "name": args.suite,
    "baseline": "cublas_blockwise_loop" if grouped else "deepgemm",
    "faster": "provider" if grouped else "baseline",
    "geomean": {"deepgemm" if grouped else "cublas_blockwise": {"all": {"geomean": 1.25, "n": 4}}},
    "pair_geomean": {"deepgemm/deepgemm_dense": {"all": {"geomean": 0.95, "n": 4}}} if grouped else {},
    "problems": [{"m": 256, "n": 4096, "k": 7168, "num_groups": 4,
                  "results": {"deepgemm": {"status": status, "reason": "calc_diff"}}}],
}
if args.suite == "bf16":
    suite["twin_geomean"] = {"deepgemm": {"NN M>128": {"geomean": 0.97, "n": 6}}}
    suite["twin_worst"] = {"deepgemm": {"NN M>128": 0.94}}
document = {"backend": "cuda", "env": {"device": "fake H200"}, "num_tests": args.num_tests, "suites": [suite]}
with open(args.json, "w") as file:
    json.dump(document, file)
sys.exit(1 if status == "wrong" else 0)
"""


def test_gpu_check_runs_each_bench_suite_apart_and_merges_them(gpu_check, tmp_path, capsys):
    package = gpu_check.REPO / "deepgemm" / "bench"
    package.mkdir(parents=True)
    (gpu_check.REPO / "deepgemm" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_BENCH)
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--stages", "bench", "--num-tests", "2"]) == 1

    merged = json.loads((out / "bench.json").read_text())
    assert [suite["name"] for suite in merged["suites"]] == [
        "dense", "grouped_contiguous", "grouped_masked", "bf16", "bf16_grouped", "matmul_fp8",
    ]  # fmt: skip
    assert merged["num_tests"] == "2" and merged["env"]["device"] == "fake H200"
    bench = json.loads((out / "gpu_check.json").read_text())["stages"]["bench"]
    assert bench["status"] == "failed" and "grouped_masked, grouped_decode" in bench["error"]
    assert bench["detail"]["failed_suites"] == {
        "grouped_masked": "deepgemm.bench exited with 1",
        "grouped_decode": "deepgemm.bench exited with 1 and wrote no JSON",
    }
    assert bench["detail"]["suites"]["grouped_masked"]["not_ok"] == [
        {"shape": [256, 4096, 7168], "num_groups": 4, "provider": "deepgemm", "status": "wrong",
         "reason": "calc_diff"},
    ]  # fmt: skip
    assert "crashed before writing anything" in (out / "bench.log").read_text()
    printed = capsys.readouterr().out
    # "a vs b: r" reads "a runs r times as fast as b", whichever way the suite's ratios point.
    assert "dense: deepgemm vs cublas_blockwise: all 1.25x" in printed
    assert "grouped_contiguous: deepgemm vs cublas_blockwise_loop: all 1.25x" in printed
    assert "grouped_contiguous: deepgemm vs deepgemm_dense: all 0.95x" in printed
    # Twin ratios: the suite's geometric mean per split and its worst shape.
    assert bench["detail"]["suites"]["bf16"]["twin_worst"] == {"deepgemm": {"NN M>128": 0.94}}
    assert bench["detail"]["suites"]["dense"]["twin_geomean"] == {}
    assert "bf16: deepgemm vs its twin problem: NN M>128 0.97x (worst 0.94x)" in printed


def test_gpu_check_benches_only_the_suites_asked_for(gpu_check, tmp_path, capsys):
    package = gpu_check.REPO / "deepgemm" / "bench"
    package.mkdir(parents=True)
    (gpu_check.REPO / "deepgemm" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_BENCH)
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out), "--stages", "bench", "--suites", "bf16, matmul_fp8"]) == 0
    merged = json.loads((out / "bench.json").read_text())
    assert [suite["name"] for suite in merged["suites"]] == ["bf16", "matmul_fp8"]
    assert sorted(path.name for path in out.glob("bench-*.json")) == [
        "bench-bf16.json",
        "bench-matmul_fp8.json",
    ]
    for suites in ("bf16,nope", ","):
        with pytest.raises(SystemExit):
            gpu_check.main(["--stages", "bench", "--suites", suites])
    assert "--suites must name some of" in capsys.readouterr().err
