"""The INT8 W8A8 ops on the CPU: the CPU path against the exact integer sums and the float64 product of the
dequantised operands (dense and grouped, every output dtype, bias, zero points, per-tensor scales, empty
sizes), the quantisation helpers, int8_matmul_quantized, and every validation rule."""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.ops.common.group_indices import group_ends_to_m_indices
from deepgemm.ops.int8.gemm import _wrap_int32
from deepgemm.quant import AMAX_FLOOR, INT8_MAX
from deepgemm.testing import calc_diff, ref_int8_gemm_nt, ref_int8_sums


def _ints(*shape: int, seed: int = 0, low: int = -128) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, 128, shape, generator=generator, dtype=torch.int8)


def _scales(*shape: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator) / 100 + 1e-3


M, N, K = 70, 48, 160


# --- quantisation ----------


@pytest.mark.parametrize("cast", [deepgemm.per_token_cast_to_int8, deepgemm.per_channel_cast_to_int8])
def test_casts_scale_each_row_to_127(cast):
    x = torch.randn(33, 200, dtype=torch.bfloat16) * torch.logspace(-3, 3, 33)[:, None]
    x[5] = 0  # an all-zero row: the floor scale, zeros
    q, s = cast(x)
    assert q.dtype == torch.int8 and q.shape == x.shape and q.is_contiguous()
    assert s.dtype == torch.float32 and s.shape == (33,)
    amax = x.float().abs().amax(-1)
    assert torch.equal(s, amax.clamp(min=AMAX_FLOOR) / INT8_MAX)
    assert torch.equal(q, (x.float() / s[:, None]).round().clamp(-127, 127).to(torch.int8))
    assert int(q.abs().max()) == 127 and int(q.min()) >= -127
    assert torch.equal(q[5], torch.zeros(200, dtype=torch.int8))
    # Round to nearest: every value within half a step (and FP32's rounding of x / s, 127 steps wide).
    step = s[:, None]
    assert bool(((q.float() * step - x.float()).abs() <= step * (0.5 + 1e-4)).all())


def test_casts_take_3d_and_strided_inputs():
    w = torch.randn(3, 40, 64).transpose(1, 2)  # [G, 64, 40], strided
    q, s = deepgemm.per_channel_cast_to_int8(w)
    assert q.shape == (3, 64, 40) and s.shape == (3, 64) and q.is_contiguous()
    q2, s2 = deepgemm.per_channel_cast_to_int8(w.contiguous())
    assert torch.equal(q, q2) and torch.equal(s, s2)


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (torch.zeros(4, 4, dtype=torch.int8), TypeError, "floating-point"),
        (torch.zeros(4), ValueError, r"\[M, K\] or \[G, M, K\]"),
        ([[1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_cast_errors(bad, error, match):
    with pytest.raises(error, match=match):
        deepgemm.per_token_cast_to_int8(bad)


# --- the CPU path ----------


def test_raw_int32_sums_are_exact_and_wrap():
    a, b = _ints(M, K), _ints(N, K, seed=2)
    d = torch.empty(M, N, dtype=torch.int32)
    assert deepgemm.int8_gemm_nt(a, b, d) is d
    assert torch.equal(d.long(), a.long() @ b.long().T)
    assert torch.equal(ref_int8_sums(a, b), a.long() @ b.long().T)
    big = torch.tensor([2**31 - 1 + 5, -(2**31) - 3], dtype=torch.int64)
    assert _wrap_int32(big).tolist() == [-(2**31) + 4, 2**31 - 3]


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("bias_dtype", [None, torch.float32, "out"])
@pytest.mark.parametrize("has_azp", [False, True])
def test_scaled_outputs_match_the_dequantised_product(out_dtype, bias_dtype, has_azp):
    a, b = _ints(M, K, low=-127), _ints(N, K, seed=2, low=-127)
    sa, sb = _scales(M), _scales(N, seed=3)
    bias = None
    if bias_dtype is not None:
        bias = torch.randn(N).to(out_dtype if bias_dtype == "out" else torch.float32)
    azp = (torch.randint(-8, 8, (M,), dtype=torch.int32), b.sum(-1, dtype=torch.int32)) if has_azp else None
    d = torch.empty(M, N, dtype=out_dtype)
    deepgemm.int8_gemm_nt((a, sa), (b, sb), d, bias=bias, azp=azp)
    ref = ref_int8_gemm_nt((a, sa), (b, sb), bias=bias, azp=azp)
    assert calc_diff(d, ref) < 1e-5
    # The CPU path rounds the float64 result once: as close as d's dtype allows.
    assert torch.equal(d, ref.to(out_dtype))


def test_scale_shapes_per_tensor_and_missing():
    a, b = _ints(M, K, low=-127), _ints(N, K, seed=2, low=-127)
    sa, sb = _scales(M), _scales(N, seed=3)
    expected = ref_int8_gemm_nt((a, sa), (b, sb))
    for a_scale, b_scale in ((sa[:, None], sb), (sa, sb[:, None].contiguous())):
        d = torch.empty(M, N)
        deepgemm.int8_gemm_nt((a, a_scale), (b, b_scale), d)
        assert torch.equal(d, expected.float())
    for scale in (torch.tensor([0.5]), torch.tensor(0.5)):
        d = torch.empty(M, N)
        deepgemm.int8_gemm_nt((a, scale), (b, sb), d)
        assert torch.equal(d, ref_int8_gemm_nt((a, scale), (b, sb)).float())
    d = torch.empty(M, N)
    deepgemm.int8_gemm_nt(a, (b, sb), d)  # no sa: 1
    assert torch.equal(d, ref_int8_gemm_nt(a, (b, sb)).float())
    zp = torch.tensor([3], dtype=torch.int32)  # a per-tensor zero point
    deepgemm.int8_gemm_nt((a, sa), (b, sb), d, azp=(zp, b.sum(-1, dtype=torch.int32)))
    assert calc_diff(d, ref_int8_gemm_nt((a, sa), (b, sb), azp=(zp, None))) < 1e-12


def test_empty_sizes():
    a, b = _ints(M, 0), _ints(N, 0)
    d = torch.full((M, N), 7.0)
    bias = torch.randn(N)
    deepgemm.int8_gemm_nt((a, _scales(M)), (b, _scales(N)), d, bias=bias)
    assert torch.equal(d, bias.expand(M, N))
    d32 = torch.full((M, N), 7, dtype=torch.int32)
    assert torch.equal(deepgemm.int8_gemm_nt(a, b, d32), torch.zeros(M, N, dtype=torch.int32))
    d = torch.full((0, N), 7.0)
    assert deepgemm.int8_gemm_nt(_ints(0, K), _ints(N, K), d) is d


def _contiguous_case(sizes=(100, 0, 60, 128)):
    m_indices = torch.full((128 * len(sizes),), -1, dtype=torch.int32)
    for group, size in enumerate(sizes):
        m_indices[128 * group : 128 * group + size] = group
    g = len(sizes)
    a, b = _ints(len(m_indices), K, low=-127), _ints(g, N, K, seed=2, low=-127)
    return m_indices, a, b, _scales(len(m_indices)), _scales(g, N, seed=3)


def test_contiguous_cpu_path():
    m_indices, a, b, sa, sb = _contiguous_case()
    valid = m_indices >= 0
    d = torch.full((len(m_indices), N), -5, dtype=torch.int32)
    deepgemm.m_grouped_int8_gemm_nt_contiguous(a, b, d, m_indices)
    assert bool((d[~valid] == -5).all())
    for row in valid.nonzero().flatten().tolist():
        assert torch.equal(d[row].long(), b[m_indices[row]].long() @ a[row].long())
    bias = torch.randn(b.shape[0], N)
    zp = torch.randint(-8, 8, (len(m_indices),), dtype=torch.int32)
    azp = (zp, b.sum(-1, dtype=torch.int32))
    d = torch.full((len(m_indices), N), -5.0, dtype=torch.bfloat16)
    deepgemm.m_grouped_int8_gemm_nt_contiguous((a, sa), (b, sb), d, m_indices, bias=bias, azp=azp)
    assert bool((d[~valid] == -5).all())
    for group in range(b.shape[0]):
        rows = m_indices == group
        if rows.any():
            ref = ref_int8_gemm_nt((a[rows], sa[rows]), (b[group], sb[group]), bias[group], (zp[rows], None))
            assert calc_diff(d[rows], ref) < 1e-5
    # Per-expert scales ([G] and [G, 1]) and K == 0 (each expert row its bias).
    for b_scale in (sb[:, 0].contiguous(), sb[:, :1].contiguous()):
        deepgemm.m_grouped_int8_gemm_nt_contiguous((a, sa), (b, b_scale), d, m_indices)
        ref = ref_int8_gemm_nt((a[:100], sa[:100]), (b[0], sb[0, 0]))
        assert calc_diff(d[:100], ref) < 1e-5
    d = torch.full((len(m_indices), N), -5.0)
    deepgemm.m_grouped_int8_gemm_nt_contiguous(a[:, :0], b[:, :, :0], d, m_indices, bias=bias)
    assert torch.equal(d[valid], bias[m_indices[valid].long()]) and bool((d[~valid] == -5).all())


def test_masked_cpu_path():
    g, max_m = 3, 64
    counts = torch.tensor([0, 64, 17], dtype=torch.int32)
    a, b = _ints(g, max_m, K, low=-127), _ints(g, N, K, seed=2, low=-127)
    sa, sb = _scales(g, max_m), _scales(g, N, seed=3)
    d = torch.full((g, max_m, N), -5, dtype=torch.int32)
    deepgemm.m_grouped_int8_gemm_nt_masked(a, b, d, counts, 32)
    for group, count in enumerate(counts.tolist()):
        assert torch.equal(d[group, :count].long(), ref_int8_sums(a[group, :count], b[group]))
        assert bool((d[group, count:] == -5).all())
    zp = torch.randint(-8, 8, (g, 1), dtype=torch.int32)  # one zero point per group
    df = torch.full((g, max_m, N), -5.0)
    deepgemm.m_grouped_int8_gemm_nt_masked(
        (a, sa), (b, sb), df, counts, 32, azp=(zp, b.sum(-1, dtype=torch.int32))
    )
    for group, count in enumerate(counts.tolist()):
        ref = ref_int8_gemm_nt(
            (a[group, :count], sa[group, :count]), (b[group], sb[group]), azp=(zp[group], None)
        )
        assert calc_diff(df[group, :count], ref) < 1e-5
        assert bool((df[group, count:] == -5).all())


def test_int8_matmul_quantized_any_shape():
    for m, n, k in ((7, 7, 17), (65, 129, 1), (1, 4097, 65)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        out = deepgemm.int8_matmul_quantized(a, b, torch.float32)
        assert out.shape == (m, n) and out.dtype == torch.float32
        ref = ref_int8_gemm_nt(deepgemm.per_token_cast_to_int8(a), deepgemm.per_channel_cast_to_int8(b.T))
        assert calc_diff(out, ref) < 1e-10
        assert calc_diff(out, a @ b) < 2e-2  # INT8 quantisation of both operands
    with pytest.raises(TypeError, match="out_dtype"):
        deepgemm.int8_matmul_quantized(a, b, torch.int32)
    with pytest.raises(ValueError, match="b must have shape"):
        deepgemm.int8_matmul_quantized(torch.randn(4, 5), torch.randn(6, 3))


# --- validation ----------


def _dense_args(**overrides):
    args = {
        "a": (_ints(M, K), _scales(M)),
        "b": (_ints(N, K), _scales(N)),
        "d": torch.empty(M, N),
        "bias": None,
        "azp": None,
    }
    args.update(overrides)
    return args


@pytest.mark.parametrize(
    "overrides,error,match",
    [
        ({"a": (torch.zeros(M, K), _scales(M))}, TypeError, r"A \(a\[0\]\) must have dtype torch.int8"),
        ({"a": torch.zeros(M, K, dtype=torch.int8).numpy()}, TypeError, "a must be a torch.Tensor"),
        ({"a": (_ints(M, K),)}, TypeError, "a must be an int8 tensor or a"),
        (
            {"a": (_ints(M, K), _scales(M).double())},
            TypeError,
            r"sa \(a\[1\]\) must have dtype torch.float32",
        ),
        ({"a": (_ints(M, K), _scales(M + 1))}, ValueError, r"sa \(a\[1\]\) must have shape \[M\]"),
        ({"b": (_ints(N, K), _scales(2, N))}, ValueError, r"sb \(b\[1\]\) must have shape \[N\]"),
        ({"b": (_ints(N, K + 16), _scales(N))}, ValueError, r"B \(b\[0\]\) must have shape"),
        ({"a": (_ints(M, K, 1), _scales(M))}, ValueError, r"A \(a\[0\]\) must be 2-D"),
        ({"d": torch.empty(M, N, dtype=torch.float64)}, TypeError, "d must have dtype"),
        ({"d": torch.empty(M, N + 8)}, ValueError, "d must have shape"),
        ({"d": torch.empty(M, N, dtype=torch.int32)}, ValueError, "int32 d takes the raw sums"),
        ({"bias": torch.randn(N, dtype=torch.bfloat16)}, TypeError, "bias must have dtype torch.float32"),
        ({"bias": torch.randn(N + 1)}, ValueError, r"bias must have shape \[N\]"),
        ({"bias": torch.randn(N, 2)[:, 0]}, ValueError, "bias must be contiguous"),
        ({"bias": torch.randn(N + 1)[1:]}, ValueError, "bias must start at an 8-byte-aligned address"),
        ({"azp": torch.zeros(M, dtype=torch.int32)}, TypeError, r"azp must be a \(zp, b_sums\) pair"),
        (
            {"azp": (torch.zeros(M), torch.zeros(N, dtype=torch.int32))},
            TypeError,
            r"zp \(azp\[0\]\) must have dtype",
        ),
        (
            {"azp": (torch.zeros(M, dtype=torch.int32), torch.zeros(N + 2, dtype=torch.int32))},
            ValueError,
            r"b_sums \(azp\[1\]\) must have shape \[N\]",
        ),
        (
            {"a": (_ints(M, 24), _scales(M)), "b": (_ints(N, 24), _scales(N))},
            ValueError,
            "K must be a multiple of 16",
        ),
        (
            {"b": (_ints(44, K), _scales(44)), "d": torch.empty(M, 44, dtype=torch.bfloat16)},
            ValueError,
            "N must be a multiple of 8",
        ),
        ({"a": (_ints(M, 2 * K)[:, ::2], _scales(M))}, ValueError, r"A must have contiguous rows"),
        ({"a": (_ints(M, K + 8)[:, :K], _scales(M))}, ValueError, r"A.stride\(0\) must be a multiple of 16"),
    ],
)
def test_dense_validation(overrides, error, match):
    with pytest.raises(error, match=match):
        deepgemm.int8_gemm_nt(**_dense_args(**overrides))


def test_devices_must_agree():
    args = _dense_args(bias=torch.randn(N, device="meta"))
    with pytest.raises(ValueError, match="one device"):
        deepgemm.int8_gemm_nt(**args)


def test_grouped_validation():
    m_indices, a, b, sa, sb = _contiguous_case()
    d = torch.empty(len(m_indices), N)
    with pytest.raises(ValueError, match=r"sb \(b\[1\]\) must have shape \[G, N\]"):
        deepgemm.m_grouped_int8_gemm_nt_contiguous((a, sa), (b, sb[0]), d, m_indices)
    with pytest.raises(ValueError, match=r"bias must have shape \[G, N\]"):
        deepgemm.m_grouped_int8_gemm_nt_contiguous((a, sa), (b, sb), d, m_indices, bias=torch.randn(N))
    with pytest.raises(ValueError, match="m_indices must have shape"):
        deepgemm.m_grouped_int8_gemm_nt_contiguous((a, sa), (b, sb), d, m_indices[:-1])
    bad = m_indices.clone()
    bad[1] = -1
    with pytest.raises(ValueError, match="follows a padding row"):
        deepgemm.m_grouped_int8_gemm_nt_contiguous((a, sa), (b, sb), d, bad)
    g, max_m = b.shape[0], 32
    masked_a, masked_d = _ints(g, max_m, K), torch.empty(g, max_m, N)
    masked_m = torch.full((g,), 3, dtype=torch.int32)
    with pytest.raises(ValueError, match="A must have G = 4 groups"):
        deepgemm.m_grouped_int8_gemm_nt_masked(masked_a[:2], b, masked_d[:2], masked_m, 8)
    with pytest.raises(TypeError, match="expected_m must be an int"):
        deepgemm.m_grouped_int8_gemm_nt_masked(masked_a, b, masked_d.int(), masked_m, 8.0)
    with pytest.raises(ValueError, match=r"masked_m\[0\] must be in"):
        deepgemm.m_grouped_int8_gemm_nt_masked(masked_a, b, masked_d.int(), masked_m + 40, 8)
    with pytest.raises(ValueError, match=r"sa \(a\[1\]\) must have shape \[G, max_m\]"):
        deepgemm.m_grouped_int8_gemm_nt_masked((masked_a, _scales(max_m)), (b, sb), masked_d, masked_m, 8)


def test_contiguous_offsets_match_m_indices():
    # Experts of 100, 0, 60 and 128 rows: expert 2 starts at 128 (the empty one takes no rows).
    group_ends = torch.tensor([100, 100, 188, 384], dtype=torch.int32)
    m_indices = group_ends_to_m_indices(group_ends, 512, 128)
    assert m_indices[:100].eq(0).all() and m_indices[128:188].eq(2).all() and m_indices[256:384].eq(3).all()
    a, b = _ints(512, K, low=-127), _ints(4, N, K, seed=2, low=-127)
    sa, sb = _scales(512), _scales(4, N, seed=3)
    bias = torch.randn(4, N)
    expected = torch.full((512, N), -5.0)
    deepgemm.m_grouped_int8_gemm_nt_contiguous((a, sa), (b, sb), expected, m_indices, bias=bias)
    d = torch.full((512, N), -5.0)
    assert deepgemm.m_grouped_int8_gemm_nt_contiguous_offsets((a, sa), (b, sb), d, group_ends, bias=bias) is d
    assert torch.equal(d, expected)
    bad = group_ends.clone()
    bad[2] = 120  # inside the padding of the expert before
    with pytest.raises(ValueError, match=r"group_ends\[2\] must equal"):
        deepgemm.m_grouped_int8_gemm_nt_contiguous_offsets((a, sa), (b, sb), d, bad)
