"""Data changes applied live (docs/data-changes.md), checked by behaviour against the new build.

* migrate: a histogram that grows is moved to new storage when its running
  bytes are still its initial ones, and refused (the process untouched) once
  the process has written it; a tunable whose initial value changed gets the
  new value, or keeps the one the process set (and gets it back on revert).
* hooks: a table that grows is migrated by its BUILDHOOK_TRANSFORM with the
  entries the process had; PRE hooks refuse (nothing changed), POST hooks run
  and their output is in ``apply --json``; a POST_APPLY hook that faults gets
  the patch reverted, and the process lives on.
* shadow: a new field on connections that were created before the patch, a
  table that survives a replacing cumulative patch and is emptied by revert.

Each patched process must answer exactly as a fresh process of the new
build given the same commands.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from buildhook.po import format as fmt
from buildhook.po.reader import read_patch
from tests.support.programs import BUILDHOOK, LineProgram, Releases, build_releases

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier attaches with ptrace as root")


@pytest.fixture(scope="module")
def migrate(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return build_releases("migrate", tmp_path_factory.mktemp("migrate"), ("new",))


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return build_releases("hooks", tmp_path_factory.mktemp("hooks"), ("new", "crashy", "badtransform"))


@pytest.fixture(scope="module")
def shadow(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return build_releases("shadow", tmp_path_factory.mktemp("shadow"), ("new", "newer"))


def buildhook(releases: Releases, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUILDHOOK, *args], env=releases.env, capture_output=True, text=True, timeout=60)


def apply(releases: Releases, version: str, pid: int) -> dict:
    result = buildhook(releases, "apply", str(releases.patches[version]), "--pid", str(pid), "--json")
    assert result.returncode == 0, result.stderr
    [report] = json.loads(result.stdout)
    return report


def answers(program: LineProgram, commands: list[str]) -> list[str]:
    return [program.ask(command) for command in commands]


def fresh_answers(binary: Path, commands: list[str]) -> list[str]:
    with LineProgram(binary) as program:
        return answers(program, commands)


def snapshot(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def outcomes(report: dict) -> dict[str, str]:
    return {m["name"]: m["outcome"] for m in report["migrations"]}


# -- automatic migration --------------------------------------------------------------

MIGRATE_COMMANDS = ["s 3", "s 1000", "s 40000", "p", "l", "L 0", "l"]


def test_grown_variable_is_moved_when_it_still_holds_its_initial_value(migrate: Releases) -> None:
    with LineProgram(migrate.old) as process:
        report = apply(migrate, "new", process.process.pid)
        assert outcomes(report) == {"histogram": "migrated: new initial value", "limit": "migrated: new initial value"}
        assert answers(process, MIGRATE_COMMANDS) == fresh_answers(migrate.binaries["new"], MIGRATE_COMMANDS)


def test_grown_variable_the_process_changed_is_refused_and_nothing_changes(migrate: Releases) -> None:
    with LineProgram(migrate.old) as process:
        assert process.ask("s 5") == "ok"
        before = snapshot(process.process.pid)
        result = buildhook(migrate, "apply", str(migrate.patches["new"]), "--pid", str(process.process.pid))
        assert result.returncode == 2, result.stderr
        assert "histogram (main.c) has changed since the process started" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert snapshot(process.process.pid) == before
        assert process.ask("p") == "0 0 0 1 0 0 0 0 "  # the old code, on the old data
        assert "no patches applied" in buildhook(migrate, "status", "--pid", str(process.process.pid)).stdout


def test_grown_variable_a_heap_pointer_reaches_is_refused(migrate: Releases) -> None:
    """Its bytes are still the initial ones, but a pointer into it was handed out: moved, that pointer would
    keep reaching the old storage."""
    with LineProgram(migrate.old) as process:
        assert process.ask("k") == "ok"
        before = snapshot(process.process.pid)
        result = buildhook(migrate, "apply", str(migrate.patches["new"]), "--pid", str(process.process.pid))
        assert result.returncode == 2, result.stderr
        assert "variable histogram (main.c) cannot move to new storage: a word at" in result.stderr
        assert "[heap]) points into it" in result.stderr
        assert snapshot(process.process.pid) == before
        assert process.ask("s 5") == "ok" and process.ask("p") == "0 0 0 1 0 0 0 0 "


def test_tunable_the_process_set_keeps_its_running_value_and_gets_it_back_on_revert(migrate: Releases) -> None:
    with LineProgram(migrate.old) as process:
        assert process.ask("L 9") == "ok"
        report = apply(migrate, "new", process.process.pid)
        assert outcomes(report)["limit"] == "running value kept"
        assert process.ask("l") == "limit 9"
        assert process.ask("L 7") == "ok"  # the new code writes the new storage
        assert buildhook(migrate, "revert", "--pid", str(process.process.pid)).returncode == 0
        assert process.ask("l") == "limit 7"  # the old code reads the old storage, given the value back
        assert process.ask("L 0") == "ok" and process.ask("l") == "limit 0"  # the old code's rule again


# -- transform and hooks ------------------------------------------------------------

def test_transform_carries_the_entries_and_hooks_report(hooks: Releases) -> None:
    setup = ["a 1 10", "a 2 20", "a 3 30"]
    later = ["a 4 40", "a 5 50", "a 6 60", "g 1", "g 3", "g 6", "n"]
    with LineProgram(hooks.old) as process:
        answers(process, setup)
        report = apply(hooks, "new", process.process.pid)
        assert process._line() == "applied with 3 entries"  # the POST_APPLY hook, in the target
        assert [(h["kind"], h["name"], h["returned"]) for h in report["hooks"]] == \
            [("pre_apply", "table_idle", 0), ("post_apply", "report_applied", None)]
        assert report["hooks"][1]["output"] == "applied with 3 entries\n"
        assert outcomes(report) == {"table": "transformed"}
        assert answers(process, later) == fresh_answers(hooks.binaries["new"], setup + later)[len(setup):]


def test_inspect_says_what_moves_and_which_hooks_run(hooks: Releases) -> None:
    text = buildhook(hooks, "inspect", str(hooks.patches["new"])).stdout
    assert "moves main.c: table (32 → 128 bytes) to new storage, filled by grow_table, the world stopped" in text
    assert "pre-apply hook: main.c: table_idle" in text and "post-revert hook: main.c: report_reverted" in text
    summary = json.loads(buildhook(hooks, "inspect", str(hooks.patches["new"]), "--json").stdout)
    assert summary["migrations"] == [{"name": "table", "file": "main.c", "kind": "transform", "old_size": 32,
                                      "new_size": 128, "transform": "grow_table"}]
    assert sorted(h["kind"] for h in summary["hooks"]) == ["post_apply", "post_revert", "pre_apply", "pre_revert"]


def test_a_po_with_a_damaged_migration_is_refused_before_the_target_is_touched(hooks: Releases,
                                                                              tmp_path: Path) -> None:
    """Metadata that names no transform (its id recomputed, as a forger would): one line, exit 1, untouched."""
    data = hooks.patches["new"].read_bytes()
    claimed = read_patch(data, "new.po").patch_id
    zeroed = data.replace(fmt.patch_id_field(claimed), fmt.patch_id_field(fmt.PATCH_ID_PLACEHOLDER))
    damaged = zeroed.replace(b'"kind": "transform"', b'"kind": "transfxrm"')
    assert damaged != zeroed
    forged = tmp_path / "forged.po"
    forged.write_bytes(damaged.replace(fmt.patch_id_field(fmt.PATCH_ID_PLACEHOLDER),
                                       fmt.patch_id_field(hashlib.sha256(damaged).hexdigest())))
    with LineProgram(hooks.old) as process:
        assert process.ask("b 0") == "busy 0"  # started (its stdio buffers, its heap): the maps are settled
        before = snapshot(process.process.pid)
        result = buildhook(hooks, "apply", str(forged), "--pid", str(process.process.pid))
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert "migration of 'table' names no writable variable of the patch" in line
        assert snapshot(process.process.pid) == before


def test_pre_apply_hook_refuses_with_nothing_changed(hooks: Releases) -> None:
    with LineProgram(hooks.old) as process:
        assert process.ask("b 1") == "busy 1"
        before = snapshot(process.process.pid)
        result = buildhook(hooks, "apply", str(hooks.patches["new"]), "--pid", str(process.process.pid))
        assert result.returncode == 2
        assert "pre-apply hook table_idle returned 1" in result.stderr and "nothing was changed" in result.stderr
        assert snapshot(process.process.pid) == before  # the region it ran in is gone again
        assert answers(process, ["a 1 1", "a 2 2", "a 3 3", "a 4 4", "a 5 5"])[-1] == "slot -1"  # old: 4 slots
        assert process.ask("b 0") == "busy 0"
        apply(hooks, "new", process.process.pid)
        assert process._line() == "applied with 4 entries"
        assert process.ask("a 5 5") == "slot 4"


def test_pre_revert_hook_refuses_and_post_revert_hook_runs(hooks: Releases) -> None:
    with LineProgram(hooks.old) as process:
        apply(hooks, "new", process.process.pid)
        assert process._line() == "applied with 0 entries"
        assert process.ask("b 1") == "busy 1"
        refused = buildhook(hooks, "revert", "--pid", str(process.process.pid))
        assert refused.returncode == 2 and "pre-revert hook table_idle returned 1" in refused.stderr
        assert process.ask("a 1 1") == "slot 0" and process.ask("b 0") == "busy 0"
        reverted = buildhook(hooks, "revert", "--pid", str(process.process.pid), "--json")
        assert reverted.returncode == 0, reverted.stderr
        assert process._line() == "reverted with 1 entries"
        [report] = json.loads(reverted.stdout)
        assert [h["kind"] for h in report["hooks"]] == ["pre_revert", "post_revert"]


def test_post_apply_hook_that_faults_gets_the_patch_reverted(hooks: Releases) -> None:
    with LineProgram(hooks.old) as process:
        answers(process, ["a 1 1", "a 2 2"])
        result = buildhook(hooks, "apply", str(hooks.patches["crashy"]), "--pid", str(process.process.pid))
        assert result.returncode == 2
        assert "post-apply hook report_applied faulted (SIGSEGV" in result.stderr
        assert "the patch was reverted" in result.stderr
        assert process._line() == "applied with 2 entries"  # what it printed before the fault
        assert process._line() == "reverted with 2 entries"  # its POST_REVERT hook, run by that revert
        assert process.process.poll() is None
        assert answers(process, ["a 3 3", "a 4 4", "a 5 5", "g 2"]) == ["slot 2", "slot 3", "slot -1", "value 2"]
        status = buildhook(hooks, "status", "--pid", str(process.process.pid))
        assert "reverted" in status.stdout


def test_transform_that_faults_refuses_with_nothing_changed(hooks: Releases) -> None:
    with LineProgram(hooks.old) as process:
        answers(process, ["a 1 1", "a 2 2", "a 3 3"])
        before = snapshot(process.process.pid)
        result = buildhook(hooks, "apply", str(hooks.patches["badtransform"]), "--pid", str(process.process.pid))
        assert result.returncode == 2
        assert "the transform grow_table of table (main.c) faulted (SIGSEGV" in result.stderr
        assert "nothing was changed" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert snapshot(process.process.pid) == before
        assert process.process.poll() is None
        assert answers(process, ["a 4 4", "a 5 5", "g 3"]) == ["slot 3", "slot -1", "value 3"]  # the old code


# -- shadow variables ---------------------------------------------------------------

def test_shadow_field_on_objects_created_before_the_patch(shadow: Releases) -> None:
    setup = ["c", "c", "c"]
    later = ["h 0", "h 0", "h 1", "d 1", "c", "h 3", "h 0"]
    with LineProgram(shadow.old) as process:
        answers(process, setup)
        apply(shadow, "new", process.process.pid)
        assert answers(process, later) == fresh_answers(shadow.binaries["new"], setup + later)[len(setup):]


def test_shadow_table_survives_a_replacing_patch_and_revert_frees_it(shadow: Releases) -> None:
    with LineProgram(shadow.old) as process:
        process.ask("c")
        apply(shadow, "new", process.process.pid)
        assert process.ask("h 0") == "conn 0 hits 1"
        apply(shadow, "newer", process.process.pid)  # replaces "new": its table is kept
        assert process.ask("h 0") == "conn 0 hits 2"
        reverted = buildhook(shadow, "revert", "--pid", str(process.process.pid), "--json")
        assert reverted.returncode == 0, reverted.stderr
        [report] = json.loads(reverted.stdout)
        assert [h["name"] for h in report["hooks"]] == ["buildhook__shadow_release"]
        assert process.ask("h 0") == "conn 0"
        apply(shadow, "newer", process.process.pid)
        assert process.ask("h 0") == "conn 0 hits 1"  # the fields went with the revert
