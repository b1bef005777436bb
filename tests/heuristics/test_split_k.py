"""Split-K's selection and index math on the CPU: which shapes split and into what, that every split config
is one the kernels accept, that shapes whose tiles fill the GPU keep their unsplit selection, and that the
persistent scheduler's walk (emulated from scheduler/tile_scheduler.cuh) hands out every (tile, slice)
exactly once with slices covering each tile's k-blocks."""

from __future__ import annotations

import itertools

import pytest

from deepgemm.heuristics import (
    BF16,
    FAMILIES,
    FP8_1D2D,
    GemmShape,
    few_tiles,
    select_config,
    select_unsplit_config,
)
from deepgemm.heuristics.config import CONTIGUOUS, MASKED, config_errors
from deepgemm.heuristics.family import ceil_div
from deepgemm.heuristics.sm90 import SPLIT_K_MIN_SLICE_K_BLOCKS, make_config, split_candidates, split_k_cycles

NUM_SMS = 132
DECODE_NK = ((512, 7168), (1280, 8192), (64, 7168), (768, 4096), (576, 7168), (4096, 7168), (2112, 7168),
             (7168, 2048), (1000, 7296), (8192, 3696))
DECODE_M = (1, 2, 7, 16, 32, 64, 65, 128)


def _shapes():
    for family, (n, k), m, out_bytes in itertools.product((FP8_1D2D, BF16), DECODE_NK, DECODE_M, (2, 4)):
        yield GemmShape(m, n, k, out_bytes, family=family)


def test_split_selections_are_valid_and_only_where_tiles_leave_sms_idle():
    num_split = 0
    for shape in _shapes():
        cfg = select_config(shape, NUM_SMS)
        unsplit = select_unsplit_config(shape, NUM_SMS)
        assert not config_errors(cfg, shape), (shape, config_errors(cfg, shape))
        if cfg.split_k == 1:
            assert cfg == unsplit
            continue
        num_split += 1
        assert few_tiles(shape, NUM_SMS)
        assert shape.num_k_blocks % cfg.split_k == 0
        assert shape.num_k_blocks // cfg.split_k >= SPLIT_K_MIN_SLICE_K_BLOCKS
        assert cfg.num_tma_multicast == 1 and cfg.split_k in shape.family.split_k_candidates
        # The grid: one CTA per work unit up to every SM.
        units = shape.num_tiles(cfg.block_m, cfg.block_n) * cfg.split_k
        assert cfg.num_sms <= NUM_SMS and ceil_div(units, cfg.num_sms) == ceil_div(units, NUM_SMS)
        assert split_k_cycles(shape, cfg) <= 0.9 * split_k_cycles(shape, unsplit)
    assert num_split > 100


def test_the_issue_examples_split():
    # Few output tiles over long K (issue 27): N = 512 or 1280, K = 7168 or 8192, M 1 to 128.
    for family in (FP8_1D2D, BF16):
        for m, n, k in ((1, 512, 7168), (32, 512, 7168), (128, 512, 7168), (1, 1280, 8192), (1, 64, 7168)):
            assert select_config(GemmShape(m, n, k, family=family), NUM_SMS).split_k > 1, (family, m, n, k)


def test_shapes_that_fill_the_gpu_keep_their_selection():
    for family in (FP8_1D2D, BF16):
        for m, n, k in ((4096, 7168, 2048), (4096, 2112, 7168), (64, 2112, 7168), (128, 24576, 1536),
                        (4096, 512, 7168)):
            shape = GemmShape(m, n, k, family=family)
            if not few_tiles(shape, NUM_SMS):
                assert select_config(shape, NUM_SMS) == select_unsplit_config(shape, NUM_SMS)
        # M = 4096, N = 512: 128 tiles of 128 x 128, fewer than the SMs, but a split adds a wave.
        assert select_config(GemmShape(4096, 512, 7168, family=family), NUM_SMS).split_k == 1


def test_grouped_layouts_never_split():
    for family, layout in itertools.product((FP8_1D2D, BF16), (CONTIGUOUS, MASKED)):
        shape = GemmShape(64, 512, 7168, 2, 4, layout, family=family)
        assert select_config(shape, NUM_SMS).split_k == 1
        cfg = make_config(GemmShape(64, 512, 7168, family=family), NUM_SMS, 64, 64, split_k=4)
        grouped = make_config(shape, NUM_SMS, 64, 64, split_k=4)
        assert not config_errors(cfg, GemmShape(64, 512, 7168, family=family))
        assert "only the dense layout splits K" in config_errors(grouped, shape)


def test_split_config_rules():
    shape = GemmShape(32, 512, 7168)  # 56 k-blocks
    uneven, unlisted = (make_config(shape, NUM_SMS, 64, 64, split_k=s) for s in (16, 5))
    assert any("must divide" in e for e in config_errors(uneven, shape))
    assert any("split counts" in e for e in config_errors(unlisted, shape))
    mc = make_config(GemmShape(32, 512, 7168), NUM_SMS, 64, 64, 2, True, split_k=4)
    assert "split-K does not multicast" in config_errors(mc, shape)
    # The grid counts slices as tiles; the load batch follows a slice's k-blocks.
    cfg = make_config(shape, NUM_SMS, 64, 64, split_k=4)
    assert cfg.num_sms == 8 * 4 and cfg.load_batch == 1
    assert make_config(GemmShape(32, 512, 14336), NUM_SMS, 64, 64, split_k=2).load_batch == 4
    # split_k is part of the compiled config's printed form (the JIT stub's comment).
    assert "split_k=4" in cfg.kernel_repr()


def test_every_family_that_splits_declares_its_costs():
    for family in FAMILIES.values():
        if family.split_k_candidates:
            assert family.k_block_latency_cycles > 0 and family.split_k_fixed_cycles > 0
            assert all(s >= 2 for s in family.split_k_candidates)


def test_candidates_are_few_tile_tiles_only():
    shape = GemmShape(32, 512, 7168)
    candidates = list(split_candidates(shape, NUM_SMS))
    assert candidates and all(shape.num_tiles(c.block_m, c.block_n) < NUM_SMS for c in candidates)
    assert all(c.split_k > 1 and not config_errors(c, shape) for c in candidates)


# --- the scheduler's walk, emulated ------------------------------------------------------------------------


def _rasterise(block: int, num_grouped: int, num_other: int, per_group: int = 16) -> tuple[int, int]:
    blocks_per_group = per_group * num_other
    group = block // blocks_per_group
    first = group * per_group
    width = min(per_group, num_grouped - first)
    in_group = block - group * blocks_per_group
    return first + in_group % width, in_group // width


def _walk(m: int, n: int, block_m: int, block_n: int, split_k: int, grid: int):
    """TileScheduler<Dense, ..., kGroupAlongN = true, kSplitK>::next for every CTA: (cta, m_block,
    n_block, split) in the order handed out."""
    num_m_blocks, num_n_blocks = ceil_div(m, block_m), ceil_div(n, block_n)
    num_tiles = num_m_blocks * num_n_blocks
    units = []
    for cta in range(grid):
        block = cta
        while block < num_tiles * split_k:
            split = block // num_tiles
            n_block, m_block = _rasterise(block - split * num_tiles, num_n_blocks, num_m_blocks)
            units.append((cta, m_block, n_block, split))
            block += grid
    return units


@pytest.mark.parametrize("family", [FP8_1D2D, BF16], ids=lambda f: f.name)
def test_the_walk_covers_every_tile_slice_once(family):
    for shape in (GemmShape(m, n, k, family=family) for m in (1, 65, 129) for n, k in DECODE_NK):
        cfg = select_config(shape, NUM_SMS)
        units = _walk(shape.m, shape.n, cfg.block_m, cfg.block_n, cfg.split_k, cfg.num_sms)
        seen = [(mb, nb, s) for _, mb, nb, s in units]
        expected = set(itertools.product(range(ceil_div(shape.m, cfg.block_m)),
                                         range(ceil_div(shape.n, cfg.block_n)), range(cfg.split_k)))
        assert len(seen) == len(set(seen)) and set(seen) == expected
        # Slice s runs k-blocks [s * len, (s + 1) * len): together every k-block of the tile, once.
        slice_len = shape.num_k_blocks // cfg.split_k
        covered = sorted(kb for s in range(cfg.split_k) for kb in range(s * slice_len, (s + 1) * slice_len))
        assert covered == list(range(shape.num_k_blocks))
