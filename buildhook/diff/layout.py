"""Struct layouts from DWARF: a changed layout makes a patch unsafe.

Old code keeps running next to patched code and both touch the same
objects in memory; if a struct gained a field in the middle, the two
disagree about every offset after it.  Every named struct and union
defined in a changed translation unit is compared by size and by member
(name, offset); any difference is reported with what moved.  This is
conservative: a struct only new code uses is refused too (a transformer
hook may lift that later).
"""

from __future__ import annotations

import io

from elftools.elf.elffile import ELFFile

from buildhook.elf.objfile import ObjectFile

Layout = tuple[int, tuple[tuple[str, int], ...]]

# x86-64 relocation types found in .rela.debug_*: width of the field each writes (S + A).
DEBUG_RELOCATION_WIDTH = {1: 8, 10: 4, 11: 4, 17: 8, 21: 4}  # 64, 32, 32S, DTPOFF64, DTPOFF32


def _debug_relocations_applied(obj: ObjectFile) -> bytes:
    """A copy of the object's file with its .rela.debug_* relocations already applied.

    pyelftools can apply them itself, but one construct parse per relocation
    made this 85 % of a haproxy diff (30 s for 12 objects); the object model
    has them unpacked already.  In an object every section sits at address 0,
    so a relocation writes S + A (PC-relative types never occur in debug
    sections; an unknown type is left alone, as layouts never read it).
    """
    copy = bytearray(obj.data)
    for section in obj.sections:
        if not section.name.startswith(".debug"):
            continue
        for rel in section.relocations:
            width = DEBUG_RELOCATION_WIDTH.get(rel.type)
            if width is None:
                continue
            value = (obj.symbols[rel.symbol].value + rel.addend) & ((1 << (8 * width)) - 1)
            at = section.file_offset + rel.offset
            copy[at:at + width] = value.to_bytes(width, "little")
    return bytes(copy)


def struct_layouts(obj: ObjectFile) -> dict[str, Layout]:
    """``"struct name" → (byte size, ((member, offset), …))`` for complete named structs and unions."""
    elf = ELFFile(io.BytesIO(_debug_relocations_applied(obj)))
    if not elf.has_dwarf_info():
        return {}
    layouts: dict[str, Layout] = {}
    for unit in elf.get_dwarf_info(relocate_dwarf_sections=False).iter_CUs():
        for die in unit.iter_DIEs():
            if die.tag not in ("DW_TAG_structure_type", "DW_TAG_union_type"):
                continue
            if "DW_AT_name" not in die.attributes or "DW_AT_declaration" in die.attributes:
                continue
            size = die.attributes.get("DW_AT_byte_size")
            members = []
            for child in die.iter_children():
                if child.tag != "DW_TAG_member":
                    continue
                name = child.attributes.get("DW_AT_name")
                location = child.attributes.get("DW_AT_data_member_location")
                offset = location.value if location is not None and isinstance(location.value, int) else 0
                members.append((name.value.decode("utf-8", "replace") if name else "<anonymous>", offset))
            kind = "union " if die.tag == "DW_TAG_union_type" else "struct "
            name = kind + die.attributes["DW_AT_name"].value.decode("utf-8", "replace")
            layouts[name] = (size.value if size is not None else 0, tuple(members))
    return layouts


def describe_change(old: Layout, new: Layout) -> str:
    """What moved, in a few words: added, removed and shifted members, size."""
    old_members = dict(old[1])
    new_members = dict(new[1])
    notes = [f"{name} added at offset {offset}" for name, offset in new[1] if name not in old_members]
    notes += [f"{name} removed" for name, _ in old[1] if name not in new_members]
    notes += [f"{name} moved {old_members[name]}→{offset}" for name, offset in new[1]
              if name in old_members and old_members[name] != offset]
    if old[0] != new[0]:
        notes.append(f"size {old[0]}→{new[0]}")
    return "; ".join(notes) or "member order changed"


def struct_layout_changes(old: ObjectFile, new: ObjectFile) -> list[tuple[str, str]]:
    """(struct name, description) for every struct defined in both with a different layout."""
    old_layouts = struct_layouts(old)
    new_layouts = struct_layouts(new)
    return [(name, describe_change(old_layouts[name], new_layouts[name]))
            for name in sorted(old_layouts.keys() & new_layouts.keys())
            if old_layouts[name] != new_layouts[name]]
