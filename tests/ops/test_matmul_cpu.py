"""deepgemm.matmul on the CPU: numbers against float64 references, result kinds and dtypes, the layout
chosen for transposed views, padding of odd sizes, batching, ``out=``, and every error."""

import numpy as np
import pytest
import torch

import deepgemm
from deepgemm.testing import calc_diff

from .matmul_support import product, record_16bit_calls

BF16 = torch.bfloat16


def randn(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    return record_16bit_calls(monkeypatch)


# ---- 16-bit precisions ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m, n, k", [(1, 8, 8), (33, 40, 72), (128, 256, 512), (7, 13, 29)])
def test_16bit_inputs_run_in_their_own_dtype(dtype: torch.dtype, m: int, n: int, k: int) -> None:
    a, b = randn(m, k, dtype=dtype), randn(k, n, dtype=dtype, seed=1)
    d = deepgemm.matmul(a, b)
    assert isinstance(d, torch.Tensor) and d.dtype == dtype and d.shape == (m, n)
    assert calc_diff(d, product(a, b)) < 1e-5


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16),
                                              (torch.bfloat16, torch.bfloat16), ("float16", torch.float16)])
def test_explicit_precision_converts_any_float_input(precision, dtype: torch.dtype) -> None:
    a, b = randn(65, 136, dtype=torch.float64), randn(136, 24, seed=1)  # float64 and float32
    d = deepgemm.matmul(a, b, precision=precision)
    assert d.dtype == dtype
    assert calc_diff(d, product(a, b, dtype)) < 1e-5


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16, torch.float32, "fp32", np.float32])
def test_out_dtype(out_dtype) -> None:
    a, b = randn(32, 64, dtype=torch.bfloat16), randn(64, 48, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b, out_dtype=out_dtype)
    expected = {"fp32": torch.float32, np.float32: torch.float32}.get(out_dtype, out_dtype)
    assert d.dtype == expected
    assert calc_diff(d, product(a, b)) < 1e-5


def test_fp32_output_is_exact_fp32_math() -> None:
    a, b = randn(16, 32, dtype=torch.bfloat16), randn(32, 24, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b, out_dtype=torch.float32)
    assert calc_diff(d, product(a, b)) < 1e-12


# ---- layouts: transposed views run in place, other strides are copied ------------------------------


def _operands(a_transposed: bool, b_transposed: bool, m: int = 24, n: int = 40, k: int = 64):
    """bf16 a [M, K] and b [K, N], each row-major or a transposed view of a row-major tensor."""
    a = randn(k, m, dtype=BF16).T if a_transposed else randn(m, k, dtype=BF16)
    b = randn(n, k, dtype=BF16, seed=1).T if b_transposed else randn(k, n, dtype=BF16, seed=1)
    return a, b


@pytest.mark.parametrize("a_transposed, b_transposed, layout",
                         [(False, False, "nn"), (False, True, "nt"), (True, False, "tn"), (True, True, "tt")])
def test_transposed_views_pick_the_layout_that_reads_them_in_place(calls, a_transposed, b_transposed,
                                                                   layout) -> None:
    a, b = _operands(a_transposed, b_transposed)
    d = deepgemm.matmul(a, b)
    assert calc_diff(d, product(a, b)) < 1e-5
    [(called, a_arg, b_arg, d_arg)] = calls
    assert called == layout
    # No copy: the op reads the caller's storage and writes the result.
    assert a_arg.data_ptr() == a.data_ptr() and b_arg.data_ptr() == b.data_ptr()
    assert d_arg is d


def test_arbitrary_strides_are_copied_to_row_major(calls) -> None:
    a = randn(24, 128, dtype=torch.bfloat16)[:, ::2]  # [24, 64], column stride 2
    b = randn(64, 80, dtype=torch.bfloat16, seed=1)[:, 1::2]  # [64, 40], misaligned and strided
    d = deepgemm.matmul(a, b)
    assert calc_diff(d, product(a, b)) < 1e-5
    [(called, a_arg, b_arg, _)] = calls
    assert called == "nn" and a_arg.is_contiguous() and b_arg.is_contiguous()


def test_row_stride_views_are_read_in_place(calls) -> None:
    buf = randn(24, 96, dtype=torch.bfloat16)
    a = buf[:, :64]  # rows of a wider buffer: row stride 96 meets the 16-byte rule
    b = randn(64, 40, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b)
    assert calc_diff(d, product(a, b)) < 1e-5
    [(called, a_arg, _, _)] = calls
    assert called == "nn" and a_arg.data_ptr() == a.data_ptr()


# ---- sizes the kernels cannot take: zero padding ------------------------------------------------


@pytest.mark.parametrize("m, n, k", [(5, 7, 13), (17, 8, 3), (9, 33, 16), (1, 1, 1)])
def test_odd_sizes_are_zero_padded_to_multiples_of_8(calls, m: int, n: int, k: int) -> None:
    a, b = randn(m, k, dtype=torch.bfloat16), randn(k, n, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b)
    assert d.shape == (m, n) and d.is_contiguous()
    assert calc_diff(d, product(a, b)) < 1e-5
    [(called, a_arg, b_arg, d_arg)] = calls
    k_pad, n_pad = -(-k // 8) * 8, -(-n // 8) * 8
    assert called == "nn" and a_arg.shape == (m, k_pad) and b_arg.shape == (k_pad, n_pad)
    assert d_arg.shape == (m, n_pad)


def test_odd_k_needs_no_padding_when_k_is_the_outer_dim_of_both(calls) -> None:
    a = randn(13, 16, dtype=torch.bfloat16).T  # a [16, 13] stored as [K=13, M=16]
    b = randn(13, 24, dtype=torch.bfloat16, seed=1)  # stored [K=13, N=24]
    d = deepgemm.matmul(a, b)
    assert calc_diff(d, product(a, b)) < 1e-5
    [(called, a_arg, b_arg, _)] = calls
    assert called == "tn" and a_arg.shape == (13, 16) and b_arg.shape == (13, 24)


@pytest.mark.parametrize("m, n, k", [(0, 8, 16), (8, 0, 16), (4, 8, 0)])
def test_empty_sizes(m: int, n: int, k: int) -> None:
    for precision in ("bf16", "fp8"):
        d = deepgemm.matmul(randn(m, k), randn(k, n), precision=precision)
        assert d.shape == (m, n) and d.dtype == torch.bfloat16
        assert torch.equal(d, torch.zeros(m, n, dtype=torch.bfloat16))


# ---- batched ------------------------------------------------------------------------------------


def test_batched_runs_one_gemm_per_entry(calls) -> None:
    a, b = randn(3, 20, 64, dtype=torch.float16), randn(3, 64, 24, dtype=torch.float16, seed=1)
    d = deepgemm.matmul(a, b)
    assert d.shape == (3, 20, 24) and d.dtype == torch.float16
    assert calc_diff(d, product(a, b)) < 1e-5
    assert [call[0] for call in calls] == ["nn"] * 3


def test_batched_transposed_views(calls) -> None:
    a = randn(2, 64, 16, dtype=torch.bfloat16).transpose(1, 2)  # [2, 16, 64], each entry a transposed view
    b = randn(2, 32, 64, dtype=torch.bfloat16, seed=1).transpose(1, 2)  # [2, 64, 32]
    d = deepgemm.matmul(a, b)
    assert calc_diff(d, product(a, b)) < 1e-5
    assert [call[0] for call in calls] == ["tt"] * 2


def test_shared_2d_b_flattens_the_batch_into_one_gemm(calls) -> None:
    a, b = randn(4, 10, 64, dtype=torch.bfloat16), randn(64, 24, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b)
    assert d.shape == (4, 10, 24)
    assert calc_diff(d, product(a, b)) < 1e-5
    [(called, a_arg, _, d_arg)] = calls
    assert called == "nn" and a_arg.shape == (40, 64) and d_arg.shape == (40, 24)


# ---- FP8 ----------------------------------------------------------------------------------------


def _fp8_by_hand(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The calls ``matmul(precision="fp8")`` stands for, written out."""
    a_q = deepgemm.per_token_cast_to_fp8(a)
    b_q = deepgemm.per_block_cast_to_fp8(b.T)
    d = torch.empty(a.shape[0], b.shape[1], dtype=out_dtype)
    return deepgemm.fp8_gemm_nt(a_q, b_q, d)


@pytest.mark.parametrize("m, n, k", [(64, 256, 512), (130, 136, 272), (4, 1024, 1536)])
def test_fp8_close_to_the_unquantized_product(m: int, n: int, k: int) -> None:
    a, b = randn(m, k, dtype=torch.bfloat16), randn(k, n, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b, precision="fp8")
    assert d.dtype == torch.bfloat16 and d.shape == (m, n)
    assert calc_diff(d, product(a, b)) < 1e-3
    assert torch.equal(d, _fp8_by_hand(a, b))


def test_fp8_precision_as_torch_dtype_and_fp32_inputs() -> None:
    a, b = randn(64, 256), randn(256, 128, seed=1)  # float32: fp8 quantises them directly
    d = deepgemm.matmul(a, b, precision=torch.float8_e4m3fn)
    assert calc_diff(d, product(a, b)) < 1e-3
    assert torch.equal(d, _fp8_by_hand(a, b))


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16])
def test_fp8_out_dtypes(out_dtype: torch.dtype) -> None:
    a, b = randn(64, 256, dtype=torch.bfloat16), randn(256, 128, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b, precision="fp8", out_dtype=out_dtype)
    assert d.dtype == out_dtype
    assert calc_diff(d, product(a, b)) < 1e-3
    # FP16 is converted from the FP32 result.
    assert torch.equal(d, _fp8_by_hand(a, b, torch.float32).to(out_dtype))


def test_fp8_n_not_a_multiple_of_8_is_padded() -> None:
    a, b = randn(64, 256, dtype=torch.bfloat16), randn(256, 203, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b, precision="fp8")
    assert d.shape == (64, 203)
    assert calc_diff(d, product(a, b)) < 1e-3
    a_q, b_q = deepgemm.per_token_cast_to_fp8(a), deepgemm.per_block_cast_to_fp8(b.T)
    assert calc_diff(d, deepgemm.testing.ref_fp8_gemm_nt(a_q, b_q)) < 1e-5


def test_fp8_batched_and_shared_b() -> None:
    a, b3 = randn(2, 48, 256, dtype=torch.bfloat16), randn(2, 256, 128, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b3, precision="fp8")
    assert calc_diff(d, product(a, b3)) < 1e-3
    for i in range(2):
        assert torch.equal(d[i], _fp8_by_hand(a[i], b3[i]))
    b2 = b3[0]
    d = deepgemm.matmul(a, b2, precision="fp8")
    assert d.shape == (2, 48, 128)
    assert torch.equal(d, _fp8_by_hand(a.reshape(96, 256), b2).view(2, 48, 128))


# ---- NumPy --------------------------------------------------------------------------------------


def test_numpy_float16_runs_fp16_and_returns_float16() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((33, 72)).astype(np.float16), rng.standard_normal((72, 40)).astype(np.float16)
    d = deepgemm.matmul(a, b)
    assert type(d) is np.ndarray and d.dtype == np.float16 and d.shape == (33, 40)
    assert calc_diff(torch.from_numpy(d), product(torch.from_numpy(a), torch.from_numpy(b))) < 1e-5


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_numpy_float64_with_precision(precision: str, dtype: torch.dtype) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 17, 29)), rng.standard_normal((29, 13))
    d = deepgemm.matmul(a, b, precision=precision)
    # NumPy has no bfloat16: BF16 runs return float32, written by the GEMM directly.
    assert type(d) is np.ndarray and d.dtype == (np.float32 if precision == "bf16" else np.float16)
    assert d.shape == (3, 17, 13)
    assert calc_diff(torch.from_numpy(d), product(torch.from_numpy(a), torch.from_numpy(b), dtype)) < 1e-5


def test_numpy_bf16_out_dtype_comes_back_as_float32_of_bf16_values() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((16, 32)).astype(np.float32), rng.standard_normal((32, 24)).astype(np.float32)
    d = deepgemm.matmul(a, b, precision="bf16", out_dtype=torch.bfloat16)
    assert d.dtype == np.float32
    as_torch = torch.from_numpy(d)
    assert torch.equal(as_torch, as_torch.bfloat16().float())  # every value is a BF16 value
    assert calc_diff(as_torch, product(torch.from_numpy(a), torch.from_numpy(b), torch.bfloat16)) < 1e-5
    assert deepgemm.matmul(a, b, precision="bf16", out_dtype=np.float16).dtype == np.float16


def test_numpy_fp8() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 256)).astype(np.float32), rng.standard_normal((256, 128))
    d = deepgemm.matmul(a, b, precision="fp8", device="cpu")
    assert type(d) is np.ndarray and d.dtype == np.float32
    assert calc_diff(torch.from_numpy(d), product(torch.from_numpy(a), torch.from_numpy(b))) < 1e-3


def test_numpy_read_only_and_negative_stride_inputs() -> None:
    rng = np.random.default_rng(4)
    a = rng.standard_normal((16, 32)).astype(np.float16)
    a.flags.writeable = False
    b = rng.standard_normal((32, 24)).astype(np.float16)[::-1]
    d = deepgemm.matmul(a, b)
    reference = torch.from_numpy(a.astype(np.float64) @ b.astype(np.float64))
    assert calc_diff(torch.from_numpy(d), reference) < 1e-5


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the default on a machine without a GPU")
def test_numpy_defaults_to_the_cpu_without_a_gpu() -> None:
    d = deepgemm.matmul(np.ones((8, 16), np.float16), np.ones((16, 8), np.float16))
    assert np.array_equal(d, np.full((8, 8), 16, np.float16))


# ---- out= and device= ---------------------------------------------------------------------------


def test_out_receives_the_result() -> None:
    a, b = randn(24, 64, dtype=torch.bfloat16), randn(64, 40, dtype=torch.bfloat16, seed=1)
    out = torch.empty(24, 40, dtype=torch.bfloat16)
    assert deepgemm.matmul(a, b, out=out) is out
    assert calc_diff(out, product(a, b)) < 1e-5


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_out_view_in_a_larger_buffer_is_written_and_nothing_else(precision: str) -> None:
    a, b = randn(24, 64, dtype=torch.bfloat16), randn(64, 40, dtype=torch.bfloat16, seed=1)
    buf = torch.full((30, 50), -7.0)
    out = buf[3:27, 5:45]  # float32, misaligned start: written through a copy
    assert deepgemm.matmul(a, b, precision=precision, out=out) is out
    assert calc_diff(out, product(a, b)) < (1e-5 if precision == "bf16" else 1e-3)
    untouched = torch.ones_like(buf, dtype=torch.bool)
    untouched[3:27, 5:45] = False
    assert torch.all(buf[untouched] == -7.0)


def test_out_dtype_defaults_to_out_dtype_and_batched_out() -> None:
    a, b = randn(2, 16, 32, dtype=torch.float16), randn(32, 24, dtype=torch.float16, seed=1)
    out = torch.empty(2, 24, 16).transpose(1, 2)  # float32 [2, 16, 24], not contiguous
    deepgemm.matmul(a, b, out=out)
    assert calc_diff(out, product(a, b)) < 1e-12


def test_device_cpu_keeps_torch_inputs_on_the_cpu() -> None:
    a, b = randn(8, 16, dtype=torch.bfloat16), randn(16, 8, dtype=torch.bfloat16, seed=1)
    d = deepgemm.matmul(a, b, device="cpu")
    assert d.device.type == "cpu"
    assert deepgemm.matmul(a, b, device=torch.device("cpu")).device.type == "cpu"


# ---- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, error, match", [
    (np.ones((4, 8), np.int32), np.ones((8, 8), np.int32), TypeError,
     "float32, float64 or int8, found torch.int32"),
    (torch.ones(4, 8, dtype=torch.int8), torch.ones(8, 8, dtype=torch.int8).float(), TypeError, "same dtype"),
    (randn(4, 8, dtype=torch.float64).to(torch.complex64), randn(8, 8), TypeError, "complex"),
    (np.ones((4, 8), object), np.ones((8, 8), object), TypeError, "NumPy dtype object"),
    (randn(4, 8, dtype=BF16), randn(8, 8, dtype=torch.float16), TypeError, "same dtype"),
    (randn(4, 8, dtype=torch.float8_e4m3fn), randn(8, 8, dtype=torch.float8_e4m3fn), TypeError,
     "must be bfloat16, float16, float32, float64 or int8"),
    (randn(4, 8, dtype=BF16), np.ones((8, 8), np.float16), TypeError, "same kind"),
    ([[1.0]], [[1.0]], TypeError, "a must be a torch.Tensor or a numpy.ndarray, got list"),
    (randn(4, 8, dtype=BF16), 3.0, TypeError, "b must be a torch.Tensor or a numpy.ndarray, got float"),
    (randn(4, 8, dtype=BF16), randn(16, 8, dtype=BF16), ValueError, "a's K .* must equal b's K"),
    (randn(8, dtype=BF16), randn(8, 8, dtype=BF16), ValueError, r"a must be 2-D \[M, K\] or 3-D"),
    (randn(2, 4, 8, dtype=BF16), randn(1, 1, 8, 8, dtype=BF16), ValueError, r"b must be 2-D \[K, N\] or 3-D"),
    (randn(4, 8, dtype=BF16), randn(2, 8, 8, dtype=BF16), ValueError, "2-D a with a 3-D b is not supported"),
    (randn(2, 4, 8, dtype=BF16), randn(3, 8, 8, dtype=BF16), ValueError, "same batch size"),
])
def test_input_errors(a, b, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        deepgemm.matmul(a, b)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"precision": "fp4"}, ValueError, r"precision must be 'float32' \(or 'fp32'\), 'tf32', 'float16'"),
    ({"dtype": "fp64"}, ValueError, r"dtype must be .*'bfloat16' \(or 'bf16'\), 'fp8', 'int8'"),
    ({"dtype": np.float64}, ValueError, "dtype must be .* got <class 'numpy.float64'>"),
    ({"dtype": float}, ValueError, "dtype must be"),
    ({"precision": 16}, ValueError, "precision must be"),
    ({"dtype": "bf16", "precision": "fp16"}, ValueError, "disagree; they are one argument"),
    ({"out_dtype": torch.float64}, TypeError, "torch.bfloat16, torch.float16 or torch.float32"),
    ({"out_dtype": "int8"}, TypeError, "out_dtype 'int8' is not supported"),
    ({"out": torch.empty(4, 9, dtype=BF16)}, ValueError, r"out must have the result's shape \(4, 8\)"),
    ({"out": torch.empty(4, 8, dtype=torch.float16), "out_dtype": BF16}, ValueError, "out has dtype"),
    ({"out": torch.empty(4, 8, dtype=torch.int32)}, TypeError, "out.dtype torch.int32 is not supported"),
    ({"out": np.empty((4, 8))}, TypeError, "out must be a torch.Tensor"),
    ({"device": "tpu"}, ValueError, "device must be 'cpu', 'cuda'"),
    ({"device": "mps"}, ValueError, "device must be 'cpu', 'cuda'"),
])
def test_argument_errors(kwargs: dict, error: type, match: str) -> None:
    a, b = randn(4, 24, dtype=BF16), randn(24, 8, dtype=BF16)  # K = 24: fine for 16-bit, not for FP8
    with pytest.raises(error, match=match):
        deepgemm.matmul(a, b, **kwargs)


def test_out_with_numpy_inputs_is_refused() -> None:
    with pytest.raises(TypeError, match="out= is only supported for torch inputs"):
        deepgemm.matmul(np.ones((4, 8), np.float16), np.ones((8, 8), np.float16), out=torch.empty(4, 8))


def test_torch_inputs_on_two_devices_are_refused() -> None:
    a = randn(4, 8, dtype=BF16)
    b = torch.empty(8, 8, dtype=BF16, device="meta")
    with pytest.raises(ValueError, match="a and b must be on one device"):
        deepgemm.matmul(a, b)
    with pytest.raises(ValueError, match="must be on a CPU or CUDA device"):
        deepgemm.matmul(a.to("meta"), b)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"device='cuda' was asked for, but torch.cuda.is_available\(\)"):
        deepgemm.matmul(np.ones((4, 8), np.float16), np.ones((8, 8), np.float16), device="cuda")
