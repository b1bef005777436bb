"""Checks that a refactor of kernel headers leaves the machine code unchanged: builds a set of kernel
instantiations with nvcc for sm_90a, dumps each one's SASS (``cuobjdump -sass``) and ptxas' resource
line (registers, stack frame, spills), and compares two such dumps.

    python tools/sass_compare.py dump BASE [--include DIR] [--families bf16,int8,tf32] [--per-family N]
    (edit the headers)
    python tools/sass_compare.py dump AFTER
    python tools/sass_compare.py diff BASE AFTER

The instantiations are not written by hand: they are the distinct template arguments the kernel compile
tests (tests/include/test_<family>_kernel_compile.py) and the precompile presets (every preset's requests
of the family, through ``deepgemm.precompile.kernel_specs``) instantiate. From those, ``dump`` keeps a set
that covers every value of every template argument other than N and K (which change trip counts and
immediates only) and every pair of such values that occur together, topped up to ``--per-family``
instantiations with an even spread of the rest (``--per-family 1000``: all of them). The
selection depends on the host code only, so a header-only change dumps the same set twice. ``--include``
compiles against another include directory (say, a copy of the headers before the change).

The SASS is compared as cuobjdump prints it minus the cubin's file name; instruction addresses stay in,
so even a reordering shows as a difference. Needs nvcc (``DG_JIT_NVCC``, ``CUDA_HOME`` or PATH) and
cuobjdump (PATH, ``$CUDA_HOME/bin`` or the ``nvidia-cuda-cuobjdump`` wheel).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib
import itertools
import json
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepgemm.jit.codegen import render_stub  # noqa: E402
from deepgemm.jit.compiler import NvccCompiler, find_nvcc  # noqa: E402
from deepgemm.testing.wgmma_hazards import disassemble, find_cuobjdump  # noqa: E402

FAMILIES = ("bf16", "int8", "tf32")
# The precompile families whose kernels each kernel family serves.
PRECOMPILE_FAMILIES = {"bf16": ("bf16",), "int8": ("int8",), "tf32": ("tf32", "tf32x3")}
# Leading template arguments that are problem sizes, not code branches: (N, K) for all three kernels.
NUM_SIZE_ARGS = 2
_RESOURCES = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
                        r"|Used (\d+) registers")


def _test_specs(family: str) -> list[tuple[str, str, tuple]]:
    module = importlib.import_module(f"tests.include.test_{family}_kernel_compile")
    kernel = importlib.import_module(f"deepgemm.ops.{family}.kernel")
    return [(kernel.KERNEL, kernel.HEADER, tuple(case.template_args)) for case in module.CASES]


def _preset_specs(family: str) -> list[tuple[str, str, tuple]]:
    from deepgemm.precompile import kernel_specs
    from deepgemm.precompile.cli import preset_names, preset_requests

    requests = [r for name in preset_names() for r in preset_requests(name)
                if r.family in PRECOMPILE_FAMILIES[family]]
    kernel = importlib.import_module(f"deepgemm.ops.{family}.kernel").KERNEL
    return [(s.name, s.header, tuple(s.template_args)) for s in kernel_specs(requests) if s.name == kernel]


def _features(template_args: tuple) -> set:
    """The values of the template arguments other than N and K, alone and in pairs."""
    values = [(i, arg) for i, arg in enumerate(template_args) if i >= NUM_SIZE_ARGS]
    return set(values) | set(itertools.combinations(values, 2))


def select(family: str, per_family: int) -> list[tuple[str, str, tuple]]:
    """Distinct instantiations of the family (up to N and K) that cover every value of every template
    argument and every pair of values that occur together (say, each storage layout in each kind)."""
    distinct: dict[tuple, tuple[str, str, tuple]] = {}
    for spec in _test_specs(family) + _preset_specs(family):
        distinct.setdefault(spec[2][NUM_SIZE_ARGS:], spec)
    specs = list(distinct.values())
    chosen: list[int] = []
    uncovered = set().union(*(_features(spec[2]) for spec in specs))
    while uncovered:
        best = max(range(len(specs)), key=lambda j: len(uncovered & _features(specs[j][2])))
        chosen.append(best)
        uncovered -= _features(specs[best][2])
    rest = [j for j in range(len(specs)) if j not in chosen]
    extra = min(len(rest), max(0, per_family - len(chosen)))
    chosen += [rest[i * len(rest) // extra] for i in range(extra)] if extra else []
    return [specs[j] for j in sorted(set(chosen))]


def _name(spec: tuple[str, str, tuple]) -> str:
    digest = hashlib.sha256(repr(spec).encode()).hexdigest()[:12]
    return f"{spec[0].rsplit('::', 1)[-1]}-{digest}"


def _resources(log: str) -> str:
    """ptxas' registers, stack frame and spills for the kernel, one line."""
    found = _RESOURCES.findall(log)
    registers = [m[3] for m in found if m[3]]
    frames = [f"stack {m[0]} spill-stores {m[1]} spill-loads {m[2]}" for m in found if m[0]]
    return f"registers {registers[-1] if registers else '?'} {frames[-1] if frames else ''}".strip()


def dump(out: Path, include: Path, families: list[str], per_family: int, jobs: int) -> None:
    nvcc = find_nvcc()
    if nvcc is None:
        raise SystemExit("nvcc not found (DG_JIT_NVCC, CUDA_HOME or PATH)")
    os.environ["DG_JIT_PTXAS_VERBOSE"] = "1"  # ptxas' report in the log
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        raise SystemExit("cuobjdump not found (PATH, CUDA_HOME or the nvidia-cuda-cuobjdump wheel)")
    compiler = NvccCompiler(nvcc)
    specs = [spec for family in families for spec in select(family, per_family)]
    out.mkdir(parents=True, exist_ok=True)

    def build(spec: tuple[str, str, tuple]) -> str:
        name = _name(spec)
        with tempfile.TemporaryDirectory() as directory:
            source = Path(directory) / "kernel.cu"
            source.write_text(render_stub(spec[1], spec[0], spec[2]))
            output = compiler.compile(source, [include], compiler.flags())
            sass = disassemble((Path(directory) / "kernel.cubin").read_bytes(), cuobjdump)
        lines = [line for line in sass.splitlines() if "kernel.cubin" not in line]
        (out / f"{name}.sass").write_text("\n".join(lines) + "\n")
        (out / f"{name}.res").write_text(_resources(output.log) + "\n")
        return name

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for i, name in enumerate(pool.map(build, specs), 1):
            print(f"[{i}/{len(specs)}] {name}", flush=True)
    manifest = {_name(spec): {"kernel": spec[0], "template_args": list(spec[2])} for spec in specs}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def diff(base: Path, after: Path) -> int:
    names = json.loads((base / "manifest.json").read_text())
    differing = 0
    for name, entry in names.items():
        problems = []
        for suffix in (".res", ".sass"):
            if not (after / f"{name}{suffix}").exists():
                problems.append(f"missing {name}{suffix}")
                continue
            old, new = (base / f"{name}{suffix}").read_text(), (after / f"{name}{suffix}").read_text()
            if old != new:
                lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1))
                shown = "\n  ".join(lines[:20])
                problems.append(f"{suffix[1:]} differs ({len(lines)} diff lines):\n  {shown}")
        status = "identical" if not problems else "DIFFERENT"
        print(f"{status:9} {name} {entry['kernel']}<{', '.join(map(str, entry['template_args']))}>")
        for problem in problems:
            print("  " + problem)
        differing += bool(problems)
    print(f"{len(names) - differing} of {len(names)} instantiations identical (SASS and ptxas resources)")
    return 1 if differing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dump_parser = sub.add_parser("dump", help="build the selected instantiations and dump SASS + resources")
    dump_parser.add_argument("out", type=Path)
    dump_parser.add_argument("--include", type=Path, default=ROOT / "deepgemm" / "include",
                             help="the include directory to compile against (default: this checkout's)")
    dump_parser.add_argument("--families", default=",".join(FAMILIES))
    dump_parser.add_argument("--per-family", type=int, default=0,
                             help="instantiations per family, at least those that cover every value pair")
    dump_parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    diff_parser = sub.add_parser("diff", help="compare two dumps; exit 1 if any instantiation differs")
    diff_parser.add_argument("base", type=Path)
    diff_parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "dump":
        families = args.families.split(",")
        if not set(families) <= set(FAMILIES):
            parser.error(f"--families: a comma-separated subset of {', '.join(FAMILIES)}")
        dump(args.out, args.include.resolve(), families, args.per_family, args.jobs)
        return 0
    return diff(args.base, args.after)


if __name__ == "__main__":
    sys.exit(main())
