"""System calls and calls run on a target thread, safe whatever happens to the applier.

The applier creates its region with system calls the target itself makes
(memfd_create, mmap, close, munmap) and runs IFUNC resolvers there.  Until
now a thread was pointed at a bare ``syscall`` instruction: had the applier
been killed at that moment, the thread would have gone on after that
instruction with the wrong registers, and the target would have crashed.

So every injected call goes through a *return stub*: a few instructions
the applier writes into unused bytes at the end of an executable mapping
(the padding after a segment's last byte, up to the page end: mapped, never
run, never read).  The stub is::

    call_ret: mov %rax,%rdi; mov $39,%eax        # a resolver returns here: getpid, result in %rdi
    sys:      syscall                            # the injected call
    tail:     rt_sigprocmask(SIG_SETMASK, &mask) # then restore the thread exactly as it was
              rsp ← scratch; push flags; popfq
              every register ← its slot; rsp ← slot; jmp *rip_slot

with the slots (the thread's registers set up to restart an interrupted
system call, its signal mask, a scratch stack pointer below the red zone)
written beside it before the thread is touched.  While the applier lives,
it reads each result at the call's exit stop and finally puts the thread
back itself, exactly (see ``_finish``); if it dies at any point, the thread
runs on into the tail and returns to where it was by itself.

Signals: the thread's signals are blocked (``PTRACE_SETSIGMASK``) while it
runs injected calls, so none is dequeued, lost or reordered; the kernel
keeps them queued (real-time signals with their data) and delivers them
once the mask is back.  The fault signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
SIGTRAP, SIGABRT, SIGSYS) stay unblocked: a called hook that faults is then
reported to the applier, which puts the thread back (a fault through a
blocked mask would make the kernel reset the process's handler).  One of
them sent by another process meanwhile is queued again (``tkill``) once
the thread is back.  The thread is returned to an ordinary interrupt
stop with its own registers, so when it is resumed the kernel itself
restarts, or fails with EINTR, an interrupted system call exactly as it
would have without us (SA_RESTART, ``sigsuspend``, ``nanosleep``'s
remaining time).

Standard library only.
"""

from __future__ import annotations

import errno
import struct

from buildhook.apply import ptrace
from buildhook.apply.process import PAGE, MappedObject, Mapping

SYS_WRITE, SYS_RT_SIGPROCMASK, SYS_GETPID = 1, 14, 39
MAX_OUTPUT = 4096  # bytes of a hook's output kept for the report
SIG_SETMASK = 2
PT_LOAD, PF_X = 1, 1
RED_ZONE = 128

# Slots, 8 bytes each, after the code: the signal mask, the scratch stack
# pointer, the flags, then every register in the order the tail loads them.
_GPRS = ("rax", "rcx", "rdx", "rbx", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
_REGISTER_NUMBERS = {"rax": 0, "rcx": 1, "rdx": 2, "rbx": 3, "rsp": 4, "rbp": 5, "rsi": 6, "rdi": 7,
                     **{f"r{n}": n for n in range(8, 16)}}
SLOT_NAMES = ("mask", "scratch", "rflags", *_GPRS, "rsp", "rip")
CALL_RET, SYS = 0, 8
DATA_SIZE = 128  # bytes for a call's argument (a memfd's name)


# Signals a faulting function raises; they stay unblocked while it runs, so that the kernel reports the
# fault to us instead of forcing it through a blocked mask (which resets the process's handler).
FAULT_SIGNALS = {4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 11: "SIGSEGV", 31: "SIGSYS"}
CALL_MASK = ptrace.ALL_SIGNALS & ~sum(1 << (signo - 1) for signo in FAULT_SIGNALS)


class InjectionError(Exception):
    """A call could not be run in the target (the target is as it was)."""


class CallFailed(InjectionError):
    """The called function faulted or did not return in time; its thread is put back as it was."""


def _assemble() -> tuple[bytes, int]:
    """The stub's code, and the offset of its slots (code is position-independent)."""
    code = bytearray(b"\x48\x89\xc7" + b"\xb8" + struct.pack("<I", SYS_GETPID))  # call_ret
    assert len(code) == SYS
    code += b"\x0f\x05"  # sys
    fixups: list[tuple[int, str]] = []  # (offset of a disp32, slot) — the disp is relative to the next byte

    def rip_operand(prefix: bytes, slot: str) -> None:
        code.extend(prefix)
        fixups.append((len(code), slot))
        code.extend(b"\0\0\0\0")

    code += b"\xb8" + struct.pack("<I", SYS_RT_SIGPROCMASK) + b"\xbf" + struct.pack("<I", SIG_SETMASK)
    rip_operand(b"\x48\x8d\x35", "mask")  # lea mask(%rip), %rsi
    code += b"\x31\xd2" + b"\x41\xba\x08\x00\x00\x00" + b"\x0f\x05"  # xor %edx,%edx; mov $8,%r10d; syscall
    rip_operand(b"\x48\x8b\x25", "scratch")  # mov scratch(%rip), %rsp
    rip_operand(b"\xff\x35", "rflags")  # push rflags(%rip)
    code += b"\x9d"  # popfq
    for name in _GPRS:
        number = _REGISTER_NUMBERS[name]
        rip_operand(bytes([0x48 | (number >> 3) << 2, 0x8B, (number & 7) << 3 | 5]), name)
    rip_operand(b"\x48\x8b\x25", "rsp")
    rip_operand(b"\xff\x25", "rip")  # jmp *rip(%rip)
    slots = (len(code) + 7) & ~7
    for offset, slot in fixups:
        struct.pack_into("<i", code, offset, slots + 8 * SLOT_NAMES.index(slot) - (offset + 4))
    return bytes(code) + b"\xcc" * (slots - len(code)), slots


STUB_CODE, SLOTS_OFFSET = _assemble()
TAIL_SYSCALL = STUB_CODE.index(b"\x0f\x05", SYS + 2)  # the tail's rt_sigprocmask
DATA_OFFSET = SLOTS_OFFSET + 8 * len(SLOT_NAMES)
STUB_SIZE = DATA_OFFSET + DATA_SIZE


def _executable_segment_ends(item: MappedObject) -> list[int]:
    """Run-time end addresses of the object's executable PT_LOAD segments."""
    data = item.file_bytes
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    ends = []
    for index in range(phnum):
        p_type, flags, _offset, vaddr, _paddr, _filesz, memsz = struct.unpack_from("<IIQQQQQ", data,
                                                                                    phoff + index * phentsize)
        if p_type == PT_LOAD and flags & PF_X:
            ends.append(item.bias + vaddr + memsz)
    return ends


def stub_place(objects: list[MappedObject], maps: list[Mapping], size: int = STUB_SIZE) -> int:
    """An address with *size* unused bytes after the end of an executable segment, in its last page.

    Those bytes are mapped executable but belong to no segment: nothing
    runs or reads them.  The objects are tried in order (the caller puts
    the target first).
    """
    for item in objects:
        for end in _executable_segment_ends(item):
            mapping = next((m for m in maps if m.start <= end - 1 < m.end and m.executable), None)
            if mapping is None:
                continue
            start = (end + 15) & ~15
            limit = min(mapping.end, (end + PAGE - 1) & ~(PAGE - 1))
            if any(start < m.end and m.start < limit for m in maps if m is not mapping):
                continue
            if limit - start >= size:
                return start
    raise InjectionError("no executable mapping of the process has room for the applier's return stub "
                         f"({size} bytes of padding after a code segment)")


def restart_registers(saved: ptrace.Registers) -> ptrace.Registers:
    """The registers that make a thread re-execute the system call it was stopped in.

    Only for the stub's tail, which runs when the applier is gone: then the
    kernel's own restart logic has already been skipped, and a restart is
    what it would have done with no signal pending.
    """
    orig = saved.orig_rax
    result = saved.rax - (1 << 64) if saved.rax >= 1 << 63 else saved.rax
    if orig >= 1 << 63:  # not in a system call
        return saved
    if -result in (ptrace.ERESTARTSYS, ptrace.ERESTARTNOINTR, ptrace.ERESTARTNOHAND):
        return saved.set(rax=orig, rip=saved.rip - ptrace.SYSCALL_INSTRUCTION_SIZE)
    if -result == ptrace.ERESTART_RESTARTBLOCK:
        return saved.set(rax=ptrace.NR_RESTART_SYSCALL, rip=saved.rip - ptrace.SYSCALL_INSTRUCTION_SIZE)
    return saved


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class Injector:
    """Runs calls on one stopped thread through the return stub at *address*."""

    def __init__(self, tid: int, address: int, write_memory, read_memory=None) -> None:  # type: ignore[no-untyped-def]
        self.tid = tid
        self.address = address
        self.write = write_memory
        self.read = read_memory
        self.output = bytearray()  # what a called function wrote to stdout and stderr (its write calls)
        self.saved = ptrace.get_registers(tid)
        self.mask = ptrace.get_signal_mask(tid)
        self._armed = False
        self._resend: list[int] = []  # fault-type signals another process sent meanwhile: queued again after

    def _arm(self, data: bytes) -> None:
        """Write the stub with this thread's slots (it is not running it yet)."""
        resume = restart_registers(self.saved)
        scratch = ((self.saved.rsp - RED_ZONE - 128) & ~15)
        values = {"mask": self.mask, "scratch": scratch, "rflags": self.saved.eflags, "rsp": self.saved.rsp,
                  "rip": resume.rip, **{name: getattr(resume, name) for name in _GPRS}}
        slots = b"".join(struct.pack("<Q", values[name] & 0xFFFFFFFFFFFFFFFF) for name in SLOT_NAMES)
        self.write(self.address, STUB_CODE + slots + data.ljust(DATA_SIZE, b"\0")[:DATA_SIZE])

    def _enter(self, registers: ptrace.Registers, data: bytes) -> None:
        """Point the thread at injected work: registers first, then block its signals.

        In this order, a death in between leaves a thread that runs the call
        and the tail with its own mask, never one with all signals blocked.
        """
        if not self._armed:
            self._arm(data)
        ptrace.set_registers(self.tid, registers)
        if not self._armed:
            ptrace.set_signal_mask(self.tid, CALL_MASK)
            self._armed = True

    def _wait_syscall(self) -> None:
        """To the next system-call stop of the stub's own calls."""
        self._wait_call(self.address + SYS, None)

    def syscall(self, number: int, *arguments: int, data: bytes = b"") -> int:
        """Run one system call; return its result (negative: -errno)."""
        names = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
        self._enter(self.saved.set(rip=self.address + SYS, rax=number, orig_rax=-1,
                                   **dict(zip(names, arguments))), data)
        for _ in ("entry", "exit"):
            ptrace.syscall_step(self.tid)
            self._wait_syscall()
        return _signed(ptrace.get_registers(self.tid).rax)

    def call(self, function: int, *arguments: int, deadline: float | None = None) -> int:
        """Call ``function(arguments…)`` (an IFUNC resolver, a hook) and return its %rax.

        A fault in it (SIGSEGV …), or not returning by *deadline*
        (time.monotonic()), raises CallFailed with the thread stopped; finish()
        then puts it back as it was.  What the function changed in memory
        stays changed.
        """
        stack = ((self.saved.rsp - RED_ZONE - 1024) & ~15) - 8
        self.write(stack, struct.pack("<Q", self.address + CALL_RET))  # below the red zone: unused
        names = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
        self._enter(self.saved.set(rip=function, rsp=stack, rax=0, orig_rax=-1, **dict(zip(names, arguments))), b"")
        while True:  # to the stub's getpid: the function has returned
            ptrace.syscall_step(self.tid)
            self._wait_call(function, deadline)
            registers = ptrace.get_registers(self.tid)
            if registers.rip == self.address + SYS + 2 and registers.orig_rax == SYS_GETPID:
                break
            if registers.orig_rax == SYS_WRITE and registers.rdi in (1, 2) and self.read is not None \
                    and len(self.output) < MAX_OUTPUT:
                self.output += self.read(registers.rsi, min(registers.rdx, MAX_OUTPUT - len(self.output)))
            ptrace.syscall_step(self.tid)  # a system call of the function's own: to its exit
            self._wait_call(function, deadline)
        ptrace.syscall_step(self.tid)
        self._wait_syscall()
        return registers.rdi

    def _wait_call(self, function: int, deadline: float | None) -> None:
        """To the next system-call stop of code run on the thread (a called *function*, or the stub);
        a fault or the deadline raises CallFailed.  Only SIGSTOP, SIGKILL and the fault signals get
        through the mask: one of those another process sent is kept to be queued again."""
        while True:
            kind, signal = ptrace.wait_stop(self.tid, deadline)
            if kind == "syscall":
                return
            if kind == "signal" and signal in FAULT_SIGNALS:
                if ptrace.signal_code(self.tid) > 0:  # raised by the kernel: the function faulted
                    rip = ptrace.get_registers(self.tid).rip
                    raise CallFailed(f"the function at {function:#x} faulted ({FAULT_SIGNALS[signal]} at {rip:#x})")
                self._resend.append(signal)  # sent by someone: theirs, queued again once the thread is back
            elif kind == "timeout":
                ptrace.interrupt(self.tid)
                while ptrace.wait_stop(self.tid)[0] not in ("event", "exited"):
                    ptrace.cont(self.tid)  # a signal stop first (suppressed: the function's run is over)
                raise CallFailed(f"the function at {function:#x} did not return in time")
            elif kind not in ("signal", "event"):
                raise InjectionError(f"thread {self.tid} ended during an injected call ({kind} {signal})")
            ptrace.syscall_step(self.tid)  # step on: SIGSTOP/SIGKILL stay with the kernel

    def finish(self) -> None:
        """Put the thread back in an interrupt stop with exactly its own registers and mask.

        From a system-call exit stop: the mask first, then an interrupt (so
        the kernel passes through its signal and restart code on the way
        out), then the registers, then on to that interrupt stop.  A death
        after any step leaves a thread that restarts correctly by itself.
        """
        if not self._armed:
            return
        ptrace.set_signal_mask(self.tid, self.mask)
        ptrace.interrupt(self.tid)
        ptrace.set_registers(self.tid, self.saved)
        ptrace.cont(self.tid)
        kind, signal = ptrace.wait_stop(self.tid)
        if kind != "event":
            raise ptrace.PtraceError(f"thread {self.tid} did not come back to its stop ({kind} {signal})", errno.EIO)
        self._armed = False
        for signo in self._resend:
            ptrace.send_signal(self.tid, signo)
        self._resend.clear()
