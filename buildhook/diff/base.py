"""The base release as a patch sees it: where each old section and symbol lives.

References from patch code to anything that already exists resolve to the
*base binary*.  The base link's map says at which address every input
section of every object landed, so two ``static int helper()`` in two files
are never confused; the applier only adds the process's load bias.
"""

from __future__ import annotations

import os

from buildhook.elf.binary import LinkedBinary
from buildhook.elf.linkmap import parse_link_map
from buildhook.elf.objfile import ObjectFile, Symbol
from buildhook.store import Store
from buildhook.store.records import LinkInput, LinkRecord


class BaseProgramError(Exception):
    """The base release lacks what a patch needs (no map, a section missing from it)."""


class BaseProgram:
    """The base link: its unstripped binary and its section addresses."""

    def __init__(self, store: Store, link: LinkRecord) -> None:
        self.link = link
        if link.map_sha256 is None:
            raise BaseProgramError(
                f"the base link of {link.binary} has no link map (built with BUILDHOOK_LINK_MAP=0 or "
                "a map printed to stdout); rebuild and release it with the map on")
        self.binary = LinkedBinary(store.blobs.read(link.sha256), link.binary)
        link_map = parse_link_map(store.blobs.read(link.map_sha256).decode("utf-8", "surrogateescape"))
        self._addresses: dict[tuple[str, str | None, str], int] = {}
        for section in link_map.sections:
            path = os.path.normpath(os.path.join(link.cwd, section.file.path))
            key = (path, section.file.member, section.name)
            self._addresses.setdefault(key, section.address)
        tls = self.binary.tls_segment
        self.tls_start = tls[0] if tls else None

    def section_address(self, item: LinkInput, section_name: str) -> int:
        """Link-time address of an old object's input section."""
        path = os.path.normpath(item.linked_as or item.path)
        address = self._addresses.get((path, item.member, section_name))
        if address is None:
            raise BaseProgramError(
                f"the base link map has no section {section_name} of {item.display_path} "
                "(discarded by --gc-sections, or a different link)")
        return address

    def symbol_address(self, item: LinkInput, obj: ObjectFile, symbol: Symbol) -> int:
        """Link-time address of a symbol defined in an old object."""
        assert isinstance(symbol.section, int)
        return self.section_address(item, obj.sections[symbol.section].name) + symbol.value

    def tls_offset(self, address: int) -> int:
        """Offset of a TLS address in the executable's TLS block (what TPOFF is relative to)."""
        if self.tls_start is None:
            raise BaseProgramError(f"{self.link.binary} has no TLS segment")
        return address - self.tls_start
