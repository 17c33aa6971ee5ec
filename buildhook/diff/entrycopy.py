"""A relocatable copy of the first instructions of an old function: its *entry copy*.

Why: a patch redirects every changed function with a 5-byte jump at its old
entry, and several jumps cannot be written at once.  So that a cut-short
commit (the applier killed between two writes) never leaves the process
half-redirected, each jump goes first to a *gate* in the patch region that
takes the new code only once the patch's one commit byte is set, and until
then runs the old function: these copied instructions, then a jump back to
the rest of it.  Writing the commit byte is a single store, so the switch
is atomic however many functions change (see docs/apply.md).

The copy is made here, at diff time, from the linked old binary (whose
bytes the applier verifies in the process before it touches anything):
whole instructions covering at least the 5 bytes the jump overwrites, with
every PC-relative operand (RIP-relative data, calls, jumps, short
conditional jumps widened to rel32) turned into a fixup the applier
resolves for the copy's address.  A function whose entry cannot be copied
exactly is described, not guessed at: a branch elsewhere in the function
into the overwritten bytes, an instruction with only a short form
(``loop``, ``jrcxz``), or bytes that do not decode.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import capstone
from capstone import x86_const

from buildhook.diff.instructions import _decoder

JUMP_SIZE = 5
# Conditional jumps with only an 8-bit form: they cannot be widened.
_SHORT_ONLY = frozenset({x86_const.X86_INS_JRCXZ, x86_const.X86_INS_JECXZ, x86_const.X86_INS_JCXZ,
                         x86_const.X86_INS_LOOP, x86_const.X86_INS_LOOPE, x86_const.X86_INS_LOOPNE})


class EntryNotCopyable(Exception):
    """The first instructions of a function cannot be copied exactly (the message says why)."""


@dataclass
class EntryCopy:
    """The copied instructions and the PC-relative fields the applier fills in.

    Each fixup is ``[field offset, end offset, link-time target]``: the 32-bit
    field at *field offset* of the copy must hold ``target + bias - (copy
    address + end offset)``, where *end offset* is the end of the
    instruction in the copy (what the CPU adds the displacement to).
    """

    code: bytes
    displaced: int  # bytes of the old function the jump covers (whole instructions)
    fixups: list[list[int]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"code": self.code.hex(), "displaced": self.displaced, "fixups": self.fixups}


def _branch_target(insn: capstone.CsInsn) -> int | None:
    """The absolute target of a direct relative jump or call, else None."""
    groups = set(insn.groups)
    if not groups & {capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL}:
        return None
    operands = insn.operands
    if len(operands) == 1 and operands[0].type == x86_const.X86_OP_IMM:
        return int(operands[0].imm)
    return None


def _rip_relative(insn: capstone.CsInsn) -> bool:
    return any(op.type == x86_const.X86_OP_MEM and op.mem.base == x86_const.X86_REG_RIP for op in insn.operands)


def _copy_instruction(insn: capstone.CsInsn, out: bytearray, fixups: list[list[int]]) -> None:
    """Append *insn* to *out*, its PC-relative operand as a fixup."""
    raw = bytes(insn.bytes)
    target = _branch_target(insn)
    if target is not None:
        if insn.id in _SHORT_ONLY:
            raise EntryNotCopyable(f"'{insn.mnemonic} {insn.op_str}' at its entry has only a short form")
        if insn.id == x86_const.X86_INS_CALL and raw[0] == 0xE8:
            encoded = b"\xe8"
        elif insn.id == x86_const.X86_INS_JMP and raw[0] in (0xE9, 0xEB):
            encoded = b"\xe9"
        elif raw[0] in range(0x70, 0x80):
            encoded = bytes([0x0F, 0x80 + (raw[0] - 0x70)])
        elif raw[0] == 0x0F and raw[1] in range(0x80, 0x90):
            encoded = raw[:2]
        else:
            raise EntryNotCopyable(f"'{insn.mnemonic} {insn.op_str}' at its entry is a branch buildhook cannot move")
        out += encoded
        fixups.append([len(out), len(out) + 4, target])
        out += b"\0\0\0\0"
        return
    if _rip_relative(insn):
        memory = next(op for op in insn.operands if op.type == x86_const.X86_OP_MEM)
        # RIP-relative displacements are always 32-bit (capstone's disp_size is wrong after a 0x66 prefix).
        if raw[insn.disp_offset:insn.disp_offset + 4] != struct.pack("<i", memory.mem.disp):
            raise EntryNotCopyable(f"'{insn.mnemonic} {insn.op_str}' at its entry: its displacement is not where "
                                   "it should be")
        target = insn.address + insn.size + memory.mem.disp
        start = len(out)
        out += raw
        fixups.append([start + insn.disp_offset, start + insn.size, target])
        return
    out += raw


def entry_copy(code: bytes, address: int, other_parts: Sequence[tuple[int, bytes]] = ()) -> EntryCopy:
    """The entry copy of the function whose bytes *code* start at link-time *address*.

    *other_parts* are its other code ranges (``.cold`` parts: (address,
    bytes)), searched, like the function itself, for branches into the bytes
    the jump overwrites.
    """
    decoder = _decoder(detail=True)
    out = bytearray()
    fixups: list[list[int]] = []
    covered = 0
    ended = False
    for insn in decoder.disasm(code, address):
        if covered >= JUMP_SIZE:
            break
        _copy_instruction(insn, out, fixups)
        covered += insn.size
        if insn.id in (x86_const.X86_INS_RET, x86_const.X86_INS_JMP, x86_const.X86_INS_UD2, x86_const.X86_INS_HLT):
            ended = True  # nothing after it in the overwritten bytes runs but through a branch, checked below
            break
    if covered == 0:
        raise EntryNotCopyable(f"the bytes at its entry ({code[:8].hex()}) do not decode")
    displaced = max(covered, JUMP_SIZE)
    if displaced > len(code):
        raise EntryNotCopyable(f"it is {len(code)} bytes long, a jump needs {JUMP_SIZE}")
    _check_no_branch_inside(address, displaced, [(address, code), *other_parts])
    if not ended:
        out += b"\xe9"
        fixups.append([len(out), len(out) + 4, address + displaced])
        out += b"\0\0\0\0"
    return EntryCopy(bytes(out), displaced, fixups)


def _check_no_branch_inside(address: int, displaced: int, parts: list[tuple[int, bytes]]) -> None:
    """No direct branch may land inside the overwritten bytes (its entry itself is fine)."""
    decoder = _decoder(detail=True)
    for start, code in parts:
        for insn in decoder.disasm(code, start):
            target = _branch_target(insn)
            if target is not None and address < target < address + displaced:
                raise EntryNotCopyable(f"the branch at {insn.address:#x} lands {target - address} bytes into its "
                                       f"entry, inside the {displaced} bytes the jump overwrites")

