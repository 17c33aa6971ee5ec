"""What is applied, recorded inside the target itself.

Each applied patch lives in a memfd named ``buildhook:<patch id>``; its
first pages (mapped read-only) hold this record as JSON: the patch id and
releases, every redirected function with the bytes its jump overwrote, and
the region.  A later applier process finds the records through
``/proc/PID/maps`` and reads them through ``/proc/PID/map_files``, so
``status`` and ``revert`` need no side files, and a restarted process (a
fresh mapping) simply has no patches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from buildhook.apply.process import Mapping, read_maps

STATE_FORMAT = "buildhook-state/1"
MEMFD_PREFIX = "buildhook:"


@dataclass
class RedirectedFunction:
    name: str
    file: str
    address: int         # run-time address of the old entry
    destination: int     # run-time address of the new code
    original: str        # hex of the bytes the jump replaced
    old_size: int
    old_parts: list[list[int]] = field(default_factory=list)  # run-time [address, size] of old .cold parts


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

    def to_bytes(self, size: int) -> bytes:
        record = {
            "format": STATE_FORMAT, "patch_id": self.patch_id, "target_build_id": self.target_build_id,
            "from": self.from_release, "to": self.to_release, "region": [self.region_start, self.region_end],
            "code": [self.code_start, self.code_end], "applied_at": self.applied_at, "po": self.po_name,
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
            raise ValueError(f"unknown state format {record.get('format')!r}")
        return cls(record["patch_id"], record["target_build_id"], record["from"], record["to"],
                   record["region"][0], record["region"][1], record["code"][0], record["code"][1],
                   [RedirectedFunction(**function) for function in record["functions"]],
                   record["applied_at"], record.get("po", ""))

    def to_json(self) -> dict[str, object]:
        return {
            "patch_id": self.patch_id, "from": self.from_release, "to": self.to_release,
            "target_build_id": self.target_build_id, "applied_at": self.applied_at,
            "region": [hex(self.region_start), hex(self.region_end)],
            "functions": [{"name": f.name, "file": f.file, "address": hex(f.address),
                           "redirected_to": hex(f.destination)} for f in self.functions],
        }


def state_mappings(pid: int) -> list[Mapping]:
    """The read-only state mappings of applied patches (first page of each memfd)."""
    return [m for m in read_maps(pid)
            if m.path.startswith("/memfd:" + MEMFD_PREFIX) and m.offset == 0 and m.perms.startswith("r--")]


def applied_patches(pid: int) -> list[AppliedPatch]:
    """Every patch applied to the process, oldest first."""
    patches = []
    for mapping in state_mappings(pid):
        with open(f"/proc/{pid}/map_files/{mapping.start:x}-{mapping.end:x}", "rb") as handle:
            patches.append(AppliedPatch.from_bytes(handle.read(mapping.size)))
    return sorted(patches, key=lambda patch: patch.applied_at)
