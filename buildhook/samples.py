"""The sample server kvd: its release series, and running and talking to it.

``sample_project/patches/series`` lists patch files applied in order with
``patch -p1``; each is named after the release it produces
(``v1.2-append.patch`` → v1.2).  The demo and the tests both build releases
this way, start kvd (``start_kvd``: by PID, with timeouts, always reaped)
and talk to it (``KvdClient``).
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from buildhook.bundled import sample_project_dir

_LISTENING_PREFIX = "listening on "

BUILD_PRODUCTS = ("*.o", "kvd", "build*", ".sconsign.dblite", ".sconf_temp")


class SampleReleaseError(Exception):
    """A release is not in the series, or its patch does not apply."""


def read_series(src_dir: Path) -> list[str]:
    """The patch file names of ``patches/series``, in application order."""
    lines = (src_dir / "patches" / "series").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def release_of(patch_name: str) -> str:
    """``v1.2-append.patch`` → ``v1.2``."""
    return patch_name.split("-", 1)[0]


def apply_series(tree: Path, upto: str, after: str | None = None) -> None:
    """Apply the series in *tree* up to and including release *upto*.

    The tree is at v1.0, or at release *after* (whose patches are then skipped).
    """
    series = read_series(tree)
    releases = [release_of(name) for name in series]
    if upto not in releases or (after is not None and after not in releases):
        raise SampleReleaseError(f"release {upto!r} or {after!r} is not in {tree / 'patches' / 'series'}")
    if after is not None:
        series = series[releases.index(after) + 1:]
    for name in series:
        result = subprocess.run(
            ["patch", "-p1", "--forward", "--batch", "-i", str(tree / "patches" / name)],
            cwd=tree, capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            raise SampleReleaseError(f"patch {name} failed in {tree}: {(result.stdout + result.stderr).strip()}")
        if release_of(name) == upto:
            return


def patched_tree(dest: Path, upto: str | None, src_dir: Path | None = None) -> Path:
    """Copy the sample project to *dest* (without build products) at release *upto*.

    ``upto=None`` is v1.0 unchanged.  Returns *dest*.
    """
    shutil.copytree(src_dir or sample_project_dir(), dest, ignore=shutil.ignore_patterns(*BUILD_PRODUCTS))
    if upto is not None:
        apply_series(dest, upto)
    return dest


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
