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

A library is patched the same way in a host program: for protobuf the
"server" is bench/protobuf_host.cpp, a C++ process that parses messages with
the deployed copy of ``libprotobuf.so``, and the ``.po`` targets the library.
``--local-patch FILE`` takes a patch of ours through the same steps after the
series (named ``local-…`` in the table): protobuf's series changes no C++
code, bench/protobuf-unknown-group-depth.patch does.

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
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realsource  # noqa: E402  (bench/ is not a package)

BIN_DIR = Path(sys.executable).parent
BUILDHOOK = str(BIN_DIR / "buildhook")
WRAPPER = str(BIN_DIR / "buildhook-cc")
WRAPPER_CXX = str(BIN_DIR / "buildhook-c++")
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
    migration: str | None = None  # the live-migration patch applied with the fix (a file of bench/)


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
    # The patch author's live migration, applied with the Debian patch it belongs to (docs/data-changes.md):
    # the fix inserts a field into struct mcp_parser_s.
    migrations = {"CVE-2023-46853.patch": Path(__file__).resolve().parent / "memcached-CVE-2023-46853-migration.patch"}

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
    numbers = {key: int(value) for key, value in re.findall(r"^(\w+): (\d+)$", output, re.MULTILINE)}
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
    make_args = realsource.HAPROXY_MAKE_ARGS

    def __init__(self, workdir: Path, keys: int) -> None:
        self.workdir, self.sessions = workdir, keys
        self.server: Server | None = None
        self.backend: Server | None = None
        self.socket = workdir / "haproxy-admin.sock"

    def describe(self) -> str:
        return realsource.haproxy_description()

    def build(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        self.rebuild(tree, env, jobs)

    def rebuild(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        realsource.run(["make", f"-j{jobs}", *self.make_args, f"CC={WRAPPER}", *realsource.haproxy_make_flags(tree)],
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


PDNS_RECURSOR_CONF = """\
# Everything is answered on 127.0.0.1: every name is forwarded (RD=1) to the
# harness's responder, priming and security polling are off, so nothing
# leaves the machine.
local-address=127.0.0.1
local-port={port}
socket-dir={run_dir}
daemon=no
write-pid=no
disable-syslog=yes
loglevel=3
quiet=yes
threads=2
hint-file=no
security-poll-suffix=
forward-zones-recurse=.=127.0.0.1:{responder_port}
query-local-address=127.0.0.1
dont-query=
allow-from=127.0.0.0/8
dnssec=off
max-cache-ttl=86400
packetcache-ttl=86400
# The fix's check answers with more records than fit 1232 bytes.
edns-outgoing-bufsize=8192
udp-truncation-threshold=8192
client-tcp-timeout=60
"""

DNS_A, DNS_OPT = 1, 41
DNS_NOERROR = 0
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
BIG_RRSET = 300  # A records in the fix's check: over the fix's max-rrset-size (256)


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"


def dns_query(qid: int, name: str, qtype: int = DNS_A, udp_size: int = 8192) -> bytes:
    """A recursive query (RD=1), with an EDNS OPT record offering *udp_size*-byte UDP answers (part of
    the recursor's packet-cache key: another size asks its record cache)."""
    opt = b"\0" + struct.pack(">HHIH", DNS_OPT, udp_size, 0, 0)
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1) + dns_name(name) + struct.pack(">HH", qtype, 1) + opt


def _skip_name(packet: bytes, offset: int) -> int:
    while True:
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length
        if length == 0:
            return offset


@dataclass
class DnsAnswer:
    qid: int
    flags: int
    rcode: int
    question: bytes  # the question section as sent back
    addresses: list[str]  # the A records of the answer section, in order

    def describe(self) -> str:
        return f"{RCODES.get(self.rcode, self.rcode)}, {len(self.addresses)} A records"


def parse_dns(packet: bytes) -> DnsAnswer:
    """The header, question and answer section's A records of a DNS message."""
    qid, flags, qdcount, ancount, _ns, _ar = struct.unpack(">HHHHHH", packet[:12])
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(packet, offset) + 4
    question, addresses = packet[12:offset], []
    for _ in range(ancount):
        offset = _skip_name(packet, offset)
        rtype, _rclass, _ttl, length = struct.unpack(">HHIH", packet[offset:offset + 10])
        offset += 10
        if rtype == DNS_A:
            addresses.append(socket.inet_ntoa(packet[offset:offset + length]))
        offset += length
    return DnsAnswer(qid, flags, flags & 0xF, question, addresses)


class DnsResponder:
    """The authority behind the recursor: a UDP responder on 127.0.0.1, a thread of the harness.

    ``key<N>.state.test`` answers 198.18+E.N/256.N%256 with a day's TTL, E
    the epoch: the keys are loaded at epoch 0, then the epoch goes to 1, so a
    key still answered with epoch 0 came from the recursor's caches.
    ``*.live.test`` answers an address derived from the name with a TTL of
    one second, so the recursor keeps resolving them (and replacing them in
    its record cache) all through the run; ``big*.state.test`` answers
    BIG_RRSET records (the fix's check).  Anything else has no data.
    """

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.epoch = 0
        self.queries = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def key_address(key: int, epoch: int) -> str:
        return f"198.{18 + epoch}.{key >> 8 & 255}.{key & 255}"

    @staticmethod
    def live_address(name: str) -> str:
        return socket.inet_ntoa(struct.pack(">I", 0xC6120000 | zlib.crc32(name.lower().encode()) & 0x1FFFF))

    def answer(self, name: str) -> tuple[int, list[str], int]:
        """(rcode, addresses, ttl) for an A query of *name*."""
        name = name.lower().rstrip(".")
        match = re.fullmatch(r"key(\d+)\.state\.test", name)
        if match:
            return DNS_NOERROR, [self.key_address(int(match.group(1)), self.epoch)], 86400
        if name.endswith(".live.test"):
            return DNS_NOERROR, [self.live_address(name)], 1
        if re.fullmatch(r"big\d+\.state\.test", name):
            return DNS_NOERROR, [f"198.18.{255 - i // 256}.{i % 256}" for i in range(BIG_RRSET)], 86400
        return DNS_NOERROR, [], 60  # no data, never NXDOMAIN: the root and test. must stay usable

    def _serve(self) -> None:
        while not self.stop_event.is_set():
            try:
                query, peer = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.socket.sendto(self._reply(query), peer)
                self.queries += 1
            except (IndexError, struct.error, UnicodeDecodeError, OSError):
                continue  # a malformed query gets no answer

    def _reply(self, query: bytes) -> bytes:
        qid, flags, _qd, _an, _ns, arcount = struct.unpack(">HHHHHH", query[:12])
        end = _skip_name(query, 12)
        labels, offset = [], 12
        while query[offset]:
            labels.append(query[offset + 1:offset + 1 + query[offset]].decode())
            offset += 1 + query[offset]
        qtype = struct.unpack(">H", query[end:end + 2])[0]
        rcode, addresses, ttl = self.answer(".".join(labels))
        if qtype != DNS_A and rcode == DNS_NOERROR:
            addresses = []  # NODATA for other types of an existing name
        header = struct.pack(">HHHHHH", qid, 0x8480 | (flags & 0x0100) | rcode, 1, len(addresses), 0,
                             1 if arcount else 0)
        records = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", DNS_A, 1, ttl, 4) + socket.inet_aton(address)
                           for address in addresses)
        opt = b"\0" + struct.pack(">HHIH", DNS_OPT, 8192, 0, 0) if arcount else b""
        return header + query[12:end + 4] + records + opt

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.socket.close()


class DnsClient:
    """One exact client's connection: UDP (a connected socket) or TCP (length-prefixed, kept open)."""

    def __init__(self, port: int, tcp: bool) -> None:
        self.tcp = tcp
        if tcp:
            self.socket = socket.create_connection(("127.0.0.1", port), timeout=5)
        else:
            self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.socket.settimeout(5)
            self.socket.connect(("127.0.0.1", port))
        self.qid = 0

    def ask(self, name: str, udp_size: int = 8192) -> DnsAnswer:
        """One A query and its answer: a timeout or a closed connection raises (no retries)."""
        self.qid = (self.qid + 1) & 0xFFFF
        query = dns_query(self.qid, name, udp_size=udp_size)
        if self.tcp:
            self.socket.sendall(struct.pack(">H", len(query)) + query)
            answer = parse_dns(self._read(struct.unpack(">H", self._read(2))[0]))
        else:
            self.socket.send(query)
            answer = parse_dns(self.socket.recv(65535))
        if answer.qid != self.qid or answer.question != query[12:12 + len(answer.question)]:
            raise RuntimeError(f"answer to another query for {name}: id {answer.qid} (sent {self.qid})")
        return answer

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.socket.recv(count - len(data))
            if not chunk:
                raise ConnectionError("connection closed by the server")
            data += chunk
        return data

    def close(self) -> None:
        self.socket.close()


class PdnsRecursor:
    """pdns-recursor 4.8 (C++, autotools, configure options of debian/rules), its caches as state, dnsperf as load."""

    name = "pdns-recursor"
    tools = {"dnsperf": "dnsperf"}
    # The fix as a live patch (its header says why): d_tooBig as a shadow variable, the new
    # settings at their defaults (they are read in functions that never return).
    migrations = {"0001-Backport-4.9.8-patch-for-CVE-2024-25590.patch":
                  Path(__file__).resolve().parent / "pdns-recursor-CVE-2024-25590-live.patch"}
    # debian/rules' dh_auto_configure options, less --enable-unit-tests (the
    # testrunner: the fix's test hunks, none of pdns_recursor's code).
    configure_args = ("--sysconfdir=/etc/powerdns", "--enable-systemd", "--with-systemd=/lib/systemd/system",
                      "--enable-reproducible", "--disable-silent-rules", "--with-service-user=pdns",
                      "--with-service-group=pdns", "--with-libcap", "--with-libsodium", "--with-lua",
                      "--with-net-snmp", "--with-protobuf=yes", "--enable-dns-over-tls", "--enable-dnstap")

    def __init__(self, workdir: Path, keys: int) -> None:
        self.workdir, self.keys = workdir, keys
        self.server: Server | None = None
        self.responder: DnsResponder | None = None
        self.checked = 0

    def describe(self) -> str:
        shaping = [arg for arg in self.configure_args if "/" not in arg and "service-" not in arg]
        return f"configure {' '.join(shaping)} with dpkg-buildflags (hardening=+all)"

    def _flags(self, tree: Path) -> dict[str, str]:
        """CFLAGS/CXXFLAGS/CPPFLAGS/LDFLAGS as dh_auto_configure exports them, and debian/rules' PACKAGEVERSION."""
        flags = realsource.dpkg_buildflags(tree, "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS",
                                           maint_options="hardening=+all")
        version = f"{realsource.source_version(tree)}.Debian"
        return dict(flags, CXXFLAGS=f"{flags['CXXFLAGS']} -DPACKAGEVERSION='\"{version}\"'")

    def build(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        # dh (compat 13) runs autoreconf: debian/patches changes Makefile.am, and the tarball's
        # Makefile.in would be regenerated by make with another automake, which fails.
        realsource.run(["autoreconf", "-fi"], cwd=tree, env=env, timeout=900)
        # debian/rules puts debian/configure-helpers first on PATH (its net-snmp-config filters the cflags).
        configure_env = dict(env, **self._flags(tree),
                             PATH=f"{tree / 'debian' / 'configure-helpers'}{os.pathsep}{env['PATH']}")
        realsource.run(["./configure", f"CC={WRAPPER}", f"CXX={WRAPPER_CXX}", *self.configure_args],
                       cwd=tree, env=configure_env, timeout=900)
        self.rebuild(tree, env, jobs)

    def rebuild(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        # All of it, as dh_auto_build: the generated headers (BUILT_SOURCES) and ext/ come with `all` only.
        realsource.run(["make", f"-j{jobs}"], cwd=tree, env=env, timeout=7200)

    def binary(self, tree: Path) -> Path:
        return tree / "pdns_recursor"

    def start(self, deployed: Path) -> Server:
        self.responder = DnsResponder()
        port = free_port()
        config_dir = self.workdir / "pdns"
        config_dir.mkdir(exist_ok=True)
        (config_dir / "recursor.conf").write_text(PDNS_RECURSOR_CONF.format(
            port=port, run_dir=config_dir, responder_port=self.responder.port))
        self.server = Server([str(deployed), f"--config-dir={config_dir}"], port, self.workdir / "pdns_recursor.log")
        client = DnsClient(port, tcp=False)
        try:
            for key in range(self.keys):
                answer = client.ask(f"key{key}.state.test")
                if answer.addresses != [DnsResponder.key_address(key, 0)]:
                    raise SystemExit(f"pdns_recursor answered key{key}.state.test with {answer.describe()} "
                                     f"{answer.addresses}")
        finally:
            client.close()
        self.responder.epoch = 1  # from now on only the recursor's caches know the epoch-0 answers
        (self.workdir / "dnsperf.txt").write_text("".join(f"key{key}.state.test A\n" for key in range(self.keys)))
        return self.server

    def exact_clients(self, clients: int) -> ExactClients:
        """Even clients over UDP, odd ones over one TCP connection; a cached key, then a live name, in turn."""
        assert self.server is not None
        port = self.server.port

        def connect(number: int) -> DnsClient:
            return DnsClient(port, tcp=number % 2 == 1)

        def step(client: object, number: int, count: int) -> str | None:
            assert isinstance(client, DnsClient)
            if count % 2:
                name = f"key{count // 2 % self.keys}.state.test"
                expected = DnsResponder.key_address(count // 2 % self.keys, 0)
            else:
                name = f"n{count // 2 % 2000}.c{number}.live.test"
                expected = DnsResponder.live_address(name)
            answer = client.ask(name)
            if answer.rcode != DNS_NOERROR or answer.addresses != [expected]:
                return f"{name}: {answer.describe()} {answer.addresses[:3]} (expected {expected})"
            return None

        return ExactClients(clients, connect, step)

    def burst(self) -> Burst:
        assert self.server is not None
        return Burst(["dnsperf", "-s", "127.0.0.1", "-p", str(self.server.port), "-d", str(self.workdir / "dnsperf.txt"),
                      "-l", f"{BURST_SECONDS:.0f}", "-c", "4", "-T", "1", "-q", "64", "-t", "5"], parse_dnsperf)

    def state_intact(self) -> bool:
        """Every key still answers its epoch-0 address: the record and packet caches survived."""
        assert self.server is not None
        client = DnsClient(self.server.port, tcp=True)
        try:
            return all(client.ask(f"key{key}.state.test").addresses == [DnsResponder.key_address(key, 0)]
                       for key in range(self.keys))
        finally:
            client.close()

    def checks(self, patch: str) -> list[Callable[[], str]]:
        """CVE-2024-25590: an RRset over max-rrset-size (256) was cached and served whole; now SERVFAIL.

        The fix stores one record of such an RRset and fails a *cache hit* on it: the query that
        resolves the name is answered from the resolution, and a repeat of it from the packet cache,
        NOERROR with every record, before and after the fix.  So a new name is asked twice, the
        second time with another EDNS buffer size (a packet-cache miss), and the second answer is
        the record cache's: the whole RRset before the fix, SERVFAIL after.
        """
        assert self.server is not None
        port = self.server.port
        if "CVE-2024-25590" not in patch:
            return []

        def big_rrset() -> str:
            self.checked += 1  # a new name each time: neither cache has it
            name = f"big{self.checked}.state.test"
            client = DnsClient(port, tcp=False)
            try:
                first = client.ask(name).describe()
                return f"{BIG_RRSET} A records for {name}: {first}; from the record cache: " + \
                    client.ask(name, udp_size=8000).describe()
            finally:
                client.close()

        return [big_rrset]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.responder is not None:
            self.responder.stop()


def parse_dnsperf(output: str, returncode: int) -> tuple[int, list[str]]:
    """dnsperf's totals: completed queries, and lost queries / answers other than NOERROR as errors."""
    completed = re.search(r"Queries completed:\s+(\d+)", output)
    lost = re.search(r"Queries lost:\s+(\d+)", output)
    codes = re.search(r"Response codes:\s+(.*)", output)
    errors = []
    if lost and int(lost.group(1)):
        errors.append(f"dnsperf: {lost.group(1)} queries lost")
    if codes:
        errors += [f"dnsperf {code} {count}" for code, count in re.findall(r"([A-Z]+) (\d+)", codes.group(1))
                   if code != "NOERROR"]
    if returncode != 0 or completed is None:
        errors.append(f"dnsperf exit {returncode}: {output.strip().splitlines()[-1:]}")
    return (int(completed.group(1)) if completed else 0), errors


PACKAGES["pdns-recursor"] = PdnsRecursor


PROTOBUF_HOST = Path(__file__).resolve().parent / "protobuf_host.cpp"
FNV_OFFSET, FNV_PRIME = 14695981039346656037, 1099511628211
GROUP_DEPTHS = (64, 65, 100, 101, 100_000)  # the unknown-group nestings the CVE check sends


def pb_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pb_key(number: int, wire_type: int) -> bytes:
    return pb_varint(number << 3 | wire_type)


def pb_bytes(number: int, data: bytes) -> bytes:
    return pb_key(number, 2) + pb_varint(len(data)) + data


def pb_unknown_groups(depth: int) -> bytes:
    """Unknown field 22: *depth* groups nested in each other, a varint (field 23) innermost."""
    return pb_key(22, 3) * depth + pb_key(23, 0) + pb_varint(1) + pb_key(22, 4) * depth


def fnv1a(data: bytes) -> int:
    value = FNV_OFFSET
    for byte in data:
        value = (value ^ byte) * FNV_PRIME & 0xFFFFFFFFFFFFFFFF
    return value


@dataclass
class ProtobufRequest:
    """A bench.Request (bench/protobuf_host.cpp) in canonical field order, and the answer it must get."""

    key: str
    increment: int
    tag: str = ""
    check: int = 0
    values: tuple[int, ...] = ()
    note: str = ""
    depth: int = 0  # unknown groups nested this deep, after unknown fields 20 (varint) and 21 (bytes)

    def encode(self) -> bytes:
        """Known fields by number, then the unknown ones: what the server serializes again, byte for byte."""
        inner = pb_bytes(1, self.tag.encode()) + pb_key(2, 1) + struct.pack("<Q", self.check)
        packed = pb_bytes(4, b"".join(pb_varint(value) for value in self.values)) if self.values else b""
        extra = pb_key(5, 3) + pb_bytes(1, self.note.encode()) + pb_key(5, 4)
        unknown = pb_key(20, 0) + pb_varint(self.increment) + pb_bytes(21, self.key.encode()[::-1])
        return (pb_bytes(1, self.key.encode()) + pb_key(2, 0) + pb_varint(self.increment) + pb_bytes(3, inner)
                + packed + extra + unknown + pb_unknown_groups(self.depth))

    def answer(self, counter: int) -> str:
        return (f"OK {counter} {self.key} tag={self.tag} check={self.check:016x} sum={sum(self.values)} "
                f"note={self.note} unknown={2 + self.depth + 1} depth={self.depth} hash={fnv1a(self.encode()):016x}")


class ProtobufClient:
    """One connection to the host: a 4-byte length and a message out, one line back."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.stream = self.socket.makefile("rb")

    def ask(self, payload: bytes) -> str:
        self.socket.sendall(struct.pack(">I", len(payload)) + payload)
        line = self.stream.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("connection closed by the server")
        return line.decode().rstrip("\n")

    def close(self) -> None:
        self.socket.close()


class Protobuf:
    """protobuf 3.21 (autotools, libprotobuf.so only), patched in a C++ host that parses messages (counters as state).

    The process patched is bench/protobuf_host.cpp, compiled at start
    against the tree's headers and linked to the *deployed* copy of the
    library (an rpath to a directory of its own), so rebuilding the tree
    never changes what the process maps.  Its load generator is the same
    program, building and checking messages through the library.
    """

    name = "protobuf"
    # Only what building libprotobuf.so needs: `apt-get build-dep protobuf` would
    # pull Java, Ruby, PHP and Python toolchains for bindings that are not built.
    build_dep = False
    tools = {"autoreconf": "autoconf", "automake": "automake", "libtoolize": "libtool",
             "/usr/include/zlib.h": "zlib1g-dev"}
    # dh's autotools defaults that shape the code, and the zlib streams Debian's
    # library has; --disable-static because only the shared library is patched.
    configure_args = ("--with-zlib", "--disable-static")

    def __init__(self, workdir: Path, keys: int) -> None:
        self.workdir, self.keys = workdir, keys
        self.server: Server | None = None
        self.tree: Path | None = None
        self.host = workdir / "protobuf_host"

    def describe(self) -> str:
        return (f"autoreconf; configure {' '.join(self.configure_args)} with dpkg-buildflags; "
                "make -C src libprotobuf.la")

    def build(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        self.tree = tree
        realsource.run(["autoreconf", "-f", "-i", "-Wall,no-obsolete"], cwd=tree, env=env, timeout=900)
        flags = realsource.dpkg_buildflags(tree, "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS")
        realsource.run(["./configure", f"CC={WRAPPER}", f"CXX={WRAPPER_CXX}", *self.configure_args],
                       cwd=tree, env=dict(env, **flags), timeout=900)
        self.rebuild(tree, env, jobs)

    def rebuild(self, tree: Path, env: dict[str, str], jobs: int) -> None:
        realsource.run(["make", "-C", "src", f"-j{jobs}", "libprotobuf.la"], cwd=tree, env=env, timeout=7200)

    def binary(self, tree: Path) -> Path:
        return (tree / "src" / ".libs" / "libprotobuf.so").resolve()  # libprotobuf.so.32.0.12, not a link

    def start(self, deployed: Path) -> Server:
        assert self.tree is not None
        lib = self.workdir / "lib"
        lib.mkdir()
        for name in ("libprotobuf.so", soname(deployed)):
            (lib / name).symlink_to(deployed)
        realsource.run(["c++", "-O2", "-g", "-std=c++17", "-pthread", f"-I{self.tree / 'src'}", str(PROTOBUF_HOST),
                        "-o", str(self.host), f"-L{lib}", "-lprotobuf", f"-Wl,-rpath,{lib}"], timeout=600)
        port = free_port()
        self.server = Server([str(self.host), "serve", str(port)], port, self.workdir / "protobuf_host.log")
        client = ProtobufClient(port)
        try:
            for i in range(self.keys):
                request = self._state_request(i, self._expected(i))
                if (answer := client.ask(request.encode())) != request.answer(self._expected(i)):
                    raise SystemExit(f"protobuf_host answered key{i} with {answer!r}")
        finally:
            client.close()
        return self.server

    @staticmethod
    def _expected(key: int) -> int:
        return key % 7 + 1

    @staticmethod
    def _state_request(key: int, increment: int) -> ProtobufRequest:
        return ProtobufRequest(f"key{key}", increment, tag="state", values=(key,), depth=1)

    def exact_clients(self, clients: int) -> ExactClients:
        """Each client's own counter goes up by its increments; every field and the round trip checked."""
        assert self.server is not None
        port = self.server.port
        totals = [0] * clients

        def step(client: object, number: int, count: int) -> str | None:
            assert isinstance(client, ProtobufClient)
            request = ProtobufRequest(f"load{number}", count % 3 + 1, tag=f"c{count}",
                                      check=count * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF,
                                      values=(count, count + 1, 2 * count), note=f"n{number}", depth=count % 6 + 1)
            totals[number] += request.increment
            answer = client.ask(request.encode())
            return None if answer == request.answer(totals[number]) else f"request {count}: {answer[:120]!r}"

        return ExactClients(clients, lambda number: ProtobufClient(port), step)

    def burst(self) -> Burst:
        assert self.server is not None
        return Burst([str(self.host), "load", str(self.server.port), f"{BURST_SECONDS:.0f}", "8"],
                     parse_protobuf_load)

    def state_intact(self) -> bool:
        assert self.server is not None
        client = ProtobufClient(self.server.port)
        try:
            return all(client.ask(self._state_request(i, 0).encode()) == self._state_request(i, 0).answer(
                self._expected(i)) for i in range(self.keys))
        finally:
            client.close()

    def checks(self, patch: str) -> list[Callable[[], str]]:
        """CVE-2024-7254 (nested unknown groups): which nestings the live library still parses."""
        if "CVE-2024-7254" not in patch and "unknown-group" not in patch:
            return []
        return [self.group_depths]

    def group_depths(self) -> str:
        assert self.server is not None
        client = ProtobufClient(self.server.port)
        try:
            answers = [client.ask(pb_bytes(1, b"cve") + pb_unknown_groups(depth)).split()[0]
                       for depth in GROUP_DEPTHS]
        finally:
            client.close()
        return f"unknown groups nested {'/'.join(map(str, GROUP_DEPTHS))} deep: {'/'.join(answers)}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def soname(library: Path) -> str:
    """DT_SONAME of a shared library: the name the host's DT_NEEDED asks the dynamic linker for."""
    from elftools.elf.elffile import ELFFile

    with open(library, "rb") as stream:
        dynamic = ELFFile(stream).get_section_by_name(".dynamic")
        return next(tag.soname for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_SONAME")


def parse_protobuf_load(output: str, returncode: int) -> tuple[int, list[str]]:
    """protobuf_host load's totals: requests, and every connection that got a wrong answer or lost its server."""
    totals = re.search(r"^requests (\d+) errors (\d+)$", output, re.MULTILINE)
    errors = re.findall(r"^error: (.*)$", output, re.MULTILINE)
    if (returncode != 0 and not errors) or totals is None:
        errors.append(f"protobuf_host load exit {returncode}: {output.strip().splitlines()[-1:]}")
    return (int(totals.group(1)) if totals else 0), errors


PACKAGES["protobuf"] = Protobuf


# --- the source-level count -------------------------------------------------------------

C_FUNCTION_START = re.compile(r"^(?!(?:if|for|while|switch|return|else|do|typedef|struct|enum|union)\b)"
                              r"[A-Za-z_][\w\s\*]*?\b(\w+)\s*\([^;]*$")
# C++ (Google style): qualified names, and member functions defined in a class body, two spaces in.
CXX_FUNCTION_START = re.compile(r"^ {0,2}(?! )(?!(?:if|for|while|switch|return|else|do|typedef|struct|enum|union"
                                r"|class|namespace|template|catch)\b)(?:[A-Za-z_][\w\s\*&:<>,]*?[\s\*&])?"
                                r"((?:\w+::)*~?\w+)\s*\([^;]*$")
CXX_SUFFIXES = (".cc", ".cpp", ".cxx", ".hh", ".hpp")


def source_functions(patch_file: Path, tree: Path) -> list[str]:
    """The C and C++ functions whose bodies the patch changes, found in the patched source.

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
            path = tree / name.split("/", 1)[1] if name.endswith((".c", ".h", *CXX_SUFFIXES)) and "/" in name else None
            lines = path.read_text(errors="replace").splitlines() if path is not None and path.exists() else []
        elif line.startswith("@@") and path is not None:
            new_line = int(re.match(r"@@ -\d+(?:,\d+)? \+(\d+)", line).group(1))  # type: ignore[union-attr]
        elif path is not None and new_line and line[:1] in ("+", "-", " "):
            if line[:1] != " ":
                enclosing = _enclosing_function(lines, new_line, path.suffix in CXX_SUFFIXES)
                if enclosing:
                    names.add(enclosing)
            if line[:1] != "-":
                new_line += 1
    return sorted(names)


def _enclosing_function(lines: list[str], line_number: int, cxx: bool = False) -> str | None:
    start = CXX_FUNCTION_START if cxx else C_FUNCTION_START
    for index in range(min(line_number, len(lines)) - 1, -1, -1):
        text = lines[index]
        if text.startswith("}"):
            return None
        match = start.match(text)
        if match:
            return match.group(1)
    return None


# --- the run ---------------------------------------------------------------------------


def buildhook(args: list[str], env: dict[str, str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
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
    migration = getattr(package, "migrations", {}).get(fix)
    if migration is not None:  # ours, shipped next to the fix as its author would
        realsource.run(["patch", "-p1", "--batch", "-i", str(migration)], cwd=tree, timeout=60)
        row.migration = migration.name
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
        # Nothing goes live: the fix's check shows what the deployed code does with its input.
        row.check_before = row.check_after = "; ".join(check() for check in package.checks(fix)) or None
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
    parser.add_argument("--local-patch", type=Path, action="append", default=[],
                        help="a patch of ours (not Debian's) to take through the same steps after the series")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    source = realsource.fetch_source(args.package, args.workdir, log=lambda m: print(m, file=sys.stderr))
    if getattr(PACKAGES[args.package], "build_dep", True):  # False: its tools are all the build needs
        realsource.install_build_deps(args.package, source, log=lambda m: print(m, file=sys.stderr))
    realsource.install_tools(PACKAGES[args.package].tools, log=lambda m: print(m, file=sys.stderr))
    fixes = realsource.security_patches(source)
    tree = args.workdir / "realworld" / args.package / "tree"
    prepare_tree(source, tree, fixes)
    for local in args.local_patch:  # after the series, named so that no table can take it for Debian's
        shutil.copy(local, tree / "debian" / "patches" / f"local-{local.name}")
        fixes.append(f"local-{local.name}")
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
        if row.migration:
            print(f"    with the migration bench/{row.migration}")
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
