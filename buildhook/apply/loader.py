"""Laying a patch out at an address in the target and relocating it.

The region is one memfd mapped three times: a state page (read-only: what
is applied and the bytes to restore, see state.py), the code part (code,
read-only data and a small GOT; mapped R+X) and the data part (variables;
R+W).  Never writable and executable at once.  Everything is computed here,
in the applier, before the target is touched; an out-of-range 32-bit
relocation is a refusal, not a truncation.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from buildhook.apply import frames, gates
from buildhook.po import format as fmt
from buildhook.po.reader import PatchObject

PAGE = 4096
STATE_SIZE = 4 * PAGE


class RelocationError(Exception):
    """A relocation cannot be performed at this layout (out of range, unknown symbol)."""


def _page(value: int) -> int:
    return (value + PAGE - 1) & ~(PAGE - 1)


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment if alignment > 1 else value


@dataclass
class PatchLayout:
    """Where each part of the patch goes, relative to the region start."""

    base: int
    section_offsets: dict[int, int] = field(default_factory=dict)  # section index → offset in region
    got_offset: int = 0
    got_slots: dict[tuple[str, int], int] = field(default_factory=dict)  # (kind, symbol) → slot offset
    stubs: dict[int, int] = field(default_factory=dict)  # library symbol → offset of its jump stub
    code_size: int = 0
    data_size: int = 0
    gates: int = 0  # gates (and entry copies) for the commit, see gates.py
    gates_offset: int = 0
    copies_offset: int = 0
    control_offset: int = 0  # the control page: commit flag and gate pointers (private, writable)
    unwind_section: int | None = None  # the patch's .eh_frame, registered with the unwinder (frames.py)
    thunks_offset: int = 0   # its register and deregister thunks (code)
    frames_object_offset: int = 0  # libgcc's struct object for it (data)

    @property
    def code_start(self) -> int:
        return self.base + STATE_SIZE

    @property
    def data_start(self) -> int:
        return self.code_start + self.code_size

    @property
    def size(self) -> int:
        return STATE_SIZE + self.code_size + self.data_size

    def address_of_section(self, index: int) -> int:
        return self.base + self.section_offsets[index]

    def gate(self, number: int) -> int:
        return self.base + self.gates_offset + number * gates.GATE_SIZE

    def copy(self, number: int) -> int:
        return self.base + self.copies_offset + number * gates.COPY_SIZE

    @property
    def control(self) -> int:
        return self.base + self.control_offset

    @property
    def eh_frame(self) -> int:
        assert self.unwind_section is not None
        return self.address_of_section(self.unwind_section)

    @property
    def register_thunk(self) -> int:
        return self.base + self.thunks_offset

    @property
    def deregister_thunk(self) -> int:
        return self.base + self.thunks_offset + frames.THUNK_SIZE

    @property
    def frames_object(self) -> int:
        return self.base + self.frames_object_offset


STUB_SIZE = 16  # jmp *0(%rip); .quad address; padding
CALL_RELOCATIONS = frozenset({2, 4})  # PC32, PLT32: a call or jump to a library function


def library_symbols(patch: PatchObject) -> set[int]:
    """Undefined symbols bound to a library: far away, reached through a stub."""
    return {index for index, binding in patch.bindings().items() if binding["bind"] == fmt.BIND_DYNAMIC}


def plan_layout(patch: PatchObject, base: int, gate_count: int = 0) -> PatchLayout:
    """Offsets for every section (code and read-only first, then data), the GOT and library stubs.

    Library code is mapped far from the target's text (beyond a 32-bit
    displacement), so every call to it goes through a 16-byte stub in the
    patch's code part, as a PLT would.  *gate_count* gates and entry copies
    follow the stubs (then, with unwind tables, the thunks that register
    them), and the data part starts with the control page(s) (then libgcc's
    object for the tables).
    """
    layout = PatchLayout(base, gates=gate_count)
    offset = STATE_SIZE
    read_only = [s for s in patch.sections.values() if not s.flags & fmt.SHF_WRITE]
    writable = [s for s in patch.sections.values() if s.flags & fmt.SHF_WRITE]
    for section in sorted(read_only, key=lambda s: (not s.flags & fmt.SHF_EXECINSTR, s.index)):
        offset = _align(offset, max(section.align, 1))
        layout.section_offsets[section.index] = offset
        offset += section.size
    offset = _align(offset, 8)
    layout.got_offset = offset
    far = library_symbols(patch)
    for section in patch.sections.values():
        for _, rel_type, symbol, _ in section.relocations:
            kind = GOT_KIND.get(rel_type)
            if kind and (kind, symbol) not in layout.got_slots:
                layout.got_slots[(kind, symbol)] = offset
                offset += 8
    offset = _align(offset, STUB_SIZE)
    for section in patch.sections.values():
        for _, rel_type, symbol, _ in section.relocations:
            if rel_type in CALL_RELOCATIONS and symbol in far and symbol not in layout.stubs:
                layout.stubs[symbol] = offset
                offset += STUB_SIZE
    offset = _align(offset, gates.GATE_SIZE)
    layout.gates_offset = offset
    offset += gate_count * gates.GATE_SIZE
    layout.copies_offset = offset
    offset += gate_count * gates.COPY_SIZE
    unwind = patch.metadata.get("unwind")
    if unwind:
        layout.unwind_section = int(unwind["section"])
        layout.thunks_offset = offset
        offset += frames.THUNKS_SIZE
    layout.code_size = _page(offset) - STATE_SIZE
    offset = layout.control_offset = STATE_SIZE + layout.code_size
    offset += _page(gates.control_size(gate_count))
    if unwind:
        layout.frames_object_offset = offset
        offset += frames.OBJECT_SIZE
    for section in sorted(writable, key=lambda s: s.index):
        offset = _align(offset, max(section.align, 1))
        layout.section_offsets[section.index] = offset
        offset += section.size
    layout.data_size = _page(offset) - STATE_SIZE - layout.code_size
    return layout


# -- relocation recipes ------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How to compute and store one relocation type."""

    size: int
    signed: bool
    compute: Callable[[int, int, int, int, int], int]  # (S, A, P, GOT slot, TPOFF) → value


def _pc(s: int, a: int, p: int, g: int, t: int) -> int:
    return s + a - p


def _abs(s: int, a: int, p: int, g: int, t: int) -> int:
    return s + a


def _got_pc(s: int, a: int, p: int, g: int, t: int) -> int:
    return g + a - p


def _tpoff(s: int, a: int, p: int, g: int, t: int) -> int:
    return t + a


RECIPES: dict[int, Recipe] = {
    1: Recipe(8, False, _abs),      # R_X86_64_64
    2: Recipe(4, True, _pc),        # R_X86_64_PC32
    4: Recipe(4, True, _pc),        # R_X86_64_PLT32 (direct: no PLT needed)
    9: Recipe(4, True, _got_pc),    # R_X86_64_GOTPCREL
    10: Recipe(4, False, _abs),     # R_X86_64_32
    11: Recipe(4, True, _abs),      # R_X86_64_32S
    22: Recipe(4, True, _got_pc),   # R_X86_64_GOTTPOFF (slot holds the TP offset)
    23: Recipe(4, True, _tpoff),    # R_X86_64_TPOFF32
    24: Recipe(8, True, _pc),       # R_X86_64_PC64
    41: Recipe(4, True, _got_pc),   # R_X86_64_GOTPCRELX (kept as a GOT load)
    42: Recipe(4, True, _got_pc),   # R_X86_64_REX_GOTPCRELX
}
GOT_KIND = {9: "address", 41: "address", 42: "address", 22: "tpoff"}


def relocate(patch: PatchObject, layout: PatchLayout, symbol_value: Callable[[int], int],
             tls_offset: Callable[[int], int], elsewhere: dict[int, int] | None = None) -> tuple[bytes, bytes]:
    """The relocated code part and data part, ready to be written to the memfd.

    *symbol_value(index)* gives S for an undefined symbol; *tls_offset(index)*
    the TP-relative offset of a TLS symbol; *elsewhere* the addresses of
    defined symbols that live outside this region (an older patch's
    running variables).
    """
    region = bytearray(layout.size - STATE_SIZE)
    elsewhere = elsewhere or {}

    def value_of(index: int) -> int:
        if index in elsewhere:
            return elsewhere[index]
        symbol = patch.symbols[index]
        if symbol.section:
            return layout.address_of_section(symbol.section) + symbol.value
        return symbol_value(index)

    for section in patch.sections.values():
        start = layout.section_offsets[section.index] - STATE_SIZE
        if not section.nobits:
            region[start:start + section.size] = section.data
    for (kind, index), slot in layout.got_slots.items():
        value = value_of(index) if kind == "address" else tls_offset(index)
        struct.pack_into("<q" if value < 0 else "<Q", region, slot - STATE_SIZE, value)
    for index, stub in layout.stubs.items():
        region[stub - STATE_SIZE:stub - STATE_SIZE + STUB_SIZE] = (
            b"\xff\x25\x00\x00\x00\x00" + struct.pack("<Q", value_of(index)) + b"\xcc\xcc")
    for section in patch.sections.values():
        section_address = layout.address_of_section(section.index)
        start = layout.section_offsets[section.index] - STATE_SIZE
        for offset, rel_type, index, addend in section.relocations:
            recipe = RECIPES.get(rel_type)
            if recipe is None:
                raise RelocationError(f"relocation type {rel_type} in {section.name} is not supported")
            kind = GOT_KIND.get(rel_type)
            got = layout.base + layout.got_slots[(kind, index)] if kind else 0
            is_tls = rel_type == 23
            s = 0 if is_tls else value_of(index) if not kind or kind == "address" else 0
            if rel_type in CALL_RELOCATIONS and index in layout.stubs:
                s = layout.base + layout.stubs[index]
            value = recipe.compute(s, addend, section_address + offset, got, tls_offset(index) if is_tls else 0)
            bits = recipe.size * 8
            low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if recipe.signed else (0, (1 << bits) - 1)
            if not low <= value <= high:
                name = patch.symbols[index].name
                raise RelocationError(
                    f"relocation {rel_type} at {section.name}+{offset:#x} against {name} overflows "
                    f"({value:#x} does not fit {recipe.size} bytes)")
            struct.pack_into({4: "<i", 8: "<q"}[recipe.size] if recipe.signed else {4: "<I", 8: "<Q"}[recipe.size],
                             region, start + offset, value)
    code = bytes(region[:layout.code_size])
    data = bytes(region[layout.code_size:])
    return code, data


def jump_bytes(source: int, destination: int) -> bytes:
    """A 5-byte ``jmp rel32`` at *source* to *destination* (both within ±2 GiB)."""
    displacement = destination - (source + 5)
    if not -(1 << 31) <= displacement < 1 << 31:
        raise RelocationError(f"jump from {source:#x} to {destination:#x} is out of rel32 range")
    return b"\xe9" + struct.pack("<i", displacement)
