"""What the kernel compile tests share: building instantiations for sm_90a with NVRTC into a fresh cache
with local memory (stack frames, spills) turned into errors, in parallel threads; and checking a host
mirror of a kernel's layout constants by compiling `static_assert`s against the kernel's header."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deepgemm.jit import CompileError, build_kernel
from deepgemm.jit.codegen import render_template_arg


def build_error(kernel: str, header: str, template_args: Sequence) -> str | None:
    """None when the kernel compiled with no local memory, else the error."""
    try:
        build_kernel(kernel, header, tuple(template_args))
    except CompileError as error:  # LocalMemoryError included
        return f"{type(error).__name__}: {error}"
    return None


def build_all(cache_dir: Path, cases: Sequence[Hashable], build: Callable[[Hashable], str | None]) -> dict:
    """``{case: build(case)}``, built in parallel by NVRTC into ``cache_dir``, local memory an error."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DG_JIT_COMPILER", "nvrtc")
        env.setenv("DG_JIT_CACHE_DIR", str(cache_dir))
        env.setenv("DG_JIT_PTXAS_CHECK", "1")
        env.delenv("DG_JIT_DISABLE_CACHE", raising=False)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            return dict(zip(cases, pool.map(build, cases), strict=True))


def layout_type(name: str, args: Sequence) -> str:
    """``deepgemm::<name><args...>`` as C++."""
    return f"deepgemm::{name}<" + ", ".join(render_template_arg(a) for a in args) + ">"


PROBE_HEADER = """#pragma once
#include <{kernel_header}>

// Host mirror vs. the kernel's own layout constants.
{asserts}

template <int kUnused>
__global__ void {probe}() {{}}
"""


def assert_layout_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probe: str, kernel_header: str,
                         asserts: Sequence[str]) -> None:
    """Compiles ``asserts`` (``static_assert`` lines) after ``kernel_header``: the build fails on the first
    constant the host mirror gets wrong."""
    include_dir = tmp_path / "include"
    include_dir.mkdir()
    (include_dir / f"{probe}.cuh").write_text(
        PROBE_HEADER.format(kernel_header=kernel_header, asserts="\n".join(asserts), probe=probe))
    monkeypatch.setenv("DG_JIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DG_JIT_COMPILER", "nvrtc")
    binary = build_kernel(probe, f"{probe}.cuh", (0,), include_dirs=[include_dir])
    assert binary.compiled and binary.symbol == f"_Z{len(probe)}{probe}ILi0EEvv"
