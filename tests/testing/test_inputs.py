"""The seeded GEMM inputs of ``deepgemm.testing``: grouped bookkeeping (contiguous and masked), quantised
random normal operands, references against per-group dense GEMMs, 16-bit inputs in every major, and
B stored ``[K, N]`` for ``matmul``."""

import pytest
import torch

from deepgemm.quant import align
from deepgemm.testing import (
    CONTIGUOUS_M_ALIGNMENT,
    MAJORS,
    Bf16Inputs,
    DenseInputs,
    calc_diff,
    contiguous_starts,
    make_bf16_inputs,
    make_dense_inputs,
    make_grouped_inputs,
    ref_fp8_gemm_nt,
)

CPU = torch.device("cpu")


def test_contiguous_inputs_bookkeeping():
    counts = (100, 0, 130, 128, 1)
    inputs = make_grouped_inputs("contiguous", 5, counts, 256, 384, None, CPU, seed=3)
    assert inputs.starts == contiguous_starts(counts) == (0, 128, 128, 384, 512)
    assert inputs.a.shape == (640, 384) and inputs.a.dtype == torch.float8_e4m3fn
    assert inputs.sfa.shape == (640, 3) and inputs.b.shape == (5, 256, 384) and inputs.sfb.shape == (5, 2, 3)
    assert inputs.masked_m is None and inputs.expected_m is None

    m_indices = inputs.m_indices
    assert m_indices.dtype == torch.int32 and m_indices.shape == (640,)
    expected = torch.full((640,), -1, dtype=torch.int32)
    for group, (start, count) in enumerate(zip(inputs.starts, counts, strict=True)):
        assert start % CONTIGUOUS_M_ALIGNMENT == 0
        expected[start : start + count] = group
    assert torch.equal(m_indices, expected) and int((m_indices >= 0).sum()) == sum(counts)

    # group_ends follows the offsets API: ends[g] = align(ends[g - 1], 128) + count[g], ends[-1] := 0;
    # the rows it assigns are exactly m_indices'.
    ends = inputs.group_ends.tolist()
    assert inputs.group_ends.dtype == torch.int32 and ends == [100, 128, 258, 512, 513]
    rebuilt, previous = torch.full((640,), -1, dtype=torch.int32), 0
    for group, (end, count) in enumerate(zip(ends, counts, strict=True)):
        assert end == align(previous, CONTIGUOUS_M_ALIGNMENT) + count
        rebuilt[align(previous, CONTIGUOUS_M_ALIGNMENT) : end] = group
        previous = end
    assert torch.equal(rebuilt, m_indices)
    assert align(ends[-1], CONTIGUOUS_M_ALIGNMENT) == inputs.a.shape[0]

    assert torch.equal(inputs.valid_rows(inputs.a_bf16), inputs.a_bf16[m_indices >= 0])
    assert torch.equal(inputs.group_rows(inputs.a_bf16, 2), inputs.a_bf16[128:258])


def test_masked_inputs_bookkeeping():
    counts = (0, 64, 17, 64)
    inputs = make_grouped_inputs("masked", 4, counts, 200, 256, 64, CPU, seed=1)
    assert inputs.a.shape == (4, 64, 256) and inputs.sfa.shape == (4, 64, 2)
    assert inputs.b.shape == (4, 200, 256) and inputs.sfb.shape == (4, 2, 2)
    assert inputs.masked_m.dtype == torch.int32 and inputs.masked_m.tolist() == list(counts)
    assert inputs.expected_m == 37  # ceil(145 / 4)
    assert inputs.m_indices is None and inputs.group_ends is None
    valid = torch.arange(64)[None, :] < inputs.masked_m[:, None]
    assert torch.equal(inputs.valid_rows(inputs.a_bf16), inputs.a_bf16[valid])

    uniform = make_grouped_inputs("masked", 2, 48, 128, 128, 128, CPU, seed=1, expected_m=40)
    assert uniform.masked_m.tolist() == [48, 48] and uniform.expected_m == 40


def _dequantised(q: torch.Tensor, sf: torch.Tensor, rows_per_scale: int) -> torch.Tensor:
    scales = sf.repeat_interleave(128, dim=-1)[..., : q.shape[-1]]
    scales = scales.repeat_interleave(rows_per_scale, dim=-2)[..., : q.shape[-2], :]
    return q.float() * scales


def test_grouped_inputs_are_seeded_quantised_random_normal():
    first = make_grouped_inputs("contiguous", 2, (100, 28), 136, 256, None, CPU, seed=5)
    again = make_grouped_inputs("contiguous", 2, (100, 28), 136, 256, None, CPU, seed=5)
    other = make_grouped_inputs("contiguous", 2, (100, 28), 136, 256, None, CPU, seed=6)
    assert torch.equal(first.a_bf16, again.a_bf16) and torch.equal(first.b_bf16, again.b_bf16)
    assert torch.equal(first.a.view(torch.uint8), again.a.view(torch.uint8))
    assert not torch.equal(first.a_bf16, other.a_bf16)
    assert 0.9 < float(first.a_bf16.float().std()) < 1.1 and 0.9 < float(first.b_bf16.float().std()) < 1.1
    # Padding rows hold random data too: a kernel that reads them would show it.
    assert float(first.a_bf16[100:128].float().std()) > 0.5
    assert calc_diff(_dequantised(first.a, first.sfa, 1), first.a_bf16) < 1e-3
    assert calc_diff(_dequantised(first.b, first.sfb, 128), first.b_bf16) < 1e-3


@pytest.mark.parametrize("layout", ["contiguous", "masked"])
def test_grouped_references_match_per_group_dense_gemms(layout):
    counts = (37, 0, 128, 5)
    inputs = make_grouped_inputs(layout, 4, counts, 136, 384, 128 if layout == "masked" else None, CPU, 2)
    fp8, bf16 = inputs.reference("fp8"), inputs.reference("bf16")
    assert fp8.shape == bf16.shape == (170, 136) and fp8.dtype == bf16.dtype == torch.float32
    experts = [inputs.expert_inputs(group) for group in range(4)]
    assert [expert.a.shape[0] for expert in experts] == list(counts)
    per_group = torch.cat([ref_fp8_gemm_nt((e.a, e.sfa), (e.b, e.sfb)) for e in experts])
    torch.testing.assert_close(fp8, per_group, rtol=1e-6, atol=1e-5)
    assert calc_diff(fp8, bf16) < 1e-3
    # Per-group outputs (empty groups left out) stack into the same rows.
    assert torch.equal(inputs.valid_rows([per_group[:37], per_group[37:165], per_group[165:]]), per_group)
    with pytest.raises(ValueError, match="unknown reference kind"):
        inputs.reference("fp16")

    # The dense GEMM of the same total size: every valid row times group 0's weights, built once.
    dense = inputs.dense_equivalent()
    assert dense is inputs.dense_equivalent()
    assert torch.equal(dense.a_bf16, inputs.valid_rows(inputs.a_bf16)) and dense.a.shape == (170, 384)
    assert torch.equal(dense.sfa, inputs.valid_rows(inputs.sfa))
    assert torch.equal(dense.b.view(torch.uint8), inputs.b[0].view(torch.uint8))
    assert torch.equal(dense.sfb, inputs.sfb[0])


@pytest.mark.parametrize(
    "args",
    [
        ("dense", 2, 8, 16, 16, None),
        ("contiguous", 2, (8,), 16, 16, None),
        ("contiguous", 2, (8, -1), 16, 16, None),
        ("contiguous", 2, 8, 16, 16, 128),
        ("masked", 2, 8, 16, 16, None),
        ("masked", 2, (8, 129), 16, 16, 128),
    ],
)
def test_make_grouped_inputs_rejects_inconsistent_arguments(args):
    with pytest.raises(ValueError):
        make_grouped_inputs(*args, CPU, 0)


@pytest.mark.parametrize("major", MAJORS)
def test_bf16_inputs_are_stored_as_the_major_says(major):
    inputs = make_bf16_inputs(24, 40, 56, major, CPU, seed=4)
    stored_a = {"n": (24, 56), "t": (56, 24)}[major[0]]
    stored_b = {"t": (40, 56), "n": (56, 40)}[major[1]]
    assert inputs.major == major and inputs.a.shape == stored_a and inputs.b.shape == stored_b
    assert inputs.a.dtype == inputs.b.dtype == torch.bfloat16
    assert inputs.a.is_contiguous() and inputs.b.is_contiguous()
    # a_mk / b_kn are views of the stored tensors, never copies.
    assert inputs.a_mk.shape == (24, 56) and inputs.a_mk.data_ptr() == inputs.a.data_ptr()
    assert inputs.b_kn.shape == (56, 40) and inputs.b_kn.data_ptr() == inputs.b.data_ptr()
    reference = inputs.reference("bf16")
    assert reference.dtype == torch.float32 and reference is inputs.reference("bf16")
    torch.testing.assert_close(reference, inputs.a_mk.double().matmul(inputs.b_kn.double()).float())
    assert inputs.reference_kinds == ("bf16",) and torch.equal(inputs.valid_rows(reference), reference)
    assert 0.9 < float(inputs.a.float().std()) < 1.1
    again = make_bf16_inputs(24, 40, 56, major, CPU, seed=4)
    assert torch.equal(again.a, inputs.a) and torch.equal(again.b, inputs.b)
    with pytest.raises(ValueError, match="unknown reference kind"):
        inputs.reference("fp8")


def test_bf16_inputs_reject_an_unknown_major():
    with pytest.raises(ValueError, match="major must be one of"):
        make_bf16_inputs(8, 8, 8, "mk", CPU, seed=0)


def test_matmul_inputs_hold_b_row_major_k_by_n():
    inputs = make_dense_inputs(64, 136, 256, CPU, seed=1, b_kn=True)
    assert isinstance(inputs, DenseInputs)
    assert inputs.b_bf16.shape == (136, 256) and inputs.b_bf16.t().is_contiguous()
    assert inputs.b.shape == (136, 256) and inputs.sfb.shape == (2, 2)
    assert calc_diff(inputs.reference("fp8"), inputs.reference("bf16")) < 1e-3
    plain = make_dense_inputs(64, 136, 256, CPU, seed=1)
    assert plain.b_bf16.is_contiguous()


def test_grouped_inputs_with_bf16_operands():
    for layout, max_m in (("contiguous", None), ("masked", 64)):
        inputs = make_grouped_inputs(
            layout, 3, (5, 0, 17), 16, 32, max_m, CPU, 0, operand_dtype=torch.bfloat16
        )
        fp8 = make_grouped_inputs(layout, 3, (5, 0, 17), 16, 32, max_m, CPU, 0)
        # Same draws as the FP8 inputs, used as they are.
        assert (
            torch.equal(inputs.a_bf16, fp8.a_bf16) and inputs.a is inputs.a_bf16 and inputs.b is inputs.b_bf16
        )
        assert inputs.sfa is None and inputs.sfb is None and not inputs.quantised and fp8.quantised
        assert inputs.reference_kinds == ("bf16",) and fp8.reference_kinds == ("fp8", "bf16")
        torch.testing.assert_close(inputs.reference("bf16"), fp8.reference("bf16"))
        with pytest.raises(ValueError, match="no 'fp8' reference"):
            inputs.reference("fp8")
        dense = inputs.dense_equivalent()
        assert isinstance(dense, Bf16Inputs) and dense.major == "nt" and dense is inputs.dense_equivalent()
        assert torch.equal(dense.a, inputs.valid_rows(inputs.a_bf16)) and torch.equal(
            dense.b, inputs.b_bf16[0]
        )
        assert isinstance(fp8.dense_equivalent(), DenseInputs)
    with pytest.raises(ValueError, match="operand_dtype"):
        make_grouped_inputs("masked", 2, 8, 16, 16, 128, CPU, 0, operand_dtype=torch.float16)
