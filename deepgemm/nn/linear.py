"""FP8 training of a linear layer in the DeepSeek-V3 recipe: ``fp8_linear`` (an autograd function) and
``Fp8Linear`` (a module holding a BF16 master weight).

Forward ``Y = X · Wᵀ (+ b)``: X quantised per token (1x128 scales), W per 128x128 block, one 1D2D
GEMM (``fp8_gemm_nt``). Backward, from ``dY``:

- ``dX = dY · W``: dY per token, the forward's quantised W transposed with its block scales
  (exact, no re-quantisation: ``per_block_cast_to_fp8_and_transpose`` writes both in the forward, from
  one read of W), one 1D2D GEMM;
- ``dW = dYᵀ · X``: the reduction runs over tokens, so both operands are quantised per token along the
  tokens (``per_token_cast_to_fp8_transposed``, tokens padded with zeros to a multiple of 128) and one
  1D1D GEMM (``fp8_gemm_nt_1d1d``) accumulates in FP32;
- ``db = Σ_tokens dY`` in FP32.

Master-gradient accumulation: a weight with a ``main_grad`` attribute (a float32 tensor of the
weight's shape, as Megatron-style trainers attach) gets ``main_grad += dW`` in place, accumulated in
FP32 by the 1D1D GEMM itself (its ``c`` is its ``d``), so gradient accumulation over micro-batches never
rounds to BF16; ``weight.grad`` is then left untouched (the function returns no gradient for it).

torch.compile: the forward and the backward are each one custom op (``torch.ops.deepgemm.fp8_linear_*``)
with a fake implementation, so a compiled model traces them as opaque nodes; eager calls run them
directly. Activation checkpointing re-runs the forward, which is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops.fp8.dense import fp8_gemm_nt
from ..ops.fp8_1d1d.gemm import fp8_gemm_nt_1d1d
from ..quant.cast import (
    per_block_cast_to_fp8_and_transpose,
    per_token_cast_to_fp8,
    per_token_cast_to_fp8_transposed,
)
from ..quant.layout import _ceil_div

# What the FP8 GEMM writes; other activation dtypes (float16) get an FP32 result converted.
_GEMM_OUT_DTYPES = (torch.bfloat16, torch.float32)
_ACTIVATION_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
# FP8 rows are read by TMA in 16-byte units: K (forward) and N (the data gradient's reduction) must be
# multiples of 16.
_FP8_ROW_ELEMS = 16


def check_linear_args(
    func: str, x: object, weight: object, bias: object, weight_dims: tuple[str, ...]
) -> None:
    """The rules ``fp8_linear`` and its grouped twin share for ``x``, ``weight`` and ``bias``."""
    for name, value in (("x", x), ("weight", weight)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{func}: {name} must be a torch.Tensor, got {type(value).__name__}")
        if value.dtype not in _ACTIVATION_DTYPES:
            raise TypeError(f"{func}: {name} must be bfloat16, float16 or float32, got {value.dtype}")
    if weight.dim() != len(weight_dims):
        raise ValueError(
            f"{func}: weight must be [{', '.join(weight_dims)}], found shape {tuple(weight.shape)}"
        )
    n, k = weight.shape[-2:]
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(
            f"{func}: x must be [..., K] with K = weight.shape[-1] = {k}, found shape {tuple(x.shape)}"
        )
    for dim, size in (("K (in_features)", k), ("N (out_features)", n)):
        if size % _FP8_ROW_ELEMS:
            raise ValueError(
                f"{func}: {dim} must be a multiple of {_FP8_ROW_ELEMS} (TMA reads 16-byte rows of "
                f"FP8 in the forward and the data gradient), got {size}"
            )
    if bias is not None:
        if not isinstance(bias, Tensor):
            raise TypeError(f"{func}: bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if not bias.is_floating_point():
            raise TypeError(f"{func}: bias must be a floating-point tensor, got {bias.dtype}")
        if tuple(bias.shape) != (*weight.shape[:-2], n):
            raise ValueError(
                f"{func}: bias must have shape {(*weight.shape[:-2], n)}, found {tuple(bias.shape)}"
            )
    devices = {t.device for t in (x, weight, bias) if t is not None}
    if len(devices) != 1:
        raise ValueError(
            f"{func}: x, weight and bias must be on one device, found {sorted(map(str, devices))}"
        )
    device = devices.pop()
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{func}: the tensors must be on a CPU or CUDA device, found {device}")


def main_grad_of(func: str, weight: Tensor) -> Tensor | None:
    """``weight.main_grad`` if it is set (checked: float32, the weight's shape and device), else None."""
    main_grad = getattr(weight, "main_grad", None)
    if main_grad is None:
        return None
    if not isinstance(main_grad, Tensor) or main_grad.dtype != torch.float32:
        raise TypeError(
            f"{func}: weight.main_grad must be a float32 tensor, got "
            f"{getattr(main_grad, 'dtype', type(main_grad).__name__)}"
        )
    if main_grad.shape != weight.shape or main_grad.device != weight.device:
        raise ValueError(
            f"{func}: weight.main_grad must have the weight's shape {tuple(weight.shape)} and device "
            f"{weight.device}, found {tuple(main_grad.shape)} on {main_grad.device}"
        )
    return main_grad


def gemm_out(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """An FP8 GEMM output for a result of ``dtype``: ``dtype`` itself, or FP32 for float16."""
    return torch.empty(rows, cols, dtype=dtype if dtype in _GEMM_OUT_DTYPES else torch.float32, device=device)


# --- the two halves, as plain functions (eager) and custom ops (torch.compile) ------------------------------


def linear_forward(x2: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """``(y, wt_fp8, swt)``: ``y = x2 · weightᵀ (+ bias)`` in ``x2``'s dtype, and the block-quantised
    ``weightᵀ`` for the data gradient."""
    (w_fp8, sw), (wt_fp8, swt) = per_block_cast_to_fp8_and_transpose(weight)
    y = gemm_out(x2.shape[0], weight.shape[0], x2.dtype, x2.device)
    if x2.shape[0]:
        fp8_gemm_nt(per_token_cast_to_fp8(x2, mn_major_scales=True), (w_fp8, sw), y)
    if bias is not None:
        y += bias
    return y.to(x2.dtype), wt_fp8, swt


def data_grad(dy2: Tensor, wt_fp8: Tensor, swt: Tensor, dtype: torch.dtype) -> Tensor:
    """``dX = dY · W`` through the 1D2D GEMM on the transposed block-quantised weight."""
    dx = gemm_out(dy2.shape[0], wt_fp8.shape[0], dtype, dy2.device)
    if dy2.shape[0]:
        fp8_gemm_nt(per_token_cast_to_fp8(dy2, mn_major_scales=True), (wt_fp8, swt), dx)
    return dx.to(dtype)


def weight_grad_into(d: Tensor, dy2: Tensor, x2: Tensor, accumulate: bool) -> None:
    """``d (+)= dY2ᵀ · X2`` (FP32 ``d [N, K]``) through the 1D1D GEMM, tokens padded to 128."""
    dyt = per_token_cast_to_fp8_transposed(dy2, pad_tokens=True, mn_major_scales=True)
    xt = per_token_cast_to_fp8_transposed(x2, pad_tokens=True, mn_major_scales=True)
    fp8_gemm_nt_1d1d(dyt, xt, d, c=d if accumulate else None)


def linear_backward(
    dy2: Tensor,
    x2: Tensor,
    wt_fp8: Tensor,
    swt: Tensor,
    weight_dtype: torch.dtype,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(dx, dw, db)`` of ``linear_forward`` (None where not needed); dw in ``weight_dtype``."""
    dx = data_grad(dy2, wt_fp8, swt, x2.dtype) if need_dx else None
    dw = None
    if need_dw:
        # The 1D1D GEMM rounds its FP32 sum once into a BF16 or FP32 d: no conversion pass for those.
        dw = gemm_out(wt_fp8.shape[1], wt_fp8.shape[0], weight_dtype, dy2.device)
        weight_grad_into(dw, dy2, x2, accumulate=False)
        dw = dw.to(weight_dtype)
    db = dy2.sum(0, dtype=torch.float32) if need_db else None
    return dx, dw, db


@torch.library.custom_op("deepgemm::fp8_linear_forward", mutates_args=())
def _forward_op(x2: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    return linear_forward(x2, weight, bias)


@_forward_op.register_fake
def _(x2: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    n, k = weight.shape
    return (
        x2.new_empty((x2.shape[0], n)),
        weight.new_empty((k, n), dtype=torch.float8_e4m3fn),
        weight.new_empty((_ceil_div(k, 128), _ceil_div(n, 128)), dtype=torch.float32),
    )


@torch.library.custom_op("deepgemm::fp8_linear_backward", mutates_args=())
def _backward_op(
    dy2: Tensor, x2: Tensor, wt_fp8: Tensor, swt: Tensor, weight_dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    dx, dw, _ = linear_backward(dy2, x2, wt_fp8, swt, weight_dtype, True, True, False)
    return dx, dw


@_backward_op.register_fake
def _(
    dy2: Tensor, x2: Tensor, wt_fp8: Tensor, swt: Tensor, weight_dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    return x2.new_empty(x2.shape), wt_fp8.new_empty((wt_fp8.shape[1], wt_fp8.shape[0]), dtype=weight_dtype)


@torch.library.custom_op("deepgemm::fp8_linear_weight_grad_accumulate", mutates_args=("main_grad",))
def _accumulate_op(main_grad: Tensor, dy2: Tensor, x2: Tensor) -> None:
    weight_grad_into(main_grad, dy2, x2, accumulate=True)


@_accumulate_op.register_fake
def _(main_grad: Tensor, dy2: Tensor, x2: Tensor) -> None:
    return None


# --- the autograd function ----------------------------------------------------------------------------------


class _Fp8LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, main_grad: Tensor | None) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        compiling = torch.compiler.is_compiling()
        y, wt_fp8, swt = (torch.ops.deepgemm.fp8_linear_forward if compiling else linear_forward)(
            x2, weight, bias
        )
        ctx.save_for_backward(x2, wt_fp8, swt, main_grad)
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.x_shape = x.shape
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy: Tensor):
        x2, wt_fp8, swt, main_grad = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        dy2 = dy.reshape(-1, dy.shape[-1])
        if dy2.dtype != x2.dtype:
            dy2 = dy2.to(x2.dtype)
        dy2 = dy2.contiguous()
        compiling = torch.compiler.is_compiling()
        dx = dw = None
        if main_grad is not None:
            if need_dw:
                (torch.ops.deepgemm.fp8_linear_weight_grad_accumulate if compiling else _accumulate_eager)(
                    main_grad, dy2, x2
                )
            if need_dx:
                dx = (
                    torch.ops.deepgemm.fp8_linear_backward(dy2, x2, wt_fp8, swt, ctx.weight_dtype)[0]
                    if compiling
                    else data_grad(dy2, wt_fp8, swt, x2.dtype)
                )
        elif compiling:
            dx, dw = torch.ops.deepgemm.fp8_linear_backward(dy2, x2, wt_fp8, swt, ctx.weight_dtype)
        else:
            dx, dw, _ = linear_backward(dy2, x2, wt_fp8, swt, ctx.weight_dtype, need_dx, need_dw, False)
        db = dy2.sum(0, dtype=torch.float32).to(ctx.bias_dtype) if need_db else None
        if dx is not None:
            dx = dx.view(ctx.x_shape)
        return dx, (dw if need_dw else None), db, None


def _accumulate_eager(main_grad: Tensor, dy2: Tensor, x2: Tensor) -> None:
    weight_grad_into(main_grad, dy2, x2, accumulate=True)


def fp8_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y = x · weightᵀ + bias`` with FP8 GEMMs in the forward and the backward (module notes).

    Contract:
        x: ``[..., K]``, bfloat16 (the usual case), float16 or float32, on a CPU or a Hopper GPU; any
            strides (a non-contiguous ``x`` is copied once).
        weight: ``[N, K]`` master weight, bfloat16, float16 or float32, on ``x``'s device; it may carry
            ``main_grad`` (float32 ``[N, K]``): then ``main_grad += dW`` in FP32 in the backward and no
            gradient is returned for ``weight``.
        bias: ``None`` or ``[N]``, any float dtype, on ``x``'s device.
        K and N: multiples of 16. Any number of tokens (rows of ``x``), 0 included.
        returns: ``y [..., N]`` in ``x``'s dtype (the FP8 GEMM writes BF16 or FP32; FP16 is converted
            from FP32), differentiable in ``x``, ``weight`` and ``bias``: ``dx`` in ``x``'s dtype, ``dW``
            computed in FP32 and returned in ``weight``'s dtype, ``db`` summed in FP32.
        raises: ``TypeError`` for a non-tensor or a wrong dtype (also of ``weight.main_grad``);
            ``ValueError`` for shapes that do not match, K or N not a multiple of 16, tensors on
            different or unsupported devices.
    """
    check_linear_args("fp8_linear", x, weight, bias, ("N", "K"))
    main_grad = main_grad_of("fp8_linear", weight)
    return _Fp8LinearFunction.apply(x, weight, bias, main_grad)


class Fp8Linear(torch.nn.Module):
    """A drop-in for ``torch.nn.Linear`` whose forward and backward GEMMs run in FP8 (``fp8_linear``).

    Holds a master ``weight [out_features, in_features]`` (bfloat16 by default) and an optional ``bias
    [out_features]``, initialised as ``torch.nn.Linear`` initialises them; the FP8 copies are made on
    every forward (the weight changes every step). Set ``weight.main_grad`` (float32, the weight's
    shape) to accumulate the weight gradient there in FP32 instead of ``weight.grad``.
    ``in_features`` and ``out_features`` must be multiples of 16.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device=None,
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Fp8Linear: {name} must be an int, got {type(value).__name__}")
            if value <= 0 or value % _FP8_ROW_ELEMS:
                raise ValueError(
                    f"Fp8Linear: {name} must be a positive multiple of {_FP8_ROW_ELEMS}, got {value}"
                )
        if dtype not in _ACTIVATION_DTYPES:
            raise TypeError(f"Fp8Linear: dtype must be bfloat16, float16 or float32, got {dtype}")
        reference = torch.nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.in_features, self.out_features = in_features, out_features
        self.weight = reference.weight
        self.bias = reference.bias

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear) -> Fp8Linear:
        """An ``Fp8Linear`` sharing ``linear``'s parameters (no copy)."""
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(
                f"Fp8Linear.from_linear: linear must be a torch.nn.Linear, got {type(linear).__name__}"
            )
        module = cls.__new__(cls)
        torch.nn.Module.__init__(module)
        module.in_features, module.out_features = linear.in_features, linear.out_features
        module.weight, module.bias = linear.weight, linear.bias
        return module

    def forward(self, x: Tensor) -> Tensor:
        return fp8_linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


# --- ahead-of-time compilation ---------------------------------------------------------------------------


def kernel_specs(request, num_sms: int) -> list:
    """The kernels a training step of ``fp8_linear`` loads (``deepgemm.precompile``, family
    ``"fp8_linear"``), for ``request.m`` tokens, ``request.k`` in and ``request.n`` out features, ``x`` and
    the weight of ``request.in_dtype`` (contiguous), ``has_c``: the weight carries a ``main_grad``; made by
    the kernel modules' own spec functions, on ``num_sms`` SMs: the forward's casts and GEMM, the data
    gradient's cast of dY and GEMM, the weight gradient's transposed casts and 1D1D GEMM."""
    from ..ops.cast import kernel as cast
    from ..ops.common.launch import KernelRequest
    from ..ops.fp8 import kernel as fp8
    from ..ops.fp8_1d1d import kernel as fp8_1d1d

    tokens, n, k, dtype = request.m, request.n, request.k, request.in_dtype
    out = dtype if dtype in _GEMM_OUT_DTYPES else torch.float32
    weight_grad_out = torch.float32 if request.has_c else out

    def casts(name: str, cols: int, transposed: bool = False) -> list:
        return [cast.kernel_spec(name, dtype, cols % cast.VEC_ELEMS == 0, num_sms, transposed)]

    return [
        *casts("per_block", k, transposed=True),
        *casts("per_token", k),
        *fp8.kernel_specs(KernelRequest("fp8_1d2d", tokens, n, k, out_dtype=out), num_sms),
        *casts("per_token", n),
        *fp8.kernel_specs(KernelRequest("fp8_1d2d", tokens, k, n, out_dtype=out), num_sms),
        *casts("per_token_transposed", n),
        *casts("per_token_transposed", k),
        *fp8_1d1d.kernel_specs(KernelRequest("fp8_1d1d", n, k, _ceil_div(tokens, 128) * 128,
                                             out_dtype=weight_grad_out, has_c=request.has_c), num_sms),
    ]
