"""The differential oracle: a patched old process must behave exactly as the new build.

A *case* is a folder with ``old/`` and ``new/`` C sources (a complete
program each), and optionally ``case.toml`` (build flags, the diff's
expected report, oracle options) and ``input`` (the lines fed to the
program; ``tests/cases/default-input`` otherwise).  The programs read
stdin line by line and answer on stdout (tests/cases/README.md).

For every case the harness

1. builds ``old`` with ``buildhook-cc``, releases it, builds ``new`` over it
   and runs ``buildhook diff`` (the report is checked against case.toml when
   it has an ``[expect]`` table);
2. runs the reference programs on the inputs: a fresh *old* process, and a
   fresh *new* process whose variables that the diff says keep their running
   value (``initial-value-changed``) were first given the old process's
   values, which is the one documented difference between a patched process
   and a restart;
3. for a patch: starts the old program, applies the ``.po`` live while it
   waits for input, feeds the inputs (its answers must equal the new
   program's), reverts, and feeds them again (its answers must equal those of
   a fresh old process that was given the patched process's data first:
   after a revert the old code runs on whatever state the new code left);
   a refused apply must leave the process exactly as it was;
4. for "no change": the old and the new program must answer alike; for a
   refused diff: no ``.po`` is written.

Processes run with address-space randomisation off (``personality``), so
two runs of one binary lay out alike and data can be copied between them.
Every process is stopped by PID, with a timeout, whatever happens.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.elffile import ELFFile

from buildhook.bundled import include_dir

CASES = Path(__file__).resolve().parents[1] / "cases"
DEFAULT_INPUT = CASES / "default-input"
BIN_DIR = Path(sys.executable).parent
BINARY = "prog"
INCLUDE_DIR = include_dir()  # buildhook.h, for the data-change cases
ARCHIVE = "libcase.a"
RELEASE = "old"
DIFF_STATUS = {"patch": 0, "no-change": 3, "refused": 2}
BUILD_TIMEOUT = 120
DIFF_TIMEOUT = 120
APPLY_TIMEOUT = 60
READY_TIMEOUT = 20.0
ADDR_NO_RANDOMIZE = 0x0040000
SYS_READ = 0


class CaseError(Exception):
    """A case folder is malformed, or its program does not build or run as a case must."""


class OracleUnsupported(Exception):
    """The oracle cannot build a reference for this case (say why); not a divergence."""


# -- the case folder ---------------------------------------------------------------


@dataclass
class Expectation:
    """What ``buildhook diff`` must report (case.toml ``[expect]``; the format is in tests/cases/README.md)."""

    outcome: str
    replaced: set[str]
    new_functions: set[str]
    new_data: set[str]
    refused: set[tuple[str, str]]
    warnings: set[tuple[str, str]]
    migrated: set[tuple[str, str]] = field(default_factory=set)  # (file:variable, kind)
    hooks: set[tuple[str, str]] = field(default_factory=set)     # (file:function, kind)


@dataclass
class Case:
    """One case folder: sources, build flags, inputs and (optionally) the expected report."""

    name: str
    folder: Path
    cflags: list[str] = field(default_factory=lambda: ["-O2", "-g"])
    ldflags: list[str] = field(default_factory=list)
    separate_dirs: bool = False
    warnings_fatal: bool = True
    archive: list[str] = field(default_factory=list)  # sources whose objects go into libcase.a
    new_ldflags: list[str] = field(default_factory=list)  # more link flags for the new version only
    inputs: bytes = b""
    expect: Expectation | None = None
    inputs_distinguish: bool = True
    apply_refused: str | None = None  # the applier is expected to refuse the patch, and why
    unsupported: str | None = None    # the oracle cannot judge this case, and why (checked: it says so)
    description: str = ""

    @classmethod
    def load(cls, folder: Path) -> Case:
        for version in ("old", "new"):
            if not _sources(folder / version):
                raise CaseError(f"{folder}: {version}/ holds no .c or .cpp file")
        data: dict = {}
        if (folder / "case.toml").is_file():
            with open(folder / "case.toml", "rb") as stream:
                data = tomllib.load(stream)
        build, oracle = data.get("build", {}), data.get("oracle", {})
        input_file = folder / "input"
        case = cls(
            name=folder.name,
            folder=folder,
            cflags=build.get("cflags", "-O2 -g").split(),
            ldflags=build.get("ldflags", "").split(),
            separate_dirs=build.get("separate_dirs", False),
            warnings_fatal=build.get("warnings_fatal", True),
            archive=list(build.get("archive", [])),
            new_ldflags=build.get("new_ldflags", "").split(),
            inputs=(input_file if input_file.is_file() else DEFAULT_INPUT).read_bytes(),
            inputs_distinguish=oracle.get("inputs_distinguish", True),
            apply_refused=oracle.get("apply_refused"),
            unsupported=oracle.get("unsupported"),
            description=data.get("description", ""),
        )
        if "expect" in data:
            case.expect = _expectation(folder, data["expect"])
        return case


def _expectation(folder: Path, expect: dict) -> Expectation:
    if expect["outcome"] not in DIFF_STATUS:
        raise CaseError(f"{folder}: unknown outcome {expect['outcome']!r}")
    return Expectation(
        outcome=expect["outcome"],
        replaced=set(expect.get("replaced", [])),
        new_functions=set(expect.get("new_functions", [])),
        new_data=set(expect.get("new_data", [])),
        refused={(item["symbol"], item["rule"]) for item in expect.get("refused", [])},
        warnings={(item["symbol"], item["rule"]) for item in expect.get("warnings", [])},
        migrated={(item["symbol"], item["kind"]) for item in expect.get("migrated", [])},
        hooks={(item["symbol"], item["kind"]) for item in expect.get("hooks", [])},
    )


def case_folders(root: Path = CASES) -> list[Path]:
    """Every case folder (one with old/ and new/), in name order."""
    return sorted(path for path in root.iterdir() if (path / "old").is_dir() and (path / "new").is_dir())


# -- building -------------------------------------------------------------------------


def case_env(tmp_path: Path) -> dict[str, str]:
    """Our scripts first on PATH, a private store, no config file, nothing inherited from BUILDHOOK_*."""
    variables = {key: value for key, value in os.environ.items() if not key.startswith("BUILDHOOK_")}
    variables.update(
        PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        BUILDHOOK_STORE=str(tmp_path / "store"),
        BUILDHOOK_CONFIG=str(tmp_path / "none.toml"),
        # The harness runs `buildhook diff` itself; the post-link step runs the same planner.
        BUILDHOOK_PATCH_FROM="off",
        LC_ALL="C",
    )
    return variables


def run(command: list[str | Path], env: dict[str, str], cwd: Path | None = None,
        timeout: float = BUILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded by timeout), capturing its output as text."""
    return subprocess.run([str(word) for word in command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A command, its exit status and its output, for messages."""
    return f"{result.args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def _check(result: subprocess.CompletedProcess[str], quiet: bool) -> None:
    if result.returncode != 0:
        raise CaseError(describe(result))
    if quiet and result.stderr.strip():
        raise CaseError(f"unexpected output on stderr (a warning?):\n{describe(result)}")


def _sources(folder: Path) -> list[Path]:
    """A version's C and C++ sources, in file-name order."""
    return sorted([*folder.glob("*.c"), *folder.glob("*.cpp")])


def build_version(case: Case, sources: Path, folder: Path, env: dict[str, str],
                  extra_ldflags: tuple[str, ...] | list[str] = ()) -> Path:
    """Copy a version's sources into *folder*, compile each .c (buildhook-cc) or .cpp (buildhook-c++) on
    its own, link them (with buildhook-c++ when there is C++); return the binary.

    Relative paths, so ``__FILE__`` is the base name; objects in file-name order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stale in [*_sources(folder), *folder.glob("*.h"), *folder.glob("*.o")]:
        stale.unlink()
    for source in [*_sources(sources), *sources.glob("*.h")]:
        shutil.copy2(source, folder / source.name)
    objects, members = [], []
    for source in _sources(folder):
        obj = source.with_suffix(".o").name
        compiler = "buildhook-c++" if source.suffix == ".cpp" else "buildhook-cc"
        _check(run([compiler, *case.cflags, "-Wall", "-I", str(INCLUDE_DIR), "-c", source.name, "-o", obj], env,
                   folder),
               quiet=case.warnings_fatal)
        (members if source.name in case.archive else objects).append(obj)
    if members:
        (folder / ARCHIVE).unlink(missing_ok=True)
        _check(run(["ar", "rcs", ARCHIVE, *members], env, folder), quiet=True)
        objects.append(ARCHIVE)
    linker = "buildhook-c++" if any(source.suffix == ".cpp" for source in _sources(folder)) else "buildhook-cc"
    _check(run([linker, *case.ldflags, *objects, "-o", BINARY, "-pthread", *extra_ldflags], env, folder),
           quiet=case.warnings_fatal)
    return folder / BINARY


@dataclass
class DiffReport:
    """What ``buildhook diff --json`` said."""

    status: int
    report: dict
    transcript: str

    @property
    def outcome(self) -> str:
        return str(self.report.get("outcome"))


@dataclass
class BuiltCase:
    """Both versions built, and what the diff made of them."""

    case: Case
    old_binary: Path
    new_binary: Path
    diff: DiffReport
    patch: Path | None
    env: dict[str, str]


def build_case(case: Case, tmp_path: Path) -> BuiltCase:
    """Build old (kept aside as old-prog, the release) and new, then diff them."""
    env = case_env(tmp_path)
    old_dir = tmp_path / "work"
    new_dir = tmp_path / "work2" if case.separate_dirs else old_dir
    old_build = build_version(case, case.folder / "old", old_dir, env)
    _check(run(["buildhook", "release", RELEASE], env, old_dir), quiet=False)
    old_binary = tmp_path / "old-prog"
    shutil.copy2(old_build, old_binary)
    new_binary = build_version(case, case.folder / "new", new_dir, env, case.new_ldflags)
    patch = tmp_path / "case.po"
    result = run(["buildhook", "diff", "--from", RELEASE, new_binary, "-o", patch, "--json"], env,
                 new_binary.parent, timeout=DIFF_TIMEOUT)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        raise CaseError(f"`buildhook diff --json` did not print one JSON object\n{describe(result)}")
    return BuiltCase(case, old_binary, new_binary, DiffReport(result.returncode, report, describe(result)),
                     patch if patch.is_file() else None, env)


# -- the diff report --------------------------------------------------------------


def _symbols(entries: list[dict]) -> set[str]:
    return {f"{entry['file']}:{entry['name']}" for entry in entries}


def _reasons(entries: list[dict]) -> set[tuple[str, str]]:
    named = set()
    for entry in entries:
        symbol = entry["symbol"]
        if not symbol.startswith(("struct ", "union ", "enum ", "typedef ")):
            symbol = f"{entry['file']}:{symbol}"
        named.add((symbol, entry["rule"]))
    return named


def report_mismatches(built: BuiltCase) -> list[str]:
    """How the diff's report differs from case.toml's ``[expect]`` (empty: as expected)."""
    expect = built.case.expect
    if expect is None:
        return []
    report = built.diff.report
    found = {
        "outcome": report.get("outcome"),
        "exit status": built.diff.status,
        "replaced": _symbols(report.get("replaced", [])),
        "new_functions": _symbols(report.get("new_functions", [])),
        "new_data": _symbols(report.get("new_data", [])),
        "refused": _reasons(report.get("refused", [])),
        "warnings": _reasons(report.get("warnings", [])),
        "migrated": {(f"{m['file']}:{m['name']}", m["kind"]) for m in report.get("migrated", [])},
        "hooks": {(f"{h['file']}:{h['name']}", h["kind"]) for h in report.get("hooks", [])},
    }
    wanted = {
        "outcome": expect.outcome, "exit status": DIFF_STATUS[expect.outcome], "replaced": expect.replaced,
        "new_functions": expect.new_functions, "new_data": expect.new_data, "refused": expect.refused,
        "warnings": expect.warnings, "migrated": expect.migrated, "hooks": expect.hooks,
    }
    return [f"{key}: expected {wanted[key]!r}, diff said {found[key]!r}" for key in wanted if wanted[key] != found[key]]


# -- running a program --------------------------------------------------------------


def _no_aslr() -> None:
    ctypes.CDLL(None, use_errno=True).personality(ADDR_NO_RANDOMIZE)


def _pipe_bytes(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD works from either end)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@dataclass
class Answer:
    """What a program wrote for one batch of input (or at its end: its exit status too)."""

    stdout: bytes
    stderr: bytes
    status: int | None = None

    def describe(self) -> str:
        status = "" if self.status is None else f" exit status {self.status}" + (
            f" ({signal.Signals(-self.status).name})" if self.status < 0 else "")
        return f"stdout {self.stdout!r} stderr {self.stderr!r}{status}"


class CaseProcess:
    """A case program on pipes: fed a batch at a time, answered once it waits for input again."""

    def __init__(self, binary: Path) -> None:
        self.process = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, preexec_fn=_no_aslr, cwd=binary.parent)
        self.pid = self.process.pid
        for stream in (self.process.stdout, self.process.stderr):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
        self._out = bytearray()
        self._err = bytearray()
        self.wait_ready()

    def __enter__(self) -> CaseProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def _drain(self) -> None:
        for stream, buffer in ((self.process.stdout, self._out), (self.process.stderr, self._err)):
            assert stream is not None
            while True:
                try:
                    chunk = os.read(stream.fileno(), 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                buffer += chunk

    def _waiting_for_input(self) -> bool:
        """Blocked in read(0) with nothing left in the stdin pipe: every line so far is answered."""
        try:
            words = Path(f"/proc/{self.pid}/syscall").read_text().split()
        except OSError:
            return False
        if not words or words[0] != str(SYS_READ) or int(words[1], 16) != 0:
            return False
        assert self.process.stdin is not None
        return _pipe_bytes(self.process.stdin.fileno()) == 0

    def wait_ready(self) -> None:
        """Until the program waits for input (or has exited); its output so far is drained."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            self._drain()
            if self.process.poll() is not None:
                return
            if self._waiting_for_input():
                self._drain()
                assert self.process.stdout is not None and self.process.stderr is not None
                if _pipe_bytes(self.process.stdout.fileno()) == 0 and _pipe_bytes(self.process.stderr.fileno()) == 0:
                    return
            select.select([self.process.stdout, self.process.stderr], [], [], 0.002)
        raise CaseError(f"process {self.pid} did not come back to reading its input within {READY_TIMEOUT:g} s")

    def take(self) -> Answer:
        """What the program wrote since the last take."""
        answer = Answer(bytes(self._out), bytes(self._err))
        self._out.clear()
        self._err.clear()
        return answer

    def feed(self, data: bytes) -> Answer:
        """Write a batch of lines and return what the program answered to it."""
        assert self.process.stdin is not None
        if self.process.poll() is None:
            try:
                self.process.stdin.write(data)
                self.process.stdin.flush()
            except BrokenPipeError:
                pass
            self.wait_ready()
        self._drain()
        return self.take()

    def finish(self) -> Answer:
        """Close stdin and wait for the program to end; its last output and exit status."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            status = self.process.wait(timeout=READY_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            raise CaseError(f"process {self.pid} did not exit within {READY_TIMEOUT:g} s of end of input")
        self._drain()
        answer = self.take()
        answer.status = status
        return answer

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def run_program(binary: Path, inputs: bytes, prepare: Callable[[CaseProcess], None] | None = None) -> Answer:
    """A fresh process of *binary*: *prepare(process)* once it waits for input, then the inputs, then the end."""
    with CaseProcess(binary) as process:
        if prepare is not None:
            prepare(process)
        return _merge(process.feed(inputs), process.finish())


def _merge(last: Answer, end: Answer) -> Answer:
    return Answer(last.stdout + end.stdout, last.stderr + end.stderr, end.status)


# -- memory of a process ---------------------------------------------------------------


def read_memory(pid: int, address: int, size: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(address)
        return mem.read(size)


def write_memory(pid: int, address: int, data: bytes) -> None:
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(address)
        mem.write(data)


def load_bias(pid: int, binary: Path) -> int:
    """Where the binary's first byte is mapped in *pid* (0 for a non-PIE executable)."""
    with open(binary, "rb") as stream:
        elf = ELFFile(stream)
        first = min(seg.header.p_vaddr - seg.header.p_offset for seg in elf.iter_segments()
                    if seg.header.p_type == "PT_LOAD")
        pie = elf.header.e_type == "ET_DYN"
    if not pie:
        return 0
    real = os.path.realpath(binary)
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == real and int(fields[2], 16) == 0:
            return int(fields[0].split("-")[0], 16) - first
    raise CaseError(f"{binary} is not mapped in process {pid}")


@dataclass(frozen=True)
class Variable:
    """A variable of a linked program: link-time address and size."""

    address: int
    size: int
    has_pointers: bool


def find_variable(binary: Path, file: str, name: str) -> Variable:
    """The variable *name* of source *file* (a local one under its STT_FILE entry, else a global).

    A static local is named as in the new object (``calls.2``); gcc may have
    numbered it differently in the other build, so when the exact name is not
    there, the only one of the same base name in that file is it.
    """
    base = name.rsplit(".", 1)[0] if name.rsplit(".", 1)[-1].isdigit() else None
    with open(binary, "rb") as stream:
        elf = ELFFile(stream)
        symtab = elf.get_section_by_name(".symtab")
        current_file = None
        found = None
        same_base = []
        for symbol in symtab.iter_symbols():
            kind, bind = symbol.entry.st_info.type, symbol.entry.st_info.bind
            if kind == "STT_FILE":
                current_file = symbol.name
                continue
            if kind not in ("STT_OBJECT", "STT_TLS"):
                continue
            if bind == "STB_LOCAL" and current_file != file:
                continue
            if base is not None and bind == "STB_LOCAL" and symbol.name.rsplit(".", 1)[0] == base:
                same_base.append(symbol)
            if symbol.name != name:
                continue
            found = symbol
            if bind == "STB_LOCAL":
                break
        if found is None and len(same_base) == 1:
            found = same_base[0]
        if found is None:
            raise CaseError(f"{binary} has no variable {file}:{name}")
        address, size = found.entry.st_value, found.entry.st_size
        return Variable(address, size, _holds_pointers(binary.parent / (Path(file).stem + ".o"), found.name))


def _holds_pointers(obj_path: Path, name: str) -> bool:
    """Whether the object that defines a variable relocates any word of it (a pointer); True if unknown."""
    from buildhook.elf.objfile import ObjectFile

    try:
        obj = ObjectFile(obj_path.read_bytes(), str(obj_path))
    except (OSError, ValueError):
        return True
    for symbol in obj.symbols:
        if symbol.name == name and isinstance(symbol.section, int):
            return any(symbol.value <= rel.offset < symbol.value + symbol.size
                       for rel in obj.sections[symbol.section].relocations)
    return True


def writable_data_ranges(binary: Path) -> list[tuple[int, int]]:
    """(link-time address, size) of the program's own writable data that is writable at run time.

    Every SHF_WRITE|SHF_ALLOC section that the dynamic linker does not make
    read-only (``PT_GNU_RELRO``) and that is not the linker's own (GOT, dynamic).
    """
    with open(binary, "rb") as stream:
        elf = ELFFile(stream)
        relro = [(seg.header.p_vaddr, seg.header.p_vaddr + seg.header.p_memsz) for seg in elf.iter_segments()
                 if seg.header.p_type == "PT_GNU_RELRO"]
        ranges = []
        for section in elf.iter_sections():
            header = section.header
            if not (header.sh_flags & 0x3 == 0x3) or header.sh_flags & 0x400 or header.sh_size == 0:
                continue
            if section.name in (".got", ".got.plt", ".dynamic"):
                continue
            if any(start <= header.sh_addr < end for start, end in relro):
                continue
            ranges.append((header.sh_addr, header.sh_size))
        return ranges


# -- the oracle -----------------------------------------------------------------------


@dataclass
class Verdict:
    """What the oracle saw: each divergence is one sentence (no divergence: the case holds)."""

    divergences: list[str] = field(default_factory=list)
    applied: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.divergences


def _kept_variables(built: BuiltCase) -> list[tuple[str, str]]:
    """(file, name) of the variables whose running value a patched process keeps, per the diff."""
    return [(str(w["file"]), str(w["symbol"])) for w in built.diff.report.get("warnings", [])
            if w.get("rule") == "initial-value-changed"]


def _copy_kept_variables(built: BuiltCase, source_pid: int, target: CaseProcess) -> None:
    """Give a fresh new process the running values the patched process keeps."""
    source_bias = load_bias(source_pid, built.old_binary)
    target_bias = load_bias(target.pid, built.new_binary)
    for file, name in _kept_variables(built):
        old = find_variable(built.old_binary, file, name)
        new = find_variable(built.new_binary, file, name)
        if new.has_pointers:
            raise OracleUnsupported(f"{file}:{name} keeps its running value and may hold pointers; "
                                    "the new program cannot be given that value")
        value = read_memory(source_pid, old.address + source_bias, min(old.size, new.size))
        write_memory(target.pid, new.address + target_bias, value)


def _copy_program_data(binary: Path, source_pid: int, target: CaseProcess) -> None:
    """Copy the program's writable data from one process of *binary* to another (same layout: no ASLR)."""
    source_bias = load_bias(source_pid, binary)
    target_bias = load_bias(target.pid, binary)
    if source_bias != target_bias:
        raise OracleUnsupported("two processes of one binary were laid out differently")
    for address, size in writable_data_ranges(binary):
        write_memory(target.pid, address + target_bias, read_memory(source_pid, address + source_bias, size))


def _text_snapshot(pid: int, binary: Path) -> tuple[str, bytes]:
    """The process's mappings and the bytes of the program's code, to tell "exactly as it was"."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    real = os.path.realpath(binary)
    code = b""
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == real and "x" in fields[1]:
            start, end = (int(part, 16) for part in fields[0].split("-"))
            code += read_memory(pid, start, end - start)
    return maps, code


def _buildhook(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(["buildhook", *args], env, timeout=APPLY_TIMEOUT)


def _compare(verdict: Verdict, what: str, got: Answer, wanted: Answer, reference: str) -> None:
    if got.stdout != wanted.stdout or got.stderr != wanted.stderr or got.status != wanted.status:
        verdict.divergences.append(f"{what}: {got.describe()}; {reference}: {wanted.describe()}")


def check_behaviour(built: BuiltCase) -> Verdict:
    """Run the case's programs and compare them (see the module docstring)."""
    verdict = Verdict()
    old_answer = run_program(built.old_binary, built.case.inputs)
    if old_answer.status not in (None, 0):
        raise CaseError(f"the old program fails on the inputs: {old_answer.describe()}")
    outcome = built.diff.outcome
    if outcome == "refused":
        if built.patch is not None:
            verdict.divergences.append(f"diff refused but wrote {built.patch}")
    elif outcome == "no-change":
        _check_no_change(built, old_answer, verdict)
    elif outcome == "patch" and built.patch is not None:
        _check_patch(built, old_answer, verdict)
    else:
        raise CaseError(f"diff gave {outcome!r} without a .po\n{built.diff.transcript}")
    return verdict


def _check_no_change(built: BuiltCase, old_answer: Answer, verdict: Verdict) -> None:
    """No change means the new program answers as the old one (given the running values kept)."""
    with CaseProcess(built.old_binary) as old:
        new_answer = run_program(built.new_binary, built.case.inputs,
                                 lambda process: _copy_kept_variables(built, old.pid, process))
    _compare(verdict, "diff said no change, but the new program", new_answer, old_answer, "the old one")


def _check_patch(built: BuiltCase, old_answer: Answer, verdict: Verdict) -> None:
    """Apply to a waiting old process, feed it, compare with the new program; then revert and compare again."""
    inputs = built.case.inputs
    with CaseProcess(built.old_binary) as patched:
        new_answer = run_program(built.new_binary, inputs,
                                 lambda process: _copy_kept_variables(built, patched.pid, process))
        if new_answer.status not in (None, 0):
            raise CaseError(f"the new program fails on the inputs: {new_answer.describe()}")
        if built.case.expect is not None and built.case.inputs_distinguish and new_answer == old_answer:
            raise CaseError("the inputs do not tell the old program from the new one: the oracle would "
                            "not see a patch that does nothing (change the input, or set "
                            "[oracle] inputs_distinguish = false with a reason)")
        before = _text_snapshot(patched.pid, built.old_binary)
        result = _buildhook(["apply", str(built.patch), "--pid", str(patched.pid), "--json"], built.env)
        if result.returncode == 2:
            _check_refused_apply(built, patched, before, result, old_answer, verdict)
            return
        if result.returncode != 0:
            verdict.divergences.append(f"apply failed (exit {result.returncode}): {result.stderr.strip()}")
            return
        verdict.applied = True
        applied = patched.feed(inputs)
        _compare(verdict, "patched process", _with_status(applied, patched), _final(new_answer), "the new program")
        if patched.alive:
            _check_revert(built, patched, before, verdict)


def _check_refused_apply(built: BuiltCase, patched: CaseProcess, before: tuple[str, bytes],
                         result: subprocess.CompletedProcess[str], old_answer: Answer, verdict: Verdict) -> None:
    """A refused apply leaves the process exactly as it was; the diff should not have written that patch."""
    reason = result.stderr.strip()
    verdict.notes.append(f"apply refused: {reason}")
    if built.case.apply_refused is None:
        verdict.divergences.append(f"the applier refused the patch diff wrote: {reason}")
    if _text_snapshot(patched.pid, built.old_binary) != before:
        verdict.divergences.append(f"a refused apply changed the process: {reason}")
    answer = _merge(patched.feed(built.case.inputs), patched.finish())
    _compare(verdict, "after a refused apply the process", answer, old_answer, "the old program")


def _check_revert(built: BuiltCase, patched: CaseProcess, before: tuple[str, bytes], verdict: Verdict) -> None:
    """After revert: the old code, byte for byte, running on whatever state the new code left."""
    result = _buildhook(["revert", "--pid", str(patched.pid), "--json"], built.env)
    if result.returncode != 0:
        verdict.divergences.append(f"revert failed (exit {result.returncode}): {result.stderr.strip()}")
        return
    if _text_snapshot(patched.pid, built.old_binary)[1] != before[1]:
        verdict.divergences.append("after revert the program's code is not what it was")
    reference = run_program(built.old_binary, built.case.inputs,
                            lambda process: _copy_program_data(built.old_binary, patched.pid, process))
    after = _merge(patched.feed(built.case.inputs), patched.finish())
    _compare(verdict, "reverted process", after, reference, "the old program given the same data")
    if after.status != 0:  # the same crash in the reference means the state itself is broken
        verdict.divergences.append(f"the reverted process did not end well: {after.describe()}")


def _with_status(answer: Answer, process: CaseProcess) -> Answer:
    """A batch's answer, with the exit status if the process died on it (a crash is part of behaviour)."""
    if process.alive:
        return Answer(answer.stdout, answer.stderr, None)
    process._drain()
    late = process.take()
    return Answer(answer.stdout + late.stdout, answer.stderr + late.stderr, process.process.wait(timeout=10))


def _final(answer: Answer) -> Answer:
    """A reference answer compared with a batch that is not the last: its exit status does not apply."""
    return Answer(answer.stdout, answer.stderr, None if answer.status == 0 else answer.status)
