"""How the applier shares the CPUs (buildhook/apply/scheduling.py, pause.c): it asks for the shortest slice,
takes real-time priority only for the stop (from before the first interrupt when the machine has no CPU to
spare) and gives back what it had, the short slice included.  Every process a test starts is stopped
by PID."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildhook.apply import native, scheduling
from tests.test_apply import start_program
from tests.test_apply_native import process_maps, seized_syscalls

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier tests attach with ptrace as root")


def attributes() -> tuple[int, int, int]:
    """(policy, real-time priority, slice) of this thread."""
    attr = scheduling._get()
    assert attr is not None
    return attr.policy, attr.priority, attr.runtime


def default_slice() -> None:
    """This thread back to the kernel's own slice (sched_setattr with no sched_runtime; sched_setscheduler
    keeps a slice asked for)."""
    attr = scheduling._get()
    assert attr is not None
    attr.runtime = 0
    assert scheduling._set(attr)


@pytest.fixture
def short_slice() -> Iterator[None]:
    """This thread with the applier's short slice, as the CLI sets it; the default slice again after."""
    before = attributes()  # the slice reported is the kernel's default one (1.4 ms here), or 0 before 6.12
    assert before[:2] == (scheduling.SCHED_OTHER, 0), "the test runner's thread must start as a normal task"
    if not scheduling.step_aside() or attributes()[2] != scheduling.SHORT_SLICE_NS:
        pytest.skip("this kernel takes no slice request (sched_setattr sched_runtime: Linux 6.12 and later)")
    try:
        yield
    finally:
        default_slice()
    assert attributes() == before


def test_step_aside_asks_for_the_least_slice(short_slice: None) -> None:
    assert attributes() == (scheduling.SCHED_OTHER, 0, scheduling.SHORT_SLICE_NS)


@pytest.mark.parametrize("early", [False, True], ids=["after-the-stop", "held-by-the-caller"])
def test_the_native_pause_gives_back_the_slice_it_found(tmp_path: Path, short_slice: None, early: bool) -> None:
    """Real-time priority in the stop, taken by the call once every thread has stopped or held by the
    caller from before it (a busy machine: the call leaves it as it is); then the caller's policy and
    its short slice for the rest of the applier's run."""
    with seized_syscalls(tmp_path) as (program, group, memory):
        pid = program.process.pid
        maps = process_maps(pid)
        with native.Scratch(pid, {}, len(group.seized)) as scratch, \
                scheduling.precedence() if early else contextlib.nullcontext():
            stopped = native.pause(group, memory, pid, [], [], maps, [], {}, 0.5, True, scratch)
            assert attributes()[:2] == ((scheduling.SCHED_FIFO, 1) if early else (scheduling.SCHED_OTHER, 0))
        assert stopped.result == native.COMMITTED
        assert attributes() == (scheduling.SCHED_OTHER, 0, scheduling.SHORT_SLICE_NS)


def test_precedence_is_real_time_inside_and_the_slice_again_after(short_slice: None) -> None:
    with scheduling.precedence():
        assert attributes()[:2] == (scheduling.SCHED_FIFO, 1)
        with scheduling.precedence():  # nested (the precise look inside a held attempt): no change
            assert attributes()[:2] == (scheduling.SCHED_FIFO, 1)
        assert attributes()[:2] == (scheduling.SCHED_FIFO, 1)
    assert attributes() == (scheduling.SCHED_OTHER, 0, scheduling.SHORT_SLICE_NS)


def test_the_applier_cli_runs_with_the_short_slice(tmp_path: Path) -> None:
    """`buildhook status` (an applier command) in a child that reports its own slice afterwards."""
    program = start_program("syscalls", tmp_path)
    try:
        assert program.read_line() == "ready syscalls v1"
        probe = ("import sys\nfrom buildhook import cli\nfrom buildhook.apply import scheduling\n"
                 f"status = cli.main(['status', '--pid', '{program.process.pid}'])\n"
                 "print(status, scheduling._get().runtime)\n")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                              env=program.env, check=True)
        status, runtime = done.stdout.split()[-2:]
        assert status == "0"
        taken = scheduling.step_aside() and attributes()[2] == scheduling.SHORT_SLICE_NS  # by this kernel?
        default_slice()
        if not taken:
            pytest.skip("this kernel takes no slice request")
        assert int(runtime) == scheduling.SHORT_SLICE_NS
    finally:
        program.stop()


def test_a_machine_with_every_cpu_busy_has_no_cpu_to_spare() -> None:
    """As many spinning processes as this thread may use CPUs, plus one: /proc/loadavg counts them running."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(len(os.sched_getaffinity(0)) + 1)]
    try:
        deadline = time.monotonic() + 10
        while not scheduling.no_cpu_to_spare(scheduling.others_running()):
            assert time.monotonic() < deadline, "spinning processes on every CPU never counted as running"
            time.sleep(0.05)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(10)
