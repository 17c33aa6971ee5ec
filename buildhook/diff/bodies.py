"""Functions and variables of one object, and what their relocations point at.

A *function body* is everything that must travel together: the bytes at its
entry symbol, its ``.cold`` part (gcc moves unlikely paths to
``.text.unlikely.<fn>`` as ``<fn>.cold``), and its jump tables (with
``-ffunction-sections``, ``.rodata.<fn>`` holding PC32 entries into the
function).  A relocation's *target* is what it means, not how the assembler
spelled it: gas turns references to local symbols into "section symbol +
addend" (``.bss.counter.0 - 5``), so the variable is found by which symbol
covers the referenced offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from buildhook.elf.objfile import ObjectFile, Relocation, Section, Symbol

COLD_SUFFIX = re.compile(r"^(?P<parent>.+)\.cold(?:\.\d+)?$")
STATIC_LOCAL = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*)\.(?P<number>\d+)$")

# x86-64 relocation types (psABI), by what they mean for reading an addend.
R_X86_64_64 = 1
R_X86_64_PC32 = 2
R_X86_64_PLT32 = 4
R_X86_64_GOTPCREL = 9
R_X86_64_32 = 10
R_X86_64_32S = 11
R_X86_64_TPOFF32 = 23
R_X86_64_GOTTPOFF = 22
R_X86_64_PC64 = 24
R_X86_64_GOTPCRELX = 41
R_X86_64_REX_GOTPCRELX = 42
PC_RELATIVE = frozenset({R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_GOTPCREL, R_X86_64_PC64,
                         R_X86_64_GOTPCRELX, R_X86_64_REX_GOTPCRELX, R_X86_64_GOTTPOFF})


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


@dataclass(frozen=True)
class Target:
    """What a relocation refers to."""

    kind: str                    # "symbol", "string", "constant", "section", "external"
    symbol: Symbol | None = None  # for "symbol"
    section: Section | None = None
    offset: int = 0              # addend, rebased to the symbol or string start
    content: bytes = b""         # for "string" / "constant"
    name: str = ""               # for "external"


def resolve(obj: ObjectFile, rel: Relocation) -> Target:
    """The meaning of a relocation in *obj*."""
    symbol = obj.symbols[rel.symbol]
    if symbol.section == "SHN_UNDEF":
        return Target("external", name=symbol.name, offset=rel.addend)
    if symbol.section == "SHN_COMMON":
        return Target("symbol", symbol=symbol, offset=rel.addend)
    if not isinstance(symbol.section, int):
        return Target("external", name=symbol.name or f"<{symbol.section}>", offset=rel.addend)
    section = obj.sections[symbol.section]
    is_section_symbol = symbol.type == "STT_SECTION"
    guess = rel.addend + (4 if rel.type in PC_RELATIVE else 0)
    if section.is_strings:
        start = guess if is_section_symbol else symbol.value
        return Target("string", section=section, content=section.string_at(start),
                      offset=symbol.value + rel.addend - start)
    if section.is_merged_constants:
        size = max(section.entsize, 1)
        start = (guess // size) * size if is_section_symbol else symbol.value
        return Target("constant", section=section, content=section.data[start:start + size],
                      offset=symbol.value + rel.addend - start)
    if not is_section_symbol and symbol.type != "STT_NOTYPE":
        return Target("symbol", symbol=symbol, section=section, offset=rel.addend)
    point = guess if is_section_symbol else symbol.value
    covering = obj.symbol_covering(section.index, point)
    if covering is None:
        candidates = obj.section_symbols(section.index)
        covering = candidates[0] if len(candidates) == 1 else None
    if covering is not None:
        return Target("symbol", symbol=covering, section=section,
                      offset=(symbol.value if not is_section_symbol else 0) + rel.addend - covering.value)
    return Target("section", section=section, offset=(symbol.value if not is_section_symbol else 0) + rel.addend)


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
