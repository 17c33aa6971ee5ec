"""Type layouts from DWARF: a changed layout or enum makes a patch unsafe.

Old code keeps running next to patched code and both touch the same
objects in memory; if a struct gained a field in the middle, the two
disagree about every offset after it; if a member changed type at the same
offset (``int`` → ``float``), they disagree about its bits; if an enum's
constants were renumbered, a value stored by the old code means another
constant to the new.  Every struct and union defined in a changed
translation unit, named by its tag or, when it has none, by the typedef
that names it, is compared by size and by member (name, offset, type,
bit-field position); every enum by its constants' values (constants added
after the old ones are fine).  This is conservative: a type only new code
uses is refused too (a transformer hook may lift that later).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile

from buildhook.diff import model
from buildhook.elf.objfile import RELA_ENTRY, ObjectFile

Member = tuple[str, int, str]                   # name, offset (bits when a bit-field), type signature
Layout = tuple[int, tuple[Member, ...]]          # byte size, members
Enumerators = tuple[int, tuple[tuple[str, int], ...]]  # byte size, (constant, value)

# x86-64 relocation types found in .rela.debug_*: width of the field each writes (S + A).
DEBUG_RELOCATION_WIDTH = {1: 8, 10: 4, 11: 4, 17: 8, 21: 4}  # 64, 32, 32S, DTPOFF64, DTPOFF32
RECORD_TAGS = {"DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union", "DW_TAG_class_type": "class"}
QUALIFIERS = {"DW_TAG_const_type": "const", "DW_TAG_volatile_type": "volatile", "DW_TAG_restrict_type": "restrict",
              "DW_TAG_atomic_type": "_Atomic"}
MAX_DEPTH = 6
SCOPES = frozenset({"DW_TAG_namespace", "DW_TAG_compile_unit", "DW_TAG_partial_unit"})
VIRTUAL = "virtual "  # the name of a virtual function's pseudo-member (its offset is its vtable slot)


def _debug_relocations_applied(obj: ObjectFile) -> bytes:
    """A copy of the object's file with its .rela.debug_* relocations already applied.

    pyelftools can apply them itself, but one construct parse per relocation
    made this 85 % of a haproxy diff (30 s for 12 objects); they are unpacked
    here in bulk, from the packed entries the object model keeps for sections
    that are not loaded.  In an object every section sits at address 0,
    so a relocation writes S + A (PC-relative types never occur in debug
    sections; an unknown type is left alone, as layouts never read it).
    """
    copy = bytearray(obj.data)
    for section in obj.sections:
        if not section.name.startswith(".debug"):
            continue
        symbols = obj.symbols
        for offset, info, addend in RELA_ENTRY.iter_unpack(section.raw_relocations):
            width = DEBUG_RELOCATION_WIDTH.get(info & 0xFFFFFFFF)
            if width is None:
                continue
            value = (symbols[info >> 32].value + addend) & ((1 << (8 * width)) - 1)
            at = section.file_offset + offset
            copy[at:at + width] = value.to_bytes(width, "little")
    return bytes(copy)


def _name(die: DIE) -> str | None:
    attribute = die.attributes.get("DW_AT_name")
    return attribute.value.decode("utf-8", "replace") if attribute is not None else None


def _int(die: DIE, attribute: str, default: int = 0) -> int:
    value = die.attributes.get(attribute)
    return value.value if value is not None and isinstance(value.value, int) else default


def _type_of(die: DIE) -> DIE | None:
    return die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None


def type_signature(die: DIE | None, depth: int = 0) -> str:
    """A type in a few characters, as far as its layout goes: what a member's bits mean.

    Named records are named (their own layout is compared on its own);
    typedefs are looked through; anonymous records and enums are spelled out.
    """
    if die is None:
        return "void"
    if depth > MAX_DEPTH:
        return "…"
    tag = die.tag
    if tag == "DW_TAG_base_type":
        return f"{_name(die)}:{_int(die, 'DW_AT_byte_size')}:{_int(die, 'DW_AT_encoding')}"
    if tag == "DW_TAG_pointer_type" or tag == "DW_TAG_reference_type":
        return "*" + type_signature(_type_of(die), depth + 1)
    if tag in QUALIFIERS:
        return QUALIFIERS[tag] + " " + type_signature(_type_of(die), depth + 1)
    if tag == "DW_TAG_typedef":
        return type_signature(_type_of(die), depth + 1)
    if tag in RECORD_TAGS:
        name = _name(die)
        if name is not None:
            return f"{RECORD_TAGS[tag]} {name}"
        size, members = record_layout(die, depth + 1)
        return f"{RECORD_TAGS[tag]} {{{size}: " + "; ".join(f"{m} {o} {t}" for m, o, t in members) + "}"
    if tag == "DW_TAG_enumeration_type":
        name = _name(die)
        if name is not None:
            return f"enum {name}"
        size, values = enum_values(die)
        return f"enum {{{size}: " + ", ".join(f"{n}={v}" for n, v in values) + "}"
    if tag == "DW_TAG_array_type":
        bounds = [str(_int(child, "DW_AT_upper_bound", -1) + 1 if "DW_AT_upper_bound" in child.attributes
                      else _int(child, "DW_AT_count", 0))
                  for child in die.iter_children() if child.tag == "DW_TAG_subrange_type"]
        return type_signature(_type_of(die), depth + 1) + "".join(f"[{bound}]" for bound in bounds)
    if tag == "DW_TAG_subroutine_type":
        parameters = [type_signature(_type_of(child), depth + 1) for child in die.iter_children()
                      if child.tag == "DW_TAG_formal_parameter"]
        return f"fn({', '.join(parameters)}) -> {type_signature(_type_of(die), depth + 1)}"
    return tag.removeprefix("DW_TAG_")


def record_layout(die: DIE, depth: int = 0) -> Layout:
    """Byte size and members (name, offset or bit position, type) of a struct or union."""
    members: list[Member] = []
    for child in die.iter_children():
        if child.tag != "DW_TAG_member":
            continue
        offset = _int(child, "DW_AT_data_member_location")
        if "DW_AT_bit_size" in child.attributes:
            bit = _int(child, "DW_AT_data_bit_offset", offset * 8)
            offset = bit * 1000 + _int(child, "DW_AT_bit_size")  # a bit-field: position and width
        members.append((_name(child) or "<anonymous>", offset, type_signature(_type_of(child), depth)))
    members += _bases_and_virtuals(die, depth)
    return _int(die, "DW_AT_byte_size"), tuple(members)


def _bases_and_virtuals(die: DIE, depth: int) -> list[Member]:
    """A C++ class's base classes (at their offsets) and virtual functions (at their vtable slots).

    Objects built by the old code keep the old vtable pointer: a virtual
    function added, removed or moved to another slot makes old and new code
    disagree about every call through it, a layout change like a moved field.
    """
    found: list[Member] = []
    for child in die.iter_children():
        if child.tag == "DW_TAG_inheritance":
            found.append((f"base {type_signature(_type_of(child), depth)}",
                          _int(child, "DW_AT_data_member_location"), "base class"))
        elif child.tag == "DW_TAG_subprogram" and "DW_AT_vtable_elem_location" in child.attributes:
            slot = _vtable_slot(child.attributes["DW_AT_vtable_elem_location"].value)
            name = _name(child) or "?"
            linkage = child.attributes.get("DW_AT_linkage_name")
            signature = linkage.value.decode("utf-8", "replace") if linkage is not None else name
            found.append((f"{VIRTUAL}{name}", slot, signature))
    return found


def _vtable_slot(location: object) -> int:
    """DW_AT_vtable_elem_location: ``DW_OP_constu N`` (an expression), or a plain constant."""
    if isinstance(location, int):
        return location
    expression = list(location) if isinstance(location, (list, bytes)) else []
    if expression and expression[0] == 0x10:  # DW_OP_constu, then ULEB128
        value, shift = 0, 0
        for byte in expression[1:]:
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return value
    return -1


def enum_values(die: DIE) -> Enumerators:
    values = tuple((_name(child) or "?", _int(child, "DW_AT_const_value"))
                   for child in die.iter_children() if child.tag == "DW_TAG_enumerator")
    return _int(die, "DW_AT_byte_size"), values


def _scope_dies(top: DIE) -> Iterator[DIE]:
    """The DIEs of a unit's file scope, of its namespaces and of its records (nested types), not of its
    functions: those subtrees (parameters, variables, lexical blocks, inlined calls) are most of a C++
    object's DWARF, and are skipped unparsed by their DW_AT_sibling.  A type defined inside a function
    body is local to it: code elsewhere cannot name it."""
    stack = [top]
    while stack:
        for child in stack.pop().iter_children():
            yield child
            if child.has_children and (child.tag in SCOPES or child.tag in RECORD_TAGS):
                stack.append(child)


def type_layouts(obj: ObjectFile) -> tuple[dict[str, Layout], dict[str, Enumerators]]:
    """Records and enums defined in an object: ``"struct tag"``/``"typedef name"`` → layout, ``"enum tag"`` → values."""
    elf = ELFFile(io.BytesIO(_debug_relocations_applied(obj)))
    records: dict[str, Layout] = {}
    enums: dict[str, Enumerators] = {}
    if not elf.has_dwarf_info():
        return records, enums
    for unit in elf.get_dwarf_info(relocate_dwarf_sections=False).iter_CUs():
        for die in _scope_dies(unit.get_top_DIE()):
            if "DW_AT_declaration" in die.attributes:
                continue
            if die.tag in RECORD_TAGS and _name(die) is not None:
                records[f"{RECORD_TAGS[die.tag]} {_name(die)}"] = record_layout(die)
            elif die.tag == "DW_TAG_enumeration_type" and _name(die) is not None:
                enums[f"enum {_name(die)}"] = enum_values(die)
            elif die.tag == "DW_TAG_typedef" and _name(die) is not None:
                target = _type_of(die)
                if target is None or _name(target) is not None or "DW_AT_declaration" in target.attributes:
                    continue
                if target.tag in RECORD_TAGS:
                    records[f"typedef {_name(die)}"] = record_layout(target)
                elif target.tag == "DW_TAG_enumeration_type":
                    enums[f"typedef {_name(die)}"] = enum_values(target)
    return records, enums


def describe_change(old: Layout, new: Layout) -> str:
    """What moved, in a few words: added, removed, shifted and retyped members, size."""
    old_members = {name: (offset, kind) for name, offset, kind in old[1]}
    new_members = {name: (offset, kind) for name, offset, kind in new[1]}
    notes = [f"{name} added {_place(name)} {offset}" for name, offset, _ in new[1] if name not in old_members]
    notes += [f"{name} removed" for name, _, _ in old[1] if name not in new_members]
    notes += [f"{name} moved {_place(name)} {old_members[name][0]}→{offset}" for name, offset, _ in new[1]
              if name in old_members and old_members[name][0] != offset]
    notes += [f"{name} changed type {old_members[name][1]} → {kind}" for name, offset, kind in new[1]
              if name in old_members and old_members[name][0] == offset and old_members[name][1] != kind]
    if old[0] != new[0]:
        notes.append(f"size {old[0]}→{new[0]}")
    return "; ".join(notes) or "member order changed"


def _place(member: str) -> str:
    return "in vtable slot" if member.startswith(VIRTUAL) else "at offset"


def describe_enum_change(old: Enumerators, new: Enumerators) -> str | None:
    """How an enum's existing constants changed (None: they did not; new ones after them are fine)."""
    new_values = dict(new[1])
    notes = [f"{name} {value}→{new_values[name]}" for name, value in old[1]
             if name in new_values and new_values[name] != value]
    notes += [f"{name} removed" for name, _ in old[1] if name not in new_values]
    if old[0] != new[0]:
        notes.append(f"size {old[0]}→{new[0]}")
    return "; ".join(notes) or None


Layouts = tuple[dict[str, Layout], dict[str, Enumerators]]
CACHE_FORMAT = "type-layouts-2"  # bump when what type_layouts computes changes


def cached_type_layouts(cache_dir: str | None, sha256: str, obj: ObjectFile) -> Layouts:
    """type_layouts of an object, kept under *cache_dir* by its content hash: reading a big C++ object's
    DWARF takes seconds, and every later diff of the release (and the next release's) reads it again."""
    if cache_dir is None:
        return type_layouts(obj)
    path = os.path.join(cache_dir, CACHE_FORMAT, sha256[:2], sha256 + ".json")
    try:
        with open(path, encoding="utf-8") as stream:
            saved = json.load(stream)
        return ({name: (size, tuple(tuple(member) for member in members))  # type: ignore[misc]
                 for name, (size, members) in saved["records"].items()},
                {name: (size, tuple(tuple(value) for value in values))  # type: ignore[misc]
                 for name, (size, values) in saved["enums"].items()})
    except (OSError, ValueError, KeyError, TypeError):
        pass
    layouts = type_layouts(obj)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump({"records": layouts[0], "enums": layouts[1]}, stream)
    os.replace(temporary, path)  # atomic: a concurrent diff reads the whole file or none
    return layouts


def type_changes(old: Layouts, new: Layouts) -> list[tuple[str, str, str]]:
    """(type name, rule, description) for every type defined in both objects whose layout or values changed."""
    old_records, old_enums = old
    new_records, new_enums = new
    changes = [(name, model.STRUCT_LAYOUT_CHANGED, describe_change(old_records[name], new_records[name]))
               for name in sorted(old_records.keys() & new_records.keys()) if old_records[name] != new_records[name]]
    for name in sorted(old_enums.keys() & new_enums.keys()):
        description = describe_enum_change(old_enums[name], new_enums[name])
        if description is not None:
            changes.append((name, model.ENUM_VALUES_CHANGED, description))
    return changes


# -- users of a type (BUILDHOOK_LAYOUT_CHANGE) ------------------------------------------

FUNCTION_SCOPED = frozenset({"DW_TAG_formal_parameter", "DW_TAG_variable"})
LOOKED_THROUGH = frozenset({"DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type",
                            "DW_TAG_typedef", "DW_TAG_array_type", *QUALIFIERS})


def _names_type(die: DIE | None, wanted: frozenset[str]) -> str | None:
    """The wanted record or typedef name *die* reaches through pointers, typedefs, qualifiers, arrays."""
    for _depth in range(MAX_DEPTH * 2):
        if die is None:
            return None
        if die.tag in RECORD_TAGS and _name(die) is not None:
            name = f"{RECORD_TAGS[die.tag]} {_name(die)}"
            return name if name in wanted else None
        if die.tag == "DW_TAG_typedef" and f"typedef {_name(die)}" in wanted:
            return f"typedef {_name(die)}"
        if die.tag not in LOOKED_THROUGH:
            return None
        die = _type_of(die)
    return None


def _origin(die: DIE) -> DIE:
    """The DIE that names a concrete or inlined instance: its abstract origin or specification."""
    for _depth in range(4):
        for attribute in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if attribute in die.attributes:
                die = die.get_DIE_from_attribute(attribute)
                break
        else:
            return die
    return die


def _function_name(die: DIE) -> str | None:
    origin = _origin(die)
    for attribute in ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name", "DW_AT_name"):
        value = origin.attributes.get(attribute) or die.attributes.get(attribute)
        if value is not None:
            return value.value.decode("utf-8", "replace")
    return None


def _uses(function: DIE, wanted: frozenset[str]) -> set[str]:
    """The wanted types a function's parameters, variables and return value (its inlined callees' too) reach."""
    found = set()
    origin = _origin(function)
    returned = _names_type(_type_of(origin), wanted)
    if returned:
        found.add(returned)
    stack = [function]
    while stack:
        for child in stack.pop().iter_children():
            if child.tag in FUNCTION_SCOPED:
                named = _names_type(_type_of(_origin(child)), wanted)
                if named:
                    found.add(named)
            if child.has_children:
                stack.append(child)
    return found


def functions_using(obj: ObjectFile, wanted: set[str]) -> dict[str, set[str]]:
    """Type name → names (linkage names for C++) of the object's functions with code that holds or
    reaches an instance of it: a parameter, variable or return value of that type or a pointer to it."""
    users: dict[str, set[str]] = {}
    if not wanted:
        return users
    names = frozenset(wanted)
    elf = ELFFile(io.BytesIO(_debug_relocations_applied(obj)))
    if not elf.has_dwarf_info():
        return users
    for unit in elf.get_dwarf_info(relocate_dwarf_sections=False).iter_CUs():
        for die in _scope_dies(unit.get_top_DIE()):
            if die.tag != "DW_TAG_subprogram" or "DW_AT_declaration" in die.attributes \
                    or not ({"DW_AT_low_pc", "DW_AT_ranges"} & die.attributes.keys()):
                continue  # an abstract or declared function has no code of its own
            name = _function_name(die)
            if name is None:
                continue
            for type_name in _uses(die, names):
                users.setdefault(type_name, set()).add(name)
    return users
