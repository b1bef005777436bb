"""The 1D1D family's GPU launch path without a GPU (the kernel and the TMA encoding stubbed out, on CPU
tensors): every tensor map passes TMA's encoding rules (`check_tma_args`) with the boxes the kernel
loads and stores, the kernel gets its arguments in signature order, the scales go MN-major, C is copied
into D before an accumulating launch unless C is D, and a D TMA cannot address goes through a padded
buffer and is copied back."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from deepgemm.cuda.tma import check_tma_args
from deepgemm.quant import per_token_cast_to_fp8

FP8 = torch.float8_e4m3fn


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch):
    """The family's kernel module on a fake H100 (132 SMs). Each launch is recorded, and stands in for the
    kernel on D (found by the address of its map): D = 1 + (D if accumulating else 0)."""
    from deepgemm.ops.common import launch, settings
    from deepgemm.ops.fp8_1d1d import kernel

    record = SimpleNamespace(maps=[], launches=[], specs=[], targets={})

    def tma(ptr, dtype, dims, strides, box, swizzle=0):
        check_tma_args(ptr, dtype, dims, strides, box, swizzle, True, 256)
        record.maps.append(SimpleNamespace(ptr=ptr, dtype=dtype, dims=dims, strides=strides, box=box,
                                           swizzle=swizzle))
        return record.maps[-1]

    def get_kernel(name, header, template_args, comment):
        record.specs.append(template_args)
        accumulate = template_args[10]

        class Kernel:
            def launcher(self, param_types, **launch_shape):
                def run(*args):
                    record.launches.append(args)
                    d_ptr = args[-1].ptr
                    target = record.targets[d_ptr]
                    if accumulate:
                        target.add_(1.0)
                    else:
                        target.fill_(1.0)

                return run

        return Kernel()

    original_padded = kernel._padded_like

    def padded_like(d):
        out = original_padded(d)
        record.targets[out.data_ptr()] = out
        return out

    props = SimpleNamespace(major=9, minor=0, name="H100", multi_processor_count=132)
    monkeypatch.setattr(settings, "_device_properties", lambda index: props)
    monkeypatch.setattr(settings, "_num_sms", None)
    monkeypatch.setattr(launch, "get_kernel", get_kernel)
    monkeypatch.setattr(launch, "make_tma_descriptor", tma)
    monkeypatch.setattr(kernel, "make_tma_descriptor", tma)
    monkeypatch.setattr(kernel, "_padded_like", padded_like)
    monkeypatch.setattr(kernel, "_dense_plans", launch.PlanCache(max_plans=16))
    monkeypatch.setattr(kernel, "_k_grouped_plans", launch.PlanCache(max_plans=16))
    launch.kernel_launcher.cache_clear()
    yield SimpleNamespace(kernel=kernel, record=record)
    launch.kernel_launcher.cache_clear()


def operand(rows: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return per_token_cast_to_fp8(torch.randn(rows, k))


@pytest.mark.parametrize("n, out_dtype", [(1024, torch.float32), (7, torch.float32), (1000, torch.bfloat16),
                                          (7, torch.bfloat16)])
@pytest.mark.parametrize("c_kind", [None, "d", "separate"])
def test_dense_launch(stubbed, n, out_dtype, c_kind):
    if out_dtype == torch.bfloat16 and c_kind:
        return
    m, k = 300, 512
    (A, sa), (B, sb) = operand(m, k), operand(n, k)
    d = torch.full((m, n), 5.0, dtype=out_dtype)
    stubbed.record.targets[d.data_ptr()] = d
    c = {None: None, "d": d, "separate": torch.full((m, n), 3.0)}[c_kind]
    stubbed.kernel.launch_fp8_gemm_nt_1d1d(A, sa, B, sb, d, c, 0)
    expected = {None: 1.0, "d": 6.0, "separate": 4.0}[c_kind]
    assert d.eq(expected).all()

    (spec,) = stubbed.record.specs
    cfg = stubbed.kernel.dense_config(m, n, k, d.element_size(), 132)
    assert spec == stubbed.kernel.kernel_spec(n, k, cfg, c is not None, False).template_args
    (launch,) = stubbed.record.launches
    assert launch[:4] == (m, 1, 0, k // 128)
    map_a, map_b, map_sa, map_sb, map_d = launch[4:]
    assert (map_a.ptr, map_a.dims, map_a.strides, map_a.box, map_a.swizzle) == (
        A.data_ptr(), (k, m), (k,), (128, cfg.block_m), 128)
    assert (map_b.ptr, map_b.dims, map_b.box) == (B.data_ptr(), (k, n), (128, cfg.block_n))
    # Scales MN-major: one k-block's column of rows per box, rows padded to 16 bytes.
    sa_map, sb_map = (map_sa.dims, map_sa.strides, map_sa.box), (map_sb.dims, map_sb.strides, map_sb.box)
    assert sa_map == ((m, k // 128), ((m + 3) // 4 * 16,), (cfg.block_m, 1))
    assert sb_map == ((n, k // 128), ((n + 3) // 4 * 16,), (cfg.block_n, 1))
    per_16 = 16 // d.element_size()
    in_place = n % per_16 == 0
    assert (map_d.ptr == d.data_ptr()) == in_place
    assert map_d.dims == (n, m) and map_d.strides == ((n + per_16 - 1) // per_16 * 16,)
    assert map_d.box == (cfg.d_store_cols, 64) and map_d.swizzle == cfg.swizzle_d_bytes


@pytest.mark.parametrize("n", [768, 7])
@pytest.mark.parametrize("c_kind", [None, "d", "separate"])
def test_k_grouped_launch(stubbed, n, c_kind):
    m, ks = 129, [256, 0, 128]
    k_sum = sum(ks)
    (A, sa), (B, sb) = operand(m, k_sum), operand(n, k_sum)
    ks_tensor = torch.tensor(ks, dtype=torch.int32)
    d = torch.full((len(ks), m, n), 5.0)
    stubbed.record.targets[d.data_ptr()] = d
    c = {None: None, "d": d, "separate": torch.full((len(ks), m, n), 3.0)}[c_kind]
    stubbed.kernel.launch_k_grouped_fp8_gemm_nt_1d1d(A, sa, B, sb, d, ks_tensor, ks, c, 0)
    assert d.eq({None: 1.0, "d": 6.0, "separate": 4.0}[c_kind]).all()

    (spec,) = stubbed.record.specs
    cfg = stubbed.kernel.k_grouped_config(len(ks), m, n, k_sum, 132)
    assert spec == stubbed.kernel.kernel_spec(n, k_sum, cfg, c is not None, True).template_args
    assert spec[1] == 0 and spec[-1] is True  # K from the device; the k-grouped kind
    (launch,) = stubbed.record.launches
    assert launch[:4] == (m, len(ks), ks_tensor.data_ptr(), k_sum // 128)
    map_a, _, map_sa, map_sb, map_d = launch[4:]
    assert map_a.dims == (k_sum, m) and map_sa.dims == (m, k_sum // 128) and map_sb.dims == (n, k_sum // 128)
    # D per group: a 3-D map, so each group's rows end at M.
    row_bytes = (n + 3) // 4 * 16
    assert map_d.dims == (n, m, len(ks)) and map_d.strides == (row_bytes, row_bytes * m)
    assert map_d.box == (cfg.d_store_cols, 64, 1)
    assert (map_d.ptr == d.data_ptr()) == (n % 4 == 0)
