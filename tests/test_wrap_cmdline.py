"""Command-line parsing of the wrapper: what a driver command produces.

These are the cases a real build throws at a compiler wrapper: option
arguments that look like files, several sources under one -c, implicit
output names, response files, -x, stdin, dependency generation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from buildhook.wrap.cmdline import (
    Mode,
    ResponseFileError,
    expand_response_files,
    implicit_object_name,
    parse_driver_command,
    read_response_file,
)


def outputs(words: list[str]) -> list[tuple[str, str]]:
    command = parse_driver_command(words)
    return [(source.path, obj) for source, obj in command.object_outputs()]


@pytest.mark.parametrize(
    ("words", "mode"),
    [
        (["-c", "a.c"], Mode.COMPILE),
        (["-O2", "-c", "a.c", "-o", "a.o"], Mode.COMPILE),
        (["-S", "a.c"], Mode.ASSEMBLY),
        (["-E", "a.c"], Mode.NO_OBJECT),
        (["-M", "a.c"], Mode.NO_OBJECT),
        (["-MM", "a.c"], Mode.NO_OBJECT),
        (["-fsyntax-only", "a.c"], Mode.NO_OBJECT),
        (["-MD", "-MF", "a.d", "-c", "a.c"], Mode.COMPILE),
        (["a.o", "b.o", "-o", "prog"], Mode.LINK),
        (["a.c", "-o", "prog"], Mode.LINK),
        (["-shared", "a.o", "-o", "liba.so"], Mode.LINK),
        (["-r", "a.o", "b.o", "-o", "ab.o"], Mode.PARTIAL_LINK),
        (["--version"], Mode.INFO),
        (["-v"], Mode.INFO),
        (["-dumpmachine"], Mode.INFO),
        (["-print-prog-name=ld"], Mode.INFO),
        (["-print-search-dirs"], Mode.INFO),
        ([], Mode.INFO),
        (["-c", "a.o"], Mode.INFO),
    ],
)
def test_mode(words: list[str], mode: Mode) -> None:
    assert parse_driver_command(words).mode is mode


def test_explicit_output_for_one_source() -> None:
    assert outputs(["-c", "src/a.c", "-o", "build/a.o"]) == [("src/a.c", "build/a.o")]
    assert outputs(["-c", "src/a.c", "-obuild/a.o"]) == [("src/a.c", "build/a.o")]


def test_several_sources_get_implicit_names_in_the_current_directory() -> None:
    assert outputs(["-c", "src/a.c", "lib/b.cpp", "c.S"]) == [
        ("src/a.c", "a.o"), ("lib/b.cpp", "b.o"), ("c.S", "c.o")]


@pytest.mark.parametrize(
    ("source", "obj"),
    [("a.c", "a.o"), ("dir/x.tar.c", "x.tar.o"), ("noext", "noext.o"), ("-", "-.o"), (".hidden", ".hidden.o")],
)
def test_implicit_object_name(source: str, obj: str) -> None:
    assert implicit_object_name(source) == obj


def test_option_arguments_are_not_inputs() -> None:
    command = parse_driver_command([
        "-c", "-include", "config.h", "-MF", "deps.c", "-MT", "t.c", "-I", "inc.c",
        "-D", "X=1", "-isystem", "sys.c", "-o", "out.o", "real.c",
    ])
    assert [source.path for source in command.sources] == ["real.c"]
    assert command.other_inputs == []
    assert command.output == "out.o"


def test_x_applies_to_following_inputs_until_none() -> None:
    command = parse_driver_command(["-c", "-x", "c", "weird.txt", "-x", "none", "b.c", "-xc++", "c.inc"])
    assert [(s.path, s.language, s.explicit_language) for s in command.sources] == [
        ("weird.txt", "c", "c"), ("b.c", "c", None), ("c.inc", "c++", "c++")]


def test_stdin_is_a_source_only_with_x() -> None:
    command = parse_driver_command(["-x", "c", "-c", "-", "-o", "stdin.o"])
    assert [(source.path, source.language) for source in command.sources] == [("-", "c")]
    assert outputs(["-x", "c", "-c", "-", "-o", "stdin.o"]) == [("-", "stdin.o")]


def test_objects_and_libraries_are_link_inputs() -> None:
    command = parse_driver_command(["main.o", "libx.a", "-lm", "-L", "lib", "libfoo.so", "-o", "prog"])
    assert command.sources == []
    assert [path for _, path in command.other_inputs] == ["main.o", "libx.a", "libfoo.so"]
    assert command.link_output() == "prog"


def test_default_link_output_is_a_out() -> None:
    assert parse_driver_command(["main.o"]).link_output() == "a.out"


def test_lto_is_detected_and_can_be_cancelled() -> None:
    assert parse_driver_command(["-flto", "-c", "a.c"]).lto
    assert parse_driver_command(["-flto=auto", "-c", "a.c"]).lto
    assert not parse_driver_command(["-flto", "-fno-lto", "-c", "a.c"]).lto
    assert not parse_driver_command(["-fno-lto", "-c", "a.c"]).lto


def test_linker_options_from_wl_and_xlinker() -> None:
    command = parse_driver_command(["a.o", "-Wl,-Map=my.map,--build-id=sha1", "-Xlinker", "-z", "-o", "p"])
    assert command.user_map_file() == "my.map"
    assert command.user_build_id() == "--build-id=sha1"
    assert parse_driver_command(["a.o", "-Wl,-Map,other.map"]).user_map_file() == "other.map"
    assert parse_driver_command(["a.o", "-Wl,--build-id=none"]).user_build_id() == "--build-id=none"
    assert parse_driver_command(["a.o"]).user_map_file() is None
    assert parse_driver_command(["a.o", "-Wl,-M"]).user_prints_map()


def test_compile_and_link_is_split_into_compiles_and_a_link() -> None:
    command = parse_driver_command(["-O2", "-x", "c", "prog.src", "-x", "none", "util.c", "lib.o", "-lm", "-o", "prog"])
    positions = {source.position: f"/tmp/{source.path}.o" for source in command.sources}
    shared, link = command.split_for_separate_compiles(positions)
    assert shared == ["-O2", "-lm"]
    assert link == ["-O2", "/tmp/prog.src.o", "/tmp/util.c.o", "lib.o", "-lm", "-o", "prog"]


def test_response_file_quoting(tmp_path: Path) -> None:
    rsp = tmp_path / "args.rsp"
    rsp.write_text("-c 'with space.c' \"dq \\\"x\\\".c\" back\\ slash.c\n-o\tout.o\n")
    assert read_response_file(str(rsp)) == ["-c", "with space.c", 'dq "x".c', "back slash.c", "-o", "out.o"]


def test_response_files_are_expanded_for_analysis_only(tmp_path: Path) -> None:
    inner = tmp_path / "inner.rsp"
    inner.write_text("b.c")
    outer = tmp_path / "outer.rsp"
    outer.write_text(f"-c a.c @{inner}")
    command = parse_driver_command([f"@{outer}", "-O2"])
    assert command.args == [f"@{outer}", "-O2"]
    assert [source.path for source in command.sources] == ["a.c", "b.c"]
    assert command.mode is Mode.COMPILE


def test_unreadable_response_file_stays_a_word() -> None:
    assert expand_response_files(["@/nonexistent/file"]) == ["@/nonexistent/file"]


def test_self_including_response_file_is_an_error(tmp_path: Path) -> None:
    loop = tmp_path / "loop.rsp"
    loop.write_text(f"@{loop}")
    with pytest.raises(ResponseFileError, match="nest"):
        expand_response_files([f"@{loop}"])
