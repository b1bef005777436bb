"""The weight-only family's GPU launch path without a GPU (the kernel, the TMA encoding and the split-K
workspace stubbed out, on CPU tensors): the config comes from the family's record through `select_config`,
the launch core launches with the config's grid, block and shared memory (no cluster), every tensor map
passes TMA's encoding rules with the boxes the kernel loads, the kernel gets its arguments in signature
order (the shape's M, then the number of groups: 1 when dense), and plans and tensor maps are memoised."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from deepgemm.cuda.tma import check_tma_args
from deepgemm.heuristics import W4A16, W8A16, GemmShape, select_config
from deepgemm.heuristics.families.wonly import select_wonly_config
from deepgemm.quant import wonly

NUM_SMS = 132


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch):
    """The family's kernel module on a fake H100; each launch shape, launch and workspace request recorded."""
    from deepgemm.ops.common import launch, settings
    from deepgemm.ops.wonly import kernel

    record = SimpleNamespace(maps=[], launches=[], launchers=[], specs=[], workspace=[])

    def tma(ptr, dtype, dims, strides, box, swizzle=0):
        check_tma_args(ptr, dtype, dims, strides, box, swizzle, True, 256)
        record.maps.append(SimpleNamespace(dtype=dtype, dims=dims, strides=strides, box=box, swizzle=swizzle))
        return record.maps[-1]

    def get_kernel(name, header, template_args, comment):
        record.specs.append((name, header, template_args, comment))

        class Kernel:
            def launcher(self, param_types, **launch_shape):
                record.launchers.append((param_types, launch_shape))
                return lambda *args: record.launches.append(args)

        return Kernel()

    class Workspace:
        def get(self, device_index, floats, tiles):
            record.workspace.append((device_index, floats, tiles))
            return 1 << 20, 2 << 20

    props = SimpleNamespace(major=9, minor=0, name="H100", multi_processor_count=NUM_SMS)
    monkeypatch.setattr(settings, "_device_properties", lambda index: props)
    monkeypatch.setattr(settings, "_num_sms", None)
    monkeypatch.setattr(launch, "get_kernel", get_kernel)
    monkeypatch.setattr(kernel, "make_tma_descriptor", tma)
    monkeypatch.setattr(kernel, "_workspace", Workspace())
    monkeypatch.setattr(kernel, "_plans", launch.PlanCache(max_plans=16))
    launch.kernel_launcher.cache_clear()
    yield SimpleNamespace(kernel=kernel, record=record)
    launch.kernel_launcher.cache_clear()


def test_the_records_select_through_select_config():
    for bits, family in ((8, W8A16), (4, W4A16)):
        for m in (1, 16, 64, 65, 4096):
            assert select_config(GemmShape(m, 4096, 7168, family=family), NUM_SMS) == \
                select_wonly_config(m, 4096, 7168, bits, NUM_SMS)
            masked = GemmShape(m, 4096, 7168, num_groups=8, layout="masked", family=family)
            expected = select_wonly_config(m, 4096, 7168, bits, NUM_SMS, 8, True)
            assert select_config(masked, NUM_SMS) == expected
    with pytest.raises(ValueError, match="dense and masked"):
        select_config(GemmShape(256, 4096, 7168, num_groups=8, layout="contiguous", family=W4A16), NUM_SMS)


@pytest.mark.parametrize("bits, m, n, k, group_size", [
    (4, 1, 4096, 7168, 128),  # decode tiles: K split
    (8, 16, 256, 512, None),
    (4, 300, 512, 1024, 128),  # prefill tiles
])
def test_dense_launch(stubbed, bits, m, n, k, group_size):
    kernel, record = stubbed.kernel, stubbed.record
    quantize = wonly.quantize_w4a16 if bits == 4 else wonly.quantize_w8a16
    packed, sb, *zeros = quantize(torch.randn(n, k), group_size=group_size, dtype=torch.bfloat16)
    A = torch.randn(m, k, dtype=torch.bfloat16)
    d = torch.empty(m, n, dtype=torch.bfloat16)
    for _ in range(2):
        kernel.launch_wonly_gemm(bits, A, packed, sb, None, d, group_size, 0)
    cfg = select_wonly_config(m, n, k, bits, NUM_SMS)
    assert (cfg.num_splits > 1) == (m <= 64)
    # One plan and one set of maps for both calls; the launcher takes the config's launch shape.
    assert len(record.specs) == 1 and len(record.launchers) == 1 and len(record.maps) == 2
    assert len(record.launches) == 2
    param_types, launch_shape = record.launchers[0]
    assert param_types == kernel.PARAM_TYPES
    assert launch_shape == {"grid": cfg.grid, "block": cfg.num_threads, "smem": cfg.smem_bytes, "cluster": 1,
                            "device": 0}
    spec = kernel.kernel_spec(n, k, cfg, group_size, False, False, torch.bfloat16)
    assert record.specs[0][2:] == (spec.template_args, spec.comment)
    tmap_a, tmap_b = record.maps
    assert tmap_a.box == (64, cfg.block_m) and tmap_a.swizzle == 128
    assert tmap_b.box[2] == cfg.block_n // 16 and tmap_b.swizzle == 0
    num_tiles = -(-m // cfg.block_m) * -(-n // cfg.block_n)
    workspace, counters = (1 << 20, 2 << 20) if cfg.num_splits > 1 else (0, 0)
    if cfg.num_splits > 1:
        assert record.workspace[0] == (0, cfg.workspace_floats(num_tiles), num_tiles)
    assert record.launches[0] == (m, 1, 0, sb.data_ptr(), 0, d.data_ptr(), n * 2, 0, workspace, counters,
                                  tmap_a, tmap_b)


def test_masked_launch(stubbed):
    kernel, record = stubbed.kernel, stubbed.record
    groups, max_m, n, k, expected_m = 3, 64, 256, 512, 24
    weights = [wonly.quantize_w4a16(torch.randn(n, k), group_size=128) for _ in range(groups)]
    packed, sb = (torch.stack([w[i] for w in weights]) for i in (0, 1))
    A = torch.randn(groups, max_m, k, dtype=torch.bfloat16)
    d = torch.empty(groups, max_m, n, dtype=torch.bfloat16)
    masked_m = torch.tensor([24, 0, 64], dtype=torch.int32)
    kernel.launch_m_grouped_wonly_masked(4, A, packed, sb, None, d, masked_m, expected_m, 128, 0)
    shape = GemmShape(expected_m, n, k, num_groups=groups, layout="masked", family=W4A16)
    cfg = select_config(shape, NUM_SMS)
    assert record.launchers[0][1]["grid"] == cfg.grid and cfg.num_splits == 1 and not record.workspace
    tmap_a, _ = record.maps
    assert tmap_a.dims == (k, max_m, groups) and tmap_a.box == (64, cfg.block_m, 1)
    assert record.launches[0][:8] == (max_m, groups, masked_m.data_ptr(), sb.data_ptr(), 0, d.data_ptr(),
                                      n * 2, max_m * n * 2)
