"""All threads of a process, seized, stopped together within a bound, and let go.

``PTRACE_SEIZE`` does not stop anything, so every thread is seized before
the pause begins; new threads started meanwhile are caught by listing
``/proc/PID/task`` again until the list no longer changes.  Stopping is
``PTRACE_INTERRUPT`` to every thread first, then non-blocking waits
(``waitpid(WNOHANG)``), so the threads stop in parallel.  The first looks do
not sleep: every thread normally stops within microseconds.  A signal that
arrives while a thread is held is remembered and delivered when it is let go.

A thread that will not stop — a vfork parent waiting for its child to exec
or exit, a thread in uninterruptible sleep — never holds the rest of the
process stopped beyond a small budget (``STOP_BUDGET_S``): when it is spent,
every thread that did stop goes on, the late one stays seized with its
interrupt still pending, and ``ThreadWontStop`` says which thread and why.
Its stop, when it comes, is consumed on the next look (any method of the
group but ``resume``) and the thread let go: never left stopped, never taken
for a signal.  Until then it stays traced by this process, even after
``detach_all`` (``PTRACE_DETACH`` needs a stopped thread); the kernel lets it
go when this process exits.

A main thread that has exited (``pthread_exit`` in ``main``: the leader stays
a zombie, listed in ``/proc/PID/task``, while the other threads run) can be
neither seized nor stopped; it is left out, and ``live_thread()`` names the
thread to inject system calls on.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from typing import Self

from buildhook.apply import ptrace, scheduling
from buildhook.apply.process import ProcessError, task_file, thread_ids, thread_state

STOP_BUDGET_S = 0.020
"""How long a stop may wait for a thread before the others are let go (ThreadWontStop)."""

_MAX_SLEEP_S = 0.001  # the longest sleep between two looks at a thread that has not stopped yet
_SPIN_S = 0.001  # without SIGCHLD to sleep on: look again yielding the CPU this long, then sleep
_FIRST_SLEEP_S = 0.0001  # from this, doubling up to _MAX_SLEEP_S

_NO_WAIT = os.WNOHANG | ptrace.WALL

# Threads still traced after a group gave up on them ((pid, tid) -> the native id of the tracing
# thread): PTRACE_DETACH needs a stopped thread.  A later group on the process takes them over when
# it runs in that thread (ptrace requests work only from the tracer), instead of failing to seize.
_STILL_TRACED: dict[tuple[int, int], int] = {}
_SYS_CLONE, _SYS_VFORK, _SYS_CLONE3 = 56, 58, 435
_CLONE_VFORK = 0x4000
_VFORK_WCHANS = ("wait_for_vfork_done", "kernel_clone", "_do_fork", "do_fork")


class TraceDenied(Exception):
    """ptrace is not allowed on this process; the message says what to do."""


class ThreadWontStop(ProcessError):
    """Thread ``tid`` did not stop within the budget; ``reason`` says why (from /proc).

    Raised only after every other thread was let go again: the process runs
    as before, and the late thread's stop is consumed by the group later.
    ``state`` is its /proc state letter at the deadline: "R" (runnable: slow
    to get a CPU on a loaded machine, it will stop), "D" (uninterruptible
    sleep, a vfork parent), None if unknown.
    """

    def __init__(self, tid: int, reason: str, state: str | None = None) -> None:
        super().__init__(f"thread {tid} will not stop: {reason}")
        self.tid = tid
        self.reason = reason
        self.state = state


def _decode(status: int) -> tuple[str, int]:
    """A wait status as ptrace.wait_stop reports it: ("event"|"signal"|"syscall"|"exited", value)."""
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        return "exited", os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    signo = os.WSTOPSIG(status)
    if status >> 16 == ptrace.PTRACE_EVENT_STOP:
        return "event", 0
    if signo == ptrace.SIGTRAP | 0x80:
        return "syscall", 0
    return "signal", signo


def _in_vfork(pid: int, tid: int, state: str, wchan: str | None) -> bool:
    """Is the thread a vfork parent waiting for its child (vfork, or clone/clone3 with CLONE_VFORK)?"""
    if wchan == "wait_for_vfork_done":
        return True
    fields = (task_file(pid, tid, "syscall") or "").split()
    if not fields or not fields[0].isdigit():
        return False
    number = int(fields[0])
    if number == _SYS_VFORK:
        return True
    if number == _SYS_CLONE and len(fields) > 1:
        try:
            return bool(int(fields[1], 16) & _CLONE_VFORK)
        except ValueError:
            return False
    # clone3 keeps its flags in memory; a parent sleeps uninterruptibly there only waiting for a vfork child.
    return number == _SYS_CLONE3 and state == "D" and wchan in _VFORK_WCHANS


def why_not_stopped(pid: int, tid: int, budget: float) -> str:
    """Why thread *tid* did not stop, in words, from /proc/PID/task/TID/{stat,wchan,syscall,children}."""
    waited = f"{budget * 1000:g} ms"
    state = thread_state(pid, tid)
    if state is None:
        return f"it did not stop within {waited} and is gone now"
    wchan = task_file(pid, tid, "wchan")
    wchan = wchan if wchan and wchan != "0" else None
    where = f" in {wchan}" if wchan else ""
    if _in_vfork(pid, tid, state, wchan):
        children = (task_file(pid, tid, "children") or "").split()
        child = f" {children[0]}" if children else ""
        return f"it is a vfork parent waiting for its child{child} to exec or exit ({state} state{where})"
    if state == "D":
        return f"it is in uninterruptible sleep (D state){where}"
    return f"it did not stop within {waited} (state {state}{where})"


class _StopNotices:
    """Sleep between two looks until a tracee changes state, or at most a while.

    The kernel sends the tracer SIGCHLD at every stop of a tracee; with
    SIGCHLD blocked in this thread, ``sigtimedwait`` wakes as soon as one
    stops, as a blocking ``waitpid`` would, and times out otherwise (a
    SIGCHLD another thread took only costs ``_MAX_SLEEP_S``).  Done only when
    nobody else wants SIGCHLD (default disposition, not blocked by the
    caller); else the CPU is yielded for ``_SPIN_S``, then short sleeps.
    """

    def __enter__(self) -> Self:
        self.notified = False
        # Yielding spins only at normal priority: run at real-time priority (chrt) they
        # would keep the CPU from the very threads that must run to stop.
        self.spin_until = time.monotonic() + (_SPIN_S if os.sched_getscheduler(0) == os.SCHED_OTHER else 0)
        self.pause = _FIRST_SLEEP_S
        if signal.getsignal(signal.SIGCHLD) in (signal.SIG_DFL, None):
            before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            self.notified = signal.SIGCHLD not in before  # blocked already: the caller's, not ours to take
        return self

    def wait(self, most: float) -> None:
        if self.notified:
            signal.sigtimedwait({signal.SIGCHLD}, min(most, _MAX_SLEEP_S))
        elif time.monotonic() < self.spin_until:
            os.sched_yield()
        else:
            time.sleep(min(most, self.pause))
            self.pause = min(self.pause * 2, _MAX_SLEEP_S)

    def __exit__(self, *_exc: object) -> None:
        if self.notified:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


class ThreadGroup:
    """The seized threads of one process.

    ``seized``: threads attached; ``stopped``: those held in a ptrace stop;
    ``pending``: the signal each held thread is to get when it goes on;
    ``interrupted``: threads whose interrupt stop has not been consumed yet
    (traced by us, seized or not); ``zombies``: listed threads that have
    exited (a main thread after ``pthread_exit``), never seized nor waited for.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seized: set[int] = set()
        self.stopped: set[int] = set()
        self.pending: dict[int, int] = {}
        self.interrupted: set[int] = {tid for (traced_pid, tid), tracer in _STILL_TRACED.items()
                                      if traced_pid == pid and tracer == threading.get_native_id()}
        self.zombies: set[int] = set()
        self.first_seize: float | None = None  # time.monotonic() of this group's first seize

    @property
    def late(self) -> set[int]:
        """Threads interrupted whose stop has not come: they would not stop (yet)."""
        return self.interrupted - self.stopped

    # -- seizing ---------------------------------------------------------------------

    def seize_all(self) -> None:
        self._look()
        for _round in range(100):
            new = [tid for tid in thread_ids(self.pid) if tid not in self.seized and tid not in self.zombies]
            if not new:
                return
            for tid in new:
                if tid in self.interrupted:  # still traced since an earlier give-up: ours already
                    self.seized.add(tid)
                    continue
                self._seize(tid)
        raise ProcessError(f"process {self.pid} keeps starting threads; cannot seize them all")

    def _seize(self, tid: int) -> bool:
        """Seize one thread; False if it has ended or is an exited (zombie) main thread."""
        scheduling.stop_deferring()  # whatever holds a thread of the target follows a seize: never deferring
        if self.first_seize is None:
            self.first_seize = time.monotonic()
        try:
            ptrace.seize(tid)
        except ptrace.PtraceError as exc:
            if exc.errno == errno.ESRCH:
                return False  # the thread ended meanwhile
            if exc.errno == errno.EPERM:
                if _STILL_TRACED.get((self.pid, tid)) == threading.get_native_id():
                    self.interrupted.add(tid)  # ours already: an earlier group gave up on it
                    self.seized.add(tid)
                    return True
                state = thread_state(self.pid, tid)
                if state is None:
                    return False
                if state in ("Z", "X"):  # exited; a main thread stays so while the others run
                    self.zombies.add(tid)
                    return False
                raise TraceDenied(
                    f"ptrace of process {self.pid} denied: run as its owner with "
                    "kernel.yama.ptrace_scope=0, or as root") from exc
            raise
        self.seized.add(tid)
        return True

    def live_thread(self) -> int:
        """A seized, live thread to inject system calls on: the main thread if it is alive, else the lowest other.

        Seizes it if needed (after ``detach_all`` nothing is).  A thread that
        would not stop last time (``late``) is not chosen while another can be.
        """
        self._look()
        late = self.late
        if self.pid not in self.seized and self.pid not in self.zombies and self.pid not in late:
            self._seize(self.pid)
        if self.pid in self.seized and self.pid not in late:
            return self.pid
        candidates = sorted(self.seized - late - self.zombies)
        if candidates:
            return candidates[0]
        for tid in thread_ids(self.pid):
            if tid not in self.zombies and tid not in late and (tid in self.seized or self._seize(tid)):
                return tid
        if self.seized:
            return min(self.seized)
        raise ProcessError(f"process {self.pid} has no live thread to work on")

    # -- stopping --------------------------------------------------------------------

    def forget(self, tid: int) -> None:
        """*tid* is not ours any more (gone, or detached)."""
        self.seized.discard(tid)
        self.stopped.discard(tid)
        self.pending.pop(tid, None)
        self.interrupted.discard(tid)
        _STILL_TRACED.pop((self.pid, tid), None)

    def _interrupt(self, tids: list[int]) -> None:
        for tid in tids:
            try:
                ptrace.interrupt(tid)
            except ptrace.PtraceError as exc:
                if exc.errno != errno.ESRCH:
                    raise
                continue  # gone, or exited: the wait says which
            self.interrupted.add(tid)

    def _poll(self, tid: int) -> str | None:
        """One look at a thread without waiting: "stopped", "gone" or None (still running)."""
        while True:
            try:
                got, status = os.waitpid(tid, _NO_WAIT)
            except ChildProcessError:
                self.forget(tid)
                return "gone"
            except InterruptedError:
                continue
            if got == 0:
                return None
            if status >> 16 == ptrace.PTRACE_EVENT_STOP:  # the interrupt stop: by far the most common
                self.interrupted.discard(tid)
                self.stopped.add(tid)
                return "stopped"
            kind, signo = _decode(status)
            if kind == "syscall":  # cannot happen without PTRACE_SYSCALL, but never leave one running
                ptrace.cont(tid)
                continue
            if kind == "exited":
                self.forget(tid)
                return "gone"
            if kind == "signal":
                # A signal-delivery stop: remembered for the thread's resume.  An interrupt sent
                # while the thread sat in it is still to come, so ``interrupted`` keeps it.
                self.pending[tid] = signo
            else:
                self.interrupted.discard(tid)  # the interrupt stop, consumed
            self.stopped.add(tid)
            return "stopped"

    def _zombie_leader(self, tid: int) -> bool:
        """Has the (seized) main thread exited?  Its exit is never reported while other threads run."""
        if tid != self.pid or thread_state(self.pid, tid) not in ("Z", "X"):
            return False
        self.forget(tid)
        self.zombies.add(tid)
        return True

    def drop_exited_leader(self, late: list[int]) -> bool:
        """Leave out a main thread among *late* that has exited (as ``stop_all`` does); True if one had."""
        return any([self._zombie_leader(tid) for tid in late])

    def _wait_stopped(self, tids: list[int], deadline: float) -> list[int]:
        """Look at interrupted *tids* until each has stopped or gone, or *deadline*; return the late ones.

        The first look does not sleep.  Then, between looks, this thread
        sleeps until a tracee changes state (``_StopNotices``) or a short
        while has passed.
        """
        waiting = [tid for tid in tids if self._poll(tid) is None]
        if not waiting:
            return []
        waiting = [tid for tid in waiting if not self._zombie_leader(tid)]
        with _StopNotices() as notices:
            while True:
                waiting = [tid for tid in waiting if self._poll(tid) is None]
                if not waiting:
                    return []
                now = time.monotonic()
                if now >= deadline:
                    return [tid for tid in waiting if not self._zombie_leader(tid)]
                notices.wait(deadline - now)

    def _look(self, keep: frozenset[int] = frozenset()) -> None:
        """Consume stops nobody waits for: a late interrupt stop arriving after we gave up, a signal.

        Such a thread goes on at once (detached if the group was); one of
        *keep* stays stopped.
        """
        for tid in sorted((self.seized | self.interrupted) - self.stopped):
            if self._poll(tid) != "stopped" or tid in keep:
                continue
            try:
                if tid in self.seized:
                    self.resume(tid)
                else:
                    self._detach(tid)
            except ptrace.PtraceError as exc:
                if exc.errno != errno.ESRCH:
                    raise
                self.forget(tid)

    def wont_stop(self, late: list[int], budget: float) -> ThreadWontStop:
        """The exception for *late* threads, read from /proc now, at the deadline, while they are late."""
        tid = late[0]
        reason = why_not_stopped(self.pid, tid, budget)
        if len(late) > 1:
            reason += f"; threads {', '.join(map(str, late[1:]))} did not stop either"
        return ThreadWontStop(tid, reason, thread_state(self.pid, tid))

    def stop(self, tid: int, budget: float | None = None) -> None:
        """Stop one thread, waiting at most *budget* s (default STOP_BUDGET_S).

        Raises ThreadWontStop if it does not stop in time (it stays seized;
        its stop is consumed later).  The thread may be left in a
        signal-delivery stop (``pending``): fine to resume as it is, not to
        run other code on (``stop_for_calls``).
        """
        budget = STOP_BUDGET_S if budget is None else budget
        self._look(keep=frozenset((tid,)))
        if tid in self.stopped:
            return
        ptrace.interrupt(tid)
        self.interrupted.add(tid)
        if self._wait_stopped([tid], time.monotonic() + budget):
            raise self.wont_stop([tid], budget)

    def stop_for_calls(self, tid: int, budget: float | None = None) -> None:
        """Stop one thread to run calls on it: in an interrupt stop, never holding a dequeued signal.

        A thread stopped as it dequeued a signal (a signal-delivery stop) must
        get it first: resumed with other registers the signal would be
        dropped, and passing it again from a later stop is ignored by the
        kernel.  So it is delivered now, as the kernel was about to (handler
        frame, EINTR or restart of an interrupted call), and the thread is
        stopped again by an interrupt.
        """
        self.stop(tid, budget)
        while tid in self.pending:
            signo = self.pending.pop(tid)
            ptrace.interrupt(tid)
            ptrace.cont(tid, signo)
            kind, signo = ptrace.wait_stop(tid)
            if kind == "signal":
                self.pending[tid] = signo  # another one came: deliver it too
            elif kind == "exited":
                self.forget(tid)
                raise ProcessError(f"thread {tid} of process {self.pid} ended while being stopped")
        self.interrupted.discard(tid)

    def stop_all(self, budget: float | None = None) -> int:
        """Stop every thread, new ones included; return the perf_counter_ns when the first stop was asked.

        Threads are seized beforehand (``seize_all``); once all known threads
        are stopped the task list is read once more, since a thread may have
        started one in between (no stopped thread can start another).

        If a thread has not stopped *budget* s (default STOP_BUDGET_S) after
        the first stop was asked, every thread that did is let go again (its
        held signal delivered, as ``resume_all``) and ThreadWontStop is
        raised; the late thread stays seized and its stop is consumed on the
        next look.  Calling ``stop_all`` again later is the retry.
        """
        budget = STOP_BUDGET_S if budget is None else budget
        started = time.perf_counter_ns()
        deadline = time.monotonic() + budget
        while True:
            running = sorted(self.seized - self.stopped)
            if not running:
                before = set(self.seized)
                self.seize_all()
                if self.seized <= before:
                    return started
                continue
            self._interrupt(running)
            late = self._wait_stopped(running, deadline)
            if late:
                refused = self.wont_stop(late, budget)  # tens of µs, after the budget: the state at the deadline
                self.resume_all()
                raise refused

    # -- letting go ------------------------------------------------------------------

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
        self._look()

    def _detach(self, tid: int) -> None:
        try:
            ptrace.detach(tid, self.pending.pop(tid, 0))
        finally:
            self.forget(tid)

    def detach_all(self, budget: float | None = None) -> None:
        """Let every thread go, delivering held signals; safe to call more than once.

        A stopped thread is detached directly (which resumes it): detaching
        right after the commit ends the pause without stopping anyone again.
        A running one must be stopped to be detached; one that does not stop
        within *budget* stays traced (``late``) until its stop comes, then is
        detached on the next look, or let go by the kernel when this process
        exits.  Never raises for a thread that is gone or will not stop.
        """
        budget = STOP_BUDGET_S if budget is None else budget
        for tid in sorted(self.stopped):
            try:
                self._detach(tid)
            except ptrace.PtraceError:
                pass
        running = sorted(self.seized | self.interrupted)
        self.seized.clear()  # from here on the group is let go: a stop that comes is detached
        for tid in running:
            if tid not in self.interrupted:
                try:
                    ptrace.interrupt(tid)  # detaching requires a stopped tracee
                except ptrace.PtraceError:
                    continue  # gone: the wait reaps it
                self.interrupted.add(tid)
        try:
            self._wait_stopped(running, time.monotonic() + budget)
        except ptrace.PtraceError:
            pass
        for tid in sorted(self.stopped):
            try:
                self._detach(tid)
            except ptrace.PtraceError:
                pass
        self.stopped.clear()
        for tid in self.interrupted:
            _STILL_TRACED[(self.pid, tid)] = threading.get_native_id()
