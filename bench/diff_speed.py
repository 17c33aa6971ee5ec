#!/usr/bin/env python3
"""How long patch generation takes on a real code base, next to a full rebuild.

Issue 3's goal: ``buildhook diff`` on a real security fix takes < 1 s and at
most 0.05x a full rebuild.  The code base is memcached from Debian bookworm
(fetched at run time by ``realsource.py``; nothing of it is committed):

1. reverse the security patches at the end of ``debian/patches/series``
   (their names carry a CVE id): that tree is "deployed";
2. configure it with ``CC=buildhook-cc`` (flags as debian/rules), build,
   ``buildhook release deployed``;
3. time a full rebuild (``make clean && make``), the restart-based way to
   ship a fix;
4. apply the first security patch, rebuild, and time ``buildhook diff
   --from deployed`` (median of ``--runs``);
5. time the post-link step on a relink with no object changed (on vs off).

Run with the Python of an environment where buildhook is installed:
``python bench/diff_speed.py [--runs 5] [--jobs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realsource  # noqa: E402  (bench/ is not a package)

PACKAGE = "memcached"
# debian/rules passes --enable-sasl --enable-tls.  The first security fix of the
# bookworm series (0008, SASL password database timing) is under
# ENABLE_SASL_PWDB, so with Debian's flags alone it changes no code (and the
# diff rightly parses nothing); --enable-sasl-pwdb compiles the fixed code.
CONFIGURE_ARGS = ("--enable-sasl", "--enable-sasl-pwdb", "--enable-tls")
GOAL_SECONDS = 1.0
GOAL_RATIO = 0.05
BIN_DIR = Path(sys.executable).parent


def timed(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 1800) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return elapsed


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores, {model}, Linux {platform.release()}, gcc {gcc}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--workdir", type=Path, default=realsource.DEFAULT_WORKDIR)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    source = realsource.fetch_source(PACKAGE, args.workdir)
    realsource.install_build_deps(PACKAGE, source)
    fixes = realsource.security_patches(source)
    tree = args.workdir / "diff-speed" / "memcached"
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(source, tree, symlinks=True)
    for name in reversed(fixes):
        realsource.apply_debian_patch(tree, name, reverse=True)
    store = Path(tempfile.mkdtemp(prefix="buildhook-diffspeed-store-"))
    env = dict(os.environ, BUILDHOOK_STORE=str(store), BUILDHOOK_PATCH_FROM="off",
               PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        print(f"memcached {realsource.source_version(source)}; deployed = series without {', '.join(fixes)}; "
              f"configure {' '.join(CONFIGURE_ARGS)}")
        realsource.run(["./configure", f"CC={BIN_DIR / 'buildhook-cc'}", "CFLAGS=-O2 -g", *CONFIGURE_ARGS],
                       cwd=tree, env=env, timeout=900)
        timed(["make", f"-j{args.jobs}"], tree, env)
        binary = tree / "memcached"
        realsource.run([str(BIN_DIR / "buildhook"), "release", "deployed", str(binary)], env=env, timeout=60)
        timed(["make", "clean"], tree, env)
        rebuild = timed(["make", f"-j{args.jobs}"], tree, env)
        realsource.apply_debian_patch(tree, fixes[0])
        timed(["make", f"-j{args.jobs}"], tree, env)
        out = tree / "fix.po"
        diff_argv = [str(BIN_DIR / "buildhook"), "diff", "--from", "deployed", str(binary), "-o", str(out), "--json"]
        report = json.loads(subprocess.run(diff_argv, cwd=tree, env=env, capture_output=True, text=True,
                                           timeout=600).stdout)
        diff_times = [timed(diff_argv, tree, env) for _ in range(args.runs)]
        post_link = {}
        for setting in ("off", "latest", "off", "latest"):
            env_link = dict(env, BUILDHOOK_PATCH_FROM=setting)
            binary.unlink()
            post_link.setdefault(setting, []).append(timed(["make", "memcached"], tree, env_link))
        # The relink above with "latest" compared against the release: objects differ
        # (the fix), so it really writes a patch; measure the no-change case too.
        realsource.apply_debian_patch(tree, fixes[0], reverse=True)
        timed(["make", f"-j{args.jobs}"], tree, env)
        unchanged = {}
        for setting in ("off", "latest", "off", "latest"):
            binary.unlink()
            unchanged.setdefault(setting, []).append(
                timed(["make", "memcached"], tree, dict(env, BUILDHOOK_PATCH_FROM=setting)))
    finally:
        shutil.rmtree(store, ignore_errors=True)

    median = statistics.median(diff_times)
    ratio = median / rebuild
    results = {
        "package": f"memcached {realsource.source_version(source)}",
        "fix": fixes[0],
        "outcome": report["outcome"],
        "replaced": [f"{r['file']}:{r['name']}" for r in report["replaced"]],
        "new_functions": [f"{r['file']}:{r['name']}" for r in report["new_functions"]],
        "objects_compared": report["objects_compared"],
        "diff_seconds_median": round(median, 3),
        "diff_seconds_all": [round(t, 3) for t in diff_times],
        "full_rebuild_seconds": round(rebuild, 2),
        "ratio": round(ratio, 4),
        "relink_with_patch_step": {k: [round(t, 3) for t in v] for k, v in post_link.items()},
        "relink_unchanged_objects": {k: [round(t, 3) for t in v] for k, v in unchanged.items()},
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"fix {fixes[0]}: {report['outcome']}, {len(report['replaced'])} replaced "
          f"({', '.join(results['replaced'])}), {len(report['new_functions'])} new, "
          f"{report['objects_compared']} objects parsed")
    print(f"buildhook diff: median {median:.3f} s over {args.runs} runs  (goal < {GOAL_SECONDS} s: "
          f"{'PASS' if median < GOAL_SECONDS else 'FAIL'})")
    print(f"full rebuild:   {rebuild:.1f} s  (make clean && make -j{args.jobs} with the wrapper)")
    print(f"ratio:          {ratio:.4f}x  (goal <= {GOAL_RATIO}x: {'PASS' if ratio <= GOAL_RATIO else 'FAIL'})")
    print(f"relink, fix applied (patch step writes a .po): off {post_link['off']}  latest {post_link['latest']}")
    print(f"relink, no object changed (patch step skips):  off {unchanged['off']}  latest {unchanged['latest']}")
    print(f"machine: {results['machine']}; date {results['date']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
