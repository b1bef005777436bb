"""Timers for GEMM benchmarks.

``bench_kineto`` is the one to trust on a GPU: it reads the device time of the kernels from the
torch profiler (CUPTI), so launch gaps and host work do not count, and it flushes L2 before every
call so that no operand is served from cache. ``bench_kineto_burst`` times the first calls of a
burst the same way (run after a rest: the GPU's clock before its power cap lowers it). ``bench``
(CUDA events) is the fallback when the profiler is unusable; ``bench_host_overhead`` measures CPU
cost per call; ``bench_cpu`` times the CPU path. All but ``bench_cpu`` raise ``RuntimeError``
without CUDA.
"""

import time
from collections.abc import Callable, Sequence

import torch
from torch.autograd import DeviceType

# H100/H200 have 50-60 MB of L2; writing 256 MB evicts every line the previous call touched.
L2_FLUSH_BYTES = int(256e6)


def _require_cuda(timer: str) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"{timer} times GPU kernels and needs a CUDA device, but torch.cuda.is_available() is False "
            "(CPU-only torch build or no visible GPU); time the CPU path with bench_cpu instead"
        )


def _flush_buffer(flush_l2: bool) -> torch.Tensor | None:
    if not flush_l2:
        return None
    return torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")


def _device_events(prof: torch.profiler.profile) -> list:
    """Device-side activities (kernels, memsets, memcpys) of the profiled window, in start order.

    GPU-side annotations (the profiler's own ``ProfilerStep#N`` ranges) are spans, not work.
    """
    return [
        event
        for event in prof.events()
        if event.device_type == DeviceType.CUDA
        and not getattr(event, "is_user_annotation", False)
        and not event.name.startswith("ProfilerStep#")
    ]


def _calls_events(events: Sequence, num_calls: int, flushed: bool, skip_calls: int = 0) -> list:
    """fn's activities in ``events``, where the device ran [flush, fn's kernels] ``num_calls`` times (no
    flush when not ``flushed``): the flushes dropped, and the first ``skip_calls`` calls with them.

    The split is positional, not by name: ``fn`` may itself launch a fill kernel, which must count.
    One stream executes in launch order, so every period starts with the flush.
    """
    if not flushed and not skip_calls:
        return list(events)
    period, remainder = divmod(len(events), num_calls)
    first = 1 if flushed else 0
    flush_name = events[0].name if events else None
    if (remainder or period < first + 1
            or (flushed and any(events[i * period].name != flush_name for i in range(num_calls)))):
        shape = "[L2 flush, fn's kernels]" if flushed else "[fn's kernels]"
        raise RuntimeError(
            f"cannot split {len(events)} profiled device activities into {num_calls} x {shape}; fn "
            "must launch the same kernels on every call (or pass kernel_names)"
        )
    return [event for i, event in enumerate(events) if i // period >= skip_calls and i % period >= first]


def bench_kineto(
    fn: Callable[[], object],
    kernel_names: str | tuple[str, ...] | None = None,
    num_tests: int = 30,
    flush_l2: bool = True,
    num_warmups: int = 5,
) -> float:
    """Mean device time in seconds of the kernels one call of ``fn`` launches.

    ``fn`` runs ``num_warmups`` times unprofiled (JIT compiles, cuBLAS heuristics, lazy allocations),
    then twice ``num_tests`` times under the profiler: the first batch warms up the profiler and is
    discarded. With ``flush_l2`` a 256 MB buffer is zeroed before every call; its kernel is never
    counted. ``kernel_names`` selects the kernels to sum by substring of their names (each name must
    match at least one kernel); ``None`` sums every device activity ``fn`` launches.
    """
    _require_cuda("bench_kineto")
    if num_tests < 1:
        raise ValueError(f"num_tests must be >= 1, got {num_tests}")
    flush = _flush_buffer(flush_l2)
    for _ in range(num_warmups):
        fn()
    torch.cuda.synchronize()

    schedule = torch.profiler.schedule(wait=0, warmup=1, active=1, repeat=1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA], schedule=schedule) as prof:
        for _ in range(2):
            for _ in range(num_tests):
                if flush is not None:
                    flush.zero_()
                fn()
            torch.cuda.synchronize()
            prof.step()

    events = _device_events(prof)
    if kernel_names is None:
        selected = _calls_events(events, num_tests, flushed=flush is not None)
    else:
        names = (kernel_names,) if isinstance(kernel_names, str) else tuple(kernel_names)
        missing = [name for name in names if not any(name in event.name for event in events)]
        if missing:
            seen = sorted({event.name for event in events})
            raise RuntimeError(f"no profiled kernel matches {missing}; kernels seen: {seen}")
        selected = [event for event in events if any(name in event.name for name in names)]
    return _mean_seconds(selected, num_tests)


def bench_kineto_burst(
    fn: Callable[[], object], num_tests: int = 20, num_warmups: int = 1, flush_l2: bool = True
) -> float:
    """Mean device time in seconds of calls ``num_warmups + 1`` to ``num_warmups + num_tests`` of a
    burst of calls of ``fn`` starting now, each after an L2 flush, all under the profiler.

    Unlike ``bench_kineto`` it runs no unprofiled warm-ups and discards no profiled batch, so after an
    idle rest it measures the first calls at the clock the GPU holds before its power cap pulls it
    down (on an H200: about the first 40 ms of back-to-back tensor-core work). Call ``fn`` once
    beforehand (JIT compiles, lazy allocations); the ``num_warmups`` calls bring the clock up from idle.
    """
    _require_cuda("bench_kineto_burst")
    if num_tests < 1 or num_warmups < 0:
        raise ValueError(f"num_tests must be >= 1 and num_warmups >= 0, got {num_tests} and {num_warmups}")
    flush = _flush_buffer(flush_l2)
    num_calls = num_warmups + num_tests
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(num_calls):
            if flush is not None:
                flush.zero_()
            fn()
        torch.cuda.synchronize()
    calls = _calls_events(_device_events(prof), num_calls, flush is not None, skip_calls=num_warmups)
    return _mean_seconds(calls, num_tests)


def _mean_seconds(selected: Sequence, num_tests: int) -> float:
    """Seconds per call of the profiled activities ``selected`` from ``num_tests`` calls."""
    if not selected:
        raise RuntimeError("fn launched no device work under the profiler")
    total_us = sum(event.time_range.end - event.time_range.start for event in selected)
    return total_us / num_tests / 1e6


def bench(
    fn: Callable[[], object], num_tests: int = 30, flush_l2: bool = True, num_warmups: int = 5
) -> float:
    """Mean GPU time in seconds of one call of ``fn``, between CUDA events around each call.

    Coarser than ``bench_kineto`` (it includes launch gaps inside ``fn``), but needs no profiler.
    """
    _require_cuda("bench")
    flush = _flush_buffer(flush_l2)
    for _ in range(num_warmups):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(num_tests)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(num_tests)]
    for start, end in zip(starts, ends, strict=True):
        if flush is not None:
            flush.zero_()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return sum(start.elapsed_time(end) for start, end in zip(starts, ends, strict=True)) / num_tests / 1e3


_MAX_SPIN_CYCLES = int(2e9)


def bench_host_overhead(fn: Callable[[], object], num_calls: int = 2000, num_warmups: int = 50,
                        batch: int = 200) -> float:
    """CPU seconds one call of ``fn`` spends enqueuing work: ``num_calls`` back-to-back calls, no sync.

    The calls are timed in batches of ``batch`` (fewer than the launch queue holds), each enqueued behind
    a spin kernel that keeps the GPU busy until the whole batch is queued, so the figure is the host's
    own cost whatever the GPU time of one call: without it, a call whose kernel runs longer than its host
    cost fills the queue and the figure tends to the GPU time. A batch whose spin ended before the batch
    was queued is timed again behind a spin twice as long (up to about a second: a ``fn`` that waits
    for the GPU itself is then timed as it is).
    """
    _require_cuda("bench_host_overhead")
    if batch <= 0:
        raise ValueError(f"batch must be positive, got {batch}")
    for _ in range(num_warmups):
        fn()
    torch.cuda.synchronize()
    # Spin cycles per second of host time: generous (a GPU clock of about 2 GHz), since only a spin
    # too short spoils the figure; the first batch's spin covers 50 us per call.
    spin_cycles = int(batch * 50e-6 * 2e9)
    elapsed, done = 0.0, 0
    while done < num_calls:
        calls = min(batch, num_calls - done)
        torch.cuda._sleep(spin_cycles)
        spinning = torch.cuda.Event()
        spinning.record()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        seconds = time.perf_counter() - start
        spin_outlasted = not spinning.query()
        torch.cuda.synchronize()
        if not spin_outlasted and spin_cycles < _MAX_SPIN_CYCLES:
            spin_cycles *= 2
            continue
        elapsed += seconds
        done += calls
    return elapsed / num_calls


def bench_cpu(fn: Callable[[], object], num_tests: int = 3, num_warmups: int = 1) -> float:
    """Mean wall-clock seconds of one call of ``fn`` on CPU tensors (synchronous, so wall = work)."""
    for _ in range(num_warmups):
        fn()
    start = time.perf_counter()
    for _ in range(num_tests):
        fn()
    return (time.perf_counter() - start) / num_tests
