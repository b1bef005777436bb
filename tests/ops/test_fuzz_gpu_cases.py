"""The GPU fuzz test's generators, run on the CPU path: every op's cases are valid calls whose checks
pass, and the kernels they name stay few (each is a compile on the GPU)."""

import collections

import pytest

from deepgemm.precompile import kernel_specs

from . import fuzz_gpu_cases
from .fuzz_gpu_cases import OPS, make_case


def test_the_cases_pass_on_the_cpu_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fuzz_gpu_cases, "DEVICE", "cpu")
    counts = collections.Counter()
    for number in range(3 * len(fuzz_gpu_cases.SCHEDULE)):  # every op three times or more
        case = make_case(number)
        case.run()
        counts[case.op] += 1
    assert set(counts) == set(OPS)


def test_the_cases_need_few_kernels() -> None:
    cases = [make_case(number) for number in range(2100)]
    specs = kernel_specs([request for case in cases for request in case.requests], 132)
    assert len(specs) <= 90
    assert make_case(5).note == make_case(5).note  # a case is its number
