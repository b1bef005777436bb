"""The cached call path of fp8_gemm_nt and bf16_gemm_<layout> (checks and launch in one pass for sizes
seen before), without a GPU: it accepts exactly what the full checks accept for the remembered sizes
(and nothing of other sizes, devices, dtypes or SM settings), and it launches with the same arguments
as the full path. The kernel, the driver and the TMA encoding are stubbed out; CPU tensors stand in for
CUDA ones (the remembered device is theirs).

The hardening rules: the size guards (M, N, K <= 2^31 - 1, the tile count) depend on the sizes alone,
which key the cache, and an entry follows only a call that passed the full checks, so a call past them
never finds one (tested through the public ops' GPU flow); d overlapping an input (or c, unless c is d)
and TMA's 2^40-byte stride limit depend on the pointers and strides, so the cached path checks them on
every call (tested against the full checks on overlapping, side-by-side and far-strided arguments)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from deepgemm.ops.bf16 import gemm as bf16_gemm
from deepgemm.ops.common import settings
from deepgemm.ops.fp8 import dense as fp8_dense
from deepgemm.quant import get_mn_major_tma_aligned_tensor

from .test_fp8_host_path import gpu_stub, operands, variants  # noqa: F401 (gpu_stub: a fixture)

FP8 = torch.float8_e4m3fn
BF16 = torch.bfloat16


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
        # Overlap (hardening's rule, checked on every call: it depends on the pointers, not the sizes).
        rows = torch.zeros(m + 1, n, dtype=bf)
        yield layout, a, b, rows[:m], rows[1:]  # c shifted a row within d's buffer: refused
        yield layout, a, b, rows[1:], rows[:m]
        pair = torch.zeros(m, 2 * n, dtype=bf)
        yield layout, a, b, pair[:, :n], pair[:, n:]  # d and c interleaved column halves: valid
        yield layout, a, b, pair[:, n:], pair[:, :n]
        yield layout, a, b, pair[:, 8 : 8 + n], pair[:, n:]  # column halves that share 8 columns: refused
        sized = torch.zeros(a.shape[0], a.shape[1] + n, dtype=bf)
        a_beside, d_beside = sized[:, : a.shape[1]], sized[:, a.shape[1] :]
        if d_beside.shape == (m, n):
            yield layout, a_beside, b, d_beside, None  # d in a's rows, beside a's columns: valid
        yield layout, a, b, a.reshape(-1)[: m * n].view(m, n), None  # d on a's bytes: refused
        yield layout, a, b, b.reshape(-1)[-m * n :].view(m, n), None  # d on b's last bytes: refused
        big = torch.zeros(m * n + 8, dtype=bf)
        yield layout, a, b, big[: m * n].view(m, n), big[8:].view(m, n)  # c 8 elements past d: refused


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


# --- the rules that do not follow from the sizes: d overlapping an input ---------------------------------


def _fp8_overlap_variants():
    """fp8_gemm_nt calls whose d shares memory with an input (refused), or lies beside one in the same
    buffer (valid: the full checks accept it, the cached and fast paths leave it to them)."""
    m, n, k = 4, 16, 256
    (A, sfa), (B, sfb), _ = operands(m, n, k)
    storage = torch.zeros(m * k * 2, dtype=torch.uint8)
    yield (storage[: m * k].view(FP8).view(m, k), sfa), (B, sfb), storage.view(BF16)[: m * n].view(m, n)
    b_storage = torch.zeros(n * k, dtype=torch.uint8)
    yield (A, sfa), (b_storage.view(FP8).view(n, k), sfb), b_storage.view(BF16)[-m * n :].view(m, n)
    out = torch.zeros(m, n, dtype=BF16)
    yield (A, sfa), (B, out.view(-1)[-4:].view(torch.float32).view(1, 2)), out  # sfb: d's last 8 bytes
    out = torch.zeros(m, n, dtype=BF16)
    yield (A, out.view(-1)[: 2 * m * 2].view(torch.float32).view(m, 2)), (B, sfb), out  # sfa: d's first bytes
    out32 = torch.zeros(m, n, dtype=torch.float32)
    yield (A, sfa), (B, out32.view(-1)[5:7].view(1, 2)), out32  # sfb inside an FP32 d
    # d and A in one buffer of rows, side by side: no byte shared.
    buf = torch.zeros(m, n + k // 2, dtype=BF16)
    yield (buf[:, n:].view(torch.uint8).view(FP8), sfa), (B, sfb), buf[:, :n]



@pytest.mark.parametrize("args", list(_fp8_overlap_variants()), ids=itertools.count())
def test_fp8_cached_path_keeps_the_overlap_rule(fresh_caches, args) -> None:
    (A, _), (B, _), d = args
    (m, k), n = A.shape, B.shape[0]
    (A0, _), (B0, _), d0 = operands(m, n, k, d.dtype)
    fp8_dense._remember_call(A0, B0, d0, m, n, k, None)  # a clean call of these sizes came before
    runs = []
    for call in fp8_dense._cached_calls.values():
        call.run = lambda plan, *launch_args: runs.append(launch_args)
    try:
        fp8_dense._checked(*args)
        accepted = True
    except ValueError as error:
        assert "must not overlap" in str(error)
        accepted = False
    launched = fp8_dense._launch_cached(*args)
    fast = fp8_dense._fast_checked(*args)
    if not accepted:
        assert not launched and fast is None and not runs
        with pytest.raises(ValueError, match="must not overlap"):
            fp8_dense.fp8_gemm_nt(*args)  # the public op, with the remembered entry there: still refused
    else:
        # Beside, not on: the byte-range test of the fast and cached paths cannot vouch for it, so the
        # call takes the full path, which accepts it.
        assert not launched and fast is None


def test_16bit_cached_path_refuses_overlap_through_the_public_op(fresh_caches) -> None:
    m, n, k = 16, 32, 64
    a, b = torch.zeros(m, k, dtype=BF16), torch.zeros(n, k, dtype=BF16)
    plan = RecordingPlan()
    bf16_gemm._remember_call("nt", a, b, torch.empty(m, n, dtype=BF16), torch.zeros(m, n, dtype=BF16),
                             m, n, k, plan)
    rows = torch.zeros(m + 1, n, dtype=BF16)
    with pytest.raises(ValueError, match="d must not overlap c in memory"):
        bf16_gemm.bf16_gemm_nt(a, b, rows[:m], rows[1:])
    bf16_gemm._remember_call("nt", a, b, torch.empty(m, n, dtype=BF16), None, m, n, k, plan)
    with pytest.raises(ValueError, match="d must not overlap a in memory"):
        bf16_gemm.bf16_gemm_nt(a, b, a.reshape(-1)[: m * n].view(m, n))
    assert plan.calls == []
    # c is d itself (in place) is no overlap: the cached path launches it, as the full checks accept it.
    d = torch.zeros(m, n, dtype=BF16)
    bf16_gemm._checked("nt", a, b, d, d)
    assert bf16_gemm._launch_cached("nt", a, b, d, d)
    assert len(plan.calls) == 1


# --- the size rules: they follow from the sizes, which key the cache --------------------------------------


@pytest.fixture
def stubbed_gpu_flow(monkeypatch: pytest.MonkeyPatch, fresh_caches):
    """The public ops' GPU flow on CPU tensors: the checks report CUDA device 0, the kernel modules
    record launches. So an entry is made exactly where the real GPU path would make one."""
    launches = []
    plan = RecordingPlan()

    def on_gpu(check):
        def checked(*args):
            result = check(*args)
            return None if result is None else (*result[:-1], 0)
        return checked

    fp8_kernel = SimpleNamespace(launch_checked=lambda *args: launches.append(args) or "plan",
                                 run_plan=lambda *args: launches.append(args))
    bf16_kernel = SimpleNamespace(launch_bf16_gemm=lambda *args: launches.append(args) or plan)
    monkeypatch.setattr(fp8_dense, "_fast_checked", on_gpu(fp8_dense._fast_checked))
    monkeypatch.setattr(fp8_dense, "_checked", on_gpu(fp8_dense._checked))
    monkeypatch.setattr(fp8_dense, "require_hopper", lambda index: None)
    monkeypatch.setattr(fp8_dense, "_kernel", lambda: fp8_kernel)
    monkeypatch.setattr(bf16_gemm, "_checked", on_gpu(bf16_gemm._checked))
    monkeypatch.setattr(bf16_gemm, "_kernel", lambda: bf16_kernel)
    return launches, plan


def _meta(*shape: int, dtype: torch.dtype = FP8) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device="meta")


def _meta_fp8_operands(m: int, n: int, k: int):
    kb = (k + 127) // 128
    return (_meta(m, k), _meta(m, kb, dtype=torch.float32)), \
        (_meta(n, k), _meta((n + 127) // 128, kb, dtype=torch.float32)), _meta(m, n, dtype=BF16)


@pytest.mark.parametrize("m, n, k, rule", [(2**31, 128, 128, "M must be at most"),
                                           (128, 2**31, 128, "N must be at most"),
                                           (64, 128, 2**31, "K must be at most"),
                                           (2**31 - 1, 2**20, 128, "too large: .* output tiles")])
def test_fp8_sizes_past_the_limits_never_get_an_entry(stubbed_gpu_flow, m, n, k, rule) -> None:
    launches, _ = stubbed_gpu_flow
    a, b, d = operands(4, 16, 256)
    fp8_dense.fp8_gemm_nt(a, b, d)  # the full path, then an entry for these sizes
    fp8_dense.fp8_gemm_nt(a, b, d)  # the cached path
    assert len(fp8_dense._cached_calls) == 1 and len(launches) == 2
    # A size rule depends on M, N and K alone, and the key (A's and B's shapes) fixes them: a call past a
    # limit finds no entry (none can exist: entries follow a call that passed the checks of its sizes),
    # and the full checks refuse it, each time.
    for _ in range(2):
        args = _meta_fp8_operands(m, n, k)
        assert not fp8_dense._launch_cached(*args)
        with pytest.raises(ValueError, match=rule):
            fp8_dense.fp8_gemm_nt(*args)
    assert len(fp8_dense._cached_calls) == 1 and len(launches) == 2


@pytest.mark.parametrize("layout", ["nt", "nn", "tn", "tt"])
def test_16bit_sizes_past_the_limits_never_get_an_entry(stubbed_gpu_flow, layout) -> None:
    launches, plan = stubbed_gpu_flow
    op = getattr(bf16_gemm, f"bf16_gemm_{layout}")

    def stored(m, n, k, make):
        a = make(m, k) if layout[0] == "n" else make(k, m)
        b = make(n, k) if layout[1] == "t" else make(k, n)
        return a, b, make(m, n)

    a, b, d = stored(16, 32, 64, lambda *shape: torch.zeros(*shape, dtype=BF16))
    op(a, b, d)
    op(a, b, d)
    assert len(bf16_gemm._cached_calls) == 1 and len(launches) == 1 and len(plan.calls) == 1
    for m, n, k, rule in [(64, 64, 2**31, "K must be at most"), (2**31, 64, 64, "M must be at most"),
                          (2**31 - 8, 2**20, 64, "too large: .* output tiles")]:
        args = stored(m, n, k, lambda *shape: _meta(*shape, dtype=BF16))
        assert not bf16_gemm._launch_cached(layout, *args, None)
        with pytest.raises(ValueError, match=rule):
            op(*args)
    assert len(bf16_gemm._cached_calls) == 1 and len(launches) == 1 and len(plan.calls) == 1


# --- TMA's stride limit: strides are not in the key, so it is checked on every call ------------------------


@pytest.mark.parametrize("stride, valid", [(2**40, False), (2**40 - 16, True), (2**41, False)])
def test_fp8_cached_path_keeps_the_stride_limit(fresh_caches, stride: int, valid: bool) -> None:
    # One row of A with a huge row stride fits a small buffer (the stride never moves past the row), but
    # TMA encodes it: 2^40 bytes or more is refused by the full checks, so by the fast and cached paths too.
    m, n, k = 1, 16, 256
    (A, sfa), (B, sfb), d = operands(m, n, k)
    fp8_dense._remember_call(A, B, d, m, n, k, None)
    runs = []
    for call in fp8_dense._cached_calls.values():
        call.run = lambda plan, *launch_args: runs.append(launch_args)
    args = (A.as_strided((m, k), (stride, 1)), sfa), (B, sfb), d
    if valid:
        fp8_dense._checked(*args)
    else:
        with pytest.raises(ValueError, match=r"stride\(0\) must be below 2\^40 bytes"):
            fp8_dense._checked(*args)
    assert (fp8_dense._fast_checked(*args) is not None) == valid
    assert fp8_dense._launch_cached(*args) == valid
    assert len(runs) == valid


# A one-row tensor that a layout allows: d [1, N] where M may be 1 (A K-major), a [1, M] where K may be 1
# (TN: A and B MN-major).
@pytest.mark.parametrize("layout, m, k, far", [("nt", 1, 64, "d"), ("nn", 1, 64, "d"), ("tn", 8, 1, "a")])
@pytest.mark.parametrize("stride, valid", [(2**39, False), (2**39 - 8, True)])  # BF16: 2^39 = 2^40 bytes
def test_16bit_cached_path_keeps_the_stride_limit(fresh_caches, layout: str, m: int, k: int, far: str,
                                                   stride: int, valid: bool) -> None:
    n = 32
    a = torch.zeros(m, k, dtype=BF16) if layout[0] == "n" else torch.zeros(k, m, dtype=BF16)
    b = torch.zeros(n, k, dtype=BF16) if layout[1] == "t" else torch.zeros(k, n, dtype=BF16)
    d = torch.zeros(m, n, dtype=BF16)
    plan = RecordingPlan()
    A, B, *_ = bf16_gemm._checked(layout, a, b, d, None)
    bf16_gemm._remember_call(layout, A, B, d, None, m, n, k, plan)
    if far == "d":
        d = d.as_strided(d.shape, (stride, 1))
    else:
        a = a.as_strided(a.shape, (stride, 1))
    try:
        bf16_gemm._checked(layout, a, b, d, None)
        accepted = True
    except ValueError as error:
        assert "must be below 2^40 bytes" in str(error)
        accepted = False
    assert accepted == valid
    assert bf16_gemm._launch_cached(layout, a, b, d, None) == valid
    assert len(plan.calls) == valid
