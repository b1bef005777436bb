"""From a kernel template and its arguments to a cubin: stub -> cache key -> disk cache or compile (CPU only;
loading and launching live in ``runtime``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deepgemm._version import __version__
from deepgemm.jit import knobs
from deepgemm.jit.cache import CUBIN_NAME, HEADER_DIGESTS, SOURCE_NAME, DiskCache, build_uncached, cache_key
from deepgemm.jit.codegen import TemplateArg, kernel_short_name, render_stub
from deepgemm.jit.compiler import ARCH, compile_cubin, get_compiler
from deepgemm.jit.cubin import single_kernel_name

PACKAGE_INCLUDE_DIR = Path(__file__).resolve().parents[1] / "include"

_compile_count = 0
_compile_count_lock = threading.Lock()


@dataclass(frozen=True)
class KernelBinary:
    """A compiled kernel: the cubin and what is needed to load and explain it."""

    name: str  # unqualified template name, also the cache directory name
    symbol: str  # mangled name of the __global__ function in the cubin
    cubin: bytes
    key: str  # full cache key (hex SHA-256)
    directory: Path | None  # the cache entry, None when DG_JIT_DISABLE_CACHE is set
    compiled: bool  # whether this call compiled it (False: it came from the disk cache)


def compile_count() -> int:
    """How many kernels this process has compiled (disk-cache hits do not count)."""
    return _compile_count


def build_kernel(kernel: str, header: str, template_args: Sequence[TemplateArg], comment: str = "",
                 include_dirs: Sequence[Path] = ()) -> KernelBinary:
    """Cubin for ``kernel<template_args...>`` from ``header``, from the disk cache or freshly compiled.
    ``include_dirs`` are searched after the package's own ``include/`` directory; the compiler and its
    options follow the ``DG_JIT_*`` knobs (``docs/knobs.md``)."""
    source = render_stub(header, kernel, template_args, comment)
    dirs = (PACKAGE_INCLUDE_DIR, *(Path(directory).resolve() for directory in include_dirs))
    compiler = get_compiler()
    flags = compiler.flags()
    identity = compiler.identity()
    key = cache_key(source=source, headers_digest=HEADER_DIGESTS.of_source(source, dirs),
                    compiler_identity=identity, flags=flags, arch=ARCH, package_version=__version__)

    def build(directory: Path) -> dict:
        global _compile_count
        output = compile_cubin(compiler, directory / SOURCE_NAME, dirs, flags)
        symbol = single_kernel_name(output.cubin)
        (directory / CUBIN_NAME).write_bytes(output.cubin)
        with _compile_count_lock:
            _compile_count += 1
        return {"kernel": kernel, "symbol": symbol, "compiler": identity, "flags": list(flags), "arch": ARCH,
                "package_version": __version__, "compile_seconds": round(output.seconds, 3)}

    name = kernel_short_name(kernel)
    if knobs.jit_disable_cache():
        entry, compiled = build_uncached(key, source, build), True
    else:
        entry, compiled = DiskCache(knobs.jit_cache_dir()).get_or_build(name, key, source, build)
    return KernelBinary(name, entry.meta["symbol"], entry.cubin, key, entry.directory, compiled)
