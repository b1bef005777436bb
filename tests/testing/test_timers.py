"""The timers of ``deepgemm.testing.bench`` without a GPU: a clear error instead of a CUDA call, the CPU
timer's call count, and how a profiled trace is split into the timed calls' kernels."""

from types import SimpleNamespace

import pytest
import torch

from deepgemm.testing.bench import (
    _calls_events,
    bench,
    bench_cpu,
    bench_host_overhead,
    bench_kineto,
    bench_kineto_burst,
)


def test_gpu_timers_raise_a_clear_error_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for timer in (
        lambda: bench_kineto(lambda: None, None),
        lambda: bench_kineto_burst(lambda: None),
        lambda: bench(lambda: None),
        lambda: bench_host_overhead(lambda: None),
    ):
        with pytest.raises(RuntimeError, match="needs a CUDA device"):
            timer()


def test_bench_cpu_counts_calls():
    calls = []
    seconds = bench_cpu(lambda: calls.append(1), num_tests=4, num_warmups=2)
    assert len(calls) == 6 and 0 <= seconds < 1


def test_flush_kernels_are_split_off_by_position():
    def events(*names):
        return [SimpleNamespace(name=name) for name in names]

    # fn launches a fill kernel of its own: it must count, the flushes must not.
    trace = events("fill", "gemm", "fill", "fill", "gemm", "fill")
    assert [e.name for e in _calls_events(trace, 2, flushed=True)] == ["gemm", "fill", "gemm", "fill"]
    assert len(_calls_events(trace, 2, flushed=False)) == 6
    for bad in (events("fill", "gemm", "fill"), events("fill", "fill"), events("fill", "a", "b", "c")):
        with pytest.raises(RuntimeError, match="cannot split"):
            _calls_events(bad, 2, flushed=True)
    # A burst's warm-up calls are dropped by position too, with or without flushes.
    burst = events("fill", "gemm1", "fill", "gemm2", "fill", "gemm3")
    assert [e.name for e in _calls_events(burst, 3, flushed=True, skip_calls=1)] == ["gemm2", "gemm3"]
    unflushed = events("a1", "b1", "a2", "b2")
    assert [e.name for e in _calls_events(unflushed, 2, flushed=False, skip_calls=1)] == ["a2", "b2"]
    with pytest.raises(RuntimeError, match=r"into 2 x \[fn's kernels\]"):
        _calls_events(events("a", "b", "c"), 2, flushed=False, skip_calls=1)
