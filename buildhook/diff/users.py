"""Who uses a variable in an object: the functions and data that refer to it.

A variable can move to new storage (a migration, docs/data-changes.md)
only if nothing of the running program keeps using the old one: every
function that refers to it is replaced by the patch, and no initialised
data holds its address.  Debug information and buildhook's own marker
sections refer to it too, and do not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from buildhook.diff.bodies import FunctionBody
from buildhook.diff.markers import MARKER_PREFIX
from buildhook.diff.targets import resolve
from buildhook.elf.objfile import ObjectFile, Relocation

SHF_ALLOC = 0x2


@dataclass
class Users:
    functions: set[str] = field(default_factory=set)  # names of the object's functions that refer to it
    data: set[str] = field(default_factory=set)       # sections (and the variable there) whose contents point at it


def _owner(bodies: dict[str, FunctionBody], rel: Relocation) -> str | None:
    for body in bodies.values():
        for part in body.parts:
            if part.section.index == rel.section and part.start <= rel.offset < part.end:
                return body.name
    return None


def users_of(obj: ObjectFile, bodies: dict[str, FunctionBody], name: str, local_index: int | None) -> Users:
    """Users of the variable *name* in *obj*: its own symbol *local_index* there (a static, or a global
    it defines), or, with None, the undefined global *name* it imports."""
    found = Users()
    for section in obj.sections:
        if not section.flags & SHF_ALLOC or section.name.startswith(MARKER_PREFIX):
            continue
        for rel in section.relocations:
            target = resolve(obj, rel)
            if local_index is None:
                if target.kind != "external" or target.name != name:
                    continue
            elif target.symbol is None or target.symbol.index != local_index:
                continue
            owner = _owner(bodies, rel) if section.is_code else None
            if owner is not None:
                found.functions.add(owner)
            else:
                holder = obj.symbol_covering(section.index, rel.offset)
                found.data.add(f"{holder.name if holder else section.name}")
    return found
