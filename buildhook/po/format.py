"""The ``.po`` patch object format: constants shared by writer, reader and applier.

A ``.po`` is an ELF64 x86-64 relocatable object (ET_REL).  Besides code and
data sections with their ``.rela`` sections, ``.symtab`` and ``.strtab``, it
has one non-allocated section, ``.buildhook.patch``, holding UTF-8 JSON
metadata (docs/po-format.md).  Undefined symbols are bound by that metadata:
to an address in the base binary, to a library symbol by name, or to an
offset in the executable's TLS block.

This module (like the reader) needs only the standard library, because the
runtime applier ships without the build side.
"""

from __future__ import annotations

FORMAT = "buildhook-po/1"
METADATA_SECTION = ".buildhook.patch"
# The id written into the metadata before hashing: the patch id is the SHA-256
# of the file with its id replaced by this placeholder.
PATCH_ID_PLACEHOLDER = "0" * 64


def patch_id_field(patch_id: str) -> bytes:
    """The bytes of the metadata's id field as the writer lays it out (indented JSON)."""
    return f'"patch_id": "{patch_id}"'.encode()

# How an undefined symbol of a .po gets its value (metadata "symbols[].bind").
BIND_BASE = "base"        # base binary address (add the load bias)
BIND_DYNAMIC = "dynamic"  # a library's exported symbol, looked up in the process
BIND_TLS = "tls"          # offset in the executable's TLS block (variant II: relative to its start)

# ELF constants used by the writer and reader.
ET_REL = 1
EM_X86_64 = 62
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_MERGE = 0x10
SHF_STRINGS = 0x20
SHF_INFO_LINK = 0x40
SHF_TLS = 0x400
STB_LOCAL = 0
STB_GLOBAL = 1
STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3
STT_TLS = 6
SHN_UNDEF = 0
# Relocation types a .po may contain (docs/po-format.md): 64, PC32, PLT32, GOTPCREL,
# 32, 32S, GOTTPOFF, TPOFF32, PC64, GOTPCRELX, REX_GOTPCRELX.  The diff refuses
# others; readers refuse files with others; the applier has a recipe for each.
SUPPORTED_RELOCATIONS = frozenset({1, 2, 4, 9, 10, 11, 22, 23, 24, 41, 42})
SYMBOL_SIZE = 24
RELA_SIZE = 24
SECTION_HEADER_SIZE = 64


def default_patch_path(binary: str, from_tag: str) -> str:
    """``<binary>.from-<TAG>.po`` next to the binary: the name says which release it patches."""
    return f"{binary}.from-{from_tag}.po"
