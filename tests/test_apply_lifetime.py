"""What a process keeps of a patch outlives it; what a patch adds is the process's own.

tests/apply_programs/pointers: with the new release applied, "keep" stores a
string and a function pointer that point into the patch's region in the
base's own variables; "bump" counts in a variable the patch adds.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run
from tests.support.programs import BUILDHOOK, Releases, build_releases

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier tests attach with ptrace as root")


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return build_releases("pointers", tmp_path_factory.mktemp("pointers"), ("new", "newer"))


class Program:
    def __init__(self, releases: Releases) -> None:
        self.releases = releases
        self.process = subprocess.Popen([str(releases.old)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.ask(None) == "ready"

    def ask(self, command: str | None) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command.encode() + b"\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline().decode().strip()
        assert line, f"the program died on {command!r} (exit {self.process.poll()})"
        return line

    def buildhook(self, *args: str) -> None:
        run([BUILDHOOK, *args, "--pid", str(self.process.pid)], self.releases.env, timeout=120)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def program(releases: Releases) -> Program:
    started = Program(releases)
    yield started
    started.stop()


def test_pointers_into_a_replaced_or_reverted_patch_stay_valid(program: Program, releases: Releases) -> None:
    program.buildhook("apply", str(releases.patches["new"]))
    assert program.ask("keep") == "kept"
    assert program.ask("show") == "label-v2 2"
    program.buildhook("apply", str(releases.patches["newer"]))
    assert program.ask("show") == "label-v2 2", "the string and the function of the replaced patch are still there"
    program.buildhook("revert")
    assert program.ask("show") == "label-v2 2"
    assert program.ask("bump") == "0", "reverted: the old bump()"


def test_a_newer_patch_keeps_the_running_value_of_a_variable_the_older_one_added(
        program: Program, releases: Releases) -> None:
    program.buildhook("apply", str(releases.patches["new"]))
    assert [program.ask("bump") for _ in range(3)] == ["1", "2", "3"]
    program.buildhook("apply", str(releases.patches["newer"]))
    assert program.ask("bump") == "4"


def test_data_a_patch_adds_is_copied_on_fork(program: Program, releases: Releases) -> None:
    program.buildhook("apply", str(releases.patches["new"]))
    assert program.ask("bump") == "1"
    assert program.ask("fork") == "child 101"
    assert program.ask(None) == "parent 2", "the child's counting must not show in the parent"


def regions(pid: int) -> set[str]:
    return {line.split()[0] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if "/memfd:buildhook:" in line}


def test_applying_a_reverted_patch_again_commits_its_region_again(program: Program, releases: Releases) -> None:
    program.buildhook("apply", str(releases.patches["new"]))
    assert [program.ask("bump") for _ in range(2)] == ["1", "2"]
    mapped = regions(program.process.pid)
    program.buildhook("revert")
    assert program.ask("bump") == "0"
    program.buildhook("apply", str(releases.patches["new"]))
    assert program.ask("bump") == "3", "the region's variables kept their values"
    assert regions(program.process.pid) == mapped, "no second region for the same patch"
