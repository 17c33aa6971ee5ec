"""Helpers for tests that build, run and talk to the sample server kvd (see buildhook.samples).

Every later test patches a *running* kvd, so starting it, talking to it and
stopping it reliably (by PID, with timeouts, even when a test fails) lives
here once instead of in every test module.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from buildhook import samples
from buildhook.samples import KvdClient, KvdError, KvdProcess, start_kvd  # noqa: F401  (re-exported)

#: The sample project in this checkout.
SAMPLE_PROJECT = Path(__file__).resolve().parents[2] / "sample_project"


def patched_tree(src_dir: Path, dest: Path, upto: str | None) -> Path:
    """Copy the sample project to `dest` at release `upto` (None = v1.0); see buildhook.samples."""
    try:
        return samples.patched_tree(dest, upto, src_dir)
    except samples.SampleReleaseError as exc:
        raise KvdError(str(exc)) from exc


def build_with_make(
    tree: Path, make_args: Sequence[str] = (), forbid_warnings: bool = True, timeout: float = 120
) -> Path:
    """Run `make -j8 [make_args]` in `tree` and return the built binary.

    kvd is meant to build warning-free with its default flags, so by default a
    compiler warning fails the build too; the error carries make's output so a
    broken build explains itself.
    """
    result = subprocess.run(
        ["make", "-j8", *make_args], cwd=tree, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise KvdError(f"make failed in {tree}:\n{output}")
    if forbid_warnings and "warning:" in output:
        raise KvdError(f"make in {tree} printed warnings:\n{output}")
    return tree / "kvd"
