"""deepgemm.matmul's compute precision on the CPU: the seed's own call (``dtype=``), every accepted
spelling of each precision, ``precision=`` as the same argument, the FP32 (3xTF32) and TF32 paths
(through the TF32 ops, N padded to 4), FP8 with K not a multiple of 16 (padded in the quantise step),
and the INT8 placeholder."""

import numpy as np
import pytest
import torch

import deepgemm
from deepgemm.ops.tf32 import gemm as tf32_gemm
from deepgemm.testing import calc_diff, tf32_as_read

from .fuzz_cases import fp8_matmul_reference
from .matmul_support import product, record_16bit_calls

BF16 = torch.bfloat16


def randn(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.fixture
def tf32_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Records each TF32 op matmul calls (name, a, b, d) and still runs it."""
    recorded = []
    for name in ("tf32_gemm_nt", "tf32x3_gemm_nt"):
        real = getattr(tf32_gemm, name)

        def recorder(a, b, d, c=None, _name=name, _real=real):
            recorded.append((_name, a, b, d))
            return _real(a, b, d, c)

        monkeypatch.setattr(tf32_gemm, name, recorder)
    return recorded


def test_the_seed_call_runs_as_spelled() -> None:
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((64, 96)), rng.standard_normal((96, 40))
    # The seed's call names device="cuda"; on this CPU machine the same call runs on the CPU.
    c_np = deepgemm.matmul(a_np, b_np, dtype="float16", device="cpu")
    assert type(c_np) is np.ndarray and c_np.dtype == np.float16 and c_np.shape == (64, 40)
    expected = product(torch.from_numpy(a_np), torch.from_numpy(b_np), torch.float16)
    assert calc_diff(torch.from_numpy(c_np), expected) < 1e-5


SPELLINGS = {
    "fp32": ("float32", "fp32", "FP32", torch.float32, np.float32, np.dtype("float32")),
    "tf32": ("tf32", "TF32"),
    "fp16": ("float16", "fp16", torch.float16, np.float16, np.dtype("float16")),
    "bf16": ("bfloat16", "bf16", BF16),
    "fp8": ("fp8", "float8_e4m3fn", torch.float8_e4m3fn),
}


def _expected(prec: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if prec == "fp32":
        return product(a.float(), b.float())
    if prec == "tf32":
        return product(tf32_as_read(a.float()), tf32_as_read(b.float()))
    if prec == "fp8":
        return fp8_matmul_reference(a, b)
    return product(a, b, {"fp16": torch.float16, "bf16": BF16}[prec])


@pytest.mark.parametrize("prec, spelling", [(p, s) for p, spellings in SPELLINGS.items() for s in spellings],
                         ids=str)
def test_every_spelling_of_a_precision(prec: str, spelling) -> None:
    a, b = randn(33, 64, dtype=torch.float64), randn(64, 24, seed=1)
    d = deepgemm.matmul(a, b, dtype=spelling, out_dtype=torch.float32)
    d_alias = deepgemm.matmul(a, b, precision=spelling, out_dtype=torch.float32)
    assert torch.equal(d, d_alias)  # precision= is the same argument
    bound = {"fp32": 1e-13, "tf32": 1e-13, "fp8": 1e-5}.get(prec, 1e-6)
    assert calc_diff(d, _expected(prec, a, b)) < bound


def test_dtype_and_precision_may_both_name_one_precision() -> None:
    a, b = randn(8, 16), randn(16, 8, seed=1)
    both = deepgemm.matmul(a, b, dtype="bf16", precision=BF16)
    assert torch.equal(both, deepgemm.matmul(a, b, dtype="bf16"))


@pytest.mark.parametrize("dtype, prec", [(torch.float32, "fp32"), (torch.float64, "fp32"), (BF16, "bf16"),
                                         (torch.float16, "fp16")])
def test_inputs_own_dtype(dtype: torch.dtype, prec: str) -> None:
    a, b = randn(16, 40, dtype=dtype), randn(40, 12, dtype=dtype, seed=1)
    d = deepgemm.matmul(a, b)
    assert d.dtype == {"fp32": torch.float32, "bf16": BF16, "fp16": torch.float16}[prec]
    assert calc_diff(d, _expected(prec, a, b)) < (1e-13 if prec == "fp32" else 1e-5)


def test_numpy_float32_runs_fp32_and_returns_float32() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((17, 29)).astype(np.float32), rng.standard_normal((29, 13)).astype(np.float32)
    d = deepgemm.matmul(a, b)
    assert type(d) is np.ndarray and d.dtype == np.float32
    assert np.array_equal(d, (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("dtype, op", [("float32", "tf32x3_gemm_nt"), ("tf32", "tf32_gemm_nt")])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (7, 17, 65), (17, 7, 129), (65, 129, 7), (40, 24, 64)])
def test_fp32_and_tf32_reach_their_op_with_n_padded_to_4(tf32_calls, dtype: str, op: str, m: int, n: int,
                                                          k: int) -> None:
    a, b = randn(m, k), randn(k, n, seed=1)
    d = deepgemm.matmul(a, b, dtype=dtype)
    assert d.dtype == torch.float32 and d.shape == (m, n) and d.is_contiguous()
    prec = "fp32" if dtype == "float32" else "tf32"
    assert torch.equal(d, _expected(prec, a, b).float())
    [(called, a_arg, b_arg, d_arg)] = tf32_calls
    n_pad = -(-n // 4) * 4
    assert called == op and a_arg.shape == (m, k) and b_arg.shape == (n_pad, k) and d_arg.shape == (m, n_pad)
    # b reaches the op as a transposed view, unless N was padded: no copy is made in matmul.
    assert n_pad != n or b_arg.data_ptr() == b.data_ptr()


@pytest.mark.parametrize("dtype", ["float32", "tf32"])
def test_fp32_batched_out_and_out_dtype(dtype: str) -> None:
    prec = "fp32" if dtype == "float32" else "tf32"
    a3, b3 = randn(3, 20, 36), randn(3, 36, 12, seed=1)
    d = deepgemm.matmul(a3, b3, dtype=dtype)
    assert d.shape == (3, 20, 12)
    for i in range(3):
        assert torch.equal(d[i], _expected(prec, a3[i], b3[i]).float())
    shared = randn(36, 12, seed=2)
    assert torch.equal(deepgemm.matmul(a3, shared, dtype=dtype).reshape(60, 12),
                       _expected(prec, a3.reshape(60, 36), shared).float())
    out = torch.empty(12, 20).T  # not row-major: written through a buffer
    assert deepgemm.matmul(a3[0], b3[0], dtype=dtype, out=out) is out
    assert torch.equal(out, d[0])
    as_bf16 = deepgemm.matmul(a3[0], b3[0], dtype=dtype, out_dtype=BF16)
    assert as_bf16.dtype == BF16 and torch.equal(as_bf16, d[0].to(BF16))


@pytest.mark.parametrize("k", [1, 24, 100, 136])
def test_fp8_pads_k_to_a_multiple_of_16(k: int) -> None:
    a, b = randn(20, k, dtype=BF16), randn(k, 48, dtype=BF16, seed=1)
    d = deepgemm.matmul(a, b, dtype="fp8", out_dtype=torch.float32)
    # Zero columns change no scale and add nothing: the reference of the unpadded operands holds.
    assert calc_diff(d, fp8_matmul_reference(a, b)) < 1e-6
    assert calc_diff(d, product(a, b)) < 1e-3


@pytest.mark.parametrize("m, k, n", [(4, 8, 8), (7, 17, 5), (65, 129, 33)])
def test_int8_inputs_multiply_exactly(m: int, k: int, n: int) -> None:
    """Two int8 operands run unscaled: every spelling of the precision gives the exact integer product
    (FP32 output: these sums are below 2^24)."""
    gen = torch.Generator().manual_seed(m * k * n)
    a = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8)
    b = torch.randint(-127, 128, (k, n), generator=gen, dtype=torch.int8)
    exact = (a.long() @ b.long()).float()
    for kwargs in ({}, {"dtype": "int8"}, {"dtype": torch.int8}, {"precision": np.int8}):
        result = deepgemm.matmul(a, b, out_dtype=torch.float32, **kwargs)
        assert result.dtype == torch.float32 and torch.equal(result, exact)


def test_int8_float_inputs_are_quantised_per_token_and_channel() -> None:
    """Float inputs with dtype='int8' equal the quantise-and-multiply helper by hand, bit for bit, and are
    within INT8 quantisation error of the FP64 product."""
    a, b = randn(33, 100), randn(100, 17)
    result = deepgemm.matmul(a, b, dtype="int8", out_dtype=torch.float32)
    assert torch.equal(result, deepgemm.int8_matmul_quantized(a, b, torch.float32))
    assert calc_diff(result, a.double() @ b.double()) < 1e-3


@pytest.mark.parametrize("kwargs, error, match", [
    ({"dtype": "fp64"}, ValueError, "dtype must be 'float32' .* got 'fp64'"),
    ({"dtype": "int4"}, ValueError, "dtype must be"),
    ({"dtype": [BF16]}, ValueError, "dtype must be"),
    ({"precision": np.complex64}, ValueError, "precision must be"),
    ({"dtype": "fp32", "precision": "tf32"}, ValueError, "disagree"),
])
def test_unknown_or_conflicting_dtype(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        deepgemm.matmul(randn(4, 8), randn(8, 8), **kwargs)


def test_integer_inputs_other_than_int8_are_refused_in_every_precision() -> None:
    with pytest.raises(TypeError, match="int8 ones with dtype='int8'"):
        deepgemm.matmul(torch.ones(4, 8, dtype=torch.int32), randn(8, 8), dtype="fp16")
    with pytest.raises(TypeError, match="int8 ones with dtype='int8'"):
        deepgemm.matmul(torch.ones(4, 8, dtype=torch.int8), randn(8, 8), dtype="float32")


def test_the_accepted_list_is_in_the_message() -> None:
    with pytest.raises(ValueError) as info:
        deepgemm.matmul(randn(4, 8), randn(8, 8), dtype="double")
    for name in ("'float32'", "'fp32'", "'tf32'", "'float16'", "'bfloat16'", "'fp8'", "'int8'", "torch.int8",
                 "NumPy"):
        assert name in str(info.value)


def test_16bit_padding_of_n_alone_reads_a_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_16bit_calls(monkeypatch)
    a, b = randn(9, 16, dtype=BF16), randn(16, 13, dtype=BF16, seed=1)
    d = deepgemm.matmul(a, b)
    assert calc_diff(d, product(a, b)) < 1e-5
    [(called, a_arg, b_arg, d_arg)] = calls
    assert called == "nn" and a_arg.data_ptr() == a.data_ptr()
    assert b_arg.shape == (16, 16) and d_arg.shape == (9, 16)
