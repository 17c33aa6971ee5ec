"""The sample server kvd and its release series behave as the later patch tests assume."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kvd import (
    SAMPLE_PROJECT,
    KvdClient,
    KvdProcess,
    build_with_make,
    patched_tree,
    start_kvd,
)

# Two 40-byte keys that agree on their first 31 bytes (KEY_MAX - 1).
LONG_KEY_A = "k" * 31 + "-first-A"
LONG_KEY_B = "k" * 31 + "-other-B"


class ReleaseBuilds:
    """Builds each release (None = v1.0) with plain `make`, at most once, on first use; warnings fail."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._binaries: dict[str | None, Path] = {}

    def __getitem__(self, release: str | None) -> Path:
        if release not in self._binaries:
            tree = patched_tree(SAMPLE_PROJECT, self._root / (release or "v1.0"), release)
            self._binaries[release] = build_with_make(tree)
        return self._binaries[release]


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> ReleaseBuilds:
    return ReleaseBuilds(tmp_path_factory.mktemp("releases"))


@pytest.fixture
def kvd_v10(releases: ReleaseBuilds) -> Iterator[KvdProcess]:
    with start_kvd(releases[None]) as server:
        yield server


def test_v10_protocol(kvd_v10: KvdProcess) -> None:
    with KvdClient(kvd_v10.port) as client:
        expected = [
            ("PING", "PONG"),
            ("SET greeting hello  wide world ", "OK"),
            ("GET greeting", "hello  wide world "),
            ("GET missing", "NIL"),
            ("INCR counter", "1"),
            ("INCR counter", "2"),
            ("SET n 41", "OK"),
            ("INCR n", "42"),
            ("INCR greeting", "ERR not an integer"),
            ("DEL greeting", "1"),
            ("DEL greeting", "0"),
            ("GET greeting", "NIL"),
            ("SET empty ", "OK"),
            ("GET empty", ""),
            ("VERSION", "kvd 1.0"),
            ("FLUSHALL", "ERR unknown command"),
            ("SET", "ERR wrong number of arguments"),
            ("SET onlykey", "ERR wrong number of arguments"),
            ("GET", "ERR wrong number of arguments"),
            ("INCR", "ERR wrong number of arguments"),
            ("DEL", "ERR wrong number of arguments"),
            ("SET crlf yes\r", "OK"),
            ("GET crlf", "yes"),
        ]
        for command, reply in expected:
            assert client.command(command) == reply, command
        assert client.command("STATS") == str(len(expected) + 1)
        assert client.command("QUIT") == "BYE"
        assert client.closed_by_server()


def test_v10_long_lines(kvd_v10: KvdProcess) -> None:
    value = "v" * 4090
    with KvdClient(kvd_v10.port) as client:
        assert client.command(f"SET big {value}") == "OK"
        assert client.command("GET big") == value


def test_v10_long_keys_alias_each_other(kvd_v10: KvdProcess) -> None:
    """The v1.0 security bug: keys are silently cut to 31 bytes."""
    with KvdClient(kvd_v10.port) as client:
        assert client.command(f"SET {LONG_KEY_A} secret-of-A") == "OK"
        assert client.command(f"SET {LONG_KEY_B} value-of-B") == "OK"
        assert client.command(f"GET {LONG_KEY_A}") == "value-of-B"


def test_connections_are_served_concurrently(kvd_v10: KvdProcess) -> None:
    with KvdClient(kvd_v10.port, timeout=3) as first, KvdClient(kvd_v10.port, timeout=3) as second:
        assert first.command("SET shared 1") == "OK"
        # `first` stays open and idle: a single-threaded server would block in its read.
        assert second.command("INCR shared") == "2"
        assert first.command("GET shared") == "2"


def test_state_is_shared_across_connections(kvd_v10: KvdProcess) -> None:
    with KvdClient(kvd_v10.port) as writer:
        assert writer.command("SET k v") == "OK"
    with KvdClient(kvd_v10.port) as reader:
        assert reader.command("GET k") == "v"


def test_binary_has_the_symbols_patch_tests_rely_on(releases: ReleaseBuilds) -> None:
    symbols = subprocess.run(
        ["nm", str(releases[None])], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split("\n")
    local_text = [line.split()[2] for line in symbols if line[17:19] == "t "]
    local_bss = [line.split()[2] for line in symbols if line[17:19] == "b "]
    assert local_text.count("is_blank") == 2, "static is_blank in protocol.c and store.c"
    assert any(name.startswith("seq.") for name in local_bss), "function-local static in log_msg"
    defined = {line.split()[2] for line in symbols if len(line.split()) == 3}
    assert {"protocol_dispatch", "commands_served", "table", "table_lock"} <= defined


def test_v11_rejects_long_keys(releases: ReleaseBuilds) -> None:
    with start_kvd(releases["v1.1"]) as server, KvdClient(server.port) as client:
        assert client.command("VERSION") == "kvd 1.1"
        for command in (f"SET {LONG_KEY_A} x", f"GET {LONG_KEY_A}", f"INCR {LONG_KEY_A}", f"DEL {LONG_KEY_A}"):
            assert client.command(command) == "ERR key too long", command
        assert client.command(f"GET {LONG_KEY_A[:31]}") == "NIL"  # nothing was stored
        assert client.command(f"SET {'k' * 31} fits") == "OK"
        assert client.command(f"GET {'k' * 31}") == "fits"


def test_v12_append(releases: ReleaseBuilds) -> None:
    with start_kvd(releases["v1.2"]) as server, KvdClient(server.port) as client:
        assert client.command("VERSION") == "kvd 1.2"
        assert client.command("APPEND log hello") == "5"
        assert client.command("APPEND log  world") == "11"
        assert client.command("GET log") == "hello world"
        assert client.command("APPEND") == "ERR wrong number of arguments"
        assert client.command(f"APPEND {LONG_KEY_A} x") == "ERR key too long"


def test_v13_builds_and_serves(releases: ReleaseBuilds) -> None:
    with start_kvd(releases["v1.3"]) as server, KvdClient(server.port) as client:
        assert client.command("VERSION") == "kvd 1.3"
        assert client.command("SET a 1") == "OK"
        assert client.command("GET a") == "1"
        assert client.command("APPEND a 2") == "2"


def test_v14_counts_hits_and_builds_without_buildhook(releases: ReleaseBuilds) -> None:
    """Plain make, no buildhook.h on the include path: the migration is left out, the release works."""
    with start_kvd(releases["v1.4"]) as server, KvdClient(server.port) as client:
        assert client.command("VERSION") == "kvd 1.4"
        assert client.command("SET a 1") == "OK"
        assert client.command("HITS a") == "0"
        assert client.command("GET a") == "1" and client.command("GET a") == "1"
        assert client.command("HITS a") == "2"
        assert client.command("HITS nothing") == "NIL"


def test_patches_apply_cleanly_in_order(tmp_path: Path) -> None:
    tree = patched_tree(SAMPLE_PROJECT, tmp_path / "tree", None)
    for name in (SAMPLE_PROJECT / "patches" / "series").read_text().split():
        dry = subprocess.run(
            ["patch", "-p1", "--dry-run", "--batch", "-i", f"patches/{name}"],
            cwd=tree, capture_output=True, text=True, timeout=30,
        )
        assert dry.returncode == 0 and "FAILED" not in dry.stdout and "fuzz" not in dry.stdout, dry.stdout
        subprocess.run(["patch", "-p1", "--batch", "-s", "-i", f"patches/{name}"], cwd=tree, check=True, timeout=30)
