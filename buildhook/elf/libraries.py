"""The shared libraries a program links against, and what they export (on the build machine).

A patch may use a library symbol the base release never imported (a new
libc call).  Whether the running process can resolve it is the applier's
final check, but the diff can already tell from the base's ``DT_NEEDED``
libraries, found the way the dynamic linker finds them (``DT_RUNPATH`` /
``DT_RPATH``, the ld.so cache, the default folders), with their own
dependencies, whether the name exists at all and whether it is a function
or a variable: new code may *call* a library function through a stub, but
cannot read a library variable directly (see diff/engine.py).
"""

from __future__ import annotations

import functools
import io
import os
import subprocess
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from buildhook.elf.dynsym import DynamicExport, dynamic_exports

DEFAULT_FOLDERS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")


@dataclass(frozen=True)
class LibraryExport:
    """A symbol a library defines for others: its kind and where it comes from."""

    name: str
    kind: str      # "function", "variable", "tls"
    library: str


@dataclass
class LibraryScope:
    """Every library a program loads (breadth first, as ld.so does) and their exports."""

    libraries: list[str]
    missing: list[str]
    exports: dict[str, LibraryExport]

    def find(self, name: str) -> LibraryExport | None:
        return self.exports.get(name)


def _dynamic(elf: ELFFile) -> tuple[list[str], list[str]]:
    """(DT_NEEDED names, run-path folders) of an ELF file."""
    needed: list[str] = []
    runpath: list[str] = []
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    text = getattr(tag, "runpath", None) or getattr(tag, "rpath", None) or ""
                    runpath.extend(folder for folder in text.split(":") if folder)
    return needed, runpath


@functools.lru_cache(maxsize=1)
def _ld_cache() -> dict[str, str]:
    """soname → path from ``ldconfig -p`` (x86-64 entries)."""
    try:
        output = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, str] = {}
    for line in output.splitlines():
        if "=>" not in line or "x86-64" not in line:
            continue
        left, path = line.split("=>", 1)
        found.setdefault(left.split()[0], path.strip())
    return found


def _locate(name: str, folders: list[str], origin: str) -> str | None:
    if "/" in name:
        return name if os.path.isfile(name) else None
    for folder in folders:
        candidate = os.path.join(folder.replace("$ORIGIN", origin), name)
        if os.path.isfile(candidate):
            return candidate
    cached = _ld_cache().get(name)
    if cached and os.path.isfile(cached):
        return cached
    for folder in DEFAULT_FOLDERS:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    return None


@functools.lru_cache(maxsize=256)
def _library(path: str) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, DynamicExport]]:
    """(needed, run-path, exports) of one library file, read once per process."""
    with open(path, "rb") as stream:
        data = stream.read()
    needed, runpath = _dynamic(ELFFile(io.BytesIO(data)))
    return tuple(needed), tuple(runpath), dynamic_exports(data)


def library_scope(binary: bytes, binary_path: str) -> LibraryScope:
    """The libraries *binary* loads and what they export, as found on this machine."""
    try:
        needed, runpath = _dynamic(ELFFile(io.BytesIO(binary)))
    except ELFError:
        return LibraryScope([], [], {})
    origin = os.path.dirname(binary_path)
    queue = [(name, runpath, origin) for name in needed]
    seen: set[str] = set()
    libraries: list[str] = []
    missing: list[str] = []
    exports: dict[str, LibraryExport] = {}
    while queue:
        name, folders, from_origin = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        path = _locate(name, list(folders), from_origin)
        if path is None:
            missing.append(name)
            continue
        try:
            sub_needed, sub_runpath, library_exports = _library(path)
        except (OSError, ELFError):
            missing.append(name)
            continue
        libraries.append(path)
        for symbol, export in library_exports.items():
            exports.setdefault(symbol, LibraryExport(symbol, export.kind, path))
        queue.extend((sub, sub_runpath, os.path.dirname(path)) for sub in sub_needed)
    return LibraryScope(libraries, missing, exports)
