"""The 1D1D FP8 GEMMs (1x128 scales on both operands) on CPU tensors: argument checks naming each rule, the
CPU path against a float64 product of the dequantised operands, accumulation into ``c``/``d``, the
k-grouped op's group bookkeeping, torch.compile, and the transposed block-scaled weight helper."""

import pytest
import torch

import deepgemm
from deepgemm import fp8_gemm_nt_1d1d, k_grouped_fp8_gemm_nt_1d1d, transpose_fp8_block_scaled
from deepgemm.quant import per_block_cast_to_fp8, per_token_cast_to_fp8
from deepgemm.testing import calc_diff, ref_fp8_gemm_nt_1d1d, ref_k_grouped_fp8_gemm_nt_1d1d

FP8 = torch.float8_e4m3fn


def operand(rows: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return per_token_cast_to_fp8(torch.randn(rows, k, generator=gen, dtype=torch.bfloat16))


def dequantised(op: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """float64 ``[rows, K]``: each FP8 value times its row's scale for its 128-wide K block."""
    x, s = op
    return x.double() * s.double().repeat_interleave(128, dim=1)[:, : x.shape[1]]


def fp64_product(a, b) -> torch.Tensor:
    return dequantised(a) @ dequantised(b).T


# ---- dense ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m, n, k", [(1, 1, 128), (7, 65, 256), (129, 7, 384), (65, 1000, 128),
                                     (1000, 129, 512)])
def test_fp32_output_matches_the_fp64_product(m, n, k):
    a, b = operand(m, k, 0), operand(n, k, 1)
    d = torch.full((m, n), float("nan"))
    assert fp8_gemm_nt_1d1d(a, b, d) is d
    assert calc_diff(d, fp64_product(a, b)) < 1e-10
    assert torch.equal(d, ref_fp8_gemm_nt_1d1d(a, b))


def test_scales_are_per_row_of_b_not_per_128_rows():
    m, n, k = 5, 200, 256
    a, (b, sb) = operand(m, k, 2), operand(n, k, 3)
    sb = sb * torch.linspace(0.5, 2.0, n)[:, None]  # every row of B its own scale
    d = torch.empty(m, n)
    fp8_gemm_nt_1d1d(a, (b, sb), d)
    assert calc_diff(d, fp64_product(a, (b, sb))) < 1e-10


def test_bf16_output_is_the_rounded_fp32_result():
    a, b = operand(33, 4096, 4), operand(48, 4096, 5)
    d = torch.empty(33, 48, dtype=torch.bfloat16)
    fp8_gemm_nt_1d1d(a, b, d)
    assert torch.equal(d, ref_fp8_gemm_nt_1d1d(a, b).bfloat16())


def test_c_is_added_and_c_may_be_d():
    m, n, k = 17, 40, 256
    a, b = operand(m, k, 6), operand(n, k, 7)
    c = torch.randn(m, n, generator=torch.Generator().manual_seed(8))
    d = torch.empty(m, n)
    fp8_gemm_nt_1d1d(a, b, d, c)
    expected = ref_fp8_gemm_nt_1d1d(a, b) + c
    assert torch.equal(d, expected)
    acc = c.clone()
    assert fp8_gemm_nt_1d1d(a, b, acc, acc) is acc
    assert torch.equal(acc, expected)
    assert calc_diff(acc, fp64_product(a, b) + c.double()) < 1e-10


def test_strided_views_and_a_transposed_c():
    m, n, k = 9, 24, 256
    a, b = operand(m, k, 9), operand(n, k, 10)
    buffer = torch.full((m, n + 5), -3.0)
    d = buffer[:, 2 : 2 + n]
    c = torch.randn(n, m, generator=torch.Generator().manual_seed(11)).T
    fp8_gemm_nt_1d1d((a[0], a[1].T.contiguous().T), b, d, c)
    assert torch.equal(d, ref_fp8_gemm_nt_1d1d(a, b) + c)
    assert buffer[:, :2].eq(-3).all() and buffer[:, 2 + n :].eq(-3).all()


def test_degenerate_sizes():
    a, b = operand(0, 128, 0), operand(8, 128, 1)
    d = torch.empty(0, 8)
    assert fp8_gemm_nt_1d1d(a, b, d) is d
    a, b = operand(4, 0, 0), operand(8, 0, 1)
    d = torch.full((4, 8), 2.0)
    assert fp8_gemm_nt_1d1d(a, b, d).eq(0).all()
    c = torch.randn(4, 8)
    assert torch.equal(fp8_gemm_nt_1d1d(a, b, d, c), c)


# ---- dense: argument checks ----------------------------------------------------------------------------


def _dense_args():
    return operand(8, 256, 0), operand(16, 256, 1), torch.empty(8, 16)


def test_rejects_k_not_a_multiple_of_128():
    a, b = operand(8, 144, 0), operand(16, 144, 1)
    with pytest.raises(ValueError, match="K must be a multiple of 128"):
        fp8_gemm_nt_1d1d(a, b, torch.empty(8, 16))


def test_rejects_128x128_scales_for_b():
    a, (b, _) = operand(8, 256, 0), operand(256, 256, 1)
    sb_blocks = torch.ones(2, 2)
    with pytest.raises(ValueError, match=r"sb \(b\[1\]\) must have shape \[N, ceil\(K/128\)\]"):
        fp8_gemm_nt_1d1d(a, (b, sb_blocks), torch.empty(8, 256))


@pytest.mark.parametrize("bad, error, match", [
    ("a_pair", TypeError, "a must be a"),
    ("a_dtype", TypeError, r"A \(a\[0\]\) must have dtype torch.float8_e4m3fn"),
    ("sa_dtype", TypeError, r"sa \(a\[1\]\) must have dtype torch.float32"),
    ("b_k", ValueError, r"B \(b\[0\]\) must have shape"),
    ("d_dtype", TypeError, "d must have dtype torch.float32 or torch.bfloat16"),
    ("d_shape", ValueError, r"d must have shape \[M, N\]"),
    ("d_rows", ValueError, "d must have contiguous rows"),
    ("c_bf16_d", ValueError, "c needs a float32 d"),
    ("c_dtype", TypeError, "c must have dtype torch.float32"),
    ("c_shape", ValueError, r"c must have shape \[M, N\]"),
    ("c_overlap", ValueError, "c must be d itself"),
    ("a_stride", ValueError, r"A \(a\[0\]\) must have contiguous rows"),
    ("device", ValueError, "all tensors must be on one device"),
])
def test_dense_argument_checks(bad, error, match):
    a, b, d = _dense_args()
    c = None
    if bad == "a_pair":
        a = a[0]
    elif bad == "a_dtype":
        a = (a[0].float(), a[1])
    elif bad == "sa_dtype":
        a = (a[0], a[1].double())
    elif bad == "b_k":
        b = operand(16, 384, 1)
    elif bad == "d_dtype":
        d = d.half()
    elif bad == "d_shape":
        d = torch.empty(8, 17)
    elif bad == "d_rows":
        d = torch.empty(16, 8).T
    elif bad == "c_bf16_d":
        d, c = d.bfloat16(), torch.empty(8, 16)
    elif bad == "c_dtype":
        c = torch.empty(8, 16, dtype=torch.bfloat16)
    elif bad == "c_shape":
        c = torch.empty(8, 8)
    elif bad == "c_overlap":
        buffer = torch.empty(9, 16)
        d, c = buffer[:8], buffer[1:]
    elif bad == "a_stride":
        a = (torch.empty(256, 8, dtype=FP8).T, a[1])
    elif bad == "device":
        d = torch.empty(8, 16, device="meta")
    with pytest.raises(error, match=match):
        fp8_gemm_nt_1d1d(a, b, d, c)


# ---- k-grouped -----------------------------------------------------------------------------------------


def grouped_problem(m: int, n: int, ks: list[int], seed: int):
    k_sum = sum(ks)
    return operand(m, k_sum, seed), operand(n, k_sum, seed + 1), torch.tensor(ks, dtype=torch.int32)


def fp64_grouped(a, b, ks) -> torch.Tensor:
    A, B = dequantised(a), dequantised(b)
    out, start = [], 0
    for k in ks:
        out.append(A[:, start : start + k] @ B[:, start : start + k].T)
        start += k
    return torch.stack(out)


@pytest.mark.parametrize("m, n, ks", [
    (7, 65, [128, 0, 256]),
    (129, 768, [0, 128]),
    (1, 1, [384]),
    (65, 129, [256, 128, 0, 0, 512]),
])
def test_k_grouped_matches_the_fp64_product(m, n, ks):
    a, b, ks_tensor = grouped_problem(m, n, ks, 20)
    d = torch.full((len(ks), m, n), float("nan"))
    assert k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks_tensor, ks_host=ks) is d
    assert calc_diff(d, fp64_grouped(a, b, ks)) < 1e-10
    assert torch.equal(d, ref_k_grouped_fp8_gemm_nt_1d1d(a, b, ks))
    for group, k in enumerate(ks):
        if k == 0:
            assert d[group].eq(0).all()


def test_k_grouped_accumulates_into_d_and_matches_a_loop_of_dense_calls():
    m, n, ks = 16, 72, [256, 0, 128]
    a, b, ks_tensor = grouped_problem(m, n, ks, 30)
    c = torch.randn(len(ks), m, n, generator=torch.Generator().manual_seed(31))
    d = c.clone()
    k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks_tensor, c=d)
    start = 0
    for group, k in enumerate(ks):
        expected = c[group].clone()
        kb = slice(start // 128, (start + k) // 128)
        fp8_gemm_nt_1d1d((a[0][:, start : start + k], a[1][:, kb]), (b[0][:, start : start + k], b[1][:, kb]),
                         expected, expected)
        assert torch.equal(d[group], expected)
        start += k
    out = torch.empty_like(c)
    k_grouped_fp8_gemm_nt_1d1d(a, b, out, ks_tensor, c=c)
    assert torch.equal(out, d)


def test_k_grouped_degenerate_sizes():
    a, b, ks = grouped_problem(4, 8, [0, 0], 40)
    d = torch.full((2, 4, 8), 5.0)
    assert k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks).eq(0).all()
    c = torch.randn(2, 4, 8)
    assert torch.equal(k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks, c=c), c)
    a, b, ks = grouped_problem(4, 8, [], 41)
    d = torch.empty(0, 4, 8)
    assert k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks) is d


@pytest.mark.parametrize("bad, error, match", [
    ("ks_dtype", TypeError, "ks must have dtype torch.int32"),
    ("ks_rank", ValueError, r"ks must be 1-D \[G\]"),
    ("ks_value", ValueError, r"ks\[1\] must be a non-negative multiple of 128"),
    ("ks_negative", ValueError, r"ks\[0\] must be a non-negative multiple of 128"),
    ("ks_sum", ValueError, "ks must sum to K_sum = 384"),
    ("host_type", TypeError, "ks_host must be None or a list of ints"),
    ("host_entry", TypeError, r"ks_host\[0\] must be an int"),
    ("host_len", ValueError, "ks_host must have G = len"),
    ("host_value", ValueError, r"ks_host\[0\] must be a non-negative multiple of 128"),
    ("host_mismatch", ValueError, "ks_host must equal ks"),
    ("d_dtype", TypeError, "d must have dtype torch.float32"),
    ("d_shape", ValueError, r"d must have shape \[G, M, N\]"),
    ("k_sum", ValueError, "K_sum must be a multiple of 128"),
    ("c_shape", ValueError, r"c must have shape \[G, M, N\]"),
])
def test_k_grouped_argument_checks(bad, error, match):
    a, b, ks = grouped_problem(8, 16, [256, 128], 50)
    d, c, host = torch.empty(2, 8, 16), None, None
    if bad == "ks_dtype":
        ks = ks.long()
    elif bad == "ks_rank":
        ks = ks[None]
    elif bad == "ks_value":
        ks, d = torch.tensor([256, 64, 64], dtype=torch.int32), torch.empty(3, 8, 16)
    elif bad == "ks_negative":
        ks = torch.tensor([-128, 512], dtype=torch.int32)
    elif bad == "ks_sum":
        ks = torch.tensor([128, 128], dtype=torch.int32)
    elif bad == "host_type":
        host = "256,128"
    elif bad == "host_entry":
        host = [256.0, 128]
    elif bad == "host_len":
        host = [384]
    elif bad == "host_value":
        host = [200, 184]
    elif bad == "host_mismatch":
        host = [128, 256]
    elif bad == "d_dtype":
        d = d.bfloat16()
    elif bad == "d_shape":
        d = torch.empty(3, 8, 16)
    elif bad == "k_sum":
        a, b = operand(8, 400, 0), operand(16, 400, 1)
    elif bad == "c_shape":
        c = torch.empty(8, 16)
    with pytest.raises(error, match=match):
        k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks, ks_host=host, c=c)


# ---- torch.compile -------------------------------------------------------------------------------------


def test_both_ops_compile_into_one_graph_and_match_eager():
    a, b, ks = grouped_problem(16, 32, [128, 0, 256], 60)
    calls = [
        (lambda d: fp8_gemm_nt_1d1d(a, b, d), (16, 32)),
        (lambda d: fp8_gemm_nt_1d1d(a, b, d, d), (16, 32)),
        (lambda d: k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks, [128, 0, 256], d), (3, 16, 32)),
        (lambda d: k_grouped_fp8_gemm_nt_1d1d(a, b, d, ks), (3, 16, 32)),
    ]
    for call, shape in calls:
        torch._dynamo.reset()
        eager = torch.full(shape, 1.5)
        call(eager)
        d = torch.full(shape, 1.5)
        assert torch.compile(call, fullgraph=True, backend="aot_eager")(d) is d
        assert torch.equal(d, eager)


def test_public_names():
    for name in ("fp8_gemm_nt_1d1d", "k_grouped_fp8_gemm_nt_1d1d", "transpose_fp8_block_scaled"):
        assert name in deepgemm.__all__
    assert "fp8_gemm_nt_1d1d" in deepgemm.ops.__all__ and "k_grouped_fp8_gemm_nt_1d1d" in deepgemm.ops.__all__
    assert "transpose_fp8_block_scaled" in deepgemm.quant.__all__


# ---- transposed block-scaled weights ---------------------------------------------------------------------


def _dequantise_blocks(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    rows, cols = w.shape[-2:]
    scale = s.repeat_interleave(128, dim=-2)[..., :rows, :].repeat_interleave(128, dim=-1)[..., :cols]
    return w.float() * scale


@pytest.mark.parametrize("shape", [(256, 384), (200, 72), (1, 129), (3, 130, 260)])
@pytest.mark.parametrize("seed", [0, 1])
def test_transpose_equals_quantising_the_transposed_dequantised_weight(shape, seed):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3
    w[..., :64, :64] *= 1e-7  # a block under the amax floor
    w_fp8, sw = per_block_cast_to_fp8(w)
    wt, swt = transpose_fp8_block_scaled(w_fp8, sw)
    expected_wt, expected_swt = per_block_cast_to_fp8(_dequantise_blocks(w_fp8, sw).transpose(-1, -2))
    assert wt.is_contiguous() and swt.is_contiguous()
    assert wt.shape == expected_wt.shape and swt.shape == expected_swt.shape
    assert torch.equal(wt.view(torch.uint8), expected_wt.view(torch.uint8))
    assert torch.equal(swt, expected_swt)
    assert torch.equal(_dequantise_blocks(wt, swt), _dequantise_blocks(w_fp8, sw).transpose(-1, -2))


@pytest.mark.parametrize("bad, error, match", [
    ("w_type", TypeError, "w_fp8 must be a torch.Tensor"),
    ("w_dtype", TypeError, "w_fp8 must have dtype torch.float8_e4m3fn"),
    ("s_dtype", TypeError, "sw must have dtype torch.float32"),
    ("rank", ValueError, r"w_fp8 must be \[N, K\] or \[G, N, K\]"),
    ("s_shape", ValueError, r"sw must have shape \[ceil\(N/128\), ceil\(K/128\)\]"),
])
def test_transpose_argument_checks(bad, error, match):
    w, s = per_block_cast_to_fp8(torch.randn(256, 256))
    if bad == "w_type":
        w = [1]
    elif bad == "w_dtype":
        w = w.float()
    elif bad == "s_dtype":
        s = s.double()
    elif bad == "rank":
        w = w[0]
    elif bad == "s_shape":
        s = s[:1]
    with pytest.raises(error, match=match):
        transpose_fp8_block_scaled(w, s)
