"""JIT kernels on a Hopper GPU: exact results, parameter passing, cluster and shared-memory launch
attributes, TMA copies (with the shared-memory swizzle checked against a model), and a second process
that finds the kernel in the disk cache. Marked ``gpu``: skipped without an sm_90 device."""

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from deepgemm.cuda import CudaError, get_max_smem_per_block_optin, make_tma_descriptor
from deepgemm.jit import ParamType, clear_memory_cache, get_kernel, knobs
from deepgemm.jit.compiler import find_nvcc

pytestmark = pytest.mark.gpu

P = ParamType
KERNELS = Path(__file__).parent / "kernels"
COMPILERS = ["nvrtc", pytest.param("nvcc", marks=pytest.mark.skipif(find_nvcc() is None, reason="no nvcc"))]
SCALE_ADD = ("deepgemm_tests::scale_add", "scale_add.cuh", (128, True))
SCALE_ADD_PARAMS = (P.PTR, P.PTR, P.F32, P.U32)
TMA_COPY_PARAMS = (P.TMA, P.TMA, P.PTR, P.I32, P.I32, P.I32)  # in, out, smem image, c0, c1, c2


@pytest.fixture(autouse=True)
def jit_env(monkeypatch, tmp_path):
    for knob in knobs.KNOBS:
        monkeypatch.delenv(knob.name, raising=False)
    monkeypatch.setenv("DG_JIT_CACHE_DIR", str(tmp_path / "cache"))
    clear_memory_cache()
    yield tmp_path / "cache"
    clear_memory_cache()


def run_scale_add(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch scale_add on n elements; return (output, exact expected output)."""
    a = (torch.arange(n, device="cuda", dtype=torch.float32) % 17) - 8
    out = torch.full_like(a, float("nan"))
    kernel = get_kernel(*SCALE_ADD, include_dirs=[KERNELS])
    launch = kernel.launcher(SCALE_ADD_PARAMS, grid=(n + 127) // 128, block=128)
    launch(a.data_ptr(), out.data_ptr(), 2.0, n)
    return out, a * 2 + torch.arange(n, device="cuda", dtype=torch.float32)


@pytest.mark.parametrize("compiler", COMPILERS)
def test_small_kernel_returns_exact_values(monkeypatch, compiler):
    monkeypatch.setenv("DG_JIT_COMPILER", compiler)
    out, expected = run_scale_add(1000)
    torch.cuda.synchronize()
    assert torch.equal(out, expected)


def test_launches_go_to_the_current_stream():
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out, expected = run_scale_add(4096)
        out.add_(1)  # ordered after the kernel only if the kernel ran on this stream
    stream.synchronize()
    assert torch.equal(out, expected + 1)


def test_explicit_stream_argument():
    n = 256
    a = torch.ones(n, device="cuda")
    out = torch.zeros(n, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    launch = get_kernel(*SCALE_ADD, include_dirs=[KERNELS]).launcher(SCALE_ADD_PARAMS, grid=2, block=128)
    launch(a.data_ptr(), out.data_ptr(), 3.0, n, stream=stream.cuda_stream)
    stream.synchronize()
    assert torch.equal(out, 3 + torch.arange(n, device="cuda", dtype=torch.float32))


def test_every_parameter_type_arrives_by_value():
    source = torch.zeros(64, 256, dtype=torch.bfloat16, device="cuda")
    descriptor = make_tma_descriptor(source.data_ptr(), torch.bfloat16, (256, 64), (512,), (64, 32),
                                     swizzle=128)
    out = torch.zeros(22, dtype=torch.int64, device="cuda")
    kernel = get_kernel("deepgemm_tests::param_echo", "param_echo.cuh", (42,), include_dirs=[KERNELS])
    launch = kernel.launcher((P.PTR, P.I32, P.U32, P.I64, P.U64, P.F32, P.TMA), grid=1, block=32)
    launch(out.data_ptr(), -7, 4_000_000_000, -(2**40) - 3, 2**64 - 5, -1.25, descriptor)
    torch.cuda.synchronize()
    words = [value & (2**64 - 1) for value in out.cpu().tolist()]
    assert words[:5] == [2**64 - 7, 4_000_000_000, 2**64 - 2**40 - 3, 2**64 - 5,
                         struct.unpack("<I", struct.pack("<f", -1.25))[0]]
    assert words[5:21] == list(struct.unpack("<16Q", descriptor))
    assert words[21] == 42


def test_cluster_dims_and_large_dynamic_shared_memory():
    smem, blocks = 150 * 1024, 8  # above the 48 KiB default: needs the opt-in attribute
    out = torch.zeros(4 * blocks, dtype=torch.int32, device="cuda")
    kernel = get_kernel("deepgemm_tests::cluster_probe", "cluster_probe.cuh", (256,), include_dirs=[KERNELS])
    kernel.launcher((P.PTR,), grid=blocks, block=256, smem=smem, cluster=2)(out.data_ptr())
    torch.cuda.synchronize()
    words = smem // 4
    expected = []
    for block in range(blocks):
        checksum = (words * (words - 1) // 2 + words * block) % 2**32
        expected += [block % 2, 2, smem, checksum]
    assert [value % 2**32 for value in out.cpu().tolist()] == expected


def test_shared_memory_beyond_the_device_limit_is_refused():
    kernel = get_kernel("deepgemm_tests::cluster_probe", "cluster_probe.cuh", (256,), include_dirs=[KERNELS])
    with pytest.raises(ValueError, match="dynamic shared memory"):
        kernel.launcher((P.PTR,), grid=1, block=256, smem=get_max_smem_per_block_optin() + 1024)


def test_driver_errors_name_the_call_and_the_code():
    out = torch.zeros(1, device="cuda")
    launch = get_kernel(*SCALE_ADD, include_dirs=[KERNELS]).launcher(SCALE_ADD_PARAMS, grid=1, block=2048)
    with pytest.raises(CudaError, match="cuLaunchKernelEx failed: CUDA_ERROR_INVALID_VALUE"):
        launch(out.data_ptr(), out.data_ptr(), 1.0, 1)


def swizzled(image: torch.Tensor, span: int) -> torch.Tensor:
    """Model of the TMA shared-memory swizzle: with a span of 32/64/128 bytes, bits [4, 4+b) of each byte
    offset are XORed with bits [7, 7+b), b = log2(span / 16) (CUTLASS's Swizzle<b, 4, 3>); the box is
    1024-byte aligned, so offsets within the box are the address bits that matter."""
    if span == 0:
        return image.clone()
    offsets = torch.arange(image.numel())
    mask = span // 16 - 1
    destination = offsets ^ (((offsets >> 7) & mask) << 4)
    result = torch.empty_like(image)
    result[destination] = image
    return result


@pytest.mark.parametrize("swizzle", [0, 32, 64, 128])
def test_tma_2d_copy_with_swizzle_and_out_of_bounds_rows(swizzle):
    rows, cols = 100, 160
    box_cols, box_rows = (swizzle or 128) // 2, 64  # one swizzle span of bf16 per box row
    c0, c1 = box_cols, 64  # box rows 64..127: rows 100.. are out of bounds (zero-filled, store clipped)
    x = torch.randn(rows, cols, device="cuda").to(torch.bfloat16)
    out = torch.zeros_like(x)
    box_bytes = box_cols * box_rows * 2
    image = torch.zeros(box_bytes, dtype=torch.uint8, device="cuda")

    def describe(tensor):
        return make_tma_descriptor(tensor.data_ptr(), torch.bfloat16, (cols, rows), (cols * 2,),
                                   (box_cols, box_rows), swizzle=swizzle)

    kernel = get_kernel("deepgemm_tests::tma_copy", "tma_copy.cuh", (2, box_bytes), include_dirs=[KERNELS])
    launch = kernel.launcher(TMA_COPY_PARAMS, grid=1, block=128, smem=box_bytes + 8)
    launch(describe(x), describe(out), image.data_ptr(), c0, c1, 0)
    torch.cuda.synchronize()

    tile = torch.zeros(box_rows, box_cols, dtype=torch.bfloat16, device="cuda")
    tile[: rows - c1] = x[c1:, c0:c0 + box_cols]
    assert torch.equal(image.cpu(), swizzled(tile.view(torch.uint8).flatten().cpu(), swizzle))
    expected = torch.zeros_like(x)
    expected[c1:, c0:c0 + box_cols] = x[c1:, c0:c0 + box_cols]
    assert torch.equal(out.view(torch.int16), expected.view(torch.int16))


def test_tma_3d_load_of_one_group():
    groups, rows, cols = 3, 80, 256
    x = torch.randint(0, 256, (groups, rows, cols), dtype=torch.uint8, device="cuda")
    x = x.view(torch.float8_e4m3fn)
    box = (128, 32, 1)  # 128 FP8 = one 128-byte swizzle span per row
    c0, c1, c2 = 128, 40, 2
    box_bytes = box[0] * box[1]
    descriptor = make_tma_descriptor(x.data_ptr(), torch.float8_e4m3fn, (cols, rows, groups),
                                     (cols, rows * cols), box, swizzle=128)
    image = torch.zeros(box_bytes, dtype=torch.uint8, device="cuda")
    kernel = get_kernel("deepgemm_tests::tma_copy", "tma_copy.cuh", (3, box_bytes), include_dirs=[KERNELS])
    launch = kernel.launcher(TMA_COPY_PARAMS, grid=1, block=128, smem=box_bytes + 8)
    launch(descriptor, descriptor, image.data_ptr(), c0, c1, c2)
    torch.cuda.synchronize()
    tile = x.view(torch.uint8)[c2, c1:c1 + box[1], c0:c0 + box[0]]
    assert torch.equal(image.cpu(), swizzled(tile.flatten().cpu(), 128))


SECOND_PROCESS = textwrap.dedent("""
    import json, sys
    import torch
    from deepgemm.jit import ParamType as P, compile_count, get_kernel

    n = 1000
    a = torch.arange(n, device="cuda", dtype=torch.float32)
    out = torch.zeros_like(a)
    kernel = get_kernel("deepgemm_tests::scale_add", "scale_add.cuh", (128, True), include_dirs=[sys.argv[1]])
    kernel.launcher((P.PTR, P.PTR, P.F32, P.U32), grid=8, block=128)(a.data_ptr(), out.data_ptr(), 0.5, n)
    torch.cuda.synchronize()
    print(json.dumps({"compiles": compile_count(), "compiled": kernel.binary.compiled,
                      "exact": torch.equal(out, a * 1.5)}))
""")


@pytest.mark.parametrize("compiler", COMPILERS)
def test_second_process_hits_the_disk_cache(monkeypatch, jit_env, compiler):
    monkeypatch.setenv("DG_JIT_COMPILER", compiler)
    out, expected = run_scale_add(1000)  # compiles and publishes
    torch.cuda.synchronize()
    assert torch.equal(out, expected)
    result = subprocess.run([sys.executable, "-c", SECOND_PROCESS, str(KERNELS)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"compiles": 0, "compiled": False, "exact": True}
