"""The visual report of benchmark runs: a roofline plot, a speed-ratio chart per suite, and one HTML page.

``write_report(documents, directory)`` takes benchmark JSON documents (``deepgemm.bench/1``, as
``--json`` writes them) and writes ``roofline.png``, ``ratio-<suite>.png`` per suite and ``report.html``
(the tables and the plots, the PNGs embedded, so the page stands alone). matplotlib is an optional
dependency (``pip install deepgemm[plot]``); ``require_matplotlib`` says how to install it.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "the report needs matplotlib: pip install 'deepgemm[plot]' (or pip install matplotlib)"


@dataclass(frozen=True)
class Gpu:
    """Dense tensor-core peaks (TFLOPS) and HBM bandwidth (TB/s) of a GPU, from its data sheet."""

    name: str
    fp8_tflops: float
    bf16_tflops: float
    hbm_tbps: float


# The H100 and H200 SXM share the die (and so the compute peaks); the H200 has faster HBM3e.
GPUS = (Gpu("H100 SXM", 1979.0, 989.4, 3.35), Gpu("H200 SXM", 1979.0, 989.4, 4.8))
# Each provider's colour in every plot; providers not named here take the spare ones in turn.
PROVIDER_COLOURS = {"deepgemm": "#1f77b4", "matmul": "#08306b", "deepgemm_dense": "#2ca02c",
                    "cublas_blockwise": "#d62728", "cublas_per_tensor": "#ff7f0e", "cublas_bf16": "#9467bd",
                    "cublas_blockwise_loop": "#e377c2", "cublas_bf16_loop": "#8c564b",
                    "by_hand": "#bcbd22"}
# Providers that run another problem than the suite's (the dense twin of a grouped problem reads one B, not
# G of them), so the problem's bytes would put them above the memory ceiling: left out of the roofline.
OFF_ROOFLINE = frozenset({"deepgemm_dense"})
SPARE_COLOURS = ("#17becf", "#7f7f7f", "#aec7e8", "#98df8a")


def colour_of(name: str, spare: dict[str, str]) -> str:
    """``name``'s colour; ``spare`` remembers the spare colours handed out so far."""
    if name in PROVIDER_COLOURS:
        return PROVIDER_COLOURS[name]
    return spare.setdefault(name, SPARE_COLOURS[len(spare) % len(SPARE_COLOURS)])


def is_deepgemm(name: str) -> bool:
    return name.startswith("deepgemm") or name == "matmul"


def require_matplotlib():
    """``matplotlib.pyplot`` on the non-interactive Agg backend; ``ImportError`` with ``INSTALL_HINT``."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def problem_label(problem: Mapping) -> str:
    """``M x N x K`` with the groups and layout for grouped problems, the storage layout where not NT."""
    label = f"{problem['m']}x{problem['n']}x{problem['k']}"
    if problem.get("layout", "dense") != "dense":
        label = f"{problem['num_groups']}x[{label}] {problem['layout']}"
    if problem.get("major", "nt") != "nt":
        label += f" {problem['major'].upper()}"
    return label


def _family(suite: Mapping) -> str:
    for problem in suite["problems"]:
        config = problem.get("deepgemm_config") or {}
        if config.get("family"):
            return config["family"]
    return "bf16" if suite["name"].startswith("bf16") else "fp8_1d2d"


def _gpu_of(documents: Sequence[Mapping]) -> Gpu | None:
    device = " ".join(str(doc.get("env", {}).get("device", "")) for doc in documents)
    return next((gpu for gpu in GPUS if gpu.name.split()[0] in device), None)


def roofline(documents: Sequence[Mapping], path: Path) -> Path:
    """Achieved TFLOPS of every provider and problem against arithmetic intensity (FLOPs per nominal byte
    moved), under the FP8 and BF16 compute peaks and the HBM bandwidth of the H100 and H200."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
    intensities = [p["flops"] / p["bytes"] for doc in documents for s in doc["suites"] for p in s["problems"]
                   if p.get("bytes")]
    low, high = min(intensities, default=1.0) / 2, max(intensities, default=1e4) * 2
    xs = [low * (high / low) ** (i / 200) for i in range(201)]
    ran_on = _gpu_of(documents)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    achieved = [r["tflops"] for doc in documents for s in doc["suites"] for p in s["problems"]
                for r in p["results"].values() if r.get("status") == "ok" and r.get("tflops")]
    ax.set_ylim(max(1.0, min(achieved, default=10) / 2), 3000)
    for gpu in GPUS:
        style = "-" if gpu == ran_on or ran_on is None else ":"
        for peak, colour in ((gpu.fp8_tflops, "0.25"), (gpu.bf16_tflops, "0.6")):
            ax.plot(xs, [min(peak, x * gpu.hbm_tbps) for x in xs], style, color=colour, lw=1.2, zorder=1)
        # The bandwidth label along its slope, where the slope is in view.
        x0 = max(low * 1.3, ax.get_ylim()[0] * 1.5 / gpu.hbm_tbps)
        y0 = x0 * gpu.hbm_tbps
        (px0, py0), (px1, py1) = ax.transData.transform([(x0, y0), (x0 * 2, y0 * 2)])
        ax.text(x0, y0 * 1.12, f"{gpu.name} HBM {gpu.hbm_tbps:g} TB/s", fontsize=8, color="0.3",
                rotation=math.degrees(math.atan2(py1 - py0, px1 - px0)), rotation_mode="anchor")
    for peak, what in ((GPUS[0].fp8_tflops, "FP8"), (GPUS[0].bf16_tflops, "BF16")):
        ax.text(high / 1.1, peak * 1.04, f"{what} dense peak {peak:g} TFLOPS (H100, H200)", ha="right",
                fontsize=8, color="0.3")
    spare: dict[str, str] = {}
    shown: dict[str, str] = {}
    markers = {"fp8_1d2d": "o", "bf16": "s"}
    for doc in documents:
        for suite in doc["suites"]:
            marker = markers.get(_family(suite), "^")
            for problem in suite["problems"]:
                if not problem.get("bytes"):
                    continue
                x = problem["flops"] / problem["bytes"]
                for name, result in problem["results"].items():
                    if result.get("status") != "ok" or not result.get("tflops") or name in OFF_ROOFLINE:
                        continue
                    mine = is_deepgemm(name)
                    shown[name] = colour = colour_of(name, spare)
                    ax.scatter(x, result["tflops"], s=40 if mine else 16, marker=marker, color=colour,
                               alpha=0.95 if mine else 0.5, edgecolors="none", zorder=3 if mine else 2)
    for name in sorted(shown, key=lambda name: (not is_deepgemm(name), name)):
        ax.scatter([], [], color=shown[name], label=name, s=30)
    for family, marker in markers.items():
        ax.scatter([], [], color="0.4", marker=marker, label=f"{family} suites", s=30)
    ax.set_xlabel("arithmetic intensity (FLOP per nominal byte of operands, scales and output)")
    ax.set_ylabel("achieved TFLOPS")
    where = f" on {ran_on.name}" if ran_on else ""
    ax.set_title(f"Roofline{where} (solid: its ceilings; dotted: the other GPU's)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="lower right", ncols=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def ratio_chart(suite: Mapping, path: Path) -> Path:
    """The suite's speed ratios (``speedup``: each provider against the baseline, oriented as the suite's
    ``speedup_definition`` says), problem by problem, with the geometric means in the legend."""
    plt = require_matplotlib()
    problems = suite["problems"]
    providers = list(dict.fromkeys(name for p in problems for name in p.get("speedup", {})))
    width = 0.8 / max(len(providers), 1)
    columns = len(problems) * max(len(providers), 1)
    fig_width = min(16.0, max(7.0, 0.22 * columns + 2.5))
    fig, ax = plt.subplots(figsize=(fig_width, 5.5), dpi=110)
    spare: dict[str, str] = {}
    top = 1.0
    for i, name in enumerate(providers):
        values = [p.get("speedup", {}).get(name, math.nan) for p in problems]
        top = max([top, *(v for v in values if v == v)])
        means = suite.get("geomean", {}).get(name, {})
        summary = ", ".join(f"{split}: {entry['geomean']:.2f}" for split, entry in means.items()
                            if entry.get("geomean"))
        ax.bar([j + (i - (len(providers) - 1) / 2) * width for j in range(len(problems))], values, width,
               label=f"{name} (geomean {summary})" if summary else name, color=colour_of(name, spare))
    ax.axhline(1.0, color="black", lw=1)
    legend_columns = max(1, min(len(providers), int(fig_width // 5)))
    # Room for the legend above the bars.
    ax.set_ylim(0, top * (1.15 + 0.08 * -(-len(providers) // legend_columns)))
    ax.set_xticks(range(len(problems)))
    ax.set_xticklabels([problem_label(p) for p in problems], rotation=60, ha="right", fontsize=8)
    baseline = suite.get("baseline", "the baseline")
    if suite.get("faster") == "provider":
        ax.set_ylabel(f"t_{baseline} / t_provider\n(above 1: the provider is faster)")
    else:
        ax.set_ylabel(f"t_provider / t_{baseline}\n(above 1: {baseline} is faster)")
    ax.set_title(f"{suite['name']}: speed ratio per problem, against {baseline}", fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncols=legend_columns)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(suite: Mapping) -> str:
    names = list(dict.fromkeys(name for p in suite["problems"] for name in p["results"]))
    head = "".join(f"<th>{html.escape(n)} us</th><th>TFLOPS</th>" for n in names)
    ratio_names = list(dict.fromkeys(n for p in suite["problems"] for n in p.get("speedup", {})))
    head += "".join(f"<th>ratio {html.escape(n)}</th>" for n in ratio_names)
    rows = []
    for p in suite["problems"]:
        cells = []
        for name in names:
            r = p["results"].get(name, {})
            if r.get("status") == "ok" and r.get("us") is not None:
                cells.append(f"<td>{r['us']:.1f}</td><td>{r.get('tflops') or 0:.0f}</td>")
            else:
                cells.append(f"<td colspan=2>{html.escape(str(r.get('status', '-')))}</td>")
        cells += [f"<td>{p['speedup'][n]:.3f}</td>" if n in p.get("speedup", {}) else "<td>-</td>"
                  for n in ratio_names]
        rows.append(f"<tr><td>{html.escape(problem_label(p))}</td>{''.join(cells)}</tr>")
    means = "; ".join(f"{html.escape(n)} {html.escape(split)}: {e['geomean']:.3f} ({e['n']})"
                      for n, splits in suite.get("geomean", {}).items() for split, e in splits.items()
                      if e.get("geomean"))
    return (f"<table><tr><th>problem</th>{head}</tr>{''.join(rows)}</table>"
            f"<p class=note>geometric means of the ratios: {means or 'none'}</p>")


def _describe(source: str, document: Mapping) -> str:
    env, method = document.get("env", {}), document.get("method", {})
    return (f"{source + ': ' if source else ''}{env.get('device')}, {document.get('created')}, torch "
            f"{env.get('torch')}, deepgemm {env.get('deepgemm')}; {method.get('timer_description', '')}")


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_report(documents: Sequence[Mapping], directory: str | Path,
                 sources: Sequence[str] = ()) -> list[Path]:
    """Writes the plots and ``report.html`` of ``documents`` into ``directory``; returns the files."""
    require_matplotlib()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suites = [suite for doc in documents for suite in doc["suites"] if suite["problems"]]
    files = [roofline(documents, directory / "roofline.png")]
    names: dict[str, int] = {}
    charts = []
    for suite in suites:
        count = names[suite["name"]] = names.get(suite["name"], 0) + 1
        stem = suite["name"] if count == 1 else f"{suite['name']}-{count}"
        charts.append(ratio_chart(suite, directory / f"ratio-{stem}.png") if any(
            p.get("speedup") for p in suite["problems"]) else None)
    files += [c for c in charts if c is not None]
    envs = "".join(f"<li>{html.escape(_describe(src, doc))}</li>"
                   for src, doc in zip(list(sources) + [""] * len(documents), documents, strict=False))
    body = [f"<h1>deepgemm benchmark report</h1><ul>{envs}</ul>", "<h2>Roofline</h2>", _img(files[0])]
    for suite, chart in zip(suites, charts, strict=True):
        body.append(f"<h2>{html.escape(suite['name'])}</h2><p>{html.escape(suite.get('description', ''))}</p>"
                    f"<p class=note>ratio: {html.escape(suite.get('speedup_definition') or '')}</p>")
        if chart is not None:
            body.append(_img(chart))
        body.append(_table(suite))
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}.note{color:#555;font-size:13px}")
    page = directory / "report.html"
    page.write_text(f"<!doctype html><html><head><meta charset=utf-8><title>deepgemm benchmark report</title>"
                    f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return [*files, page]
