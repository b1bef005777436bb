"""FP8 dense GEMM on a Hopper GPU: accuracy on the DeepSeek-V3 and edge shapes, no writes outside D."""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.heuristics.config import GemmShape, config_errors
from deepgemm.heuristics.sm90 import make_config
from deepgemm.ops.fp8.kernel import launch_fp8_gemm_nt
from deepgemm.testing import calc_diff, ref_fp8_gemm_nt

pytestmark = pytest.mark.gpu

DSV3_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
DSV3_SHAPES = [(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK]
EDGE_SHAPES = (
    [(m, 7168, 2048) for m in (1, 7, 63, 65, 127, 129, 1000, 4097)]
    + [(m, n, 7168) for m in (1, 129) for n in (8, 120, 1000, 7176)]
    + [(m, 4096, k) for m in (7, 1000) for k in (16, 128, 208, 7168, 7296)]
)
GUARD = 16  # guard band (elements) around d that must stay untouched
SENTINEL = -12345.0


def _make_inputs(m: int, n: int, k: int, a_row_stride: int | None = None, b_row_stride: int | None = None):
    torch.manual_seed(m * 1_000_003 + n * 7919 + k)
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    a_fp8, sfa = deepgemm.per_token_cast_to_fp8(a)
    b_fp8, sfb = deepgemm.per_block_cast_to_fp8(b)
    # Strided views: rows live inside a wider buffer.
    if a_row_stride is not None:
        buf = torch.zeros(m, a_row_stride, device="cuda", dtype=torch.float8_e4m3fn)
        buf[:, :k] = a_fp8
        a_fp8 = buf[:, :k]
    if b_row_stride is not None:
        buf = torch.zeros(n, b_row_stride, device="cuda", dtype=torch.float8_e4m3fn)
        buf[:, :k] = b_fp8
        b_fp8 = buf[:, :k]
    return a, b, (a_fp8, sfa), (b_fp8, sfb)


def _guarded_output(m: int, n: int, dtype: torch.dtype):
    """d as a view into a sentinel-filled buffer with GUARD rows and columns on every side."""
    buf = torch.full((m + 2 * GUARD, n + 2 * GUARD), SENTINEL, device="cuda", dtype=dtype)
    return buf, buf[GUARD : GUARD + m, GUARD : GUARD + n]


def _assert_guard_band_untouched(buf: torch.Tensor, m: int, n: int, what: str = "") -> None:
    inner = torch.zeros_like(buf, dtype=torch.bool)
    inner[GUARD : GUARD + m, GUARD : GUARD + n] = True
    assert bool((buf[~inner] == SENTINEL).all()), f"{what}the kernel wrote outside d"


def _check(m: int, n: int, k: int, out_dtype=torch.bfloat16, **strides) -> None:
    a, b, a_q, b_q = _make_inputs(m, n, k, **strides)
    buf, d = _guarded_output(m, n, out_dtype)
    out = deepgemm.fp8_gemm_nt(a_q, b_q, d)
    torch.cuda.synchronize()
    assert out is d

    ref = ref_fp8_gemm_nt(a_q, b_q)
    assert calc_diff(d, ref) < 1e-5, f"vs dequantized FP32 reference: {calc_diff(d, ref)}"
    unquantized = a.float() @ b.float().t()
    assert calc_diff(d, unquantized) < 1e-3, f"vs unquantized product: {calc_diff(d, unquantized)}"

    _assert_guard_band_untouched(buf, m, n)
    assert bool(torch.isfinite(d).all())


def _run_config(a_q, sfa, b_q, shape: GemmShape, cfg, ref: torch.Tensor, out_dtype: torch.dtype,
                where: str) -> torch.Tensor:
    """Runs `cfg` (which must be valid for `shape`) into a guarded d: calc_diff < 1e-5 against `ref`,
    nothing written outside d. Returns d, to compare configs bit for bit."""
    assert not config_errors(cfg, shape), config_errors(cfg, shape)
    m, n = shape.m, shape.n
    buf, d = _guarded_output(m, n, out_dtype)
    launch_fp8_gemm_nt(a_q[0], sfa, b_q[0], b_q[1], d, config=cfg)
    torch.cuda.synchronize()
    assert calc_diff(d, ref) < 1e-5, f"{where}calc_diff {calc_diff(d, ref)}"
    _assert_guard_band_untouched(buf, m, n, where)
    return d.clone()


@pytest.mark.parametrize("m,n,k", DSV3_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in DSV3_SHAPES])
def test_dsv3_shapes(m: int, n: int, k: int) -> None:
    _check(m, n, k)


@pytest.mark.parametrize("m,n,k", EDGE_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in EDGE_SHAPES])
def test_edge_shapes(m: int, n: int, k: int) -> None:
    _check(m, n, k)


@pytest.mark.parametrize("m,n,k", [(129, 1000, 7168), (4096, 7168, 2048)])
def test_fp32_output(m: int, n: int, k: int) -> None:
    _check(m, n, k, out_dtype=torch.float32)


@pytest.mark.parametrize("m,n,k", [(65, 2112, 7168), (4096, 4096, 7168)])
def test_strided_operands(m: int, n: int, k: int) -> None:
    _check(m, n, k, a_row_stride=k + 128, b_row_stride=k + 32)


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32], ids=["bf16_out", "fp32_out"])
@pytest.mark.parametrize("num_d_chunks", [2, 4])
@pytest.mark.parametrize("n", [1000, 904])
def test_d_staged_in_chunks(n: int, num_d_chunks: int, out_dtype: torch.dtype) -> None:
    """256x128 tiles whose D goes through shared memory in 2 or 4 column chunks (what buys them a
    fourth stage), N ending inside the last tile's last chunk (1000) or first chunk (904, the others
    wholly past N): accurate, no writes outside d, bit-identical to the tile staged whole."""
    m, k = 1000, 896
    _, _, a_q, b_q = _make_inputs(m, n, k)
    sfa = deepgemm.get_mn_major_tma_aligned_tensor(a_q[1])
    shape = GemmShape(m, n, k, out_dtype.itemsize)
    ref = ref_fp8_gemm_nt(a_q, b_q)
    results = []
    for chunks in (num_d_chunks, 1):
        cfg = make_config(shape, deepgemm.get_num_sms(), 256, 128, num_d_chunks=chunks)
        results.append(_run_config(a_q, sfa, b_q, shape, cfg, ref, out_dtype, f"{chunks} chunks: "))
    assert torch.equal(results[0], results[1]), "chunked staging changed the result"


@pytest.mark.parametrize("on_a", [True, False], ids=["on_a", "on_b"])
@pytest.mark.parametrize(("block_m", "block_n", "num_d_chunks"), [(256, 128, 4), (128, 64, 1), (64, 32, 1)])
def test_two_cta_multicast(block_m: int, block_n: int, num_d_chunks: int, on_a: bool) -> None:
    """2-CTA clusters sharing A or B (each consumer warp frees the stage in both CTAs, lane r on CTA
    r): M and N tails, 57 k-blocks, several tiles per CTA: accurate, no writes outside d, and
    bit-identical to the same tile without multicast."""
    m, n, k = 1000, 1000, 7296
    _, _, a_q, b_q = _make_inputs(m, n, k)
    sfa = deepgemm.get_mn_major_tma_aligned_tensor(a_q[1])
    shape = GemmShape(m, n, k)
    ref = ref_fp8_gemm_nt(a_q, b_q)
    results = []
    for multicast in (2, 1):
        cfg = make_config(shape, 16, block_m, block_n, multicast, on_a, num_d_chunks=num_d_chunks)
        where = f"{block_m}x{block_n} multicast {multicast}{'A' if on_a else 'B'}: "
        results.append(_run_config(a_q, sfa, b_q, shape, cfg, ref, torch.bfloat16, where))
    assert torch.equal(results[0], results[1]), f"{block_m}x{block_n}: multicast changed the result"


@pytest.mark.parametrize(("block_n", "num_d_chunks"), [(56, 1), (48, 2), (144, 2)])
def test_odd_column_groups_per_chunk(block_n: int, num_d_chunks: int) -> None:
    """Staged D chunks of an odd number of 8-column groups (7, 3 and 9: the last group goes to shared
    memory with a two-matrix stmatrix; no swizzle span divides such a row, so all are unswizzled):
    accurate, no writes outside d."""
    m, n, k = 1000, 1000, 896
    _, _, a_q, b_q = _make_inputs(m, n, k)
    sfa = deepgemm.get_mn_major_tma_aligned_tensor(a_q[1])
    shape = GemmShape(m, n, k)
    cfg = make_config(shape, deepgemm.get_num_sms(), 128, block_n, num_d_chunks=num_d_chunks)
    _run_config(a_q, sfa, b_q, shape, cfg, ref_fp8_gemm_nt(a_q, b_q), torch.bfloat16, f"128x{block_n}: ")


@pytest.mark.parametrize("load_batch", [2, 3, 4])
def test_loads_in_batches(load_batch: int) -> None:
    """The producer issuing its loads in batches of k-blocks: 57 k-blocks (a partial last batch),
    several tiles per CTA (the ring wraps across tiles), 64- and 128-row tiles: accurate, no writes
    outside d, and bit-identical to loading one k-block at a time."""
    m, n, k = 200, 2000, 7296
    _, _, a_q, b_q = _make_inputs(m, n, k)
    sfa = deepgemm.get_mn_major_tma_aligned_tensor(a_q[1])
    shape = GemmShape(m, n, k)
    ref = ref_fp8_gemm_nt(a_q, b_q)
    for block_m, block_n in ((64, 16), (128, 64)):
        results = []
        for batch in (load_batch, 1):
            cfg = make_config(shape, 32, block_m, block_n, num_stages=6, load_batch=batch)
            where = f"{block_m}x{block_n}, batch {batch}: "
            results.append(_run_config(a_q, sfa, b_q, shape, cfg, ref, torch.bfloat16, where))
        assert torch.equal(results[0], results[1]), f"{block_m}x{block_n}: load batches changed the result"


def test_m_zero_returns_at_once() -> None:
    _, _, a_q, b_q = _make_inputs(1, 256, 256)
    a_fp8, sfa = a_q
    d = torch.empty(0, 256, device="cuda", dtype=torch.bfloat16)
    assert deepgemm.fp8_gemm_nt((a_fp8[:0], sfa[:0]), b_q, d) is d


def test_row_major_and_mn_major_sfa_agree() -> None:
    _, _, (a_fp8, sfa), b_q = _make_inputs(1000, 2112, 7168)
    d_row = torch.empty(1000, 2112, device="cuda", dtype=torch.bfloat16)
    d_mn = torch.empty_like(d_row)
    deepgemm.fp8_gemm_nt((a_fp8, sfa), b_q, d_row)
    deepgemm.fp8_gemm_nt((a_fp8, deepgemm.get_mn_major_tma_aligned_tensor(sfa)), b_q, d_mn)
    assert torch.equal(d_row, d_mn)


def test_deterministic() -> None:
    _, _, a_q, b_q = _make_inputs(4096, 7168, 2048)
    d1 = torch.empty(4096, 7168, device="cuda", dtype=torch.bfloat16)
    d2 = torch.empty_like(d1)
    deepgemm.fp8_gemm_nt(a_q, b_q, d1)
    deepgemm.fp8_gemm_nt(a_q, b_q, d2)
    assert torch.equal(d1, d2)
