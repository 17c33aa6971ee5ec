"""Fixtures shared by the tests: the installed commands and an isolated store.

Tests run the real installed console scripts (``buildhook``, ``buildhook-cc``)
from the environment pytest runs in, against a store in a temporary folder,
with no user config file, so nothing leaks in from or out to the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kvd import SAMPLE_PROJECT

BIN_DIR = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def _installed(name: str) -> str:
    path = BIN_DIR / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed next to {sys.executable}; run `pip install -e '.[test]'` first")
    return str(path)


@pytest.fixture(scope="session")
def buildhook_cc() -> str:
    return _installed("buildhook-cc")


@pytest.fixture(scope="session")
def buildhook_cxx() -> str:
    return _installed("buildhook-c++")


@pytest.fixture(scope="session")
def buildhook_cmd() -> str:
    return _installed("buildhook")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def env(store_dir: Path, tmp_path: Path) -> dict[str, str]:
    """The environment a build runs in: our scripts first on PATH, a private store."""
    variables = {key: value for key, value in os.environ.items() if not key.startswith("BUILDHOOK_")}
    variables.update(
        PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        BUILDHOOK_STORE=str(store_dir),
        BUILDHOOK_CONFIG=str(tmp_path / "no-config.toml"),
        LC_ALL="C",
    )
    return variables


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    """A fresh copy of the sample project (v1.0), without build products."""
    destination = tmp_path / "kvd-src"
    shutil.copytree(SAMPLE_PROJECT, destination,
                    ignore=shutil.ignore_patterns("*.o", "kvd", "build*", ".sconsign.dblite"))
    return destination


def run(command: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 300,
        check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a command; on an unexpected failure show its output in the assertion."""
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, timeout=timeout, input=stdin)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command} exited {result.returncode}\nstdout:\n{result.stdout.decode(errors='replace')}"
            f"\nstderr:\n{result.stderr.decode(errors='replace')}"
        )
    return result


def builds_json(env: dict[str, str]) -> list[dict]:
    """``buildhook builds --json`` for the test's store."""
    return json.loads(run([str(BIN_DIR / "buildhook"), "builds", "--json"], env).stdout)


def compile_records(store_dir: Path) -> list[tuple[str, str, str]]:
    """(source, object, sha256) of every compile record (the journal folded in first)."""
    from buildhook.store import Store

    store = Store(store_dir)
    try:
        return [(record.source, record.object, record.sha256) for record in store.records.compiles()]
    finally:
        store.close()
