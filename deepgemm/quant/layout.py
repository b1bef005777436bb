"""Integer helpers and the MN-major, TMA-aligned scale layout the kernels read.

TMA (the Hopper bulk-copy engine) needs every global stride but the innermost one to be a multiple
of 16 bytes and the base address 16-byte aligned. The kernels load the A scales ``sfa [MN, KB]``
one K block at a time, i.e. a column of ``MN`` floats, so the scales are stored MN-major ("column
major") with the MN extent padded up to 16 bytes.

The integer helpers run on the per-call path of the ops and in the heuristics' loops, so each checks its
arguments with one ``type(...) is int`` test and a comparison per argument, and builds a message only
when it raises.
"""

import numbers

import torch

TMA_ALIGNMENT_BYTES = 16


def _ceil_div(x: int, y: int) -> int:
    """Unchecked ``ceil(x / y)``, for this package's callers whose arguments are already valid."""
    return (x + y - 1) // y


def _checked_int(func: str, name: str, value: object, minimum: int | None) -> int:
    """``value`` as an integer no smaller than ``minimum`` (0 or 1); the slow path of the integer helpers.

    Accepts what the fast path does not: NumPy integers (returned as ``int``) and ``torch.SymInt``
    (shapes traced by ``torch.compile``, returned as they are). Raises ``TypeError`` for anything that is
    not an integer (``bool`` and ``float`` included) and ``ValueError`` below ``minimum`` (unless None).
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, torch.SymInt)):
        raise TypeError(f"{func}: {name} must be an int (not bool or float), got {type(value).__name__} "
                        f"{value!r}")
    if minimum is not None and value < minimum:
        rule = "non-negative" if minimum == 0 else "positive"
        raise ValueError(f"{func}: {name} must be a {rule} int, got {value}")
    return value if isinstance(value, torch.SymInt) else int(value)


def ceil_div(x: int, y: int) -> int:
    """``ceil(x / y)`` in exact integer arithmetic.

    Contract:
        x: ``int >= 0``; y: ``int >= 1``. NumPy integers and ``torch.SymInt`` are accepted too.
        Raises ``TypeError`` when either is not an integer (``bool`` and ``float`` included) and
        ``ValueError`` when ``x < 0`` or ``y < 1``.
    """
    if type(x) is int is type(y) and x >= 0 < y:
        return (x + y - 1) // y
    x, y = _checked_int("ceil_div", "x", x, 0), _checked_int("ceil_div", "y", y, 1)
    return (x + y - 1) // y


def align(x: int, y: int) -> int:
    """``x`` rounded up to a multiple of ``y``.

    Contract: as ``ceil_div``: x ``int >= 0``, y ``int >= 1``; ``TypeError`` for a non-integer (``bool`` and
    ``float`` included), ``ValueError`` for ``x < 0`` or ``y < 1``.
    """
    if type(x) is int is type(y) and x >= 0 < y:
        return (x + y - 1) // y * y
    x, y = _checked_int("align", "x", x, 0), _checked_int("align", "y", y, 1)
    return (x + y - 1) // y * y


def get_tma_aligned_size(x: int, element_size: int) -> int:
    """``x`` elements of ``element_size`` bytes, rounded up to a whole number of 16-byte units.

    Contract:
        x: ``int >= 0``; element_size: an ``int`` that divides 16 (1, 2, 4, 8 or 16).
        Raises ``TypeError`` when either is not an integer (``bool`` and ``float`` included),
        ``ValueError`` when ``x < 0`` or ``element_size`` does not divide 16 (then no element count
        gives 16 bytes).
    """
    if type(x) is not int or x < 0:
        x = _checked_int("get_tma_aligned_size", "x", x, 0)
    if type(element_size) is not int:
        element_size = _checked_int("get_tma_aligned_size", "element_size", element_size, None)
    if element_size <= 0 or TMA_ALIGNMENT_BYTES % element_size:
        raise ValueError(f"get_tma_aligned_size: element_size must divide {TMA_ALIGNMENT_BYTES} bytes, "
                         f"got {element_size}")
    return _ceil_div(x, TMA_ALIGNMENT_BYTES // element_size) * (TMA_ALIGNMENT_BYTES // element_size)


def _mn_major_strides(shape: torch.Size, aligned_mn: int) -> tuple[int, ...]:
    kb = shape[-1]
    if len(shape) == 2:
        return (1, aligned_mn)
    return (aligned_mn * kb, 1, aligned_mn)


def _reject_scale_tensor(sf: object) -> None:
    """Raises the error that ``get_mn_major_tma_aligned_tensor`` owes a ``sf`` of the wrong type or dtype."""
    func = "get_mn_major_tma_aligned_tensor"
    if not isinstance(sf, torch.Tensor):
        hint = " (wrap a NumPy array with torch.from_numpy)" if type(sf).__module__ == "numpy" else ""
        raise TypeError(f"{func}: sf must be a torch.Tensor{hint}, got {type(sf).__name__}")
    raise TypeError(f"{func}: sf must be a floating-point tensor (the kernels read float32), got {sf.dtype}")


def get_mn_major_tma_aligned_tensor(sf: torch.Tensor) -> torch.Tensor:
    """The scale tensor ``sf`` with the same shape and values, in the MN-major TMA-aligned layout.

    Contract:
        sf: a ``torch.Tensor`` ``[MN, KB]`` or ``[G, MN, KB]``, any floating-point dtype (the kernels
            read FP32 and check for it themselves; the layout is the same for every float dtype, all of
            whose sizes divide 16 bytes), any strides, CPU or CUDA.
        returns: a tensor equal to ``sf`` with strides ``(1, aligned_mn)`` (2-D) or
            ``(aligned_mn * KB, 1, aligned_mn)`` (3-D), ``aligned_mn = get_tma_aligned_size(MN,
            element_size)``, and a 16-byte-aligned data pointer. The ``aligned_mn - MN`` padding
            rows of each column are left uninitialised: the kernels' tensor maps stop at ``MN``.
        raises: ``TypeError`` when ``sf`` is not a torch tensor (a NumPy array included: wrap it with
            ``torch.from_numpy``) or not floating point (integer, bool, complex); ``ValueError`` when it
            is not 2-D or 3-D.

    ``sf`` itself is returned when it already has this layout, so a caller may convert once and
    pass the result on every call for free (each tensor attribute is read once: ~1 us). Otherwise the
    cost is one strided copy into a buffer allocated with the final strides (a single transpose
    kernel on CUDA).
    """
    if not isinstance(sf, torch.Tensor) or not sf.is_floating_point():
        _reject_scale_tensor(sf)
    shape = sf.shape
    if len(shape) not in (2, 3):
        raise ValueError(f"get_mn_major_tma_aligned_tensor: sf must be 2-D [MN, KB] or 3-D [G, MN, KB], "
                         f"found shape {tuple(shape)}")
    element_size = sf.element_size()
    align_elems = TMA_ALIGNMENT_BYTES // element_size
    strides = _mn_major_strides(shape, _ceil_div(shape[-2], align_elems) * align_elems)
    if sf.stride() == strides and sf.data_ptr() % TMA_ALIGNMENT_BYTES == 0:
        return sf
    out = torch.empty_strided(shape, strides, dtype=sf.dtype, device=sf.device)
    return out.copy_(sf)


# The name used by DeepGEMM before its v2 API; kept so code written against it runs unchanged.
get_col_major_tma_aligned_tensor = get_mn_major_tma_aligned_tensor
