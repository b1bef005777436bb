"""The kernels, tensor maps and launch arguments the GPU launch paths build (FP8 1D2D, 16-bit, INT8, TF32:
dense, split-K, grouped, tuning configs, the cached call paths) are exactly those recorded in
``data/launch_args.json``, which was written from the launch code as it stood before the op layer's shared
pieces were gathered into ``ops/common`` (commit 44ca9d2): what the GPU tests exercise cannot change
without this file changing too. Each case runs on CPU tensors with the kernel and the TMA encoding
stubbed out (``launch_recorder``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from deepgemm.heuristics import BF16, FP8_1D2D, INT8, GemmShape, select_config
from deepgemm.quant import get_mn_major_tma_aligned_tensor

from .launch_recorder import NUM_SMS, record

GOLDEN = Path(__file__).parent / "data" / "launch_args.json"
FP8 = torch.float8_e4m3fn
G = 4


def _config(family, m, n, k, out_bytes=2, num_groups=1, layout="dense", **changes):
    """A valid config of another grid than the heuristic's, as a tuning tool passes one."""
    cfg = select_config(GemmShape(m, n, k, out_bytes, num_groups, layout, family=family), NUM_SMS)
    return dataclasses.replace(cfg, **{"num_sms": cfg.num_sms - 4, **changes})


# --- FP8 1D2D ---------------------------------------------------------------------------------------------


def _fp8_dense(m, n, k, out_dtype, mn_major_sfa=True):
    kb = -(-k // 128)
    sfa = torch.ones(m, kb)
    t = {"A": torch.zeros(m, k, dtype=FP8),
         "sfa": get_mn_major_tma_aligned_tensor(sfa) if mn_major_sfa else sfa,
         "B": torch.zeros(n, k, dtype=FP8), "sfb": torch.ones(-(-n // 128), kb),
         "d": torch.zeros(m, n, dtype=out_dtype), "d2": torch.zeros(m, n + 64, dtype=out_dtype)[:, :n]}
    return t


def fp8_dense(m, n, k, out_dtype, mn_major_sfa=True):
    t = _fp8_dense(m, n, k, out_dtype, mn_major_sfa)

    def call(mods):
        plan = mods.fp8.launch_checked(t["A"], t["sfa"], t["B"], t["sfb"], t["d"], m, n, k, 0)
        # The cached call path: the same plan for another d.
        mods.fp8.run_plan(plan, t["A"].data_ptr(), k, t["B"].data_ptr(), k, t["sfa"], t["sfb"].data_ptr(),
                          t["d2"].data_ptr(), t["d2"].stride(0))

    return t, call


def fp8_dense_config(m, n, k, out_dtype):
    t = _fp8_dense(m, n, k, out_dtype)
    cfg = _config(FP8_1D2D, m, n, k, out_dtype.itemsize)
    return t, lambda mods: mods.fp8.launch_fp8_gemm_nt(t["A"], t["sfa"], t["B"], t["sfb"], t["d"], cfg)


def _fp8_grouped(layout, rows, n, k, out_dtype):
    kb = -(-k // 128)
    lead = (G, rows) if layout == "masked" else (G * rows,)
    t = {"A": torch.zeros(*lead, k, dtype=FP8), "sfa": torch.ones(*lead, kb),
         "B": torch.zeros(G, n, k, dtype=FP8),
         "sfb": torch.ones(G, -(-n // 128), kb), "d": torch.zeros(*lead, n, dtype=out_dtype),
         "index": torch.zeros(G if layout != "contiguous" else G * rows, dtype=torch.int32)}
    return t


def fp8_grouped(kind, rows, n, k, out_dtype, config=None):
    layout = "masked" if kind == "masked" else "contiguous"
    t = _fp8_grouped(layout, rows, n, k, out_dtype)
    args = (t["A"], t["sfa"], t["B"], t["sfb"], t["d"], t["index"])

    def call(mods):
        if kind == "masked":
            mods.fp8.launch_m_grouped_masked(*args, 64, 0, config)
        elif kind == "offsets":
            mods.fp8.launch_m_grouped_contiguous_offsets(*args, 0, config)
        else:
            mods.fp8.launch_m_grouped_contiguous(*args, 0, config)

    return t, call


# --- 16-bit -----------------------------------------------------------------------------------------------


def _bf16_dense(layout, m, n, k, in_dtype, out_dtype, has_c):
    t = {"A": torch.zeros((m, k) if layout[0] == "n" else (k, m), dtype=in_dtype),
         "B": torch.zeros((n, k) if layout[1] == "t" else (k, n), dtype=in_dtype),
         "d": torch.zeros(m, n, dtype=out_dtype), "d2": torch.zeros(m, n + 64, dtype=out_dtype)[:, :n]}
    if has_c:
        t["c"] = torch.zeros(m, n, dtype=out_dtype)
    return t


def bf16_dense(layout, m, n, k, in_dtype, out_dtype, has_c, config=None):
    t = _bf16_dense(layout, m, n, k, in_dtype, out_dtype, has_c)

    def call(mods):
        A, B, c = t["A"], t["B"], t.get("c")
        plan = mods.bf16.launch_bf16_gemm(layout, A, B, t["d"], c, m, n, k, 0, config)
        # The cached call path: the same plan for another d.
        d2 = t["d2"]
        c_ptr, c_row_bytes = (c.data_ptr(), c.stride(0) * c.element_size()) if c is not None else (0, 0)
        plan.run_dense(A, B, d2, A.data_ptr(), A.stride(), B.data_ptr(), B.stride(), d2.data_ptr(),
                       d2.stride(), d2.stride(0) * d2.element_size(), c_ptr, c_row_bytes)

    return t, call


def bf16_grouped(kind, rows, n, k, in_dtype, out_dtype, config=None):
    lead = (G, rows) if kind == "masked" else (G * rows,)
    t = {"A": torch.zeros(*lead, k, dtype=in_dtype), "B": torch.zeros(G, n, k, dtype=in_dtype),
         "d": torch.zeros(*lead, n, dtype=out_dtype),
         "index": torch.zeros(G if kind == "masked" else G * rows, dtype=torch.int32)}

    def call(mods):
        if kind == "masked":
            mods.bf16.launch_m_grouped_bf16_masked(t["A"], t["B"], t["d"], t["index"], 64, 0, config)
        else:
            mods.bf16.launch_m_grouped_bf16_contiguous(t["A"], t["B"], t["d"], t["index"], 0, config)

    return t, call


# --- INT8 and TF32 ----------------------------------------------------------------------------------------


def int8(kind, rows, n, k, out_dtype, epilogue, config=None):
    from deepgemm.ops.int8 import gemm

    grouped = kind != "dense"
    lead = (G, rows) if kind == "masked" else ((G * rows,) if grouped else (rows,))
    t = {"A": torch.zeros(*lead, k, dtype=torch.int8),
         "B": torch.zeros(*((G,) if grouped else ()), n, k, dtype=torch.int8),
         "d": torch.zeros(*lead, n, dtype=out_dtype)}
    a, b, bias, azp = t["A"], t["B"], None, None
    if epilogue:
        vector = (G, n) if grouped else (n,)
        t.update(sa=torch.ones(*lead), sb=torch.ones(*vector), bias=torch.zeros(*vector),
                 zp=torch.zeros(*lead, dtype=torch.int32), b_sums=torch.zeros(*vector, dtype=torch.int32))
        a, b, bias, azp = (t["A"], t["sa"]), (t["B"], t["sb"]), t["bias"], (t["zp"], t["b_sums"])
    dims = {"dense": (("M", "K"), ("N", "K"), ("M", "N")),
            "contiguous": (("M_sum", "K"), ("G", "N", "K"), ("M_sum", "N")),
            "offsets": (("M_sum", "K"), ("G", "N", "K"), ("M_sum", "N")),
            "masked": (("G", "max_m", "K"), ("G", "N", "K"), ("G", "max_m", "N"))}[kind]
    checked = dataclasses.replace(gemm._check(a, b, t["d"], bias, azp, *dims), cuda_index=0)
    t["index"] = torch.zeros(G if kind != "contiguous" else G * rows, dtype=torch.int32)

    def call(mods):
        if kind == "dense":
            mods.int8.launch_int8_gemm_nt(checked, t["d"], config)
        elif kind == "contiguous":
            mods.int8.launch_m_grouped_int8_contiguous(checked, t["d"], t["index"], config)
        elif kind == "offsets":
            mods.int8.launch_m_grouped_int8_contiguous_offsets(checked, t["d"], t["index"], config)
        else:
            mods.int8.launch_m_grouped_int8_masked(checked, t["d"], t["index"], 64, config)

    return t, call


def tf32(m, n, k, num_terms, has_c):
    t = {"A": torch.zeros(m, k), "B": torch.zeros(n, k), "d": torch.zeros(m, n)}
    if has_c:
        t["c"] = torch.zeros(m, n)
    return t, lambda mods: mods.tf32.launch_tf32_gemm(t["A"], t["B"], t["d"], t.get("c"), num_terms, 0)


CASES = {
    "fp8 dense": lambda: fp8_dense(256, 4096, 7168, torch.bfloat16),
    "fp8 dense, sfa copied to MN-major": lambda: fp8_dense(128, 2112, 7168, torch.bfloat16, False),
    "fp8 dense fp32 out": lambda: fp8_dense(4096, 7168, 2048, torch.float32),
    "fp8 dense split-K": lambda: fp8_dense(16, 512, 16384, torch.bfloat16),
    "fp8 dense split-K fp32 out": lambda: fp8_dense(64, 1024, 16384, torch.float32),
    "fp8 dense config": lambda: fp8_dense_config(256, 4096, 7168, torch.bfloat16),
    "fp8 dense split-K config": lambda: fp8_dense_config(16, 512, 16384, torch.bfloat16),
    "fp8 contiguous": lambda: fp8_grouped("contiguous", 512, 4096, 7168, torch.bfloat16),
    "fp8 contiguous offsets": lambda: fp8_grouped("offsets", 256, 1024, 512, torch.float32),
    "fp8 masked": lambda: fp8_grouped("masked", 256, 4096, 7168, torch.bfloat16),
    "fp8 masked, sfb padded": lambda: fp8_grouped("masked", 128, 1024, 384, torch.bfloat16),
    "fp8 masked config": lambda: fp8_grouped(
        "masked", 256, 4096, 7168, torch.bfloat16, _config(FP8_1D2D, 64, 4096, 7168, 2, G, "masked")),
    "fp8 contiguous, dense config": lambda: fp8_grouped(
        "contiguous", 256, 1024, 512, torch.bfloat16, _config(FP8_1D2D, 1024, 1024, 512)),
    "int8 dense": lambda: int8("dense", 256, 4096, 7168, torch.int32, False),
    "int8 dense epilogue": lambda: int8("dense", 256, 4096, 7168, torch.bfloat16, True),
    "int8 contiguous epilogue": lambda: int8("contiguous", 256, 1024, 512, torch.float16, True),
    "int8 offsets": lambda: int8("offsets", 256, 1024, 512, torch.float32, False),
    "int8 masked epilogue": lambda: int8("masked", 128, 2048, 512, torch.bfloat16, True),
    "int8 dense config": lambda: int8("dense", 256, 4096, 7168, torch.bfloat16, True,
                                      _config(INT8, 256, 4096, 7168)),
    "int8 masked, dense config": lambda: int8("masked", 128, 2048, 512, torch.bfloat16, False,
                                              _config(INT8, 128, 2048, 512)),
    "tf32": lambda: tf32(256, 1024, 512, 1, True),
    "3xtf32": lambda: tf32(200, 1024, 500, 3, False),
}
for _layout in ("nt", "nn", "tn", "tt"):
    CASES[f"bf16 {_layout}"] = lambda layout=_layout: bf16_dense(layout, 256, 1024, 512, torch.bfloat16,
                                                                  torch.bfloat16, False)
    CASES[f"fp16 {_layout} + c fp32"] = lambda layout=_layout: bf16_dense(layout, 512, 2048, 1024,
                                                                          torch.float16, torch.float32, True)
CASES.update({
    "bf16 nt split-K + c": lambda: bf16_dense("nt", 64, 1024, 16384, torch.bfloat16, torch.bfloat16, True),
    "bf16 nn split-K": lambda: bf16_dense("nn", 32, 2048, 7168, torch.bfloat16, torch.float32, False),
    "bf16 nt config": lambda: bf16_dense("nt", 256, 1024, 512, torch.bfloat16, torch.bfloat16, False,
                                         _config(BF16, 256, 1024, 512)),
    "bf16 contiguous": lambda: bf16_grouped("contiguous", 256, 1024, 512, torch.bfloat16, torch.bfloat16),
    "fp16 masked fp32 out": lambda: bf16_grouped("masked", 128, 2048, 1024, torch.float16, torch.float32),
    "bf16 masked config": lambda: bf16_grouped(
        "masked", 128, 2048, 1024, torch.bfloat16, torch.bfloat16,
        _config(BF16, 64, 2048, 1024, 2, G, "masked")),
    "bf16 contiguous, dense config": lambda: bf16_grouped(
        "contiguous", 256, 1024, 512, torch.bfloat16, torch.bfloat16, _config(BF16, 1024, 1024, 512)),
})


def run_case(monkeypatch, name: str) -> dict:
    tensors, call = CASES[name]()
    return record(monkeypatch, tensors, call)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_every_case_is_recorded(golden):
    assert sorted(golden) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_launch_args_are_unchanged(monkeypatch, golden, name):
    events = run_case(monkeypatch, name)
    assert any(event[0] in ("launch", "raises") for event in events["calls"])
    assert events == golden[name]
