"""torch.compile support: every GEMM op is also a torch.library custom op, ``torch.ops.deepgemm.<name>``,
that writes its ``d`` argument in place and returns nothing.

Code traced by torch.compile (Dynamo) calls the public op, which under tracing hands its tensors to the
custom op: one opaque node in the graph, so there is no graph break, ``fullgraph=True`` works, and the
CUDA-graph modes capture the launch like any other kernel. Eager calls skip the dispatcher and run the
op directly, since going through it would add host time to every call. The argument checks run when the
op runs, so a bad argument in compiled code raises the eager op's error at run time, not while tracing.

A family declares each op's custom op next to the op: a function with the custom op's schema (tensors
and ints, type-annotated) that unpacks its arguments into the eager op, found with ``eager(name)``.
"""

import functools
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

# The public ops by custom-op name, undecorated: what each custom op runs.
_EAGER: dict[str, Callable] = {}
# Read once: every eager call asks it. Dynamo knows the function itself, whatever name it is called by.
is_compiling = torch.compiler.is_compiling


def traceable(op_args: Callable[..., tuple[tuple, Tensor] | None], custom_op: Callable[..., None]):
    """Makes the decorated public op call ``torch.ops.deepgemm.<its name>`` when torch.compile traces it,
    registering ``custom_op`` (which mutates its argument ``d``) under that name.

    ``op_args`` takes the public op's arguments and returns the custom op's positional arguments and
    the ``d`` to return, or ``None`` when they do not fit its schema (a wrong type): the public op then
    runs as is and raises its own error.
    """

    def decorate(fn: Callable) -> Callable:
        name = fn.__name__
        _EAGER[name] = fn
        torch.library.custom_op(f"deepgemm::{name}", custom_op, mutates_args=("d",)).register_fake(
            _writes_d_only
        )

        @functools.wraps(fn)
        def op(*args, **kwargs):
            if is_compiling():
                traced = op_args(*args, **kwargs)
                if traced is not None:
                    custom_op_args, d = traced
                    getattr(torch.ops.deepgemm, name)(*custom_op_args)
                    return d
            return fn(*args, **kwargs)

        return op

    return decorate


def traceable_dense(fn: Callable) -> Callable:
    """``traceable`` for a dense op ``fn(a, b, d, c=None)`` of plain tensors (``D = C + A·B``, the 16-bit
    and TF32 ops). C may be d itself, but a schema input cannot alias the mutated d: the custom op takes
    ``(a, b, d, c, c_is_d)``, with C = d as the flag."""
    name = fn.__name__

    def custom_op(a: Tensor, b: Tensor, d: Tensor, c: Tensor | None, c_is_d: bool) -> None:
        eager(name)(a, b, d, d if c_is_d else c)

    return traceable(dense_op_args, custom_op)(fn)


def dense_op_args(a: object, b: object, d: object, c: object = None) -> tuple[tuple, Tensor] | None:
    """``traceable_dense``'s ``op_args``."""
    if not tensors(a, b, d) or not (c is None or isinstance(c, Tensor)):
        return None
    return (a, b, d, None if c is d else c, c is d), d


def eager(name: str) -> Callable:
    """The undecorated public op ``name``: what its custom op runs."""
    return _EAGER[name]


def _writes_d_only(*args: object) -> None:
    """The custom ops' fake implementation: they only write ``d``, whose shape is the caller's."""
    return None


def tensors(*values: object) -> bool:
    """Whether every value is a tensor (the custom ops' schemas take nothing else in those places)."""
    return all(isinstance(value, Tensor) for value in values)


def scaled_pairs(*values: object) -> bool:
    """Whether every value is a ``(tensor, scales)`` pair of tensors, as the FP8 ops take their operands
    (their custom ops take the four tensors)."""
    return all(isinstance(x, tuple | list) and len(x) == 2 and tensors(*x) for x in values)


def integer(value: object) -> bool:
    """Whether ``value`` fits a schema ``int`` (``bool`` excluded, as the ops' checks exclude it)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
