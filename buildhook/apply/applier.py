"""Applying, reverting and listing patches in a running process (DESIGN §5, docs/apply.md).

Order matters: everything that can fail is checked before the target is
touched (pre-flight, the .po, the target's build-id, the bytes of every
function to redirect, every symbol, the layout and every relocation).  Then:

1. seize every thread (no stop);
2. stop one thread briefly to create the patch region (memfd + mmap, run
   by that thread through the return stub, inject.py) — the record, code
   and data are written through the memfd before it is mapped;
3. stop the world, check that no thread is in code about to change, then
   commit (gates.py): entries to the gates, one byte, and let go; the pause
   is measured across this step only; busy → let go, retry until the
   timeout, then remove the region and refuse, naming what is busy;
4. detach; remove what an earlier applier stopped short left behind.

Whatever happens to this process, the target runs wholly old or wholly new:
the commit byte is the only write that changes what runs.

Standard library, pyelftools and buildhook's own .po reader only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

from buildhook.apply import frames, gates, native, ptrace, scheduling
from buildhook.apply.datachange import (
    HOOK_TIMEOUT_S,
    HookFailed,
    Hooks,
    Migration,
    MigrationRefused,
    migrate,
    plan_migrations,
    run_hooks,
)
from buildhook.apply.inject import (
    DATA_OFFSET,
    SIG_SETMASK,
    SLOTS_OFFSET,
    STUB_SIZE,
    SYS,
    SYS_GETPID,
    SYS_RT_SIGPROCMASK,
    TAIL_SYSCALL,
    CallFailed,
    InjectionError,
    Injector,
    stub_place,
)
from buildhook.apply.loader import (
    STATE_SIZE,
    PatchLayout,
    RelocationError,
    jump_bytes,
    plan_layout,
    relocate,
)
from buildhook.apply.preflight import (
    TargetUnsuitable,
    check_seccomp,
    check_system,
    next_fd,
)
from buildhook.apply.process import (
    PAGE,
    MappedObject,
    Mapping,
    ProcessError,
    find_target,
    free_gap_near,
    mapped_objects,
    memory_pid,
    proc_dir,
    read_maps,
    task_file,
)
from buildhook.apply.safety import (
    BusyRange,
    BusyThread,
    MapIndex,
    RangeSet,
    busy_threads,
    clean_precisely,
    find_pointer,
    find_word,
    learn_frames,
    stack_ranges,
    unwind_tables,
)
from buildhook.apply.state import (
    MEMFD_PREFIX,
    REGION_PATH,
    AppliedPatch,
    RedirectedFunction,
    condition,
    recorded_patches,
)
from buildhook.apply.symbols import SymbolError, SymbolResolver
from buildhook.apply.threads import (
    STOP_BUDGET_S,
    ThreadGroup,
    ThreadWontStop,
    TraceDenied,
)
from buildhook.apply.unwind import ModuleFrames
from buildhook.po import format as fmt
from buildhook.po.reader import PatchObject

SYS_CLOSE, SYS_MMAP, SYS_MUNMAP, SYS_MEMFD_CREATE = 3, 9, 11, 319
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED_NOREPLACE = 0x01, 0x02, 0x100000
MFD_CLOEXEC = 1
JUMP_SIZE = 5
RETRY_PAUSE_S = 0.005
RUNNING_SHARE = 10  # between two tries the process runs at least ten times as long as a try held it


def _after_late_stop() -> float:
    """How long to let the process run after a stop gave up on a late thread (it held the others for a
    whole budget)."""
    return max(RETRY_PAUSE_S, RUNNING_SHARE * STOP_BUDGET_S)


_T = TypeVar("_T")


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
    hooks: list[dict[str, object]] = field(default_factory=list)       # what each hook returned, how long it ran
    migrations: list[dict[str, object]] = field(default_factory=list)  # what became of each migrated variable
    stop: str = ""  # how the world was stopped: "native", "native+python" (a thread looked at precisely), "python"
    pause_phases_us: dict[str, float] = field(default_factory=dict)  # the pause by phase, in order (native stops)
    deferred_ms: float = 0.0  # how long this applier ran at the lowest weight before it seized (scheduling.defer)

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "result": self.result, "patch_id": self.patch_id, "functions": self.functions,
                "pause_us": round(self.pause_us, 1), "total_ms": round(self.total_ms, 2), "retries": self.retries,
                "stop": self.stop, "pause_phases_us": {name: round(us, 1) for name, us in self.pause_phases_us.items()},
                "deferred_ms": round(self.deferred_ms, 1), "hooks": self.hooks, "migrations": self.migrations}


class _Session:
    """One apply or revert on one process: the seized threads, the open memory, the return stub."""

    def __init__(self, pid: int, timeout: float, target: MappedObject | None = None) -> None:
        self.pid = pid
        self.timeout = timeout
        self.group = ThreadGroup(pid)
        self.memory = ptrace.ProcessMemory(pid)
        self.target = target
        self._stub: int | None = None
        self._padding = b""  # what the stub overwrote, put back at the end
        self._stub_in_use = False
        self._checked: set[int] = set()  # threads whose seccomp filters were evaluated
        self._frames: ModuleFrames | None = None  # unwind tables of the loaded objects, read once
        self._frames_code: frozenset[tuple[int, int, str]] = frozenset()  # the code mapped when read
        self._unwinder: frames.Unwinder | None = None

    @property
    def deadline(self) -> float:
        """When the applier stops trying to stop a thread for its calls: ``--timeout`` after it first
        held the target (its first seize), not after it started: what it read before, deferring
        (scheduling.py), may have taken longer than the whole timeout on a busy machine."""
        held = self.group.first_seize
        return (held if held is not None else time.monotonic()) + self.timeout

    def close(self) -> None:
        """Let every thread go and give the padding its bytes back (unless a thread may still be in the stub)."""
        try:
            if self._padding and not self._stub_in_use:
                assert self._stub is not None
                self.memory.write(self._stub, self._padding)
        finally:
            self.group.detach_all()
            self.memory.close()

    # -- calls in the target (inject.py) --------------------------------------

    def stub(self) -> int:
        """Where the return stub goes: padding after a code segment, the target's own first."""
        if self._stub is None:
            objects = mapped_objects(self.pid)
            objects.sort(key=lambda item: self.target is None or item.path != self.target.path)
            try:
                self._stub = stub_place(objects, read_maps(self.pid))
            except InjectionError as exc:
                raise ApplyRefused(f"{exc}; nothing was changed") from exc
            self._padding = self.memory.read(self._stub, STUB_SIZE)
        return self._stub

    def _injector_thread(self) -> int:
        """A live seized thread to run calls on: the main one, or another if it has exited."""
        if not self.group.seized:
            self.group.seize_all()
        return self.group.live_thread()

    def _stop_a_thread(self) -> int:
        """Stop a thread to run calls on; one that won't stop (threads.py) makes another be chosen,
        or the same tried again later, until the deadline."""
        while True:
            tid = self._injector_thread()
            try:
                self.group.stop_for_calls(tid)
                return tid
            except ThreadWontStop as exc:
                if time.monotonic() >= self.deadline:
                    raise ApplyRefused(f"{exc}") from exc
                time.sleep(_after_late_stop())

    def _stop_a_thread_outside(self, avoid: RangeSet) -> int:
        """Stop a thread none of whose frames is in *avoid* (it may hold a lock the call will take);
        one that is, is let go and looked at again a little later, until the deadline."""
        while True:
            tid = self._stop_a_thread()
            registers = {tid: ptrace.get_registers(tid)}
            maps = MapIndex(read_maps(self.pid))
            # A parked coroutine is never inside the allocator or the unwinder (neither switches
            # stacks): only this thread's own stacks, not the memory scan.
            found = busy_threads(self.pid, registers, stack_ranges(registers, maps), avoid, self.module_frames(),
                                 maps, parked=False)
            if not found:
                return tid
            self.group.resume(tid)
            if time.monotonic() >= self.deadline:
                raise ApplyRefused(f"thread {tid} of process {self.pid} stayed inside {found[0].label} "
                                   f"({found[0].where}), where the call to register the patch's unwind tables "
                                   "could wait for a lock the thread holds itself; try again")
            time.sleep(RETRY_PAUSE_S)

    def run(self, work: Callable[[Injector], _T], avoid: RangeSet | None = None) -> _T:
        """Run *work* with an injector on a briefly stopped thread (one outside *avoid*); the thread is
        put back as it was."""
        stub = self.stub()
        tid = self._stop_a_thread() if avoid is None else self._stop_a_thread_outside(avoid)
        try:
            return self._on_thread(tid, stub, work)
        finally:
            self.group.resume(tid)

    def _on_thread(self, tid: int, stub: int, work: Callable[[Injector], _T]) -> _T:
        """Run *work* with an injector on stopped thread *tid*, then put the thread back in its stop."""
        if tid not in self._checked:
            self._check_seccomp(tid, stub)
            self._checked.add(tid)
        injector = Injector(tid, stub, self.memory.write, self.memory.read)
        self._stub_in_use = True
        try:
            return work(injector)
        finally:
            injector.finish()
            self._stub_in_use = False

    def _check_seccomp(self, tid: int, stub: int) -> None:
        """Refuse, before the first call, a thread whose seccomp filter would block one (preflight.py)."""
        fd = next_fd(self.pid)
        at, tail = stub + SYS, stub + TAIL_SYSCALL
        calls = [(SYS_MEMFD_CREATE, (stub + DATA_OFFSET, MFD_CLOEXEC), at),
                 *[(number, tuple(arguments), at) for number, *arguments in _mapping_calls(fd, 0, PAGE, PAGE)],
                 (SYS_CLOSE, (fd,), at), (SYS_MUNMAP, (0, PAGE), at), (SYS_GETPID, (), at),
                 (SYS_RT_SIGPROCMASK, (SIG_SETMASK, stub + SLOTS_OFFSET, 0, 8), tail)]
        try:
            check_seccomp(tid, calls)
        except TargetUnsuitable as exc:
            raise ApplyRefused(f"{exc}; nothing was changed") from exc

    def syscalls(self, calls: list[tuple[int, ...]], data: bytes = b"") -> list[int]:
        return self.run(lambda injector: [injector.syscall(*call, data=data) for call in calls])

    def call(self, function: int, avoid: RangeSet | None = None) -> int:
        """Run ``function()`` in the target: an IFUNC resolver, a thunk of frames.py."""
        return self.run(lambda injector: injector.call(function), avoid)

    def hook_call(self, function: int, deadline: float) -> tuple[int, str]:
        """Run a hook on one thread, the others running: a thread outside the allocator (and unwinder),
        which the hook may need; a fault or a timeout is HookFailed, the thread put back as it was.
        Returns its %rax and what it wrote to stdout and stderr."""
        unwinder = self.unwinder() if self.target is not None else None
        avoid = unwinder.avoid if unwinder is not None else frames.allocator_code(mapped_objects(self.pid))

        def work(injector: Injector) -> tuple[int, str]:
            value = injector.call(function, deadline=deadline)
            return value, injector.output.decode("utf-8", "replace")

        try:
            return self.run(work, avoid)
        except CallFailed as exc:
            raise HookFailed(str(exc).replace(f"the function at {function:#x} ", "")) from exc

    def call_stopped(self, function: int, *arguments: int) -> int:
        """Run ``function(arguments…)`` on a thread of the stopped world, which stays stopped (a transform:
        no other thread moves meanwhile, so it must not wait for another's lock; the allocator is free,
        as no thread is inside it)."""
        ready = sorted(tid for tid in self.group.stopped if tid not in self.group.pending)
        tid = ready[0] if ready else min(self.group.stopped)
        if not ready:
            self.group.stop_for_calls(tid)  # deliver its held signal first, as the kernel was about to
        deadline = time.monotonic() + HOOK_TIMEOUT_S
        return self._on_thread(tid, self.stub(), lambda injector: injector.call(function, *arguments,
                                                                               deadline=deadline))

    def module_frames(self, maps: list[Mapping] | None = None) -> ModuleFrames:
        """The loaded objects' unwind tables (safety.py): the activeness check and the choice of a
        thread outside the unwinder both use them.  Read once per session, first before the applier
        seizes anything (they are most of its CPU after its imports, which it spends deferring:
        scheduling.py), and read again when *maps*, read just now, show code mapped since (a
        library loaded meanwhile)."""
        if self._frames is None or (maps is not None and _loaded_code(maps) != self._frames_code):
            read = read_maps(self.pid) if maps is None else maps  # the objects as these show them
            self._frames = unwind_tables(mapped_objects(self.pid, read))
            self._frames_code = _loaded_code(read)
        return self._frames

    def unwinder(self) -> frames.Unwinder | None:
        """The target's unwinder (frames.py), found once per session, to register or deregister tables."""
        if self._unwinder is None:
            assert self.target is not None
            self._unwinder = frames.find_unwinder(
                self.target, mapped_objects(self.pid),
                lambda address: int.from_bytes(self.memory.read(address, 8), "little"))
        return self._unwinder

    def unmap(self, start: int, size: int) -> None:
        self.syscalls([(SYS_MUNMAP, start, size)])


def _loaded_code(maps: list[Mapping]) -> frozenset[tuple[int, int, str]]:
    """The executable file mappings, what unwind tables are read for; not the patch regions, which come
    and go with the applier's own work and have no tables (a library loaded from a memfd has)."""
    return frozenset((m.start, m.end, m.path) for m in maps
                     if m.executable and m.path.startswith("/") and not m.path.startswith(REGION_PATH))


# -- apply ----------------------------------------------------------------------------


def _verify_original(memory: ptrace.ProcessMemory, entry: dict, bias: int, originals: dict[int, bytes]) -> None:
    address = int(entry["old_address"]) + bias
    size = int(entry["old_size"])
    current = memory.read(address, size)
    if address in originals:  # under a jump of a patch: compare with what its record saved
        original = originals[address]
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


@dataclass
class _Gate:
    """One function this commit sends through its gate."""

    name: str
    file: str
    address: int       # run-time old entry
    new: int           # where the committed gate goes: new code, or (restored) the old function's entry copy
    copy: int          # the old function's entry copy
    previous: int      # where the gate goes until the commit: what the entry ran before
    original: bytes    # the base's bytes under the jump
    old_size: int
    old_parts: list[list[int]]
    kind: str
    gate: int = 0      # the gate itself

    @classmethod
    def recorded(cls, function: RedirectedFunction) -> _Gate:
        return cls(function.name, function.file, function.address, function.destination, function.copy,
                   function.copy, bytes.fromhex(function.original), function.old_size, function.old_parts,
                   function.kind, gate=function.gate)


@dataclass
class _Plan:
    """Everything computed before the target is changed."""

    layout: PatchLayout
    code: bytes
    data: bytes
    gates: list[_Gate]
    state: AppliedPatch
    unwinder: frames.Unwinder | None = None  # where the patch's unwind tables are registered
    migrations: list[Migration] = field(default_factory=list)
    hooks: Hooks = field(default_factory=Hooks)


def _entry_copies(patch: PatchObject) -> None:
    """Refuse, before anything else, a patch whose jumps could not be committed atomically."""
    for entry in patch.metadata["functions"]:
        if not entry.get("entry_copy"):
            reason = entry.get("entry_copy_refused") or "the .po was made by an older buildhook; rebuild it"
            raise ApplyRefused(f"{entry['name']} cannot be redirected atomically: its first instructions cannot "
                               f"be copied ({reason}); nothing was changed")


def _plan_gates(patch: PatchObject, target: MappedObject, live: AppliedPatch | None,
                originals: dict[int, bytes], memory: ptrace.ProcessMemory) -> list[tuple[dict | None, _Gate]]:
    """The gates, in pointer order: the patch's functions, then the live patch's others (restored)."""
    by_address = {f.address: f for f in live.replaced_functions} if live else {}
    planned: list[tuple[dict | None, _Gate]] = []
    for entry in patch.metadata["functions"]:
        address = int(entry["old_address"]) + target.bias
        original = originals.get(address) or memory.read(address, JUMP_SIZE)
        before = by_address.get(address)
        planned.append((entry, _Gate(entry["name"], entry["file"], address, 0, 0, before.gate if before else 0,
                                     original, int(entry["old_size"]),
                                     [[a + target.bias, size] for a, size in entry.get("old_parts", [])],
                                     "replaced")))
    ours = {gate.address for _, gate in planned}
    for function in by_address.values():
        if function.address not in ours:  # its old code again: through our gate, until and after the commit
            planned.append((None, replace(_Gate.recorded(function), new=function.copy, previous=function.gate,
                                          kind="restored")))
    return planned


def _prepare(patch: PatchObject, pid: int, target: MappedObject, session: _Session,
             live: AppliedPatch | None, originals: dict[int, bytes], po_name: str,
             flag_at: int = 0, patch_set: list[str] | None = None) -> _Plan:
    """Layout, relocated bytes, gates and the record: all before the target is changed.

    Only an IFUNC resolver may run in the target meanwhile (it changes nothing).
    *flag_at*: the commit byte of the set this patch joins (its first
    member's; 0: its own), which its gates test; *patch_set*: the ids of all
    members.
    """
    _entry_copies(patch)
    for entry in patch.metadata["functions"]:
        _verify_original(session.memory, entry, target.bias, originals)
    values = _resolve_symbols(patch, pid, target, session)
    tls = _tls_offsets(patch)
    planned = _plan_gates(patch, target, live, originals, session.memory)
    size = plan_layout(patch, 0, len(planned)).size
    base = free_gap_near(pid, target.text, size)
    layout = plan_layout(patch, base, len(planned))
    kept = _kept_variables(patch, live)
    code, data = relocate(patch, layout, values.__getitem__, lambda index: tls[index], kept)
    code, data = bytearray(code), bytearray(data)
    unwinder = _unwinder(patch, pid, session, layout, code)
    result = []
    for number, (entry, gate) in enumerate(planned):
        if entry is not None:
            symbol = patch.symbols[int(entry["symbol"])]
            gate.new = layout.address_of_section(symbol.section) + symbol.value
            gate.copy = layout.copy(number)
            gate.previous = gate.previous or gate.copy
            offset = gate.copy - layout.code_start
            code[offset:offset + gates.COPY_SIZE] = gates.copy_code(entry["entry_copy"], gate.copy, target.bias)
        gate.gate = layout.gate(number)
        offset = gate.gate - layout.code_start
        flag = flag_at or layout.control
        code[offset:offset + gates.GATE_SIZE] = gates.gate_code(gate.gate, flag, layout.control, number)
        jump_bytes(gate.address, layout.gate(number))  # range check now, not during the pause
        result.append(gate)
    control = layout.control - layout.data_start
    data[control + gates.CONTROL_HEADER:control + gates.control_size(len(result))] = _pointers(result, after=False)
    migrations = plan_migrations(patch, layout, target.bias, kept)
    hooks = Hooks.of(patch, layout)
    state = AppliedPatch(
        patch.patch_id, target.build_id or "", str(patch.metadata["from"]), str(patch.metadata["to"]),
        layout.base, layout.base + layout.size, layout.code_start, layout.code_start + layout.code_size,
        [RedirectedFunction(g.name, g.file, g.address, g.new, g.original.hex(), g.old_size, g.old_parts,
                            layout.gate(n), g.copy, n, g.kind) for n, g in enumerate(result)],
        time.time(), po_name, layout.control, live.patch_id if live else "",
        [[v["name"], v["file"], int(v["size"]), kept.get(int(v["symbol"])) or _address_of(patch, layout, v)]
         for v in _variables(patch)],
        _instructions(patch, layout),
        [layout.register_thunk, layout.deregister_thunk] if unwinder else [],
        flag_at, patch_set or [], hooks.to_record(),
        [[m.name, m.file, m.kind, m.old, m.new, m.old_size] for m in migrations])
    return _Plan(layout, bytes(code), bytes(data), result, state, unwinder, migrations, hooks)


def _unwinder(patch: PatchObject, pid: int, session: _Session, layout: PatchLayout,
              code: bytearray) -> frames.Unwinder | None:
    """Find the target's unwinder and write the thunks that register the patch's tables with it.

    Code that throws or catches (a personality routine in its tables) needs
    them; without an unwinder to register with, the patch is refused.  Plain
    frame descriptions (C code) are registered where an unwinder is loaded.
    """
    unwind = patch.metadata.get("unwind")
    if layout.unwind_section is None or not unwind:
        return None
    unwinder = session.unwinder()
    if unwinder is None:
        if unwind.get("handlers"):
            raise ApplyRefused(f"the patch's code throws or catches C++ exceptions, and process {pid} has no "
                               f"unwinder to register its unwind tables with ({frames.REGISTER} is exported by "
                               "no loaded object); nothing was changed")
        return None
    flag = layout.control + frames.FLAG_OFFSET
    at = layout.thunks_offset - STATE_SIZE  # the code part starts after the record pages
    code[at:at + frames.THUNK_SIZE] = frames.register_thunk(layout.eh_frame, layout.frames_object,
                                                           unwinder.register, flag)
    at += frames.THUNK_SIZE
    code[at:at + frames.THUNK_SIZE] = frames.deregister_thunk(layout.eh_frame, unwinder.deregister, flag)
    return unwinder


def _instructions(patch: PatchObject, layout: PatchLayout) -> list[list[int]]:
    """The region's functions, gates and entry copies, one [start, end) each, for the activeness check:
    a pointer to its read-only data or its GOT is no call in progress, and a word equal to a first byte
    is a function pointer or a gate pointer of the control page, not a return address (safety.py)."""
    code = {index for index, s in patch.sections.items() if s.flags & fmt.SHF_EXECINSTR}
    functions = sorted({(layout.address_of_section(s.section) + s.value, s.size) for s in patch.symbols
                        if s.section in code and s.type == fmt.STT_FUNC and s.size})
    spans = [[start, start + size] for start, size in functions]
    for number in range(layout.gates):  # one each: the control page points at their first bytes
        spans += [[layout.gate(number), layout.gate(number) + gates.GATE_SIZE],
                  [layout.copy(number), layout.copy(number) + gates.COPY_SIZE]]
    return sorted(spans)


def _variables(patch: PatchObject) -> list[dict]:
    """The patch's new writable variables (not changed constants it carries), and the new storage of
    the variables it migrates (a replacing patch reuses it: the migration is done once)."""
    moved = [dict(entry, size=entry["new_size"]) for entry in patch.metadata.get("migrations", [])]
    return [entry for entry in patch.metadata["new_data"] if int(entry.get("symbol", -1)) >= 0
            and patch.sections[patch.symbols[int(entry["symbol"])].section].flags & fmt.SHF_WRITE] + moved


def _address_of(patch: PatchObject, layout: PatchLayout, entry: dict) -> int:
    symbol = patch.symbols[int(entry["symbol"])]
    return layout.address_of_section(symbol.section) + symbol.value


def _kept_variables(patch: PatchObject, live: AppliedPatch | None) -> dict[int, int]:
    """Symbols of new variables the live patch already added (same name, file and size): the newer patch
    uses the running ones, so they keep their values, as the program's own variables do."""
    if live is None:
        return {}
    running = {(name, file, size): address for name, file, size, address in live.variables}
    return {int(entry["symbol"]): running[(entry["name"], entry["file"], int(entry["size"]))]
            for entry in _variables(patch) if (entry["name"], entry["file"], int(entry["size"])) in running}


def _pointers(planned: list[_Gate], after: bool) -> bytes:
    """The control page's pointer pairs: before the commit the previous path is what ran before; after it,
    the old function (so that a later revert goes to the old code, not to a replaced patch)."""
    return b"".join(struct.pack("<QQ", gate.new, gate.copy if after else gate.previous) for gate in planned)


def _mapping_calls(fd: int, base: int, code_size: int, data_size: int) -> list[tuple[int, ...]]:
    """The mmaps of a region's memfd: record R (shared), code R+X (shared), data R+W (private: copied
    on fork).  Never W+X; MAP_FIXED_NOREPLACE: an address taken meanwhile fails, nothing is replaced."""
    shared, private = MAP_SHARED | MAP_FIXED_NOREPLACE, MAP_PRIVATE | MAP_FIXED_NOREPLACE
    code = base + STATE_SIZE
    return [(SYS_MMAP, base, STATE_SIZE, PROT_READ, shared, fd, 0),
            (SYS_MMAP, code, code_size, PROT_READ | PROT_EXEC, shared, fd, STATE_SIZE),
            (SYS_MMAP, code + code_size, data_size, PROT_READ | PROT_WRITE, private, fd, STATE_SIZE + code_size)]


def _create_region(session: _Session, plan: _Plan) -> None:
    """memfd + three mappings: record R, code R+X (shared), data R+W (private: copied on fork).

    The record, code and data are written through the memfd before the
    mappings exist, so the record is never seen half-written.
    """
    layout = plan.layout
    name = (MEMFD_PREFIX + plan.state.patch_id).encode() + b"\0"
    [target_fd] = session.syscalls([(SYS_MEMFD_CREATE, session.stub() + DATA_OFFSET, MFD_CLOEXEC)], name)
    if target_fd < 0:
        raise ProcessError(f"memfd_create in process {session.pid} failed: {os.strerror(-target_fd)}")
    try:
        ours = os.open(f"{proc_dir(session.pid)}/fd/{target_fd}", os.O_RDWR)
        try:
            os.ftruncate(ours, layout.size)
            os.pwrite(ours, plan.state.to_bytes(STATE_SIZE), 0)
            os.pwrite(ours, plan.code, STATE_SIZE)
            os.pwrite(ours, plan.data, STATE_SIZE + len(plan.code))
        finally:
            os.close(ours)
        calls = _mapping_calls(target_fd, layout.base, len(plan.code), len(plan.data))
        results = session.syscalls(calls)
    finally:
        session.syscalls([(SYS_CLOSE, target_fd)])
    if results != [call[1] for call in calls]:
        for call, got in zip(calls, results):
            if got == call[1]:
                session.unmap(call[1], call[2])
        raise ProcessError(f"could not map the patch region at {layout.base:#x} in process {session.pid} "
                           f"(mmap returned {[hex(r) if r > 0 else r for r in results]})")


def _busy_ranges(functions: list[_Gate], live: AppliedPatch | None,
                 leftovers: list[AppliedPatch]) -> list[BusyRange]:
    ranges = []
    for gate in functions:
        if gate.kind == "replaced":
            ranges.append(BusyRange(gate.address, gate.address + max(gate.old_size, JUMP_SIZE), gate.name))
            for part_address, part_size in gate.old_parts:
                ranges.append(BusyRange(part_address, part_address + part_size, gate.name + ".cold"))
    for patch in ([live] if live else []) + leftovers:
        for start, end in patch.text or [[patch.code_start, patch.code_end]]:
            ranges.append(BusyRange(start, end, f"code of patch {patch.patch_id[:16]}"))
    return ranges


@dataclass
class _Records:
    """The process's patch records for one target build, and what each entry should run now."""

    all: list[AppliedPatch]
    live: AppliedPatch | None
    leftovers: list[AppliedPatch]

    @classmethod
    def read(cls, pid: int, build_id: str) -> _Records:
        return cls.of_build(_recorded(pid), build_id)

    @classmethod
    def of_build(cls, patches: list[AppliedPatch], build_id: str) -> _Records:
        ours = [p for p in patches if p.target_build_id == build_id]
        live = [p for p in ours if condition(p, patches) == "applied"]
        return cls(ours, live[-1] if live else None, [p for p in ours if condition(p, patches) == "leftover"])

    def originals(self) -> dict[int, bytes]:
        return {f.address: bytes.fromhex(f.original) for p in self.all for f in p.functions}

    def reconcile(self, memory: ptrace.ProcessMemory, skip: set[int]) -> list[tuple[int, bytes]]:
        """Writes that make every recorded entry (but *skip*) run what the live patch says.

        Left by an applier stopped short: an entry may still jump to the gate
        of a leftover, or of a patch since reverted.  Each such gate runs what
        the live patch runs, so these writes change no behaviour; they only
        let the leftover be removed.
        """
        live = {f.address: f.gate for f in self.live.replaced_functions} if self.live else {}
        writes = []
        for address, original in self.originals().items():
            if address in skip:
                continue
            desired = jump_bytes(address, live[address]) if address in live else original
            if memory.read(address, len(desired)) != desired:
                writes.append((address, desired))
        return writes


def _close_leaked_fds(session: _Session) -> None:
    """A memfd an applier stopped short left open in the target: close it."""
    leaked = []
    fds = f"{proc_dir(session.pid)}/fd"
    for name in os.listdir(fds):
        try:
            link = os.readlink(f"{fds}/{name}")
        except OSError:
            continue
        if link.startswith(REGION_PATH):
            leaked.append(int(name))
    if leaked:
        session.syscalls([(SYS_CLOSE, fd) for fd in leaked])


def _remove_leftovers(session: _Session, leftovers: list[AppliedPatch]) -> None:
    """Unmap regions no entry jumps to any more (reconciled in the commit that just ran)."""
    for patch in leftovers:
        _discard_region(session, (patch.region_start, patch.region_end - patch.region_start), patch.control,
                        patch.unwind)


def _register_frames(session: _Session, plan: _Plan) -> None:
    """Register the region's unwind tables (frames.py), on a thread outside the unwinder and allocator."""
    assert plan.unwinder is not None
    session.call(plan.layout.register_thunk, plan.unwinder.avoid)
    if not _frames_registered(session, plan.layout.control):
        raise ProcessError(f"registering the patch's unwind tables with {plan.unwinder.library} in process "
                           f"{session.pid} did not complete")


def _frames_registered(session: _Session, control: int) -> bool:
    try:
        return session.memory.read(control + frames.FLAG_OFFSET, 1) == b"\x01"
    except OSError:  # a leftover whose data part was never mapped: nothing was registered
        return False


def _discard_region(session: _Session, region: tuple[int, int], control: int, thunks: list[int]) -> None:
    """Unmap a region nothing runs; its unwind tables, if registered, are deregistered first: the
    unwinder must never search memory that is gone."""
    if thunks and _frames_registered(session, control):
        unwinder = session.unwinder()
        if unwinder is None:
            raise ProcessError(f"the region at {region[0]:#x} in process {session.pid} has registered unwind "
                               "tables and no unwinder is found to deregister them: it stays mapped")
        session.call(thunks[1], unwinder.avoid)
        if _frames_registered(session, control):
            raise ProcessError(f"deregistering the unwind tables of the region at {region[0]:#x} in process "
                               f"{session.pid} did not complete: it stays mapped")
    session.unmap(*region)


def _reverted_region(records: _Records, patch_id: str) -> AppliedPatch | None:
    """A region of this very patch, reverted, to commit again instead of mapping another.

    Only with nothing applied: its gates then cover exactly what it redirects,
    and their previous paths already run the old functions.  Its variables
    still hold the values they had when it was reverted.
    """
    if records.live is not None:
        return None
    reverted = [p for p in records.all if p.patch_id == patch_id and condition(p, records.all) == "reverted"
                and not p.patch_set  # a set's members share one byte: committing one commits all; map anew
                and not p.migrations]  # its new storage is stale: migrate anew
    return reverted[-1] if reverted else None


def _commit_writes(memory: ptrace.ProcessMemory, members: list[_Member]) -> list[tuple[int, bytes]]:
    """The commit of a patch set, in order, to write with the world stopped; only the one-byte write changes
    what runs.

    Every member's entries jump to its gates first (they still run what ran
    before), then the set's one commit byte is stored, then each member's
    pointers and restored entries are set for later.  What must be set right
    is read now, before the stop: only the applier writes entries.
    """
    before = [(address, desired) for member in members for address, desired in
              member.records.reconcile(memory, {gate.address for gate in member.planned})
              + [(gate.address, jump_bytes(gate.address, gate.gate)) for gate in member.planned]]
    after = [(member.control + gates.CONTROL_HEADER, _pointers(member.planned, after=True)) for member in members]
    after += [(gate.address, gate.original) for member in members for gate in member.planned
              if gate.kind == "restored"]
    return before + [(members[0].control, bytes([gates.COMMITTED]))] + after  # the commit: one byte


@dataclass
class _Member:
    """One patch of a set, in one process: its target, the records of that target, what is prepared."""

    patch: PatchObject
    po_name: str
    target: MappedObject
    records: _Records
    reused: AppliedPatch | None = None  # its own reverted region, committed again
    plan: _Plan | None = None

    @property
    def planned(self) -> list[_Gate]:
        if self.reused is not None:
            return [_Gate.recorded(f) for f in self.reused.functions]
        assert self.plan is not None
        return self.plan.gates

    @property
    def control(self) -> int:
        return self.reused.control if self.reused is not None else self.plan.layout.control  # type: ignore[union-attr]


def apply_patch(patch: PatchObject, pid: int, timeout: float = 5.0, po_name: str = "") -> ApplyReport:
    """Apply *patch* to process *pid*; raise ApplyRefused (target unchanged) when it cannot be done safely."""
    return apply_patch_set([(patch, po_name)], pid, timeout)[0]


def apply_patch_set(patches: list[tuple[PatchObject, str]], pid: int, timeout: float = 5.0) -> list[ApplyReport]:
    """Apply a release's patches for the program and the libraries process *pid* maps, all or none, in one commit.

    Each patch gets its own region near its own target (wherever that
    library is loaded in this process), and all of their gates test one
    commit byte, the first member's: one write turns them all on, and a
    revert of any member turns them all off.  A patch alone is a set of one.
    """
    started = time.perf_counter()
    native.library()  # a bad BUILDHOOK_NATIVE_PAUSE is refused before anything is touched
    check_system(pid)
    members = _members(patches, pid)
    session = _Session(pid, timeout, members[0].target)
    created: list[_Member] = []
    try:
        ids = [member.patch.patch_id for member in members] if len(members) > 1 else []
        for member in members:
            if member.reused is None:
                flag_at = members[0].control if member is not members[0] else 0
                try:
                    member.plan = _prepare(member.patch, pid, member.target, session, member.records.live,
                                           member.records.originals(), member.po_name, flag_at, ids)
                except (RelocationError, SymbolError, gates.GateError) as exc:
                    raise ApplyRefused(str(exc)) from exc
        session.module_frames()  # still deferring (scheduling.py); _commit reads them again if code was mapped
        session.group.seize_all()
        _close_leaked_fds(session)
        try:
            for member in members:
                if member.plan is not None and member.reused is None:
                    _create_region(session, member.plan)
                    created.append(member)
                    if member.plan.unwinder is not None:
                        _register_frames(session, member.plan)
            hooks = _run_member_hooks(session, members, "pre_apply")
            _check_no_pointers_into_moved(session, members)
            busy = [item for member in members
                    for item in _busy_ranges(member.planned, member.records.live, member.records.leftovers)]
            if any(m.kind == "transform" for m in _moved(members)):  # a transform may allocate: no thread
                busy += frames.allocator_code(mapped_objects(pid)).ranges  # may be inside the allocator
            migrated: list[dict[str, object]] = []
            committed, retries = _commit(session, busy, timeout, _commit_writes(session.memory, members),
                                         _migrate_in_stop(session, members, migrated))
        except BaseException:
            if created and session.memory.read(members[0].control, 1) != bytes([gates.COMMITTED]):
                session.group.detach_all()  # not committed: nothing runs these regions; take them away
                for member in created:
                    assert member.plan is not None
                    _discard_region(session, (member.plan.layout.base, member.plan.layout.size),
                                    member.plan.layout.control, member.plan.state.unwind)
            raise
        for member in members:
            _remove_leftovers(session, member.records.leftovers)
        try:
            hooks += _run_member_hooks(session, members, "post_apply")
        except ApplyRefused as exc:
            session.group.detach_all()
            revert_patch(pid, members[0].patch.patch_id, timeout, pre_hooks=False)
            raise ApplyRefused(f"{exc}; the patch was reverted (the old code runs again)") from exc
        total_ms = (time.perf_counter() - started) * 1000
        return [ApplyReport(pid, "applied", member.patch.patch_id,
                            [gate.name for gate in member.planned if gate.kind == "replaced"], committed.pause_us,
                            total_ms, retries, *((hooks, migrated) if member is members[0] else ([], [])),
                            stop=committed.path, pause_phases_us=committed.phases,
                            deferred_ms=scheduling.deferred_seconds() * 1000)
                for member in members]
    finally:
        session.close()


def _run_member_hooks(session: _Session, members: list[_Member], kind: str) -> list[dict[str, object]]:
    """One kind of hook of every member, in order (a reused region: its recorded hooks)."""
    return _run_hooks(session, [member.plan.hooks if member.plan is not None and member.reused is None
                                else Hooks.from_record(member.reused.hooks if member.reused else {})
                                for member in members], kind)


def _run_hooks(session: _Session, hook_sets: list[Hooks], kind: str) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    for hooks in hook_sets:
        try:
            results += run_hooks(hooks.by_kind.get(kind, []), kind, session.hook_call)
        except HookFailed as exc:
            done = "nothing was changed" if kind.startswith("pre") else "it ran after the commit"
            raise ApplyRefused(f"{exc} in process {session.pid}; {done}") from exc
    return results


MIGRATION_SCAN_LIMIT = 16 << 30  # resident writable bytes read (before the stop) to look for pointers to moved data


def _moved(members: list[_Member]) -> list[Migration]:
    return [m for member in members if member.plan is not None and member.reused is None
            for m in member.plan.migrations if not m.done_before]


def _moved_ranges(moved: list[Migration]) -> RangeSet:
    return RangeSet(sorted((BusyRange(m.old, m.old + max(m.old_size, 1), f"{m.name} ({m.file})") for m in moved),
                           key=lambda r: r.start))


def _pointer_refusal(pid: int, label: str, address: int) -> ApplyRefused:
    mapping = next((m for m in read_maps(pid) if m.start <= address < m.end), None)
    place = f" ({mapping.path or 'anonymous memory'})" if mapping is not None else ""
    return ApplyRefused(f"variable {label} cannot move to new storage: a word at {address:#x}{place} points into "
                        "it, and would keep reaching the old one; nothing was changed")


def _check_no_pointers_into_moved(session: _Session, members: list[_Member]) -> None:
    """No word of the process's writable memory (heap, data, other threads' stacks…) may point into a
    variable about to move: it would keep reaching the old storage.

    Read before the commit's stop, but for the threads' stacks: their dead
    parts hold stale words (a frame that has returned), so their mappings
    (found in a brief stop, by each thread's stack pointer) are left out
    here, and their live parts and the registers are checked in the commit's
    stop (_pointers_in_stacks).  A word that only looks like such a pointer
    refuses too, which is safe.
    """
    moved = _moved(members)
    if not moved:
        return
    session.group.seize_all()
    try:
        session.group.stop_all()
    except ThreadWontStop as exc:
        raise ApplyRefused(f"{exc}, so the process's memory cannot be checked for pointers into variables about "
                           "to move; nothing was changed") from exc
    try:
        registers = [ptrace.get_registers(tid).rsp for tid in session.group.stopped]
    finally:
        session.group.resume_all()
    index = MapIndex(read_maps(session.pid))
    stacks = tuple({(m.start, m.end) for rsp in registers if (m := index.find(rsp)) is not None})
    found = find_pointer(session.pid, _moved_ranges(moved), skip=tuple((m.old, m.old + m.old_size) for m in moved)
                         + stacks, limit=MIGRATION_SCAN_LIMIT)
    if isinstance(found, str):
        raise ApplyRefused(f"variables cannot be moved to new storage unchecked: {found}; nothing was changed")
    if found is not None:
        raise _pointer_refusal(session.pid, found[0].label, found[1])


def _pointers_in_stacks(pid: int, moved: list[Migration], registers: dict[int, ptrace.Registers],
                        stacks: dict[int, tuple[int, int]]) -> None:
    """The commit's stop: no register and no word of a live stack may point into a variable about to move."""
    ranges = _moved_ranges(moved)
    for regs in registers.values():
        for value in regs.values:
            hit = ranges.find(value)
            if hit is not None:
                raise ApplyRefused(f"variable {hit.label} cannot move to new storage: a thread holds a pointer "
                                   "into it in a register; nothing was changed")
    for (start, _size), data in zip(stacks.values(), ptrace.read_ranges(pid, list(stacks.values()))):
        found = find_word(data, ranges)
        if found is not None:
            raise _pointer_refusal(pid, found[1].label, start + found[0])


def _migrate_in_stop(session: _Session, members: list[_Member], outcomes: list[dict[str, object]]) \
        -> Callable[[dict[int, ptrace.Registers], dict[int, tuple[int, int]]], None] | None:
    """What runs with the world stopped, right before the commit's writes: every member's migrations
    (None without any: the pause then commits in one native call)."""
    migrations = [m for member in members if member.plan is not None and member.reused is None
                  for m in member.plan.migrations]
    moved = _moved(members)
    if not migrations:
        return None

    def run(registers: dict[int, ptrace.Registers], stacks: dict[int, tuple[int, int]]) -> None:
        if moved:
            _pointers_in_stacks(session.pid, moved, registers, stacks)
        try:
            outcomes[:] = migrate(migrations, session.memory.read, session.memory.write, session.call_stopped)
        except MigrationRefused as exc:
            raise ApplyRefused(f"{exc}; nothing was changed") from exc

    return run


def _members(patches: list[tuple[PatchObject, str]], pid: int) -> list[_Member]:
    """The set's patches with their targets in *pid*; refused as a whole if any cannot be applied."""
    members: list[_Member] = []
    seen: set[str] = set()
    for patch, po_name in patches:
        if patch.target_build_id in seen:
            raise ApplyRefused(f"two patches of the set target build-id {patch.target_build_id}; apply them "
                               "one after the other")
        seen.add(patch.target_build_id)
        target = find_target(pid, patch.target_build_id)
        records = _Records.read(pid, patch.target_build_id)
        if records.live is not None and records.live.patch_id == patch.patch_id:
            if len(patches) > 1:
                continue  # a release's set after one that did not change this binary: nothing to do for it
            raise ApplyRefused(f"patch {patch.patch_id[:16]} is already applied to process {pid}")
        reused = _reverted_region(records, patch.patch_id) if len(patches) == 1 else None
        members.append(_Member(patch, po_name, target, records, reused))
    if not members:
        raise ApplyRefused(f"every patch of the set is already applied to process {pid}")
    return members


def _commit(session: _Session, busy: list[BusyRange], timeout: float, writes: list[tuple[int, bytes]],
            in_stop: Callable[[dict[int, ptrace.Registers], dict[int, tuple[int, int]]], None] | None = None) \
        -> tuple[_Committed, int]:
    """Stop the world until it is safe, then make the *writes* (in order) and let every thread go (detached).

    Returns (the pause: µs, how the world was stopped ("native",
    "native+python" or "python") and its phases; retries); raises ApplyRefused, naming the busy
    functions and threads, when it is still not safe after *timeout*.
    Everything the check needs is prepared before the stop: the unwind
    tables, the map index, the busy ranges, the probes.  *in_stop* runs
    once it is safe, right before the writes (migrations); if it raises,
    the world goes on unchanged.

    With the native pause (native.py) one call stops, checks and, when
    every thread is clean, commits; a thread it cannot clear (a stack word
    in a busy range, a signal frame) is looked at here, precisely, with the
    world still stopped, exactly as the Python pause looks at every thread.
    """
    mappings = read_maps(session.pid)
    frames = session.module_frames(mappings)
    maps = MapIndex(mappings)
    ranges = RangeSet(busy)
    session.group.seize_all()
    fast = native.library() is not None
    probes = _probe_threads(session, ranges, frames, maps) if fast else {}
    with contextlib.ExitStack() as scope:
        scratch = scope.enter_context(native.Scratch(session.pid, probes, len(session.group.seized))) if fast \
            else None
        stop = _Stop(session, ranges, frames, maps, probes, writes, in_stop, fast, time.monotonic() + timeout,
                     timeout, scratch)
        retries = 0
        while True:
            outcome = stop.attempt()
            if isinstance(outcome, _Committed):
                return outcome, retries
            retries += 1
            if outcome is None:  # a thread would not stop: the others went on
                time.sleep(_after_late_stop())
                continue
            found, held = outcome
            _wait_for_a_change(session.pid, found, stop.deadline, held)


class _Committed(NamedTuple):
    pause_us: float
    path: str  # "native", "native+python", "python"
    phases: dict[str, float]  # µs by phase, in order (native.Stopped.phases; "python": the precise look)


@dataclass
class _Stop:
    """One commit's stops of the world: everything prepared for them, and one attempt at a time."""

    session: _Session
    ranges: RangeSet
    frames: ModuleFrames
    maps: MapIndex
    probes: dict[int, native.Probe]
    writes: list[tuple[int, bytes]]
    in_stop: Callable[[dict[int, ptrace.Registers], dict[int, tuple[int, int]]], None] | None
    fast: bool  # the native pause
    deadline: float
    timeout: float
    scratch: native.Scratch | None  # with the native pause

    def attempt(self) -> _Committed | tuple[list[BusyThread], float] | None:
        """Committed; or (busy threads, seconds held) when the world went on because of them; or None
        when a thread would not stop.  Raises ApplyRefused at the deadline.

        On a machine with no CPU to spare the whole attempt runs at real-time priority, from before
        the first interrupt to the last detach, the precise look in Python included (scheduling.py);
        otherwise only from the moment every thread has stopped (scheduling.precedence), and on a
        machine where nothing else runs not at all."""
        others = scheduling.others_running()
        with scheduling.precedence() if scheduling.no_cpu_to_spare(others) else contextlib.nullcontext():
            return self._attempt(not scheduling.nobody_else_running(others))

    def _attempt(self, precedence_in_pause: bool) -> _Committed | tuple[list[BusyThread], float] | None:
        session = self.session
        phases: dict[str, float] = {}  # of the native call
        try:
            if self.fast:
                one_call = self.in_stop is None and self.frames.switches_stacks is None
                stopped = _stop_native(session, self.ranges, self.frames, self.maps, self.probes,
                                       self.writes if one_call else None, self.scratch, precedence_in_pause)
                first_stop = stopped.started_ns
                phases = stopped.phases
                if stopped.result == native.COMMITTED:
                    return _Committed((stopped.ended_ns - first_stop) / 1000, "native", stopped.phases)
                registers, stacks = stopped.registers, stopped.stacks
                unclear = set(stopped.unclear())
            else:
                first_stop = session.group.stop_all()
                registers = {tid: ptrace.get_registers(tid) for tid in session.group.stopped}
                stacks = stack_ranges(registers, self.maps)
                unclear = set(registers)
        except ThreadWontStop as exc:
            if time.monotonic() >= self.deadline:
                raise ApplyRefused(f"{exc} (tried for {self.timeout:g} s); nothing was changed") from exc
            return None
        with scheduling.precedence():  # every thread is stopped: the rest of the pause waits for no one
            return self._check_and_commit(first_stop, registers, stacks, unclear, phases)

    def _check_and_commit(self, first_stop: int, registers: dict[int, ptrace.Registers],
                          stacks: dict[int, tuple[int, int]], unclear: set[int],
                          phases: dict[str, float]) -> _Committed | tuple[list[BusyThread], float]:
        """The world held: the threads not yet cleared looked at precisely, then the commit, or the world
        let go.  *phases*: the native call's, to which the precise look and the commit are added."""
        session = self.session
        if len(stacks) != len(registers):
            self.maps = MapIndex(read_maps(session.pid))  # a new thread's stack: the map changed
            stacks = stack_ranges(registers, self.maps)
        looked = {tid: registers[tid] for tid in unclear}
        found = busy_threads(session.pid, looked, {tid: stacks[tid] for tid in looked if tid in stacks},
                             self.ranges, self.frames, self.maps, every_thread=registers)
        if found:
            session.group.resume_all()
            held = (time.perf_counter_ns() - first_stop) / 1e9
            if time.monotonic() >= self.deadline:
                names = sorted({item.label for item in found})
                threads = ", ".join(f"{item.tid} ({item.label}, {item.where})" for item in found)
                raise ApplyRefused(f"busy after {self.timeout:g} s: {', '.join(names)} always in use "
                                   f"(threads {threads}); nothing was changed")
            return found, held
        if self.in_stop is not None:
            try:
                self.in_stop(registers, stacks)  # migrations: may refuse, then nothing was written
            except BaseException:
                session.group.resume_all()
                raise
        if not self.fast:
            for address, data in self.writes:
                session.memory.write(address, data)
            session.group.detach_all()
            return _Committed((time.perf_counter_ns() - first_stop) / 1000, "python", {})
        done = _commit_native(session, self.writes)
        looked = (done.started_ns - first_stop) / 1000 - sum(phases.values())
        return _Committed((done.ended_ns - first_stop) / 1000, "native+python",
                          {**phases, "python": looked, **done.phases})


def _stop_native(session: _Session, ranges: RangeSet, module_frames: ModuleFrames, maps: MapIndex,
                 probes: dict[int, native.Probe], writes: list[tuple[int, bytes]] | None,
                 scratch: native.Scratch | None, precedence: bool) -> native.Stopped:
    """The native pause: every thread stopped and checked, committed and detached when all are clean.

    A thread started meanwhile is seized and the call made again (the
    others stay stopped; the pause counts from the first call, the calls
    before the last are its phase "new threads").  Raises
    ThreadWontStop (every other thread let go) as ThreadGroup.stop_all does.
    """
    group = session.group
    first: int | None = None
    use_sigchld = signal.getsignal(signal.SIGCHLD) in (signal.SIG_DFL, None)
    while True:
        stopped = native.pause(group, session.memory, memory_pid(session.pid),
                               [(item.start, item.end) for item in ranges.ranges], sorted(module_frames.restorers),
                               [(item.start, item.end) for item in maps.maps], writes, probes, STOP_BUDGET_S,
                               use_sigchld, scratch, precedence)
        first = stopped.started_ns if first is None else first
        if stopped.started_ns != first:
            stopped.phases = {"new threads": (stopped.started_ns - first) / 1000, **stopped.phases}
        stopped.started_ns = first
        if stopped.result == native.LATE:
            if group.drop_exited_leader(stopped.late):
                continue  # pthread_exit in main meanwhile: it is left out, the others stay stopped
            refused = group.wont_stop(stopped.late, STOP_BUDGET_S)
            group.resume_all()
            raise refused
        if stopped.result == native.ERROR:
            if stopped.failed_write >= 0:  # stopped, partly written: as a failed write of the Python pause
                raise ptrace.PtraceError(f"writing process {session.pid} in the pause (write "
                                         f"{stopped.failed_write}): {os.strerror(stopped.error)}", stopped.error)
            group.resume_all()
            raise ProcessError(f"stopping process {session.pid}: {os.strerror(stopped.error)}")
        if stopped.result == native.HELD and stopped.new_threads:
            group.seize_all()  # a thread started before its creator stopped: stop it too
            continue
        return stopped


def _commit_native(session: _Session, writes: list[tuple[int, bytes]]) -> native.Stopped:
    """The writes and the detaches of a world held and found clean here, at C speed; a failed write
    raises as the Python pause's does (the world still stopped, session.close lets it go)."""
    done = native.commit(session.group, session.memory, writes)
    if done.result != native.COMMITTED:
        raise ptrace.PtraceError(f"writing process {session.pid} in the pause (write {done.failed_write}): "
                                 f"{os.strerror(done.error)}", done.error)
    session.group.detach_all()  # nothing is stopped now: a thread the commit did not know (none) is let go
    return done


def _probe_threads(session: _Session, ranges: RangeSet, module_frames: ModuleFrames,
                   maps: MapIndex) -> dict[int, native.Probe]:
    """Before the pause, each thread on its own: the ones only a precise unwind finds clean, as probes.

    A thread idle in a system call keeps stale return addresses of earlier
    calls in its live frames; unwinding it precisely in the pause would be
    most of the pause.  Each thread is stopped alone for a moment (the
    others run), and one whose stack holds such a word but unwinds clean is
    kept as a probe: in the pause, the same registers and the same stack
    bytes mean the same answer, checked with one comparison.  Every probed
    stack is unwound once too (safety.learn_frames), so that the rules of
    its call chains are ready when the pause must unwind a thread that ran.
    """
    probes: dict[int, native.Probe] = {}
    group = session.group
    for tid in sorted(group.seized - group.stopped):
        try:
            group.stop(tid)
        except ThreadWontStop:
            continue
        try:
            registers = ptrace.get_registers(tid)
            stack = stack_ranges({tid: registers}, maps).get(tid)
            data = ptrace.read_ranges(memory_pid(session.pid), [stack])[0] if stack else b""
            rseq = ptrace.rseq_area(tid)
        finally:
            if tid in group.stopped:
                group.resume(tid)
        if not stack or len(data) != stack[1]:
            continue
        learn_frames(module_frames, registers, stack[0], data)
        if clean_precisely(session.pid, module_frames, registers, stack[0], data, ranges):
            probes[tid] = native.Probe(registers, stack[0], data, rseq)
    return probes


WATCH_INTERVAL_S = 0.001


def _wait_for_a_change(pid: int, found: list[BusyThread], deadline: float, held: float) -> None:
    """Wait until a busy thread may have left the code that is busy, without stopping the process.

    A thread blocked in a system call shows it in /proc/PID/task/TID/syscall
    (number, arguments, stack pointer, PC): while that line stays the same
    the thread has not moved, its busy frame is still live, and checking
    again would only stop the process for nothing.  The line changes the
    moment the call returns, and the check runs again at once: the patch is
    applied as soon as the frame has returned.  A running thread, or a hit
    in memory (a parked coroutine), cannot be watched so: the check is
    retried after RETRY_PAUSE_S, or ten times as long as the last check held
    the process stopped (*held*: a memory scan can take a while), so that
    the process runs >90% of the time meanwhile.  (A breakpoint on the return address, as
    libcare sets, would be quicker for those, but it outlives the applier:
    were it killed, the thread would die of the SIGTRAP.)
    """
    watched = {item.tid: task_file(pid, item.tid, "syscall") for item in found}
    if not found or any(item.where not in ("pc", "stack") for item in found) or \
            any(line in (None, "running") or line.startswith("-1") for line in watched.values()):
        time.sleep(max(RETRY_PAUSE_S, RUNNING_SHARE * held))
        return
    while time.monotonic() < deadline:
        time.sleep(WATCH_INTERVAL_S)
        if any(task_file(pid, tid, "syscall") != line for tid, line in watched.items()):
            return


# -- revert and status ---------------------------------------------------------------


def revert_patch(pid: int, patch_id: str | None = None, timeout: float = 5.0,
                 pre_hooks: bool = True) -> list[ApplyReport]:
    """Send every entry the patch (and its set: they share one commit byte) redirected back to the old code;
    the regions stay mapped.

    The commit is one byte (reverted): from then on the gates run the old
    functions, and the entries get their original bytes back in the same
    stop.  The regions stay: the process may hold pointers into them.
    PRE_REVERT hooks run first (non-zero refuses; not when *pre_hooks* is
    false: the revert after a failed POST_APPLY hook), POST_REVERT hooks
    after.  A variable migrated because its initial value changed gets the
    value the new code left (same size); other migrated variables keep what
    they held when the patch was applied.
    """
    started = time.perf_counter()
    native.library()  # a bad BUILDHOOK_NATIVE_PAUSE is refused before anything is touched
    check_system(pid)
    patches = _recorded(pid)
    applied = [p for p in patches if condition(p, patches) == "applied"]
    if not applied:
        raise ApplyRefused(f"process {pid} has no buildhook patch applied")
    chosen = [p for p in applied if patch_id is None or p.patch_id.startswith(patch_id)]
    if not chosen:
        raise ApplyRefused(f"patch {patch_id} is not applied to process {pid} "
                           f"(applied: {', '.join(p.patch_id[:16] for p in applied)})")
    members = [p for p in applied if p.commit_flag == chosen[-1].commit_flag]
    # the target, for the unwinder that deregisters a leftover's tables (through its GOT first)
    session = _Session(pid, timeout, find_target(pid, members[0].target_build_id))
    memory = session.memory
    try:
        session.module_frames()  # still deferring (scheduling.py); _commit reads them again if code was mapped
        session.group.seize_all()
        _close_leaked_fds(session)
        after, fixes, busy, leftovers = [], [], [], []
        for patch in members:
            records = _Records.of_build(patches, patch.target_build_id)
            after.append((patch.control + gates.CONTROL_HEADER,  # previous path: the old functions
                          b"".join(struct.pack("<QQ", f.destination, f.copy) for f in patch.functions)))
            records.live = None  # what the entries must run once this commit is done: the old code
            fixes += records.reconcile(memory, set())  # read before the stop: only the applier writes entries
            busy += _busy_ranges([], patch, records.leftovers)
            leftovers += records.leftovers

        writes = after + [(members[0].commit_flag, bytes([gates.REVERTED]))] + fixes  # the commit: one byte

        hooks = _run_recorded_hooks(session, members, "pre_revert") if pre_hooks else []
        moved_back = [(old, new, size) for patch in members for _name, _file, kind, old, new, size in patch.migrations
                      if kind == "value"]

        def copy_back(_registers: dict, _stacks: dict) -> None:
            for old, new, size in moved_back:
                memory.write(old, memory.read(new, size))

        committed, retries = _commit(session, busy, timeout, writes, copy_back if moved_back else None)
        _remove_leftovers(session, leftovers)
        try:
            hooks += _run_recorded_hooks(session, members, "post_revert")
        except ApplyRefused as exc:
            raise ApplyRefused(f"{exc}; the revert itself is done (the old code runs)") from exc
        total_ms = (time.perf_counter() - started) * 1000
        return [ApplyReport(pid, "reverted", patch.patch_id, [f.name for f in patch.replaced_functions],
                            committed.pause_us, total_ms, retries, hooks, stop=committed.path,
                            pause_phases_us=committed.phases, deferred_ms=scheduling.deferred_seconds() * 1000)
                for patch in members]
    finally:
        session.close()


def _run_recorded_hooks(session: _Session, patches: list[AppliedPatch], kind: str) -> list[dict[str, object]]:
    return _run_hooks(session, [Hooks.from_record(patch.hooks) for patch in patches], kind)


def _recorded(pid: int) -> list[AppliedPatch]:
    """Every patch record of *pid* with its flag; a record this buildhook cannot read is one line."""
    try:
        return recorded_patches(pid)
    except ValueError as exc:
        raise ProcessError(f"process {pid}: {exc}") from exc


def patch_status(pid: int) -> list[AppliedPatch]:
    """Every patch record of *pid* with its flag (raises ProcessError for a missing process)."""
    read_maps(pid)
    return _recorded(pid)


__all__ = ["ApplyRefused", "ApplyReport", "TraceDenied", "apply_patch", "apply_patch_set", "patch_status",
           "revert_patch"]
