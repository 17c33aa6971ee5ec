"""The store: blobs verified on read, releases, garbage collection, CLI errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from buildhook.store import CorruptBlobError, MissingBlobError, ReleaseError, Store
from tests.conftest import builds_json, run


@pytest.fixture
def built(sample_tree: Path, env: dict[str, str]) -> Path:
    """kvd v1.0 built with the wrapper into the test's store."""
    run(["make", "-j8", "CC=buildhook-cc"], env, cwd=sample_tree)
    return sample_tree / "kvd"


def test_blob_round_trip_and_atomic_write(store_dir: Path) -> None:
    store = Store(store_dir)
    sha = store.blobs.put_bytes(b"object bytes")
    assert store.blobs.read(sha) == b"object bytes"
    assert store.blobs.put_bytes(b"object bytes") == sha
    assert Path(store.blobs.path_for(sha)).relative_to(store_dir) == Path("objects", sha[:2], sha[2:])
    assert list((store_dir / "objects" / "tmp").iterdir()) == []


def test_corrupted_blob_is_detected_on_read(store_dir: Path) -> None:
    store = Store(store_dir)
    sha = store.blobs.put_bytes(b"\x7fELF original object")
    path = Path(store.blobs.path_for(sha))
    os.chmod(path, 0o644)
    path.write_bytes(b"\x7fELF flipped object!")
    with pytest.raises(CorruptBlobError, match=f"blob {sha} .* is corrupt"):
        store.blobs.read(sha)
    with pytest.raises(MissingBlobError):
        store.blobs.read("0" * 64)


def test_recorded_objects_are_the_built_bytes(built: Path, env: dict[str, str], store_dir: Path) -> None:
    store = Store(store_dir)
    [link] = store.records.links()
    for item in link.objects:
        assert store.blobs.read(item.sha256) == Path(item.path).read_bytes()
    assert store.blobs.read(link.sha256) == built.read_bytes()
    assert b"Linker script and memory map" in store.blobs.read(link.map_sha256 or "")


def test_release_marks_latest_link_and_tags_are_not_reused(built: Path, sample_tree: Path, env: dict[str, str],
                                                           buildhook_cmd: str) -> None:
    out = run([buildhook_cmd, "release", "v1.0"], env).stdout.decode()
    assert f"released {built}" in out
    result = run([buildhook_cmd, "release", "v1.0"], env, check=False)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "buildhook: error: release v1.0 already exists; release tags cannot be reused"
    run(["touch", "protocol.c"], env, cwd=sample_tree)
    run(["make", "-j8", "CC=buildhook-cc"], env, cwd=sample_tree)
    run([buildhook_cmd, "release", "v1.1", str(built)], env)
    releases = json.loads(run([buildhook_cmd, "releases", "--json"], env).stdout)
    assert [r["tag"] for r in releases] == ["v1.0", "v1.1"]
    links = builds_json(env)
    assert [r["binaries"][0]["link_id"] for r in releases] == [links[0]["id"], links[1]["id"]]
    assert links[0]["releases"] == ["v1.0"] and links[1]["releases"] == ["v1.1"]


def test_release_of_unknown_binary_changes_nothing(built: Path, env: dict[str, str], buildhook_cmd: str,
                                                   tmp_path: Path) -> None:
    result = run([buildhook_cmd, "release", "v9", str(built), str(tmp_path / "nope")], env, check=False)
    assert result.returncode == 1
    assert "no recorded link for" in result.stderr.decode()
    assert json.loads(run([buildhook_cmd, "releases", "--json"], env).stdout) == []


def test_commands_without_a_store_say_so(env: dict[str, str], buildhook_cmd: str) -> None:
    for command in (["builds"], ["release", "v1"], ["releases"], ["store", "gc"]):
        result = run([buildhook_cmd, *command], env, check=False)
        assert result.returncode == 1
        [line] = result.stderr.decode().strip().splitlines()
        assert line.startswith("buildhook: error: no store at ")


def test_gc_keeps_releases_and_latest_and_drops_the_rest(built: Path, sample_tree: Path, env: dict[str, str],
                                                         store_dir: Path) -> None:
    store = Store(store_dir)
    store.release("v1.0")
    released = store.records.links()[0]
    for marker in ("a", "b"):  # two more builds with different protocol.o
        protocol = sample_tree / "protocol.c"
        protocol.write_text(protocol.read_text() + f"\nint gc_marker_{marker}(void) {{ return 1; }}\n")
        run(["make", "-j8", "CC=buildhook-cc"], env, cwd=sample_tree)
    store = Store(store_dir)
    links = store.records.links()
    assert len(links) == 3
    middle, latest = links[1], links[2]
    middle_only = {item.sha256 for item in middle.objects} - {
        item.sha256 for link in (released, latest) for item in link.objects}
    assert len(middle_only) == 1
    report = Store(store_dir).gc(keep_days=0)
    assert report.links_removed == 1 and report.blobs_removed >= 2  # the middle binary, object, map
    store = Store(store_dir)
    assert [link.id for link in store.records.links()] == [released.id, latest.id]
    for link in (released, latest):
        for item in link.objects:
            assert store.blobs.read(item.sha256)
        assert store.blobs.read(link.sha256)
    for sha in middle_only:
        assert not store.blobs.has(sha)


def test_gc_keeps_recent_builds(built: Path, env: dict[str, str], store_dir: Path, buildhook_cmd: str) -> None:
    before = set(Store(store_dir).blobs.iter_hashes())
    out = run([buildhook_cmd, "store", "gc"], env).stdout.decode()
    assert out.startswith("removed 0 links")
    assert set(Store(store_dir).blobs.iter_hashes()) == before


def test_release_tag_must_be_a_word(built: Path, store_dir: Path) -> None:
    with pytest.raises(ReleaseError, match="non-empty word"):
        Store(store_dir).release("v 1")


def test_newer_schema_is_refused(store_dir: Path) -> None:
    import sqlite3

    store_dir.mkdir(parents=True)
    with sqlite3.connect(store_dir / "records.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    from buildhook.store import StoreSchemaError

    with pytest.raises(StoreSchemaError, match="upgrade buildhook"):
        Store(store_dir).records


def test_builds_json_shape(built: Path, env: dict[str, str]) -> None:
    [link] = builds_json(env)
    assert set(link) >= {"binary", "build_id", "time", "objects"}
    assert link["binary"] == str(built)
    assert time.time() - time.mktime(time.strptime(link["time"][:19], "%Y-%m-%dT%H:%M:%S")) < 3600 * 24
    assert all(set(item) >= {"path", "sha256"} for item in link["objects"])


def test_journal_is_folded_in_once_even_if_replayed(sample_tree: Path, env: dict[str, str], store_dir: Path) -> None:
    """A crash after the commit but before the journal is emptied must not duplicate records."""
    from tests.conftest import compile_records

    run(["buildhook-cc", "-c", "log.c", "stats.c"], env, cwd=sample_tree)
    journal = store_dir / "compiles.journal"
    pending = journal.read_bytes()
    assert pending.count(b"\n") == 2
    assert len(compile_records(store_dir)) == 2
    assert journal.read_bytes() == b""
    journal.write_bytes(pending)  # as if the truncation had not happened
    assert len(compile_records(store_dir)) == 2


def test_a_journal_line_no_database_can_hold_does_not_stop_the_fold(sample_tree: Path, env: dict[str, str],
                                                                     store_dir: Path) -> None:
    """A line with a path that is not UTF-8 (older wrappers journaled one) is dropped, not left to fail every fold."""
    from tests.conftest import compile_records

    run(["buildhook-cc", "-c", "log.c"], env, cwd=sample_tree)
    journal = store_dir / "compiles.journal"
    good = journal.read_text()
    poisoned = good.replace(str(sample_tree / "log.c"), str(sample_tree / "log\\udcff.c")).replace('["', '["f', 1)
    journal.write_text(poisoned + good)
    assert [Path(source).name for source, _, _ in compile_records(store_dir)] == ["log.c"]
    assert journal.read_bytes() == b""
