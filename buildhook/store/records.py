"""The records the store keeps: compiles, links (with their inputs), releases."""

from __future__ import annotations

import os

from dataclasses import dataclass, field
from datetime import datetime, timezone

# Kinds of link input.  "object" and "member" are the program's own code (the
# diff stage works on them); "toolchain" inputs (crt files, libgcc members)
# are recorded by hash but are never patched.
OBJECT = "object"
MEMBER = "member"
TOOLCHAIN = "toolchain"


def iso_time(epoch: float) -> str:
    """A record time as ISO 8601 UTC, the form every JSON output uses."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class CompileRecord:
    """One object produced by a compile."""

    source: str
    object: str
    sha256: str
    compiler: list[str]
    flags: list[str]
    cwd: str
    language: str
    time: float
    id: int | None = None


@dataclass
class LinkInput:
    """One object or archive member the linker used."""

    kind: str
    path: str
    sha256: str
    member: str | None = None
    source: str | None = None
    linked_as: str | None = None  # the path the link map names it by, when not ``path``

    @property
    def display_path(self) -> str:
        """``lib.a(member.o)`` for members, the path otherwise."""
        return f"{self.path}({self.member})" if self.member else self.path

    @property
    def source_name(self) -> str:
        """The source file's base name (the object's when unknown), as diffs and patches name it."""
        return os.path.basename(self.source or self.display_path)

    @property
    def is_program_code(self) -> bool:
        return self.kind in (OBJECT, MEMBER)


@dataclass
class LinkRecord:
    """One link: the binary, its build-id, its inputs and its map."""

    binary: str
    build_id: str | None
    sha256: str
    map_sha256: str | None
    compiler: list[str]
    flags: list[str]
    cwd: str
    time: float
    inputs: list[LinkInput] = field(default_factory=list)
    id: int | None = None

    @property
    def objects(self) -> list[LinkInput]:
        """The program's own objects and archive members (no toolchain files)."""
        return [item for item in self.inputs if item.is_program_code]

    def to_json(self, releases: list[str] | None = None) -> dict[str, object]:
        """The ``buildhook builds --json`` form of this link."""
        return {
            "id": self.id,
            "binary": self.binary,
            "build_id": self.build_id,
            "time": iso_time(self.time),
            "sha256": self.sha256,
            "map_sha256": self.map_sha256,
            "releases": releases or [],
            "objects": [
                {"path": item.display_path, "sha256": item.sha256, "source": item.source}
                for item in self.objects
            ],
        }


@dataclass
class Release:
    """A release tag and the links it marks (one per binary)."""

    tag: str
    time: float
    links: list[LinkRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "time": iso_time(self.time),
            "binaries": [
                {"binary": link.binary, "build_id": link.build_id, "link_id": link.id}
                for link in self.links
            ],
        }
