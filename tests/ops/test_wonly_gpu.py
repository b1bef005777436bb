"""Weight-only GEMMs (W8A16, W4A16) on a Hopper GPU: dense on the DeepSeek-V3 and edge shapes (M, N in
{1, 7, 17, 65, 129, 1000, 4097}; K of 8-element rows, the TMA rule, and K not a multiple of the scale
group), INT8 per channel and per group, INT4 symmetric and with zero points, BF16 and FP16
activations, BF16/FP16/FP32 outputs; calc_diff < 1e-5 against a float64 product of the dequantised
weight, and no writes outside d (sentinel guard bands). Split-K results are deterministic and its
counters reset (repeated calls agree bit for bit). Masked: uneven and empty experts, rows past
masked_m untouched, a call replayed from a CUDA graph with new row counts. K not a multiple of 8 is
refused on the GPU as on the CPU."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import deepgemm
from deepgemm.heuristics.families.wonly import select_wonly_config
from deepgemm.jit import build_kernel
from deepgemm.testing import calc_diff, make_weight_only_inputs

from .grouped_cases import captured_graph

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
DSV3_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
VARIANTS = {  # name: (bits, group_size, zero points)
    "w8-channel": (8, None, False),
    "w8-g128": (8, 128, False),
    "w4-g128": (4, 128, False),
    "w4-g128-zeros": (4, 128, True),
}
EDGE = (1, 7, 17, 65, 129, 1000, 4097)
EDGE_SHAPES = (
    [(m, 4096, 7168) for m in EDGE]
    + [(m, n, 1000) for m in (1, 17, 129) for n in EDGE]
    + [(m, 1000, k) for m in (7, 65, 4097) for k in (8, 64, 136, 1000, 4104)]
)
GUARD = 16
SENTINEL = -12345.0


def _op(bits: int, masked: bool = False):
    if masked:
        return (deepgemm.m_grouped_w8a16_gemm_nt_masked if bits == 8
                else deepgemm.m_grouped_w4a16_gemm_nt_masked)
    return deepgemm.w8a16_gemm_nt if bits == 8 else deepgemm.w4a16_gemm_nt


def _guarded(m: int, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(buffer, d)``: d a [m, n] view inside a sentinel-filled buffer with GUARD rows and columns around."""
    buffer = torch.full((m + 2 * GUARD, n + 2 * GUARD), SENTINEL, dtype=dtype, device=CUDA)
    return buffer, buffer[GUARD: GUARD + m, GUARD: GUARD + n]


def _outside_untouched(buffer: torch.Tensor, m: int, n: int) -> bool:
    mask = torch.ones_like(buffer, dtype=torch.bool)
    mask[GUARD: GUARD + m, GUARD: GUARD + n] = False
    return bool(torch.all(buffer[mask] == SENTINEL))


def _check_dense(m, n, k, variant, dtype=torch.bfloat16, out_dtype=torch.bfloat16, seed=0):
    bits, group_size, zeros = VARIANTS[variant]
    inputs = make_weight_only_inputs(m, n, k, bits, CUDA, seed=seed, group_size=group_size,
                                     zero_points=zeros, dtype=dtype)
    buffer, d = _guarded(m, n, out_dtype)
    _op(bits)(inputs.a, inputs.b, d, group_size=group_size)
    torch.cuda.synchronize()
    diff = calc_diff(d, inputs.reference())
    assert diff < 1e-5, f"calc_diff {diff}"
    assert _outside_untouched(buffer, m, n)
    return inputs, d


# Each distinct (N, K, tile config, variant) JIT-compiles once: the variants take turns where a full
# cross product would only repeat the same code paths.
DECODE_CASES = ([(m, n, k, variant) for m in (1, 64) for n, k in DSV3_NK for variant in sorted(VARIANTS)]
                + [(16, n, k, variant) for n, k in DSV3_NK for variant in ("w8-channel", "w4-g128")])
EDGE_CASES = [(*shape, ("w4-g128-zeros", "w8-channel")[i % 2]) for i, shape in enumerate(EDGE_SHAPES)]


PREFILL_CASES = [(4096, n, k, variant) for n, k in [(4096, 7168), (7168, 2048), (2112, 7168)]
                 for variant in ("w8-channel", "w4-g128")]


@pytest.fixture(scope="module", autouse=True)
def precompiled():
    """The dense BF16 cases' kernels, compiled into the JIT's disk cache in parallel threads before the
    tests run (the compiler runs outside the GIL): one by one they would take minutes."""
    from deepgemm.ops.wonly import kernel as wonly_kernel

    num_sms = torch.cuda.get_device_properties(0).multi_processor_count
    specs = {}
    for m, n, k, variant in DECODE_CASES + EDGE_CASES + PREFILL_CASES:
        bits, group_size, zeros = VARIANTS[variant]
        cfg = select_wonly_config(m, n, k, bits, num_sms)
        spec = wonly_kernel.kernel_spec(n, k, cfg, group_size, zeros, False, torch.bfloat16)
        specs[(spec.template_args, spec.comment)] = spec
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
        list(pool.map(lambda s: build_kernel(s.name, s.header, s.template_args, s.comment), specs.values()))


@pytest.mark.parametrize("m, n, k, variant", DECODE_CASES)
def test_dsv3_decode_shapes(m, n, k, variant):
    _check_dense(m, n, k, variant)


@pytest.mark.parametrize("m, n, k, variant", PREFILL_CASES)
def test_dsv3_prefill_shapes(m, n, k, variant):
    _check_dense(m, n, k, variant)


@pytest.mark.parametrize("m, n, k, variant", EDGE_CASES)
def test_edge_shapes(m, n, k, variant):
    _check_dense(m, n, k, variant)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("out_dtype", (torch.float16, torch.float32))
def test_fp16_activations_and_output_dtypes(variant, out_dtype):
    _check_dense(33, 4096, 7168, variant, dtype=torch.float16, out_dtype=out_dtype)


@pytest.mark.parametrize("group_size", (64, 256, 1024))
def test_other_group_sizes_and_k_not_a_multiple_of_the_group(group_size):
    for k in (1000, 4104):
        inputs = make_weight_only_inputs(9, 1000, k, 4, CUDA, seed=k, group_size=group_size, zero_points=True)
        d = torch.empty(9, 1000, dtype=torch.bfloat16, device=CUDA)
        deepgemm.w4a16_gemm_nt(inputs.a, inputs.b, d, group_size=group_size)
        assert calc_diff(d, inputs.reference()) < 1e-5


@pytest.mark.parametrize("bits", (8, 4))
@pytest.mark.parametrize("m, n, k", [(8, 2112, 7168), (1, 7168, 16384)])
def test_split_k_is_deterministic_and_resets_its_counters(bits, m, n, k):
    # 2112 x 7168 at M = 8 runs 7 splits per tile, one unit per CTA; 7168 x 16384 at M = 1 runs 7 splits
    # of 56 tiles, 392 units on at most 132 persistent CTAs (about 3 each). Other shapes in between
    # reuse the counters of the same workspace.
    assert select_wonly_config(m, n, k, bits, 132).num_splits > 1
    group = None if bits == 8 else 128
    inputs = make_weight_only_inputs(m, n, k, bits, CUDA, seed=5, group_size=group)
    other = make_weight_only_inputs(3, 4096, 7168, bits, CUDA, seed=6, group_size=group)
    outs = []
    for _ in range(3):
        d = torch.empty(m, n, dtype=torch.bfloat16, device=CUDA)
        _op(bits)(inputs.a, inputs.b, d, group_size=group)
        _op(bits)(other.a, other.b, torch.empty(3, 4096, dtype=torch.bfloat16, device=CUDA), group_size=group)
        outs.append(d)
    torch.cuda.synchronize()
    assert calc_diff(outs[0], inputs.reference()) < 1e-5
    assert all(torch.equal(outs[0], out) for out in outs[1:])


@pytest.mark.parametrize("bits", (8, 4))
@pytest.mark.parametrize("group_size", (64, 192))
@pytest.mark.parametrize("m, n, k", [(8, 2112, 7168), (64, 2112, 7168), (1, 7168, 16384)])
def test_scale_reads_over_split_ranges_that_start_mid_group(bits, group_size, m, n, k):
    """The k-loop's scale slots (impls/wonly/mainloop.cuh, GroupParams): K groups of one and of three
    k-blocks over split K ranges that start mid-group (2112 x 7168: ranges from k-blocks 16, 32, ...;
    7168 x 16384: from 36, 73, ..., several units per CTA), 8- and 64-token tiles (INT8's 64-token tiles
    read half a pass ahead), zero points with INT4."""
    assert select_wonly_config(m, n, k, bits, 132).num_splits > 1
    inputs = make_weight_only_inputs(m, n, k, bits, CUDA, seed=group_size + m, group_size=group_size,
                                     zero_points=bits == 4)
    d = torch.empty(m, n, dtype=torch.bfloat16, device=CUDA)
    _op(bits)(inputs.a, inputs.b, d, group_size=group_size)
    assert calc_diff(d, inputs.reference()) < 1e-5


def test_gpu_matches_the_cpu_path():
    inputs = make_weight_only_inputs(20, 1000, 1000, 4, CUDA, seed=8, zero_points=True)
    d = torch.empty(20, 1000, dtype=torch.float32, device=CUDA)
    deepgemm.w4a16_gemm_nt(inputs.a, inputs.b, d)
    cpu = torch.empty(20, 1000, dtype=torch.float32)
    deepgemm.w4a16_gemm_nt(inputs.a.cpu(), tuple(t.cpu() for t in inputs.b), cpu)
    assert calc_diff(d.cpu(), cpu) < 1e-5


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("counts, max_m, expected_m", [
    ((16, 48, 0, 33, 17, 48, 1, 25), 48, 32),  # the MoE decode case: 8 experts x 16-48 rows
    ((0, 129, 200, 64), 256, 64),              # several m-blocks per expert, a partial one
])
def test_masked(variant, counts, max_m, expected_m):
    bits, group_size, zeros = VARIANTS[variant]
    inputs = make_weight_only_inputs(max_m, 4096, 7168, bits, CUDA, seed=len(counts), group_size=group_size,
                                     zero_points=zeros, num_groups=len(counts), counts=counts)
    d = torch.full((len(counts), max_m, 4096), SENTINEL, dtype=torch.bfloat16, device=CUDA)
    _op(bits, masked=True)(inputs.a, inputs.b, d, inputs.masked_m, expected_m, group_size=group_size)
    reference = inputs.a.double() @ inputs.w.double().transpose(1, 2)  # every row of every group
    for group, count in enumerate(counts):
        if count:
            assert calc_diff(d[group, :count], reference[group, :count]) < 1e-5
        assert torch.all(d[group, count:] == SENTINEL)


def test_masked_replays_from_a_cuda_graph_with_new_row_counts():
    max_m = 64
    inputs = make_weight_only_inputs(max_m, 1024, 2048, 4, CUDA, seed=12, num_groups=4,
                                     counts=(64, 0, 17, 40))
    d = torch.zeros(4, max_m, 1024, dtype=torch.bfloat16, device=CUDA)
    masked_m = inputs.masked_m.clone()

    def call():
        deepgemm.m_grouped_w4a16_gemm_nt_masked(inputs.a, inputs.b, d, masked_m, 32)

    graph = captured_graph(call)
    reference = inputs.a.double() @ inputs.w.double().transpose(1, 2)  # every row of every group
    for counts in ([0, 0, 0, 0], [64, 64, 64, 64], [1, 63, 0, 32]):
        d.fill_(SENTINEL)
        masked_m.copy_(torch.tensor(counts, dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        for group, count in enumerate(counts):
            if count:
                assert calc_diff(d[group, :count], reference[group, :count]) < 1e-5
            assert torch.all(d[group, count:] == SENTINEL)


@pytest.mark.parametrize("k", (1, 7, 17, 65, 129, 4097))
def test_k_not_a_multiple_of_8_is_refused(k):
    a = torch.zeros(4, k, dtype=torch.bfloat16, device=CUDA)
    b = tuple(t.to(CUDA) for t in deepgemm.quantize_w4a16(torch.randn(32, k)))
    d = torch.empty(4, 32, dtype=torch.bfloat16, device=CUDA)
    with pytest.raises(ValueError, match="K must be a multiple of 8"):
        deepgemm.w4a16_gemm_nt(a, b, d)
