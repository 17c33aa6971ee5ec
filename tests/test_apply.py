"""The applier on real running processes: kvd's releases, load, busy code, system calls, bad input.

Everything is real: kvd v1.0 is built with buildhook-cc and released, the
later releases are built over it (the build writes the .po), the old binary
runs, and ``buildhook apply`` patches it through ptrace.  Every process a
test starts is stopped by PID with a timeout.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from buildhook import samples
from tests.conftest import BIN_DIR, run
from tests.support.kvd import KvdClient, KvdProcess, start_kvd
from tests.support.programs import build_env, build_releases

BUILDHOOK = str(BIN_DIR / "buildhook")
LONG_A = "k" * 31 + "-first-A"
LONG_B = "k" * 31 + "-other-B"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier tests attach with ptrace as root")


@dataclass
class KvdReleases:
    """kvd v1.0's binary and the .po files from v1.0 to v1.1, to v1.2 and to v1.4 (v1.3 is refused)."""

    v10: Path
    v11_po: Path
    v12_po: Path
    v14_po: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> KvdReleases:
    root = tmp_path_factory.mktemp("apply")
    env = build_env(root / "store")
    tree = samples.patched_tree(root / "kvd", None)
    run(["make", "-s", "-j8", "CC=buildhook-cc"], env, cwd=tree)
    run([BUILDHOOK, "release", "v1.0"], env)
    v10 = root / "kvd-1.0"
    shutil.copy2(tree / "kvd", v10)
    pos = {}
    for previous, release in ((None, "v1.1"), ("v1.1", "v1.2"), ("v1.2", "v1.4")):
        samples.apply_series(tree, release, after=previous)
        run(["make", "-s", "-j8", "CC=buildhook-cc"], env, cwd=tree)
        pos[release] = root / f"{release}.po"
        shutil.copy2(tree / "kvd.from-v1.0.po", pos[release])
    return KvdReleases(v10, pos["v1.1"], pos["v1.2"], pos["v1.4"], env)


def buildhook(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return run([BUILDHOOK, *args], env, check=check, timeout=120)


def apply(po: Path, pid: int, env: dict[str, str], *extra: str) -> dict:
    [report] = json.loads(buildhook(["apply", str(po), "--pid", str(pid), "--json", *extra], env).stdout)
    return report


def status(pid: int, env: dict[str, str]) -> list[dict]:
    return json.loads(buildhook(["status", "--pid", str(pid), "--json"], env).stdout)["patches"]


def others(pid: int, env: dict[str, str]) -> list[tuple[str, str]]:
    """(patch id, condition) of every region in the process that is not applied."""
    result = json.loads(buildhook(["status", "--pid", str(pid), "--json"], env).stdout)["others"]
    return [(item["patch_id"], item["condition"]) for item in result]


def region_mapped(pid: int) -> bool:
    return "/memfd:buildhook:" in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture
def kvd(releases: KvdReleases) -> KvdProcess:
    with start_kvd(releases.v10) as process:
        yield process


def test_v11_fixes_the_running_server_and_keeps_its_state(releases: KvdReleases, kvd: KvdProcess) -> None:
    with KvdClient(kvd.port) as client:
        assert client.command("SET colour blue") == "OK"
        assert client.command("INCR hits") == "1"
        assert client.command(f"SET {LONG_A} first") == "OK"
        assert client.command(f"SET {LONG_B} second") == "OK"
        assert client.command(f"GET {LONG_A}") == "second", "v1.0's bug: long keys collide"
        report = apply(releases.v11_po, kvd.pid, releases.env)
        assert report["result"] == "applied" and report["functions"] == ["protocol_dispatch"]
        assert 0 < report["pause_us"] < 1_000_000 and report["total_ms"] > 0
        assert report["deferred_ms"] > 0, "as root the applier defers to other tasks until it seizes"
        # The same connection, now served by the new code: state intact, bug fixed.
        assert client.command("VERSION") == "kvd 1.1"
        assert client.command("GET colour") == "blue"
        assert client.command("INCR hits") == "2"
        assert client.command(f"SET {LONG_A} again") == "ERR key too long"
        [applied] = status(kvd.pid, releases.env)
        assert applied["patch_id"] == report["patch_id"] and applied["functions"][0]["name"] == "protocol_dispatch"
        reverted = json.loads(buildhook(["revert", "--pid", str(kvd.pid), "--json"], releases.env).stdout)[0]
        assert reverted["result"] == "reverted"
        assert client.command("VERSION") == "kvd 1.0"
        assert client.command("GET colour") == "blue"
        assert status(kvd.pid, releases.env) == []
        assert others(kvd.pid, releases.env) == [(report["patch_id"], "reverted")], \
            "the region stays mapped: the process may hold pointers into it"


def test_v12_adds_a_command_and_a_global(releases: KvdReleases, kvd: KvdProcess) -> None:
    with KvdClient(kvd.port) as client:
        assert client.command("APPEND log a") == "ERR unknown command"
        apply(releases.v12_po, kvd.pid, releases.env)
        assert client.command("VERSION") == "kvd 1.2"
        assert client.command("APPEND log ab") == "2"
        assert client.command("APPEND log cd") == "4"
        assert client.command("GET log") == "abcd"


def test_newer_patch_replaces_the_older_one(releases: KvdReleases, kvd: KvdProcess) -> None:
    with KvdClient(kvd.port) as client:
        first = apply(releases.v11_po, kvd.pid, releases.env)
        second = apply(releases.v12_po, kvd.pid, releases.env)
        [applied] = status(kvd.pid, releases.env)
        assert applied["patch_id"] == second["patch_id"] != first["patch_id"]
        assert client.command("VERSION") == "kvd 1.2"
        assert client.command(f"SET {LONG_A} x") == "ERR key too long"
        assert others(kvd.pid, releases.env) == [(first["patch_id"], "replaced")]
        buildhook(["revert", "--pid", str(kvd.pid)], releases.env)
        assert client.command("VERSION") == "kvd 1.0"
        assert client.command(f"SET {LONG_A} x") == "OK"
        assert status(kvd.pid, releases.env) == []
        assert sorted(others(kvd.pid, releases.env)) == sorted([(first["patch_id"], "replaced"),
                                                                (second["patch_id"], "reverted")])


def test_apply_and_revert_under_load_lose_nothing(releases: KvdReleases, kvd: KvdProcess) -> None:
    stop = threading.Event()
    errors: list[str] = []
    served = [0] * 4

    def client_loop(number: int) -> None:
        try:
            with KvdClient(kvd.port) as client:
                count = 0
                while not stop.is_set():
                    count += 1
                    key = f"c{number}-{count % 50}"
                    if client.command(f"SET {key} v{count}") != "OK":
                        errors.append(f"{number}: SET")
                    if client.command(f"GET {key}") != f"v{count}":
                        errors.append(f"{number}: GET")
                    if client.command(f"INCR n{number}") != str(count):
                        errors.append(f"{number}: INCR")
                    served[number] = count
        except Exception as exc:  # noqa: BLE001 - a dropped connection is what we look for
            errors.append(f"{number}: {exc!r}")

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        for _ in range(5):
            apply(releases.v11_po, kvd.pid, releases.env, "--timeout", "10")
            time.sleep(0.05)
            buildhook(["revert", "--pid", str(kvd.pid), "--timeout", "10"], releases.env)
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    assert all(count > 20 for count in served), served
    assert kvd.alive()


@pytest.mark.parametrize("damage", ["another-build", "tampered-code", "truncated-po", "missing-pid", "older-po"])
def test_bad_input_is_one_line_and_changes_nothing(damage: str, releases: KvdReleases, kvd: KvdProcess,
                                                   tmp_path: Path) -> None:
    po, pid = releases.v11_po, kvd.pid
    expected = {"another-build": "does not map the patch's target", "tampered-code": "differs from the patch's base",
                "truncated-po": "is not a valid buildhook patch", "missing-pid": "no process",
                "older-po": "made by an older buildhook; rebuild it"}[damage]
    other: subprocess.Popen[bytes] | None = None
    if damage == "another-build":
        other = subprocess.Popen(["sleep", "60"])
        pid = other.pid
    elif damage == "tampered-code":
        address = _symbol_address(kvd.pid, releases.v10, "protocol_dispatch")
        with open(f"/proc/{kvd.pid}/mem", "r+b", buffering=0) as memory:
            memory.seek(address + 1)
            original = memory.read(1)
            memory.seek(address + 1)
            memory.write(bytes([original[0] ^ 0xFF]))
    elif damage == "truncated-po":
        po = tmp_path / "truncated.po"
        po.write_bytes(releases.v11_po.read_bytes()[:1000])
    elif damage == "older-po":  # a .po from before entry copies: a valid patch, but its jumps cannot be gated
        po = tmp_path / "older.po"
        po.write_bytes(_without_entry_copies(releases.v11_po.read_bytes()))
    else:
        pid = 4_000_000
    try:
        result = buildhook(["apply", str(po), "--pid", str(pid)], releases.env, check=False)
        assert result.returncode == (2 if damage in ("tampered-code", "older-po") else 1)
        [line] = result.stderr.decode().strip().splitlines()
        assert expected in line
        assert not region_mapped(kvd.pid) and status(kvd.pid, releases.env) == []
    finally:
        if other is not None:
            other.kill()
            other.wait(timeout=10)
        if damage == "tampered-code":
            with open(f"/proc/{kvd.pid}/mem", "r+b", buffering=0) as memory:
                memory.seek(address + 1)
                memory.write(original)
    with KvdClient(kvd.port) as client:
        assert client.command("VERSION") == "kvd 1.0"


def _without_entry_copies(data: bytes) -> bytes:
    """The same .po as an older buildhook wrote it: no entry_copy key (renamed, same length), id recomputed."""
    import hashlib
    import re

    data = data.replace(b'"entry_copy": ', b'"entry_copx": ')
    old_id = re.search(rb'"patch_id": "([0-9a-f]{64})"', data).group(1)  # type: ignore[union-attr]
    zeroed = data.replace(old_id, b"0" * 64, 1)
    return zeroed.replace(b"0" * 64, hashlib.sha256(zeroed).hexdigest().encode(), 1)


def _symbol_address(pid: int, binary: Path, name: str) -> int:
    from buildhook.apply.process import mapped_objects
    from buildhook.elf.binary import LinkedBinary

    linked = LinkedBinary(binary.read_bytes(), str(binary))
    symbol = next(s for s in linked.symbols if s.name == name)
    target = next(item for item in mapped_objects(pid) if item.path == str(binary))
    return target.bias + symbol.address


def test_ptrace_denied_for_an_unprivileged_user(releases: KvdReleases, kvd: KvdProcess) -> None:
    """The standalone applier run as nobody against a root process: one clear line."""
    if shutil.which("setpriv") is None or not Path("/usr/bin/python3").exists():
        pytest.skip("needs setpriv and a system python3")
    shared = Path(tempfile.mkdtemp(prefix="buildhook-nobody-"))
    try:
        shared.chmod(0o755)
        archive = shared / "apply.pyz"
        buildhook(["applier-zipapp", str(archive)], releases.env)
        po = shared / "fix.po"
        shutil.copy2(releases.v11_po, po)
        for path in (archive, po):
            path.chmod(path.stat().st_mode | stat.S_IROTH)
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                                 "-I", str(archive), "apply", str(po), "--pid", str(kvd.pid)],
                                capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "not allowed" in line and str(kvd.pid) in line and "root" in line
    assert not region_mapped(kvd.pid)


def test_exe_patches_every_process_of_the_binary(releases: KvdReleases) -> None:
    servers = [start_kvd(releases.v10) for _ in range(3)]
    try:
        result = buildhook(["apply", str(releases.v11_po), "--exe", str(releases.v10), "--json"], releases.env)
        reports = json.loads(result.stdout)
        assert sorted(report["pid"] for report in reports) == sorted(server.pid for server in servers)
        for server in servers:
            with KvdClient(server.port) as client:
                assert client.command("VERSION") == "kvd 1.1"
    finally:
        for server in servers:
            server.stop()


# -- programs with code that is always busy, and threads in system calls ------------


@dataclass
class Program:
    process: subprocess.Popen[bytes]
    po: Path
    env: dict[str, str]
    old: Path  # the old binary it runs

    def read_line(self, timeout: float = 10) -> str:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("the program printed nothing in time")
        return self.process.stdout.readline().decode().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_program(name: str, root: Path) -> Program:
    """Build programs/<name>/old with the wrapper, release it, build new over it, run old."""
    releases = build_releases(name, root, ("new",))
    process = subprocess.Popen([str(releases.old)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return Program(process, releases.patches["new"], releases.env, releases.old)


def test_always_busy_function_is_refused_and_the_process_goes_on(tmp_path: Path) -> None:
    program = start_program("busy", tmp_path)
    try:
        assert program.read_line() == "ready"
        started = time.monotonic()
        result = buildhook(["apply", str(program.po), "--pid", str(program.process.pid), "--timeout", "0.5"],
                           program.env, check=False)
        assert result.returncode == 2
        [line] = result.stderr.decode().strip().splitlines()
        assert "serve_forever always in use" in line and f"threads {program.process.pid} " in line
        assert time.monotonic() - started < 10
        assert program.process.poll() is None
        assert not region_mapped(program.process.pid)
        assert status(program.process.pid, program.env) == []
    finally:
        program.stop()


def test_threads_in_system_calls_never_see_eintr(tmp_path: Path) -> None:
    program = start_program("syscalls", tmp_path)
    try:
        assert program.read_line() == "ready syscalls v1"
        assert program.process.stdin is not None
        for _ in range(3):
            buildhook(["apply", str(program.po), "--pid", str(program.process.pid)], program.env)
            program.process.stdin.write(b"banner\n")
            program.process.stdin.flush()
            assert program.read_line() == "syscalls v2"
            buildhook(["revert", "--pid", str(program.process.pid)], program.env)
            program.process.stdin.write(b"banner\n")
            program.process.stdin.flush()
            assert program.read_line() == "syscalls v1", "an EINTR line would show up here instead"
    finally:
        program.stop()


def test_new_import_of_an_ifunc_runs_its_resolver_in_the_target(tmp_path: Path) -> None:
    program = start_program("ifunc", tmp_path)
    try:
        assert program.read_line() == "ready"
        assert program.process.stdin is not None
        imports = json.loads(buildhook(["inspect", str(program.po), "--json"], program.env).stdout)["imports"]
        assert "memrchr" in imports
        buildhook(["apply", str(program.po), "--pid", str(program.process.pid)], program.env)
        program.process.stdin.write(b"/usr/lib/libc.so.6\n")
        program.process.stdin.flush()
        assert program.read_line() == "libc.so.6"
        program.process.stdin.write(b"no-slash-here\n")
        program.process.stdin.flush()
        assert program.read_line() == "no-slash-here"
    finally:
        program.stop()


def test_region_is_named_exactly_while_the_main_thread_churns_its_stack(tmp_path: Path) -> None:
    program = start_program("stackchurn", tmp_path)
    try:
        assert program.read_line() == "ready churn v1"
        for _ in range(5):
            report = apply(program.po, program.process.pid, program.env)
            names = {line.split(maxsplit=5)[5] for line in Path(f"/proc/{program.process.pid}/maps").read_bytes()
                     .decode("utf-8", "replace").splitlines() if "memfd:" in line}
            assert names == {f"/memfd:buildhook:{report['patch_id']} (deleted)"}
            assert [p["patch_id"] for p in status(program.process.pid, program.env)] == [report["patch_id"]]
            buildhook(["revert", "--pid", str(program.process.pid)], program.env)
        assert program.process.poll() is None
    finally:
        program.stop()


def test_v14_moves_every_entry_into_the_new_layout(releases: KvdReleases, kvd: KvdProcess) -> None:
    """v1.3's field in the middle of struct entry, with v1.4's migration: BUILDHOOK_LAYOUT_CHANGE and a
    transform of the table that copies every running entry into the new layout (docs/data-changes.md)."""
    keys = [f"key{n}" for n in range(600)]  # more keys than buckets: chains of several entries
    with KvdClient(kvd.port) as client, KvdClient(kvd.port) as other:
        for key in keys:
            assert client.command(f"SET {key} value-of-{key}") == "OK"
        assert client.command("INCR counter") == "1"
        report = apply(releases.v14_po, kvd.pid, releases.env)
        assert [m["name"] for m in report["migrations"]] == ["table"]
        assert report["migrations"][0]["outcome"] == "transformed"
        assert client.command("VERSION") == "kvd 1.4"
        assert all(other.command(f"GET {key}") == f"value-of-{key}" for key in keys)
        assert client.command("GET key7") == "value-of-key7"
        assert client.command("HITS key7") == "2"  # counted from the apply on: other's GET, then this one
        assert client.command("INCR counter") == "2"
        assert client.command("SET key7 changed") == "OK" and client.command("GET key7") == "changed"
        assert client.command(f"SET {LONG_A} x") == "ERR key too long"  # v1.1's fix is in the patch too
        buildhook(["revert", "--pid", str(kvd.pid)], releases.env)
        assert client.command("VERSION") == "kvd 1.0"
        assert client.command("GET key7") == "value-of-key7"  # the old table, as it was at the apply
        assert client.command("GET key599") == "value-of-key599"
