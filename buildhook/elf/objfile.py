"""Relocatable objects (ET_REL) as the diff stage sees them.

pyelftools reads the file once; this module turns it into plain lists of
sections, symbols and relocations that can be compared, correlated and
copied without going back to the ELF structures.  Objects are small (one
translation unit), so everything is read eagerly.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

SHF_EXECINSTR = SH_FLAGS.SHF_EXECINSTR
SHF_WRITE = SH_FLAGS.SHF_WRITE
SHF_MERGE = SH_FLAGS.SHF_MERGE
SHF_STRINGS = SH_FLAGS.SHF_STRINGS
SHF_TLS = SH_FLAGS.SHF_TLS
SHF_ALLOC = SH_FLAGS.SHF_ALLOC


RELA_ENTRY = struct.Struct("<QQq")  # r_offset, r_info (symbol << 32 | type), r_addend


class ObjectFormatError(Exception):
    """The file is not an x86-64 ELF relocatable object buildhook can diff."""


@dataclass
class Section:
    """One section: its bytes (empty for NOBITS) and where it came from."""

    index: int
    name: str
    type: str
    flags: int
    size: int
    align: int
    entsize: int
    data: bytes
    file_offset: int = 0  # where the bytes sit in the object file
    relocations: list[Relocation] = field(default_factory=list)
    # Elf64_Rela entries of a section that is not loaded (debug info), left packed: only the type
    # layouts read them (diff/layout.py), and a C++ object has millions
    raw_relocations: bytes = b""

    @property
    def is_code(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)

    @property
    def is_strings(self) -> bool:
        return bool(self.flags & SHF_MERGE and self.flags & SHF_STRINGS)

    @property
    def is_merged_constants(self) -> bool:
        return bool(self.flags & SHF_MERGE) and not self.flags & SHF_STRINGS

    @property
    def is_tls(self) -> bool:
        return bool(self.flags & SHF_TLS)

    @property
    def is_writable(self) -> bool:
        return bool(self.flags & SHF_WRITE)

    def string_at(self, offset: int) -> bytes:
        """The NUL-terminated string at *offset* of a string section."""
        end = self.data.find(b"\0", offset)
        return self.data[offset:end if end >= 0 else len(self.data)]


@dataclass
class Symbol:
    """One symbol-table entry."""

    index: int
    name: str
    type: str      # STT_FUNC, STT_OBJECT, STT_SECTION, STT_TLS, STT_NOTYPE, STT_FILE
    bind: str      # STB_LOCAL, STB_GLOBAL, STB_WEAK
    section: int | str  # section index, or SHN_UNDEF / SHN_ABS / SHN_COMMON
    value: int
    size: int
    visibility: str = "STV_DEFAULT"

    @property
    def is_defined(self) -> bool:
        return isinstance(self.section, int)

    @property
    def is_local(self) -> bool:
        return self.bind == "STB_LOCAL"


@dataclass
class Relocation:
    """A RELA entry: patch ``type`` at ``offset`` with ``symbol + addend``."""

    offset: int
    type: int
    symbol: int
    addend: int
    section: int | None = None  # index of the section the relocation patches


class ObjectFile:
    """An ET_REL object read into memory."""

    def __init__(self, data: bytes, name: str) -> None:
        self.name = name
        self.data = data
        try:
            elf = ELFFile(io.BytesIO(data))
        except Exception as exc:  # pyelftools raises several types for garbage
            raise ObjectFormatError(f"{name} is not an ELF file: {exc}") from exc
        if elf.header.e_type != "ET_REL" or elf.header.e_machine != "EM_X86_64":
            raise ObjectFormatError(
                f"{name} is {elf.header.e_type} for {elf.header.e_machine}; only x86-64 ET_REL objects can be diffed"
            )
        self.sections: list[Section] = []
        for index, section in enumerate(elf.iter_sections()):
            header = section.header
            data_bytes = b"" if header.sh_type in ("SHT_NOBITS", "SHT_NULL") else section.data()
            self.sections.append(Section(index, section.name, header.sh_type, header.sh_flags, header.sh_size,
                                         header.sh_addralign, header.sh_entsize, data_bytes, header.sh_offset))
        self.symbols: list[Symbol] = []
        symtab = elf.get_section_by_name(".symtab")
        if symtab is not None:
            for index, symbol in enumerate(symtab.iter_symbols()):
                entry = symbol.entry
                self.symbols.append(Symbol(index, symbol.name, entry.st_info.type, entry.st_info.bind,
                                           entry.st_shndx, entry.st_value, entry.st_size,
                                           entry.st_other.visibility))
        for index, section in enumerate(elf.iter_sections()):
            if section.header.sh_type == "SHT_RELA":
                # Elf64_Rela unpacked in bulk: pyelftools' per-entry parse was most of
                # loading an object with debug info (.rela.debug_info is the big one).
                target = self.sections[section.header.sh_info]
                if not target.flags & SHF_ALLOC:
                    target.raw_relocations = self.sections[index].data
                    continue
                target.relocations = sorted(
                    (Relocation(offset, info & 0xFFFFFFFF, info >> 32, addend, target.index)
                     for offset, info, addend in RELA_ENTRY.iter_unpack(self.sections[index].data)),
                    key=lambda rel: rel.offset)
        self._symbols_by_section: dict[int, list[Symbol]] = {}
        for symbol in self.symbols:
            if isinstance(symbol.section, int) and symbol.type not in ("STT_SECTION", "STT_FILE"):
                self._symbols_by_section.setdefault(symbol.section, []).append(symbol)

    def section_symbols(self, section_index: int) -> list[Symbol]:
        """Named symbols defined in a section, in address order."""
        return sorted(self._symbols_by_section.get(section_index, []), key=lambda symbol: (symbol.value, symbol.name))

    def functions(self) -> list[Symbol]:
        """Every defined function symbol."""
        return [symbol for symbol in self.symbols if symbol.type == "STT_FUNC" and symbol.is_defined]

    def data_objects(self) -> list[Symbol]:
        """Every defined variable (data, rodata, bss, TLS, common)."""
        return [symbol for symbol in self.symbols
                if symbol.type in ("STT_OBJECT", "STT_TLS") and (symbol.is_defined or symbol.section == "SHN_COMMON")]

    def section_named(self, name: str) -> Section | None:
        for section in self.sections:
            if section.name == name:
                return section
        return None

    def symbol_covering(self, section_index: int, offset: int) -> Symbol | None:
        """The named symbol in a section whose [value, value+size) holds *offset* (or starts there)."""
        best = None
        for symbol in self.section_symbols(section_index):
            if symbol.value == offset or symbol.value <= offset < symbol.value + max(symbol.size, 1):
                if best is None or symbol.value >= best.value:
                    best = symbol
        return best
