"""The B scales the masked FP8 kernel reads (`kernel.masked_sfb`), and the kernel's index math over them
(`TileScalesB` in impls/fp8_1d2d/scales_b.cuh) emulated on the CPU: its producer bulk-copies a tile's
rows of scales, which needs every row to start 16-byte aligned, in global and in shared memory."""

from __future__ import annotations

import pytest
import torch

from deepgemm.heuristics.families.fp8_1d2d import MASKED_SFB_ROW_ALIGN, masked_sfb_row_floats
from deepgemm.ops.fp8.kernel import masked_sfb


def _scales(g: int, n: int, k: int) -> torch.Tensor:
    sizes = (g, -(-n // 128), -(-k // 128))
    return torch.arange(1, 1 + sizes[0] * sizes[1] * sizes[2], dtype=torch.float32).view(sizes)


@pytest.mark.parametrize("k_blocks, row_floats",
                         [(1, 4), (2, 4), (3, 4), (4, 4), (9, 12), (56, 56), (57, 60)])
def test_row_floats(k_blocks: int, row_floats: int) -> None:
    assert MASKED_SFB_ROW_ALIGN * 4 == 16
    assert masked_sfb_row_floats(k_blocks) == row_floats


@pytest.mark.parametrize("k", [128, 256, 272, 1152, 1408, 5248])
def test_rows_padded_with_zeros_where_short(k: int) -> None:
    sfb = _scales(3, 264, k)
    padded = masked_sfb(sfb)
    k_blocks = sfb.shape[-1]
    assert padded.shape == (*sfb.shape[:2], masked_sfb_row_floats(k_blocks)) and padded.is_contiguous()
    assert padded.data_ptr() % 16 == 0 and padded.data_ptr() != sfb.data_ptr()
    assert torch.equal(padded[..., :k_blocks], sfb)
    assert bool((padded[..., k_blocks:] == 0).all())


@pytest.mark.parametrize("k", [512, 2048, 4096, 7168])
def test_aligned_rows_taken_as_they_are(k: int) -> None:
    # The DeepSeek-V3 K values: no copy on the call.
    sfb = _scales(4, 7168, k)
    assert masked_sfb(sfb) is sfb


def test_misaligned_start_is_copied() -> None:
    storage = torch.zeros(1 + 2 * 4 * 16)
    sfb = storage[1:].view(2, 4, 16)
    sfb.copy_(_scales(2, 512, 2048))
    assert sfb.data_ptr() % 16 == 4
    copy = masked_sfb(sfb)
    assert copy.data_ptr() % 16 == 0 and torch.equal(copy, sfb)


@pytest.mark.parametrize("n, k, block_n", [(264, 272, 32), (136, 128, 16), (4096, 1152, 128),
                                           (7168, 1408, 160), (3072, 640, 192), (1536, 5248, 96),
                                           (7168, 2048, 192)])
def test_kernel_index_math_on_padded_rows(n: int, k: int, block_n: int) -> None:
    """`TileScalesB<..., kPaddedRows = true>`: each tile's rows from the flat padded tensor (`rows`), their
    bulk copies' byte offsets and sizes, the shared-memory copy's layout and the consumers' reads
    (`of_k_block`) give every tile's scales of each k-block, for every group and n-block."""
    g = 3
    sfb = _scales(g, n, k)
    flat = masked_sfb(sfb).flatten()
    k_blocks = -(-k // 128)
    scale_blocks_n = -(-n // 128)
    row_floats = masked_sfb_row_floats(k_blocks)  # kRowFloats
    uniform = 128 % block_n == 0
    num_rows = 1 if uniform else 2
    num_scales = row_floats * num_rows  # kNumScales: one shared-memory buffer
    assert num_scales * 4 % 16 == 0
    num_buffers = 3
    smem = torch.full((num_buffers * num_scales,), float("nan"))
    tiles = [(group, n_block) for group in range(g) for n_block in range(-(-n // block_n))]
    for tile_number, (group, n_block) in enumerate(tiles):
        scale_row = n_block * block_n // 128
        group_scales = group * (scale_blocks_n * row_floats)
        rows = [group_scales + scale_row * row_floats,
                group_scales + min(scale_row + 1, scale_blocks_n - 1) * row_floats]
        dst = tile_number % num_buffers * num_scales  # Fp8GemmLayout::next_tile_sfb
        for r in range(num_rows):  # load_by_producer: one bulk copy of row_floats * 4 bytes per row
            src_bytes, dst_bytes, size = rows[r] * 4, (dst + r * row_floats) * 4, row_floats * 4
            assert src_bytes % 16 == 0 and dst_bytes % 16 == 0 and size % 16 == 0
            assert rows[r] + row_floats <= flat.numel()
            smem[dst + r * row_floats: dst + (r + 1) * row_floats] = flat[rows[r]: rows[r] + row_floats]
        tile_sfb = smem[dst: dst + num_scales]
        next_row = min(scale_row + 1, scale_blocks_n - 1)
        for k_block in range(k_blocks):  # of_k_block
            scale_b0 = tile_sfb[k_block]
            scale_b1 = scale_b0 if uniform else tile_sfb[row_floats + k_block]
            assert scale_b0 == sfb[group, scale_row, k_block]
            assert scale_b1 == (sfb[group, scale_row, k_block] if uniform else sfb[group, next_row, k_block])
