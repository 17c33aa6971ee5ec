"""Gates: how a patch's jumps are committed all at once (docs/apply.md, "Commit").

Several 5-byte jumps cannot be written in one step, so none of them goes
straight to new code.  Each old entry jumps to this patch's *gate* for the
function, which reads the patch's commit flag::

    cmpb $1, flag(%rip)        ; committed?
    jne  1f
    jmp  *new(%rip)            ; yes: the new function
1:  jmp  *previous(%rip)       ; no: what ran before — the entry copy of the old
                               ;     function (its first instructions, then a jump
                               ;     back into it), or the older patch's gate

So the jumps can be written one by one — every intermediate state runs
exactly the code that ran before — and the patch takes effect when the
flag byte is stored: a single write, atomic however many functions change.
A revert stores another value (reverted: the previous path is the old
function again).  The flag and the pointers live in the patch's control
page, in its private data mapping, so a forked child has its own.
Flags are clobbered by the compare; no function expects flags on entry.

Standard library only.
"""

from __future__ import annotations

import struct

GATE_SIZE = 32
COPY_SIZE = 64
CONTROL_HEADER = 16  # the flag (one byte, in an 8-byte word), then reserved
POINTERS_SIZE = 16  # per gate: new, previous
PREPARED, COMMITTED, REVERTED = 0, 1, 2
FLAG_NAMES = {PREPARED: "prepared", COMMITTED: "committed", REVERTED: "reverted"}


class GateError(Exception):
    """A gate or entry copy cannot be placed (out of 32-bit range, too big)."""


def control_size(gate_count: int) -> int:
    return CONTROL_HEADER + POINTERS_SIZE * gate_count


def new_pointer(control: int, number: int) -> int:
    return control + CONTROL_HEADER + POINTERS_SIZE * number


def previous_pointer(control: int, number: int) -> int:
    return new_pointer(control, number) + 8


def _rel32(target: int, end: int) -> bytes:
    displacement = target - end
    if not -(1 << 31) <= displacement < 1 << 31:
        raise GateError(f"{target:#x} is out of 32-bit reach of {end:#x}")
    return struct.pack("<i", displacement)


def gate_code(gate: int, flag: int, control: int, number: int) -> bytes:
    """The gate at *gate* for pointer pair *number* of the control page at *control*, testing the commit
    byte at *flag*: the patch's own (its control page), or its patch set's, shared by every member.

    A set's byte may be beyond a 32-bit displacement (a library's region is
    near the library, the program's near the program): the gate then reads
    it through %rax, saved below the stack pointer — at a function's entry
    that is the function's own red zone, still unused — and restored before
    the branch (``pop`` leaves the flags of the compare alone)::

        push %rax; movabs $flag, %rax; cmpb $1, (%rax); pop %rax; jne 1f; …
    """
    try:
        test = b"\x80\x3d" + _rel32(flag, gate + 7) + b"\x01"
    except GateError:
        test = b"\x50\x48\xb8" + struct.pack("<Q", flag) + b"\x80\x38\x01\x58"
    start = len(test) + 2  # the jne
    code = (test + b"\x75\x06"
            + b"\xff\x25" + _rel32(new_pointer(control, number), gate + start + 6)
            + b"\xff\x25" + _rel32(previous_pointer(control, number), gate + start + 12))
    return code + b"\xcc" * (GATE_SIZE - len(code))


def copy_code(copy: dict, address: int, bias: int) -> bytes:
    """An entry copy (made by the diff, see buildhook/diff/entrycopy.py) placed at run-time *address*."""
    code = bytearray(bytes.fromhex(copy["code"]))
    if len(code) > COPY_SIZE:
        raise GateError(f"entry copy of {len(code)} bytes exceeds {COPY_SIZE}")
    for field_offset, end_offset, target in copy["fixups"]:
        code[field_offset:field_offset + 4] = _rel32(target + bias, address + end_offset)
    return bytes(code) + b"\xcc" * (COPY_SIZE - len(code))
