"""GEMM inputs for tests and the benchmark: random normal BF16 operands, quantised once where FP8 is
used, shared by every provider of a benchmark shape and by the GPU tests.

Random normal data matters: all-ones or all-zero operands draw less power and inflate TFLOPS.
The reference outputs are computed lazily (in FP32, on the inputs' device) and cached, since
every provider of a shape is checked against them. ``DenseInputs`` holds one FP8 GEMM's operands,
``Bf16Inputs`` one BF16 GEMM's in any storage layout, ``GroupedInputs`` an MoE grouped GEMM's
(contiguous or masked layout, FP8 or BF16 operands) with its group bookkeeping.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from deepgemm.quant import (
    align,
    ceil_div,
    per_block_cast_to_fp8,
    per_channel_cast_to_int8,
    per_token_cast_to_fp8,
    per_token_cast_to_int8,
)

from .reference import (
    ref_fp8_gemm_nt,
    ref_int8_gemm_nt,
    ref_int8_sums,
    ref_k_grouped_fp8_gemm_nt_1d1d,
    ref_m_grouped_fp8_gemm_nt_contiguous,
    ref_m_grouped_fp8_gemm_nt_masked,
)


@dataclass
class DenseInputs:
    """Operands of ``D[M, N] = A[M, K] · B[N, K]ᵀ`` in BF16 and in the DeepSeek-V3 FP8 recipe.

    ``a``/``sfa``: FP8 ``[M, K]`` with FP32 1x128 scales ``[M, ceil(K/128)]`` (row-major);
    ``b``/``sfb``: FP8 ``[N, K]`` with FP32 128x128 scales ``[ceil(N/128), ceil(K/128)]``.
    """

    a_bf16: torch.Tensor
    b_bf16: torch.Tensor
    a: torch.Tensor
    sfa: torch.Tensor
    b: torch.Tensor
    sfb: torch.Tensor
    _references: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    # Every provider's output is compared with each of these (one of them is its pass/fail check).
    reference_kinds: ClassVar[tuple[str, ...]] = ("fp8", "bf16")

    def reference(self, kind: str) -> torch.Tensor:
        """FP32 ``[M, N]`` reference: ``"fp8"`` from the dequantised FP8 operands (what a correct
        fine-grained FP8 kernel computes), ``"bf16"`` from the unquantised BF16 operands."""
        if kind not in self._references:
            if kind == "fp8":
                self._references[kind] = ref_fp8_gemm_nt((self.a, self.sfa), (self.b, self.sfb))
            elif kind == "bf16":
                self._references[kind] = self.a_bf16.float() @ self.b_bf16.float().t()
            else:
                raise ValueError(f"unknown reference kind {kind!r}; expected 'fp8' or 'bf16'")
        return self._references[kind]

    def valid_rows(self, output: torch.Tensor) -> torch.Tensor:
        """The part of an output that is checked: all of it (grouped inputs keep only valid rows)."""
        return output


def make_dense_inputs(
    m: int, n: int, k: int, device: torch.device, seed: int, b_kn: bool = False
) -> DenseInputs:
    """Random normal ``A [M, K]`` and ``B [N, K]`` in BF16, quantised with deepgemm's helpers.

    ``b_kn``: draw B as a row-major ``[K, N]`` tensor, as a caller of ``deepgemm.matmul`` holds it;
    ``b_bf16`` is then its ``[N, K]`` view (``b_bf16.t()`` is the row-major tensor itself).
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    a_bf16 = torch.randn(m, k, generator=generator, device=device, dtype=torch.bfloat16)
    b_shape = (k, n) if b_kn else (n, k)
    b_bf16 = torch.randn(*b_shape, generator=generator, device=device, dtype=torch.bfloat16)
    if b_kn:
        b_bf16 = b_bf16.t()
    a, sfa = per_token_cast_to_fp8(a_bf16)
    b, sfb = per_block_cast_to_fp8(b_bf16)
    return DenseInputs(a_bf16=a_bf16, b_bf16=b_bf16, a=a, sfa=sfa, b=b, sfb=sfb)


# How A and B of a 16-bit GEMM are stored (``Problem.major``), NT first: the layout the others are
# held against.
MAJORS = ("nt", "nn", "tn", "tt")


@dataclass
class Bf16Inputs:
    """Operands of ``D[M, N] = A · B`` in BF16, both contiguous, stored as ``major`` says: ``a`` is
    ``[M, K]`` (``n``) or ``[K, M]`` (``t``), ``b`` is ``[N, K]`` (``t``) or ``[K, N]`` (``n``).
    """

    major: str
    a: torch.Tensor
    b: torch.Tensor
    _references: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    # The FP32 product of the BF16 operands: what a 16-bit GEMM computes before rounding D.
    reference_kinds: ClassVar[tuple[str, ...]] = ("bf16",)

    @property
    def a_mk(self) -> torch.Tensor:
        """A as an ``[M, K]`` tensor (a view of ``a``)."""
        return self.a if self.major[0] == "n" else self.a.t()

    @property
    def b_kn(self) -> torch.Tensor:
        """B as a ``[K, N]`` tensor (a view of ``b``)."""
        return self.b.t() if self.major[1] == "t" else self.b

    def reference(self, kind: str) -> torch.Tensor:
        """FP32 ``[M, N]`` reference ``A · B`` of the BF16 operands (the only kind, ``"bf16"``)."""
        if kind != "bf16":
            raise ValueError(f"unknown reference kind {kind!r}; BF16 inputs have only 'bf16'")
        if kind not in self._references:
            self._references[kind] = self.a_mk.float() @ self.b_kn.float()
        return self._references[kind]

    def valid_rows(self, output: torch.Tensor) -> torch.Tensor:
        return output


def make_bf16_inputs(m: int, n: int, k: int, major: str, device: torch.device, seed: int,
                     dtype: torch.dtype = torch.bfloat16) -> Bf16Inputs:
    """Random normal BF16 (or ``dtype``: FP16) ``A`` and ``B`` of an ``M x N x K`` GEMM, stored as
    ``major`` says.

    Raises ``ValueError`` for a ``major`` not in ``MAJORS``.
    """
    if major not in MAJORS:
        raise ValueError(f"major must be one of {MAJORS}, got {major!r}")
    generator = torch.Generator(device=device).manual_seed(seed)
    a_shape = (m, k) if major[0] == "n" else (k, m)
    b_shape = (n, k) if major[1] == "t" else (k, n)
    a = torch.randn(*a_shape, generator=generator, device=device, dtype=dtype)
    b = torch.randn(*b_shape, generator=generator, device=device, dtype=dtype)
    return Bf16Inputs(major, a, b)


# Rows of one expert in the contiguous MoE layout start at multiples of this
# (``deepgemm.get_m_alignment_for_contiguous_layout()``); each expert is padded up to it.
CONTIGUOUS_M_ALIGNMENT = 128
GROUPED_LAYOUTS = ("contiguous", "masked")


@dataclass
class GroupedInputs:
    """Operands of an MoE grouped GEMM: group ``g`` computes ``counts[g]`` rows of ``A · B[g]ᵀ``.

    ``layout`` is ``"contiguous"`` or ``"masked"``:

    - contiguous: ``a`` FP8 ``[M_sum, K]``, ``sfa`` ``[M_sum, ceil(K/128)]``; group ``g``'s rows are
      ``[starts[g], starts[g] + counts[g])``, ``starts[g]`` a multiple of 128, the rows up to the next
      multiple of 128 are padding. ``m_indices`` int32 ``[M_sum]`` (the group of each row, -1 on
      padding) and ``group_ends`` int32 ``[G]`` (``starts[g] + counts[g]``) describe the same split.
    - masked: ``a`` FP8 ``[G, max_m, K]``, ``sfa`` ``[G, max_m, ceil(K/128)]``; the first ``counts[g]``
      rows of group ``g`` are valid (``masked_m`` int32 ``[G]``); ``expected_m`` is the host-side hint.

    ``b``/``sfb``: FP8 ``[G, N, K]`` with FP32 128x128 scales ``[G, ceil(N/128), ceil(K/128)]``.
    With BF16 operands (``quantised`` false) ``a`` and ``b`` are ``a_bf16`` and ``b_bf16`` themselves
    and there are no scales (``sfa``, ``sfb`` ``None``).
    Every row of ``a`` is random, padding and masked-off rows too: a kernel that reads them shows it.
    Outputs are compared on the valid rows only (``valid_rows``), stacked group after group.
    """

    layout: str
    counts: tuple[int, ...]
    starts: tuple[int, ...]
    a_bf16: torch.Tensor
    b_bf16: torch.Tensor
    a: torch.Tensor
    sfa: torch.Tensor | None
    b: torch.Tensor
    sfb: torch.Tensor | None
    m_indices: torch.Tensor | None = None
    group_ends: torch.Tensor | None = None
    masked_m: torch.Tensor | None = None
    expected_m: int | None = None
    _references: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _dense: DenseInputs | Bf16Inputs | None = field(default=None, repr=False)

    @property
    def quantised(self) -> bool:
        """FP8 operands with scales (else BF16 ones)."""
        return self.sfa is not None

    @property
    def reference_kinds(self) -> tuple[str, ...]:
        return ("fp8", "bf16") if self.quantised else ("bf16",)

    @property
    def num_groups(self) -> int:
        return len(self.counts)

    @property
    def num_valid_rows(self) -> int:
        return sum(self.counts)

    @property
    def flops(self) -> int:
        """``2 · Σ counts · N · K``: padding and masked-off rows do not count."""
        n, k = self.b.shape[1:]
        return 2 * self.num_valid_rows * n * k

    def group_rows(self, x: torch.Tensor, group: int) -> torch.Tensor:
        """The valid rows of ``group`` in ``x``, a tensor laid out like ``a`` (A, its scales, D)."""
        count = self.counts[group]
        if self.layout == "contiguous":
            return x[self.starts[group] : self.starts[group] + count]
        return x[group, :count]

    def valid_rows(self, output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """``[Σ counts, N]``: the valid rows of ``output``, group after group.

        ``output`` is laid out like ``a`` (``[M_sum, N]`` or ``[G, max_m, N]``), or is a sequence of
        per-group outputs of the valid rows only, in group order (empty groups may be left out).
        """
        if not isinstance(output, torch.Tensor):
            return torch.cat(list(output))
        return torch.cat([self.group_rows(output, group) for group in range(self.num_groups)])

    def expert_inputs(self, group: int) -> DenseInputs:
        """The dense FP8 GEMM of ``group``'s valid rows with its own weights (views, no copies)."""
        rows = functools.partial(self.group_rows, group=group)
        return DenseInputs(
            a_bf16=rows(self.a_bf16),
            b_bf16=self.b_bf16[group],
            a=rows(self.a),
            sfa=rows(self.sfa),
            b=self.b[group],
            sfb=self.sfb[group],
        )

    def dense_equivalent(self) -> DenseInputs | Bf16Inputs:
        """The dense GEMM of the same total size: every valid row (``Σ counts`` rows) times group 0's
        weights, in the operands' own type (NT-stored ``Bf16Inputs`` for BF16 operands). Built once
        (copies of the valid rows), then cached."""
        if self._dense is None and not self.quantised:
            self._dense = Bf16Inputs("nt", self.valid_rows(self.a_bf16), self.b_bf16[0])
        elif self._dense is None:
            self._dense = DenseInputs(
                a_bf16=self.valid_rows(self.a_bf16),
                b_bf16=self.b_bf16[0],
                a=self.valid_rows(self.a),
                sfa=self.valid_rows(self.sfa),
                b=self.b[0],
                sfb=self.sfb[0],
            )
        return self._dense

    def reference(self, kind: str) -> torch.Tensor:
        """FP32 ``[Σ counts, N]`` reference on the valid rows (kinds as in ``DenseInputs.reference``;
        only ``"bf16"`` for BF16 operands)."""
        if kind not in self._references:
            a, b = (self.a, self.sfa), (self.b, self.sfb)
            if kind == "fp8" and not self.quantised:
                raise ValueError("BF16 grouped inputs have no 'fp8' reference; use 'bf16'")
            if kind == "fp8" and self.layout == "contiguous":
                full = ref_m_grouped_fp8_gemm_nt_contiguous(a, b, self.m_indices)
                self._references[kind] = self.valid_rows(full)
            elif kind == "fp8":
                full = ref_m_grouped_fp8_gemm_nt_masked(a, b, self.masked_m)
                self._references[kind] = self.valid_rows(full)
            elif kind == "bf16":
                self._references[kind] = self.valid_rows(
                    [
                        self.group_rows(self.a_bf16, group).float() @ self.b_bf16[group].float().t()
                        for group in range(self.num_groups)
                    ]
                )
            else:
                raise ValueError(f"unknown reference kind {kind!r}; expected 'fp8' or 'bf16'")
        return self._references[kind]


def contiguous_starts(counts: Sequence[int]) -> tuple[int, ...]:
    """First row of each group in the contiguous layout: after the previous group, aligned to 128."""
    starts, end = [], 0
    for count in counts:
        starts.append(align(end, CONTIGUOUS_M_ALIGNMENT))
        end = starts[-1] + count
    return tuple(starts)


def make_grouped_inputs(
    layout: str,
    num_groups: int,
    rows_per_group: int | Sequence[int],
    n: int,
    k: int,
    max_m: int | None,
    device: torch.device,
    seed: int,
    expected_m: int | None = None,
    operand_dtype: torch.dtype = torch.float8_e4m3fn,
) -> GroupedInputs:
    """Random normal BF16 ``A`` and ``B [G, N, K]`` in ``layout``, quantised with deepgemm's helpers
    (``operand_dtype`` FP8, the default) or used as they are (``torch.bfloat16``: no scales).

    ``rows_per_group``: valid rows of every group (an int) or of each group (``G`` ints, 0 allowed).
    ``max_m``: rows per group of the masked layout (each count ``<= max_m``); ``None`` for
    contiguous, whose ``M_sum`` is the sum of the counts each rounded up to 128. ``expected_m``
    (masked): the hint passed to the kernel; default the mean count rounded up (at least 1).
    Raises ``ValueError`` for an unknown layout or operand dtype, or counts that do not fit the layout.
    """
    if operand_dtype not in (torch.float8_e4m3fn, torch.bfloat16):
        raise ValueError(f"operand_dtype must be torch.float8_e4m3fn or torch.bfloat16, got {operand_dtype}")
    if layout not in GROUPED_LAYOUTS:
        raise ValueError(f"layout must be one of {GROUPED_LAYOUTS}, got {layout!r}")
    counts = (rows_per_group,) * num_groups if isinstance(rows_per_group, int) else tuple(rows_per_group)
    if len(counts) != num_groups or min(counts, default=0) < 0:
        raise ValueError(f"need {num_groups} non-negative row counts, got {counts}")
    if layout == "masked" and (max_m is None or max(counts, default=0) > max_m):
        raise ValueError(f"the masked layout needs max_m >= every count, got max_m={max_m}, counts {counts}")
    if layout == "contiguous" and max_m is not None:
        raise ValueError("max_m is for the masked layout; the contiguous one derives M_sum from the counts")

    if layout == "contiguous":
        starts = contiguous_starts(counts)
        rows_shape = (sum(align(count, CONTIGUOUS_M_ALIGNMENT) for count in counts),)
    else:
        starts = (0,) * num_groups
        rows_shape = (num_groups, max_m)
    generator = torch.Generator(device=device).manual_seed(seed)
    a_bf16 = torch.randn(*rows_shape, k, generator=generator, device=device, dtype=torch.bfloat16)
    b_bf16 = torch.randn(num_groups, n, k, generator=generator, device=device, dtype=torch.bfloat16)
    if operand_dtype == torch.bfloat16:
        inputs = GroupedInputs(layout, counts, starts, a_bf16, b_bf16, a_bf16, None, b_bf16, None)
    else:
        a, sfa = per_token_cast_to_fp8(a_bf16)
        b, sfb = per_block_cast_to_fp8(b_bf16)
        inputs = GroupedInputs(layout, counts, starts, a_bf16, b_bf16, a, sfa, b, sfb)

    to_device = functools.partial(torch.tensor, dtype=torch.int32, device=device)
    if layout == "contiguous":
        m_indices = torch.full(rows_shape, -1, dtype=torch.int32)
        for group, (start, count) in enumerate(zip(starts, counts, strict=True)):
            m_indices[start : start + count] = group
        inputs.m_indices = m_indices.to(device)
        inputs.group_ends = to_device([start + count for start, count in zip(starts, counts, strict=True)])
    else:
        inputs.masked_m = to_device(counts)
        inputs.expected_m = expected_m or max(1, ceil_div(sum(counts), num_groups))
    return inputs


@dataclass
class WgradInputs:
    """Operands of the 1D1D (weight-gradient) FP8 GEMMs: ``D[g] = A_g · B_gᵀ`` for each group ``g`` of
    ``ks`` (the dense GEMM is one group of all of K).

    ``a``/``sa``: FP8 ``[M, K_sum]`` with FP32 1x128 scales ``[M, K_sum/128]``; ``b``/``sb``: FP8
    ``[N, K_sum]`` with FP32 1x128 scales ``[N, K_sum/128]`` (both row-major, as
    ``per_token_cast_to_fp8`` returns them); group ``g`` owns the K columns after those of the groups
    before it. ``ks_tensor``: the sizes as ``int32 [G]`` on the operands' device. ``grouped``: the
    outputs are ``[G, M, N]`` (else ``[M, N]``, one group).
    """

    ks: tuple[int, ...]
    grouped: bool
    a_bf16: torch.Tensor
    b_bf16: torch.Tensor
    a: torch.Tensor
    sa: torch.Tensor
    b: torch.Tensor
    sb: torch.Tensor
    ks_tensor: torch.Tensor
    _references: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    reference_kinds: ClassVar[tuple[str, ...]] = ("fp8", "bf16")

    def group_slices(self, group: int) -> tuple[slice, slice]:
        """The K columns and the scale columns of ``group``."""
        start = sum(self.ks[:group])
        end = start + self.ks[group]
        return slice(start, end), slice(start // 128, end // 128)

    def reference(self, kind: str) -> torch.Tensor:
        """FP32 reference, ``[G, M, N]`` (grouped) or ``[M, N]``: ``"fp8"`` from the dequantised FP8
        operands with per-128-K promotion, ``"bf16"`` from the unquantised BF16 operands."""
        if kind not in self._references:
            if kind == "fp8":
                out = ref_k_grouped_fp8_gemm_nt_1d1d((self.a, self.sa), (self.b, self.sb), self.ks)
            elif kind == "bf16":
                m, n = self.a.shape[0], self.b.shape[0]
                out = torch.zeros(len(self.ks), m, n, dtype=torch.float32, device=self.a.device)
                for group in range(len(self.ks)):
                    cols, _ = self.group_slices(group)
                    out[group] = self.a_bf16[:, cols].float() @ self.b_bf16[:, cols].float().t()
            else:
                raise ValueError(f"unknown reference kind {kind!r}; expected 'fp8' or 'bf16'")
            self._references[kind] = out if self.grouped else out[0]
        return self._references[kind]

    def valid_rows(self, output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The output as the references lay it out: a tensor as it is, per-group outputs stacked."""
        return output if isinstance(output, torch.Tensor) else torch.stack(list(output))

    def group_inputs(self, group: int) -> "WgradInputs":
        """The dense GEMM of one group (views, no copies)."""
        cols, scale_cols = self.group_slices(group)
        return WgradInputs((self.ks[group],), False, self.a_bf16[:, cols], self.b_bf16[:, cols],
                           self.a[:, cols], self.sa[:, scale_cols], self.b[:, cols], self.sb[:, scale_cols],
                           self.ks_tensor[group : group + 1])

    def dense_equivalent(self) -> "WgradInputs":
        """The dense GEMM of the same total work: ``[M, K_sum] x [N, K_sum]ᵀ``, all groups' K in one."""
        k_sum = self.a.shape[1]
        return WgradInputs((k_sum,), False, self.a_bf16, self.b_bf16, self.a, self.sa, self.b, self.sb,
                           self.ks_tensor.new_tensor([k_sum]))


def make_wgrad_inputs(m: int, n: int, ks: int | Sequence[int], device: torch.device, seed: int,
                      grouped: bool | None = None) -> WgradInputs:
    """Random normal BF16 ``A [M, K_sum]`` and ``B [N, K_sum]``, each quantised per token along K
    (``per_token_cast_to_fp8``: 1x128 scales), for the 1D1D GEMMs.

    ``ks``: the K of a dense GEMM (an int) or the groups' K sizes (multiples of 128, 0 allowed);
    ``grouped`` defaults to whether ``ks`` is a sequence. Raises ``ValueError`` for a size that is
    negative or not a multiple of 128.
    """
    sizes = (ks,) if isinstance(ks, int) else tuple(ks)
    if any(k < 0 or k % 128 for k in sizes):
        raise ValueError(f"every K must be a non-negative multiple of 128, got {sizes}")
    generator = torch.Generator(device=device).manual_seed(seed)
    k_sum = sum(sizes)
    a_bf16 = torch.randn(m, k_sum, generator=generator, device=device, dtype=torch.bfloat16)
    b_bf16 = torch.randn(n, k_sum, generator=generator, device=device, dtype=torch.bfloat16)
    a, sa = per_token_cast_to_fp8(a_bf16)
    b, sb = per_token_cast_to_fp8(b_bf16)
    ks_tensor = torch.tensor(sizes, dtype=torch.int32, device=device)
    return WgradInputs(sizes, not isinstance(ks, int) if grouped is None else grouped, a_bf16, b_bf16, a, sa,
                       b, sb, ks_tensor)


@dataclass
class WeightOnlyInputs:
    """Operands of a weight-only GEMM (``w8a16`` / ``w4a16``): activations ``a`` (``[M, K]``, or ``[G, max_m,
    K]`` for the masked ops), the packed weight operand ``b`` as the ops take it (``(b_packed, sb)`` or
    ``(b_packed, sb, zeros)``), and ``w``, the FP32 weight it stands for exactly (``[N, K]`` or ``[G, N,
    K]``): the reference is ``a`` times ``w`` in float64."""

    bits: int
    group_size: int | None
    a: torch.Tensor
    b: tuple
    w: torch.Tensor
    masked_m: torch.Tensor | None = None
    counts: tuple[int, ...] = ()
    # The benchmark's view (deepgemm.bench): one reference kind, "wq" (the quantised weight).
    reference_kinds: ClassVar[tuple[str, ...]] = ("wq",)

    def reference(self, kind: str = "wq") -> torch.Tensor:
        """``A · Wᵀ`` in float64 (per group for the masked operands), with each weight rounded once to the
        activations' dtype, as the weight-only kernels compute (docs/weight-only.md)."""
        product = self.a.double() @ self.w.to(self.a.dtype).double().transpose(-1, -2)
        return product if self.masked_m is None else self.valid_rows(product)

    def valid_rows(self, output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The rows a GEMM computes: all of a dense output; the first ``counts[g]`` rows of each group of a
        masked ``[G, max_m, N]`` output (or a list of per-group outputs of those rows), stacked."""
        if self.masked_m is None:
            return output
        if isinstance(output, torch.Tensor):
            output = [output[group, :count] for group, count in enumerate(self.counts)]
        return torch.cat([rows for rows in output if len(rows)])


def make_weight_only_inputs(m: int, n: int, k: int, bits: int, device: torch.device, seed: int,
                            group_size: int | None = 128, zero_points: bool = False,
                            dtype: torch.dtype = torch.bfloat16, num_groups: int | None = None,
                            counts: Sequence[int] | None = None) -> WeightOnlyInputs:
    """Random normal activations and a random normal weight quantised and packed by
    ``deepgemm.quant.wonly`` (INT8 symmetric, INT4 symmetric or with ``zero_points``). With ``num_groups``
    the operands are the masked layout's: ``a [G, m, K]``, weights ``[G, N, K]``, ``masked_m = counts``."""
    from ..quant import wonly  # here: the quantisation helpers are not needed to import this module

    # Drawn and quantised on `device`: the benchmark's weights reach hundreds of MB.
    generator = torch.Generator(device=device).manual_seed(seed)
    lead = () if num_groups is None else (num_groups,)
    a = torch.randn(*lead, m, k, generator=generator, device=device).to(dtype)
    weight = torch.randn(*lead, n, k, generator=generator, device=device)
    if bits == 8:
        q, scales = wonly.quantize_int8(weight, group_size, dtype)
        zeros = None
        b = (wonly.pack_int8_weight(q), wonly.pack_group_params(scales))
    else:
        q, scales, zeros = wonly.quantize_int4(weight, group_size, not zero_points, dtype)
        b = (wonly.pack_int4_weight(q, not zero_points), wonly.pack_group_params(scales))
        if zeros is not None:
            b = (*b, wonly.pack_group_params(zeros))
    w = wonly.dequantize(q, scales, zeros, group_size)
    masked_m, rows = None, ()
    if num_groups is not None:
        rows = tuple(counts) if counts is not None else (m,) * num_groups
        masked_m = torch.tensor(rows, dtype=torch.int32, device=device)
    return WeightOnlyInputs(bits, group_size, a.to(device), tuple(t.to(device) for t in b), w.to(device),
                            masked_m, rows)


@dataclass
class Int8Inputs:
    """Operands of the W8A8 GEMM ``D[M, N] = A[M, K] · B[N, K]ᵀ``: random normal BF16 ``a_bf16`` and
    ``b_bf16`` quantised with ``per_token_cast_to_int8`` (``a`` int8, ``sa`` FP32 ``[M]``) and
    ``per_channel_cast_to_int8`` (``b`` int8, ``sb`` FP32 ``[N]``)."""

    a_bf16: torch.Tensor
    b_bf16: torch.Tensor
    a: torch.Tensor
    sa: torch.Tensor
    b: torch.Tensor
    sb: torch.Tensor
    _references: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    # "int8": the product of the dequantised operands (what a correct W8A8 kernel computes before
    # rounding D); "int8_sums": the raw integer sums A · Bᵀ; "bf16": the unquantised product.
    reference_kinds: ClassVar[tuple[str, ...]] = ("int8", "int8_sums", "bf16")

    def reference(self, kind: str) -> torch.Tensor:
        """``[M, N]`` reference of ``kind`` (see ``reference_kinds``): FP32, the integer sums float64."""
        if kind not in self._references:
            if kind == "int8":
                ref = ref_int8_gemm_nt((self.a, self.sa), (self.b, self.sb))
            elif kind == "int8_sums":
                ref = ref_int8_sums(self.a, self.b)
            elif kind == "bf16":
                ref = self.a_bf16.float() @ self.b_bf16.float().t()
            else:
                raise ValueError(f"unknown reference kind {kind!r}; expected one of {self.reference_kinds}")
            # The integer sums stay exact (float64): FP32 holds integers only up to 2^24.
            self._references[kind] = ref.double() if kind == "int8_sums" else ref.float()
        return self._references[kind]

    def valid_rows(self, output: torch.Tensor) -> torch.Tensor:
        return output


def make_int8_inputs(m: int, n: int, k: int, device: torch.device, seed: int) -> Int8Inputs:
    """Random normal BF16 ``A [M, K]`` and ``B [N, K]``, quantised per token and per output channel."""
    generator = torch.Generator(device=device).manual_seed(seed)
    a_bf16 = torch.randn(m, k, generator=generator, device=device, dtype=torch.bfloat16)
    b_bf16 = torch.randn(n, k, generator=generator, device=device, dtype=torch.bfloat16)
    a, sa = per_token_cast_to_int8(a_bf16)
    b, sb = per_channel_cast_to_int8(b_bf16)
    return Int8Inputs(a_bf16=a_bf16, b_bf16=b_bf16, a=a, sa=sa, b=b, sb=sb)



@dataclass
class Fp32Inputs:
    """Operands of ``D[M, N] = A · B`` in FP32, both contiguous, stored as ``major`` says (as
    ``Bf16Inputs``): the TF32 and 3xTF32 GEMMs' inputs."""

    major: str
    a: torch.Tensor
    b: torch.Tensor
    _references: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    # "fp64": the float64 product of the FP32 operands (what FP32 accuracy is measured against);
    # "tf32": the float64 product of the operands as TF32 tensor cores read them (the low 13
    # mantissa bits cleared), what a TF32 GEMM computes before its FP32 accumulation rounds.
    reference_kinds: ClassVar[tuple[str, ...]] = ("fp64", "tf32")

    @property
    def a_mk(self) -> torch.Tensor:
        return self.a if self.major[0] == "n" else self.a.t()

    @property
    def b_kn(self) -> torch.Tensor:
        return self.b.t() if self.major[1] == "t" else self.b

    def reference(self, kind: str) -> torch.Tensor:
        """float64 ``[M, N]`` reference of ``kind`` (``"fp64"`` or ``"tf32"``)."""
        if kind not in self._references:
            if kind == "fp64":
                a, b = self.a_mk, self.b_kn
            elif kind == "tf32":
                a, b = tf32_as_read(self.a_mk), tf32_as_read(self.b_kn)
            else:
                raise ValueError(f"unknown reference kind {kind!r}; FP32 inputs have 'fp64' and 'tf32'")
            self._references[kind] = a.double() @ b.double()
        return self._references[kind]

    def valid_rows(self, output: torch.Tensor) -> torch.Tensor:
        return output


def tf32_as_read(x: torch.Tensor) -> torch.Tensor:
    """FP32 ``x`` as TF32 tensor cores read it: the low 13 mantissa bits cleared (``wgmma`` truncates)."""
    return (x.contiguous().view(torch.int32) & ~((1 << 13) - 1)).view(torch.float32)


def make_fp32_inputs(m: int, n: int, k: int, major: str, device: torch.device, seed: int) -> Fp32Inputs:
    """Random normal FP32 ``A`` and ``B`` of an ``M x N x K`` GEMM, stored as ``major`` says."""
    if major not in MAJORS:
        raise ValueError(f"major must be one of {MAJORS}, got {major!r}")
    generator = torch.Generator(device=device).manual_seed(seed)
    a_shape = (m, k) if major[0] == "n" else (k, m)
    b_shape = (n, k) if major[1] == "t" else (k, n)
    a = torch.randn(*a_shape, generator=generator, device=device, dtype=torch.float32)
    b = torch.randn(*b_shape, generator=generator, device=device, dtype=torch.float32)
    return Fp32Inputs(major, a, b)


@dataclass
class SequenceInputs:
    """A sequence of GEMMs ``a[i] [M_i, K_i] @ b[i] [K_i, N_i]`` (row-major, ``dtype``) of random sizes:
    the "dynamic sizes" workload, where each call may need another kernel. An output is the list of
    the products, checked as one flat vector of every ``CHECKED_ROW_STEP``-th row of each (rows in every
    64-row tile, at a sixteenth of the memory a check of every row of 200 products would take)."""

    CHECKED_ROW_STEP: ClassVar[int] = 16

    a: list[torch.Tensor]
    b: list[torch.Tensor]
    _references: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    # The FP32 products of the 16-bit operands, flattened and concatenated.
    reference_kinds: ClassVar[tuple[str, ...]] = ("bf16",)

    @property
    def sizes(self) -> list[tuple[int, int, int]]:
        """``(M, N, K)`` of each GEMM in order."""
        return [(a.shape[0], b.shape[1], a.shape[1]) for a, b in zip(self.a, self.b, strict=True)]

    def reference(self, kind: str) -> torch.Tensor:
        if kind != "bf16":
            raise ValueError(f"unknown reference kind {kind!r}; sequence inputs have only 'bf16'")
        if kind not in self._references:
            step = self.CHECKED_ROW_STEP
            self._references[kind] = torch.cat(
                [(a[::step].float() @ b.float()).flatten() for a, b in zip(self.a, self.b, strict=True)])
        return self._references[kind]

    def valid_rows(self, output: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([d[:: self.CHECKED_ROW_STEP].flatten() for d in output])


def random_gemm_sizes(count: int, low: int, high: int, seed: int,
                      multiple: int = 1) -> list[tuple[int, int, int]]:
    """``count`` ``(M, N, K)`` drawn uniformly from the multiples of ``multiple`` in ``[low, high]``
    each, reproducibly from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    first, last = -(-low // multiple), high // multiple
    drawn = torch.randint(first, last + 1, (count, 3), generator=generator) * multiple
    return [tuple(int(v) for v in row) for row in drawn]


def make_sequence_inputs(sizes: Sequence[tuple[int, int, int]], dtype: torch.dtype, device: torch.device,
                         seed: int) -> SequenceInputs:
    """Random normal row-major ``a [M, K]`` and ``b [K, N]`` of ``dtype`` for every ``(M, N, K)``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    a = [torch.randn(m, k, generator=generator, device=device, dtype=dtype) for m, _, k in sizes]
    b = [torch.randn(k, n, generator=generator, device=device, dtype=dtype) for _, n, k in sizes]
    return SequenceInputs(a, b)
