"""What a diff concludes: replaced and new functions, new data, refusals, warnings.

Rule ids are stable strings: tests, ``diff --json`` and the patch metadata
use them, and docs/diff.md explains each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from buildhook.po.names import demangle_text

# Refusals: the patch is not written.
STATIC_LOCAL_REMOVED = "static-local-removed"
GLOBAL_SIZE_CHANGED = "global-size-changed"
STRUCT_LAYOUT_CHANGED = "struct-layout-changed"
ENUM_VALUES_CHANGED = "enum-values-changed"
NEW_TLS_VARIABLE = "new-tls-variable"
NEW_CONSTRUCTOR = "new-constructor"
FUNCTION_TOO_SHORT = "function-too-short"
UNREACHABLE_CHANGE = "unreachable-change"
UNSUPPORTED_RELOCATION = "unsupported-relocation"
UNRESOLVED_DATA_REFERENCE = "unresolved-data-reference"
UNDEFINED_SYMBOL = "undefined-symbol"
LIBRARY_DATA_REFERENCE = "library-data-reference"
TRANSFORM_NOT_POSSIBLE = "transform-not-possible"
BAD_MARKER = "bad-marker"
# Warnings: the patch is written, and says this.
INITIAL_VALUE_CHANGED = "initial-value-changed"

PATCH = "patch"
NO_CHANGE = "no-change"
REFUSED = "refused"


@dataclass(frozen=True)
class Finding:
    """A refusal or a warning: which symbol, in which source file, which rule, why."""

    symbol: str
    file: str
    rule: str
    message: str

    def line(self) -> str:
        """One line a patch author can act on."""
        return demangle_text(f"{self.file}: {self.symbol}: {self.message} [{self.rule}]")


@dataclass
class FunctionEntry:
    """A function the patch replaces (jump at its old entry) or adds."""

    name: str
    file: str
    new_size: int
    old_address: int | None = None
    old_size: int | None = None
    old_sha256: str | None = None
    room: int | None = None
    reached: str = "jump at old entry"
    old_parts: list[tuple[int, int]] = field(default_factory=list)  # (address, size) of old .cold parts
    symbol: int = -1  # the patch symbol of its new code (metadata only)
    entry_copy: dict | None = None  # its first instructions, relocatable (entrycopy.py), for the applier's gate
    entry_copy_refused: str = ""  # why there is no entry copy


@dataclass
class DataEntry:
    """A variable the patch carries (new, or a read-only object whose content changed)."""

    name: str
    file: str
    size: int
    section: str
    symbol: int = -1  # its patch symbol (metadata only: a newer patch keeps an older one's running variable)


@dataclass
class MigrationEntry:
    """An existing variable the patch moves into new storage (docs/data-changes.md).

    *kind*: ``size`` (its size changed) or ``value`` (its initial value):
    migrated automatically if its running bytes still equal *initial*
    (checked in the target, *relative* words plus the load bias), or
    ``transform``: the author's function fills the new storage from the old.
    """

    name: str
    file: str
    kind: str
    old_address: int
    old_size: int
    new_size: int
    symbol: int = -1              # its new storage's patch symbol
    initial: bytes = b""          # the base's initial bytes (as linked)
    relative: list[int] = field(default_factory=list)  # offsets of pointer words that get the load bias
    transform: str = ""           # the transform function's name
    transform_symbol: int = -1


@dataclass
class HookEntry:
    """A function the applier calls in the target (``BUILDHOOK_PRE_APPLY`` …)."""

    kind: str
    name: str
    file: str
    symbol: int = -1


@dataclass
class DiffResult:
    """Everything ``buildhook diff`` decided, before the ``.po`` is written."""

    replaced: list[FunctionEntry] = field(default_factory=list)
    new_functions: list[FunctionEntry] = field(default_factory=list)
    new_data: list[DataEntry] = field(default_factory=list)
    refusals: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    migrated: list[MigrationEntry] = field(default_factory=list)
    hooks: list[HookEntry] = field(default_factory=list)
    objects_compared: int = 0

    @property
    def outcome(self) -> str:
        if self.refusals:
            return REFUSED
        if not self.replaced and not self.new_functions:
            return NO_CHANGE
        return PATCH

    def to_json(self) -> dict[str, object]:
        """The ``diff --json`` report.  A refused diff replaces nothing; what it
        would have carried is listed under ``would_*`` for the patch author."""
        functions = {
            "replaced": [{"name": f.name, "file": f.file} for f in self.replaced],
            "new_functions": [{"name": f.name, "file": f.file} for f in self.new_functions],
            "new_data": [{"name": d.name, "file": d.file} for d in self.new_data],
            "migrated": [{"name": m.name, "file": m.file, "kind": m.kind, "transform": m.transform}
                         for m in self.migrated],
            "hooks": [{"kind": h.kind, "name": h.name, "file": h.file} for h in self.hooks],
        }
        refused = self.outcome == REFUSED
        return {
            "outcome": self.outcome,
            **{key: [] if refused else value for key, value in functions.items()},
            **({f"would_{key}": value for key, value in functions.items()} if refused else {}),
            "refused": [{"symbol": r.symbol, "file": r.file, "rule": r.rule, "reason": r.message}
                        for r in self.refusals],
            "warnings": [{"symbol": w.symbol, "file": w.file, "rule": w.rule, "message": w.message}
                         for w in self.warnings],
            "objects_compared": self.objects_compared,
        }
