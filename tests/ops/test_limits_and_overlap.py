"""Size limits (the kernels' 32-bit indices), outputs overlapping inputs, and the slow-CPU-path warning.

Sizes past the limits are tried with meta tensors: the size rules are checked before the device, so
no huge allocation is needed and the error is the one a GPU call would raise.
"""

import warnings

import pytest
import torch

import deepgemm
from deepgemm.ops.common import validation
from deepgemm.ops.common.validation import MAX_KERNEL_DIM, SlowCpuPathWarning, may_overlap

FP8 = torch.float8_e4m3fn
BF16 = torch.bfloat16
BIG_M = 2**32 + 128  # passed validation before, though the launch passes M as 32 bits


def meta(*shape: int, dtype: torch.dtype = FP8) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device="meta")


def fp8_operands(m: int, n: int, k: int, groups: int | None = None, device: str = "meta"):
    kb = (k + 127) // 128
    lead = () if groups is None else (groups,)
    a = (torch.empty(m, k, dtype=FP8, device=device), torch.empty(m, kb, device=device))
    b = (torch.empty(*lead, n, k, dtype=FP8, device=device),
         torch.empty(*lead, (n + 127) // 128, kb, device=device))
    return a, b


@pytest.mark.parametrize("m, n, k, name", [(BIG_M, 128, 128, "M"), (2**31, 128, 128, "M"),
                                           (128, 2**31, 128, "N"), (64, 128, 2**31, "K")])
def test_fp8_dense_refuses_dims_past_31_bits(m: int, n: int, k: int, name: str) -> None:
    a, b = fp8_operands(m, n, k)
    with pytest.raises(ValueError, match=rf"^{name} must be at most 2\^31 - 1 = {MAX_KERNEL_DIM}"):
        deepgemm.fp8_gemm_nt(a, b, meta(m, n, dtype=BF16))


def test_largest_dims_pass_the_size_rules() -> None:
    # M = 2^31 - 1 with a small N: within the limits, so the next rule (the device) is what refuses it.
    m = MAX_KERNEL_DIM
    a, b = fp8_operands(m, 128, 128)
    with pytest.raises(ValueError, match="CPU or CUDA device"):
        deepgemm.fp8_gemm_nt(a, b, meta(m, 128, dtype=BF16))


def test_tile_count_is_limited() -> None:
    m, n = MAX_KERNEL_DIM, 2**20  # 2^25 x 2^16 tiles of 64 x 16
    a, b = fp8_operands(m, n, 128)
    with pytest.raises(ValueError, match=r"M x N = .* is too large: .* output tiles of 64 x 16"):
        deepgemm.fp8_gemm_nt(a, b, meta(m, n, dtype=BF16))


@pytest.mark.parametrize("op", ["contiguous", "offsets"])
def test_grouped_fp8_refuses_g_times_n_past_31_bits(op: str) -> None:
    groups, n = 2**12, 2**19  # B read as one [G * N, K] matrix of 2^31 rows
    a, b = fp8_operands(256, n, 128, groups)
    d = meta(256, n, dtype=BF16)
    index = meta(256 if op == "contiguous" else groups, dtype=torch.int32)
    fn = deepgemm.m_grouped_fp8_gemm_nt_contiguous if op == "contiguous" else \
        deepgemm.m_grouped_fp8_gemm_nt_contiguous_offsets
    with pytest.raises(ValueError, match=r"^G \* N must be at most 2\^31 - 1"):
        fn(a, b, d, index)


def test_masked_fp8_counts_tiles_over_all_groups() -> None:
    groups, max_m, n = 2**10, 2**21, 2**14  # each dim fine; 2^10 * 2^15 * 2^10 = 2^35 tiles
    kb = 1
    a = (meta(groups, max_m, 128), meta(groups, max_m, kb, dtype=torch.float32))
    b = (meta(groups, n, 128), meta(groups, n // 128, kb, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"G \* max_m x N = .* is too large"):
        deepgemm.m_grouped_fp8_gemm_nt_masked(a, b, meta(groups, max_m, n, dtype=BF16),
                                              meta(groups, dtype=torch.int32), 64)


@pytest.mark.parametrize("layout", ["nt", "nn", "tn", "tt"])
def test_bf16_dense_refuses_k_past_31_bits(layout: str) -> None:
    m, n, k = 64, 64, 2**31
    a = meta(m, k, dtype=BF16) if layout[0] == "n" else meta(k, m, dtype=BF16)
    b = meta(n, k, dtype=BF16) if layout[1] == "t" else meta(k, n, dtype=BF16)
    with pytest.raises(ValueError, match=r"^K must be at most 2\^31 - 1"):
        getattr(deepgemm, f"bf16_gemm_{layout}")(a, b, meta(m, n, dtype=BF16))


def test_bf16_grouped_refuses_m_sum_past_31_bits() -> None:
    m = 2**31
    with pytest.raises(ValueError, match=r"^M_sum must be at most 2\^31 - 1"):
        deepgemm.m_grouped_bf16_gemm_nt_contiguous(meta(m, 64, dtype=BF16), meta(2, 64, 64, dtype=BF16),
                                                   meta(m, 64, dtype=BF16), meta(m, dtype=torch.int32))


def test_tma_stride_limit() -> None:
    base = torch.empty(16, dtype=BF16)
    # A 2-row view whose row stride is 2^40 bytes, made on the meta device (no memory behind it).
    d = torch.empty(0, dtype=BF16, device="meta").as_strided((2, 8), (2**39, 1))
    with pytest.raises(ValueError, match=r"d.stride\(0\) must be below 2\^40 bytes"):
        validation.check_tma_operand("d", d)
    validation.check_tma_operand("d", base.view(2, 8))


# --- overlap ----------------------------------------------------------------------------------------------


def test_may_overlap_is_exact_for_column_slices_of_one_buffer() -> None:
    buf = torch.zeros(8, 64, dtype=BF16)
    assert not may_overlap(buf[:, :32], buf[:, 32:])
    assert may_overlap(buf[:, :40], buf[:, 32:])
    assert may_overlap(buf[:, 16:48], buf)
    assert not may_overlap(buf[:4], buf[4:])
    assert may_overlap(buf[3:5], buf[4:])
    assert not may_overlap(buf[:, :16], buf[:, 16:32].reshape(-1)[:16])  # first row of the slice only
    # Rows of different strides whose byte ranges intersect: conservatively an overlap.
    assert may_overlap(buf[:, :8], buf.view(-1)[8:].view(-1, 8)[:8])
    flat = torch.zeros(256, dtype=torch.int32)
    assert may_overlap(flat[:10], flat[9:12])
    assert not may_overlap(flat[:10], flat[10:12])
    assert not may_overlap(torch.zeros(0), flat)


def test_fp8_d_overlapping_an_input_is_refused() -> None:
    m, n, k = 4, 64, 128
    a, b = fp8_operands(m, n, k, device="cpu")
    # d as bytes of the buffer A lives in.
    storage = torch.zeros(m * k * 2, dtype=torch.uint8)
    A = storage[: m * k].view(FP8).view(m, k)
    d = storage.view(BF16)[: m * n].view(m, n)
    with pytest.raises(ValueError, match=r"d must not overlap A \(a\[0\]\) in memory"):
        deepgemm.fp8_gemm_nt((A, a[1]), b, d)
    out = torch.zeros(m, n, dtype=BF16)
    sfb = out.view(-1)[-2:].view(torch.float32).view(1, 1)  # the last 4 bytes of d
    with pytest.raises(ValueError, match=r"d must not overlap sfb \(b\[1\]\)"):
        deepgemm.fp8_gemm_nt(a, (b[0], sfb), out)


def test_fp8_d_beside_its_input_in_one_buffer_runs() -> None:
    m, n, k = 4, 64, 128
    a, b = fp8_operands(m, n, k, device="cpu")
    torch.manual_seed(0)
    buf = torch.randn(m, n + k // 2).to(BF16)
    d = buf[:, :n]
    # A's bytes are the other columns of the same rows.
    A = buf[:, n:].view(torch.uint8).view(FP8)
    A.copy_(torch.randint(-3, 4, (m, k)).to(FP8))
    A_copy = A.clone()
    a[1].fill_(1.0)
    b[1].fill_(1.0)
    b[0].copy_(torch.ones(n, k).to(FP8))
    deepgemm.fp8_gemm_nt((A, a[1]), b, d)
    expected = A_copy.float().sum(1, keepdim=True).expand(m, n)
    torch.testing.assert_close(d.float(), expected.to(BF16).float())


@pytest.mark.parametrize("op", ["contiguous", "masked"])
def test_grouped_fp8_d_overlapping_index_is_refused(op: str) -> None:
    m, n, k, groups = 128, 16, 128, 1
    a, b = fp8_operands(m, n, k, groups, device="cpu")
    storage = torch.zeros(m * n * 4 + 64, dtype=torch.uint8)
    if op == "contiguous":
        d = storage.view(torch.float32)[: m * n].view(m, n)
        index = storage.view(torch.int32)[:m]
        with pytest.raises(ValueError, match=r"d must not overlap m_indices"):
            deepgemm.m_grouped_fp8_gemm_nt_contiguous(a, b, d, index)
    else:
        A, sfa = a
        d = storage.view(torch.float32)[: m * n].view(1, m, n)
        masked = storage.view(torch.int32)[m * n - 4: m * n - 3]
        with pytest.raises(ValueError, match=r"d must not overlap masked_m"):
            deepgemm.m_grouped_fp8_gemm_nt_masked((A[None], sfa[None]), b, d, masked, 64)


def test_bf16_c_may_be_d_but_not_part_of_it() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(8, 64).to(BF16), torch.randn(16, 64).to(BF16)
    d = torch.randn(8, 16).to(BF16)
    expected = (d.float() + a.float() @ b.float().T).to(BF16)
    deepgemm.bf16_gemm_nt(a, b, d, d)
    torch.testing.assert_close(d, expected)
    buf = torch.zeros(9, 16, dtype=BF16)
    with pytest.raises(ValueError, match=r"d must not overlap c in memory"):
        deepgemm.bf16_gemm_nt(a, b, buf[:8], buf[1:])
    with pytest.raises(ValueError, match=r"d must not overlap a in memory"):
        deepgemm.bf16_gemm_nn(a, torch.zeros(64, 8, dtype=BF16), a[:, :8])


def test_bf16_grouped_d_overlapping_a_is_refused() -> None:
    a = torch.zeros(1, 64, 64, dtype=BF16)
    with pytest.raises(ValueError, match=r"d must not overlap a"):
        deepgemm.m_grouped_bf16_gemm_nt_masked(a, torch.zeros(1, 64, 64, dtype=BF16), a,
                                               torch.ones(1, dtype=torch.int32), 8)


def test_matmul_out_overlapping_an_input_is_refused() -> None:
    a = torch.zeros(16, 16, dtype=BF16)
    with pytest.raises(ValueError, match=r"matmul: out must not overlap a in memory"):
        deepgemm.matmul(a, torch.zeros(16, 16, dtype=BF16), out=a)


# --- the slow CPU path warns ---------------------------------------------------------------------------


def test_huge_cpu_work_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "SLOW_CPU_FLOPS", 2 * 4 * 16 * 128)
    a, b = fp8_operands(4, 16, 128, device="cpu")
    for t in (*a, *b):
        t.zero_() if t.dtype == FP8 else t.fill_(1.0)
    with pytest.warns(SlowCpuPathWarning, match=r"fp8_gemm_nt: the CPU path will do .* \(M=4, N=16, K=128\)"):
        deepgemm.fp8_gemm_nt(a, b, torch.empty(4, 16, dtype=BF16))
    x = torch.zeros(16, 128, dtype=BF16)
    with pytest.warns(SlowCpuPathWarning, match="bf16_gemm_nt"):
        deepgemm.bf16_gemm_nt(x, x, torch.empty(16, 16, dtype=BF16))
    with pytest.warns(SlowCpuPathWarning, match="m_grouped_bf16_gemm_nt_masked"):
        deepgemm.m_grouped_bf16_gemm_nt_masked(x[None], x[None], torch.empty(1, 16, 16, dtype=BF16),
                                               torch.ones(1, dtype=torch.int32), 8)


def test_ordinary_cpu_work_does_not_warn() -> None:
    x = torch.zeros(16, 128, dtype=BF16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deepgemm.bf16_gemm_nt(x, x, torch.empty(16, 16, dtype=BF16))
    # K = 2^31 - 16, the largest the kernels take, with M = N = 1024: 2^52 FLOPs, a warning if it ran.
    assert 2 * 1024 * 1024 * (2**31 - 16) >= validation.SLOW_CPU_FLOPS
