"""The MoE grouped FP8 GEMMs on CPU tensors: accuracy, untouched padding rows, degenerate sizes, the index
checks, and the hand-off to the GPU launch (stubbed)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import deepgemm
from deepgemm.ops import (
    get_m_alignment_for_contiguous_layout,
    m_grouped_fp8_gemm_nt_contiguous,
    m_grouped_fp8_gemm_nt_contiguous_offsets,
    m_grouped_fp8_gemm_nt_masked,
)
from deepgemm.ops.common import group_indices, settings
from deepgemm.ops.fp8 import grouped as grouped_fp8_gemm
from deepgemm.quant import get_mn_major_tma_aligned_tensor, per_block_cast_to_fp8, per_token_cast_to_fp8
from deepgemm.testing import calc_diff, ref_m_grouped_fp8_gemm_nt_contiguous, ref_m_grouped_fp8_gemm_nt_masked

SENTINEL = -3.5  # fills d before a call: rows the op must not write keep it, bit for bit


def contiguous_layout(counts: list[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(m_indices, group_ends, M_sum)`` for per-expert row counts, built as in the README."""
    counts = torch.tensor(counts, dtype=torch.int64)
    aligned = (counts + 127) // 128 * 128  # each expert's rows padded to a multiple of 128
    starts = aligned.cumsum(0) - aligned
    group_ends = (starts + counts).int()
    m_sum = int(aligned.sum())
    expert = torch.repeat_interleave(torch.arange(len(counts)), aligned)  # the segment of each row
    m_indices = torch.where(torch.arange(m_sum) < group_ends[expert], expert, -1).int()
    return m_indices, group_ends, m_sum


def make_contiguous(counts: list[int], n: int, k: int, seed: int = 0):
    m_indices, group_ends, m_sum = contiguous_layout(counts)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m_sum, k, generator=gen, dtype=torch.bfloat16)
    w = torch.randn(len(counts), n, k, generator=gen, dtype=torch.bfloat16)
    return x, w, per_token_cast_to_fp8(x), per_block_cast_to_fp8(w), m_indices, group_ends


def make_masked(num_groups: int, max_m: int, n: int, k: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_groups, max_m, k, generator=gen, dtype=torch.bfloat16)
    w = torch.randn(num_groups, n, k, generator=gen, dtype=torch.bfloat16)
    return x, w, per_token_cast_to_fp8(x), per_block_cast_to_fp8(w)


def sentinel(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return torch.full(shape, SENTINEL, dtype=dtype)


def assert_untouched(rows: torch.Tensor) -> None:
    assert torch.equal(rows, torch.full_like(rows, SENTINEL))


def test_alignment_is_128_and_exported() -> None:
    assert get_m_alignment_for_contiguous_layout() == 128 == group_indices.M_ALIGNMENT_CONTIGUOUS
    for name in ("get_m_alignment_for_contiguous_layout", "m_grouped_fp8_gemm_nt_contiguous",
                 "m_grouped_fp8_gemm_nt_contiguous_offsets", "m_grouped_fp8_gemm_nt_masked"):
        assert name in deepgemm.__all__ and name in deepgemm.ops.__all__


def test_readme_layout_builder() -> None:
    m_indices, group_ends, m_sum = contiguous_layout([100, 0, 250, 7])
    assert m_sum == 128 + 256 + 128
    assert group_ends.tolist() == [100, 128, 378, 391]
    expected = [0] * 100 + [-1] * 28 + [2] * 250 + [-1] * 6 + [3] * 7 + [-1] * 121
    assert m_indices.dtype == torch.int32 and m_indices.tolist() == expected


# --- contiguous layouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("counts, n, k", [([100, 0, 200], 136, 208), ([128, 256], 256, 512), ([1], 8, 16),
                                          ([0, 5, 130, 64], 64, 384)])
def test_contiguous_matches_reference(counts: list[int], n: int, k: int) -> None:
    _, _, a, b, m_indices, group_ends = make_contiguous(counts, n, k)
    valid = m_indices >= 0
    expected = ref_m_grouped_fp8_gemm_nt_contiguous(a, b, m_indices)
    d = sentinel(len(m_indices), n)
    assert m_grouped_fp8_gemm_nt_contiguous(a, b, d, m_indices) is d
    assert calc_diff(d[valid], expected[valid]) < 1e-5
    assert_untouched(d[~valid])

    d_offsets = sentinel(len(m_indices), n)
    assert m_grouped_fp8_gemm_nt_contiguous_offsets(a, b, d_offsets, group_ends) is d_offsets
    assert torch.equal(d_offsets, d)


def test_contiguous_close_to_unquantized_product() -> None:
    x, w, a, b, m_indices, _ = make_contiguous([200, 60, 128], 256, 512, seed=1)
    d = sentinel(len(m_indices), 256)
    m_grouped_fp8_gemm_nt_contiguous(a, b, d, m_indices)
    for g in range(len(w)):
        rows = m_indices == g
        assert calc_diff(d[rows], x[rows].double() @ w[g].double().T) < 1e-3


def test_contiguous_fp32_output_is_the_reference() -> None:
    _, _, a, b, m_indices, group_ends = make_contiguous([3, 129], 20, 144, seed=2)  # N % 4 suffices for FP32
    valid = m_indices >= 0
    expected = ref_m_grouped_fp8_gemm_nt_contiguous(a, b, m_indices)
    for op, index in ((m_grouped_fp8_gemm_nt_contiguous, m_indices),
                      (m_grouped_fp8_gemm_nt_contiguous_offsets, group_ends)):
        d = sentinel(len(m_indices), 20, dtype=torch.float32)
        op(a, b, d, index)
        assert torch.equal(d[valid], expected[valid])
        assert_untouched(d[~valid])


def test_contiguous_into_views_of_larger_buffers() -> None:
    _, _, a, b, m_indices, group_ends = make_contiguous([50, 100], 64, 256, seed=3)
    m_sum = len(m_indices)
    expected = sentinel(m_sum, 64)
    m_grouped_fp8_gemm_nt_contiguous(a, b, expected, m_indices)

    d_buffer = sentinel(m_sum, 64 + 16)
    A_view = torch.zeros(m_sum, 256 + 32, dtype=torch.float8_e4m3fn)[:, 16 : 16 + 256]
    A_view.copy_(a[0])
    sfa = get_mn_major_tma_aligned_tensor(a[1])
    m_grouped_fp8_gemm_nt_contiguous_offsets((A_view, sfa), b, d_buffer[:, :64], group_ends)
    assert torch.equal(d_buffer[:, :64], expected)
    assert_untouched(d_buffer[:, 64:])


def test_padding_blocks_and_a_trailing_partial_block() -> None:
    # Whole padding blocks between experts and an M_sum that is not a multiple of 128.
    m_indices = torch.tensor([-1] * 128 + [1] * 10 + [-1] * 118 + [0] * 40, dtype=torch.int32)
    a = per_token_cast_to_fp8(torch.randn(len(m_indices), 128))
    b = per_block_cast_to_fp8(torch.randn(2, 32, 128))
    d = sentinel(len(m_indices), 32)
    m_grouped_fp8_gemm_nt_contiguous(a, b, d, m_indices)
    valid = m_indices >= 0
    assert calc_diff(d[valid], ref_m_grouped_fp8_gemm_nt_contiguous(a, b, m_indices)[valid]) < 1e-5
    assert_untouched(d[~valid])
    group_ends = torch.tensor([256 + 40, 128 + 10], dtype=torch.int32)  # expert 0 after expert 1: refused
    with pytest.raises(ValueError, match=r"group_ends\[1\]"):
        m_grouped_fp8_gemm_nt_contiguous_offsets(a, b, sentinel(len(m_indices), 32), group_ends)


def test_contiguous_zero_k_zero_fills_the_expert_rows_only() -> None:
    _, _, a, b, m_indices, group_ends = make_contiguous([3, 0, 130], 16, 0)
    valid = m_indices >= 0
    for op, index in ((m_grouped_fp8_gemm_nt_contiguous, m_indices),
                      (m_grouped_fp8_gemm_nt_contiguous_offsets, group_ends)):
        d = sentinel(len(m_indices), 16)
        assert op(a, b, d, index) is d
        assert d[valid].eq(0).all()
        assert_untouched(d[~valid])


@pytest.mark.parametrize("m_sum, n, num_groups", [(0, 16, 2), (128, 0, 2), (128, 16, 0)])
def test_contiguous_empty_work_leaves_d_untouched(m_sum: int, n: int, num_groups: int) -> None:
    a = per_token_cast_to_fp8(torch.randn(m_sum, 128))
    b = per_block_cast_to_fp8(torch.randn(num_groups, n, 128))
    m_indices = torch.full((m_sum,), -1, dtype=torch.int32)
    group_ends = torch.zeros(num_groups, dtype=torch.int32)
    for op, index in ((m_grouped_fp8_gemm_nt_contiguous, m_indices),
                      (m_grouped_fp8_gemm_nt_contiguous_offsets, group_ends)):
        d = sentinel(m_sum, n)
        assert op(a, b, d, index) is d
        assert_untouched(d)


# --- masked layout --------------------------------------------------------------------------------------


@pytest.mark.parametrize("masked, max_m, n, k", [([0, 64, 17], 64, 136, 208), ([5], 8, 8, 16),
                                                 ([128, 100], 128, 256, 512)])
def test_masked_matches_reference(masked: list[int], max_m: int, n: int, k: int) -> None:
    _, _, a, b = make_masked(len(masked), max_m, n, k)
    masked_m = torch.tensor(masked, dtype=torch.int32)
    expected = ref_m_grouped_fp8_gemm_nt_masked(a, b, masked_m)
    d = sentinel(len(masked), max_m, n)
    assert m_grouped_fp8_gemm_nt_masked(a, b, d, masked_m, expected_m=max(masked) or 1) is d
    for g, m in enumerate(masked):
        if m:
            assert calc_diff(d[g, :m], expected[g, :m]) < 1e-5
        assert_untouched(d[g, m:])


def test_masked_close_to_unquantized_product() -> None:
    x, w, a, b = make_masked(2, 128, 256, 512, seed=1)
    masked_m = torch.tensor([128, 90], dtype=torch.int32)
    d = sentinel(2, 128, 256)
    m_grouped_fp8_gemm_nt_masked(a, b, d, masked_m, 100)
    for g, m in enumerate(masked_m.tolist()):
        assert calc_diff(d[g, :m], x[g, :m].double() @ w[g].double().T) < 1e-3


def test_masked_fp32_output_into_a_view() -> None:
    _, _, a, b = make_masked(3, 32, 20, 144, seed=2)
    masked_m = torch.tensor([32, 0, 7], dtype=torch.int32)
    expected = ref_m_grouped_fp8_gemm_nt_masked(a, b, masked_m)
    d_buffer = sentinel(3, 32, 24, dtype=torch.float32)
    d = d_buffer[..., :20]  # row stride 24 FP32 elements: a multiple of 16 bytes
    m_grouped_fp8_gemm_nt_masked((a[0], get_mn_major_tma_aligned_tensor(a[1])), b, d, masked_m, 16)
    for g, m in enumerate(masked_m.tolist()):
        assert torch.equal(d[g, :m], expected[g, :m])
        assert_untouched(d[g, m:])
    assert_untouched(d_buffer[..., 20:])


def test_masked_zero_k_zero_fills_the_valid_rows_only() -> None:
    _, _, a, b = make_masked(3, 16, 8, 0)
    masked_m = torch.tensor([16, 0, 5], dtype=torch.int32)
    d = sentinel(3, 16, 8)
    assert m_grouped_fp8_gemm_nt_masked(a, b, d, masked_m, 8) is d
    for g, m in enumerate(masked_m.tolist()):
        assert d[g, :m].eq(0).all()
        assert_untouched(d[g, m:])


@pytest.mark.parametrize("num_groups, max_m, n", [(0, 16, 8), (2, 0, 8), (2, 16, 0)])
def test_masked_empty_work_leaves_d_untouched(num_groups: int, max_m: int, n: int) -> None:
    _, _, a, b = make_masked(num_groups, max_m, n, 128)
    d = sentinel(num_groups, max_m, n)
    assert m_grouped_fp8_gemm_nt_masked(a, b, d, torch.zeros(num_groups, dtype=torch.int32), 1) is d
    assert_untouched(d)


# --- index values: always checked on the CPU, and under DG_DEBUG_CHECK_INDICES --------------------------


def bad_m_indices():
    """(m_indices over 256 rows, the message); 2 experts."""
    def rows(*runs: tuple[int, int]) -> torch.Tensor:
        return torch.tensor([value for value, count in runs for _ in range(count)], dtype=torch.int32)

    yield (rows((0, 100), (-1, 28), (2, 128)),
           r"m_indices\[128\] must be -1 \(padding\) or an expert in \[0, G=2\), found 2")
    yield rows((0, 100), (-1, 27), (-2, 1), (1, 128)), r"m_indices\[127\] must be -1 .*found -2"
    yield (rows((0, 100), (-1, 28), (1, 60), (0, 68)),
           r"m_indices\[188\] = 0 but its 128-row block 1 \(rows 128..255\) starts with expert 1: "
           r"each aligned block holds rows of one expert")
    yield (rows((0, 50), (-1, 10), (0, 68), (1, 128)),
           r"m_indices\[60\] = 0 follows a padding row \(-1\) in its 128-row block 0 \(rows 0..127\)")
    yield (rows((0, 128), (-1, 1), (1, 127)),
           r"m_indices\[129\] = 1 follows a padding row \(-1\) in its 128-row block 1")


@pytest.mark.parametrize("knob", ["0", "1"])
@pytest.mark.parametrize("m_indices, pattern", list(bad_m_indices()))
def test_bad_m_indices_raise(monkeypatch, knob: str, m_indices: torch.Tensor, pattern: str) -> None:
    monkeypatch.setenv("DG_DEBUG_CHECK_INDICES", knob)
    _, _, a, b, _, _ = make_contiguous([256, 0], 16, 128)
    d = sentinel(256, 16)
    with pytest.raises(ValueError, match=pattern):
        m_grouped_fp8_gemm_nt_contiguous(a, b, d, m_indices)
    assert_untouched(d)


@pytest.mark.parametrize(
    "ends, pattern",
    [
        ([-1, 128], r"group_ends\[0\] must equal 0 \(an empty expert\) or be >= 0 .*found -1"),
        ([100, 120], r"group_ends\[1\] must equal group_ends\[0\] = 100 \(an empty expert\) or be >= 128 "
                     r"\(that rounded up to a multiple of 128\), found 120"),
        ([200, 100], r"group_ends\[1\] must equal group_ends\[0\] = 200 .* or be >= 256"),
        ([128, 257], r"group_ends\[1\] must be <= M_sum = 256, found 257"),
    ],
)
@pytest.mark.parametrize("knob", ["0", "1"])
def test_bad_group_ends_raise(monkeypatch, knob: str, ends: list[int], pattern: str) -> None:
    monkeypatch.setenv("DG_DEBUG_CHECK_INDICES", knob)
    _, _, a, b, _, _ = make_contiguous([256, 0], 16, 128)
    d = sentinel(256, 16)
    with pytest.raises(ValueError, match=pattern):
        m_grouped_fp8_gemm_nt_contiguous_offsets(a, b, d, torch.tensor(ends, dtype=torch.int32))
    assert_untouched(d)


@pytest.mark.parametrize("bad_m", [-1, 17])
@pytest.mark.parametrize("knob", ["0", "1"])
def test_bad_masked_m_raises(monkeypatch, knob: str, bad_m: int) -> None:
    monkeypatch.setenv("DG_DEBUG_CHECK_INDICES", knob)
    _, _, a, b = make_masked(2, 16, 8, 128)
    d = sentinel(2, 16, 8)
    with pytest.raises(ValueError, match=rf"masked_m\[1\] must be in \[0, max_m=16\], found {bad_m}"):
        m_grouped_fp8_gemm_nt_masked(a, b, d, torch.tensor([3, bad_m], dtype=torch.int32), 8)
    assert_untouched(d)


def test_k_zero_still_checks_index_values() -> None:
    _, _, a, b, _, _ = make_contiguous([128], 16, 0)
    with pytest.raises(ValueError, match=r"m_indices\[0\] must be -1"):
        m_grouped_fp8_gemm_nt_contiguous(a, b, sentinel(128, 16), torch.full((128,), 5, dtype=torch.int32))


# --- the hand-off to the kernel module, with the device and the launch stubbed -----------------------------


@pytest.fixture
def fake_gpu(monkeypatch):
    """CPU tensors routed down the GPU branch as if on cuda:0 (a Hopper); records the launches."""
    launches = []

    def recorder(name):
        return lambda *args: launches.append((name, args))

    stub = SimpleNamespace(**{name: recorder(name) for name in (
        "launch_m_grouped_contiguous", "launch_m_grouped_contiguous_offsets", "launch_m_grouped_masked")})
    monkeypatch.setattr(grouped_fp8_gemm, "check_same_device", lambda tensors: torch.device("cuda", 0))
    monkeypatch.setattr(settings, "require_hopper", lambda index: launches.append(("hopper", index)))
    monkeypatch.setattr(grouped_fp8_gemm, "_kernel", lambda: stub)
    monkeypatch.delenv("DG_DEBUG_CHECK_INDICES", raising=False)
    return launches


def test_launch_arguments(fake_gpu) -> None:
    _, _, a, b, m_indices, group_ends = make_contiguous([100, 30], 16, 128)
    d = torch.empty(len(m_indices), 16, dtype=torch.bfloat16)
    assert m_grouped_fp8_gemm_nt_contiguous(a, b, d, m_indices) is d
    assert m_grouped_fp8_gemm_nt_contiguous_offsets(a, b, d, group_ends) is d
    _, _, am, bm = make_masked(2, 64, 16, 128)
    dm = torch.empty(2, 64, 16, dtype=torch.float32)
    masked_m = torch.tensor([3, 64], dtype=torch.int32)
    assert m_grouped_fp8_gemm_nt_masked(am, bm, dm, masked_m, np.int64(32)) is dm

    names = [name for name, _ in fake_gpu]
    assert names == ["hopper", "launch_m_grouped_contiguous", "hopper", "launch_m_grouped_contiguous_offsets",
                     "hopper", "launch_m_grouped_masked"]
    expected = [(*a, *b, d, m_indices, 0), (*a, *b, d, group_ends, 0), (*am, *bm, dm, masked_m, 32, 0)]
    for (_, args), want in zip(fake_gpu[1::2], expected, strict=True):
        assert len(args) == len(want) and all(x is y or x == y for x, y in zip(args, want, strict=True))
    assert type(fake_gpu[-1][1][-2]) is int  # expected_m arrives as a Python int


def test_no_launch_for_empty_work_or_zero_k(fake_gpu) -> None:
    _, _, a, b, m_indices, group_ends = make_contiguous([3, 0, 130], 16, 0)
    d = sentinel(len(m_indices), 16)
    m_grouped_fp8_gemm_nt_contiguous(a, b, d, m_indices)
    assert d[m_indices >= 0].eq(0).all()
    d = sentinel(len(m_indices), 16)
    m_grouped_fp8_gemm_nt_contiguous_offsets(a, b, d, group_ends)
    assert d[m_indices >= 0].eq(0).all()
    _, _, am, bm = make_masked(2, 0, 16, 128)
    m_grouped_fp8_gemm_nt_masked(am, bm, sentinel(2, 0, 16), torch.zeros(2, dtype=torch.int32), 1)
    assert all(name == "hopper" for name, _ in fake_gpu)


def test_gpu_checks_index_values_only_under_the_knob(fake_gpu, monkeypatch) -> None:
    _, _, a, b, _, _ = make_contiguous([256, 0], 16, 128)
    d = sentinel(256, 16)
    bad_m_indices = torch.full((256,), 7, dtype=torch.int32)
    bad_group_ends = torch.tensor([100, 120], dtype=torch.int32)
    _, _, am, bm = make_masked(2, 16, 8, 128)
    dm, bad_masked_m = sentinel(2, 16, 8), torch.tensor([3, 17], dtype=torch.int32)
    calls = [
        lambda: m_grouped_fp8_gemm_nt_contiguous(a, b, d, bad_m_indices),
        lambda: m_grouped_fp8_gemm_nt_contiguous_offsets(a, b, d, bad_group_ends),
        lambda: m_grouped_fp8_gemm_nt_masked(am, bm, dm, bad_masked_m, 8),
    ]
    for call in calls:  # no host read of the values: they go to the kernel as they are
        call()
    assert sum(name != "hopper" for name, _ in fake_gpu) == 3

    monkeypatch.setenv("DG_DEBUG_CHECK_INDICES", "1")
    fake_gpu.clear()
    for call, pattern in zip(calls, [r"m_indices\[0\]", r"group_ends\[1\]", r"masked_m\[1\]"], strict=True):
        with pytest.raises(ValueError, match=pattern):
            call()
    assert all(name == "hopper" for name, _ in fake_gpu)
