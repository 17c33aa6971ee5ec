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
Python looks only at those.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

from buildhook.apply import ptrace
from buildhook.apply.process import Mapping

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


def stack_ranges(pid: int, registers: dict[int, ptrace.Registers], maps: list[Mapping]) -> dict[int, tuple[int, int]]:
    """For each thread, (start, size) of the live part of its stack."""
    result = {}
    for tid, regs in registers.items():
        start = max(regs.rsp - RED_ZONE, 0) & ~7
        mapping = next((m for m in maps if m.start <= regs.rsp < m.end), None)
        if mapping is not None:
            result[tid] = (max(start, mapping.start), mapping.end - max(start, mapping.start))
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


def busy_threads(pid: int, registers: dict[int, ptrace.Registers], maps: list[Mapping],
                 busy: list[BusyRange]) -> list[BusyThread]:
    """Every thread whose PC or live stack points into a busy range."""
    ranges = RangeSet(busy)
    found: list[BusyThread] = []
    stacks = stack_ranges(pid, registers, maps)
    tids = list(stacks)
    contents = ptrace.read_ranges(pid, [stacks[tid] for tid in tids])
    stack_of = dict(zip(tids, contents))
    for tid, regs in registers.items():
        hit = ranges.find(regs.rip)
        if hit is not None:
            found.append(BusyThread(tid, hit.label, "pc"))
            continue
        hit = scan_words(stack_of.get(tid, b""), ranges)
        if hit is not None:
            found.append(BusyThread(tid, hit.label, "stack"))
    return found
