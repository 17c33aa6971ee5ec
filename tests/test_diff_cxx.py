"""C++ as a new user writes it: an inline function (a COMDAT group in every object that uses it) changes.

The base link kept one object's copy and discarded the others'; the copy
the program runs is the one redirected, once, and the discarded duplicates
do not break ``diff`` (they did: "the base link map has no section
.text._Z5scalei of b.o").  Checked by behaviour: the old program, patched
live, answers as the new build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR, run
from tests.support.programs import build_env

BUILDHOOK = str(BIN_DIR / "buildhook")
HEADER = "#include <cstdio>\ninline int scale(int x) { return x * %d; }\nint a(int);\nint b(int);\n"
SOURCES = {
    "a.cpp": '#include "h.h"\nint a(int x) { return scale(x) + 1; }\n',
    "b.cpp": '#include "h.h"\nint b(int x) { return scale(x) + 2; }\n',
    "main.cpp": '#include "h.h"\nint main() {\n  int x;\n  while (std::scanf("%d", &x) == 1) {\n'
                '    std::printf("%d %d\\n", a(x), b(x));\n    std::fflush(stdout);\n  }\n}\n',
}


def _build(work: Path, env: dict[str, str], flags: list[str]) -> None:
    for name in ("a", "b", "main"):
        run(["buildhook-c++", *flags, "-g", "-c", f"{name}.cpp", "-o", f"{name}.o"], env, cwd=work)
    run(["buildhook-c++", "a.o", "b.o", "main.o", "-o", "prog"], env, cwd=work)


def _answer(process: subprocess.Popen[bytes], number: int) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(f"{number}\n".encode())
    process.stdin.flush()
    return process.stdout.readline().decode().strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="the applier attaches with ptrace as root")
@pytest.mark.parametrize("flags", [["-O0"], ["-O2", "-fno-inline"]], ids=["O0", "O2-no-inline"])
def test_changed_inline_function_used_from_two_objects(tmp_path: Path, flags: list[str]) -> None:
    env = build_env(tmp_path / "store")
    work = tmp_path / "work"
    work.mkdir()
    for name, text in SOURCES.items():
        (work / name).write_text(text)
    (work / "h.h").write_text(HEADER % 2)
    _build(work, env, flags)
    run([BUILDHOOK, "release", "old"], env)
    shutil.copy2(work / "prog", tmp_path / "prog-old")
    (work / "h.h").write_text(HEADER % 3)
    _build(work, env, flags)
    po = work / "prog.from-old.po"
    assert po.exists(), "the build wrote no .po"
    old = subprocess.Popen([str(tmp_path / "prog-old")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    new = subprocess.Popen([str(work / "prog")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert _answer(old, 5) == "11 12"
        run([BUILDHOOK, "apply", str(po), "--pid", str(old.pid)], env, timeout=120)
        assert [_answer(old, n) for n in (5, 7)] == [_answer(new, n) for n in (5, 7)] == ["16 17", "22 23"]
    finally:
        for process in (old, new):
            process.kill()
            process.wait(timeout=10)


def test_a_function_the_base_link_discarded_is_a_one_line_error(tmp_path: Path) -> None:
    """Reduced case (a traceback before): the old f was unused and removed by --gc-sections, the new
    build uses it. ``buildhook diff`` says so in one line (exit 1); the build itself still succeeds."""
    env = build_env(tmp_path / "store")
    flags = ["-O2", "-ffunction-sections", "-Wl,--gc-sections", "m.c", "-o", "prog"]
    (tmp_path / "m.c").write_text('#include <stdio.h>\n__attribute__((noinline)) int f(int x) { return x + 1; }\n'
                                  'int main(void) { puts("hi"); return 0; }\n')
    run(["buildhook-cc", *flags], env, cwd=tmp_path)
    run([BUILDHOOK, "release", "old"], env)
    (tmp_path / "m.c").write_text('#include <stdio.h>\n__attribute__((noinline)) int f(int x) { return x + 2; }\n'
                                  'int main(void) { printf("%d\\n", f(1)); return 0; }\n')
    run(["buildhook-cc", *flags], env, cwd=tmp_path)
    result = run([BUILDHOOK, "diff", "--from", "old", str(tmp_path / "prog")], env, check=False)
    assert result.returncode == 1
    [line] = result.stderr.decode().strip().splitlines()
    assert line.startswith("buildhook: error: ") and ".text.f" in line and "--gc-sections" in line
