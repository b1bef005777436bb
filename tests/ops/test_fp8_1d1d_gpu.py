"""The 1D1D FP8 GEMMs (1x128 scales on both operands) on a Hopper GPU: against a float64 product of the
dequantised operands (calc_diff < 1e-5 for FP32 out), on edge shapes (M, N in {1, 7, 65, 129, 1000}),
DeepGEMM's wgrad shapes and the k-grouped layout (K_g of 0 and 128, N = 768); no writes outside d
(sentinel guard bands, for in-place and padded-copy outputs); bitwise-deterministic runs; in-place
accumulation (c is d) equal to accumulating a separate c; 2-CTA multicast configs; a k-grouped call
replayed from a CUDA graph with new group sizes; torch.compile.

Each distinct (N, K, config) JIT-compiles once (about a second), so the cases share shapes where they can.
"""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.heuristics import FP8_1D1D, GemmShape
from deepgemm.heuristics.config import config_errors
from deepgemm.heuristics.sm90 import make_config
from deepgemm.ops.fp8_1d1d import kernel as wgrad_kernel
from deepgemm.quant import get_mn_major_tma_aligned_tensor, per_token_cast_to_fp8
from deepgemm.testing import calc_diff

pytestmark = pytest.mark.gpu

EDGE = (1, 7, 65, 129, 1000)
# An FP32 NaN with a payload no kernel computes: memory that must stay untouched holds exactly these bits.
SENTINEL_BITS = 0x7FA5A5A5
GUARD = 1024  # sentinel elements before and after d (a multiple of 4: d stays 16-byte aligned)


def operand(rows: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return per_token_cast_to_fp8(torch.randn(rows, k, generator=gen, device="cuda", dtype=torch.bfloat16))


def dequantised(op: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, s = op
    return x.double() * s.double().repeat_interleave(128, dim=1)[:, : x.shape[1]]


def fp64_product(a, b) -> torch.Tensor:
    return dequantised(a) @ dequantised(b).T


def fp64_k_grouped(a, b, ks: list[int]) -> torch.Tensor:
    A, B = dequantised(a), dequantised(b)
    out, start = [], 0
    for k in ks:
        out.append(A[:, start : start + k] @ B[:, start : start + k].T)
        start += k
    return torch.stack(out)


def sentinel_output(shape: tuple[int, ...], dtype: torch.dtype = torch.float32):
    """(buffer, d): a contiguous ``d`` of ``shape`` full of sentinels, GUARD sentinels either side."""
    numel = 1
    for size in shape:
        numel *= size
    words = (numel * dtype.itemsize + 3) // 4
    buf = torch.full((words + 2 * GUARD,), SENTINEL_BITS, dtype=torch.int32, device="cuda")
    d = buf[GUARD:].view(dtype)[:numel].view(shape)
    return buf, d


def strided_output(m: int, n: int, dtype: torch.dtype = torch.float32):
    """(buffer, d): ``d`` [M, N] a view inside a sentinel buffer with a 16-byte row padding either side."""
    per_16 = 16 // dtype.itemsize
    cols = (n + per_16 - 1) // per_16 * per_16 + 2 * per_16
    buf = torch.full((m + 2, cols * dtype.itemsize // 4), SENTINEL_BITS, dtype=torch.int32, device="cuda")
    d = buf.view(dtype)[1 : m + 1, per_16 : per_16 + n]
    return buf, d


def untouched(buf: torch.Tensor, d: torch.Tensor) -> bool:
    """Every word of ``buf`` outside ``d`` (a view into it) still holds the sentinel: ``buf`` and an
    all-sentinel buffer agree once ``d``'s elements are zeroed in both."""
    itype = {4: torch.int32, 2: torch.int16}[d.element_size()]
    offset = (d.data_ptr() - buf.data_ptr()) // d.element_size()

    def blanked(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x.view(itype).as_strided(d.shape, d.stride(), offset).zero_()
        return x

    return torch.equal(blanked(buf), blanked(torch.full_like(buf, SENTINEL_BITS)))


# ---- dense ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", EDGE)
@pytest.mark.parametrize("m", EDGE)
def test_dense_fp32_edge_shapes(m, n):
    k = 256
    a, b = operand(m, k, m), operand(n, k, n + 1)
    expected = fp64_product(a, b)
    for make in (sentinel_output, strided_output):
        buf, d = make((m, n)) if make is sentinel_output else make(m, n)
        assert deepgemm.fp8_gemm_nt_1d1d(a, b, d) is d
        assert calc_diff(d, expected) < 1e-5, make.__name__
        assert untouched(buf, d), make.__name__


@pytest.mark.parametrize("m, n", [(1, 7), (65, 1000), (129, 129), (1000, 65)])
def test_dense_bf16_out(m, n):
    k = 384
    a, b = operand(m, k, 3), operand(n, k, 4)
    for make in (sentinel_output, strided_output):
        buf, d = make((m, n), torch.bfloat16) if make is sentinel_output else make(m, n, torch.bfloat16)
        deepgemm.fp8_gemm_nt_1d1d(a, b, d)
        assert calc_diff(d, fp64_product(a, b)) < 1e-5
        assert untouched(buf, d)


@pytest.mark.parametrize("m, n, k", [(7168, 2112, 4096), (1536, 24576, 4096), (512, 32768, 4096),
                                     (2048, 7168, 4096), (7168, 4096, 8192)])
def test_dense_wgrad_shapes_accumulate_and_are_deterministic(m, n, k):
    a, b = operand(m, k, 5), operand(n, k, 6)
    sa, sb = get_mn_major_tma_aligned_tensor(a[1]), get_mn_major_tma_aligned_tensor(b[1])
    c = torch.randn(m, n, device="cuda", generator=torch.Generator(device="cuda").manual_seed(7))
    expected = fp64_product(a, b) + c.double()
    d = c.clone()
    deepgemm.fp8_gemm_nt_1d1d((a[0], sa), (b[0], sb), d, d)
    assert calc_diff(d, expected) < 1e-5
    again = torch.empty_like(c)
    deepgemm.fp8_gemm_nt_1d1d((a[0], sa), (b[0], sb), again, c)  # a separate c: copied, then accumulated
    assert torch.equal(again, d)
    fresh = torch.empty_like(c)
    deepgemm.fp8_gemm_nt_1d1d(a, b, fresh)
    assert calc_diff(fresh, fp64_product(a, b)) < 1e-5
    twice = torch.empty_like(c)
    deepgemm.fp8_gemm_nt_1d1d(a, b, twice)
    assert torch.equal(fresh, twice)


@pytest.mark.parametrize("m, n", [(7, 1000), (129, 7), (1000, 129)])
def test_dense_c_is_d_with_guard_bands(m, n):
    k = 512
    a, b = operand(m, k, 8), operand(n, k, 9)
    c = torch.randn(m, n, device="cuda")
    for make in (sentinel_output, strided_output):
        buf, d = make((m, n)) if make is sentinel_output else make(m, n)
        d.copy_(c)
        deepgemm.fp8_gemm_nt_1d1d(a, b, d, d)
        assert calc_diff(d, fp64_product(a, b) + c.double()) < 1e-5
        assert untouched(buf, d)


MULTICAST = [(128, 128, True), (128, 144, False), (256, 96, True), (64, 128, False), (128, 152, True)]


@pytest.mark.parametrize("block_m, block_n, on_a", MULTICAST)
@pytest.mark.parametrize("accumulate", [False, True])
def test_dense_multicast_configs(block_m, block_n, on_a, accumulate):
    m, n, k = 1024, 2304, 1024  # even m-blocks and n-blocks for every tile above; several tiles per SM
    num_sms = torch.cuda.get_device_properties(0).multi_processor_count // 2 * 2
    shape = GemmShape(m, n, k, 4, family=FP8_1D1D)
    cfg = make_config(shape, num_sms, block_m, block_n, 2, on_a)
    assert not config_errors(cfg, shape)
    a, b = operand(m, k, 10), operand(n, k, 11)
    c = torch.randn(m, n, device="cuda")
    d = c.clone()
    wgrad_kernel.launch_fp8_gemm_nt_1d1d(*a, *b, d, d if accumulate else None, 0, config=cfg)
    expected = fp64_product(a, b) + (c.double() if accumulate else 0)
    assert calc_diff(d, expected) < 1e-5


@pytest.mark.parametrize("block_m, block_n", [(256, 104), (128, 152), (64, 152)])
def test_dense_tiles_are_deterministic_over_many_k_blocks(block_m, block_n):
    """Two consumer warpgroups take turns issuing WGMMAs (one warpgroup at 64 rows; two waves each at
    256): many tiles per SM over 64 k-blocks give the same bits run after run."""
    m, n, k = 2048, 2 * 1216, 8192
    num_sms = torch.cuda.get_device_properties(0).multi_processor_count
    shape = GemmShape(m, n, k, 4, family=FP8_1D1D)
    cfg = make_config(shape, num_sms, block_m, block_n)
    assert not config_errors(cfg, shape)
    a, b = operand(m, k, 12), operand(n, k, 13)
    d = torch.empty(m, n, device="cuda")
    wgrad_kernel.launch_fp8_gemm_nt_1d1d(*a, *b, d, None, 0, config=cfg)
    assert calc_diff(d, fp64_product(a, b)) < 1e-5
    for _ in range(3):
        again = torch.full_like(d, float("nan"))
        wgrad_kernel.launch_fp8_gemm_nt_1d1d(*a, *b, again, None, 0, config=cfg)
        assert torch.equal(again, d)


# ---- k-grouped -----------------------------------------------------------------------------------------


K_GROUPED = [
    (129, 768, [128, 0, 256]),
    (65, 7, [0, 0, 128, 128]),
    (1000, 1000, [128, 384, 0, 256, 128]),
    (1, 1, [128]),
    (7, 65, [0, 0]),
    (2048, 768, [4224, 3968, 0, 4096, 128, 4096, 4224, 3968]),
    (4096, 7168, [4224, 3968, 4224, 3968]),
]


@pytest.mark.parametrize("m, n, ks", K_GROUPED, ids=[f"m{m}-n{n}-G{len(ks)}" for m, n, ks in K_GROUPED])
def test_k_grouped(m, n, ks):
    k_sum = sum(ks)
    a, b = operand(m, k_sum, 20), operand(n, k_sum, 21)
    ks_tensor = torch.tensor(ks, dtype=torch.int32, device="cuda")
    expected = fp64_k_grouped(a, b, ks)
    buf, d = sentinel_output((len(ks), m, n))
    assert deepgemm.k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks_tensor, ks_host=ks) is d
    assert calc_diff(d, expected) < 1e-5
    assert untouched(buf, d)
    for group, k in enumerate(ks):
        if k == 0:
            assert d[group].eq(0).all()
    # Deterministic; ks_host is optional.
    again = torch.empty_like(d)
    deepgemm.k_grouped_fp8_gemm_nt_1d1d(a, b, again, ks_tensor)
    assert torch.equal(again, d)
    # Accumulation into d itself equals accumulating a separate c; groups of no K keep c.
    c = torch.randn(len(ks), m, n, device="cuda")
    buf, acc = sentinel_output((len(ks), m, n))
    acc.copy_(c)
    deepgemm.k_grouped_fp8_gemm_nt_1d1d(a, b, acc, ks_tensor, ks, c=acc)
    assert calc_diff(acc, expected + c.double()) < 1e-5
    assert untouched(buf, acc)
    separate = torch.empty_like(c)
    deepgemm.k_grouped_fp8_gemm_nt_1d1d(a, b, separate, ks_tensor, c=c)
    assert torch.equal(separate, acc)
    for group, k in enumerate(ks):
        if k == 0:
            assert torch.equal(acc[group], c[group])


def test_k_grouped_matches_a_loop_of_dense_calls():
    m, n, ks = 1024, 768, [512, 0, 1024, 128]
    k_sum = sum(ks)
    a, b = operand(m, k_sum, 30), operand(n, k_sum, 31)
    d = torch.zeros(len(ks), m, n, device="cuda")
    deepgemm.k_grouped_fp8_gemm_nt_1d1d(a, b, d, torch.tensor(ks, dtype=torch.int32, device="cuda"), c=d)
    start = 0
    for group, k in enumerate(ks):
        if k:
            kb = slice(start // 128, (start + k) // 128)
            dense = torch.zeros(m, n, device="cuda")
            deepgemm.fp8_gemm_nt_1d1d((a[0][:, start : start + k], a[1][:, kb]),
                                      (b[0][:, start : start + k], b[1][:, kb]), dense, dense)
            assert calc_diff(d[group], dense) < 1e-10
        else:
            assert d[group].eq(0).all()
        start += k


@pytest.mark.parametrize("block_m, block_n, on_a", [(128, 128, True), (128, 144, False), (256, 96, True)])
def test_k_grouped_multicast_configs(block_m, block_n, on_a):
    m, n, ks = 512, 2304, [1024, 0, 384, 640]
    k_sum = sum(ks)
    num_sms = torch.cuda.get_device_properties(0).multi_processor_count // 2 * 2
    shape = GemmShape(m, n, k_sum, 4, family=FP8_1D1D)
    cfg = make_config(shape, num_sms, block_m, block_n, 2, on_a)
    assert not config_errors(cfg, shape)
    a, b = operand(m, k_sum, 40), operand(n, k_sum, 41)
    ks_tensor = torch.tensor(ks, dtype=torch.int32, device="cuda")
    d = torch.full((len(ks), m, n), float("nan"), device="cuda")
    wgrad_kernel.launch_k_grouped_fp8_gemm_nt_1d1d(*a, *b, d, ks_tensor, None, None, 0, config=cfg)
    assert calc_diff(d, fp64_k_grouped(a, b, ks)) < 1e-5


def test_k_grouped_replays_from_a_cuda_graph_with_new_group_sizes():
    m, n = 256, 768
    first, second = [512, 256, 0, 256], [128, 0, 768, 128]
    k_sum = sum(first)
    a, b = operand(m, k_sum, 50), operand(n, k_sum, 51)
    sa, sb = get_mn_major_tma_aligned_tensor(a[1]), get_mn_major_tma_aligned_tensor(b[1])
    ks = torch.tensor(first, dtype=torch.int32, device="cuda")
    d = torch.zeros(len(first), m, n, device="cuda")

    def call():
        d.zero_()
        deepgemm.k_grouped_fp8_gemm_nt_1d1d((a[0], sa), (b[0], sb), d, ks, c=d)

    call()  # compiles and loads the kernel: not allowed during capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    graph.replay()
    torch.cuda.synchronize()
    assert calc_diff(d, fp64_k_grouped(a, b, first)) < 1e-5
    ks.copy_(torch.tensor(second, dtype=torch.int32))
    graph.replay()
    torch.cuda.synchronize()
    assert calc_diff(d, fp64_k_grouped(a, b, second)) < 1e-5


def test_both_ops_compile_into_one_graph_on_the_gpu():
    m, n, ks = 256, 384, [256, 0, 128]
    a, b = operand(m, sum(ks), 60), operand(n, sum(ks), 61)
    ks_tensor = torch.tensor(ks, dtype=torch.int32, device="cuda")
    calls = [
        (lambda d: deepgemm.fp8_gemm_nt_1d1d(a, b, d, d), (m, n)),
        (lambda d: deepgemm.k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks_tensor, ks, d), (len(ks), m, n)),
    ]
    for call, shape in calls:
        torch._dynamo.reset()
        eager = torch.full(shape, 0.5, device="cuda")
        call(eager)
        d = torch.full(shape, 0.5, device="cuda")
        assert torch.compile(call, fullgraph=True, backend="aot_eager")(d) is d
        assert torch.equal(d, eager)
