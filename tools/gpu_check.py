"""Does it work, and how fast: every GPU test, the benchmark and the JIT measurements in one command.

    python tools/gpu_check.py --out results/ [--stages tests,bench,host,jit,sanitize] [-k EXPR] [--suites S,S]

Stages (each a subprocess, so one crash cannot take the others down; a failed stage is recorded
and the next one runs):

- ``tests``: ``pytest -m gpu tests/`` with a JUnit XML report -> pass/fail/skip counts and the
  names of failures. That is every ``gpu``-marked test: the dense FP8 GEMM
  (``tests/ops/test_fp8_gemm_gpu.py``), the grouped FP8 GEMMs (``tests/ops/test_grouped_fp8_gemm_gpu.py``),
  the 16-bit GEMMs, dense and grouped (``tests/ops/test_bf16_gemm_gpu.py``), ``matmul``
  (``tests/ops/test_matmul_gpu.py``), one launch per op (``tests/ops/test_launch_count_gpu.py``),
  ``torch.compile`` and CUDA graphs (``tests/ops/test_torch_compile.py``), the JIT
  (``tests/jit/test_gpu_jit.py``). Fails if any test fails, if none was collected, or if every test
  skipped (no GPU visible, so ``tests/conftest.py`` skipped each one: that would be a silent "all good").
- ``bench``: ``python -m deepgemm.bench --suite S --json OUT/bench-S.json`` once per suite of
  ``BENCH_SUITES`` (dense FP8, grouped FP8, BF16 in every layout, grouped BF16, matmul with FP8, FP8
  weight gradients dense and k-grouped, weight-only W4A16 and W8A16, the fused FP8 casts, an FP8
  training step, TF32 in every layout, FP32 as 3xTF32, the seed's table through matmul, decode, INT8),
  or of ``--suites``, each in its own process so that a crash in one suite keeps the others' figures;
  merged into ``OUT/bench.json``.
- ``host``: ``python -m deepgemm.bench --host-overhead --json OUT/host.json``.
- ``jit``: ``python tools/measure_jit.py``, which prints one JSON object; skipped if the script
  does not exist.
- ``sanitize`` (not in the default set: it takes minutes): ``python tools/sanitize.py``, every kernel
  family and kind on small tail shapes under compute-sanitizer memcheck, racecheck and synccheck -> the
  errors per tool; fails on any error or wrong result.

Writes ``OUT/gpu_check.json`` after every stage (a killed run keeps what finished), each stage's
output to ``OUT/<stage>.log``, prints a summary table, and exits 1 if any stage failed.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("tests", "bench", "host", "jit", "sanitize")
# What runs without --stages: the sanitizer stage only on request.
DEFAULT_STAGES = ("tests", "bench", "host", "jit")
# deepgemm.bench's suites, in the order the bench stage runs them.
BENCH_SUITES = (
    "dense",
    "grouped_contiguous",
    "grouped_masked",
    "grouped_decode",
    "bf16",
    "bf16_grouped",
    "matmul_fp8",
    "wgrad",
    "wgrad_k_grouped",
    "wonly",
    "wonly_w8",
    "cast",
    "train_step",
    "tf32",
    "fp32",
    "seed",
    "decode",
    "int8",
)
SCHEMA = "deepgemm.gpu_check/1"
# Lines of a failed stage's log kept in the JSON; the printed summary shows the last few.
LOG_TAIL_LINES = 30
PRINTED_TAIL_LINES = 6


class StageFailed(Exception):
    """The stage ran but its result is a failure: ``message`` says why, ``detail`` keeps what it found."""

    def __init__(self, message: str, detail: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_logged(
    command: Sequence[str], log: Path, timeout: float, stdout: Path | None = None, append: bool = False
) -> subprocess.CompletedProcess:
    """Run ``command`` in the repo root with its output in ``log`` (its stdout in ``stdout`` if given),
    after what ``log`` holds already if ``append``.

    Raises ``StageFailed`` on timeout.
    """
    with log.open("a" if append else "w") as log_file, (stdout or Path(os.devnull)).open("w") as stdout_file:
        log_file.write(f"$ {' '.join(command)}\n")
        log_file.flush()
        try:
            return subprocess.run(
                command,
                cwd=REPO,
                stdout=stdout_file if stdout else log_file,
                stderr=log_file,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise StageFailed(f"timed out after {timeout:.0f} s") from None


def parse_junit(path: Path) -> dict:
    """Counts and failure names from a pytest JUnit XML report."""
    counts = {"total": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in ET.parse(path).getroot().iter("testcase"):
        counts["total"] += 1
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
        elif outcome.tag == "skipped":
            counts["skipped"] += 1
        else:
            counts["failed" if outcome.tag == "failure" else "errors"] += 1
            message = (outcome.get("message") or "").splitlines()
            failures.append(
                {"test": name, "kind": outcome.tag, "message": message[0][:300] if message else ""}
            )
    return counts | {"failures": failures}


def stage_tests(out: Path, args: argparse.Namespace) -> dict:
    report = out / "pytest-gpu.xml"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests", "-q", "-rfE", f"--junitxml={report}"]
    if args.k:
        command += ["-k", args.k]
    proc = run_logged(command, out / "tests.log", args.stage_timeout)
    if not report.exists():
        raise StageFailed(f"pytest exited with {proc.returncode} and wrote no JUnit report")
    detail = parse_junit(report) | {"returncode": proc.returncode, "junit": report.name}
    if detail["failed"] or detail["errors"] or proc.returncode not in (0, 5):
        raise StageFailed(
            f"pytest exited with {proc.returncode}: {detail['failed']} failed, {detail['errors']} errors",
            detail,
        )
    if detail["total"] == 0:
        raise StageFailed("no GPU test was collected", detail)
    if detail["skipped"] == detail["total"]:
        raise StageFailed("every GPU test skipped (no GPU visible?)", detail)
    return detail


def _bench_stage(
    out: Path, args: argparse.Namespace, name: str, extra: Sequence[str], summarise: Callable[[dict], dict]
) -> dict:
    """Run ``python -m deepgemm.bench`` into ``OUT/<name>.json``; ``summarise`` picks the key figures."""
    result = out / f"{name}.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, "-m", "deepgemm.bench", "--json", str(result), *extra]
    proc = run_logged(command, out / f"{name}.log", args.stage_timeout)
    if not result.exists():
        raise StageFailed(f"deepgemm.bench exited with {proc.returncode} and wrote no JSON")
    document = json.loads(result.read_text())
    detail = {"json": result.name, "returncode": proc.returncode} | summarise(document)
    if document["backend"] != "cuda":
        raise StageFailed("no GPU visible: the benchmark ran its CPU path", detail)
    if proc.returncode:
        raise StageFailed("some provider errored or missed its reference (see the JSON)", detail)
    return detail


def _bench_summary(document: dict) -> dict:
    """Per suite: the geometric means (against the baseline, and of the pair ratios), which way they
    point, and every provider result that is not ``ok``."""
    suites = {}
    for suite in document["suites"]:
        problems = [
            {
                "shape": [p["m"], p["n"], p["k"]],
                "num_groups": p["num_groups"],
                "provider": name,
                "status": r["status"],
                "reason": r["reason"],
            }
            for p in suite["problems"]
            for name, r in p["results"].items()
            if r["status"] != "ok"
        ]
        suites[suite["name"]] = {
            "baseline": suite["baseline"],
            "faster": suite["faster"],
            "geomean": suite["geomean"],
            "pair_geomean": suite["pair_geomean"],
            "twin_geomean": suite.get("twin_geomean", {}),
            "twin_worst": suite.get("twin_worst", {}),
            "not_ok": problems,
        }
    return {"device": document["env"]["device"], "suites": suites}


def _host_summary(document: dict) -> dict:
    providers = document["host_overhead"]["providers"]
    return {"us_per_call": {name: result["us_per_call"] for name, result in providers.items()}}


def stage_bench(out: Path, args: argparse.Namespace) -> dict:
    """Every suite of ``args.suites`` in its own process (one ``--stage-timeout`` for them all),
    merged into ``OUT/bench.json``; fails if any suite's run failed or wrote nothing."""
    deadline = time.monotonic() + args.stage_timeout
    extra = ["--num-tests", str(args.num_tests)] if args.num_tests else []
    result = out / "bench.json"
    result.unlink(missing_ok=True)
    documents, failed = [], {}
    for index, suite in enumerate(args.suites):
        suite_json = out / f"bench-{suite}.json"
        suite_json.unlink(missing_ok=True)
        command = [sys.executable, "-m", "deepgemm.bench", "--suite", suite, "--json", str(suite_json)]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failed[suite] = "not run: the stage timed out"
            continue
        try:
            proc = run_logged([*command, *extra], out / "bench.log", remaining, append=index > 0)
        except StageFailed as failure:
            failed[suite] = failure.message
            continue
        if suite_json.exists():
            documents.append(json.loads(suite_json.read_text()))
        if proc.returncode:
            failed[suite] = f"deepgemm.bench exited with {proc.returncode}" + (
                "" if suite_json.exists() else " and wrote no JSON"
            )
    if not documents:
        raise StageFailed("deepgemm.bench wrote no JSON", {"failed_suites": failed})
    document = documents[0] | {"suites": [record for doc in documents for record in doc["suites"]]}
    result.write_text(json.dumps(document, indent=2) + "\n")
    detail = {"json": result.name, "failed_suites": failed} | _bench_summary(document)
    if any(doc["backend"] != "cuda" for doc in documents):
        raise StageFailed("no GPU visible: the benchmark ran its CPU path", detail)
    if failed:
        raise StageFailed(
            f"suites {', '.join(failed)} failed: a provider errored or missed its reference, the run "
            "crashed or timed out (see the JSON and bench.log)",
            detail,
        )
    return detail


def stage_host(out: Path, args: argparse.Namespace) -> dict:
    return _bench_stage(out, args, "host", ["--host-overhead"], _host_summary)


def stage_jit(out: Path, args: argparse.Namespace) -> dict | None:
    """``None`` (skipped) when ``tools/measure_jit.py`` does not exist."""
    script = REPO / "tools" / "measure_jit.py"
    if not script.exists():
        return None
    printed = out / "jit.json"
    proc = run_logged([sys.executable, str(script)], out / "jit.log", args.stage_timeout, stdout=printed)
    text = printed.read_text()
    # The script prints one JSON object; anything printed before it (compiler chatter) is ignored.
    start = text.find("{")
    try:
        measurements = json.JSONDecoder().raw_decode(text, start)[0] if start >= 0 else None
    except json.JSONDecodeError:
        measurements = None
    detail = {"returncode": proc.returncode, "measurements": measurements}
    if proc.returncode:
        raise StageFailed(f"measure_jit.py exited with {proc.returncode}", detail)
    if not isinstance(measurements, dict):
        raise StageFailed("measure_jit.py printed no JSON object", detail)
    return detail


def stage_sanitize(out: Path, args: argparse.Namespace) -> dict:
    """``tools/sanitize.py`` with its per-tool summary in ``OUT/sanitize.json`` and each tool's log."""
    summary_path = out / "sanitize.json"
    command = [sys.executable, str(REPO / "tools" / "sanitize.py"), "--json", str(summary_path),
               "--logs", str(out / "sanitize-logs")]
    proc = run_logged(command, out / "sanitize.log", args.stage_timeout)
    detail = {"returncode": proc.returncode}
    if summary_path.exists():
        detail = json.loads(summary_path.read_text())
    if proc.returncode or not detail.get("ok"):
        raise StageFailed(f"sanitize.py exited with {proc.returncode}", detail)
    return detail


Stage = Callable[[Path, argparse.Namespace], dict | None]
STAGE_FUNCTIONS: dict[str, Stage] = {
    "tests": stage_tests,
    "bench": stage_bench,
    "host": stage_host,
    "jit": stage_jit,
    "sanitize": stage_sanitize,
}


def run_stage(name: str, function: Stage, out: Path, args: argparse.Namespace) -> dict:
    """Run one stage and turn whatever happens into a record; never raises."""
    start = time.perf_counter()
    record = {"status": "ok", "error": None, "detail": None, "log": f"{name}.log"}
    try:
        detail = function(out, args)
        record["detail"] = detail
        if detail is None:
            record |= {"status": "skipped", "log": None}
    except StageFailed as failure:
        record |= {"status": "failed", "error": failure.message, "detail": failure.detail}
    except Exception as error:  # a bug in this script must not hide the other stages' results
        record |= {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    record["seconds"] = round(time.perf_counter() - start, 1)
    log = out / f"{name}.log"
    if record["status"] == "failed" and log.exists():
        record["log_tail"] = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return record


# Run in a child so that this process never holds a CUDA context while the stages need the GPU.
ENV_PROBE = """
import json, torch
env = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": None}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    env.update(gpu=props.name, sm_count=props.multi_processor_count, gpu_count=torch.cuda.device_count())
print(json.dumps(env))
"""


def environment() -> dict:
    env = {"python": platform.python_version(), "host": platform.node()}
    probe = subprocess.run([sys.executable, "-c", ENV_PROBE], capture_output=True, text=True, timeout=300)
    if probe.returncode:
        return env | {"torch": f"probe failed: {probe.stderr.strip()[-300:]}"}
    return env | json.loads(probe.stdout)


def _tests_notes(detail: dict) -> list[str]:
    counts = "{passed} passed, {failed} failed, {errors} errors, {skipped} skipped".format(**detail)
    return [counts] + [f"{f['kind'].upper()} {f['test']}: {f['message']}" for f in detail["failures"]]


def _means(splits: dict) -> str:
    return "  ".join(f"{label} {_ratio(cell['geomean'])}" for label, cell in splits.items())


def _bench_notes(detail: dict) -> list[str]:
    """``a vs b: 1.20x`` reads "a runs 1.20x as fast as b", whichever way the suite's ratios point;
    ``p vs its twin problem: L 0.97x (worst 0.95x)``: p runs the problems of split L 0.97x as fast as
    their twins (bf16: each layout against NT on the same shape), 0.95x on the worst shape."""
    lines = [f"on {detail['device']}"]
    for suite, info in detail["suites"].items():
        baseline = info["baseline"]
        for provider, splits in info["geomean"].items():
            pair = (baseline, provider) if info["faster"] == "baseline" else (provider, baseline)
            lines.append(f"{suite}: {pair[0]} vs {pair[1]}: {_means(splits)}")
        for label, splits in info["pair_geomean"].items():
            lines.append(f"{suite}: {label.replace('/', ' vs ')}: {_means(splits)}")
        for provider, splits in info["twin_geomean"].items():
            worst = info["twin_worst"].get(provider, {})
            cells = "  ".join(
                f"{label} {_ratio(cell['geomean'])} (worst {_ratio(worst.get(label))})"
                for label, cell in splits.items()
            )
            lines.append(f"{suite}: {provider} vs its twin problem: {cells}")
        lines += [
            f"{suite} {r['shape']} {r['provider']}: {r['status']} ({r['reason']})" for r in info["not_ok"]
        ]
    for suite, reason in detail["failed_suites"].items():
        lines.append(f"{suite}: {reason}")
    return lines


def _host_notes(detail: dict) -> list[str]:
    return [", ".join(f"{name} {_us(us)}" for name, us in detail["us_per_call"].items())]


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} us"


def _sanitize_notes(detail: dict) -> list[str]:
    wrong = detail["cases_wrong_without_sanitizer"]
    lines = [f"{detail['cases']} cases, {wrong} wrong without the sanitizer"]
    for tool in detail["tools"]:
        errors = "no ERROR SUMMARY" if tool["errors"] is None else f"{tool['errors']} errors"
        lines.append(f"{tool['tool']}: {errors}, {tool['cases_wrong']} cases wrong, {tool['seconds']} s")
    return lines


NOTES: dict[str, tuple[str, Callable[[dict], list[str]]]] = {
    "sanitize": ("tools", _sanitize_notes),
    "tests": ("total", _tests_notes),
    "bench": ("suites", _bench_notes),
    "host": ("us_per_call", _host_notes),
}


def format_summary(summary: dict) -> str:
    """A row per stage, with its key figures (and failures) on indented lines below it."""
    lines = [f"{'stage':<7} {'status':<8} {'seconds':>8}"]
    for name, stage in summary["stages"].items():
        lines.append(f"{name:<7} {stage['status']:<8} {stage['seconds']:>8.1f}")
        notes = [stage["error"]] if stage["error"] else []
        key, describe = NOTES.get(name, ("", None))
        if describe and key in (stage["detail"] or {}):
            notes += describe(stage["detail"])
        notes += [f"| {line}" for line in stage.get("log_tail", [])[-PRINTED_TAIL_LINES:]]
        lines += [f"    {note}" for note in notes]
    lines.append(f"overall: {'OK' if summary['ok'] else 'FAILED'}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default="results", help="directory for the JSON files and logs (default: results)"
    )
    parser.add_argument(
        "--stages", default=",".join(DEFAULT_STAGES),
        help=f"comma-separated subset of {','.join(STAGES)} (default: {','.join(DEFAULT_STAGES)})"
    )
    parser.add_argument("-k", help="pytest -k expression for the tests stage")
    parser.add_argument(
        "--suites",
        default=",".join(BENCH_SUITES),
        help=f"comma-separated benchmark suites for the bench stage (default: all, {','.join(BENCH_SUITES)})",
    )
    parser.add_argument(
        "--num-tests", type=int, help="timed calls per benchmark measurement (bench default: 30)"
    )
    parser.add_argument("--stage-timeout", type=float, default=1800, help="seconds per stage (default: 1800)")
    args = parser.parse_args(argv)
    args.stages = [stage.strip() for stage in args.stages.split(",") if stage.strip()]
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown or not args.stages:
        parser.error(f"--stages must name some of {', '.join(STAGES)}; unknown: {unknown}")
    args.suites = [suite.strip() for suite in args.suites.split(",") if suite.strip()]
    unknown = sorted(set(args.suites) - set(BENCH_SUITES))
    if unknown or not args.suites:
        parser.error(f"--suites must name some of {', '.join(BENCH_SUITES)}; unknown: {unknown}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "schema": SCHEMA,
        "started": _now(),
        "finished": None,
        "ok": True,
        "env": environment(),
        "stages": {},
    }
    for name in args.stages:
        print(f"[gpu_check] {name} ...", flush=True)
        record = run_stage(name, STAGE_FUNCTIONS[name], out, args)
        summary["stages"][name] = record
        summary["ok"] = all(stage["status"] != "failed" for stage in summary["stages"].values())
        (out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"[gpu_check] {name}: {record['status']} in {record['seconds']} s", flush=True)
    summary["finished"] = _now()
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + format_summary(summary))
    print(f"wrote {out / 'gpu_check.json'}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
