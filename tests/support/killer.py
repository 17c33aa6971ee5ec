"""Kill a command with SIGKILL at its Nth system-call boundary: fault injection with no hooks in the code.

What ``strace -f -e inject=SET:signal=KILL:when=N`` does, with ptrace from
the test process itself (so the tests need nothing beyond the repo): the
command runs traced from its first instruction; every entry to and exit
from a system call in *syscalls* is one *step*; at step N the command is
killed, at that stop — at an entry, before the call runs; at an exit,
after it ran and before the command sees its result.  The applier's own
ptrace of its target is unaffected (a tracee may trace others).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass

from buildhook.apply import ptrace

PTRACE_TRACEME = 0
PTRACE_O_TRACESYSGOOD, PTRACE_O_EXITKILL = 0x1, 0x100000

# The system calls by which the applier works on its target.
SYS_PREAD64, SYS_PWRITE64, SYS_WAIT4, SYS_PTRACE, SYS_FTRUNCATE, SYS_PROCESS_VM_READV = 17, 18, 61, 101, 77, 310
TARGET_SYSCALLS = frozenset({SYS_PREAD64, SYS_PWRITE64, SYS_WAIT4, SYS_PTRACE, SYS_FTRUNCATE,
                             SYS_PROCESS_VM_READV})


@dataclass
class KilledRun:
    """How a run ended: killed at step *step* (syscall number, entry or exit), or finished with *returncode*."""

    steps: int
    killed: bool
    syscall: int = -1
    at: str = ""
    returncode: int = 0
    stderr: str = ""


def _trace_me() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace(PTRACE_TRACEME, 0, None, None)


def run_killed_at(argv: list[str], env: dict[str, str], step: int | None,
                  syscalls: frozenset[int] = TARGET_SYSCALLS, timeout: float = 60) -> KilledRun:
    """Run *argv* and SIGKILL it at boundary *step* (1-based); ``None`` runs it through, counting the steps."""
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, preexec_fn=_trace_me)  # noqa: PLW1509 - TRACEME before exec
    pid = process.pid
    deadline = time.monotonic() + timeout
    try:
        _, status = os.waitpid(pid, 0)  # the SIGTRAP of exec
        ptrace._call(ptrace.PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL)
        count, entering, deliver = 0, True, 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv[:3]} did not finish in {timeout} s")
            ptrace._call(ptrace.PTRACE_SYSCALL, pid, 0, deliver)
            deliver = 0
            _, status = os.waitpid(pid, 0)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
                return KilledRun(count, False, returncode=code, stderr=_stderr(process))
            stop = os.WSTOPSIG(status)
            if stop != signal.SIGTRAP | 0x80:
                deliver = stop  # a real signal of the command's own: pass it on
                continue
            at = "entry" if entering else "exit"
            entering = not entering
            number = ptrace.get_registers(pid).orig_rax
            if number not in syscalls:
                continue
            count += 1
            if step is not None and count == step:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return KilledRun(count, True, number, at, -9, _stderr(process))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _stderr(process: subprocess.Popen[bytes]) -> str:
    assert process.stderr is not None
    data = process.stderr.read()
    process.stderr.close()
    return data.decode(errors="replace")
