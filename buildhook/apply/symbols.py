"""Resolving a patch's library symbols (``bind: dynamic``) inside the target.

* A symbol the base binary already imports is read from the target's own
  GOT: the dynamic linker resolved it there (IFUNCs included), exactly as
  the old code sees it.  A lazily bound slot still holds the PLT stub, which
  is just as callable.
* A symbol the base never imported (a new libc call) is looked up in the
  ``.dynsym`` of the libraries mapped in the process, default version
  first, in load order.  An IFUNC found that way needs its resolver run in
  the target: the caller is told, and the applier runs it there.
"""

from __future__ import annotations

from dataclasses import dataclass

from buildhook.apply.process import MappedObject
from buildhook.elf.dynsym import (
    R_X86_64_GLOB_DAT,
    R_X86_64_JUMP_SLOT,
    DynamicExport,
    dynamic_exports,
    dynamic_relocations,
)


class SymbolError(Exception):
    """A library symbol the patch needs is not in the process."""


@dataclass(frozen=True)
class LibrarySymbol:
    """Where a symbol lives in the process; ``ifunc`` when its resolver must run first."""

    address: int
    ifunc: bool
    library: str


def _got_slots(item: MappedObject) -> dict[str, int]:
    """Symbol name → link-time address of its GOT slot (JUMP_SLOT / GLOB_DAT; the first one of a name)."""
    slots: dict[str, int] = {}
    for relocation in dynamic_relocations(item.file_bytes):
        if relocation.kind in (R_X86_64_JUMP_SLOT, R_X86_64_GLOB_DAT) and relocation.symbol:
            slots.setdefault(relocation.symbol, relocation.offset)
    return slots


class SymbolResolver:
    """Looks symbols up in one process; GOT values are read through *read_word*."""

    def __init__(self, target: MappedObject, libraries: list[MappedObject], read_word) -> None:  # type: ignore[no-untyped-def]
        self.target = target
        self.libraries = [item for item in libraries if item is not target]
        self._read_word = read_word
        self._slots = _got_slots(target)
        self._exports: dict[str, dict[str, DynamicExport]] = {}

    def resolve(self, name: str) -> LibrarySymbol:
        slot = self._slots.get(name)
        if slot is not None:
            value = self._read_word(self.target.bias + slot)
            if value:
                return LibrarySymbol(value, False, self.target.path + " (GOT)")
        for library in self.libraries:
            exports = self._exports.setdefault(library.path, dynamic_exports(library.file_bytes))
            found = exports.get(name)
            if found is not None and found.kind != "tls":
                return LibrarySymbol(library.bias + found.value, found.ifunc, library.path)
        raise SymbolError(f"the patch calls {name}, which no library loaded in the process exports")
