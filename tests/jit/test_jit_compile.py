"""Real compiles for sm_90a with NVRTC and nvcc, the compiler knobs, and finding kernels in cubins."""

import json
import shutil
import struct
from pathlib import Path

import pytest

import deepgemm.jit.build as build_module
from deepgemm.jit import CompileError, LocalMemoryError, build_kernel, compile_count, knobs
from deepgemm.jit.cache import HeaderDigests
from deepgemm.jit.compiler import NvccCompiler, NvrtcCompiler, find_nvcc, get_compiler, local_memory_uses
from deepgemm.jit.cubin import CubinError, kernel_names

KERNELS = Path(__file__).parent / "kernels"
HAVE_NVCC = find_nvcc() is not None
COMPILERS = ["nvrtc", pytest.param("nvcc", marks=pytest.mark.skipif(not HAVE_NVCC, reason="no nvcc"))]
SCALE_ADD = ("deepgemm_tests::scale_add", "scale_add.cuh", (128, True))
SCALE_ADD_SYMBOL = "_ZN14deepgemm_tests9scale_addILj128ELb1EEEvPKfPffj"


@pytest.fixture(autouse=True)
def jit_env(monkeypatch, tmp_path):
    for knob in knobs.KNOBS:
        monkeypatch.delenv(knob.name, raising=False)
    monkeypatch.setenv("DG_JIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def build(kernel, header, args, **kwargs):
    return build_kernel(kernel, header, args, include_dirs=[KERNELS], **kwargs)


def sm_version(cubin: bytes) -> int:
    # Byte 1 of the CUDA ELF e_flags holds the SM version.
    (flags,) = struct.unpack_from("<I", cubin, 48)
    return (flags >> 8) & 0xFF


@pytest.mark.parametrize("compiler", COMPILERS)
def test_small_kernel_compiles_for_sm90a_and_is_found_in_the_cubin(monkeypatch, jit_env, compiler):
    monkeypatch.setenv("DG_JIT_COMPILER", compiler)
    before = compile_count()
    binary = build(*SCALE_ADD, comment="test config")
    assert binary.compiled and compile_count() == before + 1
    assert binary.symbol == SCALE_ADD_SYMBOL
    assert kernel_names(binary.cubin) == [SCALE_ADD_SYMBOL]
    assert binary.cubin[:4] == b"\x7fELF" and sm_version(binary.cubin) == 90
    assert binary.directory.parent == jit_env / "scale_add"
    source = (binary.directory / "kernel.cu").read_text()
    assert source.startswith("// deepgemm JIT kernel: scale_add\n// test config\n")
    meta = json.loads((binary.directory / "meta.json").read_text())
    assert meta["compiler"].startswith(compiler) and meta["symbol"] == SCALE_ADD_SYMBOL
    assert meta["arch"] == "sm_90a" and meta["key"] == binary.key


@pytest.mark.parametrize("compiler", COMPILERS)
def test_sm90a_only_instructions_compile(monkeypatch, compiler):
    # setmaxnreg is rejected for plain sm_90 (e.g. by an extra compute_90 pass).
    monkeypatch.setenv("DG_JIT_COMPILER", compiler)
    binary = build("deepgemm_tests::sm90a_only", "sm90a_only.cuh", (232,))
    assert binary.symbol == "_ZN14deepgemm_tests10sm90a_onlyILj232EEEvPj"


@pytest.mark.parametrize("compiler", COMPILERS)
def test_second_request_hits_the_disk_cache(monkeypatch, jit_env, compiler):
    monkeypatch.setenv("DG_JIT_COMPILER", compiler)
    first = build(*SCALE_ADD)
    count = compile_count()
    second = build(*SCALE_ADD)
    assert not second.compiled and compile_count() == count
    assert (second.cubin, second.symbol, second.key, second.directory) == (
        first.cubin, first.symbol, first.key, first.directory)


def test_compilers_get_separate_entries(monkeypatch, jit_env):
    if not HAVE_NVCC:
        pytest.skip("no nvcc")
    keys = set()
    for compiler in ("nvrtc", "nvcc"):
        monkeypatch.setenv("DG_JIT_COMPILER", compiler)
        keys.add(build(*SCALE_ADD).key)
    assert len(keys) == 2 and len(list((jit_env / "scale_add").iterdir())) == 2


def test_flag_knobs_change_the_key(monkeypatch):
    monkeypatch.setenv("DG_JIT_COMPILER", "nvrtc")
    plain = build(*SCALE_ADD).key
    monkeypatch.setenv("DG_JIT_WITH_LINEINFO", "1")
    lineinfo = build(*SCALE_ADD).key
    monkeypatch.setenv("DG_JIT_CPP_STANDARD", "17")
    cpp17 = build(*SCALE_ADD).key
    assert len({plain, lineinfo, cpp17}) == 3


def test_editing_an_included_header_recompiles(monkeypatch, tmp_path):
    monkeypatch.setenv("DG_JIT_COMPILER", "nvrtc")
    include = tmp_path / "include"
    include.mkdir()
    shutil.copy(KERNELS / "scale_add.cuh", include / "scale_add.cuh")

    def build_fresh_process():
        # A new process would hash the headers again; the process-wide memo would not.
        monkeypatch.setattr(build_module, "HEADER_DIGESTS", HeaderDigests())
        return build_kernel(*SCALE_ADD, include_dirs=[include])

    first = build_fresh_process()
    (include / "unrelated.cuh").write_text("#error never included\n")
    assert not build_fresh_process().compiled
    with open(include / "scale_add.cuh", "a") as header:
        header.write("// edited\n")
    edited = build_fresh_process()
    assert edited.compiled and edited.key != first.key


def test_disable_cache_writes_nothing(monkeypatch, jit_env):
    monkeypatch.setenv("DG_JIT_COMPILER", "nvrtc")
    monkeypatch.setenv("DG_JIT_DISABLE_CACHE", "1")
    first, second = build(*SCALE_ADD), build(*SCALE_ADD)
    assert first.compiled and second.compiled and first.directory is None
    assert first.cubin == second.cubin
    assert not jit_env.exists()


@pytest.mark.parametrize("compiler", COMPILERS)
def test_ptxas_check_rejects_local_memory(monkeypatch, compiler):
    monkeypatch.setenv("DG_JIT_COMPILER", compiler)
    assert build("deepgemm_tests::local_memory", "local_memory.cuh", (64,)).compiled
    monkeypatch.setenv("DG_JIT_PTXAS_CHECK", "1")
    with pytest.raises(LocalMemoryError, match=r"local_memory.*: 256 bytes stack frame"):
        build("deepgemm_tests::local_memory", "local_memory.cuh", (64,))
    assert build(*SCALE_ADD).compiled  # no local memory: passes the check


@pytest.mark.parametrize("compiler", COMPILERS)
def test_print_knobs(monkeypatch, capfd, compiler):
    monkeypatch.setenv("DG_JIT_COMPILER", compiler)
    monkeypatch.setenv("DG_JIT_PRINT_COMPILER_COMMAND", "1")
    monkeypatch.setenv("DG_JIT_PTXAS_VERBOSE", "1")
    monkeypatch.setenv("DG_JIT_DEBUG", "1")
    build(*SCALE_ADD)
    err = capfd.readouterr().err
    assert "sm_90a" in err and "compiled in" in err
    assert f"Compiling entry function '{SCALE_ADD_SYMBOL}' for 'sm_90a'" in err
    assert "Used" in err and "registers" in err
    assert "disk cache miss" in err and "published" in err
    build(*SCALE_ADD)
    assert "disk cache hit" in capfd.readouterr().err


@pytest.mark.parametrize("compiler", COMPILERS)
def test_compile_errors_carry_the_stub_and_the_log(monkeypatch, compiler):
    monkeypatch.setenv("DG_JIT_COMPILER", compiler)
    with pytest.raises(CompileError) as error:
        build("deepgemm_tests::no_such_kernel", "scale_add.cuh", (1,), comment="the config")
    message = str(error.value)
    assert "// the config" in message and "no_such_kernel" in message and "error" in message


def test_a_header_with_two_kernels_is_refused(monkeypatch):
    monkeypatch.setenv("DG_JIT_COMPILER", "nvrtc")
    with pytest.raises(CubinError, match="exactly one kernel.*stray"):
        build("deepgemm_tests::wanted", "two_kernels.cuh", (3,))


def test_compiler_selection(monkeypatch):
    monkeypatch.setenv("DG_JIT_COMPILER", "nvrtc")
    assert isinstance(get_compiler(), NvrtcCompiler)
    monkeypatch.setattr("deepgemm.jit.compiler.find_nvcc", lambda: None)
    monkeypatch.setenv("DG_JIT_COMPILER", "auto")
    assert isinstance(get_compiler(), NvrtcCompiler)
    monkeypatch.setenv("DG_JIT_COMPILER", "nvcc")
    with pytest.raises(CompileError, match="no nvcc"):
        get_compiler()
    monkeypatch.setattr("deepgemm.jit.compiler.find_nvcc", lambda: Path("/opt/cuda/bin/nvcc"))
    for choice in ("auto", "nvcc"):
        monkeypatch.setenv("DG_JIT_COMPILER", choice)
        compiler = get_compiler()
        assert isinstance(compiler, NvccCompiler) and compiler.path == Path("/opt/cuda/bin/nvcc")


def test_nvcc_lookup_order(monkeypatch, tmp_path):
    fake = tmp_path / "cuda" / "bin" / "nvcc"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda"))
    assert find_nvcc() == fake
    monkeypatch.setenv("DG_JIT_NVCC", str(fake))
    assert find_nvcc() == fake
    monkeypatch.setenv("DG_JIT_NVCC", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="DG_JIT_NVCC"):
        find_nvcc()


def test_flags():
    if HAVE_NVCC:
        nvcc_flags = NvccCompiler(find_nvcc()).flags()
        assert "-gencode=arch=compute_90a,code=sm_90a" in nvcc_flags
        assert not any(flag.startswith("-arch") for flag in nvcc_flags)
        assert "-std=c++20" in nvcc_flags
    nvrtc_flags = NvrtcCompiler().flags()
    assert "--gpu-architecture=sm_90a" in nvrtc_flags and "-default-device" in nvrtc_flags


def test_identities_name_the_exact_version():
    assert NvrtcCompiler().identity().startswith("nvrtc 1")
    if HAVE_NVCC:
        identity = NvccCompiler(find_nvcc()).identity()
        assert identity.startswith("nvcc 1") and identity.count(".") >= 2


NVCC_LOG = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z1kPf' for 'sm_90a'
ptxas info    : Function properties for _Z1kPf
    0 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers
ptxas info    : Function properties for _Z6helperf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
"""
NVRTC_LOG = """ptxas info    : Function properties for _Z1gPf
ptxas         .     16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Function properties for _Z1hPf
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
"""


def test_local_memory_report_parsing():
    assert local_memory_uses(NVCC_LOG) == [
        "_Z1kPf: 0 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads"]
    assert local_memory_uses(NVRTC_LOG) == [
        "_Z1gPf: 16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads"]
    assert local_memory_uses("") == []


def test_cubin_parser_rejects_other_files():
    with pytest.raises(CubinError, match="ELF"):
        kernel_names(b"not a cubin at all")
    with pytest.raises(CubinError):
        kernel_names(b"\x7fELF\x02\x01" + bytes(58))
