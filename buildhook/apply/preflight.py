"""Pre-flight checks: a one-line reason *before* anything in the target is touched.

The applier's own errors come late and can be misleading: ptrace denied
says "run as root" when the kernel forbids ptrace to everyone, a seccomp
filter makes the injected ``memfd_create`` fail (or kills the process!)
only once it runs.  These checks answer first:

* ``check_system(pid)`` reads /proc only: YAMA's ptrace_scope, whether this
  process may read ``/proc/PID/map_files`` at all (the kernel allows that
  only with CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in the host's user
  namespace, so it never works from a container's user namespace), whether
  the target is visible and already traced by someone else.  A target in
  other PID, mount or user namespaces (a container), or chrooted, needs
  nothing: the applier uses host PIDs and reaches the target's files
  through ``/proc/PID/map_files`` and ``/proc/PID/fd``, whatever its root.
* ``check_seccomp(tid, calls)`` runs on a thread the caller has seized and
  stopped: it fetches the thread's seccomp filters with
  ``PTRACE_SECCOMP_GET_FILTER`` and evaluates them, like the kernel, on
  exactly the system calls the applier will inject there.

Neither changes the target.  Standard library only (ctypes for ptrace).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Sequence
from typing import NamedTuple

from buildhook.apply import ptrace
from buildhook.apply.process import ProcessError, proc_dir, thread_ids


class TargetUnsuitable(Exception):
    """The target cannot be patched (or not by this process); the message says why and what to do."""


# -- the system: YAMA, capabilities, visibility, tracers ---------------------------------

YAMA_SCOPE_PATH = "/proc/sys/kernel/yama/ptrace_scope"
CAP_SYS_PTRACE = 19
FULL_UID_MAP = ("0", "0", "4294967295")


def yama_refusal(scope: int | None, has_cap_sys_ptrace: bool) -> str | None:
    """Why YAMA forbids the applier to attach, or None (no YAMA, or it allows us).

    Scope 1 (only descendants, or a declared tracer) is left to ptrace itself:
    root passes it, and whether the target declared us cannot be seen from
    outside.  The kernel accepts no value above 3; an unknown one is left to
    ptrace too rather than guessed at.
    """
    if scope == 3:
        return ("ptrace is disabled on this machine (kernel.yama.ptrace_scope=3); it can only be re-enabled "
                "by a reboot, so running processes cannot be patched here")
    if scope == 2 and not has_cap_sys_ptrace:
        return ("kernel.yama.ptrace_scope=2 allows ptrace only with CAP_SYS_PTRACE, which this process lacks; "
                "run buildhook as root")
    return None


def read_yama_scope() -> int | None:
    """kernel.yama.ptrace_scope, or None when the kernel has no YAMA."""
    try:
        with open(YAMA_SCOPE_PATH, encoding="ascii") as handle:
            return int(handle.read().strip())
    except FileNotFoundError:
        return None


def _status_fields(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return {key: value.strip() for key, _, value in (line.partition(":") for line in handle)}


def has_capability(bit: int) -> bool:
    """Whether this process has capability *bit* in its effective set (CapEff)."""
    return bool(int(_status_fields("/proc/self/status")["CapEff"], 16) >> bit & 1)


def _in_host_user_namespace() -> bool:
    """Best guess: the host's user namespace maps every uid to itself (a container's rarely does)."""
    with open("/proc/self/uid_map", encoding="ascii") as handle:
        return [tuple(line.split()) for line in handle] == [FULL_UID_MAP]


def _map_files_refusal(pid: int) -> str | None:
    """Why this process cannot read any ``/proc/*/map_files`` entry, or None.

    The kernel checks the capability on the reader alone (CAP_SYS_ADMIN or
    CAP_CHECKPOINT_RESTORE in the host's user namespace), so opening one of
    our own entries answers for every target without touching it.
    """
    directory = "/proc/self/map_files"
    try:
        entry = min(os.listdir(directory))
        os.close(os.open(f"{directory}/{entry}", os.O_RDONLY))
        return None
    except PermissionError:
        pass
    if not _in_host_user_namespace():
        return (f"not allowed to patch process {pid}: buildhook runs in a user namespace other than the host's, "
                "where the kernel never lets it read /proc/PID/map_files; run it on the host, as root")
    return (f"not allowed to patch process {pid}: reading /proc/{pid}/map_files needs CAP_SYS_ADMIN "
            "(or CAP_CHECKPOINT_RESTORE); run buildhook as root")


NAMESPACES = ("pid", "mnt", "user")


def namespace_differences(pid: int) -> list[str]:
    """Which of the pid, mnt and user namespaces the target does not share with this process.

    Informational: none of them stops the applier (see the module docstring).
    Reading the links needs the same permission as reading the target's
    memory map, so the errors here are the early, clear ones.
    """
    differing = []
    for name in NAMESPACES:
        try:
            theirs = os.readlink(f"{proc_dir(pid)}/ns/{name}")
        except FileNotFoundError as exc:
            raise TargetUnsuitable(f"no process {pid}") from exc
        except PermissionError as exc:
            raise TargetUnsuitable(f"not allowed to examine process {pid} (run buildhook as its owner or as root, "
                                   "in the host's namespaces)") from exc
        if theirs != os.readlink(f"/proc/self/ns/{name}"):
            differing.append(name)
    return differing


def _tracer_refusal(pid: int) -> str | None:
    """Another tracer on any thread: ptrace allows one, and SEIZE would fail with a misleading EPERM."""
    ours = os.getpid()
    try:
        tids = thread_ids(pid)
    except ProcessError:
        return f"no process {pid}"
    for tid in tids:
        try:
            tracer = int(_status_fields(f"/proc/{pid}/task/{tid}/status").get("TracerPid", "0"))
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        if tracer not in (0, ours):
            return (f"process {pid} is already traced by process {tracer} ({_command_name(tracer)}) and ptrace "
                    "allows one tracer; detach that one (quit the debugger or strace) first")
    return None


def _command_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return "unknown"


def check_system(pid: int) -> None:
    """Refuse (TargetUnsuitable) when this machine or this process cannot patch *pid*; touches nothing in it.

    Call it first, before the target's maps are read.  A target in other
    namespaces, or chrooted, passes: that works as it is.
    """
    reason = yama_refusal(read_yama_scope(), has_capability(CAP_SYS_PTRACE)) or _map_files_refusal(pid)
    if reason is None:
        namespace_differences(pid)  # raises for a missing or unexaminable target
        reason = _tracer_refusal(pid)
    if reason is not None:
        raise TargetUnsuitable(reason)


# -- seccomp: fetch the thread's filters, evaluate them on the injected calls -----------

AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_DATA_SIZE = 64
SYSCALL_INSTRUCTION_SIZE = 2  # the kernel reports the address after ``syscall``

SYSCALL_NAMES = {0: "read", 1: "write", 3: "close", 9: "mmap", 10: "mprotect", 11: "munmap", 14: "rt_sigprocmask",
                 39: "getpid", 60: "exit", 101: "ptrace", 231: "exit_group", 319: "memfd_create",
                 329: "pkey_mprotect"}

RET_KILL_PROCESS, RET_KILL_THREAD, RET_TRAP, RET_ERRNO = 0x80000000, 0x00000000, 0x00030000, 0x00050000
RET_USER_NOTIF, RET_TRACE, RET_LOG, RET_ALLOW = 0x7FC00000, 0x7FF00000, 0x7FFC0000, 0x7FFF0000
RET_ACTION_FULL, RET_DATA = 0xFFFF0000, 0x0000FFFF
MAX_ERRNO = 4095


class Instruction(NamedTuple):
    """One classic BPF instruction (struct sock_filter)."""

    code: int
    jt: int
    jf: int
    k: int


class FilterUnreadable(Exception):
    """A seccomp filter could not be fetched or evaluated; the message says why."""


def _get_filter(tid: int, index: int, buffer: ctypes.Array[ctypes.c_char] | None) -> int:
    """PTRACE_SECCOMP_GET_FILTER: the instruction count (and, with *buffer*, the instructions); -errno."""
    try:
        return ptrace.seccomp_filter(tid, index, ctypes.addressof(buffer) if buffer is not None else 0)
    except ptrace.PtraceError as exc:
        return -exc.errno


def seccomp_filters(tid: int) -> list[list[Instruction]]:
    """Every seccomp filter of stopped, traced thread *tid*, oldest first (index 0 is the first installed)."""
    filters = []
    while True:
        count = _get_filter(tid, len(filters), None)
        if count == -errno.ENOENT:
            return filters
        if count <= 0:
            raise _fetch_error(tid, -count if count else errno.EINVAL)
        buffer = ctypes.create_string_buffer(count * 8)
        got = _get_filter(tid, len(filters), buffer)
        if got != count:  # a filter cannot change, but never read a half-filled buffer
            raise _fetch_error(tid, -got if got < 0 else errno.EIO)
        filters.append([Instruction(*fields) for fields in struct.iter_unpack("<HBBI", buffer.raw)])


def _fetch_error(tid: int, error: int) -> Exception:
    if error == errno.ESRCH:
        return ptrace.PtraceError(f"thread {tid} must be seized and stopped to read its seccomp filters", error)
    if error == errno.EACCES:
        return FilterUnreadable("reading it needs CAP_SYS_ADMIN and a buildhook that is not under seccomp itself")
    if error == errno.EMEDIUMTYPE:
        return FilterUnreadable("the kernel kept no copy of it")
    return FilterUnreadable(f"PTRACE_SECCOMP_GET_FILTER failed: {os.strerror(error)}")


def seccomp_data(nr: int, args: Sequence[int], instruction_pointer: int) -> bytes:
    """struct seccomp_data for a native x86-64 system call, as the filter sees it (little endian)."""
    values = [value & 0xFFFFFFFFFFFFFFFF for value in (list(args) + [0] * 6)[:6]]
    return struct.pack("<iIQ6Q", nr, AUDIT_ARCH_X86_64, instruction_pointer & 0xFFFFFFFFFFFFFFFF, *values)


# Classic BPF opcodes (linux/bpf_common.h); only those seccomp accepts are run.
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
MODE_IMM, MODE_ABS, MODE_MEM, MODE_LEN = 0x00, 0x20, 0x60, 0x80
SRC_X, RET_A, MISC_TXA = 0x08, 0x10, 0x80
ALU_DIV, ALU_NEG, JMP_JA = 0x30, 0x80, 0x00
MEMWORDS = 16
_MASK = 0xFFFFFFFF
_LOADS = {LD | MODE_ABS, LD | MODE_LEN, LD | MODE_IMM, LD | MODE_MEM, LDX | MODE_LEN, LDX | MODE_IMM, LDX | MODE_MEM}
_ALU = {0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b, 0x20: lambda a, b: a * b,
        0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b, 0x60: lambda a, b: a << (b & 31),
        0x70: lambda a, b: a >> (b & 31), 0xA0: lambda a, b: a ^ b}
_JUMP = {0x10: lambda a, b: a == b, 0x20: lambda a, b: a > b, 0x30: lambda a, b: a >= b,
         0x40: lambda a, b: a & b != 0}


class _Return(NamedTuple):
    value: int


class _Unsupported(Exception):
    """An instruction seccomp_check_filter would not have accepted."""


class _Machine:
    """One run of a program: accumulator A, index X, scratch words; one method per instruction class.

    Each method returns how many instructions to skip, or _Return.  Division
    by X == 0 returns 0 like the kernel's classic-BPF conversion; shifts by X
    use the low five bits, as the 32-bit eBPF they become does.
    """

    def __init__(self, data: bytes) -> None:
        self.a = self.x = 0
        self.memory = [0] * MEMWORDS
        self.data = data

    def load(self, code: int, k: int) -> int:
        if code not in _LOADS:
            raise _Unsupported
        value = _load(code & 0xE0, k, self.data, self.memory)
        if code & 0x07 == LD:
            self.a = value
        else:
            self.x = value
        return 0

    def store(self, code: int, k: int) -> int:
        if code not in (ST, STX) or k >= MEMWORDS:
            raise _Unsupported
        self.memory[k] = self.a if code == ST else self.x
        return 0

    def alu(self, code: int, k: int) -> int | _Return:
        operation, operand = code & 0xF0, self.x if code & SRC_X else k
        if code == ALU | ALU_NEG:
            self.a = -self.a & _MASK
        elif operation == ALU_DIV:
            if operand == 0:
                return _Return(0)
            self.a //= operand
        elif operation in _ALU:
            self.a = _ALU[operation](self.a, operand) & _MASK
        else:
            raise _Unsupported
        return 0

    def jump(self, code: int, jt: int, jf: int, k: int) -> int:
        if code == JMP | JMP_JA:
            return k
        test = _JUMP.get(code & 0xF0)
        if test is None:
            raise _Unsupported
        return jt if test(self.a, self.x if code & SRC_X else k) else jf

    def ret(self, code: int, k: int) -> _Return:
        if code not in (RET, RET | RET_A):
            raise _Unsupported
        return _Return(self.a if code & RET_A else k)

    def misc(self, code: int) -> int:
        if code not in (MISC, MISC | MISC_TXA):
            raise _Unsupported
        if code & MISC_TXA:
            self.a = self.x
        else:
            self.x = self.a
        return 0

    def step(self, instruction: Instruction) -> int | _Return:
        code, jt, jf, k = instruction
        kind = code & 0x07
        if kind in (LD, LDX):
            return self.load(code, k)
        if kind in (ST, STX):
            return self.store(code, k)
        if kind == ALU:
            return self.alu(code, k)
        if kind == JMP:
            return self.jump(code, jt, jf, k)
        return self.ret(code, k) if kind == RET else self.misc(code)


def run_filter(program: Sequence[Instruction], data: bytes) -> int:
    """Run one classic-BPF seccomp program on *data* (struct seccomp_data); its 32-bit return value.

    The instructions are those the kernel's seccomp_check_filter accepts, in
    the form the user gave them (which is what PTRACE_SECCOMP_GET_FILTER
    returns).  Anything else raises FilterUnreadable: a filter we cannot
    read is never taken as allowing.
    """
    machine = _Machine(data)
    pc = 0
    while 0 <= pc < len(program):
        try:
            outcome = machine.step(program[pc])
        except _Unsupported:
            raise FilterUnreadable(f"unsupported BPF instruction {program[pc].code:#06x} at {pc}") from None
        if isinstance(outcome, _Return):
            return outcome.value
        pc += 1 + outcome
    raise FilterUnreadable(f"the program runs off its end at {pc}")


def _load(mode: int, k: int, data: bytes, memory: list[int]) -> int:
    if mode == MODE_ABS:
        if k % 4 or k + 4 > len(data):
            raise FilterUnreadable(f"a load from offset {k} of struct seccomp_data")
        return int.from_bytes(data[k:k + 4], "little")
    if mode == MODE_LEN:
        return SECCOMP_DATA_SIZE
    if mode == MODE_MEM:
        if k >= MEMWORDS:
            raise _Unsupported
        return memory[k]
    return k & _MASK


def _action_rank(value: int) -> int:
    """The kernel's ordering: the action bits as a signed 32-bit number, lower wins (KILL_PROCESS first)."""
    action = value & RET_ACTION_FULL
    return action - (1 << 32) if action >= 1 << 31 else action


def combine_actions(results_newest_first: Sequence[int]) -> int:
    """What the kernel does with the return values of a thread's filters (seccomp_run_filters).

    The filters run newest first; the first one with the highest-precedence
    action wins, so on a tie the newer filter's data (the errno) is used.
    """
    chosen = RET_ALLOW
    for value in results_newest_first:
        if _action_rank(value) < _action_rank(chosen):
            chosen = value
    return chosen


def describe_action(value: int) -> str | None:
    """What the system call would do under filter result *value*; None when it simply runs (ALLOW, LOG)."""
    action, data = value & RET_ACTION_FULL, value & RET_DATA
    if action in (RET_ALLOW, RET_LOG):
        return None
    if action == RET_ERRNO:
        data = min(data, MAX_ERRNO)
        return (f"fail with {errno.errorcode.get(data, f'errno {data}')}" if data
                else "be skipped, returning 0 without running")
    if action == RET_TRAP:
        return "raise SIGSYS in the thread (SECCOMP_RET_TRAP)"
    if action == RET_TRACE:
        return "fail with ENOSYS while buildhook, not the filter's tracer, traces it (SECCOMP_RET_TRACE)"
    if action == RET_USER_NOTIF:
        return "be handed to a seccomp supervisor process (SECCOMP_RET_USER_NOTIF)"
    if action == RET_KILL_THREAD:
        return "kill the thread (SECCOMP_RET_KILL_THREAD)"
    return "kill the process (SECCOMP_RET_KILL_PROCESS)" if action == RET_KILL_PROCESS else \
        f"kill the process (unknown seccomp action {action:#010x})"


def syscall_name(nr: int) -> str:
    return SYSCALL_NAMES.get(nr, f"system call {nr}")


def _seccomp_mode(tid: int) -> tuple[int, int]:
    """(Tgid, Seccomp mode) of thread *tid*: 0 none, 1 strict, 2 filter."""
    fields = _status_fields(f"/proc/{tid}/status")
    tgid = int(fields["Tgid"])
    return tgid, int(_status_fields(f"/proc/{tgid}/task/{tid}/status").get("Seccomp", "0"))


def _kernel_view(tid: int, calls: Sequence[tuple[int, tuple[int, ...], int]]) -> list[bytes]:
    """The seccomp_data the kernel will build for each call injected on *tid*.

    The injector sets only the arguments it is given on top of the thread's
    saved registers; the others are whatever the stopped thread holds, so
    they are read from it.  The kernel reports the address after the
    ``syscall`` instruction.
    """
    registers = ptrace.get_registers(tid)
    current = [registers.rdi, registers.rsi, registers.rdx, registers.r10, registers.r8, registers.r9]
    return [seccomp_data(nr, list(args) + current[len(args):], ip + SYSCALL_INSTRUCTION_SIZE)
            for nr, args, ip in calls]


def check_seccomp(tid: int, calls: list[tuple[int, tuple[int, ...], int]]) -> None:
    """Refuse (TargetUnsuitable) when the seccomp state of *tid* would not let *calls* run normally.

    *tid* is seized and in a ptrace stop.  Each call is (number, arguments,
    address of the ``syscall`` instruction it will be injected at; the
    filter sees that address + 2, as the kernel reports it).  Arguments not
    given are taken from the thread's registers now, which is what an
    injector that starts from the saved registers leaves in them.  Nothing
    in the target changes: the filters are read, never run there.
    """
    tgid, mode = _seccomp_mode(tid)
    where = f"process {tgid}" + (f" (thread {tid})" if tid != tgid else "")
    if mode == 0:
        return
    if mode == 1:
        raise TargetUnsuitable(f"{where} cannot be patched: it is in seccomp strict mode, where any system call "
                               "but read, write, exit and sigreturn kills it")
    try:
        filters = seccomp_filters(tid)
        for nr, data in zip((call[0] for call in calls), _kernel_view(tid, calls)):
            outcome = describe_action(combine_actions([run_filter(program, data) for program in reversed(filters)]))
            if outcome is not None:
                name = syscall_name(nr)
                raise TargetUnsuitable(f"{where} cannot be patched: its seccomp filter would make {name} "
                                       f"{outcome}; buildhook must run {name} in it")
    except FilterUnreadable as exc:
        raise TargetUnsuitable(f"{where} cannot be patched: cannot evaluate its seccomp filter ({exc}), "
                               "so the system calls buildhook must run in it might be refused") from exc


def next_fd(pid: int) -> int:
    """The descriptor the target's next ``memfd_create`` will most likely get: its lowest free one.

    The mmap calls take the memfd's descriptor; to check them before the
    memfd exists, pass this (another thread may open one meanwhile; a filter
    that looks at descriptor numbers is rare).
    """
    used = {int(name) for name in os.listdir(f"{proc_dir(pid)}/fd")}
    return next(fd for fd in range(len(used) + 1) if fd not in used)


__all__ = ["TargetUnsuitable", "check_seccomp", "check_system", "combine_actions", "describe_action",
           "namespace_differences", "next_fd", "run_filter", "seccomp_data", "seccomp_filters", "yama_refusal"]
