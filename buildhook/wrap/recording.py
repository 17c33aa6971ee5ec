"""Putting what a compile or a link produced into the store.

A compile records one row per object (source, object, compiler, flags, hash)
and the object's bytes.  A link records the binary (unstripped, as linked),
its build-id, its map, and every object and archive member the *linker* says
it used: the map is the authority, so ``-l``, response files, linker scripts
and archive search order need no second-guessing here.

The compile half runs on every compile and imports only the store; the ELF
readers, the map parser and the record dataclasses load for links only.
"""

from __future__ import annotations

import os
import time

from buildhook.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from buildhook.elf.archive import ArchiveMember
    from buildhook.store import LinkInput, LinkRecord

ET_REL = 1

# Inputs from these folders belong to the toolchain or the system (crt files,
# libgcc, libc_nonshared): recorded by hash, never part of a patch.
TOOLCHAIN_PREFIXES = ("/usr/lib/", "/usr/lib64/", "/usr/libexec/", "/lib/", "/lib64/")


class LinkRecordingError(Exception):
    """The link succeeded but could not be recorded."""


class CompiledObject:
    """An object a compile wrote: where, from which source, in which language."""

    __slots__ = ("source", "object", "language", "written_to")

    def __init__(self, source: str, obj: str, language: str, written_to: str | None = None) -> None:
        self.source = source
        self.object = obj
        self.language = language
        self.written_to = written_to  # the file holding it, when not at ``object`` yet

    @property
    def file(self) -> str:
        return self.written_to or self.object


def absolute(path: str, cwd: str) -> str:
    """*path* made absolute against *cwd*, normalised but with links kept."""
    return os.path.normpath(os.path.join(cwd, path))


def record_compile(store: Store, objects: list[CompiledObject], compiler: list[str],
                   flags: list[str], cwd: str) -> None:
    """Store the objects of one compile command and their records."""
    now = time.time()
    rows = [
        (now, cwd, item.source, item.object, item.language, compiler, flags, store.blobs.put_file(item.file))
        for item in objects
        if os.path.isfile(item.file)  # not e.g. `-o /dev/null` probes
    ]
    if rows:
        store.journal_compiles(rows)


def is_toolchain_path(path: str) -> bool:
    return os.path.realpath(path).startswith(TOOLCHAIN_PREFIXES)


def _elf_type(path: str) -> int | None:
    with open(path, "rb") as handle:
        head = handle.read(18)
    if head[:4] != b"\x7fELF" or len(head) < 18:
        return None
    return int.from_bytes(head[16:18], "little" if head[5] == 1 else "big")


def _member_bytes(archive: str, member: str, cache: dict[str, list[ArchiveMember]]) -> bytes:
    from buildhook.elf.archive import read_members

    if archive not in cache:
        cache[archive] = read_members(archive)
    for candidate in cache[archive]:
        if candidate.name == member:
            return candidate.data
    raise LinkRecordingError(f"archive {archive} has no member {member} named by the link map")


def collect_link_inputs(store: Store, map_text: str, cwd: str,
                        renamed_objects: dict[str, CompiledObject]) -> list[LinkInput]:
    """Every object and archive member of a link, hashed, program code stored.

    *renamed_objects* maps temporary objects (of a compile-and-link command)
    to the object they stand for.
    """
    import hashlib

    from buildhook.elf.linkmap import parse_link_map
    from buildhook.store import LinkInput, sha256_of_file
    from buildhook.store.records import MEMBER, OBJECT, TOOLCHAIN

    archives: dict[str, list[ArchiveMember]] = {}
    inputs: list[LinkInput] = []
    for item in parse_link_map(map_text).input_files():
        path = absolute(item.path, cwd)
        toolchain = is_toolchain_path(path)
        if item.member is not None:
            data = _member_bytes(path, item.member, archives)
            # Toolchain inputs are recorded by hash only: never patched, not stored.
            sha256 = hashlib.sha256(data).hexdigest() if toolchain else store.blobs.put_bytes(data)
            inputs.append(LinkInput(TOOLCHAIN if toolchain else MEMBER, path, sha256, member=item.member))
            continue
        if not os.path.isfile(path) or _elf_type(path) != ET_REL:
            continue  # archives (their members are listed), shared libraries, linker scripts
        if toolchain:
            inputs.append(LinkInput(TOOLCHAIN, path, sha256_of_file(path)))
            continue
        sha256 = store.blobs.put_file(path)
        stands_for = renamed_objects.get(path)
        if stands_for is not None:
            inputs.append(LinkInput(OBJECT, stands_for.object, sha256, source=stands_for.source, linked_as=path))
        else:
            inputs.append(LinkInput(OBJECT, path, sha256))
    sources = store.records.sources_by_sha([item.sha256 for item in inputs if item.source is None])
    for item in inputs:
        if item.source is None and item.kind != TOOLCHAIN:
            item.source = sources.get(item.sha256)
    return inputs


def record_link(store: Store, *, output: str, map_path: str | None, compiler: list[str],
                flags: list[str], cwd: str, renamed_objects: dict[str, CompiledObject]) -> LinkRecord:
    """Store a finished link: binary, build-id, map and inputs."""
    from buildhook.elf.buildid import build_id_of_file
    from buildhook.store import LinkRecord

    binary = os.path.realpath(absolute(output, cwd))
    if map_path is not None:
        with open(absolute(map_path, cwd), encoding="utf-8", errors="surrogateescape") as handle:
            map_text = handle.read()
        inputs = collect_link_inputs(store, map_text, cwd, renamed_objects)
        map_sha256: str | None = store.blobs.put_bytes(map_text.encode("utf-8", "surrogateescape"))
    else:
        inputs, map_sha256 = [], None
    record = LinkRecord(binary=binary, build_id=build_id_of_file(binary),
                        sha256=store.blobs.put_file(binary), map_sha256=map_sha256,
                        compiler=compiler, flags=flags, cwd=cwd, time=time.time(), inputs=inputs)
    store.records.add_link(record)
    return record

