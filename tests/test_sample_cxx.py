"""The C++ part of the sample project (sample_project/cxx): a program and its shared library, patched live
through their own release series, checked against each new build.

kvcli uses libkvfmt.so; the series (sample_project/cxx/patches/series) is
v1.1 a fix in the library only, v1.2 a fix in an inline function of the
shared header (the program's and the library's callers change: a patch
set), v1.3 new library code that throws (``kvfmt::bad_input``, a class with
a new vtable and typeinfo), caught by the old program's handler.  Built
with ``make CXX=buildhook-c++`` as a release engineer would; each build
leaves the .po files from v1.0 next to the binaries, and each release's set
is applied, in order, to one running v1.0 process.  After each apply its
answers must equal those of a fresh process of that release (fresh keys
each round, so the map the program keeps has the same history in both).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from buildhook import samples
from tests.conftest import BIN_DIR, run
from tests.support.kvd import SAMPLE_PROJECT
from tests.support.programs import LineProgram, build_env

BUILDHOOK = str(BIN_DIR / "buildhook")
SAMPLE_CXX = SAMPLE_PROJECT / "cxx"
BINARIES = ("kvcli", "libkvfmt.so")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier attaches with ptrace as root")


def questions(key: str) -> list[str]:
    return ['QUOTE say "hi" to all of the people here', "QUOTE back\\slash", "COUNT 12", "COUNT x7",
            f"SHOW {key} 3", f"SHOW {key} -2", f"TOTAL {key}", f"SHOW {key}-with-a-long-name 1"]


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each release's binaries and .po files (from v1.0), in a folder of its own."""
    root = tmp_path_factory.mktemp("sample-cxx")
    env = build_env(root / "store")
    tree = samples.patched_tree(root / "tree", None, SAMPLE_CXX)
    releases = ["v1.0", *[samples.release_of(name) for name in samples.read_series(SAMPLE_CXX)]]
    folders = {}
    previous = "v1.0"
    for release in releases:
        if release != "v1.0":
            samples.apply_series(tree, release, after=None if previous == "v1.0" else previous)
        result = run(["make", "-j4", "CXX=buildhook-c++"], env, cwd=tree)
        assert b"warning:" not in result.stdout + result.stderr
        folders[release] = root / release
        folders[release].mkdir()
        for name in BINARIES:
            shutil.copy2(tree / name, folders[release] / name)
        for po in tree.glob("*.po"):
            shutil.move(po, folders[release] / po.name)
        if release == "v1.0":
            run([BUILDHOOK, "release", "v1.0"], env)
        previous = release
    folders["store"] = root / "store"
    return folders


def test_series_patches_a_running_v10_into_each_release(series: dict[str, Path]) -> None:
    env = build_env(series["store"])
    assert sorted(p.name for p in series["v1.1"].glob("*.po")) == ["libkvfmt.so.from-v1.0.po"]
    assert sorted(p.name for p in series["v1.2"].glob("*.po")) == ["kvcli.from-v1.0.po", "libkvfmt.so.from-v1.0.po"]
    running = LineProgram(series["v1.0"] / "kvcli", ready="ready")
    try:
        before = [running.ask(line) for line in questions("k0")]
        assert '"say "hi" to all ..."' in before and "   0" in before  # the v1.0 bugs
        for round_number, release in enumerate(("v1.1", "v1.2", "v1.3"), start=1):
            patches = sorted(str(po) for po in series[release].glob("*.po"))
            run([BUILDHOOK, "apply", *patches, "--pid", str(running.process.pid)], env, timeout=120)
            fresh = LineProgram(series[release] / "kvcli", ready="ready")
            try:
                key = f"k{round_number}"
                expected = [fresh.ask(line) for line in questions(key)]
            finally:
                fresh.stop()
            assert [running.ask(line) for line in questions(key)] == expected, release
        assert "ERR not a count: x7" in expected  # thrown in patch code, caught by the old program
        assert '"say \\"hi\\" to a..."' in expected
    finally:
        running.stop()
