"""The build store: content-addressed blobs plus SQLite records.

Layout of a store folder::

    objects/ab/cdef…      blobs (objects, binaries, link maps) named by SHA-256
    objects/tmp/          blobs being written (renamed into place when complete)
    records.sqlite        compiles, links, link inputs, releases (WAL mode)
    compiles.journal      compile records not yet folded into records.sqlite
    links.journal         links the native wrapper recorded, not yet folded (link_journal.py)
    released.list         every binary with a release, for the native wrapper

Every release keeps the objects of its link, so a patch can be made from any
release later, long after the build tree has moved on.
"""

from __future__ import annotations

import os
import time

from buildhook.store.blobs import BlobStore, CorruptBlobError, MissingBlobError, sha256_of_file

_LAZY = {
    "CompileRecord": "records", "LinkInput": "records", "LinkRecord": "records", "Release": "records",
    "RecordDatabase": "database", "StoreSchemaError": "database",
}

TYPE_CHECKING = False
if TYPE_CHECKING:
    from buildhook.store.database import RecordDatabase, StoreSchemaError
    from buildhook.store.records import CompileRecord, LinkInput, LinkRecord, Release


def __getattr__(name: str) -> object:
    """The database and record classes, imported on first use: a compile needs neither."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"buildhook.store.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'buildhook.store' has no attribute {name!r}")


__all__ = [
    "BlobStore", "CompileRecord", "CorruptBlobError", "GcReport", "LinkInput", "LinkRecord",
    "MissingBlobError", "Release", "ReleaseError", "Store", "StoreSchemaError", "sha256_of_file",
]

DEFAULT_KEEP_DAYS = 14
STALE_TMP_SECONDS = 3600


class ReleaseError(Exception):
    """A release could not be made (unknown binary, reused tag, nothing built)."""


class GcReport:
    """What ``buildhook store gc`` removed."""

    def __init__(self, links_removed: int, compiles_removed: int, blobs_removed: int, bytes_freed: int) -> None:
        self.links_removed = links_removed
        self.compiles_removed = compiles_removed
        self.blobs_removed = blobs_removed
        self.bytes_freed = bytes_freed


class Store:
    """One store folder: ``blobs`` and ``records``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self.blobs = BlobStore(os.path.join(self.root, "objects"))
        # what a diff derives from a blob and may reuse (diff/layout.py: type layouts), by content hash
        self.cache_dir = os.path.join(self.root, "cache")
        self._records: RecordDatabase | None = None

    @property
    def records(self) -> RecordDatabase:
        """The record database, opened (and created) on first use."""
        if self._records is None:
            from buildhook.store.database import RecordDatabase

            self._records = RecordDatabase(os.path.join(self.root, "records.sqlite"))
            from buildhook.store import link_journal

            link_journal.fold(self)
            if not os.path.exists(os.path.join(self.root, link_journal.RELEASED_LIST_NAME)):
                link_journal.write_released_list(self)
        return self._records

    def close(self) -> None:
        if self._records is not None:
            self._records.close()
            self._records = None

    def journal_compiles(self, rows: list[tuple[float, str, str, str, str, list[str], list[str], str]]) -> None:
        """Record the objects of one compile without opening the database (see journal.py)."""
        from buildhook.store.journal import append_compiles

        append_compiles(self.root, rows)

    def exists(self) -> bool:
        return any(os.path.isfile(os.path.join(self.root, name))
                   for name in ("records.sqlite", "compiles.journal", "links.journal"))

    def release(self, tag: str, binaries: list[str] | None = None) -> Release:
        """Mark the latest link of each binary (or of the named ones) as *tag*."""
        if not tag or any(char.isspace() for char in tag):
            raise ReleaseError(f"release tag {tag!r} must be a non-empty word without spaces")
        if binaries:
            wanted = [os.path.realpath(binary) for binary in binaries]
            latest = self.records.latest_links(wanted)
            missing = [binary for binary in wanted if binary not in latest]
            if missing:
                raise ReleaseError(
                    f"no recorded link for {', '.join(missing)} in store {self.root}; "
                    "build it with buildhook-cc first (see `buildhook builds`)"
                )
        else:
            latest = self.records.latest_links()
            if not latest:
                raise ReleaseError(f"store {self.root} has no recorded link to release; build with buildhook-cc first")
        links = sorted(latest.values(), key=lambda link: link.binary)
        now = time.time()
        try:
            self.records.add_release(tag, [link.id for link in links if link.id is not None], now)
        except ValueError as exc:
            raise ReleaseError(str(exc)) from exc
        from buildhook.store.link_journal import write_released_list

        write_released_list(self)
        from buildhook.store.records import Release

        return Release(tag=tag, time=now, links=links)

    def gc(self, keep_days: float = DEFAULT_KEEP_DAYS) -> GcReport:
        """Drop what no release and no recent build needs.

        Kept: every released link, the latest link of every binary, links and
        compiles newer than *keep_days*, and every blob those records name.
        """
        records = self.records
        cutoff = time.time() - keep_days * 86400
        keep_links = records.released_link_ids() | records.link_ids_since(cutoff)
        keep_links |= {link.id for link in records.latest_links().values() if link.id is not None}
        links_removed = records.delete_links_except(keep_links)
        kept_inputs = {item.sha256 for link in records.links() for item in link.inputs}
        compiles_removed = records.delete_compiles_older_than(cutoff, kept_inputs)
        needed = records.referenced_hashes()
        blobs_removed = 0
        bytes_freed = 0
        for sha256 in self.blobs.iter_hashes():
            if sha256 not in needed:
                bytes_freed += self.blobs.remove(sha256)
                blobs_removed += 1
        bytes_freed += self._remove_stale_temporaries()
        return GcReport(links_removed, compiles_removed, blobs_removed, bytes_freed)

    def _remove_stale_temporaries(self) -> int:
        freed = 0
        tmp_dir = self.blobs.tmp_dir
        if not os.path.isdir(tmp_dir):
            return 0
        old = time.time() - STALE_TMP_SECONDS
        for entry in os.scandir(tmp_dir):
            try:
                info = entry.stat(follow_symlinks=False)
                if info.st_mtime < old:
                    if entry.is_dir(follow_symlinks=False):
                        import shutil

                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                    freed += info.st_size
            except FileNotFoundError:
                continue
        return freed
