#!/usr/bin/env python3
"""The pause's memory scan in pdns-recursor under DNS load: boost.context contexts told precisely, or not.

Run as root after ``bench/realworld.py pdns-recursor --workdir W`` has built
pdns (``--binary W/realworld/pdns-recursor/tree/pdns_recursor``).  The
recursor is started with realworld.py's harness (its responder, 500 cached
names, 4 exact clients and dnsperf, run after run, as load); then, ``--rounds`` times, every
thread is stopped with ptrace as in the pause and, on the same stopped
process, in turn:

- ``conservative``: safety.scan_memory, every word into the busy code counts
  (what a process with unknown stack switching gets);
- ``precise``: safety.scan_contexts with every thread's registers (dead
  thread stacks skipped, register holders seen);
- ``no dead stacks``: safety.scan_contexts without registers, so no thread's
  dead stack is known (and no register holds a context): the scan before
  ca33a98, give or take the register check.

The busy code is every ``MemRecursorCache::`` function (the CVE patch's).
Prints each variant's p50/max in ms, its answers, and the ratios of p50s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import realworld  # noqa: E402

from buildhook.apply import ptrace  # noqa: E402
from buildhook.apply.process import mapped_objects  # noqa: E402
from buildhook.apply.safety import BusyRange, RangeSet, scan_contexts, scan_memory, unwind_tables  # noqa: E402
from buildhook.apply.threads import ThreadGroup  # noqa: E402


def busy_code(binary: Path, bias: int) -> RangeSet:
    """Run-time ranges of every MemRecursorCache:: function of *binary* (its symbol table)."""
    listing = subprocess.run(["nm", "-S", "-C", str(binary)], capture_output=True, text=True, check=True).stdout
    ranges = []
    for line in listing.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and fields[2] in "tT" and "MemRecursorCache::" in fields[3]:
            start = bias + int(fields[0], 16)
            ranges.append(BusyRange(start, start + int(fields[1], 16), fields[3]))
    return RangeSet(ranges)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        pdns = realworld.PdnsRecursor(Path(workdir), 500)
        server = pdns.start(args.binary)
        clients = pdns.exact_clients(4)
        clients.start()
        bursts = [pdns.burst()]  # dnsperf runs BURST_SECONDS at a time: one after another, all through
        try:
            time.sleep(2)
            objects = mapped_objects(server.pid)
            frames = unwind_tables(objects)
            if frames.contexts is None:
                raise SystemExit(f"contexts not told precisely: {frames.contexts_unknown}")
            [program] = [item for item in objects if item.path == str(args.binary)]
            ranges = busy_code(args.binary, program.bias)
            variants = {
                "conservative": lambda registers: scan_memory(server.pid, ranges),
                "precise": lambda registers: scan_contexts(server.pid, frames, ranges, registers),
                "no dead stacks": lambda registers: scan_contexts(server.pid, frames, ranges, {}),
            }
            times: dict[str, list[float]] = {name: [] for name in variants}
            answers: dict[str, set[str]] = {name: set() for name in variants}
            for _round in range(args.rounds):
                if bursts[-1].process.poll() is not None:
                    bursts.append(pdns.burst())
                group = ThreadGroup(server.pid)
                group.seize_all()
                group.stop_all()
                try:
                    registers = {tid: ptrace.get_registers(tid) for tid in group.stopped}
                    for name, scan in variants.items():
                        started = time.perf_counter()
                        found = scan(registers)
                        times[name].append((time.perf_counter() - started) * 1000)
                        answers[name].add("clean" if found is None else "busy")
                finally:
                    group.detach_all()
                time.sleep(0.3)
        finally:
            clients.stop()
            finished = [burst.finish() for burst in bursts]
            pdns.stop()
    p50 = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:<15} p50 {p50[name]:7.1f} ms  max {max(values):7.1f} ms  answers {sorted(answers[name])}")
    print(f"precise/conservative {p50['precise'] / p50['conservative']:.2f}x   "
          f"precise/no dead stacks {p50['precise'] / p50['no dead stacks']:.2f}x")
    print(f"checked requests {sum(clients.requests)}, client errors {len(clients.errors)}; "
          f"dnsperf requests {sum(requests for requests, _ in finished)}, "
          f"errors {[error for _, errors in finished for error in errors]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
