"""The pause as one native call (pause.c), through ctypes; None when the library is not there.

pause.c is built with the package (setup.py: an optional extension, so a
machine without a compiler still installs, and applies through the Python
pause) and carried by the zipapp.  It has no Python API: ctypes loads it
into any python3, from the package folder or, in a zipapp, from a memfd.
``BUILDHOOK_NATIVE_PAUSE=0`` turns it off (the Python pause, as before).

The library stops, checks and commits; everything it decides on is
prepared here before the pause, and everything it did to the threads is
written back into the ThreadGroup, which stays the one account of what is
stopped, what signal each thread holds and which interrupts are pending.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import os
from collections.abc import Iterator
from dataclasses import dataclass

from buildhook.apply import ptrace
from buildhook.apply.threads import ThreadGroup

ABI = 5
LIBRARY = "libbuildhook-pause.so.1"  # setup.py builds it under this name
RUNNING, STOPPED, GONE = 0, 1, 2
UNCHECKED, CLEAN, PROBED, BUSY_PC, STACK_HIT, SIGNAL_FRAME, UNMAPPED, UNREADABLE = range(8)
COMMITTED, HELD, LATE, ERROR = range(4)
MARKS = 4  # pause.c's BH_MARKS: interrupted, stopped, checked, written
# Stack bytes set aside per thread beyond its probe's: a live stack is a few KiB (kvd's threads: 4.6);
# more than the buffer holds is read into one the pause allocates (correct, only a few page faults slower).
STACK_RESERVE = 16 * 1024
NREGS = len(ptrace.REGISTER_NAMES)


class _Thread(ctypes.Structure):
    _fields_ = [("tid", ctypes.c_int32), ("state", ctypes.c_int32), ("signo", ctypes.c_int32),
                ("interrupted", ctypes.c_int32), ("verdict", ctypes.c_int32), ("range", ctypes.c_int32),
                ("hit_address", ctypes.c_uint64), ("regs", ctypes.c_uint64 * NREGS),
                ("stack_start", ctypes.c_uint64), ("stack_size", ctypes.c_uint64),
                ("probe", ctypes.c_char_p), ("probe_start", ctypes.c_uint64), ("probe_size", ctypes.c_uint64),
                ("probe_regs", ctypes.c_uint64 * NREGS), ("probe_skip_start", ctypes.c_uint64),
                ("probe_skip_size", ctypes.c_uint64)]


class _Pause(ctypes.Structure):
    _fields_ = [("abi", ctypes.c_int32), ("pid", ctypes.c_int32), ("memory_pid", ctypes.c_int32),
                ("mem_fd", ctypes.c_int32), ("nthreads", ctypes.c_int32), ("nknown", ctypes.c_int32),
                ("nranges", ctypes.c_int32), ("nrestorers", ctypes.c_int32), ("nmaps", ctypes.c_int32),
                ("nwrites", ctypes.c_int32), ("use_sigchld", ctypes.c_int32), ("result", ctypes.c_int32),
                ("new_threads", ctypes.c_int32), ("error", ctypes.c_int32), ("failed_write", ctypes.c_int32),
                ("late", ctypes.c_int32), ("task_fd", ctypes.c_int32), ("precedence", ctypes.c_int32),
                ("budget_ns", ctypes.c_int64), ("started_ns", ctypes.c_int64),
                ("ended_ns", ctypes.c_int64), ("marks", ctypes.c_int64 * MARKS),
                ("stack_buffer", ctypes.c_void_p), ("stack_buffer_size", ctypes.c_uint64),
                ("threads", ctypes.POINTER(_Thread)),
                ("known", ctypes.POINTER(ctypes.c_int32)), ("ranges", ctypes.POINTER(ctypes.c_uint64)),
                ("restorers", ctypes.POINTER(ctypes.c_uint64)), ("maps", ctypes.POINTER(ctypes.c_uint64)),
                ("write_address", ctypes.POINTER(ctypes.c_uint64)), ("write_size", ctypes.POINTER(ctypes.c_uint64)),
                ("write_data", ctypes.c_char_p)]


_library: ctypes.CDLL | None | bool = False  # False: not looked for yet


def _candidates() -> Iterator:
    """The library beside this module (a file, or a zipapp member), then the installed distribution's:
    a source checkout imported ahead of its own regular install (``python -m pytest`` in the checkout,
    as CI runs it) has no build of its own, and the install's is the same file, checked by ABI.  A
    generator: the distributions (importlib.metadata, a fifth of the applier's imports) are looked
    at only when the library beside this module is not there or not usable."""
    found = []
    try:
        found += [item for item in importlib.resources.files("buildhook.apply").iterdir() if item.name == LIBRARY]
    except (OSError, ModuleNotFoundError):
        pass
    yield from found
    from importlib import metadata

    try:  # every distribution of that name: the checkout's own egg-info comes first, and has no build
        for distribution in metadata.distributions(name="buildhook"):
            installed = distribution.locate_file(f"buildhook/apply/{LIBRARY}")
            if os.path.isabs(installed) and os.path.isfile(installed) and not any(
                    os.path.samefile(item, installed) for item in found if isinstance(item, os.PathLike)):
                found.append(installed)
                yield installed
    except (TypeError, OSError):
        pass


def _load() -> ctypes.CDLL | None:
    """The first library found (_candidates) whose ABI is this module's, or None."""
    for member in _candidates():
        try:
            path = os.fspath(member)
            if not os.path.isfile(path):
                raise TypeError
        except TypeError:  # inside a zipapp: dlopen needs a file
            fd = os.memfd_create("buildhook-pause", 0)
            os.write(fd, member.read_bytes())
            path = f"/proc/self/fd/{fd}"
        try:
            library = ctypes.CDLL(path)
            if library.bh_abi() != ABI:
                continue
        except (OSError, AttributeError):
            continue
        for entry in (library.bh_pause, library.bh_commit):
            entry.argtypes = [ctypes.POINTER(_Pause)]
            entry.restype = ctypes.c_int
        return library
    return None


class SettingError(ValueError):
    """BUILDHOOK_NATIVE_PAUSE has a value that is no boolean; the message says which are."""


_ON, _OFF = ("1", "yes", "true", "on"), ("0", "no", "false", "off")  # as buildhook's other settings


def library() -> ctypes.CDLL | None:
    """The native pause, or None (not built, turned off by BUILDHOOK_NATIVE_PAUSE=0, or of another ABI).

    Raises SettingError for a value of BUILDHOOK_NATIVE_PAUSE that is no boolean: the applier asks
    before it touches the target, so a typo never silently picks a pause."""
    global _library
    value = os.environ.get("BUILDHOOK_NATIVE_PAUSE", "1").strip().lower()
    if value not in _ON + _OFF:
        raise SettingError(f"BUILDHOOK_NATIVE_PAUSE={os.environ['BUILDHOOK_NATIVE_PAUSE']!r} is not one of "
                           f"{'/'.join(_ON)} or {'/'.join(_OFF)}")
    if value in _OFF:
        return None
    if _library is False:
        _library = _load()
    return _library  # type: ignore[return-value]


@dataclass(frozen=True)
class Probe:
    """A thread found clean, precisely, with these registers and this live stack: while both stay
    the same the thread is clean (unwinding depends on nothing else).  *rseq* (address, size), when
    the thread registered one, is left out of the comparison: the kernel rewrites that area's CPU and
    concurrency ids whenever the thread returns to user space after it moved, and glibc keeps it in
    the thread descriptor at the top of a thread's stack mapping, inside the live stack as read (no
    frame is there, and its words are small numbers)."""

    registers: ptrace.Registers
    start: int
    data: bytes
    rseq: tuple[int, int] | None = None


class Scratch:
    """What every pause of one commit reuses, made before the first: the stack buffer, allocated and
    touched here (a fresh applier would otherwise take a page fault per page of stack inside the
    pause), and /proc/PID/task open (the pause lists it again without allocating).  A context
    manager: the folder is closed after the commit."""

    def __init__(self, pid: int, probes: dict[int, Probe], threads: int) -> None:
        size = sum(len(probe.data) for probe in probes.values()) + STACK_RESERVE * max(1, threads)
        self.stack_buffer = ctypes.create_string_buffer(size)  # zero-filled: every page touched
        try:
            self.task_fd = os.open(f"/proc/{pid}/task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self.task_fd = -1  # the pause reads the folder by its path (and learns the process is gone)

    def close(self) -> None:
        if self.task_fd >= 0:
            os.close(self.task_fd)
            self.task_fd = -1

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# The phases of each entry, in order, each with the mark that ends it (pause.c's BH_MARK_*; None: ended_ns).
PAUSE_PHASES = (("interrupt", 0), ("wait", 1), ("check", 2), ("write", 3), ("detach", None))
COMMIT_PHASES = (("write", 3), ("detach", None))


@dataclass
class Stopped:
    """What one native call found: the result, when the pause began (perf_counter ns) and ended,
    how long each phase reached took (µs, in order), and per stopped thread its registers, live
    stack and verdict."""

    result: int
    started_ns: int
    ended_ns: int
    phases: dict[str, float]
    new_threads: bool
    registers: dict[int, ptrace.Registers]
    stacks: dict[int, tuple[int, int]]
    verdicts: dict[int, int]
    late: list[int]
    error: int = 0
    failed_write: int = -1

    def unclear(self) -> list[int]:
        """Threads the library did not find clean: Python looks at them (precisely)."""
        return [tid for tid, verdict in self.verdicts.items() if verdict not in (CLEAN, PROBED)]


def _array(kind: type, values: list[int]) -> ctypes.Array:
    return (kind * max(1, len(values)))(*values)


def pause(group: ThreadGroup, memory: ptrace.ProcessMemory, memory_pid: int, ranges: list[tuple[int, int]],
          restorers: list[int], maps: list[tuple[int, int]], writes: list[tuple[int, bytes]] | None,
          probes: dict[int, Probe], budget: float, use_sigchld: bool, scratch: Scratch | None = None,
          precedence: bool = True) -> Stopped:
    """Stop every seized thread, check each, and (*writes* given, every thread clean) commit and detach.

    *ranges* and *maps* are sorted, disjoint [start, end) pairs.  The
    group's account is brought up to date whatever the result.
    """
    return _call("bh_pause", group, memory, memory_pid, ranges, restorers, maps, writes, probes, budget,
                 use_sigchld, scratch, precedence)


def commit(group: ThreadGroup, memory: ptrace.ProcessMemory, writes: list[tuple[int, bytes]]) -> Stopped:
    """Make the *writes* and detach every stopped thread of a world Python holds and found clean."""
    return _call("bh_commit", group, memory, group.pid, [], [], [], writes, {}, 0.0, False, None, False)


def _call(entry: str, group: ThreadGroup, memory: ptrace.ProcessMemory, memory_pid: int,
          ranges: list[tuple[int, int]], restorers: list[int], maps: list[tuple[int, int]],
          writes: list[tuple[int, bytes]] | None, probes: dict[int, Probe], budget: float,
          use_sigchld: bool, scratch: Scratch | None, precedence: bool) -> Stopped:
    native = library()
    assert native is not None
    tids = sorted(group.seized)
    threads = (_Thread * max(1, len(tids)))()
    for slot, tid in zip(threads, tids):
        slot.tid = tid
        slot.state = STOPPED if tid in group.stopped else RUNNING
        slot.signo = group.pending.get(tid, 0)
        slot.interrupted = 1 if tid in group.interrupted else 0
        probe = probes.get(tid)
        if probe is not None:
            # the array keeps the bytes alive (ctypes holds what a c_char_p field was given)
            slot.probe, slot.probe_start, slot.probe_size = probe.data, probe.start, len(probe.data)
            slot.probe_regs[:] = probe.registers.values
            if probe.rseq is not None:
                slot.probe_skip_start, slot.probe_skip_size = probe.rseq
    flat_ranges = [value for pair in ranges for value in pair]
    flat_maps = [value for pair in maps for value in pair]
    known = sorted(group.zombies)
    args = _Pause(abi=ABI, pid=group.pid, memory_pid=memory_pid, mem_fd=memory.fd, nthreads=len(tids),
                  nknown=len(known), nranges=len(ranges), nrestorers=len(restorers), nmaps=len(maps),
                  nwrites=-1 if writes is None else len(writes), use_sigchld=int(use_sigchld),
                  budget_ns=int(budget * 1e9), threads=threads, known=_array(ctypes.c_int32, known),
                  ranges=_array(ctypes.c_uint64, flat_ranges), restorers=_array(ctypes.c_uint64, restorers),
                  maps=_array(ctypes.c_uint64, flat_maps),
                  write_address=_array(ctypes.c_uint64, [address for address, _ in writes or []]),
                  write_size=_array(ctypes.c_uint64, [len(data) for _, data in writes or []]),
                  write_data=b"".join(data for _, data in writes or []),
                  task_fd=scratch.task_fd if scratch else -1, precedence=int(precedence),
                  stack_buffer=ctypes.cast(scratch.stack_buffer, ctypes.c_void_p) if scratch else None,
                  stack_buffer_size=len(scratch.stack_buffer) if scratch else 0)
    getattr(native, entry)(ctypes.byref(args))
    return _account(group, args, threads, tids, PAUSE_PHASES if entry == "bh_pause" else COMMIT_PHASES)


def _phases(args: _Pause, names: tuple[tuple[str, int | None], ...]) -> dict[str, float]:
    """µs per phase: from the start, or the end of the phase before, to its mark.  A phase whose mark
    was not reached is the one the call ended in (up to ended_ns), and the last; none if it took no time
    (pause.c ends a held call on its last mark)."""
    phases, since = {}, args.started_ns
    for name, mark in names:
        end = args.ended_ns if mark is None else args.marks[mark]
        if not end:
            if args.ended_ns > since:
                phases[name] = (args.ended_ns - since) / 1000
            break
        phases[name] = (end - since) / 1000
        since = end
    return phases


def _account(group: ThreadGroup, args: _Pause, threads: ctypes.Array, tids: list[int],
             phase_names: tuple[tuple[str, int | None], ...]) -> Stopped:
    """Write what the library did into *group*, and what it found into a Stopped."""
    registers, stacks, verdicts, late = {}, {}, {}, []
    for slot, tid in zip(threads, tids):
        if slot.state == GONE:  # ended, or detached by the commit
            group.forget(tid)
            continue
        if slot.interrupted:
            group.interrupted.add(tid)
        else:
            group.interrupted.discard(tid)
        if slot.state == STOPPED:
            group.stopped.add(tid)
            if slot.signo:
                group.pending[tid] = slot.signo
            if slot.verdict != UNCHECKED:
                registers[tid] = ptrace.Registers(list(slot.regs))
                verdicts[tid] = slot.verdict
                if slot.stack_size:
                    stacks[tid] = (slot.stack_start, slot.stack_size)
        else:
            late.append(tid)
    return Stopped(args.result, args.started_ns, args.ended_ns, _phases(args, phase_names), bool(args.new_threads),
                   registers, stacks, verdicts, late, args.error, args.failed_write)
