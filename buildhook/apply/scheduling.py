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
Older kernels ignore the request; nothing else changes (no nice value, no
idle policy: the applier also holds single threads stopped for a moment
before the pause, and a thread held by an applier starved of CPU would
stall its clients far longer).

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
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

SYS_SCHED_SETATTR = 314  # x86-64
SYS_SCHED_GETATTR = 315
SCHED_OTHER, SCHED_FIFO = 0, 1
SHORT_SLICE_NS = 100_000  # the kernel's least (it clamps to 0.1–100 ms)


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


def step_aside() -> bool:
    """The shortest slice for this thread, if it runs as a normal task (an operator's chrt or nice
    stays as it is); True if the kernel took it.  Threads started later inherit it."""
    attr = _get()
    if attr is None or attr.policy != SCHED_OTHER:
        return False
    attr.runtime = SHORT_SLICE_NS
    return _set(attr)


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
