"""Who to run: the real compiler behind ``buildhook-cc``, in both call forms.

* Wrapper form, ``CC=buildhook-cc``: the arguments are the compiler's; the
  real compiler comes from ``BUILDHOOK_CC``/``BUILDHOOK_CXX`` (which may be a
  command such as ``ccache gcc``) or else ``cc``/``c++`` on PATH, never
  buildhook itself.
* Launcher form, ``buildhook-cc gcc -c …`` (CMake's COMPILER_LAUNCHER and
  LINKER_LAUNCHER): the first argument is the compiler, possibly behind
  launchers such as ccache (``buildhook-cc ccache gcc …``).
"""

from __future__ import annotations

import os
import sys

from buildhook.wrap.cmdline import KNOWN_LAUNCHERS, SOURCE_LANGUAGES

DEPTH_VARIABLE = "BUILDHOOK_DEPTH"
MAX_DEPTH = 3


class CompilerNotFound(Exception):
    """No real compiler could be found (or only buildhook itself)."""


class Invocation:
    """The command to run: launchers + compiler, then the compiler's arguments."""

    def __init__(self, prefix: list[str], args: list[str], launcher_form: bool, depth: int) -> None:
        self.prefix = prefix
        self.args = args
        self.launcher_form = launcher_form
        self.depth = depth

    @property
    def compiler(self) -> str:
        return self.prefix[-1]

    def child_environment(self) -> dict[str, str]:
        """The compiler's environment: ours, plus how deep buildhook is nested."""
        env = dict(os.environ)
        env[DEPTH_VARIABLE] = str(self.depth + 1)
        return env


def which(name: str) -> str | None:
    """The first executable *name* on PATH (shutil.which, without importing shutil)."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _own_paths() -> set[str]:
    paths = {os.path.realpath(sys.argv[0])} if sys.argv and sys.argv[0] else set()
    return paths


def is_buildhook(program: str) -> bool:
    """Whether *program* (a name or a path) is a buildhook wrapper script."""
    located = program if os.sep in program else which(program)
    if located is None:
        return os.path.basename(program).startswith(("buildhook-cc", "buildhook-c++"))
    real = os.path.realpath(located)
    return real in _own_paths() or os.path.basename(real).startswith(("buildhook-cc", "buildhook-c++"))


def _looks_like_program(word: str) -> bool:
    if word.startswith("-") or word.startswith("@"):
        return False
    _stem, dot, suffix = os.path.basename(word).rpartition(".")
    if dot and ("." + suffix in SOURCE_LANGUAGES or suffix in ("o", "a", "so", "lo")):
        return False
    if os.sep in word:
        return os.path.isfile(word) and os.access(word, os.X_OK)
    return which(word) is not None


def _find_on_path(name: str) -> str:
    """The first *name* on PATH that is not buildhook itself."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and not is_buildhook(candidate):
            return candidate
    raise CompilerNotFound(f"no `{name}` on PATH other than buildhook itself; set BUILDHOOK_CC/BUILDHOOK_CXX")


def resolve_invocation(argv: list[str], language: str, configured: str | None) -> Invocation:
    """Work out the real command for ``argv`` (``sys.argv`` of buildhook-cc/c++).

    *language* is "c" or "c++" (which wrapper ran); *configured* is the
    BUILDHOOK_CC/BUILDHOOK_CXX setting, if any.
    """
    depth = int(os.environ.get(DEPTH_VARIABLE, "0") or "0")
    if depth >= MAX_DEPTH:
        raise CompilerNotFound(
            "buildhook-cc is calling itself in a loop; set BUILDHOOK_CC/BUILDHOOK_CXX to the real compiler"
        )
    args = argv[1:]
    if args and _looks_like_program(args[0]):
        prefix = [args.pop(0)]
        while prefix and is_buildhook(prefix[-1]):  # `buildhook-cc buildhook-cc gcc`
            prefix.pop()
            if args and _looks_like_program(args[0]):
                prefix.append(args.pop(0))
        if prefix and os.path.basename(prefix[-1]) in KNOWN_LAUNCHERS and args and _looks_like_program(args[0]):
            prefix.append(args.pop(0))
        if prefix:
            return Invocation(prefix, args, launcher_form=True, depth=depth)
    if configured:
        import shlex  # only when BUILDHOOK_CC is set: it imports re

        prefix = shlex.split(configured)
        if not prefix or any(is_buildhook(word) for word in prefix):
            raise CompilerNotFound(f"BUILDHOOK_CC/BUILDHOOK_CXX={configured!r} must name the real compiler, not buildhook")
        return Invocation(prefix, args, launcher_form=False, depth=depth)
    return Invocation([_find_on_path("c++" if language == "c++" else "cc")], args, launcher_form=False, depth=depth)
