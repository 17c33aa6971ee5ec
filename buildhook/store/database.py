"""The SQLite half of the store: compile, link and release records.

Dozens of ``buildhook-cc`` processes insert at once under ``make -j``; WAL
mode lets readers and one writer proceed together and a generous busy
timeout serialises the writers.  The schema is created once, under a file
lock, because changing the journal mode cannot wait on a busy handler.

Writing a compile record is on every compile's path, so this module imports
neither json, pathlib, contextlib nor the record dataclasses at load time.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3

from buildhook.store.journal import drain, encode_words

TYPE_CHECKING = False
if TYPE_CHECKING:  # the record classes are imported where rows become records
    from buildhook.store.records import CompileRecord, LinkRecord, Release

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 120.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS compiles (
    id INTEGER PRIMARY KEY,
    entry TEXT UNIQUE,
    time REAL NOT NULL,
    cwd TEXT NOT NULL,
    source TEXT NOT NULL,
    object TEXT NOT NULL,
    language TEXT NOT NULL,
    compiler TEXT NOT NULL,
    flags TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS compiles_by_sha ON compiles (sha256);
CREATE INDEX IF NOT EXISTS compiles_by_object ON compiles (object);
CREATE TABLE IF NOT EXISTS links (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    cwd TEXT NOT NULL,
    binary TEXT NOT NULL,
    build_id TEXT,
    sha256 TEXT NOT NULL,
    map_sha256 TEXT,
    compiler TEXT NOT NULL,
    flags TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS links_by_binary ON links (binary, id);
CREATE TABLE IF NOT EXISTS link_inputs (
    link_id INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    member TEXT,
    sha256 TEXT NOT NULL,
    source TEXT,
    linked_as TEXT NOT NULL,
    PRIMARY KEY (link_id, position)
);
CREATE TABLE IF NOT EXISTS releases (
    tag TEXT NOT NULL,
    link_id INTEGER NOT NULL REFERENCES links (id),
    time REAL NOT NULL,
    PRIMARY KEY (tag, link_id)
);
"""


class StoreSchemaError(Exception):
    """The store was written by an incompatible (newer) buildhook."""


def decode_words(text: str) -> list[str]:
    import json

    return json.loads(text)


class _Transaction:
    """``with db.transaction():`` an immediate (write-locking) transaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self._connection.execute("BEGIN IMMEDIATE")
        return self._connection

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._connection.execute("ROLLBACK" if exc_type is not None else "COMMIT")


class RecordDatabase:
    """Typed access to the records in ``<store>/records.sqlite``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.folder = os.path.dirname(path)
        os.makedirs(self.folder, exist_ok=True)
        self._connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._connection.execute("PRAGMA foreign_keys = ON")
        self._connection.execute("PRAGMA synchronous = NORMAL")
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            self._initialise(version)
        drain(self.folder, self._insert_journal_rows)

    def close(self) -> None:
        self._connection.close()

    def _initialise(self, seen_version: int) -> None:
        if seen_version > SCHEMA_VERSION:
            raise StoreSchemaError(
                f"store {self.folder} has schema version {seen_version}, newer than this "
                f"buildhook understands ({SCHEMA_VERSION}); upgrade buildhook"
            )
        with open(os.path.join(self.folder, "init.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            version = self._connection.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            self._connection.execute("PRAGMA journal_mode = WAL")
            with self.transaction() as db:
                # One statement at a time: executescript() would commit early.
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def transaction(self) -> _Transaction:
        """An immediate (write-locking) transaction, committed on success."""
        return _Transaction(self._connection)

    # -- writing ---------------------------------------------------------

    def _insert_journal_rows(self, rows: list[list[object]]) -> None:
        """Insert compile records from the journal (see journal.py); repeats are ignored.

        A line no database can hold (not UTF-8: written before append_compiles refused such rows)
        is dropped rather than left to fail every fold after it.
        """
        from buildhook.store.journal import undecodable

        rows = [row for row in rows if undecodable(tuple(row[1:])) is None]  # type: ignore[arg-type]
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO compiles (entry, time, cwd, source, object, language, compiler, flags, sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(entry, when, cwd, source, obj, language, encode_words(compiler), encode_words(flags), sha256)
                 for entry, when, cwd, source, obj, language, compiler, flags, sha256 in rows],
            )

    def add_link(self, record: LinkRecord) -> int:
        """Insert a link and its inputs; return its id."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO links (time, cwd, binary, build_id, sha256, map_sha256, compiler, flags)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.time, record.cwd, record.binary, record.build_id, record.sha256,
                 record.map_sha256, encode_words(record.compiler), encode_words(record.flags)),
            )
            record.id = cursor.lastrowid
            db.executemany(
                "INSERT INTO link_inputs (link_id, position, kind, path, member, sha256, source, linked_as)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(record.id, position, item.kind, item.path, item.member, item.sha256, item.source,
                  item.linked_as or item.path) for position, item in enumerate(record.inputs)],
            )
        assert record.id is not None
        return record.id

    def add_release(self, tag: str, link_ids: list[int], when: float) -> None:
        """Mark links as release *tag*; refuses a tag already used."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM releases WHERE tag = ?", (tag,)).fetchone():
                raise ValueError(f"release {tag} already exists; release tags cannot be reused")
            db.executemany(
                "INSERT INTO releases (tag, link_id, time) VALUES (?, ?, ?)",
                [(tag, link_id, when) for link_id in link_ids],
            )

    # -- reading ---------------------------------------------------------

    def has_link(self, binary: str, sha256: str, when: float) -> bool:
        """Whether this exact link (binary, content, time) is recorded: a journal replay."""
        return self._connection.execute("SELECT 1 FROM links WHERE binary = ? AND sha256 = ? AND time = ?",
                                        (binary, sha256, when)).fetchone() is not None

    def released_binaries(self) -> list[str]:
        """Every binary path that has a release."""
        rows = self._connection.execute(
            "SELECT DISTINCT links.binary FROM releases JOIN links ON links.id = releases.link_id ORDER BY 1")
        return [row[0] for row in rows]

    def sources_by_sha(self, hashes: list[str]) -> dict[str, str]:
        """Source path of the newest compile that produced each object hash."""
        found: dict[str, str] = {}
        for sha256 in set(hashes):
            row = self._connection.execute(
                "SELECT source FROM compiles WHERE sha256 = ? ORDER BY id DESC LIMIT 1", (sha256,)
            ).fetchone()
            if row:
                found[sha256] = row[0]
        return found

    def compiles(self) -> list[CompileRecord]:
        from buildhook.store.records import CompileRecord

        rows = self._connection.execute(
            "SELECT id, time, cwd, source, object, language, compiler, flags, sha256 FROM compiles ORDER BY id"
        ).fetchall()
        return [
            CompileRecord(source=row[3], object=row[4], sha256=row[8], compiler=decode_words(row[6]),
                          flags=decode_words(row[7]), cwd=row[2], language=row[5], time=row[1], id=row[0])
            for row in rows
        ]

    def links(self, where: str = "", params: tuple[object, ...] = ()) -> list[LinkRecord]:
        """Link records (with inputs), oldest first, optionally filtered by SQL *where*."""
        from buildhook.store.records import LinkInput, LinkRecord

        rows = self._connection.execute(
            "SELECT id, time, cwd, binary, build_id, sha256, map_sha256, compiler, flags FROM links "
            + (f"WHERE {where} " if where else "") + "ORDER BY id",
            params,
        ).fetchall()
        records = {
            row[0]: LinkRecord(binary=row[3], build_id=row[4], sha256=row[5], map_sha256=row[6],
                               compiler=decode_words(row[7]), flags=decode_words(row[8]), cwd=row[2],
                               time=row[1], id=row[0])
            for row in rows
        }
        if records:
            marks = ",".join("?" * len(records))
            for link_id, kind, path, member, sha256, source, linked_as in self._connection.execute(
                f"SELECT link_id, kind, path, member, sha256, source, linked_as FROM link_inputs "
                f"WHERE link_id IN ({marks}) ORDER BY link_id, position",
                tuple(records),
            ):
                records[link_id].inputs.append(LinkInput(kind, path, sha256, member, source, linked_as))
        return list(records.values())

    def latest_links(self, binaries: list[str] | None = None) -> dict[str, LinkRecord]:
        """The newest link of every binary (or of the named ones)."""
        where = "id IN (SELECT MAX(id) FROM links GROUP BY binary)"
        latest = {link.binary: link for link in self.links(where)}
        if binaries is None:
            return latest
        return {binary: latest[binary] for binary in binaries if binary in latest}

    def releases_of(self, binary: str) -> list[tuple[str, int]]:
        """(tag, link id) of every release that marks a link of *binary*, oldest first."""
        return [(tag, link_id) for tag, link_id in self._connection.execute(
            "SELECT r.tag, r.link_id FROM releases r JOIN links l ON l.id = r.link_id "
            "WHERE l.binary = ? ORDER BY r.time, r.tag", (binary,))]

    def program_object_hashes(self, link_id: int) -> list[str]:
        """Sorted content hashes of a link's own objects and archive members (no toolchain files)."""
        return sorted(row[0] for row in self._connection.execute(
            "SELECT sha256 FROM link_inputs WHERE link_id = ? AND kind IN ('object', 'member')", (link_id,)))

    def release_tags_by_link(self) -> dict[int, list[str]]:
        tags: dict[int, list[str]] = {}
        for tag, link_id in self._connection.execute("SELECT tag, link_id FROM releases ORDER BY time, tag"):
            tags.setdefault(link_id, []).append(tag)
        return tags

    def releases(self) -> list[Release]:
        """Every release, oldest first, with the links it marks."""
        from buildhook.store.records import Release

        rows = self._connection.execute(
            "SELECT tag, MIN(time) FROM releases GROUP BY tag ORDER BY MIN(time), tag"
        ).fetchall()
        result = []
        for tag, when in rows:
            links = self.links("id IN (SELECT link_id FROM releases WHERE tag = ?)", (tag,))
            result.append(Release(tag=tag, time=when, links=links))
        return result

    # -- garbage collection ---------------------------------------------

    def delete_links_except(self, keep_ids: set[int]) -> int:
        """Delete every link (and its inputs) not in *keep_ids*; return how many."""
        all_ids = [row[0] for row in self._connection.execute("SELECT id FROM links")]
        doomed = [link_id for link_id in all_ids if link_id not in keep_ids]
        with self.transaction() as db:
            db.executemany("DELETE FROM links WHERE id = ?", [(link_id,) for link_id in doomed])
        return len(doomed)

    def delete_compiles_older_than(self, cutoff: float, keep_hashes: set[str]) -> int:
        """Delete compile records older than *cutoff* whose object no kept link uses."""
        rows = self._connection.execute("SELECT id, sha256 FROM compiles WHERE time < ?", (cutoff,)).fetchall()
        doomed = [(row[0],) for row in rows if row[1] not in keep_hashes]
        with self.transaction() as db:
            db.executemany("DELETE FROM compiles WHERE id = ?", doomed)
        return len(doomed)

    def referenced_hashes(self) -> set[str]:
        """Every blob hash some record still needs."""
        queries = (
            "SELECT sha256 FROM compiles",
            "SELECT sha256 FROM links",
            "SELECT map_sha256 FROM links WHERE map_sha256 IS NOT NULL",
            "SELECT sha256 FROM link_inputs",
        )
        hashes: set[str] = set()
        for query in queries:
            hashes.update(row[0] for row in self._connection.execute(query))
        return hashes

    def released_link_ids(self) -> set[int]:
        return {row[0] for row in self._connection.execute("SELECT link_id FROM releases")}

    def link_ids_since(self, cutoff: float) -> set[int]:
        return {row[0] for row in self._connection.execute("SELECT id FROM links WHERE time >= ?", (cutoff,))}
