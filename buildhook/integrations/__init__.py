"""Where the build-system integrations (CMake module, SCons tool) are found.

Both live at the top of the repository (``cmake/``, ``site_scons/``) and are
copied into this package by the wheel build, so an installed buildhook can
tell a build system where they are.
"""

from __future__ import annotations

from pathlib import Path


def _integration_dir(name: str, marker: str) -> Path:
    """Return the folder *name* holding *marker*, installed or in a checkout."""
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
    return _integration_dir("cmake", "BuildHook.cmake")


def scons_site_dir() -> Path:
    """The folder to pass to ``scons --site-dir`` for ``env.Tool('buildhook')``."""
    return _integration_dir("site_scons", "site_tools/buildhook.py")
