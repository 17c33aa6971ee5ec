"""The inputs of a link, from its map: every object and archive member, hashed, program code stored.

The map is the authority (``-l``, response files, linker scripts and archive
search order need no second-guessing).  Two callers: the Python wrapper right
after a link, reading the inputs from the disk, and the fold of a link the
native wrapper journaled (link_journal.py), which reads them from the blobs
it took when it linked, so a file rebuilt in between cannot slip in.

Toolchain inputs (crt files, libgcc, libc_nonshared members) are recorded by
hash only, read from the disk: they are never part of a patch.
"""

from __future__ import annotations

import hashlib
import os

from buildhook.store import Store
from buildhook.store.records import MEMBER, OBJECT, TOOLCHAIN, LinkInput

TYPE_CHECKING = False
if TYPE_CHECKING:
    from buildhook.elf.archive import ArchiveMember

ET_REL = 1
TOOLCHAIN_PREFIXES = ("/usr/lib/", "/usr/lib64/", "/usr/libexec/", "/lib/", "/lib64/")


class LinkRecordingError(Exception):
    """The link succeeded but could not be recorded."""


def is_toolchain_path(path: str) -> bool:
    return os.path.realpath(path).startswith(TOOLCHAIN_PREFIXES)


def absolute(path: str, cwd: str) -> str:
    """*path* made absolute against *cwd*, normalised but with links kept."""
    return os.path.normpath(os.path.join(cwd, path))


class InputReader:
    """The bytes of a link's input files: from *kept* blobs (path → hash) when given, else from the disk."""

    def __init__(self, store: Store, kept: dict[str, str] | None = None) -> None:
        self.store = store
        self.kept = kept or {}
        self._archives: dict[str, list[ArchiveMember]] = {}
        self._kept_data: dict[str, bytes] = {}

    def data(self, path: str) -> bytes | None:
        """The file's bytes, or None when it is not a regular file."""
        if path in self.kept:
            if path not in self._kept_data:
                self._kept_data[path] = self.store.blobs.read(self.kept[path])
            return self._kept_data[path]
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as handle:
            return handle.read()

    def is_relocatable_object(self, path: str) -> bool:
        """From the first bytes only: shared libraries, linker scripts and archives are not read whole."""
        if path in self.kept:
            head = (self.data(path) or b"")[:18]
        else:
            try:
                with open(path, "rb") as handle:
                    head = handle.read(18)
            except OSError:
                return False
        return head[:4] == b"\x7fELF" and len(head) == 18 and \
            int.from_bytes(head[16:18], "little" if head[5] == 1 else "big") == ET_REL

    def member(self, archive: str, member: str) -> bytes:
        from buildhook.elf.archive import read_members

        if archive not in self._archives:
            data = self.data(archive)
            if data is None:
                raise LinkRecordingError(f"archive {archive} named by the link map is gone")
            self._archives[archive] = read_members(archive, data)
        for candidate in self._archives[archive]:
            if candidate.name == member:
                return candidate.data
        raise LinkRecordingError(f"archive {archive} has no member {member} named by the link map")


def collect_link_inputs(store: Store, map_text: str, cwd: str, reader: InputReader,
                        stand_ins: dict[str, tuple[str, str]] | None = None) -> list[LinkInput]:
    """Every object and archive member of a link, hashed, program code stored.

    *stand_ins* maps temporary objects (of a compile-and-link command) to the
    (source, object) they stand for.
    """
    from buildhook.elf.linkmap import parse_link_map

    inputs: list[LinkInput] = []
    for item in parse_link_map(map_text).input_files():
        path = absolute(item.path, cwd)
        toolchain = is_toolchain_path(path)
        if item.member is not None:
            data = reader.member(path, item.member)
            # Toolchain inputs are recorded by hash only: never patched, not stored.
            sha256 = hashlib.sha256(data).hexdigest() if toolchain else store.blobs.put_bytes(data)
            inputs.append(LinkInput(TOOLCHAIN if toolchain else MEMBER, path, sha256, member=item.member))
            continue
        if not reader.is_relocatable_object(path):
            continue  # archives (their members are listed), shared libraries, linker scripts
        data = reader.data(path)
        if data is None:
            continue
        if toolchain:
            inputs.append(LinkInput(TOOLCHAIN, path, hashlib.sha256(data).hexdigest()))
            continue
        sha256 = store.blobs.put_bytes(data)
        stands_for = (stand_ins or {}).get(path)
        if stands_for is not None:
            source, obj = stands_for
            inputs.append(LinkInput(OBJECT, obj, sha256, source=source, linked_as=path))
        else:
            inputs.append(LinkInput(OBJECT, path, sha256))
    sources = store.records.sources_by_sha([item.sha256 for item in inputs if item.source is None])
    for item in inputs:
        if item.source is None and item.kind != TOOLCHAIN:
            item.source = sources.get(item.sha256)
    return inputs
