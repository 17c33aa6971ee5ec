"""Build a test program's releases with the wrapper: the old one released, each later one as a .po from it."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from buildhook.bundled import include_dir
from tests.conftest import BIN_DIR, run

PROGRAMS = Path(__file__).resolve().parent.parent / "apply_programs"
BUILDHOOK = str(BIN_DIR / "buildhook")
CFLAGS = ["-O2", "-g", "-Wall", "-pthread", "-I", str(include_dir())]  # buildhook.h for the data-change programs


@dataclass
class Releases:
    """The old binary and, per later version, the .po that patches a process of it to that version."""

    old: Path
    patches: dict[str, Path]
    env: dict[str, str]
    binaries: dict[str, Path] | None = None  # each version's own build (build_releases), for differential checks


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
    patches, binaries = {}, {}
    libraries = system_libraries(name, root / "lib")
    for version in ("old", *versions):
        shutil.copy2(PROGRAMS / name / version / "main.c", work / "main.c")
        run(["buildhook-cc", *CFLAGS, "-c", "main.c", "-o", "main.o"], env, cwd=work)
        run(["buildhook-cc", "main.o", "-o", "prog", "-pthread", *libraries], env, cwd=work)
        binaries[version] = root / f"{name}-{version}"
        if version != "old":
            shutil.copy2(work / "prog", binaries[version])
        if version == "old":
            run([BUILDHOOK, "release", "old"], env)
            shutil.copy2(work / "prog", root / f"{name}-old")
        else:
            patches[version] = root / f"{name}-{version}.po"
            shutil.copy2(work / "prog.from-old.po", patches[version])
    return Releases(root / f"{name}-old", patches, env, binaries)


def system_libraries(name: str, directory: Path, *flags: str) -> list[str]:
    """Build every apply_programs/<name>/<stem>.S into *directory*/lib<stem>.so with plain gcc (a library of
    the system, not of the project: no wrapper, never patched); the link options that use them."""
    options = []
    for source in sorted((PROGRAMS / name).glob("*.S")):
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-shared", "-fPIC", *flags, str(source), "-o", str(directory / f"lib{source.stem}.so")],
                       check=True, capture_output=True)
        options.append(f"-l{source.stem}")
    return [f"-L{directory}", f"-Wl,-rpath,{directory}", "-Wl,--enable-new-dtags", *options] if options else []


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


class LineProgram:
    """A test program that answers each line on stdin with lines on stdout; every read has a timeout,
    and the process is stopped by PID."""

    def __init__(self, path: Path, ready: str | None = None, timeout: float = 10) -> None:
        # unbuffered: a line read byte by byte leaves the next in the pipe, where the selector sees it
        self.process = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.timeout = timeout
        if ready is not None:
            assert self._line() == ready, f"{path} did not say {ready!r}"

    def _line(self) -> str:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(self.timeout):
                raise AssertionError(f"process {self.process.pid} printed nothing in {self.timeout} s")
        answer = self.process.stdout.readline().decode().rstrip("\n")
        assert answer, f"no answer: process {self.process.pid} exited {self.process.poll()}"
        return answer

    def ask(self, line: str) -> str:
        return self.ask_lines(line, 1)[0]

    def ask_lines(self, line: str, count: int) -> tuple[str, ...]:
        """Send *line*, read the *count* lines of its answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()
        return tuple(self._line() for _ in range(count))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def __enter__(self) -> LineProgram:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
