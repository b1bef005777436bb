"""Benchmark inputs: random normal BF16 operands, quantised once, shared by every provider.

Random normal data matters: all-ones or all-zero operands draw less power and inflate TFLOPS.
The reference outputs are computed lazily (in FP32, on the inputs' device) and cached, since
every provider of a shape is checked against them.
"""

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from deepgemm.quant import per_block_cast_to_fp8, per_token_cast_to_fp8
from deepgemm.testing import ref_fp8_gemm_nt


@dataclass
class DenseInputs:
    """Operands of ``D[M, N] = A[M, K] · B[N, K]ᵀ`` in BF16 and in the DeepSeek-V3 FP8 recipe.

    ``a``/``sfa``: FP8 ``[M, K]`` with FP32 1x128 scales ``[M, ceil(K/128)]`` (row-major);
    ``b``/``sfb``: FP8 ``[N, K]`` with FP32 128x128 scales ``[ceil(N/128), ceil(K/128)]``.
    """

    a_bf16: torch.Tensor
    b_bf16: torch.Tensor
    a: torch.Tensor
    sfa: torch.Tensor
    b: torch.Tensor
    sfb: torch.Tensor
    _references: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    # Every provider's output is compared with each of these (one of them is its pass/fail check).
    reference_kinds: ClassVar[tuple[str, ...]] = ("fp8", "bf16")

    def reference(self, kind: str) -> torch.Tensor:
        """FP32 ``[M, N]`` reference: ``"fp8"`` from the dequantised FP8 operands (what a correct
        fine-grained FP8 kernel computes), ``"bf16"`` from the unquantised BF16 operands."""
        if kind not in self._references:
            if kind == "fp8":
                self._references[kind] = ref_fp8_gemm_nt((self.a, self.sfa), (self.b, self.sfb))
            elif kind == "bf16":
                self._references[kind] = self.a_bf16.float() @ self.b_bf16.float().t()
            else:
                raise ValueError(f"unknown reference kind {kind!r}; expected 'fp8' or 'bf16'")
        return self._references[kind]


def make_dense_inputs(m: int, n: int, k: int, device: torch.device, seed: int) -> DenseInputs:
    """Random normal ``A [M, K]`` and ``B [N, K]`` in BF16, quantised with deepgemm's helpers."""
    generator = torch.Generator(device=device).manual_seed(seed)
    a_bf16 = torch.randn(m, k, generator=generator, device=device, dtype=torch.bfloat16)
    b_bf16 = torch.randn(n, k, generator=generator, device=device, dtype=torch.bfloat16)
    a, sfa = per_token_cast_to_fp8(a_bf16)
    b, sfb = per_block_cast_to_fp8(b_bf16)
    return DenseInputs(a_bf16=a_bf16, b_bf16=b_bf16, a=a, sfa=sfa, b=b, sfb=sfb)
