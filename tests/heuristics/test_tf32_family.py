"""The TF32 family's record: its shared-memory mirror against hand-computed values, the selections on
the DeepSeek-V3 and edge shapes (TF32 and 3xTF32) are valid and fit, and a 3xTF32 problem is selected
as the GEMM of 3 K it runs."""

import dataclasses

import pytest

from deepgemm.heuristics import FAMILIES, TF32, TF32X3, GemmShape, config_errors, select_config
from deepgemm.heuristics.config import accumulator_registers
from deepgemm.heuristics.families import tf32
from deepgemm.heuristics.family import MAX_SMEM_BYTES
from deepgemm.heuristics.sm90 import candidate_configs, estimated_cycles, make_config
from deepgemm.ops.tf32.kernel import gemm_shape

DSV3_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
SHAPES = [(m, n, k) for m in (1, 64, 128, 1000, 4096) for n, k in DSV3_NK] + [(7, 4, 17), (4097, 1000, 4097)]


def test_record_is_registered_with_fp32_operands():
    assert FAMILIES["tf32"] is TF32
    assert TF32.operand_bytes == 4 and tf32.BLOCK_K == 32
    assert TF32.block_n_candidates == tuple(range(16, 257, 16))


@pytest.mark.parametrize("block_m, block_n, stages, chunks, expected", [
    # D tile in FP32 (aligned to 1 KB) + per stage (A + B rows) x 128 bytes + two 8-byte barriers.
    (128, 256, 4, 4, 32768 + 4 * (384 * 128 + 16)),
    (128, 176, 4, 2, 45056 + 4 * (304 * 128 + 16)),
    (64, 16, 20, 1, 4096 + 20 * (80 * 128 + 16)),
    (256, 128, 3, 1, 131072 + 3 * (384 * 128 + 16)),
])
def test_smem_bytes_hand_computed(block_m, block_n, stages, chunks, expected):
    assert TF32.smem_bytes(block_m, block_n, stages, 7168, 4, False, chunks) == expected


@pytest.mark.parametrize("num_terms", [1, 3])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_selected_configs_are_valid_and_fit(m, n, k, num_terms):
    shape = gemm_shape(m, n, k, num_terms)
    cfg = select_config(shape, 132)
    assert cfg.family is (TF32X3 if num_terms == 3 else TF32) and cfg.out_bytes == 4 and not cfg.grouped
    assert config_errors(cfg, shape) == []
    assert cfg.smem_bytes(shape.k) <= MAX_SMEM_BYTES
    assert cfg.num_stages >= TF32.min_stages
    # The 3xTF32 mainloop holds the promoted sum beside the WGMMA accumulator.
    assert cfg.family.accumulator_registers(cfg.block_m, cfg.block_n) <= cfg.family.max_accumulator_registers


def test_3xtf32_runs_the_k_blocks_of_three_k():
    assert gemm_shape(4096, 2112, 7168, 3) == GemmShape(4096, 2112, 3 * 7168, 4, family=TF32X3)


def test_3xtf32_counts_two_accumulators():
    assert TF32X3.accumulator_registers(128, 192) == 2 * TF32.accumulator_registers(128, 192) == 192
    assert TF32X3.name == "tf32x3" and FAMILIES["tf32x3"] is TF32X3
    assert gemm_shape(4096, 2112, 7168, 3).num_k_blocks == 3 * 7168 // 32
    assert gemm_shape(4096, 2112, 100, 1).num_k_blocks == 4


# ---- 3xTF32 promotion schedules (GemmConfig.promote_every, promote_sets) -----------------------------


def _with(cfg, every, sets):
    return dataclasses.replace(cfg, promote_every=every, promote_sets=sets)


def test_3xtf32_takes_every_promotion_schedule_and_the_others_none():
    assert TF32X3.promotions == ((1, 1), (2, 1), (4, 1), (1, 2), (2, 2), (4, 2))
    for family in (TF32, *(f for f in FAMILIES.values() if f is not TF32X3)):
        assert family.promotions == ((1, 1),)
    shape = gemm_shape(4096, 2112, 7168, 1)
    errors = config_errors(_with(select_config(shape, 132), 2, 1), shape)
    assert errors == ["promote_every=2, promote_sets=1 is not one of tf32's promotion schedules ((1, 1),)"]
    shape3 = gemm_shape(4096, 2112, 7168, 3)
    errors = config_errors(_with(select_config(shape3, 132), 3, 1), shape3)
    assert len(errors) == 1 and "promote_every=3" in errors[0]


@pytest.mark.parametrize("block_m, block_n, sets, registers", [
    # The WGMMA sets (block_n / 2 FP32 per thread and 64-row wave) and the promoted total.
    (128, 176, 1, 176), (128, 192, 1, 192), (128, 128, 2, 192), (128, 144, 2, 216), (256, 64, 2, 192),
    (64, 128, 2, 192),
])
def test_a_second_set_costs_a_third_of_the_registers(block_m, block_n, sets, registers):
    shape = gemm_shape(4096, 7168, 2048, 3)
    cfg = _with(make_config(shape, 132, block_m, block_n), 2, sets)
    assert accumulator_registers(cfg) == registers
    too_many = [e for e in config_errors(cfg, shape) if "accumulator registers" in e]
    assert bool(too_many) == (registers > TF32X3.max_accumulator_registers)


def test_the_heuristic_weighs_the_measured_schedules():
    # The schedules a GPU sweep measured are weighed (one set, every 1, 2 or 4 k-blocks); every 4 cost
    # least on every tile swept, so the selections promote every 4 from one set.
    assert {(every, sets) for every, sets, _ in TF32X3.promotion_costs} == {(1, 1), (2, 1), (4, 1)}
    for m, n, k in SHAPES:
        cfg = select_config(gemm_shape(m, n, k, 3), 132)
        assert (cfg.promote_every, cfg.promote_sets) == (4, 1)
    shape = gemm_shape(4096, 2112, 7168, 3)
    assert {c.promote_sets for c in candidate_configs(shape, 132)} == {1}


def test_the_sweep_gets_each_schedule_and_the_model_can_cost_them():
    shape = gemm_shape(4096, 2112, 7168, 3)
    for every, sets in TF32X3.promotions:
        cfgs = list(candidate_configs(shape, 132, ((every, sets),)))
        assert cfgs and all((c.promote_every, c.promote_sets) == (every, sets) for c in cfgs)
        assert all(config_errors(c, shape) == [] for c in cfgs)
        assert max(c.block_n for c in cfgs if c.block_m == 128) == (128 if sets == 2 else 192)
    # A measured cost factor scales the schedule's k-blocks and can move the selection.
    cheaper = dataclasses.replace(TF32X3, promotion_costs=((1, 1, 1.0), (2, 2, 0.5)))
    shape_cheaper = GemmShape(4096, 2112, 3 * 7168, 4, family=cheaper)
    chosen = select_config(shape_cheaper, 132)
    assert (chosen.promote_every, chosen.promote_sets) == (2, 2) and chosen.block_n <= 128
    base = make_config(shape_cheaper, 132, 128, 128)
    halved = estimated_cycles(shape_cheaper, _with(base, 2, 2))[1]
    assert halved == estimated_cycles(shape_cheaper, base)[1] * 0.5
