"""Registering the patch's unwind tables with the target's unwinder (libgcc's ``__register_frame_info``).

C++ ``throw`` finds the frame description of every return address on the
stack through libgcc: first among the tables registered at run time, then
through ``dl_iterate_phdr`` in the loaded objects.  Patch code is in no
loaded object, so its ``.eh_frame`` (carried by the diff, see
buildhook/diff/ehframe.py) is registered, once per region, before the
commit makes the code reachable.  The ``struct object`` libgcc keeps lives
in the region's data part: ``__register_frame_info`` takes the storage from
the caller and allocates nothing.

The call is made by a *thunk* in the region's code, which calls libgcc and
then sets the region's "frames registered" byte (in its control page,
next to the commit flag).  So the byte says exactly whether the tables are
registered, even when the applier dies during the call (the thread goes on
through the thunk by itself): a region whose byte is set is never unmapped
before its tables are deregistered by the matching thunk, which clears the
byte.  The unwinder never reads memory that is gone.

The call takes libgcc's lock (its object list) and, when deregistering a
table that was searched, ``free`` (gcc 13's registry also ``malloc``); it
runs on a thread that is inside neither libgcc nor any loaded allocator
(glibc's, or a jemalloc or tcmalloc exporting ``malloc``; safety.py's stack
check), so it cannot wait on a lock its own thread holds.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from buildhook.apply.process import MappedObject
from buildhook.apply.safety import BusyRange, RangeSet
from buildhook.apply.symbols import SymbolError, SymbolResolver
from buildhook.elf.dynsym import dynamic_exports

REGISTER = "__register_frame_info"
DEREGISTER = "__deregister_frame_info"
THUNK_SIZE = 64
THUNKS_SIZE = 2 * THUNK_SIZE    # register, deregister
OBJECT_SIZE = 128               # libgcc's struct object: 7 words in gcc 12 to 14
FLAG_OFFSET = 8                 # in the control page: the byte after the commit flag's word
ALLOCATOR = ("malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
             "aligned_alloc", "valloc", "pvalloc", "malloc_trim", "__libc_malloc", "__libc_free",
             "__libc_calloc", "__libc_realloc", "__libc_memalign")


def _movabs(register: int, value: int) -> bytes:
    """``movabs $value, %reg`` for rax (0), rsi (6), rdi (7)."""
    return bytes([0x48, 0xB8 + register]) + struct.pack("<Q", value)


def _thunk(body: bytes, flag: int, value: int) -> bytes:
    code = (b"\x48\x83\xec\x08" + body + b"\xff\xd0"     # sub $8,%rsp (16-byte alignment); call *%rax
            + _movabs(0, flag) + b"\xc6\x00" + bytes([value])  # movb $value, (flag)
            + b"\x48\x83\xc4\x08\xc3")                          # add $8,%rsp; ret
    assert len(code) <= THUNK_SIZE
    return code + b"\xcc" * (THUNK_SIZE - len(code))


def register_thunk(eh_frame: int, storage: int, function: int, flag: int) -> bytes:
    """``__register_frame_info(eh_frame, storage)``, then the flag byte = 1."""
    return _thunk(_movabs(7, eh_frame) + _movabs(6, storage) + _movabs(0, function), flag, 1)


def deregister_thunk(eh_frame: int, function: int, flag: int) -> bytes:
    """``__deregister_frame_info(eh_frame)``, then the flag byte = 0."""
    return _thunk(_movabs(7, eh_frame) + _movabs(0, function), flag, 0)


@dataclass(frozen=True)
class Unwinder:
    """libgcc's registration functions in the target, and the code a thread calling them must not be in."""

    register: int
    deregister: int
    library: str
    avoid: RangeSet


def find_unwinder(target: MappedObject, objects: list[MappedObject],
                  read_word: Callable[[int], int]) -> Unwinder | None:
    """The unwinder the process's C++ code uses (libgcc_s, or the program's own export), if any."""
    resolver = SymbolResolver(target, objects, read_word)
    try:
        register, deregister = resolver.resolve(REGISTER), resolver.resolve(DEREGISTER)
    except SymbolError:
        return None
    ranges: dict[int, BusyRange] = {}
    for item in objects:
        if any(m.executable and m.start <= register.address < m.end for m in item.mappings):
            for mapping in (m for m in item.mappings if m.executable):
                ranges[mapping.start] = BusyRange(mapping.start, mapping.end,
                                                  f"the unwinder ({os.path.basename(item.path)})")
    ranges.update({start: found for start, found in _allocators(objects).items() if start not in ranges})
    return Unwinder(register.address, deregister.address, register.library, RangeSet(_disjoint(ranges)))


def _allocators(objects: list[MappedObject]) -> dict[int, BusyRange]:
    """The code of every allocator loaded: glibc's, and a jemalloc or tcmalloc that interposes it."""
    ranges: dict[int, BusyRange] = {}
    for item in objects:
        try:
            exports = dynamic_exports(item.file_bytes)
        except Exception:  # noqa: BLE001, S112 - an object whose symbols cannot be read has no allocator to avoid
            continue
        for name in ALLOCATOR:
            export = exports.get(name)
            if export is not None and export.size:
                start = item.bias + export.value
                ranges.setdefault(start, BusyRange(start, start + export.size, f"the allocator ({name})"))
    return ranges


def allocator_code(objects: list[MappedObject]) -> RangeSet:
    """Where a thread that runs a hook must not be stopped: inside the allocator, which the hook may call
    (it would wait for a lock the thread holds itself)."""
    return RangeSet(_disjoint(_allocators(objects)))


def _disjoint(ranges: dict[int, BusyRange]) -> list[BusyRange]:
    """Sorted ranges with overlaps merged (aliases such as malloc and __libc_malloc share their code)."""
    merged: list[BusyRange] = []
    for item in sorted(ranges.values(), key=lambda r: r.start):
        if merged and item.start < merged[-1].end:
            last = merged.pop()
            item = BusyRange(last.start, max(last.end, item.end), last.label)
        merged.append(item)
    return merged
