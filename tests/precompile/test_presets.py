"""The presets: a benchmark suite's precompile requests are the op calls its deepgemm providers make.

Each suite's CPU smoke problems run through its providers on the CPU with every deepgemm op they reach
recorded (the GEMM ops and the casts, in each namespace the providers, ``deepgemm.matmul`` and
``fp8_linear`` call them from). Each recorded call is turned into the kernels its GPU launch loads: the
GEMM through its family's ``kernel_specs``, the staging of a TF32 operand and a cast from the very
tensors passed. Every one of them must be among the kernels precompile builds for the suite's requests
on the same problems, and every GEMM kernel precompile builds must be one a call loads.
"""

import inspect

import pytest
import torch

from deepgemm.bench import training
from deepgemm.bench.providers import ProviderUnavailable
from deepgemm.bench.suites import SUITES
from deepgemm.nn import fp8_grouped_linear, fp8_linear
from deepgemm.ops.cast import kernel as cast
from deepgemm.ops.common.launch import GEMM_KIND_CONTIGUOUS_ENDS, GEMM_KIND_CONTIGUOUS_INDICES, KernelRequest
from deepgemm.precompile import FAMILY_KERNEL_SPECS, _imported, _spec_key, family_kernel_specs
from deepgemm.precompile.suites import SUITE_REQUESTS, problem_requests

NUM_SMS = 132
# Providers that run no deepgemm kernel: the cuBLAS and torch baselines.
BASELINE_PREFIXES = ("cublas", "torch")
_CAST_KINDS = {
    "per_token_cast_to_fp8": ("per_token", False),
    "per_block_cast_to_fp8": ("per_block", False),
    "per_block_cast_to_fp8_and_transpose": ("per_block", True),
    "per_token_cast_to_fp8_transposed": ("per_token_transposed", False),
}
_GEMMS = ("fp8_gemm_nt", "m_grouped_fp8_gemm_nt_contiguous", "m_grouped_fp8_gemm_nt_contiguous_offsets",
          "m_grouped_fp8_gemm_nt_masked", "bf16_gemm_nt", "bf16_gemm_nn", "bf16_gemm_tn", "bf16_gemm_tt",
          "m_grouped_bf16_gemm_nt_contiguous", "m_grouped_bf16_gemm_nt_masked", "fp8_gemm_nt_1d1d",
          "k_grouped_fp8_gemm_nt_1d1d", "int8_gemm_nt", "tf32_gemm_nt", "tf32_gemm_nn", "tf32_gemm_tn",
          "tf32_gemm_tt", "tf32x3_gemm_nt", "w8a16_gemm_nt", "w4a16_gemm_nt",
          "m_grouped_w8a16_gemm_nt_masked", "m_grouped_w4a16_gemm_nt_masked")
# Where the providers and the ops they call look the recorded functions up.
_NAMESPACES = ("deepgemm", "deepgemm.ops.matmul", "deepgemm.ops.bf16.gemm", "deepgemm.ops.tf32.gemm",
               "deepgemm.nn.linear", "deepgemm.nn.grouped")


def _stored_major(x: torch.Tensor, k_major_letter: str, mn_major_letter: str) -> str:
    return k_major_letter if x.stride(1) == 1 else mn_major_letter


def _gemm_kernels(name: str, bound: inspect.BoundArguments) -> list[tuple]:
    """The kernels the GPU launch of recorded call ``name`` loads."""
    args = bound.arguments
    a, b, d = args["a"], args["b"], args["d"]
    A, B = (a[0] if isinstance(a, tuple) else a), (b[0] if isinstance(b, tuple) else b)
    c = args.get("c")
    if name.startswith(("w8a16", "w4a16", "m_grouped_w")):
        family = "w8a16" if "w8a16" in name else "w4a16"
        masked = name.endswith("_masked")
        m = args["expected_m"] if masked else A.shape[0]
        request = KernelRequest(family, m, d.shape[-1], A.shape[-1], "masked" if masked else "dense",
                                B.shape[0] if masked else 1, d.dtype,
                                in_dtype=A.dtype, group_size=args["group_size"], has_zeros=len(b) == 3)
    elif name.startswith(("tf32", "bf16")):
        major = name[-2:]
        a_mk = A if major[0] == "n" else A.T
        b_nk = B if major[1] == "t" else B.T
        family = name.split("_")[0]
        if family == "tf32x3":
            major = _stored_major(a_mk, "n", "t") + _stored_major(b_nk, "t", "n")
        request = KernelRequest(family, a_mk.shape[0], b_nk.shape[0], a_mk.shape[1], out_dtype=d.dtype,
                                major=major, in_dtype=A.dtype, has_c=c is not None)
        if family != "bf16":
            from deepgemm.ops.tf32 import kernel as tf32

            gemm = tf32.kernel_specs(request, NUM_SMS)[0]
            stages = [tf32.stage_variant(x.shape, x.stride(), x.data_ptr() % 16 == 0, family == "tf32x3")
                      for x in (a_mk, b_nk)]
            return [_spec_key(gemm), *(_spec_key(tf32.stage_kernel_spec(*v, NUM_SMS)) for v in stages if v)]
    elif name.startswith("m_grouped_bf16") or name.startswith("m_grouped_fp8"):
        family = "bf16" if "bf16" in name else "fp8_1d2d"
        masked = name.endswith("_masked")
        request = KernelRequest(family, args["expected_m"] if masked else A.shape[0], B.shape[1], B.shape[2],
                                "masked" if masked else "contiguous", B.shape[0], d.dtype, in_dtype=A.dtype)
    elif name == "k_grouped_fp8_gemm_nt_1d1d":
        request = KernelRequest("fp8_1d1d", d.shape[1], d.shape[2], A.shape[1], "k_grouped", d.shape[0],
                                d.dtype, has_c=c is not None)
    elif name == "int8_gemm_nt":
        bias, azp = args.get("bias"), args.get("azp")
        request = KernelRequest("int8", A.shape[0], B.shape[0], A.shape[1], out_dtype=d.dtype,
                                bias_dtype=None if bias is None else bias.dtype, has_azp=azp is not None)
    else:
        family = "fp8_1d1d" if name.endswith("1d1d") else "fp8_1d2d"
        request = KernelRequest(family, A.shape[0], B.shape[0], A.shape[1], out_dtype=d.dtype,
                                has_c=c is not None)
    specs = _imported(FAMILY_KERNEL_SPECS[request.family])(request, NUM_SMS)
    # A contiguous request names both contiguous ops; this call is one of them.
    other_kind = {"_contiguous": GEMM_KIND_CONTIGUOUS_ENDS, "_offsets": GEMM_KIND_CONTIGUOUS_INDICES}.get(
        name[name.rfind("_"):])
    return [_spec_key(spec) for spec in specs if other_kind not in spec.template_args]


def _cast_kernels(name: str, x: torch.Tensor) -> list[tuple]:
    """The fused cast ``quant/cast.py`` runs on a CUDA ``x`` like this one (the rows it reads as
    ``ops/cast/kernel.py`` views them)."""
    if x.dtype not in cast.IN_TYPES or x.numel() == 0:
        return []
    kind, transposed = _CAST_KINDS[name]
    if kind == "per_token":
        rows = [cast._as_rows(x)]
    else:
        rows = [x] if x.dim() == 2 else list(x)
    rows = [view if view.stride(-1) == 1 else view.contiguous() for view in rows]
    return [_spec_key(cast.kernel_spec(kind, x.dtype, cast.vectorizes(view), NUM_SMS, transposed))
            for view in rows]


@pytest.fixture
def recorded(monkeypatch):
    """The kernels of every recorded op call."""
    import importlib

    kernels: set[tuple] = set()

    def recording(name, function):
        signature = inspect.signature(inspect.unwrap(function))

        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            if name in _CAST_KINDS:
                kernels.update(_cast_kernels(name, args[0]))
            else:
                kernels.update(_gemm_kernels(name, bound))
            return function(*args, **kwargs)

        return call

    for namespace in map(importlib.import_module, _NAMESPACES):
        for name in (*_GEMMS, *_CAST_KINDS):
            if hasattr(namespace, name):
                monkeypatch.setattr(namespace, name, recording(name, getattr(namespace, name)))
    for kind, function in list(training._FUSED_CASTS.items()):
        name = {"per_token": "per_token_cast_to_fp8", "per_block": "per_block_cast_to_fp8",
                "per_token_transposed": "per_token_cast_to_fp8_transposed"}[kind]
        monkeypatch.setitem(training._FUSED_CASTS, kind, recording(name, function))
    return kernels


def test_every_deepgemm_provider_of_every_suite_has_its_requests():
    assert set(SUITE_REQUESTS) == set(SUITES)
    for name, suite in SUITES.items():
        names = {provider.name for provider in suite.providers}
        assert set(SUITE_REQUESTS[name]) <= names, name
        missing = names - set(SUITE_REQUESTS[name])
        assert all(provider.startswith(BASELINE_PREFIXES) for provider in missing), (name, missing)


@pytest.mark.parametrize("name", list(SUITES))
def test_a_suites_calls_load_only_precompiled_kernels(recorded, name):
    suite = SUITES[name]
    ran = 0
    for problem in suite.cpu_problems:
        inputs = suite.make_inputs(problem, torch.device("cpu"), 0)
        for provider in suite.providers:
            if not provider.has_cpu_path:
                continue
            try:
                run = provider.prepare(provider.adapt(inputs) if provider.adapt else inputs)
            except ProviderUnavailable:
                continue
            run()
            ran += 1
    assert ran and recorded
    precompiled = {_spec_key(spec) for request in problem_requests(name, suite.cpu_problems)
                   for spec in family_kernel_specs(request.family)(request, NUM_SMS)}
    assert recorded <= precompiled, sorted(recorded - precompiled)
    gemms = {key for key in precompiled if not key[0].startswith("deepgemm::fp8_cast")}
    assert gemms <= recorded, sorted(gemms - recorded)


@pytest.mark.parametrize("dtype, main_grad", [(torch.bfloat16, True), (torch.float16, False),
                                              (torch.float32, False)])
def test_fp8_linear_specs_are_what_a_training_step_calls(recorded, dtype, main_grad):
    tokens, n, k = 200, 256, 384
    x = torch.randn(tokens, k, dtype=dtype, requires_grad=True)
    weight = torch.randn(n, k, dtype=dtype, requires_grad=True)
    if main_grad:
        weight.main_grad = torch.zeros(n, k)
    fp8_linear(x, weight).backward(torch.randn(tokens, n, dtype=dtype))
    request = KernelRequest("fp8_linear", tokens, n, k, in_dtype=dtype, has_c=main_grad)
    assert recorded == {_spec_key(spec) for spec in family_kernel_specs("fp8_linear")(request, NUM_SMS)}


@pytest.mark.parametrize("dtype, main_grad", [(torch.bfloat16, True), (torch.float16, False)])
def test_fp8_grouped_linear_specs_are_what_a_training_step_calls(recorded, dtype, main_grad):
    num_groups, n, k = 3, 256, 384
    counts = [100, 0, 200]
    m_indices = torch.cat([torch.cat([torch.full((count,), group), torch.full((-count % 128,), -1)])
                           for group, count in enumerate(counts)]).int()
    rows = m_indices.numel()
    x = torch.randn(rows, k, dtype=dtype, requires_grad=True)
    weight = torch.randn(num_groups, n, k, dtype=dtype, requires_grad=True)
    if main_grad:
        weight.main_grad = torch.zeros(num_groups, n, k)
    fp8_grouped_linear(x, weight, m_indices).backward(torch.randn(rows, n, dtype=dtype))
    request = KernelRequest("fp8_grouped_linear", rows, n, k, "contiguous", num_groups, in_dtype=dtype,
                            has_c=main_grad)
    specs = family_kernel_specs("fp8_grouped_linear")(request, NUM_SMS)
    assert recorded == {_spec_key(spec) for spec in specs}
