"""Kill the applier at every step: the target keeps running, wholly old or wholly new, and status tells the truth.

The target (tests/apply_programs/killsafe) is multi-threaded: threads block
in read, nanosleep and a condition wait, one spins, and the main thread
answers "which" with the versions of the three functions the releases
change together.  ``buildhook apply``, ``revert`` and a replacing apply are
run under tests/support/killer.py, which SIGKILLs the applier at its Nth
system-call boundary (every entry and exit of ptrace, wait4, pread64,
pwrite64, ftruncate and process_vm_readv), for every N the command has.
After each kill: the process is alive, runs exactly one release (never a
mix), ``status`` says exactly that one, no thread saw EINTR; then a normal
apply or revert recovers whatever was left and must reach its state.

BUILDHOOK_KILL_STRIDE=k checks every k-th step only: the default, 5, keeps CI within minutes;
BUILDHOOK_KILL_STRIDE=1 checks every step (about 25 minutes here; bench/RESULTS.md records the runs).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from buildhook.apply.applier import patch_status
from buildhook.apply.frames import FLAG_OFFSET as FRAMES_FLAG_OFFSET
from buildhook.apply.state import condition
from tests.conftest import run
from tests.support.killer import run_killed_at
from tests.support.programs import (
    BUILDHOOK,
    Releases,
    build_library_releases,
    build_releases,
)

OLD, NEW, NEWER = (1, 1, 1), (2, 2, 2), (3, 3, 1)
STRIDE = int(os.environ.get("BUILDHOOK_KILL_STRIDE", "5"))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier tests attach with ptrace as root")


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """old; new (f, g and h change); newer (f and g change again, h is the old one); migrating (new, with
    a variable that grows, moved by a transform, and PRE/POST_APPLY hooks)."""
    return build_releases("killsafe", tmp_path_factory.mktemp("killsafe"), ("new", "newer", "migrating"))


@dataclass
class Target:
    process: subprocess.Popen[bytes]
    eintr: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def line(self, timeout: float = 10) -> str:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"process {self.pid} printed nothing in {timeout} s")
        return self.process.stdout.readline().decode().strip()

    def which(self) -> tuple[int, int, int]:
        """The versions of f, g and h the process runs now."""
        assert self.process.stdin is not None and self.process.poll() is None, "the target died"
        self.process.stdin.write(b"which\n")
        self.process.stdin.flush()
        line = self.line()
        while line.startswith("EINTR"):
            self.eintr.append(line)
            line = self.line()
        values = dict(part.split("=") for part in line.split())
        return int(values["f"]), int(values["g"]), int(values["h"])

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start(releases: Releases) -> Target:
    process = subprocess.Popen([str(releases.old)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    target = Target(process)
    assert target.line() == "ready"
    return target


def buildhook(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return run([BUILDHOOK, *args], env, timeout=120)


def status(target: Target, env: dict[str, str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(applied patch ids, (patch id, condition) of the other regions), as ``status`` reports them.

    Read in-process, with the functions ``buildhook status`` prints (a
    command per check would double the run time of the sweep).
    """
    records = patch_status(target.pid)
    return ([p.patch_id for p in records if condition(p, records) == "applied"],
            [(p.patch_id, condition(p, records)) for p in records if condition(p, records) != "applied"])


def patch_id(po: Path, env: dict[str, str]) -> str:
    return str(json.loads(buildhook(["inspect", str(po), "--json"], env).stdout)["patch_id"])


def leaked_memfds(target: Target) -> list[str]:
    found = []
    for name in os.listdir(f"/proc/{target.pid}/fd"):
        try:
            link = os.readlink(f"/proc/{target.pid}/fd/{name}")
        except OSError:
            continue
        if "buildhook:" in link:
            found.append(link)
    return found


def check_state(target: Target, releases: Releases, ids: dict[tuple[int, int, int], str | None],
                where: str) -> tuple[int, int, int]:
    """The process runs one of the releases in *ids*, whole, and status names exactly that patch."""
    assert target.process.poll() is None, f"{where}: the target died"
    running = target.which()
    assert running in ids, f"{where}: the process runs a mix: f, g, h = {running}"
    applied, _ = status(target, releases.env)
    expected = ids[running]  # a patch id, or a patch set's ids joined by spaces
    assert sorted(applied) == sorted(expected.split() if expected else []), \
        f"{where}: runs {running} but status says {applied}"
    assert target.eintr == [], f"{where}: {target.eintr}"
    return running


def check_clean(target: Target, releases: Releases, where: str) -> None:
    """After a normal apply or revert, nothing of a cut-short run is left."""
    _, others = status(target, releases.env)
    assert all(condition != "leftover" for _, condition in others), f"{where}: leftovers remain: {others}"
    assert leaked_memfds(target) == [], f"{where}: memfds left open: {leaked_memfds(target)}"


def steps_of(command: list[str], releases: Releases, setup: list[list[str]]) -> int:
    target = start(releases)
    try:
        for args in setup:
            buildhook([*args, "--pid", str(target.pid)], releases.env)
        result = run_killed_at([BUILDHOOK, *command, "--pid", str(target.pid)], releases.env, None)
        assert result.returncode == 0, result.stderr
        return result.steps
    finally:
        target.stop()


def sweep(releases: Releases, command: list[str], setup: list[list[str]],
          ids: dict[tuple[int, int, int], str | None],
          recover: dict[tuple[int, int, int], list[tuple[list[str], tuple[int, int, int]]]]) -> int:
    """Kill *command* at every step and check the state; then the *recover* commands for the state found
    (each must succeed and reach its state, leaving nothing behind).  Returns the steps checked."""
    total = steps_of(command, releases, setup)
    checked = 0
    for step in range(1, total + 1, STRIDE):
        target = start(releases)
        try:
            for args in setup:
                buildhook([*args, "--pid", str(target.pid)], releases.env)
            killed = run_killed_at([BUILDHOOK, *command, "--pid", str(target.pid)], releases.env, step)
            where = f"{command[0]} killed at step {step}/{total} (syscall {killed.syscall} {killed.at})"
            if not killed.killed:  # this run needed fewer steps (no retry, say): it must simply have worked
                assert killed.returncode == 0, f"{where}: {killed.stderr}"
            running = check_state(target, releases, ids, where)
            for args, expected in recover[running]:
                buildhook([*args, "--pid", str(target.pid)], releases.env)
                assert check_state(target, releases, ids, f"{where}, then {args[0]}") == expected
                check_clean(target, releases, f"{where}, then {args[0]}")
            checked += 1
        finally:
            target.stop()
    return checked


def test_apply_killed_at_every_step(releases: Releases) -> None:
    apply_new, revert = ["apply", str(releases.patches['new'])], ["revert"]
    ids = {OLD: None, NEW: patch_id(releases.patches['new'], releases.env)}
    assert sweep(releases, apply_new, [], ids,
                 {OLD: [(apply_new, NEW), (revert, OLD)], NEW: [(revert, OLD), (apply_new, NEW)]})


def test_revert_killed_at_every_step(releases: Releases) -> None:
    apply_new, revert = ["apply", str(releases.patches['new'])], ["revert"]
    ids = {OLD: None, NEW: patch_id(releases.patches['new'], releases.env)}
    assert sweep(releases, revert, [apply_new], ids,
                 {OLD: [(apply_new, NEW), (revert, OLD)], NEW: [(revert, OLD), (apply_new, NEW)]})


def test_replacement_killed_at_every_step(releases: Releases) -> None:
    apply_new, apply_newer, revert = ["apply", str(releases.patches['new'])], ["apply", str(releases.patches['newer'])], ["revert"]
    ids = {NEW: patch_id(releases.patches['new'], releases.env), NEWER: patch_id(releases.patches['newer'], releases.env), OLD: None}
    assert sweep(releases, apply_newer, [apply_new], ids,
                 {NEW: [(apply_newer, NEWER), (revert, OLD)], NEWER: [(revert, OLD), (apply_newer, NEWER)]})


@pytest.fixture(scope="module")
def set_releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """The same program with part_h in a shared library: new is a patch set, the program's and the library's."""
    return build_library_releases("killsafe", tmp_path_factory.mktemp("killsafe-set"), ("new",))


def test_apply_with_a_migration_killed_at_every_step(releases: Releases) -> None:
    """A patch whose hooks run in the target and whose variable moves to new storage, filled by a
    transform on a thread of the stopped world: killed anywhere, the process runs wholly old or wholly
    new, and a later apply or revert finishes the job."""
    migrating = patch_id(releases.patches["migrating"], releases.env)
    apply_it = ["apply", str(releases.patches["migrating"])]
    ids: dict[tuple[int, int, int], str | None] = {OLD: None, NEW: migrating}
    recover = {OLD: [(apply_it, NEW), (["revert"], OLD)], NEW: [(["revert"], OLD), (apply_it, NEW)]}
    assert sweep(releases, apply_it, [], ids, recover) > 0


def test_patch_set_killed_at_every_step(set_releases: Releases) -> None:
    """The program's and the library's patch share one commit byte: never one without the other."""
    patches = set_releases.patches
    apply_set, revert = ["apply", str(patches["new"]), str(patches["new.so"])], ["revert"]
    ids = {OLD: None, NEW: f"{patch_id(patches['new'], set_releases.env)} {patch_id(patches['new.so'], set_releases.env)}"}
    assert sweep(set_releases, apply_set, [], ids,
                 {OLD: [(apply_set, NEW), (revert, OLD)], NEW: [(revert, OLD), (apply_set, NEW)]})


def _registered_leftovers(target: Target) -> list[str]:
    """Leftover regions whose unwind tables are registered with the target's libgcc (frames.py's byte)."""
    records = patch_status(target.pid)
    found = []
    with open(f"/proc/{target.pid}/mem", "rb", buffering=0) as memory:
        for record in records:
            if condition(record, records) == "leftover" and record.unwind:
                memory.seek(record.control + FRAMES_FLAG_OFFSET)
                if memory.read(1) == b"\x01":
                    found.append(record.patch_id)
    return found


def test_revert_removes_a_leftover_whose_unwind_tables_are_registered(releases: Releases) -> None:
    """Reduced case (an AssertionError, 'internal error', before): a replacing apply killed between
    registering its tables and its commit leaves a leftover with registered tables; the next ``revert``
    deregisters them before it unmaps the region, and the process's backtraces stay whole."""
    apply_new, apply_newer = ["apply", str(releases.patches["new"])], ["apply", str(releases.patches["newer"])]
    total = steps_of(apply_newer, releases, [apply_new])
    for step in range(total, 0, -1):  # the last steps before the commit are the ones wanted
        target = start(releases)
        try:
            buildhook([*apply_new, "--pid", str(target.pid)], releases.env)
            run_killed_at([BUILDHOOK, *apply_newer, "--pid", str(target.pid)], releases.env, step)
            if target.which() != NEW or not _registered_leftovers(target):
                continue
            buildhook(["revert", "--pid", str(target.pid)], releases.env)
            assert target.which() == OLD  # part_f's backtrace() would fail or crash on a dangling table
            assert _registered_leftovers(target) == []
            check_clean(target, releases, f"revert after the apply killed at step {step}")
            return
        finally:
            target.stop()
    pytest.fail("no step of the replacing apply left a leftover with registered unwind tables")
