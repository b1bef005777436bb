"""The benchmark's providers, the parts that run without CUDA: cuBLAS scale layouts and per-tensor
quantisation, the per-group loops, the 16-bit layouts, and the config a grouped problem selects."""

import pytest
import torch

from deepgemm.bench import providers
from deepgemm.bench.providers import (
    BLOCKWISE_ROW_MULTIPLE,
    CUBLAS_BF16_LAYOUT,
    CUBLAS_BF16_LOOP,
    CUBLAS_BLOCKWISE_LOOP,
    DEEPGEMM_BF16,
    DEEPGEMM_CONTIGUOUS,
    _blockwise_a_operands,
    _blockwise_b_scale_candidates,
    _per_tensor_cast_to_fp8,
)
from deepgemm.bench.runner import deepgemm_config, run_provider
from deepgemm.bench.suites import Problem
from deepgemm.testing import MAJORS, calc_diff, make_bf16_inputs, make_grouped_inputs, ref_fp8_gemm_nt

from .support import CPU, requires_grouped_ops


def test_blockwise_b_scales_match_torch_layout_rules():
    # KB a multiple of 4: one layout, sfb.t() itself ([KB, NB], strides (1, KB)).
    sfb = torch.rand(17, 56)
    (scale_b,) = _blockwise_b_scale_candidates(sfb)
    assert scale_b.shape == (56, 17) and scale_b.stride() == (1, 56) and torch.equal(scale_b, sfb.t())
    # KB = 5: padded to 8 for newer torch, unpadded for older; the values are sfb's either way.
    sfb = torch.rand(3, 5)
    padded, plain = _blockwise_b_scale_candidates(sfb)
    assert padded.shape == (8, 3) and padded.stride() == (1, 8)
    assert torch.equal(padded[:5], sfb.t()) and not padded[5:].any()
    assert plain.shape == (5, 3) and plain.stride() == (1, 5)


def test_per_tensor_quantisation_is_within_fp8_accuracy():
    torch.manual_seed(0)
    a, b = torch.randn(64, 1024, dtype=torch.bfloat16), torch.randn(256, 1024, dtype=torch.bfloat16)
    (qa, sa), (qb, sb) = _per_tensor_cast_to_fp8(a), _per_tensor_cast_to_fp8(b)
    assert qa.dtype == torch.float8_e4m3fn and sa.numel() == 1 and sa.dtype == torch.float32
    assert qa.float().abs().max() == 448
    product = (qa.float() * sa) @ (qb.float() * sb).t()
    assert calc_diff(product, a.float() @ b.float().t()) < 1e-3


def _measure(run) -> dict:
    return {"us": 1.0}


def test_cublas_loop_runs_the_dense_blockwise_call_per_nonempty_group(monkeypatch):
    inputs = make_grouped_inputs("contiguous", 4, (37, 0, 128, 5), 136, 384, None, CPU, seed=2)
    result = run_provider(CUBLAS_BLOCKWISE_LOOP, inputs, _measure, ("us",))
    assert result["status"] == "unavailable" and "CUDA" in result["reason"]

    # Without CUDA, stand in for scaled_mm with the dense reference: the loop must hand each
    # non-empty group's valid rows and weights to the dense provider's code, and stack the outputs.
    seen = []

    def fake_blockwise(expert):
        seen.append(expert.a.shape[0])
        return lambda: ref_fp8_gemm_nt((expert.a, expert.sfa), (expert.b, expert.sfb)).bfloat16()

    monkeypatch.setattr(providers, "_require_cuda", lambda inputs: None)
    monkeypatch.setattr(providers, "_prepare_cublas_blockwise", fake_blockwise)
    result = run_provider(CUBLAS_BLOCKWISE_LOOP, inputs, _measure, ("us",))
    assert seen == [37, 128, 5]
    assert result["status"] == "ok" and result["diffs"]["fp8"] < 1e-5 and result["diffs"]["bf16"] < 1e-3


@pytest.mark.parametrize("major", MAJORS)
def test_cublas_bf16_runs_matmul_on_transposed_views(major, monkeypatch):
    inputs = make_bf16_inputs(40, 24, 72, major, CPU, seed=3)
    result = run_provider(CUBLAS_BF16_LAYOUT, inputs, _measure, ("us",))
    assert result["status"] == "unavailable" and "CUDA" in result["reason"]

    # torch.matmul runs on the CPU too: without the CUDA check the same code must give A·B.
    seen = []
    monkeypatch.setattr(providers, "_require_cuda", lambda inputs: None)
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: seen.append((a, b)) or torch.matmul(a, b))
    result = run_provider(CUBLAS_BF16_LAYOUT, inputs, _measure, ("us",))
    assert result["status"] == "ok" and result["diffs"]["bf16"] < 1e-5
    # Views of the stored tensors: the transposes copy nothing.
    a, b = seen[0]
    assert a.data_ptr() == inputs.a.data_ptr() and b.data_ptr() == inputs.b.data_ptr()
    assert (a.shape, b.shape) == ((40, 72), (72, 24))


@pytest.mark.parametrize("major", MAJORS)
def test_deepgemm_bf16_provider_calls_the_layouts_op(major):
    inputs = make_bf16_inputs(40, 24, 72, major, CPU, seed=3)
    result = run_provider(DEEPGEMM_BF16, inputs, _measure, ("us",))
    assert result["status"] == "ok" and result["diffs"]["bf16"] < 1e-5 and result["us"] == 1.0


def test_cublas_bf16_loop_multiplies_each_nonempty_group(monkeypatch):
    inputs = make_grouped_inputs(
        "masked", 4, (37, 0, 64, 5), 136, 384, 64, CPU, 2, operand_dtype=torch.bfloat16
    )
    result = run_provider(CUBLAS_BF16_LOOP, inputs, _measure, ("us",))
    assert result["status"] == "unavailable" and "CUDA" in result["reason"]
    monkeypatch.setattr(providers, "_require_cuda", lambda inputs: None)
    outputs = CUBLAS_BF16_LOOP.prepare(inputs)()
    assert [out.shape[0] for out in outputs] == [37, 64, 5]
    result = run_provider(CUBLAS_BF16_LOOP, inputs, _measure, ("us",))
    assert result["status"] == "ok" and result["diffs"]["bf16"] < 1e-5


@requires_grouped_ops
def test_grouped_provider_refuses_the_other_layout():
    inputs = make_grouped_inputs("masked", 2, 8, 128, 128, 128, CPU, seed=0)
    result = run_provider(DEEPGEMM_CONTIGUOUS, inputs, _measure, ("us",))
    assert result["status"] == "error" and "contiguous grouped inputs" in result["reason"]


def test_deepgemm_config_of_grouped_problems():
    import json

    from deepgemm.heuristics import BF16, FP8_1D2D, GemmShape, select_config


    # Contiguous: every group's rows with their padding; masked: the expected rows of one group.
    # 16-bit: the family, and whether B is stored [K, N], as the launcher builds the shape.
    expected = [
        (Problem(100, 4096, 7168, 4, "contiguous"), "fp8_1d2d",
         GemmShape(512, 4096, 7168, num_groups=4, layout="contiguous", family=FP8_1D2D)),
        (Problem(256, 7168, 2048, 4, "masked", 4096), "fp8_1d2d",
         GemmShape(256, 7168, 2048, num_groups=4, layout="masked", family=FP8_1D2D)),
        (Problem(100, 4096, 7168, 4, "contiguous"), "bf16",
         GemmShape(512, 4096, 7168, num_groups=4, layout="contiguous", family=BF16)),
        (Problem(4096, 7168, 2048, major="tn"), "bf16",
         GemmShape(4096, 7168, 2048, family=BF16, b_mn_major=True)),
        (Problem(4096, 7168, 2048, major="tt"), "bf16", GemmShape(4096, 7168, 2048, family=BF16)),
    ]
    for problem, family, shape in expected:
        config = deepgemm_config(problem, 132, family)
        assert config == select_config(shape, 132).as_dict() and config["family"] == family, problem
        assert json.loads(json.dumps(config)) == config
    assert "error" in deepgemm_config(Problem(1, 1, 1), 132, "no_such_family")


def test_deepgemm_config_is_the_launchers():
    """The config a record carries is the one the family's launcher picks: FP32 output where the suite's
    deepgemm provider writes it, a 3xTF32 product's three TF32 products of K, the weight-only records."""
    from deepgemm.bench.suites import SUITES
    from deepgemm.heuristics import W4A16, GemmShape, select_config
    from deepgemm.ops.fp8_1d1d.kernel import dense_config
    from deepgemm.ops.tf32.kernel import gemm_shape

    for suite, launcher in ((SUITES["tf32"], lambda p: select_config(gemm_shape(p.m, p.n, p.k, 1), 132)),
                            (SUITES["fp32"], lambda p: select_config(gemm_shape(p.m, p.n, p.k, 3), 132)),
                            (SUITES["wgrad"], lambda p: dense_config(p.m, p.n, p.k, 4, 132))):
        for problem in suite.problems:
            if problem.major == "nt":
                config = deepgemm_config(problem, 132, suite.family, suite.out_bytes)
                assert config == launcher(problem).as_dict(), (suite.name, problem)
    problem = Problem(16, 4096, 7168, 8, "masked", 64)
    config = deepgemm_config(problem, 132, SUITES["wonly"].family)
    shape = GemmShape(16, 4096, 7168, num_groups=8, layout="masked", family=W4A16)
    assert config == select_config(shape, 132).as_dict() and config["family"] == "w4a16"


@pytest.mark.parametrize("m", [1, 2, 4, 5, 8])
def test_blockwise_a_operands_are_m_major_and_padded_where_cublas_needs_it(m: int) -> None:
    kb = 7
    a = torch.randn(m, 128 * kb).to(torch.float8_e4m3fn)
    sa = torch.rand(m, kb) + 0.5
    operands = _blockwise_a_operands(a, sa)
    first_a, first_sa = operands[0]
    assert first_a is a and first_sa.shape == (m, kb) and first_sa.stride() == (1, m)
    assert torch.equal(first_sa, sa)
    if m % BLOCKWISE_ROW_MULTIPLE == 0:
        assert len(operands) == 1
        return
    (padded_a, padded_sa), = operands[1:]
    rows = -(-m // BLOCKWISE_ROW_MULTIPLE) * BLOCKWISE_ROW_MULTIPLE
    assert padded_a.shape == (rows, 128 * kb) and padded_sa.shape == (rows, kb)
    assert padded_sa.stride() == (1, rows)
    assert torch.equal(padded_a[:m].float(), a.float()) and not padded_a[m:].float().any()
    assert torch.equal(padded_sa[:m], sa) and torch.equal(padded_sa[m:], torch.ones(rows - m, kb))
