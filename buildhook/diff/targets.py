"""What a relocation refers to: a variable, a function, a string, a constant, a piece of data.

gas turns references to local symbols into "section symbol + addend"
(``.bss.counter.0 - 5``, ``.rodata + 0x13``), so the thing referenced is
found from the *offset* the reference points at:

* that offset is exact: for a PC-relative field in code it is
  ``S + A + (end of instruction - field)``, from the decoded instruction
  (``addl $1, x(%rip)`` ends 5 bytes after its displacement, not 4);
* a named symbol covering the offset is the target (or the one the offset
  ends, for a one-past-the-end pointer);
* in a string section, the string at the offset; in a constant pool, the
  constant;
* in a read-only section without symbols there (gcc at ``-O0`` puts string
  literals in plain ``.rodata``), the *piece* from the offset to the next
  offset anything refers to, compared by its bytes: a changed string is a
  change, a moved one is not.

Read-only means read-only at run time: ``.data.rel.ro*`` sections are
writable in the object (the dynamic linker fills in their pointers) and
read-only once the program runs (RELRO), so a ``const`` table of pointers
is constant data like ``.rodata``.
"""

from __future__ import annotations

import bisect
import weakref
from dataclasses import dataclass

from buildhook.diff.instructions import code_index
from buildhook.elf.objfile import ObjectFile, Relocation, Section, Symbol

# x86-64 relocation types (psABI) the diff reasons about.
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
GOT_LOADS = frozenset({R_X86_64_GOTPCREL, R_X86_64_GOTPCRELX, R_X86_64_REX_GOTPCRELX})
MAX_POINTER_DEPTH = 3  # how far a piece's pointers are followed when comparing it


def read_only(section: Section) -> bool:
    """Whether a section is constant while the program runs (``.rodata``, ``.data.rel.ro``)."""
    if section.is_tls or section.type == "SHT_NOBITS":
        return False
    return not section.is_writable or section.name.startswith(".data.rel.ro")


@dataclass(frozen=True)
class Target:
    """What a relocation refers to."""

    kind: str                    # "symbol", "string", "constant", "piece", "section", "external", "undecodable"
    symbol: Symbol | None = None  # for "symbol"
    section: Section | None = None
    offset: int = 0              # S + A, relative to the symbol, string, constant or piece start
    content: bytes = b""         # for "string" / "constant" / "piece"
    name: str = ""               # for "external"
    pointers: tuple[tuple[object, ...], ...] = ()  # for "piece": what the relocations inside it mean


def reference_point(obj: ObjectFile, rel: Relocation) -> int | None:
    """The offset, in the target symbol's section, that *rel* refers to (None: undecodable).

    A PC-relative field in code is relative to the end of its instruction;
    anywhere else (a 64-bit pointer, a jump-table entry) S + A is the point.
    """
    symbol = obj.symbols[rel.symbol]
    point = symbol.value + rel.addend
    if rel.type not in PC_RELATIVE or rel.type in GOT_LOADS or rel.section is None:
        return point
    if not obj.sections[rel.section].is_code:
        return point
    instruction = code_index(obj).instruction_at(rel.section, rel.offset)
    if instruction is None:
        return None
    return point + (instruction.end - rel.offset)


def resolve(obj: ObjectFile, rel: Relocation, depth: int = 0) -> Target:
    """The meaning of a relocation in *obj* (*depth*: how deep inside pieces' own pointers this is)."""
    symbol = obj.symbols[rel.symbol]
    if symbol.section == "SHN_UNDEF":
        return Target("external", name=symbol.name, offset=rel.addend)
    if symbol.section == "SHN_COMMON":
        return Target("symbol", symbol=symbol, offset=rel.addend)
    if not isinstance(symbol.section, int):
        return Target("external", name=symbol.name or f"<{symbol.section}>", offset=rel.addend)
    section = obj.sections[symbol.section]
    if symbol.type not in ("STT_SECTION", "STT_NOTYPE") and not section.is_strings and not section.is_merged_constants:
        return Target("symbol", symbol=symbol, section=section, offset=rel.addend)
    point = reference_point(obj, rel)
    if point is None:
        return Target("undecodable", section=section, offset=rel.offset)
    address = symbol.value + rel.addend  # S + A, section-relative
    if section.is_strings:
        return Target("string", section=section, content=section.string_at(point), offset=address - point)
    if section.is_merged_constants:
        size = max(section.entsize, 1)
        start = point // size * size
        return Target("constant", section=section, content=section.data[start:start + size], offset=address - start)
    anonymous = read_only(section) and _has_anonymous_data(obj, section)
    covering = None if anonymous else _covering_symbol(obj, section, point)
    if covering is not None:
        return Target("symbol", symbol=covering, section=section, offset=address - covering.value)
    if read_only(section):
        end = _next_point(obj, section, point)
        return Target("piece", section=section, content=section.data[point:end], offset=address - point,
                      pointers=_pointers_in(obj, section, point, end, depth))
    return Target("section", section=section, offset=address)


def _covering_symbol(obj: ObjectFile, section: Section, point: int) -> Symbol | None:
    """The named symbol holding *point*; else the one *point* is one past the end of; else its section's own.

    An offset outside the section still names its only variable
    (``-fdata-sections``: ``.bss.ring.0`` at ``ring - 4`` for an index that
    starts at 1).  Inside a read-only section, an offset no symbol holds is
    anonymous data, which the caller has already made a piece of.
    """
    covering = obj.symbol_covering(section.index, point)
    if covering is not None:
        return covering
    candidates = [symbol for symbol in obj.section_symbols(section.index) if symbol.type != "STT_NOTYPE"]
    ending = [symbol for symbol in candidates if symbol.size and symbol.value + symbol.size == point]
    if len(ending) == 1:
        return ending[0]
    return candidates[0] if len(candidates) == 1 else None


@dataclass
class _References:
    """Where the symbols and relocations of one object point, per target section (one pass, cached)."""

    points: dict[int, list[int]]  # section index → sorted offsets symbols start/end at or relocations refer to
    anonymous: set[int]           # sections something refers into where no symbol is


_REFERENCES: weakref.WeakKeyDictionary[ObjectFile, _References] = weakref.WeakKeyDictionary()


def _references(obj: ObjectFile) -> _References:
    cached = _REFERENCES.get(obj)
    if cached is not None:
        return cached
    points: dict[int, set[int]] = {}
    anonymous: set[int] = set()
    for symbol in obj.symbols:
        if isinstance(symbol.section, int) and symbol.type not in ("STT_SECTION", "STT_FILE"):
            points.setdefault(symbol.section, set()).update((symbol.value, symbol.value + symbol.size))
    for section in obj.sections:
        for rel in section.relocations:
            target = obj.symbols[rel.symbol]
            if not isinstance(target.section, int):
                continue
            point = reference_point(obj, rel)
            if point is None:
                continue
            points.setdefault(target.section, set()).add(point)
            if target.type in ("STT_SECTION", "STT_NOTYPE") and 0 <= point < obj.sections[target.section].size \
                    and obj.symbol_covering(target.section, point) is None:
                anonymous.add(target.section)
    cached = _References({index: sorted(values) for index, values in points.items()}, anonymous)
    _REFERENCES[obj] = cached
    return cached


def _has_anonymous_data(obj: ObjectFile, section: Section) -> bool:
    """Whether something in *obj* refers into *section* where no symbol is (a string at -O0, a jump table).

    Such a read-only section is compared and carried as pieces from one
    referenced offset to the next, named variables in it included, so that
    every reference into it, a one-past-the-end pointer of a table as much
    as the string after it, means the same bytes in the old and the new
    build, and patch code uses one consistent copy.
    """
    return section.index in _references(obj).anonymous


def _next_point(obj: ObjectFile, section: Section, point: int) -> int:
    points = _references(obj).points.get(section.index, [])
    position = bisect.bisect_right(points, point)
    return points[position] if position < len(points) else section.size


def _pointers_in(obj: ObjectFile, section: Section, start: int, end: int,
                 depth: int) -> tuple[tuple[object, ...], ...]:
    """What the relocations inside a piece point at: a table of string pointers means its strings.

    Followed a few levels deep (a table of tables); below that, by the raw
    name and addend, which can only make a piece look changed, never equal.
    """
    result: list[tuple[object, ...]] = []
    for rel in section.relocations:
        if not start <= rel.offset < end:
            continue
        if depth >= MAX_POINTER_DEPTH:
            target = obj.symbols[rel.symbol]
            name = target.name or (obj.sections[target.section].name if isinstance(target.section, int) else "")
            result.append((rel.offset - start, rel.type, name, rel.addend))
            continue
        meaning = resolve(obj, rel, depth + 1)
        named = meaning.symbol.name if meaning.symbol is not None else meaning.name
        result.append((rel.offset - start, rel.type, meaning.kind, named, meaning.content, meaning.pointers,
                       meaning.offset))
    return tuple(result)
