"""What the CPU and GPU tests of FP8 training share: float64 reference gradients, the relative error they
are held to, and the convergence run (a small SwiGLU MLP and a 2-layer MoE trained with FP8 layers
against the same models computed in BF16, from the same initial weights and data)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import deepgemm
from deepgemm.nn import Fp8GroupedLinear, Fp8Linear
from deepgemm.testing import calc_diff

# FP8 (e4m3, 3 mantissa bits) with fine-grained scales against float64 products of the unquantised inputs:
# each operand's elements carry a relative rounding error of up to 2^-4, about 2^-4/sqrt(3) ~ 3.6% rms,
# and a product of two quantised operands sums those in quadrature over a long dot product, which the
# averaging brings to ~3% rms relative error of the result (calc_diff ~ rel^2 / 2 ~ 5e-4). Bounds with
# a margin of about 1.5x on the relative error:
FP8_GRAD_REL_ERROR = 0.05
FP8_GRAD_CALC_DIFF = 1.5e-3
# BF16 (8 mantissa bits) against the same references, for scale.
BF16_GRAD_REL_ERROR = 0.01


def rel_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    """``||x - ref|| / ||ref||`` (Frobenius, float64)."""
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm())


@dataclass
class Grads:
    y: torch.Tensor
    dx: torch.Tensor
    dw: torch.Tensor
    db: torch.Tensor | None


def reference_linear(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    dy: torch.Tensor,
    dtype: torch.dtype = torch.float64,
) -> Grads:
    """``y = x · wᵀ + b`` and its gradients for ``dy``, computed with torch in ``dtype`` (float64 or bf16)."""
    xr, wr = x.detach().to(dtype).requires_grad_(), w.detach().to(dtype).requires_grad_()
    br = None if b is None else b.detach().to(dtype).requires_grad_()
    y = F.linear(xr, wr, br)
    y.backward(dy.to(dtype))
    return Grads(y.detach(), xr.grad, wr.grad, None if br is None else br.grad)


def per_expert(x: torch.Tensor, w: torch.Tensor, m_indices: torch.Tensor) -> torch.Tensor:
    """``y[m] = x[m] · w[m_indices[m]]ᵀ``, 0 on padding rows (index -1); differentiable."""
    rows = [m_indices == e for e in range(w.shape[0])]
    y = x.new_zeros(x.shape[0], w.shape[1])
    for e, mask in enumerate(rows):
        y = y.index_put((mask,), x[mask] @ w[e].T)
    return y


def reference_grouped(x: torch.Tensor, w: torch.Tensor, m_indices: torch.Tensor, dy: torch.Tensor) -> Grads:
    """The grouped linear in float64: padding rows (index -1) give zeros and take no gradient."""
    xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    y = per_expert(xr, wr, m_indices)
    y.backward(dy.double())
    return Grads(y.detach(), xr.grad, wr.grad, None)


def check_fp8_grads(got: Grads, ref: Grads) -> dict[str, float]:
    """Asserts each of ``got``'s tensors against ``ref`` (FP8 bounds above); returns the relative errors."""
    errors = {}
    for name in ("y", "dx", "dw", "db"):
        a, b = getattr(got, name), getattr(ref, name)
        if b is None:
            continue
        errors[name] = rel_error(a, b)
        assert errors[name] < FP8_GRAD_REL_ERROR, (name, errors[name])
        assert calc_diff(a, b) < FP8_GRAD_CALC_DIFF, (name, calc_diff(a, b))
    return errors


# ---- convergence -------------------------------------------------------------------------------------------


def bf16_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """A BF16 GEMM as the tensor cores run it: BF16 operands, FP32 accumulation, a BF16 result (written
    as an FP32 product of BF16-rounded operands, which is also fast on CPUs without BF16 units)."""
    y = F.linear(x.bfloat16().float(), w.bfloat16().float(), None if b is None else b.bfloat16().float())
    return y.bfloat16()


class Bf16Linear(torch.nn.Module):
    """The reference layer: an FP32 master weight (like Fp8Linear's here) and a BF16 GEMM."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight.detach().clone())
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bf16_linear(x, self.weight, self.bias)


class SwiGLUMLP(torch.nn.Module):
    """``w2(silu(w1 x) * w3 x)``, the DeepSeek-V3 MLP block, from three linear layers."""

    def __init__(self, w1: torch.nn.Module, w3: torch.nn.Module, w2: torch.nn.Module) -> None:
        super().__init__()
        self.w1, self.w3, self.w2 = w1, w3, w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def make_mlp_pair(dim: int, hidden: int, device: torch.device, seed: int) -> tuple[SwiGLUMLP, SwiGLUMLP]:
    """The same SwiGLU MLP twice from one initialisation: with Fp8Linear layers and with BF16 layers
    (FP32 master weights in both)."""
    gen = torch.Generator().manual_seed(seed)
    fp8_layers, bf16_layers = [], []
    for fan_in, fan_out in ((dim, hidden), (dim, hidden), (hidden, dim)):
        layer = Fp8Linear(fan_in, fan_out, bias=True, device=device, dtype=torch.float32)
        with torch.no_grad():
            bound = fan_in**-0.5
            layer.weight.copy_((torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound)
            layer.bias.copy_((torch.rand(fan_out, generator=gen) * 2 - 1) * bound)
        fp8_layers.append(layer)
        bf16_layers.append(Bf16Linear(layer.weight, layer.bias))
    return SwiGLUMLP(*fp8_layers), SwiGLUMLP(*bf16_layers)


class TwoLayerMoE(torch.nn.Module):
    """Tokens routed to experts by a fixed rule (the teacher's), each expert ``down(silu(up x))`` with
    grouped layers; ``grouped`` is Fp8GroupedLinear or the BF16 reference below."""

    def __init__(self, up: torch.nn.Module, down: torch.nn.Module) -> None:
        super().__init__()
        self.up, self.down = up, down

    def forward(self, x: torch.Tensor, m_indices: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.up(x, m_indices)), m_indices)


class Bf16GroupedLinear(torch.nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight.detach().clone())

    def forward(self, x: torch.Tensor, m_indices: torch.Tensor) -> torch.Tensor:
        return per_expert(x.bfloat16().float(), self.weight.bfloat16().float(), m_indices).bfloat16()


def make_moe_pair(
    experts: int, dim: int, hidden: int, device: torch.device, seed: int
) -> tuple[TwoLayerMoE, TwoLayerMoE]:
    gen = torch.Generator().manual_seed(seed)
    fp8_layers, bf16_layers = [], []
    for fan_in, fan_out in ((dim, hidden), (hidden, dim)):
        layer = Fp8GroupedLinear(experts, fan_in, fan_out, device=device, dtype=torch.float32)
        with torch.no_grad():
            layer.weight.copy_((torch.rand(experts, fan_out, fan_in, generator=gen) * 2 - 1) * fan_in**-0.5)
        fp8_layers.append(layer)
        bf16_layers.append(Bf16GroupedLinear(layer.weight))
    return TwoLayerMoE(*fp8_layers), TwoLayerMoE(*bf16_layers)


def moe_layout(expert_of_token: torch.Tensor, experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, m_indices)``: tokens sorted by expert into the packed contiguous layout (segments padded
    to 128 rows); ``order[r]`` is the token at row r, or -1 on a padding row."""
    counts = torch.bincount(expert_of_token, minlength=experts).tolist()
    order, m_indices = [], []
    for e, count in enumerate(counts):
        rows = torch.nonzero(expert_of_token == e).flatten().tolist()
        pad = deepgemm.align(count, 128) - count
        order += rows + [-1] * pad
        m_indices += [e] * count + [-1] * pad
    return torch.tensor(order), torch.tensor(m_indices, dtype=torch.int32)


def train_losses(model: torch.nn.Module, batches: list[tuple], lr: float) -> list[float]:
    """The loss of each step of Adam on MSE against the targets, one batch per step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for inputs, target in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(*inputs).float(), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def mlp_batches(
    dim: int, hidden: int, tokens: int, steps: int, device: torch.device, seed: int
) -> list[tuple]:
    """A fixed random teacher MLP (FP32) and ``steps`` batches of its inputs (BF16) and outputs."""
    gen = torch.Generator().manual_seed(seed)
    w1, w3 = (
        torch.randn(hidden, dim, generator=gen) / dim**0.5,
        torch.randn(hidden, dim, generator=gen) / dim**0.5,
    )
    w2 = torch.randn(dim, hidden, generator=gen) / hidden**0.5
    batches = []
    for _ in range(steps):
        x = torch.randn(tokens, dim, generator=gen)
        y = (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T
        batches.append(((x.bfloat16().to(device),), y.to(device)))
    return batches


def moe_batches(
    experts: int, dim: int, hidden: int, tokens: int, steps: int, device: torch.device, seed: int
) -> list[tuple]:
    """A teacher MoE (expert = a fixed function of the token) and batches in the packed contiguous layout."""
    gen = torch.Generator().manual_seed(seed)
    up = torch.randn(experts, hidden, dim, generator=gen) / dim**0.5
    down = torch.randn(experts, dim, hidden, generator=gen) / hidden**0.5
    router = torch.randn(dim, experts, generator=gen)
    batches = []
    for _ in range(steps):
        x = torch.randn(tokens, dim, generator=gen)
        expert = (x @ router).argmax(-1)
        order, m_indices = moe_layout(expert, experts)
        xs = torch.where((order >= 0)[:, None], x[order.clamp(min=0)], 0)
        y = per_expert(F.silu(per_expert(xs, up, m_indices)), down, m_indices)
        batches.append(((xs.bfloat16().to(device), m_indices.to(device)), y.to(device)))
    return batches


def assert_tracks(fp8: list[float], bf16: list[float], tolerance: float, min_drop: float) -> None:
    """The FP8 loss curve tracks the BF16 one: both fall below ``min_drop`` of the first loss, and every
    20-step mean of the FP8 losses is within ``tolerance`` (relative) of the BF16 one's."""
    assert bf16[-1] < min_drop * bf16[0] and fp8[-1] < min_drop * fp8[0], (fp8[-1], bf16[-1], bf16[0])
    for start in range(0, len(fp8), 20):
        a = sum(fp8[start : start + 20]) / len(fp8[start : start + 20])
        b = sum(bf16[start : start + 20]) / len(bf16[start : start + 20])
        assert abs(a - b) <= tolerance * b, (start, a, b)
