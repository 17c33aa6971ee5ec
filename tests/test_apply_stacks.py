"""Activeness on every stack: frames no thread's stack pointer leads to are still seen.

Real programs put the patched function ``f`` live where the thread scan
alone never looks: below a signal handler that runs on an alternate signal
stack, and on the stack of a parked coroutine (makecontext/swapcontext, and
boost.context's interface, whose saved contexts are unwound precisely).
Applying must be refused while ``f`` is there, leave the process as it was,
and succeed once ``f`` has returned.  A thread whose stack cannot be found or
read counts as busy.  Every process a test starts is stopped by PID with a
timeout.
"""

from __future__ import annotations

import glob
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from buildhook.apply import ptrace
from buildhook.apply.safety import (
    BusyRange,
    MapIndex,
    RangeSet,
    busy_threads,
    stack_ranges,
)
from tests.support.programs import build_releases, system_libraries
from tests.test_apply import Program, buildhook, region_mapped, start_program, status

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier tests attach with ptrace as root")


def send(program: Program, command: str) -> None:
    assert program.process.stdin is not None
    program.process.stdin.write(command.encode() + b"\n")
    program.process.stdin.flush()


def refused_while_f_is_live(program: Program) -> None:
    """``apply --timeout 0.5`` is refused naming f, and the process is as it was."""
    pid = program.process.pid
    started = time.monotonic()
    result = buildhook(["apply", str(program.po), "--pid", str(pid), "--timeout", "0.5"], program.env, check=False)
    assert result.returncode == 2, result.stderr.decode()
    [line] = result.stderr.decode().strip().splitlines()
    assert ": f always in use" in line, line
    assert time.monotonic() - started < 30
    assert program.process.poll() is None
    assert not region_mapped(pid)
    assert status(pid, program.env) == []


def applied_once_f_returned(program: Program) -> None:
    send(program, "call")
    assert program.read_line() == "f old"
    buildhook(["apply", str(program.po), "--pid", str(program.process.pid), "--timeout", "5"], program.env)
    [applied] = status(program.process.pid, program.env)
    assert [function["name"] for function in applied["functions"]] == ["f"]
    send(program, "call")
    assert program.read_line() == "f new"


# Both pauses: the native one (pause.c finds the words, Python unwinds precisely) and the Python one
# (BUILDHOOK_NATIVE_PAUSE=0: what a machine without a compiler at install time runs).
PAUSES = pytest.mark.parametrize("pause", ["native", "python"])


def started(name: str, tmp_path: Path, pause: str) -> Program:
    program = start_program(name, tmp_path)
    if pause == "python":
        program = replace(program, env=dict(program.env, BUILDHOOK_NATIVE_PAUSE="0"))
    return program


@PAUSES
def test_frame_below_a_signal_handler_on_an_alternate_stack_is_busy(tmp_path: Path, pause: str) -> None:
    program = started("altstack", tmp_path, pause)
    try:
        assert program.read_line() == "ready"
        send(program, "enter")
        assert program.read_line() == "handler on altstack"
        refused_while_f_is_live(program)
        send(program, "release")
        assert program.read_line() == "f old", "the interrupted f finished as the old code"
        applied_once_f_returned(program)
    finally:
        program.stop()


@PAUSES
def test_function_parked_in_a_coroutine_is_busy(tmp_path: Path, pause: str) -> None:
    program = started("coroutine", tmp_path, pause)
    try:
        assert program.read_line() == "ready"
        send(program, "enter")
        assert program.read_line() == "parked"
        refused_while_f_is_live(program)
        send(program, "release")
        assert program.read_line() == "f old", "the parked f finished as the old code"
        applied_once_f_returned(program)
        send(program, "enter")
        assert program.read_line() == "parked"
        send(program, "release")
        assert program.read_line() == "f new", "a new coroutine runs the new f"
    finally:
        program.stop()


@PAUSES
def test_a_stale_return_address_on_a_parked_boost_context_stack_does_not_block(tmp_path: Path, pause: str) -> None:
    """A coroutine on boost.context's interface (apply_programs/fcontext) called f and parked once f had
    returned: a return address into f stays on its stack below the saved context, where no live frame
    is.  The saved context is unwound precisely, so the patch applies.  Before, every word of memory
    counted and the apply was refused after its timeout ("f always in use (... parked stack or saved
    context at ...)"), as on pdns-recursor."""
    program = started("fcontext", tmp_path, pause)
    try:
        assert program.read_line() == "ready"
        send(program, "call")
        assert program.read_line() == "f old"
        result = buildhook(["apply", str(program.po), "--pid", str(program.process.pid), "--timeout", "3"],
                           program.env, check=False)
        assert result.returncode == 0, result.stderr.decode()
        send(program, "call")
        assert program.read_line() == "f new"
    finally:
        program.stop()


@PAUSES
def test_a_function_parked_in_a_boost_context_coroutine_is_busy(tmp_path: Path, pause: str) -> None:
    """Parked inside f (in g, which f called), the coroutine's saved context unwinds into f: refused.
    Released, f returns and the context it left stays in memory below the live one, held by nothing:
    the patch then applies, and the coroutine and one started after its final jump run the new f."""
    program = started("fcontext", tmp_path, pause)
    try:
        assert program.read_line() == "ready"
        send(program, "enter")
        assert program.read_line() == "parked"
        refused_while_f_is_live(program)
        send(program, "release")
        assert program.read_line() == "f old", "the parked f finished as the old code"
        applied_once_f_returned(program)
        send(program, "finish")
        assert program.read_line() == "finished"
        send(program, "call")
        assert program.read_line() == "f new", "a new coroutine runs the new f"
    finally:
        program.stop()


@PAUSES
def test_a_thread_running_a_boost_context_coroutine_is_unwound_to_the_coroutines_bottom(tmp_path: Path,
                                                                                         pause: str) -> None:
    """The scheduler thread runs the coroutine, spinning with a word inside f in a live frame: the
    conservative scan flags it, and the precise unwind must end at make_fcontext's finish, the
    coroutine's bottom (the library has no unwind table for it).  Before, the unwind was lost there,
    the conservative answer stood and the apply was refused after its timeout."""
    program = started("fcontext", tmp_path, pause)
    try:
        assert program.read_line() == "ready"
        send(program, "spin")
        assert program.read_line() == "spinning"
        result = buildhook(["apply", str(program.po), "--pid", str(program.process.pid), "--timeout", "3"],
                           program.env, check=False)
        assert result.returncode == 0, result.stderr.decode()
        send(program, "stop")
        assert program.read_line() == "stopped"
        send(program, "call")
        assert program.read_line() == "f new"
    finally:
        program.stop()


@PAUSES
def test_a_context_parked_below_a_coroutine_stack_on_the_same_thread_stack_is_busy(tmp_path: Path,
                                                                                   pause: str) -> None:
    """f runs a coroutine on an array in its own frame, on the scheduler thread's stack: the thread's stack
    pointer is in that array, and its own context, parked inside f, lies below it in the same mapping.
    Memory below a thread's stack pointer is dead only when the thread runs on its own stack; here it is
    not, and the patch must be refused until the coroutine lets f go on."""
    program = started("fcontext", tmp_path, pause)
    try:
        assert program.read_line() == "ready"
        send(program, "nest")
        assert program.read_line() == "nested"
        refused_while_f_is_live(program)
        send(program, "stop")
        assert program.read_line() == "f old", "the parked f finished as the old code"
        applied_once_f_returned(program)
    finally:
        program.stop()


def test_stack_switching_code_not_known_keeps_every_word_of_memory_busy(tmp_path: Path) -> None:
    """The same program on a jump_fcontext whose code is not boost.context's layout (one nop more): its
    saved contexts cannot be told, so the stale word into f blocks, and the refusal says why."""
    releases = build_releases("fcontext", tmp_path, ("new",))
    other = tmp_path / "other"
    system_libraries("fcontext", other, "-DOTHER_LAYOUT")
    process = subprocess.Popen([str(releases.old)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env=dict(os.environ, LD_LIBRARY_PATH=str(other)))
    program = Program(process, releases.patches["new"], releases.env, releases.old)
    try:
        assert program.read_line() == "ready"
        send(program, "call")
        assert program.read_line() == "f old"
        result = buildhook(["apply", str(program.po), "--pid", str(process.pid), "--timeout", "0.5"],
                           program.env, check=False)
        assert result.returncode == 2, result.stderr.decode()
        [line] = result.stderr.decode().strip().splitlines()
        assert ": f always in use" in line and "parked stack or saved context at" in line, line
        assert "jump_fcontext in " in line and "is not the boost.context code known" in line, line
        assert not region_mapped(process.pid)
        send(program, "call")
        assert program.read_line() == "f old"
    finally:
        program.stop()


def test_a_word_inside_malloc_in_memory_does_not_block_registering_unwind_tables(tmp_path: Path) -> None:
    """The thread that registers a patch's unwind tables must not be inside the allocator; a word inside
    malloc elsewhere in memory (a coroutine's stale return address) says nothing about that thread.
    Before the fix the memory scan ran for this check too, and the apply was refused after its timeout
    ("stayed inside the allocator (malloc) (parked stack or saved context at ...)"), as on pdns-recursor."""
    program = start_program("parkedalloc", tmp_path)
    try:
        assert program.read_line().startswith("ready ")
        result = buildhook(["apply", str(program.po), "--pid", str(program.process.pid), "--timeout", "2"],
                           program.env, check=False)
        assert result.returncode == 0, result.stderr.decode()
        send(program, "call")
        assert program.read_line() == "f new"
    finally:
        program.stop()


def test_a_stack_that_cannot_be_found_or_read_is_busy() -> None:
    """No stop needed: busy_threads reads a running process's memory as root."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pid = sleeper.pid
        maps = MapIndex(_maps(pid))
        busy = RangeSet([BusyRange(0x1234_5678_9000, 0x1234_5678_a000, "f")])  # no word points there
        base = ptrace.Registers([0] * len(ptrace.REGISTER_NAMES))
        stack = next(m for m in maps.maps if m.path == "[stack]")
        live = base.set(rsp=stack.end - 4096, rip=0x10)
        unmapped = base.set(rsp=8, rip=0x10)
        registers = {pid: live, pid + 1: unmapped}
        stacks = stack_ranges(registers, maps)
        assert set(stacks) == {pid}
        assert busy_threads(pid, {pid: live}, stacks, busy) == []
        [found] = busy_threads(pid, registers, stacks, busy)
        assert found.tid == pid + 1 and "mapping" in found.where
        gap = max(m.end for m in maps.maps if m.end < 1 << 47)  # nothing is mapped there
        [found] = busy_threads(pid, {pid: live}, {pid: (gap, 4096)}, busy)
        assert found.tid == pid and "read" in found.where
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)


def _maps(pid: int):  # type: ignore[no-untyped-def]
    from buildhook.apply.process import read_maps

    return read_maps(pid)


def _run_blocked(tmp_path: Path, name: str, source: str, libraries: list[str]) -> subprocess.Popen[bytes]:
    (tmp_path / f"{name}.c").write_text(source)
    subprocess.run(["gcc", "-O1", str(tmp_path / f"{name}.c"), "-o", str(tmp_path / name), *libraries], check=True)
    process = subprocess.Popen([str(tmp_path / name)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


def test_only_real_stack_switching_turns_the_memory_scan_on(tmp_path: Path) -> None:
    """Reduced case of memcached's 42 ms pauses (and a refusal): libcrypto imports makecontext for
    OpenSSL's ASYNC jobs, which made every TLS server's memory be scanned in every pause.  A program
    that links libcrypto is not scanned; one that imports makecontext itself is."""
    import ctypes.util

    from buildhook.apply.process import mapped_objects
    from buildhook.apply.safety import unwind_tables

    crypto = ctypes.util.find_library("crypto")
    found = [path for path in glob.glob("/usr/lib/x86_64-linux-gnu/libcrypto.so.*") + glob.glob("/lib64/libcrypto.so.*")
             if crypto and os.path.basename(path).startswith(crypto.split(".so")[0])]
    if not found:
        pytest.skip("no libcrypto on this machine")
    tls = _run_blocked(tmp_path, "tls", """
        #include <stdio.h>
        unsigned long OpenSSL_version_num(void);
        int main(void) { printf("ready\\n"); fflush(stdout); getchar(); return OpenSSL_version_num() == 0; }
        """, [found[0]])
    own = _run_blocked(tmp_path, "own", """
        #include <stdio.h>
        #include <ucontext.h>
        static void nothing(void) {}
        int main(int argc, char **argv) {
            ucontext_t context;
            (void)argv;
            if (argc > 5) { getcontext(&context); makecontext(&context, nothing, 0); }
            printf("ready\\n"); fflush(stdout); getchar(); return 0;
        }
        """, [])
    try:
        assert any("libcrypto" in item.path for item in mapped_objects(tls.pid))
        assert unwind_tables(mapped_objects(tls.pid)).switches_stacks is None
        assert "makecontext" in (unwind_tables(mapped_objects(own.pid)).switches_stacks or "")
    finally:
        for process in (tls, own):
            process.kill()
            process.wait(timeout=10)
