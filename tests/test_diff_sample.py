"""Patch generation on the sample server's real releases, as a release engineer runs it.

v1.0 is built with the wrapper and released; each later release is built over
it.  The .po comes out of the build itself (post-link step) and from
``buildhook diff``; both must name exactly the changed and new functions.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from buildhook import samples
from buildhook.elf.binary import LinkedBinary
from buildhook.store import Store
from tests.conftest import run


def build(tree: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return run(["make", "-s", "-j8", "CC=buildhook-cc"], env, cwd=tree)


@pytest.fixture
def released(sample_tree: Path, env: dict[str, str], buildhook_cmd: str) -> Path:
    """kvd v1.0 built with the wrapper and released as v1.0; returns the tree."""
    build(sample_tree, env)
    run([buildhook_cmd, "release", "v1.0"], env)
    return sample_tree


def inspect_json(buildhook_cmd: str, patch: Path, env: dict[str, str]) -> dict:
    return json.loads(run([buildhook_cmd, "inspect", str(patch), "--json"], env).stdout)


def names(entries: list[dict]) -> set[str]:
    return {entry["name"] for entry in entries}


def test_v11_patch_comes_out_of_the_build(released: Path, env: dict[str, str], buildhook_cmd: str,
                                          store_dir: Path) -> None:
    samples.apply_series(released, "v1.1")
    output = build(released, env)
    patch = released / "kvd.from-v1.0.po"
    assert patch.is_file()
    assert output.stderr == b"", "a written patch is silent: the build's output stays the compiler's"
    summary = inspect_json(buildhook_cmd, patch, env)
    assert names(summary["functions"]) == {"protocol_dispatch"}
    assert names(summary["new_functions"]) == {"need_key.isra.0"}
    assert summary["new_data"] == [] and summary["warnings"] == []
    assert summary["from"] == "v1.0" and summary["format"] == "buildhook-po/1"
    store = Store(store_dir)
    [base] = store.records.releases()[0].links
    assert summary["target"] == {"path": base.binary, "build_id": base.build_id}
    # The old address comes from the base link map and must be where the symbol is.
    binary = LinkedBinary(store.blobs.read(base.sha256), base.binary)
    [dispatch] = summary["functions"]
    symbol = next(s for s in binary.symbols if s.name == "protocol_dispatch")
    assert (dispatch["old_address"], dispatch["old_size"]) == (symbol.address, symbol.size)
    assert dispatch["file"] == "protocol.c" and dispatch["new_size"] > 0


def test_diff_is_deterministic_and_readelf_clean(released: Path, env: dict[str, str], buildhook_cmd: str,
                                                 tmp_path: Path) -> None:
    samples.apply_series(released, "v1.1")
    build(released, env)
    first, second = tmp_path / "a.po", tmp_path / "b.po"
    for path in (first, second):
        assert run([buildhook_cmd, "diff", "--from", "v1.0", str(released / "kvd"), "-o", str(path)],
                   env).returncode == 0
    assert first.read_bytes() == second.read_bytes() == (released / "kvd.from-v1.0.po").read_bytes()
    readelf = run(["readelf", "-a", "-W", str(first)], env)
    assert readelf.stderr == b""
    assert b".buildhook.patch" in readelf.stdout


def test_v12_new_command_new_function_new_global(released: Path, env: dict[str, str], buildhook_cmd: str,
                                                 tmp_path: Path) -> None:
    samples.apply_series(released, "v1.2")
    build(released, env)
    result = run([buildhook_cmd, "diff", "--from", "v1.0", str(released / "kvd"), "--json",
                  "-o", str(tmp_path / "v12.po")], env)
    report = json.loads(result.stdout)
    assert report["outcome"] == "patch"
    assert names(report["replaced"]) == {"protocol_dispatch", "protocol_handle_line"}
    assert names(report["new_functions"]) == {"need_key.isra.0", "store_append"}
    assert {(d["file"], d["name"]) for d in report["new_data"]} == {("stats.c", "appends_served")}
    summary = inspect_json(buildhook_cmd, tmp_path / "v12.po", env)
    assert names(summary["functions"]) == {"protocol_dispatch", "protocol_handle_line"}


def test_v13_struct_change_is_refused_with_the_struct_named(released: Path, env: dict[str, str],
                                                            buildhook_cmd: str) -> None:
    samples.apply_series(released, "v1.3")
    output = build(released, env)
    assert b"refused" in output.stderr and b"struct entry" in output.stderr
    assert not (released / "kvd.from-v1.0.po").exists()
    result = run([buildhook_cmd, "diff", "--from", "v1.0", str(released / "kvd")], env, check=False)
    assert result.returncode == 2
    [line] = result.stderr.decode().strip().splitlines()
    assert "store.c: struct entry:" in line and "[struct-layout-changed]" in line


def test_rebuild_of_the_release_is_no_change(released: Path, env: dict[str, str], buildhook_cmd: str) -> None:
    run(["make", "-s", "clean"], env, cwd=released)
    build(released, env)
    assert not (released / "kvd.from-v1.0.po").exists()
    result = run([buildhook_cmd, "diff", "--from", "v1.0", str(released / "kvd")], env, check=False)
    assert result.returncode == 3
    assert b"no change" in result.stdout


def test_strict_mode_fails_the_link_and_off_writes_nothing(released: Path, env: dict[str, str]) -> None:
    samples.apply_series(released, "v1.3")
    env["BUILDHOOK_PATCH_STRICT"] = "1"
    result = run(["make", "-s", "CC=buildhook-cc"], env, cwd=released, check=False)
    assert result.returncode != 0 and b"refused" in result.stderr
    env["BUILDHOOK_PATCH_STRICT"] = "0"
    env["BUILDHOOK_PATCH_FROM"] = "off"
    result = run(["make", "-s", "-B", "CC=buildhook-cc"], env, cwd=released)
    assert b"buildhook" not in result.stderr
    assert not list(released.glob("*.po"))


def test_diff_errors_are_one_line(released: Path, env: dict[str, str], buildhook_cmd: str, tmp_path: Path) -> None:
    for command, expected in (
        (["diff", "--from", "v9", str(released / "kvd")], "no release v9"),
        (["diff", "--from", "v1.0", str(tmp_path / "never-built")], "no link of"),
    ):
        result = run([buildhook_cmd, *command], env, check=False)
        assert result.returncode == 1
        [line] = result.stderr.decode().strip().splitlines()
        assert expected in line


@pytest.fixture
def good_patch(released: Path, env: dict[str, str]) -> Path:
    samples.apply_series(released, "v1.1")
    build(released, env)
    return released / "kvd.from-v1.0.po"


@pytest.mark.parametrize(("damage", "expected"), [
    ("text", "not an ELF file"),
    ("object", "no .buildhook.patch section"),
    ("truncated", "truncated?"),
    ("flipped", "does not match its patch id"),
])
def test_inspect_rejects_what_is_not_a_valid_patch(damage: str, expected: str, good_patch: Path, released: Path,
                                                   env: dict[str, str], buildhook_cmd: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.po"
    data = good_patch.read_bytes()
    if damage == "text":
        bad.write_text("this is not a patch\n")
    elif damage == "object":
        bad.write_bytes((released / "store.o").read_bytes())
    elif damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    else:
        code = data.find(b"\x48")  # some byte of code, well inside the file
        bad.write_bytes(data[:code] + bytes([data[code] ^ 0xFF]) + data[code + 1:])
    result = run([buildhook_cmd, "inspect", str(bad)], env, check=False)
    assert result.returncode == 1
    [line] = result.stderr.decode().strip().splitlines()
    assert line.startswith(f"buildhook: error: {bad} is not a valid buildhook patch: ")
    assert expected in line
