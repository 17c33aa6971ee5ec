#!/usr/bin/env python3
"""Pause of ``buildhook apply``/``revert`` in a loaded server, what its clients see, and the ptrace floor.

Measured side by side in one run (DESIGN.md §5, "Keep the window well under a
millisecond and report it"):

1. ``ptrace_floor.c`` (beside this file) is compiled with gcc -O2 into the
   temporary folder (unless ``--skip-scale``); kvd v1.0 and v1.1 are built
   with ``CC=buildhook-cc`` into a fresh temporary store; the v1.1 build
   writes ``kvd.from-v1.0.po``.
2. A copy of the v1.0 binary is started and loaded with 1000 keys; one
   apply/revert checks that the patch takes effect (a 40-byte key is refused
   with v1.1's ``ERR key too long``, accepted again after revert).
3. ``--clients`` (8) client processes, one connection each (kvd: one thread
   per connection), run SET/GET/INCR/GET request-response loops and check
   every reply; any wrong or missing reply, exception or dropped connection
   is an error.  Client latency is then measured in ``--rounds`` (5)
   rounds, each of three windows, so that all three see the same drift of
   the machine: ``--duration``/rounds seconds with no patching;
   ``--cycles``/rounds apply/revert cycles, each one ``buildhook apply X.po
   --pid P --json`` and ``buildhook revert --pid P --json`` run as
   subprocesses (as an operator would), collecting ``pause_us``,
   ``total_ms``, ``deferred_ms`` and ``retries``; and as long a *control*:
   ``buildhook apply --help`` started as often as that round's cycles
   started the applier, touching nothing (what merely starting the
   applier costs the clients here).  The applier defers (nice 19 until it
   seizes); ``--nice N`` runs the cycles and the control as ``nice -n N
   buildhook ...``, which makes the interpreter's own start gentle too.
4. The clients stop; the 1000 keys, each client's last SET values and INCR
   counter are checked against what the clients did.
5. Pause against thread count, no load: a fresh kvd with 1, 8 and 32 idle
   connections (``--threads``: 2, 9 and 33 threads with the main thread).
   For each count, ``--scale-cycles`` (20) times in turn: one apply/revert
   cycle, then one ``ptrace_floor PID 2 ADDR...`` run (two pauses), so the
   pause and its floor are measured in the same minutes.  The floor is what
   the kernel makes any ptrace patcher pay: interrupt every thread, wait for
   each, read its registers and the live top of its stack (one
   process_vm_readv), write 8 bytes at each ADDR (the bytes already there),
   detach.  The ADDRs are the run-time entries, in this kvd, of the
   functions the .po replaces (its ``buildhook inspect --json`` names them;
   kvd's symbol table and its load base in /proc/PID/maps place them; the
   bytes there are checked against the file's).  p50/p99/max of both per
   thread count, the ratio of their p50s, and the least-squares slope of
   both in µs per thread.

Goals (PASS/FAIL, the issue's): at 9 threads pause p50 ≤ 200 µs and p99 ≤
1 ms; pause p50 ≤ 1.5 × the floor's at 2, 9 and 33 threads; growth ≤ 20 µs
per extra thread; under load, client p99.9 latency during the cycles at most
1 ms above that without, zero client errors, state intact, every cycle done,
the patch takes effect.

Run as root with the Python of the environment whose ``buildhook`` is to be
measured (its ``buildhook`` and ``buildhook-cc`` are taken from beside it;
gcc from PATH).  Progress goes to stderr; ``--json`` prints one JSON object
on stdout.
"""

from __future__ import annotations

import argparse
import array
import bisect
import datetime
import json
import multiprocessing
import os
import pickle
import platform
import queue
import shutil
import socket
import subprocess
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PRELOAD_KEYS = 1000
SOCKET_TIMEOUT = 5.0
CLI_TIMEOUT = 60.0
LONG_KEY = "k" * 40  # >= KEY_MAX (32): v1.1 refuses it, v1.0 accepts it

FLOOR_SOURCE = Path(__file__).resolve().parent / "ptrace_floor.c"
FLOOR_PAUSES_PER_RUN = 2  # one floor run per apply/revert cycle: as many floor pauses as buildhook pauses

GOAL_THREADS = 9  # the thread count of the p50 and p99 goals
GOAL_P50_US = 200.0
GOAL_P99_US = 1000.0
GOAL_RATIO = 1.5  # pause p50 / floor p50
GOAL_RATIO_THREADS = (2, 9, 33)
GOAL_SLOPE_US = 20.0
GOAL_LOAD_P999_US = 1000.0  # client p99.9 during patching minus without


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def preload_key(j: int) -> str:
    return f"key:{j:04d}"


def preload_value(j: int) -> str:
    return f"value-{j:04d}-" + "x" * (j % 50)


# -- a line-protocol connection ---------------------------------------------------------


class Connection:
    """One client connection to kvd: send a line, read one reply line (every read has a timeout)."""

    def __init__(self, port: int, timeout: float = SOCKET_TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def readline(self) -> str:
        while True:
            index = self.buffer.find(b"\n")
            if index >= 0:
                line, self.buffer = self.buffer[:index], self.buffer[index + 1:]
                return line.decode()
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by kvd")
            self.buffer += chunk

    def request(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self.readline()

    def pipeline(self, lines: list[str]) -> list[str]:
        self.sock.sendall("".join(line + "\n" for line in lines).encode())
        return [self.readline() for _ in lines]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- load generator (one process per client connection) -------------------------------


def client_process(index: int, port: int, stop: Any, ready: Any, out_path: str, max_seconds: float,
                   rate: float) -> None:
    """Request/response loop until *stop* is set (or *max_seconds*); results pickled to *out_path*."""
    starts = array.array("q")
    latencies = array.array("q")
    result: dict[str, object] = {"index": index, "errors": [], "error_count": 0, "fatal": None,
                                 "incr": 0, "last": {}, "requests": 0}
    errors: list[str] = result["errors"]  # type: ignore[assignment]
    last: dict[str, str] = result["last"]  # type: ignore[assignment]

    def error(message: str) -> None:
        result["error_count"] = int(result["error_count"]) + 1  # type: ignore[call-overload]
        if len(errors) < 20:
            errors.append(message)

    conn = None
    try:
        conn = Connection(port)
        conn.request("PING")
        ready.put(index)
        deadline = time.monotonic() + max_seconds
        interval_ns = int(4e9 / rate) if rate > 0 else 0  # 4 requests per round
        next_round = time.monotonic_ns()
        n = 0
        incr = 0
        while not stop.is_set():
            if time.monotonic() > deadline:
                error("load generator hit its hard time limit (the parent never said stop)")
                break
            slot = n % 100
            key = f"c{index}:k{slot}"
            value = f"v{n}"
            j = (n * 7 + index) % PRELOAD_KEYS
            for line, expected in ((f"SET {key} {value}", "OK"), (f"GET {key}", value),
                                   (f"INCR c{index}:ctr", str(incr + 1)),
                                   (f"GET {preload_key(j)}", preload_value(j))):
                t0 = time.monotonic_ns()
                reply = conn.request(line)
                t1 = time.monotonic_ns()
                starts.append(t0)
                latencies.append(t1 - t0)
                if reply != expected:
                    error(f"{line!r} -> {reply!r}, expected {expected!r}")
                    if line.startswith("INCR") and reply.lstrip("-").isdigit():
                        incr = int(reply)  # resynchronise; the error is counted
                elif line.startswith("INCR"):
                    incr += 1
                elif line.startswith("SET"):
                    last[key] = value
            n += 1
            if interval_ns:
                next_round += interval_ns
                delay = next_round - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
        result["incr"] = incr
    except Exception as exc:  # noqa: BLE001 — dropped connection, timeout, …: an error, and this client stops
        error(f"{type(exc).__name__}: {exc}")
        result["fatal"] = f"{type(exc).__name__}: {exc}"
    finally:
        if conn is not None:
            conn.close()
        result["requests"] = len(latencies)
        result["starts"] = starts.tobytes()
        result["latencies"] = latencies.tobytes()
        with open(out_path, "wb") as handle:
            pickle.dump(result, handle)


class LoadGenerator:
    """N client processes; started, stopped and collected with timeouts."""

    def __init__(self, port: int, clients: int, workdir: Path, max_seconds: float, rate: float) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.stop_event = self.ctx.Event()
        self.ready = self.ctx.Queue()
        self.paths = [workdir / f"client{i}.pickle" for i in range(clients)]
        self.procs = [self.ctx.Process(target=client_process, daemon=True,
                                       args=(i, port, self.stop_event, self.ready, str(self.paths[i]),
                                             max_seconds, rate))
                      for i in range(clients)]

    def start(self, timeout: float = 30.0) -> None:
        for proc in self.procs:
            proc.start()
        deadline = time.monotonic() + timeout
        got = 0
        while got < len(self.procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"only {got} of {len(self.procs)} clients connected within {timeout:g} s")
            try:
                self.ready.get(timeout=min(remaining, 0.5))
                got += 1
            except queue.Empty:
                dead = [p.pid for p in self.procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"client processes {dead} ended before connecting") from None

    def stop(self, timeout: float = 20.0) -> None:
        """Ask every client to stop; terminate (then kill) by PID any that does not within *timeout*."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            if proc.pid is None:
                continue
            proc.join(max(deadline - time.monotonic(), 0.1))
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def results(self) -> list[dict]:
        found = []
        for i, path in enumerate(self.paths):
            if not path.exists():
                found.append({"index": i, "errors": ["client process left no result (killed?)"], "error_count": 1,
                              "fatal": "no result", "incr": 0, "last": {}, "requests": 0,
                              "starts": b"", "latencies": b""})
                continue
            with open(path, "rb") as handle:
                found.append(pickle.load(handle))
        return found


# -- kvd ------------------------------------------------------------------------------


class Kvd:
    """A kvd started by samples.start_kvd (stopped by PID), with its log kept and its threads counted."""

    def __init__(self, binary: Path, workdir: Path, name: str) -> None:
        from buildhook.samples import start_kvd

        self.stderr_path = workdir / f"{name}.stderr"
        self.process = start_kvd(binary, stderr_path=self.stderr_path)
        self.pid, self.port = self.process.pid, self.process.port

    def alive(self) -> bool:
        return self.process.alive()

    def exit_status(self) -> int:
        """The exit status of a kvd that has died (reaps it)."""
        return self.process.stop()

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def wait_threads(self, count: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.threads()
            if now == count:
                return now
            time.sleep(0.01)
        return self.threads()

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        self.process.stop()


# -- the CLI ------------------------------------------------------------------------------


class CliFailure(Exception):
    """``buildhook apply``/``revert`` or ``ptrace_floor`` failed; the message has the command and its output."""


def run_cli(argv: list[str], env: dict[str, str]) -> tuple[dict, float]:
    """Run one buildhook command with --json; return (its one report, wall ms)."""
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CliFailure(f"$ {' '.join(argv)}\ntimed out after {CLI_TIMEOUT:g} s") from exc
    wall_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise CliFailure(f"$ {' '.join(argv)}\nexit {done.returncode}\nstdout: {done.stdout.strip()}\n"
                         f"stderr: {done.stderr.strip()}")
    try:
        reports = json.loads(done.stdout)
        report = reports[0]
    except (ValueError, IndexError, KeyError) as exc:
        raise CliFailure(f"$ {' '.join(argv)}\nunreadable output: {done.stdout.strip()!r}") from exc
    return report, wall_ms


def cycle(applier: list[str], po: Path, pid: int, env: dict[str, str]) -> dict:
    """One apply + revert with *applier* (``[buildhook]``, or under ``nice``); both reports, with wall times."""
    applied, apply_wall = run_cli([*applier, "apply", str(po), "--pid", str(pid), "--json"], env)
    if applied.get("result") != "applied":
        raise CliFailure(f"apply said {applied}")
    reverted, revert_wall = run_cli([*applier, "revert", "--pid", str(pid), "--json"], env)
    if reverted.get("result") != "reverted":
        raise CliFailure(f"revert said {reverted}")
    return {"apply": dict(applied, wall_ms=apply_wall), "revert": dict(reverted, wall_ms=revert_wall)}


# -- the ptrace floor ----------------------------------------------------------------------


def compile_floor(work: Path) -> Path:
    """gcc -O2 ptrace_floor.c into *work*; the binary's path."""
    gcc = shutil.which("gcc")
    if not gcc:
        raise RuntimeError("gcc not found on PATH: it is needed to compile bench/ptrace_floor.c")
    binary = work / "ptrace_floor"
    argv = [gcc, "-O2", "-Wall", "-Wextra", "-o", str(binary), str(FLOOR_SOURCE)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"compiling the ptrace floor failed\n$ {' '.join(argv)}\nexit {done.returncode}\n"
                           f"{done.stdout}{done.stderr}")
    return binary


def floor_run(floor: Path, pid: int, addresses: list[int]) -> dict:
    """One ``ptrace_floor PID 2 ADDR...``: its report, {"threads": N, "pauses_us": [..]}."""
    argv = [str(floor), str(pid), str(FLOOR_PAUSES_PER_RUN), *(f"{a:#x}" for a in addresses)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CliFailure(f"$ {' '.join(argv)}\ntimed out after {CLI_TIMEOUT:g} s") from exc
    if done.returncode != 0:
        raise CliFailure(f"$ {' '.join(argv)}\nexit {done.returncode}\nstderr: {done.stderr.strip()}")
    try:
        report = json.loads(done.stdout)
        if len(report["pauses_us"]) != FLOOR_PAUSES_PER_RUN:
            raise ValueError("wrong number of pauses")
    except (ValueError, KeyError, TypeError) as exc:
        raise CliFailure(f"$ {' '.join(argv)}\nunreadable output: {done.stdout.strip()!r}") from exc
    return report


def replaced_functions(cli: str, po: Path, env: dict[str, str]) -> list[dict]:
    """The functions the .po replaces (name, old_address: its link-time entry), from ``buildhook inspect``."""
    argv = [cli, "inspect", str(po), "--json"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"$ {' '.join(argv)}\nexit {done.returncode}\n{done.stdout}{done.stderr}")
    functions = json.loads(done.stdout)["functions"]
    if not functions:
        raise RuntimeError(f"{po.name} replaces no function: the floor would write no jump")
    return functions


def load_bias(pid: int, binary: Path) -> int:
    """Run-time address minus link-time address of *binary* in *pid*: the applier's own reading of the map."""
    from buildhook.apply.process import mapped_objects

    wanted = os.path.realpath(binary)
    for item in mapped_objects(pid):
        if os.path.realpath(item.path) == wanted:
            return item.bias
    raise RuntimeError(f"{binary} is not mapped at offset 0 in /proc/{pid}/maps")


def jump_addresses(pid: int, binary: Path, functions: list[dict]) -> list[int]:
    """The run-time entries of *functions* in *pid*, each checked: kvd's symbol table agrees with the .po,
    and the 8 bytes there (read through /proc/PID/mem, unpatched) are the file's."""
    from elftools.elf.elffile import ELFFile

    bias = load_bias(pid, binary)
    addresses = []
    with open(binary, "rb") as handle, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        elf = ELFFile(handle)
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            raise RuntimeError(f"{binary} has no symbol table")
        for function in functions:
            values = {sym["st_value"] for sym in symtab.get_symbol_by_name(function["name"]) or []
                      if sym["st_info"]["type"] == "STT_FUNC"}
            if int(function["old_address"]) not in values:
                raise RuntimeError(f"{function['name']}: the symbol table of {binary.name} has it at "
                                   f"{sorted(map(hex, values))}, the .po at {int(function['old_address']):#x}")
            link = int(function["old_address"])
            offset = next((seg["p_offset"] + link - seg["p_vaddr"] for seg in elf.iter_segments()
                           if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= link < seg["p_vaddr"] + seg["p_filesz"]),
                          None)
            if offset is None:
                raise RuntimeError(f"{function['name']} at {link:#x} is in no loaded segment of {binary.name}")
            handle.seek(offset)
            in_file = handle.read(8)
            mem.seek(link + bias)
            in_process = mem.read(8)
            if in_file != in_process:
                raise RuntimeError(f"{function['name']} at {link + bias:#x} in pid {pid}: {in_process.hex()}, "
                                   f"the file has {in_file.hex()} (a wrong address, or already patched)")
            addresses.append(link + bias)
    return addresses


# -- statistics ---------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of *values*; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(int(-(-p * len(ordered) // 100)), 1)  # ceil(p/100 * n), at least 1
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: list[float]) -> dict[str, float | int | None]:
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values) if values else None}


def latency_summary(values_us: list[float]) -> dict[str, float | int | None]:
    return {"n": len(values_us), "p50": percentile(values_us, 50), "p99": percentile(values_us, 99),
            "p99.9": percentile(values_us, 99.9), "max": max(values_us) if values_us else None}


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points."""
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / den if den else None


def cpu_times() -> tuple[int, int, int]:
    """(busy, total, stolen) jiffies of all CPUs, from /proc/stat (stolen: time the hypervisor ran
    someone else while a vCPU of this machine wanted to run; counted in busy too)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def cpu_delta(before: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (busy, total, stolen) jiffies since *before* (a ``cpu_times``)."""
    now = cpu_times()
    return now[0] - before[0], now[1] - before[1], now[2] - before[2]


def cpu_shares(deltas: list[tuple[int, int, int]]) -> tuple[float, float]:
    """The busy and the stolen shares of all CPU time in *deltas* (``cpu_delta``s) taken together."""
    busy, total, stolen = (sum(d[k] for d in deltas) for k in range(3))
    return (round(busy / total, 3), round(stolen / total, 4)) if total else (0.0, 0.0)


def machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu_model": model,
            "kernel": platform.release(), "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "loadavg_at_start": os.getloadavg()}


# -- the phases ----------------------------------------------------------------------------


def build(work: Path, env: dict[str, str], cli: str, cc: str) -> tuple[Path, Path]:
    """Build v1.0 (released, copied) and v1.1; return (v1.0 binary copy, .po)."""
    from buildhook.samples import apply_series, patched_tree

    tree = patched_tree(work / "kvd", None)

    def run(argv: list[str]) -> None:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"$ {' '.join(argv)}\nexit {done.returncode}\n{done.stdout}{done.stderr}")

    make = ["make", "-C", str(tree), "-s", "-j2", f"CC={cc}"]
    run(make)
    run([cli, "release", "v1.0", str(tree / "kvd")])
    old = work / "kvd-v1.0"
    shutil.copy2(tree / "kvd", old)
    apply_series(tree, "v1.1")
    run(make)
    po = tree / "kvd.from-v1.0.po"
    if not po.exists():
        raise RuntimeError(f"the v1.1 build did not write {po}")
    return old, po


def preload(port: int) -> None:
    conn = Connection(port)
    try:
        replies = conn.pipeline([f"SET {preload_key(j)} {preload_value(j)}" for j in range(PRELOAD_KEYS)])
        bad = [r for r in replies if r != "OK"]
        if bad:
            raise RuntimeError(f"preloading: {len(bad)} replies were not OK, e.g. {bad[0]!r}")
    finally:
        conn.close()


def functional_check(kvd: Kvd, cli: str, po: Path, env: dict[str, str]) -> dict[str, object]:
    """Apply once, see v1.1 behaviour, revert, see v1.0 behaviour again."""
    result: dict[str, object] = {}
    conn = Connection(kvd.port)
    try:
        result["before"] = {"version": conn.request("VERSION"), "long_key": conn.request(f"SET {LONG_KEY} x")}
        conn.request(f"DEL {LONG_KEY}")
        run_cli([cli, "apply", str(po), "--pid", str(kvd.pid), "--json"], env)
        result["applied"] = {"version": conn.request("VERSION"), "long_key": conn.request(f"SET {LONG_KEY} x")}
        run_cli([cli, "revert", "--pid", str(kvd.pid), "--json"], env)
        result["reverted"] = {"version": conn.request("VERSION"), "long_key": conn.request(f"SET {LONG_KEY} x")}
        conn.request(f"DEL {LONG_KEY}")
    finally:
        conn.close()
    result["ok"] = (result["before"]["long_key"] == "OK"  # type: ignore[index]
                    and result["applied"]["long_key"] == "ERR key too long"  # type: ignore[index]
                    and result["reverted"]["long_key"] == "OK")  # type: ignore[index]
    return result


def verify_state(kvd: Kvd, clients: list[dict], cli: str, env: dict[str, str]) -> dict[str, object]:
    """After the cycles: the process lives, no patch is left, and every key is what the clients made it."""
    problems: list[str] = []
    if not kvd.alive():
        return {"ok": False, "problems": [f"kvd exited with {kvd.exit_status()}; stderr: {kvd.stderr_tail()}"]}
    status = subprocess.run([cli, "status", "--pid", str(kvd.pid), "--json"], env=env, capture_output=True,
                            text=True, timeout=CLI_TIMEOUT, check=False)
    if status.returncode != 0 or json.loads(status.stdout).get("patches"):
        problems.append(f"status after the cycles: exit {status.returncode}: {status.stdout.strip()} "
                        f"{status.stderr.strip()}")
    conn = Connection(kvd.port)
    checked = 0
    try:
        replies = conn.pipeline([f"GET {preload_key(j)}" for j in range(PRELOAD_KEYS)])
        for j, reply in enumerate(replies):
            checked += 1
            if reply != preload_value(j):
                problems.append(f"{preload_key(j)} = {reply!r}, expected {preload_value(j)!r}")
        for client in clients:
            if client["fatal"]:
                problems.append(f"client {client['index']} stopped early ({client['fatal']}): its keys not checked")
                continue
            counter = conn.request(f"GET c{client['index']}:ctr")
            checked += 1
            if counter != str(client["incr"]):
                problems.append(f"c{client['index']}:ctr = {counter!r}, the client counted {client['incr']}")
            keys = sorted(client["last"])
            for key, reply in zip(keys, conn.pipeline([f"GET {key}" for key in keys])):
                checked += 1
                if reply != client["last"][key]:
                    problems.append(f"{key} = {reply!r}, the client last set {client['last'][key]!r}")
        version = conn.request("VERSION")
        if version != "kvd 1.0":
            problems.append(f"VERSION after the last revert = {version!r}")
    finally:
        conn.close()
    return {"ok": not problems, "keys_checked": checked, "problems": problems[:20],
            "problem_count": len(problems)}


def load_phase(old: Path, po: Path, work: Path, env: dict[str, str], cli: str, args: argparse.Namespace) -> dict:
    out: dict[str, object] = {}
    kvd = Kvd(old, work, "kvd-load")
    load = None
    try:
        preload(kvd.port)
        log(f"kvd v1.0 pid {kvd.pid} on port {kvd.port}: {PRELOAD_KEYS} keys loaded; functional check")
        out["functional_check"] = functional_check(kvd, cli, po, env)
        log(f"  {out['functional_check']}")
        applier = ["nice", "-n", str(args.nice), cli] if args.nice is not None else [cli]
        hard_limit = 3 * args.duration + args.cycles * 2 * CLI_TIMEOUT + 120  # each command stops at CLI_TIMEOUT
        load = LoadGenerator(kvd.port, args.clients, work, hard_limit, args.rate)
        load.start()
        out["kvd_threads_under_load"] = kvd.wait_threads(args.clients + 1)
        log(f"{args.clients} clients connected (kvd has {out['kvd_threads_under_load']} threads); warm-up 1 s, "
            f"then {args.rounds} rounds of: {args.duration / args.rounds:g} s without patching, "
            f"{args.cycles // args.rounds} apply/revert cycles, {args.duration / args.rounds:g} s of the control "
            "(apply --help started as often as the cycles started the applier, touching nothing)")
        time.sleep(1.0)
        windows: dict[str, list[tuple[int, int]]] = {"without": [], "during": [], "control": []}
        cpu_of: dict[str, list[tuple[int, int, int]]] = {name: [] for name in windows}
        cycles: list[dict] = []
        failure = None
        out["control_starts"] = 0
        for round_ in range(args.rounds):
            cpu, started = cpu_times(), time.monotonic_ns()
            time.sleep(args.duration / args.rounds)
            windows["without"].append((started, time.monotonic_ns()))
            cpu_of["without"].append(cpu_delta(cpu))
            cpu, started = cpu_times(), time.monotonic_ns()
            for i in range(args.cycles // args.rounds):
                try:
                    cycles.append(cycle(applier, po, kvd.pid, env))
                except CliFailure as exc:
                    failure = f"round {round_}, cycle {i}: {exc}"
                    log(f"FAILED {failure}")
                    break
                if not kvd.alive():
                    failure = f"kvd exited ({kvd.exit_status()}) in round {round_}; stderr: {kvd.stderr_tail()}"
                    break
            ended = time.monotonic_ns()
            windows["during"].append((started, ended))
            cpu_of["during"].append(cpu_delta(cpu))
            if failure:
                break
            starts_per_s = 2 * (args.cycles // args.rounds) / ((ended - started) / 1e9)
            cpu, started = cpu_times(), time.monotonic_ns()
            out["control_starts"] += control_window(applier, env, args.duration / args.rounds, starts_per_s)
            windows["control"].append((started, time.monotonic_ns()))
            cpu_of["control"].append(cpu_delta(cpu))
            log(f"  round {round_ + 1}: {len(cycles)} cycles so far")
        load.stop()
        clients = load.results()
        load = None
        out["cycles_done"] = len(cycles)
        out["failure"] = failure
        out["cycles"] = cycles
        out["state"] = verify_state(kvd, clients, cli, env)
        latencies: dict[str, list[float]] = {name: [] for name in windows}
        spans = sorted((span, name) for name, spans_ in windows.items() for span in spans_)
        for client in clients:
            starts = array.array("q")
            starts.frombytes(client["starts"])
            lats = array.array("q")
            lats.frombytes(client["latencies"])
            for t0, lat in zip(starts, lats):
                at = bisect.bisect_right(spans, ((t0, 1 << 62), "")) - 1
                if at >= 0 and spans[at][0][0] <= t0 < spans[at][0][1]:
                    latencies[spans[at][1]].append(lat / 1000)
        for name, spans_ in windows.items():
            out[f"{name}_seconds"] = sum(e - b for b, e in spans_) / 1e9
            out[f"cpu_busy_{name}"], out[f"cpu_stolen_{name}"] = cpu_shares(cpu_of[name])
        out["cycles_seconds"] = out["during_seconds"]
        out["rounds"] = args.rounds
        out["client_latency_us"] = {name: latency_summary(values) for name, values in latencies.items()}
        out["client_requests"] = sum(int(c["requests"]) for c in clients)
        out["client_errors"] = sum(int(c["error_count"]) for c in clients)
        out["client_error_samples"] = [f"client {c['index']}: {e}" for c in clients for e in c["errors"]][:20]
        return out
    finally:
        if load is not None:
            load.stop()
        kvd.stop()


def control_window(applier: list[str], env: dict[str, str], seconds: float, per_second: float) -> int:
    """Start ``buildhook apply --help`` *per_second* times a second for *seconds* (each waited for):
    the applier's process start and imports at the cycles' rate, with no target touched.  What the
    clients see then is what merely starting the applier costs them on this machine."""
    if per_second <= 0:
        time.sleep(seconds)
        return 0
    started, count = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        subprocess.run([*applier, "apply", "--help"], env=env, capture_output=True, timeout=CLI_TIMEOUT, check=True)
        count += 1
        delay = started + count / per_second - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return count


def scale_phase(old: Path, po: Path, work: Path, env: dict[str, str], cli: str, floor: Path,
                args: argparse.Namespace) -> dict:
    """Pause against thread count, no load: idle connections add threads; each apply/revert cycle is
    followed by one floor run on the same kvd, so both see the same machine."""
    kvd = Kvd(old, work, "kvd-scale")
    conns: list[Connection] = []
    points: dict[str, dict] = {}
    try:
        functions = replaced_functions(cli, po, env)
        addresses = jump_addresses(kvd.pid, old, functions)
        log(f"floor: jumps at the entries of {', '.join(f['name'] for f in functions)} "
            f"({', '.join(f'{a:#x}' for a in addresses)})")
        for threads in args.threads:
            while len(conns) < threads - 1:
                conn = Connection(kvd.port)
                conns.append(conn)
                if conn.request("PING") != "PONG":
                    raise RuntimeError("idle connection: PING did not answer PONG")
            got = kvd.wait_threads(threads)
            log(f"{got} threads in kvd (pid {kvd.pid}): {args.scale_cycles} apply/revert cycles, "
                f"each followed by a floor run, no load")
            reports: list[dict] = []
            floors: list[dict] = []
            failure = None
            cpu = cpu_times()
            for i in range(args.scale_cycles):
                try:
                    reports.append(cycle([cli], po, kvd.pid, env))
                    floors.append(floor_run(floor, kvd.pid, addresses))
                except CliFailure as exc:
                    failure = f"{threads} threads, cycle {i}: {exc}"
                    log(f"FAILED {failure}")
                    break
            stats = pause_stats(reports)
            slowest = max((c[k] for c in reports for k in ("apply", "revert")),
                          key=lambda r: float(r.get("pause_us") or 0), default=None)
            busy, stolen = cpu_shares([cpu_delta(cpu)])
            points[str(threads)] = {"threads_seen": got, "failure": failure, "cpu_busy": busy, "cpu_stolen": stolen,
                                    **stats, **floor_stats(floors, stats["combined"]["pause_us"]["p50"]),
                                    "slowest": slowest}
            if failure:
                break
        for conn in conns:  # idle connections still served: the threads are fine
            if conn.request("PING") != "PONG":
                raise RuntimeError("idle connection did not answer PING after the cycles")
    finally:
        for conn in conns:
            conn.close()
        kvd.stop()
    return {"jumps": [{"name": f["name"], "address": a} for f, a in zip(functions, addresses)],
            "points": points, "ratios": {t: p["ratio"] for t, p in points.items()},
            "slope_us_per_thread": slope(p50_points(points, lambda p: p["combined"]["pause_us"])),
            "floor_slope_us_per_thread": slope(p50_points(points, lambda p: p["floor"]["pause_us"]))}


def p50_points(points: dict[str, dict], stats: Callable[[dict], dict]) -> list[tuple[float, float]]:
    """(threads, p50) of every thread count where *stats* (of a point) has a p50."""
    return [(float(t), stats(p)["p50"]) for t, p in points.items() if stats(p)["p50"] is not None]


def floor_stats(floors: list[dict], pause_p50: float | None) -> dict:
    """The floor's pauses at one thread count, and the ratio of buildhook's (combined) pause p50 to its p50."""
    pauses = summary([float(x) for f in floors for x in f["pauses_us"]])
    ratio = pause_p50 / pauses["p50"] if pause_p50 is not None and pauses["p50"] else None
    return {"floor": {"runs": len(floors), "pause_us": pauses,
                      "threads_seen": sorted({int(f["threads"]) for f in floors})},
            "ratio": ratio}


def pause_stats(cycles: list[dict]) -> dict:
    def of(kind: str) -> dict:
        kinds = ("apply", "revert") if kind == "combined" else (kind,)
        reports = [c[k] for c in cycles for k in kinds]
        return {"pause_us": summary([float(r["pause_us"]) for r in reports if r.get("pause_us") is not None]),
                "total_ms": summary([float(r["total_ms"]) for r in reports]),
                "wall_ms": summary([float(r["wall_ms"]) for r in reports]),
                "deferred_ms": summary([float(r.get("deferred_ms", 0.0)) for r in reports]),
                "retries": {"sum": sum(int(r.get("retries", 0)) for r in reports),
                            "max": max((int(r.get("retries", 0)) for r in reports), default=0)},
                "stops": {path: sum(r.get("stop") == path for r in reports)
                          for path in sorted({str(r.get("stop")) for r in reports})},
                "phases_p50_us": phase_medians(reports)}
    return {"cycles": len(cycles), "apply": of("apply"), "revert": of("revert"), "combined": of("combined")}


def phase_medians(reports: list[dict]) -> dict[str, float]:
    """The median of each phase of the pause (``pause_phases_us``) over the reports whose stop took the
    commonest path, in the pause's order: where the pause of the usual case goes."""
    paths = [r.get("stop") for r in reports]
    if not paths:
        return {}
    usual = max(set(paths), key=paths.count)
    phases = [r.get("pause_phases_us") or {} for r in reports if r.get("stop") == usual]
    names = list(dict.fromkeys(name for p in phases for name in p))
    return {name: round(statistics.median(p.get(name, 0.0) for p in phases), 1) for name in names}


# -- report --------------------------------------------------------------------------------


def fmt(value: object, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"  # type: ignore[str-format]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def goals(result: dict) -> list[tuple[str, bool]]:
    lines = scale_goals(result)
    load = result.get("load") or {}
    if load:
        lat = load.get("client_latency_us") or {}
        without, during = (lat.get("without") or {}).get("p99.9"), (lat.get("during") or {}).get("p99.9")
        worse = during - without if without is not None and during is not None else None
        label = (f"client p99.9 during patching {fmt(during)} µs, {fmt(worse)} µs above without "
                 f"({fmt(without)} µs) ≤ {GOAL_LOAD_P999_US:.0f} µs")
        lines.append((label, worse is not None and worse <= GOAL_LOAD_P999_US))
        lines.append((f"client errors {load.get('client_errors')} == 0 in {load.get('client_requests')} requests",
                      load.get("client_errors") == 0))
        lines.append(("state intact after the cycles", bool((load.get("state") or {}).get("ok"))))
        lines.append((f"{load.get('cycles_done')} of {result['args']['cycles']} cycles done, none refused",
                      load.get("cycles_done") == result["args"]["cycles"] and not load.get("failure")))
        lines.append(("patch takes effect (v1.1 refuses a long key) and revert undoes it",
                      bool((load.get("functional_check") or {}).get("ok"))))
    return lines


def scale_goals(result: dict) -> list[tuple[str, bool]]:
    """The goals of the no-load measurement, for the thread counts run (one asked for but not measured fails)."""
    scale = result.get("scale")
    if not scale:
        return []
    asked = result["args"]["threads"]
    points = scale.get("points") or {}
    lines = []

    def at(threads: int) -> dict:
        return points.get(str(threads)) or {}

    if GOAL_THREADS in asked:
        pause = (at(GOAL_THREADS).get("combined") or {}).get("pause_us") or {}
        p50, p99 = pause.get("p50"), pause.get("p99")
        lines.append((f"pause p50 at {GOAL_THREADS} threads {fmt(p50)} µs ≤ {GOAL_P50_US:.0f} µs",
                      p50 is not None and p50 <= GOAL_P50_US))
        lines.append((f"pause p99 at {GOAL_THREADS} threads {fmt(p99)} µs ≤ {GOAL_P99_US:.0f} µs",
                      p99 is not None and p99 <= GOAL_P99_US))
    for threads in GOAL_RATIO_THREADS:
        if threads in asked:
            ratio = at(threads).get("ratio")
            floor = ((at(threads).get("floor") or {}).get("pause_us") or {}).get("p50")
            label = (f"pause p50 / floor p50 at {threads} threads {fmt(ratio, 2)} ≤ {GOAL_RATIO:g} "
                     f"(floor p50 {fmt(floor)} µs)")
            lines.append((label, ratio is not None and ratio <= GOAL_RATIO))
    growth = scale.get("slope_us_per_thread")
    if len(set(asked)) >= 2:
        label = (f"growth {fmt(growth, 1)} µs/thread ≤ {GOAL_SLOPE_US:.0f} µs/thread "
                 f"(the floor's {fmt(scale.get('floor_slope_us_per_thread'), 1)})")
        lines.append((label, growth is not None and growth <= GOAL_SLOPE_US))
    return lines


def print_report(result: dict) -> None:
    m = result["machine"]
    print(f"apply_pause: {m['date']}  {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, "
          f"Python {m['python']}, load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}")
    load = result.get("load")
    if load:
        n_threads = load.get("kvd_threads_under_load")
        print(f"\nunder load: {result['args']['clients']} clients (kvd {n_threads} threads), "
              f"{load['cycles_done']} apply/revert cycles in {load['cycles_seconds']:.1f} s")
        print_pauses(pause_stats(load["cycles"]))
        lat = load["client_latency_us"]
        print("\n  client latency µs          n      p50      p99    p99.9      max")
        for name in ("without", "during", "control"):
            s = lat[name]
            label = {"without": "without patching", "during": "during patching",
                     "control": "control: apply --help"}[name]
            if s["n"] == 0:
                continue
            print(f"  {label:<22} {s['n']:>9} {fmt(s['p50'], 1):>8} {fmt(s['p99'], 1):>8} "
                  f"{fmt(s['p99.9'], 1):>8} {fmt(s['max'], 0):>8}")
        w, d = lat["without"], lat["during"]
        if w["p50"] and d["p50"]:
            print(f"  during/without           {'':>9} {d['p50'] / w['p50']:>7.2f}x {d['p99'] / w['p99']:>7.2f}x "
                  f"{d['p99.9'] / w['p99.9']:>7.2f}x")
        print(f"  ({load['rounds']} rounds, each: without, the cycles, the control; "
              f"{load['without_seconds']:.0f} / {load['during_seconds']:.0f} / {load['control_seconds']:.0f} s)")
        print("  machine CPUs busy (everyone, this benchmark included), without / during / control: "
              + " / ".join(f"{load[f'cpu_busy_{name}']:.0%}" for name in ("without", "during", "control"))
              + "; stolen by the host: "
              + " / ".join(f"{load[f'cpu_stolen_{name}']:.1%}" for name in ("without", "during", "control")))
        print(f"\n  client requests {load['client_requests']}, client errors {load['client_errors']}")
        for sample in load["client_error_samples"]:
            print(f"    {sample}")
        state = load["state"]
        print(f"  state after the cycles: {'intact' if state['ok'] else 'NOT intact'} "
              f"({state.get('keys_checked', 0)} keys checked)")
        for problem in state.get("problems", []):
            print(f"    {problem}")
        if load.get("failure"):
            print(f"  FAILURE: {load['failure']}")
    scale = result.get("scale")
    if scale:
        print("\npause against threads, no load: buildhook (apply+revert combined) and the ptrace floor, "
              "interleaved")
        jumps = ", ".join(f"{j['name']} {j['address']:#x}" for j in scale.get("jumps", []))
        print(f"  (the floor: interrupt, wait, registers, live stacks, 8 bytes at {jumps}, detach)")
        print("  threads   cycles  pause p50  pause p99  pause max  floor p50  floor p99  floor max  ratio"
              "   apply total p50   CPUs busy   stolen")
        for threads, point in scale["points"].items():
            c, f = point["combined"]["pause_us"], point["floor"]["pause_us"]
            print(f"  {threads:>7} {point['cycles']:>8} {fmt(c['p50']):>7} µs {fmt(c['p99']):>7} µs "
                  f"{fmt(c['max']):>7} µs {fmt(f['p50']):>7} µs {fmt(f['p99']):>7} µs {fmt(f['max']):>7} µs "
                  f"{fmt(point['ratio'], 2):>6} {fmt(point['apply']['total_ms']['p50'], 1):>14} ms "
                  f"{point['cpu_busy']:>10.0%} {point.get('cpu_stolen', 0):>8.1%}"
                  + (f"   FAILURE: {point['failure']}" if point["failure"] else ""))
        print(f"  slope (least squares over p50): pause {fmt(scale['slope_us_per_thread'], 1)} µs/thread, "
              f"floor {fmt(scale['floor_slope_us_per_thread'], 1)} µs/thread")
        print("  where the pause goes (median µs per phase, stops of the commonest kind):")
        for threads, point in scale["points"].items():
            print(f"  {threads:>7}  {phases_line(point['combined'])}")
            slowest = point.get("slowest") or {}
            if slowest.get("pause_phases_us"):
                print(f"  {'':>7}  the slowest ({slowest['pause_us']:.0f} µs, {slowest['stop']}): "
                      + " + ".join(f"{name} {us:.0f}" for name, us in slowest["pause_phases_us"].items()))
    print(f"\nload average at the end {', '.join(f'{x:.2f}' for x in result['loadavg_at_end'])}")
    print("\ngoals")
    for line, ok in goals(result):
        print(f"  {verdict(ok)}  {line}")


def print_pauses(stats: dict) -> None:
    print("  pause µs        n    p50    p99    max   total ms p50   CLI wall ms p50   deferred ms p50"
          "   retries (sum/max)")
    for kind in ("apply", "revert", "combined"):
        s = stats[kind]
        print(f"  {kind:<9} {s['pause_us']['n']:>6} {fmt(s['pause_us']['p50']):>6} {fmt(s['pause_us']['p99']):>6} "
              f"{fmt(s['pause_us']['max']):>6} {fmt(s['total_ms']['p50'], 1):>14} {fmt(s['wall_ms']['p50'], 0):>17}"
              f" {fmt(s['deferred_ms']['p50'], 0):>17}   {s['retries']['sum']}/{s['retries']['max']}")
    print(f"  phases (combined): {phases_line(stats['combined'])}")


def phases_line(stats: dict) -> str:
    stops = ", ".join(f"{n} {path}" for path, n in stats["stops"].items())
    return " + ".join(f"{name} {us:.0f}" for name, us in stats["phases_p50_us"].items()) + f"  ({stops})"


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=50, help="apply/revert cycles under load (default 50)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of client load measured without patching, over all rounds (default 30: "
                             "a p99.9 of shorter windows swings by 2x); "
                             "the control runs as long")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds under load, each: without patching, --cycles/rounds cycles, the control "
                             "(default 5): the three windows see the same drift of the machine")
    parser.add_argument("--clients", type=int, default=8, help="client connections under load (default 8)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="requests/s per client; 0 (default) is closed loop, as fast as replies come")
    parser.add_argument("--scale-cycles", type=int, default=20,
                        help="apply/revert cycles (each followed by a floor run) per thread count (20)")
    parser.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[2, 9, 33],
                        help="thread counts for the no-load measurement (default 2,9,33)")
    parser.add_argument("--nice", type=int, metavar="N",
                        help="under load, run the applier (cycles and control) as `nice -n N buildhook ...`")
    parser.add_argument("--skip-load", action="store_true", help="only the thread-count measurement")
    parser.add_argument("--skip-scale", action="store_true", help="only the measurement under load")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.cycles % args.rounds:
        parser.error(f"--cycles ({args.cycles}) must be a multiple of --rounds ({args.rounds})")

    bindir = Path(sys.executable).parent
    search = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    cli, cc = shutil.which("buildhook", path=search), shutil.which("buildhook-cc", path=search)
    if not cli or not cc:
        print("apply_pause: buildhook / buildhook-cc not found next to this Python", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        log("apply_pause: warning: not root; ptrace may be denied (kernel.yama.ptrace_scope)")

    result: dict[str, object] = {"machine": machine(), "args": vars(args), "cli": cli}
    work = Path(tempfile.mkdtemp(prefix="buildhook-apply-pause-"))
    env = dict(os.environ, BUILDHOOK_STORE=str(work / "store"))
    status = 0
    try:
        floor = None if args.skip_scale else compile_floor(work)
        log(f"building kvd v1.0 and v1.1 with {cc} in {work}")
        old, po = build(work, env, cli, cc)
        result["po"] = {"name": po.name, "size": po.stat().st_size}
        if not args.skip_load:
            result["load"] = load_phase(old, po, work, env, cli, args)
        if floor is not None:
            result["scale"] = scale_phase(old, po, work, env, cli, floor, args)
    except Exception as exc:  # noqa: BLE001 — report what happened, with what was measured so far
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(f"apply_pause: error: {exc}")
        status = 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["loadavg_at_end"] = os.getloadavg()
    checks = goals(result)
    result["goals"] = [{"goal": line, "pass": ok} for line, ok in checks]
    if args.json:
        load = result.get("load")
        if isinstance(load, dict):  # per-cycle reports are long: keep them, but summarised first
            load["pauses"] = pause_stats(load["cycles"])
        print(json.dumps(result, indent=2, default=str))
    else:
        print_report(result)
        if "error" in result:
            print(f"\nERROR: {result['error']}")
    if status == 0 and not all(ok for _, ok in checks):
        status = 3
    return status


if __name__ == "__main__":
    sys.exit(main())
