#!/usr/bin/env python3
"""Per-invocation cost of ``buildhook-cc`` on a trivial compile and link.

Where ``wrapper_overhead.py`` says *how much* a real build slows down, this
says *where* a single wrapper run spends its time, by switching parts off
(settings of DESIGN.md §1) and subtracting:

  gcc + flags               the real compiler with the injected flags
  python -c pass            interpreter start-up (site, .pth files)
  python -c import main     + importing buildhook.wrap.main
  BUILDHOOK_RECORD=0        parsing the command, running gcc as a child
  full                      + hashing and recording (blob, journal line)

``buildhook-cc`` is the native wrapper when the install built it
(wrap/shim.c); the same commands through ``buildhook-cc-python``, the Python
wrapper it hands other commands to, show what the native one saves.

Each line gives the median and the minimum wall time of ``--n`` runs, in
milliseconds (the minimum is the least disturbed by other load).  Run with
the Python of the environment whose ``buildhook-cc`` is to be measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SOURCE = "int bench_function(int x) { return x * 3 + 1; }\nint main(void) { return 0; }\n"


def times_ms(argv: list[str], cwd: Path, env: dict[str, str], n: int) -> list[float]:
    """Wall milliseconds of each of ``n`` runs of ``argv`` (which must succeed)."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # A blocking wait, not wait(timeout=…): that one polls with growing
        # sleeps and rounds every time up to the next poll.
        killer = threading.Timer(60, proc.kill)
        killer.start()
        status = proc.wait()
        killer.cancel()
        out.append((time.perf_counter() - start) * 1000)
        if status != 0:
            raise subprocess.CalledProcessError(status, argv)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="runs per line (default 30)")
    args = parser.parse_args(argv)
    bindir = Path(sys.executable).parent
    wrapper = shutil.which("buildhook-cc", path=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    cli = shutil.which("buildhook", path=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    if not wrapper or not cli:
        print("wrapper_startup: buildhook-cc not found next to this Python", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="buildhook-startup-") as tmp:
        work = Path(tmp)
        (work / "t.c").write_text(SOURCE)
        env = dict(os.environ, BUILDHOOK_STORE=str(work / "store"), BUILDHOOK_CC="gcc")
        flags = subprocess.run([cli, "flags", "--compile"], env=env, capture_output=True,
                               text=True, check=True, timeout=60).stdout.split()
        link_flags = subprocess.run([cli, "flags", "--link", str(work / "t.map")], env=env,
                                    capture_output=True, text=True, check=True,
                                    timeout=60).stdout.split()
        subprocess.run(["gcc", *flags, "-c", "t.c", "-o", "t.o"], cwd=work, check=True, timeout=60)
        compile_args, link_args = ["-c", "t.c", "-o", "t.o"], ["t.o", "-o", "t"]
        py = sys.executable
        python_wrapper = shutil.which("buildhook-cc-python", path=str(bindir))
        as_python = {"BUILDHOOK_SHIM_PROGRAM": "buildhook-cc"}
        lines = [
            ("compile: gcc + flags", ["gcc", *flags, *compile_args], {}),
            ("python -c pass", [py, "-c", "pass"], {}),
            ("python -I -S -c pass", [py, "-I", "-S", "-c", "pass"], {}),
            ("python -c 'import buildhook.wrap.main'",
             [py, "-c", "import buildhook.wrap.main"], {}),
            ("  + buildhook.wrap.recording",
             [py, "-c", "import buildhook.wrap.main, buildhook.wrap.recording"], {}),
            ("compile: BUILDHOOK_RECORD=0", [wrapper, *compile_args], {"BUILDHOOK_RECORD": "0"}),
            ("compile: full", [wrapper, *compile_args], {}),
            ("link: gcc + flags", ["gcc", *link_flags, *link_args], {}),
            ("link: BUILDHOOK_RECORD=0", [wrapper, *link_args], {"BUILDHOOK_RECORD": "0"}),
            ("link: full", [wrapper, *link_args], {}),
        ]
        if python_wrapper:
            lines += [("compile: full, buildhook-cc-python", [python_wrapper, *compile_args], as_python),
                      ("link: full, buildhook-cc-python", [python_wrapper, *link_args], as_python)]
        print(f"buildhook-cc {wrapper}  (python {py}"
              + (", PYTHONDONTWRITEBYTECODE set" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "")
              + f"; {args.n} runs each)")
        print(f"  {'':42s} {'median':>7s} {'min':>7s}")
        for label, command, extra in lines:
            runs = times_ms(command, work, env | extra, args.n)
            print(f"  {label:42s} {statistics.median(runs):7.1f} {min(runs):7.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
