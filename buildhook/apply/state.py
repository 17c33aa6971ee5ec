"""What is applied, recorded inside the target itself.

Each patch lives in a memfd named ``buildhook:<patch id>``; its first pages
(mapped read-only) hold this record as JSON: the patch id and releases,
every function it redirects (its entry, the bytes the jump replaced, its
gate and entry copy, see gates.py), the region and where its control page
is.  The record is written once, before the patch is committed, and never
changes; what happened to the patch is the commit flag in its control page
(private memory of each process: a forked child has its own), or, for a
member of a patch set, in the first member's (``flag_at``), shared by all:

* prepared — never committed: a leftover of an applier that was stopped
  short; nothing runs its new code, the next apply or revert removes it;
* committed — applied, unless a newer patch that replaces it was committed;
* reverted.

A later applier process finds the records through ``/proc/PID/maps``, reads
them through ``/proc/PID/map_files`` and the flags through process memory,
so ``status`` and ``revert`` need no side files.  Regions of replaced and
reverted patches stay mapped: the process may still hold pointers into
them (strings, function pointers, data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import BinaryIO

from buildhook.apply import gates
from buildhook.apply.process import Mapping, proc_dir, read_maps

STATE_FORMAT = "buildhook-state/2"
MEMFD_PREFIX = "buildhook:"
REGION_PATH = "/memfd:" + MEMFD_PREFIX  # how /proc/PID/maps and fd links name a patch region


@dataclass
class RedirectedFunction:
    name: str
    file: str
    address: int         # run-time address of the old entry
    destination: int     # run-time address of the new code
    original: str        # hex of the bytes the jump replaced
    old_size: int
    old_parts: list[list[int]] = field(default_factory=list)  # run-time [address, size] of old .cold parts
    gate: int = 0        # this patch's gate for the function (the jump at its entry goes there)
    copy: int = 0        # the old function's entry copy (runs the old function), this patch's or an older one's
    number: int = 0      # its pointer pair in the control page
    kind: str = "replaced"  # or "restored": an older patch's function this one gives back its old code


@dataclass
class AppliedPatch:
    """One applied patch, as recorded in the target."""

    patch_id: str
    target_build_id: str
    from_release: str
    to_release: str
    region_start: int
    region_end: int
    code_start: int
    code_end: int
    functions: list[RedirectedFunction]
    applied_at: float
    po_name: str = ""
    control: int = 0     # run-time address of the control page (commit flag, gate pointers)
    replaces: str = ""   # the patch this one replaced when it was committed
    variables: list[list] = field(default_factory=list)  # [name, file, size, run-time address] of new variables
    text: list[list[int]] = field(default_factory=list)  # [start, end) of its instructions: code, gates, copies
    unwind: list[int] = field(default_factory=list)  # [register, deregister] thunks of its unwind tables (frames.py)
    flag_at: int = 0     # the commit byte its gates test, when not its own: its patch set's (the first member's)
    patch_set: list[str] = field(default_factory=list)  # ids of the patches committed with it, itself included
    hooks: dict[str, list[list]] = field(default_factory=dict)  # kind → [name, run-time address] (datachange.py)
    migrations: list[list] = field(default_factory=list)  # [name, file, kind, old, new, old size] of moved variables
    flag: int = -1       # read from the process, not part of the record (-1: unreadable)

    @property
    def replaced_functions(self) -> list[RedirectedFunction]:
        return [f for f in self.functions if f.kind == "replaced"]

    def to_bytes(self, size: int) -> bytes:
        record = {
            "format": STATE_FORMAT, "patch_id": self.patch_id, "target_build_id": self.target_build_id,
            "from": self.from_release, "to": self.to_release, "region": [self.region_start, self.region_end],
            "code": [self.code_start, self.code_end], "applied_at": self.applied_at, "po": self.po_name,
            "control": self.control, "replaces": self.replaces, "variables": self.variables, "text": self.text,
            "unwind": self.unwind, "flag_at": self.flag_at, "patch_set": self.patch_set,
            "hooks": self.hooks, "migrations": self.migrations,
            "functions": [vars(function) for function in self.functions],
        }
        data = json.dumps(record, sort_keys=True).encode("utf-8")
        if len(data) + 1 > size:
            raise ValueError(f"state record of {len(data)} bytes does not fit its {size}-byte page(s)")
        return data + b"\0" * (size - len(data))

    @classmethod
    def from_bytes(cls, data: bytes) -> AppliedPatch:
        record = json.loads(data.rstrip(b"\0").decode("utf-8"))
        if record.get("format") != STATE_FORMAT:
            raise ValueError(f"state format {record.get('format')!r}, not {STATE_FORMAT!r}: this patch was "
                             "applied by another version of buildhook; revert it with that version")
        return cls(record["patch_id"], record["target_build_id"], record["from"], record["to"],
                   record["region"][0], record["region"][1], record["code"][0], record["code"][1],
                   [RedirectedFunction(**function) for function in record["functions"]],
                   record["applied_at"], record.get("po", ""), record["control"], record["replaces"],
                   record["variables"], record["text"], record.get("unwind", []), record.get("flag_at", 0),
                   record.get("patch_set", []), record.get("hooks", {}), record.get("migrations", []))

    @property
    def commit_flag(self) -> int:
        """Where the byte that says what became of the patch is: its own control page, or its set's."""
        return self.flag_at or self.control

    def to_json(self) -> dict[str, object]:
        return {
            "patch_id": self.patch_id, "from": self.from_release, "to": self.to_release,
            "target_build_id": self.target_build_id, "applied_at": self.applied_at,
            "region": [hex(self.region_start), hex(self.region_end)], "patch_set": self.patch_set,
            "migrated": [{"name": name, "file": file, "kind": kind} for name, file, kind, *_ in self.migrations],
            "functions": [{"name": f.name, "file": f.file, "address": hex(f.address),
                           "redirected_to": hex(f.destination)} for f in self.replaced_functions],
        }


def state_mappings(pid: int) -> list[Mapping]:
    """The read-only state mappings of applied patches (first page of each memfd)."""
    return [m for m in read_maps(pid)
            if m.path.startswith(REGION_PATH) and m.offset == 0 and m.perms.startswith("r--")]


def _read_byte(memory: BinaryIO, address: int) -> int:
    """One byte of process memory, or -1 where nothing is mapped (a leftover's control page may not be)."""
    try:
        memory.seek(address)
        data = memory.read(1)
    except OSError:
        return -1
    return data[0] if data else -1


def recorded_patches(pid: int) -> list[AppliedPatch]:
    """Every patch record in the process with its flag, oldest first (applied or not)."""
    patches = []
    with open(f"{proc_dir(pid)}/mem", "rb", buffering=0) as memory:
        for mapping in state_mappings(pid):
            memory.seek(mapping.start)
            patch = AppliedPatch.from_bytes(memory.read(mapping.size))
            patch.flag = _read_byte(memory, patch.commit_flag)
            patches.append(patch)
    return sorted(patches, key=lambda patch: patch.applied_at)


def superseded(patch: AppliedPatch, patches: list[AppliedPatch]) -> bool:
    """Whether a newer patch that replaced *patch* was committed (and maybe reverted since)."""
    return any(other.replaces == patch.patch_id and other.flag in (gates.COMMITTED, gates.REVERTED)
               for other in patches)


def condition(patch: AppliedPatch, patches: list[AppliedPatch]) -> str:
    """applied, replaced, reverted or leftover (prepared, never committed: the next run removes it)."""
    if patch.flag == gates.COMMITTED:
        return "replaced" if superseded(patch, patches) else "applied"
    if patch.flag == gates.REVERTED:
        return "reverted"
    return "leftover"

