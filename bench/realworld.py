#!/usr/bin/env python3
"""Real-world proof (issue 6): patch a real server live through its Debian security series.

For PACKAGE (memcached or haproxy):

1. ``apt-get source`` it (bookworm; see realsource.py) and find the security
   patches a stable update appended to ``debian/patches/series``;
2. build the tree *without* them with ``CC=buildhook-cc`` through the
   package's own build system with the options of ``debian/rules`` that
   matter (plus those that compile the fixed code), release it as
   ``deployed``, start the server on 127.0.0.1 with known state (memcached:
   keys; haproxy: stick-table sessions with counters) and exact clients that
   check every answer (an ``incr`` or a session counter that must go up by
   one each time) running throughout;
3. for each security patch in order: apply it to the source, rebuild with the
   wrapper, make the cumulative ``.po`` from ``deployed`` and apply it live
   (it replaces the previous one) while the package's load generator runs
   (memcaslap or wrk through haproxy to a backend), then check that the
   server answers, the state is intact and ``status`` shows the new
   functions.  A patch's regression check that works against a live server
   (a request whose answer the fix changes) runs before and after.

Per patch it records applied / no code change / refused (reasons) / failed,
the .po size, functions replaced at source level (hunks of the patch) vs
compiled level (the .po), ``pause_us`` and the client errors during the apply.

Run as root: ``python bench/realworld.py memcached|haproxy [--json]``.
Every process it starts is stopped by PID with a timeout.
"""

from __future__ import annotations

import argparse
import http.client
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realsource  # noqa: E402  (bench/ is not a package)

BIN_DIR = Path(sys.executable).parent
BUILDHOOK = str(BIN_DIR / "buildhook")
WRAPPER = str(BIN_DIR / "buildhook-cc")
BURST_SECONDS = 6.0      # load-generator run around each apply
APPLY_AFTER_SECONDS = 2.0  # into the burst, so the apply lands under full load
SLOW_MS = 50.0           # a DoS check's answer took this long: the expensive path ran


@dataclass
class PatchRow:
    """What happened to one security patch."""

    patch: str
    outcome: str = "failed"
    reasons: list[str] = field(default_factory=list)
    po_size: int = 0
    functions_replaced: list[str] = field(default_factory=list)   # this patch's own compiled change
    cumulative_replaced: list[str] = field(default_factory=list)  # what the live .po redirects
    source_functions: list[str] = field(default_factory=list)     # functions the patch's hunks touch
    pause_us: float | None = None
    client_errors: int = 0
    load_requests: int = 0
    state_intact: bool | None = None
    check_before: str | None = None
    check_after: str | None = None


# --- processes ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process on 127.0.0.1, waited for on its port and stopped by PID."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"{argv[0]} did not listen on 127.0.0.1:{port} within 10 s: {log.read_text()[-500:]}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


class ExactClients:
    """Client threads whose every answer is checked, running from start to end.

    ``step(number, count)`` makes the count-th request of client *number* and
    returns an error text or None; a raised exception (a dropped connection)
    is an error too.
    """

    def __init__(self, clients: int, connect: Callable[[int], object],
                 step: Callable[[object, int, int], str | None]) -> None:
        self.connect, self.step = connect, step
        self.stop_event = threading.Event()
        self.errors: list[str] = []
        self.requests = [0] * clients
        self.threads = [threading.Thread(target=self._loop, args=(n,), daemon=True) for n in range(clients)]

    def _loop(self, number: int) -> None:
        try:
            connection = self.connect(number)
            count = 0
            while not self.stop_event.is_set():
                count += 1
                error = self.step(connection, number, count)
                if error:
                    self.errors.append(f"client {number}: {error}")
                self.requests[number] = count
                time.sleep(0.002)  # a steady trickle: the builds between applies need the CPU
        except Exception as exc:  # noqa: BLE001 - a dropped connection is a client error
            self.errors.append(f"client {number}: {exc!r}")

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=10)


class Burst:
    """One run of the package's load generator (memcaslap, wrk), bounded by its duration."""

    def __init__(self, argv: list[str], parse: Callable[[str, int], tuple[int, list[str]]]) -> None:
        self.parse = parse
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)

    def finish(self) -> tuple[int, list[str]]:
        """(requests, errors) of the run."""
        try:
            output, _ = self.process.communicate(timeout=BURST_SECONDS + 30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            output, _ = self.process.communicate(timeout=10)
            return 0, ["load generator did not finish"]
        return self.parse(output, self.process.returncode)


# --- packages ---------------------------------------------------------------------


class Memcached:
    """memcached 1.6 (autotools), keys as state, memcaslap as load."""

    name = "memcached"
    tools = {"memcaslap": "libmemcached-tools"}
    configure_args = ("--enable-sasl", "--enable-sasl-pwdb", "--enable-tls", "--enable-proxy")

    def __init__(self, workdir: Path, keys: int) -> None:
        self.workdir, self.keys = workdir, keys
        self.server: Server | None = None

    def describe(self) -> str:
        return f"configure {' '.join(self.configure_args)}"

    def build(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        realsource.run(["./configure", f"CC={WRAPPER}", "CFLAGS=-O2 -g", *self.configure_args],
                       cwd=tree, env=env, timeout=900)
        self.rebuild(tree, env, jobs)

    def rebuild(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        realsource.run(["make", f"-j{jobs}"], cwd=tree, env=env, timeout=1800)

    def binary(self, tree: Path) -> Path:
        return tree / "memcached"

    def start(self, deployed: Path) -> Server:
        port = free_port()
        # -m 1024: memcaslap's window must never evict the known keys.
        self.server = Server([str(deployed), "-u", "root", "-l", "127.0.0.1", "-p", str(port), "-U", "0",
                              "-t", "4", "-m", "1024"], port, self.workdir / "memcached.log")
        client = MemcachedClient(port)
        for i in range(self.keys):
            client.call(f"set key{i} 0 0 {len(f'value-{i}')}", f"value-{i}")
        client.close()
        return self.server

    def exact_clients(self, clients: int) -> ExactClients:
        assert self.server is not None
        port = self.server.port

        def connect(number: int) -> MemcachedClient:
            client = MemcachedClient(port)
            client.call(f"set load{number} 0 0 1", "0")
            return client

        def step(client: object, number: int, count: int) -> str | None:
            assert isinstance(client, MemcachedClient)
            if client.call(f"incr load{number} 1") != str(count):
                return f"incr out of step at {count}"
            if client.get(f"key{count % self.keys}") != f"value-{count % self.keys}":
                return f"key{count % self.keys} lost"
            return None

        return ExactClients(clients, connect, step)

    def burst(self) -> Burst:
        assert self.server is not None
        return Burst(["memcaslap", "-s", f"127.0.0.1:{self.server.port}", "-T", "1", "-c", "8",
                      "-t", f"{BURST_SECONDS:.0f}s", "-v", "0.1"], parse_memcaslap)

    def state_intact(self) -> bool:
        assert self.server is not None
        client = MemcachedClient(self.server.port)
        try:
            return all(client.get(f"key{i}") == f"value-{i}" for i in range(self.keys))
        finally:
            client.close()

    def checks(self, patch: str) -> list[Callable[[], str]]:
        return []  # the fixes' own tests (t/*.t) start their own server; none runs against a live one

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


class MemcachedClient:
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


def parse_memcaslap(output: str, returncode: int) -> tuple[int, list[str]]:
    """memcaslap's totals: operations, and misses/verification failures as errors."""
    numbers = {key: int(value) for key, value in re.findall(r"^(\w+): (\d+)$", output, re.M)}
    ops = re.search(r"Ops: (\d+)", output)
    errors = [f"memcaslap {key}={numbers[key]}" for key in ("get_misses", "verify_misses", "verify_failed")
              if numbers.get(key)]
    if returncode != 0 or ops is None:
        errors.append(f"memcaslap exit {returncode}: {output.strip().splitlines()[-1:]}")
    return (int(ops.group(1)) if ops else 0), errors


HAPROXY_FRONTEND = """\
global
    nbthread 2
    stats socket {socket} mode 600 level admin

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-buffer-request

frontend fe
    bind 127.0.0.1:{port}
    # Sessions as state: a counter per x-session, kept in the process only.
    stick-table type string len 64 size 100k store gpc0,http_req_cnt
    http-request track-sc0 req.hdr(x-session) if {{ req.hdr(x-session) -m found }}
    http-request sc-inc-gpc0(0) if {{ req.hdr(x-session) -m found }}
    http-request set-var(txn.n) req.body,json_query('$.n') if {{ path /json }}
    http-request return status 200 content-type text/plain lf-string "n=%[var(txn.n)]" if {{ path /json }}
    http-request set-header x-rewritten %[req.hdr(x-rewrite),regsub(a,bb,g)] if {{ req.hdr(x-rewrite) -m found }}
    http-response set-header x-count %[sc0_get_gpc0]
    default_backend be

backend be
    server s1 127.0.0.1:{backend_port}
"""

HAPROXY_BACKEND = """\
global
    nbthread 1

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend backend
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string "ok"
"""


class Haproxy:
    """haproxy 2.6 (its own Makefile, flags of debian/rules), sessions as state, wrk as load."""

    name = "haproxy"
    tools = {"wrk": "wrk"}
    # debian/rules' MAKEARGS that shape the code (install paths and docs left out).
    make_args = ("TARGET=linux-glibc", "USE_PCRE2=1", "USE_PCRE2_JIT=1", "USE_OPENSSL=1", "USE_SLZ=1",
                 "USE_LUA=1", "USE_PROMEX=1", "USE_OT=1", "USE_SYSTEMD=1", "LUA_INC=/usr/include/lua5.3",
                 "IGNOREGIT=true")

    def __init__(self, workdir: Path, keys: int) -> None:
        self.workdir, self.sessions = workdir, keys
        self.server: Server | None = None
        self.backend: Server | None = None
        self.socket = workdir / "haproxy-admin.sock"

    def describe(self) -> str:
        shaping = [arg for arg in self.make_args if arg.startswith(("TARGET=", "USE_"))]
        return "make " + " ".join(shaping) + " with dpkg-buildflags (hardening=+all)"

    def _flags(self, tree: Path) -> list[str]:
        """CFLAGS/CPPFLAGS/LDFLAGS as debian/rules passes them (DEBUG_CFLAGS, LDFLAGS)."""
        env = dict(os.environ, DEB_BUILD_MAINT_OPTIONS="hardening=+all", DEB_LDFLAGS_MAINT_APPEND="-Wl,--as-needed")

        def get(name: str) -> str:
            return subprocess.run(["dpkg-buildflags", "--get", name], cwd=tree, env=env, capture_output=True,
                                  text=True, check=True, timeout=60).stdout.strip()

        version = realsource.source_version(tree)
        return [f"DEBUG_CFLAGS={get('CFLAGS')} {get('CPPFLAGS')}", f"LDFLAGS={get('LDFLAGS')}",
                f"VERSION={version.split('-')[0]}", f"SUBVERS=-{version.split('-', 1)[1]}"]

    def build(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        self.rebuild(tree, env, jobs)

    def rebuild(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        realsource.run(["make", f"-j{jobs}", *self.make_args, f"CC={WRAPPER}", *self._flags(tree)],
                       cwd=tree, env=env, timeout=1800)

    def binary(self, tree: Path) -> Path:
        return tree / "haproxy"

    def start(self, deployed: Path) -> Server:
        backend_port, port = free_port(), free_port()
        backend_config = self.workdir / "backend.cfg"
        backend_config.write_text(HAPROXY_BACKEND.format(port=backend_port))
        config = self.workdir / "haproxy.cfg"
        config.write_text(HAPROXY_FRONTEND.format(port=port, backend_port=backend_port, socket=self.socket))
        # The backend is a separate, never-patched copy: only the proxy is patched.
        backend_binary = self.workdir / "haproxy-backend"
        shutil.copy2(deployed, backend_binary)
        self.backend = Server([str(backend_binary), "-f", str(backend_config), "-db"], backend_port,
                              self.workdir / "backend.log")
        self.server = Server([str(deployed), "-f", str(config), "-db"], port, self.workdir / "haproxy.log")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for i in range(self.sessions):
            for _ in range(self._expected(i)):
                connection.request("GET", "/", headers={"x-session": f"session{i}"})
                connection.getresponse().read()
        connection.close()
        return self.server

    @staticmethod
    def _expected(session: int) -> int:
        return session % 3 + 1

    def exact_clients(self, clients: int) -> ExactClients:
        assert self.server is not None
        port = self.server.port

        def connect(number: int) -> http.client.HTTPConnection:
            return http.client.HTTPConnection("127.0.0.1", port, timeout=5)

        def step(connection: object, number: int, count: int) -> str | None:
            assert isinstance(connection, http.client.HTTPConnection)
            # x-rewrite runs the regsub converter (a fix of the series) on live traffic.
            connection.request("GET", f"/item/{count}", headers={"x-session": f"load{number}", "x-rewrite": "banana"})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200 or body != b"ok":
                return f"request {count}: {response.status} {body[:40]!r}"
            if response.getheader("x-count") != str(count):
                return f"session counter out of step at {count}: {response.getheader('x-count')}"
            return None

        return ExactClients(clients, connect, step)

    def burst(self) -> Burst:
        assert self.server is not None
        return Burst(["wrk", "-t1", "-c8", f"-d{BURST_SECONDS:.0f}s", "--timeout", "5s",
                      f"http://127.0.0.1:{self.server.port}/"], parse_wrk)

    def state_intact(self) -> bool:
        table = self.admin("show table fe")
        counts = dict(re.findall(r"key=(\S+) .*?gpc0=(\d+)", table))
        return all(counts.get(f"session{i}") == str(self._expected(i)) for i in range(self.sessions))

    def admin(self, command: str) -> str:
        """One command on the stats socket (a unix socket: nothing listens beyond loopback)."""
        with socket.socket(socket.AF_UNIX) as admin:
            admin.settimeout(10)
            admin.connect(str(self.socket))
            admin.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := admin.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def checks(self, patch: str) -> list[Callable[[], str]]:
        """Live regression checks for a fix, from the requests its reg-tests/commit describe."""
        assert self.server is not None
        port = self.server.port
        if "empty-content-length" in patch:   # CVE-2023-40225 (reg-tests/http-messaging/h1_to_h1.vtc)
            return [lambda: "empty Content-Length: " + status_line(
                port, b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length:\r\nConnection: close\r\n\r\n")]
        if "do-not-accept-as-part-of-the-URI" in patch:  # CVE-2023-45539 (reg-tests/http-rules/normalize_uri.vtc)
            return [lambda: "'#' in the URI: " + status_line(
                port, b"GET /index.html#fragment HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")]
        if "mjson" in patch:  # CVE-2025-11230: exponent parsing was O(exponent)
            return [lambda: "json_query of 1e100000000: " + timed_request(port, "/json", b'{"n":1e100000000}')]
        return []

    def stop(self) -> None:
        for server in (self.server, self.backend):
            if server is not None:
                server.stop()


def status_line(port: int, request: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        answer = connection.recv(4096)
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(connection closed)"


def timed_request(port: int, path: str, body: bytes) -> str:
    """The answer and the median time of three POSTs (a DoS fix changes the time, not the answer)."""
    times, answer = [], ""
    for _ in range(3):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        start = time.perf_counter()
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        answer = f"{response.status} {response.read().decode(errors='replace')}"
        times.append(time.perf_counter() - start)
        connection.close()
    median_ms = sorted(times)[1] * 1000
    return f"{answer}, {'slow' if median_ms >= SLOW_MS else 'fast'} ({median_ms:.1f} ms)"


def parse_wrk(output: str, returncode: int) -> tuple[int, list[str]]:
    """wrk's totals: requests, and socket errors / non-2xx answers as errors."""
    total = re.search(r"(\d+) requests in", output)
    errors = []
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sockets and any(int(n) for n in sockets.groups()):
        errors.append(f"wrk {sockets.group(0)}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors.append(f"wrk {non_2xx.group(0)}")
    if returncode != 0 or total is None:
        errors.append(f"wrk exit {returncode}: {output.strip().splitlines()[-1:]}")
    return (int(total.group(1)) if total else 0), errors


PACKAGES = {"memcached": Memcached, "haproxy": Haproxy}


# --- the source-level count -------------------------------------------------------------

C_FUNCTION_START = re.compile(r"^(?!(?:if|for|while|switch|return|else|do|typedef|struct|enum|union)\b)"
                              r"[A-Za-z_][\w\s\*]*?\b(\w+)\s*\([^;]*$")


def source_functions(patch_file: Path, tree: Path) -> list[str]:
    """The C functions whose bodies the patch changes, found in the patched source.

    Hunk headers name only the function *before* a hunk (and nothing for
    headers' inline functions), so each changed line is placed in the
    function that encloses it in the file: the nearest earlier line that
    starts a definition at column 0, with no closing brace at column 0 in
    between.
    """
    names: set[str] = set()
    path: Path | None = None
    lines: list[str] = []
    new_line = 0
    for line in patch_file.read_text(errors="replace").splitlines():
        if line.startswith("+++ "):
            name = line[4:].split("\t")[0].strip()
            path = tree / name.split("/", 1)[1] if name.endswith((".c", ".h")) and "/" in name else None
            lines = path.read_text(errors="replace").splitlines() if path is not None and path.exists() else []
        elif line.startswith("@@") and path is not None:
            new_line = int(re.match(r"@@ -\d+(?:,\d+)? \+(\d+)", line).group(1))  # type: ignore[union-attr]
        elif path is not None and new_line and line[:1] in ("+", "-", " "):
            if line[:1] != " ":
                enclosing = _enclosing_function(lines, new_line)
                if enclosing:
                    names.add(enclosing)
            if line[:1] != "-":
                new_line += 1
    return sorted(names)


def _enclosing_function(lines: list[str], line_number: int) -> str | None:
    for index in range(min(line_number, len(lines)) - 1, -1, -1):
        text = lines[index]
        if text.startswith("}"):
            return None
        match = C_FUNCTION_START.match(text)
        if match:
            return match.group(1)
    return None


# --- the run ---------------------------------------------------------------------------


def buildhook(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUILDHOOK, *args], env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class DiffRun:
    returncode: int
    report: dict
    stderr: str


def diff_json(args: list[str], env: dict[str, str]) -> DiffRun:
    """``buildhook diff ARGS --json``: exit 0 patch, 2 refused, 3 no change."""
    result = buildhook(["diff", *args, "--json"], env)
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return DiffRun(result.returncode, report, result.stderr.strip())


def prepare_tree(source: Path, tree: Path, fixes: list[str]) -> None:
    """A copy of the Debian tree with the security patches taken off: the deployed release."""
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(source, tree, symlinks=True)
    for name in reversed(fixes):
        realsource.apply_debian_patch(tree, name, reverse=True)


def patch_one(package, tree: Path, binary: Path, server: Server, number: int, fix: str,
              env: dict[str, str], jobs: int, clients: ExactClients) -> PatchRow:
    """Apply one security patch to the source, rebuild, diff, apply the cumulative patch live, check.

    A patch whose build is identical in code to the previous step's is "no
    code change" (the cumulative patch already live stays).
    """
    realsource.apply_debian_patch(tree, fix)
    row = PatchRow(fix, source_functions=source_functions(tree / "debian" / "patches" / fix, tree))
    try:
        package.rebuild(tree, env, jobs)
    except realsource.RealSourceError as err:
        row.reasons.append(f"rebuild failed: {str(err).splitlines()[-1:]}")
        return row
    # This patch's own change: diff from the build of the previous step.
    buildhook(["release", f"step-{number}", str(binary)], env)
    own = diff_json(["--from", "deployed" if number == 1 else f"step-{number - 1}", str(binary),
                     "-o", str(tree.parent / "own.po")], env)
    if own.returncode == 3:
        row.outcome = "no code change"
        return row
    if own.returncode == 0:
        row.functions_replaced = [f"{r['file']}:{r['name']}" for r in own.report["replaced"]]
    # What goes live: the cumulative patch from the deployed release.
    po = tree.parent / f"{number:02d}-{fix}.po"
    diff = diff_json(["--from", "deployed", str(binary), "-o", str(po)], env)
    if diff.returncode == 2:
        row.outcome = "refused"
        row.reasons = [f"{r['file']}: {r['symbol']}: {r['reason']}" for r in diff.report.get("refused", [])]
        return row
    if diff.returncode != 0:
        row.reasons.append(diff.stderr.strip())
        return row
    row.po_size = po.stat().st_size
    row.cumulative_replaced = [f"{r['file']}:{r['name']}" for r in diff.report["replaced"]]
    checks = package.checks(fix)
    row.check_before = "; ".join(check() for check in checks) or None
    errors_before = len(clients.errors)
    burst = package.burst()
    time.sleep(APPLY_AFTER_SECONDS)
    applied = buildhook(["apply", str(po), "--pid", str(server.pid), "--json", "--timeout", "10"], env)
    row.load_requests, burst_errors = burst.finish()
    row.client_errors = len(clients.errors) - errors_before + len(burst_errors)
    row.reasons += burst_errors
    if applied.returncode != 0:
        row.outcome = "refused" if applied.returncode == 2 else "failed"
        row.reasons.append(applied.stderr.strip())
        return row
    row.pause_us = json.loads(applied.stdout)[0]["pause_us"]
    if not server.alive():
        row.reasons.append("the server died")
        return row
    status = json.loads(buildhook(["status", "--pid", str(server.pid), "--json"], env).stdout)
    redirected = {f["name"] for p in status["patches"] for f in p["functions"]}
    row.state_intact = package.state_intact()
    row.check_after = "; ".join(check() for check in checks) or None
    missing = {name.split(":", 1)[1] for name in row.cumulative_replaced} - redirected
    if missing:
        row.reasons.append(f"status does not show {sorted(missing)}")
        return row
    row.outcome = "applied" if row.state_intact and row.client_errors == 0 else "failed"
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", choices=sorted(PACKAGES))
    parser.add_argument("--workdir", type=Path, default=realsource.DEFAULT_WORKDIR)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--keys", type=int, default=500, help="known keys / sessions loaded before the series")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    source = realsource.fetch_source(args.package, args.workdir, log=lambda m: print(m, file=sys.stderr))
    realsource.install_build_deps(args.package, source, log=lambda m: print(m, file=sys.stderr))
    realsource.install_tools(PACKAGES[args.package].tools, log=lambda m: print(m, file=sys.stderr))
    fixes = realsource.security_patches(source)
    tree = args.workdir / "realworld" / args.package / "tree"
    prepare_tree(source, tree, fixes)
    run_dir = Path(tempfile.mkdtemp(prefix=f"buildhook-realworld-{args.package}-"))
    env = dict(os.environ, BUILDHOOK_STORE=str(run_dir / "store"), BUILDHOOK_PATCH_FROM="off",
               PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    package = PACKAGES[args.package](run_dir, args.keys)
    rows: list[PatchRow] = []
    clients: ExactClients | None = None
    started = time.monotonic()
    try:
        package.build(tree, env, args.jobs)
        binary = package.binary(tree)
        result = buildhook(["release", "deployed", str(binary)], env)
        if result.returncode != 0:
            raise SystemExit(f"release failed: {result.stderr.strip()}")
        deployed = run_dir / f"{args.package}-deployed"
        shutil.copy2(binary, deployed)
        server = package.start(deployed)
        clients = package.exact_clients(args.clients)
        clients.start()
        for number, fix in enumerate(fixes, 1):
            print(f"realworld: {number}/{len(fixes)} {fix}", file=sys.stderr)
            rows.append(patch_one(package, tree, binary, server, number, fix, env, args.jobs, clients))
            print(f"realworld:   -> {rows[-1].outcome} {rows[-1].reasons[:2]}", file=sys.stderr)
    finally:
        if clients is not None:
            clients.stop()
        package.stop()
        shutil.rmtree(run_dir, ignore_errors=True)

    summary = {"package": f"{args.package} {realsource.source_version(source)}", "build": package.describe(),
               "clients": args.clients, "requests": sum(clients.requests) if clients else 0,
               "load_requests": sum(row.load_requests for row in rows),
               "client_errors": clients.errors[:20] if clients else [], "patches": [asdict(row) for row in rows],
               "minutes": round((time.monotonic() - started) / 60, 1),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary, rows)
    failed = any(row.outcome == "failed" for row in rows)
    return 0 if clients is not None and not clients.errors and not failed else 3


def print_table(summary: dict, rows: list[PatchRow]) -> None:
    print(f"{summary['package']} ({summary['build']}); {summary['clients']} exact clients, "
          f"{summary['requests']} checked requests, {summary['load_requests']} load-generator requests "
          f"during applies, {len(summary['client_errors'])} client errors, {summary['minutes']} min")
    print(f"{'patch':<54} {'outcome':<15} {'.po':>6} {'fn src/obj':>10} {'pause µs':>9} {'errors':>6}")
    for row in rows:
        pause = f"{row.pause_us:.0f}" if row.pause_us is not None else "-"
        print(f"{row.patch[:54]:<54} {row.outcome:<15} {row.po_size:>6} "
              f"{len(row.source_functions):>4}/{len(row.functions_replaced):<5} {pause:>9} {row.client_errors:>6}")
        if row.functions_replaced:
            print(f"    replaced: {', '.join(row.functions_replaced)}")
        if row.cumulative_replaced:
            print(f"    live (cumulative .po): {len(row.cumulative_replaced)} functions")
        if row.source_functions:
            print(f"    source:   {', '.join(row.source_functions)}")
        if row.check_before or row.check_after:
            print(f"    check before: {row.check_before}\n    check after:  {row.check_after}")
        for reason in row.reasons:
            print(f"    {reason}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (realsource.RealSourceError, OSError) as err:  # fetching or building failed: what and why
        print(f"realworld: {err}", file=sys.stderr)
        sys.exit(1)
