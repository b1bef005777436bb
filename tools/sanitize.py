"""Every kernel family and kind under compute-sanitizer: memcheck, racecheck and synccheck, one command.

    python tools/sanitize.py [--tools memcheck,racecheck,synccheck] [--family F] [-k TEXT] [--json PATH]

First runs every case once without the sanitizer (compiling the kernels into the JIT cache and checking
each result against its reference), then once per tool under ``compute-sanitizer --tool T
--error-exitcode 1 --report-api-errors no`` (cuda-bindings probes optional driver entry points at import
and the sanitizer would count each missing one as an API error; memory, race and barrier errors still
count), and prints the errors per tool from the sanitizer's ``ERROR SUMMARY``. Exit status 1 if a case is
wrong or any tool reports an error.

    python tools/sanitize.py --run [-k TEXT]     # the cases alone, in this process (what the tools run)

The cases are small (racecheck instruments every shared-memory access, so it is the slow one) with M, N
and K tails, every kind of each family, and a few forced configs (2-CTA multicast on A and on B, D staged
in chunks) the heuristic only picks for large shapes. A kernel family adds its cases as a function in
``FAMILY_CASES``, one line.
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
MAX_DIFF = 1e-5
# Where the cases run: the GPU; a CPU test runs the cases without a forced config on the CPU path.
DEVICE = "cuda"


@dataclass(frozen=True)
class Case:
    """One GEMM call: ``run()`` computes it on the GPU and returns calc_diff against its reference."""

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


# Each kernel family's cases; a new family adds its function here.
FAMILY_CASES: dict[str, Callable[[], list[Case]]] = {
    "fp8_1d2d": fp8_cases,
    "bf16": bf16_cases,
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


def run_tool(sanitizer: str, tool: str, case_args: list[str], log: Path | None) -> dict:
    """One tool over every case in a child process; its error count from the ERROR SUMMARY line."""
    command = [sanitizer, "--tool", tool, "--error-exitcode", "1", "--report-api-errors", "no",
               *TOOL_OPTIONS[tool], sys.executable, str(Path(__file__).resolve()), "--run", *case_args]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if log is not None:
        log.write_text(output)
    counts = [int(found) for found in ERROR_SUMMARY.findall(output)]
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
    parser.add_argument("--logs", type=Path, help="write each tool's output to LOGS/<tool>.log")
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
    case_args = [*(["--family", args.family] if args.family else []), *(["-k", args.k] if args.k else [])]
    print(f"== warm-up: {len(cases)} cases without the sanitizer (compiles the kernels)", flush=True)
    wrong = run_cases(cases)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    results = []
    for tool in tools:
        print(f"== {tool} ...", flush=True)
        result = run_tool(sanitizer, tool, case_args, args.logs / f"{tool}.log" if args.logs else None)
        results.append(result)
        errors = "no ERROR SUMMARY (crashed?)" if result["errors"] is None else f"{result['errors']} errors"
        print(f"{tool}: {errors}, {result['cases_wrong']} cases wrong, exit {result['returncode']}, "
              f"{result['seconds']} s", flush=True)
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
