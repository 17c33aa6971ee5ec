"""Writing a ``.po``: patch content in, deterministic ELF bytes out.

The same content always gives the same bytes (no timestamps, everything in
a fixed order), so a patch can be rebuilt and compared, and its id (a hash
of the file) names exactly what it does.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field

from buildhook.po import format as fmt


@dataclass
class PatchRelocation:
    """A relocation in a patch section, against a patch symbol (by index into ``PatchContent.symbols``)."""

    offset: int
    type: int
    symbol: int
    addend: int


@dataclass
class PatchSection:
    """A section of the patch: code, read-only data, data or bss."""

    name: str
    flags: int
    align: int
    data: bytes = b""
    size: int = 0          # for NOBITS
    nobits: bool = False
    entsize: int = 0
    relocations: list[PatchRelocation] = field(default_factory=list)

    @property
    def byte_size(self) -> int:
        return self.size if self.nobits else len(self.data)


@dataclass
class PatchSymbol:
    """A symbol: defined in a patch section, or undefined and bound by the metadata."""

    name: str
    type: int
    section: int | None = None   # index into PatchContent.sections; None = undefined
    value: int = 0
    size: int = 0
    binding: dict[str, object] | None = None  # for undefined symbols: {"bind": …, …}


@dataclass
class PatchContent:
    """Everything a .po holds, before it becomes bytes."""

    sections: list[PatchSection] = field(default_factory=list)
    symbols: list[PatchSymbol] = field(default_factory=list)
    metadata: dict[str, object] = field(default_factory=dict)

    def add_section(self, section: PatchSection) -> int:
        self.sections.append(section)
        return len(self.sections) - 1

    def add_symbol(self, symbol: PatchSymbol) -> int:
        self.symbols.append(symbol)
        return len(self.symbols) - 1


class _StringTable:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.offsets: dict[str, int] = {"": 0}

    def add(self, text: str) -> int:
        if text not in self.offsets:
            self.offsets[text] = len(self.data)
            self.data += text.encode("utf-8") + b"\0"
        return self.offsets[text]


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment if alignment > 1 else value


def write_patch(content: PatchContent) -> bytes:
    """The ELF bytes of a patch (metadata gets its ``patch_id`` and symbol bindings here)."""
    # Symbol table: null, defined (local), then undefined (global), as ELF requires.
    defined = [i for i, symbol in enumerate(content.symbols) if symbol.section is not None]
    undefined = [i for i, symbol in enumerate(content.symbols) if symbol.section is None]
    order = defined + undefined
    elf_index = {content_index: position + 1 for position, content_index in enumerate(order)}
    metadata = dict(content.metadata)
    metadata["symbols"] = [
        dict(content.symbols[i].binding or {}, index=elf_index[i], name=content.symbols[i].name)
        for i in undefined
    ]
    # Function and data entries name their symbol by content symbol index; the file uses ELF indices.
    for listing in ("functions", "new_functions", "new_data", "hooks", "migrations"):
        for entry in metadata.get(listing, []):  # type: ignore[union-attr]
            for key in ("symbol", "transform_symbol"):
                if entry.get(key, -1) >= 0:
                    entry[key] = elf_index[entry[key]]
    unwind = metadata.get("unwind")
    if unwind:  # the .eh_frame is named by content section number; the file's sections follow the null one
        metadata["unwind"] = dict(unwind, section=int(unwind["section"]) + 1)  # type: ignore[call-overload]
    metadata["format"] = fmt.FORMAT
    metadata["patch_id"] = fmt.PATCH_ID_PLACEHOLDER
    metadata_bytes = json.dumps(metadata, sort_keys=True, indent=1).encode("utf-8") + b"\n"

    shstrtab = _StringTable()
    strtab = _StringTable()
    # Section header table entries: (name, type, flags, data, size, link, info, align, entsize)
    headers: list[list[object]] = [["", 0, 0, b"", 0, 0, 0, 0, 0]]
    section_index: dict[int, int] = {}
    for number, section in enumerate(content.sections):
        section_index[number] = len(headers)
        kind = fmt.SHT_NOBITS if section.nobits else fmt.SHT_PROGBITS
        headers.append([section.name, kind, section.flags, b"" if section.nobits else section.data,
                        section.byte_size, 0, 0, max(section.align, 1), section.entsize])
    symtab_index = len(headers) + sum(1 for section in content.sections if section.relocations)
    for number, section in enumerate(content.sections):
        if not section.relocations:
            continue
        body = b"".join(
            struct.pack("<QQq", rel.offset, (elf_index[rel.symbol] << 32) | rel.type, rel.addend)
            for rel in sorted(section.relocations, key=lambda rel: rel.offset))
        headers.append([".rela" + section.name, fmt.SHT_RELA, fmt.SHF_INFO_LINK, body, len(body),
                        symtab_index, section_index[number], 8, fmt.RELA_SIZE])
    symbols = bytearray(b"\0" * fmt.SYMBOL_SIZE)
    for content_index in order:
        symbol = content.symbols[content_index]
        bind = fmt.STB_LOCAL if symbol.section is not None else fmt.STB_GLOBAL
        shndx = section_index[symbol.section] if symbol.section is not None else fmt.SHN_UNDEF
        symbols += struct.pack("<IBBHQQ", strtab.add(symbol.name), (bind << 4) | symbol.type, 0, shndx,
                               symbol.value, symbol.size)
    strtab_index = symtab_index + 1
    headers.append([".symtab", fmt.SHT_SYMTAB, 0, bytes(symbols), len(symbols), strtab_index,
                    len(defined) + 1, 8, fmt.SYMBOL_SIZE])
    headers.append([".strtab", fmt.SHT_STRTAB, 0, None, 0, 0, 0, 1, 0])
    headers.append([fmt.METADATA_SECTION, fmt.SHT_PROGBITS, 0, metadata_bytes, len(metadata_bytes), 0, 0, 1, 0])
    headers.append([".shstrtab", fmt.SHT_STRTAB, 0, None, 0, 0, 0, 1, 0])
    for header in headers:
        header[0] = shstrtab.add(str(header[0]))  # type: ignore[assignment]
    headers[-3][3] = bytes(strtab.data)
    headers[-3][4] = len(strtab.data)
    headers[-1][3] = bytes(shstrtab.data)
    headers[-1][4] = len(shstrtab.data)

    out = bytearray(64)
    offsets = [0]
    for header in headers[1:]:
        data = header[3] or b""
        offset = _align(len(out), int(header[7]))  # type: ignore[arg-type]
        out += b"\0" * (offset - len(out))
        offsets.append(offset)
        out += data  # type: ignore[operator]
    table_offset = _align(len(out), 8)
    out += b"\0" * (table_offset - len(out))
    for header, offset in zip(headers, offsets):
        name, kind, flags, _data, size, link, info, align, entsize = header
        out += struct.pack("<IIQQQQIIQQ", name, kind, flags, 0, offset if kind else 0, size, link, info,
                           align, entsize)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    struct.pack_into("<16sHHIQQQIHHHHHH", out, 0, ident, fmt.ET_REL, fmt.EM_X86_64, 1, 0, 0, table_offset,
                     0, 64, 0, 0, fmt.SECTION_HEADER_SIZE, len(headers), len(headers) - 1)
    # The patch id is the hash of the file with the id itself zeroed: a reader can
    # check it (tampering, truncation) from the file alone.
    marker = fmt.patch_id_field(fmt.PATCH_ID_PLACEHOLDER)
    position = out.find(marker)
    assert position > 0 and out.count(marker) == 1
    out[position:position + len(marker)] = fmt.patch_id_field(hashlib.sha256(bytes(out)).hexdigest())
    return bytes(out)
