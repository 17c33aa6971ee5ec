"""SCons tool: ``env.Tool('buildhook')`` records every object and program.

Run SCons with ``--site-dir "$(buildhook scons-dir)"`` (or copy this file
into your project's ``site_scons/site_tools/``).  The tool puts
``buildhook-cc`` in front of the C and C++ compilers and linkers in its
launcher form, so each compile and link is recorded in the store, and passes
the ``BUILDHOOK_*`` settings through SCons's clean execution environment.
"""

from __future__ import annotations

import os
import shutil
import sys

LAUNCHED_VARIABLES = ("CC", "CXX", "SHCC", "SHCXX", "LINK", "SHLINK")


def _launcher() -> str | None:
    """buildhook-cc: on PATH, else next to the Python running SCons."""
    found = shutil.which("buildhook-cc")
    if found:
        return os.path.abspath(found)
    beside = os.path.join(os.path.dirname(sys.executable), "buildhook-cc")
    return beside if os.path.isfile(beside) else None


def _launched(env, variable: str, launcher: str) -> None:  # type: ignore[no-untyped-def]
    current = env.get(variable)
    if not current:
        return
    text = current if isinstance(current, str) else " ".join(str(word) for word in current)
    # $SMARTLINK, $LINK, $CC … expand to already launched variables.
    if text.startswith("$") or "buildhook-c" in text:
        return
    env[variable] = f'"{launcher}" {text}'


def generate(env) -> None:  # type: ignore[no-untyped-def]
    launcher = _launcher()
    if launcher is None:
        raise RuntimeError("buildhook tool: buildhook-cc not found on PATH or next to " + sys.executable)
    for variable in LAUNCHED_VARIABLES:
        _launched(env, variable, launcher)
    for name, value in os.environ.items():
        if name.startswith("BUILDHOOK_") or name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "HOME"):
            env["ENV"][name] = value


def exists(env) -> bool:  # type: ignore[no-untyped-def]
    return _launcher() is not None
