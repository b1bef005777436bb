"""Compile a generated stub to an ``sm_90a`` cubin with nvcc or NVRTC (``DG_JIT_COMPILER`` picks one).

Both get the same language settings (C++ standard, ``sm_90a``, include directories), so a kernel that
builds with one builds with the other; ``compile_cubin`` adds the diagnostics knobs.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cuda.bindings import nvrtc

from deepgemm.jit import knobs

ARCH = "sm_90a"


class CompileError(RuntimeError):
    """A kernel failed to compile (the message carries the compiler's log)."""


class LocalMemoryError(CompileError):
    """``DG_JIT_PTXAS_CHECK`` is set and ptxas reports a stack frame or register spills."""


@dataclass(frozen=True)
class CompileOutput:
    cubin: bytes
    log: str  # compiler diagnostics, including ptxas' report when it was asked for
    command: str  # what ran, for humans
    seconds: float


class Compiler(ABC):
    """One way of turning ``kernel.cu`` into a cubin for ``ARCH``."""

    @abstractmethod
    def identity(self) -> str:
        """Compiler name, exact version and location: part of the cache key."""

    @abstractmethod
    def flags(self) -> tuple[str, ...]:
        """Options for this compile, as chosen by the knobs now (include directories excluded: the cache
        key hashes the headers themselves, so moving a checkout does not invalidate it)."""

    @abstractmethod
    def compile(self, source: Path, include_dirs: Sequence[Path], flags: Sequence[str]) -> CompileOutput:
        """Compile the file ``source``; raise ``CompileError`` with the log on failure."""


def _diagnostic_flags(ptxas_report: list[str]) -> list[str]:
    """``-lineinfo`` and ``ptxas_report`` (this compiler's spelling of ptxas' options), as the knobs ask."""
    lineinfo = ["-lineinfo"] if knobs.jit_with_lineinfo() else []
    return lineinfo + (ptxas_report if knobs.jit_ptxas_verbose() or knobs.jit_ptxas_check() else [])


class NvccCompiler(Compiler):
    """nvcc from a CUDA toolkit, run as a subprocess in the build directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def identity(self) -> str:
        return f"nvcc {_nvcc_version(self.path)} ({self.path})"

    def flags(self) -> tuple[str, ...]:
        arch = ARCH.removeprefix("sm_")
        # -gencode with code=sm_90a only: the -arch=sm_90a shorthand also runs a compute_90 pass,
        # which rejects the sm_90a-only instructions (wgmma, setmaxnreg).
        return (f"-std=c++{knobs.jit_cpp_standard()}", "-O3", "--expt-relaxed-constexpr",
                f"-gencode=arch=compute_{arch},code={ARCH}",
                *_diagnostic_flags(["--ptxas-options=--verbose,--warn-on-local-memory-usage"]))

    def compile(self, source: Path, include_dirs: Sequence[Path], flags: Sequence[str]) -> CompileOutput:
        output = source.with_suffix(".cubin")
        command = [str(self.path), source.name, "-cubin", "-o", output.name, *flags,
                   *(f"-I{directory}" for directory in include_dirs)]
        start = time.perf_counter()
        # Run inside the source's (private) directory so no stray header in the caller's working
        # directory can shadow one of ours.
        result = subprocess.run(command, cwd=source.parent, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        log = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise _failure(f"nvcc failed (exit {result.returncode})", source, log)
        return CompileOutput(output.read_bytes(), log, shlex.join(command), seconds)


class NvrtcCompiler(Compiler):
    """NVRTC, in process; the ``nvidia-cuda-nvrtc`` wheel is enough (no toolkit, no toolkit headers)."""

    def identity(self) -> str:
        major, minor = _nvrtc_call(nvrtc.nvrtcVersion)
        return f"nvrtc {major}.{minor} (nvidia-cuda-nvrtc {_nvrtc_wheel_version()})"

    def flags(self) -> tuple[str, ...]:
        # -default-device makes unannotated functions device functions, which is what the kernel
        # headers expect; nvcc gets the same effect for constexpr helpers from --expt-relaxed-constexpr.
        # NVRTC has no -O flag: device code is fully optimised by default, as with nvcc.
        return (f"--gpu-architecture={ARCH}", "-default-device", f"-std=c++{knobs.jit_cpp_standard()}",
                *_diagnostic_flags(["--ptxas-options=--verbose",
                                    "--ptxas-options=--warn-on-local-memory-usage"]))

    def compile(self, source: Path, include_dirs: Sequence[Path], flags: Sequence[str]) -> CompileOutput:
        options = [*flags, *(f"-I{directory}" for directory in include_dirs)]
        start = time.perf_counter()
        program = _nvrtc_call(nvrtc.nvrtcCreateProgram, source.read_bytes(), source.name.encode(), 0, [], [])
        try:
            encoded = [option.encode() for option in options]
            (status,) = nvrtc.nvrtcCompileProgram(program, len(encoded), encoded)
            log = _nvrtc_log(program)
            if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
                raise _failure(f"NVRTC failed ({status.name})", source, log)
            cubin = bytearray(_nvrtc_call(nvrtc.nvrtcGetCUBINSize, program))
            _nvrtc_call(nvrtc.nvrtcGetCUBIN, program, cubin)
        finally:
            _nvrtc_call(nvrtc.nvrtcDestroyProgram, program)
        seconds = time.perf_counter() - start
        return CompileOutput(bytes(cubin), log, f"nvrtc {shlex.join(options)} {source}", seconds)


def _failure(what: str, source: Path, log: str) -> CompileError:
    # The build directory is deleted after a failure, so the message carries the stub itself.
    return CompileError(f"{what} compiling\n{source.read_text()}\n{log}")


def _nvrtc_call(function, *args):
    status, *values = function(*args)
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise CompileError(f"{function.__name__} failed: {status.name}")
    return values[0] if len(values) == 1 else tuple(values) or None


def _nvrtc_log(program) -> str:
    log = bytearray(_nvrtc_call(nvrtc.nvrtcGetProgramLogSize, program))
    _nvrtc_call(nvrtc.nvrtcGetProgramLog, program, log)
    return log.decode(errors="replace").rstrip("\0").strip()


@functools.cache
def _nvrtc_wheel_version() -> str:
    # nvrtcVersion() stops at major.minor; the wheel pins the patch release too.
    try:
        return importlib.metadata.version("nvidia-cuda-nvrtc")
    except importlib.metadata.PackageNotFoundError:
        return "not installed from a wheel"


@functools.cache
def _nvcc_version(path: Path) -> str:
    result = subprocess.run([str(path), "--version"], capture_output=True, text=True)
    match = re.search(r"\bV(\d+\.\d+\.\d+)", result.stdout)
    if result.returncode != 0 or not match:
        raise CompileError(f"cannot read the version of {path}:\n{result.stdout}{result.stderr}")
    return match.group(1)


def find_nvcc() -> Path | None:
    """``DG_JIT_NVCC``, else ``$CUDA_HOME/bin/nvcc``, else ``nvcc`` on ``PATH``, else
    ``/usr/local/cuda/bin/nvcc``; ``None`` when none exists."""
    explicit = knobs.jit_nvcc()
    if explicit is not None:
        if not shutil.which(str(explicit)):
            raise FileNotFoundError(f"DG_JIT_NVCC={explicit}: not an executable file")
        return explicit
    cuda_home = knobs.cuda_home()
    candidates = [cuda_home / "bin" / "nvcc" if cuda_home else None, shutil.which("nvcc"),
                  "/usr/local/cuda/bin/nvcc"]
    return next((Path(found) for found in candidates if found and shutil.which(str(found))), None)


def get_compiler() -> Compiler:
    """The compiler ``DG_JIT_COMPILER`` asks for (``auto``: nvcc when found, else NVRTC)."""
    choice = knobs.jit_compiler()
    if choice == "nvrtc":
        return NvrtcCompiler()
    nvcc = find_nvcc()
    if nvcc is not None:
        return NvccCompiler(nvcc)
    if choice == "nvcc":
        raise CompileError("DG_JIT_COMPILER=nvcc but no nvcc was found (set DG_JIT_NVCC or CUDA_HOME)")
    return NvrtcCompiler()


_PROPERTIES = re.compile(r"Function properties for (\S+)\s*\n[^\n]*?(\d+) bytes stack frame, "
                         r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def local_memory_uses(log: str) -> list[str]:
    """Functions for which ptxas reports a stack frame or spills, as ``"name: N bytes stack frame, ..."``."""
    return [f"{name}: {stack} bytes stack frame, {stores} bytes spill stores, {loads} bytes spill loads"
            for name, stack, stores, loads in _PROPERTIES.findall(log)
            if int(stack) or int(stores) or int(loads)]


def compile_cubin(compiler: Compiler, source: Path, include_dirs: Sequence[Path],
                  flags: Sequence[str]) -> CompileOutput:
    """``compiler.compile`` plus the diagnostics knobs (see ``docs/knobs.md``)."""
    output = compiler.compile(source, include_dirs, flags)
    if knobs.jit_print_compiler_command():
        print(f"deepgemm.jit: {output.command}\ndeepgemm.jit: compiled in {output.seconds:.3f} s",
              file=sys.stderr, flush=True)
    if knobs.jit_ptxas_verbose() and output.log:
        print(output.log, file=sys.stderr, flush=True)
    if knobs.jit_ptxas_check():
        uses = local_memory_uses(output.log)
        if uses:
            message = "ptxas reports local memory use (DG_JIT_PTXAS_CHECK=1):\n" + "\n".join(uses)
            raise LocalMemoryError(message)
    return output
