#!/usr/bin/env python3
"""Real-world proof (issue 6): patch a real server live through its Debian security series.

For PACKAGE (memcached for now; haproxy is not done yet):

1. ``apt-get source`` it (bookworm; see realsource.py) and find the security
   patches at the end of ``debian/patches/series`` (names with a CVE id);
2. build the tree *without* them with ``CC=buildhook-cc`` as debian/rules
   configures it (plus the options that compile the fixed code), release it
   as ``deployed``, start the server on 127.0.0.1 with known state (keys,
   counters) and a bounded load generator running against it;
3. for each security patch in order: apply it to the source, rebuild with the
   wrapper, make the cumulative ``.po`` from ``deployed``, apply it live under
   load (it replaces the previous one), and check that the server answers,
   the state is intact and ``status`` shows the new functions.

Per patch it records applied / no code change / refused (reasons) / failed,
the .po size, functions replaced (compiled level) vs functions the source
diff touches, ``pause_us`` and the client errors during the apply.

Run as root: ``python bench/realworld.py memcached [--proxy] [--json]``.
Every process it starts is stopped by PID with a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realsource  # noqa: E402  (bench/ is not a package)

BIN_DIR = Path(sys.executable).parent
BUILDHOOK = str(BIN_DIR / "buildhook")
CONFIGURE = {"memcached": ("--enable-sasl", "--enable-sasl-pwdb", "--enable-tls")}
HUNK_FUNCTION = re.compile(r"^@@ [^@]+ @@\s*(?:[\w\s\*]+?\b)?(\w+)\s*\(", re.M)


@dataclass
class PatchRow:
    """What happened to one security patch."""

    patch: str
    outcome: str = "failed"
    reasons: list[str] = field(default_factory=list)
    po_size: int = 0
    functions_replaced: list[str] = field(default_factory=list)
    source_functions: list[str] = field(default_factory=list)
    pause_us: float | None = None
    client_errors: int = 0
    state_intact: bool | None = None


class MemcachedServer:
    """memcached on 127.0.0.1 at a free port, stopped by PID."""

    def __init__(self, binary: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen([str(binary), "-u", "root", "-l", "127.0.0.1", "-p", str(self.port),
                                         "-U", "0", "-t", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"memcached did not listen on 127.0.0.1:{self.port} within 10 s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


class Client:
    """The memcached text protocol, enough for set/get/incr, every call with a timeout."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.stream = self.socket.makefile("rwb")

    def call(self, line: str, data: str | None = None) -> str:
        self.stream.write(line.encode() + b"\r\n" + (data.encode() + b"\r\n" if data is not None else b""))
        self.stream.flush()
        return self.stream.readline().decode().strip()

    def get(self, key: str) -> str | None:
        header = self.call(f"get {key}")
        if header == "END":
            return None
        value = self.stream.readline().decode().strip()
        self.stream.readline()  # END
        return value

    def close(self) -> None:
        self.socket.close()


class Load:
    """Bounded client load: incr on a private counter and get of a known key, per thread."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.stop_event = threading.Event()
        self.errors: list[str] = []
        self.requests = [0] * clients
        self.threads = [threading.Thread(target=self._loop, args=(n,), daemon=True) for n in range(clients)]

    def _loop(self, number: int) -> None:
        try:
            client = Client(self.port)
            client.call(f"set load{number} 0 0 1", "0")
            count = 0
            while not self.stop_event.is_set():
                count += 1
                if client.call(f"incr load{number} 1") != str(count):
                    self.errors.append(f"client {number}: incr out of step at {count}")
                if client.get("key7") != "value-7":
                    self.errors.append(f"client {number}: key7 lost")
                self.requests[number] = count
            client.close()
        except Exception as exc:  # noqa: BLE001 - a dropped connection is a client error
            self.errors.append(f"client {number}: {exc!r}")

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=10)


def source_functions(patch_file: Path) -> list[str]:
    """Function names in the hunk headers of a patch's C files (the source-level change)."""
    names: set[str] = set()
    current_is_c = False
    for line in patch_file.read_text(errors="replace").splitlines():
        if line.startswith("+++ "):
            current_is_c = line.rstrip().endswith((".c", ".h"))
        elif current_is_c and line.startswith("@@"):
            match = HUNK_FUNCTION.match(line)
            if match:
                names.add(match.group(1))
    return sorted(names)


def buildhook(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUILDHOOK, *args], env=env, capture_output=True, text=True, timeout=timeout)


def check_state(port: int, keys: int) -> bool:
    client = Client(port)
    try:
        return all(client.get(f"key{i}") == f"value-{i}" for i in range(keys))
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", choices=("memcached", "haproxy"))
    parser.add_argument("--workdir", type=Path, default=realsource.DEFAULT_WORKDIR)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--proxy", action="store_true", help="memcached: --enable-proxy (its proxy CVE fixes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.package == "haproxy":
        print("realworld: haproxy is not done yet (issue 6); run it with memcached", file=sys.stderr)
        return 1

    source = realsource.fetch_source(args.package, args.workdir)
    realsource.install_build_deps(args.package, source)
    fixes = realsource.security_patches(source)
    tree = args.workdir / "realworld" / args.package
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(source, tree, symlinks=True)
    for name in reversed(fixes):
        realsource.apply_debian_patch(tree, name, reverse=True)
    store = Path(tempfile.mkdtemp(prefix="buildhook-realworld-store-"))
    env = dict(os.environ, BUILDHOOK_STORE=str(store), BUILDHOOK_PATCH_FROM="off",
               PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    configure = list(CONFIGURE[args.package]) + (["--enable-proxy"] if args.proxy else [])
    rows: list[PatchRow] = []
    server: MemcachedServer | None = None
    load: Load | None = None
    try:
        realsource.run(["./configure", f"CC={BIN_DIR / 'buildhook-cc'}", "CFLAGS=-O2 -g", *configure],
                       cwd=tree, env=env, timeout=900)
        realsource.run(["make", f"-j{args.jobs}"], cwd=tree, env=env, timeout=1800)
        binary = tree / "memcached"
        result = buildhook(["release", "deployed", str(binary)], env)
        if result.returncode != 0:
            raise SystemExit(f"release failed: {result.stderr.strip()}")
        deployed = tree.parent / "memcached-deployed"
        shutil.copy2(binary, deployed)
        server = MemcachedServer(deployed)
        client = Client(server.port)
        for i in range(args.keys):
            client.call(f"set key{i} 0 0 {len(f'value-{i}')}", f"value-{i}")
        client.close()
        load = Load(server.port, args.clients)
        load.start()
        for number, fix in enumerate(fixes, 1):
            row = PatchRow(fix, source_functions=source_functions(tree / "debian" / "patches" / fix))
            rows.append(row)
            realsource.apply_debian_patch(tree, fix)
            built = subprocess.run(["make", f"-j{args.jobs}"], cwd=tree, env=env, capture_output=True, text=True,
                                   timeout=1800)
            if built.returncode != 0:
                row.reasons.append(f"rebuild failed: {(built.stdout + built.stderr).strip().splitlines()[-1:]}")
                continue
            po = tree.parent / f"{number:02d}-{fix}.po"
            diff = buildhook(["diff", "--from", "deployed", str(binary), "-o", str(po), "--json"], env)
            report = json.loads(diff.stdout) if diff.stdout.strip().startswith("{") else {}
            if diff.returncode == 3:
                row.outcome = "no code change"
                continue
            if diff.returncode == 2:
                row.outcome = "refused"
                row.reasons = [f"{r['file']}: {r['symbol']}: {r['reason']}" for r in report.get("refused", [])]
                continue
            if diff.returncode != 0:
                row.reasons.append(diff.stderr.strip())
                continue
            row.po_size = po.stat().st_size
            row.functions_replaced = [f"{r['file']}:{r['name']}" for r in report["replaced"]]
            errors_before = len(load.errors)
            applied = buildhook(["apply", str(po), "--pid", str(server.pid), "--json", "--timeout", "10"], env)
            row.client_errors = len(load.errors) - errors_before
            if applied.returncode != 0:
                row.outcome = "refused" if applied.returncode == 2 else "failed"
                row.reasons.append(applied.stderr.strip())
                continue
            row.pause_us = json.loads(applied.stdout)[0]["pause_us"]
            status = json.loads(buildhook(["status", "--pid", str(server.pid), "--json"], env).stdout)
            redirected = {f["name"] for p in status["patches"] for f in p["functions"]}
            if server.process.poll() is not None:
                row.reasons.append("the server died")
                continue
            row.state_intact = check_state(server.port, args.keys)
            missing = {name.split(":", 1)[1] for name in row.functions_replaced} - redirected
            if missing:
                row.reasons.append(f"status does not show {sorted(missing)}")
                continue
            row.outcome = "applied" if row.state_intact else "failed"
    finally:
        if load is not None:
            load.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(store, ignore_errors=True)

    summary = {"package": f"{args.package} {realsource.source_version(source)}", "configure": configure,
               "clients": args.clients, "requests": sum(load.requests) if load else 0,
               "client_errors": load.errors[:20] if load else [], "patches": [asdict(row) for row in rows],
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['package']} (configure {' '.join(configure)}), {args.clients} clients, "
              f"{summary['requests']} requests, {len(load.errors) if load else 0} client errors")
        print(f"{'patch':<44} {'outcome':<15} {'.po':>6} {'fn (src/obj)':>12} {'pause µs':>9} {'errors':>6}")
        for row in rows:
            pause = f"{row.pause_us:.0f}" if row.pause_us is not None else "-"
            print(f"{row.patch:<44} {row.outcome:<15} {row.po_size:>6} "
                  f"{len(row.source_functions):>5}/{len(row.functions_replaced):<6} {pause:>9} {row.client_errors:>6}")
            for reason in row.reasons:
                print(f"    {reason}")
    return 0 if load is not None and not load.errors and all(r.outcome != "failed" for r in rows) else 3


if __name__ == "__main__":
    sys.exit(main())
