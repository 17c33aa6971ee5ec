"""How the applier shares the CPUs (buildhook/apply/scheduling.py, pause.c): it asks for the shortest slice,
runs at the lowest weight (SCHED_IDLE) until it holds the target (never holding a thread so, nor longer than its
budget), takes real-time priority only for the stop (from before the first interrupt when the machine
has no CPU to spare) and gives back what it had, the short slice included.  Every process a test starts
is stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildhook.apply import applier, native, scheduling
from buildhook.apply.process import read_maps
from buildhook.apply.unwind import UnwindError
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
    if not scheduling.short_slice() or attributes()[2] != scheduling.SHORT_SLICE_NS:
        pytest.skip("this kernel takes no slice request (sched_setattr sched_runtime: Linux 6.12 and later)")
    try:
        yield
    finally:
        default_slice()
    assert attributes() == before


def test_short_slice_asks_for_the_least_slice(short_slice: None) -> None:
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
    """`buildhook status` (an applier command) in a child that reports its own slice and policy afterwards."""
    program = start_program("syscalls", tmp_path)
    try:
        assert program.read_line() == "ready syscalls v1"
        probe = ("import os, sys\nfrom buildhook import cli\nfrom buildhook.apply import scheduling\n"
                 f"status = cli.main(['status', '--pid', '{program.process.pid}'])\n"
                 "print(status, scheduling._get().runtime, os.sched_getscheduler(0))\n")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                              env=program.env, check=True)
        status, runtime, policy = done.stdout.split()[-3:]
        assert status == "0"
        assert policy == str(scheduling.DEFER_POLICY), "status only reads the target: it defers throughout"
        taken = scheduling.short_slice() and attributes()[2] == scheduling.SHORT_SLICE_NS  # by this kernel?
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


# -- deferring: the lowest weight until the applier holds the target ----------------------------

DEFERRING = """
import os, sys, threading, time
from buildhook.apply import scheduling
from buildhook.apply.threads import ThreadGroup

def weight():
    return f"{os.sched_getscheduler(0)}/{os.getpriority(os.PRIO_PROCESS, 0)}"  # policy/nice

def seize_and_report(pid):
    group = ThreadGroup(pid)
    group.seize_all()
    try:
        print("seized at", weight(), "threads", threading.active_count(), "deferred", scheduling.deferred_seconds() > 0)
    finally:
        group.detach_all()
"""


DEFERRED, NORMAL = f"{scheduling.DEFER_POLICY}/0", f"{os.SCHED_OTHER}/0"  # weight() of each


def run_deferring(code: str, target: int = 0, prefix: tuple[str, ...] = ()) -> list[str]:
    """Run *code* after DEFERRING in a child Python (under *prefix*, e.g. setpriv); its output lines."""
    done = subprocess.run([*prefix, sys.executable, "-c", DEFERRING + code, str(target)], capture_output=True,
                          text=True, timeout=60, check=False, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A process to seize (sleep), stopped by PID afterwards."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait(10)


def test_the_applier_defers_until_it_seizes_and_holds_at_its_normal_weight(sleeper: int) -> None:
    """step_aside (the CLI's first call): SCHED_IDLE while the applier only reads; a normal task at nice
    0 from its first seize on, with the budget's timer thread gone (no second thread to take the
    SIGCHLDs of a stop)."""
    lines = run_deferring("scheduling.step_aside()\nprint('reading at', weight())\n"
                          "seize_and_report(int(sys.argv[1]))\n", sleeper)
    assert lines == [f"reading at {DEFERRED}", f"seized at {NORMAL} threads 1 deferred True"]


def test_deferring_ends_after_its_budget_even_without_a_seize() -> None:
    lines = run_deferring("print(scheduling.defer(0.2), weight())\ntime.sleep(1.5)\nprint(weight())\n")
    assert lines == [f"True {DEFERRED}", NORMAL]


def test_an_operators_nice_is_kept_until_the_applier_holds_the_target(sleeper: int) -> None:
    """`nice -n 5 buildhook apply`: the operator's nice while it reads, no budget; nice 0 to hold."""
    lines = run_deferring("os.nice(5)\nprint(scheduling.defer(0.2), weight())\ntime.sleep(0.5)\nprint(weight())\n"
                          "seize_and_report(int(sys.argv[1]))\n", sleeper)
    assert lines == ["True 0/5", "0/5", f"seized at {NORMAL} threads 1 deferred True"]


def test_no_deferring_without_the_right_to_come_back() -> None:
    """Without CAP_SYS_NICE (and RLIMIT_NICE 0), a thread cannot lower its nice again: it does not defer."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    lines = run_deferring("print(scheduling.defer(), weight())\n", prefix=("setpriv", "--bounding-set=-sys_nice",
                                                                     "--inh-caps=-sys_nice"))
    assert lines == [f"False {NORMAL}"]


READS_TABLES = """
import json, os, sys
from buildhook import cli
from buildhook.apply import applier

reads = []
read_tables = applier.unwind_tables

def watched(objects):
    with open(f"/proc/{sys.argv[1]}/status") as status:
        tracer = next(line.split()[1] for line in status if line.startswith("TracerPid:"))
    reads.append({"tracer": int(tracer), "policy": os.sched_getscheduler(0)})
    return read_tables(objects)

applier.unwind_tables = watched
for command in (["apply", sys.argv[2]], ["revert"]):
    reads.clear()
    assert cli.main([*command, "--pid", sys.argv[1], "--json"]) == 0
    print(json.dumps(reads))
"""


def test_the_unwind_tables_are_read_while_the_applier_defers(tmp_path: Path) -> None:
    """The loaded objects' unwind tables are most of an apply's CPU after its imports: each command reads
    them once, before it seizes the target (no tracer yet), so at the lowest weight."""
    program = start_program("syscalls", tmp_path)
    try:
        assert program.read_line() == "ready syscalls v1"
        done = subprocess.run([sys.executable, "-c", READS_TABLES, str(program.process.pid), str(program.po)],
                              capture_output=True, text=True, timeout=120, env=program.env, check=False)
        assert done.returncode == 0, done.stderr
        apply_reads, revert_reads = [json.loads(line) for line in done.stdout.splitlines()
                                     if line.startswith("[{")]
        for reads in apply_reads, revert_reads:
            assert reads == [{"tracer": 0, "policy": scheduling.DEFER_POLICY}]
    finally:
        program.stop()


LOADER = """
import ctypes, os, sys
print("ready", flush=True)
for line in sys.stdin:
    how, path = line.split()
    if how == "memfd":  # loaded from memory, as some programs do: mapped as /memfd:later (deleted)
        fd = os.memfd_create("later")
        os.write(fd, open(path, "rb").read())
        path = f"/proc/self/fd/{fd}"
    library = ctypes.CDLL(path)
    print(ctypes.cast(library.loaded_later, ctypes.c_void_p).value, flush=True)
"""


@pytest.mark.parametrize("how", ["file", "memfd"])
def test_unwind_tables_read_early_are_read_again_for_code_mapped_since(tmp_path: Path, how: str) -> None:
    """Read before the seize, the tables could miss a library the target loads before the stop: the
    commit's fresh maps show its code, and the tables are read again (one read if nothing was mapped).
    Only the applier's own regions are left out of that comparison, not every memfd: a library
    loaded from one has tables too."""
    library = tmp_path / "liblater.so"
    source = tmp_path / "later.c"
    source.write_text("int loaded_later(int x) { return x * 3 + 1; }\n")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)], check=True, timeout=60)
    target = subprocess.Popen([sys.executable, "-c", LOADER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert target.stdout is not None and target.stdout.readline() == "ready\n"  # its own imports done
        session = applier._Session(target.pid, 5.0)
        try:
            first = session.module_frames()
            assert session.module_frames(read_maps(target.pid)) is first, "nothing mapped since: no new read"
            assert target.stdin is not None
            target.stdin.write(f"{how} {library}\n")
            target.stdin.flush()
            function = int(target.stdout.readline())
            with pytest.raises(UnwindError, match="in no known module"):
                first.rule_at(function)
            again = session.module_frames(read_maps(target.pid))
            assert again is not first
            again.rule_at(function)  # the new library's own table
        finally:
            session.close()
    finally:
        target.kill()
        target.wait(10)


FIRST_IMPORTS = """
import importlib.abc, json, os, runpy, sys
seen = {}

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in ("argparse", "buildhook.cli", "buildhook.apply.applier"):
            seen.setdefault(name, os.sched_getscheduler(0))
        return None

sys.meta_path.insert(0, Watch())
script, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    seen["exit"] = exc.code
print(json.dumps(seen))
"""


def test_the_buildhook_command_defers_before_its_first_import(buildhook_cmd: str, sleeper: int) -> None:
    """The installed `buildhook` script: an applier command is at the lowest weight before the command
    line and the applier are imported (not only once the CLI's main runs); a build command never is."""
    def first_imports(*words: str) -> dict[str, int]:
        done = subprocess.run([sys.executable, "-c", FIRST_IMPORTS, buildhook_cmd, *words], capture_output=True,
                              text=True, timeout=60, check=False)
        return json.loads(done.stdout.splitlines()[-1])

    assert first_imports("status", "--pid", str(sleeper)) == {
        "argparse": scheduling.DEFER_POLICY, "buildhook.cli": scheduling.DEFER_POLICY,
        "buildhook.apply.applier": scheduling.DEFER_POLICY, "exit": 0}
    version = first_imports("--version")
    assert (version["argparse"], version["buildhook.cli"], version["exit"]) == (os.SCHED_OTHER, os.SCHED_OTHER, 0)


def test_the_timeout_counts_from_the_first_seize_not_from_the_deferring(sleeper: int) -> None:
    """`--timeout` is how long the applier keeps trying to stop a thread for its calls; the reading
    before its first seize, deferring, may take longer than that on a busy machine, and must not use
    the timeout up before the applier has tried anything (the stop would be refused at once)."""
    session = applier._Session(sleeper, 0.3)
    try:
        time.sleep(0.5)  # as long as a deferring applier's reading may take
        held = time.monotonic()
        session.group.seize_all()
        assert held + 0.3 <= session.deadline <= time.monotonic() + 0.3
    finally:
        session.close()
