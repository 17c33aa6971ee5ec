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


SHAPE_HEADER = "struct Shape {\n  virtual ~Shape() {}\n  virtual int area() const = 0;\n%s};\nShape *make(int kind, int x);\n"
SHAPE = ('#include "shape.h"\n'
         "struct Square : Shape { int s; Square(int x) : s(x) {} int area() const override { return s * s * %d; } };\n"
         "struct Line : Shape { int s; Line(int x) : s(x) {} int area() const override { return s; } };\n"
         "Shape *make(int kind, int x) { if (kind) return new Square(x); return new Line(x); }\n")
SHAPE_MAIN = ('#include <cstdio>\n#include "shape.h"\nint main() {\n  Shape *kept = make(1, 3);\n  int x;\n'
              '  while (std::scanf("%d", &x) == 1) {\n    Shape *s = make(x & 1, x);\n'
              '    std::printf("%d %d\\n", s->area(), kept->area());\n    std::fflush(stdout);\n    delete s;\n  }\n}\n')


def _build_shapes(work: Path, env: dict[str, str], factor: int, extra: str) -> None:
    (work / "shape.h").write_text(SHAPE_HEADER % extra)
    (work / "shape.cpp").write_text(SHAPE % factor)
    (work / "main.cpp").write_text(SHAPE_MAIN)
    for name in ("shape", "main"):
        run(["buildhook-c++", "-O2", "-g", "-c", f"{name}.cpp", "-o", f"{name}.o"], env, cwd=work)
    run(["buildhook-c++", "shape.o", "main.o", "-o", "prog"], env, cwd=work)


@pytest.mark.skipif(os.geteuid() != 0, reason="the applier attaches with ptrace as root")
def test_changed_virtual_function_is_redirected_and_a_new_vtable_slot_refused(tmp_path: Path) -> None:
    """A virtual call on an object built before the patch (its vtable is the old one) reaches the new
    code; a virtual function added to the class is a layout change (the old objects' vtables have no
    slot for it) and is refused, demangled, naming the slot."""
    env = build_env(tmp_path / "store")
    work = tmp_path / "work"
    work.mkdir()
    _build_shapes(work, env, 1, "")
    run([BUILDHOOK, "release", "old"], env)
    shutil.copy2(work / "prog", tmp_path / "prog-old")
    _build_shapes(work, env, 2, "")
    inspected = run([BUILDHOOK, "inspect", str(work / "prog.from-old.po")], env).stdout.decode()
    assert "Square::area() const" in inspected
    as_json = run([BUILDHOOK, "inspect", "--json", str(work / "prog.from-old.po")], env).stdout.decode()
    assert "_ZNK6Square4areaEv" in as_json
    old = subprocess.Popen([str(tmp_path / "prog-old")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    new = subprocess.Popen([str(work / "prog")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert _answer(old, 5) == "25 9"
        run([BUILDHOOK, "apply", str(work / "prog.from-old.po"), "--pid", str(old.pid)], env, timeout=120)
        assert [_answer(old, n) for n in (5, 4)] == [_answer(new, n) for n in (5, 4)] == ["50 18", "4 18"]
    finally:
        for process in (old, new):
            process.kill()
            process.wait(timeout=10)
    _build_shapes(work, env, 2, "  virtual int perimeter() const { return 0; }\n")
    result = run([BUILDHOOK, "diff", "--from", "old", str(work / "prog")], env, check=False)
    assert result.returncode == 2
    assert "virtual perimeter added in vtable slot 3" in result.stderr.decode()
    assert "[struct-layout-changed]" in result.stderr.decode()


STATE_SOURCE = r"""#include <algorithm>
#include <iostream>
#include <vector>
struct Counter { int n; Counter() : n(100) {} };
int counted(int x) {
  static Counter counter;
  thread_local int calls = 0;
  calls++;
  counter.n += x;
  return counter.n * FACTOR + calls;
}
int sorted_sum(int x) {
  std::vector<int> v{x, 3, 1, 2};
  std::sort(v.begin(), v.end(), [](int a, int b) { return a > b; });
  int total = 0;
  std::for_each(v.begin(), v.end(), [&](int e) { total = total * 10 + e * FACTOR; });
  return total;
}
void say(int x) { std::cout << "say " << x * FACTOR << std::endl; }
"""
STATE_MAIN = r"""#include <cstdio>
#include <iostream>
int counted(int x);
int sorted_sum(int x);
void say(int x);
int main() {
  int x;
  std::cout << "start" << std::endl;
  while (std::scanf("%d", &x) == 1) {
    std::printf("%d %d\n", counted(x), sorted_sum(x));
    std::fflush(stdout);
    say(x);
  }
}
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the applier attaches with ptrace as root")
def test_static_local_thread_local_lambda_and_cout(tmp_path: Path) -> None:
    """A function-local static (its guard already passed: not constructed again, it keeps its running
    value), a thread_local counter, lambdas given to std::sort and std::for_each, and std::cout: the old
    process, patched after some traffic, answers as a new-build process with the same history."""
    env = build_env(tmp_path / "store")
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.cpp").write_text(STATE_MAIN)
    (work / "lib.cpp").write_text(STATE_SOURCE)

    def build(factor: int) -> None:
        for name in ("lib", "main"):
            run(["buildhook-c++", "-O2", "-g", f"-DFACTOR={factor}", "-c", f"{name}.cpp", "-o", f"{name}.o"],
                env, cwd=work)
        run(["buildhook-c++", "lib.o", "main.o", "-o", "prog"], env, cwd=work)

    build(1)
    run([BUILDHOOK, "release", "old"], env)
    shutil.copy2(work / "prog", tmp_path / "prog-old")
    build(2)
    processes = [subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                 for path in (tmp_path / "prog-old", work / "prog")]
    old, new = processes

    def ask(process: subprocess.Popen[bytes], number: int) -> tuple[str, str]:
        assert process.stdout is not None
        return _answer(process, number), process.stdout.readline().decode().strip()

    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == b"start\n"
        assert ask(old, 5) == ("106 5321", "say 5")
        ask(new, 5)  # the same history: counter.n 105, one call
        run([BUILDHOOK, "apply", str(work / "prog.from-old.po"), "--pid", str(old.pid)], env, timeout=120)
        for number in (7, 9):
            assert ask(old, number) == ask(new, number)
        assert ask(old, 1) == ("248 6422", "say 2")  # counter.n 122, four calls; 3 2 1 1, doubled
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)


def test_new_exception_class_with_its_vtable_is_carried(tmp_path: Path) -> None:
    """Reduced case (a KeyError before): new code throws a new class.  Its vtable points at its destructor,
    whose code stores the vtable: carrying one came back to the other before its symbol was defined."""
    env = build_env(tmp_path / "store")
    source = ('#include <stdexcept>\n#include <string>\n%s\n'
              'int parse(const std::string &s) { %s return s.size() > 99 ? -1 : (int)s.size() * 3; }\n'
              'int main(int argc, char **argv) { try { return parse(argv[argc - 1]); } catch (...) { return 9; } }\n')
    (tmp_path / "m.cpp").write_text(source % ("", ""))
    run(["buildhook-c++", "-O2", "-g", "m.cpp", "-o", "prog"], env, cwd=tmp_path)
    run([BUILDHOOK, "release", "old"], env)
    (tmp_path / "m.cpp").write_text(source % ("struct bad : std::runtime_error { using std::runtime_error::runtime_error; };",
                                              'if (s.empty()) throw bad("empty");'))
    run(["buildhook-c++", "-O2", "-g", "m.cpp", "-o", "prog"], env, cwd=tmp_path)
    result = run([BUILDHOOK, "diff", "--from", "old", str(tmp_path / "prog"), "-o", str(tmp_path / "p.po")], env)
    assert b"wrote" in result.stdout
    inspected = run([BUILDHOOK, "inspect", str(tmp_path / "p.po")], env).stdout.decode()
    assert "vtable for bad" in inspected and "typeinfo for bad" in inspected
