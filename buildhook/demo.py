"""``buildhook demo``: a running server fixed live, narrated step by step.

Everything happens in a temporary folder with its own store, so the demo
never touches the user's store or source tree: build kvd v1.0 with the
wrapper and release it, start it with some state, show its bug, build the
v1.1 fix (the build writes the .po), show what the patch holds, apply it to
the running server, show the fix, the state and the pause, revert and
re-apply, stop the server and clean up.  The server is always stopped, even
when a step fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buildhook.po.format import default_patch_path
from buildhook.samples import KvdClient, KvdError, KvdProcess, SampleReleaseError, apply_series, patched_tree, \
    start_kvd
from buildhook.store import LinkRecord, Store

LONG_A = "session:" + "x" * 23 + ":alice"
LONG_B = "session:" + "x" * 23 + ":mallory"
STEPS = 7


class DemoError(Exception):
    """A demo step failed; the message says which and why."""


def _say(message: str) -> None:
    print(message, flush=True)


def _step(number: int, message: str) -> None:
    _say(f"[{number}/{STEPS}] {message}")


def _wrapper_path() -> str:
    beside = Path(sys.executable).parent / "buildhook-cc"
    if beside.is_file():
        return str(beside)
    found = shutil.which("buildhook-cc")
    if found is None:
        raise DemoError("buildhook-cc is not installed next to this Python nor on PATH")
    return found


def _build(tree: Path, env: dict[str, str], label: str) -> LinkRecord:
    _say(f"      make CC=buildhook-cc (kvd {label}) …")
    started = time.monotonic()
    try:
        result = subprocess.run(["make", "-s", f"-j{os.cpu_count() or 2}", f"CC={_wrapper_path()}"], cwd=tree,
                                env=env, capture_output=True, text=True, timeout=300)
    except FileNotFoundError as exc:
        raise DemoError("make is not installed") from exc
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DemoError(f"building kvd {label} failed (exit {result.returncode}): {last}")
    store = Store(env["BUILDHOOK_STORE"])
    try:
        link = store.records.latest_links([str((tree / "kvd").resolve())])
    finally:
        store.close()
    if not link:
        raise DemoError(f"building kvd {label}: the link was not recorded")
    _say(f"      built in {time.monotonic() - started:.1f} s")
    return next(iter(link.values()))


def _expect(client: KvdClient, command: str, expected: str | None = None) -> str:
    reply = client.command(command)
    shown = command if len(command) < 60 else command[:57] + "…"
    _say(f"      > {shown:<44} {reply}")
    if expected is not None and reply != expected:
        raise DemoError(f"{command!r} answered {reply!r}, expected {expected!r}")
    return reply


def _apply(po: Path, pid: int) -> float:
    from buildhook.apply.applier import ApplyRefused, apply_patch
    from buildhook.apply.threads import TraceDenied
    from buildhook.po.reader import read_patch_file

    try:
        report = apply_patch(read_patch_file(str(po)), pid, timeout=5.0, po_name=po.name)
    except (ApplyRefused, TraceDenied) as exc:
        raise DemoError(f"applying the patch to process {pid}: {exc}") from exc
    _say(f"      applied to pid {pid}: {', '.join(report.functions)} redirected; all threads paused "
         f"{report.pause_us:.0f} µs, {report.total_ms:.0f} ms in all")
    return report.pause_us


def _describe_patch(po: Path) -> None:
    from buildhook.po.reader import read_patch_file

    meta = read_patch_file(str(po)).metadata
    _say(f"      the build wrote {po.name} ({po.stat().st_size} bytes, patch {meta['patch_id'][:16]})")
    for entry in meta["functions"]:
        _say(f"      replaces {entry['file']}: {entry['name']} ({entry['old_size']} → {entry['new_size']} bytes)")
    for entry in meta["new_functions"]:
        _say(f"      adds     {entry['file']}: {entry['name']} ({entry['new_size']} bytes)")


def run_demo(keep: bool = False) -> int:
    """Run the demo; return the exit status."""
    workdir = Path(tempfile.mkdtemp(prefix="buildhook-demo-"))
    env = dict(os.environ, BUILDHOOK_STORE=str(workdir / "store"), BUILDHOOK_CONFIG=str(workdir / "none.toml"))
    server: KvdProcess | None = None
    started = time.monotonic()
    try:
        tree = patched_tree(workdir / "kvd", None)
        _step(1, "Build release v1.0 of kvd, a threaded in-memory key-value server, with CC=buildhook-cc")
        old = _build(tree, env, "v1.0")
        store = Store(env["BUILDHOOK_STORE"])
        try:
            store.release("v1.0", [old.binary])
        finally:
            store.close()
        deployed = workdir / "kvd-v1.0"
        shutil.copy2(tree / "kvd", deployed)
        _say(f"      recorded {len(old.objects)} objects and the link (build-id {old.build_id[:16]}…); released as v1.0")

        _step(2, "Deploy it: start kvd v1.0 and store some state")
        server = start_kvd(deployed)
        _say(f"      kvd v1.0 is pid {server.pid}, listening on 127.0.0.1:{server.port}")
        client = KvdClient(server.port)
        _expect(client, "SET user:1 alice", "OK")
        for count in ("1", "2", "3"):
            _expect(client, "INCR logins", count)

        _step(3, "Its bug: keys longer than 31 bytes are silently truncated, so two of them collide")
        _expect(client, f"SET {LONG_A} alice-token", "OK")
        _expect(client, f"SET {LONG_B} mallory-token", "OK")
        _expect(client, f"GET {LONG_A}", "mallory-token")
        _say("      alice's session now holds mallory's token: a security fix is needed, without a restart")

        _step(4, "Build v1.1, the fix, with the same wrapper: the .po comes out of the build")
        try:
            apply_series(tree, "v1.1")
        except SampleReleaseError as exc:
            raise DemoError(str(exc)) from exc
        _build(tree, env, "v1.1")
        po = Path(default_patch_path(str(tree / "kvd"), "v1.0"))
        if not po.is_file():
            raise DemoError(f"the v1.1 build did not write {po.name}")
        _describe_patch(po)

        _step(5, f"Apply the patch to the running server (pid {server.pid}); the client stays connected")
        _apply(po, server.pid)
        _expect(client, f"SET {LONG_A} alice-token", "ERR key too long")
        _expect(client, "VERSION", "kvd 1.1")
        _expect(client, "GET user:1", "alice")
        _expect(client, "INCR logins", "4")
        _say("      fixed, same process, same connection, state intact")

        _step(6, "Revert, then apply again")
        from buildhook.apply.applier import revert_patch

        [report] = revert_patch(server.pid)
        _say(f"      reverted: paused {report.pause_us:.0f} µs")
        _expect(client, "VERSION", "kvd 1.0")
        _apply(po, server.pid)
        _expect(client, "VERSION", "kvd 1.1")
        _expect(client, "GET user:1", "alice")
        client.close()

        _step(7, "Stop the server and clean up")
        server.stop()
        server = None
        _say(f"done in {time.monotonic() - started:.0f} s; the demo folder {workdir} was "
             + ("kept" if keep else "removed"))
        return 0
    except (DemoError, KvdError, OSError) as exc:
        print(f"buildhook demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
