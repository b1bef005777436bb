"""The TF32 ops on the CPU: the CPU path against float64 references (TF32 emulated exactly), every
layout, C, strides, empty sizes, the TF32 rounding helpers, and every input error; how `staged`
decides which operands TMA reads in place (no GPU: it only looks at strides)."""

import pytest
import torch

import deepgemm
from deepgemm.ops.tf32 import gemm as tf32_gemm
from deepgemm.ops.tf32.kernel import reads_in_place
from deepgemm.testing import calc_diff, make_fp32_inputs, tf32_as_read

LAYOUTS = ("nt", "nn", "tn", "tt")
CPU = torch.device("cpu")


def tf32_reference(a_mk: torch.Tensor, b_kn: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    out = tf32_as_read(a_mk).double() @ tf32_as_read(b_kn).double()
    return out if c is None else out + c.double()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("m, n, k", [(1, 4, 1), (7, 12, 17), (65, 128, 129), (33, 20, 96)])
def test_cpu_path_is_the_fp64_product_of_tf32_inputs_rounded_once(layout, m, n, k):
    inputs = make_fp32_inputs(m, n, k, layout, CPU, seed=m + n + k)
    d = torch.full((m, n), float("nan"))
    op = getattr(deepgemm, f"tf32_gemm_{layout}")
    assert op(inputs.a, inputs.b, d) is d
    assert torch.equal(d, tf32_reference(inputs.a_mk, inputs.b_kn).float())
    assert torch.equal(d.double(), inputs.reference("tf32").float().double())
    # TF32 loses about 10 bits of the inputs: far from the FP32 product, but within calc_diff 1e-5.
    assert 1e-12 < calc_diff(d, inputs.reference("fp64")) < 1e-5


@pytest.mark.parametrize("m, n, k", [(1, 4, 1), (65, 128, 129), (33, 20, 96)])
def test_3xtf32_cpu_path_is_the_fp64_product_rounded_once(m, n, k):
    inputs = make_fp32_inputs(m, n, k, "nt", CPU, seed=3)
    d = torch.empty(m, n)
    deepgemm.tf32x3_gemm_nt(inputs.a, inputs.b, d)
    assert torch.equal(d, inputs.reference("fp64").float())


@pytest.mark.parametrize("op", [deepgemm.tf32_gemm_nt, deepgemm.tf32x3_gemm_nt])
def test_c_is_added_and_may_be_d(op):
    inputs = make_fp32_inputs(16, 24, 40, "nt", CPU, seed=1)
    c = torch.randn(16, 24, generator=torch.Generator().manual_seed(2))
    d = torch.empty(16, 24)
    op(inputs.a, inputs.b, d, c)
    expected = (tf32_reference(inputs.a, inputs.b.T, c) if op is deepgemm.tf32_gemm_nt
                else inputs.reference("fp64") + c.double())
    assert torch.equal(d, expected.float())
    d2 = c.clone()
    op(inputs.a, inputs.b, d2, d2)
    assert torch.equal(d2, d)


def test_operands_of_any_strides():
    a = torch.randn(40, 2 * 24)[:, ::2]  # stepped
    b = torch.randn(24, 36).T  # [N=36, K=24] as a transposed view
    d = torch.empty(40, 36)
    deepgemm.tf32_gemm_nt(a, b, d)
    assert torch.equal(d, tf32_reference(a, b.T).float())


def test_empty_sizes():
    a, b = torch.randn(0, 8), torch.randn(4, 8)
    d = torch.empty(0, 4)
    assert deepgemm.tf32_gemm_nt(a, b, d) is d
    c = torch.randn(3, 4)
    d = torch.full((3, 4), 7.0)
    deepgemm.tf32_gemm_nt(torch.randn(3, 0), torch.randn(4, 0), d, c)
    assert torch.equal(d, c)
    deepgemm.tf32x3_gemm_nt(torch.randn(3, 0), torch.randn(4, 0), d)
    assert torch.equal(d, torch.zeros(3, 4))


def test_tf32_rounding_helpers_clear_the_low_13_mantissa_bits():
    x = torch.tensor([1.0 + 2.0**-10 + 2.0**-11 + 2.0**-20, -3.0 - 2.0**-12, 2.0**-140, float("inf")])
    read = tf32_gemm.round_to_tf32_as_read(x)
    assert read.tolist()[:2] == [1.0 + 2.0**-10, -3.0]
    assert read[3] == float("inf") and read[2] == 0.0  # a subnormal below TF32's bits is cut to zero
    assert torch.equal(read, tf32_as_read(x))
    assert torch.equal(read.view(torch.int32) & 0x1FFF, torch.zeros(4, dtype=torch.int32))


def test_reads_in_place_follows_the_tma_rules():
    x = torch.randn(8, 16)
    assert reads_in_place(x)
    assert not reads_in_place(x.T.contiguous().T)  # K not contiguous
    assert not reads_in_place(torch.randn(8, 6))  # 24-byte rows
    assert not reads_in_place(torch.randn(8, 18)[:, :16])  # 72-byte row stride
    assert not reads_in_place(torch.randn(8, 17)[:, 1:])  # starts 4 bytes in
    assert reads_in_place(torch.randn(8, 20)[:, :16])  # a view of a larger buffer
    assert not reads_in_place(torch.randn(1, 16).expand(8, 16))  # overlapping rows


A, B = torch.randn(8, 16), torch.randn(12, 16)


@pytest.mark.parametrize("args, error, match", [
    ((A.bfloat16(), B, torch.empty(8, 12)), TypeError, "a must have dtype torch.float32"),
    ((A, B.double(), torch.empty(8, 12)), TypeError, "b must have dtype torch.float32"),
    ((A, B, torch.empty(8, 12, dtype=torch.bfloat16)), TypeError, "d must have dtype torch.float32"),
    ((A, B, torch.empty(8, 12), torch.empty(8, 12).half()), TypeError, "c must have dtype torch.float32"),
    ((A[0], B, torch.empty(8, 12)), ValueError, "a must be 2-D"),
    ((A, B[:, :8], torch.empty(8, 12)), ValueError, "b must have shape"),
    ((A, B, torch.empty(9, 12)), ValueError, "d must have shape"),
    ((A, B, torch.empty(8, 12), torch.empty(8, 4)), ValueError, "c must have shape"),
    ((A, B[:10], torch.empty(8, 10)), ValueError, "N must be a multiple of 4"),
    ((A, B, torch.empty(12, 8).T), ValueError, "d must have contiguous rows"),
    ((A, B, torch.empty(8, 16)[:, 1:13]), ValueError, "d must start at a 16-byte-aligned address"),
    (([[1.0]], B, torch.empty(8, 12)), TypeError, "a must be a torch.Tensor"),
    ((A, B, torch.empty(8, 12, device="meta")), ValueError, "one device"),
])
@pytest.mark.parametrize("op", [deepgemm.tf32_gemm_nt, deepgemm.tf32x3_gemm_nt])
def test_input_errors(op, args, error, match):
    with pytest.raises(error, match=match):
        op(*args)


@pytest.mark.parametrize("layout, a_shape, b_shape", [
    ("nn", (8, 16), (16, 12)), ("tn", (16, 8), (16, 12)), ("tt", (16, 8), (12, 16))])
def test_each_layout_names_its_stored_dims(layout, a_shape, b_shape):
    op = getattr(deepgemm, f"tf32_gemm_{layout}")
    op(torch.randn(*a_shape), torch.randn(*b_shape), torch.empty(8, 12))
    with pytest.raises(ValueError, match="b must have shape"):
        op(torch.randn(*a_shape), torch.randn(*b_shape[::-1]), torch.empty(8, 12))
