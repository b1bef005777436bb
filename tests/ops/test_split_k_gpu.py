"""Split-K on a Hopper GPU, FP8 1D2D and 16-bit: accuracy against the FP32 references at the usual
thresholds on few-tile shapes (the heuristic's own split selections) and on forced slice counts, M, N and
K tails, with and without C (separate and in place), every output dtype; D the same bits on two runs;
no writes outside D; the call launches its GEMM and the reduction and nothing else; and it replays under
CUDA-graph capture."""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.heuristics import BF16, FP8_1D2D, GemmShape, select_config
from deepgemm.heuristics.config import config_errors
from deepgemm.heuristics.sm90 import make_config
from deepgemm.ops.fp8.kernel import launch_fp8_gemm_nt
from deepgemm.testing import calc_diff, ref_fp8_gemm_nt
from deepgemm.testing.bench import _device_events

from .test_bf16_gemm_gpu import _check as _check_16bit
from .test_fp8_gemm_gpu import _assert_guard_band_untouched, _guarded_output, _make_inputs

pytestmark = pytest.mark.gpu

NUM_SMS = 132
# Few-tile shapes the heuristic splits on 132 SMs (the issue-27 examples and decode shapes): N of a few
# tiles over long K, M from 1 to 128.
FEW_TILE_SHAPES = [(1, 512, 7168), (32, 512, 7168), (128, 512, 7168), (1, 1280, 8192), (1, 64, 7168),
                   (16, 768, 4096), (7, 576, 7168)]
# Tails: M not a multiple of the tile (1, 63, 65, 127, 129 rows), N not a multiple of it (1000, 520),
# K not a multiple of the k-block (7296 = 57 FP8 blocks of 128: three slices of 19; 114 16-bit blocks).
TAIL_SHAPES = [(1, 1000, 7168), (63, 520, 7168), (65, 1000, 4096), (127, 520, 7296), (129, 1000, 7296)]
IDS = lambda shapes: [f"{m}x{n}x{k}" for m, n, k in shapes]  # noqa: E731


def _split_config(m: int, n: int, k: int, out_bytes: int, family, split_k: int, block_m: int = 64,
                  block_n: int = 64, b_mn_major: bool = False):
    shape = GemmShape(m, n, k, out_bytes, family=family, b_mn_major=b_mn_major)
    cfg = make_config(shape, NUM_SMS, block_m, block_n, split_k=split_k)
    assert cfg.split_k == split_k and not config_errors(cfg, shape), config_errors(cfg, shape)
    return cfg


# --- FP8 ---------------------------------------------------------------------------------------------------


def _fp8_run(m: int, n: int, k: int, out_dtype: torch.dtype = torch.bfloat16, cfg=None) -> torch.Tensor:
    """One FP8 GEMM (the heuristic's config, or `cfg`) into a guarded d: calc_diff < 1e-5 against the
    dequantised FP32 reference and < 1e-3 against the unquantised product, nothing written outside d."""
    a, b, a_q, b_q = _make_inputs(m, n, k)
    buf, d = _guarded_output(m, n, out_dtype)
    if cfg is None:
        deepgemm.fp8_gemm_nt(a_q, b_q, d)
    else:
        launch_fp8_gemm_nt(a_q[0], a_q[1], b_q[0], b_q[1], d, config=cfg)
    torch.cuda.synchronize()
    ref = ref_fp8_gemm_nt(a_q, b_q)
    assert calc_diff(d, ref) < 1e-5, f"vs dequantised FP32 reference: {calc_diff(d, ref)}"
    unquantized = a.float() @ b.float().t()
    assert calc_diff(d, unquantized) < 1e-3, f"vs unquantised product: {calc_diff(d, unquantized)}"
    _assert_guard_band_untouched(buf, m, n)
    assert bool(torch.isfinite(d).all())
    return d.clone()


@pytest.mark.parametrize("m,n,k", FEW_TILE_SHAPES, ids=IDS(FEW_TILE_SHAPES))
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32])
def test_fp8_heuristic_splits_few_tile_shapes(m: int, n: int, k: int, out_dtype: torch.dtype) -> None:
    # The heuristic's choice, on the SM count of the GPU under test (an H100's or H200's 132).
    num_sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert select_config(GemmShape(m, n, k, 4 if out_dtype == torch.float32 else 2), num_sms).split_k > 1
    _fp8_run(m, n, k, out_dtype)


@pytest.mark.parametrize("split_k", [2, 3, 4, 6, 7, 8, 14, 16])
def test_fp8_every_slice_count(split_k: int) -> None:
    # K = 14336: 112 k-blocks, which every candidate count but 3 and 6 divides; 3 and 6 on 7296 + 2 * 128.
    k = 14336 if 112 % split_k == 0 else 6912
    cfg = _split_config(48, 1000, k, 2, FP8_1D2D, split_k, block_n=112)
    _fp8_run(48, 1000, k, cfg=cfg)


@pytest.mark.parametrize("m,n,k", TAIL_SHAPES, ids=IDS(TAIL_SHAPES))
@pytest.mark.parametrize("block_m,block_n", [(64, 64), (64, 144), (128, 96), (256, 128)])
def test_fp8_tails(m: int, n: int, k: int, block_m: int, block_n: int) -> None:
    # K = 4096 (32 blocks) and 7168 (56) split in 4, 7296 (57) in 3; tiles of one and two consumer
    # warpgroups, straddling scale blocks (144, 96) and two waves per tile (256 rows).
    split_k = 3 if k == 7296 else 4
    cfg = _split_config(m, n, k, 2, FP8_1D2D, split_k, block_m, block_n)
    _fp8_run(m, n, k, cfg=cfg)


@pytest.mark.parametrize("m,n,k", [(32, 512, 7168), (129, 1000, 7296)], ids=["32x512x7168", "129x1000x7296"])
def test_fp8_split_is_bitwise_deterministic(m: int, n: int, k: int) -> None:
    _, _, a_q, b_q = _make_inputs(m, n, k)
    cfg = select_config(GemmShape(m, n, k), NUM_SMS)
    if cfg.split_k == 1:
        cfg = _split_config(m, n, k, 2, FP8_1D2D, 3 if k == 7296 else 7)
    results = []
    for _ in range(2):
        d = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        # Leave other values in the pool's blocks between runs: every partial must be rewritten.
        torch.randn(8 * m * n, device="cuda")
        launch_fp8_gemm_nt(a_q[0], a_q[1], b_q[0], b_q[1], d, config=cfg)
        results.append(d)
    torch.cuda.synchronize()
    assert torch.equal(results[0], results[1])


def test_fp8_split_matches_the_unsplit_kernel() -> None:
    # Different summation orders of the same FP32 promotions: equal to within BF16 rounding.
    m, n, k = 32, 512, 7168
    unsplit = _fp8_run(m, n, k, cfg=make_config(GemmShape(m, n, k), NUM_SMS, 64, 64))
    split = _fp8_run(m, n, k, cfg=_split_config(m, n, k, 2, FP8_1D2D, 8))
    assert calc_diff(split, unsplit) < 1e-5


# --- 16-bit ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m,n,k", FEW_TILE_SHAPES, ids=IDS(FEW_TILE_SHAPES))
@pytest.mark.parametrize("c_mode", ["none", "separate", "in_place"])
def test_16bit_heuristic_splits_few_tile_shapes(m: int, n: int, k: int, c_mode: str) -> None:
    num_sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert select_config(GemmShape(m, n, k, family=BF16), num_sms).split_k > 1
    _check_16bit("nt", m, n, k, c_mode=c_mode)


@pytest.mark.parametrize("layout", ["nt", "nn", "tn", "tt"])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_16bit_layouts_and_dtypes(layout: str, out_dtype: torch.dtype) -> None:
    # M = 72: 2 m-blocks, and an M-major A's rows of 72 elements keep TMA's 16-byte rule.
    m, n, k = 72, 1024, 7168
    in_dtype = torch.float16 if out_dtype == torch.float16 else torch.bfloat16
    out_bytes = 4 if out_dtype == torch.float32 else 2
    cfg = _split_config(m, n, k, out_bytes, BF16, 7, block_n=128, b_mn_major=layout[1] == "n")
    _check_16bit(layout, m, n, k, in_dtype=in_dtype, out_dtype=out_dtype, c_mode="separate", config=cfg)


@pytest.mark.parametrize("m,n,k", TAIL_SHAPES, ids=IDS(TAIL_SHAPES))
@pytest.mark.parametrize("block_m,block_n", [(64, 64), (128, 208), (256, 96)])
@pytest.mark.parametrize("c_mode", ["none", "in_place"])
def test_16bit_tails(m: int, n: int, k: int, block_m: int, block_n: int, c_mode: str) -> None:
    # K = 4096 and 7168 (64 and 112 blocks of 64) split in 4, 7296 (114) in 6.
    split_k = 6 if k == 7296 else 4
    cfg = _split_config(m, n, k, 2, BF16, split_k, block_m, block_n)
    _check_16bit("nt", m, n, k, c_mode=c_mode, config=cfg)


@pytest.mark.parametrize("with_c", [False, True])
def test_16bit_split_is_bitwise_deterministic(with_c: bool) -> None:
    m, n, k = 32, 512, 7168
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    c = torch.randn(m, n, device="cuda", dtype=torch.bfloat16) if with_c else None
    assert select_config(GemmShape(m, n, k, family=BF16), NUM_SMS).split_k > 1
    results = []
    for _ in range(2):
        d = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        torch.randn(8 * m * n, device="cuda")
        deepgemm.bf16_gemm_nt(a, b, d, c)
        results.append(d)
    torch.cuda.synchronize()
    assert torch.equal(results[0], results[1])


# --- launches and graphs -----------------------------------------------------------------------------------


def _fp8_call(m: int, n: int, k: int):
    _, _, a_q, b_q = _make_inputs(m, n, k)
    a_q = (a_q[0], deepgemm.get_mn_major_tma_aligned_tensor(a_q[1]))
    d = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    return d, lambda: deepgemm.fp8_gemm_nt(a_q, b_q, d)


def _16bit_call(m: int, n: int, k: int):
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    c = torch.randn(m, n, device="cuda", dtype=torch.bfloat16)
    d = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    return d, lambda: deepgemm.bf16_gemm_nt(a, b, d, c)


@pytest.mark.parametrize("make_call", [_fp8_call, _16bit_call], ids=["fp8", "16bit"])
def test_split_call_launches_its_gemm_and_the_reduction_only(make_call) -> None:
    _, call = make_call(32, 512, 7168)
    call()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    names = [event.name for event in _device_events(prof)]
    assert len(names) == 2 and "sm90_split_k_reduce" in names[1] and "gemm" in names[0], names


@pytest.mark.parametrize("make_call", [_fp8_call, _16bit_call], ids=["fp8", "16bit"])
def test_split_call_replays_in_a_cuda_graph(make_call) -> None:
    d, call = make_call(32, 512, 7168)
    call()
    torch.cuda.synchronize()
    eager = d.clone()
    d.zero_()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        call()  # warm the caching allocator on this stream
        with torch.cuda.graph(graph, stream=stream):
            call()
    torch.cuda.current_stream().wait_stream(stream)
    d.zero_()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(d, eager)
