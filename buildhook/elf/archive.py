"""Members of ``ar`` archives (static libraries), regular and thin.

A link record names every archive member the linker pulled in, by content
hash, so the member's bytes must be found inside the archive.  GNU ``ar``'s
format: a global header, then per member a 60-byte header (name, size …),
long names in the ``//`` table, thin archives (``!<thin>``) storing only
paths to the member files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ARCHIVE_MAGIC = b"!<arch>\n"
THIN_MAGIC = b"!<thin>\n"
HEADER_SIZE = 60


class ArchiveError(Exception):
    """The archive is malformed or a member is missing."""


@dataclass(frozen=True)
class ArchiveMember:
    """One member: its name and its bytes."""

    name: str
    data: bytes


def read_members(path: str, blob: bytes | None = None) -> list[ArchiveMember]:
    """Every member of the archive at *path* (or of its bytes *blob*), in order (symbol tables skipped).

    A thin archive's members are read from the files it names, beside *path*.
    """
    if blob is None:
        with open(path, "rb") as handle:
            blob = handle.read()
    thin = blob.startswith(THIN_MAGIC)
    if not (thin or blob.startswith(ARCHIVE_MAGIC)):
        raise ArchiveError(f"{path} is not an ar archive")
    members: list[ArchiveMember] = []
    long_names = b""
    offset = len(ARCHIVE_MAGIC)
    while offset + HEADER_SIZE <= len(blob):
        header = blob[offset:offset + HEADER_SIZE]
        if header[58:60] != b"`\n":
            raise ArchiveError(f"{path}: bad member header at offset {offset}")
        raw_name = header[:16].decode("latin-1").rstrip()
        size = int(header[48:58].decode("ascii").strip() or "0")
        body_start = offset + HEADER_SIZE
        is_table = raw_name in ("/", "//", "/SYM64/")
        stored_inline = is_table or not thin
        body = blob[body_start:body_start + size] if stored_inline else b""
        if raw_name == "//":
            long_names = body
        elif not is_table:
            name = _member_name(raw_name, long_names)
            if thin:
                member_path = os.path.join(os.path.dirname(path), name)
                try:
                    with open(member_path, "rb") as member_file:
                        body = member_file.read()
                except OSError as exc:
                    raise ArchiveError(f"{path}: thin member {member_path}: {exc.strerror}") from exc
            members.append(ArchiveMember(os.path.basename(name), body))
        advance = size if stored_inline else 0
        offset = body_start + advance + (advance & 1)
    return members


def _member_name(raw: str, long_names: bytes) -> str:
    if raw.startswith("/") and raw[1:].isdigit():
        start = int(raw[1:])
        end = long_names.find(b"/\n", start)
        return long_names[start:end if end >= 0 else None].decode("utf-8", "surrogateescape")
    return raw[:-1] if raw.endswith("/") else raw
