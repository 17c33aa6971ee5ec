"""Activeness safety: is any thread inside code that is about to change?

A function may be redirected only when no thread's program counter and no
return address on any thread's stack lies inside it (or inside its old
``.cold`` parts, or inside patch code being removed).  The scan is
conservative (any stack word that looks like such an address counts: a
false positive only costs a retry) and reads only the *live* part of each
stack, from the stack pointer to the end of its mapping, for all threads in
one ``process_vm_readv``.

The scan runs at C speed: words pointing into the same 4 GiB as the busy
ranges share their upper four bytes, so ``bytes.find`` locates candidates and
Python looks only at those.  A thread the scan flags is then unwound
precisely from ``.eh_frame`` (unwind.py): a stale word in a live frame is not
a return address.  When precise unwinding is not possible the conservative
answer stands.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

from buildhook.apply import ptrace
from buildhook.apply.process import Mapping, MappedObject
from buildhook.apply.unwind import R12, R13, R14, R15, RBP, RBX, RSP, EhFrame, ModuleFrames, UnwindError, \
    return_addresses

RED_ZONE = 128


@dataclass(frozen=True)
class BusyRange:
    """Code that must not be in use: [start, end) and what it is."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class BusyThread:
    """A thread found inside a busy range, and how."""

    tid: int
    label: str
    where: str  # "pc" or "stack"


class RangeSet:
    """Sorted, non-overlapping lookup of busy ranges."""

    def __init__(self, ranges: list[BusyRange]) -> None:
        self.ranges = sorted(ranges, key=lambda r: r.start)
        self.starts = [r.start for r in self.ranges]

    def find(self, address: int) -> BusyRange | None:
        position = bisect.bisect_right(self.starts, address) - 1
        if position >= 0 and address < self.ranges[position].end:
            return self.ranges[position]
        return None

    def high_words(self) -> set[int]:
        """The distinct upper 32 bits of every address in the ranges."""
        result: set[int] = set()
        for item in self.ranges:
            result.update(range(item.start >> 32, ((item.end - 1) >> 32) + 1))
        return result


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
    """For each thread, (start, size) of the live part of its stack; a thread whose
    stack pointer is in no known mapping is left out (the caller re-reads the maps)."""
    result = {}
    for tid, regs in registers.items():
        rsp = regs.rsp
        mapping = maps.find(rsp)
        if mapping is not None:
            start = max((rsp - RED_ZONE) & ~7, mapping.start)
            result[tid] = (start, mapping.end - start)
    return result


def scan_words(data: bytes, ranges: RangeSet) -> BusyRange | None:
    """The first busy range a stack word points into, if any."""
    for high in ranges.high_words():
        pattern = struct.pack("<I", high)
        position = data.find(pattern, 4)
        while position >= 0:
            if position % 8 == 4:
                hit = ranges.find(struct.unpack_from("<Q", data, position - 4)[0])
                if hit is not None:
                    return hit
            position = data.find(pattern, position + 1)
    return None


def unwind_tables(objects: list[MappedObject]) -> ModuleFrames:
    """The .eh_frame tables of every loaded module (built before the pause)."""
    import io

    from elftools.elf.elffile import ELFFile

    frames = ModuleFrames()
    for item in objects:
        table = None
        try:
            elf = ELFFile(io.BytesIO(item.file_bytes))
            sections = {section.name: (section.header.sh_addr, section.header.sh_offset, section.header.sh_size)
                        for section in elf.iter_sections() if section.name in (".eh_frame", ".eh_frame_hdr")}
            table = EhFrame(item.file_bytes, sections)
        except (UnwindError, Exception):  # noqa: BLE001 - a module without tables keeps the conservative check
            table = None
        for mapping in item.mappings:
            if mapping.executable:
                frames.add(mapping.start, mapping.end, item.bias, table)
    return frames


def _precisely_busy(frames: ModuleFrames, regs: ptrace.Registers, stack: bytes, stack_start: int,
                    ranges: RangeSet) -> BusyRange | None:
    registers = {RSP: regs.rsp, RBP: regs.rbp, RBX: regs.rbx, R12: regs.r12, R13: regs.r13, R14: regs.r14,
                 R15: regs.r15}
    for address in return_addresses(frames, regs.rip, registers, stack, stack_start):
        hit = ranges.find(address)
        if hit is not None:
            return hit
    return None


def busy_threads(pid: int, registers: dict[int, ptrace.Registers], stacks: dict[int, tuple[int, int]],
                 busy: RangeSet, frames: ModuleFrames | None = None) -> list[BusyThread]:
    """Every thread whose PC or live stack points into a busy range."""
    ranges = busy
    found: list[BusyThread] = []
    tids = list(stacks)
    contents = ptrace.read_ranges(pid, [stacks[tid] for tid in tids])
    stack_of = dict(zip(tids, contents))
    for tid, regs in registers.items():
        hit = ranges.find(regs.rip)
        if hit is not None:
            found.append(BusyThread(tid, hit.label, "pc"))
            continue
        hit = scan_words(stack_of.get(tid, b""), ranges)
        if hit is not None and frames is not None and tid in stacks:
            try:
                hit = _precisely_busy(frames, regs, stack_of[tid], stacks[tid][0], ranges)
            except UnwindError:
                pass  # keep the conservative answer
        if hit is not None:
            found.append(BusyThread(tid, hit.label, "stack"))
    return found
