"""Argument checks shared by the public ops.

Each check raises before any work is queued, with a message naming the argument and the rule:
``TypeError`` for a wrong type or dtype, ``ValueError`` for a wrong rank, shape, alignment, stride,
value or device. The rules are the same for CPU and CUDA tensors, so code that passes on a laptop also
passes on a GPU. Messages are only formatted on failure. These checks define the rules and word the
errors; an op may vouch for its common case with a cheaper test of the same rules first (see
``fp8.dense._fast_checked``) and fall back to them for anything else.
"""

import numbers
import warnings
from collections.abc import Mapping, Sequence

import torch

from ...quant.cast import BLOCK_K, FP8_DTYPE
from ...quant.layout import TMA_ALIGNMENT_BYTES, ceil_div

SUPPORTED_DEVICE_TYPES = ("cpu", "cuda")
# The kernels take M (rows), N, K and the group count as 32-bit values and address A, B, C and D through
# TMA, whose coordinates are signed 32-bit: every size a kernel indexes stays below 2^31. Offsets into the
# tensors are formed by TMA or in 64-bit, so products such as M * K >= 2^31 are fine.
MAX_KERNEL_DIM = 2**31 - 1
# The persistent scheduler numbers the output tiles (at least 64 x 16) in 32 bits and adds the grid to them.
MAX_TILES = 2**31
# TMA's limit on a stride (one row, one group), in bytes.
MAX_TMA_STRIDE_BYTES = 2**40
# Estimated CPU-path work above which a call warns that it will take long (2 * M * N * K FLOPs plus a
# K-block loop step per 128 K of each row block): minutes on a desktop CPU.
SLOW_CPU_FLOPS = 2**40


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
        if stride * tensor.element_size() >= MAX_TMA_STRIDE_BYTES:
            raise ValueError(f"{name}.stride({dim}) must be below 2^40 bytes (a TMA rule), found {stride} "
                             "elements")
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
    multiple of 16 bytes, below 2^40 bytes (even for one row: TMA encodes it) and, unless there is one
    row, at least a row (rows do not overlap)."""
    row_stride = strides[0]
    # Below 2^40 bytes: elements of 16 / elements_per_16_bytes bytes, so below 2^36 * elements_per_16_bytes.
    return (strides[1] == 1 and row_stride % elements_per_16_bytes == 0 and (row_stride >= cols or rows == 1)
            and row_stride < (MAX_TMA_STRIDE_BYTES >> 4) * elements_per_16_bytes)


def tma_row_stride_bounds(rows: int, cols: int, elements_per_16_bytes: int) -> tuple[int, int]:
    """``(lowest, one past the highest)`` row stride ``tma_rows_ok`` accepts for ``rows x cols``, so that a
    path run on every call for sizes it has seen can test ``strides[1] == 1``, ``strides[0] %
    elements_per_16_bytes == 0`` and ``lowest <= strides[0] < highest`` instead: the same rules."""
    return (cols if rows > 1 else -(2**63)), (MAX_TMA_STRIDE_BYTES >> 4) * elements_per_16_bytes


def check_kernel_dims(dims: Mapping[str, int]) -> None:
    """Check each size (name -> value, e.g. ``{"M": m, "N": n, "K": k, "G * N": g * n}``) is at most
    ``MAX_KERNEL_DIM`` (2^31 - 1): the kernels index it with 32-bit math and signed 32-bit TMA coordinates.
    Checked on every device, before the device check, so that code passing on the CPU runs on a GPU."""
    for name, value in dims.items():
        if value > MAX_KERNEL_DIM:
            raise ValueError(f"{name} must be at most 2^31 - 1 = {MAX_KERNEL_DIM} (the kernels index it with "
                             f"32-bit TMA coordinates), got {value}; split the GEMM")


def check_tile_count(rows_name: str, rows: int, n: int) -> None:
    """Check the output, ``rows x n``, has fewer than ``MAX_TILES`` tiles of 64 x 16 (the scheduler counts
    tiles in 32 bits)."""
    tiles = -(-rows // 64) * -(-n // 16)
    if tiles >= MAX_TILES:
        raise ValueError(f"{rows_name} x N = {rows} x {n} is too large: {tiles} output tiles of 64 x 16, the "
                         f"kernels count them in 32 bits (at most {MAX_TILES - 1}); split the GEMM")


def check_dense_kernel_dims(m: int, n: int, k: int) -> None:
    """``check_kernel_dims`` and ``check_tile_count`` for a dense GEMM of A ``[M, K]`` and B ``[N, K]``."""
    check_kernel_dims({"M": m, "N": n, "K": k})
    check_tile_count("M", m, n)


def check_d_row_bytes(n: int, d: torch.Tensor) -> None:
    """N makes 16-byte rows of ``d`` (TMA stores D by rows)."""
    check_multiple("N", n, 16 // d.element_size(), f"TMA needs 16-byte rows of {d.dtype} in d")


def check_grouped_kernel_dims(A: torch.Tensor, B: torch.Tensor, scales_name: str | None = None,
                              num_scales: int = 0) -> None:
    """``check_kernel_dims`` and ``check_tile_count`` for a grouped GEMM of A ``[M_sum, K]`` or
    ``[G, max_m, K]`` and B ``[G, N, K]``: the contiguous kinds read B as one ``[G * N, K]`` matrix;
    the masked kind counts tiles over all groups. ``num_scales``: elements of B's scales
    (``scales_name``), which the FP8 kernel offsets with 32-bit math."""
    num_groups, n, k = B.shape
    rows = A.shape[0] * A.shape[1] if A.dim() == 3 else A.shape[0]
    dims = {"M_sum" if A.dim() == 2 else "max_m": A.shape[-2], "N": n, "K": k, "G": num_groups,
            "G * N": num_groups * n}
    check_kernel_dims(dims)
    check_tile_count("M_sum" if A.dim() == 2 else "G * max_m", rows, n)
    if scales_name is not None and num_scales >= 2**32:
        raise ValueError(f"{scales_name} must have fewer than 2^32 elements (the kernel offsets it with "
                         f"32-bit math), got {num_scales}; split the GEMM")


def _row_span(tensor: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(first byte, row stride, rows, row bytes)`` of a tensor whose elements lie in equally spaced rows
    of contiguous bytes (1-D contiguous, 2-D with ``stride(-1) == 1``, 3-D with its groups back to back),
    else ``None``. A single row's stride is 0 (any stride fits it)."""
    shape, strides, size = tensor.shape, tensor.stride(), tensor.element_size()
    if tensor.dim() == 0 or (shape[-1] > 1 and strides[-1] != 1):
        return None
    rows = 1
    row_stride = 0
    for dim in range(tensor.dim() - 2, -1, -1):
        if shape[dim] == 1:
            continue
        if rows > 1 and strides[dim] != rows * row_stride:
            return None
        row_stride = row_stride or strides[dim]
        rows *= shape[dim]
    return tensor.data_ptr(), row_stride * size, rows, shape[-1] * size


def _extent_bytes(tensor: torch.Tensor) -> int:
    """Bytes from a non-empty tensor's first element to the end of its last one."""
    last = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
    return (last + 1) * tensor.element_size()


def may_overlap(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether ``x`` and ``y`` may share a byte of memory: exact for tensors of rows with one row stride
    (column slices of one buffer do not overlap), else conservative (their byte ranges intersect)."""
    if x.numel() == 0 or y.numel() == 0:
        return False
    x_start, y_start = x.data_ptr(), y.data_ptr()
    x_end, y_end = x_start + _extent_bytes(x), y_start + _extent_bytes(y)
    if x_end <= y_start or y_end <= x_start:
        return False
    x_rows, y_rows = _row_span(x), _row_span(y)
    if x_rows is None or y_rows is None:
        return True
    stride = x_rows[1] or y_rows[1]
    if (y_rows[1] or stride) != stride or stride == 0 or max(x_rows[3], y_rows[3]) > stride:
        return True  # one contiguous run each (already known to intersect), or rows of different strides
    offset = (y_start - x_start) % stride  # where y's rows start within x's row period
    return offset < x_rows[3] or offset + y_rows[3] > stride


def check_no_overlap(out_name: str, out: torch.Tensor, inputs: Mapping[str, torch.Tensor | None]) -> None:
    """Check the output ``out`` shares no memory with any input (name -> tensor; ``None`` skipped): the
    kernels read inputs while other CTAs write the output, so an overlap would race."""
    for name, tensor in inputs.items():
        if tensor is not None and may_overlap(out, tensor):
            raise ValueError(f"{out_name} must not overlap {name} in memory (the kernel reads {name} while "
                             f"it writes {out_name}); pass a separate output tensor")


def warn_if_slow_cpu(op: str, m: int, n: int, k: int) -> None:
    """Warn once per call when the CPU path's work for an ``m x n x k`` GEMM (summed over groups) is large
    enough to take minutes or more, so a mistaken size does not look like a hang."""
    flops = 2 * m * n * k
    if flops >= SLOW_CPU_FLOPS:
        warnings.warn(f"{op}: the CPU path will do {flops / 1e12:.1f} TFLOP of FP32 work "
                      f"(M={m}, N={n}, K={k}), which takes minutes to hours on a CPU; run it on a GPU",
                      SlowCpuPathWarning, stacklevel=3)


class SlowCpuPathWarning(UserWarning):
    """A CPU-path call large enough to take minutes or more."""
