"""The native buildhook-cc (buildhook/wrap/shim.c) against the Python wrapper it stands in for.

The shim handles plain compiles itself and hands every other command to
``buildhook-cc-python``.  Each case here runs the same command through both,
in the same folder with a fresh store, and compares what a build relies on:
the exact words the compiler received (and the BUILDHOOK_DEPTH it saw), exit
status, stdout, stderr, the files written, the journal lines (minus entry id
and time) and the blobs.  The compiler is real gcc behind a logging script
that also notes which program started it, so every case also checks that
the shim took the path it should: a case it hands over proves nothing about
the shim's own code, and a plain compile handed over would be slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR, compile_records, run

GOOD = "int twice(int x) { return 2 * x; }\nint main(void) { return twice(0); }\n"
CHATTY = ('#include <stdio.h>\n__attribute__((noinline)) int twice(int x) { printf("%d\\n", x); return 2 * x; }\n'
          "int main(void) { return twice(0); }\n")
BAD = "int main(void) { return undeclared_thing + ; }\n"
NATIVE = BIN_DIR / "buildhook-cc"
PYTHON = BIN_DIR / "buildhook-cc-python"

LOGGING_COMPILER = r"""#!/bin/sh
# Notes the arguments, the depth and the parent program, then runs the real compiler
# (or, with FAKE_OBJECT_SIZE set, writes that many bytes to the -o file instead).
{
  printf 'parent=%s\n' "$(readlink /proc/$PPID/exe)"
  printf 'depth=%s\n' "$BUILDHOOK_DEPTH"
  for word in "$@"; do printf 'word=%s\n' "$word"; done
  printf 'end\n'
} >> "$COMPILER_LOG"
if [ -n "$FAKE_OBJECT_SIZE" ]; then
  while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
  head -c "$FAKE_OBJECT_SIZE" /dev/urandom > "$out"
  exit 0
fi
case "$0" in *g++) exec g++ "$@" ;; *) exec gcc "$@" ;; esac
"""


def native_shim_installed() -> bool:
    return NATIVE.is_file() and NATIVE.read_bytes()[:4] == b"\x7fELF"


pytestmark = pytest.mark.skipif(not native_shim_installed(),
                                reason="the native buildhook-cc was not built (no C compiler at install)")


@pytest.fixture
def work(tmp_path: Path, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "good.c").write_text(GOOD)
    (folder / "bad.c").write_text(BAD)
    (folder / "util.c").write_text("int util(void) { return 7; }\n")
    (folder / "uses_util.c").write_text("int util(void);\nint main(void) { return util() - 7; }\n")
    (folder / "noext").write_text(GOOD)
    (folder / "hello.cc").write_text("#include <string>\nint size() { return std::string(\"x\").size(); }\n")
    (folder / "out").mkdir()
    (folder / "opts.rsp").write_text("-O2 -c good.c\n")
    run(["gcc", "-c", "good.c", "util.c"], env, cwd=folder)
    run(["ar", "rcs", "libutil.a", "util.o"], env, cwd=folder)
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("x86_64-log-gcc", "x86_64-log-g++"):
        (tools / name).write_text(LOGGING_COMPILER)
        (tools / name).chmod(0o755)
    env.update(BUILDHOOK_CC=str(tools / "x86_64-log-gcc"), BUILDHOOK_CXX=str(tools / "x86_64-log-g++"),
               COMPILER_LOG=str(tmp_path / "compiler.log"))
    return folder, env


def _calls(log: Path) -> list[dict[str, object]]:
    """The compiler runs the log shows: parent program, depth, words."""
    calls: list[dict[str, object]] = []
    if not log.exists():
        return calls
    current: dict[str, object] = {"words": []}
    for line in log.read_text(errors="surrogateescape").split("\n"):
        key, _, value = line.partition("=")
        if line == "end":
            calls.append(current)
            current = {"words": []}
        elif key == "word":  # a link's scratch folder is named at random
            current["words"].append(re.sub(r"/buildhook-[A-Za-z0-9_]{6,8}/", "/buildhook-SCRATCH/", value))  # type: ignore[union-attr]
        else:
            current[key] = value
    return calls


def _journal(store: Path) -> list[list[object]]:
    path = store / "compiles.journal"
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    return [json.loads(line)[2:] for line in text.split("\n") if line]


def _blobs(store: Path) -> set[str]:
    objects = store / "objects"
    return {p.parent.name + p.name for p in objects.glob("??/*")} if objects.exists() else set()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _links(env: dict[str, str]) -> list[dict[str, object]]:
    """``buildhook builds --json`` (which folds the journals first), without ids and times."""
    if not Path(env["BUILDHOOK_STORE"]).exists():
        return []
    links = json.loads(run([str(BIN_DIR / "buildhook"), "builds", "--json"], env).stdout)
    for link in links:
        link.pop("id"), link.pop("time")
    return links


def _run_one(program: list[str], args: list[str], folder: Path, env: dict[str, str], stdin: bytes | None,
             extra_env: dict[str, str], links: bool) -> dict[str, object]:
    before = _files(folder)
    log = Path(env["COMPILER_LOG"])
    store = Path(env["BUILDHOOK_STORE"])
    for stale in (log, store):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    result = run([*program, *args], {**env, **extra_env}, cwd=folder, check=False, stdin=stdin)
    after = _files(folder)
    outcome = {
        "status": result.returncode, "stdout": result.stdout, "stderr": result.stderr,
        "calls": _calls(log), "journal": _journal(store), "blobs": _blobs(store),
        "written": {name: hashlib.sha256(data).hexdigest() for name, data in after.items() if before.get(name) != data},
        "removed": sorted(set(before) - set(after)),
    }
    if links:
        outcome["links"] = _links({**env, **extra_env})
    for name in outcome["written"]:  # type: ignore[union-attr]  # the next run starts from the same files
        if name in before:
            (folder / name).write_bytes(before[name])
        else:
            (folder / name).unlink()
    return outcome


def compare(args: list[str], folder: Path, env: dict[str, str], *, native: bool, stdin: bytes | None = None,
            program: str = "buildhook-cc", extra_env: dict[str, str] | None = None,
            links: bool = False) -> dict[str, object]:
    """Run *args* through the shim and through the Python wrapper; assert the same outcome.

    *native*: whether the shim must handle the command itself (else it must hand it over).
    *links*: compare the link records too (``buildhook builds``) instead of the blobs, which
    differ by design: the shim keeps each archive whole until the fold.
    """
    extra = extra_env or {}
    shim = _run_one([str(BIN_DIR / program)], args, folder, env, stdin, extra, links)
    parents = {call["parent"] for call in shim["calls"]}  # type: ignore[union-attr]
    if shim["calls"]:
        assert parents == ({os.path.realpath(BIN_DIR / program)} if native else {os.path.realpath(_python())}), parents
    else:
        assert not native, "the shim did not run the compiler"
    header = next((words[i + 1] for call in shim["calls"] for words in [call["words"]]  # type: ignore[index]
                   for i, word in enumerate(words) if word == "-idirafter"), None)
    handed = {"BUILDHOOK_SHIM_PROGRAM": program, "BUILDHOOK_SHIM_LANGUAGE": "c++" if "c++" in program else "c"}
    if header:
        handed["BUILDHOOK_SHIM_HEADER"] = header
    python = _run_one([str(PYTHON)], args, folder, env, stdin, {**extra, **handed}, links)
    for call in python["calls"]:  # type: ignore[union-attr]
        call.pop("parent")
    for call in shim["calls"]:  # type: ignore[union-attr]
        call.pop("parent")
    if not native or links:  # (handed over: the same Python code ran twice, and a map names its scratch folder)
        shim.pop("blobs"), python.pop("blobs")
    for key in python:
        assert shim[key] == python[key], f"{key} differs: native {shim[key]!r} != python {python[key]!r}"
    return shim


def _python() -> str:
    return os.path.realpath(Path(PYTHON.read_text().splitlines()[0][2:].strip()))


FAST_CASES = [
    ["-O2", "-c", "good.c"],
    ["-c", "good.c", "-o", "out/g.o"],
    ["-c", "-o", "out/joined.o", "good.c", "-Wall", "-g"],
    ["-c", "good.c", "util.c"],
    ["-c", "good.c", "-ooutjoined.o"],
    ["-c", "-x", "c", "noext", "-o", "n.o"],
    ["-c", "-xc", "noext", "-x", "none", "util.c"],
    ["-MD", "-MF", "dep.d", "-MT", "target", "-c", "good.c"],
    ["-I", "-c", "-c", "good.c"],  # the first -c is -I's argument
    ["-c", "good.c", "-o", "conftest.o"],
    ["-c", "good.c", "-o", "cmTC_1234/x.o"],
    ["-c", "good.c", "-o", "/dev/null"],
    ["-c", "bad.c"],
    ["-c", "missing.c"],
    ["-c", "./out/../good.c", "-o", "./out//../rel.o"],
    ["-fno-lto", "-c", "good.c"],
    ["-flto", "-fno-lto", "-c", "good.c"],
]


@pytest.mark.parametrize("args", FAST_CASES, ids=" ".join)
def test_plain_compiles_are_native_and_as_the_python_wrapper(args: list[str], work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    compare(args, folder, env, native=True)


LINK_CASES = [
    ["good.o", "util.o", "-o", "prog"],
    ["good.o", "-o", "out/prog", "-L.", "-lutil"],
    ["good.o", "libutil.a"],
    ["-Xlinker", "--build-id=sha1", "good.o", "-o", "prog"],
    ["-Wl,-O1,--build-id=md5", "good.o", "-o", "prog"],
    ["-shared", "-fPIC", "util.o", "-o", "libu.so"],
    ["good.o", "-o", "conftest"],
    ["good.o", "-o", "/dev/null"],
    ["missing.o", "-o", "prog"],
]


@pytest.mark.parametrize("args", LINK_CASES, ids=" ".join)
def test_links_are_native_and_recorded_as_by_the_python_wrapper(args: list[str],
                                                                 work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    compare(args, folder, env, native=True, links=True)


@pytest.mark.parametrize("setting", [{"BUILDHOOK_LINK_MAP": "0"}, {"BUILDHOOK_BUILD_ID": "no"},
                                     {"BUILDHOOK_RECORD": "off"}, {"BUILDHOOK_PATCH_FROM": " OFF "}])
def test_link_settings(setting: dict[str, str], work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    compare(["good.o", "util.o", "-o", "prog"], folder, env, native=True, links=True, extra_env=setting)


def test_compiled_and_linked_through_each_wrapper_alike(work: tuple[Path, dict[str, str]]) -> None:
    """Sources come from the compile records, archive members from the archive as it was linked."""
    folder, env = work
    results = []
    for wrapper in (NATIVE, PYTHON):
        shutil.rmtree(env["BUILDHOOK_STORE"], ignore_errors=True)
        run([str(wrapper), "-O2", "-c", "uses_util.c", "util.c"], env, cwd=folder)
        run(["ar", "rcs", "libmine.a", "util.o"], env, cwd=folder)
        run([str(wrapper), "uses_util.o", "-L.", "-lmine", "-o", "prog"], env, cwd=folder)
        (folder / "util.c").write_text("int util(void) { return 8; }\n")  # rebuilt before the fold:
        run(["gcc", "-c", "util.c"], env, cwd=folder)                       # the record keeps what was linked
        run(["ar", "rcs", "libmine.a", "util.o"], env, cwd=folder)
        (folder / "util.c").write_text("int util(void) { return 7; }\n")
        results.append(_links(env))
        (folder / "libmine.a").unlink()
    assert results[0] == results[1]
    [link] = results[0]
    assert [(Path(o["path"]).name, Path(o["source"]).name) for o in link["objects"]] == [  # type: ignore[index]
        ("uses_util.o", "uses_util.c"), ("libmine.a(util.o)", "util.c")]


def test_a_released_binary_is_linked_by_the_python_wrapper_for_its_patch(work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    log = Path(env["COMPILER_LOG"])
    (folder / "chatty.c").write_text(CHATTY)
    run([str(NATIVE), "-O2", "-c", "chatty.c"], env, cwd=folder)
    run([str(NATIVE), "chatty.o", "-o", "prog"], env, cwd=folder)
    run([str(NATIVE), "chatty.o", "-o", "other"], env, cwd=folder)
    run([str(BIN_DIR / "buildhook"), "release", "v1", str(folder / "prog")], env)
    assert (Path(env["BUILDHOOK_STORE"]) / "released.list").read_text() == f"{folder / 'prog'}\n"
    (folder / "chatty.c").write_text(CHATTY.replace("2 * x", "3 * x"))
    log.unlink()
    run([str(NATIVE), "-O2", "-c", "chatty.c"], env, cwd=folder)
    patched = run([str(NATIVE), "chatty.o", "-o", "prog"], env, cwd=folder)
    run([str(NATIVE), "chatty.o", "-o", "other"], env, cwd=folder)
    assert patched.stderr == b""
    parents = [call["parent"] for call in _calls(log)]
    assert parents == [os.path.realpath(NATIVE), _python(), os.path.realpath(NATIVE)]
    assert (folder / "prog.from-v1.po").is_file()


def test_a_store_from_before_released_list_hands_links_over_until_it_is_written(
        work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    store = Path(env["BUILDHOOK_STORE"])
    run([str(NATIVE), "good.o", "-o", "prog"], env, cwd=folder)
    run([str(BIN_DIR / "buildhook"), "release", "v1"], env)
    (store / "released.list").unlink()  # as a store written by an older buildhook
    log = Path(env["COMPILER_LOG"])
    log.unlink()
    run([str(NATIVE), "good.o", "-o", "prog"], env, cwd=folder)
    run([str(NATIVE), "good.o", "-o", "other"], env, cwd=folder)
    assert [call["parent"] for call in _calls(log)] == [_python(), os.path.realpath(NATIVE)]


HANDED_OVER = [
    ["-S", "good.c"],
    ["-E", "good.c"],
    ["-c", "-E", "good.c"],
    ["good.c", "-o", "prog"],
    ["good.c"],
    ["good.c", "util.o", "-o", "prog"],
    ["good.o", "-Wl,-Map=my.map", "-o", "prog"],
    ["good.o", "-Xlinker", "-Map", "-Xlinker", "my.map", "-o", "prog"],
    ["-fipa-icf", "good.o", "-o", "prog"],
    ["-c", "@opts.rsp"],
    ["-c", "good.c", "-MF", "@dep"],
    ["-flto", "-c", "good.c"],
    ["-flto=auto", "-c", "good.c"],
    ["-fipa-icf", "-O2", "-c", "good.c"],
    ["--version"],
    ["-c"],
    ["-c", "-print-prog-name=ld", "good.c"],
    ["-r", "-c", "good.c"],
]


@pytest.mark.parametrize("args", HANDED_OVER, ids=" ".join)
def test_other_commands_are_handed_to_the_python_wrapper(args: list[str], work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    compare(args, folder, env, native=False)


@pytest.mark.parametrize("setting, native", [
    ({"BUILDHOOK_FUNCTION_SECTIONS": "0"}, True),
    ({"BUILDHOOK_DATA_SECTIONS": " No "}, True),
    ({"BUILDHOOK_LIVE_PATCHING": "off", "BUILDHOOK_HEADER": "FALSE"}, True),
    ({"BUILDHOOK_RECORD": "0"}, True),
    ({"BUILDHOOK_RECORD": ""}, True),
    ({"BUILDHOOK_ON_ERROR": "plain"}, True),
    ({"BUILDHOOK_SKIP_OUTPUTS": " good* , x"}, True),
    ({"BUILDHOOK_SKIP_OUTPUTS": "*o*d*"}, True),
    ({"BUILDHOOK_SKIP_OUTPUTS": "go?d.o"}, False),
    ({"BUILDHOOK_BUILD_ID": "maybe"}, False),
    ({"BUILDHOOK_ON_ERROR": "sometimes"}, False),
    ({"BUILDHOOK_DISABLE": "yes"}, False),
    ({"BUILDHOOK_DEPTH": "1"}, False),
    ({"BUILDHOOK_STORE": "~/bh-store"}, True),
])
def test_settings_are_read_as_the_python_wrapper_reads_them(setting: dict[str, str], native: bool,
                                                            work: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, env = work
    env["HOME"] = str(tmp_path / "home")
    if setting.get("BUILDHOOK_STORE", "").startswith("~"):
        env["BUILDHOOK_STORE"] = setting.pop("BUILDHOOK_STORE")
        compare(["-c", "good.c"], folder, env, native=native)
        journal = (tmp_path / "home" / "bh-store" / "compiles.journal").read_text().splitlines()
        assert len(journal) == 2, "both wrappers recorded into ~/bh-store"
        return
    compare(["-fipa-icf", "-c", "good.c"] if "BUILDHOOK_LIVE_PATCHING" in setting else ["-c", "good.c"],
            folder, env, native=native, extra_env=setting)


def test_a_config_file_is_read_by_the_python_wrapper(work: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, env = work
    config = tmp_path / "config.toml"
    config.write_text("function_sections = false\n")
    env["BUILDHOOK_CONFIG"] = str(config)
    [call] = compare(["-c", "good.c"], folder, env, native=False)["calls"]  # type: ignore[misc]
    assert "-ffunction-sections" not in call["words"]


def test_launcher_forms_and_a_compiler_command(work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    compiler = env.pop("BUILDHOOK_CC")
    compare([compiler, "-c", "good.c"], folder, env, native=True)
    compare([str(NATIVE), compiler, "-c", "good.c"], folder, env, native=True)  # buildhook-cc buildhook-cc gcc
    env["BUILDHOOK_CC"] = f"  {compiler}   -m64 "
    compare(["-c", "good.c"], folder, env, native=True)
    env["BUILDHOOK_CC"] = f"'{compiler}' -m64"
    compare(["-c", "good.c"], folder, env, native=False)
    env["BUILDHOOK_CC"] = str(NATIVE)
    compare(["-c", "good.c"], folder, env, native=False)  # refused there: buildhook is not the real compiler


def test_cxx_and_stdin(work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    compare(["-O2", "-c", "hello.cc"], folder, env, native=True, program="buildhook-c++")
    compare(["-x", "c", "-c", "-", "-o", "stdin.o"], folder, env, native=True, stdin=GOOD.encode())


def test_paths_with_any_bytes_are_journaled_alike(work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    for name in ("sp ace\"q'uote\\.c", "ünï.c", "line\u2028sep.c", "tab\there.c"):
        (folder / name).write_text(GOOD)
        compare(["-c", name], folder, env, native=True)
    with open(os.fsencode(folder) + b"/bad\xffbyte.c", "wb") as handle:
        handle.write(GOOD.encode())
    for wrapper in (NATIVE, PYTHON):  # SQLite cannot hold it: refused at the compile, not at the next fold
        result = run([str(wrapper), "-c", os.fsdecode(b"bad\xffbyte.c")], env, cwd=folder, check=False)
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert b"could not record in store" in line and b"byte.c' is not valid UTF-8" in line
        assert not (folder / os.fsdecode(b"bad\xffbyte.o")).exists()
    shutil.rmtree(env["BUILDHOOK_STORE"], ignore_errors=True)
    for name in ("line\u2028sep.c", "next\x85line.c"):  # str.splitlines would cut the journal line here
        (folder / name).write_text(GOOD)
        run([str(NATIVE), "-c", name], env, cwd=folder)
        run([str(PYTHON), "-c", name], env, cwd=folder)
    sources = [Path(source).name for source, _, _ in compile_records(Path(env["BUILDHOOK_STORE"]))]  # folds the journal
    assert sources == ["line\u2028sep.c"] * 2 + ["next\x85line.c"] * 2


@pytest.mark.parametrize("portable", [False, True], ids=["cpu-sha-extensions-if-any", "portable"])
@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 100_003])
def test_blob_names_are_the_sha256_of_the_object(size: int, portable: bool, work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    env["FAKE_OBJECT_SIZE"] = str(size)
    if portable:
        env["BUILDHOOK_PORTABLE_SHA256"] = "1"
    run([str(NATIVE), "-c", "good.c", "-o", "fake.o"], env, cwd=folder)
    [(_, obj, sha256)] = compile_records(Path(env["BUILDHOOK_STORE"]))
    data = Path(obj).read_bytes()
    assert len(data) == size
    assert sha256 == hashlib.sha256(data).hexdigest()
    blob = Path(env["BUILDHOOK_STORE"]) / "objects" / sha256[:2] / sha256[2:]
    assert blob.read_bytes() == data
    assert blob.stat().st_mode & 0o777 == 0o444


def test_an_unwritable_store_fails_the_compile_and_removes_the_object(work: tuple[Path, dict[str, str]]) -> None:
    folder, env = work
    (folder / "not-a-folder").write_text("")
    env["BUILDHOOK_STORE"] = str(folder / "not-a-folder" / "store")
    result = run([str(NATIVE), "-c", "good.c"], env, cwd=folder, check=False)
    assert result.returncode == 1
    [line] = result.stderr.decode().splitlines()
    assert line.startswith(f"buildhook-cc: error: could not record in store {folder}/not-a-folder/store: ")
    assert "Not a directory" in line
    assert not (folder / "good.o").exists(), "a rerun of make must retry the compile"
    result = run([str(NATIVE), "-c", "good.c"], {**env, "BUILDHOOK_ON_ERROR": "plain"}, cwd=folder)
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("buildhook-cc: warning: not recorded in store ")
    assert (folder / "good.o").exists()
