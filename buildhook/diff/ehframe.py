"""The unwind tables of an object's code: ``.eh_frame`` records, as the patch carries them.

An exception thrown in, caught in or unwinding through patch code needs the
unwinder to find a frame description (FDE) for every patch address on the
stack, and, where the code catches or cleans up, the personality routine
and the language-specific data (``.gcc_except_table``) its FDE points at.
The patch therefore carries, for each code range it copies, the FDEs that
describe it and the CIEs they share, as one ``.eh_frame`` section ending in
a zero terminator; the applier registers it in the target's unwinder.

Only the framing is read here: each record's length and CIE pointer, and
whether a CIE names a personality routine (augmentation ``P``).  The bytes
are copied as they are; what moves (an FDE's CIE pointer) is rewritten, and
what points elsewhere (``pc_begin``, the LSDA, the personality) stays a
relocation that the patch rebinds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from buildhook.elf.objfile import ObjectFile, Relocation, Section

TERMINATOR = b"\0\0\0\0"


class EhFrameError(Exception):
    """An ``.eh_frame`` this module cannot follow (64-bit lengths, a CIE pointer to no CIE)."""


@dataclass
class FrameRecord:
    """One CIE or FDE: where it is in the object's ``.eh_frame`` and the relocations inside it."""

    offset: int
    data: bytes
    cie: int | None  # an FDE's CIE (its offset); None for a CIE
    relocations: list[Relocation] = field(default_factory=list)  # as in the section (offsets in it)

    @property
    def has_personality(self) -> bool:
        """A CIE whose augmentation string names a personality routine (C++ ``catch`` and cleanups)."""
        if self.cie is not None:
            return False
        augmentation = self.data[9:self.data.index(b"\0", 9)]
        return augmentation.startswith(b"z") and b"P" in augmentation

    def pc_begin(self) -> Relocation | None:
        """An FDE's first field after the CIE pointer: the start of the code it describes."""
        return next((rel for rel in self.relocations if rel.offset == self.offset + 8), None)


def frame_records(obj: ObjectFile) -> tuple[Section | None, list[FrameRecord]]:
    """The object's ``.eh_frame`` section and its records, in order."""
    section = obj.section_named(".eh_frame")
    if section is None or section.type == "SHT_NOBITS":
        return None, []
    records: list[FrameRecord] = []
    offset = 0
    while offset + 4 <= len(section.data):
        (length,) = struct.unpack_from("<I", section.data, offset)
        if length == 0:
            break
        if length == 0xFFFFFFFF:
            raise EhFrameError(f"{obj.name}: .eh_frame+{offset:#x} has a 64-bit length")
        (pointer,) = struct.unpack_from("<I", section.data, offset + 4)
        end = offset + 4 + length
        record = FrameRecord(offset, section.data[offset:end], None if pointer == 0 else offset + 4 - pointer)
        records.append(record)
        offset = end
    starts = {record.offset: record for record in records}
    for rel in section.relocations:
        holder = _record_at(records, rel.offset)
        if holder is not None:
            holder.relocations.append(rel)
    for record in records:
        if record.cie is not None and record.cie not in starts:
            raise EhFrameError(f"{obj.name}: the FDE at .eh_frame+{record.offset:#x} points at no CIE")
    return section, records


def _record_at(records: list[FrameRecord], offset: int) -> FrameRecord | None:
    for record in records:
        if record.offset <= offset < record.offset + len(record.data):
            return record
    return None


def with_cie_pointer(fde: bytes, field_offset: int, cie_offset: int) -> bytes:
    """An FDE's bytes with its CIE pointer set for its new place (the distance back from the field)."""
    return fde[:4] + struct.pack("<I", field_offset - cie_offset) + fde[8:]
