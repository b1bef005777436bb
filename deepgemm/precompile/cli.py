"""``python -m deepgemm.precompile``: build the kernels of a model's GEMM shapes into the JIT cache.

Shapes come from ``--shape M,N,K`` (M may be a range ``LO-HI``: every M in it, so any batch size in the
range runs without compiling), ``--json FILE`` and ``--preset NAME`` (the benchmark's suites, and
``deepseek-v3``: the DeepSeek-V3 dense and grouped suites). No GPU is needed: the kernels are chosen for
``--num-sms`` SMs of an sm_90a GPU and compiled with the JIT's compiler (``DG_JIT_COMPILER``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..heuristics.config import CONTIGUOUS, DENSE, MASKED
from ..ops.common.launch import KernelRequest
from . import DEFAULT_NUM_SMS, FAMILY_KERNEL_SPECS, build_all, kernel_specs, progress_bar

# Presets beyond the benchmark's suite names (each of those is a preset of its own).
PRESET_GROUPS = {"deepseek-v3": ("dense", "grouped_contiguous", "grouped_masked", "grouped_decode")}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LAYOUTS = (DENSE, CONTIGUOUS, MASKED)
MAJORS = ("nt", "nn", "tn", "tt")
MAX_M_RANGE = 1 << 16
CONTIGUOUS_ALIGNMENT = 128


def suite_requests(name: str) -> list[KernelRequest]:
    """The requests of every deepgemm op a benchmark suite runs: each problem, and for the grouped suites
    the dense GEMM of the same total size (the ``deepgemm_dense`` provider)."""
    from ..bench.runner import HOST_OVERHEAD_PROBLEM
    from ..bench.suites import SUITES

    suite = SUITES[name]
    dense_twin = any(provider.name == "deepgemm_dense" for provider in suite.providers)
    problems = (*suite.problems, HOST_OVERHEAD_PROBLEM) if name == "dense" else suite.problems
    requests = []
    for p in problems:
        if p.layout == DENSE:
            requests.append(KernelRequest(suite.family, p.m, p.n, p.k, major=p.major))
            continue
        # The contiguous ops choose the config by A's rows (each group's rows aligned to 128), the masked
        # ones by expected_m (the suite passes m).
        config_m = p.num_groups * -(-p.m // CONTIGUOUS_ALIGNMENT) * CONTIGUOUS_ALIGNMENT \
            if p.layout == CONTIGUOUS else p.m
        requests.append(KernelRequest(suite.family, config_m, p.n, p.k, p.layout, p.num_groups))
        if dense_twin:
            requests.append(KernelRequest(suite.family, p.num_groups * p.m, p.n, p.k))
    return requests


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


def shape_requests(m: str, n: int, k: int, family: str = "fp8_1d2d", layout: str = DENSE,
                   num_groups: int = 1, out_dtype: str = "bf16", major: str = "nt",
                   in_dtype: str = "bf16", has_c: bool = False) -> Iterator[KernelRequest]:
    """One request per M of ``m`` (see ``m_values``); raises ``ValueError`` naming a bad field."""
    for what, value, allowed in (("family", family, tuple(FAMILY_KERNEL_SPECS)),
                                 ("layout", layout, LAYOUTS), ("out_dtype", out_dtype, tuple(DTYPES)),
                                 ("in_dtype", in_dtype, ("bf16", "fp16")), ("major", major, MAJORS)):
        if value not in allowed:
            raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    for what, value in (("N", n), ("K", k), ("groups", num_groups)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    for value in m_values(m):
        yield KernelRequest(family, value, n, k, layout, num_groups, DTYPES[out_dtype], major,
                            DTYPES[in_dtype], has_c)


def json_requests(path: Path) -> list[KernelRequest]:
    """A JSON list of shapes (or ``{"shapes": [...]}``), each ``{"m": 128 or "1-4096", "n": .., "k": ..}``
    plus optional ``family``, ``layout``, ``groups``, ``out_dtype``, ``major``, ``in_dtype``, ``has_c``;
    ``"preset": NAME`` entries name presets."""
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
    parser.add_argument("--family", default="fp8_1d2d", choices=tuple(FAMILY_KERNEL_SPECS))
    parser.add_argument("--layout", default=DENSE, choices=LAYOUTS,
                        help="for grouped layouts M is M_sum (contiguous) or expected_m (masked)")
    parser.add_argument("--groups", type=int, default=1, help="experts of the grouped layouts")
    parser.add_argument("--out-dtype", default="bf16", choices=tuple(DTYPES))
    parser.add_argument("--major", default="nt", choices=MAJORS, help="16-bit storage layout")
    parser.add_argument("--in-dtype", default="bf16", choices=("bf16", "fp16"), help="16-bit operand dtype")
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
                                       args.groups, args.out_dtype, args.major, args.in_dtype)
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
