"""16-bit GEMMs on a Hopper GPU: every storage layout on the DeepSeek-V3 and edge shapes, with and
without C (a separate tensor, and d itself), BF16 and FP16 inputs, BF16/FP16/FP32 outputs, strided
views; calc_diff < 1e-5 against the FP32 product of the 16-bit operands, and no writes outside d.
Grouped: contiguous and masked with uneven and empty experts, padding and masked-off rows untouched,
a masked call replayed from a CUDA graph with new row counts.

A and B are stored as the op's letters say: the first is A's (``n``: ``[M, K]``, ``t``: ``[K, M]``),
the second B's (``t``: ``[N, K]``, ``n``: ``[K, N]``); the contiguous dim of each stored tensor
(and N of d) must be a multiple of 8 elements, so the edge shapes are filtered per layout. Each
distinct (layout, N, K, dtypes, config) JIT-compiles once, so the cases share shapes where they can.
"""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.heuristics import BF16
from deepgemm.heuristics.config import CONTIGUOUS, GemmConfig, GemmShape, config_errors
from deepgemm.heuristics.sm90 import make_config
from deepgemm.ops.bf16.kernel import launch_bf16_gemm, launch_m_grouped_bf16_contiguous
from deepgemm.testing import GroupedInputs, calc_diff, make_grouped_inputs

from .grouped_cases import (
    EXPERT_SIZES_ACROSS_TILES,
    captured_graph,
    grouped_inputs,
    replay_row_counts,
    valid_rows_mask,
)

pytestmark = pytest.mark.gpu

LAYOUTS = ("nt", "nn", "tn", "tt")
DSV3_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
DSV3_SHAPES = [(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK]
# The other layouts: every (N, K) of the table once, M taking turns (the benchmark runs them all at 4096).
DSV3_SUBSET = [
    (64, 2112, 7168),
    (4096, 24576, 1536),
    (128, 32768, 512),
    (4096, 7168, 16384),
    (64, 4096, 7168),
    (4096, 7168, 2048),
]
# M: partial tiles and tiny M (8, 136: multiples of 8, for the layouts where M is A's contiguous dim);
# N: not a multiple of any tile; K: tiny, not a multiple of the 64-wide K block, long.
EDGE_MS = (1, 7, 8, 63, 65, 127, 129, 136, 1000)
EDGE_NS = (8, 120, 1000, 7176)
EDGE_KS = (8, 16, 64, 72, 200, 7168)
EDGE_SHAPES = (
    [(m, 7168, 2048) for m in EDGE_MS]
    + [(m, n, 7168) for m in (1, 129, 136) for n in EDGE_NS]
    + [(m, 4096, k) for m in (7, 1000) for k in EDGE_KS]
)
GUARD = 16  # rows and columns of sentinels around d (16 elements keep every dtype's d 16-byte aligned)
SENTINEL = -12345.0


def _fits(layout: str, m: int, n: int, k: int) -> bool:
    """The contiguous dims of A, B (as stored) and d are multiples of 8 elements (16-byte TMA rows)."""
    a_inner = k if layout[0] == "n" else m
    b_inner = k if layout[1] == "t" else n
    return a_inner % 8 == 0 and b_inner % 8 == 0 and n % 8 == 0


def _cases(layouts, shapes) -> list:
    return [
        pytest.param(layout, *shape, id=f"{layout}-{'x'.join(map(str, shape))}")
        for layout in layouts
        for shape in shapes
        if _fits(layout, *shape)
    ]


def _stored(shape: tuple[int, int], dtype: torch.dtype, generator: torch.Generator, pad: int) -> torch.Tensor:
    """Random normal ``shape``; with ``pad``, a view of a buffer ``pad`` columns wider (random too,
    so a kernel that reads past a row's end shows it)."""
    rows, cols = shape
    buf = torch.randn(rows, cols + pad, generator=generator, device="cuda", dtype=dtype)
    return buf[:, :cols]


def _as_mk(layout: str, a: torch.Tensor) -> torch.Tensor:
    return a if layout[0] == "n" else a.t()


def _as_kn(layout: str, b: torch.Tensor) -> torch.Tensor:
    return b.t() if layout[1] == "t" else b


def _check(
    layout: str,
    m: int,
    n: int,
    k: int,
    in_dtype: torch.dtype = torch.bfloat16,
    out_dtype: torch.dtype = torch.bfloat16,
    c_mode: str = "none",
    a_pad: int = 0,
    b_pad: int = 0,
    c_pad: int = 0,
    config: GemmConfig | None = None,
) -> torch.Tensor:
    """Run ``bf16_gemm_<layout>`` once (or, with ``config``, the kernel with that tile config) and
    check D, C and the guard band; returns d.

    ``c_mode``: ``"none"``, ``"separate"`` (C its own tensor, left unchanged) or ``"in_place"``
    (C is d, holding C's values before the call).
    """
    generator = torch.Generator(device="cuda").manual_seed(m * 1_000_003 + n * 7919 + k)
    a_shape = (m, k) if layout[0] == "n" else (k, m)
    b_shape = (n, k) if layout[1] == "t" else (k, n)
    a, b = _stored(a_shape, in_dtype, generator, a_pad), _stored(b_shape, in_dtype, generator, b_pad)
    buf = torch.full((m + 2 * GUARD, n + 2 * GUARD), SENTINEL, device="cuda", dtype=out_dtype)
    d = buf[GUARD : GUARD + m, GUARD : GUARD + n]
    ref = _as_mk(layout, a).float() @ _as_kn(layout, b).float()

    c = None
    if c_mode != "none":
        c_values = _stored((m, n), out_dtype, generator, c_pad)
        ref += c_values.float()
        c_before = c_values.clone()
        if c_mode == "in_place":
            d.copy_(c_values)
            c = d
        else:
            c = c_values
    before = buf.clone()

    if config is None:
        out = getattr(deepgemm, f"bf16_gemm_{layout}")(a, b, d, c)
    else:
        launch_bf16_gemm(layout, a, b, d, c, m, n, k, torch.cuda.current_device(), config)
        out = d
    torch.cuda.synchronize()
    assert out is d
    assert bool(torch.isfinite(d).all()), "non-finite values in d"
    diff = calc_diff(d, ref)
    assert diff < 1e-5, f"calc_diff vs the FP32 product {diff:.3e}"
    outside = torch.ones_like(buf, dtype=torch.bool)
    outside[GUARD : GUARD + m, GUARD : GUARD + n] = False
    assert torch.equal(buf[outside], before[outside]), "the kernel wrote outside d"
    if c_mode == "separate":
        assert torch.equal(c, c_before), "the kernel changed c"
    return d


@pytest.mark.parametrize("layout,m,n,k", _cases(["nt"], DSV3_SHAPES))
def test_dsv3_shapes_nt(layout: str, m: int, n: int, k: int) -> None:
    _check(layout, m, n, k)


@pytest.mark.parametrize("layout,m,n,k", _cases(LAYOUTS[1:], DSV3_SUBSET))
def test_dsv3_shapes_other_layouts(layout: str, m: int, n: int, k: int) -> None:
    _check(layout, m, n, k)


@pytest.mark.parametrize("layout,m,n,k", _cases(LAYOUTS, EDGE_SHAPES))
def test_edge_shapes(layout: str, m: int, n: int, k: int) -> None:
    _check(layout, m, n, k)


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32], ids=["bf16_out", "fp32_out"])
@pytest.mark.parametrize("c_mode", ["separate", "in_place"])
@pytest.mark.parametrize("layout,m,n,k", _cases(LAYOUTS, [(1000, 1000, 7168), (4096, 7168, 2048)]))
def test_accumulate(layout: str, m: int, n: int, k: int, c_mode: str, out_dtype: torch.dtype) -> None:
    _check(layout, m, n, k, out_dtype=out_dtype, c_mode=c_mode)


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32], ids=["bf16_out", "fp32_out"])
@pytest.mark.parametrize("block_m,block_n", [(128, 256), (256, 128), (128, 192)])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_d_staged_in_two_chunks(layout: str, block_m: int, block_n: int, out_dtype: torch.dtype) -> None:
    """Tiles whose D goes through shared memory in two column chunks (what buys 16-bit tiles their
    fourth stage), with C added and N = 1000 ending inside the last tile's first or second chunk:
    accurate, no writes outside d, and bit-identical to the same tile staged whole."""
    m, n, k = 1000, 1000, 896
    out_bytes = out_dtype.itemsize
    shape = GemmShape(m, n, k, out_bytes, family=BF16, b_mn_major=layout[1] == "n")
    results = []
    for num_d_chunks in (2, 1):
        cfg = make_config(shape, deepgemm.get_num_sms(), block_m, block_n, num_d_chunks=num_d_chunks)
        assert not config_errors(cfg, shape), config_errors(cfg, shape)
        results.append(_check(layout, m, n, k, out_dtype=out_dtype, c_mode="separate", config=cfg))
    assert torch.equal(results[0], results[1]), "two-chunk staging changed the result"


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16], ids=["bf16_out", "fp16_out"])
@pytest.mark.parametrize(("block_n", "num_d_chunks"), [(120, 1), (240, 2), (208, 2)])
def test_odd_column_groups_per_chunk(block_n: int, num_d_chunks: int, out_dtype: torch.dtype) -> None:
    """Staged D chunks of an odd number of 8-column groups (15 and 13: the last group goes to shared
    memory with a two-matrix stmatrix), with C added: accurate, no writes outside d."""
    m, n, k = 1000, 1000, 896
    shape = GemmShape(m, n, k, out_dtype.itemsize, family=BF16)
    cfg = make_config(shape, deepgemm.get_num_sms(), 128, block_n, num_d_chunks=num_d_chunks)
    assert not config_errors(cfg, shape), config_errors(cfg, shape)
    _check("nt", m, n, k, out_dtype=out_dtype, c_mode="separate", config=cfg)


@pytest.mark.parametrize("load_batch", [2, 4])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_loads_in_batches(layout: str, load_batch: int) -> None:
    """The producer issuing its loads in batches of k-blocks: 113 k-blocks (a partial last batch),
    several tiles per CTA (the ring wraps across tiles), 64- and 128-row tiles, C added: accurate, no
    writes outside d, and bit-identical to loading one k-block at a time."""
    m, n, k = 200, 1024, 7232
    shape = GemmShape(m, n, k, 2, family=BF16, b_mn_major=layout[1] == "n")
    for block_m, block_n in ((64, 64), (128, 64)):
        results = []
        for batch in (load_batch, 1):
            cfg = make_config(shape, 32, block_m, block_n, num_stages=6, load_batch=batch)
            assert not config_errors(cfg, shape), config_errors(cfg, shape)
            results.append(_check(layout, m, n, k, c_mode="separate", config=cfg))
        assert torch.equal(results[0], results[1]), f"{block_m}x{block_n}: load batches changed the result"


DTYPES = [
    (torch.bfloat16, torch.bfloat16),
    (torch.bfloat16, torch.float32),
    (torch.bfloat16, torch.float16),
    (torch.float16, torch.float16),
    (torch.float16, torch.float32),
    (torch.float16, torch.bfloat16),
]


@pytest.mark.parametrize("in_dtype,out_dtype", DTYPES, ids=[f"{str(i)[6:]}-{str(o)[6:]}" for i, o in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_input_and_output_dtypes(layout: str, in_dtype: torch.dtype, out_dtype: torch.dtype) -> None:
    _check(layout, 1000, 1000, 7168, in_dtype=in_dtype, out_dtype=out_dtype)


@pytest.mark.parametrize("layout,m,n,k", _cases(LAYOUTS, [(1000, 2112, 7168), (4096, 4096, 7168)]))
def test_strided_views(layout: str, m: int, n: int, k: int) -> None:
    # Row strides past the row length (multiples of 16 bytes), for A, B, C and (the guard band) d.
    _check(layout, m, n, k, c_mode="separate", a_pad=24, b_pad=40, c_pad=8)


@pytest.mark.parametrize("layout", ["nt", "nn"])
def test_m_zero_returns_at_once(layout: str) -> None:
    a = torch.randn(0, 256, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
    d = torch.empty(0, 256, device="cuda", dtype=torch.bfloat16)
    assert getattr(deepgemm, f"bf16_gemm_{layout}")(a, b, d) is d


@pytest.mark.parametrize("layout", ["nt", "tn"])
def test_deterministic(layout: str) -> None:
    m, n, k = 4096, 7168, 2048
    a_shape = (m, k) if layout[0] == "n" else (k, m)
    b_shape = (n, k) if layout[1] == "t" else (k, n)
    a = torch.randn(*a_shape, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(*b_shape, device="cuda", dtype=torch.bfloat16)
    gemm = getattr(deepgemm, f"bf16_gemm_{layout}")
    d1 = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    d2 = torch.empty_like(d1)
    gemm(a, b, d1)
    gemm(a, b, d2)
    assert torch.equal(d1, d2)


# ---- grouped --------------------------------------------------------------------------------------

# (G, expected rows per expert, N, K): one, a few and many experts on the two DeepSeek-V3 expert
# shapes, and N that is not a multiple of any tile.
GROUPED_CASES = [
    (g, expected, n, k)
    for g, expected in ((1, 1000), (4, 384), (32, 96))
    for n, k in ((4096, 7168), (7168, 2048))
] + [(4, 300, 7176, 512), (4, 300, 1000, 512)]
GROUPED_IDS = [f"G{g}-m{m}-{n}x{k}" for g, m, n, k in GROUPED_CASES]
# A NaN whose payload no kernel computes, in the 2-byte and 4-byte float formats: untouched rows
# hold exactly these bits.
SENTINEL_BITS = {2: (torch.int16, 0x7FA5), 4: (torch.int32, 0x7FA5A5A5)}
FLAT_GUARD = 4096  # sentinel elements before and after d's storage (keeps d 16-byte aligned)


def _sentinel_output(inputs: GroupedInputs, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``d`` laid out like A (``[M_sum, N]`` or ``[G, max_m, N]``) full of the sentinel, inside a
    buffer of sentinels ``FLAT_GUARD`` elements longer on either side."""
    shape = (*inputs.a.shape[:-1], inputs.b.shape[1])
    numel = 1
    for size in shape:
        numel *= size
    bits_dtype, bits = SENTINEL_BITS[torch.empty(0, dtype=dtype).element_size()]
    buf = torch.full((numel + 2 * FLAT_GUARD,), bits, dtype=bits_dtype, device="cuda")
    return buf, buf[FLAT_GUARD : FLAT_GUARD + numel].view(dtype).view(shape)


def _assert_untouched(buf: torch.Tensor, d: torch.Tensor, valid: torch.Tensor, what: str) -> None:
    bits = SENTINEL_BITS[d.element_size()][1]
    assert bool((d.view(buf.dtype)[~valid] == bits).all()), f"{what}: wrote a padding or masked-off row"
    assert bool((buf[:FLAT_GUARD] == bits).all()), f"{what}: wrote before d"
    assert bool((buf[-FLAT_GUARD:] == bits).all()), f"{what}: wrote after d"


def _assert_accurate(inputs: GroupedInputs, d: torch.Tensor, what: str) -> None:
    out = inputs.valid_rows(d)
    assert bool(torch.isfinite(out).all()), f"{what}: non-finite values in valid rows"
    diff = calc_diff(out, inputs.reference("bf16"))
    assert diff < 1e-5, f"{what}: calc_diff vs the FP32 product {diff:.3e}"


def _run_grouped(inputs: GroupedInputs, dtype: torch.dtype = torch.bfloat16):
    buf, d = _sentinel_output(inputs, dtype)
    if inputs.layout == "contiguous":
        out = deepgemm.m_grouped_bf16_gemm_nt_contiguous(inputs.a, inputs.b, d, inputs.m_indices)
    else:
        out = deepgemm.m_grouped_bf16_gemm_nt_masked(
            inputs.a, inputs.b, d, inputs.masked_m, inputs.expected_m
        )
    torch.cuda.synchronize()
    assert out is d
    return buf, d


@pytest.mark.parametrize("g,m,n,k", GROUPED_CASES, ids=GROUPED_IDS)
def test_grouped_contiguous(g: int, m: int, n: int, k: int) -> None:
    inputs = grouped_inputs("contiguous", g, m, n, k, operand_dtype=torch.bfloat16)
    buf, d = _run_grouped(inputs)
    _assert_untouched(buf, d, valid_rows_mask(inputs), "contiguous")
    _assert_accurate(inputs, d, "contiguous")


@pytest.mark.parametrize("g,m,n,k", GROUPED_CASES, ids=GROUPED_IDS)
def test_grouped_masked(g: int, m: int, n: int, k: int) -> None:
    inputs = grouped_inputs("masked", g, m, n, k, operand_dtype=torch.bfloat16)
    assert int(inputs.masked_m.min()) < inputs.a.shape[1], "some group must leave rows masked off"
    buf, d = _run_grouped(inputs)
    _assert_untouched(buf, d, valid_rows_mask(inputs), "masked")
    _assert_accurate(inputs, d, "masked")


@pytest.mark.parametrize(
    "block_m,block_n,num_d_chunks,multicast",
    [(256, 128, 1, 1), (256, 96, 1, 1), (128, 144, 1, 1), (256, 176, 2, 1), (256, 192, 2, 1),
     (256, 176, 2, 2), (128, 256, 2, 2)],
)
def test_grouped_contiguous_tiles_stop_at_their_expert(block_m: int, block_n: int, num_d_chunks: int,
                                                       multicast: int) -> None:
    """Forced tiles on experts that start and end inside 256-row tiles and 64-row store boxes (a
    256-row block holding two experts runs as two tiles; D staged whole or in two column chunks, the
    second wholly past N = 1000 in the last tile at 256x192; A loaded per CTA or multicast to a 2-CTA
    cluster): no other row written, accurate, and bit-identical to the heuristic's tiles."""
    sizes = EXPERT_SIZES_ACROSS_TILES
    inputs = make_grouped_inputs("contiguous", len(sizes), sizes, 1000, 896, None, torch.device("cuda"),
                                 seed=5, operand_dtype=torch.bfloat16)
    shape = GemmShape(inputs.a.shape[0], 1000, 896, 2, len(sizes), CONTIGUOUS, family=BF16)
    cfg = make_config(shape, deepgemm.get_num_sms(), block_m, block_n, multicast, True,
                      num_d_chunks=num_d_chunks)
    assert not config_errors(cfg, shape)
    buf, d = _sentinel_output(inputs, torch.bfloat16)
    device = torch.cuda.current_device()
    launch_m_grouped_bf16_contiguous(inputs.a, inputs.b, d, inputs.m_indices, device, cfg)
    torch.cuda.synchronize()
    what = f"{block_m}x{block_n}, {num_d_chunks} D chunk(s), multicast {multicast}"
    _assert_untouched(buf, d, valid_rows_mask(inputs), what)
    _assert_accurate(inputs, d, what)
    _, d_heuristic = _run_grouped(inputs)
    assert torch.equal(d.view(torch.int16), d_heuristic.view(torch.int16)), what


@pytest.mark.parametrize("layout", ["contiguous", "masked"])
def test_grouped_fp32_output(layout: str) -> None:
    inputs = grouped_inputs(layout, 4, 384, 7168, 2048, operand_dtype=torch.bfloat16)
    buf, d = _run_grouped(inputs, torch.float32)
    _assert_untouched(buf, d, valid_rows_mask(inputs), f"{layout}, FP32 d")
    _assert_accurate(inputs, d, f"{layout}, FP32 d")


def test_grouped_masked_cuda_graph_replays_with_new_row_counts() -> None:
    inputs = grouped_inputs("masked", 4, 384, 7168, 2048, operand_dtype=torch.bfloat16)
    max_m = inputs.a.shape[1]
    masked_m = inputs.masked_m.clone()
    buf, d = _sentinel_output(inputs, torch.bfloat16)
    # Every row of every group, in FP32: each replay's valid rows are checked against it.
    full_reference = inputs.a.float() @ inputs.b.float().transpose(1, 2)

    def call() -> None:
        deepgemm.m_grouped_bf16_gemm_nt_masked(inputs.a, inputs.b, d, masked_m, inputs.expected_m)

    graph = captured_graph(call)
    for counts in replay_row_counts(max_m):
        buf.fill_(SENTINEL_BITS[2][1])
        masked_m.copy_(torch.tensor(counts, dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        valid = valid_rows_mask(inputs, masked_m)
        _assert_untouched(buf, d, valid, f"replay with masked_m={counts}")
        if valid.any():
            diff = calc_diff(d[valid], full_reference[valid])
            assert diff < 1e-5, f"replay with masked_m={counts}: calc_diff {diff:.3e}"
            assert bool(torch.isfinite(d[valid]).all())
