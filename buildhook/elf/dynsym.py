"""What a shared library exports: its dynamic symbol table, default versions first.

Two stages ask: the diff (does the name a patch needs exist in the base's
libraries, and is it a function or a variable?) and the applier (at which
address does the running process have it?).  The table is unpacked in bulk
with ``struct``: pyelftools' per-symbol parse of libc's ~3,000 symbols took
0.4 s.  Standard library and pyelftools only (the applier ships it).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from elftools.elf.elffile import ELFFile

SYMBOL = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size
VERSYM_HIDDEN = 0x8000             # a non-default version (name@VER, not name@@VER)
STB_GLOBAL, STB_WEAK = 1, 2
STT_GNU_IFUNC = 10
# What each exported symbol type is, for a caller: STT_NOTYPE, OBJECT, FUNC, COMMON, TLS, GNU_IFUNC.
KINDS = {0: "variable", 1: "variable", 2: "function", 5: "variable", 6: "tls", STT_GNU_IFUNC: "function"}


@dataclass(frozen=True)
class DynamicExport:
    """A symbol a library defines for others: its link-time value and what it is."""

    name: str
    value: int
    kind: str     # "function", "variable", "tls"
    ifunc: bool   # its value is a resolver, to be run for the real address
    size: int = 0


def dynamic_exports(data: bytes) -> dict[str, DynamicExport]:
    """Name → export for every defined global or weak dynamic symbol; the default version of a name wins."""
    elf = ELFFile(io.BytesIO(data))
    dynsym = elf.get_section_by_name(".dynsym")
    if dynsym is None:
        return {}
    strings = elf.get_section(dynsym.header.sh_link).data()
    versym = elf.get_section_by_name(".gnu.version")
    versions = struct.unpack(f"<{versym.data_size // 2}H", versym.data()) if versym is not None else ()
    table = data[dynsym.header.sh_offset:dynsym.header.sh_offset + dynsym.header.sh_size]
    exports: dict[str, DynamicExport] = {}
    for index, (name_at, info, _other, shndx, value, size) in enumerate(SYMBOL.iter_unpack(table)):
        kind = KINDS.get(info & 0xF)
        if shndx == 0 or info >> 4 not in (STB_GLOBAL, STB_WEAK) or kind is None:
            continue
        name = strings[name_at:strings.find(b"\0", name_at)].decode("utf-8", "replace")
        hidden = bool(index < len(versions) and versions[index] & VERSYM_HIDDEN)
        if hidden and name in exports:
            continue
        exports[name] = DynamicExport(name, value, kind, info & 0xF == STT_GNU_IFUNC, size)
    return exports


def dynamic_imports(data: bytes) -> set[str]:
    """The names of every undefined dynamic symbol: what the file expects another object to define."""
    elf = ELFFile(io.BytesIO(data))
    dynsym = elf.get_section_by_name(".dynsym")
    if dynsym is None:
        return set()
    strings = elf.get_section(dynsym.header.sh_link).data()
    table = data[dynsym.header.sh_offset:dynsym.header.sh_offset + dynsym.header.sh_size]
    return {strings[name_at:strings.find(b"\0", name_at)].decode("utf-8", "replace")
            for name_at, _info, _other, shndx, _value, _size in SYMBOL.iter_unpack(table)
            if shndx == 0 and name_at}


def dynamic_symbol_names(data: bytes) -> list[str]:
    """Every dynamic symbol's name, by index (what a relocation's symbol number refers to)."""
    elf = ELFFile(io.BytesIO(data))
    dynsym = elf.get_section_by_name(".dynsym")
    if dynsym is None:
        return []
    strings = elf.get_section(dynsym.header.sh_link).data()
    table = data[dynsym.header.sh_offset:dynsym.header.sh_offset + dynsym.header.sh_size]
    return [strings[name_at:strings.find(b"\0", name_at)].decode("utf-8", "replace")
            for name_at, *_rest in SYMBOL.iter_unpack(table)]
