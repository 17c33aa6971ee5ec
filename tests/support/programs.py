"""Build a test program's releases with the wrapper: the old one released, each later one as a .po from it."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import BIN_DIR, run

PROGRAMS = Path(__file__).resolve().parent.parent / "apply_programs"
BUILDHOOK = str(BIN_DIR / "buildhook")
CFLAGS = ["-O2", "-g", "-Wall", "-pthread"]


@dataclass
class Releases:
    """The old binary and, per later version, the .po that patches a process of it to that version."""

    old: Path
    patches: dict[str, Path]
    env: dict[str, str]


def build_env(store: Path) -> dict[str, str]:
    """The environment of a build with the wrapper on PATH, recording into *store*, no user settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDHOOK_")}
    env.update(PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}", BUILDHOOK_STORE=str(store),
               BUILDHOOK_CONFIG=str(store / "none.toml"))
    return env


def build_releases(name: str, root: Path, versions: tuple[str, ...]) -> Releases:
    """apply_programs/<name>/old is built and released; then every version over it, in order."""
    env = build_env(root / "store")
    work = root / name
    work.mkdir(parents=True)
    patches = {}
    for version in ("old", *versions):
        shutil.copy2(PROGRAMS / name / version / "main.c", work / "main.c")
        run(["buildhook-cc", *CFLAGS, "-c", "main.c", "-o", "main.o"], env, cwd=work)
        run(["buildhook-cc", "main.o", "-o", "prog", "-pthread"], env, cwd=work)
        if version == "old":
            run([BUILDHOOK, "release", "old"], env)
            shutil.copy2(work / "prog", root / f"{name}-old")
        else:
            patches[version] = root / f"{name}-{version}.po"
            shutil.copy2(work / "prog.from-old.po", patches[version])
    return Releases(root / f"{name}-old", patches, env)


def build_library_releases(name: str, root: Path, versions: tuple[str, ...]) -> Releases:
    """As build_releases, with part of the program in a shared library: apply_programs/<name>/<version>/main.c
    built with -DPART_H_IN_LIBRARY for the program and -DLIBRARY for libpart.so.  Each later version is a
    patch set: patches[version] the program's .po, patches[version + ".so"] the library's."""
    env = build_env(root / "store")
    work = root / name
    work.mkdir(parents=True)
    patches = {}
    for version in ("old", *versions):
        shutil.copy2(PROGRAMS / name / version / "main.c", work / "main.c")
        run(["buildhook-cc", *CFLAGS, "-fPIC", "-DLIBRARY", "-c", "main.c", "-o", "part.o"], env, cwd=work)
        run(["buildhook-cc", "-shared", "part.o", "-o", "libpart.so"], env, cwd=work)
        run(["buildhook-cc", *CFLAGS, "-DPART_H_IN_LIBRARY", "-c", "main.c", "-o", "main.o"], env, cwd=work)
        run(["buildhook-cc", "main.o", "-L.", "-lpart", "-Wl,-rpath,$ORIGIN", "-o", "prog", "-pthread"], env, cwd=work)
        if version == "old":
            run([BUILDHOOK, "release", "old"], env)
            (root / "old").mkdir()
            for built in ("prog", "libpart.so"):
                shutil.copy2(work / built, root / "old" / built)
        else:
            patches[version] = root / f"{name}-{version}.po"
            shutil.copy2(work / "prog.from-old.po", patches[version])
            patches[version + ".so"] = root / f"{name}-{version}.so.po"
            shutil.copy2(work / "libpart.so.from-old.po", patches[version + ".so"])
    return Releases(root / "old" / "prog", patches, env)
