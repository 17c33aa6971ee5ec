"""``buildhook keygen``, ``sign`` and ``verify`` on a real patch of the sample server.

The patch is kvd's v1.0 → v1.1 ``.po`` as the build writes it; keys are made
by ``buildhook keygen``.  ``verify`` runs the applier's own verification,
so what it accepts here is what ``apply`` accepts (tests/test_collect.py
applies signed and unsigned patches to a running kvd).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from buildhook import samples
from buildhook.apply.signature import (
    PublicKey,
    SignatureError,
    TrustStore,
    configured_trust_store,
    key_id_of,
    verify_patch,
)
from tests.conftest import BIN_DIR, run

BUILDHOOK = str(BIN_DIR / "buildhook")


@dataclass
class Material:
    """A real .po, two key pairs and a trust store holding only the first key."""

    patch: Path
    keys: Path
    other_keys: Path
    trust: Path
    env: dict[str, str]


def base_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDHOOK_")}
    env.update(PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}", BUILDHOOK_STORE=str(root / "store"),
               BUILDHOOK_CONFIG=str(root / "none.toml"), XDG_CONFIG_HOME=str(root / "config"), LC_ALL="C")
    return env


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    root = tmp_path_factory.mktemp("signing")
    env = base_env(root)
    tree = samples.patched_tree(root / "kvd", None)
    run(["make", "-s", "-j8", "CC=buildhook-cc"], env, cwd=tree)
    run([BUILDHOOK, "release", "v1.0"], env)
    samples.apply_series(tree, "v1.1")
    run(["make", "-s", "-j8", "CC=buildhook-cc"], env, cwd=tree)
    run([BUILDHOOK, "keygen", "--out", str(root / "keys")], env)
    run([BUILDHOOK, "keygen", "--out", str(root / "other-keys")], env)
    trust = root / "trust.d"
    trust.mkdir()
    shutil.copy(root / "keys" / "signing.pub", trust / "release-ci.pub")
    (trust / "README").write_text("only *.pub files are keys\n")
    return Material(tree / "kvd.from-v1.0.po", root / "keys", root / "other-keys", trust, env)


def fresh_patch(material: Material, tmp_path: Path) -> Path:
    copy = tmp_path / "kvd.from-v1.0.po"
    shutil.copy(material.patch, copy)
    return copy


def buildhook(args: list[str], env: dict[str, str], check: bool = True):  # type: ignore[no-untyped-def]
    return run([BUILDHOOK, *args], env, check=check)


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == 1
    [line] = result.stderr.decode().strip().splitlines()
    assert line.startswith("buildhook: error: ")
    return line


def test_keygen_writes_a_private_key_only_its_owner_reads(material: Material) -> None:
    private, public = material.keys / "signing.key", material.keys / "signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    key = PublicKey.from_file(str(public))
    assert len(key.raw) == 32 and key.key_id == key_id_of(key.raw)
    again = buildhook(["keygen", "--out", str(material.keys)], material.env, check=False)
    assert "already exists" in one_error_line(again)


def test_keygen_default_folder_follows_xdg_config_home(material: Material, tmp_path: Path) -> None:
    env = dict(material.env, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    out = buildhook(["keygen"], env).stdout.decode()
    assert (tmp_path / "xdg" / "buildhook" / "keys" / "signing.key").is_file()
    assert "signing.pub" in out


def test_sign_then_verify(material: Material, tmp_path: Path) -> None:
    patch = fresh_patch(material, tmp_path)
    out = buildhook(["sign", str(patch), "--key", str(material.keys / "signing.key")], material.env)
    signature_file = Path(f"{patch}.sig")
    assert out.stdout.decode().strip() == (f"signed {patch} with key "
                                           f"{PublicKey.from_file(str(material.keys / 'signing.pub')).key_id}: "
                                           f"{signature_file}")
    document = json.loads(signature_file.read_text())
    assert document["format"] == "buildhook-sig/1" and document["algorithm"] == "ed25519"
    assert len(base64.b64decode(document["signature"])) == 64
    import hashlib

    assert document["patch_sha256"] == hashlib.sha256(patch.read_bytes()).hexdigest()
    verified = buildhook(["verify", str(patch), "--trust", str(material.trust)], material.env)
    assert verified.stdout.decode().startswith(f"{patch}: good signature by key {document['key_id']} ")
    # The trust store may also come from the environment, and be a single key file.
    env = dict(material.env, BUILDHOOK_TRUST=str(material.trust / "release-ci.pub"))
    assert buildhook(["verify", str(patch)], env).returncode == 0


def test_sign_uses_the_configured_key_and_refuses_a_readable_one(material: Material, tmp_path: Path) -> None:
    patch = fresh_patch(material, tmp_path)
    key = tmp_path / "ci.key"
    shutil.copy(material.keys / "signing.key", key)
    key.chmod(0o644)
    env = dict(material.env, BUILDHOOK_SIGNING_KEY=str(key))
    line = one_error_line(buildhook(["sign", str(patch)], env, check=False))
    assert "accessible by others (mode 0644)" in line and f"chmod 600 {key}" in line
    key.chmod(0o600)
    buildhook(["sign", str(patch)], env)
    assert buildhook(["verify", str(patch), "--trust", str(material.trust)], material.env).returncode == 0


def test_sign_refuses_what_is_not_a_patch(material: Material, tmp_path: Path) -> None:
    junk = tmp_path / "junk.po"
    junk.write_text("not a patch\n")
    line = one_error_line(buildhook(["sign", str(junk), "--key", str(material.keys / "signing.key")],
                                    material.env, check=False))
    assert "is not a valid buildhook patch" in line
    assert not Path(f"{junk}.sig").exists()


@pytest.mark.parametrize("case", ["unsigned", "tampered", "wrong-key", "forged-key-id", "garbage-signature"])
def test_verify_refuses_in_one_line(case: str, material: Material, tmp_path: Path) -> None:
    patch = fresh_patch(material, tmp_path)
    key = material.other_keys if case in ("wrong-key", "forged-key-id") else material.keys
    if case != "unsigned":
        buildhook(["sign", str(patch), "--key", str(key / "signing.key")], material.env)
    signature_file = Path(f"{patch}.sig")
    if case == "tampered":
        data = bytearray(patch.read_bytes())
        data[len(data) // 2] ^= 0x01
        patch.write_bytes(bytes(data))
    elif case == "forged-key-id":
        # Signed by another key, but claiming the trusted key's id.
        document = json.loads(signature_file.read_text())
        document["key_id"] = PublicKey.from_file(str(material.keys / "signing.pub")).key_id
        signature_file.write_text(json.dumps(document))
    elif case == "garbage-signature":
        signature_file.write_text("-----BEGIN PGP SIGNATURE-----\n")
    line = one_error_line(buildhook(["verify", str(patch), "--trust", str(material.trust)], material.env,
                                    check=False))
    expected = {
        "unsigned": "is not signed (no ",
        "tampered": "was changed after it was signed",
        "wrong-key": "which is not in the trust store",
        "forged-key-id": "does not verify with key",
        "garbage-signature": "is not a buildhook signature",
    }[case]
    assert expected in line


def test_trust_store_configuration(tmp_path: Path) -> None:
    assert configured_trust_store({}) is None or os.path.isdir("/etc/buildhook/trust.d")
    store = configured_trust_store({"BUILDHOOK_TRUST": str(tmp_path)})
    assert store is not None and store.folder == str(tmp_path) and store.keys == []
    with pytest.raises(SignatureError, match="does not exist"):
        configured_trust_store({"BUILDHOOK_TRUST": str(tmp_path / "typo")})
    (tmp_path / "broken.pub").write_text("ssh-ed25519 AAAA…\n")
    with pytest.raises(SignatureError, match="broken.pub is not a PEM public key"):
        TrustStore(str(tmp_path)).keys  # noqa: B018 - a broken key file is an error, not a skipped key


def test_an_empty_trust_store_trusts_nothing(material: Material, tmp_path: Path) -> None:
    patch = fresh_patch(material, tmp_path)
    buildhook(["sign", str(patch), "--key", str(material.keys / "signing.key")], material.env)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SignatureError, match=r"not in the trust store .*\(trusted keys: none\)"):
        verify_patch(str(patch), patch.read_bytes(), TrustStore(str(empty)))
