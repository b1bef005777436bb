"""deepgemm.precompile: the kernels it builds are the ones the launch path then finds in the cache.

The compiles use a stand-in compiler (a fake cubin per stub), so the whole DeepSeek-V3 preset builds in
seconds; then the real launch path of every op runs on meta tensors with the GPU stubbed out (SM count,
tensor maps, module loading), and every kernel it asks the JIT for must be a disk-cache hit.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepgemm.jit import build as jit_build
from deepgemm.jit import runtime
from deepgemm.jit.compiler import CompileOutput
from deepgemm.ops.common import launch, settings, split_k
from deepgemm.ops.common.launch import KernelRequest
from deepgemm.precompile import build_all, kernel_specs
from deepgemm.precompile.cli import main, preset_requests, shape_requests

FP8 = torch.float8_e4m3fn
ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def gpu_stub(monkeypatch):
    """A fake H100 (132 SMs): the JIT's real get_kernel (memory -> disk cache -> compile), the loaded
    binaries recorded instead of loaded, tensor maps not encoded, fresh plans."""
    from deepgemm.ops.bf16 import kernel as bf16_kernel
    from deepgemm.ops.fp8 import kernel as fp8_kernel

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
    for module in (launch, fp8_kernel, bf16_kernel):
        monkeypatch.setattr(module, "make_tma_descriptor", lambda *args, **kwargs: b"map")
    monkeypatch.setattr(fp8_kernel, "_dense_plans", launch.PlanCache(4096))
    monkeypatch.setattr(fp8_kernel, "_grouped_plans", launch.PlanCache(4096))
    monkeypatch.setattr(bf16_kernel, "_plans", launch.PlanCache(4096))
    # Split-K plans: the workspace on the meta device (no CUDA here), the reduction's launcher loaded
    # afresh through get_kernel (so that it is recorded like the GEMM kernels).
    monkeypatch.setattr(split_k.SplitK, "workspace",
                        lambda self: torch.empty(self.shape, dtype=torch.float32, device="meta"))
    launch.kernel_launcher.cache_clear()
    split_k.reduce_launcher.cache_clear()
    yield loaded
    launch.kernel_launcher.cache_clear()
    split_k.reduce_launcher.cache_clear()


def meta(*shape, dtype=FP8):
    return torch.empty(*shape, dtype=dtype, device="meta")


def run_launch_path(request: KernelRequest) -> None:
    """Every op of `request` through its family's launch functions, on meta tensors."""
    from deepgemm.ops.bf16 import kernel as bf16
    from deepgemm.ops.fp8 import kernel as fp8

    r, kb, g, out, x = request, -(-request.k // 128), request.num_groups, request.out_dtype, request.in_dtype
    max_m = 4 * r.m  # masked: expected_m rows of max_m
    f32, i32 = torch.float32, torch.int32
    if r.family == "fp8_1d2d":
        sfb = meta(g, -(-r.n // 128), kb, dtype=f32)
        if r.layout == "dense":
            fp8.launch_checked(meta(r.m, r.k), meta(r.m, kb, dtype=f32), meta(r.n, r.k), sfb[0],
                               meta(r.m, r.n, dtype=out), r.m, r.n, r.k, 0)
        elif r.layout == "contiguous":
            d = meta(r.m, r.n, dtype=out)
            args = (meta(r.m, r.k), meta(r.m, kb, dtype=f32), meta(g, r.n, r.k), sfb, d)
            fp8.launch_m_grouped_contiguous(*args, meta(r.m, dtype=i32), 0)
            fp8.launch_m_grouped_contiguous_offsets(*args, meta(g, dtype=i32), 0)
        else:
            fp8.launch_m_grouped_masked(meta(g, max_m, r.k), meta(g, max_m, kb, dtype=f32), meta(g, r.n, r.k),
                                        sfb, meta(g, max_m, r.n, dtype=out), meta(g, dtype=i32), r.m, 0)
        # The fused casts that quantise the operands (per-token A, per-block B) from BF16 or FP32, loaded
        # as quant/cast.py's CUDA path loads them.
        from deepgemm.ops.cast import kernel as cast

        for source in (torch.bfloat16, torch.float32):
            for name in ("per_token", "per_block"):
                cast.kernel_launcher(cast.kernel_spec(name, source, r.k % cast.VEC_ELEMS == 0, 132), 0)
    elif r.layout == "dense":
        a = meta(r.m, r.k, dtype=x) if r.major[0] == "n" else meta(r.k, r.m, dtype=x)
        b = meta(r.n, r.k, dtype=x) if r.major[1] == "t" else meta(r.k, r.n, dtype=x)
        c = meta(r.m, r.n, dtype=out) if r.has_c else None
        bf16.launch_bf16_gemm(r.major, a, b, meta(r.m, r.n, dtype=out), c, r.m, r.n, r.k, 0)
    elif r.layout == "contiguous":
        bf16.launch_m_grouped_bf16_contiguous(meta(r.m, r.k, dtype=x), meta(g, r.n, r.k, dtype=x),
                                              meta(r.m, r.n, dtype=out), meta(r.m, dtype=i32), 0)
    else:
        bf16.launch_m_grouped_bf16_masked(meta(g, max_m, r.k, dtype=x), meta(g, r.n, r.k, dtype=x),
                                          meta(g, max_m, r.n, dtype=out), meta(g, dtype=i32), r.m, 0)


EVERY_KIND = [
    *shape_requests("1-300", 7168, 2048),
    *shape_requests("4096", 2112, 7168, out_dtype="fp32"),
    *shape_requests("16", 1024, 7168),  # split-K (few tiles)
    *shape_requests("8192", 4096, 7168, layout="contiguous", num_groups=4),
    *shape_requests("64", 7168, 2048, layout="masked", num_groups=32),
    *(r for major in ("nt", "nn", "tn", "tt")
      for r in shape_requests("100", 4096, 7168, "bf16", major=major)),
    *shape_requests("256", 4096, 512, "bf16", out_dtype="fp32", in_dtype="fp16", has_c=True),
    *shape_requests("64", 4096, 7168, "bf16", has_c=True),  # split-K: C goes to the reduction
    *shape_requests("8192", 7168, 2048, "bf16", layout="contiguous", num_groups=4),
    *shape_requests("256", 7168, 2048, "bf16", layout="masked", num_groups=4),
]


@pytest.mark.parametrize("requests", [EVERY_KIND, preset_requests("deepseek-v3"), preset_requests("bf16"),
                                      preset_requests("bf16_grouped"), preset_requests("matmul_fp8")],
                         ids=["every-kind", "deepseek-v3", "bf16", "bf16_grouped", "matmul_fp8"])
def test_the_launch_path_finds_every_precompiled_kernel(stand_in_compiler, gpu_stub, requests):
    specs = kernel_specs(requests, 132)
    summary = build_all(specs)
    assert (summary.built, summary.reused, summary.failed) == (len(specs), 0, [])
    compiled_before = jit_build.compile_count()
    for request in requests:
        run_launch_path(request)
    assert jit_build.compile_count() == compiled_before, "the launch path compiled a kernel"
    assert gpu_stub and not any(binary.compiled for binary in gpu_stub)
    assert {binary.key for binary in gpu_stub} == {
        json.loads((path / "meta.json").read_text())["key"] for path in stand_in_compiler.glob("*/*")
        if path.parent.name not in ("tmp", "locks")}


def test_split_configs_precompile_their_reduction():
    # Few-tile shapes of EVERY_KIND whose heuristic configs split K: each loads the reduction too.
    for request in (*shape_requests("16", 1024, 7168), *shape_requests("64", 4096, 7168, "bf16", has_c=True)):
        gemm, reduction = kernel_specs([request], 132)[:2]  # then an FP8 GEMM's operand casts
        assert gemm.config.split_k > 1 and reduction.name == split_k.REDUCE_KERNEL
        assert reduction.template_args == (gemm.config.split_k, split_k.OUT_TYPES[request.out_dtype],
                                           request.has_c)
    # With C, the split GEMM kernel is the one without C (C is the reduction's), as the launch path loads.
    with_c = kernel_specs(list(shape_requests("64", 4096, 7168, "bf16", has_c=True)), 132)
    without_c = kernel_specs(list(shape_requests("64", 4096, 7168, "bf16")), 132)
    assert with_c[0] == without_c[0] and with_c[1] != without_c[1]  # 16-bit: no casts


def test_a_second_run_reuses_everything(stand_in_compiler):
    specs = kernel_specs(preset_requests("dense"), 132)
    assert build_all(specs).built == len(specs)
    seen = []
    summary = build_all(specs, progress=lambda done, total, s: seen.append((done, total)))
    assert (summary.built, summary.reused) == (0, len(specs))
    assert seen == [(i + 1, len(specs)) for i in range(len(specs))]


def test_m_ranges_cover_every_m():
    requests = list(shape_requests("1-300", 7168, 2048))
    assert [r.m for r in requests] == list(range(1, 301))
    one_by_one = {spec.comment for m in range(1, 301)
                  for spec in kernel_specs(shape_requests(str(m), 7168, 2048))}
    assert {spec.comment for spec in kernel_specs(requests)} == one_by_one


@pytest.mark.parametrize("args, message", [
    (["--shape", "0,128,128"], "M '0' must be positive"),
    (["--shape", "a-b,128,128"], "must be an integer or a range"),
    (["--shape", "1,2"], "must be M,N,K"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    ([], "give shapes"),
])
def test_cli_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_json_shapes(tmp_path):
    from deepgemm.precompile.cli import json_requests

    path = tmp_path / "model.json"
    path.write_text(json.dumps({"shapes": [{"m": "1-4", "n": 256, "k": 512},
                                           {"m": 64, "n": 256, "k": 512, "family": "bf16", "major": "nn"},
                                           {"preset": "dense"}]}))
    requests = json_requests(path)
    assert [r.m for r in requests[:5]] == [1, 2, 3, 4, 64] and requests[4].major == "nn"
    assert requests[5:] == preset_requests("dense")
    path.write_text(json.dumps([{"m": 1, "n": 256}]))
    with pytest.raises(ValueError, match=r"shape 0 .*'k'"):
        json_requests(path)


def test_cli_builds_with_the_real_compiler_in_worker_processes(tmp_path):
    """Two small kernels compiled by NVRTC in two processes, then found by a second run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "deepgemm.precompile", "--shape", "64,256,256",
               "--shape", "4096,256,256", "--family", "bf16", "--cache-dir", str(tmp_path),
               "--compiler", "nvrtc", "--jobs", "2"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "2 kernels for 2 shapes" in first.stdout and "2 built, 0 reused, 0 failed" in first.stdout
    assert "2/2" in first.stderr
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert "0 built, 2 reused, 0 failed" in second.stdout
