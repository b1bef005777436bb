"""The weight-only kernel's config selection (`heuristics/families/wonly.py`): the shared-memory mirror
against hand-computed values, every selection fits and obeys the kernel's rules, the split-K and grid
arithmetic (emulating the kernel's block decomposition), and the decode/prefill tile choices."""

from __future__ import annotations

import pytest

from deepgemm.heuristics.families.wonly import MAX_STAGES, select_wonly_config, wonly_smem_bytes
from deepgemm.heuristics.family import MAX_SMEM_BYTES, ceil_div

NUM_SMS = 132
SHAPES = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048), (8192, 8192),
          (28672, 4096), (7, 8), (1000, 1000), (4097, 4104)]
MS = (1, 7, 8, 16, 17, 32, 64, 65, 129, 1000, 4096)


def test_smem_mirror_by_hand():
    # 16 stages x (8 tokens x 128 B + 2 x 64 rows x 64 INT4 / 2) + 16 stages x 2 barriers x 8 B + 16 B.
    assert wonly_smem_bytes(8, 2, 16, 4) == 16 * (1024 + 4096) + 256 + 16
    # 5 stages x (256 x 128 B + 128 x 64 B) + 80 + 16.
    assert wonly_smem_bytes(256, 2, 5, 8) == 5 * (32768 + 8192) + 80 + 16


@pytest.mark.parametrize("bits", (8, 4))
@pytest.mark.parametrize("n, k", SHAPES)
def test_every_selection_fits_and_follows_the_kernel_rules(n, k, bits):
    num_k_blocks = ceil_div(k, 64)
    for m in MS:
        cfg = select_wonly_config(m, n, k, bits, NUM_SMS)
        assert cfg.smem_bytes <= MAX_SMEM_BYTES and 2 <= cfg.num_stages <= MAX_STAGES
        assert cfg.block_m in (8, 16, 32, 64, 128, 256) and cfg.block_m >= min(m, 64)
        assert 1 <= cfg.num_splits <= num_k_blocks
        tiles = ceil_div(m, cfg.block_m) * ceil_div(n, cfg.block_n)
        assert cfg.grid == tiles * cfg.num_splits
        if cfg.num_splits > 1:
            assert cfg.grid <= NUM_SMS  # one wave: the split CTAs of a tile run together
            assert cfg.workspace_floats(tiles) == tiles * cfg.num_splits * cfg.block_n * cfg.block_m


def test_kernel_block_decomposition_covers_every_tile_and_k_block_once():
    """The kernel's blockIdx split (split fastest, then n-block, then m-block) and its K ranges."""
    m, n, k = 5, 2112, 7168
    cfg = select_wonly_config(m, n, k, 4, NUM_SMS)
    assert cfg.num_splits > 1
    num_k_blocks, num_n_blocks = ceil_div(k, 64), ceil_div(n, cfg.block_n)
    seen = {}
    for block in range(cfg.grid):
        split, rest = block % cfg.num_splits, block // cfg.num_splits
        n_block, m_block = rest % num_n_blocks, rest // num_n_blocks
        begin = split * num_k_blocks // cfg.num_splits
        end = (split + 1) * num_k_blocks // cfg.num_splits
        assert end > begin
        seen.setdefault((m_block, n_block), []).extend(range(begin, end))
    assert len(seen) == ceil_div(m, cfg.block_m) * num_n_blocks
    assert all(sorted(blocks) == list(range(num_k_blocks)) for blocks in seen.values())


def test_masked_selection_never_splits_and_covers_the_groups():
    for expected_m in (16, 32, 48, 256):
        cfg = select_wonly_config(expected_m, 4096, 7168, 4, NUM_SMS, 8, masked=True)
        assert cfg.num_splits == 1 and cfg.grid == 8 * ceil_div(4096, cfg.block_n)


def test_decode_fills_the_sms_and_prefill_takes_tall_tiles():
    decode = select_wonly_config(16, 4096, 7168, 4, NUM_SMS)
    assert decode.block_m == 16 and decode.grid >= 0.9 * NUM_SMS
    prefill = select_wonly_config(4096, 7168, 16384, 8, NUM_SMS)
    assert prefill.block_m == 256 and prefill.block_n == 128 and prefill.num_splits == 1


def test_records_describe_the_selected_configs():
    from deepgemm.heuristics import FAMILIES, W4A16, W8A16

    assert FAMILIES["w4a16"] is W4A16 and FAMILIES["w8a16"] is W8A16
    for bits, family in ((4, W4A16), (8, W8A16)):
        for m in MS:
            cfg = select_wonly_config(m, 7168, 2048, bits, NUM_SMS)
            assert cfg.block_n in family.block_n_candidates
            assert family.min_stages <= cfg.num_stages <= family.max_stages
            smem = family.smem_bytes(cfg.block_m, cfg.block_n, cfg.num_stages, 2048, 2, False, 1)
            assert smem == cfg.smem_bytes
            assert cfg.as_dict()["family"] == family.name
