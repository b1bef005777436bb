"""The 1D1D family's heuristic record: its shared-memory mirror against hand-computed layouts, its
register rule, and every config the k-grouped and dense launchers pick on the wgrad suites and the GPU
tests' shapes is valid and fits shared memory; the other families' records are not touched."""

import pytest

from deepgemm.heuristics import FAMILIES, FP8_1D1D, GemmShape
from deepgemm.heuristics.config import config_errors
from deepgemm.heuristics.families.fp8_1d1d import accumulator_registers, smem_bytes
from deepgemm.heuristics.family import MAX_SMEM_BYTES
from deepgemm.ops.fp8_1d1d.kernel import dense_config, k_grouped_config


def test_smem_mirror_by_hand():
    # 128x152 FP32 D, 4 stages: D 128*152*4; per stage A 16384 + B 19456 + sfa 512 + sfb 640 (608 -> 640)
    # + two barriers + a 16-byte tile slot.
    assert smem_bytes(128, 152, 4, 8192, 4) == 77824 + 4 * (16384 + 19456 + 512 + 640 + 16 + 16)
    # 64x16 BF16 D in two chunks: 64*16*2/2 = 1024; sfb 64 -> 128 bytes. K and the kind do not matter.
    assert smem_bytes(64, 16, 2, 128, 2, True, 2) == 1024 + 2 * (8192 + 2048 + 256 + 128 + 32)
    assert smem_bytes(64, 16, 2, 4096, 2, False, 2) == smem_bytes(64, 16, 2, 128, 2, True, 2)


def test_register_rule_bounds_the_tiles():
    assert accumulator_registers(128, 152) == 76 * 2 + 38 <= 192
    assert accumulator_registers(128, 160) > 192
    assert accumulator_registers(256, 104) <= 192 < accumulator_registers(256, 112)
    assert FAMILIES["fp8_1d1d"] is FP8_1D1D
    assert max(FP8_1D1D.block_n_candidates) == 152


WGRAD = [(m, n, k) for m, n in ((7168, 2112), (1536, 24576), (512, 32768), (16384, 7168), (7168, 4096),
                                (2048, 7168)) for k in (4096, 8192)]
EDGE = [(m, n, k) for m in (1, 7, 65, 129, 1000) for n in (1, 7, 65, 129, 768, 1000) for k in (128, 256, 384)]


@pytest.mark.parametrize("num_sms", [132, 78])
def test_dense_selections_are_valid(num_sms):
    for m, n, k in WGRAD + EDGE:
        for out_bytes in (4, 2):
            cfg = dense_config(m, n, k, out_bytes, num_sms)
            shape = GemmShape(m, n, k, out_bytes, family=FP8_1D1D)
            assert config_errors(cfg, shape) == [], (m, n, k, cfg)
            assert cfg.smem_bytes(k) <= MAX_SMEM_BYTES and cfg.num_stages >= FP8_1D1D.min_stages
            assert cfg.family is FP8_1D1D and not cfg.grouped


def test_k_grouped_selections_are_valid():
    for g in (1, 3, 4, 8):
        for m, n, k in [(7168, 4096, 4096), (2048, 7168, 4096), (2048, 768, 4096)] + EDGE:
            cfg = k_grouped_config(g, m, n, g * k, 132)
            assert config_errors(cfg, GemmShape(m, n, g * k, 4, family=FP8_1D1D)) == []
            assert cfg.num_tma_multicast == 1 and cfg.num_sms == 132 and not cfg.grouped
    # Experts of no tokens at all: the mean K is taken as one block.
    assert k_grouped_config(4, 128, 256, 0, 132) == k_grouped_config(4, 128, 256, 512, 132)
