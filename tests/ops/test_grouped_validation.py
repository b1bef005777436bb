"""Every argument rule of the grouped FP8 GEMMs: each error names the argument and the rule."""

import pytest
import torch

from deepgemm.ops import (
    m_grouped_fp8_gemm_nt_contiguous,
    m_grouped_fp8_gemm_nt_contiguous_offsets,
    m_grouped_fp8_gemm_nt_masked,
)

FP8 = torch.float8_e4m3fn
G, M_SUM, MAX_M, N, K = 3, 256, 16, 16, 256


def fp8(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, dtype=FP8)


def ones(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.ones(*shape, dtype=dtype)


def int32(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32)


def weights(g: int = G, n: int = N, k: int = K):
    return fp8(g, n, k), ones(g, (n + 127) // 128, (k + 127) // 128)


def contiguous_args(m_sum: int = M_SUM, n: int = N, k: int = K) -> dict:
    return {
        "a": (fp8(m_sum, k), ones(m_sum, (k + 127) // 128)),
        "b": weights(G, n, k),
        "d": torch.full((m_sum, n), 3.0, dtype=torch.bfloat16),
        "m_indices": torch.cat([torch.zeros(128, dtype=torch.int32), torch.full((m_sum - 128,), 2).int()]),
    }


def offsets_args(**sizes: int) -> dict:
    args = contiguous_args(**sizes)
    del args["m_indices"]
    return {**args, "group_ends": int32(128, 128, args["d"].shape[0])}


def masked_args(max_m: int = MAX_M, n: int = N, k: int = K) -> dict:
    return {
        "a": (fp8(G, max_m, k), ones(G, max_m, (k + 127) // 128)),
        "b": weights(G, n, k),
        "d": torch.full((G, max_m, n), 3.0, dtype=torch.bfloat16),
        "masked_m": int32(0, max_m, 1),
        "expected_m": 8,
    }


OPS = {
    "contiguous": (m_grouped_fp8_gemm_nt_contiguous, contiguous_args),
    "offsets": (m_grouped_fp8_gemm_nt_contiguous_offsets, offsets_args),
    "masked": (m_grouped_fp8_gemm_nt_masked, masked_args),
}


def call(op_name: str, sizes: dict | None = None, **overrides) -> None:
    op, make_args = OPS[op_name]
    op(**{**make_args(**(sizes or {})), **overrides})


@pytest.mark.parametrize("op_name", OPS)
def test_valid_calls_pass(op_name: str) -> None:
    call(op_name)


@pytest.mark.parametrize("op_name", OPS)
@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"a": fp8(M_SUM, K)}, r"a must be a \(A, sfa\) pair"),
        ({"b": [fp8(G, N, K)]}, r"b must be a \(B, sfb\) pair"),
        ({"b": (fp8(G, N, K).tolist(), ones(G, 1, 2))}, r"B \(b\[0\]\) must be a torch.Tensor"),
        ({"d": [[0.0]]}, r"d must be a torch.Tensor, got list"),
        ({"b": (ones(G, N, K, dtype=torch.bfloat16), ones(G, 1, 2))}, r"B \(b\[0\]\).*float8_e4m3fn"),
        ({"b": (fp8(G, N, K), ones(G, 1, 2, dtype=torch.float64))}, r"sfb \(b\[1\]\).*float32"),
        ({"d": ones(M_SUM, N, dtype=torch.float16)}, r"d must have dtype torch.bfloat16 or torch.float32"),
    ],
)
def test_type_errors_shared(op_name: str, overrides: dict, pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        call(op_name, **overrides)


@pytest.mark.parametrize(
    "op_name, overrides, pattern",
    [
        ("contiguous", {"a": (ones(M_SUM, K, dtype=torch.bfloat16), ones(M_SUM, 2))},
         r"A \(a\[0\]\).*float8_e4m3fn"),
        ("contiguous", {"a": (fp8(M_SUM, K), ones(M_SUM, 2, dtype=torch.bfloat16))},
         r"sfa \(a\[1\]\).*float32"),
        ("masked", {"a": (fp8(G, MAX_M, K).view(torch.uint8), ones(G, MAX_M, 2))}, r"A \(a\[0\]\).*float8"),
        ("contiguous", {"m_indices": list(range(M_SUM))}, r"m_indices must be a torch.Tensor, got list"),
        ("contiguous", {"m_indices": torch.zeros(M_SUM, dtype=torch.int64)},
         r"m_indices must have dtype torch.int32, got torch.int64"),
        ("offsets", {"group_ends": torch.zeros(G, dtype=torch.int64)},
         r"group_ends must have dtype torch.int32"),
        ("masked", {"masked_m": torch.zeros(G)}, r"masked_m must have dtype torch.int32, got torch.float32"),
        ("masked", {"expected_m": 8.0}, r"expected_m must be an int, got float"),
        ("masked", {"expected_m": True}, r"expected_m must be an int, got bool"),
        ("masked", {"expected_m": torch.tensor(8)}, r"expected_m must be an int, got Tensor"),
    ],
)
def test_type_errors(op_name: str, overrides: dict, pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        call(op_name, **overrides)


@pytest.mark.parametrize(
    "op_name, overrides, pattern",
    [
        ("contiguous", {"a": (fp8(1, M_SUM, K), ones(M_SUM, 2))}, r"A \(a\[0\]\) must be 2-D \[M_sum, K\]"),
        ("offsets", {"a": (fp8(M_SUM, K), ones(M_SUM, 3))},
         r"sfa \(a\[1\]\) must have shape \[M_sum, ceil\(K/128\)\] = \(256, 2\), found \(256, 3\)"),
        ("contiguous", {"b": (fp8(N, K), ones(1, 2))}, r"B \(b\[0\]\) must be 3-D \[G, N, K\]"),
        ("masked", {"b": (fp8(G, N, K), ones(G, N, 2))},
         r"sfb \(b\[1\]\) must have shape \[G, ceil\(N/128\), ceil\(K/128\)\] = \(3, 1, 2\), "
         r"found \(3, 16, 2\)"),
        ("contiguous", {"b": weights(k=128)},
         r"B \(b\[0\]\) must have shape \[G, N, K\] = \(3, 16, 256\), found \(3, 16, 128\)"),
        ("contiguous", {"d": ones(M_SUM, N + 8, dtype=torch.bfloat16)},
         r"d must have shape \[M_sum, N\] = \(256, 16\), found \(256, 24\)"),
        ("contiguous", {"m_indices": torch.zeros(1, M_SUM, dtype=torch.int32)},
         r"m_indices must be 1-D \[M_sum\], found shape \(1, 256\)"),
        ("contiguous", {"m_indices": torch.zeros(M_SUM - 1, dtype=torch.int32)},
         r"m_indices must have shape \[M_sum\] = \(256,\), found \(255,\)"),
        ("offsets", {"group_ends": int32(128, 256)},
         r"group_ends must have shape \[G\] = \(3,\), found \(2,\)"),
        ("masked", {"a": (fp8(MAX_M, K), ones(MAX_M, 2))}, r"A \(a\[0\]\) must be 3-D \[G, max_m, K\]"),
        ("masked", {"a": (fp8(G, MAX_M, K), ones(G, MAX_M + 1, 2))},
         r"sfa \(a\[1\]\) must have shape \[G, max_m, ceil\(K/128\)\] = \(3, 16, 2\)"),
        ("masked", {"b": weights(g=G + 1)},
         r"B \(b\[0\]\) must have shape \[G, N, K\] = \(3, 16, 256\), found \(4, 16, 256\)"),
        ("masked", {"d": ones(G, MAX_M + 1, N, dtype=torch.bfloat16)},
         r"d must have shape \[G, max_m, N\] = \(3, 16, 16\), found \(3, 17, 16\)"),
        ("masked", {"masked_m": int32(1, 2)}, r"masked_m must have shape \[G\] = \(3,\), found \(2,\)"),
        ("masked", {"expected_m": 0}, r"expected_m must be > 0, got 0"),
        ("masked", {"expected_m": -4}, r"expected_m must be > 0, got -4"),
    ],
)
def test_shape_and_value_errors(op_name: str, overrides: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call(op_name, **overrides)


@pytest.mark.parametrize("op_name", OPS)
def test_size_rules(op_name: str) -> None:
    with pytest.raises(ValueError, match=r"K must be a multiple of 16 .*got 200"):
        call(op_name, sizes={"k": 200})
    with pytest.raises(ValueError, match=r"N must be a multiple of 8 .*bfloat16.*got 12"):
        call(op_name, sizes={"n": 12})
    op, make_args = OPS[op_name]
    args = make_args(n=12)
    op(**{**args, "d": torch.empty(args["d"].shape, dtype=torch.float32)})  # 48-byte rows: fine for FP32
    args = make_args(n=6)
    with pytest.raises(ValueError, match=r"N must be a multiple of 4 .*float32.*got 6"):
        op(**{**args, "d": torch.empty(args["d"].shape, dtype=torch.float32)})


@pytest.mark.parametrize("op_name, index_name", [("contiguous", "m_indices"), ("offsets", "group_ends"),
                                                 ("masked", "masked_m")])
def test_index_tensor_layout_and_device(op_name: str, index_name: str) -> None:
    index = OPS[op_name][1]()[index_name]
    strided = torch.zeros(2 * len(index), dtype=torch.int32)[::2]
    strided.copy_(index)
    with pytest.raises(ValueError, match=rf"{index_name} must be contiguous \(the kernels read it as a flat"):
        call(op_name, **{index_name: strided})
    with pytest.raises(ValueError, match=rf"all tensors must be on one device, found .*{index_name} on meta"):
        call(op_name, **{index_name: index.to("meta")})


@pytest.mark.parametrize("op_name", OPS)
def test_mixed_and_unsupported_devices(op_name: str) -> None:
    args = OPS[op_name][1]()
    with pytest.raises(ValueError, match=r"one device, found .*B \(b\[0\]\) on meta.*d on cpu"):
        call(op_name, b=(args["b"][0].to("meta"), args["b"][1]))
    def to_meta(value):
        if isinstance(value, tuple):
            return tuple(x.to("meta") for x in value)
        return value.to("meta") if isinstance(value, torch.Tensor) else value

    meta = {name: to_meta(value) for name, value in args.items()}
    with pytest.raises(ValueError, match="CPU or CUDA device, found meta"):
        OPS[op_name][0](**meta)


def test_stride_errors_contiguous() -> None:
    sfb = weights()[1]
    with pytest.raises(ValueError, match=r"A \(a\[0\]\) must have contiguous rows"):
        call("contiguous", a=(fp8(K, M_SUM).T, ones(M_SUM, 2)))
    with pytest.raises(ValueError, match=r"A \(a\[0\]\) must start at a 16-byte-aligned address"):
        call("offsets", a=(fp8(M_SUM, K + 16)[:, 8 : 8 + K], ones(M_SUM, 2)))
    with pytest.raises(ValueError, match=r"B \(b\[0\]\).stride\(1\) must be a multiple of 16 elements"):
        call("contiguous", b=(fp8(G, N, K + 8)[..., :K], sfb))
    with pytest.raises(ValueError, match=r"B \(b\[0\]\).stride\(0\) must be >= 4096 so that slices do not"):
        call("contiguous", b=(fp8((G + N) * K).as_strided((G, N, K), (K, K, 1)), sfb))
    with pytest.raises(ValueError, match=r"d.stride\(0\) must be a multiple of 8 elements"):
        call("contiguous", d=torch.zeros(M_SUM, N + 4, dtype=torch.bfloat16)[:, :N])
    with pytest.raises(ValueError, match=r"d must have contiguous rows"):
        call("offsets", d=torch.zeros(N, M_SUM, dtype=torch.bfloat16).T)


def test_stride_errors_masked() -> None:
    with pytest.raises(ValueError, match=r"A \(a\[0\]\).stride\(0\) must be a multiple of 16 elements"):
        padded_groups = fp8(G * (MAX_M * K + 8)).as_strided((G, MAX_M, K), (MAX_M * K + 8, K, 1))
        call("masked", a=(padded_groups, ones(G, MAX_M, 2)))
    with pytest.raises(ValueError, match=r"d.stride\(1\) must be a multiple of 8 elements"):
        call("masked", d=torch.zeros(G, MAX_M, N + 4, dtype=torch.bfloat16)[..., :N])
    with pytest.raises(ValueError, match=r"d must have contiguous rows"):
        call("masked", d=torch.zeros(G, N, MAX_M, dtype=torch.bfloat16).transpose(1, 2))


@pytest.mark.parametrize("op_name", OPS)
def test_b_experts_must_be_back_to_back(op_name: str) -> None:
    # Padded rows are fine; a gap between experts is not (the kernel reads B as one [G * N, K] matrix).
    op, make_args = OPS[op_name]
    args = make_args()
    sfb = args["b"][1]
    gapped = fp8(G * (N + 1) * K).as_strided((G, N, K), ((N + 1) * K, K, 1))
    with pytest.raises(ValueError, match=r"B \(b\[0\]\) must hold its groups back to back, stride\(0\) =="):
        op(**{**args, "b": (gapped, sfb)})
    padded_rows = fp8(G, N, K + 16)[..., :K]
    op(**{**args, "b": (padded_rows, sfb)})


@pytest.mark.parametrize("op_name", OPS)
def test_sfb_must_be_row_major(op_name: str) -> None:
    B, sfb = weights(n=256)
    op, make_args = OPS[op_name]
    args = make_args(n=256)
    with pytest.raises(ValueError, match=r"sfb \(b\[1\]\) must be contiguous row-major \[G, ceil\(N/128\), "):
        op(**{**args, "b": (B, sfb.transpose(1, 2).contiguous().transpose(1, 2))})


@pytest.mark.parametrize("op_name", OPS)
def test_errors_leave_d_untouched(op_name: str) -> None:
    op, make_args = OPS[op_name]
    args = make_args(k=200)
    with pytest.raises(ValueError):
        op(**args)
    assert args["d"].eq(3.0).all()
