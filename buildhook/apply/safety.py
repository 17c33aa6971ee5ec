"""Activeness safety: is any thread inside code that is about to change?

A function may be redirected only when no thread's program counter and no
return address on any stack lies inside it (or inside its old ``.cold``
parts, or inside patch code being removed).  The scan is conservative (any
word that looks like such an address counts: a false positive only costs a
retry) and a stack that cannot be located or read counts as busy, never as
idle.  Three kinds of stack are looked at:

1. Every thread's own: the *live* part, from the stack pointer to the end of
   its mapping, all threads in one ``process_vm_readv``.  A thread whose
   stack pointer is in no mapping, or whose stack cannot be read, is busy.
2. The stacks below signal handlers.  A handler on an alternate signal stack
   (``sigaltstack`` + ``SA_ONSTACK``) has the thread's stack pointer there,
   and the frames it interrupted on the normal stack, in another mapping.
   The kernel's ``struct rt_sigframe`` is recognised on a scanned stack by
   its return slot, which holds the signal restorer (glibc's
   ``__restore_rt``; any code ``mov $15,%rax; syscall`` in the mapped
   objects' text counts, found before the pause); the ucontext that follows
   gives the interrupted ``rip``, busy like a PC, and ``rsp``, whose stack is
   scanned as well, recursively (nested signals), up to
   ``MAX_SIGNAL_FRAMES`` frames a thread (more is busy).  A stale restorer
   word only adds a stack to scan.
3. User-level stacks.  A coroutine parked by ``swapcontext`` (or any green
   thread) keeps its frames and its saved context in ordinary memory that no
   thread's stack pointer leads to.  When a loaded object imports a
   stack-switching call (``swapcontext``, ``makecontext``, ``setcontext``,
   boost.context's ``jump_fcontext``…, read from ``.dynsym`` before the
   pause) and no thread is busy, all writable memory is scanned too, in the
   pause: anonymous memory, ``[heap]``, thread stacks, writable file
   mappings, shared memory (the map and ``/proc/PID/pagemap`` are read in the
   pause; private anonymous pages never touched are zeros and skipped).  A
   word inside a busy range is busy, except one equal to a range's first
   byte (a function pointer, or a context ``makecontext`` made but not yet
   started: both enter through the new jump).  There is no precise answer
   for memory of unknown layout, so a stale word (the unused part of a
   coroutine's stack, a finished context not cleared) also blocks, until it
   is overwritten or the applier's timeout refuses the patch.  More than
   ``MEMORY_SCAN_LIMIT`` bytes to read, or private anonymous memory that
   cannot be read, is busy.  Stack switching done by code of the process's
   own, with no such import, is not detected.
4. boost.context's saved contexts, told precisely (fcontext.py: the
   library's code checked and every return site of a context-saving call
   found before the pause).  When boost.context is the only stack
   switching, the pass over memory looks for words equal to a return site
   instead: each is the S+0x38 of a candidate context, unwound from the
   registers saved at S (scan_contexts).  One whose frames are busy, or
   that cannot be unwound, counts only if something can resume it (a
   thread's register or a word of memory holds S: a second pass); one in a
   thread's dead stack (below the stack pointer of a thread whose unwind
   reaches its own stack's bottom) is none.  Stale words then no longer
   block; more than ``MAX_CONTEXTS`` candidates is busy.

The scan runs at C speed: ``bytes.find`` looks for bytes 2-5 of the
addresses of every 64 KiB window the busy ranges touch, and Python looks
only at the (rare) candidates.  A thread the scan flags is then unwound
precisely from ``.eh_frame`` (unwind.py), through signal frames, from the
ucontext's registers: a stale word in a live frame is not a return address.
When precise unwinding is not possible the conservative answer stands.

Cost in the pause: one ``process_vm_readv`` for all threads' stacks, one
more per stack below a signal frame (none without signals).  With stack
switching, also a read of the map, one ``pread`` of ``pagemap`` per private
anonymous mapping (~0.1 ms per resident MiB) and reading (~0.35 ms/MiB) and
searching (~0.3 ms/MiB per busy 64 KiB window) every resident writable page,
measured on a 2-CPU VM: about 0.4 s for 512 MiB and 1 function.  After a
busy check that held the process T, the applier waits at least 10 T before
the next (applier._wait_for_a_change): the process runs at least 90% of the
time while it waits.
"""

from __future__ import annotations

import bisect
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from buildhook.apply import ptrace
from buildhook.apply.fcontext import RETURN_OFFSET, SAVED, Unsupported, find_saved_contexts
from buildhook.apply.process import (
    PAGE,
    MappedObject,
    Mapping,
    ProcessError,
    proc_dir,
    read_maps,
)
from buildhook.apply.unwind import (
    R12,
    R13,
    R14,
    R15,
    RBP,
    RBX,
    RESTORER_CODE,
    RSP,
    EhFrame,
    ModuleFrames,
    OutsideStack,
    UnwindError,
    walk,
)
from buildhook.elf.dynsym import dynamic_imports

RED_ZONE = 128
MAX_SIGNAL_FRAMES = 16
# Calls that switch to another user-level stack: importing one turns the memory scan on.
STACK_SWITCHING = frozenset({"swapcontext", "makecontext", "setcontext",
                             "jump_fcontext", "ontop_fcontext", "make_fcontext"})
# Libraries whose import of those is not taken as the process switching stacks: OpenSSL's libcrypto
# imports makecontext/setcontext for its ASYNC jobs (asynchronous crypto engines), so nearly every
# server would otherwise have all its memory scanned in every pause (memcached: a 42 ms pause instead
# of 1.4 ms, and a refusal for a heap word into a patch's read-only data).  Not seen: a replaced
# function parked inside an OpenSSL ASYNC job (docs/apply.md, Limits).
SWITCHING_NOT_COUNTED = ("libcrypto.so",)
MEMORY_SCAN_LIMIT = 512 << 20      # resident writable bytes the pause may read; more is busy
MAPPED_SCAN_LIMIT = 1 << 36        # writable address space whose pagemap the pause may read; more is busy
READ_BATCH = 64 << 20              # bytes per process_vm_readv
READ_PIECE = 8 << 20               # the largest single range of the memory scan (two a system call)
MAX_IOV = 1024                     # UIO_MAXIOV
MAX_PATTERNS = 64                  # windows searched one by one before coarser ones are used
NOT_SCANNED = ("[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]")
RESIDENT = re.compile(rb"[\x40-\xff]+")  # pagemap entries' top byte: bit 63 present, bit 62 swapped
# struct rt_sigframe from its return slot: pretcode, then ucontext's uc_flags, uc_link, uc_stack
# (24 bytes) and mcontext gregs r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags, cs/gs/fs/ss.
SIGNAL_GREGS = 8 + 8 + 8 + 24
GREGS = struct.Struct("<19Q")
GREG_DWARF = (8, 9, 10, 11, 12, 13, 14, 15, 5, 4, 6, 3, 1, 0, 2, 7)  # DWARF number of gregs[0..15]
USER_CODE_SEGMENTS = (0x33, 0x23)  # the cs the kernel saves for 64-bit and 32-bit user code
CONTEXT_READ = 16 << 10            # bytes of a parked coroutine's stack read first (more when its unwind needs)
MAX_CONTEXT_READ = 8 << 20
MAX_CONTEXTS = 4096                # candidate saved contexts the pause may unwind; more is busy


@dataclass(frozen=True)
class BusyRange:
    """Code that must not be in use: [start, end) and what it is."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class BusyThread:
    """A thread found inside a busy range, and how: "pc", "stack", "interrupted by a signal",
    "stack below a signal handler", why its stack could not be checked, or (*tid* the process's)
    "parked stack or saved context at ADDRESS" from the memory scan."""

    tid: int
    label: str
    where: str


class RangeSet:
    """Sorted, non-overlapping lookup of busy ranges."""

    def __init__(self, ranges: list[BusyRange]) -> None:
        self.ranges = sorted(ranges, key=lambda r: r.start)
        self.starts = [r.start for r in self.ranges]
        self.entries = frozenset(self.starts)
        self._patterns: tuple[int, list[re.Pattern[bytes]]] | None = None

    def find(self, address: int) -> BusyRange | None:
        position = bisect.bisect_right(self.starts, address) - 1
        if position >= 0 and address < self.ranges[position].end:
            return self.ranges[position]
        return None

    def patterns(self) -> tuple[int, list[re.Pattern[bytes]]]:
        """(byte offset in a word, needles): bytes offset..5 of every window of the ranges' addresses.

        64 KiB windows (needles of bytes 2-5) unless there are more than
        MAX_PATTERNS of them, then 16 MiB, then 4 GiB windows.  A literal
        regular expression searches twice as fast as a ``bytes.find`` loop
        (about 3 GB/s: the first byte, bits 16-23, is rare in memory).
        """
        if self._patterns is None:
            keys: set[int] = set()
            shift = 16
            for shift in (16, 24, 32):
                keys = set()
                for item in self.ranges:
                    keys.update(range(item.start >> shift, ((item.end - 1) >> shift) + 1))
                    if len(keys) > MAX_PATTERNS:
                        break
                if len(keys) <= MAX_PATTERNS:
                    break
            offset = shift // 8
            self._patterns = offset, [re.compile(re.escape(struct.pack("<Q", key << shift)[offset:6]))
                                      for key in sorted(keys)]
        return self._patterns


class MapIndex:
    """The process's mappings, searchable by address (built before the pause)."""

    def __init__(self, maps: list[Mapping]) -> None:
        self.maps = sorted(maps, key=lambda m: m.start)
        self.starts = [m.start for m in self.maps]

    def find(self, address: int) -> Mapping | None:
        position = bisect.bisect_right(self.starts, address) - 1
        if position >= 0 and address < self.maps[position].end:
            return self.maps[position]
        return None


def stack_ranges(registers: dict[int, ptrace.Registers], maps: MapIndex) -> dict[int, tuple[int, int]]:
    """For each thread, (start, size) of the live part of its stack; a thread whose stack pointer is in
    no known mapping is left out (the caller re-reads the maps; busy_threads counts it busy)."""
    result = {}
    for tid, regs in registers.items():
        rsp = regs.rsp
        mapping = maps.find(rsp)
        if mapping is not None:
            start = max((rsp - RED_ZONE) & ~7, mapping.start)
            result[tid] = (start, mapping.end - start)
    return result


def iter_words(data: bytes, ranges: RangeSet, exclude: frozenset[int] = frozenset()) \
        -> Iterator[tuple[int, BusyRange]]:
    """(offset, range) of every aligned word of *data* pointing into one of *ranges* and not in *exclude*,
    window by window (not in address order)."""
    offset, patterns = ranges.patterns()
    unpack, lookup, limit = struct.unpack_from, ranges.find, len(data) - 8
    for pattern in patterns:
        for match in pattern.finditer(data, offset):
            start = match.start() - offset
            if start % 8 == 0 and start <= limit:
                word = unpack("<Q", data, start)[0]
                if word not in exclude:
                    hit = lookup(word)
                    if hit is not None:
                        yield start, hit


def find_word(data: bytes, ranges: RangeSet, exclude: frozenset[int] = frozenset()) -> tuple[int, BusyRange] | None:
    """(offset, range) of an aligned word of *data* pointing into a busy range and not in *exclude*."""
    return next(iter_words(data, ranges, exclude), None)


def scan_words(data: bytes, ranges: RangeSet) -> BusyRange | None:
    """The first busy range a stack word points into, if any."""
    found = find_word(data, ranges)
    return found[1] if found is not None else None


def unwind_tables(objects: list[MappedObject]) -> ModuleFrames:
    """The .eh_frame tables of every loaded module, the signal restorers in their code, whether any
    imports a stack-switching call and, for boost.context, how its saved contexts are told (built before
    the pause)."""
    import io

    from elftools.elf.elffile import ELFFile

    frames = ModuleFrames()
    restorers: set[int] = set()
    switching: dict[str, set[str]] = {}  # path → the stack-switching calls it imports
    for item in objects:
        table = None
        try:
            table = EhFrame.of(ELFFile(io.BytesIO(item.file_bytes)), item.file_bytes)
        except (UnwindError, Exception):  # noqa: BLE001 - a module without tables keeps the conservative check
            table = None
        for mapping in item.mappings:
            if mapping.executable:
                frames.add(mapping.start, mapping.end, item.bias, table)
                code = item.file_bytes[mapping.offset:mapping.offset + mapping.size]
                position = code.find(RESTORER_CODE)
                while position >= 0:
                    restorers.add(mapping.start + position)
                    position = code.find(RESTORER_CODE, position + 1)
        if not any(name in os.path.basename(item.path) for name in SWITCHING_NOT_COUNTED):
            try:
                names = dynamic_imports(item.file_bytes) & STACK_SWITCHING
            except Exception:  # noqa: BLE001 - unreadable symbols: assume the worst, scan memory
                names = {"(unreadable .dynsym)"}
            if names:
                switching[item.path] = names
    if switching:
        path, names = next(iter(switching.items()))
        frames.switches_stacks = f"{path} imports {', '.join(sorted(names))}"
        try:
            frames.contexts = find_saved_contexts(objects, switching)
        except Unsupported as exc:
            frames.contexts_unknown = str(exc)
        except Exception as exc:  # noqa: BLE001 - an object that cannot be read: the conservative scan
            frames.contexts_unknown = f"its stack switching could not be read ({exc})"
    frames.restorers = frozenset(restorers)
    return frames


# -- reading memory in the pause ------------------------------------------------------


def _read_batches(pid: int, ranges: list[tuple[int, int]], batch_bytes: int) -> Iterator[list[bytes]]:
    """The contents of the ranges, a batch of at most *batch_bytes* (or one range) per system call.

    A range that cannot be read completely comes back short (a short read
    stops at the first bad range: those after it are read again one by one).
    """
    batch: list[tuple[int, int]] = []
    total = 0
    for item in ranges + [(0, -1)]:
        if batch and (item[1] < 0 or len(batch) >= MAX_IOV or total + item[1] > batch_bytes):
            try:
                contents = ptrace.read_ranges(pid, batch)
            except ptrace.PtraceError:
                contents = [b""] * len(batch)
            for index, ((address, size), data) in enumerate(zip(batch, contents)):
                if len(data) != size:
                    try:
                        [contents[index]] = ptrace.read_ranges(pid, [(address, size)])
                    except ptrace.PtraceError:
                        contents[index] = b""
            yield contents
            batch, total = [], 0
        if item[1] >= 0:
            batch.append(item)
            total += item[1]


def _read_all(pid: int, ranges: list[tuple[int, int]]) -> list[bytes]:
    """The contents of every (address, size) range, in as few system calls as possible."""
    return [data for batch in _read_batches(pid, ranges, READ_BATCH) for data in batch]


class _Piece(NamedTuple):
    """Bytes of a stack read in the pause, from *start* to the end of its mapping."""

    start: int
    data: bytes

    @property
    def end(self) -> int:
        return self.start + len(self.data)


class _Finding(NamedTuple):
    label: str
    where: str


class _StackReader:
    """Reads the stack an interrupted context ran on (the maps from before the pause, then fresh ones)."""

    def __init__(self, pid: int, maps: MapIndex | None) -> None:
        self.pid = pid
        self.indexes: list[MapIndex | None] = [maps, None]

    def piece(self, rsp: int) -> _Piece | _Finding:
        reason = _Finding("an unmapped stack", f"stack pointer {rsp:#x} below a signal frame in no mapping")
        for which in (0, 1):
            if which == 1 and self.indexes[1] is None:
                try:
                    self.indexes[1] = MapIndex(read_maps(self.pid))
                except ProcessError:
                    return reason
            index = self.indexes[which]
            mapping = index.find(rsp) if index is not None else None
            if mapping is None:
                continue
            start = max((rsp - RED_ZONE) & ~7, mapping.start)
            [data] = _read_all(self.pid, [(start, mapping.end - start)])
            if len(data) == mapping.end - start:
                return _Piece(start, data)
            reason = _Finding("an unreadable stack", f"stack at {rsp:#x} below a signal frame unreadable")
        return reason


def _signal_context(piece: _Piece, slot: int) -> tuple[int, dict[int, int]] | None | bool:
    """(rip, registers by DWARF number) the signal frame whose return slot is at *slot* interrupted;
    None if the frame is cut short, False if it is no kernel signal frame (a stale word)."""
    offset = slot - piece.start + SIGNAL_GREGS
    if offset < 0 or offset + GREGS.size > len(piece.data):
        return None
    g = GREGS.unpack_from(piece.data, offset)
    if g[18] & 0xFFFF not in USER_CODE_SEGMENTS:
        return False
    return g[16], dict(zip(GREG_DWARF, g))


def _signal_slots(piece: _Piece, restorers: frozenset[int]) -> list[int]:
    """Addresses of the aligned words of *piece* that hold a signal restorer's address."""
    slots = []
    for restorer in restorers:
        pattern = struct.pack("<Q", restorer)
        position = piece.data.find(pattern)
        while position >= 0:
            if position % 8 == 0:
                slots.append(piece.start + position)
            position = piece.data.find(pattern, position + 1)
    return sorted(slots)


def _conservative(pieces: list[_Piece], ranges: RangeSet, restorers: frozenset[int],
                  reader: _StackReader) -> _Finding | None:
    """Scan the thread's stack, and every stack below a signal frame found on it (appended to *pieces*)."""
    seen: set[int] = set()
    signal_frames = 0
    position = 0
    while position < len(pieces):
        piece = pieces[position]
        below = position > 0
        position += 1
        hit = scan_words(piece.data, ranges)
        if hit is not None:
            return _Finding(hit.label, "stack below a signal handler" if below else "stack")
        for slot in _signal_slots(piece, restorers):
            if slot in seen:
                continue
            seen.add(slot)
            context = _signal_context(piece, slot)
            if context is None:
                return _Finding("a signal frame cut short", f"signal frame at {slot:#x} at the end of its mapping")
            if context is False:
                continue
            signal_frames += 1
            if signal_frames > MAX_SIGNAL_FRAMES:
                return _Finding("nested signal frames", f"more than {MAX_SIGNAL_FRAMES} signal frames")
            rip, registers = context
            hit = ranges.find(rip)
            if hit is not None:
                return _Finding(hit.label, "interrupted by a signal")
            rsp = registers[RSP]
            if any(item.start <= rsp < item.end for item in pieces):
                continue  # a handler on the same stack: already scanned
            interrupted = reader.piece(rsp)
            if isinstance(interrupted, _Finding):
                return interrupted
            pieces.append(interrupted)
    return None


def _unwind_inputs(regs: ptrace.Registers) -> dict[int, int]:
    """What the unwinder starts from, by DWARF number: the stack pointer and the callee-saved registers."""
    return {RSP: regs.rsp, RBP: regs.rbp, RBX: regs.rbx, R12: regs.r12, R13: regs.r13, R14: regs.r14, R15: regs.r15}


def _precise(frames: ModuleFrames, regs: ptrace.Registers, pieces: list[_Piece], ranges: RangeSet,
             reader: _StackReader) -> _Finding | None:
    """The thread's return addresses, unwound through signal frames; raises UnwindError when lost."""
    rip = regs.rip
    registers = _unwind_inputs(regs)
    piece, where = pieces[0], "stack"
    for _frame in range(MAX_SIGNAL_FRAMES + 1):
        found, slot = walk(frames, rip, registers, piece.data, piece.start)
        for address in found:
            hit = ranges.find(address)
            if hit is not None:
                return _Finding(hit.label, where)
        if slot is None:
            return None
        context = _signal_context(piece, slot)
        if not context:
            raise UnwindError(f"no signal frame at {slot:#x}")
        rip, registers = context
        hit = ranges.find(rip)
        if hit is not None:
            return _Finding(hit.label, "interrupted by a signal")
        rsp = registers[RSP]
        following = next((item for item in pieces if item.start <= rsp < item.end), None)
        if following is None:
            read = reader.piece(rsp)
            if isinstance(read, _Finding):
                raise UnwindError(read.where)
            pieces.append(read)
            following = read
        piece, where = following, "stack below a signal handler"
    raise UnwindError("too many signal frames")


def clean_precisely(pid: int, frames: ModuleFrames, regs: ptrace.Registers, start: int, data: bytes,
                    ranges: RangeSet) -> bool:
    """Is a thread with these registers and this live stack clean only by the precise unwinder?

    True when the conservative scan finds a word in a busy range, the
    unwind of the stack returns into none, and no signal frame is involved
    (the answer then depends on these bytes and registers alone: a probe,
    applier._probe_threads).  False for a thread the scan finds clean (the
    native pause finds so too: nothing to keep), a busy one, or one it
    cannot tell.
    """
    if ranges.find(regs.rip) is not None or scan_words(data, ranges) is None:
        return False
    piece = _Piece(start, data)
    if _signal_slots(piece, frames.restorers) or frames.in_restorer(regs.rip):
        return False
    try:
        return _precise(frames, regs, [piece], ranges, _StackReader(pid, None)) is None
    except UnwindError:
        return False


def learn_frames(frames: ModuleFrames, regs: ptrace.Registers, start: int, data: bytes) -> None:
    """Unwind a thread's stack once, before the pause, for nothing but the frame rules it computes.

    ``EhFrame`` computes a PC's rule from the CIE and FDE the first time
    (tens of µs in Python) and keeps it; a thread the pause must unwind
    precisely (a running server thread, whose stack words hit a busy range)
    mostly sits in the same call chains as when it was probed, so its rules
    are then ready and the pause only reads them.
    """
    try:
        walk(frames, regs.rip, _unwind_inputs(regs), data, start)
    except UnwindError:
        pass  # lost somewhere: the rules up to there are learnt, the pause unwinds the rest itself


# -- user-level stacks: all writable memory ----------------------------------------------


def _scanned(mapping: Mapping) -> bool:
    if mapping.perms[:2] != "rw" or mapping.path in NOT_SCANNED:
        return False
    device = mapping.path.startswith("/dev/") and not mapping.path.startswith(("/dev/zero", "/dev/shm/"))
    return not device


def _private_anonymous(mapping: Mapping) -> bool:
    path = mapping.path
    return mapping.perms[3] == "p" and (path in ("", "[heap]", "[stack]") or path.startswith("[anon:"))


def _resident(pagemap: int | None, mapping: Mapping) -> list[tuple[int, int]]:
    """The page runs of a private anonymous mapping that are present or swapped (the rest is zeros)."""
    if pagemap is None:
        return [(mapping.start, mapping.end)]
    pages = mapping.size // PAGE
    try:
        entries = os.pread(pagemap, pages * 8, mapping.start // PAGE * 8)
    except OSError:
        entries = b""
    if len(entries) != pages * 8:
        return [(mapping.start, mapping.end)]
    return [(mapping.start + run.start() * PAGE, mapping.start + run.end() * PAGE)
            for run in RESIDENT.finditer(entries[7::8])]


def scan_memory(pid: int, ranges: RangeSet, why: str | None = None) -> tuple[str, str] | None:
    """(label, where) of a word in writable memory pointing into a busy range (not at its first byte);
    or of the reason the memory could not be scanned; None when nothing points there.  *why*: why the
    saved contexts are not told precisely, said in the finding."""
    found = find_pointer(pid, ranges, ranges.entries)
    if isinstance(found, str):
        return "unscanned memory", found
    if found is not None:
        because = f" ({why}, so every word counts)" if why else ""
        return found[0].label, f"parked stack or saved context at {found[1]:#x}{because}"
    return None


class _Unscannable(Exception):
    """Writable memory the pause cannot read completely (the answer is then busy)."""


def _writable_memory(pid: int, skip: tuple[tuple[int, int], ...], limit: int,
                     maps: list[Mapping] | None = None) -> Iterator[tuple[int, bytes]]:
    """(address, bytes) of every resident page run of writable memory, at most READ_PIECE at a time, read
    as they are scanned (what is held stays bounded); words inside *skip* ([start, end)) left out.  The
    mappings scanned are appended to *maps*.  A file mapping comes as far as it can be read; raises
    _Unscannable with the reason for more than *limit* resident bytes or unreadable anonymous memory."""
    try:
        scanned = [mapping for mapping in read_maps(pid) if _scanned(mapping)]
    except ProcessError:
        raise _Unscannable("the memory map cannot be read") from None
    if maps is not None:
        maps.extend(scanned)
    if sum(mapping.size for mapping in scanned if _private_anonymous(mapping)) > MAPPED_SCAN_LIMIT:
        raise _Unscannable(f"more than {MAPPED_SCAN_LIMIT >> 30} GiB of writable memory to scan")
    try:
        pagemap: int | None = os.open(f"{proc_dir(pid)}/pagemap", os.O_RDONLY)
    except OSError:
        pagemap = None
    try:
        todo: list[tuple[int, int, bool]] = []  # (start, end, private anonymous)
        total = 0
        for mapping in scanned:
            if _private_anonymous(mapping):
                runs = _resident(pagemap, mapping)
                todo.extend((start, end, True) for start, end in runs)
                total += sum(end - start for start, end in runs)
            else:
                todo.append((mapping.start, mapping.end, False))
                total += mapping.size
            if total > limit:
                raise _Unscannable(f"more than {limit >> 20} MiB of resident writable memory to scan")
    finally:
        if pagemap is not None:
            os.close(pagemap)
    pieces = [(address, min(end, address + READ_PIECE) - address, anonymous)
              for start, end, anonymous in _without(todo, skip) for address in range(start, end, READ_PIECE)]
    contents = (data for batch in _read_batches(pid, [(a, s) for a, s, _ in pieces], READ_PIECE * 2)
                for data in batch)
    for (address, size, anonymous), data in zip(pieces, contents):
        if len(data) != size and anonymous:
            raise _Unscannable(f"anonymous memory at {address:#x} unreadable")
        yield address, data


def find_pointer(pid: int, ranges: RangeSet, exclude: frozenset[int] = frozenset(),
                 skip: tuple[tuple[int, int], ...] = (), limit: int = MEMORY_SCAN_LIMIT) \
        -> tuple[BusyRange, int] | str | None:
    """(range, address of the word) of the first aligned word of writable memory pointing into one of
    *ranges* (a value in *exclude* does not count), words inside *skip* ([start, end)) left out; or why
    the memory cannot be scanned (more than *limit* resident bytes, say); None when nothing points there."""
    try:
        for address, data in _writable_memory(pid, skip, limit):
            found = find_word(data, ranges, exclude)
            if found is not None:
                offset, hit = found
                return hit, address + offset
    except _Unscannable as exc:
        return str(exc)
    return None


# -- boost.context's saved contexts, told precisely (fcontext.py) ---------------------------


def scan_contexts(pid: int, frames: ModuleFrames, ranges: RangeSet,
                  registers: dict[int, ptrace.Registers]) -> tuple[str, str] | None:
    """(label, where) of a parked boost.context context whose frames are inside a busy range, or of the
    reason memory could not be scanned; None when none is.

    One pass over writable memory finds every candidate context: a word
    equal to a return site is the S+0x38 of one (a single pattern, as the
    return sites are few and close together); those in a thread's dead
    stack are none (_dead_stacks).  Each candidate is unwound
    from its saved registers; one that returns into a busy range, or cannot
    be unwound, counts only if something can resume it: a word of memory or
    a register of a thread (*registers*: every stopped thread's) holding its
    address (a second pass).  A stale context (a finished coroutine's stack,
    the unused part of a live one) is held by nothing.
    """
    contexts = frames.contexts
    assert contexts is not None
    sites = RangeSet([BusyRange(site, site + 1, "a return site") for site in contexts.return_sites])
    maps: list[Mapping] = []
    candidates: set[int] = set()
    try:
        for address, data in _writable_memory(pid, (), MEMORY_SCAN_LIMIT, maps):
            candidates.update(address + offset - RETURN_OFFSET for offset, _site in iter_words(data, sites))
        index = MapIndex(maps)
        dead = _dead_stacks(pid, frames, index, registers)
        candidates = {start for start in candidates if not any(low <= start < high for low, high in dead)}
        if len(candidates) > MAX_CONTEXTS:
            return "unscanned memory", f"more than {MAX_CONTEXTS} saved contexts to unwind"
        blocking = {start: finding for start, finding in
                    ((start, _parked_context(pid, frames, ranges, index, start)) for start in sorted(candidates))
                    if finding is not None}
        if not blocking:
            return None
        held = _held(pid, frozenset(blocking), registers)
    except _Unscannable as exc:
        return "unscanned memory", str(exc)
    return next((blocking[start] for start in sorted(blocking) if start in held), None)


def _dead_stacks(pid: int, frames: ModuleFrames, maps: MapIndex,
                 registers: dict[int, ptrace.Registers]) -> list[tuple[int, int]]:
    """[start, end) of each thread's dead stack: below its stack pointer (and red zone), when the thread
    runs on its own stack, so that nothing below can be live.

    The thread's own: its stack pointer is in the main thread's ``[stack]`` or in
    the mapping that holds its TLS block (glibc puts it at the top of a thread's
    stack), and its precise unwind reaches the bottom of that stack, not a
    coroutine's (a coroutine stack may be an array in a frame of this stack,
    with the thread's own parked context below it: live).  A context saved in
    dead stack was left by a call that has returned, its frames overwritten;
    not one of them needs the second pass of scan_contexts.
    """
    owned = [(regs, mapping) for regs in registers.values()
             if (mapping := maps.find(regs.rsp)) is not None
             and (mapping.path == "[stack]" or mapping.start <= regs.fs_base < mapping.end)]
    starts = [max((regs.rsp - RED_ZONE) & ~7, mapping.start) for regs, mapping in owned]
    contents = _read_all(pid, [(start, mapping.end - start) for start, (_regs, mapping) in zip(starts, owned)])
    dead = []
    for start, (regs, mapping), data in zip(starts, owned, contents):
        if len(data) != mapping.end - start:
            continue
        try:
            _found, slot = walk(frames, regs.rip, _unwind_inputs(regs), data, start, own_stack=True)
        except UnwindError:
            continue
        if slot is None:
            dead.append((mapping.start, start))
    return dead


def _parked_context(pid: int, frames: ModuleFrames, ranges: RangeSet, maps: MapIndex,
                    start: int) -> tuple[str, str] | None:
    """(label, where) when the context saved at *start* returns into a busy range or cannot be
    unwound; None when it is clean."""
    where = f"parked context at {start:#x}"
    mapping = maps.find(start + RETURN_OFFSET)
    available = (mapping.end if mapping is not None else start + CONTEXT_READ) - start
    size = min(CONTEXT_READ, available)
    while True:
        [data] = _read_all(pid, [(start, size)])
        if len(data) < SAVED.size:
            return "a parked context", f"{where} unreadable"
        saved = SAVED.unpack_from(data)
        hit = ranges.find(saved[7])
        if hit is not None:
            return hit.label, where
        registers = {RSP: start + SAVED.size, R12: saved[1], R13: saved[2], R14: saved[3], R15: saved[4],
                     RBX: saved[5], RBP: saved[6]}
        try:
            found, slot = walk(frames, saved[7] - 1, registers, data, start)
            break
        except OutsideStack as exc:
            if not start + size <= exc.address < start + min(available, MAX_CONTEXT_READ):
                return "a parked context", f"{where}, which cannot be unwound ({exc})"
            size = min(max(size * 8, exc.address + 8 - start), available, MAX_CONTEXT_READ)
        except UnwindError as exc:
            return "a parked context", f"{where}, which cannot be unwound ({exc})"
    for address in found:
        hit = ranges.find(address)
        if hit is not None:
            return hit.label, where
    if slot is not None:
        return "a parked context", f"{where}, below a signal frame"
    return None


def _held(pid: int, starts: frozenset[int], registers: dict[int, ptrace.Registers]) -> set[int]:
    """The contexts of *starts* whose address a thread's register or an aligned word of memory holds."""
    held = {value for regs in registers.values() for value in regs.values if value in starts}
    wanted = RangeSet([BusyRange(start, start + 1, "a saved context") for start in starts - held])
    if wanted.ranges:
        for _address, data in _writable_memory(pid, (), MEMORY_SCAN_LIMIT):
            held.update(hit.start for _offset, hit in iter_words(data, wanted))
    return held


def _without(todo: list[tuple[int, int, bool]], skip: tuple[tuple[int, int], ...]) -> list[tuple[int, int, bool]]:
    """The ranges of *todo* with every *skip* range cut out (a page-aligned range may hold part of one)."""
    for cut_start, cut_end in skip:
        cut_start, cut_end = cut_start & ~7, (cut_end + 7) & ~7  # the words scanned stay aligned
        kept = []
        for start, end, anonymous in todo:
            if cut_end <= start or end <= cut_start:
                kept.append((start, end, anonymous))
                continue
            if start < cut_start:
                kept.append((start, cut_start, anonymous))
            if cut_end < end:
                kept.append((cut_end, end, anonymous))
        todo = kept
    return todo


def busy_threads(pid: int, registers: dict[int, ptrace.Registers], stacks: dict[int, tuple[int, int]],
                 busy: RangeSet, frames: ModuleFrames | None = None, maps: MapIndex | None = None,
                 parked: bool = True, every_thread: dict[int, ptrace.Registers] | None = None) -> list[BusyThread]:
    """Every thread whose PC or live stacks point into a busy range (and, when the process switches
    user-level stacks, a word of its memory that does, reported as the main thread's).

    *maps* (the index stack_ranges used) locates the stacks below signal
    frames; missing, the map is read in the pause when needed.  *parked*
    false leaves the memory scan out: for code that never switches stacks
    in its middle (the allocator, the unwinder: the calls of frames.py),
    only the threads' own stacks can be inside it.  *every_thread*: the
    registers of all the stopped threads, when *registers* holds only those
    still to be looked at (a saved context one of them holds can be resumed).
    """
    ranges = busy
    found: list[BusyThread] = []
    reader = _StackReader(pid, maps)
    restorers = frames.restorers if frames is not None else frozenset()
    tids = [tid for tid in registers if tid in stacks]
    stack_of = dict(zip(tids, _read_all(pid, [stacks[tid] for tid in tids])))
    for tid, regs in registers.items():
        hit = ranges.find(regs.rip)
        if hit is not None:
            found.append(BusyThread(tid, hit.label, "pc"))
            continue
        if tid not in stacks:
            found.append(BusyThread(tid, "an unmapped stack", f"stack pointer {regs.rsp:#x} in no mapping"))
            continue
        start, size = stacks[tid]
        if len(stack_of[tid]) != size:
            found.append(BusyThread(tid, "an unreadable stack", f"stack at {start:#x} unreadable"))
            continue
        pieces = [_Piece(start, stack_of[tid])]
        finding = _conservative(pieces, ranges, restorers, reader)
        if finding is not None and frames is not None:
            try:
                finding = _precise(frames, regs, pieces, ranges, reader)
            except UnwindError:
                pass  # keep the conservative answer
        if finding is not None:
            found.append(BusyThread(tid, finding.label, finding.where))
    if not found and parked and frames is not None and frames.switches_stacks is not None:
        memory = (scan_contexts(pid, frames, ranges, every_thread if every_thread is not None else registers)
                  if frames.contexts is not None else scan_memory(pid, ranges, frames.contexts_unknown))
        if memory is not None:
            found.append(BusyThread(pid, *memory))
    return found
