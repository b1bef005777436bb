"""The INT8 family's heuristic record: its shared-memory mirror against hand-computed values, its tile
rules, and every config it selects on the suites' shapes valid and within shared memory."""

import pytest

from deepgemm.heuristics import BF16, INT8, select_config
from deepgemm.heuristics.config import CONTIGUOUS, MASKED, GemmShape, config_errors
from deepgemm.heuristics.family import MAX_SMEM_BYTES
from deepgemm.heuristics.sm90 import make_config

DSV3_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))


def test_smem_mirror_by_hand():
    # 128x256, 4 stages, BF16 D in 2 chunks: D 128*256*2/2, stages (128+256)*128 each, 16 B of barriers.
    assert INT8.smem_bytes(128, 256, 4, 16384, 2, False, 2) == 32768 + 4 * (384 * 128 + 16)
    # 64x16, 16 stages, FP32 D whole, grouped: D rounded up to 1024, a 16-byte tile slot per stage.
    assert INT8.smem_bytes(64, 16, 16, 7168, 4, True, 1) == 4096 + 16 * (80 * 128 + 16) + 16 * 16


def test_tile_rules():
    shape = GemmShape(4096, 7168, 2048, family=INT8)
    # Integer WGMMA N: multiples of 16 (the 16-bit family takes multiples of 8).
    assert any("multiple of 16" in e for e in config_errors(make_config(shape, 132, 128, 40), shape))
    bf16 = GemmShape(4096, 7168, 2048, family=BF16)
    assert not config_errors(make_config(bf16, 132, 128, 40), bf16)
    # 256-row tiles up to 128 columns (accumulator registers), grouped tiles up to 192 columns.
    assert any("accumulator registers" in e for e in config_errors(make_config(shape, 132, 256, 144), shape))
    assert not config_errors(make_config(shape, 132, 128, 256), shape)
    grouped = GemmShape(4096, 7168, 2048, 2, 4, CONTIGUOUS, family=INT8)
    assert any("grouped tiles" in e for e in config_errors(make_config(grouped, 132, 128, 208), grouped))
    assert not config_errors(make_config(grouped, 132, 128, 192), grouped)


SHAPES = [
    GemmShape(m, n, k, out, family=INT8)
    for m in (1, 64, 128, 1000, 4096)
    for n, k in DSV3_NK
    for out in (2, 4)
]
SHAPES += [
    GemmShape(rows, n, k, 2, g, layout, family=INT8)
    for n, k in DSV3_NK[3:]
    for g, rows, layout in ((4, 8192, CONTIGUOUS), (8, 4096, CONTIGUOUS), (4, 256, MASKED), (32, 16, MASKED))
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.layout}-{s.m}x{s.n}x{s.k}-o{s.out_bytes}")
def test_selected_configs_are_valid(shape):
    cfg = select_config(shape, 132)
    assert cfg.family is INT8
    assert not config_errors(cfg, shape)
    assert cfg.smem_bytes(shape.k) <= MAX_SMEM_BYTES
    assert cfg.num_stages >= INT8.min_stages


def test_the_large_shape_takes_a_wide_multicast_tile():
    cfg = select_config(GemmShape(4096, 7168, 16384, family=INT8), 132)
    assert (cfg.block_m, cfg.block_n, cfg.num_stages) == (128, 256, 4)
    assert cfg.num_tma_multicast == 2
