"""``deepgemm.matmul``: one call for torch tensors and NumPy arrays, on the CPU or a Hopper GPU.

It resolves the compute precision, output dtype and device, moves and converts the inputs, and runs
the 16-bit GEMMs (choosing the storage layout from the strides, so transposed views cost no copy),
quantises on the fly and runs the FP8 GEMM, or runs the TF32 family (plain TF32, or 3xTF32 for FP32
accuracy). Sizes a kernel cannot take are padded inside matmul's own copy or quantisation step.
"""

import numpy as np
import torch
import torch.nn.functional as F

from ..quant.cast import per_block_cast_to_fp8, per_token_cast_to_fp8
from ..quant.layout import TMA_ALIGNMENT_BYTES, align
from ..quant.wonly import PRECISIONS as _WEIGHT_ONLY_PRECISIONS
from ..quant.wonly import PackedWeight, pack_weight
from .bf16 import gemm as bf16_gemm
from .common.settings import REQUIRED_CAPABILITY
from .common.validation import check_no_overlap
from .fp8.dense import fp8_gemm_nt
from .int8.gemm import int8_gemm_padded, int8_matmul_quantized
from .matmul_grad import MatmulFunction
from .tf32 import gemm as tf32_gemm
from .wonly.gemm import weight_only_matmul

Array = torch.Tensor | np.ndarray

# Every accepted spelling of a compute precision (strings lower-cased; NumPy dtypes by name).
_PRECISIONS = {
    "fp32": "fp32", "float32": "fp32", torch.float32: "fp32",
    "tf32": "tf32",
    "fp16": "fp16", "float16": "fp16", torch.float16: "fp16",
    "bf16": "bf16", "bfloat16": "bf16", torch.bfloat16: "bf16",
    "fp8": "fp8", "float8_e4m3fn": "fp8", torch.float8_e4m3fn: "fp8",
    "int8": "int8", torch.int8: "int8",
}
_ACCEPTED_PRECISIONS = (
    "'float32' (or 'fp32'), 'tf32', 'float16' (or 'fp16'), 'bfloat16' (or 'bf16'), 'fp8', 'int8', "
    "torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.int8, NumPy float32, "
    "float16 or int8, or None (the inputs' own dtype)"
)
# The precision precision=None runs for each input dtype; float64 inputs get FP32 accuracy.
_OWN_PRECISIONS = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32",
                   torch.float64: "fp32", torch.int8: "int8"}

# The dtype the inputs are converted to before the GEMM (FP8 and INT8 quantise in their own step).
_COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32,
                   "fp32": torch.float32}
_OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_OUT_DTYPE_ALIASES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_NUMPY_OUT_DTYPES = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}
# What the FP8 kernel can write; an FP16 result goes through FP32 first.
_FP8_KERNEL_OUT_DTYPES = (torch.bfloat16, torch.float32)
# Sizes the 16-bit kernels cannot take are zero-padded up to 16 bytes of 16-bit elements (TMA rows).
_PAD_16BIT = 8
# FP8 K is zero-padded to 16 bytes of FP8 (TMA rows); TF32 N to 16 bytes of FP32 (D's rows).
_PAD_FP8_K = 16
_PAD_FP32 = 4


def padded_16bit_sizes(n: int, k: int) -> tuple[int, int]:
    """``(N, K)`` as the 16-bit GEMM of ``matmul`` runs them: each zero-padded to a multiple of 8."""
    return align(n, _PAD_16BIT), align(k, _PAD_16BIT)


def padded_fp8_sizes(n: int, k: int, kernel_dtype: torch.dtype) -> tuple[int, int]:
    """``(N, K)`` as the FP8 GEMM of ``matmul`` runs them, writing ``kernel_dtype``: N zero-padded to
    16-byte rows of D, K to 16-byte rows of FP8."""
    return align(n, TMA_ALIGNMENT_BYTES // kernel_dtype.itemsize), align(k, _PAD_FP8_K)


def matmul(
    a: Array,
    b: Array,
    *,
    dtype: str | torch.dtype | np.dtype | type | None = None,
    precision: str | torch.dtype | np.dtype | type | None = None,
    out_dtype: str | torch.dtype | np.dtype | type | None = None,
    device: str | torch.device | None = None,
    out: torch.Tensor | None = None,
) -> Array:
    """``a @ b`` on deepgemm's kernels, for torch tensors or NumPy arrays; returns the same kind.

    Example: ``c_np = deepgemm.matmul(a_np, b_np, dtype="float16", device="cuda")``.

    Shapes (``a``, ``b`` -> result):
        ``[M, K] @ [K, N] -> [M, N]``;
        ``[B, M, K] @ [B, K, N] -> [B, M, N]`` (one GEMM per batch entry, equal ``B``);
        ``[B, M, K] @ [K, N] -> [B, M, N]``: ``b`` is shared, computed as one ``[B*M, K]`` GEMM.
        ``[M, K] @ [B, K, N]`` and other ranks are refused. Any sizes in every precision; an empty
        ``K`` gives zeros. Any strides: transposed views (``x.T`` of a contiguous tensor) run a
        layout that reads them in place where the kernels can; sizes a kernel cannot take are
        zero-padded inside matmul's own copy or quantisation step (exact; the result is sliced back):
        16-bit ``K`` or ``N`` to a multiple of 8, FP8 ``K`` to a multiple of 16 and ``N`` to 16 bytes
        of output, TF32 ``N`` to a multiple of 4 (TF32 copies operands the tensor cores cannot read
        in place, K-major, with ``K`` padded there).
    Inputs: both ``torch.Tensor`` or both ``numpy.ndarray`` of a float dtype (int8 for ``"int8"``).
    dtype: the compute precision, the dtype the tensor cores multiply in (not the result's dtype,
        which is ``out_dtype``); the inputs (any float dtype) are converted to it:
        ``"float32"``/``"fp32"``/``torch.float32``/``np.float32``: FP32 accuracy on the TF32 tensor
            cores (3xTF32: each operand split into a TF32 high part and the low remainder, three
            TF32 products summed in FP32; about the error of an FP32 GEMM);
        ``"tf32"``: plain TF32 (the tensor cores read 10 mantissa bits of each FP32 operand, FP32
            accumulation), about 3x faster than ``"float32"``;
        ``"float16"``/``"fp16"``, ``"bfloat16"``/``"bf16"`` (and the torch / NumPy dtypes): 16-bit
            operands, FP32 accumulation;
        ``"fp8"``/``torch.float8_e4m3fn``: quantises on the fly, ``a`` per token (1x128 scales),
            ``b`` per 128x128 block, and runs ``fp8_gemm_nt``;
        ``"int8"``/``torch.int8``/``np.int8``: W8A8 INT8: two int8 inputs multiplied as they are (exact
            sums), float inputs quantised per token / per output channel (``int8_matmul_quantized``);
        ``"w8a16"``/``"w4a16"``: weight-only INT8 / INT4 weights times 16-bit activations: ``b`` is a
            ``PackedWeight`` of ``W [N, K]`` (``deepgemm.quant.wonly.pack_weight``, packed once; ``b``
            stands for ``Wᵀ``, and its precision is used when ``dtype`` is ``None``), or a float
            ``b [K, N]`` packed on every call; the activations run in the dtype of the weight's scales;
        ``None``: the inputs' own dtype, which must then be the same for both: bfloat16, float16,
            float32 (runs ``"float32"``), float64 (runs ``"float32"``: there is no FP64 path) or int8.
        Strings are case-insensitive. Anything else raises ``ValueError`` listing what is accepted.
    precision: the same as ``dtype`` (its earlier name; one meaning). Pass one of the two; both are
        accepted only when they name the same precision.
    out_dtype: ``torch.bfloat16``, ``torch.float16`` or ``torch.float32`` (also ``"bf16"``,
        ``"fp16"``, ``"fp32"``, ``np.float16``, ``np.float32``). Default: ``out.dtype`` when ``out``
        is given, else float16 for ``"fp16"``, float32 for ``"float32"`` and ``"tf32"``, and
        bfloat16 otherwise. FP8 writes bfloat16 or float32 and TF32 float32; other result dtypes
        are converted from float32.
        NumPy results: NumPy has no bfloat16, so a bfloat16 result comes back as float32 (holding
        bfloat16 values), and the default for ``"bf16"``/``"fp8"`` is float32 written by the GEMM
        directly; ``"fp16"`` defaults to float16.
    device: ``"cpu"``, ``"cuda"`` (or a ``torch.device``) or ``None``. Torch inputs are moved there
        (``None``: where they live, both on one device) and so is the result. NumPy inputs run on
        the GPU when ``None`` and a Hopper GPU is present, else on the CPU; the copies to and from
        the device are part of the call. CPU runs take the ops' CPU path: FP32 math for the 16-bit
        and FP8 precisions, FP64 math for ``"float32"``, and for ``"tf32"`` FP64 math on the inputs
        with their low 13 mantissa bits cleared, as the tensor cores read them.
    out: torch only; a tensor of the result's shape, dtype and device that receives the result and
        is returned (any strides; a layout the kernels cannot write costs a copy).
    Autograd (torch inputs, on the CPU and a GPU alike): where grad mode is on and ``a`` or ``b``
        requires grad, the result is differentiable; its backward runs deepgemm's GEMMs, the 16-bit
        ones in the same precision, and for ``"fp8"`` the FP8 GEMMs with the quantisation passed
        straight through (``ops/matmul_grad.py``). With ``out`` the result is copied into ``out``.

    Raises: ``TypeError`` for non-array or mixed torch/NumPy inputs, unsupported dtypes (complex,
    integers other than int8 for ``"int8"``), a wrong ``out_dtype`` or ``out`` type; ``ValueError`` for
    a wrong rank, mismatched shapes, an unknown ``dtype``/``precision`` or two that disagree, an unknown
    ``device``, an ``out`` of the wrong shape, dtype or device; ``RuntimeError`` for ``device="cuda"``
    without CUDA or on a GPU that is not Hopper.
    """
    named = dtype if dtype is not None else precision
    if isinstance(b, PackedWeight) or _weight_only_precision(named):
        return _weight_only(a, b, named, out_dtype, device, out)
    is_numpy = _check_kinds(a, b, out)
    a_t, b_t = _as_tensor("a", a), _as_tensor("b", b)
    shape = _result_shape(a_t, b_t)
    _check_not_complex("a", a_t)
    _check_not_complex("b", b_t)
    prec = _resolve_precision(dtype, precision, a_t.dtype, b_t.dtype)
    _check_input_dtype("a", a_t, prec)
    _check_input_dtype("b", b_t, prec)
    result_dtype = _resolve_out_dtype(out_dtype, out, prec, is_numpy)
    target = _resolve_device(device, is_numpy, a_t, b_t)
    k = a_t.shape[-1]
    if not is_numpy and torch.is_grad_enabled() and (a_t.requires_grad or b_t.requires_grad):
        if out is not None:
            _result_buffer(out, shape, result_dtype, target, {"a": a_t, "b": b_t})  # its checks
        a_t, b_t = a_t.to(target), b_t.to(target)
        if prec in _COMPUTE_DTYPES:
            a_t, b_t = a_t.to(_COMPUTE_DTYPES[prec]), b_t.to(_COMPUTE_DTYPES[prec])
        result = MatmulFunction.apply(a_t, b_t, prec,
                                      lambda a_, b_: _computed(a_, b_, shape, result_dtype, prec))
        return result if out is None else out.copy_(result)

    result = _result_buffer(out, shape, result_dtype, target, {"a": a_t, "b": b_t})
    if result.numel() and k:
        a_t, b_t = a_t.to(target), b_t.to(target)
        if prec in _COMPUTE_DTYPES:  # the FP8 casts take any float dtype; converting first would cost a pass
            a_t, b_t = a_t.to(_COMPUTE_DTYPES[prec]), b_t.to(_COMPUTE_DTYPES[prec])
        _run(a_t, b_t, result, prec)
    elif result.numel():
        result.zero_()  # K == 0: the empty sum

    return _returned(result, is_numpy)


def _returned(result: torch.Tensor, is_numpy: bool) -> Array:
    """``result``, or for NumPy inputs a NumPy copy (NumPy has no bfloat16: BF16 comes back as float32)."""
    if not is_numpy:
        return result
    host = result.cpu()
    return (host.float() if host.dtype == torch.bfloat16 else host).numpy()


# ---- argument checks and resolution -------------------------------------------------------------


def _check_kinds(a: object, b: object, out: object) -> bool:
    """Whether the inputs are NumPy arrays (else torch tensors); both must be the same kind."""
    for name, value in (("a", a), ("b", b)):
        if not isinstance(value, torch.Tensor | np.ndarray):
            raise TypeError(
                f"matmul: {name} must be a torch.Tensor or a numpy.ndarray, got {type(value).__name__}"
            )
    is_numpy = isinstance(a, np.ndarray)
    if is_numpy != isinstance(b, np.ndarray):
        raise TypeError(
            f"matmul: a and b must be the same kind (both torch.Tensor or both numpy.ndarray), got "
            f"{type(a).__name__} and {type(b).__name__}; convert one with torch.from_numpy or .numpy()"
        )
    if out is not None and is_numpy:
        raise TypeError("matmul: out= is only supported for torch inputs; with NumPy inputs a new array "
                        "is returned")
    if out is not None and not isinstance(out, torch.Tensor):
        raise TypeError(f"matmul: out must be a torch.Tensor or None, got {type(out).__name__}")
    return is_numpy


def _as_tensor(name: str, x: Array) -> torch.Tensor:
    """``x`` as a torch tensor; NumPy arrays are shared, not copied, where torch can view them."""
    if isinstance(x, torch.Tensor):
        return x
    # torch cannot view negative strides, and warns on read-only arrays (we never write to them).
    if any(stride < 0 for stride in x.strides) or not x.flags.writeable:
        x = np.array(x)
    try:
        return torch.from_numpy(x)
    except TypeError:
        raise TypeError(
            f"matmul: {name} has NumPy dtype {x.dtype}, which is not supported; pass float16, float32 "
            "or float64 arrays"
        ) from None


def _result_shape(a: torch.Tensor, b: torch.Tensor) -> tuple[int, ...]:
    rule = "supported: [M, K] @ [K, N], [B, M, K] @ [B, K, N] and [B, M, K] @ [K, N]"
    if a.dim() not in (2, 3):
        raise ValueError(f"matmul: a must be 2-D [M, K] or 3-D [B, M, K], found shape {tuple(a.shape)} "
                         f"({rule})")
    if b.dim() not in (2, 3):
        raise ValueError(f"matmul: b must be 2-D [K, N] or 3-D [B, K, N], found shape {tuple(b.shape)} "
                         f"({rule})")
    if a.dim() == 2 and b.dim() == 3:
        raise ValueError(f"matmul: a 2-D a with a 3-D b is not supported, found a {tuple(a.shape)} and "
                         f"b {tuple(b.shape)} ({rule})")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: a's K (last dim) must equal b's K (second-to-last dim), found a "
                         f"{tuple(a.shape)} and b {tuple(b.shape)}")
    if a.dim() == 3 and b.dim() == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"matmul: a and b must have the same batch size B (no broadcasting), found a "
                         f"{tuple(a.shape)} and b {tuple(b.shape)}")
    return (*a.shape[:-1], b.shape[-1])


def _check_not_complex(name: str, x: torch.Tensor) -> None:
    if x.is_complex():
        raise TypeError(f"matmul: {name} has dtype {x.dtype}; complex inputs are not supported")


def _check_input_dtype(name: str, x: torch.Tensor, prec: str) -> None:
    """Float inputs run in every precision; integer ones only int8 with ``"int8"``."""
    if x.is_floating_point() or (prec == "int8" and x.dtype == torch.int8):
        return
    raise TypeError(f"matmul: {name} has dtype {x.dtype}; integer and bool inputs are refused, but int8 "
                    "ones with dtype='int8' (cast them to a float dtype to run another precision)")


def _precision_key(value: object) -> object:
    """``value`` as a key of ``_PRECISIONS``: strings lower-cased, NumPy dtypes and scalar types by name."""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    return None


def _lookup_precision(arg: str, value: object) -> str:
    prec = _PRECISIONS.get(_precision_key(value))
    if prec is None:
        raise ValueError(f"matmul: {arg} must be {_ACCEPTED_PRECISIONS}, got {value!r}")
    return prec


def _resolve_precision(dtype: object, precision: object, a_dtype: torch.dtype, b_dtype: torch.dtype) -> str:
    """``"fp32"``, ``"tf32"``, ``"fp16"``, ``"bf16"``, ``"fp8"`` or ``"int8"``, from ``dtype=``
    or its alias ``precision=`` (which must agree when both are given), else the inputs' dtype."""
    named = {arg: _lookup_precision(arg, value)
             for arg, value in (("dtype", dtype), ("precision", precision)) if value is not None}
    if len(set(named.values())) > 1:
        raise ValueError(f"matmul: dtype={dtype!r} and precision={precision!r} disagree; they are one "
                         "argument (the compute precision) under two names: pass one")
    if named:
        return next(iter(named.values()))
    if a_dtype != b_dtype:
        raise TypeError(f"matmul: with dtype=None a and b must have the same dtype, found {a_dtype} "
                        f"and {b_dtype}; pass dtype= (e.g. 'float32', 'bfloat16' or 'fp8')")
    if a_dtype not in _OWN_PRECISIONS:
        raise TypeError(f"matmul: dtype=None runs the inputs' own dtype, which must be bfloat16, float16, "
                        f"float32, float64 or int8, found {a_dtype}; pass dtype= (e.g. 'bfloat16' or 'fp8')")
    return _OWN_PRECISIONS[a_dtype]


def _resolve_out_dtype(out_dtype: object, out: torch.Tensor | None, prec: str, is_numpy: bool) -> torch.dtype:
    if out_dtype is None:
        if out is not None:
            dtype = out.dtype
        elif prec == "fp16":
            dtype = torch.float16
        elif prec in ("fp32", "tf32"):
            dtype = torch.float32
        else:
            # NumPy has no bfloat16: let the GEMM write FP32 rather than round to BF16 and widen.
            dtype = torch.float32 if is_numpy else torch.bfloat16
    elif isinstance(out_dtype, torch.dtype):
        dtype = out_dtype
    elif isinstance(out_dtype, str) and out_dtype in _OUT_DTYPE_ALIASES:
        dtype = _OUT_DTYPE_ALIASES[out_dtype]
    else:
        try:
            dtype = _NUMPY_OUT_DTYPES.get(np.dtype(out_dtype))
        except TypeError:
            dtype = None
    if dtype not in _OUT_DTYPES:
        what = f"out.dtype {out.dtype}" if out_dtype is None else f"out_dtype {out_dtype!r}"
        raise TypeError(f"matmul: {what} is not supported; the result dtype must be torch.bfloat16, "
                        "torch.float16 or torch.float32 (NumPy: float16 or float32)")
    if out is not None and out.dtype != dtype:
        raise ValueError(f"matmul: out has dtype {out.dtype} but out_dtype is {dtype}")
    return dtype


def _resolve_device(device: object, is_numpy: bool, a: torch.Tensor, b: torch.Tensor) -> torch.device:
    if device is None:
        if is_numpy:
            hopper = torch.cuda.is_available() and torch.cuda.get_device_capability() == REQUIRED_CAPABILITY
            return torch.device("cuda" if hopper else "cpu")
        if a.device != b.device:
            raise ValueError(f"matmul: a and b must be on one device, found a on {a.device} and b on "
                             f"{b.device}; pass device= to move both")
        target = a.device
        if target.type not in ("cpu", "cuda"):
            raise ValueError(f"matmul: the inputs must be on a CPU or CUDA device, found {target}")
    else:
        try:
            target = torch.device(device)
        except (RuntimeError, TypeError):
            target = None
        if target is None or target.type not in ("cpu", "cuda"):
            raise ValueError(f"matmul: device must be 'cpu', 'cuda' (or a torch.device of those) or None, "
                             f"got {device!r}")
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("matmul: device='cuda' was asked for, but torch.cuda.is_available() is False; "
                               "pass device='cpu' (or None) to run the CPU path")
        if target.index is None:  # "cuda": the inputs' GPU if they are on one, else the current one
            target = a.device if a.is_cuda else torch.device("cuda", torch.cuda.current_device())
    return target


def _result_buffer(
    out: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
    inputs: dict[str, torch.Tensor],
) -> torch.Tensor:
    if out is None:
        return torch.empty(shape, dtype=dtype, device=device)
    if tuple(out.shape) != shape:
        raise ValueError(f"matmul: out must have the result's shape {shape}, found {tuple(out.shape)}")
    if out.device != device:
        raise ValueError(f"matmul: out must be on the device the GEMM runs on ({device}), found {out.device}")
    check_no_overlap("matmul: out", out, {name: x for name, x in inputs.items() if x.device == out.device})
    return out


# ---- running the GEMMs --------------------------------------------------------------------------


def _computed(a: torch.Tensor, b: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype,
              prec: str) -> torch.Tensor:
    """A new ``a @ b`` of ``shape`` and ``dtype`` from inputs already on the device, in the compute dtype."""
    result = torch.empty(shape, dtype=dtype, device=a.device)
    if result.numel() and a.shape[-1]:
        _run(a, b, result, prec)
    elif result.numel():
        result.zero_()
    return result


def _run(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, prec: str) -> None:
    """``d = a @ b`` for non-empty operands on one device, already in the compute dtype (but FP8's
    and INT8's, which quantise on their own)."""
    if a.dim() == 3 and b.dim() == 2:
        # b is shared: the batch's rows form one [B*M, K] activation, so one large GEMM runs.
        flat = d if d.is_contiguous() else torch.empty(d.shape, dtype=d.dtype, device=d.device)
        _run(a.reshape(-1, a.shape[-1]), b, flat.view(-1, d.shape[-1]), prec)
        if flat is not d:
            d.copy_(flat)
    elif prec == "fp8":
        _fp8_gemm(a, b, d)
    elif prec == "int8":
        _int8_gemm(a, b, d)
    elif a.dim() == 2:
        _GEMMS_2D[prec](a, b, d)
    else:
        for i in range(a.shape[0]):
            _GEMMS_2D[prec](a[i], b[i], d[i])


def _int8_gemm(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> None:
    """``d = a @ b`` in INT8 (W8A8). Two int8 operands are multiplied as they are (no scales: the integer
    sums are exact); otherwise both are quantised, ``a`` per token and ``b`` per output channel."""
    if a.dtype == b.dtype == torch.int8:
        d.copy_(int8_gemm_padded((a, None), (b.T, None), d.dtype))
    else:
        d.copy_(int8_matmul_quantized(a.float(), b.float(), d.dtype))


def _fits_kernel(x: torch.Tensor) -> bool:
    """Whether the kernels read or write ``x`` in place: rows contiguous, the row length and every
    other stride a multiple of 16 bytes, slices not overlapping, a 16-byte-aligned start (TMA rules)."""
    per_16_bytes = TMA_ALIGNMENT_BYTES // x.element_size()
    if x.stride(-1) != 1 or x.shape[-1] % per_16_bytes or x.data_ptr() % TMA_ALIGNMENT_BYTES:
        return False
    span = x.shape[-1]  # elements one slice of the inner dims covers
    for size, stride in zip(reversed(x.shape[:-1]), reversed(x.stride()[:-1]), strict=True):
        if stride % per_16_bytes or (size > 1 and stride < span):
            return False
        span += (size - 1) * stride
    return True


def _stored(x: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """The layout letter and stored tensor of the 2-D operand ``x``, if a kernel reads it in place:
    ``("n", x)`` when ``x`` is row-major, ``("t", x.T)`` when ``x`` is a transposed view."""
    if _fits_kernel(x):
        return "n", x
    if _fits_kernel(x.T):
        return "t", x.T
    return None


def _gemm_16bit(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> None:
    """``d = a @ b`` for 2-D BF16 or FP16 ``a [M, K]``, ``b [K, N]`` through ``bf16_gemm_{nn,nt,tn,tt}``."""
    k, n = b.shape
    a_op, b_op = _stored(a), _stored(b)
    # A fresh row-major copy suits the kernels when its row length is a multiple of 8 elements.
    if a_op is None and k % _PAD_16BIT == 0:
        a_op = "n", a.clone(memory_format=torch.contiguous_format)
    if b_op is None and n % _PAD_16BIT == 0:
        b_op = "n", b.clone(memory_format=torch.contiguous_format)
    if a_op is None or b_op is None or n % _PAD_16BIT:
        _gemm_16bit_padded(a, b, d)
        return
    kernel_d = d if _fits_kernel(d) else torch.empty(d.shape, dtype=d.dtype, device=d.device)
    _op_16bit(a_op[0] + b_op[0])(a_op[1], b_op[1], kernel_d)
    if kernel_d is not d:
        d.copy_(kernel_d)


def _gemm_16bit_padded(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> None:
    """``_gemm_16bit`` for sizes the kernels cannot take: K and N zero-padded to multiples of 8.

    Zero columns of A against zero rows of B add exact zeros, and the padded columns of D are dropped.
    A pad of nothing may keep an operand's strides (a transposed view stays column-major), so both are
    made row-major for the NN kernel.
    """
    (m, k), n = a.shape, b.shape[1]
    n_pad, k_pad = padded_16bit_sizes(n, k)
    # Only N needs padding where K is a multiple of 8: a row-major a is then read in place.
    a_pad = a if k_pad == k and _fits_kernel(a) else F.pad(a, (0, k_pad - k)).contiguous()
    b_pad = F.pad(b, (0, n_pad - n, 0, k_pad - k)).contiguous()
    d_pad = torch.empty(m, n_pad, dtype=d.dtype, device=d.device)
    _op_16bit("nn")(a_pad, b_pad, d_pad)
    d.copy_(d_pad[:, :n])


def _op_16bit(layout: str):
    """``deepgemm.bf16_gemm_<layout>``."""
    return getattr(bf16_gemm, f"bf16_gemm_{layout}")


def _fp8_gemm(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> None:
    """``d = a @ b`` for ``a [(B,) M, K]``, ``b [(B,) K, N]`` of any float dtype, quantised to FP8
    (1x128 scales on a, 128x128 on b) and run through ``fp8_gemm_nt``; K is zero-padded to a multiple
    of 16 (TMA rows) in the quantisation step."""
    k, n = b.shape[-2:]
    kernel_dtype = d.dtype if d.dtype in _FP8_KERNEL_OUT_DTYPES else torch.float32
    n_pad, k_pad = padded_fp8_sizes(n, k, kernel_dtype)
    # The kernel reads B as [N, K], K-major: b's transposed view goes straight into the cast, whose
    # output is contiguous, so no transposing copy is made. Zero rows for N padding and zero columns
    # for K padding leave every block's amax, hence the scales and the real values, unchanged.
    b_nk = b.transpose(-2, -1)
    if n_pad != n or k_pad != k:
        b_nk = F.pad(b_nk, (0, k_pad - k, 0, n_pad - n))
    if k_pad != k:
        a = F.pad(a, (0, k_pad - k))
    a_q, sfa = per_token_cast_to_fp8(a)
    b_q, sfb = per_block_cast_to_fp8(b_nk)

    writes_d = kernel_dtype == d.dtype and n_pad == n and _fits_kernel(d)
    kernel_d = d if writes_d else torch.empty((*d.shape[:-1], n_pad), dtype=kernel_dtype, device=d.device)
    if a.dim() == 2:
        fp8_gemm_nt((a_q, sfa), (b_q, sfb), kernel_d)
    else:
        for i in range(a.shape[0]):
            fp8_gemm_nt((a_q[i], sfa[i]), (b_q[i], sfb[i]), kernel_d[i])
    if not writes_d:
        d.copy_(kernel_d[..., :n])


def _tf32_gemm(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, num_terms: int) -> None:
    """``d = a @ b`` for 2-D FP32 ``a [M, K]``, ``b [K, N]`` through ``tf32_gemm_nt`` (one TF32
    product) or ``tf32x3_gemm_nt`` (3xTF32). Both ops take any operand strides (they copy what the
    tensor cores cannot read in place, K-major, or split it); N is zero-padded to a multiple of 4 for
    D's TMA rows, and D is written through a buffer where ``d`` is not an FP32 tensor TMA can write."""
    n = b.shape[1]
    n_pad = align(n, _PAD_FP32)
    b_nk = b.T if n_pad == n else F.pad(b.T, (0, 0, 0, n_pad - n))
    writes_d = d.dtype == torch.float32 and n_pad == n and _fits_kernel(d)
    kernel_d = d if writes_d else torch.empty(a.shape[0], n_pad, dtype=torch.float32, device=d.device)
    op = tf32_gemm.tf32x3_gemm_nt if num_terms == 3 else tf32_gemm.tf32_gemm_nt
    op(a, b_nk, kernel_d)
    if not writes_d:
        d.copy_(kernel_d[:, :n])


# The 2-D GEMM of each precision that converts its inputs before the call.
_GEMMS_2D = {
    "bf16": lambda a, b, d: _gemm_16bit(a, b, d),
    "fp16": lambda a, b, d: _gemm_16bit(a, b, d),
    "tf32": lambda a, b, d: _tf32_gemm(a, b, d, num_terms=1),
    "fp32": lambda a, b, d: _tf32_gemm(a, b, d, num_terms=3),
}


# ---- weight-only precisions (W8A16 / W4A16) ------------------------------------------------------


def _weight_only_precision(value: object) -> str | None:
    """``"w8a16"`` / ``"w4a16"`` when ``value`` names a weight-only precision, else ``None``."""
    return value.lower() if isinstance(value, str) and value.lower() in _WEIGHT_ONLY_PRECISIONS else None


def _weight_only(a: Array, b: object, prec: object, out_dtype: object, device: object,
                 out: torch.Tensor | None) -> Array:
    """``a @ b`` with ``b`` a weight quantised to INT8/INT4: a ``PackedWeight`` of ``W [N, K]`` (``b``
    stands for ``Wᵀ``, packed once by ``deepgemm.quant.wonly.pack_weight``), or a float ``b [K, N]`` packed
    here on every call. Activations run in the dtype the weight's scales are held in (BF16 or FP16)."""
    named = _weight_only_precision(prec)
    if prec is not None and named is None:
        raise ValueError(f"matmul: b is a PackedWeight, so dtype must be None or its precision "
                         f"'{b.precision}', got {prec!r}")
    if isinstance(b, PackedWeight):
        if named is not None and named != b.precision:
            raise ValueError(f"matmul: dtype={prec!r} but b is packed for '{b.precision}'")
        if b.b_packed.dim() != 2:
            raise ValueError("matmul: b must be one packed [N, K] weight (the masked ops take [G, N, K] "
                             "experts)")
        is_numpy = _check_kinds(a, a, out)
        a_t = _as_tensor("a", a)
        weight = b
    else:
        is_numpy = _check_kinds(a, b, out)
        a_t, b_t = _as_tensor("a", a), _as_tensor("b", b)
        if b_t.dim() != 2 or not b_t.is_floating_point():
            raise ValueError(f"matmul: dtype={prec!r} quantises a floating 2-D b [K, N], found "
                             f"{b_t.dtype} of shape {tuple(b_t.shape)}")
        weight = pack_weight(b_t.T.float(), named)
    if not a_t.is_floating_point() or a_t.dim() not in (2, 3) or a_t.shape[-1] != weight.k:
        raise ValueError(f"matmul: a must be a floating [M, K] or [B, M, K] with K = {weight.k} (b's K), "
                         f"found {a_t.dtype} of shape {tuple(a_t.shape)}")
    compute = weight.sb.dtype
    result_dtype = _resolve_out_dtype(out_dtype, out, "fp16" if compute == torch.float16 else "bf16",
                                      is_numpy)
    if device is None and not is_numpy and a_t.device != weight.b_packed.device:
        raise ValueError(f"matmul: a and b must be on one device, found a on {a_t.device} and b on "
                         f"{weight.b_packed.device}; pass device= to move both")
    target = _resolve_device(device, is_numpy, a_t, a_t)
    if weight.b_packed.device != target:
        weight = weight.to(target)
    a_c = a_t.to(target, compute).contiguous()
    if out is None:
        result = weight_only_matmul(a_c, weight, out_dtype=result_dtype)
    else:
        _result_buffer(out, (*a_t.shape[:-1], weight.n), result_dtype, target, {"a": a_t})
        result = out.copy_(weight_only_matmul(a_c, weight, out_dtype=result_dtype))
    return _returned(result, is_numpy)
