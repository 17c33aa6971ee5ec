"""``buildhook collect`` on the sample server's releases, as a release pipeline runs it.

kvd v1.0 and v1.1 are built with the wrapper and released, v1.2 is built
and released, then ``collect --key`` writes the signed patch set from v1.0
and from v1.1 to v1.2, ``index.json`` and ``report.html``.  The patches
then go where a pipeline publishes them: to hosts with a trust store,
where ``buildhook apply`` (and the zipapp, on bare python3) take the
signed ones and refuse unsigned, tampered and foreign-signed ones without
touching the running process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from buildhook import samples
from tests.conftest import BIN_DIR, run
from tests.support.kvd import KvdClient, KvdProcess, start_kvd

BUILDHOOK = str(BIN_DIR / "buildhook")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="applying attaches with ptrace as root")


def base_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDHOOK_")}
    env.update(PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}", BUILDHOOK_STORE=str(root / "store"),
               BUILDHOOK_CONFIG=str(root / "none.toml"), XDG_CONFIG_HOME=str(root / "config"),
               BUILDHOOK_PATCH_FROM="off", LC_ALL="C")
    return env


def buildhook(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return run([BUILDHOOK, *args], env, check=check, timeout=120)


@dataclass
class PatchSet:
    """The released tree, the v1.0 binary, the collected folder and the keys."""

    tree: Path
    v10: Path
    out: Path
    keys: Path
    other_keys: Path
    trust: Path
    collect: subprocess.CompletedProcess[bytes]
    releases: dict[str, str]  # tag -> build-id
    env: dict[str, str]

    def index(self) -> dict:
        return json.loads((self.out / "index.json").read_text())

    def entry(self, tag: str) -> dict:
        [entry] = [e for e in self.index()["patches"] if e["from"] == tag]
        return entry


@pytest.fixture(scope="module")
def patch_set(tmp_path_factory: pytest.TempPathFactory) -> PatchSet:
    root = tmp_path_factory.mktemp("collect")
    env = base_env(root)
    tree = samples.patched_tree(root / "kvd", None)

    def build_and_release(tag: str) -> None:
        run(["make", "-s", "-j8", "CC=buildhook-cc"], env, cwd=tree)
        buildhook(["release", tag], env)

    build_and_release("v1.0")
    v10 = root / "kvd-1.0"
    shutil.copy2(tree / "kvd", v10)
    samples.apply_series(tree, "v1.1")
    build_and_release("v1.1")
    samples.apply_series(tree, "v1.2", after="v1.1")
    build_and_release("v1.2")
    buildhook(["keygen", "--out", str(root / "keys")], env)
    buildhook(["keygen", "--out", str(root / "other-keys")], env)
    trust = root / "trust.d"
    trust.mkdir()
    shutil.copy(root / "keys" / "signing.pub", trust / "release.pub")
    out = root / "patches"
    collect = buildhook(["collect", "--out", str(out), "--key", str(root / "keys" / "signing.key"),
                         str(tree / "kvd")], env)
    releases = {r["tag"]: r["binaries"][0]["build_id"] for r in json.loads(buildhook(["releases", "--json"], env).stdout)}
    return PatchSet(tree, v10, out, root / "keys", root / "other-keys", trust, collect, releases, env)


def names(entries: list[dict]) -> set[str]:
    return {entry["name"] for entry in entries}


# -- the patch set -------------------------------------------------------------


def test_collect_writes_one_patch_per_earlier_release(patch_set: PatchSet) -> None:
    lines = patch_set.collect.stdout.decode().splitlines()
    assert lines[0].startswith("kvd from v1.0: wrote kvd.from-v1.0.po (2 replaced, 2 new functions, 0 warnings, "
                               "signed by ")
    assert lines[1].startswith("kvd from v1.1: wrote kvd.from-v1.1.po (2 replaced, 1 new functions, ")
    assert lines[2].endswith("2 of 2 base releases patched")
    assert sorted(path.name for path in patch_set.out.iterdir()) == [
        "index.json", "kvd.from-v1.0.po", "kvd.from-v1.0.po.sig", "kvd.from-v1.1.po", "kvd.from-v1.1.po.sig",
        "report.html"]


def test_index_describes_each_patch(patch_set: PatchSet) -> None:
    index = patch_set.index()
    assert index["format"] == "buildhook-collect/1"
    assert [entry["from"] for entry in index["patches"]] == ["v1.0", "v1.1"], "v1.2 is the build itself"
    key_id = json.loads((patch_set.out / "kvd.from-v1.0.po.sig").read_text())["key_id"]
    for entry in index["patches"]:
        po = patch_set.out / entry["po"]
        data = po.read_bytes()
        assert entry["binary"] == str((patch_set.tree / "kvd").resolve())
        assert entry["outcome"] == "patch" and entry["to"] == "v1.2"
        assert entry["target_build_id"] == patch_set.releases[entry["from"]]
        assert entry["to_build_id"] == patch_set.releases["v1.2"]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
        assert entry["signature"] == f"{entry['po']}.sig" and entry["key_id"] == key_id
        assert entry["warnings"] == [] and entry["refusals"] == [] and entry["error"] is None
        # The index says what the patch itself says.
        summary = json.loads(buildhook(["inspect", str(po), "--json"], patch_set.env).stdout)
        assert summary["patch_id"] == entry["patch_id"]
        assert summary["target"]["build_id"] == entry["target_build_id"]
        assert summary["from"] == entry["from"] and summary["to"] == "v1.2"
        assert {(f["name"], f["old_size"], f["new_size"]) for f in summary["functions"]} == \
            {(f["name"], f["old_size"], f["new_size"]) for f in entry["functions"]}
        assert names(summary["new_functions"]) == names(entry["new_functions"])
    assert names(patch_set.entry("v1.0")["functions"]) == {"protocol_dispatch", "protocol_handle_line"}
    assert names(patch_set.entry("v1.0")["new_functions"]) == {"need_key.isra.0", "store_append"}
    assert names(patch_set.entry("v1.1")["functions"]) == {"protocol_dispatch", "protocol_handle_line"}
    assert names(patch_set.entry("v1.1")["new_functions"]) == {"store_append"}
    assert [(d["file"], d["name"]) for d in patch_set.entry("v1.1")["new_data"]] == [("stats.c", "appends_served")]


def test_every_signature_verifies(patch_set: PatchSet) -> None:
    for entry in patch_set.index()["patches"]:
        result = buildhook(["verify", str(patch_set.out / entry["po"]), "--trust", str(patch_set.trust)],
                           patch_set.env)
        assert f"good signature by key {entry['key_id']}" in result.stdout.decode()


class ReportParser(HTMLParser):
    """Per patch section (by its base release): the functions its tables and disassembly diffs name."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.replaced: dict[str, list[str]] = {}
        self.new: dict[str, list[str]] = {}
        self.disassembled: dict[str, list[str]] = {}
        self.diff_lines: dict[str, list[str]] = {}
        self._in_diff_line: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "section" and "patch" in classes:
            self.section = attributes["data-from"]
        elif tag == "tr" and "replaced-function" in classes:
            self.replaced.setdefault(self.section, []).append(attributes["data-function"])
        elif tag == "tr" and "new-function" in classes:
            self.new.setdefault(self.section, []).append(attributes["data-function"])
        elif tag == "details" and "disassembly" in classes:
            self.disassembled.setdefault(self.section, []).append(attributes["data-function"])
            self._function = attributes["data-function"]
        elif tag == "span" and ("added" in classes or "removed" in classes):
            self._in_diff_line = f"{self.section}:{self._function}"

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._in_diff_line = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_diff_line:
            self.diff_lines.setdefault(self._in_diff_line, []).append(data)


def test_report_names_every_replaced_function_with_its_disassembly_diff(patch_set: PatchSet) -> None:
    report = ReportParser()
    report.feed((patch_set.out / "report.html").read_text())
    for entry in patch_set.index()["patches"]:
        tag = entry["from"]
        assert sorted(report.replaced[tag]) == sorted(names(entry["functions"]))
        assert sorted(report.disassembled[tag]) == sorted(names(entry["functions"]))
        assert sorted(report.new[tag]) == sorted(names(entry["new_functions"]))
        for function in names(entry["functions"]):
            changed = report.diff_lines[f"{tag}:{function}"]
            assert changed, f"no changed lines in the disassembly of {function} from {tag}"
            assert not [line for line in changed if re.match(r"[+-]\s*[0-9a-f]+:", line)], "addresses are stripped"
    # What v1.2 added reads as code a reviewer recognises: the new command's call and its reply string.
    v11_dispatch = "\n".join(report.diff_lines["v1.1:protocol_dispatch"])
    assert "store_append" in v11_dispatch and "appends_served" in v11_dispatch
    assert '"kvd 1.2"' in "\n".join(report.diff_lines["v1.0:protocol_dispatch"])


def test_collect_from_one_release_and_unknown_releases(patch_set: PatchSet, tmp_path: Path) -> None:
    out = tmp_path / "only-v11"
    result = buildhook(["collect", "--out", str(out), "--from", "v1.1", str(patch_set.tree / "kvd")], patch_set.env)
    assert [entry["from"] for entry in json.loads((out / "index.json").read_text())["patches"]] == ["v1.1"]
    assert b"signed" not in result.stdout and not (out / "kvd.from-v1.1.po.sig").exists()
    same = buildhook(["collect", "--out", str(out), "--from", "v1.2", str(patch_set.tree / "kvd")], patch_set.env,
                     check=False)
    assert same.returncode == 3, "an explicit base equal to the build is listed, as no change"
    assert same.stdout.decode().startswith("kvd from v1.2: no change\n")
    [entry] = json.loads((out / "index.json").read_text())["patches"]
    assert (entry["from"], entry["outcome"], entry["po"]) == ("v1.2", "no-change", None)
    bad = buildhook(["collect", "--out", str(out), "--from", "v9", str(patch_set.tree / "kvd")], patch_set.env,
                    check=False)
    assert bad.returncode == 1
    [line] = bad.stderr.decode().strip().splitlines()
    assert line.startswith("buildhook: error: no release v9")


def test_a_refused_base_release_is_listed_with_its_reasons(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    tree = samples.patched_tree(tmp_path / "kvd", None)
    run(["make", "-s", "-j8", "CC=buildhook-cc"], env, cwd=tree)
    buildhook(["release", "v1.0"], env)
    samples.apply_series(tree, "v1.3")  # v1.3 changes struct entry: no live patch from v1.0
    run(["make", "-s", "-j8", "CC=buildhook-cc"], env, cwd=tree)
    out = tmp_path / "patches"
    result = buildhook(["collect", "--out", str(out), str(tree / "kvd")], env, check=False)
    assert result.returncode == 2
    [line] = result.stderr.decode().strip().splitlines()
    assert line.startswith("buildhook: error: no patch written (kvd from v1.0: refused)")
    [entry] = json.loads((out / "index.json").read_text())["patches"]
    assert entry["outcome"] == "refused" and entry["po"] is None and entry["sha256"] is None
    assert entry["functions"] == [] and entry["would_functions"], "what it would have replaced is kept apart"
    [refusal] = entry["refusals"]
    assert refusal["rule"] == "struct-layout-changed" and refusal["file"] == "store.c"
    assert "struct entry" in refusal["symbol"] + refusal["reason"]
    assert not list(out.glob("*.po"))
    report = ReportParser()
    report.feed((out / "report.html").read_text())
    text = "".join(report.text)
    assert "Refused: no patch from v1.0" in text and refusal["reason"] in text


# -- applying the published patches under a trust store -------------------------


@pytest.fixture
def kvd(patch_set: PatchSet) -> KvdProcess:
    with start_kvd(patch_set.v10) as process:
        yield process


def untouched(kvd: KvdProcess) -> None:
    """The refused apply left kvd as it was: no patch region, still v1.0, still serving."""
    assert "/memfd:buildhook:" not in Path(f"/proc/{kvd.pid}/maps").read_text()
    with KvdClient(kvd.port) as client:
        assert client.command("VERSION") == "kvd 1.0"
    assert kvd.alive()


def untrusted_copy(case: str, patch_set: PatchSet, folder: Path) -> Path:
    """The v1.0 patch, made untrustworthy in one of three ways."""
    patch = folder / "kvd.from-v1.0.po"
    shutil.copy(patch_set.out / "kvd.from-v1.0.po", patch)
    if case == "tampered":
        shutil.copy(patch_set.out / "kvd.from-v1.0.po.sig", f"{patch}.sig")
        data = bytearray(patch.read_bytes())
        data[data.find(b"kvd 1.2")] ^= 0x01  # "kvd 1.2" becomes "jvd 1.2": a small, plausible change
        patch.write_bytes(bytes(data))
    elif case == "wrong-key":
        buildhook(["sign", str(patch), "--key", str(patch_set.other_keys / "signing.key")], patch_set.env)
    return patch


@as_root
@pytest.mark.parametrize(("case", "expected"), [
    ("unsigned", "kvd.from-v1.0.po is not signed (no "),
    ("tampered", "bad signature: "),
    ("wrong-key", ", which is not in the trust store "),
])
def test_apply_refuses_an_untrusted_patch_and_leaves_the_target_untouched(
        case: str, expected: str, patch_set: PatchSet, kvd: KvdProcess, tmp_path: Path) -> None:
    patch = untrusted_copy(case, patch_set, tmp_path)
    env = dict(patch_set.env, BUILDHOOK_TRUST=str(patch_set.trust))
    result = buildhook(["apply", str(patch), "--pid", str(kvd.pid)], env, check=False)
    assert result.returncode == 1
    [line] = result.stderr.decode().strip().splitlines()
    assert line.startswith("buildhook: error: ") and expected in line
    assert result.stdout == b""
    untouched(kvd)


@as_root
def test_apply_takes_a_trusted_patch(patch_set: PatchSet, kvd: KvdProcess) -> None:
    env = dict(patch_set.env, BUILDHOOK_TRUST=str(patch_set.trust))
    with KvdClient(kvd.port) as client:
        assert client.command("SET colour blue") == "OK"
        buildhook(["apply", str(patch_set.out / "kvd.from-v1.0.po"), "--pid", str(kvd.pid)], env)
        assert client.command("VERSION") == "kvd 1.2"
        assert client.command("GET colour") == "blue"
        buildhook(["revert", "--pid", str(kvd.pid)], env)
        assert client.command("VERSION") == "kvd 1.0"


@as_root
def test_zipapp_on_bare_python_checks_signatures_too(patch_set: PatchSet, kvd: KvdProcess, tmp_path: Path) -> None:
    archive = tmp_path / "buildhook-apply.pyz"
    buildhook(["applier-zipapp", str(archive)], patch_set.env)
    env = dict(patch_set.env, BUILDHOOK_TRUST=str(patch_set.trust))

    def zipapp(*args: str) -> subprocess.CompletedProcess[bytes]:
        # -I: no user site, no PYTHON* variables; -S: no site-packages at all, so no `cryptography`:
        # only what the archive holds and the standard library.
        return run(["python3", "-I", "-S", str(archive), *args], env, check=False, timeout=120)

    unsigned = untrusted_copy("unsigned", patch_set, tmp_path)
    refused = zipapp("apply", str(unsigned), "--pid", str(kvd.pid))
    assert refused.returncode == 1
    [line] = refused.stderr.decode().strip().splitlines()
    assert line.startswith("buildhook-apply: error: ") and "is not signed (no " in line
    untouched(kvd)
    applied = zipapp("apply", str(patch_set.out / "kvd.from-v1.0.po"), "--pid", str(kvd.pid))
    assert applied.returncode == 0, applied.stderr
    with KvdClient(kvd.port) as client:
        assert client.command("VERSION") == "kvd 1.2"
    assert zipapp("revert", "--pid", str(kvd.pid)).returncode == 0
    with KvdClient(kvd.port) as client:  # reverted: v1.0 again (the region stays, see docs/apply.md)
        assert client.command("VERSION") == "kvd 1.0"
    assert b"no patches applied" in zipapp("status", "--pid", str(kvd.pid)).stdout
