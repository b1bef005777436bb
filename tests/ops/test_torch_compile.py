"""torch.compile: every GEMM op traces as one custom-op node (``fullgraph=True``, no graph break) and
writes the eager op's result into the caller's ``d``; eager calls do not go through the dispatcher.
On the CPU path here; the ``gpu`` tests below repeat the check on a Hopper GPU, and the CUDA-graph mode."""

from __future__ import annotations

import pytest
import torch

import deepgemm
from deepgemm.ops.common import traced
from deepgemm.testing import make_bf16_inputs, make_dense_inputs, make_fp32_inputs, make_grouped_inputs

CPU = torch.device("cpu")
M, N, K = 64, 256, 384
SIZES, MAX_M = (100, 0, 60), 128


def _fp8_operands(inputs):
    return (inputs.a, inputs.sfa), (inputs.b, inputs.sfb)


def _cases(device: torch.device) -> dict:
    """Per op: ``(call(d), d's shape, d's dtype)``."""
    dense = make_dense_inputs(M, N, K, device, seed=0)
    contiguous = make_grouped_inputs("contiguous", len(SIZES), SIZES, N, K, None, device, seed=1)
    masked = make_grouped_inputs("masked", len(SIZES), SIZES, N, K, MAX_M, device, seed=2)
    contiguous16 = make_grouped_inputs("contiguous", len(SIZES), SIZES, N, K, None, device, seed=3,
                                       operand_dtype=torch.bfloat16)
    masked16 = make_grouped_inputs("masked", len(SIZES), SIZES, N, K, MAX_M, device, seed=4,
                                   operand_dtype=torch.bfloat16)
    c = torch.randn(M, N, device=device, dtype=torch.bfloat16)
    cases = {
        "fp8_gemm_nt": (lambda d: deepgemm.fp8_gemm_nt(*_fp8_operands(dense), d), (M, N), torch.bfloat16),
        "m_grouped_fp8_gemm_nt_contiguous": (
            lambda d: deepgemm.m_grouped_fp8_gemm_nt_contiguous(*_fp8_operands(contiguous), d,
                                                                contiguous.m_indices),
            (contiguous.a.shape[0], N), torch.float32),
        "m_grouped_fp8_gemm_nt_contiguous_offsets": (
            lambda d: deepgemm.m_grouped_fp8_gemm_nt_contiguous_offsets(
                *_fp8_operands(contiguous), d, group_ends=contiguous.group_ends),
            (contiguous.a.shape[0], N), torch.bfloat16),
        "m_grouped_fp8_gemm_nt_masked": (
            lambda d: deepgemm.m_grouped_fp8_gemm_nt_masked(*_fp8_operands(masked), d, masked.masked_m, 64),
            (len(SIZES), MAX_M, N), torch.bfloat16),
        "m_grouped_bf16_gemm_nt_contiguous": (
            lambda d: deepgemm.m_grouped_bf16_gemm_nt_contiguous(contiguous16.a, contiguous16.b, d,
                                                                 contiguous16.m_indices),
            (contiguous16.a.shape[0], N), torch.bfloat16),
        "m_grouped_bf16_gemm_nt_masked": (
            lambda d: deepgemm.m_grouped_bf16_gemm_nt_masked(masked16.a, masked16.b, d, masked16.masked_m,
                                                             expected_m=64),
            (len(SIZES), MAX_M, N), torch.float32),
    }
    cases.update(_int8_cases(device))
    for major in ("nt", "nn", "tn", "tt"):
        inputs = make_bf16_inputs(M, N, K, major, device, seed=5)
        gemm = getattr(deepgemm, f"bf16_gemm_{major}")
        cases[f"bf16_gemm_{major}"] = (lambda d, gemm=gemm, inputs=inputs: gemm(inputs.a, inputs.b, d, c),
                                       (M, N), torch.bfloat16)
        # C is d itself: accumulation into d.
        cases[f"bf16_gemm_{major} (c=d)"] = (
            lambda d, gemm=gemm, inputs=inputs: gemm(inputs.a, inputs.b, d, d), (M, N), torch.float32)
        inputs32 = make_fp32_inputs(M, N, K, major, device, seed=6)
        gemm32 = getattr(deepgemm, f"tf32_gemm_{major}")
        cases[f"tf32_gemm_{major} (c=d)"] = (
            lambda d, gemm=gemm32, inputs=inputs32: gemm(inputs.a, inputs.b, d, d), (M, N), torch.float32)
    inputs32 = make_fp32_inputs(M, N, K, "nt", device, seed=7)
    cases["tf32x3_gemm_nt"] = (lambda d: deepgemm.tf32x3_gemm_nt(inputs32.a, inputs32.b, d), (M, N),
                               torch.float32)
    return cases


def _int8_cases(device: torch.device) -> dict:
    """The INT8 ops: raw sums, scales with bias and zero points (optional tensors of the schema), grouped."""
    generator = torch.Generator(device=device).manual_seed(6)

    def ints(*shape):
        return torch.randint(-127, 128, shape, generator=generator, device=device, dtype=torch.int8)

    def scales(*shape):
        return torch.rand(*shape, generator=generator, device=device) / 100 + 1e-3

    a, b, bias = ints(M, K), ints(N, K), torch.randn(N, generator=generator, device=device)
    azp = (torch.randint(-4, 4, (M,), generator=generator, device=device, dtype=torch.int32),
           b.sum(-1, dtype=torch.int32))
    g, rows = len(SIZES), 128 * len(SIZES)
    grouped_b = ints(g, N, K)
    m_indices = torch.full((rows,), -1, dtype=torch.int32, device=device)
    for group, size in enumerate(SIZES):
        m_indices[128 * group : 128 * group + min(size, 128)] = group
    masked_m = torch.tensor([min(size, MAX_M) for size in SIZES], dtype=torch.int32, device=device)
    masked_a = ints(g, MAX_M, K)
    a_q, b_q = (a, scales(M)), (b, scales(N))
    contiguous_a, grouped_b_q = (ints(rows, K), scales(rows)), (grouped_b, scales(g, N))
    return {
        "int8_gemm_nt": (lambda d: deepgemm.int8_gemm_nt(a, b, d), (M, N), torch.int32),
        "int8_gemm_nt (scaled, bias, azp)": (
            lambda d: deepgemm.int8_gemm_nt(a_q, b_q, d, bias, azp), (M, N), torch.bfloat16),
        "m_grouped_int8_gemm_nt_contiguous": (
            lambda d: deepgemm.m_grouped_int8_gemm_nt_contiguous(contiguous_a, grouped_b_q, d, m_indices),
            (rows, N), torch.float32),
        # The index tensor by keyword: the custom op's arguments come from the op's own signature.
        "m_grouped_int8_gemm_nt_contiguous_offsets (group_ends=)": (
            lambda d: deepgemm.m_grouped_int8_gemm_nt_contiguous_offsets(
                contiguous_a, grouped_b_q, d, group_ends=torch.tensor([100, 128, 316], dtype=torch.int32,
                                                                      device=device)),
            (rows, N), torch.bfloat16),
        "m_grouped_int8_gemm_nt_masked": (
            lambda d: deepgemm.m_grouped_int8_gemm_nt_masked(masked_a, grouped_b, d, masked_m, 64),
            (g, MAX_M, N), torch.int32),
    }


CASES = _cases(CPU)


def _compiled_matches_eager(call, shape, dtype, device, backend: str = "aot_eager") -> None:
    """``call`` compiled with ``fullgraph`` writes the eager result into the very ``d`` it is given,
    and returns it; the sentinel in rows the op leaves untouched stays."""
    torch._dynamo.reset()
    start = torch.full(shape, 3.0, device=device, dtype=dtype)
    eager = start.clone()
    assert call(eager) is eager
    d = start.clone()
    out = torch.compile(call, fullgraph=True, backend=backend)(d)
    assert out is d
    assert torch.equal(d, eager)
    assert not torch.equal(d, start)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_op_compiles_into_one_graph_and_matches_eager(name):
    _compiled_matches_eager(*CASES[name], CPU)


def test_inductor_compiles_a_gemm_with_the_code_around_it():
    call, shape, dtype = CASES["fp8_gemm_nt"]

    def layer(d: torch.Tensor) -> torch.Tensor:
        return torch.relu(call(d)) * 2

    torch._dynamo.reset()
    expected = layer(torch.empty(shape, dtype=dtype))
    assert torch.equal(torch.compile(layer, fullgraph=True)(torch.empty(shape, dtype=dtype)), expected)


def test_every_public_gemm_has_a_custom_op():
    prefixes = ("fp8_gemm", "bf16_gemm", "int8_gemm", "m_grouped", "k_grouped", "w8a16_gemm", "w4a16_gemm",
                "tf32")
    gemms = sorted(name for name in deepgemm.__all__ if name.startswith(prefixes))
    assert sorted(traced._EAGER) == gemms
    for name in gemms:
        assert hasattr(torch.ops.deepgemm, name)
        assert getattr(deepgemm, name).__wrapped__ is traced._EAGER[name]


def test_eager_calls_do_not_go_through_the_dispatcher(monkeypatch):
    class NoOps:
        def __getattr__(self, name):
            raise AssertionError(f"eager call went through torch.ops.deepgemm.{name}")

    monkeypatch.setattr(torch.ops, "deepgemm", NoOps())
    for call, shape, dtype in CASES.values():
        call(torch.zeros(shape, dtype=dtype))


def test_a_bad_argument_in_compiled_code_raises_the_ops_error():
    call, shape, _ = CASES["fp8_gemm_nt"]
    torch._dynamo.reset()
    with pytest.raises(TypeError, match="d must have dtype"):
        torch.compile(call, fullgraph=True, backend="aot_eager")(torch.empty(shape, dtype=torch.float16))


def test_arguments_outside_the_schema_run_the_eager_op_and_its_checks():
    # Not a pair: the op's own TypeError, raised while tracing.
    torch._dynamo.reset()
    a = torch.zeros(M, K, dtype=torch.float8_e4m3fn)
    with pytest.raises(Exception, match="a must be"):
        torch.compile(lambda d: deepgemm.fp8_gemm_nt(a, (a, a), d), fullgraph=True, backend="eager")(
            torch.empty(M, N, dtype=torch.bfloat16))
    assert traced.dense_op_args(a, a, a, c="not a tensor") is None
    assert traced.integer(3) and not traced.integer(True) and not traced.integer(3.0)


# ---- on a Hopper GPU -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpu_cases() -> dict:
    return _cases(torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_op_compiles_and_matches_eager_on_the_gpu(name, gpu_cases):
    _compiled_matches_eager(*gpu_cases[name], torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["fp8_gemm_nt", "m_grouped_fp8_gemm_nt_masked", "bf16_gemm_nn (c=d)"])
def test_cuda_graph_mode_replays_the_kernel(name, gpu_cases):
    # mode="reduce-overhead" records the compiled graph in a CUDA graph after warm-up calls (which
    # compile and load the kernel) and replays it on later calls.
    call, shape, dtype = gpu_cases[name]
    torch._dynamo.reset()
    start = torch.full(shape, 3.0, device="cuda", dtype=dtype)
    eager = start.clone()
    call(eager)
    compiled = torch.compile(call, fullgraph=True, mode="reduce-overhead")
    for _ in range(4):
        d = start.clone()
        out = compiled(d)
        assert torch.equal(out, eager)
