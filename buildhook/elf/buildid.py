"""The GNU build-id of an ELF file, read straight from its notes.

The build-id is how a patch names the exact binary it was made for; reading
it must be cheap (every link, every apply) and need nothing beyond the
standard library, so this walks the program headers (or, for objects without
them, the section headers) by hand.
"""

from __future__ import annotations

import struct

ELF_MAGIC = b"\x7fELF"
PT_NOTE = 4
SHT_NOTE = 7
NT_GNU_BUILD_ID = 3


class NotAnELFFile(Exception):
    """The file is not an ELF file this reader understands."""


def _note_build_id(data: bytes, offset: int, size: int, endian: str) -> bytes | None:
    end = min(offset + size, len(data))
    while offset + 12 <= end:
        namesz, descsz, note_type = struct.unpack_from(endian + "III", data, offset)
        name_start = offset + 12
        desc_start = name_start + ((namesz + 3) & ~3)
        name = data[name_start:name_start + namesz]
        if note_type == NT_GNU_BUILD_ID and name == b"GNU\x00":
            return data[desc_start:desc_start + descsz]
        offset = desc_start + ((descsz + 3) & ~3)
    return None


def build_id_of_bytes(data: bytes) -> str | None:
    """Hex build-id of the ELF image *data*, or None when it has none."""
    if data[:4] != ELF_MAGIC or len(data) < 64:
        raise NotAnELFFile("not an ELF file")
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        phoff, shoff = struct.unpack_from(endian + "QQ", data, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(endian + "HHHH", data, 0x36)
    else:
        phoff, shoff = struct.unpack_from(endian + "II", data, 0x1C)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(endian + "HHHH", data, 0x2A)
    for index in range(phnum):
        base = phoff + index * phentsize
        if is64:
            p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(endian + "IIQQQQ", data, base)
        else:
            p_type, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(endian + "IIIII", data, base)
        if p_type == PT_NOTE:
            found = _note_build_id(data, p_offset, p_filesz, endian)
            if found is not None:
                return found.hex()
    for index in range(shnum):
        base = shoff + index * shentsize
        if is64:
            _name, sh_type, _flags, _addr, sh_offset, sh_size = struct.unpack_from(endian + "IIQQQQ", data, base)
        else:
            _name, sh_type, _flags, _addr, sh_offset, sh_size = struct.unpack_from(endian + "IIIIII", data, base)
        if sh_type == SHT_NOTE:
            found = _note_build_id(data, sh_offset, sh_size, endian)
            if found is not None:
                return found.hex()
    return None


def build_id_of_file(path: str) -> str | None:
    """Hex build-id of the ELF file at *path*, or None when it has none."""
    with open(path, "rb") as handle:
        return build_id_of_bytes(handle.read())
