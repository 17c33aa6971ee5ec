"""Reading and validating a ``.po`` completely, before anything is done with it.

The applier must refuse a corrupt or foreign file before it attaches to a
process, so validation is strict and says in one line what is wrong: not
ELF, not an x86-64 relocatable, no buildhook metadata, an unknown format
version, a patch id that does not match the bytes (tampered or truncated),
a symbol without a binding, a relocation this applier cannot perform, a
function entry that does not name defined code.

Standard library and pyelftools only (the applier ships this module).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from buildhook.po import format as fmt



class PatchFormatError(Exception):
    """The file is not a valid .po; the message says why, in one line."""


@dataclass
class PatchSectionData:
    """A loadable section of the patch."""

    index: int
    name: str
    flags: int
    align: int
    size: int
    data: bytes
    nobits: bool
    relocations: list[tuple[int, int, int, int]]  # (offset, type, symbol index, addend)


@dataclass
class PatchSymbolData:
    index: int
    name: str
    type: int
    section: int  # 0 = undefined
    value: int
    size: int


class PatchObject:
    """A validated patch: its sections, symbols and metadata."""

    def __init__(self, data: bytes, name: str) -> None:
        self.name = name
        self.data = data
        self.sections: dict[int, PatchSectionData] = {}
        self.symbols: list[PatchSymbolData] = []
        self.metadata: dict = {}

    @property
    def patch_id(self) -> str:
        return str(self.metadata["patch_id"])

    @property
    def target_build_id(self) -> str:
        return str(self.metadata["target"]["build_id"])

    def bindings(self) -> dict[int, dict]:
        """Symbol index → binding, for every undefined symbol."""
        return {int(entry["index"]): entry for entry in self.metadata["symbols"]}


def _fail(name: str, reason: str) -> PatchFormatError:
    return PatchFormatError(f"{name} is not a valid buildhook patch: {reason}")


def read_patch(data: bytes, name: str) -> PatchObject:
    """Parse and validate a .po from its bytes."""
    patch = PatchObject(data, name)
    if data[:4] != b"\x7fELF":
        raise _fail(name, "not an ELF file")
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.header.e_type != "ET_REL" or elf.header.e_machine != "EM_X86_64":
            raise _fail(name, f"ELF {elf.header.e_type} for {elf.header.e_machine}, expected an x86-64 ET_REL")
        meta_section = elf.get_section_by_name(fmt.METADATA_SECTION)
        if meta_section is None:
            raise _fail(name, f"no {fmt.METADATA_SECTION} section (an ordinary object file, not a patch)")
        raw_metadata = meta_section.data()
        sections = list(elf.iter_sections())
        for index, section in enumerate(sections):
            header = section.header
            if header.sh_type in ("SHT_PROGBITS", "SHT_NOBITS") and header.sh_flags & fmt.SHF_ALLOC:
                nobits = header.sh_type == "SHT_NOBITS"
                patch.sections[index] = PatchSectionData(index, section.name, header.sh_flags,
                                                         header.sh_addralign, header.sh_size,
                                                         b"" if nobits else section.data(), nobits, [])
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            raise _fail(name, "no symbol table")
        for index, symbol in enumerate(symtab.iter_symbols()):
            shndx = symbol.entry.st_shndx
            patch.symbols.append(PatchSymbolData(index, symbol.name, _symbol_type(symbol.entry.st_info.type),
                                                 shndx if isinstance(shndx, int) else 0,
                                                 symbol.entry.st_value, symbol.entry.st_size))
        for section in sections:
            if isinstance(section, RelocationSection):
                target = patch.sections.get(section.header.sh_info)
                if target is None:
                    raise _fail(name, f"relocation section {section.name} applies to no loadable section")
                for rel in section.iter_relocations():
                    entry = rel.entry
                    target.relocations.append((entry.r_offset, entry.r_info_type, entry.r_info_sym,
                                               entry.r_addend if section.is_RELA() else 0))
    except PatchFormatError:
        raise
    except (ELFError, ValueError, KeyError, IndexError, AssertionError, OSError) as exc:
        raise _fail(name, f"damaged ELF ({exc.__class__.__name__}: {exc}); truncated?") from exc
    except Exception as exc:  # pyelftools raises construct errors on truncated files
        raise _fail(name, f"damaged ELF ({exc.__class__.__name__}); truncated?") from exc
    try:
        patch.metadata = json.loads(raw_metadata.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(name, f"metadata is not valid JSON ({exc})") from exc
    _validate(patch)
    return patch


def read_patch_file(path: str) -> PatchObject:
    """Read and validate the .po at *path*."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PatchFormatError(f"cannot read {path}: {exc.strerror}") from exc
    return read_patch(data, path)


_TYPES = {"STT_NOTYPE": fmt.STT_NOTYPE, "STT_OBJECT": fmt.STT_OBJECT, "STT_FUNC": fmt.STT_FUNC,
          "STT_SECTION": fmt.STT_SECTION, "STT_TLS": fmt.STT_TLS}


def _symbol_type(kind: str) -> int:
    return _TYPES.get(kind, -1)


def _validate(patch: PatchObject) -> None:
    name, meta = patch.name, patch.metadata
    if not isinstance(meta, dict) or meta.get("format") != fmt.FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise _fail(name, f"format {found!r}, this buildhook reads {fmt.FORMAT}")
    for key in ("patch_id", "target", "from", "to", "functions", "new_functions", "new_data", "symbols", "warnings"):
        if key not in meta:
            raise _fail(name, f"metadata lacks {key!r}")
    claimed = str(meta["patch_id"])
    field = fmt.patch_id_field(claimed)
    if patch.data.count(field) != 1:
        raise _fail(name, "patch id field not found exactly once")
    zeroed = patch.data.replace(field, fmt.patch_id_field(fmt.PATCH_ID_PLACEHOLDER))
    if hashlib.sha256(zeroed).hexdigest() != claimed:
        raise _fail(name, "content does not match its patch id (modified or damaged after it was written)")
    if not isinstance(meta["target"], dict) or not meta["target"].get("build_id"):
        raise _fail(name, "metadata names no target build-id")
    bindings = {}
    for entry in meta["symbols"]:
        index = entry.get("index")
        if not isinstance(index, int) or not 0 < index < len(patch.symbols) or patch.symbols[index].section:
            raise _fail(name, f"binding for symbol index {index!r} does not name an undefined symbol")
        if entry.get("bind") not in (fmt.BIND_BASE, fmt.BIND_DYNAMIC, fmt.BIND_TLS):
            raise _fail(name, f"symbol {entry.get('name')!r} has unknown binding {entry.get('bind')!r}")
        bindings[index] = entry
    for symbol in patch.symbols[1:]:
        if symbol.section == 0 and symbol.index not in bindings:
            raise _fail(name, f"undefined symbol {symbol.name!r} has no binding")
    for section in patch.sections.values():
        for offset, rel_type, symbol_index, _addend in section.relocations:
            if rel_type not in fmt.SUPPORTED_RELOCATIONS:
                raise _fail(name, f"relocation type {rel_type} in {section.name} is not supported")
            if not 0 < symbol_index < len(patch.symbols):
                raise _fail(name, f"relocation in {section.name} names symbol {symbol_index}, out of range")
            if offset + 4 > section.size:
                raise _fail(name, f"relocation at {section.name}+{offset:#x} is outside the section")
    for listing in ("functions", "new_functions"):
        for entry in meta[listing]:
            index = entry.get("symbol")
            if not isinstance(index, int) or not 0 < index < len(patch.symbols):
                raise _fail(name, f"function {entry.get('name')!r} names no symbol")
            symbol = patch.symbols[index]
            if symbol.type != fmt.STT_FUNC or symbol.section not in patch.sections:
                raise _fail(name, f"function {entry.get('name')!r} is not defined code in the patch")
    _validate_data_changes(patch)
    unwind = meta.get("unwind")
    if unwind is not None:
        section = patch.sections.get(unwind.get("section")) if isinstance(unwind, dict) else None
        if section is None or section.name != ".eh_frame" or section.flags & (fmt.SHF_WRITE | fmt.SHF_EXECINSTR) \
                or section.size < 4 or section.data[-4:] != b"\0\0\0\0":
            raise _fail(name, "metadata 'unwind' names no read-only .eh_frame section ending in a terminator")
    for entry in meta["functions"]:
        for key in ("old_address", "old_size", "old_sha256"):
            if entry.get(key) is None:
                raise _fail(name, f"replaced function {entry.get('name')!r} lacks {key}")


HOOK_KINDS = ("pre_apply", "post_apply", "pre_revert", "post_revert")
MIGRATION_KINDS = ("size", "value", "transform")


def _defined(patch: PatchObject, index: object, code: bool) -> bool:
    if not isinstance(index, int) or not 0 < index < len(patch.symbols):
        return False
    symbol = patch.symbols[index]
    section = patch.sections.get(symbol.section)
    if section is None:
        return False
    return bool(section.flags & fmt.SHF_EXECINSTR) == code and (code or bool(section.flags & fmt.SHF_WRITE))


def _validate_data_changes(patch: PatchObject) -> None:
    """Hooks name code of the patch; a migration names its new storage (writable data of the patch), the
    old variable's place and initial bytes, and its transform's code."""
    name, meta = patch.name, patch.metadata
    for hook in meta.get("hooks", []):
        if hook.get("kind") not in HOOK_KINDS or not _defined(patch, hook.get("symbol"), code=True):
            raise _fail(name, f"hook {hook.get('name')!r} ({hook.get('kind')!r}) is not code of the patch")
    for entry in meta.get("migrations", []):
        what = f"migration of {entry.get('name')!r}"
        if entry.get("kind") not in MIGRATION_KINDS or not _defined(patch, entry.get("symbol"), code=False):
            raise _fail(name, f"{what} names no writable variable of the patch")
        size = entry.get("old_size")
        if not isinstance(entry.get("old_address"), int) or not isinstance(size, int) or size < 0:
            raise _fail(name, f"{what} lacks the old variable's address and size")
        try:
            initial = bytes.fromhex(str(entry.get("initial", "")))
        except ValueError:
            initial = b""
        relative = entry.get("relative", [])
        if len(initial) != size or not isinstance(relative, list) \
                or any(not isinstance(at, int) or not 0 <= at <= size - 8 for at in relative):
            raise _fail(name, f"{what} has initial bytes or pointer offsets that do not fit its {size} bytes")
        if entry["kind"] == "transform" and not _defined(patch, entry.get("transform_symbol"), code=True):
            raise _fail(name, f"{what} names no transform function in the patch")
