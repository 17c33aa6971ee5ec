"""ptrace on x86-64 Linux through ctypes: seize, stop, read, inject, resume.

Only what the applier needs, and with the semantics it relies on:

* ``PTRACE_SEIZE`` attaches without stopping; ``PTRACE_INTERRUPT`` stops a
  thread in a ptrace event stop, from which a plain resume lets an
  interrupted system call restart (the target never sees EINTR).
* ``PTRACE_SYSCALL`` steps, signal masks and registers for running calls
  in the target (inject.py).
* Memory is read with ``process_vm_readv`` (many ranges in one call) and
  written through ``/proc/PID/mem``, which reaches read-only code as root.

Standard library only: the runtime applier ships without anything else.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import time

from buildhook.apply.process import memory_pid, proc_dir

PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_CONT = 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_GETSIGINFO = 0x4202
PTRACE_GETSIGMASK = 0x420A
PTRACE_SETSIGMASK = 0x420B
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_GET_RSEQ_CONFIGURATION = 0x420F  # Linux 5.13
PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_EVENT_STOP = 128
WALL = 0x40000000
SIGTRAP = 5

# user_regs_struct, in kernel order.
REGISTER_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
                  "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base",
                  "ds", "es", "fs", "gs")
REGS_FORMAT = "<27Q"
REGS_SIZE = struct.calcsize(REGS_FORMAT)

# Results a system call interrupted by our stop leaves in rax: restart it.
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
NR_RESTART_SYSCALL = 219
SYSCALL_INSTRUCTION_SIZE = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                                   ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.c_ulong]
_libc.process_vm_readv.restype = ctypes.c_ssize_t


class PtraceError(Exception):
    """A ptrace operation failed; ``errno`` says why (EPERM: not allowed, ESRCH: gone)."""

    def __init__(self, message: str, error: int) -> None:
        super().__init__(message)
        self.errno = error


class Registers:
    """One thread's general-purpose registers (user_regs_struct); ``regs.rsp`` etc. are properties."""

    __slots__ = ("values",)

    def __init__(self, values: list[int]) -> None:
        self.values = values

    def set(self, **changes: int) -> Registers:
        values = list(self.values)
        for name, value in changes.items():
            values[REGISTER_NAMES.index(name)] = value & 0xFFFFFFFFFFFFFFFF
        return Registers(values)

    def pack(self) -> bytes:
        return struct.pack(REGS_FORMAT, *self.values)


# One property per register: read inside the pause, so no name lookup per access.
for _index, _name in enumerate(REGISTER_NAMES):
    setattr(Registers, _name, property(lambda self, _i=_index: self.values[_i]))
_REGS_BUFFER = ctypes.create_string_buffer(REGS_SIZE)


def _call(request: int, tid: int, address: int = 0, data: int = 0) -> int:
    ctypes.set_errno(0)
    result = _libc.ptrace(request, tid, ctypes.c_void_p(address), ctypes.c_void_p(data))
    if result == -1:
        error = ctypes.get_errno()
        if error:
            raise PtraceError(f"ptrace request {request:#x} on thread {tid}: {os.strerror(error)}", error)
    return result


def seize(tid: int) -> None:
    """Attach to a thread without stopping it."""
    _call(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACESYSGOOD)


def interrupt(tid: int) -> None:
    _call(PTRACE_INTERRUPT, tid)


def detach(tid: int, signal: int = 0) -> None:
    """Let the thread go (re-delivering *signal* if it had one pending)."""
    _call(PTRACE_DETACH, tid, 0, signal)


def cont(tid: int, signal: int = 0) -> None:
    _call(PTRACE_CONT, tid, 0, signal)


def wait_stop(tid: int, deadline: float | None = None) -> tuple[str, int]:
    """Wait for a traced thread to stop: ("event", 0), ("signal", signo), ("syscall", 0) or ("exited", code).

    With a *deadline* (time.monotonic()): ("timeout", 0) once it has passed and the thread is still running.
    """
    pause = 50e-6
    while True:
        try:
            found, status = os.waitpid(tid, WALL | (os.WNOHANG if deadline is not None else 0))
        except InterruptedError:
            continue
        if found:
            break
        if time.monotonic() >= deadline:  # type: ignore[operator]
            return "timeout", 0
        time.sleep(pause)
        pause = min(pause * 2, 1e-3)
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        return "exited", os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    signal = os.WSTOPSIG(status)
    if status >> 16 == PTRACE_EVENT_STOP:
        return "event", 0
    if signal == SIGTRAP | 0x80:
        return "syscall", 0
    return "signal", signal


def syscall_step(tid: int) -> None:
    """Resume a stopped thread to its next system-call entry or exit stop."""
    _call(PTRACE_SYSCALL, tid)


_SIGINFO_BUFFER = ctypes.create_string_buffer(128)
SYS_TKILL = 200


def signal_code(tid: int) -> int:
    """si_code of the signal a thread is stopped with: > 0 when the kernel raised it (a fault), <= 0 when
    a process sent it (kill, tgkill, sigqueue)."""
    _call(PTRACE_GETSIGINFO, tid, 0, ctypes.addressof(_SIGINFO_BUFFER))
    return struct.unpack_from("<i", _SIGINFO_BUFFER.raw, 8)[0]


def send_signal(tid: int, signo: int) -> None:
    """Queue *signo* for one thread again (tkill)."""
    if _libc.syscall(SYS_TKILL, tid, signo) != 0:
        raise PtraceError(f"tkill {signo} to thread {tid}: {os.strerror(ctypes.get_errno())}", ctypes.get_errno())


_MASK_BUFFER = ctypes.create_string_buffer(8)
ALL_SIGNALS = (1 << 64) - 1


def get_signal_mask(tid: int) -> int:
    """The thread's real blocked-signal mask (the one ``sigsuspend`` & co. will restore, if pending)."""
    _call(PTRACE_GETSIGMASK, tid, 8, ctypes.addressof(_MASK_BUFFER))
    return struct.unpack("<Q", _MASK_BUFFER.raw)[0]


def set_signal_mask(tid: int, mask: int) -> None:
    """Set the blocked mask of a stopped thread (the kernel never blocks SIGKILL or SIGSTOP)."""
    buffer = ctypes.create_string_buffer(struct.pack("<Q", mask), 8)
    _call(PTRACE_SETSIGMASK, tid, 8, ctypes.addressof(buffer))


class _RseqConfiguration(ctypes.Structure):
    _fields_ = [("rseq_abi_pointer", ctypes.c_uint64), ("rseq_abi_size", ctypes.c_uint32),
                ("signature", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


def rseq_area(tid: int) -> tuple[int, int] | None:
    """(address, size) of the rseq area a stopped thread registered (glibc does, in its thread descriptor),
    or None (none registered, or a kernel before 5.13).  The kernel rewrites its CPU and concurrency ids
    whenever the thread returns to user space after it moved."""
    configuration = _RseqConfiguration()
    ctypes.set_errno(0)
    got = _libc.ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, ctypes.c_void_p(ctypes.sizeof(configuration)),
                       ctypes.byref(configuration))
    if got <= 0 or not configuration.rseq_abi_pointer or not configuration.rseq_abi_size:
        return None
    return configuration.rseq_abi_pointer, configuration.rseq_abi_size


def seccomp_filter(tid: int, index: int, buffer_address: int = 0) -> int:
    """The instruction count of seccomp filter *index* of a stopped thread; with a buffer, its instructions."""
    return _call(PTRACE_SECCOMP_GET_FILTER, tid, index, buffer_address)


def get_registers(tid: int) -> Registers:
    _call(PTRACE_GETREGS, tid, 0, ctypes.addressof(_REGS_BUFFER))
    return Registers(list(struct.unpack(REGS_FORMAT, _REGS_BUFFER.raw)))


def set_registers(tid: int, registers: Registers) -> None:
    buffer = ctypes.create_string_buffer(registers.pack(), REGS_SIZE)
    _call(PTRACE_SETREGS, tid, 0, ctypes.addressof(buffer))


def read_ranges(pid: int, ranges: list[tuple[int, int]]) -> list[bytes]:
    """Read several (address, size) ranges of a process in one system call."""
    if not ranges:
        return []
    buffers = [ctypes.create_string_buffer(size) for _, size in ranges]
    local = (_IOVec * len(ranges))(*[_IOVec(ctypes.addressof(b), size) for b, (_, size) in zip(buffers, ranges)])
    remote = (_IOVec * len(ranges))(*[_IOVec(address, size) for address, size in ranges])
    total = sum(size for _, size in ranges)
    got = _libc.process_vm_readv(pid, local, len(ranges), remote, len(ranges), 0)
    if got < 0 and ctypes.get_errno() == errno.ESRCH and memory_pid(pid) != pid:  # its main thread has exited
        got = _libc.process_vm_readv(memory_pid(pid), local, len(ranges), remote, len(ranges), 0)
    if got < 0:
        error = ctypes.get_errno()
        raise PtraceError(f"reading memory of {pid}: {os.strerror(error)}", error)
    result = []
    remaining = got
    for buffer, (_, size) in zip(buffers, ranges):
        take = max(0, min(size, remaining))
        result.append(buffer.raw[:take])
        remaining -= take
    if got != total:
        # A short read stops at the first unreadable range; callers see the truncation.
        pass
    return result


class ProcessMemory:
    """``/proc/PID/mem``: read and write, code included (as root)."""

    def __init__(self, pid: int) -> None:
        self.fd = os.open(f"{proc_dir(pid)}/mem", os.O_RDWR)

    def read(self, address: int, size: int) -> bytes:
        return os.pread(self.fd, size, address)

    def write(self, address: int, data: bytes) -> None:
        written = os.pwrite(self.fd, data, address)
        if written != len(data):
            raise PtraceError(f"short write at {address:#x}: {written} of {len(data)} bytes", errno.EIO)

    def close(self) -> None:
        os.close(self.fd)
