"""boost.context's saved contexts, found precisely before the pause (for the activeness check, safety.py).

A process that switches user-level stacks keeps the frames of every parked
coroutine in memory no thread's stack pointer leads to.  Without knowing the
switching code, safety.py can only scan all writable memory for words into
the changed code, and a stale word (the unused part of a coroutine stack, a
finished coroutine's stack the allocator kept) blocks the patch until the
timeout: pdns-recursor's MTasker refused every patch to a hot function.

boost.context (``jump_fcontext``, ``ontop_fcontext``, ``make_fcontext``,
x86-64 System V, as in 1.61 to 1.74 without shadow stacks) saves a context on
the stack it leaves: ``jump_fcontext`` reserves 0x38 bytes below the
return address its caller pushed and stores there, at the saved context S,
MXCSR and the x87 control word, then r12, r13, r14, r15, rbx and rbp (S+8 to
S+0x30); the return address is at S+0x38, and the context resumes with rsp =
S+0x40.  ``make_fcontext`` prepares a context that has never run: its return
address is the library's *trampoline* (``push %rbp; jmp *%rbx``: the context
function is entered at its first byte, so through the new jump) and its rbp
the library's *finish* (``_exit(0)``), the return address of the context
function, the bottom of every coroutine's chain.

So every parked context holds, at S+0x38, either the return address of a
call to ``jump_fcontext``/``ontop_fcontext`` (a *return site*), the
trampoline, or finish.  Before the pause this module verifies the library's
code is that layout, and finds every return site: direct calls to the
function or to the PLT stubs of its ``R_X86_64_JUMP_SLOT`` relocations, and
indirect calls through that GOT slot, in every loaded object that imports or
defines it.  In the pause, safety.py looks for return-site words in all
writable memory and unwinds each candidate context precisely from its saved
registers (unwind.py): a stale word, in no live chain, no longer counts.

Anything it cannot account for keeps the conservative memory scan, with the
reason in the refusal: other stack-switching imports (``swapcontext``…),
other code in ``jump_fcontext``, the address of a switching function taken
(a ``lea`` or ``mov`` of it or its GOT slot, a data relocation, an absolute
reference in a non-PIE program: a call through a register has a return
site this module cannot know), a tail jump to it from a function that may be
entered through a pointer.  A tail jump (``jmp jump_fcontext``) saves the
return address of the function F it leaves: finish (an empty chain) when
make_fcontext's trampoline entered F, or the return site of a direct call of
F.  So F must not be exported or stored in data, no jump may go to it, and
its address may be loaded (``lea``) only in functions that call
make_fcontext (boost.context's ``context-function`` ends with such a final
jump: pdns-recursor's ``threadWrapper``).
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from typing import NamedTuple

from elftools.elf.elffile import ELFFile

from buildhook.apply.process import MappedObject
from buildhook.apply.unwind import EhFrame, UnwindError
from buildhook.elf.dynsym import (
    R_X86_64_64,
    R_X86_64_GLOB_DAT,
    R_X86_64_JUMP_SLOT,
    R_X86_64_RELATIVE,
    DynamicRelocation,
    dynamic_exports,
    dynamic_relocations,
)

SWITCHES = ("jump_fcontext", "ontop_fcontext")  # save the current context: their callers are return sites
MAKE = "make_fcontext"
FCONTEXT = frozenset({*SWITCHES, MAKE})
ENDBR64 = bytes.fromhex("f30f1efa")
# leaq -0x38(%rsp),%rsp; stmxcsr (%rsp); fnstcw 0x4(%rsp); r12..rbp to 0x8..0x30(%rsp); movq %rsp,%rax;
# movq %rdi,%rsp: the save, then the switch to the target context.
SAVE = bytes.fromhex("488d6424c8" "0fae1c24" "d97c2404" "4c89642408" "4c896c2410" "4c89742418"
                     "4c897c2420" "48895c2428" "48896c2430" "4889e0" "4889fc")
SAVED_CODE = {"jump_fcontext": SAVE, "ontop_fcontext": bytes.fromhex("4989d0") + SAVE}  # movq %rdx,%r8 first
# movq %rdi,%rax; andq $-16,%rax; leaq -0x40(%rax),%rax; movq %rdx,0x28(%rax); stmxcsr (%rax);
# fnstcw 0x4(%rax); leaq trampoline(%rip),%rcx; movq %rcx,0x38(%rax); leaq finish(%rip),%rcx;
# movq %rcx,0x30(%rax); ret
MAKE_CODE = re.compile(re.escape(bytes.fromhex("4889f8" "4883e0f0" "488d40c0" "48895028" "0fae18" "d97804"
                                               "488d0d")) + b"(....)" + re.escape(bytes.fromhex("48894838" "488d0d"))
                       + b"(....)" + re.escape(bytes.fromhex("48894830" "c3")), re.S)
TRAMPOLINE_CODE = bytes.fromhex("55ffe3")      # pushq %rbp; jmp *%rbx
FINISH_CODE = bytes.fromhex("4831ffe8")        # xorq %rdi,%rdi; call _exit
# A saved context S: MXCSR and x87 control word, r12, r13, r14, r15, rbx, rbp, the return address; the
# context resumes with rsp just above it (S + SAVED.size).
SAVED = struct.Struct("<8Q")
RETURN_OFFSET = 0x38
PLT_SECTIONS = {".plt": 16, ".plt.sec": 16, ".plt.got": 8}  # entry alignment
THROUGH_SLOT = re.compile(rb"\xff[\x15\x25]", re.S)                    # call/jmp *disp32(%rip)
# (opcode bytes, offset of the rel32/disp32, instruction length): call/jmp rel32, jcc rel32, through memory
NEAR_BRANCHES = ((re.compile(rb"[\xe8\xe9]", re.S), 1, 5), (re.compile(rb"\x0f[\x80-\x8f]", re.S), 2, 6),
                 (THROUGH_SLOT, 2, 6))
RIP_LOAD = re.compile(rb"[\x8b\x8d][\x05\x0d\x15\x1d\x25\x2d\x35\x3d]", re.S)  # mov/lea disp32(%rip), reg


class Unsupported(Exception):
    """The process's stack switching is not the layout this module knows: the conservative scan stays."""


@dataclass(frozen=True)
class SavedContexts:
    """Run-time addresses that tell a boost.context saved context by the word at its S+0x38.

    ``return_sites``: after a call that saves a context (S+0x38 of a parked
    context); ``finishes``: the bottom of every coroutine chain (the context
    function's return address, and what a context saved by its final tail
    jump holds at S+0x38).  A context never run holds the trampoline there:
    it is no candidate, and its function starts at its first byte.
    """

    return_sites: frozenset[int]
    finishes: frozenset[int]


@dataclass
class _Module:
    """One object's view of the switching functions: where calls to them go, and its relocations."""

    item: MappedObject
    elf: ELFFile
    definitions: dict[str, int]        # name → link-time address (the defining library)
    slots: dict[int, str]              # GOT slot (link-time) → name, for JUMP_SLOT relocations
    stubs: dict[int, str]              # PLT stub (link-time) → name
    skipped: list[tuple[int, int]]     # [start, end) of the PLT sections (their jumps are the stubs) and of the
                                       # switching functions' own code: neither holds a call that saves a context
    relocations: list[DynamicRelocation]
    exported: frozenset[int]           # link-time addresses of the functions and data it exports
    _frames: EhFrame | None = None

    def function_start(self, address: int) -> int | None:
        """The start of the FDE covering link-time *address* (its function, or that function's .cold
        part), if any."""
        if self._frames is None:
            try:
                self._frames = EhFrame.of(self.elf, self.item.file_bytes)
            except UnwindError:
                return None
        return self._frames.function_start(address)


def find_saved_contexts(objects: list[MappedObject], imports: dict[str, set[str]]) -> SavedContexts:
    """What marks a saved context in this process; raises Unsupported with the reason when unknown.

    *imports*: each counted object's (path → imported stack-switching names).
    """
    other = sorted({name for names in imports.values() for name in names} - FCONTEXT)
    if other:
        raise Unsupported(f"the process imports {', '.join(other)}")
    modules = [_module(item) for item in objects if item.path in imports or b"jump_fcontext" in item.file_bytes]
    definers = [module for module in modules if "jump_fcontext" in module.definitions]
    if len(definers) != 1:
        raise Unsupported(f"{len(definers)} loaded objects define jump_fcontext")
    finish = _verify_library(definers[0])
    return_sites: set[int] = set()
    for module in modules:
        return_sites |= _return_sites(module)
    return SavedContexts(frozenset(return_sites), frozenset({finish}))


def _module(item: MappedObject) -> _Module:
    elf = ELFFile(io.BytesIO(item.file_bytes))
    exports = dynamic_exports(item.file_bytes)
    definitions = {name: exports[name].value for name in FCONTEXT if name in exports}
    own = [(exports[name].value, exports[name].value + exports[name].size) for name in definitions]
    relocations = dynamic_relocations(item.file_bytes)
    slots = {relocation.offset: relocation.symbol for relocation in relocations
             if relocation.kind == R_X86_64_JUMP_SLOT and relocation.symbol in FCONTEXT}
    stubs: dict[int, str] = {}
    plt = []
    for name, alignment in PLT_SECTIONS.items():
        section = elf.get_section_by_name(name)
        if section is None:
            continue
        code, vaddr = section.data(), section.header.sh_addr
        plt.append((vaddr, vaddr + len(code)))
        for match in THROUGH_SLOT.finditer(code):
            if match.group()[1] == 0x25 and match.start() + 6 <= len(code):
                target = vaddr + match.start() + 6 + struct.unpack_from("<i", code, match.start() + 2)[0]
                if target in slots:
                    stubs[(vaddr + match.start()) & -alignment] = slots[target]
    return _Module(item, elf, definitions, slots, stubs, plt + own, relocations,
                   frozenset(export.value for export in exports.values()))


def _verify_library(module: _Module) -> int:
    """The run-time address of finish, after checking the switching functions are the known layout (the
    trampoline too: it makes finish the context function's return address)."""
    for name in ("jump_fcontext", MAKE):
        if name not in module.definitions:
            raise Unsupported(f"{module.item.path} does not define {name}")
    for name, expected in SAVED_CODE.items():
        if name not in module.definitions:
            continue
        code = _code_at(module, module.definitions[name], len(expected) + len(ENDBR64))
        if not code.removeprefix(ENDBR64).startswith(expected):
            raise Unsupported(f"{name} in {module.item.path} is not the boost.context code known")
    make = module.definitions[MAKE]
    code = _code_at(module, make, 80).removeprefix(ENDBR64)
    skipped = 4 if _code_at(module, make, 4) == ENDBR64 else 0
    match = MAKE_CODE.match(code)
    if match is None:
        raise Unsupported(f"{MAKE} in {module.item.path} is not the boost.context code known")
    trampoline = make + skipped + match.end(1) + struct.unpack("<i", match.group(1))[0]
    finish = make + skipped + match.end(2) + struct.unpack("<i", match.group(2))[0]
    if _code_at(module, trampoline, 7).removeprefix(ENDBR64)[:3] != TRAMPOLINE_CODE:
        raise Unsupported(f"the trampoline of {MAKE} in {module.item.path} is not the code known")
    if _code_at(module, finish, 8).removeprefix(ENDBR64)[:4] != FINISH_CODE:
        raise Unsupported(f"the finish of {MAKE} in {module.item.path} is not the code known")
    return module.item.bias + finish


def _code_at(module: _Module, vaddr: int, size: int) -> bytes:
    for segment in module.elf.iter_segments("PT_LOAD"):
        header = segment.header
        if header.p_vaddr <= vaddr < header.p_vaddr + header.p_filesz:
            offset = header.p_offset + vaddr - header.p_vaddr
            return module.item.file_bytes[offset:offset + size]
    return b""


def _return_sites(module: _Module) -> set[int]:
    """Run-time return sites of every call in *module* that saves a context; raises Unsupported when a
    context could be saved with a return address not found here."""
    path = module.item.path
    for relocation in module.relocations:
        if relocation.kind in (R_X86_64_64, R_X86_64_GLOB_DAT) and relocation.symbol in SWITCHES:
            raise Unsupported(f"{path} takes the address of {relocation.symbol}")
    switch_targets = {address for address, name in module.stubs.items() if name in SWITCHES}
    switch_targets |= {module.definitions[name] for name in SWITCHES if name in module.definitions}
    make_targets = {address for address, name in module.stubs.items() if name == MAKE}
    make_targets |= {module.definitions[MAKE]} if MAKE in module.definitions else set()
    slots = {slot for slot, name in module.slots.items() if name in SWITCHES}
    if any(r.addend in switch_targets for r in module.relocations if r.kind == R_X86_64_RELATIVE):
        raise Unsupported(f"{path} stores the address of a context switch in data")
    code = _Code(module)
    sites: set[int] = set()
    tail_jumps: list[int] = []
    for branch in code.to(switch_targets | slots):
        if any(start <= branch.address < end for start, end in module.skipped):
            continue  # a PLT stub, or bytes of jump_fcontext itself
        (sites.add(branch.end) if branch.call else tail_jumps.append(branch.address))
    for address, _opcode, target in code.loads:
        if target in switch_targets or target in slots:
            raise Unsupported(f"{path} loads the address of a context switch at {address:#x}")
    if module.elf.header.e_type == "ET_EXEC" and any(struct.pack("<I", target) in data
                                                     for target in switch_targets for _v, data in code.segments):
        raise Unsupported(f"{path} may refer to a context switch by its absolute address")
    for address in tail_jumps:
        sites |= _tail_jump_sites(module, code, address, make_targets)
    return {module.item.bias + site for site in sites}


class _Branch(NamedTuple):
    address: int
    end: int       # the return site, for a call
    call: bool
    target: int    # for a jump or call through memory: the address of the slot


class _Code:
    """An object's executable segments, and every call, jump and rip-relative load they may hold.

    Found by opcode bytes, not by disassembly: a byte that only looks like
    one adds a return site (one more candidate to unwind) or a reason to
    stay conservative, never hides a branch.  Calls: ``call rel32`` (e8),
    ``call *disp32(%rip)`` (ff 15); jumps: ``jmp rel32`` (e9), ``jcc rel32``
    (0f 80-8f), ``jmp *disp32(%rip)`` (ff 25), and ``jmp``/``jcc rel8`` (eb,
    70-7f) near the targets asked about; loads: ``mov``/``lea
    disp32(%rip), reg`` (8b/8d).
    """

    def __init__(self, module: _Module) -> None:
        self.segments = [(segment.header.p_vaddr, module.item.file_bytes[
            segment.header.p_offset:segment.header.p_offset + segment.header.p_filesz])
            for segment in module.elf.iter_segments("PT_LOAD") if segment.header.p_flags & 1]
        self.branches: list[_Branch] = []
        self.loads: list[tuple[int, int, int]] = []  # (address, opcode, target)
        unpack = struct.unpack_from
        for vaddr, data in self.segments:
            limit = len(data) - 6
            for pattern, displacement, length in NEAR_BRANCHES:
                for p in (m.start() for m in pattern.finditer(data)):
                    if p <= limit:
                        end = p + length
                        call = data[p] == 0xE8 or data[p:p + 2] == b"\xff\x15"
                        self.branches.append(_Branch(vaddr + p, vaddr + end, call,
                                                     vaddr + end + unpack("<i", data, p + displacement)[0]))
            self.loads += [(vaddr + p, data[p], vaddr + p + 6 + unpack("<i", data, p + 2)[0])
                           for p in (m.start() for m in RIP_LOAD.finditer(data)) if p <= limit]

    def to(self, targets: set[int]) -> list[_Branch]:
        """Every call or jump to one of *targets*, the short jumps (rel8) included."""
        found = [branch for branch in self.branches if branch.target in targets]
        for target in targets:
            for vaddr, data in self.segments:
                for p in range(max(0, target - vaddr - 129), min(len(data) - 1, target - vaddr + 128)):
                    if (data[p] == 0xEB or 0x70 <= data[p] <= 0x7F) and \
                            vaddr + p + 2 + struct.unpack_from("<b", data, p + 1)[0] == target:
                        found.append(_Branch(vaddr + p, vaddr + p + 2, False, target))
        return found


def _tail_jump_sites(module: _Module, code: _Code, jump: int, make_targets: set[int]) -> set[int]:
    """The return sites a context saved by the tail jump at *jump* can hold: the return address of the
    function F it leaves.  That is finish when F is entered by make_fcontext's trampoline, and the return
    site of each direct call of F; raises Unsupported when F may be entered otherwise."""
    path = module.item.path
    start = module.function_start(jump)
    if start is None:
        raise Unsupported(f"{path} jumps to a context switch at {jump:#x}, in no function with an FDE")
    if start in module.exported:
        raise Unsupported(f"{path} jumps to a context switch from the exported function at {start:#x}")
    if any(r.addend == start for r in module.relocations if r.kind == R_X86_64_RELATIVE):
        raise Unsupported(f"{path} jumps to a context switch from a function whose address is in data")
    sites = set()
    for branch in code.to({start}):
        if not branch.call:
            raise Unsupported(f"{path} jumps to a context switch from code it jumps to, at {start:#x}")
        sites.add(branch.end)
    making = {module.function_start(branch.address) for branch in code.to(make_targets) if branch.call}
    loads = [address for address, _opcode, target in code.loads if target == start]
    for address, opcode, target in code.loads:
        if target == start and (opcode != 0x8D or module.function_start(address) not in making):
            raise Unsupported(f"{path} jumps to a context switch from a function whose address it uses "
                              f"at {address:#x} in a function that does not call {MAKE}")
    if not sites and not loads:
        raise Unsupported(f"{path} jumps to a context switch from code entered by no call (at {start:#x})")
    return sites
