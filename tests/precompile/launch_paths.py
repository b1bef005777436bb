"""Every op of a ``KernelRequest`` through its family's real launch functions, on meta tensors (run under
the ``gpu_stub`` fixture): what the kernels a GPU process loads for the request are, independently of
the families' ``kernel_specs``."""

import torch

from deepgemm.ops.common.launch import KernelRequest
from deepgemm.quant.layout import align

FP8 = torch.float8_e4m3fn
F32, I32 = torch.float32, torch.int32
# Rows of a masked layout's groups: the config is chosen by expected_m (the request's m), not by these.
MASKED_ROWS_PER_M = 4


def meta(*shape, dtype=FP8):
    return torch.empty(*shape, dtype=dtype, device="meta")


def run_launch_path(request: KernelRequest) -> None:
    LAUNCH_PATHS[request.family](request)


def _fp8_1d2d(r: KernelRequest) -> None:
    from deepgemm.ops.fp8 import kernel as fp8

    kb, g, out = -(-r.k // 128), r.num_groups, r.out_dtype
    max_m = MASKED_ROWS_PER_M * r.m
    sfb = meta(g, -(-r.n // 128), kb, dtype=F32)
    if r.layout == "dense":
        fp8.launch_checked(meta(r.m, r.k), meta(r.m, kb, dtype=F32), meta(r.n, r.k), sfb[0],
                           meta(r.m, r.n, dtype=out), r.m, r.n, r.k, 0)
    elif r.layout == "contiguous":
        d = meta(r.m, r.n, dtype=out)
        args = (meta(r.m, r.k), meta(r.m, kb, dtype=F32), meta(g, r.n, r.k), sfb, d)
        fp8.launch_m_grouped_contiguous(*args, meta(r.m, dtype=I32), 0)
        fp8.launch_m_grouped_contiguous_offsets(*args, meta(g, dtype=I32), 0)
    else:
        fp8.launch_m_grouped_masked(meta(g, max_m, r.k), meta(g, max_m, kb, dtype=F32), meta(g, r.n, r.k),
                                    sfb, meta(g, max_m, r.n, dtype=out), meta(g, dtype=I32), r.m, 0)
    # The fused casts that quantise the operands (per-token A, per-block B) from BF16 or FP32, as
    # quant/cast.py's CUDA path runs them.
    from deepgemm.ops.cast import kernel as cast

    for source in (torch.bfloat16, torch.float32):
        cast.per_token_cast(meta(r.m, r.k, dtype=source))
        cast.per_block_cast(meta(r.n, r.k, dtype=source))


def _bf16(r: KernelRequest) -> None:
    from deepgemm.ops.bf16 import kernel as bf16

    g, out, x = r.num_groups, r.out_dtype, r.in_dtype
    max_m = MASKED_ROWS_PER_M * r.m
    if r.layout == "dense":
        a = meta(r.m, r.k, dtype=x) if r.major[0] == "n" else meta(r.k, r.m, dtype=x)
        b = meta(r.n, r.k, dtype=x) if r.major[1] == "t" else meta(r.k, r.n, dtype=x)
        c = meta(r.m, r.n, dtype=out) if r.has_c else None
        bf16.launch_bf16_gemm(r.major, a, b, meta(r.m, r.n, dtype=out), c, r.m, r.n, r.k, 0)
    elif r.layout == "contiguous":
        bf16.launch_m_grouped_bf16_contiguous(meta(r.m, r.k, dtype=x), meta(g, r.n, r.k, dtype=x),
                                              meta(r.m, r.n, dtype=out), meta(r.m, dtype=I32), 0)
    else:
        bf16.launch_m_grouped_bf16_masked(meta(g, max_m, r.k, dtype=x), meta(g, r.n, r.k, dtype=x),
                                          meta(g, max_m, r.n, dtype=out), meta(g, dtype=I32), r.m, 0)


def _fp8_1d1d(r: KernelRequest) -> None:
    from deepgemm.ops.cast import kernel as cast
    from deepgemm.ops.fp8_1d1d import kernel as fp8_1d1d

    kb = r.k // 128
    a, sa, b, sb = meta(r.m, r.k), meta(r.m, kb, dtype=F32), meta(r.n, r.k), meta(r.n, kb, dtype=F32)
    if r.layout == "k_grouped":
        d = meta(r.num_groups, r.m, r.n, dtype=F32)
        fp8_1d1d.launch_k_grouped_fp8_gemm_nt_1d1d(a, sa, b, sb, d, meta(r.num_groups, dtype=I32), None,
                                                   d if r.has_c else None, 0)
    else:
        d = meta(r.m, r.n, dtype=r.out_dtype)
        fp8_1d1d.launch_fp8_gemm_nt_1d1d(a, sa, b, sb, d, d if r.has_c else None, 0)
    for source in (torch.bfloat16, torch.float32):  # both operands quantised per token
        cast.per_token_cast(meta(r.m, r.k, dtype=source))


def _int8(r: KernelRequest) -> None:
    from deepgemm.ops.int8 import kernel as int8
    from deepgemm.ops.int8.gemm import Checked, Vector

    g, out = r.num_groups, r.out_dtype
    rows = MASKED_ROWS_PER_M * r.m if r.layout == "masked" else r.m
    a = meta(g, rows, r.k, dtype=torch.int8) if r.layout == "masked" else meta(rows, r.k, dtype=torch.int8)
    b = meta(r.n, r.k, dtype=torch.int8) if r.layout == "dense" else meta(g, r.n, r.k, dtype=torch.int8)

    def vector(dtype=F32):
        return Vector(meta(g, r.n, dtype=dtype), r.n, 1)

    scales = vector() if out != torch.int32 else None
    bias = None if r.bias_dtype is None else vector(r.bias_dtype)
    azp = vector(I32) if r.has_azp else None
    checked = Checked(a, b, scales, scales, bias, azp, azp, 0)
    d = meta(*a.shape[:-1], r.n, dtype=out)
    if r.layout == "dense":
        int8.launch_int8_gemm_nt(checked, d)
    elif r.layout == "contiguous":
        int8.launch_m_grouped_int8_contiguous(checked, d, meta(rows, dtype=I32))
        int8.launch_m_grouped_int8_contiguous_offsets(checked, d, meta(g, dtype=I32))
    else:
        int8.launch_m_grouped_int8_masked(checked, d, meta(g, dtype=I32), r.m)


def _tf32(r: KernelRequest) -> None:
    from deepgemm.ops.tf32 import kernel as tf32

    a_mk = meta(r.m, r.k, dtype=F32) if r.major[0] == "n" else meta(r.k, r.m, dtype=F32).T
    b_nk = meta(r.n, r.k, dtype=F32) if r.major[1] == "t" else meta(r.k, r.n, dtype=F32).T
    c = meta(r.m, r.n, dtype=F32) if r.has_c else None
    tf32.launch_tf32_gemm(a_mk, b_nk, meta(r.m, r.n, dtype=F32), c, 3 if r.family == "tf32x3" else 1, 0)


def _weight_only(r: KernelRequest) -> None:
    from deepgemm.ops.wonly import kernel as wonly
    from deepgemm.quant.wonly import num_k_groups, packed_shape

    bits, x, out = wonly.FAMILY_BITS[r.family], r.in_dtype, r.out_dtype
    packed_dtype = torch.int8 if bits == 8 else torch.uint8
    lead = (r.num_groups,) if r.layout == "masked" else ()
    packed = meta(*lead, *packed_shape(r.n, r.k, bits), dtype=packed_dtype)
    groups = num_k_groups(r.k, r.group_size)
    sb = meta(*lead, groups, r.n, dtype=x)
    zeros = meta(*lead, groups, r.n, dtype=torch.uint8) if r.has_zeros else None
    if r.layout == "masked":
        max_m = MASKED_ROWS_PER_M * r.m
        wonly.launch_m_grouped_wonly_masked(bits, meta(r.num_groups, max_m, r.k, dtype=x), packed, sb, zeros,
                                            meta(r.num_groups, max_m, r.n, dtype=out),
                                            meta(r.num_groups, dtype=I32), r.m, r.group_size, 0)
    else:
        wonly.launch_wonly_gemm(bits, meta(r.m, r.k, dtype=x), packed, sb, zeros, meta(r.m, r.n, dtype=out),
                                r.group_size, 0)


def _cast(r: KernelRequest) -> None:
    from deepgemm.ops.cast import kernel as cast

    x = meta(r.m, r.k, dtype=r.in_dtype)
    cast.per_token_cast(x)
    cast.per_block_cast(x)
    cast.per_block_cast_and_transpose(x)
    cast.per_token_cast_transposed(x, align(r.m, 128))


def _fp8_linear(r: KernelRequest) -> None:
    """A training step of ``fp8_linear`` as ``deepgemm/nn/linear.py`` runs it on the GPU: x [tokens, K],
    weight [N, K], dY [tokens, N]."""
    from deepgemm.ops.cast import kernel as cast
    from deepgemm.ops.fp8 import kernel as fp8
    from deepgemm.ops.fp8_1d1d import kernel as fp8_1d1d

    tokens, n, k, dtype = r.m, r.n, r.k, r.in_dtype
    out = dtype if dtype in (torch.bfloat16, F32) else F32
    x2, weight, dy2 = meta(tokens, k, dtype=dtype), meta(n, k, dtype=dtype), meta(tokens, n, dtype=dtype)
    # Forward: y = x W^T.
    (w, sw), (wt, swt) = cast.per_block_cast_and_transpose(weight)
    xq, sx = cast.per_token_cast(x2, True)
    fp8.launch_checked(xq, sx, w, sw, meta(tokens, n, dtype=out), tokens, n, k, 0)
    # dX = dY W.
    dyq, sdy = cast.per_token_cast(dy2, True)
    fp8.launch_checked(dyq, sdy, wt, swt, meta(tokens, k, dtype=out), tokens, k, n, 0)
    # dW (+)= dY^T X over the tokens, padded to 128.
    padded = align(tokens, 128)
    dyt, sdyt = cast.per_token_cast_transposed(dy2, padded, True)
    xt, sxt = cast.per_token_cast_transposed(x2, padded, True)
    dw = meta(n, k, dtype=F32 if r.has_c else out)
    fp8_1d1d.launch_fp8_gemm_nt_1d1d(dyt, sdyt, xt, sxt, dw, dw if r.has_c else None, 0)


def _fp8_grouped_linear(r: KernelRequest) -> None:
    """A training step of ``fp8_grouped_linear`` as ``deepgemm/nn/grouped.py`` runs it on the GPU: x
    [M_sum, K], G experts' weight [G, N, K], dY [M_sum, N]."""
    from deepgemm.ops.cast import kernel as cast
    from deepgemm.ops.fp8 import kernel as fp8
    from deepgemm.ops.fp8_1d1d import kernel as fp8_1d1d

    rows, n, k, g, dtype = r.m, r.n, r.k, r.num_groups, r.in_dtype
    out = dtype if dtype in (torch.bfloat16, F32) else F32
    x, weight, dy = meta(rows, k, dtype=dtype), meta(g, n, k, dtype=dtype), meta(rows, n, dtype=dtype)
    m_indices = meta(rows, dtype=I32)
    (w, sw), (wt, swt) = cast.per_block_cast_and_transpose(weight)
    y, dx = meta(rows, n, dtype=out), meta(rows, k, dtype=out)
    fp8.launch_m_grouped_contiguous(*cast.per_token_cast(x, True), w, sw, y, m_indices, 0)
    fp8.launch_m_grouped_contiguous(*cast.per_token_cast(dy, True), wt, swt, dx, m_indices, 0)
    dw = meta(g, n, k, dtype=F32)
    fp8_1d1d.launch_k_grouped_fp8_gemm_nt_1d1d(*cast.per_token_cast_transposed(dy, rows, True),
                                               *cast.per_token_cast_transposed(x, rows, True), dw,
                                               meta(g, dtype=I32), None, dw if r.has_c else None, 0)


LAUNCH_PATHS = {"fp8_1d2d": _fp8_1d2d, "bf16": _bf16, "fp8_1d1d": _fp8_1d1d, "int8": _int8, "tf32": _tf32,
                "tf32x3": _tf32, "w8a16": _weight_only, "w4a16": _weight_only, "cast": _cast,
                "fp8_linear": _fp8_linear, "fp8_grouped_linear": _fp8_grouped_linear}
