"""The per-call host path of fp8_gemm_nt, without a GPU: the fast argument check against the full one,
and the launch path (plans, tensor-map memo) with the kernel and the TMA encoding stubbed out."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from deepgemm.heuristics import GemmShape, select_config
from deepgemm.ops.common import settings
from deepgemm.ops.fp8 import dense as fp8_gemm
from deepgemm.quant import get_mn_major_tma_aligned_tensor

FP8 = torch.float8_e4m3fn


def fp8(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, dtype=FP8)


def operands(m: int = 4, n: int = 16, k: int = 256, out: torch.dtype = torch.bfloat16):
    a = (fp8(m, k), torch.ones(m, (k + 127) // 128))
    b = (fp8(n, k), torch.ones((n + 127) // 128, (k + 127) // 128))
    return a, b, torch.empty(m, n, dtype=out)


def strided_views(m: int, n: int, k: int):
    """Valid operands that are views into larger buffers."""
    a = (fp8(m, k + 48)[:, 16 : 16 + k], torch.ones(m, (k + 127) // 128))
    b = (fp8(2 * n, k)[::2], torch.ones((n + 127) // 128, (k + 127) // 128))
    return a, b, torch.empty(m, n + 8, dtype=torch.bfloat16)[:, :n]


def variants():
    """Valid calls and calls breaking one rule each (as in test_validation), plus layout corner cases."""
    m, n, k = 4, 16, 256
    (A, sfa), (B, sfb), d = operands(m, n, k)
    yield operands()
    yield operands(1, 8, 16)
    yield operands(65, 256, 512, torch.float32)
    yield operands(3, 12, 144, torch.float32)  # N % 4 == 0 is enough for FP32 d
    yield operands(0, 16, 128)
    yield operands(4, 0, 128)
    yield operands(3, 8, 0)
    yield (A, get_mn_major_tma_aligned_tensor(sfa)), (B, sfb), d
    yield [A, sfa], [B, sfb], d
    yield strided_views(m, n, k)
    yield (fp8(1, k + 16)[:, :k], torch.ones(1, 2)), (B, sfb), torch.empty(1, n, dtype=torch.bfloat16)
    yield (fp8(2 * m, k)[::2], sfa), (B, sfb), torch.zeros(m, n + 8, dtype=torch.bfloat16)[:, :n]
    # One broken rule each.
    yield A, (B, sfb), d
    yield (A, sfa), [B], d
    yield (A, sfa, sfa), (B, sfb), d
    yield (A.tolist(), sfa), (B, sfb), d
    yield (A, sfa), (B, sfb), d.tolist()
    yield (A.bfloat16(), sfa), (B, sfb), d
    yield (A, sfa.double()), (B, sfb), d
    yield (A, sfa), (B.view(torch.int8), sfb), d
    yield (A, sfa), (B, sfb.bfloat16()), d
    yield (A, sfa), (B, sfb), d.half()
    yield (A.unsqueeze(0), sfa), (B, sfb), d
    yield (A, sfa), (B.flatten(), sfb), d
    yield (A, torch.ones(m, 3)), (B, sfb), d
    yield (A, sfa), (B, torch.ones(n, 2)), d
    yield (A, sfa), (fp8(n, 128), torch.ones(1, 1)), d
    yield (A, sfa), (B, sfb), torch.empty(m, n + 8, dtype=torch.bfloat16)
    yield (A, sfa), (B, sfb), torch.empty(n, m, dtype=torch.bfloat16)
    yield operands(k=200)
    yield operands(n=12)
    yield operands(n=6, out=torch.float32)
    yield (A.to("meta"), sfa), (B, sfb), d
    yield (A, sfa.to("meta")), (B, sfb), d
    yield (A, sfa), (B, sfb), d.to("meta")
    yield (A.to("meta"), sfa.to("meta")), (B.to("meta"), sfb.to("meta")), d.to("meta")
    yield (fp8(k, m).T, sfa), (B, sfb), d
    yield (A, sfa), (fp8(n, k + 8)[:, :k], sfb), d
    yield (fp8(m * k).as_strided((m, k), (16, 1)), sfa), (B, sfb), d
    yield (fp8(m, k + 16)[:, 8 : 8 + k], sfa), (B, sfb), d
    yield (A, sfa), (B, sfb), torch.zeros(m, n + 4, dtype=torch.bfloat16)[:, :n]
    yield (A, sfa), (B, sfb), torch.zeros(n, m, dtype=torch.bfloat16).T
    yield (A, sfa), (B, sfb), torch.zeros(m, 2 * n, dtype=torch.bfloat16)[:, 1::2]
    (_, _), (B256, sfb256), d256 = operands(n=256)
    yield (A, sfa), (B256, sfb256.T.contiguous().T), d256
    yield (A, sfa), (torch.nn.Parameter(B, requires_grad=False), sfb), d  # a tensor subclass
    yield (A, sfa), (B, sfb), torch.zeros(m, n, dtype=torch.bfloat16, requires_grad=True)


@pytest.mark.parametrize("args", list(variants()), ids=itertools.count())
def test_fast_check_agrees_with_the_full_check(args) -> None:
    fast = fp8_gemm._fast_checked(*args)
    try:
        full = fp8_gemm._checked(*args)
    except (TypeError, ValueError):
        assert fast is None, "the fast check accepted arguments that break a rule"
        return
    if fast is not None:
        assert len(fast) == len(full)
        assert all(x is y for x, y in zip(fast[:4], full[:4], strict=True))
        assert fast[4:] == full[4:]


@pytest.mark.parametrize("m, n, k, out", [(4, 16, 256, torch.bfloat16), (1, 8, 16, torch.float32),
                                         (65, 2112, 7168, torch.bfloat16)])
def test_common_calls_take_the_fast_path(m: int, n: int, k: int, out: torch.dtype) -> None:
    a, b, d = operands(m, n, k, out)
    assert fp8_gemm._fast_checked(a, b, d) == (*a, *b, m, n, k, None)
    assert fp8_gemm._fast_checked((a[0], get_mn_major_tma_aligned_tensor(a[1])), b, d) is not None
    assert fp8_gemm._fast_checked(*strided_views(m, n, k)) is not None


def test_require_hopper_remembers_passes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "_hopper_devices", set())
    props = SimpleNamespace(major=8, minor=0, name="A100", multi_processor_count=108)
    monkeypatch.setattr(settings, "_device_properties", lambda index: props)
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"cuda:3 is A100 \(sm_80"):
            settings.require_hopper(3)
    props.major = 9
    settings.require_hopper(3)
    props.major = 8  # not asked again: a device's capability does not change
    settings.require_hopper(3)


# --- launch path, with the kernel and the driver stubbed out --------------------------------------------


@pytest.fixture
def gpu_stub(monkeypatch: pytest.MonkeyPatch):
    """The FP8 kernel module with a fake H100 (132 SMs), recording kernel launches and tensor-map
    requests."""
    from deepgemm.ops.common import launch
    from deepgemm.ops.common.launch import PlanCache
    from deepgemm.ops.fp8 import kernel as fp8_launch

    record = SimpleNamespace(tmaps=[], launches=[], launchers=[])

    def make_tma_descriptor(ptr, dtype, dims, strides, box, swizzle=0):
        record.tmaps.append((ptr, dtype, dims, strides, box, swizzle))
        return ("tmap", ptr)

    class Kernel:
        def launcher(self, param_types, **launch_shape):
            record.launchers.append(launch_shape)
            return lambda *args: record.launches.append(args)

    props = SimpleNamespace(major=9, minor=0, name="H100", multi_processor_count=132)
    monkeypatch.setattr(settings, "_device_properties", lambda index: props)
    monkeypatch.setattr(settings, "_num_sms", None)
    monkeypatch.setattr(launch, "get_kernel", lambda *args, **kwargs: Kernel())
    monkeypatch.setattr(fp8_launch, "make_tma_descriptor", make_tma_descriptor)
    monkeypatch.setattr(fp8_launch, "_dense_plans", PlanCache(max_plans=4096))
    launch.kernel_launcher.cache_clear()
    yield fp8_launch, record
    launch.kernel_launcher.cache_clear()


def test_launch_arguments(gpu_stub) -> None:
    fp8_launch, record = gpu_stub
    m, n, k = 65, 2112, 7168
    A, B = fp8(m, k + 128)[:, :k], fp8(n, k)
    sfa, sfb = torch.ones(m, 56), torch.ones(17, 56)
    d = torch.empty(m, n + 32, dtype=torch.bfloat16)[:, :n]
    fp8_launch.launch_checked(A, sfa, B, sfb, d, m, n, k, 0)

    cfg = select_config(GemmShape(m, n, k), 132)
    assert record.launchers == [dict(grid=132, block=cfg.num_threads, smem=cfg.smem_bytes(k),
                                     cluster=cfg.num_tma_multicast, device=0)]
    (tmap_a, tmap_b, tmap_sfa, tmap_d) = record.tmaps
    assert tmap_a == (A.data_ptr(), FP8, (k, m), (k + 128,), (128, cfg.block_m), 128)
    assert tmap_b == (B.data_ptr(), FP8, (k, n), (k,), (128, cfg.block_n), 128)
    # sfa was row-major: converted to MN-major with M padded to 68 (16 bytes of FP32).
    assert tmap_sfa[1:] == (torch.float32, (m, 56), (68 * 4,), (cfg.block_m, 1), 0)
    assert tmap_sfa[0] not in (sfa.data_ptr(), 0)
    slab = cfg.swizzle_d_bytes // 2 if cfg.swizzle_d_bytes else cfg.block_n
    assert tmap_d == (d.data_ptr(), torch.bfloat16, (n, m), ((n + 32) * 2,), (slab, cfg.block_m),
                      cfg.swizzle_d_bytes)
    # (shape_m, one group, no index tensor, sfb, d, no row-exact stores: d's strides unused, tensor maps)
    plain = (m, 1, 0, sfb.data_ptr(), d.data_ptr(), 0, 0)
    assert record.launches == [(*plain, *[("tmap", t[0]) for t in record.tmaps])]


def test_plans_and_tensor_maps_are_memoised(gpu_stub) -> None:
    fp8_launch, record = gpu_stub
    m, n, k = 64, 2112, 7168
    A, B, d = fp8(m, k), fp8(n, k), torch.empty(m, n, dtype=torch.bfloat16)
    sfa, sfb = get_mn_major_tma_aligned_tensor(torch.ones(m, 56)), torch.ones(17, 56)
    for _ in range(3):
        fp8_launch.launch_checked(A, sfa, B, sfb, d, m, n, k, 0)
    assert len(record.launchers) == 1 and len(record.tmaps) == 4 and len(record.launches) == 3
    assert record.launches[0] == record.launches[2]

    A2 = fp8(m, k)  # a new activation address: new maps, same plan
    fp8_launch.launch_checked(A2, sfa, B, sfb, d, m, n, k, 0)
    assert len(record.launchers) == 1 and len(record.tmaps) == 8
    assert record.launches[-1][7] == ("tmap", A2.data_ptr())  # tmap_a, after the 7 plain parameters

    settings._num_sms = 66  # as set_num_sms(66) (restored by the fixture): a new plan, with a 66-CTA grid
    fp8_launch.launch_checked(A2, sfa, B, sfb, d, m, n, k, 0)
    assert record.launchers[-1]["grid"] == 66 and len(fp8_launch._dense_plans) == 2


def test_config_override_uses_it(gpu_stub) -> None:
    fp8_launch, record = gpu_stub
    m, n, k = 128, 256, 512
    A, B, d = fp8(m, k), fp8(n, k), torch.empty(m, n, dtype=torch.float32)
    sfa, sfb = get_mn_major_tma_aligned_tensor(torch.ones(m, 4)), torch.ones(2, 4)
    cfg = select_config(GemmShape(m, n, k, out_bytes=4), 8)
    fp8_launch.launch_fp8_gemm_nt(A, sfa, B, sfb, d, config=cfg)
    assert record.launchers[0]["grid"] == 8 and not fp8_launch._dense_plans
    assert record.tmaps[2] == (sfa.data_ptr(), torch.float32, (m, 4), (m * 4,), (cfg.block_m, 1), 0)
