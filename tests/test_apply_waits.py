"""A busy function is waited for, and the patch applied as soon as it has returned.

tests/apply_programs/waits: a worker blocks in read() inside handle(), the
function the patch changes.  While it is there the patch must not be
applied; the applier watches the busy thread without stopping the process
again and again (its /proc/PID/task/TID/syscall line: a thread blocked in
the same call, at the same stack pointer, has not returned), and applies
right after it returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_apply import BUILDHOOK, start_program, status

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the applier tests attach with ptrace as root")


def test_busy_function_is_waited_for_and_the_patch_applied_when_it_returns(tmp_path: Path) -> None:
    program = start_program("waits", tmp_path)
    assert program.process.stdin is not None
    try:
        assert program.read_line() == "ready"
        program.process.stdin.write(b"enter\n")
        program.process.stdin.flush()
        assert program.read_line() == "entered"
        applier = subprocess.Popen([BUILDHOOK, "apply", str(program.po), "--pid", str(program.process.pid),
                                    "--timeout", "30", "--json"], env=program.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(2)
            assert applier.poll() is None, "applied while handle() was live"
            assert status(program.process.pid, program.env) == []
            released = time.monotonic()
            program.process.stdin.write(b"release\n")
            program.process.stdin.flush()
            assert program.read_line() == "worker got waits v1", "the frame that was live finishes as old code"
            out, err = applier.communicate(timeout=30)
            took = time.monotonic() - released
        finally:
            if applier.poll() is None:
                applier.kill()
                applier.wait(timeout=10)
        assert applier.returncode == 0, err
        [report] = json.loads(out)
        assert took < 1.0, f"applied {took:.2f} s after handle() returned"
        assert report["retries"] < 20, f"{report['retries']} stops in 2 s of waiting: the wait stops the process"
        program.process.stdin.write(b"ask\n")
        program.process.stdin.flush()
        assert program.read_line() == "waits v2"
    finally:
        program.stop()
