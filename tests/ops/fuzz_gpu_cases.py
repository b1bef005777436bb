"""The case generators of the GPU fuzz test (``test_fuzz_gpu.py``): valid random calls of every kernel
family and kind on a Hopper GPU, checked against float64 math on the (dequantised) inputs.

``make_case(number)`` draws one call from its number alone (``fuzz_cases.Draw``), so a failing case
reproduces by itself: ``make_case(number).run()``. Its random choices are M (rows, group sizes, masked
rows, expected_m), the output dtype, operand dtypes and storage layouts, strided views, the scale layout
and C; N and K come from a short fixed list per family, so the kernels the cases need stay few (each
distinct (N, K, config) is a compile). ``Case.requests`` names them ahead of the run, so the test builds
them all at once in parallel (``deepgemm.precompile``). A new family adds its generator to ``GENERATORS``.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import deepgemm
from deepgemm.ops.common.launch import KernelRequest

from .fuzz_cases import ALIGN, BF16, SENTINEL, Draw, assert_close, assert_untouched, kb

FP32 = torch.float32
# (N, K) per family: one aligned pair and one with N and K tails.
FP8_NK = ((256, 512), (136, 272))
BF16_NK = ((256, 320), (136, 200))
MAX_M = 300
# Where the cases run; a CPU test runs them on the CPU path to check the generators themselves.
DEVICE = "cuda"


@dataclass
class Case:
    number: int
    op: str
    note: str
    requests: list[KernelRequest]
    run_case: Callable[[], None] = field(repr=False)

    def run(self) -> None:
        try:
            self.run_case()
        except AssertionError as error:
            raise AssertionError(f"GPU fuzz case {self.number} ({self.op}: {self.note}): {error}") from None


def cuda(x: torch.Tensor) -> torch.Tensor:
    return x.to(DEVICE)


def strided(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``x`` (on the GPU) copied into a view of a wider buffer: each row ``pad`` elements longer."""
    buf = torch.full((*x.shape[:-1], x.shape[-1] + pad), 3.0, device=x.device).to(x.dtype)
    view = buf[..., : x.shape[-1]]
    view.copy_(x)
    return view


def output(draw: Draw, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A sentinel-filled output on the GPU, half the time a view with padded rows."""
    d = torch.full(shape, SENTINEL, device=DEVICE).to(dtype)
    if draw.rng.random() < 0.5:
        return strided(d, (16 // dtype.itemsize) * draw.rng.randint(1, 3))
    return d


def dequant_a(A: torch.Tensor, sfa: torch.Tensor) -> torch.Tensor:
    return A.double() * sfa.double().repeat_interleave(ALIGN, dim=-1)[..., : A.shape[-1]]


def dequant_b(B: torch.Tensor, sfb: torch.Tensor) -> torch.Tensor:
    n, k = B.shape[-2:]
    s = sfb.double().repeat_interleave(ALIGN, dim=-2)[..., :n, :]
    s = s.repeat_interleave(ALIGN, dim=-1)[..., :k]
    return B.double() * s


def fp8_a(draw: Draw, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FP8 A and its 1x128 scales on the GPU; A sometimes with padded rows, sfa row-major, MN-major
    (the layout the kernel reads) or column-major."""
    A, sfa = cuda(draw.fp8(*shape)), cuda(draw.scales(*shape[:-1], kb(shape[-1])))
    if draw.rng.random() < 0.3:
        A = strided(A, 16 * draw.rng.randint(1, 2))
    layout = draw.choice(("row", "mn", "column"))
    if layout == "mn":
        sfa = deepgemm.get_mn_major_tma_aligned_tensor(sfa)
    elif layout == "column":
        sfa = sfa.transpose(-2, -1).contiguous().transpose(-2, -1)
    return A, sfa


def fp8_b(draw: Draw, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, k = shape[-2:]
    B, sfb = cuda(draw.fp8(*shape)), cuda(draw.scales(*shape[:-2], kb(n), kb(k)))
    if len(shape) == 2 and draw.rng.random() < 0.3:
        B = strided(B, 16)
    return B, sfb


# ---- FP8 ----------------------------------------------------------------------------------------------


def fp8_dense(draw: Draw) -> tuple[str, list[KernelRequest], Callable[[], None]]:
    m, (n, k) = draw.rng.randint(1, MAX_M), draw.choice(FP8_NK)
    d_dtype = draw.choice((BF16, FP32))

    def run() -> None:
        a, b = fp8_a(draw, m, k), fp8_b(draw, n, k)
        d = output(draw, (m, n), d_dtype)
        assert deepgemm.fp8_gemm_nt(a, b, d) is d
        assert_close(d, dequant_a(*a) @ dequant_b(*b).T)

    return f"m={m} n={n} k={k} d={d_dtype}", [KernelRequest("fp8_1d2d", m, n, k, out_dtype=d_dtype)], run


def group_counts(draw: Draw) -> list[int]:
    rng = draw.rng
    return [draw.choice((0, 1, 127, 128, 129, rng.randint(1, 200), rng.randint(1, 200)))
            for _ in range(rng.randint(1, 4))]


def contiguous_rows(counts: list[int]) -> tuple[list[int], int]:
    """Each group's first row (aligned to 128) and M_sum (the last group padded too)."""
    starts, end = [], 0
    for count in counts:
        starts.append(-(-end // ALIGN) * ALIGN)
        end = starts[-1] + count
    return starts, max(ALIGN, -(-end // ALIGN) * ALIGN)


def contiguous(draw: Draw, fp8: bool, offsets: bool) -> tuple[str, list[KernelRequest], Callable[[], None]]:
    counts = group_counts(draw)
    n, k = draw.choice(FP8_NK if fp8 else BF16_NK)
    d_dtype = draw.choice((BF16, FP32))
    in_dtype = BF16 if fp8 else draw.choice((BF16, torch.float16))
    starts, m_sum = contiguous_rows(counts)
    family = "fp8_1d2d" if fp8 else "bf16"
    request = KernelRequest(family, m_sum, n, k, "contiguous", len(counts), d_dtype, in_dtype=in_dtype)

    def run() -> None:
        g = len(counts)
        m_indices = torch.full((m_sum,), -1, dtype=torch.int32)
        for group, (start, count) in enumerate(zip(starts, counts, strict=True)):
            m_indices[start : start + count] = group
        if fp8:
            a, b = fp8_a(draw, m_sum, k), fp8_b(draw, g, n, k)
            reference = dequant_a(*a), dequant_b(*b)
        else:
            a, b = cuda(draw.randn(m_sum, k, dtype=in_dtype)), cuda(draw.randn(g, n, k, dtype=in_dtype))
            reference = a.double(), b.double()
        d = output(draw, (m_sum, n), d_dtype)
        before = d.clone()
        if offsets:
            index = torch.tensor([s + c for s, c in zip(starts, counts, strict=True)], dtype=torch.int32)
            op = deepgemm.m_grouped_fp8_gemm_nt_contiguous_offsets
        else:
            index = m_indices
            op = deepgemm.m_grouped_fp8_gemm_nt_contiguous if fp8 else \
                deepgemm.m_grouped_bf16_gemm_nt_contiguous
        assert op(a, b, d, cuda(index)) is d
        valid = cuda(m_indices >= 0)
        expected = torch.zeros(m_sum, n, dtype=torch.float64, device=DEVICE)
        for group, (start, count) in enumerate(zip(starts, counts, strict=True)):
            expected[start : start + count] = reference[0][start : start + count] @ reference[1][group].T
        assert_close(d[valid], expected[valid])
        assert_untouched(d[~valid], before[~valid], "padding rows")

    note = f"counts={counts} m_sum={m_sum} n={n} k={k} a/b={in_dtype} d={d_dtype}"
    return note, [request], run


def masked(draw: Draw, fp8: bool) -> tuple[str, list[KernelRequest], Callable[[], None]]:
    rng = draw.rng
    max_m = draw.choice((64, 128, 200, 256))
    rows = [draw.choice((0, max_m, rng.randint(0, max_m), rng.randint(0, max_m)))
            for _ in range(rng.randint(1, 4))]
    expected_m = rng.randint(1, max_m)
    n, k = draw.choice(FP8_NK if fp8 else BF16_NK)
    d_dtype = draw.choice((BF16, FP32))
    in_dtype = BF16 if fp8 else draw.choice((BF16, torch.float16))
    family = "fp8_1d2d" if fp8 else "bf16"
    request = KernelRequest(family, expected_m, n, k, "masked", len(rows), d_dtype, in_dtype=in_dtype)

    def run() -> None:
        g = len(rows)
        if fp8:
            a, b = fp8_a(draw, g, max_m, k), fp8_b(draw, g, n, k)
            expected = dequant_a(*a) @ dequant_b(*b).transpose(1, 2)
            op = deepgemm.m_grouped_fp8_gemm_nt_masked
        else:
            a, b = cuda(draw.randn(g, max_m, k, dtype=in_dtype)), cuda(draw.randn(g, n, k, dtype=in_dtype))
            expected = a.double() @ b.double().transpose(1, 2)
            op = deepgemm.m_grouped_bf16_gemm_nt_masked
        d = output(draw, (g, max_m, n), d_dtype)
        before = d.clone()
        masked_m = torch.tensor(rows, dtype=torch.int32)
        assert op(a, b, d, cuda(masked_m), expected_m) is d
        valid = cuda(torch.arange(max_m)[None, :] < masked_m[:, None])
        assert_close(d[valid], expected[valid])
        assert_untouched(d[~valid], before[~valid], "rows past masked_m")

    note = f"masked_m={rows} max_m={max_m} expected_m={expected_m} n={n} k={k} a/b={in_dtype} d={d_dtype}"
    return note, [request], run


# ---- 16-bit dense -----------------------------------------------------------------------------------


def bf16_dense(draw: Draw) -> tuple[str, list[KernelRequest], Callable[[], None]]:
    rng = draw.rng
    layout = draw.choice(("nt", "nn", "tn", "tt"))
    in_dtype = draw.choice((BF16, torch.float16))
    d_dtype = draw.choice((in_dtype, FP32))
    # One (N, K) per layout (NT and TN aligned, NN and TT with tails): the layouts, dtypes and C already
    # make 32 kernels.
    n, k = BF16_NK[("nt", "nn", "tn", "tt").index(layout) % 2]
    # A stored [K, M] (t) needs M a multiple of 8 (16-byte rows).
    m = rng.randint(1, MAX_M) if layout[0] == "n" else 8 * rng.randint(1, MAX_M // 8)
    with_c = draw.choice(("none", "separate", "d"))
    request = KernelRequest("bf16", m, n, k, major=layout, out_dtype=d_dtype, in_dtype=in_dtype,
                            has_c=with_c != "none")

    def run() -> None:
        a = cuda(draw.randn(*((m, k) if layout[0] == "n" else (k, m)), dtype=in_dtype))
        b = cuda(draw.randn(*((n, k) if layout[1] == "t" else (k, n)), dtype=in_dtype))
        if rng.random() < 0.3:
            a = strided(a, 8 * rng.randint(1, 2))
        if rng.random() < 0.3:
            b = strided(b, 8)
        d = output(draw, (m, n), d_dtype)
        c = None
        if with_c == "separate":
            c = cuda(draw.randn(m, n, dtype=d_dtype))
        elif with_c == "d":
            d.copy_(cuda(draw.randn(m, n, dtype=d_dtype)))
            c = d
        expected = (a.double() if layout[0] == "n" else a.double().T) @ (
            b.double().T if layout[1] == "t" else b.double())
        if c is not None:
            expected += c.double()
        assert getattr(deepgemm, f"bf16_gemm_{layout}")(a, b, d, c) is d
        assert_close(d, expected)

    return f"{layout} m={m} n={n} k={k} a/b={in_dtype} d={d_dtype} c={with_c}", [request], run


# Each op's generator and its share of the cases; a new family adds its lines here.
GENERATORS: dict[str, tuple[Callable[[Draw], tuple], int]] = {
    "fp8_gemm_nt": (fp8_dense, 5),
    "m_grouped_fp8_gemm_nt_contiguous": (lambda draw: contiguous(draw, fp8=True, offsets=False), 2),
    "m_grouped_fp8_gemm_nt_contiguous_offsets": (lambda draw: contiguous(draw, fp8=True, offsets=True), 2),
    "m_grouped_fp8_gemm_nt_masked": (lambda draw: masked(draw, fp8=True), 3),
    "bf16_gemm": (bf16_dense, 5),
    "m_grouped_bf16_gemm_nt_contiguous": (lambda draw: contiguous(draw, fp8=False, offsets=False), 2),
    "m_grouped_bf16_gemm_nt_masked": (lambda draw: masked(draw, fp8=False), 2),
}
SCHEDULE = tuple(op for op, (_, share) in GENERATORS.items() for _ in range(share))
OPS = tuple(GENERATORS)


def make_case(number: int) -> Case:
    """Case ``number``: its op is ``SCHEDULE[number % len(SCHEDULE)]``, everything else drawn from it.
    Drawing the shapes touches no GPU; the tensors are made when the case runs."""
    draw = Draw(number)
    op = SCHEDULE[number % len(SCHEDULE)]
    note, requests, run = GENERATORS[op][0](draw)
    return Case(number, op, note, requests, run)
