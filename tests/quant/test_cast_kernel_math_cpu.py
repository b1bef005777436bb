"""The fused casts' index math, emulated on the CPU: each kernel's loops (grid-stride over its work,
warps, lanes, vector segments; impls/cast/*.cuh) replayed in Python with the kernel's formulas for which
element a lane reads, which lanes reduce together and where each byte and scale is written. Every output
element must be written exactly once and the results must equal the torch implementation bit for bit,
for shapes with every kind of tail and grids smaller and larger than the work."""

from __future__ import annotations

import itertools

import pytest
import torch

from deepgemm.quant import cast as cast_module
from deepgemm.quant.cast import AMAX_FLOOR, FP8_MAX

THREADS, WARPS, LANES, VEC, BLOCK = 256, 8, 32, 8, 128


def _scale(amax: torch.Tensor) -> torch.Tensor:
    return cast_module._div_by_fp8_max(amax.clamp(min=AMAX_FLOOR))


def _quantize(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (values / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)


class Output:
    """An output tensor whose writes are counted, so a test sees every element written once."""

    def __init__(self, numel: int, dtype: torch.dtype) -> None:
        self.data = torch.zeros(numel, dtype=dtype)
        self.writes = torch.zeros(numel, dtype=torch.int32)

    def write(self, index: int, value) -> None:
        self.data[index] = value
        self.writes[index] += 1


def _segment(x: torch.Tensor, row: int, col: int, valid: bool) -> torch.Tensor:
    """load_segment: 8 FP32 values from (row, col), zeros past the columns or when not valid."""
    rows, cols = x.shape
    out = torch.zeros(VEC)
    if valid and row < rows:
        n = max(0, min(VEC, cols - col))
        out[:n] = x[row, col : col + n].float()
    return out


def emulate_per_token(x: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = x.shape
    groups_per_row = -(-cols // BLOCK)
    num_groups = rows * groups_per_row
    q, sf = Output(rows * cols, torch.float8_e4m3fn), Output(rows * groups_per_row, torch.float32)
    num_warps = grid * THREADS // LANES
    for warp in range(num_warps):
        for first in range(warp * 2, num_groups, num_warps * 2):
            lanes = []
            for lane in range(LANES):
                group = first + lane // 16
                valid = group < num_groups
                row, g = (group // groups_per_row, group % groups_per_row) if valid else (0, 0)
                col = g * BLOCK + (lane % 16) * VEC
                lanes.append((valid, row, g, col, _segment(x, row, col, valid)))
            for half in range(2):  # xor shuffles 8, 4, 2, 1 stay inside each 16-lane half
                members = lanes[16 * half : 16 * half + 16]
                assert len({(m[1], m[2]) for m in members}) == 1
                scale = _scale(torch.stack([m[4] for m in members]).abs().amax())
                for lane, (valid, row, g, col, values) in enumerate(members):
                    if valid and col < cols:
                        for i, byte in enumerate(_quantize(values, scale)[: min(cols - col, VEC)]):
                            q.write(row * cols + col + i, byte)
                        if lane == 0:
                            sf.write(row * groups_per_row + g, scale)
    return q, sf


def emulate_per_block(x: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = x.shape
    blocks_per_row = -(-cols // BLOCK)
    num_blocks = -(-rows // BLOCK) * blocks_per_row
    q, sf = Output(rows * cols, torch.float8_e4m3fn), Output(num_blocks, torch.float32)
    for cta in range(grid):
        for block in range(cta, num_blocks, grid):
            threads = []
            for warp, lane in itertools.product(range(WARPS), range(LANES)):
                row0 = (block // blocks_per_row) * BLOCK + warp * 2 + lane // 16
                col = (block % blocks_per_row) * BLOCK + (lane % 16) * VEC
                rows_p = [row0 + p * 16 for p in range(BLOCK // 16)]
                threads.append((col, rows_p, [_segment(x, r, col, r < rows) for r in rows_p]))
            scale = _scale(torch.stack([v for t in threads for v in t[2]]).abs().amax())
            sf.write(block, scale)
            for col, rows_p, values in threads:
                if col < cols:
                    for r, v in zip(rows_p, values, strict=True):
                        if r < rows:
                            for i, byte in enumerate(_quantize(v, scale)[: min(cols - col, VEC)]):
                                q.write(r * cols + col + i, byte)
    return q, sf


def emulate_per_token_transposed(
    x: torch.Tensor, out_cols: int, grid: int
) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = x.shape
    tile_cols, stride = 64, 65
    col_tiles = -(-cols // tile_cols)
    num_tiles = -(-out_cols // BLOCK) * col_tiles
    row_blocks = -(-rows // BLOCK)
    q, sf = Output(cols * out_cols, torch.float8_e4m3fn), Output(cols * row_blocks, torch.float32)
    for cta in range(grid):
        for t in range(cta, num_tiles, grid):
            rb, col0 = t // col_tiles, (t % col_tiles) * tile_cols
            tile = torch.full((BLOCK * stride,), float("nan"))
            written = torch.zeros(BLOCK * stride, dtype=torch.int32)
            for warp, lane in itertools.product(range(WARPS), range(LANES)):
                c_in = (lane % 8) * VEC
                for p in range(BLOCK // 32):
                    r = p * 32 + warp * 4 + lane // 8
                    row = rb * BLOCK + r
                    values = _segment(x, row, col0 + c_in, row < rows)
                    for i in range(VEC):
                        tile[r * stride + c_in + i] = values[i]
                        written[r * stride + c_in + i] += 1
            assert (
                written.view(BLOCK, stride)[:, :tile_cols].eq(1).all()
                and not written.view(BLOCK, stride)[:, 64:].any()
            )
            for warp in range(WARPS):
                for cc in range(tile_cols // WARPS):
                    c = warp * 8 + cc
                    if col0 + c >= cols:
                        break
                    v = torch.stack(
                        [
                            torch.stack([tile[(lane + 32 * j) * stride + c] for j in range(4)])
                            for lane in range(LANES)
                        ]
                    )  # [lane, j]
                    scale = _scale(v.abs().amax())
                    bytes_ = _quantize(v, scale)
                    for lane in range(LANES):
                        for j in (0, 2):
                            r0 = rb * BLOCK + lane + 32 * j
                            if r0 < out_cols:
                                q.write((col0 + c) * out_cols + r0, bytes_[lane, j])
                            if r0 + 32 < out_cols:
                                q.write((col0 + c) * out_cols + r0 + 32, bytes_[lane, j + 1])
                    sf.write((col0 + c) * row_blocks + rb, scale)
    return q, sf


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8 if t.element_size() == 1 else torch.int32)


def _check(emulated: tuple[Output, Output], want: tuple[torch.Tensor, torch.Tensor]) -> None:
    (q, sf), (q_ref, sf_ref) = emulated, want
    assert q.writes.eq(1).all() and sf.writes.eq(1).all()
    assert torch.equal(_bits(q.data), _bits(q_ref.flatten())) and torch.equal(
        _bits(sf.data), _bits(sf_ref.flatten())
    )


def _input(rows: int, cols: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(rows * 1000 + cols)
    return (torch.randn(rows, cols, generator=gen) * torch.logspace(-6, 2, rows)[:, None]).bfloat16()


@pytest.mark.parametrize("rows, cols, grid", [(3, 136, 1), (5, 300, 2), (1, 8, 3), (2, 129, 1)])
def test_per_token_kernel_math(rows, cols, grid):
    x = _input(rows, cols)
    _check(emulate_per_token(x, grid), cast_module._per_token_torch(x))


@pytest.mark.parametrize("rows, cols, grid", [(130, 136, 2), (20, 300, 1), (129, 8, 3)])
def test_per_block_kernel_math(rows, cols, grid):
    x = _input(rows, cols)
    _check(emulate_per_block(x, grid), cast_module._per_block_torch(x))


@pytest.mark.parametrize(
    "rows, cols, pad, grid", [(130, 72, False, 2), (130, 72, True, 1), (5, 130, True, 3), (128, 64, False, 1)]
)
def test_per_token_transposed_kernel_math(rows, cols, pad, grid):
    x = _input(rows, cols)
    out_cols = -(-rows // 128) * 128 if pad else rows
    q_ref, sf_ref = cast_module._per_token_torch(x.T)
    q_ref = torch.nn.functional.pad(q_ref.view(torch.uint8), (0, out_cols - rows)).view(torch.float8_e4m3fn)
    _check(emulate_per_token_transposed(x, out_cols, grid), (q_ref, sf_ref))


# ---- the per-block cast's transposed write (impls/cast/per_block.cuh: TransposeTile, transpose4x4)


def _tile_index(row: int, w: int) -> int:
    return row * 32 + (w ^ (((row >> 2) & 31) ^ (row & 1)))


def _prmt(lo: int, hi: int, selector: int) -> int:
    pool = lo.to_bytes(4, "little") + hi.to_bytes(4, "little")
    return int.from_bytes(bytes(pool[(selector >> (4 * i)) & 7] for i in range(4)), "little")


def _transpose4x4(rows: list[int]) -> list[int]:
    lo01, lo23 = _prmt(rows[0], rows[1], 0x5140), _prmt(rows[2], rows[3], 0x5140)
    hi01, hi23 = _prmt(rows[0], rows[1], 0x7362), _prmt(rows[2], rows[3], 0x7362)
    return [
        _prmt(lo01, lo23, 0x5410),
        _prmt(lo01, lo23, 0x7632),
        _prmt(hi01, hi23, 0x5410),
        _prmt(hi01, hi23, 0x7632),
    ]


def test_transpose_tile_is_a_bijection_without_bank_conflicts():
    assert sorted(_tile_index(r, w) for r in range(128) for w in range(32)) == list(range(128 * 32))
    for warp, p, word in itertools.product(range(8), range(8), range(2)):
        # The writes: lane l stores word 2 * (l % 16) + word of row 2 * warp + l // 16 + 16 p.
        banks = {
            _tile_index(2 * warp + lane // 16 + 16 * p, 2 * (lane % 16) + word) % 32 for lane in range(32)
        }
        assert len(banks) == 32
    for w, k in itertools.product(range(32), range(4)):
        # The reads: lane l loads word w of row 4 l + k.
        assert len({_tile_index(4 * lane + k, w) % 32 for lane in range(32)}) == 32


def test_transpose4x4_moves_bytes_to_their_transposed_places():
    gen = torch.Generator().manual_seed(0)
    block = torch.randint(0, 256, (4, 4), generator=gen, dtype=torch.int64)  # [row, column]
    rows = [int.from_bytes(bytes(block[r].tolist()), "little") for r in range(4)]
    columns = _transpose4x4(rows)
    assert [list(c.to_bytes(4, "little")) for c in columns] == block.T.tolist()


def emulate_transposed_write(q_block: torch.Tensor) -> torch.Tensor:
    """The 128x128 FP8 block (bytes) through the tile and the lanes' 4x4 transposes: qt's block."""
    tile = [0] * (128 * 32)
    for r, w in itertools.product(range(128), range(32)):
        tile[_tile_index(r, w)] = int.from_bytes(bytes(q_block[r, 4 * w : 4 * w + 4].tolist()), "little")
    out = torch.zeros(128, 128, dtype=torch.int64)
    for warp, lane, i in itertools.product(range(8), range(32), range(4)):
        w = warp * 4 + i
        columns = _transpose4x4([tile[_tile_index(lane * 4 + k, w)] for k in range(4)])
        for j in range(4):
            out[w * 4 + j, lane * 4 : lane * 4 + 4] = torch.tensor(list(columns[j].to_bytes(4, "little")))
    return out


def test_per_block_transposed_write_emulated():
    x = _input(128, 128)
    q, _ = cast_module._per_block_torch(x)
    q_bytes = q.view(torch.uint8).long()
    assert torch.equal(emulate_transposed_write(q_bytes), q_bytes.T)
