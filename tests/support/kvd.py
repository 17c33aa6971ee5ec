"""Helpers for tests that build, run and talk to the sample server kvd.

Every later test patches a *running* kvd, so starting it, talking to it and
stopping it reliably (by PID, with timeouts, even when a test fails) lives
here once instead of in every test module.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from buildhook import samples

#: The sample project in this checkout.
SAMPLE_PROJECT = Path(__file__).resolve().parents[2] / "sample_project"

_LISTENING_PREFIX = "listening on "


class KvdError(RuntimeError):
    """kvd could not be built, started or talked to; the message says which step failed."""


class KvdProcess:
    """A kvd started by `start_kvd`: its PID and port, and a stop that always reaps it."""

    def __init__(self, popen: subprocess.Popen[bytes], port: int) -> None:
        self._popen = popen
        self.pid: int = popen.pid
        self.port: int = port

    def stop(self, timeout: float = 5) -> int:
        """Terminate by PID, kill by PID if it lingers, and wait; returns the exit status.

        Signals go to this PID only (never by name): tests may run several kvd
        processes at once, and a patched one must not take others down with it.
        """
        if self._popen.poll() is None:
            _signal_pid(self.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_pid(self.pid, signal.SIGKILL)
                self._popen.wait(timeout=timeout)
        if self._popen.stdout is not None:
            self._popen.stdout.close()
        return self._popen.returncode

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self._popen.poll() is None

    def __enter__(self) -> KvdProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_pid(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def start_kvd(binary: Path, timeout: float = 10, stderr_path: Path | None = None) -> KvdProcess:
    """Start `binary --port 0` and wait (at most `timeout` s) for its `listening on PORT` line.

    Port 0 lets tests run in parallel without port clashes; the announced port
    is the only way to learn it. stderr (kvd's log) goes to `stderr_path` when
    given, else it is discarded, so a chatty server can never block on a full pipe.
    """
    err = open(stderr_path, "wb") if stderr_path is not None else subprocess.DEVNULL
    try:
        popen = subprocess.Popen(
            [str(binary), "--port", "0"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        )
    finally:
        if stderr_path is not None:
            err.close()
    try:
        port = _read_port(popen, timeout)
    except BaseException:
        KvdProcess(popen, 0).stop()
        raise
    return KvdProcess(popen, port)


def _read_port(popen: subprocess.Popen[bytes], timeout: float) -> int:
    """Read stdout up to the first newline without ever blocking past the deadline."""
    assert popen.stdout is not None
    fd = popen.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KvdError(f"kvd (pid {popen.pid}) did not print its port within {timeout} s")
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 256)
            if not chunk:
                raise KvdError(f"kvd (pid {popen.pid}) exited before listening: status {popen.wait()}")
            data += chunk
    line = data.split(b"\n", 1)[0].decode(errors="replace")
    if not line.startswith(_LISTENING_PREFIX) or not line[len(_LISTENING_PREFIX):].isdigit():
        raise KvdError(f"kvd printed {line!r}, expected 'listening on PORT'")
    return int(line[len(_LISTENING_PREFIX):])


class KvdClient:
    """A line-protocol client on 127.0.0.1:port; every read and write has a timeout."""

    def __init__(self, port: int, timeout: float = 5) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""

    def send(self, line: str) -> None:
        """Send one command line without waiting for its reply (for pipelining tests)."""
        self._sock.sendall(line.encode() + b"\n")

    def read_line(self) -> str:
        """Return the next reply line without its newline; raise KvdError if the server closed."""
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise KvdError(f"connection closed before a full reply (got {self._buffer!r})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    def command(self, line: str) -> str:
        """Send one command and return its one reply line, without the newline."""
        self.send(line)
        return self.read_line()

    def closed_by_server(self) -> bool:
        """True when the server has closed its end and no reply data is left unread."""
        return not self._buffer and self._sock.recv(1) == b""

    def close(self) -> None:
        """Close the socket; safe to call twice."""
        self._sock.close()

    def __enter__(self) -> KvdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
