"""``buildhook demo``: the build side on the sample server, narrated.

Everything happens in a temporary folder with its own store, so the demo
never touches the user's store or source tree.  It builds kvd v1.0 with
``CC=buildhook-cc``, shows what was recorded and releases it, then builds
v1.1 (the security fix) and shows which recorded objects changed: the
input of patch generation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buildhook.samples import SampleReleaseError, apply_series, patched_tree
from buildhook.store import LinkRecord, Store


class DemoError(Exception):
    """A demo step failed; the message says which and why."""


def _say(message: str) -> None:
    print(message, flush=True)


def _wrapper_path() -> str:
    beside = Path(sys.executable).parent / "buildhook-cc"
    if beside.is_file():
        return str(beside)
    found = shutil.which("buildhook-cc")
    if found is None:
        raise DemoError("buildhook-cc is not installed next to this Python nor on PATH")
    return found


def _run(command: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    except FileNotFoundError as exc:
        raise DemoError(f"{what}: {command[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise DemoError(f"{what}: timed out after 300 s") from exc
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DemoError(f"{what} failed (exit {result.returncode}): {last}")


def _build(tree: Path, env: dict[str, str], label: str) -> LinkRecord:
    _say(f"  building kvd {label} with make CC=buildhook-cc …")
    started = time.monotonic()
    _run(["make", "-s", f"-j{os.cpu_count() or 2}", f"CC={_wrapper_path()}"], tree, env, f"building {label}")
    store = Store(Path(env["BUILDHOOK_STORE"]))
    try:
        link = store.records.latest_links([str((tree / "kvd").resolve())])
    finally:
        store.close()
    if not link:
        raise DemoError(f"building {label}: the link of kvd was not recorded")
    _say(f"  built in {time.monotonic() - started:.1f} s")
    return next(iter(link.values()))


def run_demo(keep: bool = False) -> int:
    """Run the demo; return the exit status."""
    workdir = Path(tempfile.mkdtemp(prefix="buildhook-demo-"))
    env = dict(os.environ, BUILDHOOK_STORE=str(workdir / "store"))
    try:
        tree = patched_tree(workdir / "kvd", None)
        _say(f"[1/4] The sample server kvd (a threaded in-memory key-value store) is in {tree}")
        _say("[2/4] Building release v1.0: every compile and the link are recorded in the store")
        old = _build(tree, env, "v1.0")
        _say(f"  recorded link of {old.binary}")
        _say(f"  build-id {old.build_id}, {len(old.objects)} objects:")
        for item in old.objects:
            _say(f"    {item.sha256[:12]}  {os.path.relpath(item.path, tree)}  (from {os.path.relpath(item.source or '?', tree)})")
        store = Store(Path(env["BUILDHOOK_STORE"]))
        try:
            store.release("v1.0", [old.binary])
        finally:
            store.close()
        _say("[3/4] Marked as release v1.0: its objects stay in the store for later patches")
        _say("[4/4] Applying the v1.1 security fix (long keys no longer collide) and rebuilding")
        try:
            apply_series(tree, "v1.1")
        except SampleReleaseError as exc:
            raise DemoError(str(exc)) from exc
        new = _build(tree, env, "v1.1")
        before = {item.path: item.sha256 for item in old.objects}
        changed = [item for item in new.objects if before.get(item.path) != item.sha256]
        _say(f"  new build-id {new.build_id}; objects whose content changed "
             f"({len(changed)} of {len(new.objects)}): "
             + ", ".join(os.path.relpath(item.path, tree) for item in changed))
        _say("  only these objects are read when the patch from v1.0 is made")
        _say(f"done; the demo store was {workdir / 'store'}" + (" (kept)" if keep else " (removed)"))
        return 0
    except DemoError as exc:
        print(f"buildhook demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
