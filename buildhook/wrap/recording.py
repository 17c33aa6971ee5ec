"""Putting what a compile or a link produced into the store.

A compile records one row per object (source, object, compiler, flags, hash)
and the object's bytes.  A link records the binary (unstripped, as linked),
its build-id, its map, and every object and archive member the *linker* says
it used: the map is the authority, so ``-l``, response files, linker scripts
and archive search order need no second-guessing here.

The compile half runs on every compile and imports only the store; the ELF
readers, the map parser and the record dataclasses load for links only.
Reading a link's inputs from its map is store/link_inputs.py, shared with
the fold of links the native wrapper journaled (store/link_journal.py).
"""

from __future__ import annotations

import os
import time

from buildhook.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from buildhook.store import LinkRecord


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
    return os.path.normpath(os.path.join(cwd, path))  # as store/link_inputs.py, which compiles do not import


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


def record_link(store: Store, *, output: str, map_path: str | None, compiler: list[str],
                flags: list[str], cwd: str, renamed_objects: dict[str, CompiledObject]) -> LinkRecord:
    """Store a finished link: binary, build-id, map and inputs."""
    from buildhook.elf.buildid import build_id_of_file
    from buildhook.store import LinkRecord

    binary = os.path.realpath(absolute(output, cwd))
    if map_path is not None:
        with open(absolute(map_path, cwd), encoding="utf-8", errors="surrogateescape") as handle:
            map_text = handle.read()
        from buildhook.store.link_inputs import InputReader, collect_link_inputs

        stand_ins = {path: (item.source, item.object) for path, item in renamed_objects.items()}
        inputs = collect_link_inputs(store, map_text, cwd, InputReader(store), stand_ins)
        map_sha256: str | None = store.blobs.put_bytes(map_text.encode("utf-8", "surrogateescape"))
    else:
        inputs, map_sha256 = [], None
    record = LinkRecord(binary=binary, build_id=build_id_of_file(binary),
                        sha256=store.blobs.put_file(binary), map_sha256=map_sha256,
                        compiler=compiler, flags=flags, cwd=cwd, time=time.time(), inputs=inputs)
    store.records.add_link(record)
    return record

