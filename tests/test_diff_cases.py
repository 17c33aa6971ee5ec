"""`buildhook diff` on every scenario of tests/cases/: the exact patch, no-change or refusal.

Each folder of ``tests/cases/`` holds an ``old/`` and a ``new/`` version of a
small C program and a ``case.toml`` with the expected outcome (the format is in
``tests/cases/README.md``).  Per case: build old with ``buildhook-cc``, release
it as ``old``, build new over it (or in another folder), run
``buildhook diff --from old BINARY --json`` and compare what it says it
replaced, added, refused and warned about with the expectation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CASES = Path(__file__).resolve().parent / "cases"
BIN_DIR = Path(sys.executable).parent
BINARY = "prog"
RELEASE = "old"
# Warnings do not change the code; checking for none keeps the cases clean.
WARNING_FLAGS = ["-Wall"]
DIFF_STATUS = {"patch": 0, "no-change": 3, "refused": 2}
RULES = frozenset({
    "static-local-removed", "global-size-changed", "struct-layout-changed", "new-tls-variable",
    "new-constructor", "function-too-short", "initial-value-changed", "unreachable-change",
})
BUILD_TIMEOUT = 120
RUN_TIMEOUT = 30
DIFF_TIMEOUT = 120


@dataclass
class Case:
    """One scenario folder and what its case.toml expects."""

    name: str
    folder: Path
    cflags: list[str]
    separate_dirs: bool
    outcome: str
    replaced: set[str]
    new_functions: set[str]
    new_data: set[str]
    refused: set[tuple[str, str]]
    warnings: set[tuple[str, str]]
    description: str = field(default="", repr=False)

    @classmethod
    def load(cls, folder: Path) -> Case:
        with open(folder / "case.toml", "rb") as stream:
            data = tomllib.load(stream)
        build, expect = data.get("build", {}), data["expect"]
        sources = {version: sorted(path.name for path in (folder / version).glob("*.c"))
                   for version in ("old", "new")}
        if not sources["old"] or sources["old"] != sources["new"]:
            raise ValueError(f"{folder}: old/ and new/ must hold the same .c file names, got {sources}")
        if expect["outcome"] not in DIFF_STATUS:
            raise ValueError(f"{folder}: unknown outcome {expect['outcome']!r}")
        for item in expect.get("refused", []) + expect.get("warnings", []):
            if item["rule"] not in RULES:
                raise ValueError(f"{folder}: unknown rule {item['rule']!r}")
        return cls(
            name=folder.name,
            folder=folder,
            cflags=build.get("cflags", "-O2 -g").split(),
            separate_dirs=build.get("separate_dirs", False),
            outcome=expect["outcome"],
            replaced=set(expect.get("replaced", [])),
            new_functions=set(expect.get("new_functions", [])),
            new_data=set(expect.get("new_data", [])),
            refused={(item["symbol"], item["rule"]) for item in expect.get("refused", [])},
            warnings={(item["symbol"], item["rule"]) for item in expect.get("warnings", [])},
            description=data["description"],
        )


def case_folders() -> list[Path]:
    """Every scenario folder, in name order."""
    return sorted(path for path in CASES.iterdir() if (path / "case.toml").is_file())


def case_env(tmp_path: Path) -> dict[str, str]:
    """Our scripts first on PATH, a private store, no config file, nothing inherited from BUILDHOOK_*."""
    variables = {key: value for key, value in os.environ.items() if not key.startswith("BUILDHOOK_")}
    variables.update(
        PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        BUILDHOOK_STORE=str(tmp_path / "store"),
        BUILDHOOK_CONFIG=str(tmp_path / "none.toml"),
        # This harness checks `buildhook diff`; the post-link step (which runs the
        # same planner and prints refusals) is tested in test_diff_sample.py.
        BUILDHOOK_PATCH_FROM="off",
        LC_ALL="C",
    )
    return variables


def run(command: list[str | Path], env: dict[str, str], cwd: Path | None = None,
        timeout: float = BUILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded by timeout), capturing its output as text."""
    return subprocess.run([str(word) for word in command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A command, its exit status and its output, for assertion messages."""
    return f"{result.args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def check(result: subprocess.CompletedProcess[str], *, quiet: bool = False) -> None:
    """Fail on a non-zero exit, and with quiet=True on anything printed to stderr (warnings)."""
    assert result.returncode == 0, describe(result)
    if quiet:
        assert not result.stderr.strip(), f"unexpected output on stderr:\n{describe(result)}"


def build(case: Case, sources: Path, folder: Path, env: dict[str, str]) -> Path:
    """Copy a version's sources into folder, compile each .c, link them; return the binary."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.c"):
        stale.unlink()
    for source in sources.glob("*.c"):
        shutil.copy2(source, folder / source.name)
    objects = []
    for source in sorted(folder.glob("*.c")):
        obj = source.with_suffix(".o").name
        check(run(["buildhook-cc", *case.cflags, *WARNING_FLAGS, "-c", source.name, "-o", obj], env, folder),
              quiet=True)
        objects.append(obj)
    check(run(["buildhook-cc", *objects, "-o", BINARY, "-pthread"], env, folder), quiet=True)
    binary = folder / BINARY
    # Every case is a complete program; a version that does not run is a broken case.
    check(run([binary], env, folder, timeout=RUN_TIMEOUT))
    return binary


def release(env: dict[str, str], cwd: Path) -> None:
    """Mark the binary just built as release `old`."""
    check(run(["buildhook", "release", RELEASE], env, cwd))


@dataclass
class DiffReport:
    """What `buildhook diff --json` said: exit status, the parsed report, the whole run for messages."""

    status: int
    report: dict
    transcript: str


def diff(binary: Path, patch: Path, env: dict[str, str]) -> DiffReport:
    """Run `buildhook diff --from old BINARY -o PATCH --json`."""
    result = run(["buildhook", "diff", "--from", RELEASE, binary, "-o", patch, "--json"], env,
                 binary.parent, timeout=DIFF_TIMEOUT)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        pytest.fail(f"`buildhook diff --json` did not print one JSON object\n{describe(result)}")
    return DiffReport(result.returncode, report, describe(result))


def symbols(entries: list[dict]) -> set[str]:
    """{"file:name"} of the replaced / new_functions / new_data entries of a report."""
    return {f"{entry['file']}:{entry['name']}" for entry in entries}


def reasons(entries: list[dict]) -> set[tuple[str, str]]:
    """(file:symbol, rule) of refusals or warnings; a struct is named without its file."""
    named = set()
    for entry in entries:
        symbol = entry["symbol"]
        if not symbol.startswith("struct "):
            symbol = f"{entry['file']}:{symbol}"
        named.add((symbol, entry["rule"]))
    return named


def check_report(case: Case, result: DiffReport) -> None:
    """Outcome, exit status and every list of the report match case.toml exactly."""
    report = result.report
    context = f"case {case.name}: {case.description}\n{result.transcript}"
    assert report.get("outcome") == case.outcome, context
    assert result.status == DIFF_STATUS[case.outcome], context
    assert symbols(report.get("replaced", [])) == case.replaced, context
    assert symbols(report.get("new_functions", [])) == case.new_functions, context
    assert symbols(report.get("new_data", [])) == case.new_data, context
    assert reasons(report.get("refused", [])) == case.refused, context
    assert reasons(report.get("warnings", [])) == case.warnings, context


def check_patch_object(case: Case, patch: Path, env: dict[str, str]) -> None:
    """The .po exists, readelf reads it without a word on stderr, inspect lists the replaced functions."""
    assert patch.is_file(), f"case {case.name}: diff reported a patch but wrote no {patch}"
    check(run(["readelf", "-a", patch], env, timeout=RUN_TIMEOUT), quiet=True)
    result = run(["buildhook", "inspect", patch, "--json"], env, timeout=RUN_TIMEOUT)
    check(result)
    functions = json.loads(result.stdout)["functions"]
    # inspect may also list new functions (they have no old address); compare the replaced ones.
    replaced = {f"{Path(item['file']).name}:{item['name']}" for item in functions
                if item.get("old_address") is not None}
    assert replaced == case.replaced, f"case {case.name}: inspect --json\n{result.stdout}"


@pytest.mark.parametrize("case", [Case.load(folder) for folder in case_folders()],
                         ids=lambda case: case.name)
def test_diff_case(case: Case, tmp_path: Path) -> None:
    env = case_env(tmp_path)
    old_dir = tmp_path / "work"
    new_dir = tmp_path / "work2" if case.separate_dirs else old_dir
    patch = tmp_path / "case.po"

    build(case, case.folder / "old", old_dir, env)
    release(env, old_dir)
    binary = build(case, case.folder / "new", new_dir, env)

    result = diff(binary, patch, env)

    check_report(case, result)
    if case.outcome == "patch":
        check_patch_object(case, patch, env)
