"""The sample server's release series: which patches make which release.

``sample_project/patches/series`` lists patch files applied in order with
``patch -p1``; each is named after the release it produces
(``v1.2-append.patch`` → v1.2).  The demo and the tests both build releases
this way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from buildhook.bundled import sample_project_dir

BUILD_PRODUCTS = ("*.o", "kvd", "build*", ".sconsign.dblite", ".sconf_temp")


class SampleReleaseError(Exception):
    """A release is not in the series, or its patch does not apply."""


def read_series(src_dir: Path) -> list[str]:
    """The patch file names of ``patches/series``, in application order."""
    lines = (src_dir / "patches" / "series").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def release_of(patch_name: str) -> str:
    """``v1.2-append.patch`` → ``v1.2``."""
    return patch_name.split("-", 1)[0]


def apply_series(tree: Path, upto: str, after: str | None = None) -> None:
    """Apply the series in *tree* up to and including release *upto*.

    The tree is at v1.0, or at release *after* (whose patches are then skipped).
    """
    series = read_series(tree)
    releases = [release_of(name) for name in series]
    if upto not in releases or (after is not None and after not in releases):
        raise SampleReleaseError(f"release {upto!r} or {after!r} is not in {tree / 'patches' / 'series'}")
    if after is not None:
        series = series[releases.index(after) + 1:]
    for name in series:
        result = subprocess.run(
            ["patch", "-p1", "--forward", "--batch", "-i", str(tree / "patches" / name)],
            cwd=tree, capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            raise SampleReleaseError(f"patch {name} failed in {tree}: {(result.stdout + result.stderr).strip()}")
        if release_of(name) == upto:
            return


def patched_tree(dest: Path, upto: str | None, src_dir: Path | None = None) -> Path:
    """Copy the sample project to *dest* (without build products) at release *upto*.

    ``upto=None`` is v1.0 unchanged.  Returns *dest*.
    """
    shutil.copytree(src_dir or sample_project_dir(), dest, ignore=shutil.ignore_patterns(*BUILD_PRODUCTS))
    if upto is not None:
        apply_series(dest, upto)
    return dest
