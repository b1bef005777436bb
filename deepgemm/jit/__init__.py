"""Kernel JIT: generate an instantiation stub, compile it (nvcc or NVRTC), cache the cubin on disk and in
memory, load it and launch it. Generic: knows no GEMM. ``knobs`` holds every environment variable."""

from deepgemm.jit.build import PACKAGE_INCLUDE_DIR, KernelBinary, build_kernel, compile_count
from deepgemm.jit.codegen import render_stub
from deepgemm.jit.compiler import ARCH, CompileError, LocalMemoryError, get_compiler
from deepgemm.jit.runtime import Kernel, Launcher, ParamType, clear_memory_cache, get_kernel

__all__ = ["ARCH", "PACKAGE_INCLUDE_DIR", "CompileError", "Kernel", "KernelBinary", "Launcher",
           "LocalMemoryError", "ParamType", "build_kernel", "clear_memory_cache", "compile_count",
           "get_compiler", "get_kernel", "render_stub"]
