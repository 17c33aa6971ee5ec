"""The base release as a patch sees it: where each old section and symbol lives.

References from patch code to anything that already exists resolve to the
*base binary*.  The base link's map says at which address every input
section of every object landed, so two ``static int helper()`` in two files
are never confused; the applier only adds the process's load bias.
"""

from __future__ import annotations

import bisect
import os

from buildhook.elf.binary import BinarySymbol, LinkedBinary
from buildhook.elf.libraries import LibraryScope, library_scope
from buildhook.elf.linkmap import parse_link_map
from buildhook.elf.objfile import ObjectFile, Symbol
from buildhook.store import Store
from buildhook.store.records import LinkInput, LinkRecord

SHF_GROUP = 0x200


class BaseProgramError(Exception):
    """The base release lacks what a patch needs (no map, a section missing from it)."""


class BaseProgram:
    """The base link: its unstripped binary and its section addresses."""

    def __init__(self, store: Store, link: LinkRecord) -> None:
        self.link = link
        self._store = store
        if link.map_sha256 is None:
            raise BaseProgramError(
                f"the base link of {link.binary} has no link map (built with BUILDHOOK_LINK_MAP=0 or "
                "a map printed to stdout); rebuild and release it with the map on")
        self.binary = LinkedBinary(store.blobs.read(link.sha256), link.binary)
        link_map = parse_link_map(store.blobs.read(link.map_sha256).decode("utf-8", "surrogateescape"))
        self._addresses: dict[tuple[str, str | None, str], int] = {}
        self._placed: list[tuple[int, int, str, str | None]] = []  # (address, end, object path, member)
        for section in link_map.sections:
            path = os.path.normpath(os.path.join(link.cwd, section.file.path))
            key = (path, section.file.member, section.name)
            self._addresses.setdefault(key, section.address)
            if section.size:
                self._placed.append((section.address, section.address + section.size, path, section.file.member))
        self._placed.sort()
        self._objects: dict[tuple[str, str | None], ObjectFile | None] = {}
        self._scope: LibraryScope | None = None
        tls = self.binary.tls_segment
        self.tls_start = tls[0] if tls else None

    def section_address(self, item: LinkInput, section_name: str) -> int:
        """Link-time address of an old object's input section."""
        path = os.path.normpath(item.linked_as or item.path)
        address = self._addresses.get((path, item.member, section_name))
        if address is None:
            address = self._kept_copy(path, item.member, section_name)
        if address is None:
            raise BaseProgramError(
                f"the base link map has no section {section_name} of {item.display_path} "
                "(discarded by --gc-sections, or a different link)")
        return address

    def _kept_copy(self, path: str, member: str | None, section_name: str) -> int | None:
        """Where the link placed another object's copy of a COMDAT section this object also has.

        An inline function or template instance used in several objects is a
        COMDAT group in each (vague linkage); the linker keeps the first copy
        and discards the others, so the discarded object's section has no
        address, and the copy the program runs is the kept one.  Found by
        the section's name (gcc names a group's sections after its
        signature); an ambiguous name is not guessed at.
        """
        obj = self._object(path, member)
        section = next((s for s in obj.sections if s.name == section_name), None) if obj else None
        if section is None or not section.flags & SHF_GROUP:
            return None
        kept = {address for (other, _member, name), address in self._addresses.items()
                if name == section_name and other != path}
        return kept.pop() if len(kept) == 1 else None

    def symbol_address(self, item: LinkInput, obj: ObjectFile, symbol: Symbol) -> int:
        """Link-time address of a symbol defined in an old object."""
        assert isinstance(symbol.section, int)
        return self.section_address(item, obj.sections[symbol.section].name) + symbol.value

    def non_local_definition(self, name: str) -> BinarySymbol | None:
        """A program symbol *name* that some object defines as non-local but the link made local.

        Hidden and internal visibility (``__attribute__((visibility("hidden")))``,
        ``-fvisibility=hidden``) keep a name global among the program's
        objects and archive members, and the linker turns it local in the
        output.  Several locals may carry the name (a ``static`` of the same
        name elsewhere): the link map says which object placed each, and the
        one whose object defines the name non-locally is it.
        """
        candidates = [symbol for symbol in self.binary.symbols if symbol.name == name and symbol.bind == "STB_LOCAL"]
        found = [symbol for symbol in candidates if self._defined_non_locally(name, symbol.address)]
        return found[0] if len(found) == 1 else None

    def _defined_non_locally(self, name: str, address: int) -> bool:
        position = bisect.bisect_right(self._placed, (address, 1 << 64)) - 1
        if position < 0 or not self._placed[position][0] <= address < self._placed[position][1]:
            return False
        _start, _end, path, member = self._placed[position]
        obj = self._object(path, member)
        return obj is not None and any(symbol.name == name and symbol.is_defined and not symbol.is_local
                                       for symbol in obj.symbols)

    def _object(self, path: str, member: str | None) -> ObjectFile | None:
        key = (path, member)
        if key not in self._objects:
            item = next((item for item in self.link.objects if item.member == member
                         and os.path.normpath(item.linked_as or item.path) == path), None)
            self._objects[key] = ObjectFile(self._store.blobs.read(item.sha256), item.display_path) \
                if item is not None else None
        return self._objects[key]

    @property
    def libraries(self) -> LibraryScope:
        """The base's libraries as found on this machine, with their exports."""
        if self._scope is None:
            self._scope = library_scope(self.binary.data, self.link.binary)
        return self._scope

    def tls_offset(self, address: int) -> int:
        """Offset of a TLS address in the executable's TLS block (what TPOFF is relative to)."""
        if self.tls_start is None:
            raise BaseProgramError(f"{self.link.binary} has no TLS segment")
        return address - self.tls_start
