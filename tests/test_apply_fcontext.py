"""How the applier tells boost.context's saved contexts (buildhook/apply/fcontext.py), on real processes.

The return sites must be exactly the instructions after the calls that save
a context (objdump says where those are), and anything that could save a
context with a return address not found must leave the conservative memory
scan on, with a reason.  The programs link the tests' own library with
boost.context's interface (apply_programs/fcontext/fcontext.S).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from buildhook.apply.process import mapped_objects
from buildhook.apply.safety import unwind_tables
from buildhook.apply.unwind import ModuleFrames
from tests.support.programs import PROGRAMS, system_libraries

HEADER = """
#include <stdio.h>
#include <ucontext.h>
typedef void *fcontext_t;
typedef struct { fcontext_t fctx; void *data; } transfer_t;
transfer_t jump_fcontext(fcontext_t to, void *data);
fcontext_t make_fcontext(void *stack_top, size_t size, void (*function)(transfer_t));
volatile int never;  /* the calls are there, never made: the process only waits */
"""
WAIT = "int main(void) { char line[8]; work(); return fgets(line, sizeof line, stdin) == NULL; }\n"


@contextmanager
def running(tmp_path: Path, source: Path) -> Iterator[tuple[ModuleFrames, int]]:
    """The unwind tables the applier builds for a process of *source* (which waits on stdin), linked
    with libfcontext.so; and the load bias of the program."""
    program = tmp_path / "prog"
    libraries = system_libraries("fcontext", tmp_path / "lib")
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(program), str(source), *libraries],
                   check=True, capture_output=True)
    process = subprocess.Popen([str(program)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):  # the library is mapped once the dynamic loader is done
            objects = mapped_objects(process.pid)
            if any(item.path.endswith("libfcontext.so") for item in objects):
                break
            time.sleep(0.02)
        [bias] = [item.bias for item in objects if item.path == str(program)]
        yield unwind_tables(objects), bias
    finally:
        process.kill()
        process.wait(timeout=10)


def test_return_sites_are_the_instructions_after_each_context_saving_call(tmp_path: Path) -> None:
    with running(tmp_path, PROGRAMS / "fcontext" / "old" / "main.c") as (frames, bias):
        assert frames.contexts is not None, frames.contexts_unknown
        listing = subprocess.run(["objdump", "-d", str(tmp_path / "prog")], check=True, capture_output=True,
                                 text=True).stdout.splitlines()
        # park() and resume() call jump_fcontext; run_nested() tail-jumps to it, so the context it saves
        # holds the return address of run_nested's call in f; body's and spinner's final jumps are tail
        # jumps from context functions (their contexts hold finish, no return site).
        expected = {int(listing[index + 1].split(":")[0], 16) for index, line in enumerate(listing)
                    if re.search(r"\bcall\s+\w+ <(jump_fcontext@plt|run_nested[.\w]*)>$", line)}
        assert len(expected) == 3
        assert {site - bias for site in frames.contexts.return_sites} == expected
        assert frames.outermost == frames.contexts.finishes


@pytest.mark.parametrize(("source", "reason"), [
    ("void (*volatile saved)(void) = (void (*)(void))jump_fcontext;\n"
     "static void work(void) { if (never) saved(); }\n", "takes the address of jump_fcontext"),
    ("static fcontext_t to;\n__attribute__((noinline)) static void leave(void) { jump_fcontext(to, NULL); }\n"
     "void (*volatile entered_by_pointer)(void) = leave;\n"
     "static void work(void) { if (never) entered_by_pointer(); }\n", "whose address is in data"),
    ("static ucontext_t context;\nstatic void work(void) { if (never) { swapcontext(&context, &context);"
     " jump_fcontext(NULL, NULL); } }\n", "the process imports swapcontext"),
], ids=["address taken", "also swapcontext", "tail jump from a function called through a pointer"])
def test_switching_not_accounted_for_keeps_the_conservative_scan(tmp_path: Path, source: str, reason: str) -> None:
    (tmp_path / "prog.c").write_text(HEADER + source + WAIT)
    with running(tmp_path, tmp_path / "prog.c") as (frames, _bias):
        assert frames.switches_stacks is not None
        assert frames.contexts is None
        assert frames.contexts_unknown is not None and reason in frames.contexts_unknown, frames.contexts_unknown


def test_a_tail_jump_saves_the_return_address_of_the_function_it_leaves(tmp_path: Path) -> None:
    """leave() ends with ``jmp jump_fcontext``: the context it saves holds the return address of leave's
    caller, which is then a return site."""
    (tmp_path / "prog.c").write_text(HEADER + "static fcontext_t to;\n"
                                     "__attribute__((noinline)) static void leave(void) { jump_fcontext(to, NULL); }\n"
                                     "static void work(void) { if (never) { leave(); puts(\"back\"); } }\n" + WAIT)
    with running(tmp_path, tmp_path / "prog.c") as (frames, bias):
        assert frames.contexts is not None, frames.contexts_unknown
        listing = subprocess.run(["objdump", "-d", str(tmp_path / "prog")], check=True, capture_output=True,
                                 text=True).stdout.splitlines()
        assert any(re.search(r"\bjmp\s+\w+ <jump_fcontext@plt>$", line) for line in listing)
        expected = {int(listing[index + 1].split(":")[0], 16) for index, line in enumerate(listing)
                    if re.search(r"\bcall\s+\w+ <leave>$", line)}
        assert len(expected) == 1
        assert {site - bias for site in frames.contexts.return_sites} == expected
