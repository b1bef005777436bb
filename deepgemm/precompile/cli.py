"""``python -m deepgemm.precompile``: build the kernels of a model's GEMM shapes into the JIT cache.

Shapes come from ``--shape M,N,K`` (M may be a range ``LO-HI``: every M in it, so any batch size in the
range runs without compiling) of a kernel family (``--family`` and the options it takes: ``FAMILY_OPTIONS``),
``--json FILE`` and ``--preset NAME`` (the benchmark's suites, and ``deepseek-v3``: the DeepSeek-V3 dense and
grouped suites). No GPU is needed: the kernels are chosen for
``--num-sms`` SMs of an sm_90a GPU and compiled with the JIT's compiler (``DG_JIT_COMPILER``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..heuristics.config import CONTIGUOUS, DENSE, MASKED
from ..ops.common.launch import K_GROUPED, KernelRequest
from ..quant.wonly import DEFAULT_GROUP_SIZES, SLAB_COLS, check_group_size
from . import DEFAULT_NUM_SMS, build_all, kernel_specs, progress_bar
from .suites import suite_requests

# Presets beyond the benchmark's suite names (each of those is a preset of its own).
PRESET_GROUPS = {"deepseek-v3": ("dense", "grouped_contiguous", "grouped_masked", "grouped_decode")}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "int32": torch.int32}
LAYOUTS = (DENSE, CONTIGUOUS, MASKED, K_GROUPED)
MAJORS = ("nt", "nn", "tn", "tt")
MAX_M_RANGE = 1 << 16
DEFAULT = "default"


@dataclass(frozen=True)
class FamilyOptions:
    """The request fields a family takes: its layouts, its out / in dtypes (the first is the default;
    none: the family takes no such dtype), whether it takes a storage layout (``major``), the layouts it
    takes C in, the INT8 epilogue's bias and zero points, weight-only scale groups and zero points."""

    layouts: tuple[str, ...] = (DENSE,)
    out_dtypes: tuple[str, ...] = ()
    in_dtypes: tuple[str, ...] = ()
    majors: bool = False
    has_c: tuple[str, ...] = ()
    int8_epilogue: bool = False
    weight_only: bool = False
    zeros: bool = False


_16BIT_OUT = ("bf16", "fp16", "fp32")
_GROUPED = (DENSE, CONTIGUOUS, MASKED)
FAMILY_OPTIONS = {
    "fp8_1d2d": FamilyOptions(_GROUPED, ("bf16", "fp32")),
    "bf16": FamilyOptions(_GROUPED, _16BIT_OUT, ("bf16", "fp16"), majors=True, has_c=(DENSE,)),
    "fp8_1d1d": FamilyOptions((DENSE, K_GROUPED), ("fp32", "bf16"), has_c=(DENSE, K_GROUPED)),
    "int8": FamilyOptions(_GROUPED, ("bf16", "fp16", "fp32", "int32"), int8_epilogue=True),
    "tf32": FamilyOptions(out_dtypes=("fp32",), majors=True, has_c=(DENSE,)),
    "tf32x3": FamilyOptions(out_dtypes=("fp32",), majors=True, has_c=(DENSE,)),
    "w8a16": FamilyOptions((DENSE, MASKED), _16BIT_OUT, ("bf16", "fp16"), weight_only=True),
    "w4a16": FamilyOptions((DENSE, MASKED), _16BIT_OUT, ("bf16", "fp16"), weight_only=True, zeros=True),
    "cast": FamilyOptions(in_dtypes=("bf16", "fp16", "fp32")),
    "fp8_linear": FamilyOptions(in_dtypes=("bf16", "fp16", "fp32"), has_c=(DENSE,)),
    "fp8_grouped_linear": FamilyOptions((CONTIGUOUS,), in_dtypes=("bf16", "fp16", "fp32"),
                                        has_c=(CONTIGUOUS,)),
}


def preset_names() -> list[str]:
    from ..bench.suites import SUITES

    return [*PRESET_GROUPS, *SUITES]


def preset_requests(name: str) -> list[KernelRequest]:
    if name not in preset_names():
        raise ValueError(f"unknown preset {name!r}; one of {', '.join(preset_names())}")
    return [r for suite in PRESET_GROUPS.get(name, (name,)) for r in suite_requests(suite)]


def m_values(text: str) -> range:
    """``"128"`` or ``"1-4096"`` (inclusive) as a range of M."""
    low, _, high = str(text).partition("-")
    try:
        values = range(int(low), int(high or low) + 1)
    except ValueError:
        raise ValueError(f"M {text!r} must be an integer or a range LO-HI") from None
    if not values or values.start <= 0 or len(values) > MAX_M_RANGE:
        raise ValueError(f"M {text!r} must be positive, LO <= HI, at most {MAX_M_RANGE} values")
    return values


def _choice(what: str, value: str | None, allowed: tuple[str, ...], family: str) -> str | None:
    """``value`` checked against the family's ``allowed`` values; None: the first (the default)."""
    if not allowed:
        if value is not None:
            raise ValueError(f"family {family} takes no {what}, got {value!r}")
        return None
    if value is None:
        return allowed[0]
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)} for family {family}, got {value!r}")
    return value


def _flag(what: str, value: object, allowed: bool, family: str, rule: str = "") -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")
    if value and not allowed:
        raise ValueError(f"{what} does not apply to family {family}{rule}")
    return value


def shape_requests(m: str, n: int, k: int, family: str = "fp8_1d2d", layout: str | None = None,
                   num_groups: int = 1, out_dtype: str | None = None, major: str | None = None,
                   in_dtype: str | None = None, has_c: bool = False, bias: str | None = None,
                   azp: bool = False, group_size: int | str | None = DEFAULT,
                   zeros: bool = False) -> Iterator[KernelRequest]:
    """One request per M of ``m`` (see ``m_values``) for ``family`` (``FAMILY_OPTIONS`` says which fields
    it takes; a layout or dtype left None is the family's first, ``group_size`` ``"default"`` the op's);
    raises ``ValueError`` naming a bad field."""
    if family not in FAMILY_OPTIONS:
        raise ValueError(f"family must be one of {', '.join(FAMILY_OPTIONS)}, got {family!r}")
    options = FAMILY_OPTIONS[family]
    layout = _choice("layout", layout, options.layouts, family)
    out_dtype = _choice("out_dtype", out_dtype, options.out_dtypes, family)
    in_dtype = _choice("in_dtype", in_dtype, options.in_dtypes, family)
    major = major or "nt"
    if major not in MAJORS:
        raise ValueError(f"major must be one of {', '.join(MAJORS)}, got {major!r}")
    if major != "nt" and not (options.majors and layout == DENSE):
        raise ValueError(f"major {major!r} does not apply to family {family} with layout {layout} (nt only)")
    with_c = _flag("has_c", has_c, layout in options.has_c, family, f" with layout {layout}")
    if family == "fp8_1d1d" and (with_c or layout == K_GROUPED) and out_dtype != "fp32":
        raise ValueError(f"family fp8_1d1d accumulates (has_c) and k-groups into an fp32 d only, got "
                         f"out_dtype {out_dtype!r}")
    bias_dtype = _bias_dtype(bias, options, family, out_dtype)
    with_azp = _flag("azp", azp, options.int8_epilogue and out_dtype != "int32", family, " (int32 d: no azp)")
    group = _group_size(group_size, options, family)
    with_zeros = _flag("zeros", zeros, options.zeros, family)
    for what, value in (("N", n), ("K", k), ("groups", num_groups)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    for value in m_values(m):
        yield KernelRequest(family, value, n, k, layout, num_groups, DTYPES[out_dtype or "bf16"], major,
                            DTYPES[in_dtype or "bf16"], with_c, bias_dtype, with_azp, group, with_zeros)


def _bias_dtype(bias: str | None, options: FamilyOptions, family: str, out_dtype: str) -> torch.dtype | None:
    """INT8: no bias, or an FP32 one, or one of d's dtype (not for an int32 d)."""
    if bias is None:
        return None
    if not options.int8_epilogue:
        raise ValueError(f"bias does not apply to family {family}")
    allowed = () if out_dtype == "int32" else tuple(dict.fromkeys(("fp32", out_dtype)))
    if bias not in allowed:
        raise ValueError(f"bias must be one of {', '.join(allowed) or 'none (int32 d)'} for out_dtype "
                         f"{out_dtype}, got {bias!r}")
    return DTYPES[bias]


def _group_size(group_size: int | str | None, options: FamilyOptions, family: str) -> int | None:
    """Weight-only: ``"default"`` (the op's: 128 for w4a16, per-channel for w8a16), ``None`` or
    ``"none"`` (per-channel), or a positive multiple of 64."""
    if group_size == DEFAULT:
        return DEFAULT_GROUP_SIZES.get(family)
    if not options.weight_only:
        raise ValueError(f"group_size does not apply to family {family}")
    if group_size is None or group_size == "none":
        return None
    if isinstance(group_size, str) and group_size.isdigit():
        group_size = int(group_size)
    try:
        return check_group_size(group_size)
    except (TypeError, ValueError):
        raise ValueError(f"group_size must be none or a positive multiple of {SLAB_COLS}, got "
                         f"{group_size!r}") from None


def json_requests(path: Path) -> list[KernelRequest]:
    """A JSON list of shapes (or ``{"shapes": [...]}``), each ``{"m": 128 or "1-4096", "n": .., "k": ..}``
    plus optional ``family``, ``layout``, ``groups``, ``out_dtype``, ``major``, ``in_dtype``, ``has_c``,
    ``bias``, ``azp``, ``group_size`` (null: per-channel), ``zeros`` (``shape_requests``); ``"preset": NAME``
    entries name presets."""
    data = json.loads(path.read_text())
    entries = data.get("shapes") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of shapes or {{\"shapes\": [...]}}")
    requests = []
    for i, entry in enumerate(entries):
        try:
            if isinstance(entry, dict) and set(entry) == {"preset"}:
                requests += preset_requests(entry["preset"])
                continue
            fields = dict(entry)
            fields["num_groups"] = fields.pop("groups", 1)
            requests += shape_requests(str(fields.pop("m")), fields.pop("n"), fields.pop("k"), **fields)
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"{path}: shape {i} ({entry!r}): {error}") from None
    return requests


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deepgemm.precompile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", default=[], metavar="M,N,K",
                        help="a GEMM shape; M may be a range LO-HI (repeatable; the options below apply)")
    parser.add_argument("--json", action="append", default=[], type=Path, metavar="FILE",
                        help="shapes from a JSON file (see json_requests)")
    parser.add_argument("--preset", action="append", default=[], metavar="NAME",
                        help="shapes of a preset: deepseek-v3 or a benchmark suite name (repeatable)")
    parser.add_argument("--family", default="fp8_1d2d", choices=tuple(FAMILY_OPTIONS),
                        help="the kernel family (the options below apply where the family takes them)")
    parser.add_argument("--layout", choices=LAYOUTS,
                        help="default: the family's first (dense but for fp8_grouped_linear); for grouped "
                             "layouts M is M_sum (contiguous) or expected_m (masked); k_grouped (fp8_1d1d): "
                             "K is K_sum")
    parser.add_argument("--groups", type=int, default=1, help="experts of the grouped layouts")
    parser.add_argument("--out-dtype", choices=tuple(DTYPES), help="d's dtype (default: the family's first)")
    parser.add_argument("--major", choices=MAJORS, help="storage layout of A and B (bf16, tf32, tf32x3)")
    parser.add_argument("--in-dtype", choices=("bf16", "fp16", "fp32"),
                        help="operand dtype: bf16 and weight-only activations, cast and fp8_linear inputs")
    parser.add_argument("--has-c", action="store_true",
                        help="calls with C (bf16 and tf32 dense; fp8_1d1d and fp8_linear: FP32 accumulation)")
    parser.add_argument("--bias", choices=("fp32", "bf16", "fp16"), help="int8: the bias dtype")
    parser.add_argument("--azp", action="store_true", help="int8: zero-point correction")
    parser.add_argument("--group-size", default=DEFAULT,
                        help="w8a16 / w4a16: K per scale group, or none (per-channel; default: the op's)")
    parser.add_argument("--zeros", action="store_true", help="w4a16: zero points")
    parser.add_argument("--arch", default="sm_90a", choices=("sm_90a",), help="target architecture")
    parser.add_argument("--num-sms", type=int, default=DEFAULT_NUM_SMS,
                        help=f"SMs of the target GPU (default {DEFAULT_NUM_SMS}: H100 SXM, H200)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="parallel compiles")
    parser.add_argument("--cache-dir", type=Path, help="sets DG_JIT_CACHE_DIR")
    parser.add_argument("--compiler", choices=("auto", "nvrtc", "nvcc"), help="sets DG_JIT_COMPILER")
    parser.add_argument("--list", action="store_true", help="print the kernels and exit without building")
    args = parser.parse_args(argv)
    if not (args.shape or args.json or args.preset):
        parser.error("give shapes: --shape M,N,K, --json FILE or --preset NAME")
    if args.num_sms <= 0 or args.jobs <= 0 or args.groups <= 0:
        parser.error("--num-sms, --jobs and --groups must be positive")
    args.error = parser.error
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from ..jit import knobs

    # Knobs are read from the environment, also by the worker processes, which inherit it.
    if args.cache_dir is not None:
        knobs.set_knob("DG_JIT_CACHE_DIR", str(args.cache_dir.resolve()))
    if args.compiler is not None:
        knobs.set_knob("DG_JIT_COMPILER", args.compiler)
    try:
        requests = [r for name in args.preset for r in preset_requests(name)]
        requests += [r for path in args.json for r in json_requests(path)]
        for text in args.shape:
            fields = text.split(",")
            if len(fields) != 3:
                raise ValueError(f"--shape {text!r} must be M,N,K")
            requests += shape_requests(fields[0], int(fields[1]), int(fields[2]), args.family, args.layout,
                                       args.groups, args.out_dtype, args.major, args.in_dtype, args.has_c,
                                       args.bias, args.azp, args.group_size, args.zeros)
    except (ValueError, OSError) as error:
        args.error(str(error))
    specs = kernel_specs(requests, args.num_sms, args.jobs)
    from ..jit import get_compiler

    print(f"deepgemm precompile: {len(specs)} kernels for {len(requests)} shapes, {args.arch} with "
          f"{args.num_sms} SMs; compiler {get_compiler().identity()}; cache {knobs.jit_cache_dir()}",
          flush=True)
    if args.list:
        for spec in specs:
            print("  " + spec.comment.replace("\n", " "))
        return 0
    summary = build_all(specs, min(args.jobs, max(len(specs), 1)), progress_bar())
    for what, error in summary.failed:
        print(f"FAILED {what}: {error.splitlines()[0] if error else ''}", file=sys.stderr)
    print(f"deepgemm precompile: {summary.line()}")
    return 1 if summary.failed else 0
