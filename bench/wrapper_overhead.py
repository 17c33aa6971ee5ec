#!/usr/bin/env python3
"""Build-time overhead of ``buildhook-cc`` against plain gcc.

Goal (DESIGN.md §1): a real build with ``CC=buildhook-cc`` takes at most
1.03x the time of the same build with plain gcc.  The overhead has two
parts, measured separately by configurations built alternately
(A B C D A B C D …) so that machine drift hits all of them alike:

  A  plain    CC=gcc, the project's own flags
  B  flags    CC=gcc plus the flags buildhook injects, added by hand
              (``buildhook flags --compile`` / ``buildhook flags --link MAP``)
  C  wrapper  CC=buildhook-cc, a fresh empty BUILDHOOK_STORE per run
  D  warm     CC=buildhook-cc again, right after C, into the store C just
              filled: every object is already there (dedup at its best)

B/A is the cost of the flags, C/B the cost of the wrapper itself (Python
start-up, hashing, SQLite), C/A the total that the goal is about.  Besides
wall time, the CPU time of make and all it ran is measured, and the CPU
time other processes of the machine took meanwhile ("others"): a shared
2-core machine makes wall times swing, and rounds with others <= 5 % are
reported separately ("quiet").

Code bases: ``sample_project`` of this repository, memcached and haproxy,
fetched from Debian bookworm at run time by ``realsource.py`` and built the
way debian/rules does (``dpkg-buildflags`` with hardening=+all; memcached
configured once per configuration with ``--enable-sasl --enable-tls``,
haproxy through its own Makefile with the package's USE_* options).  Only
``make -jN`` is timed; ``make clean`` and configure are outside the timed
region.

Run with the Python of an environment where buildhook is installed
regularly (``pip install .``: an editable install starts Python more slowly
for every command the wrapper hands over): ``python bench/wrapper_overhead.py
[--runs 3]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realsource  # noqa: E402  (bench/ is not a package)

REPO = Path(__file__).resolve().parent.parent
SAMPLE_PROJECT = REPO / "sample_project"
GOAL = 1.03
NOISY_SHARE = 0.05  # others' CPU above this share of a build's own makes its wall time suspect
RETRY_PAUSE = 20.0  # seconds to wait before repeating a disturbed build (--retry-noisy)
MEMCACHED_CONFIGURE_ARGS = ("--enable-sasl", "--enable-tls")  # from debian/rules


class BenchError(RuntimeError):
    """The benchmark cannot run (tool missing, build failed …)."""


# --- the buildhook side -----------------------------------------------------------


@dataclass(frozen=True)
class Buildhook:
    """Where the installed ``buildhook`` and ``buildhook-cc`` are."""

    cli: str
    cc: str

    @classmethod
    def locate(cls) -> Buildhook:
        """Find both commands next to this Python first, then on PATH."""
        search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        cli, cc = shutil.which("buildhook", path=search), shutil.which("buildhook-cc", path=search)
        if not cli:
            raise BenchError("buildhook not found: run this with the Python of an "
                             "environment where `pip install -e .` was done")
        return cls(cli, cc or "")

    def _output(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        try:
            return realsource.run([self.cli, *args], env=env, timeout=120).output
        except realsource.RealSourceError as err:
            raise BenchError(f"buildhook {' '.join(args)} failed: {err}") from None

    def compile_flags(self) -> list[str]:
        """The flags the wrapper adds to every compile."""
        return shlex.split(self._output("flags", "--compile"))

    def link_flags(self, mapfile: str) -> list[str]:
        """The flags the wrapper adds to every link, writing the map to ``mapfile``."""
        return shlex.split(self._output("flags", "--link", mapfile))

    def recorded(self, store: Path) -> Recorded:
        """Count what ``buildhook builds --json`` lists in ``store``."""
        text = self._output("builds", "--json", env={"BUILDHOOK_STORE": str(store)})
        return Recorded.from_builds_json(json.loads(text))


@dataclass
class Recorded:
    """What one wrapper build left in its store."""

    links: int = 0
    link_outputs: list[str] = field(default_factory=list)
    objects: int = 0  # object entries over all links (an object in two links counts twice)
    distinct_objects: int = 0

    @classmethod
    def from_builds_json(cls, data: object) -> Recorded:
        """Read ``buildhook builds --json``: a list of links, each with its objects."""
        links = data
        if isinstance(data, dict):
            links = next((data[k] for k in ("links", "builds") if k in data), [])
        if not isinstance(links, list):
            raise BenchError(f"unexpected `buildhook builds --json` output: {str(data)[:200]}")
        out = cls(links=len(links))
        seen: set[str] = set()
        for link in links:
            if not isinstance(link, dict):
                continue
            out.link_outputs.append(os.path.basename(str(link.get("binary", "?"))))
            objects = link.get("objects") or []
            out.objects += len(objects)
            seen.update(str(obj.get("sha256")) for obj in objects if isinstance(obj, dict))
        out.distinct_objects = len(seen)
        return out


@dataclass(frozen=True)
class Timing:
    """Wall time of a build and the CPU time (user + system) of all its processes."""

    wall: float
    cpu: float
    foreign_cpu: float = 0.0  # CPU other processes of the machine took meanwhile

    @classmethod
    def of(cls, result: realsource.CommandResult) -> Timing:
        return cls(result.seconds, result.cpu_seconds, result.foreign_cpu_seconds)

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall + other.wall, self.cpu + other.cpu,
                      self.foreign_cpu + other.foreign_cpu)


# --- configurations and code bases -------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One compiler configuration: the compiler and what is added to the flags."""

    key: str
    name: str
    cc: str
    extra_cflags: tuple[str, ...] = ()
    extra_ldflags: tuple[str, ...] = ()
    wrapper: bool = False
    warm_store: bool = False

    @property
    def tree_name(self) -> str:
        """Configurations that build identically share one configured tree."""
        return "wrapper" if self.wrapper else self.name


def configurations(buildhook: Buildhook, mapfile: str, keys: str) -> list[Config]:
    """The configurations named in ``keys`` (of "ABCD", see the module docstring)."""
    if ("C" in keys or "D" in keys) and not buildhook.cc:
        raise BenchError("buildhook-cc not found next to buildhook")
    if "D" in keys and "C" not in keys:
        raise BenchError("configuration D (warm store) needs C, which fills the store")
    configs = {"A": lambda: Config("A", "plain", "gcc"),
               "B": lambda: Config("B", "flags", "gcc", tuple(buildhook.compile_flags()),
                                   tuple(buildhook.link_flags(mapfile))),
               "C": lambda: Config("C", "wrapper", buildhook.cc, wrapper=True),
               "D": lambda: Config("D", "warm", buildhook.cc, wrapper=True, warm_store=True)}
    return [configs[k]() for k in "ABCD" if k in keys]


def wrapper_env(store: Path) -> dict[str, str]:
    """Environment of a wrapper build: its own store.

    The real compiler is the default, ``cc`` on PATH (the same gcc as in A
    and B); BUILDHOOK_CC is left unset on purpose, since setting it makes
    every wrapper run import shlex and re (a few ms each).
    """
    return {"BUILDHOOK_STORE": str(store)}


class CodeBase:
    """A code base that can be prepared for a configuration, cleaned and built."""

    name = ""
    version = ""
    flags_note = ""

    def prepare(self, config: Config, scratch: Path) -> None:
        """Make the tree of ``config`` ready to build (untimed)."""
        raise NotImplementedError

    def tree(self, config: Config) -> Path:
        """Where ``config`` is built."""
        raise NotImplementedError

    def clean(self, config: Config, env: Mapping[str, str]) -> None:
        """Remove the outputs of the previous build (untimed)."""
        realsource.clean(self.tree(config), env=env)

    def build(self, config: Config, jobs: int, env: Mapping[str, str]) -> Timing:
        """Build; return its wall and CPU time."""
        return Timing.of(realsource.build_timing(self.tree(config), jobs, env=env))


def make_map_folders(tree: Path) -> None:
    """``bench-maps`` with a folder for each folder of *tree*: B's ``-Wl,-Map=bench-maps/%.map``
    puts the map of ``dev/flags/flags`` (haproxy) at ``bench-maps/dev/flags/flags.map``, and ld
    creates no folders."""
    maps = tree / "bench-maps"
    maps.mkdir(exist_ok=True)
    for folder, names, _ in os.walk(tree):
        names[:] = [name for name in names if name not in ("bench-maps", ".git")]
        for name in names:
            (maps / Path(folder).relative_to(tree) / name).mkdir(parents=True, exist_ok=True)


class Memcached(CodeBase):
    """memcached from Debian bookworm, one configured copy per configuration."""

    name = "memcached"

    def __init__(self, workdir: Path, log) -> None:
        self.workdir = workdir
        self.log = log
        self.source = realsource.fetch_source("memcached", workdir, log=log)
        realsource.install_build_deps("memcached", self.source, log=log)
        self.version = realsource.source_version(self.source)
        self.flags_note = ("dpkg-buildflags (DEB_BUILD_MAINT_OPTIONS=hardening=+all) CFLAGS, "
                           "CPPFLAGS, LDFLAGS; ./configure " + " ".join(MEMCACHED_CONFIGURE_ARGS))

    def tree(self, config: Config) -> Path:
        return self.workdir / "memcached" / config.tree_name

    def prepare(self, config: Config, scratch: Path) -> None:
        tree = realsource.copy_tree(self.source, self.tree(config))
        make_map_folders(tree)
        flags = packager_flags(tree)
        cflags = " ".join([flags["CFLAGS"], *map(shlex.quote, config.extra_cflags)])
        ldflags = " ".join([flags["LDFLAGS"], *map(shlex.quote, config.extra_ldflags)])
        env = wrapper_env(scratch / "configure-store") if config.wrapper else None
        seconds = realsource.configure(
            tree, cc=config.cc, cflags=cflags.strip(), ldflags=ldflags.strip(),
            args=[*MEMCACHED_CONFIGURE_ARGS, f"CPPFLAGS={flags['CPPFLAGS']}"], env=env)
        if seconds:
            self.log(f"  configured {config.tree_name} tree in {seconds:.1f}s")


class Haproxy(CodeBase):
    """haproxy from Debian bookworm, built as debian/rules does (its own Makefile, no configure)."""

    name = "haproxy"

    def __init__(self, workdir: Path, log) -> None:
        self.workdir = workdir
        self.source = realsource.fetch_source("haproxy", workdir, log=log)
        realsource.install_build_deps("haproxy", self.source, log=log)
        self.version = realsource.source_version(self.source)
        self.flags_note = realsource.haproxy_description()

    def tree(self, config: Config) -> Path:
        return self.workdir / "haproxy" / config.tree_name

    def prepare(self, config: Config, scratch: Path) -> None:
        tree = realsource.copy_tree(self.source, self.tree(config))
        make_map_folders(tree)

    def build(self, config: Config, jobs: int, env: Mapping[str, str]) -> Timing:
        make_args = [*realsource.HAPROXY_MAKE_ARGS, f"CC={config.cc}",
                     *realsource.haproxy_make_flags(self.tree(config), config.extra_cflags, config.extra_ldflags)]
        return Timing.of(realsource.build_timing(self.tree(config), jobs, env=env, make_args=make_args))


def packager_flags(tree: Path) -> dict[str, str]:
    """CFLAGS/CPPFLAGS/LDFLAGS as debian/rules gets them (hardening=+all)."""
    out = realsource.run(["dpkg-buildflags", "--export=sh"], cwd=tree, timeout=60,
                         env={"DEB_BUILD_MAINT_OPTIONS": "hardening=+all"}).output
    flags = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            flags[key] = value
    return {k: flags.get(k, "") for k in ("CFLAGS", "CPPFLAGS", "LDFLAGS")}


class SampleProject(CodeBase):
    """This repository's sample_project, built in a copy so the repository stays clean.

    Its Makefile takes CC/CFLAGS/LDFLAGS with defaults (``CFLAGS ?= …``).
    A and C run ``make CC=…`` with the Makefile's own CFLAGS; B passes
    ``CFLAGS=<the Makefile's default> <compile flags>`` and
    ``LDFLAGS=<link flags>`` on make's command line.  One of its builds
    takes a fraction of a second, so a "build" here is ``repeat`` clean
    builds, of which only the ``make`` parts are timed and added up.
    """

    name = "sample_project"

    def __init__(self, workdir: Path, repeat: int) -> None:
        if not (SAMPLE_PROJECT / "Makefile").exists():
            raise BenchError(f"{SAMPLE_PROJECT}/Makefile does not exist (yet)")
        self.workdir = workdir
        self.repeat = repeat
        self.version = f"(working tree; one run = {repeat} clean builds)"
        self.default_cflags = makefile_value(SAMPLE_PROJECT, "CFLAGS")
        self.default_ldflags = makefile_value(SAMPLE_PROJECT, "LDFLAGS")
        self.flags_note = f"the Makefile's own: CFLAGS {self.default_cflags}"

    def tree(self, config: Config) -> Path:
        return self.workdir / "sample" / config.tree_name

    def prepare(self, config: Config, scratch: Path) -> None:
        tree = self.tree(config)
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(SAMPLE_PROJECT, tree, symlinks=True)
        make_map_folders(tree)

    def build(self, config: Config, jobs: int, env: Mapping[str, str]) -> Timing:
        make_args = [f"CC={config.cc}"]
        if config.extra_cflags or config.extra_ldflags:
            make_args += [
                "CFLAGS=" + " ".join([self.default_cflags, *map(shlex.quote, config.extra_cflags)]),
                "LDFLAGS=" + " ".join([self.default_ldflags,
                                       *map(shlex.quote, config.extra_ldflags)]),
            ]
        total = Timing(0.0, 0.0, 0.0)
        for i in range(self.repeat):
            build_env = dict(env)
            if i:
                self.clean(config, env)
                if config.wrapper and not config.warm_store:
                    # Each repeat of C starts empty too; the first one's store is
                    # the one D reuses and the one counted.
                    build_env["BUILDHOOK_STORE"] = f"{env['BUILDHOOK_STORE']}-{i}"
            total += Timing.of(realsource.build_timing(self.tree(config), jobs, env=build_env,
                                                       make_args=make_args))
        return total


def makefile_value(directory: Path, variable: str) -> str:
    """The value ``variable`` gets from the Makefile in ``directory`` alone."""
    env = {k: v for k, v in os.environ.items() if k not in (variable, "MAKEFLAGS")}
    proc = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile",
         "--eval", f"bench-print-value: ; @echo $({variable})", "bench-print-value"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise BenchError(f"cannot read {variable} from {directory}/Makefile: {proc.stderr.strip()}")
    return proc.stdout.strip()


# --- measuring ----------------------------------------------------------------------


@dataclass
class Result:
    """All timings of one code base."""

    codebase: str
    version: str
    flags: str
    jobs: int
    configs: dict[str, dict[str, object]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)  # wall, per run
    cpu_seconds: dict[str, list[float]] = field(default_factory=dict)  # user+sys, per run
    foreign_cpu_seconds: dict[str, list[float]] = field(default_factory=dict)  # others' CPU
    recorded: dict[str, object] | None = None  # by the last C run
    recorded_after_warm: dict[str, object] | None = None  # the same store after D too
    object_files_in_tree: int = 0

    def median(self, key: str) -> float:
        return statistics.median(self.seconds[key])

    def min(self, key: str) -> float:
        return min(self.seconds[key])

    def cpu_median(self, key: str) -> float:
        return statistics.median(self.cpu_seconds[key])

    def foreign_share(self, key: str) -> float:
        """Worst run's CPU time taken by other processes, relative to the build's own."""
        return max(f / c for f, c in zip(self.foreign_cpu_seconds[key], self.cpu_seconds[key]))

    def quiet_rounds(self) -> list[int]:
        """Rounds in which no build shared the machine noticeably (others <= NOISY_SHARE)."""
        rounds = len(next(iter(self.seconds.values())))
        return [i for i in range(rounds)
                if all(self.foreign_cpu_seconds[k][i] <= NOISY_SHARE * self.cpu_seconds[k][i]
                       for k in self.seconds)]

    def quiet_median(self, key: str) -> float | None:
        quiet = self.quiet_rounds()
        return statistics.median(self.seconds[key][i] for i in quiet) if quiet else None

    def ratios(self) -> dict[str, dict[str, float | None]]:
        """B/A, C/B, C/A (and D/A) of wall medians (all rounds, quiet rounds), wall
        minima and CPU medians."""
        pairs = {"flags B/A": ("B", "A"), "wrapper C/B": ("C", "B"), "total C/A": ("C", "A"),
                 "warm total D/A": ("D", "A")}
        out: dict[str, dict[str, float | None]] = {}
        for name, (a, b) in pairs.items():
            if not (self.seconds.get(a) and self.seconds.get(b)):
                continue
            quiet_a, quiet_b = self.quiet_median(a), self.quiet_median(b)
            out[name] = {"median": self.median(a) / self.median(b),
                         "quiet_median": quiet_a / quiet_b if quiet_a and quiet_b else None,
                         "min": self.min(a) / self.min(b),
                         "cpu_median": self.cpu_median(a) / self.cpu_median(b)}
        return out


def measure(codebase: CodeBase, configs: list[Config], buildhook: Buildhook, runs: int,
            warmup: int, jobs: int, workdir: Path, log, retry_noisy: int = 0) -> Result:
    """Build every configuration ``warmup`` + ``runs`` times, alternating.

    A timed build during which other processes took more than NOISY_SHARE
    of its CPU time is repeated up to ``retry_noisy`` times (after a pause),
    and the least disturbed attempt is kept.
    """
    result = Result(codebase.name, codebase.version, codebase.flags_note, jobs)
    scratch = Path(tempfile.mkdtemp(prefix="stores-", dir=workdir))
    try:
        for config in configs:
            result.configs[config.key] = {"name": config.name, "cc": config.cc,
                                          "extra_cflags": list(config.extra_cflags),
                                          "extra_ldflags": list(config.extra_ldflags)}
            if not config.warm_store:  # D builds in C's tree
                codebase.prepare(config, scratch)
        result.seconds = {c.key: [] for c in configs}
        result.cpu_seconds = {c.key: [] for c in configs}
        result.foreign_cpu_seconds = {c.key: [] for c in configs}
        store = scratch / "none"
        for round_no in range(-warmup, runs):
            label = f"warm-up {round_no + warmup + 1}" if round_no < 0 else f"run {round_no + 1}"
            for config in configs:
                env: dict[str, str] = {}
                if config.wrapper and not config.warm_store:
                    shutil.rmtree(store, ignore_errors=True)
                    store = scratch / f"store-{label.replace(' ', '')}"
                if config.wrapper:
                    env = wrapper_env(store)
                timing = None
                for attempt in range(1 + (retry_noisy if round_no >= 0 else 0)):
                    if attempt:
                        log(f"  {'':10s} {config.key} others took CPU: pausing, then again")
                        time.sleep(RETRY_PAUSE)
                        if config.wrapper and not config.warm_store:
                            shutil.rmtree(store, ignore_errors=True)
                    codebase.clean(config, env)
                    this = codebase.build(config, jobs, env)
                    log(f"  {label:10s} {config.key} {config.name:8s} {this.wall:8.2f}s wall "
                        f"{this.cpu:8.2f}s cpu {this.foreign_cpu:7.2f}s foreign cpu")
                    if timing is None or this.foreign_cpu / this.cpu < timing.foreign_cpu / timing.cpu:
                        timing = this
                    if this.foreign_cpu <= NOISY_SHARE * this.cpu:
                        break
                if round_no >= 0:
                    result.seconds[config.key].append(timing.wall)
                    result.cpu_seconds[config.key].append(timing.cpu)
                    result.foreign_cpu_seconds[config.key].append(timing.foreign_cpu)
                if round_no == runs - 1 and config.wrapper:
                    # Untimed: proves the wrapper recorded, i.e. C was no no-op.
                    recorded = asdict(buildhook.recorded(store))
                    if config.warm_store:
                        result.recorded_after_warm = recorded
                    else:
                        result.recorded = recorded
                        result.object_files_in_tree = len(realsource.object_files(
                            codebase.tree(config)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


# --- reporting ----------------------------------------------------------------------


def machine() -> dict[str, str]:
    """nproc, CPU, RAM, kernel and gcc of this machine."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                         timeout=30).stdout.splitlines()[0]
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "ram": f"{mem_kib / 2**20:.1f} GiB",
            "kernel": platform.release(), "gcc": gcc, "python": platform.python_version(),
            "buildhook": buildhook_install(), "commit": repo_commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def repo_commit() -> str:
    """HEAD of this repository (the wrapper measured, for an editable install)."""
    try:
        return subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"],
                              capture_output=True, text=True, timeout=30).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def buildhook_install() -> str:
    """How the wrapper's Python code is installed: it changes its start-up a lot.

    An editable install (``pip install -e``) loads setuptools' finder at every
    start, and with PYTHONDONTWRITEBYTECODE set the sources are recompiled on
    every run (nothing writes ``__pycache__``); a regular install ships .pyc.
    """
    spec = importlib.util.find_spec("buildhook")
    if spec is None or spec.origin is None:
        return "not importable from this Python"
    origin = Path(spec.origin).resolve()
    editable = not origin.is_relative_to(Path(sys.prefix).resolve())
    kind = f"editable ({origin.parent})" if editable else f"regular ({origin.parent})"
    nobytecode = os.environ.get("PYTHONDONTWRITEBYTECODE")
    return kind + (f", PYTHONDONTWRITEBYTECODE={nobytecode}" if nobytecode else "")


def table(result: Result) -> str:
    """The human table of one code base."""
    lines = [f"{result.codebase} {result.version}  (make -j{result.jobs}, "
             f"{len(next(iter(result.seconds.values())))} runs each, alternating)",
             f"  flags: {result.flags}",
             f"  {'config':14s} {'wall med':>9s} {'wall min':>9s} {'cpu med':>9s} "
             f"{'others':>7s}   wall per run"]
    for key, runs in result.seconds.items():
        name = result.configs[key]["name"]
        lines.append(f"  {key} {name:12s} {result.median(key):8.2f}s {result.min(key):8.2f}s "
                     f"{result.cpu_median(key):8.2f}s {result.foreign_share(key):6.0%}   "
                     + " ".join(f"{s:.2f}" for s in runs))
    quiet = result.quiet_rounds()
    lines.append(f"  {'ratio':14s} {'wall med':>9s} {'wall min':>9s} {'cpu med':>9s} "
                 f"{'quiet med':>9s}  (quiet: {len(quiet)} of {len(next(iter(result.seconds.values())))} rounds "
                 f"with others <= {NOISY_SHARE:.0%})")
    for name, ratio in result.ratios().items():
        verdict = ""
        if name.startswith("total"):
            verdict = (f"   goal <= {GOAL:.2f}x (wall median): "
                       + ("PASS" if ratio["median"] <= GOAL else "FAIL"))
        quiet_ratio = f"{ratio['quiet_median']:8.3f}x" if ratio["quiet_median"] else "       -"
        lines.append(f"  {name:14s} {ratio['median']:8.3f}x {ratio['min']:8.3f}x "
                     f"{ratio['cpu_median']:8.3f}x {quiet_ratio}{verdict}")
    worst = max(result.foreign_share(key) for key in result.seconds)
    if worst > NOISY_SHARE:
        lines.append(f"  WARNING: other processes used up to {worst:.0%} of this build's CPU time "
                     "during a run ('others': worst run); wall times are skewed, the cpu column "
                     "much less")
    if result.recorded is not None:
        rec = result.recorded
        lines.append(f"  recorded by the last C run: {rec['links']} links "
                     f"({', '.join(sorted(set(rec['link_outputs'])))}), {rec['objects']} "
                     f"object entries ({rec['distinct_objects']} distinct); "
                     f"its tree has {result.object_files_in_tree} .o files")
    if result.recorded_after_warm is not None:
        rec = result.recorded_after_warm
        lines.append(f"  the same store after D: {rec['links']} links, "
                     f"{rec['distinct_objects']} distinct objects")
    b = result.configs.get("B")
    if b:
        lines.append(f"  B adds: CFLAGS {shlex.join(b['extra_cflags'])}; "
                     f"LDFLAGS {shlex.join(b['extra_ldflags'])}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per configuration")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed rounds before the timed ones (default 1)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="make -jN")
    parser.add_argument("--workdir", type=Path, default=realsource.DEFAULT_WORKDIR,
                        help="cache of sources and configured trees (default %(default)s)")
    parser.add_argument("--only", choices=("sample", "memcached", "haproxy"), help="one code base only")
    parser.add_argument("--configs", default="ABCD",
                        help="which configurations to build (default ABCD; ABC skips the "
                             "warm-store run D, AB needs no buildhook-cc)")
    parser.add_argument("--retry-noisy", type=int, default=0, metavar="N",
                        help="repeat a timed build up to N times when other processes took "
                             f"over {round(NOISY_SHARE * 100)}%% of its CPU time meanwhile (default 0)")
    parser.add_argument("--sample-repeat", type=int, default=20,
                        help="clean builds of sample_project per timed run (default 20)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so temporary stores are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = args.workdir.expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True))
    buildhook = Buildhook.locate()
    report = {"machine": machine(), "command": shlex.join([sys.executable, *sys.argv]),
              "results": [], "skipped": {}}
    if not args.json:
        print(f"wrapper_overhead  {report['command']}")
        for key, value in report["machine"].items():
            print(f"  {key:9s} {value}")
        print(flush=True)
    codebases: list[CodeBase] = []
    if args.only in (None, "sample"):
        try:
            codebases.append(SampleProject(workdir, args.sample_repeat))
        except BenchError as err:
            if args.only == "sample":
                raise
            report["skipped"]["sample_project"] = str(err)
            log(f"skipping sample_project: {err}")
    if args.only in (None, "memcached"):
        codebases.append(Memcached(workdir, log))
    if args.only in (None, "haproxy"):
        codebases.append(Haproxy(workdir, log))
    for codebase in codebases:
        log(f"{codebase.name} {codebase.version}:")
        mapfile = str(codebase.tree(Config("B", "flags", "gcc")) / "bench-maps" / "%.map")
        configs = configurations(buildhook, mapfile, args.configs.upper())
        result = measure(codebase, configs, buildhook, args.runs, args.warmup, args.jobs,
                         workdir, log, args.retry_noisy)
        report["results"].append(asdict(result) | {"ratios": result.ratios(),
                                                  "quiet_rounds": result.quiet_rounds()})
        if not args.json:
            print(table(result), flush=True)
            print(flush=True)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, realsource.RealSourceError) as err:
        print(f"wrapper_overhead: {err}", file=sys.stderr)
        sys.exit(1)
