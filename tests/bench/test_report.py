"""The benchmark's arithmetic and printed report: TFLOPS, GB/s and FLOPs on hand values, speed ratios,
geometric means per split, and the table, geometric-mean, from-rest and twin lines."""

import pytest

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
)
from deepgemm.bench.suites import SUITES, Problem, Split, fp8_gemm_bytes
from deepgemm.testing import make_grouped_inputs

from .support import CPU, GROUPED_SUITES, outcome


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


def test_speedups_use_only_correct_providers():
    results = {
        "deepgemm": outcome("ok", 10.0),
        "fast": outcome("ok", 5.0),
        "slow": outcome("ok", 20.0),
        "wrong": outcome("wrong", 1.0),
        "gone": outcome("unavailable", None),
    }
    assert speedups(results, "deepgemm") == {"fast": 0.5, "slow": 2.0}
    assert speedups(results | {"deepgemm": outcome("error", None)}, "deepgemm") == {}


def test_speedups_toward_the_provider_and_pair_ratios():
    results = {
        "loop": outcome("ok", 30.0),
        "deepgemm": outcome("ok", 20.0),
        "dense": outcome("ok", 16.0),
        "bad": outcome("wrong", 1.0),
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
    results = {"deepgemm": outcome("ok", 10.0), "cublas": outcome("ok", 8.0), "bad": outcome("wrong", 1.0)}
    twin = {"deepgemm": outcome("ok", 9.0), "cublas": outcome("error", None), "bad": outcome("ok", 1.0)}
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
