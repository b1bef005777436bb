"""Ahead-of-time compilation: build every kernel a model's GEMMs will load into the JIT cache.

``python -m deepgemm.precompile`` (see ``__main__``) takes GEMM shapes (M ranges x N x K, a JSON file, or
presets made of the benchmark's suites), asks each kernel family which kernels its launch path would
load for them on a GPU of a given SM count (``kernel_specs``: the heuristic's configs, no GPU needed),
and builds them with the JIT's own ``build_kernel`` in parallel processes. The entries are the ones a
later GPU process looks up: same stub, headers, compiler and flags, hence the same cache key. Use the
same ``DG_JIT_COMPILER`` in both (the key names the compiler; NVRTC's identity holds on any machine,
nvcc's includes its path) and the GPU's SM count (``--num-sms``; ``set_num_sms`` if it caps them).
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

from ..ops.common.launch import KernelRequest, KernelSpec

# Each kernel family's `kernel_specs(request, num_sms)`, as "module:function", imported on use. A new
# family adds its line here. "tf32x3" is the TF32 family's 3xTF32 GEMM, "w8a16" / "w4a16" the weight-only
# family's two weight widths, "cast" the fused FP8 casts, and "fp8_linear" / "fp8_grouped_linear" every
# kernel of a training step of `deepgemm.fp8_linear` / `fp8_grouped_linear` (their casts and GEMMs).
FAMILY_KERNEL_SPECS = {
    "fp8_1d2d": "deepgemm.ops.fp8.kernel:kernel_specs",
    "bf16": "deepgemm.ops.bf16.kernel:kernel_specs",
    "fp8_1d1d": "deepgemm.ops.fp8_1d1d.kernel:kernel_specs",
    "int8": "deepgemm.ops.int8.kernel:kernel_specs",
    "tf32": "deepgemm.ops.tf32.kernel:kernel_specs",
    "tf32x3": "deepgemm.ops.tf32.kernel:kernel_specs",
    "w8a16": "deepgemm.ops.wonly.kernel:kernel_specs",
    "w4a16": "deepgemm.ops.wonly.kernel:kernel_specs",
    "cast": "deepgemm.ops.cast.kernel:cast_specs",
    "fp8_linear": "deepgemm.nn.linear:kernel_specs",
    "fp8_grouped_linear": "deepgemm.nn.grouped:kernel_specs",
}
# Kernels a family's callers load beside its GEMMs, built with them: the FP8 GEMMs' operands are
# quantised by the fused cast kernels.
COMPANION_KERNEL_SPECS = {
    "fp8_1d2d": "deepgemm.ops.cast.kernel:operand_cast_specs",
    "fp8_1d1d": "deepgemm.ops.cast.kernel:token_cast_specs",
}
# The Hopper parts' SM counts: H100 SXM and H200 have 132, H100 PCIe 114.
DEFAULT_NUM_SMS = 132


def family_kernel_specs(family: str) -> Callable[[KernelRequest, int], list[KernelSpec]]:
    """The family's ``kernel_specs``, followed by its companions' kernels."""
    if family not in FAMILY_KERNEL_SPECS:
        raise ValueError(f"family must be one of {', '.join(FAMILY_KERNEL_SPECS)}, got {family!r}")
    functions = [_imported(FAMILY_KERNEL_SPECS[family])]
    if family in COMPANION_KERNEL_SPECS:
        functions.append(_imported(COMPANION_KERNEL_SPECS[family]))
    return lambda request, num_sms: [spec for function in functions for spec in function(request, num_sms)]


def _imported(path: str) -> Callable[[KernelRequest, int], list[KernelSpec]]:
    module, function = path.split(":")
    return getattr(importlib.import_module(module), function)


def _spec_key(spec: KernelSpec) -> tuple:
    return spec.name, spec.header, spec.template_args, spec.comment


def _spec_keys(requests: Sequence[KernelRequest], num_sms: int) -> list[list[tuple]]:
    return [[_spec_key(spec) for spec in family_kernel_specs(r.family)(r, num_sms)] for r in requests]


def kernel_specs(requests: Sequence[KernelRequest], num_sms: int = DEFAULT_NUM_SMS,
                 jobs: int = 1) -> list[KernelSpec]:
    """The distinct kernels ``requests`` load on a GPU of ``num_sms`` SMs, in first-seen order. The
    heuristic costs milliseconds per request, so many requests (M ranges) are spread over ``jobs``
    processes, which name each request's kernels; the specs are then made here from one request each."""
    requests = list(requests)
    chunk = max(1, -(-len(requests) // (4 * jobs)))
    if jobs > 1 and len(requests) > 256:
        with _pool(jobs) as pool:
            parts = pool.map(_spec_keys, [requests[i:i + chunk] for i in range(0, len(requests), chunk)],
                             [num_sms] * -(-len(requests) // chunk))
            keys = [key_list for part in parts for key_list in part]
    else:
        keys = _spec_keys(requests, num_sms)
    first: dict[tuple, KernelRequest] = {}
    for request, key_list in zip(requests, keys, strict=True):
        for key in key_list:
            first.setdefault(key, request)
    specs: dict[tuple, KernelSpec] = {}
    for request in dict.fromkeys(first.values()):
        for spec in family_kernel_specs(request.family)(request, num_sms):
            specs.setdefault(_spec_key(spec), spec)
    return [specs[key] for key in first]


def _pool(jobs: int) -> ProcessPoolExecutor:
    # Spawned workers: nothing of this process's state (torch's thread pools) is forked into them.
    import multiprocessing

    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))


@dataclass
class Summary:
    """What a precompile run did: kernels built, found in the cache, failed (with their errors)."""

    built: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.built} built, {self.reused} reused, {len(self.failed)} failed, "
                f"{self.seconds:.1f} s")


def build_spec(spec: KernelSpec) -> bool:
    """Builds ``spec`` into the cache (``DG_JIT_*`` knobs as in this process); whether it compiled."""
    from ..jit import build_kernel

    return build_kernel(spec.name, spec.header, spec.template_args, comment=spec.comment).compiled


def build_all(specs: Sequence[KernelSpec], jobs: int = 1,
              progress: Callable[[int, int, Summary], None] | None = None) -> Summary:
    """Builds ``specs`` in ``jobs`` processes (in this one for ``jobs == 1``), calling ``progress(done,
    total, summary)`` after each; a kernel that fails is counted and the others still build. The
    workers are spawned processes: a script that calls this with ``jobs > 1`` needs the usual
    ``if __name__ == "__main__":`` guard."""
    summary, started = Summary(), time.monotonic()

    def record(spec: KernelSpec, outcome: Callable[[], bool]) -> None:
        try:
            if outcome():
                summary.built += 1
            else:
                summary.reused += 1
        except Exception as error:  # a compile error of one kernel must not stop the others
            summary.failed.append((spec.comment.replace("\n", " "), f"{type(error).__name__}: {error}"))
        summary.seconds = time.monotonic() - started
        if progress is not None:
            progress(summary.built + summary.reused + len(summary.failed), len(specs), summary)

    if jobs <= 1:
        for spec in specs:
            record(spec, lambda spec=spec: build_spec(spec))
        return summary
    with _pool(jobs) as pool:
        futures = {pool.submit(build_spec, spec): spec for spec in specs}
        for future in as_completed(futures):
            record(futures[future], future.result)
    return summary


def progress_bar(stream=sys.stderr, width: int = 30) -> Callable[[int, int, Summary], None]:
    """A ``build_all`` progress callback: a bar redrawn in place on a terminal, else a line per kernel."""
    interactive = stream.isatty()

    def show(done: int, total: int, summary: Summary) -> None:
        filled = width * done // max(total, 1)
        text = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {summary.line()}"
        stream.write(f"\r{text}" + ("\n" if done == total else "") if interactive else text + "\n")
        stream.flush()

    return show


__all__ = ["DEFAULT_NUM_SMS", "FAMILY_KERNEL_SPECS", "KernelRequest", "Summary", "build_all", "build_spec",
           "kernel_specs", "progress_bar"]
