"""Disassembly of one function from a relocatable object, made comparable across builds.

A reviewer wants to see what changed in a replaced function, not that every
address after an inserted instruction moved.  So ``objdump -d -r`` output is
normalised before it is diffed:

* instruction addresses are dropped; branch targets inside the function
  become labels (``L1``, ``L2`` … in address order), so an insertion shifts
  nothing;
* a relocated operand is shown as what the relocation names (``send_line``),
  and a reference into a string pool as the string itself (``"ERR key too
  long"``), because ``.LC12`` is renumbered by every compile;
* the function's ``.cold`` part follows it under its own header.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

from buildhook.elf.objfile import ObjectFile

OBJDUMP = os.environ.get("OBJDUMP", "objdump")
PC_RELATIVE = {"R_X86_64_PC32", "R_X86_64_PLT32", "R_X86_64_GOTPCREL", "R_X86_64_GOTPCRELX",
               "R_X86_64_REX_GOTPCRELX", "R_X86_64_PC64", "R_X86_64_GOTTPOFF"}

_HEADER = re.compile(r"^[0-9a-f]+ <(?P<name>[^>]+)>:$")
_INSTRUCTION = re.compile(r"^\s*(?P<address>[0-9a-f]+):\t(?P<rest>.*)$")
_RELOCATION = re.compile(r"(?P<offset>[0-9a-f]+): (?P<type>R_X86_64_\w+)\t(?P<target>\S+)")
_RELOCATION_START = re.compile(r"\t[0-9a-f]+: R_X86_64_")
_BRANCH_TARGET = re.compile(r"\b(?P<address>[0-9a-f]+) <(?P<symbol>[^>+]+)(?:\+0x(?P<offset>[0-9a-f]+))?>")
_PADDING = re.compile(r"^(?:(?:cs|ds|data16)\s+)*(?:nop[lw]?|xchg %ax,%ax)\b")
_SYMBOL_PLUS = re.compile(r"^(?P<symbol>.+?)(?P<addend>[+-]0x[0-9a-f]+)?$")


class DisassemblyError(Exception):
    """objdump could not disassemble an object (missing, failed); the message says which."""


@dataclass
class Instruction:
    """One line of objdump's output for a function: address, text, relocations on it."""

    address: int
    text: str
    relocations: list[tuple[int, str, str]]  # (offset, type, target as objdump prints it)


@dataclass
class FunctionDiff:
    """The normalised disassembly of a replaced function before and after, and their unified diff."""

    name: str
    file: str
    old: list[str]
    new: list[str]
    error: str | None = None

    @property
    def diff(self) -> list[str]:
        """Unified diff lines (``---``/``+++`` headers, ``@@`` hunks, ``-``/``+``/`` `` lines)."""
        return list(difflib.unified_diff(self.old, self.new, f"{self.name} (base release)",
                                         f"{self.name} (new build)", n=3, lineterm=""))

    @property
    def lines_added(self) -> int:
        return sum(1 for line in self.diff if line.startswith("+") and not line.startswith("+++"))

    @property
    def lines_removed(self) -> int:
        return sum(1 for line in self.diff if line.startswith("-") and not line.startswith("---"))


class ObjectDisassembly:
    """``objdump -d -r`` of one object, split by function, with its ELF symbols for naming strings."""

    def __init__(self, data: bytes, name: str) -> None:
        self.name = name
        self.object = ObjectFile(data, name)
        self.functions = _split_functions(_objdump(data, name))

    def lines(self, function: str) -> list[str]:
        """The normalised lines of *function* and its ``.cold`` part; KeyError if it is not in the object."""
        lines = self._normalise(function, self.functions[function])
        cold = f"{function}.cold"
        if cold in self.functions:
            lines.append(f"<{cold}>:")
            lines.extend(self._normalise(cold, self.functions[cold]))
        return lines

    def _normalise(self, function: str, instructions: list[Instruction]) -> list[str]:
        own = {function}
        targets: set[int] = set()
        for item in instructions:
            if item.relocations:
                continue
            for match in _BRANCH_TARGET.finditer(item.text):
                if match["symbol"] in own:
                    targets.add(int(match["address"], 16))
        labels = {address: f"L{number}" for number, address in enumerate(sorted(targets), 1)}
        out: list[str] = []
        for position, item in enumerate(instructions):
            if item.address in labels:
                out.append(f"{labels[item.address]}:")
            following = instructions[position + 1].address if position + 1 < len(instructions) else None
            if _PADDING.match(item.text):
                continue  # alignment padding moves with every change and means nothing
            out.append("    " + self._instruction_text(item, labels, following))
        return out

    def _instruction_text(self, item: Instruction, labels: dict[int, str], following: int | None) -> str:
        text = re.sub(r"\s+#.*$", "", item.text).rstrip()  # objdump's "# addr <sym+off>" is about the object only
        if item.relocations:
            # A relocated branch shows the placeholder target (the next instruction); the relocation names the real one.
            text = _BRANCH_TARGET.sub("", text).rstrip()
            names = [self._relocation_target(offset, kind, target, following) for offset, kind, target in item.relocations]
            return f"{text}  → {', '.join(names)}"

        def label(match: re.Match[str]) -> str:
            return labels.get(int(match["address"], 16), match[0])

        return _BRANCH_TARGET.sub(label, text)

    def _relocation_target(self, offset: int, kind: str, target: str, following: int | None) -> str:
        """What a relocation refers to, independent of compiler-chosen label numbers and addends."""
        match = _SYMBOL_PLUS.match(target)
        assert match is not None
        symbol, addend = match["symbol"], int(match["addend"] or "0", 16)
        place = addend
        if kind in PC_RELATIVE:
            # The CPU adds the displacement to the end of the instruction, not to the end of the field.
            place += (following - offset) if following is not None else 4
        string = self._string_at(symbol, place)
        if string is not None:
            return string
        symbol, place = self._name_in_section(symbol, place)
        if kind in PC_RELATIVE and place == 0:
            return symbol
        return f"{symbol}{place:+#x}" if place else symbol

    def _name_in_section(self, symbol_name: str, offset: int) -> tuple[str, int]:
        """A reference to a section symbol (``.text.helper``) by the function or variable it lands on."""
        if any(symbol.name == symbol_name and symbol.type != "STT_SECTION" for symbol in self.object.symbols):
            return symbol_name, offset
        section = next((s for s in self.object.sections if s.name == symbol_name), None)
        covering = self.object.symbol_covering(section.index, offset) if section is not None else None
        if covering is None:
            return symbol_name, offset
        return covering.name, offset - covering.value

    def _string_at(self, symbol_name: str, offset: int) -> str | None:
        """The C string a reference to *symbol_name* + *offset* points at, when it is in a string pool."""
        for symbol in self.object.symbols:
            if symbol.name == symbol_name and isinstance(symbol.section, int) and symbol.type != "STT_FILE":
                section, start = self.object.sections[symbol.section], symbol.value
                break
        else:
            section = next((s for s in self.object.sections if s.name == symbol_name), None)  # a section symbol
            start = 0
        if section is None or not section.is_strings or not 0 <= start + offset < len(section.data):
            return None
        raw = section.string_at(start + offset)
        return '"' + raw.decode("utf-8", "backslashreplace").encode("unicode_escape").decode("ascii") + '"'


def _objdump(data: bytes, name: str) -> str:
    with tempfile.NamedTemporaryFile(prefix="buildhook-disasm-", suffix=".o") as handle:
        handle.write(data)
        handle.flush()
        try:
            result = subprocess.run([OBJDUMP, "-d", "-r", "-w", "--no-show-raw-insn", handle.name],
                                    capture_output=True, text=True, timeout=60)
        except OSError as exc:
            raise DisassemblyError(f"cannot run {OBJDUMP}: {exc.strerror} (install binutils)") from exc
    if result.returncode != 0:
        raise DisassemblyError(f"{OBJDUMP} failed on {name}: {result.stderr.strip()}")
    return result.stdout


def _split_functions(output: str) -> dict[str, list[Instruction]]:
    functions: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for line in output.splitlines():
        header = _HEADER.match(line)
        if header:
            current = functions.setdefault(header["name"], [])
            continue
        if line.startswith("Disassembly of section"):
            current = None
            continue
        match = _INSTRUCTION.match(line)
        if match is None or current is None:
            continue
        rest = match["rest"]
        split = _RELOCATION_START.search(rest)
        text, relocated = (rest[:split.start()], rest[split.start():]) if split else (rest, "")
        relocations = [(int(m["offset"], 16), m["type"], m["target"]) for m in _RELOCATION.finditer(relocated)]
        current.append(Instruction(int(match["address"], 16), " ".join(text.split()), relocations))
    return functions


_CLONE_SUFFIX = re.compile(r"\.(isra|constprop|part|cold|lto_priv)\.\d+")


def find_function(disassembly: ObjectDisassembly, name: str) -> str | None:
    """*name* in the object, or its one counterpart whose clone numbers differ (``f.isra.0`` ↔ ``f.isra.1``)."""
    if name in disassembly.functions:
        return name
    wanted = _CLONE_SUFFIX.sub("", name)
    matches = [other for other in disassembly.functions
               if not other.endswith(".cold") and _CLONE_SUFFIX.sub("", other) == wanted]
    return matches[0] if len(matches) == 1 else None


def function_diff(old: ObjectDisassembly | None, new: ObjectDisassembly | None, name: str, file: str) -> FunctionDiff:
    """The normalised old and new disassembly of *name*; an explanation instead when one side is missing."""
    old_name = find_function(old, name) if old is not None else None
    new_name = find_function(new, name) if new is not None else None
    if old_name is None or new_name is None:
        side = "base release" if old_name is None else "new build"
        return FunctionDiff(name, file, [], [], f"{name} was not found in the {side}'s object for {file}")
    return FunctionDiff(name, file, old.lines(old_name), new.lines(new_name))  # type: ignore[union-attr]
