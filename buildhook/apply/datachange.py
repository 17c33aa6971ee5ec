"""Data changes at apply time: migrations checked in the target, and the author's hooks.

A migration (docs/data-changes.md) moves an existing variable to new
storage in the patch region, which holds the new build's initial value.
With the world stopped, right before the commit:

* ``size`` — the old variable's running bytes must still equal its initial
  bytes (pointer words plus the load bias): then the new value is what a
  restarted process would have, and it is used.  Otherwise the patch is
  refused, naming the variable.
* ``value`` — the same check; if the bytes differ, the process changed it,
  and its running value is kept: copied into the new storage (same size).
* ``transform`` — the author's ``fn(new, old)`` runs on one stopped thread
  and fills the new storage; no check.

A migration the live patch did already (a replacing cumulative patch keeps
its variables) is not done again.  Hooks run on one thread, the world
running: PRE before the stop (non-zero refuses), POST after the commit.

Standard library only.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from buildhook.apply.inject import CallFailed
from buildhook.apply.loader import PatchLayout
from buildhook.po.names import demangle
from buildhook.po.reader import PatchObject

HOOK_TIMEOUT_S = 5.0  # a hook still running after this is stopped and counts as failed


class MigrationRefused(Exception):
    """A variable cannot be migrated in this process now (the patch is refused, nothing changed)."""


class HookFailed(Exception):
    """A hook refused (PRE: non-zero), faulted or did not return."""


@dataclass
class Migration:
    """One variable to migrate in one process, with run-time addresses."""

    name: str
    file: str
    kind: str
    old: int
    new: int
    old_size: int
    new_size: int
    expected: bytes          # the old variable's initial bytes as this process started with them
    transform: int = 0       # run-time address of the transform function
    transform_name: str = ""
    done_before: bool = False  # the live patch migrated it already: its storage is reused

    def result(self, outcome: str) -> dict[str, object]:
        return {"name": demangle(self.name), "file": self.file, "kind": self.kind, "outcome": outcome}


def plan_migrations(patch: PatchObject, layout: PatchLayout, bias: int, kept: dict[int, int]) -> list[Migration]:
    """The patch's migrations in a process whose target has load bias *bias* (*kept*: variables of
    the live patch this one reuses, by symbol)."""
    planned = []
    for entry in patch.metadata.get("migrations", []):
        symbol_index = int(entry["symbol"])
        symbol = patch.symbols[symbol_index]
        new = kept.get(symbol_index) or layout.address_of_section(symbol.section) + symbol.value
        expected = bytearray(bytes.fromhex(entry["initial"]))
        for at in entry["relative"]:
            value = (struct.unpack_from("<Q", expected, at)[0] + bias) & (2**64 - 1)
            struct.pack_into("<Q", expected, at, value)
        transform = 0
        if entry["kind"] == "transform":
            function = patch.symbols[int(entry["transform_symbol"])]
            transform = layout.address_of_section(function.section) + function.value
        planned.append(Migration(entry["name"], entry["file"], entry["kind"], int(entry["old_address"]) + bias, new,
                                 int(entry["old_size"]), int(entry.get("new_size", entry["old_size"])),
                                 bytes(expected), transform, str(entry.get("transform", "")), symbol_index in kept))
    return planned


def migrate(migrations: list[Migration], read: Callable[[int, int], bytes], write: Callable[[int, bytes], None],
            call: Callable[[int, int, int], int]) -> list[dict[str, object]]:
    """Check and migrate every variable, the world stopped (before the commit's writes).

    Raises MigrationRefused before anything is written if a size migration
    finds its variable changed; a transform that faults or does not return
    raises it too (what it wrote is in the new storage, which nothing runs
    yet).
    """
    outcomes = []
    writes = []
    for migration in migrations:
        if migration.done_before:
            outcomes.append(migration.result("already migrated by the live patch"))
            continue
        if migration.kind == "transform":
            continue
        running = read(migration.old, migration.old_size)
        if running == migration.expected:
            outcomes.append(migration.result("migrated: new initial value"))
        elif migration.kind == "size":
            raise MigrationRefused(
                f"variable {demangle(migration.name)} ({migration.file}) has changed since the process started "
                f"(its {migration.old_size} bytes are no longer their initial value), so it cannot be moved to "
                f"its new {migration.new_size}-byte storage; a BUILDHOOK_TRANSFORM({migration.name}, fn) can migrate it")
        else:
            writes.append((migration.new, running))
            outcomes.append(migration.result("running value kept"))
    for migration in migrations:
        if migration.kind == "transform" and not migration.done_before:
            try:
                call(migration.transform, migration.new, migration.old)
            except CallFailed as exc:
                what = str(exc).replace(f"the function at {migration.transform:#x} ", "")
                raise MigrationRefused(f"the transform {demangle(migration.transform_name)} of "
                                       f"{demangle(migration.name)} ({migration.file}) {what}") from exc
            outcomes.append(migration.result("transformed"))
    for address, data in writes:
        write(address, data)
    return outcomes


@dataclass
class Hooks:
    """A patch's hooks by kind: (name, run-time address)."""

    by_kind: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    @classmethod
    def of(cls, patch: PatchObject, layout: PatchLayout) -> Hooks:
        hooks = cls()
        for entry in patch.metadata.get("hooks", []):
            symbol = patch.symbols[int(entry["symbol"])]
            hooks.by_kind.setdefault(entry["kind"], []).append(
                (entry["name"], layout.address_of_section(symbol.section) + symbol.value))
        return hooks

    def to_record(self) -> dict[str, list[list]]:
        return {kind: [[name, address] for name, address in found] for kind, found in self.by_kind.items()}

    @classmethod
    def from_record(cls, record: dict[str, list[list]]) -> Hooks:
        return cls({kind: [(str(name), int(address)) for name, address in found] for kind, found in record.items()})


def run_hooks(hooks: list[tuple[str, int]], kind: str,
              call: Callable[[int, float], tuple[int, str]]) -> list[dict[str, object]]:
    """Run hooks of one kind, in order; a PRE hook's non-zero result, a fault or a timeout raises HookFailed.

    *call(address, deadline)* runs one in the target and returns its %rax and what it wrote to stdout
    and stderr.
    """
    results = []
    for name, address in hooks:
        started = time.perf_counter()
        try:
            value, output = call(address, time.monotonic() + HOOK_TIMEOUT_S)
        except HookFailed as exc:
            raise HookFailed(f"{kind.replace('_', '-')} hook {demangle(name)} {exc}") from exc
        returned = struct.unpack("<i", struct.pack("<I", value & 0xFFFFFFFF))[0] if kind.startswith("pre") else None
        results.append({"kind": kind, "name": demangle(name), "returned": returned, "output": output,
                        "ms": round((time.perf_counter() - started) * 1000, 3)})
        if returned:
            raise HookFailed(f"{kind.replace('_', '-')} hook {demangle(name)} returned {returned}")
    return results
