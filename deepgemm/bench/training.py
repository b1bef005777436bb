"""The FP8 training suites' inputs and providers: ``cast`` (the fused FP8 casts against the eager torch
chain they replace) and ``train_step`` (a DeepSeek-V3 SwiGLU MLP block's forward and backward with
``Fp8Linear`` against the same block with BF16 ``torch.nn.Linear``).

A ``cast`` problem is ``Problem(m, n, k, layout=<cast>)``: the cast of a BF16 ``[m, k]`` tensor, ``<cast>``
one of ``per_token``, ``per_block``, ``per_token_transposed`` (``n`` unused, equal to ``k``). A provider
returns ``(q, sf)``; it is checked on its dequantised values (``valid_rows``) against the torch chain's,
with ``max_diff = 0``: equal values (the GPU tests check the bits).

A ``train_step`` problem is ``Problem(tokens, hidden, dim)``: ``y = w2(silu(w1 x) * w3 x)`` with
``w1, w3 [hidden, dim]``, ``w2 [dim, hidden]`` (no bias, as in DeepSeek-V3), BF16 activations and
weights, and one timed call is the whole step: the forward and ``torch.autograd.grad`` of the output
for a fixed ``dy`` with respect to ``x`` and the three weights (every cast, GEMM and elementwise
kernel of it; the profiler timer sums them over the step). It returns ``dx``, checked against the
float32 step's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from deepgemm.quant import cast as cast_module

from .providers import Provider

CASTS = ("per_token", "per_block", "per_token_transposed")


# ---- cast ----------------------------------------------------------------------------------------


@dataclass
class CastInputs:
    kind: str
    x: torch.Tensor
    reference_kinds: ClassVar[tuple[str, ...]] = ("torch",)
    _reference: torch.Tensor | None = field(default=None, repr=False)

    def dequantised(self, output: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """FP32 ``[m, k]``: each FP8 value of ``output`` times its scale."""
        q, sf = output
        if self.kind == "per_block":
            sf = sf.repeat_interleave(128, 0)[: q.shape[0]]
        values = q.float() * sf.repeat_interleave(128, 1)[:, : q.shape[1]]
        return values.T if self.kind == "per_token_transposed" else values

    def reference(self, kind: str) -> torch.Tensor:
        if kind != "torch":
            raise ValueError(f"unknown reference kind {kind!r}; expected 'torch'")
        if self._reference is None:
            self._reference = self.dequantised(_TORCH_CASTS[self.kind](self.x))
        return self._reference

    def valid_rows(self, output: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.dequantised(output)


_TORCH_CASTS = {
    "per_token": cast_module._per_token_torch,
    "per_block": cast_module._per_block_torch,
    "per_token_transposed": lambda x: cast_module._per_token_torch(x.T),
}
_FUSED_CASTS = {
    "per_token": cast_module.per_token_cast_to_fp8,
    "per_block": cast_module.per_block_cast_to_fp8,
    "per_token_transposed": cast_module.per_token_cast_to_fp8_transposed,
}


def make_cast_inputs(problem, device: torch.device, seed: int) -> CastInputs:
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(problem.m, problem.k, generator=gen, device=device, dtype=torch.float32)
    return CastInputs(problem.layout, x.to(torch.bfloat16))


def cast_bytes(problem) -> int:
    """BF16 read once, FP8 written, FP32 scales written."""
    m, k = problem.m, problem.k
    blocks = (
        -(-m // 128) * -(-k // 128)
        if problem.layout == "per_block"
        else (m * -(-k // 128) if problem.layout == "per_token" else k * -(-m // 128))
    )
    return 3 * m * k + 4 * blocks


DEEPGEMM_CAST = Provider(
    "deepgemm",
    "deepgemm.per_token_cast_to_fp8 / per_block_cast_to_fp8 / per_token_cast_to_fp8_transposed: one fused "
    "kernel on CUDA (the torch chain on the CPU)",
    lambda inputs: lambda: _FUSED_CASTS[inputs.kind](inputs.x),
    reference="torch",
    max_diff=0.0,
    has_cpu_path=True,
)
TORCH_CAST = Provider(
    "torch_eager",
    "the same cast as the eager torch chain of deepgemm/quant/cast.py (pad, amax, divide, clamp, convert; "
    "per_token_cast_to_fp8_transposed: the chain on x.T)",
    lambda inputs: lambda: _TORCH_CASTS[inputs.kind](inputs.x),
    reference="torch",
    max_diff=0.0,
    has_cpu_path=True,
)


# ---- train_step ----------------------------------------------------------------------------------


@dataclass
class TrainStepInputs:
    x: torch.Tensor  # [tokens, dim] BF16
    w1: torch.Tensor  # [hidden, dim]
    w3: torch.Tensor  # [hidden, dim]
    w2: torch.Tensor  # [dim, hidden]
    dy: torch.Tensor  # [tokens, dim]
    reference_kinds: ClassVar[tuple[str, ...]] = ("fp32",)
    _reference: torch.Tensor | None = field(default=None, repr=False)

    def reference(self, kind: str) -> torch.Tensor:
        """``dx`` of the step in FP32 (from the BF16 values)."""
        if kind != "fp32":
            raise ValueError(f"unknown reference kind {kind!r}; expected 'fp32'")
        if self._reference is None:
            weights = [w.detach().float().requires_grad_() for w in (self.w1, self.w3, self.w2)]
            x = self.x.detach().float().requires_grad_()
            y = swiglu(x, *weights, F.linear)
            (self._reference,) = torch.autograd.grad(y, [x], self.dy.float())
        return self._reference

    def valid_rows(self, output: torch.Tensor) -> torch.Tensor:
        return output


def swiglu(x: torch.Tensor, w1: torch.Tensor, w3: torch.Tensor, w2: torch.Tensor, linear) -> torch.Tensor:
    return linear(F.silu(linear(x, w1)) * linear(x, w3), w2)


def make_train_step_inputs(problem, device: torch.device, seed: int) -> TrainStepInputs:
    gen = torch.Generator(device=device).manual_seed(seed)
    tokens, hidden, dim = problem.m, problem.n, problem.k

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, device=device) * scale).to(torch.bfloat16)

    return TrainStepInputs(
        randn(tokens, dim),
        randn(hidden, dim, scale=dim**-0.5).requires_grad_(),
        randn(hidden, dim, scale=dim**-0.5).requires_grad_(),
        randn(dim, hidden, scale=hidden**-0.5).requires_grad_(),
        randn(tokens, dim),
    )


def train_step_flops(problem) -> int:
    """Nine GEMMs of ``2 · tokens · hidden · dim`` each: three in the forward, two per layer backward."""
    return 9 * 2 * problem.m * problem.n * problem.k


def train_step_bytes(problem) -> int:
    """Nominal: the three BF16 weights read in the forward and the backward, their BF16 gradients written,
    and the BF16 activations of the step (x, the two hidden tensors, y and their gradients)."""
    tokens, hidden, dim = problem.m, problem.n, problem.k
    weights = 3 * hidden * dim * 2
    return 3 * weights + 2 * (2 * tokens * dim + 3 * tokens * hidden) * 2


def _prepare_step(linear):
    def prepare(inputs: TrainStepInputs):
        x = inputs.x.detach().requires_grad_()
        params = [x, inputs.w1, inputs.w3, inputs.w2]

        def run() -> torch.Tensor:
            y = swiglu(x, inputs.w1, inputs.w3, inputs.w2, linear)
            return torch.autograd.grad(y, params, inputs.dy)[0]

        return run

    return prepare


def _fp8_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    import deepgemm

    return deepgemm.fp8_linear(x, w)


DEEPGEMM_FP8_STEP = Provider(
    "deepgemm_fp8",
    "the block with deepgemm.fp8_linear layers (Fp8Linear's forward): forward + torch.autograd.grad for x "
    "and the weights; every kernel of the step timed (casts of x, the weights and dy included)",
    _prepare_step(_fp8_linear),
    reference="fp32",
    max_diff=5e-3,
    has_cpu_path=True,
)
TORCH_BF16_STEP = Provider(
    "torch_bf16",
    "the block with torch.nn.functional.linear in BF16 (torch.nn.Linear's forward, cuBLAS): forward + "
    "torch.autograd.grad for x and the weights; every kernel of the step timed",
    _prepare_step(F.linear),
    reference="fp32",
    max_diff=1e-4,
    has_cpu_path=True,
)
