"""C++ exceptions through patch code, checked by behaviour against the new build.

Before the patch carried its unwind tables, a patch whose new code threw
applied "successfully" and the target then died in libgcc (terminate, or a
fault in ``_Unwind_Find_FDE``).  Now the ``.po`` carries the FDEs of its code
and the ``.gcc_except_table`` they point at, and the applier registers them
in the target with ``__register_frame_info``.  Each way an exception meets
patch code is asked here: thrown in it, caught in it, rethrown from it into
old code, thrown by old code through it and caught in it, with a cleanup (a
``std::string`` destructor) on the way.  The old process, patched live,
must answer exactly as a process of the new build, also after a revert and
a second apply (the tables are registered once per region) and after a
second patch replaces the first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR, run
from tests.support.programs import LineProgram, build_env

BUILDHOOK = str(BIN_DIR / "buildhook")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier attaches with ptrace as root")

MAIN = r"""#include <cstdio>
#include <stdexcept>
#include "lib.h"
int main() {
  char command;
  int x;
  while (std::scanf(" %c %d", &command, &x) == 2) {
    try {
      std::printf("%d\n", command == 'h' ? handle(x) : guarded(x));
    } catch (const std::exception &e) {
      std::printf("main caught %s\n", e.what());
    }
    std::fflush(stdout);
  }
}
"""
HEADER = "int parse(int x);\nint handle(int x);\nint check(int x);\nint guarded(int x);\n"
CHECK = r"""#include <stdexcept>
#include "lib.h"
int check(int x) {
  if (x == 13) throw std::out_of_range("thirteen");
  return x + 1;
}
"""
LIB = {
    "old": r"""#include <string>
#include "lib.h"
int parse(int x) { return x < 0 ? -1 : x * 2; }
int handle(int x) { std::string label(40, 'h'); return parse(x) + int(label.size()) - 40; }
int guarded(int x) { return check(x); }
""",
    # thrown in patch code; caught in it (x == -1) or rethrown through a cleanup into old main;
    # thrown by old code (check) and caught in patch code
    "new": r"""#include <stdexcept>
#include <string>
#include "lib.h"
int parse(int x) {
  if (x < 0) throw std::invalid_argument("negative " + std::to_string(x));
  return x * 2;
}
int handle(int x) {
  std::string label(40, 'h');
  try {
    return parse(x) + int(label.size()) - 40;
  } catch (const std::invalid_argument &) {
    if (x == -1) return -100;
    throw;
  }
}
int guarded(int x) {
  try { return check(x) * 2; } catch (const std::out_of_range &e) { return -26; }
}
""",
    "newer": r"""#include <stdexcept>
#include <string>
#include "lib.h"
int parse(int x) {
  if (x < 0) throw std::invalid_argument("below zero " + std::to_string(x));
  return x * 3;
}
int handle(int x) {
  std::string label(40, 'h');
  try {
    return parse(x) + int(label.size()) - 40;
  } catch (const std::invalid_argument &) {
    if (x == -1) return -101;
    throw;
  }
}
int guarded(int x) {
  try { return check(x) * 3; } catch (const std::logic_error &e) { return -39; }
}
""",
}
QUESTIONS = ["h 5", "h -1", "h -3", "g 13", "g 4", "h 0"]


def _build(work: Path, env: dict[str, str], version: str) -> None:
    (work / "lib.cpp").write_text(LIB[version])
    for name in ("lib", "check", "main"):
        run(["buildhook-c++", "-O2", "-g", "-c", f"{name}.cpp", "-o", f"{name}.o"], env, cwd=work)
    run(["buildhook-c++", "lib.o", "check.o", "main.o", "-o", "prog"], env, cwd=work)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """old (released), new and newer: each a binary and, for new and newer, the .po from old."""
    root = tmp_path_factory.mktemp("cxx")
    env = build_env(root / "store")
    work = root / "work"
    work.mkdir()
    (work / "main.cpp").write_text(MAIN)
    (work / "lib.h").write_text(HEADER)
    (work / "check.cpp").write_text(CHECK)
    found: dict[str, Path] = {"env": root / "store"}
    for version in ("old", "new", "newer"):
        _build(work, env, version)
        shutil.copy2(work / "prog", root / f"prog-{version}")
        found[version] = root / f"prog-{version}"
        if version == "old":
            run([BUILDHOOK, "release", "old"], env)
        else:
            shutil.copy2(work / "prog.from-old.po", root / f"{version}.po")
            found[f"{version}.po"] = root / f"{version}.po"
    return found


class _Program(LineProgram):
    def answers(self) -> list[str]:
        return [self.ask(question) for question in QUESTIONS]


def _apply(releases: dict[str, Path], po: str, pid: int) -> None:
    env = build_env(releases["env"])
    run([BUILDHOOK, "apply", str(releases[po]), "--pid", str(pid)], env, timeout=120)


def test_exceptions_thrown_caught_and_rethrown_through_patch_code(releases: dict[str, Path]) -> None:
    old, new, newer = (_Program(releases[v]) for v in ("old", "new", "newer"))
    try:
        before = old.answers()
        expected = new.answers()
        assert before != expected and "main caught negative -3" in expected and "-26" in expected
        _apply(releases, "new.po", old.process.pid)
        assert old.answers() == expected
        env = build_env(releases["env"])
        run([BUILDHOOK, "revert", "--pid", str(old.process.pid)], env, timeout=120)
        assert old.answers() == before
        _apply(releases, "new.po", old.process.pid)  # the reverted region again: registered once
        assert old.answers() == expected
        _apply(releases, "newer.po", old.process.pid)  # a second region, replacing the first
        assert old.answers() == newer.answers()
        assert "main caught below zero -3" in old.answers()
    finally:
        for program in (old, new, newer):
            program.stop()
