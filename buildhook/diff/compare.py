"""correlate → compare, for one pair of objects (DESIGN §3).

*Correlate* decides which old symbol is which new symbol.  Names match
directly, except static locals, which gcc numbers per translation unit
(``counter.3`` ↔ ``counter.5`` when a function added earlier in the file
has its own static): a writable one is matched by base name and by the
functions and variables that use it (and, when one function owns several,
by the relocation slot that refers to each); a read-only one (``__FUNCTION__.7``, a ``static
const`` table) has no running value, so it is matched by base name and
content, and one without a match is simply new data, never a refusal.

*Compare* says whether a function changed: its bytes plus its relocations,
each reduced to what it means (correlated symbol, string content, constant
bytes) with the addend rebased, so renumbering and string-pool offsets are
not changes while a different string or a different callee is.  A change
that only moves the ``__LINE__`` argument of an assertion-failure call is
recognised (kpatch does the same) and is not a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from buildhook.diff.bodies import STATIC_LOCAL, FunctionBody, data_symbols, function_bodies, referenced_targets
from buildhook.diff.instructions import line_argument_only
from buildhook.diff.targets import Target, read_only, resolve
from buildhook.elf.objfile import ObjectFile, Symbol

# Calls whose third argument is __LINE__: a difference only in that
# argument is a line shift, not a change of behaviour.
LINE_REPORTING_CALLS = frozenset({"__assert_fail", "__assert_perror_fail", "__assert", "__assert_rtn"})


@dataclass
class Correlation:
    """Old symbol name → new symbol name for the symbols whose names differ or vanish."""

    old_to_new: dict[str, str] = field(default_factory=dict)
    new_to_old: dict[str, str] = field(default_factory=dict)
    removed_static_locals: list[tuple[Symbol, set[str]]] = field(default_factory=list)

    def new_name(self, old_name: str) -> str | None:
        return self.old_to_new.get(old_name)

    def old_name(self, new_name: str) -> str | None:
        return self.new_to_old.get(new_name)

    def pair(self, old_name: str, new_name: str) -> None:
        self.old_to_new[old_name] = new_name
        self.new_to_old[new_name] = old_name


class ObjectComparison:
    """One changed object pair, correlated and compared."""

    def __init__(self, old: ObjectFile, new: ObjectFile) -> None:
        self.old = old
        self.new = new
        self.old_bodies = function_bodies(old)
        self.new_bodies = function_bodies(new)
        self.old_data = data_symbols(old)
        self.new_data = data_symbols(new)
        self.correlation = self._correlate()
        self.changed_functions = self._changed_functions()

    # -- correlate ---------------------------------------------------------

    def _static_local_users(self, obj: ObjectFile, bodies: dict[str, FunctionBody],
                            data: dict[str, Symbol]) -> dict[str, set[str]]:
        """Static local → the functions and variables whose relocations refer to it.

        Variables count too: haproxy's INITCALL registers ``&(struct x){...}``
        compound literals (``__compound_literal.N``) from a static
        ``__initcb_<line>`` record, and no function refers to them at all.
        """
        users: dict[str, set[str]] = {}

        def note(user: str, target: Target) -> None:
            symbol = target.symbol
            if target.kind == "symbol" and symbol is not None and symbol.is_local \
                    and symbol.type in ("STT_OBJECT", "STT_TLS") and STATIC_LOCAL.match(symbol.name):
                users.setdefault(symbol.name, set()).add(user)

        for body in bodies.values():
            for _part, _rel, target in referenced_targets(obj, body):
                note(body.name, target)
        for variable in data.values():
            if isinstance(variable.section, int):
                for rel in obj.sections[variable.section].relocations:
                    if variable.value <= rel.offset < variable.value + variable.size:
                        note(variable.name, resolve(obj, rel))
        return users

    def _correlate(self) -> Correlation:
        correlation = Correlation()
        names_old = {symbol.name for symbol in self.old.symbols if symbol.name}
        names_new = {symbol.name for symbol in self.new.symbols if symbol.name}
        for name in names_old & names_new:
            if not STATIC_LOCAL.match(name) or name not in self.old_data:
                correlation.pair(name, name)
        old_users = self._static_local_users(self.old, self.old_bodies, self.old_data)
        new_users = self._static_local_users(self.new, self.new_bodies, self.new_data)
        old_statics = [s for s in self.old_data.values() if s.is_local and STATIC_LOCAL.match(s.name)]
        new_statics = [s for s in self.new_data.values() if s.is_local and STATIC_LOCAL.match(s.name)]
        unmatched_new = [s for s in new_statics if not self._is_constant(self.new, s)]
        new_constants: dict[tuple[object, ...], list[Symbol]] = {}
        for symbol in new_statics:
            if self._is_constant(self.new, symbol):
                new_constants.setdefault(self._constant_key(self.new, symbol), []).append(symbol)
        for old_symbol in sorted(old_statics, key=lambda s: s.name):
            if self._is_constant(self.old, old_symbol):
                self._correlate_constant(correlation, old_symbol, new_constants, old_users, new_users)
                continue
            base = STATIC_LOCAL.match(old_symbol.name)["base"]  # type: ignore[index]
            users = old_users.get(old_symbol.name, set())
            candidates = [s for s in unmatched_new if STATIC_LOCAL.match(s.name)["base"] == base]  # type: ignore[index]
            exact = [s for s in candidates if new_users.get(s.name, set()) == users and users]
            overlapping = [s for s in candidates if new_users.get(s.name, set()) & users]
            chosen = exact[0] if len(exact) == 1 else overlapping[0] if len(overlapping) == 1 else None
            if chosen is None and not users and len(candidates) == 1:
                chosen = candidates[0]
            if chosen is None and len(exact) > 1:
                chosen = self._positional_match(old_symbol, users, exact)
            if chosen is None:
                correlation.removed_static_locals.append((old_symbol, users))
                correlation.old_to_new.pop(old_symbol.name, None)
                continue
            unmatched_new.remove(chosen)
            correlation.pair(old_symbol.name, chosen.name)
        return correlation

    def _positional_match(self, old_symbol: Symbol, users: set[str], candidates: list[Symbol]) -> Symbol | None:
        """The candidate every user refers to in the same relocation slot where it used *old_symbol*.

        One function can own several same-named statics (a report-once macro
        used twice): users cannot tell them apart, but if each user's old and
        new relocation lists line up one to one, slot i names the same
        variable in both.  Any user whose lists do not line up, or two
        different answers, leave it unmatched (and refused).
        """
        answers: set[str] = set()
        for user in users:
            old_body, new_body = self.old_bodies.get(user), self.new_bodies.get(user)
            if old_body is None or new_body is None:
                return None
            old_refs = referenced_targets(self.old, old_body)
            new_refs = referenced_targets(self.new, new_body)
            if len(old_refs) != len(new_refs):
                return None
            for (_, _, old_target), (_, _, new_target) in zip(old_refs, new_refs):
                if old_target.symbol is not None and old_target.symbol.name == old_symbol.name:
                    if new_target.symbol is None:
                        return None
                    answers.add(new_target.symbol.name)
        chosen = [candidate for candidate in candidates if candidate.name in answers]
        return chosen[0] if len(answers) == 1 and len(chosen) == 1 else None

    @staticmethod
    def _is_constant(obj: ObjectFile, symbol: Symbol) -> bool:
        """A static local in storage that is read-only at run time: its bytes are its whole meaning."""
        return isinstance(symbol.section, int) and read_only(obj.sections[symbol.section])

    def _constant_key(self, obj: ObjectFile, symbol: Symbol) -> tuple[object, ...]:
        """Base name, bytes and relocation targets (by raw name) of a read-only static local."""
        assert isinstance(symbol.section, int)
        section = obj.sections[symbol.section]
        targets = tuple((rel.offset - symbol.value, rel.type, obj.symbols[rel.symbol].name, rel.addend)
                        for rel in section.relocations if symbol.value <= rel.offset < symbol.value + symbol.size)
        base = STATIC_LOCAL.match(symbol.name)["base"]  # type: ignore[index]
        return (base, self.data_bytes(obj, symbol), targets)

    def _correlate_constant(self, correlation: Correlation, old_symbol: Symbol,
                            new_constants: dict[tuple[object, ...], list[Symbol]],
                            old_users: dict[str, set[str]], new_users: dict[str, set[str]]) -> None:
        """Pair a read-only static local with an unpaired new one of equal content (same users first).

        Equal content means equal meaning, so any equal candidate is right; an
        unpaired one is not a refusal: the functions using it differ and are
        replaced, carrying their own copy of the new constant.
        """
        equal = new_constants.get(self._constant_key(self.old, old_symbol), [])
        if not equal:
            return
        users = old_users.get(old_symbol.name, set())
        chosen = next((s for s in equal if new_users.get(s.name, set()) == users), equal[0])
        equal.remove(chosen)
        correlation.pair(old_symbol.name, chosen.name)

    # -- compare -----------------------------------------------------------

    def target_key(self, target: Target, old_side: bool) -> tuple[object, ...]:
        """A target reduced to what it means, in the new object's names."""
        if target.kind == "symbol" and target.symbol is not None:
            name = target.symbol.name
            if not target.symbol.is_local:  # one name in the whole link, defined here or not
                return ("global", name, target.offset)
            if old_side:
                mapped = self.correlation.new_name(name)
                name = mapped if mapped is not None else f"<old-only {name}>"
            return ("symbol", name, target.offset)
        if target.kind in ("string", "constant"):
            return (target.kind, target.content, target.offset)
        if target.kind == "piece":
            return ("piece", target.content, target.pointers, target.offset)
        if target.kind == "undecodable":
            return ("undecodable", old_side)  # never equal: what it refers to is unknown
        if target.kind == "section" and target.section is not None:
            return ("section", target.section.name, target.offset)
        return ("global", target.name, target.offset)

    def signature(self, body: FunctionBody, old_side: bool) -> list[tuple[object, ...]]:
        obj = self.old if old_side else self.new
        result: list[tuple[object, ...]] = []
        for part in body.parts:
            relocations = tuple((rel.offset - part.start, rel.type, self.target_key(resolve(obj, rel), old_side))
                                for rel in part.relocations)
            result.append((part.role, part.data, relocations))
        return result

    def _changed_functions(self) -> set[str]:
        changed = set()
        for name, new_body in self.new_bodies.items():
            old_name = self.correlation.old_name(name)
            old_body = self.old_bodies.get(old_name) if old_name else None
            if old_body is None:
                continue
            old_signature = self.signature(old_body, True)
            new_signature = self.signature(new_body, False)
            if old_signature == new_signature:
                continue
            if self._line_numbers_only(old_signature, new_signature, new_body):
                continue  # only __LINE__ moved: not a change
            changed.add(name)
        return changed

    def _line_numbers_only(self, old_sig: list[tuple[object, ...]], new_sig: list[tuple[object, ...]],
                           body: FunctionBody) -> bool:
        """Whether two signatures differ only in __LINE__ arguments of assertion calls.

        Only the line-number argument of a reporting call may differ: the
        immediate of a ``mov $imm32, %edx`` whose value reaches the call
        unchanged (instructions.line_argument_only).  Everything else,
        relocations included, must be identical.
        """
        if len(old_sig) != len(new_sig):
            return False
        for (old_role, old_data, old_rels), (new_role, new_data, new_rels) in zip(old_sig, new_sig):
            if old_role != new_role or old_rels != new_rels or len(old_data) != len(new_data):  # type: ignore[arg-type]
                return False
            if old_data == new_data:
                continue
            report_calls = [offset for offset, rel_type, key in new_rels  # type: ignore[misc]
                            if key[0] == "global" and key[1] in LINE_REPORTING_CALLS]
            differing = [i for i, (a, b) in enumerate(zip(old_data, new_data)) if a != b]  # type: ignore[arg-type]
            if not report_calls or not line_argument_only(new_data, differing, report_calls) \
                    or not line_argument_only(old_data, differing, report_calls):  # type: ignore[arg-type]
                return False
        return True

    # -- data --------------------------------------------------------------

    def data_bytes(self, obj: ObjectFile, symbol: Symbol) -> bytes:
        if not isinstance(symbol.section, int):
            return b""
        section = obj.sections[symbol.section]
        return section.data[symbol.value:symbol.value + symbol.size]

    def data_signature(self, symbol: Symbol, old_side: bool) -> tuple[object, ...]:
        obj = self.old if old_side else self.new
        if not isinstance(symbol.section, int):
            return (symbol.size,)
        section = obj.sections[symbol.section]
        relocations = tuple(
            (rel.offset - symbol.value, rel.type, self.target_key(resolve(obj, rel), old_side))
            for rel in section.relocations if symbol.value <= rel.offset < symbol.value + symbol.size)
        return (self.data_bytes(obj, symbol), relocations)
