"""From two links to a patch: pair → compare → include → check → lay out.

``PatchPlanner.plan()`` reads as the algorithm.  What goes into a patch:

* every function whose body changed (bytes or what its relocations mean)
  gets a jump at its old entry ("replaced"); so does every function that
  reads a read-only variable whose content changed;
* everything included code references that the base does not have: new
  functions, new variables, string and constant pools, jump tables;
* everything else it references is *bound* to the base binary: existing
  functions (a replaced one is reached through its jump, so address
  comparisons keep working), existing variables (their running values are
  kept), library functions by name, the executable's TLS by offset.

Refusals are collected, not raised: a patch author wants every reason at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from buildhook.diff import model
from buildhook.diff.base import BaseProgram
from buildhook.diff.bodies import (
    R_X86_64_GOTTPOFF,
    R_X86_64_TPOFF32,
    BodyPart,
    FunctionBody,
    function_bodies,
    resolve,
)
from buildhook.diff.compare import ObjectComparison
from buildhook.diff.layout import struct_layout_changes
from buildhook.diff.pairing import ObjectPair, pair_objects
from buildhook.elf.objfile import ObjectFile, Relocation, Section, Symbol
from buildhook.po import format as fmt
from buildhook.po.writer import PatchContent, PatchRelocation, PatchSection, PatchSymbol
from buildhook.store import Store
from buildhook.store.records import LinkRecord

JUMP_SIZE = 5


@dataclass
class Unit:
    """One object of the new link that the patch draws from, with its old counterpart."""

    pair: ObjectPair
    new: ObjectFile
    old: ObjectFile | None = None
    comparison: ObjectComparison | None = None
    bodies: dict[str, FunctionBody] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return self.pair.source_name


@dataclass
class Plan:
    """A diff's result and, when it is a patch, the content of the .po."""

    result: model.DiffResult
    content: PatchContent | None
    entry_symbols: dict[tuple[str, str], int] = field(default_factory=dict)  # (file, function) → symbol
    tls: dict[str, int] | None = None  # the base executable's TLS block, for TPOFF relocations


class PatchPlanner:
    """Plans the patch that turns a process of *base* into *new*."""

    def __init__(self, store: Store, base: LinkRecord, new: LinkRecord) -> None:
        self.store = store
        self.base_link = base
        self.new_link = new
        self.result = model.DiffResult()
        self.units: list[Unit] = []
        self.base: BaseProgram | None = None
        # Included things, keyed by (unit index, symbol name) / (unit index, section index).
        self.included_functions: dict[tuple[int, str], str] = {}  # -> "replaced" | "new"
        self.included_data: dict[tuple[int, str], Symbol] = {}
        self.content = PatchContent()
        self._section_copies: dict[tuple[int, int, int], int] = {}
        self._defined_symbols: dict[tuple[int, str], int] = {}
        self._bound_symbols: dict[tuple[object, ...], int] = {}
        self._queue: list[tuple[int, str]] = []
        self._new_globals: dict[str, tuple[int, Symbol]] = {}

    # -- the algorithm -------------------------------------------------------

    def plan(self) -> Plan:
        self.load_changed_objects()
        if not self.units:
            return Plan(self.result, None)
        self.check_layouts()
        self.base = BaseProgram(self.store, self.base_link)
        self.seed_changed_functions()
        self.include_references()
        self.check_constructors()
        self.check_data()
        self.describe()
        if self.result.outcome != model.PATCH:
            return Plan(self.result, None)
        entries = {(self.units[unit_index].file, name): self._defined_symbols[(unit_index, name)]
                   for unit_index, name in self.included_functions}
        tls = self.base.binary.tls_segment
        return Plan(self.result, self.content, entries,
                    {"size": tls[1], "align": tls[2]} if tls else None)

    # -- pair and compare -----------------------------------------------------

    def load_changed_objects(self) -> None:
        """Parse only the objects whose content changed, and compare each pair."""
        for pair in pair_objects(self.base_link, self.new_link):
            if not pair.changed or pair.new is None:
                continue
            new = ObjectFile(self.store.blobs.read(pair.new.sha256), pair.new.display_path)
            unit = Unit(pair, new)
            if pair.old is not None:
                unit.old = ObjectFile(self.store.blobs.read(pair.old.sha256), pair.old.display_path)
                unit.comparison = ObjectComparison(unit.old, new)
                unit.bodies = unit.comparison.new_bodies
            else:
                unit.bodies = function_bodies(new)
            self.units.append(unit)
            self.result.objects_compared += 1
        for index, unit in enumerate(self.units):
            for symbol in unit.new.symbols:
                if symbol.is_defined and not symbol.is_local and symbol.type in ("STT_FUNC", "STT_OBJECT", "STT_TLS"):
                    self._new_globals.setdefault(symbol.name, (index, symbol))

    def check_layouts(self) -> None:
        """One refusal per changed struct, naming every file that defines it."""
        changes: dict[tuple[str, str], list[str]] = {}
        for unit in self.units:
            if unit.old is None:
                continue
            for struct_name, description in struct_layout_changes(unit.old, unit.new):
                changes.setdefault((struct_name, description), []).append(unit.file)
        for (struct_name, description), files in changes.items():
            also = f"; also defined in {', '.join(files[1:])}" if len(files) > 1 else ""
            self.refuse(struct_name, files[0], model.STRUCT_LAYOUT_CHANGED,
                        f"layout of {struct_name} changed ({description}); code of the running "
                        f"release would read the new layout wrongly{also}")

    def seed_changed_functions(self) -> None:
        for index, unit in enumerate(self.units):
            comparison = unit.comparison
            if comparison is None:
                continue
            changed = set(comparison.changed_functions)
            changed |= self._readers_of_changed_rodata(unit)
            for name in sorted(changed):
                self._include_function(index, name, "replaced")
            for old_symbol, users in comparison.correlation.removed_static_locals:
                for user in sorted(users):
                    if user in unit.bodies:
                        self.refuse(user, unit.file, model.STATIC_LOCAL_REMOVED,
                                    f"reference to static local variable {old_symbol.name} in {user} was removed; "
                                    "its running value cannot be carried over")

    def _readers_of_changed_rodata(self, unit: Unit) -> set[str]:
        """Functions reading a read-only variable whose content changed must see the new content."""
        comparison = unit.comparison
        assert comparison is not None
        changed_rodata = set()
        for name, symbol in comparison.new_data.items():
            old_name = comparison.correlation.old_name(name)
            old_symbol = comparison.old_data.get(old_name) if old_name else None
            section = unit.new.sections[symbol.section] if isinstance(symbol.section, int) else None
            if old_symbol is None or section is None or section.is_writable or section.type == "SHT_NOBITS":
                continue
            if comparison.data_signature(old_symbol, True) != comparison.data_signature(symbol, False):
                changed_rodata.add(name)
        readers = set()
        for body in unit.bodies.values():
            for part in body.parts:
                for rel in part.relocations:
                    target = resolve(unit.new, rel)
                    if target.kind == "symbol" and target.symbol is not None and target.symbol.name in changed_rodata:
                        readers.add(body.name)
        return readers

    # -- include -----------------------------------------------------------

    def _include_function(self, unit_index: int, name: str, how: str) -> None:
        key = (unit_index, name)
        if key not in self.included_functions:
            self.included_functions[key] = how
            self._queue.append(key)

    def include_references(self) -> None:
        """Copy every included function, following what it references."""
        while self._queue:
            unit_index, name = self._queue.pop(0)
            unit = self.units[unit_index]
            body = unit.bodies[name]
            self._copy_body(unit_index, body)

    def _copy_body(self, unit_index: int, body: FunctionBody) -> None:
        unit = self.units[unit_index]
        for part in body.parts:
            section_number = self._copy_section_range(unit_index, part.section, part.start, part.end)
            if part.role in ("entry", "cold"):
                symbol = body.symbol if part.role == "entry" else self._cold_symbol(unit, part)
                self._define_symbol(unit_index, symbol.name, PatchSymbol(
                    symbol.name, fmt.STT_FUNC, section_number, 0, part.end - part.start))

    def _cold_symbol(self, unit: Unit, part: BodyPart) -> Symbol:
        for symbol in unit.new.section_symbols(part.section.index):
            if symbol.value == part.start and symbol.type == "STT_FUNC":
                return symbol
        raise AssertionError(f"no symbol at cold part {part.section.name}+{part.start}")

    def _copy_section_range(self, unit_index: int, section: Section, start: int, end: int) -> int:
        """Copy [start, end) of a section into the patch (once), with its relocations rebound."""
        key = (unit_index, section.index, start)
        if key in self._section_copies:
            return self._section_copies[key]
        unit = self.units[unit_index]
        nobits = section.type == "SHT_NOBITS"
        flags = section.flags & (fmt.SHF_WRITE | fmt.SHF_ALLOC | fmt.SHF_EXECINSTR | fmt.SHF_MERGE
                                 | fmt.SHF_STRINGS | fmt.SHF_TLS)
        copy = PatchSection(section.name, flags, section.align, b"" if nobits else section.data[start:end],
                            size=end - start, nobits=nobits, entsize=section.entsize)
        number = self.content.add_section(copy)
        self._section_copies[key] = number
        owner = next((body.name for body in unit.bodies.values() if body.owns(section.index)), None)
        for rel in section.relocations:
            if start <= rel.offset < end:
                if rel.type not in fmt.SUPPORTED_RELOCATIONS:
                    self.refuse(section.name, unit.file, model.UNSUPPORTED_RELOCATION,
                                f"relocation type {rel.type} at {section.name}+{rel.offset:#x} is not supported")
                    continue
                symbol_index, addend = self._bind(unit_index, rel, owner)
                copy.relocations.append(PatchRelocation(rel.offset - start, rel.type, symbol_index, addend))
        return number

    def _define_symbol(self, unit_index: int, name: str, symbol: PatchSymbol) -> int:
        key = (unit_index, name)
        if key not in self._defined_symbols:
            self._defined_symbols[key] = self.content.add_symbol(symbol)
        return self._defined_symbols[key]

    def _section_start_symbol(self, unit_index: int, section: Section) -> int:
        number = self._copy_section_range(unit_index, section, 0, section.size)
        name = f"{section.name}@{self.units[unit_index].file}"
        return self._define_symbol(unit_index, "\0section " + str(section.index), PatchSymbol(
            name, fmt.STT_OBJECT if not section.is_code else fmt.STT_FUNC, number, 0, 0))

    def _bound(self, key: tuple[object, ...], symbol: PatchSymbol) -> int:
        if key not in self._bound_symbols:
            self._bound_symbols[key] = self.content.add_symbol(symbol)
        return self._bound_symbols[key]

    def _bind(self, unit_index: int, rel: Relocation, owner: str | None) -> tuple[int, int]:
        """The patch symbol a relocation is resolved against, and the addend to use with it.

        *owner* is the function whose part holds the relocation: its references to
        itself (jump-table entries, its cold part, recursion) stay inside the patch.
        """
        unit = self.units[unit_index]
        target = resolve(unit.new, rel)
        if target.kind in ("string", "constant", "section") and target.section is not None:
            # Pools, jump tables and unnamed ranges travel whole: relocate against the
            # copy's start with the exact byte offset the original symbol + addend meant.
            original = unit.new.symbols[rel.symbol]
            offset_in_section = (0 if original.type == "STT_SECTION" else original.value) + rel.addend
            owner = next((body for body in unit.bodies.values() if body.owns(target.section.index)), None)
            if owner is not None and (unit_index, owner.name) not in self.included_functions:
                self._include_function(unit_index, owner.name, self._new_or_replaced(unit, owner.name))
            return self._section_start_symbol(unit_index, target.section), offset_in_section
        if target.kind == "external":
            return self._bind_external(unit_index, target.name, rel.type), rel.addend
        assert target.symbol is not None
        internal = owner is not None and target.symbol.type == "STT_FUNC" \
            and self._body_name(unit, target.symbol) == owner
        return self._bind_symbol(unit_index, target.symbol, rel.type, internal), target.offset

    def _new_or_replaced(self, unit: Unit, name: str) -> str:
        if unit.comparison is not None and unit.comparison.correlation.old_name(name) in unit.comparison.old_bodies:
            return "replaced"
        return "new"

    def _bind_symbol(self, unit_index: int, symbol: Symbol, rel_type: int, internal: bool = False) -> int:
        """A defined symbol of the new object: the base's copy if it exists there, else carried.

        Calls and address-taken references to an existing function bind to its old
        entry (the jump there leads to the new code, and ``cb == handler`` still
        compares equal); *internal* references resolve to the patch's own copy.
        """
        unit = self.units[unit_index]
        old_symbol = self._old_counterpart(unit, symbol)
        if symbol.type == "STT_FUNC":
            body_name = self._body_name(unit, symbol)
            if old_symbol is not None and not internal and body_name == symbol.name:
                return self._bind_base_symbol(unit, old_symbol)
            if old_symbol is None and body_name == symbol.name:
                self._include_function(unit_index, body_name, "new")
            elif (unit_index, body_name) not in self.included_functions:
                self._include_function(unit_index, body_name, self._new_or_replaced(unit, body_name))
            # Parts of an included body (its cold part) and new functions resolve inside the patch.
            assert isinstance(symbol.section, int)
            section = unit.new.sections[symbol.section]
            number = self._copy_section_range(unit_index, section, *self._part_range(unit, symbol))
            return self._define_symbol(unit_index, symbol.name, PatchSymbol(
                symbol.name, fmt.STT_FUNC, number, 0, symbol.size))
        # Variables.
        if old_symbol is not None and not self._readonly_changed(unit, symbol, old_symbol):
            if symbol.type == "STT_TLS" or rel_type in (R_X86_64_TPOFF32, R_X86_64_GOTTPOFF):
                return self._bind_tls(unit, old_symbol)
            return self._bind_base_symbol(unit, old_symbol)
        if symbol.type == "STT_TLS":
            self.refuse(symbol.name, unit.file, model.NEW_TLS_VARIABLE,
                        f"new thread-local variable {symbol.name}: threads already running have no room for it")
            return self._bound(("refused", symbol.name), PatchSymbol(symbol.name, fmt.STT_TLS, binding={"bind": "refused"}))
        return self._carry_data(unit_index, symbol)

    def _part_range(self, unit: Unit, symbol: Symbol) -> tuple[int, int]:
        assert isinstance(symbol.section, int)
        section = unit.new.sections[symbol.section]
        return symbol.value, symbol.value + (symbol.size or section.size)

    def _body_name(self, unit: Unit, symbol: Symbol) -> str:
        for body in unit.bodies.values():
            if any(part.section.index == symbol.section and part.start == symbol.value for part in body.parts):
                return body.name
        return symbol.name

    def _old_counterpart(self, unit: Unit, symbol: Symbol) -> Symbol | None:
        if unit.comparison is None or unit.old is None:
            return None
        old_name = unit.comparison.correlation.old_name(symbol.name)
        if old_name is None:
            return None
        for candidate in unit.old.symbols:
            if candidate.name == old_name and candidate.is_defined and candidate.type == symbol.type:
                return candidate
        return None

    def _readonly_changed(self, unit: Unit, symbol: Symbol, old_symbol: Symbol) -> bool:
        section = unit.new.sections[symbol.section] if isinstance(symbol.section, int) else None
        if section is None or section.is_writable or section.type == "SHT_NOBITS" or unit.comparison is None:
            return False
        return unit.comparison.data_signature(old_symbol, True) != unit.comparison.data_signature(symbol, False)

    def _carry_data(self, unit_index: int, symbol: Symbol) -> int:
        unit = self.units[unit_index]
        key = (unit_index, symbol.name)
        if key not in self.included_data:
            self.included_data[key] = symbol
            if symbol.section == "SHN_COMMON":
                section = PatchSection(f".bss.{symbol.name}", fmt.SHF_WRITE | fmt.SHF_ALLOC, symbol.value or 8,
                                       size=symbol.size, nobits=True)
                number = self.content.add_section(section)
                return self._define_symbol(unit_index, symbol.name, PatchSymbol(
                    symbol.name, fmt.STT_OBJECT, number, 0, symbol.size))
            assert isinstance(symbol.section, int)
            section = unit.new.sections[symbol.section]
            number = self._copy_section_range(unit_index, section, 0, section.size)
            self._define_symbol(unit_index, symbol.name, PatchSymbol(
                symbol.name, fmt.STT_OBJECT, number, symbol.value, symbol.size))
        return self._defined_symbols[(unit_index, symbol.name)]

    def _bind_base_symbol(self, unit: Unit, old_symbol: Symbol) -> int:
        assert self.base is not None and unit.pair.old is not None and unit.old is not None
        address = self.base.symbol_address(unit.pair.old, unit.old, old_symbol)
        kind = fmt.STT_FUNC if old_symbol.type == "STT_FUNC" else fmt.STT_OBJECT
        return self._bound(("base", address), PatchSymbol(old_symbol.name, kind, binding={
            "bind": fmt.BIND_BASE, "address": address, "file": unit.file}))

    def _bind_tls(self, unit: Unit, old_symbol: Symbol) -> int:
        assert self.base is not None and unit.pair.old is not None and unit.old is not None
        offset = self.base.tls_offset(self.base.symbol_address(unit.pair.old, unit.old, old_symbol))
        return self._bound(("tls", offset), PatchSymbol(old_symbol.name, fmt.STT_TLS, binding={
            "bind": fmt.BIND_TLS, "offset": offset}))

    def _bind_external(self, unit_index: int, name: str, rel_type: int) -> int:
        """An undefined symbol: the program's own (base), a new one, or a library's."""
        assert self.base is not None
        own = self.base.binary.global_symbol(name)
        if own is not None:
            if own.type == "STT_TLS":  # st_value of a TLS symbol in a linked program is its block offset
                return self._bound(("tls", own.address), PatchSymbol(name, fmt.STT_TLS, binding={
                    "bind": fmt.BIND_TLS, "offset": own.address}))
            kind = fmt.STT_FUNC if own.type == "STT_FUNC" else fmt.STT_OBJECT
            return self._bound(("base", own.address), PatchSymbol(name, kind, binding={
                "bind": fmt.BIND_BASE, "address": own.address}))
        if name in self._new_globals:
            defining_unit, symbol = self._new_globals[name]
            return self._bind_symbol(defining_unit, symbol, rel_type)
        return self._bound(("dynamic", name), PatchSymbol(name, fmt.STT_NOTYPE, binding={
            "bind": fmt.BIND_DYNAMIC, "imported_by_base": name in self.base.binary.imports}))

    # -- checks ------------------------------------------------------------

    def check_constructors(self) -> None:
        """A new constructor would never run in a process that has already started."""
        for unit in self.units:
            old_targets = self._init_array_targets(unit.old) if unit.old else set()
            for target in sorted(self._init_array_targets(unit.new) - old_targets):
                self.refuse(target, unit.file, model.NEW_CONSTRUCTOR,
                            f"new constructor {target} would never run in a process that has already started")

    @staticmethod
    def _init_array_targets(obj: ObjectFile) -> set[str]:
        targets = set()
        for section in obj.sections:
            if section.name.startswith((".init_array", ".ctors")):
                for rel in section.relocations:
                    target = resolve(obj, rel)
                    targets.add(target.symbol.name if target.symbol is not None else target.name)
        return targets

    def check_data(self) -> None:
        """Existing variables: a changed size is a layout change, a changed initial value a warning."""
        for unit in self.units:
            comparison = unit.comparison
            if comparison is None:
                continue
            for name, symbol in sorted(comparison.new_data.items()):
                old_name = comparison.correlation.old_name(name)
                old_symbol = comparison.old_data.get(old_name) if old_name else None
                if old_symbol is None:
                    continue
                section = unit.new.sections[symbol.section] if isinstance(symbol.section, int) else None
                writable = section is None or section.is_writable or section.type == "SHT_NOBITS"
                if old_symbol.size != symbol.size and writable:
                    self.refuse(name, unit.file, model.GLOBAL_SIZE_CHANGED,
                                f"size of variable {name} changed from {old_symbol.size} to {symbol.size} bytes; "
                                "existing code and data still use the old layout")
                elif writable and comparison.data_signature(old_symbol, True) != comparison.data_signature(symbol, False):
                    self.warn(name, unit.file, model.INITIAL_VALUE_CHANGED,
                              f"initial value of {name} changed; the running process keeps its current value")

    def _old_cold_parts(self, unit: Unit, old_symbol: Symbol) -> list[tuple[int, int]]:
        """Where the base has the old function's .cold parts: threads there are still in it."""
        assert self.base is not None and unit.comparison is not None and unit.pair.old is not None
        old_body = unit.comparison.old_bodies.get(old_symbol.name)
        if old_body is None:
            return []
        return [(self.base.section_address(unit.pair.old, part.section.name) + part.start, part.end - part.start)
                for part in old_body.parts if part.role == "cold"]

    # -- results -------------------------------------------------------------

    def refuse(self, symbol: str, file: str, rule: str, message: str) -> None:
        finding = model.Finding(symbol, file, rule, message)
        if finding not in self.result.refusals:
            self.result.refusals.append(finding)

    def warn(self, symbol: str, file: str, rule: str, message: str) -> None:
        finding = model.Finding(symbol, file, rule, message)
        if finding not in self.result.warnings:
            self.result.warnings.append(finding)

    def describe(self) -> None:
        """Fill the result's function and data lists, and check every jump has room."""
        assert self.base is not None
        for (unit_index, name), how in sorted(self.included_functions.items(),
                                              key=lambda item: (self.units[item[0][0]].file, item[0][1])):
            unit = self.units[unit_index]
            body = unit.bodies[name]
            new_size = sum(part.end - part.start for part in body.parts if part.role != "jump-table")
            if how == "new":
                self.result.new_functions.append(model.FunctionEntry(name, unit.file, new_size, reached="called from patch code"))
                continue
            old_symbol = self._old_counterpart(unit, body.symbol)
            assert old_symbol is not None and unit.pair.old is not None and unit.old is not None
            address = self.base.symbol_address(unit.pair.old, unit.old, old_symbol)
            section = unit.old.sections[old_symbol.section].name  # type: ignore[index]
            room = self.base.binary.room_at(address)
            entry = model.FunctionEntry(name, unit.file, new_size, address, old_symbol.size,
                                        self.base.binary.sha256_at(address, old_symbol.size), room,
                                        old_parts=self._old_cold_parts(unit, old_symbol))
            self.result.replaced.append(entry)
            if room < JUMP_SIZE:
                self.refuse(name, unit.file, model.FUNCTION_TOO_SHORT,
                            f"{name} ({section}) has {room} bytes before the next symbol, a jump needs {JUMP_SIZE}")
        for (unit_index, name), symbol in sorted(self.included_data.items(),
                                                 key=lambda item: (self.units[item[0][0]].file, item[0][1])):
            unit = self.units[unit_index]
            section = unit.new.sections[symbol.section].name if isinstance(symbol.section, int) else "COMMON"
            self.result.new_data.append(model.DataEntry(name, unit.file, symbol.size, section))

