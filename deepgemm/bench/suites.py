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
from deepgemm.ops.common.launch import K_GROUPED
from deepgemm.quant import align, ceil_div
from deepgemm.testing import (
    GROUPED_LAYOUTS,
    MAJORS,
    make_bf16_inputs,
    make_dense_inputs,
    make_fp32_inputs,
    make_grouped_inputs,
    make_int8_inputs,
    make_sequence_inputs,
    make_weight_only_inputs,
    make_wgrad_inputs,
    random_gemm_sizes,
)

from .decode_shapes import DECODE_BATCH_SIZES, decode_weights
from .providers import (
    CUBLAS_BF16,
    CUBLAS_BF16_DEQUANTISED,
    CUBLAS_BF16_LAYOUT,
    CUBLAS_BF16_LOOP,
    CUBLAS_BLOCKWISE,
    CUBLAS_BLOCKWISE_1D1D,
    CUBLAS_BLOCKWISE_LOOP,
    CUBLAS_FP32,
    CUBLAS_PER_TENSOR,
    CUBLAS_TF32,
    DEEPGEMM,
    DEEPGEMM_3XTF32,
    DEEPGEMM_3XTF32_GEMM,
    DEEPGEMM_BF16,
    DEEPGEMM_BF16_DENSE,
    DEEPGEMM_BF16_GROUPED,
    DEEPGEMM_BF16_NT,
    DEEPGEMM_CONTIGUOUS,
    DEEPGEMM_CONTIGUOUS_OFFSETS,
    DEEPGEMM_DENSE,
    DEEPGEMM_FP8_MASKED_TWIN,
    DEEPGEMM_INT8,
    DEEPGEMM_K_GROUPED,
    DEEPGEMM_MASKED,
    DEEPGEMM_MATMUL_FP8,
    DEEPGEMM_MATMUL_FP16,
    DEEPGEMM_TF32,
    DEEPGEMM_WGRAD,
    DEEPGEMM_WGRAD_BF16,
    DEEPGEMM_WGRAD_DENSE,
    DEEPGEMM_WGRAD_LOOP,
    DEEPGEMM_WONLY,
    FP8_BY_HAND,
    TORCH_INT_MM,
    TORCH_INT_MM_SCALED,
    TORCH_MATMUL_FP16,
    Provider,
)
from .training import (
    CASTS,
    DEEPGEMM_CAST,
    DEEPGEMM_FP8_STEP,
    TORCH_BF16_STEP,
    TORCH_CAST,
    cast_bytes,
    make_cast_inputs,
    make_train_step_inputs,
    train_step_bytes,
    train_step_flops,
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
    the kernel config the problem records carry; ``out_bytes``: the element size of the output the suite's
    ``deepgemm`` provider writes, which that config is chosen for.
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
    out_bytes: int = 2
    # Each result also reports its GB/s as a fraction of the GPU's HBM bandwidth.
    reports_hbm: bool = False
    # The work a problem counts for TFLOPS, where it is not one GEMM's ``Problem.flops`` (0: no FLOPs).
    flops: Callable[[Problem], int] | None = None

    def problem_flops(self, problem: Problem) -> int:
        return problem.flops if self.flops is None else self.flops(problem)

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
    out_bytes: int = 2,
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
        out_bytes=out_bytes,
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

# FP8 training (deepgemm/bench/training.py): the fused casts, and one training step of an MLP block.
CAST_PROBLEMS = (
    *(Problem(m, k, k, layout="per_token")
      for m, k in ((4096, 7168), (4096, 18432), (4096, 2048), (128, 7168))),
    *(Problem(m, k, k, layout="per_block") for m, k in ((18432, 7168), (7168, 18432), (2112, 7168))),
    *(Problem(m, k, k, layout="per_token_transposed")
      for m, k in ((4096, 7168), (4096, 18432), (16384, 2048))),
)
CAST = Suite(
    name="cast",
    description="The FP8 casts of a BF16 [M, K] tensor (layout = the cast: per_token 1x128, per_block "
    "128x128, per_token_transposed: X^T [K, M] with 1x128 scales along M): deepgemm's fused kernel against "
    "the eager torch chain it replaces; equal results; GB/s counts BF16 read once, FP8 and scales written; "
    "no FLOPs",
    problems=CAST_PROBLEMS,
    make_inputs=make_cast_inputs,
    providers=(DEEPGEMM_CAST, TORCH_CAST),
    bytes_moved=cast_bytes,
    splits=tuple(Split(kind, lambda p, kind=kind: p.layout == kind) for kind in CASTS),
    cpu_problems=(Problem(200, 384, 384, layout="per_token"), Problem(200, 384, 384, layout="per_block"),
                  Problem(200, 384, 384, layout="per_token_transposed")),
    family="cast",
    flops=lambda problem: 0,
)
TRAIN_STEP = Suite(
    name="train_step",
    description="One training step (forward + backward for x and the weights) of a DeepSeek-V3 dense MLP "
    "block y = w2(silu(w1 x) * w3 x), dim K=7168 -> hidden N=18432 -> 7168, M=4096 tokens, BF16: "
    "deepgemm.fp8_linear layers (FP8 GEMMs, every cast included) against torch BF16 linear layers "
    "(cuBLAS); profiler time of every kernel of the step; TFLOPS count the step's nine GEMMs; "
    "the bar: >= 1.4x",
    problems=(Problem(4096, 18432, 7168),),
    make_inputs=make_train_step_inputs,
    providers=(DEEPGEMM_FP8_STEP, TORCH_BF16_STEP),
    bytes_moved=train_step_bytes,
    splits=(Split("all", lambda p: True),),
    cpu_problems=(Problem(64, 512, 256),),
    family="train_step",
    flops=train_step_flops,
)

# The weight-gradient (1D1D) suites: DeepGEMM's wgrad shapes, K the token count; and MoE experts'
# weight gradients, G groups of K_g = K +- 128 tokens (summing to G * K).
WGRAD_MNS = ((7168, 2112), (1536, 24576), (512, 32768), (16384, 7168), (7168, 4096), (2048, 7168))
WGRAD_KS = (4096, 8192)
WGRAD_K_GROUPED_GS = (4, 8)
WGRAD_K_GROUPED_MNS = ((7168, 4096), (2048, 7168))


def wgrad_gemm_bytes(problem: Problem) -> int:
    """FP8 operands, both operands' FP32 1x128 scales and an FP32 D written once (nominal, as
    ``fp8_gemm_bytes``)."""
    g, m, n, k = problem.num_groups, problem.m, problem.n, problem.k
    return g * (m + n) * (k + 4 * ceil_div(k, 128)) + 4 * g * m * n


def k_grouped_sizes(problem: Problem) -> tuple[int, ...]:
    """The groups' K: ``k`` + 128 and ``k`` - 128 in turn (``k`` for an odd group count's last one)."""
    deltas = [128 if group % 2 == 0 else -128 for group in range(problem.num_groups)]
    if problem.num_groups % 2:
        deltas[-1] = 0
    return tuple(problem.k + delta for delta in deltas)


def _wgrad_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    if problem.layout == K_GROUPED:
        return make_wgrad_inputs(problem.m, problem.n, k_grouped_sizes(problem), device, seed)
    return make_wgrad_inputs(problem.m, problem.n, problem.k, device, seed)


WGRAD = Suite(
    name="wgrad",
    description="weight-gradient FP8 GEMMs D[M, N] (+)= A[M, K] B[N, K]^T with 1x128 FP32 scales on both"
    " operands (K: tokens), DeepGEMM's wgrad shapes; deepgemm accumulates into FP32 d (c=d), deepgemm_bf16"
    " and cuBLAS write BF16",
    problems=tuple(Problem(m, n, k) for k in WGRAD_KS for m, n in WGRAD_MNS),
    make_inputs=_wgrad_inputs,
    providers=(DEEPGEMM_WGRAD, DEEPGEMM_WGRAD_BF16, CUBLAS_BLOCKWISE_1D1D),
    bytes_moved=wgrad_gemm_bytes,
    splits=tuple(Split(f"K={k}", lambda p, k=k: p.k == k) for k in WGRAD_KS),
    pairs=(("deepgemm_bf16", "cublas_blockwise"), ("deepgemm", "cublas_blockwise")),
    cpu_problems=(Problem(64, 256, 384), Problem(130, 200, 256)),
    family="fp8_1d1d",
    out_bytes=4,
)
WGRAD_K_GROUPED = grouped_suite(
    "wgrad_k_grouped",
    "MoE weight-gradient FP8 GEMMs, k-grouped: G experts with K_g = K +- 128 tokens each, A [M, sum K_g] and"
    " B [N, sum K_g] (1x128 FP32 scales on both), D[g] [M, N] += A_g B_g^T in FP32; against a loop of"
    " per-expert dense calls and the dense GEMM of the same total work",
    tuple(Problem(m, n, 4096, g, K_GROUPED) for g in WGRAD_K_GROUPED_GS for m, n in WGRAD_K_GROUPED_MNS),
    (DEEPGEMM_WGRAD_LOOP, DEEPGEMM_K_GROUPED, DEEPGEMM_WGRAD_DENSE),
    cpu_problems=(Problem(48, 256, 128, 3, K_GROUPED),),
    make_inputs=_wgrad_inputs,
    bytes_moved=wgrad_gemm_bytes,
    family="fp8_1d1d",
    out_bytes=4,
)
# The weight-only suites: BF16 activations times INT4 (``wonly``, symmetric, group-128 BF16 scales) or INT8
# (``wonly_w8``, per-channel scales) weights, against cuBLAS BF16 on the dequantised weight. Decode sizes on
# the DeepSeek-V3 shapes and on decode shapes with >= 32 MB of INT4 weights (Llama-3-70B-sized MLP and
# attention projections), prefill at M = 4096, and the MoE masked layout at 8 experts x 16-48 rows, where
# deepgemm's FP8 masked GEMM of the same problem runs too. GB/s counts the quantised problem's bytes.
WONLY_DECODE_MS = (1, 8, 16, 32, 64)
WONLY_BIG_NKS = ((8192, 8192), (28672, 8192), (8192, 28672))
WONLY_MASKED_MS = (16, 32, 48)
WONLY_MASKED_NKS = ((4096, 7168), (7168, 2048))
WONLY_EXPERTS = 8


def weight_only_bytes(bits: int, group_size: int | None) -> Callable[[Problem], int]:
    """The quantised weights (all experts), their BF16 scales, the BF16 activations and output."""

    def nbytes(problem: Problem) -> int:
        g, m, n, k = problem.num_groups, problem.m, problem.n, problem.k
        groups = 1 if group_size is None else ceil_div(k, group_size)
        return g * (n * k * bits // 8 + 2 * n * groups + 2 * m * k + 2 * m * n)

    return nbytes


def _weight_only_inputs(bits: int, group_size: int | None) -> Callable[[Problem, torch.device, int], object]:
    def make(problem: Problem, device: torch.device, seed: int) -> object:
        masked = problem.layout == "masked"
        return make_weight_only_inputs(
            problem.max_m if masked else problem.m, problem.n, problem.k, bits, device, seed,
            group_size=group_size, num_groups=problem.num_groups if masked else None,
            counts=(problem.m,) * problem.num_groups if masked else None)

    return make


# The weight scales' group size of each weight-only suite (None: per channel); precompile reads it too.
WONLY_GROUP_SIZES: dict[str, int | None] = {"wonly": 128, "wonly_w8": None}


def weight_only_suite(name: str, bits: int, label: str) -> Suite:
    """The `bits`-bit weight-only suite `name`, its weights quantised with the suite's group size
    (`WONLY_GROUP_SIZES`)."""
    group_size = WONLY_GROUP_SIZES[name]
    return Suite(
        name=name,
        description=f"{label} weight-only GEMMs D = A W^T, BF16 A and out, W packed by quantize_w{bits}a16;"
        " cuBLAS BF16 on the dequantised weight is the yardstick; decode (M <= 64) on the DeepSeek-V3 and"
        f" >= 32 MB-weight shapes, prefill (M = 4096), and MoE masked ({WONLY_EXPERTS} experts x M rows,"
        " beside deepgemm's FP8 masked GEMM); GB/s counts the quantised problem's bytes (H100 HBM: 3350)",
        problems=(
            *(Problem(m, n, k) for m in WONLY_DECODE_MS for n, k in DENSE_NKS + WONLY_BIG_NKS),
            *(Problem(4096, n, k) for n, k in DENSE_NKS),
            *(Problem(m, n, k, WONLY_EXPERTS, "masked", align(m, 64)) for m in WONLY_MASKED_MS
              for n, k in WONLY_MASKED_NKS),
        ),
        make_inputs=_weight_only_inputs(bits, group_size),
        providers=(CUBLAS_BF16_DEQUANTISED, DEEPGEMM_WONLY, DEEPGEMM_FP8_MASKED_TWIN),
        bytes_moved=weight_only_bytes(bits, group_size),
        splits=(
            Split("M<=64", lambda p: p.layout == "dense" and p.m <= 64),
            Split("M=4096", lambda p: p.m == 4096),
            Split(">=32MB weights M<=64",
                  lambda p: p.layout == "dense" and p.m <= 64 and p.n * p.k * bits >= 8 * 2**25),
            Split("masked", lambda p: p.layout == "masked"),
        ),
        faster=PROVIDER_FASTER,
        pairs=(("deepgemm", "deepgemm_fp8_masked"),),
        cpu_problems=(Problem(16, 200, 384), Problem(24, 256, 512, 3, "masked", 64)),
        family=f"w{bits}a16",
    )


WONLY = weight_only_suite("wonly", 4, "W4A16 (INT4, symmetric, group-128 scales)")
WONLY_W8 = weight_only_suite("wonly_w8", 8, "W8A16 (INT8, per-channel scales)")


# ---- TF32, FP32 and the seed's table ----------------------------------------------------------------


def fp32_gemm_bytes(problem: Problem) -> int:
    """FP32 operands and FP32 output of one problem (the nominal bytes, as ``fp8_gemm_bytes``)."""
    m, n, k = problem.m, problem.n, problem.k
    return 4 * (m * k + n * k + m * n)


def _fp32_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    return make_fp32_inputs(problem.m, problem.n, problem.k, problem.major, device, seed)


# The TF32 layouts other than NT run at prefill size: their twin ratios show what staging the
# MN-major operand K-major (a transposing copy inside the call) costs against NT on the same shape.
TF32_LAYOUT_M = 4096

TF32 = Suite(
    name="tf32",
    description="DeepSeek-V3 dense shapes as TF32 GEMMs D = A B on FP32 operands, FP32 out: NT (A [M, K],"
    f" B [N, K]) at M in {DENSE_MS}, and at M={TF32_LAYOUT_M} also NN, TN and TT (TF32 tensor cores read"
    " K-major operands only: deepgemm copies an MN-major one K-major inside the call); the bars: geomean"
    " >= 1.05x cuBLAS TF32 at M=4096 and >= 1.0x at M<=128, NT",
    problems=(
        *(Problem(m, n, k) for m in DENSE_MS for n, k in DENSE_NKS),
        *(Problem(TF32_LAYOUT_M, n, k, major=major) for major in MAJORS[1:] for n, k in DENSE_NKS),
    ),
    make_inputs=_fp32_inputs,
    providers=(DEEPGEMM_TF32, CUBLAS_TF32),
    bytes_moved=fp32_gemm_bytes,
    splits=(
        Split("NT M<=128", lambda p: p.major == "nt" and p.m <= 128),
        *(_major_split(major) for major in MAJORS),
    ),
    twin=nt_twin,
    cpu_problems=(Problem(64, 256, 384), Problem(192, 256, 384), Problem(192, 256, 384, major="tn")),
    family="tf32",
    out_bytes=4,
)

FP32 = Suite(
    name="fp32",
    description="DeepSeek-V3 dense shapes at M=4096 as FP32-accurate GEMMs D = A B^T on FP32 operands:"
    " deepgemm's 3xTF32 (split and three TF32 products, every kernel timed) against cuBLAS FP32 SIMT"
    " (allow_tf32=False) and, for scale, cuBLAS TF32, and the GEMM kernel alone on operands split once"
    " (the pair shows the split's share); the bar: geomean >= 2x cuBLAS FP32",
    problems=tuple(Problem(4096, n, k) for n, k in DENSE_NKS),
    make_inputs=_fp32_inputs,
    providers=(DEEPGEMM_3XTF32, CUBLAS_FP32, CUBLAS_TF32, DEEPGEMM_3XTF32_GEMM),
    bytes_moved=fp32_gemm_bytes,
    pairs=(("deepgemm_3xtf32_gemm", "deepgemm_3xtf32"),),
    splits=(Split("M=4096", lambda p: True),),
    cpu_problems=(Problem(64, 256, 384),),
    family="tf32x3",
    out_bytes=4,
)


@dataclass(frozen=True)
class SequenceProblem(Problem):
    """A sequence of ``num_groups`` GEMMs of random sizes, each of M, N and K drawn uniformly from the
    multiples of ``multiple`` in ``[low, high]`` with ``size_seed`` (``random_gemm_sizes``): one
    measured call runs all of them."""

    layout: str = "sequence"
    low: int = 64
    high: int = 4096
    size_seed: int = 0
    multiple: int = 1

    @property
    def sizes(self) -> list[tuple[int, int, int]]:
        return random_gemm_sizes(self.num_groups, self.low, self.high, self.size_seed, self.multiple)

    @property
    def flops(self) -> int:
        return sum(2 * m * n * k for m, n, k in self.sizes)


def _seed_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    if isinstance(problem, SequenceProblem):
        return make_sequence_inputs(problem.sizes, torch.float16, device, seed)
    return make_bf16_inputs(problem.m, problem.n, problem.k, problem.major, device, seed, dtype=torch.float16)


def _seed_bytes(problem: Problem) -> int:
    sizes = problem.sizes if isinstance(problem, SequenceProblem) else [(problem.m, problem.n, problem.k)]
    return sum(2 * (m * k + k * n + m * n) for m, n, k in sizes)


SEED_SIZE = 1024
DYNAMIC_CALLS = 200

SEED = Suite(
    name="seed",
    description=f'The founding table through deepgemm.matmul(a, b, dtype="float16"), FP16 out, against'
    f" torch.matmul (cuBLAS): one {SEED_SIZE}x{SEED_SIZE}x{SEED_SIZE} GEMM (bar >= 1.18x), and 'dynamic"
    f" sizes', a sequence of {DYNAMIC_CALLS} calls with M, N, K each uniform in [64, 4096] (once any"
    " integers, once multiples of 8, which the kernels read and write in place), total kernel time of"
    " the sequence on a warm JIT cache (bar >= 1.12x); the first pass of each sequence runs on a fresh"
    " JIT cache, its compiles and seconds in the matmul result's 'extra'",
    problems=(Problem(SEED_SIZE, SEED_SIZE, SEED_SIZE, major="nn"),
              SequenceProblem(0, 0, 0, num_groups=DYNAMIC_CALLS, major="nn"),
              SequenceProblem(0, 0, 0, num_groups=DYNAMIC_CALLS, major="nn", multiple=8)),
    make_inputs=_seed_inputs,
    providers=(DEEPGEMM_MATMUL_FP16, TORCH_MATMUL_FP16),
    bytes_moved=_seed_bytes,
    splits=(Split(f"{SEED_SIZE}^3", lambda p: p.layout == "dense"),
            Split("dynamic, any sizes", lambda p: getattr(p, "multiple", 0) == 1),
            Split("dynamic, multiples of 8", lambda p: getattr(p, "multiple", 0) == 8)),
    cpu_problems=(Problem(64, 96, 128, major="nn"),
                  SequenceProblem(0, 0, 0, num_groups=3, major="nn", low=8, high=40)),
    family="bf16",
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
                  WGRAD, WGRAD_K_GROUPED, WONLY, WONLY_W8, CAST, TRAIN_STEP, TF32, FP32, SEED, DECODE)
}


def int8_gemm_bytes(problem: Problem) -> int:
    """INT8 operands, FP32 per-token and per-channel scales and the BF16 output of one problem (the
    nominal bytes, as ``fp8_gemm_bytes``)."""
    m, n, k = problem.m, problem.n, problem.k
    return m * k + n * k + 4 * (m + n) + 2 * m * n


def _int8_inputs(problem: Problem, device: torch.device, seed: int) -> object:
    return make_int8_inputs(problem.m, problem.n, problem.k, device, seed)


INT8_M = 4096

INT8 = Suite(
    name="int8",
    description=f"INT8 W8A8 GEMMs D = A B^T at M={INT8_M} on the DeepSeek-V3 N x K shapes (7168 x 16384"
    " included): per-token / per-channel FP32 scales, BF16 out; deepgemm against torch._int_mm followed by"
    " the torch scaling ops (bar: 1.25x) and against torch._int_mm alone (bar: 1.0x)",
    problems=tuple(Problem(INT8_M, n, k) for n, k in DENSE_NKS),
    make_inputs=_int8_inputs,
    providers=(DEEPGEMM_INT8, TORCH_INT_MM_SCALED, TORCH_INT_MM),
    bytes_moved=int8_gemm_bytes,
    splits=(Split(f"M={INT8_M}", lambda p: True),),
    cpu_problems=(Problem(64, 256, 512), Problem(129, 384, 1024)),
    family="int8",
)

SUITES[INT8.name] = INT8


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
