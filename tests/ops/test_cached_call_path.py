"""The cached call path of fp8_gemm_nt and bf16_gemm_<layout> (checks and launch in one pass for sizes
seen before), without a GPU: it accepts exactly what the full checks accept for the remembered sizes
(and nothing of other sizes, devices, dtypes or SM settings), and it launches with the same arguments
as the full path. The kernel, the driver and the TMA encoding are stubbed out; CPU tensors stand in for
CUDA ones (the remembered device is theirs)."""

from __future__ import annotations

import itertools

import pytest
import torch

from deepgemm.ops.bf16 import gemm as bf16_gemm
from deepgemm.ops.common import settings
from deepgemm.ops.fp8 import dense as fp8_dense
from deepgemm.quant import get_mn_major_tma_aligned_tensor

from .test_fp8_host_path import gpu_stub, operands, variants  # noqa: F401 (gpu_stub: a fixture)


class RecordingPlan:
    """Stands in for a plan: records what the cached path hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def run_dense(self, *args) -> None:
        self.calls.append(args)


@pytest.fixture
def fresh_caches(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(fp8_dense, "_cached_calls", {})
    monkeypatch.setattr(bf16_gemm, "_cached_calls", {})
    monkeypatch.setattr(settings, "_num_sms", None)


@pytest.mark.parametrize("args", list(variants()), ids=itertools.count())
def test_fp8_cached_path_accepts_what_the_full_checks_accept(fresh_caches, args) -> None:
    runs = []
    # Remember the sizes of the valid call closest to `args` (same A and B shapes, d's dtype), on the
    # device that stands in for the GPU: the CPU (the full path remembers CUDA calls only).
    try:
        A, B, d = args[0][0], args[1][0], args[2]
        (m, k), n = A.shape, B.shape[0]
        (A0, _), (B0, _), d0 = valid = operands(m, n, k, d.dtype)
        fp8_dense._checked(*valid)
        sizes_valid = m > 0 and n > 0 and k > 0
    except Exception:
        sizes_valid = False
    if sizes_valid:
        fp8_dense._remember_call(A0, B0, d0, m, n, k, None)
        for call in fp8_dense._cached_calls.values():
            call.run = lambda plan, *launch_args: runs.append(launch_args)
    try:
        full = fp8_dense._checked(*args)
        accepted = full[4] > 0 and full[5] > 0 and full[6] > 0
    except (TypeError, ValueError):
        accepted = False
    launched = fp8_dense._launch_cached(*args)
    if launched:
        assert accepted, "the cached path accepted arguments that break a rule"
        assert len(runs) == 1
    # Where the full checks accept a call of remembered sizes, so does the cached path, unless the fast
    # check (which the cached path mirrors) would also have left it to the full one.
    if accepted and sizes_valid and fp8_dense._fast_checked(*args) is not None:
        assert launched


def test_fp8_cached_path_hands_over_what_it_read(fresh_caches) -> None:
    m, n, k = 65, 256, 512
    A = torch.zeros(m, k + 128, dtype=torch.float8_e4m3fn)[:, :k]
    B = torch.zeros(n, k, dtype=torch.float8_e4m3fn)
    sfa, sfb = get_mn_major_tma_aligned_tensor(torch.ones(m, 4)), torch.ones(2, 4)
    d = torch.empty(m, n + 8, dtype=torch.bfloat16)[:, :n]
    runs = []
    fp8_dense._remember_call(A, B, d, m, n, k, "plan")
    (call,) = fp8_dense._cached_calls.values()
    call.run = lambda *launch_args: runs.append(launch_args)
    assert fp8_dense._launch_cached((A, sfa), (B, sfb), d)
    read = (A.data_ptr(), k + 128, B.data_ptr(), k, sfa, sfb.data_ptr(), d.data_ptr(), n + 8)
    assert runs == [("plan", *read)]
    # Another SM setting, d dtype or shape: not this entry.
    settings._num_sms = 66
    assert not fp8_dense._launch_cached((A, sfa), (B, sfb), d)
    settings._num_sms = None
    assert not fp8_dense._launch_cached((A, sfa), (B, sfb), d.float())
    assert not fp8_dense._launch_cached((A[:64], sfa[:64]), (B, sfb), d[:64])
    assert len(runs) == 1


def test_fp8_cached_launch_equals_the_full_launch(gpu_stub, fresh_caches) -> None:  # noqa: F811
    fp8_launch, record = gpu_stub
    m, n, k = 64, 2112, 7168
    A, B, d = torch.zeros(m, k, dtype=torch.float8_e4m3fn), torch.zeros(n, k, dtype=torch.float8_e4m3fn), \
        torch.empty(m, n, dtype=torch.bfloat16)
    sfa, sfb = get_mn_major_tma_aligned_tensor(torch.ones(m, 56)), torch.ones(17, 56)
    plan = fp8_launch.launch_checked(A, sfa, B, sfb, d, m, n, k, 0)
    fp8_dense._remember_call(A, B, d, m, n, k, plan)
    assert fp8_dense._launch_cached((A, sfa), (B, sfb), d)
    assert len(record.launches) == 2 and record.launches[0] == record.launches[1]
    assert len(record.tmaps) == 4  # the maps were memoised, not encoded again


# --- 16-bit ------------------------------------------------------------------------------------------------


def _bf16_variants():
    """Valid 16-bit calls in every layout, and calls breaking one rule each."""
    m, n, k = 16, 32, 64
    bf = torch.bfloat16

    def stored(layout):
        a = torch.zeros(m, k, dtype=bf) if layout[0] == "n" else torch.zeros(k, m, dtype=bf)
        b = torch.zeros(n, k, dtype=bf) if layout[1] == "t" else torch.zeros(k, n, dtype=bf)
        return a, b

    for layout in ("nt", "nn", "tn", "tt"):
        a, b = stored(layout)
        d = torch.empty(m, n, dtype=bf)
        yield layout, a, b, d, None
        yield layout, a, b, d, torch.zeros(m, n, dtype=bf)
        yield layout, a, b, d, d
        yield layout, a, b, torch.empty(m, n, dtype=torch.float32), torch.zeros(m, n)
        # One broken rule each.
        yield layout, a, b.half(), d, None
        yield layout, a, b, d, torch.zeros(m, n)  # c of another dtype
        yield layout, a, b, d, torch.zeros(m, n + 1, dtype=bf)
        yield layout, a, b, d, torch.zeros(m, n + 8, dtype=bf)[:, 1 : n + 1]  # misaligned c
        yield layout, a, b, torch.empty(m, n + 8, dtype=bf)[:, :n], None  # padded d: valid
        yield layout, a, b, torch.empty(m, 2 * n, dtype=bf)[:, ::2], None
        yield layout, a, b, torch.empty(n, m, dtype=bf).T, None
        yield layout, a, b, torch.empty(m, n, dtype=bf).to("meta"), None
        yield layout, a.to("meta"), b, d, None
        yield layout, a, b, d, "c"


@pytest.mark.parametrize("args", list(_bf16_variants()), ids=itertools.count())
def test_16bit_cached_path_accepts_what_the_full_checks_accept(fresh_caches, args) -> None:
    layout, a, b, d, c = args
    plan = RecordingPlan()
    # Remember the call's sizes with a valid c (or none), as the full path would have after a launch.
    # On the CPU, which stands in for the GPU (the full path remembers CUDA calls only).
    try:
        a0, b0 = torch.zeros(a.shape, dtype=a.dtype), torch.zeros(b.shape, dtype=a.dtype)
        d0 = torch.empty(d.shape, dtype=d.dtype)
        c0 = None if c is None else torch.zeros(d.shape, dtype=d.dtype)
        A, B, m, n, k, _ = bf16_gemm._checked(layout, a0, b0, d0, c0)
        bf16_gemm._remember_call(layout, A, B, d0, c0, m, n, k, plan)
    except (TypeError, ValueError):
        pass
    try:
        bf16_gemm._checked(layout, a, b, d, c)
        accepted = True
    except (TypeError, ValueError):
        accepted = False
    launched = bf16_gemm._launch_cached(layout, a, b, d, c)
    assert launched == accepted, (launched, accepted)
    assert len(plan.calls) == launched
    if launched:
        a_ptr, a_strides, b_ptr, b_strides, d_ptr, d_strides, d_row_bytes, c_ptr, c_row_bytes = \
            plan.calls[0][3:]
        assert (a_ptr, a_strides, b_ptr, b_strides) == (a.data_ptr(), a.stride(), b.data_ptr(), b.stride())
        assert (d_ptr, d_strides, d_row_bytes) == (d.data_ptr(), d.stride(), d.stride(0) * d.element_size())
        expected_c = (0, 0) if c is None else (c.data_ptr(), c.stride(0) * c.element_size())
        assert (c_ptr, c_row_bytes) == expected_c
