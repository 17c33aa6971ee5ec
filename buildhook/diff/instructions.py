"""x86-64 instructions of an object's code, decoded with capstone.

Two questions about machine code need the instruction a relocation sits
in, not just its bytes:

* where a PC-relative reference really points.  A ``R_X86_64_PC32``
  field's value is ``S + A - P`` and the CPU adds the address of the *end*
  of the instruction, which is 4 bytes after the field only when no
  immediate follows it: ``addl $1, x(%rip)`` ends 5 bytes after its
  displacement, so gas writes ``x - 5``.  The referenced offset is
  ``S + A + (end - P)``;
* whether a changed immediate is a ``__LINE__`` argument: the value must be
  loaded into the argument register of a reporting call and reach it
  unchanged (see ``line_argument_only``).

Decoding is lazy (only the sections asked about) and linear from every
function symbol, which is exact for compiler output (gcc puts no data in
``.text``).  capstone (PyPI ``capstone``) is a well-kept, complete decoder:
writing an x86-64 length decoder by hand would be a long, error-prone table.
"""

from __future__ import annotations

import bisect
import weakref
from dataclasses import dataclass

import capstone
from capstone import x86_const

from buildhook.elf.objfile import ObjectFile


@dataclass(frozen=True)
class Instruction:
    """One decoded instruction: where it starts and ends in its section."""

    start: int
    end: int
    mnemonic: str


class CodeIndex:
    """Instruction boundaries of the code sections of one object, decoded on first use."""

    def __init__(self, obj: ObjectFile) -> None:
        self.obj = obj
        self._sections: dict[int, tuple[list[int], list[Instruction]]] = {}

    def instruction_at(self, section_index: int, offset: int) -> Instruction | None:
        """The instruction whose bytes include *offset*, or None where nothing decodes."""
        starts, instructions = self._decoded(section_index)
        position = bisect.bisect_right(starts, offset) - 1
        if position < 0:
            return None
        instruction = instructions[position]
        return instruction if instruction.start <= offset < instruction.end else None

    def _decoded(self, section_index: int) -> tuple[list[int], list[Instruction]]:
        if section_index not in self._sections:
            section = self.obj.sections[section_index]
            entries = sorted({symbol.value for symbol in self.obj.section_symbols(section_index)
                              if symbol.type == "STT_FUNC"} | {0})
            found: dict[int, Instruction] = {}
            for index, entry in enumerate(entries):
                stop = entries[index + 1] if index + 1 < len(entries) else section.size
                for address, size, mnemonic, _ in _decoder().disasm_lite(section.data[entry:stop], entry):
                    found[address] = Instruction(address, address + size, mnemonic)
            instructions = [found[start] for start in sorted(found)]
            self._sections[section_index] = ([item.start for item in instructions], instructions)
        return self._sections[section_index]


_DECODERS: dict[bool, capstone.Cs] = {}


def _decoder(detail: bool = False) -> capstone.Cs:
    if detail not in _DECODERS:
        decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        decoder.detail = detail
        _DECODERS[detail] = decoder
    return _DECODERS[detail]


_CODE_INDEXES: weakref.WeakKeyDictionary[ObjectFile, CodeIndex] = weakref.WeakKeyDictionary()


def code_index(obj: ObjectFile) -> CodeIndex:
    """The instruction index of *obj*, kept as long as the object is."""
    index = _CODE_INDEXES.get(obj)
    if index is None:
        index = _CODE_INDEXES[obj] = CodeIndex(obj)
    return index


# -- __LINE__ arguments ----------------------------------------------------------------

# The register that carries the line number of each reporting call, by the
# System V argument order: __assert_fail(expr, file, line, func) and
# __assert_perror_fail(errnum, file, line, func), __assert(expr, file, line),
# __assert_rtn(func, file, line, expr): the third argument, %edx.
LINE_ARGUMENT_REGISTERS = frozenset({x86_const.X86_REG_EDX, x86_const.X86_REG_RDX, x86_const.X86_REG_DX,
                                     x86_const.X86_REG_DL, x86_const.X86_REG_DH})
_BRANCH_GROUPS = frozenset({capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET, capstone.CS_GRP_INT,
                            capstone.CS_GRP_IRET, capstone.CS_GRP_BRANCH_RELATIVE})


def line_argument_only(code: bytes, changed: list[int], report_calls: list[int]) -> bool:
    """Whether every changed byte is the immediate of a ``mov $imm32, %edx`` that feeds a reporting call.

    *code* is the new version of one function part, *changed* the offsets
    where it differs from the old one (same length), *report_calls* the
    offsets of the call instructions whose relocation names a reporting
    function.  Each changed byte must lie in the immediate of such a mov,
    and from the mov to the next call every instruction must neither branch
    nor read or write %edx/%rdx, and that call must be a reporting call:
    the value then reaches the call's line argument and nothing else.
    """
    instructions = list(_decoder(detail=True).disasm(code, 0))
    calls = set(report_calls)
    for offset in changed:
        position = next((i for i, insn in enumerate(instructions)
                         if insn.address <= offset < insn.address + insn.size), None)
        if position is None or not _is_line_load(instructions[position], offset):
            return False
        if not _reaches_report_call(instructions[position + 1:], calls):
            return False
    return True


def _is_line_load(insn: capstone.CsInsn, offset: int) -> bool:
    """``mov $imm32, %edx`` with *offset* inside its 4 immediate bytes."""
    if insn.id != x86_const.X86_INS_MOV or len(insn.operands) != 2:
        return False
    destination, source = insn.operands
    if destination.type != x86_const.X86_OP_REG or destination.reg != x86_const.X86_REG_EDX:
        return False
    if source.type != x86_const.X86_OP_IMM or insn.imm_offset == 0 or insn.imm_size != 4:
        return False
    return insn.address + insn.imm_offset <= offset < insn.address + insn.imm_offset + insn.imm_size


def _reaches_report_call(following: list[capstone.CsInsn], calls: set[int]) -> bool:
    for insn in following:
        groups = set(insn.groups)
        if capstone.CS_GRP_CALL in groups:
            # the call's displacement starts one byte after its e8 opcode
            return insn.address + 1 in calls
        if groups & _BRANCH_GROUPS:
            return False
        read, written = insn.regs_access()
        if LINE_ARGUMENT_REGISTERS & (set(read) | set(written)):
            return False
    return False
