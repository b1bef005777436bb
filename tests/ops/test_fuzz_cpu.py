"""A seeded fuzz test of every public op on the CPU path: valid calls on small random shapes, edge sizes
and layouts, and invalid inputs; each either matches float64 math on the (dequantised) inputs, with the
rows the contract leaves alone untouched, or raises the library's own ``TypeError``/``ValueError`` naming
the argument. Case ``n`` reproduces alone: ``fuzz_cases.make_case(n).run()``."""

import collections
import time

import torch

import deepgemm
from deepgemm.testing import calc_diff

from .fuzz_cases import OPS, make_case

NUM_CASES = 5500


def test_fuzz_every_public_op_on_the_cpu() -> None:
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    failures = []
    start = time.perf_counter()
    for number in range(NUM_CASES):
        case = make_case(number)
        try:
            case.run()
        except AssertionError as error:
            failures.append(str(error))
        except Exception as error:  # a foreign exception from the op: the bug this test is here to find
            failures.append(f"fuzz case {number} ({case.op}, {case.category}: {case.note}): {error!r}")
        counts[case.op, case.category] += 1
    elapsed = time.perf_counter() - start
    assert not failures, f"{len(failures)} of {NUM_CASES} fuzz cases failed:\n" + "\n".join(failures[:30])
    assert sum(counts.values()) >= 5000
    for op in OPS:
        for category in ("valid", "edge", "invalid"):
            assert counts[op, category] > 0, f"no {category} case of {op}"
    print(f"{NUM_CASES} fuzz cases in {elapsed:.1f} s: {dict(sorted(counts.items()))}")


# ---- bugs the fuzzer found, each held fixed by its reproducer ------------------------------------------


def test_matmul_16bit_transposed_a_with_unaligned_n() -> None:
    # Fuzz cases 219, 1231 and 5356: a pad of nothing kept a transposed view column-major, and the NN
    # kernel refused it ("a must have contiguous rows").
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=generator).to(torch.bfloat16).T  # [M=8, K=16], a transposed view
    b = torch.randn(16, 3, generator=generator).to(torch.bfloat16)  # N = 3
    d = deepgemm.matmul(a, b)
    assert calc_diff(d, a.double() @ b.double()) < 1e-5
