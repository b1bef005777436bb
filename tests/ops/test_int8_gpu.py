"""INT8 W8A8 GEMMs on a Hopper GPU: the raw int32 sums bit-exact against exact integer sums, the scaled
outputs (BF16, FP16, FP32; bias, zero points, per-tensor scales) within calc_diff 1e-5 of the float64
product of the dequantised operands, on the DeepSeek-V3 and edge shapes, no writes outside d (sentinel
guard bands), forced tile configs (multicast, D chunks, load batches) bit-identical to the heuristic's,
and the grouped twins (contiguous, masked) leaving padding and masked-off rows untouched."""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.heuristics import INT8
from deepgemm.heuristics.config import CONTIGUOUS, GemmShape, config_errors
from deepgemm.heuristics.sm90 import make_config
from deepgemm.ops.common.group_indices import group_ends_to_m_indices
from deepgemm.ops.int8.gemm import check_int8_gemm_nt, check_m_grouped_int8_gemm_nt_contiguous
from deepgemm.ops.int8.kernel import (
    launch_int8_gemm_nt,
    launch_m_grouped_int8_contiguous,
    launch_m_grouped_int8_contiguous_offsets,
)
from deepgemm.testing import calc_diff, contiguous_starts, ref_int8_gemm_nt, ref_int8_sums

pytestmark = pytest.mark.gpu

DSV3_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
DSV3_SHAPES = [(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK]
EDGE = (1, 7, 17, 65, 129, 1000, 4097)
# Edge M with aligned N and K for the op itself; N and K edges go through int8_matmul_quantized's padding.
EDGE_M_SHAPES = [(m, 4096, 7168) for m in EDGE] + [(m, 1000, 4112) for m in EDGE]
EDGE_NK_SHAPES = (
    [(65, n, 129) for n in EDGE]
    + [(129, 1000, k) for k in EDGE]
    + [(m, m, m) for m in EDGE]
    + [(4097, 17, 4097), (1, 4097, 1000), (1000, 7, 65)]
)
# Raw int32 edges: N a multiple of 4 and K of 16 (the op's own rules).
RAW_EDGE_SHAPES = [(m, n, k) for m in EDGE for n, k in ((4, 16), (12, 48), (1000, 4112))]
GUARD = 16  # guard band (rows and columns) around d that must stay untouched
SENTINEL = -12345


def _ids(shapes):
    return ["x".join(map(str, shape)) for shape in shapes]


def _seed(*sizes: int) -> None:
    seed = 0
    for size in sizes:
        seed = seed * 1_000_003 + size
    torch.manual_seed(seed % 2**63)


def _quantised(m: int, n: int, k: int):
    """Random normal operands quantised per token and per channel: ``(a_bf16, b_bf16, (A, sa), (B, sb))``."""
    _seed(m, n, k)
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    return a, b, deepgemm.per_token_cast_to_int8(a), deepgemm.per_channel_cast_to_int8(b)


def _raw_operands(m: int, n: int, k: int):
    """Uniform int8 operands over the whole range, -128 included."""
    _seed(m, n, k, 1)
    A = torch.randint(-128, 128, (m, k), device="cuda", dtype=torch.int8)
    B = torch.randint(-128, 128, (n, k), device="cuda", dtype=torch.int8)
    return A, B


def _guarded_output(m: int, n: int, dtype: torch.dtype):
    """d as a view into a sentinel-filled buffer with GUARD rows and columns on every side."""
    buf = torch.full((m + 2 * GUARD, n + 2 * GUARD), SENTINEL, device="cuda", dtype=dtype)
    return buf, buf[GUARD : GUARD + m, GUARD : GUARD + n]


def _assert_guard_band_untouched(buf: torch.Tensor, m: int, n: int, what: str = "") -> None:
    inner = torch.zeros_like(buf, dtype=torch.bool)
    inner[GUARD : GUARD + m, GUARD : GUARD + n] = True
    assert bool((buf[~inner] == SENTINEL).all()), f"{what}the kernel wrote outside d"


def _check_raw(A: torch.Tensor, B: torch.Tensor, what: str = "") -> torch.Tensor:
    m, n = A.shape[0], B.shape[0]
    buf, d = _guarded_output(m, n, torch.int32)
    assert deepgemm.int8_gemm_nt(A, B, d) is d
    torch.cuda.synchronize()
    assert torch.equal(d.long(), ref_int8_sums(A, B)), f"{what}int32 sums differ from the exact ones"
    _assert_guard_band_untouched(buf, m, n, what)
    return d.clone()


def _rows(operand) -> int:
    """Rows of an int8 operand given alone or with its scales."""
    return (operand[0] if isinstance(operand, tuple) else operand).shape[0]


def _check_scaled(a_q, b_q, out_dtype=torch.bfloat16, bias=None, azp=None, what: str = "") -> torch.Tensor:
    m, n = _rows(a_q), _rows(b_q)
    buf, d = _guarded_output(m, n, out_dtype)
    assert deepgemm.int8_gemm_nt(a_q, b_q, d, bias=bias, azp=azp) is d
    torch.cuda.synchronize()
    ref = ref_int8_gemm_nt(a_q, b_q, bias=bias, azp=azp)
    diff = calc_diff(d, ref)
    assert diff < 1e-5, f"{what}calc_diff vs the FP64 product of the dequantised operands {diff:.3e}"
    assert bool(torch.isfinite(d).all()), f"{what}non-finite values"
    _assert_guard_band_untouched(buf, m, n, what)
    return d.clone()


# --- dense: the raw sums and the scaled outputs -----------------------------------------------------------


@pytest.mark.parametrize(
    "m,n,k", DSV3_SHAPES + [(4096, 7168, 16384)], ids=_ids(DSV3_SHAPES + [(4096, 7168, 16384)])
)
def test_raw_int32_is_bit_exact(m: int, n: int, k: int) -> None:
    _check_raw(*_raw_operands(m, n, k))


@pytest.mark.parametrize("m,n,k", DSV3_SHAPES, ids=_ids(DSV3_SHAPES))
def test_scaled_bf16(m: int, n: int, k: int) -> None:
    _, _, a_q, b_q = _quantised(m, n, k)
    _check_scaled(a_q, b_q)


@pytest.mark.parametrize("m,n,k", RAW_EDGE_SHAPES, ids=_ids(RAW_EDGE_SHAPES))
def test_raw_int32_edge_shapes(m: int, n: int, k: int) -> None:
    _check_raw(*_raw_operands(m, n, k))


@pytest.mark.parametrize("m,n,k", EDGE_M_SHAPES, ids=_ids(EDGE_M_SHAPES))
def test_scaled_edge_m(m: int, n: int, k: int) -> None:
    _, _, a_q, b_q = _quantised(m, n, k)
    _check_scaled(a_q, b_q)


@pytest.mark.parametrize("m,n,k", EDGE_NK_SHAPES, ids=_ids(EDGE_NK_SHAPES))
def test_any_shape_through_int8_matmul_quantized(m: int, n: int, k: int) -> None:
    """N and K that TMA cannot take as they are: the helper quantises, zero-pads K to 16 and N to 16 bytes
    of output, and slices the result back; against the FP64 product of the same quantised operands."""
    _seed(m, n, k)
    a = torch.randn(m, k, device="cuda")
    b = torch.randn(k, n, device="cuda")
    for out_dtype in (torch.bfloat16, torch.float32):
        out = deepgemm.int8_matmul_quantized(a, b, out_dtype)
        torch.cuda.synchronize()
        assert out.shape == (m, n) and out.dtype == out_dtype
        ref = ref_int8_gemm_nt(deepgemm.per_token_cast_to_int8(a), deepgemm.per_channel_cast_to_int8(b.T))
        diff = calc_diff(out, ref)
        assert diff < 1e-5, f"{out_dtype}: calc_diff {diff:.3e}"


# (output dtype, bias dtype): no bias, an FP32 bias, or (16-bit d) one of d's dtype.
EPILOGUES = [(out, bias) for out in (torch.bfloat16, torch.float16) for bias in (None, torch.float32, out)]
EPILOGUES += [(torch.float32, None), (torch.float32, torch.float32)]


@pytest.mark.parametrize("has_azp", [False, True], ids=["sym", "azp"])
@pytest.mark.parametrize(
    "out_dtype,bias_dtype", EPILOGUES, ids=[f"{str(out)[6:]}-bias_{str(bias)[6:]}" for out, bias in EPILOGUES]
)
@pytest.mark.parametrize(
    "m,n,k", [(129, 1000, 4112), (4096, 7168, 2048)], ids=["129x1000x4112", "4096x7168x2048"]
)
def test_epilogue_variants(
    m: int, n: int, k: int, out_dtype: torch.dtype, bias_dtype: torch.dtype | None, has_azp: bool
) -> None:
    """Every output dtype with no bias, an FP32 bias or one of d's dtype, with and without asymmetric
    activations (a zero point per token, in [-8, 8), and the weights' column sums)."""
    _, _, a_q, b_q = _quantised(m, n, k)
    bias = None if bias_dtype is None else torch.randn(n, device="cuda", dtype=bias_dtype)
    azp = None
    if has_azp:
        zp = torch.randint(-8, 8, (m,), device="cuda", dtype=torch.int32)
        azp = (zp, b_q[0].sum(-1, dtype=torch.int32))
    _check_scaled(a_q, b_q, out_dtype, bias, azp, f"{out_dtype}, bias {bias_dtype}, azp {has_azp}: ")


@pytest.mark.parametrize("m,n,k", [(65, 2112, 7168), (4096, 4096, 7168)])
def test_per_tensor_scales_and_scale_shapes(m: int, n: int, k: int) -> None:
    """Per-tensor scales ([1] and []), per-token / per-channel ones as [M, 1] / [N, 1], a per-tensor zero
    point, and missing scales (1) on one side all agree with the reference."""
    _, _, (A, sa), (B, sb) = _quantised(m, n, k)
    one = torch.tensor([0.5], device="cuda")
    scalar = torch.tensor(0.25, device="cuda")
    _check_scaled((A, one), (B, sb), what="sa [1]: ")
    _check_scaled((A, sa), (B, scalar), what="sb []: ")
    _check_scaled((A, sa[:, None].contiguous()), (B, sb[:, None].contiguous()), what="[M, 1] / [N, 1]: ")
    _check_scaled((A, sa), B, torch.float32, what="no sb: ")
    zp = torch.tensor([3], device="cuda", dtype=torch.int32)
    _check_scaled((A, sa), (B, sb), azp=(zp, B.sum(-1, dtype=torch.int32)), what="per-tensor zp: ")


@pytest.mark.parametrize("m,n,k", [(65, 2112, 7168), (4096, 4096, 7168)])
def test_strided_operands(m: int, n: int, k: int) -> None:
    """A and B as views into wider buffers (row strides past K)."""
    _, _, (A, sa), (B, sb) = _quantised(m, n, k)
    a_buf = torch.zeros(m, k + 128, device="cuda", dtype=torch.int8)
    b_buf = torch.zeros(n, k + 32, device="cuda", dtype=torch.int8)
    a_buf[:, :k], b_buf[:, :k] = A, B
    contiguous = _check_scaled((A, sa), (B, sb))
    strided = _check_scaled((a_buf[:, :k], sa), (b_buf[:, :k], sb))
    assert torch.equal(contiguous, strided)
    _check_raw(a_buf[:, :k], b_buf[:, :k])


def _forced(a_q, b_q, out_dtype: torch.dtype, cfg, shape: GemmShape, what: str) -> torch.Tensor:
    """The dense op with `cfg` forced, into a guarded d; returns d."""
    assert not config_errors(cfg, shape), config_errors(cfg, shape)
    m, n = _rows(a_q), _rows(b_q)
    buf, d = _guarded_output(m, n, out_dtype)
    operands = (a_q, b_q) if out_dtype != torch.int32 else (a_q[0], b_q[0])
    launch_int8_gemm_nt(check_int8_gemm_nt(*operands, d), d, config=cfg)
    torch.cuda.synchronize()
    _assert_guard_band_untouched(buf, m, n, what)
    return d.clone()


@pytest.mark.parametrize("on_a", [True, False], ids=["on_a", "on_b"])
@pytest.mark.parametrize(
    ("block_m", "block_n", "num_d_chunks"), [(256, 128, 4), (128, 256, 2), (128, 64, 1), (64, 32, 1)]
)
def test_forced_tiles_and_multicast(block_m: int, block_n: int, num_d_chunks: int, on_a: bool) -> None:
    """Tiles staged whole or in D chunks, 2-CTA clusters sharing A or B, M and N tails, 57 k-blocks,
    several tiles per CTA: accurate, no writes outside d, and bit-identical to the same tile without
    multicast (scaled) and to the exact sums (raw)."""
    m, n, k = 1000, 1000, 7296
    _, _, a_q, b_q = _quantised(m, n, k)
    shape = GemmShape(m, n, k, 2, family=INT8)
    ref = ref_int8_gemm_nt(a_q, b_q)
    results = []
    for multicast in (2, 1):
        cfg = make_config(shape, 16, block_m, block_n, multicast, on_a, num_d_chunks=num_d_chunks)
        where = f"{block_m}x{block_n} multicast {multicast}{'A' if on_a else 'B'}: "
        d = _forced(a_q, b_q, torch.bfloat16, cfg, shape, where)
        assert calc_diff(d, ref) < 1e-5, f"{where}calc_diff {calc_diff(d, ref):.3e}"
        results.append(d)
    assert torch.equal(results[0], results[1]), "multicast changed the result"


@pytest.mark.parametrize(("block_m", "block_n", "num_d_chunks"), [(256, 128, 4), (128, 256, 4), (64, 48, 1)])
def test_forced_tiles_raw(block_m: int, block_n: int, num_d_chunks: int) -> None:
    """The raw sums through D chunks and through a tile of an odd number of 8-column groups: exact."""
    m, n, k = 1000, 1000, 7296
    A, B = _raw_operands(m, n, k)
    shape = GemmShape(m, n, k, 4, family=INT8)
    cfg = make_config(shape, 16, block_m, block_n, num_d_chunks=num_d_chunks)
    d = _forced((A, None), (B, None), torch.int32, cfg, shape, f"{block_m}x{block_n}: ")
    assert torch.equal(d.long(), ref_int8_sums(A, B))


def test_loads_in_batches() -> None:
    """The producer issuing its loads in batches of 4 k-blocks: bit-identical to one at a time."""
    m, n, k = 200, 2000, 7296
    _, _, a_q, b_q = _quantised(m, n, k)
    shape = GemmShape(m, n, k, 2, family=INT8)
    ref = ref_int8_gemm_nt(a_q, b_q)
    for block_m, block_n in ((64, 16), (128, 64)):
        results = []
        for batch in (4, 1):
            cfg = make_config(shape, 32, block_m, block_n, num_stages=6, load_batch=batch)
            d = _forced(a_q, b_q, torch.bfloat16, cfg, shape, f"{block_m}x{block_n} batch {batch}: ")
            assert calc_diff(d, ref) < 1e-5
            results.append(d)
        assert torch.equal(results[0], results[1]), f"{block_m}x{block_n}: load batches changed the result"


def test_deterministic() -> None:
    _, _, a_q, b_q = _quantised(4096, 7168, 2048)
    assert torch.equal(_check_scaled(a_q, b_q), _check_scaled(a_q, b_q))


def test_m_zero_returns_at_once() -> None:
    A, B = _raw_operands(1, 256, 256)
    d = torch.empty(0, 256, device="cuda", dtype=torch.int32)
    assert deepgemm.int8_gemm_nt(A[:0], B, d) is d


# --- grouped ---------------------------------------------------------------------------------------------

# Experts whose rows start and end inside 256-row tiles and 64-row store boxes (two empty).
EXPERT_SIZES = (129, 0, 1, 255, 257, 0, 383, 127, 640)
SENTINEL_BITS = 0x7FA5  # a BF16 NaN payload no kernel computes; as int16 halves of an int32 d too


def _sentinel_output(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """d (``dtype``, ``shape``) full of the sentinel bits, inside a buffer with 4096 sentinels either side."""
    numel = 1
    for size in shape:
        numel *= size
    halves = numel * dtype.itemsize // 2
    buf = torch.full((halves + 2 * 4096,), SENTINEL_BITS, dtype=torch.int16, device="cuda")
    return buf, buf[4096 : 4096 + halves].view(dtype).view(shape)


def _assert_untouched(buf: torch.Tensor, d: torch.Tensor, valid: torch.Tensor, what: str) -> None:
    rows = d.view(torch.int16).view(*d.shape[:-1], -1)
    assert bool((rows[~valid] == SENTINEL_BITS).all()), f"{what}: wrote a padding or masked-off row"
    assert bool((buf[:4096] == SENTINEL_BITS).all()) and bool((buf[-4096:] == SENTINEL_BITS).all()), (
        f"{what}: wrote outside d"
    )


def _grouped_operands(num_groups: int, rows: tuple[int, ...] | int, n: int, k: int, scaled: bool):
    """int8 B [G, N, K] with FP32 per-channel scales [G, N] (or None), and A rows to match."""
    _seed(num_groups, n, k, 7)
    B = torch.randint(-127, 128, (num_groups, n, k), device="cuda", dtype=torch.int8)
    A = torch.randint(
        -127, 128, (rows, k) if isinstance(rows, int) else (*rows, k), device="cuda", dtype=torch.int8
    )
    if not scaled:
        return A, None, B, None
    sa = torch.rand(A.shape[:-1], device="cuda") / 127 + 1e-3
    sb = torch.rand(num_groups, n, device="cuda") / 127 + 1e-3
    return A, sa, B, sb


def _contiguous_layout(sizes: tuple[int, ...]) -> torch.Tensor:
    starts = contiguous_starts(sizes)
    m_sum = sum(-(-size // 128) * 128 for size in sizes)
    m_indices = torch.full((m_sum,), -1, dtype=torch.int32)
    for group, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        m_indices[start : start + size] = group
    return m_indices.cuda()


def _contiguous_reference(A, sa, B, sb, m_indices, bias=None, azp=None) -> torch.Tensor:
    """float64 [M_sum, N] (raw sums for no scales), expert by expert; padding rows 0."""
    out = torch.zeros(A.shape[0], B.shape[1], dtype=torch.float64, device="cuda")
    for group in range(B.shape[0]):
        rows = (m_indices == group).nonzero().flatten()
        if not len(rows):
            continue
        a = A[rows] if sa is None else (A[rows], sa[rows])
        b = B[group] if sb is None else (B[group], sb[group])
        group_azp = None if azp is None else (azp[0][rows], azp[1][group])
        out[rows] = ref_int8_gemm_nt(a, b, None if bias is None else bias[group], group_azp)
    return out


@pytest.mark.parametrize("n,k", [(4096, 7168), (7168, 2048), (1000, 896)])
def test_contiguous(n: int, k: int) -> None:
    """Raw sums exact and BF16 (with bias and zero points) accurate on every expert row; padding rows
    untouched."""
    m_indices = _contiguous_layout(EXPERT_SIZES)
    valid = m_indices >= 0
    A, sa, B, sb = _grouped_operands(len(EXPERT_SIZES), m_indices.shape[0], n, k, scaled=True)
    buf, d = _sentinel_output((A.shape[0], n), torch.int32)
    deepgemm.m_grouped_int8_gemm_nt_contiguous(A, B, d, m_indices)
    torch.cuda.synchronize()
    _assert_untouched(buf, d, valid, "raw")
    ref = _contiguous_reference(A, None, B, None, m_indices)
    assert torch.equal(d[valid].long(), ref[valid].long()), "raw sums differ"
    bias = torch.randn(len(EXPERT_SIZES), n, device="cuda")
    zp = torch.randint(-8, 8, (A.shape[0],), device="cuda", dtype=torch.int32)
    azp = (zp, B.sum(-1, dtype=torch.int32))
    for what, kwargs in (("scaled", {}), ("bias + azp", {"bias": bias, "azp": azp})):
        buf, d = _sentinel_output((A.shape[0], n), torch.bfloat16)
        deepgemm.m_grouped_int8_gemm_nt_contiguous((A, sa), (B, sb), d, m_indices, **kwargs)
        torch.cuda.synchronize()
        _assert_untouched(buf, d, valid, what)
        ref = _contiguous_reference(A, sa, B, sb, m_indices, **kwargs)
        assert calc_diff(d[valid], ref[valid]) < 1e-5, (
            f"{what}: calc_diff {calc_diff(d[valid], ref[valid]):.3e}"
        )


@pytest.mark.parametrize(
    "block_m,block_n,multicast", [(256, 128, 1), (256, 128, 2), (128, 144, 1), (64, 128, 1)]
)
def test_contiguous_forced_tiles(block_m: int, block_n: int, multicast: int) -> None:
    """Tiles of 64 to 256 rows across the experts' boundaries, A multicast to a 2-CTA cluster or not: the
    raw sums exact on every expert row, padding untouched."""
    m_indices = _contiguous_layout(EXPERT_SIZES)
    n, k = 1000, 896
    A, _, B, _ = _grouped_operands(len(EXPERT_SIZES), m_indices.shape[0], n, k, scaled=False)
    buf, d = _sentinel_output((A.shape[0], n), torch.int32)
    shape = GemmShape(A.shape[0], n, k, 4, len(EXPERT_SIZES), CONTIGUOUS, family=INT8)
    cfg = make_config(shape, deepgemm.get_num_sms(), block_m, block_n, multicast, True)
    assert not config_errors(cfg, shape), config_errors(cfg, shape)
    launch_m_grouped_int8_contiguous(
        check_m_grouped_int8_gemm_nt_contiguous(A, B, d), d, m_indices, config=cfg
    )
    torch.cuda.synchronize()
    valid = m_indices >= 0
    _assert_untouched(buf, d, valid, f"{block_m}x{block_n} multicast {multicast}")
    assert torch.equal(d[valid].long(), _contiguous_reference(A, None, B, None, m_indices)[valid].long())


def _group_ends(sizes: tuple[int, ...]) -> torch.Tensor:
    """``group_ends`` for experts of ``sizes`` rows, each starting at the next multiple of 128 after the one
    before ends (an empty expert takes no rows)."""
    ends, end = [], 0
    for size in sizes:
        start = -(-end // 128) * 128
        end = start + size if size else end
        ends.append(end)
    return torch.tensor(ends, dtype=torch.int32, device="cuda")


@pytest.mark.parametrize("block_m,block_n,multicast", [(256, 128, 1), (256, 128, 2), (64, 128, 1), (0, 0, 0)])
def test_contiguous_offsets(block_m: int, block_n: int, multicast: int) -> None:
    """The offsets variant (the heuristic's tiles for 0x0, else forced) on experts that start and end
    inside tiles: accurate on every expert row, padding untouched; with the heuristic's tiles bit-identical
    to the m_indices op on the same layout."""
    group_ends = _group_ends(EXPERT_SIZES)
    m_sum = -(-int(group_ends[-1]) // 128) * 128
    m_indices = group_ends_to_m_indices(group_ends, m_sum, 128)
    n, k = 1000, 896
    A, sa, B, sb = _grouped_operands(len(EXPERT_SIZES), m_sum, n, k, scaled=True)
    valid = m_indices >= 0
    buf, d = _sentinel_output((m_sum, n), torch.bfloat16)
    if block_m:
        shape = GemmShape(m_sum, n, k, 2, len(EXPERT_SIZES), CONTIGUOUS, family=INT8)
        cfg = make_config(shape, deepgemm.get_num_sms(), block_m, block_n, multicast, True)
        assert not config_errors(cfg, shape), config_errors(cfg, shape)
        checked = check_m_grouped_int8_gemm_nt_contiguous((A, sa), (B, sb), d)
        launch_m_grouped_int8_contiguous_offsets(checked, d, group_ends, config=cfg)
    else:
        deepgemm.m_grouped_int8_gemm_nt_contiguous_offsets((A, sa), (B, sb), d, group_ends)
    torch.cuda.synchronize()
    _assert_untouched(buf, d, valid, "offsets")
    ref = _contiguous_reference(A, sa, B, sb, m_indices)
    assert calc_diff(d[valid], ref[valid]) < 1e-5
    if not block_m:
        _, expected = _sentinel_output((m_sum, n), torch.bfloat16)
        deepgemm.m_grouped_int8_gemm_nt_contiguous((A, sa), (B, sb), expected, m_indices)
        torch.cuda.synchronize()
        assert torch.equal(d.view(torch.int16), expected.view(torch.int16))


@pytest.mark.parametrize(
    "g,max_m,n,k", [(4, 384, 7168, 2048), (4, 256, 4096, 7168), (32, 128, 7168, 2048), (3, 200, 1000, 896)]
)
def test_masked(g: int, max_m: int, n: int, k: int) -> None:
    """Raw sums exact and BF16 (with bias and zero points) accurate on the first masked_m[g] rows of each
    group (0, max_m and values between); the other rows untouched."""
    counts = [(max_m * (i + 1)) // (g + 1) for i in range(g)]
    counts[0], counts[-1] = 0, max_m
    masked_m = torch.tensor(counts, dtype=torch.int32, device="cuda")
    valid = torch.arange(max_m, device="cuda")[None, :] < masked_m[:, None]
    expected_m = max(1, sum(counts) // g)
    A, sa, B, sb = _grouped_operands(g, (g, max_m), n, k, scaled=True)
    exact = torch.stack([ref_int8_sums(A[i], B[i]) for i in range(g)])
    buf, d = _sentinel_output((g, max_m, n), torch.int32)
    deepgemm.m_grouped_int8_gemm_nt_masked(A, B, d, masked_m, expected_m)
    torch.cuda.synchronize()
    _assert_untouched(buf, d, valid, "raw")
    assert torch.equal(d[valid].long(), exact[valid]), "raw sums differ"
    bias = torch.randn(g, n, device="cuda")
    zp = torch.randint(-8, 8, (g, max_m), device="cuda", dtype=torch.int32)
    b_sums = B.sum(-1, dtype=torch.int32)
    for what, kwargs in (("scaled", {}), ("bias + azp", {"bias": bias, "azp": (zp, b_sums)})):
        buf, d = _sentinel_output((g, max_m, n), torch.bfloat16)
        deepgemm.m_grouped_int8_gemm_nt_masked((A, sa), (B, sb), d, masked_m, expected_m, **kwargs)
        torch.cuda.synchronize()
        _assert_untouched(buf, d, valid, what)
        ref = torch.stack(
            [
                ref_int8_gemm_nt(
                    (A[i], sa[i]),
                    (B[i], sb[i]),
                    None if "bias" not in kwargs else bias[i],
                    None if "azp" not in kwargs else (zp[i], b_sums[i]),
                )
                for i in range(g)
            ]
        )
        assert calc_diff(d[valid], ref[valid]) < 1e-5, (
            f"{what}: calc_diff {calc_diff(d[valid], ref[valid]):.3e}"
        )


def test_masked_cuda_graph_replays_with_new_row_counts() -> None:
    g, max_m, n, k = 4, 384, 7168, 2048
    A, sa, B, sb = _grouped_operands(g, (g, max_m), n, k, scaled=True)
    masked_m = torch.full((g,), max_m, dtype=torch.int32, device="cuda")
    buf, d = _sentinel_output((g, max_m, n), torch.bfloat16)

    def call() -> None:
        deepgemm.m_grouped_int8_gemm_nt_masked((A, sa), (B, sb), d, masked_m, 256)

    call()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    ref = torch.stack([ref_int8_gemm_nt((A[i], sa[i]), (B[i], sb[i])) for i in range(g)])
    for counts in ([0, 0, 0, 0], [max_m] * 4, [0, max_m, 17, 200], [1, 0, max_m - 1, 64]):
        buf.fill_(SENTINEL_BITS)
        masked_m.copy_(torch.tensor(counts, dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        valid = torch.arange(max_m, device="cuda")[None, :] < masked_m[:, None]
        _assert_untouched(buf, d, valid, f"replay with masked_m={counts}")
        if bool(valid.any()):
            assert calc_diff(d[valid], ref[valid]) < 1e-5, f"replay with masked_m={counts}"
