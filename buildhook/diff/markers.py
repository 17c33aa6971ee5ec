"""What a patch author asked for with ``buildhook.h``: hooks, transforms, layout changes.

The header's macros leave a few bytes in named sections of the object
(the format is written down in buildhook/include/buildhook.h):

* ``.buildhook.pre_apply`` … ``.buildhook.post_revert``: 8-byte pointers to
  hook functions, one relocation each;
* ``.buildhook.transform``: pairs of pointers, the variable and its
  transform function;
* ``.buildhook.layout_change``: NUL-terminated tags (``"struct conn"``).

Only the new build's objects are read: what the base release asked for
was done when it was applied, or never needed (it was started fresh).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from buildhook.diff.targets import Target, resolve
from buildhook.elf.objfile import ObjectFile, Symbol

HOOK_KINDS = ("pre_apply", "post_apply", "pre_revert", "post_revert")
MARKER_PREFIX = ".buildhook."
POINTER = 8


class MarkerError(Exception):
    """A marker section the header did not write (hand-made, or another version's)."""


@dataclass
class Markers:
    """One object's requests."""

    hooks: list[tuple[str, Symbol]] = field(default_factory=list)  # (kind, function), in section order
    # variable name → (defined here: a static or global of this object, or False: another object's global;
    # the transform function)
    transforms: dict[str, tuple[bool, Symbol]] = field(default_factory=dict)
    layout_changes: list[str] = field(default_factory=list)        # "struct conn"

    def __bool__(self) -> bool:
        return bool(self.hooks or self.transforms or self.layout_changes)


def _pointers(obj: ObjectFile, section_index: int) -> dict[int, Target]:
    """The section's 8-byte pointers by offset, each resolved to what it points at."""
    section = obj.sections[section_index]
    targets = {}
    for rel in section.relocations:
        if rel.offset % POINTER:
            raise MarkerError(f"{obj.name}: {section.name} has a pointer at an unaligned offset {rel.offset}")
        targets[rel.offset] = resolve(obj, rel)
    return targets


def _symbol(obj: ObjectFile, target: Target, section: str, wanted: str) -> Symbol:
    if target.kind != "symbol" or target.symbol is None or target.offset != 0:
        raise MarkerError(f"{obj.name}: {section} points at something that is not a {wanted} defined in "
                          f"this object ({target.kind} {target.name or ''}); define it in the file that "
                          "has the marker")
    return target.symbol


def read_markers(obj: ObjectFile) -> Markers:
    """Every hook, transform and layout change the object's marker sections hold."""
    markers = Markers()
    for section in obj.sections:
        if not section.name.startswith(MARKER_PREFIX):
            continue
        kind = section.name[len(MARKER_PREFIX):]
        if kind in HOOK_KINDS:
            for _offset, target in sorted(_pointers(obj, section.index).items()):
                markers.hooks.append((kind, _symbol(obj, target, section.name, "function")))
        elif kind == "transform":
            pointers = _pointers(obj, section.index)
            for offset in range(0, section.size, 2 * POINTER):
                if offset not in pointers or offset + POINTER not in pointers:
                    raise MarkerError(f"{obj.name}: {section.name}+{offset} is not a (variable, function) pair")
                variable = pointers[offset]
                function = _symbol(obj, pointers[offset + POINTER], section.name, "function")
                if variable.kind == "external" and variable.offset == 0:
                    name, here = variable.name, False  # a migration file next to the fix: extern int table[];
                else:
                    name, here = _symbol(obj, variable, section.name, "variable").name, True
                if name in markers.transforms:
                    raise MarkerError(f"{obj.name}: two BUILDHOOK_TRANSFORMs for {name}")
                markers.transforms[name] = (here, function)
        elif kind == "layout_change":
            markers.layout_changes += [tag.decode("utf-8", "replace") for tag in section.data.split(b"\0") if tag]
    return markers
