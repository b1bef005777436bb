"""A seeded fuzz test of every kernel family and kind on a Hopper GPU: 2,100 valid calls with random M,
group sizes, output and operand dtypes, storage layouts, strided views, scale layouts and C, over a fixed
few N x K per family; each result matches float64 math on the (dequantised) inputs, and the rows the
contract leaves alone keep their sentinel. Case ``n`` reproduces alone: ``fuzz_gpu_cases.make_case(n).run()``.

The kernels the cases need are built first, in parallel processes (``deepgemm.precompile``), from the
requests the cases name; the run itself must then compile nothing, which also checks on a GPU that
precompiled kernels are the ones the launch path looks up.
"""

import collections
import os
import time

import pytest
import torch

import deepgemm
from deepgemm.jit import compile_count
from deepgemm.precompile import build_all, kernel_specs

from .fuzz_gpu_cases import OPS, make_case

pytestmark = pytest.mark.gpu

NUM_CASES = 2100


def test_fuzz_every_kernel_family_on_the_gpu() -> None:
    start = time.perf_counter()
    cases = [make_case(number) for number in range(NUM_CASES)]
    specs = kernel_specs([request for case in cases for request in case.requests], deepgemm.get_num_sms())
    built = build_all(specs, jobs=max(1, min(os.cpu_count() or 1, 16)))
    assert not built.failed, built.failed
    compiled_before, built_s = compile_count(), time.perf_counter() - start

    counts: collections.Counter[str] = collections.Counter()
    failures = []
    for case in cases:
        try:
            case.run()
        except AssertionError as error:
            failures.append(str(error))
        except Exception as error:  # a library error or a crash on a valid call is a bug too
            failures.append(f"GPU fuzz case {case.number} ({case.op}: {case.note}): {error!r}")
        counts[case.op] += 1
    torch.cuda.synchronize()
    assert not failures, f"{len(failures)} of {NUM_CASES} GPU fuzz cases failed:\n" + "\n".join(failures[:30])
    assert sum(counts.values()) >= 2000 and set(counts) == set(OPS)
    assert compile_count() == compiled_before, "a case compiled a kernel its requests did not name"
    print(f"{NUM_CASES} GPU fuzz cases, {len(specs)} kernels ({built.line()}) in {built_s:.1f} s, the calls "
          f"in {time.perf_counter() - start - built_s:.1f} s: {dict(sorted(counts.items()))}")
