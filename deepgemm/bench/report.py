"""Benchmark arithmetic (TFLOPS, GB/s, speed ratios, geometric means), the printed table and the JSON file.

Records are plain dicts in the JSON schema (see ``deepgemm.bench.runner``), so what is printed is
computed from exactly what is saved.
"""

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from .suites import Problem, Split

SCHEMA = "deepgemm.bench/1"


def tflops(flops: int, seconds: float) -> float:
    return flops / seconds / 1e12


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def geomean(values: Iterable[float]) -> float | None:
    """Geometric mean of positive values; ``None`` for none."""
    values = list(values)
    if not values:
        return None
    return math.exp(sum(math.log(value) for value in values) / len(values))


def speedups(results: Mapping[str, Mapping], baseline: str) -> dict[str, float]:
    """Speed of ``baseline`` relative to each other provider: ``t_provider / t_baseline``.

    Only providers that ran and matched their reference (status ``ok``) take part.
    """
    base = results.get(baseline)
    if base is None or base["status"] != "ok":
        return {}
    return {
        name: result["us"] / base["us"]
        for name, result in results.items()
        if name != baseline and result["status"] == "ok"
    }


def split_geomeans(
    problems: Iterable[tuple[Problem, Mapping[str, float]]], splits: Iterable[Split], providers: Iterable[str]
) -> dict[str, dict[str, dict]]:
    """``{provider: {split label: {"geomean": x | None, "n": shapes used}}}`` over per-problem speedups."""
    problems = list(problems)
    summary: dict[str, dict[str, dict]] = {}
    for provider in providers:
        summary[provider] = {}
        for split in splits:
            ratios = [
                ratio[provider]
                for problem, ratio in problems
                if split.contains(problem) and provider in ratio
            ]
            summary[provider][split.label] = {"geomean": geomean(ratios), "n": len(ratios)}
    return summary


def _cell(value: float | None, spec: str, width: int) -> str:
    """``value`` formatted with ``spec``, or a dash for ``None``, right-aligned in ``width`` columns."""
    return ("-" if value is None else format(value, spec)).rjust(width)


def _ratio(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.2f}x"


TABLE_HEADER = (
    f"{'M':>6} {'N':>6} {'K':>6}  {'provider':<18} {'us':>9} {'TFLOPS':>7} {'GB/s':>7} "
    f"{'speedup':>8}  {'calc_diff':>9}  status"
)


def format_problem(problem: Problem, results: Mapping[str, Mapping], ratios: Mapping[str, float]) -> str:
    """The table lines of one problem: one per provider, the shape printed on the first only.

    ``speedup`` is how much faster the baseline runs than that provider (blank for the baseline).
    """
    lines = []
    shape = f"{problem.m:>6} {problem.n:>6} {problem.k:>6}"
    for name, result in results.items():
        cells = [
            _cell(result["us"], ".1f", 9),
            _cell(result["tflops"], ".1f", 7),
            _cell(result["gbps"], ".0f", 7),
            _ratio(ratios.get(name), "").rjust(8),
            " " + _cell(result["diffs"].get(result["reference"]), ".1e", 9),
            " " + ("" if result["status"] == "ok" else f"{result['status']} ({result['reason']})"),
        ]
        lines.append(f"{shape}  {name:<18} {' '.join(cells)}".rstrip())
        shape = " " * len(shape)
    return "\n".join(lines)


def format_geomeans(baseline: str, summary: Mapping[str, Mapping[str, Mapping]]) -> str:
    """One line per provider: geometric-mean speed of ``baseline`` relative to it, per split."""
    lines = [f"geometric-mean speed of {baseline} relative to:"]
    for provider, splits in summary.items():
        cells = "  ".join(
            f"{label} ({cell['n']}): {_ratio(cell['geomean'])}" for label, cell in splits.items()
        )
        lines.append(f"  {provider:<18} {cells}")
    return "\n".join(lines)


def format_host_overhead(record: Mapping) -> str:
    shape = "M={m} N={n} K={k}".format(**record["problem"])
    lines = [f"host (CPU) us per call over {record['num_calls']} back-to-back calls of {shape}:"]
    for name, result in record["providers"].items():
        note = "" if result["status"] == "ok" else f"  {result['status']} ({result['reason']})"
        lines.append(f"  {name:<18} {_cell(result['us_per_call'], '.1f', 8)}{note}")
    return "\n".join(lines)


def write_json(path: str | Path, document: Mapping) -> Path:
    """Write ``document`` as indented JSON, creating parent directories; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
