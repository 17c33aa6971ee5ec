"""Precise stack unwinding from ``.eh_frame`` (x86-64), for the activeness check.

Why: the conservative scan also sees *stale* return addresses, left in
unused slots of live frames by calls that returned long ago.  A thread
blocked in ``read()`` on an idle connection keeps such a word forever, and a
patch could then never be applied.  Only threads the conservative scan
flags are unwound here; anything this unwinder cannot follow (no FDE, a CFA
expression, code in a patch region) makes the caller keep the conservative
answer, so the check stays sound.

The unwinder reads ``.eh_frame_hdr``'s sorted table to find an FDE, runs the
CIE and FDE call-frame instructions up to the PC (the common subset gcc
and glibc emit), and caches the resulting rule per PC.

A signal handler's frame returns to the signal restorer (glibc's
``__restore_rt``: ``mov $15,%rax; syscall``), whose FDE is a CFA expression
this unwinder does not run.  ``walk`` stops there instead and says where the
kernel's signal frame is; the caller reads the interrupted registers from
the ucontext that follows and unwinds on from them (safety.py).
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

    from buildhook.apply.fcontext import SavedContexts

# DWARF register numbers on x86-64.
RBX, RBP, RSP, R12, R13, R14, R15, RETURN_ADDRESS = 3, 6, 7, 12, 13, 14, 15, 16
CALLEE_SAVED = (RBX, RBP, R12, R13, R14, R15)
MAX_FRAMES = 256


class UnwindError(Exception):
    """This frame cannot be unwound precisely (the caller falls back)."""


class OutsideStack(UnwindError):
    """The unwind needs the word at *address*, outside the bytes read: above them, more of the stack may
    answer."""

    def __init__(self, message: str, address: int) -> None:
        super().__init__(message)
        self.address = address


def _leb128(data: bytes, pos: int, signed: bool) -> tuple[int, int]:
    """A LEB128 number at *pos*: (value, position after it)."""
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if signed and byte & 0x40:
                result -= 1 << shift
            return result, pos


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    return _leb128(data, pos, signed=False)


def _sleb(data: bytes, pos: int) -> tuple[int, int]:
    return _leb128(data, pos, signed=True)


def _encoded(data: bytes, pos: int, encoding: int, vaddr_of_pos: int) -> tuple[int, int]:
    """Read a DW_EH_PE-encoded pointer at *pos* (vaddr_of_pos: its link-time address)."""
    if encoding == 0xFF:
        raise UnwindError("omitted pointer")
    form = encoding & 0x0F
    if form == 0x0B:
        value, end = struct.unpack_from("<i", data, pos)[0], pos + 4
    elif form == 0x03:
        value, end = struct.unpack_from("<I", data, pos)[0], pos + 4
    elif form in (0x00, 0x04):
        value, end = struct.unpack_from("<Q", data, pos)[0], pos + 8
    elif form == 0x0C:
        value, end = struct.unpack_from("<q", data, pos)[0], pos + 8
    elif form == 0x01:
        value, end = _uleb(data, pos)
    elif form == 0x09:
        value, end = _sleb(data, pos)
    elif form == 0x02:
        value, end = struct.unpack_from("<H", data, pos)[0], pos + 2
    else:
        raise UnwindError(f"pointer encoding {encoding:#x}")
    if encoding & 0x70 == 0x10:
        value += vaddr_of_pos
    elif encoding & 0x70 not in (0x00,):
        raise UnwindError(f"pointer application {encoding:#x}")
    return value, end


@dataclass(frozen=True)
class FrameRule:
    """How to find the caller's frame at one PC (precomputed for the pause)."""

    cfa_register: int
    cfa_offset: int
    return_offset: int | None          # where the return address is, from the CFA; None: outermost
    callee_saved: tuple[tuple[int, int], ...]  # (register, offset from CFA) of saved callee-saved registers


class EhFrame:
    """The .eh_frame of one loaded ELF file, indexed by .eh_frame_hdr."""

    def __init__(self, data: bytes, sections: dict[str, tuple[int, int, int]]) -> None:
        """*sections*: name → (link-time address, file offset, size)."""
        self.data = data
        hdr = sections.get(".eh_frame_hdr")
        frame = sections.get(".eh_frame")
        if hdr is None or frame is None:
            raise UnwindError("no .eh_frame_hdr")
        self.frame_vaddr, self.frame_offset, self.frame_size = frame
        hdr_vaddr, hdr_offset, _ = hdr
        version, _frame_enc, count_enc, table_enc = data[hdr_offset:hdr_offset + 4]
        if version != 1 or table_enc != 0x3B:
            raise UnwindError("unsupported .eh_frame_hdr table")
        pos = hdr_offset + 4
        _, pos = _encoded(data, pos, _frame_enc, hdr_vaddr + (pos - hdr_offset))
        count, pos = _encoded(data, pos, count_enc, hdr_vaddr + (pos - hdr_offset))
        table = struct.unpack_from(f"<{2 * count}i", data, pos)
        self.starts = [hdr_vaddr + table[2 * i] for i in range(count)]
        self.fdes = [hdr_vaddr + table[2 * i + 1] for i in range(count)]
        self._rules: dict[int, FrameRule] = {}

    @classmethod
    def of(cls, elf: ELFFile, data: bytes) -> EhFrame:
        """The table of the ELF file *elf* reads (pyelftools, over *data*); raises UnwindError without one."""
        sections = {section.name: (section.header.sh_addr, section.header.sh_offset, section.header.sh_size)
                    for section in elf.iter_sections() if section.name in (".eh_frame", ".eh_frame_hdr")}
        return cls(data, sections)

    def function_start(self, pc: int) -> int | None:
        """The start of the FDE that may cover link-time address *pc* (the function it is in, or its
        .cold part), or None before the first."""
        index = bisect.bisect_right(self.starts, pc) - 1
        return self.starts[index] if index >= 0 else None

    def _file(self, vaddr: int) -> int:
        return self.frame_offset + (vaddr - self.frame_vaddr)

    def rule(self, pc: int) -> FrameRule:
        """The frame rule at link-time address *pc* (cached)."""
        cached = self._rules.get(pc)
        if cached is None:
            cached = self._rules[pc] = self._compute(pc)
        return cached

    def _compute(self, pc: int) -> FrameRule:
        index = bisect.bisect_right(self.starts, pc) - 1
        if index < 0:
            raise UnwindError(f"no FDE for {pc:#x}")
        fde = self._file(self.fdes[index])
        data = self.data
        length = struct.unpack_from("<I", data, fde)[0]
        if length == 0xFFFFFFFF:
            raise UnwindError("64-bit FDE")
        cie = fde + 4 - struct.unpack_from("<I", data, fde + 4)[0]
        code_align, data_align, fde_encoding, initial, cie_end, augmented = self._cie(cie)
        pos = fde + 8
        start, pos = _encoded(data, pos, fde_encoding, self.frame_vaddr + pos - self.frame_offset)
        span, pos = _encoded(data, pos, fde_encoding & 0x0F, 0)
        if not start <= pc < start + span:
            raise UnwindError(f"no FDE covers {pc:#x}")
        if augmented:
            skip, pos = _uleb(data, pos)
            pos += skip
        state = {"cfa": (RSP, 8), "saved": {RETURN_ADDRESS: -8}}
        self._run(data, initial, cie_end, state, start, pc, code_align, data_align, None)
        self._run(data, pos, fde + 4 + length, state, start, pc, code_align, data_align, dict(state["saved"]))
        cfa_register, cfa_offset = state["cfa"]
        saved = state["saved"]
        return FrameRule(cfa_register, cfa_offset, saved.get(RETURN_ADDRESS, -8),
                         tuple(sorted((reg, off) for reg, off in saved.items()
                                      if reg in CALLEE_SAVED and off is not None)))

    def _cie(self, cie: int) -> tuple[int, int, int, int, int, bool]:
        data = self.data
        length = struct.unpack_from("<I", data, cie)[0]
        end = cie + 4 + length
        pos = cie + 9
        augmentation_end = data.index(b"\0", pos)
        augmentation = data[pos:augmentation_end].decode()
        pos = augmentation_end + 1
        code_align, pos = _uleb(data, pos)
        data_align, pos = _sleb(data, pos)
        _ra_register, pos = _uleb(data, pos)
        encoding = 0
        augmented = augmentation.startswith("z")
        if augmented:
            size, pos = _uleb(data, pos)
            after = pos + size
            for letter in augmentation[1:]:
                if letter == "R":
                    encoding = data[pos]
                    pos += 1
                elif letter == "P":
                    personality_encoding = data[pos]
                    _, pos = _encoded(data, pos + 1, personality_encoding & 0x7F,
                                      self.frame_vaddr + pos + 1 - self.frame_offset)
                elif letter == "L":
                    pos += 1
                elif letter in "SB":
                    pass
                else:
                    raise UnwindError(f"CIE augmentation {augmentation!r}")
            pos = after
        return code_align, data_align, encoding, pos, end, augmented

    @staticmethod
    def _run(data: bytes, pos: int, end: int, state: dict, location: int, pc: int, code_align: int,
             data_align: int, initial: dict | None) -> None:
        stack: list[tuple[tuple[int, int], dict]] = []
        while pos < end:
            op = data[pos]
            pos += 1
            high, low = op & 0xC0, op & 0x3F
            if high == 0x40:  # advance_loc
                location += low * code_align
                if location > pc:
                    return
            elif high == 0x80:  # offset
                value, pos = _uleb(data, pos)
                state["saved"][low] = value * data_align
            elif high == 0xC0:  # restore
                if initial is not None and low in initial:
                    state["saved"][low] = initial[low]
                else:
                    state["saved"].pop(low, None)
            elif op == 0x00:  # nop
                pass
            elif op in (0x02, 0x03, 0x04):  # advance_loc1/2/4
                size = {0x02: 1, 0x03: 2, 0x04: 4}[op]
                delta = int.from_bytes(data[pos:pos + size], "little")
                pos += size
                location += delta * code_align
                if location > pc:
                    return
            elif op == 0x0C:  # def_cfa
                register, pos = _uleb(data, pos)
                offset, pos = _uleb(data, pos)
                state["cfa"] = (register, offset)
            elif op == 0x0D:  # def_cfa_register
                register, pos = _uleb(data, pos)
                state["cfa"] = (register, state["cfa"][1])
            elif op == 0x0E:  # def_cfa_offset
                offset, pos = _uleb(data, pos)
                state["cfa"] = (state["cfa"][0], offset)
            elif op == 0x05:  # offset_extended
                register, pos = _uleb(data, pos)
                value, pos = _uleb(data, pos)
                state["saved"][register] = value * data_align
            elif op in (0x07, 0x08):  # undefined, same_value
                register, pos = _uleb(data, pos)
                state["saved"].pop(register, None)
                if op == 0x07 and register == RETURN_ADDRESS:
                    state["saved"][RETURN_ADDRESS] = None  # outermost frame
            elif op == 0x0A:  # remember_state
                stack.append((state["cfa"], dict(state["saved"])))
            elif op == 0x0B:  # restore_state
                state["cfa"], state["saved"] = stack.pop()
            elif op == 0x2E:  # GNU_args_size
                _, pos = _uleb(data, pos)
            elif op == 0x11:  # offset_extended_sf
                register, pos = _uleb(data, pos)
                value, pos = _sleb(data, pos)
                state["saved"][register] = value * data_align
            elif op == 0x12:  # def_cfa_sf
                register, pos = _uleb(data, pos)
                offset, pos = _sleb(data, pos)
                state["cfa"] = (register, offset * data_align)
            elif op == 0x13:  # def_cfa_offset_sf
                offset, pos = _sleb(data, pos)
                state["cfa"] = (state["cfa"][0], offset * data_align)
            else:
                raise UnwindError(f"call frame instruction {op:#x}")


# rt_sigreturn, as every signal restorer does it: mov $15,%rax; syscall.
RESTORER_CODE = bytes.fromhex("48c7c00f0000000f05")


class ModuleFrames:
    """Unwind tables of every loaded module, by run-time address.

    ``restorers``: run-time addresses of signal restorers (return addresses
    of signal handlers).  ``switches_stacks``: why the process may switch
    between user-level stacks (an import of swapcontext…), or None.
    ``contexts``: how its saved contexts are told (fcontext.SavedContexts),
    when that is known; else ``contexts_unknown`` says why not.
    """

    def __init__(self) -> None:
        self._modules: list[tuple[int, int, int, EhFrame | None]] = []  # (start, end, bias, table)
        self.restorers: frozenset[int] = frozenset()
        self.switches_stacks: str | None = None
        self.contexts: SavedContexts | None = None
        self.contexts_unknown: str | None = None

    @property
    def outermost(self) -> frozenset[int]:
        """Return addresses that end a chain: a coroutine's bottom (boost.context's finish)."""
        return self.contexts.finishes if self.contexts is not None else frozenset()

    def in_restorer(self, pc: int) -> bool:
        """Is *pc* inside a signal restorer (the handler has returned, rt_sigreturn is next)?"""
        return any(0 <= pc - start < len(RESTORER_CODE) for start in self.restorers)

    def add(self, start: int, end: int, bias: int, table: EhFrame | None) -> None:
        self._modules.append((start, end, bias, table))
        self._modules.sort()

    def rule_at(self, pc: int) -> FrameRule:
        for start, end, bias, table in self._modules:
            if start <= pc < end:
                if table is None:
                    raise UnwindError(f"no unwind table for {pc:#x}")
                return table.rule(pc - bias)
        raise UnwindError(f"{pc:#x} is in no known module (patch code?)")


def walk(frames: ModuleFrames, rip: int, registers: dict[int, int], stack: bytes,
         stack_start: int, own_stack: bool = False) -> tuple[list[int], int | None]:
    """The live return addresses from *rip* outwards, innermost first, up to the outermost frame or
    to a signal frame: (addresses, None) or (addresses, address of the signal frame's return slot).
    *registers* (by DWARF number) must hold rsp; the callee-saved ones are used when saved.

    The kernel's ``struct rt_sigframe`` starts at that slot (``pretcode``, the
    restorer's address); its ucontext follows.  Raises UnwindError when lost,
    and, with *own_stack*, at a coroutine's bottom: the chain must end where
    the thread's own stack does.
    """
    unpack = struct.unpack_from
    limit = len(stack) - 8
    found: list[int] = []
    regs = dict(registers)
    if frames.in_restorer(rip):
        return found, regs[RSP] - 8  # the handler's ret popped pretcode: the ucontext is at rsp
    rule = frames.rule_at(rip)
    for _depth in range(MAX_FRAMES):
        base = regs.get(rule.cfa_register)
        if base is None:
            raise UnwindError(f"CFA based on register {rule.cfa_register}")
        cfa = base + rule.cfa_offset
        if rule.return_offset is None:
            return found, None  # outermost frame (clone, _start)
        slot = cfa + rule.return_offset
        offset = slot - stack_start
        if not 0 <= offset <= limit:
            raise OutsideStack("return address outside the captured stack", slot)
        pc = unpack("<Q", stack, offset)[0]
        if pc in frames.restorers:
            return found, slot
        for register, saved_at in rule.callee_saved:
            where = cfa + saved_at - stack_start
            if not 0 <= where <= limit:
                raise OutsideStack("saved register outside the captured stack", cfa + saved_at)
            regs[register] = unpack("<Q", stack, where)[0]
        if pc in frames.outermost:
            if own_stack:
                raise UnwindError("on a coroutine's stack")
            return found, None  # the bottom of a coroutine (boost.context's finish)
        if pc == 0:
            return found, None
        found.append(pc)
        # Callers' frames are described by their callee-saved registers only (a context a signal
        # interrupted comes with every register: the others are its own, not its callers').
        regs = {register: value for register, value in regs.items() if register in CALLEE_SAVED}
        regs[RSP] = cfa
        rule = frames.rule_at(pc - 1)
    raise UnwindError("too many frames")
