"""A shared library the project builds, patched in every process that maps it, with the program as one set.

The release has a library (libcount.so: a hidden helper, a static counter,
a general-dynamic ``__thread`` counter and a local-dynamic ``static
__thread`` one, calls into libc) and two programs using it.  The fix
changes the library and one program.  ``buildhook apply lib.po prog.po
--all`` reaches every process that mapped the library's build-id, whatever
its executable and wherever the library was loaded; a process of the
program gets both patches in one commit.  Checked by behaviour: each
patched process answers as a process of the new build with the same
history (the counters keep their running values), and reverting either
patch of a set reverts both (they share one commit byte).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR, run
from tests.support.programs import LineProgram, build_env

BUILDHOOK = str(BIN_DIR / "buildhook")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier attaches with ptrace as root")

LIBRARY = r"""#include <stdio.h>
static int calls;
__thread int thread_calls;
static __thread int thread_weight;
__attribute__((visibility("hidden"))) int scale(int x) { return x * SCALE; }
int count(int x) {
  calls++;
  thread_calls++;
  thread_weight += 2;
  return scale(x) + calls * 1000 + thread_calls * 100 + thread_weight * WEIGHT;
}
void note(int x) { printf("note %d\n", x + NOTE); }
"""
PROGRAM = r"""#include <stdio.h>
int count(int x);
void note(int x);
__attribute__((noinline)) int shown(int x) { printf("[%s] ", NAME); return x * OWN + 1; }
int main(void) {
  int x;
  while (scanf("%d", &x) == 1) {
    int c = count(x);
    printf("%d %d\n", c, shown(x));
    note(x);
    fflush(stdout);
  }
  return 0;
}
"""
RELEASES = {"old": {"SCALE": 2, "WEIGHT": 1, "NOTE": 0, "OWN": 1},
            "new": {"SCALE": 3, "WEIGHT": 2, "NOTE": 5, "OWN": 4}}


def _build(work: Path, env: dict[str, str], values: dict[str, int]) -> None:
    flags = [f"-D{name}={values[name]}" for name in ("SCALE", "WEIGHT", "NOTE")]
    run(["buildhook-cc", "-O2", "-g", "-fPIC", *flags, "-c", "count.c", "-o", "count.o"], env, cwd=work)
    run(["buildhook-cc", "-shared", "count.o", "-o", "libcount.so"], env, cwd=work)
    for name, own in (("prog", values["OWN"]), ("other", 1)):  # other: the same source, never changed
        run(["buildhook-cc", "-O2", "-g", f"-DOWN={own}", f'-DNAME="{name}"', "-c", "main.c",
             "-o", f"{name}.o"], env, cwd=work)
        run(["buildhook-cc", f"{name}.o", "-L.", "-lcount", "-Wl,-rpath,$ORIGIN", "-o", name], env, cwd=work)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("library")
    env = build_env(root / "store")
    work = root / "work"
    work.mkdir()
    (work / "count.c").write_text(LIBRARY)
    (work / "main.c").write_text(PROGRAM)
    for version, values in RELEASES.items():
        _build(work, env, values)
        (root / version).mkdir()
        for name in ("libcount.so", "prog", "other"):
            shutil.copy2(work / name, root / version / name)
        if version == "old":
            run([BUILDHOOK, "release", "old"], env)
    assert not (work / "other.from-old.po").exists(), "other did not change: no patch for it"
    return {"root": root, "store": root / "store", "lib.po": work / "libcount.so.from-old.po",
            "prog.po": work / "prog.from-old.po"}


class _Process(LineProgram):
    def ask_number(self, number: int) -> tuple[str, ...]:
        """The two lines a number gets: the counts and the program's own answer, then the library's note."""
        return self.ask_lines(str(number), 2)


def test_library_patch_reaches_every_process_and_the_program_patch_joins_it(release: dict[str, Path]) -> None:
    env = build_env(release["store"])
    root = release["root"]
    old = {name: _Process(root / "old" / name) for name in ("prog", "other")}
    second = _Process(root / "old" / "prog")  # the same program twice: the library at another address
    new = {name: _Process(root / "new" / name) for name in ("prog", "other")}
    processes = [*old.values(), second, *new.values()]
    try:
        for process in processes:
            process.ask_number(5)  # the same history everywhere: one call
        assert old["prog"].ask_number(6) != new["prog"].ask_number(6)
        second.ask_number(6)
        result = run([BUILDHOOK, "apply", str(release["lib.po"]), str(release["prog.po"]), "--all", "--json"],
                     env, timeout=120)
        reports = json.loads(result.stdout)
        by_pid: dict[int, set[str]] = {}
        for report in reports:
            by_pid.setdefault(report["pid"], set()).update(report["functions"])
        assert by_pid == {old["prog"].process.pid: {"scale", "count", "note", "shown"},
                          second.process.pid: {"scale", "count", "note", "shown"},
                          old["other"].process.pid: {"scale", "count", "note"}}
        for number in (7, 8):
            expected = {name: new[name].ask_number(number) for name in ("prog", "other")}
            assert {name: old[name].ask_number(number) for name in ("prog", "other")} == expected
            assert second.ask_number(number) == expected["prog"]
        status = json.loads(run([BUILDHOOK, "status", "--pid", str(old["prog"].process.pid), "--json"],
                                env).stdout)
        assert len(status["patches"]) == 2
        assert all(sorted(p["patch_set"]) == sorted(q["patch_id"] for q in status["patches"])
                   for p in status["patches"])
        run([BUILDHOOK, "revert", "--pid", str(old["prog"].process.pid)], env, timeout=120)
        status = json.loads(run([BUILDHOOK, "status", "--pid", str(old["prog"].process.pid), "--json"],
                                env).stdout)
        assert status["patches"] == [] and {o["condition"] for o in status["others"]} == {"reverted"}
        answer, noted = old["prog"].ask_number(9)
        assert answer.startswith("[prog] ") and answer.endswith(" 10") and noted == "note 9"  # old code, both
    finally:
        for process in processes:
            process.stop()
