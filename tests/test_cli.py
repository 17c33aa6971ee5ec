"""The `buildhook` command's small helpers: integration folders, flags, settings."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.conftest import run


def test_cmake_dir_holds_the_module(env: dict[str, str], buildhook_cmd: str) -> None:
    folder = Path(run([buildhook_cmd, "cmake-dir"], env).stdout.decode().strip())
    assert (folder / "BuildHook.cmake").is_file()


def test_scons_dir_holds_the_tool(env: dict[str, str], buildhook_cmd: str) -> None:
    folder = Path(run([buildhook_cmd, "scons-dir"], env).stdout.decode().strip())
    assert (folder / "site_tools" / "buildhook.py").is_file()


def test_flags_follow_the_settings(env: dict[str, str], buildhook_cmd: str) -> None:
    assert "-ffunction-sections" in shlex.split(run([buildhook_cmd, "flags"], env).stdout.decode())
    env["BUILDHOOK_FUNCTION_SECTIONS"] = "no"
    assert "-ffunction-sections" not in shlex.split(run([buildhook_cmd, "flags"], env).stdout.decode())
    link = shlex.split(run([buildhook_cmd, "flags", "--link", "x.map"], env).stdout.decode())
    assert link == ["-Wl,--build-id", "-Wl,-Map=x.map"]


def test_settings_lists_every_variable(env: dict[str, str], buildhook_cmd: str, store_dir: Path) -> None:
    from buildhook.settings import SETTINGS

    out = run([buildhook_cmd, "settings"], env).stdout.decode()
    for setting in SETTINGS:
        assert setting.env in out
    assert str(store_dir) in out


def test_store_path_follows_the_environment(env: dict[str, str], buildhook_cmd: str, store_dir: Path) -> None:
    assert run([buildhook_cmd, "store", "path"], env).stdout.decode().strip() == str(store_dir)
    del env["BUILDHOOK_STORE"]
    env["XDG_DATA_HOME"] = "/somewhere"
    assert run([buildhook_cmd, "store", "path"], env).stdout.decode().strip() == "/somewhere/buildhook/store"


def test_every_setting_is_documented() -> None:
    from buildhook.settings import SETTINGS
    from tests.conftest import REPO

    doc = (REPO / "docs" / "wrapper.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.env}` | `{setting.key}` |" in doc, setting.env


def test_wheel_ships_every_subpackage() -> None:
    """pyproject lists packages explicitly (the bundled folders are mapped); none may be forgotten."""
    import tomllib

    from tests.conftest import REPO

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "buildhook").rglob("__init__.py")}
    assert on_disk <= listed, f"missing from pyproject.toml packages: {sorted(on_disk - listed)}"
