"""torch.compile support: every GEMM op is also a torch.library custom op, ``torch.ops.deepgemm.<name>``,
that writes its ``d`` argument in place and returns nothing.

Code traced by torch.compile (Dynamo) calls the public op, which under tracing hands its tensors to the
custom op: one opaque node in the graph, so there is no graph break, ``fullgraph=True`` works, and the
CUDA-graph modes capture the launch like any other kernel. Eager calls skip the dispatcher and run the
op directly, since going through it would add host time to every call. The argument checks run when the
op runs, so a bad argument in compiled code raises the eager op's error at run time, not while tracing.
"""

import functools
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

# The public ops by custom-op name, undecorated: what each custom op runs.
_EAGER: dict[str, Callable] = {}


def traceable(op_args: Callable[..., tuple[tuple, Tensor] | None]):
    """Makes the decorated public op call ``torch.ops.deepgemm.<its name>`` when torch.compile traces it.

    ``op_args`` takes the public op's arguments and returns the custom op's positional arguments and
    the ``d`` to return, or ``None`` when they do not fit its schema (a wrong type): the public op then
    runs as is and raises its own error.
    """

    def decorate(fn: Callable) -> Callable:
        name = fn.__name__
        _EAGER[name] = fn

        @functools.wraps(fn)
        def op(*args, **kwargs):
            if torch.compiler.is_compiling():
                traced = op_args(*args, **kwargs)
                if traced is not None:
                    custom_op_args, d = traced
                    getattr(torch.ops.deepgemm, name)(*custom_op_args)
                    return d
            return fn(*args, **kwargs)

        return op

    return decorate


def tensors(*values: object) -> bool:
    """Whether every value is a tensor (the custom ops' schemas take nothing else in those places)."""
    return all(isinstance(value, Tensor) for value in values)


def integer(value: object) -> bool:
    """Whether ``value`` fits a schema ``int`` (``bool`` excluded, as the ops' checks exclude it)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def fp8_operands(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` are FP8 operands ``(tensor, scales)``."""
    return all(isinstance(x, tuple | list) and len(x) == 2 and tensors(*x) for x in (a, b))


# --- the custom ops: each unpacks its arguments into the public op's --------------------------------------


def _fp8_gemm_nt(a: Tensor, sfa: Tensor, b: Tensor, sfb: Tensor, d: Tensor) -> None:
    _EAGER["fp8_gemm_nt"]((a, sfa), (b, sfb), d)


def _m_grouped_fp8_gemm_nt_contiguous(a: Tensor, sfa: Tensor, b: Tensor, sfb: Tensor, d: Tensor,
                                      m_indices: Tensor) -> None:
    _EAGER["m_grouped_fp8_gemm_nt_contiguous"]((a, sfa), (b, sfb), d, m_indices)


def _m_grouped_fp8_gemm_nt_contiguous_offsets(a: Tensor, sfa: Tensor, b: Tensor, sfb: Tensor, d: Tensor,
                                              group_ends: Tensor) -> None:
    _EAGER["m_grouped_fp8_gemm_nt_contiguous_offsets"]((a, sfa), (b, sfb), d, group_ends)


def _m_grouped_fp8_gemm_nt_masked(a: Tensor, sfa: Tensor, b: Tensor, sfb: Tensor, d: Tensor, masked_m: Tensor,
                                  expected_m: int) -> None:
    _EAGER["m_grouped_fp8_gemm_nt_masked"]((a, sfa), (b, sfb), d, masked_m, expected_m)


def _bf16_gemm(layout: str) -> Callable:
    # C may be d itself; a schema input cannot alias the mutated d, so that case is a flag.
    def gemm(a: Tensor, b: Tensor, d: Tensor, c: Tensor | None, c_is_d: bool) -> None:
        _EAGER[f"bf16_gemm_{layout}"](a, b, d, d if c_is_d else c)

    gemm.__name__ = f"_bf16_gemm_{layout}"
    return gemm


def _m_grouped_bf16_gemm_nt_contiguous(a: Tensor, b: Tensor, d: Tensor, m_indices: Tensor) -> None:
    _EAGER["m_grouped_bf16_gemm_nt_contiguous"](a, b, d, m_indices)


def _m_grouped_bf16_gemm_nt_masked(a: Tensor, b: Tensor, d: Tensor, masked_m: Tensor,
                                   expected_m: int) -> None:
    _EAGER["m_grouped_bf16_gemm_nt_masked"](a, b, d, masked_m, expected_m)


def bf16_op_args(a: object, b: object, d: object, c: object = None) -> tuple[tuple, Tensor] | None:
    """``traceable``'s ``op_args`` for the dense 16-bit ops."""
    if not tensors(a, b, d) or not (c is None or isinstance(c, Tensor)):
        return None
    return (a, b, d, None if c is d else c, c is d), d


def _writes_d_only(*args: object) -> None:
    """The custom ops' fake implementation: they only write ``d``, whose shape is the caller's."""
    return None


for _impl in (
    _fp8_gemm_nt,
    _m_grouped_fp8_gemm_nt_contiguous,
    _m_grouped_fp8_gemm_nt_contiguous_offsets,
    _m_grouped_fp8_gemm_nt_masked,
    *(_bf16_gemm(layout) for layout in ("nt", "nn", "tn", "tt")),
    _m_grouped_bf16_gemm_nt_contiguous,
    _m_grouped_bf16_gemm_nt_masked,
):
    torch.library.custom_op(f"deepgemm::{_impl.__name__[1:]}", _impl, mutates_args=("d",)).register_fake(
        _writes_d_only
    )
