"""The launch core's shared pieces as each family's grouped launch uses them, without a GPU: the map D is
stored through and the D strides the kernel takes (the kernel and the TMA encoding stubbed out)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

G, ROWS, N, K = 4, 128, 1024, 512


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch):
    """Both families' kernel modules on a fake H100 (132 SMs), recording launches and D's tensor maps."""
    from deepgemm.ops.bf16 import kernel as bf16_kernel
    from deepgemm.ops.common import launch, settings
    from deepgemm.ops.fp8 import kernel as fp8_kernel

    record = SimpleNamespace(d_maps=[], launches=[])

    class Kernel:
        def launcher(self, param_types, **launch_shape):
            return lambda *args: record.launches.append(args)

    def d_map(ptr, dtype, dims, strides, box, swizzle=0):
        record.d_maps.append((dims, strides, box))
        return ("d map", ptr)

    props = SimpleNamespace(major=9, minor=0, name="H100", multi_processor_count=132)
    monkeypatch.setattr(settings, "_device_properties", lambda index: props)
    monkeypatch.setattr(settings, "_num_sms", None)
    monkeypatch.setattr(launch, "get_kernel", lambda *args, **kwargs: Kernel())
    monkeypatch.setattr(launch, "make_tma_descriptor", d_map)
    for module in (fp8_kernel, bf16_kernel):
        monkeypatch.setattr(module, "make_tma_descriptor", lambda *args, **kwargs: ("operand map",))
    monkeypatch.setattr(fp8_kernel, "_grouped_plans", launch.PlanCache(max_plans=16))
    monkeypatch.setattr(bf16_kernel, "_plans", launch.PlanCache(max_plans=16))
    launch.kernel_launcher.cache_clear()
    yield SimpleNamespace(fp8=fp8_kernel, bf16=bf16_kernel, record=record)
    launch.kernel_launcher.cache_clear()


def _inputs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.zeros(G * ROWS, K, dtype=dtype), torch.zeros(G, N, K, dtype=dtype),
            torch.zeros(G * ROWS, N, dtype=torch.bfloat16))


@pytest.mark.parametrize("family", ["fp8", "bf16"])
def test_masked_d_is_stored_per_group_and_contiguous_d_as_rows(stubbed, family):
    a, b, d = _inputs(torch.float8_e4m3fn if family == "fp8" else torch.bfloat16)
    masked_m, m_indices = torch.zeros(G, dtype=torch.int32), torch.zeros(G * ROWS, dtype=torch.int32)
    if family == "fp8":
        sfa, sfb = torch.ones(G * ROWS, K // 128), torch.ones(G, N // 128, K // 128)
        stubbed.fp8.launch_m_grouped_masked(a.view(G, ROWS, K), sfa.view(G, ROWS, -1), b, sfb,
                                            d.view(G, ROWS, N), masked_m, 64, 0)
        stubbed.fp8.launch_m_grouped_contiguous(a, sfa, b, sfb, d, m_indices, 0)
        stride_args = slice(5, 7)  # (..., d, d_row_bytes, d_group_bytes, tmaps...)
    else:
        stubbed.bf16.launch_m_grouped_bf16_masked(a.view(G, ROWS, K), b, d.view(G, ROWS, N), masked_m, 64, 0)
        stubbed.bf16.launch_m_grouped_bf16_contiguous(a, b, d, m_indices, 0)
        stride_args = slice(6, 8)  # (..., c_row_bytes, d, d_row_bytes, d_group_bytes, tmaps...)
    (masked_dims, masked_strides, masked_box), (dims, strides, box) = stubbed.record.d_maps
    assert masked_dims == (N, ROWS, G) and masked_strides == (N * 2, ROWS * N * 2)
    assert dims == (N, G * ROWS) and strides == (N * 2,)
    assert masked_box[1:] == (64, 1) and box[1] == 64
    masked_launch, contiguous_launch = stubbed.record.launches
    assert masked_launch[stride_args] == (N * 2, ROWS * N * 2)
    assert contiguous_launch[stride_args] == (N * 2, 0)


@pytest.mark.parametrize("k, copied", [(384, True), (1152, True), (512, False), (2048, False)])
def test_fp8_masked_kernel_gets_b_scales_with_16_byte_rows(stubbed, k, copied):
    # The masked kernel bulk-copies rows of B scales (3 or 9 k-blocks: padded to 4 or 12 floats, a copy);
    # the contiguous kernel reads sfb as it is.
    fp8 = torch.float8_e4m3fn
    a, b = torch.zeros(G * ROWS, k, dtype=fp8), torch.zeros(G, N, k, dtype=fp8)
    d = torch.zeros(G * ROWS, N, dtype=torch.bfloat16)
    sfa, sfb = torch.ones(G * ROWS, -(-k // 128)), torch.rand(G, N // 128, -(-k // 128))
    stubbed.fp8.launch_m_grouped_masked(a.view(G, ROWS, k), sfa.view(G, ROWS, -1), b, sfb, d.view(G, ROWS, N),
                                        torch.zeros(G, dtype=torch.int32), 64, 0)
    stubbed.fp8.launch_m_grouped_contiguous(a, sfa, b, sfb, d, torch.zeros(G * ROWS, dtype=torch.int32), 0)
    masked_launch, contiguous_launch = stubbed.record.launches
    sfb_arg = 3  # (shape_m, num_groups, grouped_layout, sfb, ...)
    assert contiguous_launch[sfb_arg] == sfb.data_ptr()
    assert (masked_launch[sfb_arg] != sfb.data_ptr()) == copied
    assert masked_launch[sfb_arg] % 16 == 0


def test_grouped_config_is_the_heuristics_or_a_grouped_tuning_config():
    from deepgemm.heuristics import BF16, FP8_1D2D, GemmShape, select_config
    from deepgemm.ops.common import launch

    grouped_config = launch.grouped_config
    masked = grouped_config(None, FP8_1D2D, launch.GEMM_KIND_MASKED, 64, N, K, G, 2, 132)
    assert masked == select_config(GemmShape(64, N, K, 2, G, "masked", family=FP8_1D2D), 132)
    contiguous = grouped_config(None, BF16, launch.GEMM_KIND_CONTIGUOUS_ENDS, G * ROWS, N, K, G, 4, 132)
    assert contiguous == select_config(GemmShape(G * ROWS, N, K, 4, G, "contiguous", family=BF16), 132)
    assert grouped_config(masked, BF16, launch.GEMM_KIND_CONTIGUOUS_INDICES, 1, 1, 1, 1, 2, 1) is masked
    dense = select_config(GemmShape(64, N, K, family=FP8_1D2D), 132)
    with pytest.raises(ValueError, match=r"config must be made for a grouped shape \(GemmConfig.grouped\)"):
        grouped_config(dense, FP8_1D2D, launch.GEMM_KIND_MASKED, 64, N, K, G, 2, 132)


def test_split_k_run_launches_the_kernel_into_the_workspace_then_the_reduction(monkeypatch):
    from deepgemm.ops.common import split_k

    calls = []

    class Kernel:
        def launcher(self, param_types, **launch_shape):
            return lambda *args: calls.append(("reduce", args))

    workspace = torch.zeros(4, 64, 256)
    monkeypatch.setattr(split_k, "get_kernel", lambda *args, **kwargs: Kernel())
    monkeypatch.setattr(split_k.SplitK, "workspace", lambda self: workspace)
    split_k.reduce_launcher.cache_clear()
    split = split_k.SplitK(4, 64, 256, torch.bfloat16, True, 132, 0)
    def gemm(*args):
        calls.append(("gemm", args))

    split.run(gemm, (64, 1, 0, "sfb"), ("tmap a", "tmap b"), 111, 512, 222, 1024)
    split_k.reduce_launcher.cache_clear()
    ws = workspace.data_ptr()
    assert calls == [("gemm", (64, 1, 0, "sfb", ws, 256 * 4, 64 * 256 * 4, "tmap a", "tmap b")),
                     ("reduce", (64, 256, ws, 111, 512, 222, 1024))]
