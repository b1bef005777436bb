"""The size limits (the kernels' 32-bit indices) and the output-overlap rule on the newer families' ops:
FP8 1D1D, INT8, TF32 and weight-only. Both are checked before the device path is chosen, so the CPU
raises what a GPU call would. Sizes past the limits use meta tensors (the size rules come before the
device rule), so nothing large is allocated."""

import pytest
import torch

import deepgemm
from deepgemm.ops.common.validation import MAX_KERNEL_DIM
from deepgemm.ops.tf32.gemm import round_to_tf32_as_read
from deepgemm.quant.wonly import num_k_groups, packed_shape

FP8 = torch.float8_e4m3fn
BF16 = torch.bfloat16
F32 = torch.float32
LIMIT = rf"must be at most 2\^31 - 1 = {MAX_KERNEL_DIM}"
D_OVERLAPS = r"^d must not overlap"


def meta(*shape: int, dtype: torch.dtype = F32) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device="meta")


def alias(base: torch.Tensor, dtype: torch.dtype, *shape: int) -> torch.Tensor:
    """A contiguous ``dtype`` tensor of ``shape`` over the first bytes of ``base``'s storage."""
    out = torch.empty(0, dtype=dtype).set_(base.untyped_storage(), 0, shape)
    assert out.nbytes <= base.untyped_storage().nbytes()
    return out


# --- d overlapping a: each op, built so that everything else keeps every rule -------------------------------


def _fp8(*shape: int) -> torch.Tensor:
    return torch.randn(*shape).clamp(-1, 1).to(FP8)


def _fp8_1d1d_dense(use_alias: bool) -> None:
    a = (_fp8(16, 128), torch.ones(16, 1))
    b = (_fp8(16, 128), torch.ones(16, 1))
    d = alias(a[0], F32, 16, 16) if use_alias else torch.empty(16, 16)
    deepgemm.fp8_gemm_nt_1d1d(a, b, d)


def _fp8_1d1d_k_grouped(use_alias: bool) -> None:
    a = (_fp8(16, 128), torch.ones(16, 1))
    b = (_fp8(16, 128), torch.ones(16, 1))
    d = alias(a[0], F32, 1, 16, 16) if use_alias else torch.empty(1, 16, 16)
    deepgemm.k_grouped_fp8_gemm_nt_1d1d(a, b, d, torch.tensor([128], dtype=torch.int32))


def _int8(*shape: int) -> torch.Tensor:
    return torch.randint(-8, 8, shape, dtype=torch.int8)


def _int8_dense(use_alias: bool) -> None:
    a = (_int8(16, 64), torch.ones(16))
    d = alias(a[0], BF16, 16, 16) if use_alias else torch.empty(16, 16, dtype=BF16)
    deepgemm.int8_gemm_nt(a, (_int8(16, 64), torch.ones(16)), d)


def _int8_contiguous(use_alias: bool) -> None:
    a = (_int8(128, 64), torch.ones(128))
    d = alias(a[0], BF16, 128, 16) if use_alias else torch.empty(128, 16, dtype=BF16)
    m_indices = torch.zeros(128, dtype=torch.int32)
    deepgemm.m_grouped_int8_gemm_nt_contiguous(a, (_int8(1, 16, 64), torch.ones(1, 16)), d, m_indices)


def _int8_contiguous_offsets(use_alias: bool) -> None:
    a = (_int8(128, 64), torch.ones(128))
    d = alias(a[0], BF16, 128, 16) if use_alias else torch.empty(128, 16, dtype=BF16)
    group_ends = torch.tensor([128], dtype=torch.int32)
    deepgemm.m_grouped_int8_gemm_nt_contiguous_offsets(a, (_int8(1, 16, 64), torch.ones(1, 16)), d,
                                                       group_ends)


def _int8_masked(use_alias: bool) -> None:
    a = (_int8(1, 16, 64), torch.ones(1, 16))
    d = alias(a[0], BF16, 1, 16, 16) if use_alias else torch.empty(1, 16, 16, dtype=BF16)
    masked_m = torch.tensor([16], dtype=torch.int32)
    deepgemm.m_grouped_int8_gemm_nt_masked(a, (_int8(1, 16, 64), torch.ones(1, 16)), d, masked_m, 16)


def _tf32(op_name: str):
    def call(use_alias: bool) -> None:
        a, b = torch.randn(16, 16), torch.randn(16, 16)
        d = alias(a, F32, 16, 16) if use_alias else torch.empty(16, 16)
        getattr(deepgemm, op_name)(a, b, d)

    return call


def _wonly_dense(bits: int):
    def call(use_alias: bool) -> None:
        a = torch.randn(16, 128, dtype=BF16)
        b = getattr(deepgemm, f"quantize_w{bits}a16")(torch.randn(16, 128))
        d = alias(a, BF16, 16, 16) if use_alias else torch.empty(16, 16, dtype=BF16)
        getattr(deepgemm, f"w{bits}a16_gemm_nt")(a, b, d)

    return call


def _wonly_masked(bits: int):
    def call(use_alias: bool) -> None:
        a = torch.randn(1, 16, 128, dtype=BF16)
        b = getattr(deepgemm, f"quantize_w{bits}a16")(torch.randn(1, 16, 128))
        d = alias(a, BF16, 1, 16, 16) if use_alias else torch.empty(1, 16, 16, dtype=BF16)
        masked_m = torch.tensor([16], dtype=torch.int32)
        getattr(deepgemm, f"m_grouped_w{bits}a16_gemm_nt_masked")(a, b, d, masked_m, 16)

    return call


OVERLAP_CASES = {
    "fp8_gemm_nt_1d1d": _fp8_1d1d_dense,
    "k_grouped_fp8_gemm_nt_1d1d": _fp8_1d1d_k_grouped,
    "int8_gemm_nt": _int8_dense,
    "m_grouped_int8_gemm_nt_contiguous": _int8_contiguous,
    "m_grouped_int8_gemm_nt_contiguous_offsets": _int8_contiguous_offsets,
    "m_grouped_int8_gemm_nt_masked": _int8_masked,
    **{name: _tf32(name) for name in ("tf32_gemm_nt", "tf32_gemm_nn", "tf32_gemm_tn", "tf32_gemm_tt",
                                      "tf32x3_gemm_nt")},
    "w8a16_gemm_nt": _wonly_dense(8),
    "w4a16_gemm_nt": _wonly_dense(4),
    "m_grouped_w8a16_gemm_nt_masked": _wonly_masked(8),
    "m_grouped_w4a16_gemm_nt_masked": _wonly_masked(4),
}


@pytest.mark.parametrize("op", sorted(OVERLAP_CASES))
def test_d_overlapping_a_is_refused(op: str) -> None:
    OVERLAP_CASES[op](False)  # the same call with a separate d keeps every rule
    with pytest.raises(ValueError, match=D_OVERLAPS + r" (a|A)\b"):
        OVERLAP_CASES[op](True)


def test_tf32_c_may_be_d_but_not_part_of_it() -> None:
    a, b = torch.randn(16, 16), torch.randn(16, 16)
    d = torch.randn(16, 16)
    expected = (round_to_tf32_as_read(a).double() @ round_to_tf32_as_read(b).double().T + d.double()).float()
    deepgemm.tf32_gemm_nt(a, b, d, d)
    torch.testing.assert_close(d, expected, rtol=0, atol=0)
    buffer = torch.randn(32, 16)
    with pytest.raises(ValueError, match=D_OVERLAPS + " c"):
        deepgemm.tf32_gemm_nt(a, b, buffer[:16], buffer[8:24])


# --- sizes past 32 bits ------------------------------------------------------------------------------------


def test_fp8_1d1d_refuses_k_past_31_bits() -> None:
    k = 2**31
    a = (meta(16, k, dtype=FP8), meta(16, k // 128))
    b = (meta(16, k, dtype=FP8), meta(16, k // 128))
    with pytest.raises(ValueError, match=rf"^K {LIMIT}"):
        deepgemm.fp8_gemm_nt_1d1d(a, b, meta(16, 16))


def test_k_grouped_fp8_1d1d_refuses_g_times_m_past_31_bits() -> None:
    groups, m = 2**12, 2**19  # d stored as one [G * M, N] matrix of 2^31 rows
    a = (meta(m, 128, dtype=FP8), meta(m, 1))
    b = (meta(16, 128, dtype=FP8), meta(16, 1))
    ks = meta(groups, dtype=torch.int32)
    with pytest.raises(ValueError, match=rf"^G \* M {LIMIT}"):
        deepgemm.k_grouped_fp8_gemm_nt_1d1d(a, b, meta(groups, m, 16), ks)


def test_int8_refuses_m_past_31_bits() -> None:
    m = 2**31
    with pytest.raises(ValueError, match=rf"^M {LIMIT}"):
        deepgemm.int8_gemm_nt(meta(m, 64, dtype=torch.int8), meta(16, 64, dtype=torch.int8),
                              meta(m, 16, dtype=torch.int32))


def test_grouped_int8_refuses_g_times_n_past_31_bits() -> None:
    groups, n = 2**12, 2**19  # B read as one [G * N, K] matrix of 2^31 rows
    with pytest.raises(ValueError, match=rf"^G \* N {LIMIT}"):
        deepgemm.m_grouped_int8_gemm_nt_contiguous(
            meta(128, 64, dtype=torch.int8), meta(groups, n, 64, dtype=torch.int8),
            meta(128, n, dtype=torch.int32), meta(128, dtype=torch.int32))


@pytest.mark.parametrize("op", ["tf32_gemm_nt", "tf32x3_gemm_nt"])
def test_tf32_refuses_n_past_31_bits(op: str) -> None:
    n = 2**31
    with pytest.raises(ValueError, match=rf"^N {LIMIT}"):
        getattr(deepgemm, op)(meta(16, 16), meta(n, 16), meta(16, n))


def test_tf32_tile_count_is_limited() -> None:
    m, n = MAX_KERNEL_DIM, 2**20
    with pytest.raises(ValueError, match=r"^M x N = .* is too large: .* output tiles of 64 x 16"):
        deepgemm.tf32_gemm_nt(meta(m, 16), meta(n, 16), meta(m, n))


def _wonly_b(lead: tuple[int, ...], n: int, k: int, bits: int, group_size: int | None) -> tuple:
    packed = meta(*lead, *packed_shape(n, k, bits), dtype=torch.int8 if bits == 8 else torch.uint8)
    return packed, meta(*lead, num_k_groups(k, group_size), n, dtype=BF16)


def test_wonly_refuses_m_past_31_bits() -> None:
    m = 2**31
    with pytest.raises(ValueError, match=rf"^M {LIMIT}"):
        deepgemm.w8a16_gemm_nt(meta(m, 128, dtype=BF16), _wonly_b((), 16, 128, 8, None),
                               meta(m, 16, dtype=BF16))


def test_masked_wonly_refuses_g_times_n_past_31_bits() -> None:
    groups, n = 2**12, 2**19
    with pytest.raises(ValueError, match=rf"^G \* N {LIMIT}"):
        deepgemm.m_grouped_w4a16_gemm_nt_masked(
            meta(groups, 16, 128, dtype=BF16), _wonly_b((groups,), n, 128, 4, 128),
            meta(groups, 16, n, dtype=BF16), meta(groups, dtype=torch.int32), 16)
