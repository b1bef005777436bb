"""deepgemm.matmul on a Hopper GPU: CUDA tensors in every layout, NumPy arrays through the GPU, ``out=``,
and FP8 results bitwise equal to quantisation plus ``fp8_gemm_nt`` called by hand."""

import numpy as np
import pytest
import torch

import deepgemm
from deepgemm.testing import calc_diff

from .matmul_support import product, record_16bit_calls

pytestmark = pytest.mark.gpu

BF16 = torch.bfloat16
SHAPES = [(64, 2112, 7168), (128, 7168, 2048), (4096, 4096, 7168), (1, 8, 16), (129, 1000, 208), (7, 13, 29)]


def randn(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(*shape, generator=gen, device="cuda").to(dtype)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    return record_16bit_calls(monkeypatch)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("a_transposed, b_transposed, layout",
                         [(False, False, "nn"), (False, True, "nt"), (True, False, "tn"), (True, True, "tt")])
def test_16bit_layouts(calls, dtype, m, n, k, a_transposed, b_transposed, layout) -> None:
    a = randn(k, m, dtype=dtype).T if a_transposed else randn(m, k, dtype=dtype)
    b = randn(n, k, dtype=dtype, seed=1).T if b_transposed else randn(k, n, dtype=dtype, seed=1)
    d = deepgemm.matmul(a, b)
    torch.cuda.synchronize()
    assert d.device.type == "cuda" and d.dtype == dtype and d.shape == (m, n)
    assert calc_diff(d, product(a, b)) < 1e-5
    if m % 8 == 0 and n % 8 == 0 and k % 8 == 0:  # every size the kernels take: no copy, this layout
        [(called, a_arg, b_arg, _)] = calls
        assert called == layout
        assert a_arg.data_ptr() == a.data_ptr() and b_arg.data_ptr() == b.data_ptr()


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_fp32_inputs_with_precision(precision: str, dtype: torch.dtype) -> None:
    a, b = randn(257, 1536), randn(1536, 2112, seed=1)
    d = deepgemm.matmul(a, b, precision=precision, out_dtype=torch.float32)
    assert d.dtype == torch.float32
    assert calc_diff(d, product(a, b, dtype)) < 1e-5


def test_batched_and_shared_b(calls) -> None:
    a, b = randn(3, 100, 512, dtype=BF16), randn(3, 512, 256, dtype=BF16, seed=1)
    d = deepgemm.matmul(a, b)
    assert calc_diff(d, product(a, b)) < 1e-5
    assert [call[0] for call in calls] == ["nn"] * 3
    calls.clear()
    d = deepgemm.matmul(a, b[0])
    assert d.shape == (3, 100, 256)
    assert calc_diff(d, product(a, b[0])) < 1e-5
    [(_, a_arg, _, _)] = calls
    assert a_arg.shape == (300, 512)


def _fp8_by_hand(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype = BF16) -> torch.Tensor:
    a_q = deepgemm.per_token_cast_to_fp8(a)
    b_q = deepgemm.per_block_cast_to_fp8(b.T)
    d = torch.empty(a.shape[0], b.shape[1], dtype=out_dtype, device=a.device)
    return deepgemm.fp8_gemm_nt(a_q, b_q, d)


@pytest.mark.parametrize("m, n, k", [s for s in SHAPES if s[2] % 16 == 0])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32])
def test_fp8_is_bitwise_quantisation_plus_fp8_gemm_nt(m: int, n: int, k: int, out_dtype: torch.dtype) -> None:
    a, b = randn(m, k, dtype=BF16), randn(k, n, dtype=BF16, seed=1)
    d = deepgemm.matmul(a, b, precision="fp8", out_dtype=out_dtype)
    assert d.dtype == out_dtype
    assert torch.equal(d, _fp8_by_hand(a, b, out_dtype))
    if m * n >= 4096:  # enough outputs for the quantisation error to average out
        assert calc_diff(d, product(a, b)) < 1e-3


def test_fp8_odd_n_fp16_out_and_batched() -> None:
    a, b = randn(130, 512, dtype=BF16), randn(512, 203, dtype=BF16, seed=1)
    d = deepgemm.matmul(a, b, precision="fp8")
    assert d.shape == (130, 203) and calc_diff(d, product(a, b)) < 1e-3
    d16 = deepgemm.matmul(a, b[:, :200], precision="fp8", out_dtype=torch.float16)
    assert d16.dtype == torch.float16
    assert torch.equal(d16, _fp8_by_hand(a, b[:, :200], torch.float32).half())
    a3, b3 = randn(2, 64, 512, dtype=BF16), randn(2, 512, 256, dtype=BF16, seed=1)
    d3 = deepgemm.matmul(a3, b3, precision="fp8")
    for i in range(2):
        assert torch.equal(d3[i], _fp8_by_hand(a3[i], b3[i]))


@pytest.mark.parametrize("device", ["cuda", None])
def test_numpy_through_the_gpu(calls, device) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 512)), rng.standard_normal((512, 136))
    d = deepgemm.matmul(a, b, precision="bf16", device=device)
    assert type(d) is np.ndarray and d.dtype == np.float32 and d.shape == (200, 136)
    ref = product(torch.from_numpy(a), torch.from_numpy(b), BF16)
    assert calc_diff(torch.from_numpy(d), ref) < 1e-5
    [(_, a_arg, _, _)] = calls
    assert a_arg.is_cuda  # a Hopper GPU is present, so None runs there too

    a16, b16 = a.astype(np.float16), b.astype(np.float16)
    d16 = deepgemm.matmul(a16, b16, device=device)
    assert d16.dtype == np.float16
    assert calc_diff(torch.from_numpy(d16), product(torch.from_numpy(a16), torch.from_numpy(b16))) < 1e-5

    d8 = deepgemm.matmul(a, b, precision="fp8", device=device)
    assert d8.dtype == np.float32
    assert calc_diff(torch.from_numpy(d8), product(torch.from_numpy(a), torch.from_numpy(b))) < 1e-3


def test_torch_cpu_inputs_moved_to_cuda() -> None:
    a, b = randn(64, 256, dtype=BF16).cpu(), randn(256, 128, dtype=BF16, seed=1).cpu()
    d = deepgemm.matmul(a, b, device="cuda")
    assert d.is_cuda
    assert calc_diff(d.cpu(), product(a, b)) < 1e-5


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_out_on_cuda(precision: str) -> None:
    a, b = randn(64, 512, dtype=BF16), randn(512, 256, dtype=BF16, seed=1)
    out = torch.empty(64, 256, dtype=BF16, device="cuda")
    assert deepgemm.matmul(a, b, precision=precision, out=out) is out
    assert calc_diff(out, product(a, b)) < (1e-5 if precision == "bf16" else 1e-3)
    buf = torch.full((70, 270), -7.0, device="cuda")
    view = buf[3:67, 5:261]  # float32, misaligned start: written through a copy
    deepgemm.matmul(a, b, precision=precision, out=view)
    assert calc_diff(view, product(a, b)) < (1e-5 if precision == "bf16" else 1e-3)
    untouched = torch.ones_like(buf, dtype=torch.bool)
    untouched[3:67, 5:261] = False
    assert torch.all(buf[untouched] == -7.0)


def test_out_on_another_device_is_refused() -> None:
    a, b = randn(8, 16, dtype=BF16), randn(16, 8, dtype=BF16, seed=1)
    with pytest.raises(ValueError, match="out must be on the device the GEMM runs on"):
        deepgemm.matmul(a, b, out=torch.empty(8, 8, dtype=BF16))
