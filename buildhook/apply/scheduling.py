"""How the applier shares the CPUs with the process it patches.

An apply is a Python process that works for a few hundred milliseconds of
CPU before its pause: reading the .po and the ELF and unwind tables of
every mapped object, probing threads.  On a machine the service keeps
busy, every millisecond of that is taken from the service's own threads,
and with the default slice a service thread woken by its client may wait
for a CPU-bound task until its slice ends (1.4 ms here), or the next tick
(4 ms at HZ=250).

``step_aside`` asks for the shortest slice the kernel grants a normal task
(``sched_setattr`` with ``sched_runtime``, Linux 6.12 and later: 0.1 ms):
the applier keeps its fair share of the CPUs, so an apply takes as long
as before, but it gives a woken service thread the CPU sooner (kvd's
clients under load, p99.9 during patching: 4.0–4.2 ms with it, 4.9–5.0
without; most of what is left comes with starting the applier's Python
process at all, bench/RESULTS.md).
Older kernels ignore the request.  No idle policy and no low weight once
the applier holds anything (``defer``): it holds single threads stopped
for a moment before the pause, and a thread held by an applier starved
of CPU would stall its clients far longer.

``precedence`` is the other direction: SCHED_FIFO while every thread of
the target is stopped (``precedence`` says why), then the policy
before; the slice asked for survives the round trip.  pause.c does the
same in C.  When ``no_cpu_to_spare``, the applier holds it from before
its first interrupt to its last detach: on a busy machine, a thread of
the applier that gives up its CPU between two interrupts waits for it
with the threads interrupted so far stopped (kvd under load: the
interrupts took 0.6 ms of a 1.7 ms pause, 30 µs with real-time
priority), and so does one that gives it up between the native check
and the precise look in Python.  With a CPU to spare it waits until every
thread has stopped: woken at that priority by each stop, the applier
would take the CPU the next thread needs to reach its own.

``defer`` is the third part.  Until the applier holds anything of the
target, its work (its imports, the .po, the ELF files and the unwind
tables of every loaded object: all but a few ms of its CPU) is wanted by
nobody soon, so it runs at the lowest weight there is (SCHED_IDLE,
weight 3 against nice 0's 1024): on a machine the service keeps busy it
then takes a CPU when the service leaves one, and the service's threads
are not queued behind it (kvd under load, bench/RESULTS.md: the clients'
p99.9 during patching 0.4–0.8 ms above without so, 0.8–1.2 at nice 19,
the weight it first deferred at, and 3.4 ms at full weight).  Its weight
comes back the moment it is to hold a thread (``ThreadGroup`` calls
``stop_deferring`` before every seize): it never holds a thread of the
target stopped at the lowest weight.  Nor does it wait without end on a
machine with no CPU to spare: after ``DEFER_BUDGET_S`` its weight comes
back anyway.  Under kvd's saturating load a deferring apply or revert
takes 1.2–2.6 s (median), a few up to 22 s; with a budget of 5 s, one in
ten ran out of it and did the rest at full weight, and the clients'
p99.9 was 1.2–1.3 ms above without instead of 0.9 (at nice 19).  (The
budget's timer needs the interpreter's lock, which the deferring thread
holds while it runs: on such a machine it ends the deferral up to a few
hundred ms late.)  It defers only when it can come back (a normal task
at nice 0 with the right to be one again from SCHED_IDLE: root,
CAP_SYS_NICE, or an RLIMIT_NICE that allows nice 0, as sched(7) says); a
chrt policy or a negative nice is left as it is, and is the way to apply
at full weight on a busy machine (``nice -n -1 buildhook apply ...``).
Only the interpreter's own start comes before any of this
(scripts/buildhook defers on its first lines); ``nice -n 19 buildhook
apply ...`` makes that gentle too: the applier keeps an operator's
positive nice, with no budget, until its first seize, and holds the
target at nice 0.  ``--timeout`` counts from the first seize
(applier.py), not through the deferring.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import threading
import time
from collections.abc import Iterator

SYS_SCHED_SETATTR = 314  # x86-64
SYS_SCHED_GETATTR = 315
SCHED_OTHER, SCHED_FIFO = 0, 1
SHORT_SLICE_NS = 100_000  # the kernel's least (it clamps to 0.1–100 ms)
DEFER_POLICY = os.SCHED_IDLE  # the lowest weight there is (3 against nice 0's 1024, nice 19's 15)
DEFER_BUDGET_S = 30.0  # the longest the applier defers before it has its normal weight back
CAP_SYS_NICE = 23


class _Attr(ctypes.Structure):
    """struct sched_attr, as far as SCHED_ATTR_SIZE_VER0 (48 bytes): all that is set here."""

    _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32), ("flags", ctypes.c_uint64),
                ("nice", ctypes.c_int32), ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)


def _get() -> _Attr | None:
    attr = _Attr()
    if _libc.syscall(SYS_SCHED_GETATTR, 0, ctypes.byref(attr), ctypes.sizeof(attr), 0) != 0:
        return None
    return attr


def _set(attr: _Attr) -> bool:
    attr.size = ctypes.sizeof(attr)
    return _libc.syscall(SYS_SCHED_SETATTR, 0, ctypes.byref(attr), 0) == 0


def step_aside() -> None:
    """What the applier's command asks first, before its imports: the shortest slice, and the lowest
    weight until it holds the target (``defer``)."""
    short_slice()
    defer()


def short_slice() -> bool:
    """The shortest slice for this thread, if it runs as a normal task (an operator's chrt stays as
    it is); True if the kernel took it.  Threads started later inherit it."""
    attr = _get()
    if attr is None or attr.policy != SCHED_OTHER:
        return False
    attr.runtime = SHORT_SLICE_NS
    return _set(attr)


class _Deferral:
    """This thread deferring since ``started``: at SCHED_IDLE (with a budget), or at an operator's nice
    above 0 (without); ``end`` makes it a normal task at nice 0.  With a budget, a timer thread ends
    it after that long unless ``end`` came first."""

    def __init__(self, budget: float | None) -> None:
        self.tid = threading.get_native_id()
        self.started = time.monotonic()
        self.ended: float | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._timer: threading.Thread | None = None
        if budget is None:
            return
        self._timer = threading.Thread(target=self._wait, args=(budget,), name="buildhook-defer", daemon=True)
        # The timer takes no signal (it inherits this mask): a SIGCHLD it took would be lost to
        # threads.py's sigtimedwait, an operator's ^C would not reach the main thread's handler.
        before = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._timer.start()  # before the policy is set: the timer wakes as a normal task
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    def _wait(self, budget: float) -> None:
        if not self._done.wait(budget):
            self.end()

    def end(self) -> None:
        """A normal task at nice 0 again, the deferring thread (once; the slice it asked for stays);
        the timer stopped and joined when called by another thread than it."""
        with self._lock:
            if self.ended is None:
                with contextlib.suppress(OSError):  # SCHED_OTHER already, after an operator's nice: no change
                    os.sched_setscheduler(self.tid, os.SCHED_OTHER, os.sched_param(0))
                    os.setpriority(os.PRIO_PROCESS, self.tid, 0)
                self.ended = time.monotonic()
        self._done.set()
        if self._timer is not None and threading.current_thread() is not self._timer:
            self._timer.join(1.0)


_deferral: _Deferral | None = None
_deferred_s = 0.0


def defer(budget: float = DEFER_BUDGET_S) -> bool:
    """This thread at the lowest weight (SCHED_IDLE) until ``stop_deferring`` or *budget* seconds, if
    it runs as a normal task at nice 0 and may come back to it; True if it does.  Started at a nice
    above 0 (an operator's ``nice``), it keeps that nice until ``stop_deferring``, then holds the
    target at nice 0 like any other applier (when it may)."""
    global _deferral
    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0)  # this thread's (Linux)
        if _deferral is not None or os.sched_getscheduler(0) != os.SCHED_OTHER or nice < 0 \
                or not _may_raise_nice_to(0):
            return False
        if nice > 0:
            _deferral = _Deferral(None)
            return True
        deferral = _Deferral(budget)
        os.sched_setscheduler(0, DEFER_POLICY, os.sched_param(0))  # this thread's (Linux)
    except OSError:
        return False
    _deferral = deferral
    return True


def stop_deferring() -> None:
    """The normal weight back, now: called before the applier holds a thread of the target."""
    global _deferral, _deferred_s
    deferral, _deferral = _deferral, None
    if deferral is not None:
        deferral.end()
        assert deferral.ended is not None
        _deferred_s = deferral.ended - deferral.started


def deferred_seconds() -> float:
    """How long this process deferred (at the lowest weight), once it has stopped; 0 if it never did."""
    return _deferred_s


def _may_raise_nice_to(nice: int) -> bool:
    """Could this thread set its nice back to *nice* after lowering it?  With CAP_SYS_NICE, or when
    RLIMIT_NICE allows that value (its limit *r* allows nice values down to 20 - r)."""
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"CapEff:"):
                    if int(line.split()[1], 16) >> CAP_SYS_NICE & 1:
                        return True
                    break
        soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
    except (OSError, ValueError, IndexError):
        return False
    return soft == resource.RLIM_INFINITY or 20 - soft <= nice


@contextlib.contextmanager
def precedence() -> Iterator[None]:
    """SCHED_FIFO 1 for this thread inside, then its policy before (the slice it asked for stays); a
    thread at real-time priority already, or without the right to (not root, no RLIMIT_RTPRIO), runs
    as it is.

    For the applier's thread while it holds every thread of the target.  The pause is whatever the
    applier takes between the first interrupt and the last detach; on a loaded machine a thread at
    normal priority waits for a CPU at every step of the check, with the whole target stopped
    meanwhile (kvd under load, bench/RESULTS.md: the median pause more than halved).  On a machine
    with a CPU to spare only once every thread has stopped: the target's threads are then kept from
    nothing, whereas while they are still on their way to the stop, an applier woken at real-time
    priority by each one takes the CPU another needs (the pause of an idle kvd grew by a quarter so).
    """
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        if before[0] in (os.SCHED_FIFO, os.SCHED_RR):
            yield
            return
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, before[0], before[1])


def others_running() -> int | None:
    """How many other tasks are running or ready to, right now (/proc/loadavg's count of runnable
    tasks, this one included), or None when that cannot be read."""
    try:
        with open("/proc/loadavg", "rb") as handle:
            return int(handle.read().split()[3].split(b"/")[0]) - 1
    except (OSError, ValueError, IndexError):
        return None


def no_cpu_to_spare(others: int | None) -> bool:
    """At least as many other tasks running as this thread may use CPUs?  Then a thread of the applier
    that gives up its CPU between two interrupts may wait a whole slice for it, with the threads
    interrupted so far stopped."""
    return others is not None and others >= len(os.sched_getaffinity(0))


def nobody_else_running(others: int | None) -> bool:
    """No other task running at all: nothing would take this thread's CPU in the pause, and taking
    real-time priority once every thread has stopped would be a system call (~9 µs here) for nothing."""
    return others == 0
