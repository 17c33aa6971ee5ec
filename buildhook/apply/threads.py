"""All threads of a process, seized, stopped together and let go.

``PTRACE_SEIZE`` does not stop anything, so every thread is seized before
the pause begins; new threads started meanwhile are caught by listing
``/proc/PID/task`` again until the list no longer changes.  Stopping is
``PTRACE_INTERRUPT`` to every thread first, then one wait per thread, so the
threads stop in parallel.  A signal that arrives while a thread is held is
remembered and delivered when it is let go.
"""

from __future__ import annotations

import errno
import time

from buildhook.apply import ptrace
from buildhook.apply.process import ProcessError, thread_ids


class TraceDenied(Exception):
    """ptrace is not allowed on this process; the message says what to do."""


class ThreadGroup:
    """The seized threads of one process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seized: set[int] = set()
        self.stopped: set[int] = set()
        self.pending: dict[int, int] = {}

    def seize_all(self) -> None:
        for _round in range(100):
            new = [tid for tid in thread_ids(self.pid) if tid not in self.seized]
            if not new:
                return
            for tid in new:
                try:
                    ptrace.seize(tid)
                except ptrace.PtraceError as exc:
                    if exc.errno == errno.ESRCH:
                        continue  # the thread ended meanwhile
                    if exc.errno == errno.EPERM:
                        raise TraceDenied(
                            f"ptrace of process {self.pid} denied: run as its owner with "
                            "kernel.yama.ptrace_scope=0, or as root") from exc
                    raise
                self.seized.add(tid)
        raise ProcessError(f"process {self.pid} keeps starting threads; cannot seize them all")

    def _wait(self, tid: int) -> None:
        kind, signal = ptrace.wait_stop(tid)
        while kind == "syscall":  # cannot happen without PTRACE_SYSCALL, but never leave one running
            ptrace.cont(tid)
            kind, signal = ptrace.wait_stop(tid)
        if kind == "exited":
            self.seized.discard(tid)
            return
        if kind == "signal":
            self.pending[tid] = signal
        self.stopped.add(tid)

    def stop(self, tid: int) -> None:
        """Stop one thread (for injecting a system call)."""
        ptrace.interrupt(tid)
        self._wait(tid)

    def stop_all(self) -> int:
        """Stop every thread, new ones included; return the perf_counter_ns when the first stop was asked.

        Threads are seized beforehand (``seize_all``); once all known threads
        are stopped the task list is read once more, since a thread may have
        started one in between (no stopped thread can start another).
        """
        started = time.perf_counter_ns()
        while True:
            running = [tid for tid in self.seized if tid not in self.stopped]
            if not running:
                before = len(self.seized)
                self.seize_all()
                if len(self.seized) == before:
                    return started
                continue
            for tid in running:
                try:
                    ptrace.interrupt(tid)
                except ptrace.PtraceError as exc:
                    if exc.errno != errno.ESRCH:
                        raise
            for tid in running:
                try:
                    self._wait(tid)
                except ChildProcessError:
                    self.seized.discard(tid)

    def resume(self, tid: int) -> None:
        ptrace.cont(tid, self.pending.pop(tid, 0))
        self.stopped.discard(tid)

    def resume_all(self) -> None:
        for tid in sorted(self.stopped):
            try:
                self.resume(tid)
            except ptrace.PtraceError as exc:
                if exc.errno != errno.ESRCH:
                    raise

    def detach_all(self) -> None:
        """Let every thread go, delivering held signals; safe to call more than once.

        A stopped thread is detached directly (which resumes it): detaching
        right after the commit ends the pause without stopping anyone again.
        """
        for tid in sorted(self.stopped):
            try:
                ptrace.detach(tid, self.pending.pop(tid, 0))
            except ptrace.PtraceError:
                pass
        for tid in sorted(self.seized - self.stopped):
            try:
                ptrace.interrupt(tid)  # detaching requires a stopped tracee
                self._wait(tid)
                ptrace.detach(tid, self.pending.pop(tid, 0))
            except (ptrace.PtraceError, ChildProcessError):
                pass
        self.seized.clear()
        self.stopped.clear()
