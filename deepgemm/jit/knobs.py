"""Every environment variable deepgemm reads, in one place: nothing else touches ``os.environ``.

Each knob is declared once in ``KNOBS`` (``docs/knobs.md`` is generated from it and a test keeps the two in
step) and read through a typed accessor when it is needed, not at import, so it can change at run time;
kernels already loaded in this process are not rebuilt (see ``deepgemm.jit.clear_memory_cache``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class Knob:
    """One environment variable: its name, value type (as written in the docs), default and meaning."""

    name: str
    type: str
    default: str
    meaning: str


KNOBS: tuple[Knob, ...] = (
    Knob("DG_JIT_CACHE_DIR", "path", "`~/.cache/deepgemm`",
         "Root of the on-disk kernel cache (`<dir>/<kernel>/<key>/{kernel.cu, kernel.cubin, meta.json}`)."),
    Knob("DG_JIT_DISABLE_CACHE", "bool", "`0`",
         "Skip the disk cache: always compile (into a throw-away directory). Kernels are still kept in "
         "memory for the life of the process."),
    Knob("DG_JIT_COMPILER", "`auto` \\| `nvrtc` \\| `nvcc`", "`auto`",
         "Which compiler builds kernels. `auto` uses nvcc when one is found, else NVRTC."),
    Knob("DG_JIT_NVCC", "path", "unset",
         "The nvcc to use. Unset: `$CUDA_HOME/bin/nvcc`, then `nvcc` on `PATH`, then "
         "`/usr/local/cuda/bin/nvcc`."),
    Knob("DG_JIT_CPP_STANDARD", "`17` \\| `20`", "`20`", "C++ standard the kernels are compiled with."),
    Knob("DG_JIT_WITH_LINEINFO", "bool", "`0`",
         "Compile with `-lineinfo` (source lines in profilers and sanitizer reports)."),
    Knob("DG_JIT_PTXAS_VERBOSE", "bool", "`0`",
         "Print ptxas' per-kernel report (registers, stack frame, spills) for every compile."),
    Knob("DG_JIT_PTXAS_CHECK", "bool", "`0`",
         "Fail a compile whose ptxas report shows local memory: a stack frame or spill stores/loads."),
    Knob("DG_JIT_PRINT_COMPILER_COMMAND", "bool", "`0`",
         "Print each compiler command (or NVRTC option list) and how long the compile took."),
    Knob("DG_JIT_DEBUG", "bool", "`0`",
         "Log JIT activity to stderr: disk cache hits and misses, cache publication, kernel loads."),
    Knob("DG_JIT_LAUNCH_API", "`cuda-python` \\| `ctypes`", "`cuda-python`",
         "How launchers call `cuLaunchKernelEx`: through `cuda.bindings.driver`, or through ctypes on "
         "libcuda with a configuration built once (less CPU time per launch; read when a launcher is made)."),
    Knob("DG_PRINT_CONFIGS", "bool", "`0`",
         "Print the kernel configuration chosen for each new problem shape."),
    Knob("DG_DEBUG_CHECK_INDICES", "bool", "`0`",
         "Check the index tensors of the grouped GEMMs on the host before launching (`m_indices` values "
         "and 128-row block layout, `group_ends` order, `masked_m` range) and raise `ValueError` naming the "
         "first bad entry. This synchronises the device, so it is for debugging only; CPU calls always "
         "check."),
    Knob("CUDA_HOME", "path", "unset",
         "Standard CUDA variable (`CUDA_PATH` is also read): where to look for `bin/nvcc`."),
)


def _bool(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={value!r}: expected one of 0/1, true/false, yes/no, on/off")


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (os.environ.get(name) or default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def launch_api() -> str:
    return _choice("DG_JIT_LAUNCH_API", "cuda-python", ("cuda-python", "ctypes"))


def _path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def jit_cache_dir() -> Path:
    return _path("DG_JIT_CACHE_DIR") or Path.home() / ".cache" / "deepgemm"


@contextlib.contextmanager
def jit_cache_dir_set_to(path: Path | str) -> Iterator[None]:
    """``DG_JIT_CACHE_DIR`` set to ``path`` inside the block, restored after it: kernels first asked for
    in the block are looked up and built there (the benchmark times a first run on a cold cache)."""
    previous = os.environ.get("DG_JIT_CACHE_DIR")
    os.environ["DG_JIT_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["DG_JIT_CACHE_DIR"]
        else:
            os.environ["DG_JIT_CACHE_DIR"] = previous


def jit_cpp_standard() -> int:
    return int(_choice("DG_JIT_CPP_STANDARD", "20", ("17", "20")))


def cuda_home() -> Path | None:
    return _path("CUDA_HOME") or _path("CUDA_PATH")


# The knobs that need nothing beyond their reader; each accessor takes no argument.
jit_compiler = functools.partial(_choice, "DG_JIT_COMPILER", "auto", ("auto", "nvrtc", "nvcc"))
jit_nvcc = functools.partial(_path, "DG_JIT_NVCC")
jit_disable_cache = functools.partial(_bool, "DG_JIT_DISABLE_CACHE")
jit_with_lineinfo = functools.partial(_bool, "DG_JIT_WITH_LINEINFO")
jit_ptxas_verbose = functools.partial(_bool, "DG_JIT_PTXAS_VERBOSE")
jit_ptxas_check = functools.partial(_bool, "DG_JIT_PTXAS_CHECK")
jit_print_compiler_command = functools.partial(_bool, "DG_JIT_PRINT_COMPILER_COMMAND")
jit_debug = functools.partial(_bool, "DG_JIT_DEBUG")
print_configs = functools.partial(_bool, "DG_PRINT_CONFIGS")
debug_check_indices = functools.partial(_bool, "DG_DEBUG_CHECK_INDICES")


def set_knob(name: str, value: str) -> None:
    """Sets knob ``name`` for this process and the processes it starts (the precompile CLI's options)."""
    os.environ[next(knob.name for knob in KNOBS if knob.name == name)] = value


def debug_log(message: str) -> None:
    """One line of JIT diagnostics on stderr, when ``DG_JIT_DEBUG`` is set."""
    if jit_debug():
        print(f"deepgemm.jit: {message}", file=sys.stderr, flush=True)


def render_markdown() -> str:
    """The knob table as Markdown (the content of ``docs/knobs.md``)."""
    lines = [
        "# Environment variables",
        "",
        "deepgemm reads these variables (all in `deepgemm/jit/knobs.py`). Booleans accept "
        "`1/0`, `true/false`, `yes/no`, `on/off`; any other value is an error. The JIT reads its knobs "
        "when a kernel is first requested in a process. The compiler and its options (C++ standard, "
        "line info, ptxas reporting) are part of the cache key, so changing them compiles new entries "
        "next to the old ones.",
        "",
        "| Name | Type | Default | Meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{k.name}` | {k.type} | {k.default} | {k.meaning} |" for k in KNOBS]
    return "\n".join(lines) + "\n"
