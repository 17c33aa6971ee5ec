"""Files that ship with buildhook but live at the top of the repository.

The CMake module (``cmake/``), the SCons tool (``site_scons/``) and the
sample server (``sample_project/``) sit where a reader of the repository
looks for them; the wheel build copies them into this package (see
pyproject.toml), so an installed buildhook finds them here and a source
checkout finds them at the top.
"""

from __future__ import annotations

from pathlib import Path

from buildhook import INCLUDE_DIR


def bundled_dir(name: str, marker: str) -> Path:
    """The folder *name* (which must contain *marker*), installed or in a checkout."""
    installed = Path(__file__).resolve().parent / name
    checkout = Path(__file__).resolve().parents[2] / name
    for candidate in (installed, checkout):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(
        f"buildhook's {name}/ folder is missing (looked in {installed} and {checkout}); "
        "reinstall buildhook"
    )


def cmake_dir() -> Path:
    """The folder to put on ``CMAKE_MODULE_PATH`` for ``include(BuildHook)``."""
    return bundled_dir("cmake", "BuildHook.cmake")


def scons_site_dir() -> Path:
    """The folder to pass to ``scons --site-dir`` for ``env.Tool('buildhook')``."""
    return bundled_dir("site_scons", "site_tools/buildhook.py")


def sample_project_dir() -> Path:
    """The kvd sample server's sources and release series."""
    return bundled_dir("sample_project", "patches/series")


def include_dir() -> Path:
    """The folder holding ``buildhook.h`` (hooks, transforms, shadow variables: docs/data-changes.md)."""
    folder = Path(INCLUDE_DIR)
    if not (folder / "buildhook.h").is_file():
        raise FileNotFoundError(f"buildhook.h is missing from {folder}; reinstall buildhook")
    return folder
