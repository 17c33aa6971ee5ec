"""Entry copies (buildhook/diff/entrycopy.py): the old function's first instructions, moved exactly.

Each case is assembled by the real assembler; the copy is then placed at
another address with its fixups resolved (as the applier's gates.py does)
and decoded again: every instruction must be the same operation on the
same absolute targets, and the copy must end with a jump back to the first
byte after what it displaced.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import capstone
import pytest

from buildhook.apply.gates import copy_code
from buildhook.diff.entrycopy import EntryNotCopyable, entry_copy

LINK = 0x401000
PLACED = 0x7F0000100000
BIAS = 0x7F0000000000 - 0x400000  # the copy sits near the run-time text: LINK + BIAS


def assemble(tmp_path: Path, source: str) -> bytes:
    (tmp_path / "f.s").write_text(".text\n.globl f\nf:\n" + source + "\n")
    subprocess.run(["as", "-o", str(tmp_path / "f.o"), str(tmp_path / "f.s")], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "f.o"), str(tmp_path / "f.bin")],
                   check=True)
    return (tmp_path / "f.bin").read_bytes()


def targets(code: bytes, address: int) -> list[tuple[str, int | None]]:
    """(mnemonic, absolute target of its PC-relative operand or None) of each instruction."""
    decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    decoder.detail = True
    result = []
    for insn in decoder.disasm(code, address):
        target = None
        for op in insn.operands:
            if op.type == capstone.x86.X86_OP_MEM and op.mem.base == capstone.x86.X86_REG_RIP:
                target = insn.address + insn.size + op.mem.disp
            elif op.type == capstone.x86.X86_OP_IMM and set(insn.groups) & {capstone.CS_GRP_JUMP,
                                                                              capstone.CS_GRP_CALL}:
                target = op.imm
        result.append((insn.mnemonic.replace("jmp", "j"), target))
    return result


@pytest.mark.parametrize("source, displaced", [
    ("endbr64\npush %rbp\nmov %rsp,%rbp\nret", 5),
    ("test %edi,%edi\nje 1f\nmov $1,%eax\n1: ret", 9),           # a short jcc is widened to rel32
    ("cmpl $7, 0x1234(%rip)\njne 1f\nret\n1: ud2", 7),           # displacement followed by an immediate
    ("movdqa 0x40(%rip),%xmm0\nret", 8),                         # 0x66 prefix (capstone's disp_size is wrong)
    ("call 1f\n1: ret", 5),
    ("jmp *0x80(%rip)", 6),                                      # ends in a jump: no jump back
])
def test_copy_does_what_the_original_did(tmp_path: Path, source: str, displaced: int) -> None:
    code = assemble(tmp_path, source)
    copy = entry_copy(code, LINK)
    assert copy.displaced == displaced
    placed = copy_code(copy.to_json(), PLACED, BIAS)
    original = [(m, None if t is None else t + BIAS) for m, t in targets(code, LINK)]
    moved = targets(placed.rstrip(b"\xcc"), PLACED)
    count = len([1 for _ in capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64).disasm_lite(
        code[:displaced], 0)])
    assert [m.rstrip("e") for m, _ in moved[:count]] == [m.rstrip("e") for m, _ in original[:count]]
    assert [t for _, t in moved[:count]] == [t for _, t in original[:count]]
    if not source.startswith("jmp"):
        assert moved[count] == ("j", LINK + BIAS + displaced), "the copy jumps back after what it displaced"


@pytest.mark.parametrize("source, reason", [
    ("1: jrcxz 1b\nret", "only a short form"),
    ("xor %eax,%eax\n1: inc %eax\ncmp $9,%eax\njne 1b\nret", "lands 2 bytes into its entry"),
    ("ret", "a jump needs 5"),
])
def test_entry_that_cannot_be_moved_is_described(tmp_path: Path, source: str, reason: str) -> None:
    with pytest.raises(EntryNotCopyable, match=reason):
        entry_copy(assemble(tmp_path, source), LINK)
