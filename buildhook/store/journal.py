"""Compile records staged in an append-only journal, folded into SQLite later.

Why: ``buildhook-cc`` runs once per compile, and importing sqlite3 and
opening a transaction cost more than everything else the wrapper does after
the interpreter starts (bench/RESULTS.md).  A compile therefore appends one
line to ``<store>/compiles.journal`` (one ``write`` under a shared ``flock``),
and whoever next opens the record database (the link that follows, or any
``buildhook`` command) moves the lines into SQLite under an exclusive lock,
then empties the journal.  Each line carries a unique entry id, so a crash
between the commit and the truncation cannot duplicate a record.

Line format: one JSON array per line,
``[entry, time, cwd, source, object, language, [compiler…], [flags…], sha256]``.
"""

from __future__ import annotations

import fcntl
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

JOURNAL_NAME = "compiles.journal"

CompileRow = tuple[float, str, str, str, str, list[str], list[str], str]


def _json_string(text: str) -> str:
    if any(ord(char) < 0x20 or 0xD800 <= ord(char) <= 0xDFFF for char in text):
        import json  # control characters or undecodable bytes: let json escape them

        return json.dumps(text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_words(words: list[str]) -> str:
    """A list of command-line words as a JSON array, without importing json."""
    return "[" + ", ".join(_json_string(word) for word in words) + "]"


def _encode_row(row: CompileRow) -> str:
    when, cwd, source, obj, language, compiler, flags, sha256 = row
    fields = [_json_string(os.urandom(8).hex()), repr(float(when)), _json_string(cwd), _json_string(source),
              _json_string(obj), _json_string(language), encode_words(compiler), encode_words(flags),
              _json_string(sha256)]
    return "[" + ", ".join(fields) + "]\n"


class NotUtf8Error(ValueError):
    """A path or word of a compile is not valid UTF-8: SQLite, and so the store, cannot hold it."""


def undecodable(row: CompileRow) -> str | None:
    """The first text of *row* that is not valid UTF-8 (os.fsdecode left surrogates in it), if any."""
    _when, cwd, source, obj, language, compiler, flags, _sha256 = row
    for text in (cwd, source, obj, language, *compiler, *flags):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return text
    return None


def append_compiles(store_root: str, rows: list[CompileRow]) -> None:
    """Append the compile records of one command to the store's journal.

    A row the database could not take is refused here, before it is written:
    once in the journal it would make every later fold fail.
    """
    for row in rows:
        bad = undecodable(row)
        if bad is not None:
            raise NotUtf8Error(f"{bad!r} is not valid UTF-8, and the store records only UTF-8 paths and flags")
    data = "".join(_encode_row(row) for row in rows).encode("utf-8")
    os.makedirs(store_root, exist_ok=True)
    fd = os.open(os.path.join(store_root, JOURNAL_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def drain(store_root: str, insert: Callable[[list[list[object]]], None], name: str = JOURNAL_NAME) -> int:
    """Move every line of the journal *name* into the database with *insert*; return how many.

    *insert* receives the decoded rows and must commit them (idempotently,
    by entry id) before this returns; only then is the journal emptied.
    """
    path = os.path.join(store_root, name)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        if os.fstat(fd).st_size == 0:
            return 0
        fcntl.flock(fd, fcntl.LOCK_EX)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        text = b"".join(chunks).decode("utf-8", "surrogateescape")
        if not text:
            return 0
        import json

        # Only "\n" ends a line: str.splitlines would also cut at U+2028 or U+0085 in a path.
        rows = [json.loads(line) for line in text.split("\n")[:-1]]
        insert(rows)
        os.ftruncate(fd, 0)
        return len(rows)
    finally:
        os.close(fd)
