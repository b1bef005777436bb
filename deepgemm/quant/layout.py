"""Integer helpers and the MN-major, TMA-aligned scale layout the kernels read.

TMA (the Hopper bulk-copy engine) needs every global stride but the innermost one to be a multiple
of 16 bytes and the base address 16-byte aligned. The kernels load the A scales ``sfa [MN, KB]``
one K block at a time, i.e. a column of ``MN`` floats, so the scales are stored MN-major ("column
major") with the MN extent padded up to 16 bytes.
"""

import torch

TMA_ALIGNMENT_BYTES = 16


def ceil_div(x: int, y: int) -> int:
    """``ceil(x / y)`` for non-negative ``x`` and positive ``y``, in exact integer arithmetic."""
    return (x + y - 1) // y


def align(x: int, y: int) -> int:
    """``x`` rounded up to a multiple of ``y``."""
    return ceil_div(x, y) * y


def get_tma_aligned_size(x: int, element_size: int) -> int:
    """``x`` elements of ``element_size`` bytes, rounded up to a whole number of 16-byte units.

    Raises ``ValueError`` unless ``element_size`` divides 16 (then no element count gives 16 bytes).
    """
    if element_size <= 0 or TMA_ALIGNMENT_BYTES % element_size:
        raise ValueError(f"element_size must divide {TMA_ALIGNMENT_BYTES} bytes, got {element_size}")
    return align(x, TMA_ALIGNMENT_BYTES // element_size)


def _mn_major_strides(shape: torch.Size, aligned_mn: int) -> tuple[int, ...]:
    kb = shape[-1]
    if len(shape) == 2:
        return (1, aligned_mn)
    return (aligned_mn * kb, 1, aligned_mn)


def get_mn_major_tma_aligned_tensor(sf: torch.Tensor) -> torch.Tensor:
    """The scale tensor ``sf`` with the same shape and values, in the MN-major TMA-aligned layout.

    Contract:
        sf: ``[MN, KB]`` or ``[G, MN, KB]``, any dtype whose size divides 16 bytes (the kernels use
            FP32), any strides, CPU or CUDA.
        returns: a tensor equal to ``sf`` with strides ``(1, aligned_mn)`` (2-D) or
            ``(aligned_mn * KB, 1, aligned_mn)`` (3-D), ``aligned_mn = get_tma_aligned_size(MN,
            element_size)``, and a 16-byte-aligned data pointer. The ``aligned_mn - MN`` padding
            rows of each column are left uninitialised: the kernels' tensor maps stop at ``MN``.

    ``sf`` itself is returned when it already has this layout, so a caller may convert once and
    pass the result on every call for free (each tensor attribute is read once: ~1 us). Otherwise the
    cost is one strided copy into a buffer allocated with the final strides (a single transpose
    kernel on CUDA).
    """
    shape = sf.shape
    if len(shape) not in (2, 3):
        raise ValueError(f"sf must be 2-D [MN, KB] or 3-D [G, MN, KB], found shape {tuple(shape)}")
    strides = _mn_major_strides(shape, get_tma_aligned_size(shape[-2], sf.element_size()))
    if sf.stride() == strides and sf.data_ptr() % TMA_ALIGNMENT_BYTES == 0:
        return sf
    out = torch.empty_strided(shape, strides, dtype=sf.dtype, device=sf.device)
    return out.copy_(sf)


# The name used by DeepGEMM before its v2 API; kept so code written against it runs unchanged.
get_col_major_tma_aligned_tensor = get_mn_major_tma_aligned_tensor
