"""Shape suites: which problems to run, with which providers, and how to summarise them.

A suite is data: its problems, a function that builds the shared inputs of one problem, the
providers it compares (the first is the baseline the ratios are taken against), the nominal
bytes a problem moves (for GB/s) and the splits over which geometric means are reported. The
dense suite compares deepgemm with cuBLAS on one GEMM; the grouped suites compare deepgemm's MoE
grouped GEMMs with a loop of per-group cuBLAS calls and with deepgemm's dense GEMM of the same total
size. The 16-bit suites do the same for the BF16 GEMMs, in every storage layout of A and B, and
``matmul_fp8`` compares ``deepgemm.matmul(precision="fp8")`` with the quantise-then-GEMM calls it
stands for. Adding a suite means writing its inputs and providers and one ``Suite(...)`` entry.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from deepgemm import heuristics
from deepgemm.quant import align, ceil_div
from deepgemm.testing import GROUPED_LAYOUTS, MAJORS, make_bf16_inputs, make_dense_inputs, make_grouped_inputs

from .decode_shapes import DECODE_BATCH_SIZES, decode_weights
from .providers import (
    CUBLAS_BF16,
    CUBLAS_BF16_LAYOUT,
    CUBLAS_BF16_LOOP,
    CUBLAS_BLOCKWISE,
    CUBLAS_BLOCKWISE_LOOP,
    CUBLAS_PER_TENSOR,
    DEEPGEMM,
    DEEPGEMM_BF16,
    DEEPGEMM_BF16_DENSE,
    DEEPGEMM_BF16_GROUPED,
    DEEPGEMM_BF16_NT,
    DEEPGEMM_CONTIGUOUS,
    DEEPGEMM_CONTIGUOUS_OFFSETS,
    DEEPGEMM_DENSE,
    DEEPGEMM_MASKED,
    DEEPGEMM_MATMUL_FP8,
    FP8_BY_HAND,
    Provider,
)


@dataclass(frozen=True)
class Problem:
    """One GEMM size: ``num_groups`` groups of ``m`` (valid) rows, each ``[m, k] x [n, k]ᵀ``.

    ``layout``: ``"dense"`` (one GEMM), or the MoE layout of the groups' rows: ``"contiguous"`` (all
    groups' rows in one A, each group's start aligned to 128 rows) or ``"masked"`` (A ``[num_groups,
    max_m, k]``, the first ``m`` rows of each group valid, ``m`` also the ``expected_m`` hint).
    ``major``: how A and B are stored, in the letters of the ops' names: the first is A's (``n``:
    ``[M, K]``, ``t``: ``[K, M]``), the second B's (``t``: ``[N, K]``, ``n``: ``[K, N]``); D is
    ``[M, N]`` either way. ``"nt"`` (both K-major) is what the FP8 GEMMs take.
    """

    m: int
    n: int
    k: int
    num_groups: int = 1
    layout: str = "dense"
    max_m: int | None = None
    major: str = "nt"

    @property
    def flops(self) -> int:
        """Valid rows only: padding and masked-off rows are not work."""
        return 2 * self.num_groups * self.m * self.n * self.k


@dataclass(frozen=True)
class Split:
    """A subset of a suite's problems over which the geometric-mean speed ratio is reported."""

    label: str
    contains: Callable[[Problem], bool]


# Directions of a suite's speed ratios against its baseline (``Suite.faster``).
BASELINE_FASTER, PROVIDER_FASTER = "baseline", "provider"


@dataclass(frozen=True)
class Suite:
    """``faster`` orients the ratio of each provider to the baseline (the first provider):
    ``"baseline"``: how many times faster the baseline runs than the provider (``t_provider /
    t_baseline``; the baseline is what is measured, deepgemm); ``"provider"``: how many times faster
    the provider runs than the baseline (``t_baseline / t_provider``; the baseline is the yardstick).
    ``pairs``: further ratios ``(a, b)``, how many times faster ``a`` runs than ``b`` (``t_b / t_a``).
    ``twin``: the problem each problem is also compared with, provider by provider (``None``: none,
    or the problem itself); the ratio ``t_twin / t_problem`` says how many times faster a provider
    runs the problem than its twin. A twin must come before its problems in ``problems``.
    ``cpu_problems``: small problems for the CPU smoke run; with none the suite does not run there.
    ``family``: the name of the kernel family the suite measures (``deepgemm.heuristics.FAMILIES``), for
    the kernel config the problem records carry.
    """

    name: str
    description: str
    problems: tuple[Problem, ...]
    make_inputs: Callable[[Problem, torch.device, int], object]
    providers: tuple[Provider, ...]
    bytes_moved: Callable[[Problem], int]
    splits: tuple[Split, ...]
    faster: str = BASELINE_FASTER
    pairs: tuple[tuple[str, str], ...] = ()
    twin: Callable[[Problem], Problem | None] | None = None
    cpu_problems: tuple[Problem, ...] = ()
    family: str = "fp8_1d2d"
    # Each result also reports its GB/s as a fraction of the GPU's HBM bandwidth.
    reports_hbm: bool = False

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


def bf16_gemm_bytes(problem: Problem) -> int:
    """BF16 operands and BF16 output of one problem (the nominal bytes, as ``fp8_gemm_bytes``)."""
    g, m, n, k = problem.num_groups, problem.m, problem.n, problem.k
    return 2 * g * (m * k + n * k + m * n)


def _dense_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    return make_dense_inputs(problem.m, problem.n, problem.k, device, seed)


def _grouped_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    return make_grouped_inputs(
        problem.layout, problem.num_groups, problem.m, problem.n, problem.k, problem.max_m, device, seed
    )


def _bf16_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    return make_bf16_inputs(problem.m, problem.n, problem.k, problem.major, device, seed)


def _bf16_grouped_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    return make_grouped_inputs(
        problem.layout,
        problem.num_groups,
        problem.m,
        problem.n,
        problem.k,
        problem.max_m,
        device,
        seed,
        operand_dtype=torch.bfloat16,
    )


def _matmul_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    return make_dense_inputs(problem.m, problem.n, problem.k, device, seed, b_kn=True)


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
    cpu_problems=(Problem(64, 256, 512), Problem(128, 384, 1024)),
)

# The grouped suites: the MoE tables of reference/anchors-h200.md, and decode-sized masked GEMMs.
GROUPED_NKS = ((4096, 7168), (7168, 2048))
CONTIGUOUS_GMS = ((4, 8192), (8, 4096))
MASKED_GMS = ((1, 1024), (2, 512), (4, 256))
MASKED_MAX_M = 4096
DECODE_GROUPS = 32
DECODE_MS = (16, 64, 128, 192)


def grouped_suite(
    name: str,
    description: str,
    problems: tuple[Problem, ...],
    providers: tuple[Provider, ...],
    cpu_problems: tuple[Problem, ...],
    make_inputs: Callable[[Problem, torch.device, int], object] = _grouped_inputs,
    bytes_moved: Callable[[Problem], int] = fp8_gemm_bytes,
    splits: tuple[Split, ...] = (Split("all", lambda p: True),),
    family: str = "fp8_1d2d",
) -> Suite:
    """A grouped suite. Its baseline is the yardstick: cuBLAS has no grouped GEMM, so the first
    provider is a loop of per-group cuBLAS calls, and ratios say how much faster each provider runs;
    deepgemm/deepgemm_dense shows how close the grouped op gets to the dense GEMM of the same size.
    """
    return Suite(
        name=name,
        description=description,
        problems=problems,
        make_inputs=make_inputs,
        providers=providers,
        bytes_moved=bytes_moved,
        splits=splits,
        faster=PROVIDER_FASTER,
        pairs=(("deepgemm", "deepgemm_dense"),),
        cpu_problems=cpu_problems,
        family=family,
    )


GROUPED_CONTIGUOUS = grouped_suite(
    "grouped_contiguous",
    "MoE grouped FP8 GEMMs, contiguous layout: G experts of M rows each (128-aligned) stacked in one"
    " A [G*M, K], expert g times B[g] [N, K]; 1x128 / 128x128 FP32 scales, BF16 out",
    tuple(Problem(m, n, k, g, "contiguous") for g, m in CONTIGUOUS_GMS for n, k in GROUPED_NKS),
    (CUBLAS_BLOCKWISE_LOOP, DEEPGEMM_CONTIGUOUS, DEEPGEMM_CONTIGUOUS_OFFSETS, DEEPGEMM_DENSE),
    cpu_problems=(Problem(100, 256, 384, 3, "contiguous"),),
)
GROUPED_MASKED = grouped_suite(
    "grouped_masked",
    f"MoE grouped FP8 GEMMs, masked layout: A [G, max_m={MASKED_MAX_M}, K] with the first M rows of each"
    " group valid (masked_m = expected_m = M), group g times B[g] [N, K]; TFLOPS count valid rows",
    tuple(Problem(m, n, k, g, "masked", MASKED_MAX_M) for g, m in MASKED_GMS for n, k in GROUPED_NKS),
    (CUBLAS_BLOCKWISE_LOOP, DEEPGEMM_MASKED, DEEPGEMM_DENSE),
    cpu_problems=(Problem(48, 256, 384, 3, "masked", 128),),
)
GROUPED_DECODE = grouped_suite(
    "grouped_decode",
    f"MoE grouped FP8 GEMMs at decode sizes, masked layout: G={DECODE_GROUPS} groups of M valid rows,"
    " max_m = M rounded up to 128, masked_m = expected_m = M",
    tuple(
        Problem(m, n, k, DECODE_GROUPS, "masked", align(m, 128)) for m in DECODE_MS for n, k in GROUPED_NKS
    ),
    (CUBLAS_BLOCKWISE_LOOP, DEEPGEMM_MASKED, DEEPGEMM_DENSE),
    cpu_problems=(Problem(16, 256, 384, 8, "masked", 128),),
)


def nt_twin(problem: Problem) -> Problem | None:
    """The NT-layout problem of the same shape, which every other layout is held against."""
    return None if problem.major == "nt" else dataclasses.replace(problem, major="nt")


def _major_split(major: str) -> Split:
    return Split(f"{major.upper()} M>128", lambda p: p.major == major and p.m > 128)


# The 16-bit layouts other than NT run at prefill size only: the bar is "no layout more than 5%
# behind NT on the same shape", which the twin ratios show per shape.
BF16_LAYOUT_M = 4096

BF16 = Suite(
    name="bf16",
    description="DeepSeek-V3 dense shapes as BF16 GEMMs D = A B, BF16 out: all in NT (A [M, K], B [N, K]),"
    f" and at M={BF16_LAYOUT_M} also NN (A [M, K], B [K, N]), TN (A [K, M], B [K, N]) and TT (A [K, M],"
    " B [N, K]); twin ratios hold each layout against NT on the same shape",
    problems=(
        *(Problem(m, n, k) for m in DENSE_MS for n, k in DENSE_NKS),
        *(Problem(BF16_LAYOUT_M, n, k, major=major) for major in MAJORS[1:] for n, k in DENSE_NKS),
    ),
    make_inputs=_bf16_inputs,
    providers=(DEEPGEMM_BF16, CUBLAS_BF16_LAYOUT),
    bytes_moved=bf16_gemm_bytes,
    splits=(
        Split("NT M<=128", lambda p: p.major == "nt" and p.m <= 128),
        *(_major_split(major) for major in MAJORS),
    ),
    twin=nt_twin,
    cpu_problems=(
        Problem(64, 256, 384),
        Problem(192, 256, 384),
        *(Problem(192, 256, 384, major=major) for major in MAJORS[1:]),
    ),
    family="bf16",
)

# One row of each grouped FP8 table: the grouped machinery is shared, so a few shapes show the 16-bit cost.
BF16_CONTIGUOUS_GMS = ((4, 8192),)
BF16_MASKED_GMS = ((4, 256),)

BF16_GROUPED = grouped_suite(
    "bf16_grouped",
    "MoE grouped BF16 GEMMs, BF16 out: contiguous (G experts of M rows each stacked in one A [G*M, K])"
    f" and masked (A [G, max_m={MASKED_MAX_M}, K], the first M rows of each group valid); expert g"
    " times B[g] [N, K]",
    (
        *(Problem(m, n, k, g, "contiguous") for g, m in BF16_CONTIGUOUS_GMS for n, k in GROUPED_NKS),
        *(Problem(m, n, k, g, "masked", MASKED_MAX_M) for g, m in BF16_MASKED_GMS for n, k in GROUPED_NKS),
    ),
    (CUBLAS_BF16_LOOP, DEEPGEMM_BF16_GROUPED, DEEPGEMM_BF16_DENSE),
    cpu_problems=(Problem(100, 256, 384, 3, "contiguous"), Problem(48, 256, 384, 3, "masked", 128)),
    make_inputs=_bf16_grouped_inputs,
    bytes_moved=bf16_gemm_bytes,
    splits=tuple(Split(layout, lambda p, layout=layout: p.layout == layout) for layout in GROUPED_LAYOUTS),
    family="bf16",
)

MATMUL_MS = (128, 4096)
MATMUL_NKS = ((7168, 2048), (4096, 7168))

MATMUL_FP8 = Suite(
    name="matmul_fp8",
    description='deepgemm.matmul(a, b, precision="fp8") on BF16 CUDA tensors a [M, K], b [K, N] against'
    " the same by hand (per_token_cast_to_fp8(a), per_block_cast_to_fp8(b.T), fp8_gemm_nt), all kernels"
    " of a call timed; the bar: matmul's time <= 1.15x by hand",
    problems=tuple(Problem(m, n, k, major="nn") for m in MATMUL_MS for n, k in MATMUL_NKS),
    make_inputs=_matmul_inputs,
    providers=(FP8_BY_HAND, DEEPGEMM_MATMUL_FP8),
    bytes_moved=bf16_gemm_bytes,
    splits=(Split("M<=128", lambda p: p.m <= 128), Split("M>128", lambda p: p.m > 128)),
    cpu_problems=(Problem(64, 256, 384, major="nn"),),
)

# The decode suite: decode batch sizes on the tensor-parallel shards of public models' linear layers
# (bench/decode_shapes.py, sources in docs/decode-shapes.md), FP8 and 16-bit side by side on the same inputs.
# The splits hold the issue-27 bars: FP8 HBM use at M <= 32 on weights of 32 MB or more, and the
# few-tile shapes (the unsplit heuristic's tiles fewer than an H100's 132 SMs, K >= 4096) per family.
H100_SMS = 132
DECODE_MIN_WEIGHT_BYTES = 32 * 2**20
FEW_TILE_MIN_K = 4096


def few_tile(problem: Problem, family: str) -> bool:
    """Whether ``problem`` is a few-tile shape for ``family`` on an H100 (see above)."""
    shape = heuristics.GemmShape(problem.m, problem.n, problem.k, family=heuristics.FAMILIES[family])
    return problem.k >= FEW_TILE_MIN_K and heuristics.few_tiles(shape, H100_SMS)


DECODE = Suite(
    name="decode",
    description="decode-sized dense GEMMs D = A W^T on tensor-parallel shards of public models' linear layers"
    f" (Llama-3, Qwen2.5/3, Mixtral attention, DeepSeek-V3 non-MoE; TP 1-8), M in {DECODE_BATCH_SIZES}: FP8"
    " (1x128 / 128x128 scales) and 16-bit on the same inputs, BF16 out; HBM = GB/s over the GPU's peak",
    problems=tuple(Problem(m, n, k) for n, k in decode_weights() for m in DECODE_BATCH_SIZES),
    make_inputs=_dense_inputs,
    providers=(
        DEEPGEMM,
        CUBLAS_BLOCKWISE,
        dataclasses.replace(CUBLAS_BF16, bytes_moved=bf16_gemm_bytes),
        dataclasses.replace(DEEPGEMM_BF16_NT, bytes_moved=bf16_gemm_bytes),
    ),
    bytes_moved=fp8_gemm_bytes,
    splits=(
        Split("all", lambda p: True),
        Split("M<=32 W>=32MB", lambda p: p.m <= 32 and p.n * p.k >= DECODE_MIN_WEIGHT_BYTES),
        Split("few_tile fp8", lambda p: few_tile(p, "fp8_1d2d")),
        Split("few_tile 16-bit", lambda p: few_tile(p, "bf16")),
    ),
    pairs=(("deepgemm_bf16", "cublas_bf16"),),
    cpu_problems=(Problem(1, 256, 512), Problem(32, 128, 4096)),
    reports_hbm=True,
)

SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (DENSE, GROUPED_CONTIGUOUS, GROUPED_MASKED, GROUPED_DECODE, BF16, BF16_GROUPED, MATMUL_FP8,
                  DECODE)
}


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
