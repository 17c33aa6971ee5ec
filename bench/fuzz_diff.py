#!/usr/bin/env python3
"""Differential fuzzing of `buildhook diff`: random change pairs through the oracle.

Each seed gives a small C program and one mutation of it (constants,
operators, strings, a new static helper, a function moved to another file,
const tables of numbers and of function pointers, a switch, a line shift
above an assert, a tunable's initial value, a constant made writable;
tests/support/changepairs.py), built at -O0/-O1/-O2/-Os, PIE or not, with
or without -fdata-sections (the seed picks).  Every pair goes through the
differential oracle of tests/cases (tests/support/oracle.py): the old
program patched live must answer as the new one, and as the old one after
revert.  A divergence is reduced (features dropped while it stays) and
written as a case folder under --out, ready to move to tests/cases/.

    sudo python3 bench/fuzz_diff.py --pairs 2000 --jobs 2 --out /tmp/fuzz-found

Prints one line per divergence or harness error, and at the end the
counts by outcome, the refusal rules seen, the pairs per second, and the
seeds that diverged.  Run as root (ptrace).  CI runs 20 seeds of it
(tests/test_fuzz_smoke.py).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support import changepairs  # noqa: E402  (bench/ is not a package)


def _run(seed: int) -> changepairs.PairResult:
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{seed}-") as tmp:
        return changepairs.run_seed(seed, Path(tmp))


def reduce_divergence(result: changepairs.PairResult, out: Path) -> Path:
    """Shrink the seed's pair while it still diverges; write it as a case folder."""
    old, new, mutation = changepairs.pair(result.seed)

    def still_fails(candidate_old: changepairs.Program, candidate_new: changepairs.Program) -> bool:
        with tempfile.TemporaryDirectory(prefix="fuzz-reduce-") as tmp:
            return changepairs.check_pair(candidate_old, candidate_new, Path(tmp)).diverged

    old, new = changepairs.reduce(old, new, still_fails)
    folder = out / f"fuzz_seed_{result.seed}"
    if folder.exists():
        shutil.rmtree(folder)
    changepairs.write_case(old, new, folder, f"found by bench/fuzz_diff.py, seed {result.seed}: {mutation}")
    (folder / "divergence.txt").write_text("\n".join(result.divergences) + "\n")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--out", type=Path, default=Path("fuzz-found"), help="where reduced divergences go")
    parser.add_argument("--no-reduce", action="store_true")
    parser.add_argument("--json", type=Path, help="write every pair's result here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("fuzz_diff.py: the oracle attaches with ptrace; run as root", file=sys.stderr)
        return 1
    seeds = list(range(args.seed, args.seed + args.pairs))
    started = time.monotonic()
    results: list[changepairs.PairResult] = []
    with multiprocessing.Pool(args.jobs) as pool:
        for result in pool.imap_unordered(_run, seeds):
            results.append(result)
            if result.diverged or result.error:
                print(f"seed {result.seed} [{result.cflags} {result.ldflags}] {result.mutation}: "
                      f"{'DIVERGED: ' + result.divergences[0] if result.diverged else result.error}", flush=True)
            if len(results) % 100 == 0:
                print(f"… {len(results)} pairs, {time.monotonic() - started:.0f} s", flush=True)
    elapsed = time.monotonic() - started
    diverged = sorted((r for r in results if r.diverged), key=lambda r: r.seed)
    reduced = []
    if diverged and not args.no_reduce:
        args.out.mkdir(parents=True, exist_ok=True)
        for result in diverged:
            reduced.append(reduce_divergence(result, args.out))
    outcomes = collections.Counter(
        ("patch applied" if r.applied else "patch, apply refused" if r.outcome == "patch" else r.outcome or "error")
        for r in results if not r.error)
    rules = collections.Counter(rule for r in results for rule in r.rules)
    configs = collections.Counter(f"{r.cflags} {r.ldflags}".strip() for r in results)
    print(f"\nbuildhook fuzz_diff: {len(results)} pairs (seeds {seeds[0]}–{seeds[-1]}) in {elapsed:.0f} s, "
          f"{len(results) / elapsed:.2f} pairs/s, {args.jobs} jobs; {platform.node()} {datetime.date.today()}")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome:24} {count}")
    print(f"  {'harness errors':24} {sum(1 for r in results if r.error)}")
    print(f"  {'divergences':24} {len(diverged)}")
    if rules:
        print("  refusal rules: " + ", ".join(f"{rule} {count}" for rule, count in rules.most_common()))
    print(f"  build configurations: {len(configs)} (" + ", ".join(f"{c or '-O?'}: {n}" for c, n in sorted(configs.items())) + ")")
    for result, folder in zip(diverged, reduced or [None] * len(diverged)):
        print(f"  diverged: seed {result.seed} [{result.cflags} {result.ldflags}] {result.mutation}"
              + (f" -> {folder}" if folder else ""))
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in sorted(results, key=lambda r: r.seed)], indent=1))
    return 1 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
