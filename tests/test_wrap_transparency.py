"""The wrapper is transparent: same status, output and files as the real compiler.

Everything here runs real gcc through the installed ``buildhook-cc``.  Where
buildhook adds no flag, the object must be byte-identical to plain gcc's;
where it adds flags, identical to plain gcc *with those flags* (so nothing
else was altered).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import builds_json, compile_records, run

GOOD = "int twice(int x) { return 2 * x; }\nint main(void) { return twice(0); }\n"
BAD = "int main(void) { return undeclared_thing + ; }\n"
NO_INJECTION = {"BUILDHOOK_FUNCTION_SECTIONS": "0", "BUILDHOOK_DATA_SECTIONS": "0", "BUILDHOOK_LIVE_PATCHING": "0"}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "good.c").write_text(GOOD)
    (folder / "bad.c").write_text(BAD)
    (folder / "util.c").write_text("int util(void) { return 7; }\n")
    (folder / "uses_util.c").write_text("int util(void);\nint main(void) { return util() - 7; }\n")
    return folder


def injected_flags(env: dict[str, str], buildhook_cmd: str) -> list[str]:
    return shlex.split(run([buildhook_cmd, "flags", "--compile"], env).stdout.decode())


def test_object_identical_to_plain_gcc_without_injection(src: Path, env: dict[str, str], buildhook_cc: str,
                                                         store_dir: Path) -> None:
    env.update(NO_INJECTION)
    run(["gcc", "-O2", "-g", "-c", "good.c", "-o", "plain.o"], env, cwd=src)
    run([buildhook_cc, "-O2", "-g", "-c", "good.c", "-o", "wrapped.o"], env, cwd=src)
    assert (src / "plain.o").read_bytes() == (src / "wrapped.o").read_bytes()
    assert [Path(obj).name for _, obj, _ in compile_records(store_dir)] == ["wrapped.o"]


def test_object_identical_to_gcc_with_the_documented_flags(src: Path, env: dict[str, str], buildhook_cc: str,
                                                           buildhook_cmd: str) -> None:
    flags = injected_flags(env, buildhook_cmd)
    assert flags[:4] == ["-ffunction-sections", "-fdata-sections", "-flive-patching=inline-clone", "-idirafter"]
    assert (Path(flags[4]) / "buildhook.h").is_file()  # the installed package's include/ (checkout or site-packages)
    run(["gcc", *flags, "-O2", "-g", "-c", "good.c", "-o", "plain.o"], env, cwd=src)
    run([buildhook_cc, "-O2", "-g", "-c", "good.c", "-o", "wrapped.o"], env, cwd=src)
    assert (src / "plain.o").read_bytes() == (src / "wrapped.o").read_bytes()


def test_linked_binary_identical_to_plain_gcc(src: Path, env: dict[str, str], buildhook_cc: str) -> None:
    """--build-id is already gcc's default on Debian and a map changes nothing in the output."""
    run(["gcc", "-O2", "-c", "good.c", "util.c"], env, cwd=src)
    run(["gcc", "good.o", "util.o", "-o", "plain"], env, cwd=src)
    run([buildhook_cc, "good.o", "util.o", "-o", "wrapped"], env, cwd=src)
    assert (src / "plain").read_bytes() == (src / "wrapped").read_bytes()
    assert [Path(item["path"]).name for item in builds_json(env)[0]["objects"]] == ["good.o", "util.o"]


def test_failing_compile_has_identical_status_and_diagnostics(src: Path, env: dict[str, str],
                                                              buildhook_cc: str, store_dir: Path) -> None:
    plain = run(["gcc", "-O2", "-c", "bad.c", "-o", "bad.o"], env, cwd=src, check=False)
    wrapped = run([buildhook_cc, "-O2", "-c", "bad.c", "-o", "bad.o"], env, cwd=src, check=False)
    assert plain.returncode != 0
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert not (src / "bad.o").exists()
    assert not store_dir.exists()


def test_failing_link_has_identical_status_and_diagnostics(src: Path, env: dict[str, str], buildhook_cc: str) -> None:
    run(["gcc", "-c", "util.c"], env, cwd=src)  # no main(): the link fails
    plain = run(["gcc", "util.o", "-o", "prog"], env, cwd=src, check=False)
    wrapped = run([buildhook_cc, "util.o", "-o", "prog"], env, cwd=src, check=False)
    assert plain.returncode != 0
    assert wrapped.returncode == plain.returncode
    # ld names its temporary files differently each run; compare the messages.
    assert b"undefined reference to `main'" in wrapped.stderr
    assert wrapped.stderr.count(b"\n") == plain.stderr.count(b"\n")


@pytest.mark.parametrize("mode", [["-E"], ["-M"], ["-MM"], ["-S", "-o", "-"], ["-fsyntax-only"]])
def test_non_object_modes_print_the_same_and_record_nothing(mode: list[str], src: Path, env: dict[str, str],
                                                            buildhook_cc: str, store_dir: Path) -> None:
    env.update(NO_INJECTION)
    plain = run(["gcc", *mode, "good.c"], env, cwd=src)
    wrapped = run([buildhook_cc, *mode, "good.c"], env, cwd=src)
    assert wrapped.stdout == plain.stdout
    assert wrapped.stderr == plain.stderr
    assert not store_dir.exists()


def test_dependency_file_written_as_by_gcc(src: Path, env: dict[str, str], buildhook_cc: str) -> None:
    run(["gcc", "-MD", "-MF", "plain.d", "-c", "good.c", "-o", "good.o"], env, cwd=src)
    run([buildhook_cc, "-MD", "-MF", "wrapped.d", "-c", "good.c", "-o", "good.o"], env, cwd=src)
    assert (src / "plain.d").read_text() == (src / "wrapped.d").read_text()


def test_info_queries_pass_through(env: dict[str, str], buildhook_cc: str) -> None:
    for query in (["--version"], ["-dumpmachine"], ["-print-prog-name=ld"]):
        assert run([buildhook_cc, *query], env).stdout == run(["cc", *query], env).stdout


def test_launcher_form_equals_wrapper_form(src: Path, env: dict[str, str], buildhook_cc: str,
                                           store_dir: Path) -> None:
    run([buildhook_cc, "-O2", "-c", "good.c", "-o", "wrapper.o"], env, cwd=src)
    run([buildhook_cc, "gcc", "-O2", "-c", "good.c", "-o", "launcher.o"], env, cwd=src)
    run([buildhook_cc, shutil.which("gcc") or "gcc", "-O2", "-c", "good.c", "-o", "abs.o"], env, cwd=src)
    assert (src / "wrapper.o").read_bytes() == (src / "launcher.o").read_bytes() == (src / "abs.o").read_bytes()
    assert len(compile_records(store_dir)) == 3


def test_several_sources_with_one_c_record_each_object(src: Path, env: dict[str, str], buildhook_cc: str,
                                                       store_dir: Path) -> None:
    build = src / "build"
    build.mkdir()
    run([buildhook_cc, "-c", "../good.c", "../util.c"], env, cwd=build)
    recorded = {(Path(source).name, Path(obj).relative_to(src).as_posix()) for source, obj, _ in compile_records(store_dir)}
    assert recorded == {("good.c", "build/good.o"), ("util.c", "build/util.o")}


def test_stdin_source(src: Path, env: dict[str, str], buildhook_cc: str, store_dir: Path) -> None:
    run([buildhook_cc, "-x", "c", "-c", "-", "-o", "from_stdin.o"], env, cwd=src, stdin=GOOD.encode())
    assert (src / "from_stdin.o").is_file()
    assert [(source, Path(obj).name) for source, obj, _ in compile_records(store_dir)] == [
        (str(src / "-"), "from_stdin.o")]


def test_response_file_is_passed_through(src: Path, env: dict[str, str], buildhook_cc: str, store_dir: Path) -> None:
    (src / "args.rsp").write_text("-O2 -c good.c -o 'from rsp.o'\n")
    run([buildhook_cc, "@args.rsp"], env, cwd=src)
    assert [Path(obj).name for _, obj, _ in compile_records(store_dir)] == ["from rsp.o"]


def test_compile_and_link_in_one_command(src: Path, env: dict[str, str], buildhook_cc: str, store_dir: Path) -> None:
    """`cc -o prog a.c b.c` (make's built-in rule): each object is recorded."""
    run([buildhook_cc, "-O2", "-o", "prog", "good.c", "util.c"], env, cwd=src)
    assert run([str(src / "prog")], env, check=False).returncode == 0
    [link] = builds_json(env)
    assert link["binary"] == str(src / "prog")
    assert [(Path(o["path"]).name, Path(o["source"]).name) for o in link["objects"]] == [
        ("good.o", "good.c"), ("util.o", "util.c")]
    assert {Path(source).name for source, _, _ in compile_records(store_dir)} == {"good.c", "util.c"}
    assert not (src / "good.o").exists(), "the wrapper must not leave objects the plain driver would not"


def test_cxx_wrapper(src: Path, env: dict[str, str], buildhook_cxx: str) -> None:
    (src / "hello.cpp").write_text("#include <string>\nint main() { return std::string(\"x\").size() - 1; }\n")
    run([buildhook_cxx, "-O2", "hello.cpp", "-o", "hello"], env, cwd=src)
    assert run([str(src / "hello")], env, check=False).returncode == 0
    [link] = builds_json(env)
    assert [Path(o["source"]).name for o in link["objects"]] == ["hello.cpp"]


def test_static_archive_members_are_recorded(src: Path, env: dict[str, str], buildhook_cc: str) -> None:
    run([buildhook_cc, "-c", "util.c", "uses_util.c"], env, cwd=src)
    run(["ar", "rcs", "libutil.a", "util.o"], env, cwd=src)
    run([buildhook_cc, "uses_util.o", "-L.", "-lutil", "-o", "prog"], env, cwd=src)
    assert run([str(src / "prog")], env, check=False).returncode == 0
    [link] = builds_json(env)
    paths = [item["path"] for item in link["objects"]]
    assert paths == [str(src / "uses_util.o"), f"{src / 'libutil.a'}(util.o)"]
    from buildhook.store import sha256_of_file

    assert link["objects"][1]["sha256"] == sha256_of_file(src / "util.o")
    assert link["objects"][1]["source"] == str(src / "util.c")


def test_users_own_map_and_build_id_are_respected(src: Path, env: dict[str, str], buildhook_cc: str) -> None:
    run([buildhook_cc, "-c", "good.c"], env, cwd=src)
    run([buildhook_cc, "good.o", "-Wl,-Map=mine.map", "-Wl,--build-id=md5", "-o", "prog"], env, cwd=src)
    assert (src / "mine.map").is_file()
    [link] = builds_json(env)
    assert len(link["build_id"]) == 32  # md5, as the user asked
    assert link["map_sha256"] is not None


def test_configure_probes_are_not_recorded(src: Path, env: dict[str, str], buildhook_cc: str, store_dir: Path) -> None:
    (src / "conftest.c").write_text(GOOD)
    run([buildhook_cc, "conftest.c", "-o", "conftest"], env, cwd=src)
    run([buildhook_cc, "conftest.c"], env, cwd=src)  # autoconf's first probe: writes a.out
    assert (src / "conftest").is_file() and (src / "a.out").is_file()
    assert not store_dir.exists()


def test_probe_into_a_device_leaves_the_device_alone(src: Path, env: dict[str, str], buildhook_cc: str,
                                                     store_dir: Path, tmp_path: Path) -> None:
    """haproxy's Makefile finds its Lua library with ``echo 'int main(){}' | $(CC) -o /dev/null -x c - -llua5.3``.

    Found on the machine: the wrapper recorded that link, failed to read
    /dev/null as a program and removed it as a failed output.  Here a private
    node for the same device (1, 3) stands in for /dev/null.
    """
    import os
    import stat

    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    run([buildhook_cc, "-o", str(null), "-x", "c", "-"], env, cwd=src, stdin=b"int main(void) { return 0; }\n")
    run([buildhook_cc, "-c", "good.c", "-o", str(null)], env, cwd=src)
    assert stat.S_ISCHR(null.stat().st_mode)
    assert not store_dir.exists() or not builds_json(env)


# -- refusals and failures inside buildhook: one line, never silent ------------


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_lto_is_refused_with_a_reason(src: Path, env: dict[str, str], buildhook_cc: str) -> None:
    result = run([buildhook_cc, "-flto", "-c", "good.c"], env, cwd=src, check=False)
    assert result.returncode == 1
    assert "-flto is not supported" in one_line_error(result)
    assert not (src / "good.o").exists()


def test_lto_degrades_to_plain_compile_when_configured(src: Path, env: dict[str, str], buildhook_cc: str,
                                                       store_dir: Path) -> None:
    env["BUILDHOOK_ON_ERROR"] = "plain"
    result = run([buildhook_cc, "-flto", "-c", "good.c"], env, cwd=src)
    assert "warning: -flto is not supported" in one_line_error(result)
    assert (src / "good.o").exists()
    assert not store_dir.exists()


def test_conflicting_ipa_flag_is_refused(src: Path, env: dict[str, str], buildhook_cc: str) -> None:
    result = run([buildhook_cc, "-O2", "-fipa-icf", "-c", "good.c"], env, cwd=src, check=False)
    assert result.returncode == 1
    assert "BUILDHOOK_LIVE_PATCHING=0" in one_line_error(result)
    env["BUILDHOOK_LIVE_PATCHING"] = "0"
    run([buildhook_cc, "-O2", "-fipa-icf", "-c", "good.c"], env, cwd=src)


def test_unwritable_store_fails_the_step_and_removes_the_object(src: Path, env: dict[str, str],
                                                                buildhook_cc: str) -> None:
    (src / "not-a-folder").write_text("")
    env["BUILDHOOK_STORE"] = str(src / "not-a-folder" / "store")
    result = run([buildhook_cc, "-c", "good.c"], env, cwd=src, check=False)
    assert result.returncode == 1
    assert "could not record" in one_line_error(result)
    assert not (src / "good.o").exists(), "a rerun of make must retry the compile"
    env["BUILDHOOK_ON_ERROR"] = "plain"
    result = run([buildhook_cc, "-c", "good.c"], env, cwd=src)
    assert "not recorded" in one_line_error(result)
    assert (src / "good.o").exists()


def test_bad_setting_is_one_line(src: Path, env: dict[str, str], buildhook_cc: str) -> None:
    env["BUILDHOOK_ON_ERROR"] = "sometimes"
    result = run([buildhook_cc, "-c", "good.c"], env, cwd=src, check=False)
    assert result.returncode == 1
    assert "BUILDHOOK_ON_ERROR" in one_line_error(result)
    assert not (src / "good.o").exists()


def test_vanished_working_directory_is_one_line(env: dict[str, str], buildhook_cc: str, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    process = subprocess.run(["bash", "-c", f"cd {gone} && rmdir {gone} && {buildhook_cc} -c x.c"], env=env,
                             capture_output=True, timeout=60)
    assert process.returncode == 1
    assert process.stderr.decode().strip() == "buildhook-cc: error: the current directory no longer exists"


def test_missing_real_compiler_is_one_line(src: Path, env: dict[str, str], buildhook_cc: str) -> None:
    env["BUILDHOOK_CC"] = "/nonexistent/gcc"
    result = run([buildhook_cc, "-c", "good.c"], env, cwd=src, check=False)
    assert result.returncode == 1
    assert "/nonexistent/gcc" in one_line_error(result)


def test_never_runs_itself_as_the_compiler(src: Path, env: dict[str, str], buildhook_cc: str, tmp_path: Path) -> None:
    """A `cc` on PATH that is buildhook-cc itself (ccache-style symlink) is skipped."""
    masquerade = tmp_path / "masq"
    masquerade.mkdir()
    (masquerade / "cc").symlink_to(buildhook_cc)
    env["PATH"] = f"{masquerade}:{env['PATH']}"
    run([buildhook_cc, "-c", "good.c"], env, cwd=src)
    assert (src / "good.o").exists()
    env["BUILDHOOK_CC"] = buildhook_cc
    result = run([buildhook_cc, "-c", "good.c"], env, cwd=src, check=False)
    assert result.returncode == 1
    assert "must name the real compiler" in one_line_error(result)


def test_disable_runs_the_compiler_exactly_as_called(src: Path, env: dict[str, str], buildhook_cc: str,
                                                     store_dir: Path) -> None:
    env["BUILDHOOK_DISABLE"] = "1"
    run(["gcc", "-c", "good.c", "-o", "plain.o"], env, cwd=src)
    run([buildhook_cc, "-c", "good.c", "-o", "wrapped.o"], env, cwd=src)
    assert (src / "plain.o").read_bytes() == (src / "wrapped.o").read_bytes()
    assert not store_dir.exists()


def test_config_file_switches_a_flag(src: Path, env: dict[str, str], buildhook_cc: str, tmp_path: Path) -> None:
    config = tmp_path / "buildhook.toml"
    config.write_text("function_sections = false\ndata_sections = false\nlive_patching = false\n")
    env["BUILDHOOK_CONFIG"] = str(config)
    run(["gcc", "-c", "good.c", "-o", "plain.o"], env, cwd=src)
    run([buildhook_cc, "-c", "good.c", "-o", "wrapped.o"], env, cwd=src)
    assert (src / "plain.o").read_bytes() == (src / "wrapped.o").read_bytes()
    config.write_text("no_such_setting = 1\n")
    result = run([buildhook_cc, "-c", "good.c"], env, cwd=src, check=False)
    assert result.returncode == 1
    assert "unknown setting" in one_line_error(result)
