"""MoE grouped FP8 GEMMs on a Hopper GPU: accuracy on the DeepSeek-V3 expert shapes with uneven and
empty experts, no writes to padding or masked-off rows (nor outside d), the offsets variant against
the m_indices one, masked calls replayed from a CUDA graph with new row counts, determinism.

Inputs come from ``deepgemm.testing``'s builder (the benchmark's too), whose bookkeeping (m_indices,
group_ends, masked_m, alignment) is tested on the CPU in tests/testing/test_inputs.py. Each distinct
(layout, N, K, config) JIT-compiles once (about a second), so the cases share shapes where they can.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import deepgemm
from deepgemm.heuristics.config import CONTIGUOUS, GemmShape, config_errors
from deepgemm.heuristics.sm90 import make_config
from deepgemm.ops.fp8.kernel import launch_m_grouped_contiguous, launch_m_grouped_contiguous_offsets
from deepgemm.testing import GroupedInputs, calc_diff, make_grouped_inputs, ref_m_grouped_fp8_gemm_nt_masked

from .grouped_cases import (
    EXPERT_SIZES_ACROSS_TILES,
    captured_graph,
    grouped_inputs,
    replay_row_counts,
    valid_rows_mask,
)

pytestmark = pytest.mark.gpu

NKS = [(4096, 7168), (7168, 2048), (6144, 7168), (7168, 3072), (4096, 4096)]
# (G, expected rows per expert, N, K). Every (N, K) with a few experts; the two most common with one
# and with many; 256 small experts; N that is not a multiple of any tile.
CASES = (
    [(4, 384, n, k) for n, k in NKS]
    + [(1, 1000, 7168, 2048), (32, 96, 4096, 7168), (32, 96, 7168, 2048), (256, 24, 512, 512)]
    + [(4, 300, 1000, 512), (4, 300, 7176, 512)]
)
CASE_IDS = [f"G{g}-m{m}-{n}x{k}" for g, m, n, k in CASES]
# A BF16 NaN with a payload no kernel computes: rows that must stay untouched hold exactly these bits.
SENTINEL_BITS = 0x7FA5
GUARD = 4096  # sentinel elements before and after d's storage (a multiple of 8: d stays 16-byte aligned)


def _sentinel_output(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``d`` (BF16, ``shape``) full of the sentinel, inside a buffer with GUARD sentinels either side."""
    numel = 1
    for size in shape:
        numel *= size
    buf = torch.full((numel + 2 * GUARD,), SENTINEL_BITS, dtype=torch.int16, device="cuda")
    return buf, buf[GUARD : GUARD + numel].view(torch.bfloat16).view(shape)


def _output_shape(inputs: GroupedInputs) -> tuple[int, ...]:
    return (*inputs.a.shape[:-1], inputs.b.shape[1])


def _assert_untouched(buf: torch.Tensor, d: torch.Tensor, valid: torch.Tensor, what: str) -> None:
    bits = d.view(torch.int16)
    assert bool((bits[~valid] == SENTINEL_BITS).all()), f"{what}: wrote a padding or masked-off row"
    assert bool((buf[:GUARD] == SENTINEL_BITS).all()), f"{what}: wrote before d"
    assert bool((buf[-GUARD:] == SENTINEL_BITS).all()), f"{what}: wrote after d"


def _assert_accurate(inputs: GroupedInputs, d: torch.Tensor, what: str) -> None:
    out = inputs.valid_rows(d)
    assert bool(torch.isfinite(out).all()), f"{what}: non-finite values in valid rows"
    fp8 = calc_diff(out, inputs.reference("fp8"))
    assert fp8 < 1e-5, f"{what}: calc_diff vs the FP32 reference of the FP8 operands {fp8:.3e}"
    bf16 = calc_diff(out, inputs.reference("bf16"))
    assert bf16 < 1e-3, f"{what}: calc_diff vs the product of the unquantised inputs {bf16:.3e}"


def _run_contiguous(inputs: GroupedInputs, by_offsets: bool, sfa: torch.Tensor | None = None):
    buf, d = _sentinel_output(_output_shape(inputs))
    a, b = (inputs.a, inputs.sfa if sfa is None else sfa), (inputs.b, inputs.sfb)
    if by_offsets:
        out = deepgemm.m_grouped_fp8_gemm_nt_contiguous_offsets(a, b, d, inputs.group_ends)
    else:
        out = deepgemm.m_grouped_fp8_gemm_nt_contiguous(a, b, d, inputs.m_indices)
    torch.cuda.synchronize()
    assert out is d
    return buf, d


def _run_masked(inputs: GroupedInputs):
    buf, d = _sentinel_output(_output_shape(inputs))
    out = deepgemm.m_grouped_fp8_gemm_nt_masked(
        (inputs.a, inputs.sfa), (inputs.b, inputs.sfb), d, inputs.masked_m, inputs.expected_m
    )
    torch.cuda.synchronize()
    assert out is d
    return buf, d


@pytest.mark.parametrize("g,m,n,k", CASES, ids=CASE_IDS)
def test_contiguous(g: int, m: int, n: int, k: int) -> None:
    inputs = grouped_inputs("contiguous", g, m, n, k)
    valid = valid_rows_mask(inputs)
    # One call with the scales as the cast returns them, one in the kernel's own layout.
    buf, d = _run_contiguous(inputs, by_offsets=False)
    _assert_untouched(buf, d, valid, "m_indices")
    _assert_accurate(inputs, d, "m_indices")
    buf, d_offsets = _run_contiguous(
        inputs, by_offsets=True, sfa=deepgemm.get_mn_major_tma_aligned_tensor(inputs.sfa)
    )
    _assert_untouched(buf, d_offsets, valid, "group_ends")
    _assert_accurate(inputs, d_offsets, "group_ends")
    # Both variants run the same tiles, cut differently at expert boundaries; each output element sums
    # the same products in the same order: same bits.
    assert torch.equal(d.view(torch.int16), d_offsets.view(torch.int16))


@pytest.mark.parametrize("g,m,n,k", CASES, ids=CASE_IDS)
def test_masked(g: int, m: int, n: int, k: int) -> None:
    inputs = grouped_inputs("masked", g, m, n, k)
    buf, d = _run_masked(inputs)
    _assert_untouched(buf, d, valid_rows_mask(inputs), "masked")
    _assert_accurate(inputs, d, "masked")


def _run_contiguous_with_tiles(inputs: GroupedInputs, by_offsets: bool, block_m: int, block_n: int,
                               m_indices: torch.Tensor | None = None, num_d_chunks: int = 1,
                               num_tma_multicast: int = 1):
    """The contiguous op with a forced tile shape, optionally A multicast over 2-CTA clusters (and
    `m_indices` in place of the inputs' own)."""
    buf, d = _sentinel_output(_output_shape(inputs))
    n, k = inputs.b.shape[1:]
    shape = GemmShape(inputs.a.shape[0], n, k, 2, inputs.num_groups, CONTIGUOUS)
    cfg = make_config(shape, deepgemm.get_num_sms(), block_m, block_n, num_tma_multicast, True,
                      num_d_chunks=num_d_chunks)
    assert not config_errors(cfg, shape)
    sfa = deepgemm.get_mn_major_tma_aligned_tensor(inputs.sfa)
    device = torch.cuda.current_device()
    if by_offsets:
        launch_m_grouped_contiguous_offsets(inputs.a, sfa, inputs.b, inputs.sfb, d, inputs.group_ends, device,
                                            config=cfg)
    else:
        indices = inputs.m_indices if m_indices is None else m_indices
        launch_m_grouped_contiguous(inputs.a, sfa, inputs.b, inputs.sfb, d, indices, device, config=cfg)
    torch.cuda.synchronize()
    return buf, d


def _across_tiles_inputs() -> GroupedInputs:
    sizes = EXPERT_SIZES_ACROSS_TILES
    return make_grouped_inputs("contiguous", len(sizes), sizes, 1000, 896, None, torch.device("cuda"), seed=5)


@pytest.mark.parametrize("by_offsets", [True, False], ids=["offsets", "m_indices"])
@pytest.mark.parametrize(
    "block_m,block_n,num_d_chunks,multicast",
    [(256, 128, 1, 1), (256, 96, 1, 1), (128, 144, 1, 1), (256, 128, 4, 1), (256, 128, 4, 2),
     (128, 128, 1, 2), (64, 128, 1, 1)],
)
def test_contiguous_tiles_stop_at_their_expert(by_offsets: bool, block_m: int, block_n: int,
                                               num_d_chunks: int, multicast: int) -> None:
    """Every expert's rows are computed with its own B, and no other row is written, when experts start
    and end inside 256-row tiles or 64-row store boxes: experts of 1, 127, 129, 255, 257 and 383 rows
    (and empty ones), N and K that no tile divides. The offsets variant clips tiles to its experts;
    m_indices runs a 256-row block holding two experts as two tiles. Bit-identical to the other
    variant with its own (heuristic) tiles; D staged whole or in 4 column chunks; A loaded per CTA or
    multicast to a 2-CTA cluster (whose pair then splits and skips the same blocks)."""
    inputs = _across_tiles_inputs()
    what = (f"{block_m}x{block_n}, {num_d_chunks} D chunk(s), multicast {multicast}, "
            f"{'offsets' if by_offsets else 'm_indices'}")
    buf, d = _run_contiguous_with_tiles(inputs, by_offsets, block_m, block_n, num_d_chunks=num_d_chunks,
                                        num_tma_multicast=multicast)
    _assert_untouched(buf, d, valid_rows_mask(inputs), what)
    _assert_accurate(inputs, d, what)
    _, d_other = _run_contiguous(inputs, by_offsets=not by_offsets)
    assert torch.equal(d.view(torch.int16), d_other.view(torch.int16)), what


@pytest.mark.parametrize("multicast", [1, 2])
def test_contiguous_indices_padding_half_of_a_256_row_block(multicast: int) -> None:
    """A 256-row block whose first 128 rows are all padding and whose second half is an expert's: the
    padding stays untouched and every other row comes out as before (with A multicast or not)."""
    inputs = _across_tiles_inputs()
    _, before = _run_contiguous_with_tiles(inputs, False, 256, 128)
    m_indices = inputs.m_indices.clone()
    m_indices[256:384] = -1  # expert 2's one row and its padding: block 256-511 now starts with padding
    buf, after = _run_contiguous_with_tiles(inputs, False, 256, 128, m_indices, num_tma_multicast=multicast)
    valid = m_indices >= 0
    _assert_untouched(buf, after, valid, "padding first half")
    assert torch.equal(after[valid].view(torch.int16), before[valid].view(torch.int16))


@pytest.mark.parametrize("block_m", [64, 128, 256])
def test_contiguous_indices_breaking_the_layout_stay_inside_d(block_m: int) -> None:
    """m_indices that break the layout contract (experts out of range, padding between an expert's rows,
    an expert's rows in several runs) give unspecified rows but no write outside d and no fault; blocks
    that are padding throughout stay untouched, and the next valid call is right."""
    inputs = _across_tiles_inputs()
    generator = torch.Generator(device="cuda").manual_seed(11)
    broken = torch.randint(-3, inputs.num_groups + 3, inputs.m_indices.shape, device="cuda",
                           dtype=torch.int32, generator=generator)
    broken[512:640] = -1  # one aligned block of padding only
    buf, d = _run_contiguous_with_tiles(inputs, False, block_m, 128, broken)
    may_write = torch.ones_like(broken, dtype=torch.bool)
    may_write[512:640] = False
    _assert_untouched(buf, d, may_write, f"broken m_indices, {block_m}-row tiles")
    what = f"valid m_indices after broken ones, {block_m}-row tiles"
    buf, d = _run_contiguous_with_tiles(inputs, False, block_m, 128)
    _assert_untouched(buf, d, valid_rows_mask(inputs), what)
    _assert_accurate(inputs, d, what)


def test_contiguous_alignment_is_128() -> None:
    assert deepgemm.get_m_alignment_for_contiguous_layout() == 128


# The masked kernel's producer bulk-copies a tile's B scales by rows, which must start 16-byte aligned:
# where ceil(K/128) is not a multiple of 4 the op hands it a copy of sfb with padded rows, and where sfb
# itself does not start 16-byte aligned a copy of it (`kernel.masked_sfb`). K of 9 k-blocks (36-byte
# rows), 3 (tools/sanitize.py's case) and 1, sfb starting 4 bytes into its storage, with 128-column
# tiles (one row of scales), 192-column ones (two rows: the tiles straddle 128-column blocks) and
# narrow ones.
@pytest.mark.parametrize("g,m,n,k,offset_sfb", [(4, 200, 4096, 1152, False), (4, 200, 4096, 7168, True),
                                                (32, 96, 7168, 2048, True), (4, 128, 264, 272, False),
                                                (2, 300, 136, 128, True), (4, 256, 3072, 640, False)])
def test_masked_b_scales_not_16_byte_aligned(g: int, m: int, n: int, k: int, offset_sfb: bool) -> None:
    inputs = grouped_inputs("masked", g, m, n, k)
    if offset_sfb:
        storage = torch.empty(inputs.sfb.numel() + 1, dtype=inputs.sfb.dtype, device=inputs.sfb.device)
        sfb = storage[1:].view(inputs.sfb.shape)
        sfb.copy_(inputs.sfb)
        assert sfb.data_ptr() % 16 == 4
        inputs = dataclasses.replace(inputs, sfb=sfb)
    buf, d = _run_masked(inputs)
    _assert_untouched(buf, d, valid_rows_mask(inputs), "masked")
    _assert_accurate(inputs, d, "masked")


# K = 1152: the captured call includes the copy of sfb with padded rows, which each replay makes anew
# from sfb as it is then (rewritten in place here between replays).
@pytest.mark.parametrize("n,k", [(7168, 2048), (4096, 1152)])
def test_masked_cuda_graph_replays_with_new_row_counts(n: int, k: int) -> None:
    inputs = grouped_inputs("masked", 4, 384, n, k)
    max_m = inputs.a.shape[1]
    sfa = deepgemm.get_mn_major_tma_aligned_tensor(inputs.sfa)  # so the captured call copies nothing
    sfb = inputs.sfb.clone()
    a, b = (inputs.a, sfa), (inputs.b, sfb)
    masked_m = inputs.masked_m.clone()
    buf, d = _sentinel_output(_output_shape(inputs))

    def call() -> None:
        deepgemm.m_grouped_fp8_gemm_nt_masked(a, b, d, masked_m, inputs.expected_m)

    graph = captured_graph(call)
    for replay, counts in enumerate(replay_row_counts(max_m)):
        buf.fill_(SENTINEL_BITS)
        masked_m.copy_(torch.tensor(counts, dtype=torch.int32))
        sfb.copy_(inputs.sfb * 2.0 ** (replay % 3))  # powers of two: exact
        graph.replay()
        torch.cuda.synchronize()
        valid = valid_rows_mask(inputs, masked_m)
        _assert_untouched(buf, d, valid, f"replay with masked_m={counts}")
        ref = ref_m_grouped_fp8_gemm_nt_masked(a, b, masked_m)
        diff = calc_diff(d[valid], ref[valid])
        assert diff < 1e-5, f"replay with masked_m={counts}: calc_diff {diff:.3e}"
        assert bool(torch.isfinite(d[valid]).all())


def test_deterministic() -> None:
    contiguous = grouped_inputs("contiguous", 4, 384, 7168, 2048)
    first, _ = _run_contiguous(contiguous, by_offsets=False)
    second, _ = _run_contiguous(contiguous, by_offsets=False)
    assert torch.equal(first, second)
    masked = grouped_inputs("masked", 4, 384, 7168, 2048)
    first, _ = _run_masked(masked)
    second, _ = _run_masked(masked)
    assert torch.equal(first, second)
