"""The 1D1D kernel's tile walk (impls/fp8_1d1d/scheduler.cuh over scheduler/tile_scheduler.cuh's
rasterisation), emulated in Python: every (group, m-block, n-block) is computed exactly once over the
persistent grid, each group's tiles sum its own range of k-blocks (sizes clamped as the kernel clamps
them), and with a 2-CTA cluster both CTAs of a pair take tiles of one group that share the multicast
operand, in step (the configs the host allows: an even grid, an even number of n-blocks for A, of
m-blocks for B)."""

import pytest

BLOCKS_PER_GROUP = 16  # TileScheduler's kNumBlocksPerGroup in the 1D1D kernel


def rasterise(block: int, num_grouped: int, num_other: int) -> tuple[int, int]:
    """TileScheduler::rasterise: (coordinate along the grouped dimension, along the other)."""
    blocks_per_group = BLOCKS_PER_GROUP * num_other
    group = block // blocks_per_group
    first = group * BLOCKS_PER_GROUP
    width = min(BLOCKS_PER_GROUP, num_grouped - first)
    in_group = block - group * blocks_per_group
    return first + in_group % width, in_group // width


def walk(cta: int, grid: int, m: int, n: int, block_m: int, block_n: int, ks: list[int], total_k_blocks: int,
         group_along_n: bool):
    """WgradScheduler::next for CTA `cta`: its tiles as (group, m_block, n_block, first k-block, k-blocks)."""
    num_m, num_n = -(-m // block_m), -(-n // block_n)
    per_group = num_m * num_n
    tiles, tile_id = [], cta
    group, first_k, group_k = 0, 0, 0

    def k_blocks_of(g):
        return min(max(ks[g], 0) // 128, total_k_blocks - first_k)

    if ks:
        group_k = k_blocks_of(0)
    while per_group and tile_id // per_group < len(ks):
        g = tile_id // per_group
        while group < g:
            first_k += group_k
            group += 1
            group_k = k_blocks_of(group)
        local = tile_id - g * per_group
        if group_along_n:
            n_block, m_block = rasterise(local, num_n, num_m)
        else:
            m_block, n_block = rasterise(local, num_m, num_n)
        tiles.append((g, m_block, n_block, first_k, group_k))
        tile_id += grid
    return tiles


CASES = [
    # (M, N, BLOCK_M, BLOCK_N, ks, grid, multicast on: None, "A" or "B")
    (7168, 4096, 128, 152, [4224, 3968, 4224, 3968], 132, None),
    (2048, 7168, 128, 128, [4096] * 8, 132, "A"),
    (512, 2304, 128, 144, [1024, 0, 384, 640], 64, "B"),
    (129, 768, 64, 48, [128, 0, 256], 132, None),
    (1000, 7, 256, 16, [0, 0], 96, None),
    (1, 1, 64, 16, [128], 132, None),
]


@pytest.mark.parametrize("m, n, block_m, block_n, ks, grid, multicast", CASES)
def test_every_tile_once_with_its_groups_k_range(m, n, block_m, block_n, ks, grid, multicast):
    group_along_n = multicast != "B"
    total = sum(ks) // 128
    walks = [walk(cta, grid, m, n, block_m, block_n, ks, total, group_along_n) for cta in range(grid)]
    seen = [tile[:3] for tiles in walks for tile in tiles]
    num_m, num_n = -(-m // block_m), -(-n // block_n)
    assert sorted(seen) == [(g, i, j) for g in range(len(ks)) for i in range(num_m) for j in range(num_n)]
    starts = [sum(ks[:g]) // 128 for g in range(len(ks))]
    for tiles in walks:
        for g, _, _, first_k, k_blocks in tiles:
            assert (first_k, k_blocks) == (starts[g], ks[g] // 128)
    if multicast:
        assert grid % 2 == 0 and (num_n if multicast == "A" else num_m) % 2 == 0
        for cta in range(0, grid, 2):
            pair = list(zip(walks[cta], walks[cta + 1], strict=True))  # in step: as many tiles each
            for first, second in pair:
                shared = 1 if multicast == "A" else 2  # A is shared by m-block, B by n-block
                assert first[0] == second[0] and first[shared] == second[shared] and first[3:] == second[3:]


def test_bad_sizes_stay_inside_k():
    # Negative, not a multiple of 128, or summing past K: clamped, never past the last k-block.
    ks, total = [-128, 200, 1024, 512], 8
    tiles = [tile for cta in range(4) for tile in walk(cta, 4, 128, 128, 128, 128, ks, total, True)]
    for _, _, _, first_k, k_blocks in tiles:
        assert 0 <= first_k and first_k + k_blocks <= total
    assert {tile[0]: tile[4] for tile in tiles} == {0: 0, 1: 1, 2: 7, 3: 0}
