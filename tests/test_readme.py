"""The README's two quick-start commands are the ones CI and users run.

The first (install + demo) is run here for real, in a copy of the tracked
files with its own virtual environment, exactly as a newcomer would; the
second is what `.ci/run` runs, so CI proves it on every submission.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO


def quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S)]


def test_quick_start_is_exactly_two_one_line_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    assert "buildhook demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    """`.ci/run` extracts its command from the README; check it gets this one."""
    script = (REPO / ".ci" / "run").read_text()
    extraction = re.search(r"test_command=\$\((awk .*)\)\n", script)
    assert extraction, ".ci/run no longer extracts the README's command"
    extracted = subprocess.run(["bash", "-c", extraction.group(1)], cwd=REPO, capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
    assert extracted == quick_start_commands()[1]


def test_first_command_installs_and_runs_the_demo(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=30)
    if listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.decode().split("\0"):
            if name and (REPO / name).is_file():
                (checkout / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, checkout / name)
    else:
        shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info"))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("BUILDHOOK_", "VIRTUAL_ENV", "PYTHON"))}
    env["HOME"] = str(tmp_path / "home")  # the demo must not need, or touch, the user's store
    result = subprocess.run(["bash", "-c", quick_start_commands()[0]], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the build wrote kvd.from-v1.0.po" in result.stdout
    assert "fixed, same process, same connection, state intact" in result.stdout
    assert result.stdout.rstrip().endswith("was removed")
    assert not (tmp_path / "home" / ".local" / "share" / "buildhook").exists()
