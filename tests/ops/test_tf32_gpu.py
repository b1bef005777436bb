"""TF32 and 3xTF32 GEMMs on a Hopper GPU: every storage layout on the DeepSeek-V3 and edge shapes, with
and without C (a separate tensor, and d itself), strided views, forced tile configs (multicast on A and
on B, D in chunks, load batches, 256-row tiles), every 3xTF32 promotion schedule (with the accuracy
contract below); the operand-staging kernel bit for bit; deepgemm.matmul
with dtype "float32", "tf32", "float16" and "fp8" on the edge sizes M, N, K in {1, 7, 17, 65, 129, 1000,
4097} (padding inside matmul); and the measured error of 3xTF32 against FP64 next to TF32's and cuBLAS
FP32's.

References are float64 products: TF32 of the operands as TF32 tensor cores read them (the low 13
mantissa bits cleared), 3xTF32 of the FP32 operands. calc_diff < 1e-5 for TF32 (the issue's bar; the
FP32 accumulation alone lands near 1e-12), < 1e-8 for 3xTF32 (FP32 accuracy; plain TF32 of the same
operands is near 5e-7).
A guard band of sentinels around d must stay untouched.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepgemm
from deepgemm.heuristics import TF32X3
from deepgemm.heuristics.config import config_errors
from deepgemm.heuristics.sm90 import candidate_configs, estimated_cycles, make_config
from deepgemm.ops.tf32.kernel import gemm_shape, launch_tf32_gemm, staged
from deepgemm.testing import calc_diff, tf32_as_read

from .fuzz_cases import fp8_matmul_reference

pytestmark = pytest.mark.gpu

LAYOUTS = ("nt", "nn", "tn", "tt")
DSV3_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
DSV3_SHAPES = [(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK]
# The other layouts and 3xTF32: every (N, K) of the table once, M taking turns.
DSV3_SUBSET = [(64, 2112, 7168), (4096, 24576, 1536), (128, 32768, 512), (4096, 7168, 16384),
               (64, 4096, 7168), (4096, 7168, 2048)]
# Edge sizes of the issue. Through the ops N must be a multiple of 4 (d's TMA rows); matmul pads it.
EDGE = (1, 7, 17, 65, 129, 1000, 4097)
# Each M with three (N, K) pairs of a Latin square over EDGE: every size in every role, 21 shapes.
EDGE_SHAPES = [(m, EDGE[(i + j) % 7], EDGE[(i + 2 * j + 1) % 7])
               for i, m in enumerate(EDGE) for j in range(3)]
OP_EDGE_SHAPES = [(m, n + (-n) % 4, k) for m, n, k in EDGE_SHAPES]
GUARD = 16
SENTINEL = -12345.0
# TF32 truncates each operand by up to 2^-10 (calc_diff near 5e-7); 3xTF32 errs by about 2^-22 per
# product plus the tensor cores' FP32 accumulation (calc_diff of 1e-12 to 1e-9 as K grows).
TF32_BOUND, FP32_BOUND = 1e-5, 1e-8


def _stored(shape: tuple[int, int], generator: torch.Generator, pad: int = 0) -> torch.Tensor:
    rows, cols = shape
    return torch.randn(rows, cols + pad, generator=generator, device="cuda")[:, :cols]


def _as_mk(layout: str, a: torch.Tensor) -> torch.Tensor:
    return a if layout[0] == "n" else a.t()


def _as_kn(layout: str, b: torch.Tensor) -> torch.Tensor:
    return b.t() if layout[1] == "t" else b


def reference(a_mk: torch.Tensor, b_kn: torch.Tensor, num_terms: int) -> torch.Tensor:
    if num_terms == 1:
        a_mk, b_kn = tf32_as_read(a_mk), tf32_as_read(b_kn)
    return a_mk.double() @ b_kn.double()


def _check(layout: str, m: int, n: int, k: int, num_terms: int = 1, c_mode: str = "none", pad: int = 0,
           config=None) -> torch.Tensor:
    """Run ``tf32_gemm_<layout>`` (``num_terms=3``: ``tf32x3_gemm_nt`` on the layout's views), or with
    ``config`` the kernel with that tile config, once; check D, C and the guard band."""
    generator = torch.Generator(device="cuda").manual_seed(m * 1_000_003 + n * 7919 + k)
    a = _stored((m, k) if layout[0] == "n" else (k, m), generator, pad)
    b = _stored((n, k) if layout[1] == "t" else (k, n), generator, pad)
    buf = torch.full((m + 2 * GUARD, n + 2 * GUARD), SENTINEL, device="cuda")
    d = buf[GUARD : GUARD + m, GUARD : GUARD + n]
    a_mk, b_kn = _as_mk(layout, a), _as_kn(layout, b)
    ref = reference(a_mk, b_kn, num_terms)
    c = None
    if c_mode != "none":
        c_values = _stored((m, n), generator, pad)
        ref += c_values.double()
        c_before = c_values.clone()
        if c_mode == "in_place":
            d.copy_(c_values)
            c = d
        else:
            c = c_values
    before = buf.clone()
    if config is not None:
        launch_tf32_gemm(a_mk, b_kn.t(), d, c, num_terms, torch.cuda.current_device(), config)
    elif num_terms == 3:
        assert deepgemm.tf32x3_gemm_nt(a_mk, b_kn.t(), d, c) is d
    else:
        assert getattr(deepgemm, f"tf32_gemm_{layout}")(a, b, d, c) is d
    torch.cuda.synchronize()
    assert bool(torch.isfinite(d).all()), "non-finite values in d"
    diff = calc_diff(d, ref)
    bound = TF32_BOUND if num_terms == 1 else FP32_BOUND
    assert diff < bound, f"calc_diff vs the float64 reference {diff:.3e}"
    outside = torch.ones_like(buf, dtype=torch.bool)
    outside[GUARD : GUARD + m, GUARD : GUARD + n] = False
    assert torch.equal(buf[outside], before[outside]), "the kernel wrote outside d"
    if c_mode == "separate":
        assert torch.equal(c, c_before), "the kernel changed c"
    return d


@pytest.mark.parametrize("m, n, k", DSV3_SHAPES)
def test_dsv3_shapes_nt(m: int, n: int, k: int) -> None:
    _check("nt", m, n, k)


@pytest.mark.parametrize("layout", LAYOUTS[1:])
@pytest.mark.parametrize("m, n, k", DSV3_SUBSET)
def test_dsv3_shapes_other_layouts(layout: str, m: int, n: int, k: int) -> None:
    _check(layout, m, n, k)


@pytest.mark.parametrize("m, n, k", DSV3_SUBSET)
def test_dsv3_shapes_3xtf32(m: int, n: int, k: int) -> None:
    _check("nt", m, n, k, num_terms=3)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("m, n, k", OP_EDGE_SHAPES)
def test_edge_shapes(layout: str, m: int, n: int, k: int) -> None:
    _check(layout, m, n, k)


@pytest.mark.parametrize("layout", ["nt", "nn"])
@pytest.mark.parametrize("m, n, k", OP_EDGE_SHAPES[::2])
def test_edge_shapes_3xtf32(layout: str, m: int, n: int, k: int) -> None:
    _check(layout, m, n, k, num_terms=3)


@pytest.mark.parametrize("num_terms", [1, 3])
@pytest.mark.parametrize("c_mode", ["separate", "in_place"])
@pytest.mark.parametrize("layout, m, n, k",
                         [("nt", 4096, 7168, 2048), ("tn", 129, 1000, 65), ("nn", 7, 4, 17)])
def test_accumulate(layout: str, m: int, n: int, k: int, c_mode: str, num_terms: int) -> None:
    _check(layout, m, n, k, num_terms, c_mode)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_strided_views(layout: str) -> None:
    # Row strides past the row length for A, B and C (A and B K-major are then still read in place).
    _check(layout, 200, 256, 320, c_mode="separate", pad=8)
    _check(layout, 200, 256, 320, num_terms=3, c_mode="separate", pad=12)


# Tile configs the heuristic picks elsewhere, forced on one shape each: multicast on B (even m-blocks)
# and on A (even n-blocks), D in 2 and 4 chunks, a narrow tile with load batches, 256-row tiles.
# 3xTF32 holds a second accumulator (the promoted sum), so its widest tiles are narrower.
FORCED = [
    # (num_terms, m, n, k, block_m, block_n, multicast, on_a, d_chunks, load_batch)
    *((terms, 1024, 2112, 2048, 128, 176, 2, False, 2, 1) for terms in (1, 3)),
    (1, 1024, 2048, 1024, 128, 256, 2, True, 4, 1),
    (3, 1024, 2304, 1024, 128, 192, 2, True, 4, 1),
    (1, 768, 1024, 4096, 256, 128, 1, True, 4, 1),
    (3, 768, 1024, 4096, 256, 96, 1, True, 4, 1),
    *((terms, 64, 2112, 7168, 64, 16, 1, True, 1, 4) for terms in (1, 3)),
    *((terms, 200, 512, 3000, 64, 128, 2, True, 1, 1) for terms in (1, 3)),
]


@pytest.mark.parametrize("num_terms, m, n, k, block_m, block_n, multicast, on_a, d_chunks, load_batch",
                         FORCED)
def test_forced_configs(m, n, k, block_m, block_n, multicast, on_a, d_chunks, load_batch, num_terms) -> None:
    shape = gemm_shape(m, n, k, num_terms)
    num_sms = torch.cuda.get_device_properties(0).multi_processor_count // 2 * 2
    config = make_config(shape, num_sms, block_m, block_n, multicast, on_a, num_d_chunks=d_chunks,
                         load_batch=load_batch)
    assert config_errors(config, shape) == []
    _check("nt", m, n, k, num_terms, "separate", config=config)


def _round_to_nearest_tf32(x: torch.Tensor) -> torch.Tensor:
    """``cvt.rna.tf32.f32`` for finite values: add half a TF32 unit to the magnitude bits, cut 13 bits."""
    return ((x.view(torch.int32) + 0x1000) & ~0x1FFF).view(torch.float32)


@pytest.mark.parametrize("rows, k", [(1, 1), (7, 17), (65, 4097), (1000, 129), (4097, 33)])
@pytest.mark.parametrize("k_major", [True, False])
def test_staging_kernel_bit_for_bit(rows: int, k: int, k_major: bool) -> None:
    generator = torch.Generator(device="cuda").manual_seed(rows * 31 + k)
    x = torch.randn(rows, k, generator=generator, device="cuda") * 100
    x = x if k_major else x.T.contiguous().T  # the same values stored [K, rows]
    device = torch.cuda.current_device()
    split = staged(x, True, device)
    k_pad = -(-k // 4) * 4
    assert split.shape == (rows, 2, k_pad)
    hi, lo = split[:, 0, :k], split[:, 1, :k]
    torch.cuda.synchronize()
    assert torch.equal(hi, _round_to_nearest_tf32(x.contiguous()))
    assert torch.equal(lo, _round_to_nearest_tf32((x - hi).contiguous()))
    assert not bool((hi.view(torch.int32) & 0x1FFF).any()) and not bool((lo.view(torch.int32) & 0x1FFF).any())
    # hi + lo holds about 22 of x's 24 mantissa bits.
    assert bool(((hi.double() + lo.double() - x.double()).abs() <= x.double().abs() * 2.0**-21).all())
    copy = staged(x.T.contiguous().T if k_major else x, False, device)  # an MN-major x is copied
    assert copy.shape == (rows, 1, k_pad) and torch.equal(copy[:, 0, :k], x)


# ---- deepgemm.matmul ------------------------------------------------------------------------------


def _matmul_reference(dtype: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if dtype == "float32":
        return a.double() @ b.double()
    if dtype == "tf32":
        return tf32_as_read(a).double() @ tf32_as_read(b).double()
    if dtype == "fp8":
        return fp8_matmul_reference(a, b)
    return a.half().double() @ b.half().double()


@pytest.mark.parametrize("dtype", ["float32", "tf32", "float16", "fp8"])
@pytest.mark.parametrize("m, n, k", EDGE_SHAPES)
def test_matmul_edge_sizes_every_precision(dtype: str, m: int, n: int, k: int) -> None:
    generator = torch.Generator(device="cuda").manual_seed(m + 3 * n + 7 * k)
    a = torch.randn(m, k, generator=generator, device="cuda")
    b = torch.randn(k, n, generator=generator, device="cuda")
    d = deepgemm.matmul(a, b, dtype=dtype, out_dtype=torch.float32)
    torch.cuda.synchronize()
    assert d.shape == (m, n) and d.dtype == torch.float32
    bound = {"float32": FP32_BOUND, "tf32": TF32_BOUND, "float16": 1e-5, "fp8": 1e-5}[dtype]
    assert calc_diff(d, _matmul_reference(dtype, a, b)) < bound


@pytest.mark.parametrize("dtype", ["float32", "tf32"])
def test_matmul_fp32_transposed_batched_and_numpy(dtype: str) -> None:
    generator = torch.Generator(device="cuda").manual_seed(5)
    a = torch.randn(300, 520, generator=generator, device="cuda").T  # [520, 300] as a transposed view
    b = torch.randn(3, 300, 129, generator=generator, device="cuda")
    d = deepgemm.matmul(a.expand(3, 520, 300), b, dtype=dtype)
    bound = FP32_BOUND if dtype == "float32" else TF32_BOUND
    for i in range(3):
        assert calc_diff(d[i], _matmul_reference(dtype, a, b[i])) < bound
    a_np, b_np = a.cpu().numpy(), b[0].cpu().numpy()
    d_np = deepgemm.matmul(a_np, b_np, dtype=dtype, device="cuda")
    assert type(d_np) is np.ndarray and d_np.dtype == np.float32
    assert calc_diff(torch.from_numpy(d_np), _matmul_reference(dtype, a.cpu(), b[0].cpu())) < bound


def test_the_seed_call() -> None:
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((1024, 1024)), rng.standard_normal((1024, 1024))
    c_np = deepgemm.matmul(a_np, b_np, dtype="float16", device="cuda")
    assert type(c_np) is np.ndarray and c_np.dtype == np.float16
    expected = torch.from_numpy(a_np).half().double() @ torch.from_numpy(b_np).half().double()
    assert calc_diff(torch.from_numpy(c_np), expected) < 1e-5


# ---- accuracy: 3xTF32 against TF32 and cuBLAS FP32 -------------------------------------------------


def _relative_error(d: torch.Tensor, ref: torch.Tensor) -> float:
    return float((d.double() - ref).norm() / ref.norm())


@pytest.mark.parametrize("m, n, k", [(2048, 2048, 2048), (1024, 1024, 4096)])
def test_3xtf32_error_is_within_a_small_factor_of_cublas_fp32(m: int, n: int, k: int) -> None:
    """Relative Frobenius error against the float64 product of the FP32 operands. 3xTF32 drops only
    lo*lo and lo's rounding (about 2^-22 per product) and accumulates in FP32 like an FP32 GEMM."""
    generator = torch.Generator(device="cuda").manual_seed(11)
    a = torch.randn(m, k, generator=generator, device="cuda")
    b = torch.randn(k, n, generator=generator, device="cuda")
    ref = a.double() @ b.double()
    errors = {dtype: _relative_error(deepgemm.matmul(a, b, dtype=dtype), ref)
              for dtype in ("float32", "tf32")}
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        errors["cublas_fp32"] = _relative_error(a @ b, ref)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    print(f"\nrelative error vs FP64, {m}x{n}x{k}: 3xTF32 {errors['float32']:.3e}, TF32 {errors['tf32']:.3e},"
          f" cuBLAS FP32 {errors['cublas_fp32']:.3e}")
    assert errors["float32"] <= 8 * errors["cublas_fp32"], errors
    assert errors["tf32"] >= 30 * errors["float32"], errors


# ---- 3xTF32 promotion schedules (GemmConfig.promote_every, promote_sets) ----------------------------
# Every schedule the kernel takes, with the tile the model ranks best for it (what the sweep times first):
# promote every 1, 2 or 4 k-blocks, from one accumulator set or two used alternately.

SCHEDULES = TF32X3.promotions
# (M, N, K, (block_m, block_n, multicast on A) or None for the model's best): k-blocks per tile (3
# products) 192 (whole spans), 282 and 387 (tails of spans and chunks), 9 (fewer than one two-set span);
# M and N off the tile; the 128x128 multicast tile the two-set schedules run on the fp32 suite, and
# 256-row tiles (two waves per set).
SCHEDULE_SHAPES = [(1024, 2112, 2048, None), (200, 512, 3000, None), (4097, 1000, 4097, None),
                   (129, 1000, 65, None), (1024, 2112, 2048, (128, 128, False)),
                   (768, 1024, 4096, (256, 64, True))]


def _schedule_config(m: int, n: int, k: int, every: int, sets: int, tile: tuple | None = None):
    shape = gemm_shape(m, n, k, 3)
    num_sms = torch.cuda.get_device_properties(0).multi_processor_count // 2 * 2
    if tile is None:
        config = min(candidate_configs(shape, num_sms, ((every, sets),)),
                     key=lambda c: estimated_cycles(shape, c))
    else:
        block_m, block_n, on_a = tile
        config = make_config(shape, num_sms, block_m, block_n, 2, on_a, promote_every=every,
                             promote_sets=sets)
    assert (config.promote_every, config.promote_sets) == (every, sets) and config_errors(config, shape) == []
    return config


@pytest.mark.parametrize("every, sets", SCHEDULES)
@pytest.mark.parametrize("m, n, k, tile", SCHEDULE_SHAPES)
def test_3xtf32_promotion_schedules(m: int, n: int, k: int, tile, every: int, sets: int) -> None:
    _check("nt", m, n, k, 3, "separate", config=_schedule_config(m, n, k, every, sets, tile))


@pytest.mark.parametrize("every, sets", SCHEDULES)
@pytest.mark.parametrize("m, n, k", [(2048, 2048, 2048), (1024, 1024, 4096)])
def test_3xtf32_schedule_error_is_within_a_small_factor_of_cublas_fp32(m: int, n: int, k: int, every: int,
                                                                      sets: int) -> None:
    """The accuracy contract of `test_3xtf32_error_is_within_a_small_factor_of_cublas_fp32` for every
    schedule the sweep may pick: the tensor cores sum up to 4 k-blocks (16 WGMMAs) before a promotion."""
    generator = torch.Generator(device="cuda").manual_seed(11)
    a = torch.randn(m, k, generator=generator, device="cuda")
    b = torch.randn(k, n, generator=generator, device="cuda")
    ref = a.double() @ b.double()
    d = torch.empty(m, n, device="cuda")
    config = _schedule_config(m, n, k, every, sets)
    launch_tf32_gemm(a, b.t(), d, None, 3, torch.cuda.current_device(), config)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        cublas_error = _relative_error(a @ b, ref)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    error = _relative_error(d, ref)
    print(f"\npromote every {every}, {sets} set(s), {m}x{n}x{k}: 3xTF32 {error:.3e}, "
          f"cuBLAS FP32 {cublas_error:.3e}")
    assert error <= 8 * cublas_error, (error, cublas_error)
    assert calc_diff(d, ref) < FP32_BOUND
