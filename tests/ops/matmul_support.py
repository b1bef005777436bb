"""What the CPU and GPU tests of ``deepgemm.matmul`` share: the reference product and a recorder of
the 16-bit op calls (which layout ``matmul`` chose, and which tensors reached it)."""

import pytest
import torch

from deepgemm.ops.bf16 import gemm as bf16_gemm

LAYOUTS = ("nn", "nt", "tn", "tt")


def product(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``a @ b`` in float64 of the inputs converted to ``dtype`` (the precision the GEMM runs in)."""
    if dtype is not None:
        a, b = a.to(dtype), b.to(dtype)
    return a.double() @ b.double()


Call = tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]


def record_16bit_calls(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Patches every ``bf16_gemm_<layout>`` to record ``(layout, a, b, d)`` and still run the real op;
    returns the list the calls are recorded into."""
    recorded = []
    for layout in LAYOUTS:
        real = getattr(bf16_gemm, f"bf16_gemm_{layout}")

        def recorder(a, b, d, c=None, _layout=layout, _real=real):
            recorded.append((_layout, a, b, d))
            return _real(a, b, d, c)

        monkeypatch.setattr(bf16_gemm, f"bf16_gemm_{layout}", recorder)
    return recorded
