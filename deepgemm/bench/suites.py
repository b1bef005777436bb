"""Shape suites: which problems to run, with which providers, and how to summarise them.

A suite is data: its problems, a function that builds the shared inputs of one problem, the
providers it compares (the first is the baseline the ratios are taken against), the nominal
bytes a problem moves (for GB/s) and the splits over which geometric means are reported. Adding
the grouped or BF16 suites means writing their inputs and providers and one ``Suite(...)`` entry.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from deepgemm.quant import ceil_div

from .inputs import make_dense_inputs
from .providers import CUBLAS_BF16, CUBLAS_BLOCKWISE, CUBLAS_PER_TENSOR, DEEPGEMM, Provider


@dataclass(frozen=True)
class Problem:
    """One GEMM size: ``num_groups`` groups of ``m`` (valid) rows, each ``[m, k] x [n, k]ᵀ``."""

    m: int
    n: int
    k: int
    num_groups: int = 1

    @property
    def flops(self) -> int:
        return 2 * self.num_groups * self.m * self.n * self.k


@dataclass(frozen=True)
class Split:
    """A subset of a suite's problems over which the geometric-mean speed ratio is reported."""

    label: str
    contains: Callable[[Problem], bool]


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    problems: tuple[Problem, ...]
    make_inputs: Callable[[Problem, torch.device, int], object]
    providers: tuple[Provider, ...]
    bytes_moved: Callable[[Problem], int]
    splits: tuple[Split, ...]

    @property
    def baseline(self) -> str:
        return self.providers[0].name


def fp8_gemm_bytes(problem: Problem) -> int:
    """FP8 operands, FP32 scales (A: 1x128, B: 128x128) and the BF16 output of one problem.

    Used for every provider of a suite, so GB/s is a second view of the same time, not a
    measurement of what each implementation actually moves.
    """
    g, m, n, k = problem.num_groups, problem.m, problem.n, problem.k
    kb = ceil_div(k, 128)
    operands = g * (m * k + n * k)
    scales = 4 * g * (m * kb + ceil_div(n, 128) * kb)
    return operands + scales + 2 * g * m * n


def _dense_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    return make_dense_inputs(problem.m, problem.n, problem.k, device, seed)


DENSE_MS = (64, 128, 4096)
DENSE_NKS = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))

DENSE = Suite(
    name="dense",
    description="DeepSeek-V3 dense FP8 GEMMs D = A B^T, 1x128 (A) / 128x128 (B) FP32 scales, BF16 out",
    problems=tuple(Problem(m, n, k) for m in DENSE_MS for n, k in DENSE_NKS),
    make_inputs=_dense_inputs,
    providers=(DEEPGEMM, CUBLAS_BLOCKWISE, CUBLAS_PER_TENSOR, CUBLAS_BF16),
    bytes_moved=fp8_gemm_bytes,
    # Decode-sized GEMMs are memory-bound and prefill-sized ones compute-bound: summarise apart.
    splits=(Split("M<=128", lambda p: p.m <= 128), Split("M>128", lambda p: p.m > 128)),
)

SUITES: dict[str, Suite] = {suite.name: suite for suite in (DENSE,)}

# What runs on a machine without a GPU: the CPU path on two small shapes, as a correctness smoke test.
CPU_PROBLEMS = (Problem(64, 256, 512), Problem(128, 384, 1024))


def parse_shapes(text: str) -> tuple[Problem, ...]:
    """``"M,N,K;M,N,K"`` -> problems; raises ``ValueError`` naming the bad entry."""
    problems = []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        fields = entry.split(",")
        try:
            m, n, k = (int(field) for field in fields)
        except ValueError:
            raise ValueError(f"shape {entry!r} is not 'M,N,K' with three integers") from None
        if min(m, n, k) <= 0:
            raise ValueError(f"shape {entry!r} must have positive M, N and K")
        problems.append(Problem(m, n, k))
    if not problems:
        raise ValueError(f"no shapes in {text!r}; expected 'M,N,K;M,N,K...'")
    return tuple(problems)
