"""The native pause (buildhook/apply/pause.c, native.py): built with the package, used by apply and revert,
carried by the zipapp; the Python pause still works when it is turned off; a probe stands for a thread only
while its registers and stack are exactly the probe's.  Every process a test starts is stopped by PID."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildhook.apply import native, ptrace
from buildhook.apply.threads import ThreadGroup
from tests.conftest import run
from tests.test_apply import BUILDHOOK, Program, apply, buildhook, start_program

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier tests attach with ptrace as root")


def ask_banner(program: Program) -> str:
    assert program.process.stdin is not None
    program.process.stdin.write(b"banner\n")
    program.process.stdin.flush()
    return program.read_line()


def wait_blocked_in_read(pid: int, timeout: float = 10) -> None:
    """Until the main thread sits in read(2) (system call 0): it printed "ready" a moment before."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}/syscall").read_text().split()[0] != "0":
        assert time.monotonic() < deadline, "the main thread never blocked in read"
        time.sleep(0.01)


def process_maps(pid: int) -> list[tuple[int, int]]:
    """The [start, end) of every mapping of *pid*, in address order, as native.pause takes them."""
    return [(int(a, 16), int(b, 16)) for a, b in
            (line.split()[0].split("-") for line in Path(f"/proc/{pid}/maps").read_text().splitlines())]


@contextlib.contextmanager
def seized_syscalls(tmp_path: Path) -> Iterator[tuple[Program, ThreadGroup, ptrace.ProcessMemory]]:
    """The syscalls program, ready, every thread seized (none stopped) and its memory open; afterwards
    every thread let go and the program stopped by PID."""
    program = start_program("syscalls", tmp_path)
    group = ThreadGroup(program.process.pid)
    memory = ptrace.ProcessMemory(program.process.pid)
    try:
        assert program.read_line() == "ready syscalls v1"
        group.seize_all()
        yield program, group, memory
    finally:
        group.detach_all()
        memory.close()
        program.stop()


def test_the_library_is_built_with_the_package() -> None:
    assert native.library() is not None, "pip install did not build buildhook/apply/pause.c (is gcc there?)"


def test_apply_and_revert_stop_natively_and_the_python_pause_still_works(tmp_path: Path) -> None:
    program = start_program("syscalls", tmp_path)
    try:
        assert program.read_line() == "ready syscalls v1"
        pid = program.process.pid
        for path, env in (("native", program.env), ("python", dict(program.env, BUILDHOOK_NATIVE_PAUSE="0"))):
            report = apply(program.po, pid, env)
            assert report["result"] == "applied" and report["stop"] == path
            assert ask_banner(program) == "syscalls v2"
            [reverted] = json.loads(buildhook(["revert", "--pid", str(pid), "--json"], env).stdout)
            assert reverted["stop"] == path
            for done in (report, reverted):
                phases = done["pause_phases_us"]
                if path == "python":
                    assert phases == {}
                    continue
                assert list(phases) == ["interrupt", "wait", "check", "write", "detach"], phases
                assert all(us >= 0 for us in phases.values())
                assert abs(sum(phases.values()) - done["pause_us"]) < 1, (phases, done["pause_us"])
            assert ask_banner(program) == "syscalls v1", "an EINTR line would show up here instead"
    finally:
        program.stop()


def test_a_bad_native_pause_setting_is_one_line_and_the_target_untouched(tmp_path: Path) -> None:
    program = start_program("syscalls", tmp_path)
    try:
        assert program.read_line() == "ready syscalls v1"
        pid = program.process.pid
        env = dict(program.env, BUILDHOOK_NATIVE_PAUSE="maybe")
        maps = Path(f"/proc/{pid}/maps").read_text()
        for command in (["apply", str(program.po), "--pid", str(pid)], ["revert", "--pid", str(pid)]):
            result = buildhook(command, env, check=False)
            assert result.returncode == 1
            [line] = result.stderr.decode().strip().splitlines()
            assert line == ("buildhook: error: BUILDHOOK_NATIVE_PAUSE='maybe' is not one of 1/yes/true/on "
                            "or 0/no/false/off"), line
        assert Path(f"/proc/{pid}/maps").read_text() == maps
        assert ask_banner(program) == "syscalls v1"
        report = apply(program.po, pid, dict(program.env, BUILDHOOK_NATIVE_PAUSE="off"))
        assert report["stop"] == "python"  # the other spellings of the booleans are taken
    finally:
        program.stop()


def test_the_zipapp_carries_the_native_pause(tmp_path: Path) -> None:
    archive = tmp_path / "buildhook-apply.pyz"
    program = start_program("syscalls", tmp_path)
    try:
        run([BUILDHOOK, "applier-zipapp", str(archive)], program.env)
        assert program.read_line() == "ready syscalls v1"
        # -I: no site-packages: the library comes out of the archive (through a memfd).
        result = subprocess.run(["python3", "-I", str(archive), "apply", str(program.po), "--pid",
                                 str(program.process.pid), "--json"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        [report] = json.loads(result.stdout)
        assert report["stop"] == "native"
        assert ask_banner(program) == "syscalls v2"
    finally:
        program.stop()


def test_a_probe_stands_only_for_the_same_registers_and_the_same_stack(tmp_path: Path) -> None:
    """A word of the main thread's live stack (blocked in read) made a busy range: found without a probe,
    cleared by a probe of exactly its registers and stack, found again when one byte of the probe differs."""
    with seized_syscalls(tmp_path) as (program, group, memory):
        pid = program.process.pid
        wait_blocked_in_read(pid)
        maps = process_maps(pid)

        def pause(ranges: list[tuple[int, int]], probes: dict[int, native.Probe]) -> native.Stopped:
            stopped = native.pause(group, memory, pid, ranges, [], maps, None, probes, 0.5, True)
            assert stopped.result == native.HELD
            return stopped

        first = pause([], {})
        start, size = first.stacks[pid]
        [stack] = ptrace.read_ranges(pid, [(start, size)])
        group.resume_all()
        word = next(value for offset in range(0, size, 8)
                    if (value := int.from_bytes(stack[offset:offset + 8], "little")) > 0x10000)
        busy = [(word, word + 1)]

        found = pause(busy, {})
        assert found.verdicts[pid] == native.STACK_HIT
        assert found.registers[pid].values == first.registers[pid].values  # still blocked, as probed
        group.resume_all()
        probe = native.Probe(first.registers[pid], start, stack)
        assert pause(busy, {pid: probe}).verdicts[pid] == native.PROBED
        group.resume_all()
        changed = bytearray(stack)
        changed[-1] ^= 1
        stale = native.Probe(first.registers[pid], start, bytes(changed))
        assert pause(busy, {pid: stale}).verdicts[pid] == native.STACK_HIT
        group.resume_all()


def test_a_thread_the_pause_was_not_given_is_found_with_and_without_the_open_task_folder(tmp_path: Path) -> None:
    """The task list is read again once every thread has stopped: a thread nobody seized (as one started
    after the seizing) makes the call HELD with new_threads, through the folder opened before the pause and
    through its path; seized again, it is found no more."""
    with seized_syscalls(tmp_path) as (program, group, memory):
        pid = program.process.pid
        other = max(group.seized)
        assert other != pid
        group.stop(other)
        ptrace.detach(other)
        group.forget(other)  # as if it had started after seize_all
        maps = process_maps(pid)
        for scratch in (native.Scratch(pid, {}, len(group.seized)), None):
            stopped = native.pause(group, memory, pid, [], [], maps, [], {}, 0.5, True, scratch)
            assert stopped.result == native.HELD and stopped.new_threads, stopped
            assert other not in stopped.registers
            group.resume_all()
            if scratch is not None:
                scratch.close()
        group.seize_all()
        assert other in group.seized
        with native.Scratch(pid, {}, len(group.seized)) as scratch:
            stopped = native.pause(group, memory, pid, [], [], maps, None, {}, 0.5, True, scratch)
        assert stopped.result == native.HELD and not stopped.new_threads
        assert set(stopped.registers) == group.seized
        group.resume_all()


def test_stacks_larger_than_the_prepared_buffer_are_still_read_whole(tmp_path: Path) -> None:
    """The stacks go into the buffer touched before the pause when they fit, and into one of the call's
    own when not: the same stack word is found in a busy range either way, and without a buffer."""
    with seized_syscalls(tmp_path) as (program, group, memory):
        pid = program.process.pid
        wait_blocked_in_read(pid)
        maps = process_maps(pid)
        first = native.pause(group, memory, pid, [], [], maps, None, {}, 0.5, True)
        start, size = first.stacks[pid]
        [stack] = ptrace.read_ranges(pid, [(start, size)])
        group.resume_all()
        offset, word = next((offset, value) for offset in range(size - 8, -1, -8)
                            if (value := int.from_bytes(stack[offset:offset + 8], "little")) > 0x10000)
        small = native.Scratch(pid, {}, 1)
        small.stack_buffer = ctypes.create_string_buffer(16)  # smaller than any live stack
        for scratch in (native.Scratch(pid, {}, len(group.seized)), small, None):
            stopped = native.pause(group, memory, pid, [(word, word + 1)], [], maps, None, {}, 0.5, True, scratch)
            assert stopped.verdicts[pid] == native.STACK_HIT
            assert stopped.stacks[pid] == (start, size)
            group.resume_all()
            if scratch is not None:
                scratch.close()


def test_a_probe_still_stands_after_the_kernel_rewrote_the_threads_rseq_area(tmp_path: Path) -> None:
    """glibc keeps a thread's rseq area in its descriptor at the top of the thread's stack mapping, inside
    the live stack as read; the kernel rewrites its CPU id when the thread returns to user space on another
    CPU.  A thread blocked in accept, moved to another CPU after its probe, is still cleared by the probe
    (the area is left out of the comparison), though its stack bytes differ from it.  Before the area was
    left out, every idle thread that had moved went to the precise check in the pause (kvd with 8 idle
    connections: 300 µs more a pause)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to move a thread between")
    with seized_syscalls(tmp_path) as (program, group, memory):
        pid = program.process.pid
        deadline = time.monotonic() + 10
        while not (accepting := [int(tid) for tid in os.listdir(f"/proc/{pid}/task")
                                 if Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()[0] == "43"]):
            assert time.monotonic() < deadline, "no thread of the program blocked in accept"
            time.sleep(0.01)
        [tid] = accepting
        maps = process_maps(pid)

        def run_once_on(cpu: int) -> None:  # back to user space on *cpu*, then blocked in accept again
            os.sched_setaffinity(tid, {cpu})
            group.stop(tid)
            group.resume(tid)
            time.sleep(0.05)

        run_once_on(cpus[0])
        first = native.pause(group, memory, pid, [], [], maps, None, {}, 0.5, True)
        start, size = first.stacks[tid]
        [stack] = ptrace.read_ranges(pid, [(start, size)])
        rseq = ptrace.rseq_area(tid)
        group.resume_all()
        if rseq is None or not start <= rseq[0] < start + size:
            pytest.skip("no rseq area registered in the thread's stack mapping (glibc < 2.35, or a kernel < 5.13)")
        word = next(value for offset in range(0, size, 8)
                    if not rseq[0] <= start + offset < rseq[0] + rseq[1]
                    and (value := int.from_bytes(stack[offset:offset + 8], "little")) > 0x10000)
        busy = [(word, word + 1)]
        run_once_on(cpus[1])
        moved = native.pause(group, memory, pid, busy, [], maps, None,
                             {tid: native.Probe(first.registers[tid], start, stack, rseq)}, 0.5, True)
        [now] = ptrace.read_ranges(pid, [(start, size)])
        assert moved.verdicts[tid] == native.PROBED
        assert now != stack, "the kernel rewrote nothing: this test shows nothing"
        assert now[:rseq[0] - start] == stack[:rseq[0] - start]
        group.resume_all()
        whole = native.pause(group, memory, pid, busy, [], maps, None,
                             {tid: native.Probe(first.registers[tid], start, stack)}, 0.5, True)
        assert whole.verdicts[tid] == native.STACK_HIT  # compared whole, the moved thread's probe is stale
        group.resume_all()
