"""The generated source: a stub, with no code of its own, that includes a kernel header and instantiates one
template. Its header comment records the kernel and its configuration; the stub is part of the cache key,
so the comment must be deterministic (a dataclass ``repr`` is)."""

from __future__ import annotations

import re
from collections.abc import Sequence

TemplateArg = int | bool | str

_QUALIFIED_NAME = re.compile(r"(::)?[A-Za-z_]\w*(::[A-Za-z_]\w*)*")
_HEADER = re.compile(r"[\w./-]+")


def render_template_arg(arg: TemplateArg) -> str:
    """C++ spelling of one template argument: bools as ``true``/``false``, ints in decimal, strings
    (enumerators, type names such as ``deepgemm::GemmType::Normal``) verbatim."""
    # bool first: it is a subclass of int.
    if isinstance(arg, bool):
        return "true" if arg else "false"
    if isinstance(arg, int):
        return str(arg)
    if isinstance(arg, str) and arg.strip() and "\n" not in arg:
        return arg.strip()
    raise TypeError(f"template argument {arg!r}: expected int, bool or a one-line C++ expression string")


def kernel_short_name(kernel: str) -> str:
    """The unqualified kernel name (``deepgemm::sm90_fp8_gemm_1d2d`` -> ``sm90_fp8_gemm_1d2d``)."""
    return kernel.rsplit("::", 1)[-1]


def render_stub(header: str, kernel: str, template_args: Sequence[TemplateArg], comment: str = "") -> str:
    """Source that instantiates ``kernel<template_args...>`` from ``#include <header>``.

    ``kernel`` is the qualified name of a ``__global__`` function template
    (``deepgemm::sm90_fp8_gemm_1d2d``); ``header`` is an include path relative to an include directory
    (``deepgemm/impls/sm90_fp8_gemm_1d2d.cuh``); ``comment`` (any number of lines, typically the config's
    ``repr``) goes into the header comment.
    """
    if not _QUALIFIED_NAME.fullmatch(kernel):
        raise ValueError(f"kernel {kernel!r}: expected a (qualified) C++ identifier")
    if not _HEADER.fullmatch(header) or header.startswith("/"):
        raise ValueError(f"header {header!r}: expected a relative include path")
    args = ", ".join(render_template_arg(arg) for arg in template_args)
    lines = [f"// deepgemm JIT kernel: {kernel_short_name(kernel)}"]
    lines += [f"// {line}".rstrip() for line in comment.splitlines()]
    lines += [
        f"#include <{header}>",
        "",
        # A function that is never called but takes the kernel's address forces the instantiation;
        # [[maybe_unused]] and the void cast keep both compilers quiet about it.
        "[[maybe_unused]] static void __instantiate_kernel() {",
        f"    (void)reinterpret_cast<const void*>(&{kernel}<{args}>);",
        "}",
    ]
    return "\n".join(lines) + "\n"
