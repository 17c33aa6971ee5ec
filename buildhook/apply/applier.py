"""Applying, reverting and listing patches in a running process (DESIGN §5).

Order matters: everything that can fail is checked before the target is
touched (the .po, the target's build-id, the bytes of every function to
redirect, every symbol, the layout and every relocation).  Then:

1. seize every thread (no stop);
2. stop one thread briefly to create the patch region (memfd + mmap,
   injected as system calls) — the region is filled from here, through the
   memfd, while the process runs;
3. stop the world, check that no thread is in code about to change, write
   every jump (and restore what a replaced patch had redirected) and let
   go: the pause is measured across this step only; busy → let go, retry
   until the timeout, then remove the region and refuse, naming the busy
   functions and threads;
4. detach.

Standard library, pyelftools and buildhook's own .po reader only.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field

from buildhook.apply import ptrace
from buildhook.apply.loader import STATE_SIZE, PatchLayout, RelocationError, jump_bytes, plan_layout, relocate
from buildhook.apply.process import MappedObject, ProcessError, find_target, free_gap_near, mapped_objects, read_maps
from buildhook.apply.safety import BusyRange, MapIndex, RangeSet, busy_threads, stack_ranges, unwind_tables
from buildhook.apply.state import MEMFD_PREFIX, AppliedPatch, RedirectedFunction, applied_patches
from buildhook.apply.symbols import SymbolError, SymbolResolver
from buildhook.apply.threads import ThreadGroup, TraceDenied
from buildhook.po import format as fmt
from buildhook.po.reader import PatchObject

SYS_CLOSE, SYS_MMAP, SYS_MUNMAP, SYS_MEMFD_CREATE = 3, 9, 11, 319
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_FIXED_NOREPLACE = 0x01, 0x100000
MFD_CLOEXEC = 1
JUMP_SIZE = 5
RETRY_PAUSE_S = 0.005


class ApplyRefused(Exception):
    """The patch was not applied and the target is as it was; the message says why."""


@dataclass
class ApplyReport:
    """What happened to one process (``apply --json`` prints one per process)."""

    pid: int
    result: str
    patch_id: str
    functions: list[str] = field(default_factory=list)
    pause_us: float = 0.0
    total_ms: float = 0.0
    retries: int = 0

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "result": self.result, "patch_id": self.patch_id, "functions": self.functions,
                "pause_us": round(self.pause_us, 1), "total_ms": round(self.total_ms, 2), "retries": self.retries}


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class _Session:
    """One apply or revert on one process: the seized threads and the open memory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.group = ThreadGroup(pid)
        self.memory = ptrace.ProcessMemory(pid)
        self._gadget: int | None = None

    def close(self) -> None:
        self.group.detach_all()
        self.memory.close()

    # -- system calls in the target -------------------------------------------

    def gadget(self) -> int:
        """The address of a ``syscall`` instruction in an executable mapping of the target."""
        if self._gadget is None:
            for item in mapped_objects(self.pid):
                for mapping in item.mappings:
                    if not mapping.executable:
                        continue
                    code = item.file_bytes[mapping.offset:mapping.offset + mapping.size]
                    index = code.find(b"\x0f\x05")
                    if index >= 0:
                        self._gadget = mapping.start + index
                        return self._gadget
            raise ProcessError(f"no syscall instruction found in the code of process {self.pid}")
        return self._gadget

    def _injector(self) -> int:
        """The thread that runs injected system calls: the main one, seized if needed."""
        if not self.group.seized:
            try:
                ptrace.seize(self.pid)
            except ptrace.PtraceError as exc:
                raise ProcessError(f"cannot attach to process {self.pid} again: {exc}") from exc
            self.group.seized.add(self.pid)
        return self.pid if self.pid in self.group.seized else min(self.group.seized)

    def syscalls(self, calls: list[tuple[int, ...]]) -> list[int]:
        """Run system calls on the (briefly stopped) main thread; return their results."""
        tid = self._injector()
        self.group.stop(tid)
        try:
            return [_signed(ptrace.inject_syscall(tid, self.gadget(), *call)) for call in calls]
        finally:
            self.group.resume(tid)

    def memfd_create(self, name: str) -> int:
        """``memfd_create(name, MFD_CLOEXEC)`` in the target; returns its fd or -errno.

        The name goes below the main thread's stack pointer and the call runs
        in the same stop: once the thread runs again its stack reuses that
        space (seen on haproxy: a memfd named with the bytes of a frame).
        """
        tid = self._injector()
        self.group.stop(tid)
        try:
            address = (ptrace.get_registers(tid).rsp - 1024) & ~15
            self.memory.write(address, name.encode() + b"\0")
            return _signed(ptrace.inject_syscall(tid, self.gadget(), SYS_MEMFD_CREATE, address, MFD_CLOEXEC))
        finally:
            self.group.resume(tid)

    def call(self, function: int) -> int:
        """Run ``function()`` on the (briefly stopped) main thread: an IFUNC resolver."""
        tid = self._injector()
        self.group.stop(tid)
        try:
            return ptrace.inject_call(tid, function, self.memory.write)
        finally:
            self.group.resume(tid)

    def unmap(self, start: int, size: int) -> None:
        self.syscalls([(SYS_MUNMAP, start, size)])


# -- apply ----------------------------------------------------------------------------


def _verify_original(memory: ptrace.ProcessMemory, entry: dict, bias: int,
                     redirected: dict[int, RedirectedFunction]) -> None:
    address = int(entry["old_address"]) + bias
    size = int(entry["old_size"])
    current = memory.read(address, size)
    if address in redirected:  # under a jump of an earlier patch: compare with what it saved
        original = bytes.fromhex(redirected[address].original)
        current = original + current[len(original):]
    if hashlib.sha256(current).hexdigest() != entry["old_sha256"]:
        raise ApplyRefused(
            f"the code of {entry['name']} at {address:#x} differs from the patch's base release "
            "(the process was modified, or is not that build); nothing was changed")


def _resolve_symbols(patch: PatchObject, pid: int, target: MappedObject, session: _Session) -> dict[int, int]:
    """Run-time values of every base and dynamic symbol (TLS offsets are handled apart).

    An IFUNC the old binary never imported has its resolver run in the target
    (it only reads CPU features glibc set up at start-up), as the dynamic
    linker would have.
    """
    memory = session.memory
    resolver = SymbolResolver(target, mapped_objects(pid),
                              lambda address: int.from_bytes(memory.read(address, 8), "little"))
    values: dict[int, int] = {}
    for index, binding in patch.bindings().items():
        if binding["bind"] == fmt.BIND_BASE:
            values[index] = int(binding["address"]) + target.bias
        elif binding["bind"] == fmt.BIND_DYNAMIC:
            found = resolver.resolve(binding["name"])
            address = session.call(found.address) if found.ifunc else found.address
            if address == 0:
                raise ApplyRefused(f"the IFUNC resolver of {binding['name']} in {found.library} returned nothing")
            values[index] = address
    return values


def _tls_offsets(patch: PatchObject) -> dict[int, int]:
    tls = patch.metadata.get("tls") or {}
    size, align = int(tls.get("size", 0)), max(int(tls.get("align", 1)), 1)
    block = (size + align - 1) // align * align
    return {index: int(binding["offset"]) - block
            for index, binding in patch.bindings().items() if binding["bind"] == fmt.BIND_TLS}


def _prepare(patch: PatchObject, pid: int, target: MappedObject, session: _Session,
             previous: list[AppliedPatch]) -> tuple[PatchLayout, bytes, bytes, list[tuple[dict, int, int]]]:
    """Everything computed before the target is changed: layout, bytes, jumps.

    Only an IFUNC resolver may run in the target meanwhile (it changes nothing).
    """
    redirected = {f.address: f for p in previous for f in p.functions}
    for entry in patch.metadata["functions"]:
        _verify_original(session.memory, entry, target.bias, redirected)
    values = _resolve_symbols(patch, pid, target, session)
    tls = _tls_offsets(patch)
    size = plan_layout(patch, 0).size
    base = free_gap_near(pid, target.text, size)
    layout = plan_layout(patch, base)
    code, data = relocate(patch, layout, values.__getitem__, lambda index: tls[index])
    jumps = []
    for entry in patch.metadata["functions"]:
        symbol = patch.symbols[int(entry["symbol"])]
        destination = layout.address_of_section(symbol.section) + symbol.value
        address = int(entry["old_address"]) + target.bias
        jump_bytes(address, destination)  # range check now, not during the pause
        jumps.append((entry, address, destination))
    return layout, code, data, jumps


def _create_region(session: _Session, patch: PatchObject, layout: PatchLayout, code: bytes, data: bytes) -> int:
    """memfd + three mappings (state R, code R+X, data R+W); returns our fd on the memfd."""
    target_fd = session.memfd_create(MEMFD_PREFIX + patch.patch_id)
    if target_fd < 0:
        raise ProcessError(f"memfd_create in process {session.pid} failed: {os.strerror(-target_fd)}")
    ours = os.open(f"/proc/{session.pid}/fd/{target_fd}", os.O_RDWR)
    try:
        os.ftruncate(ours, layout.size)
        os.pwrite(ours, code, STATE_SIZE)
        if data:
            os.pwrite(ours, data, STATE_SIZE + len(code))
        flags = MAP_SHARED | MAP_FIXED_NOREPLACE
        calls = [(SYS_MMAP, layout.base, STATE_SIZE, PROT_READ, flags, target_fd, 0),
                 (SYS_MMAP, layout.code_start, len(code), PROT_READ | PROT_EXEC, flags, target_fd, STATE_SIZE)]
        if data:
            calls.append((SYS_MMAP, layout.data_start, len(data), PROT_READ | PROT_WRITE, flags, target_fd,
                          STATE_SIZE + len(code)))
        calls.append((SYS_CLOSE, target_fd))
        results = session.syscalls(calls)
        expected = [call[1] for call in calls[:-1]]
        if results[:-1] != expected:
            mapped = [(call[1], call[2]) for call, got in zip(calls, results) if got == call[1]]
            for start, size in mapped:
                session.unmap(start, size)
            raise ProcessError(f"could not map the patch region at {layout.base:#x} in process {session.pid} "
                               f"(mmap returned {[hex(r) if r > 0 else r for r in results[:-1]]})")
    except BaseException:
        os.close(ours)
        raise
    return ours


def _busy_ranges(jumps: list[tuple[dict, int, int]], bias: int, replacing: AppliedPatch | None) -> list[BusyRange]:
    ranges = []
    for entry, address, _ in jumps:
        ranges.append(BusyRange(address, address + max(int(entry["old_size"]), JUMP_SIZE), entry["name"]))
        for part_address, part_size in entry.get("old_parts", []):
            ranges.append(BusyRange(part_address + bias, part_address + bias + part_size, entry["name"] + ".cold"))
    if replacing is not None:
        ranges.append(BusyRange(replacing.code_start, replacing.code_end, f"code of patch {replacing.patch_id[:16]}"))
    return ranges


def apply_patch(patch: PatchObject, pid: int, timeout: float = 5.0, po_name: str = "") -> ApplyReport:
    """Apply *patch* to process *pid*; raise ApplyRefused (target unchanged) when it cannot be done safely."""
    started = time.perf_counter()
    target = find_target(pid, patch.target_build_id)
    previous = [p for p in applied_patches(pid) if p.target_build_id == target.build_id]
    if any(p.patch_id == patch.patch_id for p in previous):
        raise ApplyRefused(f"patch {patch.patch_id[:16]} is already applied to process {pid}")
    replacing = previous[-1] if previous else None
    session = _Session(pid)
    memfd = -1
    try:
        try:
            layout, code, data, jumps = _prepare(patch, pid, target, session, previous)
        except (RelocationError, SymbolError) as exc:
            raise ApplyRefused(str(exc)) from exc
        session.group.seize_all()
        memfd = _create_region(session, patch, layout, code, data)
        state = AppliedPatch(
            patch.patch_id, target.build_id or "", str(patch.metadata["from"]), str(patch.metadata["to"]),
            layout.base, layout.base + layout.size, layout.code_start, layout.code_start + layout.code_size,
            [RedirectedFunction(entry["name"], entry["file"], address, destination,
                                _original_bytes(session.memory, address, replacing).hex(), int(entry["old_size"]),
                                [[a + target.bias, s] for a, s in entry.get("old_parts", [])])
             for entry, address, destination in jumps],
            time.time(), po_name)
        restore = _functions_to_restore(replacing, {address for _, address, _ in jumps})
        busy = _busy_ranges(jumps, target.bias, replacing)
        writing = False

        def write() -> None:
            nonlocal writing
            writing = True
            _write_commit(session.memory, memfd, state,
                          [(address, jump_bytes(address, dest)) for _, address, dest in jumps], restore)

        try:
            pause_us, retries = _commit(session, busy, timeout, write)
        except BaseException:
            if not writing:  # busy or a failure before any jump: take the region away, the target is as it was
                os.close(memfd)
                memfd = -1
                session.group.detach_all()
                session.unmap(layout.base, layout.size)
            raise
        if replacing is not None:
            session.unmap(replacing.region_start, replacing.region_end - replacing.region_start)
        return ApplyReport(pid, "applied", patch.patch_id, [entry["name"] for entry, _, _ in jumps], pause_us,
                           (time.perf_counter() - started) * 1000, retries)
    finally:
        if memfd >= 0:
            os.close(memfd)
        session.close()


def _original_bytes(memory: ptrace.ProcessMemory, address: int, replacing: AppliedPatch | None) -> bytes:
    if replacing is not None:
        for function in replacing.functions:
            if function.address == address:
                return bytes.fromhex(function.original)
    return memory.read(address, JUMP_SIZE)


def _functions_to_restore(replacing: AppliedPatch | None, keep: set[int]) -> list[tuple[int, bytes]]:
    """Entries an older patch redirected that the new one does not: their original bytes come back."""
    if replacing is None:
        return []
    return [(f.address, bytes.fromhex(f.original)) for f in replacing.functions if f.address not in keep]


def _write_commit(memory: ptrace.ProcessMemory, memfd: int, state: AppliedPatch,
                  jumps: list[tuple[int, bytes]], restore: list[tuple[int, bytes]]) -> None:
    os.pwrite(memfd, state.to_bytes(STATE_SIZE), 0)
    for address, original in restore:
        memory.write(address, original)
    for address, jump in jumps:
        memory.write(address, jump)


def _commit(session: _Session, busy: list[BusyRange], timeout: float, write) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Stop the world until it is safe, then *write* and let every thread go (detached).

    Returns (pause in µs, retries); raises ApplyRefused, naming the busy
    functions and threads, when it is still not safe after *timeout*.
    Everything the check needs is prepared before the stop: the unwind
    tables, the map index, the busy ranges.
    """
    deadline = time.monotonic() + timeout
    retries = 0
    frames = unwind_tables(mapped_objects(session.pid))
    maps = MapIndex(read_maps(session.pid))
    ranges = RangeSet(busy)
    session.group.seize_all()
    while True:
        first_stop = session.group.stop_all()
        registers = {tid: ptrace.get_registers(tid) for tid in session.group.stopped}
        stacks = stack_ranges(registers, maps)
        if len(stacks) != len(registers):
            maps = MapIndex(read_maps(session.pid))  # a new thread's stack: the map changed
            stacks = stack_ranges(registers, maps)
        found = busy_threads(session.pid, registers, stacks, ranges, frames)
        if not found:
            write()
            session.group.detach_all()
            return (time.perf_counter_ns() - first_stop) / 1000, retries
        session.group.resume_all()
        if time.monotonic() >= deadline:
            names = sorted({item.label for item in found})
            threads = ", ".join(f"{item.tid} ({item.label}, {item.where})" for item in found)
            raise ApplyRefused(f"busy after {timeout:g} s: {', '.join(names)} always in use (threads {threads}); "
                               "nothing was changed")
        retries += 1
        time.sleep(RETRY_PAUSE_S)


# -- revert and status ---------------------------------------------------------------


def revert_patch(pid: int, patch_id: str | None = None, timeout: float = 5.0) -> ApplyReport:
    """Restore the code a patch redirected and remove its region."""
    started = time.perf_counter()
    patches = applied_patches(pid)
    if not patches:
        raise ApplyRefused(f"process {pid} has no buildhook patch applied")
    chosen = [p for p in patches if patch_id is None or p.patch_id.startswith(patch_id)]
    if not chosen:
        raise ApplyRefused(f"patch {patch_id} is not applied to process {pid} "
                           f"(applied: {', '.join(p.patch_id[:16] for p in patches)})")
    patch = chosen[-1]
    session = _Session(pid)
    try:
        session.group.seize_all()
        busy = [BusyRange(patch.code_start, patch.code_end, f"code of patch {patch.patch_id[:16]}")]
        pause_us, retries = _commit(session, busy, timeout, lambda: [
            session.memory.write(f.address, bytes.fromhex(f.original)) for f in patch.functions])
        session.unmap(patch.region_start, patch.region_end - patch.region_start)
        return ApplyReport(pid, "reverted", patch.patch_id, [f.name for f in patch.functions], pause_us,
                           (time.perf_counter() - started) * 1000, retries)
    finally:
        session.close()


def patch_status(pid: int) -> list[AppliedPatch]:
    """The patches applied to *pid* (raises ProcessError for a missing process)."""
    read_maps(pid)
    return applied_patches(pid)


__all__ = ["ApplyRefused", "ApplyReport", "TraceDenied", "apply_patch", "patch_status", "revert_patch"]
