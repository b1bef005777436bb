"""The grouped twin of ``fp8_linear`` for MoE experts in the contiguous layout: ``fp8_grouped_linear`` and the
module ``Fp8GroupedLinear``.

Row ``m`` of ``x [M_sum, K]`` goes through expert ``m_indices[m]``'s weight ``W[g] [N, K]`` (``-1``: a
padding row). Forward: ``m_grouped_fp8_gemm_nt_contiguous`` (x per token, W per 128x128 block). Backward:
``dX`` by the same m-grouped GEMM on the transposed block-quantised experts
(``per_block_cast_to_fp8_and_transpose`` writes both in the forward); ``dW[g] = dY_gᵀ · X_g`` by
``k_grouped_fp8_gemm_nt_1d1d``, whose K groups are the experts' row segments (each a multiple of 128, so no
token padding is needed), both operands quantised per token along the tokens. Padding rows are zero in ``y``
and ``dx`` and are zeroed in ``x`` and ``dY`` before the weight gradient (a padding row must neither add to
``dW`` nor raise a block's scale). ``main_grad`` (float32 ``[G, N, K]`` on the weight) works as in
``fp8_linear``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops.common.group_indices import M_ALIGNMENT_CONTIGUOUS, group_ends_to_m_indices
from ..ops.fp8.grouped import m_grouped_fp8_gemm_nt_contiguous
from ..ops.fp8_1d1d.gemm import k_grouped_fp8_gemm_nt_1d1d
from ..quant.cast import (
    per_block_cast_to_fp8_and_transpose,
    per_token_cast_to_fp8,
    per_token_cast_to_fp8_transposed,
)
from ..quant.layout import _ceil_div
from .linear import check_linear_args, main_grad_of

_FUNC = "fp8_grouped_linear"


def segment_sizes(m_indices: Tensor, num_groups: int) -> Tensor:
    """``int32 [G]``: each expert's row segment in the contiguous layout, its row count rounded up to 128
    (computed on the device: no host sync)."""
    valid = m_indices >= 0
    counts = torch.zeros(num_groups, dtype=torch.int64, device=m_indices.device)
    counts.scatter_add_(0, m_indices.clamp(min=0).long(), valid.long())
    return ((counts + M_ALIGNMENT_CONTIGUOUS - 1) // M_ALIGNMENT_CONTIGUOUS * M_ALIGNMENT_CONTIGUOUS).int()


def _check_layout_now(m_indices: Tensor, num_groups: int) -> None:
    """On the CPU (free): ``m_indices`` is the packed contiguous layout ``fp8_grouped_linear`` needs."""
    if m_indices.numel() and (int(m_indices.min()) < -1 or int(m_indices.max()) >= num_groups):
        raise ValueError(f"{_FUNC}: m_indices values must be -1 (padding) or in [0, {num_groups})")
    sizes = segment_sizes(m_indices, num_groups)
    counts = torch.zeros(num_groups, dtype=torch.int64).scatter_add_(
        0, m_indices.clamp(min=0).long(), (m_indices >= 0).long()
    )
    ends = torch.cumsum(sizes.long(), 0) - (sizes.long() - counts)
    expected = group_ends_to_m_indices(ends, len(m_indices), M_ALIGNMENT_CONTIGUOUS)
    if int(sizes.sum()) != len(m_indices) or not torch.equal(expected, m_indices):
        raise ValueError(
            f"{_FUNC}: m_indices must be the packed contiguous layout: experts in order 0..G-1, "
            f"expert g's rows first in its segment, each segment its row count rounded up to "
            f"{M_ALIGNMENT_CONTIGUOUS} rows, and M_sum the sum of the segments"
        )


def grouped_forward(x: Tensor, weight: Tensor, m_indices: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(y, x with padding rows zeroed, wt_fp8, swt)``: the transposed experts for the data gradient."""
    x = torch.where((m_indices >= 0)[:, None], x, 0).contiguous()
    (w_fp8, sw), (wt_fp8, swt) = per_block_cast_to_fp8_and_transpose(weight)
    y = torch.zeros(x.shape[0], weight.shape[1], dtype=_gemm_dtype(x.dtype), device=x.device)
    if x.shape[0]:
        m_grouped_fp8_gemm_nt_contiguous(
            per_token_cast_to_fp8(x, mn_major_scales=True), (w_fp8, sw), y, m_indices
        )
    return y.to(x.dtype), x, wt_fp8, swt


def _gemm_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.bfloat16, torch.float32) else torch.float32


def _untransposed(wt: Tensor) -> tuple[int, int, int]:
    """The weight's shape ``[G, N, K]`` from its transpose ``[G, K, N]``."""
    return wt.shape[0], wt.shape[2], wt.shape[1]


def grouped_data_grad(
    dy: Tensor, wt_fp8: Tensor, swt: Tensor, m_indices: Tensor, dtype: torch.dtype
) -> Tensor:
    dx = torch.zeros(dy.shape[0], wt_fp8.shape[1], dtype=_gemm_dtype(dtype), device=dy.device)
    if dy.shape[0]:
        m_grouped_fp8_gemm_nt_contiguous(
            per_token_cast_to_fp8(dy, mn_major_scales=True),
            (wt_fp8, swt),
            dx,
            m_indices,
        )
    return dx.to(dtype)


def grouped_weight_grad_into(d: Tensor, dy: Tensor, x: Tensor, m_indices: Tensor, accumulate: bool) -> None:
    """``d[g] (+)= dY_gᵀ · X_g`` (FP32 ``d [G, N, K]``); ``x`` has its padding rows zeroed already."""
    dy = torch.where((m_indices >= 0)[:, None], dy, 0)
    ks = segment_sizes(m_indices, d.shape[0])
    k_grouped_fp8_gemm_nt_1d1d(
        per_token_cast_to_fp8_transposed(dy, mn_major_scales=True),
        per_token_cast_to_fp8_transposed(x, mn_major_scales=True),
        d,
        ks,
        c=d if accumulate else None,
    )


@torch.library.custom_op("deepgemm::fp8_grouped_linear_forward", mutates_args=())
def _forward_op(x: Tensor, weight: Tensor, m_indices: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return grouped_forward(x, weight, m_indices)


@_forward_op.register_fake
def _(x: Tensor, weight: Tensor, m_indices: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g, n, k = weight.shape
    return (
        x.new_empty((x.shape[0], n)),
        x.new_empty(x.shape),
        weight.new_empty((g, k, n), dtype=torch.float8_e4m3fn),
        weight.new_empty((g, _ceil_div(k, 128), _ceil_div(n, 128)), dtype=torch.float32),
    )


@torch.library.custom_op("deepgemm::fp8_grouped_linear_backward", mutates_args=())
def _backward_op(
    dy: Tensor, x: Tensor, wt_fp8: Tensor, swt: Tensor, m_indices: Tensor, weight_dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    dx = grouped_data_grad(dy, wt_fp8, swt, m_indices, x.dtype)
    dw = torch.empty(_untransposed(wt_fp8), dtype=torch.float32, device=dy.device)
    grouped_weight_grad_into(dw, dy, x, m_indices, accumulate=False)
    return dx, dw.to(weight_dtype)


@_backward_op.register_fake
def _(
    dy: Tensor, x: Tensor, wt_fp8: Tensor, swt: Tensor, m_indices: Tensor, weight_dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    return x.new_empty(x.shape), wt_fp8.new_empty(_untransposed(wt_fp8), dtype=weight_dtype)


@torch.library.custom_op("deepgemm::fp8_grouped_linear_weight_grad_accumulate", mutates_args=("main_grad",))
def _accumulate_op(main_grad: Tensor, dy: Tensor, x: Tensor, m_indices: Tensor) -> None:
    grouped_weight_grad_into(main_grad, dy, x, m_indices, accumulate=True)


@_accumulate_op.register_fake
def _(main_grad: Tensor, dy: Tensor, x: Tensor, m_indices: Tensor) -> None:
    return None


class _Fp8GroupedLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, m_indices: Tensor, main_grad: Tensor | None) -> Tensor:
        forward = (
            torch.ops.deepgemm.fp8_grouped_linear_forward
            if torch.compiler.is_compiling()
            else grouped_forward
        )
        y, x_masked, wt_fp8, swt = forward(x, weight, m_indices)
        ctx.save_for_backward(x_masked, wt_fp8, swt, m_indices, main_grad)
        ctx.weight_dtype = weight.dtype
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, wt_fp8, swt, m_indices, main_grad = ctx.saved_tensors
        need_dx, need_dw = ctx.needs_input_grad[:2]
        dy = dy.to(x.dtype).contiguous()
        compiling = torch.compiler.is_compiling()
        dx = dw = None
        if main_grad is not None or not compiling:
            if need_dw and main_grad is not None:
                (
                    torch.ops.deepgemm.fp8_grouped_linear_weight_grad_accumulate
                    if compiling
                    else lambda *args: grouped_weight_grad_into(*args, accumulate=True)
                )(main_grad, dy, x, m_indices)
            elif need_dw:
                dw32 = torch.empty(_untransposed(wt_fp8), dtype=torch.float32, device=dy.device)
                grouped_weight_grad_into(dw32, dy, x, m_indices, accumulate=False)
                dw = dw32.to(ctx.weight_dtype)
            if need_dx:
                dx = (
                    torch.ops.deepgemm.fp8_grouped_linear_backward(
                        dy, x, wt_fp8, swt, m_indices, ctx.weight_dtype
                    )[0]
                    if compiling
                    else grouped_data_grad(dy, wt_fp8, swt, m_indices, x.dtype)
                )
        else:
            dx, dw = torch.ops.deepgemm.fp8_grouped_linear_backward(
                dy, x, wt_fp8, swt, m_indices, ctx.weight_dtype
            )
        return dx, dw, None, None


def fp8_grouped_linear(x: Tensor, weight: Tensor, m_indices: Tensor) -> Tensor:
    """``y[m] = x[m] · weight[m_indices[m]]ᵀ`` for MoE experts in the contiguous layout, with FP8 GEMMs in
    the forward and the backward (module notes).

    Contract:
        x: ``[M_sum, K]``, bfloat16, float16 or float32, on a CPU or a Hopper GPU.
        weight: ``[G, N, K]`` master weights (one per expert), bfloat16, float16 or float32; may carry
            ``main_grad`` (float32 ``[G, N, K]``): ``main_grad += dW`` in FP32, no gradient returned.
        m_indices: ``int32 [M_sum]``, contiguous, the packed contiguous layout: experts in order
            ``0..G-1``, each expert's rows first in its segment and then ``-1`` padding rows up to a
            multiple of 128 (``get_m_alignment_for_contiguous_layout()``), ``M_sum`` the sum of the
            segments (``deepgemm.testing.make_grouped_inputs`` builds it). Checked on the CPU; on a GPU a
            different layout gives unspecified gradients for ``weight``.
        K and N: multiples of 16.
        returns: ``y [M_sum, N]`` in ``x``'s dtype, zero on padding rows; differentiable in ``x`` and
            ``weight`` (``dx`` zero on padding rows).
        raises: ``TypeError`` for a non-tensor or a wrong dtype; ``ValueError`` for shapes that do not
            match, K or N not a multiple of 16, a bad ``m_indices`` (on the CPU), mixed devices.
    """
    check_linear_args(_FUNC, x, weight, None, ("G", "N", "K"))
    if x.dim() != 2:
        raise ValueError(f"{_FUNC}: x must be [M_sum, K], found shape {tuple(x.shape)}")
    if not isinstance(m_indices, Tensor):
        raise TypeError(f"{_FUNC}: m_indices must be a torch.Tensor, got {type(m_indices).__name__}")
    if m_indices.dtype != torch.int32:
        raise TypeError(f"{_FUNC}: m_indices must be int32, got {m_indices.dtype}")
    if tuple(m_indices.shape) != (x.shape[0],) or not m_indices.is_contiguous():
        raise ValueError(
            f"{_FUNC}: m_indices must be a contiguous [M_sum] = [{x.shape[0]}] tensor, found shape "
            f"{tuple(m_indices.shape)}"
        )
    if m_indices.device != x.device:
        raise ValueError(f"{_FUNC}: m_indices must be on x's device {x.device}, found {m_indices.device}")
    if x.is_cpu and not torch.compiler.is_compiling():  # free on the CPU; traced code cannot read values
        _check_layout_now(m_indices, weight.shape[0])
    return _Fp8GroupedLinearFunction.apply(x, weight, m_indices, main_grad_of(_FUNC, weight))


class Fp8GroupedLinear(torch.nn.Module):
    """``num_experts`` FP8-trained linear layers (no bias) for MoE experts in the contiguous layout:
    ``forward(x, m_indices)`` runs ``fp8_grouped_linear``. ``weight [num_experts, out_features,
    in_features]`` (bfloat16 by default), each expert initialised as ``torch.nn.Linear`` would be."""

    def __init__(
        self,
        num_experts: int,
        in_features: int,
        out_features: int,
        device=None,
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_experts", num_experts),
            ("in_features", in_features),
            ("out_features", out_features),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Fp8GroupedLinear: {name} must be a positive int, got {value!r}")
        self.num_experts, self.in_features, self.out_features = num_experts, in_features, out_features
        weight = torch.empty(num_experts, out_features, in_features, device=device, dtype=dtype)
        bound = 1.0 / in_features**0.5  # nn.Linear's kaiming_uniform(a=sqrt(5)) bound
        torch.nn.init.uniform_(weight, -bound, bound)
        self.weight = torch.nn.Parameter(weight)

    def forward(self, x: Tensor, m_indices: Tensor) -> Tensor:
        return fp8_grouped_linear(x, self.weight, m_indices)

    def extra_repr(self) -> str:
        return (
            f"num_experts={self.num_experts}, in_features={self.in_features}, "
            f"out_features={self.out_features}"
        )


# --- ahead-of-time compilation ---------------------------------------------------------------------------


def kernel_specs(request, num_sms: int) -> list:
    """The kernels a training step of ``fp8_grouped_linear`` loads (``deepgemm.precompile``, family
    ``"fp8_grouped_linear"``), for ``request.m`` rows (``M_sum``, every expert's segment padded to 128),
    ``request.num_groups`` experts of ``request.k`` in and ``request.n`` out features, ``x`` and the weight
    of ``request.in_dtype``, ``has_c``: the weight carries a ``main_grad``; made by the kernel modules' own
    spec functions, on ``num_sms`` SMs: the forward's casts and grouped GEMM (the per-row-index kind), the
    data gradient's cast of dY and grouped GEMM, the weight gradient's transposed casts and k-grouped 1D1D
    GEMM (into FP32)."""
    from ..ops.cast import kernel as cast
    from ..ops.common.launch import GEMM_KIND_CONTIGUOUS_ENDS, K_GROUPED, KernelRequest
    from ..ops.fp8 import kernel as fp8
    from ..ops.fp8_1d1d import kernel as fp8_1d1d

    rows, n, k, groups, dtype = request.m, request.n, request.k, request.num_groups, request.in_dtype

    def casts(name: str, cols: int, transposed: bool = False) -> list:
        return [cast.kernel_spec(name, dtype, cols % cast.VEC_ELEMS == 0, num_sms, transposed)]

    def grouped_gemm(gemm_n: int, gemm_k: int) -> list:
        specs = fp8.kernel_specs(KernelRequest("fp8_1d2d", rows, gemm_n, gemm_k, "contiguous", groups,
                                               _gemm_dtype(dtype)), num_sms)
        return [spec for spec in specs if GEMM_KIND_CONTIGUOUS_ENDS not in spec.template_args]

    return [
        *casts("per_block", k, transposed=True),
        *casts("per_token", k),
        *grouped_gemm(n, k),
        *casts("per_token", n),
        *grouped_gemm(k, n),
        *casts("per_token_transposed", n),
        *casts("per_token_transposed", k),
        *fp8_1d1d.kernel_specs(KernelRequest("fp8_1d1d", n, k, rows, K_GROUPED, groups, torch.float32,
                                             has_c=request.has_c), num_sms),
    ]
