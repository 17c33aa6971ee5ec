"""Make, CMake (Ninja and Makefiles) and SCons builds of kvd are recorded.

Each build system must yield a link record for kvd naming one object per
``.c`` file, compiled from that file; under ``make -j8`` every object is
recorded exactly once even though the wrappers race on the store.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR, builds_json, compile_records, run


def kvd_sources(tree: Path) -> set[str]:
    return {str(path) for path in tree.glob("*.c")}


def assert_kvd_link(env: dict[str, str], binary: Path, tree: Path) -> dict:
    links = [link for link in builds_json(env) if link["binary"] == str(binary.resolve())]
    assert len(links) == 1, f"expected one link of {binary}, got {links}"
    link = links[0]
    assert len(link["build_id"]) == 40
    assert {item["source"] for item in link["objects"]} == kvd_sources(tree)
    assert len(link["objects"]) == len(kvd_sources(tree)) >= 5
    from buildhook.elf.buildid import build_id_of_file

    assert link["build_id"] == build_id_of_file(str(binary))
    return link


def test_make_j8_records_every_object_exactly_once(sample_tree: Path, env: dict[str, str], store_dir: Path,
                                                   buildhook_cc: str) -> None:
    run(["make", "-j8", "CC=buildhook-cc"], env, cwd=sample_tree)
    records = compile_records(store_dir)
    objects = Counter(obj for _, obj, _ in records)
    assert set(objects) == {str(sample_tree / f"{Path(src).stem}.o") for src in kvd_sources(sample_tree)}
    assert set(objects.values()) == {1}
    link = assert_kvd_link(env, sample_tree / "kvd", sample_tree)
    from buildhook.store import sha256_of_file

    for item in link["objects"]:
        assert item["sha256"] == sha256_of_file(item["path"])


def test_many_parallel_compiles_race_safely(tmp_path: Path, env: dict[str, str], store_dir: Path,
                                            buildhook_cc: str) -> None:
    """48 wrappers at -j16 on a fresh store: schema creation and inserts race."""
    tree = tmp_path / "many"
    tree.mkdir()
    count = 48
    for number in range(count):
        (tree / f"f{number}.c").write_text(f"int f{number}(int x) {{ return x + {number}; }}\n")
    (tree / "main.c").write_text("int main(void) { return 0; }\n")
    (tree / "Makefile").write_text(
        "SRCS := $(wildcard *.c)\nprog: $(SRCS:.c=.o)\n\t$(CC) -o $@ $^\n"
    )
    run(["make", "-j16", "CC=buildhook-cc"], env, cwd=tree)
    objects = Counter(Path(obj).name for _, obj, _ in compile_records(store_dir))
    assert len(objects) == count + 1
    assert set(objects.values()) == {1}
    [link] = builds_json(env)
    assert len(link["objects"]) == count + 1


def test_rebuild_after_change_records_new_link_and_only_changed_objects(sample_tree: Path, env: dict[str, str],
                                                                        store_dir: Path) -> None:
    run(["make", "-j8", "CC=buildhook-cc"], env, cwd=sample_tree)
    first = {item["path"]: item["sha256"] for item in builds_json(env)[0]["objects"]}
    store_c = sample_tree / "store.c"
    store_c.write_text(store_c.read_text() + "\nint buildhook_test_marker(void) { return 42; }\n")
    run(["make", "-j8", "CC=buildhook-cc"], env, cwd=sample_tree)
    links = builds_json(env)
    assert len(links) == 2
    second = {item["path"]: item["sha256"] for item in links[1]["objects"]}
    changed = {Path(path).name for path in first if first[path] != second[path]}
    assert changed == {"store.o"}
    assert len(compile_records(store_dir)) == len(first) + 1


@pytest.mark.parametrize("generator", ["Ninja", "Unix Makefiles"])
def test_cmake_build_is_recorded(generator: str, sample_tree: Path, tmp_path: Path, env: dict[str, str],
                                 buildhook_cmd: str) -> None:
    module_dir = run([buildhook_cmd, "cmake-dir"], env).stdout.decode().strip()
    build = tmp_path / "out-of-tree"
    configure = run(["cmake", "-S", str(sample_tree), "-B", str(build), "-G", generator,
                     f"-DCMAKE_MODULE_PATH={module_dir}"], env)
    assert b"BuildHook: recording" in configure.stdout
    run(["cmake", "--build", str(build), "--parallel", "4"], env)
    link = assert_kvd_link(env, build / "kvd", sample_tree)
    assert all(item["path"].startswith(str(build / "CMakeFiles")) for item in link["objects"])


def test_cmake_without_the_module_records_nothing(sample_tree: Path, tmp_path: Path, env: dict[str, str],
                                                  store_dir: Path) -> None:
    """include(BuildHook OPTIONAL) is a no-op when the module path is not given."""
    build = tmp_path / "plain"
    run(["cmake", "-S", str(sample_tree), "-B", str(build), "-G", "Ninja"], env)
    run(["cmake", "--build", str(build)], env)
    assert (build / "kvd").is_file()
    assert not store_dir.exists()


def test_scons_build_is_recorded(sample_tree: Path, env: dict[str, str], buildhook_cmd: str) -> None:
    site_dir = run([buildhook_cmd, "scons-dir"], env).stdout.decode().strip()
    run([str(BIN_DIR / "scons"), "-Q", f"--site-dir={site_dir}", "BUILDHOOK=1"], env, cwd=sample_tree)
    assert_kvd_link(env, sample_tree / "kvd", sample_tree)
