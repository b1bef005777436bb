"""The case generators of the CPU fuzz test (``test_fuzz_cpu.py``): one per public op.

``make_case(number)`` builds one call from its number alone (``random.Random(number)`` for the choices,
``torch.Generator().manual_seed(number)`` for the data), so a failing case reproduces by itself:
``make_case(number).run()``. Each case is ``valid`` (small random shapes), ``edge`` (zero, one, odd
and unaligned sizes, strided and transposed views) or ``invalid`` (wrong type, dtype, rank, shape,
stride, alignment or index value); a valid or edge case checks the result against float64 math on
the dequantised inputs and that the rows the contract leaves alone keep their sentinel, an invalid
one that the op raises ``TypeError``/``ValueError`` with a message naming the argument.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import deepgemm
from deepgemm.quant import per_block_cast_to_fp8, per_token_cast_to_fp8
from deepgemm.testing import calc_diff, tf32_as_read

FP8 = torch.float8_e4m3fn
BF16 = torch.bfloat16
ALIGN = 128
# Written into outputs before a call: rows the contract leaves untouched must still hold it.
SENTINEL = -1234.0
# The thresholds of the ops' own CPU tests (test_fp8_gemm_cpu.py, test_matmul_cpu.py): FP8 against the
# dequantised product, 16-bit against the product of the 16-bit inputs, both in float64.
TOLERANCE = 1e-5


@dataclass
class Case:
    number: int
    op: str
    category: str  # "valid", "edge" or "invalid"
    call: Callable[[], object]
    # valid/edge: checks the result; invalid: the error types and a word the message must contain.
    check: Callable[[object], None] | None = None
    error: tuple[type[Exception], str] | None = None
    note: str = ""

    def run(self) -> None:
        where = f"fuzz case {self.number} ({self.op}, {self.category}: {self.note})"
        if self.error is not None:
            kind, word = self.error
            try:
                self.call()
            except (TypeError, ValueError) as error:
                assert isinstance(error, kind), f"{where}: expected {kind.__name__}, got {error!r}"
                assert word in str(error), f"{where}: message does not name {word!r}: {error}"
                return
            raise AssertionError(f"{where}: expected {kind.__name__} naming {word!r}, nothing raised")
        result = self.call()
        try:
            self.check(result)
        except AssertionError as error:
            raise AssertionError(f"{where}: {error}") from None


# ---- data and references -----------------------------------------------------------------------------


class Draw:
    """The random choices (``rng``) and tensors (``gen``) of one case."""

    def __init__(self, number: int) -> None:
        self.rng = random.Random(number)
        self.gen = torch.Generator().manual_seed(number)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen).to(dtype)

    def fp8(self, *shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=self.gen) * 100).clamp(-448, 448).to(FP8)

    def scales(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen) * 2 + 0.01

    def choice(self, values):
        return self.rng.choice(values)

    def strided(self, x: torch.Tensor, pad: int) -> torch.Tensor:
        """``x`` copied into a view of a wider buffer: each row ``pad`` elements longer."""
        buf = torch.full((*x.shape[:-1], x.shape[-1] + pad), 3.0).to(x.dtype)
        view = buf[..., : x.shape[-1]]
        view.copy_(x)
        return view


def kb(k: int) -> int:
    return -(-k // ALIGN)


def dequant_a(A: torch.Tensor, sfa: torch.Tensor) -> torch.Tensor:
    k = A.shape[-1]
    return A.double() * sfa.double().repeat_interleave(ALIGN, dim=-1)[..., :k]


def dequant_b(B: torch.Tensor, sfb: torch.Tensor) -> torch.Tensor:
    n, k = B.shape[-2:]
    s = sfb.double().repeat_interleave(ALIGN, dim=-2)[..., :n, :].repeat_interleave(ALIGN, dim=-1)[..., :k]
    return B.double() * s


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str = "d") -> None:
    assert actual.shape == expected.shape, f"{what} shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if actual.numel() == 0:
        return
    assert torch.isfinite(actual.double()).all(), f"{what} holds non-finite values"
    if not expected.any():
        assert not actual.any(), f"{what} should be all zeros"
        return
    diff = calc_diff(actual, expected)
    assert diff < TOLERANCE, f"{what}: calc_diff {diff:.3g} >= {TOLERANCE}"


def assert_untouched(actual: torch.Tensor, before: torch.Tensor, what: str) -> None:
    assert torch.equal(actual, before), f"{what} were written (the contract leaves them untouched)"


def out_tensor(
    draw: Draw, shape: tuple[int, ...], dtype: torch.dtype, per_16: int, strided: bool
) -> torch.Tensor:
    d = torch.full(shape, SENTINEL, dtype=dtype)
    if strided and shape[-1] > 0:
        return draw.strided(d, per_16 * draw.rng.randint(1, 3))
    return d


def returned(result: object, d: torch.Tensor) -> None:
    assert result is d, "the op must return d itself"


# ---- invalid-input mutations shared by the FP8 ops ------------------------------------------------


def numpy_of(x: torch.Tensor) -> np.ndarray:
    return x.float().numpy()


def misaligned_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a view whose row stride is one element past the 16-byte rule."""
    buf = torch.zeros(*x.shape[:-1], x.shape[-1] + 1, dtype=x.dtype)
    return buf[..., : x.shape[-1]]


def misaligned_start(x: torch.Tensor) -> torch.Tensor:
    """A tensor like ``x`` (contiguous) starting 1 element past a 16-byte boundary."""
    flat = torch.zeros(x.numel() + 16, dtype=x.dtype)
    return flat[1 : 1 + x.numel()].view(x.shape)


def column_major(x: torch.Tensor) -> torch.Tensor:
    """``x``'s values with the last two dims' strides swapped (rows not contiguous)."""
    return x.transpose(-2, -1).contiguous().transpose(-2, -1)


def fp8_operand_mutations(args: dict) -> list[tuple[Callable[[], None], type, str]]:
    """Mutations of ``args`` (keys A, sfa, B, sfb, d, plus the op's own) that the FP8 ops must refuse.

    Each entry is ``(mutate, error type, word the message names)``; mutate edits ``args`` in place.
    """
    A, B, d = args["A"], args["B"], args["d"]
    k = A.shape[-1]

    def set_(key, value):
        return lambda: args.__setitem__(key, value)

    muts = [
        (set_("A", A.to(BF16)), TypeError, "A (a[0])"),
        (set_("A", numpy_of(A)), TypeError, "A (a[0])"),
        (set_("sfa", args["sfa"].double()), TypeError, "sfa (a[1])"),
        (set_("sfa", args["sfa"].tolist()), TypeError, "sfa (a[1])"),
        (set_("B", B.to(torch.float8_e5m2)), TypeError, "B (b[0])"),
        (set_("sfb", None), TypeError, "sfb (b[1])"),
        (set_("d", d.to(torch.float16)), TypeError, "d"),
        (set_("d", None), TypeError, "d"),
        (set_("a", None), TypeError, "a"),
        (set_("a", [A, args["sfa"], A]), TypeError, "a"),
        (set_("b", "B"), TypeError, "b"),
        (set_("A", A.unsqueeze(0)), ValueError, "A (a[0])"),
        (
            set_("sfa", args["sfa"][..., :0])
            if kb(k)
            else set_("sfa", torch.ones(*args["sfa"].shape[:-1], 1)),
            ValueError,
            "sfa (a[1])",
        ),
        (
            set_("d", d[..., :-1] if d.shape[-1] else torch.zeros(*d.shape[:-1], 8, dtype=d.dtype)),
            ValueError,
            "d",
        ),
        (
            set_("B", torch.zeros(*B.shape[:-1], k + 16, dtype=FP8)),
            ValueError,
            "sfb (b[1])" if kb(k + 16) != kb(k) else "B (b[0])",
        ),
    ]
    if A.numel():
        muts += [
            (set_("A", misaligned_rows(A)), ValueError, "A (a[0])"),
            (set_("A", misaligned_start(A)), ValueError, "A (a[0])"),
        ]
        if A.shape[-1] > 1 and A.shape[-2] > 1:
            muts.append((set_("A", column_major(A)), ValueError, "A (a[0])"))
    if d.numel():
        muts.append((set_("d", misaligned_start(d)), ValueError, "d"))
    if args["sfb"].shape[-1] > 1 and args["sfb"].shape[-2] > 1:
        muts.append((set_("sfb", column_major(args["sfb"])), ValueError, "sfb (b[1])"))
    return muts


def pack(args: dict) -> tuple:
    a = args["a"] if "a" in args else (args["A"], args["sfa"])
    b = args["b"] if "b" in args else (args["B"], args["sfb"])
    return a, b, args["d"]


# ---- fp8_gemm_nt ---------------------------------------------------------------------------------------


def fp8_dense(draw: Draw, category: str) -> Case:
    rng = draw.rng
    d_dtype = draw.choice((BF16, torch.float32))
    per_16 = 16 // d_dtype.itemsize
    if category == "edge":
        m = draw.choice((0, 1, 1, 7, 63, 65, 129))
        n = draw.choice((0, per_16, 8 * rng.randint(1, 3) + 128 * rng.randint(0, 1), 136))
        k = draw.choice((0, 16, 144, 272, 16 * rng.randint(1, 10)))
    else:
        m, n, k = rng.randint(1, 40), 8 * rng.randint(1, 6), 16 * rng.randint(1, 12)
    A, sfa, B, sfb = draw.fp8(m, k), draw.scales(m, kb(k)), draw.fp8(n, k), draw.scales(kb(n), kb(k))
    note = f"m={m} n={n} k={k} d={d_dtype}"
    strided = category == "edge" and rng.random() < 0.5
    if strided:
        A, B = draw.strided(A, 16 * rng.randint(1, 2)), draw.strided(B, 16)
        if rng.random() < 0.5:
            sfa = column_major(sfa)
        note += " strided"
    d = out_tensor(draw, (m, n), d_dtype, per_16, strided)
    args = {"A": A, "sfa": sfa, "B": B, "sfb": sfb, "d": d}

    if category == "invalid":
        muts = fp8_operand_mutations(args)
        if k:
            muts.append((lambda: _fp8_resize_k(draw, args, k + 8), ValueError, "K"))
        muts.append((lambda: _fp8_resize_n(draw, args, n + per_16 // 2), ValueError, "N"))
        index = rng.randrange(len(muts))
        mutate, kind, word = muts[index]
        mutate()
        return Case(
            0,
            "fp8_gemm_nt",
            category,
            lambda: deepgemm.fp8_gemm_nt(*pack(args)),
            error=(kind, word),
            note=f"{note} mutation {index}",
        )

    if rng.random() < 0.2:
        args["a"] = [A, sfa]  # a list is as good as a tuple

    def check(result):
        returned(result, d)
        assert_close(d, dequant_a(A, sfa) @ dequant_b(B, sfb).T)

    return Case(0, "fp8_gemm_nt", category, lambda: deepgemm.fp8_gemm_nt(*pack(args)), check, note=note)


def _fp8_resize_k(draw: Draw, args: dict, k: int) -> None:
    m, n = args["A"].shape[0], args["B"].shape[0]
    args.update(A=draw.fp8(m, k), sfa=draw.scales(m, kb(k)), B=draw.fp8(n, k), sfb=draw.scales(kb(n), kb(k)))


def _fp8_resize_n(draw: Draw, args: dict, n: int) -> None:
    k, m = args["A"].shape[-1], args["A"].shape[-2]
    args.update(B=draw.fp8(n, k), sfb=draw.scales(kb(n), kb(k)), d=torch.zeros(m, n, dtype=args["d"].dtype))


# ---- the grouped FP8 ops ----------------------------------------------------------------------------


def group_counts(draw: Draw, category: str) -> list[int]:
    rng = draw.rng
    if category == "edge":
        num_groups = draw.choice((0, 1, 1, 2, 4))
        return [draw.choice((0, 1, 127, 128, 129, rng.randint(0, 40))) for _ in range(num_groups)]
    return [rng.randint(0, 40) for _ in range(rng.randint(1, 3))]


def contiguous_layout(draw: Draw, counts: list[int]) -> tuple[torch.Tensor, list[int], int]:
    """``m_indices``, each group's first row (aligned to 128) and ``M_sum`` for ``counts``; the last
    group is sometimes left unpadded (``M_sum`` not a multiple of 128)."""
    starts, end = [], 0
    for count in counts:
        starts.append(-(-end // ALIGN) * ALIGN)
        end = starts[-1] + count
    m_sum = end if draw.rng.random() < 0.3 else -(-end // ALIGN) * ALIGN
    m_indices = torch.full((m_sum,), -1, dtype=torch.int32)
    for group, (start, count) in enumerate(zip(starts, counts, strict=True)):
        m_indices[start : start + count] = group
    return m_indices, starts, m_sum


def grouped_sizes(draw: Draw, category: str, per_16: int, fp8: bool) -> tuple[int, int]:
    rng = draw.rng
    k_unit = 16 if fp8 else 8
    if category == "edge":
        return draw.choice((0, per_16, 136)), draw.choice((0, k_unit, 144, k_unit * rng.randint(1, 9)))
    return 8 * rng.randint(1, 4), k_unit * rng.randint(1, 8)


def bad_contiguous_indices(draw: Draw, num_groups: int) -> tuple[torch.Tensor, str]:
    """An ``m_indices`` that breaks the layout, for ``num_groups >= 1`` experts."""
    rng = draw.rng
    kind = rng.randrange(3)
    if kind == 0:  # an expert id out of range
        m_indices, _, m_sum = contiguous_layout(draw, [rng.randint(1, 20) for _ in range(num_groups)])
        row = rng.randrange(m_sum)
        m_indices[row] = draw.choice((num_groups, num_groups + 7, -2))
        return m_indices, f"expert out of range at row {row}"
    if kind == 1 or num_groups < 2:  # expert rows after padding rows in one aligned block
        pad, count = rng.randint(1, 60), rng.randint(1, 60)
        return torch.tensor([-1] * pad + [0] * count, dtype=torch.int32), f"{pad} padding rows first"
    first, second = rng.randint(1, 127), rng.randint(1, 40)  # the second expert starts unaligned
    return torch.tensor([0] * first + [1] * second, dtype=torch.int32), f"second expert starts at {first}"


def bad_group_ends(draw: Draw, num_groups: int, m_sum: int) -> tuple[list[int], str]:
    rng = draw.rng
    kind = rng.randrange(3) if num_groups >= 2 else 2
    if kind == 0:  # the second expert starts unaligned
        first = rng.randint(1, 126)
        ends = [first, first + rng.randint(1, 127 - first)] + [m_sum] * (num_groups - 2)
        return ends, "unaligned start"
    if kind == 1:  # decreasing
        return [m_sum] * (num_groups - 1) + [rng.randint(0, max(0, m_sum - 1))], "decreasing"
    return [m_sum] * (num_groups - 1) + [m_sum + rng.randint(1, 200)], "past M_sum"


def fp8_grouped_contiguous(draw: Draw, category: str, offsets: bool) -> Case:
    rng = draw.rng
    op = "m_grouped_fp8_gemm_nt_contiguous" + ("_offsets" if offsets else "")
    d_dtype = draw.choice((BF16, torch.float32))
    per_16 = 16 // d_dtype.itemsize
    counts = group_counts(draw, category)
    if category == "invalid":
        counts = [rng.randint(1, 40)] + counts[1:]
    num_groups = len(counts)
    n, k = grouped_sizes(draw, category, per_16, fp8=True)
    if category == "invalid":
        n, k = max(n, 8), max(k, 16)
    m_indices, starts, m_sum = contiguous_layout(draw, counts)
    group_ends = torch.tensor([s + c for s, c in zip(starts, counts, strict=True)], dtype=torch.int32)
    A, sfa = draw.fp8(m_sum, k), draw.scales(m_sum, kb(k))
    B, sfb = draw.fp8(num_groups, n, k), draw.scales(num_groups, kb(n), kb(k))
    note = f"counts={counts} m_sum={m_sum} n={n} k={k} d={d_dtype}"
    strided = category == "edge" and rng.random() < 0.5
    if strided:
        A, B = draw.strided(A, 16), draw.strided(B, 16 * rng.randint(1, 2))
        sfa = column_major(sfa) if rng.random() < 0.5 else sfa
        note += " strided"
    d = out_tensor(draw, (m_sum, n), d_dtype, per_16, strided)
    index_name = "group_ends" if offsets else "m_indices"
    args = {"A": A, "sfa": sfa, "B": B, "sfb": sfb, "d": d, index_name: group_ends if offsets else m_indices}

    def call():
        return getattr(deepgemm, op)(*pack(args), args[index_name])

    if category == "invalid":
        muts = fp8_operand_mutations(args)
        index = args[index_name]
        muts += [
            (lambda: args.__setitem__(index_name, index.long()), TypeError, index_name),
            (lambda: args.__setitem__(index_name, index.tolist()), TypeError, index_name),
            (lambda: args.__setitem__(index_name, index[:-1]), ValueError, index_name),
        ]
        if len(index) > 1:
            muts.append(
                (
                    lambda: args.__setitem__(index_name, torch.stack([index, index], 1)[:, 0]),
                    ValueError,
                    index_name,
                )
            )
        if num_groups > 1:
            muts.append(
                (
                    lambda: args.__setitem__("B", torch.zeros(num_groups, n + 16, k, dtype=FP8)[:, :n]),
                    ValueError,
                    "B (b[0])",
                )
            )
        if offsets:
            ends, _ = bad_group_ends(draw, num_groups, m_sum)
            muts += [
                (
                    lambda: args.__setitem__("group_ends", torch.tensor(ends, dtype=torch.int32)),
                    ValueError,
                    "group_ends",
                )
            ] * 4
        else:
            bad, _ = bad_contiguous_indices(draw, num_groups)

            def use_bad_indices():
                rows = len(bad)
                args.update(
                    A=draw.fp8(rows, k),
                    sfa=draw.scales(rows, kb(k)),
                    d=torch.zeros(rows, n, dtype=d_dtype),
                    m_indices=bad,
                )

            muts += [(use_bad_indices, ValueError, "m_indices")] * 4
        pick = rng.randrange(len(muts))
        mutate, kind, word = muts[pick]
        mutate()
        return Case(0, op, category, call, error=(kind, word), note=f"{note} mutation {pick}")

    expert = m_indices >= 0 if num_groups else torch.zeros(m_sum, dtype=torch.bool)
    before = d.clone()

    def check(result):
        returned(result, d)
        if num_groups == 0 or n == 0:
            assert_untouched(d, before, "all rows (nothing to do)")
            return
        expected = torch.zeros(m_sum, n, dtype=torch.float64)
        a64 = dequant_a(A, sfa)
        for group in range(num_groups):
            rows = m_indices == group
            expected[rows] = a64[rows] @ dequant_b(B[group], sfb[group]).T
        assert_close(d[expert], expected[expert])
        assert_untouched(d[~expert], before[~expert], "padding rows")

    return Case(0, op, category, call, check, note=note)


def masked_layout(draw: Draw, category: str) -> tuple[list[int], int]:
    rng = draw.rng
    if category == "edge":
        max_m = draw.choice((0, 1, 7, 65, 129))
        return [
            draw.choice((0, max_m, rng.randint(0, max_m))) for _ in range(draw.choice((0, 1, 2, 4)))
        ], max_m
    max_m = rng.randint(1, 40)
    return [rng.randint(0, max_m) for _ in range(rng.randint(1, 3))], max_m


def bad_expected_m(draw: Draw) -> tuple[object, type]:
    return draw.choice(
        (
            (0, ValueError),
            (-3, ValueError),
            (True, TypeError),
            (2.0, TypeError),
            (None, TypeError),
            ("4", TypeError),
            (torch.tensor(4), TypeError),
        )
    )


def bad_masked_m(draw: Draw, masked: list[int], max_m: int) -> torch.Tensor:
    values = list(masked)
    values[draw.rng.randrange(len(values))] = draw.choice((max_m + 1, max_m + 100, -1))
    return torch.tensor(values, dtype=torch.int32)


def fp8_grouped_masked(draw: Draw, category: str) -> Case:
    rng = draw.rng
    op = "m_grouped_fp8_gemm_nt_masked"
    d_dtype = draw.choice((BF16, torch.float32))
    per_16 = 16 // d_dtype.itemsize
    masked, max_m = masked_layout(draw, category)
    if category == "invalid":
        max_m = max(max_m, 1)
        masked = masked or [rng.randint(0, max_m)]
    num_groups = len(masked)
    n, k = grouped_sizes(draw, category, per_16, fp8=True)
    if category == "invalid":
        n, k = max(n, 8), max(k, 16)
    A, sfa = draw.fp8(num_groups, max_m, k), draw.scales(num_groups, max_m, kb(k))
    B, sfb = draw.fp8(num_groups, n, k), draw.scales(num_groups, kb(n), kb(k))
    masked_m = torch.tensor(masked, dtype=torch.int32)
    expected_m = draw.choice((int, np.int64))(rng.randint(1, 64))  # any integer
    note = f"masked_m={masked} max_m={max_m} n={n} k={k} d={d_dtype}"
    strided = category == "edge" and rng.random() < 0.5
    if strided:
        A, B = draw.strided(A, 16), draw.strided(B, 16)
        note += " strided"
    d = out_tensor(draw, (num_groups, max_m, n), d_dtype, per_16, strided)
    args = {"A": A, "sfa": sfa, "B": B, "sfb": sfb, "d": d, "masked_m": masked_m, "expected_m": expected_m}

    def call():
        return deepgemm.m_grouped_fp8_gemm_nt_masked(*pack(args), args["masked_m"], args["expected_m"])

    if category == "invalid":
        muts = fp8_operand_mutations(args)
        bad_m, bad_kind = bad_expected_m(draw)
        muts += [
            (lambda: args.__setitem__("masked_m", masked_m.long()), TypeError, "masked_m"),
            (lambda: args.__setitem__("masked_m", masked), TypeError, "masked_m"),
            (lambda: args.__setitem__("masked_m", masked_m[:-1]), ValueError, "masked_m"),
            (lambda: args.__setitem__("expected_m", bad_m), bad_kind, "expected_m"),
            (lambda: args.__setitem__("expected_m", bad_m), bad_kind, "expected_m"),
        ]
        muts += [
            (lambda: args.__setitem__("masked_m", bad_masked_m(draw, masked, max_m)), ValueError, "masked_m")
        ] * 4
        pick = rng.randrange(len(muts))
        mutate, kind, word = muts[pick]
        mutate()
        return Case(0, op, category, call, error=(kind, word), note=f"{note} mutation {pick}")

    valid = torch.arange(max_m)[None, :] < masked_m[:, None]
    before = d.clone()

    def check(result):
        returned(result, d)
        expected = dequant_a(A, sfa) @ dequant_b(B, sfb).transpose(1, 2)
        assert_close(d[valid], expected[valid])
        assert_untouched(d[~valid], before[~valid], "rows past masked_m")

    return Case(0, op, category, call, check, note=note)


# ---- the 16-bit ops -----------------------------------------------------------------------------------

# How A and B are stored, by layout (the last dim contiguous), as in deepgemm.ops.bf16.gemm.
STORED = {"nt": ("MK", "NK"), "nn": ("MK", "KN"), "tn": ("KM", "KN"), "tt": ("KM", "NK")}


def bf16_dense(draw: Draw, category: str, layout: str) -> Case:
    rng = draw.rng
    op = f"bf16_gemm_{layout}"
    in_dtype = draw.choice((BF16, torch.float16))
    d_dtype = draw.choice((BF16, torch.float16, torch.float32))
    per_16 = 16 // d_dtype.itemsize
    a_dims, b_dims = STORED[layout]
    # Dims that are some tensor's contiguous one must be multiples of 16 bytes; the others are free.
    inner = {a_dims[1], b_dims[1]}
    unit = {dim: 8 if dim in inner else 1 for dim in "MNK"}
    unit["N"] = max(unit["N"], per_16)
    if category == "edge":
        sizes = {
            dim: draw.choice(
                (
                    0,
                    unit[dim],
                    unit[dim] * rng.randint(1, 9),
                    1 if unit[dim] == 1 else 136,
                    rng.randint(1, 70) * unit[dim],
                )
            )
            for dim in "MNK"
        }
    else:
        sizes = {dim: unit[dim] * rng.randint(1, 40 // unit[dim] if unit[dim] > 1 else 40) for dim in "MNK"}
    m, n, k = sizes["M"], sizes["N"], sizes["K"]
    a = draw.randn(*(sizes[dim] for dim in a_dims), dtype=in_dtype)
    b = draw.randn(*(sizes[dim] for dim in b_dims), dtype=in_dtype)
    with_c = draw.choice(("none", "separate", "d"))
    note = f"m={m} n={n} k={k} a/b={in_dtype} d={d_dtype} c={with_c}"
    strided = category == "edge" and rng.random() < 0.5
    if strided:
        a, b = draw.strided(a, 8 * rng.randint(1, 2)), draw.strided(b, 8)
        note += " strided"
    d = out_tensor(draw, (m, n), d_dtype, per_16, strided)
    c = None
    if with_c == "separate":
        c = draw.randn(m, n, dtype=d_dtype)
    elif with_c == "d":
        d.copy_(draw.randn(m, n, dtype=d_dtype))
        c = d
    args = {"a": a, "b": b, "d": d, "c": c}

    def call():
        return getattr(deepgemm, op)(args["a"], args["b"], args["d"], args["c"])

    if category == "invalid":
        set_ = args.__setitem__
        muts = [
            (lambda: set_("a", a.float()), TypeError, "a"),
            (lambda: set_("a", numpy_of(a)), TypeError, "a"),
            (lambda: set_("a", None), TypeError, "a"),
            (lambda: set_("b", b.to(BF16 if in_dtype == torch.float16 else torch.float16)), TypeError, "b"),
            (lambda: set_("b", b.tolist()), TypeError, "b"),
            (lambda: set_("d", d.to(torch.int32)), TypeError, "d"),
            (lambda: set_("d", "d"), TypeError, "d"),
            (lambda: set_("c", torch.zeros(m, n, dtype=torch.float64)), TypeError, "c"),
            (lambda: set_("c", torch.zeros(m, n + per_16, dtype=d_dtype)), ValueError, "c"),
            (lambda: set_("c", 1.0), TypeError, "c"),
            (lambda: set_("a", a[None]), ValueError, "a"),
            (lambda: set_("b", b[0]), ValueError, "b"),
            (lambda: set_("d", d[:, None]), ValueError, "d"),
            (lambda: set_("b", torch.zeros(b.shape[0] + 8, b.shape[1] + 8, dtype=in_dtype)), ValueError, "b"),
            (lambda: set_("d", torch.zeros(m + 1, n, dtype=d_dtype)), ValueError, "d"),
            (lambda: set_("a", misaligned_rows(a)), ValueError, "a"),
            (lambda: set_("a", misaligned_start(a)), ValueError, "a"),
            (lambda: set_("b", column_major(b)), ValueError, "b"),
            (lambda: set_("d", misaligned_start(d)), ValueError, "d"),
        ]
        pick = rng.randrange(len(muts))
        mutate, kind, word = muts[pick]
        if word != "c" or with_c != "d":
            args["c"] = c if c is not d else None
        mutate()
        return Case(0, op, category, call, error=(kind, word), note=f"{note} mutation {pick}")

    a_mk = a.double() if layout[0] == "n" else a.double().T
    b_kn = b.double() if layout[1] == "n" else b.double().T
    expected = a_mk @ b_kn + (0 if c is None else c.double())

    def check(result):
        returned(result, d)
        assert_close(d, expected)

    return Case(0, op, category, call, check, note=note)


def bf16_grouped(draw: Draw, category: str, masked: bool) -> Case:
    rng = draw.rng
    op = "m_grouped_bf16_gemm_nt_" + ("masked" if masked else "contiguous")
    in_dtype = draw.choice((BF16, torch.float16))
    d_dtype = draw.choice((BF16, torch.float16, torch.float32))
    per_16 = 16 // d_dtype.itemsize
    if masked:
        counts, max_m = masked_layout(draw, category)
        if category == "invalid":
            max_m = max(max_m, 1)
            counts = counts or [rng.randint(0, max_m)]
        rows_shape = (len(counts), max_m)
    else:
        counts = group_counts(draw, category)
        if category == "invalid":
            counts = [rng.randint(1, 40)] + counts[1:]
        m_indices, _, m_sum = contiguous_layout(draw, counts)
        rows_shape = (m_sum,)
    num_groups = len(counts)
    n, k = grouped_sizes(draw, category, per_16, fp8=False)
    if category == "invalid":
        n, k = max(n, 8), max(k, 8)
    a, b = draw.randn(*rows_shape, k, dtype=in_dtype), draw.randn(num_groups, n, k, dtype=in_dtype)
    note = f"counts={counts} rows={rows_shape} n={n} k={k} a/b={in_dtype} d={d_dtype}"
    strided = category == "edge" and rng.random() < 0.5
    if strided:
        a, b = draw.strided(a, 8), draw.strided(b, 8 * rng.randint(1, 2))
        note += " strided"
    d = out_tensor(draw, (*rows_shape, n), d_dtype, per_16, strided)
    index_name = "masked_m" if masked else "m_indices"
    index = torch.tensor(counts, dtype=torch.int32) if masked else m_indices
    expected_m = draw.choice((int, np.int64))(rng.randint(1, 64))  # any integer
    args = {"a": a, "b": b, "d": d, index_name: index, "expected_m": expected_m}

    def call():
        extra = (args["expected_m"],) if masked else ()
        return getattr(deepgemm, op)(args["a"], args["b"], args["d"], args[index_name], *extra)

    if category == "invalid":
        set_ = args.__setitem__
        muts = [
            (lambda: set_("a", a.float()), TypeError, "a"),
            (lambda: set_("a", [a]), TypeError, "a"),
            (lambda: set_("b", b.to(BF16 if in_dtype == torch.float16 else torch.float16)), TypeError, "b"),
            (lambda: set_("d", d.to(torch.float64)), TypeError, "d"),
            (lambda: set_("d", None), TypeError, "d"),
            (lambda: set_("a", a[None]), ValueError, "a"),
            (lambda: set_("b", b[0]), ValueError, "b"),
            (lambda: set_("b", torch.zeros(num_groups, n, k + 8, dtype=in_dtype)), ValueError, "b"),
            (lambda: set_("d", d[..., :-1]), ValueError, "d"),
            (lambda: set_("a", misaligned_rows(a)), ValueError, "a"),
            (lambda: set_("d", misaligned_start(d)), ValueError, "d"),
            (lambda: set_(index_name, index.long()), TypeError, index_name),
            (lambda: set_(index_name, index[:-1]), ValueError, index_name),
            (lambda: set_(index_name, None), TypeError, index_name),
        ]
        if num_groups > 1:
            muts.append(
                (lambda: set_("b", torch.zeros(num_groups, n + 8, k, dtype=in_dtype)[:, :n]), ValueError, "b")
            )
        if masked:
            bad_m, bad_kind = bad_expected_m(draw)
            muts += [(lambda: set_("expected_m", bad_m), bad_kind, "expected_m")] * 2
            muts += [
                (lambda: set_("masked_m", bad_masked_m(draw, counts, max_m)), ValueError, "masked_m")
            ] * 4
        else:
            bad, _ = bad_contiguous_indices(draw, num_groups)

            def use_bad_indices():
                args.update(
                    a=draw.randn(len(bad), k, dtype=in_dtype),
                    m_indices=bad,
                    d=torch.zeros(len(bad), n, dtype=d_dtype),
                )

            muts += [(use_bad_indices, ValueError, "m_indices")] * 4
        pick = rng.randrange(len(muts))
        mutate, kind, word = muts[pick]
        mutate()
        return Case(0, op, category, call, error=(kind, word), note=f"{note} mutation {pick}")

    if masked:
        valid = torch.arange(max_m)[None, :] < index[:, None]
        expected = a.double() @ b.double().transpose(1, 2)
    else:
        valid = m_indices >= 0
        expected = torch.zeros(*rows_shape, n, dtype=torch.float64)
        for group in range(num_groups):
            rows = m_indices == group
            expected[rows] = a.double()[rows] @ b.double()[group].T
    before = d.clone()

    def check(result):
        returned(result, d)
        if num_groups == 0 or n == 0:
            assert_untouched(d, before, "all rows (nothing to do)")
            return
        assert_close(d[valid], expected[valid])
        assert_untouched(d[~valid], before[~valid], "padding rows" if not masked else "rows past masked_m")

    return Case(0, op, category, call, check, note=note)


# ---- matmul ---------------------------------------------------------------------------------------------

COMPUTE_DTYPES = {"bf16": BF16, "fp16": torch.float16}
PRECISION_NAMES = {
    "bf16": ("bf16", "bfloat16", BF16),
    "fp16": ("fp16", "float16", torch.float16, np.float16),
    "fp8": ("fp8", torch.float8_e4m3fn),
    "fp32": ("fp32", "float32", "Float32", torch.float32, np.float32),
    "tf32": ("tf32", "TF32"),
}
# The precision dtype=None runs for each input dtype.
OWN_PRECISIONS = {BF16: "bf16", torch.float16: "fp16", torch.float32: "fp32", torch.float64: "fp32"}


def matmul_expected(compute: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """What ``matmul`` computes in precision ``compute``, in float64: FP8 of the quantised operands,
    FP32 (3xTF32) of the FP32 operands, TF32 of the FP32 operands as TF32 tensor cores read them,
    16-bit of the 16-bit operands."""
    if compute == "fp8":
        return fp8_matmul_reference(a, b)
    if compute in ("fp32", "tf32"):
        a, b = a.float(), b.float()
        if compute == "tf32":
            a, b = tf32_as_read(a), tf32_as_read(b)
        return a.double() @ b.double()
    return a.to(COMPUTE_DTYPES[compute]).double() @ b.to(COMPUTE_DTYPES[compute]).double()


def fp8_matmul_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` of ``a`` quantised per token and ``b`` per 128x128 block (as ``matmul`` does),
    dequantised, in float64."""
    if a.numel() == 0 or b.numel() == 0:
        return torch.zeros(*a.shape[:-1], b.shape[-1], dtype=torch.float64)
    if b.dim() == 2:
        a2 = a.reshape(-1, a.shape[-1])
        a_q, sfa = per_token_cast_to_fp8(a2)
        b_q, sfb = per_block_cast_to_fp8(b.transpose(0, 1))
        return (dequant_a(a_q, sfa) @ dequant_b(b_q, sfb).T).reshape(*a.shape[:-1], b.shape[-1])
    return torch.stack([fp8_matmul_reference(a[i], b[i]) for i in range(a.shape[0])])


def matmul_operand(draw: Draw, shape: tuple[int, ...], dtype: torch.dtype, view: str) -> torch.Tensor:
    """A tensor of ``shape``: row-major, a transposed view, or a slice with a step."""
    if view == "transposed":
        return draw.randn(*shape[:-2], shape[-1], shape[-2], dtype=dtype).transpose(-2, -1)
    if view == "stepped":
        return draw.randn(*shape[:-1], 2 * shape[-1], dtype=dtype)[..., ::2]
    return draw.randn(*shape, dtype=dtype)


def matmul_case(draw: Draw, category: str) -> Case:
    rng = draw.rng
    precision_kind = draw.choice(("bf16", "fp16", "fp8", "fp32", "tf32", None, None))
    if precision_kind is None:
        in_dtype = draw.choice((BF16, torch.float16, torch.float32, torch.float64))
        precision = None
        compute = OWN_PRECISIONS[in_dtype]
    else:
        in_dtype = draw.choice((BF16, torch.float16, torch.float32, torch.float64))
        precision = draw.choice(PRECISION_NAMES[precision_kind])
        compute = precision_kind
    # The compute precision's two names: dtype= (the seed's) and precision= (its alias).
    keyword = draw.choice(("dtype", "precision"))
    numpy_inputs = rng.random() < 0.2
    if numpy_inputs and in_dtype == BF16:
        in_dtype = torch.float16 if precision is None else torch.float32
        compute = "fp16" if precision is None else compute
    if category == "edge":
        m, n = draw.choice((0, 1, 7, 65, 129)), draw.choice((0, 1, 13, 136))
        k = draw.choice((0, 1, 7, 16, 29, 136, 144))
    else:
        m, n = rng.randint(1, 40), rng.randint(1, 40)
        k = rng.randint(1, 160) if compute == "fp8" else rng.randint(1, 100)
    rank = draw.choice(("2x2", "2x2", "3x3", "3x2"))
    batch = (rng.randint(0 if category == "edge" else 1, 3),) if rank != "2x2" else ()
    views = ("row", "transposed", "stepped") if category == "edge" else ("row", "transposed")
    a_view = draw.choice(views)
    a = matmul_operand(draw, (*batch, m, k), in_dtype, a_view)
    b = matmul_operand(draw, (*(batch if rank == "3x3" else ()), k, n), in_dtype, draw.choice(views))
    out_dtype = draw.choice((None, None, BF16, torch.float16, torch.float32, "fp32", "bf16", np.float32))
    if numpy_inputs and out_dtype in (BF16, "bf16"):
        out_dtype = None
    shape = (*batch, m, n)
    out = None
    if not numpy_inputs and rng.random() < 0.3:
        result_dtype = {None: None, "fp32": torch.float32, "bf16": BF16, np.float32: torch.float32}.get(
            out_dtype, out_dtype
        ) or {"fp16": torch.float16, "fp32": torch.float32, "tf32": torch.float32}.get(compute, BF16)
        out = torch.full(shape, SENTINEL, dtype=result_dtype)
        if category == "edge" and rng.random() < 0.5 and len(shape) == 2:
            out = torch.full(shape[::-1], SENTINEL, dtype=result_dtype).T
    device = draw.choice((None, "cpu", torch.device("cpu")))
    note = (
        f"a={tuple(a.shape)} strides {a.stride()} b={tuple(b.shape)} strides {b.stride()} {in_dtype} "
        f"{keyword}={precision!r} out_dtype={out_dtype!r} out={None if out is None else out.dtype} "
        f"numpy={numpy_inputs} device={device!r}"
    )
    args = {
        "a": a.numpy() if numpy_inputs else a,
        "b": b.numpy() if numpy_inputs else b,
        "dtype": precision if keyword == "dtype" else None,
        "precision": precision if keyword == "precision" else None,
        "out_dtype": out_dtype,
        "device": device,
        "out": out,
    }
    if numpy_inputs and rng.random() < 0.3 and m > 1:
        args["a"] = args["a"][..., ::-1, :]  # negative strides
        a = a.flip(-2)

    def call():
        return deepgemm.matmul(
            args["a"],
            args["b"],
            dtype=args["dtype"],
            precision=args["precision"],
            out_dtype=args["out_dtype"],
            device=args["device"],
            out=args["out"],
        )

    if category == "invalid":
        return _matmul_invalid(draw, args, call, note, a, b, numpy_inputs)

    def check(result):
        if out is not None:
            assert result is out, "matmul must return out itself"
        if numpy_inputs:
            assert isinstance(result, np.ndarray), f"NumPy inputs must give an ndarray, got {type(result)}"
            result = torch.from_numpy(result)
        else:
            assert isinstance(result, torch.Tensor), f"expected a torch.Tensor, got {type(result)}"
        assert result.dtype in (BF16, torch.float16, torch.float32), f"result dtype {result.dtype}"
        assert_close(result, matmul_expected(compute, a, b), "matmul result")

    return Case(0, "matmul", category, call, check, note=note)


def _matmul_invalid(
    draw: Draw, args: dict, call, note: str, a: torch.Tensor, b: torch.Tensor, numpy_inputs: bool
) -> Case:
    set_ = args.__setitem__
    k = a.shape[-1]
    muts = [
        (lambda: set_("a", a.tolist()), TypeError, "a"),
        (lambda: set_("b", None), TypeError, "b"),
        (lambda: set_("a", 3.0), TypeError, "a"),
        (lambda: set_("b", b.float().numpy() if not numpy_inputs else b), TypeError, "a and b"),
        (
            lambda: set_("a", a.to(torch.int32) if not numpy_inputs else a.to(torch.int32).numpy()),
            TypeError,
            "a",
        ),
        (
            lambda: set_("b", b.to(torch.complex64) if not numpy_inputs else b.to(torch.complex64).numpy()),
            TypeError,
            "b",
        ),
        (lambda: set_("a", a.reshape(-1) if not numpy_inputs else a.reshape(-1).numpy()), ValueError, "a"),
        (lambda: set_("b", b[None, None] if not numpy_inputs else b[None, None].numpy()), ValueError, "b"),
        (
            lambda: set_("b", (torch.zeros(2, k + 1, 3) if not numpy_inputs else np.zeros((2, k + 1, 3)))),
            ValueError,
            "K",
        ),
        (lambda: args.update(precision="fp64", dtype=None), ValueError, "precision"),
        (lambda: args.update(dtype="fp64", precision=None), ValueError, "dtype"),
        (lambda: args.update(precision=3, dtype=None), ValueError, "precision"),
        (lambda: args.update(dtype=np.complex64, precision=None), ValueError, "dtype"),
        (lambda: args.update(dtype="bf16", precision="tf32"), ValueError, "disagree"),
        (lambda: set_("out_dtype", torch.int32), TypeError, "out_dtype"),
        (lambda: set_("out_dtype", "float64"), TypeError, "out_dtype"),
        (lambda: set_("out_dtype", np.int8), TypeError, "out_dtype"),
        (lambda: set_("device", "tpu"), ValueError, "device"),
        (lambda: set_("device", "meta"), ValueError, "device"),
        (lambda: set_("device", 1.5), ValueError, "device"),
        (lambda: set_("out", np.zeros(3)), TypeError, "out"),
        (lambda: set_("out", [0.0]), TypeError, "out"),
    ]
    muts += [
        (lambda: set_("out_dtype", float), TypeError, "out_dtype"),
        (lambda: args.update(precision=["bf16"], dtype=None), ValueError, "precision"),
    ]
    if numpy_inputs:
        muts += [
            (lambda: set_("a", np.empty(tuple(a.shape), dtype=object)), TypeError, "a"),
            (lambda: set_("b", np.ones(tuple(b.shape), dtype=bool)), TypeError, "b"),
        ]
    else:
        shape = (*a.shape[:-1], b.shape[-1])
        muts += [
            (lambda: set_("out", torch.zeros(*shape[:-1], shape[-1] + 1)), ValueError, "out"),
            (lambda: args.update(out=torch.zeros(shape), out_dtype=BF16), ValueError, "out"),
            (
                lambda: args.update(a=a.to(BF16), b=b.to(torch.float16), precision=None, dtype=None),
                TypeError,
                "dtype",
            ),
            (
                lambda: args.update(a=a.to(torch.int8), b=b.to(torch.int8), dtype="fp16", precision=None),
                TypeError,
                "int8",
            ),
            (lambda: args.update(a=torch.zeros(2, 3, k), b=torch.zeros(3, k, 4)), ValueError, "batch"),
        ]
    pick = draw.rng.randrange(len(muts))
    mutate, kind, word = muts[pick]
    mutate()
    return Case(0, "matmul", "invalid", call, error=(kind, word), note=f"{note} mutation {pick}")


# ---- every op ----------------------------------------------------------------------------------------------

GENERATORS = {
    "fp8_gemm_nt": fp8_dense,
    "m_grouped_fp8_gemm_nt_contiguous": lambda draw, cat: fp8_grouped_contiguous(draw, cat, offsets=False),
    "m_grouped_fp8_gemm_nt_contiguous_offsets": lambda draw, cat: fp8_grouped_contiguous(
        draw, cat, offsets=True
    ),
    "m_grouped_fp8_gemm_nt_masked": fp8_grouped_masked,
    **{
        f"bf16_gemm_{layout}": (lambda draw, cat, _layout=layout: bf16_dense(draw, cat, _layout))
        for layout in STORED
    },
    "m_grouped_bf16_gemm_nt_contiguous": lambda draw, cat: bf16_grouped(draw, cat, masked=False),
    "m_grouped_bf16_gemm_nt_masked": lambda draw, cat: bf16_grouped(draw, cat, masked=True),
    "matmul": matmul_case,
}
OPS = tuple(GENERATORS)
CATEGORIES = ("valid",) * 11 + ("edge",) * 4 + ("invalid",) * 5


def make_case(number: int) -> Case:
    """Case ``number``: its op is ``OPS[number % len(OPS)]``, everything else drawn from the number."""
    draw = Draw(number)
    op = OPS[number % len(OPS)]
    category = draw.choice(CATEGORIES)
    case = GENERATORS[op](draw, category)
    case.number = number
    return case
