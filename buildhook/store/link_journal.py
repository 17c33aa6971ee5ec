"""Links the native wrapper recorded, staged in ``<store>/links.journal`` and folded into SQLite.

Why: the native ``buildhook-cc`` (wrap/shim.c) records a link without a
Python start.  Right after the link it stores, as blobs, the binary, the map
and every object and archive the map LOADs (their bytes as linked), and
appends one line here; the next ``buildhook`` command or Python-recorded
link that opens the records folds each line into a link record with the
same code as a link the Python wrapper records (link_inputs.py), reading
those inputs from the blobs.  Toolchain files and a thin archive's member
files are read from the disk at the fold.

Line format: one JSON array per line,
``[entry, time, cwd, binary, sha256, map_sha256 | null, [compiler…], [flags…], {path: sha256}]``.
A line is folded once: a replay (a crash between the commit and the
truncation) finds its link already there by binary, hash and time.
"""

from __future__ import annotations

import os
import sys

from buildhook.store.journal import drain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from buildhook.store import Store
    from buildhook.store.records import LinkRecord

LINK_JOURNAL_NAME = "links.journal"
RELEASED_LIST_NAME = "released.list"


def link_from_line(store: Store, row: list[object]) -> LinkRecord:
    """The link record one journal line stands for."""
    from buildhook.elf.buildid import build_id_of_bytes
    from buildhook.store.link_inputs import InputReader, collect_link_inputs
    from buildhook.store.records import LinkRecord

    _entry, when, cwd, binary, sha256, map_sha256, compiler, flags, kept = row
    assert isinstance(cwd, str) and isinstance(binary, str) and isinstance(sha256, str)
    inputs = []
    if map_sha256 is not None:
        map_text = store.blobs.read(str(map_sha256)).decode("utf-8", "surrogateescape")
        inputs = collect_link_inputs(store, map_text, cwd, InputReader(store, dict(kept)))  # type: ignore[call-overload]
    return LinkRecord(binary=binary, build_id=build_id_of_bytes(store.blobs.read(sha256)), sha256=sha256,
                      map_sha256=None if map_sha256 is None else str(map_sha256), compiler=list(compiler),  # type: ignore[call-overload]
                      flags=list(flags), cwd=cwd, time=float(when), inputs=inputs)  # type: ignore[call-overload,arg-type]


def fold(store: Store) -> int:
    """Fold every journaled link into the records; return how many lines were read.

    A line whose blobs are gone or corrupt (the store was damaged) is
    reported in one line and dropped: it could never become a record, and
    left in place it would stop every fold after it.
    """
    records = store.records

    def insert(rows: list[list[object]]) -> None:
        for row in rows:
            if records.has_link(str(row[3]), str(row[4]), float(row[1])):  # type: ignore[arg-type]
                continue
            try:
                link = link_from_line(store, row)
            except Exception as exc:  # noqa: BLE001 - one bad line must not stop the others
                print(f"buildhook: dropped the journaled link of {row[3]}: {exc.__class__.__name__}: {exc}",
                      file=sys.stderr)
                continue
            records.add_link(link)

    return drain(store.root, insert, LINK_JOURNAL_NAME)


def write_released_list(store: Store) -> None:
    """``<store>/released.list``: every binary with a release, one per line.

    The native wrapper reads it to know which links need a post-link patch
    (those it hands to the Python wrapper); written whenever releases change,
    and when the records are opened and it is missing (older stores).
    """
    binaries = store.records.released_binaries()
    path = os.path.join(store.root, RELEASED_LIST_NAME)
    temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}"
    with open(temporary, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write("".join(f"{binary}\n" for binary in binaries))
    os.rename(temporary, path)
