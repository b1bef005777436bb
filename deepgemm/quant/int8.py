"""Symmetric INT8 quantisation for the W8A8 GEMMs: one scale per row of activations ("per token") and per
output channel of weights (a row of the ``[N, K]`` weight).

Each row is scaled so that its largest magnitude maps to 127: ``scale = max(amax, AMAX_FLOOR) / 127`` and
``q = round_half_to_even(x / scale)`` clamped to ``[-127, 127]``, so ``x ~= q * scale``. -128 is never
produced, which keeps the range symmetric. The floor keeps all-zero rows finite: their scale is
``AMAX_FLOOR / 127`` and they quantise to zeros.
"""

import torch

from .cast import AMAX_FLOOR

INT8_MAX = 127.0


def _cast_rows(x: torch.Tensor, func: str, shape_doc: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor):
        hint = " (wrap a NumPy array with torch.from_numpy)" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{func}: x must be a torch.Tensor{hint}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{func}: x must be a floating-point tensor, got {x.dtype}")
    if x.dim() not in (2, 3):
        raise ValueError(f"{func}: x must be {shape_doc}, found shape {tuple(x.shape)}")
    x = x.float()
    amax = (
        x.abs().amax(dim=-1, keepdim=True) if x.shape[-1] else torch.zeros(*x.shape[:-1], 1, device=x.device)
    )
    scale = amax.clamp(min=AMAX_FLOOR) / INT8_MAX
    q = (x / scale).round().clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q.contiguous(), scale.squeeze(-1).contiguous()


def per_token_cast_to_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise activations to INT8 with one FP32 scale per row (token).

    Contract:
        x: ``[M, K]`` or ``[G, M, K]``, any floating dtype, any strides, CPU or CUDA, any ``K`` (``K == 0``
            gives the floor scale).
        returns: ``(q, s)`` on ``x``'s device, both contiguous: q ``int8`` with ``x``'s shape, values in
            ``[-127, 127]``; s ``float32 [M]`` (``[G, M]``), the A scales ``int8_gemm_nt`` takes.
        ``x[m, k] ~= q[m, k] * s[m]``.
        raises: ``TypeError`` when ``x`` is not a torch tensor (a NumPy array included) or not floating
            point; ``ValueError`` when it is not 2-D or 3-D.
    """
    return _cast_rows(x, "per_token_cast_to_int8", "[M, K] or [G, M, K]")


def per_channel_cast_to_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise weights ``[N, K]`` to INT8 with one FP32 scale per output channel (row ``n``).

    Contract:
        w: ``[N, K]`` or ``[G, N, K]`` (one matrix per expert), any floating dtype, any strides, CPU or CUDA.
        returns: ``(q, s)`` on ``w``'s device, both contiguous: q ``int8`` with ``w``'s shape, values in
            ``[-127, 127]``; s ``float32 [N]`` (``[G, N]``), the B scales ``int8_gemm_nt`` takes.
        ``w[n, k] ~= q[n, k] * s[n]``. For a ``[K, N]`` weight pass its transpose (a view).
        raises: ``TypeError`` when ``w`` is not a torch tensor or not floating point; ``ValueError`` when it
            is not 2-D or 3-D.
    """
    return _cast_rows(w, "per_channel_cast_to_int8", "[N, K] or [G, N, K]")
