"""The TF32 family's record: its shared-memory mirror against hand-computed values, the selections on
the DeepSeek-V3 and edge shapes (TF32 and 3xTF32) are valid and fit, and a 3xTF32 problem is selected
as the GEMM of 3 K it runs."""

import pytest

from deepgemm.heuristics import FAMILIES, TF32, TF32X3, GemmShape, config_errors, select_config
from deepgemm.heuristics.families import tf32
from deepgemm.heuristics.family import MAX_SMEM_BYTES
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
