"""``python -m deepgemm.bench``: deepgemm against cuBLAS on the shape suites, in one process on one GPU.

Every provider of a problem runs on the same random inputs; its output is checked against a
reference before it is timed (profiler kernel time, L2 flushed before each call). Without a GPU
it runs the CPU path of each selected suite on small shapes instead, as a correctness smoke test.
"""

import argparse
import dataclasses
import datetime
import platform
import sys
import time
from collections.abc import Sequence

import torch

import deepgemm
from deepgemm.testing.bench import L2_FLUSH_BYTES, bench, bench_cpu, bench_kineto, bench_kineto_burst

from .providers import Provider
from .report import (
    SCHEMA,
    TWIN_DEFINITION,
    format_geomeans,
    format_host_overhead,
    format_problem,
    speedup_definition,
    table_header,
    twin_label,
    write_json,
)
from .runner import LONG_CALL_US, Timer, measure_host_overhead, run_suite
from .suites import DENSE, SUITES, Problem, Suite, parse_shapes

CPU_NOTE = (
    "CPU path (no CUDA device, or --cpu): checks the CPU implementation of deepgemm's ops (FP8 and 16-bit, "
    "dense and grouped, and deepgemm.matmul) on small shapes against the reference; its wall-clock times "
    "are not a performance claim"
)
TIMERS = {
    "kineto": "profiler (CUPTI) device time of all kernels one call launches; L2 flushed before each call",
    "events": "CUDA events around each call (includes launch gaps); L2 flushed before each call",
    "cpu_wallclock": "wall clock around each call of the CPU path",
}
FAILED_STATUSES = ("error", "wrong")
# Idle seconds before each GPU measurement. Under its power cap (700 W on an H100 or H200 SXM) a GPU
# clocks a kernel by what ran just before it: back to back, the provider measured after a heavy one
# ran up to 16% slower on an H200. Half a second of rest gives every provider the same start, and
# repeat runs agreed within 0.3% (one measurement of the largest shape, its warm-up calls included,
# lasts about 45 ms).
DEFAULT_REST_S = 0.5
# Rounds of the problems with calls of LONG_CALL_US or more (GPU only): see `runner.measure_problem`.
DEFAULT_ROUNDS = 3
# Those problems are also timed from rest: the mean of this many calls after one warm-up call, right
# after the rest. Every measurement above heats an H200 past its first ~40 ms of back-to-back
# tensor-core work, after which the power cap lowers its clock; this one stays inside them. It is
# the regime of the published reference figures: cuBLAS at 4096x7168x16384 on two H200s ran 708-722,
# 655-669 and 1152-1168 us (blockwise, per-tensor, BF16) from rest, against the references' 725.0,
# 673.4 and 1180.3, and 726-771, 670-697 and 1272-1307 us measured as above.
DEFAULT_FROM_REST_CALLS = 20
FROM_REST_WARMUPS = 1


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    providers = ", ".join(sorted({p.name for suite in SUITES.values() for p in suite.providers}))
    parser = argparse.ArgumentParser(
        prog="python -m deepgemm.bench",
        description="deepgemm against cuBLAS on the shape suites: same random inputs for every provider, "
        "each checked against a reference, then timed by the profiler with L2 flushed.",
        epilog=f"providers: {providers}. Without a GPU (or with --cpu) it runs the CPU path of the "
        "selected suites' deepgemm ops on small shapes as a correctness smoke test.",
    )
    parser.add_argument(
        "--suite", default="all", choices=[*SUITES, "all"], help="suite to run (default: all)"
    )
    parser.add_argument("--providers", help="comma-separated providers (default: all of the suite's)")
    parser.add_argument("--shapes", help="ad-hoc dense shapes 'M,N,K;M,N,K' instead of the suites")
    parser.add_argument(
        "--num-tests", type=_positive_int, help="timed calls per measurement (default: 30 GPU, 3 CPU)"
    )
    parser.add_argument(
        "--rest",
        type=_non_negative_float,
        default=DEFAULT_REST_S,
        metavar="SECONDS",
        help=f"GPU idle time before each measurement, so every provider starts from the same power state "
        f"(default: {DEFAULT_REST_S}; 0 measures back to back, as under sustained load)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        default=DEFAULT_ROUNDS,
        help=f"on the GPU, problems where a call lasts {LONG_CALL_US:g} us or more are timed this many "
        f"times, the providers in alternating order, and each reports its median (default: {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--from-rest-calls",
        type=_non_negative_int,
        default=DEFAULT_FROM_REST_CALLS,
        metavar="N",
        help=f"on the GPU with --rest > 0, the problems with calls of {LONG_CALL_US:g}+ us are also timed "
        f"from rest: the mean of N calls after {FROM_REST_WARMUPS} warm-up call, right after the rest, in "
        f"as many rounds (default: {DEFAULT_FROM_REST_CALLS}; 0: off)",
    )
    parser.add_argument(
        "--timer",
        default="kineto",
        choices=("kineto", "events"),
        help="GPU timer: profiler kernel time (default) or CUDA events around each call",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    parser.add_argument("--json", metavar="PATH", help="write every figure and the environment to PATH")
    parser.add_argument("--cpu", action="store_true", help="run the CPU path even when a GPU is present")
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="also write a visual report into DIR: roofline.png, ratio-<suite>.png, report.html (needs "
        "matplotlib: pip install 'deepgemm[plot]')",
    )
    parser.add_argument(
        "--report-from",
        nargs="+",
        metavar="JSON",
        help="instead of running: render the report of these --json files (into --report DIR, default "
        "bench-report)",
    )
    parser.add_argument(
        "--host-overhead",
        action="store_true",
        help="instead of the suites: CPU us per call of a cached M=64 N=2112 K=7168 GEMM, per provider",
    )
    parser.add_argument(
        "--host-calls", type=_positive_int, default=2000, help="back-to-back calls for --host-overhead"
    )
    return parser


def environment(device: torch.device) -> dict:
    env = {
        "device": "cpu",
        "sm_count": None,
        "compute_capability": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "deepgemm": deepgemm.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "device": props.name,
            "sm_count": props.multi_processor_count,
            "compute_capability": f"{props.major}.{props.minor}",
        }
    return env


def cpu_suite(suite: Suite) -> Suite:
    """``suite`` on its small CPU problems (same providers, so the same baseline)."""
    return dataclasses.replace(
        suite,
        name=f"cpu_path_{suite.name}",
        description=f"{suite.name} on the CPU path, a correctness smoke run (times are no performance claim)",
        problems=suite.cpu_problems,
    )


def select_suites(args: argparse.Namespace, on_cuda: bool) -> list[Suite]:
    if not on_cuda:
        if args.shapes:
            suites = [dataclasses.replace(DENSE, cpu_problems=parse_shapes(args.shapes))]
        else:
            suites = list(SUITES.values()) if args.suite == "all" else [SUITES[args.suite]]
        return [cpu_suite(suite) for suite in suites if suite.cpu_problems]
    if args.shapes:
        return [
            dataclasses.replace(
                DENSE,
                name="custom",
                description=f"ad-hoc dense shapes {args.shapes}",
                problems=parse_shapes(args.shapes),
            )
        ]
    return list(SUITES.values()) if args.suite == "all" else [SUITES[args.suite]]


def select_providers(suite: Suite, names: Sequence[str] | None, on_cuda: bool = True) -> tuple[Provider, ...]:
    """The providers named in ``names``; by default all of the suite's, or on the CPU those with a CPU
    path (the cuBLAS providers would all report "unavailable")."""
    if names is not None:
        return tuple(p for p in suite.providers if p.name in names)
    return suite.providers if on_cuda else tuple(p for p in suite.providers if p.has_cpu_path)


def make_timer(on_cuda: bool, timer: str, num_tests: int, rest_s: float = 0.0) -> Timer:
    if not on_cuda:
        return lambda fn: bench_cpu(fn, num_tests)
    measure = bench if timer == "events" else lambda fn, num_tests: bench_kineto(fn, None, num_tests)

    def timed(fn):
        return measure(fn, num_tests)

    return _after_rest(rest_s, timed) if rest_s > 0 else timed


def make_from_rest_timer(on_cuda: bool, timer: str, num_tests: int, rest_s: float) -> Timer | None:
    """The timer of the first ``num_tests`` calls after ``rest_s`` idle and one warm-up call (see
    DEFAULT_FROM_REST_CALLS); ``None`` off the GPU, without a rest, or for ``num_tests`` 0."""
    if not on_cuda or rest_s <= 0 or num_tests == 0:
        return None

    def burst(fn):
        if timer == "events":
            return bench(fn, num_tests, num_warmups=FROM_REST_WARMUPS)
        return bench_kineto_burst(fn, num_tests, FROM_REST_WARMUPS)

    return _after_rest(rest_s, burst)


def _after_rest(rest_s: float, measure: Timer) -> Timer:
    """``measure``, run once the GPU has idled for ``rest_s`` seconds."""

    def rested(fn):
        torch.cuda.synchronize()
        time.sleep(rest_s)
        return measure(fn)

    return rested


def _failures(results: dict) -> list[str]:
    return [name for name, result in results.items() if result["status"] in FAILED_STATUSES]


def _run_and_print(
    suite: Suite,
    providers: Sequence[Provider],
    device: torch.device,
    seed: int,
    timers: tuple[Timer, Timer | None],
    document: dict,
) -> dict:
    """Run one suite, printing each problem's rows as soon as they are measured. ``timers``: the
    timer of every problem, and the from-rest timer of the long ones (or None)."""
    print(f"\n== {suite.name}: {suite.description}")
    method = document["method"]
    rest = f", each measurement after {method['rest_s']:g} s idle" if method["rest_s"] else ""
    rounds = ""
    if method["rounds"] > 1:
        rounds = f"; calls of {method['long_call_us']:g}+ us: median of {method['rounds']} alternating rounds"
    from_rest = ""
    if timers[1] is not None:
        first, last = method["from_rest_warmups"] + 1, method["from_rest_warmups"] + method["from_rest_calls"]
        from_rest = f", then again from rest (mean of calls {first}-{last} after the rest)"
    print(
        f"   {document['env']['device']}: {method['timer_description']}; mean of {method['num_tests']} calls"
        f"{rest}{rounds}{from_rest}"
    )
    print(f"   speedup = {speedup_definition(suite.baseline, suite.faster)}")
    if suite.twin is not None:
        print(f"   twin speed = {TWIN_DEFINITION}")
    # The major column only where it varies or is not the FP8 ops' NT.
    show_major = any(problem.major != "nt" for problem in suite.problems)
    show_hbm = suite.reports_hbm and device.type == "cuda"
    print(table_header(suite.problems[0].layout if suite.problems else "dense", show_major, show_hbm))

    def print_problem(problem: Problem, record: dict) -> None:
        twin = None
        if record["twin"] is not None:
            twin = (twin_label(problem, Problem(**record["twin"])), record["twin_speedup"])
        lines = format_problem(
            problem,
            record["results"],
            record["speedup"],
            record["pair_speedup"],
            twin,
            show_major,
            record["speedup_from_rest"],
            record["pair_speedup_from_rest"],
            show_hbm,
        )
        print(lines, flush=True)

    record = run_suite(
        suite,
        providers,
        device,
        seed,
        timers[0],
        on_problem=print_problem,
        rounds=method["rounds"],
        from_rest_timer=timers[1],
    )
    if record["geomean"] or record["pair_geomean"] or record["twin_geomean"]:
        print(
            format_geomeans(
                suite.baseline,
                record["geomean"],
                suite.faster,
                record["pair_geomean"],
                record["twin_geomean"],
                record["twin_worst"],
            )
        )
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns 1 if any provider errored or produced a wrong result, else 0."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report or args.report_from:
        try:
            from .plots import require_matplotlib

            require_matplotlib()
        except ImportError as error:
            parser.error(str(error))
    if args.report_from:
        return _report_from(parser, args.report_from, args.report or "bench-report")
    on_cuda = torch.cuda.is_available() and not args.cpu
    if args.host_overhead and not on_cuda:
        parser.error("--host-overhead measures the CPU cost of CUDA launches and needs a GPU")
    try:
        suites = select_suites(args, on_cuda)
    except ValueError as error:
        parser.error(str(error))
    names = None if args.providers is None else [name.strip() for name in args.providers.split(",")]
    known = {provider.name for suite in suites for provider in suite.providers}
    if names is not None and not set(names) <= known:
        parser.error(f"unknown providers {sorted(set(names) - known)}; choose from {sorted(known)}")
    num_tests = args.num_tests or (30 if on_cuda else 3)
    device = torch.device("cuda" if on_cuda else "cpu")
    rest_s = args.rest if on_cuda else 0.0
    timer = make_timer(on_cuda, args.timer, num_tests, rest_s)
    from_rest_timer = make_from_rest_timer(on_cuda, args.timer, args.from_rest_calls, rest_s)

    timer_name = args.timer if on_cuda else "cpu_wallclock"
    document = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backend": device.type,
        "env": environment(device),
        "method": {
            "timer": timer_name,
            "timer_description": TIMERS[timer_name],
            "num_tests": num_tests,
            "rest_s": rest_s,
            "rounds": args.rounds if on_cuda else 1,
            "long_call_us": LONG_CALL_US,
            "from_rest_calls": 0 if from_rest_timer is None else args.from_rest_calls,
            "from_rest_warmups": FROM_REST_WARMUPS,
            "l2_flush_bytes": L2_FLUSH_BYTES if on_cuda else None,
            "seed": args.seed,
            "inputs": "random normal BF16: the FP8 suites quantise them with deepgemm.quant (1x128 A "
            "scales, 128x128 B scales), the 16-bit suites take them as they are, stored as each problem's "
            "major says; matmul_fp8 hands them to deepgemm.matmul and to the quantise-and-GEMM calls",
            "speedup": "per suite: its speedup_definition (dense, bf16: t_provider / t_baseline, the "
            "baseline deepgemm; grouped: t_baseline / t_provider, the baseline the cuBLAS loop; "
            "matmul_fp8: t_matmul / t_by_hand), pair ratios a/b = t_b / t_a, and twin ratios "
            "t_twin / t_problem (bf16: each layout against NT on the same shape)",
        },
        "suites": [],
    }
    if not on_cuda:
        print(CPU_NOTE)
    if args.host_overhead:
        record = measure_host_overhead(
            DENSE, select_providers(DENSE, names), device, args.seed, args.host_calls
        )
        print(format_host_overhead(record))
        document["host_overhead"] = record
        failures = _failures(record["providers"])
    else:
        failures = []
        for suite in suites:
            providers = select_providers(suite, names, on_cuda)
            record = _run_and_print(suite, providers, device, args.seed, (timer, from_rest_timer), document)
            document["suites"].append(record)
            failures += [name for problem in record["problems"] for name in _failures(problem["results"])]
    if args.json:
        print(f"\nwrote {write_json(args.json, document)}")
    if args.report:
        from .plots import write_report

        print(f"wrote {write_report([document], args.report, [args.json or ''])[-1]}")
    if failures:
        print(
            f"\nFAILED: {len(failures)} provider result(s) errored or missed the reference", file=sys.stderr
        )
        return 1
    return 0


def _report_from(parser: argparse.ArgumentParser, paths: Sequence[str], directory: str) -> int:
    """Renders the report of benchmark JSON files written by ``--json``."""
    import json

    from .plots import write_report

    documents = []
    for path in paths:
        try:
            document = json.loads(open(path).read())
        except (OSError, ValueError) as error:
            parser.error(f"--report-from {path}: {error}")
        if not isinstance(document, dict) or document.get("schema") != SCHEMA:
            parser.error(f"--report-from {path}: not a benchmark JSON file (schema {SCHEMA})")
        documents.append(document)
    files = write_report(documents, directory, paths)
    print("wrote " + ", ".join(str(path) for path in files))
    return 0
