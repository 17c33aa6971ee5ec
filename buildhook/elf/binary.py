"""A linked program (the base release's unstripped output), read for patching.

The diff stage asks the base binary a few questions the objects cannot
answer: where a global symbol defined in another object (or copied in from a
library by a COPY relocation) lives, which library functions it imports,
how much room a function has for a jump before the next symbol, what bytes a
function has (their hash lets the applier check the running process), and
where a thread-local variable sits in the TLS block.
"""

from __future__ import annotations

import bisect
import hashlib
import io
from dataclasses import dataclass

from elftools.elf.elffile import ELFFile

R_X86_64_DTPMOD64 = 16
R_X86_64_RELATIVE = 8


@dataclass(frozen=True)
class BinarySymbol:
    """A symbol of the linked program (link-time address, before load bias)."""

    name: str
    address: int
    size: int
    type: str
    bind: str
    section: str


class LinkedBinary:
    """An executable or shared object, from its bytes."""

    def __init__(self, data: bytes, name: str) -> None:
        self.name = name
        self.data = data
        elf = ELFFile(io.BytesIO(data))
        self.elf_type = elf.header.e_type
        self._segments = [
            (segment.header.p_vaddr, segment.header.p_offset, segment.header.p_filesz)
            for segment in elf.iter_segments() if segment.header.p_type == "PT_LOAD"
        ]
        # (link-time address, size in memory, alignment) of the TLS template
        self.tls_segment = next(((segment.header.p_vaddr, segment.header.p_memsz, segment.header.p_align)
                                 for segment in elf.iter_segments() if segment.header.p_type == "PT_TLS"), None)
        section_names = [section.name for section in elf.iter_sections()]
        self.code_sections = sorted((section.header.sh_addr, section.header.sh_addr + section.header.sh_size,
                                     section.name)
                                    for section in elf.iter_sections() if section.header.sh_flags & 0x4)
        code_names = {name for _start, _end, name in self.code_sections}
        self.symbols: list[BinarySymbol] = []
        self.imports: set[str] = set()
        self.import_types: dict[str, str] = {}  # imported name → its symbol type (STT_FUNC, STT_OBJECT …)
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            raise ValueError(f"{name} has no symbol table (stripped?); buildhook needs the unstripped link output")
        for symbol in symtab.iter_symbols():
            entry = symbol.entry
            shndx = entry.st_shndx
            base_name = symbol.name.split("@", 1)[0]
            if shndx == "SHN_UNDEF":
                if base_name:
                    self.imports.add(base_name)
                    self.import_types.setdefault(base_name, entry.st_info.type)
                continue
            if not isinstance(shndx, int) or entry.st_info.type in ("STT_SECTION", "STT_FILE"):
                continue
            self.symbols.append(BinarySymbol(base_name, entry.st_value, entry.st_size, entry.st_info.type,
                                             entry.st_info.bind, section_names[shndx]))
        self._globals: dict[str, BinarySymbol] = {}
        for symbol in self.symbols:
            if symbol.bind in ("STB_GLOBAL", "STB_WEAK") and symbol.name not in self._globals:
                self._globals[symbol.name] = symbol
        self._tls_pairs: dict[tuple[str, int | str], int] | None = None
        self._dynamic_relocations: list[tuple[int, int, str, int]] | None = None
        self._bss = [(segment.header.p_vaddr + segment.header.p_filesz, segment.header.p_vaddr + segment.header.p_memsz)
                     for segment in elf.iter_segments() if segment.header.p_type == "PT_LOAD"]
        self._code_starts = sorted({symbol.address for symbol in self.symbols
                                    if symbol.type in ("STT_FUNC", "STT_NOTYPE", "STT_GNU_IFUNC", "STT_LOOS")
                                    and symbol.section in code_names})

    def tls_module_pairs(self) -> dict[tuple[str, int | str], int]:
        """GOT pairs a shared object's general- and local-dynamic TLS accesses use: their link-time addresses.

        Each pair is (module id, offset) for ``__tls_get_addr``, filled by the
        dynamic linker from an ``R_X86_64_DTPMOD64`` at its first word.  Keys:
        ``("name", sym)`` for a pair naming a symbol (the offset is the
        symbol's), ``("offset", n)`` for an anonymous one (a local variable at
        offset n, whose word the linker wrote; offset 0 is also the
        local-dynamic module base).
        """
        if self._tls_pairs is None:
            self._tls_pairs = {}
            for address, rel_type, name, _addend in self.dynamic_relocations():
                if rel_type != R_X86_64_DTPMOD64:
                    continue
                if name:
                    key: tuple[str, int | str] = ("name", name)
                else:
                    key = ("offset", int.from_bytes(self.bytes_at(address + 8, 8), "little"))
                self._tls_pairs.setdefault(key, address)
        return self._tls_pairs

    def dynamic_relocations(self) -> list[tuple[int, int, str, int]]:
        """(link-time address, type, symbol name or "", addend) of every dynamic relocation, by address."""
        if self._dynamic_relocations is None:
            found = []
            elf = ELFFile(io.BytesIO(self.data))
            for section in elf.iter_sections():
                if section.header.sh_type != "SHT_RELA" or not section.header.sh_flags & 0x2:  # SHF_ALLOC
                    continue
                symbols = elf.get_section(section.header.sh_link)
                for relocation in section.iter_relocations():
                    index = relocation["r_info_sym"]
                    name = symbols.get_symbol(index).name if index and symbols is not None else ""
                    found.append((relocation["r_offset"], relocation["r_info_type"], name, relocation["r_addend"]))
            self._dynamic_relocations = sorted(found)
        return self._dynamic_relocations

    def initial_value(self, address: int, size: int) -> tuple[bytes, list[int], list[str]]:
        """A variable's bytes as the program starts, before the load bias: its file bytes (zeros in
        .bss) with every relative pointer's link-time value, the offsets of those pointers (they get
        the load bias), and what its other dynamic relocations name (a library's symbol: unknown here)."""
        if any(start <= address and address + size <= end for start, end in self._bss):
            value = bytearray(size)
        else:
            value = bytearray(self.bytes_at(address, size))
        relative, symbolic = [], []
        for where, rel_type, name, addend in self.dynamic_relocations():
            if address <= where < address + size:
                if rel_type == R_X86_64_RELATIVE and where + 8 <= address + size:
                    value[where - address:where - address + 8] = (addend & (2**64 - 1)).to_bytes(8, "little")
                    relative.append(where - address)
                else:
                    symbolic.append(name or f"relocation type {rel_type}")
        return bytes(value), relative, symbolic

    def global_symbol(self, name: str) -> BinarySymbol | None:
        """The program's own global (or COPY-relocated) definition of *name*."""
        return self._globals.get(name)

    def room_at(self, address: int) -> int:
        """Bytes from *address* to the next code symbol (or the end of its section).

        Padding between functions is not code, so a jump may overwrite it.
        """
        end = next((stop for start, stop, _name in self.code_sections if start <= address < stop), address)
        position = bisect.bisect_right(self._code_starts, address)
        following = self._code_starts[position] if position < len(self._code_starts) else end
        return min(following, end) - address

    def bytes_at(self, address: int, size: int) -> bytes:
        """The file bytes mapped at link-time *address* (code: identical in memory)."""
        for vaddr, offset, filesz in self._segments:
            if vaddr <= address and address + size <= vaddr + filesz:
                start = offset + (address - vaddr)
                return self.data[start:start + size]
        raise ValueError(f"{self.name}: no loaded bytes at {address:#x}+{size}")

    def sha256_at(self, address: int, size: int) -> str:
        return hashlib.sha256(self.bytes_at(address, size)).hexdigest()
