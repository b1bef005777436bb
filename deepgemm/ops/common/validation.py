"""Argument checks shared by the public ops.

Each check raises before any work is queued, with a message naming the argument and the rule:
``TypeError`` for a wrong type or dtype, ``ValueError`` for a wrong rank, shape, alignment, stride,
value or device. The rules are the same for CPU and CUDA tensors, so code that passes on a laptop also
passes on a GPU. Messages are only formatted on failure. These checks define the rules and word the
errors; an op may vouch for its common case with a cheaper test of the same rules first (see
``fp8.dense._fast_checked``) and fall back to them for anything else.
"""

import numbers
from collections.abc import Mapping, Sequence

import torch

from ...quant.cast import BLOCK_K, FP8_DTYPE
from ...quant.layout import TMA_ALIGNMENT_BYTES, ceil_div

SUPPORTED_DEVICE_TYPES = ("cpu", "cuda")


def check_tensor(name: str, value: object) -> torch.Tensor:
    """``value`` itself, after checking it is a ``torch.Tensor``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_dtype(name: str, tensor: torch.Tensor, allowed: Sequence[torch.dtype]) -> None:
    if tensor.dtype not in allowed:
        expected = " or ".join(str(dtype) for dtype in allowed)
        raise TypeError(f"{name} must have dtype {expected}, got {tensor.dtype}")


def check_rank(name: str, tensor: torch.Tensor, dims: Sequence[str]) -> None:
    """``dims`` names each expected dim, e.g. ``("M", "K")``, for the message."""
    if tensor.dim() != len(dims):
        raise ValueError(
            f"{name} must be {len(dims)}-D [{', '.join(dims)}], found shape {tuple(tensor.shape)}"
        )


def check_shape(name: str, tensor: torch.Tensor, dims: Sequence[str], expected: Sequence[int]) -> None:
    """``dims`` says where each expected size comes from, e.g. ``("M", "ceil(K/128)")``."""
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape [{', '.join(dims)}] = {tuple(expected)}, found {tuple(tensor.shape)}"
        )


def check_multiple(what: str, value: int, divisor: int, reason: str) -> None:
    if value % divisor:
        raise ValueError(f"{what} must be a multiple of {divisor} ({reason}), got {value}")


def check_fp8_operand(
    arg: str, operand: object, labels: tuple[str, str], dims: Sequence[str], scale_block_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack and check an FP8 ``(tensor, scale)`` operand; returns the two tensors.

    Contract checked:
        operand: a tuple or list ``(tensor, scale)``.
        tensor: ``float8_e4m3fn``, rank ``len(dims)``, e.g. ``[M, K]`` or ``[G, N, K]``.
        scale: ``float32 [*batch, ceil(rows / scale_block_rows), ceil(K / 128)]``: 1 scale row per
            tensor row for 1x128 scaling (``scale_block_rows=1``), per 128 rows for 128x128.
    Strides, and the scale layout, are left to ``check_tma_operand`` and the op.

    ``labels`` name the two tensors in messages, e.g. ``("A", "sfa")`` for argument ``a``.
    """
    if not isinstance(operand, tuple | list) or len(operand) != 2:
        raise TypeError(
            f"{arg} must be a ({labels[0]}, {labels[1]}) pair of tensors, got {type(operand).__name__}"
        )
    tensor_name, scale_name = f"{labels[0]} ({arg}[0])", f"{labels[1]} ({arg}[1])"
    tensor = check_tensor(tensor_name, operand[0])
    scale = check_tensor(scale_name, operand[1])
    check_dtype(tensor_name, tensor, (FP8_DTYPE,))
    check_dtype(scale_name, scale, (torch.float32,))
    check_rank(tensor_name, tensor, dims)
    *batch, rows, k = tensor.shape
    rows_dim = dims[-2] if scale_block_rows == 1 else f"ceil({dims[-2]}/{scale_block_rows})"
    check_shape(
        scale_name,
        scale,
        (*dims[:-2], rows_dim, f"ceil({dims[-1]}/{BLOCK_K})"),
        (*batch, ceil_div(rows, scale_block_rows), ceil_div(k, BLOCK_K)),
    )
    return tensor, scale


def check_same_device(tensors: Mapping[str, torch.Tensor]) -> torch.device:
    """The one device all ``tensors`` (name -> tensor) live on, which must be a CPU or a CUDA one."""
    devices = {tensor.device for tensor in tensors.values()}
    if len(devices) > 1:
        found = ", ".join(f"{name} on {tensor.device}" for name, tensor in tensors.items())
        raise ValueError(f"all tensors must be on one device, found {found}")
    (device,) = devices
    if device.type not in SUPPORTED_DEVICE_TYPES:
        raise ValueError(f"tensors must be on a CPU or CUDA device, found {device}")
    return device


def check_tma_operand(name: str, tensor: torch.Tensor) -> None:
    """Check the layout rules of a tensor the kernels read or write through TMA.

    Rules: rows contiguous (``stride(-1) == 1``); every other stride a multiple of 16 bytes
    (16 FP8, 8 BF16 or 4 FP32 elements), so row starts stay 16-byte aligned; slices along each dim
    do not overlap (a row stride may exceed the row length: views into larger buffers work); the
    data pointer 16-byte aligned. Empty tensors pass: nothing is read or written.
    """
    if tensor.numel() == 0:
        return
    shape, strides = tensor.shape, tensor.stride()
    if strides[-1] != 1:
        raise ValueError(f"{name} must have contiguous rows (stride(-1) == 1), found strides {strides}")
    elements_per_16_bytes = TMA_ALIGNMENT_BYTES // tensor.element_size()
    span = shape[-1]  # elements covered by one slice of the dims inside `dim`
    for dim in range(len(shape) - 2, -1, -1):
        stride = strides[dim]
        if stride % elements_per_16_bytes:
            raise ValueError(
                f"{name}.stride({dim}) must be a multiple of {elements_per_16_bytes} elements "
                f"(16 bytes, a TMA rule), found {stride}"
            )
        if shape[dim] > 1 and stride < span:
            raise ValueError(
                f"{name}.stride({dim}) must be >= {span} so that slices do not overlap, found {stride}"
            )
        span += (shape[dim] - 1) * stride
    misalignment = tensor.data_ptr() % TMA_ALIGNMENT_BYTES
    if misalignment:
        raise ValueError(
            f"{name} must start at a 16-byte-aligned address (a TMA rule), found it {misalignment} bytes "
            "past one (a view that starts mid-row?)"
        )


def check_packed_groups(name: str, tensor: torch.Tensor, dims: Sequence[str]) -> None:
    """Check that the groups of a ``[G, rows, cols]`` tensor follow each other with no gap
    (``stride(0) == rows * stride(1)``), so the kernels can address it as one ``[G * rows, cols]``
    matrix. Rows may still be padded (``stride(1) >= cols``)."""
    groups, rows = tensor.shape[0], tensor.shape[1]
    if tensor.numel() and groups > 1 and tensor.stride(0) != rows * tensor.stride(1):
        raise ValueError(
            f"{name} must hold its groups back to back, stride(0) == {dims[1]} * stride(1) = "
            f"{rows * tensor.stride(1)}, found strides {tensor.stride()}; pass .contiguous() of it"
        )


def check_row_major(name: str, tensor: torch.Tensor, dims: Sequence[str]) -> None:
    """Check ``tensor`` is contiguous row-major (its last dim innermost)."""
    if not tensor.is_contiguous():
        raise ValueError(
            f"{name} must be contiguous row-major [{', '.join(dims)}], found strides {tensor.stride()}; "
            "pass .contiguous() of it"
        )


def check_index_vector(name: str, value: object, dim: str, length: int) -> torch.Tensor:
    """``value`` itself, after checking it is an index tensor the kernels read as a flat array.

    Contract checked: ``int32 [length]`` (``dim`` names the length in messages, e.g. ``"G"``), contiguous.
    Its values are not read here: on a GPU that would cost a host sync.
    """
    tensor = check_tensor(name, value)
    check_dtype(name, tensor, (torch.int32,))
    check_rank(name, tensor, (dim,))
    check_shape(name, tensor, (dim,), (length,))
    if not tensor.is_contiguous():
        raise ValueError(
            f"{name} must be contiguous (the kernels read it as a flat int32 array), found strides "
            f"{tensor.stride()}; pass .contiguous() of it"
        )
    return tensor


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an ``int``, after checking it is an integer (not a ``bool``) and ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return int(value)


def tma_rows_ok(strides: tuple[int, ...], rows: int, cols: int, elements_per_16_bytes: int) -> bool:
    """``check_tma_operand``'s stride rules for a non-empty 2-D tensor: contiguous rows, whose stride is a
    multiple of 16 bytes and, unless there is one row, at least a row (rows do not overlap)."""
    row_stride = strides[0]
    return strides[1] == 1 and row_stride % elements_per_16_bytes == 0 and (row_stride >= cols or rows == 1)
