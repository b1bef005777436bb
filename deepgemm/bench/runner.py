"""Run a suite: per problem, build the inputs once, then check and time every provider on them.

JSON records (all times in microseconds):

- provider result: ``{"status": "ok" | "wrong" | "unavailable" | "error", "reason": str | None,
  "us", "tflops", "gbps": float | None, "reference": "fp8" | "bf16", "max_diff": float,
  "diffs": {kind: float}, "correct": bool | None, "us_rounds": [float], "us_from_rest",
  "tflops_from_rest": float | None, "us_from_rest_rounds": [float] | None}``: ``us`` is the median of
  ``us_rounds``, one time per round (see ``measure_problem``); the ``from_rest`` figures, the same
  for the first calls after a rest, exist for long calls only. ``wrong`` = ran, but its output missed its
  reference by more than ``max_diff`` (still timed; left out of the ratios). ``diffs`` holds
  calc_diff against every reference the inputs offer (``fp8``, ``bf16``; 16-bit inputs only
  ``bf16``), on the valid rows only for grouped problems; ``reference`` names the one that is checked.
- problem record: ``{"m", "n", "k", "num_groups", "layout", "max_m", "major", "flops", "bytes",
  "deepgemm_config", "results": {provider: result}, "speedup": {provider: ratio against the
  baseline}, "pair_speedup": {"a/b": t_b / t_a}, "speedup_from_rest", "pair_speedup_from_rest": the
  same from the from-rest times (empty without them), "twin": the twin problem's fields or None,
  "twin_speedup": {provider: t_twin / t_problem}}``. ``m`` is the valid rows of each group and
  ``flops`` counts valid rows only.
- suite record: ``{"name", "description", "baseline", "faster", "speedup_definition", "providers":
  {name: what it calls}, "pairs": {"a/b": definition}, "splits": [labels], "problems": [problem
  record], "geomean": {provider: {split: {"geomean", "n"}}}, "pair_geomean": {"a/b": {split: ...}},
  "twin_definition": str | None, "twin_geomean": {provider: {split: {"geomean", "n"}}},
  "twin_worst": {provider: {split: smallest twin ratio | None}}}``; the twin figures cover the splits
  that hold a problem with a twin.
- host-overhead record: ``{"problem": {...}, "num_calls", "providers": {name: result with "us_per_call"}}``.
"""

import dataclasses
import statistics
from collections.abc import Callable, Sequence

import torch

from deepgemm import heuristics
from deepgemm.ops.common.launch import K_GROUPED
from deepgemm.quant import align
from deepgemm.testing import CONTIGUOUS_M_ALIGNMENT, calc_diff
from deepgemm.testing.bench import bench_host_overhead

from .providers import Provider, ProviderUnavailable
from .report import (
    TWIN_DEFINITION,
    gbps,
    pair_definition,
    pair_label,
    pair_speedups,
    speedup_definition,
    speedups,
    split_geomeans,
    split_minima,
    tflops,
    twin_speedups,
)
from .suites import Problem, Suite

Timer = Callable[[Callable[[], object]], float]
Measure = Callable[[Callable[[], object]], dict]

# The decode-sized GEMM of the anchors' host-cost table.
HOST_OVERHEAD_PROBLEM = Problem(64, 2112, 7168)
# Problems where some provider's call lasts this long are timed in several rounds (see
# `measure_problem`): a measurement of calls this long heats the chip enough, under its power cap, to
# lower its clock within the measurement. H200, repeated rested measurements of one call: 0.7-1.6 ms
# MoE calls spread over 2-15%; calls of up to about 0.2 ms agreed within 1%.
LONG_CALL_US = 300.0
# What the from-rest timer adds to a provider's result (None where it did not run).
FROM_REST_FIELDS = ("us_from_rest", "tflops_from_rest", "us_from_rest_rounds")


def _error(error: Exception) -> dict:
    return {"status": "error", "reason": f"{type(error).__name__}: {error}"}


def _check(provider: Provider, output: object, inputs) -> dict:
    checked = inputs.valid_rows(output)
    diffs = {kind: float(calc_diff(checked, inputs.reference(kind))) for kind in inputs.reference_kinds}
    return {"diffs": diffs, "correct": diffs[provider.reference] <= provider.max_diff}


def run_provider(provider: Provider, inputs, measure: Measure, fields: Sequence[str]) -> dict:
    """Prepare ``provider`` on ``inputs`` (adapted first if it says so), check its output against
    its reference, then ``measure`` it.

    ``measure(run)`` returns the figures named in ``fields``; they stay ``None`` when it cannot run.
    """
    result, run = prepare_provider(provider, inputs, fields)
    if run is not None:
        try:
            result.update(measure(run))
        except Exception as error:
            return result | _error(error)
    return result


def prepare_provider(
    provider: Provider, inputs, fields: Sequence[str]
) -> tuple[dict, Callable[[], object] | None]:
    """``provider`` prepared on ``inputs`` (adapted first if it says so) and its output checked
    against its reference: its result record (the ``fields`` still ``None``) and the call to time,
    or ``None`` when it cannot run. A wrong output is still timed, but kept out of the ratios."""
    result = {
        "status": "ok",
        "reason": None,
        **dict.fromkeys(fields),
        "reference": provider.reference,
        "max_diff": provider.max_diff,
        "diffs": {},
        "correct": None,
    }
    try:
        if provider.adapt is not None:
            inputs = provider.adapt(inputs)
        run = provider.prepare(inputs)
        if hasattr(run, "extra"):  # what a provider measured while preparing (e.g. a cold JIT pass)
            result["extra"] = run.extra
        result.update(_check(provider, run(), inputs))
    except ProviderUnavailable as error:
        return result | {"status": "unavailable", "reason": str(error)}, None
    except Exception as error:  # one broken provider must not stop the others
        return result | _error(error), None
    if not result["correct"]:
        result["status"] = "wrong"
        result["reason"] = f"calc_diff vs {provider.reference} reference above {provider.max_diff:g}"
    return result, run


def _gemm_shape(problem: Problem, family: str, out_bytes: int) -> heuristics.GemmShape:
    """The ``GemmShape`` the launcher builds for ``problem``: grouped layouts carry the groups
    (contiguous: ``m`` = every group's rows with their padding; masked: ``m`` = the expected rows of
    one group), the 16-bit family whether B is stored ``[K, N]``, and K as the family's kernel runs it
    (``GemmShape.of_problem``: a 3xTF32 product runs the k-blocks of three TF32 products)."""
    rows, extra = problem.m, {"family": heuristics.FAMILIES[family], "out_bytes": out_bytes}
    if problem.layout != "dense":
        if problem.layout == "contiguous":
            rows = problem.num_groups * align(problem.m, CONTIGUOUS_M_ALIGNMENT)
        # The k-grouped GEMM's launcher describes it as the masked layout does: G problems of M rows.
        layout = "masked" if problem.layout == K_GROUPED else problem.layout
        extra |= {"num_groups": problem.num_groups, "layout": layout}
    if problem.major[1] == "n":
        extra["b_mn_major"] = True
    return heuristics.GemmShape.of_problem(rows, problem.n, problem.k, **extra)


def deepgemm_config(problem: Problem, num_sms: int, family: str = "fp8_1d2d", out_bytes: int = 2) -> dict:
    """The kernel config deepgemm's heuristics pick for ``problem`` on the kernel ``family`` writing
    ``out_bytes``-byte output, as JSON-ready data (the family by name); ``{"error": ...}`` when the
    selection fails (metadata never fails a benchmark)."""
    try:
        config = heuristics.select_config(_gemm_shape(problem, family, out_bytes), num_sms)
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
    return config.as_dict()


def _config_on(device: torch.device, suite: Suite, problem: Problem) -> dict | None:
    # A cast or a training step has no GEMM config.
    if device.type != "cuda" or suite.family not in heuristics.FAMILIES:
        return None
    num_sms = torch.cuda.get_device_properties(device).multi_processor_count
    return deepgemm_config(problem, num_sms, suite.family, suite.out_bytes)


def measure_problem(
    suite: Suite,
    problem: Problem,
    providers: Sequence[Provider],
    device: torch.device,
    seed: int,
    timer: Timer,
    rounds: int = 1,
    from_rest_timer: Timer | None = None,
) -> dict:
    """Every provider prepared and checked on the same inputs, then timed one after the other. Where
    some call lasts LONG_CALL_US or more and ``rounds`` > 1, ``rounds - 1`` more rounds follow, each in
    the reverse order of the one before (so no provider always runs first or last), and each provider
    reports its median round. Where some call lasts that long, ``from_rest_timer`` then times every
    provider again in as many rounds (``us_from_rest``; its ratios in ``speedup_from_rest`` and
    ``pair_speedup_from_rest``)."""
    inputs = suite.make_inputs(problem, device, seed)
    nbytes = suite.bytes_moved(problem)
    provider_bytes = {p.name: p.bytes_moved(problem) for p in providers if p.bytes_moved is not None}
    hbm_peak = hbm_bytes_per_second(device) if suite.reports_hbm else None
    fields = ("us", "tflops", "gbps", "us_rounds", *FROM_REST_FIELDS)
    results, runs = {}, {}
    for provider in providers:
        results[provider.name], run = prepare_provider(provider, inputs, fields)
        if run is not None:
            runs[provider.name] = run
    times = _time_in_rounds(runs, timer, rounds, results)
    flops = suite.problem_flops(problem)
    for name, seconds_per_round in times.items():
        results[name] |= _round_figures(seconds_per_round, flops, nbytes=provider_bytes.get(name, nbytes))
        if hbm_peak is not None:
            results[name]["hbm_fraction"] = results[name]["gbps"] * 1e9 / hbm_peak
    if from_rest_timer is not None and _lasts_long(times):
        from_rest = _time_in_rounds({name: runs[name] for name in times}, from_rest_timer, rounds, results)
        for name, seconds_per_round in from_rest.items():
            results[name] |= _round_figures(seconds_per_round, flops, suffix="_from_rest")
    return {
        **dataclasses.asdict(problem),
        "flops": flops,
        "bytes": nbytes,
        "deepgemm_config": _config_on(device, suite, problem),
        "results": results,
        "speedup": speedups(results, suite.baseline, suite.faster),
        "pair_speedup": pair_speedups(results, suite.pairs),
        "speedup_from_rest": speedups(results, suite.baseline, suite.faster, "us_from_rest"),
        "pair_speedup_from_rest": pair_speedups(results, suite.pairs, "us_from_rest"),
    }


# Peak HBM bandwidth by GPU name (bytes/s): what the decode suite's fraction of HBM is taken against.
HBM_BYTES_PER_SECOND = {"H100": 3.35e12, "H800": 3.35e12, "H200": 4.8e12, "H20": 4.0e12}


def hbm_bytes_per_second(device: torch.device) -> float | None:
    """The peak HBM bandwidth of ``device``'s GPU, read from its name (``None``: CPU or a GPU not in
    HBM_BYTES_PER_SECOND)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_properties(device).name
    # Longest first: "H200" must not match as "H20".
    for model in sorted(HBM_BYTES_PER_SECOND, key=len, reverse=True):
        if model in name:
            return HBM_BYTES_PER_SECOND[model]
    return None


def _round_figures(
    seconds_per_round: list[float], flops: int, suffix: str = "", nbytes: int | None = None
) -> dict:
    """A provider's figures from its rounds: the median round's time (``us<suffix>``) and TFLOPS
    (``tflops<suffix>``), every round's time (``us<suffix>_rounds``), and given ``nbytes`` its GB/s."""
    seconds = statistics.median(seconds_per_round)
    figures = {
        f"us{suffix}": seconds * 1e6,
        f"tflops{suffix}": tflops(flops, seconds),
        f"us{suffix}_rounds": [s * 1e6 for s in seconds_per_round],
    }
    if nbytes is not None:
        figures["gbps"] = gbps(nbytes, seconds)
    return figures


def _lasts_long(times: dict[str, list[float]]) -> bool:
    """Whether some provider's first measured call lasted LONG_CALL_US or more."""
    return max((t[0] for t in times.values() if t), default=0.0) * 1e6 >= LONG_CALL_US


def _time_in_rounds(
    runs: dict[str, Callable[[], object]], timer: Timer, rounds: int, results: dict
) -> dict[str, list[float]]:
    """Seconds per round of each call in ``runs``: one round, or ``rounds`` where some call lasts long
    (``_lasts_long``), each round in the reverse order of the one before. A provider whose timer fails
    gets an error record in ``results`` and no times."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for round_index in range(rounds):
        if round_index == 1 and not _lasts_long(times):
            break
        for name in order if round_index % 2 == 0 else order[::-1]:
            if name not in times:
                continue
            try:
                times[name].append(timer(runs[name]))
            except Exception as error:
                results[name] |= _error(error)
                del times[name]
    return times


def run_suite(
    suite: Suite,
    providers: Sequence[Provider],
    device: torch.device,
    seed: int,
    timer: Timer,
    on_problem: Callable[[Problem, dict], None] = lambda problem, record: None,
    rounds: int = 1,
    from_rest_timer: Timer | None = None,
) -> dict:
    """Measure every problem of ``suite`` (long calls in ``rounds`` rounds, and again with
    ``from_rest_timer``: ``measure_problem``);
    ``on_problem`` sees each record as soon as it is done, twin ratios included (a twin comes before
    its problems)."""
    records: list[dict] = []
    measured: dict[Problem, dict] = {}
    for problem in suite.problems:
        record = measure_problem(suite, problem, providers, device, seed, timer, rounds, from_rest_timer)
        twin = suite.twin(problem) if suite.twin is not None else None
        if twin is not None and twin != problem and twin in measured:
            record["twin"] = dataclasses.asdict(twin)
            record["twin_speedup"] = twin_speedups(record["results"], measured[twin]["results"])
        else:
            record["twin"], record["twin_speedup"] = None, {}
        on_problem(problem, record)
        records.append(record)
        measured[problem] = record
    others = [provider.name for provider in providers if provider.name != suite.baseline]
    ratios = [(problem, record["speedup"]) for problem, record in zip(suite.problems, records, strict=True)]
    pair_ratios = [
        (problem, record["pair_speedup"]) for problem, record in zip(suite.problems, records, strict=True)
    ]
    # Only pairs whose two providers run: a --providers selection may leave one out.
    names = {provider.name for provider in providers}
    pairs = {pair_label(a, b): pair_definition(a, b) for a, b in suite.pairs if {a, b} <= names}
    twin_ratios = [
        (problem, record["twin_speedup"])
        for problem, record in zip(suite.problems, records, strict=True)
        if record["twin"] is not None
    ]
    twin_splits = [
        split for split in suite.splits if any(split.contains(problem) for problem, _ in twin_ratios)
    ]
    twin_names = [provider.name for provider in providers] if twin_ratios else []
    return {
        "name": suite.name,
        "description": suite.description,
        "baseline": suite.baseline,
        "faster": suite.faster,
        "speedup_definition": speedup_definition(suite.baseline, suite.faster),
        "providers": {provider.name: provider.calls for provider in providers},
        "pairs": pairs,
        "splits": [split.label for split in suite.splits],
        "problems": records,
        "geomean": split_geomeans(ratios, suite.splits, others),
        "pair_geomean": split_geomeans(pair_ratios, suite.splits, pairs),
        "twin_definition": TWIN_DEFINITION if twin_ratios else None,
        "twin_geomean": split_geomeans(twin_ratios, twin_splits, twin_names),
        "twin_worst": split_minima(twin_ratios, twin_splits, twin_names),
    }


def measure_host_overhead(
    suite: Suite, providers: Sequence[Provider], device: torch.device, seed: int, num_calls: int
) -> dict:
    """CPU microseconds per call of each provider on ``HOST_OVERHEAD_PROBLEM`` (cached, no sync)."""
    inputs = suite.make_inputs(HOST_OVERHEAD_PROBLEM, device, seed)

    def measure(run: Callable[[], object]) -> dict:
        return {"us_per_call": bench_host_overhead(run, num_calls) * 1e6}

    return {
        "problem": dataclasses.asdict(HOST_OVERHEAD_PROBLEM),
        "num_calls": num_calls,
        "providers": {
            provider.name: run_provider(provider, inputs, measure, ("us_per_call",)) for provider in providers
        },
    }
