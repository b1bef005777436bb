"""Compares two benchmark runs (the ``bench.json`` of ``tools/gpu_check.py``), suite by suite.

    python tools/compare_bench.py BEFORE.json AFTER.json [--tolerance 0.02]

For every suite both runs hold: each provider's geometric-mean speed ratio per split (the suite's own
figure, against its baseline measured in the same run) before and after, and their change; then the
geometric mean over the suite's problems of deepgemm's time after / before. Exits 1 when a change of
a geometric mean exceeds the tolerance (default 2%), so a restructuring that should change nothing can
be checked by one command on two runs made on the same GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def _suites(path: str) -> dict[str, dict]:
    document = json.load(open(path))
    return {suite["name"]: suite for suite in document["suites"]}


def _geomean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _time_ratio(before: dict, after: dict, provider: str) -> float | None:
    """Geometric mean over the problems of the provider's time after / before."""
    ratios = []
    for old, new in zip(before["problems"], after["problems"], strict=False):
        old_us = old["results"].get(provider, {}).get("us")
        new_us = new["results"].get(provider, {}).get("us")
        if old_us and new_us:
            ratios.append(new_us / old_us)
    return _geomean(ratios)


def compare(before_path: str, after_path: str, tolerance: float) -> list[str]:
    """Prints the comparison; returns the geometric means that moved by more than ``tolerance``."""
    before, after = _suites(before_path), _suites(after_path)
    moved = []
    for name in (name for name in before if name in after):
        print(f"{name} (ratios against {after[name]['baseline']}):")
        for provider, splits in after[name]["geomean"].items():
            for split, cell in splits.items():
                old = before[name]["geomean"].get(provider, {}).get(split, {}).get("geomean")
                new = cell["geomean"]
                if old is None or new is None:
                    continue
                change = new / old - 1
                flag = "" if abs(change) <= tolerance else "  <-- beyond tolerance"
                print(f"  {provider:28s} {split:24s} {old:7.3f} -> {new:7.3f} ({change:+.1%}){flag}")
                if flag:
                    moved.append(f"{name} {provider} {split}: {change:+.1%}")
        ratio = _time_ratio(before[name], after[name], "deepgemm")
        if ratio is not None:
            print(f"  deepgemm time after / before, geometric mean over the problems: {ratio:.3f}")
    return moved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--tolerance", type=float, default=0.02, help="largest change allowed (default 0.02)")
    args = parser.parse_args()
    moved = compare(args.before, args.after, args.tolerance)
    print("every geometric mean within tolerance" if not moved else f"{len(moved)} beyond tolerance")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
