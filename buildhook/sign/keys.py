"""Signing key pairs: generate, write and load them (docs/signing.md).

A key pair is two PEM files: ``NAME.key``, the Ed25519 private key (PKCS#8,
unencrypted, mode 0600: it belongs in a CI secret, not in a repository), and
``NAME.pub``, the public key (SubjectPublicKeyInfo) that goes into the trust
store of every host that should accept the patches.  ``openssl genpkey
-algorithm ed25519`` makes a compatible private key.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from buildhook.apply.signature import PublicKey, key_id_of

SIGNING_KEY_VARIABLE = "BUILDHOOK_SIGNING_KEY"
DEFAULT_KEY_NAME = "signing"
PRIVATE_SUFFIX, PUBLIC_SUFFIX = ".key", ".pub"


class SigningKeyError(Exception):
    """A key cannot be made or used; the message says which file and why."""


def default_key_folder() -> Path:
    """``$XDG_CONFIG_HOME/buildhook/keys``, else ``~/.config/buildhook/keys``."""
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "buildhook" / "keys"


def default_signing_key() -> Path:
    """The key ``sign`` uses without ``--key``: ``$BUILDHOOK_SIGNING_KEY``, else ``signing.key`` in the default folder."""
    configured = os.environ.get(SIGNING_KEY_VARIABLE)
    return Path(configured) if configured else default_key_folder() / (DEFAULT_KEY_NAME + PRIVATE_SUFFIX)


@dataclass
class KeyPairFiles:
    """Where ``keygen`` wrote a key pair, and the key's id."""

    private: Path
    public: Path
    key_id: str


class SigningKey:
    """An Ed25519 private key, loaded from or written to a PEM file."""

    def __init__(self, private_key: object, path: str) -> None:
        self._key = private_key
        self.path = path

    @classmethod
    def generate(cls) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate(), "<new key>")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Load a PEM Ed25519 private key; refuse one that others can read (as ssh does)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        name = os.fspath(path)
        try:
            mode = os.stat(name).st_mode
            with open(name, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            hint = " (make one with `buildhook keygen`)" if isinstance(exc, FileNotFoundError) else ""
            raise SigningKeyError(f"cannot read signing key {name}: {exc.strerror}{hint}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SigningKeyError(f"signing key {name} is accessible by others (mode {stat.S_IMODE(mode):04o}); "
                            f"run `chmod 600 {name}`")
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{name} is not an unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{name} is a {type(key).__name__}, not an Ed25519 key")
        return cls(key, name)

    @property
    def public_key(self) -> PublicKey:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[attr-defined]
        return PublicKey(raw, self.path)

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key.raw)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of *message*."""
        return self._key.sign(message)  # type: ignore[attr-defined,no-any-return]

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        return self._key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())  # type: ignore[attr-defined,no-any-return]

    def write(self, folder: str | os.PathLike[str], name: str = DEFAULT_KEY_NAME) -> KeyPairFiles:
        """Write ``NAME.key`` (0600) and ``NAME.pub`` into *folder*; never overwrite a key."""
        target = Path(folder)
        private, public = target / (name + PRIVATE_SUFFIX), target / (name + PUBLIC_SUFFIX)
        for path in (private, public):
            if path.exists():
                raise SigningKeyError(f"{path} already exists; remove it or choose another --out/--name")
        try:
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            # O_EXCL and mode 0600 at creation: the private key is never readable by others, not even briefly.
            descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(self.private_pem())
            public.write_text(self.public_key.to_pem())
        except OSError as exc:
            raise SigningKeyError(f"cannot write the key pair into {target}: {exc.strerror}") from exc
        return KeyPairFiles(private, public, self.key_id)
