"""The TF32 GEMMs: FP32 operands on the tensor cores, FP32 out, in the four storage layouts, and the
3xTF32 GEMM, which gets about FP32 accuracy from the same tensor cores.

The letters say how A and B are stored, as for the 16-bit ops: the first is A's (``n``: ``[M, K]``,
``t``: ``[K, M]``), the second B's (``t``: ``[N, K]``, ``n``: ``[K, N]``). TF32 tensor cores read
K-major operands only: a K-major operand that meets TMA's rules is read in place, any other (an
MN-major one, odd strides, K not a multiple of 4) is first copied K-major by a transposing copy kernel,
whose cost the ``tf32`` benchmark suite shows next to the NT layout.

Numerics. TF32 (``tf32_gemm_*``): the tensor cores read each FP32 operand's top 19 bits (1 sign, 8
exponent, 10 mantissa: the low 13 mantissa bits are truncated) and accumulate in FP32. 3xTF32
(``tf32x3_gemm_nt``): each operand x is split into ``hi = tf32(x)`` and ``lo = tf32(x - hi)`` (both
rounded to nearest) and ``lo·hi + hi·lo + hi·hi`` is accumulated in FP32; only ``lo·lo`` (below
2^-22 relative) and the rounding of ``lo`` are lost, so the result is about as accurate as an FP32 GEMM.
CPU path: TF32 emulated exactly on the inputs (the low 13 mantissa bits cleared) with FP64 products
and sums, rounded once to FP32; the 3xTF32 op computes the FP64 product of the FP32 inputs.
"""


import torch

from ..common.lazy import lazy_import
from ..common.settings import hopper_index
from ..common.traced import traceable_dense
from ..common.validation import (
    check_dense_kernel_dims,
    check_dtype,
    check_multiple,
    check_no_overlap,
    check_rank,
    check_same_device,
    check_shape,
    check_tensor,
    check_tma_operand,
)

# Dims of A and B as stored, by layout: the last one is contiguous when the operand is read in place.
STORED_DIMS = {
    "nt": (("M", "K"), ("N", "K")),
    "nn": (("M", "K"), ("K", "N")),
    "tn": (("K", "M"), ("K", "N")),
    "tt": (("K", "M"), ("N", "K")),
}
# The FP32 bits TF32 tensor cores ignore (the low 13 of the 23 mantissa bits).
TF32_DROPPED_BITS = (1 << 13) - 1

_CONTRACT = """
    Tensor contract (all on one device, CPU or a Hopper GPU):
        a: ``float32 {a_dims}``; b: ``float32 {b_dims}``; any strides, any ``K`` (an operand TMA cannot
            read in place as ``[rows, K]`` K-major is copied first).
        d: ``float32 [M, N]``; c: ``None`` or ``float32 [M, N]`` (``d`` itself accumulates in place).
        ``d`` and ``c``: ``stride(1) == 1``, ``stride(0)`` a multiple of 4 elements and ``>= N``, 16-byte
        aligned start, ``N`` a multiple of 4 (TMA rules).
    Sizes: any ``M, N, K >= 0``. ``M == 0`` or ``N == 0``: nothing to do; ``K == 0``: ``d`` becomes ``c``
    (or zeros).

    Raises (before anything runs): ``TypeError`` for a non-tensor or a wrong dtype; ``ValueError`` for
    a wrong rank or shape, a size or stride rule of ``d`` or ``c``, M, N or K at or past 2^31, a ``d``
    that overlaps ``a``, ``b`` or (unless it is ``d`` itself) ``c``, or tensors on different or
    unsupported devices; ``RuntimeError`` for a CUDA device that is not Hopper (sm_90).
    """


def _documented(layout: str):
    """Appends the tensor contract of ``layout`` to an op's docstring."""
    a_dims, b_dims = STORED_DIMS[layout]

    def decorate(op):
        op.__doc__ += _CONTRACT.format(a_dims=f"[{', '.join(a_dims)}]", b_dims=f"[{', '.join(b_dims)}]")
        return op

    return decorate


# `kernel`, imported on the first GPU call: CPU use never loads the CUDA driver modules.
_kernel = lazy_import("deepgemm.ops.tf32.kernel")


@traceable_dense
@_documented("nt")
def tf32_gemm_nt(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                 c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + A · Bᵀ`` with A ``[M, K]`` and B ``[N, K]`` (both K-major) on the TF32 tensor cores,
    FP32 accumulation, into ``d``; returns ``d``.
    """
    return _gemm("nt", a, b, d, c)


@traceable_dense
@_documented("nn")
def tf32_gemm_nn(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                 c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + A · B`` with A ``[M, K]`` and B ``[K, N]`` (``torch``'s usual ``a @ b``; B is copied
    K-major) on the TF32 tensor cores, FP32 accumulation, into ``d``; returns ``d``.
    """
    return _gemm("nn", a, b, d, c)


@traceable_dense
@_documented("tn")
def tf32_gemm_tn(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                 c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + Aᵀ · B`` with A stored ``[K, M]`` and B ``[K, N]`` (both copied K-major) on the TF32
    tensor cores, FP32 accumulation, into ``d``; returns ``d``.
    """
    return _gemm("tn", a, b, d, c)


@traceable_dense
@_documented("tt")
def tf32_gemm_tt(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                 c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + Aᵀ · Bᵀ`` with A stored ``[K, M]`` (copied K-major) and B ``[N, K]`` on the TF32
    tensor cores, FP32 accumulation, into ``d``; returns ``d``.
    """
    return _gemm("tt", a, b, d, c)


@traceable_dense
@_documented("nt")
def tf32x3_gemm_nt(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor,
                   c: torch.Tensor | None = None) -> torch.Tensor:
    """``D = C + A · Bᵀ`` with A ``[M, K]`` and B ``[N, K]`` to about FP32 accuracy on the TF32 tensor
    cores (3xTF32: three TF32 products of the operands' high and low parts, one FP32 accumulator),
    into ``d``; returns ``d``. Both operands are split by a copy kernel, so their strides are free
    (``b`` may be the ``.T`` view of a row-major ``[K, N]``).
    """
    return _gemm("nt", a, b, d, c, num_terms=3)


def _gemm(layout: str, a: object, b: object, d: object, c: object, num_terms: int = 1) -> torch.Tensor:
    A, B, m, n, k, cuda_index = _checked(layout, a, b, d, c)
    if m == 0 or n == 0:
        return d
    if k == 0:
        return d.zero_() if c is None else d.copy_(c)
    a_mk = A if layout[0] == "n" else A.T
    b_nk = B if layout[1] == "t" else B.T
    if cuda_index is None:
        if num_terms == 1:
            a_mk, b_nk = round_to_tf32_as_read(a_mk), round_to_tf32_as_read(b_nk)
        out = a_mk.double() @ b_nk.double().T
        if c is not None:
            out += c.double()
        return d.copy_(out)
    _kernel().launch_tf32_gemm(a_mk, b_nk, d, c, num_terms, cuda_index)
    return d


def round_to_tf32_as_read(x: torch.Tensor) -> torch.Tensor:
    """``x`` (float32) as the TF32 tensor cores read it: the low 13 mantissa bits cleared (truncation
    toward zero, as the PTX ISA specifies for ``wgmma`` with ``.tf32``); a new tensor."""
    return (x.contiguous().view(torch.int32) & ~TF32_DROPPED_BITS).view(torch.float32)


def _checked(layout: str, a: object, b: object, d: object,
             c: object) -> tuple[torch.Tensor, torch.Tensor, int, int, int, int | None]:
    """Check every rule of ``tf32_gemm_<layout>``; returns ``(A, B, M, N, K, the CUDA device index or
    None for the CPU)``, after ``require_hopper`` on a CUDA device."""
    a_dims, b_dims = STORED_DIMS[layout]
    A, B = check_tensor("a", a), check_tensor("b", b)
    check_dtype("a", A, (torch.float32,))
    check_dtype("b", B, (torch.float32,))
    check_rank("a", A, a_dims)
    check_rank("b", B, b_dims)
    sizes = dict(zip(a_dims, A.shape, strict=True))
    m, k = sizes["M"], sizes["K"]
    check_dtype("d", check_tensor("d", d), (torch.float32,))
    check_rank("d", d, ("M", "N"))
    # N from d: a B stored in the wrong layout is then reported against the shape this op expects.
    n = d.shape[1]
    check_shape("b", B, b_dims, [k if dim == "K" else n for dim in b_dims])
    check_shape("d", d, ("M", "N"), (m, n))
    outputs = {"d": d}
    if c is not None:
        check_dtype("c", check_tensor("c", c), (torch.float32,))
        check_shape("c", c, ("M", "N"), (m, n))
        outputs["c"] = c
    check_multiple("N", n, 4, "TMA needs 16-byte rows of float32 in d")
    check_dense_kernel_dims(m, n, k)
    device = check_same_device({"a": A, "b": B, **outputs})
    for name, tensor in outputs.items():
        check_tma_operand(name, tensor)
    # c may be d itself (accumulating in place: each element is read before it is written), not a part of it.
    same_as_d = c is not None and (c.data_ptr(), c.stride()) == (d.data_ptr(), d.stride())
    check_no_overlap("d", d, {"a": A, "b": B, "c": None if same_as_d else c})
    return A, B, m, n, k, hopper_index(device)
