"""Benchmark arithmetic (TFLOPS, GB/s, speed ratios, geometric means), the printed table and the JSON file.

Records are plain dicts in the JSON schema (see ``deepgemm.bench.runner``), so what is printed is
computed from exactly what is saved.
"""

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from .suites import BASELINE_FASTER, Problem, Split

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


def _timed(result: Mapping | None, key: str) -> bool:
    return result is not None and result["status"] == "ok" and result.get(key) is not None


def speedups(
    results: Mapping[str, Mapping], baseline: str, faster: str = BASELINE_FASTER, key: str = "us"
) -> dict[str, float]:
    """Speed ratio of each other provider against ``baseline``, oriented by ``faster`` (see ``Suite``):
    ``"baseline"``: speed of the baseline relative to the provider, ``t_provider / t_baseline``;
    ``"provider"``: speed of the provider relative to the baseline, ``t_baseline / t_provider``.

    Times are the results' ``key``. Only providers that ran, matched their reference (status ``ok``)
    and have that time take part.
    """
    base = results.get(baseline)
    if not _timed(base, key):
        return {}
    return {
        name: result[key] / base[key] if faster == BASELINE_FASTER else base[key] / result[key]
        for name, result in results.items()
        if name != baseline and _timed(result, key)
    }


def pair_label(faster: str, slower: str) -> str:
    return f"{faster}/{slower}"


def pair_speedups(
    results: Mapping[str, Mapping], pairs: Iterable[tuple[str, str]], key: str = "us"
) -> dict[str, float]:
    """``{"a/b": t_b / t_a}``: speed of ``a`` relative to ``b``, for each pair whose two are ``ok``
    and have a time ``key``."""
    return {
        pair_label(a, b): results[b][key] / results[a][key]
        for a, b in pairs
        if all(_timed(results.get(name), key) for name in (a, b))
    }


def twin_speedups(results: Mapping[str, Mapping], twin_results: Mapping[str, Mapping]) -> dict[str, float]:
    """``{provider: t_twin / t_problem}``: how many times faster each provider runs a problem than its
    twin, for each provider ``ok`` on both."""
    return {
        name: twin_results[name]["us"] / result["us"]
        for name, result in results.items()
        if result["status"] == "ok" and name in twin_results and twin_results[name]["status"] == "ok"
    }


def twin_label(problem: Problem, twin: Problem) -> str:
    """``"nn/nt"``: the majors of a problem and of its twin (twins differ in major-ness only)."""
    return f"{problem.major}/{twin.major}"


TWIN_DEFINITION = (
    "t_twin / t_problem per provider: how many times faster each provider runs the problem than the"
    " problem named in its 'twin' (for the 16-bit suite: the NT layout of the same shape)"
)


def speedup_definition(baseline: str, faster: str) -> str:
    """What a suite's ``speedup`` figures mean, in words (printed and kept in the JSON)."""
    if faster == BASELINE_FASTER:
        return f"t_provider / t_baseline: how many times faster the baseline ({baseline}) runs"
    return f"t_baseline / t_provider: how many times faster each provider runs than the baseline ({baseline})"


def pair_definition(a: str, b: str) -> str:
    return f"t_{b} / t_{a}: how many times faster {a} runs than {b}"


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


def split_minima(
    problems: Iterable[tuple[Problem, Mapping[str, float]]], splits: Iterable[Split], providers: Iterable[str]
) -> dict[str, dict[str, float | None]]:
    """``{provider: {split label: smallest ratio | None}}``: the worst shape of each split, for bars
    that hold per shape (e.g. "no layout more than 5% behind NT")."""
    problems, splits = list(problems), list(splits)
    minima: dict[str, dict[str, float | None]] = {}
    for provider in providers:
        minima[provider] = {}
        for split in splits:
            ratios = [
                ratio[provider]
                for problem, ratio in problems
                if split.contains(problem) and provider in ratio
            ]
            minima[provider][split.label] = min(ratios, default=None)
    return minima


def _cell(value: float | None, spec: str, width: int) -> str:
    """``value`` formatted with ``spec``, or a dash for ``None``, right-aligned in ``width`` columns."""
    return ("-" if value is None else format(value, spec)).rjust(width)


def _ratio(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.2f}x"


def table_header(layout: str = "dense", show_major: bool = False, show_hbm: bool = False) -> str:
    """Column names; grouped problems show G, the valid rows M of each group and max_m (masked);
    ``show_major`` adds how A and B are stored (``Problem.major``), ``show_hbm`` the fraction of the
    GPU's HBM bandwidth the GB/s are."""
    if layout == "dense":
        shape = f"{'M':>6} {'N':>6} {'K':>6}"
    else:
        shape = f"{'G':>3} {'M':>6} {'max_m':>6} {'N':>6} {'K':>6}"
    if show_major:
        shape += f" {'major':>5}"
    hbm = f" {'HBM':>5}" if show_hbm else ""
    columns = (f"{'provider':<18} {'us':>9} {'TFLOPS':>7} {'GB/s':>7}{hbm} {'speedup':>8}  {'calc_diff':>9}"
               "  status")
    return f"{shape}  {columns}"


TABLE_HEADER = table_header()


def _shape_cells(problem: Problem, show_major: bool = False) -> str:
    if problem.layout == "dense":
        cells = f"{problem.m:>6} {problem.n:>6} {problem.k:>6}"
    else:
        max_m = "-" if problem.max_m is None else problem.max_m
        cells = f"{problem.num_groups:>3} {problem.m:>6} {max_m:>6} {problem.n:>6} {problem.k:>6}"
    return f"{cells} {problem.major:>5}" if show_major else cells


def format_problem(
    problem: Problem,
    results: Mapping[str, Mapping],
    ratios: Mapping[str, float],
    pair_ratios: Mapping[str, float] | None = None,
    twin: tuple[str, Mapping[str, float]] | None = None,
    show_major: bool = False,
    from_rest_ratios: Mapping[str, float] | None = None,
    from_rest_pair_ratios: Mapping[str, float] | None = None,
    show_hbm: bool = False,
) -> str:
    """The table lines of one problem: one per provider, the shape printed on the first only, then
    one line per pair ratio, then the twin ratios ``(label, {provider: ratio})`` on one line, then
    the from-rest times (where measured) with their ratios against the baseline
    (``from_rest_ratios``) and of the pairs (``from_rest_pair_ratios``) on one line. ``show_hbm``: a
    column of each result's ``hbm_fraction`` (its GB/s over the GPU's peak HBM bandwidth).

    ``speedup`` is the provider's ratio against the baseline (blank for the baseline), oriented as
    the suite says (``speedup_definition``).
    """
    lines = []
    shape = _shape_cells(problem, show_major)
    for name, result in results.items():
        cells = [
            _cell(result["us"], ".1f", 9),
            _cell(result["tflops"], ".1f", 7),
            _cell(result["gbps"], ".0f", 7),
            *([_cell(result.get("hbm_fraction"), ".0%", 5)] if show_hbm else []),
            _ratio(ratios.get(name), "").rjust(8),
            " " + _cell(result["diffs"].get(result["reference"]), ".1e", 9),
            " " + ("" if result["status"] == "ok" else f"{result['status']} ({result['reason']})"),
        ]
        lines.append(f"{shape}  {name:<18} {' '.join(cells)}".rstrip())
        shape = " " * len(shape)
    for label, ratio in (pair_ratios or {}).items():
        lines.append(f"{shape}  {label} speed: {_ratio(ratio)}")
    if twin is not None:
        label, twin_ratios = twin
        cells = "  ".join(f"{name} {_ratio(ratio)}" for name, ratio in twin_ratios.items()) or "-"
        lines.append(f"{shape}  {label} speed: {cells}")
    from_rest = [
        f"{name} {result['us_from_rest']:.1f} us {result['tflops_from_rest']:.1f} TFLOPS"
        + (f" {_ratio(from_rest_ratios[name])}" if name in (from_rest_ratios or {}) else "")
        for name, result in results.items()
        if result.get("us_from_rest") is not None
    ]
    from_rest += [f"{label} {_ratio(ratio)}" for label, ratio in (from_rest_pair_ratios or {}).items()]
    if from_rest:
        lines.append(f"{shape}  from rest: {'  '.join(from_rest)}")
    return "\n".join(lines)


def _geomean_lines(summary: Mapping[str, Mapping[str, Mapping]]) -> list[str]:
    width = max([18, *map(len, summary)])
    lines = []
    for name, splits in summary.items():
        cells = "  ".join(
            f"{label} ({cell['n']}): {_ratio(cell['geomean'])}" for label, cell in splits.items()
        )
        lines.append(f"  {name:<{width}} {cells}")
    return lines


def format_geomeans(
    baseline: str,
    summary: Mapping[str, Mapping[str, Mapping]],
    faster: str = BASELINE_FASTER,
    pair_summary: Mapping[str, Mapping[str, Mapping]] | None = None,
    twin_summary: Mapping[str, Mapping[str, Mapping]] | None = None,
    twin_worst: Mapping[str, Mapping[str, float | None]] | None = None,
) -> str:
    """One line per provider: geometric-mean speed ratio against ``baseline``, per split, oriented by
    ``faster``; then the pair ratios' geometric means (``"a/b"``: speed of a relative to b); then
    each provider's speed on a problem relative to its twin, geometric mean and worst shape."""
    lines = []
    if summary and faster == BASELINE_FASTER:
        lines = [f"geometric-mean speed of {baseline} relative to:", *_geomean_lines(summary)]
    elif summary:
        lines = [f"geometric-mean speed relative to {baseline}:", *_geomean_lines(summary)]
    if pair_summary:
        lines += ["geometric-mean speed of a relative to b (a/b):", *_geomean_lines(pair_summary)]
    if twin_summary:
        lines.append("speed relative to the twin (t_twin / t_problem), geometric mean and worst shape:")
        width = max([18, *map(len, twin_summary)])
        for name, splits in twin_summary.items():
            worst = (twin_worst or {}).get(name, {})
            cells = "  ".join(
                f"{label} ({cell['n']}): {_ratio(cell['geomean'])} (worst {_ratio(worst.get(label))})"
                for label, cell in splits.items()
            )
            lines.append(f"  {name:<{width}} {cells}")
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
