"""GNU ld link maps (``-Wl,-Map=…``): what went into a link, and where.

The map is the linker's own account of a link.  Two questions are answered
from it: which files and archive members were linked in (the link record),
and at which address each input section of each object landed (the diff
stage resolves references against the *base* binary this way, so two
``static int helper()`` in two files stay apart).

Format notes (GNU ld 2.40): the memory map lists input sections as
``` .text.name  0xADDR  0xSIZE  file``` or, when the name is long, the name
alone on one line and the rest on the next; symbols as ``0xADDR  name``
without a size; archive members as ``archive.a(member.o)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MEMBER = re.compile(r"^(?P<archive>.+)\((?P<member>[^()]+)\)$")
_SECTION_FULL = re.compile(r"^ (?P<name>\S+)\s+0x(?P<addr>[0-9a-f]+)\s+0x(?P<size>[0-9a-f]+)\s+(?P<file>\S.*)$")
_SECTION_NAME_ONLY = re.compile(r"^ (?P<name>[^\s*][^\s]*)$")
_SECTION_REST = re.compile(r"^\s+0x(?P<addr>[0-9a-f]+)\s+0x(?P<size>[0-9a-f]+)\s+(?P<file>\S.*)$")
_SYMBOL = re.compile(r"^\s+0x(?P<addr>[0-9a-f]+)\s+(?P<name>[^\s=]+)$")
_OUTPUT_SECTION = re.compile(r"^(?P<name>\S+)\s+0x(?P<addr>[0-9a-f]+)\s+0x(?P<size>[0-9a-f]+)")
_OUTPUT_NAME_ONLY = re.compile(r"^(?P<name>\.\S+)$")


@dataclass(frozen=True)
class InputFile:
    """A file as the map names it: a path, or a member of an archive."""

    path: str
    member: str | None = None

    @classmethod
    def parse(cls, token: str) -> "InputFile":
        match = _MEMBER.match(token)
        if match:
            return cls(match["archive"], match["member"])
        return cls(token)

    def __str__(self) -> str:
        return f"{self.path}({self.member})" if self.member else self.path


@dataclass
class InputSection:
    """One input section placed by the linker, with the symbols it defines."""

    output_section: str
    name: str
    address: int
    size: int
    file: InputFile
    symbols: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class LinkMap:
    """A parsed link map."""

    loaded: list[str] = field(default_factory=list)
    archive_members: list[InputFile] = field(default_factory=list)
    sections: list[InputSection] = field(default_factory=list)

    def input_files(self) -> list[InputFile]:
        """Every object and archive member that contributed to the link, in map order.

        Plain objects come from ``LOAD`` lines; archive members from the
        "Archive member included" table and from the sections they placed.
        Archives and shared libraries themselves are not inputs here.
        """
        seen: set[InputFile] = set()
        files: list[InputFile] = []
        for token in self.loaded:
            self._add(InputFile(token), seen, files)
        for member in self.archive_members:
            self._add(member, seen, files)
        for section in self.sections:
            if section.file.member:
                self._add(section.file, seen, files)
        return files

    @staticmethod
    def _add(item: InputFile, seen: set[InputFile], files: list[InputFile]) -> None:
        if item not in seen:
            seen.add(item)
            files.append(item)


def parse_link_map(text: str) -> LinkMap:
    """Parse the text of a GNU ld map file."""
    link_map = LinkMap()
    lines = text.splitlines()
    index = 0
    in_members = False
    in_memory_map = False
    output_section = ""
    current: InputSection | None = None
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.startswith("Archive member included"):
            in_members = True
            continue
        if line.startswith("Linker script and memory map"):
            in_members, in_memory_map = False, True
            continue
        if in_members:
            if line and not line[0].isspace():
                if re.match(r"^[A-Z][a-z]", line) and "(" not in line.split()[0]:
                    in_members = False  # the next table's heading
                    continue
                link_map.archive_members.append(InputFile.parse(line.split()[0]))
            continue
        if not in_memory_map:
            continue
        if line.startswith("LOAD "):
            link_map.loaded.append(line[5:].strip())
            continue
        output_match = _OUTPUT_SECTION.match(line) or _OUTPUT_NAME_ONLY.match(line)
        if output_match and not line.startswith(" "):
            output_section = output_match["name"]
            current = None
            continue
        match = _SECTION_FULL.match(line)
        if match is None:
            name_only = _SECTION_NAME_ONLY.match(line)
            if name_only and index < len(lines):
                rest = _SECTION_REST.match(lines[index])
                if rest:
                    index += 1
                    match_name, match = name_only["name"], rest
                    current = _add_section(link_map, output_section, match_name, match)
                    continue
        if match is not None:
            current = _add_section(link_map, output_section, match["name"], match)
            continue
        symbol = _SYMBOL.match(line)
        if symbol and current is not None:
            current.symbols.append((int(symbol["addr"], 16), symbol["name"]))
    return link_map


def _add_section(link_map: LinkMap, output_section: str, name: str, match: re.Match[str]) -> InputSection:
    section = InputSection(
        output_section=output_section,
        name=name,
        address=int(match["addr"], 16),
        size=int(match["size"], 16),
        file=InputFile.parse(match["file"].strip()),
    )
    link_map.sections.append(section)
    return section
