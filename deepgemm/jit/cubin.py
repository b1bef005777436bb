"""Find the kernels in a cubin (a 64-bit little-endian ELF file) by reading its symbol table: no cuobjdump,
no driver. A ``__global__`` function is a global ``STT_FUNC`` symbol that owns a ``.nv.info.<symbol>``
section (its launch metadata: parameter layout, register count, ...); device functions that were not
inlined are local symbols and have no such section, so the two tests together pick out the entry points."""

from __future__ import annotations

import struct

_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_SHT_SYMTAB = 2
_STT_FUNC = 2
_STB_LOCAL = 0
_KERNEL_INFO_PREFIX = ".nv.info."

# e_shoff, (e_flags, e_ehsize, e_phentsize, e_phnum,) e_shentsize, e_shnum, e_shstrndx
_ELF_HEADER = struct.Struct("<40xQ4x6xHHH")
# sh_name, sh_type, (sh_flags, sh_addr,) sh_offset, sh_size, sh_link, (sh_info, sh_addralign,) sh_entsize
_SECTION = struct.Struct("<II16xQQI12xQ")
_SYMBOL = struct.Struct("<IBBHQQ")


class CubinError(ValueError):
    """The bytes are not a cubin this module can read."""


def _c_string(table: bytes, offset: int) -> str:
    return table[offset:table.index(b"\0", offset)].decode()


def kernel_names(cubin: bytes) -> list[str]:
    """Mangled names of all ``__global__`` functions in ``cubin``, in symbol-table order."""
    if cubin[:4] != _ELF_MAGIC or cubin[4] != _ELFCLASS64 or cubin[5] != _ELFDATA2LSB:
        raise CubinError("not a 64-bit little-endian ELF file")
    shoff, shentsize, shnum, shstrndx = _ELF_HEADER.unpack_from(cubin, 0)
    if shoff == 0 or shentsize < _SECTION.size or shoff + shnum * shentsize > len(cubin):
        raise CubinError("truncated or malformed section header table")
    sections = [_SECTION.unpack_from(cubin, shoff + i * shentsize) for i in range(shnum)]

    def contents(index: int) -> bytes:
        _, _, offset, size, _, _ = sections[index]
        return cubin[offset:offset + size]

    section_names = contents(shstrndx)
    names = {_c_string(section_names, section[0]) for section in sections}
    symtabs = [i for i, section in enumerate(sections) if section[1] == _SHT_SYMTAB]
    if len(symtabs) != 1:
        raise CubinError(f"expected one symbol table, found {len(symtabs)}")
    _, _, _, _, strtab_index, entsize = sections[symtabs[0]]
    symbols, strings = contents(symtabs[0]), contents(strtab_index)

    kernels = []
    for offset in range(0, len(symbols) - entsize + 1, entsize):
        name_offset, info, _, _, _, _ = _SYMBOL.unpack_from(symbols, offset)
        if info & 0xF != _STT_FUNC or info >> 4 == _STB_LOCAL:
            continue
        name = _c_string(strings, name_offset)
        if _KERNEL_INFO_PREFIX + name in names:
            kernels.append(name)
    return kernels


def single_kernel_name(cubin: bytes) -> str:
    """The mangled name of the one ``__global__`` function in ``cubin``. A JIT stub instantiates one kernel;
    a second means the header defines another non-template ``__global__`` (one kernel per header)."""
    names = kernel_names(cubin)
    if len(names) != 1:
        raise CubinError(f"expected exactly one kernel in the cubin, found {len(names)}: {names}")
    return names[0]
