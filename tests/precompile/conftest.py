"""Fixtures of the precompile tests: a stand-in compiler (a fake cubin per stub, so whole presets build
in seconds) and a fake H100 whose launch path runs on meta tensors with the GPU stubbed out (SM count,
tensor maps, module loading), recording every kernel it asks the JIT for."""

import hashlib

import pytest
import torch

from deepgemm.jit import build as jit_build
from deepgemm.jit import runtime
from deepgemm.jit.compiler import CompileOutput
from deepgemm.ops.common import launch, settings, split_k


@pytest.fixture
def stand_in_compiler(monkeypatch, tmp_path):
    """A compiler that writes a fake cubin per source, into a cache under tmp_path."""
    monkeypatch.setenv("DG_JIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DG_JIT_DISABLE_CACHE", raising=False)

    def compile_cubin(compiler, source, include_dirs, flags):
        return CompileOutput(b"\x7fELF" + hashlib.sha256(source.read_bytes()).digest(), "", "stand-in", 0.0)

    monkeypatch.setattr(jit_build, "compile_cubin", compile_cubin)
    monkeypatch.setattr(jit_build, "single_kernel_name", lambda cubin: "_Z6kernelv")
    return tmp_path / "cache"


class _NoWorkspace:
    """The weight-only split-K workspace, not allocated (no CUDA here)."""

    def get(self, device_index: int, floats: int, tiles: int) -> tuple[int, int]:
        return 0, 0


@pytest.fixture
def gpu_stub(monkeypatch):
    """A fake H100 (132 SMs): the JIT's real get_kernel (memory -> disk cache -> compile), the loaded
    binaries recorded instead of loaded, tensor maps not encoded, fresh plans and launcher memos."""
    from deepgemm.ops.bf16 import kernel as bf16_kernel
    from deepgemm.ops.cast import kernel as cast_kernel
    from deepgemm.ops.fp8 import kernel as fp8_kernel
    from deepgemm.ops.fp8_1d1d import kernel as fp8_1d1d_kernel
    from deepgemm.ops.int8 import kernel as int8_kernel
    from deepgemm.ops.tf32 import kernel as tf32_kernel
    from deepgemm.ops.wonly import kernel as wonly_kernel

    loaded = []

    class Kernel:
        def __init__(self, binary):
            loaded.append(binary)

        def launcher(self, param_types, **launch_shape):
            return lambda *args: None

    props = type("Props", (), {"major": 9, "minor": 0, "name": "H100", "multi_processor_count": 132})
    monkeypatch.setattr(settings, "_device_properties", lambda index: props)
    monkeypatch.setattr(settings, "_num_sms", None)
    monkeypatch.setattr(runtime, "Kernel", Kernel)
    monkeypatch.setattr(runtime, "_kernels", {})
    monkeypatch.setattr(runtime, "_kernels_by_key", {})
    for module in (launch, fp8_kernel, bf16_kernel, fp8_1d1d_kernel, int8_kernel, tf32_kernel, wonly_kernel):
        monkeypatch.setattr(module, "make_tma_descriptor", lambda *args, **kwargs: b"map")
    for module, names in ((fp8_kernel, ("_dense_plans", "_grouped_plans")), (bf16_kernel, ("_plans",)),
                          (fp8_1d1d_kernel, ("_dense_plans", "_k_grouped_plans")), (int8_kernel, ("_plans",)),
                          (tf32_kernel, ("_plans",)), (wonly_kernel, ("_plans",))):
        for name in names:
            monkeypatch.setattr(module, name, launch.PlanCache(4096))
    # Device buffers the launches would allocate, on the meta device (no CUDA here): the split-K
    # workspaces, INT8's unit scale.
    monkeypatch.setattr(split_k.SplitK, "workspace",
                        lambda self: torch.empty(self.shape, dtype=torch.float32, device="meta"))
    monkeypatch.setattr(wonly_kernel, "_workspace", _NoWorkspace())
    monkeypatch.setitem(int8_kernel._ONES, 0, torch.ones(1, device="meta"))
    memos = (launch.kernel_launcher, split_k.reduce_launcher, tf32_kernel._stage_launcher,
             cast_kernel._launcher)
    for memo in memos:
        memo.cache_clear()
    yield loaded
    for memo in memos:
        memo.cache_clear()
