"""The weight-only ops on the CPU path: results against a float64 product of the dequantised weight
(``calc_diff < 1e-5`` with 16-bit output), the masked ops' untouched rows, every argument rule's error,
and torch.compile (one custom-op node per call)."""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.ops.wonly import gemm as wonly_gemm
from deepgemm.quant import wonly
from deepgemm.testing import calc_diff, make_weight_only_inputs

CPU = torch.device("cpu")
VARIANTS = [  # (bits, group_size, zero points)
    (8, None, False), (8, 128, False), (4, 128, False), (4, 128, True), (4, None, False), (4, 256, True)]


def _dense_op(bits):
    return deepgemm.w8a16_gemm_nt if bits == 8 else deepgemm.w4a16_gemm_nt


def _masked_op(bits):
    return deepgemm.m_grouped_w8a16_gemm_nt_masked if bits == 8 else deepgemm.m_grouped_w4a16_gemm_nt_masked


@pytest.mark.parametrize("bits, group_size, zeros", VARIANTS)
@pytest.mark.parametrize("m, n, k", [(1, 7, 8), (7, 17, 1000), (17, 65, 136), (65, 129, 64), (129, 1000, 200),
                                     (3, 1030, 2056)])
def test_dense_matches_the_float64_product(m, n, k, bits, group_size, zeros):
    inputs = make_weight_only_inputs(m, n, k, bits, CPU, seed=m + n + k, group_size=group_size,
                                     zero_points=zeros)
    d = torch.empty(m, n, dtype=torch.bfloat16)
    assert _dense_op(bits)(inputs.a, inputs.b, d, group_size=group_size) is d
    assert calc_diff(d, inputs.reference()) < 1e-5


@pytest.mark.parametrize("out_dtype", (torch.float16, torch.float32))
def test_fp16_activations_and_other_outputs(out_dtype):
    inputs = make_weight_only_inputs(20, 100, 264, 4, CPU, seed=1, zero_points=True, dtype=torch.float16)
    d = torch.empty(20, 100, dtype=out_dtype)
    deepgemm.w4a16_gemm_nt(inputs.a, inputs.b, d)
    assert calc_diff(d, inputs.reference()) < 1e-5


@pytest.mark.parametrize("bits, group_size, zeros", VARIANTS[:4])
def test_masked_computes_valid_rows_and_leaves_the_others(bits, group_size, zeros):
    counts = (0, 9, 40, 23)
    inputs = make_weight_only_inputs(40, 72, 200, bits, CPU, seed=3, group_size=group_size, zero_points=zeros,
                                     num_groups=len(counts), counts=counts)
    d = torch.full((4, 40, 72), 7.0, dtype=torch.bfloat16)
    _masked_op(bits)(inputs.a, inputs.b, d, inputs.masked_m, 16, group_size=group_size)
    reference = inputs.a.double() @ inputs.w.double().transpose(1, 2)  # every row of every group
    for group, count in enumerate(counts):
        if count:
            assert calc_diff(d[group, :count], reference[group, :count]) < 1e-5
        assert torch.all(d[group, count:] == 7.0)


def test_zero_sizes_do_nothing():
    inputs = make_weight_only_inputs(0, 16, 64, 8, CPU, seed=0, group_size=None)
    d = torch.empty(0, 16, dtype=torch.bfloat16)
    assert deepgemm.w8a16_gemm_nt(inputs.a, inputs.b, d) is d
    masked = make_weight_only_inputs(8, 16, 64, 4, CPU, seed=0, num_groups=2, counts=(0, 0))
    d = torch.full((2, 8, 16), 5.0)
    deepgemm.m_grouped_w4a16_gemm_nt_masked(masked.a, masked.b, d, masked.masked_m, 4)
    assert torch.all(d == 5.0)


def test_cpu_path_is_chunked_over_weight_rows(monkeypatch):
    monkeypatch.setattr(wonly_gemm, "CPU_CHUNK_ROWS", 32)
    inputs = make_weight_only_inputs(5, 100, 128, 4, CPU, seed=9, zero_points=True)
    d = torch.empty(5, 100)
    deepgemm.w4a16_gemm_nt(inputs.a, inputs.b, d)
    assert calc_diff(d, inputs.reference()) < 1e-9


# ---- argument rules ------------------------------------------------------------------------------------

def _w4(m=4, n=32, k=128, zeros=False):
    return make_weight_only_inputs(m, n, k, 4, CPU, seed=0, zero_points=zeros)


def _w8(m=4, n=32, k=128):
    return make_weight_only_inputs(m, n, k, 8, CPU, seed=0, group_size=None)


def _bad_cases():
    w4, w8, z4, w4k = _w4(), _w8(), _w4(zeros=True), _w4(k=256)
    d = torch.empty(4, 32, dtype=torch.bfloat16)
    packed4, sb4 = w4.b
    packed8, sb8 = w8.b
    masked = make_weight_only_inputs(8, 32, 128, 4, CPU, seed=0, num_groups=2)
    dm = torch.empty(2, 8, 32, dtype=torch.bfloat16)
    return {
        "a not a tensor": (lambda: deepgemm.w4a16_gemm_nt([1], w4.b, d), TypeError,
                           "a must be a torch.Tensor"),
        "a fp32": (lambda: deepgemm.w4a16_gemm_nt(w4.a.float(), w4.b, d), TypeError, "a must have dtype"),
        "a 3-D": (lambda: deepgemm.w4a16_gemm_nt(w4.a[None], w4.b, d), ValueError, r"a must be 2-D \[M, K\]"),
        "K not a multiple of 8": (
            lambda: deepgemm.w8a16_gemm_nt(torch.zeros(4, 12, dtype=torch.bfloat16),
                                           wonly.quantize_w8a16(torch.randn(32, 12)), d),
            ValueError, "K must be a multiple of 8"),
        "b not a tuple": (lambda: deepgemm.w4a16_gemm_nt(w4.a, packed4, d), TypeError,
                          r"b must be a \(b_packed"),
        "w8 with zeros": (lambda: deepgemm.w8a16_gemm_nt(w8.a, (*w8.b, sb8), d), TypeError,
                          r"b must be a \(b_packed, sb\) tuple"),
        "packed dtype": (lambda: deepgemm.w4a16_gemm_nt(w4.a, (packed4.view(torch.int8), sb4), d), TypeError,
                         r"b_packed \(b\[0\]\) must have dtype torch.uint8"),
        "w8 packed dtype": (lambda: deepgemm.w8a16_gemm_nt(w8.a, (packed8.view(torch.uint8), sb8), d),
                            TypeError, "must have dtype torch.int8"),
        "packed shape": (lambda: deepgemm.w4a16_gemm_nt(w4.a, (packed4[:, :32], sb4), d), ValueError,
                         r"b_packed \(b\[0\]\) must have shape \[align\(N, 16\), align\(K, 64\) / 2\]"),
        "unpacked int8 weight": (
            lambda: deepgemm.w8a16_gemm_nt(w8.a, (torch.zeros(32, 100, dtype=torch.int8), sb8), d),
            ValueError,
            "must have shape"),
        "scale dtype": (lambda: deepgemm.w4a16_gemm_nt(w4.a, (packed4, sb4.float()), d), TypeError,
                        r"sb \(b\[1\]\) must have dtype torch.bfloat16"),
        "scale shape [N, groups]": (lambda: deepgemm.w4a16_gemm_nt(w4.a, (packed4, sb4.T.contiguous()), d),
                                    ValueError, r"sb \(b\[1\]\) must have shape \[ceil\(K/128\), N\]"),
        "per-channel scales with group_size": (lambda: deepgemm.w8a16_gemm_nt(w8.a, w8.b, d, group_size=64),
                                               ValueError, r"ceil\(K/64\), N\] = \(2, 32\)"),
        "scale not contiguous": (
            lambda: deepgemm.w4a16_gemm_nt(w4k.a, (w4k.b[0], torch.zeros(32, 2, dtype=torch.bfloat16).T), d),
            ValueError, r"sb \(b\[1\]\) must be contiguous"),
        "zeros dtype": (lambda: deepgemm.w4a16_gemm_nt(z4.a, (*z4.b[:2], z4.b[2].to(torch.int32)), d),
                        TypeError, r"zeros \(b\[2\]\) must have dtype torch.uint8"),
        "zeros shape": (lambda: deepgemm.w4a16_gemm_nt(z4.a, (*z4.b[:2], z4.b[2][:, :16]), d), ValueError,
                        r"zeros \(b\[2\]\) must have shape"),
        "group size not a multiple of 64": (lambda: deepgemm.w4a16_gemm_nt(w4.a, w4.b, d, group_size=32),
                                            ValueError, "group_size must be a positive multiple of 64"),
        "group size a float": (lambda: deepgemm.w4a16_gemm_nt(w4.a, w4.b, d, group_size=128.0), TypeError,
                               "group_size must be an int or None"),
        "d dtype": (lambda: deepgemm.w4a16_gemm_nt(w4.a, w4.b, d.to(torch.int32)), TypeError,
                    "d must have dtype"),
        "d shape": (lambda: deepgemm.w4a16_gemm_nt(w4.a, w4.b, d[:3]), ValueError, r"d must have shape"),
        "d strided rows": (lambda: deepgemm.w4a16_gemm_nt(w4.a, w4.b,
                                                          torch.empty(32, 4, dtype=torch.bfloat16).T),
                           ValueError, "d must have contiguous rows"),
        "a strided": (lambda: deepgemm.w4a16_gemm_nt(torch.zeros(128, 4, dtype=torch.bfloat16).T, w4.b, d),
                      ValueError, "a must have contiguous rows"),
        "masked a 2-D": (lambda: deepgemm.m_grouped_w4a16_gemm_nt_masked(masked.a[0], masked.b, dm,
                                                                          masked.masked_m, 4),
                         ValueError, r"a must be 3-D \[G, max_m, K\]"),
        "masked packed without G": (lambda: deepgemm.m_grouped_w4a16_gemm_nt_masked(
            masked.a, (masked.b[0][0], masked.b[1]), dm, masked.masked_m, 4), ValueError, "b_packed"),
        "masked_m dtype": (lambda: deepgemm.m_grouped_w4a16_gemm_nt_masked(
            masked.a, masked.b, dm, masked.masked_m.long(), 4), TypeError, "masked_m must have dtype"),
        "masked_m value": (lambda: deepgemm.m_grouped_w4a16_gemm_nt_masked(
            masked.a, masked.b, dm, torch.tensor([9, 0], dtype=torch.int32), 4), ValueError,
            r"masked_m\[0\] must be in \[0, max_m=8\]"),
        "expected_m": (lambda: deepgemm.m_grouped_w4a16_gemm_nt_masked(masked.a, masked.b, dm,
                                                                        masked.masked_m, 0),
                       ValueError, "expected_m must be > 0"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_arguments_raise_naming_the_rule(name):
    call, error, match = BAD[name]
    with pytest.raises(error, match=match):
        call()


# ---- torch.compile -------------------------------------------------------------------------------------

def test_ops_compile_into_one_graph_and_match_eager():
    dense = make_weight_only_inputs(16, 48, 192, 4, CPU, seed=2, zero_points=True)
    dense8 = make_weight_only_inputs(16, 48, 192, 8, CPU, seed=2, group_size=None)
    masked = make_weight_only_inputs(16, 48, 192, 8, CPU, seed=3, group_size=None, num_groups=2,
                                     counts=(5, 16))
    calls = [
        (lambda d: deepgemm.w4a16_gemm_nt(dense.a, dense.b, d), (16, 48)),
        (lambda d: deepgemm.w8a16_gemm_nt(dense8.a, dense8.b, d), (16, 48)),
        (lambda d: deepgemm.m_grouped_w8a16_gemm_nt_masked(masked.a, masked.b, d, masked.masked_m, 8,
                                                           group_size=None), (2, 16, 48)),
    ]
    for call, shape in calls:
        torch._dynamo.reset()
        eager = torch.full(shape, 3.0, dtype=torch.bfloat16)
        call(eager)
        d = torch.full(shape, 3.0, dtype=torch.bfloat16)
        assert torch.compile(call, fullgraph=True, backend="aot_eager")(d) is d
        assert torch.equal(d, eager)


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
@pytest.mark.parametrize("bits, group_size, zeros", VARIANTS[:4])
def test_the_gpus_rounding_of_each_weight_keeps_the_bar(bits, group_size, zeros, dtype):
    """The kernel rounds each dequantised weight to the activations' dtype before the tensor cores
    (exactly once: (Q - Z) is exact, and so is its product with the scale before rounding). Emulated
    here: that product, FP32 accumulation, 16-bit output, still within calc_diff 1e-5 of float64."""
    inputs = make_weight_only_inputs(64, 512, 2048, bits, CPU, seed=11, group_size=group_size,
                                     zero_points=zeros, dtype=dtype)
    rounded = inputs.w.to(dtype).float()
    out = (inputs.a.float() @ rounded.T).to(dtype)
    assert calc_diff(out, inputs.reference()) < 1e-5


@pytest.mark.parametrize("precision, zeros", [("w8a16", False), ("w4a16", False), ("w4a16", True)])
def test_weight_only_matmul_on_a_packed_weight(precision, zeros):
    from deepgemm.ops.wonly import weight_only_matmul

    w = torch.randn(96, 256, generator=torch.Generator().manual_seed(1))
    weight = wonly.pack_weight(w, precision, symmetric=not zeros)
    assert weight.bits == (8 if precision == "w8a16" else 4) and (weight.zeros is None) != zeros
    a = torch.randn(2, 5, 256).bfloat16()
    out = weight_only_matmul(a, weight)
    assert out.shape == (2, 5, 96) and out.dtype == torch.bfloat16
    dequantised = (wonly.dequantize_w8a16(weight.b_packed, weight.sb, 96, 256, None) if precision == "w8a16"
                   else wonly.dequantize_w4a16(weight.b_packed, weight.sb, weight.zeros, 96, 256, 128))
    assert calc_diff(out, a.double() @ dequantised.double().T) < 1e-5
    into = torch.empty(2, 5, 96)
    assert weight_only_matmul(a, weight, out=into) is into
    with pytest.raises(TypeError, match="PackedWeight"):
        weight_only_matmul(a, weight.operand)
    with pytest.raises(ValueError, match="precision must be one of"):
        wonly.pack_weight(w, "w4a8")
