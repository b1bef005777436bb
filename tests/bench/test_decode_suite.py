"""The decode suite: its shapes follow the models' sizes and TP sharding, its providers and splits, and the
fraction of HBM bandwidth by device name."""

import pytest
import torch

from deepgemm.bench import runner
from deepgemm.bench.decode_shapes import (
    DECODE_BATCH_SIZES,
    LLAMA3_8B,
    LLAMA3_70B,
    decode_weights,
    deepseek_v3_layers,
)
from deepgemm.bench.report import format_problem, table_header
from deepgemm.bench.suites import DECODE, SUITES, Problem, bf16_gemm_bytes, few_tile, fp8_gemm_bytes


def test_tp_sharding_splits_column_parallel_n_and_row_parallel_k():
    assert LLAMA3_8B.layers(1) == {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096),
                                   "down": (4096, 14336)}
    # Eight KV heads over eight ranks: one each; 64 query heads: eight each.
    assert LLAMA3_70B.layers(8) == {"qkv": (1280, 8192), "o": (8192, 1024), "gate_up": (7168, 8192),
                                    "down": (8192, 3584)}
    assert deepseek_v3_layers(8)["o"] == (7168, 2048) and deepseek_v3_layers(1)["kv_a"] == (576, 7168)


def test_decode_suite_problems_providers_and_splits():
    assert SUITES["decode"] is DECODE and DECODE.reports_hbm
    weights = decode_weights()
    assert len(weights) == 29 and DECODE_BATCH_SIZES == (1, 2, 4, 8, 16, 32, 64, 128)
    assert len(DECODE.problems) == 29 * 8
    assert {(p.n, p.k) for p in DECODE.problems} == set(weights)
    # Every shape keeps the FP8 and BF16 ops' size rules (K a multiple of 16, N of 8).
    assert all(p.k % 16 == 0 and p.n % 8 == 0 for p in DECODE.problems)
    names = ["deepgemm", "cublas_blockwise", "cublas_bf16", "deepgemm_bf16"]
    assert [p.name for p in DECODE.providers] == names
    bytes_of = {p.name: p.bytes_moved for p in DECODE.providers}
    assert bytes_of["deepgemm"] is None and bytes_of["cublas_bf16"] is bf16_gemm_bytes
    assert DECODE.bytes_moved is fp8_gemm_bytes and DECODE.pairs == (("deepgemm_bf16", "cublas_bf16"),)
    splits = {split.label: split for split in DECODE.splits}
    assert splits["M<=32 W>=32MB"].contains(Problem(32, 4096, 14336))
    assert not splits["M<=32 W>=32MB"].contains(Problem(64, 4096, 14336))
    assert not splits["M<=32 W>=32MB"].contains(Problem(1, 768, 4096))
    # N = 512, K = 7168 at M = 32: at most 32 tiles of 16 columns (the example); short K never counts.
    assert few_tile(Problem(32, 512, 7168), "fp8_1d2d") and few_tile(Problem(1, 512, 7168), "bf16")
    assert not few_tile(Problem(1, 512, 2048), "fp8_1d2d")
    assert not few_tile(Problem(4096, 7168, 7168), "fp8_1d2d")


def test_hbm_peak_by_device_name(monkeypatch):
    assert runner.hbm_bytes_per_second(torch.device("cpu")) is None

    class Props:
        name = ""

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props)
    for name, peak in (("NVIDIA H100 80GB HBM3", 3.35e12), ("NVIDIA H200", 4.8e12), ("NVIDIA H20", 4.0e12),
                       ("NVIDIA A100", None)):
        Props.name = name
        assert runner.hbm_bytes_per_second(torch.device("cuda", 0)) == peak


def test_hbm_column():
    assert "HBM" in table_header(show_hbm=True) and "HBM" not in table_header()
    result = {"us": 10.0, "tflops": 1.0, "gbps": 1675.0, "hbm_fraction": 0.5, "diffs": {}, "reference": "fp8",
              "status": "ok"}
    line = format_problem(Problem(1, 2, 3), {"deepgemm": result}, {}, show_hbm=True)
    assert "1675   50%" in line
    assert "50%" not in format_problem(Problem(1, 2, 3), {"deepgemm": result}, {})
    with pytest.raises(KeyError):
        format_problem(Problem(1, 2, 3), {"deepgemm": {"us": 1.0}}, {}, show_hbm=True)
