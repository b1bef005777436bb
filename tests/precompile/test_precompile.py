"""deepgemm.precompile: the kernels it builds are the ones the launch path then finds in the cache.

The compiles use a stand-in compiler (a fake cubin per stub, ``conftest.py``), so whole presets build in
seconds; then the real launch path of every op runs on meta tensors with the GPU stubbed out (SM count,
tensor maps, module loading: ``launch_paths.py``), and every kernel it asks the JIT for must be a
disk-cache hit.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepgemm.bench.suites import SUITES
from deepgemm.jit import build as jit_build
from deepgemm.ops.common import split_k
from deepgemm.precompile import build_all, kernel_specs
from deepgemm.precompile.cli import main, preset_requests, shape_requests

from .launch_paths import run_launch_path

ROOT = Path(__file__).resolve().parents[2]


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
# The other families, each kind and option: 1D1D dense (BF16 out, FP32 accumulation) and k-grouped (K is
# K_sum); INT8 in each layout, output and epilogue; TF32 and 3xTF32 in each storage layout (the staging
# kernels of MN-major operands and of K not a multiple of 4), with C; weight-only W8/W4, dense and
# masked, per-channel and grouped scales, zero points, FP16; the casts of each source dtype, vectorised
# or not; a training step of fp8_linear and of fp8_grouped_linear, with main_grad accumulation.
EVERY_OTHER_KIND = [
    *shape_requests("1-200", 2112, 4096, "fp8_1d1d", out_dtype="bf16"),
    *shape_requests("7168", 4096, 8192, "fp8_1d1d", has_c=True),
    *shape_requests("2048", 7168, 4 * 4096, "fp8_1d1d", layout="k_grouped", num_groups=4, has_c=True),
    *shape_requests("2048", 7168, 8 * 4096, "fp8_1d1d", layout="k_grouped", num_groups=8),
    *shape_requests("1-130", 7168, 2048, "int8"),
    *shape_requests("4096", 2112, 7168, "int8", out_dtype="int32"),
    *shape_requests("512", 4096, 7168, "int8", out_dtype="fp16", bias="fp16", azp=True),
    *shape_requests("512", 4096, 7168, "int8", out_dtype="fp32", bias="fp32"),
    *shape_requests("8192", 4096, 7168, "int8", layout="contiguous", num_groups=4),
    *shape_requests("64", 7168, 2048, "int8", layout="masked", num_groups=8, bias="fp32", azp=True),
    *(r for family in ("tf32", "tf32x3") for major in ("nt", "nn", "tn", "tt")
      for r in shape_requests("4096", 2048, 7168, family, major=major)),
    *shape_requests("64", 4096, 7170, "tf32", has_c=True),  # K % 4: staged though K-major
    *shape_requests("1-80", 7168, 2048, "w8a16"),
    *shape_requests("4096", 4096, 7168, "w8a16", group_size=128, out_dtype="fp32"),
    *shape_requests("1-80", 7168, 2048, "w4a16"),
    *shape_requests("16", 4096, 7168, "w4a16", group_size="none", in_dtype="fp16", out_dtype="fp16"),
    *shape_requests("8", 28672, 8192, "w4a16", zeros=True, group_size=64),
    *shape_requests("32", 7168, 2048, "w4a16", layout="masked", num_groups=8, zeros=True),
    *shape_requests("48", 4096, 7168, "w8a16", layout="masked", num_groups=8),
    *(r for dtype in ("bf16", "fp16", "fp32") for k in (7168, 7170)
      for r in shape_requests("300", k, k, "cast", in_dtype=dtype)),
    *shape_requests("4096", 18432, 7168, "fp8_linear"),
    *shape_requests("100", 2048, 512, "fp8_linear", has_c=True),
    *shape_requests("100", 2048, 512, "fp8_linear", in_dtype="fp16"),
    *shape_requests("8192", 4096, 7168, "fp8_grouped_linear", num_groups=8),
    *shape_requests("1024", 512, 256, "fp8_grouped_linear", num_groups=4, in_dtype="fp32", has_c=True),
]
PRESETS = ["deepseek-v3", *SUITES]


@pytest.mark.parametrize("requests", [EVERY_KIND, EVERY_OTHER_KIND, *map(preset_requests, PRESETS)],
                         ids=["every-kind", "every-other-kind", *PRESETS])
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
