"""Functions and variables of one object, and what their relocations point at.

A *function body* is everything that must travel together: the bytes at its
entry symbol, its ``.cold`` part (gcc moves unlikely paths to
``.text.unlikely.<fn>`` as ``<fn>.cold``), and its jump tables (with
``-ffunction-sections``, ``.rodata.<fn>`` holding PC32 entries into the
function).  What each relocation of a body means is worked out in
``targets.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from buildhook.diff.targets import Target, resolve
from buildhook.elf.objfile import ObjectFile, Relocation, Section, Symbol

COLD_SUFFIX = re.compile(r"^(?P<parent>.+)\.cold(?:\.\d+)?$")
STATIC_LOCAL = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*)\.(?P<number>\d+)$")


@dataclass
class BodyPart:
    """A byte range of one section that belongs to a function."""

    section: Section
    start: int
    end: int
    role: str  # "entry", "cold", "jump-table"

    @property
    def data(self) -> bytes:
        return self.section.data[self.start:self.end]

    @property
    def relocations(self) -> list[Relocation]:
        return [rel for rel in self.section.relocations if self.start <= rel.offset < self.end]


@dataclass
class FunctionBody:
    """A function and the parts that travel with it."""

    symbol: Symbol
    parts: list[BodyPart] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.symbol.name

    @property
    def entry(self) -> BodyPart:
        return self.parts[0]

    def owns(self, section_index: int) -> bool:
        return any(part.section.index == section_index for part in self.parts)


def function_bodies(obj: ObjectFile) -> dict[str, FunctionBody]:
    """Every function of the object with its cold part and jump tables, by name."""
    bodies: dict[str, FunctionBody] = {}
    cold: list[Symbol] = []
    for symbol in obj.functions():
        assert isinstance(symbol.section, int)
        if COLD_SUFFIX.match(symbol.name):
            cold.append(symbol)
            continue
        section = obj.sections[symbol.section]
        end = symbol.value + symbol.size if symbol.size else section.size
        bodies[symbol.name] = FunctionBody(symbol, [BodyPart(section, symbol.value, end, "entry")])
    for symbol in cold:
        match = COLD_SUFFIX.match(symbol.name)
        assert match is not None and isinstance(symbol.section, int)
        parent = bodies.get(match["parent"])
        section = obj.sections[symbol.section]
        part = BodyPart(section, symbol.value, symbol.value + (symbol.size or section.size), "cold")
        if parent is not None:
            parent.parts.append(part)
        else:  # an orphan cold part: keep it as its own body
            bodies[symbol.name] = FunctionBody(symbol, [part])
    for body in bodies.values():
        table = obj.section_named(f".rodata.{body.name}")
        if table is not None and not table.is_strings and not any(
                symbol.type == "STT_OBJECT" for symbol in obj.section_symbols(table.index)):
            body.parts.append(BodyPart(table, 0, table.size, "jump-table"))
    return bodies


def data_symbols(obj: ObjectFile) -> dict[str, Symbol]:
    """Every variable (not strings or constant pools), by name."""
    return {symbol.name: symbol for symbol in obj.data_objects()}


def referenced_targets(obj: ObjectFile, body: FunctionBody) -> list[tuple[BodyPart, Relocation, Target]]:
    """Every relocation of a body with its meaning."""
    return [(part, rel, resolve(obj, rel)) for part in body.parts for rel in part.relocations]
