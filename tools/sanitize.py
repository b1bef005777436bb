"""Every kernel family and kind under compute-sanitizer: memcheck, racecheck and synccheck, one command.

    python tools/sanitize.py [--tools memcheck,racecheck,synccheck] [--family F] [-k TEXT] [--json PATH]

First runs every case once without the sanitizer (compiling the kernels into the JIT cache and checking
each result against its reference), then once per tool and family under ``compute-sanitizer --tool T
--error-exitcode 1 --report-api-errors no`` (cuda-bindings probes optional driver entry points at import
and the sanitizer would count each missing one as an API error; memory, race and barrier errors still
count), and prints the errors per tool and family from the sanitizer's ``ERROR SUMMARY`` (racecheck's
``RACECHECK SUMMARY``). A family per process: the sanitizer stops a kernel at its first error and the
CUDA context goes with it, so one family's error cannot hide another's. Exit status 1 if a case is wrong
or any tool reports an error.

    python tools/sanitize.py --run [-k TEXT]     # the cases alone, in this process (what the tools run)

The cases are small (racecheck instruments every shared-memory access, so it is the slow one) with M, N
and K tails, every kind of each family, and a few forced configs (2-CTA multicast on A and on B, D staged
in chunks) the heuristic only picks for large shapes. Families (``--family``): ``fp8_1d2d`` (dense,
contiguous, offsets, masked), ``bf16`` (NT/NN/TN/TT, C, contiguous, masked), ``fp8_1d1d`` (dense with C
separate and in place, BF16 out, k-grouped), ``int8`` (dense raw and scaled with bias and zero points,
contiguous, offsets, masked), ``tf32`` (every layout through the staging copy kernel, C, 3xTF32),
``wonly`` (W8A16, W4A16 with zero points, split-K and one-warpgroup decode shapes, more units than the
persistent grid's CTAs, masked), ``split_k`` (FP8 and 16-bit few-tile shapes the heuristic splits, with
the reduction adding C) and ``cast`` (the fused FP8 casts of ``deepgemm.quant``, bit for bit against
their torch implementation). Cases named for a heuristic's choice (split-K, one warpgroup, several units
per CTA) fail when the heuristic no longer makes it on the GPU.
A kernel family adds its cases as a function in ``FAMILY_CASES``, one line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("memcheck", "racecheck", "synccheck")
# Extra compute-sanitizer options per tool (each tool's defaults count what it finds as errors).
TOOL_OPTIONS: dict[str, list[str]] = {"memcheck": [], "racecheck": [], "synccheck": []}
ERROR_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) error")
# racecheck ends with its own summary instead: errors and warnings (possible hazards) both count.
RACECHECK_SUMMARY = re.compile(
    r"RACECHECK SUMMARY: \d+ hazards? displayed \((\d+) errors?, (\d+) warnings?\)")
MAX_DIFF = 1e-5
# Where the cases run: the GPU; a CPU test runs the cases without a forced config on the CPU path.
DEVICE = "cuda"
# The SM count the cases named for a heuristic choice check it against: None for the GPU's own (the CPU
# test sets an H100's).
CHECK_NUM_SMS: int | None = None


@dataclass(frozen=True)
class Case:
    """One op call (a GEMM or a cast): ``run()`` computes it on the GPU and returns calc_diff against its
    reference (a cast: 0.0 when bit for bit equal to its torch implementation, else 1.0)."""

    family: str
    name: str
    run: Callable[[], float]


def _fp8_dense(m: int, n: int, k: int, out=None, config: dict | None = None) -> Callable[[], float]:
    def run() -> float:
        import torch

        import deepgemm
        from deepgemm.heuristics import FP8_1D2D, GemmShape
        from deepgemm.heuristics.config import config_errors
        from deepgemm.heuristics.sm90 import make_config
        from deepgemm.ops.fp8.kernel import launch_fp8_gemm_nt
        from deepgemm.testing import calc_diff, make_dense_inputs

        inputs = make_dense_inputs(m, n, k, torch.device(DEVICE), m + n + k)
        d = torch.empty(m, n, device=DEVICE, dtype=out or torch.bfloat16)
        if config is None:
            deepgemm.fp8_gemm_nt((inputs.a, inputs.sfa), (inputs.b, inputs.sfb), d)
        else:
            shape = GemmShape(m, n, k, d.element_size(), family=FP8_1D2D)
            cfg = make_config(shape, deepgemm.get_num_sms(), **config)
            assert not config_errors(cfg, shape), config_errors(cfg, shape)
            sfa = deepgemm.get_mn_major_tma_aligned_tensor(inputs.sfa)
            launch_fp8_gemm_nt(inputs.a, sfa, inputs.b, inputs.sfb, d, config=cfg)
        return calc_diff(d, inputs.reference("fp8"))

    return run


def _grouped(layout: str, counts: list[int], n: int, k: int, operands: str, op: str,
             max_m: int | None = None) -> Callable[[], float]:
    def run() -> float:
        import torch

        import deepgemm
        from deepgemm.testing import calc_diff, make_grouped_inputs

        fp8 = operands == "fp8"
        dtype = torch.float8_e4m3fn if fp8 else torch.bfloat16
        inputs = make_grouped_inputs(layout, len(counts), counts, n, k, max_m, torch.device(DEVICE),
                                     sum(counts) + n + k, operand_dtype=dtype)
        a, b = ((inputs.a, inputs.sfa), (inputs.b, inputs.sfb)) if fp8 else (inputs.a, inputs.b)
        d = torch.zeros(*inputs.a.shape[:-1], n, device=DEVICE, dtype=torch.bfloat16)
        index = {"contiguous": inputs.m_indices, "offsets": inputs.group_ends, "masked": inputs.masked_m}[op]
        extra = (inputs.expected_m or max(counts),) if op == "masked" else ()
        suffix = {"contiguous": "contiguous", "offsets": "contiguous_offsets", "masked": "masked"}[op]
        getattr(deepgemm, f"m_grouped_{operands}_gemm_nt_{suffix}")(a, b, d, index, *extra)
        return calc_diff(inputs.valid_rows(d), inputs.reference(operands))

    return run


def _bf16_dense(m: int, n: int, k: int, major: str, with_c: bool = False, out=None,
                config: dict | None = None) -> Callable[[], float]:
    def run() -> float:
        import torch

        import deepgemm
        from deepgemm.heuristics import BF16, GemmShape
        from deepgemm.heuristics.config import config_errors
        from deepgemm.heuristics.sm90 import make_config
        from deepgemm.ops.bf16.kernel import launch_bf16_gemm
        from deepgemm.testing import calc_diff, make_bf16_inputs

        inputs = make_bf16_inputs(m, n, k, major, torch.device(DEVICE), m + n + k)
        out_dtype = out or torch.bfloat16
        c = torch.randn(m, n, device=DEVICE).to(out_dtype) if with_c else None
        d = torch.empty(m, n, device=DEVICE, dtype=out_dtype)
        if config is None:
            getattr(deepgemm, f"bf16_gemm_{major}")(inputs.a, inputs.b, d, c)
        else:
            shape = GemmShape(m, n, k, d.element_size(), family=BF16, b_mn_major=major[1] == "n")
            cfg = make_config(shape, deepgemm.get_num_sms(), **config)
            assert not config_errors(cfg, shape), config_errors(cfg, shape)
            device = torch.cuda.current_device()
            launch_bf16_gemm(major, inputs.a, inputs.b, d, c, m, n, k, device, config=cfg)
        ref = inputs.reference("bf16") + (c.float() if with_c else 0)
        return calc_diff(d, ref)

    return run


# Configs the heuristic picks only for large shapes, forced on small ones: (family, M, N, K, layout letters,
# make_config's arguments).
MULTICAST_A = dict(num_tma_multicast=2, multicast_on_a=True)
MULTICAST_B = dict(num_tma_multicast=2, multicast_on_a=False)
FORCED_CONFIGS = (
    ("fp8_1d2d", 256, 256, 384, "nt", dict(block_m=128, block_n=64, **MULTICAST_A)),
    ("fp8_1d2d", 256, 200, 384, "nt", dict(block_m=128, block_n=64, **MULTICAST_B)),
    ("fp8_1d2d", 300, 264, 256, "nt", dict(block_m=256, block_n=128, num_d_chunks=4)),
    ("bf16", 256, 256, 256, "nn", dict(block_m=128, block_n=64, **MULTICAST_A)),
    ("bf16", 256, 256, 192, "tt", dict(block_m=128, block_n=128, num_d_chunks=2, **MULTICAST_B)),
)


def _forced_name(m: int, n: int, k: int, major: str, config: dict) -> str:
    what = []
    if config.get("num_tma_multicast", 1) > 1:
        what.append(f"multicast {'A' if config['multicast_on_a'] else 'B'}")
    if config["block_m"] == 256:
        what.append("256-row tiles")
    if config.get("num_d_chunks", 1) > 1:
        what.append(f"D in {config['num_d_chunks']} chunks")
    return f"{'dense' if major == 'nt' else major} {m}x{n}x{k} forced {', '.join(what)}"


def _forced_cases(family: str) -> list[Case]:
    def make(m: int, n: int, k: int, major: str, config: dict) -> Callable[[], float]:
        if family == "fp8_1d2d":
            return _fp8_dense(m, n, k, config=config)
        return _bf16_dense(m, n, k, major, config=config)

    return [Case(family, _forced_name(m, n, k, major, config), make(m, n, k, major, config))
            for name, m, n, k, major, config in FORCED_CONFIGS if name == family]


def fp8_cases() -> list[Case]:
    """FP8 1D2D: dense (M, N and K tails; FP32 out; forced multicast and D chunks) and every grouped kind."""
    import torch

    dense = [Case("fp8_1d2d", f"dense {m}x{n}x{k}", _fp8_dense(m, n, k))
             for m, n, k in ((1, 8, 16), (7, 120, 208), (65, 264, 384), (129, 136, 128), (300, 200, 272))]
    return [
        *dense,
        Case("fp8_1d2d", "dense 100x96x256 fp32 out", _fp8_dense(100, 96, 256, torch.float32)),
        *_forced_cases("fp8_1d2d"),
        *(Case("fp8_1d2d", f"{op} {counts} n=264 k=272", _grouped(layout, counts, 264, 272, "fp8", op))
          for layout, op in (("contiguous", "contiguous"), ("contiguous", "offsets"))
          for counts in ([1, 130, 0, 77], [256, 5])),
        Case("fp8_1d2d", "masked [0, 65, 128, 3] of 128, n=264 k=272",
             _grouped("masked", [0, 65, 128, 3], 264, 272, "fp8", "masked", max_m=128)),
        Case("fp8_1d2d", "masked [17, 300] of 320, n=136 k=128",
             _grouped("masked", [17, 300], 136, 128, "fp8", "masked", max_m=320)),
        # 4 k-blocks: the kernel bulk-copies B scales straight from sfb (the two above: from the op's
        # copy with rows padded to 16 bytes).
        Case("fp8_1d2d", "masked [3, 200] of 256, n=264 k=512",
             _grouped("masked", [3, 200], 264, 512, "fp8", "masked", max_m=256)),
    ]


def bf16_cases() -> list[Case]:
    """16-bit: every storage layout with tails, C with FP32 out, forced multicast and D chunks, grouped."""
    import torch

    return [
        *(Case("bf16", f"{major} {m}x{n}x{k}", _bf16_dense(m, n, k, major))
          # A stored [K, M] (t) needs M a multiple of 8 (16-byte rows).
          for major in ("nt", "nn", "tn", "tt") for m, n, k in ((7 if major[0] == "n" else 8, 120, 72),
                                                                (200, 264, 328))),
        Case("bf16", "nt 129x136x64 with C, fp32 out", _bf16_dense(129, 136, 64, "nt", True, torch.float32)),
        *_forced_cases("bf16"),
        Case("bf16", "contiguous [1, 130, 0, 77] n=264 k=200",
             _grouped("contiguous", [1, 130, 0, 77], 264, 200, "bf16", "contiguous")),
        Case("bf16", "masked [0, 65, 128, 3] of 128, n=264 k=200",
             _grouped("masked", [0, 65, 128, 3], 264, 200, "bf16", "masked", max_m=128)),
    ]


def _expect(what: str, ok: Callable[[int], bool]) -> None:
    """That the heuristic makes the choice a case is named for (``ok`` of the SM count: split-K, one
    warpgroup) on this GPU's SM count, or on CHECK_NUM_SMS where set: a case that no longer reaches its
    code path fails rather than passes vacuously."""
    if DEVICE != "cuda" and CHECK_NUM_SMS is None:
        return
    import deepgemm

    num_sms = CHECK_NUM_SMS or deepgemm.get_num_sms()
    if not ok(num_sms):
        raise AssertionError(f"the heuristic no longer picks {what} on {num_sms} SMs")


def _fp8_1d1d_dense(m: int, n: int, k: int, out=None, c: str | None = None) -> Callable[[], float]:
    """``fp8_gemm_nt_1d1d``; ``c``: None, "separate" (an FP32 C) or "d" (C is d itself)."""
    def run() -> float:
        import torch

        import deepgemm
        from deepgemm.testing import calc_diff, make_wgrad_inputs

        inputs = make_wgrad_inputs(m, n, k, torch.device(DEVICE), m + n + k)
        d = torch.empty(m, n, device=DEVICE, dtype=out or torch.float32)
        acc = torch.randn(m, n, device=DEVICE) if c else None
        if c == "d":
            d.copy_(acc)
        deepgemm.fp8_gemm_nt_1d1d((inputs.a, inputs.sa), (inputs.b, inputs.sb), d,
                                  d if c == "d" else acc)
        ref = inputs.reference("fp8").double() + (acc.double() if c else 0)
        return calc_diff(d, ref)

    return run


def _fp8_1d1d_k_grouped(m: int, n: int, ks: list[int], c: str | None = None) -> Callable[[], float]:
    def run() -> float:
        import torch

        import deepgemm
        from deepgemm.testing import calc_diff, make_wgrad_inputs

        inputs = make_wgrad_inputs(m, n, ks, torch.device(DEVICE), m + n + sum(ks))
        d = torch.full((len(ks), m, n), float("nan"), device=DEVICE)
        acc = torch.randn(len(ks), m, n, device=DEVICE) if c else None
        if c == "d":
            d.copy_(acc)
        deepgemm.k_grouped_fp8_gemm_nt_1d1d((inputs.a, inputs.sa), (inputs.b, inputs.sb), d, inputs.ks_tensor,
                                            list(ks), c=d if c == "d" else acc)
        ref = inputs.reference("fp8").double() + (acc.double() if c else 0)
        return calc_diff(d, ref)

    return run


def _int8_dense(m: int, n: int, k: int, out, bias: bool = False, azp: bool = False) -> Callable[[], float]:
    """``int8_gemm_nt``: int32 ``out`` the raw sums of unscaled operands, else scaled (bias, zero points)."""
    def run() -> float:
        import torch

        import deepgemm
        from deepgemm.testing import calc_diff, make_int8_inputs, ref_int8_gemm_nt

        inputs = make_int8_inputs(m, n, k, torch.device(DEVICE), m + n + k)
        raw = out == torch.int32
        a, b = (inputs.a, inputs.b) if raw else ((inputs.a, inputs.sa), (inputs.b, inputs.sb))
        generator = torch.Generator(device=DEVICE).manual_seed(m + n)
        bias_t = torch.randn(n, device=DEVICE, generator=generator) if bias else None
        azp_t = None
        if azp:
            zp = torch.randint(-8, 8, (m,), device=DEVICE, dtype=torch.int32, generator=generator)
            azp_t = (zp, inputs.b.sum(-1, dtype=torch.int32))
        d = torch.empty(m, n, device=DEVICE, dtype=out)
        deepgemm.int8_gemm_nt(a, b, d, bias=bias_t, azp=azp_t)
        return calc_diff(d, ref_int8_gemm_nt(a, b, bias_t, azp_t))

    return run


def _int8_grouped(op: str, counts: list[int], n: int, k: int, scaled: bool, extras: bool = False,
                  max_m: int | None = None) -> Callable[[], float]:
    """The grouped INT8 ops (``op``: contiguous, offsets, masked) on experts of ``counts`` rows: raw int32
    sums, or BF16 from scaled operands (``extras``: with a bias per expert and zero points per row)."""
    def run() -> float:
        import torch

        import deepgemm
        from deepgemm.testing import calc_diff, contiguous_starts, ref_int8_gemm_nt

        generator = torch.Generator(device=DEVICE).manual_seed(sum(counts) + n + k)
        groups = len(counts)
        if op == "masked":
            rows_of = [torch.arange(count) + g * max_m for g, count in enumerate(counts)]
            a_rows = groups * max_m
        else:
            starts = contiguous_starts(counts)
            rows_of = [torch.arange(count) + start for start, count in zip(starts, counts, strict=True)]
            a_rows = sum(-(-count // 128) * 128 for count in counts)
        A = torch.randint(-128, 128, (a_rows, k), device=DEVICE, dtype=torch.int8, generator=generator)
        B = torch.randint(-128, 128, (groups, n, k), device=DEVICE, dtype=torch.int8, generator=generator)
        sa = torch.rand(a_rows, device=DEVICE, generator=generator) / 127 + 1e-3
        sb = torch.rand(groups, n, device=DEVICE, generator=generator) / 127 + 1e-3
        bias = torch.randn(groups, n, device=DEVICE, generator=generator) if extras else None
        zp = torch.randint(-8, 8, (a_rows,), device=DEVICE, dtype=torch.int32, generator=generator)
        b_sums = B.sum(-1, dtype=torch.int32)
        d = torch.zeros(a_rows, n, device=DEVICE, dtype=torch.bfloat16 if scaled else torch.int32)
        shaped = (lambda x: x.view(groups, max_m, *x.shape[1:])) if op == "masked" else (lambda x: x)
        a = (shaped(A), shaped(sa)) if scaled else shaped(A)
        b = (B, sb) if scaled else B
        kwargs = {"bias": bias, "azp": (shaped(zp), b_sums)} if extras else {}
        if op == "contiguous":
            m_indices = torch.full((a_rows,), -1, dtype=torch.int32)
            for group, rows in enumerate(rows_of):
                m_indices[rows] = group
            deepgemm.m_grouped_int8_gemm_nt_contiguous(a, b, d, m_indices.to(DEVICE), **kwargs)
        elif op == "offsets":
            ends, end = [], 0
            for start, count in zip(starts, counts, strict=True):
                end = start + count if count else end  # an empty expert takes no rows
                ends.append(end)
            group_ends = torch.tensor(ends, dtype=torch.int32, device=DEVICE)
            deepgemm.m_grouped_int8_gemm_nt_contiguous_offsets(a, b, d, group_ends, **kwargs)
        else:
            masked_m = torch.tensor(counts, dtype=torch.int32, device=DEVICE)
            deepgemm.m_grouped_int8_gemm_nt_masked(a, b, shaped(d), masked_m, max(1, sum(counts) // groups),
                                                   **kwargs)
        got, want = [], []
        for group, rows in enumerate(rows_of):
            if not len(rows):
                continue
            rows = rows.to(DEVICE)
            a_g = (A[rows], sa[rows]) if scaled else A[rows]
            b_g = (B[group], sb[group]) if scaled else B[group]
            want.append(ref_int8_gemm_nt(a_g, b_g, bias[group] if extras else None,
                                         (zp[rows], b_sums[group]) if extras else None))
            got.append(d[rows])
        return calc_diff(torch.cat(got), torch.cat(want))

    return run


def _tf32(m: int, n: int, k: int, major: str, num_terms: int = 1,
          c: str | None = None) -> Callable[[], float]:
    """``tf32_gemm_<major>`` (``num_terms=3``: ``tf32x3_gemm_nt`` on the layout's views); ``c``: None,
    "separate" or "d" (C is d itself)."""
    def run() -> float:
        import torch

        import deepgemm
        from deepgemm.testing import calc_diff, make_fp32_inputs

        inputs = make_fp32_inputs(m, n, k, major, torch.device(DEVICE), m + n + k)
        d = torch.empty(m, n, device=DEVICE)
        acc = torch.randn(m, n, device=DEVICE) if c else None
        if c == "d":
            d.copy_(acc)
        c_arg = d if c == "d" else acc
        if num_terms == 3:
            deepgemm.tf32x3_gemm_nt(inputs.a_mk, inputs.b_kn.t(), d, c_arg)
        else:
            getattr(deepgemm, f"tf32_gemm_{major}")(inputs.a, inputs.b, d, c_arg)
        ref = inputs.reference("fp64" if num_terms == 3 else "tf32") + (acc.double() if c else 0)
        return calc_diff(d, ref)

    return run


def _wonly(m: int, n: int, k: int, bits: int, group_size: int | None, zeros: bool = False,
           dtype=None, out=None, counts: tuple[int, ...] | None = None,
           expect: tuple[str, Callable] | None = None) -> Callable[[], float]:
    """``w8a16_gemm_nt`` / ``w4a16_gemm_nt`` (with ``counts``: their masked twins, ``m`` rows per expert);
    ``expect``: (what, test of the heuristic's config) the case is there for, checked on the GPU."""
    def run() -> float:
        import torch

        import deepgemm
        from deepgemm.heuristics.families.wonly import select_wonly_config
        from deepgemm.testing import calc_diff, make_weight_only_inputs

        if expect is not None:
            if counts is None:
                _expect(expect[0], lambda sms: expect[1](select_wonly_config(m, n, k, bits, sms)))
            else:
                expected_m = max(1, sum(counts) // len(counts))
                _expect(expect[0], lambda sms: expect[1](
                    select_wonly_config(expected_m, n, k, bits, sms, len(counts), True)))
        act = dtype or torch.bfloat16
        groups = None if counts is None else len(counts)
        inputs = make_weight_only_inputs(m, n, k, bits, torch.device(DEVICE), m + n + k,
                                         group_size=group_size, zero_points=zeros, dtype=act,
                                         num_groups=groups, counts=counts)
        name = f"w{bits}a16_gemm_nt"
        if counts is None:
            d = torch.empty(m, n, device=DEVICE, dtype=out or act)
            getattr(deepgemm, name)(inputs.a, inputs.b, d, group_size=group_size)
        else:
            d = torch.zeros(len(counts), m, n, device=DEVICE, dtype=out or act)
            getattr(deepgemm, f"m_grouped_{name}_masked")(inputs.a, inputs.b, d, inputs.masked_m,
                                                          max(1, sum(counts) // len(counts)),
                                                          group_size=group_size)
        return calc_diff(inputs.valid_rows(d), inputs.reference())

    return run


def _split_fp8(m: int, n: int, k: int, out=None) -> Callable[[], float]:
    """``fp8_gemm_nt`` on a few-tile shape the heuristic splits along K (checked on the GPU)."""
    def run() -> float:
        import torch

        from deepgemm.heuristics import FP8_1D2D, GemmShape
        from deepgemm.ops.common.launch import choose_config

        out_bytes = torch.empty(0, dtype=out or torch.bfloat16).element_size()
        shape = GemmShape(m, n, k, out_bytes, family=FP8_1D2D)
        _expect("split-K", lambda sms: choose_config(shape, sms).split_k > 1)
        return _fp8_dense(m, n, k, out)()

    return run


def _split_bf16(m: int, n: int, k: int, major: str, with_c: bool = False, out=None) -> Callable[[], float]:
    """A 16-bit GEMM on a few-tile shape the heuristic splits along K (checked on the GPU); with C the
    reduction adds it."""
    def run() -> float:
        import torch

        from deepgemm.heuristics import BF16, GemmShape
        from deepgemm.ops.common.launch import choose_config

        out_bytes = torch.empty(0, dtype=out or torch.bfloat16).element_size()
        shape = GemmShape(m, n, k, out_bytes, family=BF16, b_mn_major=major[1] == "n")
        _expect("split-K", lambda sms: choose_config(shape, sms).split_k > 1)
        return _bf16_dense(m, n, k, major, with_c, out)()

    return run


def _cast(kind: str, shape: tuple[int, ...], dtype, **flags) -> Callable[[], float]:
    """A ``deepgemm.quant`` FP8 cast (``kind``: per_token, per_block, per_block_and_transpose,
    per_token_transposed) against its torch implementation on the same tensor: 0.0 when every FP8 value
    and scale has the same bits, else 1.0 (on the CPU both are the torch implementation)."""
    def run() -> float:
        import torch

        from deepgemm import quant
        from deepgemm.quant import cast as torch_path

        generator = torch.Generator(device=DEVICE).manual_seed(sum(shape))
        x = torch.randn(shape, generator=generator, device=DEVICE)
        # Rows over many binades, one all zero: every scale path (floor, ordinary, large).
        x = x * torch.logspace(-6, 3, shape[-2], device=DEVICE).view(shape[-2], 1)
        x[..., 1, :] = 0
        x = x.to(dtype)
        if kind == "per_token":
            got = [quant.per_token_cast_to_fp8(x, **flags)]
            want = [torch_path._per_token_torch(x)]
        elif kind == "per_token_transposed":
            got = [quant.per_token_cast_to_fp8_transposed(x, **flags)]
            want = [torch_path._per_token_torch(x.T)]
            if flags.get("pad_tokens"):  # the padding columns must be zero
                q, sf = got[0]
                pad = torch.zeros(q.shape[0], q.shape[1] - shape[0], dtype=q.dtype, device=DEVICE)
                want = [(torch.cat([want[0][0], pad], dim=1), want[0][1])]
        elif kind == "per_block":
            got = [quant.per_block_cast_to_fp8(x)]
            want = [torch_path._per_block_torch(x)]
        else:
            got = list(quant.per_block_cast_to_fp8_and_transpose(x))
            q, sf = torch_path._per_block_torch(x)
            want = [(q, sf), (q.transpose(-1, -2).contiguous(), sf.transpose(-1, -2).contiguous())]

        def bits(t: torch.Tensor) -> torch.Tensor:
            return t.contiguous().view(torch.uint8 if t.element_size() == 1 else torch.int32)

        same = all(g.shape == w.shape and torch.equal(bits(g), bits(w))
                   for pair_got, pair_want in zip(got, want, strict=True)
                   for g, w in zip(pair_got, pair_want, strict=True))
        return 0.0 if same else 1.0

    return run


def fp8_1d1d_cases() -> list[Case]:
    """FP8 1D1D (weight gradients): dense FP32 out with and without C (separate, and d itself), BF16 out,
    M and N tails (N not a multiple of 4 takes the padded-copy store); k-grouped with an empty group."""
    import torch

    f = "fp8_1d1d"
    return [
        Case(f, "dense 7x120x256 fp32 out", _fp8_1d1d_dense(7, 120, 256)),
        Case(f, "dense 129x65x384 fp32 out", _fp8_1d1d_dense(129, 65, 384)),
        Case(f, "dense 300x200x256 fp32 out", _fp8_1d1d_dense(300, 200, 256)),
        Case(f, "dense 65x129x256 with C", _fp8_1d1d_dense(65, 129, 256, c="separate")),
        Case(f, "dense 129x136x384 C is d", _fp8_1d1d_dense(129, 136, 384, c="d")),
        Case(f, "dense 1x7x128 C is d", _fp8_1d1d_dense(1, 7, 128, c="d")),
        Case(f, "dense 65x264x384 bf16 out", _fp8_1d1d_dense(65, 264, 384, torch.bfloat16)),
        Case(f, "dense 7x1000x128 bf16 out", _fp8_1d1d_dense(7, 1000, 128, torch.bfloat16)),
        Case(f, "k-grouped [128, 0, 256] 129x136", _fp8_1d1d_k_grouped(129, 136, [128, 0, 256])),
        Case(f, "k-grouped [0, 256, 128] 65x65 C is d", _fp8_1d1d_k_grouped(65, 65, [0, 256, 128], c="d")),
        Case(f, "k-grouped [384] 7x8 with C", _fp8_1d1d_k_grouped(7, 8, [384], c="separate")),
    ]


def int8_cases() -> list[Case]:
    """INT8 W8A8: dense raw int32 sums and scaled outputs (BF16, FP16 with bias and zero points, FP32 with
    bias) with M, N and K tails; every grouped kind, raw and scaled (bias and zero points)."""
    import torch

    f = "int8"
    return [
        Case(f, "dense 7x136x208 int32", _int8_dense(7, 136, 208, torch.int32)),
        Case(f, "dense 129x12x48 int32", _int8_dense(129, 12, 48, torch.int32)),
        Case(f, "dense 65x264x272 bf16", _int8_dense(65, 264, 272, torch.bfloat16)),
        Case(f, "dense 300x200x256 bf16", _int8_dense(300, 200, 256, torch.bfloat16)),
        Case(f, "dense 129x136x208 fp16 bias azp", _int8_dense(129, 136, 208, torch.float16, True, True)),
        Case(f, "dense 7x120x64 fp32 bias", _int8_dense(7, 120, 64, torch.float32, True)),
        Case(f, "contiguous [1, 130, 0, 77] n=264 k=272 int32",
             _int8_grouped("contiguous", [1, 130, 0, 77], 264, 272, False)),
        Case(f, "contiguous [256, 5] n=136 k=208 bf16 bias azp",
             _int8_grouped("contiguous", [256, 5], 136, 208, True, True)),
        Case(f, "offsets [1, 130, 0, 77] n=264 k=272 bf16",
             _int8_grouped("offsets", [1, 130, 0, 77], 264, 272, True)),
        Case(f, "masked [0, 65, 128, 3] of 128, n=136 k=208 int32",
             _int8_grouped("masked", [0, 65, 128, 3], 136, 208, False, max_m=128)),
        Case(f, "masked [17, 300] of 320, n=136 k=128 bf16 bias azp",
             _int8_grouped("masked", [17, 300], 136, 128, True, True, max_m=320)),
    ]


def tf32_cases() -> list[Case]:
    """TF32: every storage layout with tails (the other layouts, and NT with K not a multiple of 4, stage
    their operands through the copy kernel), C separate and in place; 3xTF32."""
    f = "tf32"
    return [
        *(Case(f, f"{major} {m}x{n}x{k}", _tf32(m, n, k, major))
          for major in ("nt", "nn", "tn", "tt") for m, n, k in ((7, 120, 72), (129, 264, 200))),
        Case(f, "nt 65x136x130 (K staged)", _tf32(65, 136, 130, "nt")),
        Case(f, "nn 65x136x96 with C", _tf32(65, 136, 96, "nn", c="separate")),
        Case(f, "tt 129x120x64 C is d", _tf32(129, 120, 64, "tt", c="d")),
        Case(f, "3xtf32 nt 129x136x200", _tf32(129, 136, 200, "nt", 3)),
        Case(f, "3xtf32 nn 7x264x130 C is d", _tf32(7, 264, 130, "nn", 3, c="d")),
    ]


def wonly_cases() -> list[Case]:
    """Weight-only: W8A16 per channel and per group, W4A16 symmetric and with zero points (group 128),
    FP16 activations, FP32 out, K not a multiple of the group; decode shapes the heuristic splits along K
    (the cross-CTA counter reduction) and one it gives one warpgroup; shapes with more units than the
    persistent grid's CTAs (dense split and unsplit, masked); the masked twins."""
    import torch

    f = "wonly"
    split = ("split-K", lambda cfg: cfg.num_splits > 1)
    one_warpgroup = ("one warpgroup with split-K",
                     lambda cfg: cfg.num_math_warpgroups == 1 and cfg.num_splits > 1)

    def persistent(m: int, n: int, num_groups: int = 1, split: bool = False) -> tuple[str, Callable]:
        """More units than CTAs: each CTA of the persistent grid walks several (dense: K ranges of tiles,
        with `split` the K range of a tile cut over CTAs; masked: one expert's n-block each)."""
        def ok(cfg) -> bool:
            m_blocks = 1 if num_groups > 1 else -(-m // cfg.block_m)
            units = m_blocks * num_groups * -(-n // cfg.block_n) * cfg.num_splits
            return units > cfg.grid and (cfg.num_splits > 1) == split
        return ("several units per CTA" + (" with split-K" if split else ""), ok)

    return [
        Case(f, "w8 channel 7x264x1000", _wonly(7, 264, 1000, 8, None)),
        Case(f, "w8 g128 65x200x512", _wonly(65, 200, 512, 8, 128)),
        Case(f, "w4 g128 zeros 129x136x256", _wonly(129, 136, 256, 4, 128, True)),
        Case(f, "w4 g128 300x136x200", _wonly(300, 136, 200, 4, 128)),
        Case(f, "w4 g128 zeros 33x520x1024 fp16 in, fp32 out",
             _wonly(33, 520, 1024, 4, 128, True, torch.float16, torch.float32)),
        Case(f, "w8 channel 1x256x2048 split-K", _wonly(1, 256, 2048, 8, None, expect=split)),
        Case(f, "w4 g128 zeros 5x512x1024 split-K", _wonly(5, 512, 1024, 4, 128, True, expect=split)),
        Case(f, "w4 g128 7x520x4096 one warpgroup, split-K",
             _wonly(7, 520, 4096, 4, 128, expect=one_warpgroup)),
        Case(f, "w4 g128 5x11264x2048 split-K, several units per CTA",
             _wonly(5, 11264, 2048, 4, 128, expect=persistent(5, 11264, split=True))),
        Case(f, "w8 channel 520x8192x256 several tiles per CTA",
             _wonly(520, 8192, 256, 8, None, expect=persistent(520, 8192))),
        Case(f, "masked w8 channel [16, 48, 0, 33] of 48, n=264 k=512",
             _wonly(48, 264, 512, 8, None, counts=(16, 48, 0, 33))),
        Case(f, "masked w4 g128 zeros [0, 129, 65] of 200, n=136 k=512",
             _wonly(200, 136, 512, 4, 128, True, counts=(0, 129, 65))),
        Case(f, "masked w4 g128 [16, 0, 7, 16, 3] of 16, n=4096 k=512, several units per CTA",
             _wonly(16, 4096, 512, 4, 128, counts=(16, 0, 7, 16, 3), expect=persistent(16, 4096, 5))),
    ]


def split_k_cases() -> list[Case]:
    """Split-K (FP8 1D2D and 16-bit dense): few-tile shapes the heuristic splits along K, M and N tails,
    FP32 out, C added by the reduction."""
    import torch

    f = "split_k"
    return [
        Case(f, "fp8 16x1024x7168", _split_fp8(16, 1024, 7168)),
        Case(f, "fp8 7x576x7168 fp32 out", _split_fp8(7, 576, 7168, torch.float32)),
        Case(f, "fp8 65x520x4096", _split_fp8(65, 520, 4096)),
        Case(f, "fp8 129x264x3072", _split_fp8(129, 264, 3072)),
        Case(f, "bf16 nt 64x4096x7168 with C", _split_bf16(64, 4096, 7168, "nt", True)),
        Case(f, "bf16 nt 63x520x7168", _split_bf16(63, 520, 7168, "nt")),
        Case(f, "bf16 nt 33x512x1024 with C, fp32 out",
             _split_bf16(33, 512, 1024, "nt", True, torch.float32)),
        Case(f, "bf16 nn 16x512x3072", _split_bf16(16, 512, 3072, "nn")),
    ]


def cast_cases() -> list[Case]:
    """The fused FP8 casts of ``deepgemm.quant`` on CUDA inputs (BF16, FP16, FP32; rows a multiple of 8
    elements take 16-byte loads, others not), bit for bit against the torch implementation."""
    import torch

    f = "cast"
    bf16, fp16, fp32 = torch.bfloat16, torch.float16, torch.float32
    return [
        Case(f, "per_token bf16 65x200", _cast("per_token", (65, 200), bf16)),
        Case(f, "per_token fp32 7x133", _cast("per_token", (7, 133), fp32)),
        Case(f, "per_token fp16 3x17x256", _cast("per_token", (3, 17, 256), fp16)),
        Case(f, "per_token bf16 129x384 mn-major scales",
             _cast("per_token", (129, 384), bf16, mn_major_scales=True)),
        Case(f, "per_block bf16 130x200", _cast("per_block", (130, 200), bf16)),
        Case(f, "per_block fp32 7x133", _cast("per_block", (7, 133), fp32)),
        Case(f, "per_block_and_transpose bf16 130x264", _cast("per_block_and_transpose", (130, 264), bf16)),
        Case(f, "per_block_and_transpose fp32 65x133", _cast("per_block_and_transpose", (65, 133), fp32)),
        Case(f, "per_token_transposed bf16 65x200 padded", _cast("per_token_transposed", (65, 200), bf16,
                                                                  pad_tokens=True)),
        Case(f, "per_token_transposed fp32 129x133 mn-major scales",
             _cast("per_token_transposed", (129, 133), fp32, mn_major_scales=True)),
    ]


# Each kernel family's cases; a new family adds its function here.
FAMILY_CASES: dict[str, Callable[[], list[Case]]] = {
    "fp8_1d2d": fp8_cases,
    "bf16": bf16_cases,
    "fp8_1d1d": fp8_1d1d_cases,
    "int8": int8_cases,
    "tf32": tf32_cases,
    "wonly": wonly_cases,
    "split_k": split_k_cases,
    "cast": cast_cases,
}


def selected_cases(family: str | None, text: str | None) -> list[Case]:
    families = [family] if family else list(FAMILY_CASES)
    cases = [case for name in families for case in FAMILY_CASES[name]()]
    return [case for case in cases if text is None or text in f"{case.family} {case.name}"]


def run_cases(cases: list[Case]) -> int:
    """Runs ``cases`` here; prints one line each; returns how many were wrong or raised."""
    import torch

    failures = 0
    for case in cases:
        try:
            diff = case.run()
            if DEVICE == "cuda":
                torch.cuda.synchronize()
            ok = diff < MAX_DIFF
            print(f"{'ok   ' if ok else 'WRONG'} {case.family} {case.name}: calc_diff {diff:.2e}", flush=True)
        except Exception as error:  # one bad case must not hide the others' results
            ok = False
            print(f"ERROR {case.family} {case.name}: {type(error).__name__}: {error}", flush=True)
        failures += not ok
    return failures


def sanitizer_path() -> str | None:
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for candidate in sorted(Path("/usr/local").glob("cuda*/bin/compute-sanitizer"), reverse=True):
        return str(candidate)
    return None


def run_tool_per_family(sanitizer: str, tool: str, families: list[str], text: str | None,
                        logs: Path | None) -> dict:
    """``run_tool`` once per family, each in its own process: the sanitizer stops a kernel at its first
    error and the CUDA context is lost with it, so one family's error must not hide the others'
    results. The sum over the families, with each family's errors under ``"families"``."""
    runs = {}
    for family in families:
        case_args = ["--family", family, *(["-k", text] if text else [])]
        log = logs / f"{tool}-{family}.log" if logs else None
        runs[family] = run_tool(sanitizer, tool, case_args, log)
    counts = [run["errors"] for run in runs.values()]
    return {"tool": tool, "errors": None if None in counts else sum(counts),
            "cases_wrong": sum(run["cases_wrong"] for run in runs.values()),
            "returncode": max(run["returncode"] for run in runs.values()),
            "seconds": round(sum(run["seconds"] for run in runs.values()), 1),
            "families": {family: run["errors"] for family, run in runs.items()},
            "error_lines": [line for run in runs.values() for line in run["error_lines"]][:40]}


def run_tool(sanitizer: str, tool: str, case_args: list[str], log: Path | None) -> dict:
    """One tool over every case in a child process; its error count from the ERROR SUMMARY line (for
    racecheck, the RACECHECK SUMMARY line's errors and warnings)."""
    command = [sanitizer, "--tool", tool, "--error-exitcode", "1", "--report-api-errors", "no",
               *TOOL_OPTIONS[tool], sys.executable, str(Path(__file__).resolve()), "--run", *case_args]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if log is not None:
        log.write_text(output)
    counts = [int(found) for found in ERROR_SUMMARY.findall(output)]
    counts += [int(errors) + int(warnings) for errors, warnings in RACECHECK_SUMMARY.findall(output)]
    wrong = sum(line.startswith(("WRONG", "ERROR")) for line in proc.stdout.splitlines())
    return {"tool": tool, "errors": sum(counts) if counts else None, "cases_wrong": wrong,
            "returncode": proc.returncode, "seconds": round(time.monotonic() - started, 1),
            "error_lines": [line for line in output.splitlines() if line.startswith("========= ")][:40]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run the cases in this process (no sanitizer)")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument("--family", choices=tuple(FAMILY_CASES), help="one family's cases only")
    parser.add_argument("-k", metavar="TEXT", help="only the cases whose name contains TEXT")
    parser.add_argument("--list", action="store_true", help="print the cases and exit")
    parser.add_argument("--json", type=Path, help="write the per-tool summary here")
    parser.add_argument("--logs", type=Path,
                        help="write each tool's output per family to LOGS/<tool>-<family>.log")
    args = parser.parse_args(argv)
    tools = [tool.strip() for tool in args.tools.split(",") if tool.strip()]
    if not tools or set(tools) - set(TOOLS):
        parser.error(f"--tools must name some of {', '.join(TOOLS)}")
    cases = selected_cases(args.family, args.k)
    if args.list:
        print("\n".join(f"{case.family}: {case.name}" for case in cases))
        return 0
    from _gpu import require_hopper

    require_hopper()
    if args.run:
        return 1 if run_cases(cases) else 0
    sanitizer = sanitizer_path()
    if sanitizer is None:
        print("sanitize.py: compute-sanitizer not found (PATH, /usr/local/cuda*/bin)", file=sys.stderr)
        return 2
    print(f"== warm-up: {len(cases)} cases without the sanitizer (compiles the kernels)", flush=True)
    wrong = run_cases(cases)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    families = list(dict.fromkeys(case.family for case in cases))
    results = []
    for tool in tools:
        print(f"== {tool} ...", flush=True)
        result = run_tool_per_family(sanitizer, tool, families, args.k, args.logs)
        results.append(result)
        errors = "no ERROR SUMMARY (crashed?)" if result["errors"] is None else f"{result['errors']} errors"
        print(f"{tool}: {errors}, {result['cases_wrong']} cases wrong, exit {result['returncode']}, "
              f"{result['seconds']} s", flush=True)
        print("   per family: " + ", ".join(f"{family} {errors if errors is not None else '?'}"
                                           for family, errors in result["families"].items()))
        for line in result["error_lines"][:10]:
            print("   " + line)
    summary = {"cases": len(cases), "cases_wrong_without_sanitizer": wrong, "tools": results,
               "ok": wrong == 0 and all(r["errors"] == 0 and r["returncode"] == 0 and not r["cases_wrong"]
                                        for r in results)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsanitize: {len(cases)} cases; " + "; ".join(
        f"{r['tool']} {r['errors'] if r['errors'] is not None else '?'} errors" for r in results)
          + ("" if summary["ok"] else "  FAILED"))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
