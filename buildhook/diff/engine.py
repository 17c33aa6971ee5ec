"""From two links to a patch: pair → compare → changed data → include → check → lay out.

``PatchPlanner.plan()`` reads as the algorithm.  What goes into a patch:

* every function whose body changed (bytes or what its relocations mean)
  gets a jump at its old entry ("replaced"), and so does a global function
  that moved to another file (a global name is one function in the whole
  link, wherever it is defined);
* constant data whose meaning changed (a read-only variable's content, a
  ``const`` table of pointers in ``.data.rel.ro``, a variable that became
  writable or read-only) travels in the patch, and *every* function of the
  program that uses it is replaced, in whatever object it lives, so that
  no code keeps reading the old copy;
* everything included code references that the base does not have: new
  functions, new variables, string and constant pools, jump tables;
* everything else it references is *bound* to the base binary: existing
  functions at their old entry (a replaced one is reached through its
  jump, so ``cb == handler`` keeps holding, even for a function that takes
  its own address), existing variables (their running values are kept),
  hidden-visibility definitions of other objects through the link map,
  library functions by name, the executable's TLS by offset.

Refusals are collected, not raised: a patch author wants every reason at once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from buildhook.diff import ehframe, entrycopy, markers, model
from buildhook.diff.base import BaseProgram
from buildhook.diff.bodies import BodyPart, FunctionBody, function_bodies
from buildhook.diff.compare import ObjectComparison
from buildhook.diff.instructions import code_index
from buildhook.diff.layout import cached_type_layouts, functions_using, type_changes
from buildhook.diff.pairing import ObjectPair, pair_objects
from buildhook.diff.users import users_of
from buildhook.diff.targets import (
    GOT_LOADS,
    R_X86_64_32,
    R_X86_64_32S,
    R_X86_64_64,
    R_X86_64_GOTPCREL,
    R_X86_64_GOTTPOFF,
    R_X86_64_PC32,
    R_X86_64_PLT32,
    R_X86_64_TPOFF32,
    read_only,
    reference_point,
    resolve,
)
from buildhook.elf.objfile import ObjectFile, Relocation, Section, Symbol
from buildhook.po import format as fmt
from buildhook.po.writer import PatchContent, PatchRelocation, PatchSection, PatchSymbol
from buildhook.store import Store
from buildhook.store.records import LinkInput, LinkRecord

JUMP_SIZE = 5
# How new code may refer to a library variable: through a pointer it holds or a GOT slot.
LIBRARY_DATA_RELOCATIONS = frozenset({R_X86_64_64, *GOT_LOADS})
R_X86_64_TLSGD, R_X86_64_TLSLD, R_X86_64_DTPOFF32 = 19, 20, 21
MODULE_TLS_RELOCATIONS = frozenset({R_X86_64_TLSGD, R_X86_64_TLSLD, R_X86_64_DTPOFF32})
CALL_MNEMONICS = ("call", "jmp")
SHADOW_TABLE, SHADOW_RELEASE = "buildhook__shadow_table", "buildhook__shadow_release"  # buildhook.h


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
class OldDefinition:
    """Where a function or variable of the new build was defined in the base release."""

    item: LinkInput
    obj: ObjectFile
    symbol: Symbol
    _bodies: dict[str, FunctionBody] | None = None

    @property
    def file(self) -> str:
        return self.item.source_name

    @property
    def bodies(self) -> dict[str, FunctionBody]:
        if self._bodies is None:
            self._bodies = function_bodies(self.obj)
        return self._bodies


@dataclass
class Plan:
    """A diff's result and, when it is a patch, the content of the .po."""

    result: model.DiffResult
    content: PatchContent | None
    tls: dict[str, int] | None = None  # the base executable's TLS block, for TPOFF relocations
    unwind: dict[str, object] | None = None  # the .eh_frame section of the patch code, and if it has handlers


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
        self.changed_data: set[tuple[int, str]] = set()  # constant data whose meaning changed
        self.content = PatchContent()
        self._unchanged_pairs: list[ObjectPair] = []
        self._searched_names: set[str] = set()  # changed globals unchanged objects were searched for
        self._old_globals: dict[str, OldDefinition] = {}
        self._section_copies: dict[tuple[int, int, int], int] = {}
        self._got_loads: set[tuple[int, int | None, int]] = set()  # lea of a library variable, loaded from a GOT slot
        self._defined_symbols: dict[tuple[int, str], int] = {}
        self._bound_symbols: dict[tuple[object, ...], int] = {}
        self._queue: list[tuple[int, str]] = []
        self._new_globals: dict[str, tuple[int, Symbol]] = {}
        self.unwind: dict[str, object] | None = None  # metadata "unwind": the .eh_frame section, personality?
        self.markers: dict[int, markers.Markers] = {}  # buildhook.h's requests, of each changed object
        self.migrations: dict[tuple[int, str], model.MigrationEntry] = {}  # variables moved to new storage
        self._transforms: dict[tuple[int, str], tuple[int, Symbol]] = {}  # (unit, variable) → (unit, function)
        self.covered_layouts: set[str] = set()  # changed record types BUILDHOOK_LAYOUT_CHANGE covers

    # -- the algorithm -------------------------------------------------------

    def plan(self) -> Plan:
        self.load_changed_objects()
        if not self.units:
            return Plan(self.result, None)
        self.read_markers()
        self.check_types()
        self.base = BaseProgram(self.store, self.base_link)
        self.find_changed_data()
        self.seed_changed_functions()
        self.include_type_users()
        self.plan_migrations()
        self.include_hooks()
        self.include_references()
        self.include_shadow_release()
        self.carry_unwind_tables()
        self.check_constructors()
        self.describe()
        if self.result.outcome != model.PATCH:
            return Plan(self.result, None)
        tls = self.base.binary.tls_segment
        return Plan(self.result, self.content, {"size": tls[1], "align": tls[2]} if tls else None, self.unwind)

    # -- pair and compare -----------------------------------------------------

    def load_changed_objects(self) -> None:
        """Parse only the objects whose content changed, and compare each pair."""
        for pair in pair_objects(self.base_link, self.new_link):
            if not pair.changed:
                self._unchanged_pairs.append(pair)
                continue
            if pair.new is None:  # gone from the new link: what it defined may live elsewhere now
                assert pair.old is not None
                self._note_old_globals(pair.old, self._read(pair.old))
                continue
            self._add_unit(pair, changed=True)
        self._index_new_globals()

    def _read(self, item: LinkInput) -> ObjectFile:
        return ObjectFile(self.store.blobs.read(item.sha256), item.display_path)

    def _add_unit(self, pair: ObjectPair, changed: bool, parsed: ObjectFile | None = None) -> int:
        """Add an object pair (*parsed*: an unchanged object, read already, which is both sides)."""
        assert pair.new is not None
        unit = Unit(pair, parsed or self._read(pair.new))
        if pair.old is not None:
            unit.old = parsed or self._read(pair.old)
            unit.comparison = ObjectComparison(unit.old, unit.new)
            unit.bodies = unit.comparison.new_bodies
            self._note_old_globals(pair.old, unit.old)
        else:
            unit.bodies = function_bodies(unit.new)
        self.units.append(unit)
        if changed:
            self.result.objects_compared += 1
        return len(self.units) - 1

    def _note_old_globals(self, item: LinkInput, obj: ObjectFile) -> None:
        for symbol in obj.symbols:
            if symbol.is_defined and not symbol.is_local and symbol.type in ("STT_FUNC", "STT_OBJECT", "STT_TLS"):
                self._old_globals.setdefault(symbol.name, OldDefinition(item, obj, symbol))

    def _index_new_globals(self) -> None:
        """Where each global of the changed objects is defined; a strong definition wins over a weak one,
        as in the link (buildhook.h's shadow functions are weak, in every file that includes it)."""
        for index, unit in enumerate(self.units):
            for symbol in unit.new.symbols:
                if symbol.is_defined and not symbol.is_local and symbol.type in ("STT_FUNC", "STT_OBJECT", "STT_TLS"):
                    known = self._new_globals.get(symbol.name)
                    if known is None or (known[1].bind == "STB_WEAK" and symbol.bind != "STB_WEAK"):
                        self._new_globals[symbol.name] = (index, symbol)

    def _canonical(self, unit_index: int, symbol: Symbol) -> tuple[int, Symbol]:
        """The one definition a global variable or new global function defined in several objects
        (weak, or vague linkage) has in the link: one copy travels, one table is shared."""
        if symbol.is_local or symbol.type not in ("STT_OBJECT", "STT_FUNC"):
            return unit_index, symbol
        known = self._new_globals.get(symbol.name)
        if known is None or known[0] == unit_index:
            return unit_index, symbol
        if symbol.type == "STT_FUNC" and self._old_definition(unit_index, symbol) is not None:
            return unit_index, symbol  # an existing function: the base's copy is the one redirected
        return known

    def read_markers(self) -> None:
        """What the changed objects ask for through buildhook.h (markers.py)."""
        for index, unit in enumerate(self.units):
            try:
                found = markers.read_markers(unit.new)
            except markers.MarkerError as exc:
                self.refuse(unit.file, unit.file, model.BAD_MARKER, str(exc))
                continue
            if found:
                self.markers[index] = found

    def check_types(self) -> None:
        """One refusal per changed type (struct, union, typedef'd anonymous type, enum), naming every file."""
        changes: dict[tuple[str, str, str], list[str]] = {}
        for unit in self.units:
            if unit.old is None:
                continue
            assert unit.pair.old is not None and unit.pair.new is not None
            cache = self.store.cache_dir
            old = cached_type_layouts(cache, unit.pair.old.sha256, unit.old)
            new = cached_type_layouts(cache, unit.pair.new.sha256, unit.new)
            for type_name, rule, description in type_changes(old, new):
                changes.setdefault((type_name, rule, description), []).append(unit.file)
        covered = self._layout_changes_covered()
        for (type_name, rule, description), files in changes.items():
            if rule == model.STRUCT_LAYOUT_CHANGED and type_name in covered:
                self.covered_layouts.add(type_name)  # its users are replaced (include_type_users)
                continue
            also = f"; also defined in {', '.join(files[1:])}" if len(files) > 1 else ""
            what = "values" if rule == model.ENUM_VALUES_CHANGED else "layout"
            remedy = "" if rule == model.ENUM_VALUES_CHANGED else (
                f"; if no instance of the old layout can be live when the patch goes in (a PRE_APPLY "
                f"quiescence check, shadow variables, a transform of each global), "
                f"BUILDHOOK_LAYOUT_CHANGE({type_name}) lets it go, every function using it replaced")
            self.refuse(type_name, files[0], rule,
                        f"{what} of {type_name} changed ({description}); code and data of the running "
                        f"release would be read wrongly{also}{remedy}")

    def _layout_changes_covered(self) -> set[str]:
        """The types BUILDHOOK_LAYOUT_CHANGE names, as type names go here: "struct tag", or "typedef name"
        for a bare name."""
        covered = set()
        for found in self.markers.values():
            for tag in found.layout_changes:
                tag = " ".join(tag.split())
                covered.add(tag if tag.split(" ", 1)[0] in ("struct", "union", "class") else f"typedef {tag}")
        return covered

    def include_type_users(self) -> None:
        """Every existing function that holds or reaches an instance of a type whose layout change the
        author covered is replaced: none of them runs old code on the new layout, and none may be on a
        stack when the patch goes in (the activeness check)."""
        if not self.covered_layouts:
            return
        for unit_index, unit in enumerate(self.units):
            if unit.old is None:
                continue
            users = functions_using(unit.new, self.covered_layouts)
            names = set().union(*users.values()) if users else set()
            for body in list(unit.bodies.values()):
                base = body.name.split(".", 1)[0]
                if (body.name in names or base in names) and self._old_definition(unit_index, body.symbol):
                    self._include_function(unit_index, body.name, "replaced")

    # -- old definitions -----------------------------------------------------------

    def _old_definition(self, unit_index: int, symbol: Symbol) -> OldDefinition | None:
        """The base's definition of a new symbol: its counterpart in the same object, or a global anywhere."""
        same = self._same_object_definition(unit_index, symbol)
        if same is not None or symbol.is_local:
            return same
        found = self._old_globals.get(symbol.name)
        return found if found is not None and _kind(found.symbol) == _kind(symbol) else None

    def _same_object_definition(self, unit_index: int, symbol: Symbol) -> OldDefinition | None:
        unit = self.units[unit_index]
        if unit.comparison is None or unit.old is None or unit.pair.old is None:
            return None
        old_name = unit.comparison.correlation.old_name(symbol.name)
        if old_name is None:
            return None
        wanted = _kind(symbol)
        for candidate in unit.old.symbols:
            if candidate.name == old_name and candidate.is_defined and _kind(candidate) == wanted:
                return OldDefinition(unit.pair.old, unit.old, candidate, unit.comparison.old_bodies)
        return None

    def _moved_functions(self, unit_index: int) -> set[str]:
        """Global functions this object defines that the base defined in another object."""
        unit = self.units[unit_index]
        return {name for name, body in unit.bodies.items()
                if not body.symbol.is_local and self._same_object_definition(unit_index, body.symbol) is None
                and (old := self._old_globals.get(name)) is not None and old.symbol.type == "STT_FUNC"}

    # -- changed constant data ---------------------------------------------------

    def find_changed_data(self) -> None:
        """Constant data whose meaning changed, to its fixed point, with every object that uses it loaded.

        A read-only variable changed when its bytes or what its pointers mean
        changed, when it became writable or read-only, or when it points at
        changed constant data.  Objects that did not change but use a
        changed global are loaded too: their users must be replaced.
        """
        while True:
            before = len(self.changed_data)
            for unit_index, unit in enumerate(self.units):
                for symbol in unit.new.data_objects():
                    if (unit_index, symbol.name) not in self.changed_data and self._data_meaning_changed(unit_index, symbol):
                        self.changed_data.add((unit_index, symbol.name))
            if len(self.changed_data) == before and not self._load_users_of_changed_globals():
                return

    def _data_meaning_changed(self, unit_index: int, symbol: Symbol) -> bool:
        unit = self.units[unit_index]
        if not isinstance(symbol.section, int):
            return False
        section = unit.new.sections[symbol.section]
        old = self._old_definition(unit_index, symbol)
        if old is None:
            return False
        if not isinstance(old.symbol.section, int):
            return False
        if read_only(section) != read_only(old.obj.sections[old.symbol.section]):
            return True  # it became writable (new code writes it) or read-only
        if not read_only(section):
            return False  # a variable: its running value is kept
        if old.obj is unit.old and unit.comparison is not None:
            if unit.comparison.data_signature(old.symbol, True) != unit.comparison.data_signature(symbol, False):
                return True
        else:  # moved from another object: equal bytes and no pointers, or changed
            if any(symbol.value <= rel.offset < symbol.value + symbol.size for rel in section.relocations):
                return True
            if old.obj.sections[old.symbol.section].data[old.symbol.value:old.symbol.value + old.symbol.size] \
                    != section.data[symbol.value:symbol.value + symbol.size]:  # type: ignore[index]
                return True
        for rel in section.relocations:
            if symbol.value <= rel.offset < symbol.value + max(symbol.size, 1) and self._is_changed_data(unit_index, rel):
                return True
        return False

    def _is_changed_data(self, unit_index: int, rel: Relocation) -> bool:
        """Whether a relocation of *unit_index* refers to constant data whose meaning changed."""
        unit = self.units[unit_index]
        target = resolve(unit.new, rel)
        if target.kind == "symbol" and target.symbol is not None:
            if (unit_index, target.symbol.name) in self.changed_data:
                return True
            name = target.symbol.name if not target.symbol.is_local else None
        else:
            name = target.name if target.kind == "external" else None
        if name is None:
            return False
        defined = self._new_globals.get(name)
        return defined is not None and (defined[0], name) in self.changed_data

    def _changed_global_names(self) -> set[str]:
        names = set()
        for unit_index, name in self.changed_data:
            symbol = self._new_globals.get(name)
            if symbol is not None and symbol[0] == unit_index:
                names.add(name)
        return names

    def _load_users_of_changed_globals(self) -> bool:
        """Load unchanged objects that refer to a changed global by name; whether any was loaded."""
        names = self._changed_global_names() - self._searched_names
        if not names:
            return False
        self._searched_names |= names
        return bool(self._load_unchanged_users(names))

    def _load_unchanged_users(self, names: set[str]) -> list[int]:
        """Load the objects that did not change but import one of *names* (a global), as units: their
        functions use it and must be replaced.  Returns the new units' indices."""
        loaded = []
        for pair in list(self._unchanged_pairs):
            assert pair.new is not None
            data = self.store.blobs.read(pair.new.sha256)
            if not any(name.encode() + b"\0" in data for name in names):
                continue  # the name is not in its string table: a byte search, no parse
            obj = ObjectFile(data, pair.new.display_path)
            if any(symbol.name in names and symbol.section == "SHN_UNDEF" for symbol in obj.symbols):
                self._unchanged_pairs.remove(pair)
                loaded.append(self._add_unit(pair, changed=False, parsed=obj))
        return loaded

    # -- seed --------------------------------------------------------------------

    def seed_changed_functions(self) -> None:
        for index, unit in enumerate(self.units):
            changed = set(self._moved_functions(index))
            if unit.comparison is not None:
                changed |= unit.comparison.changed_functions
            changed |= self._users_of_changed_data(index)
            for name in sorted(changed):
                self._include_function(index, name, "replaced")
            if unit.comparison is None:
                continue
            for old_symbol, users in unit.comparison.correlation.removed_static_locals:
                for user in sorted(users):
                    if user in unit.bodies:
                        self.refuse(user, unit.file, model.STATIC_LOCAL_REMOVED,
                                    f"reference to static local variable {old_symbol.name} in {user} was removed; "
                                    "its running value cannot be carried over")

    def _users_of_changed_data(self, unit_index: int) -> set[str]:
        """Existing functions of the object that use constant data whose meaning changed."""
        unit = self.units[unit_index]
        users: set[str] = set()
        if not self.changed_data:
            return users
        for body in unit.bodies.values():
            if self._old_definition(unit_index, body.symbol) is None:
                continue  # a new function: included if reached, binding the new data anyway
            if any(self._is_changed_data(unit_index, rel) for part in body.parts for rel in part.relocations):
                users.add(body.name)
        return users

    # -- data changes (docs/data-changes.md) ---------------------------------------

    def plan_migrations(self) -> None:
        """Existing variables whose size or initial value changed, or that a transform names.

        One moves to new storage, carried in the patch with the new build's
        contents, when nothing of the running program keeps using the old one
        (every function that uses it is replaced, no data points at it):
        automatically when the applier finds its running bytes still equal to
        its initial bytes, or filled by its ``BUILDHOOK_TRANSFORM``.
        Otherwise a changed size is refused and a changed initial value keeps
        its running value (a warning), as before.
        """
        self._transforms = self._transform_requests()
        requests = dict(self._transforms)
        for unit_index, unit in enumerate(self.units):
            if unit.comparison is None:
                continue
            for name, symbol in sorted(unit.comparison.new_data.items()):
                transform = requests.pop((unit_index, name), None)
                if (unit_index, name) in self.changed_data:  # constant data: carried, every user replaced
                    if transform is not None:
                        self._refuse_transform(unit, name, "it is read-only data, carried whole with every user")
                    continue
                old = self._old_definition(unit_index, symbol)
                if old is None or old.obj is not unit.old or not isinstance(symbol.section, int) \
                        or read_only(unit.new.sections[symbol.section]) or symbol.type == "STT_TLS":
                    if transform is not None:
                        self._refuse_transform(unit, name, "it is not an existing variable of the base release "
                                                           "(a new variable starts with its initial value)")
                    continue
                size_changed = old.symbol.size != symbol.size
                value_changed = unit.comparison.data_signature(old.symbol, True) \
                    != unit.comparison.data_signature(symbol, False) or self._points_at_changed_data(unit_index, symbol)
                if size_changed or value_changed or transform is not None:
                    self._plan_migration(unit_index, symbol, old, size_changed, transform)
        for (unit_index, name) in requests:
            self._refuse_transform(self.units[unit_index], name, "it is not an existing variable of the base "
                                                                 "release (a new variable starts with its initial value)")

    def _transform_requests(self) -> dict[tuple[int, str], tuple[int, Symbol]]:
        """(unit of the variable, its name) → (unit of the marker, the transform function)."""
        requests = {}
        for unit_index, found in self.markers.items():
            for name, (here, function) in found.transforms.items():
                owner = unit_index if here else self._new_globals.get(name, (None, None))[0]
                if owner is None:
                    self._refuse_transform(self.units[unit_index], name, "no object that changed defines it (a "
                                                                         "transform moves a variable of a changed file)")
                    continue
                requests[(owner, name)] = (unit_index, function)
        return requests

    def _refuse_transform(self, unit: Unit, name: str, why: str) -> None:
        self.refuse(name, unit.file, model.TRANSFORM_NOT_POSSIBLE, f"BUILDHOOK_TRANSFORM names {name}, but {why}")

    def _plan_migration(self, unit_index: int, symbol: Symbol, old: OldDefinition, size_changed: bool,
                        transform: tuple[int, Symbol] | None) -> None:
        """Move one variable to new storage, or say why it cannot be.

        A changed size or a transform needs every user of the old storage
        gone: each function of the base that uses it is replaced (an
        unchanged one too, rebound to the new storage, as for changed
        constant data), and no initialised data may point at it.  A changed
        initial value alone moves only if its users are replaced already:
        pulling in unchanged readers of a tunable (a ``main`` loop) would make
        a patch that could never apply, for a value the process may have set
        itself.
        """
        assert self.base is not None
        unit = self.units[unit_index]
        name = symbol.name
        address = self.base.symbol_address(old.item, old.obj, old.symbol)
        initial, relative, symbolic = self.base.binary.initial_value(address, old.symbol.size)
        users, blocker = self._base_users(unit_index, old)
        moves = size_changed or transform is not None
        if not moves and blocker is None:
            blocker = next((f"{function} ({self.units[index].file}) uses it and is not replaced"
                            for index, function in users
                            if self.included_functions.get((index, function)) != "replaced"), None)
        if transform is None and blocker is None and symbolic:
            blocker = f"its initial value points at {symbolic[0]}, which cannot be checked before the process runs"
        if blocker is not None:
            if transform is not None:
                self._refuse_transform(unit, name, f"{blocker}; every reference must go to the new storage")
            elif size_changed:
                remedy = f"a BUILDHOOK_TRANSFORM({name}, fn) can migrate it" if symbolic else \
                    "keep its size and put what is added in a new variable, or in a shadow variable"
                self.refuse(name, unit.file, model.GLOBAL_SIZE_CHANGED,
                            f"size of variable {name} changed from {old.symbol.size} to {symbol.size} bytes and it "
                            f"cannot move to new storage: {blocker}; {remedy}")
            else:
                self.warn(name, unit.file, model.INITIAL_VALUE_CHANGED,
                          f"initial value of {name} changed; the running process keeps its current value "
                          f"({blocker})")
            return
        for index, function in users:
            self._include_function(index, function, "replaced")
        kind = "transform" if transform is not None else "size" if size_changed else "value"
        entry = model.MigrationEntry(name, unit.file, kind, address, old.symbol.size, symbol.size,
                                     initial=initial, relative=relative)
        if transform is not None:
            entry.transform = transform[1].name
        self.migrations[(unit_index, name)] = entry

    def _base_users(self, unit_index: int, old: OldDefinition) -> tuple[list[tuple[int, str]], str | None]:
        """The functions of the base that use *old*, as (unit, name in the new build), objects that did not
        change loaded as units; and what cannot be redirected (initialised data pointing at it, a user
        gone from the new build), or None."""
        unit = self.units[unit_index]
        assert unit.comparison is not None
        name = old.symbol.name
        places = [(unit_index, users_of(old.obj, unit.comparison.old_bodies, name, old.symbol.index))]
        if not old.symbol.is_local:
            for index, other in enumerate(self.units):
                if index != unit_index and other.old is not None and other.comparison is not None:
                    places.append((index, users_of(other.old, other.comparison.old_bodies, name, None)))
            for index in self._load_unchanged_users({name}):
                loaded = self.units[index]
                places.append((index, users_of(loaded.new, loaded.bodies, name, None)))
        users = []
        for index, found in places:
            other = self.units[index]
            for data in sorted(found.data - {name}):
                return [], f"the initial value of {data} ({other.file}) points at it"
            for function in sorted(found.functions):
                new_name = other.comparison.correlation.new_name(function) if other.comparison else function
                if new_name is None or new_name not in other.bodies:
                    return [], f"{function} ({other.file}) uses it and is gone from the new build"
                users.append((index, new_name))
        return users, None

    def include_hooks(self) -> None:
        """The author's hooks and transform functions, and the new storage of every migrated variable."""
        for unit_index, found in sorted(self.markers.items()):
            unit = self.units[unit_index]
            for kind, function in found.hooks:
                symbol = self._bind_function(unit_index, function, at_entry=False)
                self.result.hooks.append(model.HookEntry(kind, function.name, unit.file, symbol))
        for (unit_index, name), entry in sorted(self.migrations.items()):
            symbol = self.units[unit_index].comparison.new_data[name]  # type: ignore[union-attr]
            entry.symbol = self._carry_data(unit_index, symbol)
            if entry.kind == "transform":
                marker_unit, function = self._transforms[(unit_index, name)]
                entry.transform_symbol = self._bind_function(marker_unit, function, at_entry=False)
            self.result.migrated.append(entry)

    def include_shadow_release(self) -> None:
        """The patch uses buildhook.h's shadow table: revert frees it (a post-revert hook of buildhook's own)."""
        if not any(name == SHADOW_TABLE for _unit, name in self.included_data):
            return
        for unit_index, unit in enumerate(self.units):
            body = unit.bodies.get(SHADOW_RELEASE)
            if body is not None:
                symbol = self._bind_function(unit_index, body.symbol, at_entry=False)
                self.result.hooks.append(model.HookEntry("post_revert", SHADOW_RELEASE, unit.file, symbol))
                self.include_references()
                return

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
            self._copy_body(unit_index, self.units[unit_index].bodies[name])

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
        if read_only(section):
            flags &= ~fmt.SHF_WRITE  # .data.rel.ro: written only by the applier's relocation
        copy = PatchSection(section.name, flags, section.align, b"" if nobits else section.data[start:end],
                            size=end - start, nobits=nobits, entsize=section.entsize)
        number = self.content.add_section(copy)
        self._section_copies[key] = number
        for rel in section.relocations:
            if start <= rel.offset < end:
                if rel.type in MODULE_TLS_RELOCATIONS:
                    self._module_tls(unit_index, rel, copy, start)
                    continue
                if rel.type not in fmt.SUPPORTED_RELOCATIONS:
                    self.refuse(section.name, unit.file, model.UNSUPPORTED_RELOCATION,
                                f"relocation type {rel.type} at {section.name}+{rel.offset:#x} is not supported")
                    continue
                symbol_index, addend = self._bind(unit_index, rel)
                rel_type = rel.type
                if (unit_index, rel.section, rel.offset) in self._got_loads:
                    copy.data = _lea_as_got_load(copy.data, rel.offset - start)
                    rel_type = R_X86_64_GOTPCREL
                copy.relocations.append(PatchRelocation(rel.offset - start, rel_type, symbol_index, addend))
        return number

    def _module_tls(self, unit_index: int, rel: Relocation, copy: PatchSection, start: int) -> None:
        """A shared object's general- or local-dynamic TLS access, through the base library's own GOT pairs.

        ``lea x@tlsgd(%rip), %rdi; call __tls_get_addr`` needs a (module,
        offset) pair in a GOT; the patch uses the pair the old library's code
        used (its link-time address, plus the load bias), so the dynamic
        linker's module id is right.  A ``DTPOFF32`` (a variable's offset in
        the module's block, after local-dynamic) is a link-time constant and
        is written into the copy.  A pair the old library never had cannot be
        made: refused.
        """
        assert self.base is not None
        unit = self.units[unit_index]
        symbol = unit.new.symbols[rel.symbol]
        offset = self._module_tls_offset(unit_index, symbol)
        if offset is None:
            return
        at = rel.offset - start
        if rel.type == R_X86_64_DTPOFF32:
            copy.data = copy.data[:at] + struct.pack("<i", offset + rel.addend) + copy.data[at + 4:]
            return
        pairs = self.base.binary.tls_module_pairs()
        if rel.type == R_X86_64_TLSLD:
            address = pairs.get(("offset", 0))
        else:
            address = pairs.get(("name", symbol.name)) or pairs.get(("offset", offset))
        if address is None:
            how = "local-dynamic" if rel.type == R_X86_64_TLSLD else "general-dynamic"
            self.refuse(symbol.name, unit.file, model.LIBRARY_DATA_REFERENCE,
                        f"new code reaches thread-local {symbol.name} {how}, through a GOT pair the old "
                        f"{self.base.link.binary} does not have (its code never accessed it so)")
            return
        pair = self._bound(("base", address), PatchSymbol(f"{symbol.name}@tlspair", fmt.STT_OBJECT, binding={
            "bind": fmt.BIND_BASE, "address": address}))
        copy.relocations.append(PatchRelocation(at, R_X86_64_PC32, pair, rel.addend))

    def _module_tls_offset(self, unit_index: int, symbol: Symbol) -> int | None:
        """Offset of an existing thread-local variable in the base object's TLS block (None: refused)."""
        assert self.base is not None
        unit = self.units[unit_index]
        if symbol.section == "SHN_UNDEF":
            own = self.base.binary.global_symbol(symbol.name) or self.base.non_local_definition(symbol.name)
            if own is not None and own.type == "STT_TLS":
                return own.address  # st_value of a TLS symbol in a linked object is its block offset
            self.refuse(symbol.name, unit.file, model.LIBRARY_DATA_REFERENCE,
                        f"new code uses {symbol.name}, a thread-local variable of another library; "
                        "the patch cannot address a library's TLS")
            return None
        old = self._old_definition(unit_index, symbol)
        if old is None or symbol.type != "STT_TLS":
            self.refuse(symbol.name, unit.file, model.NEW_TLS_VARIABLE,
                        f"new thread-local variable {symbol.name}: threads already running have no room for it")
            return None
        return self.base.tls_offset(self.base.symbol_address(old.item, old.obj, old.symbol))

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

    def _refused_symbol(self, name: str) -> int:
        return self._bound(("refused", name), PatchSymbol(name, fmt.STT_NOTYPE, binding={"bind": "refused"}))

    # -- binding ---------------------------------------------------------------

    def _bind(self, unit_index: int, rel: Relocation) -> tuple[int, int]:
        """The patch symbol a relocation is resolved against, and the addend to use with it."""
        unit = self.units[unit_index]
        target = resolve(unit.new, rel)
        where = f"{unit.new.sections[rel.section].name}+{rel.offset:#x}" if rel.section is not None else "?"
        if target.kind == "undecodable":
            self.refuse(where, unit.file, model.UNSUPPORTED_RELOCATION,
                        f"the instruction holding the relocation at {where} does not decode; what it refers "
                        "to cannot be told")
            return self._refused_symbol(where), 0
        if target.kind == "section" and target.section is not None and not read_only(target.section):
            self.refuse(where, unit.file, model.UNRESOLVED_DATA_REFERENCE,
                        f"{where} refers to {target.section.name}+{target.offset:#x}, where no variable is; "
                        "binding it could split a running variable in two")
            return self._refused_symbol(where), 0
        if target.kind in ("string", "constant", "piece", "section") and target.section is not None:
            # Pools, jump tables and unnamed read-only ranges travel whole: relocate against
            # the copy's start with the exact byte offset the original symbol + addend meant.
            original = unit.new.symbols[rel.symbol]
            offset_in_section = (0 if original.type == "STT_SECTION" else original.value) + rel.addend
            owner = next((body for body in unit.bodies.values() if body.owns(target.section.index)), None)
            if owner is not None and (unit_index, owner.name) not in self.included_functions:
                self._include_function(unit_index, owner.name, self._new_or_replaced(unit_index, owner.name))
            return self._section_start_symbol(unit_index, target.section), offset_in_section
        if target.kind == "external":
            return self._bind_external(unit_index, target.name, rel), rel.addend
        assert target.symbol is not None
        if target.symbol.type == "STT_FUNC":
            point = reference_point(unit.new, rel)
            at_entry = point is not None and point == target.symbol.value
            return self._bind_function(*self._canonical(unit_index, target.symbol), at_entry), target.offset
        return self._bind_variable(*self._canonical(unit_index, target.symbol), rel.type), target.offset

    def _new_or_replaced(self, unit_index: int, name: str) -> str:
        body = self.units[unit_index].bodies[name]
        return "replaced" if self._old_definition(unit_index, body.symbol) is not None else "new"

    def _bind_function(self, unit_index: int, symbol: Symbol, at_entry: bool) -> int:
        """A function of the new object: its old entry if the base has it, else the patch's copy.

        A call or a taken address at an existing function's entry binds to the
        old entry, its own included: the jump there leads to the new code, a
        stored pointer compares equal with the base's and stays valid after a
        revert.  Its interior (a jump-table entry, its cold part) and new
        functions resolve inside the patch.
        """
        unit = self.units[unit_index]
        body_name = self._body_name(unit, symbol)
        old = self._old_definition(unit_index, symbol)
        if at_entry and body_name == symbol.name and old is not None:
            return self._bind_base(old)
        if (unit_index, body_name) not in self.included_functions:
            self._include_function(unit_index, body_name, self._new_or_replaced(unit_index, body_name))
        assert isinstance(symbol.section, int)
        section = unit.new.sections[symbol.section]
        number = self._copy_section_range(unit_index, section, *self._part_range(unit, symbol))
        return self._define_symbol(unit_index, symbol.name, PatchSymbol(
            symbol.name, fmt.STT_FUNC, number, 0, symbol.size))

    def _bind_variable(self, unit_index: int, symbol: Symbol, rel_type: int) -> int:
        """A variable of the new object: the running one, unless it is new or changed constant data."""
        unit = self.units[unit_index]
        old = self._old_definition(unit_index, symbol)
        key = (unit_index, symbol.name)
        if old is not None and key not in self.changed_data and key not in self.migrations:
            if symbol.type == "STT_TLS" or rel_type in (R_X86_64_TPOFF32, R_X86_64_GOTTPOFF):
                return self._bind_tls(old)
            return self._bind_base(old)
        if symbol.type == "STT_TLS":
            self.refuse(symbol.name, unit.file, model.NEW_TLS_VARIABLE,
                        f"new thread-local variable {symbol.name}: threads already running have no room for it")
            return self._bound(("refused", symbol.name), PatchSymbol(symbol.name, fmt.STT_TLS,
                                                                      binding={"bind": "refused"}))
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

    def _carry_data(self, unit_index: int, symbol: Symbol) -> int:
        """Put a new (or changed constant) variable into the patch: its own bytes, not its whole section."""
        key = (unit_index, symbol.name)
        self.included_data.setdefault(key, symbol)
        if key in self._defined_symbols:
            return self._defined_symbols[key]
        if symbol.section == "SHN_COMMON":
            section = PatchSection(f".bss.{symbol.name}", fmt.SHF_WRITE | fmt.SHF_ALLOC, symbol.value or 8,
                                   size=symbol.size, nobits=True)
            number = self.content.add_section(section)
            return self._define_symbol(unit_index, symbol.name, PatchSymbol(
                symbol.name, fmt.STT_OBJECT, number, 0, symbol.size))
        assert isinstance(symbol.section, int)
        section = self.units[unit_index].new.sections[symbol.section]
        start, end = (symbol.value, symbol.value + symbol.size) if symbol.size else (0, section.size)
        # A cycle (a new vtable → its destructor → the vtable) comes back here while the copy's relocations
        # are bound: the copy exists by then (_copy_section_range numbers it first), and so does the symbol.
        number = self._copy_section_range(unit_index, section, start, end)
        return self._define_symbol(unit_index, symbol.name, PatchSymbol(
            symbol.name, fmt.STT_OBJECT, number, symbol.value - start, symbol.size))

    def _bind_base(self, old: OldDefinition) -> int:
        assert self.base is not None
        address = self.base.symbol_address(old.item, old.obj, old.symbol)
        kind = fmt.STT_FUNC if old.symbol.type == "STT_FUNC" else fmt.STT_OBJECT
        return self._bound(("base", address), PatchSymbol(old.symbol.name, kind, binding={
            "bind": fmt.BIND_BASE, "address": address, "file": old.file}))

    def _bind_tls(self, old: OldDefinition) -> int:
        assert self.base is not None
        offset = self.base.tls_offset(self.base.symbol_address(old.item, old.obj, old.symbol))
        return self._bound(("tls", offset), PatchSymbol(old.symbol.name, fmt.STT_TLS, binding={
            "bind": fmt.BIND_TLS, "offset": offset}))

    def _bind_external(self, unit_index: int, name: str, rel: Relocation) -> int:
        """An undefined symbol: another changed object's, the program's own, or a library's."""
        assert self.base is not None
        if name in self._new_globals:
            defining_unit, symbol = self._new_globals[name]
            if symbol.type == "STT_FUNC":
                return self._bind_function(defining_unit, symbol, at_entry=reference_point(
                    self.units[unit_index].new, rel) == 0)
            return self._bind_variable(defining_unit, symbol, rel.type)
        own = self.base.binary.global_symbol(name) or self.base.non_local_definition(name)
        if own is not None:
            if own.type == "STT_TLS":  # st_value of a TLS symbol in a linked program is its block offset
                return self._bound(("tls", own.address), PatchSymbol(name, fmt.STT_TLS, binding={
                    "bind": fmt.BIND_TLS, "offset": own.address}))
            kind = fmt.STT_FUNC if own.type == "STT_FUNC" else fmt.STT_OBJECT
            return self._bound(("base", own.address), PatchSymbol(name, kind, binding={
                "bind": fmt.BIND_BASE, "address": own.address}))
        return self._bind_library(unit_index, name, rel)

    def _bind_library(self, unit_index: int, name: str, rel: Relocation) -> int:
        """A library symbol the base program does not have: checked against the base's libraries now.

        New code may call a library function (through a stub in the patch) or
        take a pointer to a library variable from a GOT slot; it cannot read a
        library variable PC-relatively (a PIE's direct access, which counts on
        a COPY relocation the running program does not have: the variable is
        out of a 32-bit displacement's reach), nor use 32-bit absolute
        addresses or a library's TLS.
        """
        assert self.base is not None
        unit = self.units[unit_index]
        imported = self.base.binary.import_types.get(name)
        if imported is not None:  # the base imports it already: the linker recorded what it is
            export = None
            kind = {"STT_OBJECT": "variable", "STT_TLS": "tls"}.get(imported, "function")
        else:
            scope = self.base.libraries
            export = scope.find(name)
            if export is None and not scope.missing:
                searched = ", ".join(path.rsplit("/", 1)[-1] for path in scope.libraries) or "none"
                self.refuse(name, unit.file, model.UNDEFINED_SYMBOL,
                            f"the patch uses {name}, which neither the program nor its libraries ({searched}) define")
                return self._refused_symbol(name)
            kind = export.kind if export is not None else "function"
        if kind == "tls" or rel.type in (R_X86_64_TPOFF32, R_X86_64_GOTTPOFF):
            self.refuse(name, unit.file, model.LIBRARY_DATA_REFERENCE,
                        f"new code uses {name}, a thread-local variable of {export.library if export else 'a library'}; "
                        "the patch cannot address a library's TLS")
            return self._refused_symbol(name)
        if rel.type in (R_X86_64_32, R_X86_64_32S):
            self.refuse(name, unit.file, model.UNSUPPORTED_RELOCATION,
                        f"new code takes the address of library symbol {name} as a 32-bit constant; "
                        "library addresses do not fit")
            return self._refused_symbol(name)
        if kind == "variable" and self._lea_of(unit, rel):
            self._got_loads.add((unit_index, rel.section, rel.offset))
        elif kind == "variable" and rel.type not in LIBRARY_DATA_RELOCATIONS and not self._is_call(unit, rel):
            self.refuse(name, unit.file, model.LIBRARY_DATA_REFERENCE,
                        f"new code reads {name}, a variable of {export.library if export else 'a library'}, "
                        "directly (PC-relative); the running program has no copy of it (its release never used it), "
                        "and the library's is out of reach")
            return self._refused_symbol(name)
        return self._bound(("dynamic", name), PatchSymbol(name, fmt.STT_NOTYPE, binding={
            "bind": fmt.BIND_DYNAMIC, "imported_by_base": name in self.base.binary.imports}))

    @staticmethod
    def _lea_of(unit: Unit, rel: Relocation) -> bool:
        """Is *rel* the displacement of ``lea sym(%rip), %reg``, sym's address exactly?

        A PIE takes the address of a library variable this way (typeinfo for
        ``throw``, ``std::cout`` for ``operator<<``), counting on a COPY
        relocation. The same 7 bytes as ``mov sym@GOTPCREL(%rip), %reg`` load
        the address from a GOT slot of the patch instead: the linker's GOTPCRELX
        relaxation, undone.
        """
        if rel.type != R_X86_64_PC32 or rel.section is None:
            return False
        instruction = code_index(unit.new).instruction_at(rel.section, rel.offset)
        if instruction is None or instruction.mnemonic != "lea" or instruction.end != rel.offset + 4:
            return False
        code = unit.new.sections[rel.section].data
        modrm, opcode = code[rel.offset - 1], code[rel.offset - 2]
        return opcode == 0x8D and modrm & 0xC7 == 0x05 and rel.addend == -4

    @staticmethod
    def _is_call(unit: Unit, rel: Relocation) -> bool:
        if rel.type == R_X86_64_PLT32:
            return True
        if rel.type != R_X86_64_PC32 or rel.section is None:
            return False
        instruction = code_index(unit.new).instruction_at(rel.section, rel.offset)
        return instruction is not None and instruction.mnemonic.startswith(CALL_MNEMONICS)

    # -- unwind tables (ehframe.py) ------------------------------------------------

    def carry_unwind_tables(self) -> None:
        """One ``.eh_frame`` for all copied code: the FDEs of each copy and their CIEs, then a terminator.

        An FDE's ``pc_begin`` binds to the patch's copy of the code (never to
        the old entry, as a call would), its LSDA to the patch's copy of the
        ``.gcc_except_table``, a CIE's personality to the ``DW.ref`` word.
        What the exception tables bind may include more code (rarely: a
        type table naming data that names functions); the tables are then
        made again, until every copy of code has its frames.
        """
        while True:
            copies = len(self._section_copies)
            frames, handlers = self._frame_section()
            self.include_references()
            if len(self._section_copies) == copies or not frames.data:
                break
        if frames.data:
            self.unwind = {"section": self.content.add_section(frames), "handlers": handlers}

    def _frame_section(self) -> tuple[PatchSection, bool]:
        """The ``.eh_frame`` of the code copied so far (empty: none has frames), and if it has handlers."""
        frames = PatchSection(".eh_frame", fmt.SHF_ALLOC, 8)
        data = bytearray()
        handlers = False
        for unit_index, unit in enumerate(self.units):
            copies = self._code_copies(unit_index)
            if not copies:
                continue
            try:
                section, records = ehframe.frame_records(unit.new)
            except ehframe.EhFrameError as exc:
                self.refuse(".eh_frame", unit.file, model.UNSUPPORTED_RELOCATION, str(exc))
                continue
            placed: dict[int, int] = {}  # CIE offset in the object -> in the patch's .eh_frame
            by_offset = {record.offset: record for record in records}
            for record in records:
                begin = record.pc_begin() if record.cie is not None else None
                copy = self._copy_holding(unit, copies, begin) if begin is not None else None
                if copy is None:
                    continue
                assert record.cie is not None and section is not None
                if record.cie not in placed:
                    cie = by_offset[record.cie]
                    placed[record.cie] = len(data)
                    handlers |= cie.has_personality
                    self._carry_record(unit_index, cie, cie.data, len(data), frames)
                    data += cie.data
                fde = ehframe.with_cie_pointer(record.data, len(data) + 4, placed[record.cie])
                self._carry_record(unit_index, record, fde, len(data), frames, begin, copy)
                data += fde
        frames.data = bytes(data) + ehframe.TERMINATOR if data else b""
        return frames, handlers

    def _code_copies(self, unit_index: int) -> list[tuple[int, int, int, int]]:
        """(section, start, end, copy number) of every code range of this unit the patch holds."""
        unit = self.units[unit_index]
        return [(section, start, start + self.content.sections[number].byte_size, number)
                for (index, section, start), number in self._section_copies.items()
                if index == unit_index and unit.new.sections[section].is_code]

    @staticmethod
    def _copy_holding(unit: Unit, copies: list[tuple[int, int, int, int]],
                      rel: Relocation) -> tuple[int, int] | None:
        """The copy (number, start) holding the code an FDE's pc_begin relocation points at."""
        symbol = unit.new.symbols[rel.symbol]
        if not isinstance(symbol.section, int):
            return None
        point = symbol.value + rel.addend
        for section, start, end, number in copies:
            if section == symbol.section and start <= point < end:
                return number, point - start
        return None

    def _carry_record(self, unit_index: int, record: ehframe.FrameRecord, data: bytes, at: int,
                      frames: PatchSection, begin: Relocation | None = None,
                      copy: tuple[int, int] | None = None) -> None:
        for rel in record.relocations:
            offset = at + rel.offset - record.offset
            if rel is begin and copy is not None:
                number, point = copy
                start = self._define_symbol(unit_index, f"\0copy {number}", PatchSymbol(
                    f"{self.content.sections[number].name}@{self.units[unit_index].file}", fmt.STT_FUNC, number))
                frames.relocations.append(PatchRelocation(offset, rel.type, start, point))
                continue
            if rel.type not in fmt.SUPPORTED_RELOCATIONS:
                self.refuse(".eh_frame", self.units[unit_index].file, model.UNSUPPORTED_RELOCATION,
                            f"relocation type {rel.type} in .eh_frame+{rel.offset:#x} is not supported")
                continue
            symbol_index, addend = self._bind(unit_index, rel)
            frames.relocations.append(PatchRelocation(offset, rel.type, symbol_index, addend))

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

    def _points_at_changed_data(self, unit_index: int, symbol: Symbol) -> bool:
        """A variable whose initial value points at changed constant data: its value now means other data."""
        if not self.changed_data or not isinstance(symbol.section, int):
            return False
        section = self.units[unit_index].new.sections[symbol.section]
        return any(symbol.value <= rel.offset < symbol.value + symbol.size and self._is_changed_data(unit_index, rel)
                   for rel in section.relocations)

    def _old_cold_parts(self, old: OldDefinition) -> list[tuple[int, int]]:
        """Where the base has the old function's .cold parts: threads there are still in it."""
        assert self.base is not None
        old_body = old.bodies.get(old.symbol.name)
        if old_body is None:
            return []
        return [(self.base.section_address(old.item, part.section.name) + part.start, part.end - part.start)
                for part in old_body.parts if part.role == "cold"]

    def _entry_copy(self, address: int, size: int, parts: list[tuple[int, int]]) -> tuple[dict | None, str]:
        """The old function's entry copy for the applier's gate, or why there is none (see entrycopy.py)."""
        assert self.base is not None
        binary = self.base.binary
        try:
            copy = entrycopy.entry_copy(binary.bytes_at(address, size), address,
                                        [(start, binary.bytes_at(start, length)) for start, length in parts])
        except (entrycopy.EntryNotCopyable, ValueError) as exc:
            return None, str(exc)
        return copy.to_json(), ""

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
            symbol_index = self._defined_symbols[(unit_index, name)]
            if how == "new":
                self.result.new_functions.append(model.FunctionEntry(
                    name, unit.file, new_size, reached="called from patch code", symbol=symbol_index))
                continue
            old = self._old_definition(unit_index, body.symbol)
            assert old is not None
            address = self.base.symbol_address(old.item, old.obj, old.symbol)
            if any(entry.old_address == address for entry in self.result.replaced):
                continue  # an inline function or template changed in several objects: one copy runs (COMDAT)
            section = old.obj.sections[old.symbol.section].name  # type: ignore[index]
            room = self.base.binary.room_at(address)
            old_parts = self._old_cold_parts(old)
            entry = model.FunctionEntry(old.symbol.name, old.file, new_size, address, old.symbol.size,
                                        self.base.binary.sha256_at(address, old.symbol.size), room,
                                        old_parts=old_parts, symbol=symbol_index)
            entry.entry_copy, entry.entry_copy_refused = self._entry_copy(address, max(old.symbol.size, room),
                                                                          old_parts)
            self.result.replaced.append(entry)
            if room < JUMP_SIZE:
                self.refuse(name, old.file, model.FUNCTION_TOO_SHORT,
                            f"{name} ({section}) has {room} bytes before the next symbol, a jump needs {JUMP_SIZE}")
        for (unit_index, name), symbol in sorted(self.included_data.items(),
                                                 key=lambda item: (self.units[item[0][0]].file, item[0][1])):
            if (unit_index, name) in self.migrations:
                continue  # listed as migrated: the new storage of an existing variable
            unit = self.units[unit_index]
            section = unit.new.sections[symbol.section].name if isinstance(symbol.section, int) else "COMMON"
            self.result.new_data.append(model.DataEntry(name, unit.file, symbol.size, section,
                                                        self._defined_symbols[(unit_index, name)]))


def _lea_as_got_load(code: bytes, displacement: int) -> bytes:
    """``lea d(%rip), %reg`` → ``mov d(%rip), %reg``: the opcode before the ModRM byte, 8D → 8B."""
    opcode = displacement - 2
    return code[:opcode] + b"\x8b" + code[opcode + 1:]


def _kind(symbol: Symbol) -> str:
    """What a symbol names, for matching across versions: code, data or thread-local data."""
    return {"STT_FUNC": "code", "STT_TLS": "tls"}.get(symbol.type, "data")
