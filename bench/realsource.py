"""Obtain, configure and build a real Debian C code base for benchmarks.

The benchmarks in ``bench/`` need a code base larger than ``sample_project``
that a release engineer would really build with ``CC=buildhook-cc``.  This
module gets one from the Debian archive at run time (nothing of it is
committed) and drives its autotools build:

    tree = fetch_source("memcached", workdir)      # apt-get source, cached
    install_build_deps("memcached", tree)          # apt-get build-dep, once
    variant = copy_tree(tree, workdir / "plain")   # one tree per configuration
    configure(variant, cc="gcc", cflags="-O2 -g")  # skipped when unchanged
    clean(variant)
    seconds = build(variant, jobs=2)

Everything lands under ``workdir`` (the benchmarks default to
``~/.cache/buildhook-bench``) so a second run only re-times the builds.

Only the package registries are contacted (``apt-get``).  When the machine
has no ``deb-src`` entries, :func:`ensure_source_index` adds a separate file
``/etc/apt/sources.list.d/buildhook-bench-src.sources`` mirroring the Debian
``deb`` entries with ``Types: deb-src``; existing files are never edited.
Root is needed for that and for installing build dependencies; as non-root
``sudo -n`` is used when available, otherwise the command to run is named.

Every child process runs in its own process group with a timeout; on
timeout the whole group (``make`` and its compilers) is killed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKDIR = Path.home() / ".cache" / "buildhook-bench"

SOURCES_DIR = Path("/etc/apt/sources.list.d")
DEB_SRC_FILE = SOURCES_DIR / "buildhook-bench-src.sources"
# Only Debian's own entries are mirrored as deb-src: third-party repositories
# often publish no sources and would make `apt-get update` fail.
DEBIAN_DEB822 = SOURCES_DIR / "debian.sources"
DEBIAN_ONE_LINE = Path("/etc/apt/sources.list")

UNPACKED_STAMP = ".buildhook-bench-unpacked"
CONFIGURED_STAMP = ".buildhook-bench-configured.json"

TIMEOUT_APT = 1800.0
TIMEOUT_CONFIGURE = 1200.0
TIMEOUT_BUILD = 3600.0


class RealSourceError(RuntimeError):
    """A step of obtaining or building the real code base failed.

    The message names the step and, for a failed command, the command, its
    exit status and the tail of its output.
    """


@dataclass(frozen=True)
class CommandResult:
    """Outcome of one child process run by :func:`run`."""

    argv: tuple[str, ...]
    returncode: int
    output: str
    seconds: float  # wall
    cpu_seconds: float  # user + system of the process and all it waited for
    machine_cpu_seconds: float  # busy time of all CPUs meanwhile, whoever used it

    @property
    def foreign_cpu_seconds(self) -> float:
        """CPU time other processes of the machine took meanwhile (load that skews timing)."""
        return max(0.0, self.machine_cpu_seconds - self.cpu_seconds)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float,
    check: bool = True,
    capture: bool = True,
) -> CommandResult:
    """Run ``argv`` in its own process group, killing the group on timeout.

    ``env`` entries are added to the current environment.  stdout and stderr
    are merged and returned (or passed through when ``capture`` is false).
    With ``check`` a non-zero exit raises :class:`RealSourceError`.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    cpu_before, machine_before = _children_cpu(), _machine_busy()
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise RealSourceError(
            f"timed out after {timeout:.0f}s: {_show(argv)} (in {cwd or os.getcwd()})"
        ) from None
    except BaseException:
        _kill_group(proc)
        raise
    seconds = time.perf_counter() - start
    result = CommandResult(tuple(argv), proc.returncode, out or "", seconds,
                           _children_cpu() - cpu_before, _machine_busy() - machine_before)
    if check and proc.returncode != 0:
        tail = "\n".join(result.output.splitlines()[-30:])
        raise RealSourceError(
            f"exit {proc.returncode}: {_show(argv)} (in {cwd or os.getcwd()})\n{tail}"
        )
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_busy() -> float:
    """Seconds all CPUs spent busy since boot (user, nice, system, irq, softirq)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:8]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _show(argv: Sequence[str]) -> str:
    return " ".join(argv)


def _as_root(argv: Sequence[str]) -> list[str]:
    """Prefix ``argv`` so it runs as root, or explain why it cannot."""
    if os.geteuid() == 0:
        return list(argv)
    if shutil.which("sudo"):
        return ["sudo", "-n", *argv]
    raise RealSourceError(f"needs root: run `{_show(argv)}` as root, then retry")


# --- the source index (deb-src) ------------------------------------------------


def has_deb_src() -> bool:
    """True when any active apt source file has a ``deb-src`` entry."""
    for path in _apt_source_files():
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in _deb822_stanzas(text):
                if "deb-src" in stanza.get("Types", "").split():
                    return True
        elif any(line.split()[:1] == ["deb-src"] for line in text.splitlines()):
            return True
    return False


def _apt_source_files() -> list[Path]:
    files = [DEBIAN_ONE_LINE] if DEBIAN_ONE_LINE.exists() else []
    if SOURCES_DIR.is_dir():
        files += sorted(p for p in SOURCES_DIR.iterdir() if p.suffix in (".list", ".sources"))
    return files


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    """Parse deb822 text into stanzas (comments dropped, continuations joined)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def deb_src_entries() -> str:
    """The deb822 text of ``deb-src`` stanzas mirroring Debian's ``deb`` ones."""
    out: list[str] = []
    if DEBIAN_DEB822.exists():
        for stanza in _deb822_stanzas(DEBIAN_DEB822.read_text()):
            if "deb" not in stanza.get("Types", "").split():
                continue
            if stanza.get("Enabled", "yes").lower() == "no":
                continue
            fields = dict(stanza, Types="deb-src")
            out.append("\n".join(f"{k}: {v}" for k, v in fields.items()))
    if DEBIAN_ONE_LINE.exists():
        for line in DEBIAN_ONE_LINE.read_text().splitlines():
            words = line.split()
            if words[:1] != ["deb"] or len(words) < 4:
                continue
            options = ""
            if words[1].startswith("["):
                end = next(i for i, w in enumerate(words) if w.endswith("]"))
                options, words = " ".join(words[1 : end + 1]), ["deb", *words[end + 1 :]]
            uri, suite, components = words[1], words[2], words[3:]
            stanza = ["Types: deb-src", f"URIs: {uri}", f"Suites: {suite}",
                      f"Components: {' '.join(components)}"]
            m = re.search(r"signed-by=([^\s\]]+)", options)
            if m:
                stanza.append(f"Signed-By: {m.group(1)}")
            out.append("\n".join(stanza))
    if not out:
        raise RealSourceError(
            f"no Debian `deb` entries found in {DEBIAN_DEB822} or {DEBIAN_ONE_LINE}: "
            "add a deb-src entry for Debian by hand"
        )
    return "# written by buildhook bench/realsource.py: source packages for benchmarks\n" + \
        "\n\n".join(out) + "\n"


def _showsrc_finds(package: str) -> bool:
    result = run(["apt-cache", "showsrc", package], timeout=120, check=False)
    return result.returncode == 0 and re.search(r"^Package: ", result.output, re.M) is not None


def ensure_source_index(package: str, log=print) -> None:
    """Make ``apt-get source PACKAGE`` work: add deb-src and update if needed.

    ``apt-get update`` runs at most once, and only when the source index
    does not know ``package`` yet.
    """
    if _showsrc_finds(package):
        return
    if not has_deb_src():
        log(f"realsource: no deb-src entries; writing {DEB_SRC_FILE}")
        text = deb_src_entries()
        if os.geteuid() == 0:
            DEB_SRC_FILE.write_text(text)
        else:
            run(_as_root(["tee", str(DEB_SRC_FILE)]), timeout=60)  # pragma: no cover
    log("realsource: apt-get update")
    run(_as_root(["apt-get", "update"]), timeout=TIMEOUT_APT)
    if not _showsrc_finds(package):
        raise RealSourceError(f"apt-cache showsrc {package}: still unknown after apt-get update")


# --- fetching and build dependencies ------------------------------------------


def fetch_source(package: str, workdir: Path = DEFAULT_WORKDIR, log=print) -> Path:
    """Return the unpacked Debian source tree of ``package`` (patches applied).

    The tree lives in ``workdir/src/<package>/<package>-<upstream version>``
    and is reused by later calls; treat it as read-only and build in copies
    (:func:`copy_tree`).  ``dpkg-dev`` is installed if ``dpkg-source`` is
    missing.
    """
    srcdir = Path(workdir).expanduser() / "src" / package
    cached = _unpacked_trees(srcdir, package)
    if cached:
        return cached[-1]
    ensure_source_index(package, log)
    if not shutil.which("dpkg-source"):
        log("realsource: installing dpkg-dev (for dpkg-source)")
        run(_as_root(["apt-get", "install", "-y", "--no-install-recommends", "dpkg-dev"]),
            timeout=TIMEOUT_APT, env={"DEBIAN_FRONTEND": "noninteractive"})
    srcdir.mkdir(parents=True, exist_ok=True)
    _apt_get_source(package, srcdir, log)
    trees = [p for p in srcdir.glob(f"{package}-*") if p.is_dir() and (p / "debian").is_dir()]
    if len(trees) != 1:
        raise RealSourceError(f"apt-get source {package}: expected one unpacked tree in {srcdir}, "
                              f"found {[p.name for p in trees]}")
    (trees[0] / UNPACKED_STAMP).write_text(source_version(trees[0]) + "\n")
    return trees[0]


def _apt_get_source(package: str, srcdir: Path, log=print) -> None:
    """``apt-get source``, newest version first, falling back to older ones the index lists.

    A mirror can list a version whose files it does not have yet (seen:
    haproxy 2.6.12-1+deb12u4 from bookworm-security, 404).
    """
    listing = run(["apt-cache", "showsrc", package], timeout=120, check=False).output
    versions = list(dict.fromkeys(re.findall(r"^Version: (\S+)", listing, re.M)))
    versions.sort(key=functools.cmp_to_key(_compare_versions), reverse=True)
    failures = []
    for version in versions or [None]:
        spec = f"{package}={version}" if version else package
        log(f"realsource: apt-get source {spec} (into {srcdir})")
        result = run(["apt-get", "source", spec], cwd=srcdir, timeout=TIMEOUT_APT, check=False)
        if result.returncode == 0:
            return
        failures.append(f"{spec}: {result.output.strip().splitlines()[-1:]}")
    raise RealSourceError(f"apt-get source {package} failed for every listed version: {failures}")


def _compare_versions(a: str, b: str) -> int:
    """Debian version order, as dpkg sees it."""
    if run(["dpkg", "--compare-versions", a, "lt", b], timeout=30, check=False).returncode == 0:
        return -1
    return 0 if a == b else 1


def _unpacked_trees(srcdir: Path, package: str) -> list[Path]:
    if not srcdir.is_dir():
        return []
    return sorted(p for p in srcdir.glob(f"{package}-*") if (p / UNPACKED_STAMP).exists())


def source_version(tree: Path) -> str:
    """The Debian version (e.g. ``1.6.18-1``) from ``debian/changelog``."""
    first = (Path(tree) / "debian" / "changelog").read_text().splitlines()[0]
    m = re.match(r"\S+ \(([^)]+)\)", first)
    if not m:
        raise RealSourceError(f"cannot read the version from {tree}/debian/changelog: {first!r}")
    return m.group(1)


CHANGELOG_HEADER = re.compile(r"^(?P<package>\S+) \((?P<version>[^)]+)\) (?P<suites>[^;]+);")
CHANGELOG_TRAILER = re.compile(r"^ -- .+?  (?P<date>\w{3}, +\d+ \w{3} \d{4} [\d:]+ [+-]\d{4})")
PATCH_DATE = re.compile(r"^Date: +(?P<date>.+)$", re.M)
STABLE_UPDATE = re.compile(r"\+deb\d+u\d+|~deb\d+")


def last_regular_upload(tree: Path) -> float:
    """When the newest upload that is not a stable/security update was made (epoch seconds).

    Stable and security updates carry ``+debNuM`` in their version; everything
    a patch series gained after the last regular upload came with them.
    """
    from email.utils import parsedate_to_datetime

    version = None
    for line in (Path(tree) / "debian" / "changelog").read_text(errors="replace").splitlines():
        header = CHANGELOG_HEADER.match(line)
        if header:
            version = header["version"]
            continue
        trailer = CHANGELOG_TRAILER.match(line)
        if trailer and version is not None and not STABLE_UPDATE.search(version):
            return parsedate_to_datetime(trailer["date"]).timestamp()
    raise RealSourceError(f"{tree}/debian/changelog: no regular (non +debNuM) upload found")


def _patch_date(patch: Path) -> float | None:
    from email.utils import parsedate_to_datetime

    match = PATCH_DATE.search(patch.read_text(errors="replace")[:4000])
    try:
        return parsedate_to_datetime(match["date"]).timestamp() if match else None
    except (TypeError, ValueError):
        return None


def security_patches(tree: Path) -> list[str]:
    """The security fixes a stable update appended to debian/patches/series, in order.

    Debian appends them to the end of the series, so the tree without them is
    what was deployed before the advisory.  A trailing patch belongs to that
    run when its name carries a CVE id (memcached's ``0009-CVE-2023-46852.patch``)
    or when its ``Date:`` is after the last regular upload (haproxy's
    ``BUG-MAJOR-http-reject-any-empty-content-length-heade.patch``, whose id
    is only in the changelog).  The run stops at the first patch that is
    neither.
    """
    since = last_regular_upload(tree)
    patches = Path(tree) / "debian" / "patches"
    series = [line.split()[0] for line in (patches / "series").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    trailing: list[str] = []
    for name in reversed(series):
        date = _patch_date(patches / name)
        if "cve" not in name.lower() and (date is None or date <= since):
            break
        trailing.insert(0, name)
    if not trailing:
        raise RealSourceError(f"{tree}: no security patches at the end of debian/patches/series")
    return trailing


def apply_debian_patch(tree: Path, name: str, reverse: bool = False) -> None:
    """Apply (or reverse) one patch of debian/patches to an unpacked tree."""
    argv = ["patch", "-p1", "--batch", "-i", str(Path(tree) / "debian" / "patches" / name)]
    run(argv + (["-R"] if reverse else []), cwd=Path(tree), timeout=60)


def install_build_deps(package: str, tree: Path, log=print) -> None:
    """Install what building ``tree`` needs (``apt-get build-dep``), once.

    Skipped when ``dpkg-checkbuilddeps`` says the dependencies are there.
    """
    if run(["dpkg-checkbuilddeps"], cwd=tree, timeout=120, check=False).returncode == 0:
        return
    log(f"realsource: apt-get build-dep -y {package}")
    run(_as_root(["apt-get", "build-dep", "-y", package]), timeout=TIMEOUT_APT,
        env={"DEBIAN_FRONTEND": "noninteractive"})


def install_tools(tools: dict[str, str], log=print) -> None:
    """Install the Debian package of every command in *tools* (command → package) not on PATH.

    A key that is an absolute path (a header, say) stands for a file the package installs.
    """
    missing = sorted({package for command, package in tools.items()
                      if not (Path(command).exists() if command.startswith("/") else shutil.which(command))})
    if not missing:
        return
    log(f"realsource: apt-get install -y {' '.join(missing)}")
    run(_as_root(["apt-get", "install", "-y", "--no-install-recommends", *missing]), timeout=TIMEOUT_APT,
        env={"DEBIAN_FRONTEND": "noninteractive"})


# --- building -------------------------------------------------------------------


def copy_tree(source: Path, dest: Path) -> Path:
    """Return ``dest``, a copy of ``source`` made once (kept if it exists).

    One copy per compiler configuration lets each be configured once; a
    copy whose origin changed (new source version) is replaced.
    """
    source, dest = Path(source), Path(dest)
    origin = dest / ".buildhook-bench-origin"
    if dest.exists() and origin.exists() and origin.read_text() == str(source.resolve()):
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, symlinks=True)
    origin.write_text(str(source.resolve()))
    return dest


def configure(
    tree: Path,
    *,
    cc: str,
    cflags: str = "-O2 -g",
    ldflags: str = "",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT_CONFIGURE,
) -> float:
    """Run ``./configure`` in ``tree`` with CC/CFLAGS/LDFLAGS; return seconds.

    Returns 0.0 without running when ``tree`` is already configured with
    exactly these settings (recorded in a stamp file).  ``env`` is passed to
    configure (e.g. ``BUILDHOOK_STORE`` for a wrapper) but is not part of
    the stamp.  On failure the error includes the tail of ``config.log``.
    """
    tree = Path(tree)
    settings = {"cc": cc, "cflags": cflags, "ldflags": ldflags, "args": list(args)}
    stamp = tree / CONFIGURED_STAMP
    if (tree / "Makefile").exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text()) == settings:
                return 0.0
        except ValueError:
            pass
    stamp.unlink(missing_ok=True)
    if (tree / "Makefile").exists():
        run(["make", "distclean"], cwd=tree, timeout=timeout, check=False)
    argv = ["./configure", f"CC={cc}", f"CFLAGS={cflags}", f"LDFLAGS={ldflags}", *args]
    try:
        result = run(argv, cwd=tree, env=env, timeout=timeout)
    except RealSourceError as err:
        log_tail = _config_log_tail(tree)
        raise RealSourceError(f"configure failed in {tree}: {err}\n--- config.log (tail) ---\n"
                              f"{log_tail}") from None
    stamp.write_text(json.dumps(settings))
    return result.seconds


def _config_log_tail(tree: Path, lines: int = 60) -> str:
    log = tree / "config.log"
    if not log.exists():
        return "(no config.log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def clean(tree: Path, env: Mapping[str, str] | None = None) -> None:
    """``make clean`` in a configured ``tree``."""
    run(["make", "clean"], cwd=Path(tree), env=env, timeout=TIMEOUT_CONFIGURE)


def build(
    tree: Path,
    jobs: int,
    *,
    env: Mapping[str, str] | None = None,
    make_args: Sequence[str] = (),
    timeout: float = TIMEOUT_BUILD,
) -> float:
    """``make -jJOBS`` in ``tree``; return its wall time in seconds."""
    return build_timing(tree, jobs, env=env, make_args=make_args, timeout=timeout).seconds


def build_timing(
    tree: Path,
    jobs: int,
    *,
    env: Mapping[str, str] | None = None,
    make_args: Sequence[str] = (),
    timeout: float = TIMEOUT_BUILD,
) -> CommandResult:
    """Like :func:`build`, with CPU time (``cpu_seconds``) and make's output too."""
    return run(["make", f"-j{jobs}", *make_args], cwd=Path(tree), env=env, timeout=timeout)


def object_files(tree: Path) -> list[Path]:
    """The ``*.o`` files currently in ``tree`` (to cross-check a recorder)."""
    return sorted(Path(tree).rglob("*.o"))


def dpkg_buildflags(tree: Path, *names: str, maint_options: str = "", ldflags_append: str = "") -> dict[str, str]:
    """The named flags as dpkg-buildflags gives them in *tree* (whose path goes into -ffile-prefix-map),
    with debian/rules' DEB_BUILD_MAINT_OPTIONS and DEB_LDFLAGS_MAINT_APPEND."""
    env = dict(os.environ, DEB_BUILD_MAINT_OPTIONS=maint_options, DEB_LDFLAGS_MAINT_APPEND=ldflags_append)
    return {name: subprocess.run(["dpkg-buildflags", "--get", name], cwd=tree, env=env, capture_output=True,
                                 text=True, check=True, timeout=60).stdout.strip() for name in names}


# haproxy 2.6 from bookworm, as debian/rules builds it (its own Makefile, no configure): the
# MAKEARGS that shape the code (install paths and docs left out), and the packager's flags.
HAPROXY_MAKE_ARGS = ("TARGET=linux-glibc", "USE_PCRE2=1", "USE_PCRE2_JIT=1", "USE_OPENSSL=1", "USE_SLZ=1",
                     "USE_LUA=1", "USE_PROMEX=1", "USE_OT=1", "USE_SYSTEMD=1", "LUA_INC=/usr/include/lua5.3",
                     "IGNOREGIT=true")


def haproxy_description() -> str:
    """How haproxy is built, in one line for a report."""
    shaping = [arg for arg in HAPROXY_MAKE_ARGS if arg.startswith(("TARGET=", "USE_"))]
    return "make " + " ".join(shaping) + " with dpkg-buildflags (hardening=+all) as DEBUG_CFLAGS, LDFLAGS"


def haproxy_make_flags(tree: Path, extra_cflags: Sequence[str] = (), extra_ldflags: Sequence[str] = ()) -> list[str]:
    """make's DEBUG_CFLAGS/LDFLAGS/VERSION/SUBVERS as debian/rules passes them, plus any extra flags."""
    flags = dpkg_buildflags(tree, "CFLAGS", "CPPFLAGS", "LDFLAGS", maint_options="hardening=+all",
                            ldflags_append="-Wl,--as-needed")
    version = source_version(tree)
    return [" ".join([f"DEBUG_CFLAGS={flags['CFLAGS']} {flags['CPPFLAGS']}", *extra_cflags]),
            " ".join([f"LDFLAGS={flags['LDFLAGS']}", *extra_ldflags]),
            f"VERSION={version.split('-')[0]}", f"SUBVERS=-{version.split('-', 1)[1]}"]
