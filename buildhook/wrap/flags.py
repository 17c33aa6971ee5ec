"""The flags buildhook adds to a compile or a link, as a table.

Each row names the setting that switches it (see ``buildhook.settings``), the
compiler families that understand it, and why a patch needs it.  Injected
compile flags go right after the compiler, *before* the user's own flags, so
an explicit user choice (``-fno-function-sections``) still wins: buildhook
never overrides what a build asked for, and the diff stage reports objects
that lack what it needs.
"""

from __future__ import annotations

import os

from buildhook import INCLUDE_DIR
from buildhook.settings import Settings

GCC = "gcc"
CLANG = "clang"
UNKNOWN = "unknown"


class InjectedFlag:
    """One flag the wrapper adds, and when (a plain class: cheap to import)."""

    __slots__ = ("setting", "words", "families", "why")

    def __init__(self, setting: str, words: tuple[str, ...], families: frozenset[str], why: str) -> None:
        self.setting = setting
        self.words = words
        self.families = families
        self.why = why


COMPILE_FLAGS: tuple[InjectedFlag, ...] = (
    InjectedFlag("function_sections", ("-ffunction-sections",), frozenset({GCC, CLANG}),
                 "one section per function: the unit a patch replaces"),
    InjectedFlag("data_sections", ("-fdata-sections",), frozenset({GCC, CLANG}),
                 "one section per variable: new data can be carried alone"),
    InjectedFlag("live_patching", ("-flive-patching=inline-clone",), frozenset({GCC}),
                 "no IPA optimisation makes an unchanged caller depend on a callee's body"),
    InjectedFlag("header", ("-idirafter", INCLUDE_DIR), frozenset({GCC, CLANG}),
                 "#include <buildhook.h> works (searched last: a build's own folders come first)"),
)

# User options GCC rejects together with -flive-patching=inline-clone
# (checked against gcc 12: each makes cc1 fail with "is incompatible with").
LIVE_PATCHING_CONFLICTS = frozenset({
    "-fipa-icf", "-fipa-icf-functions", "-fipa-icf-variables", "-fipa-ra",
    "-fipa-pure-const", "-fipa-modref", "-fipa-reference",
    "-fipa-reference-addressable", "-fipa-stack-alignment", "-fipa-pta",
    "-fipa-bit-cp", "-fipa-vrp", "-fwhole-program",
})


class FlagConflict(Exception):
    """The user's flags cannot be combined with what buildhook needs."""


def compiler_family(compiler: str) -> str:
    """gcc, clang or unknown, from the compiler's resolved file name.

    Only the name is looked at: running ``cc --version`` on every compile
    would cost more than the whole wrapper.
    """
    name = os.path.basename(os.path.realpath(compiler)).lower()
    if "clang" in name:
        return CLANG
    if "gcc" in name or "g++" in name or name in ("cc", "c++"):
        return GCC
    return UNKNOWN


def compile_flags(settings: Settings, family: str, header_folder: str = INCLUDE_DIR) -> list[str]:
    """The words added to a compile for this compiler family.

    *header_folder* is where buildhook.h is put on the include path: the
    native shim (shim.c) uses the copy installed beside it, and passes it on
    when it hands a command over, so both give the compiler the same words.
    """
    words: list[str] = []
    for flag in COMPILE_FLAGS:
        if family in flag.families and settings.flag(flag.setting):
            words.extend(header_folder if word == INCLUDE_DIR else word for word in flag.words)
    return words


def check_conflicts(user_options: list[str], injected: list[str]) -> None:
    """Raise FlagConflict when the compiler would reject our flags next to the user's."""
    if "-flive-patching=inline-clone" not in injected:
        return
    for option in user_options:
        if option in LIVE_PATCHING_CONFLICTS:
            raise FlagConflict(
                f"{option} cannot be combined with -flive-patching=inline-clone, which "
                "buildhook adds so that patches stay correct; drop the flag or set "
                "BUILDHOOK_LIVE_PATCHING=0"
            )


def link_flags(settings: Settings, user_build_id: str | None, map_path: str | None) -> list[str]:
    """The words added to a link: a build-id unless the user chose one, and a map."""
    words: list[str] = []
    if settings.flag("build_id") and user_build_id is None:
        words.append("-Wl,--build-id")
    if map_path is not None:
        words.append(f"-Wl,-Map={map_path}")
    return words
