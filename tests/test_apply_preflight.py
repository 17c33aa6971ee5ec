"""Pre-flight checks on real processes: YAMA, namespaces, tracers, seccomp filters, MDWE.

The seccomp programs are built with gcc from tests/preflight_programs/filters.c;
the filters are installed by the kernel, fetched back with
PTRACE_SECCOMP_GET_FILTER and evaluated by buildhook's interpreter, and where
the program can, it shows what the kernel itself did with the same filter.
The end-to-end tests patch tests/apply_programs/hardened with ``buildhook
apply``.  Every process a test starts is killed by PID with a timeout.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from buildhook.apply import preflight, ptrace
from buildhook.apply.preflight import TargetUnsuitable, check_seccomp, check_system
from tests.test_apply import Program, buildhook, start_program

FILTERS_SOURCE = Path(__file__).resolve().parent / "preflight_programs" / "filters.c"
REPO = Path(__file__).resolve().parents[1]
SYS_CLOSE, SYS_MMAP, SYS_MUNMAP, SYS_GETPID, SYS_MEMFD_CREATE = 3, 9, 11, 39, 319
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_FIXED_NOREPLACE = 0x01, 0x100000
SYSCALL_INSTRUCTION = b"\x0f\x05"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pre-flight tests trace processes as root")


# -- running programs ---------------------------------------------------------------


def read_line(process: subprocess.Popen[bytes], timeout: float = 10) -> str:
    """One line of output, or an assertion after *timeout* (start several-line printers with bufsize=0)."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        raise AssertionError("the program printed nothing in time")
    return process.stdout.readline().decode().strip()


def send(process: subprocess.Popen[bytes], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line.encode() + b"\n")
    process.stdin.flush()


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        kill_pid(process.pid)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def filters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("preflight") / "filters"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", str(FILTERS_SOURCE), "-o", str(binary)],
                   check=True, timeout=120)
    return binary


@contextmanager
def filtered(binary: Path, mode: str) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """filters.c running in *mode*, past "ready"; yields it and what it printed before (key → value)."""
    process = subprocess.Popen([str(binary), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    try:
        printed: dict[str, str] = {}
        while (line := read_line(process)) != "ready":
            key, _, value = line.rpartition(" ")
            printed[key] = value
        yield process, printed
    finally:
        stop_process(process)


@contextmanager
def stopped(tid: int) -> Iterator[None]:
    """*tid* seized and in a ptrace stop, as the applier holds the thread it injects on; detached after."""
    ptrace.seize(tid)
    try:
        ptrace.interrupt(tid)
        assert ptrace.wait_stop(tid)[0] == "event"
        yield
    finally:
        ptrace.detach(tid)


def untouched(pid: int) -> tuple[str, list[str]]:
    """What must not change in a checked target: its memory map and its descriptors."""
    return Path(f"/proc/{pid}/maps").read_text(), sorted(os.listdir(f"/proc/{pid}/fd"))


def applier_calls(pid: int, tid: int) -> list[tuple[int, tuple[int, ...], int]]:
    """The calls ``apply`` injects on *tid* for its region (memfd_create, three mmaps, close; munmap to remove it).

    They are placed at the ``syscall`` instruction *tid* is stopped after (it
    waits in a system call, so its program counter is just past one), and the
    memfd's descriptor is predicted with next_fd.
    """
    registers = ptrace.get_registers(tid)
    gadget = registers.rip - len(SYSCALL_INSTRUCTION)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        memory.seek(gadget)
        assert memory.read(2) == SYSCALL_INSTRUCTION
    name = (registers.rsp - 1024) & ~15
    fd, base, flags = preflight.next_fd(pid), 0x7E0000000000, MAP_SHARED | MAP_FIXED_NOREPLACE
    return [(SYS_MEMFD_CREATE, (name, 1), gadget),
            (SYS_MMAP, (base, 4096, PROT_READ, flags, fd, 0), gadget),
            (SYS_MMAP, (base + 4096, 8192, PROT_READ | PROT_EXEC, flags, fd, 4096), gadget),
            (SYS_MMAP, (base + 12288, 4096, PROT_READ | PROT_WRITE, flags, fd, 12288), gadget),
            (SYS_CLOSE, (fd,), gadget),
            (SYS_MUNMAP, (base, 16384), gadget)]


def seccomp_refusal(tid: int, calls: list[tuple[int, tuple[int, ...], int]]) -> str | None:
    try:
        check_seccomp(tid, calls)
    except TargetUnsuitable as exc:
        return str(exc)
    return None


def assert_still_echoes(process: subprocess.Popen[bytes], before: tuple[str, list[str]]) -> None:
    assert untouched(process.pid) == before
    send(process, "still here")
    assert read_line(process) == "echo still here"


# -- YAMA and the system ----------------------------------------------------------------


@pytest.mark.parametrize("scope, capable, refused", [
    (None, False, None), (0, False, None), (1, False, None), (1, True, None), (2, True, None),
    (2, False, "kernel.yama.ptrace_scope=2 allows ptrace only with CAP_SYS_PTRACE"),
    (3, True, "ptrace is disabled on this machine (kernel.yama.ptrace_scope=3)"),
    (3, False, "ptrace is disabled on this machine (kernel.yama.ptrace_scope=3)"),
    (4, False, None)])
def test_yama_refusal_for_every_scope(scope: int | None, capable: bool, refused: str | None) -> None:
    reason = preflight.yama_refusal(scope, capable)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(refused) and "\n" not in reason


def test_yama_scope_is_read_from_proc() -> None:
    """The file-reading half of the YAMA check.

    This kernel has no YAMA (/proc/sys/kernel/yama does not exist), so here
    only the "absent" path runs: no scope, nothing refused.  On a kernel with
    YAMA the value of the file is returned as it is.
    """
    if Path(preflight.YAMA_SCOPE_PATH).exists():
        assert preflight.read_yama_scope() == int(Path(preflight.YAMA_SCOPE_PATH).read_text())
    else:
        assert preflight.read_yama_scope() is None


def test_plain_process_passes_and_shares_our_namespaces(filters: Path) -> None:
    with filtered(filters, "none") as (process, _):
        check_system(process.pid)
        assert preflight.namespace_differences(process.pid) == []
        with stopped(process.pid):
            check_seccomp(process.pid, applier_calls(process.pid, process.pid))


def test_missing_process_is_one_line() -> None:
    with pytest.raises(TargetUnsuitable, match=r"^no process 4000000$"):
        check_system(4_000_000)


HOLD_AS_TRACER = """\
import sys, time
from buildhook.apply import ptrace
ptrace.seize(int(sys.argv[1]))
print("seized", flush=True)
time.sleep(60)
"""


def test_process_traced_by_someone_else_is_refused(filters: Path) -> None:
    """ptrace allows one tracer; without this check PTRACE_SEIZE fails with EPERM and the advice "run as root"."""
    with filtered(filters, "none") as (process, _):
        tracer = subprocess.Popen([sys.executable, "-c", HOLD_AS_TRACER, str(process.pid)], stdout=subprocess.PIPE,
                                  cwd=REPO)
        try:
            assert read_line(tracer) == "seized"
            with pytest.raises(TargetUnsuitable) as refused:
                check_system(process.pid)
            assert str(refused.value).startswith(f"process {process.pid} is already traced by process {tracer.pid} (")
            assert "detach that one" in str(refused.value)
        finally:
            stop_process(tracer)
        check_system(process.pid)  # the tracer is gone


CHECK_IN_NAMESPACE = """\
import subprocess, sys
from buildhook.apply.preflight import TargetUnsuitable, check_system
target = subprocess.Popen(["sleep", "60"]) if sys.argv[1] == "inside" else None
try:
    check_system(target.pid if target else int(sys.argv[1]))
    print("passed")
except TargetUnsuitable as exc:
    print(exc)
finally:
    if target is not None:
        target.kill()
        target.wait(timeout=10)
"""


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_applier_in_a_child_user_namespace_is_refused(filters: Path, where: str) -> None:
    """The kernel lets only the host's CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE) read /proc/PID/map_files.

    So an applier in a container's user namespace can patch nothing, not even
    a process in its own namespace; today it says "need root" although it is
    root there.  The check probes our own map_files, whatever the target.
    """
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare")
    with filtered(filters, "none") as (process, _):
        argument = str(process.pid) if where == "outside" else "inside"
        result = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", CHECK_IN_NAMESPACE,
                                 argument], check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.strip().splitlines()
    assert line.startswith("not allowed to patch process ")
    assert "buildhook runs in a user namespace other than the host's" in line and "run it on the host" in line


# -- targets in other namespaces: they simply work ---------------------------------------


def children(pid: int, timeout: float = 10) -> list[int]:
    """The children of *pid* (all its threads'), waiting until there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [int(child) for task in os.listdir(f"/proc/{pid}/task")
                 for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"process {pid} started no child in time")


@contextmanager
def in_namespaces(command: list[str], mode: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Run *command* (an unshare wrapper around the hardened program), send *mode*; yield it and the inner PID."""
    outer = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    inner = 0
    try:
        send(outer, mode)
        assert read_line(outer).startswith(f"ready {mode} ")
        [inner] = children(outer.pid)
        yield outer, inner
    finally:
        if inner:
            kill_pid(inner)
        stop_process(outer)


def patch_and_revert(program: Program, pid: int, process: subprocess.Popen[bytes]) -> None:
    """``buildhook apply`` with the host PID, then revert: the answers change and change back."""
    send(process, "before")
    assert read_line(process) == "v1 before"
    buildhook(["apply", str(program.po), "--pid", str(pid)], program.env)
    send(process, "patched")
    assert read_line(process) == "v2 patched"
    assert "1 functions redirected: reply" in buildhook(["status", "--pid", str(pid)], program.env).stdout.decode()
    buildhook(["revert", "--pid", str(pid)], program.env)
    send(process, "reverted")
    assert read_line(process) == "v1 reverted"


@pytest.mark.parametrize("flags, differing", [
    (["--pid", "--fork", "--mount-proc", "--mount"], ["pid", "mnt"]),
    (["--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--mount"], ["pid", "mnt", "user"])],
    ids=["pid+mnt", "user+pid+mnt"])
def test_target_in_other_namespaces_is_patched(tmp_path: Path, flags: list[str], differing: list[str]) -> None:
    """A container-like target needs nothing: host PIDs for ptrace, /proc/PID/map_files and /proc/PID/fd for files."""
    program = start_program("hardened", tmp_path)
    program.stop()
    with in_namespaces(["unshare", *flags, str(program.old)], "plain") as (outer, inner):
        assert preflight.namespace_differences(inner) == differing
        status = Path(f"/proc/{inner}/status").read_text()
        assert re.search(rf"^NSpid:\s+{inner}\s+1$", status, re.MULTILINE), "pid 1 of its own PID namespace"
        check_system(inner)
        patch_and_revert(program, inner, outer)


def test_chrooted_target_whose_files_exist_only_in_its_mount_namespace(tmp_path: Path) -> None:
    """/proc/PID/root differs and the paths in its maps name nothing on the host: map_files still reads them."""
    program = start_program("hardened", tmp_path)
    program.stop()
    staging, jail = tmp_path / "staging", tmp_path / "jail"
    binary = program.old
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=60).stdout
    for library in re.findall(r"(/\S+) \(0x", ldd):
        destination = staging / library.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, destination)
    shutil.copy2(binary, staging / "prog")
    jail.mkdir()
    script = f"mount -t tmpfs jail {jail} && cp -a {staging}/. {jail}/ && exec chroot {jail} /prog"
    with in_namespaces(["unshare", "--mount", "--fork", "sh", "-c", script], "plain") as (outer, inner):
        assert os.readlink(f"/proc/{inner}/root") == str(jail)
        assert preflight.namespace_differences(inner) == ["mnt"]
        mapped = {line.split()[-1] for line in Path(f"/proc/{inner}/maps").read_text().splitlines()
                  if line.split()[-1].startswith("/")}
        assert f"{jail}/prog" in mapped and not any(Path(path).exists() for path in mapped)
        check_system(inner)
        patch_and_revert(program, inner, outer)


# -- seccomp on real processes ----------------------------------------------------------


@pytest.mark.parametrize("mode, outcome", [
    ("errno-memfd", "would make memfd_create fail with EPERM"),
    ("kill-memfd", "would make memfd_create kill the process (SECCOMP_RET_KILL_PROCESS)")])
def test_filter_against_memfd_create_is_refused_and_the_process_is_untouched(
        filters: Path, mode: str, outcome: str) -> None:
    with filtered(filters, mode) as (process, _):
        before = untouched(process.pid)
        with stopped(process.pid):
            reason = seccomp_refusal(process.pid, applier_calls(process.pid, process.pid))
        assert reason == (f"process {process.pid} cannot be patched: its seccomp filter {outcome}; "
                          "buildhook must run memfd_create in it")
        assert process.poll() is None
        assert_still_echoes(process, before)


def test_filter_that_only_denies_ptrace_passes(filters: Path) -> None:
    with filtered(filters, "deny-ptrace") as (process, _):
        before = untouched(process.pid)
        with stopped(process.pid):
            assert seccomp_refusal(process.pid, applier_calls(process.pid, process.pid)) is None
            assert seccomp_refusal(process.pid, [(101, (0, 0, 0, 0), ptrace.get_registers(process.pid).rip - 2)]) \
                == (f"process {process.pid} cannot be patched: its seccomp filter would make ptrace fail with EPERM; "
                    "buildhook must run ptrace in it")
        assert_still_echoes(process, before)


def test_memory_deny_write_execute_filter_lets_the_applier_calls_through(filters: Path) -> None:
    """systemd's MemoryDenyWriteExecute= as a filter: R, R+X and R+W mappings pass; W+X would not."""
    with filtered(filters, "mdwe") as (process, printed):
        assert (printed["mmap-wx errno"], printed["mmap-rx errno"], printed["mprotect-x errno"]) == ("1", "0", "1")
        before = untouched(process.pid)
        with stopped(process.pid):
            calls = applier_calls(process.pid, process.pid)
            assert seccomp_refusal(process.pid, calls) is None
            gadget = calls[0][2]
            wx = (SYS_MMAP, (0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, 0x22, -1, 0), gadget)
            assert "would make mmap fail with EPERM" in (seccomp_refusal(process.pid, [wx]) or "")
            add_exec = (10, (0x10000, 4096, PROT_READ | PROT_EXEC), gadget)
            assert "would make mprotect fail with EPERM" in (seccomp_refusal(process.pid, [add_exec]) or "")
        assert_still_echoes(process, before)


def test_stacked_filters_combine_like_the_kernel(filters: Path) -> None:
    """TRACE, ERRNO(EPERM), ERRNO(EACCES) and LOG for memfd_create: ERRNO wins, the newer filter's errno."""
    with filtered(filters, "stacked") as (process, printed):
        assert printed["memfd_create errno"] == "13", "the kernel's own answer: EACCES"
        assert re.search(r"^Seccomp_filters:\s+4$", Path(f"/proc/{process.pid}/status").read_text(), re.MULTILINE)
        with stopped(process.pid):
            reason = seccomp_refusal(process.pid, applier_calls(process.pid, process.pid))
        assert reason is not None and "would make memfd_create fail with EACCES;" in reason


def test_every_seccomp_instruction_evaluates_like_the_kernel(filters: Path) -> None:
    """A filter using every instruction seccomp accepts computes memfd_create's errno; ours must agree."""
    with filtered(filters, "arith") as (process, printed):
        kernel = int(printed["memfd_create errno"])
        assert kernel == 37, "ENOLCK: any other value means the filter took a wrong turn in the kernel"
        with stopped(process.pid):
            calls = applier_calls(process.pid, process.pid)
            reason = seccomp_refusal(process.pid, calls)
            assert seccomp_refusal(process.pid, calls[1:]) is None  # everything else is allowed
        assert reason is not None and "would make memfd_create fail with ENOLCK;" in reason


def test_instruction_pointer_is_the_address_after_the_syscall_instruction(filters: Path) -> None:
    """The filter refuses getpid from one gadget only: the kernel sees that gadget's address + 2."""
    with filtered(filters, "ip") as (process, printed):
        assert printed["getpid errno"] == "13", "the kernel refused getpid from the gadget"
        gadget = int(printed["gadget"], 16)
        with stopped(process.pid):
            reason = seccomp_refusal(process.pid, [(SYS_GETPID, (), gadget)])
            elsewhere = applier_calls(process.pid, process.pid)[0][2]
            assert seccomp_refusal(process.pid, [(SYS_GETPID, (), elsewhere)]) is None
            assert seccomp_refusal(process.pid, [(SYS_GETPID, (), gadget + 2)]) is None
        assert reason is not None and "would make getpid fail with EACCES;" in reason


def test_only_the_injecting_threads_filter_counts(filters: Path) -> None:
    """Filters are per thread: the main thread has none, the other one refuses memfd_create."""
    with filtered(filters, "thread") as (process, printed):
        other = int(printed["thread"])
        before = untouched(process.pid)
        with stopped(process.pid):
            assert seccomp_refusal(process.pid, applier_calls(process.pid, process.pid)) is None
        with stopped(other):
            reason = seccomp_refusal(other, applier_calls(process.pid, other))
        assert reason == (f"process {process.pid} (thread {other}) cannot be patched: its seccomp filter would make "
                          "memfd_create fail with EPERM; buildhook must run memfd_create in it")
        assert_still_echoes(process, before)


def test_strict_mode_is_refused(filters: Path) -> None:
    with filtered(filters, "strict") as (process, _):
        status = Path(f"/proc/{process.pid}/status")
        deadline = time.monotonic() + 10
        while not re.search(r"^Seccomp:\s+1$", status.read_text(), re.MULTILINE):
            assert time.monotonic() < deadline, "the program never entered strict mode"
            time.sleep(0.01)
        before = untouched(process.pid)
        with stopped(process.pid):
            reason = seccomp_refusal(process.pid, applier_calls(process.pid, process.pid))
        assert reason is not None and reason.startswith(f"process {process.pid} cannot be patched: it is in seccomp "
                                                        "strict mode")
        assert_still_echoes(process, before)


# -- the interpreter and the kernel's rules, on their own ---------------------------------

Op = preflight.Instruction
KILL_PROCESS, KILL_THREAD, TRAP, ERRNO = (preflight.RET_KILL_PROCESS, preflight.RET_KILL_THREAD, preflight.RET_TRAP,
                                          preflight.RET_ERRNO)
USER_NOTIF, TRACE, LOG, ALLOW = preflight.RET_USER_NOTIF, preflight.RET_TRACE, preflight.RET_LOG, preflight.RET_ALLOW
RET_K, RET_A, LD_IMM, LDX_IMM, LD_ABS, JA = 0x06, 0x16, 0x00, 0x01, 0x20, 0x05
GETPID_DATA = preflight.seccomp_data(SYS_GETPID, (), 0)


@pytest.mark.parametrize("stronger, weaker", [
    (KILL_PROCESS, KILL_THREAD), (KILL_THREAD, TRAP), (TRAP, ERRNO | 1), (ERRNO | 1, USER_NOTIF),
    (USER_NOTIF, TRACE), (TRACE, LOG), (LOG, ALLOW)])
def test_actions_combine_in_the_kernels_order(stronger: int, weaker: int) -> None:
    assert preflight.combine_actions([weaker, stronger]) == stronger
    assert preflight.combine_actions([stronger, weaker]) == stronger


def test_on_a_tie_the_newest_filters_data_wins() -> None:
    assert preflight.combine_actions([ERRNO | 13, ERRNO | 1]) == ERRNO | 13
    assert preflight.combine_actions([]) == ALLOW


@pytest.mark.parametrize("value, described", [
    (ALLOW, None), (LOG, None), (ERRNO | 1, "fail with EPERM"),
    (ERRNO | 0, "be skipped, returning 0 without running"), (ERRNO | 0xFFFF, "fail with errno 4095"),
    (TRAP, "raise SIGSYS in the thread (SECCOMP_RET_TRAP)"),
    (TRACE, "fail with ENOSYS while buildhook, not the filter's tracer, traces it (SECCOMP_RET_TRACE)"),
    (USER_NOTIF, "be handed to a seccomp supervisor process (SECCOMP_RET_USER_NOTIF)"),
    (KILL_THREAD, "kill the thread (SECCOMP_RET_KILL_THREAD)"),
    (KILL_PROCESS, "kill the process (SECCOMP_RET_KILL_PROCESS)"),
    (0x7FD00000, "kill the process (unknown seccomp action 0x7fd00000)")])
def test_every_action_is_described(value: int, described: str | None) -> None:
    assert preflight.describe_action(value) == described


@pytest.mark.parametrize("code", [0x28, 0x30, 0x94, 0x55, 0x8C, 0x0D, 0x1E, 0xB1])
def test_an_instruction_seccomp_does_not_accept_is_never_taken_as_allowing(code: int) -> None:
    """LD H ABS, LD B ABS, MOD, JNE, NEG X, JA X, RET X, LDX MSH: the kernel rejects them, we refuse to guess."""
    with pytest.raises(preflight.FilterUnreadable, match=rf"unsupported BPF instruction {code:#06x} at 0"):
        preflight.run_filter([Op(code, 0, 0, 0), Op(RET_K, 0, 0, ALLOW)], GETPID_DATA)


@pytest.mark.parametrize("program, problem", [
    ([Op(LD_ABS, 0, 0, 64), Op(RET_K, 0, 0, ALLOW)], "a load from offset 64 of struct seccomp_data"),
    ([Op(LD_ABS, 0, 0, 2), Op(RET_K, 0, 0, ALLOW)], "a load from offset 2 of struct seccomp_data"),
    ([Op(JA, 0, 0, 5), Op(RET_K, 0, 0, ALLOW)], "the program runs off its end at 6")])
def test_bad_loads_and_running_off_the_end_are_refused(program: list[preflight.Instruction], problem: str) -> None:
    with pytest.raises(preflight.FilterUnreadable) as refused:
        preflight.run_filter(program, GETPID_DATA)
    assert str(refused.value) == problem


def test_division_by_zero_ends_the_program_with_zero_and_shifts_wrap_at_32() -> None:
    """The kernel ends a classic program that divides by X == 0 with 0, which is KILL_THREAD."""
    divide = [Op(LD_IMM, 0, 0, 7), Op(0x3C, 0, 0, 0), Op(RET_K, 0, 0, ALLOW)]
    assert preflight.run_filter(divide, GETPID_DATA) == KILL_THREAD
    shift = [Op(LD_IMM, 0, 0, 1), Op(LDX_IMM, 0, 0, 33), Op(0x6C, 0, 0, 0), Op(RET_A, 0, 0, 0)]
    assert preflight.run_filter(shift, GETPID_DATA) == 2


def test_seccomp_data_layout() -> None:
    data = preflight.seccomp_data(SYS_MMAP, (1, -1), 0x1122334455667788)
    assert len(data) == 64
    assert data[:4] == (9).to_bytes(4, "little") and data[4:8] == bytes.fromhex("3e0000c0")
    assert data[8:16] == bytes.fromhex("8877665544332211")
    assert data[16:24] == (1).to_bytes(8, "little") and data[24:32] == b"\xff" * 8 and data[32:] == bytes(32)


# -- W^X targets, end to end ----------------------------------------------------------------


@pytest.mark.parametrize("mode, proof", [("mdwe", "EACCES"), ("seccomp-mdwe", "EPERM")])
def test_write_xor_execute_target_is_patched_and_reverted(tmp_path: Path, mode: str, proof: str) -> None:
    """PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN), or systemd's equivalent filter: apply and revert simply work.

    The kernel refuses only W+X mappings and gaining X later; the applier maps
    its code R+X from the memfd at once and writes the jumps through
    /proc/PID/mem, which MDWE does not govern.
    """
    program = start_program("hardened", tmp_path)
    try:
        process = program.process
        send(process, mode)
        assert read_line(process) == f"ready {mode} {proof}", "the hardening is in force: a W+X mmap fails"
        if mode == "seccomp-mdwe":
            with stopped(process.pid):
                assert seccomp_refusal(process.pid, applier_calls(process.pid, process.pid)) is None
        check_system(process.pid)
        patch_and_revert(program, process.pid, process)
    finally:
        program.stop()


def test_cli_refuses_a_filter_that_kills_on_memfd_create_and_the_process_lives(tmp_path: Path) -> None:
    program = start_program("hardened", tmp_path)
    try:
        process = program.process
        send(process, "seccomp-kill-memfd")
        assert read_line(process).startswith("ready seccomp-kill-memfd ")
        result = buildhook(["apply", str(program.po), "--pid", str(process.pid)], program.env, check=False)
        assert process.poll() is None, "the injected memfd_create would have killed it"
        assert result.returncode == 2
        [line] = result.stderr.decode().strip().splitlines()
        assert "would make memfd_create kill the process" in line
        send(process, "after")
        assert read_line(process) == "v1 after"
    finally:
        program.stop()
