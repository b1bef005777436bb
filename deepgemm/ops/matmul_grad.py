"""Autograd of ``deepgemm.matmul``, the same on the CPU and a GPU: the backward runs deepgemm's GEMMs too.

For ``C = A · B`` the gradients are ``dA = dC · Bᵀ`` and ``dB = Aᵀ · dC``, each again a ``matmul``:

- 16-bit precisions: both through ``matmul`` in the same precision (the NN/NT/TN/TT kernels read the
  transposed views in place);
- ``fp8`` (straight-through: the quantisation counts as the identity): ``dA`` through ``matmul(...,
  precision="fp8")``, i.e. dC per token and ``Bᵀ`` per 128x128 block on the 1D2D GEMM (the reduction
  dim ``N`` zero-padded to 16 where needed, which is exact); ``dB`` on the 1D1D GEMM
  (``fp8_gemm_nt_1d1d``), both operands quantised per token along the tokens (``M``) with
  ``per_token_cast_to_fp8_transposed``, tokens zero-padded to 128, accumulated in FP32.

Gradients come back in their inputs' dtypes (FP8 runs write FP32 and convert).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..quant.cast import per_token_cast_to_fp8_transposed
from .fp8_1d1d.gemm import fp8_gemm_nt_1d1d

# Reduction dims of FP8 GEMMs are read in 16-byte rows of FP8.
_FP8_K_MULTIPLE = 16
_MATMUL_OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


class MatmulFunction(torch.autograd.Function):
    """``compute(a, b)`` (the forward, run without autograd) with the gradients above."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, prec: str, compute: Callable) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.prec = prec
        return compute(a, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad[:2]
        da = _grad_a(grad, a, b, ctx.prec) if need_a else None
        db = _grad_b(grad, a, b, ctx.prec) if need_b else None
        return da, db, None, None


def _matmul(x: torch.Tensor, y: torch.Tensor, prec: str, dtype: torch.dtype) -> torch.Tensor:
    from .matmul import matmul  # matmul imports this module

    out_dtype = dtype if dtype in _MATMUL_OUT_DTYPES else torch.float32
    return matmul(x, y, precision=prec, out_dtype=out_dtype).to(dtype)


def _grad_a(grad: torch.Tensor, a: torch.Tensor, b: torch.Tensor, prec: str) -> torch.Tensor:
    """``dA = dC · Bᵀ`` (``b`` shared by a 3-D ``a``: the 2-D ``Bᵀ`` serves every batch entry)."""
    bt = b.transpose(-2, -1)
    if prec == "fp8" and grad.shape[-1] % _FP8_K_MULTIPLE:
        pad = _FP8_K_MULTIPLE - grad.shape[-1] % _FP8_K_MULTIPLE
        grad, bt = F.pad(grad, (0, pad)), F.pad(bt, (0, 0, 0, pad))
    return _matmul(grad, bt, prec, a.dtype)


def _grad_b(grad: torch.Tensor, a: torch.Tensor, b: torch.Tensor, prec: str) -> torch.Tensor:
    """``dB = Aᵀ · dC``; for a 3-D ``a`` with a 2-D ``b`` the batch's rows are all tokens of one sum."""
    if a.dim() == 3 and b.dim() == 2:
        a, grad = a.reshape(-1, a.shape[-1]), grad.reshape(-1, grad.shape[-1])
    if prec != "fp8":
        return _matmul(a.transpose(-2, -1), grad, prec, b.dtype)
    if a.dim() == 2:
        return _wgrad_fp8(a, grad).to(b.dtype)
    return torch.stack([_wgrad_fp8(a_i, g_i) for a_i, g_i in zip(a, grad, strict=True)]).to(b.dtype)


def _wgrad_fp8(a: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``aᵀ · grad`` (FP32 ``[K, N]``) on the 1D1D GEMM, both quantised per token along the tokens."""
    k, n = a.shape[1], grad.shape[1]
    d = torch.empty(k, n, dtype=torch.float32, device=a.device)
    fp8_gemm_nt_1d1d(
        per_token_cast_to_fp8_transposed(a, pad_tokens=True, mn_major_scales=True),
        per_token_cast_to_fp8_transposed(grad, pad_tokens=True, mn_major_scales=True),
        d,
    )
    return d
