"""Each kernel family precompiled with the real compiler (NVRTC), then found by the real launch path.

One small shape per family (its companions and staging kernels included) is built into a temporary
cache by ``build_all`` in two worker processes; the family's launch functions then run on meta tensors
with the GPU stubbed out (``conftest.gpu_stub``), and every kernel they ask the JIT for must come from
that cache: not one compile, and the loaded keys are exactly the cache's entries.
"""

import json

import pytest

from deepgemm.jit import build as jit_build
from deepgemm.precompile import build_all, kernel_specs
from deepgemm.precompile.cli import shape_requests

from .launch_paths import run_launch_path

# One request of each family (and kind) precompile adds to the FP8 1D2D and 16-bit ones, small shapes.
FAMILY_REQUESTS = {
    "fp8_1d1d": [*shape_requests("256", 256, 512, "fp8_1d1d", has_c=True)],
    "fp8_1d1d k-grouped": [*shape_requests("256", 256, 1024, "fp8_1d1d", layout="k_grouped", num_groups=2)],
    "int8": [*shape_requests("256", 256, 512, "int8", bias="fp32")],
    "int8 masked": [*shape_requests("64", 256, 512, "int8", layout="masked", num_groups=2)],
    "tf32 nn": [*shape_requests("256", 256, 512, "tf32", major="nn")],
    "3xtf32": [*shape_requests("256", 256, 512, "tf32x3")],
    "w8a16": [*shape_requests("16", 256, 512, "w8a16")],
    "w4a16 masked": [*shape_requests("16", 256, 512, "w4a16", layout="masked", num_groups=2, zeros=True)],
    "cast": [*shape_requests("256", 512, 512, "cast", in_dtype="fp16")],
}


@pytest.fixture
def nvrtc_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DG_JIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DG_JIT_COMPILER", "nvrtc")
    monkeypatch.delenv("DG_JIT_DISABLE_CACHE", raising=False)
    return tmp_path


@pytest.mark.parametrize("family", list(FAMILY_REQUESTS))
def test_nvrtc_precompiled_kernels_are_what_the_launch_path_loads(nvrtc_cache, gpu_stub, family):
    requests = FAMILY_REQUESTS[family]
    specs = kernel_specs(requests, 132)
    summary = build_all(specs, jobs=2)
    assert (summary.built, summary.reused, summary.failed) == (len(specs), 0, [])
    compiled_before = jit_build.compile_count()
    for request in requests:
        run_launch_path(request)
    assert jit_build.compile_count() == compiled_before, "the launch path compiled a kernel"
    assert len(gpu_stub) == len(specs) and not any(binary.compiled for binary in gpu_stub)
    assert {binary.key for binary in gpu_stub} == {
        json.loads((path / "meta.json").read_text())["key"] for path in nvrtc_cache.glob("*/*")
        if path.parent.name not in ("tmp", "locks")}
